//! The reconcile planner of supervision: a pure function of (desired state,
//! observed containers, health history, restart history, user intents,
//! owed starts, now) returning a plan (actions, tracker updates, events and
//! when to look again). It is never told why it runs, so it always compares
//! desired with observed, and running it twice on the same input gives the
//! same plan.
//!
//! Apps are planned in tier order (ties by id), each on its own, with at
//! most one action per app and tick:
//!
//! 1. Intent `Stopped` (or `Gated`: a chain gate keeps it stopped): nothing,
//!    ever; no action, no event, tracker untouched (owed starts and
//!    quarantines of such an app included).
//! 2. Quarantined: nothing while the spec is the one quarantined; a changed
//!    spec lifts the quarantine (tracker reset) and the rules below apply in
//!    the same tick.
//! 3. An app that would be created, started or restarted while a supervised
//!    dependency is unsatisfied (stopped by the user, missing, not running,
//!    or for a `healthy` condition on an app with a health check: not
//!    healthy) waits instead: no action, no failure counted, a `waiting`
//!    note. When the wait ends because the dependencies are back, the
//!    counters are reset and the rules below apply in the same tick.
//! 4. Missing: `Create`; created: `Start`; exited after a supervision stop
//!    (an owed start): `Start`. None of these counts as a failure. A missing
//!    or created container is planned again on every tick until it runs.
//!    An owed start is planned once per incident (`owed_start_ms`) and given
//!    `backoff_initial` to take; if the app is still down after that, the
//!    record is treated as the exit it is: a counted failure (whatever the
//!    restart policy, since the stop was supervision's), so a crash right
//!    after an owed start backs off and can quarantine like any other. A
//!    running app with an owed start gets `ClearOwedStart`.
//! 5. Exited or dead, or running and unhealthy: a failure, unless the restart
//!    policy says to leave it (`no`; `on-failure` after exit 0), which is
//!    noted once. A failure waits out the backoff, then is counted; the
//!    `max_failures`-th failure within `failure_window` quarantines the app,
//!    any earlier one restarts it (`Start` or `Restart`) and doubles the
//!    backoff from `backoff_initial` up to `backoff_max`.
//! 6. Running with no verdict against it (no health check, or healthy):
//!    after `stable_after` of that, the counters are reset.
//! 7. Restarting, paused, removing or an unknown status: left alone.
//!
//! Notes (waiting, restart policy, vanished, created) are emitted as events
//! only when they change (`RestartTracker::last_note`), and trackers are
//! returned only when they changed, so a steady system plans nothing at all
//! and planning again after applying a plan's trackers repeats no event.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::classify::{Classification, EngineStatus, HealthStatus};
use crate::duration::format_duration;
use crate::model::{App, DependsCondition, RestartPolicy};
use crate::observed::ObservedContainer;

/// First restart backoff (Kubernetes' CrashLoopBackOff start).
pub const BACKOFF_INITIAL_S_DEFAULT: u64 = 10;
/// Backoff ceiling.
pub const BACKOFF_MAX_S_DEFAULT: u64 = 300;
/// Healthy this long resets the restart counter.
pub const STABLE_AFTER_S_DEFAULT: u64 = 600;
/// Failures within the window that put an app into crash-loop quarantine.
pub const MAX_FAILURES_DEFAULT: u32 = 10;
/// The window failures are counted in.
pub const FAILURE_WINDOW_S_DEFAULT: u64 = 3600;
/// Log lines kept with a quarantine.
pub const QUARANTINE_LOG_LINES: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisionConfig {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub stable_after: Duration,
    pub max_failures: u32,
    pub failure_window: Duration,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            backoff_initial: Duration::from_secs(BACKOFF_INITIAL_S_DEFAULT),
            backoff_max: Duration::from_secs(BACKOFF_MAX_S_DEFAULT),
            stable_after: Duration::from_secs(STABLE_AFTER_S_DEFAULT),
            max_failures: MAX_FAILURES_DEFAULT,
            failure_window: Duration::from_secs(FAILURE_WINDOW_S_DEFAULT),
        }
    }
}

