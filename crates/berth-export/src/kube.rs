//! Kubernetes objects, for a cluster or for `podman kube play`.
//!
//! The objects are typed structs serialised to YAML, so every document has
//! the shape the API expects by construction. They are hand-written rather
//! than `k8s-openapi`'s: the surface is small (Deployment, Pod, Service,
//! PersistentVolumeClaim, ConfigMap, and the pod spec fields berth maps),
//! and `k8s-openapi` is a large crate to compile on two cores for a few
//! dozen fields. The `required_fields` test checks every field the API
//! requires is present in every object.
//!
//! Two targets: `Kubernetes` (a Deployment per app with the `Recreate`
//! strategy, Services, Secrets referenced by name) and `Podman` (what
//! Podman 4.3's `kube play` knows: a Pod per app, PVCs and a ConfigMap; no
//! Secret kind, no Service, no readiness probe — secrets reach the pod as a
//! read-only hostPath of berth's secret files).

use std::collections::BTreeMap;

use serde::Serialize;

use berth_core::model::{App, HealthCheck, HealthKind, Protocol, RestartPolicy, Stack};
use berth_core::naming;

use crate::{ExportError, HostPaths};

/// Where the objects are played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeTarget {
    Kubernetes,
    /// `podman kube play` of Podman 4.3 (Debian 12).
    Podman,
}

#[derive(Debug, Clone)]
pub struct KubeOptions {
    pub target: KubeTarget,
    pub paths: HostPaths,
    /// Image holding the berth binary, for the gate init containers.
    pub berth_image: String,
    /// Image with `sh`, `nc` and `sleep`, for the dependency init
    /// containers.
    pub wait_image: String,
}

/// Where the gate init container finds the stack, the state and the
/// nodes' RPC secrets.
pub const GATE_STACK_DIR: &str = "/etc/berth";
pub const GATE_STACK_FILE: &str = "stack.json";
pub const GATE_STATE_DIR: &str = "/var/lib/berth";
pub const GATE_NODE_SECRETS_DIR: &str = "/run/berth/nodes";
/// Size asked for a volume's claim (berth's volumes have no size: the
/// engine's local driver grows them freely).
pub const VOLUME_REQUEST_DEFAULT: &str = "1Gi";
/// Size of the claim holding the gates' latches.
pub const STATE_REQUEST_DEFAULT: &str = "64Mi";
/// Seconds between two tries of a dependency wait.
pub const WAIT_RETRY_S: u64 = 2;

// ---------------------------------------------------------------------------
// The objects
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One document of the exported file.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Object {
    Deployment(Deployment),
    Pod(Pod),
    Service(Service),
    Claim(PersistentVolumeClaim),
    ConfigMap(ConfigMap),
}

