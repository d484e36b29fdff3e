//! The JSON-RPC 2.0 surface: every method as one variant of a closed enum,
//! parsed (unknown fields rejected) before anything runs, and the error
//! codes. The unix socket serves it today; the HTTP API (issue 5) mounts the
//! same router on TCP.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the router answers.
pub const RPC_PATH: &str = "/rpc/v1";
/// Largest request body accepted, in bytes.
pub const RPC_BODY_BYTES_MAX: usize = 64 * 1024;
/// Most events one `events.list` returns.
pub const EVENTS_LIST_LIMIT_MAX: usize = 1_000;
/// `events.list` without a limit.
pub const EVENTS_LIST_LIMIT_DEFAULT: usize = 50;
/// Most log lines one `container.logs` returns.
pub const LOG_LINES_MAX: usize = 10_000;
/// Most apps one request names.
pub const APPS_PER_REQUEST_MAX: usize = 256;
/// Longest app id or stack name a request may carry, in bytes (valid ones
/// are at most `berth_core::validate::ID_LEN_MAX`; a longer one is
/// answered "unknown", one beyond this is refused outright).
pub const NAME_BYTES_MAX: usize = 128;
/// Longest stack file path a request may carry, in bytes (Linux's PATH_MAX).
pub const PATH_BYTES_MAX: usize = 4_096;
/// Longest run id, in bytes.
pub const RUN_ID_BYTES_MAX: usize = 128;

// Standard JSON-RPC codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
// berth's own codes (the server-error range).
/// An operation failed (install rolled back, uninstall incomplete, …).
pub const OPERATION_FAILED: i64 = -32000;
/// The request names an app that is not installed / not in the stack file.
pub const UNKNOWN_APP: i64 = -32001;
/// Installed apps depend on what the request would remove.
pub const DEPENDENCY_CONFLICT: i64 = -32002;
/// Another operation holds one of the apps; try again.
pub const OPERATION_IN_PROGRESS: i64 = -32003;
/// The container engine cannot be reached.
pub const ENGINE_UNAVAILABLE: i64 = -32004;
/// The stack file or manifest is invalid or unreadable.
pub const INVALID_MANIFEST: i64 = -32005;
/// The daemon is shutting down.
pub const SHUTTING_DOWN: i64 = -32006;
/// The request names a vet/verify run that does not exist.
pub const UNKNOWN_RUN: i64 = -32010;
/// The run's state does not allow the action (only a run holding on a
/// failed stage can be overridden or retried; a finished run takes none).
pub const RUN_STATE_CONFLICT: i64 = -32011;
/// Most runs one `run.list` returns.
pub const RUNS_LIST_LIMIT_MAX: usize = 1_000;
/// `run.list` without a limit.
pub const RUNS_LIST_LIMIT_DEFAULT: usize = 20;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(INVALID_PARAMS, message)
    }
}

/// How to name a stack for `stack.down`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackRef {
    File(String),
    Name(String),
}

/// Every method the daemon serves, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcCall {
    /// `package.install {stack_file, apps}`: install apps of the stack file
    /// (with dependencies and companions) and start them.
    PackageInstall {
        stack_file: String,
        apps: Vec<String>,
    },
    /// `package.start {apps}`: start installed apps and what they need.
    PackageStart { apps: Vec<String> },
    /// `package.stop {apps}`: stop apps; supervision leaves them stopped.
    PackageStop { apps: Vec<String> },
    /// `package.restart {apps}`.
    PackageRestart { apps: Vec<String> },
    /// `package.reinstall {stack_file, apps}`: recreate, volumes kept.
    PackageReinstall {
        stack_file: String,
        apps: Vec<String>,
    },
    /// `package.uninstall {apps, keep_data, cascade}`.
    PackageUninstall {
        apps: Vec<String>,
        keep_data: bool,
        cascade: bool,
    },
    /// `stack.up {stack_file}`.
    StackUp { stack_file: String },
    /// `stack.down {stack_file | stack, purge}`.
    StackDown { stack: StackRef, purge: bool },
    /// `container.list`: every installed app's status (as `berth status --json`).
    ContainerList,
    /// `container.health`: the health monitors' verdicts.
    ContainerHealth,
    /// `container.logs {app, tail}`.
    ContainerLogs { app: String, tail: usize },
    /// `events.list {app?, after_id?, limit?}`.
    EventsList {
        app: Option<String>,
        after_id: Option<i64>,
        limit: usize,
    },
    /// `daemon.status`.
    DaemonStatus,
    /// `gate.status`: every gated app's verdict and every gate node's
    /// chain state, as the daemon last planned with them.
    GateStatus,
    /// `gate.reset {app}`: re-arm the app's sync gate (held again until
    /// its nodes are synced; any rejection forgotten).
    GateReset { app: String },
    /// `run.list {limit?}`, `run.show {run}`, `run.override|retry|abandon
    /// {run}`: vet and verify runs (see [`RunCall`]).
    Run(RunCall),
}

