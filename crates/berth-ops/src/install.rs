//! Bringing apps up: executing an `UpPlan` tier by tier, each container
//! creation journaled step by step and rolled back on failure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use berth_core::classify::EngineStatus;
use berth_core::model::{App, Stack};
use berth_core::naming;
use berth_core::observed::ObservedContainer;
use berth_core::plan::{self, ContainerAction, JournalStep, Undo, UpPlan};
use berth_core::spec::ContainerSpec;
use berth_engine::EngineError;
use berth_probe::health::{self, Target, WaitFailure};
use berth_store::{Desired, OpOutcome};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

use crate::{Ctx, ERROR_LOG_LINES, OpsError, Progress, Result, crash_point, gates, stackdb};

/// What happened to each app of an up/install.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpSummary {
    pub apps: Vec<AppOutcome>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppOutcome {
    pub app: String,
    pub action: ContainerAction,
    /// Set when the container was left stopped on purpose: `held: waiting
    /// for bitcoind (syncing 43%, 812345/850000)`, `rejected: …`, or
    /// waiting for a dependency its gate holds. The daemon starts it later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
}

impl UpSummary {
    pub fn is_noop(&self) -> bool {
        self.apps.iter().all(|a| a.action.is_noop())
    }

    /// Apps left stopped by their gate, with the reason.
    pub fn held(&self) -> impl Iterator<Item = (&str, &str)> {
        self.apps
            .iter()
            .filter_map(|a| Some((a.app.as_str(), a.gate.as_deref()?)))
    }
}

/// The containers of a stack by app id (one engine list call).
pub async fn observe_stack(ctx: &Ctx, stack: &str) -> Result<BTreeMap<String, ObservedContainer>> {
    let list = ctx
        .engine
        .list_containers((naming::LABEL_STACK, stack))
        .await?;
    // Only the container under the app's own name is the app's: an
    // update's kept container carries the same labels under another name.
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let app = c.app()?.to_string();
            (c.name == naming::container_name(stack, &app)).then_some((app, c))
        })
        .collect())
}

/// The effective spec of an app, as it will be created.
pub fn spec_for(ctx: &Ctx, stack: &Stack, app: &App) -> ContainerSpec {
    let dir = ctx.state.secrets().app_dir(&stack.name, &app.id);
    ContainerSpec::for_app(stack, app, Some(&dir.to_string_lossy()))
}

/// `install_apps` on the user's behalf: the restart history of the named
/// apps (and their companions) is forgotten first, lifting a crash-loop
/// quarantine.
pub async fn install(
    ctx: &Arc<Ctx>,
    stack: &Stack,
    stack_file: Option<&str>,
    ids: &BTreeSet<String>,
) -> Result<UpSummary> {
    ctx.user_acted(&crate::lifecycle::with_companions(stack, ids))?;
    install_apps(ctx, stack, stack_file, ids, &BTreeSet::new()).await
}

/// Bring one installed app up again for supervision: create its missing
/// container (volumes kept), or start it, exactly as an install would —
/// journaled, waited for, rolled back on failure — but without touching
/// its dependencies or companions (supervision decides about those on its
/// own, and never starts an app the user stopped). No gate check: the
/// daemon's gate planner already decided (a release or readmission comes
/// through here, and supervision never brings up an app a gate keeps
/// stopped).
pub async fn bring_up_app(
    ctx: &Arc<Ctx>,
    stack: &Stack,
    stack_file: Option<&str>,
    id: &str,
) -> Result<UpSummary> {
    let Some(app) = stack.apps.get(id) else {
        return Err(OpsError::UnknownApp {
            id: id.to_string(),
            hint: format!(" (stack {} does not have it)", stack.name),
        });
    };
    let observed = observe_stack(ctx, &stack.name).await?;
    let spec = spec_for(ctx, stack, app);
    let action = plan::decide_container(&spec.hash(), observed.get(id));
    let up = UpPlan {
        batches: vec![vec![plan::AppStep {
            app: id.to_string(),
            action,
        }]],
    };
    let specs = BTreeMap::from([(id.to_string(), spec)]);
    execute_up(ctx, stack, stack_file, &up, &specs, &observed, false).await
}

