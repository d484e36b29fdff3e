use serde::Serialize;

use crate::cli::{EngineArg, Global};
use crate::context::{CmdResult, connect_engine, open_state};
use crate::output::print_json;

fn fmt_limit(v: Option<u64>) -> String {
    v.map(|v| v.to_string())
        .unwrap_or_else(|| "unlimited".into())
}

#[derive(Serialize)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

pub async fn run(g: &Global, json: bool) -> CmdResult {
    let mut checks = Vec::new();
    let host = berth_engine::detect::detect_host();
    let adjust = berth_engine::detect::podman_adjustments(&host);
    let limit = |l: &Option<berth_engine::detect::Limit>| match l {
        Some(l) => format!("{}/{}", fmt_limit(l.soft), fmt_limit(l.hard)),
        None => "unknown".into(),
    };
    checks.push(Check {
        name: "host".into(),
        ok: true,
        detail: format!(
            "cgroups {:?}; OCI runtimes {}; systemd as PID 1: {}; nofile {}, nproc {} (soft/hard); CAP_SYS_RESOURCE: {}",
            host.cgroup_mode,
            if host.oci_runtimes.is_empty() { "none".to_string() } else { host.oci_runtimes.join(", ") },
            if host.systemd_pid1 { "yes" } else { "no" },
            limit(&host.nofile),
            limit(&host.nproc),
            if host.cap_sys_resource { "yes" } else { "no" },
        )
        .to_lowercase(),
    });
    if matches!(g.engine, EngineArg::Podman | EngineArg::Auto) {
        let detail = if adjust.notes.is_empty() {
            "no adjustments needed".to_string()
        } else {
            adjust.notes.join("; ")
        };
        checks.push(Check {
            name: "podman adjustments".into(),
            ok: true,
            detail,
        });
    }
    match open_state(g).and_then(|s| s.store().map_err(|e| anyhow::Error::new(e).into())) {
        Ok(_) => checks.push(Check {
            name: "state directory".into(),
            ok: true,
            detail: g.state_dir.display().to_string(),
        }),
        Err(f) => checks.push(Check {
            name: "state directory".into(),
            ok: false,
            detail: format!("{:#}", f.error),
        }),
    }
    match connect_engine(g).await {
        Ok(engine) => match engine.info().await {
            Ok(info) => checks.push(Check {
                name: "engine".into(),
                ok: true,
                detail: format!(
                    "{} {} (API {}) at {}; runtime {}, cgroups {} ({})",
                    info.kind,
                    info.version,
                    info.api_version,
                    info.endpoint,
                    info.runtime,
                    info.cgroup_version,
                    info.cgroup_driver
                ),
            }),
            Err(e) => checks.push(Check {
                name: "engine".into(),
                ok: false,
                detail: e.to_string(),
            }),
        },
        Err(f) => checks.push(Check {
            name: "engine".into(),
            ok: false,
            detail: format!("{:#}", f.error),
        }),
    }
    let ok = checks.iter().all(|c| c.ok);
    if json {
        print_json(&serde_json::json!({ "ok": ok, "checks": checks }))?;
    } else {
        for c in &checks {
            crate::outln!(
                "{} {:<20} {}",
                if c.ok { "✓" } else { "✗" },
                c.name,
                c.detail
            );
        }
    }
    Ok(if ok { 0 } else { 1 })
}
