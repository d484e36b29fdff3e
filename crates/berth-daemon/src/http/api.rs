//! The REST reads, with their OpenAPI description (utoipa). The document
//! is checked into `docs/openapi.json`; a test fails when it is stale.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_web::{RunDetailView, RunsView, StateView};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{HttpState, error};
use crate::hub::{FRESH_WAIT_MS_MAX, redact_value, redactor};
use crate::metrics::OPENMETRICS_CONTENT_TYPE;
use crate::rpc::{self, RpcCall};
use crate::server::dispatch;

/// An error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// `unauthorized`, `not-found`, `bad-request`, `rate-limited`,
    /// `forbidden`, `csrf`, `unavailable`, ...
    pub error: String,
    pub message: String,
}

/// One event of the history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Strictly increasing; resume a stream after it.
    pub id: i64,
    pub at_ms: i64,
    pub app: Option<String>,
    /// Machine-readable kind: `started`, `crashed`, `held`, `released`, ...
    pub kind: String,
    pub message: String,
}

/// A page of events, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<EventView>,
    /// The id to pass as `after_id` for the next page.
    pub last_id: i64,
}

/// One app, with its latest events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppDetail {
    pub app: berth_web::AppView,
    /// Its newest events (at most 50), oldest first.
    pub events: Vec<EventView>,
}

/// `data` of the live stream's `app-removed` event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemovedApp {
    /// The uninstalled app's id.
    pub id: String,
}

/// `data` of the live stream's `badges` event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BadgesChange {
    pub badges: Vec<berth_web::Badge>,
    pub stacks: Vec<berth_web::view::StackView>,
}

/// One event of `GET /api/events/stream`: `event` is the SSE event name,
/// `data` the JSON of its `data:` lines.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "kebab-case")]
pub enum LiveEvent {
    /// First, on connect: the whole state (as `GET /api/state`).
    State(Box<StateView>),
    /// This client fell behind: the whole state again.
    Resync(Box<StateView>),
    /// A new history event (the SSE `id:` is its id).
    Event(EventView),
    /// An app's view changed (the `apps[]` element).
    App(Box<berth_web::AppView>),
    /// An app was uninstalled.
    AppRemoved(RemovedApp),
    /// The list of app ids changed.
    Apps(Vec<String>),
    /// Stack badges changed.
    Badges(BadgesChange),
    /// The sync gauges changed.
    Nodes(Vec<berth_web::view::NodeView>),
    /// The engine went away or came back.
    Engine(berth_web::view::EngineView),
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this app's events.
    #[param(pattern = "^[a-z]([a-z0-9-]{0,29}[a-z0-9])?$", max_length = 31)]
    pub app: Option<String>,
    /// Events after this id (oldest first); without it, the newest `limit`.
    #[param(minimum = -9223372036854775808i64, maximum = 9223372036854775807i64)]
    pub after_id: Option<i64>,
    /// At most this many (default 50).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<u64>,
}

/// A `400 bad-request` answer.
fn bad_request(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, "bad-request", message)
}

/// A query's `limit`, refused (400) above `max` so the answer matches the
/// documented `maximum`.
pub(crate) fn bounded_limit(
    limit: Option<u64>,
    default: usize,
    max: usize,
) -> Result<usize, String> {
    match limit {
        None => Ok(default),
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!("limit must be between 0 and {max}, not {n}")),
        },
    }
}

/// An app id from a path or a query, refused (400) unless it has the
/// documented shape.
pub(crate) fn app_id(id: &str) -> Result<(), String> {
    if rpc::is_app_id(id) {
        Ok(())
    } else {
        let shown: String = id.chars().take(64).collect();
        Err(format!(
            "{shown:?} is not an app id (1 to {} lowercase letters, digits or '-', starting with a letter)",
            rpc::APP_ID_BYTES_MAX
        ))
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document of the REST part (JSON-RPC is in docs/rpc.md).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "berth HTTP API",
        description = "REST reads, live events (SSE) and metrics of `berth daemon`. Every endpoint but /health needs `Authorization: Bearer <token>` (`berth token`). JSON-RPC 2.0 is served at POST /rpc/v1 (see docs/rpc.md).",
        version = "1"
    ),
    paths(health, state, app, events, events_stream, runs, run, metrics),
    components(schemas(ApiError, EventView, EventsPage, AppDetail, LiveEvent, RemovedApp, BadgesChange)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// The document as checked into docs/openapi.json.
pub fn openapi_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

/// Liveness: answers `ok` while the daemon serves. Reveals nothing else.
#[utoipa::path(get, path = "/health", security(()),
    responses((status = 200, description = "the daemon is alive", body = String, content_type = "text/plain")))]