/// What the user wants for an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    Running,
    /// The user stopped it: supervision never restarts it.
    Stopped,
    /// A chain gate keeps it stopped (held by the sync gate, or rejected by
    /// failover; `gate::AppGate::keeps_stopped`): supervision leaves it
    /// alone exactly as for `Stopped` — no action, no failure counted — and
    /// its dependents wait for it with that reason. The gate starts it.
    Gated,
}

/// A crash-loop quarantine: no more restarts until the user acts or the
/// app's spec changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    pub since_ms: u64,
    pub reason: String,
    pub exit_code: Option<i64>,
    /// Filled by the executor (the planner cannot read logs).
    pub last_logs: Vec<String>,
    /// The spec the quarantine applies to; a different spec lifts it.
    pub spec_hash: String,
}

/// Restart history of one app, persisted by the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartTracker {
    /// Restarts since the last reset.
    pub attempts: u32,
    /// Times of failures inside the window (bounded by max_failures).
    pub failures_ms: Vec<u64>,
    pub last_restart_ms: Option<u64>,
    /// No restart before this time (the backoff).
    pub next_allowed_ms: Option<u64>,
    /// Running and healthy without interruption since.
    pub stable_since_ms: Option<u64>,
    pub quarantine: Option<Quarantine>,
    /// The last "waiting" note emitted, so a repeated wait is quiet.
    pub last_note: Option<String>,
    /// When the planner planned the start an owed-start record asks for;
    /// cleared once the app is seen running or the record is gone. While it
    /// is set, the app not running counts as a failure (see `plan_tick`), so
    /// an owed-start record that outlives its start cannot restart an app
    /// forever without backoff.
    #[serde(default)]
    pub owed_start_ms: Option<u64>,
}

/// One installed app as supervision sees it.
#[derive(Debug, Clone)]
pub struct SupervisedApp<'a> {
    pub app: &'a App,
    pub tier: u32,
    pub intent: Intent,
    pub spec_hash: &'a str,
}

/// berth's own health verdict for a running app with a health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    pub status: HealthStatus,
    pub since_ms: u64,
    pub detail: String,
}

