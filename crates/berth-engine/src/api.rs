//! `ApiEngine`: the `Engine` trait over the Docker-compatible HTTP API that
//! both Docker and Podman serve, through bollard.
//!
//! Engine differences handled here (each measured on Podman 4.3.1 and
//! Docker 20.10, see the integration tests in `tests/engines.rs`):
//!
//! - Neither engine's container list carries a numeric exit code; it is
//!   parsed from the status text ("Exited (137) 3 seconds ago").
//! - Podman reports container states Docker has not (`stopped` between
//!   exit and cleanup), which bollard's closed enum rejects, failing the
//!   whole list; list and inspect are therefore parsed leniently
//!   (`wire`), over the same socket.
//! - Podman's compat API ignores `HostConfig.Runtime`; the OCI runtime and
//!   cgroup manager are properties of the Podman service (see
//!   `podman_service`). Ulimits, in contrast, are per container and berth
//!   sets them explicitly when `HostAdjustments` asks for it.
//! - Podman 4.3 honours `max-size` but not `max-file` (conmon truncates the
//!   single log file in place) and reports neither through the compat
//!   inspect; berth asks for `k8s-file` with `max-size` and reads the
//!   effective size back from the libpod inspect.
//! - Podman's compat pull cannot skip TLS, so a plain-HTTP registry is
//!   pulled through the libpod endpoint with `tlsVerify=false`. Docker
//!   treats 127.0.0.0/8 registries as insecure by itself; other insecure
//!   registries must be listed in its daemon.json.
//! - Docker before API 1.44 creates duplicate networks unless asked with
//!   `CheckDuplicate`, a field bollard's current models no longer carry, so
//!   networks are created with a raw request; even then its check is not
//!   atomic, so creation is also serialised within the process.
//! - Podman 4.3 answers a container name clash with 500 ("already in
//!   use"), not 409; both map to `EngineError::Conflict`.
//! - Both engines answer a volume create for an existing name with success,
//!   so `ensure_volume` inspects first to know whether it created it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use berth_core::model::Protocol;
use berth_core::observed::ObservedContainer;
use berth_core::spec::ContainerSpec;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, Mount, MountType,
    NetworkingConfig, PortBinding, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectNetworkOptions,
    KillContainerOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures_util::StreamExt;
use hyper::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::detect::{HostAdjustments, Ulimit};
use crate::rawhttp::{self, RawError};
use crate::wire;
use crate::{
    Engine, EngineError, EngineEvent, EngineEventAction, EngineInfo, EngineKind, EngineObject,
    ExecOutput, PullProgress, Result,
};

/// Request timeout of ordinary API calls (until the response head).
pub const REQUEST_TIMEOUT_S: u64 = 120;
/// Attempts at creating a network when the engine answers 5xx.
pub const NETWORK_CREATE_ATTEMPTS: u32 = 3;
/// Wait before the second attempt (then twice this before the third).
pub const NETWORK_CREATE_RETRY_MS: u64 = 200;
/// Extra time a stop request gets beyond the grace period: the engine
/// answers only after the container is gone, which includes SIGKILL and
/// cleanup after the grace period.
pub const STOP_SLACK_S: u64 = 60;
/// A pull that reports nothing for this long is abandoned.
pub const PULL_IDLE_TIMEOUT_S: u64 = 300;
/// Upper bound on `logs(tail)`.
pub const LOG_TAIL_LINES_MAX: usize = 10_000;
/// Upper bound on captured exec output; the rest is dropped.
pub const EXEC_OUTPUT_BYTES_MAX: usize = 1 << 20;
/// An event stream that says nothing for this long is reconnected (an
/// idle engine is silent; the caller's periodic tick covers the gap).
pub const EVENTS_IDLE_TIMEOUT_S: u64 = 3_600;
/// Podman may report an exec as still running for a moment after its
/// output stream ended; how often to look again.
const EXEC_EXIT_POLL_MS: u64 = 20;

/// What the engine actually applied to a container, read back from inspect
/// (for `berth doctor`, `berth verify` and the integration tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedConfig {
    pub cap_add: Vec<String>,
    /// Docker reports `["ALL"]`; Podman expands ALL into the list of its
    /// default capabilities.
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    /// The log driver as the engine reports it (Podman's compat inspect
    /// always says `json-file`; this is the libpod view: `k8s-file`).
    pub log_driver: String,
    /// Effective log size cap: Docker's `max-size` option ("10m") or
    /// Podman's log size ("10MB"). `None` when uncapped.
    pub log_max_size: Option<String>,
    /// Docker's `max-file`; Podman keeps a single file.
    pub log_max_files: Option<String>,
    pub memory_bytes: Option<i64>,
    pub restart_policy: String,
    pub ulimits: Vec<Ulimit>,
    pub user: String,
    pub stop_timeout_s: Option<i64>,
}

/// An engine reached over its Docker-compatible API socket.
#[derive(Clone)]
pub struct ApiEngine {
    kind: EngineKind,
    docker: Docker,
    socket: PathBuf,
    adjust: HostAdjustments,
    server_version: String,
    api_version: String,
    /// Podman's libpod API version ("4.3.1"), for the few libpod calls.
    libpod_version: Option<String>,
    insecure_registries: Vec<String>,
    calls: Arc<AtomicU64>,
    /// Serialises network creation in this process: Docker's duplicate
    /// check is not atomic, and two concurrent creates of one name make two
    /// networks (measured on 20.10). Cross-process, berth's state lock
    /// already serialises mutating commands.
    network_create: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for ApiEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiEngine")
            .field("kind", &self.kind)
            .field("socket", &self.socket)
            .field("server_version", &self.server_version)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

impl ApiEngine {
    /// Connect to Docker at `socket` and negotiate the API version.
    pub async fn docker(socket: &Path) -> Result<ApiEngine> {
        Self::connect(EngineKind::Docker, socket, HostAdjustments::default()).await
    }

