use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use crate::cli::Global;
use crate::context::{CmdResult, status_report};
use crate::output::print_json;

#[derive(Serialize)]
struct Row {
    id: String,
    stack: String,
    companion_of: Option<String>,
    image: String,
    container: String,
    state: String,
    ports: Vec<String>,
}

pub async fn run(g: &Global, json: bool) -> CmdResult {
    let report = status_report(g).await?;
    let rows: Vec<Row> = report
        .apps
        .iter()
        .map(|a| Row {
            id: a.id.clone(),
            stack: a.stack.clone(),
            companion_of: a.companion_of.clone(),
            image: a.image.clone(),
            container: a.container.clone(),
            state: a.observed.to_string(),
            ports: a
                .ports
                .iter()
                .map(|p| {
                    let ip = p
                        .host_ip
                        .clone()
                        .map(|i| format!("{i}:"))
                        .unwrap_or_default();
                    format!("{ip}{}->{}/{:?}", p.host_port, p.container_port, p.protocol)
                        .to_lowercase()
                })
                .collect(),
        })
        .collect();
    if json {
        print_json(&rows)?;
    } else {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["app", "stack", "state", "image", "container", "ports"]);
        for r in &rows {
            let id = match &r.companion_of {
                Some(p) => format!("{} (companion of {p})", r.id),
                None => r.id.clone(),
            };
            t.add_row([
                id,
                r.stack.clone(),
                r.state.clone(),
                r.image.clone(),
                r.container.clone(),
                r.ports.join(", "),
            ]);
        }
        crate::outln!("{t}");
    }
    Ok(0)
}
