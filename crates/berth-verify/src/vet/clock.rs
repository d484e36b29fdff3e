//! Clock: time synchronisation status and offset, from whatever this host
//! can tell: `timedatectl show` (systemd), `chronyc tracking` (chrony),
//! systemd-timesyncd's flag file, and the hardware clock (RTC) against the
//! system clock. Every unreadable source is reported, none is required; the
//! stage fails only when a source positively reports an offset beyond
//! `clock_offset_ms_max`. The engine runs on this same kernel, so its
//! clock is this clock: there is no separate engine drift to measure.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use berth_core::pipeline::Measurement;
use serde::{Deserialize, Serialize};

use super::{STAGE_CLOCK, VetShared, round};
use crate::executor::{ArtifactOut, Stage, StageContext, StageOutcome};
use crate::tool;

/// Bound on each time tool.
const TIME_TOOL_TIMEOUT_S: u64 = 10;
/// systemd-timesyncd creates this file once it has synchronised.
const TIMESYNCD_FLAG: &str = "/run/systemd/timesync/synchronized";
const RTC_SINCE_EPOCH: &str = "/sys/class/rtc/rtc0/since_epoch";
const CLOCKSOURCE: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedatectlStatus {
    pub ntp_synchronized: Option<bool>,
    pub ntp_enabled: Option<bool>,
    pub timezone: Option<String>,
}

/// `timedatectl show` (KEY=value lines).
pub fn parse_timedatectl(text: &str) -> TimedatectlStatus {
    let get = |key: &str| {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .map(|v| v.trim().to_string())
        })
    };
    let flag = |key: &str| {
        get(key).and_then(|v| match v.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        })
    };
    TimedatectlStatus {
        ntp_synchronized: flag("NTPSynchronized"),
        ntp_enabled: flag("NTP"),
        timezone: get("Timezone").filter(|t| !t.is_empty()),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChronyTracking {
    pub reference: Option<String>,
    pub stratum: Option<u32>,
    /// System clock minus true time, in seconds (positive: fast).
    pub offset_s: Option<f64>,
    /// `Normal`, or `Not synchronised`.
    pub leap_status: Option<String>,
}

impl ChronyTracking {
    pub fn synchronised(&self) -> Option<bool> {
        self.leap_status
            .as_deref()
            .map(|l| !l.eq_ignore_ascii_case("not synchronised"))
    }
}

/// `chronyc tracking`.
pub fn parse_chronyc_tracking(text: &str) -> ChronyTracking {
    let get = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    // "System time     : 0.000012345 seconds fast of NTP time"
    let offset_s = get("System time").and_then(|v| {
        let mut words = v.split_whitespace();
        let value: f64 = words.next()?.parse().ok()?;
        let _seconds = words.next()?;
        match words.next()? {
            "fast" => Some(value),
            "slow" => Some(-value),
            _ => None,
        }
    });
    ChronyTracking {
        reference: get("Reference ID"),
        stratum: get("Stratum").and_then(|s| s.parse().ok()),
        offset_s,
        leap_status: get("Leap status"),
    }
}

/// What the Clock stage found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockReport {
    pub synchronised: Option<bool>,
    pub offset_ms: Option<f64>,
    pub rtc_drift_s: Option<i64>,
    pub clocksource: Option<String>,
    pub timedatectl: Option<TimedatectlStatus>,
    pub chrony: Option<ChronyTracking>,
    /// One line per source: what it said, or why it could not be read.
    pub sources: Vec<String>,
}

/// Ask every source. `now_s` is the system time (seconds since the epoch).
pub async fn examine(now_s: i64) -> ClockReport {
    let mut report = ClockReport::default();
    let timeout = Duration::from_secs(TIME_TOOL_TIMEOUT_S);

    match tool::find("timedatectl") {
        None => report.sources.push("timedatectl: not installed".into()),
        Some(bin) => match tool::run(&bin, &["show"], timeout).await {
            Err(e) => report.sources.push(format!("timedatectl: {e}")),
            Ok(out) if out.exit_code != Some(0) => report
                .sources
                .push(format!("timedatectl: unavailable ({})", out.first_line())),
            Ok(out) => {
                let status = parse_timedatectl(&out.stdout);
                report.sources.push(format!(
                    "timedatectl: NTP synchronised {}",
                    yes_no(status.ntp_synchronized)
                ));
                if status.ntp_synchronized.is_some() {
                    report.synchronised = status.ntp_synchronized;
                }
                report.timedatectl = Some(status);
            }
        },
    }

    match tool::find("chronyc") {
        None => report.sources.push("chronyc: not installed".into()),
        Some(bin) => match tool::run(&bin, &["tracking"], timeout).await {
            Err(e) => report.sources.push(format!("chronyc: {e}")),
            Ok(out) if out.exit_code != Some(0) => report
                .sources
                .push(format!("chronyc: unavailable ({})", out.first_line())),
            Ok(out) => {
                let tracking = parse_chronyc_tracking(&out.stdout);
                let offset_ms = tracking.offset_s.map(|s| round(s * 1000.0, 3));
                report.sources.push(format!(
                    "chronyc: {} (leap status {}), offset {}",
                    tracking.reference.as_deref().unwrap_or("no reference"),
                    tracking.leap_status.as_deref().unwrap_or("?"),
                    offset_ms.map_or("unknown".into(), |ms| format!("{ms} ms"))
                ));
                // chrony knows best: it overrides timedatectl's flag.
                if let Some(sync) = tracking.synchronised() {
                    report.synchronised = Some(sync);
                }
                report.offset_ms = offset_ms;
                report.chrony = Some(tracking);
            }
        },
    }

    if Path::new(TIMESYNCD_FLAG).exists() {
        report
            .sources
            .push("systemd-timesyncd: synchronised".into());
        report.synchronised.get_or_insert(true);
    }

    match std::fs::read_to_string(RTC_SINCE_EPOCH)
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
    {
        Some(rtc) => {
            let drift = now_s - rtc;
            report.rtc_drift_s = Some(drift);
            report.sources.push(format!(
                "RTC: system clock minus hardware clock {drift} s (1 s resolution)"
            ));
        }
        None => report
            .sources
            .push("RTC: no hardware clock readable (virtual machine?)".into()),
    }
    report.clocksource = std::fs::read_to_string(CLOCKSOURCE)
        .ok()
        .map(|s| s.trim().to_string());
    report
}

