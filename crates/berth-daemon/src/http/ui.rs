//! The dashboard: the login exchange, the page, the uninstall
//! confirmation, the actions (through the RPC dispatcher, like every other
//! client) and the static files. Works without JavaScript for reading
//! (plain forms and a refresh); with it, htmx swaps the live fragments in.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use berth_core::graph;
use berth_core::naming;
use berth_web::Tone;
use berth_web::html::{self, UninstallPreview};
use serde_json::json;

use super::{HttpState, Principal, auth, error, form_field, now_ms, redirect, too_many};
use crate::hub::{FRESH_WAIT_MS_MAX, event_row, redactor};
use crate::monitor::lock;
use crate::rpc::RpcCall;
use crate::server::dispatch;

/// Events the page shows when it loads.
pub const PAGE_EVENTS: usize = 50;

/// `GET /login`.
pub async fn login_form() -> Response {
    Html(html::login_page(None)).into_response()
}

/// `POST /login` (form `token`): a session cookie for the right token.
pub async fn login(
    State(s): State<HttpState>,
    client: Option<axum::Extension<super::ClientAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client = auth::ClientKey::of(client.map(|c| c.0.0.ip()));
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if !auth::same_origin(h("origin"), h("host"), h("sec-fetch-site")) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "cross-origin login refused",
        );
    }
    let now = now_ms();
    {
        let mut limiter = lock(&s.auth.limiter);
        if let Err(ms) = limiter.check(client, now) {
            let mut r = too_many(ms);
            *r.body_mut() = html::login_page(Some(&format!(
                "Too many failed attempts: try again in {} s.",
                ms.div_ceil(1000)
            )))
            .into();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            return r;
        }
    }
    let given = form_field(&body, "token").unwrap_or_default();
    if !s.auth.token.matches(given.trim()) {
        s.hub.metrics.login_failed();
        if lock(&s.auth.limiter).failed(client, now) {
            tracing::warn!(
                ?client,
                "too many failed logins: this client is locked out for a while"
            );
        }
        return (
            StatusCode::UNAUTHORIZED,
            Html(html::login_page(Some("Wrong token."))),
        )
            .into_response();
    }
    let created = lock(&s.auth.sessions).create(now);
    match created {
        Ok((id, _csrf)) => {
            tracing::info!("dashboard login");
            (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, auth::session_cookie(&id)),
                    (header::LOCATION, "/".to_string()),
                ],
            )
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `POST /logout`.
pub async fn logout(State(s): State<HttpState>, Extension(who): Extension<Principal>) -> Response {
    if let Principal::Session { id, .. } = who {
        lock(&s.auth.sessions).remove(&id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, auth::clear_cookie()),
            (header::LOCATION, "/login".to_string()),
        ],
    )
        .into_response()
}

fn csrf_of(who: &Principal) -> &str {
    match who {
        Principal::Session { csrf, .. } => csrf,
        // A bearer client has no session; its forms would be refused,
        // which is right: it has no business posting forms.
        Principal::Bearer => "",
    }
}

/// `GET /`: the dashboard.
pub async fn dashboard(
    State(s): State<HttpState>,
    Extension(who): Extension<Principal>,
) -> Response {
    let snap = s
        .hub
        .fresh_snapshot(Duration::from_millis(FRESH_WAIT_MS_MAX))
        .await;
    let r = redactor(&s.ctx);
    let events: Vec<_> = s
        .ctx
        .store()
        .tail_events(None, PAGE_EVENTS)
        .unwrap_or_default()
        .iter()
        .map(|e| event_row(e, &r))
        .collect();
    let last = events.last().map_or(0, |e| e.id);
    let held_runs = super::runs::held_count(&s).await;
    let page = html::dashboard_page(&snap.view, &events, csrf_of(&who), held_runs).replace(
        "sse-connect=\"/ui/stream\"",
        &format!("sse-connect=\"/ui/stream?after_id={last}\""),
    );
    Html(page).into_response()
}

