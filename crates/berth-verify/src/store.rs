//! Where runs live between transitions. The trait is deliberately small: a
//! [`Run`] carries its stages, measurements, artifact metadata, environment
//! manifest and operator log, so saving it whole after every transition is
//! the whole persistence contract. Beside the run, a store keeps the
//! parameters the run was started with (JSON), so any process can resume
//! it. `berth_store::Store` (SQLite) implements it for real; the in-memory
//! store keeps tests fast and can fail on demand.

use std::collections::BTreeMap;
use std::sync::Mutex;

use berth_core::pipeline::Run;

pub use berth_store::{RUNS_LIST_MAX, RunListing};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunStoreError {
    /// The backend failed (database error, disk full...).
    #[error("run store: {0}")]
    Backend(String),
    /// A stored run could not be decoded.
    #[error("run store: run {id} is unreadable: {detail}")]
    Corrupt { id: String, detail: String },
}

/// Persistence of runs. Implementations are synchronous (SQLite is) and
/// must make each `save_run` atomic: a crash leaves the previous or the new
/// version, never a mix.
pub trait RunStore: Send + Sync {
    /// Insert or replace the run with `run.id`.
    fn save_run(&self, run: &Run) -> Result<(), RunStoreError>;
    /// The run with `id`, or `None`.
    fn load_run(&self, id: &str) -> Result<Option<Run>, RunStoreError>;
    /// Up to `limit` (at most [`RUNS_LIST_MAX`]) runs, newest first.
    fn list_runs(&self, limit: usize) -> Result<Vec<RunListing>, RunStoreError>;
    /// Record the parameters run `id` (already saved) was started with.
    fn save_params(&self, id: &str, params_json: &str) -> Result<(), RunStoreError>;
    /// The parameters recorded for run `id`.
    fn load_params(&self, id: &str) -> Result<Option<String>, RunStoreError>;
}

fn backend(e: berth_store::StoreError) -> RunStoreError {
    match e {
        berth_store::StoreError::Corrupt { detail } => RunStoreError::Corrupt {
            id: String::new(),
            detail,
        },
        e => RunStoreError::Backend(e.to_string()),
    }
}

impl RunStore for berth_store::Store {
    fn save_run(&self, run: &Run) -> Result<(), RunStoreError> {
        berth_store::Store::save_run(self, run).map_err(backend)
    }

    fn load_run(&self, id: &str) -> Result<Option<Run>, RunStoreError> {
        berth_store::Store::load_run(self, id).map_err(|e| match e {
            berth_store::StoreError::Corrupt { detail } => RunStoreError::Corrupt {
                id: id.to_string(),
                detail,
            },
            e => backend(e),
        })
    }

    fn list_runs(&self, limit: usize) -> Result<Vec<RunListing>, RunStoreError> {
        berth_store::Store::list_runs(self, limit).map_err(backend)
    }

    fn save_params(&self, id: &str, params_json: &str) -> Result<(), RunStoreError> {
        self.set_run_params(id, params_json).map_err(backend)
    }

    fn load_params(&self, id: &str) -> Result<Option<String>, RunStoreError> {
        self.run_params(id).map_err(backend)
    }
}

/// An in-memory store that keeps every run as JSON text, so each save and
/// load goes through the same serde round trip a durable store does. It
/// can be told to fail the next N saves.
#[derive(Debug, Default)]
pub struct MemoryRunStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    runs: BTreeMap<String, String>,
    params: BTreeMap<String, String>,
    saves: u64,
    fail_saves: u32,
}

impl MemoryRunStore {
    pub fn new() -> MemoryRunStore {
        MemoryRunStore::default()
    }

    /// Make the next `n` saves fail with a backend error.
    pub fn fail_next_saves(&self, n: u32) {
        self.lock().fail_saves = n;
    }

