//! The HTTP API end to end on `FakeEngine`: the real `run` (socket, loop,
//! publisher, TCP server on 127.0.0.1:0) driven over real TCP with a raw
//! HTTP/1.1 client, so every header, status and byte is what a client sees.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_engine::{CallKind, FakeEngine};
use berth_store::StateDir;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::config::Settings;
use crate::{DaemonConfig, run};

mod runs;

const IMAGE: &str = "localhost/app:1";

struct Daemon {
    tmp: tempfile::TempDir,
    addr: std::net::SocketAddr,
    token: String,
    fake: FakeEngine,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    async fn start(apps: &str) -> Daemon {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("berth.toml"),
            format!("[stack]\nname = \"s\"\nstart_timeout = \"5s\"\n\n{apps}"),
        )
        .unwrap();
        let fake = FakeEngine::new();
        fake.add_image(IMAGE);
        let root = tmp.path().join("state");
        let state = StateDir::open(&root).unwrap();
        let settings = Settings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            event_debounce: Duration::from_millis(20),
            ..Settings::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let engine = Arc::new(fake.clone());
        let task = tokio::spawn(async move {
            run(
                DaemonConfig {
                    state,
                    engine,
                    settings,
                    pull_policy: berth_ops::PullPolicy::default(),
                },
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .expect("daemon runs");
        });
        let started = Instant::now();
        let addr = loop {
            if let Some(a) = super::read_address(&root) {
                break a;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no api-address"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let token = std::fs::read_to_string(super::auth::token_path(&root))
            .unwrap()
            .trim()
            .to_string();
        Daemon {
            tmp,
            addr,
            token,
            fake,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn stack_file(&self) -> String {
        self.tmp.path().join("berth.toml").display().to_string()
    }

    fn state_root(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    async fn get(&self, path: &str) -> Resp {
        let auth = self.bearer();
        request(self.addr, "GET", path, &[("Authorization", &auth)], b"").await
    }

    async fn rpc(&self, method: &str, params: Value) -> Value {
        let auth = self.bearer();
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let r = request(
            self.addr,
            "POST",
            "/rpc/v1",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{method}: {}", r.text());
        r.json()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("daemon stops")
                .expect("daemon task");
        }
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // A server may answer (413) before reading a large body: ignore the
    // broken pipe that follows.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("response within 30 s")
        .ok();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
}

/// A live stream being read: every event received so far.
struct Stream {
    sock: TcpStream,
    buf: Vec<u8>,
    pub events: Vec<(String, String)>,
}

impl Stream {
    async fn open(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Stream {
        let mut sock = TcpStream::connect(addr).await.unwrap();
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        sock.write_all(head.as_bytes()).await.unwrap();
        Stream {
            sock,
            buf: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Read until an event satisfies `pred`; returns it.
    async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str, &str) -> bool,
    ) -> (String, String) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = 0;
        loop {
            self.parse();
            for (name, data) in &self.events[seen..] {
                if pred(name, data) {
                    return (name.clone(), data.clone());
                }
            }
            seen = self.events.len();
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout_at(deadline, self.sock.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no live event {what} within {timeout:?}; got {:?}",
                        self.events
                            .iter()
                            .map(|(n, d)| format!("{n}: {}", &d[..d.len().min(120)]))
                            .collect::<Vec<_>>()
                    )
                })
                .unwrap();
            assert!(n > 0, "stream closed while waiting for {what}");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Pull complete events out of the buffer (chunk framing stripped
    /// loosely: SSE lines never look like chunk sizes followed by CRLF).
    fn parse(&mut self) {
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        let body = match text.find("\r\n\r\n") {
            Some(i) => &text[i + 4..],
            None => return,
        };
        let mut events = Vec::new();
        let mut name = String::from("message");
        let mut data: Vec<String> = Vec::new();
        for line in body.split('\n') {
            let line = line.trim_end_matches('\r');
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
            } else if line.is_empty() && !data.is_empty() {
                events.push((
                    std::mem::replace(&mut name, "message".into()),
                    data.join("\n"),
                ));
                data.clear();
            }
        }
        self.events = events;
    }
}

fn app(id: &str, extra: &str) -> String {
    format!("[apps.{id}]\nimage = \"{IMAGE}\"\nstop_grace = \"5s\"\n{extra}\n")
}

fn two_apps() -> String {
    format!(
        "{}{}",
        app("a", "secrets = [\"pw\"]\nvolumes = { data = \"/data\" }"),
        app("b", "depends_on = { a = \"started\" }")
    )
}

/// Calls that change something in the engine.
fn mutating_calls(fake: &FakeEngine) -> usize {
    [
        CallKind::Create,
        CallKind::Start,
        CallKind::Stop,
        CallKind::Kill,
        CallKind::Remove,
        CallKind::EnsureNetwork,
        CallKind::EnsureVolume,
        CallKind::RemoveNetwork,
        CallKind::RemoveVolume,
        CallKind::Pull,
    ]
    .iter()
    .map(|k| fake.count_calls(*k))
    .sum()
}

/// `/metrics` once it holds every one of `needles` (the health monitor,
/// the loop and the engine wrapper record theirs from their own tasks, so
/// a read right after a request may come before them).
async fn wait_metrics(d: &Daemon, needles: &[&str]) -> Resp {
    let started = Instant::now();
    loop {
        let m = d.get("/metrics").await;
        let text = m.text();
        let missing: Vec<_> = needles.iter().filter(|n| !text.contains(*n)).collect();
        if missing.is_empty() {
            return m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "metrics lack {missing:?} after 10 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_state(d: &Daemon, app: &str, want: &str) -> Value {
    let started = Instant::now();
    loop {
        let s = d.get("/api/state").await.json();
        let a = s["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == app)
            .cloned();
        if let Some(a) = &a
            && a["badge"]["kind"] == want
        {
            return a.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{app} never {want}: {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_needs_the_token_except_health() {
    let d = Daemon::start(&format!(
        "{}[apps.a.health]\ncommand = [\"check\"]\ninterval = \"1s\"\n",
        two_apps()
    ))
    .await;
    d.rpc(
        "package.install",
        json!({"stack_file": d.stack_file(), "apps": ["a"]}),
    )
    .await;

    // /health: anyone, and nothing but "ok".
    let h = request(d.addr, "GET", "/health", &[], b"").await;
    assert_eq!((h.status, h.text().as_str()), (200, "ok\n"));

    let endpoints: &[(&str, &str, &[u8])] = &[
        ("GET", "/api/state", b""),
        ("GET", "/api/apps/a", b""),
        ("GET", "/api/events", b""),
        ("GET", "/api/events/stream", b""),
        ("GET", "/api/openapi.json", b""),
        ("GET", "/metrics", b""),
        (
            "POST",
            "/rpc/v1",
            br#"{"jsonrpc":"2.0","id":1,"method":"daemon.status"}"#,
        ),
        ("POST", "/ui/apps/a/stop", b""),
        ("POST", "/logout", b""),
    ];
    let wrong = format!("Bearer {}", "0".repeat(64));
    for (method, path, body) in endpoints {
        let r = request(d.addr, method, path, &[], body).await;
        assert_eq!(
            r.status,
            401,
            "{method} {path} without a token: {}",
            r.text()
        );
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"berth\""));
        assert!(!r.text().contains(&d.token));
    }
    // Every JSON-RPC method: refused before it is even parsed.
    for method in crate::rpc::METHODS {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}).to_string();
        let r = request(d.addr, "POST", "/rpc/v1", &[], body.as_bytes()).await;
        assert_eq!(r.status, 401, "{method} without a token");
    }
    // Pages send a browser to the login form instead.
    for path in ["/", "/ui/apps/a/uninstall"] {
        let r = request(d.addr, "GET", path, &[], b"").await;
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/login")),
            "{path}"
        );
    }
    // A wrong token (a few: under the lockout burst).
    for (method, path, body) in &endpoints[..3] {
        let r = request(d.addr, method, path, &[("Authorization", &wrong)], body).await;
        assert_eq!(r.status, 401, "{method} {path} with a wrong token");
    }
    // And the right one.
    let auth = d.bearer();
    for (method, path, want) in [
        ("GET", "/api/state", 200),
        ("GET", "/api/apps/a", 200),
        ("GET", "/api/apps/nope", 404),
        ("GET", "/api/events?limit=5", 200),
        ("GET", "/api/events?limit=x", 400),
        ("GET", "/api/events?bogus=1", 400),
        ("GET", "/api/openapi.json", 200),
        ("GET", "/metrics", 200),
        ("GET", "/", 200),
    ] {
        let r = request(d.addr, method, path, &[("Authorization", &auth)], b"").await;
        assert_eq!(r.status, want, "{method} {path}: {}", r.text());
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r.header("content-security-policy").is_some());
    }
    // Public: the login form and the static files (no secrets in them).
    assert_eq!(request(d.addr, "GET", "/login", &[], b"").await.status, 200);
    let js = request(d.addr, "GET", "/static/htmx.min.js", &[], b"").await;
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(
        request(d.addr, "GET", "/static/nope.js", &[], b"")
            .await
            .status,
        404
    );

    // The metrics name what the issue asks for (an engine error included).
    d.fake.fail_next_on(CallKind::Logs, 1);
    let r = d.rpc("container.logs", json!({"app": "a"})).await;
    assert!(r.get("error").is_some(), "{r}");
    // The probe latency is recorded by the health monitor's own task after
    // its first probe, and the tick duration by the loop: wait for them
    // (regression: read before the first probe under the full suite's load).
    let needles = [
        "berth_app_state{app=\"a\",stack=\"s\",state=\"running\"} 1",
        "berth_app_restarts{",
        "berth_reconcile_tick_duration_seconds_count",
        "berth_engine_calls_total{op=\"list_containers\"}",
        "berth_engine_errors_total{op=\"logs\",kind=\"other\"} 1",
        "berth_health_probe_duration_seconds",
        "berth_http_requests_total{class=\"4xx\"}",
        "# EOF",
    ];
    let m = wait_metrics(&d, &needles).await;
    assert!(
        m.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_over_tcp_serves_every_method_and_bad_requests_change_nothing() {
    let d = Daemon::start(&two_apps()).await;
    let file = d.stack_file();
    let ok = |v: &Value| assert!(v.get("result").is_some(), "{v}");
    ok(&d
        .rpc(
            "package.install",
            json!({"stack_file": file, "apps": ["a", "b"]}),
        )
        .await);
    d.fake.set_logs("s-a", vec!["hello from a".into()]);
    for (method, params) in [
        ("daemon.status", json!({})),
        ("container.list", json!({})),
        ("container.health", json!({})),
        ("container.logs", json!({"app": "a", "tail": 5})),
        ("events.list", json!({"limit": 3})),
        ("gate.status", json!({})),
        ("package.stop", json!({"apps": ["b"]})),
        ("package.start", json!({"apps": ["b"]})),
        ("package.restart", json!({"apps": ["b"]})),
        (
            "package.reinstall",
            json!({"stack_file": file, "apps": ["b"]}),
        ),
        ("package.uninstall", json!({"apps": ["b"]})),
        ("stack.up", json!({"stack_file": file})),
    ] {
        let r = d.rpc(method, params).await;
        ok(&r);
    }
    // A domain error, not a crash: b has no gate.
    let r = d.rpc("gate.reset", json!({"app": "b"})).await;
    assert_eq!(r["error"]["code"], crate::rpc::OPERATION_FAILED, "{r}");
    let logs = d.rpc("container.logs", json!({"app": "a"})).await;
    assert_eq!(logs["result"]["lines"], json!(["hello from a"]));
    // Same answer as the socket: the same dispatcher.
    let via_socket = crate::Client::connect(&crate::socket_path(&d.state_root()))
        .await
        .expect("the socket answers")
        .call("container.health", json!({}), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        d.rpc("container.health", json!({})).await["result"],
        via_socket
    );

    // Bad requests: the right code, and nothing changes.
    d.fake.take_calls();
    let events_before = d.get("/api/events?limit=1000").await.json()["events"]
        .as_array()
        .unwrap()
        .len();
    let auth = d.bearer();
    let post = |body: Vec<u8>| {
        let auth = auth.clone();
        async move {
            request(
                d.addr,
                "POST",
                "/rpc/v1",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                &body,
            )
            .await
        }
    };
    let code = |r: &Resp| r.json()["error"]["code"].as_i64().unwrap();
    let cases: Vec<(&str, Vec<u8>, i64)> = vec![
        ("malformed JSON", b"{\"jsonrpc\": \"2.0\", ".to_vec(), crate::rpc::PARSE_ERROR),
        ("batch", br#"[{"jsonrpc":"2.0","id":1,"method":"daemon.status"}]"#.to_vec(), crate::rpc::INVALID_REQUEST),
        ("not 2.0", br#"{"jsonrpc":"1.0","id":1,"method":"daemon.status"}"#.to_vec(), crate::rpc::INVALID_REQUEST),
        ("unknown method", br#"{"jsonrpc":"2.0","id":1,"method":"package.frob","params":{}}"#.to_vec(), crate::rpc::METHOD_NOT_FOUND),
        ("wrong param type", br#"{"jsonrpc":"2.0","id":1,"method":"package.stop","params":{"apps":"a"}}"#.to_vec(), crate::rpc::INVALID_PARAMS),
        ("unknown param", br#"{"jsonrpc":"2.0","id":1,"method":"package.stop","params":{"apps":["a"],"force":true}}"#.to_vec(), crate::rpc::INVALID_PARAMS),
        ("relative stack file", br#"{"jsonrpc":"2.0","id":1,"method":"package.install","params":{"stack_file":"x.toml","apps":["a"]}}"#.to_vec(), crate::rpc::INVALID_PARAMS),
        ("unknown app", br#"{"jsonrpc":"2.0","id":1,"method":"package.stop","params":{"apps":["zzz"]}}"#.to_vec(), crate::rpc::UNKNOWN_APP),
        ("dependency conflict", br#"{"jsonrpc":"2.0","id":1,"method":"package.uninstall","params":{"apps":["a"]}}"#.to_vec(), crate::rpc::DEPENDENCY_CONFLICT),
        ("NUL in one app id of two", br#"{"jsonrpc":"2.0","id":1,"method":"package.stop","params":{"apps":["a","a\u0000"]}}"#.to_vec(), crate::rpc::INVALID_PARAMS),
        ("tail beyond its type", br#"{"jsonrpc":"2.0","id":1,"method":"container.logs","params":{"app":"a","tail":18446744073709551616}}"#.to_vec(), crate::rpc::INVALID_PARAMS),
    ];
    for (what, body, want) in cases {
        let r = post(body).await;
        assert_eq!(r.status, 200, "{what}");
        assert_eq!(code(&r), want, "{what}: {}", r.text());
    }
    // Oversized: refused before it is read, with a JSON-RPC error too.
    let mut big =
        br#"{"jsonrpc":"2.0","id":1,"method":"package.stop","params":{"apps":["a"],"pad":""#
            .to_vec();
    big.extend(std::iter::repeat_n(b'x', crate::rpc::RPC_BODY_BYTES_MAX));
    big.extend(b"\"}}");
    let r = post(big.clone()).await;
    assert_eq!(r.status, 413);
    assert_eq!(code(&r), crate::rpc::INVALID_REQUEST);
    // The socket refuses it the same way (regression: it answered 200).
    let mut sock = tokio::net::UnixStream::connect(crate::socket_path(&d.state_root()))
        .await
        .unwrap();
    let head = format!(
        "POST /rpc/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before taking the whole body.
    let _ = sock.write_all(&big).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut raw))
        .await
        .expect("the socket answers an oversized body")
        .unwrap();
    let r = parse_response(&raw);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(code(&r), crate::rpc::INVALID_REQUEST);
    assert_eq!(mutating_calls(&d.fake), 0, "{:?}", d.fake.calls());
    assert_eq!(
        d.fake.container("s-a").unwrap().status,
        berth_core::classify::EngineStatus::Running
    );
    let events_after = d.get("/api/events?limit=1000").await.json()["events"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        events_before, events_after,
        "no event from a refused request"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_sends_the_state_then_every_change_and_event() {
    let d = Daemon::start(&two_apps()).await;
    d.rpc(
        "package.install",
        json!({"stack_file": d.stack_file(), "apps": ["a"]}),
    )
    .await;
    wait_state(&d, "a", "running").await;
    let auth = d.bearer();
    let mut s = Stream::open(d.addr, "/api/events/stream", &[("Authorization", &auth)]).await;
    let (_, first) = s
        .until("state", Duration::from_secs(5), |n, _| n == "state")
        .await;
    let state: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(state["apps"][0]["badge"]["kind"], "running");

    d.rpc("package.stop", json!({"apps": ["a"]})).await;
    let (_, app) = s
        .until("a stopped", Duration::from_secs(5), |n, data| {
            n == "app" && data.contains("\"kind\":\"stopped\"")
        })
        .await;
    let app: Value = serde_json::from_str(&app).unwrap();
    assert_eq!(
        (app["id"].as_str(), app["desired"].as_str()),
        (Some("a"), Some("stopped"))
    );
    s.until("an event", Duration::from_secs(5), |n, _| n == "event")
        .await;

    // Resume after an id: the history since then first.
    let page = d.get("/api/events?limit=1000").await.json();
    let first_id = page["events"][0]["id"].as_i64().unwrap();
    let mut r = Stream::open(
        d.addr,
        "/api/events/stream",
        &[
            ("Authorization", &auth),
            ("Last-Event-ID", &first_id.to_string()),
        ],
    )
    .await;
    let (_, e) = r
        .until("replayed event", Duration::from_secs(5), |n, _| {
            n == "event"
        })
        .await;
    let e: Value = serde_json::from_str(&e).unwrap();
    assert_eq!(e["id"].as_i64(), Some(first_id + 1));

    // The dashboard's stream sends HTML fragments with the same changes.
    d.rpc("package.start", json!({"apps": ["a"]})).await;
    let mut ui = Stream::open(d.addr, "/ui/stream", &[("Authorization", &auth)]).await;
    ui.until("app card", Duration::from_secs(5), |n, data| {
        n == "apps" && data.contains("id=\"app-a\"")
    })
    .await;
    d.rpc("package.stop", json!({"apps": ["a"]})).await;
    ui.until("grey card", Duration::from_secs(5), |n, data| {
        n == "app-a" && data.contains("data-state=\"stopped\"") && data.contains("tone-idle")
    })
    .await;
    d.rpc("package.uninstall", json!({"apps": ["a"]})).await;
    s.until("app-removed", Duration::from_secs(5), |n, _| {
        n == "app-removed"
    })
    .await;
    s.until("apps", Duration::from_secs(5), |n, _| n == "apps")
        .await;

    // Every API event's data is exactly what the OpenAPI document's
    // `LiveEvent` declares for its name: it decodes into the declared type
    // and encodes back to the same JSON (nothing missing, nothing extra).
    // Regression: a payload that did not match its declared schema.
    let mut names = BTreeSet::new();
    for (name, data) in s.events.iter().chain(&r.events) {
        let data: Value = serde_json::from_str(data).unwrap();
        let tagged = json!({"event": name, "data": data});
        let decoded: super::api::LiveEvent = serde_json::from_value(tagged.clone())
            .unwrap_or_else(|e| panic!("{name}: {e}: {data}"));
        assert_eq!(serde_json::to_value(&decoded).unwrap(), tagged, "{name}");
        names.insert(name.clone());
    }
    for want in ["state", "app", "event", "app-removed", "apps", "badges"] {
        assert!(names.contains(want), "no {want} event seen: {names:?}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_query_parameters_beyond_their_documented_bounds_are_refused() {
    // Regression: `limit=2^64` answered 400 while the schema allowed it,
    // and `limit=5000` was answered although the schema says at most 1000.
    let d = Daemon::start(&app("a", "")).await;
    for (path, want) in [
        ("/api/events?limit=1000", 200),
        ("/api/events?limit=1001", 400),
        ("/api/events?limit=18446744073709551616", 400),
        ("/api/events?limit=-1", 400),
        ("/api/events?after_id=-9223372036854775808", 200),
        ("/api/events?after_id=9223372036854775808", 400),
        ("/api/events?app=a", 200),
        ("/api/events?app=A%00", 400),
        ("/api/runs?limit=1000", 200),
        ("/api/runs?limit=1001", 400),
        ("/api/apps/Not%20an%20id", 400),
        ("/api/apps/a%00", 400),
        ("/api/apps/nope", 404),
        ("/api/runs/..", 400),
        ("/api/events/stream?after_id=x", 400),
        ("/api/events/stream?bogus=1", 400),
    ] {
        let r = d.get(path).await;
        assert_eq!(r.status, want, "{path}: {}", r.text());
    }
    // Each bound the server enforces is the one the document states.
    let doc: Value = serde_json::from_str(&super::api::openapi_json()).unwrap();
    let param = |path: &str, name: &str| -> Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))["schema"]
            .clone()
    };
    for path in ["/api/events", "/api/runs"] {
        let limit = param(path, "limit");
        assert_eq!(
            (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
            (Some(0), Some(1000)),
            "{path}"
        );
    }
    assert_eq!(
        param("/api/events/stream", "after_id")["maximum"].as_i64(),
        Some(i64::MAX)
    );
    assert_eq!(
        param("/api/apps/{id}", "id")["pattern"],
        crate::rpc::APP_ID_PATTERN
    );
    assert_eq!(
        param("/api/runs/{id}", "id")["pattern"],
        crate::rpc::RUN_ID_PATTERN
    );
    assert!(doc["paths"]["/api/events/stream"]["get"]["responses"]["400"].is_object());
    d.stop().await;
}

/// Log in through the form; returns (cookie, csrf).
async fn login(d: &Daemon) -> (String, String) {
    let body = format!("token={}", d.token);
    let r = request(
        d.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let set = r.header("set-cookie").unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!r.text().contains(&d.token));
    let cookie = set.split(';').next().unwrap().to_string();
    let page = request(d.addr, "GET", "/", &[("Cookie", &cookie)], b"").await;
    assert_eq!(page.status, 200);
    let text = page.text();
    assert!(!text.contains(&d.token), "the page never shows the token");
    let i = text.find("\"X-Berth-CSRF\": \"").unwrap() + 17;
    (cookie, text[i..i + 64].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_session_needs_csrf_and_same_origin_for_changes() {
    let d = Daemon::start(&two_apps()).await;
    d.rpc(
        "package.install",
        json!({"stack_file": d.stack_file(), "apps": ["a"]}),
    )
    .await;
    let (cookie, csrf) = login(&d).await;
    let origin = format!("http://{}", d.addr);
    let hx = |extra: &[(&'static str, String)]| {
        let mut h: Vec<(&'static str, String)> =
            vec![("Cookie", cookie.clone()), ("HX-Request", "true".into())];
        h.extend_from_slice(extra);
        h
    };
    let post = |headers: Vec<(&'static str, String)>, path: &'static str, body: &'static [u8]| async move {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(d.addr, "POST", path, &h, body).await
    };
    // No CSRF token: refused, nothing stopped.
    let r = post(hx(&[]), "/ui/apps/a/stop", b"").await;
    assert_eq!(r.status, 403, "{}", r.text());
    // Wrong token, or a foreign origin: refused.
    let r = post(
        hx(&[("X-Berth-CSRF", "f".repeat(64))]),
        "/ui/apps/a/stop",
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    let r = post(
        hx(&[
            ("X-Berth-CSRF", csrf.clone()),
            ("Origin", "http://evil.example".into()),
        ]),
        "/ui/apps/a/stop",
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    // The cookie alone does not open the RPC either.
    let r = post(
        hx(&[("Content-Type", "application/json".into())]),
        "/rpc/v1",
        br#"{"jsonrpc":"2.0","id":1,"method":"package.stop","params":{"apps":["a"]}}"#,
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(mutating_calls(&d.fake) > 0); // the install's
    d.fake.take_calls();
    assert_eq!(wait_state(&d, "a", "running").await["desired"], "running");
    assert_eq!(mutating_calls(&d.fake), 0);

    // With the header (htmx): a flash line.
    let r = post(
        hx(&[("X-Berth-CSRF", csrf.clone()), ("Origin", origin.clone())]),
        "/ui/apps/a/stop",
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("stopped a"), "{}", r.text());
    wait_state(&d, "a", "stopped").await;
    // A plain form (no JavaScript) with the hidden field: back to the page.
    let form = format!("_csrf={csrf}");
    let h = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let r = request(d.addr, "POST", "/ui/apps/a/start", &h, form.as_bytes()).await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/")),
        "{}",
        r.text()
    );
    wait_state(&d, "a", "running").await;
    // The uninstall confirmation names what goes.
    let c = request(
        d.addr,
        "GET",
        "/ui/apps/a/uninstall",
        &[("Cookie", &cookie), ("HX-Request", "true")],
        b"",
    )
    .await;
    let text = c.text();
    assert!(
        text.contains("s-a") && text.contains("s-a-data") && text.contains("pw"),
        "{text}"
    );
    // And uninstalling from it works (a literal path segment must not
    // shadow the POST).
    let r = request(
        d.addr,
        "POST",
        "/ui/apps/b/uninstall",
        &[
            ("Cookie", &cookie),
            ("HX-Request", "true"),
            ("X-Berth-CSRF", &csrf),
        ],
        b"keep_data=true",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("uninstalled b"), "{}", r.text());
    // Logout ends the session.
    let r = request(d.addr, "POST", "/logout", &h, form.as_bytes()).await;
    assert_eq!(r.status, 303);
    let r = request(d.addr, "GET", "/api/state", &[("Cookie", &cookie)], b"").await;
    assert_eq!(r.status, 401);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_failed_logins_locks_the_login_form() {
    let d = Daemon::start(&app("a", "")).await;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    for _ in 0..super::auth::LOGIN_FAILURES_MAX {
        let r = request(d.addr, "POST", "/login", &form, b"token=guess").await;
        assert_eq!(r.status, 401);
    }
    // Locked: even the right token is refused for now.
    let body = format!("token={}", d.token);
    let r = request(d.addr, "POST", "/login", &form, body.as_bytes()).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    let wrong = format!("Bearer {}", "1".repeat(64));
    assert_eq!(
        d.get("/api/state").await.status,
        200,
        "the bearer token still works"
    );
    let r = request(
        d.addr,
        "GET",
        "/api/state",
        &[("Authorization", &wrong)],
        b"",
    )
    .await;
    assert_eq!(r.status, 429);
    // Bodies beyond the cap are refused before they are read.
    let big = vec![b'x'; super::BODY_BYTES_MAX + 1];
    assert_eq!(
        request(d.addr, "POST", "/login", &form, &big).await.status,
        413
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_and_no_token_in_any_response_or_event_of_a_full_lifecycle() {
    let d = Daemon::start(&two_apps()).await;
    let auth = d.bearer();
    let mut api = Stream::open(d.addr, "/api/events/stream", &[("Authorization", &auth)]).await;
    let mut ui = Stream::open(d.addr, "/ui/stream", &[("Authorization", &auth)]).await;
    let mut bodies: Vec<String> = Vec::new();
    let file = d.stack_file();
    let install = d
        .rpc(
            "package.install",
            json!({"stack_file": file, "apps": ["a", "b"]}),
        )
        .await;
    bodies.push(install.to_string());
    let secrets: BTreeSet<String> = StateDir::open(&d.state_root())
        .unwrap()
        .secrets()
        .all_values()
        .unwrap()
        .into_iter()
        .collect();
    assert!(!secrets.is_empty(), "the stack has a secret");
    // The app prints its secret: the logs endpoint must not.
    let leak: Vec<String> = secrets.iter().map(|s| format!("password={s}")).collect();
    d.fake.set_logs("s-a", leak);
    let (cookie, _csrf) = login(&d).await;
    for (method, params) in [
        ("container.logs", json!({"app": "a"})),
        ("container.list", json!({})),
        ("daemon.status", json!({})),
        ("package.stop", json!({"apps": ["a"]})),
        ("package.start", json!({"apps": ["a"]})),
        ("events.list", json!({"limit": 1000})),
    ] {
        bodies.push(d.rpc(method, params).await.to_string());
    }
    for path in [
        "/api/state",
        "/api/apps/a",
        "/api/apps/b",
        "/api/events?limit=1000",
        "/metrics",
        "/api/openapi.json",
        "/",
    ] {
        bodies.push(d.get(path).await.text());
    }
    bodies.push(
        request(d.addr, "GET", "/", &[("Cookie", &cookie)], b"")
            .await
            .text(),
    );
    bodies.push(
        request(
            d.addr,
            "GET",
            "/ui/apps/a/uninstall",
            &[("Cookie", &cookie)],
            b"",
        )
        .await
        .text(),
    );
    bodies.push(
        d.rpc("package.uninstall", json!({"apps": ["a"], "cascade": true}))
            .await
            .to_string(),
    );
    bodies.push(d.get("/api/state").await.text());
    api.until("uninstalled", Duration::from_secs(5), |n, d| {
        n == "apps" && d == "[]"
    })
    .await;
    ui.until("empty grid", Duration::from_secs(5), |n, d| {
        n == "apps" && d.contains("no-apps")
    })
    .await;
    let streams: Vec<String> = api
        .events
        .iter()
        .chain(ui.events.iter())
        .map(|(n, d)| format!("{n}: {d}"))
        .collect();
    assert!(streams.len() > 5, "{streams:?}");
    bodies.extend(streams);
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("password=[redacted]") || b.contains("password=***")),
        "the log line came through, redacted"
    );
    for b in &bodies {
        for s in &secrets {
            assert!(!b.contains(s.as_str()), "a secret leaked into: {b}");
        }
        assert!(!b.contains(&d.token), "the API token leaked into: {b}");
    }
    d.stop().await;
}

#[test]
fn the_checked_in_openapi_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let now = super::api::openapi_json();
    if std::env::var_os("BERTH_UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &now).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == now,
        "docs/openapi.json is stale: run `BERTH_UPDATE_OPENAPI=1 cargo test -p berth-daemon openapi` and commit it"
    );
}

#[test]
fn form_fields_and_listen_addresses_parse() {
    assert_eq!(
        super::form_field(b"a=1&_csrf=x%2By+z", "_csrf").as_deref(),
        Some("x+y z")
    );
    assert_eq!(super::form_field(b"a=1", "_csrf"), None);
    assert_eq!(super::parse_listen("off").unwrap(), None);
    assert_eq!(
        super::parse_listen("127.0.0.1:7780").unwrap(),
        Some("127.0.0.1:7780".parse().unwrap())
    );
    assert!(super::parse_listen("localhost").is_err());
}

/// Read until the server closes the connection (or `limit` passes).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// One request on a new connection; the status line of the answer.
async fn status_line(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut answer)).await;
    answer.lines().next().unwrap_or_default().to_string()
}

/// Serve a one-route app with `limits`; its address and its stop switch.
async fn bounded_server(
    limits: super::ServeLimits,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(super::serve_with(listener, app, stop_rx, limits));
    (addr, stop_tx, server)
}

/// The accept loop's bounds, exercised: a client that never finishes its
/// headers is cut off after the header-read timeout (slow loris), and
/// connections beyond the cap are closed at once while the ones held keep
/// their place; when one goes, a new client is served again.
#[tokio::test]
async fn the_accept_loop_cuts_off_slow_clients_and_caps_connections() {
    // Slow loris: half a request line, then silence.
    let (addr, stop, server) = bounded_server(super::ServeLimits {
        connections: 8,
        header_read: Duration::from_millis(400),
    })
    .await;
    assert!(status_line(addr).await.contains("200"), "served");
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HT").await.unwrap();
    let t0 = Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(10)).await,
        "cut off"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the loop ends on stop")
        .unwrap();

    // The cap: three idle connections hold every place (the header
    // timeout is far away here).
    let (addr, stop, server) = bounded_server(super::ServeLimits {
        connections: 3,
        header_read: Duration::from_secs(30),
    })
    .await;
    // Each held connection is served one keep-alive request and stays
    // open: its answer is the signal that the accept loop has taken it
    // (regression: a fixed 100 ms wait let the extra connection race ahead
    // of a held one under load).
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut h = TcpStream::connect(addr).await.unwrap();
        h.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let answered = async {
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"\r\n\r\nok") {
                let n = h.read(&mut buf).await.unwrap();
                assert!(n > 0, "a held connection was closed before its answer");
                got.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), answered)
            .await
            .expect("a held connection is served");
        held.push(h);
    }
    let mut extra = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(10)).await,
        "a connection beyond the cap is closed at once"
    );
    for h in &mut held {
        assert!(
            !closed_within(h, Duration::from_millis(100)).await,
            "the held connections keep their place"
        );
    }
    // One client goes: its place is free again.
    drop(held.pop());
    let served = async {
        loop {
            if status_line(addr).await.contains("200") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("served again once a place is free");
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the loop ends on stop")
        .unwrap();
}
