//! Progress checks: a value the app reports — a chain tip, an indexer's
//! height — must advance, so "the process answers" is never mistaken for
//! "the app works".
//!
//! A health check may carry a [`ProgressCheck`](crate::model::ProgressCheck).
//! On every round of the check the monitor reads the value (from the app's
//! chain probe, an HTTP JSON document or a command) and feeds the reading to
//! a [`ProgressTracker`]. The tracker keeps the highest value seen and when
//! it was first seen, and answers with a [`ProgressVerdict`]:
//!
//! - **unknown** while the start period runs: no verdict, whatever is read
//!   (the value is still noted, so a node that advanced during its start
//!   period is not stalled right after it);
//! - **advancing** when the highest value rose within the last `within`
//!   (the first value read starts the window);
//! - **stalled** when it has not risen for longer than `within`: the round
//!   fails with `chain tip stuck at 812345 since 12:03:10 (must advance
//!   within 20m)` (UTC; with the date when it is more than a day ago). The
//!   reason names a moment, not a growing duration, so it stays the same
//!   for as long as the value is stuck: the planner records a note once,
//!   not on every tick. A value going **backwards** is not advancing: the
//!   window keeps running from when the highest value was first seen, and
//!   the reason says where it went (`…, now 812300`);
//! - **unreadable** when the value cannot be read (no answer, not a
//!   number): the round fails, as any failed probe does.
//!
//! The window never starts before the start period ends: with
//! `start_period = 10m` and `within = 20m`, a value that never moves is
//! stalled 30 minutes after the start at the earliest. A failing round
//! counts like any other failure of the check: `retries` consecutive
//! failing rounds make the app unhealthy (and supervision restarts it).
//!
//! Pure: the caller passes every reading and the time (`now_ms`); there is
//! no IO and no clock here. Trackers live in memory only: a restarted
//! container or a restarted daemon starts a fresh window.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::gate::format_since;

/// The value the tracker judges: a finite number.
pub type ProgressValue = f64;

/// What one round read: the value, or why it could not be read.
pub type ProgressReading = Result<ProgressValue, String>;

/// The highest value seen, and from when it counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProgressMark {
    pub value: ProgressValue,
    /// When `value` was first seen, never before the start period's end.
    pub since_ms: u64,
}

/// The tracker's verdict on one reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum ProgressVerdict {
    /// The start period runs: no verdict. `read` is this round's reading.
    Unknown { read: ProgressReading },
    /// The highest value `value` rose within the window (or the window
    /// since the first value has not passed yet). `latest` is this round's
    /// reading (below `value` when the value went backwards).
    Advancing {
        value: ProgressValue,
        latest: ProgressValue,
        since_ms: u64,
    },
    /// The highest value `value` has not risen since `since_ms`, for
    /// `stalled_ms` > `within_ms`. `latest` is this round's reading (below
    /// `value` when the value went backwards).
    Stalled {
        value: ProgressValue,
        latest: ProgressValue,
        since_ms: u64,
        stalled_ms: u64,
        within_ms: u64,
    },
    /// The value could not be read (after the start period).
    Unreadable { error: String },
}

impl ProgressVerdict {
    /// Whether this round of the check fails because of it.
    pub fn fails(&self) -> bool {
        matches!(
            self,
            ProgressVerdict::Stalled { .. } | ProgressVerdict::Unreadable { .. }
        )
    }

