//! `berth run list|show|override|retry|abandon`: the runs of `berth vet`
//! and `berth verify` in this state directory. Also the progress lines and
//! the error mapping `vet` and `verify` share.
//!
//! Runs are driven here, in this process, whether or not a daemon runs:
//! they change no installed app, so they take the run's own lock instead of
//! the state directory's (the daemon offers the same actions as
//! `run.*` JSON-RPC methods, for API clients).

use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use berth_core::pipeline::{OperatorAction, Run, RunState, StageState, Verdict};
use berth_verify::report::{human_ms, rfc3339};
use berth_verify::runs::{self, Driver, RunsError};
use berth_verify::{Matrix, RunSummary};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::cli::{Global, RunCommand};
use crate::context::{
    CmdResult, EXIT_ENGINE, EXIT_FAILED, EXIT_LOCKED, EXIT_USAGE, Failure, open_state,
};
use crate::output::print_json;

/// Runs `berth run list` shows by default.
pub const RUN_LIST_DEFAULT: usize = 20;

pub async fn run(g: &Global, command: RunCommand) -> CmdResult {
    match command {
        RunCommand::List { limit, json } => list(g, limit, json.json),
        RunCommand::Show { run, json } => show(g, &run, json.json),
        RunCommand::Override { run, json } => {
            operate(g, &run, OperatorAction::Override, json.json).await
        }
        RunCommand::Retry { run, json } => operate(g, &run, OperatorAction::Retry, json.json).await,
        RunCommand::Abandon { run, json } => {
            operate(g, &run, OperatorAction::Abandon, json.json).await
        }
    }
}

/// The exit code a driver error maps to.
pub fn runs_failure(e: RunsError) -> Failure {
    let code = if e.is_usage() {
        EXIT_USAGE
    } else if e.is_busy() {
        EXIT_LOCKED
    } else if e.is_engine() {
        EXIT_ENGINE
    } else {
        EXIT_FAILED
    };
    Failure {
        error: anyhow::Error::new(e),
        code,
    }
}

/// A driver for this process: the state directory, this binary, progress
/// lines on stderr.
pub fn driver(g: &Global, progress: bool) -> CmdResult<Driver> {
    let berth_exe = std::env::current_exe()
        .map_err(|e| anyhow!("cannot find the berth binary (current_exe): {e}"))?;
    Ok(Driver {
        state: open_state(g)?,
        berth_exe,
        observer: progress.then(progress_observer),
    })
}

/// Prints a line on stderr whenever a stage starts or finishes.
pub fn progress_observer() -> berth_verify::executor::Observer {
    let seen: Arc<Mutex<Vec<(StageState, u32)>>> = Arc::new(Mutex::new(Vec::new()));
    Arc::new(move |run: &Run| {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() != run.stages.len() {
            *seen = run.stages.iter().map(|s| (s.state, s.attempts)).collect();
            eprintln!("run {} ({}): {} stages", run.id, run.kind, run.stages.len());
            return;
        }
        let total = run.stages.len();
        for (i, s) in run.stages.iter().enumerate() {
            if seen[i] == (s.state, s.attempts) {
                continue;
            }
            seen[i] = (s.state, s.attempts);
            let took = s.duration_ms().map(human_ms).unwrap_or_default();
            match s.state {
                StageState::Running => {
                    let again = if s.attempts > 1 {
                        format!(" (attempt {})", s.attempts)
                    } else {
                        String::new()
                    };
                    eprintln!("→ [{}/{total}] {}{again} …", i + 1, s.name);
                }
                StageState::Passed => {
                    eprintln!(
                        "✓ [{}/{total}] {} ({took}) {}",
                        i + 1,
                        s.name,
                        first_line(&s.summary)
                    );
                }
                StageState::Failed | StageState::Overridden => {
                    eprintln!("✗ [{}/{total}] {} ({took}) {}", i + 1, s.name, s.state);
                    for l in s.summary.lines().filter(|l| !l.contains(": ok, ")) {
                        eprintln!("    {l}");
                    }
                }
                StageState::Pending | StageState::Skipped => {}
            }
        }
    })
}

fn first_line(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    match lines.len() {
        0 => String::new(),
        1 => lines[0].to_string(),
        n => format!("{} (+{} more)", lines[0], n - 1),
    }
}

/// Exit code of a run interrupted by SIGINT/SIGTERM.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Drive `fut` until it ends or the process is asked to stop (SIGINT,
/// SIGTERM). Interrupted, the future is dropped: a verify run's daemon and
/// commands (children of this process) are killed with it, and the run
/// stays where it was (`berth run retry` drives it on).
pub async fn interruptible<T>(
    run: &str,
    fut: impl std::future::Future<Output = CmdResult<T>>,
) -> CmdResult<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return fut.await;
    };
    tokio::select! {
        r = fut => r,
        _ = term.recv() => Err(interrupted(run)),
        _ = int.recv() => Err(interrupted(run)),
    }
}

fn interrupted(run: &str) -> Failure {
    Failure {
        error: anyhow!(
            "interrupted: run {run} stays where it stopped; `berth run retry {run}` drives it on, `berth run abandon {run}` ends it"
        ),
        code: EXIT_INTERRUPTED,
    }
}