    /// How many saves succeeded so far.
    pub fn save_count(&self) -> u64 {
        self.lock().saves
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panic while holding this lock cannot leave the map half-written
        // (every update is one insert), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RunStore for MemoryRunStore {
    fn save_run(&self, run: &Run) -> Result<(), RunStoreError> {
        let mut inner = self.lock();
        if inner.fail_saves > 0 {
            inner.fail_saves -= 1;
            return Err(RunStoreError::Backend(format!(
                "injected failure saving run {}",
                run.id
            )));
        }
        let text = serde_json::to_string(run).map_err(|e| RunStoreError::Corrupt {
            id: run.id.clone(),
            detail: e.to_string(),
        })?;
        inner.runs.insert(run.id.clone(), text);
        inner.saves += 1;
        Ok(())
    }

    fn load_run(&self, id: &str) -> Result<Option<Run>, RunStoreError> {
        let inner = self.lock();
        inner
            .runs
            .get(id)
            .map(|text| {
                serde_json::from_str(text).map_err(|e| RunStoreError::Corrupt {
                    id: id.to_string(),
                    detail: e.to_string(),
                })
            })
            .transpose()
    }

    fn list_runs(&self, limit: usize) -> Result<Vec<RunListing>, RunStoreError> {
        let ids: Vec<String> = self.lock().runs.keys().cloned().collect();
        let mut runs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(run) = self.load_run(&id)? {
                runs.push(RunListing::of(&run));
            }
        }
        runs.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        runs.truncate(limit.min(RUNS_LIST_MAX));
        Ok(runs)
    }

    fn save_params(&self, id: &str, params_json: &str) -> Result<(), RunStoreError> {
        let mut inner = self.lock();
        if !inner.runs.contains_key(id) {
            return Err(RunStoreError::Backend(format!("run {id} not found")));
        }
        inner.params.insert(id.to_string(), params_json.to_string());
        Ok(())
    }

    fn load_params(&self, id: &str) -> Result<Option<String>, RunStoreError> {
        Ok(self.lock().params.get(id).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::pipeline::{OperatorAction, Verdict, operator};

    #[test]
    fn runs_round_trip_and_list_newest_first() {
        let store = MemoryRunStore::new();
        let a = Run::new("a", "vet", &["x"], false, 10);
        let mut b = Run::new("b", "verify", &["x", "y"], false, 20);
        operator(&mut b, OperatorAction::Abandon, 30).unwrap();
        store.save_run(&a).unwrap();
        store.save_run(&b).unwrap();
        assert_eq!(store.load_run("b").unwrap(), Some(b.clone()));
        assert_eq!(store.load_run("zz").unwrap(), None);
        let list = store.list_runs(10).unwrap();
        assert_eq!(
            list.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert_eq!(list[0].verdict, Some(Verdict::Abandoned));
        assert_eq!(store.list_runs(1).unwrap().len(), 1);
    }

    #[test]
    fn injected_save_failures_are_backend_errors() {
        let store = MemoryRunStore::new();
        store.fail_next_saves(1);
        let run = Run::new("a", "vet", &["x"], false, 10);
        assert!(matches!(
            store.save_run(&run),
            Err(RunStoreError::Backend(_))
        ));
        store.save_run(&run).unwrap();
        assert_eq!(store.save_count(), 1);
    }
}

#[cfg(test)]
mod sqlite_tests {
    use super::*;
    use berth_core::pipeline::{self, OperatorAction, StageResult};

    /// The SQLite store behaves like the memory store through the trait,
    /// across a reopen of the database.
    #[test]
    fn the_sqlite_store_round_trips_runs_and_params_through_the_trait() {
        let tmp = tempfile::tempdir().unwrap();
        let state = berth_store::StateDir::open(tmp.path()).unwrap();
        let store = state.store().unwrap();
        let dyn_store: &dyn RunStore = &store;
        let mut run = Run::new("vet-1", "vet", &["a", "b"], false, 10);
        pipeline::next(&mut run, 11);
        pipeline::record_result(
            &mut run,
            0,
            StageResult {
                passed: false,
                summary: "no".into(),
                ..StageResult::default()
            },
            12,
        )
        .unwrap();
        dyn_store.save_run(&run).unwrap();
        dyn_store.save_params("vet-1", "{\"x\":1}").unwrap();
        drop(store);
        let store = state.store().unwrap();
        let dyn_store: &dyn RunStore = &store;
        assert_eq!(dyn_store.load_run("vet-1").unwrap(), Some(run.clone()));
        assert_eq!(
            dyn_store.load_params("vet-1").unwrap().as_deref(),
            Some("{\"x\":1}")
        );
        let list = dyn_store.list_runs(5).unwrap();
        assert_eq!(list, vec![RunListing::of(&run)]);
        assert_eq!(list[0].failed_stage.as_deref(), Some("a"));
        pipeline::operator(&mut run, OperatorAction::Abandon, 20).unwrap();
        dyn_store.save_run(&run).unwrap();
        assert!(dyn_store.list_runs(5).unwrap()[0].state.is_terminal());
        assert!(dyn_store.save_params("nope", "{}").is_err());
    }
}
