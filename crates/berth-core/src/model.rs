//! The validated, normalised model of a stack. Everything downstream of the
//! manifest loader works on these types; they never hold raw TOML.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default stop grace period, matching Kubernetes' termination grace.
pub const STOP_GRACE_S_DEFAULT: u64 = 30;
/// Default health-check interval.
pub const HEALTH_INTERVAL_S_DEFAULT: u64 = 10;
/// Default health-check timeout.
pub const HEALTH_TIMEOUT_S_DEFAULT: u64 = 2;
/// Default consecutive failures before a container counts as unhealthy.
pub const HEALTH_RETRIES_DEFAULT: u32 = 3;
/// Default number of apps of one tier started at once.
pub const MAX_PARALLEL_DEFAULT: usize = 4;
/// Upper bound on `max_parallel`: beyond this the engine is the bottleneck.
pub const MAX_PARALLEL_MAX: usize = 32;
/// Default time an install waits for a container to be running (and healthy).
pub const START_TIMEOUT_S_DEFAULT: u64 = 120;
/// Default `update_window`: how long an update gives the new version to
/// run, pass its health check and stay healthy before it reverts.
pub const UPDATE_WINDOW_S_DEFAULT: u64 = 300;
/// Default `min_healthy`: how long the new version must stay running and
/// healthy after its first healthy result for an update to succeed. Shorter
/// than Nomad's 10 s so tests stay quick; still longer than the moment a
/// container that dies right after its start needs to die.
pub const MIN_HEALTHY_S_DEFAULT: u64 = 5;
/// How long an app without a health check must stay running after its start
/// before an install counts it as started (milliseconds).
pub const SETTLE_MS_DEFAULT: u64 = 500;
/// Default time between two chain probes of a node.
pub const PROBE_INTERVAL_S_DEFAULT: u64 = 5;
/// Default time a chain probe waits for an answer. Generous: bitcoind can
/// be slow to answer RPC while it validates blocks.
pub const PROBE_TIMEOUT_S_DEFAULT: u64 = 3;
/// Default time a node must be unreachable without interruption to count as
/// down (the debounce of node failover).
pub const DOWN_AFTER_S_DEFAULT: u64 = 90;
/// Default time a down node must be reachable without interruption to count
/// as healthy again (the hysteresis of node failover).
pub const RECOVERY_AFTER_S_DEFAULT: u64 = 60;

/// A whole stack: its settings and every app, companions included (a
/// companion is an app with `companion_of` set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    pub name: String,
    pub settings: StackSettings,
    pub apps: BTreeMap<String, App>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackSettings {
    /// Engine network every app of the stack joins (its app id is its DNS alias).
    pub network: String,
    /// Apps of one tier started at once.
    pub max_parallel: usize,
    /// How long an install waits for running (and healthy) before rolling back.
    pub start_timeout: Duration,
    /// How long an app without a health check must keep running after its
    /// start before an install counts it as started; an exit inside this
    /// window fails the install (and rolls it back).
    #[serde(default = "default_settle")]
    pub settle: Duration,
}

fn default_settle() -> Duration {
    Duration::from_millis(SETTLE_MS_DEFAULT)
}

