//! The CLI's side of the socket: one JSON-RPC call per HTTP request over
//! the unix socket. The connection is driven inside the call's own future
//! (nothing is spawned), so dropping the future closes it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::UnixStream;

use crate::rpc::{RPC_PATH, RpcError};

/// How long connecting to the socket may take.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Largest answer accepted, in bytes (a status of many apps, logs).
pub const RESPONSE_BYTES_MAX: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon answered with a JSON-RPC error.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// Talking to the daemon failed.
    #[error("talking to the berth daemon at {socket}: {detail}")]
    Transport { socket: String, detail: String },
}

/// A daemon that answered on its socket.
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    next_id: AtomicU64,
}

impl Client {
    /// `Some` when a daemon listens on `socket` (a connect succeeds);
    /// `None` when there is no socket or nobody answers on it.
    pub async fn connect(socket: &Path) -> Option<Client> {
        let connect = UnixStream::connect(socket);
        match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect).await {
            Ok(Ok(_)) => Some(Client {
                socket: socket.to_path_buf(),
                next_id: AtomicU64::new(1),
            }),
            _ => None,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Call `method` with `params`, waiting at most `timeout` for the answer.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let bytes = self.post(body.to_string().into_bytes(), timeout).await?;
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.transport(format!("unparsable answer: {e}")))?;
        if let Some(error) = answer.get("error") {
            let error: RpcError = serde_json::from_value(error.clone())
                .map_err(|e| self.transport(format!("unparsable error: {e}")))?;
            return Err(ClientError::Rpc(error));
        }
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| self.transport("answer has neither result nor error".into()))
    }

    /// POST raw bytes to the RPC path and return the raw answer (tests use
    /// this to send malformed requests).
    pub async fn post(&self, body: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, ClientError> {
        let work = async {
            let stream = UnixStream::connect(&self.socket)
                .await
                .map_err(|e| self.transport(format!("connect: {e}")))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                    .await
                    .map_err(|e| self.transport(e.to_string()))?;
            let req = Request::builder()
                .method(Method::POST)
                .uri(RPC_PATH)
                .header(hyper::header::HOST, "localhost")
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| self.transport(e.to_string()))?;
            let exchange = async {
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(|e| self.transport(e.to_string()))?;
                let collected = Limited::new(resp.into_body(), RESPONSE_BYTES_MAX)
                    .collect()
                    .await
                    .map_err(|e| self.transport(format!("reading the answer: {e}")))?;
                Ok::<_, ClientError>(collected.to_bytes().to_vec())
            };
            tokio::pin!(exchange);
            tokio::pin!(conn);
            tokio::select! {
                biased;
                r = &mut exchange => r,
                c = &mut conn => {
                    c.map_err(|e| self.transport(e.to_string()))?;
                    exchange.await
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(self.transport(format!("no answer within {timeout:?}"))),
        }
    }

    fn transport(&self, detail: String) -> ClientError {
        ClientError::Transport {
            socket: self.socket.display().to_string(),
            detail,
        }
    }
}