    /// Connect to a Podman API service at `socket` and negotiate the API
    /// version. `adjust` carries the per-container settings this host needs
    /// (see `detect::podman_adjustments`).
    pub async fn podman(socket: &Path, adjust: HostAdjustments) -> Result<ApiEngine> {
        Self::connect(EngineKind::Podman, socket, adjust).await
    }

    async fn connect(
        kind: EngineKind,
        socket: &Path,
        adjust: HostAdjustments,
    ) -> Result<ApiEngine> {
        let unavailable = |detail: String| EngineError::Unavailable {
            engine: kind,
            detail,
        };
        let path = socket
            .to_str()
            .ok_or_else(|| unavailable(format!("socket path {} is not UTF-8", socket.display())))?;
        if !socket.exists() {
            return Err(unavailable(format!(
                "socket {} does not exist{}",
                socket.display(),
                start_hint(kind)
            )));
        }
        let docker = Docker::connect_with_unix(path, REQUEST_TIMEOUT_S, API_DEFAULT_VERSION)
            .map_err(|e| unavailable(format!("cannot use socket {}: {e}", socket.display())))?;
        let mut engine = ApiEngine {
            kind,
            docker,
            socket: socket.to_path_buf(),
            adjust,
            server_version: String::new(),
            api_version: String::new(),
            libpod_version: None,
            insecure_registries: Vec::new(),
            calls: Arc::new(AtomicU64::new(0)),
            network_create: Arc::new(tokio::sync::Mutex::new(())),
        };
        engine.count();
        let (status, versions) =
            rawhttp::ping_versions(socket, Duration::from_secs(REQUEST_TIMEOUT_S))
                .await
                .map_err(|e| {
                    unavailable(format!(
                        "{} does not answer: {e}{}",
                        socket.display(),
                        start_hint(kind)
                    ))
                })?;
        if status != 200 {
            return Err(unavailable(format!(
                "{} answered /_ping with {status}",
                socket.display()
            )));
        }
        // Speak the older of our default and the server's API version.
        let server = versions.api.as_deref().and_then(parse_api_version);
        let ours = (
            API_DEFAULT_VERSION.major_version,
            API_DEFAULT_VERSION.minor_version,
        );
        let (major, minor) = match server {
            Some(v) if v < ours => v,
            _ => ours,
        };
        let version = bollard::ClientVersion {
            major_version: major,
            minor_version: minor,
        };
        let docker = Docker::connect_with_unix(path, REQUEST_TIMEOUT_S, &version)
            .map_err(|e| unavailable(format!("cannot use socket {}: {e}", socket.display())))?;
        engine.api_version = format!("{major}.{minor}");
        engine.libpod_version = versions.libpod.clone();
        if kind == EngineKind::Podman && engine.libpod_version.is_none() {
            return Err(EngineError::Api {
                call: "_ping".into(),
                detail: format!(
                    "{} does not look like a Podman service (no Libpod-Api-Version header)",
                    socket.display()
                ),
            });
        }
        engine.docker = docker;
        Ok(engine)
    }

    /// Also treat these registry hosts (`host[:port]`) as plain HTTP when
    /// pulling with Podman. Loopback registries always are, as with Docker.
    /// (Docker itself only honours its own daemon.json for this.)
    pub fn with_insecure_registries(mut self, hosts: Vec<String>) -> Self {
        self.insecure_registries = hosts;
        self
    }

    /// The socket this engine is reached through.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The per-container host adjustments in force (Podman only).
    pub fn adjustments(&self) -> &HostAdjustments {
        &self.adjust
    }

    /// What the engine applied to container `name`: capabilities, security
    /// options, log rotation, memory, ulimits. `Ok(None)` when missing.
    pub async fn applied_config(&self, name: &str) -> Result<Option<AppliedConfig>> {
        let Some(inspect) = self.inspect_wire(name).await? else {
            return Ok(None);
        };
        let mut applied = inspect.applied();
        if self.kind == EngineKind::Podman {
            // The compat inspect hides Podman's log settings (it always says
            // json-file, without options); the libpod inspect has them.
            let libpod: Option<wire::LibpodInspect> = self
                .get_json(
                    "libpod_inspect",
                    &self.libpod_path(&format!("/containers/{}/json", rawhttp::query_escape(name))),
                )
                .await?;
            if let Some(log) = libpod.and_then(|l| l.host_config?.log_config) {
                if let Some(driver) = log.typ {
                    applied.log_driver = driver;
                }
                applied.log_max_size = log
                    .size
                    .filter(|s| !s.is_empty() && s != "0B" && s != "-1B");
            }
        }
        Ok(Some(applied))
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// A client whose request timeout is `timeout` (for calls that
    /// legitimately take longer than `REQUEST_TIMEOUT_S`).
    fn client_with_timeout(&self, timeout: Duration) -> Docker {
        self.docker.clone().with_timeout(timeout)
    }

    fn map_err(&self, call: &str, what: &str, e: BollardError) -> EngineError {
        map_bollard_error(self.kind, &self.socket, call, what, REQUEST_TIMEOUT_S, e)
    }

    fn map_raw_err(&self, call: &str, e: RawError) -> EngineError {
        match e {
            RawError::Connect { socket, source } => EngineError::Unavailable {
                engine: self.kind,
                detail: format!(
                    "cannot connect to {socket}: {source}{}",
                    start_hint(self.kind)
                ),
            },
            RawError::Timeout(after) => EngineError::Timeout {
                call: call.into(),
                after,
            },
            other => EngineError::Api {
                call: call.into(),
                detail: other.to_string(),
            },
        }
    }

    /// A compat API path under the negotiated version.
    fn compat_path(&self, path: &str) -> String {
        format!("/v{}{path}", self.api_version)
    }

    /// A libpod API path (Podman only).
    fn libpod_path(&self, path: &str) -> String {
        let version = self.libpod_version.as_deref().unwrap_or("4.0.0");
        format!("/v{version}/libpod{path}")
    }

    /// GET `path` and parse the JSON answer; `Ok(None)` on 404.
    async fn get_json<T: DeserializeOwned>(&self, call: &str, path: &str) -> Result<Option<T>> {
        self.count();
        let (status, body) = rawhttp::request(
            &self.socket,
            Method::GET,
            path,
            None,
            Duration::from_secs(REQUEST_TIMEOUT_S),
        )
        .await
        .map_err(|e| self.map_raw_err(call, e))?;
        match status {
            200..=299 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| EngineError::Api {
                    call: call.into(),
                    detail: format!("unparsable answer: {e}"),
                }),
            404 => Ok(None),
            _ => Err(EngineError::Api {
                call: call.into(),
                detail: format!("status {status}: {}", error_message(&body)),
            }),
        }
    }

