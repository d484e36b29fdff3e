//! Authentication of the HTTP API: the API token (`<state>/api-token`,
//! 0600, made at the first daemon start), dashboard sessions with their
//! CSRF tokens, the failed-login limiter, and the checks every request
//! goes through.
//!
//! - A request is authenticated by `Authorization: Bearer <token>` or by a
//!   session cookie (`berth_session`, HttpOnly, SameSite=Strict) that the
//!   login form gave for the token.
//! - A state-changing request authenticated by the cookie must also carry
//!   the session's CSRF token (header `X-Berth-CSRF`, or the form field
//!   `_csrf` for browsers without JavaScript) and, when the browser sends
//!   `Origin`, come from the daemon's own origin.
//! - Failed logins (and wrong bearer tokens) are counted per client
//!   address (an IPv6 client per /64): `LOGIN_FAILURES_MAX` within
//!   `LOGIN_WINDOW_MS` lock that client out of the login form for
//!   `LOGIN_LOCKOUT_MS` (every attempt answered 429, the right token too);
//!   other clients, the host's own loopback ones included, are not
//!   affected.
//!   A request with the right bearer token always passes: it is 256 random
//!   bits, and locking the API out would let anyone on the host deny it.
//!
//! Comparisons of secrets are constant-time. The token never appears in a
//! log line, an error or a response other than the login exchange.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The token file inside the state directory.
pub const TOKEN_FILE_NAME: &str = "api-token";
/// Its mode: only its owner reads it.
pub const TOKEN_FILE_MODE: u32 = 0o600;
/// Random bytes in a token, a session id and a CSRF token.
pub const TOKEN_BYTES: usize = 32;
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "berth_session";
/// A session lasts this long from login.
pub const SESSION_TTL_MS: u64 = 12 * 3600 * 1000;
/// Sessions kept at once; the oldest goes first.
pub const SESSIONS_MAX: usize = 64;
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-berth-csrf";
/// The form field carrying it (no-JavaScript forms).
pub const CSRF_FIELD: &str = "_csrf";
/// Failed logins within the window that lock the login form.
pub const LOGIN_FAILURES_MAX: usize = 5;
/// The window failed logins are counted in.
pub const LOGIN_WINDOW_MS: u64 = 60_000;
/// How long the login form stays locked.
pub const LOGIN_LOCKOUT_MS: u64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the API token {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the API token {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the API token file {} is malformed (expected {} hex characters); delete it and restart the daemon to make a new one", .path.display(), TOKEN_BYTES * 2)]
    Malformed { path: PathBuf },
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
}

/// The API token. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The value, for the login exchange, `berth token` and tests only.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token (constant time).
    pub fn matches(&self, candidate: &str) -> bool {
        ct_eq(self.0.as_bytes(), candidate.as_bytes())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// `<state>/api-token`.
pub fn token_path(state_root: &Path) -> PathBuf {
    state_root.join(TOKEN_FILE_NAME)
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> Result<String, TokenError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// Read the token, making it first when there is none. Returns whether
/// this call made it (the caller shows it once). A file readable by others
/// is tightened to 0600.
pub fn ensure_token(state_root: &Path) -> Result<(Token, bool), TokenError> {
    let path = token_path(state_root);
    match read_token(&path) {
        Ok(t) => return Ok((t, false)),
        Err(TokenError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = random_hex(TOKEN_BYTES)?;
    // Written to a temporary file created 0600 and renamed: never readable
    // by others, never half-written. `create_new` on the final name would
    // race with a second daemon; the rename keeps whichever came last, and
    // both then read the same file back.
    let tmp = state_root.join(format!(".{TOKEN_FILE_NAME}.{}", std::process::id()));
    let write = |p: &Path| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(TOKEN_FILE_MODE)
            .open(p)?;
        f.set_permissions(std::fs::Permissions::from_mode(TOKEN_FILE_MODE))?;
        f.write_all(format!("{token}\n").as_bytes())?;
        f.sync_all()
    };
    write(&tmp).map_err(|source| TokenError::Write {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &path).map_err(|source| TokenError::Write {
        path: path.clone(),
        source,
    })?;
    Ok((read_token(&path)?, true))
}

/// Read an existing token file.
pub fn read_token(path: &Path) -> Result<Token, TokenError> {
    let meta = std::fs::metadata(path).map_err(|source| TokenError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the API token file was readable by others; now 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(TOKEN_FILE_MODE)).map_err(
            |source| TokenError::Write {
                path: path.to_path_buf(),
                source,
            },
        )?;
    }
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let t = text.trim();
    if t.len() != TOKEN_BYTES * 2 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed {
            path: path.to_path_buf(),
        });
    }
    Ok(Token(t.to_string()))
}

/// Constant-time equality (for equal lengths; the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A dashboard session.
#[derive(Clone)]
pub struct Session {
    pub csrf: String,
    pub created_ms: u64,
}

/// Live sessions by id (in memory: a daemon restart logs everyone out).
#[derive(Default)]
pub struct Sessions {
    by_id: BTreeMap<String, Session>,
}

impl Sessions {
    /// A new session; returns its id and CSRF token.
    pub fn create(&mut self, now_ms: u64) -> Result<(String, String), TokenError> {
        self.expire(now_ms);
        while self.by_id.len() >= SESSIONS_MAX {
            let oldest = self
                .by_id
                .iter()
                .min_by_key(|(_, s)| s.created_ms)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.by_id.remove(&k),
                None => break,
            };
        }
        let id = random_hex(TOKEN_BYTES)?;
        let csrf = random_hex(TOKEN_BYTES)?;
        self.by_id.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                created_ms: now_ms,
            },
        );
        Ok((id, csrf))
    }

    /// The live session with this id.
    pub fn get(&self, id: &str, now_ms: u64) -> Option<Session> {
        // Looked up by value; the map's own comparison is not constant
        // time, but the ids are 256 random bits: timing reveals nothing
        // usable.
        let s = self.by_id.get(id)?;
        (now_ms < s.created_ms + SESSION_TTL_MS).then(|| s.clone())
    }

    pub fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    fn expire(&mut self, now_ms: u64) {
        self.by_id
            .retain(|_, s| now_ms < s.created_ms + SESSION_TTL_MS);
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Client addresses the limiter keeps counts for at once; when a new one
/// comes, the one seen longest ago is forgotten (forgetting only ever
/// unlocks, never locks anyone).
pub const LOGIN_CLIENTS_MAX: usize = 1_024;

/// Who failed logins are counted for: an IPv4 address, or the /64 prefix
/// of an IPv6 one (a single host usually holds a whole /64, so counting
/// single IPv6 addresses would let it rotate past the limit). `Unknown`
/// is a request without a peer address (served in process, never on TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
    Unknown,
}

