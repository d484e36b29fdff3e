//! Inventory: CPU, memory, disks, kernel, cgroup mode, engine, and free
//! space per data path. Every source that cannot be read is noted, never
//! fatal: the stage passes once the probes ran.
//!
//! The parsers take file contents so they are tested with fixtures; only
//! [`collect`] reads the host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use berth_core::pipeline::Measurement;
use berth_engine::Engine;
use berth_engine::detect::CgroupMode;
use serde::{Deserialize, Serialize};

use super::{STAGE_INVENTORY, VetShared, gib, per_path, round};
use crate::executor::{ArtifactOut, Stage, StageContext, StageOutcome};

/// The artifact holding the inventory as JSON (read back after a restart).
pub const INVENTORY_ARTIFACT: &str = "inventory.json";
/// Bound on reading the host (a hung network filesystem must not hang vet).
const COLLECT_TIMEOUT_S: u64 = 20;
/// Bound on the engine's `info` call.
const ENGINE_INFO_TIMEOUT_S: u64 = 15;
/// Most block devices listed.
const DISKS_MAX: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub model: Option<String>,
    pub logical_cpus: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemInfo {
    pub total_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    pub swap_total_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Kernel name (`sda`, `nvme0n1`, `vda`).
    pub name: String,
    pub size_bytes: u64,
    pub rotational: Option<bool>,
    pub removable: Option<bool>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    pub path: PathBuf,
    pub exists: bool,
    pub total_bytes: Option<u64>,
    /// Space available to unprivileged writers (statvfs `f_bavail`).
    pub free_bytes: Option<u64>,
    /// The whole disk holding the path, when it is a block device.
    pub device: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineFacts {
    pub kind: String,
    pub version: String,
    pub api_version: String,
    pub runtime: String,
    pub cgroup_driver: String,
    pub cgroup_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub cpu: CpuInfo,
    pub memory: MemInfo,
    pub disks: Vec<DiskInfo>,
    pub paths: Vec<PathInfo>,
    pub kernel: Option<String>,
    pub cgroup_mode: CgroupMode,
    /// `None` when no engine was given or it did not answer (see notes).
    pub engine: Option<EngineFacts>,
    /// What could not be read, one sentence each.
    pub notes: Vec<String>,
}

impl Inventory {
    pub fn path(&self, path: &Path) -> Option<&PathInfo> {
        self.paths.iter().find(|p| p.path == path)
    }
}

/// `/proc/cpuinfo`: the number of `processor` entries and the first model
/// line (x86 `model name`; ARM boards say `Model` or `Hardware`).
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut count = 0u32;
    let mut model: Option<(usize, String)> = None;
    const MODEL_KEYS: [&str; 5] = ["model name", "Model", "Hardware", "cpu model", "Processor"];
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key == "processor" {
            count += 1;
        }
        if let Some(rank) = MODEL_KEYS.iter().position(|k| *k == key)
            && !value.is_empty()
            && model.as_ref().is_none_or(|(best, _)| rank < *best)
        {
            model = Some((rank, value.to_string()));
        }
    }
    CpuInfo {
        model: model.map(|(_, m)| m),
        logical_cpus: (count > 0).then_some(count),
    }
}

/// `/proc/meminfo` (values in kB).
pub fn parse_meminfo(text: &str) -> MemInfo {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kb * 1024)
        })
    };
    MemInfo {
        total_bytes: field("MemTotal"),
        available_bytes: field("MemAvailable"),
        swap_total_bytes: field("SwapTotal"),
    }
}

/// Whether a /sys/block entry is a real disk worth listing (not a loop,
/// RAM or compressed-RAM device).
pub fn is_listed_disk(name: &str) -> bool {
    !["loop", "ram", "zram"].iter().any(|p| name.starts_with(p))
}

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn read_flag(path: &Path) -> Option<bool> {
    match read_trim(path)?.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

fn collect_disks(sys_block: &Path, notes: &mut Vec<String>) -> Vec<DiskInfo> {
    let entries = match std::fs::read_dir(sys_block) {
        Ok(e) => e,
        Err(e) => {
            notes.push(format!("{} unreadable: {e}", sys_block.display()));
            return Vec::new();
        }
    };
    let mut disks: Vec<DiskInfo> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_listed_disk(&name) {
                return None;
            }
            let dir = entry.path();
            let sectors: u64 = read_trim(&dir.join("size"))?.parse().ok()?;
            (sectors > 0).then(|| DiskInfo {
                size_bytes: sectors * 512,
                rotational: read_flag(&dir.join("queue/rotational")),
                removable: read_flag(&dir.join("removable")),
                model: read_trim(&dir.join("device/model")),
                name,
            })
        })
        .collect();
    disks.sort_by(|a, b| a.name.cmp(&b.name));
    disks.truncate(DISKS_MAX);
    disks
}

