use serde_json::{Value, json};

use super::*;
use crate::html;

fn listing(id: &str, state: &str, verdict: Value, failed_stage: Value) -> Value {
    json!({
        "id": id, "kind": "vet", "state": state, "verdict": verdict,
        "created_ms": 1_714_564_800_000u64, "updated_ms": 1_714_564_801_000u64,
        "finished_ms": if verdict.is_null() { Value::Null } else { json!(1_714_564_865_500u64) },
        "failed_stage": failed_stage, "stages": 7,
    })
}

fn vet_extras() -> RunExtras {
    RunExtras {
        stack: None,
        engine: Some("podman".into()),
        has_report: true,
    }
}

/// A verify run's report as `berth-report/1` has it (the fields the
/// dashboard reads), `symbol` left out on purpose: the page derives it from
/// the mark.
fn verify_report(state: &str, verdict: Value, failed_stage: Value) -> Value {
    let cell = |cell: &str, mark: &str, passed: u64, total: u64| {
        json!({"cell": cell, "mark": mark, "passed": passed, "total": total,
               "median_ms": if total > 0 { json!(1200) } else { Value::Null },
               "max_ms": if total > 0 { json!(2500) } else { Value::Null }})
    };
    json!({
        "format": "berth-report/1",
        "run": {
            "id": "verify-20240501-120000-000", "kind": "verify", "state": state, "verdict": verdict,
            "created_ms": 1_714_564_800_000u64, "finished_ms": if verdict.is_null() { Value::Null } else { json!(1_714_565_100_000u64) },
            "continue_on_error": true, "failed_stage": failed_stage,
            "operator_log": [{"action": "retry", "stage": "i2/restart", "at": "2024-05-01T12:03:00.000Z"}]
        },
        "environment": {
            "berth.version": "0.1.0", "berth.git_rev": "abc123def456", "engine.kind": "podman",
            "engine.version": "4.3.1", "host.kernel": "6.1.0-18-amd64",
            "image.localhost/berth-demo:latest": "sha256:0123456789ab", "verify.apps": "web,worker"
        },
        "stages": [
            {"name": "Setup", "state": "passed", "summary": "stack as v1abcde", "attempts": 1,
             "started_at": "2024-05-01T12:00:00.000Z", "duration_ms": 850, "measurements": [], "artifacts": []},
            {"name": "i2/restart", "state": "failed", "summary": "web: FAILED <script>alert(1)</script> did not restart",
             "attempts": 2, "started_at": "2024-05-01T12:02:00.000Z", "duration_ms": 65_000,
             "measurements": [{"name": "web", "value": 0.0, "unit": "result"}, {"name": "web ms", "value": 2500.0, "unit": "ms"},
                              {"name": "write /data", "value": 412.25, "unit": "MB/s"}, {"name": "smart", "value": 1.0, "unit": "bool"}],
             "artifacts": [{"name": "web/logs", "path": "artifacts/i2-restart/web/logs.txt", "bytes": 2048, "media_type": "text/plain"}]}
        ],
        "matrix": {
            "title": "lifecycle × 3 iterations",
            "cells": ["installed", "restart", "ui", "reinstall"],
            "rows": [
                {"app": "web", "cells": [cell("installed", "all", 3, 3), cell("restart", "some", 2, 3), cell("ui", "all", 3, 3), cell("reinstall", "none", 0, 3)]},
                {"app": "worker", "cells": [cell("installed", "all", 3, 3), cell("restart", "all", 3, 3), cell("ui", "not_applicable", 0, 0)]}
            ],
            "failures": [
                {"app": "web", "cell": "restart", "iteration": 2, "duration_ms": 2500, "message": "no new start time within 120 s",
                 "artifacts": [{"name": "web/logs", "path": "artifacts/i2-restart/web/logs.txt", "bytes": 2048, "media_type": "text/plain"}]}
            ],
            "failures_not_listed": 0,
            "all_passed": false
        }
    })
}

