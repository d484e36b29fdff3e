//! What runs, as users see it: desired state, classification, health.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_core::classify::{Classification, EngineStatus, HealthStatus};
use berth_core::model::PortMapping;
use berth_core::naming;
use berth_core::supervise::{HealthView, Quarantine};
use berth_probe::health::{Target, probe_once};
use berth_store::Desired;
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::gates::{AppGateView, NodeView};
use crate::{Ctx, Result, STATUS_PROBES_PARALLEL_MAX, stackdb};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppStatus {
    pub id: String,
    pub stack: String,
    pub companion_of: Option<String>,
    pub image: String,
    pub container: String,
    pub desired: Desired,
    /// The observed state (see berth_core::classify).
    pub observed: Classification,
    pub health: Option<HealthStatus>,
    pub health_detail: Option<String>,
    pub exit_code: Option<i64>,
    pub started_at: Option<String>,
    pub ports: Vec<PortMapping>,
    pub web_ui: Option<String>,
    /// Supervision restarts since the counter was last reset.
    pub restarts: u32,
    /// Crash-loop quarantine: supervision no longer restarts the app until
    /// the user acts (start, reinstall) or its spec changes.
    pub quarantine: Option<Quarantine>,
    /// Its chain gate, for an app with a `gate`: held / released /
    /// rejected, the reason (`held: waiting for bitcoind (syncing 43%,
    /// 812345/850000)`, `rejected: monerod down since 12:03:10`) and the
    /// passive badges of its optional nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<AppGateView>,
    /// Its chain state, for a node some gate names: synced / syncing /
    /// down, progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<NodeView>,
    /// Needs attention: wanted running but is not running and healthy (a
    /// quarantined app always does). An app a gate keeps stopped (held,
    /// rejected) does not: that is intentional. A node whose container runs
    /// but whose chain RPC is down is shown in `summary` and `chain`; its
    /// health check (if it has one) decides whether it is unhealthy.
    pub degraded: bool,
    /// Plain-words summary, e.g. "stopped (by the user)".
    pub summary: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub apps: Vec<AppStatus>,
    pub degraded: usize,
}

impl StatusReport {
    /// 0 when everything is running or intentionally stopped, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.degraded > 0 { 1 } else { 0 }
    }
}

/// Observe every installed app: one list call per stack, an inspect for
/// containers killed with 137 (to tell OOM apart), one health probe for
/// each running app that has a health check, and one chain probe for each
/// node a gate names.
pub async fn status(ctx: &Arc<Ctx>) -> Result<StatusReport> {
    status_with_health(ctx, None).await
}

