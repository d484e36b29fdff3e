//! Chain gates in the imperative shell: probing nodes, the gate check an
//! install or start makes before it starts a gated app, and the gate
//! report `status`, `gate status` and the API show.
//!
//! The decisions are `berth_core::gate`'s: this module only feeds
//! `plan_gates` what it needs (probe results, the stored gate states and
//! node trackers) and carries out the one thing an operation may do on its
//! own — start an app whose required nodes are synced right now (and set
//! its latch), or leave it stopped with the reason. Failover (rejecting and
//! readmitting) needs continuous observation: only the daemon does it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use berth_core::classify::EngineStatus;
use berth_core::gate::{
    self, AppGate, ChainState, GateAction, GateEvent, GateInput, GateState, GateStatus, GatedApp,
    NodeInput, NodeTiming, NodeTracker,
};
use berth_core::graph;
use berth_core::model::{App, ProbeKind, ProbeSpec, Stack};
use berth_core::observed::ObservedContainer;
use berth_probe::chain;
use berth_probe::health::Target;
use berth_store::{AppRecord, Desired};
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::{Ctx, Result};

/// Chain probes run at once (by the daemon's probe rounds, an install's
/// gate check, `status`).
pub const GATE_PROBES_PARALLEL_MAX: usize = 8;

/// The secret file a bitcoind probe reads its RPC password from: the node
/// app's materialized copy of `password_secret`.
pub fn password_file(ctx: &Ctx, stack: &str, node: &str, spec: &ProbeSpec) -> Option<PathBuf> {
    match &spec.kind {
        ProbeKind::Bitcoind {
            password_secret: Some(secret),
            ..
        } => Some(ctx.state.secrets().app_dir(stack, node).join(secret)),
        _ => None,
    }
}

/// Probe one node now. A node whose container is missing or not running
/// is unreachable, and the engine is not asked for its address.
pub async fn probe_node(
    ctx: &Ctx,
    stack: &Stack,
    node: &str,
    spec: &ProbeSpec,
    observed: Option<&ObservedContainer>,
) -> ChainState {
    match observed {
        None => ChainState::unreachable(format!("{node} has no container")),
        Some(o) if o.status != EngineStatus::Running => {
            ChainState::unreachable(format!("{node} is not running ({})", o.classify(None)))
        }
        Some(o) => {
            let password = password_file(ctx, &stack.name, node, spec);
            chain::probe_container(
                ctx.engine.as_ref(),
                &Target {
                    container: &o.name,
                    network: &stack.settings.network,
                },
                spec,
                password.as_deref(),
            )
            .await
        }
    }
}

/// Probe `nodes` of `stack` at once (at most [`GATE_PROBES_PARALLEL_MAX`]
/// in flight), each bounded by its probe's timeout.
pub async fn probe_nodes(
    ctx: &Ctx,
    stack: &Stack,
    nodes: &BTreeSet<String>,
    observed: &BTreeMap<String, ObservedContainer>,
) -> BTreeMap<String, ChainState> {
    // Futures built in a loop, not by a closure: keeps the whole future
    // provably `Send` (rust-lang/rust#110338); the daemon spawns it.
    let mut futures = Vec::new();
    for node in nodes {
        let Some(spec) = stack.apps.get(node).and_then(|a| a.probe.as_ref()) else {
            continue;
        };
        let obs = observed.get(node);
        futures.push(async move {
            let state = probe_node(ctx, stack, node, spec, obs).await;
            (node.clone(), state)
        });
    }
    stream::iter(futures)
        .buffer_unordered(GATE_PROBES_PARALLEL_MAX)
        .collect()
        .await
}

