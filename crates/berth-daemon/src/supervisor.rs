//! The daemon loop: one task that owns the supervision state and reacts to
//! a closed set of events (`Event`) from a bounded channel. It is the only
//! place that executes supervision plans.
//!
//! A tick lists each installed stack's containers (one engine call per
//! stack; the loop runs the lists in a task of its own and goes on
//! answering requests until they are back), builds the planner's input
//! from the store and the health
//! monitors, calls `berth_core::supervise::plan_tick`, persists the
//! trackers it changed, records its events and dispatches its actions.
//! Actions run as owned tasks with bounded concurrency, in tier order per
//! stack, and never two on one app at once: every action and every
//! mutating request first claims its apps in the shared in-flight set.
//!
//! Chain gates (`gates`) run in the same tick, before supervision plans:
//! nodes are probed by an owned task per round, `plan_gates` decides, its
//! actions run as one owned task holding the apps' claims, and an app a
//! gate keeps stopped (held, rejected) is handed to the supervision planner
//! as `Intent::Gated`, so supervision never starts it nor counts it as a
//! failure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::classify::EngineStatus;
use berth_core::graph;
use berth_core::model::{App, Stack};
use berth_core::naming;
use berth_core::supervise::{
    Intent, QUARANTINE_LOG_LINES, Quarantine, SupervisedApp, SupervisionAction, TickInput, TickPlan,
};
use berth_engine::EngineError;
use berth_ops::{Ctx, OpsError, Progress, Reporter, stackdb};
use berth_store::Desired;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Clock;
use crate::config::Settings;
use crate::gates::Gates;
use crate::monitor::{MonitorKey, Monitors, lock};
use crate::rpc::{self, ProgressLine, RpcCall, RpcError, StackRef};

/// Events queued for the loop before senders wait (monitors, the engine
/// watcher) or requests are refused.
pub const EVENTS_QUEUE_MAX: usize = 256;
/// Requests served at once; more are refused as busy.
pub const REQUESTS_PARALLEL_MAX: usize = 16;
/// While the engine cannot be reached, ticks come at least this often.
pub const ENGINE_RETRY_MS: u64 = 5_000;
/// Shortest gap between two ticks, whatever the planner asks.
pub const TICK_GAP_MS_MIN: u64 = 10;
/// How long a mutating request waits for apps another operation holds.
pub const CLAIM_WAIT_MS_MAX: u64 = 30_000;
/// How often a waiting request looks again.
const CLAIM_POLL_MS: u64 = 100;
/// Progress lines kept for one request's answer.
pub const PROGRESS_LINES_MAX: usize = 1_000;

/// The reply channel of a request.
pub type Reply = oneshot::Sender<Result<Value, RpcError>>;

/// Everything the loop reacts to.
pub enum Event {
    /// Reconcile now (the periodic timer, or a test).
    Tick,
    /// The engine reported a start, death or removal of a managed
    /// container (`None`: events may have been missed).
    EngineEvent { app: Option<String> },
    /// A health monitor's verdict changed.
    HealthChanged { app: String },
    /// An API request, answered on the channel.
    Request(RpcCall, Reply),
    /// Stop: finish in-flight work (bounded) and return.
    Shutdown,
}

