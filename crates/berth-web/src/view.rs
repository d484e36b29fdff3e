//! The state the API serves (`GET /api/state`) and the dashboard renders,
//! built from what the daemon already answers (`container.list`,
//! `daemon.status`, the journal's unfinished operations, disk usage).
//!
//! Inputs are taken as JSON and read leniently: a field another part of
//! berth adds later (a gate verdict, a node's chain state) shows up here as
//! soon as it is present, and a field that is missing is simply not shown.
//! `now_ms` is a parameter; nothing here reads the clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Disk usage (percent of the filesystem) from which a warning badge shows.
pub const DISK_WARN_PERCENT: f64 = 85.0;
/// Disk usage from which the badge is an error.
pub const DISK_CRITICAL_PERCENT: f64 = 95.0;
/// A node's height is compared with a sample at least this old to estimate
/// its sync rate.
pub const SYNC_RATE_WINDOW_MS_MIN: u64 = 5_000;
/// Samples older than this are replaced, so the rate follows the recent pace.
pub const SYNC_RATE_WINDOW_MS_MAX: u64 = 120_000;
/// Log lines of a quarantined app shown on its card.
pub const CARD_LOG_LINES_MAX: usize = 20;

/// How a badge should look: the dashboard maps each tone to a colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Tone {
    /// Green: running and healthy.
    Ok,
    /// Blue: something is in progress (starting, installing).
    Info,
    /// Amber: waiting or degraded but expected to recover (held, unhealthy).
    Warn,
    /// Red: needs attention (crashed, killed, quarantined, rejected).
    Bad,
    /// Grey: stopped on purpose.
    Idle,
}

impl Tone {
    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Ok => "ok",
            Tone::Info => "info",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
            Tone::Idle => "idle",
        }
    }
}

/// Everything `GET /api/state` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StateView {
    /// When this view was built (ms since the Unix epoch).
    pub generated_at_ms: u64,
    pub engine: EngineView,
    pub daemon: DaemonView,
    /// Stack-wide badges: node down, workers rejected, apps held, disk
    /// filling up, engine unreachable, apps needing attention.
    pub badges: Vec<Badge>,
    pub stacks: Vec<StackView>,
    /// Every installed app, in stack then install order.
    pub apps: Vec<AppView>,
    /// Nodes with a chain probe (the sync panel), when the daemon probes any.
    pub nodes: Vec<NodeView>,
    pub disks: Vec<DiskView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EngineView {
    /// `podman` or `docker`.
    pub kind: Option<String>,
    pub version: Option<String>,
    pub api_version: Option<String>,
    /// Whether the last reconcile tick could list containers.
    pub reachable: bool,
    /// Why not, when it could not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DaemonView {
    pub started_at_ms: Option<u64>,
    pub uptime_ms: Option<u64>,
    /// Reconcile ticks since the daemon started.
    pub ticks: u64,
    pub last_tick_at_ms: Option<u64>,
    pub last_tick_duration_us: Option<u64>,
    /// Apps an operation or supervision action holds now, and by what.
    pub in_flight: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StackView {
    pub name: String,
    pub apps: Vec<String>,
    pub badges: Vec<Badge>,
}

/// A stack-wide badge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Badge {
    /// `engine-unreachable`, `node-down`, `workers-rejected`, `apps-held`,
    /// `disk`, `attention`.
    pub kind: String,
    pub tone: Tone,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PortView {
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuarantineView {
    pub since_ms: u64,
    pub reason: String,
    pub exit_code: Option<i64>,
    /// The container's last log lines (secrets redacted).
    pub last_logs: Vec<String>,
}

/// A gate's verdict on an app (sync gate / node failover).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GateView {
    /// `held`, `released` or `rejected`.
    pub status: String,
    /// `waiting for bitcoind (syncing 43%, 812345/850000)`,
    /// `monerod down since 12:03:10`.
    pub reason: Option<String>,
    /// Passive notes about optional nodes.
    pub badges: Vec<String>,
    /// Sync progress of what a held app waits for, 0–100, when known.
    pub percent: Option<f64>,
}

/// An operation running on the app now (from the durable journal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OperationView {
    /// `install`, `uninstall`, `reinstall`, `start`, `stop`, ...
    pub kind: String,
    pub app: String,
    pub started_at_ms: u64,
    /// Steps recorded so far (`pull`, `network`, `volume`, `container`, ...).
    pub steps: Vec<String>,
    /// Of those, finished.
    pub steps_done: u32,
}

