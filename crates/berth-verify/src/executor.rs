//! The pipeline executor: asks the pure state machine what to run, runs
//! that stage (bounded in time, a panic counts as a failure), writes its
//! artifacts through the redactor and persists the run after every
//! transition, so a restarted berth continues exactly where it stopped.
//!
//! One executor drives a run at a time; operator actions on a run go
//! through [`Executor::operate`] while no [`Executor::drive`] of that run is
//! in flight (the daemon serialises them, the CLI holds the state lock).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_core::pipeline::{
    self, ArtifactMeta, InvalidTransition, Measurement, OperatorAction, Run, StageResult, Step,
};
use futures_util::FutureExt;

use crate::artifacts::ArtifactSink;
use crate::clock::Clock;
use crate::store::{RunStore, RunStoreError};

/// Default bound on one attempt of a stage.
pub const STAGE_TIMEOUT_S_DEFAULT: u64 = 600;

/// An artifact a stage produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactOut {
    /// Text the executor redacts and writes under the report directory.
    Text {
        name: String,
        media_type: String,
        content: String,
    },
    /// A file the stage wrote itself (e.g. the reports), from data that
    /// already went through the redactor.
    Written(ArtifactMeta),
}

impl ArtifactOut {
    pub fn text(name: &str, media_type: &str, content: impl Into<String>) -> ArtifactOut {
        ArtifactOut::Text {
            name: name.into(),
            media_type: media_type.into(),
            content: content.into(),
        }
    }
}

/// What one attempt of a stage found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageOutcome {
    pub passed: bool,
    pub summary: String,
    pub measurements: Vec<Measurement>,
    pub artifacts: Vec<ArtifactOut>,
    /// Facts for the run's environment manifest.
    pub environment: BTreeMap<String, String>,
}

impl StageOutcome {
    pub fn pass(summary: impl Into<String>) -> StageOutcome {
        StageOutcome {
            passed: true,
            summary: summary.into(),
            ..StageOutcome::default()
        }
    }

    pub fn fail(summary: impl Into<String>) -> StageOutcome {
        StageOutcome {
            passed: false,
            summary: summary.into(),
            ..StageOutcome::default()
        }
    }
}

/// What a stage sees of its run.
pub struct StageContext<'a> {
    /// The run as persisted when this attempt started (this stage running).
    pub run: &'a Run,
    /// Index of this stage in `run.stages`.
    pub stage: usize,
    /// 1-based attempt number.
    pub attempt: u32,
    /// An earlier attempt was interrupted mid-stage (berth died).
    pub resumed: bool,
    pub artifacts: &'a ArtifactSink,
}

/// One stage of a pipeline.
#[async_trait]
pub trait Stage: Send + Sync {
    /// Unique within a pipeline; stored in the run.
    fn name(&self) -> &str;

    /// Upper bound on one attempt. When it passes the attempt's future is
    /// dropped and the attempt fails, so a stage holding outside resources
    /// bounds its own steps well inside this and cleans up itself.
    fn timeout(&self) -> Duration {
        Duration::from_secs(STAGE_TIMEOUT_S_DEFAULT)
    }

    async fn run(&self, ctx: &StageContext<'_>) -> StageOutcome;
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] RunStoreError),
    #[error("run {0} not found")]
    NoSuchRun(String),
    #[error("run {0} already exists")]
    RunExists(String),
    #[error("run {run}: stage {stage} is not one this pipeline knows")]
    UnknownStage { run: String, stage: String },
    #[error("run {run} is inconsistent: {detail}")]
    Corrupt { run: String, detail: String },
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
}

/// Called with the run after every persisted transition (progress output).
pub type Observer = Arc<dyn Fn(&Run) + Send + Sync>;

/// Runs the stages of runs through the pure state machine.
pub struct Executor<'a> {
    stages: Vec<Arc<dyn Stage>>,
    store: &'a dyn RunStore,
    clock: Arc<dyn Clock>,
    artifacts: ArtifactSink,
    observer: Option<Observer>,
}

