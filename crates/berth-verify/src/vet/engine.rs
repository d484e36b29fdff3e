//! Engine: create, start, probe (exec `true`), stop and remove a tiny
//! container end to end, timing each step. The container (and the network
//! made for it) is always removed, also when a step fails: every engine
//! call is bounded well inside the stage's timeout, so the stage is never
//! cancelled half-way. Leftovers of earlier vets whose process is gone are
//! removed first.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_core::classify::EngineStatus;
use berth_core::pipeline::Measurement;
use berth_core::spec::ContainerSpec;
use berth_engine::Engine;

use super::{STAGE_ENGINE, VetShared};
use crate::executor::{Stage, StageContext, StageOutcome};

/// Label on every object the Engine stage creates.
pub const LABEL_VET: &str = "io.berth.vet";
/// The pid of the vet that created an object (for leftover cleanup).
pub const LABEL_VET_PID: &str = "io.berth.vet.pid";
/// The probe container's command: sleeps, and exits at once on SIGTERM.
pub const PROBE_COMMAND: &str = "trap 'exit 0' TERM; sleep 100000 & wait";
/// Bound on one engine call.
const CALL_TIMEOUT_S: u64 = 30;
/// Bound on waiting for the container to run.
const RUNNING_WAIT_MS: u64 = 10_000;
const RUNNING_POLL_MS: u64 = 50;
/// Stop grace: the command exits on SIGTERM, so this is never waited out.
const STOP_GRACE_S: u64 = 10;
/// Memory cap of the probe container.
const PROBE_MEMORY_BYTES: u64 = 64 << 20;

/// The probe container's name for this process.
pub fn container_name() -> String {
    format!("berth-vet-{}", std::process::id())
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_VET.to_string(), "true".to_string()),
        (LABEL_VET_PID.to_string(), std::process::id().to_string()),
    ])
}

/// The spec of the probe container: hardened like every berth container.
pub fn probe_spec(image: &str, network: &str) -> ContainerSpec {
    ContainerSpec {
        name: container_name(),
        stack: "berth-vet".into(),
        app: "vet".into(),
        image: image.into(),
        entrypoint: None,
        command: Some(vec!["sh".into(), "-c".into(), PROBE_COMMAND.into()]),
        env: BTreeMap::new(),
        ports: Vec::new(),
        volumes: Vec::new(),
        binds: Vec::new(),
        network: network.into(),
        aliases: Vec::new(),
        labels: labels(),
        cap_add: Vec::new(),
        memory_bytes: Some(PROBE_MEMORY_BYTES),
        user: None,
        stop_grace_s: STOP_GRACE_S,
        no_new_privileges: true,
        cap_drop_all: true,
        log_max_size: "1m".into(),
        log_max_files: 1,
    }
}

/// Whether the process that created a labelled object is gone.
fn owner_gone(labels: &BTreeMap<String, String>) -> bool {
    let me = std::process::id().to_string();
    match labels.get(LABEL_VET_PID) {
        Some(pid) if *pid == me => true,
        Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}

async fn bounded<T>(
    call: &str,
    fut: impl Future<Output = berth_engine::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(CALL_TIMEOUT_S), fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{call}: {e}")),
        Err(_) => Err(format!("{call}: no answer within {CALL_TIMEOUT_S}s")),
    }
}

/// Times each step into `measurements`.
struct Steps {
    measurements: Vec<Measurement>,
}

impl Steps {
    async fn timed<T>(
        &mut self,
        step: &str,
        fut: impl Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        let started = Instant::now();
        let out = fut.await;
        self.measurements.push(Measurement::new(
            step,
            (started.elapsed().as_secs_f64() * 1000.0).round(),
            "ms",
        ));
        out
    }
}

