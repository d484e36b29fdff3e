//! Runs in a state directory, for any process that drives them: the CLI
//! (`berth vet`, `berth verify`, `berth run …`) and the daemon (the same
//! actions over JSON-RPC). Every run lives in the state directory's
//! database (`berth_store::Store` is the [`RunStore`]) with its parameters,
//! and has a lock (`<state>/runs/<id>/.lock`): the process holding it is
//! the only one driving the run, so an operator action never races a
//! running stage.

use std::path::PathBuf;

use berth_core::pipeline::{OperatorAction, Run, RunState};
use berth_store::{RunListing, StateDir, StoreError};
use serde::{Deserialize, Serialize};

use crate::executor::{ExecError, Observer};
use crate::report::matrix::Matrix;
use crate::store::RunStore;
use crate::verify::{self, VERIFY_KIND, VerifyError, VerifyOptions};
use crate::vet::{self, RunSummary, VET_KIND, VetError, VetOptions, VetParams};

/// What driving runs needs from the process.
#[derive(Clone)]
pub struct Driver {
    pub state: StateDir,
    /// The berth binary a verify run drives (the caller's own).
    pub berth_exe: PathBuf,
    /// Called after every persisted transition (progress output).
    pub observer: Option<Observer>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    /// The database, or the run's lock (`StoreError::RunBusy`).
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("run {0} not found (see `berth run list`)")]
    NoSuchRun(String),
    #[error("run {id} is a {kind:?} run, which this berth cannot resume")]
    UnknownKind { id: String, kind: String },
    #[error("run {id}: stored parameters are unusable: {detail}")]
    Params { id: String, detail: String },
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Vet(#[from] VetError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

impl RunsError {
    /// An operator action the run's state does not allow, an unknown run or
    /// an option problem: the caller's mistake, not a failure.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RunsError::NoSuchRun(_)
                | RunsError::Exec(ExecError::Transition(_))
                | RunsError::Vet(VetError::Exec(ExecError::Transition(_)))
                | RunsError::Verify(VerifyError::Exec(ExecError::Transition(_)))
                | RunsError::Vet(VetError::Option { .. } | VetError::Spec { .. })
                | RunsError::Verify(VerifyError::Option { .. } | VerifyError::Stack(_))
                | RunsError::Store(StoreError::InvalidName { .. })
        )
    }

    /// Another process drives the run.
    pub fn is_busy(&self) -> bool {
        matches!(self, RunsError::Store(StoreError::RunBusy { .. }))
    }

    /// The engine cannot be reached.
    pub fn is_engine(&self) -> bool {
        matches!(self, RunsError::Verify(VerifyError::Engine(_)))
    }
}

/// A new run id: `<kind>-<UTC time to the millisecond>`.
pub fn new_run_id(kind: &str, now_ms: u64) -> String {
    format!("{kind}-{}", crate::report::compact_time(now_ms))
}

/// The newest runs (at most `limit`).
pub fn list(state: &StateDir, limit: usize) -> Result<Vec<RunListing>, RunsError> {
    Ok(state.store()?.list_runs(limit)?)
}

/// One run with where its reports are and, for a verify run, its scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub run: Run,
    pub report_dir: Option<PathBuf>,
    pub report_html: Option<PathBuf>,
    pub report_json: Option<PathBuf>,
    pub matrix: Option<Matrix>,
}

pub fn show(state: &StateDir, id: &str) -> Result<RunDetail, RunsError> {
    let store = state.store()?;
    let run = store
        .load_run(id)?
        .ok_or_else(|| RunsError::NoSuchRun(id.to_string()))?;
    let (report_dir, matrix) = match run.kind.as_str() {
        VET_KIND => (vet_params(&store, id).ok().map(|p| p.report_dir), None),
        VERIFY_KIND => match verify::load_params(&store, id) {
            Ok(p) => (
                Some(p.report_dir.clone()),
                Some(verify::matrix_of(&run, &p.apps, p.destructive)),
            ),
            Err(_) => (None, None),
        },
        _ => (None, None),
    };
    let file = |name: &str| {
        report_dir
            .as_ref()
            .map(|d| d.join(name))
            .filter(|p| p.is_file())
    };
    Ok(RunDetail {
        report_html: file(crate::report::REPORT_HTML),
        report_json: file(crate::report::REPORT_JSON),
        run,
        report_dir,
        matrix,
    })
}

