//! The Markdown report (bench/RESULTS.md).

use std::fmt::Write as _;

use super::results::{Outcome, Results, Row, Rows};
use super::tools::Tool;

/// Targets of issue 2 ("Benchmarks"). They apply to berth on either engine.
pub const COLD_UP_TARGET_S: f64 = 2.0;
pub const NOOP_UP_TARGET_S: f64 = 0.050;
pub const DOWN_TARGET_S: f64 = 1.0;
pub const HEALTHY_UP_TARGET_S: f64 = 4.0;
pub const ENGINE_CALLS_TARGET: f64 = 4.0;
/// "Time grows linearly": the per-app time of the longest chain may exceed
/// that of the shortest by at most this factor.
pub const PER_APP_GROWTH_MAX: f64 = 1.5;

/// Numbers measured earlier on these machines (shared/design/environment.md
/// and issue 2), for the peers.
fn baseline(scenario: u8, tool: Tool) -> &'static str {
    match (scenario, tool) {
        (1, Tool::PodmanCompose) => "12.4 s",
        (1, Tool::DockerCompose) => "4.1 s",
        (1, Tool::PodmanRunFloor) => "2.2 s",
        (2, Tool::PodmanCompose) => "21 s",
        (2, Tool::DockerCompose) => "0.53 s",
        (3, Tool::PodmanCompose | Tool::DockerCompose) => "~2 s",
        (4, Tool::DockerCompose) => "14.2 s",
        (4, Tool::PodmanCompose) => "ignores the condition",
        (5, Tool::PodmanCompose) => "never finishes 50 deep",
        _ => "—",
    }
}

pub fn fmt_secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 100.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.0} s")
    }
}

fn fmt_target(s: f64) -> String {
    format!(
        "≤ {}",
        if s < 1.0 {
            format!("{:.0} ms", s * 1000.0)
        } else {
            format!("{s:.1} s")
        }
    )
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

/// The median, or why there is none.
fn cell(row: Option<&Row>, timeout_s: u64) -> String {
    let Some(row) = row else {
        return "not run".to_string();
    };
    match &row.summary {
        Some(s) if row.failures() == 0 => fmt_secs(s.median),
        Some(s) => format!(
            "{} ({} of {} failed)",
            fmt_secs(s.median),
            row.failures(),
            row.samples.len()
        ),
        None if row.timed_out() => format!("timeout (> {timeout_s} s)"),
        None if row.samples.is_empty() => "not run".to_string(),
        None => "failed".to_string(),
    }
}

/// ✓ or ✗ of a berth row against `target`; a berth row without a median
/// (failed, timed out) misses it.
fn verdict(row: &Row, target: f64) -> Option<bool> {
    if !row.tool.is_berth() {
        return None;
    }
    Some(
        row.summary
            .is_some_and(|s| s.median <= target && row.failures() == 0),
    )
}

fn cell_with_verdict(row: Option<&Row>, target: Option<f64>, timeout_s: u64) -> String {
    let text = cell(row, timeout_s);
    match (row, target) {
        (Some(r), Some(t)) if !r.samples.is_empty() => match verdict(r, t) {
            Some(ok) => format!("{text} {}", mark(ok)),
            None => text,
        },
        _ => text,
    }
}

struct Scenario<'a> {
    number: u8,
    rows: &'a Rows,
    target: Option<f64>,
}

