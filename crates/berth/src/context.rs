//! Shared plumbing of the commands: loading stacks, opening the state
//! directory, connecting to the engine, and mapping errors to exit codes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use berth_core::model::Stack;
use berth_daemon::Client;
use berth_daemon::rpc;
use berth_engine::{Engine, EngineError};
use berth_ops::{Ctx, OpsError};
use berth_store::{StateDir, StateLock, StoreError};
use serde_json::Value;

use crate::cli::{EngineArg, Global};
use crate::output::TermReporter;

/// How long a mutating command waits for another berth process to finish.
pub const STATE_LOCK_WAIT_S: u64 = 30;

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_ENGINE: u8 = 3;
pub const EXIT_LOCKED: u8 = 4;

/// An error together with the exit code it maps to.
pub struct Failure {
    pub error: anyhow::Error,
    pub code: u8,
}

impl Failure {
    pub fn usage(error: anyhow::Error) -> Failure {
        Failure {
            error,
            code: EXIT_USAGE,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        let code = classify(&error);
        Failure { error, code }
    }
}

impl From<OpsError> for Failure {
    fn from(e: OpsError) -> Failure {
        anyhow::Error::new(e).into()
    }
}

fn classify(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<EngineError>()
            && matches!(e, EngineError::Unavailable { .. })
        {
            return EXIT_ENGINE;
        }
        if let Some(e) = cause.downcast_ref::<OpsError>() {
            if e.is_engine_unavailable() {
                return EXIT_ENGINE;
            }
            if matches!(e, OpsError::UnknownApp { .. }) {
                return EXIT_USAGE;
            }
        }
        if let Some(StoreError::Locked { .. }) = cause.downcast_ref::<StoreError>() {
            return EXIT_LOCKED;
        }
        if cause
            .downcast_ref::<berth_core::manifest::Diagnostics>()
            .is_some()
        {
            return EXIT_USAGE;
        }
    }
    EXIT_FAILED
}

pub type CmdResult<T = u8> = Result<T, Failure>;

/// Load a stack file (or a single app manifest) and validate it.
pub fn load_stack(path: &Path) -> CmdResult<Stack> {
    berth_ops::load_stack_file(path).map_err(|e| match e {
        // The read error names the path itself (control characters escaped).
        berth_ops::StackFileError::Read { error, .. } => Failure::usage(anyhow::Error::new(error)),
        berth_ops::StackFileError::Invalid {
            display,
            diagnostics,
        } => Failure::usage(
            anyhow::Error::new(diagnostics).context(format!("{display} is not valid")),
        ),
    })
}

