//! The `berth daemon` a verify run starts for its destructive cells: a
//! child process on the run's own state directory with a short tick, its
//! log appended to `daemon.log` in the work directory. It is owned: dropped,
//! it is killed (SIGKILL); containers are not its children and keep running.
//!
//! Readiness is read from the daemon itself over its socket
//! (`daemon.status`, JSON-RPC over HTTP on a unix socket), never guessed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::UnixStream;

/// Name of the daemon's socket inside its state directory.
pub const SOCKET_FILE_NAME: &str = "berth.sock";
/// Largest `daemon.status` answer read.
const STATUS_BYTES_MAX: usize = 1 << 20;
/// Bound on one status call.
const STATUS_CALL_TIMEOUT_MS: u64 = 5_000;
/// How often readiness and exit are polled.
const POLL_MS: u64 = 100;

/// How the daemon is told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Kill,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Kill => "SIGKILL",
        }
    }
}

/// A running daemon child.
pub struct DaemonProc {
    child: tokio::process::Child,
    pub pid: u32,
    socket: PathBuf,
}

/// What starting a daemon needs.
pub struct DaemonCommand<'a> {
    pub exe: &'a Path,
    /// Global flags (`--engine`, `--state-dir`, sockets).
    pub global: Vec<String>,
    pub state_dir: &'a Path,
    pub tick_ms: u64,
    pub log: &'a Path,
}

impl DaemonProc {
    /// Start the daemon and wait until it has finished at least one whole
    /// reconcile tick (it adopted what runs), bounded by `timeout`.
    pub async fn start(cmd: &DaemonCommand<'_>, timeout: Duration) -> Result<DaemonProc, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cmd.log)
            .map_err(|e| format!("cannot open {}: {e}", cmd.log.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", cmd.log.display()))?;
        let tick = format!("{}ms", cmd.tick_ms);
        let child = tokio::process::Command::new(cmd.exe)
            .args(&cmd.global)
            .args(["daemon", "--tick", &tick])
            // Fast supervision, so crash injection is answered in seconds.
            .env("BERTH_BACKOFF_INITIAL", "1s")
            .env("BERTH_BACKOFF_MAX", "4s")
            .env("BERTH_EVENT_DEBOUNCE", "100ms")
            .env("BERTH_SHUTDOWN_TIMEOUT", "30s")
            // The run's daemon serves only its socket: the HTTP API port
            // belongs to the user's daemon.
            .env("BERTH_LISTEN", "off")
            .env(
                "BERTH_LOG",
                std::env::var("BERTH_VERIFY_DAEMON_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("BERTH_CRASH_AFTER_STEP")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start `{} daemon`: {e}", cmd.exe.display()))?;
        let pid = child.id().unwrap_or(0);
        let mut proc = DaemonProc {
            child,
            pid,
            socket: cmd.state_dir.join(SOCKET_FILE_NAME),
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = proc.child.try_wait() {
                return Err(format!(
                    "the daemon exited during start-up ({status}); see {}",
                    cmd.log.display()
                ));
            }
            if let Ok(s) = daemon_status(&proc.socket).await
                && s["ticks"]["ticks"].as_u64().unwrap_or(0) >= 2
            {
                return Ok(proc);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the daemon did not finish a reconcile tick within {} s; see {}",
                    timeout.as_secs(),
                    cmd.log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Signal the daemon and wait (bounded) for it to exit. Returns its
    /// exit code (`None` when killed by a signal).
    pub async fn stop(
        mut self,
        signal: StopSignal,
        timeout: Duration,
    ) -> Result<Option<i32>, String> {
        let pid = rustix::process::Pid::from_raw(self.pid as i32)
            .ok_or_else(|| "the daemon has no pid".to_string())?;
        let sig = match signal {
            StopSignal::Term => rustix::process::Signal::TERM,
            StopSignal::Kill => rustix::process::Signal::KILL,
        };
        if let Err(e) = rustix::process::kill_process(pid, sig) {
            return Err(format!(
                "cannot send {} to the daemon (pid {}): {e}",
                signal.name(),
                self.pid
            ));
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => Ok(status.code()),
            Ok(Err(e)) => Err(format!("waiting for the daemon: {e}")),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                Err(format!(
                    "the daemon did not exit within {} s of {}; killed",
                    timeout.as_secs(),
                    signal.name()
                ))
            }
        }
    }

    /// Whether the child is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub async fn status(&self) -> Result<Value, String> {
        daemon_status(&self.socket).await
    }
}

/// `daemon.status` of the daemon answering on `socket`.
pub async fn daemon_status(socket: &Path) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "daemon.status"}).to_string();
    let work = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("connect {}: {e}", socket.display()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        let req = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri("/rpc/v1")
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let bytes = Limited::new(resp.into_body(), STATUS_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>(bytes)
        };
        tokio::pin!(exchange);
        tokio::pin!(conn);
        let bytes = tokio::select! {
            biased;
            r = &mut exchange => r?,
            c = &mut conn => {
                c.map_err(|e| e.to_string())?;
                exchange.await?
            }
        };
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        v.get("result")
            .cloned()
            .ok_or_else(|| format!("daemon.status answered {v}"))
    };
    match tokio::time::timeout(Duration::from_millis(STATUS_CALL_TIMEOUT_MS), work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "daemon.status: no answer within {STATUS_CALL_TIMEOUT_MS} ms"
        )),
    }
}
