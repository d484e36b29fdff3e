//! Report rendering: the JSON is snapshotted; the HTML is checked for being
//! self-contained.

use std::collections::BTreeMap;

use berth_core::pipeline::{
    ArtifactMeta, Measurement, OperatorAction, Run, StageResult, next, operator, record_result,
};

use super::matrix::{Iteration, Matrix};
use super::*;

const T0: u64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z

fn artifact(name: &str) -> ArtifactMeta {
    ArtifactMeta {
        name: name.into(),
        path: format!("artifacts/Disk/1-{name}"),
        bytes: 42,
        media_type: "text/plain".into(),
    }
}

/// A vet-like run: Inventory passed, Disk failed and was overridden,
/// Engine and Reporting passed: completed; environment filled.
fn sample_run() -> Run {
    let mut run = Run::new(
        "vet-20240501-120000-000",
        "vet",
        &["Inventory", "Disk", "Engine", "Reporting"],
        false,
        T0,
    );
    run.environment = BTreeMap::from([
        ("berth.version".into(), "0.0.0".into()),
        ("berth.git_rev".into(), "abc123def456".into()),
        ("engine.kind".into(), "podman".into()),
        ("engine.version".into(), "4.3.1".into()),
        ("host.kernel".into(), "6.1.0-18-amd64".into()),
        ("image.localhost/berth-demo:latest".into(), "present".into()),
    ]);
    next(&mut run, T0 + 10);
    record_result(
        &mut run,
        0,
        StageResult {
            passed: true,
            summary: "2 CPUs (AMD EPYC), 23.5 GiB RAM".into(),
            measurements: vec![
                Measurement::new("logical_cpus", 2.0, "count"),
                Measurement::new("memory_total", 23.54, "GiB"),
            ],
            ..StageResult::default()
        },
        T0 + 60,
    )
    .unwrap();
    next(&mut run, T0 + 100);
    record_result(
        &mut run,
        1,
        StageResult {
            passed: false,
            summary: "FAILED /data: write 4.2 MB/s is below 10 MB/s; token s3cret in a log".into(),
            measurements: vec![
                Measurement::new("write /data", 4.2, "MB/s"),
                Measurement::new("smart_passed vda", 0.0, "bool"),
            ],
            artifacts: vec![artifact("smart-vda.txt")],
            environment: BTreeMap::new(),
        },
        T0 + 2_600,
    )
    .unwrap();
    operator(&mut run, OperatorAction::Override, T0 + 60_000).unwrap();
    next(&mut run, T0 + 60_010);
    record_result(
        &mut run,
        2,
        StageResult {
            passed: true,
            summary: "podman ran berth-vet-1 <ok>".into(),
            ..StageResult::default()
        },
        T0 + 61_500,
    )
    .unwrap();
    next(&mut run, T0 + 61_510);
    record_result(
        &mut run,
        3,
        StageResult {
            passed: true,
            summary: "wrote report.html and report.json".into(),
            ..StageResult::default()
        },
        T0 + 61_600,
    )
    .unwrap();
    next(&mut run, T0 + 61_600);
    run
}

fn excerpt(meta: &ArtifactMeta) -> Option<String> {
    Some(format!("content of {} with s3cret", meta.name))
}

fn sample_report() -> Report {
    let mut report = Report::from_run(&sample_run(), T0 + 70_000, &excerpt);
    report.redact(&|s: &str| s.replace("s3cret", "[redacted]"));
    report
}

fn sample_matrix() -> Matrix {
    let mut m = Matrix::new(
        "demo stack on podman",
        &["bitcoind", "electrs"],
        &["install", "restart", "ui"],
    );
    for n in 1..=2 {
        m.record(
            "bitcoind",
            "install",
            Iteration {
                iteration: n,
                passed: true,
                duration_ms: 1_200 * u64::from(n),
                failure: None,
                artifacts: Vec::new(),
            },
        );
        m.record(
            "bitcoind",
            "restart",
            Iteration {
                iteration: n,
                passed: n == 1,
                duration_ms: 800,
                failure: (n == 2).then(|| "not running after restart; password=s3cret".into()),
                artifacts: if n == 2 {
                    vec![artifact("logs.txt")]
                } else {
                    Vec::new()
                },
            },
        );
    }
    m.not_applicable("bitcoind", "ui");
    m
}

