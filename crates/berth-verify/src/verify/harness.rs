//! What every cell of a verify run shares: the berth binary under test
//! (driven as a user would, through its own command line, on the run's own
//! state directory), the engine (to look at what berth did, and to inject
//! crashes), the renamed stack, the daemon child, and the evidence
//! collected when a cell fails — every text redacted with the secrets of
//! the run's state directory.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::classify::EngineStatus;
use berth_core::model::{App, Stack};
use berth_core::naming;
use berth_core::observed::ObservedContainer;
use berth_engine::{Engine, EngineKind};
use serde_json::Value;

use super::VerifyParams;
use super::daemon::{DaemonCommand, DaemonProc, StopSignal};
use crate::executor::ArtifactOut;

/// Largest output kept from one berth command, per stream.
pub const COMMAND_OUTPUT_BYTES_MAX: usize = 256 * 1024;
/// Log lines kept per container in a failure's artifacts.
pub const ARTIFACT_LOG_LINES: usize = 100;
/// Events kept in a failure's artifacts.
pub const ARTIFACT_EVENTS: usize = 50;
/// Bound on one engine call made by the harness.
pub const ENGINE_CALL_TIMEOUT_S: u64 = 30;
/// How often a wait looks again.
pub const POLL_MS: u64 = 200;
/// Bound on a read command (`status`, `events`, `recover`).
pub const READ_COMMAND_TIMEOUT_S: u64 = 60;
/// Bound on the daemon's exit after SIGTERM (its own shutdown timeout is
/// 30 s in verify runs).
pub const DAEMON_STOP_TIMEOUT_S: u64 = 45;

/// The outcome of one berth command.
#[derive(Debug, Clone)]
pub struct CmdOut {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub ms: u64,
}

impl CmdOut {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The last lines of stderr, for failure messages.
    pub fn why(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        format!(
            "exit {}: {}",
            self.code.map_or("signal".into(), |c| c.to_string()),
            if tail.is_empty() {
                "(no output)"
            } else {
                &tail
            }
        )
    }
}

pub(crate) struct Harness {
    pub params: VerifyParams,
    pub exe: PathBuf,
    pub engine: Arc<dyn Engine>,
    pub kind: EngineKind,
    /// The renamed stack.
    pub stack: Stack,
    pub stack_file: PathBuf,
    pub state_dir: PathBuf,
    /// Secret values seen in the run's state directory (they outlive
    /// uninstalls: an old value must stay redacted).
    pub known_secrets: Arc<Mutex<BTreeSet<String>>>,
    daemon: tokio::sync::Mutex<Option<DaemonProc>>,
}

fn bound(bytes: &[u8]) -> String {
    crate::artifacts::bound_text(&String::from_utf8_lossy(bytes), COMMAND_OUTPUT_BYTES_MAX)
}

impl Harness {
    pub fn new(
        params: VerifyParams,
        exe: PathBuf,
        engine: Arc<dyn Engine>,
        stack: Stack,
        stack_file: PathBuf,
        known_secrets: Arc<Mutex<BTreeSet<String>>>,
    ) -> Harness {
        let state_dir = params.work_dir.join("state");
        Harness {
            kind: engine.kind(),
            params,
            exe,
            engine,
            stack,
            stack_file,
            state_dir,
            known_secrets,
            daemon: tokio::sync::Mutex::new(None),
        }
    }

    /// `--engine`, `--state-dir`, `--stack` and the engine sockets.
    pub fn global_args(&self) -> Vec<String> {
        let mut args = vec![
            "--engine".to_string(),
            self.kind.to_string(),
            "--state-dir".to_string(),
            self.state_dir.display().to_string(),
            "--stack".to_string(),
            self.stack_file.display().to_string(),
        ];
        if let Some(s) = &self.params.engine.podman_socket {
            args.extend(["--podman-socket".to_string(), s.display().to_string()]);
        }
        if let Some(s) = &self.params.engine.docker_socket {
            args.extend(["--docker-socket".to_string(), s.display().to_string()]);
        }
        args
    }