/// The gated apps of one installed stack, as `plan_gates` takes them.
pub fn gated_apps<'a>(
    stack: &'a Stack,
    records: &[AppRecord],
    observed: &BTreeMap<String, ObservedContainer>,
) -> Vec<GatedApp<'a>> {
    if !records
        .iter()
        .any(|r| stack.apps.get(&r.id).is_some_and(|a| a.gate.is_some()))
    {
        return Vec::new();
    }
    let tiers = graph::tiers(stack);
    records
        .iter()
        .filter_map(|r| {
            let (id, app) = stack.apps.get_key_value(&r.id)?;
            let gate = app.gate.as_ref()?;
            Some(GatedApp {
                id: id.as_str(),
                gate,
                tier: tiers.get(id).copied().unwrap_or(0),
                wants_running: r.desired == Desired::Running,
                running: observed
                    .get(id)
                    .is_some_and(|o| o.status == EngineStatus::Running),
            })
        })
        .collect()
}

/// Timing of every gate node of a stack (observations left out).
pub fn node_inputs(stack: &Stack) -> BTreeMap<String, NodeInput<'static>> {
    gate::gate_nodes(stack)
        .into_iter()
        .map(|(node, probe)| {
            (
                node,
                NodeInput {
                    timing: NodeTiming::of(probe),
                    observation: None,
                },
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// What status, `gate status` and the API show
// ---------------------------------------------------------------------------

/// A gated app's verdict with the state behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppGateView {
    #[serde(flatten)]
    pub gate: AppGate,
    /// The one-way latch of the sync gate is set.
    pub latched: bool,
    /// Stopped by failover (the engine's stop succeeded).
    pub rejected: bool,
    pub rejected_since_ms: Option<u64>,
}

/// A node's chain state and health verdict, for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// The probe kind: `bitcoind`, `monerod`, `http`, `tcp`.
    pub kind: String,
    /// `synced`, `syncing`, `not-synced`, `unreachable`, `down` or
    /// `not-probed`.
    pub state: String,
    /// One line: `syncing 43%, 812345/850000`, `down since 12:03:10
    /// (connection refused)`.
    pub summary: String,
    pub current: Option<u64>,
    pub target: Option<u64>,
    pub percent: Option<f64>,
    pub down: bool,
    pub down_since_ms: Option<u64>,
    /// When the last probe ran.
    pub probed_at_ms: Option<u64>,
}

impl NodeView {
    pub fn of(kind: &str, t: &NodeTracker, now_ms: u64) -> NodeView {
        let last = t.last.as_ref();
        let state = match last {
            _ if t.down => "down",
            None => "not-probed",
            Some(s) if !s.reachable => "unreachable",
            Some(s) if s.synced => "synced",
            Some(s) if s.syncing => "syncing",
            Some(_) => "not-synced",
        };
        let mut summary = match last {
            Some(s) => s.summary(),
            None => "not probed yet".to_string(),
        };
        if t.down {
            let since = t.down_since_ms.unwrap_or(now_ms);
            summary = format!("down since {}", gate::format_since(since, now_ms));
            if let Some(s) = last.filter(|s| !s.reachable) {
                summary.push_str(&format!(" ({})", s.detail));
            } else if let Some(r) = t.reachable_since_ms {
                summary.push_str(&format!(
                    " (reachable again since {})",
                    gate::format_since(r, now_ms)
                ));
            }
        } else if let Some(s) = last.filter(|s| !s.reachable) {
            summary.push_str(&format!(" ({})", s.detail));
        }
        NodeView {
            kind: kind.to_string(),
            state: state.to_string(),
            summary,
            current: last.and_then(|s| s.current),
            target: last.and_then(|s| s.target),
            percent: last.and_then(|s| s.percent),
            down: t.down,
            down_since_ms: t.down_since_ms,
            probed_at_ms: t.last_ms,
        }
    }
}

/// Every gated app's verdict and every gate node's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub apps: BTreeMap<String, AppGateView>,
    pub nodes: BTreeMap<String, NodeView>,
    pub at_ms: u64,
}

