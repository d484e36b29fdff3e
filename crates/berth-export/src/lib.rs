//! berth stacks rendered for other supervisors: Quadlet units (Podman ≥ 4.4),
//! plain systemd units running the engine's CLI (older Podman, Docker), and
//! Kubernetes objects (Kubernetes, `podman kube play`).
//!
//! Pure: the input is `berth_core`'s stack model plus the host layout the
//! files will refer to, the output is file names with their contents. No
//! IO, no clock, and the same input always renders byte-identical output
//! (every map is ordered, apps come in start order).
//!
//! The names are berth's own (`berth_core::naming`), so an exported
//! `demo-bitcoind` container and its `demo-bitcoind-data` volume are the
//! ones a berth installation of the same stack created: moving a stack from
//! berth to systemd keeps its data.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_core::graph;
use berth_core::model::{App, DependsCondition, HealthKind, Stack};
use berth_core::naming;

pub mod kube;
pub mod quadlet;
pub mod systemd;
mod unit;
pub mod yaml;

/// Name of the directory under berth's state directory that holds each
/// app's read-only secret copies (`secret-mounts/<stack>/<app>/<name>`).
/// Mirrors `berth_store::secrets::SECRET_MOUNTS_DIR_NAME` (this crate stays
/// free of the store's SQLite dependency; a test of the CLI checks both
/// agree).
pub const SECRET_MOUNTS_DIR_NAME: &str = "secret-mounts";
/// Default state directory of berth on a host (`berth --state-dir`).
pub const STATE_DIR_DEFAULT: &str = "/var/lib/berth";
/// Default path of the berth binary the units call for `berth gate wait`.
pub const BERTH_BIN_DEFAULT: &str = "/usr/local/bin/berth";
/// Label naming the export format on every exported container.
pub const LABEL_EXPORTED: &str = "io.berth.exported";
/// Headroom systemd gets beyond the engine's own stop timeout before it
/// kills the unit, so the engine's SIGTERM grace always runs out first.
pub const STOP_HEADROOM_S: u64 = 30;

/// One exported file: its name relative to the output directory, and its
/// contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    pub name: String,
    pub contents: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExportError {
    #[error(
        "podman {version} predates quadlet (it arrived in podman 4.4): \
         export plain units with `berth export systemd` for this host"
    )]
    PodmanTooOld { version: String },
    #[error(
        "invalid podman version {0:?}: expected MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. 4.4 or 5.2.1"
    )]
    BadVersion(String),
    #[error("app {app}: {message}")]
    App { app: String, message: String },
    #[error("cannot render the kubernetes objects as yaml: {0}")]
    Yaml(String),
}

/// Where things live on the host the exported files run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// berth's state directory there (secret files, gate latches).
    pub state_dir: String,
    /// The berth binary the gate units run.
    pub berth_bin: String,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            state_dir: STATE_DIR_DEFAULT.into(),
            berth_bin: BERTH_BIN_DEFAULT.into(),
        }
    }
}

impl HostPaths {
    /// The host directory holding `app`'s secret files, bound read-only at
    /// `/run/secrets` exactly as berth binds it.
    pub fn secrets_dir(&self, stack: &str, app: &str) -> String {
        format!(
            "{}/{SECRET_MOUNTS_DIR_NAME}/{stack}/{app}",
            self.state_dir.trim_end_matches('/')
        )
    }
}

/// The apps of `stack` in start order: by tier, then by id.
pub fn start_order(stack: &Stack) -> Vec<&App> {
    let tiers = graph::tiers(stack);
    let mut apps: Vec<&App> = stack.apps.values().collect();
    apps.sort_by_key(|a| (tiers.get(&a.id).copied().unwrap_or(0), a.id.clone()));
    apps
}

/// How long the app may take from its start until it counts as started:
/// the stack's start timeout, or longer when the health check's start
/// period plus its retries need more.
pub fn start_budget(stack: &Stack, app: &App) -> Duration {
    let base = stack.settings.start_timeout;
    match &app.health {
        Some(h) => {
            let health = h.start_period + h.interval.saturating_mul(h.retries.saturating_add(1));
            base.max(health)
        }
        None => base,
    }
}

/// The labels of an exported container: the manifest's, plus the stack and
/// app labels berth itself sets (so `berth gate wait` and `berth status`
/// find the containers) and the export format. Neither `io.berth.managed`
/// nor a spec hash: berth does not manage these containers.
pub fn labels(stack: &Stack, app: &App, format: &str) -> BTreeMap<String, String> {
    let mut labels = app.labels.clone();
    labels.insert(naming::LABEL_STACK.into(), stack.name.clone());
    labels.insert(naming::LABEL_APP.into(), app.id.clone());
    labels.insert(LABEL_EXPORTED.into(), format.into());
    labels
}

/// The health check as a command run inside the container, for engines
/// whose own health checks exec in the container (Podman, Docker). berth
/// probes HTTP and TCP checks from outside; inside, this needs `sh` and
/// `curl`, `wget` or `nc` in the image (see the docs).
pub fn health_command(kind: &HealthKind) -> Vec<String> {
    match kind {
        HealthKind::Command { argv } => argv.clone(),
        HealthKind::Http { port, path } => {
            let url = format!("http://127.0.0.1:{port}{path}");
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("curl -fsS -o /dev/null {url} || wget -q -O /dev/null {url}"),
            ]
        }
        HealthKind::Tcp { port } => vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("nc -w 1 127.0.0.1 {port} </dev/null"),
        ],
    }
}

/// Whole seconds, at least 1 (engines and systemd take whole seconds; a
/// zero would mean "disabled" to some of them).
pub fn secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

/// The app's dependencies in name order, with their conditions.
pub fn dependencies(app: &App) -> impl Iterator<Item = (&str, DependsCondition)> {
    app.depends_on.iter().map(|(d, c)| (d.as_str(), *c))
}

/// The app's required gate nodes (`wait_for`), those `berth gate wait`
/// blocks on.
pub fn gate_nodes(app: &App) -> &[String] {
    app.gate
        .as_ref()
        .map(|g| g.wait_for.as_slice())
        .unwrap_or(&[])
}

/// Gate lists an export cannot enforce: failover needs berth's daemon
/// watching the nodes continuously.
pub fn unenforced_gate_lists(app: &App) -> Vec<String> {
    let Some(g) = &app.gate else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, list) in g.lists() {
        if key != "wait_for" && !list.is_empty() {
            out.push(format!("{key} = [{}]", list.join(", ")));
        }
    }
    out
}

/// Memory in the engines' CLI syntax (bytes, or a whole unit).
pub fn memory_arg(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;
    if bytes.is_multiple_of(GIB) {
        format!("{}g", bytes / GIB)
    } else if bytes.is_multiple_of(MIB) {
        format!("{}m", bytes / MIB)
    } else {
        format!("{bytes}b")
    }
}

#[cfg(test)]
pub(crate) mod testdata;
