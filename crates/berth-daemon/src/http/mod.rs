//! The HTTP API on TCP (127.0.0.1 by default): JSON-RPC at `POST /rpc/v1`
//! (the same router and dispatcher as the unix socket), REST reads under
//! `/api/`, the live stream (SSE), `/metrics`, `/health` and the dashboard.
//!
//! Every request passes, outermost first: a per-connection header-read
//! timeout and a cap on connections (the accept loop), the body-size cap
//! (`tower-http`), security headers, request counting, then
//! authentication ([`auth`]): every endpoint but `/health`, the login form
//! and the static files needs the token (bearer) or a dashboard session
//! (cookie + CSRF for anything that changes state). Quick endpoints have a
//! request timeout; the RPC has the dispatcher's own (operations run for
//! minutes), the live streams end when the daemon stops.
//!
//! Every task is owned: connections live in a `JoinSet` the server task
//! owns, and are asked to close (then aborted) on shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_ops::Ctx;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::hub::Hub;
use crate::monitor::lock;
use crate::rpc::{self, RPC_BODY_BYTES_MAX};
use crate::server::RpcState;

pub mod api;
pub mod auth;
pub mod runs;
pub mod sse;
pub mod ui;

#[cfg(test)]
mod tests;

use auth::{LoginLimiter, Sessions, Token};

/// Where the API listens unless configured otherwise.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7780";
/// The file, in the state directory, naming the address the API listens on
/// (for `berth token` and tests that let the kernel pick a port).
pub const ADDRESS_FILE_NAME: &str = "api-address";
/// Largest request body, in bytes (the RPC's own cap).
pub const BODY_BYTES_MAX: usize = RPC_BODY_BYTES_MAX;
/// Connections served at once; more are closed at once.
pub const CONNECTIONS_MAX: usize = 512;
/// How long a client may take to send the request headers.
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// How long connections get to finish at shutdown.
pub const CLOSE_TIMEOUT_MS: u64 = 3_000;
/// Live-stream clients at once; more get 503.
pub const SSE_CLIENTS_MAX: usize = 256;
/// Form bodies read for the CSRF field, in bytes.
pub const FORM_BYTES_MAX: usize = 16 * 1024;

/// The login state shared by every request.
pub struct Auth {
    pub token: Token,
    pub sessions: Mutex<Sessions>,
    pub limiter: Mutex<LoginLimiter>,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct HttpState {
    pub rpc: RpcState,
    pub hub: Arc<Hub>,
    pub ctx: Arc<Ctx>,
    pub auth: Arc<Auth>,
    pub request_timeout: Duration,
    pub stop: watch::Receiver<bool>,
    pub sse_clients: Arc<AtomicUsize>,
}

/// The peer address of the TCP connection a request came on (set by the
/// accept loop; absent for a request served in process).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// The failed-login counting key of a request.
pub fn client_key(extensions: &axum::http::Extensions) -> auth::ClientKey {
    auth::ClientKey::of(extensions.get::<ClientAddr>().map(|c| c.0.ip()))
}

/// Who a request comes from (set by the auth middleware).
#[derive(Clone, Debug)]
pub enum Principal {
    Bearer,
    Session { id: String, csrf: String },
}

/// A JSON error answer: `{"error": kind, "message": ...}`.
pub fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": kind, "message": message.into() }).to_string(),
    )
        .into_response()
}

/// Completes when `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

pub fn now_ms() -> u64 {
    u64::try_from(berth_store::now_ms()).unwrap_or(0)
}

