//! The JSON-RPC endpoint (`POST /rpc/v1`) as an axum router, and serving
//! it on the state directory's unix socket (mode 0600). The HTTP API
//! (`http`) mounts the same router on TCP behind its authentication.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::hub::Hub;
use crate::rpc::{self, RPC_BODY_BYTES_MAX, RPC_PATH, RpcCall, RpcError};

use crate::supervisor::Event;

/// Name of the socket inside the state directory.
pub const SOCKET_FILE_NAME: &str = "berth.sock";
/// Mode of the socket: only its owner (root) may talk to the daemon.
pub const SOCKET_MODE: u32 = 0o600;
/// How long a request body may take to arrive.
pub const BODY_READ_TIMEOUT_MS: u64 = 5_000;
/// How long a request waits for room in the loop's queue.
pub const QUEUE_WAIT_MS: u64 = 5_000;

/// What the handler needs.
#[derive(Clone)]
pub struct RpcState {
    pub tx: mpsc::Sender<Event>,
    pub request_timeout: Duration,
    pub operation_timeout: Duration,
    /// Told after every mutation, before its answer goes out, so a client
    /// that reads the state next sees the effect.
    pub hub: Arc<Hub>,
}

/// The router: `POST /rpc/v1`.
pub fn router(state: RpcState) -> Router {
    Router::new()
        .route(RPC_PATH, post(rpc_handler))
        .with_state(state)
}

fn json_response(value: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn rpc_handler(State(state): State<RpcState>, body: Body) -> Response {
    let read = axum::body::to_bytes(body, RPC_BODY_BYTES_MAX);
    let bytes = match tokio::time::timeout(Duration::from_millis(BODY_READ_TIMEOUT_MS), read).await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            // 413 as on TCP, with the JSON-RPC error for the client.
            let mut r = json_response(&rpc::response(
                Value::Null,
                Err(RpcError::new(
                    rpc::INVALID_REQUEST,
                    format!("request body larger than {RPC_BODY_BYTES_MAX} bytes (or unreadable)"),
                )),
            ));
            *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return r;
        }
        Err(_) => {
            return json_response(&rpc::response(
                Value::Null,
                Err(RpcError::new(
                    rpc::INVALID_REQUEST,
                    format!("request body not received within {BODY_READ_TIMEOUT_MS} ms"),
                )),
            ));
        }
    };
    let (id, result) = match rpc::parse_request(&bytes) {
        Ok(rpc::Request { id, call }) => (id, dispatch(&state, call).await),
        Err((id, error)) => (id, Err(error)),
    };
    match id {
        Some(id) => json_response(&rpc::response(id, result)),
        // A notification gets no answer (JSON-RPC 2.0), only the status.
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Hand the call to the loop and wait for its answer, bounded.
pub async fn dispatch(state: &RpcState, call: RpcCall) -> Result<Value, RpcError> {
    let timeout = if call.is_mutation() {
        state.operation_timeout
    } else {
        state.request_timeout
    };
    let method = call.method();
    let mutation = call.is_mutation();
    let (reply_tx, reply_rx) = oneshot::channel();
    let shutting_down = || RpcError::new(rpc::SHUTTING_DOWN, "the daemon is shutting down");
    match tokio::time::timeout(
        Duration::from_millis(QUEUE_WAIT_MS),
        state.tx.send(Event::Request(call, reply_tx)),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(shutting_down()),
        Err(_) => {
            return Err(RpcError::new(
                rpc::OPERATION_IN_PROGRESS,
                "the daemon is too busy to take the request; try again",
            ));
        }
    }
    match tokio::time::timeout(timeout, reply_rx).await {
        Ok(Ok(result)) => {
            if mutation {
                state.hub.bump();
            }
            result
        }
        Ok(Err(_)) => Err(shutting_down()),
        Err(_) => Err(RpcError::new(
            rpc::OPERATION_FAILED,
            format!(
                "{method} did not finish within {}; it goes on in the daemon (see `berth events`)",
                berth_core::duration::format_duration(timeout)
            ),
        )),
    }
}

/// Bind the socket: a stale file (no daemon answers: we hold the state
/// lock) is removed first. The state directory is 0700, so the socket is
/// never reachable by others in the moment between bind and chmod.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed a stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
    Ok(listener)
}

/// `<state-dir>/berth.sock`.
pub fn socket_path(state_root: &Path) -> PathBuf {
    state_root.join(SOCKET_FILE_NAME)
}
