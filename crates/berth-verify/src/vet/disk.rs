//! Disk: SMART health where `smartctl` exists and the disk supports it
//! (tolerated and reported otherwise: virtio disks have no SMART), and a
//! bounded write/fsync/read test in a temporary file on each data path.
//!
//! The test writes `disk_test_mib` MiB in 256 KiB chunks of a pseudo-random
//! pattern, each followed by `fdatasync` (timed on its own; 256 samples for
//! the default 64 MiB, so p99 is not just the single slowest sync), drops the file from the
//! page cache (`posix_fadvise(DONTNEED)`, best effort), reads it back and
//! verifies every byte. The file is created with `O_EXCL` under a
//! `.berth-vet-` prefix and removed afterwards, also on failure.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_core::pipeline::Measurement;
use serde::{Deserialize, Serialize};

use super::{STAGE_DISK, VetFloors, VetShared, per_path, round};
use crate::executor::{ArtifactOut, Stage, StageContext, StageOutcome};
use crate::tool;

/// Size of one write and of one fsync'd unit.
pub const CHUNK_BYTES: usize = 256 * 1024;
const MIB: u64 = 1024 * 1024;
/// A path must have this many times the test size free before it is
/// written to, so the test never fills a nearly full disk.
pub const FREE_SPACE_FACTOR: u64 = 4;
/// Bound on one `smartctl -H` call.
const SMARTCTL_TIMEOUT_S: u64 = 20;
/// Bound on the whole I/O test of one path.
const IO_TEST_TIMEOUT_S: u64 = 120;

/// What the I/O test measured on one path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoResult {
    pub bytes: u64,
    /// Synchronous write throughput (each chunk written and fdatasync'd).
    pub write_mb_s: f64,
    pub read_mb_s: f64,
    pub fsync_p50_ms: f64,
    pub fsync_p99_ms: f64,
    pub fsync_max_ms: f64,
    /// Chunks (of `CHUNK_BYTES`) that read back different from what was
    /// written.
    pub corrupt_chunks: u32,
    /// Whether the page cache could be dropped before reading back (if not,
    /// the read figure measures memory, not the disk).
    pub cache_dropped: bool,
}

/// The SMART verdict on one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "health", content = "detail", rename_all = "snake_case")]
pub enum SmartHealth {
    Passed,
    /// The disk reports it is failing: the stage fails.
    Failing(String),
    /// No SMART on this device (virtual disks, some USB bridges):
    /// tolerated.
    Unsupported(String),
    /// smartctl ran but said nothing conclusive: tolerated.
    Unknown(String),
}

/// Classify `smartctl -H` output. Exit status bits (smartctl(8)): 1 bad
/// command line, 2 device open failed, 4 a SMART command failed, 8 "DISK
/// FAILING", 16 prefail attributes at threshold, 32/64/128 past problems.
pub fn classify_smart(exit_code: Option<i32>, output: &str) -> SmartHealth {
    let code = exit_code.unwrap_or(-1);
    let health_line = output.lines().map(str::trim).find(|l| {
        l.starts_with("SMART overall-health self-assessment test result:")
            || l.starts_with("SMART Health Status:")
    });
    let first_line = || {
        output
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .find(|l| !l.starts_with("smartctl ") && !l.starts_with("Copyright"))
            .unwrap_or("no output")
            .to_string()
    };
    if code >= 0 && code & (8 | 16) != 0 {
        return SmartHealth::Failing(
            health_line
                .map(str::to_string)
                .unwrap_or_else(|| format!("smartctl exit status {code}: disk failing")),
        );
    }
    if let Some(line) = health_line {
        let verdict = line.rsplit(':').next().unwrap_or("").trim();
        return match verdict {
            "PASSED" | "OK" => SmartHealth::Passed,
            _ => SmartHealth::Failing(line.to_string()),
        };
    }
    if code < 0 || code & (1 | 2 | 4) != 0 {
        return SmartHealth::Unsupported(first_line());
    }
    SmartHealth::Unknown(first_line())
}

