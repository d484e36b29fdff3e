//! Chain gates in the daemon: probing every gate node on its own interval,
//! planning with `berth_core::gate::plan_gates` every tick, executing the
//! plan's holds, releases, rejections and readmissions, and persisting what
//! changed.
//!
//! - **Probes** run as one owned task per round (bounded concurrency, each
//!   probe bounded by its timeout), never inside the loop: the results wait
//!   in `pending` and the tick after they arrive plans with them.
//! - **Trackers** (node health) live here, restored from the store at start
//!   (`NodeTracker::restored`: the verdict survives, continuity and the
//!   last observation do not) and written back whenever they change.
//! - **Gate states** (latch, hold note, rejection) live in the store and are
//!   re-read every tick, with a claim held on every app planned for: a
//!   request (`gate.reset`, an install that releases an app) and the loop
//!   never overwrite each other.
//! - An app is acted on only when it is not busy (another operation, a
//!   cooling failure) and every node its gate names was probed since this
//!   daemon started: a fresh daemon never holds, rejects or releases on what
//!   a previous one saw.
//! - Actions run in the plan's order (stops dependents-first, then starts in
//!   tier order) in one owned task holding the apps' claims; the task
//!   settles the gate states with the engine's verdicts (`rejected` flips
//!   only after a successful stop or start, the latch only when every
//!   release start succeeded) before it lets go of the claims.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use berth_core::gate::{
    self, AppGate, ChainState, GateAction, GateInput, GateState, NodeInput, NodeTiming, NodeTracker,
};
use berth_core::model::Stack;
use berth_core::naming;
use berth_core::observed::ObservedContainer;
use berth_ops::Ctx;
use berth_ops::gates::GateReport;
use berth_store::AppRecord;

use crate::supervisor::{Claim, InFlight, try_claim};

/// Installed stacks as the tick reads them.
pub type Stacks = BTreeMap<String, (Stack, Vec<AppRecord>)>;

/// Answers the chain probe of a node by its id instead of the network: the
/// seam the daemon's unit tests drive the gates through (the real clients
/// have their own contract tests against the fake daemons).
pub type ChainProbe = Arc<dyn Fn(&str) -> ChainState + Send + Sync>;

/// The gate side of the loop's state.
#[derive(Default)]
pub struct Gates {
    loaded: bool,
    trackers: BTreeMap<String, NodeTracker>,
    /// What the store holds, so only changes are written.
    persisted: BTreeMap<String, NodeTracker>,
    /// When each node is due for its next probe (daemon clock, ms).
    next_probe_ms: BTreeMap<String, u64>,
    /// Probe results not planned with yet.
    pending: BTreeMap<String, ChainState>,
    /// A probe round is in flight.
    probing: bool,
    /// Every gated app's verdict as of the last plan.
    verdicts: BTreeMap<String, AppGate>,
    /// What `gate.status` answers.
    report: GateReport,
    /// Replaces the real probes (tests).
    chain_probe: Option<ChainProbe>,
}

/// A probe round to run as an owned task.
pub struct ProbeRound {
    pub ctx: Arc<Ctx>,
    pub work: Vec<(Stack, BTreeSet<String>, BTreeMap<String, ObservedContainer>)>,
    chain_probe: Option<ChainProbe>,
}

impl ProbeRound {
    pub async fn run(self) -> BTreeMap<String, ChainState> {
        let mut out = BTreeMap::new();
        for (stack, nodes, observed) in &self.work {
            match &self.chain_probe {
                Some(f) => out.extend(nodes.iter().map(|n| (n.clone(), f(n)))),
                None => out
                    .extend(berth_ops::gates::probe_nodes(&self.ctx, stack, nodes, observed).await),
            }
        }
        out
    }
}

/// Gate actions to execute as one owned task.
pub struct GateJob {
    pub ctx: Arc<Ctx>,
    /// In the plan's order, each with what executing it needs.
    pub actions: Vec<(GateAction, Stack, Option<String>)>,
    /// Apps whose latch is set if every one of their release starts succeeds.
    pub release: Vec<String>,
    pub claims: Vec<Claim>,
}

