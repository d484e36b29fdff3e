//! The installed state as stacks: what the store says is installed,
//! rebuilt into `berth_core::model::Stack` values so the same planner code
//! serves both "bring this stack file up" and "start what is installed".

use std::collections::BTreeMap;

use berth_core::model::{App, Stack, StackSettings};
use berth_store::{AppRecord, Desired};

use crate::{Ctx, OpsError, Result};

/// Every installed app grouped into its stack.
pub fn installed_stacks(ctx: &Ctx) -> Result<BTreeMap<String, (Stack, Vec<AppRecord>)>> {
    let records = ctx.store().list_apps()?;
    let mut out: BTreeMap<String, (Stack, Vec<AppRecord>)> = BTreeMap::new();
    for rec in records {
        let entry = out.entry(rec.stack.clone()).or_insert_with(|| {
            (
                Stack {
                    name: rec.stack.clone(),
                    settings: StackSettings::with_network(rec.network.clone()),
                    apps: BTreeMap::new(),
                },
                Vec::new(),
            )
        });
        entry.0.apps.insert(rec.id.clone(), rec.app.clone());
        entry.1.push(rec);
    }
    // A companion's parent list must only name installed companions.
    for (stack, _) in out.values_mut() {
        let ids: Vec<String> = stack.apps.keys().cloned().collect();
        for app in stack.apps.values_mut() {
            app.companions.retain(|c| ids.contains(c));
            app.depends_on.retain(|d, _| ids.contains(d));
        }
    }
    Ok(out)
}

/// The installed stack holding `id`.
pub fn installed_stack_of(ctx: &Ctx, id: &str) -> Result<(Stack, Vec<AppRecord>)> {
    let stacks = installed_stacks(ctx)?;
    for (_, (stack, recs)) in stacks {
        if stack.apps.contains_key(id) {
            return Ok((stack, recs));
        }
    }
    Err(OpsError::UnknownApp {
        id: id.to_string(),
        hint: " (it is not installed)".into(),
    })
}

pub fn record_for(
    stack: &Stack,
    app: &App,
    stack_file: Option<&str>,
    desired: Desired,
    installed_at_ms: Option<i64>,
) -> AppRecord {
    let now = berth_store::now_ms();
    AppRecord {
        id: app.id.clone(),
        stack: stack.name.clone(),
        stack_file: stack_file.map(str::to_string),
        network: stack.settings.network.clone(),
        app: app.clone(),
        desired,
        installed_at_ms: installed_at_ms.unwrap_or(now),
        updated_at_ms: now,
    }
}