pub struct TickInput<'a> {
    pub apps: Vec<SupervisedApp<'a>>,
    /// Containers by app id (one engine list call).
    pub observed: &'a BTreeMap<String, ObservedContainer>,
    pub health: &'a BTreeMap<String, HealthView>,
    pub trackers: &'a BTreeMap<String, RestartTracker>,
    /// Apps a supervision stop was recorded for whose start did not happen.
    pub owed_starts: &'a BTreeSet<String>,
    pub now_ms: u64,
    pub config: &'a SupervisionConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum SupervisionAction {
    /// The container is missing: create it again (volumes kept).
    Create { app: String, reason: String },
    /// The container exists but does not run (created, exited): start it.
    Start { app: String, reason: String },
    /// Running but unhealthy: stop (owed start recorded first), then start.
    Restart { app: String, reason: String },
    /// Enter crash-loop quarantine; the executor attaches the last logs.
    Quarantine {
        app: String,
        reason: String,
        exit_code: Option<i64>,
    },
    /// An owed start is satisfied (the app runs again).
    ClearOwedStart { app: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEvent {
    pub app: String,
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickPlan {
    /// In tier order (dependencies first).
    pub actions: Vec<SupervisionAction>,
    /// Trackers that changed (the daemon persists them).
    pub trackers: BTreeMap<String, RestartTracker>,
    pub events: Vec<PlanEvent>,
    /// When the planner wants to run again at the latest (a backoff expiring,
    /// a stable period ending); `None` means only the periodic tick.
    pub next_wake_ms: Option<u64>,
}

impl TickPlan {
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty() && self.trackers.is_empty() && self.events.is_empty()
    }
}

/// Plan one reconcile tick. See the module docs for the rules.
///
/// # Panics
/// When two entries of `input.apps` share an id: the daemon builds them from
/// a stack's app map, so a duplicate is a bug in the caller.
pub fn plan_tick(input: &TickInput<'_>) -> TickPlan {
    let by_id: BTreeMap<&str, &SupervisedApp<'_>> = input
        .apps
        .iter()
        .map(|sup| (sup.app.id.as_str(), sup))
        .collect();
    assert_eq!(
        by_id.len(),
        input.apps.len(),
        "supervision input lists an app id twice"
    );
    let mut order: Vec<&SupervisedApp<'_>> = input.apps.iter().collect();
    order.sort_by(|a, b| a.tier.cmp(&b.tier).then_with(|| a.app.id.cmp(&b.app.id)));

    let mut plan = TickPlan::default();
    // Trackers as this tick leaves them, for the apps planned so far. A
    // dependency (lower tier) is planned before its dependents, so they see
    // its quarantine as of the end of this tick, not as of its start; their
    // notes then do not change again on the next tick.
    let mut planned: BTreeMap<&str, RestartTracker> = BTreeMap::new();
    for sup in order {
        let id = sup.app.id.as_str();
        let before = input.trackers.get(id);
        let step = plan_app(input, &by_id, &planned, sup);
        let unchanged = match before {
            Some(before) => *before == step.tracker,
            None => step.tracker == RestartTracker::default(),
        };
        if !unchanged {
            plan.trackers.insert(id.to_string(), step.tracker.clone());
        }
        planned.insert(id, step.tracker);
        plan.actions.extend(step.action);
        plan.events.extend(step.events);
        if let Some(at) = step.wake {
            debug_assert!(at > input.now_ms, "a wake-up is always in the future");
            plan.next_wake_ms = Some(plan.next_wake_ms.map_or(at, |w| w.min(at)));
        }
    }
    plan
}

/// What one app's tick decided. At most one action per app and tick, so the
/// executor never has to order two actions on the same container.
struct AppStep {
    tracker: RestartTracker,
    action: Option<SupervisionAction>,
    events: Vec<PlanEvent>,
    wake: Option<u64>,
}

impl AppStep {
    fn event(&mut self, app: &str, kind: &str, message: String) {
        self.events.push(PlanEvent {
            app: app.to_string(),
            kind: kind.to_string(),
            message,
        });
    }

    /// Record the app's standing note. The event is emitted only when the
    /// note differs from the last one, so a situation that persists over
    /// many ticks is reported once.
    fn note(&mut self, app: &str, note: Option<(&str, String)>) {
        match note {
            None => self.tracker.last_note = None,
            Some((kind, message)) => {
                if self.tracker.last_note.as_deref() != Some(message.as_str()) {
                    self.event(app, kind, message.clone());
                    self.tracker.last_note = Some(message);
                }
            }
        }
    }

    fn wake_at(&mut self, at: u64) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    fn reset_counters(&mut self) {
        self.tracker.attempts = 0;
        self.tracker.failures_ms.clear();
        self.tracker.next_allowed_ms = None;
    }
}

/// What an app's own state asks for, before its dependencies are considered.
enum Need {
    /// A state supervision does not touch (restarting, paused, removing, a
    /// status word berth does not know): no action, tracker untouched.
    LeaveAlone,
    /// Running with no verdict against it. `healthy` is false while a health
    /// check has no verdict yet (start period).
    Running { healthy: bool },
    /// Not running, and the restart policy says to leave it so: reported once.
    PolicyNote(String),
    /// The first start paying an owed-start record: not counted.
    OwedStart,
    /// An action that is not a failure (vanished, created): no backoff, no
    /// counting. The message is reported once per incident.
    Uncounted {
        action: SupervisionAction,
        kind: &'static str,
        message: String,
    },
    /// A failure: counted, restarted with backoff, or quarantined.
    Failure {
        /// `true`: the container runs (unhealthy) and needs stop + start.
        restart: bool,
        cause: String,
        exit_code: Option<i64>,
    },
}

const REASON_VANISHED: &str = "container vanished";
const REASON_CREATED: &str = "container was created but never started";
const REASON_OWED: &str = "owed start: a supervision stop was not followed by its start";

fn plan_app(
    input: &TickInput<'_>,
    by_id: &BTreeMap<&str, &SupervisedApp<'_>>,
    planned: &BTreeMap<&str, RestartTracker>,
    sup: &SupervisedApp<'_>,
) -> AppStep {
    let id = sup.app.id.as_str();
    let now = input.now_ms;
    let mut step = AppStep {
        tracker: input.trackers.get(id).cloned().unwrap_or_default(),
        action: None,
        events: Vec::new(),
        wake: None,
    };
    // The user's stop outranks everything, owed starts and lifted
    // quarantines included: the daemon persists the intent, so this holds
    // across its restarts.
    if matches!(sup.intent, Intent::Stopped | Intent::Gated) {
        return step;
    }
    if let Some(q) = &step.tracker.quarantine {
        if q.spec_hash == sup.spec_hash {
            return step;
        }
        step.tracker = RestartTracker::default();
        step.event(
            id,
            "quarantine-lifted",
            format!("quarantine of {id} lifted: spec changed"),
        );
    }

    let observed = input.observed.get(id);
    let owed = input.owed_starts.contains(id);
    let need = assess(input, sup, &step.tracker, observed, owed);
    if matches!(need, Need::LeaveAlone) {
        return step;
    }

    let blockers = blockers(input, by_id, planned, sup);
    let wants_to_act = matches!(
        need,
        Need::OwedStart | Need::Uncounted { .. } | Need::Failure { .. }
    );
    if wants_to_act && !blockers.is_empty() {
        // Failure counting pauses while a dependency is down: the app's
        // trouble is most likely its dependency's.
        step.tracker.stable_since_ms = None;
        step.note(
            id,
            Some(("waiting", format!("{id} waits for {}", blockers.join("; ")))),
        );
    } else {
        let was_waiting = step
            .tracker
            .last_note
            .as_deref()
            .is_some_and(|note| is_wait_note(id, note));
        if was_waiting {
            step.tracker.last_note = None;
            // A wait can also end because the app no longer needs anything
            // (it was started by hand); only a dependency that came back
            // resets the counters: failures while it was gone were most
            // likely its fault. Clean counters make no event.
            let counted = step.tracker.attempts > 0 || !step.tracker.failures_ms.is_empty();
            if blockers.is_empty() && counted {
                step.reset_counters();
                step.event(
                    id,
                    "counter-reset",
                    format!("counters of {id} reset: dependency recovered"),
                );
            }
        }
        match need {
            Need::LeaveAlone => unreachable!("handled above"),
            Need::Running { healthy: false } => {
                step.tracker.stable_since_ms = None;
                step.note(id, None);
            }
            Need::Running { healthy: true } => {
                step.note(id, None);
                track_stable(&mut step, sup, input.config, now);
            }
            Need::PolicyNote(message) => {
                step.tracker.stable_since_ms = None;
                step.note(id, Some(("not-restarted", message)));
            }
            Need::OwedStart => {
                step.tracker.stable_since_ms = None;
                step.note(id, None);
                step.tracker.owed_start_ms = Some(now);
                step.tracker.last_restart_ms = Some(now);
                // Time for the start to take before the app being down
                // counts as a failure; planning again in the meantime is
                // quiet.
                let grace_until = now.saturating_add(millis(input.config.backoff_initial));
                step.tracker.next_allowed_ms = Some(
                    step.tracker
                        .next_allowed_ms
                        .map_or(grace_until, |at| at.max(grace_until)),
                );
                step.event(id, "started", format!("started {id}: {REASON_OWED}"));
                step.action = Some(SupervisionAction::Start {
                    app: id.to_string(),
                    reason: REASON_OWED.to_string(),
                });
            }
            Need::Uncounted {
                action,
                kind,
                message,
            } => {
                step.tracker.stable_since_ms = None;
                step.note(id, Some((kind, message)));
                step.action = Some(action);
            }
            Need::Failure {
                restart,
                cause,
                exit_code,
            } => count_failure(&mut step, sup, input.config, now, restart, cause, exit_code),
        }
    }

    let running = observed.is_some_and(|c| c.status == EngineStatus::Running);
    if running || !owed {
        step.tracker.owed_start_ms = None;
    }
    if running && owed && step.action.is_none() {
        step.action = Some(SupervisionAction::ClearOwedStart {
            app: id.to_string(),
        });
    }
    step
}

fn assess(
    input: &TickInput<'_>,
    sup: &SupervisedApp<'_>,
    tracker: &RestartTracker,
    observed: Option<&ObservedContainer>,
    owed: bool,
) -> Need {
    let id = sup.app.id.as_str();
    let start = |kind: &'static str, reason: &str| Need::Uncounted {
        action: SupervisionAction::Start {
            app: id.to_string(),
            reason: reason.to_string(),
        },
        kind,
        message: format!("started {id}: {reason}"),
    };
    let Some(container) = observed else {
        // Recreated at once and not counted: nothing crashed, the container
        // was removed behind berth's back. Its volumes are still there.
        return Need::Uncounted {
            action: SupervisionAction::Create {
                app: id.to_string(),
                reason: REASON_VANISHED.to_string(),
            },
            kind: "recreated",
            message: format!("recreated {id}: {REASON_VANISHED}"),
        };
    };
    match container.status {
        // Even with an owed start: this container never ran, so it was not
        // the one supervision stopped.
        EngineStatus::Created => start("started", REASON_CREATED),
        // Supervision itself stopped it: not a failure of the app, once.
        EngineStatus::Exited | EngineStatus::Dead if owed && tracker.owed_start_ms.is_none() => {
            Need::OwedStart
        }
        // The owed start was planned and the app is down again: a failure,
        // restarted whatever the policy says (the stop was supervision's).
        EngineStatus::Exited | EngineStatus::Dead if owed => Need::Failure {
            restart: false,
            cause: describe_exit(container),
            exit_code: container.exit_code,
        },
        EngineStatus::Exited | EngineStatus::Dead => {
            let cause = describe_exit(container);
            let clean =
                container.status == EngineStatus::Exited && container.exit_code.unwrap_or(0) == 0;
            match sup.app.restart {
                RestartPolicy::No => {
                    Need::PolicyNote(format!("{id} {cause}; restart policy no: not restarting"))
                }
                RestartPolicy::OnFailure if clean => Need::PolicyNote(format!(
                    "{id} {cause}; restart policy on-failure: not restarting"
                )),
                RestartPolicy::OnFailure | RestartPolicy::Always => Need::Failure {
                    restart: false,
                    cause,
                    exit_code: container.exit_code,
                },
            }
        }
        EngineStatus::Running => {
            if sup.app.health.is_none() {
                return Need::Running { healthy: true };
            }
            match input.health.get(id) {
                None => Need::Running { healthy: false },
                Some(view) => match view.status {
                    HealthStatus::Starting => Need::Running { healthy: false },
                    HealthStatus::Healthy => Need::Running { healthy: true },
                    HealthStatus::Unhealthy => {
                        let cause = if view.detail.is_empty() {
                            "unhealthy".to_string()
                        } else {
                            format!("unhealthy: {}", view.detail)
                        };
                        if sup.app.restart == RestartPolicy::No {
                            Need::PolicyNote(format!(
                                "{id} is {cause}; restart policy no: not restarting"
                            ))
                        } else {
                            Need::Failure {
                                restart: true,
                                cause,
                                exit_code: None,
                            }
                        }
                    }
                },
            }
        }
        EngineStatus::Restarting
        | EngineStatus::Paused
        | EngineStatus::Removing
        | EngineStatus::Unknown => Need::LeaveAlone,
    }
}

