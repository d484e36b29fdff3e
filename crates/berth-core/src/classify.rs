//! What an observed container's state means to a user.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The engine's own status word for a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineStatus {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
    Removing,
    Unknown,
}

impl EngineStatus {
    pub fn parse(s: &str) -> EngineStatus {
        match s.to_ascii_lowercase().as_str() {
            "created" | "configured" | "initialized" => EngineStatus::Created,
            "running" => EngineStatus::Running,
            "paused" => EngineStatus::Paused,
            "restarting" => EngineStatus::Restarting,
            "exited" | "stopped" => EngineStatus::Exited,
            "dead" => EngineStatus::Dead,
            "removing" | "stopping" => EngineStatus::Removing,
            _ => EngineStatus::Unknown,
        }
    }
}

/// Result of berth's own health evaluation for a running container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// No verdict yet (start period, or not enough probes).
    Starting,
    Healthy,
    Unhealthy,
}

/// The state shown to users (mission.md: "observed container state").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Classification {
    Running,
    /// Running, health not yet passing.
    Starting,
    Unhealthy,
    /// Exited 0 (grey).
    Stopped,
    /// Exited non-zero other than 137 (red).
    Crashed {
        exit_code: i64,
    },
    /// Exited 137 without the engine reporting OOM.
    Killed,
    /// Exited 137 and the engine says OOMKilled.
    KilledOom,
    /// Created, never started.
    Created,
    Restarting,
    Paused,
    Dead,
    Missing,
}

impl Classification {
    /// Something that needs attention (red/amber in the UI, exit 1 in status).
    pub fn is_degraded(self) -> bool {
        !matches!(
            self,
            Classification::Running | Classification::Stopped | Classification::Starting
        )
    }

    pub fn is_running(self) -> bool {
        matches!(
            self,
            Classification::Running | Classification::Starting | Classification::Unhealthy
        )
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Classification::Running => f.write_str("running"),
            Classification::Starting => f.write_str("starting"),
            Classification::Unhealthy => f.write_str("unhealthy"),
            Classification::Stopped => f.write_str("stopped"),
            Classification::Crashed { exit_code } => write!(f, "crashed (exit {exit_code})"),
            Classification::Killed => f.write_str("killed"),
            Classification::KilledOom => f.write_str("killed (OOM)"),
            Classification::Created => f.write_str("created"),
            Classification::Restarting => f.write_str("restarting"),
            Classification::Paused => f.write_str("paused"),
            Classification::Dead => f.write_str("dead"),
            Classification::Missing => f.write_str("missing"),
        }
    }
}

/// Classify an observed container. `health` is berth's own verdict for a
/// running container with a health check, `None` when it has none.
pub fn classify(
    status: Option<EngineStatus>,
    exit_code: Option<i64>,
    oom_killed: bool,
    health: Option<HealthStatus>,
) -> Classification {
    let Some(status) = status else {
        return Classification::Missing;
    };
    match status {
        EngineStatus::Running => match health {
            None | Some(HealthStatus::Healthy) => Classification::Running,
            Some(HealthStatus::Starting) => Classification::Starting,
            Some(HealthStatus::Unhealthy) => Classification::Unhealthy,
        },
        EngineStatus::Created => Classification::Created,
        EngineStatus::Paused => Classification::Paused,
        EngineStatus::Restarting => Classification::Restarting,
        EngineStatus::Dead => Classification::Dead,
        EngineStatus::Removing => Classification::Dead,
        EngineStatus::Exited | EngineStatus::Unknown => match exit_code.unwrap_or(0) {
            0 => Classification::Stopped,
            137 if oom_killed => Classification::KilledOom,
            137 => Classification::Killed,
            code => Classification::Crashed { exit_code: code },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Classification as C;
    use EngineStatus as S;

    #[test]
    fn exit_codes_are_classified() {
        #[allow(clippy::type_complexity)]
        let table: &[(Option<S>, Option<i64>, bool, Option<HealthStatus>, C)] = &[
            (None, None, false, None, C::Missing),
            (Some(S::Exited), Some(0), false, None, C::Stopped),
            (Some(S::Exited), Some(137), true, None, C::KilledOom),
            (Some(S::Exited), Some(137), false, None, C::Killed),
            (
                Some(S::Exited),
                Some(1),
                false,
                None,
                C::Crashed { exit_code: 1 },
            ),
            (
                Some(S::Exited),
                Some(143),
                false,
                None,
                C::Crashed { exit_code: 143 },
            ),
            (Some(S::Created), None, false, None, C::Created),
            (Some(S::Restarting), None, false, None, C::Restarting),
            (Some(S::Paused), None, false, None, C::Paused),
            (Some(S::Running), None, false, None, C::Running),
            (
                Some(S::Running),
                None,
                false,
                Some(HealthStatus::Starting),
                C::Starting,
            ),
            (
                Some(S::Running),
                None,
                false,
                Some(HealthStatus::Unhealthy),
                C::Unhealthy,
            ),
            (
                Some(S::Running),
                None,
                false,
                Some(HealthStatus::Healthy),
                C::Running,
            ),
        ];
        for (status, code, oom, health, want) in table {
            assert_eq!(
                classify(*status, *code, *oom, *health),
                *want,
                "{status:?} {code:?} {oom}"
            );
        }
    }

    #[test]
    fn degraded_states() {
        assert!(!C::Running.is_degraded());
        assert!(!C::Stopped.is_degraded());
        assert!(C::Crashed { exit_code: 2 }.is_degraded());
        assert!(C::Missing.is_degraded());
        assert!(C::Created.is_degraded());
        assert_eq!(C::KilledOom.to_string(), "killed (OOM)");
    }

    #[test]
    fn engine_status_words() {
        assert_eq!(S::parse("running"), S::Running);
        assert_eq!(S::parse("Exited"), S::Exited);
        assert_eq!(S::parse("configured"), S::Created);
        assert_eq!(S::parse("weird"), S::Unknown);
    }
}
