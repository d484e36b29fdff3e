//! The runs of `berth vet` and `berth verify` as the dashboard and
//! `GET /api/runs` show them: a row per run (newest first, held runs
//! prominent) and a run's page (its environment manifest, its stages with
//! their summaries and measurements, and for a verify run the app × cell
//! scorecard with ● / ◐ / ○).
//!
//! Built from what the daemon already answers, read leniently like the
//! state view: a row from a `run.list` entry, a run's page from the run's
//! report (`berth-report/1`, the same data as `report.json`, which the
//! daemon renders from `run.show`). Every string in those inputs has been
//! through the secret redactor before it gets here. Pure: no IO, no clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::view::Tone;

/// The operator actions a held run takes, in the order the page offers them.
pub const RUN_ACTIONS: [&str; 3] = ["override", "retry", "abandon"];
/// The state of a run that holds on a failed stage.
pub const HELD_STATE: &str = "failed_holding";

/// One run, as a line of the runs list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunRow {
    pub id: String,
    /// `vet` or `verify`.
    pub kind: String,
    /// `pending`, `running`, `failed_holding`, `completed`, `abandoned`.
    pub state: String,
    /// Once finished: `passed`, `passed_with_overrides`, `failed`,
    /// `abandoned`.
    pub verdict: Option<String>,
    /// The run holds on a failed stage (`failed_holding`) until an operator
    /// overrides it, retries it or abandons the run.
    pub held: bool,
    /// The stage the run holds on (or was abandoned on).
    pub failed_stage: Option<String>,
    /// A verify run's stack file.
    pub stack: Option<String>,
    /// The engine the run uses: `podman`, `docker`, `none`.
    pub engine: Option<String>,
    /// When the run started (ms since the Unix epoch).
    pub created_ms: u64,
    pub finished_ms: Option<u64>,
    /// `finished_ms - created_ms`, once finished.
    pub duration_ms: Option<u64>,
    /// How many stages the run has.
    pub stages: usize,
    /// What the run's state says in words: `held on SpecValidate`,
    /// `passed with overrides`, `running`, ...
    pub label: String,
    pub tone: Tone,
}

/// `GET /api/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunsView {
    /// Newest first.
    pub runs: Vec<RunRow>,
}

/// One measurement of a stage (`write_mb_s /data = 412.3 MB/s`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeasurementView {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// The value as shown: `412.3 MB/s`, `yes`, `3`.
    pub shown: String,
}

/// An artifact a stage or a failed iteration wrote (its content is in the
/// run's report directory, redacted by the harness).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactView {
    pub name: String,
    /// Relative to the run's report directory.
    pub path: String,
    pub bytes: u64,
    pub media_type: String,
}

/// One stage of a run, as its latest attempt left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StageView {
    pub name: String,
    /// `pending`, `running`, `passed`, `failed`, `overridden`, `skipped`.
    pub state: String,
    pub tone: Tone,
    pub summary: String,
    /// Attempts started so far (retries included).
    pub attempts: u32,
    pub started_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub measurements: Vec<MeasurementView>,
    pub artifacts: Vec<ArtifactView>,
}

/// One operator action taken on the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OperatorView {
    /// `override`, `retry`, `abandon`.
    pub action: String,
    /// The stage the run was holding on.
    pub stage: Option<String>,
    pub at: String,
}

/// One cell of the scorecard: an app in a lifecycle cell over every
/// iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CellView {
    pub cell: String,
    /// `all` (every iteration passed), `some`, `none`, `not_run`,
    /// `not_applicable`.
    pub mark: String,
    /// ● all · ◐ some · ○ none or not run · – not applicable.
    pub symbol: String,
    pub tone: Tone,
    /// Iterations that passed.
    pub passed: usize,
    /// Iterations that ran.
    pub total: usize,
    pub median_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MatrixRowView {
    pub app: String,
    /// In the order of the matrix's `cells`.
    pub cells: Vec<CellView>,
}

/// A failed iteration of a cell, with the evidence the harness collected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FailureView {
    pub app: String,
    pub cell: String,
    pub iteration: u32,
    pub duration_ms: u64,
    pub message: String,
    pub artifacts: Vec<ArtifactView>,
}

