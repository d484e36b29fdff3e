//! `berth verify`: the lifecycle matrix on the real engine, as a run of the
//! staged pipeline. Stages, in order:
//!
//! ```text
//! Setup → i1/installed → i1/state → … → i1/uninstall → i2/installed → … → iN/uninstall → Teardown → Reporting
//! ```
//!
//! Each `i<k>/<cell>` stage takes every app of the run through one cell of
//! the lifecycle (install, stop, a daemon kill…) and records, per app, a
//! measurement `<app>` (1 passed, 0 failed, -1 not applicable), `<app> ms`,
//! a summary line `<app>: FAILED <why>` on failure and artifacts named
//! `<app>/…`. The scorecard [`Matrix`] is rebuilt from the stored run alone
//! ([`matrix_of`]), so a run resumed by another process (after an override
//! or retry) reports exactly what ran. A failing cell holds the run
//! (FailedHolding) unless continue-on-error collects the whole matrix.
//!
//! berth is driven through its own binary on a state directory of the run
//! (`<run dir>/work/state`) and a copy of the stack under another name, so
//! a verify never touches the user's installation. The daemon runs (a
//! child of the verify process, tick 1 s) only for the destructive cells.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_core::naming;
use berth_core::pipeline::{self, OperatorAction, Run, RunState, StageResult, StageState};
use serde::{Deserialize, Serialize};

use crate::artifacts::{ArtifactSink, Redactor};
use crate::clock::{Clock, SystemClock};
use crate::engine_ref::EngineRef;
use crate::executor::{
    ArtifactOut, ExecError, Executor, Observer, Stage, StageContext, StageOutcome,
};
use crate::report::matrix::{Iteration, Matrix};
use crate::store::RunStore;
use crate::vet::RunSummary;

pub mod cells;
pub mod daemon;
pub mod harness;
pub mod stack;

use harness::Harness;

/// The run kind recorded for verify runs.
pub const VERIFY_KIND: &str = "verify";
pub const STAGE_SETUP: &str = "Setup";
pub const STAGE_TEARDOWN: &str = "Teardown";
pub const STAGE_REPORTING: &str = "Reporting";
/// Most iterations one run may ask for.
pub const ITERATIONS_MAX: u32 = 1_000;
/// Default bound on each wait for a readiness signal (running, healthy,
/// an answering UI, a restart by supervision).
pub const WAIT_TIMEOUT_S_DEFAULT: u64 = 120;
/// The verify daemon's reconcile tick.
pub const DAEMON_TICK_MS_DEFAULT: u64 = 1_000;
/// The scorecard artifact (Markdown, for docs/STATUS.md).
pub const SCORECARD_FILE_NAME: &str = "scorecard.md";

/// One column of the scorecard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cell {
    Installed,
    State,
    Probe,
    Ui,
    Stop,
    Start,
    Restart,
    Reinstall,
    DaemonRestart,
    CrashRestart,
    KilledMidInstall,
    Uninstall,
}

