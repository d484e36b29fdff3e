//! `FakeEngine`: an in-memory engine for unit tests of everything above the
//! engine seam. It keeps containers, networks, volumes and images, moves
//! containers through realistic states, records every call as a typed
//! [`Call`], and can be told to fail the next N calls (of any kind or of one
//! kind) with a chosen error. It never reads the clock: start times come from
//! an internal counter.
//!
//! The handle is cheap to clone and every clone shares one state, so a test
//! keeps a handle while the code under test owns another.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use berth_core::classify::EngineStatus;
use berth_core::observed::ObservedContainer;
use berth_core::spec::ContainerSpec;

use crate::{
    Engine, EngineError, EngineEvent, EngineEventAction, EngineInfo, EngineKind, EngineObject,
    ExecOutput, PullProgress, Result,
};

/// Events buffered for a slow watcher before it starts missing some (as a
/// real engine's stream would drop a slow reader).
const EVENTS_BUFFER: usize = 256;

/// The start time of the fake's first container start (later starts add
/// one second per start).
const FAKE_EPOCH_S: u64 = 946_684_800; // 2000-01-01T00:00:00Z

/// One call made to the fake, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Info,
    List,
    Inspect { name: String },
    ContainerIp { name: String, network: String },
    ImageExists { image: String },
    Pull { image: String },
    EnsureNetwork { name: String },
    RemoveNetwork { name: String },
    ListNetworks,
    EnsureVolume { name: String },
    RemoveVolume { name: String },
    ListVolumes,
    Create { name: String },
    Start { name: String },
    Stop { name: String, grace: Duration },
    Kill { name: String, signal: String },
    Remove { name: String, force: bool },
    Rename { name: String, new_name: String },
    Logs { name: String, tail: usize },
    Exec { name: String, argv: Vec<String> },
    Events,
}

/// The kind of a [`Call`], for [`FakeEngine::fail_next_on`] and counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallKind {
    Info,
    List,
    Inspect,
    ContainerIp,
    ImageExists,
    Pull,
    EnsureNetwork,
    RemoveNetwork,
    ListNetworks,
    EnsureVolume,
    RemoveVolume,
    ListVolumes,
    Create,
    Start,
    Stop,
    Kill,
    Remove,
    Rename,
    Logs,
    Exec,
    Events,
}

impl Call {
    pub fn kind(&self) -> CallKind {
        match self {
            Call::Info => CallKind::Info,
            Call::List => CallKind::List,
            Call::Inspect { .. } => CallKind::Inspect,
            Call::ContainerIp { .. } => CallKind::ContainerIp,
            Call::ImageExists { .. } => CallKind::ImageExists,
            Call::Pull { .. } => CallKind::Pull,
            Call::EnsureNetwork { .. } => CallKind::EnsureNetwork,
            Call::RemoveNetwork { .. } => CallKind::RemoveNetwork,
            Call::ListNetworks => CallKind::ListNetworks,
            Call::EnsureVolume { .. } => CallKind::EnsureVolume,
            Call::RemoveVolume { .. } => CallKind::RemoveVolume,
            Call::ListVolumes => CallKind::ListVolumes,
            Call::Create { .. } => CallKind::Create,
            Call::Start { .. } => CallKind::Start,
            Call::Stop { .. } => CallKind::Stop,
            Call::Kill { .. } => CallKind::Kill,
            Call::Remove { .. } => CallKind::Remove,
            Call::Rename { .. } => CallKind::Rename,
            Call::Logs { .. } => CallKind::Logs,
            Call::Exec { .. } => CallKind::Exec,
            Call::Events => CallKind::Events,
        }
    }

    fn subject(&self) -> String {
        match self {
            Call::Inspect { name }
            | Call::ContainerIp { name, .. }
            | Call::Create { name }
            | Call::Start { name }
            | Call::Stop { name, .. }
            | Call::Kill { name, .. }
            | Call::Remove { name, .. }
            | Call::Rename { name, .. }
            | Call::Logs { name, .. }
            | Call::Exec { name, .. } => format!("container {name}"),
            Call::EnsureNetwork { name } | Call::RemoveNetwork { name } => {
                format!("network {name}")
            }
            Call::EnsureVolume { name } | Call::RemoveVolume { name } => format!("volume {name}"),
            Call::ImageExists { image } | Call::Pull { image } => format!("image {image}"),
            Call::Info | Call::List | Call::ListNetworks | Call::ListVolumes | Call::Events => {
                "engine".into()
            }
        }
    }
}

/// Which error an injected failure produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    Unavailable,
    NotFound,
    Conflict,
    Pull,
    Timeout,
    Api,
}