/// The whole router. `rpc_router` is the unix socket's router
/// (`server::router`), mounted as is.
pub fn router(state: HttpState, rpc_router: Router) -> Router {
    // Answers that come quickly get the request timeout.
    let quick = Router::new()
        .route("/health", get(api::health))
        .route("/metrics", get(api::metrics))
        .route("/api/state", get(api::state))
        .route("/api/apps/{id}", get(api::app))
        .route("/api/events", get(api::events))
        .route("/api/openapi.json", get(api::openapi))
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{id}", get(api::run))
        .route("/runs", get(runs::page_list))
        .route("/runs/{id}", get(runs::page_show))
        .route("/runs/{id}/report", get(runs::report))
        .route("/login", get(ui::login_form).post(ui::login))
        .route("/logout", post(ui::logout))
        .route("/", get(ui::dashboard))
        .route("/static/{name}", get(ui::static_file))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.request_timeout,
        ));
    // Long-running: operations (their own timeout) and live streams.
    let long = Router::new()
        .route("/api/events/stream", get(sse::api_stream))
        .route("/ui/stream", get(sse::ui_stream))
        .route("/ui/apps/{id}/{action}", post(ui::action))
        // A literal segment wins over `{action}`: the confirmation (GET) and
        // the uninstall itself (POST) share the path.
        .route(
            "/ui/apps/{id}/uninstall",
            get(ui::confirm_uninstall)
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    state.request_timeout,
                ))
                .post(ui::uninstall),
        )
        // Operator actions on a held run drive it until it completes or
        // holds again (the dispatcher's operation timeout).
        .route("/ui/runs/{id}/{action}", post(runs::action))
        .route(
            "/ui/runs/{id}/abandon",
            get(runs::confirm_abandon)
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    state.request_timeout,
                ))
                .post(runs::abandon),
        );
    Router::new()
        .merge(quick)
        .merge(long)
        .with_state(state.clone())
        .merge(rpc_router)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state, count_and_harden))
        .layer(RequestBodyLimitLayer::new(BODY_BYTES_MAX))
        .layer(middleware::from_fn(rpc_too_large))
}

/// The body cap answers 413 with a plain text; a JSON-RPC client gets
/// its error object instead.
async fn rpc_too_large(req: Request, next: Next) -> Response {
    let is_rpc = req.uri().path() == crate::rpc::RPC_PATH;
    let resp = next.run(req).await;
    if !is_rpc || resp.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return resp;
    }
    let body = rpc::response(
        serde_json::Value::Null,
        Err(rpc::RpcError::new(
            rpc::INVALID_REQUEST,
            format!("request body larger than {RPC_BODY_BYTES_MAX} bytes"),
        )),
    );
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Security headers on every answer, and the request counter.
async fn count_and_harden(State(s): State<HttpState>, req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    // The path only: a query string is the client's business.
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let mut resp = next.run(req).await;
    s.hub.metrics.observe_http(resp.status().as_u16());
    if resp.status().is_client_error() || resp.status().is_server_error() {
        tracing::debug!(%method, path, status = resp.status().as_u16(), "http request refused or failed");
    }
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    // A handler may set a stricter policy of its own (a run's HTML
    // report: inline CSS, no script at all).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(
            h,
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        );
    }
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // Not `no-referrer`: with it, browsers send `Origin: null` on form
    // posts, which the same-origin check must refuse.
    set(h, header::REFERRER_POLICY, "same-origin");
    if !is_static && !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    resp
}

/// Paths anyone may request.
fn is_public(method: &Method, path: &str) -> bool {
    path == "/health"
        || path == "/login" && (method == Method::GET || method == Method::POST)
        || path.starts_with("/static/")
}