impl Cell {
    /// Every cell, in the order an iteration runs them.
    pub const ALL: [Cell; 12] = [
        Cell::Installed,
        Cell::State,
        Cell::Probe,
        Cell::Ui,
        Cell::Stop,
        Cell::Start,
        Cell::Restart,
        Cell::Reinstall,
        Cell::DaemonRestart,
        Cell::CrashRestart,
        Cell::KilledMidInstall,
        Cell::Uninstall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cell::Installed => "installed",
            Cell::State => "state",
            Cell::Probe => "probe",
            Cell::Ui => "ui",
            Cell::Stop => "stop",
            Cell::Start => "start",
            Cell::Restart => "restart",
            Cell::Reinstall => "reinstall",
            Cell::DaemonRestart => "daemon-restart",
            Cell::CrashRestart => "crash-restart",
            Cell::KilledMidInstall => "killed-mid-install",
            Cell::Uninstall => "uninstall",
        }
    }

    /// What the cell proves, for docs and reports.
    pub fn describe(self) -> &'static str {
        match self {
            Cell::Installed => "container present after install",
            Cell::State => "running and healthy, or intentionally held by a gate",
            Cell::Probe => "the chain probe reaches the node (apps with a probe)",
            Cell::Ui => "each web UI answers 200 with a body (apps/companions with web_ui)",
            Cell::Stop => "stopped on purpose: nothing runs, status says stopped",
            Cell::Start => "started again, valid state",
            Cell::Restart => "restarted: new start time, valid state",
            Cell::Reinstall => "recreated with data kept (marker in the first volume read back)",
            Cell::DaemonRestart => {
                "daemon SIGTERM and SIGKILL: containers keep running, start time unchanged"
            }
            Cell::CrashRestart => "main process killed: supervision starts it again",
            Cell::KilledMidInstall => {
                "berth killed at each install journal step: recover leaves nothing orphaned, install completes"
            }
            Cell::Uninstall => {
                "uninstall leaves no container, volume, network, secret file or store row"
            }
        }
    }

    /// Destructive cells kill the daemon or the app; they run only when
    /// asked (`--destructive`).
    pub fn destructive(self) -> bool {
        matches!(
            self,
            Cell::DaemonRestart | Cell::CrashRestart | Cell::KilledMidInstall
        )
    }

    pub fn parse(name: &str) -> Option<Cell> {
        Cell::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The cells a run covers.
pub fn cells(destructive: bool) -> Vec<Cell> {
    Cell::ALL
        .into_iter()
        .filter(|c| destructive || !c.destructive())
        .collect()
}

/// `i3/restart`.
pub fn stage_name(iteration: u32, cell: Cell) -> String {
    format!("i{iteration}/{cell}")
}

/// `i3/restart` → (3, Restart).
pub fn parse_stage_name(name: &str) -> Option<(u32, Cell)> {
    let (it, cell) = name.strip_prefix('i')?.split_once('/')?;
    Some((it.parse().ok()?, Cell::parse(cell)?))
}

/// What a verify run was started with (stored with the run, so any process
/// can resume it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    /// The user's stack file (absolute).
    pub stack_file: PathBuf,
    /// The apps covered, in start order (resolved at start: `--apps`, or
    /// every app that is not a companion).
    pub apps: Vec<String>,
    pub iterations: u32,
    pub destructive: bool,
    pub continue_on_error: bool,
    pub engine: EngineRef,
    /// Where report.html, report.json and artifacts/ go.
    pub report_dir: PathBuf,
    /// The run's own berth state directory and stack copy live here.
    pub work_dir: PathBuf,
    /// The stack's name in this run (never the user's).
    pub stack_name: String,
    pub wait_timeout_s: u64,
    pub daemon_tick_ms: u64,
    /// Added to every host port the stack publishes (web UIs included), so
    /// a stack can be verified beside a running installation of it.
    #[serde(default)]
    pub port_offset: u16,
}

/// How to start a verify run.
#[derive(Clone)]
pub struct VerifyOptions {
    pub stack_file: PathBuf,
    /// Empty: every app that is not a companion.
    pub apps: Vec<String>,
    pub iterations: u32,
    pub destructive: bool,
    pub continue_on_error: bool,
    pub engine: EngineRef,
    pub report_dir: PathBuf,
    pub work_dir: PathBuf,
    pub run_id: String,
    pub wait_timeout_s: u64,
    pub daemon_tick_ms: u64,
    pub port_offset: u16,
    /// The berth binary under test (the CLI passes its own).
    pub berth_exe: PathBuf,
    pub observer: Option<Observer>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The stack file or the app selection is unusable.
    #[error("{0}")]
    Stack(String),
    #[error("verify option {option}: {detail}")]
    Option {
        option: &'static str,
        detail: String,
    },
    /// The engine cannot be reached.
    #[error("{0}")]
    Engine(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("run {id}: stored parameters are unusable: {detail}")]
    Params { id: String, detail: String },
}

/// A stack name for run `id`: `v` and 6 characters derived from the id, so
/// that the engine names (`<stack>-<app>`) stay short and never collide
/// with the user's stacks.
pub fn stack_name_for(run_id: &str) -> String {
    // FNV-1a: stable across versions and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in run_id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::from("v");
    for _ in 0..6 {
        out.push(ALPHABET[(hash % 36) as usize] as char);
        hash /= 36;
    }
    out
}