impl FailKind {
    fn error(self, call: &Call) -> EngineError {
        let subject = call.subject();
        let call_name = format!("{:?}", call.kind());
        match self {
            FailKind::Unavailable => EngineError::Unavailable {
                engine: EngineKind::Fake,
                detail: "injected failure: engine down".into(),
            },
            FailKind::NotFound => EngineError::NotFound { what: subject },
            FailKind::Conflict => EngineError::Conflict { what: subject },
            FailKind::Pull => EngineError::Pull {
                image: subject,
                detail: "injected failure".into(),
            },
            FailKind::Timeout => EngineError::Timeout {
                call: call_name,
                after: Duration::from_secs(1),
            },
            FailKind::Api => EngineError::Api {
                call: call_name,
                detail: format!("injected failure on {subject}"),
            },
        }
    }
}

#[derive(Debug, Clone)]
struct FakeContainer {
    id: String,
    spec: ContainerSpec,
    status: EngineStatus,
    exit_code: Option<i64>,
    oom_killed: bool,
    started_at: Option<String>,
    ip: Option<String>,
}

impl FakeContainer {
    fn observed(&self) -> ObservedContainer {
        ObservedContainer {
            id: self.id.clone(),
            name: self.spec.name.clone(),
            image: self.spec.image.clone(),
            status: self.status,
            exit_code: self.exit_code,
            oom_killed: self.oom_killed,
            started_at: self.started_at.clone(),
            labels: self.spec.labels.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    containers: BTreeMap<String, FakeContainer>,
    networks: BTreeMap<String, BTreeMap<String, String>>,
    volumes: BTreeMap<String, BTreeMap<String, String>>,
    images: BTreeSet<String>,
    calls: Vec<Call>,
    call_count: u64,
    /// Starts so far: the fake's clock.
    starts: u64,
    next_id: u64,
    next_ip: u32,
    fail_any: VecDeque<FailKind>,
    fail_on: HashMap<CallKind, VecDeque<FailKind>>,
    logs: HashMap<String, Vec<String>>,
    exec_results: HashMap<String, ExecOutput>,
    stop_exit_codes: HashMap<String, i64>,
}

/// Work a test runs while a container list is in flight.
type ListHook = Box<dyn FnOnce() + Send>;

/// An in-memory engine. See the module docs.
#[derive(Clone)]
pub struct FakeEngine {
    state: Arc<Mutex<State>>,
    /// Run inside the next `list_containers`, after the list was taken:
    /// what happens elsewhere while the engine answers.
    list_hook: Arc<Mutex<Option<ListHook>>>,
    /// Lifecycle events of containers, for `watch_events`.
    events: tokio::sync::broadcast::Sender<EngineEvent>,
}

impl Default for FakeEngine {
    fn default() -> Self {
        FakeEngine {
            state: Arc::default(),
            list_hook: Arc::default(),
            events: tokio::sync::broadcast::channel(EVENTS_BUFFER).0,
        }
    }
}

impl std::fmt::Debug for FakeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeEngine")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl FakeEngine {
    pub fn new() -> FakeEngine {
        FakeEngine::default()
    }

    fn list_now(&self, label: (&str, &str)) -> Result<Vec<ObservedContainer>> {
        let st = self.begin(Call::List)?;
        Ok(st
            .containers
            .values()
            .filter(|c| label_matches(&c.spec.labels, label))
            .map(|c| ObservedContainer {
                // Like the real engines, a list does not know about OOM or
                // start times.
                oom_killed: false,
                started_at: None,
                ..c.observed()
            })
            .collect())
    }

    /// Run `hook` inside the next container list, after the list is taken
    /// and before it is answered: something that happens while the caller
    /// waits for the engine (a request finishing on another task).
    pub fn during_next_list(&self, hook: impl FnOnce() + Send + 'static) {
        *self.list_hook.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(hook));
    }

    /// Publish a lifecycle event of container `name` (no watcher: dropped).
    fn emit(&self, st: &State, name: &str, action: EngineEventAction) {
        let app = st
            .containers
            .get(name)
            .and_then(|c| c.spec.labels.get(berth_core::naming::LABEL_APP).cloned());
        let _ = self.events.send(EngineEvent {
            container: name.to_string(),
            app,
            action,
        });
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide this test's result.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record `call`; fail it if a failure is queued for it (one queued for
    /// its kind wins over one queued for any call).
    fn begin(&self, call: Call) -> Result<MutexGuard<'_, State>> {
        let mut st = self.lock();
        st.call_count += 1;
        st.calls.push(call.clone());
        let kind = call.kind();
        let fail = st
            .fail_on
            .get_mut(&kind)
            .and_then(VecDeque::pop_front)
            .or_else(|| st.fail_any.pop_front());
        match fail {
            Some(f) => Err(f.error(&call)),
            None => Ok(st),
        }
    }

