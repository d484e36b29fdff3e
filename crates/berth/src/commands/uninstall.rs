use berth_ops::UninstallOptions;
use serde_json::json;

use crate::cli::Global;
use crate::context::{CmdResult, Route, replay, route, rpc_call};

pub async fn run(g: &Global, apps: &[String], keep_data: bool, cascade: bool) -> CmdResult {
    match route(g).await? {
        Route::Daemon(c) => {
            let r = rpc_call(
                &c,
                "package.uninstall",
                json!({ "apps": apps, "keep_data": keep_data, "cascade": cascade }),
            )
            .await?;
            replay(&r["progress"]);
        }
        Route::Direct(m) => {
            berth_ops::uninstall(
                &m.ctx,
                &super::id_set(apps),
                UninstallOptions { keep_data, cascade },
            )
            .await?;
        }
    }
    Ok(0)
}
