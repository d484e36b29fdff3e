//! The app × cell scorecard `berth verify` fills: for each app and each
//! lifecycle cell, N iterations with pass/fail, duration and (on failure)
//! the artifacts that explain it. Rendered as ● (every iteration passed),
//! ◐ (some did), ○ (none did, or the cell did not run) and – (the cell does
//! not apply to the app, e.g. a UI check for an app without a UI).

use std::collections::BTreeMap;

use berth_core::pipeline::ArtifactMeta;
use serde::{Deserialize, Serialize};

/// Most iterations recorded per cell.
pub const ITERATIONS_PER_CELL_MAX: usize = 1_000;

/// One iteration of one cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iteration {
    /// 1-based.
    pub iteration: u32,
    pub passed: bool,
    pub duration_ms: u64,
    /// Why it failed (already redacted).
    pub failure: Option<String>,
    pub artifacts: Vec<ArtifactMeta>,
}

/// Every iteration of one app in one cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub app: String,
    pub cell: String,
    /// `false` when the cell does not apply to the app.
    pub applicable: bool,
    pub iterations: Vec<Iteration>,
}

impl Cell {
    pub fn passed(&self) -> usize {
        self.iterations.iter().filter(|i| i.passed).count()
    }

    pub fn mark(&self) -> CellMark {
        if !self.applicable {
            return CellMark::NotApplicable;
        }
        match (self.passed(), self.iterations.len()) {
            (_, 0) => CellMark::NotRun,
            (p, n) if p == n => CellMark::All,
            (0, _) => CellMark::None,
            _ => CellMark::Some,
        }
    }