/// The planner: `berth_core::supervise::plan_tick` outside of tests.
pub type Planner = fn(&TickInput<'_>) -> TickPlan;

/// Which apps are being acted on (and by what), and which apps user
/// requests are waiting for. Supervision leaves a wanted app alone, so a
/// user's operation is never starved by a tick that keeps acting on it.
#[derive(Debug, Default)]
pub struct Claims {
    held: BTreeMap<String, String>,
    wanted: BTreeMap<String, u32>,
    /// When each app's last claim was released.
    released: BTreeMap<String, Instant>,
}

impl Claims {
    /// Apps supervision must not act on, for a tick that looked at the
    /// engine from `observed_from` on: those claimed or waited for now,
    /// and those whose claim was released since (an action or request
    /// finished after the look, so what the tick saw of them is stale).
    fn busy_since(&self, observed_from: Instant) -> BTreeSet<String> {
        self.held
            .keys()
            .chain(self.wanted.keys())
            .chain(
                self.released
                    .iter()
                    .filter(|(_, at)| **at >= observed_from)
                    .map(|(a, _)| a),
            )
            .cloned()
            .collect()
    }
}

pub type InFlight = Arc<Mutex<Claims>>;

/// A claim on apps in the in-flight set, released on drop (also when the
/// task holding it is aborted or panics).
pub struct Claim {
    set: InFlight,
    apps: Vec<String>,
    /// Whether its release is recorded (`Claims::busy_since`): false for
    /// a claim let go unused, which did nothing to its apps.
    acted: bool,
}

impl Claim {
    /// Let go of a claim under which nothing was done: a tick that looked
    /// at the engine before need not treat its apps as changed.
    pub fn release_unused(mut self) {
        self.acted = false;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut set = lock(&self.set);
        let now = Instant::now();
        for a in &self.apps {
            set.held.remove(a);
            if self.acted {
                set.released.insert(a.clone(), now);
            }
        }
    }
}

/// The apps among `stacks`' records whose stored record is gone or was
/// written since they were read: uninstalled, stopped or started by the
/// user, reinstalled. A plan made from those records is stale for them.
pub(crate) fn changed_since_read(
    ctx: &Ctx,
    stacks: &crate::gates::Stacks,
) -> Result<BTreeSet<String>, berth_store::StoreError> {
    let now = ctx.store().app_revisions()?;
    Ok(stacks
        .values()
        .flat_map(|(_, records)| records)
        .filter(|r| now.get(&r.id) != Some(&(r.desired, r.updated_at_ms)))
        .map(|r| r.id.clone())
        .collect())
}

/// Claim all of `apps` or none: `Err((app, what))` names one that is busy.
pub fn try_claim(
    set: &InFlight,
    apps: &BTreeSet<String>,
    what: &str,
) -> Result<Claim, (String, String)> {
    let mut s = lock(set);
    if let Some((app, doing)) = apps
        .iter()
        .find_map(|a| s.held.get(a).map(|w| (a.clone(), w.clone())))
    {
        return Err((app, doing));
    }
    for a in apps {
        s.held.insert(a.clone(), what.to_string());
    }
    Ok(Claim {
        acted: true,
        set: set.clone(),
        apps: apps.iter().cloned().collect(),
    })
}

/// Marks apps a user request waits for, until dropped.
struct Wanted {
    set: InFlight,
    apps: Vec<String>,
}

impl Wanted {
    fn new(set: &InFlight, apps: &BTreeSet<String>) -> Wanted {
        let mut s = lock(set);
        for a in apps {
            *s.wanted.entry(a.clone()).or_default() += 1;
        }
        Wanted {
            set: set.clone(),
            apps: apps.iter().cloned().collect(),
        }
    }
}

impl Drop for Wanted {
    fn drop(&mut self) {
        let mut s = lock(&self.set);
        for a in &self.apps {
            if let Some(n) = s.wanted.get_mut(a) {
                *n -= 1;
                if *n == 0 {
                    s.wanted.remove(a);
                }
            }
        }
    }
}

/// What an owned task reports when it ends.
enum Done {
    Actions {
        /// Per app: whether the action (re)started its container (its
        /// monitor then restarts) and whether it succeeded.
        results: Vec<(String, bool, Result<(), String>)>,
    },
    Request {
        mutation: bool,
    },
    /// A round of chain probes of gate nodes.
    Probes {
        results: BTreeMap<String, berth_core::gate::ChainState>,
    },
    /// The container lists of a tick the loop began: the loop finishes
    /// the tick with them.
    Observed {
        start: Box<TickStart>,
        observed: Observation,
    },
}

/// What a tick read before it listed the engine.
struct TickStart {
    started: Instant,
    calls_before: u64,
    now_ms: u64,
    stacks: crate::gates::Stacks,
}

/// Every installed stack's containers by app, and how long listing them
/// took; or the error that stopped the listing.
type Observation = Result<
    (
        BTreeMap<String, berth_core::observed::ObservedContainer>,
        Duration,
    ),
    OpsError,
>;

/// One list call per stack. Any failure fails the whole observation: a
/// partial view would make present containers look missing.
async fn observe(ctx: &Ctx, stacks: &crate::gates::Stacks) -> Observation {
    let observing = Instant::now();
    let mut observed = BTreeMap::new();
    for name in stacks.keys() {
        observed.extend(berth_ops::install::observe_stack(ctx, name).await?);
    }
    Ok((observed, observing.elapsed()))
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct TickStats {
    /// Ticks done (the engine listed and the plan made, or the tick
    /// skipped because the engine could not be listed).
    pub ticks: u64,
    pub last_tick_at_ms: Option<u64>,
    pub last_tick_duration_us: Option<u64>,
    /// Of the last tick's wall time, how long its container lists took
    /// (waiting for the engine); the rest is berth's own work.
    pub last_tick_observe_us: Option<u64>,
    /// Engine calls the last tick made (health monitors running at the
    /// same time are counted too).
    pub last_tick_engine_calls: Option<u64>,
    pub last_tick_actions: usize,
    pub actions_started: u64,
    pub actions_succeeded: u64,
    pub actions_failed: u64,
    pub requests_served: u64,
    /// Set while the engine cannot be reached.
    pub engine_error: Option<String>,
}

/// One supervision action, with what executing it needs.
enum Job {
    Create {
        app: String,
        stack: Box<Stack>,
        stack_file: Option<String>,
    },
    Start {
        app: String,
        container: String,
    },
    Restart {
        app: String,
        container: String,
        grace: Duration,
        reason: String,
    },
    Quarantine {
        app: String,
        container: String,
        reason: String,
        exit_code: Option<i64>,
        spec_hash: String,
    },
}

impl Job {
    fn app(&self) -> &str {
        match self {
            Job::Create { app, .. }
            | Job::Start { app, .. }
            | Job::Restart { app, .. }
            | Job::Quarantine { app, .. } => app,
        }
    }
    fn what(&self) -> &'static str {
        match self {
            Job::Create { .. } => "create",
            Job::Start { .. } => "start",
            Job::Restart { .. } => "restart",
            Job::Quarantine { .. } => "quarantine",
        }
    }
}

/// The loop's state.
pub struct Supervisor {
    ctx: Arc<Ctx>,
    settings: Settings,
    planner: Planner,
    clock: Clock,
    tx: mpsc::Sender<Event>,
    monitors: Monitors,
    in_flight: InFlight,
    tasks: JoinSet<Done>,
    action_permits: Arc<Semaphore>,
    request_permits: Arc<Semaphore>,
    next_tick: Instant,
    /// Apps whose last action failed: no new action before the instant,
    /// so a failing create or start is not retried in a tight loop (its
    /// own engine events would wake the loop at once).
    cooling: BTreeMap<String, Instant>,
    /// The last failure recorded per app, so a repeated one is not.
    last_failure: BTreeMap<String, String>,
    missed_events: Arc<AtomicBool>,
    stats: TickStats,
    started_at_ms: u64,
    /// The engine's `info`, filled in the background once it answers (a
    /// Podman `info` takes a few hundred milliseconds; readiness does not
    /// wait for it). Until then only its `kind`.
    engine_info: Arc<Mutex<Value>>,
    requests_seq: AtomicU64,
    /// The HTTP API's live state: told when something may have changed.
    hub: Option<Arc<crate::hub::Hub>>,
    gates: Gates,
    /// The task of the probe round in flight, if any.
    probe_task: Option<tokio::task::Id>,
    /// The task listing the engine for a tick the loop began, if any.
    /// Requests are served meanwhile; no other tick begins.
    observe_task: Option<tokio::task::Id>,
    /// Something asked for an early tick while a tick was listing the
    /// engine: the tick that finishes must not schedule past it.
    woken_while_observing: bool,
    /// Spec hashes by app, with what they were computed from.
    spec_hashes: SpecHashes,
}

/// The spec hash of each installed app, kept while what it is computed
/// from (stack name, network, manifest) is unchanged: building a spec and
/// hashing it for every app on every tick is most of a no-op tick's own
/// work.
#[derive(Default)]
struct SpecHashes(HashMap<String, (String, String, App, String)>);

impl SpecHashes {
    fn get(&mut self, ctx: &Ctx, stack: &Stack, app: &App) -> String {
        if let Some((s, net, a, hash)) = self.0.get(&app.id)
            && *s == stack.name
            && *net == stack.settings.network
            && a == app
        {
            return hash.clone();
        }
        let hash = berth_ops::install::spec_for(ctx, stack, app).hash();
        self.0.insert(
            app.id.clone(),
            (
                stack.name.clone(),
                stack.settings.network.clone(),
                app.clone(),
                hash.clone(),
            ),
        );
        hash
    }

    fn retain(&mut self, installed: &BTreeSet<String>) {
        self.0.retain(|id, _| installed.contains(id));
    }
}

impl Supervisor {
    pub fn new(
        ctx: Arc<Ctx>,
        settings: Settings,
        planner: Planner,
        tx: mpsc::Sender<Event>,
        clock: Clock,
    ) -> Supervisor {
        let action_permits = Arc::new(Semaphore::new(settings.actions_parallel));
        Supervisor {
            ctx,
            planner,
            clock,
            tx,
            monitors: Monitors::new(),
            in_flight: Arc::default(),
            tasks: JoinSet::new(),
            action_permits,
            request_permits: Arc::new(Semaphore::new(REQUESTS_PARALLEL_MAX)),
            // The first tick comes at once: adopt what runs, act on what
            // changed while no daemon was watching.
            next_tick: Instant::now(),
            cooling: BTreeMap::new(),
            last_failure: BTreeMap::new(),
            missed_events: Arc::new(AtomicBool::new(false)),
            stats: TickStats::default(),
            started_at_ms: clock.now_ms(),
            engine_info: Arc::new(Mutex::new(Value::Null)),
            requests_seq: AtomicU64::new(0),
            hub: None,
            gates: Gates::new(),
            probe_task: None,
            observe_task: None,
            woken_while_observing: false,
            spec_hashes: SpecHashes::default(),
            settings,
        }
    }

    /// The in-flight set, for tests that act beside the loop.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    /// Answer the chain probes of gate nodes with `f` instead of the
    /// network (the daemon's unit tests).
    pub fn with_chain_probe(mut self, f: crate::gates::ChainProbe) -> Supervisor {
        self.gates.set_chain_probe(f);
        self
    }

    /// Flag set by the engine watcher when it could not queue an event.
    pub fn missed_events_flag(&self) -> Arc<AtomicBool> {
        self.missed_events.clone()
    }

    /// Tell `hub` about every tick and finished task, and give the health
    /// monitors its probe-latency metric.
    pub fn set_hub(&mut self, hub: Arc<crate::hub::Hub>) {
        let metrics = hub.metrics.clone();
        self.monitors.observer = Some(Arc::new(move |app: &str, elapsed, ok| {
            metrics.observe_probe(app, elapsed, ok)
        }));
        self.hub = Some(hub);
    }

    /// Where the engine's `info` goes when it arrives (see `engine_info`).
    pub fn engine_info_slot(&self) -> Arc<Mutex<Value>> {
        self.engine_info.clone()
    }

    pub fn stats(&self) -> &TickStats {
        &self.stats
    }

    /// Run until `Event::Shutdown` arrives or `shutdown` completes, then
    /// finish in-flight work within the shutdown timeout. Never stops a
    /// container.
    pub async fn run(&mut self, mut rx: mpsc::Receiver<Event>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if self.missed_events.swap(false, Ordering::Relaxed) {
                self.wake_soon();
            }
            let event = tokio::select! {
                biased;
                () = &mut shutdown => Event::Shutdown,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    self.finished(done);
                    continue;
                }
                Some(event) = rx.recv() => event,
                () = tokio::time::sleep_until(self.next_tick), if self.observe_task.is_none() => Event::Tick,
            };
            match event {
                Event::Tick => self.begin_tick(),
                Event::EngineEvent { app } => {
                    tracing::debug!(app = app.as_deref().unwrap_or("-"), "engine event");
                    self.wake_soon();
                }
                Event::HealthChanged { app } => {
                    tracing::debug!(app, "health changed: early tick");
                    self.wake_soon();
                }
                Event::Request(call, reply) => self.request(call, reply),
                Event::Shutdown => break,
            }
        }
        drop(rx); // New requests now fail at once.
        self.shutdown().await;
    }

    fn finished(&mut self, done: Result<Done, tokio::task::JoinError>) {
        match done {
            Ok(Done::Actions { results }) => {
                let retry_at = crate::instant_after(Instant::now(), self.retry_after());
                for (app, starts, result) in results {
                    if let Err(message) = result {
                        self.stats.actions_failed += 1;
                        // Recorded once per distinct failure: an action that
                        // keeps failing the same way must not flood the
                        // bounded event history.
                        if self.last_failure.get(&app) != Some(&message) {
                            self.ctx.event(Some(&app), "action-failed", message.clone());
                            self.last_failure.insert(app.clone(), message);
                        } else {
                            tracing::warn!(app, "{message}");
                        }
                        self.cooling.insert(app, retry_at);
                        if retry_at < self.next_tick {
                            self.next_tick = retry_at;
                        }
                    } else {
                        self.stats.actions_succeeded += 1;
                        self.cooling.remove(&app);
                        self.last_failure.remove(&app);
                        if starts {
                            // A fresh start: a fresh monitor (start period).
                            self.monitors.cancel(&app);
                        }
                    }
                }
            }
            Ok(Done::Request { mutation }) => {
                self.stats.requests_served += 1;
                if !mutation {
                    return;
                }
            }
            Ok(Done::Probes { results }) => {
                self.probe_task = None;
                self.gates.probed(results);
            }
            Ok(Done::Observed { start, observed }) => {
                self.observe_task = None;
                let started = start.started;
                self.finish_tick(*start, observed);
                if std::mem::take(&mut self.woken_while_observing) {
                    self.wake_soon();
                }
                if let Some(hub) = &self.hub {
                    hub.tick_done(started.elapsed());
                }
                return;
            }
            Err(e) if self.observe_task == Some(e.id()) => {
                self.observe_task = None;
                if !e.is_cancelled() {
                    tracing::error!(error = %e, "a tick's engine listing panicked");
                }
                self.wake_soon();
                return;
            }
            Err(e) if self.probe_task == Some(e.id()) => {
                self.probe_task = None;
                self.gates.probe_lost();
                if !e.is_cancelled() {
                    tracing::error!(error = %e, "a gate probe round panicked");
                }
            }
            Err(e) if e.is_cancelled() => return,
            // A panicking task is a bug; the claim it held is released by
            // its guard. Say so loudly and look again.
            Err(e) => tracing::error!(error = %e, "a daemon task panicked"),
        }
        self.monitors.reap();
        self.wake_soon();
        if let Some(hub) = &self.hub {
            hub.bump();
        }
    }

    /// How long an app whose action failed waits before the next one.
    fn retry_after(&self) -> Duration {
        self.settings
            .supervision
            .backoff_initial
            .min(self.settings.tick)
    }

    /// Wait for every running task (actions, requests) and account for
    /// it, as the loop would. For tests that drive ticks by hand.
    pub async fn settle(&mut self) {
        while let Some(done) = self.tasks.join_next().await {
            self.finished(done);
        }
    }

    /// Schedule a tick after the debounce unless one is due sooner.
    fn wake_soon(&mut self) {
        if self.observe_task.is_some() {
            self.woken_while_observing = true;
        }
        let at = crate::instant_after(Instant::now(), self.settings.event_debounce);
        if at < self.next_tick {
            self.next_tick = at;
        }
    }

    /// One reconcile tick, start to end. See the module docs. The loop
    /// runs the same steps without waiting for the engine in between
    /// (`begin_tick`).
    pub async fn tick(&mut self) {
        if let Some(start) = self.start_tick() {
            let observed = observe(&self.ctx, &start.stacks).await;
            self.finish_tick(start, observed);
        }
    }

    /// The loop's tick: read the store now, list the engine in an owned
    /// task, and finish the tick when the lists come back (`finished`),
    /// so requests are answered while the engine is slow to list.
    fn begin_tick(&mut self) {
        let Some(start) = self.start_tick() else {
            return;
        };
        let ctx = self.ctx.clone();
        let handle = self.tasks.spawn(async move {
            let observed = observe(&ctx, &start.stacks).await;
            Done::Observed {
                start: Box::new(start),
                observed,
            }
        });
        self.observe_task = Some(handle.id());
    }

    /// The part of a tick before the engine is listed.
    fn start_tick(&mut self) -> Option<TickStart> {
        let started = Instant::now();
        let calls_before = self.ctx.engine.call_count();
        let now_ms = self.clock.now_ms();
        self.stats.last_tick_at_ms = Some(now_ms);
        self.stats.last_tick_actions = 0;
        self.next_tick = started + self.settings.tick;
        match stackdb::installed_stacks(&self.ctx) {
            Ok(stacks) => Some(TickStart {
                started,
                calls_before,
                now_ms,
                stacks,
            }),
            Err(e) => {
                tracing::error!(error = %e, "tick: cannot read installed apps");
                None
            }
        }
    }

    /// The rest of a tick, once the engine is listed.
    fn finish_tick(&mut self, start: TickStart, observed: Observation) {
        let TickStart {
            started,
            calls_before,
            now_ms,
            stacks,
        } = start;
        // Counted once the engine is listed: `ticks` is ticks done (a tick
        // skipped because the engine is down is done too).
        self.stats.ticks += 1;
        let observed = match observed {
            Ok((observed, took)) => {
                self.stats.last_tick_observe_us =
                    Some(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                observed
            }
            Err(e) => {
                self.engine_down(&e);
                return;
            }
        };
        self.engine_up();

        // Health monitors follow what runs.
        let mut installed = BTreeSet::new();
        for (stack, records) in stacks.values() {
            for rec in records {
                installed.insert(rec.id.clone());
                let running = observed
                    .get(&rec.id)
                    .filter(|o| o.status == EngineStatus::Running);
                match (running, &rec.app.health) {
                    (Some(o), Some(check)) => self.monitors.ensure(
                        &rec.id,
                        MonitorKey {
                            container: o.name.clone(),
                            container_id: o.id.clone(),
                        },
                        &stack.settings.network,
                        check,
                        crate::monitor::chain_access(&self.ctx, &stack.name, &rec.app),
                        self.ctx.engine.clone(),
                        self.tx.clone(),
                        self.clock,
                    ),
                    _ => self.monitors.cancel(&rec.id),
                }
            }
        }
        self.monitors.retain(|a| installed.contains(a));
        self.spec_hashes.retain(&installed);
        let health = lock(&self.monitors.health).clone();

        let (trackers, owed) = {
            let store = self.ctx.store();
            match (store.restart_trackers(), store.owed_starts()) {
                (Ok(t), Ok(o)) => (t, o),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "tick: cannot read supervision state");
                    return;
                }
            }
        };
        for gone in trackers.keys().filter(|a| !installed.contains(*a)) {
            let _ = self.ctx.store().reset_supervision(gone);
        }

        let mut hashes: BTreeMap<String, String> = BTreeMap::new();
        let mut tiers: BTreeMap<String, u32> = BTreeMap::new();
        let mut stack_of: BTreeMap<String, String> = BTreeMap::new();
        for (stack, records) in stacks.values() {
            let stack_tiers = graph::tiers(stack);
            for rec in records {
                let app = &stack.apps[&rec.id];
                hashes.insert(rec.id.clone(), self.spec_hashes.get(&self.ctx, stack, app));
                tiers.insert(
                    rec.id.clone(),
                    stack_tiers.get(&rec.id).copied().unwrap_or(0),
                );
                stack_of.insert(rec.id.clone(), stack.name.clone());
            }
        }
        // Chain gates first: their verdicts decide which apps supervision
        // must leave alone, and their actions claim the apps they act on.
        let gate_wake = self.gate_tick(&stacks, &observed, now_ms, started);
        let gates = &self.gates;
        let apps: Vec<SupervisedApp<'_>> = stacks
            .values()
            .flat_map(|(stack, records)| {
                let hashes = &hashes;
                let tiers = &tiers;
                records.iter().map(move |rec| SupervisedApp {
                    app: &stack.apps[&rec.id],
                    tier: tiers[&rec.id],
                    intent: match rec.desired {
                        Desired::Stopped => Intent::Stopped,
                        Desired::Running
                            if gates.verdict(&rec.id).is_some_and(|g| g.keeps_stopped()) =>
                        {
                            Intent::Gated
                        }
                        Desired::Running => Intent::Running,
                    },
                    spec_hash: &hashes[&rec.id],
                })
            })
            .collect();
        let input = TickInput {
            apps,
            observed: &observed,
            health: &health,
            trackers: &trackers,
            owed_starts: &owed,
            now_ms,
            config: &self.settings.supervision,
        };
        let mut plan = (self.planner)(&input);
        drop(input);

        // Apps another task is acting on are left to a later tick: the
        // planner is idempotent and sees them again.
        let now = Instant::now();
        self.cooling.retain(|_, until| *until > now);
        let mut busy: BTreeSet<String> = lock(&self.in_flight).busy_since(started);
        busy.extend(self.cooling.keys().cloned());
        // An app uninstalled, stopped or started by the user while the
        // engine was listed: nothing of the plan about it is kept (no
        // tracker row, no event, no action); the next tick plans it anew.
        match changed_since_read(&self.ctx, &stacks) {
            Ok(changed) => busy.extend(changed),
            Err(e) => {
                tracing::error!(error = %e, "tick: cannot re-read installed apps; nothing acted on");
                return;
            }
        }
        plan.trackers.retain(|app, _| !busy.contains(app));
        plan.events.retain(|e| !busy.contains(&e.app));
        plan.actions.retain(|a| !busy.contains(action_app(a)));

        if let Err(e) = self
            .ctx
            .store()
            .put_restart_trackers(&plan.trackers, now_ms as i64)
        {
            // Without its history the planner would act again next tick
            // as if it never had: do not act on this plan.
            tracing::error!(error = %e, "tick: cannot persist restart trackers; plan dropped");
            return;
        }
        for e in &plan.events {
            self.ctx.event(Some(&e.app), &e.kind, e.message.clone());
        }
        self.stats.last_tick_actions += plan.actions.len();
        self.dispatch(&plan, &stacks, &stack_of, &hashes);

        let wake = match (plan.next_wake_ms, gate_wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|at| Duration::from_millis(at.saturating_sub(self.clock.now_ms())));
        let gap = match wake {
            Some(w) => w.min(self.settings.tick),
            None => self.settings.tick,
        }
        .max(Duration::from_millis(TICK_GAP_MS_MIN));
        self.next_tick = crate::instant_after(Instant::now(), gap);
        self.stats.last_tick_duration_us =
            Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        self.stats.last_tick_engine_calls =
            Some(self.ctx.engine.call_count().saturating_sub(calls_before));
    }

    /// The gate part of a tick: plan, persist, and start the probe round
    /// and the gate actions as owned tasks. Returns when the gates want the
    /// next tick at the latest.
    fn gate_tick(
        &mut self,
        stacks: &crate::gates::Stacks,
        observed: &BTreeMap<String, berth_core::observed::ObservedContainer>,
        now_ms: u64,
        observed_from: Instant,
    ) -> Option<u64> {
        let now = Instant::now();
        self.cooling.retain(|_, until| *until > now);
        let mut busy: BTreeSet<String> = lock(&self.in_flight).busy_since(observed_from);
        busy.extend(self.cooling.keys().cloned());
        let out = self
            .gates
            .tick(&self.ctx, stacks, observed, &self.in_flight, &busy, now_ms);
        if let Some(round) = out.probe {
            let handle = self.tasks.spawn(async move {
                Done::Probes {
                    results: round.run().await,
                }
            });
            self.probe_task = Some(handle.id());
        }
        if let Some(job) = out.job {
            self.stats.actions_started += job.actions.len() as u64;
            self.stats.last_tick_actions += job.actions.len();
            let clock = self.clock;
            self.tasks.spawn(async move {
                Done::Actions {
                    results: job.run(move || clock.now_ms()).await,
                }
            });
        }
        out.next_wake_ms
    }

    fn engine_down(&mut self, e: &OpsError) {
        let msg = e.to_string();
        tracing::warn!(error = %msg, "tick skipped: cannot list containers");
        if self.stats.engine_error.is_none() {
            self.ctx.event(
                None,
                "engine-unavailable",
                format!("supervision paused: cannot list containers: {msg}"),
            );
        }
        self.stats.engine_error = Some(msg);
        self.next_tick = Instant::now()
            + self
                .settings
                .tick
                .min(Duration::from_millis(ENGINE_RETRY_MS));
    }

    fn engine_up(&mut self) {
        if self.stats.engine_error.take().is_some() {
            self.ctx.event(
                None,
                "engine-available",
                "supervision resumed: the engine answers again".into(),
            );
        }
    }

    /// Start the plan's actions: one task per stack running its actions
    /// tier by tier (dependencies first), each action holding a claim on
    /// its app and a permit of the action semaphore.
    fn dispatch(
        &mut self,
        plan: &TickPlan,
        stacks: &BTreeMap<String, (Stack, Vec<berth_store::AppRecord>)>,
        stack_of: &BTreeMap<String, String>,
        hashes: &BTreeMap<String, String>,
    ) {
        let mut per_stack: BTreeMap<String, BTreeMap<u32, Vec<(Job, Claim)>>> = BTreeMap::new();
        let mut claimed: Vec<(String, u32, Job, Claim)> = Vec::new();
        for action in &plan.actions {
            let app = action_app(action).to_string();
            let Some(stack_name) = stack_of.get(&app) else {
                tracing::warn!(
                    app,
                    "planner acted on an app that is not installed; ignored"
                );
                continue;
            };
            let (stack, records) = &stacks[stack_name];
            let container = naming::container_name(&stack.name, &app);
            let job = match action {
                SupervisionAction::ClearOwedStart { .. } => {
                    if let Err(e) = self.ctx.store().clear_owed_start(&app) {
                        tracing::warn!(app, error = %e, "cannot clear owed start");
                    }
                    continue;
                }
                SupervisionAction::Create { .. } => Job::Create {
                    stack_file: records
                        .iter()
                        .find(|r| r.id == app)
                        .and_then(|r| r.stack_file.clone()),
                    stack: Box::new(stack.clone()),
                    app: app.clone(),
                },
                SupervisionAction::Start { .. } => Job::Start {
                    app: app.clone(),
                    container,
                },
                SupervisionAction::Restart { reason, .. } => Job::Restart {
                    app: app.clone(),
                    container,
                    grace: stack.apps[&app].stop_grace,
                    reason: reason.clone(),
                },
                SupervisionAction::Quarantine {
                    reason, exit_code, ..
                } => Job::Quarantine {
                    app: app.clone(),
                    container,
                    reason: reason.clone(),
                    exit_code: *exit_code,
                    spec_hash: hashes.get(&app).cloned().unwrap_or_default(),
                },
            };
            let claim = match try_claim(
                &self.in_flight,
                &BTreeSet::from([app.clone()]),
                &format!("supervision: {}", job.what()),
            ) {
                Ok(c) => c,
                Err((_, doing)) => {
                    tracing::debug!(app, doing, "busy; left to a later tick");
                    continue;
                }
            };
            let tier = graph::tiers(stack).get(&app).copied().unwrap_or(0);
            claimed.push((stack_name.clone(), tier, job, claim));
        }
        // Claims first, then the store: a request that finished while this
        // tick listed the engine (an uninstall or a stop, say) released its
        // claim before ours was taken, and the records read at the start of
        // the tick are stale. Acting on them would bring an uninstalled app
        // back or start one the user stopped.
        let changed = match changed_since_read(&self.ctx, stacks) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "tick: cannot re-read installed apps; no action this tick");
                return;
            }
        };
        for (stack_name, tier, job, claim) in claimed {
            if changed.contains(job.app()) {
                tracing::info!(
                    app = job.app(),
                    "changed while the tick ran; its planned action is dropped"
                );
                continue;
            }
            per_stack
                .entry(stack_name)
                .or_default()
                .entry(tier)
                .or_default()
                .push((job, claim));
        }
        for (_, tiers) in per_stack {
            let count: usize = tiers.values().map(Vec::len).sum();
            self.stats.actions_started += count as u64;
            let ctx = self.ctx.clone();
            let permits = self.action_permits.clone();
            let clock = self.clock;
            self.tasks.spawn(async move {
                let mut all = Vec::new();
                for (_, batch) in tiers {
                    let results =
                        futures_util::future::join_all(batch.into_iter().map(|(job, claim)| {
                            let ctx = ctx.clone();
                            let permits = permits.clone();
                            async move {
                                let _permit = permits.acquire_owned().await;
                                let app = job.app().to_string();
                                let starts = !matches!(job, Job::Quarantine { .. });
                                let r = execute(&ctx, job, clock).await;
                                drop(claim);
                                (app, starts, r)
                            }
                        }))
                        .await;
                    all.extend(results);
                }
                Done::Actions { results: all }
            });
        }
    }

    fn request(&mut self, call: RpcCall, reply: Reply) {
        self.requests_seq.fetch_add(1, Ordering::Relaxed);
        match call {
            RpcCall::DaemonStatus => {
                let _ = reply.send(Ok(self.status_json()));
                self.stats.requests_served += 1;
            }
            RpcCall::ContainerHealth => {
                let map = lock(&self.monitors.health).clone();
                let _ = reply.send(Ok(json!(map)));
                self.stats.requests_served += 1;
            }
            RpcCall::GateStatus => {
                let _ = reply.send(Ok(json!(self.gates.report())));
                self.stats.requests_served += 1;
            }
            call => {
                let Ok(permit) = self.request_permits.clone().try_acquire_owned() else {
                    let _ = reply.send(Err(RpcError::new(
                        rpc::OPERATION_IN_PROGRESS,
                        format!(
                            "the daemon is serving {REQUESTS_PARALLEL_MAX} requests; try again"
                        ),
                    )));
                    return;
                };
                let mutation = call.is_mutation();
                let ctx = self.ctx.clone();
                let in_flight = self.in_flight.clone();
                let health = self.monitors.health.clone();
                self.tasks.spawn(async move {
                    let result = handle(ctx, in_flight, health, call).await;
                    let _ = reply.send(result);
                    drop(permit);
                    Done::Request { mutation }
                });
            }
        }
    }

    fn status_json(&self) -> Value {
        let now = self.clock.now_ms();
        json!({
            "pid": std::process::id(),
            "started_at_ms": self.started_at_ms,
            "uptime_ms": now.saturating_sub(self.started_at_ms),
            "engine": lock(&self.engine_info).clone(),
            "ticks": self.stats,
            "next_tick_in_ms": u64::try_from(self.next_tick.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(u64::MAX),
            "in_flight": lock(&self.in_flight).held,
            "health_monitors": self.monitors.len(),
            "settings": self.settings,
        })
    }

    async fn shutdown(&mut self) {
        tracing::info!("shutting down: cancelling health monitors, finishing in-flight work");
        self.monitors.shutdown().await;
        let deadline = crate::instant_after(Instant::now(), self.settings.shutdown_timeout);
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(done)) => self.finished_quietly(done),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        left = self.tasks.len(),
                        "shutdown timeout: abandoning in-flight work (the journal and owed starts let the next daemon finish it)"
                    );
                    self.tasks.abort_all();
                    while self.tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
    }

    fn finished_quietly(&mut self, done: Result<Done, tokio::task::JoinError>) {
        if let Ok(Done::Actions { results }) = done {
            for (_, _, result) in results {
                if result.is_ok() {
                    self.stats.actions_succeeded += 1;
                } else {
                    self.stats.actions_failed += 1;
                }
            }
        }
    }
}

