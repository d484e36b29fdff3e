//! `berth gate status`, `berth gate reset APP` and `berth gate wait APP`.

use berth_ops::gates::GateReport;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;

use crate::cli::{GateCommand, Global};
use crate::context::{CmdResult, Route, daemon, reading, replay, route, rpc_call};
use crate::output::print_json;

pub async fn run(g: &Global, command: GateCommand) -> CmdResult {
    match command {
        GateCommand::Status { json } => status(g, json.json).await,
        GateCommand::Reset { app } => reset(g, &app).await,
        GateCommand::Wait {
            app,
            timeout,
            node,
            node_secrets,
        } => wait::run(g, &app, timeout.as_deref(), &node, node_secrets.as_deref()).await,
    }
}

async fn status(g: &Global, json: bool) -> CmdResult {
    // The daemon answers with what it last planned with; without one the
    // nodes are probed here, once.
    let report: GateReport = match daemon(g).await {
        Some(c) => {
            let v = rpc_call(&c, "gate.status", json!({})).await?;
            serde_json::from_value(v)
                .map_err(|e| anyhow::anyhow!("the daemon's gate.status answer: {e}"))?
        }
        None => {
            let ctx = reading(g).await?;
            berth_ops::gates::gate_report_now(&ctx).await?
        }
    };
    if json {
        print_json(&report)?;
        return Ok(0);
    }
    if report.apps.is_empty() && report.nodes.is_empty() {
        crate::outln!("no installed app has a gate");
        return Ok(0);
    }
    if !report.apps.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["app", "gate", "reason", "optional nodes", "latched"]);
        for (id, a) in &report.apps {
            t.add_row([
                id.clone(),
                format!("{:?}", a.gate.status).to_lowercase(),
                a.gate.reason.clone().unwrap_or_else(|| "-".into()),
                if a.gate.badges.is_empty() {
                    "-".into()
                } else {
                    a.gate.badges.join("\n")
                },
                if a.latched { "yes" } else { "no" }.into(),
            ]);
        }
        crate::outln!("{t}");
    }
    if !report.nodes.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["node", "probe", "state", "chain"]);
        for (id, n) in &report.nodes {
            t.add_row([
                id.clone(),
                n.kind.clone(),
                n.state.clone(),
                n.summary.clone(),
            ]);
        }
        crate::outln!("{t}");
    }
    Ok(0)
}

async fn reset(g: &Global, app: &str) -> CmdResult {
    match route(g).await? {
        Route::Daemon(c) => {
            let r = rpc_call(&c, "gate.reset", json!({ "app": app })).await?;
            replay(&r["progress"]);
            eprintln!(
                "{app}: gate re-armed; the daemon holds it until its required nodes are synced"
            );
        }
        Route::Direct(m) => {
            berth_ops::gates::reset(&m.ctx, app)?;
            eprintln!(
                "{app}: gate re-armed; it is held until its required nodes are synced \
                 (no daemon runs: the next `berth up`, `start` or `berth daemon` applies it)"
            );
        }
    }
    Ok(0)
}

/// `berth gate wait APP`: what an exported unit (or init container) runs
/// before it starts a gated app. It blocks until the app's required nodes
/// are synced, with the same chain probes and the same persisted latch as
/// berth's own gate: a latched gate returns at once, a release sets the
/// latch. Progress goes to stderr; on timeout it exits 1 with the reason.
mod wait {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;
    use std::time::{Duration, Instant};

    use anyhow::{Context as _, anyhow};
    use berth_core::gate::{
        self, ChainState, GateInput, GateState, GatedApp, NodeInput, NodeTiming, NodeTracker,
    };
    use berth_core::model::{ProbeKind, Stack};

    use crate::cli::Global;
    use crate::context::{CmdResult, EXIT_FAILED, Failure, load_stack, open_state, reading};

    /// Longest pause between two probe rounds, whatever the nodes' intervals.
    pub const WAIT_ROUND_S_MAX: u64 = 30;

