//! Runs of the staged pipeline (`berth vet`, `berth verify`): each
//! [`Run`] is stored whole, as JSON, and replaced atomically after every
//! transition (one statement, so a crash leaves the previous or the new
//! version, never a mix). The columns beside the JSON (kind, state,
//! verdict, failed stage, times) serve listings without decoding every run.
//!
//! A run also has a directory, `<state>/runs/<id>/` (its reports and
//! artifacts by default), and a lock file in it: the process that drives a
//! run (executes stages or applies an operator action) holds that lock, so
//! two processes never drive one run. Runs are not installed apps: they
//! are written without the state-directory lock, so a running daemon does
//! not block `berth vet`.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use berth_core::pipeline::{Run, RunState, Verdict};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::state_dir::{STATE_DIR_MODE, StateDir, StateLock, lock_file};
use crate::store::Store;

/// Runs kept in the database; beyond this the oldest finished runs are
/// forgotten when a new run is saved (their report directories stay).
pub const RUNS_MAX: usize = 1_000;
/// Most runs one listing returns.
pub const RUNS_LIST_MAX: usize = 1_000;
/// Largest run accepted, as JSON (a 20-iteration verify of a 10-app stack
/// is a few hundred KiB).
pub const RUN_JSON_BYTES_MAX: usize = 16 << 20;
/// Largest saved start parameters of a run, as JSON.
pub const RUN_PARAMS_BYTES_MAX: usize = 64 * 1024;
/// Longest run id, in bytes.
pub const RUN_ID_MAX_BYTES: usize = 128;
/// Folder of the state directory holding run directories.
pub const RUNS_DIR_NAME: &str = "runs";
/// Name of the lock file inside a run directory.
pub const RUN_LOCK_FILE_NAME: &str = ".lock";

/// One line of `berth run list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunListing {
    pub id: String,
    pub kind: String,
    pub state: RunState,
    pub verdict: Option<Verdict>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub finished_ms: Option<u64>,
    /// The stage the run holds on (or was abandoned on).
    pub failed_stage: Option<String>,
    pub stages: usize,
}

impl RunListing {
    pub fn of(run: &Run) -> RunListing {
        RunListing {
            id: run.id.clone(),
            kind: run.kind.clone(),
            state: run.state,
            verdict: run.verdict(),
            created_ms: run.created_ms,
            updated_ms: run.updated_ms,
            finished_ms: run.finished_ms,
            failed_stage: run
                .failed_stage
                .and_then(|i| run.stages.get(i))
                .map(|s| s.name.clone()),
            stages: run.stages.len(),
        }
    }
}

/// A run id is one path component: 1 to [`RUN_ID_MAX_BYTES`] of ASCII
/// letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn check_run_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= RUN_ID_MAX_BYTES
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            kind: "run",
            name: id.to_string(),
        })
    }
}

fn to_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn to_u64(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

/// `"failed_holding"` → `RunState::FailedHolding` (the serde names).
fn decode_name<T: serde::de::DeserializeOwned>(what: &str, id: &str, text: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|e| StoreError::corrupt(format!("run {id}: {what} {text:?}: {e}")))
}

