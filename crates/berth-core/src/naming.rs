//! Names and labels of the engine objects berth creates. One place, so the
//! adapter, the planner and the cleanup code can never disagree.

/// Label marking every object berth manages.
pub const LABEL_MANAGED: &str = "io.berth.managed";
/// Label holding the stack name.
pub const LABEL_STACK: &str = "io.berth.stack";
/// Label holding the app id.
pub const LABEL_APP: &str = "io.berth.app";
/// Label holding the hash of the container's effective spec.
pub const LABEL_SPEC_HASH: &str = "io.berth.spec-hash";

/// Mount point of an app's secrets inside its container.
pub const SECRETS_MOUNT_PATH: &str = "/run/secrets";

pub fn container_name(stack: &str, app: &str) -> String {
    format!("{stack}-{app}")
}

/// The name an update keeps the old container under (stopped) until the
/// new one has proved itself. `.` cannot occur in a stack name or an app
/// id, so no app's own container can ever have this name.
pub fn kept_container_name(container: &str) -> String {
    format!("{container}.berth-kept")
}

pub fn volume_name(stack: &str, app: &str, volume: &str) -> String {
    format!("{stack}-{app}-{volume}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_with_the_stack() {
        assert_eq!(container_name("demo", "lnd"), "demo-lnd");
        assert_eq!(volume_name("demo", "lnd", "data"), "demo-lnd-data");
        assert_eq!(kept_container_name("demo-lnd"), "demo-lnd.berth-kept");
    }
}