/// Why each unsatisfied dependency of `sup` is not satisfied, as
/// `"bitcoind: unhealthy"`, in dependency id order. Dependencies that are not
/// supervised (not installed) are ignored.
fn blockers(
    input: &TickInput<'_>,
    by_id: &BTreeMap<&str, &SupervisedApp<'_>>,
    planned: &BTreeMap<&str, RestartTracker>,
    sup: &SupervisedApp<'_>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (dep_id, condition) in &sup.app.depends_on {
        let Some(dep) = by_id.get(dep_id.as_str()) else {
            continue;
        };
        let why = if dep.intent == Intent::Stopped {
            Some("stopped by the user".to_string())
        } else if dep.intent == Intent::Gated {
            Some("kept stopped by its gate".to_string())
        } else {
            match input.observed.get(dep_id) {
                None => Some("missing".to_string()),
                Some(c) if c.status != EngineStatus::Running => {
                    let quarantined = planned
                        .get(dep_id.as_str())
                        .or_else(|| input.trackers.get(dep_id))
                        .and_then(|t| t.quarantine.as_ref())
                        .is_some_and(|q| q.spec_hash == dep.spec_hash);
                    Some(if quarantined {
                        "quarantined".to_string()
                    } else {
                        describe_state(c)
                    })
                }
                // Running. A `healthy` condition on an app without a health
                // check is satisfied by running, as for the app itself.
                Some(_) if *condition == DependsCondition::Healthy && dep.app.health.is_some() => {
                    match input.health.get(dep_id).map(|v| v.status) {
                        Some(HealthStatus::Healthy) => None,
                        Some(HealthStatus::Unhealthy) => Some("unhealthy".to_string()),
                        Some(HealthStatus::Starting) | None => Some("starting".to_string()),
                    }
                }
                Some(_) => None,
            }
        };
        if let Some(why) = why {
            out.push(format!("{dep_id}: {why}"));
        }
    }
    out
}

