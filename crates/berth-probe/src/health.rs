//! Health checks from the manifest, evaluated by berth.

use std::time::Duration;

use berth_core::classify::HealthStatus;
use berth_core::model::{HealthCheck, HealthKind};
use berth_engine::Engine;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Cadence of probes while waiting for a first healthy verdict: a fast
/// first probe, then at most this long between probes (or the manifest's
/// interval, when shorter), so an install returns as soon as the app is up.
pub const FAST_PROBE_INTERVAL_MS_MAX: u64 = 250;

/// Result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub ok: bool,
    pub detail: String,
}

/// Where a check reaches the container.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub container: &'a str,
    pub network: &'a str,
}

/// Run one probe of `check` against the container.
pub async fn probe_once(
    engine: &dyn Engine,
    target: &Target<'_>,
    check: &HealthCheck,
) -> ProbeOutcome {
    match &check.kind {
        HealthKind::Command { argv } => {
            match engine.exec(target.container, argv, check.timeout).await {
                Ok(out) if out.exit_code == 0 => ProbeOutcome {
                    ok: true,
                    detail: "command exited 0".into(),
                },
                Ok(out) => ProbeOutcome {
                    ok: false,
                    detail: format!(
                        "command exited {}: {}",
                        out.exit_code,
                        out.output.lines().last().unwrap_or("").trim()
                    ),
                },
                Err(e) => ProbeOutcome {
                    ok: false,
                    detail: e.to_string(),
                },
            }
        }
        HealthKind::Http { port, path } => {
            let ip = match resolve(engine, target).await {
                Ok(ip) => ip,
                Err(detail) => return ProbeOutcome { ok: false, detail },
            };
            let url = format!("http://{}{}", join_host_port(&ip, *port), path);
            match crate::http::request("GET", &url, None, None, check.timeout).await {
                Ok(r) if (200..400).contains(&r.status) => ProbeOutcome {
                    ok: true,
                    detail: format!("GET {path} answered {}", r.status),
                },
                Ok(r) => ProbeOutcome {
                    ok: false,
                    detail: format!("GET {path} answered {}", r.status),
                },
                Err(e) => ProbeOutcome {
                    ok: false,
                    detail: e,
                },
            }
        }
        HealthKind::Tcp { port } => {
            let ip = match resolve(engine, target).await {
                Ok(ip) => ip,
                Err(detail) => return ProbeOutcome { ok: false, detail },
            };
            let addr = join_host_port(&ip, *port);
            match tokio::time::timeout(check.timeout, TcpStream::connect(&addr)).await {
                Ok(Ok(_)) => ProbeOutcome {
                    ok: true,
                    detail: format!("tcp {port} accepted"),
                },
                Ok(Err(e)) => ProbeOutcome {
                    ok: false,
                    detail: format!("tcp {port}: {e}"),
                },
                Err(_) => ProbeOutcome {
                    ok: false,
                    detail: format!(
                        "tcp {port}: no answer within {}ms",
                        check.timeout.as_millis()
                    ),
                },
            }
        }
    }
}

pub(crate) fn join_host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

pub(crate) async fn resolve(engine: &dyn Engine, target: &Target<'_>) -> Result<String, String> {
    match engine.container_ip(target.container, target.network).await {
        Ok(Some(ip)) if !ip.is_empty() => Ok(ip),
        Ok(_) => Err(format!(
            "{} has no address on network {}",
            target.container, target.network
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Why waiting for health ended without a healthy verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitFailure {
    /// `retries` consecutive failures after the start period.
    Unhealthy { detail: String, failures: u32 },
    /// The deadline passed first.
    Timeout { detail: String },
    /// The container stopped running while we waited.
    NotRunning,
}

/// Wait until the container's check passes. Probes at once, then at a fast
/// cadence; failures inside the start period do not count. Before every
/// probe `still_running` is consulted so a container that exits fails fast.
pub async fn wait_healthy<F, Fut>(
    engine: &dyn Engine,
    target: &Target<'_>,
    check: &HealthCheck,
    deadline: Instant,
    mut still_running: F,
) -> Result<ProbeOutcome, WaitFailure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    let cadence = check
        .interval
        .min(Duration::from_millis(FAST_PROBE_INTERVAL_MS_MAX));
    let mut tracker = HealthTracker::new(check.retries);
    loop {
        if !still_running().await {
            return Err(WaitFailure::NotRunning);
        }
        let outcome = probe_once(engine, target, check).await;
        if outcome.ok {
            return Ok(outcome);
        }
        let last_detail = outcome.detail.clone();
        let in_start_period = started.elapsed() < check.start_period;
        if tracker.record(false, in_start_period) == HealthStatus::Unhealthy {
            return Err(WaitFailure::Unhealthy {
                detail: last_detail,
                failures: tracker.failures(),
            });
        }
        let next = Instant::now() + cadence;
        if next >= deadline {
            return Err(WaitFailure::Timeout {
                detail: last_detail,
            });
        }
        tokio::time::sleep_until(next).await;
    }
}

/// Consecutive-failure counting, shared by install-time waits and (later)
/// continuous supervision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTracker {
    retries: u32,
    consecutive_failures: u32,
    status: HealthStatus,
}

impl HealthTracker {
    pub fn new(retries: u32) -> Self {
        HealthTracker {
            retries: retries.max(1),
            consecutive_failures: 0,
            status: HealthStatus::Starting,
        }
    }

    /// Record one probe result; failures during the start period leave the
    /// status at `Starting` without counting.
    pub fn record(&mut self, ok: bool, in_start_period: bool) -> HealthStatus {
        if ok {
            self.consecutive_failures = 0;
            self.status = HealthStatus::Healthy;
        } else if !in_start_period {
            self.consecutive_failures += 1;
            if self.consecutive_failures >= self.retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
        self.status
    }

    pub fn status(&self) -> HealthStatus {
        self.status
    }

    pub fn failures(&self) -> u32 {
        self.consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_consecutive_failures_after_start_period() {
        let mut t = HealthTracker::new(3);
        assert_eq!(t.record(false, true), HealthStatus::Starting);
        assert_eq!(t.record(false, true), HealthStatus::Starting);
        assert_eq!(t.failures(), 0);
        assert_eq!(t.record(false, false), HealthStatus::Starting);
        assert_eq!(t.record(false, false), HealthStatus::Starting);
        assert_eq!(t.record(true, false), HealthStatus::Healthy);
        assert_eq!(t.record(false, false), HealthStatus::Healthy);
        assert_eq!(t.record(false, false), HealthStatus::Healthy);
        assert_eq!(t.record(false, false), HealthStatus::Unhealthy);
        assert_eq!(t.record(true, false), HealthStatus::Healthy);
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        assert_eq!(join_host_port("10.0.0.2", 80), "10.0.0.2:80");
        assert_eq!(join_host_port("fd00::2", 80), "[fd00::2]:80");
    }
}
