//! The live streams (Server-Sent Events): `GET /api/events/stream` sends
//! JSON for API clients, `GET /ui/stream` HTML fragments the dashboard's
//! htmx SSE extension swaps in. Both follow the hub's broadcast channel
//! (bounded: a client that falls behind gets a resynchronisation), start
//! with the current state so a client never polls, replay history events
//! after `Last-Event-ID` / `?after_id=`, and end when the daemon stops.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

use super::{HttpState, SseSlot, error};
use crate::hub::{Hub, LiveMsg, event_json, event_row, redactor};
use berth_web::html;

/// Keep-alive comment interval (proxies close idle connections).
pub const KEEPALIVE_S: u64 = 15;
/// History events replayed on connect or after a lag, at most.
pub const REPLAY_EVENTS_MAX: usize = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    pub after_id: Option<i64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Api,
    Ui,
}

struct Stream_ {
    flavor: Flavor,
    rx: broadcast::Receiver<Arc<LiveMsg>>,
    pending: VecDeque<Event>,
    stop: watch::Receiver<bool>,
    hub: Arc<Hub>,
    ctx: Arc<berth_ops::Ctx>,
    last_event: i64,
    _slot: SseSlot,
}

impl Stream_ {
    /// Queue the whole current state (on connect and after a lag).
    fn sync_state(&mut self, resync: bool, snap: Arc<crate::hub::Snapshot>) {
        match self.flavor {
            Flavor::Api => self.pending.push_back(
                Event::default()
                    .event(if resync { "resync" } else { "state" })
                    .data(snap.json.clone()),
            ),
            Flavor::Ui => {
                let v = &snap.view;
                for (name, data) in [
                    ("apps", html::cards(&v.apps, None)),
                    ("badges", html::badges(&v.badges)),
                    ("sync", html::sync(&v.nodes)),
                    ("engine", html::engine(&v.engine)),
                ] {
                    self.pending
                        .push_back(Event::default().event(name).data(data));
                }
            }
        }
    }

    /// Queue history events after the last one this client saw.
    fn replay(&mut self) {
        let events = match self
            .ctx
            .store()
            .events(None, Some(self.last_event), REPLAY_EVENTS_MAX)
        {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "live: cannot replay events");
                return;
            }
        };
        let r = redactor(&self.ctx);
        for e in &events {
            self.last_event = e.id;
            let data = match self.flavor {
                Flavor::Api => event_json(e, &r).to_string(),
                Flavor::Ui => html::event(&event_row(e, &r)),
            };
            self.pending.push_back(
                Event::default()
                    .event("event")
                    .id(e.id.to_string())
                    .data(data),
            );
        }
    }

    fn render(&mut self, m: &LiveMsg) -> Option<Event> {
        if let Some(id) = m.event_id {
            if id <= self.last_event {
                return None; // Already replayed.
            }
            self.last_event = id;
        }
        let mut e = match self.flavor {
            Flavor::Api => Event::default().event(m.api_event).data(m.api_data.clone()),
            Flavor::Ui => Event::default()
                .event(m.ui_event.clone()?)
                .data(m.ui_data.clone()),
        };
        if let Some(id) = m.event_id {
            e = e.id(id.to_string());
        }
        Some(e)
    }
}

fn last_event_id(headers: &HeaderMap, q: &StreamQuery) -> Option<i64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(q.after_id)
}

async fn open(
    s: HttpState,
    headers: &HeaderMap,
    q: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    flavor: Flavor,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad-request", e.body_text()),
    };
    let Some(slot) = SseSlot::take(&s.sse_clients, &s.hub) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("too many live clients ({})", super::SSE_CLIENTS_MAX),
        );
    };
    // Subscribe before reading the state: a change in between arrives
    // twice rather than never.
    let rx = s.hub.subscribe();
    let start = last_event_id(headers, &q);
    let now_last = s.ctx.store().max_event_id().unwrap_or(0);
    let mut st = Stream_ {
        flavor,
        rx,
        pending: VecDeque::new(),
        stop: s.stop.clone(),
        hub: s.hub.clone(),
        ctx: s.ctx.clone(),
        last_event: start.unwrap_or(now_last),
        _slot: slot,
    };
    // The state includes every request answered before this one.
    let snap = s
        .hub
        .fresh_snapshot(Duration::from_millis(crate::hub::FRESH_WAIT_MS_MAX))
        .await;
    st.sync_state(false, snap);
    if start.is_some() {
        st.replay();
    }
    Sse::new(events(st))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(KEEPALIVE_S)))
        .into_response()
}

fn events(st: Stream_) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.pending.pop_front() {
                return Some((Ok(e), st));
            }
            if *st.stop.borrow() {
                return None;
            }
            let msg = tokio::select! {
                () = crate::http::stopped(&mut st.stop) => return None,
                m = st.rx.recv() => m,
            };
            match msg {
                Ok(m) => {
                    if let Some(e) = st.render(&m) {
                        return Some((Ok(e), st));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "live client fell behind; resynchronising");
                    st.replay();
                    let snap = st.hub.snapshot();
                    st.sync_state(true, snap);
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

/// `GET /api/events/stream` (see the OpenAPI document).
pub async fn api_stream(
    State(s): State<HttpState>,
    headers: HeaderMap,
    q: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    open(s, &headers, q, Flavor::Api).await
}

/// `GET /ui/stream`: the dashboard's fragments.
pub async fn ui_stream(
    State(s): State<HttpState>,
    headers: HeaderMap,
    q: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    open(s, &headers, q, Flavor::Ui).await
}
