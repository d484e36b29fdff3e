//! The reconcile planner of supervision (`supervise::plan_tick`), driven by a
//! small simulation with a fake clock: a `World` holds everything the daemon
//! would feed the planner, `tick` plans, checks the plan is idempotent,
//! applies its trackers (as the daemon persists them) and writes the plan to
//! a transcript; the test then changes what the "engine" reports and moves
//! the clock. Scenario transcripts are insta snapshots; the numbers that
//! matter are also asserted directly.
//!
//! Times in transcripts are offsets from the simulation's start (`+1m30s`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_core::classify::{EngineStatus, HealthStatus};
use berth_core::duration::format_duration;
use berth_core::graph;
use berth_core::manifest::parse_stack;
use berth_core::model::Stack;
use berth_core::observed::ObservedContainer;
use berth_core::supervise::{
    HealthView, Intent, RestartTracker, SupervisedApp, SupervisionAction, SupervisionConfig,
    TickInput, TickPlan, plan_tick,
};

/// The simulation's epoch: a realistic wall-clock time in milliseconds.
const T0: u64 = 1_700_000_000_000;

/// bitcoind (health-checked) and tor at tier 0; lnd needs bitcoind healthy
/// and tor started; electrs needs bitcoind started and restarts only on
/// failure; backup never restarts and sits at tier 3 on its own.
const STACK: &str = r#"
[stack]
name = "btc"

[apps.bitcoind]
image = "localhost/bitcoind:27"
[apps.bitcoind.health]
tcp = { port = 8332 }

[apps.tor]
image = "localhost/tor:0.4"

[apps.lnd]
image = "localhost/lnd:0.18"
depends_on = { bitcoind = "healthy", tor = "started" }
[apps.lnd.health]
tcp = { port = 10009 }

[apps.electrs]
image = "localhost/electrs:0.10"
depends_on = { bitcoind = "started" }
restart = "on-failure"

[apps.backup]
image = "localhost/backup:1"
restart = "no"
tier = 3
"#;

/// Four independent apps with explicit tiers, for ordering.
const TIERED: &str = r#"
[stack]
name = "tiers"

[apps.proxy]
image = "localhost/proxy:1"
tier = 2

[apps.node]
image = "localhost/node:1"

[apps.ui]
image = "localhost/ui:1"
tier = 1

[apps.miner]
image = "localhost/miner:1"
"#;

fn load(text: &str) -> Stack {
    let no_includes = |_: &str| -> Result<(String, String), String> { Err("no includes".into()) };
    parse_stack("stack.toml", text, &no_includes).expect("test stack is valid")
}

fn container(id: &str, status: EngineStatus, exit_code: Option<i64>) -> ObservedContainer {
    ObservedContainer {
        id: format!("c0ffee-{id}"),
        name: format!("berth-{id}"),
        image: format!("localhost/{id}:1"),
        status,
        exit_code,
        oom_killed: false,
        started_at: None,
        labels: BTreeMap::new(),
    }
}

