//! Bounded event history: what happened, for `berth events`, the dashboard
//! and the SSE stream (which resumes "after id N").

use rusqlite::{Row, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::store::Store;
use crate::truncate_bytes;

/// Events kept; the oldest are pruned as new ones arrive.
pub const EVENTS_MAX: i64 = 10_000;
/// Longest event message kept, in bytes; longer ones are cut.
pub const EVENT_MESSAGE_MAX_BYTES: usize = 4 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub at_ms: i64,
    /// The app it concerns; `None` for berth-wide events.
    pub app: Option<String>,
    /// Short machine-readable kind, e.g. "started", "crashed", "held".
    pub kind: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Strictly increasing, never reused.
    pub id: i64,
    pub at_ms: i64,
    pub app: Option<String>,
    pub kind: String,
    pub message: String,
}

const EVENT_COLUMNS: &str = "id, at_ms, app, kind, message";

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        id: row.get(0)?,
        at_ms: row.get(1)?,
        app: row.get(2)?,
        kind: row.get(3)?,
        message: row.get(4)?,
    })
}

fn clamp_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX).min(EVENTS_MAX)
}

impl Store {
    /// Appends an event (message cut to `EVENT_MESSAGE_MAX_BYTES`) and
    /// returns its id. Keeps at most `EVENTS_MAX` events.
    pub fn add_event(&self, e: &NewEvent) -> Result<i64> {
        let message = truncate_bytes(&e.message, EVENT_MESSAGE_MAX_BYTES);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "INSERT INTO events (at_ms, app, kind, message) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![e.at_ms, e.app, e.kind, message])?;
        let id = tx.last_insert_rowid();
        // Ids are consecutive, so everything EVENTS_MAX or more behind the new
        // one is surplus: a primary-key range delete of (usually) one row.
        tx.prepare_cached("DELETE FROM events WHERE id <= ?1")?
            .execute([id - EVENTS_MAX])?;
        tx.commit()?;
        Ok(id)
    }

    /// Events with id greater than `after_id` (all when `None`), of one app
    /// or of all, oldest first, at most `limit` (capped at `EVENTS_MAX`).
    pub fn events(
        &self,
        app: Option<&str>,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<EventRecord>> {
        let after = after_id.unwrap_or(0);
        let limit = clamp_limit(limit);
        let conn = self.conn();
        let events = match app {
            Some(app) => conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE app = ?1 AND id > ?2
                     ORDER BY id LIMIT ?3"
                ))?
                .query_map(params![app, after, limit], event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))?
                .query_map(params![after, limit], event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        Ok(events)
    }

    /// The newest `limit` events (capped at `EVENTS_MAX`), of one app or of
    /// all, returned oldest first: what a "last N events" view shows.
    pub fn tail_events(&self, app: Option<&str>, limit: usize) -> Result<Vec<EventRecord>> {
        let limit = clamp_limit(limit);
        let conn = self.conn();
        let mut events = match app {
            Some(app) => conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE app = ?1 ORDER BY id DESC LIMIT ?2"
                ))?
                .query_map(params![app, limit], event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events ORDER BY id DESC LIMIT ?1"
                ))?
                .query_map([limit], event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        events.reverse();
        Ok(events)
    }

    /// The id of the newest event, 0 when there are none: where a new
    /// subscriber starts so it only sees what comes next.
    pub fn max_event_id(&self) -> Result<i64> {
        let conn = self.conn();
        Ok(conn
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?
            .query_row([], |row| row.get(0))?)
    }
}