/// The one badge a card shows, with what it means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StateBadge {
    /// `running`, `starting`, `unhealthy`, `stopped`, `crashed`, `killed`,
    /// `killed-oom`, `held`, `rejected`, `quarantined`, `installing`,
    /// `uninstalling`, `reinstalling`, `created`, `restarting`, `paused`,
    /// `dead`, `missing`, ...
    pub kind: String,
    pub tone: Tone,
    /// What the badge says: `crashed (exit 3)`, `killed (OOM)`, `held`.
    pub label: String,
    /// One line of why: the gate reason, the quarantine reason, the step.
    pub detail: Option<String>,
    /// A progress bar, 0–100 (held: the node's sync; operations: steps).
    pub percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppView {
    pub id: String,
    pub stack: String,
    pub companion_of: Option<String>,
    pub image: String,
    pub container: String,
    /// What the user wants: `running` or `stopped`.
    pub desired: String,
    /// What the engine shows, classified: `running`, `starting`,
    /// `unhealthy`, `stopped`, `crashed`, `killed`, `killed-oom`,
    /// `created`, `restarting`, `paused`, `dead`, `missing`.
    pub observed: String,
    pub exit_code: Option<i64>,
    /// berth's health verdict: `starting`, `healthy`, `unhealthy`.
    pub health: Option<String>,
    pub health_detail: Option<String>,
    pub started_at: Option<String>,
    pub ports: Vec<PortView>,
    pub web_ui: Option<String>,
    /// Supervision restarts since the counter was last reset.
    pub restarts: u32,
    pub quarantine: Option<QuarantineView>,
    pub gate: Option<GateView>,
    pub operation: Option<OperationView>,
    /// Wanted running but not running and healthy.
    pub degraded: bool,
    pub summary: String,
    pub badge: StateBadge,
}

/// A node's sync gauge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    pub app: String,
    /// `synced`, `syncing`, `not-synced`, `unreachable`, `down`,
    /// `not-probed`.
    pub state: String,
    /// Down for failover: unreachable for longer than its `down_after`.
    pub down: bool,
    pub reachable: bool,
    pub synced: bool,
    pub syncing: bool,
    pub current: Option<u64>,
    pub target: Option<u64>,
    pub percent: Option<f64>,
    /// Blocks per second over the last minutes, when measurable.
    pub rate_per_s: Option<f64>,
    /// Estimated seconds until synced, when measurable.
    pub eta_s: Option<u64>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiskView {
    /// What lives there: `state`, `engine`.
    pub role: String,
    pub path: String,
    pub used_percent: f64,
    pub available_bytes: u64,
}

/// A node height seen at a time: what the sync-rate estimate compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSample {
    pub at_ms: u64,
    pub height: u64,
}

/// What [`build_state`] reads.
pub struct StateInput<'a> {
    pub now_ms: u64,
    /// The `container.list` result (`berth status --json`).
    pub status: &'a Value,
    /// The `daemon.status` result.
    pub daemon: &'a Value,
    /// Unfinished operations of the journal.
    pub operations: Vec<OperationView>,
    pub disks: Vec<DiskView>,
    /// Per node, the sample the rate is measured against.
    pub samples: &'a BTreeMap<String, NodeSample>,
}

