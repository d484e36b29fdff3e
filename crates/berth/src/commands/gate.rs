//! `berth gate status` and `berth gate reset APP`.

use berth_ops::gates::GateReport;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;

use crate::cli::{GateCommand, Global};
use crate::context::{CmdResult, Route, daemon, reading, replay, route, rpc_call};
use crate::output::print_json;

pub async fn run(g: &Global, command: GateCommand) -> CmdResult {
    match command {
        GateCommand::Status { json } => status(g, json.json).await,
        GateCommand::Reset { app } => reset(g, &app).await,
    }
}

async fn status(g: &Global, json: bool) -> CmdResult {
    // The daemon answers with what it last planned with; without one the
    // nodes are probed here, once.
    let report: GateReport = match daemon(g).await {
        Some(c) => {
            let v = rpc_call(&c, "gate.status", json!({})).await?;
            serde_json::from_value(v)
                .map_err(|e| anyhow::anyhow!("the daemon's gate.status answer: {e}"))?
        }
        None => {
            let ctx = reading(g).await?;
            berth_ops::gates::gate_report_now(&ctx).await?
        }
    };
    if json {
        print_json(&report)?;
        return Ok(0);
    }
    if report.apps.is_empty() && report.nodes.is_empty() {
        crate::outln!("no installed app has a gate");
        return Ok(0);
    }
    if !report.apps.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["app", "gate", "reason", "optional nodes", "latched"]);
        for (id, a) in &report.apps {
            t.add_row([
                id.clone(),
                format!("{:?}", a.gate.status).to_lowercase(),
                a.gate.reason.clone().unwrap_or_else(|| "-".into()),
                if a.gate.badges.is_empty() {
                    "-".into()
                } else {
                    a.gate.badges.join("\n")
                },
                if a.latched { "yes" } else { "no" }.into(),
            ]);
        }
        crate::outln!("{t}");
    }
    if !report.nodes.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["node", "probe", "state", "chain"]);
        for (id, n) in &report.nodes {
            t.add_row([
                id.clone(),
                n.kind.clone(),
                n.state.clone(),
                n.summary.clone(),
            ]);
        }
        crate::outln!("{t}");
    }
    Ok(0)
}

async fn reset(g: &Global, app: &str) -> CmdResult {
    match route(g).await? {
        Route::Daemon(c) => {
            let r = rpc_call(&c, "gate.reset", json!({ "app": app })).await?;
            replay(&r["progress"]);
            eprintln!(
                "{app}: gate re-armed; the daemon holds it until its required nodes are synced"
            );
        }
        Route::Direct(m) => {
            berth_ops::gates::reset(&m.ctx, app)?;
            eprintln!(
                "{app}: gate re-armed; it is held until its required nodes are synced \
                 (no daemon runs: the next `berth up`, `start` or `berth daemon` applies it)"
            );
        }
    }
    Ok(0)
}