/// Fill `buf` with the pattern of chunk `index` (xorshift64, so every
/// chunk differs and a misdirected write is caught).
fn fill_chunk(buf: &mut [u8], index: u64) {
    let mut x = (0x9E37_79B9_7F4A_7C15u64 ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03)) | 1;
    for word in buf.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mb_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9)
}

/// The bounded write/fsync/read test in `dir`. Blocking.
pub fn io_test(dir: &Path, size_mib: u32) -> Result<IoResult, String> {
    let mut file = tempfile::Builder::new()
        .prefix(".berth-vet-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot create a test file in {}: {e}", dir.display()))?;
    let chunks = u64::from(size_mib) * MIB / CHUNK_BYTES as u64;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut fsyncs = Vec::with_capacity(chunks as usize);
    let started = Instant::now();
    for i in 0..chunks {
        fill_chunk(&mut buf, i);
        let f = file.as_file_mut();
        f.write_all(&buf)
            .map_err(|e| format!("write failed at chunk {i}: {e}"))?;
        let sync = Instant::now();
        f.sync_data()
            .map_err(|e| format!("fdatasync failed at chunk {i}: {e}"))?;
        fsyncs.push(sync.elapsed().as_secs_f64() * 1000.0);
    }
    let write_took = started.elapsed();
    let bytes = chunks * CHUNK_BYTES as u64;

    let f = file.as_file_mut();
    let cache_dropped = rustix::fs::fadvise(&*f, 0, None, rustix::fs::Advice::DontNeed).is_ok();
    f.seek(SeekFrom::Start(0))
        .map_err(|e| format!("seek failed: {e}"))?;
    let mut expect = vec![0u8; CHUNK_BYTES];
    let mut corrupt_chunks = 0u32;
    let started = Instant::now();
    for i in 0..chunks {
        f.read_exact(&mut buf)
            .map_err(|e| format!("read back failed at chunk {i}: {e}"))?;
        fill_chunk(&mut expect, i);
        if buf != expect {
            corrupt_chunks += 1;
        }
    }
    let read_took = started.elapsed();
    file.close()
        .map_err(|e| format!("cannot remove the test file: {e}"))?;

    fsyncs.sort_by(f64::total_cmp);
    Ok(IoResult {
        bytes,
        write_mb_s: round(mb_s(bytes, write_took), 1),
        read_mb_s: round(mb_s(bytes, read_took), 1),
        fsync_p50_ms: round(percentile(&fsyncs, 50.0), 3),
        fsync_p99_ms: round(percentile(&fsyncs, 99.0), 3),
        fsync_max_ms: round(fsyncs.last().copied().unwrap_or(0.0), 3),
        corrupt_chunks,
        cache_dropped,
    })
}

/// Where `result` misses `floors`, one sentence each.
pub fn below_floors(result: &IoResult, floors: &VetFloors) -> Vec<String> {
    let mut out = Vec::new();
    if result.corrupt_chunks > 0 {
        out.push(format!(
            "{} chunks of {} KiB read back different from what was written",
            result.corrupt_chunks,
            CHUNK_BYTES / 1024
        ));
    }
    if result.write_mb_s < floors.disk_write_mb_s_min {
        out.push(format!(
            "write {} MB/s is below {} MB/s",
            result.write_mb_s, floors.disk_write_mb_s_min
        ));
    }
    if result.read_mb_s < floors.disk_read_mb_s_min {
        out.push(format!(
            "read {} MB/s is below {} MB/s",
            result.read_mb_s, floors.disk_read_mb_s_min
        ));
    }
    if result.fsync_p99_ms > floors.disk_fsync_p99_ms_max {
        out.push(format!(
            "fsync p99 {} ms is above {} ms",
            result.fsync_p99_ms, floors.disk_fsync_p99_ms_max
        ));
    }
    out
}

pub(crate) struct DiskStage(pub std::sync::Arc<VetShared>);

#[async_trait]
impl Stage for DiskStage {
    fn name(&self) -> &str {
        STAGE_DISK
    }

