//! The vet/verify runs on the dashboard (`/runs`, `/runs/{id}`, the HTML
//! report, the operator's actions under `/ui/runs/`) and in the REST API
//! (`GET /api/runs`, `GET /api/runs/{id}`).
//!
//! Everything goes through the RPC dispatcher, like every other client:
//! reads are `run.list` and `run.show`, the actions are `run.override`,
//! `run.retry` and `run.abandon` — the very code `berth run …` and a
//! JSON-RPC client reach. A run's page is rendered from the run's report
//! (`berth-report/1`, rebuilt from `run.show` like `report.json`), and
//! every string passes the daemon's secret redactor on top of the
//! harness's own. The HTML report is served only from the path the run
//! recorded (`run.show`'s `report_html`), never from a path in a request.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use berth_web::Tone;
use berth_web::html::{self, FlashLine};
use berth_web::runs::{
    RUN_ACTIONS, RunDetailView, RunExtras, RunRow, RunsView, run_detail, run_row,
};
use serde_json::{Value, json};

use super::{HttpState, Principal, error, now_ms};
use crate::hub::{redact_value, redactor};
use crate::rpc::{self, RpcCall, RpcError};
use crate::server::dispatch;

/// Runs the runs page lists.
pub const PAGE_RUNS_MAX: usize = 100;
/// `GET /api/runs` without a limit.
pub const API_RUNS_DEFAULT: usize = 50;
/// Runs looked at for the navigation's count of held runs.
pub const HELD_SCAN_MAX: usize = 200;
/// Largest HTML report served, in bytes.
pub const REPORT_BYTES_MAX: u64 = 64 << 20;
/// The HTML report's own policy: it is self-contained (inline CSS, no
/// script, nothing to load).
pub const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Why a run request failed, as an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl Failure {
    fn of(e: RpcError, r: &berth_store::Redactor) -> Failure {
        let (status, kind) = match e.code {
            rpc::INVALID_PARAMS => (StatusCode::BAD_REQUEST, "bad-request"),
            rpc::UNKNOWN_RUN => (StatusCode::NOT_FOUND, "not-found"),
            rpc::RUN_STATE_CONFLICT => (StatusCode::CONFLICT, "conflict"),
            rpc::OPERATION_IN_PROGRESS => (StatusCode::CONFLICT, "busy"),
            rpc::ENGINE_UNAVAILABLE | rpc::SHUTTING_DOWN => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
        };
        Failure {
            status,
            kind,
            message: r.redact(&e.message),
        }
    }

    fn internal(message: String) -> Failure {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message,
        }
    }

    fn json(&self) -> Response {
        error(self.status, self.kind, self.message.clone())
    }
}

/// One `run.*` call through the dispatcher, its answer redacted.
async fn call(
    s: &HttpState,
    method: &str,
    params: Value,
    r: &berth_store::Redactor,
) -> Result<Value, Failure> {
    let parsed = RpcCall::parse(method, Some(params)).map_err(|e| Failure::of(e, r))?;
    let mut v = dispatch(&s.rpc, parsed)
        .await
        .map_err(|e| Failure::of(e, r))?;
    redact_value(&mut v, r);
    Ok(v)
}

/// What the run's start parameters say about it (a verify run's stack
/// file, the engine); absent parameters are simply not shown.
fn extras_of(s: &HttpState, id: &str, kind: &str, r: &berth_store::Redactor) -> RunExtras {
    let params: Value = s
        .ctx
        .store()
        .run_params(id)
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let engine = match params.get("engine") {
        Some(Value::Object(e)) => e.get("kind").and_then(Value::as_str).map(str::to_string),
        // A vet run without an engine (`--no-engine`).
        Some(Value::Null) if kind == berth_verify::vet::VET_KIND => Some("none".into()),
        _ => None,
    };
    RunExtras {
        stack: params
            .get("stack_file")
            .and_then(Value::as_str)
            .map(|p| r.redact(p)),
        engine,
        has_report: false,
    }
}