/// `status`, taking health verdicts from `known` (the daemon's continuous
/// monitors) where it has one; only apps missing from it are probed. With
/// `known` (a daemon runs) the chain gates are shown as the daemon last
/// observed them (it stores every probe); without, gate nodes are probed.
pub async fn status_with_health(
    ctx: &Arc<Ctx>,
    known: Option<&BTreeMap<String, HealthView>>,
) -> Result<StatusReport> {
    let stacks = stackdb::installed_stacks(ctx)?;
    let trackers = ctx.store().restart_trackers()?;
    let mut all_observed = BTreeMap::new();
    for name in stacks.keys() {
        all_observed.extend(crate::install::observe_stack(ctx, name).await?);
    }
    let gates = crate::gates::gate_report(ctx, &stacks, &all_observed, known.is_none()).await?;
    let mut apps = Vec::new();
    for (stack, records) in stacks.values() {
        let observed: BTreeMap<String, berth_core::observed::ObservedContainer> = records
            .iter()
            .filter_map(|r| Some((r.id.clone(), all_observed.get(&r.id)?.clone())))
            .collect();
        let running = |id: &str| {
            observed
                .get(id)
                .is_some_and(|o| o.status == EngineStatus::Running)
        };
        let mut probes: BTreeMap<String, (HealthStatus, String)> = known
            .into_iter()
            .flatten()
            .filter(|(id, _)| running(id))
            .map(|(id, v)| (id.clone(), (v.status, v.detail.clone())))
            .collect();
        // Futures built in a loop, not by a closure: a closure here makes
        // the whole future impossible to prove `Send` (rust-lang/rust#110338),
        // and the daemon runs this inside a spawned task.
        let mut futures = Vec::new();
        for r in records
            .iter()
            .filter(|r| r.app.health.is_some() && running(&r.id) && !probes.contains_key(&r.id))
        {
            let ctx = ctx.clone();
            let name = naming::container_name(&stack.name, &r.id);
            let network = stack.settings.network.clone();
            let id = r.id.clone();
            let check = r.app.health.clone().expect("filtered on health");
            futures.push(async move {
                let out = probe_once(
                    ctx.engine.as_ref(),
                    &Target {
                        container: &name,
                        network: &network,
                    },
                    &check,
                )
                .await;
                let h = if out.ok {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Unhealthy
                };
                (id, (h, out.detail))
            });
        }
        let probed: Vec<(String, (HealthStatus, String))> = stream::iter(futures)
            .buffer_unordered(STATUS_PROBES_PARALLEL_MAX)
            .collect()
            .await;
        probes.extend(probed);
        for r in records {
            let obs = observed.get(&r.id);
            let mut oom = false;
            if let Some(o) = obs
                && o.status == EngineStatus::Exited
                && o.exit_code == Some(137)
                && let Ok(Some(full)) = ctx.engine.inspect_container(&o.name).await
            {
                oom = full.oom_killed;
            }
            let (health, detail) = match probes.get(&r.id) {
                Some((h, d)) => (Some(*h), Some(d.clone())),
                None => (None, None),
            };
            let observed_state = match obs {
                Some(o) => berth_core::classify::classify(
                    Some(o.status),
                    o.exit_code,
                    oom || o.oom_killed,
                    health,
                ),
                None => Classification::Missing,
            };
            let tracker = trackers.get(&r.id);
            let quarantine = tracker.and_then(|t| t.quarantine.clone());
            let gate = gates.apps.get(&r.id).cloned();
            let chain = gates.nodes.get(&r.id).cloned();
            let gated = gate.as_ref().is_some_and(|g| g.gate.keeps_stopped());
            let gate_reason = gate.as_ref().and_then(|g| g.gate.reason.clone());
            let degraded = match r.desired {
                Desired::Running => {
                    quarantine.is_some()
                        || (!gated
                            && !matches!(
                                observed_state,
                                Classification::Running | Classification::Starting
                            ))
                }
                Desired::Stopped => false,
            };
            let summary = match (r.desired, observed_state) {
                (Desired::Stopped, c) if !c.is_running() => format!("{c} (stopped by the user)"),
                (Desired::Stopped, c) => format!("{c} (the user stopped it, but it runs)"),
                (Desired::Running, c) => match (&quarantine, &gate_reason) {
                    (Some(q), _) => format!("{c}, crash-loop quarantine: {}", q.reason),
                    (None, Some(reason)) if gated && !c.is_running() => {
                        format!("{c} ({reason})")
                    }
                    (None, Some(reason)) if gated => {
                        format!("{c} ({reason}; its gate stops it)")
                    }
                    (None, _) => match &chain {
                        Some(n) if n.down => format!("{c}, node {}", n.summary),
                        _ => c.to_string(),
                    },
                },
            };
            apps.push(AppStatus {
                id: r.id.clone(),
                stack: stack.name.clone(),
                companion_of: r.app.companion_of.clone(),
                image: r.app.image.clone(),
                container: naming::container_name(&stack.name, &r.id),
                desired: r.desired,
                observed: observed_state,
                health,
                health_detail: detail,
                exit_code: obs.and_then(|o| {
                    if o.status == EngineStatus::Exited {
                        o.exit_code
                    } else {
                        None
                    }
                }),
                started_at: obs.and_then(|o| o.started_at.clone()),
                ports: r.app.ports.clone(),
                restarts: tracker.map_or(0, |t| t.attempts),
                quarantine,
                gate,
                chain,
                web_ui: r
                    .app
                    .web_ui
                    .as_ref()
                    .map(|w| format!("http://127.0.0.1:{}{}", w.host_port, w.path)),
                degraded,
                summary,
            });
        }
    }
    let degraded = apps.iter().filter(|a| a.degraded).count();
    Ok(StatusReport { apps, degraded })
}
