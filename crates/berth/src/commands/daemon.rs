use std::path::PathBuf;

use berth_daemon::{DaemonConfig, DaemonError, Settings};
use berth_store::StoreError;

use crate::cli::Global;
use crate::context::{CmdResult, EXIT_LOCKED, Failure, connect_engine, open_state};

pub async fn run(
    g: &Global,
    config: Option<PathBuf>,
    tick: Option<String>,
    listen: Option<String>,
) -> CmdResult {
    if let Some(c) = crate::context::daemon(g).await {
        return Err(Failure {
            error: anyhow::anyhow!(
                "a berth daemon already runs for this state directory (it answers on {})",
                c.socket().display()
            ),
            code: EXIT_LOCKED,
        });
    }
    let state = open_state(g)?;
    let mut settings = Settings::load(config.as_deref(), state.root(), |k| std::env::var(k).ok())
        .map_err(|e| Failure::usage(anyhow::Error::new(e)))?;
    if let Some(t) = tick {
        settings
            .set("--tick", "tick", &t)
            .and_then(|()| settings.check())
            .map_err(|e| Failure::usage(anyhow::Error::new(e)))?;
    }
    if let Some(l) = listen {
        settings
            .set("--listen", "listen", &l)
            .map_err(|e| Failure::usage(anyhow::Error::new(e)))?;
    }
    if settings.listen.is_some() {
        crate::commands::token::announce(&state, settings.listen)?;
    }
    let engine = connect_engine(g).await?;
    let pull_policy = berth_ops::PullPolicy {
        attempts: berth_ops::PULL_ATTEMPTS_DEFAULT,
        backoff: g.pull_backoff.0.clone(),
    };
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM"),
                    _ = int.recv() => tracing::info!("SIGINT"),
                }
            }
            _ => {
                tracing::error!("cannot listen for signals; stop the daemon with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    };
    let config = DaemonConfig {
        state,
        engine,
        settings,
        pull_policy,
    };
    match berth_daemon::run(config, shutdown).await {
        Ok(()) => Ok(0),
        Err(DaemonError::Lock(e @ StoreError::Locked { .. })) => Err(Failure {
            error: anyhow::Error::new(e)
                .context("another berth daemon or command holds the state directory"),
            code: EXIT_LOCKED,
        }),
        Err(e) => Err(anyhow::Error::new(e).context("berth daemon").into()),
    }
}