/// What uninstalling `id` removes.
fn preview(s: &HttpState, id: &str) -> Result<UninstallPreview, String> {
    let stacks = berth_ops::stackdb::installed_stacks(&s.ctx).map_err(|e| e.to_string())?;
    let Some((stack, records)) = stacks.values().find(|(st, _)| st.apps.contains_key(id)) else {
        return Err(format!("unknown app {id:?}: it is not installed"));
    };
    let installed: BTreeSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let mut p = UninstallPreview {
        app: id.to_string(),
        containers: Vec::new(),
        volumes: Vec::new(),
        secrets: Vec::new(),
        dependents: graph::dependents(stack, id)
            .into_iter()
            .filter(|d| installed.contains(d.as_str()))
            .collect(),
    };
    for a in stack.with_companions(id) {
        if !installed.contains(a.id.as_str()) {
            continue;
        }
        p.containers
            .push(naming::container_name(&stack.name, &a.id));
        for v in a.volumes.iter() {
            p.volumes
                .push(naming::volume_name(&stack.name, &a.id, &v.name));
        }
        for sec in &a.secrets {
            if !p.secrets.contains(sec) {
                p.secrets.push(sec.clone());
            }
        }
    }
    Ok(p)
}

/// `GET /ui/apps/{id}/uninstall`: the confirmation (a dialog with htmx,
/// a page without).
pub async fn confirm_uninstall(
    State(s): State<HttpState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let p = match preview(&s, &id) {
        Ok(p) => p,
        Err(e) => return (StatusCode::NOT_FOUND, Html(html::flash(Tone::Bad, &e))).into_response(),
    };
    let form = html::confirm_uninstall(&p, Some(csrf_of(&who)));
    if headers.contains_key("hx-request") {
        Html(form).into_response()
    } else {
        Html(html::page(&format!("uninstall {id}"), &form)).into_response()
    }
}

/// `POST /ui/apps/{id}/{action}`: start, stop, restart, reinstall,
/// uninstall. Answers a one-line flash (htmx) or redirects to the page.
pub async fn action(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let flag = |name: &str| form_field(&body, name).is_some_and(|v| v == "true" || v == "on");
    let (method, params, done) = match action.as_str() {
        "start" => ("package.start", json!({ "apps": [id] }), "started"),
        "stop" => ("package.stop", json!({ "apps": [id] }), "stopped"),
        "restart" => ("package.restart", json!({ "apps": [id] }), "restarted"),
        "reinstall" => {
            let file = s
                .ctx
                .store()
                .get_app(&id)
                .ok()
                .flatten()
                .and_then(|r| r.stack_file);
            match file {
                Some(f) => (
                    "package.reinstall",
                    json!({ "apps": [id], "stack_file": f }),
                    "reinstalled",
                ),
                None => {
                    return answer(
                        &headers,
                        Tone::Bad,
                        format!(
                            "{id} was installed without a stack file: reinstall it with the CLI"
                        ),
                    );
                }
            }
        }
        "uninstall" => (
            "package.uninstall",
            json!({ "apps": [id], "keep_data": flag("keep_data"), "cascade": flag("cascade") }),
            "uninstalled",
        ),
        other => {
            return error(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("unknown action {other:?}"),
            );
        }
    };
    let result = match RpcCall::parse(method, Some(params)) {
        Ok(call) => dispatch(&s.rpc, call).await,
        Err(e) => Err(e),
    };
    let r = redactor(&s.ctx);
    match result {
        Ok(_) => answer(&headers, Tone::Ok, format!("{done} {id}")),
        Err(e) => answer(
            &headers,
            Tone::Bad,
            r.redact(&format!("{method} {id}: {}", e.message)),
        ),
    }
}

/// `POST /ui/apps/{id}/uninstall` (the confirmation's form).
pub async fn uninstall(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    action(State(s), headers, Path((id, "uninstall".to_string())), body).await
}

/// htmx gets the flash line; a plain form post goes back to the page.
fn answer(headers: &HeaderMap, tone: Tone, message: String) -> Response {
    if headers.contains_key("hx-request") {
        Html(html::flash(tone, &message)).into_response()
    } else if tone == Tone::Ok {
        redirect("/")
    } else {
        Html(html::page("error", &html::flash(tone, &message))).into_response()
    }
}

/// `GET /static/{name}`.
pub async fn static_file(Path(name): Path<String>) -> Response {
    match berth_web::assets::asset(&name) {
        Some(a) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, a.content_type),
                // Pages link `?v=<hash of every asset>`: safe to keep.
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            a.bytes,
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "not-found", "no such file"),
    }
}