/// The report for installed `stacks` from what is known (no action, no
/// event: `plan_gates` is only asked for its verdicts).
pub fn report(
    stacks: &BTreeMap<String, (Stack, Vec<AppRecord>)>,
    observed: &BTreeMap<String, ObservedContainer>,
    trackers: &BTreeMap<String, NodeTracker>,
    states: &BTreeMap<String, GateState>,
    now_ms: u64,
) -> GateReport {
    let mut apps = Vec::new();
    let mut nodes = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    for (stack, records) in stacks.values() {
        apps.extend(gated_apps(stack, records, observed));
        nodes.extend(node_inputs(stack));
        for (node, probe) in gate::gate_nodes(stack) {
            kinds.insert(node, probe.kind.name());
        }
    }
    let plan = gate::plan_gates(&GateInput {
        apps,
        nodes,
        trackers,
        gates: states,
        now_ms,
    });
    let empty = NodeTracker::default();
    GateReport {
        apps: plan
            .apps
            .into_iter()
            .map(|(id, gate)| {
                let state = states.get(&id).cloned().unwrap_or_default();
                let view = AppGateView {
                    gate,
                    latched: state.latched,
                    rejected: state.rejected,
                    rejected_since_ms: state.rejected_since_ms,
                };
                (id, view)
            })
            .collect(),
        nodes: kinds
            .into_iter()
            .map(|(node, kind)| {
                let t = trackers.get(&node).unwrap_or(&empty);
                let view = NodeView::of(kind, t, now_ms);
                (node, view)
            })
            .collect(),
        at_ms: now_ms,
    }
}

/// The gate report from the store. With `probe_now` (no daemon watches)
/// every gate node is probed once first and the result laid over its
/// stored tracker; otherwise the stored trackers are what the daemon
/// observed last, and only a node it has not probed yet (it just started)
/// is probed here.
pub async fn gate_report(
    ctx: &Ctx,
    stacks: &BTreeMap<String, (Stack, Vec<AppRecord>)>,
    observed: &BTreeMap<String, ObservedContainer>,
    probe_now: bool,
) -> Result<GateReport> {
    let mut trackers = ctx.store().node_trackers()?;
    let states = ctx.store().gate_states()?;
    let now = now_ms();
    for (stack, _) in stacks.values() {
        let nodes: BTreeSet<String> = gate::gate_nodes(stack)
            .into_keys()
            .filter(|n| probe_now || trackers.get(n).is_none_or(|t| t.last.is_none()))
            .collect();
        if nodes.is_empty() {
            continue;
        }
        let seen = probe_nodes(ctx, stack, &nodes, observed).await;
        for (node, state) in seen {
            let timing = stack.apps[&node]
                .probe
                .as_ref()
                .map(NodeTiming::of)
                .unwrap_or_default();
            let mut t = trackers.remove(&node).unwrap_or_default().restored();
            t.observe(&state, now, &timing);
            trackers.insert(node, t);
        }
    }
    Ok(report(stacks, observed, &trackers, &states, now))
}

fn now_ms() -> u64 {
    u64::try_from(berth_store::now_ms()).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The gate check of an install, up or start
// ---------------------------------------------------------------------------

/// What the gate lets an operation do with an app it would start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// No gate stands in the way (no gate, or latched and not rejected).
    Open,
    /// The sync gate releases it now: start it, then [`latch`] it.
    Release,
    /// Keep it stopped: held by the sync gate, or rejected by failover.
    Closed { reason: String },
}

