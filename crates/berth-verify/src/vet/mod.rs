//! `berth vet`: host vetting on the staged pipeline. Stages, in order:
//! Inventory → SpecValidate → Disk → Memory → Clock → Engine → Reporting.
//! A failing stage holds the run (unless continue-on-error); the operator
//! overrides, retries or abandons with [`resume_vet`]. A missing optional
//! tool (smartctl, chronyc, timedatectl) never fails a stage: its absence
//! is reported.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_core::pipeline::{OperatorAction, Run, RunState, StageState, Verdict};
use berth_engine::Engine;
use serde::{Deserialize, Serialize};

use crate::artifacts::{ArtifactSink, Redactor, no_redaction};
use crate::clock::{Clock, SystemClock};
use crate::engine_ref::EngineRef;
use crate::executor::{ExecError, Executor, Observer, Stage, StageContext};
use crate::store::RunStore;

pub mod clock;
pub mod disk;
pub mod engine;
pub mod inventory;
pub mod memory;
pub mod reporting;
pub mod spec;

pub use inventory::Inventory;
pub use spec::{ExpectedSpec, Severity, SpecDiff};

pub const STAGE_INVENTORY: &str = "Inventory";
pub const STAGE_SPEC: &str = "SpecValidate";
pub const STAGE_DISK: &str = "Disk";
pub const STAGE_MEMORY: &str = "Memory";
pub const STAGE_CLOCK: &str = "Clock";
pub const STAGE_ENGINE: &str = "Engine";
pub const STAGE_REPORTING: &str = "Reporting";
/// The vet stages, in the order they run.
pub const VET_STAGES: [&str; 7] = [
    STAGE_INVENTORY,
    STAGE_SPEC,
    STAGE_DISK,
    STAGE_MEMORY,
    STAGE_CLOCK,
    STAGE_ENGINE,
    STAGE_REPORTING,
];
/// The run kind recorded for vet runs.
pub const VET_KIND: &str = "vet";

/// Default size of the disk write/fsync/read test, per data path.
pub const DISK_TEST_MIB_DEFAULT: u32 = 64;
/// Largest disk test allowed, per data path.
pub const DISK_TEST_MIB_MAX: u32 = 1024;
/// Default size of the memory pattern test.
pub const MEMORY_TEST_MIB_DEFAULT: u32 = 256;
/// Largest memory test allowed.
pub const MEMORY_TEST_MIB_MAX: u32 = 4096;
/// Most data paths one vet examines.
pub const DATA_PATHS_MAX: usize = 16;
/// The image the Engine stage runs (built locally by `make images`).
pub const ENGINE_IMAGE_DEFAULT: &str = "localhost/berth-demo:latest";

/// Thresholds a healthy node box meets. Throughput is measured with an
/// fsync after every 1 MiB chunk, so the write floor is a floor on
/// *synchronous* writes, which is what a node's database does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VetFloors {
    pub disk_write_mb_s_min: f64,
    pub disk_read_mb_s_min: f64,
    pub disk_fsync_p99_ms_max: f64,
    /// Largest clock offset a time source may report before Clock fails.
    pub clock_offset_ms_max: f64,
}

impl Default for VetFloors {
    fn default() -> Self {
        // An SD card or a failing HDD misses these; any SSD and a healthy
        // HDD meet them.
        VetFloors {
            disk_write_mb_s_min: 10.0,
            disk_read_mb_s_min: 20.0,
            disk_fsync_p99_ms_max: 100.0,
            clock_offset_ms_max: 1_000.0,
        }
    }
}

/// What `vet` examines and where it writes.
#[derive(Clone)]
pub struct VetOptions {
    /// Directories whose disks are measured and whose free space is
    /// inventoried (e.g. berth's state directory and the volumes' disk).
    pub data_paths: Vec<PathBuf>,
    /// The expected-spec TOML file (see [`spec`]); `None` → info only.
    pub expected_spec: Option<PathBuf>,
    pub floors: VetFloors,
    /// Where report.html, report.json and artifacts/ are written.
    pub report_dir: PathBuf,
    pub disk_test_mib: u32,
    pub memory_test_mib: u32,
    /// The image the Engine stage runs.
    pub engine_image: String,
    /// Record failures and go on instead of holding.
    pub continue_on_error: bool,
    /// Applied to every artifact and summary before it is written.
    pub redact: Redactor,
    /// The run id; `None` derives one from the time.
    pub run_id: Option<String>,
    /// Called after every persisted transition (progress output).
    pub observer: Option<Observer>,
    /// The engine the run uses, recorded so a resumed run reconnects to it.
    pub engine: Option<EngineRef>,
    /// Why the engine could not be reached (the Engine stage then fails
    /// with it instead of skipping the round trip).
    pub engine_error: Option<String>,
}

