use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::cli::Global;
use crate::context::{CmdResult, status_report};
use crate::output::print_json;

pub async fn run(g: &Global, json: bool) -> CmdResult {
    let report = status_report(g).await?;
    if json {
        print_json(&report)?;
    } else if report.apps.is_empty() {
        crate::outln!("nothing installed");
    } else {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["app", "state", "wanted", "health", "chain", "started", "ui"]);
        for a in &report.apps {
            let health = match (&a.health, &a.health_detail) {
                (Some(h), Some(d)) => format!("{h:?}: {d}").to_lowercase(),
                _ => "-".into(),
            };
            // A node's sync progress; a gated app's passive badges.
            let mut chain: Vec<String> = Vec::new();
            if let Some(n) = &a.chain {
                chain.push(n.summary.clone());
            }
            if let Some(g) = &a.gate {
                chain.extend(g.gate.badges.iter().cloned());
            }
            let mut restarts = String::new();
            if a.restarts > 0 {
                restarts = format!(" ({} restarts)", a.restarts);
            }
            t.add_row([
                format!("{}{restarts}", a.id),
                if a.degraded {
                    format!("✗ {}", a.summary)
                } else {
                    a.summary.clone()
                },
                format!("{:?}", a.desired).to_lowercase(),
                health,
                if chain.is_empty() {
                    "-".into()
                } else {
                    chain.join("\n")
                },
                a.started_at.clone().unwrap_or_else(|| "-".into()),
                a.web_ui.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        crate::outln!("{t}");
        for a in &report.apps {
            if let Some(q) = &a.quarantine {
                let code = q
                    .exit_code
                    .map(|c| format!(" (exit code {c})"))
                    .unwrap_or_default();
                crate::outln!("{}: crash-loop quarantine{code}: {}", a.id, q.reason);
                for l in &q.last_logs {
                    crate::outln!("    | {l}");
                }
                crate::outln!(
                    "  supervision leaves it alone until `berth start {}` or a changed spec",
                    a.id
                );
            }
        }
        let gated: Vec<&str> = report
            .apps
            .iter()
            .filter(|a| a.gate.as_ref().is_some_and(|g| g.gate.keeps_stopped()))
            .map(|a| a.id.as_str())
            .collect();
        if !gated.is_empty() {
            crate::outln!(
                "kept stopped by their gate (intentional): {}; `berth gate status` shows why",
                gated.join(", ")
            );
        }
        if report.degraded > 0 {
            crate::outln!("{} app(s) need attention", report.degraded);
        }
    }
    Ok(report.exit_code() as u8)
}
