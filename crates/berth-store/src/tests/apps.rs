use super::{bitcoind, electrs, store};
use crate::schema::MIGRATIONS;
use crate::{AppRecord, Desired, StateDir, Store, StoreError};

fn record(app: berth_core::model::App, at_ms: i64) -> AppRecord {
    AppRecord {
        id: app.id.clone(),
        stack: "bitcoin".into(),
        stack_file: Some("/etc/berth/bitcoin.toml".into()),
        network: "berth-bitcoin".into(),
        app,
        desired: Desired::Running,
        installed_at_ms: at_ms,
        updated_at_ms: at_ms,
    }
}

#[test]
fn migrations_run_from_an_empty_database() {
    let (_tmp, dir) = super::state_dir();
    assert!(!dir.db_path().exists());
    let store = dir.store().unwrap();
    assert!(dir.db_path().exists());
    for table in [
        "apps",
        "ops",
        "steps",
        "events",
        "kv",
        "restart_trackers",
        "owed_starts",
        "gate_states",
        "node_trackers",
        "runs",
        "revisions",
    ] {
        let n: i64 = store
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "table {table}");
    }
    let version = MIGRATIONS.current_version(&store.conn()).unwrap();
    assert_eq!(
        version,
        rusqlite_migration::SchemaVersion::Inside(std::num::NonZeroUsize::new(5).unwrap())
    );
    let mode: String = store
        .conn()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = store
        .conn()
        .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    drop(store);
    // Reopening an up-to-date database is a no-op.
    dir.store().unwrap();
}

#[test]
fn a_database_from_a_newer_berth_is_refused() {
    let (_tmp, dir) = super::state_dir();
    drop(dir.store().unwrap());
    {
        let conn = rusqlite::Connection::open(dir.db_path()).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = dir.store().unwrap_err();
    assert!(matches!(err, StoreError::Migration { .. }), "{err:?}");
    assert!(err.to_string().contains("berth.db"), "{err}");
}

#[test]
fn app_crud_round_trip() {
    let (_tmp, _dir, store) = store();
    assert_eq!(store.get_app("bitcoind").unwrap(), None);
    assert!(store.list_apps().unwrap().is_empty());

    let btc = record(bitcoind(), 1_000);
    let mut ele = record(electrs(), 2_000);
    ele.stack_file = None;
    store.put_app(&ele).unwrap();
    store.put_app(&btc).unwrap();

    assert_eq!(store.get_app("bitcoind").unwrap().as_ref(), Some(&btc));
    assert_eq!(store.get_app("electrs").unwrap().as_ref(), Some(&ele));
    let ids: Vec<String> = store
        .list_apps()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["bitcoind", "electrs"]);

    // Replace: a reinstall with a new image.
    let mut updated = btc.clone();
    updated.app.image = "registry.local/bitcoin/bitcoind:28.0".into();
    updated.updated_at_ms = 3_000;
    store.put_app(&updated).unwrap();
    assert_eq!(store.get_app("bitcoind").unwrap(), Some(updated.clone()));
    assert_eq!(store.list_apps().unwrap().len(), 2);

    store
        .set_desired("bitcoind", Desired::Stopped, 4_000)
        .unwrap();
    let got = store.get_app("bitcoind").unwrap().unwrap();
    assert_eq!(got.desired, Desired::Stopped);
    assert_eq!(got.updated_at_ms, 4_000);
    assert_eq!(got.installed_at_ms, 1_000);

    let err = store
        .set_desired("lnd", Desired::Running, 5_000)
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "app lnd not found");

    assert!(store.delete_app("bitcoind").unwrap());
    assert!(!store.delete_app("bitcoind").unwrap());
    assert_eq!(store.get_app("bitcoind").unwrap(), None);
    assert_eq!(store.list_apps().unwrap(), vec![ele]);
}

#[test]
fn apps_survive_reopening_and_are_visible_to_a_second_handle() {
    let (_tmp, dir, store) = store();
    let other = dir.store().unwrap();
    let btc = record(bitcoind(), 1_000);
    store.put_app(&btc).unwrap();
    assert_eq!(other.get_app("bitcoind").unwrap(), Some(btc.clone()));
    drop(store);
    drop(other);
    let reopened = dir.store().unwrap();
    assert_eq!(reopened.get_app("bitcoind").unwrap(), Some(btc));
}

