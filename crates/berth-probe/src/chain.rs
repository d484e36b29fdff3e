//! Chain probes: read a node's chain state over its own RPC.
//!
//! - bitcoind: JSON-RPC `getblockchaininfo` over HTTP POST `/`, HTTP basic
//!   auth with the password read from the node's secret file;
//! - monerod: JSON-RPC `get_info` over HTTP POST `/json_rpc`;
//! - http: `GET path` answering 2xx;
//! - tcp: a TCP connect.
//!
//! Each yields a [`ChainState`]. The rules (issue 4):
//! - **synced** means reachable, not syncing, and the node's own flag where
//!   it has one. bitcoind: `!initialblockdownload && blocks == headers`;
//!   monerod: `synchronized && !busy_syncing && (target_height == 0 ||
//!   height >= target_height)` — so a freshly restarted monerod with no
//!   peers (`target_height` 0, `synchronized` false) is *not* synced.
//! - A node that answers but not OK is **unreachable**: bitcoind RPC errors
//!   (-28 warming up), HTTP 401/403/5xx (503 "work queue depth exceeded"),
//!   monerod `status` other than `"OK"` (`"BUSY"`), any non-2xx of an HTTP
//!   probe.
//! - Credentials never appear in a `ChainState` (`detail`, `raw`), an error
//!   or a log line: the password is read here, sent in one header, and
//!   dropped.
//!
//! The parsers (`parse_*`) are pure and unit-tested against the wire
//! formats; `tests/contract.rs` points the real clients at berth-fake.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use berth_core::gate::ChainState;
use berth_core::model::{ProbeKind, ProbeSpec};
use berth_engine::Engine;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::health::{Target, join_host_port, resolve};
use crate::http::{HttpResponse, request};

/// Largest secret file a probe reads (an RPC password is short).
pub const PASSWORD_FILE_BYTES_MAX: u64 = 4096;
/// Longest piece of a node's own message carried into `detail`.
const DETAIL_CHARS_MAX: usize = 120;

/// bitcoind's "in warm-up" RPC error code.
pub const RPC_IN_WARMUP: i64 = -28;

/// Fields of `getblockchaininfo` kept in `raw`.
const BITCOIND_RAW_FIELDS: &[&str] = &[
    "chain",
    "blocks",
    "headers",
    "verificationprogress",
    "initialblockdownload",
    "pruned",
    "size_on_disk",
    "warnings",
];
/// Fields of monerod's `get_info` kept in `raw`.
const MONEROD_RAW_FIELDS: &[&str] = &[
    "status",
    "height",
    "target_height",
    "synchronized",
    "busy_syncing",
    "nettype",
    "offline",
    "outgoing_connections_count",
    "incoming_connections_count",
    "database_size",
    "version",
];

/// Probe the node `spec` describes at `addr` (`host:port`, the caller
/// resolved the container's address). `password_file` is the bitcoind
/// probe's secret file (the caller maps `password_secret` to its path).
pub async fn probe_chain(spec: &ProbeSpec, addr: &str, password_file: Option<&Path>) -> ChainState {
    match &spec.kind {
        ProbeKind::Bitcoind { user, .. } => {
            let auth = match password_file {
                Some(path) => match read_password(path).await {
                    Ok(password) => Some(basic_auth(user.as_deref().unwrap_or(""), &password)),
                    Err(e) => return ChainState::unreachable(e),
                },
                None => None,
            };
            bitcoind(addr, auth.as_deref(), spec.timeout).await
        }
        ProbeKind::Monerod => monerod(addr, spec.timeout).await,
        ProbeKind::Http { path } => http(addr, path, spec.timeout).await,
        ProbeKind::Tcp => tcp(addr, spec.timeout).await,
    }
}