/// The `run.*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunCall {
    /// `run.list {limit?}`: the newest runs.
    List { limit: usize },
    /// `run.show {run}`: one run with its report paths and scorecard.
    Show { run: String },
    /// `run.override|retry|abandon {run}`: resolve a run holding on a
    /// failed stage; the answer comes when it completes or holds again.
    Operate {
        run: String,
        action: berth_core::pipeline::OperatorAction,
    },
}

impl RunCall {
    pub fn method(&self) -> &'static str {
        use berth_core::pipeline::OperatorAction as A;
        match self {
            RunCall::List { .. } => "run.list",
            RunCall::Show { .. } => "run.show",
            RunCall::Operate { action, .. } => match action {
                A::Override => "run.override",
                A::Retry => "run.retry",
                A::Abandon => "run.abandon",
            },
        }
    }
}

/// Every method name, for `method not found` messages and docs.
pub const METHODS: &[&str] = &[
    "package.install",
    "package.start",
    "package.stop",
    "package.restart",
    "package.reinstall",
    "package.uninstall",
    "stack.up",
    "stack.down",
    "container.list",
    "container.health",
    "container.logs",
    "events.list",
    "daemon.status",
    "gate.status",
    "gate.reset",
    "run.list",
    "run.show",
    "run.override",
    "run.retry",
    "run.abandon",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppsParams {
    apps: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAppsParams {
    stack_file: String,
    apps: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UninstallParams {
    apps: Vec<String>,
    #[serde(default)]
    keep_data: bool,
    #[serde(default)]
    cascade: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpParams {
    stack_file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DownParams {
    stack_file: Option<String>,
    stack: Option<String>,
    #[serde(default)]
    purge: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsParams {
    app: String,
    tail: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsParams {
    app: Option<String>,
    after_id: Option<i64>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunParams {
    run: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunListParams {
    limit: Option<usize>,
}

/// The shape of a run id, as the OpenAPI document states it
/// (`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`): a file name in `runs/`, never
/// `.`, `..` or a hidden one.
pub const RUN_ID_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$";
/// The shape of an app id (`berth_core::validate`'s rule: an RFC 1123
/// label of at most 31 characters starting with a letter).
pub const APP_ID_PATTERN: &str = "^[a-z]([a-z0-9-]{0,29}[a-z0-9])?$";
/// Longest app id, in bytes.
pub const APP_ID_BYTES_MAX: usize = berth_core::validate::ID_LEN_MAX;

/// Whether `run` has the shape of [`RUN_ID_PATTERN`].
pub fn is_run_id(run: &str) -> bool {
    !run.is_empty()
        && run.len() <= RUN_ID_BYTES_MAX
        && !run.starts_with('.')
        && run
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether `id` has the shape of [`APP_ID_PATTERN`].
pub fn is_app_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some('a'..='z'))
        && id.len() <= APP_ID_BYTES_MAX
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
        && !id.ends_with('-')
}

fn check_run(method: &str, run: &str) -> Result<(), RpcError> {
    if is_run_id(run) {
        Ok(())
    } else {
        Err(RpcError::invalid_params(format!(
            "{method}: invalid run id {run:?}"
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppParams {
    app: String,
}

fn params<T: DeserializeOwned>(method: &str, params: Option<Value>) -> Result<T, RpcError> {
    // Absent or null params mean "no parameters" (an empty object).
    let value = match params {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(RpcError::invalid_params(format!(
                "{method}: params must be an object with named parameters"
            )));
        }
    };
    serde_json::from_value(value)
        .map_err(|e| RpcError::invalid_params(format!("{method}: invalid params: {e}")))
}

fn check_apps(method: &str, apps: &[String]) -> Result<(), RpcError> {
    if apps.is_empty() {
        return Err(RpcError::invalid_params(format!(
            "{method}: apps must name at least one app"
        )));
    }
    if apps.len() > APPS_PER_REQUEST_MAX {
        return Err(RpcError::invalid_params(format!(
            "{method}: at most {APPS_PER_REQUEST_MAX} apps per request"
        )));
    }
    for app in apps {
        check_name(method, "app id", app)?;
    }
    Ok(())
}

/// An app id or stack name: not empty, bounded, no control characters (a
/// NUL would cut the name short in a C string, a newline forge a log line).
fn check_name(method: &str, what: &str, name: &str) -> Result<(), RpcError> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX || name.chars().any(char::is_control) {
        let shown: String = name.chars().take(NAME_BYTES_MAX).collect();
        return Err(RpcError::invalid_params(format!(
            "{method}: invalid {what} {shown:?}"
        )));
    }
    Ok(())
}

fn check_file(method: &str, path: &str) -> Result<(), RpcError> {
    if path.len() > PATH_BYTES_MAX || path.chars().any(char::is_control) {
        return Err(RpcError::invalid_params(format!(
            "{method}: stack_file must be a path of at most {PATH_BYTES_MAX} bytes without control characters"
        )));
    }
    if !path.starts_with('/') {
        return Err(RpcError::invalid_params(format!(
            "{method}: stack_file must be an absolute path (the daemon's working directory is not yours), not {path:?}"
        )));
    }
    Ok(())
}

impl RpcCall {
    /// Parse a method and its params into a call, or the error to answer.
    pub fn parse(method: &str, p: Option<Value>) -> Result<RpcCall, RpcError> {
        let call = match method {
            "package.install" | "package.reinstall" => {
                let FileAppsParams { stack_file, apps } = params(method, p)?;
                check_apps(method, &apps)?;
                check_file(method, &stack_file)?;
                if method == "package.install" {
                    RpcCall::PackageInstall { stack_file, apps }
                } else {
                    RpcCall::PackageReinstall { stack_file, apps }
                }
            }
            "package.start" | "package.stop" | "package.restart" => {
                let AppsParams { apps } = params(method, p)?;
                check_apps(method, &apps)?;
                match method {
                    "package.start" => RpcCall::PackageStart { apps },
                    "package.stop" => RpcCall::PackageStop { apps },
                    _ => RpcCall::PackageRestart { apps },
                }
            }
            "package.uninstall" => {
                let UninstallParams {
                    apps,
                    keep_data,
                    cascade,
                } = params(method, p)?;
                check_apps(method, &apps)?;
                RpcCall::PackageUninstall {
                    apps,
                    keep_data,
                    cascade,
                }
            }
            "stack.up" => {
                let UpParams { stack_file } = params(method, p)?;
                check_file(method, &stack_file)?;
                RpcCall::StackUp { stack_file }
            }
            "stack.down" => {
                let DownParams {
                    stack_file,
                    stack,
                    purge,
                } = params(method, p)?;
                let stack = match (stack_file, stack) {
                    (Some(f), None) => {
                        check_file(method, &f)?;
                        StackRef::File(f)
                    }
                    (None, Some(name)) if !name.is_empty() => {
                        check_name(method, "stack name", &name)?;
                        StackRef::Name(name)
                    }
                    _ => {
                        return Err(RpcError::invalid_params(format!(
                            "{method}: give exactly one of stack_file and stack"
                        )));
                    }
                };
                RpcCall::StackDown { stack, purge }
            }
            "container.list" => {
                let NoParams {} = params(method, p)?;
                RpcCall::ContainerList
            }
            "container.health" => {
                let NoParams {} = params(method, p)?;
                RpcCall::ContainerHealth
            }
            "container.logs" => {
                let LogsParams { app, tail } = params(method, p)?;
                check_name(method, "app id", &app)?;
                RpcCall::ContainerLogs {
                    app,
                    tail: tail.unwrap_or(100).min(LOG_LINES_MAX),
                }
            }
            "events.list" => {
                let EventsParams {
                    app,
                    after_id,
                    limit,
                } = params(method, p)?;
                if let Some(app) = &app {
                    check_name(method, "app id", app)?;
                }
                RpcCall::EventsList {
                    app,
                    after_id,
                    limit: limit
                        .unwrap_or(EVENTS_LIST_LIMIT_DEFAULT)
                        .min(EVENTS_LIST_LIMIT_MAX),
                }
            }
            "daemon.status" => {
                let NoParams {} = params(method, p)?;
                RpcCall::DaemonStatus
            }
            "gate.status" => {
                let NoParams {} = params(method, p)?;
                RpcCall::GateStatus
            }
            "gate.reset" => {
                let AppParams { app } = params(method, p)?;
                check_apps(method, std::slice::from_ref(&app))?;
                RpcCall::GateReset { app }
            }
            "run.list" => {
                let RunListParams { limit } = params(method, p)?;
                RpcCall::Run(RunCall::List {
                    limit: limit
                        .unwrap_or(RUNS_LIST_LIMIT_DEFAULT)
                        .min(RUNS_LIST_LIMIT_MAX),
                })
            }
            "run.show" | "run.override" | "run.retry" | "run.abandon" => {
                use berth_core::pipeline::OperatorAction as A;
                let RunParams { run } = params(method, p)?;
                check_run(method, &run)?;
                RpcCall::Run(match method {
                    "run.show" => RunCall::Show { run },
                    "run.override" => RunCall::Operate {
                        run,
                        action: A::Override,
                    },
                    "run.retry" => RunCall::Operate {
                        run,
                        action: A::Retry,
                    },
                    _ => RunCall::Operate {
                        run,
                        action: A::Abandon,
                    },
                })
            }
            other => {
                return Err(RpcError::new(
                    METHOD_NOT_FOUND,
                    format!(
                        "method {other:?} not found; methods: {}",
                        METHODS.join(", ")
                    ),
                ));
            }
        };
        Ok(call)
    }

    /// Whether the call changes anything (it then claims its apps and runs
    /// under the operation timeout).
    pub fn is_mutation(&self) -> bool {
        !matches!(
            self,
            RpcCall::ContainerList
                | RpcCall::ContainerHealth
                | RpcCall::ContainerLogs { .. }
                | RpcCall::EventsList { .. }
                | RpcCall::DaemonStatus
                | RpcCall::GateStatus
                | RpcCall::Run(RunCall::List { .. } | RunCall::Show { .. })
        )
    }

    pub fn method(&self) -> &'static str {
        match self {
            RpcCall::PackageInstall { .. } => "package.install",
            RpcCall::PackageStart { .. } => "package.start",
            RpcCall::PackageStop { .. } => "package.stop",
            RpcCall::PackageRestart { .. } => "package.restart",
            RpcCall::PackageReinstall { .. } => "package.reinstall",
            RpcCall::PackageUninstall { .. } => "package.uninstall",
            RpcCall::StackUp { .. } => "stack.up",
            RpcCall::StackDown { .. } => "stack.down",
            RpcCall::ContainerList => "container.list",
            RpcCall::ContainerHealth => "container.health",
            RpcCall::ContainerLogs { .. } => "container.logs",
            RpcCall::EventsList { .. } => "events.list",
            RpcCall::DaemonStatus => "daemon.status",
            RpcCall::GateStatus => "gate.status",
            RpcCall::GateReset { .. } => "gate.reset",
            RpcCall::Run(c) => c.method(),
        }
    }
}

/// One line of an operation's progress, returned with a mutation's result
/// so the CLI can show what happened (the socket does not stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressLine {
    /// "done", "failed" or "note".
    pub kind: String,
    pub app: Option<String>,
    pub message: String,
}

/// A parsed request envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub method: String,
    pub params: Option<Value>,
    /// `None` for a notification (no answer is sent).
    pub id: Option<Value>,
}

/// Check the JSON-RPC envelope: an object with `jsonrpc: "2.0"`, a string
/// `method`, optional `params` and `id` (string, number or null), and
/// nothing else. Returns the id seen so far with an error, to answer with.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, (Value, RpcError)> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        (
            Value::Null,
            RpcError::new(PARSE_ERROR, format!("parse error: {e}")),
        )
    })?;
    let invalid = |id: Value, m: String| (id, RpcError::new(INVALID_REQUEST, m));
    let Value::Object(mut map) = value else {
        let m = if value.is_array() {
            "batch requests are not supported: send one request per call"
        } else {
            "a request must be a JSON object"
        };
        return Err(invalid(Value::Null, m.into()));
    };
    let id = map.remove("id");
    let id_for_error = id.clone().unwrap_or(Value::Null);
    if let Some(bad) = &id
        && !(bad.is_string() || bad.is_number() || bad.is_null())
    {
        return Err(invalid(
            Value::Null,
            "id must be a string, a number or null".into(),
        ));
    }
    match map.remove("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        _ => {
            return Err(invalid(
                id_for_error,
                "jsonrpc must be exactly \"2.0\"".into(),
            ));
        }
    }
    let method = match map.remove("method") {
        Some(Value::String(m)) => m,
        _ => return Err(invalid(id_for_error, "method must be a string".into())),
    };
    let params = map.remove("params");
    if let Some(key) = map.keys().next() {
        return Err(invalid(
            id_for_error,
            format!("unknown member {key:?} in the request"),
        ));
    }
    Ok(Envelope { method, params, id })
}

/// A whole request, parsed: the envelope checked and the call in the
/// closed enum.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `None` for a notification (no answer is sent).
    pub id: Option<Value>,
    pub call: RpcCall,
}

/// Parse a request body into a [`Request`], or the error to answer with
/// and the id to answer it under (`None`: the request was a well-formed
/// notification, which gets no answer even when its call is refused).
/// Pure, no daemon needed: the socket, the TCP API and the fuzz targets
/// all go through it.
pub fn parse_request(body: &[u8]) -> Result<Request, (Option<Value>, RpcError)> {
    if body.len() > RPC_BODY_BYTES_MAX {
        return Err((
            Some(Value::Null),
            RpcError::new(
                INVALID_REQUEST,
                format!("request body larger than {RPC_BODY_BYTES_MAX} bytes"),
            ),
        ));
    }
    let envelope = parse_envelope(body).map_err(|(id, e)| (Some(id), e))?;
    let id = envelope.id.clone();
    let call = RpcCall::parse(&envelope.method, envelope.params).map_err(|e| (id, e))?;
    Ok(Request {
        id: envelope.id,
        call,
    })
}

/// The JSON of a response.
pub fn response(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(error) => serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_parse_into_the_closed_enum() {
        let c = RpcCall::parse(
            "package.uninstall",
            Some(json!({"apps": ["lnd"], "cascade": true})),
        )
        .unwrap();
        assert_eq!(
            c,
            RpcCall::PackageUninstall {
                apps: vec!["lnd".into()],
                keep_data: false,
                cascade: true
            }
        );
        assert_eq!(
            RpcCall::parse("container.list", None).unwrap(),
            RpcCall::ContainerList
        );
        assert_eq!(
            RpcCall::parse("stack.down", Some(json!({"stack": "demo"}))).unwrap(),
            RpcCall::StackDown {
                stack: StackRef::Name("demo".into()),
                purge: false
            }
        );
        let e = RpcCall::parse("events.list", Some(json!({"limit": 1_000_000}))).unwrap();
        assert_eq!(
            e,
            RpcCall::EventsList {
                app: None,
                after_id: None,
                limit: EVENTS_LIST_LIMIT_MAX
            }
        );
    }

    #[test]
    fn bad_calls_get_the_right_codes() {
        let code = |m: &str, p: Value| RpcCall::parse(m, Some(p)).unwrap_err().code;
        assert_eq!(code("package.frobnicate", json!({})), METHOD_NOT_FOUND);
        assert_eq!(
            code("package.stop", json!({"apps": ["a"], "force": true})),
            INVALID_PARAMS
        );
        assert_eq!(code("package.stop", json!({"apps": "a"})), INVALID_PARAMS);
        assert_eq!(code("package.stop", json!({"apps": []})), INVALID_PARAMS);
        assert_eq!(code("package.stop", json!(["a"])), INVALID_PARAMS);
        assert_eq!(
            code("stack.up", json!({"stack_file": "relative.toml"})),
            INVALID_PARAMS
        );
        assert_eq!(
            code("stack.down", json!({"stack": "a", "stack_file": "/b"})),
            INVALID_PARAMS
        );
        assert_eq!(code("daemon.status", json!({"verbose": 1})), INVALID_PARAMS);
        assert_eq!(code("gate.reset", json!({})), INVALID_PARAMS);
        assert_eq!(code("gate.reset", json!({"app": ""})), INVALID_PARAMS);
        assert_eq!(
            RpcCall::parse("gate.reset", Some(json!({"app": "lnd"}))).unwrap(),
            RpcCall::GateReset { app: "lnd".into() }
        );
        assert_eq!(
            RpcCall::parse("gate.status", None).unwrap(),
            RpcCall::GateStatus
        );
        let msg = RpcCall::parse("package.stop", Some(json!({"apps": ["a"], "force": true})))
            .unwrap_err()
            .message;
        assert!(msg.contains("force"), "{msg}");
    }

    #[test]
    fn run_calls_parse_and_bad_ones_get_invalid_params() {
        use berth_core::pipeline::OperatorAction;
        assert_eq!(
            RpcCall::parse("run.list", None).unwrap(),
            RpcCall::Run(RunCall::List {
                limit: RUNS_LIST_LIMIT_DEFAULT
            })
        );
        assert_eq!(
            RpcCall::parse("run.list", Some(json!({"limit": 1_000_000}))).unwrap(),
            RpcCall::Run(RunCall::List {
                limit: RUNS_LIST_LIMIT_MAX
            })
        );
        let op = RpcCall::parse("run.retry", Some(json!({"run": "vet-1"}))).unwrap();
        assert_eq!(
            op,
            RpcCall::Run(RunCall::Operate {
                run: "vet-1".into(),
                action: OperatorAction::Retry
            })
        );
        assert!(op.is_mutation());
        assert_eq!(op.method(), "run.retry");
        let show = RpcCall::parse("run.show", Some(json!({"run": "vet-1"}))).unwrap();
        assert!(!show.is_mutation());
        for m in ["run.show", "run.override", "run.retry", "run.abandon"] {
            assert!(METHODS.contains(&m));
            let code = |p: Value| RpcCall::parse(m, Some(p)).unwrap_err().code;
            assert_eq!(code(json!({})), INVALID_PARAMS, "{m}");
            assert_eq!(code(json!({"run": "../x"})), INVALID_PARAMS, "{m}");
            assert_eq!(
                code(json!({"run": "a", "force": true})),
                INVALID_PARAMS,
                "{m}"
            );
        }
    }

    #[test]
    fn app_ids_and_names_with_control_characters_are_refused() {
        let code = |m: &str, p: Value| RpcCall::parse(m, Some(p)).unwrap_err().code;
        for bad in [
            "a\u{0}b",
            "a\nb",
            "\u{1b}[2J",
            &"x".repeat(NAME_BYTES_MAX + 1),
        ] {
            assert_eq!(code("package.stop", json!({"apps": [bad]})), INVALID_PARAMS);
            assert_eq!(code("gate.reset", json!({"app": bad})), INVALID_PARAMS);
            assert_eq!(code("container.logs", json!({"app": bad})), INVALID_PARAMS);
            assert_eq!(code("events.list", json!({"app": bad})), INVALID_PARAMS);
            assert_eq!(code("stack.down", json!({"stack": bad})), INVALID_PARAMS);
        }
        assert_eq!(
            code("stack.up", json!({"stack_file": "/a\u{0}b.toml"})),
            INVALID_PARAMS
        );
        let long = format!("/{}", "a".repeat(PATH_BYTES_MAX));
        assert_eq!(
            code("stack.up", json!({"stack_file": long})),
            INVALID_PARAMS
        );
        // Numbers beyond their type are refused, not wrapped.
        assert_eq!(
            code("container.logs", json!({"app": "a", "tail": -1})),
            INVALID_PARAMS
        );
        assert_eq!(
            code("events.list", json!({"after_id": 18446744073709551615u64})),
            INVALID_PARAMS
        );
        assert_eq!(code("run.list", json!({"limit": 1.5})), INVALID_PARAMS);
    }

    #[test]
    fn the_id_shapes_match_their_documented_patterns() {
        for ok in ["a", "lnd", "bitcoin-core", "a1", &"a".repeat(31)] {
            assert!(is_app_id(ok), "{ok}");
        }
        for bad in ["", "1a", "a-", "A", "a_b", "a.b", &"a".repeat(32), "a\u{0}"] {
            assert!(!is_app_id(bad), "{bad:?}");
        }
        for ok in ["vet-1", "_x", "-", "a.b", &"a".repeat(128)] {
            assert!(is_run_id(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a\u{0}", &"a".repeat(129)] {
            assert!(!is_run_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn parse_request_checks_the_envelope_then_the_call() {
        let r = parse_request(
            br#"{"jsonrpc":"2.0","id":"x","method":"gate.reset","params":{"app":"lnd"}}"#,
        )
        .unwrap();
        assert_eq!(r.id, Some(json!("x")));
        assert_eq!(r.call, RpcCall::GateReset { app: "lnd".into() });
        // The id comes back with a params error.
        let (id, e) =
            parse_request(br#"{"jsonrpc":"2.0","id":3,"method":"gate.reset","params":{}}"#)
                .unwrap_err();
        assert_eq!((id, e.code), (Some(json!(3)), INVALID_PARAMS));
        // A notification's refused call gets no answer.
        let (id, _) = parse_request(br#"{"jsonrpc":"2.0","method":"gate.reset"}"#).unwrap_err();
        assert_eq!(id, None);
        let big = vec![b' '; RPC_BODY_BYTES_MAX + 1];
        assert_eq!(parse_request(&big).unwrap_err().1.code, INVALID_REQUEST);
        assert_eq!(parse_request(b"\xff\xfe").unwrap_err().1.code, PARSE_ERROR);
    }

    #[test]
    fn envelopes_are_checked() {
        let ok = parse_envelope(br#"{"jsonrpc":"2.0","method":"daemon.status","id":7}"#).unwrap();
        assert_eq!(
            (ok.method.as_str(), ok.id),
            ("daemon.status", Some(json!(7)))
        );
        let n = parse_envelope(br#"{"jsonrpc":"2.0","method":"daemon.status"}"#).unwrap();
        assert_eq!(n.id, None);
        let err = |b: &[u8]| parse_envelope(b).unwrap_err();
        assert_eq!(err(b"{not json").1.code, PARSE_ERROR);
        assert_eq!(err(b"[]").1.code, INVALID_REQUEST);
        assert_eq!(
            err(br#"{"jsonrpc":"1.0","method":"x","id":1}"#).1.code,
            INVALID_REQUEST
        );
        assert_eq!(err(br#"{"jsonrpc":"1.0","method":"x","id":1}"#).0, json!(1));
        assert_eq!(
            err(br#"{"jsonrpc":"2.0","method":5,"id":1}"#).1.code,
            INVALID_REQUEST
        );
        assert_eq!(
            err(br#"{"jsonrpc":"2.0","method":"x","id":{}}"#).1.code,
            INVALID_REQUEST
        );
        assert_eq!(
            err(br#"{"jsonrpc":"2.0","method":"x","id":1,"extra":1}"#)
                .1
                .code,
            INVALID_REQUEST
        );
    }
}