/// Install (and start) `ids` of `stack` with their dependencies and
/// companions. Unchanged running containers are adopted, stopped ones
/// started, changed ones recreated with their volumes kept.
/// `force_recreate` names apps to recreate even when unchanged (reinstall).
///
/// An app whose gate is not latched has its required nodes probed once
/// before its start: synced → started and latched; otherwise its container
/// is created but left stopped with the reason (`held: waiting for …`), as
/// are apps depending on it. An app the daemon rejected stays stopped.
pub async fn install_apps(
    ctx: &Arc<Ctx>,
    stack: &Stack,
    stack_file: Option<&str>,
    ids: &BTreeSet<String>,
    force_recreate: &BTreeSet<String>,
) -> Result<UpSummary> {
    for id in ids {
        if !stack.apps.contains_key(id) {
            return Err(OpsError::UnknownApp {
                id: id.clone(),
                hint: format!(
                    " (stack {} has: {})",
                    stack.name,
                    stack.apps.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    let observed = observe_stack(ctx, &stack.name).await?;
    let specs: BTreeMap<String, ContainerSpec> = stack
        .apps
        .values()
        .map(|a| (a.id.clone(), spec_for(ctx, stack, a)))
        .collect();
    let hashes: BTreeMap<String, String> =
        specs.iter().map(|(k, s)| (k.clone(), s.hash())).collect();
    let mut up = plan::plan_up(stack, ids, &hashes, &observed);
    for step in up.batches.iter_mut().flatten() {
        if force_recreate.contains(&step.app) && observed.contains_key(&step.app) {
            step.action = ContainerAction::Recreate {
                reason: "reinstall requested".into(),
            };
        }
    }
    execute_up(ctx, stack, stack_file, &up, &specs, &observed, true).await
}

/// `gates`: ask each app's gate before starting it (see `install_apps`).
async fn execute_up(
    ctx: &Arc<Ctx>,
    stack: &Stack,
    stack_file: Option<&str>,
    up: &UpPlan,
    specs: &BTreeMap<String, ContainerSpec>,
    observed: &BTreeMap<String, ObservedContainer>,
    gates: bool,
) -> Result<UpSummary> {
    let total = up.steps().count();
    let mut summary = UpSummary::default();
    // Records the store already has, so a no-op up writes nothing.
    let known: BTreeMap<String, berth_store::AppRecord> = ctx
        .store()
        .list_apps()?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let needs_engine_objects = up
        .steps()
        .any(|s| !matches!(s.action, ContainerAction::Adopt | ContainerAction::Start));
    let existing_volumes: BTreeSet<String> = if needs_engine_objects
        && up.steps().any(|s| {
            stack
                .apps
                .get(&s.app)
                .is_some_and(|a| !a.volumes.is_empty())
        }) {
        ctx.engine
            .list_volumes((naming::LABEL_STACK, &stack.name))
            .await?
            .into_iter()
            .map(|v| v.name)
            .collect()
    } else {
        BTreeSet::new()
    };
    // Containers of the stack are attached to its network, so it exists:
    // no need to ask the engine again.
    let network_ready = Arc::new(if observed.is_empty() {
        tokio::sync::OnceCell::new()
    } else {
        tokio::sync::OnceCell::new_with(Some(()))
    });
    let mut failed: BTreeSet<String> = BTreeSet::new();
    // Apps left stopped by their gate: what depends on them waits too.
    let mut held: BTreeSet<String> = BTreeSet::new();
    let mut errors = Vec::new();
    for batch in &up.batches {
        let runnable: Vec<_> = batch
            .iter()
            .filter(|s| {
                let app = &stack.apps[&s.app];
                let blocked = app.depends_on.keys().any(|d| failed.contains(d));
                if blocked {
                    ctx.reporter.report(Progress::Failed {
                        app: s.app.clone(),
                        message: "not started: a dependency failed".into(),
                    });
                }
                !blocked
            })
            .collect();
        for s in batch {
            if !runnable.iter().any(|r| r.app == s.app) {
                failed.insert(s.app.clone());
            }
        }
        // Futures built in a loop, not by a closure, so the whole future
        // stays provably `Send` (rust-lang/rust#110338): the daemon runs it
        // in a spawned task.
        let mut futures = Vec::new();
        for s in runnable {
            let ctx = ctx.clone();
            let app = &stack.apps[&s.app];
            let spec = &specs[&s.app];
            let obs = observed.get(&s.app);
            let known = known.get(&s.app);
            let existing_volumes = &existing_volumes;
            let network_ready = network_ready.clone();
            let gate = if !gates {
                Gating::Off
            } else {
                let waits: Vec<&str> = app
                    .depends_on
                    .keys()
                    .filter(|d| held.contains(*d))
                    .map(String::as_str)
                    .collect();
                Gating::Ask((!waits.is_empty()).then(|| {
                    format!(
                        "waiting for {} (kept stopped by its gate)",
                        waits.join(", ")
                    )
                }))
            };
            futures.push(async move {
                let r = bring_up(
                    &ctx,
                    stack,
                    stack_file,
                    app,
                    spec,
                    &s.action,
                    obs,
                    known,
                    existing_volumes,
                    &network_ready,
                    gate,
                )
                .await;
                (s.app.clone(), s.action.clone(), r)
            });
        }
        let results: Vec<(String, ContainerAction, Result<Option<String>>)> = stream::iter(futures)
            .buffer_unordered(stack.settings.max_parallel.max(1))
            .collect()
            .await;
        for (app, action, r) in results {
            match r {
                Ok(gate) => {
                    if gate.is_some() {
                        held.insert(app.clone());
                    }
                    summary.apps.push(AppOutcome { app, action, gate })
                }
                Err(e) => {
                    ctx.reporter.report(Progress::Failed {
                        app: app.clone(),
                        message: e.to_string(),
                    });
                    failed.insert(app);
                    errors.push(e);
                }
            }
        }
        if !errors.is_empty() {
            // Later tiers depend on this one; stop here.
            break;
        }
    }
    match OpsError::many(errors, total) {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// How an operation treats an app's gate.
enum Gating {
    /// Supervision's own bring-up: the daemon's gate planner decided.
    Off,
    /// Ask the app's gate (`gates::check`) before starting it. `Some`: a
    /// dependency is kept stopped by its gate, so the app is not started
    /// either (its own gate's reason, when closed, is the one given).
    Ask(Option<String>),
}

#[allow(clippy::too_many_arguments)]
async fn bring_up(
    ctx: &Arc<Ctx>,
    stack: &Stack,
    stack_file: Option<&str>,
    app: &App,
    spec: &ContainerSpec,
    action: &ContainerAction,
    observed: Option<&ObservedContainer>,
    known: Option<&berth_store::AppRecord>,
    existing_volumes: &BTreeSet<String>,
    network_ready: &tokio::sync::OnceCell<()>,
    gating: Gating,
) -> Result<Option<String>> {
    let record_needed = known
        .is_none_or(|k| k.app != *app || k.desired != Desired::Running || k.stack != stack.name);
    let running = observed.is_some_and(|o| o.status == EngineStatus::Running);
    // Asked before anything is created, so a held app's container is
    // created stopped (and `held` is said once, before the work).
    let (check, own_gate) = match gating {
        Gating::Off => (gates::Check::Open, false),
        Gating::Ask(dependency) => {
            if app.gate.is_some() {
                ctx.step(&app.id, "asking its gate");
            }
            match (gates::check(ctx, stack, app, running).await?, dependency) {
                (closed @ gates::Check::Closed { .. }, _) => (closed, true),
                (_, Some(reason)) => (gates::Check::Closed { reason }, false),
                (open, None) => (open, true),
            }
        }
    };
    let hold = match &check {
        gates::Check::Closed { reason } => Some(reason.clone()),
        _ => None,
    };
    let put_record = |ctx: &Ctx| -> Result<()> {
        let installed_at = known.map(|k| k.installed_at_ms);
        ctx.store().put_app(&stackdb::record_for(
            stack,
            app,
            stack_file,
            Desired::Running,
            installed_at,
        ))?;
        Ok(())
    };
    match action {
        ContainerAction::Adopt => {
            if record_needed {
                put_record(ctx)?;
                ctx.event(
                    Some(&app.id),
                    "adopted",
                    format!("adopted {}: running container with unchanged spec", app.id),
                );
            }
            if let (Some(reason), true) = (&hold, own_gate) {
                // Started behind the gate's back: stopped again.
                ctx.step(&app.id, "stopping (its gate keeps it stopped)");
                ctx.engine
                    .stop_container(&spec.name, app.stop_grace)
                    .await
                    .or_else(ignore_missing)?;
                ctx.reporter.report(Progress::Done {
                    app: app.id.clone(),
                    message: format!("stopped: {reason}"),
                });
                return Ok(hold);
            }
            ctx.reporter.report(Progress::Done {
                app: app.id.clone(),
                message: "running (unchanged)".into(),
            });
            Ok(None)
        }
        ContainerAction::Start => {
            if let Some(reason) = &hold {
                if record_needed {
                    put_record(ctx)?;
                }
                ctx.reporter.report(Progress::Done {
                    app: app.id.clone(),
                    message: format!("not started: {reason}"),
                });
                return Ok(hold);
            }
            ctx.step(&app.id, "starting");
            let name = &spec.name;
            if let Some(o) = observed
                && matches!(o.status, EngineStatus::Exited | EngineStatus::Created)
            {
                ctx.engine.start_container(name).await?;
            }
            if let Err(e) = wait_ready(ctx, stack, app, spec).await {
                let (exit_code, logs) = evidence(ctx, name).await;
                let mut message = format!("start failed: {e}");
                if let Some(code) = exit_code {
                    message.push_str(&format!(" (exit code {code})"));
                }
                for l in logs {
                    message.push_str("\n    | ");
                    message.push_str(&l);
                }
                ctx.event(
                    Some(&app.id),
                    "start-failed",
                    format!("start of {} failed: {e}", app.id),
                );
                return Err(OpsError::App {
                    app: app.id.clone(),
                    message,
                });
            }
            put_record(ctx)?;
            if check == gates::Check::Release {
                gates::latch(ctx, &app.id)?;
            }
            ctx.event(Some(&app.id), "started", format!("started {}", app.id));
            ctx.reporter.report(Progress::Done {
                app: app.id.clone(),
                message: "started".into(),
            });
            Ok(None)
        }
        ContainerAction::Create | ContainerAction::Recreate { .. } => {
            let kind = match action {
                ContainerAction::Create if known.is_none() => "install",
                ContainerAction::Recreate { .. } => plan::OP_UPDATE,
                _ => "reinstall",
            };
            let installed_at = known.map(|k| k.installed_at_ms);
            create_journaled(
                ctx,
                stack,
                stack_file,
                app,
                spec,
                kind,
                action,
                existing_volumes,
                network_ready,
                installed_at,
                hold.as_deref(),
            )
            .await?;
            if check == gates::Check::Release {
                gates::latch(ctx, &app.id)?;
            }
            Ok(hold)
        }
    }
}

/// A journal for one operation: each step is recorded before it runs.
pub(crate) struct Journal<'a> {
    ctx: &'a Ctx,
    pub op: i64,
}

impl<'a> Journal<'a> {
    pub(crate) fn begin(ctx: &'a Ctx, kind: &str, app: &str) -> Result<Journal<'a>> {
        let op = ctx.store().begin_op(kind, app, berth_store::now_ms())?;
        Ok(Journal { ctx, op })
    }

    pub(crate) fn resume(ctx: &'a Ctx, op: i64) -> Journal<'a> {
        Journal { ctx, op }
    }

    pub(crate) fn intent(&self, kind: &str, resource: &str) -> Result<(i64, String)> {
        let id = self
            .ctx
            .store()
            .record_step(self.op, kind, resource, berth_store::now_ms())?;
        crash_point(kind, "intent");
        Ok((id, kind.to_string()))
    }

    pub(crate) fn done(&self, step: (i64, String), created: bool) -> Result<()> {
        self.ctx
            .store()
            .complete_step(step.0, created, berth_store::now_ms())?;
        crash_point(&step.1, "done");
        Ok(())
    }

    /// An update's commit point: the new record and the commit step in one
    /// transaction (see `berth_core::plan::STEP_COMMIT`).
    pub(crate) fn commit(
        &self,
        rec: &berth_store::AppRecord,
        revision: &berth_store::NewRevision<'_>,
    ) -> Result<()> {
        self.ctx.store().commit_update(
            self.op,
            plan::STEP_COMMIT,
            rec,
            revision,
            berth_store::now_ms(),
        )?;
        crash_point(plan::STEP_COMMIT, "done");
        Ok(())
    }

    pub(crate) fn finish(&self, outcome: OpOutcome, error: Option<&str>) -> Result<()> {
        self.ctx
            .store()
            .finish_op(self.op, outcome, error, berth_store::now_ms())?;
        Ok(())
    }

    pub(crate) fn steps(&self) -> Result<Vec<JournalStep>> {
        let op = self.ctx.store().op(self.op)?;
        Ok(op
            .map(|o| {
                o.steps
                    .into_iter()
                    .map(|s| JournalStep {
                        id: s.id,
                        kind: s.kind,
                        resource: s.resource,
                        done: s.state == "done",
                        created: s.created,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[allow(clippy::too_many_arguments)]
async fn create_journaled(
    ctx: &Arc<Ctx>,
    stack: &Stack,
    stack_file: Option<&str>,
    app: &App,
    spec: &ContainerSpec,
    kind: &str,
    action: &ContainerAction,
    existing_volumes: &BTreeSet<String>,
    network_ready: &tokio::sync::OnceCell<()>,
    installed_at: Option<i64>,
    hold: Option<&str>,
) -> Result<()> {
    let journal = Journal::begin(ctx, kind, &app.id)?;
    // A marker step naming the stack, so recovery knows it even when the
    // app was never recorded as installed.
    let marker = journal.intent("stack", &stack.name)?;
    journal.done(marker, false)?;
    let result = create_steps(
        ctx,
        stack,
        app,
        spec,
        action,
        existing_volumes,
        network_ready,
        &journal,
        hold.is_none(),
    )
    .await;
    match result {
        Ok(()) => {
            let rec = stackdb::record_for(stack, app, stack_file, Desired::Running, installed_at);
            let image_id = image_id_of(ctx, &spec.name).await;
            let hash = spec.hash();
            let revision = |outcome| berth_store::NewRevision {
                outcome,
                manifest: app,
                image_id: image_id.as_deref(),
                spec_hash: &hash,
                error: None,
            };
            if kind == plan::OP_UPDATE {
                journal.commit(&rec, &revision(berth_store::RevisionOutcome::Updated))?;
                remove_kept(ctx, &app.id, &spec.name, &journal).await?;
            } else {
                ctx.store().put_app(&rec)?;
                if kind == "install" {
                    ctx.store().add_revision(
                        &app.id,
                        &revision(berth_store::RevisionOutcome::Installed),
                        berth_store::now_ms(),
                    )?;
                }
            }
            journal.finish(OpOutcome::Succeeded, None)?;
            let mut what = match action {
                ContainerAction::Recreate { reason } => format!("updated {}: {reason}", app.id),
                _ => format!("installed {}", app.id),
            };
            if let Some(reason) = hold {
                what.push_str(&format!("; not started: {reason}"));
            }
            ctx.event(
                Some(&app.id),
                match kind {
                    "install" => "installed",
                    plan::OP_UPDATE => "updated",
                    _ => "recreated",
                },
                what.clone(),
            );
            ctx.reporter.report(Progress::Done {
                app: app.id.clone(),
                message: what,
            });
            Ok(())
        }
        Err(failure) => {
            // Gather evidence before the rollback removes the container.
            let (exit_code, logs) = evidence(ctx, &spec.name).await;
            let remains = rollback(ctx, &journal).await;
            let redactor =
                berth_store::Redactor::new(ctx.state.secrets().all_values().unwrap_or_default());
            let reason = redactor.redact(&failure.to_string());
            if kind == plan::OP_UPDATE {
                ctx.store().add_revision(
                    &app.id,
                    &berth_store::NewRevision {
                        outcome: berth_store::RevisionOutcome::UpdateFailed,
                        manifest: app,
                        image_id: None,
                        spec_hash: &spec.hash(),
                        error: Some(&reason),
                    },
                    berth_store::now_ms(),
                )?;
                let mut message = format!("update of {} failed: {reason}", app.id);
                if let Some(code) = exit_code {
                    message.push_str(&format!(" (new container exit code {code})"));
                }
                if remains.is_empty() {
                    message.push_str("; the previous version is back");
                } else {
                    // The journal stays unfinished: the next berth command
                    // (or daemon start) retries the rollback first.
                    message.push_str(&format!("; rollback incomplete: {}", remains.join(", ")));
                }
                ctx.event(Some(&app.id), "update-failed", message);
            } else {
                ctx.event(
                    Some(&app.id),
                    "install-failed",
                    format!("{kind} of {} failed and was rolled back: {reason}", app.id),
                );
            }
            if remains.is_empty() || kind != plan::OP_UPDATE {
                journal.finish(OpOutcome::RolledBack, Some(&reason))?;
            }
            Err(OpsError::Install {
                app: app.id.clone(),
                reason,
                exit_code,
                logs,
            })
        }
    }
}

/// Longest time between two looks of an update's healthy hold.
const HOLD_LOOK_INTERVAL_MS: u64 = 500;

/// Why a step failed, before it is wrapped with the evidence.
#[derive(Debug, thiserror::Error)]
enum StepFailure {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error("{0}")]
    Other(String),
}

#[allow(clippy::too_many_arguments)]
async fn create_steps(
    ctx: &Arc<Ctx>,
    stack: &Stack,
    app: &App,
    spec: &ContainerSpec,
    action: &ContainerAction,
    existing_volumes: &BTreeSet<String>,
    network_ready: &tokio::sync::OnceCell<()>,
    journal: &Journal<'_>,
    start: bool,
) -> Result<(), StepFailure> {
    if let ContainerAction::Recreate { .. } = action {
        // The new image first, while the old version keeps running: a
        // pull that fails changes nothing.
        ensure_image(ctx, app, journal).await?;
        keep_old(ctx, app, &spec.name, journal).await?;
    }

    network_ready
        .get_or_try_init(|| async {
            let labels = stack_labels(&stack.name);
            let s = journal.intent("network", &stack.settings.network)?;
            let created = ctx
                .engine
                .ensure_network(&stack.settings.network, &labels)
                .await?;
            journal.done(s, created)?;
            Ok::<(), StepFailure>(())
        })
        .await?;

    for v in &spec.volumes {
        if existing_volumes.contains(&v.volume) {
            continue;
        }
        ctx.step(&app.id, "creating volume");
        let mut labels = stack_labels(&stack.name);
        labels.insert(naming::LABEL_APP.into(), app.id.clone());
        let s = journal.intent("volume", &v.volume)?;
        let created = ctx.engine.ensure_volume(&v.volume, &labels).await?;
        journal.done(s, created)?;
    }

    if !app.secrets.is_empty() {
        let secrets = ctx.state.secrets();
        // One step per stack secret value this install generates, so a
        // rollback removes exactly those and never a value that was there
        // before (kept by `uninstall --keep-data`, shared with another app).
        let present: BTreeSet<String> = secrets
            .list_stack_secrets(&stack.name)
            .map_err(OpsError::from)?
            .into_iter()
            .collect();
        let wanted: BTreeSet<&String> = app.secrets.iter().collect();
        for name in wanted.into_iter().filter(|n| !present.contains(*n)) {
            let s = journal.intent("secret", name)?;
            let generated = secrets.ensure(&stack.name, name).map_err(OpsError::from)?;
            journal.done(s, generated)?;
        }
        let existed = secrets.app_dir(&stack.name, &app.id).exists();
        let s = journal.intent(
            if existed {
                "secrets-existing"
            } else {
                "secrets"
            },
            &app.id,
        )?;
        secrets
            .materialize(&stack.name, &app.id, &app.secrets)
            .map_err(OpsError::from)?;
        journal.done(s, !existed)?;
    }

    ctx.step(&app.id, "creating container");
    let s = journal.intent("container", &spec.name)?;
    // Create first and pull only when the engine lacks the image: one call
    // fewer for the common case of a local image.
    match ctx.engine.create_container(spec).await {
        Err(EngineError::NotFound { what }) if what.starts_with("image") => {
            ensure_image(ctx, app, journal).await?;
            ctx.engine.create_container(spec).await?;
        }
        other => {
            other?;
        }
    }
    journal.done(s, true)?;
    if !start {
        // Kept stopped by a gate: created, ready for the daemon to start.
        return Ok(());
    }

    ctx.step(&app.id, "starting");
    let s = journal.intent("start", &spec.name)?;
    ctx.engine.start_container(&spec.name).await?;
    journal.done(s, false)?;

    let s = journal.intent("wait", &spec.name)?;
    if let ContainerAction::Recreate { .. } = action {
        // An update: the new version gets the app's update window, and one
        // passing probe is not enough (issue 12).
        let started = Instant::now();
        wait_ready_within(ctx, stack, app, spec, app.update.window).await?;
        hold_healthy(ctx, stack, app, spec, started).await?;
    } else {
        wait_ready(ctx, stack, app, spec).await?;
    }
    journal.done(s, false)?;
    Ok(())
}

/// After an updated container's first healthy result: it must stay running
/// and healthy for the app's `min_healthy` (within its update window), else
/// the update fails and reverts. `berth_core::update::judge_hold` decides.
async fn hold_healthy(
    ctx: &Ctx,
    stack: &Stack,
    app: &App,
    spec: &ContainerSpec,
    started: Instant,
) -> Result<(), StepFailure> {
    use berth_core::update::{HoldLook, HoldVerdict, judge_hold};
    if app.update.min_healthy.is_zero() {
        return Ok(());
    }
    ctx.step(
        &app.id,
        &format!(
            "checking it stays healthy for {}",
            berth_core::duration::format_duration(app.update.min_healthy)
        ),
    );
    let healthy_at = Instant::now();
    let target = Target {
        container: &spec.name,
        network: &stack.settings.network,
    };
    let longest = std::time::Duration::from_millis(HOLD_LOOK_INTERVAL_MS);
    let cadence = app
        .health
        .as_ref()
        .map_or(longest, |c| c.interval.min(longest));
    let retries = app.health.as_ref().map_or(1, |c| c.retries);
    let mut failures = 0;
    let mut last_detail = String::new();
    loop {
        let running = is_running(ctx, &spec.name).await?;
        if running && let Some(check) = &app.health {
            let outcome = health::probe_once(ctx.engine.as_ref(), &target, check).await;
            if outcome.ok {
                failures = 0;
            } else {
                failures += 1;
                last_detail = outcome.detail;
            }
        }
        let look = HoldLook {
            since_start: started.elapsed(),
            since_healthy: healthy_at.elapsed(),
            running,
            failures,
        };
        match judge_hold(look, &app.update, retries) {
            HoldVerdict::Passed => return Ok(()),
            HoldVerdict::Failed(mut reason) => {
                if failures > 0 && !last_detail.is_empty() {
                    reason.push_str(&format!(": {last_detail}"));
                }
                return Err(StepFailure::Other(reason));
            }
            HoldVerdict::Watch => tokio::time::sleep(cadence).await,
        }
    }
}

/// An update's step 3: stop the old container and keep it, renamed, until
/// the new one has proved itself (never remove it yet: a new version that
/// fails must find the old one to go back to).
async fn keep_old(
    ctx: &Ctx,
    app: &App,
    name: &str,
    journal: &Journal<'_>,
) -> Result<(), StepFailure> {
    let Some(old) = ctx.engine.inspect_container(name).await? else {
        // Vanished meanwhile: there is nothing to keep.
        return Ok(());
    };
    let kept = naming::kept_container_name(name);
    // A kept container can only be left over by an update that committed
    // but could not remove it (the app's own container exists): stale.
    ctx.engine.remove_container(&kept, true).await?;
    let kind = if old.status == EngineStatus::Running {
        plan::STEP_KEEP_RUNNING
    } else {
        plan::STEP_KEEP_STOPPED
    };
    ctx.step(
        &app.id,
        "stopping the old version (kept until the new one runs)",
    );
    let s = journal.intent(kind, name)?;
    ctx.engine
        .stop_container(name, app.stop_grace)
        .await
        .or_else(ignore_missing)?;
    ctx.engine.rename_container(name, &kept).await?;
    journal.done(s, false)?;
    Ok(())
}

/// The id of the image the container runs, for its revision. Best effort:
/// a revision without it is still a revision.
async fn image_id_of(ctx: &Ctx, name: &str) -> Option<String> {
    ctx.engine.container_image_id(name).await.ok().flatten()
}

/// After an update's commit: the kept old container goes. A failure here
/// is reported, not fatal: the update stands, and the next update or the
/// uninstall removes the leftover.
async fn remove_kept(ctx: &Ctx, app: &str, name: &str, journal: &Journal<'_>) -> Result<()> {
    let kept = naming::kept_container_name(name);
    let s = journal.intent("remove-kept", &kept)?;
    match ctx.engine.remove_container(&kept, true).await {
        Ok(()) => journal.done(s, false)?,
        Err(e) => ctx.event(
            Some(app),
            "update-cleanup-failed",
            format!("updated {app}, but the previous container {kept} could not be removed: {e}"),
        ),
    }
    Ok(())
}

/// Put the container an update kept back under its own name `name`
/// (removing the new one, if any, first) and start it again when it was
/// running. When nothing was kept (berth died before the rename), the
/// old container still has its name: it is only started again.
pub(crate) async fn restore_kept(ctx: &Ctx, name: &str, start: bool) -> Result<(), EngineError> {
    let kept = naming::kept_container_name(name);
    if ctx.engine.inspect_container(&kept).await?.is_some() {
        ctx.engine.remove_container(name, true).await?;
        ctx.engine.rename_container(&kept, name).await?;
    }
    if start
        && let Some(c) = ctx.engine.inspect_container(name).await?
        && c.status != EngineStatus::Running
    {
        ctx.engine.start_container(name).await?;
    }
    Ok(())
}

fn ignore_missing(e: EngineError) -> Result<(), EngineError> {
    if e.is_not_found() { Ok(()) } else { Err(e) }
}

pub(crate) fn stack_labels(stack: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (naming::LABEL_MANAGED.to_string(), "true".to_string()),
        (naming::LABEL_STACK.to_string(), stack.to_string()),
    ])
}

async fn ensure_image(ctx: &Ctx, app: &App, journal: &Journal<'_>) -> Result<(), StepFailure> {
    if ctx.engine.image_exists(&app.image).await? {
        return Ok(());
    }
    let _permit = ctx
        .pull_permit()
        .acquire()
        .await
        .map_err(|e| StepFailure::Other(e.to_string()))?;
    let s = journal.intent("pull", &app.image)?;
    let policy = &ctx.pull_policy;
    let mut last = None;
    for attempt in 1..=policy.attempts.max(1) {
        ctx.step(
            &app.id,
            &format!(
                "pulling {} (attempt {attempt}/{})",
                app.image, policy.attempts
            ),
        );
        let reporter = ctx.reporter.clone();
        let id = app.id.clone();
        let progress = move |p| {
            reporter.report(Progress::Pull {
                app: id.clone(),
                progress: p,
            })
        };
        match ctx.engine.pull_image(&app.image, &progress).await {
            Ok(()) => {
                journal.done(s, false)?;
                return Ok(());
            }
            Err(e) => {
                ctx.event(
                    Some(&app.id),
                    "pull-failed",
                    format!(
                        "pull of {} failed (attempt {attempt}/{}): {e}",
                        app.image, policy.attempts
                    ),
                );
                last = Some(e);
                if attempt < policy.attempts {
                    let idx = (attempt as usize - 1).min(policy.backoff.len().saturating_sub(1));
                    let wait = policy.backoff.get(idx).copied().unwrap_or_default();
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    let e = last.expect("at least one attempt ran");
    Err(StepFailure::Other(format!(
        "image {} could not be pulled after {} attempts: {e}",
        app.image, policy.attempts
    )))
}

/// Wait until the container runs and, when it has a health check, is healthy.
async fn wait_ready(
    ctx: &Ctx,
    stack: &Stack,
    app: &App,
    spec: &ContainerSpec,
) -> Result<(), StepFailure> {
    wait_ready_within(ctx, stack, app, spec, stack.settings.start_timeout).await
}

async fn wait_ready_within(
    ctx: &Ctx,
    stack: &Stack,
    app: &App,
    spec: &ContainerSpec,
    timeout: std::time::Duration,
) -> Result<(), StepFailure> {
    let started = Instant::now();
    // `Instant + Duration` panics on overflow; the manifest bounds the
    // timeout, and a deadline that cannot be represented is no deadline.
    let deadline = started.checked_add(timeout).unwrap_or_else(|| {
        started + std::time::Duration::from_secs(berth_core::manifest::START_TIMEOUT_S_MAX)
    });
    if !is_running(ctx, &spec.name).await? {
        return Err(StepFailure::Other(
            "container exited right after start".into(),
        ));
    }
    let Some(check) = &app.health else {
        // Without a health check, "started" means it kept running for the
        // stack's settle window: an app that crashes on start fails here.
        // The engine restarts nothing (restart policy `no`), so one look
        // after the window sees any exit inside it.
        if stack.settings.settle.is_zero() {
            return Ok(());
        }
        tokio::time::sleep_until(started + stack.settings.settle).await;
        if !is_running(ctx, &spec.name).await? {
            return Err(StepFailure::Other(format!(
                "container exited within {} of its start",
                berth_core::duration::format_duration(stack.settings.settle)
            )));
        }
        return Ok(());
    };
    ctx.step(&app.id, "waiting for health check");
    let target = Target {
        container: &spec.name,
        network: &stack.settings.network,
    };
    let engine = ctx.engine.clone();
    let name = spec.name.clone();
    let r = health::wait_healthy(ctx.engine.as_ref(), &target, check, deadline, || {
        let engine = engine.clone();
        let name = name.clone();
        async move {
            matches!(engine.inspect_container(&name).await, Ok(Some(c)) if c.status == EngineStatus::Running)
        }
    })
    .await;
    match r {
        Ok(_) => Ok(()),
        Err(WaitFailure::NotRunning) => Err(StepFailure::Other(
            "container exited while waiting for its health check".into(),
        )),
        Err(WaitFailure::Unhealthy { detail, failures }) => Err(StepFailure::Other(format!(
            "health check failed {failures} times in a row: {detail}"
        ))),
        Err(WaitFailure::Timeout { detail }) => Err(StepFailure::Other(format!(
            "not healthy within {}: {detail}",
            berth_core::duration::format_duration(timeout)
        ))),
    }
}

async fn is_running(ctx: &Ctx, name: &str) -> Result<bool, EngineError> {
    Ok(
        matches!(ctx.engine.inspect_container(name).await?, Some(c) if c.status == EngineStatus::Running),
    )
}

/// Exit code and last log lines of a container, best effort.
pub(crate) async fn evidence(ctx: &Ctx, name: &str) -> (Option<i64>, Vec<String>) {
    let exit_code = match ctx.engine.inspect_container(name).await {
        Ok(Some(c)) if c.status != EngineStatus::Running => c.exit_code,
        _ => None,
    };
    let logs = ctx
        .engine
        .logs(name, ERROR_LOG_LINES)
        .await
        .unwrap_or_default();
    let redactor = berth_store::Redactor::new(ctx.state.secrets().all_values().unwrap_or_default());
    let logs = logs.into_iter().map(|l| redactor.redact(&l)).collect();
    (exit_code, logs)
}

/// Remove stack secret `name` that a rolled-back install generated, unless
/// an installed app of the stack declares it or another app's secret
/// mounts hold a copy (an install of the same stack in flight uses it).
fn remove_stack_secret_if_unused(
    ctx: &Ctx,
    stack: &str,
    name: &str,
) -> std::result::Result<(), String> {
    let installed_use = stackdb::installed_stacks(ctx)
        .map_err(|e| e.to_string())?
        .get(stack)
        .is_some_and(|(st, _)| {
            st.apps
                .values()
                .any(|a| a.secrets.iter().any(|s| s == name))
        });
    let mounts = ctx
        .state
        .root()
        .join(berth_store::SECRET_MOUNTS_DIR_NAME)
        .join(stack);
    let copied = std::fs::read_dir(&mounts)
        .map(|rd| rd.flatten().any(|e| e.path().join(name).exists()))
        .unwrap_or(false);
    if installed_use || copied {
        return Ok(());
    }
    ctx.state
        .secrets()
        .remove_stack_secret(stack, name)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Undo what a journal created, in reverse. Best effort per step; what
/// could not be undone is returned (and stays in the journal).
pub(crate) async fn rollback(ctx: &Ctx, journal: &Journal<'_>) -> Vec<String> {
    let steps = match journal.steps() {
        Ok(s) => s,
        Err(e) => return vec![format!("journal unreadable: {e}")],
    };
    let stack = steps
        .iter()
        .find(|s| s.kind == "stack")
        .map(|s| s.resource.clone());
    let mut remains = Vec::new();
    for undo in plan::plan_rollback(&steps) {
        let (step, what, r) = match &undo {
            Undo::RemoveContainer { name, step } => (
                *step,
                format!("container {name}"),
                ctx.engine
                    .remove_container(name, true)
                    .await
                    .map_err(|e| e.to_string()),
            ),
            Undo::RemoveVolume { name, step } => (
                *step,
                format!("volume {name}"),
                ctx.engine
                    .remove_volume(name)
                    .await
                    .or_else(ignore_missing)
                    .map_err(|e| e.to_string()),
            ),
            Undo::RemoveNetworkIfUnused { name, step } => {
                let r = match &stack {
                    Some(st) => remove_network_if_unused(ctx, st, name).await,
                    None => Ok(()),
                };
                (*step, format!("network {name}"), r)
            }
            Undo::RemoveSecrets { app, step } => {
                let r = match &stack {
                    Some(st) => ctx
                        .state
                        .secrets()
                        .remove_app(st, app)
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    None => Ok(()),
                };
                (*step, format!("secrets of {app}"), r)
            }
            Undo::RemoveStackSecret { name, step } => {
                let r = match &stack {
                    Some(st) => remove_stack_secret_if_unused(ctx, st, name),
                    None => Ok(()),
                };
                (*step, format!("secret {name}"), r)
            }
            Undo::RestoreKept { name, step, start } => (
                *step,
                format!("previous container of {name}"),
                restore_kept(ctx, name, *start)
                    .await
                    .map_err(|e| e.to_string()),
            ),
        };
        match r {
            Ok(()) => {
                let _ = ctx.store().mark_step_undone(step, berth_store::now_ms());
            }
            Err(e) => remains.push(format!("{what} ({e})")),
        }
    }
    remains
}

/// Remove a stack's network when no container of the stack is left.
pub(crate) async fn remove_network_if_unused(
    ctx: &Ctx,
    stack: &str,
    network: &str,
) -> Result<(), String> {
    let users = ctx
        .engine
        .list_containers((naming::LABEL_STACK, stack))
        .await
        .map_err(|e| e.to_string())?;
    if !users.is_empty() {
        return Ok(());
    }
    ctx.engine
        .remove_network(network)
        .await
        .or_else(ignore_missing)
        .map_err(|e| e.to_string())
}
