//! The HTTP API's request handling, in process: the daemon's whole router
//! (authentication, REST reads, the RPC mount, the dashboard and its
//! actions, the runs pages, the live streams) on `FakeEngine` with a real
//! supervision loop and live-state publisher, built once per process.
//!
//! The input is a raw HTTP/1.1 request as a client would write it (request
//! line, headers, blank line, body), so the seeds are plain requests taken
//! from docs/api.md. Four placeholders are replaced before it is sent, so
//! the fuzzer reaches past authentication without guessing secrets:
//! `@TOKEN@` (the API token), `@SESSION@` and `@CSRF@` (a dashboard
//! session's cookie value and CSRF token) and `@STACK@` (the absolute path
//! of a stack file with two installable apps). A request hyper itself
//! would refuse (bad method, target or header) is skipped: it never
//! reaches the router. `Content-Length` is set from the body (hyper hands
//! the router exactly the body that header frames).
//!
//! A panic, a 5xx answer, or no answer within `ANSWER_MS_MAX` is a bug.
//! `BERTH_FUZZ_HTTP_TRACE=1` prints each request and its status (to check
//! that the seeds reach the handlers they are meant for).
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use berth_daemon::http::auth::{self, LoginLimiter, Sessions};
use berth_daemon::http::{Auth, HttpState};
use berth_daemon::server::RpcState;
use berth_daemon::{Clock, Settings, Supervisor, hub, metrics, supervisor};
use berth_engine::{Engine, FakeEngine};
use berth_store::StateDir;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

/// A request must be answered (headers and a finite body) within this.
const ANSWER_MS_MAX: u64 = 20_000;
/// Headers taken from one input; more are ignored.
const HEADERS_MAX: usize = 16;
const IMAGE: &str = "localhost/app:1";
/// What `Host` and `Origin` say for a same-origin dashboard request.
const HOST: &str = "127.0.0.1:7780";

struct World {
    rt: tokio::runtime::Runtime,
    router: Router,
    token: String,
    auth: Arc<Auth>,
    /// The current dashboard session `(id, csrf)`; the fuzzer's own logins
    /// may evict it (sessions are capped), then a new one is made.
    session: Mutex<(String, String)>,
    stack_file: String,
    _tmp: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(build)
}

fn build() -> World {
    // One thread: everything the router spawns runs while a request is
    // awaited, so an input's effects do not leak into the next one's time.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let tmp = tempfile::tempdir().expect("a temp dir");
    let stack_file: PathBuf = tmp.path().join("berth.toml");
    std::fs::write(
        &stack_file,
        format!(
            "[stack]\nname = \"fz\"\nstart_timeout = \"5s\"\nsettle = \"0s\"\n\n\
             [apps.a]\nimage = \"{IMAGE}\"\n\n\
             [apps.b]\nimage = \"{IMAGE}\"\ndepends_on = { a = \"started\" }\n"
        ),
    )
    .expect("the stack file");
    let root = tmp.path().join("state");
    let state = StateDir::open(&root).expect("a state dir");
    let fake = FakeEngine::new();
    fake.add_image(IMAGE);
    let settings = Settings {
        request_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(10),
        listen: None,
        ..Settings::default()
    };
    let (router, token, auth) = rt.block_on(async {
        // The same wiring as `berth_daemon::run`, without the socket, the
        // TCP listener and the lock.
        let live = Arc::new(hub::Hub::new());
        let engine: Arc<dyn Engine> = Arc::new(metrics::MeteredEngine::new(
            Arc::new(fake),
            live.metrics.clone(),
        ));
        let ctx = berth_ops::Ctx::new(engine, state, Arc::new(supervisor::LogReporter))
            .expect("a context");
        let (tx, rx) = tokio::sync::mpsc::channel(supervisor::EVENTS_QUEUE_MAX);
        let rpc = RpcState {
            tx: tx.clone(),
            request_timeout: settings.request_timeout,
            operation_timeout: settings.operation_timeout,
            hub: live.clone(),
        };
        let mut sup = Supervisor::new(
            ctx.clone(),
            settings.clone(),
            berth_core::supervise::plan_tick,
            tx,
            Clock::start(),
        );
        sup.set_hub(live.clone());
        // Never stopped: the process ends with the fuzzer.
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        std::mem::forget(_stop_tx);
        tokio::spawn(async move { sup.run(rx, std::future::pending()).await });
        tokio::spawn(hub::publisher(
            live.clone(),
            rpc.clone(),
            ctx.clone(),
            stop.clone(),
        ));
        let (token, _) = auth::ensure_token(ctx.state.root()).expect("a token");
        let token_text = token.reveal().to_string();
        let auth = Arc::new(Auth {
            token,
            sessions: Mutex::new(Sessions::default()),
            limiter: Mutex::new(LoginLimiter::default()),
        });
        let state = HttpState {
            rpc: rpc.clone(),
            hub: live,
            ctx,
            auth: auth.clone(),
            request_timeout: settings.request_timeout,
            stop,
            sse_clients: Arc::new(AtomicUsize::new(0)),
        };
        let router = berth_daemon::http::router(state, berth_daemon::server::router(rpc));
        (router, token_text, auth)
    });
    let session = new_session(&auth);
    World {
        rt,
        router,
        token,
        auth,
        session: Mutex::new(session),
        stack_file: stack_file.display().to_string(),
        _tmp: tmp,
    }
}

fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("BERTH_FUZZ_HTTP_TRACE").is_some())
}

fn new_session(auth: &Auth) -> (String, String) {
    let now = berth_daemon::http::now_ms();
    let mut sessions = auth.sessions.lock().unwrap_or_else(|p| p.into_inner());
    sessions.create(now).expect("a session")
}

/// The dashboard session to use now (a new one when the old one is gone).
fn session(w: &World) -> (String, String) {
    let mut current = w.session.lock().unwrap_or_else(|p| p.into_inner());
    let alive = {
        let sessions = w.auth.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .get(&current.0, berth_daemon::http::now_ms())
            .is_some()
    };
    if !alive {
        *current = new_session(&w.auth);
    }
    current.clone()
}

/// The input as a request, or `None` when hyper would not have let it
/// through to the router.
fn parse(w: &World, data: &[u8]) -> Option<Request<Body>> {
    let text = String::from_utf8_lossy(data);
    let mut fill = text
        .replace("@TOKEN@", &w.token)
        .replace("@STACK@", &w.stack_file);
    if fill.contains("@SESSION@") || fill.contains("@CSRF@") {
        let (id, csrf) = session(w);
        fill = fill.replace("@SESSION@", &id).replace("@CSRF@", &csrf);
    }
    let (head, body) = match fill.find("\r\n\r\n") {
        Some(i) => (&fill[..i], &fill[i + 4..]),
        None => match fill.find("\n\n") {
            Some(i) => (&fill[..i], &fill[i + 2..]),
            None => (fill.as_str(), ""),
        },
    };
    let mut lines = head.lines();
    let mut request_line = lines.next()?.split(' ');
    let method = Method::from_bytes(request_line.next()?.as_bytes()).ok()?;
    let uri: Uri = request_line.next()?.parse().ok()?;
    // Hyper hands the router origin-form targets only.
    uri.path_and_query()?;
    if uri.scheme().is_some() {
        return None;
    }
    let mut req = Request::builder().method(method).uri(uri);
    let mut host = false;
    for line in lines.take(HEADERS_MAX) {
        let (name, value) = line.split_once(':')?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
        let value = HeaderValue::from_str(value.trim()).ok()?;
        // Hyper frames the body by these and hands on exactly that body:
        // the length is set below, from the body after the placeholders.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        host |= name == header::HOST;
        req = req.header(name, value);
    }
    if !host {
        req = req.header(header::HOST, HOST);
    }
    if !body.is_empty() {
        req = req.header(header::CONTENT_LENGTH, body.len());
    }
    req.body(Body::from(body.to_string())).ok()
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some(req) = parse(w, data) else {
        return;
    };
    let what = format!("{} {}", req.method(), req.uri());
    let answer = w.rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(ANSWER_MS_MAX), async {
            let resp = w
                .router
                .clone()
                .oneshot(req)
                .await
                .expect("the router is infallible");
            let status = resp.status();
            let streaming = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"));
            // A live stream never ends: its headers are the answer.
            let body = if streaming {
                Vec::new()
            } else {
                let collected = resp.into_body().collect().await;
                collected.map(|b| b.to_bytes().to_vec()).unwrap_or_default()
            };
            (status, body)
        })
        .await
    });
    let Ok((status, body)) = answer else {
        panic!("{what}: no answer within {ANSWER_MS_MAX} ms");
    };
    if trace() {
        let head = String::from_utf8_lossy(&body[..body.len().min(120)]).replace('\n', " ");
        eprintln!("{what} -> {status} {head}");
    }
    assert!(
        !status.is_server_error(),
        "{what}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
});