    async fn inspect_wire(&self, name: &str) -> Result<Option<wire::Inspect>> {
        let path = self.compat_path(&format!("/containers/{}/json", rawhttp::query_escape(name)));
        self.get_json("inspect_container", &path).await
    }

    /// Whether `image` should be pulled over plain HTTP.
    fn registry_is_insecure(&self, image: &str) -> bool {
        match registry_host(image) {
            Some(host) => {
                is_loopback_registry(host) || self.insecure_registries.iter().any(|h| h == host)
            }
            None => false,
        }
    }

    async fn pull_docker(
        &self,
        image: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()> {
        let (repo, tag) = split_image(image);
        let options = CreateImageOptionsBuilder::default()
            .from_image(&repo)
            .tag(&tag)
            .build();
        // The request timeout covers only the response head; progress after
        // that is bounded by the idle timeout below.
        self.count();
        let mut stream = self.docker.create_image(Some(options), None, None);
        let idle = Duration::from_secs(PULL_IDLE_TIMEOUT_S);
        loop {
            let item = match tokio::time::timeout(idle, stream.next()).await {
                Err(_) => {
                    return Err(EngineError::Pull {
                        image: image.into(),
                        detail: format!("no progress from the engine for {idle:?}"),
                    });
                }
                Ok(None) => return Ok(()),
                Ok(Some(item)) => item,
            };
            match item {
                Ok(info) => {
                    let detail = info.progress_detail.unwrap_or_default();
                    progress(PullProgress {
                        layer: info.id,
                        status: info.status.unwrap_or_default(),
                        current: detail.current.and_then(|c| u64::try_from(c).ok()),
                        total: detail.total.and_then(|t| u64::try_from(t).ok()),
                    });
                }
                Err(e) => {
                    return Err(
                        match self.map_err("pull_image", &format!("image {image}"), e) {
                            unavailable @ EngineError::Unavailable { .. } => unavailable,
                            other => EngineError::Pull {
                                image: image.into(),
                                detail: pull_detail(other),
                            },
                        },
                    );
                }
            }
        }
    }

    async fn pull_podman(
        &self,
        image: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()> {
        let tls_verify = !self.registry_is_insecure(image);
        let path = self.libpod_path(&format!(
            "/images/pull?reference={}&tlsVerify={tls_verify}",
            rawhttp::query_escape(image)
        ));
        let mut stream_error: Option<String> = None;
        let mut error_body = Vec::new();
        let mut on_line = |line: &[u8]| {
            if line.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            if error_body.len() < 64 * 1024 {
                error_body.extend_from_slice(line);
            }
            let Ok(msg) = serde_json::from_slice::<LibpodPullLine>(line) else {
                return;
            };
            if let Some(err) = msg.error.filter(|e| !e.is_empty()) {
                stream_error.get_or_insert(err);
            } else if let Some(text) = msg.stream {
                let text = text.trim().to_string();
                let layer = text
                    .strip_prefix("Copying blob ")
                    .map(|digest| digest.split_whitespace().next().unwrap_or("").to_string());
                progress(PullProgress {
                    layer,
                    status: text,
                    current: None,
                    total: None,
                });
            } else if let Some(id) = msg.id {
                progress(PullProgress {
                    layer: None,
                    status: format!("pulled {id}"),
                    current: None,
                    total: None,
                });
            }
        };
        self.count();
        let status = rawhttp::request_lines(
            &self.socket,
            Method::POST,
            &path,
            None,
            Duration::from_secs(REQUEST_TIMEOUT_S),
            Duration::from_secs(PULL_IDLE_TIMEOUT_S),
            rawhttp::LINE_BYTES_MAX,
            &mut on_line,
        )
        .await
        .map_err(|e| match self.map_raw_err("pull_image", e) {
            unavailable @ EngineError::Unavailable { .. } => unavailable,
            other => EngineError::Pull {
                image: image.into(),
                detail: pull_detail(other),
            },
        })?;
        if !(200..300).contains(&status) {
            return Err(EngineError::Pull {
                image: image.into(),
                detail: format!("status {status}: {}", error_message(&error_body)),
            });
        }
        match stream_error {
            Some(detail) => Err(EngineError::Pull {
                image: image.into(),
                detail,
            }),
            None => Ok(()),
        }
    }

    fn create_body(&self, spec: &ContainerSpec) -> ContainerCreateBody {
        let mut exposed = Vec::new();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for port in &spec.ports {
            let key = format!(
                "{}/{}",
                port.container_port,
                match port.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                }
            );
            if !exposed.contains(&key) {
                exposed.push(key.clone());
            }
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    // None binds every address (the engine's default).
                    host_ip: port.host_ip.clone(),
                    host_port: Some(port.host_port.to_string()),
                });
        }
        let mut mounts: Vec<Mount> = spec
            .volumes
            .iter()
            .map(|v| Mount {
                typ: Some(MountType::VOLUME),
                source: Some(v.volume.clone()),
                target: Some(v.container_path.clone()),
                read_only: Some(false),
                ..Default::default()
            })
            .collect();
        mounts.extend(spec.binds.iter().map(|b| Mount {
            typ: Some(MountType::BIND),
            source: Some(b.host_path.clone()),
            target: Some(b.container_path.clone()),
            read_only: Some(b.read_only),
            ..Default::default()
        }));
        let log_config = match self.kind {
            // Podman 4.3: `json-file` is an alias of its own k8s-file
            // format; `max-size` is honoured, `max-file` is not (one file,
            // truncated by conmon when full).
            EngineKind::Podman => HostConfigLogConfig {
                typ: Some("k8s-file".into()),
                config: Some(HashMap::from([(
                    "max-size".to_string(),
                    spec.log_max_size.clone(),
                )])),
            },
            _ => HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), spec.log_max_size.clone()),
                    ("max-file".to_string(), spec.log_max_files.to_string()),
                ])),
            },
        };
        let ulimits =
            (self.kind == EngineKind::Podman && !self.adjust.ulimits.is_empty()).then(|| {
                self.adjust
                    .ulimits
                    .iter()
                    .map(|u| ResourcesUlimits {
                        name: Some(u.name.clone()),
                        soft: Some(i64::try_from(u.soft).unwrap_or(i64::MAX)),
                        hard: Some(i64::try_from(u.hard).unwrap_or(i64::MAX)),
                    })
                    .collect()
            });
        let host_config = HostConfig {
            memory: spec
                .memory_bytes
                .map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
            ulimits,
            log_config: Some(log_config),
            network_mode: Some(spec.network.clone()),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            // berth supervises restarts itself.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            mounts: (!mounts.is_empty()).then_some(mounts),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
            cap_drop: spec.cap_drop_all.then(|| vec!["ALL".to_string()]),
            security_opt: spec
                .no_new_privileges
                .then(|| vec!["no-new-privileges".to_string()]),
            ..Default::default()
        };
        let networking_config = NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.clone(),
                EndpointSettings {
                    aliases: (!spec.aliases.is_empty()).then(|| spec.aliases.clone()),
                    ..Default::default()
                },
            )])),
        };
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.command.clone(),
            env: (!spec.env.is_empty())
                .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            user: spec.user.clone(),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            stop_timeout: Some(i64::try_from(spec.stop_grace_s).unwrap_or(i64::MAX)),
            host_config: Some(host_config),
            networking_config: Some(networking_config),
            ..Default::default()
        }
    }
}