fn is_wait_note(id: &str, note: &str) -> bool {
    note.strip_prefix(id)
        .is_some_and(|rest| rest.starts_with(" waits for "))
}

fn track_stable(step: &mut AppStep, sup: &SupervisedApp<'_>, config: &SupervisionConfig, now: u64) {
    // A start time in the future means the wall clock stepped back; start
    // the stable period over rather than wait for a time that moved away.
    let since = match step.tracker.stable_since_ms {
        Some(since) if since <= now => since,
        _ => {
            step.tracker.stable_since_ms = Some(now);
            now
        }
    };
    if step.tracker.attempts == 0 && step.tracker.failures_ms.is_empty() {
        return;
    }
    let stable_at = since.saturating_add(millis(config.stable_after));
    if now >= stable_at {
        step.reset_counters();
        let state = if sup.app.health.is_some() {
            "healthy"
        } else {
            "running"
        };
        let id = sup.app.id.as_str();
        step.event(
            id,
            "counter-reset",
            format!(
                "counters of {id} reset: {state} for {}",
                format_duration(config.stable_after)
            ),
        );
    } else {
        step.wake_at(stable_at);
    }
}

fn count_failure(
    step: &mut AppStep,
    sup: &SupervisedApp<'_>,
    config: &SupervisionConfig,
    now: u64,
    restart: bool,
    cause: String,
    exit_code: Option<i64>,
) {
    let id = sup.app.id.as_str();
    step.tracker.stable_since_ms = None;
    step.note(id, None);
    if let Some(at) = step.tracker.next_allowed_ms
        && at > now
    {
        // A backoff beyond the ceiling can only come from the wall clock
        // stepping back (or a lowered ceiling): treat it as expired rather
        // than leave the app down for however far the clock moved.
        if at - now <= millis(config.backoff_max) {
            step.wake_at(at);
            return;
        }
    }

    let window_ms = millis(config.failure_window);
    let max_failures = config.max_failures.max(1);
    let failures = &mut step.tracker.failures_ms;
    failures.retain(|&at| now.saturating_sub(at) < window_ms);
    failures.push(now);
    let excess = failures.len().saturating_sub(max_failures as usize);
    failures.drain(..excess);

    if failures.len() >= max_failures as usize {
        let reason = format!(
            "crash loop: {} failures in {}; last: {cause}",
            failures.len(),
            format_duration(config.failure_window)
        );
        step.tracker.quarantine = Some(Quarantine {
            since_ms: now,
            reason: reason.clone(),
            exit_code,
            last_logs: Vec::new(),
            spec_hash: sup.spec_hash.to_string(),
        });
        step.event(id, "quarantined", format!("quarantined {id}: {reason}"));
        step.action = Some(SupervisionAction::Quarantine {
            app: id.to_string(),
            reason,
            exit_code,
        });
        return;
    }

    step.tracker.attempts = step.tracker.attempts.saturating_add(1);
    step.tracker.last_restart_ms = Some(now);
    let delay = backoff_delay(config, step.tracker.attempts);
    step.tracker.next_allowed_ms = Some(now.saturating_add(millis(delay)));
    step.event(
        id,
        "restarted",
        format!(
            "restarted {id}: {cause}, attempt {}/{max_failures}, next backoff {}",
            step.tracker.attempts,
            format_duration(delay)
        ),
    );
    step.action = Some(if restart {
        SupervisionAction::Restart {
            app: id.to_string(),
            reason: cause,
        }
    } else {
        SupervisionAction::Start {
            app: id.to_string(),
            reason: cause,
        }
    });
}

