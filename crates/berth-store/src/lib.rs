//! berth's durable state: the state directory (its lock and the secret
//! files) and the SQLite database (installed apps, the operation journal,
//! events, settings).
//!
//! Only this crate touches SQLite. Secret values never enter the database,
//! an error message, a log line or a `Debug` output.

mod apps;
mod error;
mod events;
pub mod files;
mod gates;
mod journal;
mod revisions;
mod runs;
mod schema;
mod secrets;
mod state_dir;
mod store;
mod supervision;

#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

pub use apps::{AppRecord, Desired};
pub use error::{Result, StoreError};
pub use events::{EVENT_MESSAGE_MAX_BYTES, EVENTS_MAX, EventRecord, NewEvent};
pub use files::{
    APP_FILE_MAX_BYTES, ReadFileError, STACK_FILE_MAX_BYTES, read_include, read_text_capped,
};
pub use journal::{
    OP_ERROR_MAX_BYTES, OP_STATE_RUNNING, OPS_MAX, OpOutcome, Operation, STEP_STATE_DONE,
    STEP_STATE_INTENT, STEP_STATE_UNDONE, STEPS_PER_OP_MAX, Step,
};
pub use revisions::{
    NewRevision, REVISION_ERROR_MAX_BYTES, REVISIONS_PER_APP_MAX, Revision, RevisionOutcome,
};
pub use runs::{
    RUN_ID_MAX_BYTES, RUN_JSON_BYTES_MAX, RUN_LOCK_FILE_NAME, RUN_PARAMS_BYTES_MAX, RUNS_DIR_NAME,
    RUNS_LIST_MAX, RUNS_MAX, RunListing, check_run_id,
};
pub use secrets::{
    MOUNT_DIR_MODE, MOUNT_FILE_MODE, NAME_MAX_BYTES, REDACTED, Redactor, SECRET_DIR_MODE,
    SECRET_FILE_MAX_BYTES, SECRET_FILE_MODE, SECRET_LEN_CHARS, SECRET_MOUNTS_DIR_NAME,
    SECRETS_DIR_NAME, Secrets,
};
pub use state_dir::{
    DB_FILE_NAME, LOCK_FILE_MODE, LOCK_FILE_NAME, LOCK_POLL_INTERVAL_MS, LOCK_WAIT_MAX_MS,
    STATE_DIR_DEFAULT, STATE_DIR_MODE, StateDir, StateLock,
};
pub use store::{BUSY_TIMEOUT_MS, KV_KEY_MAX_BYTES, KV_VALUE_MAX_BYTES, Store};
pub use supervision::OWED_REASON_MAX_BYTES;

/// Milliseconds since the Unix epoch by the system clock, the `now_ms`
/// callers pass to the store. 0 if the clock is before 1970.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
