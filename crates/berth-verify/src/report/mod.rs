//! The reports of a run: `report.json` (machine-readable) and
//! `report.html` (self-contained: inline CSS, no script, no external
//! reference, a Content-Security-Policy that forbids loading anything),
//! both rendered from the same [`Report`] value.
//!
//! JSON format `berth-report/1`:
//!
//! ```text
//! { "format": "berth-report/1", "generated_at", "generated_ms",
//!   "run": { id, kind, state, verdict, created_at/_ms, finished_at/_ms,
//!            duration_ms, duration, continue_on_error, failed_stage,
//!            operator_log: [{action, stage, at}] },
//!   "environment": { "berth.version": …, "engine.kind": …, … },
//!   "stages": [{ name, state, summary, attempts, started_at, duration_ms,
//!                duration, measurements: [{name, value, unit}],
//!                artifacts: [{name, path, bytes, media_type, excerpt}] }],
//!   "matrix": null | { title, cells, rows: [{app, cells: [{cell, mark,
//!              symbol, passed, total, median_ms, max_ms}]}],
//!              failures: [{app, cell, iteration, duration_ms, message,
//!              artifacts}], all_passed } }
//! ```
//!
//! Every string that came from the outside (summaries, excerpts,
//! environment values, failure messages) goes through the redactor again
//! before a report is written.

use std::collections::BTreeMap;

use berth_core::pipeline::{ArtifactMeta, Run, RunState, StageState, Verdict};
use serde::{Deserialize, Serialize};

use crate::artifacts::ArtifactSink;

pub mod html;
pub mod matrix;

use matrix::Matrix;

