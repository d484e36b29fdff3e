//! Chain-aware gates: the sync gate and node failover, as pure functions.
//!
//! A *node* is an app with a `probe` (bitcoind, monerod, ...); a *gated*
//! app names nodes in its `gate`. Each tick the daemon probes the nodes
//! (`berth-probe::chain`), hands the results to [`plan_gates`] together with
//! the persisted state, executes the returned actions, and reports the
//! engine's verdicts back through [`settle`] (or [`apply_result`] and
//! [`latch_after`]) to get the state it persists.
//!
//! The rules, each tested in `tests/gates.rs`:
//! - **Node health** ([`NodeTracker`]): a node is *down* only after being
//!   unreachable without interruption for `down_after`, and only if it was
//!   ever reachable since berth started watching it; it is *healthy* again
//!   after being reachable without interruption for `recovery_after`. A busy
//!   node (answers, but not OK) is unreachable: the probe decides that.
//! - **Sync gate**: until its one-way latch is set, an app is *held* while
//!   any required node (`wait_for`) is not synced: kept stopped, and stopped
//!   again if something starts it. The note is an event once, then quiet.
//!   When every required node is synced the held apps are started in tier
//!   order, and the latch is set only when every one of those starts
//!   succeeded; a partial failure retries on the next tick. The latch is
//!   re-armed only by [`reset`].
//! - **Failover** (after the latch only): an app is *rejected* (stopped)
//!   while any `reject_when_down` node is down, and *readmitted* when every
//!   one of them is healthy again. The `rejected` flag flips only when the
//!   engine call succeeded; a failed call is planned again next tick.
//! - Optional nodes never block and are never acted on; they appear as
//!   passive badges.
//!
//! No IO, no clock: `now_ms` (milliseconds since the Unix epoch, UTC) is an
//! input, and times shown to users are formatted from it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::format_duration;
use crate::model::{DOWN_AFTER_S_DEFAULT, GateSpec, ProbeSpec, RECOVERY_AFTER_S_DEFAULT, Stack};

const DAY_MS: u64 = 24 * 3600 * 1000;

// ---------------------------------------------------------------------------
// Chain state: what one probe saw
// ---------------------------------------------------------------------------

/// The chain state of a node, as one probe read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainState {
    /// It answered, and said it is OK. A node that answers "busy", "warming
    /// up" or HTTP 5xx is not reachable.
    pub reachable: bool,
    /// Reachable, not syncing, and its own "synchronized" flag (where it has
    /// one) is set.
    pub synced: bool,
    /// Reachable and catching up with the chain.
    pub syncing: bool,
    /// Its height (blocks).
    pub current: Option<u64>,
    /// The height it syncs toward (headers, target height), when known.
    pub target: Option<u64>,
    /// Progress, 0–100.
    pub percent: Option<f64>,
    /// One line for people: why unreachable, or what it reported.
    pub detail: String,
    /// The node's own fields, for display only (never credentials).
    pub raw: serde_json::Value,
}

impl ChainState {
    /// A node that could not be reached, or answered not-OK.
    pub fn unreachable(detail: impl Into<String>) -> ChainState {
        ChainState {
            reachable: false,
            synced: false,
            syncing: false,
            current: None,
            target: None,
            percent: None,
            detail: detail.into(),
            raw: serde_json::Value::Null,
        }
    }

    /// Reachable and synced, with nothing more to say (HTTP and TCP probes).
    pub fn up(detail: impl Into<String>) -> ChainState {
        ChainState {
            reachable: true,
            synced: true,
            syncing: false,
            current: None,
            target: None,
            percent: None,
            detail: detail.into(),
            raw: serde_json::Value::Null,
        }
    }

    /// A short summary: `unreachable`, `synced`, `syncing 43%,
    /// 812345/850000`, `not synced, height 1`.
    pub fn summary(&self) -> String {
        if !self.reachable {
            return "unreachable".to_string();
        }
        if self.synced {
            return match self.current {
                Some(h) => format!("synced at {h}"),
                None => "synced".to_string(),
            };
        }
        let mut parts = Vec::new();
        let head = if self.syncing {
            "syncing"
        } else {
            "not synced"
        };
        match self.percent {
            Some(p) if self.syncing => parts.push(format!("{head} {}%", percent_floor(p))),
            _ => parts.push(head.to_string()),
        }
        match (self.current, self.target) {
            (Some(c), Some(t)) => parts.push(format!("{c}/{t}")),
            (Some(c), None) => parts.push(format!("height {c}")),
            _ => {}
        }
        parts.join(", ")
    }
}