/// The stages of a run of these parameters, in order.
pub fn stage_names(iterations: u32, destructive: bool) -> Vec<String> {
    let mut names = vec![STAGE_SETUP.to_string()];
    for i in 1..=iterations {
        for c in cells(destructive) {
            names.push(stage_name(i, c));
        }
    }
    names.push(STAGE_TEARDOWN.into());
    names.push(STAGE_REPORTING.into());
    names
}

/// The scorecard of `run` (apps × cells), rebuilt from its stages.
pub fn matrix_of(run: &Run, apps: &[String], destructive: bool) -> Matrix {
    let app_refs: Vec<&str> = apps.iter().map(String::as_str).collect();
    let cell_names: Vec<&str> = cells(destructive).iter().map(|c| c.name()).collect();
    let mut m = Matrix::new(
        &format!("lifecycle × {} iterations", iterations_of(run)),
        &app_refs,
        &cell_names,
    );
    for stage in &run.stages {
        let Some((iteration, cell)) = parse_stage_name(&stage.name) else {
            continue;
        };
        if !matches!(
            stage.state,
            StageState::Passed | StageState::Failed | StageState::Overridden
        ) || !cell_names.contains(&cell.name())
        {
            continue;
        }
        for app in apps {
            let value = stage
                .measurements
                .iter()
                .find(|x| x.name == *app && x.unit == RESULT_UNIT)
                .map(|x| x.value);
            let Some(value) = value else { continue };
            if value < 0.0 {
                m.not_applicable(app, cell.name());
                continue;
            }
            let ms = stage
                .measurements
                .iter()
                .find(|x| x.name == format!("{app} ms"))
                .map_or(0, |x| x.value.max(0.0) as u64);
            let passed = value >= 1.0;
            let prefix = format!("{app}: FAILED ");
            let failure = (!passed).then(|| {
                stage
                    .summary
                    .lines()
                    .find_map(|l| l.strip_prefix(&prefix))
                    .unwrap_or("failed")
                    .to_string()
            });
            let artifacts = stage
                .artifacts
                .iter()
                .filter(|a| a.name.starts_with(&format!("{app}/")))
                .cloned()
                .collect();
            m.record(
                app,
                cell.name(),
                Iteration {
                    iteration,
                    passed,
                    duration_ms: ms,
                    failure,
                    artifacts,
                },
            );
        }
    }
    m
}

fn iterations_of(run: &Run) -> u32 {
    run.stages
        .iter()
        .filter_map(|s| parse_stage_name(&s.name).map(|(i, _)| i))
        .max()
        .unwrap_or(0)
}

/// Unit of the per-app result measurement.
pub const RESULT_UNIT: &str = "result";