fn yes_no(flag: Option<bool>) -> &'static str {
    match flag {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

/// Pass/fail and summary of a report against the offset ceiling.
pub fn judge(report: &ClockReport, offset_ms_max: f64) -> (bool, String) {
    let status = match report.synchronised {
        Some(true) => "synchronised".to_string(),
        Some(false) => "NOT synchronised (warning)".to_string(),
        None => "synchronisation status unreadable here (tolerated)".to_string(),
    };
    let mut parts = vec![status];
    let mut passed = true;
    if let Some(ms) = report.offset_ms {
        if ms.abs() > offset_ms_max {
            passed = false;
            parts.insert(
                0,
                format!("FAILED offset {ms} ms exceeds {offset_ms_max} ms"),
            );
        } else {
            parts.push(format!("offset {ms} ms"));
        }
    }
    if let Some(src) = &report.clocksource {
        parts.push(format!("clocksource {src}"));
    }
    parts.push(format!("sources: {}", report.sources.join("; ")));
    (passed, parts.join("; "))
}

pub(crate) struct ClockStage(pub std::sync::Arc<VetShared>);

#[async_trait]
impl Stage for ClockStage {
    fn name(&self) -> &str {
        STAGE_CLOCK
    }

    async fn run(&self, _ctx: &StageContext<'_>) -> StageOutcome {
        let now_s = i64::try_from(self.0.clock.now_ms() / 1000).unwrap_or(i64::MAX);
        let report = examine(now_s).await;
        let (passed, summary) = judge(&report, self.0.opts.floors.clock_offset_ms_max);
        let mut measurements = Vec::new();
        if let Some(sync) = report.synchronised {
            measurements.push(Measurement::new(
                "synchronised",
                if sync { 1.0 } else { 0.0 },
                "bool",
            ));
        }
        if let Some(ms) = report.offset_ms {
            measurements.push(Measurement::new("offset", ms, "ms"));
        }
        if let Some(s) = report.rtc_drift_s {
            measurements.push(Measurement::new("rtc_drift", s as f64, "s"));
        }
        StageOutcome {
            passed,
            summary,
            measurements,
            artifacts: vec![ArtifactOut::text(
                "clock.json",
                "application/json",
                serde_json::to_string_pretty(&report).expect("a clock report serialises"),
            )],
            environment: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timedatectl_show_is_parsed() {
        let text = "Timezone=Europe/Berlin\nLocalRTC=no\nCanNTP=yes\nNTP=yes\nNTPSynchronized=no\nTimeUSec=Thu 2024-05-02 10:00:00 CEST\n";
        assert_eq!(
            parse_timedatectl(text),
            TimedatectlStatus {
                ntp_synchronized: Some(false),
                ntp_enabled: Some(true),
                timezone: Some("Europe/Berlin".into()),
            }
        );
        assert_eq!(parse_timedatectl(""), TimedatectlStatus::default());
    }

    #[test]
    fn chronyc_tracking_is_parsed_with_the_sign_of_the_offset() {
        let text = "Reference ID    : A29FC801 (time.example)\nStratum         : 4\nRef time (UTC)  : Thu May 02 10:00:00 2024\nSystem time     : 0.001500000 seconds slow of NTP time\nLast offset     : -0.000001234 seconds\nLeap status     : Normal\n";
        let t = parse_chronyc_tracking(text);
        assert_eq!(t.reference.as_deref(), Some("A29FC801 (time.example)"));
        assert_eq!(t.stratum, Some(4));
        assert_eq!(t.offset_s, Some(-0.0015));
        assert_eq!(t.synchronised(), Some(true));
        let unsynced = parse_chronyc_tracking("Leap status     : Not synchronised\n");
        assert_eq!(unsynced.synchronised(), Some(false));
        assert_eq!(unsynced.offset_s, None);
    }

    #[test]
    fn only_a_reported_offset_beyond_the_ceiling_fails() {
        let unreadable = ClockReport {
            sources: vec!["chronyc: not installed".into()],
            ..ClockReport::default()
        };
        let (passed, summary) = judge(&unreadable, 1000.0);
        assert!(passed);
        assert!(summary.starts_with("synchronisation status unreadable here (tolerated)"));
        let unsynced = ClockReport {
            synchronised: Some(false),
            ..ClockReport::default()
        };
        assert!(judge(&unsynced, 1000.0).0, "unsynchronised is a warning");
        let off = ClockReport {
            synchronised: Some(true),
            offset_ms: Some(-2500.0),
            ..ClockReport::default()
        };
        let (passed, summary) = judge(&off, 1000.0);
        assert!(!passed);
        assert!(
            summary.starts_with("FAILED offset -2500 ms exceeds 1000 ms"),
            "{summary}"
        );
    }

    #[tokio::test]
    async fn this_host_is_examined_without_failing() {
        let report = examine(0).await;
        assert!(report.sources.len() >= 3, "{:?}", report.sources);
    }
}
