//! The lifecycle cells. Each takes every app of the run through one step of
//! the lifecycle with the real berth binary and checks the outcome on the
//! real engine, waiting on readiness signals (inspect, status, an HTTP
//! answer, the daemon's own status) with timeouts — no sleep-and-hope.
//!
//! A cell returns one result per app, in the run's app order. A failure
//! carries its evidence (logs, the engine's view, berth's status and
//! events), which the executor redacts before writing it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_core::classify::EngineStatus;
use berth_core::model::RestartPolicy;
use berth_core::naming;
use berth_probe::health::Target;
use serde_json::Value;

use super::Cell;
use super::daemon::StopSignal;
use super::harness::Harness;
use crate::executor::ArtifactOut;

/// Every journal step of an install at which berth is killed: as intent
/// (killed during the engine call) and as done (killed right after it).
pub const CRASH_POINTS: &[&str] = &[
    "stack:done",
    "network",
    "network:done",
    "volume",
    "volume:done",
    "secret",
    "secret:done",
    "secrets",
    "secrets:done",
    "container",
    "container:done",
    "start",
    "start:done",
    "wait",
    "wait:done",
];

/// The file the reinstall cell writes into an app's first volume.
pub const MARKER_FILE_NAME: &str = ".berth-verify-marker";
/// Bound on one HTTP request of the UI cell.
const UI_REQUEST_TIMEOUT_S: u64 = 5;

/// What one app's iteration of a cell came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    Pass(String),
    Fail(String),
    NotApplicable(String),
}

#[derive(Debug)]
pub(crate) struct AppResult {
    pub app: String,
    pub outcome: Outcome,
    pub ms: u64,
    pub artifacts: Vec<ArtifactOut>,
}

/// Whether `cell` runs with the run's daemon up. The destructive cells
/// that kill the daemon or an app need it; killing berth mid-install is
/// done in direct mode (the hook aborts the CLI process). The other cells
/// run in direct mode, unless the stack has chain gates: only a daemon
/// releases a held app, so a gated stack is exercised the way it runs.
fn with_daemon(h: &Harness, cell: Cell) -> bool {
    match cell {
        Cell::DaemonRestart | Cell::CrashRestart => true,
        Cell::KilledMidInstall => false,
        _ => h.gated(),
    }
}

/// Run `cell` for every app of the run.
pub(crate) async fn run(h: &Harness, cell: Cell, iteration: u32) -> Vec<AppResult> {
    if with_daemon(h, cell) {
        if let Err(e) = h.ensure_daemon().await {
            return all_fail(h, &format!("cannot start the daemon: {e}"));
        }
    } else {
        direct_mode(h).await;
    }
    let mut results = match cell {
        Cell::Installed => installed(h).await,
        Cell::State => per_app(h, false, |app| state(h, app)).await,
        Cell::Probe => per_app(h, false, |app| probe(h, app)).await,
        Cell::Ui => per_app(h, false, |app| ui(h, app)).await,
        Cell::Stop => per_app(h, true, |app| stop(h, app)).await,
        Cell::Start => per_app(h, false, |app| start(h, app)).await,
        Cell::Restart => per_app(h, false, |app| restart(h, app)).await,
        Cell::Reinstall => per_app(h, false, |app| reinstall(h, app, iteration)).await,
        Cell::DaemonRestart => daemon_restart(h).await,
        Cell::CrashRestart => per_app(h, false, |app| crash_restart(h, app)).await,
        Cell::KilledMidInstall => killed_mid_install(h).await,
        Cell::Uninstall => uninstall(h).await,
    };
    for r in &mut results {
        if matches!(r.outcome, Outcome::Fail(_)) && r.artifacts.is_empty() {
            r.artifacts = h.evidence(&r.app).await;
        }
    }
    results
}

/// Talk to berth in direct mode (no daemon).
async fn direct_mode(h: &Harness) {
    if let Err(e) = h.stop_daemon(StopSignal::Term).await {
        tracing::warn!(error = %e, "stopping the verify daemon");
    }
}

fn all_fail(h: &Harness, why: &str) -> Vec<AppResult> {
    h.params
        .apps
        .iter()
        .map(|app| AppResult {
            app: app.clone(),
            outcome: Outcome::Fail(why.to_string()),
            ms: 0,
            artifacts: Vec::new(),
        })
        .collect()
}

