//! SpecValidate: the inventory diffed against an expected-spec TOML file.
//! Each difference is classified critical, warning or info; any critical
//! difference fails the stage.
//!
//! ```toml
//! min_cpus = 4                 # critical when fewer
//! min_memory_gib = 16          # critical when more than 5% short (kernel-reserved
//!                              # memory makes a 16 GiB box report ~15.6): info within 5%
//! kernel_prefix = "6."         # warning when the kernel release differs
//! cgroup_mode = "v2"           # v1 | v2 | hybrid; warning when different
//! engine = "podman"            # podman | docker; critical when different
//! min_engine_version = "4.3"   # warning when older
//!
//! [min_free_gib]               # critical when a path has less free space
//! "/var/lib/berth" = 500
//!
//! [severity]                   # optional: reclassify a check's mismatch
//! kernel_prefix = "critical"
//! ```
//!
//! A value vet could not read is a warning ("could not compare"), whatever
//! the check: nothing is silently taken as matching.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use berth_core::pipeline::Measurement;
use serde::{Deserialize, Serialize};

use super::inventory::{Inventory, PathInfo};
use super::{STAGE_SPEC, VetShared, gib};
use crate::executor::{ArtifactOut, Stage, StageContext, StageOutcome};

/// How far below `min_memory_gib` total memory may be and still count as
/// matching (the kernel reserves some of the installed memory).
pub const MEMORY_SLACK_FRACTION: f64 = 0.05;
/// The artifact listing every difference.
pub const SPEC_DIFF_ARTIFACT: &str = "spec-diff.json";
/// Largest spec file read.
const SPEC_BYTES_MAX: u64 = 64 * 1024;

/// The checks a spec can hold, as named in `[severity]`.
pub const CHECKS: [&str; 7] = [
    "min_cpus",
    "min_memory_gib",
    "kernel_prefix",
    "cgroup_mode",
    "engine",
    "min_engine_version",
    "min_free_gib",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedSpec {
    pub min_cpus: Option<u32>,
    pub min_memory_gib: Option<f64>,
    pub kernel_prefix: Option<String>,
    pub cgroup_mode: Option<String>,
    pub engine: Option<String>,
    pub min_engine_version: Option<String>,
    #[serde(default)]
    pub min_free_gib: BTreeMap<String, f64>,
    #[serde(default)]
    pub severity: BTreeMap<String, Severity>,
}

/// One difference between the expected spec and the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecDiff {
    pub check: String,
    pub severity: Severity,
    pub expected: String,
    pub actual: String,
    pub message: String,
}

