//! The one error type of this crate.
//!
//! Messages are lowercase and name the path, app or key involved. No variant
//! ever carries a secret value: secret errors name the file, never its
//! content.

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused a statement (disk full, database locked past the busy
    /// timeout, a constraint, ...).
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// The schema could not be brought to the version this berth knows, for
    /// example because a newer berth already migrated it further.
    #[error("migrating the state database {path}: {source}")]
    Migration {
        path: PathBuf,
        #[source]
        source: rusqlite_migration::Error,
    },

    /// A filesystem operation in the state directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing, as a lowercase verb phrase ("creating directory").
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Another process holds the state directory lock.
    #[error("{}", locked_message(path, *pid))]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid as it wrote it into the lock file, when readable.
        pid: Option<u32>,
    },

    /// Another process drives this verification or vetting run.
    #[error("{}", run_busy_message(id, *pid))]
    RunBusy {
        id: String,
        /// The driver's pid as it wrote it into the run's lock file.
        pid: Option<u32>,
    },

    /// The app, operation, step or key does not exist.
    #[error("{what} not found")]
    NotFound { what: String },

    /// The request does not fit the current state, e.g. recording a step of
    /// an operation that already finished. This is a caller bug, reported
    /// instead of silently rewriting history.
    #[error("{detail}")]
    InvalidState { detail: String },

    /// A stack, app or secret name that cannot be used as a single path
    /// component.
    #[error(
        "invalid {kind} name {name:?}: use letters, digits, '-', '_' and '.', not starting with '.'"
    )]
    InvalidName { kind: &'static str, name: String },

    /// A stored row or file does not have the shape this berth writes.
    #[error("corrupt state: {detail}")]
    Corrupt { detail: String },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        StoreError::NotFound { what: what.into() }
    }

    pub(crate) fn corrupt(detail: impl Into<String>) -> Self {
        StoreError::Corrupt {
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid_state(detail: impl Into<String>) -> Self {
        StoreError::InvalidState {
            detail: detail.into(),
        }
    }
}

fn locked_message(path: &Path, pid: Option<u32>) -> String {
    let dir = path.parent().unwrap_or(path).display();
    match pid {
        Some(pid) => format!(
            "another berth process (pid {pid}) is changing this state directory ({dir}); \
             wait for it to finish or stop it"
        ),
        None => format!(
            "another berth process is changing this state directory ({dir}); \
             wait for it to finish or stop it"
        ),
    }
}

fn run_busy_message(id: &str, pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!(
            "run {id} is being driven by another berth process (pid {pid}); wait for it to finish or stop it"
        ),
        None => format!(
            "run {id} is being driven by another berth process; wait for it to finish or stop it"
        ),
    }
}