impl ClientKey {
    pub fn of(addr: Option<std::net::IpAddr>) -> ClientKey {
        use std::net::IpAddr;
        match addr {
            None => ClientKey::Unknown,
            Some(IpAddr::V4(a)) => ClientKey::V4(a.octets()),
            Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.octets()),
                None => {
                    let o = a.octets();
                    let mut p = [0u8; 8];
                    p.copy_from_slice(&o[..8]);
                    ClientKey::V6Prefix(p)
                }
            },
        }
    }
}

/// Counts failed logins of one client; pure (the time is a parameter).
#[derive(Debug, Default)]
pub struct ClientFailures {
    failures: VecDeque<u64>,
    locked_until_ms: Option<u64>,
}

impl ClientFailures {
    /// `Err(ms)` while locked: how long until it opens again.
    pub fn check(&mut self, now_ms: u64) -> Result<(), u64> {
        match self.locked_until_ms {
            Some(until) if now_ms < until => Err(until - now_ms),
            Some(_) => {
                self.locked_until_ms = None;
                self.failures.clear();
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// A failed attempt; returns whether it locked this client out.
    pub fn failed(&mut self, now_ms: u64) -> bool {
        while self
            .failures
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) > LOGIN_WINDOW_MS)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now_ms);
        if self.failures.len() > LOGIN_FAILURES_MAX {
            self.failures.pop_front();
        }
        if self.failures.len() >= LOGIN_FAILURES_MAX && self.locked_until_ms.is_none() {
            self.locked_until_ms = Some(now_ms.saturating_add(LOGIN_LOCKOUT_MS));
            return true;
        }
        false
    }

