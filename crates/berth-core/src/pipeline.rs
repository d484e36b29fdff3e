//! The staged pipeline of a verification or vetting run, as a pure state
//! machine shared by `berth verify` and `berth vet`.
//!
//! A run is an ordered list of stages. The executor (in `berth-verify`)
//! asks [`next`] what to do, runs that stage, and hands its result to
//! [`record_result`]; an operator resolves a held run with [`operator`].
//! Nothing here does IO or reads the clock: `now_ms` (milliseconds since the
//! Unix epoch) is always a parameter, and the whole [`Run`] is plain serde
//! data, so persisting it after every transition and reloading it after a
//! daemon restart is all that resuming takes.
//!
//! ```text
//!  Pending ──next──▶ Running(stage k) ──passed──▶ Running(stage k+1) … ──▶ Completed
//!                          │
//!                          ├─failed, continue_on_error─▶ (recorded) Running(stage k+1)
//!                          └─failed──▶ FailedHolding(k)
//!                                        ├─override─▶ released: stage k Overridden, go on
//!                                        ├─retry────▶ released: stage k Pending again
//!                                        └─abandon──▶ Abandoned
//! ```
//!
//! "Released" is the moment an operator action lifts the hold; it is
//! recorded in [`Run::operator_log`] and the run continues (`Running`) or
//! ends (`Abandoned`).
//!
//! A stage found `Running` by [`next`] was interrupted (the process that
//! ran it died): it is started again as a new attempt, and the interrupted
//! attempt stays visible in the stage's history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Finished attempts kept per stage (the oldest are dropped first).
pub const ATTEMPT_HISTORY_MAX: usize = 16;
/// Operator actions kept per run (the oldest are dropped first).
pub const OPERATOR_LOG_MAX: usize = 64;
/// Longest stage summary kept, in bytes (longer ones are cut at a char
/// boundary and marked with `…`).
pub const SUMMARY_BYTES_MAX: usize = 4096;
/// Measurements kept per stage attempt.
pub const MEASUREMENTS_PER_STAGE_MAX: usize = 256;
/// Artifacts kept per stage attempt.
pub const ARTIFACTS_PER_STAGE_MAX: usize = 64;
/// Environment facts kept per run.
pub const ENVIRONMENT_ENTRIES_MAX: usize = 128;

/// One numeric result of a stage (`write_mb_s /data = 412.3 MB/s`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

impl Measurement {
    pub fn new(name: impl Into<String>, value: f64, unit: impl Into<String>) -> Measurement {
        Measurement {
            name: name.into(),
            value,
            unit: unit.into(),
        }
    }
}

/// Where a stage's artifact (a log, raw tool output, a report) was written.
/// The content lives in a file; the run only records its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactMeta {
    pub name: String,
    /// Path relative to the run's report directory.
    pub path: String,
    pub bytes: u64,
    pub media_type: String,
}

/// The state of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    Pending,
    Running,
    Passed,
    /// Failed; the run either holds on it or (continue-on-error) went on.
    Failed,
    /// Failed, and an operator chose to continue past it.
    Overridden,
    /// Never finished because the run was abandoned.
    Skipped,
}

impl StageState {
    pub fn as_str(self) -> &'static str {
        match self {
            StageState::Pending => "pending",
            StageState::Running => "running",
            StageState::Passed => "passed",
            StageState::Failed => "failed",
            StageState::Overridden => "overridden",
            StageState::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for StageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finished (or interrupted) attempt of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// 1-based attempt number.
    pub attempt: u32,
    pub passed: bool,
    pub summary: String,
    pub started_ms: u64,
    pub finished_ms: u64,
    /// Artifacts of this attempt (kept so a retried stage's evidence stays
    /// reachable).
    pub artifacts: Vec<ArtifactMeta>,
}

/// A stage of a run and the latest of its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRecord {
    pub name: String,
    pub state: StageState,
    pub summary: String,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub measurements: Vec<Measurement>,
    pub artifacts: Vec<ArtifactMeta>,
    /// Attempts started so far (retries and interrupted attempts included).
    pub attempts: u32,
    /// Finished attempts, oldest first, at most `ATTEMPT_HISTORY_MAX`.
    pub history: Vec<Attempt>,
}