/// A percentage as a whole number, rounded down so a node at 99.99% does
/// not read "100%" while it still syncs.
fn percent_floor(p: f64) -> u64 {
    if p.is_finite() {
        p.clamp(0.0, 100.0).floor() as u64
    } else {
        0
    }
}

// ---------------------------------------------------------------------------
// Node health: debounce and hysteresis
// ---------------------------------------------------------------------------

/// The timing of a node's down/healthy verdicts (from its probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTiming {
    pub down_after: Duration,
    pub recovery_after: Duration,
}

impl NodeTiming {
    pub fn of(probe: &ProbeSpec) -> NodeTiming {
        NodeTiming {
            down_after: probe.down_after,
            recovery_after: probe.recovery_after,
        }
    }
}

impl Default for NodeTiming {
    fn default() -> Self {
        NodeTiming {
            down_after: Duration::from_secs(DOWN_AFTER_S_DEFAULT),
            recovery_after: Duration::from_secs(RECOVERY_AFTER_S_DEFAULT),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A change of a node's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeTransition {
    WentDown,
    Recovered,
}

/// What berth knows about one node's health, persisted by the daemon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeTracker {
    /// Reachable at least once since berth started watching it. A node that
    /// never was is never "down" (no false rejection of a node that was
    /// never there).
    pub ever_reachable: bool,
    /// Unreachable without interruption since (cleared by a reachable probe).
    pub unreachable_since_ms: Option<u64>,
    /// Reachable without interruption since (cleared by an unreachable probe).
    pub reachable_since_ms: Option<u64>,
    pub down: bool,
    /// When the outage that made it down began.
    pub down_since_ms: Option<u64>,
    /// The latest probe result (the sync gate reads it; also for display).
    pub last: Option<ChainState>,
    pub last_ms: Option<u64>,
}

impl NodeTracker {
    /// Record one probe result.
    pub fn observe(
        &mut self,
        state: &ChainState,
        now_ms: u64,
        timing: &NodeTiming,
    ) -> Option<NodeTransition> {
        self.last = Some(state.clone());
        self.last_ms = Some(now_ms);
        if state.reachable {
            self.ever_reachable = true;
            self.unreachable_since_ms = None;
            let since = *self.reachable_since_ms.get_or_insert(now_ms);
            if self.down && now_ms.saturating_sub(since) >= ms(timing.recovery_after) {
                self.down = false;
                self.down_since_ms = None;
                return Some(NodeTransition::Recovered);
            }
        } else {
            self.reachable_since_ms = None;
            let since = *self.unreachable_since_ms.get_or_insert(now_ms);
            if !self.down
                && self.ever_reachable
                && now_ms.saturating_sub(since) >= ms(timing.down_after)
            {
                self.down = true;
                self.down_since_ms = Some(since);
                return Some(NodeTransition::WentDown);
            }
        }
        None
    }

    /// The latest probe says synced.
    pub fn is_synced(&self) -> bool {
        self.last.as_ref().is_some_and(|s| s.synced)
    }

    /// Nothing about this node stands in the way of readmitting an app it
    /// rejected: observed since berth (re)started, not down, and — if it
    /// was ever reachable — reachable without interruption for
    /// `recovery_after`. A node never seen reachable cannot reject, so it
    /// does not hold a readmission up either.
    pub fn allows_readmit(&self, now_ms: u64, timing: &NodeTiming) -> bool {
        self.last.is_some()
            && !self.down
            && (!self.ever_reachable
                || self
                    .reachable_since_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) >= ms(timing.recovery_after)))
    }

    /// The tracker as a restarted daemon must use it: the verdict (`down`,
    /// `ever_reachable`) survives, but continuity does not — berth did not
    /// watch while it was away — and neither does the last observation
    /// (the sync gate must not release on a stale "synced").
    pub fn restored(self) -> NodeTracker {
        NodeTracker {
            unreachable_since_ms: None,
            reachable_since_ms: None,
            last: None,
            last_ms: None,
            ..self
        }
    }

    /// The next time this node's verdict can change by itself (if probes
    /// keep saying the same), after `now_ms`: going down, or recovering.
    pub fn next_change_ms(&self, now_ms: u64, timing: &NodeTiming) -> Option<u64> {
        let at = match (
            self.down,
            self.unreachable_since_ms,
            self.reachable_since_ms,
        ) {
            (false, Some(t), _) if self.ever_reachable => t.saturating_add(ms(timing.down_after)),
            (true, _, Some(t)) => t.saturating_add(ms(timing.recovery_after)),
            _ => return None,
        };
        (at > now_ms).then_some(at)
    }

    fn describe(&self) -> String {
        match &self.last {
            Some(state) => state.summary(),
            None => "not probed yet".to_string(),
        }
    }
}

