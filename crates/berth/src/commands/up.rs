use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::Global;
use crate::context::{CmdResult, Route, daemon, load_stack, replay, route, rpc_call};

/// How long `up` waits for the daemon it started to answer.
pub const DAEMON_START_TIMEOUT_MS: u64 = 15_000;
/// Name of the log of a daemon `up` started, in the state directory.
pub use berth_daemon::logfile::DAEMON_LOG_FILE_NAME;

pub async fn run(g: &Global, stack: Option<PathBuf>, no_daemon: bool) -> CmdResult {
    let path = stack.unwrap_or_else(|| g.stack.clone());
    let stack = load_stack(&path)?;
    let file = std::fs::canonicalize(&path)
        .unwrap_or(path)
        .display()
        .to_string();
    // (app, unchanged, gate reason) of every app, as the summary needs them.
    let (outcomes, via_daemon): (Vec<(String, bool, Option<String>)>, bool) = match route(g).await?
    {
        Route::Daemon(c) => {
            let r = rpc_call(&c, "stack.up", json!({ "stack_file": file })).await?;
            replay(&r["progress"]);
            (outcomes_of(&r["apps"]), true)
        }
        Route::Direct(m) => {
            let summary = berth_ops::up(&m.ctx, &stack, Some(&file)).await?;
            let out = summary
                .apps
                .iter()
                .map(|a| (a.app.clone(), a.action.is_noop(), a.gate.clone()))
                .collect();
            drop(m); // Release the state lock before a daemon takes it.
            (out, false)
        }
    };
    if outcomes.iter().all(|(_, noop, _)| *noop) {
        eprintln!(
            "{}: all {} apps already running, nothing to do",
            stack.name,
            outcomes.len()
        );
    } else {
        let changed = outcomes.iter().filter(|(_, noop, _)| !noop).count();
        eprintln!(
            "{}: {} apps up ({changed} changed)",
            stack.name,
            outcomes.len()
        );
    }
    // Apps left stopped on purpose: said plainly, with the reason.
    for (app, _, gate) in &outcomes {
        if let Some(reason) = gate {
            eprintln!("  {app:<16} not started: {reason}");
        }
    }
    if outcomes.iter().any(|(_, _, g)| g.is_some()) {
        eprintln!(
            "  (the daemon starts them once their nodes are synced; `berth gate status` shows progress)"
        );
    }
    for app in stack.apps.values() {
        if let Some(ui) = &app.web_ui {
            crate::outln!(
                "{:<16} http://127.0.0.1:{}{}",
                app.id,
                ui.host_port,
                ui.path
            );
        }
    }
    if via_daemon {
        eprintln!("{}: supervised by the running berth daemon", stack.name);
    } else if no_daemon {
        eprintln!(
            "{}: not supervised (--no-daemon): crashed apps are not restarted until `berth daemon` runs",
            stack.name
        );
    } else {
        start_daemon(g, &stack.name).await?;
    }
    Ok(0)
}

fn outcomes_of(apps: &Value) -> Vec<(String, bool, Option<String>)> {
    apps.as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["app"].as_str().unwrap_or_default().to_string(),
                a["action"]["action"] == "adopt",
                a["gate"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Start `berth daemon` fully detached: a shell in its own process group
/// starts it in the background and exits, so the daemon is never our child
/// (nor anyone's we wait on), has no terminal, and logs to
/// `<state-dir>/daemon.log`. Then wait until its socket answers.
async fn start_daemon(g: &Global, stack: &str) -> CmdResult<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let state = crate::context::open_state(g)?;
    // Made here, on the user's terminal, so the daemon never has to write
    // the token into its log.
    crate::commands::token::announce(&state, None)?;
    let log = state.root().join(DAEMON_LOG_FILE_NAME);
    let exe = std::env::current_exe().map_err(anyhow::Error::new)?;
    let engine = match g.engine {
        crate::cli::EngineArg::Podman => "podman",
        crate::cli::EngineArg::Docker => "docker",
        crate::cli::EngineArg::Auto => "auto",
    };
    let mut args: Vec<String> = vec![
        exe.display().to_string(),
        "--engine".into(),
        engine.into(),
        "--state-dir".into(),
        state.root().display().to_string(),
    ];
    if let Some(s) = &g.podman_socket {
        args.extend(["--podman-socket".into(), s.display().to_string()]);
    }
    if let Some(s) = &g.docker_socket {
        args.extend(["--docker-socket".into(), s.display().to_string()]);
    }
    args.push("daemon".into());
    let script = r#"log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!"#;
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(&log)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot start `berth daemon`: {e}"))?;
    let pid = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let deadline = Instant::now() + Duration::from_millis(DAEMON_START_TIMEOUT_MS);
    loop {
        if daemon(g).await.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(anyhow::anyhow!(
                "started `berth daemon` (pid {pid}) but it did not answer within {} s; see {}:\n{}",
                DAEMON_START_TIMEOUT_MS / 1000,
                log.display(),
                log_tail(&log)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{stack}: supervised by `berth daemon` (pid {pid}), started detached; it logs to {}.\n\
         To have systemd run it instead (starts at boot, restarts on failure): install \
         dist/berth.service as /etc/systemd/system/berth.service, then \
         `systemctl daemon-reload && systemctl enable --now berth`.",
        log.display()
    );
    Ok(())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