impl StageRecord {
    fn new(name: &str) -> StageRecord {
        StageRecord {
            name: name.to_string(),
            state: StageState::Pending,
            summary: String::new(),
            started_ms: None,
            finished_ms: None,
            measurements: Vec::new(),
            artifacts: Vec::new(),
            attempts: 0,
            history: Vec::new(),
        }
    }

    /// Milliseconds the latest attempt took, once finished.
    pub fn duration_ms(&self) -> Option<u64> {
        Some(self.finished_ms?.saturating_sub(self.started_ms?))
    }

    fn push_history(&mut self, attempt: Attempt) {
        self.history.push(attempt);
        let excess = self.history.len().saturating_sub(ATTEMPT_HISTORY_MAX);
        self.history.drain(..excess);
    }
}

/// The state of a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Created; no stage started yet.
    Pending,
    /// A stage is running, or the next one is about to start.
    Running,
    /// A stage failed; nothing runs until an operator acts.
    FailedHolding,
    /// Every stage finished (passed, failed under continue-on-error, or
    /// overridden).
    Completed,
    /// An operator abandoned the run.
    Abandoned,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::FailedHolding => "failed_holding",
            RunState::Completed => "completed",
            RunState::Abandoned => "abandoned",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, RunState::Completed | RunState::Abandoned)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every stage passed.
    Passed,
    /// No stage is failed, but an operator overrode at least one failure.
    PassedWithOverrides,
    /// At least one stage failed (recorded under continue-on-error).
    Failed,
    Abandoned,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::PassedWithOverrides => "passed_with_overrides",
            Verdict::Failed => "failed",
            Verdict::Abandoned => "abandoned",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operator can do about a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorAction {
    /// Continue past the failed stage (it stays visible as overridden).
    Override,
    /// Run the failed stage again.
    Retry,
    /// End the run; stages not finished are skipped.
    Abandon,
}

impl OperatorAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorAction::Override => "override",
            OperatorAction::Retry => "retry",
            OperatorAction::Abandon => "abandon",
        }
    }
}

impl std::fmt::Display for OperatorAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One operator action taken on a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorEvent {
    pub action: OperatorAction,
    /// The stage the run was holding on, if any.
    pub stage: Option<String>,
    pub at_ms: u64,
}

/// A verification or vetting run. Plain data: persist it whole after every
/// transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub id: String,
    /// What kind of run this is (`vet`, `verify`), for listings.
    pub kind: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub finished_ms: Option<u64>,
    pub stages: Vec<StageRecord>,
    pub state: RunState,
    /// A failed stage is recorded and the run goes on instead of holding.
    pub continue_on_error: bool,
    /// Index of the stage the run holds on (set only in `FailedHolding`,
    /// kept after an abandon to say what the run was abandoned on).
    pub failed_stage: Option<usize>,
    /// The environment manifest: berth version and revision, engine and
    /// version, kernel, image references... Stages may add facts.
    pub environment: BTreeMap<String, String>,
    /// Operator actions, oldest first, at most `OPERATOR_LOG_MAX`.
    pub operator_log: Vec<OperatorEvent>,
}

/// What a stage reports when it finishes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    pub passed: bool,
    pub summary: String,
    pub measurements: Vec<Measurement>,
    pub artifacts: Vec<ArtifactMeta>,
    /// Facts to add to the run's environment manifest.
    pub environment: BTreeMap<String, String>,
}

/// What the executor should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Run stage `stage` (now marked running) as attempt `attempt`.
    /// `resumed` means an earlier attempt was interrupted mid-stage.
    Run {
        stage: usize,
        attempt: u32,
        resumed: bool,
    },
    /// The run holds on failed stage `stage` until an operator acts.
    Holding { stage: usize },
    /// The run is over.
    Done(Verdict),
}

/// A transition that is not allowed in the run's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTransition {
    #[error(
        "run {run}: cannot {action} while the run is {state}: only a run holding on a failed stage can be overridden or retried"
    )]
    NotHolding {
        run: String,
        action: OperatorAction,
        state: RunState,
    },
    #[error("run {run} is already {state}")]
    Finished { run: String, state: RunState },
    #[error("run {run}: stage {stage} is {state}, not running")]
    StageNotRunning {
        run: String,
        stage: String,
        state: StageState,
    },
    #[error("run {run} has no stage number {stage}")]
    NoSuchStage { run: String, stage: usize },
}

