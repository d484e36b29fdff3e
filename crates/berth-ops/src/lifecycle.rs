//! up, down, start, stop, restart and reinstall.

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_core::graph;
use berth_core::model::Stack;
use berth_core::naming;
use berth_store::Desired;
use futures_util::stream::{self, StreamExt};

use crate::install::{UpSummary, install_apps};
use crate::uninstall::{UninstallOptions, uninstall};
use crate::{Ctx, OpsError, Progress, Result, stackdb};

/// Install and start every app of `stack` in dependency order. Running,
/// unchanged apps are adopted; a second `up` is a no-op.
pub async fn up(ctx: &Arc<Ctx>, stack: &Stack, stack_file: Option<&str>) -> Result<UpSummary> {
    let ids: BTreeSet<String> = stack.apps.keys().cloned().collect();
    ctx.user_acted(&ids)?;
    install_apps(ctx, stack, stack_file, &ids, &BTreeSet::new()).await
}

/// Recreate `ids` (and their companions) from `stack`, keeping volumes.
pub async fn reinstall(
    ctx: &Arc<Ctx>,
    stack: &Stack,
    stack_file: Option<&str>,
    ids: &BTreeSet<String>,
) -> Result<UpSummary> {
    let mut force = BTreeSet::new();
    for id in ids {
        for a in stack.with_companions(id) {
            force.insert(a.id.clone());
        }
    }
    ctx.user_acted(&force)?;
    install_apps(ctx, stack, stack_file, ids, &force).await
}

/// Start installed apps (and the installed apps they depend on). The
/// user's intent is recorded before any engine call.
pub async fn start(ctx: &Arc<Ctx>, ids: &BTreeSet<String>) -> Result<UpSummary> {
    let mut summary = UpSummary::default();
    for (stack, ids) in group_installed(ctx, ids)? {
        let all = with_companions(&stack, &graph::with_dependencies(&stack, &ids));
        let now = berth_store::now_ms();
        for id in &all {
            ctx.store().set_desired(id, Desired::Running, now)?;
        }
        ctx.user_acted(&with_companions(&stack, &ids))?;
        let s = install_apps(ctx, &stack, None, &all, &BTreeSet::new()).await?;
        summary.apps.extend(s.apps);
    }
    Ok(summary)
}

/// Stop installed apps (with their companions) in reverse dependency
/// order, each with its grace period. Recorded as the user's intent, so
/// supervision never restarts them.
pub async fn stop(ctx: &Arc<Ctx>, ids: &BTreeSet<String>) -> Result<()> {
    let mut errors = Vec::new();
    let mut total = 0;
    for (stack, ids) in group_installed(ctx, ids)? {
        let all = with_companions(&stack, &ids);
        total += all.len();
        let now = berth_store::now_ms();
        for id in &all {
            ctx.store().set_desired(id, Desired::Stopped, now)?;
        }
        for batch in graph::stop_batches(&stack, &all) {
            // A loop, not a closure: keeps the future provably `Send`.
            let mut futures = Vec::new();
            for id in batch {
                let ctx = ctx.clone();
                let stack = &stack;
                futures.push(async move { stop_one(&ctx, stack, &id).await });
            }
            let results: Vec<Result<()>> = stream::iter(futures)
                .buffer_unordered(stack.settings.max_parallel.max(1))
                .collect()
                .await;
            errors.extend(results.into_iter().filter_map(|r| r.err()));
        }
    }
    match OpsError::many(errors, total) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn stop_one(ctx: &Ctx, stack: &Stack, id: &str) -> Result<()> {
    let app = &stack.apps[id];
    let name = naming::container_name(&stack.name, id);
    ctx.step(id, "stopping");
    match ctx.engine.stop_container(&name, app.stop_grace).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {
            ctx.reporter.report(Progress::Done {
                app: id.into(),
                message: "no container to stop".into(),
            });
            return Ok(());
        }
        Err(e) => {
            return Err(OpsError::App {
                app: id.into(),
                message: format!("stop failed: {e}"),
            });
        }
    }
    ctx.event(Some(id), "stopped", format!("stopped {id} (by the user)"));
    ctx.reporter.report(Progress::Done {
        app: id.into(),
        message: "stopped".into(),
    });
    Ok(())
}

/// Stop, then start.
pub async fn restart(ctx: &Arc<Ctx>, ids: &BTreeSet<String>) -> Result<UpSummary> {
    stop(ctx, ids).await?;
    start(ctx, ids).await
}

/// Take a whole stack down: uninstall every app, keeping volumes and
/// secrets unless `purge`.
pub async fn down(ctx: &Arc<Ctx>, stack_name: &str, purge: bool) -> Result<()> {
    let stacks = stackdb::installed_stacks(ctx)?;
    let Some((stack, _)) = stacks.get(stack_name) else {
        // Nothing recorded; still sweep containers left by an older run.
        let leftovers = ctx
            .engine
            .list_containers((naming::LABEL_STACK, stack_name))
            .await?;
        for c in leftovers {
            ctx.engine.remove_container(&c.name, true).await?;
        }
        ctx.reporter.report(Progress::Note {
            message: format!("stack {stack_name} is not installed"),
        });
        return Ok(());
    };
    let ids: BTreeSet<String> = stack.apps.keys().cloned().collect();
    uninstall(
        ctx,
        &ids,
        UninstallOptions {
            keep_data: !purge,
            cascade: true,
        },
    )
    .await
}

/// Group ids by the installed stack holding them.
fn group_installed(ctx: &Ctx, ids: &BTreeSet<String>) -> Result<Vec<(Stack, BTreeSet<String>)>> {
    let stacks = stackdb::installed_stacks(ctx)?;
    let mut out: Vec<(Stack, BTreeSet<String>)> = Vec::new();
    for id in ids {
        let Some((stack, _)) = stacks.values().find(|(s, _)| s.apps.contains_key(id)) else {
            return Err(OpsError::UnknownApp {
                id: id.clone(),
                hint: " (it is not installed; use `berth install`)".into(),
            });
        };
        match out.iter_mut().find(|(s, _)| s.name == stack.name) {
            Some((_, set)) => {
                set.insert(id.clone());
            }
            None => out.push((stack.clone(), BTreeSet::from([id.clone()]))),
        }
    }
    Ok(out)
}

pub(crate) fn with_companions(stack: &Stack, ids: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = ids.clone();
    for id in ids {
        for a in stack.with_companions(id) {
            out.insert(a.id.clone());
        }
    }
    out
}