    async fn run(&self, ctx: &StageContext<'_>) -> StageOutcome {
        let shared = &self.0;
        let opts = &shared.opts;
        let mut out = StageOutcome::pass("");
        let mut lines: Vec<String> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        if opts.data_paths.is_empty() {
            lines.push("no data paths given: I/O not tested".into());
        }
        let inv = shared.inventory(ctx).await;
        let mut devices = BTreeSet::new();
        for path in &opts.data_paths {
            let shown = path.display().to_string();
            if !path.is_dir() {
                failures.push(format!("{shown}: not an existing directory"));
                continue;
            }
            let info = inv.path(path);
            match info.and_then(|p| p.device.clone()) {
                Some(dev) => {
                    devices.insert(dev);
                }
                None => lines.push(format!(
                    "{shown}: no block device behind it (overlay, tmpfs or network filesystem?): SMART not checked"
                )),
            }
            let need = u64::from(opts.disk_test_mib) * MIB * FREE_SPACE_FACTOR;
            if let Some(free) = info.and_then(|p| p.free_bytes)
                && free < need
            {
                failures.push(format!(
                    "{shown}: only {free} bytes free, the {} MiB test needs {need}",
                    opts.disk_test_mib
                ));
                continue;
            }
            let dir = path.clone();
            let size = opts.disk_test_mib;
            let test = tokio::task::spawn_blocking(move || io_test(&dir, size));
            let result =
                match tokio::time::timeout(Duration::from_secs(IO_TEST_TIMEOUT_S), test).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => Err(format!("I/O test task failed: {e}")),
                    Err(_) => Err(format!(
                        "I/O test did not finish within {IO_TEST_TIMEOUT_S}s"
                    )),
                };
            match result {
                Err(e) => failures.push(format!("{shown}: {e}")),
                Ok(r) => {
                    out.measurements.extend([
                        Measurement::new(per_path("write", path), r.write_mb_s, "MB/s"),
                        Measurement::new(per_path("read", path), r.read_mb_s, "MB/s"),
                        Measurement::new(per_path("fsync_p50", path), r.fsync_p50_ms, "ms"),
                        Measurement::new(per_path("fsync_p99", path), r.fsync_p99_ms, "ms"),
                        Measurement::new(per_path("fsync_max", path), r.fsync_max_ms, "ms"),
                    ]);
                    lines.push(format!(
                        "{shown}: {} MiB write {} MB/s, read {} MB/s{}, fsync p50 {} ms p99 {} ms",
                        r.bytes / MIB,
                        r.write_mb_s,
                        r.read_mb_s,
                        if r.cache_dropped {
                            ""
                        } else {
                            " (page cache not dropped)"
                        },
                        r.fsync_p50_ms,
                        r.fsync_p99_ms
                    ));
                    failures.extend(
                        below_floors(&r, &opts.floors)
                            .into_iter()
                            .map(|f| format!("{shown}: {f}")),
                    );
                    out.artifacts.push(ArtifactOut::text(
                        &format!("io-{}.json", path.display()),
                        "application/json",
                        serde_json::to_string_pretty(&r).expect("an IoResult serialises"),
                    ));
                }
            }
        }
        smart(&devices, &mut lines, &mut failures, &mut out).await;
        out.passed = failures.is_empty();
        out.summary = failures
            .iter()
            .map(|f| format!("FAILED {f}"))
            .chain(lines)
            .collect::<Vec<_>>()
            .join("; ");
        out
    }
}

