//! Continuous health checks: one owned task per running app that has a
//! health check, probing at the check's interval (the first probe at once,
//! failures during the start period not counted) and publishing a
//! `HealthView` into a shared map. A status change is announced to the loop
//! as `Event::HealthChanged`. Tasks live in a `JoinSet` owned by
//! `Monitors`: cancelled when the app stops running, goes away, is
//! restarted, or the daemon shuts down — never detached.
//!
//! A check with a progress requirement also reads its value on every round
//! (alongside the probe) and feeds it to a `berth_core::progress`
//! tracker: a round fails when the probe fails *or* the value is stalled or
//! unreadable, and the detail says why (`chain tip stuck at 812345 for 21m
//! (must advance within 20m)`) — the detail the planner puts in its
//! `unhealthy: …` restart reason. The tracker lives in the task: a fresh
//! monitor (a started container, a started daemon) starts a fresh window.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use berth_core::classify::HealthStatus;
use berth_core::model::{App, HealthCheck, ProgressSource};
use berth_core::progress::{ProgressTracker, ProgressVerdict};
use berth_core::supervise::HealthView;
use berth_engine::Engine;
use berth_probe::health::{HealthTracker, ProbeOutcome, Target, probe_once};
use berth_probe::progress::{ChainAccess, read_progress};
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
    /// `chain` is what a progress check reading the chain probe's height
    /// needs ([`chain_access`]).
    #[allow(clippy::too_many_arguments)]
    pub fn ensure(
        &mut self,
        app: &str,
        key: MonitorKey,
        network: &str,
        check: &HealthCheck,
        chain: Option<ChainAccess>,
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
            chain,
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

/// What `app`'s progress check needs to read its chain probe's height (the
/// probe, and the secret file of a bitcoind probe's password); `None` for
/// any other check.
pub fn chain_access(ctx: &berth_ops::Ctx, stack: &str, app: &App) -> Option<ChainAccess> {
    let progress = app.health.as_ref()?.progress.as_ref()?;
    if progress.source != ProgressSource::ProbeHeight {
        return None;
    }
    let spec = app.probe.clone()?;
    let password_file = berth_ops::gates::password_file(ctx, stack, &app.id, &spec);
    Some(ChainAccess {
        spec,
        password_file,
    })
}

/// One round's verdict: the probe's outcome and, with a progress check,
/// the progress verdict. Fails when either fails; the detail leads with
/// what failed.
pub fn round_outcome(
    probe: ProbeOutcome,
    progress: Option<&ProgressVerdict>,
    label: &str,
) -> ProbeOutcome {
    let Some(verdict) = progress else {
        return probe;
    };
    let said = verdict.describe(label);
    match (probe.ok, verdict.fails()) {
        (true, true) => ProbeOutcome {
            ok: false,
            detail: said,
        },
        (ok, _) => ProbeOutcome {
            ok: ok && !verdict.fails(),
            detail: format!("{}; {said}", probe.detail),
        },
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
    chain: Option<ChainAccess>,
    engine: Arc<dyn Engine>,
    health: HealthMap,
    tx: mpsc::Sender<Event>,
    clock: Clock,
    observer: Option<ProbeObserver>,
) {
    let started = Instant::now();
    let mut tracker = HealthTracker::new(check.retries);
    let mut progress = check.progress.as_ref().map(|p| {
        (
            p,
            ProgressTracker::new(p.within, clock.now_ms(), check.start_period),
        )
    });
    let target = Target {
        container: &container,
        network: &network,
    };
    loop {
        let probe_started = Instant::now();
        let outcome = match &mut progress {
            None => probe_once(engine.as_ref(), &target, &check).await,
            Some((p, progress)) => {
                let (outcome, read) = tokio::join!(
                    probe_once(engine.as_ref(), &target, &check),
                    read_progress(
                        engine.as_ref(),
                        &target,
                        &p.source,
                        chain.as_ref(),
                        check.timeout
                    ),
                );
                let verdict = progress.observe(read, clock.now_ms());
                round_outcome(outcome, Some(&verdict), &p.label)
            }
        };
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

#[cfg(test)]
mod tests {
    //! The monitor task on `FakeEngine` with paused time: a command health
    //! check plus a progress check whose value is what the (fake) command
    //! prints — so one exec result drives both.

    use std::collections::BTreeMap;
    use std::time::Duration;

    use berth_core::manifest::parse_stack;
    use berth_core::spec::ContainerSpec;
    use berth_engine::{Engine, ExecOutput, FakeEngine};

    use super::*;

    const NETWORK: &str = "s";
    const CONTAINER: &str = "s-a";

    /// A running container `s-a` of a stack whose app `a` has `health`.
    async fn running(health: &str) -> (FakeEngine, HealthCheck) {
        let text = format!("[stack]\nname = \"s\"\n[apps.a]\nimage = \"i\"\n{health}");
        let stack = parse_stack("berth.toml", &text, &|_| Err("no includes".into()))
            .unwrap_or_else(|d| panic!("{d}"));
        let app = &stack.apps["a"];
        let fake = FakeEngine::new();
        fake.add_image("i");
        fake.ensure_network(NETWORK, &BTreeMap::new())
            .await
            .unwrap();
        let spec = ContainerSpec::for_app(&stack, app, None);
        fake.create_container(&spec).await.unwrap();
        fake.start_container(CONTAINER).await.unwrap();
        (fake, app.health.clone().expect("a health check"))
    }

    fn prints(fake: &FakeEngine, exit_code: i64, output: &str) {
        fake.set_exec_result(
            CONTAINER,
            ExecOutput {
                exit_code,
                output: output.into(),
            },
        );
    }

    fn view(m: &Monitors) -> HealthView {
        lock(&m.health)["a"].clone()
    }

    fn start(fake: &FakeEngine, check: &HealthCheck) -> (Monitors, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(16);
        let mut m = Monitors::new();
        m.ensure(
            "a",
            MonitorKey {
                container: CONTAINER.into(),
                container_id: "id".into(),
            },
            NETWORK,
            check,
            None,
            Arc::new(fake.clone()),
            tx,
            Clock::at(0),
        );
        (m, rx)
    }

    /// Sleep until just after the round at `t` seconds after `start`
    /// (rounds run at whole seconds: interval 1s, instant probes).
    async fn at(start: tokio::time::Instant, t: u64) {
        tokio::time::sleep_until(start + Duration::from_millis(t * 1000 + 10)).await;
    }

    fn changes(rx: &mut mpsc::Receiver<Event>) -> usize {
        let mut n = 0;
        while let Ok(e) = rx.try_recv() {
            assert!(matches!(e, Event::HealthChanged { ref app } if app == "a"));
            n += 1;
        }
        n
    }

    const HEALTH: &str = "[apps.a.health]\ncommand = [\"check\"]\ninterval = \"1s\"\ntimeout = \"1s\"\nretries = 2\nstart_period = \"2s\"\n\
        [apps.a.health.progress]\ncommand = [\"height\"]\nwithin = \"5s\"\nlabel = \"chain tip\"\n";

    #[tokio::test(start_paused = true)]
    async fn a_stalled_value_makes_the_app_unhealthy_with_the_stuck_value_and_advancing_heals_it() {
        let (fake, check) = running(HEALTH).await;
        prints(&fake, 0, "100\n");
        let t0 = tokio::time::Instant::now();
        let (mut m, mut rx) = start(&fake, &check);

        // In the start period: no progress verdict, the check passes.
        at(t0, 1).await;
        let v = view(&m);
        assert_eq!(v.status, HealthStatus::Healthy);
        assert_eq!(
            v.detail,
            "command exited 0; chain tip at 100 (start period)"
        );
        assert_eq!(changes(&mut rx), 1);
        // The window starts when the start period ends (2s) and runs 5s:
        // still healthy at 7s.
        at(t0, 7).await;
        assert_eq!(view(&m).status, HealthStatus::Healthy);
        assert_eq!(view(&m).detail, "command exited 0; chain tip at 100");
        // 8s: stalled for 6s, the first failing round; 9s: the second of
        // `retries` 2 — unhealthy, with the stuck value and since when
        // (the detail does not change from round to round).
        at(t0, 8).await;
        assert_eq!(view(&m).status, HealthStatus::Healthy);
        assert_eq!(
            view(&m).detail,
            "chain tip stuck at 100 since 00:00:02 (must advance within 5s)"
        );
        at(t0, 9).await;
        let v = view(&m);
        assert_eq!(v.status, HealthStatus::Unhealthy);
        assert_eq!(
            v.detail,
            "chain tip stuck at 100 since 00:00:02 (must advance within 5s)"
        );
        assert_eq!(v.since_ms, 9000);
        assert_eq!(changes(&mut rx), 1, "one change: healthy -> unhealthy");
        // It advances: healthy again at the next round.
        prints(&fake, 0, "101\n");
        at(t0, 10).await;
        let v = view(&m);
        assert_eq!(v.status, HealthStatus::Healthy);
        assert_eq!(v.detail, "command exited 0; chain tip at 101");
        assert_eq!(changes(&mut rx), 1);
        // A value that cannot be read fails rounds too.
        prints(&fake, 0, "warming up\n");
        at(t0, 12).await;
        let v = view(&m);
        assert_eq!(v.status, HealthStatus::Unhealthy);
        assert_eq!(
            v.detail,
            "cannot read chain tip: the command printed no number: \"warming up\""
        );
        // Both failing: the probe's reason first.
        prints(&fake, 1, "refused\n");
        at(t0, 13).await;
        assert_eq!(
            view(&m).detail,
            "command exited 1: refused; cannot read chain tip: command exited 1: refused"
        );
        m.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_monitor_starts_a_fresh_window() {
        let (fake, check) = running(HEALTH).await;
        prints(&fake, 0, "100\n");
        let (mut m, _rx) = start(&fake, &check);
        tokio::time::sleep(Duration::from_millis(9010)).await;
        assert_eq!(view(&m).status, HealthStatus::Unhealthy, "{:?}", view(&m));
        // A restarted container gets a new monitor: no verdict yet, then a
        // start period and a whole window again.
        m.cancel("a");
        let (tx, _rx2) = mpsc::channel(16);
        m.ensure(
            "a",
            MonitorKey {
                container: CONTAINER.into(),
                container_id: "id".into(),
            },
            NETWORK,
            &check,
            None,
            Arc::new(fake.clone()),
            tx,
            Clock::at(9010),
        );
        assert_eq!(view(&m).status, HealthStatus::Starting);
        // (Rounds at whole seconds after the new start; look in between.)
        tokio::time::sleep(Duration::from_millis(7500)).await;
        let v = view(&m);
        assert_eq!(v.status, HealthStatus::Healthy, "{v:?}");
        assert_eq!(v.detail, "command exited 0; chain tip at 100");
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(view(&m).status, HealthStatus::Unhealthy);
        m.shutdown().await;
    }

    #[test]
    fn round_outcomes() {
        let probe = |ok: bool| ProbeOutcome {
            ok,
            detail: if ok {
                "tcp 8332 accepted"
            } else {
                "tcp 8332: refused"
            }
            .into(),
        };
        let advancing = ProgressVerdict::Advancing {
            value: 5.0,
            latest: 5.0,
            since_ms: 0,
        };
        let stalled = ProgressVerdict::Stalled {
            value: 5.0,
            latest: 5.0,
            since_ms: 0,
            stalled_ms: 61_000,
            within_ms: 60_000,
        };
        let cases = [
            (probe(true), None, true, "tcp 8332 accepted"),
            (probe(false), None, false, "tcp 8332: refused"),
            (
                probe(true),
                Some(&advancing),
                true,
                "tcp 8332 accepted; chain tip at 5",
            ),
            (
                probe(false),
                Some(&advancing),
                false,
                "tcp 8332: refused; chain tip at 5",
            ),
            (
                probe(true),
                Some(&stalled),
                false,
                "chain tip stuck at 5 since 00:00:00 (must advance within 1m)",
            ),
            (
                probe(false),
                Some(&stalled),
                false,
                "tcp 8332: refused; chain tip stuck at 5 since 00:00:00 (must advance within 1m)",
            ),
        ];
        for (p, v, ok, detail) in cases {
            let out = round_outcome(p, v, "chain tip");
            assert_eq!((out.ok, out.detail.as_str()), (ok, detail));
        }
    }
}
