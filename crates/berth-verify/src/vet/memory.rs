//! Memory: a bounded allocation written with a pseudo-random pattern and
//! verified, then with its complement and verified again (every bit is
//! seen as 0 and as 1). The size is capped by `memory_test_mib` and by a
//! quarter of the memory available, so vet never pushes a box into swap or
//! the OOM killer.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_core::pipeline::Measurement;
use serde::{Deserialize, Serialize};

use super::{STAGE_MEMORY, VetShared, round};
use crate::executor::{Stage, StageContext, StageOutcome};

/// At most this share of the available memory is tested.
pub const AVAILABLE_SHARE_DIVISOR: u64 = 4;
/// Bound on the whole test.
const MEMORY_TEST_TIMEOUT_S: u64 = 120;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemResult {
    pub mib: u64,
    /// Fill throughput over both passes.
    pub write_mb_s: f64,
    /// Verify throughput over both passes.
    pub verify_mb_s: f64,
    /// Words that read back different from what was written.
    pub bad_words: u64,
    /// Byte offset of the first bad word.
    pub first_bad_offset: Option<u64>,
}

/// The MiB to test: `requested`, capped to a quarter of `available_bytes`
/// when that is known. Never 0.
pub fn test_size_mib(requested: u32, available_bytes: Option<u64>) -> u64 {
    let requested = u64::from(requested);
    match available_bytes {
        Some(avail) => requested
            .min(avail / AVAILABLE_SHARE_DIVISOR / (1 << 20))
            .max(1),
        None => requested.max(1),
    }
}

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Run the pattern test over `mib` MiB. Blocking.
pub fn pattern_test(mib: u64) -> Result<MemResult, String> {
    let words = usize::try_from(mib * (1 << 20) / 8).map_err(|_| "size too large".to_string())?;
    let mut mem: Vec<u64> = Vec::new();
    mem.try_reserve_exact(words)
        .map_err(|e| format!("cannot allocate {mib} MiB: {e}"))?;
    let mut bad_words = 0u64;
    let mut first_bad: Option<usize> = None;
    let (mut write_time, mut verify_time) = (Duration::ZERO, Duration::ZERO);
    for (pass, invert) in [(0u64, 0u64), (1, u64::MAX)] {
        let seed = 0x2545_F491_4F6C_DD1D ^ pass;
        let started = Instant::now();
        let mut x = seed;
        if pass == 0 {
            mem.extend((0..words).map(|_| next(&mut x)));
        } else {
            for w in mem.iter_mut() {
                *w = next(&mut x) ^ invert;
            }
        }
        write_time += started.elapsed();
        let started = Instant::now();
        let mut x = seed;
        for (i, w) in mem.iter().enumerate() {
            if *w != next(&mut x) ^ invert {
                bad_words += 1;
                first_bad.get_or_insert(i);
            }
        }
        verify_time += started.elapsed();
    }
    let bytes = 2.0 * (words as f64) * 8.0;
    Ok(MemResult {
        mib,
        write_mb_s: round(bytes / 1e6 / write_time.as_secs_f64().max(1e-9), 1),
        verify_mb_s: round(bytes / 1e6 / verify_time.as_secs_f64().max(1e-9), 1),
        bad_words,
        first_bad_offset: first_bad.map(|i| i as u64 * 8),
    })
}

pub(crate) struct MemoryStage(pub std::sync::Arc<VetShared>);

#[async_trait]
impl Stage for MemoryStage {
    fn name(&self) -> &str {
        STAGE_MEMORY
    }

    async fn run(&self, ctx: &StageContext<'_>) -> StageOutcome {
        let shared = &self.0;
        let inv = shared.inventory(ctx).await;
        let mib = test_size_mib(shared.opts.memory_test_mib, inv.memory.available_bytes);
        let capped = if mib < u64::from(shared.opts.memory_test_mib) {
            format!(
                " (capped from {} MiB to a quarter of the available memory)",
                shared.opts.memory_test_mib
            )
        } else {
            String::new()
        };
        let test = tokio::task::spawn_blocking(move || pattern_test(mib));
        let result =
            match tokio::time::timeout(Duration::from_secs(MEMORY_TEST_TIMEOUT_S), test).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(format!("memory test task failed: {e}")),
                Err(_) => Err(format!(
                    "memory test did not finish within {MEMORY_TEST_TIMEOUT_S}s"
                )),
            };
        match result {
            Err(e) => StageOutcome::fail(e),
            Ok(r) => {
                let mut out = if r.bad_words == 0 {
                    StageOutcome::pass(format!(
                        "{} MiB pattern written and verified twice{capped}: write {} MB/s, verify {} MB/s",
                        r.mib, r.write_mb_s, r.verify_mb_s
                    ))
                } else {
                    StageOutcome::fail(format!(
                        "{} words of {} MiB read back wrong (first at byte offset {}): faulty memory",
                        r.bad_words,
                        r.mib,
                        r.first_bad_offset.unwrap_or(0)
                    ))
                };
                out.measurements = vec![
                    Measurement::new("tested", r.mib as f64, "MiB"),
                    Measurement::new("write", r.write_mb_s, "MB/s"),
                    Measurement::new("verify", r.verify_mb_s, "MB/s"),
                    Measurement::new("bad_words", r.bad_words as f64, "count"),
                ];
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_pattern_test_passes() {
        let r = pattern_test(2).unwrap();
        assert_eq!(r.mib, 2);
        assert_eq!(r.bad_words, 0);
        assert_eq!(r.first_bad_offset, None);
        assert!(r.write_mb_s > 0.0 && r.verify_mb_s > 0.0);
    }

    #[test]
    fn the_size_is_capped_by_available_memory() {
        assert_eq!(test_size_mib(256, None), 256);
        assert_eq!(test_size_mib(256, Some(64 << 30)), 256);
        assert_eq!(test_size_mib(256, Some(400 << 20)), 100);
        assert_eq!(test_size_mib(256, Some(0)), 1);
    }
}
