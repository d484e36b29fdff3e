//! Installed apps and what the user wants of them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use berth_core::model::App;
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::store::Store;

/// What the user asked for. The reconciler never starts a `Stopped` app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    Running,
    Stopped,
}

impl Desired {
    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Running => "running",
            Desired::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Desired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Desired {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "running" => Ok(Desired::Running),
            "stopped" => Ok(Desired::Stopped),
            other => Err(format!("unknown desired state {other:?}")),
        }
    }
}

/// One installed app: the manifest it was installed from (as validated
/// then) and the desired state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    pub id: String,
    pub stack: String,
    /// The manifest file the stack was loaded from, when there was one.
    pub stack_file: Option<String>,
    /// Engine network the app joins.
    pub network: String,
    pub app: App,
    pub desired: Desired,
    pub installed_at_ms: i64,
    pub updated_at_ms: i64,
}

const APP_COLUMNS: &str =
    "id, stack, stack_file, network, app_json, desired, installed_at_ms, updated_at_ms";

/// A row as stored, before the JSON and enum columns are checked.
struct AppRow {
    id: String,
    stack: String,
    stack_file: Option<String>,
    network: String,
    app_json: String,
    desired: String,
    installed_at_ms: i64,
    updated_at_ms: i64,
}

impl AppRow {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<AppRow> {
        Ok(AppRow {
            id: row.get(0)?,
            stack: row.get(1)?,
            stack_file: row.get(2)?,
            network: row.get(3)?,
            app_json: row.get(4)?,
            desired: row.get(5)?,
            installed_at_ms: row.get(6)?,
            updated_at_ms: row.get(7)?,
        })
    }

    /// The record, its manifest decoded from `app_json` unless `memo`
    /// already holds this app decoded from the very same JSON.
    fn into_record(self, memo: &mut HashMap<String, (String, App)>) -> Result<AppRecord> {
        let app = match memo.get(&self.id) {
            Some((json, app)) if *json == self.app_json => app.clone(),
            _ => {
                let app: App = serde_json::from_str(&self.app_json).map_err(|e| {
                    StoreError::corrupt(format!(
                        "app {}: stored manifest does not decode: {e}",
                        self.id
                    ))
                })?;
                memo.insert(self.id.clone(), (self.app_json, app.clone()));
                app
            }
        };
        let desired = self
            .desired
            .parse()
            .map_err(|e| StoreError::corrupt(format!("app {}: {e}", self.id)))?;
        Ok(AppRecord {
            id: self.id,
            stack: self.stack,
            stack_file: self.stack_file,
            network: self.network,
            app,
            desired,
            installed_at_ms: self.installed_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}

impl Store {
    /// Inserts the app or replaces the stored record with the same id.
    pub fn put_app(&self, rec: &AppRecord) -> Result<()> {
        put_app_on(&self.conn(), rec)
    }

    /// An update's commit point, in one transaction: the app's new record
    /// and a finished `kind` step of operation `op`. A crash leaves
    /// either both or neither, so recovery can tell from the journal alone
    /// whether the new container is the app's.
    /// The new revision is recorded in the same transaction.
    pub fn commit_update(
        &self,
        op: i64,
        kind: &str,
        rec: &AppRecord,
        revision: &crate::NewRevision<'_>,
        now_ms: i64,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        put_app_on(&tx, rec)?;
        crate::journal::record_done_step_on(&tx, op, kind, &rec.id, now_ms)?;
        crate::revisions::add_revision_on(&tx, &rec.id, revision, now_ms)?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_app(&self, id: &str) -> Result<Option<AppRecord>> {
        let row = {
            let conn = self.conn();
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?1"))?;
            stmt.query_row([id], AppRow::from_row).optional()?
        };
        row.map(|r| r.into_record(&mut self.memo())).transpose()
    }

    /// Every installed app, sorted by id.
    pub fn list_apps(&self) -> Result<Vec<AppRecord>> {
        let rows = {
            let conn = self.conn();
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps ORDER BY id"))?;
            stmt.query_map([], AppRow::from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        let mut memo = self.memo();
        // Forget the apps that are gone, so the memo stays as large as the
        // apps table. `rows` is sorted by id (SQLite's BINARY collation
        // orders bytes as `str` does).
        memo.retain(|id, _| {
            rows.binary_search_by(|r| r.id.as_str().cmp(id.as_str()))
                .is_ok()
        });
        rows.into_iter().map(|r| r.into_record(&mut memo)).collect()
    }

    /// Every installed app's revision: its desired state and when its
    /// record was last written, by id, without decoding any manifest. A
    /// reader holding records compares them to this to learn which
    /// changed (or went) since it read them.
    pub fn app_revisions(&self) -> Result<BTreeMap<String, (Desired, i64)>> {
        let rows = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached("SELECT id, desired, updated_at_ms FROM apps")?;
            stmt.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?
        };
        rows.into_iter()
            .map(|(id, desired, at)| {
                let desired = desired
                    .parse()
                    .map_err(|e| StoreError::corrupt(format!("app {id}: {e}")))?;
                Ok((id, (desired, at)))
            })
            .collect()
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, App)>> {
        // The memo is only ever replaced whole entry by entry; a panic
        // elsewhere cannot leave it inconsistent.
        self.decoded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records what the user wants of an installed app. `NotFound` for an
    /// app that is not installed.
    pub fn set_desired(&self, id: &str, desired: Desired, now_ms: i64) -> Result<()> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("UPDATE apps SET desired = ?1, updated_at_ms = ?2 WHERE id = ?3")?;
        if stmt.execute(params![desired.as_str(), now_ms, id])? == 0 {
            return Err(StoreError::not_found(format!("app {id}")));
        }
        Ok(())
    }

    /// Forgets an app, with its supervision state (restart tracker, owed
    /// start) and its gate state and node tracker (a fresh install is held
    /// again until its nodes are synced); true when it was stored.
    pub fn delete_app(&self, id: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx
            .prepare_cached("DELETE FROM apps WHERE id = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM restart_trackers WHERE app = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM owed_starts WHERE app = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM gate_states WHERE app = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM node_trackers WHERE node = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM revisions WHERE app = ?1")?
            .execute([id])?;
        tx.commit()?;
        Ok(n > 0)
    }
}

fn put_app_on(conn: &rusqlite::Connection, rec: &AppRecord) -> Result<()> {
    let app_json = serde_json::to_string(&rec.app).map_err(|e| {
        StoreError::invalid_state(format!("app {}: manifest does not encode: {e}", rec.id))
    })?;
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO apps ({APP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET
            stack = excluded.stack,
            stack_file = excluded.stack_file,
            network = excluded.network,
            app_json = excluded.app_json,
            desired = excluded.desired,
            installed_at_ms = excluded.installed_at_ms,
            updated_at_ms = excluded.updated_at_ms"
    ))?;
    stmt.execute(params![
        rec.id,
        rec.stack,
        rec.stack_file,
        rec.network,
        app_json,
        rec.desired.as_str(),
        rec.installed_at_ms,
        rec.updated_at_ms,
    ])?;
    Ok(())
}