impl Object {
    pub fn kind(&self) -> &str {
        match self {
            Object::Deployment(o) => &o.kind,
            Object::Pod(o) => &o.kind,
            Object::Service(o) => &o.kind,
            Object::Claim(o) => &o.kind,
            Object::ConfigMap(o) => &o.kind,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Object::Deployment(o) => &o.metadata.name,
            Object::Pod(o) => &o.metadata.name,
            Object::Service(o) => &o.metadata.name,
            Object::Claim(o) => &o.metadata.name,
            Object::ConfigMap(o) => &o.metadata.name,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub api_version: String,
    pub kind: String,
    pub metadata: Meta,
    pub spec: DeploymentSpec,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub replicas: u32,
    pub selector: Selector,
    pub strategy: Strategy,
    pub template: PodTemplate,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Strategy {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PodTemplate {
    pub metadata: Meta,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub api_version: String,
    pub kind: String,
    pub metadata: Meta,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub restart_policy: String,
    pub termination_grace_period_seconds: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    pub security_context: SecurityContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub container_port: u16,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Resources {
    pub limits: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    pub allow_privilege_escalation: bool,
    pub capabilities: Capabilities,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Capabilities {
    pub drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u64>,
    pub period_seconds: u64,
    pub timeout_seconds: u64,
    pub failure_threshold: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HttpGet {
    pub path: String,
    pub port: u16,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TcpSocket {
    pub port: u16,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExecAction {
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<ClaimRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected: Option<Projected>,
}

impl Volume {
    fn named(name: impl Into<String>) -> Volume {
        Volume {
            name: name.into(),
            persistent_volume_claim: None,
            host_path: None,
            config_map: None,
            projected: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRef {
    pub claim_name: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostPath {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConfigMapRef {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Projected {
    pub sources: Vec<ProjectedSource>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProjectedSource {
    pub secret: SecretProjection,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SecretProjection {
    pub name: String,
    pub items: Vec<KeyToPath>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyToPath {
    pub key: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub api_version: String,
    pub kind: String,
    pub metadata: Meta,
    pub spec: ServiceSpec,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceSpec {
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub target_port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaim {
    pub api_version: String,
    pub kind: String,
    pub metadata: Meta,
    pub spec: ClaimSpec,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSpec {
    pub access_modes: Vec<String>,
    pub resources: ClaimResources,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClaimResources {
    pub requests: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    pub api_version: String,
    pub kind: String,
    pub metadata: Meta,
    pub data: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// The objects of `stack`, and notes on what could not be mapped (written
/// as comments at the top of the file).
#[derive(Debug, Clone, PartialEq)]
pub struct KubeExport {
    pub objects: Vec<Object>,
    pub notes: Vec<String>,
}

/// The ConfigMap holding the stack model for the gate init containers.
pub fn stack_config_map(stack: &str) -> String {
    format!("{stack}-berth-stack")
}

/// The claim holding the gates' latches (berth's state directory).
pub fn state_claim(stack: &str) -> String {
    format!("{stack}-berth-state")
}

/// The Kubernetes Secret a stack secret is referenced as.
pub fn secret_object(stack: &str, secret: &str) -> String {
    format!("{stack}-{secret}")
}

fn app_labels(stack: &Stack, app: &App) -> BTreeMap<String, String> {
    BTreeMap::from([
        (naming::LABEL_STACK.to_string(), stack.name.clone()),
        (naming::LABEL_APP.to_string(), app.id.clone()),
    ])
}

fn meta(name: impl Into<String>, labels: BTreeMap<String, String>) -> Meta {
    Meta {
        name: name.into(),
        labels,
        annotations: BTreeMap::new(),
    }
}

/// The port a dependency wait connects to: the dependency's health check
/// port, else its chain probe's, else its first published container port.
fn wait_port(app: &App) -> Option<u16> {
    match app.health.as_ref().map(|h| &h.kind) {
        Some(HealthKind::Http { port, .. }) | Some(HealthKind::Tcp { port }) => return Some(*port),
        _ => {}
    }
    app.probe
        .as_ref()
        .map(|p| p.port)
        .or_else(|| app.ports.first().map(|p| p.container_port))
}

/// The DNS name another pod reaches `app` at: its Service (named by the
/// app id, as berth's network alias) on Kubernetes; on Podman, which has
/// no Service, the pod's own name.
fn host_of(stack: &Stack, app: &str, target: KubeTarget) -> String {
    match target {
        KubeTarget::Kubernetes => app.to_string(),
        KubeTarget::Podman => naming::container_name(&stack.name, app),
    }
}

/// Render `stack`'s objects: the gate ConfigMap and state claim first (if
/// any app is gated), then per app in start order its claims, its workload
/// and its Service. `podman kube play` starts pods in document order and
/// waits for each pod's init containers, so start order matters there.
pub fn render(stack: &Stack, opts: &KubeOptions) -> Result<KubeExport, ExportError> {
    let mut objects = Vec::new();
    let mut notes = Vec::new();
    let gated = stack
        .apps
        .values()
        .any(|a| !crate::gate_nodes(a).is_empty());
    if gated {
        let json = serde_json::to_string(stack)
            .map_err(|e| ExportError::Yaml(format!("stack model: {e}")))?;
        objects.push(Object::ConfigMap(ConfigMap {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            metadata: meta(stack_config_map(&stack.name), BTreeMap::new()),
            data: BTreeMap::from([(GATE_STACK_FILE.to_string(), json)]),
        }));
        objects.push(claim(
            stack,
            &state_claim(&stack.name),
            STATE_REQUEST_DEFAULT,
        ));
    }
    let mut secrets_needed = std::collections::BTreeSet::new();
    for app in crate::start_order(stack) {
        for v in &app.volumes {
            let name = naming::volume_name(&stack.name, &app.id, &v.name);
            objects.push(claim(stack, &name, VOLUME_REQUEST_DEFAULT));
        }
        let spec = pod_spec(stack, app, opts, &mut notes)?;
        let labels = app_labels(stack, app);
        let mut m = meta(naming::container_name(&stack.name, &app.id), labels.clone());
        m.annotations = app.labels.clone();
        match opts.target {
            KubeTarget::Kubernetes => objects.push(Object::Deployment(Deployment {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                metadata: m.clone(),
                spec: DeploymentSpec {
                    replicas: 1,
                    selector: Selector {
                        match_labels: labels.clone(),
                    },
                    // Never two copies of a node on one data volume.
                    strategy: Strategy {
                        kind: "Recreate".into(),
                    },
                    template: PodTemplate { metadata: m, spec },
                },
            })),
            KubeTarget::Podman => objects.push(Object::Pod(Pod {
                api_version: "v1".into(),
                kind: "Pod".into(),
                metadata: m,
                spec,
            })),
        }
        if opts.target == KubeTarget::Kubernetes && !app.ports.is_empty() {
            objects.push(Object::Service(Service {
                api_version: "v1".into(),
                kind: "Service".into(),
                metadata: meta(app.id.clone(), labels.clone()),
                spec: ServiceSpec {
                    selector: labels,
                    ports: app
                        .ports
                        .iter()
                        .map(|p| ServicePort {
                            name: format!(
                                "{}-{}",
                                protocol(p.protocol).to_lowercase(),
                                p.container_port
                            ),
                            port: p.container_port,
                            target_port: p.container_port,
                            protocol: protocol(p.protocol).into(),
                        })
                        .collect(),
                },
            }));
        }
        if opts.target == KubeTarget::Kubernetes {
            for s in &app.secrets {
                secrets_needed.insert(s.clone());
            }
        }
    }
    for s in secrets_needed {
        notes.push(format!(
            "secret {s} is referenced, not included: create it with \
             `kubectl create secret generic {} --from-file={s}=PATH`",
            secret_object(&stack.name, &s)
        ));
    }
    match opts.target {
        KubeTarget::Kubernetes => notes.push(
            "host ports are not published: reach the apps through their Services \
             (kubectl port-forward, or an Ingress)"
                .into(),
        ),
        KubeTarget::Podman => notes.push(format!(
            "podman kube play (4.3) knows no Secret or Service: secrets are read-only hostPath \
             mounts of berth's secret files under {}/{}/{}, apps reach each other by pod name \
             ({}-APP), not by app id",
            opts.paths.state_dir,
            crate::SECRET_MOUNTS_DIR_NAME,
            stack.name,
            stack.name
        )),
    }
    Ok(KubeExport { objects, notes })
}

fn claim(stack: &Stack, name: &str, size: &str) -> Object {
    Object::Claim(PersistentVolumeClaim {
        api_version: "v1".into(),
        kind: "PersistentVolumeClaim".into(),
        metadata: meta(
            name,
            BTreeMap::from([(naming::LABEL_STACK.to_string(), stack.name.clone())]),
        ),
        spec: ClaimSpec {
            access_modes: vec!["ReadWriteOnce".into()],
            resources: ClaimResources {
                requests: BTreeMap::from([("storage".to_string(), size.to_string())]),
            },
        },
    })
}

fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

fn security(app: &App, notes: &mut Vec<String>) -> SecurityContext {
    let (mut uid, mut gid) = (None, None);
    if let Some(user) = &app.user {
        let mut parts = user.splitn(2, ':');
        uid = parts.next().and_then(|u| u.parse().ok());
        gid = parts.next().and_then(|g| g.parse().ok());
        if uid.is_none() {
            notes.push(format!(
                "app {}: user {user:?} is not numeric: runAsUser is not set (the image's user runs)",
                app.id
            ));
        }
    }
    SecurityContext {
        allow_privilege_escalation: false,
        capabilities: Capabilities {
            drop: vec!["ALL".into()],
            add: app.cap_add.clone(),
        },
        run_as_user: uid,
        run_as_group: gid,
    }
}

/// The security context of berth's own init containers.
fn locked_down() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: false,
        capabilities: Capabilities {
            drop: vec!["ALL".into()],
            add: Vec::new(),
        },
        run_as_user: None,
        run_as_group: None,
    }
}

fn probe(h: &HealthCheck, failure_threshold: u32, initial_delay: Option<u64>) -> Probe {
    let (http_get, tcp_socket, exec) = match &h.kind {
        HealthKind::Http { port, path } => (
            Some(HttpGet {
                path: path.clone(),
                port: *port,
            }),
            None,
            None,
        ),
        HealthKind::Tcp { port } => (None, Some(TcpSocket { port: *port }), None),
        HealthKind::Command { argv } => (
            None,
            None,
            Some(ExecAction {
                command: argv.clone(),
            }),
        ),
    };
    Probe {
        http_get,
        tcp_socket,
        exec,
        initial_delay_seconds: initial_delay,
        period_seconds: crate::secs(h.interval),
        timeout_seconds: crate::secs(h.timeout),
        failure_threshold: failure_threshold.max(1),
    }
}

fn memory_quantity(bytes: u64) -> String {
    const MI: u64 = 1024 * 1024;
    const GI: u64 = 1024 * MI;
    if bytes.is_multiple_of(GI) {
        format!("{}Gi", bytes / GI)
    } else if bytes.is_multiple_of(MI) {
        format!("{}Mi", bytes / MI)
    } else {
        bytes.to_string()
    }
}

fn pod_spec(
    stack: &Stack,
    app: &App,
    opts: &KubeOptions,
    notes: &mut Vec<String>,
) -> Result<PodSpec, ExportError> {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for v in &app.volumes {
        let claim_name = naming::volume_name(&stack.name, &app.id, &v.name);
        let mut vol = Volume::named(format!("vol-{}", v.name));
        vol.persistent_volume_claim = Some(ClaimRef { claim_name });
        volumes.push(vol);
        mounts.push(VolumeMount {
            name: format!("vol-{}", v.name),
            mount_path: v.path.clone(),
            read_only: false,
        });
    }
    if !app.secrets.is_empty() {
        volumes.push(secrets_volume(
            stack,
            "secrets",
            &app.id,
            &app.secrets,
            opts,
        ));
        mounts.push(VolumeMount {
            name: "secrets".into(),
            mount_path: naming::SECRETS_MOUNT_PATH.into(),
            read_only: true,
        });
    }

    // Init containers: each dependency reachable, then the gate.
    let mut init = Vec::new();
    let budget = crate::secs(crate::start_budget(stack, app));
    for (dep, _cond) in crate::dependencies(app) {
        let Some(dep_app) = stack.app(dep) else {
            continue;
        };
        let Some(port) = wait_port(dep_app) else {
            notes.push(format!(
                "app {}: dependency {dep} has no port to wait for: no init container orders them",
                app.id
            ));
            continue;
        };
        let host = host_of(stack, dep, opts.target);
        let tries = budget.div_ceil(WAIT_RETRY_S).max(1);
        // Kubernetes routes a Service only to ready pods, so on a cluster
        // this waits for the dependency's readiness (its health check); on
        // Podman it waits for the port to accept connections.
        let script = format!(
            "i=0; until nc -w 1 {host} {port} </dev/null; do i=$((i+1)); \
             if [ $i -ge {tries} ]; then echo \"{dep} ({host}:{port}) not reachable after {budget}s\" >&2; exit 1; fi; \
             sleep {WAIT_RETRY_S}; done"
        );
        init.push(Container {
            name: format!("wait-{dep}"),
            image: opts.wait_image.clone(),
            command: Some(vec!["sh".into(), "-c".into(), script]),
            args: None,
            env: Vec::new(),
            ports: Vec::new(),
            volume_mounts: Vec::new(),
            resources: None,
            security_context: locked_down(),
            liveness_probe: None,
            readiness_probe: None,
            startup_probe: None,
        });
    }
    let nodes = crate::gate_nodes(app);
    if !nodes.is_empty() {
        let mut argv = vec![
            "berth".to_string(),
            "--state-dir".into(),
            GATE_STATE_DIR.into(),
            "--stack".into(),
            format!("{GATE_STACK_DIR}/{GATE_STACK_FILE}"),
            "gate".into(),
            "wait".into(),
            app.id.clone(),
            "--node-secrets".into(),
            GATE_NODE_SECRETS_DIR.into(),
        ];
        let mut gate_mounts = vec![
            VolumeMount {
                name: "berth-stack".into(),
                mount_path: GATE_STACK_DIR.into(),
                read_only: true,
            },
            VolumeMount {
                name: "berth-state".into(),
                mount_path: GATE_STATE_DIR.into(),
                read_only: false,
            },
        ];
        let mut cm = Volume::named("berth-stack");
        cm.config_map = Some(ConfigMapRef {
            name: stack_config_map(&stack.name),
        });
        volumes.push(cm);
        let mut st = Volume::named("berth-state");
        st.persistent_volume_claim = Some(ClaimRef {
            claim_name: state_claim(&stack.name),
        });
        volumes.push(st);
        for n in nodes {
            let node = stack.app(n).ok_or_else(|| ExportError::App {
                app: app.id.clone(),
                message: format!("gate node {n} is not an app of the stack"),
            })?;
            let probe = node.probe.as_ref().ok_or_else(|| ExportError::App {
                app: app.id.clone(),
                message: format!("gate node {n} has no probe"),
            })?;
            argv.push("--node".into());
            argv.push(format!(
                "{n}={}:{}",
                host_of(stack, n, opts.target),
                probe.port
            ));
            if let berth_core::model::ProbeKind::Bitcoind {
                password_secret: Some(secret),
                ..
            } = &probe.kind
            {
                let vname = format!("node-{n}");
                volumes.push(secrets_volume(
                    stack,
                    &vname,
                    n,
                    std::slice::from_ref(secret),
                    opts,
                ));
                gate_mounts.push(VolumeMount {
                    name: vname,
                    mount_path: format!("{GATE_NODE_SECRETS_DIR}/{n}"),
                    read_only: true,
                });
            }
        }
        init.push(Container {
            name: "berth-gate".into(),
            image: opts.berth_image.clone(),
            command: Some(argv),
            args: None,
            env: Vec::new(),
            ports: Vec::new(),
            volume_mounts: gate_mounts,
            resources: None,
            security_context: locked_down(),
            liveness_probe: None,
            readiness_probe: None,
            startup_probe: None,
        });
    }
    for list in crate::unenforced_gate_lists(app) {
        notes.push(format!(
            "app {}: gate {list} is not exported (failover needs berth's daemon watching the nodes)",
            app.id
        ));
    }

    let (command, args) = match (&app.entrypoint, &app.command) {
        (Some(ep), cmd) => (Some(ep.clone()), cmd.clone()),
        (None, cmd) => (None, cmd.clone()),
    };
    let ports = app
        .ports
        .iter()
        .map(|p| ContainerPort {
            container_port: p.container_port,
            protocol: protocol(p.protocol).into(),
            host_port: (opts.target == KubeTarget::Podman).then_some(p.host_port),
            host_ip: if opts.target == KubeTarget::Podman {
                p.host_ip.clone()
            } else {
                None
            },
        })
        .collect();
    let (liveness, readiness, startup) = match &app.health {
        None => (None, None, None),
        Some(h) => {
            if h.progress.is_some() {
                notes.push(format!(
                    "app {}: the health check's progress check is not exported (berth evaluates it)",
                    app.id
                ));
            }
            let period = crate::secs(h.interval);
            let startup_tries = u32::try_from(budget.div_ceil(period)).unwrap_or(u32::MAX);
            match opts.target {
                KubeTarget::Kubernetes => (
                    Some(probe(h, h.retries, None)),
                    Some(probe(h, 1, None)),
                    Some(probe(h, startup_tries, None)),
                ),
                // Podman 4.3 maps the liveness probe to its health check
                // and knows no readiness probe.
                KubeTarget::Podman => (
                    Some(probe(h, h.retries, Some(h.start_period.as_secs()))),
                    None,
                    None,
                ),
            }
        }
    };
    let resources = app.memory_bytes.map(|m| Resources {
        limits: BTreeMap::from([("memory".to_string(), memory_quantity(m))]),
    });
    let env = app
        .env
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    let main = Container {
        name: app.id.clone(),
        image: app.image.clone(),
        command,
        args,
        env,
        ports,
        volume_mounts: mounts,
        resources,
        security_context: security(app, notes),
        liveness_probe: liveness,
        readiness_probe: readiness,
        startup_probe: startup,
    };
    let restart_policy = match (opts.target, app.restart) {
        // A Deployment's pods always restart.
        (KubeTarget::Kubernetes, r) => {
            if r != RestartPolicy::Always {
                notes.push(format!(
                    "app {}: restart {:?} is not mapped (a Deployment's pods always restart)",
                    app.id, r
                ));
            }
            "Always"
        }
        // Podman 4.3 applies the pod's restart policy to its init
        // containers too: under "Always" an init container that exited 0
        // is started again at once (and `kube play` then fails removing
        // it). A pod with init containers restarts on failure only.
        (KubeTarget::Podman, RestartPolicy::Always) if !init.is_empty() => {
            notes.push(format!(
                "app {}: restart always becomes OnFailure (podman 4.3 would restart its init \
                 containers forever): a clean exit stays down",
                app.id
            ));
            "OnFailure"
        }
        (KubeTarget::Podman, RestartPolicy::Always) => "Always",
        (KubeTarget::Podman, RestartPolicy::OnFailure) => "OnFailure",
        (KubeTarget::Podman, RestartPolicy::No) => "Never",
    };
    Ok(PodSpec {
        restart_policy: restart_policy.into(),
        termination_grace_period_seconds: app.stop_grace.as_secs(),
        init_containers: init,
        containers: vec![main],
        volumes,
    })
}

/// The volume carrying `secrets` of `owner` (an app id): a projected
/// Secret on Kubernetes, a read-only hostPath of berth's secret copies on
/// Podman (which has no Secret kind).
fn secrets_volume(
    stack: &Stack,
    name: &str,
    owner: &str,
    secrets: &[String],
    opts: &KubeOptions,
) -> Volume {
    let mut v = Volume::named(name);
    match opts.target {
        KubeTarget::Kubernetes => {
            v.projected = Some(Projected {
                sources: secrets
                    .iter()
                    .map(|s| ProjectedSource {
                        secret: SecretProjection {
                            name: secret_object(&stack.name, s),
                            items: vec![KeyToPath {
                                key: s.clone(),
                                path: s.clone(),
                            }],
                        },
                    })
                    .collect(),
            })
        }
        KubeTarget::Podman => {
            v.host_path = Some(HostPath {
                path: opts.paths.secrets_dir(&stack.name, owner),
                kind: "Directory".into(),
            })
        }
    }
    v
}

/// The export as one multi-document YAML file, notes first as comments.
pub fn to_yaml(
    export: &KubeExport,
    stack: &Stack,
    target: KubeTarget,
) -> Result<String, ExportError> {
    let mut out = format!(
        "# berth export kube: stack {} for {}\n# Generated; edit the stack and export again.\n",
        stack.name,
        match target {
            KubeTarget::Kubernetes => "kubernetes",
            KubeTarget::Podman => "podman kube play",
        }
    );
    for n in &export.notes {
        out.push_str("# note: ");
        out.push_str(&n.replace('\n', " "));
        out.push('\n');
    }
    for o in &export.objects {
        let doc = crate::yaml::to_string(o).map_err(|e| ExportError::Yaml(e.to_string()))?;
        out.push_str("---\n");
        out.push_str(&doc);
        if !doc.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn opts(target: KubeTarget) -> KubeOptions {
        KubeOptions {
            target,
            paths: HostPaths::default(),
            berth_image: "localhost/berth:latest".into(),
            wait_image: "localhost/berth-demo:latest".into(),
        }
    }

    fn yaml(stack: &Stack, target: KubeTarget) -> String {
        to_yaml(&render(stack, &opts(target)).unwrap(), stack, target).unwrap()
    }

    #[test]
    fn demo_for_kubernetes() {
        insta::assert_snapshot!(yaml(&testdata::demo(), KubeTarget::Kubernetes));
    }

    #[test]
    fn demo_for_podman_kube_play() {
        insta::assert_snapshot!(yaml(&testdata::demo(), KubeTarget::Podman));
    }

    #[test]
    fn every_feature_for_kubernetes() {
        insta::assert_snapshot!(yaml(&testdata::every_feature(), KubeTarget::Kubernetes));
    }

    #[test]
    fn exports_are_byte_identical() {
        let s = testdata::every_feature();
        assert_eq!(
            yaml(&s, KubeTarget::Kubernetes),
            yaml(&s, KubeTarget::Kubernetes)
        );
    }

    /// The YAML as a YAML reader sees it (berth's compose importer's
    /// parser, an implementation independent of the writer), as JSON.
    fn read_back(text: &str) -> serde_json::Value {
        use berth_compose::yaml::{Node, Value as Y};
        fn conv(n: &Node) -> serde_json::Value {
            match &n.value {
                Y::Null => serde_json::Value::Null,
                Y::Scalar { text, plain: true } => match text.as_str() {
                    "true" => true.into(),
                    "false" => false.into(),
                    "null" | "~" => serde_json::Value::Null,
                    t => t
                        .parse::<i64>()
                        .map(Into::into)
                        .unwrap_or_else(|_| t.to_string().into()),
                },
                Y::Scalar { text, .. } => text.clone().into(),
                Y::Seq(items) => items.iter().map(conv).collect(),
                Y::Map(entries) => entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), conv(v)))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            }
        }
        conv(&berth_compose::yaml::parse("export.yaml", text).expect("the export is YAML"))
    }

    /// Every field the Kubernetes API requires, in every object, read back
    /// from the YAML itself (so a serde rename or skip cannot lose one).
    #[test]
    fn required_fields() {
        for target in [KubeTarget::Kubernetes, KubeTarget::Podman] {
            for stack in [testdata::demo(), testdata::every_feature()] {
                let export = render(&stack, &opts(target)).unwrap();
                for o in &export.objects {
                    let text = crate::yaml::to_string(o).unwrap();
                    let v = read_back(&text);
                    let has = |path: &str| v.pointer(path).is_some_and(|x| !x.is_null());
                    let ctx = format!("{} {}", o.kind(), o.name());
                    for p in ["/apiVersion", "/kind", "/metadata/name"] {
                        assert!(has(p), "{ctx}: {p}");
                    }
                    let pod = match o.kind() {
                        "Deployment" => {
                            for p in ["/spec/selector/matchLabels", "/spec/template/spec"] {
                                assert!(has(p), "{ctx}: {p}");
                            }
                            assert_eq!(
                                v.pointer("/spec/selector/matchLabels"),
                                v.pointer("/spec/template/metadata/labels"),
                                "{ctx}: the selector matches the template"
                            );
                            v.pointer("/spec/template/spec").unwrap().clone()
                        }
                        "Pod" => v.pointer("/spec").unwrap().clone(),
                        "Service" => {
                            for port in v.pointer("/spec/ports").unwrap().as_array().unwrap() {
                                assert!(port.get("port").is_some(), "{ctx}: port");
                            }
                            continue;
                        }
                        "PersistentVolumeClaim" => {
                            assert!(has("/spec/accessModes/0"), "{ctx}");
                            assert!(has("/spec/resources/requests/storage"), "{ctx}");
                            continue;
                        }
                        "ConfigMap" => {
                            assert!(has("/data"), "{ctx}");
                            continue;
                        }
                        k => panic!("unexpected kind {k}"),
                    };
                    let containers = pod["containers"].as_array().unwrap();
                    assert!(!containers.is_empty(), "{ctx}: containers");
                    let mut all: Vec<&serde_json::Value> = containers.iter().collect();
                    if let Some(init) = pod.get("initContainers").and_then(|i| i.as_array()) {
                        all.extend(init);
                    }
                    let volumes: Vec<&str> = pod
                        .get("volumes")
                        .and_then(|v| v.as_array())
                        .map(|v| v.iter().map(|x| x["name"].as_str().unwrap()).collect())
                        .unwrap_or_default();
                    for c in all {
                        assert!(
                            c["name"].is_string() && c["image"].is_string(),
                            "{ctx}: {c}"
                        );
                        for m in c
                            .get("volumeMounts")
                            .and_then(|m| m.as_array())
                            .into_iter()
                            .flatten()
                        {
                            assert!(m["mountPath"].is_string(), "{ctx}: mountPath");
                            let name = m["name"].as_str().unwrap();
                            assert!(volumes.contains(&name), "{ctx}: mount {name} has a volume");
                        }
                        for port in c
                            .get("ports")
                            .and_then(|p| p.as_array())
                            .into_iter()
                            .flatten()
                        {
                            assert!(port["containerPort"].is_u64(), "{ctx}: containerPort");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn podman_target_has_no_secret_service_or_readiness() {
        let y = yaml(&testdata::every_feature(), KubeTarget::Podman);
        assert!(!y.contains("kind: Service"), "{y}");
        assert!(!y.contains("kind: Secret"), "{y}");
        assert!(!y.contains("readinessProbe"), "{y}");
        assert!(y.contains("hostPath"), "{y}");
    }
}