/// Turn per-app results into a stage outcome (see the module docs).
fn outcome_of(results: Vec<cells::AppResult>, apps: usize) -> StageOutcome {
    // Keep the summary inside the pipeline's bound with every app's line.
    let line_max = (pipeline::SUMMARY_BYTES_MAX / apps.max(1))
        .saturating_sub(8)
        .max(40);
    let mut out = StageOutcome {
        passed: true,
        ..StageOutcome::default()
    };
    let mut lines = Vec::new();
    for r in results {
        let (value, line) = match &r.outcome {
            cells::Outcome::Pass(s) => (1.0, format!("{}: ok, {s}", r.app)),
            cells::Outcome::Fail(s) => {
                out.passed = false;
                (0.0, format!("{}: FAILED {}", r.app, one_line(s)))
            }
            cells::Outcome::NotApplicable(s) => (-1.0, format!("{}: n/a ({s})", r.app)),
        };
        lines.push(cut(&line, line_max));
        out.measurements
            .push(pipeline::Measurement::new(&r.app, value, RESULT_UNIT));
        out.measurements.push(pipeline::Measurement::new(
            format!("{} ms", r.app),
            r.ms as f64,
            "ms",
        ));
        out.artifacts.extend(r.artifacts);
    }
    out.summary = lines.join("\n");
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

// ── stages ─────────────────────────────────────────────────────────────

struct CellStage {
    h: Arc<Harness>,
    name: String,
    iteration: u32,
    cell: Cell,
}

#[async_trait]
impl Stage for CellStage {
    fn name(&self) -> &str {
        &self.name
    }

    fn timeout(&self) -> Duration {
        // Each app may use several bounded waits and commands; killing
        // berth at every install step is the longest cell.
        let per_app = self.h.op_timeout() * 3
            + if self.cell == Cell::KilledMidInstall {
                self.h.op_timeout() * 2 * cells::CRASH_POINTS.len() as u32
            } else {
                Duration::ZERO
            };
        Duration::from_secs(120) + per_app * self.h.params.apps.len() as u32
    }

    async fn run(&self, ctx: &StageContext<'_>) -> StageOutcome {
        // After a failed Setup (ports taken, ...) under continue-on-error,
        // the cells would only pile up the same failure slowly.
        if let Some(setup) = ctx.run.stages.iter().find(|s| s.name == STAGE_SETUP)
            && setup.state == StageState::Failed
        {
            let why = format!("not run: Setup failed ({})", one_line(&setup.summary));
            let results = self
                .h
                .params
                .apps
                .iter()
                .map(|app| cells::AppResult {
                    app: app.clone(),
                    outcome: cells::Outcome::Fail(why.clone()),
                    ms: 0,
                    artifacts: Vec::new(),
                })
                .collect();
            return outcome_of(results, self.h.params.apps.len());
        }
        let results = cells::run(&self.h, self.cell, self.iteration).await;
        outcome_of(results, self.h.params.apps.len())
    }
}

struct SetupStage(Arc<Harness>);

#[async_trait]
impl Stage for SetupStage {
    fn name(&self) -> &str {
        STAGE_SETUP
    }

    async fn run(&self, _ctx: &StageContext<'_>) -> StageOutcome {
        let h = &self.0;
        let mut env = BTreeMap::new();
        env.insert(
            "verify.stack_file".into(),
            h.params.stack_file.display().to_string(),
        );
        env.insert("verify.stack_name".into(), h.stack.name.clone());
        env.insert("verify.apps".into(), h.params.apps.join(","));
        env.insert("verify.iterations".into(), h.params.iterations.to_string());
        env.insert(
            "verify.destructive".into(),
            h.params.destructive.to_string(),
        );
        if h.params.port_offset != 0 {
            env.insert(
                "verify.port_offset".into(),
                h.params.port_offset.to_string(),
            );
        }
        let mut problems = Vec::new();
        let busy = stack::busy_ports(&h.stack, &h.params.apps);
        if !busy.is_empty() {
            problems.push(format!(
                "host ports already in use: {} (is the stack installed? free them, or shift them with --port-offset)",
                busy.join(", ")
            ));
        }
        // Image digests for the environment manifest; a missing image is
        // pulled by the install like any other.
        let closure = berth_core::graph::with_dependencies(
            &h.stack,
            &h.params.apps.iter().cloned().collect(),
        );
        let images: BTreeSet<String> = closure
            .iter()
            .flat_map(|id| h.stack.with_companions(id))
            .map(|a| a.image.clone())
            .collect();
        for image in &images {
            env.insert(format!("image.{image}"), image_id(h, image).await);
        }
        if let Err(e) = std::fs::create_dir_all(&h.state_dir) {
            problems.push(format!("cannot create {}: {e}", h.state_dir.display()));
        }
        let summary = format!(
            "stack {} as {}: {} app(s) ({}), {} iteration(s), {} cells{}",
            h.params.stack_file.display(),
            h.stack.name,
            h.params.apps.len(),
            h.params.apps.join(", "),
            h.params.iterations,
            cells(h.params.destructive).len(),
            if h.params.destructive {
                " (destructive included)"
            } else {
                " (destructive not requested)"
            }
        );
        StageOutcome {
            passed: problems.is_empty(),
            summary: if problems.is_empty() {
                summary
            } else {
                format!("FAILED {}; {summary}", problems.join("; "))
            },
            environment: env,
            ..StageOutcome::default()
        }
    }
}

/// The image's id (a content digest) as the engine reports it.
async fn image_id(h: &Harness, image: &str) -> String {
    let Some(cli) = crate::tool::find(&h.kind.to_string()) else {
        return "unknown (no engine CLI)".into();
    };
    match crate::tool::run(
        &cli,
        &["image", "inspect", "--format", "{{.Id}}", image],
        Duration::from_secs(harness::ENGINE_CALL_TIMEOUT_S),
    )
    .await
    {
        Ok(o) if o.exit_code == Some(0) => o.stdout.trim().to_string(),
        Ok(o) => format!("not present ({})", o.first_line()),
        Err(e) => format!("unknown ({e})"),
    }
}

struct TeardownStage(Arc<Harness>);

#[async_trait]
impl Stage for TeardownStage {
    fn name(&self) -> &str {
        STAGE_TEARDOWN
    }

    async fn run(&self, _ctx: &StageContext<'_>) -> StageOutcome {
        let (clean, summary, log) = teardown(&self.0).await;
        StageOutcome {
            passed: clean,
            summary,
            artifacts: log.into_iter().collect(),
            ..StageOutcome::default()
        }
    }
}

/// Stop the daemon, uninstall what the run installed, remove whatever berth
/// left (reported: that would be a bug), and delete the run's state
/// directory (it holds secrets). Returns (nothing had to be forced,
/// summary, the daemon log).
async fn teardown(h: &Harness) -> (bool, String, Option<ArtifactOut>) {
    let mut notes = Vec::new();
    let mut clean = true;
    if let Err(e) = h.stop_daemon(daemon::StopSignal::Term).await {
        notes.push(format!("stopping the daemon: {e}"));
    }
    match h.installed() {
        Ok(installed) if !installed.is_empty() => {
            let tops: Vec<&str> = installed
                .iter()
                .filter(|id| {
                    h.stack
                        .apps
                        .get(*id)
                        .is_some_and(|a| a.companion_of.is_none())
                })
                .map(String::as_str)
                .collect();
            let mut args = vec!["uninstall", "--cascade"];
            args.extend(tops);
            let out = h.berth(&args, &[], h.op_timeout()).await;
            if !out.ok() {
                clean = false;
                notes.push(format!("berth uninstall failed: {}", out.why()));
            } else {
                notes.push(format!("uninstalled {}", installed.len()));
            }
        }
        Ok(_) => {}
        Err(e) => notes.push(format!("reading the run's state: {e}")),
    }
    let swept = sweep(h).await;
    if !swept.is_empty() {
        clean = false;
        notes.push(format!("removed leftovers by force: {}", swept.join(", ")));
    }
    let log = std::fs::read_to_string(h.work_dir().join("daemon.log"))
        .ok()
        .map(|text| {
            let tail: Vec<&str> = text.lines().rev().take(2_000).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            ArtifactOut::text("daemon.log", "text/plain", tail.join("\n"))
        });
    if h.state_dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&h.state_dir)
    {
        notes.push(format!("cannot remove {}: {e}", h.state_dir.display()));
    }
    let summary = if notes.is_empty() {
        "nothing left to clean up".to_string()
    } else {
        notes.join("; ")
    };
    (clean, summary, log)
}

