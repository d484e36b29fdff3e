//! Running a command under a time limit and timing it.
//!
//! Output goes to files, not pipes: `podman run -d` leaves conmon behind,
//! and a daemon that inherited a pipe would keep a reader waiting forever.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// How long to wait for a killed process group to be reaped.
const REAP_AFTER_KILL: Duration = Duration::from_secs(10);
/// Characters of a failed command's output kept for the report.
pub const TAIL_CHARS: usize = 600;

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Exited(i32),
    /// Killed by a signal (not by us).
    Signalled,
    /// Ran past its limit and was killed.
    Timeout,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// Wall-clock time from spawn to exit (or to the kill).
    pub secs: f64,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.status == Status::Exited(0)
    }

    /// What went wrong, for the report: the status and the end of stderr
    /// (or stdout when stderr is empty).
    pub fn failure_detail(&self) -> String {
        let what = match &self.status {
            Status::Exited(code) => format!("exit {code}"),
            Status::Signalled => "killed by a signal".to_string(),
            Status::Timeout => format!("timeout after {:.0} s", self.secs),
        };
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let tail = tail(text.trim(), TAIL_CHARS);
        if tail.is_empty() {
            what
        } else {
            format!("{what}: {tail}")
        }
    }
}

/// The last `max` characters of `s`, on a character boundary.
pub fn tail(s: &str, max: usize) -> String {
    let count = s.chars().count();
    if count <= max {
        return s.to_string();
    }
    let skip = count - max;
    format!("…{}", s.chars().skip(skip).collect::<String>())
}

/// Runs `cmd` with stdin closed, in its own process group so a timeout can
/// kill everything it spawned, and its output in `log_dir/<label>.{out,err}`.
pub fn run(
    cmd: &mut Command,
    limit: Duration,
    log_dir: &Path,
    label: &str,
) -> anyhow::Result<Outcome> {
    let out_path = log_dir.join(format!("{label}.out"));
    let err_path = log_dir.join(format!("{label}.err"));
    let out = std::fs::File::create(&out_path)
        .with_context(|| format!("cannot create {}", out_path.display()))?;
    let err = std::fs::File::create(&err_path)
        .with_context(|| format!("cannot create {}", err_path.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);

    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot run {cmd:?}"))?;
    let pid = child.id();
    // A thread blocks in wait(), so the exit is timed exactly rather than to
    // a polling interval (this matters for the 50 ms no-op target).
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send((status, start.elapsed()));
    });
    let (status, elapsed) = match rx.recv_timeout(limit) {
        Ok((Ok(st), elapsed)) => {
            let status = match st.code() {
                Some(code) => Status::Exited(code),
                None => Status::Signalled,
            };
            (status, elapsed)
        }
        Ok((Err(e), _)) => return Err(e).with_context(|| format!("cannot wait for {cmd:?}")),
        Err(_) => {
            let elapsed = start.elapsed();
            kill_group(pid);
            // Reap it; if even SIGKILL does not end it within the bound,
            // report the timeout anyway.
            let _ = rx.recv_timeout(REAP_AFTER_KILL);
            (Status::Timeout, elapsed)
        }
    };
    Ok(Outcome {
        status,
        secs: elapsed.as_secs_f64(),
        stdout: read_lossy(&out_path),
        stderr: read_lossy(&err_path),
    })
}

/// Runs a short helper command (versions, listings, cleanup) and returns its
/// stdout when it exits 0.
pub fn output(
    program: &str,
    args: &[&str],
    envs: &[(&str, &Path)],
    limit: Duration,
    log_dir: &Path,
) -> Option<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let label = format!("helper-{}", unique());
    let outcome = run(&mut cmd, limit, log_dir, &label).ok()?;
    let _ = std::fs::remove_file(log_dir.join(format!("{label}.out")));
    let _ = std::fs::remove_file(log_dir.join(format!("{label}.err")));
    outcome.ok().then_some(outcome.stdout)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn kill_group(pid: u32) {
    // No libc in xtask: kill(1) signals the whole group with a negative id.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn read_lossy(path: &PathBuf) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xtask-exec-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn captures_status_and_output() {
        let dir = scratch("ok");
        let o = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
            &dir,
            "t",
        )
        .unwrap();
        assert_eq!(o.status, Status::Exited(3));
        assert_eq!(o.stdout, "out\n");
        assert_eq!(o.stderr, "err\n");
        assert_eq!(o.failure_detail(), "exit 3: err");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_command_past_its_limit_is_killed_with_its_children() {
        let dir = scratch("timeout");
        let start = Instant::now();
        // The child shell spawns a grandchild that would hold on for 30 s.
        let o = run(
            Command::new("sh").args(["-c", "sleep 30 & sleep 30; wait"]),
            Duration::from_millis(200),
            &dir,
            "t",
        )
        .unwrap();
        assert_eq!(o.status, Status::Timeout);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "took {:?}",
            start.elapsed()
        );
        assert!(o.failure_detail().starts_with("timeout after"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(tail("abc", 5), "abc");
        assert_eq!(tail("ab€def", 3), "…def");
        assert_eq!(tail("€€€€", 2), "…€€");
    }
}
