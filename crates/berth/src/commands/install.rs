use serde_json::json;

use crate::cli::Global;
use crate::context::{CmdResult, Route, replay, resolve_apps, route, rpc_call};

pub async fn run(g: &Global, apps: &[String]) -> CmdResult {
    let (stack, file, ids) = resolve_apps(g, apps)?;
    let file = file.map(|f| std::fs::canonicalize(&f).unwrap_or(f).display().to_string());
    match route(g).await? {
        Route::Daemon(c) => {
            let r = rpc_call(
                &c,
                "package.install",
                json!({ "stack_file": file, "apps": ids }),
            )
            .await?;
            replay(&r["progress"]);
        }
        Route::Direct(m) => {
            berth_ops::install(&m.ctx, &stack, file.as_deref(), &ids).await?;
        }
    }
    Ok(0)
}
