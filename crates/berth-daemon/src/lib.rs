//! The berth daemon: the control plane that keeps installed apps alive.
//!
//! `run` takes the state-directory lock for the daemon's whole life (so no
//! CLI process can change the state behind it), recovers operations a
//! crashed berth left unfinished, serves JSON-RPC on `<state>/berth.sock`
//! and runs the supervision loop (`supervisor`) until `shutdown` completes.
//! It is the only place that executes supervision plans, and on shutdown it
//! never stops a container: containers are not its children (Podman runs
//! them under its API service, Docker under dockerd).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_engine::{Engine, EngineEvent, EngineEventAction};
use berth_ops::{Ctx, PullPolicy};
use berth_store::{StateDir, StoreError};
use tokio::sync::{mpsc, watch};

pub mod bench;
pub mod client;
pub mod config;
pub mod gates;
pub mod http;
pub mod hub;
pub mod logfile;
pub mod metrics;
pub mod monitor;
pub mod rpc;
pub mod runs;
pub mod server;
pub mod supervisor;

#[cfg(test)]
mod gate_tests;
#[cfg(test)]
mod tests;

pub use client::{Client, ClientError};

/// How far ahead [`instant_after`] looks when `at + d` does not fit.
pub const FAR_FUTURE_S: u64 = 365 * 86_400;

/// `at + d` without the panic `Instant + Duration` has on overflow: a
/// deadline too far to represent becomes a year from `at` (or `at`
/// itself on a clock that cannot even hold that).
pub fn instant_after(at: tokio::time::Instant, d: std::time::Duration) -> tokio::time::Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(std::time::Duration::from_secs(FAR_FUTURE_S)))
        .unwrap_or(at)
}
pub use config::{ConfigError, KNOBS, Settings};
pub use rpc::{RpcCall, RpcError};
pub use server::{SOCKET_FILE_NAME, socket_path};
pub use supervisor::{Event, Supervisor};

/// How long the daemon waits at start for a CLI command holding the lock.
pub const LOCK_WAIT_S: u64 = 30;
/// How long the server gets to close its connections at shutdown.
pub const SERVER_CLOSE_TIMEOUT_MS: u64 = 5_000;
/// First wait before reconnecting a lost engine event stream.
pub const EVENTS_RECONNECT_MS_MIN: u64 = 500;
/// Ceiling of that wait.
pub const EVENTS_RECONNECT_MS_MAX: u64 = 30_000;

/// Everything `run` needs.
pub struct DaemonConfig {
    pub state: StateDir,
    pub engine: Arc<dyn Engine>,
    pub settings: Settings,
    pub pull_policy: PullPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot take the state directory lock: {0}")]
    Lock(#[source] StoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("recovering interrupted operations: {0}")]
    Recover(#[source] berth_ops::OpsError),
    #[error(transparent)]
    Ops(#[from] berth_ops::OpsError),
    #[error("cannot listen on {}: {source}", .path.display())]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The daemon's clock: wall-clock milliseconds at start plus the tokio
/// clock's progress since, so tests with paused time move it too.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_ms: u64,
    base: tokio::time::Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock::at(u64::try_from(berth_store::now_ms()).unwrap_or(0))
    }

    /// A clock reading `ms` now.
    pub fn at(ms: u64) -> Clock {
        Clock {
            base_ms: ms,
            base: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.base_ms + u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Run the daemon until `shutdown` completes. See the crate docs.
pub async fn run(
    config: DaemonConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    let DaemonConfig {
        state,
        engine,
        settings,
        pull_policy,
    } = config;
    let lock = take_lock(&state).await?;
    // Every engine call is counted for `/metrics`.
    let live = Arc::new(hub::Hub::new());
    let engine: Arc<dyn Engine> =
        Arc::new(metrics::MeteredEngine::new(engine, live.metrics.clone()));
    let ctx = Ctx::with_pull_policy(
        engine.clone(),
        state.clone(),
        Arc::new(supervisor::LogReporter),
        pull_policy,
    )?;
    let recovered = berth_ops::recover(&ctx)
        .await
        .map_err(DaemonError::Recover)?;
    if !recovered.is_empty() {
        tracing::info!(count = recovered.len(), "recovered interrupted operations");
    }

    let (tx, rx) = mpsc::channel(supervisor::EVENTS_QUEUE_MAX);
    let socket = socket_path(state.root());
    let listener = server::bind(&socket).map_err(|source| DaemonError::Socket {
        path: socket.clone(),
        source,
    })?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let rpc_state = server::RpcState {
        tx: tx.clone(),
        request_timeout: settings.request_timeout,
        operation_timeout: settings.operation_timeout,
        hub: live.clone(),
    };
    let app = server::router(rpc_state.clone());
    let server = tokio::spawn(async move {
        let stopped = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "the API server failed");
        }
    });

    let mut sup = Supervisor::new(
        ctx.clone(),
        settings.clone(),
        berth_core::supervise::plan_tick,
        tx.clone(),
        Clock::start(),
    );
    sup.set_hub(live.clone());
    // Readiness does not wait for the engine's `info` (Podman takes a few
    // hundred milliseconds to gather it); status shows it once it is in.
    let info_task = {
        let engine = engine.clone();
        let slot = sup.engine_info_slot();
        // Which engine is known at once; the rest of `info` follows.
        *slot.lock().unwrap_or_else(|p| p.into_inner()) =
            serde_json::json!({ "kind": engine.kind() });
        let hub = live.clone();
        tokio::spawn(async move {
            match engine.info().await {
                Ok(info) => {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = serde_json::json!(info);
                    hub.bump();
                }
                Err(e) => tracing::warn!(error = %e, "engine info unavailable"),
            }
        })
    };
    // The HTTP API (issue 5): not being able to serve it never stops
    // supervision.
    let http_task = http::start(
        settings.listen,
        http::Parts {
            rpc: rpc_state,
            hub: live,
            ctx: ctx.clone(),
            request_timeout: settings.request_timeout,
        },
        stop_tx.subscribe(),
    )
    .await;
    // A detached daemon (`berth up`) trims its own log file.
    let log_file = state.root().join(logfile::DAEMON_LOG_FILE_NAME);
    let log_task = logfile::stderr_is(&log_file).then(|| {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(logfile::DAEMON_LOG_CHECK_S));
            loop {
                every.tick().await;
                match logfile::rotate_if_large(&log_file, logfile::DAEMON_LOG_BYTES_MAX) {
                    Ok(true) => tracing::info!(
                        kept = %logfile::rotated_path(&log_file).display(),
                        "log file rotated"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot rotate the log file"),
                }
            }
        })
    });
    let watcher = tokio::spawn(watch_engine(
        engine.clone(),
        tx.clone(),
        sup.missed_events_flag(),
    ));
    drop(tx);
    tracing::info!(
        pid = std::process::id(),
        socket = %socket.display(),
        engine = %engine.kind(),
        tick = %berth_core::duration::format_duration(settings.tick),
        "berth daemon ready"
    );

    // The loop ends on `shutdown`; stop taking requests at the same moment.
    let stop_tx2 = stop_tx.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutdown requested");
        let _ = stop_tx2.send(true);
    };
    sup.run(rx, shutdown).await;