#[derive(Deserialize)]
struct LibpodPullLine {
    stream: Option<String>,
    error: Option<String>,
    id: Option<String>,
}

#[async_trait]
impl Engine for ApiEngine {
    fn kind(&self) -> EngineKind {
        self.kind
    }

    async fn info(&self) -> Result<EngineInfo> {
        self.count();
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| self.map_err("info", "engine", e))?;
        Ok(EngineInfo {
            kind: self.kind,
            version: info
                .server_version
                .unwrap_or_else(|| self.server_version.clone()),
            api_version: match &self.libpod_version {
                Some(libpod) => format!("{} (libpod {libpod})", self.api_version),
                None => self.api_version.clone(),
            },
            endpoint: self.socket.display().to_string(),
            os: info.operating_system.unwrap_or_default(),
            kernel: info.kernel_version.unwrap_or_default(),
            cgroup_version: info
                .cgroup_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
            cgroup_driver: info
                .cgroup_driver
                .map(|d| d.to_string())
                .unwrap_or_default(),
            runtime: info.default_runtime.unwrap_or_default(),
        })
    }

    async fn list_containers(&self, label: (&str, &str)) -> Result<Vec<ObservedContainer>> {
        let filters = serde_json::json!({ "label": [format!("{}={}", label.0, label.1)] });
        let query = format!(
            "/containers/json?all=true&filters={}",
            rawhttp::query_escape(&filters.to_string())
        );
        if self.kind == EngineKind::Podman {
            let list: Vec<wire::LibpodSummary> = self
                .get_json("list_containers", &self.libpod_path(&query))
                .await?
                .unwrap_or_default();
            return Ok(list
                .into_iter()
                .map(wire::LibpodSummary::observed)
                .collect());
        }
        let list: Vec<wire::Summary> = self
            .get_json("list_containers", &self.compat_path(&query))
            .await?
            .unwrap_or_default();
        Ok(list.into_iter().map(wire::Summary::observed).collect())
    }

    async fn inspect_container(&self, name: &str) -> Result<Option<ObservedContainer>> {
        Ok(self.inspect_wire(name).await?.map(|i| i.observed()))
    }

    async fn container_ip(&self, name: &str, network: &str) -> Result<Option<String>> {
        Ok(self
            .inspect_wire(name)
            .await?
            .and_then(|i| i.ip_on(network)))
    }

    async fn image_exists(&self, image: &str) -> Result<bool> {
        self.count();
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(self.map_err("image_exists", &format!("image {image}"), e)),
        }
    }

    async fn pull_image(
        &self,
        image: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()> {
        match self.kind {
            EngineKind::Podman => self.pull_podman(image, progress).await,
            _ => self.pull_docker(image, progress).await,
        }
    }

    async fn ensure_network(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool> {
        let _serial = self.network_create.lock().await;
        self.count();
        match self
            .docker
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            // Docker resolves ID prefixes too; only an exact name counts.
            Ok(net) if net.name.as_deref() == Some(name) => return Ok(false),
            Ok(_)
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(self.map_err("ensure_network", &format!("network {name}"), e)),
        }
        let body = serde_json::json!({
            "Name": name,
            "Driver": "bridge",
            "CheckDuplicate": true,
            "Labels": labels,
        });
        let mut attempt = 1;
        loop {
            self.count();
            let (status, answer) = rawhttp::request(
                &self.socket,
                Method::POST,
                &self.compat_path("/networks/create"),
                Some(body.to_string().into_bytes()),
                Duration::from_secs(REQUEST_TIMEOUT_S),
            )
            .await
            .map_err(|e| self.map_raw_err("ensure_network", e))?;
            match status {
                200..=299 => return Ok(true),
                // Created concurrently by someone else: it exists, which is
                // all the caller asked for.
                409 => return Ok(false),
                // Podman 4.3 answers 500 ("route ip+net: no such network
                // interface") when another network's bridge comes or goes at
                // the same moment; a moment later the same create succeeds.
                500..=599 if attempt < NETWORK_CREATE_ATTEMPTS => {
                    tracing::warn!(
                        network = name,
                        status,
                        error = %error_message(&answer),
                        attempt,
                        "network create failed; trying again"
                    );
                    tokio::time::sleep(Duration::from_millis(
                        NETWORK_CREATE_RETRY_MS * u64::from(attempt),
                    ))
                    .await;
                    attempt += 1;
                }
                _ => {
                    return Err(EngineError::Api {
                        call: "ensure_network".into(),
                        detail: format!(
                            "network {name}: status {status}: {}{}",
                            error_message(&answer),
                            if attempt > 1 {
                                format!(" (after {attempt} attempts)")
                            } else {
                                String::new()
                            }
                        ),
                    });
                }
            }
        }
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        self.count();
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 403 | 409,
                message,
            }) => Err(EngineError::Conflict {
                what: format!("network {name} in use ({message})"),
            }),
            Err(e) => Err(self.map_err("remove_network", &format!("network {name}"), e)),
        }
    }

    async fn list_networks(&self, label: (&str, &str)) -> Result<Vec<EngineObject>> {
        let filters = HashMap::from([("label", vec![format!("{}={}", label.0, label.1)])]);
        let options = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        self.count();
        let nets = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|e| self.map_err("list_networks", "networks", e))?;
        Ok(nets
            .into_iter()
            .map(|n| EngineObject {
                name: n.name.unwrap_or_default(),
                labels: n.labels.unwrap_or_default().into_iter().collect(),
            })
            .collect())
    }

    async fn ensure_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool> {
        // Both engines answer "created" for an existing volume name, so
        // existence is checked first. Two concurrent creators may both
        // report true; the volume exists once either way.
        self.count();
        match self.docker.inspect_volume(name).await {
            Ok(_) => return Ok(false),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(self.map_err("ensure_volume", &format!("volume {name}"), e)),
        }
        self.count();
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                driver: Some("local".into()),
                labels: Some(labels.clone().into_iter().collect()),
                ..Default::default()
            })
            .await
            .map_err(|e| self.map_err("ensure_volume", &format!("volume {name}"), e))?;
        Ok(true)
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.count();
        let options = RemoveVolumeOptionsBuilder::default().force(false).build();
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.map_err("remove_volume", &format!("volume {name}"), e)),
        }
    }

    async fn list_volumes(&self, label: (&str, &str)) -> Result<Vec<EngineObject>> {
        let filters = HashMap::from([("label", vec![format!("{}={}", label.0, label.1)])]);
        let options = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        self.count();
        let list = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| self.map_err("list_volumes", "volumes", e))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| EngineObject {
                name: v.name,
                labels: v.labels.into_iter().collect(),
            })
            .collect())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let body = self.create_body(spec);
        self.count();
        match self.docker.create_container(Some(options), body).await {
            Ok(created) => Ok(created.id),
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) => Err(EngineError::NotFound {
                what: format!(
                    "image {} (creating container {}: {message})",
                    spec.image, spec.name
                ),
            }),
            // Podman 4.3 answers a name clash with 500, not 409.
            Err(BollardError::DockerResponseServerError {
                status_code: 500,
                message,
            }) if message.contains("already in use") => Err(EngineError::Conflict {
                what: format!("container {} ({message})", spec.name),
            }),
            Err(e) => Err(self.map_err("create_container", &format!("container {}", spec.name), e)),
        }
    }

    async fn start_container(&self, name: &str) -> Result<()> {
        self.count();
        self.docker
            .start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| self.map_err("start_container", &format!("container {name}"), e))
    }

    async fn stop_container(&self, name: &str, grace: Duration) -> Result<()> {
        // Round the grace up: stopping earlier than promised is the one
        // thing a grace period must never do.
        let grace_s = grace
            .as_secs()
            .saturating_add(u64::from(grace.subsec_nanos() > 0));
        let options = StopContainerOptionsBuilder::default()
            .t(i32::try_from(grace_s).unwrap_or(i32::MAX))
            .build();
        // Saturating: a grace the manifest bounds can never wrap this, but an
        // engine call's timeout must not depend on every caller bounding it.
        let timeout_s = grace_s.saturating_add(STOP_SLACK_S);
        self.count();
        self.client_with_timeout(Duration::from_secs(timeout_s))
            .stop_container(name, Some(options))
            .await
            .map_err(|e| {
                map_bollard_error(
                    self.kind,
                    &self.socket,
                    "stop_container",
                    &format!("container {name}"),
                    timeout_s,
                    e,
                )
            })
    }

    async fn kill_container(&self, name: &str, signal: &str) -> Result<()> {
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        self.count();
        self.docker
            .kill_container(name, Some(options))
            .await
            .map_err(|e| self.map_err("kill_container", &format!("container {name}"), e))
    }

    async fn remove_container(&self, name: &str, force: bool) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(force)
            // Anonymous volumes declared by the image go with the
            // container; named volumes (berth's data) are never touched.
            .v(true)
            .build();
        self.count();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(self.map_err("remove_container", &format!("container {name}"), e)),
        }
    }

    async fn container_image_id(&self, name: &str) -> Result<Option<String>> {
        Ok(self.inspect_wire(name).await?.and_then(|i| i.image))
    }

    async fn rename_container(&self, name: &str, new_name: &str) -> Result<()> {
        let options = RenameContainerOptionsBuilder::default()
            .name(new_name)
            .build();
        self.count();
        self.docker
            .rename_container(name, options)
            .await
            .map_err(|e| self.map_err("rename_container", &format!("container {name}"), e))
    }

    async fn logs(&self, name: &str, tail: usize) -> Result<Vec<String>> {
        let tail = tail.min(LOG_TAIL_LINES_MAX);
        if tail == 0 {
            return Ok(Vec::new());
        }
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&tail.to_string())
            .build();
        self.count();
        let mut stream = self.docker.logs(name, Some(options));
        let mut lines = LineCollector::default();
        while let Some(item) = stream.next().await {
            match item {
                Ok(output) => {
                    let stream_id = match &output {
                        bollard::container::LogOutput::StdErr { .. } => 1,
                        _ => 0,
                    };
                    lines.push(stream_id, &output.into_bytes());
                }
                Err(e) => {
                    return Err(self.map_err("logs", &format!("container {name}"), e));
                }
            }
        }
        let mut all = lines.finish();
        let skip = all.len().saturating_sub(tail);
        all.drain(..skip);
        Ok(all)
    }

    async fn exec(&self, name: &str, argv: &[String], timeout: Duration) -> Result<ExecOutput> {
        let work = async {
            self.count();
            let created = self
                .docker
                .create_exec(
                    name,
                    CreateExecOptions {
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        cmd: Some(argv.to_vec()),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| self.map_err("exec", &format!("container {name}"), e))?;
            self.count();
            let started = self
                .docker
                .start_exec(
                    &created.id,
                    Some(StartExecOptions {
                        detach: false,
                        tty: false,
                        output_capacity: None,
                    }),
                )
                .await
                .map_err(|e| self.map_err("exec", &format!("container {name}"), e))?;
            let mut output = Vec::new();
            if let StartExecResults::Attached {
                output: mut out, ..
            } = started
            {
                while let Some(item) = out.next().await {
                    let chunk = item
                        .map_err(|e| self.map_err("exec", &format!("container {name}"), e))?
                        .into_bytes();
                    let room = EXEC_OUTPUT_BYTES_MAX.saturating_sub(output.len());
                    output.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
            }
            loop {
                self.count();
                let inspect = self
                    .docker
                    .inspect_exec(&created.id)
                    .await
                    .map_err(|e| self.map_err("exec", &format!("container {name}"), e))?;
                match (inspect.running, inspect.exit_code) {
                    (Some(true), _) | (_, None) => {
                        tokio::time::sleep(Duration::from_millis(EXEC_EXIT_POLL_MS)).await;
                    }
                    (_, Some(code)) => {
                        return Ok(ExecOutput {
                            exit_code: code,
                            output: String::from_utf8_lossy(&output).into_owned(),
                        });
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(EngineError::Timeout {
                call: format!("exec in container {name}"),
                after: timeout,
            }),
        }
    }

    async fn watch_events(&self, sink: &(dyn Fn(EngineEvent) + Send + Sync)) -> Result<()> {
        // Filtered by the engine (type and label) and again here: Podman's
        // compat endpoint has honoured filters unevenly across versions.
        let filters = serde_json::json!({
            "type": ["container"],
            "label": [format!("{}=true", berth_core::naming::LABEL_MANAGED)],
        });
        let path = self.compat_path(&format!(
            "/events?filters={}",
            rawhttp::query_escape(&filters.to_string())
        ));
        let mut on_line = |line: &[u8]| {
            if let Some(event) = parse_event_line(line) {
                sink(event);
            }
        };
        self.count();
        let status = rawhttp::request_lines(
            &self.socket,
            Method::GET,
            &path,
            None,
            Duration::from_secs(REQUEST_TIMEOUT_S),
            Duration::from_secs(EVENTS_IDLE_TIMEOUT_S),
            rawhttp::LINE_BYTES_MAX,
            &mut on_line,
        )
        .await
        .map_err(|e| self.map_raw_err("events", e))?;
        if !(200..300).contains(&status) {
            return Err(EngineError::Api {
                call: "events".into(),
                detail: format!("status {status}"),
            });
        }
        Ok(())
    }

    fn call_count(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// One line of the engine's event stream as berth sees it: container
/// events of managed containers only, the action normalised.
fn parse_event_line(line: &[u8]) -> Option<EngineEvent> {
    #[derive(Deserialize)]
    struct Actor {
        #[serde(rename = "Attributes", default)]
        attributes: HashMap<String, String>,
    }
    #[derive(Deserialize)]
    struct Line {
        #[serde(rename = "Type", default)]
        typ: String,
        #[serde(rename = "Action", default)]
        action: String,
        #[serde(default)]
        status: String,
        #[serde(rename = "Actor")]
        actor: Option<Actor>,
    }
    let line: Line = serde_json::from_slice(line).ok()?;
    if !line.typ.is_empty() && line.typ != "container" {
        return None;
    }
    let attributes = line.actor.map(|a| a.attributes).unwrap_or_default();
    if attributes
        .get(berth_core::naming::LABEL_MANAGED)
        .map(String::as_str)
        != Some("true")
    {
        return None;
    }
    let word = if line.action.is_empty() {
        &line.status
    } else {
        &line.action
    };
    Some(EngineEvent {
        container: attributes.get("name").cloned().unwrap_or_default(),
        app: attributes.get(berth_core::naming::LABEL_APP).cloned(),
        action: EngineEventAction::parse(word),
    })
}

/// Splits interleaved stdout/stderr chunks into lines, keeping partial lines
/// of each stream apart until they are complete.
#[derive(Default)]
struct LineCollector {
    partial: [Vec<u8>; 2],
    lines: Vec<String>,
}

impl LineCollector {
    fn push(&mut self, stream: usize, bytes: &[u8]) {
        let buf = &mut self.partial[stream];
        buf.extend_from_slice(bytes);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            self.lines.push(clean_line(&line));
        }
    }

    fn finish(mut self) -> Vec<String> {
        for buf in &self.partial {
            if !buf.is_empty() {
                self.lines.push(clean_line(buf));
            }
        }
        self.partial = Default::default();
        self.lines
    }
}

fn clean_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.trim_end_matches(['\n', '\r']).to_string()
}

fn start_hint(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Docker => " (is dockerd running? start dockerd)",
        EngineKind::Podman => " (is the podman API service running?)",
        EngineKind::Fake => "",
    }
}

fn map_bollard_error(
    kind: EngineKind,
    socket: &Path,
    call: &str,
    what: &str,
    timeout_s: u64,
    e: BollardError,
) -> EngineError {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => EngineError::NotFound { what: what.into() },
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } => EngineError::Conflict {
            what: format!("{what} ({message})"),
        },
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => EngineError::Api {
            call: call.into(),
            detail: format!("{what}: status {status_code}: {message}"),
        },
        BollardError::RequestTimeoutError => EngineError::Timeout {
            call: call.into(),
            after: Duration::from_secs(timeout_s),
        },
        BollardError::SocketNotFoundError(path) => EngineError::Unavailable {
            engine: kind,
            detail: format!("socket {path} does not exist{}", start_hint(kind)),
        },
        BollardError::HyperLegacyError { err } if err.is_connect() => EngineError::Unavailable {
            engine: kind,
            detail: format!(
                "cannot connect to {}: {}{}",
                socket.display(),
                error_chain(&err),
                start_hint(kind)
            ),
        },
        BollardError::IOError { err }
            if matches!(
                err.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            EngineError::Unavailable {
                engine: kind,
                detail: format!(
                    "cannot connect to {}: {err}{}",
                    socket.display(),
                    start_hint(kind)
                ),
            }
        }
        other => EngineError::Api {
            call: call.into(),
            detail: format!("{what}: {}", error_chain(&other)),
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The message of an engine error body (`{"message": ...}`), else the text.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Msg {
        message: String,
    }
    match serde_json::from_slice::<Msg>(body) {
        Ok(m) => m.message,
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

fn pull_detail(e: EngineError) -> String {
    match e {
        EngineError::Api { detail, .. } => detail,
        other => other.to_string(),
    }
}

/// (repository, tag-or-digest) of an image reference; the tag defaults to
/// `latest`. Docker's pull API needs them apart: a bare repository without
/// a tag pulls every tag.
pub fn split_image(image: &str) -> (String, String) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo.to_string(), digest.to_string());
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (
            image[..name_start + i].to_string(),
            image[name_start + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// The registry host of an image reference, when it names one explicitly
/// (`127.0.0.1:5000/x`, `ghcr.io/x/y`, `localhost/x`).
pub fn registry_host(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// Loopback registries are plain HTTP by default, as in Docker.
pub fn is_loopback_registry(host: &str) -> bool {
    let bare = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    bare == "localhost" || bare == "::1" || bare.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_into_repo_and_tag() {
        let split = |s| split_image(s);
        assert_eq!(split("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(
            split("127.0.0.1:5000/a/b:1.2"),
            ("127.0.0.1:5000/a/b".into(), "1.2".into())
        );
        assert_eq!(
            split("127.0.0.1:5000/a"),
            ("127.0.0.1:5000/a".into(), "latest".into())
        );
        assert_eq!(split("x/y@sha256:abc"), ("x/y".into(), "sha256:abc".into()));
    }

    #[test]
    fn loopback_registries_are_insecure_by_default() {
        assert_eq!(registry_host("127.0.0.1:5000/x:1"), Some("127.0.0.1:5000"));
        assert_eq!(registry_host("localhost/x"), Some("localhost"));
        assert_eq!(registry_host("library/busybox"), None);
        assert_eq!(registry_host("busybox"), None);
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("localhost:5000"));
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(!is_loopback_registry("ghcr.io"));
        assert!(!is_loopback_registry("128.0.0.1:5000"));
    }

    #[test]
    fn event_lines_of_both_engines_parse() {
        let docker = br#"{"status":"die","id":"ab","Type":"container","Action":"die","Actor":{"ID":"ab","Attributes":{"exitCode":"3","io.berth.managed":"true","io.berth.app":"lnd","name":"s-lnd"}},"time":1}"#;
        let e = parse_event_line(docker).unwrap();
        assert_eq!(e.action, EngineEventAction::Died);
        assert_eq!(
            (e.app.as_deref(), e.container.as_str()),
            (Some("lnd"), "s-lnd")
        );
        let podman = br#"{"status":"died","id":"ab","Type":"container","Action":"died","Actor":{"ID":"ab","Attributes":{"io.berth.managed":"true","io.berth.app":"lnd","name":"s-lnd"}}}"#;
        assert_eq!(
            parse_event_line(podman).unwrap().action,
            EngineEventAction::Died
        );
        let unmanaged =
            br#"{"Type":"container","Action":"start","Actor":{"Attributes":{"name":"x"}}}"#;
        assert_eq!(parse_event_line(unmanaged), None);
        let image = br#"{"Type":"image","Action":"pull","Actor":{"Attributes":{"io.berth.managed":"true"}}}"#;
        assert_eq!(parse_event_line(image), None);
        assert_eq!(parse_event_line(b"not json"), None);
    }

    #[test]
    fn log_lines_of_both_streams_are_kept_apart_until_complete() {
        let mut c = LineCollector::default();
        c.push(0, b"out1\nou");
        c.push(1, b"err1\r\n");
        c.push(0, b"t2\n");
        c.push(1, b"tail");
        assert_eq!(c.finish(), vec!["out1", "err1", "out2", "tail"]);
    }
}

/// "1.41" → (1, 41).
fn parse_api_version(s: &str) -> Option<(usize, usize)> {
    let (a, b) = s.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod version_tests {
    use super::parse_api_version;

    #[test]
    fn api_versions_parse() {
        assert_eq!(parse_api_version("1.41"), Some((1, 41)));
        assert_eq!(parse_api_version(" 1.24 "), Some((1, 24)));
        assert_eq!(parse_api_version("4"), None);
        assert_eq!(parse_api_version("x.y"), None);
    }
}

/// `ApiEngine` against a scripted engine on a unix socket: what berth does
/// with answers a real engine gives only now and then.
#[cfg(test)]
mod stub_tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    use super::*;

    /// Serve one answer per request: `/_ping` as Docker, a 404 for a
    /// network inspect, and the scripted statuses, in order, for
    /// `POST /networks/create`. Records the creates' request lines.
    fn stub(dir: &Path, creates: Vec<u16>) -> (PathBuf, Arc<Mutex<Vec<String>>>) {
        let socket = dir.join("engine.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(creates));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let script = script.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Head, then the body its Content-Length announces.
                    let head_end = loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let line = head.lines().next().unwrap_or_default().to_string();
                    let (status, body) = if line.contains("/_ping") {
                        (200, "OK".to_string())
                    } else if line.starts_with("POST") && line.contains("/networks/create") {
                        log.lock().unwrap().push(line.clone());
                        let mut script = script.lock().unwrap();
                        let status = if script.is_empty() {
                            201
                        } else {
                            script.remove(0)
                        };
                        let body = if status == 201 {
                            r#"{"Id":"n1","Warning":""}"#.to_string()
                        } else {
                            r#"{"message":"route ip+net: no such network interface"}"#.to_string()
                        };
                        (status, body)
                    } else {
                        (404, r#"{"message":"no such network"}"#.to_string())
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        (socket, seen)
    }

    #[tokio::test]
    async fn a_network_create_answered_500_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, creates) = stub(dir.path(), vec![500, 500]);
        let engine = ApiEngine::docker(&socket).await.unwrap();
        let created = engine.ensure_network("s", &BTreeMap::new()).await.unwrap();
        assert!(created);
        assert_eq!(creates.lock().unwrap().len(), 3, "two 500s, then created");
    }

    /// A network create against a stub answering `statuses` in turn, which
    /// must fail: the creates it received and the error's text.
    async fn network_create_error(statuses: Vec<u16>) -> (usize, String) {
        let dir = tempfile::tempdir().unwrap();
        let (socket, creates) = stub(dir.path(), statuses);
        let engine = ApiEngine::docker(&socket).await.unwrap();
        let err = engine
            .ensure_network("s", &BTreeMap::new())
            .await
            .unwrap_err()
            .to_string();
        let n = creates.lock().unwrap().len();
        (n, err)
    }

    #[tokio::test]
    async fn a_network_create_failing_every_time_gives_up_with_the_engine_message() {
        let (creates, err) = network_create_error(vec![500, 500, 500, 500]).await;
        assert_eq!(creates, 3, "{err}");
        assert!(err.contains("no such network interface"), "{err}");
        assert!(err.contains("after 3 attempts"), "{err}");
    }

    #[tokio::test]
    async fn a_network_create_refused_with_a_client_error_is_not_tried_again() {
        let (creates, err) = network_create_error(vec![400]).await;
        assert_eq!(creates, 1, "{err}");
        assert!(err.contains("status 400"), "{err}");
    }
}
