//! Supervision state of the daemon: restart trackers (with crash-loop
//! quarantine) and owed starts. User intents live in `apps.desired`.

use std::collections::{BTreeMap, BTreeSet};

use berth_core::supervise::RestartTracker;
use rusqlite::{TransactionBehavior, params};

use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::truncate_bytes;

/// Longest owed-start reason kept, in bytes.
pub const OWED_REASON_MAX_BYTES: usize = 512;

impl Store {
    /// Every stored restart tracker by app id. A tracker that no longer
    /// decodes (written by another berth version) comes back as a fresh
    /// one, with a warning: forgetting restart history is safe, refusing to
    /// supervise is not.
    pub fn restart_trackers(&self) -> Result<BTreeMap<String, RestartTracker>> {
        let rows: Vec<(String, String)> = {
            let conn = self.conn();
            let mut stmt =
                conn.prepare_cached("SELECT app, tracker_json FROM restart_trackers ORDER BY app")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        Ok(rows
            .into_iter()
            .map(|(app, json)| {
                let tracker = serde_json::from_str(&json).unwrap_or_else(|e| {
                    tracing::warn!(app, error = %e, "stored restart tracker does not decode; starting afresh");
                    RestartTracker::default()
                });
                (app, tracker)
            })
            .collect())
    }

    /// The restart tracker of one app (default when none is stored).
    pub fn restart_tracker(&self, app: &str) -> Result<RestartTracker> {
        Ok(self.restart_trackers()?.remove(app).unwrap_or_default())
    }

    /// Store trackers (insert or replace), all in one transaction.
    pub fn put_restart_trackers(
        &self,
        trackers: &BTreeMap<String, RestartTracker>,
        now_ms: i64,
    ) -> Result<()> {
        if trackers.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (app, tracker) in trackers {
            let json = serde_json::to_string(tracker).map_err(|e| {
                StoreError::invalid_state(format!("app {app}: tracker does not encode: {e}"))
            })?;
            tx.prepare_cached(
                "INSERT INTO restart_trackers (app, tracker_json, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app) DO UPDATE SET
                    tracker_json = excluded.tracker_json,
                    updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![app, json, now_ms])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Forget an app's restart history and owed start (the user acted:
    /// started, reinstalled, installed it). True when anything was stored.
    pub fn reset_supervision(&self, app: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let a = tx
            .prepare_cached("DELETE FROM restart_trackers WHERE app = ?1")?
            .execute([app])?;
        let b = tx
            .prepare_cached("DELETE FROM owed_starts WHERE app = ?1")?
            .execute([app])?;
        tx.commit()?;
        Ok(a + b > 0)
    }

    /// Apps with an owed start.
    pub fn owed_starts(&self) -> Result<BTreeSet<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT app FROM owed_starts ORDER BY app")?;
        Ok(stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Record that `app` is owed a start (before a supervision stop).
    pub fn add_owed_start(&self, app: &str, reason: &str, now_ms: i64) -> Result<()> {
        let reason = truncate_bytes(reason, OWED_REASON_MAX_BYTES);
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO owed_starts (app, reason, recorded_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (app) DO UPDATE SET
                reason = excluded.reason,
                recorded_at_ms = excluded.recorded_at_ms",
        )?
        .execute(params![app, reason, now_ms])?;
        Ok(())
    }

    /// The owed start of `app` happened; true when one was recorded.
    pub fn clear_owed_start(&self, app: &str) -> Result<bool> {
        let conn = self.conn();
        Ok(conn
            .prepare_cached("DELETE FROM owed_starts WHERE app = ?1")?
            .execute([app])?
            > 0)
    }
}