fn vet_params(store: &dyn RunStore, id: &str) -> Result<VetParams, RunsError> {
    let text = store
        .load_params(id)
        .map_err(ExecError::from)?
        .ok_or_else(|| RunsError::Params {
            id: id.into(),
            detail: "none recorded".into(),
        })?;
    serde_json::from_str(&text).map_err(|e| RunsError::Params {
        id: id.into(),
        detail: e.to_string(),
    })
}

/// Start a vet run (`opts.run_id`, else a new id) under its lock.
pub async fn start_vet(driver: &Driver, mut opts: VetOptions) -> Result<RunSummary, RunsError> {
    let id = opts
        .run_id
        .clone()
        .unwrap_or_else(|| new_run_id(VET_KIND, now_ms()));
    opts.run_id = Some(id.clone());
    let _lock = driver.state.lock_run(&id)?;
    if opts.observer.is_none() {
        opts.observer = driver.observer.clone();
    }
    let store = driver.state.store()?;
    let engine = connect_vet_engine(&mut opts).await;
    Ok(vet::vet(engine, opts, &store).await?)
}

/// Start a verify run under its lock.
pub async fn start_verify(
    driver: &Driver,
    mut opts: VerifyOptions,
) -> Result<RunSummary, RunsError> {
    let _lock = driver.state.lock_run(&opts.run_id)?;
    if opts.observer.is_none() {
        opts.observer = driver.observer.clone();
    }
    let store = driver.state.store()?;
    Ok(verify::verify(opts, &store).await?)
}

/// Apply an operator action to a stored run and drive it until it
/// completes or holds again (`None`: drive on a run a crash interrupted).
/// A retry of a run interrupted mid-stage (state running, nobody holding
/// its lock) drives it on: the interrupted stage runs again.
pub async fn resume(
    driver: &Driver,
    id: &str,
    action: Option<OperatorAction>,
) -> Result<RunSummary, RunsError> {
    berth_store::check_run_id(id)?;
    let store = driver.state.store()?;
    // Never create the lock (and the run directory) of a run that does not
    // exist.
    if store.load_run(id)?.is_none() {
        return Err(RunsError::NoSuchRun(id.to_string()));
    }
    let _lock = driver.state.lock_run(id)?;
    // Read again under the lock: the previous driver may just have moved it.
    let run = store
        .load_run(id)?
        .ok_or_else(|| RunsError::NoSuchRun(id.to_string()))?;
    let action = match action {
        Some(OperatorAction::Retry)
            if matches!(run.state, RunState::Running | RunState::Pending) =>
        {
            None
        }
        a => a,
    };
    match run.kind.as_str() {
        VET_KIND => {
            let mut opts = VetOptions::from_params(vet_params(&store, id)?);
            opts.observer = driver.observer.clone();
            let engine = connect_vet_engine(&mut opts).await;
            Ok(vet::resume_vet(engine, opts, &store, id, action).await?)
        }
        VERIFY_KIND => Ok(verify::resume_verify(
            &store,
            id,
            action,
            driver.berth_exe.clone(),
            driver.observer.clone(),
        )
        .await?),
        other => Err(RunsError::UnknownKind {
            id: id.to_string(),
            kind: other.to_string(),
        }),
    }
}

/// Connect the engine a vet records; a failure is kept in the options so
/// the Engine stage reports it.
async fn connect_vet_engine(
    opts: &mut VetOptions,
) -> Option<std::sync::Arc<dyn berth_engine::Engine>> {
    let engine_ref = opts.engine.clone()?;
    match engine_ref.connect().await {
        Ok(e) => Some(e),
        Err(e) => {
            opts.engine_error = Some(e);
            None
        }
    }
}