/// Force-remove every engine object labelled with the run's stack.
async fn sweep(h: &Harness) -> Vec<String> {
    let label = (naming::LABEL_STACK, h.stack.name.as_str());
    let mut removed = Vec::new();
    if let Ok(list) = h
        .call("list containers", h.engine.list_containers(label))
        .await
    {
        for c in list {
            if h.call("remove", h.engine.remove_container(&c.name, true))
                .await
                .is_ok()
            {
                removed.push(format!("container {}", c.name));
            }
        }
    }
    if let Ok(list) = h.call("list volumes", h.engine.list_volumes(label)).await {
        for v in list {
            if h.call("remove volume", h.engine.remove_volume(&v.name))
                .await
                .is_ok()
            {
                removed.push(format!("volume {}", v.name));
            }
        }
    }
    if let Ok(list) = h.call("list networks", h.engine.list_networks(label)).await {
        for n in list {
            if h.call("remove network", h.engine.remove_network(&n.name))
                .await
                .is_ok()
            {
                removed.push(format!("network {}", n.name));
            }
        }
    }
    removed
}

struct ReportingStage {
    h: Arc<Harness>,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl Stage for ReportingStage {
    fn name(&self) -> &str {
        STAGE_REPORTING
    }

    async fn run(&self, ctx: &StageContext<'_>) -> StageOutcome {
        let now = self.clock.now_ms();
        let dir = ctx.artifacts.root().display().to_string();
        let summary = format!("wrote report.html and report.json to {dir}");
        // Report the run as it will be once this stage passed (see vet).
        let mut projected = ctx.run.clone();
        if let Err(e) = pipeline::record_result(
            &mut projected,
            ctx.stage,
            StageResult {
                passed: true,
                summary: summary.clone(),
                ..StageResult::default()
            },
            now,
        ) {
            return StageOutcome::fail(format!("cannot project the finished run: {e}"));
        }
        let _ = pipeline::next(&mut projected, now);
        let matrix = matrix_of(&projected, &self.h.params.apps, self.h.params.destructive);
        let scorecard =
            ArtifactOut::text(SCORECARD_FILE_NAME, "text/markdown", matrix.to_markdown());
        match crate::report::write_reports(&projected, ctx.artifacts, Some(&matrix), now) {
            Ok([json, html]) => StageOutcome {
                artifacts: vec![
                    ArtifactOut::Written(json),
                    ArtifactOut::Written(html),
                    scorecard,
                ],
                ..StageOutcome::pass(summary)
            },
            Err(e) => StageOutcome::fail(format!("cannot write the reports to {dir}: {e}")),
        }
    }
}

// ── running ────────────────────────────────────────────────────────────

fn redactor(known: &Arc<Mutex<BTreeSet<String>>>) -> Redactor {
    let known = known.clone();
    Arc::new(move |text: &str| {
        let values: Vec<String> = known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        berth_store::Redactor::new(values).redact(text)
    })
}

fn validate(p: &VerifyParams) -> Result<(), VerifyError> {
    if p.iterations == 0 || p.iterations > ITERATIONS_MAX {
        return Err(VerifyError::Option {
            option: "iterations",
            detail: format!("{} is outside 1..={ITERATIONS_MAX}", p.iterations),
        });
    }
    if p.wait_timeout_s == 0 {
        return Err(VerifyError::Option {
            option: "wait_timeout",
            detail: "must be at least 1 s".into(),
        });
    }
    if p.daemon_tick_ms < 100 {
        return Err(VerifyError::Option {
            option: "daemon_tick",
            detail: "must be at least 100 ms".into(),
        });
    }
    Ok(())
}

struct Prepared {
    harness: Arc<Harness>,
    sink: ArtifactSink,
    clock: Arc<dyn Clock>,
}

async fn prepare(params: VerifyParams, exe: PathBuf) -> Result<Prepared, VerifyError> {
    validate(&params)?;
    let (stack, stack_file) = stack::prepare(
        &params.stack_file,
        &params.stack_name,
        params.port_offset,
        &params.work_dir,
    )
    .map_err(VerifyError::Stack)?;
    let engine = params.engine.connect().await.map_err(VerifyError::Engine)?;
    std::fs::create_dir_all(&params.report_dir).map_err(|source| VerifyError::Io {
        path: params.report_dir.clone(),
        source,
    })?;
    let known = Arc::new(Mutex::new(BTreeSet::new()));
    let sink = ArtifactSink::new(params.report_dir.clone(), redactor(&known));
    let harness = Arc::new(Harness::new(params, exe, engine, stack, stack_file, known));
    harness.refresh_secrets();
    Ok(Prepared {
        harness,
        sink,
        clock: Arc::new(SystemClock),
    })
}

fn executor<'a>(p: &Prepared, store: &'a dyn RunStore, observer: Option<Observer>) -> Executor<'a> {
    let h = &p.harness;
    let mut stages: Vec<Arc<dyn Stage>> = vec![Arc::new(SetupStage(h.clone()))];
    for i in 1..=h.params.iterations {
        for c in cells(h.params.destructive) {
            stages.push(Arc::new(CellStage {
                h: h.clone(),
                name: stage_name(i, c),
                iteration: i,
                cell: c,
            }));
        }
    }
    stages.push(Arc::new(TeardownStage(h.clone())));
    stages.push(Arc::new(ReportingStage {
        h: h.clone(),
        clock: p.clock.clone(),
    }));
    let exec = Executor::new(stages, store, p.clock.clone(), p.sink.clone());
    match observer {
        Some(o) => exec.with_observer(o),
        None => exec,
    }
}