// ---------------------------------------------------------------------------
// Gate state, input and plan
// ---------------------------------------------------------------------------

/// The persisted gate state of one gated app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GateState {
    /// The one-way latch: the sync gate released this app once. Re-armed
    /// only by [`reset`].
    pub latched: bool,
    /// The hold note last emitted as an event (which nodes it waits for),
    /// so a continuing hold is quiet.
    pub held_note: Option<String>,
    /// Stopped by failover (set only once the stop succeeded, or when it
    /// was already stopped).
    pub rejected: bool,
    pub rejected_since_ms: Option<u64>,
}

/// Re-arm the sync gate (`berth gate reset APP`, a restore onto other
/// hardware): held again until its nodes are synced; failover restarts
/// from scratch with it.
pub fn reset(state: &mut GateState) {
    *state = GateState::default();
}

/// One installed app with a gate.
#[derive(Debug, Clone)]
pub struct GatedApp<'a> {
    pub id: &'a str,
    pub gate: &'a GateSpec,
    /// Its dependency tier (`graph::tiers`): releases start in tier order,
    /// stops go the other way.
    pub tier: u32,
    /// The user wants it running (a user stop is never undone by a gate).
    pub wants_running: bool,
    /// Its container runs now.
    pub running: bool,
}

/// One node the gates name.
#[derive(Debug, Clone)]
pub struct NodeInput<'a> {
    pub timing: NodeTiming,
    /// A probe result taken since the last plan; `None` when the node was
    /// not probed (the tracker keeps its last result).
    pub observation: Option<&'a ChainState>,
}

pub struct GateInput<'a> {
    pub apps: Vec<GatedApp<'a>>,
    /// Nodes by app id. A node a gate names but missing here counts as not
    /// probed yet, with default timing.
    pub nodes: BTreeMap<String, NodeInput<'a>>,
    pub trackers: &'a BTreeMap<String, NodeTracker>,
    pub gates: &'a BTreeMap<String, GateState>,
    pub now_ms: u64,
}

/// What a gate wants done to an app's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum GateAction {
    /// Stop: held by the sync gate (it was started while held).
    Hold { app: String, reason: String },
    /// Start: the sync gate released it.
    Release { app: String, reason: String },
    /// Stop: a node it must not run without is down.
    Reject { app: String, reason: String },
    /// Start: every node that rejected it is healthy again.
    Readmit { app: String, reason: String },
}

impl GateAction {
    pub fn app(&self) -> &str {
        match self {
            GateAction::Hold { app, .. }
            | GateAction::Release { app, .. }
            | GateAction::Reject { app, .. }
            | GateAction::Readmit { app, .. } => app,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            GateAction::Hold { reason, .. }
            | GateAction::Release { reason, .. }
            | GateAction::Reject { reason, .. }
            | GateAction::Readmit { reason, .. } => reason,
        }
    }

