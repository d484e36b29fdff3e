//! The live state of the HTTP API: one owned publisher task keeps a
//! snapshot of the whole state (`GET /api/state` answers it without
//! touching the engine) and broadcasts every change and every new event to
//! the live streams (SSE).
//!
//! The publisher is told to look again ([`Hub::bump`]) at the end of every
//! reconcile tick, after every mutating request and after supervision
//! actions; between bumps it refreshes every `FALLBACK_REFRESH_MS`, and
//! every `OPERATION_REFRESH_MS` while an operation runs (to show its
//! steps). It refreshes only while someone looks: a live-stream client is
//! connected, or a read (`/api/state`, `/metrics`, the page) asked for a
//! fresh snapshot. A daemon nobody watches makes no engine call for the
//! API, so a no-op tick still costs one list call per stack. A refresh asks the loop for `container.list` and
//! `daemon.status` (the same dispatcher the RPC uses), reads new events and
//! unfinished operations from the store, measures disk usage, builds the
//! view (`berth_web::build_state`), diffs it with the previous one and
//! publishes the differences.
//!
//! Bounds: the broadcast channel holds `LIVE_QUEUE_MAX` messages; a client
//! that falls that far behind gets a full resynchronisation instead of the
//! messages it missed. Every string that goes out has been through the
//! secret redactor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use berth_ops::Ctx;
use berth_web::html::{self, EventRow};
use berth_web::view::{DiskView, OperationView};
use berth_web::{Change, NodeSample, StateInput, StateView};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, watch};

use crate::metrics::Metrics;
use crate::rpc::RpcCall;
use crate::server::{RpcState, dispatch};

/// Messages the live channel holds before a slow client lags.
pub const LIVE_QUEUE_MAX: usize = 1_024;
/// Refresh at least this often without a bump.
pub const FALLBACK_REFRESH_MS: u64 = 15_000;
/// Refresh this often while an operation runs.
pub const OPERATION_REFRESH_MS: u64 = 500;
/// A burst of bumps within this window makes one refresh.
pub const BUMP_DEBOUNCE_MS: u64 = 30;
/// Events read from the store per refresh round.
pub const EVENTS_PER_REFRESH_MAX: usize = 500;
/// How long `GET /api/state` waits for a refresh that is due.
pub const FRESH_WAIT_MS_MAX: u64 = 3_000;

/// A published state.
pub struct Snapshot {
    /// The bump generation this snapshot includes.
    pub generation: u64,
    pub view: StateView,
    /// `view` as JSON, serialized once.
    pub json: String,
}

/// One message of the live streams, rendered once for every client: JSON
/// for the API stream, HTML for the dashboard's.
#[derive(Debug, Clone)]
pub struct LiveMsg {
    /// API stream event name: `event`, `app`, `app-removed`, `apps`,
    /// `badges`, `nodes`, `engine`.
    pub api_event: &'static str,
    pub api_data: String,
    /// Dashboard stream event name (`event`, `app-<id>`, `apps`, `badges`,
    /// `sync`, `engine`); `None` when the dashboard needs nothing.
    pub ui_event: Option<String>,
    pub ui_data: String,
    /// The store event id, for `Last-Event-ID`.
    pub event_id: Option<i64>,
}

/// Shared by the loop (bumps, metrics), the RPC server (bumps) and the
/// HTTP API (snapshot, live channel).
pub struct Hub {
    requested: AtomicU64,
    /// Live-stream clients connected now.
    watchers: AtomicUsize,
    /// A read wants a fresh snapshot.
    demanded: AtomicBool,
    wake: Notify,
    snapshot: watch::Sender<Arc<Snapshot>>,
    live: broadcast::Sender<Arc<LiveMsg>>,
    pub metrics: Arc<Metrics>,
}