/// Start a verify run and drive it until it completes or holds. The caller
/// holds the run's lock (`StateDir::lock_run`) and decides the exit code
/// from the summary (0 only when [`RunSummary::passed`]).
pub async fn verify(opts: VerifyOptions, store: &dyn RunStore) -> Result<RunSummary, VerifyError> {
    let probe = stack::load(&opts.stack_file).map_err(VerifyError::Stack)?;
    let apps = stack::select_apps(&probe, &opts.apps).map_err(VerifyError::Stack)?;
    let params = VerifyParams {
        stack_file: opts.stack_file.clone(),
        apps,
        iterations: opts.iterations,
        destructive: opts.destructive,
        continue_on_error: opts.continue_on_error,
        engine: opts.engine.clone(),
        report_dir: opts.report_dir.clone(),
        work_dir: opts.work_dir.clone(),
        stack_name: stack_name_for(&opts.run_id),
        wait_timeout_s: opts.wait_timeout_s,
        daemon_tick_ms: opts.daemon_tick_ms,
        port_offset: opts.port_offset,
    };
    let json = serde_json::to_string(&params).expect("verify params serialise");
    let prepared = prepare(params, opts.berth_exe.clone()).await?;
    let exec = executor(&prepared, store, opts.observer.clone());
    let environment = crate::environment::collect(Some(prepared.harness.engine.as_ref())).await;
    exec.create_run(
        &opts.run_id,
        VERIFY_KIND,
        opts.continue_on_error,
        environment,
    )?;
    store
        .save_params(&opts.run_id, &json)
        .map_err(ExecError::from)?;
    let run = exec.drive(&opts.run_id).await?;
    Ok(finish(&prepared, &exec, &run).await)
}