#[test]
fn rows_say_what_state_a_run_is_in() {
    let held = run_row(
        &listing(
            "vet-1",
            "failed_holding",
            Value::Null,
            json!("SpecValidate"),
        ),
        &vet_extras(),
    );
    assert!(held.held);
    assert_eq!(
        (held.label.as_str(), held.tone, held.stages),
        ("held on SpecValidate", Tone::Bad, 7)
    );
    assert_eq!(held.duration_ms, None);
    assert_eq!(held.duration_text(), "–");
    assert_eq!(held.started_text(), "2024-05-01 12:00:00");

    let done = run_row(
        &listing(
            "vet-2",
            "completed",
            json!("passed_with_overrides"),
            Value::Null,
        ),
        &vet_extras(),
    );
    assert!(!done.held);
    assert_eq!(
        (done.label.as_str(), done.tone),
        ("passed with overrides", Tone::Warn)
    );
    assert_eq!(done.duration_ms, Some(65_500));
    assert_eq!(done.duration_text(), "1 min 05 s");
    assert_eq!(done.finished_text(), "2024-05-01 12:01:05");

    let passed = run_row(
        &listing("v", "completed", json!("passed"), Value::Null),
        &vet_extras(),
    );
    assert_eq!(passed.tone, Tone::Ok);
    let gone = run_row(
        &listing("v", "abandoned", json!("abandoned"), json!("Disk")),
        &vet_extras(),
    );
    assert_eq!(
        (gone.label.as_str(), gone.tone, gone.held),
        ("abandoned on Disk", Tone::Idle, false)
    );
    let running = run_row(
        &listing("v", "running", Value::Null, Value::Null),
        &RunExtras::default(),
    );
    assert_eq!(
        (running.label.as_str(), running.tone),
        ("running", Tone::Info)
    );
    // Nonsense in, something sane out.
    let odd = run_row(&json!({"id": 3, "state": null}), &RunExtras::default());
    assert_eq!((odd.id.as_str(), odd.state.as_str()), ("", "unknown"));
}

#[test]
fn the_runs_page_puts_held_runs_first_and_links_every_run() {
    let rows = vec![
        run_row(
            &listing("vet-new", "completed", json!("passed"), Value::Null),
            &vet_extras(),
        ),
        run_row(
            &listing(
                "vet-held",
                "failed_holding",
                Value::Null,
                json!("SpecValidate"),
            ),
            &vet_extras(),
        ),
    ];
    let page = html::runs_page(&rows, "c5rf");
    let banner_at = page
        .find("data-role=\"held-banner\"")
        .expect("a held run gets a banner");
    let table_at = page.find("<table class=\"runs\"").unwrap();
    assert!(banner_at < table_at, "the banner comes before the list");
    let banner = &page[banner_at..table_at];
    assert!(
        banner.contains("1 run is held")
            && banner.contains("href=\"/runs/vet-held\"")
            && banner.contains("<b>SpecValidate</b>"),
        "{banner}"
    );
    assert!(!banner.contains("vet-new"), "{banner}");
    // Newest first, as given; the held row is marked.
    let (a, b) = (
        page.find("data-run=\"vet-new\" data-state=\"completed\"")
            .unwrap(),
        page.find("data-run=\"vet-held\" data-state=\"failed_holding\"")
            .unwrap(),
    );
    assert!(a < b);
    assert!(page.contains("class=\"run-row tone-bad held\""), "{page}");
    assert!(page.contains(">held on SpecValidate</span>"));
    assert!(page.contains(">passed</span>"));
    assert!(page.contains("2024-05-01 12:00:00"));
    assert!(page.contains(">podman</td>"));
    // The navigation names the held run too, and the logout form has the
    // session's token.
    assert!(page.contains("data-role=\"held-count\">1 held<"), "{page}");
    assert!(page.contains("name=\"_csrf\" value=\"c5rf\""));
    assert!(page.contains("href=\"/runs\" data-role=\"nav-runs\" aria-current=\"page\""));
    // Nothing in progress: no refresh.
    assert!(!page.contains("http-equiv=\"refresh\""));

    let quiet = html::runs_page(&rows[..1], "c5rf");
    assert!(!quiet.contains("held-banner"), "{quiet}");
    assert!(!quiet.contains("held-count"));
    let empty = html::runs_page(&[], "c5rf");
    assert!(empty.contains("id=\"no-runs\""));
}

