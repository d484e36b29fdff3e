use anyhow::Context;
use serde_json::json;

use crate::cli::Global;
use crate::context::{CmdResult, open_state};
use crate::output::print_json;

/// Revisions are read from the store, which any process may read while the
/// daemon writes it. The manifests themselves stay out of the output: an
/// app's environment may hold values its owner would not print.
pub fn run(g: &Global, app: &str, json: bool) -> CmdResult {
    let store = open_state(g)?.store().map_err(anyhow::Error::new)?;
    let revisions = store
        .revisions(app)
        .with_context(|| format!("cannot read the revisions of app {app}"))?;
    if revisions.is_empty() && store.get_app(app).map_err(anyhow::Error::new)?.is_none() {
        return Err(anyhow::anyhow!("app {app} is not installed").into());
    }
    if json {
        let out: Vec<_> = revisions
            .iter()
            .map(|r| {
                json!({
                    "revision": r.seq,
                    "at_ms": r.at_ms,
                    "outcome": r.outcome,
                    "image": r.image,
                    "image_id": r.image_id,
                    "spec_hash": r.spec_hash,
                    "error": r.error,
                })
            })
            .collect();
        print_json(&out)?;
        return Ok(0);
    }
    for r in &revisions {
        let mut line = format!(
            "{:>3}  {}  {:<13}  {}",
            r.seq,
            berth_verify::report::rfc3339(u64::try_from(r.at_ms).unwrap_or_default()),
            r.outcome.as_str(),
            r.image
        );
        if let Some(e) = &r.error {
            line.push_str(&format!("  ({e})"));
        }
        crate::outln!("{line}");
    }
    Ok(0)
}