    // ---- inspection for tests ------------------------------------------

    /// Every call so far, in order (failed ones included).
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Every call so far, clearing the record.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.lock().calls)
    }

    /// How many recorded calls are of `kind`.
    pub fn count_calls(&self, kind: CallKind) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.kind() == kind)
            .count()
    }

    /// The current view of container `name`, without recording a call.
    pub fn container(&self, name: &str) -> Option<ObservedContainer> {
        self.lock()
            .containers
            .get(name)
            .map(FakeContainer::observed)
    }

    /// Names of all containers, without recording a call.
    pub fn container_names(&self) -> Vec<String> {
        self.lock().containers.keys().cloned().collect()
    }

    /// The spec container `name` was created from.
    pub fn spec(&self, name: &str) -> Option<ContainerSpec> {
        self.lock().containers.get(name).map(|c| c.spec.clone())
    }

    pub fn has_network(&self, name: &str) -> bool {
        self.lock().networks.contains_key(name)
    }

    pub fn has_volume(&self, name: &str) -> bool {
        self.lock().volumes.contains_key(name)
    }

    pub fn has_image(&self, image: &str) -> bool {
        self.lock().images.contains(image)
    }

    // ---- failure injection ----------------------------------------------

    /// The next `n` calls (of any kind) fail with `kind`.
    pub fn fail_next(&self, n: usize, kind: FailKind) {
        self.lock().fail_any.extend(std::iter::repeat_n(kind, n));
    }

    /// The next `n` calls of kind `call` fail with an error that fits the
    /// call: `Pull` for pulls, `Api` otherwise.
    pub fn fail_next_on(&self, call: CallKind, n: usize) {
        let kind = if call == CallKind::Pull {
            FailKind::Pull
        } else {
            FailKind::Api
        };
        self.fail_next_on_with(call, n, kind);
    }

    /// The next `n` calls of kind `call` fail with `kind`.
    pub fn fail_next_on_with(&self, call: CallKind, n: usize, kind: FailKind) {
        self.lock()
            .fail_on
            .entry(call)
            .or_default()
            .extend(std::iter::repeat_n(kind, n));
    }

    /// Drop every queued failure.
    pub fn clear_failures(&self) {
        let mut st = self.lock();
        st.fail_any.clear();
        st.fail_on.clear();
    }

    // ---- world setup and behind-the-back changes -------------------------

    /// Make `image` present locally.
    pub fn add_image(&self, image: &str) {
        self.lock().images.insert(image.to_string());
    }

    /// Remove `image` locally.
    pub fn remove_image(&self, image: &str) {
        self.lock().images.remove(image);
    }

    /// The container exited on its own (crash, OOM kill, clean exit).
    pub fn set_exited(&self, name: &str, code: i64, oom: bool) {
        let mut st = self.lock();
        if let Some(c) = st.containers.get_mut(name) {
            c.status = EngineStatus::Exited;
            c.exit_code = Some(code);
            c.oom_killed = oom;
            c.ip = None;
            self.emit(&st, name, EngineEventAction::Died);
        }
    }

    /// Someone removed the container outside berth.
    pub fn remove_behind_back(&self, name: &str) {
        let mut st = self.lock();
        if st.containers.contains_key(name) {
            self.emit(&st, name, EngineEventAction::Removed);
            st.containers.remove(name);
        }
    }

    /// Someone started the container outside berth.
    pub fn start_behind_back(&self, name: &str) {
        let mut st = self.lock();
        start_in(&mut st, name);
        self.emit(&st, name, EngineEventAction::Started);
    }

    /// Lines `logs` returns for `name` (the tail of them).
    pub fn set_logs(&self, name: &str, lines: Vec<String>) {
        self.lock().logs.insert(name.to_string(), lines);
    }

    /// What `exec` in `name` returns (default: exit 0, no output).
    pub fn set_exec_result(&self, name: &str, result: ExecOutput) {
        self.lock().exec_results.insert(name.to_string(), result);
    }

    /// The exit code `name` reports after a stop or SIGTERM (default 0).
    pub fn set_stop_exit_code(&self, name: &str, code: i64) {
        self.lock().stop_exit_codes.insert(name.to_string(), code);
    }
}

