//! The executor with scripted fake stages and a fake clock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use berth_core::pipeline::{RunState, StageState, Verdict, next};

use super::*;
use crate::artifacts::{no_redaction, redact_values};
use crate::clock::FakeClock;
use crate::store::MemoryRunStore;

#[derive(Debug, Clone)]
enum Act {
    Pass,
    Fail(&'static str),
    Panic,
    Hang,
    Artifact(&'static str),
}

/// A stage that plays a script of acts (then passes), counting its calls.
struct Scripted {
    name: &'static str,
    script: Mutex<VecDeque<Act>>,
    calls: AtomicU32,
    clock: Arc<FakeClock>,
}

impl Scripted {
    fn new(name: &'static str, script: &[Act], clock: &Arc<FakeClock>) -> Arc<Scripted> {
        Arc::new(Scripted {
            name,
            script: Mutex::new(script.iter().cloned().collect()),
            calls: AtomicU32::new(0),
            clock: clock.clone(),
        })
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Stage for Scripted {
    fn name(&self) -> &str {
        self.name
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    async fn run(&self, ctx: &StageContext<'_>) -> StageOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(ctx.run.stages[ctx.stage].name, self.name);
        assert_eq!(ctx.run.stages[ctx.stage].state, StageState::Running);
        self.clock.advance_ms(100);
        let act = self.script.lock().unwrap().pop_front().unwrap_or(Act::Pass);
        match act {
            Act::Pass => StageOutcome::pass(format!("{} ok", self.name)),
            Act::Fail(why) => StageOutcome::fail(why),
            Act::Panic => panic!("stage {} blew up", self.name),
            Act::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                StageOutcome::pass("woke up")
            }
            Act::Artifact(text) => StageOutcome {
                passed: true,
                summary: format!("saw {text}"),
                measurements: vec![Measurement::new("rate", 1.5, "MB/s")],
                artifacts: vec![ArtifactOut::text("out.txt", "text/plain", text)],
                environment: BTreeMap::from([("probe".into(), "yes".into())]),
            },
        }
    }
}

struct Rig {
    clock: Arc<FakeClock>,
    store: MemoryRunStore,
    dir: tempfile::TempDir,
    a: Arc<Scripted>,
    b: Arc<Scripted>,
    c: Arc<Scripted>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Rig {
    fn new(a: &[Act], b: &[Act], c: &[Act]) -> Rig {
        let clock = Arc::new(FakeClock::new(1_000_000));
        Rig {
            a: Scripted::new("a", a, &clock),
            b: Scripted::new("b", b, &clock),
            c: Scripted::new("c", c, &clock),
            clock,
            store: MemoryRunStore::new(),
            dir: tempfile::tempdir().unwrap(),
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A fresh executor over the same store, as a restarted berth has.
    fn executor(&self) -> Executor<'_> {
        self.executor_redacting(no_redaction())
    }

    fn executor_redacting(&self, redact: crate::Redactor) -> Executor<'_> {
        let stages: Vec<Arc<dyn Stage>> = vec![self.a.clone(), self.b.clone(), self.c.clone()];
        let log = self.log.clone();
        Executor::new(
            stages,
            &self.store,
            self.clock.clone(),
            ArtifactSink::new(self.dir.path(), redact),
        )
        .with_observer(Arc::new(move |run: &Run| {
            log.lock().unwrap().push(compact(run));
        }))
    }

    fn calls(&self) -> [u32; 3] {
        [self.a.calls(), self.b.calls(), self.c.calls()]
    }

    fn stored(&self, id: &str) -> Run {
        self.store.load_run(id).unwrap().expect("run is stored")
    }
}

/// `state:` plus one letter per stage (Pending Running passed Failed
/// Overridden Skipped).
fn compact(run: &Run) -> String {
    let stages: String = run
        .stages
        .iter()
        .map(|s| match s.state {
            StageState::Pending => '-',
            StageState::Running => 'R',
            StageState::Passed => 'p',
            StageState::Failed => 'F',
            StageState::Overridden => 'O',
            StageState::Skipped => 'S',
        })
        .collect();
    format!("{}:{stages}", run.state)
}

#[tokio::test]
async fn runs_every_stage_in_order_and_persists_each_transition() {
    let rig = Rig::new(&[], &[], &[]);
    let exec = rig.executor();
    exec.create_run("r1", "test", false, BTreeMap::new())
        .unwrap();
    let run = exec.drive("r1").await.unwrap();
    assert_eq!(run.verdict(), Some(Verdict::Passed));
    assert_eq!(rig.calls(), [1, 1, 1]);
    assert_eq!(
        *rig.log.lock().unwrap(),
        [
            "pending:---",
            "running:R--",
            "running:p--",
            "running:pR-",
            "running:pp-",
            "running:ppR",
            "running:ppp",
            "completed:ppp",
        ]
    );
    assert_eq!(rig.stored("r1"), run);
    // Stage times come from the clock: each fake stage takes 100 ms.
    assert_eq!(run.stages[1].duration_ms(), Some(100));
    assert_eq!(run.stages[0].summary, "a ok");
}

#[tokio::test]
async fn a_failure_holds_the_run_and_nothing_runs_until_an_operator_acts() {
    let rig = Rig::new(&[], &[Act::Fail("disk too slow")], &[]);
    let exec = rig.executor();
    exec.create_run("r1", "test", false, BTreeMap::new())
        .unwrap();
    let run = exec.drive("r1").await.unwrap();
    assert_eq!(run.state, RunState::FailedHolding);
    assert_eq!(run.failed_stage, Some(1));
    assert_eq!(run.stages[1].summary, "disk too slow");
    assert_eq!(rig.stored("r1").state, RunState::FailedHolding);
    // Driving a held run (e.g. after a restart) runs nothing.
    let again = rig.executor().drive("r1").await.unwrap();
    assert_eq!(again.state, RunState::FailedHolding);
    assert_eq!(rig.calls(), [1, 1, 0]);
}

#[tokio::test]
async fn override_continues_past_the_failed_stage() {
    let rig = Rig::new(&[], &[Act::Fail("spec mismatch")], &[]);
    let exec = rig.executor();
    exec.create_run("r1", "test", false, BTreeMap::new())
        .unwrap();
    exec.drive("r1").await.unwrap();
    let released = exec.operate("r1", OperatorAction::Override).unwrap();
    assert_eq!(released.state, RunState::Running);
    assert_eq!(compact(&rig.stored("r1")), "running:pO-");
    let run = exec.drive("r1").await.unwrap();
    assert_eq!(run.verdict(), Some(Verdict::PassedWithOverrides));
    assert_eq!(rig.calls(), [1, 1, 1]);
    assert_eq!(run.operator_log.len(), 1);
}

#[tokio::test]
async fn retry_runs_the_failed_stage_again() {
    let rig = Rig::new(&[], &[Act::Fail("flaky")], &[]);
    let exec = rig.executor();
    exec.create_run("r1", "test", false, BTreeMap::new())
        .unwrap();
    exec.drive("r1").await.unwrap();
    exec.operate("r1", OperatorAction::Retry).unwrap();
    let run = exec.drive("r1").await.unwrap();
    assert_eq!(run.verdict(), Some(Verdict::Passed));
    assert_eq!(rig.calls(), [1, 2, 1]);
    assert_eq!(run.stages[1].attempts, 2);
    assert_eq!(run.stages[1].history.len(), 2);
}

#[tokio::test]
async fn abandon_ends_the_run_and_skips_the_rest() {
    let rig = Rig::new(&[Act::Fail("no")], &[], &[]);
    let exec = rig.executor();
    exec.create_run("r1", "test", false, BTreeMap::new())
        .unwrap();
    exec.drive("r1").await.unwrap();
    let run = exec.operate("r1", OperatorAction::Abandon).unwrap();
    assert_eq!(compact(&run), "abandoned:FSS");
    let run = exec.drive("r1").await.unwrap();
    assert_eq!(run.verdict(), Some(Verdict::Abandoned));
    assert_eq!(rig.calls(), [1, 0, 0]);
    // Nothing more can be done with it.
    assert!(matches!(
        exec.operate("r1", OperatorAction::Retry),
        Err(ExecError::Transition(InvalidTransition::Finished { .. }))
    ));
}

#[tokio::test]
async fn continue_on_error_records_failures_and_runs_everything() {
    let rig = Rig::new(&[Act::Fail("first")], &[], &[Act::Fail("third")]);
    let exec = rig.executor();
    exec.create_run("r1", "test", true, BTreeMap::new())
        .unwrap();
    let run = exec.drive("r1").await.unwrap();
    assert_eq!(compact(&run), "completed:FpF");
    assert_eq!(run.verdict(), Some(Verdict::Failed));
    assert_eq!(rig.calls(), [1, 1, 1]);
}

#[tokio::test]
async fn operator_actions_invalid_in_the_state_are_typed_errors() {
    let rig = Rig::new(&[], &[], &[]);
    let exec = rig.executor();
    exec.create_run("r1", "test", false, BTreeMap::new())
        .unwrap();
    assert!(matches!(
        exec.operate("r1", OperatorAction::Override),
        Err(ExecError::Transition(InvalidTransition::NotHolding {
            state: RunState::Pending,
            ..
        }))
    ));
    exec.drive("r1").await.unwrap();
    let err = exec.operate("r1", OperatorAction::Retry).unwrap_err();
    assert_eq!(err.to_string(), "run r1 is already completed");
    assert!(matches!(
        exec.operate("nope", OperatorAction::Abandon),
        Err(ExecError::NoSuchRun(id)) if id == "nope"
    ));
}

#[tokio::test]
async fn a_stage_interrupted_by_a_crash_runs_again_after_restart() {
    let rig = Rig::new(&[], &[], &[]);
    rig.executor()
        .create_run("r1", "test", false, BTreeMap::new())
        .unwrap();
    // The "crashed" berth: stage a finished, stage b started and was
    // persisted as running, then the process died.
    let mut run = rig.stored("r1");
    next(&mut run, 1);
    pipeline::record_result(
        &mut run,
        0,
        StageResult {
            passed: true,
            ..StageResult::default()
        },
        2,
    )
    .unwrap();
    next(&mut run, 3);
    rig.store.save_run(&run).unwrap();
    assert_eq!(compact(&rig.stored("r1")), "running:pR-");

    let run = rig.executor().drive("r1").await.unwrap();
    assert_eq!(run.verdict(), Some(Verdict::Passed));
    assert_eq!(rig.calls(), [0, 1, 1]);
    let b = &run.stages[1];
    assert_eq!(b.attempts, 2);
    assert!(b.history[0].summary.starts_with("interrupted"));
}

#[tokio::test]
async fn a_panicking_stage_is_a_failed_attempt() {
    let rig = Rig::new(&[], &[Act::Panic], &[]);
    let exec = rig.executor();
    exec.create_run("r1", "test", false, BTreeMap::new())
        .unwrap();
    let run = exec.drive("r1").await.unwrap();
    assert_eq!(run.state, RunState::FailedHolding);
    assert_eq!(run.stages[1].summary, "stage b panicked: stage b blew up");
}

#[tokio::test(start_paused = true)]
async fn a_stage_that_hangs_fails_at_its_timeout() {
    let rig = Rig::new(&[Act::Hang], &[], &[]);
    let exec = rig.executor();
    exec.create_run("r1", "test", false, BTreeMap::new())
        .unwrap();
    let run = exec.drive("r1").await.unwrap();
    assert_eq!(run.state, RunState::FailedHolding);
    assert_eq!(run.stages[0].summary, "stage a did not finish within 5s");
}

#[tokio::test]
async fn artifacts_and_summaries_pass_through_the_redactor() {
    let rig = Rig::new(&[Act::Artifact("token=s3cret!")], &[], &[]);
    let exec = rig.executor_redacting(redact_values(vec!["s3cret!".into()]));
    exec.create_run("r1", "test", false, BTreeMap::new())
        .unwrap();
    let run = exec.drive("r1").await.unwrap();
    let a = &run.stages[0];
    assert_eq!(a.summary, "saw token=[redacted]");
    assert_eq!(a.artifacts.len(), 1);
    let written = std::fs::read_to_string(rig.dir.path().join(&a.artifacts[0].path)).unwrap();
    assert_eq!(written, "token=[redacted]");
    assert_eq!(a.measurements, vec![Measurement::new("rate", 1.5, "MB/s")]);
    assert_eq!(run.environment["probe"], "yes");
}

#[tokio::test]
async fn store_failures_stop_the_executor_with_an_error() {
    let rig = Rig::new(&[], &[], &[]);
    let exec = rig.executor();
    exec.create_run("r1", "test", false, BTreeMap::new())
        .unwrap();
    rig.store.fail_next_saves(1);
    let err = exec.drive("r1").await.unwrap_err();
    assert!(
        matches!(err, ExecError::Store(RunStoreError::Backend(_))),
        "{err}"
    );
    assert_eq!(rig.calls(), [0, 0, 0], "nothing runs unrecorded");
    // Once the store works again the run continues.
    let run = exec.drive("r1").await.unwrap();
    assert_eq!(run.verdict(), Some(Verdict::Passed));
}

#[tokio::test]
async fn runs_of_another_pipeline_and_duplicates_are_refused() {
    let rig = Rig::new(&[], &[], &[]);
    let exec = rig.executor();
    exec.create_run("r1", "test", false, BTreeMap::new())
        .unwrap();
    assert!(matches!(
        exec.create_run("r1", "test", false, BTreeMap::new()),
        Err(ExecError::RunExists(_))
    ));
    let only_a: Vec<Arc<dyn Stage>> = vec![rig.a.clone()];
    let other = Executor::new(
        only_a,
        &rig.store,
        rig.clock.clone(),
        ArtifactSink::new(rig.dir.path(), no_redaction()),
    );
    let err = other.drive("r1").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "run r1: stage b is not one this pipeline knows"
    );
}