/// Probe an app's container: resolve its address on the stack network
/// through the engine, then [`probe_chain`] on the probe's port.
pub async fn probe_container(
    engine: &dyn Engine,
    target: &Target<'_>,
    spec: &ProbeSpec,
    password_file: Option<&Path>,
) -> ChainState {
    match resolve(engine, target).await {
        Ok(ip) => probe_chain(spec, &join_host_port(&ip, spec.port), password_file).await,
        Err(detail) => ChainState::unreachable(detail),
    }
}

/// Read an RPC password from a secret file: trailing newlines dropped, as
/// bitcoind's own `-rpcpassword` files are written by hand. The error names
/// the file, never its content.
pub async fn read_password(path: &Path) -> Result<String, String> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("cannot read the rpc password file {}: {e}", path.display()))?;
    if meta.len() > PASSWORD_FILE_BYTES_MAX {
        return Err(format!(
            "the rpc password file {} is larger than {PASSWORD_FILE_BYTES_MAX} bytes",
            path.display()
        ));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read the rpc password file {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("the rpc password file {} is not UTF-8", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// An `Authorization` header value for HTTP basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// bitcoind `getblockchaininfo`. `auth` is a ready `Authorization` value.
pub async fn bitcoind(addr: &str, auth: Option<&str>, timeout: Duration) -> ChainState {
    let url = format!("http://{addr}/");
    let body = json!({
        "jsonrpc": "1.0",
        "id": "berth",
        "method": "getblockchaininfo",
        "params": [],
    });
    match request(
        "POST",
        &url,
        Some(body.to_string().into_bytes()),
        auth,
        timeout,
    )
    .await
    {
        Ok(resp) => parse_getblockchaininfo(&resp),
        Err(e) => ChainState::unreachable(e),
    }
}

/// monerod `get_info` over `/json_rpc`.
pub async fn monerod(addr: &str, timeout: Duration) -> ChainState {
    let url = format!("http://{addr}/json_rpc");
    let body = json!({"jsonrpc": "2.0", "id": "0", "method": "get_info"});
    match request(
        "POST",
        &url,
        Some(body.to_string().into_bytes()),
        None,
        timeout,
    )
    .await
    {
        Ok(resp) => parse_monerod_get_info(&resp),
        Err(e) => ChainState::unreachable(e),
    }
}

/// `GET path`: 2xx is reachable and synced, anything else unreachable.
pub async fn http(addr: &str, path: &str, timeout: Duration) -> ChainState {
    let url = format!("http://{addr}{path}");
    match request("GET", &url, None, None, timeout).await {
        Ok(resp) if (200..300).contains(&resp.status) => {
            ChainState::up(format!("GET {path} answered {}", resp.status))
        }
        Ok(resp) => ChainState::unreachable(format!("GET {path} answered {}", resp.status)),
        Err(e) => ChainState::unreachable(e),
    }
}

/// A TCP connect: accepted is reachable and synced.
pub async fn tcp(addr: &str, timeout: Duration) -> ChainState {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => ChainState::up(format!("tcp {addr} accepted")),
        Ok(Err(e)) => ChainState::unreachable(format!("tcp {addr}: {e}")),
        Err(_) => ChainState::unreachable(format!(
            "tcp {addr}: no answer within {}ms",
            timeout.as_millis()
        )),
    }
}

/// A node's text, trimmed to one short line for `detail`.
fn clip(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() > DETAIL_CHARS_MAX {
        let cut: String = line.chars().take(DETAIL_CHARS_MAX).collect();
        format!("{cut}...")
    } else {
        line.to_string()
    }
}

fn pick(obj: &serde_json::Map<String, Value>, fields: &[&str]) -> Value {
    Value::Object(
        fields
            .iter()
            .filter_map(|f| obj.get(*f).map(|v| (f.to_string(), v.clone())))
            .collect(),
    )
}

fn percent_of(current: u64, target: u64) -> f64 {
    if target == 0 {
        0.0
    } else {
        (current as f64 / target as f64 * 100.0).clamp(0.0, 100.0)
    }
}

/// Parse bitcoind's answer to `getblockchaininfo` (JSON-RPC 1.0 or 2.0).
pub fn parse_getblockchaininfo(resp: &HttpResponse) -> ChainState {
    match resp.status {
        401 => {
            return ChainState::unreachable(
                "rpc authentication failed (HTTP 401): check the probe's user and password_secret",
            );
        }
        403 => {
            return ChainState::unreachable(
                "rpc forbidden (HTTP 403): bitcoind does not allow berth's address (rpcallowip)",
            );
        }
        _ => {}
    }
    let parsed: Option<Value> = serde_json::from_slice(&resp.body).ok();
    let Some(Value::Object(reply)) = parsed else {
        let text = clip(&String::from_utf8_lossy(&resp.body));
        return ChainState::unreachable(if resp.status == 503 {
            format!("busy (HTTP 503): {text}")
        } else if text.is_empty() {
            format!("HTTP {} without a JSON-RPC reply", resp.status)
        } else {
            format!("HTTP {}: {text}", resp.status)
        });
    };
    if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = clip(err.get("message").and_then(Value::as_str).unwrap_or(""));
        return ChainState::unreachable(if code == RPC_IN_WARMUP {
            format!("warming up (rpc error {code}): {message}")
        } else {
            format!("rpc error {code}: {message}")
        });
    }
    if !(200..300).contains(&resp.status) {
        return ChainState::unreachable(format!("HTTP {}", resp.status));
    }
    let Some(Value::Object(info)) = reply.get("result") else {
        return ChainState::unreachable("getblockchaininfo returned no result object");
    };
    let blocks = info.get("blocks").and_then(Value::as_u64);
    let headers = info.get("headers").and_then(Value::as_u64);
    let progress = info.get("verificationprogress").and_then(Value::as_f64);
    let ibd = info.get("initialblockdownload").and_then(Value::as_bool);
    let (Some(blocks), Some(headers), Some(ibd)) = (blocks, headers, ibd) else {
        return ChainState::unreachable(
            "getblockchaininfo lacks blocks, headers or initialblockdownload",
        );
    };
    let synced = !ibd && blocks == headers;
    let percent = match progress {
        _ if synced => 100.0,
        Some(p) if p.is_finite() => (p * 100.0).clamp(0.0, 100.0),
        _ => percent_of(blocks, headers),
    };
    let chain = info.get("chain").and_then(Value::as_str).unwrap_or("?");
    let detail = if synced {
        format!("{chain}: synced at block {blocks}")
    } else if ibd {
        format!("{chain}: initial block download, block {blocks} of {headers} headers")
    } else {
        format!("{chain}: block {blocks} of {headers} headers")
    };
    ChainState {
        reachable: true,
        synced,
        syncing: !synced,
        current: Some(blocks),
        target: Some(headers),
        percent: Some(percent),
        detail,
        raw: pick(info, BITCOIND_RAW_FIELDS),
    }
}

/// Parse monerod's answer to `get_info` on `/json_rpc`.
pub fn parse_monerod_get_info(resp: &HttpResponse) -> ChainState {
    if !(200..300).contains(&resp.status) {
        let text = clip(&String::from_utf8_lossy(&resp.body));
        return ChainState::unreachable(if text.is_empty() {
            format!("HTTP {}", resp.status)
        } else {
            format!("HTTP {}: {text}", resp.status)
        });
    }
    let parsed: Option<Value> = serde_json::from_slice(&resp.body).ok();
    let Some(Value::Object(reply)) = parsed else {
        return ChainState::unreachable("get_info answered without a JSON-RPC reply");
    };
    if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = clip(err.get("message").and_then(Value::as_str).unwrap_or(""));
        return ChainState::unreachable(format!("rpc error {code}: {message}"));
    }
    let Some(Value::Object(info)) = reply.get("result") else {
        return ChainState::unreachable("get_info returned no result object");
    };
    let status = info.get("status").and_then(Value::as_str).unwrap_or("");
    if status != "OK" {
        let shown = if status.is_empty() { "missing" } else { status };
        let mut state = ChainState::unreachable(format!("status {}", clip(shown)));
        state.raw = pick(info, MONEROD_RAW_FIELDS);
        return state;
    }
    let height = info.get("height").and_then(Value::as_u64);
    let target_height = info.get("target_height").and_then(Value::as_u64);
    let synchronized = info.get("synchronized").and_then(Value::as_bool);
    let (Some(height), Some(target_height), Some(synchronized)) =
        (height, target_height, synchronized)
    else {
        return ChainState::unreachable("get_info lacks height, target_height or synchronized");
    };
    let busy_syncing = info
        .get("busy_syncing")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let synced = synchronized && !busy_syncing && (target_height == 0 || height >= target_height);
    let syncing = !synced && (busy_syncing || target_height > height);
    let target = (target_height > 0).then_some(target_height);
    let percent = match target {
        _ if synced => Some(100.0),
        Some(t) => Some(percent_of(height, t)),
        None => None,
    };
    let nettype = info.get("nettype").and_then(Value::as_str).unwrap_or("?");
    let detail = if synced {
        format!("{nettype}: synced at height {height}")
    } else if let Some(t) = target {
        format!("{nettype}: height {height} of {t}")
    } else {
        let peers = info
            .get("outgoing_connections_count")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        format!(
            "{nettype}: not synchronized, height {height}, no target height yet ({peers} outgoing peers)"
        )
    };
    ChainState {
        reachable: true,
        synced,
        syncing,
        current: Some(height),
        target,
        percent,
        detail,
        raw: pick(info, MONEROD_RAW_FIELDS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: Value) -> HttpResponse {
        HttpResponse {
            status,
            body: body.to_string().into_bytes(),
        }
    }

    fn btc(blocks: u64, headers: u64, progress: f64, ibd: bool) -> HttpResponse {
        resp(
            200,
            json!({"result": {
                "chain": "main", "blocks": blocks, "headers": headers,
                "verificationprogress": progress, "initialblockdownload": ibd,
                "pruned": false, "size_on_disk": 1, "bestblockhash": "00ab",
                "chainwork": "00", "difficulty": 1.0, "warnings": "",
            }, "error": null, "id": "berth"}),
        )
    }

    #[test]
    fn bitcoind_synced_and_syncing() {
        let s = parse_getblockchaininfo(&btc(850_000, 850_000, 0.99999, false));
        assert!(s.reachable && s.synced && !s.syncing);
        assert_eq!(s.percent, Some(100.0));
        assert_eq!(s.summary(), "synced at 850000");

        let s = parse_getblockchaininfo(&btc(812_345, 850_000, 0.43, true));
        assert!(s.reachable && !s.synced && s.syncing);
        assert_eq!((s.current, s.target), (Some(812_345), Some(850_000)));
        assert_eq!(s.summary(), "syncing 43%, 812345/850000");
        // Only display fields are kept.
        assert_eq!(s.raw["blocks"], 812_345);
        assert!(s.raw.get("bestblockhash").is_none());

        // Out of IBD but a block behind the headers: not synced yet.
        let s = parse_getblockchaininfo(&btc(849_999, 850_000, 0.9999, false));
        assert!(!s.synced && s.syncing);
        // In IBD at the tip of its headers (no peers yet): not synced.
        let s = parse_getblockchaininfo(&btc(0, 0, 0.0, true));
        assert!(s.reachable && !s.synced);
    }

    #[test]
    fn bitcoind_not_ok_answers_are_unreachable() {
        let warmup = resp(
            500,
            json!({"result": null, "error": {"code": -28, "message": "Loading block index…"}, "id": "berth"}),
        );
        let s = parse_getblockchaininfo(&warmup);
        assert!(!s.reachable);
        assert_eq!(s.detail, "warming up (rpc error -28): Loading block index…");
        // JSON-RPC 2.0 error replies come with HTTP 200.
        let v2 = resp(
            200,
            json!({"jsonrpc": "2.0", "error": {"code": -28, "message": "Verifying blocks…"}, "id": "berth"}),
        );
        assert!(!parse_getblockchaininfo(&v2).reachable);
        let busy = HttpResponse {
            status: 503,
            body: b"Work queue depth exceeded".to_vec(),
        };
        let s = parse_getblockchaininfo(&busy);
        assert!(!s.reachable);
        assert_eq!(s.detail, "busy (HTTP 503): Work queue depth exceeded");
        let denied = HttpResponse {
            status: 401,
            body: Vec::new(),
        };
        assert!(
            parse_getblockchaininfo(&denied)
                .detail
                .contains("authentication failed")
        );
        let garbage = HttpResponse {
            status: 200,
            body: b"<html>".to_vec(),
        };
        assert!(!parse_getblockchaininfo(&garbage).reachable);
        let partial = resp(200, json!({"result": {"blocks": 1}, "error": null}));
        assert!(!parse_getblockchaininfo(&partial).reachable);
    }

    fn xmr(status: &str, height: u64, target: u64, synchronized: bool, busy: bool) -> HttpResponse {
        resp(
            200,
            json!({"id": "0", "jsonrpc": "2.0", "result": {
                "status": status, "height": height, "target_height": target,
                "synchronized": synchronized, "busy_syncing": busy,
                "nettype": "mainnet", "outgoing_connections_count": 0,
                "top_block_hash": "ab",
            }}),
        )
    }

    #[test]
    fn monerod_synced_rules() {
        let s = parse_monerod_get_info(&xmr("OK", 3_200_000, 3_200_000, true, false));
        assert!(s.reachable && s.synced && !s.syncing);
        // Some monerod versions report target_height 0 once synchronized.
        assert!(parse_monerod_get_info(&xmr("OK", 3_200_000, 0, true, false)).synced);
        let s = parse_monerod_get_info(&xmr("OK", 1_600_000, 3_200_000, false, true));
        assert!(s.reachable && !s.synced && s.syncing);
        assert_eq!(s.summary(), "syncing 50%, 1600000/3200000");
        // A fresh restart with no peers: target 0 and not synchronized.
        let s = parse_monerod_get_info(&xmr("OK", 1, 0, false, false));
        assert!(s.reachable && !s.synced && !s.syncing);
        assert_eq!(s.target, None);
        assert_eq!(s.summary(), "not synced, height 1");
        // Synchronized, but still busy syncing, or behind its target.
        assert!(!parse_monerod_get_info(&xmr("OK", 10, 10, true, true)).synced);
        assert!(!parse_monerod_get_info(&xmr("OK", 9, 10, true, false)).synced);
    }

    #[test]
    fn monerod_not_ok_answers_are_unreachable() {
        let s = parse_monerod_get_info(&xmr("BUSY", 10, 10, true, false));
        assert!(!s.reachable);
        assert_eq!(s.detail, "status BUSY");
        assert_eq!(s.raw["status"], "BUSY");
        let err = resp(
            200,
            json!({"id": "0", "jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}}),
        );
        assert_eq!(
            parse_monerod_get_info(&err).detail,
            "rpc error -32601: Method not found"
        );
        let http = HttpResponse {
            status: 503,
            body: Vec::new(),
        };
        assert_eq!(parse_monerod_get_info(&http).detail, "HTTP 503");
        let partial = resp(200, json!({"result": {"status": "OK"}}));
        assert!(!parse_monerod_get_info(&partial).reachable);
    }

    #[test]
    fn basic_auth_header() {
        assert_eq!(basic_auth("berth", "pw"), "Basic YmVydGg6cHc=");
    }
}