impl StackSettings {
    /// The defaults for a stack whose engine network is `network`.
    pub fn with_network(network: impl Into<String>) -> Self {
        StackSettings {
            network: network.into(),
            max_parallel: MAX_PARALLEL_DEFAULT,
            start_timeout: Duration::from_secs(START_TIMEOUT_S_DEFAULT),
            settle: default_settle(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DependsCondition {
    /// The dependency's container is running.
    Started,
    /// The dependency's health check passes (berth evaluates it).
    Healthy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart whenever it exits, unless the user stopped it.
    #[default]
    Always,
    /// Restart only after a non-zero exit or an unhealthy verdict.
    OnFailure,
    /// Never restart.
    No,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address to bind; `None` binds every address.
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VolumeMount {
    /// Short name from the manifest (`data`); the engine volume is
    /// `naming::volume_name(stack, app, name)`.
    pub name: String,
    /// Absolute path inside the container.
    pub path: String,
    /// What losing this volume costs. `default`: records stored before
    /// classes existed load as precious, the safe default.
    #[serde(default)]
    pub class: VolumeClass,
    /// `snapshot_before_update` of this volume (the app-wide key sets it
    /// on every volume). Only a precious volume is ever snapshotted.
    #[serde(default)]
    pub snapshot_before_update: bool,
}

/// How precious a volume's data is (issue 12). Only precious volumes are
/// ever snapshotted; the others can be downloaded or rebuilt again.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum VolumeClass {
    /// Wallets, channel backups, databases: cannot be had again.
    #[default]
    Precious,
    /// Chain data: can be downloaded again.
    Regenerable,
    /// A cache: can be thrown away.
    Cache,
}

impl VolumeClass {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeClass::Precious => "precious",
            VolumeClass::Regenerable => "regenerable",
            VolumeClass::Cache => "cache",
        }
    }
}

impl VolumeMount {
    /// Whether an update snapshots this volume before it stops the old
    /// container: asked for, and precious.
    pub fn snapshotted(&self) -> bool {
        self.snapshot_before_update && self.class == VolumeClass::Precious
    }
}

/// How an update of the app is judged and what it protects (issue 12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePolicy {
    /// The new version must run, pass its health check and stay healthy
    /// for `min_healthy` within this window, else the update reverts.
    pub window: Duration,
    /// How long the new version must stay running and healthy after its
    /// first healthy result (one passing probe is not enough).
    pub min_healthy: Duration,
    /// The app's data format version: an update to a manifest with a higher
    /// `data_version` migrates the data, and is refused (as is a rollback
    /// past it) unless a snapshot from before it exists.
    pub data_version: u32,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            window: Duration::from_secs(UPDATE_WINDOW_S_DEFAULT),
            min_healthy: Duration::from_secs(MIN_HEALTHY_S_DEFAULT),
            data_version: 0,
        }
    }
}

impl App {
    /// The volumes an update snapshots before it stops the old container.
    pub fn snapshot_volumes(&self) -> impl Iterator<Item = &VolumeMount> {
        self.volumes.iter().filter(|v| v.snapshotted())
    }

    /// The volumes that asked for a snapshot but are never snapshotted
    /// because of their class (the update says so).
    pub fn unsnapshotted_volumes(&self) -> impl Iterator<Item = &VolumeMount> {
        self.volumes
            .iter()
            .filter(|v| v.snapshot_before_update && v.class != VolumeClass::Precious)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum HealthKind {
    /// GET `http://<container>:<port><path>` answers 2xx/3xx.
    Http { port: u16, path: String },
    /// A TCP connect to `<container>:<port>` succeeds.
    Tcp { port: u16 },
    /// The command, executed in the container through the engine API, exits 0.
    Command { argv: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub kind: HealthKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures (after the start period) before unhealthy.
    pub retries: u32,
    /// Failures during this period after start do not count.
    pub start_period: Duration,
    /// A value the app reports that must advance (a chain tip), read on
    /// every round of the check; a round whose value has not advanced for
    /// longer than `within` fails. `default`: records stored before progress
    /// checks existed load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressCheck>,
}

/// The label of a value read from the app's chain probe, in reasons.
pub const PROGRESS_LABEL_CHAIN: &str = "chain tip";
/// The label of a value read over HTTP or by a command, in reasons.
pub const PROGRESS_LABEL_DEFAULT: &str = "progress value";

/// Where a progress check reads its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "source")]
pub enum ProgressSource {
    /// The height the app's own chain probe reads (bitcoind `blocks`,
    /// monerod `height`); the app has a `bitcoind` or `monerod` probe.
    ProbeHeight,
    /// `GET http://<container>:<port><path>` answering 2xx with a JSON body;
    /// the value is the number (or a string holding one) at `pointer`
    /// (RFC 6901; `""` is the whole body).
    Http {
        port: u16,
        path: String,
        pointer: String,
    },
    /// A command executed in the container through the engine API; exit 0,
    /// and the last non-empty line of its output is the value.
    Command { argv: Vec<String> },
}

/// "This value must advance within `within`" (see `crate::progress`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressCheck {
    pub source: ProgressSource,
    /// The value must rise at least once in every window this long (after
    /// the start period); longer than the check's `interval`.
    pub within: Duration,
    /// Names the value in reasons ("chain tip stuck at 812345 for 21m").
    pub label: String,
}

/// A web UI the app serves, reachable from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebUi {
    pub host_port: u16,
    pub path: String,
}

/// How berth reads a node's chain state (its "probe").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ProbeKind {
    /// bitcoind JSON-RPC `getblockchaininfo` (HTTP basic auth).
    Bitcoind {
        user: Option<String>,
        /// A secret of the node's app holding the RPC password.
        password_secret: Option<String>,
    },
    /// monerod JSON-RPC `get_info` on `POST /json_rpc`.
    Monerod,
    /// `GET path` answering 2xx means reachable and synced.
    Http { path: String },
    /// A TCP connect means reachable and synced.
    Tcp,
}

