//! `berth token`: the HTTP API token, and where the dashboard is. Also the
//! one-time announcement `berth daemon` and `berth up` make when they
//! create the token.

use std::io::IsTerminal;
use std::net::SocketAddr;

use berth_daemon::http::{self, auth};
use berth_store::StateDir;
use serde_json::json;

use crate::cli::Global;
use crate::context::{CmdResult, open_state};

/// The dashboard's address: the running daemon's, else the configured
/// default.
fn dashboard_url(state: &StateDir) -> String {
    let addr = http::read_address(state.root())
        .map(|a| a.to_string())
        .unwrap_or_else(|| http::LISTEN_DEFAULT.to_string());
    format!("http://{addr}/")
}

pub fn run(g: &Global, json: bool) -> CmdResult {
    let state = open_state(g)?;
    let (token, made) = auth::ensure_token(state.root())
        .map_err(|e| anyhow::Error::new(e).context("berth token"))?;
    let url = dashboard_url(&state);
    if json {
        crate::outln!(
            "{}",
            json!({ "token": token.reveal(), "dashboard": url, "created": made })
        );
    } else {
        crate::outln!("{}", token.reveal());
        eprintln!(
            "dashboard: {url} (log in with this token); API: `Authorization: Bearer <token>` (docs/api.md)"
        );
    }
    Ok(0)
}

/// Make the token if there is none, and show it once when this call made
/// it — on the terminal only: a daemon whose output goes to a log (systemd,
/// `berth up`'s daemon.log) never writes the token there; `berth token`
/// shows it whenever needed.
pub fn announce(state: &StateDir, listen: Option<SocketAddr>) -> CmdResult<()> {
    let (token, made) = auth::ensure_token(state.root())
        .map_err(|e| anyhow::Error::new(e).context("the HTTP API token"))?;
    if !made {
        return Ok(());
    }
    let url = match listen {
        Some(a) if a.port() != 0 => format!("http://{a}/"),
        _ => dashboard_url(state),
    };
    if std::io::stdout().is_terminal() {
        crate::outln!(
            "berth: HTTP API token (shown once; `berth token` prints it again):\n  {}\n  dashboard: {url}",
            token.reveal()
        );
    } else {
        eprintln!(
            "berth: made the HTTP API token {} (`berth token` prints it)",
            auth::token_path(state.root()).display()
        );
    }
    Ok(())
}