    /// Median and maximum iteration duration.
    pub fn durations_ms(&self) -> Option<(u64, u64)> {
        let mut d: Vec<u64> = self.iterations.iter().map(|i| i.duration_ms).collect();
        d.sort_unstable();
        Some((*d.get(d.len().checked_sub(1)? / 2)?, *d.last()?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellMark {
    /// ● every iteration passed.
    All,
    /// ◐ some iterations passed.
    Some,
    /// ○ no iteration passed.
    None,
    /// ○ the cell did not run.
    NotRun,
    /// – the cell does not apply to the app.
    NotApplicable,
}

impl CellMark {
    pub fn symbol(self) -> &'static str {
        match self {
            CellMark::All => "●",
            CellMark::Some => "◐",
            CellMark::None | CellMark::NotRun => "○",
            CellMark::NotApplicable => "–",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CellMark::All => "all",
            CellMark::Some => "some",
            CellMark::None => "none",
            CellMark::NotRun => "not_run",
            CellMark::NotApplicable => "not_applicable",
        }
    }
}

/// The whole scorecard: apps (rows) × cells (columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matrix {
    pub title: String,
    pub apps: Vec<String>,
    pub cells: Vec<String>,
    /// Keyed by (app, cell); absent means not run.
    results: BTreeMap<String, BTreeMap<String, Cell>>,
}

impl Matrix {
    pub fn new(title: &str, apps: &[&str], cells: &[&str]) -> Matrix {
        Matrix {
            title: title.into(),
            apps: apps.iter().map(|s| s.to_string()).collect(),
            cells: cells.iter().map(|s| s.to_string()).collect(),
            results: BTreeMap::new(),
        }
    }

    fn entry(&mut self, app: &str, cell: &str) -> &mut Cell {
        assert!(
            self.apps.iter().any(|a| a == app) && self.cells.iter().any(|c| c == cell),
            "matrix has no row {app:?} or column {cell:?}"
        );
        self.results
            .entry(app.to_string())
            .or_default()
            .entry(cell.to_string())
            .or_insert_with(|| Cell {
                app: app.into(),
                cell: cell.into(),
                applicable: true,
                iterations: Vec::new(),
            })
    }

    /// Record one iteration (bounded per cell).
    ///
    /// # Panics
    /// When `app` or `cell` is not part of the matrix (a harness bug).
    pub fn record(&mut self, app: &str, cell: &str, iteration: Iteration) {
        let entry = self.entry(app, cell);
        if entry.iterations.len() < ITERATIONS_PER_CELL_MAX {
            entry.iterations.push(iteration);
        }
    }

    /// Mark a cell that does not apply to an app.
    pub fn not_applicable(&mut self, app: &str, cell: &str) {
        self.entry(app, cell).applicable = false;
    }

    pub fn cell(&self, app: &str, cell: &str) -> Option<&Cell> {
        self.results.get(app)?.get(cell)
    }

    pub fn mark(&self, app: &str, cell: &str) -> CellMark {
        self.cell(app, cell).map_or(CellMark::NotRun, Cell::mark)
    }

    /// Every applicable cell ran and passed every iteration: the release
    /// gate (`berth verify` exits 0 only then).
    pub fn all_passed(&self) -> bool {
        self.apps.iter().all(|app| {
            self.cells.iter().all(|cell| {
                matches!(
                    self.mark(app, cell),
                    CellMark::All | CellMark::NotApplicable
                )
            })
        })
    }

    /// Every cell with a result, rows then columns.
    pub fn iter(&self) -> impl Iterator<Item = &Cell> {
        self.apps.iter().flat_map(move |app| {
            self.cells
                .iter()
                .filter_map(move |cell| self.cell(app, cell))
        })
    }

    /// A Markdown table (for docs/STATUS.md): a mark and `passed/total`
    /// per cell.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("| app | {} |\n", self.cells.join(" | "));
        out.push_str(&format!("|---|{}\n", "---|".repeat(self.cells.len())));
        for app in &self.apps {
            let row: Vec<String> = self
                .cells
                .iter()
                .map(|cell| match self.cell(app, cell) {
                    Some(c) if c.applicable && !c.iterations.is_empty() => {
                        format!(
                            "{} {}/{}",
                            c.mark().symbol(),
                            c.passed(),
                            c.iterations.len()
                        )
                    }
                    Some(c) => c.mark().symbol().to_string(),
                    None => CellMark::NotRun.symbol().to_string(),
                })
                .collect();
            out.push_str(&format!("| {app} | {} |\n", row.join(" | ")));
        }
        out.push_str(
            "\n● every iteration passed · ◐ some passed · ○ failed or not run · – not applicable\n",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn it(n: u32, passed: bool, ms: u64) -> Iteration {
        Iteration {
            iteration: n,
            passed,
            duration_ms: ms,
            failure: (!passed).then(|| format!("iteration {n} failed")),
            artifacts: Vec::new(),
        }
    }

    fn sample() -> Matrix {
        let mut m = Matrix::new("demo", &["bitcoind", "lnd"], &["install", "restart", "ui"]);
        for n in 1..=3 {
            m.record("bitcoind", "install", it(n, true, 100 * u64::from(n)));
            m.record("bitcoind", "restart", it(n, n != 2, 50));
            m.record("lnd", "install", it(n, false, 10));
        }
        m.not_applicable("bitcoind", "ui");
        m
    }

    #[test]
    fn marks_follow_the_iterations() {
        let m = sample();
        assert_eq!(m.mark("bitcoind", "install"), CellMark::All);
        assert_eq!(m.mark("bitcoind", "restart"), CellMark::Some);
        assert_eq!(m.mark("lnd", "install"), CellMark::None);
        assert_eq!(m.mark("lnd", "restart"), CellMark::NotRun);
        assert_eq!(m.mark("bitcoind", "ui"), CellMark::NotApplicable);
        assert_eq!(
            m.cell("bitcoind", "install").unwrap().durations_ms(),
            Some((200, 300))
        );
        assert!(!m.all_passed());
    }

    #[test]
    fn the_gate_needs_every_applicable_cell_green() {
        let mut m = Matrix::new("t", &["a"], &["install", "ui"]);
        m.record("a", "install", it(1, true, 1));
        assert!(!m.all_passed(), "ui did not run");
        m.not_applicable("a", "ui");
        assert!(m.all_passed());
    }

    #[test]
    fn markdown_scorecard() {
        assert_eq!(
            sample().to_markdown(),
            "| app | install | restart | ui |\n|---|---|---|---|\n| bitcoind | ● 3/3 | ◐ 2/3 | – |\n| lnd | ○ 0/3 | ○ | ○ |\n\n● every iteration passed · ◐ some passed · ○ failed or not run · – not applicable\n"
        );
    }
}