async fn smart(
    devices: &BTreeSet<String>,
    lines: &mut Vec<String>,
    failures: &mut Vec<String>,
    out: &mut StageOutcome,
) {
    if devices.is_empty() {
        return;
    }
    let Some(smartctl) = tool::find("smartctl") else {
        lines.push(format!(
            "SMART not checked on {}: smartctl is not installed (tolerated; Debian package smartmontools)",
            devices.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
        return;
    };
    for dev in devices {
        let node = format!("/dev/{dev}");
        match tool::run(
            &smartctl,
            &["-H", &node],
            Duration::from_secs(SMARTCTL_TIMEOUT_S),
        )
        .await
        {
            Err(e) => lines.push(format!("SMART {dev}: {e} (tolerated)")),
            Ok(output) => {
                let health = classify_smart(output.exit_code, &output.stdout);
                out.artifacts.push(ArtifactOut::text(
                    &format!("smart-{dev}.txt"),
                    "text/plain",
                    output.combined(),
                ));
                out.measurements.push(Measurement::new(
                    format!("smart_passed {dev}"),
                    if health == SmartHealth::Passed {
                        1.0
                    } else {
                        0.0
                    },
                    "bool",
                ));
                match health {
                    SmartHealth::Passed => lines.push(format!("SMART {dev}: PASSED")),
                    SmartHealth::Failing(why) => failures.push(format!("SMART {dev}: {why}")),
                    SmartHealth::Unsupported(why) => lines.push(format!(
                        "SMART {dev}: not supported by this disk ({why}; tolerated)"
                    )),
                    SmartHealth::Unknown(why) => {
                        lines.push(format!("SMART {dev}: inconclusive ({why}; tolerated)"))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_output_is_classified() {
        let ata_ok = "smartctl 7.3 2022-02-28 r5338 [x86_64-linux-6.1.0] (local build)\nCopyright (C) 2002-22, Bruce Allen\n\n=== START OF READ SMART DATA SECTION ===\nSMART overall-health self-assessment test result: PASSED\n";
        assert_eq!(classify_smart(Some(0), ata_ok), SmartHealth::Passed);
        let ata_bad = "=== START OF READ SMART DATA SECTION ===\nSMART overall-health self-assessment test result: FAILED!\nDrive failure expected in less than 24 hours. SAVE ALL DATA.\n";
        assert_eq!(
            classify_smart(Some(8), ata_bad),
            SmartHealth::Failing(
                "SMART overall-health self-assessment test result: FAILED!".into()
            )
        );
        assert_eq!(
            classify_smart(Some(0), "SMART Health Status: OK\n"),
            SmartHealth::Passed
        );
        let virtio = "smartctl 7.3 2022-02-28 r5338\nCopyright (C) 2002-22, Bruce Allen\n\n/dev/vda: Unable to detect device type\nPlease specify device type with the -d option.\n";
        assert_eq!(
            classify_smart(Some(1), virtio),
            SmartHealth::Unsupported("/dev/vda: Unable to detect device type".into())
        );
        let no_smart = "=== START OF INFORMATION SECTION ===\nSMART support is: Unavailable - device lacks SMART capability.\n";
        assert!(matches!(
            classify_smart(Some(4), no_smart),
            SmartHealth::Unsupported(_)
        ));
        assert!(matches!(
            classify_smart(Some(0), "nothing"),
            SmartHealth::Unknown(_)
        ));
        // Prefail attributes at threshold: failing even if the summary line
        // still says PASSED.
        assert!(matches!(
            classify_smart(Some(16), ata_ok),
            SmartHealth::Failing(_)
        ));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v[..10], 99.0), 10.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn chunks_have_distinct_patterns() {
        let (mut a, mut b) = (vec![0u8; 64], vec![0u8; 64]);
        fill_chunk(&mut a, 0);
        fill_chunk(&mut b, 1);
        assert_ne!(a, b);
        let mut a2 = vec![0u8; 64];
        fill_chunk(&mut a2, 0);
        assert_eq!(a, a2);
    }

    #[test]
    fn the_io_test_measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let r = io_test(dir.path(), 4).unwrap();
        assert_eq!(r.bytes, 4 * MIB);
        assert_eq!(r.corrupt_chunks, 0);
        assert!(r.write_mb_s > 0.0 && r.read_mb_s > 0.0);
        assert!(r.fsync_p50_ms <= r.fsync_p99_ms && r.fsync_p99_ms <= r.fsync_max_ms);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "test file removed"
        );
    }

    #[test]
    fn results_below_the_floors_are_named() {
        let r = IoResult {
            bytes: 1,
            write_mb_s: 5.0,
            read_mb_s: 500.0,
            fsync_p50_ms: 1.0,
            fsync_p99_ms: 250.0,
            fsync_max_ms: 300.0,
            corrupt_chunks: 1,
            cache_dropped: true,
        };
        assert_eq!(
            below_floors(&r, &VetFloors::default()),
            vec![
                "1 chunks of 256 KiB read back different from what was written",
                "write 5 MB/s is below 10 MB/s",
                "fsync p99 250 ms is above 100 ms",
            ]
        );
    }
}