#[test]
fn the_scorecard_shows_a_mark_and_the_counts_per_cell() {
    let report = verify_report("completed", json!("failed"), Value::Null);
    let d = run_detail(
        &report,
        &RunExtras {
            stack: Some("/srv/demo/berth.toml".into()),
            engine: Some("podman".into()),
            has_report: true,
        },
    );
    assert_eq!(d.run.kind, "verify");
    assert_eq!(d.run.stages, 2);
    assert_eq!(d.run.duration_ms, Some(300_000));
    assert!(d.actions.is_empty(), "a finished run takes no action");
    assert_eq!(
        d.report_url.as_deref(),
        Some("/runs/verify-20240501-120000-000/report")
    );
    let m = d.matrix.as_ref().unwrap();
    let marks: Vec<Vec<(&str, &str)>> = m
        .rows
        .iter()
        .map(|r| {
            r.cells
                .iter()
                .map(|c| (c.cell.as_str(), c.symbol.as_str()))
                .collect()
        })
        .collect();
    assert_eq!(
        marks,
        vec![
            vec![
                ("installed", "●"),
                ("restart", "◐"),
                ("ui", "●"),
                ("reinstall", "○")
            ],
            // A cell missing from a row did not run.
            vec![
                ("installed", "●"),
                ("restart", "●"),
                ("ui", "–"),
                ("reinstall", "○")
            ],
        ]
    );
    let restart = &m.rows[0].cells[1];
    assert_eq!(restart.detail(), "2/3 · 1.2 s (max 2.5 s)");
    assert_eq!(restart.tone, Tone::Warn);
    assert_eq!(m.rows[1].cells[3].mark, "not_run");
    assert_eq!(m.rows[1].cells[3].detail(), "");

    let page = html::run_page(&d, "c5rf", None, 0);
    let table = {
        let at = page.find("data-role=\"matrix\"").expect("a scorecard");
        &page[at..at + page[at..].find("</table>").unwrap()]
    };
    for (app, cell, mark, symbol) in [
        ("web", "installed", "all", "●"),
        ("web", "restart", "some", "◐"),
        ("web", "reinstall", "none", "○"),
        ("worker", "ui", "not_applicable", "–"),
        ("worker", "reinstall", "not_run", "○"),
    ] {
        let row_at = table.find(&format!("<tr data-app=\"{app}\">")).unwrap();
        let row = &table[row_at..row_at + table[row_at..].find("</tr>").unwrap()];
        let cell_at = row
            .find(&format!("data-cell=\"{cell}\" data-mark=\"{mark}\""))
            .unwrap_or_else(|| panic!("{app}/{cell} is not {mark}: {row}"));
        let td = &row[cell_at..cell_at + row[cell_at..].find("</td>").unwrap()];
        assert!(
            td.contains(&format!(
                "<span class=\"mark\" aria-hidden=\"true\">{symbol}</span>"
            )),
            "{app}/{cell}: {td}"
        );
    }
    assert!(table.contains("2/3 · 1.2 s (max 2.5 s)"), "{table}");
    assert!(table.contains("3/3 · 1.2 s (max 2.5 s)"));
    assert!(table.contains("some iterations passed (2 of 3)"));
    assert!(table.contains("● every iteration passed · ◐ some passed · ○ failed or not run"));
    assert!(page.contains("not every cell passed"));
    // The failure names its artifacts (not their content).
    let failures = &page[page.find("class=\"failures\"").unwrap()..];
    assert!(
        failures.contains("iteration 2")
            && failures.contains("no new start time within 120 s")
            && failures.contains("<code>artifacts/i2-restart/web/logs.txt</code>")
            && failures.contains("2.0 KiB"),
        "{failures}"
    );
    // The environment manifest: headline facts first, then the images.
    let env = &page[page.find("data-role=\"environment\"").unwrap()..];
    let pos = |s: &str| env.find(s).unwrap_or_else(|| panic!("{s}: {env}"));
    assert!(pos("berth version") < pos("git revision"));
    assert!(pos("engine version") < pos("image localhost/berth-demo:latest"));
    assert!(pos("sha256:0123456789ab") < pos("verify.apps"));
    assert!(page.contains("abc123def456") && page.contains("6.1.0-18-amd64"));
    // Stages, with measurements shown in their units; text is escaped.
    assert!(page.contains("write /data: <b>412.25 MB/s</b>"), "{page}");
    assert!(page.contains("smart: <b>yes</b>"));
    assert!(page.contains("web ms: <b>2500 ms</b>"));
    assert!(!page.contains("<script>alert(1)"), "escaped");
    assert!(page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    assert!(page.contains("data-role=\"report-link\""));
    assert!(page.contains("<b>retry</b> on i2/restart"));
    assert!(page.contains("/srv/demo/berth.toml"));
    // Finished: no banner, no action.
    assert!(!page.contains("held-banner"));
    assert!(!page.contains("action=\"/ui/runs/"));
    assert!(!page.contains("data-action=\"abandon\""));
}

#[test]
fn a_held_run_gets_a_banner_naming_the_stage_and_the_three_actions() {
    let mut report = verify_report("failed_holding", Value::Null, json!("i2/restart"));
    report["run"]["continue_on_error"] = json!(false);
    let d = run_detail(&report, &RunExtras::default());
    assert!(d.run.held);
    assert_eq!(d.actions, vec!["override", "retry", "abandon"]);
    assert_eq!(d.report_url, None);
    let flash = html::FlashLine {
        tone: Tone::Bad,
        message: "retry: run is busy".into(),
    };
    let page = html::run_page(&d, "c5rf", Some(&flash), 1);
    let at = page
        .find("<section class=\"held-banner\" role=\"alert\"")
        .expect("a banner screen readers announce");
    let banner = &page[at..at + page[at..].find("</section>").unwrap()];
    assert!(banner.contains("data-role=\"held-banner\""));
    assert!(banner.contains("Held: stage i2/restart failed"), "{banner}");
    // The failed stage's summary, escaped.
    assert!(
        banner.contains("web: FAILED &#60;script&#62;alert(1)&#60;/script&#62; did not restart"),
        "{banner}"
    );
    assert!(banner.contains("removes the stack it installed"));
    for action in ["override", "retry"] {
        let form = format!(
            "<form method=\"post\" action=\"/ui/runs/verify-20240501-120000-000/{action}\"><input type=\"hidden\" name=\"_csrf\" value=\"c5rf\"><button type=\"submit\" data-action=\"{action}\">"
        );
        assert!(banner.contains(&form), "{action}: {banner}");
    }
    // Abandon asks first (a page of its own, no JavaScript needed).
    assert!(
        banner.contains(
            "href=\"/ui/runs/verify-20240501-120000-000/abandon\" data-action=\"abandon\""
        )
    );
    assert!(page.contains("data-role=\"flash\">retry: run is busy</p>"));
    assert!(page.contains("data-role=\"held-count\">1 held<"));
    assert!(!page.contains("data-role=\"report-link\""));

    let confirm = html::confirm_abandon(&d, Some("c5rf"));
    assert!(
        confirm.contains("method=\"post\" action=\"/ui/runs/verify-20240501-120000-000/abandon\"")
    );
    assert!(confirm.contains("name=\"_csrf\" value=\"c5rf\""));
    assert!(confirm.contains("data-action=\"confirm-abandon\""));
    assert!(confirm.contains("stack the run installed"));
}

#[test]
fn a_vet_run_has_no_scorecard() {
    let report = json!({
        "run": {"id": "vet-1", "kind": "vet", "state": "completed", "verdict": "passed",
                "created_ms": 0, "finished_ms": 850, "continue_on_error": false, "failed_stage": null, "operator_log": []},
        "environment": {"engine.kind": "none"},
        "stages": [{"name": "Inventory", "state": "passed", "summary": "4 CPUs", "attempts": 1, "duration_ms": 850,
                    "measurements": [{"name": "cpus", "value": 4.0, "unit": "count"}], "artifacts": []}],
        "matrix": null
    });
    let d = run_detail(&report, &vet_extras());
    assert!(d.matrix.is_none());
    let page = html::run_page(&d, "c", None, 0);
    assert!(!page.contains("data-role=\"scorecard\""));
    assert!(page.contains("cpus: <b>4</b>"));
    assert!(page.contains("data-stage=\"Inventory\" data-state=\"passed\""));
    assert_eq!(d.run.duration_text(), "850 ms");
}

#[test]
fn formats() {
    assert_eq!(utc_time(0), "1970-01-01 00:00:00");
    assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00");
    assert_eq!(utc_time(1_714_564_800_999), "2024-05-01 12:00:00");
    assert_eq!(human_ms(999), "999 ms");
    assert_eq!(human_ms(12_345), "12.3 s");
    assert_eq!(human_ms(245_000), "4 min 05 s");
    assert_eq!(human_ms(7_380_000), "2 h 03 min");
    assert_eq!(measurement_text(3.0, "count"), "3");
    assert_eq!(measurement_text(0.0, "bool"), "no");
    assert_eq!(measurement_text(1.5, "ms"), "1.5 ms");
    for (mark, symbol) in [
        ("all", "●"),
        ("some", "◐"),
        ("none", "○"),
        ("not_run", "○"),
        ("not_applicable", "–"),
    ] {
        assert_eq!(mark_symbol(mark), symbol);
    }
}