fn action_app(a: &SupervisionAction) -> &str {
    match a {
        SupervisionAction::Create { app, .. }
        | SupervisionAction::Start { app, .. }
        | SupervisionAction::Restart { app, .. }
        | SupervisionAction::Quarantine { app, .. }
        | SupervisionAction::ClearOwedStart { app } => app,
    }
}

/// Carry out one supervision action. A failure comes back as the message
/// of its event (the loop records it); a later tick tries again.
async fn execute(ctx: &Arc<Ctx>, job: Job, clock: Clock) -> Result<(), String> {
    let app = job.app().to_string();
    let what = job.what();
    let result: Result<(), String> = match job {
        Job::Create {
            app,
            stack,
            stack_file,
        } => berth_ops::bring_up_app(ctx, &stack, stack_file.as_deref(), &app)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Job::Start { container, .. } => ctx
            .engine
            .start_container(&container)
            .await
            .map_err(|e| e.to_string()),
        Job::Restart {
            app,
            container,
            grace,
            reason,
        } => restart(ctx, &app, &container, grace, &reason, clock).await,
        Job::Quarantine {
            app,
            container,
            reason,
            exit_code,
            spec_hash,
        } => quarantine(ctx, &app, &container, reason, exit_code, spec_hash, clock).await,
    };
    match result {
        Ok(()) => {
            tracing::info!(app, action = what, "supervision action done");
            Ok(())
        }
        Err(e) => Err(format!(
            "{what} of {app} failed (a later tick tries again): {e}"
        )),
    }
}

