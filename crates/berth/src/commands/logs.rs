use anyhow::anyhow;
use serde_json::json;

use crate::cli::Global;
use crate::context::{CmdResult, Failure, daemon, reading, rpc_call};
use crate::output::print_json;

pub async fn run(g: &Global, app: &str, tail: usize, json: bool) -> CmdResult {
    let (name, lines) = match daemon(g).await {
        Some(c) => {
            let r = rpc_call(&c, "container.logs", json!({ "app": app, "tail": tail })).await?;
            let lines: Vec<String> = serde_json::from_value(r["lines"].clone()).unwrap_or_default();
            (
                r["container"].as_str().unwrap_or_default().to_string(),
                lines,
            )
        }
        None => {
            let ctx = reading(g).await?;
            let rec = ctx.store().get_app(app).map_err(anyhow::Error::new)?;
            let Some(rec) = rec else {
                return Err(Failure::usage(anyhow!(
                    "unknown app {app:?}: it is not installed"
                )));
            };
            let name = berth_core::naming::container_name(&rec.stack, app);
            let lines = ctx
                .engine
                .logs(&name, tail)
                .await
                .map_err(anyhow::Error::new)?;
            let redactor =
                berth_store::Redactor::new(ctx.state.secrets().all_values().unwrap_or_default());
            (name, lines.iter().map(|l| redactor.redact(l)).collect())
        }
    };
    if json {
        print_json(&serde_json::json!({ "app": app, "container": name, "lines": lines }))?;
    } else {
        for l in lines {
            crate::outln!("{l}");
        }
    }
    Ok(0)
}