/// Resolve the APP arguments: ids of the stack file, or manifest paths.
/// Returns the stack they belong to (with its file) and the ids.
pub fn resolve_apps(
    global: &Global,
    apps: &[String],
) -> CmdResult<(Stack, Option<PathBuf>, BTreeSet<String>)> {
    let paths: Vec<&String> = apps
        .iter()
        .filter(|a| a.ends_with(".toml") || a.contains('/'))
        .collect();
    if !paths.is_empty() {
        if paths.len() != apps.len() || paths.len() > 1 {
            return Err(Failure::usage(anyhow!(
                "give either one manifest path or app ids of the stack file, not both"
            )));
        }
        let path = PathBuf::from(paths[0]);
        let stack = load_stack(&path)?;
        let ids = stack
            .apps
            .values()
            .filter(|a| a.companion_of.is_none())
            .map(|a| a.id.clone())
            .collect();
        return Ok((stack, Some(path), ids));
    }
    let stack = load_stack(&global.stack)?;
    let ids: BTreeSet<String> = apps.iter().cloned().collect();
    for id in &ids {
        if !stack.apps.contains_key(id) {
            return Err(Failure::usage(anyhow!(
                "unknown app {id:?}: {} has {}",
                global.stack.display(),
                stack.apps.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok((stack, Some(global.stack.clone()), ids))
}

pub fn open_state(global: &Global) -> CmdResult<StateDir> {
    StateDir::open(&global.state_dir)
        .with_context(|| format!("cannot open state directory {}", global.state_dir.display()))
        .map_err(Failure::from)
}

static ENGINE_CALLS: std::sync::OnceLock<Arc<dyn Engine>> = std::sync::OnceLock::new();

/// Engine API calls this process made (for `BERTH_REPORT_CALLS`).
pub fn engine_calls() -> u64 {
    ENGINE_CALLS.get().map(|e| e.call_count()).unwrap_or(0)
}

pub async fn connect_engine(global: &Global) -> CmdResult<Arc<dyn Engine>> {
    let choice = match global.engine {
        EngineArg::Podman => berth_engine::podman_service::EngineChoice::Podman,
        EngineArg::Docker => berth_engine::podman_service::EngineChoice::Docker,
        EngineArg::Auto => berth_engine::podman_service::EngineChoice::Auto,
    };
    let opts = berth_engine::podman_service::ConnectOptions {
        podman_socket: global.podman_socket.clone(),
        docker_socket: global.docker_socket.clone(),
    };
    let engine = berth_engine::podman_service::connect(choice, &opts)
        .await
        .map_err(anyhow::Error::new)?;
    let engine: Arc<dyn Engine> = Arc::from(engine);
    let _ = ENGINE_CALLS.set(engine.clone());
    Ok(engine)
}

/// A context for a mutating command: state lock held, interrupted
/// operations recovered first.
pub struct Mutating {
    pub ctx: Arc<Ctx>,
    _lock: StateLock,
}

/// Where a mutating command runs: in the daemon (it holds the state lock
/// and is the one writer), or here under the lock when no daemon runs.
pub enum Route {
    Daemon(Client),
    Direct(Mutating),
}

/// How often a command waiting for the state lock looks again (for the
/// lock, and for a daemon that took it and now answers on its socket).
const LOCK_POLL_MS: u64 = 100;

/// The daemon answering on `<state-dir>/berth.sock`, if one does.
pub async fn daemon(global: &Global) -> Option<Client> {
    Client::connect(&berth_daemon::socket_path(&global.state_dir)).await
}

pub async fn route(global: &Global) -> CmdResult<Route> {
    if let Some(client) = daemon(global).await {
        return Ok(Route::Daemon(client));
    }
    let state = open_state(global)?;
    let lock = match state.lock() {
        Ok(l) => l,
        Err(StoreError::Locked { .. }) => {
            eprintln!(
                "berth: waiting for another berth process to finish (up to {STATE_LOCK_WAIT_S} s)…"
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(STATE_LOCK_WAIT_S);
            loop {
                // A daemon starting up holds the lock before its socket
                // answers; once it answers, the command goes to it.
                if let Some(client) = daemon(global).await {
                    return Ok(Route::Daemon(client));
                }
                match state.lock() {
                    Ok(l) => break l,
                    Err(e @ StoreError::Locked { .. }) => {
                        if std::time::Instant::now() >= deadline {
                            return Err(anyhow::Error::new(e).into());
                        }
                    }
                    Err(e) => return Err(anyhow::Error::new(e).into()),
                }
                tokio::time::sleep(Duration::from_millis(LOCK_POLL_MS)).await;
            }
        }
        Err(e) => return Err(anyhow::Error::new(e).into()),
    };
    Ok(Route::Direct(direct(global, state, lock).await?))
}

async fn direct(global: &Global, state: StateDir, lock: StateLock) -> CmdResult<Mutating> {
    let engine = connect_engine(global).await?;
    let policy = berth_ops::PullPolicy {
        attempts: berth_ops::PULL_ATTEMPTS_DEFAULT,
        backoff: global.pull_backoff.0.clone(),
    };
    let ctx = Ctx::with_pull_policy(engine, state, Arc::new(TermReporter::new()), policy)
        .map_err(anyhow::Error::new)?;
    berth_ops::recover(&ctx).await.map_err(anyhow::Error::new)?;
    Ok(Mutating { ctx, _lock: lock })
}

/// Time the CLI gives the daemon to answer a mutating request: the
/// daemon's own operation timeout answers first.
pub const RPC_MUTATION_TIMEOUT_S: u64 = 3_600;
/// Time the CLI gives the daemon to answer a read.
pub const RPC_READ_TIMEOUT_S: u64 = 120;

/// Call the daemon. A JSON-RPC error becomes a `Failure` with the exit
/// code direct mode would give; progress lines it carries are shown first.
pub async fn rpc_call(client: &Client, method: &str, params: Value) -> CmdResult<Value> {
    let timeout = if matches!(
        method,
        "container.list"
            | "container.health"
            | "container.logs"
            | "events.list"
            | "daemon.status"
            | "gate.status"
    ) {
        RPC_READ_TIMEOUT_S
    } else {
        RPC_MUTATION_TIMEOUT_S
    };
    match client
        .call(method, params, Duration::from_secs(timeout))
        .await
    {
        Ok(v) => Ok(v),
        Err(berth_daemon::ClientError::Rpc(e)) => {
            if let Some(progress) = e.data.as_ref().and_then(|d| d.get("progress")) {
                replay(progress);
            }
            let code = match e.code {
                rpc::UNKNOWN_APP | rpc::INVALID_PARAMS | rpc::INVALID_MANIFEST => EXIT_USAGE,
                rpc::ENGINE_UNAVAILABLE => EXIT_ENGINE,
                rpc::OPERATION_IN_PROGRESS => EXIT_LOCKED,
                _ => EXIT_FAILED,
            };
            Err(Failure {
                error: anyhow!(e.message),
                code,
            })
        }
        Err(e) => Err(anyhow::Error::new(e).into()),
    }
}

/// Show the progress lines a daemon operation returned, as direct mode
/// would have shown them while it ran.
pub fn replay(progress: &Value) {
    use berth_ops::{Progress, Reporter};
    let Ok(lines) = serde_json::from_value::<Vec<rpc::ProgressLine>>(progress.clone()) else {
        return;
    };
    let reporter = TermReporter::new();
    for l in lines {
        let app = l.app.unwrap_or_default();
        reporter.report(match l.kind.as_str() {
            "done" => Progress::Done {
                app,
                message: l.message,
            },
            "failed" => Progress::Failed {
                app,
                message: l.message,
            },
            _ => Progress::Note { message: l.message },
        });
    }
}

/// A context for a read command: no lock.
pub async fn reading(global: &Global) -> CmdResult<Arc<Ctx>> {
    let state = open_state(global)?;
    let engine = connect_engine(global).await?;
    Ok(Ctx::new(engine, state, Arc::new(berth_ops::Quiet)).map_err(anyhow::Error::new)?)
}

/// The status of every installed app: from the daemon when one runs (with
/// its continuous health verdicts), else observed here.
pub async fn status_report(global: &Global) -> CmdResult<berth_ops::StatusReport> {
    if let Some(client) = daemon(global).await {
        let v = rpc_call(&client, "container.list", serde_json::json!({})).await?;
        return Ok(serde_json::from_value(v).context("the daemon's status answer")?);
    }
    let ctx = reading(global).await?;
    Ok(berth_ops::status(&ctx).await?)
}