/// Stop with grace, then start; the owed start is on disk before the stop
/// so a daemon that dies in between still ends with the app started.
async fn restart(
    ctx: &Ctx,
    app: &str,
    container: &str,
    grace: Duration,
    reason: &str,
    clock: Clock,
) -> Result<(), String> {
    ctx.store()
        .add_owed_start(app, reason, clock.now_ms() as i64)
        .map_err(|e| e.to_string())?;
    match ctx.engine.stop_container(container, grace).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(format!("stop: {e}")),
    }
    ctx.engine
        .start_container(container)
        .await
        .map_err(|e| format!("start: {e}"))?;
    ctx.store()
        .clear_owed_start(app)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Attach the last log lines (redacted) to the app's quarantine.
async fn quarantine(
    ctx: &Ctx,
    app: &str,
    container: &str,
    reason: String,
    exit_code: Option<i64>,
    spec_hash: String,
    clock: Clock,
) -> Result<(), String> {
    let logs = match ctx.engine.logs(container, QUARANTINE_LOG_LINES).await {
        Ok(lines) => {
            let redactor =
                berth_store::Redactor::new(ctx.state.secrets().all_values().unwrap_or_default());
            lines.iter().map(|l| redactor.redact(l)).collect()
        }
        Err(e) => vec![format!("(logs unavailable: {e})")],
    };
    let store = ctx.store();
    let mut tracker = store.restart_tracker(app).map_err(|e| e.to_string())?;
    let mut q = tracker.quarantine.take().unwrap_or(Quarantine {
        since_ms: clock.now_ms(),
        reason,
        exit_code,
        last_logs: Vec::new(),
        spec_hash,
    });
    q.last_logs = logs;
    tracker.quarantine = Some(q);
    store
        .put_restart_trackers(
            &BTreeMap::from([(app.to_string(), tracker)]),
            clock.now_ms() as i64,
        )
        .map_err(|e| e.to_string())
}

