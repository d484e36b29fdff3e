//! Running optional host tools (`smartctl`, `chronyc`, `timedatectl`,
//! `git`): found on PATH or in the sbin directories, bounded in time, their
//! output bounded in size. A missing tool is a normal answer, not an error.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Largest output kept per stream, in bytes.
pub const TOOL_OUTPUT_BYTES_MAX: usize = 64 * 1024;

/// Where root's tools live even when PATH (e.g. a non-login shell's)
/// leaves them out.
const EXTRA_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// `None` when killed by a signal.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    /// stdout and stderr, for artifacts.
    pub fn combined(&self) -> String {
        match (self.stdout.trim().is_empty(), self.stderr.trim().is_empty()) {
            (_, true) => self.stdout.clone(),
            (true, false) => self.stderr.clone(),
            (false, false) => format!("{}\n--- stderr ---\n{}", self.stdout, self.stderr),
        }
    }

    /// The first non-empty line of stderr, else of stdout (for summaries).
    pub fn first_line(&self) -> String {
        self.stderr
            .lines()
            .chain(self.stdout.lines())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("(no output)")
            .to_string()
    }
}

/// The path of tool `name`, if installed.
pub fn find(name: &str) -> Option<PathBuf> {
    let mut path_var = std::env::var("PATH").unwrap_or_default();
    for dir in EXTRA_DIRS {
        path_var.push(':');
        path_var.push_str(dir);
    }
    berth_engine::detect::find_in_path(&path_var, name, Path::is_file)
}

/// Run `program args`, killed after `timeout`. `Err` says why it could not
/// run or finish.
pub async fn run(program: &Path, args: &[&str], timeout: Duration) -> Result<ToolOutput, String> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let shown = || {
        format!(
            "{} {}",
            program.file_name().unwrap_or_default().to_string_lossy(),
            args.join(" ")
        )
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(format!(
            "`{}` did not finish within {}",
            shown(),
            berth_core::duration::format_duration(timeout)
        )),
        Ok(Err(e)) => Err(format!("`{}` failed: {e}", shown())),
        Ok(Ok(out)) => Ok(ToolOutput {
            exit_code: out.status.code(),
            stdout: crate::artifacts::bound_text(
                &String::from_utf8_lossy(&out.stdout),
                TOOL_OUTPUT_BYTES_MAX,
            ),
            stderr: crate::artifacts::bound_text(
                &String::from_utf8_lossy(&out.stderr),
                TOOL_OUTPUT_BYTES_MAX,
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_a_tool_and_reports_a_missing_one() {
        let sh = find("sh").expect("sh is installed");
        let out = run(
            &sh,
            &["-c", "echo hi; echo oops >&2; exit 3"],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.stdout, "hi\n");
        assert_eq!(out.first_line(), "oops");
        assert_eq!(out.combined(), "hi\n\n--- stderr ---\noops\n");
        assert!(find("berth-no-such-tool-xyz").is_none());
        let err = run(Path::new("/nonexistent/tool"), &[], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.starts_with("cannot run /nonexistent/tool"), "{err}");
    }

    #[tokio::test]
    async fn a_tool_that_hangs_is_killed_at_the_timeout() {
        let sh = find("sh").unwrap();
        let started = std::time::Instant::now();
        let err = run(&sh, &["-c", "exec sleep 30"], Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.contains("did not finish within 200ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