/// Parse and check a spec's text. Every problem is reported at once.
pub fn parse(text: &str) -> Result<ExpectedSpec, String> {
    let spec: ExpectedSpec = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    if let Some(mode) = &spec.cgroup_mode
        && !["v1", "v2", "hybrid"].contains(&mode.as_str())
    {
        problems.push(format!("cgroup_mode {mode:?}: use v1, v2 or hybrid"));
    }
    if let Some(engine) = &spec.engine
        && !["podman", "docker"].contains(&engine.as_str())
    {
        problems.push(format!("engine {engine:?}: use podman or docker"));
    }
    if let Some(v) = &spec.min_engine_version
        && version_parts(v).is_empty()
    {
        problems.push(format!("min_engine_version {v:?} is not a version"));
    }
    if let Some(m) = spec.min_memory_gib
        && !(m.is_finite() && m >= 0.0)
    {
        problems.push(format!("min_memory_gib {m} must be a number ≥ 0"));
    }
    for (path, free) in &spec.min_free_gib {
        if !Path::new(path).is_absolute() {
            problems.push(format!("min_free_gib: path {path:?} is not absolute"));
        }
        if !(free.is_finite() && *free >= 0.0) {
            problems.push(format!(
                "min_free_gib {path:?} = {free} must be a number ≥ 0"
            ));
        }
    }
    for check in spec.severity.keys() {
        if !CHECKS.contains(&check.as_str()) {
            problems.push(format!(
                "severity: unknown check {check:?} (checks: {})",
                CHECKS.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(problems.join("; "))
    }
}

/// Read and parse the spec file at `path`.
pub fn load(path: &Path) -> Result<ExpectedSpec, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut text = String::new();
    file.take(SPEC_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    if text.len() as u64 > SPEC_BYTES_MAX {
        return Err(format!("larger than {SPEC_BYTES_MAX} bytes"));
    }
    parse(&text)
}

/// The numeric components of a version (`20.10.24+dfsg1` → 20, 10, 24).
pub fn version_parts(version: &str) -> Vec<u64> {
    version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .map_while(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// `actual` is at least `min`, comparing missing components as 0.
pub fn version_at_least(actual: &[u64], min: &[u64]) -> bool {
    let len = actual.len().max(min.len());
    let get = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    for i in 0..len {
        match get(actual, i).cmp(&get(min, i)) {
            std::cmp::Ordering::Greater => return true,
            std::cmp::Ordering::Less => return false,
            std::cmp::Ordering::Equal => {}
        }
    }
    true
}

/// Every difference between `spec` and `inv`, most severe first.
pub fn diff(spec: Option<&ExpectedSpec>, inv: &Inventory) -> Vec<SpecDiff> {
    let Some(spec) = spec else {
        return vec![SpecDiff {
            check: "spec".into(),
            severity: Severity::Info,
            expected: "-".into(),
            actual: "-".into(),
            message: "no expected spec given".into(),
        }];
    };
    let mut out = Vec::new();
    let mismatch = |check: &str, default: Severity| -> Severity {
        spec.severity.get(check).copied().unwrap_or(default)
    };
    let mut push =
        |check: &str, severity: Severity, expected: String, actual: String, message: String| {
            out.push(SpecDiff {
                check: check.into(),
                severity,
                expected,
                actual,
                message,
            });
        };
    let unreadable = |what: &str| format!("could not read the {what} to compare");

    if let Some(min) = spec.min_cpus {
        match inv.cpu.logical_cpus {
            None => push(
                "min_cpus",
                Severity::Warning,
                format!("≥ {min}"),
                "unknown".into(),
                unreadable("CPU count"),
            ),
            Some(n) if n < min => push(
                "min_cpus",
                mismatch("min_cpus", Severity::Critical),
                format!("≥ {min}"),
                n.to_string(),
                format!("{n} CPUs, expected at least {min}"),
            ),
            Some(_) => {}
        }
    }
    if let Some(min) = spec.min_memory_gib {
        match inv.memory.total_bytes.map(gib) {
            None => push(
                "min_memory_gib",
                Severity::Warning,
                format!("≥ {min} GiB"),
                "unknown".into(),
                unreadable("memory size"),
            ),
            Some(have) if have < min * (1.0 - MEMORY_SLACK_FRACTION) => push(
                "min_memory_gib",
                mismatch("min_memory_gib", Severity::Critical),
                format!("≥ {min} GiB"),
                format!("{have:.2} GiB"),
                format!("{have:.2} GiB of memory, expected at least {min} GiB"),
            ),
            Some(have) if have < min => push(
                "min_memory_gib",
                Severity::Info,
                format!("≥ {min} GiB"),
                format!("{have:.2} GiB"),
                format!(
                    "{have:.2} GiB of memory is within {:.0}% of {min} GiB (memory the kernel reserves)",
                    MEMORY_SLACK_FRACTION * 100.0
                ),
            ),
            Some(_) => {}
        }
    }
    if let Some(prefix) = &spec.kernel_prefix {
        match &inv.kernel {
            None => push(
                "kernel_prefix",
                Severity::Warning,
                format!("{prefix}*"),
                "unknown".into(),
                unreadable("kernel release"),
            ),
            Some(k) if !k.starts_with(prefix.as_str()) => push(
                "kernel_prefix",
                mismatch("kernel_prefix", Severity::Warning),
                format!("{prefix}*"),
                k.clone(),
                format!("kernel {k} does not start with {prefix}"),
            ),
            Some(_) => {}
        }
    }
    if let Some(mode) = &spec.cgroup_mode {
        let actual = inv.cgroup_mode.to_string();
        if actual == "unknown" {
            push(
                "cgroup_mode",
                Severity::Warning,
                mode.clone(),
                actual,
                unreadable("cgroup mode"),
            );
        } else if &actual != mode {
            push(
                "cgroup_mode",
                mismatch("cgroup_mode", Severity::Warning),
                mode.clone(),
                actual.clone(),
                format!("cgroups are {actual}, expected {mode}"),
            );
        }
    }
    if let Some(engine) = &spec.engine {
        match &inv.engine {
            None => push(
                "engine",
                Severity::Warning,
                engine.clone(),
                "none".into(),
                unreadable("engine (none given or it did not answer)"),
            ),
            Some(e) if &e.kind != engine => push(
                "engine",
                mismatch("engine", Severity::Critical),
                engine.clone(),
                e.kind.clone(),
                format!("engine is {}, expected {engine}", e.kind),
            ),
            Some(_) => {}
        }
    }
    if let Some(min) = &spec.min_engine_version {
        match &inv.engine {
            None => push(
                "min_engine_version",
                Severity::Warning,
                format!("≥ {min}"),
                "none".into(),
                unreadable("engine version"),
            ),
            Some(e) => {
                let have = version_parts(&e.version);
                if have.is_empty() {
                    push(
                        "min_engine_version",
                        Severity::Warning,
                        format!("≥ {min}"),
                        e.version.clone(),
                        unreadable("engine version"),
                    );
                } else if !version_at_least(&have, &version_parts(min)) {
                    push(
                        "min_engine_version",
                        mismatch("min_engine_version", Severity::Warning),
                        format!("≥ {min}"),
                        e.version.clone(),
                        format!("{} {} is older than {min}", e.kind, e.version),
                    );
                }
            }
        }
    }
    for (path, min) in &spec.min_free_gib {
        let expected = format!("{path}: ≥ {min} GiB free");
        match inv.path(Path::new(path)) {
            Some(p) if !p.exists => push(
                "min_free_gib",
                mismatch("min_free_gib", Severity::Critical),
                expected,
                "missing".into(),
                format!("{path} does not exist"),
            ),
            Some(PathInfo {
                free_bytes: Some(free),
                ..
            }) if gib(*free) < *min => push(
                "min_free_gib",
                mismatch("min_free_gib", Severity::Critical),
                expected,
                format!("{:.2} GiB", gib(*free)),
                format!(
                    "{path} has {:.2} GiB free, expected at least {min} GiB",
                    gib(*free)
                ),
            ),
            Some(PathInfo {
                free_bytes: Some(_),
                ..
            }) => {}
            other => {
                let why = other
                    .and_then(|p| p.error.clone())
                    .unwrap_or_else(|| "not inventoried".into());
                push(
                    "min_free_gib",
                    Severity::Warning,
                    expected,
                    "unknown".into(),
                    format!("could not read the free space of {path} to compare: {why}"),
                )
            }
        }
    }
    out.sort_by_key(|d| std::cmp::Reverse(d.severity));
    out
}

pub(crate) struct SpecStage(pub std::sync::Arc<VetShared>);

#[async_trait]
impl Stage for SpecStage {
    fn name(&self) -> &str {
        STAGE_SPEC
    }

    async fn run(&self, ctx: &StageContext<'_>) -> StageOutcome {
        let shared = &self.0;
        // Re-read the file: the operator may have fixed it before a retry.
        let spec = match &shared.opts.expected_spec {
            None => None,
            Some(path) => match load(path) {
                Ok(spec) => Some(spec),
                Err(e) => {
                    return StageOutcome::fail(format!(
                        "expected spec {} unusable: {e}",
                        path.display()
                    ));
                }
            },
        };
        let inv = shared.inventory(ctx).await;
        let diffs = diff(spec.as_ref(), &inv);
        let count = |s: Severity| diffs.iter().filter(|d| d.severity == s).count();
        let (critical, warning, info) = (
            count(Severity::Critical),
            count(Severity::Warning),
            count(Severity::Info),
        );
        let mut summary = format!("{critical} critical, {warning} warning, {info} info");
        if !diffs.is_empty() {
            let listed: Vec<String> = diffs
                .iter()
                .map(|d| format!("{} ({})", d.message, d.severity.as_str()))
                .collect();
            summary.push_str(": ");
            summary.push_str(&listed.join("; "));
        }
        StageOutcome {
            passed: critical == 0,
            summary,
            measurements: vec![
                Measurement::new("critical", critical as f64, "count"),
                Measurement::new("warning", warning as f64, "count"),
                Measurement::new("info", info as f64, "count"),
            ],
            artifacts: vec![ArtifactOut::text(
                SPEC_DIFF_ARTIFACT,
                "application/json",
                serde_json::to_string_pretty(&diffs).expect("diffs always serialise"),
            )],
            environment: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use berth_engine::detect::CgroupMode;

    use super::*;
    use crate::vet::inventory::{CpuInfo, EngineFacts, MemInfo, PathInfo};

    fn host() -> Inventory {
        Inventory {
            cpu: CpuInfo {
                model: Some("AMD EPYC".into()),
                logical_cpus: Some(2),
            },
            memory: MemInfo {
                total_bytes: Some(24_683_656 * 1024), // 23.54 GiB
                available_bytes: Some(20 << 30),
                swap_total_bytes: Some(0),
            },
            disks: Vec::new(),
            paths: vec![PathInfo {
                path: PathBuf::from("/data"),
                exists: true,
                total_bytes: Some(256 << 30),
                free_bytes: Some(100 << 30),
                device: Some("vda".into()),
                error: None,
            }],
            kernel: Some("6.18.44-fc-v769".into()),
            cgroup_mode: CgroupMode::Hybrid,
            engine: Some(EngineFacts {
                kind: "podman".into(),
                version: "4.3.1".into(),
                api_version: "1.41".into(),
                runtime: "runc".into(),
                cgroup_driver: "cgroupfs".into(),
                cgroup_version: "1".into(),
            }),
            notes: Vec::new(),
        }
    }

    /// (check, severity) of each difference.
    fn classes(spec: &str, inv: &Inventory) -> Vec<(String, Severity)> {
        let spec = parse(spec).expect("spec parses");
        diff(Some(&spec), inv)
            .into_iter()
            .map(|d| (d.check, d.severity))
            .collect()
    }

    fn c(check: &str, s: Severity) -> (String, Severity) {
        (check.to_string(), s)
    }

    #[test]
    fn a_matching_host_has_no_differences() {
        let spec = r#"
            min_cpus = 2
            min_memory_gib = 16
            kernel_prefix = "6."
            cgroup_mode = "hybrid"
            engine = "podman"
            min_engine_version = "4.3"
            [min_free_gib]
            "/data" = 50
        "#;
        assert_eq!(classes(spec, &host()), vec![]);
    }

    #[test]
    fn differences_are_classified_and_sorted_most_severe_first() {
        let spec = r#"
            min_cpus = 4
            min_memory_gib = 64
            kernel_prefix = "5.15"
            cgroup_mode = "v2"
            engine = "docker"
            min_engine_version = "4.4"
            [min_free_gib]
            "/data" = 500
            "/gone" = 1
            "/unread" = 1
        "#;
        let mut inv = host();
        inv.paths.push(PathInfo {
            path: PathBuf::from("/gone"),
            exists: false,
            total_bytes: None,
            free_bytes: None,
            device: None,
            error: Some("does not exist".into()),
        });
        assert_eq!(
            classes(spec, &inv),
            vec![
                c("min_cpus", Severity::Critical),
                c("min_memory_gib", Severity::Critical),
                c("engine", Severity::Critical),
                c("min_free_gib", Severity::Critical),
                c("min_free_gib", Severity::Critical),
                c("kernel_prefix", Severity::Warning),
                c("cgroup_mode", Severity::Warning),
                c("min_engine_version", Severity::Warning),
                c("min_free_gib", Severity::Warning),
            ]
        );
    }

    #[test]
    fn memory_just_below_the_minimum_is_info() {
        // 23.54 GiB against 24: within 5%.
        assert_eq!(
            classes("min_memory_gib = 24", &host()),
            vec![c("min_memory_gib", Severity::Info)]
        );
        assert_eq!(
            classes("min_memory_gib = 25", &host()),
            vec![c("min_memory_gib", Severity::Critical)]
        );
    }

    #[test]
    fn severity_overrides_reclassify_mismatches() {
        let spec = r#"
            kernel_prefix = "5."
            min_cpus = 8
            [severity]
            kernel_prefix = "critical"
            min_cpus = "info"
        "#;
        assert_eq!(
            classes(spec, &host()),
            vec![
                c("kernel_prefix", Severity::Critical),
                c("min_cpus", Severity::Info)
            ]
        );
    }

    #[test]
    fn values_that_could_not_be_read_are_warnings() {
        let mut inv = host();
        inv.cpu.logical_cpus = None;
        inv.engine = None;
        inv.cgroup_mode = CgroupMode::Unknown;
        let spec = r#"
            min_cpus = 1
            engine = "podman"
            cgroup_mode = "v2"
        "#;
        let diffs = diff(Some(&parse(spec).unwrap()), &inv);
        assert!(
            diffs.iter().all(|d| d.severity == Severity::Warning),
            "{diffs:?}"
        );
        assert_eq!(diffs.len(), 3);
        assert!(diffs[0].message.starts_with("could not read"));
    }

    #[test]
    fn no_spec_is_one_info_line() {
        let diffs = diff(None, &host());
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].severity, Severity::Info);
        assert_eq!(diffs[0].message, "no expected spec given");
    }

    #[test]
    fn bad_specs_are_refused_with_every_problem() {
        let err = parse(
            r#"
            cgroup_mode = "v3"
            engine = "lxc"
            min_engine_version = "latest"
            [min_free_gib]
            "relative/path" = -1
            [severity]
            colour = "info"
        "#,
        )
        .unwrap_err();
        for needle in [
            "cgroup_mode \"v3\"",
            "engine \"lxc\"",
            "min_engine_version \"latest\"",
            "\"relative/path\" is not absolute",
            "= -1 must be",
            "unknown check \"colour\"",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
        let err = parse("min_cpu = 2").unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(version_parts("20.10.24+dfsg1"), vec![20, 10, 24]);
        assert_eq!(version_parts("v4.3.1"), vec![4, 3, 1]);
        assert!(version_at_least(&[4, 3, 1], &[4, 3]));
        assert!(version_at_least(&[4, 10], &[4, 9, 9]));
        assert!(!version_at_least(&[4, 3], &[4, 3, 1]));
        assert!(version_parts("latest").is_empty());
    }
}
