use serde_json::json;

use crate::cli::Global;
use crate::context::{CmdResult, Route, replay, route, rpc_call};

pub async fn run(g: &Global, apps: &[String]) -> CmdResult {
    match route(g).await? {
        Route::Daemon(c) => {
            let r = rpc_call(&c, "package.start", json!({ "apps": apps })).await?;
            replay(&r["progress"]);
        }
        Route::Direct(m) => {
            berth_ops::start(&m.ctx, &super::id_set(apps)).await?;
        }
    }
    Ok(0)
}
