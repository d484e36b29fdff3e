//! The HTML report: one file, inline CSS, no script, no external
//! reference; a Content-Security-Policy forbids loading anything at all, so
//! even text that happens to contain a URL cannot make the page fetch it.

use askama::Template;

use super::{Report, StageReport};
use berth_core::pipeline::{RunState, StageState, Verdict};

#[derive(Template)]
#[template(path = "report.html")]
struct HtmlReport<'a> {
    r: &'a Report,
    title: String,
    verdict_class: &'static str,
    verdict_text: String,
}

/// CSS class of a stage's state badge.
fn stage_class(state: StageState) -> &'static str {
    match state {
        StageState::Passed => "ok",
        StageState::Failed => "bad",
        StageState::Overridden => "warn",
        StageState::Running => "run",
        StageState::Pending | StageState::Skipped => "idle",
    }
}

impl StageReport {
    pub fn css_class(&self) -> &'static str {
        stage_class(self.state)
    }

    pub fn state_text(&self) -> &'static str {
        self.state.as_str()
    }

    pub fn duration_text(&self) -> String {
        self.duration.clone().unwrap_or_else(|| "–".into())
    }
}

impl super::CellReport {
    pub fn css_class(&self) -> &'static str {
        use super::matrix::CellMark;
        match self.mark {
            CellMark::All => "ok",
            CellMark::Some => "warn",
            CellMark::None => "bad",
            CellMark::NotRun | CellMark::NotApplicable => "idle",
        }
    }

    pub fn detail(&self) -> String {
        match (self.total, self.median_ms, self.max_ms) {
            (0, _, _) => String::new(),
            (n, Some(median), Some(max)) => format!(
                "{}/{n} · {} (max {})",
                self.passed,
                super::human_ms(median),
                super::human_ms(max)
            ),
            (n, _, _) => format!("{}/{n}", self.passed),
        }
    }
}

impl super::ArtifactReport {
    pub fn size_text(&self) -> String {
        match self.bytes {
            b if b < 1024 => format!("{b} B"),
            b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
            b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        }
    }
}

/// Render `report` as one self-contained HTML page.
pub fn render(report: &Report) -> String {
    let (verdict_class, verdict_text) = match (report.run.verdict, report.run.state) {
        (Some(Verdict::Passed), _) => ("ok", "passed".to_string()),
        (Some(Verdict::PassedWithOverrides), _) => ("warn", "passed with overrides".into()),
        (Some(Verdict::Failed), _) => ("bad", "failed".into()),
        (Some(Verdict::Abandoned), _) => ("idle", "abandoned".into()),
        (None, RunState::FailedHolding) => (
            "bad",
            format!(
                "holding on failed stage {}: override, retry or abandon",
                report.run.failed_stage.as_deref().unwrap_or("?")
            ),
        ),
        (None, state) => ("run", state.as_str().replace('_', " ")),
    };
    HtmlReport {
        r: report,
        title: format!("berth {} {}", report.run.kind, report.run.id),
        verdict_class,
        verdict_text,
    }
    .render()
    .expect("the report template renders any report")
}