fn start_in(st: &mut State, name: &str) {
    st.starts += 1;
    let started_at = rfc3339(FAKE_EPOCH_S + st.starts);
    st.next_ip += 1;
    let ip = format!("10.89.{}.{}", 1 + st.next_ip / 250, 2 + st.next_ip % 250);
    if let Some(c) = st.containers.get_mut(name) {
        c.status = EngineStatus::Running;
        c.exit_code = None;
        c.oom_killed = false;
        c.started_at = Some(started_at);
        c.ip = Some(ip);
    }
}

fn not_found(what: &str, name: &str) -> EngineError {
    EngineError::NotFound {
        what: format!("{what} {name}"),
    }
}

fn label_matches(labels: &BTreeMap<String, String>, label: (&str, &str)) -> bool {
    labels.get(label.0).map(String::as_str) == Some(label.1)
}

/// The exit status of a process killed by `signal`.
fn signal_exit_code(signal: &str) -> Option<i64> {
    let name = signal.trim_start_matches("SIG").to_ascii_uppercase();
    let number = match name.as_str() {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => 15,
        other => other.parse().ok()?,
    };
    Some(128 + number)
}

#[async_trait]
impl Engine for FakeEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Fake
    }

    async fn info(&self) -> Result<EngineInfo> {
        drop(self.begin(Call::Info)?);
        Ok(EngineInfo {
            kind: EngineKind::Fake,
            version: "0.0.0-fake".into(),
            api_version: "fake".into(),
            endpoint: "memory".into(),
            os: "fake".into(),
            kernel: "fake".into(),
            cgroup_version: "2".into(),
            cgroup_driver: "none".into(),
            runtime: "fake".into(),
        })
    }

    async fn list_containers(&self, label: (&str, &str)) -> Result<Vec<ObservedContainer>> {
        let list = self.list_now(label)?;
        let hook = self
            .list_hook
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(hook) = hook {
            hook();
        }
        Ok(list)
    }

    async fn inspect_container(&self, name: &str) -> Result<Option<ObservedContainer>> {
        let st = self.begin(Call::Inspect { name: name.into() })?;
        Ok(st.containers.get(name).map(FakeContainer::observed))
    }

    async fn container_ip(&self, name: &str, network: &str) -> Result<Option<String>> {
        let st = self.begin(Call::ContainerIp {
            name: name.into(),
            network: network.into(),
        })?;
        Ok(st
            .containers
            .get(name)
            .filter(|c| c.spec.network == network)
            .and_then(|c| c.ip.clone()))
    }

    async fn image_exists(&self, image: &str) -> Result<bool> {
        let st = self.begin(Call::ImageExists {
            image: image.into(),
        })?;
        Ok(st.images.contains(image))
    }

    async fn pull_image(
        &self,
        image: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()> {
        let mut st = self.begin(Call::Pull {
            image: image.into(),
        })?;
        st.images.insert(image.to_string());
        drop(st);
        progress(PullProgress {
            layer: Some("fake-layer".into()),
            status: "Downloading".into(),
            current: Some(50),
            total: Some(100),
        });
        progress(PullProgress {
            layer: Some("fake-layer".into()),
            status: "Pull complete".into(),
            current: Some(100),
            total: Some(100),
        });
        Ok(())
    }

    async fn ensure_network(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool> {
        let mut st = self.begin(Call::EnsureNetwork { name: name.into() })?;
        if st.networks.contains_key(name) {
            return Ok(false);
        }
        st.networks.insert(name.into(), labels.clone());
        Ok(true)
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        let mut st = self.begin(Call::RemoveNetwork { name: name.into() })?;
        let in_use = st
            .containers
            .values()
            .any(|c| c.spec.network == name && c.status == EngineStatus::Running);
        if in_use {
            return Err(EngineError::Conflict {
                what: format!("network {name} in use"),
            });
        }
        st.networks.remove(name);
        Ok(())
    }

    async fn list_networks(&self, label: (&str, &str)) -> Result<Vec<EngineObject>> {
        let st = self.begin(Call::ListNetworks)?;
        Ok(st
            .networks
            .iter()
            .filter(|(_, labels)| label_matches(labels, label))
            .map(|(name, labels)| EngineObject {
                name: name.clone(),
                labels: labels.clone(),
            })
            .collect())
    }

    async fn ensure_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool> {
        let mut st = self.begin(Call::EnsureVolume { name: name.into() })?;
        if st.volumes.contains_key(name) {
            return Ok(false);
        }
        st.volumes.insert(name.into(), labels.clone());
        Ok(true)
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        let mut st = self.begin(Call::RemoveVolume { name: name.into() })?;
        let in_use = st
            .containers
            .values()
            .any(|c| c.spec.volumes.iter().any(|v| v.volume == name));
        if in_use {
            return Err(EngineError::Conflict {
                what: format!("volume {name} in use"),
            });
        }
        st.volumes.remove(name);
        Ok(())
    }

    async fn list_volumes(&self, label: (&str, &str)) -> Result<Vec<EngineObject>> {
        let st = self.begin(Call::ListVolumes)?;
        Ok(st
            .volumes
            .iter()
            .filter(|(_, labels)| label_matches(labels, label))
            .map(|(name, labels)| EngineObject {
                name: name.clone(),
                labels: labels.clone(),
            })
            .collect())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let mut st = self.begin(Call::Create {
            name: spec.name.clone(),
        })?;
        if st.containers.contains_key(&spec.name) {
            return Err(EngineError::Conflict {
                what: format!("container {}", spec.name),
            });
        }
        if !st.images.contains(&spec.image) {
            return Err(not_found("image", &spec.image));
        }
        if !st.networks.contains_key(&spec.network) {
            return Err(not_found("network", &spec.network));
        }
        // Like the real engines, a missing named volume is created.
        for v in &spec.volumes {
            st.volumes.entry(v.volume.clone()).or_default();
        }
        st.next_id += 1;
        let id = format!("{:064x}", st.next_id);
        st.containers.insert(
            spec.name.clone(),
            FakeContainer {
                id: id.clone(),
                spec: spec.clone(),
                status: EngineStatus::Created,
                exit_code: None,
                oom_killed: false,
                started_at: None,
                ip: None,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, name: &str) -> Result<()> {
        let mut st = self.begin(Call::Start { name: name.into() })?;
        let status = st
            .containers
            .get(name)
            .ok_or_else(|| not_found("container", name))?
            .status;
        if status != EngineStatus::Running {
            start_in(&mut st, name);
            self.emit(&st, name, EngineEventAction::Started);
        }
        Ok(())
    }

    async fn stop_container(&self, name: &str, grace: Duration) -> Result<()> {
        let mut st = self.begin(Call::Stop {
            name: name.into(),
            grace,
        })?;
        let code = st.stop_exit_codes.get(name).copied().unwrap_or(0);
        let c = st
            .containers
            .get_mut(name)
            .ok_or_else(|| not_found("container", name))?;
        if c.status == EngineStatus::Running {
            c.status = EngineStatus::Exited;
            c.exit_code = Some(code);
            c.ip = None;
            self.emit(&st, name, EngineEventAction::Died);
        }
        Ok(())
    }

    async fn kill_container(&self, name: &str, signal: &str) -> Result<()> {
        let mut st = self.begin(Call::Kill {
            name: name.into(),
            signal: signal.into(),
        })?;
        let stop_code = st.stop_exit_codes.get(name).copied().unwrap_or(0);
        let c = st
            .containers
            .get_mut(name)
            .ok_or_else(|| not_found("container", name))?;
        if c.status != EngineStatus::Running {
            return Err(EngineError::Conflict {
                what: format!("container {name} is not running"),
            });
        }
        let code = match signal_exit_code(signal) {
            // A SIGTERM is handled like a stop (the app's own exit code).
            Some(143) => stop_code,
            Some(code) => code,
            None => {
                return Err(EngineError::Api {
                    call: "Kill".into(),
                    detail: format!("invalid signal {signal}"),
                });
            }
        };
        c.status = EngineStatus::Exited;
        c.exit_code = Some(code);
        c.ip = None;
        self.emit(&st, name, EngineEventAction::Died);
        Ok(())
    }

    async fn remove_container(&self, name: &str, force: bool) -> Result<()> {
        let mut st = self.begin(Call::Remove {
            name: name.into(),
            force,
        })?;
        match st.containers.get(name) {
            None => Ok(()),
            Some(c) if c.status == EngineStatus::Running && !force => Err(EngineError::Conflict {
                what: format!("container {name} is running"),
            }),
            Some(_) => {
                self.emit(&st, name, EngineEventAction::Removed);
                st.containers.remove(name);
                Ok(())
            }
        }
    }

    async fn container_image_id(&self, name: &str) -> Result<Option<String>> {
        let st = self.begin(Call::Inspect { name: name.into() })?;
        // The fake has no image store: the reference stands in for the id.
        Ok(st
            .containers
            .get(name)
            .map(|c| format!("fake-image:{}", c.spec.image)))
    }

    async fn rename_container(&self, name: &str, new_name: &str) -> Result<()> {
        let mut st = self.begin(Call::Rename {
            name: name.into(),
            new_name: new_name.into(),
        })?;
        if st.containers.contains_key(new_name) {
            return Err(EngineError::Conflict {
                what: format!("container {new_name}"),
            });
        }
        let Some(mut c) = st.containers.remove(name) else {
            return Err(not_found("container", name));
        };
        c.spec.name = new_name.to_string();
        st.containers.insert(new_name.to_string(), c);
        if let Some(lines) = st.logs.remove(name) {
            st.logs.insert(new_name.to_string(), lines);
        }
        // Both engines report a rename as an event of the renamed container.
        self.emit(&st, new_name, EngineEventAction::Other);
        Ok(())
    }

    async fn logs(&self, name: &str, tail: usize) -> Result<Vec<String>> {
        let st = self.begin(Call::Logs {
            name: name.into(),
            tail,
        })?;
        if !st.containers.contains_key(name) {
            return Err(not_found("container", name));
        }
        let lines = st.logs.get(name).cloned().unwrap_or_default();
        let skip = lines.len().saturating_sub(tail);
        Ok(lines[skip..].to_vec())
    }

    async fn exec(&self, name: &str, argv: &[String], _timeout: Duration) -> Result<ExecOutput> {
        let st = self.begin(Call::Exec {
            name: name.into(),
            argv: argv.to_vec(),
        })?;
        let c = st
            .containers
            .get(name)
            .ok_or_else(|| not_found("container", name))?;
        if c.status != EngineStatus::Running {
            return Err(EngineError::Conflict {
                what: format!("container {name} is not running"),
            });
        }
        Ok(st.exec_results.get(name).cloned().unwrap_or(ExecOutput {
            exit_code: 0,
            output: String::new(),
        }))
    }

    async fn watch_events(&self, sink: &(dyn Fn(EngineEvent) + Send + Sync)) -> Result<()> {
        let mut rx = {
            let _st = self.begin(Call::Events)?;
            self.events.subscribe()
        };
        loop {
            match rx.recv().await {
                Ok(event) => sink(event),
                // A slow watcher misses events, as with a real engine.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }

    fn call_count(&self) -> u64 {
        self.lock().call_count
    }
}

/// `secs` since the Unix epoch as RFC 3339 UTC (`2000-01-01T00:00:01Z`).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::naming;
    use berth_core::spec::NamedVolume;

    const IMAGE: &str = "localhost/app:1";

    fn spec(name: &str, app: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            stack: "demo".into(),
            app: app.into(),
            image: IMAGE.into(),
            entrypoint: None,
            command: None,
            env: BTreeMap::new(),
            ports: vec![],
            volumes: vec![NamedVolume {
                volume: format!("{name}-data"),
                container_path: "/data".into(),
            }],
            binds: vec![],
            network: "demo".into(),
            aliases: vec![app.into()],
            labels: BTreeMap::from([
                (naming::LABEL_MANAGED.to_string(), "true".to_string()),
                (naming::LABEL_STACK.to_string(), "demo".to_string()),
                (naming::LABEL_APP.to_string(), app.to_string()),
            ]),
            cap_add: vec![],
            memory_bytes: None,
            user: None,
            stop_grace_s: 10,
            no_new_privileges: true,
            cap_drop_all: true,
            log_max_size: "10m".into(),
            log_max_files: 3,
        }
    }

    async fn ready() -> FakeEngine {
        let fake = FakeEngine::new();
        fake.add_image(IMAGE);
        fake.ensure_network("demo", &BTreeMap::new()).await.unwrap();
        fake.take_calls();
        fake
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn containers_move_through_realistic_states() {
        block_on(async {
            let fake = ready().await;
            let handle = fake.clone();
            fake.create_container(&spec("demo-a", "a")).await.unwrap();
            let c = handle.container("demo-a").unwrap();
            assert_eq!((c.status, c.started_at), (EngineStatus::Created, None));

            fake.start_container("demo-a").await.unwrap();
            let c = fake.inspect_container("demo-a").await.unwrap().unwrap();
            assert_eq!(c.status, EngineStatus::Running);
            assert_eq!(c.started_at.as_deref(), Some("2000-01-01T00:00:01Z"));
            assert!(fake.container_ip("demo-a", "demo").await.unwrap().is_some());
            assert_eq!(fake.container_ip("demo-a", "other").await.unwrap(), None);

            fake.stop_container("demo-a", Duration::from_secs(5))
                .await
                .unwrap();
            let c = handle.container("demo-a").unwrap();
            assert_eq!((c.status, c.exit_code), (EngineStatus::Exited, Some(0)));
            assert_eq!(fake.container_ip("demo-a", "demo").await.unwrap(), None);

            fake.start_container("demo-a").await.unwrap();
            assert_eq!(
                handle.container("demo-a").unwrap().started_at.as_deref(),
                Some("2000-01-01T00:00:02Z")
            );
            fake.kill_container("demo-a", "SIGKILL").await.unwrap();
            assert_eq!(handle.container("demo-a").unwrap().exit_code, Some(137));

            assert_eq!(
                handle.calls(),
                vec![
                    Call::Create {
                        name: "demo-a".into()
                    },
                    Call::Start {
                        name: "demo-a".into()
                    },
                    Call::Inspect {
                        name: "demo-a".into()
                    },
                    Call::ContainerIp {
                        name: "demo-a".into(),
                        network: "demo".into()
                    },
                    Call::ContainerIp {
                        name: "demo-a".into(),
                        network: "other".into()
                    },
                    Call::Stop {
                        name: "demo-a".into(),
                        grace: Duration::from_secs(5)
                    },
                    Call::ContainerIp {
                        name: "demo-a".into(),
                        network: "demo".into()
                    },
                    Call::Start {
                        name: "demo-a".into()
                    },
                    Call::Kill {
                        name: "demo-a".into(),
                        signal: "SIGKILL".into()
                    },
                ]
            );
            assert_eq!(fake.call_count(), 10); // ensure_network in setup + 9 above
        });
    }

    #[test]
    fn configured_stop_exit_code_and_sigterm() {
        block_on(async {
            let fake = ready().await;
            fake.create_container(&spec("demo-a", "a")).await.unwrap();
            fake.set_stop_exit_code("demo-a", 143);
            fake.start_container("demo-a").await.unwrap();
            fake.stop_container("demo-a", Duration::ZERO).await.unwrap();
            assert_eq!(fake.container("demo-a").unwrap().exit_code, Some(143));
            fake.set_stop_exit_code("demo-a", 0);
            fake.start_container("demo-a").await.unwrap();
            fake.kill_container("demo-a", "TERM").await.unwrap();
            assert_eq!(fake.container("demo-a").unwrap().exit_code, Some(0));
            let err = fake.kill_container("demo-a", "KILL").await.unwrap_err();
            assert!(matches!(err, EngineError::Conflict { .. }), "{err}");
        });
    }

    #[test]
    fn create_needs_image_and_network_and_rejects_duplicates() {
        block_on(async {
            let fake = FakeEngine::new();
            let err = fake.create_container(&spec("demo-a", "a")).await;
            assert!(err.unwrap_err().is_not_found());
            fake.pull_image(IMAGE, &|_| {}).await.unwrap();
            let err = fake.create_container(&spec("demo-a", "a")).await;
            assert!(matches!(err, Err(EngineError::NotFound { what }) if what == "network demo"));
            fake.ensure_network("demo", &BTreeMap::new()).await.unwrap();
            fake.create_container(&spec("demo-a", "a")).await.unwrap();
            assert!(fake.has_volume("demo-a-data"));
            let err = fake.create_container(&spec("demo-a", "a")).await;
            assert!(matches!(err, Err(EngineError::Conflict { .. })));
        });
    }

    #[test]
    fn list_filters_by_label_and_hides_inspect_only_facts() {
        block_on(async {
            let fake = ready().await;
            fake.create_container(&spec("demo-a", "a")).await.unwrap();
            let mut other = spec("x-b", "b");
            other.labels.insert(naming::LABEL_STACK.into(), "x".into());
            fake.create_container(&other).await.unwrap();
            fake.start_container("demo-a").await.unwrap();
            fake.set_exited("demo-a", 137, true);

            let list = fake
                .list_containers((naming::LABEL_STACK, "demo"))
                .await
                .unwrap();
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].exit_code, Some(137));
            assert!(!list[0].oom_killed);
            let inspected = fake.inspect_container("demo-a").await.unwrap().unwrap();
            assert!(inspected.oom_killed);
        });
    }

    #[test]
    fn failures_can_be_injected_for_any_or_one_kind_of_call() {
        block_on(async {
            let fake = ready().await;
            fake.fail_next(1, FailKind::Unavailable);
            let err = fake.list_containers(("a", "b")).await.unwrap_err();
            assert!(matches!(err, EngineError::Unavailable { .. }));
            assert!(fake.list_containers(("a", "b")).await.is_ok());

            fake.fail_next_on(CallKind::Pull, 2);
            assert!(fake.image_exists(IMAGE).await.is_ok());
            for _ in 0..2 {
                let err = fake.pull_image("x:1", &|_| {}).await.unwrap_err();
                assert!(matches!(err, EngineError::Pull { .. }), "{err}");
            }
            assert!(fake.pull_image("x:1", &|_| {}).await.is_ok());

            fake.fail_next_on_with(CallKind::Start, 1, FailKind::Timeout);
            fake.create_container(&spec("demo-a", "a")).await.unwrap();
            let err = fake.start_container("demo-a").await.unwrap_err();
            assert!(matches!(err, EngineError::Timeout { .. }));
            // The failed call left the container untouched.
            assert_eq!(
                fake.container("demo-a").unwrap().status,
                EngineStatus::Created
            );
            assert_eq!(fake.count_calls(CallKind::Start), 1);

            fake.fail_next(3, FailKind::Api);
            fake.clear_failures();
            assert!(fake.info().await.is_ok());
        });
    }

    #[test]
    fn behind_the_back_changes_logs_and_exec() {
        block_on(async {
            let fake = ready().await;
            fake.create_container(&spec("demo-a", "a")).await.unwrap();
            let err = fake
                .exec("demo-a", &["true".into()], Duration::from_secs(1))
                .await;
            assert!(matches!(err, Err(EngineError::Conflict { .. })));
            fake.start_behind_back("demo-a");
            let out = fake
                .exec("demo-a", &["true".into()], Duration::from_secs(1))
                .await
                .unwrap();
            assert_eq!(out.exit_code, 0);
            fake.set_exec_result(
                "demo-a",
                ExecOutput {
                    exit_code: 7,
                    output: "boom".into(),
                },
            );
            let out = fake
                .exec("demo-a", &["x".into()], Duration::from_secs(1))
                .await
                .unwrap();
            assert_eq!((out.exit_code, out.output.as_str()), (7, "boom"));

            fake.set_logs("demo-a", vec!["1".into(), "2".into(), "3".into()]);
            assert_eq!(fake.logs("demo-a", 2).await.unwrap(), vec!["2", "3"]);
            assert_eq!(fake.logs("demo-a", 10).await.unwrap().len(), 3);

            let err = fake.remove_container("demo-a", false).await.unwrap_err();
            assert!(matches!(err, EngineError::Conflict { .. }));
            fake.remove_behind_back("demo-a");
            assert_eq!(fake.inspect_container("demo-a").await.unwrap(), None);
            fake.remove_container("demo-a", false).await.unwrap();
            assert!(fake.logs("demo-a", 1).await.unwrap_err().is_not_found());
        });
    }

    #[test]
    fn networks_and_volumes_are_idempotent() {
        block_on(async {
            let fake = ready().await;
            let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
            assert!(fake.ensure_volume("v1", &labels).await.unwrap());
            assert!(!fake.ensure_volume("v1", &labels).await.unwrap());
            assert_eq!(fake.list_volumes(("k", "v")).await.unwrap().len(), 1);
            fake.remove_volume("v1").await.unwrap();
            fake.remove_volume("v1").await.unwrap();
            assert!(fake.list_volumes(("k", "v")).await.unwrap().is_empty());

            assert!(fake.ensure_network("n1", &labels).await.unwrap());
            assert!(!fake.ensure_network("n1", &labels).await.unwrap());
            assert_eq!(fake.list_networks(("k", "v")).await.unwrap()[0].name, "n1");
            fake.remove_network("n1").await.unwrap();
            fake.remove_network("n1").await.unwrap();
            assert!(!fake.has_network("n1"));
        });
    }

    #[test]
    fn watchers_see_lifecycle_events_of_managed_containers() {
        block_on(async {
            let fake = ready().await;
            let seen = Arc::new(Mutex::new(Vec::new()));
            let sink_seen = seen.clone();
            let sink = move |e: EngineEvent| {
                sink_seen
                    .lock()
                    .unwrap()
                    .push((e.container, e.app, e.action))
            };
            let watch = fake.watch_events(&sink);
            tokio::pin!(watch);
            let act = async {
                // Let the watcher subscribe first.
                tokio::task::yield_now().await;
                fake.create_container(&spec("demo-a", "a")).await.unwrap();
                fake.start_container("demo-a").await.unwrap();
                fake.set_exited("demo-a", 3, false);
                fake.remove_behind_back("demo-a");
                // Then let it take the queued events.
                while seen.lock().unwrap().len() < 3 {
                    tokio::task::yield_now().await;
                }
            };
            tokio::select! {
                r = &mut watch => panic!("the watch ended: {r:?}"),
                () = act => {}
            }
            let a = || ("demo-a".to_string(), Some("a".to_string()));
            assert_eq!(
                *seen.lock().unwrap(),
                vec![
                    (a().0, a().1, EngineEventAction::Started),
                    (a().0, a().1, EngineEventAction::Died),
                    (a().0, a().1, EngineEventAction::Removed),
                ]
            );
            assert_eq!(fake.count_calls(CallKind::Events), 1);
        });
    }

    #[test]
    fn rfc3339_formats_epoch_offsets() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(FAKE_EPOCH_S), "2000-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }
}
