//! The daemon's own log file: `berth up` starts the daemon detached with
//! stderr appended to `<state-dir>/daemon.log`. Nothing else would ever
//! trim that file on an appliance that runs for months, so the daemon
//! rotates it itself — copy to `daemon.log.1`, then truncate in place
//! (the file is open in append mode, so the next line lands at its new
//! start) — once it passes `DAEMON_LOG_BYTES_MAX`. One older file is kept.
//! Lines written between the copy and the truncation are lost (the
//! `copytruncate` trade-off). Under systemd (stderr is the journal) or in a
//! terminal there is nothing to rotate.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The log file `berth up` gives a detached daemon, in the state directory.
pub const DAEMON_LOG_FILE_NAME: &str = "daemon.log";
/// Size past which the daemon rotates it.
pub const DAEMON_LOG_BYTES_MAX: u64 = 10 * 1024 * 1024;
/// How often the daemon looks at the size.
pub const DAEMON_LOG_CHECK_S: u64 = 60;

/// `path` with `.1` appended: where the previous log goes.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Rotate `path` when it is larger than `max` bytes. Returns whether it did.
pub fn rotate_if_large(path: &Path, max: u64) -> io::Result<bool> {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size <= max {
        return Ok(false);
    }
    std::fs::copy(path, rotated_path(path))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)?;
    Ok(true)
}

/// Whether this process's stderr is the file at `path` (same device and
/// inode), i.e. whether the daemon writes its log there.
pub fn stderr_is(path: &Path) -> bool {
    let (Ok(err), Ok(file)) = (
        std::fs::metadata("/proc/self/fd/2"),
        std::fs::metadata(path),
    ) else {
        return false;
    };
    err.dev() == file.dev() && err.ino() == file.ino()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_log_past_the_limit_is_copied_aside_and_truncated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(DAEMON_LOG_FILE_NAME);
        // Opened in append mode, as the shell that starts the daemon does.
        let mut writer = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writer.write_all(b"first line\nsecond line\n").unwrap();
        assert!(!rotate_if_large(&log, 1024).unwrap(), "under the limit");
        assert!(!rotated_path(&log).exists());

        assert!(rotate_if_large(&log, 10).unwrap());
        assert_eq!(
            std::fs::read_to_string(rotated_path(&log)).unwrap(),
            "first line\nsecond line\n"
        );
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        // The writer goes on at the new start, not at its old offset.
        writer.write_all(b"after\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "after\n");

        // A second rotation replaces the older copy.
        writer.write_all(b"more than ten bytes\n").unwrap();
        assert!(rotate_if_large(&log, 10).unwrap());
        assert_eq!(
            std::fs::read_to_string(rotated_path(&log)).unwrap(),
            "after\nmore than ten bytes\n"
        );
        assert!(!rotate_if_large(&dir.path().join("absent"), 10).unwrap());
    }

    #[test]
    fn stderr_is_only_the_file_it_really_is() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.log");
        std::fs::write(&other, "x").unwrap();
        // The test harness's stderr is not that file.
        assert!(!stderr_is(&other));
        assert!(!stderr_is(&dir.path().join("absent")));
    }

    /// Set in the child process the next test starts: the file to check.
    const CHILD_ENV: &str = "BERTH_TEST_STDERR_IS";

    #[test]
    fn stderr_is_the_file_a_process_was_started_with_as_stderr() {
        if let Some(path) = std::env::var_os(CHILD_ENV) {
            // The child: this test binary again, stderr appended to the file,
            // as `berth up` starts a detached daemon.
            println!("stderr_is={}", stderr_is(Path::new(&path)));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(DAEMON_LOG_FILE_NAME);
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "logfile::tests::stderr_is_the_file_a_process_was_started_with_as_stderr",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &log)
            .stderr(stderr)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("stderr_is=true"), "{stdout}");
    }
}
