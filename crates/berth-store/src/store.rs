//! The SQLite connection and the settings table. The apps, journal and
//! events tables have their own modules, each adding to `impl Store`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use berth_core::model::App;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Result, StoreError};
use crate::schema::MIGRATIONS;

/// How long a statement waits for another process's write lock before
/// failing with "database is locked".
pub const BUSY_TIMEOUT_MS: u64 = 5_000;
/// Longest settings key accepted, in bytes.
pub const KV_KEY_MAX_BYTES: usize = 256;
/// Largest settings value accepted, in bytes.
pub const KV_VALUE_MAX_BYTES: usize = 64 * 1024;

/// berth's database. Safe to share between threads (one connection behind a
/// mutex) and between processes (WAL, busy timeout): the CLI can read while
/// the daemon writes.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Decoded manifests by app id, with the JSON they were decoded from:
    /// a row whose JSON is unchanged is not decoded again (the daemon
    /// reads every app on every tick).
    pub(crate) decoded: Mutex<HashMap<String, (String, App)>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the database at `path`, creating it if missing, and migrates it
    /// to the latest schema. Usually reached through `StateDir::store`.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        Self::setup(conn, path.to_path_buf(), true)
    }

    /// A private in-memory database with the full schema, for tests of code
    /// that needs a `Store` but not a state directory.
    pub fn open_in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory()?;
        Self::setup(conn, PathBuf::from(":memory:"), false)
    }

    fn setup(mut conn: Connection, path: PathBuf, on_disk: bool) -> Result<Store> {
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
        if on_disk {
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(path = %path.display(), mode, "state database is not in WAL mode");
            }
        }
        // FULL rather than NORMAL: the journal promises that a step is on disk
        // before it runs, and that must hold across a power cut too. berth
        // writes a few rows per operation, so the cost does not matter.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Check before migrating, so that a second process opening an
        // up-to-date database only reads.
        let pending =
            MIGRATIONS
                .pending_migrations(&conn)
                .map_err(|source| StoreError::Migration {
                    path: path.clone(),
                    source,
                })?;
        if pending != 0 {
            MIGRATIONS
                .to_latest(&mut conn)
                .map_err(|source| StoreError::Migration {
                    path: path.clone(),
                    source,
                })?;
            tracing::info!(path = %path.display(), "state database migrated");
        }
        Ok(Store {
            conn: Mutex::new(conn),
            path,
            decoded: Mutex::new(HashMap::new()),
        })
    }

    /// Path of the database file (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection
        // half-written: an open rusqlite transaction rolls back when dropped
        // during unwinding. So a poisoned lock is still usable.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn kv_get(&self, key: &str) -> Result<Option<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT value FROM kv WHERE key = ?1")?;
        Ok(stmt.query_row([key], |row| row.get(0)).optional()?)
    }

    pub fn kv_set(&self, key: &str, value: &str) -> Result<()> {
        if key.is_empty() || key.len() > KV_KEY_MAX_BYTES {
            return Err(StoreError::invalid_state(format!(
                "setting key {key:?} must be 1 to {KV_KEY_MAX_BYTES} bytes"
            )));
        }
        if value.len() > KV_VALUE_MAX_BYTES {
            return Err(StoreError::invalid_state(format!(
                "value of setting {key:?} is larger than {KV_VALUE_MAX_BYTES} bytes"
            )));
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "INSERT INTO kv (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?;
        stmt.execute(params![key, value])?;
        Ok(())
    }

    /// Removes a setting; true when it existed.
    pub fn kv_delete(&self, key: &str) -> Result<bool> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
        Ok(stmt.execute([key])? > 0)
    }
}