/// What to print after a run stopped moving, and its exit code: 0 when
/// every stage passed (or an operator overrode the failures), 1 otherwise.
pub fn conclude(summary: &RunSummary, json: bool) -> CmdResult {
    if json {
        print_json(summary)?;
    } else {
        if let Some(m) = &summary.matrix {
            print_matrix(m);
        }
        let report = summary
            .report_html
            .as_ref()
            .map(|p| format!("; report: {}", p.display()))
            .unwrap_or_default();
        match (summary.state, summary.verdict) {
            (RunState::FailedHolding, _) => {
                let stage = summary.failed_stage.as_deref().unwrap_or("?");
                crate::outln!(
                    "run {} holds on failed stage {stage}{report}\n  resolve it with `berth run override {id}` (continue past it), `berth run retry {id}` or `berth run abandon {id}`",
                    summary.run_id,
                    id = summary.run_id,
                );
            }
            (_, Some(v)) => crate::outln!("run {} {}{report}", summary.run_id, verdict_words(v)),
            (state, None) => crate::outln!("run {} is {state}{report}", summary.run_id),
        }
    }
    Ok(match summary.verdict {
        Some(Verdict::Passed) => 0,
        _ => EXIT_FAILED,
    })
}

fn verdict_words(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "passed",
        Verdict::PassedWithOverrides => "passed with overridden failures",
        Verdict::Failed => "failed",
        Verdict::Abandoned => "was abandoned",
    }
}

/// The scorecard as a table: a mark and passed/total per cell.
pub fn print_matrix(m: &Matrix) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["app".to_string()];
    header.extend(m.cells.iter().cloned());
    t.set_header(header);
    for app in &m.apps {
        let mut row = vec![app.clone()];
        for cell in &m.cells {
            let mark = m.mark(app, cell);
            row.push(match m.cell(app, cell) {
                Some(c) if c.applicable && !c.iterations.is_empty() => {
                    format!("{} {}/{}", mark.symbol(), c.passed(), c.iterations.len())
                }
                _ => mark.symbol().to_string(),
            });
        }
        t.add_row(row);
    }
    crate::outln!("{}\n{t}", m.title);
    crate::outln!(
        "● every iteration passed · ◐ some passed · ○ failed or not run · – not applicable"
    );
}

fn list(g: &Global, limit: Option<usize>, json: bool) -> CmdResult {
    let state = open_state(g)?;
    let runs = runs::list(&state, limit.unwrap_or(RUN_LIST_DEFAULT)).map_err(runs_failure)?;
    if json {
        print_json(&runs)?;
        return Ok(0);
    }
    if runs.is_empty() {
        crate::outln!("no runs yet (start one with `berth vet` or `berth verify`)");
        return Ok(0);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "run", "kind", "state", "verdict", "started", "took", "holds on",
    ]);
    for r in &runs {
        t.add_row([
            r.id.clone(),
            r.kind.clone(),
            r.state.to_string(),
            r.verdict.map_or("-".into(), |v| v.to_string()),
            rfc3339(r.created_ms),
            r.finished_ms
                .map_or("-".into(), |f| human_ms(f.saturating_sub(r.created_ms))),
            r.failed_stage.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    crate::outln!("{t}");
    Ok(0)
}

fn show(g: &Global, id: &str, json: bool) -> CmdResult {
    let state = open_state(g)?;
    let detail = runs::show(&state, id).map_err(runs_failure)?;
    if json {
        print_json(&detail)?;
        return Ok(0);
    }
    let run = &detail.run;
    crate::outln!("run       {} ({})", run.id, run.kind);
    crate::outln!(
        "state     {}{}",
        run.state,
        run.verdict().map(|v| format!(", {v}")).unwrap_or_default()
    );
    crate::outln!("started   {}", rfc3339(run.created_ms));
    if let Some(f) = run.finished_ms {
        crate::outln!(
            "finished  {} (took {})",
            rfc3339(f),
            human_ms(f.saturating_sub(run.created_ms))
        );
    }
    for (k, v) in &run.environment {
        crate::outln!("  {k} = {v}");
    }
    if let Some(m) = &detail.matrix {
        print_matrix(m);
    }
    // A verify run has hundreds of stages: show those that did not pass.
    let many = run.stages.len() > 30;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["stage", "state", "attempts", "took", "summary"]);
    let mut hidden = 0;
    for s in &run.stages {
        if many && s.state == StageState::Passed {
            hidden += 1;
            continue;
        }
        t.add_row([
            s.name.clone(),
            s.state.to_string(),
            s.attempts.to_string(),
            s.duration_ms().map(human_ms).unwrap_or_else(|| "-".into()),
            s.summary.clone(),
        ]);
    }
    if hidden < run.stages.len() {
        crate::outln!("{t}");
    }
    if hidden > 0 {
        crate::outln!("({hidden} passed stages not shown; --json has them all)");
    }
    for e in &run.operator_log {
        crate::outln!(
            "operator: {} at {}{}",
            e.action,
            rfc3339(e.at_ms),
            e.stage
                .as_ref()
                .map(|s| format!(" (stage {s})"))
                .unwrap_or_default()
        );
    }
    if let Some(p) = &detail.report_html {
        crate::outln!("report: {}", p.display());
    }
    if run.state == RunState::FailedHolding {
        crate::outln!(
            "holding: `berth run override {id}`, `berth run retry {id}` or `berth run abandon {id}`",
            id = run.id
        );
    }
    Ok(0)
}

async fn operate(g: &Global, id: &str, action: OperatorAction, json: bool) -> CmdResult {
    let driver = driver(g, !json)?;
    let summary = interruptible(id, async {
        runs::resume(&driver, id, Some(action))
            .await
            .map_err(runs_failure)
    })
    .await?;
    let code = conclude(&summary, json)?;
    Ok(match (action, summary.verdict) {
        // Abandoning is the command's success.
        (OperatorAction::Abandon, Some(Verdict::Abandoned)) => 0,
        // The operator chose to accept the failure.
        (OperatorAction::Override, Some(Verdict::PassedWithOverrides)) => 0,
        _ => code,
    })
}