/// Paths a browser navigates to (sent to the login form, not answered 401).
fn is_page(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/") || path == "/runs" || path.starts_with("/runs/")
}

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// See the module docs and [`auth`].
async fn authenticate(State(s): State<HttpState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if is_public(req.method(), &path) {
        return next.run(req).await;
    }
    let client = client_key(req.extensions());
    let headers = req.headers();
    let now = now_ms();
    if let Some(value) = header_str(headers, header::AUTHORIZATION) {
        let given = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        if s.auth.token.matches(given) {
            req.extensions_mut().insert(Principal::Bearer);
            return next.run(req).await;
        }
        s.hub.metrics.login_failed();
        let mut limiter = lock(&s.auth.limiter);
        if let Err(ms) = limiter.check(client, now) {
            return too_many(ms);
        }
        if limiter.failed(client, now) {
            tracing::warn!(
                ?client,
                "too many failed logins: this client is locked out for a while"
            );
        }
        return unauthorized("wrong token");
    }
    let session = header_str(headers, header::COOKIE)
        .and_then(|c| auth::cookie(c, auth::SESSION_COOKIE))
        .and_then(|id| {
            lock(&s.auth.sessions)
                .get(id, now)
                .map(|sess| (id.to_string(), sess))
        });
    let Some((id, session)) = session else {
        if is_page(&path) && req.method() == Method::GET {
            return redirect("/login");
        }
        return unauthorized(
            "this endpoint needs `Authorization: Bearer <token>` (`berth token` prints it) or a dashboard session",
        );
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        if !auth::same_origin(
            header_str(headers, header::ORIGIN),
            header_str(headers, header::HOST),
            header_str(headers, "sec-fetch-site"),
        ) {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "cross-origin request refused",
            );
        }
        let ok = match header_str(headers, auth::CSRF_HEADER) {
            Some(given) => auth::ct_eq(given.as_bytes(), session.csrf.as_bytes()),
            None => {
                let is_form = header_str(headers, header::CONTENT_TYPE)
                    .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
                if !is_form {
                    false
                } else {
                    // Read the form (small) for its `_csrf` field, then hand
                    // the same bytes on.
                    let (parts, body) = req.into_parts();
                    let bytes = match axum::body::to_bytes(body, FORM_BYTES_MAX).await {
                        Ok(b) => b,
                        Err(_) => {
                            return error(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "too-large",
                                format!("form larger than {FORM_BYTES_MAX} bytes"),
                            );
                        }
                    };
                    let given = form_field(&bytes, auth::CSRF_FIELD);
                    req = Request::from_parts(parts, Body::from(bytes));
                    given.is_some_and(|g| auth::ct_eq(g.as_bytes(), session.csrf.as_bytes()))
                }
            }
        };
        if !ok {
            return error(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong CSRF token; reload the page",
            );
        }
    }
    req.extensions_mut().insert(Principal::Session {
        id,
        csrf: session.csrf,
    });
    next.run(req).await
}

/// One field of an urlencoded form, decoded.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (url_decode(k)? == name).then(|| url_decode(v)).flatten()
    })
}

/// `application/x-www-form-urlencoded` decoding.
pub fn url_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn unauthorized(message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"berth\""),
    );
    r
}

pub fn too_many(ms: u64) -> Response {
    let secs = ms.div_ceil(1000).max(1);
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        format!("too many failed logins; try again in {secs} s"),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

pub fn redirect(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// Parse `--listen` / `listen`: an address, or `off`.
pub fn parse_listen(s: &str) -> Result<Option<SocketAddr>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    s.parse::<SocketAddr>()
        .map(Some)
        .map_err(|e| format!("not an address like 127.0.0.1:7780 (or \"off\"): {e}"))
}

/// `<state>/api-address`.
pub fn address_path(state_root: &Path) -> PathBuf {
    state_root.join(ADDRESS_FILE_NAME)
}

/// The address a running daemon's API listens on, if it wrote one.
pub fn read_address(state_root: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(address_path(state_root))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Bind the listener and write the address file.
pub async fn bind(addr: SocketAddr, state_root: &Path) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    std::fs::write(address_path(state_root), format!("{local}\n"))?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            address = %local,
            "the HTTP API listens beyond this host, without TLS: put it behind a TLS proxy or keep it on 127.0.0.1"
        );
    }
    Ok(listener)
}

/// The accept loop's bounds.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections served at once; more are closed at once.
    pub connections: usize,
    /// How long a client may take to send its request headers.
    pub header_read: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            connections: CONNECTIONS_MAX,
            header_read: Duration::from_millis(HEADER_READ_TIMEOUT_MS),
        }
    }
}

/// Serve until `stop` turns true; then ask every connection to close,
/// wait (bounded) and abort what is left.
pub async fn serve(listener: TcpListener, app: Router, stop: watch::Receiver<bool>) {
    serve_with(listener, app, stop, ServeLimits::default()).await;
}

