//! The imperative shell: carries out what berth-core decides against an
//! engine, journaling every step in the store first so an interrupted
//! operation can be resumed or rolled back.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_engine::{Engine, EngineError, PullProgress};
use berth_store::{NewEvent, StateDir, Store, StoreError};

pub mod gates;
pub mod install;
pub mod lifecycle;
pub mod recover;
pub mod stackdb;
pub mod stackfile;
pub mod status;
pub mod uninstall;

pub use install::{bring_up_app, install, install_apps};
pub use lifecycle::{down, reinstall, restart, start, stop, up};
pub use recover::recover;
pub use stackfile::{StackFileError, load_stack_file};
pub use status::{AppStatus, StatusReport, status, status_with_health};
pub use uninstall::{UninstallOptions, uninstall};

/// Attempts of an image pull before giving up.
pub const PULL_ATTEMPTS_DEFAULT: u32 = 3;
/// Images pulled at once.
pub const PULLS_PARALLEL_MAX: usize = 2;
/// Lines of a container's log quoted in an install error.
pub const ERROR_LOG_LINES: usize = 20;
/// Health probes run at once by `status`.
pub const STATUS_PROBES_PARALLEL_MAX: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown app {id:?}{hint}")]
    UnknownApp { id: String, hint: String },
    #[error("{}", install_message(.app, .reason, *.exit_code, .logs))]
    Install {
        app: String,
        reason: String,
        exit_code: Option<i64>,
        logs: Vec<String>,
    },
    #[error("cannot uninstall {app}: installed apps depend on it: {} (use --cascade to uninstall them too)", .dependents.join(", "))]
    HasDependents {
        app: String,
        dependents: Vec<String>,
    },
    #[error("uninstall of {app} left resources behind: {} (run uninstall again to finish)", .remains.join(", "))]
    Incomplete { app: String, remains: Vec<String> },
    #[error("{app}: {message}")]
    App { app: String, message: String },
    #[error("{count} of {total} apps failed:\n{}", .errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Many {
        count: usize,
        total: usize,
        errors: Vec<OpsError>,
    },
}

fn install_message(app: &str, reason: &str, exit_code: Option<i64>, logs: &[String]) -> String {
    let mut m = format!("install of {app} failed: {reason}");
    if let Some(code) = exit_code {
        m.push_str(&format!(" (exit code {code})"));
    }
    if logs.is_empty() {
        m.push_str("; the container printed nothing");
    } else {
        m.push_str(&format!("; last {} log lines:", logs.len()));
        for l in logs {
            m.push_str("\n    | ");
            m.push_str(l);
        }
    }
    m.push_str("\n  everything this install created was rolled back");
    m
}

impl OpsError {
    /// Collapse a list of per-app errors into one.
    pub fn many(mut errors: Vec<OpsError>, total: usize) -> Option<OpsError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            count => Some(OpsError::Many {
                count,
                total,
                errors,
            }),
        }
    }

    pub fn is_engine_unavailable(&self) -> bool {
        matches!(self, OpsError::Engine(EngineError::Unavailable { .. }))
    }
}

pub type Result<T, E = OpsError> = std::result::Result<T, E>;

/// What the user sees while an operation runs. The CLI renders it with
/// progress bars; tests and `--json` collect or ignore it.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A step of an app's operation started.
    Step { app: String, step: String },
    /// Image pull progress.
    Pull { app: String, progress: PullProgress },
    /// An app finished its part.
    Done { app: String, message: String },
    /// An app failed.
    Failed { app: String, message: String },
    /// A note that concerns no single step.
    Note { message: String },
}

pub trait Reporter: Send + Sync {
    fn report(&self, p: Progress);
}

/// Discards progress.
pub struct Quiet;
impl Reporter for Quiet {
    fn report(&self, _: Progress) {}
}

/// Retry policy for pulls: `attempts` in all, sleeping `backoff[i]` after
/// failed attempt i (the last value repeats).
#[derive(Debug, Clone)]
pub struct PullPolicy {
    pub attempts: u32,
    pub backoff: Vec<Duration>,
}

