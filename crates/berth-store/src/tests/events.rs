use super::store;
use crate::{EVENT_MESSAGE_MAX_BYTES, EVENTS_MAX, NewEvent};

fn event(at_ms: i64, app: Option<&str>, kind: &str, message: &str) -> NewEvent {
    NewEvent {
        at_ms,
        app: app.map(str::to_owned),
        kind: kind.to_owned(),
        message: message.to_owned(),
    }
}

#[test]
fn events_are_filtered_and_paged_in_id_order() {
    let (_tmp, _dir, store) = store();
    assert_eq!(store.max_event_id().unwrap(), 0);
    assert!(store.events(None, None, 10).unwrap().is_empty());

    let e1 = store
        .add_event(&event(1, Some("bitcoind"), "started", "bitcoind started"))
        .unwrap();
    let e2 = store
        .add_event(&event(
            2,
            Some("electrs"),
            "held",
            "waiting for bitcoind: syncing 43%",
        ))
        .unwrap();
    let e3 = store
        .add_event(&event(3, None, "daemon", "berth started"))
        .unwrap();
    let e4 = store
        .add_event(&event(
            4,
            Some("bitcoind"),
            "healthy",
            "bitcoind is healthy",
        ))
        .unwrap();
    assert!(e1 < e2 && e2 < e3 && e3 < e4);
    assert_eq!(store.max_event_id().unwrap(), e4);

    let ids = |v: Vec<crate::EventRecord>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.events(None, None, 100).unwrap()),
        [e1, e2, e3, e4]
    );
    assert_eq!(ids(store.events(None, Some(e2), 100).unwrap()), [e3, e4]);
    assert_eq!(ids(store.events(None, Some(e1), 2).unwrap()), [e2, e3]);
    assert_eq!(
        ids(store.events(Some("bitcoind"), None, 100).unwrap()),
        [e1, e4]
    );
    assert_eq!(
        ids(store.events(Some("bitcoind"), Some(e1), 100).unwrap()),
        [e4]
    );
    assert_eq!(ids(store.tail_events(None, 2).unwrap()), [e3, e4]);
    assert_eq!(ids(store.tail_events(Some("electrs"), 5).unwrap()), [e2]);

    let got = &store.events(Some("electrs"), None, 1).unwrap()[0];
    assert_eq!(got.at_ms, 2);
    assert_eq!(got.app.as_deref(), Some("electrs"));
    assert_eq!(got.kind, "held");
    assert_eq!(got.message, "waiting for bitcoind: syncing 43%");
}

#[test]
fn events_are_pruned_to_the_bound_and_ids_never_reused() {
    let (_tmp, _dir, store) = store();
    let extra = 25;
    let mut last = 0;
    {
        // One transaction for speed; add_event itself is what is tested below.
        let mut conn = store.conn();
        let tx = conn.transaction().unwrap();
        for i in 0..EVENTS_MAX - 1 {
            tx.execute(
                "INSERT INTO events (at_ms, app, kind, message) VALUES (?1, 'p2pool', 'tick', 'x')",
                [i],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    for i in 0..extra + 1 {
        last = store
            .add_event(&event(i, Some("p2pool"), "tick", "share found"))
            .unwrap();
    }
    let count: i64 = store
        .conn()
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, EVENTS_MAX);
    assert_eq!(store.max_event_id().unwrap(), last);
    assert_eq!(last, EVENTS_MAX + extra);
    let oldest = store.events(None, None, 1).unwrap();
    assert_eq!(oldest[0].id, extra + 1);
    // Reads are capped too.
    assert_eq!(
        store.events(None, None, usize::MAX).unwrap().len() as i64,
        EVENTS_MAX
    );
}

#[test]
fn long_messages_are_cut_on_a_char_boundary() {
    let (_tmp, _dir, store) = store();
    let message = "ü".repeat(EVENT_MESSAGE_MAX_BYTES);
    store.add_event(&event(1, None, "log", &message)).unwrap();
    let got = store.events(None, None, 1).unwrap().remove(0).message;
    assert!(got.len() <= EVENT_MESSAGE_MAX_BYTES);
    assert!(message.starts_with(&got));
}
