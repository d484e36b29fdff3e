use crate::cli::Global;
use crate::context::{CmdResult, Route, open_state, route};
use crate::output::print_json;

pub async fn run(g: &Global, json: bool) -> CmdResult {
    // Direct: `route` takes the lock and recovers. A running daemon
    // recovered when it started and holds the lock since, so the journal
    // is read as it stands.
    let (store, _guard) = match route(g).await? {
        Route::Direct(m) => {
            let store = open_state(g)?.store().map_err(anyhow::Error::new)?;
            (store, Some(m))
        }
        Route::Daemon(_) => (open_state(g)?.store().map_err(anyhow::Error::new)?, None),
    };
    let recent = store.recent_ops(None, 20).map_err(anyhow::Error::new)?;
    let unfinished = store.unfinished_ops().map_err(anyhow::Error::new)?;
    if json {
        print_json(&serde_json::json!({
            "unfinished": unfinished.iter().map(|o| serde_json::json!({"op": o.id, "kind": o.kind, "app": o.app})).collect::<Vec<_>>(),
            "recent": recent.iter().map(|o| serde_json::json!({"op": o.id, "kind": o.kind, "app": o.app, "state": o.state, "error": o.error})).collect::<Vec<_>>(),
        }))?;
    } else if unfinished.is_empty() {
        crate::outln!("no interrupted operations");
    } else {
        for o in &unfinished {
            crate::outln!("still interrupted: {} of {} (op {})", o.kind, o.app, o.id);
        }
    }
    Ok(if unfinished.is_empty() { 0 } else { 1 })
}
