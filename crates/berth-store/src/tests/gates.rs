//! Gate states and node trackers survive reopening (a daemon restart) and
//! go with the app.

use std::collections::BTreeMap;

use berth_core::gate::{ChainState, GateState, NodeTracker};

use super::{bitcoind, store};
use crate::{AppRecord, Desired};

fn tracker() -> NodeTracker {
    NodeTracker {
        ever_reachable: true,
        unreachable_since_ms: Some(5_000),
        reachable_since_ms: None,
        down: true,
        down_since_ms: Some(5_000),
        last: Some(ChainState::unreachable("connection refused")),
        last_ms: Some(9_000),
    }
}

#[test]
fn gate_states_and_node_trackers_persist_and_go_with_the_app() {
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
    let states = BTreeMap::from([
        (
            "lnd".to_string(),
            GateState {
                latched: true,
                held_note: None,
                rejected: true,
                rejected_since_ms: Some(7_000),
            },
        ),
        (
            "electrs".to_string(),
            GateState {
                held_note: Some("held: waiting for bitcoind".into()),
                ..GateState::default()
            },
        ),
    ]);
    store.put_gate_states(&states, 10).unwrap();
    let trackers = BTreeMap::from([("bitcoind".to_string(), tracker())]);
    store.put_node_trackers(&trackers, 10).unwrap();
    drop(store);

    // A restarted daemon reads back exactly what was written.
    let store = dir.store().unwrap();
    assert_eq!(store.gate_states().unwrap(), states);
    assert_eq!(store.node_trackers().unwrap(), trackers);
    assert_eq!(store.gate_state("nope").unwrap(), GateState::default());

    // Replacing is an upsert.
    let mut again = states.clone();
    again.get_mut("electrs").unwrap().latched = true;
    store
        .put_gate_states(
            &BTreeMap::from([("electrs".to_string(), again["electrs"].clone())]),
            11,
        )
        .unwrap();
    assert_eq!(store.gate_states().unwrap(), again);

    // `gate reset` forgets the state; uninstalling a node forgets its tracker.
    assert!(store.delete_gate_state("lnd").unwrap());
    assert!(!store.delete_gate_state("lnd").unwrap());
    assert!(store.delete_app("bitcoind").unwrap());
    assert!(store.node_trackers().unwrap().is_empty());
    store.put_node_trackers(&trackers, 12).unwrap();
    assert_eq!(
        store
            .delete_node_trackers(&["bitcoind".into(), "gone".into()])
            .unwrap(),
        1
    );
}

#[test]
fn a_record_that_does_not_decode_comes_back_as_the_default() {
    let (_tmp, _dir, store) = store();
    store
        .conn()
        .execute(
            "INSERT INTO gate_states (app, state_json, updated_at_ms) VALUES ('lnd', '{\"latched\": 7}', 1)",
            [],
        )
        .unwrap();
    assert_eq!(store.gate_state("lnd").unwrap(), GateState::default());
}
