//! Spawns the real `berth-fake` binary on 127.0.0.1 ephemeral ports and
//! drives every mode over HTTP/TCP with std::net. No fixed sleeps: every
//! wait polls a condition with a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(10);

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "berth-fake-it-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Daemon {
    child: Child,
    listen: SocketAddr,
    control: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    line_rx: Receiver<String>,
}

impl Daemon {
    fn spawn(app: &str, extra: &[&str]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth-fake"))
            .arg(app)
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn berth-fake");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, line_rx) = mpsc::channel();
        let sink = lines.clone();
        // Keep draining stdout so the child never blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        // Owned by the Daemon from here on, so Drop kills it on any panic.
        let unspecified: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let mut d = Daemon {
            child,
            listen: unspecified,
            control: unspecified,
            lines,
            line_rx,
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = d
                .line_rx
                .recv_timeout(left)
                .expect("berth-fake did not print its ready line");
            if let Some(rest) = line.split("ready listen=").nth(1) {
                let (listen, control) = rest.split_once(" control=").unwrap();
                d.listen = listen.parse().unwrap();
                d.control = control.parse().unwrap();
                wait_connect(d.listen);
                wait_connect(d.control);
                return d;
            }
        }
    }

    fn control(&self, body: Value) -> Value {
        let (status, _, body) = http(
            self.control,
            "POST",
            "/control",
            &[],
            body.to_string().as_bytes(),
        )
        .expect("control request");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    fn state(&self) -> Value {
        let (status, _, body) = http(self.control, "GET", "/control", &[], b"").unwrap();
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "berth-fake did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        if let Some(l) = self
            .lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
        {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.line_rx.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!(
                    "no log line containing {needle:?}; got {:?}",
                    self.lines.lock().unwrap()
                ),
            }
        }
    }

    fn all_output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_connect(addr: SocketAddr) {
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{addr} never accepted a connection"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn is_refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

fn poll_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

type Headers = Vec<(String, String)>;

fn parse_response(raw: &[u8]) -> (u16, Headers, Vec<u8>) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

/// One request on a fresh connection with `Connection: close`.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Headers, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes())?;
    // The server may answer (e.g. 413) and stop reading before the whole
    // body is sent: keep going and read what it said.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    if raw.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without a response",
        ));
    }
    Ok(parse_response(&raw))
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn rpc(d: &Daemon, auth: Option<&str>, method: &str) -> (u16, Value) {
    let body = json!({"jsonrpc": "1.0", "id": "it", "method": method, "params": []}).to_string();
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    let (status, _, body) = http(d.listen, "POST", "/", &headers, body.as_bytes()).unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, json)
}

fn write_secret(dir: &Path, pw: &str) -> PathBuf {
    let p = dir.join("rpcpassword");
    std::fs::write(&p, format!("{pw}\n")).unwrap();
    p
}