/// The whole disk (`vda`, not `vda1`) holding `path`, found through
/// `/sys/dev/block/MAJOR:MINOR`. `None` on overlay, tmpfs, network
/// filesystems and anything else without a block device.
pub fn block_device_of(path: &Path) -> Option<String> {
    let stat = rustix::fs::stat(path).ok()?;
    let dev = stat.st_dev;
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let disk = if sys.join("partition").exists() {
        sys.parent()?.to_path_buf()
    } else {
        sys
    };
    Some(disk.file_name()?.to_string_lossy().into_owned())
}

fn path_info(path: &Path) -> PathInfo {
    let mut info = PathInfo {
        path: path.to_path_buf(),
        exists: path.exists(),
        total_bytes: None,
        free_bytes: None,
        device: None,
        error: None,
    };
    if !info.exists {
        info.error = Some("does not exist".into());
        return info;
    }
    match rustix::fs::statvfs(path) {
        Ok(vfs) => {
            info.total_bytes = Some(vfs.f_blocks.saturating_mul(vfs.f_frsize));
            info.free_bytes = Some(vfs.f_bavail.saturating_mul(vfs.f_frsize));
        }
        Err(e) => info.error = Some(format!("statvfs failed: {e}")),
    }
    info.device = block_device_of(path);
    info
}

/// Read the host's inventory (blocking parts on a worker thread, bounded)
/// and ask the engine for its facts.
pub async fn collect(engine: Option<&dyn Engine>, paths: &[PathBuf]) -> Inventory {
    let owned: Vec<PathBuf> = paths.to_vec();
    let host = tokio::task::spawn_blocking(move || collect_host(&owned));
    let mut inv = match tokio::time::timeout(Duration::from_secs(COLLECT_TIMEOUT_S), host).await {
        Ok(Ok(inv)) => inv,
        Ok(Err(e)) => empty(format!("reading the host failed: {e}")),
        Err(_) => empty(format!(
            "reading the host did not finish within {COLLECT_TIMEOUT_S}s (a hung filesystem?)"
        )),
    };
    match engine {
        None => inv.notes.push("no engine given".into()),
        Some(engine) => {
            let info =
                tokio::time::timeout(Duration::from_secs(ENGINE_INFO_TIMEOUT_S), engine.info())
                    .await;
            match info {
                Ok(Ok(info)) => {
                    inv.engine = Some(EngineFacts {
                        kind: info.kind.to_string(),
                        version: info.version,
                        api_version: info.api_version,
                        runtime: info.runtime,
                        cgroup_driver: info.cgroup_driver,
                        cgroup_version: info.cgroup_version,
                    })
                }
                Ok(Err(e)) => inv.notes.push(format!("engine info failed: {e}")),
                Err(_) => inv.notes.push(format!(
                    "engine info did not answer within {ENGINE_INFO_TIMEOUT_S}s"
                )),
            }
        }
    }
    inv
}

fn empty(note: String) -> Inventory {
    Inventory {
        cpu: CpuInfo::default(),
        memory: MemInfo::default(),
        disks: Vec::new(),
        paths: Vec::new(),
        kernel: None,
        cgroup_mode: CgroupMode::Unknown,
        engine: None,
        notes: vec![note],
    }
}

fn collect_host(paths: &[PathBuf]) -> Inventory {
    let mut notes = Vec::new();
    let mut read = |path: &str| match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            notes.push(format!("{path} unreadable: {e}"));
            None
        }
    };
    let mut cpu = read("/proc/cpuinfo")
        .map(|t| parse_cpuinfo(&t))
        .unwrap_or_default();
    let memory = read("/proc/meminfo")
        .map(|t| parse_meminfo(&t))
        .unwrap_or_default();
    let kernel = read("/proc/sys/kernel/osrelease").map(|t| t.trim().to_string());
    if cpu.logical_cpus.is_none() {
        cpu.logical_cpus = std::thread::available_parallelism()
            .ok()
            .and_then(|n| u32::try_from(n.get()).ok());
    }
    let disks = collect_disks(Path::new("/sys/block"), &mut notes);
    let paths: Vec<PathInfo> = paths.iter().map(|p| path_info(p)).collect();
    for p in &paths {
        if let Some(e) = &p.error {
            notes.push(format!("data path {}: {e}", p.path.display()));
        }
    }
    Inventory {
        cpu,
        memory,
        disks,
        paths,
        kernel,
        cgroup_mode: berth_engine::detect_host().cgroup_mode,
        engine: None,
        notes,
    }
}

/// Inventory as measurements (what the report tables show).
pub fn measurements(inv: &Inventory) -> Vec<Measurement> {
    let mut m = Vec::new();
    if let Some(n) = inv.cpu.logical_cpus {
        m.push(Measurement::new("logical_cpus", f64::from(n), "count"));
    }
    if let Some(b) = inv.memory.total_bytes {
        m.push(Measurement::new("memory_total", round(gib(b), 2), "GiB"));
    }
    if let Some(b) = inv.memory.available_bytes {
        m.push(Measurement::new(
            "memory_available",
            round(gib(b), 2),
            "GiB",
        ));
    }
    m.push(Measurement::new("disks", inv.disks.len() as f64, "count"));
    for p in &inv.paths {
        if let Some(b) = p.free_bytes {
            m.push(Measurement::new(
                per_path("free", &p.path),
                round(gib(b), 2),
                "GiB",
            ));
        }
    }
    m
}

