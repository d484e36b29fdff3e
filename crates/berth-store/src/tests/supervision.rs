//! Restart trackers and owed starts survive reopening and go with the app.

use std::collections::BTreeMap;

use berth_core::supervise::{Quarantine, RestartTracker};

use super::{bitcoind, store};
use crate::{AppRecord, Desired};

fn tracker(attempts: u32, quarantined: bool) -> RestartTracker {
    RestartTracker {
        attempts,
        failures_ms: vec![1_000, 2_000],
        last_restart_ms: Some(2_000),
        next_allowed_ms: Some(12_000),
        quarantine: quarantined.then(|| Quarantine {
            since_ms: 3_000,
            reason: "crashed 10 times in 1h".into(),
            exit_code: Some(3),
            last_logs: vec!["boom".into()],
            spec_hash: "abc".into(),
        }),
        ..RestartTracker::default()
    }
}

#[test]
fn trackers_and_owed_starts_persist_and_go_with_the_app() {
    let (_tmp, dir, store) = store();
    let app = bitcoind();
    store
        .put_app(&AppRecord {
            id: app.id.clone(),
            stack: "demo".into(),
            stack_file: None,
            network: "demo".into(),
            app,
            desired: Desired::Running,
            installed_at_ms: 1,
            updated_at_ms: 1,
        })
        .unwrap();
    let mut map = BTreeMap::new();
    map.insert("bitcoind".to_string(), tracker(3, true));
    map.insert("lnd".to_string(), tracker(1, false));
    store.put_restart_trackers(&map, 10).unwrap();
    store
        .add_owed_start("bitcoind", "restart: unhealthy", 11)
        .unwrap();
    drop(store);

    let store = dir.store().unwrap();
    assert_eq!(store.restart_trackers().unwrap(), map);
    assert_eq!(
        store.restart_tracker("nope").unwrap(),
        RestartTracker::default()
    );
    assert_eq!(
        store.owed_starts().unwrap().into_iter().collect::<Vec<_>>(),
        vec!["bitcoind".to_string()]
    );
    // Replacing a tracker keeps one row.
    map.insert("bitcoind".to_string(), tracker(4, false));
    store.put_restart_trackers(&map, 12).unwrap();
    assert_eq!(store.restart_tracker("bitcoind").unwrap().attempts, 4);

    assert!(store.clear_owed_start("bitcoind").unwrap());
    assert!(!store.clear_owed_start("bitcoind").unwrap());
    store.add_owed_start("bitcoind", "again", 13).unwrap();

    // Uninstalling forgets the supervision state with the app.
    assert!(store.delete_app("bitcoind").unwrap());
    assert!(store.owed_starts().unwrap().is_empty());
    assert!(!store.restart_trackers().unwrap().contains_key("bitcoind"));
    // The user acting resets the rest.
    assert!(store.reset_supervision("lnd").unwrap());
    assert!(store.restart_trackers().unwrap().is_empty());
}

#[test]
fn an_undecodable_tracker_starts_afresh() {
    let (_tmp, _dir, store) = store();
    store
        .conn()
        .execute(
            "INSERT INTO restart_trackers (app, tracker_json, updated_at_ms) VALUES ('x', '{\"bogus\":', 1)",
            [],
        )
        .unwrap();
    assert_eq!(
        store.restart_tracker("x").unwrap(),
        RestartTracker::default()
    );
}
