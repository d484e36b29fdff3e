//! `berth verify`: the lifecycle matrix of a stack on the real engine, N
//! iterations, on the staged pipeline. berth drives its own binary on a
//! state directory of the run (`<state>/runs/<id>/work/state`) with the
//! stack renamed, so the user's installation is never touched. Exit 0 only
//! when every requested cell passed every iteration.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use berth_verify::runs::{self, new_run_id};
use berth_verify::verify::{DAEMON_TICK_MS_DEFAULT, VERIFY_KIND, work_dir_in};
use berth_verify::{EngineRef, VerifyOptions};

use crate::cli::{Global, VerifyArgs};
use crate::commands::run::{conclude, driver, interruptible, runs_failure};
use crate::context::{CmdResult, EXIT_FAILED, Failure, connect_engine};

pub async fn run(g: &Global, a: VerifyArgs) -> CmdResult {
    let stack = a.stack.unwrap_or_else(|| g.stack.clone());
    let stack = std::fs::canonicalize(&stack)
        .with_context(|| format!("cannot read {}", stack.display()))
        .map_err(Failure::usage)?;
    let wait = berth_core::duration::parse_duration(&a.wait_timeout)
        .map_err(|e| Failure::usage(anyhow!("--wait-timeout {}: {e}", a.wait_timeout)))?;
    if wait < Duration::from_secs(1) {
        return Err(Failure::usage(anyhow!(
            "--wait-timeout must be at least 1s"
        )));
    }
    let driver = driver(g, !a.json)?;
    let engine = connect_engine(g).await?;
    let id = new_run_id(
        VERIFY_KIND,
        berth_verify::Clock::now_ms(&berth_verify::SystemClock),
    );
    let run_dir = driver
        .state
        .run_dir(&id)
        .map_err(|e| Failure::from(anyhow::Error::new(e)))?;
    let opts = VerifyOptions {
        stack_file: stack,
        apps: a
            .apps
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        iterations: a.iterations,
        destructive: a.destructive,
        continue_on_error: a.continue_on_error,
        engine: EngineRef {
            kind: engine.kind(),
            podman_socket: g.podman_socket.clone(),
            docker_socket: g.docker_socket.clone(),
        },
        report_dir: a.report.unwrap_or_else(|| run_dir.clone()),
        work_dir: work_dir_in(&run_dir),
        run_id: id,
        wait_timeout_s: wait.as_secs(),
        daemon_tick_ms: DAEMON_TICK_MS_DEFAULT,
        port_offset: a.port_offset,
        berth_exe: driver.berth_exe.clone(),
        observer: None,
    };
    drop(engine);
    let run_id = opts.run_id.clone();
    let summary = interruptible(&run_id, async {
        runs::start_verify(&driver, opts)
            .await
            .map_err(runs_failure)
    })
    .await?;
    let code = conclude(&summary, a.json)?;
    // The gate: every requested cell passed every iteration.
    let all = summary.matrix.as_ref().is_some_and(|m| m.all_passed());
    Ok(if code == 0 && all { 0 } else { EXIT_FAILED })
}
