//! `run.*`: the runs of `berth vet` and `berth verify` in the daemon's
//! state directory, over the API — the same list, show and operator
//! actions as `berth run …` (both call `berth_verify::runs`). An action
//! takes the run's own lock and drives the run in this request until it
//! completes or holds again; a run another process drives answers
//! `OPERATION_IN_PROGRESS`.

use berth_ops::Ctx;
use berth_verify::runs::{self, Driver, RunsError};
use serde_json::{Value, json};

use crate::rpc::{self, RpcError, RunCall};

fn run_error(e: RunsError) -> RpcError {
    let code = match &e {
        RunsError::NoSuchRun(_) => rpc::UNKNOWN_RUN,
        e if e.is_busy() => rpc::OPERATION_IN_PROGRESS,
        e if e.is_engine() => rpc::ENGINE_UNAVAILABLE,
        e if e.is_usage() => rpc::RUN_STATE_CONFLICT,
        _ => rpc::OPERATION_FAILED,
    };
    RpcError::new(code, e.to_string())
}

/// Serve one `run.*` call.
pub async fn handle(ctx: &Ctx, call: RunCall) -> Result<Value, RpcError> {
    match call {
        RunCall::List { limit } => {
            let list = runs::list(&ctx.state, limit).map_err(run_error)?;
            Ok(json!({ "runs": list }))
        }
        RunCall::Show { run } => {
            let detail = runs::show(&ctx.state, &run).map_err(run_error)?;
            Ok(json!(detail))
        }
        RunCall::Operate { run, action } => {
            let berth_exe = std::env::current_exe().map_err(|e| {
                RpcError::new(
                    rpc::OPERATION_FAILED,
                    format!("cannot find the berth binary to drive run {run}: {e}"),
                )
            })?;
            let driver = Driver {
                state: ctx.state.clone(),
                berth_exe,
                observer: None,
            };
            let summary = runs::resume(&driver, &run, Some(action))
                .await
                .map_err(run_error)?;
            Ok(json!(summary))
        }
    }
}