#[test]
fn the_json_report_is_stable() {
    insta::assert_snapshot!("vet_report_json", sample_report().to_json());
}

#[test]
fn the_json_report_with_a_matrix_is_stable() {
    let mut report = Report::from_run(&sample_run(), T0 + 70_000, &excerpt)
        .with_matrix(&sample_matrix(), &excerpt);
    report.redact(&|s: &str| s.replace("s3cret", "[redacted]"));
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    insta::assert_snapshot!(
        "matrix_report_json",
        serde_json::to_string_pretty(&json["matrix"]).unwrap()
    );
}

#[test]
fn the_json_report_round_trips() {
    let report = sample_report();
    let back: Report = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(back, report);
}

#[test]
fn the_html_report_is_self_contained() {
    let report = Report::from_run(&sample_run(), T0 + 70_000, &excerpt)
        .with_matrix(&sample_matrix(), &excerpt);
    let html = report.to_html();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<style>"), "inline CSS");
    for forbidden in [
        "http://", "https://", "<script", "<link", "src=", "url(", "@import",
    ] {
        assert!(!html.contains(forbidden), "HTML contains {forbidden}");
    }
    assert!(html.contains("default-src 'none'"), "CSP forbids loading");
    // Content is escaped, not interpreted.
    assert!(
        html.contains("podman ran berth-vet-1 &#60;ok&#62;"),
        "escaped summary"
    );
    // The verdict, stages, measurements, matrix marks and failures show.
    assert!(html.contains("passed with overrides"));
    assert!(html.contains("overridden"));
    assert!(html.contains("4.2 MB/s"));
    assert!(html.contains("smart-vda.txt"));
    for mark in ["●", "◐", "○", "–"] {
        assert!(html.contains(mark), "matrix mark {mark}");
    }
    assert!(html.contains("not running after restart"));
}

#[test]
fn a_held_run_report_says_what_to_do() {
    let mut run = Run::new("r", "vet", &["Disk", "Reporting"], false, T0);
    next(&mut run, T0);
    record_result(&mut run, 0, StageResult::default(), T0 + 5).unwrap();
    let html = Report::from_run(&run, T0 + 10, &|_| None).to_html();
    assert!(html.contains("holding on failed stage Disk: override, retry or abandon"));
    assert!(html.contains("content not readable") || !html.contains("<details>"));
}

#[test]
fn times_and_durations_are_rendered_for_people() {
    assert_eq!(rfc3339(T0 + 123), "2024-05-01T12:00:00.123Z");
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(compact_time(T0 + 61_007), "20240501-120101-007");
    assert_eq!(human_ms(850), "850 ms");
    assert_eq!(human_ms(12_340), "12.3 s");
    assert_eq!(human_ms(245_000), "4 min 05 s");
}

#[test]
fn measurements_are_shown_with_their_units() {
    let m = |value: f64, unit: &str| MeasurementReport {
        name: "x".into(),
        value,
        unit: unit.into(),
    };
    assert_eq!(m(2.0, "count").shown(), "2");
    assert_eq!(m(412.3, "MB/s").shown(), "412.3 MB/s");
    assert_eq!(m(1.0, "bool").shown(), "yes");
    assert_eq!(m(0.0, "bool").shown(), "no");
}

#[test]
fn reports_are_written_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let sink = crate::artifacts::ArtifactSink::new(
        dir.path(),
        crate::artifacts::redact_values(vec!["s3cret".into()]),
    );
    let [json, html] = write_reports(&sample_run(), &sink, Some(&sample_matrix()), T0).unwrap();
    assert_eq!(json.path, REPORT_JSON);
    assert_eq!(html.path, REPORT_HTML);
    for meta in [json, html] {
        let text = std::fs::read_to_string(dir.path().join(&meta.path)).unwrap();
        assert_eq!(text.len() as u64, meta.bytes);
        assert!(!text.contains("s3cret"), "{} leaks the secret", meta.name);
        assert!(text.contains("[redacted]"));
    }
}
