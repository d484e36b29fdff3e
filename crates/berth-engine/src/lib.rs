//! The seam between berth and a container engine. `Engine` is the trait the
//! rest of berth uses; `api::ApiEngine` speaks the Docker-compatible HTTP API
//! of Docker and Podman through bollard; `fake::FakeEngine` records typed
//! calls for unit tests and can be told to fail.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use berth_core::observed::ObservedContainer;
use berth_core::spec::ContainerSpec;
use serde::{Deserialize, Serialize};

pub mod api;
pub mod detect;
pub mod fake;
pub mod podman_service;
mod rawhttp;
mod wire;

pub use api::{ApiEngine, AppliedConfig};
pub use detect::{HostAdjustments, HostReport, Ulimit, detect_host, podman_adjustments};
pub use fake::{Call, CallKind, FailKind, FakeEngine};
pub use podman_service::{
    ConnectOptions, EngineChoice, PodmanOptions, connect, connect_docker, connect_podman,
    connect_with,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Podman,
    Docker,
    Fake,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::Podman => "podman",
            EngineKind::Docker => "docker",
            EngineKind::Fake => "fake",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot be reached at all (socket missing, daemon down).
    #[error("{engine} engine unavailable: {detail}")]
    Unavailable { engine: EngineKind, detail: String },
    /// The named object does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The object already exists (name conflict).
    #[error("{what} already exists")]
    Conflict { what: String },
    /// Pulling an image failed.
    #[error("pull of image {image} failed: {detail}")]
    Pull { image: String, detail: String },
    /// A call did not finish in time.
    #[error("engine call {call} timed out after {after:?}")]
    Timeout { call: String, after: Duration },
    /// The engine answered with an error.
    #[error("engine call {call} failed: {detail}")]
    Api { call: String, detail: String },
}

impl EngineError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, EngineError::NotFound { .. })
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Facts about the engine, for `berth doctor`, status and run manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    pub kind: EngineKind,
    pub version: String,
    pub api_version: String,
    /// Where berth talks to it (a unix socket path).
    pub endpoint: String,
    pub os: String,
    pub kernel: String,
    pub cgroup_version: String,
    pub cgroup_driver: String,
    pub runtime: String,
}

/// One progress report of an image pull (layer granularity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    pub layer: Option<String>,
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

/// Output of a command executed inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub output: String,
}

/// An engine object of a kind berth manages, with its labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineObject {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// A container lifecycle event from the engine's event stream, normalised
/// across engines ("died" on Podman, "die" on Docker are both `Died`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    pub container: String,
    pub app: Option<String>,
    pub action: EngineEventAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineEventAction {
    Started,
    Died,
    Removed,
    Other,
}

impl EngineEventAction {
    /// Normalise an engine's action word: Docker says `die`/`destroy`,
    /// Podman `died`/`remove`; both say `start`. Docker appends details to
    /// some actions (`exec_start: sh -c …`), so only the word before a
    /// colon counts.
    pub fn parse(action: &str) -> EngineEventAction {
        match action.split(':').next().unwrap_or("").trim() {
            "start" => EngineEventAction::Started,
            "die" | "died" => EngineEventAction::Died,
            "destroy" | "remove" => EngineEventAction::Removed,
            _ => EngineEventAction::Other,
        }
    }
}

/// The operations berth needs from a container engine. Every method is one
/// engine API call unless documented otherwise.
#[async_trait]
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;

    /// Engine version and host facts.
    async fn info(&self) -> Result<EngineInfo>;

    /// Every container (any state) carrying label `key=value`. One call.
    async fn list_containers(&self, label: (&str, &str)) -> Result<Vec<ObservedContainer>>;

    /// Full view of one container (exit code, OOM flag, start time).
    /// `Ok(None)` when it does not exist.
    async fn inspect_container(&self, name: &str) -> Result<Option<ObservedContainer>>;

    /// The container's IP address on `network`, for berth's own probes.
    async fn container_ip(&self, name: &str, network: &str) -> Result<Option<String>>;

    async fn image_exists(&self, image: &str) -> Result<bool>;

    /// Pull `image`, reporting progress. One attempt: retries are the
    /// caller's policy. `insecure_registries` hosts are pulled over plain HTTP.
    async fn pull_image(
        &self,
        image: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()>;

    /// Create the network if missing. Returns true when this call created it.
    async fn ensure_network(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool>;
    async fn remove_network(&self, name: &str) -> Result<()>;
    async fn list_networks(&self, label: (&str, &str)) -> Result<Vec<EngineObject>>;

    /// Create the volume if missing. Returns true when this call created it.
    async fn ensure_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool>;
    async fn remove_volume(&self, name: &str) -> Result<()>;
    async fn list_volumes(&self, label: (&str, &str)) -> Result<Vec<EngineObject>>;

    /// Create (not start) a container from `spec`. Returns its id.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String>;
    async fn start_container(&self, name: &str) -> Result<()>;
    /// Stop with SIGTERM, then SIGKILL after `grace`.
    async fn stop_container(&self, name: &str, grace: Duration) -> Result<()>;
    /// Send a signal to the container's main process (crash injection).
    async fn kill_container(&self, name: &str, signal: &str) -> Result<()>;
    /// Remove a container (force also removes a running one). Missing is Ok.
    async fn remove_container(&self, name: &str, force: bool) -> Result<()>;
    /// Rename a container (an update keeps the old one under another name
    /// until the new one proved itself). `NotFound` when `name` does not
    /// exist, `Conflict` when `new_name` is taken.
    async fn rename_container(&self, name: &str, new_name: &str) -> Result<()>;
    /// The id of the image a container was created from (what the engine
    /// actually runs, whatever the tag points at now). `Ok(None)` when the
    /// container does not exist.
    async fn container_image_id(&self, name: &str) -> Result<Option<String>>;

    /// The last `tail` lines of the container's stdout/stderr.
    async fn logs(&self, name: &str, tail: usize) -> Result<Vec<String>>;

    /// Run `argv` in the running container, bounded by `timeout`.
    async fn exec(&self, name: &str, argv: &[String], timeout: Duration) -> Result<ExecOutput>;

    /// Follow the engine's event stream and pass every lifecycle event of a
    /// berth-managed container (label `io.berth.managed`) to `sink`. Runs
    /// until the stream ends or fails (the caller reconnects) and stops as
    /// soon as the returned future is dropped: it spawns nothing. One call.
    async fn watch_events(&self, sink: &(dyn Fn(EngineEvent) + Send + Sync)) -> Result<()>;

    /// Total API calls made so far (for benchmarks and the no-op-tick rule).
    fn call_count(&self) -> u64;
}

#[cfg(test)]
mod tests {
    use super::EngineEventAction as A;

    #[test]
    fn event_actions_of_both_engines_are_normalised() {
        assert_eq!(A::parse("start"), A::Started);
        assert_eq!(A::parse("die"), A::Died); // Docker
        assert_eq!(A::parse("died"), A::Died); // Podman
        assert_eq!(A::parse("destroy"), A::Removed); // Docker
        assert_eq!(A::parse("remove"), A::Removed); // Podman
        assert_eq!(A::parse("exec_start: sh -c true"), A::Other);
        assert_eq!(A::parse("cleanup"), A::Other);
    }
}