impl Default for PullPolicy {
    fn default() -> Self {
        PullPolicy {
            attempts: PULL_ATTEMPTS_DEFAULT,
            backoff: vec![Duration::from_secs(5), Duration::from_secs(15)],
        }
    }
}

/// Everything an operation needs. Cheap to share behind an `Arc`.
pub struct Ctx {
    pub engine: Arc<dyn Engine>,
    pub state: StateDir,
    store: Arc<Mutex<Store>>,
    pub reporter: Arc<dyn Reporter>,
    pub pull_policy: PullPolicy,
    pulls: Arc<tokio::sync::Semaphore>,
}

impl Ctx {
    pub fn new(
        engine: Arc<dyn Engine>,
        state: StateDir,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Arc<Ctx>> {
        Self::with_pull_policy(engine, state, reporter, PullPolicy::default())
    }

    pub fn with_pull_policy(
        engine: Arc<dyn Engine>,
        state: StateDir,
        reporter: Arc<dyn Reporter>,
        policy: PullPolicy,
    ) -> Result<Arc<Ctx>> {
        let store = state.store()?;
        Ok(Arc::new(Ctx {
            engine,
            state,
            store: Arc::new(Mutex::new(store)),
            reporter,
            pull_policy: policy,
            pulls: Arc::new(tokio::sync::Semaphore::new(PULLS_PARALLEL_MAX)),
        }))
    }

    /// The same context (engine, store, pull limit) reporting to
    /// `reporter`: the daemon gives each request its own reporter so a
    /// caller sees the progress of its own operation only.
    pub fn with_reporter(&self, reporter: Arc<dyn Reporter>) -> Arc<Ctx> {
        Arc::new(Ctx {
            engine: self.engine.clone(),
            state: self.state.clone(),
            store: self.store.clone(),
            reporter,
            pull_policy: self.pull_policy.clone(),
            pulls: self.pulls.clone(),
        })
    }

    /// The user acted on these apps (install, start, reinstall, up): their
    /// restart history and any crash-loop quarantine are forgotten, so
    /// supervision starts afresh.
    pub fn user_acted(&self, ids: &std::collections::BTreeSet<String>) -> Result<()> {
        for id in ids {
            if self.store().reset_supervision(id)? {
                self.event(
                    Some(id),
                    "supervision-reset",
                    format!("restart history of {id} cleared (the user acted)"),
                );
            }
        }
        Ok(())
    }

    /// The store. Held only for the duration of one statement's worth of
    /// work, never across an await.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        // A poisoned lock means a panic while holding it: a bug. Fail loudly.
        self.store.lock().expect("store mutex poisoned")
    }

    pub fn event(&self, app: Option<&str>, kind: &str, message: String) {
        let e = NewEvent {
            at_ms: berth_store::now_ms(),
            app: app.map(str::to_string),
            kind: kind.to_string(),
            message,
        };
        if let Err(err) = self.store().add_event(&e) {
            tracing::warn!(error = %err, "could not record event");
        }
        tracing::info!(app = app.unwrap_or("-"), kind, "{}", e.message);
    }

    pub fn step(&self, app: &str, step: &str) {
        self.reporter.report(Progress::Step {
            app: app.into(),
            step: step.into(),
        });
    }

    pub(crate) fn pull_permit(&self) -> &tokio::sync::Semaphore {
        &self.pulls
    }
}

/// Test hook: `BERTH_CRASH_AFTER_STEP=<kind>` aborts the process right
/// after a journal step of that kind is recorded (`<kind>:done` after it
/// completes), so tests can prove recovery from a crash at every step.
pub(crate) fn crash_point(kind: &str, phase: &str) {
    if let Ok(want) = std::env::var("BERTH_CRASH_AFTER_STEP") {
        let here_intent = kind;
        let here_done = format!("{kind}:done");
        let hit = match phase {
            "intent" => want == here_intent,
            _ => want == here_done,
        };
        if hit {
            eprintln!("berth: crash injected after journal step {want}");
            std::process::abort();
        }
    }
}