/// `serve` with the given bounds.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
    limits: ServeLimits,
) {
    let permits = Arc::new(Semaphore::new(limits.connections));
    let mut conns: JoinSet<()> = JoinSet::new();
    let service = hyper_util::service::TowerToHyperService::new(app);
    loop {
        tokio::select! {
            () = crate::http::stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off a
                        // little rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(
                        "too many connections ({}); closing a new one",
                        limits.connections
                    );
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                // Each request carries the peer address (the login limiter
                // counts per client).
                let service = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ClientAddr(peer));
                        hyper::service::Service::call(&service, req)
                    },
                );
                let mut stop = stop.clone();
                conns.spawn(async move {
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(limits.header_read);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        r = conn.as_mut() => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "http connection ended with an error");
                            }
                        }
                        () = crate::http::stopped(&mut stop) => {
                            conn.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(
                                Duration::from_millis(CLOSE_TIMEOUT_MS),
                                conn,
                            )
                            .await;
                        }
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(CLOSE_TIMEOUT_MS + 500);
    while !conns.is_empty() {
        match tokio::time::timeout_at(deadline, conns.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                conns.abort_all();
                while conns.join_next().await.is_some() {}
            }
        }
    }
}

/// What the HTTP API needs from the daemon.
pub struct Parts {
    pub rpc: RpcState,
    pub hub: Arc<Hub>,
    pub ctx: Arc<Ctx>,
    pub request_timeout: Duration,
}

/// Start the HTTP API on `listen` (`None`: not at all): one owned task
/// running the live-state publisher and the server until `stop` turns
/// true. A failure to start (address taken, unreadable token) is logged:
/// supervision goes on without the API.
pub async fn start(
    listen: Option<SocketAddr>,
    parts: Parts,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let addr = listen?;
    // Logged, not recorded as an event: the history is about the apps.
    let fail = |what: String| {
        tracing::error!("the HTTP API is not served: {what}");
    };
    let root = parts.ctx.state.root().to_path_buf();
    let token = match auth::ensure_token(&root) {
        Ok((t, _)) => t,
        Err(e) => {
            fail(e.to_string());
            return None;
        }
    };
    let listener = match bind(addr, &root).await {
        Ok(l) => l,
        Err(e) => {
            fail(format!("cannot listen on {addr}: {e}"));
            return None;
        }
    };
    let local = listener.local_addr().ok();
    let state = HttpState {
        rpc: parts.rpc.clone(),
        hub: parts.hub.clone(),
        ctx: parts.ctx.clone(),
        auth: Arc::new(Auth {
            token,
            sessions: Mutex::new(Sessions::default()),
            limiter: Mutex::new(LoginLimiter::default()),
        }),
        request_timeout: parts.request_timeout,
        stop: stop.clone(),
        sse_clients: Arc::new(AtomicUsize::new(0)),
    };
    let app = router(state, crate::server::router(parts.rpc.clone()));
    if let Some(a) = local {
        tracing::info!(address = %a, "HTTP API and dashboard: http://{a}/ (`berth token` prints the login token)");
    }
    let publisher = crate::hub::publisher(parts.hub, parts.rpc, parts.ctx, stop.clone());
    Some(tokio::spawn(async move {
        tokio::join!(publisher, serve(listener, app, stop));
    }))
}

/// Live-stream client slots: a guard releases its slot when the stream
/// ends.
pub struct SseSlot {
    count: Arc<AtomicUsize>,
    hub: Arc<Hub>,
}

impl SseSlot {
    pub fn take(count: &Arc<AtomicUsize>, hub: &Arc<Hub>) -> Option<SseSlot> {
        let prev = count.fetch_add(1, Ordering::SeqCst);
        if prev >= SSE_CLIENTS_MAX {
            count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        hub.metrics.sse_client(1);
        hub.watching(1);
        Some(SseSlot {
            count: count.clone(),
            hub: hub.clone(),
        })
    }
}

impl Drop for SseSlot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        self.hub.metrics.sse_client(-1);
        self.hub.watching(-1);
    }
}