impl<'a> Executor<'a> {
    /// # Panics
    /// When two stages share a name (a bug in the pipeline's definition).
    pub fn new(
        stages: Vec<Arc<dyn Stage>>,
        store: &'a dyn RunStore,
        clock: Arc<dyn Clock>,
        artifacts: ArtifactSink,
    ) -> Executor<'a> {
        for (i, s) in stages.iter().enumerate() {
            assert!(
                !stages[..i].iter().any(|o| o.name() == s.name()),
                "pipeline stage {:?} is listed twice",
                s.name()
            );
        }
        Executor {
            stages,
            store,
            clock,
            artifacts,
            observer: None,
        }
    }

    pub fn with_observer(mut self, observer: Observer) -> Executor<'a> {
        self.observer = Some(observer);
        self
    }

    pub fn stage_names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    pub fn artifacts(&self) -> &ArtifactSink {
        &self.artifacts
    }

    /// Create and persist a pending run of this pipeline's stages.
    pub fn create_run(
        &self,
        id: &str,
        kind: &str,
        continue_on_error: bool,
        environment: BTreeMap<String, String>,
    ) -> Result<Run, ExecError> {
        if self.store.load_run(id)?.is_some() {
            return Err(ExecError::RunExists(id.to_string()));
        }
        let mut run = Run::new(
            id,
            kind,
            &self.stage_names(),
            continue_on_error,
            self.clock.now_ms(),
        );
        run.add_environment(&environment);
        self.save(&run)?;
        Ok(run)
    }

    /// Load a run and check it belongs to this pipeline.
    pub fn load(&self, id: &str) -> Result<Run, ExecError> {
        let run = self
            .store
            .load_run(id)?
            .ok_or_else(|| ExecError::NoSuchRun(id.to_string()))?;
        run.check().map_err(|detail| ExecError::Corrupt {
            run: id.to_string(),
            detail,
        })?;
        if let Some(unknown) = run
            .stages
            .iter()
            .find(|s| !self.stages.iter().any(|imp| imp.name() == s.name))
        {
            return Err(ExecError::UnknownStage {
                run: id.to_string(),
                stage: unknown.name.clone(),
            });
        }
        Ok(run)
    }

    /// Run stages until the run completes, holds on a failed stage, or is
    /// over. Returns the run as persisted last.
    pub async fn drive(&self, id: &str) -> Result<Run, ExecError> {
        let mut run = self.load(id)?;
        loop {
            let step = pipeline::next(&mut run, self.clock.now_ms());
            self.save(&run)?;
            let Step::Run {
                stage,
                attempt,
                resumed,
            } = step
            else {
                return Ok(run);
            };
            let name = run.stages[stage].name.clone();
            let imp = self
                .stages
                .iter()
                .find(|s| s.name() == name)
                .expect("load() checked every stage has an implementation")
                .clone();
            if resumed {
                tracing::warn!(run = %run.id, stage = %name, attempt, "re-running a stage interrupted by a restart");
            }
            tracing::info!(run = %run.id, stage = %name, attempt, "stage started");
            let outcome = {
                let ctx = StageContext {
                    run: &run,
                    stage,
                    attempt,
                    resumed,
                    artifacts: &self.artifacts,
                };
                guarded(imp.as_ref(), &ctx).await
            };
            let result = self.finish_outcome(&name, attempt, outcome);
            tracing::info!(run = %run.id, stage = %name, passed = result.passed, summary = %result.summary, "stage finished");
            pipeline::record_result(&mut run, stage, result, self.clock.now_ms())?;
            self.save(&run)?;
        }
    }

    /// Apply an operator action to a stored run and persist it. The caller
    /// then drives the run again (after override or retry).
    pub fn operate(&self, id: &str, action: OperatorAction) -> Result<Run, ExecError> {
        let mut run = self.load(id)?;
        pipeline::operator(&mut run, action, self.clock.now_ms())?;
        self.save(&run)?;
        Ok(run)
    }

    fn save(&self, run: &Run) -> Result<(), ExecError> {
        self.store.save_run(run)?;
        if let Some(observer) = &self.observer {
            observer(run);
        }
        Ok(())
    }

    /// Redact the summary and write the artifacts. An artifact that cannot
    /// be written fails the attempt: its evidence would be lost.
    fn finish_outcome(&self, stage: &str, attempt: u32, outcome: StageOutcome) -> StageResult {
        let StageOutcome {
            mut passed,
            summary,
            measurements,
            artifacts,
            environment,
        } = outcome;
        let mut summary = self.artifacts.redact(&summary);
        let mut metas = Vec::with_capacity(artifacts.len());
        for artifact in artifacts {
            match artifact {
                ArtifactOut::Written(meta) => metas.push(meta),
                ArtifactOut::Text {
                    name,
                    media_type,
                    content,
                } => match self
                    .artifacts
                    .write_text(stage, attempt, &name, &media_type, &content)
                {
                    Ok(meta) => metas.push(meta),
                    Err(e) => {
                        passed = false;
                        summary.push_str(&format!("; artifact {name} could not be written: {e}"));
                    }
                },
            }
        }
        StageResult {
            passed,
            summary,
            measurements,
            artifacts: metas,
            environment,
        }
    }
}

/// Run one attempt bounded by the stage's timeout; a panic is a failed
/// attempt with the panic message, not a dead executor.
async fn guarded(stage: &dyn Stage, ctx: &StageContext<'_>) -> StageOutcome {
    let limit = stage.timeout();
    let attempt = AssertUnwindSafe(stage.run(ctx)).catch_unwind();
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            StageOutcome::fail(format!("stage {} panicked: {message}", stage.name()))
        }
        Err(_) => StageOutcome::fail(format!(
            "stage {} did not finish within {}",
            stage.name(),
            berth_core::duration::format_duration(limit)
        )),
    }
}

#[cfg(test)]
mod tests;