impl Run {
    /// A pending run of `stages`, in order.
    ///
    /// # Panics
    /// When two stages share a name: stage lists are fixed by code, so that
    /// is a bug, not an input error.
    pub fn new(
        id: impl Into<String>,
        kind: impl Into<String>,
        stages: &[&str],
        continue_on_error: bool,
        now_ms: u64,
    ) -> Run {
        for (i, name) in stages.iter().enumerate() {
            assert!(
                !stages[..i].contains(name),
                "pipeline stage {name:?} is listed twice"
            );
        }
        Run {
            id: id.into(),
            kind: kind.into(),
            created_ms: now_ms,
            updated_ms: now_ms,
            finished_ms: None,
            stages: stages.iter().map(|s| StageRecord::new(s)).collect(),
            state: RunState::Pending,
            continue_on_error,
            failed_stage: None,
            environment: BTreeMap::new(),
            operator_log: Vec::new(),
        }
    }

    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// The stage currently running, if any.
    pub fn running_stage(&self) -> Option<usize> {
        self.stages
            .iter()
            .position(|s| s.state == StageState::Running)
    }

    /// The outcome, once the run is over.
    pub fn verdict(&self) -> Option<Verdict> {
        match self.state {
            RunState::Abandoned => Some(Verdict::Abandoned),
            RunState::Completed => {
                let any = |st: StageState| self.stages.iter().any(|s| s.state == st);
                Some(if any(StageState::Failed) {
                    Verdict::Failed
                } else if any(StageState::Overridden) {
                    Verdict::PassedWithOverrides
                } else {
                    Verdict::Passed
                })
            }
            _ => None,
        }
    }

    /// Add environment facts (bounded; later values win).
    pub fn add_environment(&mut self, facts: &BTreeMap<String, String>) {
        for (k, v) in facts {
            if self.environment.len() < ENVIRONMENT_ENTRIES_MAX || self.environment.contains_key(k)
            {
                self.environment.insert(k.clone(), v.clone());
            }
        }
    }