#[test]
fn bitcoind_auth_and_every_mode() {
    let dir = temp_dir("btc");
    let secret = write_secret(&dir, "hunter2-very-secret");
    let d = Daemon::spawn(
        "bitcoind",
        &[
            "--rpc-user",
            "berth",
            "--rpc-password-file",
            secret.to_str().unwrap(),
            "--mode",
            "synced",
            "--height",
            "100",
        ],
    );
    let good = basic("berth", "hunter2-very-secret");

    // Auth.
    let (s, _) = rpc(&d, None, "getblockcount");
    assert_eq!(s, 401);
    let (s, _) = rpc(&d, Some(&basic("berth", "nope")), "getblockcount");
    assert_eq!(s, 401);
    let (s, _) = rpc(
        &d,
        Some(&basic("other", "hunter2-very-secret")),
        "getblockcount",
    );
    assert_eq!(s, 401);

    // synced
    let (s, r) = rpc(&d, Some(&good), "getblockchaininfo");
    assert_eq!(s, 200, "{r}");
    let i = &r["result"];
    assert_eq!(
        (i["blocks"].as_u64(), i["headers"].as_u64()),
        (Some(100), Some(100))
    );
    assert_eq!(i["initialblockdownload"], false);
    assert_eq!(i["verificationprogress"], 1.0);
    assert_eq!(r["id"], "it");
    assert_eq!(rpc(&d, Some(&good), "getblockcount").1["result"], 100);
    assert!(rpc(&d, Some(&good), "uptime").1["result"].is_u64());
    assert!(rpc(&d, Some(&good), "getnetworkinfo").1["result"]["subversion"].is_string());
    let (s, r) = rpc(&d, Some(&good), "nosuchmethod");
    assert_eq!((s, r["error"]["code"].as_i64()), (404, Some(-32601)));

    // syncing, frozen at 43%
    let st = d.control(json!({"mode": "syncing", "height": 430, "target": 1000, "rate": 0}));
    assert_eq!(st["mode"], "syncing");
    let i = rpc(&d, Some(&good), "getblockchaininfo").1["result"].clone();
    assert_eq!(
        (i["blocks"].as_u64(), i["headers"].as_u64()),
        (Some(430), Some(1000))
    );
    assert_eq!(i["initialblockdownload"], true);
    assert!((i["verificationprogress"].as_f64().unwrap() - 0.43).abs() < 1e-9);

    // starting → -28
    d.control(json!({"mode": "starting"}));
    let (s, r) = rpc(&d, Some(&good), "getblockchaininfo");
    assert_eq!((s, r["error"]["code"].as_i64()), (500, Some(-28)));
    assert_eq!(r["error"]["message"], "Loading block index…");

    // busy → 503
    d.control(json!({"mode": "busy"}));
    let (s, _, body) = http(d.listen, "POST", "/", &[("Authorization", &good)], b"{}").unwrap();
    assert_eq!(s, 503);
    assert_eq!(body, b"Work queue depth exceeded");

    // down → connection refused as soon as the control call returns;
    // control stays up.
    let st = d.control(json!({"mode": "down"}));
    assert_eq!(st["listener_open"], false);
    assert!(is_refused(d.listen));
    assert_eq!(d.state()["mode"], "down");

    // back to syncing: the port reopens, height resumes, and it syncs to
    // the target by itself.
    let st = d.control(json!({"mode": "syncing", "sync_seconds": 2}));
    assert_eq!(st["listener_open"], true);
    wait_connect(d.listen);
    poll_until("synced", || {
        let i = rpc(&d, Some(&good), "getblockchaininfo").1["result"].clone();
        i["blocks"] == 1000 && i["initialblockdownload"] == false
    });
    assert_eq!(d.state()["mode"], "synced");
    d.wait_log("sync complete at height 1000");
    d.wait_log("sync progress 90%");

    // Malformed request → 400, not a crash.
    let mut s = TcpStream::connect(d.listen).unwrap();
    s.write_all(b"THIS IS NOT HTTP\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert_eq!(parse_response(&raw).0, 400);
    // Oversized body → 413.
    let (s, _, _) = http(
        d.listen,
        "POST",
        "/",
        &[("Authorization", &good)],
        &vec![b' '; 1024 * 1024 + 1],
    )
    .unwrap();
    assert_eq!(s, 413);

    // Keep-alive: two requests on one connection.
    let mut s = TcpStream::connect(d.listen).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let body = r#"{"id":1,"method":"getblockcount"}"#;
    let req = format!(
        "POST / HTTP/1.1\r\nAuthorization: {good}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for _ in 0..2 {
        s.write_all(req.as_bytes()).unwrap();
        let mut len = 0;
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0; len];
        reader.read_exact(&mut buf).unwrap();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["result"], 1000);
    }

    // Control errors.
    let (s, _, _) = http(d.control, "POST", "/control", &[], br#"{"mode":"sleepy"}"#).unwrap();
    assert_eq!(s, 400);
    let (s, _, _) = http(d.control, "POST", "/control", &[], b"{").unwrap();
    assert_eq!(s, 400);

    // The password never reaches the logs.
    d.wait_log("control: mode");
    assert!(!d.all_output().contains("hunter2"), "{}", d.all_output());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn crash_injection_exits_with_the_code() {
    let mut d = Daemon::spawn("http", &[]);
    let r = d.control(json!({"mode": "exit", "code": 7}));
    assert_eq!(r, json!({"exiting": true, "code": 7}));
    assert_eq!(d.wait_exit().code(), Some(7));
    let mut d = Daemon::spawn("tcp", &[]);
    d.control(json!({"mode": "exit"}));
    assert_eq!(d.wait_exit().code(), Some(1));
}

#[test]
fn monerod_modes_persistence_marker_and_sigterm() {
    let dir = temp_dir("xmr");
    let data = dir.join("data");
    let data_s = data.to_str().unwrap();
    let mut d = Daemon::spawn(
        "monerod",
        &[
            "--mode",
            "syncing",
            "--height",
            "10",
            "--target",
            "1000000",
            "--sync-rate",
            "0",
            "--data-dir",
            data_s,
        ],
    );
    let get_info = |d: &Daemon| -> Value {
        let (s, _, body) = http(
            d.listen,
            "POST",
            "/json_rpc",
            &[("Content-Type", "application/json")],
            br#"{"jsonrpc":"2.0","id":"0","method":"get_info"}"#,
        )
        .unwrap();
        assert_eq!(s, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        v["result"].clone()
    };
    let i = get_info(&d);
    assert_eq!(
        (i["height"].as_u64(), i["target_height"].as_u64()),
        (Some(10), Some(1_000_000))
    );
    assert_eq!(
        (i["synchronized"].as_bool(), i["busy_syncing"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(i["status"], "OK");

    // GET /get_info serves the same object as plain JSON.
    let (s, _, body) = http(d.listen, "GET", "/get_info", &[], b"").unwrap();
    assert_eq!(s, 200);
    let plain: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(plain["height"], 10);
    assert_eq!(plain["status"], "OK");

    // Height advances by itself.
    d.control(json!({"rate": 1000}));
    poll_until("height to advance", || {
        get_info(&d)["height"].as_u64().unwrap() > 100
    });

    d.control(json!({"mode": "busy"}));
    assert_eq!(get_info(&d)["status"], "BUSY");
    d.control(json!({"mode": "starting"}));
    let i = get_info(&d);
    assert_eq!(
        (i["target_height"].as_u64(), i["synchronized"].as_bool()),
        (Some(0), Some(false))
    );
    assert!(i["height"].as_u64().unwrap() <= 1);
    d.control(json!({"mode": "down"}));
    assert!(is_refused(d.listen));
    let st = d.control(json!({"mode": "synced"}));
    assert_eq!(st["listener_open"], true);
    let i = get_info(&d);
    assert_eq!(i["synchronized"], true);
    // As monerod 0.18 does once synchronized: no target height.
    assert_eq!(i["target_height"], 0);

    // Back to syncing at a known height; it is persisted.
    d.control(json!({"mode": "syncing", "height": 5000, "target": 1_000_000, "rate": 0}));
    poll_until("height file", || {
        std::fs::read_to_string(data.join("height")).is_ok_and(|s| s.trim() == "5000")
    });

    // Marker.
    let (s, _, _) = http(d.control, "GET", "/marker", &[], b"").unwrap();
    assert_eq!(s, 404);
    let (s, _, _) = http(d.control, "PUT", "/marker", &[], b"install-1").unwrap();
    assert_eq!(s, 200);
    let (s, _, body) = http(d.control, "GET", "/marker", &[], b"").unwrap();
    assert_eq!((s, body.as_slice()), (200, &b"install-1"[..]));

    // SIGTERM → exit 0, promptly.
    let t = Instant::now();
    d.sigterm();
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    d.wait_log("received SIGTERM, exiting 0");

    // A restart with the same data dir resumes the height (not --height)
    // and still has the marker.
    let d = Daemon::spawn(
        "monerod",
        &[
            "--mode",
            "syncing",
            "--height",
            "10",
            "--target",
            "1000000",
            "--sync-rate",
            "0",
            "--data-dir",
            data_s,
        ],
    );
    assert_eq!(get_info(&d)["height"], 5000);
    d.wait_log("resumed height 5000");
    let (s, _, body) = http(d.control, "GET", "/marker", &[], b"").unwrap();
    assert_eq!((s, body.as_slice()), (200, &b"install-1"[..]));
    let (s, _, _) = http(d.control, "DELETE", "/marker", &[], b"").unwrap();
    assert_eq!(s, 200);
    let (s, _, _) = http(d.control, "GET", "/marker", &[], b"").unwrap();
    assert_eq!(s, 404);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http_app_modes() {
    let d = Daemon::spawn("http", &["--name", "mempool", "--body", "Mempool explorer"]);
    let (s, headers, body) = http(d.listen, "GET", "/", &[], b"").unwrap();
    assert_eq!(s, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/html"))
    );
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<h1>mempool</h1>") && page.contains("Mempool explorer"));
    let (s, _, body) = http(d.listen, "GET", "/health", &[], b"").unwrap();
    assert_eq!((s, body.as_slice()), (200, &b"ok\n"[..]));
    for mode in ["busy", "down", "starting"] {
        d.control(json!({ "mode": mode }));
        let (s, _, _) = http(d.listen, "GET", "/health", &[], b"").unwrap();
        assert_eq!(s, 503, "{mode}");
    }
    d.control(json!({"mode": "synced"}));
    assert_eq!(http(d.listen, "GET", "/health", &[], b"").unwrap().0, 200);
    assert_eq!(http(d.listen, "GET", "/nope", &[], b"").unwrap().0, 404);
    // HEAD has headers only.
    let mut s = TcpStream::connect(d.listen).unwrap();
    s.write_all(b"HEAD / HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (st, h, b) = parse_response(&raw);
    assert_eq!(st, 200);
    assert!(b.is_empty());
    assert!(h.iter().any(|(k, v)| k == "content-length" && v != "0"));
}

#[test]
fn tcp_app_banner_and_modes() {
    let d = Daemon::spawn("tcp", &["--name", "electrs", "--height", "77"]);
    let read_line = |addr| {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        (r, line)
    };
    let (mut r, line) = read_line(d.listen);
    assert!(line.contains("electrs"), "{line}");
    r.get_mut()
        .write_all(b"{\"id\":1,\"method\":\"blockchain.headers.subscribe\",\"params\":[]}\n")
        .unwrap();
    let mut reply = String::new();
    r.read_line(&mut reply).unwrap();
    let v: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["result"]["height"], 77);

    d.control(json!({"mode": "busy"}));
    assert_eq!(read_line(d.listen).1, "BUSY\n");
    d.control(json!({"mode": "down"}));
    assert!(is_refused(d.listen));
    d.control(json!({"mode": "syncing", "rate": 0}));
    wait_connect(d.listen);
    assert!(read_line(d.listen).1.contains("electrs"));
}

#[test]
fn cli_errors_and_help() {
    let bin = env!("CARGO_BIN_EXE_berth-fake");
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--control",
        "--rpc-password-file",
        "--sync-seconds",
        "--data-dir",
    ] {
        assert!(help.contains(flag), "{flag}");
    }
    for bad in [&["nope"][..], &["bitcoind", "--mode", "x"], &[]] {
        let out = Command::new(bin).args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("berth-fake:"));
    }
    // Port already taken → exit 1 with a message.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(bin)
        .args(["http", "--listen", &addr, "--control", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

#[test]
fn in_process_fake_works_too() {
    let mut cfg = berth_fake::Config::for_test(berth_fake::App::Monerod);
    cfg.mode = berth_fake::Mode::Starting;
    let fake = berth_fake::start(cfg).unwrap();
    let (s, _, body) = http(fake.listen_addr(), "GET", "/get_info", &[], b"").unwrap();
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["target_height"], 0);
    fake.control(berth_fake::ControlRequest {
        mode: Some("down".into()),
        ..Default::default()
    })
    .unwrap();
    assert!(is_refused(fake.listen_addr()));
    let listen = fake.listen_addr();
    fake.shutdown();
    assert!(is_refused(listen));
}

/// A synced node whose tip advances by itself (`--block-seconds`), frozen
/// and thawed over the real control port; bitcoind's RPC and the persisted
/// height follow.
#[test]
fn synced_tip_advances_and_freezes_on_request() {
    let dir = temp_dir("blocks");
    let data = dir.to_str().unwrap();
    let d = Daemon::spawn(
        "bitcoind",
        &[
            "--height",
            "1000",
            "--block-seconds",
            "0.2",
            "--data-dir",
            data,
        ],
    );
    let blocks = || {
        let (status, v) = rpc(&d, None, "getblockchaininfo");
        assert_eq!(status, 200, "{v}");
        let r = &v["result"];
        assert_eq!(r["blocks"], r["headers"], "synced: blocks == headers");
        assert_eq!(r["initialblockdownload"], false);
        r["blocks"].as_u64().unwrap()
    };
    let start = blocks();
    poll_until("new blocks", || blocks() >= start + 3);
    let persisted = || {
        std::fs::read_to_string(dir.join("height"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    poll_until("the height file to follow", || {
        persisted().is_some_and(|h| h >= start + 3)
    });
    assert_eq!(d.state()["block_seconds"], 0.2);

    let state = d.control(json!({"freeze": true}));
    assert_eq!(state["frozen"], true);
    let frozen = state["height"].as_u64().unwrap();
    d.wait_log(&format!("height frozen at {frozen}"));
    // Frozen: five block intervals and more pass without a new block.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(blocks(), frozen);
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.state()["height"], frozen);

    // Thawed: blocks resume from the frozen tip, none owed for the pause.
    let state = d.control(json!({"freeze": false}));
    assert_eq!(state["frozen"], false);
    let thawed = blocks();
    assert!(thawed <= frozen + 1, "{thawed} vs {frozen}");
    poll_until("blocks again", || blocks() > frozen + 1);
    // Bad values are refused.
    let (status, _, body) = http(
        d.control,
        "POST",
        "/control",
        &[],
        br#"{"block_seconds": -1}"#,
    )
    .unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
}
