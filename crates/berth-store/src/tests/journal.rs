use super::store;
use crate::{OPS_MAX, OpOutcome, Step, StoreError};

#[test]
fn journal_lifecycle() {
    let (_tmp, _dir, store) = store();
    let op = store.begin_op("install", "bitcoind", 100).unwrap();
    let pull = store
        .record_step(op, "pull", "registry.local/bitcoin/bitcoind:27.1", 101)
        .unwrap();
    store.complete_step(pull, false, 102).unwrap();
    let volume = store
        .record_step(op, "volume", "bitcoin-bitcoind-data", 103)
        .unwrap();
    store.complete_step(volume, true, 104).unwrap();
    let container = store
        .record_step(op, "container", "bitcoin-bitcoind", 105)
        .unwrap();

    let running = store.op(op).unwrap().unwrap();
    assert_eq!(running.state, "running");
    assert!(!running.is_finished());
    let states: Vec<(i64, &str, &str, bool)> = running
        .steps
        .iter()
        .map(|s| (s.seq, s.kind.as_str(), s.state.as_str(), s.created))
        .collect();
    assert_eq!(
        states,
        [
            (1, "pull", "done", false),
            (2, "volume", "done", true),
            (3, "container", "intent", false),
        ]
    );
    assert_eq!(store.unfinished_ops().unwrap(), vec![running]);

    // The container never became healthy: roll back what we created.
    store.mark_step_undone(container, 106).unwrap();
    store.mark_step_undone(volume, 107).unwrap();
    store
        .finish_op(
            op,
            OpOutcome::RolledBack,
            Some("bitcoind did not become healthy"),
            108,
        )
        .unwrap();

    let done = store.op(op).unwrap().unwrap();
    assert_eq!(done.state, "rolled-back");
    assert_eq!(
        done.error.as_deref(),
        Some("bitcoind did not become healthy")
    );
    assert_eq!(done.finished_at_ms, Some(108));
    assert_eq!(done.started_at_ms, 100);
    assert_eq!(
        done.steps
            .iter()
            .map(|s| s.state.as_str())
            .collect::<Vec<_>>(),
        ["done", "undone", "undone"]
    );
    assert!(store.unfinished_ops().unwrap().is_empty());

    // A finished operation is history: no more steps, no second ending.
    let err = store
        .record_step(op, "start", "bitcoin-bitcoind", 109)
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidState { .. }), "{err:?}");
    assert!(err.to_string().contains("install bitcoind"), "{err}");
    assert!(matches!(
        store.finish_op(op, OpOutcome::Succeeded, None, 110),
        Err(StoreError::InvalidState { .. })
    ));
    // An undone step cannot be completed.
    assert!(matches!(
        store.complete_step(volume, true, 111),
        Err(StoreError::InvalidState { .. })
    ));
}

#[test]
fn unknown_ids_are_not_found() {
    let (_tmp, _dir, store) = store();
    assert_eq!(store.op(42).unwrap(), None);
    for err in [
        store.record_step(42, "pull", "x", 1).unwrap_err(),
        store.finish_op(42, OpOutcome::Failed, None, 1).unwrap_err(),
        store.complete_step(42, true, 1).unwrap_err(),
        store.mark_step_undone(42, 1).unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    }
    assert_eq!(
        store
            .finish_op(42, OpOutcome::Failed, None, 1)
            .unwrap_err()
            .to_string(),
        "operation 42 not found"
    );
}

#[test]
fn unfinished_ops_survive_a_crash() {
    let (_tmp, dir, store) = store();
    let done = store.begin_op("install", "bitcoind", 1).unwrap();
    store
        .finish_op(done, OpOutcome::Succeeded, None, 2)
        .unwrap();

    let op = store.begin_op("install", "electrs", 10).unwrap();
    let net = store
        .record_step(op, "network", "berth-bitcoin", 11)
        .unwrap();
    store.complete_step(net, false, 12).unwrap();
    let vol = store
        .record_step(op, "volume", "bitcoin-electrs-db", 13)
        .unwrap();
    store.complete_step(vol, true, 14).unwrap();
    store
        .record_step(op, "container", "bitcoin-electrs", 15)
        .unwrap();
    // berth dies here: the store is dropped without finishing the operation.
    drop(store);

    let store = dir.store().unwrap();
    let unfinished = store.unfinished_ops().unwrap();
    assert_eq!(unfinished.len(), 1);
    let found = &unfinished[0];
    assert_eq!(
        (found.id, found.kind.as_str(), found.app.as_str()),
        (op, "install", "electrs")
    );
    assert_eq!(found.state, "running");
    assert_eq!(found.finished_at_ms, None);
    let steps: Vec<Step> = found.steps.clone();
    assert_eq!(steps.len(), 3);
    assert_eq!(
        steps
            .iter()
            .map(|s| (
                s.seq,
                s.kind.as_str(),
                s.resource.as_str(),
                s.state.as_str(),
                s.created
            ))
            .collect::<Vec<_>>(),
        [
            (1, "network", "berth-bitcoin", "done", false),
            (2, "volume", "bitcoin-electrs-db", "done", true),
            (3, "container", "bitcoin-electrs", "intent", false),
        ]
    );

    // The new berth takes over: the old operation is marked resumed and a
    // new one continues from the journal.
    store.finish_op(op, OpOutcome::Resumed, None, 20).unwrap();
    let next = store.begin_op("install", "electrs", 21).unwrap();
    assert!(next > op);
    assert_eq!(
        store
            .unfinished_ops()
            .unwrap()
            .iter()
            .map(|o| o.id)
            .collect::<Vec<_>>(),
        [next]
    );
}

