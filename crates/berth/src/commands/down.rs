use std::path::PathBuf;

use serde_json::json;

use crate::cli::Global;
use crate::context::{CmdResult, Route, load_stack, replay, route, rpc_call};

pub async fn run(g: &Global, stack: Option<PathBuf>, purge: bool) -> CmdResult {
    let path = stack.unwrap_or_else(|| g.stack.clone());
    let stack = load_stack(&path)?;
    match route(g).await? {
        Route::Daemon(c) => {
            let r = rpc_call(
                &c,
                "stack.down",
                json!({ "stack": stack.name, "purge": purge }),
            )
            .await?;
            replay(&r["progress"]);
        }
        Route::Direct(m) => berth_ops::down(&m.ctx, &stack.name, purge).await?,
    }
    let kept = if purge {
        ""
    } else {
        " (volumes and secrets kept; --purge removes them)"
    };
    eprintln!("{}: down{kept}", stack.name);
    Ok(0)
}