    /// A start (release, readmit); otherwise a stop.
    pub fn is_start(&self) -> bool {
        matches!(
            self,
            GateAction::Release { .. } | GateAction::Readmit { .. }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateStatus {
    /// Kept stopped by the sync gate.
    Held,
    /// The gate lets it run (latched, or being released now).
    Released,
    /// Kept stopped by failover.
    Rejected,
}

/// An app's gate verdict for `status`, the API and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppGate {
    pub status: GateStatus,
    /// `held: waiting for bitcoind (syncing 43%, 812345/850000)`,
    /// `rejected: monerod down since 12:03:10`; `None` when released.
    pub reason: Option<String>,
    /// Optional nodes: `tor-node: syncing 12%`, `tari: down since
    /// 12:03:10 (ignored)`.
    pub badges: Vec<String>,
}

impl AppGate {
    /// Stopped on purpose: supervision must not start it, and `status`
    /// counts its being stopped as intentional.
    pub fn keeps_stopped(&self) -> bool {
        matches!(self.status, GateStatus::Held | GateStatus::Rejected)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateEvent {
    /// The gated app, or the node for `node-down` / `node-recovered`.
    pub app: String,
    /// `held`, `released`, `rejected`, `readmitted`, `node-down`,
    /// `node-recovered`.
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatePlan {
    /// Stops first (dependents before what they depend on), then starts in
    /// tier order.
    pub actions: Vec<GateAction>,
    /// Apps whose latch [`latch_after`] sets if every one of their
    /// `Release` starts succeeded.
    pub release: Vec<String>,
    /// Every gated app's verdict.
    pub apps: BTreeMap<String, AppGate>,
    /// Every node tracker after this tick's observations (persist them).
    pub trackers: BTreeMap<String, NodeTracker>,
    /// Every gate state, before the engine's verdicts on `actions`: persist
    /// what [`settle`] returns.
    pub gates: BTreeMap<String, GateState>,
    pub events: Vec<GateEvent>,
    /// When a node's verdict can next change by itself: probe (and plan)
    /// again then at the latest.
    pub next_wake_ms: Option<u64>,
}

// ---------------------------------------------------------------------------
// The planner
// ---------------------------------------------------------------------------

/// Plan one gate tick. See the module docs.
pub fn plan_gates(input: &GateInput<'_>) -> GatePlan {
    let now = input.now_ms;
    let mut plan = GatePlan {
        trackers: input.trackers.clone(),
        gates: input.gates.clone(),
        ..GatePlan::default()
    };

    // Every node any gate names, plus every node given.
    let mut names: BTreeSet<String> = input.nodes.keys().cloned().collect();
    for app in &input.apps {
        names.extend(app.gate.nodes().into_iter().map(str::to_string));
    }
    let timing: BTreeMap<String, NodeTiming> = names
        .iter()
        .map(|n| {
            let t = input.nodes.get(n).map(|i| i.timing).unwrap_or_default();
            (n.clone(), t)
        })
        .collect();

    // 1. This tick's observations.
    for (name, node) in &input.nodes {
        let Some(obs) = node.observation else {
            continue;
        };
        let tracker = plan.trackers.entry(name.clone()).or_default();
        match tracker.observe(obs, now, &node.timing) {
            Some(NodeTransition::WentDown) => {
                let since = tracker.down_since_ms.unwrap_or(now);
                plan.events.push(GateEvent {
                    app: name.clone(),
                    kind: "node-down".into(),
                    message: format!(
                        "{name} down since {} (unreachable for {}: {})",
                        format_since(since, now),
                        format_duration(Duration::from_millis(now.saturating_sub(since))),
                        obs.detail
                    ),
                });
            }
            Some(NodeTransition::Recovered) => plan.events.push(GateEvent {
                app: name.clone(),
                kind: "node-recovered".into(),
                message: format!(
                    "{name} healthy again (reachable for {})",
                    format_duration(node.timing.recovery_after)
                ),
            }),
            None => {}
        }
    }
    let empty = NodeTracker::default();
    let trackers = plan.trackers.clone();
    let tracker = |n: &str| trackers.get(n).unwrap_or(&empty);
    let timing_of = |n: &str| timing.get(n).copied().unwrap_or_default();

    // 2. Each gated app, in tier order.
    let mut apps: Vec<&GatedApp<'_>> = input.apps.iter().collect();
    apps.sort_by_key(|a| (a.tier, a.id));
    let mut stops: Vec<(u32, GateAction)> = Vec::new();
    let mut starts: Vec<(u32, GateAction)> = Vec::new();
    for app in apps {
        let id = app.id.to_string();
        let gate = app.gate;
        let state = plan.gates.entry(id.clone()).or_default();
        let badges = badges(gate, &tracker, now);
        let verdict = |status: GateStatus, reason: Option<String>| AppGate {
            status,
            reason,
            badges: badges.clone(),
        };

        if !state.latched {
            // The sync gate.
            let waiting: Vec<&String> = gate
                .wait_for
                .iter()
                .filter(|n| !tracker(n).is_synced())
                .collect();
            if !waiting.is_empty() {
                let detail: Vec<String> = waiting
                    .iter()
                    .map(|n| format!("{n} ({})", tracker(n).describe()))
                    .collect();
                let reason = format!("held: waiting for {}", detail.join(", "));
                let note = format!(
                    "held: waiting for {}",
                    waiting
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if state.held_note.as_deref() != Some(note.as_str()) {
                    plan.events.push(GateEvent {
                        app: id.clone(),
                        kind: "held".into(),
                        message: reason.clone(),
                    });
                    state.held_note = Some(note);
                }
                if app.running {
                    stops.push((
                        app.tier,
                        GateAction::Hold {
                            app: id.clone(),
                            reason: reason.clone(),
                        },
                    ));
                }
                plan.apps
                    .insert(id, verdict(GateStatus::Held, Some(reason)));
                continue;
            }
            let why = if gate.wait_for.is_empty() {
                "released: it waits for no required node".to_string()
            } else {
                format!("released: {} synced", gate.wait_for.join(", "))
            };
            if app.wants_running && !app.running {
                plan.events.push(GateEvent {
                    app: id.clone(),
                    kind: "released".into(),
                    message: format!("{why}; starting {id}"),
                });
                starts.push((
                    app.tier,
                    GateAction::Release {
                        app: id.clone(),
                        reason: why,
                    },
                ));
                plan.release.push(id.clone());
            } else {
                // Nothing to start: latch now.
                plan.events.push(GateEvent {
                    app: id.clone(),
                    kind: "released".into(),
                    message: why,
                });
                state.latched = true;
                state.held_note = None;
            }
            plan.apps.insert(id, verdict(GateStatus::Released, None));
            continue;
        }

        // Failover, after the release only.
        if !state.rejected {
            let down: Vec<&String> = gate
                .reject_when_down
                .iter()
                .filter(|n| tracker(n).down)
                .collect();
            if down.is_empty() {
                plan.apps.insert(id, verdict(GateStatus::Released, None));
                continue;
            }
            let detail: Vec<String> = down
                .iter()
                .map(|n| {
                    let since = tracker(n).down_since_ms.unwrap_or(now);
                    format!("{n} down since {}", format_since(since, now))
                })
                .collect();
            let reason = format!("rejected: {}", detail.join(", "));
            if app.running {
                plan.events.push(GateEvent {
                    app: id.clone(),
                    kind: "rejected".into(),
                    message: format!("{reason}; stopping {id}"),
                });
                stops.push((
                    app.tier,
                    GateAction::Reject {
                        app: id.clone(),
                        reason: reason.clone(),
                    },
                ));
            } else {
                // Already stopped: nothing for the engine to do.
                plan.events.push(GateEvent {
                    app: id.clone(),
                    kind: "rejected".into(),
                    message: format!("{reason} ({id} is already stopped)"),
                });
                state.rejected = true;
                state.rejected_since_ms = Some(now);
            }
            plan.apps
                .insert(id, verdict(GateStatus::Rejected, Some(reason)));
            continue;
        }

        // Rejected: readmit once every node is healthy again.
        let blocking: Vec<&String> = gate
            .reject_when_down
            .iter()
            .filter(|n| !tracker(n).allows_readmit(now, &timing_of(n)))
            .collect();
        if blocking.is_empty() {
            let why = if gate.reject_when_down.is_empty() {
                "readmitted: it is rejected by no node any more".to_string()
            } else {
                format!(
                    "readmitted: {} healthy again",
                    gate.reject_when_down.join(", ")
                )
            };
            if app.wants_running && !app.running {
                plan.events.push(GateEvent {
                    app: id.clone(),
                    kind: "readmitted".into(),
                    message: format!("{why}; starting {id}"),
                });
                starts.push((
                    app.tier,
                    GateAction::Readmit {
                        app: id.clone(),
                        reason: why,
                    },
                ));
                // The gate lets it run; the `rejected` flag clears once the
                // start succeeded (`apply_result`).
                plan.apps.insert(id, verdict(GateStatus::Released, None));
            } else {
                plan.events.push(GateEvent {
                    app: id.clone(),
                    kind: "readmitted".into(),
                    message: why,
                });
                state.rejected = false;
                state.rejected_since_ms = None;
                plan.apps.insert(id, verdict(GateStatus::Released, None));
            }
            continue;
        }
        let reason = rejected_reason(gate, &tracker, &timing_of, now);
        if app.running {
            // Started behind our back while rejected: stop it again, quietly.
            stops.push((
                app.tier,
                GateAction::Reject {
                    app: id.clone(),
                    reason: reason.clone(),
                },
            ));
        }
        plan.apps
            .insert(id, verdict(GateStatus::Rejected, Some(reason)));
    }

    // 3. Stops first, dependents first; then starts in tier order.
    stops.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.app().cmp(b.1.app())));
    starts.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.app().cmp(b.1.app())));
    plan.actions = stops.into_iter().chain(starts).map(|(_, a)| a).collect();

    // 4. When to look again.
    plan.next_wake_ms = names
        .iter()
        .filter_map(|n| tracker(n).next_change_ms(now, &timing_of(n)))
        .min();
    plan
}

/// Why a rejected app is still kept stopped: each node that holds its
/// readmission up.
fn rejected_reason<'t>(
    gate: &GateSpec,
    tracker: &dyn Fn(&str) -> &'t NodeTracker,
    timing: &dyn Fn(&str) -> NodeTiming,
    now: u64,
) -> String {
    let mut parts = Vec::new();
    for n in &gate.reject_when_down {
        let t = tracker(n);
        if t.allows_readmit(now, &timing(n)) {
            continue;
        }
        let part = if t.down {
            let since = t.down_since_ms.unwrap_or(now);
            match t.reachable_since_ms {
                Some(r) => format!(
                    "{n} down since {} (reachable again since {})",
                    format_since(since, now),
                    format_since(r, now)
                ),
                None => format!("{n} down since {}", format_since(since, now)),
            }
        } else if t.last.is_none() {
            format!("{n} not probed yet")
        } else if let Some(r) = t.reachable_since_ms {
            format!("{n} recovering (reachable since {})", format_since(r, now))
        } else if t.ever_reachable {
            let since = t.unreachable_since_ms.unwrap_or(now);
            format!("{n} unreachable since {}", format_since(since, now))
        } else {
            continue;
        };
        parts.push(part);
    }
    if parts.is_empty() {
        "rejected".to_string()
    } else {
        format!("rejected: {}", parts.join(", "))
    }
}

/// Passive badges of the optional nodes.
fn badges<'t>(gate: &GateSpec, tracker: &dyn Fn(&str) -> &'t NodeTracker, now: u64) -> Vec<String> {
    let optional: BTreeSet<&String> = gate
        .wait_for_optional
        .iter()
        .chain(&gate.reject_when_down_optional)
        .collect();
    optional
        .into_iter()
        .map(|n| {
            let t = tracker(n);
            if t.down {
                let since = t.down_since_ms.unwrap_or(now);
                format!("{n}: down since {} (ignored)", format_since(since, now))
            } else {
                format!("{n}: {}", t.describe())
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Engine verdicts
// ---------------------------------------------------------------------------

/// Record the engine's verdict on one action: `rejected` flips only when
/// the stop (reject) or start (readmit) succeeded. Hold and release leave
/// the state alone (the latch is [`latch_after`]'s).
pub fn apply_result(state: &mut GateState, action: &GateAction, ok: bool, now_ms: u64) {
    if !ok {
        return;
    }
    match action {
        GateAction::Reject { .. } => {
            if !state.rejected {
                state.rejected = true;
                state.rejected_since_ms = Some(now_ms);
            }
        }
        GateAction::Readmit { .. } => {
            state.rejected = false;
            state.rejected_since_ms = None;
        }
        GateAction::Hold { .. } | GateAction::Release { .. } => {}
    }
}

/// Set the latch of every app in `release` if every one of their release
/// starts succeeded (a start the executor skipped counts as failed).
/// Returns whether it did; on `false` nothing is latched and the next tick
/// plans the missing starts again.
pub fn latch_after(
    gates: &mut BTreeMap<String, GateState>,
    release: &[String],
    results: &[(GateAction, bool)],
) -> bool {
    let all_ok = release.iter().all(|app| {
        results
            .iter()
            .any(|(a, ok)| *ok && matches!(a, GateAction::Release { app: x, .. } if x == app))
    });
    if all_ok {
        for app in release {
            let state = gates.entry(app.clone()).or_default();
            state.latched = true;
            state.held_note = None;
        }
    }
    all_ok
}

/// The gate states to persist after the executor ran `plan.actions` with
/// `results` (each action and whether the engine call succeeded).
pub fn settle(
    plan: &GatePlan,
    results: &[(GateAction, bool)],
    now_ms: u64,
) -> BTreeMap<String, GateState> {
    let mut gates = plan.gates.clone();
    for (action, ok) in results {
        if let Some(state) = gates.get_mut(action.app()) {
            apply_result(state, action, *ok, now_ms);
        }
    }
    latch_after(&mut gates, &plan.release, results);
    gates
}

// ---------------------------------------------------------------------------
// Helpers for the daemon and the CLI
// ---------------------------------------------------------------------------

/// The apps of the stack berth probes for gates: every app some gate names
/// that has a probe.
pub fn gate_nodes(stack: &Stack) -> BTreeMap<String, &ProbeSpec> {
    let named: BTreeSet<&str> = stack
        .apps
        .values()
        .filter_map(|a| a.gate.as_ref())
        .flat_map(GateSpec::nodes)
        .collect();
    named
        .into_iter()
        .filter_map(|n| {
            let probe = stack.apps.get(n)?.probe.as_ref()?;
            Some((n.to_string(), probe))
        })
        .collect()
}

/// `HH:MM:SS` (UTC) of a time in ms since the Unix epoch.
pub fn format_time_of_day(ms: u64) -> String {
    let secs = ms / 1000;
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// When something began, for a reason: the time of day when it was within
/// the last 24 hours, else the date too (`2024-05-01 12:03:10`).
pub fn format_since(since_ms: u64, now_ms: u64) -> String {
    if now_ms.saturating_sub(since_ms) < DAY_MS {
        return format_time_of_day(since_ms);
    }
    let (y, m, d) = civil_from_days((since_ms / DAY_MS) as i64);
    format!("{y:04}-{m:02}-{d:02} {}", format_time_of_day(since_ms))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    fn timing(down_s: u64, recovery_s: u64) -> NodeTiming {
        NodeTiming {
            down_after: Duration::from_secs(down_s),
            recovery_after: Duration::from_secs(recovery_s),
        }
    }

    fn up() -> ChainState {
        ChainState::up("ok")
    }

    fn gone() -> ChainState {
        ChainState::unreachable("connection refused")
    }

    /// Feed `(second, reachable)` probes; return the transitions.
    fn run(
        t: &mut NodeTracker,
        timing: &NodeTiming,
        probes: &[(u64, bool)],
    ) -> Vec<(u64, NodeTransition)> {
        probes
            .iter()
            .filter_map(|&(s, ok)| {
                let state = if ok { up() } else { gone() };
                t.observe(&state, s * S, timing).map(|tr| (s, tr))
            })
            .collect()
    }

    #[test]
    fn down_only_after_down_after_of_continuous_unreachability() {
        let tm = timing(90, 60);
        let mut t = NodeTracker::default();
        let tr = run(
            &mut t,
            &tm,
            &[
                (0, true),
                (10, false),
                (50, false),
                (99, false),
                (100, false),
            ],
        );
        assert_eq!(tr, [(100, NodeTransition::WentDown)]);
        assert_eq!(t.down_since_ms, Some(10 * S));
    }

    #[test]
    fn a_blip_shorter_than_down_after_never_marks_down() {
        let tm = timing(90, 60);
        let mut t = NodeTracker::default();
        let tr = run(
            &mut t,
            &tm,
            &[
                (0, true),
                (10, false),
                (80, false),
                (85, true),
                (90, false),
                (170, false),
            ],
        );
        assert!(tr.is_empty(), "{tr:?}");
        assert!(!t.down);
        // The second outage counts from its own start (90 s).
        assert_eq!(
            run(&mut t, &tm, &[(180, false)]),
            [(180, NodeTransition::WentDown)]
        );
    }

    #[test]
    fn a_node_never_reachable_is_never_down() {
        let tm = timing(90, 60);
        let mut t = NodeTracker::default();
        assert!(run(&mut t, &tm, &[(0, false), (1000, false), (100_000, false)]).is_empty());
        assert!(!t.down);
        assert!(!t.ever_reachable);
    }

    #[test]
    fn healthy_again_only_after_recovery_after_of_continuous_reachability() {
        let tm = timing(10, 60);
        let mut t = NodeTracker::default();
        run(&mut t, &tm, &[(0, true), (5, false), (15, false)]);
        assert!(t.down);
        // Reachable for 50 s, then a blip: the recovery window restarts.
        assert!(
            run(
                &mut t,
                &tm,
                &[(20, true), (70, true), (71, false), (72, true)]
            )
            .is_empty()
        );
        assert!(t.down);
        assert!(!t.allows_readmit(131 * S, &tm));
        assert_eq!(t.next_change_ms(100 * S, &tm), Some(132 * S));
        assert_eq!(
            run(&mut t, &tm, &[(131, true), (132, true)]),
            [(132, NodeTransition::Recovered)]
        );
        assert!(t.allows_readmit(132 * S, &tm));
        assert_eq!(t.down_since_ms, None);
    }

    #[test]
    fn restored_tracker_keeps_the_verdict_but_not_continuity() {
        let tm = timing(10, 60);
        let mut t = NodeTracker::default();
        run(&mut t, &tm, &[(0, true), (5, false), (15, false)]);
        let json = serde_json::to_string(&t).unwrap();
        let back: NodeTracker = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        let r = back.restored();
        assert!(r.down && r.ever_reachable);
        assert_eq!(r.down_since_ms, Some(5 * S));
        assert_eq!(
            (
                r.last.as_ref(),
                r.reachable_since_ms,
                r.unreachable_since_ms
            ),
            (None, None, None)
        );
        // Not observed since the restart: no readmission.
        assert!(!r.allows_readmit(1_000 * S, &tm));
        // A tracker that was lost altogether is no better.
        assert!(!NodeTracker::default().allows_readmit(1_000 * S, &tm));
    }

    #[test]
    fn summaries() {
        let mut s = ChainState {
            reachable: true,
            synced: false,
            syncing: true,
            current: Some(812_345),
            target: Some(850_000),
            percent: Some(43.9),
            detail: String::new(),
            raw: serde_json::Value::Null,
        };
        assert_eq!(s.summary(), "syncing 43%, 812345/850000");
        s.percent = Some(99.999);
        assert_eq!(s.summary(), "syncing 99%, 812345/850000");
        s.syncing = false;
        s.target = None;
        s.current = Some(1);
        assert_eq!(s.summary(), "not synced, height 1");
        s.synced = true;
        s.current = Some(850_000);
        assert_eq!(s.summary(), "synced at 850000");
        assert_eq!(gone().summary(), "unreachable");
        assert_eq!(up().summary(), "synced");
    }

    #[test]
    fn times_of_day_and_dates() {
        // 2024-05-01T12:03:10Z
        let t = 1_714_564_990_000;
        assert_eq!(format_time_of_day(t), "12:03:10");
        assert_eq!(format_since(t, t + 3600 * S), "12:03:10");
        assert_eq!(format_since(t, t + 25 * 3600 * S), "2024-05-01 12:03:10");
        assert_eq!(format_since(0, DAY_MS * 2), "1970-01-01 00:00:00");
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn apply_result_flips_rejected_only_on_success() {
        let reject = GateAction::Reject {
            app: "p".into(),
            reason: "r".into(),
        };
        let readmit = GateAction::Readmit {
            app: "p".into(),
            reason: "r".into(),
        };
        let mut s = GateState {
            latched: true,
            ..GateState::default()
        };
        apply_result(&mut s, &reject, false, 5);
        assert!(!s.rejected);
        apply_result(&mut s, &reject, true, 6);
        assert!(s.rejected);
        assert_eq!(s.rejected_since_ms, Some(6));
        // Repeating is harmless and keeps the first time.
        apply_result(&mut s, &reject, true, 9);
        assert_eq!(s.rejected_since_ms, Some(6));
        apply_result(&mut s, &readmit, false, 10);
        assert!(s.rejected);
        apply_result(&mut s, &readmit, true, 11);
        assert!(!s.rejected);
        reset(&mut s);
        assert_eq!(s, GateState::default());
    }
}