/// The newest `limit` runs.
pub async fn list(s: &HttpState, limit: usize) -> Result<Vec<RunRow>, Failure> {
    let r = redactor(&s.ctx);
    let v = call(s, "run.list", json!({ "limit": limit }), &r).await?;
    Ok(v.get("runs")
        .and_then(Value::as_array)
        .map(|runs| {
            runs.iter()
                .map(|l| {
                    let id = l.get("id").and_then(Value::as_str).unwrap_or_default();
                    let kind = l.get("kind").and_then(Value::as_str).unwrap_or_default();
                    run_row(l, &extras_of(s, id, kind, &r))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// How many of the newest runs hold (for the navigation); 0 when the
/// runs cannot be read.
pub async fn held_count(s: &HttpState) -> usize {
    match call(
        s,
        "run.list",
        json!({ "limit": HELD_SCAN_MAX }),
        &redactor(&s.ctx),
    )
    .await
    {
        Ok(v) => v.get("runs").and_then(Value::as_array).map_or(0, |runs| {
            runs.iter()
                .filter(|r| r.get("state").and_then(Value::as_str) == Some("failed_holding"))
                .count()
        }),
        Err(_) => 0,
    }
}

/// `run.show` of `id`, and where its HTML report is.
async fn show(
    s: &HttpState,
    id: &str,
) -> Result<(RunDetailView, Option<std::path::PathBuf>), Failure> {
    let r = redactor(&s.ctx);
    let v = call(s, "run.show", json!({ "run": id }), &r).await?;
    let detail: berth_verify::RunDetail = serde_json::from_value(v)
        .map_err(|e| Failure::internal(format!("unexpected run.show answer: {e}")))?;
    // The report's own model: marks, counts and durations exactly as
    // report.json has them (artifact contents are not embedded).
    let no_excerpt = |_: &berth_core::pipeline::ArtifactMeta| None;
    let mut report = berth_verify::Report::from_run(&detail.run, now_ms(), &no_excerpt);
    if let Some(m) = &detail.matrix {
        report = report.with_matrix(m, &no_excerpt);
    }
    report.redact(&|t| r.redact(t));
    let value = serde_json::to_value(&report)
        .map_err(|e| Failure::internal(format!("the run's report does not serialize: {e}")))?;
    let mut extras = extras_of(s, &detail.run.id, &detail.run.kind, &r);
    // The run's environment names the engine with its version.
    let env = &report.environment;
    if let Some(kind) = env.get("engine.kind") {
        extras.engine = Some(match env.get("engine.version") {
            Some(v) => format!("{kind} {v}"),
            None => kind.clone(),
        });
    }
    extras.has_report = detail.report_html.is_some();
    Ok((run_detail(&value, &extras), detail.report_html))
}

// ---- REST (the handlers and their OpenAPI description are in `api`) ----

/// `GET /api/runs?limit=`.
pub async fn api_list(s: &HttpState, limit: Option<usize>) -> Response {
    let limit = limit
        .unwrap_or(API_RUNS_DEFAULT)
        .min(rpc::RUNS_LIST_LIMIT_MAX);
    match list(s, limit).await {
        Ok(runs) => json_ok(&RunsView { runs }),
        Err(f) => f.json(),
    }
}

/// `GET /api/runs/{id}`.
pub async fn api_show(s: &HttpState, id: &str) -> Response {
    match show(s, id).await {
        Ok((d, _)) => json_ok(&d),
        Err(f) => f.json(),
    }
}

fn json_ok(v: &impl serde::Serialize) -> Response {
    match serde_json::to_string(v) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

// ---- pages ----

fn csrf_of(who: &Principal) -> &str {
    match who {
        Principal::Session { csrf, .. } => csrf,
        Principal::Bearer => "",
    }
}

/// A page for a failure that has no run to show.
fn failure_page(f: &Failure) -> Response {
    let body = format!(
        "{}<p><a href=\"/runs\">All runs</a></p>",
        html::flash(Tone::Bad, &f.message)
    );
    (f.status, Html(html::page("run", &body))).into_response()
}

/// `GET /runs`.
pub async fn page_list(
    State(s): State<HttpState>,
    Extension(who): Extension<Principal>,
) -> Response {
    match list(&s, PAGE_RUNS_MAX).await {
        Ok(runs) => Html(html::runs_page(&runs, csrf_of(&who))).into_response(),
        Err(f) => failure_page(&f),
    }
}

/// What the run page says after an action (`?done=<action>`): the run's
/// state now, never text from the request.
fn done_flash(action: &str, d: &RunDetailView) -> Option<FlashLine> {
    let action = RUN_ACTIONS.iter().find(|a| **a == action)?;
    let mut name = action.to_string();
    name[..1].make_ascii_uppercase();
    Some(if d.run.held {
        FlashLine {
            tone: Tone::Bad,
            message: format!(
                "{name} done: the run holds again, on stage {}.",
                d.run.failed_stage.as_deref().unwrap_or("?")
            ),
        }
    } else {
        FlashLine {
            tone: if d.run.tone == Tone::Idle {
                Tone::Info
            } else {
                d.run.tone
            },
            message: format!("{name} done: the run is {}.", d.run.label),
        }
    })
}

/// `GET /runs/{id}` (`?done=override|retry|abandon` after an action).
pub async fn page_show(
    State(s): State<HttpState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    q: Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (d, _) = match show(&s, &id).await {
        Ok(x) => x,
        Err(f) => return failure_page(&f),
    };
    let flash = q
        .as_ref()
        .ok()
        .and_then(|Query(q)| q.get("done"))
        .and_then(|a| done_flash(a, &d));
    let held = held_count(&s).await;
    Html(html::run_page(&d, csrf_of(&who), flash.as_ref(), held)).into_response()
}

/// The run page with a message, answered with `status`.
async fn run_page_with(
    s: &HttpState,
    who: &Principal,
    id: &str,
    status: StatusCode,
    message: String,
) -> Response {
    match show(s, id).await {
        Ok((d, _)) => {
            let flash = FlashLine {
                tone: Tone::Bad,
                message,
            };
            let held = held_count(s).await;
            (
                status,
                Html(html::run_page(&d, csrf_of(who), Some(&flash), held)),
            )
                .into_response()
        }
        Err(_) => failure_page(&Failure {
            status,
            kind: "failed",
            message,
        }),
    }
}

/// `GET /runs/{id}/report`: the run's own HTML report, from the path the
/// run recorded.
pub async fn report(State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    let path = match show(&s, &id).await {
        Ok((_, Some(p))) => p,
        Ok((_, None)) => {
            return failure_page(&Failure {
                status: StatusCode::NOT_FOUND,
                kind: "not-found",
                message: format!("run {id} has no HTML report (yet)"),
            });
        }
        Err(f) => return failure_page(&f),
    };
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use std::io::Read;
        let file = std::fs::File::open(&path)?;
        let mut bytes = Vec::new();
        file.take(REPORT_BYTES_MAX + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > REPORT_BYTES_MAX {
            return Err(std::io::Error::other(format!(
                "the report is larger than {} MiB",
                REPORT_BYTES_MAX >> 20
            )));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    })
    .await;
    let text = match read {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            return failure_page(&Failure::internal(format!(
                "cannot read the report of run {id}: {e}"
            )));
        }
        Err(e) => return failure_page(&Failure::internal(e.to_string())),
    };
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        redactor(&s.ctx).redact(&text),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(REPORT_CSP),
    );
    resp
}

/// `GET /ui/runs/{id}/abandon`: the confirmation.
pub async fn confirm_abandon(
    State(s): State<HttpState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let (d, _) = match show(&s, &id).await {
        Ok(x) => x,
        Err(f) => return failure_page(&f),
    };
    if !d.run.held {
        return run_page_with(
            &s,
            &who,
            &id,
            StatusCode::CONFLICT,
            format!(
                "run {id} is not held (it is {}): only a run holding on a failed stage waits for an operator",
                d.run.label
            ),
        )
        .await;
    }
    let form = html::confirm_abandon(&d, Some(csrf_of(&who)));
    Html(html::page(&format!("abandon {id}"), &form)).into_response()
}

/// `POST /ui/runs/{id}/{action}`: override, retry or abandon, through the
/// RPC (`run.<action>`), which drives the run until it completes or holds
/// again. Then the run's page, with what happened.
pub async fn action(
    State(s): State<HttpState>,
    Extension(who): Extension<Principal>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    if !RUN_ACTIONS.contains(&action.as_str()) {
        return failure_page(&Failure {
            status: StatusCode::NOT_FOUND,
            kind: "not-found",
            message: format!("unknown action {action:?} (override, retry or abandon)"),
        });
    }
    let r = redactor(&s.ctx);
    match call(&s, &format!("run.{action}"), json!({ "run": id }), &r).await {
        Ok(_) => {
            // The id passed the RPC's check: letters, digits, `-`, `_`, `.`.
            let to = format!("/runs/{id}?done={action}");
            match HeaderValue::from_str(&to) {
                Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
                Err(_) => Html(html::page("run", &html::flash(Tone::Ok, "done"))).into_response(),
            }
        }
        Err(f) if matches!(f.status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND) => {
            failure_page(&f)
        }
        Err(f) => {
            tracing::info!(run = %id, action, error = %f.message, "run action refused or failed");
            run_page_with(&s, &who, &id, f.status, format!("{action}: {}", f.message)).await
        }
    }
}

/// `POST /ui/runs/{id}/abandon` (the confirmation's form).
pub async fn abandon(
    state: State<HttpState>,
    who: Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    action(state, who, Path((id, "abandon".to_string()))).await
}