fn timed_table(out: &mut String, sc: &Scenario, tools: &[Tool], timeout_s: u64) {
    out.push_str("| tool | apps | median | min | max | runs ok | target (issue 2) | vs target | measured earlier on these machines |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---|:---:|---|\n");
    for tool in tools {
        for row in sc.rows.0.iter().filter(|r| r.tool == *tool) {
            let (min, max) = match &row.summary {
                Some(s) => (fmt_secs(s.min), fmt_secs(s.max)),
                None => ("—".to_string(), "—".to_string()),
            };
            let (target, vs) = match (sc.target, verdict(row, sc.target.unwrap_or(0.0))) {
                (Some(t), Some(ok)) => (fmt_target(t), mark(ok).to_string()),
                _ => ("—".to_string(), "—".to_string()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {min} | {max} | {}/{} | {target} | {vs} | {} |",
                tool.label(),
                row.apps,
                cell(Some(row), timeout_s),
                row.samples.len() - row.failures(),
                row.samples.len(),
                baseline(sc.number, *tool),
            );
        }
    }
    row_notes(out, sc.rows, tools);
}

/// Row notes and the first failure of each row, as a list under a table.
fn row_notes(out: &mut String, rows: &Rows, tools: &[Tool]) {
    let mut lines = Vec::new();
    for tool in tools {
        for row in rows.0.iter().filter(|r| r.tool == *tool) {
            for note in &row.notes {
                lines.push(format!("- {} ({} apps): {note}", tool.label(), row.apps));
            }
            if let Some(s) = row.samples.iter().find(|s| s.outcome != Outcome::Ok) {
                let detail = s
                    .detail
                    .as_deref()
                    .unwrap_or("no detail")
                    .replace('\n', " ⏎ ")
                    .replace('|', "\\|");
                lines.push(format!(
                    "- {} ({} apps), run {}: `{detail}`",
                    tool.label(),
                    row.apps,
                    s.rep
                ));
            }
        }
    }
    if !lines.is_empty() {
        out.push('\n');
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
}

fn per_app(row: &Row) -> Option<f64> {
    row.summary.map(|s| s.median / row.apps as f64)
}

/// Per-app time of the longest chain over that of the shortest, for a berth
/// tool with at least two lengths measured.
pub fn growth(rows: &[&Row]) -> Option<(usize, usize, f64)> {
    let measured: Vec<&&Row> = rows.iter().filter(|r| r.summary.is_some()).collect();
    let shortest = measured.iter().min_by_key(|r| r.apps)?;
    let longest = measured.iter().max_by_key(|r| r.apps)?;
    if shortest.apps == longest.apps {
        return None;
    }
    Some((
        shortest.apps,
        longest.apps,
        per_app(longest)? / per_app(shortest)?,
    ))
}

pub fn render(r: &Results) -> String {
    let complete = r.complete;
    let timeout_s = r.config.timeout_s;
    let tools = &r.config.tools;
    let m = &r.manifest;
    let mut out = String::new();
    out.push_str("# berth benchmark results\n\n");
    if !complete {
        out.push_str(
            "**Partial: the run was still going (or was interrupted) when this was written.**\n\n",
        );
    }
    let _ = writeln!(
        out,
        "Written by `{}` on {}. Do not edit by hand: re-run to refresh. Raw numbers: [results.json](results.json). \
         How to run and what each scenario means: [README.md](README.md).\n",
        r.config.command, m.date
    );
    let _ = writeln!(
        out,
        "Every number is the wall-clock time of one command, from spawn to exit, median over {} runs \
         (min and max in the tables below); each command is killed after {timeout_s} s and reported as a timeout. \
         Every service runs `{}` from the local image `{}` (no pull), and service k depends on service k-1. \
         A run only counts as successful when the expected containers really run afterwards (or are gone, after `down`). \
         berth's cold `up` includes starting its supervising daemon (`berth daemon`, detached), which then serves \
         the no-op `up` and the `down`; the bench stops that daemon after each measurement. \
         berth's stacks set `settle = \"0s\"`: like the compose tools, a service without a health check counts \
         as started once its container runs (berth's default watches it 500 ms longer, per tier).\n",
        r.config.reps,
        super::stacks::SERVICE_COMMAND.join(" "),
        r.config.image,
    );

    out.push_str("## Environment\n\n| | |\n|---|---|\n");
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_string());
    let rows: Vec<(&str, String)> = vec![
        ("date", m.date.clone()),
        ("OS / kernel", format!("{} / {}", m.os, m.kernel)),
        ("CPUs", m.cpus.to_string()),
        (
            "load average (1/5/15 min) at start → end",
            format!("{} → {}", m.load_start, m.load_end),
        ),
        ("podman", opt(&m.podman)),
        (
            "docker (client / server)",
            format!("{} / {}", opt(&m.docker_client), opt(&m.docker_server)),
        ),
        ("podman-compose", opt(&m.podman_compose)),
        ("docker-compose", opt(&m.docker_compose)),
        ("runc", opt(&m.runc)),
        ("berth revision", m.berth_revision.clone()),
        ("berth binary", opt(&m.berth_version)),
        (
            "image",
            format!(
                "{} (podman {}, docker {})",
                m.image,
                opt(&m.image_id_podman),
                opt(&m.image_id_docker)
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    out.push('\n');

    // Summary.
    out.push_str("## Summary (medians)\n\n");
    out.push_str("| scenario | berth target (issue 2) |");
    for t in tools {
        let _ = write!(out, " {} |", t.label());
    }
    out.push_str(" measured earlier (environment.md) |\n|---|---|");
    for _ in tools {
        out.push_str("---:|");
    }
    out.push_str("---|\n");
    let summary_line = |out: &mut String,
                        name: &str,
                        rows: &Rows,
                        apps: usize,
                        target: Option<f64>,
                        earlier: &str| {
        if rows.0.is_empty() {
            return;
        }
        let t = target.map(fmt_target).unwrap_or_else(|| "—".to_string());
        let _ = write!(out, "| {name} | {t} |");
        for tool in tools {
            let _ = write!(
                out,
                " {} |",
                cell_with_verdict(rows.get(*tool, apps), target, timeout_s)
            );
        }
        let _ = writeln!(out, " {earlier} |");
    };
    summary_line(
        &mut out,
        "1. cold `up`, 10-app chain",
        &r.cold_up,
        10,
        Some(COLD_UP_TARGET_S),
        "podman-compose 12.4 s, docker-compose 4.1 s, 10× `podman run` 2.2 s",
    );
    summary_line(
        &mut out,
        "2. no-op `up`",
        &r.noop_up,
        10,
        Some(NOOP_UP_TARGET_S),
        "podman-compose 21 s, docker-compose 0.53 s",
    );
    summary_line(
        &mut out,
        "3. `down`, 10 apps",
        &r.down,
        10,
        Some(DOWN_TARGET_S),
        "compose ~2 s",
    );
    summary_line(
        &mut out,
        "4. cold `up`, 10-app healthy chain",
        &r.healthy_up,
        10,
        Some(HEALTHY_UP_TARGET_S),
        "docker-compose 14.2 s; podman-compose ignores the condition",
    );
    let longest = r.chain.0.iter().map(|row| row.apps).max();
    if let Some(n) = longest {
        summary_line(
            &mut out,
            &format!("5. cold `up`, {n}-app chain"),
            &r.chain,
            n,
            None,
            "podman-compose never finishes a 50-deep chain",
        );
    }
    if !r.install_one.0.is_empty() {
        let _ = write!(
            out,
            "| 6. engine API calls, single-app install | ≤ {ENGINE_CALLS_TARGET:.0} |"
        );
        for tool in tools {
            let text = match r.install_one.0.iter().find(|row| row.tool == *tool) {
                Some(row) => calls_cell(row, r.engine_calls_available),
                None => "—".to_string(),
            };
            let _ = write!(out, " {text} |");
        }
        out.push_str(" — |\n");
    }
    let floors: Vec<String> = Tool::FLOORS
        .into_iter()
        .filter_map(|f| r.cold_up.get(f, 10))
        .map(|row| format!("10× {}: {}", row.tool.label(), cell(Some(row), timeout_s)))
        .collect();
    if !floors.is_empty() {
        let _ = writeln!(
            out,
            "\nReference floor for scenario 1, this run: {}. Measured earlier on a quiet machine: 10× \
             `podman run` 2.2 s; a floor well above that means the machine was busy during this run, which \
             inflates every figure here (compare the load average above).",
            floors.join("; ")
        );
    }
    out.push('\n');
    misses(&mut out, r);

    // Scenarios 1-4: one table each, when measured.
    let sections: [(&Scenario, &str, &str, &str); 4] = [
        (
            &Scenario {
                number: 1,
                rows: &r.cold_up,
                target: Some(COLD_UP_TARGET_S),
            },
            "1. Cold `up` of a 10-app chain (condition: started)",
            "From nothing (no containers, no network; image present) to all ten running. \
             berth: `berth up STACK.toml` with a fresh state directory; peers: `compose up -d`.",
            "The sequential `run -d` rows are a reference floor, not peers: the same ten containers started \
             one after the other by a shell script with the engine's CLI (no dependency handling, no network or \
             labels of their own). Measured earlier on these machines: ten sequential `podman run` take 2.2 s.",
        ),
        (
            &Scenario {
                number: 2,
                rows: &r.noop_up,
                target: Some(NOOP_UP_TARGET_S),
            },
            "2. No-op `up` when everything runs",
            "The same `up` command again, right after scenario 1's, with all ten containers running.",
            "",
        ),
        (
            &Scenario {
                number: 3,
                rows: &r.down,
                target: Some(DOWN_TARGET_S),
            },
            "3. `down` of the 10 apps",
            "berth: `berth down STACK.toml --purge`; peers: `compose down -v`. Every service exits at once on \
             SIGTERM, so this measures the tools, not a grace period.",
            "",
        ),
        (
            &Scenario {
                number: 4,
                rows: &r.healthy_up,
                target: Some(HEALTHY_UP_TARGET_S),
            },
            "4. Cold `up` of a 10-app chain where each link waits until the previous one is healthy",
            "Every service has the health check `sh -c true`, interval 1 s, timeout 1 s, 3 retries \
             (berth: `[apps.sNN.health]` and `depends_on = { sPREV = \"healthy\" }`; compose: `healthcheck:` and \
             `depends_on: {sPREV: {condition: service_healthy}}`).",
            "podman-compose 1.0.3 ignores `condition: service_healthy` (it starts the services one after the other \
             with a fixed 1 s pause after each), so its figure is not a healthy chain; Podman's own health checks \
             do not even run on these machines (they need systemd timers). docker-compose 1.29 with Docker 20.10 \
             runs the first probe only after one full interval, so each link costs at least 1 s there.",
        ),
    ];
    let mut with_floors = tools.clone();
    with_floors.extend(
        Tool::FLOORS
            .into_iter()
            .filter(|f| r.cold_up.0.iter().any(|row| row.tool == *f)),
    );
    for (sc, title, intro, outro) in sections {
        if sc.rows.0.is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {title}\n\n{intro}\n");
        let shown = if sc.number == 1 { &with_floors } else { tools };
        timed_table(&mut out, sc, shown, timeout_s);
        if !outro.is_empty() {
            let _ = writeln!(out, "\n{outro}");
        }
        out.push('\n');
    }

    chain_section(&mut out, r, tools, timeout_s);
    calls_section(&mut out, r, tools);

    if !r.log.is_empty() {
        out.push_str("## Run log\n\n");
        for l in &r.log {
            let _ = writeln!(out, "- {l}");
        }
        out.push('\n');
    }
    out
}

fn calls_cell(row: &Row, available: Option<bool>) -> String {
    match (available, row.engine_calls()) {
        (_, Some(c)) => format!("{c:.0} {}", mark(c <= ENGINE_CALLS_TARGET)),
        (Some(false), None) => "not available".to_string(),
        _ if row.failures() > 0 => "failed".to_string(),
        _ => "—".to_string(),
    }
}

/// Every berth figure that misses its target, in one list, so none hides in
/// a table.
fn misses(out: &mut String, r: &Results) {
    let mut lines = Vec::new();
    let checks: [(&str, &Rows, f64); 4] = [
        ("cold up, 10-app chain", &r.cold_up, COLD_UP_TARGET_S),
        ("no-op up", &r.noop_up, NOOP_UP_TARGET_S),
        ("down, 10 apps", &r.down, DOWN_TARGET_S),
        ("healthy chain, 10 apps", &r.healthy_up, HEALTHY_UP_TARGET_S),
    ];
    for (name, rows, target) in checks {
        for row in rows
            .0
            .iter()
            .filter(|row| row.tool.is_berth() && row.apps == 10)
        {
            if verdict(row, target) == Some(false) {
                lines.push(format!(
                    "{}: {name} took {} (target {})",
                    row.tool.label(),
                    cell(Some(row), r.config.timeout_s),
                    fmt_target(target)
                ));
            }
        }
    }
    for tool in [Tool::BerthPodman, Tool::BerthDocker] {
        let rows = chain_rows(r, tool);
        if let Some((a, b, ratio)) = growth(&rows)
            && ratio > PER_APP_GROWTH_MAX
        {
            lines.push(format!(
                "{}: per-app time at {b} apps is {ratio:.2}× that at {a} apps (linear: ≤ {PER_APP_GROWTH_MAX}×)",
                tool.label()
            ));
        }
        if let Some(row) = r.install_one.0.iter().find(|row| row.tool == tool)
            && let Some(c) = row.engine_calls()
            && c > ENGINE_CALLS_TARGET
        {
            lines.push(format!(
                "{}: a single-app install makes {c:.0} engine API calls (aim ≤ {ENGINE_CALLS_TARGET:.0})",
                tool.label()
            ));
        }
    }
    if r.engine_calls_available == Some(false) {
        lines.push("engine API call counts are not available from this berth binary".to_string());
    }
    if lines.is_empty() {
        out.push_str("Every berth figure measured meets its target.\n\n");
    } else {
        out.push_str("**berth misses:**\n\n");
        for l in lines {
            let _ = writeln!(out, "- {l}");
        }
        out.push('\n');
    }
}

/// A tool's rows of scenario 5, the 10-app point taken from scenario 1.
fn chain_rows(r: &Results, tool: Tool) -> Vec<&Row> {
    let mut rows: Vec<&Row> = r.cold_up.0.iter().filter(|row| row.tool == tool).collect();
    let longer: Vec<&Row> = r
        .chain
        .0
        .iter()
        .filter(|row| row.tool == tool && rows.iter().all(|x| x.apps != row.apps))
        .collect();
    rows.extend(longer);
    rows.sort_by_key(|row| row.apps);
    rows
}

fn chain_section(out: &mut String, r: &Results, tools: &[Tool], timeout_s: u64) {
    if r.chain.0.is_empty() {
        return;
    }
    out.push_str("## 5. Longer chains: cold `up`, growth with length\n\n");
    out.push_str(
        "berth at every length; the peers at the longest only (their 10-app point is scenario 1). \
         \"Linear\" here: the per-app time of the longest chain is at most \
         1.5× that of the 10-app chain.\n\n",
    );
    out.push_str("| tool | apps | median | min | max | per app | runs ok | growth (per app vs. shortest) | measured earlier |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---|---|\n");
    for tool in tools {
        let rows = chain_rows(r, *tool);
        let shortest = rows.iter().find(|row| row.summary.is_some()).copied();
        for row in &rows {
            let (min, max) = match &row.summary {
                Some(s) => (fmt_secs(s.min), fmt_secs(s.max)),
                None => ("—".to_string(), "—".to_string()),
            };
            let per = per_app(row)
                .map(fmt_secs)
                .unwrap_or_else(|| "—".to_string());
            let growth = match (shortest, per_app(row)) {
                (Some(s), Some(p)) if s.apps != row.apps => {
                    let ratio = p / per_app(s).unwrap_or(p);
                    let verdict = if tool.is_berth() {
                        format!(" {}", mark(ratio <= PER_APP_GROWTH_MAX))
                    } else {
                        String::new()
                    };
                    format!("{ratio:.2}×{verdict}")
                }
                _ => "—".to_string(),
            };
            let earlier = if row.apps >= 50 {
                baseline(5, *tool)
            } else {
                "—"
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {min} | {max} | {per} | {}/{} | {growth} | {earlier} |",
                tool.label(),
                row.apps,
                cell(Some(row), timeout_s),
                row.samples.len() - row.failures(),
                row.samples.len(),
            );
        }
    }
    row_notes(out, &r.chain, tools);
    out.push_str(
        "\npodman-compose 1.0.3 computes each service's transitive dependencies by plain recursion \
         (`rec_deps`), which is exponential in the depth of a chain: it never gets to start a container. \
         A peer that times out is not repeated.\n\n",
    );
}

fn calls_section(out: &mut String, r: &Results, tools: &[Tool]) {
    if r.install_one.0.is_empty() {
        return;
    }
    out.push_str("## 6. Engine API calls per single-app install\n\n");
    out.push_str(
        "`BERTH_REPORT_CALLS=1 berth --stack ONE.toml install s01` on a fresh state directory, the image already \
         present (so no pull; any image check berth makes is counted). berth prints `engine-calls: N` on stderr \
         at exit. The same count from the 10-app runs is shown for context. The count is the CLI process's own: \
         a command served by the running `berth daemon` over its socket (the no-op `up` and the `down` \
         once the cold `up` has started the daemon) shows 0 here, since its engine calls are made in the \
         daemon. The peers are not instrumented.\n\n",
    );
    match r.engine_calls_available {
        Some(false) => out.push_str(
            "**Not available:** this berth binary does not print `engine-calls:` with `BERTH_REPORT_CALLS=1`.\n\n",
        ),
        None => out.push_str("No berth run succeeded, so the counts are unknown.\n\n"),
        Some(true) => {}
    }
    out.push_str("| berth on | calls, single-app install | target (issue 2) | vs target | install time | calls, cold up of 10 | calls, no-op up | calls, down of 10 |\n");
    out.push_str("|---|---:|---|:---:|---:|---:|---:|---:|\n");
    let calls = |rows: &Rows, tool: Tool| {
        rows.get(tool, 10)
            .and_then(Row::engine_calls)
            .map(|c| format!("{c:.0}"))
            .unwrap_or_else(|| "—".to_string())
    };
    for tool in tools.iter().filter(|t| t.is_berth()) {
        let Some(row) = r.install_one.0.iter().find(|row| row.tool == *tool) else {
            continue;
        };
        let (count, vs) = match row.engine_calls() {
            Some(c) => (
                format!("{c:.0}"),
                mark(c <= ENGINE_CALLS_TARGET).to_string(),
            ),
            None if r.engine_calls_available == Some(false) => {
                ("not available".to_string(), "—".to_string())
            }
            None => ("failed".to_string(), "✗".to_string()),
        };
        let time = row
            .summary
            .map(|s| fmt_secs(s.median))
            .unwrap_or_else(|| "—".to_string());
        let _ = writeln!(
            out,
            "| {} | {count} | ≤ {ENGINE_CALLS_TARGET:.0} | {vs} | {time} | {} | {} | {} |",
            tool.engine().cli(),
            calls(&r.cold_up, *tool),
            calls(&r.noop_up, *tool),
            calls(&r.down, *tool),
        );
    }
    row_notes(out, &r.install_one, tools);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::Sample;

    fn row(tool: Tool, apps: usize, secs: &[f64]) -> Row {
        let mut r = Row::new(tool, apps);
        for (i, s) in secs.iter().enumerate() {
            r.push(Sample {
                rep: i + 1,
                outcome: Outcome::Ok,
                secs: *s,
                detail: None,
                containers_after: None,
                engine_calls: None,
                load: String::new(),
            });
        }
        r
    }

    #[test]
    fn durations_are_shown_in_readable_units() {
        assert_eq!(fmt_secs(0.0384), "38 ms");
        assert_eq!(fmt_secs(2.0), "2.00 s");
        assert_eq!(fmt_secs(300.2), "300 s");
        assert_eq!(fmt_target(0.05), "≤ 50 ms");
        assert_eq!(fmt_target(2.0), "≤ 2.0 s");
    }

    #[test]
    fn berth_rows_get_a_verdict_and_peers_do_not() {
        assert_eq!(
            verdict(&row(Tool::BerthPodman, 10, &[1.9, 2.5, 1.0]), 2.0),
            Some(true)
        );
        assert_eq!(
            verdict(&row(Tool::BerthDocker, 10, &[2.1]), 2.0),
            Some(false)
        );
        assert_eq!(verdict(&row(Tool::BerthDocker, 10, &[]), 2.0), Some(false));
        assert_eq!(verdict(&row(Tool::DockerCompose, 10, &[0.1]), 2.0), None);
    }

    #[test]
    fn a_timed_out_row_says_so() {
        let mut r = Row::new(Tool::PodmanCompose, 50);
        r.push(Sample {
            rep: 1,
            outcome: Outcome::Timeout,
            secs: 300.0,
            detail: None,
            containers_after: None,
            engine_calls: None,
            load: String::new(),
        });
        assert_eq!(cell(Some(&r), 300), "timeout (> 300 s)");
        assert_eq!(cell(None, 300), "not run");
    }

    #[test]
    fn growth_compares_per_app_times_of_the_extremes() {
        let a = row(Tool::BerthPodman, 10, &[2.0]);
        let b = row(Tool::BerthPodman, 20, &[4.5]);
        let c = row(Tool::BerthPodman, 50, &[15.0]);
        let (short, long, ratio) = growth(&[&a, &b, &c]).unwrap();
        assert_eq!((short, long), (10, 50));
        assert!((ratio - 1.5).abs() < 1e-9);
        assert_eq!(growth(&[&a]), None);
    }
}