pub async fn health() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
        .into_response()
}

/// Prometheus/OpenMetrics text: per-app state, restarts, probe latency,
/// reconcile tick duration, engine calls and errors.
#[utoipa::path(get, path = "/metrics",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "no or wrong token", body = ApiError),
        (status = 408, description = "not answered within request_timeout (empty body)"),
        (status = 429, description = "this client sent too many wrong tokens", body = ApiError)))]
pub async fn metrics(State(s): State<HttpState>) -> Response {
    // The per-app gauges come from the snapshot: bring it up to date.
    s.hub
        .fresh_snapshot(Duration::from_millis(FRESH_WAIT_MS_MAX))
        .await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        s.hub.metrics.encode(),
    )
        .into_response()
}

fn json_text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Every app (desired and observed state, classification, health, gate
/// verdict, restarts, quarantine, operation in progress), stack badges,
/// nodes' sync, disks and the engine. Served from the daemon's live
/// snapshot: includes the effect of every request answered before it.
#[utoipa::path(get, path = "/api/state",
    responses(
        (status = 200, description = "the whole state", body = StateView),
        (status = 401, description = "no or wrong token", body = ApiError),
        (status = 408, description = "not answered within request_timeout (empty body)"),
        (status = 429, description = "this client sent too many wrong tokens", body = ApiError)))]
pub async fn state(State(s): State<HttpState>) -> Response {
    let snap = s
        .hub
        .fresh_snapshot(Duration::from_millis(FRESH_WAIT_MS_MAX))
        .await;
    json_text(StatusCode::OK, snap.json.clone())
}

/// One app and its newest events.
#[utoipa::path(get, path = "/api/apps/{id}",
    params(("id" = String, Path, description = "app id",
        pattern = "^[a-z]([a-z0-9-]{0,29}[a-z0-9])?$", max_length = 31)),
    responses(
        (status = 200, description = "the app", body = AppDetail),
        (status = 400, description = "not an app id", body = ApiError),
        (status = 404, description = "not installed", body = ApiError),
        (status = 401, description = "no or wrong token", body = ApiError),
        (status = 408, description = "not answered within request_timeout (empty body)"),
        (status = 429, description = "this client sent too many wrong tokens", body = ApiError),
        (status = 503, description = "the daemon is busy or shutting down", body = ApiError)))]
pub async fn app(State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    if let Err(m) = app_id(&id) {
        return bad_request(m);
    }
    let snap = s
        .hub
        .fresh_snapshot(Duration::from_millis(FRESH_WAIT_MS_MAX))
        .await;
    let Some(app) = snap.view.apps.iter().find(|a| a.id == id).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("unknown app {id:?}: it is not installed"),
        );
    };
    let page = match list_events(&s, Some(id), None, 50).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let body = serde_json::to_string(&AppDetail {
        app,
        events: page.events,
    })
    .unwrap_or_default();
    json_text(StatusCode::OK, body)
}

/// The event history: the newest `limit`, or those after `after_id`.
#[utoipa::path(get, path = "/api/events",
    params(EventsQuery),
    responses(
        (status = 200, description = "events, oldest first", body = EventsPage),
        (status = 400, description = "bad query", body = ApiError),
        (status = 401, description = "no or wrong token", body = ApiError),
        (status = 408, description = "not answered within request_timeout (empty body)"),
        (status = 429, description = "this client sent too many wrong tokens", body = ApiError),
        (status = 503, description = "the daemon is busy or shutting down", body = ApiError)))]
pub async fn events(
    State(s): State<HttpState>,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad-request", e.body_text()),
    };
    let limit = match bounded_limit(
        q.limit,
        rpc::EVENTS_LIST_LIMIT_DEFAULT,
        rpc::EVENTS_LIST_LIMIT_MAX,
    ) {
        Ok(l) => l,
        Err(m) => return bad_request(m),
    };
    if let Some(app) = &q.app
        && let Err(m) = app_id(app)
    {
        return bad_request(m);
    }
    match list_events(&s, q.app, q.after_id, limit).await {
        Ok(page) => json_text(
            StatusCode::OK,
            serde_json::to_string(&page).unwrap_or_default(),
        ),
        Err(r) => r,
    }
}

