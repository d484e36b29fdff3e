//! Recovery of operations interrupted by a crash: an install is rolled
//! back, an uninstall or reinstall is finished.

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_core::naming;
use berth_core::plan::{self, Recovery, recovery_for};
use berth_store::OpOutcome;
use serde::Serialize;

use crate::install::{Journal, install_apps, rollback};
use crate::uninstall::{UninstallOptions, finish_stack, uninstall_one};
use crate::{Ctx, Progress, Result, stackdb};

#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    pub op: i64,
    pub kind: String,
    pub app: String,
    pub outcome: String,
}

/// Recover every unfinished operation. Call with the state lock held,
/// before doing anything else.
pub async fn recover(ctx: &Arc<Ctx>) -> Result<Vec<Recovered>> {
    let ops = ctx.store().unfinished_ops()?;
    let mut out = Vec::new();
    for op in ops {
        let journal = Journal::resume(ctx, op.id);
        let outcome = match (recovery_for(&op.kind), op.kind.as_str()) {
            (Recovery::RollBack, _) => {
                let remains = rollback(ctx, &journal).await;
                if remains.is_empty() {
                    journal.finish(
                        OpOutcome::RolledBack,
                        Some("interrupted; rolled back on recovery"),
                    )?;
                    format!("interrupted {} of {} rolled back", op.kind, op.app)
                } else {
                    // Leave the op unfinished: the next start tries again.
                    format!(
                        "rollback of interrupted {} of {} incomplete: {}",
                        op.kind,
                        op.app,
                        remains.join(", ")
                    )
                }
            }
            (Recovery::Update, _) => recover_update(ctx, &journal, &op.app).await?,
            (Recovery::Resume, "uninstall" | "uninstall-keep-data") => {
                let opts = UninstallOptions {
                    keep_data: op.kind == "uninstall-keep-data",
                    cascade: false,
                };
                match stackdb::installed_stack_of(ctx, &op.app) {
                    Ok((stack, _)) => {
                        match uninstall_one(ctx, &stack, &op.app, opts, Some(op.id)).await {
                            Ok(()) => {
                                let mut errors = Vec::new();
                                finish_stack(ctx, &stack, opts, &mut errors).await;
                                format!("interrupted uninstall of {} finished", op.app)
                            }
                            Err(e) => {
                                format!("interrupted uninstall of {} still incomplete: {e}", op.app)
                            }
                        }
                    }
                    Err(_) => {
                        journal.finish(OpOutcome::Resumed, Some("app record already gone"))?;
                        format!("interrupted uninstall of {} had already completed", op.app)
                    }
                }
            }
            (Recovery::Resume, _) => match stackdb::installed_stack_of(ctx, &op.app) {
                Ok((stack, recs)) => {
                    let file = recs
                        .iter()
                        .find(|r| r.id == op.app)
                        .and_then(|r| r.stack_file.clone());
                    let ids = BTreeSet::from([op.app.clone()]);
                    // Mark the interrupted journal finished first; bringing the
                    // app up again journals itself.
                    journal.finish(OpOutcome::Resumed, Some("interrupted; resumed on recovery"))?;
                    match install_apps(ctx, &stack, file.as_deref(), &ids, &BTreeSet::new()).await {
                        Ok(_) => format!("interrupted {} of {} resumed", op.kind, op.app),
                        Err(e) => format!(
                            "interrupted {} of {} could not be resumed: {e}",
                            op.kind, op.app
                        ),
                    }
                }
                Err(_) => {
                    let remains = rollback(ctx, &journal).await;
                    journal.finish(OpOutcome::RolledBack, Some("app no longer installed"))?;
                    format!(
                        "interrupted {} of {} rolled back ({} left)",
                        op.kind,
                        op.app,
                        remains.len()
                    )
                }
            },
        };
        ctx.event(Some(&op.app), "recovered", outcome.clone());
        ctx.reporter.report(Progress::Note {
            message: format!("recovery: {outcome}"),
        });
        out.push(Recovered {
            op: op.id,
            kind: op.kind,
            app: op.app,
            outcome,
        });
    }
    Ok(out)
}

/// Looks after an interrupted update's rollback, for engine calls of the
/// killed berth that land late.
const UPDATE_RECOVERY_LOOKS: u32 = 5;
/// Time between those looks.
const UPDATE_RECOVERY_LOOK_MS: u64 = 300;

/// An interrupted update ends with exactly one container for the app:
/// past its commit point the new one (the kept old one is removed),
/// before it the old one (the new one is removed and the kept one put
/// back under its name, started again if it was running).
async fn recover_update(ctx: &Arc<Ctx>, journal: &Journal<'_>, app: &str) -> Result<String> {
    let steps = journal.steps()?;
    let container = steps
        .iter()
        .find(|s| s.kind == plan::STEP_KEEP_RUNNING || s.kind == plan::STEP_KEEP_STOPPED)
        .map(|s| s.resource.clone());
    if plan::update_committed(&steps) {
        if let Some(name) = &container {
            let kept = naming::kept_container_name(name);
            if let Err(e) = ctx.engine.remove_container(&kept, true).await {
                return Ok(format!(
                    "interrupted update of {app} had committed; its previous container {kept} \
                     could not be removed yet: {e}"
                ));
            }
        }
        journal.finish(
            OpOutcome::Resumed,
            Some("interrupted after its commit; finished"),
        )?;
        return Ok(format!(
            "interrupted update of {app} finished (new version kept)"
        ));
    }
    let mut remains = rollback(ctx, journal).await;
    // A call of the killed berth can still be in flight in the engine
    // (Podman carries out a stop or a rename whose client died): look
    // again a few times and put the kept container back, started, whenever
    // such a late call took it away again.
    if let (true, Some(name)) = (remains.is_empty(), &container) {
        let start = steps.iter().any(|s| s.kind == plan::STEP_KEEP_RUNNING);
        for _ in 0..UPDATE_RECOVERY_LOOKS {
            tokio::time::sleep(std::time::Duration::from_millis(UPDATE_RECOVERY_LOOK_MS)).await;
            if let Err(e) = crate::install::restore_kept(ctx, name, start).await {
                remains.push(format!("previous container of {name} ({e})"));
                break;
            }
        }
    }
    if !remains.is_empty() {
        // Left unfinished: the next start tries again.
        return Ok(format!(
            "rollback of interrupted update of {app} incomplete: {}",
            remains.join(", ")
        ));
    }
    journal.finish(
        OpOutcome::RolledBack,
        Some("interrupted before its commit; previous version restored"),
    )?;
    Ok(format!(
        "interrupted update of {app} rolled back to the previous version"
    ))
}
