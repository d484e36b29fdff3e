//! The durable operation journal.
//!
//! Every lifecycle operation (install, uninstall, start, ...) is a row in
//! `ops`, and every step of it is recorded as an `intent` *before* it runs,
//! then marked `done` (noting whether it created the resource) or, when
//! rolled back, `undone`. If berth dies mid-operation, the operation stays
//! unfinished and the next berth finds it with `unfinished_ops`, knowing
//! exactly which resources may exist and which of them it created.

use std::fmt;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::truncate_bytes;

/// Finished operations kept; older ones are pruned when a new one begins.
/// Unfinished operations are never pruned.
pub const OPS_MAX: i64 = 1_000;
/// Steps one operation may record; more means a runaway loop in the caller.
pub const STEPS_PER_OP_MAX: i64 = 10_000;
/// Longest operation error kept, in bytes (it may quote container logs).
pub const OP_ERROR_MAX_BYTES: usize = 16 * 1024;

/// State of an operation that has not finished (or whose berth died).
pub const OP_STATE_RUNNING: &str = "running";
/// Step recorded, about to run (or was running when berth died).
pub const STEP_STATE_INTENT: &str = "intent";
/// Step ran to completion.
pub const STEP_STATE_DONE: &str = "done";
/// Step was rolled back.
pub const STEP_STATE_UNDONE: &str = "undone";

const OP_STATES: [&str; 5] = [
    OP_STATE_RUNNING,
    "succeeded",
    "failed",
    "rolled-back",
    "resumed",
];
const STEP_STATES: [&str; 3] = [STEP_STATE_INTENT, STEP_STATE_DONE, STEP_STATE_UNDONE];

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpOutcome {
    Succeeded,
    Failed,
    /// Failed, and everything it created was removed again.
    RolledBack,
    /// Interrupted (berth died) and taken over by a later operation.
    Resumed,
}

impl OpOutcome {
    /// The operation state this outcome is stored as.
    pub fn as_str(self) -> &'static str {
        match self {
            OpOutcome::Succeeded => "succeeded",
            OpOutcome::Failed => "failed",
            OpOutcome::RolledBack => "rolled-back",
            OpOutcome::Resumed => "resumed",
        }
    }
}

impl fmt::Display for OpOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub id: i64,
    /// install, uninstall, reinstall, start, stop, ...
    pub kind: String,
    pub app: String,
    /// running, succeeded, failed, rolled-back or resumed.
    pub state: String,
    pub error: Option<String>,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// In the order they were recorded.
    pub steps: Vec<Step>,
}

impl Operation {
    pub fn is_finished(&self) -> bool {
        self.finished_at_ms.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: i64,
    /// 1, 2, ... within its operation.
    pub seq: i64,
    /// pull, network, volume, secrets, container, start, wait, stop, ...
    pub kind: String,
    /// The engine object (or path) the step acts on.
    pub resource: String,
    /// intent, done or undone.
    pub state: String,
    /// This step created the resource, so a rollback removes it.
    pub created: bool,
}

const OP_COLUMNS: &str = "id, kind, app, state, error, started_at_ms, finished_at_ms";

fn op_from_row(row: &Row<'_>) -> rusqlite::Result<Operation> {
    Ok(Operation {
        id: row.get(0)?,
        kind: row.get(1)?,
        app: row.get(2)?,
        state: row.get(3)?,
        error: row.get(4)?,
        started_at_ms: row.get(5)?,
        finished_at_ms: row.get(6)?,
        steps: Vec::new(),
    })
}

fn step_from_row(row: &Row<'_>) -> rusqlite::Result<(Step, i64)> {
    let created: i64 = row.get(5)?;
    Ok((
        Step {
            id: row.get(0)?,
            seq: row.get(1)?,
            kind: row.get(2)?,
            resource: row.get(3)?,
            state: row.get(4)?,
            created: created != 0,
        },
        created,
    ))
}

/// Fills in the steps of each operation and checks the stored states, so
/// callers can match on them without a catch-all for garbage.
fn with_steps(conn: &Connection, mut ops: Vec<Operation>) -> Result<Vec<Operation>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, seq, kind, resource, state, created FROM steps WHERE op_id = ?1 ORDER BY seq",
    )?;
    for op in &mut ops {
        if !OP_STATES.contains(&op.state.as_str()) {
            return Err(StoreError::corrupt(format!(
                "operation {} ({} {}) has unknown state {:?}",
                op.id, op.kind, op.app, op.state
            )));
        }
        for step in stmt.query_map([op.id], step_from_row)? {
            let (step, created) = step?;
            if !STEP_STATES.contains(&step.state.as_str()) || !(0..=1).contains(&created) {
                return Err(StoreError::corrupt(format!(
                    "step {} of operation {} ({} {}) has unknown state {:?} or created flag {created}",
                    step.id, op.id, op.kind, op.app, step.state
                )));
            }
            op.steps.push(step);
        }
    }
    Ok(ops)
}