    /// How the nodes are reached.
    enum Reach {
        /// Through the engine: the node's container on the stack network
        /// (a host running the exported units).
        Engine(std::sync::Arc<berth_ops::Ctx>),
        /// At fixed addresses (an init container: no engine inside a pod),
        /// RPC passwords read from `<dir>/<node>/<secret>`.
        Direct {
            addrs: BTreeMap<String, String>,
            secrets: Option<std::path::PathBuf>,
        },
    }

    /// The stack the app is looked up in: `--stack` as a stack file, or as
    /// the JSON stack model `berth export kube` puts in its ConfigMap.
    fn stack(g: &Global) -> CmdResult<Stack> {
        if g.stack.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&g.stack)
                .with_context(|| format!("cannot read {}", g.stack.display()))
                .map_err(Failure::usage)?;
            return serde_json::from_str(&text)
                .with_context(|| format!("{} is not a berth stack model", g.stack.display()))
                .map_err(Failure::usage);
        }
        load_stack(&g.stack)
    }

    pub async fn run(
        g: &Global,
        app_id: &str,
        timeout: Option<&str>,
        nodes: &[String],
        node_secrets: Option<&Path>,
    ) -> CmdResult {
        let timeout = timeout
            .map(berth_core::duration::parse_duration)
            .transpose()
            .map_err(|e| Failure::usage(anyhow!("--timeout: {e}")))?;
        let stack = stack(g)?;
        let Some(app) = stack.app(app_id) else {
            return Err(Failure::usage(anyhow!(
                "unknown app {app_id:?}: {} has {}",
                g.stack.display(),
                stack.apps.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        let Some(spec) = app.gate.clone().filter(|s| !s.wait_for.is_empty()) else {
            eprintln!("{app_id}: no sync gate (no wait_for): nothing to wait for");
            return Ok(0);
        };
        let mut addrs = BTreeMap::new();
        for n in nodes {
            let (node, addr) = n
                .split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| Failure::usage(anyhow!("--node {n:?}: expected NODE=HOST:PORT")))?;
            if !spec.wait_for.iter().any(|w| w == node) {
                return Err(Failure::usage(anyhow!(
                    "--node {node}: not a required node of {app_id} (it waits for {})",
                    spec.wait_for.join(", ")
                )));
            }
            addrs.insert(node.to_string(), addr.to_string());
        }
        let state_dir = open_state(g)?;
        let store = state_dir
            .store()
            .with_context(|| format!("cannot open the store in {}", g.state_dir.display()))?;
        let state = store.gate_state(app_id).map_err(anyhow::Error::new)?;
        if state.latched {
            eprintln!("{app_id}: gate latched (released before): not waiting");
            return Ok(0);
        }
        let reach = if addrs.is_empty() {
            Reach::Engine(reading(g).await?)
        } else {
            for n in &spec.wait_for {
                if !addrs.contains_key(n) {
                    return Err(Failure::usage(anyhow!(
                        "--node: give every required node's address or none (missing {n})"
                    )));
                }
            }
            Reach::Direct {
                addrs,
                secrets: node_secrets.map(Path::to_path_buf),
            }
        };
        let timing = |n: &str| {
            stack
                .app(n)
                .and_then(|a| a.probe.as_ref())
                .map(NodeTiming::of)
                .unwrap_or_default()
        };
        let round = spec
            .wait_for
            .iter()
            .filter_map(|n| stack.app(n).and_then(|a| a.probe.as_ref()))
            .map(|p| p.interval)
            .min()
            .unwrap_or(Duration::from_secs(
                berth_core::model::PROBE_INTERVAL_S_DEFAULT,
            ))
            .min(Duration::from_secs(WAIT_ROUND_S_MAX));
        let started = Instant::now();
        let mut trackers: BTreeMap<String, NodeTracker> = BTreeMap::new();
        let mut last_line = String::new();
        loop {
            let seen = probe(&reach, &stack, &spec.wait_for).await?;
            let now = now_ms();
            for (node, cs) in &seen {
                trackers
                    .entry(node.clone())
                    .or_default()
                    .observe(cs, now, &timing(node));
            }
            let node_inputs: BTreeMap<String, NodeInput<'_>> = spec
                .nodes()
                .into_iter()
                .map(|n| {
                    (
                        n.to_string(),
                        NodeInput {
                            timing: timing(n),
                            observation: seen.get(n),
                        },
                    )
                })
                .collect();
            let states = BTreeMap::from([(app_id.to_string(), GateState::default())]);
            let plan = gate::plan_gates(&GateInput {
                apps: vec![GatedApp {
                    id: app_id,
                    gate: &spec,
                    tier: 0,
                    wants_running: true,
                    running: false,
                }],
                nodes: node_inputs,
                trackers: &trackers,
                gates: &states,
                now_ms: now,
            });
            if plan.release.iter().any(|a| a == app_id) {
                let mut latched = BTreeMap::from([(app_id.to_string(), state.clone())]);
                latched.get_mut(app_id).expect("just inserted").latched = true;
                latched.get_mut(app_id).expect("just inserted").held_note = None;
                store
                    .put_gate_states(&latched, berth_store::now_ms())
                    .map_err(anyhow::Error::new)?;
                eprintln!(
                    "{app_id}: released: {} synced (gate latched)",
                    spec.wait_for.join(", ")
                );
                return Ok(0);
            }
            let line = spec
                .wait_for
                .iter()
                .map(|n| {
                    let s = seen
                        .get(n)
                        .map(describe)
                        .unwrap_or_else(|| "not probed".into());
                    format!("waiting for {n}: {s}")
                })
                .collect::<Vec<_>>()
                .join("; ");
            if line != last_line {
                eprintln!("{line}");
                last_line = line.clone();
            }
            if let Some(t) = timeout
                && started.elapsed() >= t
            {
                let reason = plan
                    .apps
                    .get(app_id)
                    .and_then(|v| v.reason.clone())
                    .unwrap_or(line);
                return Err(Failure {
                    error: anyhow!(
                        "gate of {app_id} still held after {}: {reason}",
                        berth_core::duration::format_duration(t)
                    ),
                    code: EXIT_FAILED,
                });
            }
            let pause = match timeout {
                Some(t) => round.min(t.saturating_sub(started.elapsed())),
                None => round,
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// A node's chain state in one line, its failure detail included.
    fn describe(cs: &ChainState) -> String {
        let s = cs.summary();
        if cs.reachable || cs.detail.is_empty() {
            s
        } else {
            format!("{s} ({})", cs.detail)
        }
    }

    async fn probe(
        reach: &Reach,
        stack: &Stack,
        wanted: &[String],
    ) -> CmdResult<BTreeMap<String, ChainState>> {
        let wanted: BTreeSet<String> = wanted.iter().cloned().collect();
        match reach {
            Reach::Engine(ctx) => {
                let observed = berth_ops::install::observe_stack(ctx, &stack.name).await?;
                Ok(berth_ops::gates::probe_nodes(ctx, stack, &wanted, &observed).await)
            }
            Reach::Direct { addrs, secrets } => {
                let mut out = BTreeMap::new();
                for n in &wanted {
                    let Some(spec) = stack.app(n).and_then(|a| a.probe.as_ref()) else {
                        out.insert(
                            n.clone(),
                            ChainState::unreachable(format!("{n} has no probe")),
                        );
                        continue;
                    };
                    let password = match (&spec.kind, secrets) {
                        (
                            ProbeKind::Bitcoind {
                                password_secret: Some(secret),
                                ..
                            },
                            Some(dir),
                        ) => Some(dir.join(n).join(secret)),
                        _ => None,
                    };
                    let state =
                        berth_probe::chain::probe_chain(spec, &addrs[n], password.as_deref()).await;
                    out.insert(n.clone(), state);
                }
                Ok(out)
            }
        }
    }

    fn now_ms() -> u64 {
        u64::try_from(berth_store::now_ms()).unwrap_or(0)
    }
}