/// One line for the stage summary.
pub fn summary(inv: &Inventory) -> String {
    let cpus = inv
        .cpu
        .logical_cpus
        .map_or("? CPUs".to_string(), |n| format!("{n} CPUs"));
    let model = inv.cpu.model.as_deref().unwrap_or("unknown model");
    let mem = inv
        .memory
        .total_bytes
        .map_or("? GiB".to_string(), |b| format!("{:.1} GiB", gib(b)));
    let disks = if inv.disks.is_empty() {
        "no disks listed".to_string()
    } else {
        inv.disks
            .iter()
            .map(|d| format!("{} {:.0} GiB", d.name, gib(d.size_bytes)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let engine = inv.engine.as_ref().map_or("no engine".to_string(), |e| {
        format!("{} {}", e.kind, e.version)
    });
    let mut line = format!(
        "{cpus} ({model}), {mem} RAM, disks: {disks}; kernel {}; cgroups {}; {engine}",
        inv.kernel.as_deref().unwrap_or("unknown"),
        inv.cgroup_mode
    );
    if !inv.notes.is_empty() {
        line.push_str(&format!("; not read: {}", inv.notes.join("; ")));
    }
    line
}

pub(crate) struct InventoryStage(pub std::sync::Arc<VetShared>);

#[async_trait]
impl Stage for InventoryStage {
    fn name(&self) -> &str {
        STAGE_INVENTORY
    }

    async fn run(&self, _ctx: &StageContext<'_>) -> StageOutcome {
        let shared = &self.0;
        let inv = collect(shared.engine.as_deref(), &shared.inventory_paths()).await;
        shared.set_inventory(inv.clone());
        let json = serde_json::to_string_pretty(&inv).expect("an inventory always serialises");
        StageOutcome {
            passed: true,
            summary: summary(&inv),
            measurements: measurements(&inv),
            artifacts: vec![ArtifactOut::text(
                INVENTORY_ARTIFACT,
                "application/json",
                json,
            )],
            environment: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO_X86: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n";
    const CPUINFO_PI: &str = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\nprocessor\t: 1\n\nprocessor\t: 2\n\nprocessor\t: 3\n\nHardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";

    #[test]
    fn cpuinfo_counts_processors_and_finds_the_model() {
        assert_eq!(
            parse_cpuinfo(CPUINFO_X86),
            CpuInfo {
                model: Some("AMD EPYC".into()),
                logical_cpus: Some(2)
            }
        );
        assert_eq!(
            parse_cpuinfo(CPUINFO_PI),
            CpuInfo {
                model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
                logical_cpus: Some(4)
            }
        );
        assert_eq!(parse_cpuinfo(""), CpuInfo::default());
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       24683656 kB\nMemFree:        18376480 kB\nMemAvailable:   23572048 kB\nSwapTotal:             0 kB\n";
        assert_eq!(
            parse_meminfo(text),
            MemInfo {
                total_bytes: Some(24_683_656 * 1024),
                available_bytes: Some(23_572_048 * 1024),
                swap_total_bytes: Some(0),
            }
        );
        assert_eq!(parse_meminfo("garbage"), MemInfo::default());
    }

    #[test]
    fn loop_and_ram_devices_are_not_disks() {
        for name in ["loop0", "ram1", "zram0"] {
            assert!(!is_listed_disk(name), "{name}");
        }
        for name in ["sda", "vda", "nvme0n1", "mmcblk0", "dm-0"] {
            assert!(is_listed_disk(name), "{name}");
        }
    }

    #[test]
    fn a_missing_data_path_is_noted_not_fatal() {
        let inv = collect_host(&[PathBuf::from("/nonexistent/berth-data")]);
        assert!(!inv.paths[0].exists);
        assert!(
            inv.notes
                .iter()
                .any(|n| n == "data path /nonexistent/berth-data: does not exist"),
            "{:?}",
            inv.notes
        );
        // This machine has a /proc: the basics were read.
        assert!(inv.cpu.logical_cpus.unwrap_or(0) >= 1);
        assert!(inv.memory.total_bytes.is_some());
        assert!(inv.kernel.is_some());
    }

    #[test]
    fn free_space_and_the_backing_disk_of_a_real_path_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let info = path_info(dir.path());
        assert!(info.exists);
        assert!(info.free_bytes.unwrap() > 0);
        assert!(info.total_bytes.unwrap() >= info.free_bytes.unwrap());
        assert_eq!(info.error, None);
    }
}