    /// The newest failure (for eviction).
    fn last_ms(&self) -> u64 {
        self.failures.back().copied().unwrap_or(0)
    }
}

/// Failed logins counted per client address (see [`ClientKey`]): one
/// client's burst locks out that client only, so a remote guesser can
/// never lock the host's own loopback clients out. At most
/// [`LOGIN_CLIENTS_MAX`] clients are tracked.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    clients: BTreeMap<ClientKey, ClientFailures>,
}

impl LoginLimiter {
    /// `Err(ms)` while `client` is locked out: how long until it may try
    /// again.
    pub fn check(&mut self, client: ClientKey, now_ms: u64) -> Result<(), u64> {
        match self.clients.get_mut(&client) {
            Some(c) => c.check(now_ms),
            None => Ok(()),
        }
    }

    /// A failed attempt of `client`; returns whether it locked it out.
    pub fn failed(&mut self, client: ClientKey, now_ms: u64) -> bool {
        if !self.clients.contains_key(&client) && self.clients.len() >= LOGIN_CLIENTS_MAX {
            // Forget the client whose last failure is oldest.
            let oldest = self
                .clients
                .iter()
                .min_by_key(|(_, c)| c.last_ms())
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.clients.remove(&k);
            }
        }
        self.clients.entry(client).or_default().failed(now_ms)
    }

    /// Clients tracked now.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Set-Cookie` value of a new session.
pub fn session_cookie(id: &str) -> String {
    format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL_MS / 1000
    )
}