impl Hub {
    pub fn new() -> Hub {
        let empty = StateView {
            generated_at_ms: 0,
            engine: berth_web::view::EngineView {
                kind: None,
                version: None,
                api_version: None,
                reachable: true,
                error: None,
            },
            daemon: berth_web::view::DaemonView {
                started_at_ms: None,
                uptime_ms: None,
                ticks: 0,
                last_tick_at_ms: None,
                last_tick_duration_us: None,
                in_flight: BTreeMap::new(),
            },
            badges: Vec::new(),
            stacks: Vec::new(),
            apps: Vec::new(),
            nodes: Vec::new(),
            disks: Vec::new(),
        };
        let json = serde_json::to_string(&empty).unwrap_or_default();
        let (snapshot, _) = watch::channel(Arc::new(Snapshot {
            generation: 0,
            view: empty,
            json,
        }));
        let (live, _) = broadcast::channel(LIVE_QUEUE_MAX);
        Hub {
            // Generation 1 is due at once: the first snapshot.
            requested: AtomicU64::new(1),
            watchers: AtomicUsize::new(0),
            demanded: AtomicBool::new(false),
            wake: Notify::new(),
            snapshot,
            live,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Something may have changed: refresh soon.
    pub fn bump(&self) {
        self.requested.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// A reconcile tick ended after `elapsed`.
    pub fn tick_done(&self, elapsed: Duration) {
        self.metrics.observe_tick(elapsed);
        self.bump();
    }

    /// The latest snapshot, right away.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// The latest snapshot that includes every bump made before this call
    /// (so a client sees the effect of its own request), waiting at most
    /// `max`; the latest one after that.
    pub async fn fresh_snapshot(&self, max: Duration) -> Arc<Snapshot> {
        let want = self.requested.load(Ordering::SeqCst);
        let mut rx = self.snapshot.subscribe();
        if rx.borrow().generation < want {
            self.demanded.store(true, Ordering::SeqCst);
            self.wake.notify_one();
        }
        let _ = tokio::time::timeout(max, rx.wait_for(|s| s.generation >= want)).await;
        self.snapshot()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveMsg>> {
        self.live.subscribe()
    }

    /// A live-stream client connected (`1`) or left (`-1`).
    pub fn watching(&self, delta: isize) {
        if delta > 0 {
            self.watchers.fetch_add(1, Ordering::SeqCst);
            self.wake.notify_one();
        } else {
            self.watchers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether the publisher should refresh now.
    fn wanted(&self) -> bool {
        // Both evaluated: a demand is consumed even while clients watch.
        let demanded = self.demanded.swap(false, Ordering::SeqCst);
        demanded || self.watchers.load(Ordering::SeqCst) > 0
    }

    fn publish(&self, msg: LiveMsg) {
        // No subscriber is fine: nobody is watching.
        let _ = self.live.send(Arc::new(msg));
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

/// Where disk usage is measured: the state directory and the engines'
/// storage (whichever exist).
pub fn disk_paths(state_root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = vec![("state".to_string(), state_root.to_path_buf())];
    for p in ["/var/lib/containers/storage", "/var/lib/docker"] {
        if Path::new(p).is_dir() {
            out.push(("engine".to_string(), PathBuf::from(p)));
        }
    }
    out
}

fn disk_usage(paths: &[(String, PathBuf)]) -> Vec<DiskView> {
    let mut out: Vec<DiskView> = Vec::new();
    let mut seen = Vec::new();
    for (role, path) in paths {
        let Ok(st) = rustix::fs::statvfs(path) else {
            continue;
        };
        // One entry per filesystem: the state dir and the engine's storage
        // are often the same disk.
        if seen.contains(&st.f_fsid) {
            continue;
        }
        seen.push(st.f_fsid);
        let total = st.f_blocks.saturating_mul(st.f_frsize);
        let avail = st.f_bavail.saturating_mul(st.f_frsize);
        let free = st.f_bfree.saturating_mul(st.f_frsize);
        let used = total.saturating_sub(free);
        // As df computes it: used / (used + available to users).
        let denom = used + avail;
        if denom == 0 {
            continue;
        }
        out.push(DiskView {
            role: role.clone(),
            path: path.display().to_string(),
            used_percent: (used as f64 / denom as f64 * 1000.0).round() / 10.0,
            available_bytes: avail,
        });
    }
    out
}

/// Replace every secret value in every string of `v`.
pub fn redact_value(v: &mut Value, redactor: &berth_store::Redactor) {
    match v {
        Value::String(s) => {
            let r = redactor.redact(s);
            if r != *s {
                *s = r;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact_value(x, redactor)),
        Value::Object(m) => m.values_mut().for_each(|x| redact_value(x, redactor)),
        _ => {}
    }
}

/// The redactor for every secret the store holds now.
pub fn redactor(ctx: &Ctx) -> berth_store::Redactor {
    berth_store::Redactor::new(ctx.state.secrets().all_values().unwrap_or_default())
}

/// A store event as the API shows it (redacted).
pub fn event_json(e: &berth_store::EventRecord, redactor: &berth_store::Redactor) -> Value {
    json!({
        "id": e.id,
        "at_ms": e.at_ms,
        "app": e.app,
        "kind": e.kind,
        "message": redactor.redact(&e.message),
    })
}

/// A store event as the dashboard shows it (redacted).
pub fn event_row(e: &berth_store::EventRecord, redactor: &berth_store::Redactor) -> EventRow {
    EventRow::new(
        e.id,
        e.at_ms,
        e.app.clone(),
        e.kind.clone(),
        redactor.redact(&e.message),
    )
}

/// The publisher: runs until `stop` turns true. See the module docs.
pub async fn publisher(
    hub: Arc<Hub>,
    rpc: RpcState,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
) {
    let disks = disk_paths(ctx.state.root());
    // Only events from now on are news; the dashboard reads older ones
    // from the store when it renders.
    let mut last_event = ctx.store().max_event_id().unwrap_or(0);
    let mut samples: BTreeMap<String, NodeSample> = BTreeMap::new();
    let mut last_status = json!({ "apps": [] });
    let mut last_daemon = json!({});
    loop {
        if !hub.wanted() {
            // Nobody looks: skip the engine; a new client starts from the
            // store's events itself.
            last_event = ctx.store().max_event_id().unwrap_or(last_event);
            tokio::select! {
                () = crate::http::stopped(&mut stop) => return,
                () = hub.wake.notified() => {
                    tokio::time::sleep(Duration::from_millis(BUMP_DEBOUNCE_MS)).await;
                }
            }
            continue;
        }
        let generation = hub.requested.load(Ordering::SeqCst);
        let redactor = redactor(&ctx);

        // New events first, so a state change is never announced before
        // the event that explains it.
        for _ in 0..10 {
            let events = match ctx
                .store()
                .events(None, Some(last_event), EVENTS_PER_REFRESH_MAX)
            {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "live: cannot read events");
                    break;
                }
            };
            let n = events.len();
            for e in &events {
                last_event = e.id;
                hub.publish(LiveMsg {
                    api_event: "event",
                    api_data: event_json(e, &redactor).to_string(),
                    ui_event: Some("event".into()),
                    ui_data: html::event(&event_row(e, &redactor)),
                    event_id: Some(e.id),
                });
            }
            hub.metrics.events_published(n as u64);
            if n < EVENTS_PER_REFRESH_MAX {
                break;
            }
        }

        match dispatch(&rpc, RpcCall::ContainerList).await {
            Ok(mut s) => {
                redact_value(&mut s, &redactor);
                last_status = s;
            }
            Err(e) => tracing::debug!(error = %e, "live: status unavailable; keeping the last one"),
        }
        match dispatch(&rpc, RpcCall::DaemonStatus).await {
            Ok(mut d) => {
                redact_value(&mut d, &redactor);
                last_daemon = d;
            }
            Err(e) => tracing::debug!(error = %e, "live: daemon status unavailable"),
        }
        let operations = unfinished_operations(&ctx);
        let busy = !operations.is_empty();
        let (view, next_samples) = berth_web::build_state(&StateInput {
            now_ms: u64::try_from(berth_store::now_ms()).unwrap_or(0),
            status: &last_status,
            daemon: &last_daemon,
            operations,
            disks: disk_usage(&disks),
            samples: &samples,
        });
        samples = next_samples;
        let previous = hub.snapshot();
        for change in berth_web::changes(&previous.view, &view) {
            hub.publish(live_change(&change, &view));
        }
        hub.metrics.observe_state(&view);
        let json = serde_json::to_string(&view).unwrap_or_default();
        hub.snapshot.send_replace(Arc::new(Snapshot {
            generation,
            view,
            json,
        }));

        let wait = Duration::from_millis(if busy {
            OPERATION_REFRESH_MS
        } else {
            FALLBACK_REFRESH_MS
        });
        tokio::select! {
            () = crate::http::stopped(&mut stop) => return,
            () = hub.wake.notified() => {
                tokio::time::sleep(Duration::from_millis(BUMP_DEBOUNCE_MS)).await;
            }
            () = tokio::time::sleep(wait) => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

fn unfinished_operations(ctx: &Ctx) -> Vec<OperationView> {
    let ops = match ctx.store().unfinished_ops() {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "live: cannot read the journal");
            return Vec::new();
        }
    };
    ops.into_iter()
        .map(|o| OperationView {
            kind: o.kind,
            app: o.app,
            started_at_ms: u64::try_from(o.started_at_ms).unwrap_or(0),
            steps_done: o
                .steps
                .iter()
                .filter(|s| s.state == berth_store::STEP_STATE_DONE)
                .count() as u32,
            steps: o.steps.into_iter().map(|s| s.kind).collect(),
        })
        .collect()
}

/// The live message for one change.
pub fn live_change(change: &Change, view: &StateView) -> LiveMsg {
    match change {
        Change::App(app) => LiveMsg {
            api_event: "app",
            api_data: serde_json::to_string(app).unwrap_or_default(),
            ui_event: Some(format!("app-{}", app.id)),
            ui_data: html::card(app, None),
            event_id: None,
        },
        Change::AppRemoved(id) => LiveMsg {
            api_event: "app-removed",
            api_data: json!({ "id": id }).to_string(),
            ui_event: None,
            ui_data: String::new(),
            event_id: None,
        },
        Change::Apps => LiveMsg {
            api_event: "apps",
            api_data: json!(view.apps.iter().map(|a| &a.id).collect::<Vec<_>>()).to_string(),
            ui_event: Some("apps".into()),
            ui_data: html::cards(&view.apps, None),
            event_id: None,
        },
        Change::Badges => LiveMsg {
            api_event: "badges",
            api_data: json!({ "badges": view.badges, "stacks": view.stacks }).to_string(),
            ui_event: Some("badges".into()),
            ui_data: html::badges(&view.badges),
            event_id: None,
        },
        Change::Nodes => LiveMsg {
            api_event: "nodes",
            api_data: serde_json::to_string(&view.nodes).unwrap_or_default(),
            ui_event: Some("sync".into()),
            ui_data: html::sync(&view.nodes),
            event_id: None,
        },
        Change::Engine => LiveMsg {
            api_event: "engine",
            api_data: serde_json::to_string(&view.engine).unwrap_or_default(),
            ui_event: Some("engine".into()),
            ui_data: html::engine(&view.engine),
            event_id: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_reaches_every_string() {
        let r = berth_store::Redactor::new(vec!["s3cr3t-value-xyz".into()]);
        let mut v = json!({"a": ["x s3cr3t-value-xyz y", {"b": "s3cr3t-value-xyz"}], "n": 1});
        redact_value(&mut v, &r);
        assert!(!v.to_string().contains("s3cr3t-value-xyz"), "{v}");
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_snapshot_waits_for_a_due_refresh_then_gives_up() {
        let hub = Hub::new();
        // Generation 1 is due and nobody publishes: the wait is bounded.
        let s = hub.fresh_snapshot(Duration::from_millis(100)).await;
        assert_eq!(s.generation, 0);
        let view = s.view.clone();
        hub.snapshot.send_replace(Arc::new(Snapshot {
            generation: 1,
            view,
            json: String::new(),
        }));
        assert_eq!(
            hub.fresh_snapshot(Duration::from_secs(1)).await.generation,
            1
        );
        hub.bump();
        assert_eq!(
            hub.fresh_snapshot(Duration::from_millis(10))
                .await
                .generation,
            1
        );
    }
}