/// What a vet run was started with, stored with the run so another process
/// can resume it (the redactor and observer are the resumer's own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VetParams {
    pub data_paths: Vec<PathBuf>,
    pub expected_spec: Option<PathBuf>,
    pub floors: VetFloors,
    pub report_dir: PathBuf,
    pub disk_test_mib: u32,
    pub memory_test_mib: u32,
    pub engine_image: String,
    pub continue_on_error: bool,
    pub engine: Option<EngineRef>,
}

impl std::fmt::Debug for VetOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VetOptions")
            .field("data_paths", &self.data_paths)
            .field("expected_spec", &self.expected_spec)
            .field("floors", &self.floors)
            .field("report_dir", &self.report_dir)
            .field("disk_test_mib", &self.disk_test_mib)
            .field("memory_test_mib", &self.memory_test_mib)
            .field("engine_image", &self.engine_image)
            .field("continue_on_error", &self.continue_on_error)
            .field("run_id", &self.run_id)
            .field("engine", &self.engine)
            .field("engine_error", &self.engine_error)
            .finish_non_exhaustive()
    }
}

impl VetOptions {
    /// Defaults: no data paths, no spec, default floors and sizes.
    pub fn new(report_dir: impl Into<PathBuf>) -> VetOptions {
        VetOptions {
            data_paths: Vec::new(),
            expected_spec: None,
            floors: VetFloors::default(),
            report_dir: report_dir.into(),
            disk_test_mib: DISK_TEST_MIB_DEFAULT,
            memory_test_mib: MEMORY_TEST_MIB_DEFAULT,
            engine_image: ENGINE_IMAGE_DEFAULT.into(),
            continue_on_error: false,
            redact: no_redaction(),
            run_id: None,
            observer: None,
            engine: None,
            engine_error: None,
        }
    }

    /// The part of the options stored with the run.
    pub fn params(&self) -> VetParams {
        VetParams {
            data_paths: self.data_paths.clone(),
            expected_spec: self.expected_spec.clone(),
            floors: self.floors,
            report_dir: self.report_dir.clone(),
            disk_test_mib: self.disk_test_mib,
            memory_test_mib: self.memory_test_mib,
            engine_image: self.engine_image.clone(),
            continue_on_error: self.continue_on_error,
            engine: self.engine.clone(),
        }
    }

    /// Options from stored parameters (no redaction, no observer).
    pub fn from_params(p: VetParams) -> VetOptions {
        VetOptions {
            data_paths: p.data_paths,
            expected_spec: p.expected_spec,
            floors: p.floors,
            disk_test_mib: p.disk_test_mib,
            memory_test_mib: p.memory_test_mib,
            engine_image: p.engine_image,
            continue_on_error: p.continue_on_error,
            engine: p.engine,
            ..VetOptions::new(p.report_dir)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VetError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("expected spec {path}: {detail}")]
    Spec { path: PathBuf, detail: String },
    #[error("vet option {option}: {detail}")]
    Option {
        option: &'static str,
        detail: String,
    },
    #[error("report directory {path}: {source}")]
    ReportDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One stage of a finished (or holding) vet, for the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageLine {
    pub name: String,
    pub state: StageState,
    pub summary: String,
    pub duration_ms: Option<u64>,
    pub attempts: u32,
}

/// Where a vet run ended up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub state: RunState,
    pub verdict: Option<Verdict>,
    /// The stage the run holds on (or was abandoned on).
    pub failed_stage: Option<String>,
    pub stages: Vec<StageLine>,
    pub report_html: Option<PathBuf>,
    pub report_json: Option<PathBuf>,
    /// The scorecard of a verify run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<crate::report::matrix::Matrix>,
}

impl RunSummary {
    /// The summary of `run`, whose reports are in `report_dir`.
    pub fn of(run: &Run, report_dir: &Path) -> RunSummary {
        let html = report_dir.join(crate::report::REPORT_HTML);
        let json = report_dir.join(crate::report::REPORT_JSON);
        RunSummary {
            run_id: run.id.clone(),
            state: run.state,
            verdict: run.verdict(),
            failed_stage: crate::store::RunListing::of(run).failed_stage,
            stages: run
                .stages
                .iter()
                .map(|s| StageLine {
                    name: s.name.clone(),
                    state: s.state,
                    summary: s.summary.clone(),
                    duration_ms: s.duration_ms(),
                    attempts: s.attempts,
                })
                .collect(),
            report_html: html.is_file().then_some(html),
            report_json: json.is_file().then_some(json),
            matrix: None,
        }
    }