/// The wait after restart number `attempts` (1-based) before the next one:
/// `backoff_initial * 2^(attempts-1)`, capped at `backoff_max`.
fn backoff_delay(config: &SupervisionConfig, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1);
    2u32.checked_pow(doublings)
        .and_then(|factor| config.backoff_initial.checked_mul(factor))
        .map_or(config.backoff_max, |d| d.min(config.backoff_max))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How a container stopped, in the words of the event log:
/// `exited 1 (crashed)`, `killed (137)`, `killed (OOM)`, `exited 0`.
fn describe_exit(c: &ObservedContainer) -> String {
    match c.classify(None) {
        Classification::Crashed { exit_code } => format!("exited {exit_code} (crashed)"),
        Classification::Killed => "killed (137)".to_string(),
        Classification::KilledOom => "killed (OOM)".to_string(),
        Classification::Stopped => "exited 0".to_string(),
        Classification::Dead => match c.exit_code {
            Some(code) => format!("dead (exit {code})"),
            None => "dead".to_string(),
        },
        other => other.to_string(),
    }
}

/// A dependency's state when it is not running.
fn describe_state(c: &ObservedContainer) -> String {
    match c.status {
        EngineStatus::Exited | EngineStatus::Dead => describe_exit(c),
        _ => c.classify(None).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_initial_delay_up_to_the_ceiling() {
        let config = SupervisionConfig::default();
        let secs: Vec<u64> = (1..=9)
            .map(|n| backoff_delay(&config, n).as_secs())
            .collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300, 300, 300]);
        assert_eq!(backoff_delay(&config, u32::MAX), config.backoff_max);
        assert_eq!(backoff_delay(&config, 0), config.backoff_initial);
    }

    #[test]
    fn wait_notes_are_recognised_by_app() {
        assert!(is_wait_note("lnd", "lnd waits for bitcoind: unhealthy"));
        assert!(!is_wait_note("ln", "lnd waits for bitcoind: unhealthy"));
        assert!(!is_wait_note(
            "lnd",
            "lnd exited 0; restart policy no: not restarting"
        ));
    }
}