fn at(ms: u64) -> String {
    if ms >= T0 {
        format!("+{}", format_duration(Duration::from_millis(ms - T0)))
    } else {
        format!("-{}", format_duration(Duration::from_millis(T0 - ms)))
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn render_tracker(t: &RestartTracker) -> String {
    let mut parts = Vec::new();
    if t.attempts > 0 {
        parts.push(format!("attempts={}", t.attempts));
    }
    if !t.failures_ms.is_empty() {
        let list: Vec<String> = t.failures_ms.iter().map(|&f| at(f)).collect();
        parts.push(format!("failures=[{}]", list.join(" ")));
    }
    if let Some(ms) = t.last_restart_ms {
        parts.push(format!("last_restart={}", at(ms)));
    }
    if let Some(ms) = t.next_allowed_ms {
        parts.push(format!("next_allowed={}", at(ms)));
    }
    if let Some(ms) = t.stable_since_ms {
        parts.push(format!("stable_since={}", at(ms)));
    }
    if let Some(q) = &t.quarantine {
        parts.push(format!(
            "quarantined(since {}, exit {}, spec {})",
            at(q.since_ms),
            q.exit_code.map_or("-".to_string(), |c| c.to_string()),
            q.spec_hash
        ));
    }
    if let Some(ms) = t.owed_start_ms {
        parts.push(format!("owed_start={}", at(ms)));
    }
    if let Some(note) = &t.last_note {
        parts.push(format!("note={note:?}"));
    }
    if parts.is_empty() {
        "(clean)".to_string()
    } else {
        parts.join(" ")
    }
}

fn render_action(a: &SupervisionAction) -> String {
    match a {
        SupervisionAction::Create { app, reason } => format!("create {app}: {reason}"),
        SupervisionAction::Start { app, reason } => format!("start {app}: {reason}"),
        SupervisionAction::Restart { app, reason } => format!("restart {app}: {reason}"),
        SupervisionAction::Quarantine {
            app,
            reason,
            exit_code,
        } => format!(
            "quarantine {app}: {reason} (exit {})",
            exit_code.map_or("-".to_string(), |c| c.to_string())
        ),
        SupervisionAction::ClearOwedStart { app } => format!("clear owed start {app}"),
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

/// A plan as the text the snapshots hold.
fn render_plan(plan: &TickPlan) -> String {
    let mut out = String::new();
    if plan.is_noop() {
        out.push_str("  (nothing)\n");
    }
    for a in &plan.actions {
        out.push_str(&format!("  action  {}\n", render_action(a)));
    }
    for e in &plan.events {
        out.push_str(&format!("  event   {} [{}] {}\n", e.kind, e.app, e.message));
    }
    for (id, t) in &plan.trackers {
        out.push_str(&format!("  tracker {id}: {}\n", render_tracker(t)));
    }
    if let Some(w) = plan.next_wake_ms {
        out.push_str(&format!("  wake    {}\n", at(w)));
    }
    out
}

/// Everything the daemon would hand the planner, plus a transcript.
struct World {
    stack: Stack,
    tiers: BTreeMap<String, u32>,
    ids: Vec<String>,
    intents: BTreeMap<String, Intent>,
    spec_hashes: BTreeMap<String, String>,
    observed: BTreeMap<String, ObservedContainer>,
    health: BTreeMap<String, HealthView>,
    trackers: BTreeMap<String, RestartTracker>,
    owed: BTreeSet<String>,
    now: u64,
    config: SupervisionConfig,
    transcript: String,
}

impl World {
    /// `ids` of `stack` are installed (all of them when empty), intent
    /// running, containers running and healthy, trackers empty.
    fn new(stack: &str, ids: &[&str]) -> World {
        let stack = load(stack);
        let tiers = graph::tiers(&stack);
        let ids: Vec<String> = if ids.is_empty() {
            stack.apps.keys().cloned().collect()
        } else {
            ids.iter().map(|s| s.to_string()).collect()
        };
        let mut world = World {
            stack,
            tiers,
            ids: ids.clone(),
            intents: ids.iter().map(|id| (id.clone(), Intent::Running)).collect(),
            spec_hashes: ids
                .iter()
                .map(|id| (id.clone(), format!("{id}-v1")))
                .collect(),
            observed: BTreeMap::new(),
            health: BTreeMap::new(),
            trackers: BTreeMap::new(),
            owed: BTreeSet::new(),
            now: T0,
            config: SupervisionConfig::default(),
            transcript: String::new(),
        };
        for id in &ids {
            world.healthy(id);
        }
        world
    }

    fn btc(ids: &[&str]) -> World {
        World::new(STACK, ids)
    }

    fn has_check(&self, id: &str) -> bool {
        self.stack.apps[id].health.is_some()
    }

    fn set_health(&mut self, id: &str, status: HealthStatus, detail: &str) {
        if self.has_check(id) {
            self.health.insert(
                id.to_string(),
                HealthView {
                    status,
                    since_ms: self.now,
                    detail: detail.to_string(),
                },
            );
        }
    }

    fn healthy(&mut self, id: &str) {
        self.observed
            .insert(id.to_string(), container(id, EngineStatus::Running, None));
        self.set_health(id, HealthStatus::Healthy, "");
    }

    fn starting(&mut self, id: &str) {
        self.observed
            .insert(id.to_string(), container(id, EngineStatus::Running, None));
        self.set_health(id, HealthStatus::Starting, "");
    }

    fn unhealthy(&mut self, id: &str, detail: &str) {
        self.observed
            .insert(id.to_string(), container(id, EngineStatus::Running, None));
        self.set_health(id, HealthStatus::Unhealthy, detail);
    }

    fn exited(&mut self, id: &str, code: i64) {
        self.observed.insert(
            id.to_string(),
            container(id, EngineStatus::Exited, Some(code)),
        );
        self.health.remove(id);
    }

    fn oom_killed(&mut self, id: &str) {
        let mut c = container(id, EngineStatus::Exited, Some(137));
        c.oom_killed = true;
        self.observed.insert(id.to_string(), c);
        self.health.remove(id);
    }

    fn status(&mut self, id: &str, status: EngineStatus) {
        self.observed
            .insert(id.to_string(), container(id, status, None));
        self.health.remove(id);
    }

    fn missing(&mut self, id: &str) {
        self.observed.remove(id);
        self.health.remove(id);
    }

    fn intent(&mut self, id: &str, intent: Intent) {
        self.intents.insert(id.to_string(), intent);
    }

    fn change_spec(&mut self, id: &str, hash: &str) {
        self.spec_hashes.insert(id.to_string(), hash.to_string());
    }

    fn advance(&mut self, d: Duration) {
        self.now += d.as_millis() as u64;
    }

    fn tracker(&self, id: &str) -> RestartTracker {
        self.trackers.get(id).cloned().unwrap_or_default()
    }

    fn plan(&self) -> TickPlan {
        let apps = self
            .ids
            .iter()
            .map(|id| SupervisedApp {
                app: &self.stack.apps[id],
                tier: self.tiers[id],
                intent: self.intents[id],
                spec_hash: &self.spec_hashes[id],
            })
            .collect();
        plan_tick(&TickInput {
            apps,
            observed: &self.observed,
            health: &self.health,
            trackers: &self.trackers,
            owed_starts: &self.owed,
            now_ms: self.now,
            config: &self.config,
        })
    }

    /// Plan once, check that planning again gives the same plan and that
    /// the wake-up is in the future, persist the trackers (as the daemon
    /// does) and record the plan under `what`.
    fn tick(&mut self, what: &str) -> TickPlan {
        let plan = self.plan();
        assert_eq!(plan, self.plan(), "planning twice gives the same plan");
        if let Some(w) = plan.next_wake_ms {
            assert!(w > self.now, "wake-up {} is not in the future", at(w));
        }
        for (id, t) in &plan.trackers {
            self.trackers.insert(id.clone(), t.clone());
        }
        self.transcript
            .push_str(&format!("{} {what}\n{}", at(self.now), render_plan(&plan)));
        plan
    }

    /// The executor, as far as the planner can tell: started containers run
    /// (health-checked ones with no verdict yet). Like the daemon's, only a
    /// restart (which wrote it) and `ClearOwedStart` remove an owed start;
    /// a plain start leaves the record for the planner to clear.
    fn execute(&mut self, plan: &TickPlan) {
        for a in &plan.actions {
            match a {
                SupervisionAction::Create { app, .. } | SupervisionAction::Start { app, .. } => {
                    self.starting(app);
                }
                SupervisionAction::Restart { app, .. } => {
                    self.starting(app);
                    self.owed.remove(app);
                }
                SupervisionAction::Quarantine { app, .. } => {
                    let q = self
                        .trackers
                        .get_mut(app)
                        .and_then(|t| t.quarantine.as_mut())
                        .expect("a quarantine action comes with a quarantined tracker");
                    q.last_logs = vec!["fatal: cannot open database".to_string()];
                }
                SupervisionAction::ClearOwedStart { app } => {
                    self.owed.remove(app);
                }
            }
        }
    }

    /// Tick until nothing changes (at most a few ticks), so a scenario can
    /// start from a steady state.
    fn settle(&mut self) {
        for _ in 0..5 {
            let plan = self.plan();
            if plan.is_noop() {
                self.transcript.clear();
                return;
            }
            self.tick("settle");
            self.execute(&plan);
        }
        panic!("the world did not settle:\n{}", self.transcript);
    }
}

/// One row's change to the world in a table-driven test.
type Setup = fn(&mut World);

fn actions(plan: &TickPlan) -> Vec<String> {
    plan.actions.iter().map(render_action).collect()
}

fn events(plan: &TickPlan) -> Vec<String> {
    plan.events
        .iter()
        .map(|e| format!("{}: {}", e.kind, e.message))
        .collect()
}

// ---------------------------------------------------------------------------
// Backoff, reset, quarantine

/// Crash the app right after every start and follow the plan's wake-ups:
/// the restarts are 10 s, 20 s, 40 s … apart, capped at 300 s.
#[test]
fn backoff_doubles_from_10s_to_a_300s_cap() {
    let mut w = World::btc(&["tor"]);
    w.config.max_failures = 20;
    w.settle();
    let mut restarts = Vec::new();
    w.exited("tor", 1);
    for _ in 0..10 {
        let plan = w.tick("tor has exited 1");
        assert_eq!(plan.actions.len(), 1, "{}", w.transcript);
        restarts.push(w.now);
        w.execute(&plan);
        w.advance(secs(1));
        w.exited("tor", 1);
        let plan = w.tick("tor crashed again right after its start");
        assert!(plan.actions.is_empty(), "still backing off");
        w.now = plan.next_wake_ms.expect("the backoff's end is the wake-up");
    }
    let gaps: Vec<u64> = restarts.windows(2).map(|p| (p[1] - p[0]) / 1000).collect();
    assert_eq!(gaps, [10, 20, 40, 80, 160, 300, 300, 300, 300]);
    assert_eq!(w.tracker("tor").attempts, 10);
    insta::assert_snapshot!("backoff_schedule", w.transcript);
}

#[test]
fn restarted_event_names_cause_attempt_and_next_backoff() {
    let mut w = World::btc(&["lnd"]);
    w.trackers.insert(
        "lnd".into(),
        RestartTracker {
            attempts: 2,
            failures_ms: vec![T0 - 40_000, T0 - 30_000],
            last_restart_ms: Some(T0 - 30_000),
            next_allowed_ms: Some(T0 - 10_000),
            ..RestartTracker::default()
        },
    );
    w.exited("lnd", 1);
    let plan = w.tick("lnd crashed a third time");
    assert_eq!(
        events(&plan),
        ["restarted: restarted lnd: exited 1 (crashed), attempt 3/10, next backoff 40s"]
    );
    assert_eq!(actions(&plan), ["start lnd: exited 1 (crashed)"]);
    let t = w.tracker("lnd");
    assert_eq!(t.next_allowed_ms, Some(T0 + 40_000));
    assert_eq!(t.last_restart_ms, Some(T0));
    assert_eq!(t.failures_ms, [T0 - 40_000, T0 - 30_000, T0]);
}

/// The exit is described the way the issue writes it.
#[test]
fn exits_are_described_by_kind() {
    let cases: &[(&str, Setup, &str)] = &[
        ("crashed", |w| w.exited("tor", 1), "exited 1 (crashed)"),
        ("sigterm", |w| w.exited("tor", 143), "exited 143 (crashed)"),
        ("killed", |w| w.exited("tor", 137), "killed (137)"),
        ("oom", |w| w.oom_killed("tor"), "killed (OOM)"),
        ("clean exit", |w| w.exited("tor", 0), "exited 0"),
        ("dead", |w| w.status("tor", EngineStatus::Dead), "dead"),
    ];
    for (name, setup, cause) in cases {
        let mut w = World::btc(&["tor"]);
        setup(&mut w);
        let plan = w.tick(name);
        assert_eq!(
            actions(&plan),
            [format!("start tor: {cause}")],
            "{name} (restart policy always)"
        );
        assert_eq!(
            events(&plan),
            [format!(
                "restarted: restarted tor: {cause}, attempt 1/10, next backoff 10s"
            )],
            "{name}"
        );
    }
}

#[test]
fn counters_reset_after_a_stable_period() {
    let mut w = World::btc(&["bitcoind"]);
    w.settle();
    w.exited("bitcoind", 1);
    let plan = w.tick("bitcoind crashed");
    w.execute(&plan);
    w.advance(secs(2));
    w.exited("bitcoind", 1);
    w.tick("bitcoind crashed again");
    w.advance(secs(10));
    let plan = w.tick("backoff over");
    assert_eq!(w.tracker("bitcoind").attempts, 2);
    w.execute(&plan);
    w.advance(secs(30));
    let plan = w.tick("bitcoind runs, health check still in its start period");
    assert!(plan.is_noop(), "no verdict yet: not stable, nothing to do");
    w.healthy("bitcoind");
    let plan = w.tick("bitcoind is healthy");
    let stable_since = w.now;
    assert_eq!(plan.next_wake_ms, Some(stable_since + 600_000));
    w.advance(secs(300));
    w.unhealthy("bitcoind", "rpc timeout");
    w.tick("bitcoind unhealthy after 5m: the stable period is broken");
    assert_eq!(w.tracker("bitcoind").stable_since_ms, None);
    w.healthy("bitcoind");
    w.advance(secs(60));
    let plan = w.tick("healthy again after that restart: a new stable period");
    let stable_since = w.now;
    assert_eq!(plan.next_wake_ms, Some(stable_since + 600_000));
    w.advance(secs(599));
    let plan = w.tick("1s short of 10m");
    assert!(plan.is_noop());
    assert_eq!(plan.next_wake_ms, Some(stable_since + 600_000));
    w.advance(secs(1));
    let plan = w.tick("10m healthy");
    assert_eq!(
        events(&plan),
        ["counter-reset: counters of bitcoind reset: healthy for 10m"]
    );
    let t = w.tracker("bitcoind");
    assert_eq!(
        (t.attempts, t.failures_ms.len(), t.next_allowed_ms),
        (0, 0, None)
    );
    let plan = w.tick("and then");
    assert!(plan.is_noop() && plan.next_wake_ms.is_none(), "steady");
    w.exited("bitcoind", 1);
    let plan = w.tick("the next crash starts from attempt 1 again");
    assert_eq!(
        events(&plan),
        ["restarted: restarted bitcoind: exited 1 (crashed), attempt 1/10, next backoff 10s"]
    );
    insta::assert_snapshot!("stable_reset", w.transcript);
}

#[test]
fn an_app_without_health_check_is_stable_while_running() {
    let mut w = World::btc(&["tor"]);
    w.trackers.insert(
        "tor".into(),
        RestartTracker {
            attempts: 1,
            failures_ms: vec![T0],
            last_restart_ms: Some(T0),
            next_allowed_ms: Some(T0 + 10_000),
            ..RestartTracker::default()
        },
    );
    w.tick("tor runs");
    w.advance(secs(600));
    let plan = w.tick("tor ran for 10m");
    assert_eq!(
        events(&plan),
        ["counter-reset: counters of tor reset: running for 10m"]
    );
}

#[test]
fn quarantine_after_max_failures_in_the_window() {
    let mut w = World::btc(&["lnd", "bitcoind", "tor"]);
    w.settle();
    w.exited("lnd", 2);
    let mut restarts = 0;
    let plan = loop {
        let plan = w.tick("lnd exited 2");
        if let Some(SupervisionAction::Quarantine { .. }) = plan.actions.first() {
            break plan;
        }
        restarts += 1;
        w.execute(&plan);
        w.advance(secs(1));
        w.exited("lnd", 2);
        w.now = w.plan().next_wake_ms.expect("backing off");
    };
    assert_eq!(restarts, 9, "nine restarts, the tenth failure quarantines");
    assert_eq!(
        actions(&plan),
        ["quarantine lnd: crash loop: 10 failures in 1h; last: exited 2 (crashed) (exit 2)"]
    );
    assert_eq!(
        events(&plan),
        ["quarantined: quarantined lnd: crash loop: 10 failures in 1h; last: exited 2 (crashed)"]
    );
    w.execute(&plan);
    let q = w.tracker("lnd").quarantine.expect("quarantined");
    assert_eq!(q.spec_hash, "lnd-v1");
    assert_eq!(q.exit_code, Some(2));
    assert_eq!(q.since_ms, w.now);
    for step in 0..5 {
        w.advance(secs(3600));
        let plan = w.tick("an hour later, still exited");
        assert!(plan.is_noop() && plan.next_wake_ms.is_none(), "tick {step}");
    }
    w.missing("lnd");
    assert!(w.tick("even its container vanishing").is_noop());
    insta::assert_snapshot!("quarantine", w.transcript);
}

#[test]
fn an_unhealthy_crash_loop_is_quarantined_without_exit_code() {
    let mut w = World::btc(&["bitcoind"]);
    w.config.max_failures = 2;
    w.unhealthy("bitcoind", "rpc timeout");
    let plan = w.tick("unhealthy");
    assert_eq!(actions(&plan), ["restart bitcoind: unhealthy: rpc timeout"]);
    w.advance(secs(10));
    let plan = w.tick("still unhealthy after the backoff");
    assert_eq!(
        actions(&plan),
        [
            "quarantine bitcoind: crash loop: 2 failures in 1h; last: unhealthy: rpc timeout (exit -)"
        ]
    );
}

#[test]
fn failures_outside_the_window_do_not_count() {
    let mut w = World::btc(&["tor"]);
    w.config.max_failures = 3;
    w.config.failure_window = secs(600);
    w.config.stable_after = secs(3600);
    w.settle();
    for minute in [0, 6, 12] {
        w.now = T0 + minute * 60_000;
        w.exited("tor", 1);
        let plan = w.tick("tor crashed");
        assert!(
            matches!(plan.actions[..], [SupervisionAction::Start { .. }]),
            "minute {minute}: {}",
            w.transcript
        );
        w.execute(&plan);
        w.advance(secs(30));
        w.tick("tor runs");
    }
    assert_eq!(
        w.tracker("tor").failures_ms,
        [T0 + 360_000, T0 + 720_000],
        "the failure at +0s left the 10m window at +10m"
    );
    w.now = T0 + 13 * 60_000;
    w.exited("tor", 1);
    let plan = w.tick("a third failure inside the window");
    assert_eq!(
        actions(&plan),
        ["quarantine tor: crash loop: 3 failures in 10m; last: exited 1 (crashed) (exit 1)"]
    );
    insta::assert_snapshot!("failure_window", w.transcript);
}

#[test]
fn a_spec_change_lifts_the_quarantine() {
    let mut w = World::btc(&["tor"]);
    w.config.max_failures = 1;
    w.exited("tor", 1);
    let plan = w.tick("tor crashed; one failure quarantines here");
    assert!(matches!(
        plan.actions[..],
        [SupervisionAction::Quarantine { .. }]
    ));
    w.execute(&plan);
    w.advance(secs(60));
    assert!(w.tick("same spec").is_noop());
    w.change_spec("tor", "tor-v2");
    w.config.max_failures = 10;
    let plan = w.tick("tor's spec changed (still exited)");
    assert_eq!(
        events(&plan),
        [
            "quarantine-lifted: quarantine of tor lifted: spec changed",
            "restarted: restarted tor: exited 1 (crashed), attempt 1/10, next backoff 10s",
        ]
    );
    assert_eq!(actions(&plan), ["start tor: exited 1 (crashed)"]);
    assert!(w.tracker("tor").quarantine.is_none());
    w.execute(&plan);
    w.advance(secs(1));
    let plan = w.tick("running with the new spec");
    assert!(plan.events.is_empty());
    insta::assert_snapshot!("quarantine_lifted", w.transcript);
}

#[test]
fn a_lifted_quarantine_of_a_running_app_just_tracks_it() {
    let mut w = World::btc(&["tor"]);
    w.config.max_failures = 1;
    w.exited("tor", 1);
    w.tick("crash");
    w.change_spec("tor", "tor-v2");
    w.healthy("tor");
    let plan = w.tick("reinstalled with a new spec, runs");
    assert_eq!(
        events(&plan),
        ["quarantine-lifted: quarantine of tor lifted: spec changed"]
    );
    assert!(plan.actions.is_empty());
    assert_eq!(
        w.tracker("tor"),
        RestartTracker {
            stable_since_ms: Some(w.now),
            ..RestartTracker::default()
        }
    );
}

// ---------------------------------------------------------------------------
// The user's stop

#[test]
fn an_app_the_user_stopped_or_a_gate_keeps_stopped_is_never_touched() {
    let cases: &[(&str, Setup)] = &[
        ("exited 0", |w| w.exited("lnd", 0)),
        ("exited non-zero", |w| w.exited("lnd", 1)),
        ("killed (OOM)", |w| w.oom_killed("lnd")),
        ("missing", |w| w.missing("lnd")),
        ("created", |w| w.status("lnd", EngineStatus::Created)),
        ("running unhealthy", |w| w.unhealthy("lnd", "down")),
        ("running healthy", |w| w.healthy("lnd")),
        ("owed a start, exited", |w| {
            w.owed.insert("lnd".into());
            w.exited("lnd", 0);
        }),
        ("owed a start, running", |w| {
            w.owed.insert("lnd".into());
        }),
        ("quarantined, spec changed", |w| {
            w.trackers.insert(
                "lnd".into(),
                RestartTracker {
                    quarantine: Some(berth_core::supervise::Quarantine {
                        since_ms: T0,
                        reason: "crash loop".into(),
                        exit_code: Some(1),
                        last_logs: vec![],
                        spec_hash: "lnd-v0".into(),
                    }),
                    ..RestartTracker::default()
                },
            );
            w.exited("lnd", 1);
        }),
        ("in backoff with a pending reset", |w| {
            w.trackers.insert(
                "lnd".into(),
                RestartTracker {
                    attempts: 4,
                    failures_ms: vec![T0],
                    next_allowed_ms: Some(T0 + 80_000),
                    stable_since_ms: Some(T0),
                    ..RestartTracker::default()
                },
            );
            w.exited("lnd", 1);
        }),
        ("its dependency is down", |w| {
            w.missing("bitcoind");
            w.exited("lnd", 1);
        }),
    ];
    // A chain gate's hold or rejection is left alone exactly the same way.
    for ((name, setup), intent) in cases
        .iter()
        .flat_map(|c| [(c, Intent::Stopped), (c, Intent::Gated)])
    {
        let mut w = World::btc(&["bitcoind", "tor", "lnd"]);
        w.settle();
        w.intent("lnd", intent);
        setup(&mut w);
        // Also after "daemon restarts": the intent is just input, so ticks
        // far apart with nothing remembered in between act the same.
        for _ in 0..4 {
            let plan = w.plan();
            assert!(
                plan.actions.iter().all(|a| action_app(a) != "lnd")
                    && plan.events.iter().all(|e| e.app != "lnd")
                    && !plan.trackers.contains_key("lnd"),
                "{name}: {}",
                render_plan(&plan)
            );
            w.tick(name);
            w.advance(secs(7200));
        }
    }
}

// ---------------------------------------------------------------------------
// Containers that vanished, were never started, or went unhealthy

#[test]
fn a_vanished_container_is_recreated_in_one_tick() {
    let mut w = World::btc(&["tor"]);
    w.settle();
    w.missing("tor");
    let plan = w.tick("tor's container was removed behind berth's back");
    assert_eq!(actions(&plan), ["create tor: container vanished"]);
    assert_eq!(
        events(&plan),
        ["recreated: recreated tor: container vanished"]
    );
    let t = w.tracker("tor");
    assert_eq!((t.attempts, t.failures_ms.len()), (0, 0), "not a crash");
    let plan = w.tick("the create failed: still missing");
    assert_eq!(
        actions(&plan),
        ["create tor: container vanished"],
        "retried"
    );
    assert!(plan.events.is_empty(), "reported once");
    w.execute(&plan);
    w.tick("recreated, running");
    assert!(w.tick("steady").is_noop());
    w.missing("tor");
    let plan = w.tick("vanished again: a new incident, reported again");
    assert_eq!(
        events(&plan),
        ["recreated: recreated tor: container vanished"]
    );
    insta::assert_snapshot!("vanished", w.transcript);
}

#[test]
fn a_created_container_is_started() {
    let mut w = World::btc(&["tor", "backup"]);
    w.status("tor", EngineStatus::Created);
    w.status("backup", EngineStatus::Created);
    let plan = w.tick("created, never started (restart policy no for backup)");
    assert_eq!(
        actions(&plan),
        [
            "start tor: container was created but never started",
            "start backup: container was created but never started",
        ]
    );
    assert_eq!(
        events(&plan),
        [
            "started: started tor: container was created but never started",
            "started: started backup: container was created but never started",
        ]
    );
    assert!(w.tick("again").events.is_empty());
}

#[test]
fn an_unhealthy_app_is_restarted_with_backoff() {
    let mut w = World::btc(&["bitcoind"]);
    w.settle();
    w.unhealthy("bitcoind", "connection refused");
    let plan = w.tick("bitcoind unhealthy");
    assert_eq!(
        actions(&plan),
        ["restart bitcoind: unhealthy: connection refused"]
    );
    w.execute(&plan);
    w.advance(secs(5));
    assert!(w.tick("starting after the restart").is_noop());
    w.unhealthy("bitcoind", "connection refused");
    let plan = w.tick("unhealthy again, inside the backoff");
    assert!(plan.actions.is_empty());
    assert_eq!(plan.next_wake_ms, Some(T0 + 10_000));
    w.now = T0 + 10_000;
    let plan = w.tick("backoff over");
    assert_eq!(
        actions(&plan),
        ["restart bitcoind: unhealthy: connection refused"]
    );
    assert_eq!(
        events(&plan),
        [
            "restarted: restarted bitcoind: unhealthy: connection refused, attempt 2/10, next backoff 20s"
        ]
    );
    insta::assert_snapshot!("unhealthy", w.transcript);
}

#[test]
fn states_supervision_leaves_alone() {
    for status in [
        EngineStatus::Restarting,
        EngineStatus::Paused,
        EngineStatus::Removing,
        EngineStatus::Unknown,
    ] {
        let mut w = World::btc(&["tor"]);
        w.trackers.insert(
            "tor".into(),
            RestartTracker {
                attempts: 2,
                stable_since_ms: Some(T0 - 1),
                ..RestartTracker::default()
            },
        );
        w.owed.insert("tor".into());
        w.status("tor", status);
        let plan = w.plan();
        assert!(plan.is_noop(), "{status:?}: {}", render_plan(&plan));
        assert_eq!(plan.next_wake_ms, None);
    }
}

// ---------------------------------------------------------------------------
// Restart policies

#[test]
fn restart_policies() {
    // (app, setup, actions, the event of the first tick)
    let cases: &[(&str, Setup, &[&str], &[&str])] = &[
        (
            "backup",
            |w| w.exited("backup", 1),
            &[],
            &["not-restarted: backup exited 1 (crashed); restart policy no: not restarting"],
        ),
        (
            "backup",
            |w| w.exited("backup", 0),
            &[],
            &["not-restarted: backup exited 0; restart policy no: not restarting"],
        ),
        (
            "electrs",
            |w| w.exited("electrs", 0),
            &[],
            &["not-restarted: electrs exited 0; restart policy on-failure: not restarting"],
        ),
        (
            "electrs",
            |w| w.exited("electrs", 3),
            &["start electrs: exited 3 (crashed)"],
            &["restarted: restarted electrs: exited 3 (crashed), attempt 1/10, next backoff 10s"],
        ),
        (
            "electrs",
            |w| w.oom_killed("electrs"),
            &["start electrs: killed (OOM)"],
            &["restarted: restarted electrs: killed (OOM), attempt 1/10, next backoff 10s"],
        ),
        (
            "electrs",
            |w| w.status("electrs", EngineStatus::Dead),
            &["start electrs: dead"],
            &["restarted: restarted electrs: dead, attempt 1/10, next backoff 10s"],
        ),
        (
            "tor",
            |w| w.exited("tor", 0),
            &["start tor: exited 0"],
            &["restarted: restarted tor: exited 0, attempt 1/10, next backoff 10s"],
        ),
        (
            // "no" is never restarted, not even when unhealthy...
            "backup",
            |w| {
                w.stack.apps.get_mut("backup").unwrap().health =
                    w.stack.apps["bitcoind"].health.clone();
                w.unhealthy("backup", "disk full");
            },
            &[],
            &["not-restarted: backup is unhealthy: disk full; restart policy no: not restarting"],
        ),
        (
            // ...but a vanished container is still recreated: the user
            // wants it installed and running.
            "backup",
            |w| w.missing("backup"),
            &["create backup: container vanished"],
            &["recreated: recreated backup: container vanished"],
        ),
    ];
    for (app, setup, want_actions, want_events) in cases {
        let mut w = World::btc(&["bitcoind", "tor", "electrs", "backup"]);
        w.settle();
        setup(&mut w);
        let plan = w.tick("first");
        assert_eq!(actions(&plan), *want_actions, "{app}: {}", w.transcript);
        assert_eq!(events(&plan), *want_events, "{app}: {}", w.transcript);
        if want_actions.is_empty() {
            w.advance(secs(3600));
            let plan = w.tick("an hour later");
            assert!(plan.is_noop(), "{app}: reported once: {}", w.transcript);
        }
    }
}

#[test]
fn a_policy_note_is_repeated_for_the_next_exit() {
    let mut w = World::btc(&["backup"]);
    w.exited("backup", 0);
    w.tick("backup finished");
    w.owed.clear();
    w.status("backup", EngineStatus::Created);
    w.tick("the user's next `berth start backup` (simulated: created)");
    w.healthy("backup");
    w.tick("running");
    w.exited("backup", 0);
    let plan = w.tick("finished again");
    assert_eq!(
        events(&plan),
        ["not-restarted: backup exited 0; restart policy no: not restarting"]
    );
}

// ---------------------------------------------------------------------------
// Dependencies

#[test]
fn a_dependent_waits_for_an_unhealthy_dependency_then_restarts_when_it_recovers() {
    let mut w = World::btc(&["bitcoind", "tor", "lnd"]);
    w.settle();
    // lnd had trouble before: its counters must not survive the outage.
    w.trackers.get_mut("lnd").unwrap().attempts = 3;
    w.trackers.get_mut("lnd").unwrap().failures_ms = vec![T0 - 60_000, T0 - 30_000, T0 - 1];
    w.unhealthy("bitcoind", "rpc timeout");
    w.exited("lnd", 1);
    let plan = w.tick("bitcoind unhealthy, lnd crashed (it lost its backend)");
    assert_eq!(actions(&plan), ["restart bitcoind: unhealthy: rpc timeout"]);
    assert_eq!(
        events(&plan),
        [
            "restarted: restarted bitcoind: unhealthy: rpc timeout, attempt 1/10, next backoff 10s",
            "waiting: lnd waits for bitcoind: unhealthy",
        ]
    );
    let failures_before = w.tracker("lnd").failures_ms;
    w.execute(&plan);
    w.exited("lnd", 1);
    w.advance(secs(5));
    let plan = w.tick("bitcoind restarting, lnd still exited");
    assert_eq!(events(&plan), ["waiting: lnd waits for bitcoind: starting"]);
    for _ in 0..3 {
        w.advance(secs(60));
        let plan = w.tick("a minute later, same");
        assert!(plan.is_noop(), "a repeated wait is quiet");
    }
    assert_eq!(
        w.tracker("lnd").failures_ms,
        failures_before,
        "failure counting pauses while waiting"
    );
    w.healthy("bitcoind");
    let plan = w.tick("bitcoind healthy again");
    assert_eq!(
        events(&plan),
        [
            "counter-reset: counters of lnd reset: dependency recovered",
            "restarted: restarted lnd: exited 1 (crashed), attempt 1/10, next backoff 10s",
        ]
    );
    assert_eq!(actions(&plan), ["start lnd: exited 1 (crashed)"]);
    assert_eq!(w.tracker("lnd").failures_ms, [w.now]);
    insta::assert_snapshot!("dependency_unhealthy", w.transcript);
}

#[test]
fn a_dependent_waits_while_its_dependency_is_unavailable() {
    // (what happens to bitcoind/tor, the note lnd gets)
    let cases: &[(&str, Setup, &str)] = &[
        (
            "stopped by the user",
            |w| {
                w.intent("bitcoind", Intent::Stopped);
                w.exited("bitcoind", 0);
            },
            "lnd waits for bitcoind: stopped by the user",
        ),
        (
            "stopped by the user, container still running",
            |w| w.intent("bitcoind", Intent::Stopped),
            "lnd waits for bitcoind: stopped by the user",
        ),
        (
            "kept stopped by a chain gate (held or rejected)",
            |w| {
                w.intent("bitcoind", Intent::Gated);
                w.exited("bitcoind", 0);
            },
            "lnd waits for bitcoind: kept stopped by its gate",
        ),
        (
            "missing",
            |w| w.missing("bitcoind"),
            "lnd waits for bitcoind: missing",
        ),
        (
            "crashed",
            |w| w.exited("bitcoind", 1),
            "lnd waits for bitcoind: exited 1 (crashed)",
        ),
        (
            "created",
            |w| w.status("bitcoind", EngineStatus::Created),
            "lnd waits for bitcoind: created",
        ),
        (
            "paused",
            |w| w.status("bitcoind", EngineStatus::Paused),
            "lnd waits for bitcoind: paused",
        ),
        (
            "health not yet known",
            |w| {
                w.starting("bitcoind");
                w.health.remove("bitcoind");
            },
            "lnd waits for bitcoind: starting",
        ),
        (
            "both dependencies down",
            |w| {
                w.unhealthy("bitcoind", "x");
                w.exited("tor", 137);
            },
            "lnd waits for bitcoind: unhealthy; tor: killed (137)",
        ),
        (
            "quarantined",
            |w| {
                w.exited("bitcoind", 1);
                w.trackers.get_mut("bitcoind").unwrap().quarantine =
                    Some(berth_core::supervise::Quarantine {
                        since_ms: T0,
                        reason: "crash loop".into(),
                        exit_code: Some(1),
                        last_logs: vec![],
                        spec_hash: "bitcoind-v1".into(),
                    });
            },
            "lnd waits for bitcoind: quarantined",
        ),
    ];
    // lnd's own trouble: it vanished, crashed, or is unhealthy; or it owes
    // a start.
    let lnd_states: &[(&str, Setup)] = &[
        ("missing", |w| w.missing("lnd")),
        ("crashed", |w| w.exited("lnd", 1)),
        ("created", |w| w.status("lnd", EngineStatus::Created)),
        ("unhealthy", |w| w.unhealthy("lnd", "no backend")),
        ("owed a start", |w| {
            w.owed.insert("lnd".into());
            w.exited("lnd", 0);
        }),
    ];
    for (dep_name, dep_setup, note) in cases {
        for (lnd_name, lnd_setup) in lnd_states {
            let mut w = World::btc(&["bitcoind", "tor", "lnd"]);
            w.settle();
            dep_setup(&mut w);
            lnd_setup(&mut w);
            let plan = w.tick("first");
            let ctx = format!("bitcoind {dep_name}, lnd {lnd_name}:\n{}", w.transcript);
            assert!(plan.actions.iter().all(|a| action_app(a) != "lnd"), "{ctx}");
            let lnd_events: Vec<&str> = plan
                .events
                .iter()
                .filter(|e| e.app == "lnd")
                .map(|e| e.message.as_str())
                .collect();
            assert_eq!(lnd_events, [*note], "{ctx}");
            let plan = w.tick("again");
            assert!(
                plan.events.iter().all(|e| e.app != "lnd"),
                "quiet: {}",
                w.transcript
            );
        }
    }
}

#[test]
fn a_started_condition_is_satisfied_by_a_running_dependency() {
    let mut w = World::btc(&["bitcoind", "electrs"]);
    w.settle();
    w.unhealthy("bitcoind", "syncing");
    w.exited("electrs", 1);
    let plan = w.tick("bitcoind unhealthy but running, electrs crashed");
    assert_eq!(
        actions(&plan),
        [
            "restart bitcoind: unhealthy: syncing",
            "start electrs: exited 1 (crashed)",
        ]
    );
}

#[test]
fn a_running_dependent_is_not_disturbed_by_its_dependency() {
    let mut w = World::btc(&["bitcoind", "tor", "lnd"]);
    w.settle();
    w.missing("bitcoind");
    let plan = w.tick("bitcoind vanished; lnd still runs healthy");
    assert_eq!(actions(&plan), ["create bitcoind: container vanished"]);
    assert!(
        plan.events.iter().all(|e| e.app != "lnd"),
        "nothing to wait for"
    );
    assert!(!plan.trackers.contains_key("lnd"));
}

#[test]
fn a_wait_that_ends_without_the_dependency_does_not_reset_counters() {
    let mut w = World::btc(&["bitcoind", "tor", "lnd"]);
    w.settle();
    w.trackers.get_mut("lnd").unwrap().attempts = 2;
    w.missing("bitcoind");
    w.exited("lnd", 1);
    w.intent("bitcoind", Intent::Stopped);
    w.tick("bitcoind stopped by the user and removed, lnd crashed");
    w.starting("lnd");
    let plan = w.tick("lnd started by hand: no longer waiting, bitcoind still gone");
    assert!(plan.events.is_empty(), "{}", w.transcript);
    let t = w.tracker("lnd");
    assert_eq!((t.attempts, t.last_note), (2, None));
}

/// After a host reboot every container has exited: tier 0 first, then the
/// dependents as their dependencies come up, each told once why it waits.
#[test]
fn cold_boot_starts_in_tier_order() {
    let mut w = World::btc(&[]);
    for id in ["bitcoind", "tor", "lnd", "electrs", "backup"] {
        w.exited(id, 137);
    }
    let plan = w.tick("host rebooted: everything killed (137)");
    assert_eq!(
        actions(&plan),
        ["start bitcoind: killed (137)", "start tor: killed (137)"]
    );
    w.execute(&plan);
    w.advance(secs(2));
    let plan = w.tick("bitcoind and tor run, bitcoind's health not yet known");
    assert_eq!(actions(&plan), ["start electrs: killed (137)"]);
    assert_eq!(
        events(&plan),
        [
            "restarted: restarted electrs: killed (137), attempt 1/10, next backoff 10s",
            "waiting: lnd waits for bitcoind: starting",
        ],
        "a wait with clean counters ends without a counter reset"
    );
    w.execute(&plan);
    w.advance(secs(30));
    w.healthy("bitcoind");
    let plan = w.tick("bitcoind healthy");
    assert_eq!(actions(&plan), ["start lnd: killed (137)"]);
    w.execute(&plan);
    w.healthy("lnd");
    w.healthy("electrs");
    w.advance(secs(30));
    w.tick("all healthy");
    w.advance(secs(600));
    w.tick("10m later: counters reset");
    let plan = w.tick("steady");
    assert!(plan.is_noop() && plan.next_wake_ms.is_none());
    insta::assert_snapshot!("cold_boot", w.transcript);
}

#[test]
fn actions_follow_tier_order_then_id() {
    let mut w = World::new(TIERED, &[]);
    for id in ["proxy", "node", "ui", "miner"] {
        w.missing(id);
    }
    let plan = w.tick("all missing");
    let order: Vec<&str> = plan.actions.iter().map(action_app).collect();
    assert_eq!(order, ["miner", "node", "ui", "proxy"]);
    let order: Vec<&str> = plan.events.iter().map(|e| e.app.as_str()).collect();
    assert_eq!(order, ["miner", "node", "ui", "proxy"]);
}

// ---------------------------------------------------------------------------
// Owed starts

#[test]
fn owed_starts() {
    let mut w = World::btc(&["bitcoind", "tor", "lnd"]);
    w.settle();
    w.owed.insert("tor".into());
    w.exited("tor", 143);
    let plan = w.tick("daemon crashed between stopping tor and starting it");
    assert_eq!(
        actions(&plan),
        ["start tor: owed start: a supervision stop was not followed by its start"]
    );
    assert_eq!(w.tracker("tor").attempts, 0, "not a failure");
    assert!(w.tracker("tor").failures_ms.is_empty(), "not a failure");
    w.status("tor", EngineStatus::Running);
    let plan = w.tick("tor runs, the owed record is still there");
    assert_eq!(actions(&plan), ["clear owed start tor"]);
    w.execute(&plan);
    assert!(w.tick("cleared").is_noop());

    w.owed.insert("lnd".into());
    w.exited("lnd", 0);
    w.unhealthy("bitcoind", "rpc timeout");
    let plan = w.tick("lnd owed a start, but bitcoind is unhealthy");
    assert!(plan.actions.iter().all(|a| action_app(a) != "lnd"));
    w.execute(&plan);
    w.healthy("bitcoind");
    w.advance(secs(60));
    let plan = w.tick("bitcoind healthy");
    assert_eq!(
        actions(&plan),
        ["start lnd: owed start: a supervision stop was not followed by its start"]
    );

    w.owed.insert("bitcoind".into());
    w.missing("bitcoind");
    let plan = w.tick("owed, but the container is gone");
    assert_eq!(actions(&plan)[0], "create bitcoind: container vanished");
    insta::assert_snapshot!("owed_start", w.transcript);
}

/// The daemon leaves the owed record in place after a plain start, and the
/// app may die right after it: the first owed start is free, the app being
/// down again afterwards is a failure like any other (whatever its restart
/// policy: the stop was supervision's), so it backs off and quarantines.
#[test]
fn an_owed_start_that_does_not_take_is_counted() {
    let mut w = World::btc(&["backup"]);
    w.config.max_failures = 3;
    w.settle();
    w.owed.insert("backup".into());
    w.exited("backup", 143);
    let plan = w.tick("backup owed a start (restart policy no)");
    assert_eq!(
        actions(&plan),
        ["start backup: owed start: a supervision stop was not followed by its start"]
    );
    assert_eq!(
        plan.next_wake_ms, None,
        "nothing to wake for unless it dies"
    );
    w.execute(&plan);
    w.advance(secs(2));
    w.exited("backup", 1);
    let plan = w.tick("died right after; the record is still there");
    assert!(plan.actions.is_empty() && plan.events.is_empty());
    assert_eq!(
        plan.next_wake_ms,
        Some(T0 + 10_000),
        "the start's grace ends"
    );
    w.now = T0 + 10_000;
    let plan = w.tick("grace over, still down");
    assert_eq!(actions(&plan), ["start backup: exited 1 (crashed)"]);
    assert_eq!(
        events(&plan),
        ["restarted: restarted backup: exited 1 (crashed), attempt 1/3, next backoff 10s"]
    );
    w.execute(&plan);
    w.exited("backup", 1);
    w.now = w.plan().next_wake_ms.expect("backing off");
    let plan = w.tick("down again");
    assert_eq!(actions(&plan), ["start backup: exited 1 (crashed)"]);
    w.execute(&plan);
    w.exited("backup", 1);
    w.now = w.plan().next_wake_ms.expect("backing off");
    let plan = w.tick("and again");
    assert!(matches!(
        plan.actions[..],
        [SupervisionAction::Quarantine { .. }]
    ));
    w.execute(&plan);
    assert!(w.tick("quarantined").is_noop());
    insta::assert_snapshot!("owed_start_loop", w.transcript);
}

#[test]
fn a_new_incident_gets_a_new_free_owed_start() {
    let mut w = World::btc(&["tor"]);
    w.owed.insert("tor".into());
    w.exited("tor", 143);
    w.tick("owed");
    w.healthy("tor");
    let plan = w.tick("running");
    assert_eq!(actions(&plan), ["clear owed start tor"]);
    w.execute(&plan);
    assert_eq!(w.tracker("tor").owed_start_ms, None);
    w.advance(secs(3600));
    w.owed.insert("tor".into());
    w.exited("tor", 143);
    let plan = w.tick("a later supervision stop, again not followed by its start");
    assert_eq!(
        actions(&plan),
        ["start tor: owed start: a supervision stop was not followed by its start"]
    );
    assert_eq!(w.tracker("tor").attempts, 0);
}

#[test]
fn an_unhealthy_owed_app_gets_one_action() {
    let mut w = World::btc(&["bitcoind"]);
    w.owed.insert("bitcoind".into());
    w.unhealthy("bitcoind", "x");
    let plan = w.tick("unhealthy and owed");
    assert_eq!(actions(&plan), ["restart bitcoind: unhealthy: x"]);
    w.execute(&plan);
    w.owed.insert("bitcoind".into());
    w.unhealthy("bitcoind", "x");
    let plan = w.tick("unhealthy, owed, in backoff");
    assert_eq!(actions(&plan), ["clear owed start bitcoind"]);
}

// ---------------------------------------------------------------------------
// Idempotence, steady state, clock

#[test]
fn a_steady_healthy_system_plans_nothing() {
    let mut w = World::btc(&[]);
    let plan = w.tick("first tick after the daemon started");
    assert!(plan.actions.is_empty() && plan.events.is_empty());
    assert_eq!(plan.trackers.len(), 5, "stable periods start");
    for _ in 0..10 {
        w.advance(secs(30));
        let plan = w.tick("periodic tick");
        assert!(plan.is_noop() && plan.next_wake_ms.is_none());
    }
    w.advance(secs(86_400));
    assert!(w.tick("a day later").is_noop());
}

#[test]
fn planning_twice_gives_the_same_plan() {
    let mut w = World::btc(&[]);
    w.missing("tor");
    w.exited("bitcoind", 1);
    w.unhealthy("lnd", "x");
    w.status("electrs", EngineStatus::Created);
    w.exited("backup", 2);
    w.owed.insert("electrs".into());
    let first = w.plan();
    assert!(!first.is_noop());
    assert_eq!(first, w.plan());
    // Applying the plan's trackers and planning again (the executor did
    // nothing) reports nothing twice.
    w.tick("everything wrong at once");
    let second = w.tick("nothing was executed");
    assert!(second.events.is_empty(), "{}", w.transcript);
    assert!(second.trackers.is_empty(), "{}", w.transcript);
    insta::assert_snapshot!("idempotent", w.transcript);
}

#[test]
fn a_clock_stepped_back_does_not_strand_an_app_in_backoff() {
    let mut w = World::btc(&["tor"]);
    w.trackers.insert(
        "tor".into(),
        RestartTracker {
            attempts: 1,
            failures_ms: vec![T0 + 86_400_000],
            last_restart_ms: Some(T0 + 86_400_000),
            next_allowed_ms: Some(T0 + 86_400_000 + 10_000),
            ..RestartTracker::default()
        },
    );
    w.exited("tor", 1);
    let plan = w.tick("the last restart was recorded a day in the future");
    assert_eq!(actions(&plan), ["start tor: exited 1 (crashed)"]);
}

// ---------------------------------------------------------------------------
// Properties over random observation sequences

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Obs {
        Missing,
        Created,
        Exited(i64),
        Oom,
        Dead,
        Running(Option<HealthStatus>),
        Paused,
        Restarting,
    }

    #[derive(Debug, Clone)]
    struct AppStep {
        obs: Obs,
        stopped: bool,
        owed: bool,
        new_spec: bool,
    }

    fn obs() -> impl Strategy<Value = Obs> {
        prop_oneof![
            1 => Just(Obs::Missing),
            1 => Just(Obs::Created),
            3 => prop_oneof![Just(0i64), Just(1), Just(137), Just(143)].prop_map(Obs::Exited),
            1 => Just(Obs::Oom),
            1 => Just(Obs::Dead),
            6 => prop_oneof![
                Just(None),
                Just(Some(HealthStatus::Starting)),
                Just(Some(HealthStatus::Healthy)),
                Just(Some(HealthStatus::Unhealthy)),
            ]
            .prop_map(Obs::Running),
            1 => Just(Obs::Paused),
            1 => Just(Obs::Restarting),
        ]
    }

    fn app_step() -> impl Strategy<Value = AppStep> {
        (
            obs(),
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.03),
        )
            .prop_map(|(obs, stopped, owed, new_spec)| AppStep {
                obs,
                stopped,
                owed,
                new_spec,
            })
    }

    /// One tick: what each of the five apps looks like, and how far the
    /// clock moved before it.
    fn tick() -> impl Strategy<Value = (Vec<AppStep>, u64)> {
        (
            prop::collection::vec(app_step(), 5),
            prop_oneof![Just(0u64), 0u64..120_000, 0u64..1_200_000],
        )
    }

    const IDS: [&str; 5] = ["backup", "bitcoind", "electrs", "lnd", "tor"];

    fn apply(w: &mut World, id: &str, step: &AppStep) {
        match step.obs {
            Obs::Missing => w.missing(id),
            Obs::Created => w.status(id, EngineStatus::Created),
            Obs::Exited(code) => w.exited(id, code),
            Obs::Oom => w.oom_killed(id),
            Obs::Dead => w.status(id, EngineStatus::Dead),
            Obs::Running(health) => {
                w.status(id, EngineStatus::Running);
                if let Some(status) = health {
                    w.set_health(id, status, "probe");
                }
            }
            Obs::Paused => w.status(id, EngineStatus::Paused),
            Obs::Restarting => w.status(id, EngineStatus::Restarting),
        }
        w.intent(
            id,
            if step.stopped {
                Intent::Stopped
            } else {
                Intent::Running
            },
        );
        if step.owed {
            w.owed.insert(id.to_string());
        }
        if step.new_spec {
            let next = format!("{}+", w.spec_hashes[id]);
            w.change_spec(id, &next);
        }
    }

    proptest! {
        // 256 cases by default (PROPTEST_CASES to change); shrunk failures
        // are printed, not persisted to a file.
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn supervision_invariants(ticks in prop::collection::vec(tick(), 1..40)) {
            let mut w = World::btc(&[]);
            // Short periods so backoffs, resets and quarantines all happen.
            w.config = SupervisionConfig {
                backoff_initial: secs(10),
                backoff_max: secs(80),
                stable_after: secs(300),
                max_failures: 4,
                failure_window: secs(900),
            };
            // Owed starts planned per app since it was last seen running.
            let mut owed_starts_since_running: BTreeMap<&str, u32> = BTreeMap::new();
            for (steps, advance) in &ticks {
                w.now += advance;
                for (id, step) in IDS.iter().zip(steps) {
                    apply(&mut w, id, step);
                    // A spec change lifts a quarantine and starts afresh.
                    if matches!(step.obs, Obs::Running(_)) || step.new_spec {
                        owed_starts_since_running.remove(id);
                    }
                }
                let quarantined: BTreeSet<String> = IDS
                    .iter()
                    .filter(|id| {
                        w.tracker(id)
                            .quarantine
                            .is_some_and(|q| q.spec_hash == w.spec_hashes[**id])
                    })
                    .map(|id| id.to_string())
                    .collect();
                let before = w.trackers.clone();
                // `tick` checks idempotence and that the wake-up is in the future.
                let plan = w.tick("random");
                let mut acted = BTreeSet::new();
                let mut last_tier = 0;
                for action in &plan.actions {
                    let app = action_app(action);
                    prop_assert_eq!(w.intents[app], Intent::Running, "acted on a stopped app: {:?}", action);
                    prop_assert!(!quarantined.contains(app), "acted on a quarantined app: {:?}", action);
                    prop_assert!(acted.insert(app.to_string()), "two actions for {}", app);
                    prop_assert!(w.tiers[app] >= last_tier, "tier order");
                    last_tier = w.tiers[app];
                    if let SupervisionAction::Start { reason, .. } = action
                        && reason.starts_with("owed start")
                    {
                        let n = owed_starts_since_running.entry(IDS.iter().find(|i| **i == app).unwrap()).or_default();
                        *n += 1;
                        prop_assert!(*n <= 1, "a second uncounted owed start of {} while it never ran", app);
                    }
                }
                for id in IDS {
                    if w.intents[id] == Intent::Stopped {
                        prop_assert_eq!(before.get(id), w.trackers.get(id));
                        prop_assert!(plan.events.iter().all(|e| e.app != id));
                    }
                    let t = w.tracker(id);
                    prop_assert!(t.failures_ms.len() <= w.config.max_failures as usize);
                    // Every backoff (or owed start's grace) has a ceiling.
                    if let Some(next) = t.next_allowed_ms {
                        let from = t.last_restart_ms;
                        prop_assert!(from.is_some_and(|from| next - from <= 80_000), "backoff above its ceiling: {:?}", t);
                    }
                }
                // Quiet steady state: with the trackers applied and nothing
                // executed, planning again reports nothing new.
                let again = w.plan();
                prop_assert!(again.events.is_empty(), "repeated events: {:?}", again.events);
                prop_assert!(again.trackers.is_empty(), "trackers still changing: {:?}", again.trackers);
                // Half the time the executor does its job.
                if advance % 2 == 0 {
                    w.execute(&plan);
                }
            }
        }
    }
}
