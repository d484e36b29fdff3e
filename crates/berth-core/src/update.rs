//! How an update judges its new version (issue 12): one passing probe is
//! not enough. After its first healthy result the new container must stay
//! running and healthy for the app's `min_healthy`, all within its
//! `update_window`; a container that dies just after its start fails the
//! update, which then reverts. Pure: the shell observes, this decides.

use std::time::Duration;

use crate::duration::format_duration;
use crate::model::UpdatePolicy;

/// What the shell saw at one look during the healthy hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLook {
    /// Time since the new container was started.
    pub since_start: Duration,
    /// Time since its first healthy result (its start, without a check).
    pub since_healthy: Duration,
    pub running: bool,
    /// Consecutive failed probes since the last passing one (0 without a
    /// health check).
    pub failures: u32,
}

/// The verdict of one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldVerdict {
    /// Look again after the next probe.
    Watch,
    /// Healthy for `min_healthy`: the update may commit.
    Passed,
    /// The update fails and reverts, for this reason.
    Failed(String),
}

/// Judge one look of the healthy hold. `retries` is the health check's
/// consecutive-failure threshold (1 without a check, unused then).
pub fn judge_hold(look: HoldLook, policy: &UpdatePolicy, retries: u32) -> HoldVerdict {
    let min = format_duration(policy.min_healthy);
    if !look.running {
        return HoldVerdict::Failed(format!(
            "exited {} after its first healthy result (needs {min} healthy)",
            format_duration(look.since_healthy)
        ));
    }
    if look.failures >= retries.max(1) {
        return HoldVerdict::Failed(format!(
            "unhealthy again {} after its first healthy result (needs {min} healthy)",
            format_duration(look.since_healthy)
        ));
    }
    if look.since_healthy >= policy.min_healthy {
        return HoldVerdict::Passed;
    }
    if look.since_start >= policy.window {
        return HoldVerdict::Failed(format!(
            "not healthy for {min} within the update window of {}",
            format_duration(policy.window)
        ));
    }
    HoldVerdict::Watch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> UpdatePolicy {
        UpdatePolicy {
            window: Duration::from_secs(60),
            min_healthy: Duration::from_secs(5),
            data_version: 0,
        }
    }

    fn look(start_s: u64, healthy_s: u64, running: bool, failures: u32) -> HoldLook {
        HoldLook {
            since_start: Duration::from_secs(start_s),
            since_healthy: Duration::from_secs(healthy_s),
            running,
            failures,
        }
    }

    #[test]
    fn one_passing_probe_is_not_enough() {
        assert_eq!(
            judge_hold(look(1, 0, true, 0), &policy(), 3),
            HoldVerdict::Watch
        );
        assert_eq!(
            judge_hold(look(5, 4, true, 2), &policy(), 3),
            HoldVerdict::Watch
        );
        assert_eq!(
            judge_hold(look(6, 5, true, 0), &policy(), 3),
            HoldVerdict::Passed
        );
    }

    #[test]
    fn a_container_that_dies_after_its_first_healthy_probe_fails_the_update() {
        assert_eq!(
            judge_hold(look(3, 2, false, 0), &policy(), 3),
            HoldVerdict::Failed(
                "exited 2s after its first healthy result (needs 5s healthy)".into()
            )
        );
        // Even once min_healthy passed: a look that sees it gone never passes.
        assert!(matches!(
            judge_hold(look(9, 8, false, 0), &policy(), 3),
            HoldVerdict::Failed(_)
        ));
    }

    #[test]
    fn unhealthy_again_fails_the_update() {
        assert_eq!(
            judge_hold(look(4, 3, true, 3), &policy(), 3),
            HoldVerdict::Failed(
                "unhealthy again 3s after its first healthy result (needs 5s healthy)".into()
            )
        );
    }

    #[test]
    fn the_hold_must_end_within_the_update_window() {
        assert_eq!(
            judge_hold(look(60, 4, true, 0), &policy(), 3),
            HoldVerdict::Failed("not healthy for 5s within the update window of 1m".into())
        );
    }
}