#[test]
fn recent_ops_are_newest_first_and_filtered() {
    let (_tmp, _dir, store) = store();
    let a = store.begin_op("install", "bitcoind", 1).unwrap();
    let b = store.begin_op("install", "electrs", 2).unwrap();
    let c = store.begin_op("stop", "bitcoind", 3).unwrap();
    let ids = |ops: Vec<crate::Operation>| ops.into_iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(ids(store.recent_ops(None, 10).unwrap()), [c, b, a]);
    assert_eq!(ids(store.recent_ops(Some("bitcoind"), 10).unwrap()), [c, a]);
    assert_eq!(ids(store.recent_ops(Some("bitcoind"), 1).unwrap()), [c]);
    assert!(store.recent_ops(Some("lnd"), 10).unwrap().is_empty());
    assert!(store.recent_ops(None, 0).unwrap().is_empty());
}

#[test]
fn finished_ops_are_pruned_but_unfinished_ones_kept() {
    let (_tmp, _dir, store) = store();
    let stuck = store.begin_op("install", "monerod", 0).unwrap();
    store.record_step(stuck, "pull", "monerod:0.18", 0).unwrap();
    let first = store.begin_op("start", "p2pool", 1).unwrap();
    store
        .finish_op(first, OpOutcome::Succeeded, None, 1)
        .unwrap();
    {
        // Finished history inserted in one transaction for speed; the
        // pruning under test happens in the begin_op calls below.
        let mut conn = store.conn();
        let tx = conn.transaction().unwrap();
        for i in 0..OPS_MAX {
            tx.execute(
                "INSERT INTO ops (kind, app, state, started_at_ms, finished_at_ms)
                 VALUES ('start', 'p2pool', 'succeeded', ?1, ?1)",
                [i],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO steps (op_id, seq, kind, resource, state, created, recorded_at_ms, updated_at_ms)
                 VALUES (last_insert_rowid(), 1, 'start', 'monero-p2pool', 'done', 0, ?1, ?1)",
                [i],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    for i in 0..5 {
        let op = store.begin_op("start", "p2pool", i).unwrap();
        let step = store.record_step(op, "start", "monero-p2pool", i).unwrap();
        store.complete_step(step, false, i).unwrap();
        store.finish_op(op, OpOutcome::Succeeded, None, i).unwrap();
    }
    let total: i64 = store
        .conn()
        .query_row("SELECT COUNT(*) FROM ops", [], |r| r.get(0))
        .unwrap();
    assert!(total <= OPS_MAX + 1, "{total} operations kept");
    assert_eq!(store.op(first).unwrap(), None);
    // Steps of pruned operations went with them.
    let orphans: i64 = store
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM steps WHERE op_id NOT IN (SELECT id FROM ops)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    let unfinished = store.unfinished_ops().unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].id, stuck);
    assert_eq!(unfinished[0].steps.len(), 1);
}

#[test]
fn long_errors_are_cut() {
    let (_tmp, _dir, store) = store();
    let op = store.begin_op("install", "lnd", 1).unwrap();
    let log = "é".repeat(crate::OP_ERROR_MAX_BYTES);
    store
        .finish_op(op, OpOutcome::Failed, Some(&log), 2)
        .unwrap();
    let error = store.op(op).unwrap().unwrap().error.unwrap();
    assert!(error.len() <= crate::OP_ERROR_MAX_BYTES);
    assert!(log.starts_with(&error));
}

#[test]
fn corrupt_journal_rows_are_errors_not_panics() {
    let (_tmp, _dir, store) = store();
    let op = store.begin_op("install", "lnd", 1).unwrap();
    // Bypass the CHECK constraints the way a hand edit or a bug elsewhere might.
    store
        .conn()
        .execute_batch("PRAGMA ignore_check_constraints = ON")
        .unwrap();
    store
        .conn()
        .execute("UPDATE ops SET state = 'exploded' WHERE id = ?1", [op])
        .unwrap();
    let err = store.op(op).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("install lnd"), "{err}");
    assert!(matches!(
        store.unfinished_ops(),
        Err(StoreError::Corrupt { .. })
    ));
}
