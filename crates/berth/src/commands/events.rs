use std::time::Duration;

use berth_store::EventRecord;
use serde_json::json;

use crate::cli::Global;
use crate::context::{CmdResult, daemon, open_state, rpc_call};
use crate::output::print_json;

/// How often `--follow` looks for new events.
pub const FOLLOW_POLL_MS: u64 = 1_000;
/// Most events fetched by one poll of `--follow`.
pub const FOLLOW_BATCH_MAX: usize = 1_000;

pub fn fmt_ms(ms: i64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}")
}

fn print_line(e: &EventRecord) {
    crate::outln!(
        "{} {:<10} {}",
        fmt_ms(e.at_ms),
        e.app.as_deref().unwrap_or("-"),
        e.message
    );
}

/// Events from the daemon when one answers, else from the store (which
/// any process may read while another writes).
async fn fetch(
    g: &Global,
    app: Option<&str>,
    after_id: Option<i64>,
    limit: usize,
) -> CmdResult<Vec<EventRecord>> {
    if let Some(c) = daemon(g).await {
        let r = rpc_call(
            &c,
            "events.list",
            json!({ "app": app, "after_id": after_id, "limit": limit }),
        )
        .await?;
        return Ok(serde_json::from_value(r["events"].clone()).map_err(anyhow::Error::new)?);
    }
    let store = open_state(g)?.store().map_err(anyhow::Error::new)?;
    Ok(match after_id {
        None => store.tail_events(app, limit),
        Some(after) => store.events(app, Some(after), limit),
    }
    .map_err(anyhow::Error::new)?)
}

pub async fn run(
    g: &Global,
    app: Option<&str>,
    limit: usize,
    follow: bool,
    json: bool,
) -> CmdResult {
    let events = fetch(g, app, None, limit).await?;
    let mut last = events.last().map(|e| e.id);
    if json && !follow {
        print_json(&events)?;
        return Ok(0);
    }
    for e in &events {
        if json {
            crate::outln!("{}", serde_json::to_string(e).map_err(anyhow::Error::new)?);
        } else {
            print_line(e);
        }
    }
    if !follow {
        return Ok(0);
    }
    if last.is_none() {
        // Nothing shown yet: start after the newest event, whatever it is.
        last = Some(fetch(g, None, None, 1).await?.last().map_or(0, |e| e.id));
    }
    loop {
        tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
        let batch = fetch(g, app, last, FOLLOW_BATCH_MAX).await?;
        for e in &batch {
            if json {
                crate::outln!("{}", serde_json::to_string(e).map_err(anyhow::Error::new)?);
            } else {
                print_line(e);
            }
        }
        if let Some(e) = batch.last() {
            last = Some(e.id);
        }
    }
}