    /// One line for the health detail, the event and `status`: `label`
    /// names the value (`chain tip`).
    pub fn describe(&self, label: &str) -> String {
        match self {
            ProgressVerdict::Unknown { read: Ok(v) } => {
                format!("{label} at {} (start period)", show(*v))
            }
            ProgressVerdict::Unknown { read: Err(e) } => {
                format!("cannot read {label} yet (start period): {e}")
            }
            ProgressVerdict::Advancing { value, latest, .. } if latest < value => format!(
                "{label} at {}, below its highest {}",
                show(*latest),
                show(*value)
            ),
            ProgressVerdict::Advancing { value, .. } => format!("{label} at {}", show(*value)),
            ProgressVerdict::Stalled {
                value,
                latest,
                since_ms,
                stalled_ms,
                within_ms,
            } => {
                let back = if latest < value {
                    format!(", now {}", show(*latest))
                } else {
                    String::new()
                };
                let since = *since_ms;
                format!(
                    "{label} stuck at {} since {}{back} (must advance within {})",
                    show(*value),
                    format_since(since, since.saturating_add(*stalled_ms)),
                    crate::duration::format_duration(Duration::from_millis(*within_ms)),
                )
            }
            ProgressVerdict::Unreadable { error } => format!("cannot read {label}: {error}"),
        }
    }
}

/// A value as people write it: `812345`, `0.5`.
pub fn show(v: ProgressValue) -> String {
    // f64's Display never uses an exponent and drops a zero fraction.
    format!("{v}")
}

/// Judges the readings of one container's progress check. Made fresh for
/// every monitor (a started container, a started daemon).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressTracker {
    within_ms: u64,
    /// No verdict before this (the end of the start period); the window
    /// never starts before it either.
    judge_from_ms: u64,
    best: Option<ProgressMark>,
}

impl ProgressTracker {
    /// A tracker for a container whose monitor started at `started_ms`.
    pub fn new(within: Duration, started_ms: u64, start_period: Duration) -> ProgressTracker {
        ProgressTracker {
            within_ms: millis(within),
            judge_from_ms: started_ms.saturating_add(millis(start_period)),
            best: None,
        }
    }

    /// The highest value seen so far, and from when it counts.
    pub fn best(&self) -> Option<ProgressMark> {
        self.best
    }

