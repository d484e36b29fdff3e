//! Continuous health checks: one owned task per running app that has a
//! health check, probing at the check's interval (the first probe at once,
//! failures during the start period not counted) and publishing a
//! `HealthView` into a shared map. A status change is announced to the loop
//! as `Event::HealthChanged`. Tasks live in a `JoinSet` owned by
//! `Monitors`: cancelled when the app stops running, goes away, is
//! restarted, or the daemon shuts down — never detached.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use berth_core::classify::HealthStatus;
use berth_core::model::HealthCheck;
use berth_core::supervise::HealthView;
use berth_engine::Engine;
use berth_probe::health::{HealthTracker, Target, probe_once};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::Clock;
use crate::supervisor::Event;

/// The monitors' verdicts by app id, shared with the loop and requests.
pub type HealthMap = Arc<Mutex<BTreeMap<String, HealthView>>>;

/// What a monitor watches: a container identity. A different container
/// (recreated) gets a new monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorKey {
    pub container: String,
    pub container_id: String,
}

struct Running {
    key: MonitorKey,
    handle: AbortHandle,
}

/// Told the duration and outcome of every probe (the metrics).
pub type ProbeObserver = Arc<dyn Fn(&str, std::time::Duration, bool) + Send + Sync>;

/// The set of running health monitors.
pub struct Monitors {
    tasks: JoinSet<()>,
    running: BTreeMap<String, Running>,
    pub health: HealthMap,
    pub observer: Option<ProbeObserver>,
}

impl Monitors {
    pub fn new() -> Monitors {
        Monitors {
            tasks: JoinSet::new(),
            running: BTreeMap::new(),
            health: Arc::default(),
            observer: None,
        }
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Make sure `app` has a monitor for `key` (a no-op when it has one).
    #[allow(clippy::too_many_arguments)]
    pub fn ensure(
        &mut self,
        app: &str,
        key: MonitorKey,
        network: &str,
        check: &HealthCheck,
        engine: Arc<dyn Engine>,
        tx: mpsc::Sender<Event>,
        clock: Clock,
    ) {
        if self.running.get(app).is_some_and(|r| r.key == key) {
            return;
        }
        self.cancel(app);
        // A fresh container has no verdict yet.
        lock(&self.health).insert(
            app.to_string(),
            HealthView {
                status: HealthStatus::Starting,
                since_ms: clock.now_ms(),
                detail: "waiting for the first probe".into(),
            },
        );
        let task = monitor(
            app.to_string(),
            key.container.clone(),
            network.to_string(),
            check.clone(),
            engine,
            self.health.clone(),
            tx,
            clock,
            self.observer.clone(),
        );
        let handle = self.tasks.spawn(task);
        self.running
            .insert(app.to_string(), Running { key, handle });
    }

    /// Stop `app`'s monitor and forget its verdict.
    pub fn cancel(&mut self, app: &str) {
        if let Some(r) = self.running.remove(app) {
            r.handle.abort();
        }
        lock(&self.health).remove(app);
    }

    /// Cancel every monitor whose app is not in `keep`.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.running.keys().filter(|a| !keep(a)).cloned().collect();
        for app in gone {
            self.cancel(&app);
        }
        lock(&self.health).retain(|app, _| keep(app));
    }

    /// Reap finished (aborted) tasks so the set stays bounded.
    pub fn reap(&mut self) {
        while self.tasks.try_join_next().is_some() {}
    }

    /// Cancel all and wait until every task is gone.
    pub async fn shutdown(&mut self) {
        self.running.clear();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Default for Monitors {
    fn default() -> Self {
        Monitors::new()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves a map of plain values: usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[allow(clippy::too_many_arguments)]
async fn monitor(
    app: String,
    container: String,
    network: String,
    check: HealthCheck,
    engine: Arc<dyn Engine>,
    health: HealthMap,
    tx: mpsc::Sender<Event>,
    clock: Clock,
    observer: Option<ProbeObserver>,
) {
    let started = Instant::now();
    let mut tracker = HealthTracker::new(check.retries);
    let target = Target {
        container: &container,
        network: &network,
    };
    loop {
        let probe_started = Instant::now();
        let outcome = probe_once(engine.as_ref(), &target, &check).await;
        if let Some(observe) = &observer {
            observe(&app, probe_started.elapsed(), outcome.ok);
        }
        let in_start_period = started.elapsed() < check.start_period;
        let status = tracker.record(outcome.ok, in_start_period);
        let changed = {
            let mut map = lock(&health);
            let now = clock.now_ms();
            let view = map.entry(app.clone()).or_insert_with(|| HealthView {
                status,
                since_ms: now,
                detail: String::new(),
            });
            let changed = view.status != status;
            if changed {
                view.status = status;
                view.since_ms = now;
            }
            view.detail = outcome.detail;
            changed
        };
        if changed {
            tracing::info!(app, status = ?status, "health changed");
            if tx
                .send(Event::HealthChanged { app: app.clone() })
                .await
                .is_err()
            {
                return; // The loop is gone: shutting down.
            }
        }
        tokio::time::sleep(check.interval).await;
    }
}
