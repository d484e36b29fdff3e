//! The environment manifest every run records: berth version and git
//! revision, engine and version, host kernel, OS and cgroup mode. Stages
//! add more (the Engine stage: the image it ran).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use berth_engine::Engine;

use crate::tool;

/// Bound on the engine's `info` and on `git`.
const ENV_CALL_TIMEOUT_S: u64 = 10;

/// berth's version and git revision: `BERTH_GIT_REV` set at build time,
/// else at run time, else `git describe` of the source tree this was built
/// from (when it is still there), else `unknown`.
pub async fn berth_revision() -> String {
    if let Some(rev) = option_env!("BERTH_GIT_REV").filter(|r| !r.is_empty()) {
        return rev.to_string();
    }
    if let Ok(rev) = std::env::var("BERTH_GIT_REV")
        && !rev.is_empty()
    {
        return rev;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(git) = tool::find("git")
        && source.exists()
    {
        let dir = source.display().to_string();
        if let Ok(out) = tool::run(
            &git,
            &["-C", &dir, "describe", "--always", "--dirty", "--abbrev=12"],
            Duration::from_secs(ENV_CALL_TIMEOUT_S),
        )
        .await
            && out.exit_code == Some(0)
            && !out.stdout.trim().is_empty()
        {
            return out.stdout.trim().to_string();
        }
    }
    "unknown".into()
}

/// `PRETTY_NAME` of /etc/os-release.
pub fn parse_os_release(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.strip_prefix("PRETTY_NAME=")
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

/// The manifest of this host and `engine`.
pub async fn collect(engine: Option<&dyn Engine>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("berth.version".into(), env!("CARGO_PKG_VERSION").into());
    env.insert("berth.git_rev".into(), berth_revision().await);
    if let Ok(k) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        env.insert("host.kernel".into(), k.trim().to_string());
    }
    if let Some(os) = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| parse_os_release(&t))
    {
        env.insert("host.os".into(), os);
    }
    env.insert(
        "host.cgroup_mode".into(),
        berth_engine::detect_host().cgroup_mode.to_string(),
    );
    match engine {
        None => {
            env.insert("engine.kind".into(), "none".into());
        }
        Some(engine) => {
            env.insert("engine.kind".into(), engine.kind().to_string());
            match tokio::time::timeout(Duration::from_secs(ENV_CALL_TIMEOUT_S), engine.info()).await
            {
                Ok(Ok(info)) => {
                    env.insert("engine.version".into(), info.version);
                    env.insert("engine.api_version".into(), info.api_version);
                    env.insert("engine.runtime".into(), info.runtime);
                    env.insert("engine.cgroup_driver".into(), info.cgroup_driver);
                    env.insert("engine.endpoint".into(), info.endpoint);
                }
                Ok(Err(e)) => {
                    env.insert("engine.error".into(), e.to_string());
                }
                Err(_) => {
                    env.insert(
                        "engine.error".into(),
                        format!("info did not answer within {ENV_CALL_TIMEOUT_S}s"),
                    );
                }
            }
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_pretty_name() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            parse_os_release(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(parse_os_release("ID=x"), None);
    }

    #[tokio::test]
    async fn the_manifest_names_berth_the_host_and_the_engine() {
        let engine = berth_engine::FakeEngine::new();
        let env = collect(Some(&engine)).await;
        assert_eq!(env["berth.version"], env!("CARGO_PKG_VERSION"));
        assert!(!env["berth.git_rev"].is_empty());
        assert_eq!(env["engine.kind"], "fake");
        assert!(env.contains_key("host.kernel"));
        let none = collect(None).await;
        assert_eq!(none["engine.kind"], "none");
    }
}