/// (kind, app, finished) of an operation, or `NotFound`.
fn op_header(conn: &Connection, op: i64) -> Result<(String, String, bool)> {
    conn.prepare_cached("SELECT kind, app, finished_at_ms IS NOT NULL FROM ops WHERE id = ?1")?
        .query_row([op], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?
        .ok_or_else(|| StoreError::not_found(format!("operation {op}")))
}

/// (kind, resource, state) of a step, or `NotFound`.
fn step_header(conn: &Connection, step: i64) -> Result<(String, String, String)> {
    conn.prepare_cached("SELECT kind, resource, state FROM steps WHERE id = ?1")?
        .query_row([step], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?
        .ok_or_else(|| StoreError::not_found(format!("step {step}")))
}

impl Store {
    /// Starts an operation on `app` (state `running`) and returns its id.
    /// Prunes finished operations beyond `OPS_MAX`.
    pub fn begin_op(&self, kind: &str, app: &str, now_ms: i64) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "INSERT INTO ops (kind, app, state, started_at_ms) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![kind, app, OP_STATE_RUNNING, now_ms])?;
        let id = tx.last_insert_rowid();
        // Ids only grow, so this touches just the oldest rows (a range scan on
        // the primary key), and never an unfinished operation.
        tx.prepare_cached("DELETE FROM ops WHERE id <= ?1 AND finished_at_ms IS NOT NULL")?
            .execute([id - OPS_MAX])?;
        tx.commit()?;
        Ok(id)
    }

    /// Records that step `kind` on `resource` is about to run (state
    /// `intent`), before running it. Returns the step id.
    pub fn record_step(&self, op: i64, kind: &str, resource: &str, now_ms: i64) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = insert_step(&tx, op, kind, resource, STEP_STATE_INTENT, now_ms)?;
        tx.commit()?;
        Ok(id)
    }

    /// Marks a step `done`; `created` says this step created its resource
    /// (so a rollback must remove it) rather than finding it already there.
    pub fn complete_step(&self, step: i64, created: bool, now_ms: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (kind, resource, state) = step_header(&tx, step)?;
        if state == STEP_STATE_UNDONE {
            return Err(StoreError::invalid_state(format!(
                "step {step} ({kind} {resource}) was rolled back; it cannot complete"
            )));
        }
        tx.prepare_cached(
            "UPDATE steps SET state = ?1, created = ?2, updated_at_ms = ?3 WHERE id = ?4",
        )?
        .execute(params![STEP_STATE_DONE, created, now_ms, step])?;
        tx.commit()?;
        Ok(())
    }

    /// Marks a step `undone` (rolled back). Idempotent.
    pub fn mark_step_undone(&self, step: i64, now_ms: i64) -> Result<()> {
        let conn = self.conn();
        let changed = conn
            .prepare_cached("UPDATE steps SET state = ?1, updated_at_ms = ?2 WHERE id = ?3")?
            .execute(params![STEP_STATE_UNDONE, now_ms, step])?;
        if changed == 0 {
            return Err(StoreError::not_found(format!("step {step}")));
        }
        Ok(())
    }

    /// Ends a running operation. The error (truncated to
    /// `OP_ERROR_MAX_BYTES`) is stored as given: redact secrets first.
    pub fn finish_op(
        &self,
        op: i64,
        outcome: OpOutcome,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        let error = error.map(|e| truncate_bytes(e, OP_ERROR_MAX_BYTES));
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (kind, app, finished) = op_header(&tx, op)?;
        if finished {
            return Err(StoreError::invalid_state(format!(
                "operation {op} ({kind} {app}) already finished; cannot mark it {outcome}"
            )));
        }
        tx.prepare_cached(
            "UPDATE ops SET state = ?1, error = ?2, finished_at_ms = ?3 WHERE id = ?4",
        )?
        .execute(params![outcome.as_str(), error, now_ms, op])?;
        tx.commit()?;
        Ok(())
    }

    /// Operations that never finished (berth died during them), oldest
    /// first, with their steps in order.
    pub fn unfinished_ops(&self) -> Result<Vec<Operation>> {
        let conn = self.conn();
        let ops = conn
            .prepare_cached(&format!(
                "SELECT {OP_COLUMNS} FROM ops WHERE finished_at_ms IS NULL ORDER BY id"
            ))?
            .query_map([], op_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        with_steps(&conn, ops)
    }

    pub fn op(&self, id: i64) -> Result<Option<Operation>> {
        let conn = self.conn();
        let op = conn
            .prepare_cached(&format!("SELECT {OP_COLUMNS} FROM ops WHERE id = ?1"))?
            .query_row([id], op_from_row)
            .optional()?;
        Ok(with_steps(&conn, op.into_iter().collect())?.pop())
    }

    /// The newest operations first, of one app or of all, at most `limit`
    /// (capped at `OPS_MAX`).
    pub fn recent_ops(&self, app: Option<&str>, limit: usize) -> Result<Vec<Operation>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX).min(OPS_MAX);
        let conn = self.conn();
        let ops = match app {
            Some(app) => conn
                .prepare_cached(&format!(
                    "SELECT {OP_COLUMNS} FROM ops WHERE app = ?1 ORDER BY id DESC LIMIT ?2"
                ))?
                .query_map(params![app, limit], op_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => conn
                .prepare_cached(&format!(
                    "SELECT {OP_COLUMNS} FROM ops ORDER BY id DESC LIMIT ?1"
                ))?
                .query_map([limit], op_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        with_steps(&conn, ops)
    }
}

/// Records step `kind` on `resource` of operation `op` as already done,
/// inside the caller's transaction (an update's commit point).
pub(crate) fn record_done_step_on(
    conn: &Connection,
    op: i64,
    kind: &str,
    resource: &str,
    now_ms: i64,
) -> Result<i64> {
    insert_step(conn, op, kind, resource, STEP_STATE_DONE, now_ms)
}

fn insert_step(
    conn: &Connection,
    op: i64,
    kind: &str,
    resource: &str,
    state: &str,
    now_ms: i64,
) -> Result<i64> {
    let (op_kind, op_app, finished) = op_header(conn, op)?;
    if finished {
        return Err(StoreError::invalid_state(format!(
            "operation {op} ({op_kind} {op_app}) already finished; \
             cannot record step {kind} {resource}"
        )));
    }
    let seq: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE op_id = ?1")?
        .query_row([op], |row| row.get(0))?;
    if seq > STEPS_PER_OP_MAX {
        return Err(StoreError::invalid_state(format!(
            "operation {op} ({op_kind} {op_app}) already has {STEPS_PER_OP_MAX} steps"
        )));
    }
    conn.prepare_cached(
        "INSERT INTO steps (op_id, seq, kind, resource, state, created, recorded_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6)",
    )?
    .execute(params![op, seq, kind, resource, state, now_ms])?;
    Ok(conn.last_insert_rowid())
}
