//! Runtime: listeners, threads, shared state, persistence, logging.

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cli::{App, Config, VERSION};
use crate::http::{self, Reply, Request};
use crate::sim::{ControlRequest, Mode, Sim, Update, View};
use crate::{bitcoind, control, monerod, tcp, web};

/// At most this many connections are served at once (per process); more
/// are closed right after accept.
pub const MAX_CONNECTIONS: usize = 512;
/// While syncing, the height file is rewritten at most this often.
const PERSIST_INTERVAL: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(100);

pub(crate) struct Inner {
    pub sim: Sim,
    /// Whether the service listener is currently bound (false in `down`
    /// for apps that refuse connections when down).
    pub listener_open: bool,
}

#[derive(Default)]
struct PersistState {
    last_written: Option<u64>,
    last_time: Option<Instant>,
    warned: bool,
}

pub struct Shared {
    pub cfg: Config,
    inner: Mutex<Inner>,
    changed: Condvar,
    shutdown: AtomicBool,
    pub started: Instant,
    pub started_unix: u64,
    pub listen_addr: SocketAddr,
    pub control_addr: Option<SocketAddr>,
    exit_tx: Mutex<Sender<i32>>,
    active: AtomicUsize,
    persist: Mutex<PersistState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Shared {
    pub fn log(&self, msg: &str) {
        if self.cfg.quiet {
            return;
        }
        let mut out = io::stdout().lock();
        // Never panic on a closed stdout.
        let _ = writeln!(
            out,
            "berth-fake {} [{}]: {msg}",
            self.cfg.app.as_str(),
            self.cfg.name
        );
        let _ = out.flush();
    }

    fn log_all(&self, logs: Vec<String>) {
        for l in logs {
            self.log(&l);
        }
    }

    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Current state, with simulated time advanced to now.
    pub fn view(&self) -> View {
        let mut logs = Vec::new();
        let view = {
            let mut g = lock(&self.inner);
            g.sim.advance(Instant::now(), &mut logs);
            g.sim.view()
        };
        self.log_all(logs);
        view
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub fn state_json(&self) -> Value {
        let v = self.view();
        let (listener_open, frozen, block_seconds) = {
            let g = lock(&self.inner);
            (g.listener_open, g.sim.frozen, g.sim.block_seconds)
        };
        json!({
            "app": self.cfg.app.as_str(),
            "name": self.cfg.name,
            "mode": v.mode.as_str(),
            "height": v.height,
            "target": v.target,
            "rate": v.rate,
            "progress": v.progress(),
            "synced": v.mode == Mode::Synced,
            "frozen": frozen,
            "block_seconds": block_seconds.unwrap_or(0.0),
            "listen": self.listen_addr.to_string(),
            "listener_open": listener_open,
            "control": self.control_addr.map(|a| a.to_string()),
            "data_dir": self.cfg.data_dir.as_ref().map(|d| d.display().to_string()),
            "pid": std::process::id(),
            "uptime_secs": self.uptime_secs(),
            "version": VERSION,
        })
    }

    /// Applies a validated control update (not `exit`), waits until a
    /// listener change it implies has happened, and persists the height.
    pub fn apply(&self, update: &Update) {
        let (logs, was_down, is_down) = {
            let mut g = lock(&self.inner);
            let was_down = g.sim.mode == Mode::Down;
            let logs = g.sim.apply(update, Instant::now());
            (logs, was_down, g.sim.mode == Mode::Down)
        };
        self.changed.notify_all();
        self.log_all(logs);
        if self.cfg.app.refuses_when_down() && was_down != is_down {
            if is_down {
                // Unblock the acceptor so it notices and closes the port.
                wake(self.listen_addr);
            }
            if !self.wait_listener(!is_down, Duration::from_secs(3)) {
                self.log(&format!(
                    "warning: service listener not {} within 3 s",
                    if is_down { "closed" } else { "reopened" }
                ));
            }
        }
        self.persist(true);
    }

    fn wait_listener(&self, open: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = lock(&self.inner);
        while g.listener_open != open {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || self.is_shutdown() {
                return false;
            }
            g = self
                .changed
                .wait_timeout(g, remaining)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    fn set_listener_open(&self, open: bool) {
        lock(&self.inner).listener_open = open;
        self.changed.notify_all();
    }

    /// Writes the height to `data-dir/height` if it changed: at most once
    /// per second (while syncing or making new blocks) unless `force`.
    pub fn persist(&self, force: bool) {
        let Some(dir) = &self.cfg.data_dir else {
            return;
        };
        let view = {
            let g = lock(&self.inner);
            g.sim.view()
        };
        let mut p = lock(&self.persist);
        if p.last_written == Some(view.height) {
            return;
        }
        let throttled = !force && p.last_time.is_some_and(|t| t.elapsed() < PERSIST_INTERVAL);
        if throttled {
            return;
        }
        match write_atomic(&dir.join("height"), format!("{}\n", view.height).as_bytes()) {
            Ok(()) => {
                p.last_written = Some(view.height);
                p.last_time = Some(Instant::now());
                p.warned = false;
            }
            Err(e) => {
                p.last_time = Some(Instant::now());
                if !p.warned {
                    p.warned = true;
                    drop(p);
                    self.log(&format!(
                        "warning: cannot persist height in {}: {e}",
                        dir.display()
                    ));
                }
            }
        }
    }

    /// Asks the process to exit with `code` (crash injection) and stops
    /// serving.
    pub fn request_exit(&self, code: i32) {
        self.persist(true);
        let _ = lock(&self.exit_tx).send(code);
        self.begin_shutdown();
    }

    fn begin_shutdown(&self) {
        if self.shutdown.swap(true, Ordering::SeqCst) {
            return;
        }
        self.changed.notify_all();
        wake(self.listen_addr);
        if let Some(c) = self.control_addr {
            wake(c);
        }
    }

    pub fn marker_path(&self) -> Option<PathBuf> {
        self.cfg.data_dir.as_ref().map(|d| d.join("marker"))
    }
}

pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

fn read_persisted_height(dir: &Path) -> Result<Option<u64>, String> {
    match fs::read_to_string(dir.join("height")) {
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("ignoring unparsable {}", dir.join("height").display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", dir.join("height").display())),
    }
}

/// Connects to `addr` (loopback if unspecified) to unblock an `accept`.
fn wake(addr: SocketAddr) {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let _ = TcpStream::connect_timeout(&target, Duration::from_millis(500));
}

fn bind(addr: &str, what: &str) -> io::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("{what} address {addr:?}: {e}")))?
        .collect();
    let mut last = io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} address {addr:?} resolves to nothing"),
    );
    for a in addrs {
        match TcpListener::bind(a) {
            Ok(l) => return Ok(l),
            Err(e) => {
                last = io::Error::new(e.kind(), format!("cannot listen on {a} ({what}): {e}"))
            }
        }
    }
    Err(last)
}

struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn spawn_connection(shared: &Arc<Shared>, stream: TcpStream, f: fn(&Arc<Shared>, TcpStream)) {
    if shared.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
        shared.active.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let guard = ActiveGuard(shared.clone());
    let s = shared.clone();
    // If spawning fails the closure (and with it the guard) is dropped.
    let _ = thread::Builder::new()
        .name("berth-fake-conn".into())
        .spawn(move || {
            let _guard = guard;
            f(&s, stream);
        });
}

fn serve_service(shared: &Arc<Shared>, stream: TcpStream) {
    match shared.cfg.app {
        App::Tcp => tcp::serve(shared, stream),
        app => {
            let handler = |req: &Request| -> Reply {
                match app {
                    App::Bitcoind => bitcoind::handle(shared, req),
                    App::Monerod => monerod::handle(shared, req),
                    _ => web::handle(shared, req),
                }
            };
            http::serve_connection(stream, &handler, &|| shared.is_shutdown());
        }
    }
}

fn serve_control(shared: &Arc<Shared>, stream: TcpStream) {
    let handler = |req: &Request| control::handle(shared, req);
    http::serve_connection(stream, &handler, &|| shared.is_shutdown());
}

fn service_acceptor(shared: Arc<Shared>, listener: TcpListener) {
    let refuses = shared.cfg.app.refuses_when_down();
    let mut listener = Some(listener);
    let mut bind_warned = false;
    loop {
        if shared.is_shutdown() {
            return;
        }
        if refuses && lock(&shared.inner).sim.mode == Mode::Down {
            if listener.take().is_some() {
                shared.set_listener_open(false);
                shared.log(&format!(
                    "service port {} closed (mode down)",
                    shared.listen_addr
                ));
            }
            let mut g = lock(&shared.inner);
            while g.sim.mode == Mode::Down && !shared.is_shutdown() {
                g = shared
                    .changed
                    .wait_timeout(g, Duration::from_millis(250))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            continue;
        }
        let Some(l) = &listener else {
            match TcpListener::bind(shared.listen_addr) {
                Ok(l) => {
                    listener = Some(l);
                    bind_warned = false;
                    shared.set_listener_open(true);
                    shared.log(&format!("service port {} reopened", shared.listen_addr));
                }
                Err(e) => {
                    if !bind_warned {
                        bind_warned = true;
                        shared.log(&format!(
                            "warning: cannot reopen {}: {e}; retrying",
                            shared.listen_addr
                        ));
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
            continue;
        };
        match l.accept() {
            Ok((stream, _)) => {
                if shared.is_shutdown() {
                    return;
                }
                if refuses && lock(&shared.inner).sim.mode == Mode::Down {
                    continue;
                }
                spawn_connection(&shared, stream, serve_service);
            }
            // Out of descriptors and the like: don't spin.
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn control_acceptor(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if shared.is_shutdown() {
                    return;
                }
                spawn_connection(&shared, stream, serve_control);
            }
            Err(_) => {
                if shared.is_shutdown() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn ticker(shared: Arc<Shared>) {
    loop {
        let logs = {
            let g = lock(&shared.inner);
            let mut g = shared
                .changed
                .wait_timeout(g, TICK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if shared.is_shutdown() {
                return;
            }
            let mut logs = Vec::new();
            g.sim.advance(Instant::now(), &mut logs);
            logs
        };
        shared.log_all(logs);
        shared.persist(false);
    }
}

/// A running fake daemon. Dropping it stops it.
pub struct Fake {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    exit_rx: Option<Receiver<i32>>,
}

/// Binds the listeners and starts serving in background threads.
pub fn start(cfg: Config) -> io::Result<Fake> {
    let mut notes = Vec::new();
    let mut height = cfg.effective_height();
    if let Some(dir) = &cfg.data_dir {
        fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create data dir {}: {e}", dir.display()),
            )
        })?;
        match read_persisted_height(dir) {
            Ok(Some(h)) => {
                notes.push(format!(
                    "resumed height {h} from {}",
                    dir.join("height").display()
                ));
                height = h;
            }
            Ok(None) => {}
            Err(msg) => notes.push(format!("warning: {msg}")),
        }
    }
    let now = Instant::now();
    let sim = Sim::new(
        cfg.mode,
        height,
        cfg.effective_target(),
        cfg.effective_rate(),
        cfg.starting_duration(),
        now,
    )
    .with_blocks(cfg.block_seconds);
    let service = bind(&cfg.listen, "--listen")?;
    let listen_addr = service.local_addr()?;
    let control = match &cfg.control {
        Some(a) => Some(bind(a, "--control")?),
        None => None,
    };
    let control_addr = match &control {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let (exit_tx, exit_rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        cfg,
        inner: Mutex::new(Inner {
            sim,
            listener_open: true,
        }),
        changed: Condvar::new(),
        shutdown: AtomicBool::new(false),
        started: now,
        started_unix: unix_now(),
        listen_addr,
        control_addr,
        exit_tx: Mutex::new(exit_tx),
        active: AtomicUsize::new(0),
        persist: Mutex::new(PersistState::default()),
    });

    let cfg = &shared.cfg;
    let view = shared.view();
    let auth = match (&cfg.rpc_password_file, cfg.app) {
        (Some(p), App::Bitcoind) => format!(
            ", rpc auth: basic (password file {}{}, {})",
            p.display(),
            cfg.rpc_user
                .as_ref()
                .map(|u| format!(", user {u}"))
                .unwrap_or_default(),
            if p.exists() {
                "present"
            } else {
                "absent: auth off"
            }
        ),
        _ => String::new(),
    };
    shared.log(&format!(
        "version {VERSION}: service on {listen_addr}, control on {}; mode {}, height {}/{}, rate {} blocks/s{}{}{auth}",
        control_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        view.mode,
        view.height,
        view.target,
        view.rate,
        cfg.block_seconds
            .map(|s| format!(", a new block every {s}s while synced"))
            .unwrap_or_default(),
        cfg.data_dir
            .as_ref()
            .map(|d| format!(", data-dir {}", d.display()))
            .unwrap_or_default(),
    ));
    shared.log_all(notes);
    shared.persist(true);

    let mut threads = Vec::new();
    let s = shared.clone();
    threads.push(
        thread::Builder::new()
            .name("berth-fake-service".into())
            .spawn(move || service_acceptor(s, service))?,
    );
    if let Some(l) = control {
        let s = shared.clone();
        threads.push(
            thread::Builder::new()
                .name("berth-fake-control".into())
                .spawn(move || control_acceptor(s, l))?,
        );
    }
    let s = shared.clone();
    threads.push(
        thread::Builder::new()
            .name("berth-fake-ticker".into())
            .spawn(move || ticker(s))?,
    );
    shared.log(&format!(
        "ready listen={listen_addr} control={}",
        control_addr.map_or_else(|| "off".to_string(), |a| a.to_string())
    ));
    Ok(Fake {
        shared,
        threads,
        exit_rx: Some(exit_rx),
    })
}

impl Fake {
    /// The bound service address (with the real port when 0 was asked).
    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen_addr
    }

    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.shared.control_addr
    }

    pub fn view(&self) -> View {
        self.shared.view()
    }

    /// The same JSON as `GET /control`.
    pub fn state_json(&self) -> Value {
        self.shared.state_json()
    }

    /// The same as `POST /control` (an `exit` stops this fake and reports
    /// the code on the exit receiver).
    pub fn control(&self, req: ControlRequest) -> Result<Value, String> {
        let update = req.validate()?;
        if let Some(code) = update.exit {
            self.shared.request_exit(code);
            return Ok(json!({"exiting": true, "code": code}));
        }
        self.shared.apply(&update);
        Ok(self.shared.state_json())
    }

    /// Receives the code of an `exit` control request.
    pub fn take_exit_receiver(&mut self) -> Option<Receiver<i32>> {
        self.exit_rx.take()
    }

    pub fn log(&self, msg: &str) {
        self.shared.log(msg);
    }

    /// Writes the current height to the data dir now.
    pub fn persist(&self) {
        self.shared.view();
        self.shared.persist(true);
    }

    /// Stops serving, persists the height and joins the threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.persist();
        self.shared.begin_shutdown();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop();
        }
    }
}

/// Parses a `POST /control` body (empty means `{}`).
pub fn parse_control_body(body: &[u8]) -> Result<Update, String> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Update::default());
    }
    let req: ControlRequest =
        serde_json::from_slice(body).map_err(|e| format!("invalid control request: {e}"))?;
    req.validate()
}