/// The scorecard of a verify run: apps (rows) × lifecycle cells (columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MatrixView {
    pub title: String,
    pub cells: Vec<String>,
    pub rows: Vec<MatrixRowView>,
    pub failures: Vec<FailureView>,
    /// Failures beyond those listed.
    pub failures_not_listed: usize,
    /// Every applicable cell passed every iteration (the release gate).
    pub all_passed: bool,
}

/// `GET /api/runs/{id}`: one run, whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunDetailView {
    pub run: RunRow,
    /// Failed stages are recorded and the run goes on instead of holding.
    pub continue_on_error: bool,
    /// The environment manifest: `berth.version`, `berth.git_rev`,
    /// `engine.kind`, `engine.version`, `host.kernel`, `image.<ref>` (the
    /// image id), ...
    pub environment: BTreeMap<String, String>,
    pub stages: Vec<StageView>,
    pub operator_log: Vec<OperatorView>,
    /// A verify run's scorecard.
    pub matrix: Option<MatrixView>,
    /// What an operator can do now (`override`, `retry`, `abandon` for a
    /// held run; nothing otherwise).
    pub actions: Vec<String>,
    /// Where the run's HTML report is served, when it has one.
    pub report_url: Option<String>,
}

/// What the daemon knows about a run beyond its report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunExtras {
    pub stack: Option<String>,
    pub engine: Option<String>,
    /// The run has an HTML report to serve.
    pub has_report: bool,
}

// ---- lenient JSON reading ----

fn s(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(x) => Some(x.clone()),
        _ => None,
    }
}

fn u(v: &Value, key: &str) -> Option<u64> {
    v.get(key)?.as_u64()
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn tone_of_run(state: &str, verdict: Option<&str>) -> Tone {
    match (state, verdict) {
        (HELD_STATE, _) => Tone::Bad,
        ("running" | "pending", _) => Tone::Info,
        ("abandoned", _) | (_, Some("abandoned")) => Tone::Idle,
        (_, Some("passed")) => Tone::Ok,
        (_, Some("passed_with_overrides")) => Tone::Warn,
        (_, Some("failed")) => Tone::Bad,
        _ => Tone::Idle,
    }
}

fn label_of_run(state: &str, verdict: Option<&str>, failed_stage: Option<&str>) -> String {
    match (state, verdict) {
        (HELD_STATE, _) => match failed_stage {
            Some(stage) => format!("held on {stage}"),
            None => "held".into(),
        },
        ("abandoned", _) => match failed_stage {
            Some(stage) => format!("abandoned on {stage}"),
            None => "abandoned".into(),
        },
        (_, Some(v)) => v.replace('_', " "),
        (state, None) => state.replace('_', " "),
    }
}

/// A row from a run's fields: a `run.list` entry, or the `run` header of a
/// report (`stages` then counts the report's stages).
pub fn run_row(v: &Value, extras: &RunExtras) -> RunRow {
    let state = s(v, "state").unwrap_or_else(|| "unknown".into());
    let verdict = s(v, "verdict");
    let failed_stage = s(v, "failed_stage");
    let created_ms = u(v, "created_ms").unwrap_or(0);
    let finished_ms = u(v, "finished_ms");
    RunRow {
        id: s(v, "id").unwrap_or_default(),
        kind: s(v, "kind").unwrap_or_default(),
        held: state == HELD_STATE,
        label: label_of_run(&state, verdict.as_deref(), failed_stage.as_deref()),
        tone: tone_of_run(&state, verdict.as_deref()),
        state,
        verdict,
        failed_stage,
        stack: extras.stack.clone(),
        engine: extras.engine.clone(),
        created_ms,
        finished_ms,
        duration_ms: finished_ms.map(|f| f.saturating_sub(created_ms)),
        stages: v
            .get("stages")
            .and_then(|x| {
                x.as_u64()
                    .map(|n| n as usize)
                    .or(x.as_array().map(Vec::len))
            })
            .unwrap_or(0),
    }
}

fn stage_tone(state: &str) -> Tone {
    match state {
        "passed" => Tone::Ok,
        "failed" => Tone::Bad,
        "overridden" => Tone::Warn,
        "running" => Tone::Info,
        _ => Tone::Idle,
    }
}

/// `412.3 MB/s`; `3` for a count; `yes`/`no` for a flag.
pub fn measurement_text(value: f64, unit: &str) -> String {
    let number = if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    };
    match unit {
        "" | "count" => number,
        "bool" => if value != 0.0 { "yes" } else { "no" }.into(),
        unit => format!("{number} {unit}"),
    }
}