/// Run `f` for each app (in start order, or reversed), timing each.
async fn per_app<'a, F, Fut>(h: &'a Harness, reverse: bool, mut f: F) -> Vec<AppResult>
where
    F: FnMut(&'a str) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let mut apps: Vec<&'a str> = h.params.apps.iter().map(String::as_str).collect();
    if reverse {
        apps.reverse();
    }
    let mut out = Vec::new();
    for app in apps {
        let started = Instant::now();
        let outcome = f(app).await;
        out.push(AppResult {
            app: app.to_string(),
            outcome,
            ms: started.elapsed().as_millis() as u64,
            artifacts: Vec::new(),
        });
    }
    in_run_order(h, out)
}

/// Results ordered like the run's apps.
fn in_run_order(h: &Harness, mut results: Vec<AppResult>) -> Vec<AppResult> {
    let pos = |a: &str| {
        h.params
            .apps
            .iter()
            .position(|x| x == a)
            .unwrap_or(usize::MAX)
    };
    results.sort_by_key(|r| pos(&r.app));
    results
}

fn secs(ms: u64) -> String {
    crate::report::human_ms(ms)
}

// ── state checks ───────────────────────────────────────────────────────

/// The status entry of app `id`.
fn entry<'v>(status: &'v Value, id: &str) -> Option<&'v Value> {
    status["apps"]
        .as_array()?
        .iter()
        .find(|a| a["id"].as_str() == Some(id))
}

/// Whether berth says a chain gate keeps the app stopped on purpose:
/// held until its node is synced, or rejected while the node is down
/// (`status --json`: `gate.status` is `held` or `rejected`).
fn held_by_gate(e: &Value) -> bool {
    matches!(e["gate"]["status"].as_str(), Some("held" | "rejected"))
}

/// `Some(description)` when app `id` is in a valid state: running and
/// healthy (or without a health check), or held by its gate on purpose.
fn valid_state(status: &Value, id: &str) -> Result<Option<String>, String> {
    let Some(e) = entry(status, id) else {
        return Err(format!("{id} is not installed"));
    };
    let state = e["observed"]["state"].as_str().unwrap_or("");
    let health = e["health"].as_str();
    if state == "running" && matches!(health, None | Some("healthy")) {
        return Ok(Some(match health {
            Some(h) => format!("running, {h}"),
            None => "running".into(),
        }));
    }
    if held_by_gate(e) {
        return Ok(Some(format!(
            "held by its gate: {}",
            e["summary"].as_str().unwrap_or("")
        )));
    }
    Err(format!(
        "{id} is {}",
        e["summary"].as_str().unwrap_or(state)
    ))
}

/// Wait until the app and its companions are in a valid state.
async fn wait_valid(h: &Harness, app: &str) -> Result<String, String> {
    let ids: Vec<String> = h.members(app).iter().map(|m| m.id.clone()).collect();
    h.wait_for(
        &format!("{app} to run (healthy) or be held by its gate"),
        h.wait_timeout(),
        || async {
            let status = h.status().await?;
            let mut seen = Vec::new();
            for id in &ids {
                match valid_state(&status, id)? {
                    Some(s) => seen.push(s),
                    None => return Ok(None),
                }
            }
            Ok(Some(seen.join("; ")))
        },
    )
    .await
}

/// Wait until the app and its companions run and are healthy: a cell that
/// needs a running container first waits for a gate holding the app to
/// release it (the daemon does, once the node is synced).
async fn wait_running(h: &Harness, app: &str) -> Result<String, String> {
    let ids: Vec<String> = h.members(app).iter().map(|m| m.id.clone()).collect();
    h.wait_for(
        &format!("{app} to run and be healthy (released by its gate, if it has one)"),
        h.wait_timeout(),
        || async {
            let status = h.status().await?;
            let mut seen = Vec::new();
            for id in &ids {
                let e = entry(&status, id).ok_or_else(|| format!("{id} is not installed"))?;
                match valid_state(&status, id)? {
                    Some(s) if e["observed"]["state"] == "running" => seen.push(s),
                    _ => {
                        return Err(format!(
                            "{id} is {}",
                            e["summary"].as_str().unwrap_or("not running")
                        ));
                    }
                }
            }
            Ok(Some(seen.join("; ")))
        },
    )
    .await
}