/// Through the RPC dispatcher (`events.list`), redacted.
async fn list_events(
    s: &HttpState,
    app: Option<String>,
    after_id: Option<i64>,
    limit: usize,
) -> Result<EventsPage, Response> {
    let call = RpcCall::EventsList {
        app,
        after_id,
        limit: limit.min(rpc::EVENTS_LIST_LIMIT_MAX),
    };
    let mut value = dispatch(&s.rpc, call).await.map_err(|e| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.message.clone(),
        )
    })?;
    redact_value(&mut value, &redactor(&s.ctx));
    serde_json::from_value(value).map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected events.list answer: {e}"),
        )
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// At most this many (default 50).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<u64>,
}

/// The newest vet and verify runs (`berth vet`, `berth verify`), newest
/// first: state and verdict (`held` and the stage a held run waits on),
/// stack, engine, start and finish times, duration.
#[utoipa::path(get, path = "/api/runs",
    params(RunsQuery),
    responses(
        (status = 200, description = "runs, newest first", body = RunsView),
        (status = 400, description = "bad query", body = ApiError),
        (status = 401, description = "no or wrong token", body = ApiError),
        (status = 408, description = "not answered within request_timeout (empty body)"),
        (status = 429, description = "this client sent too many wrong tokens", body = ApiError),
        (status = 503, description = "the daemon is busy or shutting down", body = ApiError)))]
pub async fn runs(
    State(s): State<HttpState>,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match q {
        Ok(Query(q)) => match bounded_limit(
            q.limit,
            super::runs::API_RUNS_DEFAULT,
            rpc::RUNS_LIST_LIMIT_MAX,
        ) {
            Ok(limit) => super::runs::api_list(&s, Some(limit)).await,
            Err(m) => bad_request(m),
        },
        Err(e) => error(StatusCode::BAD_REQUEST, "bad-request", e.body_text()),
    }
}

/// One run: the environment manifest (berth version and revision, engine
/// and version, kernel, image ids), every stage (state, summary,
/// measurements, artifacts), the operator's actions, the actions it takes
/// now, and for a verify run the app × cell scorecard (● every iteration
/// passed, ◐ some, ○ none or not run, – not applicable).
#[utoipa::path(get, path = "/api/runs/{id}",
    params(("id" = String, Path, description = "run id (`berth run list`)",
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$", max_length = 128)),
    responses(
        (status = 200, description = "the run", body = RunDetailView),
        (status = 400, description = "not a run id", body = ApiError),
        (status = 404, description = "no such run", body = ApiError),
        (status = 401, description = "no or wrong token", body = ApiError),
        (status = 408, description = "not answered within request_timeout (empty body)"),
        (status = 429, description = "this client sent too many wrong tokens", body = ApiError),
        (status = 503, description = "the daemon is busy or shutting down", body = ApiError)))]
pub async fn run(State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    super::runs::api_show(&s, &id).await
}

/// Live events (Server-Sent Events): first `state` (the whole state), then
/// `event` (a new history event, with its id), `app` (an app's view
/// changed), `app-removed`, `apps` (the list of ids changed), `badges`,
/// `nodes`, `engine`, and `resync` (this client fell behind: `data` is the
/// whole state again). `Last-Event-ID` or `?after_id=` replays history
/// events after that id first.
#[utoipa::path(get, path = "/api/events/stream",
    params(
        ("after_id" = Option<i64>, Query, description = "replay events after this id first",
            minimum = -9223372036854775808i64, maximum = 9223372036854775807i64),
        ("Last-Event-ID" = Option<String>, Header, description = "as `after_id` (browsers send it on reconnect); a value that is not a whole number is ignored")),
    responses(
        (status = 200, description = "an endless text/event-stream; each event's `data` is described by the `LiveEvent` schema", body = String, content_type = "text/event-stream"),
        (status = 400, description = "bad query (an unknown parameter, an `after_id` that is not a whole number)", body = ApiError),
        (status = 401, description = "no or wrong token", body = ApiError),
        (status = 429, description = "this client sent too many wrong tokens", body = ApiError),
        (status = 503, description = "too many live clients", body = ApiError)))]
pub async fn events_stream() {}

/// The OpenAPI document.
pub async fn openapi() -> Response {
    json_text(StatusCode::OK, openapi_json())
}