/// Apply an operator action to a held verify run (or, with none, drive on
/// a run interrupted by a crash) and drive it until it completes or holds
/// again. An abandoned run is torn down (its stack removed).
pub async fn resume_verify(
    store: &dyn RunStore,
    run_id: &str,
    action: Option<OperatorAction>,
    berth_exe: PathBuf,
    observer: Option<Observer>,
) -> Result<RunSummary, VerifyError> {
    let params = load_params(store, run_id)?;
    let prepared = prepare(params, berth_exe).await?;
    prepared.harness.stop_orphan_daemon().await;
    let exec = executor(&prepared, store, observer);
    let run = match action {
        Some(action) => exec.operate(run_id, action)?,
        None => exec.load(run_id)?,
    };
    let run = if run.state.is_terminal() {
        run
    } else {
        exec.drive(run_id).await?
    };
    Ok(finish(&prepared, &exec, &run).await)
}

/// The stored parameters of verify run `id`.
pub fn load_params(store: &dyn RunStore, id: &str) -> Result<VerifyParams, VerifyError> {
    let text = store
        .load_params(id)
        .map_err(ExecError::from)?
        .ok_or_else(|| VerifyError::Params {
            id: id.into(),
            detail: "none recorded".into(),
        })?;
    serde_json::from_str(&text).map_err(|e| VerifyError::Params {
        id: id.into(),
        detail: e.to_string(),
    })
}

/// Reports for a run that did not complete (the Reporting stage writes
/// those of a completed run), teardown of an abandoned one; the daemon is
/// stopped in every case (a held run keeps its stack for inspection).
async fn finish(p: &Prepared, exec: &Executor<'_>, run: &Run) -> RunSummary {
    let h = &p.harness;
    if run.state == RunState::Abandoned {
        let (_, summary, _) = teardown(h).await;
        tracing::info!(run = %run.id, "abandoned run torn down: {summary}");
    } else if let Err(e) = h.stop_daemon(daemon::StopSignal::Term).await {
        tracing::warn!(run = %run.id, error = %e, "stopping the verify daemon");
    }
    let matrix = matrix_of(run, &h.params.apps, h.params.destructive);
    if run.state != RunState::Completed {
        let now = p.clock.now_ms();
        if let Err(e) = crate::report::write_reports(run, exec.artifacts(), Some(&matrix), now) {
            tracing::warn!(run = %run.id, error = %e, "could not write the reports");
        }
    }
    let mut summary = RunSummary::of(run, &h.params.report_dir);
    summary.matrix = Some(matrix);
    summary
}