fn ok_or(out: &super::harness::CmdOut, what: &str) -> Result<(), String> {
    if out.ok() {
        Ok(())
    } else {
        Err(format!("`berth {what}` failed ({})", out.why()))
    }
}

fn outcome(r: Result<String, String>) -> Outcome {
    match r {
        Ok(s) => Outcome::Pass(s),
        Err(e) => Outcome::Fail(e),
    }
}

// ── cells ──────────────────────────────────────────────────────────────

/// Container present after install.
async fn installed(h: &Harness) -> Vec<AppResult> {
    per_app(h, false, |app| async move {
        outcome(
            async {
                let out = h.berth(&["install", app], &[], h.op_timeout()).await;
                h.refresh_secrets();
                ok_or(&out, &format!("install {app}"))?;
                for m in h.members(app) {
                    if h.inspect(&m.id).await?.is_none() {
                        return Err(format!(
                            "container {} is missing after the install",
                            h.container(&m.id)
                        ));
                    }
                }
                Ok(format!("installed in {}", secs(out.ms)))
            }
            .await,
        )
    })
    .await
}

/// Running and healthy, or intentionally held by a gate.
async fn state(h: &Harness, app: &str) -> Outcome {
    outcome(wait_valid(h, app).await)
}

/// The app's chain probe (and its companions') reaches the node.
async fn probe(h: &Harness, app: &str) -> Outcome {
    let probed: Vec<_> = h
        .members(app)
        .into_iter()
        .filter_map(|m| m.probe.as_ref().map(|p| (m, p)))
        .collect();
    if probed.is_empty() {
        return Outcome::NotApplicable("no probe".into());
    }
    let mut seen = Vec::new();
    for (m, spec) in probed {
        let name = h.container(&m.id);
        let network = h.stack.settings.network.clone();
        let password = match &spec.kind {
            berth_core::model::ProbeKind::Bitcoind {
                password_secret: Some(s),
                ..
            } => Some(
                h.state_dir
                    .join(berth_store::SECRETS_DIR_NAME)
                    .join(&h.stack.name)
                    .join(s),
            ),
            _ => None,
        };
        let r = h
            .wait_for(
                &format!("the {} probe of {} to answer", spec.kind.name(), m.id),
                h.wait_timeout(),
                || async {
                    let target = Target {
                        container: &name,
                        network: &network,
                    };
                    let s = berth_probe::chain::probe_container(
                        h.engine.as_ref(),
                        &target,
                        spec,
                        password.as_deref(),
                    )
                    .await;
                    if s.reachable {
                        Ok(Some(s.detail))
                    } else {
                        Err(s.detail)
                    }
                },
            )
            .await;
        match r {
            Ok(detail) => seen.push(format!("{}: {detail}", m.id)),
            Err(e) => return Outcome::Fail(e),
        }
    }
    Outcome::Pass(seen.join("; "))
}

/// Each declared web UI answers 200 with a non-empty body.
async fn ui(h: &Harness, app: &str) -> Outcome {
    let uis: Vec<(String, String)> = h
        .members(app)
        .into_iter()
        .filter_map(|m| {
            m.web_ui.as_ref().map(|w| {
                (
                    m.id.clone(),
                    format!("http://127.0.0.1:{}{}", w.host_port, w.path),
                )
            })
        })
        .collect();
    if uis.is_empty() {
        return Outcome::NotApplicable("no web UI".into());
    }
    let mut seen = Vec::new();
    for (id, url) in uis {
        let r = h
            .wait_for(
                &format!("{url} ({id}) to answer 200 with a body"),
                h.wait_timeout(),
                || async {
                    let resp = berth_probe::http::request(
                        "GET",
                        &url,
                        None,
                        None,
                        Duration::from_secs(UI_REQUEST_TIMEOUT_S),
                    )
                    .await?;
                    if resp.status == 200 && !resp.body.is_empty() {
                        Ok(Some(resp.body.len()))
                    } else {
                        Err(format!(
                            "HTTP {} with {} bytes",
                            resp.status,
                            resp.body.len()
                        ))
                    }
                },
            )
            .await;
        match r {
            Ok(n) => seen.push(format!("{url}: 200, {n} bytes")),
            Err(e) => return Outcome::Fail(e),
        }
    }
    Outcome::Pass(seen.join("; "))
}