fn str_of(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn u64_of(v: &Value) -> Option<u64> {
    v.as_u64()
}

/// Build the view; also returns the samples to keep for the next build.
pub fn build_state(input: &StateInput<'_>) -> (StateView, BTreeMap<String, NodeSample>) {
    let daemon = input.daemon;
    let ticks = &daemon["ticks"];
    let engine_error = str_of(&ticks["engine_error"]);
    let engine = EngineView {
        kind: str_of(&daemon["engine"]["kind"]),
        version: str_of(&daemon["engine"]["version"]),
        api_version: str_of(&daemon["engine"]["api_version"]),
        reachable: engine_error.is_none(),
        error: engine_error,
    };
    let in_flight = daemon["in_flight"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let daemon_view = DaemonView {
        started_at_ms: u64_of(&daemon["started_at_ms"]),
        uptime_ms: u64_of(&daemon["uptime_ms"]),
        ticks: u64_of(&ticks["ticks"]).unwrap_or(0),
        last_tick_at_ms: u64_of(&ticks["last_tick_at_ms"]),
        last_tick_duration_us: u64_of(&ticks["last_tick_duration_us"]),
        in_flight,
    };

    let mut apps = Vec::new();
    let mut nodes = Vec::new();
    let mut samples = BTreeMap::new();
    for a in input.status["apps"].as_array().into_iter().flatten() {
        let id = str_of(&a["id"]).unwrap_or_default();
        if id.is_empty() {
            continue;
        }
        let operation = input.operations.iter().find(|o| o.app == id).cloned();
        let app = app_view(a, operation);
        if let Some(chain) = chain_of(a) {
            let (node, sample) = node_view(&id, chain, input.now_ms, input.samples.get(&id));
            if let Some(s) = sample {
                samples.insert(id.clone(), s);
            }
            nodes.push(node);
        }
        apps.push(app);
    }
    // Operations on apps not installed yet (a first install) get a card too.
    for op in &input.operations {
        if apps.iter().any(|a| a.id == op.app) {
            continue;
        }
        apps.push(pending_app(op));
    }

    let mut stacks: Vec<StackView> = Vec::new();
    for a in &apps {
        match stacks.iter_mut().find(|s| s.name == a.stack) {
            Some(s) => s.apps.push(a.id.clone()),
            None => stacks.push(StackView {
                name: a.stack.clone(),
                apps: vec![a.id.clone()],
                badges: Vec::new(),
            }),
        }
    }
    for s in &mut stacks {
        let mine: Vec<&AppView> = apps.iter().filter(|a| a.stack == s.name).collect();
        s.badges = app_badges(&mine, &nodes);
    }
    let mut badges = Vec::new();
    if !engine.reachable {
        badges.push(Badge {
            kind: "engine-unreachable".into(),
            tone: Tone::Bad,
            label: format!(
                "engine unreachable: {}",
                engine.error.as_deref().unwrap_or("no answer")
            ),
        });
    }
    for d in &input.disks {
        if d.used_percent >= DISK_WARN_PERCENT {
            badges.push(Badge {
                kind: "disk".into(),
                tone: if d.used_percent >= DISK_CRITICAL_PERCENT {
                    Tone::Bad
                } else {
                    Tone::Warn
                },
                label: format!(
                    "disk {}% full ({} data, {})",
                    d.used_percent.floor() as u64,
                    d.role,
                    d.path
                ),
            });
        }
    }
    let all: Vec<&AppView> = apps.iter().collect();
    badges.extend(app_badges(&all, &nodes));

    let view = StateView {
        generated_at_ms: input.now_ms,
        engine,
        daemon: daemon_view,
        badges,
        stacks,
        apps,
        nodes,
        disks: input.disks.clone(),
    };
    (view, samples)
}

/// The node's chain state, wherever the status carries it.
fn chain_of(a: &Value) -> Option<&Value> {
    ["chain", "node", "sync"]
        .iter()
        .map(|k| &a[*k])
        .find(|v| v.is_object() && (v.get("state").is_some() || v.get("reachable").is_some()))
}

fn node_view(
    id: &str,
    chain: &Value,
    now_ms: u64,
    prev: Option<&NodeSample>,
) -> (NodeView, Option<NodeSample>) {
    let current = u64_of(&chain["current"]);
    let target = u64_of(&chain["target"]);
    // Two shapes: the gates' node view (`state`, `summary`, `down`) and a
    // probe's raw chain state (`reachable`, `synced`, `syncing`, `detail`).
    let state = str_of(&chain["state"]).unwrap_or_else(|| {
        match (
            chain["reachable"].as_bool().unwrap_or(false),
            chain["synced"].as_bool().unwrap_or(false),
            chain["syncing"].as_bool().unwrap_or(false),
        ) {
            (false, _, _) => "unreachable",
            (true, true, _) => "synced",
            (true, false, true) => "syncing",
            (true, false, false) => "not-synced",
        }
        .to_string()
    });
    let synced = state == "synced";
    let syncing = state == "syncing";
    let reachable = chain["reachable"].as_bool().unwrap_or(matches!(
        state.as_str(),
        "synced" | "syncing" | "not-synced"
    ));
    let down = chain["down"].as_bool().unwrap_or(false);
    let mut percent = chain["percent"].as_f64();
    if percent.is_none()
        && let (Some(c), Some(t)) = (current, target)
        && t > 0
    {
        percent = Some((c as f64 / t as f64 * 100.0).min(100.0));
    }
    if synced {
        percent = Some(100.0);
    }
    let (rate, eta, sample) = match current {
        Some(h) => sync_estimate(
            prev,
            NodeSample {
                at_ms: now_ms,
                height: h,
            },
            target,
        ),
        None => (None, None, None),
    };
    (
        NodeView {
            app: id.to_string(),
            state,
            down,
            reachable,
            synced,
            syncing,
            current,
            target,
            percent,
            rate_per_s: if synced { None } else { rate },
            eta_s: if synced { None } else { eta },
            detail: str_of(&chain["summary"])
                .or_else(|| str_of(&chain["detail"]))
                .unwrap_or_default(),
        },
        sample,
    )
}

/// Sync rate (blocks/s) and time remaining from the kept sample and the
/// current one; returns the sample to keep. The kept sample is replaced
/// when it is older than [`SYNC_RATE_WINDOW_MS_MAX`] or the height went
/// back (a reorg, a node reset), so the estimate follows the recent pace.
pub fn sync_estimate(
    prev: Option<&NodeSample>,
    now: NodeSample,
    target: Option<u64>,
) -> (Option<f64>, Option<u64>, Option<NodeSample>) {
    let Some(p) = prev.copied() else {
        return (None, None, Some(now));
    };
    if now.height < p.height || now.at_ms < p.at_ms {
        return (None, None, Some(now));
    }
    let age = now.at_ms - p.at_ms;
    let keep = if age > SYNC_RATE_WINDOW_MS_MAX {
        now
    } else {
        p
    };
    if age < SYNC_RATE_WINDOW_MS_MIN {
        return (None, None, Some(keep));
    }
    let rate = (now.height - p.height) as f64 / (age as f64 / 1000.0);
    let eta = match target {
        Some(t) if t > now.height && rate > 0.0 => {
            Some(((t - now.height) as f64 / rate).ceil() as u64)
        }
        Some(t) if t <= now.height => Some(0),
        _ => None,
    };
    (Some(rate), eta, Some(keep))
}

fn observed_of(a: &Value) -> (String, Option<i64>) {
    let o = &a["observed"];
    let state = str_of(&o["state"]).unwrap_or_else(|| "missing".into());
    let code = o["exit_code"].as_i64().or_else(|| a["exit_code"].as_i64());
    (state, code)
}

fn gate_of(a: &Value) -> Option<GateView> {
    let g = &a["gate"];
    let status = str_of(&g["status"])?;
    let reason = str_of(&g["reason"]).map(|r| {
        // "held: waiting for …" reads better on a badge without the prefix
        // the badge already shows.
        r.strip_prefix(&format!("{status}: "))
            .map(str::to_string)
            .unwrap_or(r)
    });
    let percent = g["percent"]
        .as_f64()
        .or_else(|| reason.as_deref().and_then(percent_in));
    Some(GateView {
        status,
        reason,
        badges: g["badges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(str_of)
            .collect(),
        percent,
    })
}

/// The first `NN%` (or `NN.N%`) in a text.
pub fn percent_in(text: &str) -> Option<f64> {
    let end = text.find('%')?;
    let start = text[..end]
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(0, |i| i + 1);
    text[start..end].parse().ok()
}

fn app_view(a: &Value, operation: Option<OperationView>) -> AppView {
    let (observed, exit_code) = observed_of(a);
    let quarantine = a["quarantine"].as_object().map(|q| QuarantineView {
        since_ms: q.get("since_ms").and_then(Value::as_u64).unwrap_or(0),
        reason: q
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        exit_code: q.get("exit_code").and_then(Value::as_i64),
        last_logs: {
            let lines: Vec<String> = q
                .get("last_logs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(str_of)
                .collect();
            lines[lines.len().saturating_sub(CARD_LOG_LINES_MAX)..].to_vec()
        },
    });
    let gate = gate_of(a);
    let desired = str_of(&a["desired"]).unwrap_or_else(|| "running".into());
    let ports = a["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| PortView {
            host_ip: str_of(&p["host_ip"]),
            host_port: p["host_port"].as_u64().unwrap_or(0) as u16,
            container_port: p["container_port"].as_u64().unwrap_or(0) as u16,
            protocol: str_of(&p["protocol"]).unwrap_or_else(|| "tcp".into()),
        })
        .collect();
    let mut view = AppView {
        id: str_of(&a["id"]).unwrap_or_default(),
        stack: str_of(&a["stack"]).unwrap_or_default(),
        companion_of: str_of(&a["companion_of"]),
        image: str_of(&a["image"]).unwrap_or_default(),
        container: str_of(&a["container"]).unwrap_or_default(),
        desired,
        observed,
        exit_code: if exit_code.is_some() {
            exit_code
        } else {
            a["exit_code"].as_i64()
        },
        health: str_of(&a["health"]),
        health_detail: str_of(&a["health_detail"]),
        started_at: str_of(&a["started_at"]),
        ports,
        web_ui: str_of(&a["web_ui"]),
        restarts: a["restarts"].as_u64().unwrap_or(0) as u32,
        quarantine,
        gate,
        operation,
        degraded: a["degraded"].as_bool().unwrap_or(false),
        summary: str_of(&a["summary"]).unwrap_or_default(),
        badge: StateBadge {
            kind: String::new(),
            tone: Tone::Idle,
            label: String::new(),
            detail: None,
            percent: None,
        },
    };
    view.badge = badge_of(&view);
    view
}

fn pending_app(op: &OperationView) -> AppView {
    let mut view = AppView {
        id: op.app.clone(),
        stack: String::new(),
        companion_of: None,
        image: String::new(),
        container: String::new(),
        desired: "running".into(),
        observed: "missing".into(),
        exit_code: None,
        health: None,
        health_detail: None,
        started_at: None,
        ports: Vec::new(),
        web_ui: None,
        restarts: 0,
        quarantine: None,
        gate: None,
        operation: Some(op.clone()),
        degraded: false,
        summary: format!("{} in progress", op.kind),
        badge: StateBadge {
            kind: String::new(),
            tone: Tone::Info,
            label: String::new(),
            detail: None,
            percent: None,
        },
    };
    view.badge = badge_of(&view);
    view
}

/// The one badge an app's card shows. Precedence: an operation in
/// progress, quarantine, a gate that keeps it stopped, then what the
/// engine shows (a user stop is grey whatever the exit code).
pub fn badge_of(a: &AppView) -> StateBadge {
    let badge = |kind: &str, tone: Tone, label: String| StateBadge {
        kind: kind.to_string(),
        tone,
        label,
        detail: None,
        percent: None,
    };
    if let Some(op) = &a.operation {
        let kind = match op.kind.as_str() {
            "install" => "installing",
            "uninstall" => "uninstalling",
            "reinstall" => "reinstalling",
            "update" => "updating",
            "start" => "starting",
            "stop" => "stopping",
            "restart" => "restarting",
            "up" => "installing",
            "down" => "uninstalling",
            _ => "working",
        };
        let mut b = badge(kind, Tone::Info, kind.to_string());
        let step = op.steps.last().map(String::as_str).unwrap_or("preparing");
        // The journal knows the steps taken so far, not how many follow:
        // show the step count and the current one, no made-up percentage.
        b.detail = Some(format!("step {}: {step}", op.steps.len().max(1)));
        return b;
    }
    if let Some(q) = &a.quarantine {
        let mut b = badge("quarantined", Tone::Bad, "crash-loop quarantine".into());
        b.detail = Some(q.reason.clone());
        return b;
    }
    if let Some(g) = &a.gate {
        match g.status.as_str() {
            "held" if !a.observed_running() => {
                let mut b = badge("held", Tone::Warn, "held".into());
                b.detail = g.reason.clone();
                b.percent = g.percent;
                return b;
            }
            "rejected" if !a.observed_running() => {
                let mut b = badge("rejected", Tone::Bad, "rejected".into());
                b.detail = g.reason.clone();
                return b;
            }
            _ => {}
        }
    }
    let stopped_by_user = a.desired == "stopped";
    let obs = a.observed.as_str();
    let mut b = match obs {
        "running" => badge("running", Tone::Ok, "running".into()),
        "starting" => badge("starting", Tone::Info, "starting".into()),
        "unhealthy" => badge("unhealthy", Tone::Warn, "unhealthy".into()),
        "stopped" => badge("stopped", Tone::Idle, "stopped".into()),
        _ if stopped_by_user && !a.observed_running() => {
            // Stopped on purpose: grey, whatever the engine's exit code.
            badge("stopped", Tone::Idle, "stopped".into())
        }
        "crashed" => badge(
            "crashed",
            Tone::Bad,
            match a.exit_code {
                Some(c) => format!("crashed (exit {c})"),
                None => "crashed".into(),
            },
        ),
        "killed" => badge("killed", Tone::Bad, "killed".into()),
        "killed-oom" => badge("killed-oom", Tone::Bad, "killed (OOM)".into()),
        "missing" => badge("missing", Tone::Bad, "missing".into()),
        "created" => badge("created", Tone::Idle, "created".into()),
        "restarting" => badge("restarting", Tone::Info, "restarting".into()),
        other => badge(other, Tone::Warn, other.to_string()),
    };
    if stopped_by_user && b.kind == "stopped" {
        b.detail = Some("stopped by the user".into());
    } else if b.kind == "unhealthy" || b.kind == "starting" {
        b.detail = a.health_detail.clone();
    } else if a.desired == "running" && !a.observed_running() && a.restarts > 0 {
        b.detail = Some(format!("{} restarts so far", a.restarts));
    }
    b
}

impl AppView {
    pub fn observed_running(&self) -> bool {
        matches!(self.observed.as_str(), "running" | "starting" | "unhealthy")
    }
}

/// Badges about a set of apps (one stack, or all).
fn app_badges(apps: &[&AppView], nodes: &[NodeView]) -> Vec<Badge> {
    let mut out = Vec::new();
    let down: Vec<String> = nodes
        .iter()
        .filter(|n| n.down && apps.iter().any(|a| a.id == n.app))
        .map(|n| n.app.clone())
        .collect();
    if !down.is_empty() {
        out.push(Badge {
            kind: "node-down".into(),
            tone: Tone::Bad,
            label: format!("node down: {}", down.join(", ")),
        });
    }
    let with = |status: &str| -> Vec<&AppView> {
        apps.iter()
            .filter(|a| a.gate.as_ref().is_some_and(|g| g.status == status))
            .copied()
            .collect()
    };
    let rejected = with("rejected");
    if !rejected.is_empty() {
        out.push(Badge {
            kind: "workers-rejected".into(),
            tone: Tone::Bad,
            label: format!(
                "rejected: {}",
                rejected
                    .iter()
                    .map(
                        |a| match a.gate.as_ref().and_then(|g| g.reason.as_deref()) {
                            Some(r) => format!("{} ({r})", a.id),
                            None => a.id.clone(),
                        }
                    )
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let held = with("held");
    if !held.is_empty() {
        out.push(Badge {
            kind: "apps-held".into(),
            tone: Tone::Warn,
            label: format!(
                "held: {}",
                held.iter()
                    .map(|a| a.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let attention: Vec<&str> = apps
        .iter()
        .filter(|a| a.badge.tone == Tone::Bad && !matches!(a.badge.kind.as_str(), "rejected"))
        .map(|a| a.id.as_str())
        .collect();
    if !attention.is_empty() {
        out.push(Badge {
            kind: "attention".into(),
            tone: Tone::Bad,
            label: format!("needs attention: {}", attention.join(", ")),
        });
    }
    out
}

/// One difference between two views, as the live stream sends it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An app's view changed (or it appeared).
    App(Box<AppView>),
    /// An app is gone (uninstalled).
    AppRemoved(String),
    /// The set or order of apps changed: the grid is rendered anew.
    Apps,
    Badges,
    Nodes,
    Engine,
}

/// What changed from `old` to `new`, in a stable order. Timestamps that
/// move on every build (generated_at, uptime, ticks) are not changes.
pub fn changes(old: &StateView, new: &StateView) -> Vec<Change> {
    let mut out = Vec::new();
    let ids = |v: &StateView| v.apps.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    if ids(old) != ids(new) {
        out.push(Change::Apps);
    }
    for a in &new.apps {
        match old.apps.iter().find(|o| o.id == a.id) {
            Some(o) if o == a => {}
            _ => out.push(Change::App(Box::new(a.clone()))),
        }
    }
    for o in &old.apps {
        if !new.apps.iter().any(|a| a.id == o.id) {
            out.push(Change::AppRemoved(o.id.clone()));
        }
    }
    if old.badges != new.badges || old.stacks != new.stacks {
        out.push(Change::Badges);
    }
    if old.nodes != new.nodes {
        out.push(Change::Nodes);
    }
    if old.engine != new.engine {
        out.push(Change::Engine);
    }
    out
}

#[cfg(test)]
mod tests;