    /// Checks the invariants every transition keeps, for runs read back
    /// from storage. Returns what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let running: Vec<usize> = self
            .stages
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == StageState::Running)
            .map(|(i, _)| i)
            .collect();
        if running.len() > 1 {
            return Err(format!(
                "run {}: {} stages are running at once",
                self.id,
                running.len()
            ));
        }
        if !running.is_empty() && self.state != RunState::Running {
            return Err(format!(
                "run {}: a stage is running but the run is {}",
                self.id, self.state
            ));
        }
        // Stages finish in order: after the first unfinished stage, every
        // stage is pending (or skipped, in an abandoned run).
        if let Some(first_open) = self
            .stages
            .iter()
            .position(|s| matches!(s.state, StageState::Pending | StageState::Running))
            && let Some(bad) = self.stages[first_open + 1..]
                .iter()
                .find(|s| s.state != StageState::Pending)
        {
            return Err(format!(
                "run {}: stage {} is {} after an unfinished stage",
                self.id, bad.name, bad.state
            ));
        }
        match (self.state, self.failed_stage) {
            (RunState::FailedHolding, Some(i)) => match self.stages.get(i) {
                Some(s) if s.state == StageState::Failed => Ok(()),
                Some(s) => Err(format!(
                    "run {} holds on stage {} which is {}",
                    self.id, s.name, s.state
                )),
                None => Err(format!("run {} holds on missing stage {i}", self.id)),
            },
            (RunState::FailedHolding, None) => {
                Err(format!("run {} holds without a failed stage", self.id))
            }
            (RunState::Completed, _)
                if self
                    .stages
                    .iter()
                    .any(|s| matches!(s.state, StageState::Pending | StageState::Running)) =>
            {
                Err(format!(
                    "run {} is completed with unfinished stages",
                    self.id
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Decide what runs next, marking that stage running. Holding and finished
/// runs are returned as they are; a run with nothing left is completed.
pub fn next(run: &mut Run, now_ms: u64) -> Step {
    match run.state {
        RunState::Completed | RunState::Abandoned => {
            return Step::Done(run.verdict().expect("a finished run has a verdict"));
        }
        RunState::FailedHolding => {
            let stage = run
                .failed_stage
                .expect("a holding run names its failed stage");
            return Step::Holding { stage };
        }
        RunState::Pending | RunState::Running => {}
    }
    run.updated_ms = now_ms;
    if let Some(i) = run.running_stage() {
        // The process running this stage died: record the lost attempt and
        // start it again.
        let stage = &mut run.stages[i];
        let lost = Attempt {
            attempt: stage.attempts,
            passed: false,
            summary: "interrupted: berth stopped while the stage was running".into(),
            started_ms: stage.started_ms.unwrap_or(now_ms),
            finished_ms: now_ms,
            artifacts: Vec::new(),
        };
        stage.push_history(lost);
        stage.attempts += 1;
        stage.started_ms = Some(now_ms);
        stage.finished_ms = None;
        run.state = RunState::Running;
        return Step::Run {
            stage: i,
            attempt: stage.attempts,
            resumed: true,
        };
    }
    if let Some(i) = run
        .stages
        .iter()
        .position(|s| s.state == StageState::Pending)
    {
        let stage = &mut run.stages[i];
        stage.state = StageState::Running;
        stage.attempts += 1;
        stage.started_ms = Some(now_ms);
        stage.finished_ms = None;
        stage.summary.clear();
        stage.measurements.clear();
        stage.artifacts.clear();
        run.state = RunState::Running;
        return Step::Run {
            stage: i,
            attempt: stage.attempts,
            resumed: false,
        };
    }
    run.state = RunState::Completed;
    run.finished_ms = Some(now_ms);
    Step::Done(run.verdict().expect("a completed run has a verdict"))
}

/// Record the result of running stage `stage`. A failure holds the run
/// unless it continues on error.
pub fn record_result(
    run: &mut Run,
    stage: usize,
    result: StageResult,
    now_ms: u64,
) -> Result<(), InvalidTransition> {
    if run.state.is_terminal() {
        return Err(InvalidTransition::Finished {
            run: run.id.clone(),
            state: run.state,
        });
    }
    let Some(record) = run.stages.get_mut(stage) else {
        return Err(InvalidTransition::NoSuchStage {
            run: run.id.clone(),
            stage,
        });
    };
    if record.state != StageState::Running {
        return Err(InvalidTransition::StageNotRunning {
            run: run.id.clone(),
            stage: record.name.clone(),
            state: record.state,
        });
    }
    let StageResult {
        passed,
        summary,
        mut measurements,
        mut artifacts,
        environment,
    } = result;
    measurements.truncate(MEASUREMENTS_PER_STAGE_MAX);
    artifacts.truncate(ARTIFACTS_PER_STAGE_MAX);
    let summary = bounded(summary, SUMMARY_BYTES_MAX);
    let started_ms = record.started_ms.unwrap_or(now_ms);
    record.push_history(Attempt {
        attempt: record.attempts,
        passed,
        summary: summary.clone(),
        started_ms,
        finished_ms: now_ms,
        artifacts: artifacts.clone(),
    });
    record.state = if passed {
        StageState::Passed
    } else {
        StageState::Failed
    };
    record.summary = summary;
    record.measurements = measurements;
    record.artifacts = artifacts;
    record.finished_ms = Some(now_ms);
    run.add_environment(&environment);
    run.updated_ms = now_ms;
    if !passed && !run.continue_on_error {
        run.state = RunState::FailedHolding;
        run.failed_stage = Some(stage);
    }
    Ok(())
}

/// Apply an operator action. Override and retry need a holding run;
/// abandon ends any run that is not over yet (the caller makes sure no
/// stage of it is executing, e.g. by cancelling the executor first).
pub fn operator(
    run: &mut Run,
    action: OperatorAction,
    now_ms: u64,
) -> Result<(), InvalidTransition> {
    if run.state.is_terminal() {
        return Err(InvalidTransition::Finished {
            run: run.id.clone(),
            state: run.state,
        });
    }
    let held = match (run.state, run.failed_stage) {
        (RunState::FailedHolding, Some(i)) => Some(i),
        _ => None,
    };
    match action {
        OperatorAction::Override | OperatorAction::Retry => {
            let Some(i) = held else {
                return Err(InvalidTransition::NotHolding {
                    run: run.id.clone(),
                    action,
                    state: run.state,
                });
            };
            run.stages[i].state = if action == OperatorAction::Override {
                StageState::Overridden
            } else {
                StageState::Pending
            };
            run.failed_stage = None;
            run.state = RunState::Running;
        }
        OperatorAction::Abandon => {
            for stage in &mut run.stages {
                match stage.state {
                    StageState::Pending => {
                        stage.state = StageState::Skipped;
                        stage.summary = "not run: the run was abandoned".into();
                    }
                    StageState::Running => {
                        stage.state = StageState::Skipped;
                        stage.summary = "interrupted: the run was abandoned".into();
                        stage.finished_ms = Some(now_ms);
                    }
                    _ => {}
                }
            }
            run.state = RunState::Abandoned;
            run.finished_ms = Some(now_ms);
        }
    }
    run.operator_log.push(OperatorEvent {
        action,
        stage: held.map(|i| run.stages[i].name.clone()),
        at_ms: now_ms,
    });
    let excess = run.operator_log.len().saturating_sub(OPERATOR_LOG_MAX);
    run.operator_log.drain(..excess);
    run.updated_ms = now_ms;
    Ok(())
}

/// `text` cut to at most `max` bytes at a char boundary, marked with `…`.
fn bounded(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = text[..end].to_string();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock: every call returns a later millisecond.
    struct Clock(u64);
    impl Clock {
        fn tick(&mut self) -> u64 {
            self.0 += 10;
            self.0
        }
    }

    fn ok(summary: &str) -> StageResult {
        StageResult {
            passed: true,
            summary: summary.into(),
            ..StageResult::default()
        }
    }

    fn fail(summary: &str) -> StageResult {
        StageResult {
            passed: false,
            summary: summary.into(),
            ..StageResult::default()
        }
    }

    fn run3(continue_on_error: bool) -> (Run, Clock) {
        let run = Run::new("r1", "vet", &["a", "b", "c"], continue_on_error, 1_000);
        (run, Clock(1_000))
    }

    fn states(run: &Run) -> Vec<StageState> {
        run.stages.iter().map(|s| s.state).collect()
    }

    /// Runs the next stage with `result`, asserting it is stage `expect`.
    fn step(run: &mut Run, clock: &mut Clock, expect: usize, result: StageResult) {
        let now = clock.tick();
        match next(run, now) {
            Step::Run { stage, .. } => assert_eq!(stage, expect, "next stage"),
            other => panic!("expected stage {expect} to run, got {other:?}"),
        }
        record_result(run, expect, result, clock.tick()).expect("record result");
        run.check().expect("invariants hold");
    }

    #[test]
    fn stages_run_in_order_and_the_run_completes() {
        let (mut run, mut clock) = run3(false);
        assert_eq!(run.state, RunState::Pending);
        assert_eq!(
            next(&mut run, clock.tick()),
            Step::Run {
                stage: 0,
                attempt: 1,
                resumed: false
            }
        );
        assert_eq!(run.state, RunState::Running);
        assert_eq!(run.stages[0].state, StageState::Running);
        assert_eq!(run.stages[0].started_ms, Some(1_010));
        record_result(&mut run, 0, ok("a ok"), clock.tick()).unwrap();
        assert_eq!(run.stages[0].finished_ms, Some(1_020));
        assert_eq!(run.stages[0].duration_ms(), Some(10));
        step(&mut run, &mut clock, 1, ok("b ok"));
        step(&mut run, &mut clock, 2, ok("c ok"));
        assert_eq!(next(&mut run, 5_000), Step::Done(Verdict::Passed));
        assert_eq!(run.state, RunState::Completed);
        assert_eq!(run.finished_ms, Some(5_000));
        assert_eq!(states(&run), vec![StageState::Passed; 3]);
        // Asking again changes nothing.
        assert_eq!(next(&mut run, 6_000), Step::Done(Verdict::Passed));
        assert_eq!(run.finished_ms, Some(5_000));
    }

    #[test]
    fn a_failed_stage_holds_the_run_until_an_operator_acts() {
        let (mut run, mut clock) = run3(false);
        step(&mut run, &mut clock, 0, ok(""));
        step(&mut run, &mut clock, 1, fail("disk too slow"));
        assert_eq!(run.state, RunState::FailedHolding);
        assert_eq!(run.failed_stage, Some(1));
        assert_eq!(run.verdict(), None);
        // Holding is stable: nothing runs, however often we ask.
        for _ in 0..3 {
            assert_eq!(next(&mut run, clock.tick()), Step::Holding { stage: 1 });
        }
        assert_eq!(run.stages[2].state, StageState::Pending);
        assert_eq!(run.stages[2].attempts, 0);
    }

    #[test]
    fn override_continues_past_the_failed_stage() {
        let (mut run, mut clock) = run3(false);
        step(&mut run, &mut clock, 0, fail("spec mismatch"));
        operator(&mut run, OperatorAction::Override, 2_000).unwrap();
        assert_eq!(run.state, RunState::Running);
        assert_eq!(run.failed_stage, None);
        assert_eq!(run.stages[0].state, StageState::Overridden);
        assert_eq!(run.stages[0].summary, "spec mismatch");
        assert_eq!(
            run.operator_log,
            vec![OperatorEvent {
                action: OperatorAction::Override,
                stage: Some("a".into()),
                at_ms: 2_000
            }]
        );
        step(&mut run, &mut clock, 1, ok(""));
        step(&mut run, &mut clock, 2, ok(""));
        assert_eq!(
            next(&mut run, clock.tick()),
            Step::Done(Verdict::PassedWithOverrides)
        );
    }

    #[test]
    fn retry_runs_the_failed_stage_again_and_keeps_its_history() {
        let (mut run, mut clock) = run3(false);
        step(&mut run, &mut clock, 0, ok(""));
        step(&mut run, &mut clock, 1, fail("first try"));
        operator(&mut run, OperatorAction::Retry, clock.tick()).unwrap();
        assert_eq!(run.state, RunState::Running);
        assert_eq!(run.stages[1].state, StageState::Pending);
        match next(&mut run, clock.tick()) {
            Step::Run {
                stage: 1,
                attempt: 2,
                resumed: false,
            } => {}
            other => panic!("expected attempt 2 of stage 1, got {other:?}"),
        }
        record_result(&mut run, 1, ok("second try"), clock.tick()).unwrap();
        let b = &run.stages[1];
        assert_eq!(b.attempts, 2);
        assert_eq!(b.state, StageState::Passed);
        assert_eq!(b.summary, "second try");
        let history: Vec<(u32, bool, &str)> = b
            .history
            .iter()
            .map(|a| (a.attempt, a.passed, a.summary.as_str()))
            .collect();
        assert_eq!(
            history,
            vec![(1, false, "first try"), (2, true, "second try")]
        );
        step(&mut run, &mut clock, 2, ok(""));
        assert_eq!(next(&mut run, clock.tick()), Step::Done(Verdict::Passed));
    }

    #[test]
    fn a_retry_can_fail_and_hold_again() {
        let (mut run, mut clock) = run3(false);
        step(&mut run, &mut clock, 0, fail("once"));
        operator(&mut run, OperatorAction::Retry, clock.tick()).unwrap();
        step(&mut run, &mut clock, 0, fail("twice"));
        assert_eq!(run.state, RunState::FailedHolding);
        assert_eq!(run.stages[0].attempts, 2);
    }

    #[test]
    fn abandon_ends_a_held_run_and_skips_what_did_not_run() {
        let (mut run, mut clock) = run3(false);
        step(&mut run, &mut clock, 0, fail("broken"));
        operator(&mut run, OperatorAction::Abandon, 3_000).unwrap();
        assert_eq!(run.state, RunState::Abandoned);
        assert_eq!(run.finished_ms, Some(3_000));
        assert_eq!(run.failed_stage, Some(0), "what it was abandoned on");
        assert_eq!(
            states(&run),
            vec![StageState::Failed, StageState::Skipped, StageState::Skipped]
        );
        assert_eq!(next(&mut run, 4_000), Step::Done(Verdict::Abandoned));
        run.check().unwrap();
    }

    #[test]
    fn abandon_of_a_running_run_skips_the_running_stage() {
        let (mut run, mut clock) = run3(false);
        next(&mut run, clock.tick());
        operator(&mut run, OperatorAction::Abandon, clock.tick()).unwrap();
        assert_eq!(states(&run), vec![StageState::Skipped; 3]);
        assert_eq!(run.stages[0].summary, "interrupted: the run was abandoned");
        // The executor that was running it learns so when it reports.
        assert_eq!(
            record_result(&mut run, 0, ok(""), clock.tick()),
            Err(InvalidTransition::Finished {
                run: "r1".into(),
                state: RunState::Abandoned
            })
        );
    }

    #[test]
    fn continue_on_error_records_the_failure_and_proceeds() {
        let (mut run, mut clock) = run3(true);
        step(&mut run, &mut clock, 0, ok(""));
        step(&mut run, &mut clock, 1, fail("bad"));
        assert_eq!(run.state, RunState::Running);
        assert_eq!(run.failed_stage, None);
        step(&mut run, &mut clock, 2, ok(""));
        assert_eq!(next(&mut run, clock.tick()), Step::Done(Verdict::Failed));
        assert_eq!(
            states(&run),
            vec![StageState::Passed, StageState::Failed, StageState::Passed]
        );
    }

    #[test]
    fn invalid_transitions_are_typed_errors() {
        let not_holding = |state: RunState, action: OperatorAction| InvalidTransition::NotHolding {
            run: "r1".into(),
            action,
            state,
        };
        // Pending.
        let (mut run, mut clock) = run3(false);
        assert_eq!(
            operator(&mut run, OperatorAction::Override, 1),
            Err(not_holding(RunState::Pending, OperatorAction::Override))
        );
        assert_eq!(
            operator(&mut run, OperatorAction::Retry, 1),
            Err(not_holding(RunState::Pending, OperatorAction::Retry))
        );
        assert_eq!(
            record_result(&mut run, 0, ok(""), 1),
            Err(InvalidTransition::StageNotRunning {
                run: "r1".into(),
                stage: "a".into(),
                state: StageState::Pending
            })
        );
        // Running.
        next(&mut run, clock.tick());
        assert_eq!(
            operator(&mut run, OperatorAction::Retry, 1),
            Err(not_holding(RunState::Running, OperatorAction::Retry))
        );
        assert_eq!(
            record_result(&mut run, 7, ok(""), 1),
            Err(InvalidTransition::NoSuchStage {
                run: "r1".into(),
                stage: 7
            })
        );
        assert_eq!(
            record_result(&mut run, 1, ok(""), 1),
            Err(InvalidTransition::StageNotRunning {
                run: "r1".into(),
                stage: "b".into(),
                state: StageState::Pending
            })
        );
        // Recording the same stage twice.
        record_result(&mut run, 0, ok(""), clock.tick()).unwrap();
        assert!(matches!(
            record_result(&mut run, 0, ok(""), clock.tick()),
            Err(InvalidTransition::StageNotRunning {
                state: StageState::Passed,
                ..
            })
        ));
        // Completed.
        step(&mut run, &mut clock, 1, ok(""));
        step(&mut run, &mut clock, 2, ok(""));
        next(&mut run, clock.tick());
        for action in [
            OperatorAction::Override,
            OperatorAction::Retry,
            OperatorAction::Abandon,
        ] {
            assert_eq!(
                operator(&mut run, action, 1),
                Err(InvalidTransition::Finished {
                    run: "r1".into(),
                    state: RunState::Completed
                })
            );
        }
        // Abandoned twice.
        let (mut run, _) = run3(false);
        operator(&mut run, OperatorAction::Abandon, 1).unwrap();
        assert!(matches!(
            operator(&mut run, OperatorAction::Abandon, 2),
            Err(InvalidTransition::Finished {
                state: RunState::Abandoned,
                ..
            })
        ));
        assert_eq!(run.operator_log.len(), 1);
    }

    #[test]
    fn error_messages_name_the_run_and_stage() {
        let (mut run, _) = run3(false);
        let err = operator(&mut run, OperatorAction::Override, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "run r1: cannot override while the run is pending: only a run holding on a failed stage can be overridden or retried"
        );
        let err = record_result(&mut run, 1, ok(""), 1).unwrap_err();
        assert_eq!(err.to_string(), "run r1: stage b is pending, not running");
    }

    #[test]
    fn a_held_run_survives_a_restart_and_resumes_after_retry() {
        let (mut run, mut clock) = run3(false);
        step(&mut run, &mut clock, 0, ok(""));
        step(&mut run, &mut clock, 1, fail("clock unsynchronised"));
        let saved = serde_json::to_string(&run).unwrap();
        // The daemon restarts: the run is read back, equal, and still holds.
        let mut reloaded: Run = serde_json::from_str(&saved).unwrap();
        assert_eq!(reloaded, run);
        reloaded.check().unwrap();
        assert_eq!(
            next(&mut reloaded, clock.tick()),
            Step::Holding { stage: 1 }
        );
        operator(&mut reloaded, OperatorAction::Retry, clock.tick()).unwrap();
        let mut again: Run =
            serde_json::from_str(&serde_json::to_string(&reloaded).unwrap()).unwrap();
        step(&mut again, &mut clock, 1, ok(""));
        step(&mut again, &mut clock, 2, ok(""));
        assert_eq!(next(&mut again, clock.tick()), Step::Done(Verdict::Passed));
    }

    #[test]
    fn a_stage_interrupted_by_a_restart_runs_again_as_a_new_attempt() {
        let (mut run, mut clock) = run3(false);
        step(&mut run, &mut clock, 0, ok(""));
        next(&mut run, 2_000); // stage b starts, then berth dies
        let mut reloaded: Run =
            serde_json::from_str(&serde_json::to_string(&run).unwrap()).unwrap();
        assert_eq!(
            next(&mut reloaded, 9_000),
            Step::Run {
                stage: 1,
                attempt: 2,
                resumed: true
            }
        );
        let b = &reloaded.stages[1];
        assert_eq!(b.started_ms, Some(9_000));
        assert_eq!(b.history.len(), 1);
        assert_eq!(b.history[0].started_ms, 2_000);
        assert_eq!(b.history[0].finished_ms, 9_000);
        assert!(!b.history[0].passed);
        record_result(&mut reloaded, 1, ok(""), 9_500).unwrap();
        step(&mut reloaded, &mut clock, 2, ok(""));
        assert_eq!(next(&mut reloaded, 99_000), Step::Done(Verdict::Passed));
    }

    #[test]
    fn the_serialised_form_uses_stable_snake_case_names() {
        let (mut run, mut clock) = run3(false);
        step(&mut run, &mut clock, 0, fail("x"));
        let v = serde_json::to_value(&run).unwrap();
        assert_eq!(v["state"], "failed_holding");
        assert_eq!(v["stages"][0]["state"], "failed");
        assert_eq!(v["failed_stage"], 0);
        // Unknown fields are refused rather than silently dropped.
        let mut bad = v.clone();
        bad["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Run>(bad).is_err());
    }

    #[test]
    fn an_empty_run_completes_at_once() {
        let mut run = Run::new("e", "vet", &[], false, 5);
        assert_eq!(next(&mut run, 6), Step::Done(Verdict::Passed));
        assert_eq!(run.finished_ms, Some(6));
    }

    #[test]
    fn results_are_bounded_and_environment_facts_are_merged() {
        let (mut run, mut clock) = run3(false);
        let huge = StageResult {
            passed: true,
            summary: "é".repeat(SUMMARY_BYTES_MAX),
            measurements: (0..MEASUREMENTS_PER_STAGE_MAX + 5)
                .map(|i| Measurement::new(format!("m{i}"), i as f64, "n"))
                .collect(),
            artifacts: Vec::new(),
            environment: BTreeMap::from([("engine.kind".to_string(), "podman".to_string())]),
        };
        step(&mut run, &mut clock, 0, huge);
        let a = &run.stages[0];
        assert!(a.summary.len() <= SUMMARY_BYTES_MAX);
        assert!(a.summary.ends_with('…'));
        assert_eq!(a.measurements.len(), MEASUREMENTS_PER_STAGE_MAX);
        assert_eq!(run.environment["engine.kind"], "podman");
    }

    #[test]
    fn attempt_history_and_operator_log_are_bounded() {
        let mut run = Run::new("r", "vet", &["a"], false, 0);
        let mut clock = Clock(0);
        for _ in 0..(ATTEMPT_HISTORY_MAX + OPERATOR_LOG_MAX) {
            step(&mut run, &mut clock, 0, fail("again"));
            operator(&mut run, OperatorAction::Retry, clock.tick()).unwrap();
        }
        assert_eq!(run.stages[0].history.len(), ATTEMPT_HISTORY_MAX);
        assert_eq!(run.operator_log.len(), OPERATOR_LOG_MAX);
        let last = run.stages[0].history.last().unwrap();
        assert_eq!(
            last.attempt as usize,
            ATTEMPT_HISTORY_MAX + OPERATOR_LOG_MAX
        );
    }

    #[test]
    fn check_reports_broken_invariants() {
        let (mut run, _) = run3(false);
        run.state = RunState::FailedHolding;
        assert!(run.check().unwrap_err().contains("without a failed stage"));
        let (mut run, _) = run3(false);
        run.stages[2].state = StageState::Passed;
        assert!(run.check().unwrap_err().contains("stage c is passed"));
    }
}