/// Stopped on purpose: no container runs, berth says stopped.
async fn stop(h: &Harness, app: &str) -> Outcome {
    outcome(
        async {
            let out = h.berth(&["stop", app], &[], h.op_timeout()).await;
            ok_or(&out, &format!("stop {app}"))?;
            for m in h.members(app) {
                if h.running(&m.id).await? {
                    return Err(format!("{} still runs after stop", h.container(&m.id)));
                }
            }
            let status = h.status().await?;
            let e = entry(&status, app).ok_or_else(|| format!("{app} vanished from status"))?;
            let state = e["observed"]["state"].as_str().unwrap_or("");
            if state != "stopped" || e["desired"].as_str() != Some("stopped") {
                return Err(format!(
                    "status says {} (wanted {}), expected stopped on purpose",
                    e["summary"].as_str().unwrap_or(state),
                    e["desired"]
                ));
            }
            Ok(format!("stopped in {}", secs(out.ms)))
        }
        .await,
    )
}

async fn start(h: &Harness, app: &str) -> Outcome {
    outcome(
        async {
            let out = h.berth(&["start", app], &[], h.op_timeout()).await;
            ok_or(&out, &format!("start {app}"))?;
            let s = wait_valid(h, app).await?;
            Ok(format!("started in {}: {s}", secs(out.ms)))
        }
        .await,
    )
}

async fn started_at(h: &Harness, id: &str) -> Result<Option<String>, String> {
    Ok(h.inspect(id).await?.and_then(|c| c.started_at))
}

/// Restarted: a new start time, then a valid state.
async fn restart(h: &Harness, app: &str) -> Outcome {
    outcome(
        async {
            wait_running(h, app).await?;
            let before = started_at(h, app).await?;
            let out = h.berth(&["restart", app], &[], h.op_timeout()).await;
            ok_or(&out, &format!("restart {app}"))?;
            let s = wait_running(h, app).await?;
            let after = started_at(h, app).await?;
            if after.is_none() || after == before {
                return Err(format!(
                    "the start time of {} did not change ({before:?} → {after:?})",
                    h.container(app)
                ));
            }
            Ok(format!("restarted in {}: {s}", secs(out.ms)))
        }
        .await,
    )
}

async fn exec(h: &Harness, id: &str, script: &str) -> Result<String, String> {
    let name = h.container(id);
    let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let out = h
        .call(
            &format!("exec in {name}"),
            h.engine.exec(&name, &argv, Duration::from_secs(30)),
        )
        .await?;
    if out.exit_code != 0 {
        return Err(format!(
            "`sh -c {script:?}` in {name} exited {}: {}",
            out.exit_code,
            out.output.trim()
        ));
    }
    Ok(out.output)
}

/// Recreated with its volumes: a marker written into the first volume
/// before the reinstall is read back from the new container.
async fn reinstall(h: &Harness, app: &str, iteration: u32) -> Outcome {
    let Some(volume) = h.stack.apps[app].volumes.first().cloned() else {
        return Outcome::NotApplicable("no volume".into());
    };
    outcome(
        async {
            let marker = format!("{}/{MARKER_FILE_NAME}", volume.path.trim_end_matches('/'));
            let token = format!("berth-verify {} iteration {iteration} {app}", h.stack.name);
            wait_running(h, app).await?;
            exec(h, app, &format!("printf '%s' '{token}' > {marker}")).await?;
            let before = h
                .inspect(app)
                .await?
                .ok_or_else(|| format!("{} is missing", h.container(app)))?
                .id;
            let out = h.berth(&["reinstall", app], &[], h.op_timeout()).await;
            ok_or(&out, &format!("reinstall {app}"))?;
            let s = wait_running(h, app).await?;
            let after = h
                .inspect(app)
                .await?
                .ok_or_else(|| format!("{} is missing after the reinstall", h.container(app)))?
                .id;
            if after == before {
                return Err(format!("{} was not recreated (same id)", h.container(app)));
            }
            let read = exec(h, app, &format!("cat {marker}")).await?;
            if read.trim() != token {
                return Err(format!(
                    "the marker in volume {} reads {:?} after the reinstall, expected {token:?}",
                    volume.name,
                    read.trim()
                ));
            }
            exec(h, app, &format!("rm -f {marker}")).await?;
            Ok(format!(
                "recreated in {}, data kept in volume {}: {s}",
                secs(out.ms),
                volume.name
            ))
        }
        .await,
    )
}

