//! Raw results of a run, as written to results.json.

use serde::{Deserialize, Serialize};

use super::manifest::Manifest;
use super::stats::Summary;
use super::tools::Tool;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// The command failed, or succeeded without the expected containers running.
    Failed,
    Timeout,
}

/// One timed command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub rep: usize,
    pub outcome: Outcome,
    pub secs: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Containers of the deployment running afterwards (present, for `down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers_after: Option<usize>,
    /// berth's `engine-calls: N` (with `BERTH_REPORT_CALLS=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_calls: Option<u64>,
    /// /proc/loadavg (1, 5, 15 min) just before the command: the machine is
    /// shared, and this tells an outlier from a trend.
    pub load: String,
}

/// The repetitions of one measurement: one tool, one chain length.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub tool: Tool,
    pub apps: usize,
    pub samples: Vec<Sample>,
    /// Over the successful samples only.
    pub summary: Option<Summary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Row {
    pub fn new(tool: Tool, apps: usize) -> Row {
        Row {
            tool,
            apps,
            samples: Vec::new(),
            summary: None,
            notes: Vec::new(),
        }
    }

    pub fn push(&mut self, sample: Sample) {
        self.samples.push(sample);
        let ok: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.outcome == Outcome::Ok)
            .map(|s| s.secs)
            .collect();
        self.summary = Summary::of(&ok);
    }

    pub fn timed_out(&self) -> bool {
        self.samples.iter().any(|s| s.outcome == Outcome::Timeout)
    }

    pub fn failures(&self) -> usize {
        self.samples
            .iter()
            .filter(|s| s.outcome != Outcome::Ok)
            .count()
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// Median of the engine calls reported by the successful samples.
    pub fn engine_calls(&self) -> Option<f64> {
        let calls: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.outcome == Outcome::Ok)
            .filter_map(|s| s.engine_calls.map(|c| c as f64))
            .collect();
        super::stats::median(&calls)
    }
}

/// Rows of one scenario, keyed by tool and chain length.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rows(pub Vec<Row>);

impl Rows {
    pub fn row(&mut self, tool: Tool, apps: usize) -> &mut Row {
        if let Some(i) = self.0.iter().position(|r| r.tool == tool && r.apps == apps) {
            return &mut self.0[i];
        }
        self.0.push(Row::new(tool, apps));
        self.0.last_mut().expect("just pushed")
    }

    pub fn get(&self, tool: Tool, apps: usize) -> Option<&Row> {
        self.0.iter().find(|r| r.tool == tool && r.apps == apps)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub reps: usize,
    pub timeout_s: u64,
    pub image: String,
    pub tools: Vec<Tool>,
    pub scenarios: Vec<u8>,
    pub sizes: Vec<usize>,
    pub command: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub manifest: Manifest,
    pub config: Config,
    /// Whether berth printed `engine-calls:` (i.e. supports BERTH_REPORT_CALLS).
    pub engine_calls_available: Option<bool>,
    /// Scenario 1: cold `up` of the 10-app chain.
    pub cold_up: Rows,
    /// Scenario 2: `up` again while everything runs.
    pub noop_up: Rows,
    /// Scenario 3: `down` of the 10 apps.
    pub down: Rows,
    /// Scenario 4: cold `up` of the 10-app healthy chain.
    pub healthy_up: Rows,
    /// Scenario 5: cold `up` of longer chains (the 10-app point is `cold_up`).
    pub chain: Rows,
    /// Scenario 6: berth installing one app (image present, so no pull).
    pub install_one: Rows,
    /// Unmeasured warm-up and other remarks made during the run.
    pub log: Vec<String>,
    /// False while the run is going (the files are rewritten after each
    /// scenario) or when it was interrupted.
    #[serde(default)]
    pub complete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rep: usize, outcome: Outcome, secs: f64, calls: Option<u64>) -> Sample {
        Sample {
            rep,
            outcome,
            secs,
            detail: None,
            containers_after: None,
            engine_calls: calls,
            load: String::new(),
        }
    }

    #[test]
    fn summary_counts_only_successful_samples() {
        let mut row = Row::new(Tool::BerthPodman, 10);
        row.push(sample(1, Outcome::Ok, 2.0, Some(30)));
        row.push(sample(2, Outcome::Timeout, 300.0, None));
        row.push(sample(3, Outcome::Ok, 1.0, Some(32)));
        let s = row.summary.unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (2, 1.5, 1.0, 2.0));
        assert!(row.timed_out());
        assert_eq!(row.failures(), 1);
        assert_eq!(row.engine_calls(), Some(31.0));
    }

    #[test]
    fn results_survive_a_round_trip_through_json() {
        let json = serde_json::json!({
            "manifest": {
                "date": "d", "os": "o", "kernel": "k", "cpus": 2, "load_start": "1", "load_end": "2",
                "podman": "4.3.1", "docker_client": null, "docker_server": null, "podman_compose": null,
                "docker_compose": null, "runc": null, "berth_revision": "abc", "berth_version": null,
                "image": "img", "image_id_podman": null, "image_id_docker": null
            },
            "config": {
                "reps": 1, "timeout_s": 300, "image": "img", "tools": ["berth_podman", "podman_compose"],
                "scenarios": [1], "sizes": [10], "command": "c"
            },
            "engine_calls_available": true,
            "cold_up": [{
                "tool": "berth_podman", "apps": 10, "summary": {"n": 1, "median": 1.5, "min": 1.5, "max": 1.5},
                "samples": [{"rep": 1, "outcome": "ok", "secs": 1.5, "engine_calls": 34, "load": "1 1 1"}]
            }],
            "noop_up": [], "down": [], "healthy_up": [], "chain": [], "install_one": [], "log": [],
            "complete": true
        });
        let results: Results = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            results
                .cold_up
                .get(Tool::BerthPodman, 10)
                .unwrap()
                .engine_calls(),
            Some(34.0)
        );
        assert!(results.complete);
        let again = serde_json::to_value(&results).unwrap();
        assert_eq!(again, json);
        let text = crate::bench::report::render(&results);
        assert!(
            text.contains("| 1. cold `up`, 10-app chain | ≤ 2.0 s | 1.50 s ✓ |"),
            "{text}"
        );
        assert!(!text.contains("Partial"));
    }

    #[test]
    fn rows_are_found_by_tool_and_length() {
        let mut rows = Rows::default();
        rows.row(Tool::DockerCompose, 50).note("x");
        rows.row(Tool::DockerCompose, 50).note("x");
        rows.row(Tool::DockerCompose, 10);
        assert_eq!(rows.0.len(), 2);
        assert_eq!(
            rows.get(Tool::DockerCompose, 50).unwrap().notes,
            vec!["x".to_string()]
        );
        assert!(rows.get(Tool::BerthDocker, 50).is_none());
    }
}