    let _ = stop_tx.send(true);
    watcher.abort();
    let _ = watcher.await;
    info_task.abort();
    let _ = info_task.await;
    if let Some(t) = log_task {
        t.abort();
        let _ = t.await;
    }
    if let Some(mut t) = http_task {
        if tokio::time::timeout(Duration::from_millis(SERVER_CLOSE_TIMEOUT_MS), &mut t)
            .await
            .is_err()
        {
            t.abort();
            let _ = t.await;
        }
        let _ = std::fs::remove_file(http::address_path(state.root()));
    }
    let mut server = server;
    if tokio::time::timeout(Duration::from_millis(SERVER_CLOSE_TIMEOUT_MS), &mut server)
        .await
        .is_err()
    {
        server.abort();
        let _ = server.await;
    }
    let _ = std::fs::remove_file(&socket);
    drop(lock);
    tracing::info!("berth daemon stopped; containers left running");
    Ok(())
}

async fn take_lock(state: &StateDir) -> Result<berth_store::StateLock, DaemonError> {
    match state.lock() {
        Ok(l) => Ok(l),
        Err(StoreError::Locked { .. }) => {
            tracing::info!(
                "waiting up to {LOCK_WAIT_S} s for another berth process to release the state directory"
            );
            let state = state.clone();
            tokio::task::spawn_blocking(move || state.lock_wait(Duration::from_secs(LOCK_WAIT_S)))
                .await
                .map_err(|e| {
                    DaemonError::Lock(StoreError::InvalidState {
                        detail: format!("lock task failed: {e}"),
                    })
                })?
                .map_err(DaemonError::Lock)
        }
        Err(e) => Err(DaemonError::Lock(e)),
    }
}

/// Follow the engine's events for as long as the daemon runs, reconnecting
/// with capped backoff. Events only wake the loop early; after a
/// reconnect the loop is told that events may have been missed.
async fn watch_engine(engine: Arc<dyn Engine>, tx: mpsc::Sender<Event>, missed: Arc<AtomicBool>) {
    let mut wait = Duration::from_millis(EVENTS_RECONNECT_MS_MIN);
    loop {
        let connected = tokio::time::Instant::now();
        let sink = |e: EngineEvent| {
            if e.action == EngineEventAction::Other {
                return;
            }
            // Never block the engine stream: when the queue is full the
            // loop is busy anyway and the flag makes it look again.
            if tx.try_send(Event::EngineEvent { app: e.app }).is_err() {
                missed.store(true, Ordering::Relaxed);
            }
        };
        let result = engine.watch_events(&sink).await;
        match result {
            Ok(()) => tracing::info!("engine event stream ended; reconnecting"),
            Err(e) => tracing::warn!(error = %e, "engine event stream failed; reconnecting"),
        }
        if connected.elapsed() > Duration::from_secs(60) {
            wait = Duration::from_millis(EVENTS_RECONNECT_MS_MIN);
        }
        tokio::time::sleep(wait).await;
        wait = wait
            .saturating_mul(2)
            .min(Duration::from_millis(EVENTS_RECONNECT_MS_MAX));
        if tx.send(Event::EngineEvent { app: None }).await.is_err() {
            return;
        }
    }
}
