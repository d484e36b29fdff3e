//! Uninstall: graceful stop → remove container(s) and companions → remove
//! volumes unless kept → remove secrets → remove the stack network when
//! unused. A partial failure names exactly what remains; running it again
//! finishes the job.

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_core::graph;
use berth_core::model::Stack;
use berth_core::naming;
use berth_store::OpOutcome;
use futures_util::stream::{self, StreamExt};

use crate::install::{Journal, remove_network_if_unused};
use crate::lifecycle::with_companions;
use crate::{Ctx, OpsError, Progress, Result, stackdb};

#[derive(Debug, Clone, Copy, Default)]
pub struct UninstallOptions {
    /// Keep volumes and secrets (a later install finds the data again).
    pub keep_data: bool,
    /// Also uninstall installed apps that depend on these.
    pub cascade: bool,
}

pub(crate) fn op_kind(opts: UninstallOptions) -> &'static str {
    if opts.keep_data {
        "uninstall-keep-data"
    } else {
        "uninstall"
    }
}

pub async fn uninstall(
    ctx: &Arc<Ctx>,
    ids: &BTreeSet<String>,
    opts: UninstallOptions,
) -> Result<()> {
    let stacks = stackdb::installed_stacks(ctx)?;
    let mut errors = Vec::new();
    let mut handled = BTreeSet::new();
    for (stack, _) in stacks.values() {
        let mine: BTreeSet<String> = ids
            .iter()
            .filter(|i| stack.apps.contains_key(*i))
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        handled.extend(mine.iter().cloned());
        let mut set = with_companions(stack, &mine);
        let mut blocking = BTreeSet::new();
        for id in &mine {
            for d in graph::dependents(stack, id) {
                if !set.contains(&d) && stack.apps[&d].companion_of.as_deref() != Some(id.as_str())
                {
                    blocking.insert(d);
                }
            }
        }
        if !blocking.is_empty() {
            if !opts.cascade {
                return Err(OpsError::HasDependents {
                    app: mine.iter().cloned().collect::<Vec<_>>().join(", "),
                    dependents: blocking.into_iter().collect(),
                });
            }
            set.extend(blocking);
            set = with_companions(stack, &set);
        }
        // Stop in reverse dependency order (apps of one tier at once), then
        // remove everything in parallel: removal order does not matter.
        let mut journals: Vec<(String, i64)> = Vec::new();
        for batch in graph::stop_batches(stack, &set) {
            let mut stops = Vec::new();
            for id in batch {
                let op = ctx
                    .store()
                    .begin_op(op_kind(opts), &id, berth_store::now_ms())?;
                journals.push((id.clone(), op));
                stops.push(async move { stop_phase(ctx, stack, &id, op).await });
            }
            let results: Vec<Result<()>> = stream::iter(stops)
                .buffer_unordered(stack.settings.max_parallel.max(1))
                .collect()
                .await;
            errors.extend(results.into_iter().filter_map(|r| r.err()));
        }
        let volumes = if opts.keep_data {
            Ok(Vec::new())
        } else {
            ctx.engine
                .list_volumes((naming::LABEL_STACK, &stack.name))
                .await
                .map_err(|e| e.to_string())
        };
        let mut removals = Vec::new();
        for (id, op) in journals {
            let volumes = &volumes;
            removals.push(async move { remove_phase(ctx, stack, &id, opts, op, volumes).await });
        }
        let results: Vec<Result<()>> = stream::iter(removals)
            .buffer_unordered(stack.settings.max_parallel.max(1))
            .collect()
            .await;
        errors.extend(results.into_iter().filter_map(|r| r.err()));
        if errors.is_empty() {
            finish_stack(ctx, stack, opts, &mut errors).await;
        }
    }
    // Apps not recorded as installed: sweep anything left under their name
    // (an earlier uninstall that removed the record but not everything
    // cannot happen, but containers from a lost state directory can).
    for id in ids.iter().filter(|i| !handled.contains(*i)) {
        let leftovers: Vec<_> = ctx
            .engine
            .list_containers((naming::LABEL_APP, id))
            .await?
            .into_iter()
            .collect();
        if leftovers.is_empty() {
            ctx.reporter.report(Progress::Note {
                message: format!("{id} is not installed; nothing to do"),
            });
            continue;
        }
        for c in leftovers {
            ctx.engine.remove_container(&c.name, true).await?;
        }
        ctx.event(
            Some(id),
            "uninstalled",
            format!("removed leftover containers of {id}"),
        );
    }
    match OpsError::many(errors, ids.len()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Uninstall one app (its record must exist). `resume` continues an
/// interrupted journal instead of starting a new one.
pub(crate) async fn uninstall_one(
    ctx: &Ctx,
    stack: &Stack,
    id: &str,
    opts: UninstallOptions,
    resume: Option<i64>,
) -> Result<()> {
    let op = match resume {
        Some(op) => op,
        None => ctx
            .store()
            .begin_op(op_kind(opts), id, berth_store::now_ms())?,
    };
    stop_phase(ctx, stack, id, op).await?;
    let volumes = if opts.keep_data {
        Ok(Vec::new())
    } else {
        ctx.engine
            .list_volumes((naming::LABEL_APP, id))
            .await
            .map_err(|e| e.to_string())
    };
    remove_phase(ctx, stack, id, opts, op, &volumes).await
}

/// Graceful stop, journaled. A container that cannot be stopped is removed
/// by force in the remove phase.
async fn stop_phase(ctx: &Ctx, stack: &Stack, id: &str, op: i64) -> Result<()> {
    let app = &stack.apps[id];
    let journal = Journal::resume(ctx, op);
    let name = naming::container_name(&stack.name, id);
    ctx.step(id, "stopping");
    let s = journal.intent("stop", &name)?;
    match ctx.engine.stop_container(&name, app.stop_grace).await {
        Ok(()) => journal.done(s, false)?,
        Err(e) if e.is_not_found() => journal.done(s, false)?,
        Err(e) => {
            tracing::warn!(app = id, error = %e, "graceful stop failed; removing by force");
        }
    }
    Ok(())
}

/// Remove the container, the volumes (unless kept) and the secret files,
/// then the app's record. `volumes` is the engine's volume list (of the
/// stack or the app), or why it could not be listed.
async fn remove_phase(
    ctx: &Ctx,
    stack: &Stack,
    id: &str,
    opts: UninstallOptions,
    op: i64,
    volumes: &std::result::Result<Vec<berth_engine::EngineObject>, String>,
) -> Result<()> {
    let app = &stack.apps[id];
    let journal = Journal::resume(ctx, op);
    let name = naming::container_name(&stack.name, id);
    let mut remains = Vec::new();
    ctx.step(id, "removing container");
    let s = journal.intent("remove-container", &name)?;
    match ctx.engine.remove_container(&name, true).await {
        Ok(()) => journal.done(s, false)?,
        Err(e) => remains.push(format!("container {name} ({e})")),
    }

    if !opts.keep_data {
        let mut names: BTreeSet<String> = app
            .volumes
            .iter()
            .map(|v| naming::volume_name(&stack.name, id, &v.name))
            .collect();
        match volumes {
            Ok(list) => names.extend(
                list.iter()
                    .filter(|v| {
                        v.labels.get(naming::LABEL_STACK).map(String::as_str)
                            == Some(stack.name.as_str())
                            && v.labels.get(naming::LABEL_APP).map(String::as_str) == Some(id)
                    })
                    .map(|v| v.name.clone()),
            ),
            Err(e) => remains.push(format!("volumes of {id} (could not list: {e})")),
        }
        for v in names {
            ctx.step(id, "removing volume");
            let s = journal.intent("remove-volume", &v)?;
            match ctx.engine.remove_volume(&v).await {
                Ok(()) => journal.done(s, false)?,
                Err(e) if e.is_not_found() => journal.done(s, false)?,
                Err(e) => remains.push(format!("volume {v} ({e})")),
            }
        }
        let s = journal.intent("remove-secrets", id)?;
        match ctx.state.secrets().remove_app(&stack.name, id) {
            Ok(_) => journal.done(s, false)?,
            Err(e) => remains.push(format!("secret files of {id} ({e})")),
        }
    }

    if remains.is_empty() {
        ctx.store().delete_app(id)?;
        journal.finish(OpOutcome::Succeeded, None)?;
        let how = if opts.keep_data {
            " (volumes and secrets kept)"
        } else {
            ""
        };
        ctx.event(Some(id), "uninstalled", format!("uninstalled {id}{how}"));
        ctx.reporter.report(Progress::Done {
            app: id.into(),
            message: format!("uninstalled{how}"),
        });
        Ok(())
    } else {
        let msg = remains.join(", ");
        journal.finish(OpOutcome::Failed, Some(&msg))?;
        ctx.event(
            Some(id),
            "uninstall-incomplete",
            format!("uninstall of {id} left: {msg}"),
        );
        Err(OpsError::Incomplete {
            app: id.into(),
            remains,
        })
    }
}

/// After the last app of a stack is gone: its network, and (unless data is
/// kept) the stack secrets no remaining app uses.
pub(crate) async fn finish_stack(
    ctx: &Ctx,
    stack: &Stack,
    opts: UninstallOptions,
    errors: &mut Vec<OpsError>,
) {
    let remaining: Vec<_> = match stackdb::installed_stacks(ctx) {
        Ok(s) => s
            .get(&stack.name)
            .map(|(st, _)| st.apps.values().cloned().collect())
            .unwrap_or_default(),
        Err(e) => {
            errors.push(e);
            return;
        }
    };
    if remaining.is_empty()
        && let Err(e) = remove_network_if_unused(ctx, &stack.name, &stack.settings.network).await
    {
        errors.push(OpsError::Incomplete {
            app: stack.name.clone(),
            remains: vec![format!("network {} ({e})", stack.settings.network)],
        });
    }
    if opts.keep_data {
        return;
    }
    let secrets = ctx.state.secrets();
    let used: BTreeSet<String> = remaining
        .iter()
        .flat_map(|a: &berth_core::model::App| a.secrets.iter().cloned())
        .collect();
    match secrets.list_stack_secrets(&stack.name) {
        Ok(names) => {
            for n in names.into_iter().filter(|n| !used.contains(n)) {
                if let Err(e) = secrets.remove_stack_secret(&stack.name, &n) {
                    errors.push(OpsError::Incomplete {
                        app: stack.name.clone(),
                        remains: vec![format!("secret {n} ({e})")],
                    });
                }
            }
        }
        Err(e) => errors.push(e.into()),
    }
}