async fn remove_leftovers(engine: &dyn Engine) -> Vec<String> {
    let mut removed = Vec::new();
    if let Ok(Ok(list)) = tokio::time::timeout(
        Duration::from_secs(CALL_TIMEOUT_S),
        engine.list_containers((LABEL_VET, "true")),
    )
    .await
    {
        for c in list.into_iter().filter(|c| owner_gone(&c.labels)) {
            if bounded("remove", engine.remove_container(&c.name, true))
                .await
                .is_ok()
            {
                removed.push(c.name);
            }
        }
    }
    if let Ok(Ok(list)) = tokio::time::timeout(
        Duration::from_secs(CALL_TIMEOUT_S),
        engine.list_networks((LABEL_VET, "true")),
    )
    .await
    {
        for n in list.into_iter().filter(|n| owner_gone(&n.labels)) {
            if bounded("remove_network", engine.remove_network(&n.name))
                .await
                .is_ok()
            {
                removed.push(n.name);
            }
        }
    }
    removed
}

/// The end-to-end check; the caller removes the container and network.
async fn exercise(
    engine: &dyn Engine,
    image: &str,
    network: &str,
    steps: &mut Steps,
) -> Result<String, String> {
    let present = steps
        .timed(
            "image_check",
            bounded("image_exists", engine.image_exists(image)),
        )
        .await?;
    if !present {
        return Err(format!(
            "image {image} is not present in {} (build it with `make images`; no registry is needed)",
            engine.kind()
        ));
    }
    steps
        .timed(
            "network_create",
            bounded("ensure_network", engine.ensure_network(network, &labels())),
        )
        .await?;
    let spec = probe_spec(image, network);
    steps
        .timed("create", bounded("create", engine.create_container(&spec)))
        .await?;
    steps
        .timed(
            "start",
            bounded("start", engine.start_container(&spec.name)),
        )
        .await?;
    steps
        .timed("running", wait_running(engine, &spec.name))
        .await?;
    let argv = vec!["true".to_string()];
    let probe = steps
        .timed(
            "exec",
            bounded(
                "exec",
                engine.exec(&spec.name, &argv, Duration::from_secs(CALL_TIMEOUT_S)),
            ),
        )
        .await?;
    if probe.exit_code != 0 {
        return Err(format!(
            "exec `true` exited {}: {}",
            probe.exit_code,
            probe.output.trim()
        ));
    }
    steps
        .timed(
            "stop",
            bounded(
                "stop",
                engine.stop_container(&spec.name, Duration::from_secs(STOP_GRACE_S)),
            ),
        )
        .await?;
    let stopped = bounded("inspect", engine.inspect_container(&spec.name)).await?;
    match stopped {
        Some(c) if c.status == EngineStatus::Running => {
            return Err("the container still runs after stop".into());
        }
        None => return Err("the container vanished before it was removed".into()),
        Some(_) => {}
    }
    steps
        .timed(
            "remove",
            bounded("remove", engine.remove_container(&spec.name, false)),
        )
        .await?;
    match bounded("inspect", engine.inspect_container(&spec.name)).await? {
        Some(_) => Err("the container is still listed after remove".into()),
        None => Ok(format!(
            "{} ran {} from {image}: created, started, exec `true` exited 0, stopped, removed",
            engine.kind(),
            spec.name
        )),
    }
}

