//! Chain gates: the gate state of each gated app (latch, hold note,
//! rejection) and the tracker of each node (health verdict and last probe),
//! both as JSON of their `berth_core::gate` types.
//!
//! Gate states are the source of truth the daemon re-reads every gate tick,
//! so a request (`gate.reset`, an install that releases an app) and the
//! daemon never keep two diverging copies. Node trackers are written by the
//! daemon, which keeps them in memory and restores them at start.

use std::collections::BTreeMap;

use berth_core::gate::{GateState, NodeTracker};
use rusqlite::{TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, StoreError};
use crate::store::Store;

impl Store {
    /// Every stored gate state by app id. One that no longer decodes comes
    /// back as the default (held until its nodes are synced), with a
    /// warning: re-arming a gate is safe, refusing to gate is not.
    pub fn gate_states(&self) -> Result<BTreeMap<String, GateState>> {
        self.json_rows(
            "SELECT app, state_json FROM gate_states ORDER BY app",
            "gate state",
        )
    }

    /// The gate state of one app (the default when none is stored).
    pub fn gate_state(&self, app: &str) -> Result<GateState> {
        Ok(self.gate_states()?.remove(app).unwrap_or_default())
    }

    /// Store gate states (insert or replace), all in one transaction.
    pub fn put_gate_states(&self, states: &BTreeMap<String, GateState>, now_ms: i64) -> Result<()> {
        self.put_json_rows(
            "INSERT INTO gate_states (app, state_json, updated_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (app) DO UPDATE SET
                state_json = excluded.state_json,
                updated_at_ms = excluded.updated_at_ms",
            states,
            now_ms,
        )
    }

    /// Forget an app's gate state: its gate is re-armed (held until its
    /// nodes are synced, no rejection). True when one was stored.
    pub fn delete_gate_state(&self, app: &str) -> Result<bool> {
        let conn = self.conn();
        Ok(conn
            .prepare_cached("DELETE FROM gate_states WHERE app = ?1")?
            .execute([app])?
            > 0)
    }

    /// Every stored node tracker by node (app) id, as written. The daemon
    /// applies `NodeTracker::restored` to what it loads at start.
    pub fn node_trackers(&self) -> Result<BTreeMap<String, NodeTracker>> {
        self.json_rows(
            "SELECT node, tracker_json FROM node_trackers ORDER BY node",
            "node tracker",
        )
    }

    /// Store node trackers (insert or replace), all in one transaction.
    pub fn put_node_trackers(
        &self,
        trackers: &BTreeMap<String, NodeTracker>,
        now_ms: i64,
    ) -> Result<()> {
        self.put_json_rows(
            "INSERT INTO node_trackers (node, tracker_json, updated_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (node) DO UPDATE SET
                tracker_json = excluded.tracker_json,
                updated_at_ms = excluded.updated_at_ms",
            trackers,
            now_ms,
        )
    }

    /// Forget the trackers of nodes no gate names any more. Returns how
    /// many were removed.
    pub fn delete_node_trackers(&self, nodes: &[String]) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n = 0;
        for node in nodes {
            n += tx
                .prepare_cached("DELETE FROM node_trackers WHERE node = ?1")?
                .execute([node])?;
        }
        tx.commit()?;
        Ok(n)
    }

    fn json_rows<T: DeserializeOwned + Default>(
        &self,
        sql: &str,
        what: &str,
    ) -> Result<BTreeMap<String, T>> {
        let rows: Vec<(String, String)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(sql)?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        Ok(rows
            .into_iter()
            .map(|(key, json)| {
                let value = serde_json::from_str(&json).unwrap_or_else(|e| {
                    tracing::warn!(key, error = %e, "stored {what} does not decode; starting afresh");
                    T::default()
                });
                (key, value)
            })
            .collect())
    }

    fn put_json_rows<T: Serialize>(
        &self,
        sql: &str,
        rows: &BTreeMap<String, T>,
        now_ms: i64,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (key, value) in rows {
            let json = serde_json::to_string(value).map_err(|e| {
                StoreError::invalid_state(format!("{key}: gate record does not encode: {e}"))
            })?;
            tx.prepare_cached(sql)?
                .execute(params![key, json, now_ms])?;
        }
        tx.commit()?;
        Ok(())
    }
}
