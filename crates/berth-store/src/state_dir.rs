//! The state directory (`/var/lib/berth` unless `--state-dir` says otherwise)
//! and its exclusive lock.
//!
//! Layout:
//!
//! ```text
//! <root>/lock                                 pid of the process changing the state
//! <root>/berth.db                             SQLite (apps, journal, events, settings)
//! <root>/secrets/<stack>/<name>               stack secrets (dir 0700, file 0600)
//! <root>/secret-mounts/<stack>/<app>/<name>   an app's copies (dir 0700, file 0400)
//! <root>/runs/<run>/                          a vet/verify run: its lock (.lock), reports, artifacts
//! ```

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Result, StoreError};
use crate::secrets::Secrets;
use crate::store::Store;

/// Where berth keeps its state when `--state-dir` is not given.
pub const STATE_DIR_DEFAULT: &str = "/var/lib/berth";
/// Name of the lock file inside the state directory.
pub const LOCK_FILE_NAME: &str = "lock";
/// Name of the SQLite database inside the state directory.
pub const DB_FILE_NAME: &str = "berth.db";
/// Mode of the state directory when berth creates it: it holds secrets.
pub const STATE_DIR_MODE: u32 = 0o700;
/// Mode of the lock file (it only holds a pid, but nobody else writes it).
pub const LOCK_FILE_MODE: u32 = 0o600;
/// How often `lock_wait` retries a held lock.
pub const LOCK_POLL_INTERVAL_MS: u64 = 50;
/// Ceiling on `lock_wait`'s timeout, so a caller's `Duration::MAX` still ends.
pub const LOCK_WAIT_MAX_MS: u64 = 24 * 60 * 60 * 1000;
/// The lock file only ever holds a pid; never read more than this from it.
const LOCK_FILE_READ_MAX_BYTES: u64 = 64;

/// A handle on the state directory. Cheap to clone; holds no open files.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens the state directory, creating it (and missing parents) with mode
    /// 0700 when it does not exist. An existing directory keeps its mode.
    pub fn open(root: &Path) -> Result<StateDir> {
        DirBuilder::new()
            .recursive(true)
            .mode(STATE_DIR_MODE)
            .create(root)
            .map_err(|e| StoreError::io("creating state directory", root, e))?;
        let meta =
            fs::metadata(root).map_err(|e| StoreError::io("reading state directory", root, e))?;
        if !meta.is_dir() {
            return Err(StoreError::io(
                "opening state directory",
                root,
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(LOCK_FILE_NAME)
    }

    /// Path of the SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.root.join(DB_FILE_NAME)
    }

    /// Takes the exclusive lock on the state directory without waiting, and
    /// writes our pid into the lock file. Fails with `StoreError::Locked`
    /// (naming the holder's pid when it is readable) if another process, or
    /// another handle in this process, holds it. The lock is released when the
    /// returned `StateLock` is dropped, and by the kernel if we die.
    pub fn lock(&self) -> Result<StateLock> {
        lock_file(self.lock_path())
    }

    /// Like `lock`, but retries every `LOCK_POLL_INTERVAL_MS` until `timeout`
    /// (capped at `LOCK_WAIT_MAX_MS`) has passed, then returns the last
    /// `Locked` error. Other errors return at once.
    pub fn lock_wait(&self, timeout: Duration) -> Result<StateLock> {
        let timeout = timeout.min(Duration::from_millis(LOCK_WAIT_MAX_MS));
        let deadline = Instant::now() + timeout;
        loop {
            match self.lock() {
                Err(StoreError::Locked { path, pid }) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(StoreError::Locked { path, pid });
                    }
                    let poll = Duration::from_millis(LOCK_POLL_INTERVAL_MS);
                    std::thread::sleep(poll.min(deadline - now));
                }
                other => return other,
            }
        }
    }

    /// Opens (creating and migrating as needed) the state database.
    pub fn store(&self) -> Result<Store> {
        Store::open(&self.db_path())
    }

    pub fn secrets(&self) -> Secrets {
        Secrets::new(self.root.clone())
    }
}

/// Takes the exclusive lock on the file at `path` (created when missing)
/// without waiting, and writes our pid into it. Shared by the state
/// directory lock and the per-run locks.
pub(crate) fn lock_file(path: PathBuf) -> Result<StateLock> {
    // No truncate on open: until we hold the lock, the file's content is the
    // holder's pid, which we want to read, not destroy.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(LOCK_FILE_MODE)
        .open(&path)
        .map_err(|e| StoreError::io("opening lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let pid = read_pid(&mut file);
            return Err(StoreError::Locked { path, pid });
        }
        Err(TryLockError::Error(e)) => {
            return Err(StoreError::io("locking", &path, e));
        }
    }
    let pid = std::process::id();
    file.set_len(0)
        .and_then(|()| file.write_all(format!("{pid}\n").as_bytes()))
        .and_then(|()| file.sync_data())
        .map_err(|e| StoreError::io("writing pid to lock file", &path, e))?;
    tracing::debug!(path = %path.display(), pid, "locked");
    Ok(StateLock { file, path })
}

/// Reads the pid the lock holder wrote; `None` if it is missing or garbled
/// (for example, the holder has locked but not yet written).
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(LOCK_FILE_READ_MAX_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

/// The exclusive lock on a state directory; released on drop.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
}

impl StateLock {
    /// Path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Clear our pid while still holding the lock: clearing it afterwards
        // could erase the next holder's pid. Closing the file releases the
        // lock anyway; unlocking explicitly just makes the order obvious.
        if let Err(e) = self.file.set_len(0) {
            tracing::debug!(path = %self.path.display(), error = %e, "clearing lock file");
        }
        if let Err(e) = self.file.unlock() {
            tracing::warn!(path = %self.path.display(), error = %e, "unlocking state directory");
        }
    }
}