/// The `Set-Cookie` value that ends the session in the browser.
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Whether a browser request comes from our own origin: `Origin` (when
/// sent) must be `http://<Host>` or `https://<Host>`, and
/// `Sec-Fetch-Site` (when sent) must not be `cross-site`/`same-site`.
pub fn same_origin(origin: Option<&str>, host: Option<&str>, fetch_site: Option<&str>) -> bool {
    if let Some(site) = fetch_site
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match origin {
        None => true,
        // Sent by privacy modes and sandboxed frames: never our page.
        Some("null") => false,
        Some(o) => match host {
            Some(h) => o == format!("http://{h}") || o == format!("https://{h}"),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_made_once_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (t1, made) = ensure_token(dir.path()).unwrap();
        assert!(made);
        let path = token_path(dir.path());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(t1.reveal().len(), 64);
        let (t2, made) = ensure_token(dir.path()).unwrap();
        assert!(!made);
        assert_eq!(t1, t2);
        assert_eq!(format!("{t1:?}"), "Token(***)");
        // Too open: tightened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        ensure_token(dir.path()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Garbage is an error, never silently replaced.
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            ensure_token(dir.path()),
            Err(TokenError::Malformed { .. })
        ));
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(TOKEN_FILE_NAME)]);
    }

    #[test]
    fn token_matching_is_exact() {
        let t = Token("ab".repeat(32));
        assert!(t.matches(&"ab".repeat(32)));
        assert!(!t.matches(&"ab".repeat(31)));
        assert!(!t.matches(&format!("{}ac", "ab".repeat(31))));
        assert!(!t.matches(""));
    }

    #[test]
    fn limiter_locks_after_a_burst_and_opens_again() {
        let me = ClientKey::of(Some("192.0.2.7".parse().unwrap()));
        let mut l = LoginLimiter::default();
        for i in 0..LOGIN_FAILURES_MAX as u64 - 1 {
            assert!(l.check(me, i).is_ok());
            assert!(!l.failed(me, i));
        }
        assert!(l.failed(me, 10));
        assert_eq!(l.check(me, 11), Err(LOGIN_LOCKOUT_MS - 1));
        assert!(l.check(me, 10 + LOGIN_LOCKOUT_MS).is_ok());
        // Failures spread out more than the window never lock.
        let mut l = LoginLimiter::default();
        for i in 0..20u64 {
            assert!(!l.failed(me, i * (LOGIN_WINDOW_MS / 4 + 1)));
        }
    }

    #[test]
    fn a_remote_burst_of_failed_logins_never_locks_out_loopback() {
        let remote = ClientKey::of(Some("203.0.113.9".parse().unwrap()));
        let mut l = LoginLimiter::default();
        for i in 0..LOGIN_FAILURES_MAX as u64 * 3 {
            l.failed(remote, i);
        }
        assert!(l.check(remote, 100).is_err());
        for lo in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let k = ClientKey::of(Some(lo.parse().unwrap()));
            assert!(
                l.check(k, 100).is_ok(),
                "{lo} locked out by a remote client"
            );
        }
        // Another remote client is not locked either.
        let other = ClientKey::of(Some("198.51.100.1".parse().unwrap()));
        assert!(l.check(other, 100).is_ok());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_prefix() {
        let a = ClientKey::of(Some("2001:db8:1:2::1".parse().unwrap()));
        let b = ClientKey::of(Some("2001:db8:1:2:ffff::9".parse().unwrap()));
        let c = ClientKey::of(Some("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = ClientKey::of(Some("::ffff:192.0.2.1".parse().unwrap()));
        assert_eq!(mapped, ClientKey::of(Some("192.0.2.1".parse().unwrap())));
    }

    #[test]
    fn the_limiter_tracks_a_bounded_number_of_clients_evicting_the_oldest() {
        let mut l = LoginLimiter::default();
        let key = |i: u32| ClientKey::V4(i.to_be_bytes());
        for i in 0..LOGIN_CLIENTS_MAX as u32 + 50 {
            l.failed(key(i), u64::from(i));
        }
        assert_eq!(l.len(), LOGIN_CLIENTS_MAX);
        // The first clients were seen longest ago: forgotten first; the
        // newest are still counted.
        assert!(!l.clients.contains_key(&key(0)));
        assert!(l.clients.contains_key(&key(LOGIN_CLIENTS_MAX as u32 + 49)));
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let mut s = Sessions::default();
        let (id, csrf) = s.create(0).unwrap();
        assert_eq!(s.get(&id, 1).unwrap().csrf, csrf);
        assert!(s.get(&id, SESSION_TTL_MS).is_none());
        assert!(s.get("nope", 1).is_none());
        for i in 0..(SESSIONS_MAX as u64 + 10) {
            s.create(i + 1).unwrap();
        }
        assert_eq!(s.len(), SESSIONS_MAX);
        // The first one was the oldest: evicted.
        assert!(s.get(&id, 100).is_none());
    }

    #[test]
    fn cookies_and_origins() {
        assert_eq!(
            cookie("a=1; berth_session=xyz; b=2", SESSION_COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie("berth_sessionx=1", SESSION_COOKIE), None);
        let c = session_cookie("id1");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
        let h = Some("127.0.0.1:7780");
        assert!(same_origin(None, h, None));
        assert!(same_origin(
            Some("http://127.0.0.1:7780"),
            h,
            Some("same-origin")
        ));
        assert!(!same_origin(Some("http://evil.example"), h, None));
        assert!(!same_origin(Some("null"), h, None));
        assert!(!same_origin(None, h, Some("cross-site")));
        assert!(!same_origin(Some("http://127.0.0.1:7780"), None, None));
    }
}