    /// Run `berth <global> <args>` with `env`, bounded by `timeout`.
    /// Direct mode unless a daemon of this run answers on the socket.
    pub async fn berth(&self, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> CmdOut {
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(self.global_args())
            .args(args)
            .env("BERTH_NO_DAEMON", "1")
            .env_remove("BERTH_CRASH_AFTER_STEP")
            .env_remove("BERTH_REPORT_CALLS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let shown = args.join(" ");
        let out = match cmd.spawn() {
            Err(e) => Err(format!("cannot run {}: {e}", self.exe.display())),
            Ok(child) => match tokio::time::timeout(timeout, child.wait_with_output()).await {
                Err(_) => Err(format!(
                    "`berth {shown}` did not finish within {} s",
                    timeout.as_secs()
                )),
                Ok(Err(e)) => Err(format!("`berth {shown}`: {e}")),
                Ok(Ok(o)) => Ok(o),
            },
        };
        let ms = started.elapsed().as_millis() as u64;
        match out {
            Ok(o) => CmdOut {
                code: o.status.code(),
                stdout: bound(&o.stdout),
                stderr: bound(&o.stderr),
                ms,
            },
            Err(e) => CmdOut {
                code: None,
                stdout: String::new(),
                stderr: e,
                ms,
            },
        }
    }

    /// The timeout of a mutating command: the stack's start timeout plus
    /// room for stops (each app's grace) and pulls.
    pub fn op_timeout(&self) -> Duration {
        Duration::from_secs(self.params.wait_timeout_s)
            + self.stack.settings.start_timeout
            + self
                .stack
                .apps
                .values()
                .map(|a| a.stop_grace)
                .max()
                .unwrap_or_default()
    }

    /// `berth status --json` (exit 0 or 1 both carry the report).
    pub async fn status(&self) -> Result<Value, String> {
        let out = self
            .berth(
                &["status", "--json"],
                &[],
                Duration::from_secs(READ_COMMAND_TIMEOUT_S),
            )
            .await;
        if !matches!(out.code, Some(0 | 1)) {
            return Err(format!("berth status --json failed: {}", out.why()));
        }
        serde_json::from_str(&out.stdout)
            .map_err(|e| format!("berth status --json is not JSON ({e}): {}", out.why()))
    }

    /// The run's apps, their dependencies or companions have a chain
    /// gate (only a daemon releases a held app).
    pub fn gated(&self) -> bool {
        let ids: BTreeSet<String> = self.params.apps.iter().cloned().collect();
        berth_core::graph::with_dependencies(&self.stack, &ids)
            .iter()
            .flat_map(|id| self.stack.with_companions(id))
            .any(|a| a.gate.is_some())
    }

    pub fn members(&self, app: &str) -> Vec<&App> {
        self.stack.with_companions(app)
    }

    pub fn container(&self, id: &str) -> String {
        naming::container_name(&self.stack.name, id)
    }

    /// One bounded engine call.
    pub async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = berth_engine::Result<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(Duration::from_secs(ENGINE_CALL_TIMEOUT_S), fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Err(_) => Err(format!(
                "{what}: no answer within {ENGINE_CALL_TIMEOUT_S} s"
            )),
        }
    }

    pub async fn inspect(&self, id: &str) -> Result<Option<ObservedContainer>, String> {
        let name = self.container(id);
        self.call(
            &format!("inspect {name}"),
            self.engine.inspect_container(&name),
        )
        .await
    }

    /// The container of `id` runs.
    pub async fn running(&self, id: &str) -> Result<bool, String> {
        Ok(self
            .inspect(id)
            .await?
            .is_some_and(|c| c.status == EngineStatus::Running))
    }

    /// Poll `check` until it returns `Ok(Some(v))` or `timeout` passes. An
    /// `Err` is remembered and returned at the timeout (a transient
    /// failure while something restarts is not the verdict).
    pub async fn wait_for<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, String>>,
    {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            match check().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                let why = if last.is_empty() {
                    String::new()
                } else {
                    format!(" (last: {last})")
                };
                return Err(format!(
                    "timed out after {} s waiting for {what}{why}",
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    pub fn wait_timeout(&self) -> Duration {
        Duration::from_secs(self.params.wait_timeout_s)
    }

    /// Learn the secret values now in the state directory.
    pub fn refresh_secrets(&self) {
        let Ok(state) = berth_store::StateDir::open(&self.state_dir) else {
            return;
        };
        if let Ok(values) = state.secrets().all_values() {
            let mut known = self.known_secrets.lock().unwrap_or_else(|e| e.into_inner());
            known.extend(values.into_iter().filter(|v| !v.is_empty()));
        }
    }

    /// Ids of the apps installed in the run's state directory.
    pub fn installed(&self) -> Result<BTreeSet<String>, String> {
        let state = berth_store::StateDir::open(&self.state_dir).map_err(|e| e.to_string())?;
        let store = state.store().map_err(|e| e.to_string())?;
        Ok(store
            .list_apps()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|a| a.stack == self.stack.name)
            .map(|a| a.id)
            .collect())
    }

    /// What remains of the stack in the engine and the state directory
    /// that no installed app accounts for: containers and volumes of apps
    /// not installed, the network when nothing is installed, secret mounts
    /// of apps not installed, stack secrets when nothing is installed.
    pub async fn orphans(&self) -> Result<Vec<String>, String> {
        let installed = self.installed()?;
        let label = (naming::LABEL_STACK, self.stack.name.as_str());
        let mut out = Vec::new();
        for c in self
            .call("list containers", self.engine.list_containers(label))
            .await?
        {
            if !c.app().is_some_and(|a| installed.contains(a)) {
                out.push(format!("container {}", c.name));
            }
        }
        for v in self
            .call("list volumes", self.engine.list_volumes(label))
            .await?
        {
            let app = v.labels.get(naming::LABEL_APP);
            if !app.is_some_and(|a| installed.contains(a)) {
                out.push(format!("volume {}", v.name));
            }
        }
        if installed.is_empty() {
            for n in self
                .call("list networks", self.engine.list_networks(label))
                .await?
            {
                out.push(format!("network {}", n.name));
            }
        }
        let mounts = self
            .state_dir
            .join(berth_store::SECRET_MOUNTS_DIR_NAME)
            .join(&self.stack.name);
        if let Ok(rd) = std::fs::read_dir(&mounts) {
            for e in rd.flatten() {
                let app = e.file_name().to_string_lossy().to_string();
                if !installed.contains(&app) {
                    out.push(format!("secret mounts {}", e.path().display()));
                }
            }
        }
        if installed.is_empty() {
            let secrets = self
                .state_dir
                .join(berth_store::SECRETS_DIR_NAME)
                .join(&self.stack.name);
            if let Ok(rd) = std::fs::read_dir(&secrets) {
                for e in rd.flatten() {
                    out.push(format!("secret file {}", e.path().display()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Evidence for a failure of `app`: the last log lines and the engine's
    /// view of each of its containers, berth's status and recent events.
    /// The executor redacts every text before it is written.
    pub async fn evidence(&self, app: &str) -> Vec<ArtifactOut> {
        self.refresh_secrets();
        let mut out = Vec::new();
        for m in self.members(app) {
            let name = self.container(&m.id);
            let logs = match self
                .call("logs", self.engine.logs(&name, ARTIFACT_LOG_LINES))
                .await
            {
                Ok(lines) => lines.join("\n"),
                Err(e) => format!("(no logs: {e})"),
            };
            out.push(ArtifactOut::text(
                &format!("{app}/logs-{}.txt", m.id),
                "text/plain",
                logs,
            ));
            out.push(ArtifactOut::text(
                &format!("{app}/inspect-{}.json", m.id),
                "application/json",
                self.engine_inspect(&name).await,
            ));
        }
        let status = self
            .berth(
                &["status", "--json"],
                &[],
                Duration::from_secs(READ_COMMAND_TIMEOUT_S),
            )
            .await;
        out.push(ArtifactOut::text(
            &format!("{app}/status.json"),
            "application/json",
            format!("{}{}", status.stdout, status.stderr),
        ));
        let limit = ARTIFACT_EVENTS.to_string();
        let events = self
            .berth(
                &["events", "--json", "--limit", &limit],
                &[],
                Duration::from_secs(READ_COMMAND_TIMEOUT_S),
            )
            .await;
        out.push(ArtifactOut::text(
            &format!("{app}/events.json"),
            "application/json",
            format!("{}{}", events.stdout, events.stderr),
        ));
        out
    }

    /// The engine's own view of a container (`<engine> container inspect`),
    /// else berth's observation of it.
    async fn engine_inspect(&self, name: &str) -> String {
        if let Some(cli) = crate::tool::find(&self.kind.to_string()) {
            match crate::tool::run(
                &cli,
                &["container", "inspect", name],
                Duration::from_secs(ENGINE_CALL_TIMEOUT_S),
            )
            .await
            {
                Ok(o) => return o.combined(),
                Err(e) => return format!("({e})"),
            }
        }
        match self.engine.inspect_container(name).await {
            Ok(Some(c)) => format!("{c:#?}"),
            Ok(None) => format!("{name}: no such container"),
            Err(e) => format!("({e})"),
        }
    }

    // ── the daemon ─────────────────────────────────────────────────────

    fn daemon_log(&self) -> PathBuf {
        self.params.work_dir.join("daemon.log")
    }

    /// Start the run's daemon unless it runs. Returns its pid.
    pub async fn ensure_daemon(&self) -> Result<u32, String> {
        let mut guard = self.daemon.lock().await;
        if let Some(d) = guard.as_mut()
            && d.alive()
        {
            return Ok(d.pid);
        }
        let log = self.daemon_log();
        let cmd = DaemonCommand {
            exe: &self.exe,
            global: self.global_args(),
            state_dir: &self.state_dir,
            tick_ms: self.params.daemon_tick_ms,
            log: &log,
        };
        let d = DaemonProc::start(&cmd, self.wait_timeout()).await?;
        let pid = d.pid;
        *guard = Some(d);
        Ok(pid)
    }

    /// Stop a daemon of this run that a dead verify process left behind
    /// (SIGKILLed: its children outlive it). The run's state directory is
    /// its own, so whatever answers on its socket is that daemon. Returns
    /// its pid when there was one.
    pub async fn stop_orphan_daemon(&self) -> Option<u32> {
        let socket = self.state_dir.join(super::daemon::SOCKET_FILE_NAME);
        let status = super::daemon::daemon_status(&socket).await.ok()?;
        let pid = u32::try_from(status["pid"].as_u64()?).ok()?;
        let raw = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
        if rustix::process::kill_process(raw, rustix::process::Signal::TERM).is_err() {
            return None;
        }
        let _ = self
            .wait_for(
                "the orphaned daemon to exit",
                Duration::from_secs(DAEMON_STOP_TIMEOUT_S),
                || async {
                    Ok(super::daemon::daemon_status(&socket)
                        .await
                        .is_err()
                        .then_some(()))
                },
            )
            .await;
        tracing::warn!(
            pid,
            "stopped a daemon of this run left by a dead verify process"
        );
        Some(pid)
    }

    /// Stop the run's daemon (if it runs) with `signal`; returns its exit
    /// code (`None` after SIGKILL, or when none ran).
    pub async fn stop_daemon(&self, signal: StopSignal) -> Result<Option<i32>, String> {
        let taken = self.daemon.lock().await.take();
        match taken {
            None => Ok(None),
            Some(d) => {
                d.stop(signal, Duration::from_secs(DAEMON_STOP_TIMEOUT_S))
                    .await
            }
        }
    }

    pub fn work_dir(&self) -> &Path {
        &self.params.work_dir
    }
}