fn now_ms() -> u64 {
    use crate::clock::Clock;
    crate::clock::SystemClock.now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver(dir: &std::path::Path) -> Driver {
        Driver {
            state: StateDir::open(dir).unwrap(),
            berth_exe: PathBuf::from("/nonexistent/berth"),
            observer: None,
        }
    }

    fn small_vet(state: &StateDir, id: &str, min_cpus: u32) -> VetOptions {
        let run_dir = state.run_dir(id).unwrap();
        let data = run_dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let spec = run_dir.join("spec.toml");
        std::fs::write(&spec, format!("min_cpus = {min_cpus}\n")).unwrap();
        let mut opts = VetOptions::new(run_dir.clone());
        opts.run_id = Some(id.into());
        opts.data_paths = vec![data];
        opts.expected_spec = Some(spec);
        opts.disk_test_mib = 4;
        opts.memory_test_mib = 16;
        opts.floors.disk_write_mb_s_min = 0.0;
        opts.floors.disk_read_mb_s_min = 0.0;
        opts.floors.disk_fsync_p99_ms_max = f64::MAX;
        opts
    }

    /// A vet held in the SQLite store is listed, shown, overridden by a
    /// second driver (another process would do the same) and completes.
    #[tokio::test]
    async fn a_held_vet_in_the_state_directory_is_resolved_by_another_driver() {
        let tmp = tempfile::tempdir().unwrap();
        let d = driver(tmp.path());
        let opts = small_vet(&d.state, "vet-held", 100_000);
        let held = start_vet(&d, opts).await.unwrap();
        assert_eq!(held.state, RunState::FailedHolding);
        let listed = list(&d.state, 10).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].failed_stage.as_deref(), Some("SpecValidate"));
        let shown = show(&d.state, "vet-held").unwrap();
        assert_eq!(shown.run.state, RunState::FailedHolding);
        assert!(shown.report_html.is_some(), "a held run has its report");

        // While someone drives it, nobody else may.
        let lock = d.state.lock_run("vet-held").unwrap();
        let err = resume(
            &driver(tmp.path()),
            "vet-held",
            Some(OperatorAction::Override),
        )
        .await
        .unwrap_err();
        assert!(err.is_busy(), "{err}");
        drop(lock);

        let done = resume(
            &driver(tmp.path()),
            "vet-held",
            Some(OperatorAction::Override),
        )
        .await
        .unwrap();
        assert_eq!(
            done.verdict,
            Some(berth_core::pipeline::Verdict::PassedWithOverrides)
        );
        // Finished runs refuse further actions, as a usage error.
        let err = resume(&d, "vet-held", Some(OperatorAction::Retry))
            .await
            .unwrap_err();
        assert!(err.is_usage(), "{err}");
        let err = resume(&d, "nope", Some(OperatorAction::Retry))
            .await
            .unwrap_err();
        assert!(matches!(err, RunsError::NoSuchRun(_)), "{err}");
        assert!(!d.state.runs_dir().join("nope").exists());
    }

    /// A run whose driver died mid-stage is driven on by `retry`.
    #[tokio::test]
    async fn retry_drives_on_a_run_interrupted_mid_stage() {
        let tmp = tempfile::tempdir().unwrap();
        let d = driver(tmp.path());
        let held = start_vet(&d, small_vet(&d.state, "vet-int", 100_000))
            .await
            .unwrap();
        assert_eq!(held.state, RunState::FailedHolding);
        let store = d.state.store().unwrap();
        let mut run = store.load_run("vet-int").unwrap().unwrap();
        berth_core::pipeline::operator(&mut run, OperatorAction::Override, 1).unwrap();
        berth_core::pipeline::next(&mut run, 2);
        store.save_run(&run).unwrap();
        let done = resume(&d, "vet-int", Some(OperatorAction::Retry))
            .await
            .unwrap();
        assert!(done.state.is_terminal(), "{:?}", done.state);
        let disk = done.stages.iter().find(|s| s.name == "Disk").unwrap();
        assert_eq!(disk.attempts, 2);
    }
}
