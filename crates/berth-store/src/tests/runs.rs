//! Runs survive reopening whole, list newest first, keep their parameters,
//! are bounded, and have an exclusive per-run lock.

use berth_core::pipeline::{
    self, Measurement, OperatorAction, Run, RunState, StageResult, Verdict,
};

use super::store;
use crate::{RUNS_MAX, RunListing, StateDir, StoreError, check_run_id};

fn result(passed: bool, summary: &str) -> StageResult {
    StageResult {
        passed,
        summary: summary.into(),
        measurements: vec![Measurement::new("write_mb_s /data", 412.5, "MB/s")],
        ..StageResult::default()
    }
}

/// A run holding on its second stage, with history and environment facts.
fn held_run(id: &str, created_ms: u64) -> Run {
    let mut run = Run::new(
        id,
        "vet",
        &["Inventory", "Disk", "Reporting"],
        false,
        created_ms,
    );
    run.environment
        .insert("engine.kind".into(), "podman".into());
    pipeline::next(&mut run, created_ms + 1);
    pipeline::record_result(&mut run, 0, result(true, "2 CPUs"), created_ms + 2).unwrap();
    pipeline::next(&mut run, created_ms + 3);
    pipeline::record_result(
        &mut run,
        1,
        result(false, "fsync p99 250 ms"),
        created_ms + 4,
    )
    .unwrap();
    assert_eq!(run.state, RunState::FailedHolding);
    run
}

#[test]
fn a_run_round_trips_whole_across_a_reopen_and_is_replaced_atomically() {
    let (_tmp, dir, store) = store();
    let run = held_run("vet-1", 1_000);
    store.save_run(&run).unwrap();
    assert_eq!(store.load_run("vet-1").unwrap(), Some(run.clone()));
    assert_eq!(store.load_run("nope").unwrap(), None);

    // The operator retries; the new version replaces the old one.
    let mut resumed = run.clone();
    pipeline::operator(&mut resumed, OperatorAction::Retry, 2_000).unwrap();
    store.save_run(&resumed).unwrap();
    drop(store);

    let store = dir.store().unwrap();
    let back = store.load_run("vet-1").unwrap().unwrap();
    assert_eq!(back, resumed);
    back.check().unwrap();
    assert_eq!(store.list_runs(10).unwrap(), vec![RunListing::of(&resumed)]);
}

#[test]
fn listing_is_newest_first_with_state_verdict_and_failed_stage() {
    let (_tmp, _dir, store) = store();
    let held = held_run("vet-b", 2_000);
    let mut done = Run::new("verify-a", "verify", &["Setup"], false, 1_000);
    pipeline::next(&mut done, 1_001);
    pipeline::record_result(&mut done, 0, result(true, "ok"), 1_002).unwrap();
    pipeline::next(&mut done, 1_003);
    let mut abandoned = held_run("vet-c", 3_000);
    pipeline::operator(&mut abandoned, OperatorAction::Abandon, 3_100).unwrap();
    for r in [&held, &done, &abandoned] {
        store.save_run(r).unwrap();
    }
    let list = store.list_runs(10).unwrap();
    let ids: Vec<&str> = list.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["vet-c", "vet-b", "verify-a"]);
    assert_eq!(list[0].state, RunState::Abandoned);
    assert_eq!(list[0].verdict, Some(Verdict::Abandoned));
    assert_eq!(list[0].failed_stage.as_deref(), Some("Disk"));
    assert_eq!(list[0].finished_ms, Some(3_100));
    assert_eq!(list[1].state, RunState::FailedHolding);
    assert_eq!(list[1].verdict, None);
    assert_eq!(list[1].failed_stage.as_deref(), Some("Disk"));
    assert_eq!(list[2].verdict, Some(Verdict::Passed));
    assert_eq!(list[2].kind, "verify");
    assert_eq!(list[2].stages, 1);
    // The columns agree with what decoding each run gives.
    for l in &list {
        assert_eq!(l, &RunListing::of(&store.load_run(&l.id).unwrap().unwrap()));
    }
    assert_eq!(store.list_runs(2).unwrap().len(), 2);
    assert_eq!(store.list_runs(0).unwrap().len(), 0);
}