impl ProbeKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::Bitcoind { .. } => "bitcoind",
            ProbeKind::Monerod => "monerod",
            ProbeKind::Http { .. } => "http",
            ProbeKind::Tcp => "tcp",
        }
    }
}

/// A node app's chain probe, and the timing of its down/healthy verdicts.
/// The timing belongs to the node, not to its dependents: every dependent
/// sees one verdict ("monerod down since 12:03:10").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    /// Container port, reached on the container's address.
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    /// Unreachable without interruption this long (after having been
    /// reachable once) = down.
    pub down_after: Duration,
    /// Reachable without interruption this long = healthy again.
    pub recovery_after: Duration,
}

/// The nodes an app waits for (sync gate) and is turned away by (failover).
/// Every name is an app of the stack with a `probe`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateSpec {
    /// Held (kept stopped) until every one of these is synced.
    pub wait_for: Vec<String>,
    /// Never block the release; shown as passive badges.
    pub wait_for_optional: Vec<String>,
    /// After the release: stopped while any of these is down, started
    /// again once all are healthy.
    pub reject_when_down: Vec<String>,
    /// Ignored when down; shown as passive badges.
    pub reject_when_down_optional: Vec<String>,
}

impl GateSpec {
    /// The four lists with their manifest keys.
    pub fn lists(&self) -> [(&'static str, &Vec<String>); 4] {
        [
            ("wait_for", &self.wait_for),
            ("wait_for_optional", &self.wait_for_optional),
            ("reject_when_down", &self.reject_when_down),
            ("reject_when_down_optional", &self.reject_when_down_optional),
        ]
    }

    /// Every node the gate names, once each, in name order.
    pub fn nodes(&self) -> std::collections::BTreeSet<&str> {
        self.wait_for
            .iter()
            .chain(&self.wait_for_optional)
            .chain(&self.reject_when_down)
            .chain(&self.reject_when_down_optional)
            .map(String::as_str)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub id: String,
    /// Set for a companion: the app it is installed and removed with.
    pub companion_of: Option<String>,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<VolumeMount>,
    pub depends_on: BTreeMap<String, DependsCondition>,
    /// Explicit tier floor from the manifest; the effective tier also
    /// respects dependencies (see `graph`).
    pub tier: Option<u32>,
    pub stop_grace: Duration,
    pub restart: RestartPolicy,
    pub health: Option<HealthCheck>,
    /// Names of stack secrets handed to the container as files under
    /// `/run/secrets/<name>`.
    pub secrets: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub memory_bytes: Option<u64>,
    pub cap_add: Vec<String>,
    pub user: Option<String>,
    pub web_ui: Option<WebUi>,
    /// Ids of this app's companions (each also an entry of `Stack::apps`).
    pub companions: Vec<String>,
    /// How berth reads this app's chain state, when it is a node others
    /// gate on. `default`: records stored before gates existed load.
    #[serde(default)]
    pub probe: Option<ProbeSpec>,
    /// The nodes this app waits for and is rejected by.
    #[serde(default)]
    pub gate: Option<GateSpec>,
    /// `update_window`, `min_healthy` and `data_version`. `default`:
    /// records stored before updates existed load.
    #[serde(default)]
    pub update: UpdatePolicy,
}

impl Stack {
    pub fn app(&self, id: &str) -> Option<&App> {
        self.apps.get(id)
    }

    /// The app together with its companions, the unit install/uninstall act on.
    pub fn with_companions(&self, id: &str) -> Vec<&App> {
        let mut out = Vec::new();
        if let Some(app) = self.apps.get(id) {
            out.push(app);
            for c in &app.companions {
                if let Some(c) = self.apps.get(c) {
                    out.push(c);
                }
            }
        }
        out
    }
}