/// Start times of every container of the run's apps.
async fn start_times(h: &Harness) -> Result<BTreeMap<String, (bool, Option<String>)>, String> {
    let mut out = BTreeMap::new();
    for app in &h.params.apps {
        for m in h.members(app) {
            let c = h.inspect(&m.id).await?;
            out.insert(
                m.id.clone(),
                (
                    c.as_ref()
                        .is_some_and(|c| c.status == EngineStatus::Running),
                    c.and_then(|c| c.started_at),
                ),
            );
        }
    }
    Ok(out)
}

/// The daemon stopped (SIGTERM, then SIGKILL) and started again: every
/// container keeps running with the same start time.
async fn daemon_restart(h: &Harness) -> Vec<AppResult> {
    let started = Instant::now();
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut global: Vec<String> = Vec::new();
    let before = async {
        h.ensure_daemon().await?;
        for app in &h.params.apps {
            wait_running(h, app).await?;
        }
        start_times(h).await
    }
    .await;
    match before {
        Err(e) => global.push(format!("before the restarts: {e}")),
        Ok(before) => {
            for (id, (running, _)) in &before {
                if !running {
                    problems
                        .entry(id.clone())
                        .or_default()
                        .push("not running before the daemon restart".into());
                }
            }
            for signal in [StopSignal::Term, StopSignal::Kill] {
                match h.stop_daemon(signal).await {
                    Ok(code) if signal == StopSignal::Term && code != Some(0) => global.push(
                        format!("the daemon exited {code:?} after SIGTERM, expected 0"),
                    ),
                    Ok(_) => {}
                    Err(e) => global.push(e),
                }
                for phase in ["with the daemon gone", "after the daemon came back"] {
                    if phase.starts_with("after")
                        && let Err(e) = h.ensure_daemon().await
                    {
                        global.push(format!(
                            "restarting the daemon after {}: {e}",
                            signal.name()
                        ));
                        continue;
                    }
                    match start_times(h).await {
                        Err(e) => global.push(e),
                        Ok(now) => {
                            for (id, (running, at)) in &now {
                                let (_, was) = &before[id];
                                if !running || at != was {
                                    problems.entry(id.clone()).or_default().push(format!(
                                        "{} {phase}: running {running}, start time {was:?} → {at:?}",
                                        signal.name()
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let ms = started.elapsed().as_millis() as u64;
    h.params
        .apps
        .iter()
        .map(|app| {
            let mut why: Vec<String> = global.clone();
            for m in h.members(app) {
                why.extend(problems.get(&m.id).cloned().unwrap_or_default());
            }
            AppResult {
                app: app.clone(),
                outcome: if why.is_empty() {
                    Outcome::Pass(
                        "SIGTERM and SIGKILL of the daemon: kept running, start time unchanged"
                            .into(),
                    )
                } else {
                    Outcome::Fail(why.join("; "))
                },
                ms,
                artifacts: Vec::new(),
            }
        })
        .collect()
}

/// The container's main process killed behind berth's back: supervision
/// starts it again (new start time) and it comes back valid.
async fn crash_restart(h: &Harness, app: &str) -> Outcome {
    if h.stack.apps[app].restart == RestartPolicy::No {
        return Outcome::NotApplicable("restart = \"no\"".into());
    }
    outcome(
        async {
            wait_running(h, app).await?;
            let name = h.container(app);
            let before = h
                .inspect(app)
                .await?
                .filter(|c| c.status == EngineStatus::Running)
                .ok_or_else(|| format!("{name} is not running before the crash"))?
                .started_at;
            let killed = Instant::now();
            // Podman 4.3 may answer the kill only ~20 s later when the
            // container was started again meanwhile (the signal itself is
            // delivered at once). So the restart is awaited alongside the
            // call: a failed call fails the cell, a slow one does not.
            let kill_what = format!("kill {name}");
            let wait_what = format!("supervision to start {name} again");
            let kill = h.call(&kill_what, h.engine.kill_container(&name, "KILL"));
            let restarted = h.wait_for(&wait_what, h.wait_timeout(), || async {
                let c = h.inspect(app).await?;
                Ok(
                    c.filter(|c| c.status == EngineStatus::Running && c.started_at != before)
                        .map(|_| ()),
                )
            });
            tokio::pin!(kill, restarted);
            let mut kill_answered = false;
            loop {
                tokio::select! {
                    r = &mut kill, if !kill_answered => {
                        r?;
                        kill_answered = true;
                    }
                    w = &mut restarted => {
                        w?;
                        break;
                    }
                }
            }
            let back = killed.elapsed().as_millis() as u64;
            let s = wait_running(h, app).await?;
            Ok(format!(
                "killed (SIGKILL), started again by supervision after {}: {s}",
                secs(back)
            ))
        }
        .await,
    )
}

/// berth killed at every journal step of an install (direct mode, the
/// `BERTH_CRASH_AFTER_STEP` hook); `berth recover` leaves nothing orphaned;
/// the install then completes.
async fn killed_mid_install(h: &Harness) -> Vec<AppResult> {
    // Start from none of the run's apps installed (dependents first).
    let mut args = vec!["uninstall", "--cascade"];
    args.extend(h.params.apps.iter().rev().map(String::as_str));
    let out = h.berth(&args, &[], h.op_timeout()).await;
    if let Err(e) = ok_or(&out, "uninstall --cascade …") {
        return all_fail(h, &format!("preparing: {e}"));
    }
    match h.orphans().await {
        Ok(o) if o.is_empty() => {}
        Ok(o) => return all_fail(h, &format!("preparing: uninstall left {}", o.join(", "))),
        Err(e) => return all_fail(h, &format!("preparing: {e}")),
    }
    per_app(h, false, |app| async move {
        outcome(
            async {
                let mut killed = Vec::new();
                let mut not_reached = Vec::new();
                for point in CRASH_POINTS {
                    let out = h
                        .berth(
                            &["install", app],
                            &[("BERTH_CRASH_AFTER_STEP", point)],
                            h.op_timeout(),
                        )
                        .await;
                    h.refresh_secrets();
                    if out.stderr.contains("crash injected") {
                        killed.push(*point);
                        let rec = h
                            .berth(&["recover", "--json"], &[], h.op_timeout())
                            .await;
                        ok_or(&rec, "recover").map_err(|e| format!("after a kill at {point}: {e}"))?;
                    } else if out.ok() {
                        // This app's install has no such step (no volume,
                        // no secret, the network already there).
                        not_reached.push(*point);
                        let un = h.berth(&["uninstall", app], &[], h.op_timeout()).await;
                        ok_or(&un, &format!("uninstall {app}"))
                            .map_err(|e| format!("after step {point} was not reached: {e}"))?;
                    } else {
                        return Err(format!(
                            "the install to be killed at {point} failed instead: {}",
                            out.why()
                        ));
                    }
                    let orphans = h.orphans().await?;
                    if !orphans.is_empty() {
                        return Err(format!("killed at {point}: orphaned {}", orphans.join(", ")));
                    }
                    if h.installed()?.contains(app) {
                        return Err(format!("killed at {point}: {app} is still recorded as installed"));
                    }
                }
                if killed.is_empty() {
                    return Err("no journal step was reached: the crash hook did nothing".into());
                }
                let out = h.berth(&["install", app], &[], h.op_timeout()).await;
                h.refresh_secrets();
                ok_or(&out, &format!("install {app}")).map_err(|e| format!("after the kills: {e}"))?;
                let s = wait_valid(h, app).await?;
                let skipped = if not_reached.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; not on this install's path: {}",
                        not_reached.join(", ")
                    )
                };
                Ok(format!(
                    "killed at {} steps, recovered with nothing orphaned each time{skipped}; then installed: {s}",
                    killed.len()
                ))
            }
            .await,
        )
    })
    .await
}

/// Uninstall leaves nothing: no container, volume or secret mount of the
/// app, no store row; once the stack is empty, no network and no secret.
async fn uninstall(h: &Harness) -> Vec<AppResult> {
    let mut results = per_app(h, true, |app| async move {
        outcome(
            async {
                let out = h.berth(&["uninstall", app], &[], h.op_timeout()).await;
                ok_or(&out, &format!("uninstall {app}"))?;
                let mut left = Vec::new();
                let installed = h.installed()?;
                for m in h.members(app) {
                    if h.inspect(&m.id).await?.is_some() {
                        left.push(format!("container {}", h.container(&m.id)));
                    }
                    let vols = h
                        .call(
                            "list volumes",
                            h.engine.list_volumes((naming::LABEL_APP, m.id.as_str())),
                        )
                        .await?;
                    for v in vols {
                        if v.labels.get(naming::LABEL_STACK) == Some(&h.stack.name) {
                            left.push(format!("volume {}", v.name));
                        }
                    }
                    let mounts = h
                        .state_dir
                        .join(berth_store::SECRET_MOUNTS_DIR_NAME)
                        .join(&h.stack.name)
                        .join(&m.id);
                    if mounts.exists() {
                        left.push(format!("secret mounts {}", mounts.display()));
                    }
                    if installed.contains(&m.id) {
                        left.push(format!("store row of {}", m.id));
                    }
                }
                if !left.is_empty() {
                    return Err(format!("uninstall left {}", left.join(", ")));
                }
                Ok(format!("uninstalled in {}, nothing left", secs(out.ms)))
            }
            .await,
        )
    })
    .await;
    // Once nothing of the stack is installed, nothing of it may remain.
    let stack_check = async {
        if !h.installed()?.is_empty() {
            return Ok(None);
        }
        let o = h.orphans().await?;
        Ok::<_, String>(Some(o))
    }
    .await;
    // The last app uninstalled is the first in start order.
    if let Some(last) = results.first_mut() {
        match stack_check {
            Ok(Some(o)) if !o.is_empty() => {
                last.outcome =
                    Outcome::Fail(format!("the stack is empty but {} remain", o.join(", ")));
            }
            Ok(Some(_)) => {
                if let Outcome::Pass(s) = &mut last.outcome {
                    s.push_str("; stack empty: no network, no secret left");
                }
            }
            Ok(None) => {}
            Err(e) => last.outcome = Outcome::Fail(e),
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_states_are_running_and_healthy_or_held() {
        let status = json!({"apps": [
            {"id": "a", "observed": {"state": "running"}, "health": "healthy", "summary": "running"},
            {"id": "b", "observed": {"state": "running"}, "health": null, "summary": "running"},
            {"id": "c", "observed": {"state": "starting"}, "health": "starting", "summary": "starting"},
            {"id": "d", "observed": {"state": "created"}, "health": null, "summary": "held: waiting for bitcoind (syncing 43%)",
             "gate": {"status": "held", "reason": "held: waiting for bitcoind (syncing 43%)", "badges": [], "latched": false, "rejected": false}},
            {"id": "g", "observed": {"state": "stopped"}, "health": null, "summary": "stopped",
             "gate": {"status": "released", "reason": null, "badges": [], "latched": true, "rejected": false}},
            {"id": "e", "observed": {"state": "stopped"}, "health": null, "summary": "stopped (by the user)"},
            {"id": "f", "observed": {"state": "running"}, "health": "unhealthy", "summary": "unhealthy"},
        ]});
        assert_eq!(
            valid_state(&status, "a").unwrap().unwrap(),
            "running, healthy"
        );
        assert_eq!(valid_state(&status, "b").unwrap().unwrap(), "running");
        assert!(valid_state(&status, "c").is_err());
        assert!(
            valid_state(&status, "d")
                .unwrap()
                .unwrap()
                .starts_with("held by its gate")
        );
        assert_eq!(
            valid_state(&status, "e").unwrap_err(),
            "e is stopped (by the user)"
        );
        assert!(valid_state(&status, "f").is_err());
        assert!(
            valid_state(&status, "g").is_err(),
            "released and stopped is not valid"
        );
        assert_eq!(
            valid_state(&status, "zz").unwrap_err(),
            "zz is not installed"
        );
    }

    #[test]
    fn the_crash_points_cover_every_install_step_twice() {
        assert_eq!(CRASH_POINTS.len(), 15);
        for kind in [
            "network",
            "volume",
            "secret",
            "secrets",
            "container",
            "start",
            "wait",
        ] {
            assert!(CRASH_POINTS.contains(&kind));
            assert!(CRASH_POINTS.contains(&format!("{kind}:done").as_str()));
        }
    }
}