/// Collects an operation's progress for the request's answer (and logs it).
#[derive(Default)]
struct Collect {
    lines: Mutex<Vec<ProgressLine>>,
}

impl Collect {
    fn lines(&self) -> Vec<ProgressLine> {
        lock(&self.lines).clone()
    }
}

impl Reporter for Collect {
    fn report(&self, p: Progress) {
        let line = match p {
            Progress::Step { app, step } => {
                tracing::debug!(app, step, "step");
                return;
            }
            Progress::Pull { .. } => return,
            Progress::Done { app, message } => ProgressLine {
                kind: "done".into(),
                app: Some(app),
                message,
            },
            Progress::Failed { app, message } => ProgressLine {
                kind: "failed".into(),
                app: Some(app),
                message,
            },
            Progress::Note { message } => ProgressLine {
                kind: "note".into(),
                app: None,
                message,
            },
        };
        tracing::info!(app = line.app.as_deref().unwrap_or("-"), "{}", line.message);
        let mut lines = lock(&self.lines);
        if lines.len() < PROGRESS_LINES_MAX {
            lines.push(line);
        }
    }
}

/// Progress of supervision's own operations goes to the log only.
pub struct LogReporter;

impl Reporter for LogReporter {
    fn report(&self, p: Progress) {
        match p {
            Progress::Step { app, step } => tracing::debug!(app, step, "step"),
            Progress::Pull { .. } => {}
            Progress::Done { app, message } => tracing::info!(app, "{message}"),
            Progress::Failed { app, message } => tracing::warn!(app, "{message}"),
            Progress::Note { message } => tracing::info!("{message}"),
        }
    }
}