pub const REPORT_HTML: &str = "report.html";
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_FORMAT: &str = "berth-report/1";
/// Largest artifact excerpt embedded in a report, in bytes.
pub const ARTIFACT_EXCERPT_BYTES_MAX: usize = 16 * 1024;
/// Most matrix failures listed in a report (the rest are counted).
pub const MATRIX_FAILURES_MAX: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: String,
    pub generated_at: String,
    pub generated_ms: u64,
    pub run: RunHeader,
    pub environment: BTreeMap<String, String>,
    pub stages: Vec<StageReport>,
    pub matrix: Option<MatrixReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHeader {
    pub id: String,
    pub kind: String,
    pub state: RunState,
    pub verdict: Option<Verdict>,
    pub created_at: String,
    pub created_ms: u64,
    pub finished_at: Option<String>,
    pub finished_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    pub duration: Option<String>,
    pub continue_on_error: bool,
    pub failed_stage: Option<String>,
    pub operator_log: Vec<OperatorLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorLine {
    pub action: String,
    pub stage: Option<String>,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    pub name: String,
    pub state: StageState,
    pub summary: String,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub duration: Option<String>,
    pub measurements: Vec<MeasurementReport>,
    pub artifacts: Vec<ArtifactReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasurementReport {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

impl MeasurementReport {
    /// `412.3 MB/s`, `2 count` → `2`.
    pub fn shown(&self) -> String {
        let value = if self.value.fract() == 0.0 && self.value.abs() < 1e15 {
            format!("{}", self.value as i64)
        } else {
            format!("{}", self.value)
        };
        match self.unit.as_str() {
            "" | "count" => value,
            "bool" => if self.value != 0.0 { "yes" } else { "no" }.to_string(),
            unit => format!("{value} {unit}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactReport {
    pub name: String,
    /// Relative to the report directory.
    pub path: String,
    pub bytes: u64,
    pub media_type: String,
    /// The beginning of the content, when it could be read.
    pub excerpt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixReport {
    pub title: String,
    pub cells: Vec<String>,
    pub rows: Vec<MatrixRow>,
    pub failures: Vec<FailureReport>,
    /// Failures beyond `MATRIX_FAILURES_MAX`, not listed.
    pub failures_not_listed: usize,
    pub all_passed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixRow {
    pub app: String,
    pub cells: Vec<CellReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellReport {
    pub cell: String,
    pub mark: matrix::CellMark,
    pub symbol: String,
    pub passed: usize,
    pub total: usize,
    pub median_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    pub app: String,
    pub cell: String,
    pub iteration: u32,
    pub duration_ms: u64,
    pub message: String,
    pub artifacts: Vec<ArtifactReport>,
}

fn artifact_report(
    meta: &ArtifactMeta,
    excerpt: &dyn Fn(&ArtifactMeta) -> Option<String>,
) -> ArtifactReport {
    ArtifactReport {
        name: meta.name.clone(),
        path: meta.path.clone(),
        bytes: meta.bytes,
        media_type: meta.media_type.clone(),
        excerpt: excerpt(meta),
    }
}

impl Report {
    /// The report of `run` as it stands. `excerpt` gives the beginning of
    /// an artifact's content (see [`ArtifactSink::excerpt`]).
    pub fn from_run(
        run: &Run,
        generated_ms: u64,
        excerpt: &dyn Fn(&ArtifactMeta) -> Option<String>,
    ) -> Report {
        let duration_ms = run.finished_ms.map(|f| f.saturating_sub(run.created_ms));
        Report {
            format: REPORT_FORMAT.into(),
            generated_at: rfc3339(generated_ms),
            generated_ms,
            run: RunHeader {
                id: run.id.clone(),
                kind: run.kind.clone(),
                state: run.state,
                verdict: run.verdict(),
                created_at: rfc3339(run.created_ms),
                created_ms: run.created_ms,
                finished_at: run.finished_ms.map(rfc3339),
                finished_ms: run.finished_ms,
                duration_ms,
                duration: duration_ms.map(human_ms),
                continue_on_error: run.continue_on_error,
                failed_stage: crate::store::RunListing::of(run).failed_stage,
                operator_log: run
                    .operator_log
                    .iter()
                    .map(|e| OperatorLine {
                        action: e.action.to_string(),
                        stage: e.stage.clone(),
                        at: rfc3339(e.at_ms),
                    })
                    .collect(),
            },
            environment: run.environment.clone(),
            stages: run
                .stages
                .iter()
                .map(|s| StageReport {
                    name: s.name.clone(),
                    state: s.state,
                    summary: s.summary.clone(),
                    attempts: s.attempts,
                    started_at: s.started_ms.map(rfc3339),
                    duration_ms: s.duration_ms(),
                    duration: s.duration_ms().map(human_ms),
                    measurements: s
                        .measurements
                        .iter()
                        .map(|m| MeasurementReport {
                            name: m.name.clone(),
                            value: m.value,
                            unit: m.unit.clone(),
                        })
                        .collect(),
                    artifacts: s
                        .artifacts
                        .iter()
                        .map(|a| artifact_report(a, excerpt))
                        .collect(),
                })
                .collect(),
            matrix: None,
        }
    }

    /// Add the scorecard matrix.
    pub fn with_matrix(
        mut self,
        matrix: &Matrix,
        excerpt: &dyn Fn(&ArtifactMeta) -> Option<String>,
    ) -> Report {
        let rows = matrix
            .apps
            .iter()
            .map(|app| MatrixRow {
                app: app.clone(),
                cells: matrix
                    .cells
                    .iter()
                    .map(|cell| {
                        let c = matrix.cell(app, cell);
                        let mark = matrix.mark(app, cell);
                        let durations = c.and_then(matrix::Cell::durations_ms);
                        CellReport {
                            cell: cell.clone(),
                            mark,
                            symbol: mark.symbol().into(),
                            passed: c.map_or(0, matrix::Cell::passed),
                            total: c.map_or(0, |c| c.iterations.len()),
                            median_ms: durations.map(|d| d.0),
                            max_ms: durations.map(|d| d.1),
                        }
                    })
                    .collect(),
            })
            .collect();
        let all_failures: Vec<FailureReport> = matrix
            .iter()
            .flat_map(|c| {
                c.iterations
                    .iter()
                    .filter(|i| !i.passed)
                    .map(move |i| (c, i))
            })
            .map(|(c, i)| FailureReport {
                app: c.app.clone(),
                cell: c.cell.clone(),
                iteration: i.iteration,
                duration_ms: i.duration_ms,
                message: i.failure.clone().unwrap_or_else(|| "failed".into()),
                artifacts: i
                    .artifacts
                    .iter()
                    .map(|a| artifact_report(a, excerpt))
                    .collect(),
            })
            .collect();
        let not_listed = all_failures.len().saturating_sub(MATRIX_FAILURES_MAX);
        let mut failures = all_failures;
        failures.truncate(MATRIX_FAILURES_MAX);
        self.matrix = Some(MatrixReport {
            title: matrix.title.clone(),
            cells: matrix.cells.clone(),
            rows,
            failures,
            failures_not_listed: not_listed,
            all_passed: matrix.all_passed(),
        });
        self
    }

    /// Pass every outside string through `redact`.
    pub fn redact(&mut self, redact: &dyn Fn(&str) -> String) {
        let fix = |s: &mut String| *s = redact(s);
        for v in self.environment.values_mut() {
            fix(v);
        }
        let fix_artifacts = |artifacts: &mut Vec<ArtifactReport>| {
            for a in artifacts {
                if let Some(e) = &mut a.excerpt {
                    *e = redact(e);
                }
            }
        };
        for s in &mut self.stages {
            fix(&mut s.summary);
            fix_artifacts(&mut s.artifacts);
        }
        if let Some(m) = &mut self.matrix {
            for f in &mut m.failures {
                fix(&mut f.message);
                fix_artifacts(&mut f.artifacts);
            }
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    pub fn to_html(&self) -> String {
        html::render(self)
    }
}

/// Write `report.json` and `report.html` of `run` (with `matrix`, if any)
/// into the sink's directory. Returns their metadata.
pub fn write_reports(
    run: &Run,
    sink: &ArtifactSink,
    matrix: Option<&Matrix>,
    now_ms: u64,
) -> std::io::Result<[ArtifactMeta; 2]> {
    let excerpt = |meta: &ArtifactMeta| sink.excerpt(meta, ARTIFACT_EXCERPT_BYTES_MAX);
    let mut report = Report::from_run(run, now_ms, &excerpt);
    if let Some(m) = matrix {
        report = report.with_matrix(m, &excerpt);
    }
    report.redact(&|s| sink.redact(s));
    std::fs::create_dir_all(sink.root())?;
    let mut metas = Vec::with_capacity(2);
    for (name, media_type, text) in [
        (REPORT_JSON, "application/json", report.to_json()),
        (REPORT_HTML, "text/html", report.to_html()),
    ] {
        // Write-then-rename: a reader never sees half a report.
        let path = sink.root().join(name);
        let tmp = sink.root().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, &path)?;
        metas.push(ArtifactMeta {
            name: name.into(),
            path: name.into(),
            bytes: text.len() as u64,
            media_type: media_type.into(),
        });
    }
    let [json, html]: [ArtifactMeta; 2] = metas.try_into().expect("two reports");
    Ok([json, html])
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn parts(ms: u64) -> (i64, u32, u32, u64, u64, u64, u64) {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (y, mo, d, rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// `2024-05-01T12:00:00.123Z`.
pub fn rfc3339(ms: u64) -> String {
    let (y, mo, d, h, mi, s, milli) = parts(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// `20240501-120000-123`, for run ids.
pub fn compact_time(ms: u64) -> String {
    let (y, mo, d, h, mi, s, milli) = parts(ms);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{milli:03}")
}

/// `850 ms`, `12.3 s`, `4 min 05 s`.
pub fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {:02} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

#[cfg(test)]
mod tests;