async fn wait_running(engine: &dyn Engine, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_millis(RUNNING_WAIT_MS);
    loop {
        let seen = bounded("inspect", engine.inspect_container(name)).await?;
        match seen {
            Some(c) if c.status == EngineStatus::Running => return Ok(()),
            Some(c) if matches!(c.status, EngineStatus::Exited | EngineStatus::Dead) => {
                let logs = engine.logs(name, 20).await.unwrap_or_default();
                return Err(format!(
                    "the container exited ({:?}) instead of running; logs: {}",
                    c.exit_code,
                    logs.join(" | ")
                ));
            }
            _ if Instant::now() >= deadline => {
                return Err(format!(
                    "the container did not run within {RUNNING_WAIT_MS} ms"
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(RUNNING_POLL_MS)).await,
        }
    }
}

/// Run the check against `engine`, then always clean up. Returns the
/// outcome with timings.
pub async fn check(engine: &dyn Engine, image: &str) -> StageOutcome {
    let network = format!("{}-net", container_name());
    let leftovers = remove_leftovers(engine).await;
    let mut steps = Steps {
        measurements: Vec::new(),
    };
    let started = Instant::now();
    let result = exercise(engine, image, &network, &mut steps).await;
    // Cleanup runs whatever happened above: force-remove the container
    // (a no-op when it is already gone), then the network.
    let mut cleanup_errors = Vec::new();
    if let Err(e) = bounded("remove", engine.remove_container(&container_name(), true)).await {
        cleanup_errors.push(e);
    }
    match bounded("inspect", engine.inspect_container(&container_name())).await {
        Ok(Some(_)) => cleanup_errors.push(format!(
            "{} is still present after cleanup",
            container_name()
        )),
        Ok(None) => {}
        Err(e) => cleanup_errors.push(e),
    }
    if let Err(e) = bounded("remove_network", engine.remove_network(&network)).await {
        cleanup_errors.push(e);
    }
    steps.measurements.push(Measurement::new(
        "total",
        (started.elapsed().as_secs_f64() * 1000.0).round(),
        "ms",
    ));
    let mut summary = match &result {
        Ok(s) => s.clone(),
        Err(e) => format!("FAILED {e}"),
    };
    if !cleanup_errors.is_empty() {
        summary.push_str(&format!("; cleanup FAILED: {}", cleanup_errors.join("; ")));
    }
    if !leftovers.is_empty() {
        summary.push_str(&format!(
            "; removed leftovers of earlier vets: {}",
            leftovers.join(", ")
        ));
    }
    let mut environment = BTreeMap::new();
    environment.insert(format!("image.{image}"), "present".into());
    StageOutcome {
        passed: result.is_ok() && cleanup_errors.is_empty(),
        summary,
        measurements: steps.measurements,
        artifacts: Vec::new(),
        environment: if result.is_ok() {
            environment
        } else {
            BTreeMap::new()
        },
    }
}

pub(crate) struct EngineStage(pub std::sync::Arc<VetShared>);

#[async_trait]
impl Stage for EngineStage {
    fn name(&self) -> &str {
        STAGE_ENGINE
    }

    fn timeout(&self) -> Duration {
        // Twelve bounded calls at most, plus the running wait.
        Duration::from_secs(CALL_TIMEOUT_S * 14 + RUNNING_WAIT_MS / 1000)
    }

    async fn run(&self, _ctx: &StageContext<'_>) -> StageOutcome {
        match &self.0.engine {
            None => match &self.0.opts.engine_error {
                Some(e) => StageOutcome::fail(format!("FAILED the engine cannot be reached: {e}")),
                None => StageOutcome::pass("no engine given: container round trip not checked"),
            },
            Some(engine) => check(engine.as_ref(), &self.0.opts.engine_image).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_engine::{CallKind, FailKind, FakeEngine};

    use super::*;

    #[tokio::test]
    async fn the_round_trip_passes_on_the_fake_engine_and_leaves_nothing() {
        let engine = FakeEngine::new();
        engine.add_image("localhost/berth-demo:latest");
        let out = check(&engine, "localhost/berth-demo:latest").await;
        assert!(out.passed, "{}", out.summary);
        assert!(
            out.summary.contains("exec `true` exited 0"),
            "{}",
            out.summary
        );
        let steps: Vec<&str> = out.measurements.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            steps,
            [
                "image_check",
                "network_create",
                "create",
                "start",
                "running",
                "exec",
                "stop",
                "remove",
                "total"
            ]
        );
        assert_eq!(
            engine.inspect_container(&container_name()).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_failed_step_still_removes_the_container() {
        let engine = FakeEngine::new();
        engine.add_image("localhost/berth-demo:latest");
        engine.fail_next_on_with(CallKind::Exec, 1, FailKind::Api);
        let out = check(&engine, "localhost/berth-demo:latest").await;
        assert!(!out.passed);
        assert!(out.summary.starts_with("FAILED exec:"), "{}", out.summary);
        assert_eq!(
            engine.inspect_container(&container_name()).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_missing_image_is_explained() {
        let engine = FakeEngine::new();
        let out = check(&engine, "localhost/none:latest").await;
        assert!(!out.passed);
        assert!(out.summary.contains("make images"), "{}", out.summary);
    }
}