    /// Every stage passed (no override, nothing failed or abandoned).
    pub fn passed(&self) -> bool {
        self.verdict == Some(Verdict::Passed)
    }
}

/// What the vet stages share: options, the engine, and the inventory the
/// later stages compare against.
pub(crate) struct VetShared {
    pub engine: Option<Arc<dyn Engine>>,
    pub opts: VetOptions,
    pub spec: Option<ExpectedSpec>,
    pub clock: Arc<dyn Clock>,
    inventory: Mutex<Option<Inventory>>,
}

impl VetShared {
    /// Every path the inventory covers: the data paths and the spec's
    /// free-space paths.
    pub fn inventory_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.opts.data_paths.clone();
        if let Some(spec) = &self.spec {
            for p in spec.min_free_gib.keys() {
                let p = PathBuf::from(p);
                if !paths.contains(&p) {
                    paths.push(p);
                }
            }
        }
        paths.truncate(DATA_PATHS_MAX);
        paths
    }

    pub fn set_inventory(&self, inventory: Inventory) {
        *self.inventory.lock().unwrap_or_else(|e| e.into_inner()) = Some(inventory);
    }

    /// The inventory taken by this run: from memory, else from the
    /// Inventory stage's artifact (after a restart), else taken afresh.
    pub async fn inventory(&self, ctx: &StageContext<'_>) -> Inventory {
        if let Some(inv) = self
            .inventory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return inv;
        }
        let recorded = ctx
            .run
            .stages
            .iter()
            .find(|s| s.name == STAGE_INVENTORY)
            .and_then(|s| {
                s.artifacts
                    .iter()
                    .find(|a| a.name == inventory::INVENTORY_ARTIFACT)
            })
            .and_then(|meta| std::fs::read_to_string(ctx.artifacts.root().join(&meta.path)).ok())
            .and_then(|text| serde_json::from_str::<Inventory>(&text).ok());
        let inv = match recorded {
            Some(inv) => inv,
            None => inventory::collect(self.engine.as_deref(), &self.inventory_paths()).await,
        };
        self.set_inventory(inv.clone());
        inv
    }
}

fn validate(opts: &VetOptions) -> Result<Option<ExpectedSpec>, VetError> {
    if opts.disk_test_mib == 0 || opts.disk_test_mib > DISK_TEST_MIB_MAX {
        return Err(VetError::Option {
            option: "disk_test_mib",
            detail: format!("{} is outside 1..={DISK_TEST_MIB_MAX}", opts.disk_test_mib),
        });
    }
    if opts.memory_test_mib == 0 || opts.memory_test_mib > MEMORY_TEST_MIB_MAX {
        return Err(VetError::Option {
            option: "memory_test_mib",
            detail: format!(
                "{} is outside 1..={MEMORY_TEST_MIB_MAX}",
                opts.memory_test_mib
            ),
        });
    }
    if opts.data_paths.len() > DATA_PATHS_MAX {
        return Err(VetError::Option {
            option: "data_paths",
            detail: format!(
                "{} paths given, at most {DATA_PATHS_MAX} are examined",
                opts.data_paths.len()
            ),
        });
    }
    match &opts.expected_spec {
        None => Ok(None),
        Some(path) => spec::load(path).map(Some).map_err(|detail| VetError::Spec {
            path: path.clone(),
            detail,
        }),
    }
}