/// The error a failed operation answers with.
pub fn ops_error(e: OpsError, progress: Vec<ProgressLine>) -> RpcError {
    let code = match &e {
        OpsError::UnknownApp { .. } => rpc::UNKNOWN_APP,
        OpsError::HasDependents { .. } => rpc::DEPENDENCY_CONFLICT,
        e if e.is_engine_unavailable() => rpc::ENGINE_UNAVAILABLE,
        OpsError::Many { errors, .. } if errors.iter().all(OpsError::is_engine_unavailable) => {
            rpc::ENGINE_UNAVAILABLE
        }
        _ => rpc::OPERATION_FAILED,
    };
    RpcError {
        code,
        message: e.to_string(),
        data: Some(json!({ "progress": progress })),
    }
}

fn engine_error(e: EngineError) -> RpcError {
    match e {
        e @ EngineError::Unavailable { .. } => {
            RpcError::new(rpc::ENGINE_UNAVAILABLE, e.to_string())
        }
        e => RpcError::new(rpc::OPERATION_FAILED, e.to_string()),
    }
}

fn store_error(e: impl std::fmt::Display) -> RpcError {
    RpcError::new(rpc::OPERATION_FAILED, e.to_string())
}

fn load_stack(path: &str) -> Result<Stack, RpcError> {
    berth_ops::load_stack_file(std::path::Path::new(path))
        .map_err(|e| RpcError::new(rpc::INVALID_MANIFEST, e.to_string()))
}