/// Where a run's work directory is by default: `<run dir>/work`.
pub fn work_dir_in(run_dir: &Path) -> PathBuf {
    run_dir.join("work")
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::pipeline::{Measurement, StageResult};

    #[test]
    fn stage_names_round_trip_and_cover_the_matrix() {
        assert_eq!(
            parse_stage_name("i12/killed-mid-install"),
            Some((12, Cell::KilledMidInstall))
        );
        assert_eq!(parse_stage_name("Setup"), None);
        assert_eq!(parse_stage_name("i1/nope"), None);
        let names = stage_names(2, false);
        assert_eq!(names.len(), 1 + 2 * 9 + 2);
        assert_eq!(names[1], "i1/installed");
        assert_eq!(names.last().unwrap(), STAGE_REPORTING);
        assert_eq!(stage_names(1, true).len(), 1 + 12 + 2);
        for c in Cell::ALL {
            assert_eq!(Cell::parse(c.name()), Some(c));
        }
    }

    #[test]
    fn stack_names_are_short_valid_and_stable() {
        let a = stack_name_for("verify-20240501-120000-123");
        assert_eq!(a, stack_name_for("verify-20240501-120000-123"));
        assert_ne!(a, stack_name_for("verify-20240501-120000-124"));
        assert_eq!(a.len(), 7);
        assert!(a.starts_with('v'));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn the_matrix_is_rebuilt_from_the_stored_stages() {
        let apps = vec!["web".to_string(), "worker".to_string()];
        let names = stage_names(2, false);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut run = Run::new("verify-1", VERIFY_KIND, &refs, true, 0);
        let mut t = 0;
        while let pipeline::Step::Run { stage, .. } = pipeline::next(&mut run, t) {
            t += 10;
            let name = run.stages[stage].name.clone();
            let result = match parse_stage_name(&name) {
                Some((it, cell)) => {
                    let fail = it == 2 && cell == Cell::Restart;
                    let na = cell == Cell::Probe;
                    let rows = vec![
                        cells::AppResult {
                            app: "web".into(),
                            outcome: if na {
                                cells::Outcome::NotApplicable("no probe".into())
                            } else {
                                cells::Outcome::Pass("fine".into())
                            },
                            ms: 100,
                            artifacts: Vec::new(),
                        },
                        cells::AppResult {
                            app: "worker".into(),
                            outcome: if fail {
                                cells::Outcome::Fail("start time did not\nchange".into())
                            } else if na {
                                cells::Outcome::NotApplicable("no probe".into())
                            } else {
                                cells::Outcome::Pass("fine".into())
                            },
                            ms: 200,
                            artifacts: vec![ArtifactOut::text(
                                "worker/logs.txt",
                                "text/plain",
                                "x",
                            )],
                        },
                    ];
                    let o = outcome_of(rows, 2);
                    assert_eq!(o.passed, !fail);
                    StageResult {
                        passed: o.passed,
                        summary: o.summary,
                        measurements: o.measurements,
                        artifacts: vec![pipeline::ArtifactMeta {
                            name: "worker/logs.txt".into(),
                            path: "artifacts/x".into(),
                            bytes: 1,
                            media_type: "text/plain".into(),
                        }],
                        environment: BTreeMap::new(),
                    }
                }
                None => StageResult {
                    passed: true,
                    measurements: vec![Measurement::new("web", 1.0, "count")],
                    ..StageResult::default()
                },
            };
            pipeline::record_result(&mut run, stage, result, t).unwrap();
        }
        let m = matrix_of(&run, &apps, false);
        assert_eq!(m.mark("web", "restart"), crate::CellMark::All);
        assert_eq!(m.mark("worker", "restart"), crate::CellMark::Some);
        assert_eq!(m.mark("web", "probe"), crate::CellMark::NotApplicable);
        assert_eq!(m.mark("worker", "installed"), crate::CellMark::All);
        let c = m.cell("worker", "restart").unwrap();
        assert_eq!(c.iterations.len(), 2);
        assert_eq!(
            c.iterations[1].failure.as_deref(),
            Some("start time did not change")
        );
        assert_eq!(c.iterations[1].artifacts.len(), 1);
        assert!(
            m.cell("web", "restart").unwrap().iterations[0]
                .artifacts
                .is_empty()
        );
        assert_eq!(c.durations_ms(), Some((200, 200)));
        assert!(!m.all_passed());
        assert_eq!(m.title, "lifecycle × 2 iterations");
    }
}