fn stages(shared: &Arc<VetShared>) -> Vec<Arc<dyn Stage>> {
    vec![
        Arc::new(inventory::InventoryStage(shared.clone())),
        Arc::new(spec::SpecStage(shared.clone())),
        Arc::new(disk::DiskStage(shared.clone())),
        Arc::new(memory::MemoryStage(shared.clone())),
        Arc::new(clock::ClockStage(shared.clone())),
        Arc::new(engine::EngineStage(shared.clone())),
        Arc::new(reporting::ReportingStage(shared.clone())),
    ]
}

fn executor<'a>(
    shared: &Arc<VetShared>,
    store: &'a dyn RunStore,
) -> Result<Executor<'a>, VetError> {
    let dir = &shared.opts.report_dir;
    std::fs::create_dir_all(dir).map_err(|source| VetError::ReportDir {
        path: dir.clone(),
        source,
    })?;
    let exec = Executor::new(
        stages(shared),
        store,
        shared.clock.clone(),
        ArtifactSink::new(dir.clone(), shared.opts.redact.clone()),
    );
    Ok(match &shared.opts.observer {
        Some(observer) => exec.with_observer(observer.clone()),
        None => exec,
    })
}

fn shared(
    engine: Option<Arc<dyn Engine>>,
    opts: VetOptions,
    spec: Option<ExpectedSpec>,
) -> Arc<VetShared> {
    Arc::new(VetShared {
        engine,
        opts,
        spec,
        clock: Arc::new(SystemClock),
        inventory: Mutex::new(None),
    })
}

/// Vet this host: create a run, drive it until it completes or holds, and
/// write the reports (a held run gets a report showing where it holds).
/// The caller decides the exit code from [`RunSummary::verdict`].
pub async fn vet(
    engine: Option<Arc<dyn Engine>>,
    opts: VetOptions,
    store: &dyn RunStore,
) -> Result<RunSummary, VetError> {
    let spec = validate(&opts)?;
    let shared = shared(engine, opts, spec);
    let exec = executor(&shared, store)?;
    let now = shared.clock.now_ms();
    let id = shared
        .opts
        .run_id
        .clone()
        .unwrap_or_else(|| format!("vet-{}", crate::report::compact_time(now)));
    let environment = crate::environment::collect(shared.engine.as_deref()).await;
    exec.create_run(&id, VET_KIND, shared.opts.continue_on_error, environment)?;
    let params = serde_json::to_string(&shared.opts.params()).expect("vet params serialise");
    store
        .save_params(&id, &params)
        .map_err(crate::executor::ExecError::from)?;
    let run = exec.drive(&id).await?;
    Ok(finish(&shared, &exec, &run))
}

/// Apply an operator action to a vet run (`berth run override|retry|abandon
/// RUN`) and, unless it ended, drive it on. With no action the run is just
/// driven on: that is how a run interrupted by a crash continues (its
/// interrupted stage runs again). `opts` must name the same report
/// directory the run was started with.
pub async fn resume_vet(
    engine: Option<Arc<dyn Engine>>,
    opts: VetOptions,
    store: &dyn RunStore,
    run_id: &str,
    action: Option<OperatorAction>,
) -> Result<RunSummary, VetError> {
    let spec = validate(&opts)?;
    let shared = shared(engine, opts, spec);
    let exec = executor(&shared, store)?;
    let run = match action {
        Some(action) => exec.operate(run_id, action)?,
        None => exec.load(run_id)?,
    };
    let run = if run.state.is_terminal() {
        run
    } else {
        exec.drive(run_id).await?
    };
    Ok(finish(&shared, &exec, &run))
}

/// The Reporting stage writes the reports of a completed run; a run that
/// holds or was abandoned gets them here, so the operator can read why.
fn finish(shared: &VetShared, exec: &Executor<'_>, run: &Run) -> RunSummary {
    if run.state != RunState::Completed {
        let now = shared.clock.now_ms();
        if let Err(e) = crate::report::write_reports(run, exec.artifacts(), None, now) {
            tracing::warn!(run = %run.id, error = %e, "could not write the reports of a held run");
        }
    }
    RunSummary::of(run, &shared.opts.report_dir)
}

/// Measurements named per path: `free_gib /data`.
pub(crate) fn per_path(name: &str, path: &Path) -> String {
    format!("{name} {}", path.display())
}

/// `bytes` in GiB.
pub(crate) fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Round to `digits` decimals, for stable measurements and summaries.
pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}