/// Every id must be an app of the stack file (the CLI checks the same).
fn check_in_stack(
    stack: &Stack,
    file: &str,
    apps: &[String],
) -> Result<BTreeSet<String>, RpcError> {
    for id in apps {
        if !stack.apps.contains_key(id) {
            return Err(RpcError::new(
                rpc::UNKNOWN_APP,
                format!(
                    "unknown app {id:?}: {file} has {}",
                    stack.apps.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    Ok(apps.iter().cloned().collect())
}

/// Installed apps a request on `ids` touches: the apps, their companions,
/// their dependencies (`deps`), the apps depending on them (`dependents`).
fn installed_closure(
    ctx: &Ctx,
    ids: &[String],
    deps: bool,
    dependents: bool,
) -> Result<BTreeSet<String>, RpcError> {
    let stacks = stackdb::installed_stacks(ctx).map_err(store_error)?;
    let mut out: BTreeSet<String> = ids.iter().cloned().collect();
    for (stack, _) in stacks.values() {
        let mine: BTreeSet<String> = ids
            .iter()
            .filter(|i| stack.apps.contains_key(*i))
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut set =
            graph::with_dependencies(stack, &if deps { mine.clone() } else { BTreeSet::new() });
        for id in &mine {
            for a in stack.with_companions(id) {
                set.insert(a.id.clone());
            }
            if dependents {
                set.extend(graph::dependents(stack, id));
            }
        }
        out.extend(set);
    }
    Ok(out)
}

/// Claim `apps`, waiting (bounded) while another operation holds one.
async fn claim_wait(
    in_flight: &InFlight,
    apps: &BTreeSet<String>,
    what: &str,
) -> Result<Claim, RpcError> {
    let deadline = crate::instant_after(Instant::now(), Duration::from_millis(CLAIM_WAIT_MS_MAX));
    let mut _wanted = None;
    loop {
        match try_claim(in_flight, apps, what) {
            Ok(c) => return Ok(c),
            Err((app, doing)) => {
                // From now on supervision starts nothing new on these apps.
                _wanted.get_or_insert_with(|| Wanted::new(in_flight, apps));
                if Instant::now() >= deadline {
                    return Err(RpcError::new(
                        rpc::OPERATION_IN_PROGRESS,
                        format!(
                            "an operation on {app} is in progress ({doing}) for more than {} s; try again later",
                            CLAIM_WAIT_MS_MAX / 1000
                        ),
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(CLAIM_POLL_MS)).await;
    }
}

/// Serve one request (every method but the two the loop answers itself).
async fn handle(
    ctx: Arc<Ctx>,
    in_flight: InFlight,
    health: crate::monitor::HealthMap,
    call: RpcCall,
) -> Result<Value, RpcError> {
    let collect = Arc::new(Collect::default());
    let rctx = ctx.with_reporter(collect.clone());
    let fail = |e: OpsError| ops_error(e, collect.lines());
    let method = call.method();
    let what = format!("request {method}");
    match call {
        RpcCall::PackageInstall { stack_file, apps }
        | RpcCall::PackageReinstall { stack_file, apps } => {
            let stack = load_stack(&stack_file)?;
            let ids = check_in_stack(&stack, &stack_file, &apps)?;
            let _claim =
                claim_wait(&in_flight, &graph::with_dependencies(&stack, &ids), &what).await?;
            let summary = if method == "package.install" {
                berth_ops::install(&rctx, &stack, Some(&stack_file), &ids).await
            } else {
                berth_ops::reinstall(&rctx, &stack, Some(&stack_file), &ids).await
            }
            .map_err(fail)?;
            Ok(json!({ "apps": summary.apps, "progress": collect.lines() }))
        }
        RpcCall::StackUp { stack_file } => {
            let stack = load_stack(&stack_file)?;
            let all: BTreeSet<String> = stack.apps.keys().cloned().collect();
            let _claim = claim_wait(&in_flight, &all, &what).await?;
            let summary = berth_ops::up(&rctx, &stack, Some(&stack_file))
                .await
                .map_err(fail)?;
            Ok(json!({
                "stack": stack.name,
                "noop": summary.is_noop(),
                "apps": summary.apps,
                "progress": collect.lines(),
            }))
        }
        RpcCall::PackageStart { apps } | RpcCall::PackageRestart { apps } => {
            let set = installed_closure(&ctx, &apps, true, false)?;
            let _claim = claim_wait(&in_flight, &set, &what).await?;
            let ids: BTreeSet<String> = apps.into_iter().collect();
            let summary = if method == "package.start" {
                berth_ops::start(&rctx, &ids).await
            } else {
                berth_ops::restart(&rctx, &ids).await
            }
            .map_err(fail)?;
            Ok(json!({ "apps": summary.apps, "progress": collect.lines() }))
        }
        RpcCall::PackageStop { apps } => {
            let set = installed_closure(&ctx, &apps, false, false)?;
            let _claim = claim_wait(&in_flight, &set, &what).await?;
            let ids: BTreeSet<String> = apps.into_iter().collect();
            berth_ops::stop(&rctx, &ids).await.map_err(fail)?;
            Ok(json!({ "progress": collect.lines() }))
        }
        RpcCall::PackageUninstall {
            apps,
            keep_data,
            cascade,
        } => {
            let set = installed_closure(&ctx, &apps, false, true)?;
            let _claim = claim_wait(&in_flight, &set, &what).await?;
            let ids: BTreeSet<String> = apps.into_iter().collect();
            berth_ops::uninstall(
                &rctx,
                &ids,
                berth_ops::UninstallOptions { keep_data, cascade },
            )
            .await
            .map_err(fail)?;
            Ok(json!({ "progress": collect.lines() }))
        }
        RpcCall::StackDown { stack, purge } => {
            let name = match stack {
                StackRef::Name(n) => n,
                StackRef::File(f) => load_stack(&f)?.name,
            };
            let stacks = stackdb::installed_stacks(&ctx).map_err(store_error)?;
            let all: BTreeSet<String> = stacks
                .get(&name)
                .map(|(s, _)| s.apps.keys().cloned().collect())
                .unwrap_or_default();
            let _claim = claim_wait(&in_flight, &all, &what).await?;
            berth_ops::down(&rctx, &name, purge).await.map_err(fail)?;
            Ok(json!({ "stack": name, "progress": collect.lines() }))
        }
        RpcCall::ContainerList => {
            let known = lock(&health).clone();
            let report = berth_ops::status_with_health(&ctx, Some(&known))
                .await
                .map_err(fail)?;
            Ok(json!(report))
        }
        RpcCall::ContainerLogs { app, tail } => {
            let rec = ctx.store().get_app(&app).map_err(store_error)?;
            let Some(rec) = rec else {
                return Err(RpcError::new(
                    rpc::UNKNOWN_APP,
                    format!("unknown app {app:?}: it is not installed"),
                ));
            };
            let name = naming::container_name(&rec.stack, &app);
            let lines = ctx.engine.logs(&name, tail).await.map_err(engine_error)?;
            let redactor =
                berth_store::Redactor::new(ctx.state.secrets().all_values().unwrap_or_default());
            let lines: Vec<String> = lines.iter().map(|l| redactor.redact(l)).collect();
            Ok(json!({ "app": app, "container": name, "lines": lines }))
        }
        RpcCall::EventsList {
            app,
            after_id,
            limit,
        } => {
            let store = ctx.store();
            let events = match after_id {
                None => store.tail_events(app.as_deref(), limit),
                Some(after) => store.events(app.as_deref(), Some(after), limit),
            }
            .map_err(store_error)?;
            let last_id = events.last().map(|e| e.id).or(after_id).unwrap_or(0);
            Ok(json!({ "events": events, "last_id": last_id }))
        }
        RpcCall::GateReset { app } => {
            let _claim = claim_wait(&in_flight, &BTreeSet::from([app.clone()]), &what).await?;
            berth_ops::gates::reset(&ctx, &app).map_err(fail)?;
            Ok(json!({ "app": app, "progress": collect.lines() }))
        }
        RpcCall::Run(call) => crate::runs::handle(&ctx, call).await,
        RpcCall::DaemonStatus | RpcCall::ContainerHealth | RpcCall::GateStatus => {
            unreachable!("answered by the loop itself")
        }
    }
}