    /// Record this round's reading at `now_ms` and judge it.
    pub fn observe(&mut self, read: ProgressReading, now_ms: u64) -> ProgressVerdict {
        let read = read.and_then(|v| {
            if v.is_finite() {
                Ok(v)
            } else {
                Err(format!("{v} is not a finite number"))
            }
        });
        let counts_from = now_ms.max(self.judge_from_ms);
        if let Ok(v) = &read
            && self.best.is_none_or(|b| *v > b.value)
        {
            self.best = Some(ProgressMark {
                value: *v,
                since_ms: counts_from,
            });
        }
        if now_ms < self.judge_from_ms {
            return ProgressVerdict::Unknown { read };
        }
        let latest = match read {
            Ok(v) => v,
            Err(error) => return ProgressVerdict::Unreadable { error },
        };
        let best = self
            .best
            .expect("a value was just read, so there is a highest one");
        let stalled_ms = now_ms.saturating_sub(best.since_ms);
        if stalled_ms > self.within_ms {
            ProgressVerdict::Stalled {
                value: best.value,
                latest,
                since_ms: best.since_ms,
                stalled_ms,
                within_ms: self.within_ms,
            }
        } else {
            ProgressVerdict::Advancing {
                value: best.value,
                latest,
                since_ms: best.since_ms,
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    /// A tracker with `within` 20 s, started at t = 100 s, start period 10 s.
    fn tracker() -> ProgressTracker {
        ProgressTracker::new(Duration::from_secs(20), 100 * S, Duration::from_secs(10))
    }

    /// Feed `(t seconds, reading)` rows; return each verdict's description
    /// and whether it fails.
    fn run(t: &mut ProgressTracker, rows: &[(u64, ProgressReading)]) -> Vec<(u64, String, bool)> {
        rows.iter()
            .map(|(at, read)| {
                let v = t.observe(read.clone(), at * S);
                (*at, v.describe("chain tip"), v.fails())
            })
            .collect()
    }

    fn ok(v: f64) -> ProgressReading {
        Ok(v)
    }

    fn err(e: &str) -> ProgressReading {
        Err(e.to_string())
    }

    #[test]
    fn an_advancing_value_never_fails() {
        let mut t = tracker();
        let rows: Vec<(u64, ProgressReading)> = (0..20)
            .map(|i| (110 + i * 15, ok(812_000.0 + i as f64)))
            .collect();
        for (at, detail, fails) in run(&mut t, &rows) {
            assert!(!fails, "t={at}: {detail}");
        }
        assert_eq!(
            t.best(),
            Some(ProgressMark {
                value: 812_019.0,
                since_ms: 395 * S
            })
        );
    }

    #[test]
    fn a_value_stuck_for_longer_than_within_fails_with_the_stuck_value() {
        let mut t = tracker();
        assert_eq!(
            run(
                &mut t,
                &[
                    (110, ok(812_344.0)),
                    (115, ok(812_345.0)),
                    (125, ok(812_345.0)),
                    // Exactly `within`: not longer, still fine.
                    (135, ok(812_345.0)),
                    (136, ok(812_345.0)),
                    (1_375, ok(812_345.0)),
                    (3_800, ok(812_345.0)),
                    // It moves again: advancing, the window starts over.
                    (3_801, ok(812_346.0)),
                    (3_821, ok(812_346.0)),
                    (3_822, ok(812_346.0)),
                ]
            ),
            [
                (110, "chain tip at 812344".to_string(), false),
                (115, "chain tip at 812345".into(), false),
                (125, "chain tip at 812345".into(), false),
                (135, "chain tip at 812345".into(), false),
                (
                    136,
                    "chain tip stuck at 812345 since 00:01:55 (must advance within 20s)".into(),
                    true
                ),
                (
                    1_375,
                    "chain tip stuck at 812345 since 00:01:55 (must advance within 20s)".into(),
                    true
                ),
                (
                    3_800,
                    "chain tip stuck at 812345 since 00:01:55 (must advance within 20s)".into(),
                    true
                ),
                (3_801, "chain tip at 812346".into(), false),
                (3_821, "chain tip at 812346".into(), false),
                (
                    3_822,
                    "chain tip stuck at 812346 since 01:03:21 (must advance within 20s)".into(),
                    true
                ),
            ]
        );
    }

    #[test]
    fn a_stall_carries_the_stuck_value_its_start_and_its_length() {
        let mut t = tracker();
        t.observe(Ok(812_345.0), 115 * S);
        assert_eq!(
            t.observe(Ok(812_345.0), 1_375 * S),
            ProgressVerdict::Stalled {
                value: 812_345.0,
                latest: 812_345.0,
                since_ms: 115 * S,
                stalled_ms: 1_260 * S,
                within_ms: 20 * S,
            }
        );
        assert_eq!(
            t.observe(Ok(812_346.0), 1_376 * S),
            ProgressVerdict::Advancing {
                value: 812_346.0,
                latest: 812_346.0,
                since_ms: 1_376 * S,
            }
        );
    }

    #[test]
    fn going_backwards_is_not_advancing() {
        let mut t = tracker();
        let verdicts = run(
            &mut t,
            &[
                (110, ok(100.0)),
                (115, ok(99.0)),
                (125, ok(98.0)),
                (131, ok(97.0)),
                // Back up to the old high: still not above it.
                (140, ok(100.0)),
                // Above it: advancing again.
                (141, ok(101.0)),
            ],
        );
        assert_eq!(
            verdicts,
            [
                (110, "chain tip at 100".to_string(), false),
                (115, "chain tip at 99, below its highest 100".into(), false),
                (125, "chain tip at 98, below its highest 100".into(), false),
                (
                    131,
                    "chain tip stuck at 100 since 00:01:50, now 97 (must advance within 20s)"
                        .into(),
                    true
                ),
                (
                    140,
                    "chain tip stuck at 100 since 00:01:50 (must advance within 20s)".into(),
                    true
                ),
                (141, "chain tip at 101".into(), false),
            ]
        );
    }

    #[test]
    fn read_errors_fail_the_round_and_do_not_stop_the_window() {
        let mut t = tracker();
        assert_eq!(
            run(
                &mut t,
                &[
                    // The first read after the start period fails.
                    (110, err("connection refused")),
                    (112, ok(5.0)),
                    (120, err("no answer within 2000ms")),
                    (130, ok(5.0)),
                    (140, err("rpc error -28: Loading block index…")),
                    // The window ran on while the value was unreadable.
                    (141, ok(5.0)),
                ]
            ),
            [
                (
                    110,
                    "cannot read chain tip: connection refused".to_string(),
                    true
                ),
                (112, "chain tip at 5".into(), false),
                (
                    120,
                    "cannot read chain tip: no answer within 2000ms".into(),
                    true
                ),
                (130, "chain tip at 5".into(), false),
                (
                    140,
                    "cannot read chain tip: rpc error -28: Loading block index…".into(),
                    true
                ),
                (
                    141,
                    "chain tip stuck at 5 since 00:01:52 (must advance within 20s)".into(),
                    true
                ),
            ]
        );
    }

    #[test]
    fn no_verdict_in_the_start_period_and_the_window_starts_after_it() {
        let mut t = tracker();
        assert_eq!(
            run(
                &mut t,
                &[
                    (100, err("connection refused")),
                    (101, ok(7.0)),
                    // Unchanged for 9 s, but the start period runs (to 110).
                    (109, ok(7.0)),
                    // The window counts from 110, not from 101.
                    (110, ok(7.0)),
                    (130, ok(7.0)),
                    (131, ok(7.0)),
                ]
            ),
            [
                (
                    100,
                    "cannot read chain tip yet (start period): connection refused".to_string(),
                    false
                ),
                (101, "chain tip at 7 (start period)".into(), false),
                (109, "chain tip at 7 (start period)".into(), false),
                (110, "chain tip at 7".into(), false),
                (130, "chain tip at 7".into(), false),
                (
                    131,
                    "chain tip stuck at 7 since 00:01:50 (must advance within 20s)".into(),
                    true
                ),
            ]
        );
        // A start period longer than the window changes nothing about that.
        let mut t = ProgressTracker::new(Duration::from_secs(5), 0, Duration::from_secs(60));
        assert!(!t.observe(Ok(1.0), 0).fails());
        assert!(!t.observe(Ok(1.0), 59 * S).fails());
        assert!(!t.observe(Ok(1.0), 65 * S).fails());
        assert!(t.observe(Ok(1.0), 66 * S).fails());
    }

    #[test]
    fn advancing_during_the_start_period_counts() {
        let mut t = tracker();
        t.observe(Ok(1.0), 101 * S);
        t.observe(Ok(2.0), 105 * S);
        // Both seen before 110: the mark counts from 110.
        assert_eq!(
            t.best(),
            Some(ProgressMark {
                value: 2.0,
                since_ms: 110 * S
            })
        );
        assert!(!t.observe(Ok(2.0), 130 * S).fails());
        assert!(t.observe(Ok(2.0), 131 * S).fails());
    }

    #[test]
    fn non_finite_readings_are_unreadable() {
        let mut t = ProgressTracker::new(Duration::from_secs(5), 0, Duration::ZERO);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let v = t.observe(Ok(bad), S);
            assert!(v.fails(), "{v:?}");
            assert!(v.describe("x").contains("is not a finite number"), "{v:?}");
        }
        assert_eq!(t.best(), None);
        // Decimals and negative values are numbers like any other.
        assert!(!t.observe(Ok(-1.5), 2 * S).fails());
        assert_eq!(
            t.observe(Ok(-0.5), 3 * S).describe("offset"),
            "offset at -0.5"
        );
    }

    #[test]
    fn values_read_naturally() {
        assert_eq!(show(812_345.0), "812345");
        assert_eq!(show(0.25), "0.25");
        assert_eq!(show(1.7e18), "1700000000000000000");
        // A stall that began more than a day ago carries its date.
        let v = ProgressVerdict::Stalled {
            value: 1.0,
            latest: 1.0,
            since_ms: 1_714_565_000_000,
            stalled_ms: 2 * 86_400_000,
            within_ms: 3_600_000,
        };
        assert_eq!(
            v.describe("chain tip"),
            "chain tip stuck at 1 since 2024-05-01 12:03:20 (must advance within 1h)"
        );
    }
}