#[test]
fn corrupt_app_rows_are_errors_not_panics() {
    let (_tmp, _dir, store) = store();
    store.put_app(&record(bitcoind(), 1)).unwrap();
    store.put_app(&record(electrs(), 1)).unwrap();
    store
        .conn()
        .execute(
            "UPDATE apps SET app_json = '{\"id\": 42' WHERE id = 'bitcoind'",
            [],
        )
        .unwrap();
    let err = store.get_app("bitcoind").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("app bitcoind"), "{err}");
    assert!(matches!(store.list_apps(), Err(StoreError::Corrupt { .. })));
    // The other app is unaffected.
    assert!(store.get_app("electrs").unwrap().is_some());
}

#[test]
fn kv_round_trip_survives_reopen() {
    let (_tmp, dir, store) = store();
    assert_eq!(store.kv_get("gate.bitcoind.released").unwrap(), None);
    store.kv_set("gate.bitcoind.released", "true").unwrap();
    store.kv_set("gate.bitcoind.released", "false").unwrap();
    drop(store);
    let store = dir.store().unwrap();
    assert_eq!(
        store.kv_get("gate.bitcoind.released").unwrap().as_deref(),
        Some("false")
    );
    assert!(store.kv_delete("gate.bitcoind.released").unwrap());
    assert!(!store.kv_delete("gate.bitcoind.released").unwrap());
    assert!(store.kv_set("", "x").is_err());
}

#[test]
fn in_memory_store_has_the_schema() {
    let store = Store::open_in_memory().unwrap();
    store.put_app(&record(electrs(), 7)).unwrap();
    assert_eq!(store.list_apps().unwrap().len(), 1);
}

#[test]
fn store_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<StateDir>();
}

#[test]
fn a_manifest_changed_by_another_connection_is_decoded_again() {
    // The daemon's store keeps decoded manifests between reads; a write
    // through another connection (another process) must still be seen.
    let (_tmp, dir) = super::state_dir();
    let daemon = dir.store().unwrap();
    let other = dir.store().unwrap();
    daemon.put_app(&record(bitcoind(), 1)).unwrap();
    daemon.put_app(&record(electrs(), 1)).unwrap();
    assert_eq!(daemon.list_apps().unwrap()[0].app.image, bitcoind().image);

    let mut changed = bitcoind();
    changed.image = "localhost/bitcoind:27".into();
    other.put_app(&record(changed.clone(), 2)).unwrap();
    let apps = daemon.list_apps().unwrap();
    assert_eq!(apps[0].app, changed);
    assert_eq!(daemon.get_app("bitcoind").unwrap().unwrap().app, changed);
    assert_eq!(apps[1].app, electrs());
}

#[test]
fn a_corrupt_manifest_is_an_error_even_after_a_good_read() {
    let (_tmp, dir) = super::state_dir();
    let store = dir.store().unwrap();
    store.put_app(&record(bitcoind(), 1)).unwrap();
    store.list_apps().unwrap();
    store
        .conn()
        .execute("UPDATE apps SET app_json = '{' WHERE id = 'bitcoind'", [])
        .unwrap();
    let err = store.list_apps().unwrap_err();
    assert!(
        err.to_string().contains("stored manifest does not decode"),
        "{err}"
    );
}

#[test]
fn app_revisions_change_with_each_write_and_the_memo_forgets_removed_ones() {
    let (_tmp, dir) = super::state_dir();
    let store = dir.store().unwrap();
    assert!(store.app_revisions().unwrap().is_empty());
    store.put_app(&record(bitcoind(), 1)).unwrap();
    store.put_app(&record(electrs(), 1)).unwrap();
    let before = store.app_revisions().unwrap();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        ["bitcoind", "electrs"],
        "every installed app"
    );
    assert_eq!(before["bitcoind"], (Desired::Running, 1));
    store.set_desired("bitcoind", Desired::Stopped, 2).unwrap();
    store.put_app(&record(electrs(), 3)).unwrap();
    let after = store.app_revisions().unwrap();
    assert_eq!(after["bitcoind"], (Desired::Stopped, 2));
    assert_eq!(after["electrs"], (Desired::Running, 3));

    store.list_apps().unwrap();
    assert_eq!(store.decoded.lock().unwrap().len(), 2);
    assert!(store.delete_app("electrs").unwrap());
    assert_eq!(
        store.app_revisions().unwrap().keys().collect::<Vec<_>>(),
        ["bitcoind"]
    );
    store.list_apps().unwrap();
    let memo = store.decoded.lock().unwrap();
    assert_eq!(memo.keys().collect::<Vec<_>>(), ["bitcoind"]);
}