/// What the tick learned from the gates.
pub struct TickGates {
    pub probe: Option<ProbeRound>,
    pub job: Option<GateJob>,
    /// When the gates want the next tick at the latest (a node due for a
    /// probe, a verdict that can change by itself).
    pub next_wake_ms: Option<u64>,
}

impl Gates {
    pub fn new() -> Gates {
        Gates::default()
    }

    /// Answer chain probes with `f` instead of the network (tests).
    pub fn set_chain_probe(&mut self, f: ChainProbe) {
        self.chain_probe = Some(f);
    }

    /// The verdict of a gated app as of the last tick.
    pub fn verdict(&self, app: &str) -> Option<&AppGate> {
        self.verdicts.get(app)
    }

    pub fn report(&self) -> &GateReport {
        &self.report
    }

    /// Results of a probe round arrived: planned with on the next tick.
    pub fn probed(&mut self, results: BTreeMap<String, ChainState>) {
        self.probing = false;
        self.pending.extend(results);
    }

    /// A probe round ended without results (its task failed).
    pub fn probe_lost(&mut self) {
        self.probing = false;
    }

    /// One gate tick. See the module docs. `busy` are apps another
    /// operation holds or whose last action failed moments ago.
    pub fn tick(
        &mut self,
        ctx: &Arc<Ctx>,
        stacks: &Stacks,
        observed: &BTreeMap<String, ObservedContainer>,
        in_flight: &InFlight,
        busy: &BTreeSet<String>,
        now_ms: u64,
    ) -> TickGates {
        if !self.loaded {
            match ctx.store().node_trackers() {
                Ok(stored) => {
                    self.persisted = stored.clone();
                    self.trackers = stored.into_iter().map(|(n, t)| (n, t.restored())).collect();
                    self.loaded = true;
                }
                Err(e) => {
                    tracing::error!(error = %e, "gates: cannot read node trackers; no gate acts this tick");
                    return TickGates {
                        probe: None,
                        job: None,
                        next_wake_ms: None,
                    };
                }
            }
        }

        // Every node some gate names, with its stack.
        let mut nodes: BTreeMap<String, (&Stack, NodeTiming, std::time::Duration)> =
            BTreeMap::new();
        for (stack, _) in stacks.values() {
            for (node, probe) in gate::gate_nodes(stack) {
                nodes.insert(node, (stack, NodeTiming::of(probe), probe.interval));
            }
        }
        self.forget_unwatched(ctx, &nodes.keys().cloned().collect());

        // A probe round for the nodes that are due, unless one is running.
        let mut probe = None;
        if !self.probing {
            let mut work: BTreeMap<&str, (Stack, BTreeSet<String>)> = BTreeMap::new();
            for (node, (stack, _, interval)) in &nodes {
                if self.next_probe_ms.get(node).is_some_and(|at| *at > now_ms) {
                    continue;
                }
                let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
                self.next_probe_ms
                    .insert(node.clone(), now_ms.saturating_add(interval_ms.max(1)));
                work.entry(stack.name.as_str())
                    .or_insert_with(|| ((*stack).clone(), BTreeSet::new()))
                    .1
                    .insert(node.clone());
            }
            if !work.is_empty() {
                self.probing = true;
                probe = Some(ProbeRound {
                    ctx: ctx.clone(),
                    chain_probe: self.chain_probe.clone(),
                    work: work
                        .into_values()
                        .map(|(stack, nodes)| {
                            let obs = observed
                                .iter()
                                .filter(|(id, _)| nodes.contains(*id))
                                .map(|(id, o)| (id.clone(), o.clone()))
                                .collect();
                            (stack, nodes, obs)
                        })
                        .collect(),
                });
            }
        }
        let next_probe = self.next_probe_ms.values().min().copied();

        // Claim every gated app that is free, then read the states: a
        // request that wrote one has finished, one that wants to waits.
        let mut claims: BTreeMap<String, Claim> = BTreeMap::new();
        let mut gated: Vec<&str> = Vec::new();
        for (stack, records) in stacks.values() {
            for r in records {
                if stack.apps.get(&r.id).is_some_and(|a| a.gate.is_some()) {
                    gated.push(&r.id);
                }
            }
        }
        for id in &gated {
            if busy.contains(*id) {
                continue;
            }
            if let Ok(c) = try_claim(in_flight, &BTreeSet::from([id.to_string()]), "gate") {
                claims.insert(id.to_string(), c);
            }
        }
        // Claims first, then the store: an app whose uninstall (or stop)
        // finished after `stacks` was read is gone (or stopped) now, and a
        // release planned from the stale record would bring it back.
        match crate::supervisor::changed_since_read(ctx, stacks) {
            Ok(changed) => claims.retain(|id, _| !changed.contains(id)),
            Err(e) => {
                tracing::error!(error = %e, "gates: cannot re-read installed apps; no gate acts this tick");
                return TickGates {
                    probe,
                    job: None,
                    next_wake_ms: next_probe,
                };
            }
        }
        let states = match ctx.store().gate_states() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "gates: cannot read gate states; no gate acts this tick");
                return TickGates {
                    probe,
                    job: None,
                    next_wake_ms: next_probe,
                };
            }
        };

        let observations = std::mem::take(&mut self.pending);
        let mut apps = Vec::new();
        for (stack, records) in stacks.values() {
            apps.extend(berth_ops::gates::gated_apps(stack, records, observed));
        }
        let inputs: BTreeMap<String, NodeInput<'_>> = nodes
            .iter()
            .map(|(n, (_, timing, _))| {
                (
                    n.clone(),
                    NodeInput {
                        timing: *timing,
                        observation: observations.get(n),
                    },
                )
            })
            .collect();
        let plan = gate::plan_gates(&GateInput {
            apps,
            nodes: inputs,
            trackers: &self.trackers,
            gates: &states,
            now_ms,
        });

        // Node verdicts are always taken: they are observations.
        self.trackers = plan.trackers.clone();
        let is_node_event = |kind: &str| kind.starts_with("node-");
        for e in plan.events.iter().filter(|e| is_node_event(&e.kind)) {
            berth_ops::gates::record(ctx, e);
        }
        let changed: BTreeMap<String, NodeTracker> = self
            .trackers
            .iter()
            .filter(|(n, t)| self.persisted.get(*n) != Some(*t))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        if !changed.is_empty() {
            match ctx.store().put_node_trackers(&changed, now_ms as i64) {
                Ok(()) => self.persisted.extend(changed),
                Err(e) => tracing::warn!(error = %e, "gates: cannot persist node trackers"),
            }
        }

        // What may be acted on: claimed, and every node of its gate probed
        // since this daemon started.
        let actable: BTreeSet<String> = claims
            .keys()
            .filter(|app| {
                stacks
                    .values()
                    .find_map(|(s, _)| s.apps.get(*app))
                    .and_then(|a| a.gate.as_ref())
                    .is_some_and(|g| {
                        g.nodes().iter().all(|n| {
                            self.trackers.get(*n).is_some_and(|t| t.last.is_some())
                                || !nodes.contains_key(*n)
                        })
                    })
            })
            .cloned()
            .collect();
        let actable = |app: &str| actable.contains(app);
        let mut to_store: BTreeMap<String, GateState> = BTreeMap::new();
        for (app, state) in &plan.gates {
            if actable(app) && states.get(app).unwrap_or(&GateState::default()) != state {
                to_store.insert(app.clone(), state.clone());
            }
        }
        if !to_store.is_empty()
            && let Err(e) = ctx.store().put_gate_states(&to_store, now_ms as i64)
        {
            tracing::error!(error = %e, "gates: cannot persist gate states; plan dropped");
            self.verdicts = plan.apps;
            return TickGates {
                probe,
                job: None,
                next_wake_ms: next_probe,
            };
        }
        for e in plan
            .events
            .iter()
            .filter(|e| !is_node_event(&e.kind) && actable(&e.app))
        {
            berth_ops::gates::record(ctx, e);
        }
        let mut actions = Vec::new();
        let mut job_claims = Vec::new();
        for action in plan.actions.iter().filter(|a| actable(a.app())) {
            let app = action.app();
            let Some((stack, records)) = stacks.values().find(|(s, _)| s.apps.contains_key(app))
            else {
                continue;
            };
            let stack_file = records
                .iter()
                .find(|r| r.id == app)
                .and_then(|r| r.stack_file.clone());
            if let Some(c) = claims.remove(app) {
                job_claims.push(c);
            }
            actions.push((action.clone(), stack.clone(), stack_file));
        }
        let release: Vec<String> = plan
            .release
            .iter()
            .filter(|a| actions.iter().any(|(x, _, _)| x.app() == a.as_str()))
            .cloned()
            .collect();
        // Claims of apps without an action end here, unused.
        for c in claims.into_values() {
            c.release_unused();
        }

        let mut after = states;
        after.extend(to_store);
        self.report = berth_ops::gates::report(stacks, observed, &self.trackers, &after, now_ms);
        self.verdicts = plan.apps;
        let job = (!actions.is_empty()).then(|| GateJob {
            ctx: ctx.clone(),
            actions,
            release,
            claims: job_claims,
        });
        let next_wake_ms = match (plan.next_wake_ms, next_probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        TickGates {
            probe,
            job,
            next_wake_ms,
        }
    }

    /// Drop what is known of nodes no gate names any more.
    fn forget_unwatched(&mut self, ctx: &Ctx, watched: &BTreeSet<String>) {
        let gone: Vec<String> = self
            .trackers
            .keys()
            .chain(self.persisted.keys())
            .filter(|n| !watched.contains(*n))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if gone.is_empty() {
            return;
        }
        for n in &gone {
            self.trackers.remove(n);
            self.persisted.remove(n);
            self.next_probe_ms.remove(n);
            self.pending.remove(n);
        }
        if let Err(e) = ctx.store().delete_node_trackers(&gone) {
            tracing::warn!(error = %e, "gates: cannot forget node trackers");
        }
    }
}