fn artifacts(v: &Value) -> Vec<ArtifactView> {
    arr(v, "artifacts")
        .iter()
        .map(|a| ArtifactView {
            name: s(a, "name").unwrap_or_default(),
            path: s(a, "path").unwrap_or_default(),
            bytes: u(a, "bytes").unwrap_or(0),
            media_type: s(a, "media_type").unwrap_or_default(),
        })
        .collect()
}

/// The symbol of a scorecard mark.
pub fn mark_symbol(mark: &str) -> &'static str {
    match mark {
        "all" => "●",
        "some" => "◐",
        "not_applicable" => "–",
        _ => "○",
    }
}

fn mark_tone(mark: &str) -> Tone {
    match mark {
        "all" => Tone::Ok,
        "some" => Tone::Warn,
        "none" => Tone::Bad,
        _ => Tone::Idle,
    }
}

fn matrix(m: &Value) -> MatrixView {
    let cells: Vec<String> = arr(m, "cells")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    let rows = arr(m, "rows")
        .iter()
        .map(|r| {
            let given = arr(r, "cells");
            MatrixRowView {
                app: s(r, "app").unwrap_or_default(),
                // Columns in the matrix's order; a cell missing from the
                // row did not run.
                cells: cells
                    .iter()
                    .map(|name| {
                        let c = given
                            .iter()
                            .find(|c| c.get("cell").and_then(Value::as_str) == Some(name))
                            .unwrap_or(&Value::Null);
                        let mark = s(c, "mark").unwrap_or_else(|| "not_run".into());
                        CellView {
                            cell: name.clone(),
                            symbol: mark_symbol(&mark).into(),
                            tone: mark_tone(&mark),
                            passed: u(c, "passed").unwrap_or(0) as usize,
                            total: u(c, "total").unwrap_or(0) as usize,
                            median_ms: u(c, "median_ms"),
                            max_ms: u(c, "max_ms"),
                            mark,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    MatrixView {
        title: s(m, "title").unwrap_or_default(),
        rows,
        failures: arr(m, "failures")
            .iter()
            .map(|f| FailureView {
                app: s(f, "app").unwrap_or_default(),
                cell: s(f, "cell").unwrap_or_default(),
                iteration: u(f, "iteration").unwrap_or(0) as u32,
                duration_ms: u(f, "duration_ms").unwrap_or(0),
                message: s(f, "message").unwrap_or_default(),
                artifacts: artifacts(f),
            })
            .collect(),
        failures_not_listed: u(m, "failures_not_listed").unwrap_or(0) as usize,
        all_passed: m
            .get("all_passed")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        cells,
    }
}

/// A run's page from its report (`berth-report/1`: `run`, `environment`,
/// `stages`, `matrix`).
pub fn run_detail(report: &Value, extras: &RunExtras) -> RunDetailView {
    let header = report.get("run").unwrap_or(&Value::Null);
    let mut row_input = header.clone();
    if let (Some(obj), Some(stages)) = (row_input.as_object_mut(), report.get("stages")) {
        obj.insert("stages".into(), stages.clone());
    }
    let run = run_row(&row_input, extras);
    let environment = report
        .get("environment")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(x) => x.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default();
    let stages = arr(report, "stages")
        .iter()
        .map(|st| {
            let state = s(st, "state").unwrap_or_default();
            StageView {
                name: s(st, "name").unwrap_or_default(),
                tone: stage_tone(&state),
                state,
                summary: s(st, "summary").unwrap_or_default(),
                attempts: u(st, "attempts").unwrap_or(0) as u32,
                started_at: s(st, "started_at"),
                duration_ms: u(st, "duration_ms"),
                measurements: arr(st, "measurements")
                    .iter()
                    .map(|m| {
                        let value = m.get("value").and_then(Value::as_f64).unwrap_or(0.0);
                        let unit = s(m, "unit").unwrap_or_default();
                        MeasurementView {
                            name: s(m, "name").unwrap_or_default(),
                            shown: measurement_text(value, &unit),
                            value,
                            unit,
                        }
                    })
                    .collect(),
                artifacts: artifacts(st),
            }
        })
        .collect();
    let operator_log = arr(header, "operator_log")
        .iter()
        .map(|o| OperatorView {
            action: s(o, "action").unwrap_or_default(),
            stage: s(o, "stage"),
            at: s(o, "at").unwrap_or_default(),
        })
        .collect();
    let actions = if run.held {
        RUN_ACTIONS.iter().map(|a| a.to_string()).collect()
    } else {
        Vec::new()
    };
    let report_url = extras
        .has_report
        .then(|| format!("/runs/{}/report", run.id));
    RunDetailView {
        continue_on_error: header
            .get("continue_on_error")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        matrix: report.get("matrix").filter(|m| m.is_object()).map(matrix),
        run,
        environment,
        stages,
        operator_log,
        actions,
        report_url,
    }
}

/// The environment facts the run page puts first, in this order, with
/// their labels (image ids follow, then everything else).
pub const ENVIRONMENT_HEADLINE: &[(&str, &str)] = &[
    ("berth.version", "berth version"),
    ("berth.git_rev", "git revision"),
    ("engine.kind", "engine"),
    ("engine.version", "engine version"),
    ("engine.api_version", "engine API"),
    ("host.kernel", "kernel"),
    ("host.os", "OS"),
    ("host.cgroup_mode", "cgroup mode"),
];

/// The environment manifest as `(label, value)` lines: the headline facts,
/// then the images (`image <ref>` → its id), then every other fact.
pub fn environment_lines(env: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, label) in ENVIRONMENT_HEADLINE {
        if let Some(v) = env.get(*key) {
            out.push(((*label).to_string(), v.clone()));
        }
    }
    for (k, v) in env {
        if let Some(image) = k.strip_prefix("image.") {
            out.push((format!("image {image}"), v.clone()));
        }
    }
    for (k, v) in env {
        if !k.starts_with("image.") && !ENVIRONMENT_HEADLINE.iter().any(|(h, _)| h == k) {
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

/// `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// `2024-05-01 12:00:00` (UTC) of a Unix time in milliseconds.
pub fn utc_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl RunRow {
    pub fn started_text(&self) -> String {
        utc_time(self.created_ms)
    }

    pub fn finished_text(&self) -> String {
        self.finished_ms.map_or_else(|| "–".into(), utc_time)
    }

    pub fn duration_text(&self) -> String {
        self.duration_ms.map_or_else(|| "–".into(), human_ms)
    }
}

impl StageView {
    pub fn duration_text(&self) -> String {
        self.duration_ms.map_or_else(|| "–".into(), human_ms)
    }
}

impl CellView {
    /// `3/3 · 120 ms (max 300 ms)`; empty when the cell did not run.
    pub fn detail(&self) -> String {
        match (self.total, self.median_ms, self.max_ms) {
            (0, _, _) => String::new(),
            (n, Some(median), Some(max)) => format!(
                "{}/{n} · {} (max {})",
                self.passed,
                human_ms(median),
                human_ms(max)
            ),
            (n, _, _) => format!("{}/{n}", self.passed),
        }
    }

    /// What a screen reader says for the cell.
    pub fn describe(&self) -> String {
        let what = match self.mark.as_str() {
            "all" => "every iteration passed",
            "some" => "some iterations passed",
            "none" => "no iteration passed",
            "not_applicable" => "does not apply",
            _ => "did not run",
        };
        if self.total == 0 {
            what.to_string()
        } else {
            format!("{what} ({} of {})", self.passed, self.total)
        }
    }
}

impl ArtifactView {
    pub fn size_text(&self) -> String {
        match self.bytes {
            b if b < 1024 => format!("{b} B"),
            b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
            b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        }
    }
}

#[cfg(test)]
mod tests;