#[test]
fn parameters_are_kept_beside_the_run() {
    let (_tmp, _dir, store) = store();
    let err = store.set_run_params("vet-1", "{}").unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    store.save_run(&held_run("vet-1", 1)).unwrap();
    assert_eq!(store.run_params("vet-1").unwrap(), None);
    store
        .set_run_params("vet-1", r#"{"data_paths":["/data"]}"#)
        .unwrap();
    // Saving the run again keeps them.
    store.save_run(&held_run("vet-1", 1)).unwrap();
    assert_eq!(
        store.run_params("vet-1").unwrap().as_deref(),
        Some(r#"{"data_paths":["/data"]}"#)
    );
    assert_eq!(store.run_params("other").unwrap(), None);
    let huge = "x".repeat(crate::RUN_PARAMS_BYTES_MAX + 1);
    assert!(store.set_run_params("vet-1", &huge).is_err());
}

#[test]
fn old_finished_runs_are_forgotten_but_held_ones_never() {
    let (_tmp, _dir, store) = store();
    // The oldest run holds: it must survive any number of newer runs.
    store.save_run(&held_run("held", 0)).unwrap();
    for i in 0..RUNS_MAX + 5 {
        let mut run = Run::new(format!("r{i:05}"), "vet", &[], false, 10 + i as u64);
        pipeline::next(&mut run, 11 + i as u64);
        store.save_run(&run).unwrap();
    }
    let all = store.list_runs(usize::MAX).unwrap();
    assert_eq!(all.len(), crate::RUNS_LIST_MAX);
    let count: i64 = store
        .conn()
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        count as usize,
        RUNS_MAX + 1,
        "RUNS_MAX finished + the held one"
    );
    assert!(store.load_run("held").unwrap().is_some());
    assert!(
        store.load_run("r00000").unwrap().is_none(),
        "oldest finished forgotten"
    );
    assert!(
        store
            .load_run(&format!("r{:05}", RUNS_MAX + 4))
            .unwrap()
            .is_some()
    );
}

#[test]
fn run_ids_are_single_path_components() {
    for good in ["vet-20240501-120000-123", "verify_1.a"] {
        check_run_id(good).unwrap();
    }
    for bad in ["", ".hidden", "../x", "a/b", "a b", &"x".repeat(129)] {
        assert!(check_run_id(bad).is_err(), "{bad:?}");
    }
    let (_tmp, _dir, store) = store();
    let run = Run::new("../escape", "vet", &[], false, 1);
    assert!(matches!(
        store.save_run(&run),
        Err(StoreError::InvalidName { kind: "run", .. })
    ));
}

#[test]
fn a_corrupt_row_is_reported_not_guessed() {
    let (_tmp, _dir, store) = store();
    store
        .conn()
        .execute(
            "INSERT INTO runs (id, kind, state, stages, created_ms, updated_ms, run_json)
             VALUES ('x', 'vet', 'running', 0, 1, 1, '{\"bogus\":')",
            [],
        )
        .unwrap();
    let err = store.load_run("x").unwrap_err();
    assert!(err.to_string().contains("run x does not decode"), "{err}");
    store
        .conn()
        .execute("UPDATE runs SET state = 'weird' WHERE id = 'x'", [])
        .unwrap();
    let err = store.list_runs(10).unwrap_err();
    assert!(err.to_string().contains("run x: state \"weird\""), "{err}");
}

#[test]
fn the_run_lock_is_exclusive_and_names_the_holder() {
    let (_tmp, dir, _store) = store();
    let other = StateDir::open(dir.root()).unwrap();
    let held = dir.lock_run("vet-1").unwrap();
    assert!(held.path().starts_with(dir.runs_dir().join("vet-1")));
    match other.lock_run("vet-1").unwrap_err() {
        StoreError::RunBusy { id, pid } => {
            assert_eq!(id, "vet-1");
            assert_eq!(pid, Some(std::process::id()));
        }
        e => panic!("expected RunBusy, got {e:?}"),
    }
    // Another run, and the state directory itself, are independent.
    let _b = other.lock_run("vet-2").unwrap();
    let _state = other.lock().unwrap();
    drop(held);
    let _again = other.lock_run("vet-1").unwrap();
    assert!(dir.lock_run("../x").is_err());
}
