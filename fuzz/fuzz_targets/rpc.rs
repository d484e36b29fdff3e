//! The daemon's JSON-RPC request parser on arbitrary bytes: the envelope
//! (`rpc::parse_envelope`), then the method and params into the closed
//! `RpcCall` enum. Errors are answers; a panic, an error code outside the
//! ones documented for that stage, or an accepted call outside the
//! documented limits is a bug.
#![no_main]

use berth_daemon::rpc::{self, RpcCall, RunCall};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let envelope = match rpc::parse_envelope(data) {
        Ok(e) => e,
        Err((id, error)) => {
            assert!(
                [rpc::PARSE_ERROR, rpc::INVALID_REQUEST].contains(&error.code),
                "envelope error with code {}: {error:?}",
                error.code
            );
            answer(id, Err(error));
            return;
        }
    };
    let parsed = RpcCall::parse(&envelope.method, envelope.params.clone());
    let again = RpcCall::parse(&envelope.method, envelope.params.clone());
    assert_eq!(parsed, again, "the parse is not deterministic");
    match parsed {
        Ok(call) => {
            assert_eq!(call.method(), envelope.method, "parsed into another method");
            check_limits(&call);
            let _ = call.is_mutation();
        }
        Err(error) => {
            assert!(
                [rpc::METHOD_NOT_FOUND, rpc::INVALID_PARAMS].contains(&error.code),
                "call error with code {}: {error:?}",
                error.code
            );
            answer(envelope.id.unwrap_or_default(), Err(error));
        }
    }
});

/// The answer the server would send must serialize and parse back.
fn answer(id: serde_json::Value, result: Result<serde_json::Value, rpc::RpcError>) {
    let text = rpc::response(id, result).to_string();
    let back: serde_json::Value = serde_json::from_str(&text).expect("an answer is JSON");
    assert_eq!(back["jsonrpc"], "2.0");
}

fn check_limits(call: &RpcCall) {
    let apps_ok = |apps: &[String]| {
        (1..=rpc::APPS_PER_REQUEST_MAX).contains(&apps.len())
            && apps.iter().all(|a| (1..=128).contains(&a.len()))
    };
    // A run id names a directory under `runs/`: it must not climb out.
    let run_ok = |r: &str| !r.is_empty() && !r.starts_with('.') && !r.contains('/');
    let file_ok = |f: &str| f.starts_with('/');
    match call {
        RpcCall::PackageInstall { stack_file, apps }
        | RpcCall::PackageReinstall { stack_file, apps } => {
            assert!(apps_ok(apps) && file_ok(stack_file), "{call:?}");
        }
        RpcCall::PackageStart { apps }
        | RpcCall::PackageStop { apps }
        | RpcCall::PackageRestart { apps }
        | RpcCall::PackageUninstall { apps, .. } => assert!(apps_ok(apps), "{call:?}"),
        RpcCall::StackUp { stack_file } => assert!(file_ok(stack_file), "{call:?}"),
        RpcCall::ContainerLogs { tail, .. } => assert!(*tail <= rpc::LOG_LINES_MAX, "{call:?}"),
        RpcCall::EventsList { limit, .. } => {
            assert!(*limit <= rpc::EVENTS_LIST_LIMIT_MAX, "{call:?}");
        }
        RpcCall::Run(RunCall::List { limit }) => {
            assert!(*limit <= rpc::RUNS_LIST_LIMIT_MAX, "{call:?}");
        }
        RpcCall::Run(RunCall::Show { run } | RunCall::Operate { run, .. }) => {
            assert!(run_ok(run), "{call:?}");
        }
        _ => {}
    }
}