/// Ask the gate of `app` whether an operation may start it now. An app
/// that is not latched has its required nodes probed once; an app the
/// daemon rejected stays stopped (only the daemon, which watches its nodes
/// over time, readmits it). Records the gate's events (a hold once per
/// distinct note) and its new state.
pub(crate) async fn check(ctx: &Ctx, stack: &Stack, app: &App, running: bool) -> Result<Check> {
    let Some(spec) = &app.gate else {
        return Ok(Check::Open);
    };
    let state = ctx.store().gate_state(&app.id)?;
    if state.latched && !state.rejected {
        return Ok(Check::Open);
    }
    let trackers: BTreeMap<String, NodeTracker> = ctx
        .store()
        .node_trackers()?
        .into_iter()
        .filter(|(n, _)| spec.nodes().contains(n.as_str()))
        .map(|(n, t)| (n, t.restored()))
        .collect();
    let mut observations = BTreeMap::new();
    if !state.latched && !spec.wait_for.is_empty() {
        let observed = crate::install::observe_stack(ctx, &stack.name).await?;
        let wanted: BTreeSet<String> = spec.wait_for.iter().cloned().collect();
        observations = probe_nodes(ctx, stack, &wanted, &observed).await;
    }
    let timing = |n: &str| {
        stack
            .apps
            .get(n)
            .and_then(|a| a.probe.as_ref())
            .map(NodeTiming::of)
            .unwrap_or_default()
    };
    let nodes: BTreeMap<String, NodeInput<'_>> = spec
        .nodes()
        .into_iter()
        .map(|n| {
            (
                n.to_string(),
                NodeInput {
                    timing: timing(n),
                    observation: observations.get(n),
                },
            )
        })
        .collect();
    let states = BTreeMap::from([(app.id.clone(), state.clone())]);
    let now = now_ms();
    let plan = gate::plan_gates(&GateInput {
        apps: vec![GatedApp {
            id: &app.id,
            gate: spec,
            tier: 0,
            wants_running: true,
            running,
        }],
        nodes,
        trackers: &trackers,
        gates: &states,
        now_ms: now,
    });
    // Only this app's events: node verdicts are the daemon's to record.
    for e in plan.events.iter().filter(|e| e.app == app.id) {
        record(ctx, e);
    }
    let after = plan.gates.get(&app.id).cloned().unwrap_or_default();
    if after != state {
        ctx.store().put_gate_states(
            &BTreeMap::from([(app.id.clone(), after)]),
            berth_store::now_ms(),
        )?;
    }
    let verdict = plan.apps.get(&app.id);
    Ok(match verdict.map(|v| v.status) {
        Some(GateStatus::Released) if plan.release.contains(&app.id) => Check::Release,
        Some(GateStatus::Released) | None => Check::Open,
        Some(GateStatus::Held) | Some(GateStatus::Rejected) => Check::Closed {
            reason: verdict
                .and_then(|v| v.reason.clone())
                .unwrap_or_else(|| "kept stopped by its gate".into()),
        },
    })
}

/// The start a [`Check::Release`] allowed succeeded: set the latch.
pub(crate) fn latch(ctx: &Ctx, app: &str) -> Result<()> {
    let mut gates = BTreeMap::from([(app.to_string(), ctx.store().gate_state(app)?)]);
    let release = [app.to_string()];
    let ok = GateAction::Release {
        app: app.to_string(),
        reason: String::new(),
    };
    gate::latch_after(&mut gates, &release, &[(ok, true)]);
    ctx.store().put_gate_states(&gates, berth_store::now_ms())?;
    Ok(())
}

/// Record a gate event in the event history.
pub fn record(ctx: &Ctx, e: &GateEvent) {
    ctx.event(Some(&e.app), &e.kind, e.message.clone());
}

/// `berth gate reset APP`: re-arm the app's sync gate — held again until
/// its required nodes are synced, any rejection forgotten (a restore onto
/// other hardware calls this). Only the state changes here: the daemon
/// (or the next install, up or start) acts on it.
pub fn reset(ctx: &Ctx, app: &str) -> Result<()> {
    let (stack, _) = crate::stackdb::installed_stack_of(ctx, app)?;
    if stack.apps[app].gate.is_none() {
        return Err(crate::OpsError::App {
            app: app.to_string(),
            message: "it has no gate (nothing to reset)".into(),
        });
    }
    ctx.store().delete_gate_state(app)?;
    ctx.event(
        Some(app),
        "gate-reset",
        format!("gate of {app} re-armed: held until its required nodes are synced"),
    );
    Ok(())
}

/// The gate report without a daemon: every installed stack observed, every
/// gate node probed once now.
pub async fn gate_report_now(ctx: &Ctx) -> Result<GateReport> {
    let stacks = crate::stackdb::installed_stacks(ctx)?;
    let mut observed = BTreeMap::new();
    for name in stacks.keys() {
        observed.extend(crate::install::observe_stack(ctx, name).await?);
    }
    gate_report(ctx, &stacks, &observed, true).await
}