impl Store {
    /// Insert or replace the run with `run.id`. Saving a new run forgets
    /// the oldest finished runs beyond [`RUNS_MAX`].
    pub fn save_run(&self, run: &Run) -> Result<()> {
        check_run_id(&run.id)?;
        let json = serde_json::to_string(run).map_err(|e| {
            StoreError::invalid_state(format!("run {}: does not encode: {e}", run.id))
        })?;
        if json.len() > RUN_JSON_BYTES_MAX {
            return Err(StoreError::invalid_state(format!(
                "run {} is {} bytes as JSON, more than {RUN_JSON_BYTES_MAX}",
                run.id,
                json.len()
            )));
        }
        let listing = RunListing::of(run);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let inserted = tx
            .prepare_cached("SELECT 1 FROM runs WHERE id = ?1")?
            .query_row([&run.id], |_| Ok(()))
            .optional()?
            .is_none();
        tx.prepare_cached(
            "INSERT INTO runs (id, kind, state, verdict, failed_stage, stages,
                               created_ms, updated_ms, finished_ms, run_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (id) DO UPDATE SET
                kind = excluded.kind,
                state = excluded.state,
                verdict = excluded.verdict,
                failed_stage = excluded.failed_stage,
                stages = excluded.stages,
                created_ms = excluded.created_ms,
                updated_ms = excluded.updated_ms,
                finished_ms = excluded.finished_ms,
                run_json = excluded.run_json",
        )?
        .execute(params![
            run.id,
            run.kind,
            run.state.as_str(),
            listing.verdict.map(Verdict::as_str),
            listing.failed_stage,
            i64::try_from(run.stages.len()).unwrap_or(i64::MAX),
            to_i64(run.created_ms),
            to_i64(run.updated_ms),
            run.finished_ms.map(to_i64),
            json,
        ])?;
        if inserted {
            // Unfinished runs are never forgotten: an operator may still
            // resolve them.
            tx.prepare_cached(
                "DELETE FROM runs WHERE id IN (
                    SELECT id FROM runs WHERE state IN ('completed', 'abandoned')
                    ORDER BY created_ms DESC, id DESC LIMIT -1 OFFSET ?1)",
            )?
            .execute([i64::try_from(RUNS_MAX).unwrap_or(i64::MAX)])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The run with `id`, or `None`.
    pub fn load_run(&self, id: &str) -> Result<Option<Run>> {
        let json: Option<String> = {
            let conn = self.conn();
            conn.prepare_cached("SELECT run_json FROM runs WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?
        };
        json.map(|text| {
            serde_json::from_str(&text)
                .map_err(|e| StoreError::corrupt(format!("run {id} does not decode: {e}")))
        })
        .transpose()
    }

    /// Up to `limit` (at most [`RUNS_LIST_MAX`]) runs, newest first.
    pub fn list_runs(&self, limit: usize) -> Result<Vec<RunListing>> {
        let limit = i64::try_from(limit.min(RUNS_LIST_MAX)).unwrap_or(0);
        type Row = (
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            i64,
            i64,
            i64,
            Option<i64>,
        );
        let rows: Vec<Row> = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT id, kind, state, verdict, failed_stage, stages,
                        created_ms, updated_ms, finished_ms
                 FROM runs ORDER BY created_ms DESC, id DESC LIMIT ?1",
            )?;
            stmt.query_map([limit], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        rows.into_iter()
            .map(
                |(id, kind, state, verdict, failed_stage, stages, created, updated, finished)| {
                    Ok(RunListing {
                        state: decode_name("state", &id, &state)?,
                        verdict: verdict
                            .map(|v| decode_name("verdict", &id, &v))
                            .transpose()?,
                        id,
                        kind,
                        created_ms: to_u64(created),
                        updated_ms: to_u64(updated),
                        finished_ms: finished.map(to_u64),
                        failed_stage,
                        stages: usize::try_from(stages).unwrap_or(0),
                    })
                },
            )
            .collect()
    }

    /// Record what run `id` was started with (JSON), so any process can
    /// resume it. The run must be saved first.
    pub fn set_run_params(&self, id: &str, params_json: &str) -> Result<()> {
        if params_json.len() > RUN_PARAMS_BYTES_MAX {
            return Err(StoreError::invalid_state(format!(
                "parameters of run {id} are larger than {RUN_PARAMS_BYTES_MAX} bytes"
            )));
        }
        let conn = self.conn();
        let n = conn
            .prepare_cached("UPDATE runs SET params_json = ?2 WHERE id = ?1")?
            .execute(params![id, params_json])?;
        if n == 0 {
            return Err(StoreError::not_found(format!("run {id}")));
        }
        Ok(())
    }

    /// The parameters recorded for run `id` (`None` when the run does not
    /// exist or has none).
    pub fn run_params(&self, id: &str) -> Result<Option<String>> {
        let conn = self.conn();
        Ok(conn
            .prepare_cached("SELECT params_json FROM runs WHERE id = ?1")?
            .query_row([id], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }
}

impl StateDir {
    /// `<root>/runs`.
    pub fn runs_dir(&self) -> PathBuf {
        self.root().join(RUNS_DIR_NAME)
    }

    /// `<root>/runs/<id>`, created (mode 0700: artifacts may name paths
    /// and hosts) when missing.
    pub fn run_dir(&self, id: &str) -> Result<PathBuf> {
        check_run_id(id)?;
        let dir = self.runs_dir().join(id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(STATE_DIR_MODE)
            .create(&dir)
            .map_err(|e| StoreError::io("creating run directory", &dir, e))?;
        Ok(dir)
    }

    /// Take the lock of run `id` without waiting: the process holding it is
    /// the one that drives the run. Fails with [`StoreError::RunBusy`] when
    /// another process (or handle) holds it; released on drop and by the
    /// kernel when the holder dies.
    pub fn lock_run(&self, id: &str) -> Result<StateLock> {
        let path = self.run_dir(id)?.join(RUN_LOCK_FILE_NAME);
        match lock_file(path) {
            Err(StoreError::Locked { pid, .. }) => Err(StoreError::RunBusy {
                id: id.to_string(),
                pid,
            }),
            other => other,
        }
    }
}