impl GateJob {
    /// Execute the actions in order, then settle the gate states with the
    /// engine's verdicts while the claims are still held. Returns, per
    /// action, the app, whether it (re)started the container, and the
    /// outcome (a failure is the message of its event).
    pub async fn run(self, now_ms: impl Fn() -> u64) -> Vec<(String, bool, Result<(), String>)> {
        let GateJob {
            ctx,
            actions,
            release,
            claims,
        } = self;
        let mut verdicts: Vec<(GateAction, bool)> = Vec::new();
        let mut out = Vec::new();
        for (action, stack, stack_file) in &actions {
            let app = action.app();
            let what = match action {
                GateAction::Hold { .. } => "hold",
                GateAction::Release { .. } => "release",
                GateAction::Reject { .. } => "reject",
                GateAction::Readmit { .. } => "readmit",
            };
            let result = if action.is_start() {
                berth_ops::bring_up_app(&ctx, stack, stack_file.as_deref(), app)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                let grace = stack.apps[app].stop_grace;
                match ctx
                    .engine
                    .stop_container(&naming::container_name(&stack.name, app), grace)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            };
            match &result {
                Ok(()) => tracing::info!(
                    app,
                    action = what,
                    reason = action.reason(),
                    "gate action done"
                ),
                Err(e) => tracing::warn!(app, action = what, error = %e, "gate action failed"),
            }
            verdicts.push((action.clone(), result.is_ok()));
            out.push((
                app.to_string(),
                action.is_start(),
                result
                    .map_err(|e| format!("{what} of {app} failed (a later tick tries again): {e}")),
            ));
        }
        settle(&ctx, &verdicts, &release, now_ms());
        drop(claims);
        out
    }
}

/// Record the engine's verdicts in the stored gate states.
fn settle(ctx: &Ctx, verdicts: &[(GateAction, bool)], release: &[String], now_ms: u64) {
    let apps: BTreeSet<&str> = verdicts.iter().map(|(a, _)| a.app()).collect();
    let stored = match ctx.store().gate_states() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "gates: cannot read gate states to settle; the next tick plans again");
            return;
        }
    };
    let mut states: BTreeMap<String, GateState> = apps
        .iter()
        .map(|a| (a.to_string(), stored.get(*a).cloned().unwrap_or_default()))
        .collect();
    let before = states.clone();
    for (action, ok) in verdicts {
        if let Some(state) = states.get_mut(action.app()) {
            gate::apply_result(state, action, *ok, now_ms);
        }
    }
    gate::latch_after(&mut states, release, verdicts);
    states.retain(|a, s| before.get(a) != Some(s));
    if let Err(e) = ctx.store().put_gate_states(&states, now_ms as i64) {
        tracing::error!(error = %e, "gates: cannot persist settled gate states; the next tick plans again");
    }
}
