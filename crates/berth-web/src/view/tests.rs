use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::html;

fn app(id: &str, desired: &str, observed: Value) -> Value {
    json!({
        "id": id, "stack": "demo", "companion_of": null, "image": "localhost/x:1",
        "container": format!("demo-{id}"), "desired": desired, "observed": observed,
        "health": null, "health_detail": null, "exit_code": null, "started_at": null,
        "ports": [{"host_ip": "127.0.0.1", "host_port": 18081, "container_port": 8080, "protocol": "tcp"}],
        "web_ui": null, "restarts": 0, "quarantine": null, "degraded": false, "summary": "",
    })
}

fn daemon() -> Value {
    json!({"engine": {"kind": "podman", "version": "4.3.1"}, "ticks": {"ticks": 3, "engine_error": null}, "in_flight": {}})
}

fn build(apps: Vec<Value>, ops: Vec<OperationView>, disks: Vec<DiskView>) -> StateView {
    let status = json!({ "apps": apps, "degraded": 0 });
    let d = daemon();
    build_state(&StateInput {
        now_ms: 1_000_000,
        status: &status,
        daemon: &d,
        operations: ops,
        disks,
        samples: &BTreeMap::new(),
    })
    .0
}

fn badge(v: &StateView, id: &str) -> StateBadge {
    v.apps.iter().find(|a| a.id == id).unwrap().badge.clone()
}

#[test]
fn every_observed_state_gets_its_badge() {
    let mut a = app(
        "crash",
        "running",
        json!({"state": "crashed", "exit_code": 3}),
    );
    a["exit_code"] = json!(3);
    let v = build(
        vec![
            app("run", "running", json!({"state": "running"})),
            app("boot", "running", json!({"state": "starting"})),
            app("sick", "running", json!({"state": "unhealthy"})),
            app("stop", "stopped", json!({"state": "stopped"})),
            a,
            app("oom", "running", json!({"state": "killed-oom"})),
            app("kill", "running", json!({"state": "killed"})),
            app("gone", "running", json!({"state": "missing"})),
            // Stopped by the user but the engine says 137: grey all the same.
            app("userkill", "stopped", json!({"state": "killed"})),
        ],
        vec![],
        vec![],
    );
    let got: Vec<(String, Tone, String)> = v
        .apps
        .iter()
        .map(|a| (a.badge.kind.clone(), a.badge.tone, a.badge.label.clone()))
        .collect();
    let want = [
        ("running", Tone::Ok, "running"),
        ("starting", Tone::Info, "starting"),
        ("unhealthy", Tone::Warn, "unhealthy"),
        ("stopped", Tone::Idle, "stopped"),
        ("crashed", Tone::Bad, "crashed (exit 3)"),
        ("killed-oom", Tone::Bad, "killed (OOM)"),
        ("killed", Tone::Bad, "killed"),
        ("missing", Tone::Bad, "missing"),
        ("stopped", Tone::Idle, "stopped"),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(k, t, l)| (k.to_string(), *t, l.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        badge(&v, "stop").detail.as_deref(),
        Some("stopped by the user")
    );
    let attention = v.badges.iter().find(|b| b.kind == "attention").unwrap();
    assert_eq!(attention.label, "needs attention: crash, oom, kill, gone");
}

#[test]
fn held_rejected_quarantined_and_operations() {
    let mut held = app("lnd", "running", json!({"state": "stopped"}));
    held["gate"] = json!({"status": "held", "reason": "held: waiting for bitcoind (syncing 43%, 812345/850000)", "badges": []});
    let mut rejected = app("proxy", "running", json!({"state": "stopped"}));
    rejected["gate"] = json!({"status": "rejected", "reason": "rejected: monerod down since 12:03:10", "badges": []});
    let mut q = app(
        "loop",
        "running",
        json!({"state": "crashed", "exit_code": 1}),
    );
    q["quarantine"] = json!({"since_ms": 5, "reason": "10 failures in 1h", "exit_code": 1, "last_logs": ["boom"], "spec_hash": "x"});
    let op = OperationView {
        kind: "install".into(),
        app: "electrs".into(),
        started_at_ms: 1,
        steps: vec!["pull".into(), "network".into(), "container".into()],
        steps_done: 2,
    };
    let v = build(vec![held, rejected, q], vec![op], vec![]);
    let h = badge(&v, "lnd");
    assert_eq!((h.kind.as_str(), h.tone), ("held", Tone::Warn));
    assert_eq!(
        h.detail.as_deref(),
        Some("waiting for bitcoind (syncing 43%, 812345/850000)")
    );
    assert_eq!(h.percent, Some(43.0));
    let r = badge(&v, "proxy");
    assert_eq!(r.detail.as_deref(), Some("monerod down since 12:03:10"));
    assert_eq!(badge(&v, "loop").kind, "quarantined");
    let i = badge(&v, "electrs");
    assert_eq!(
        (i.kind.as_str(), i.detail.as_deref()),
        ("installing", Some("step 3: container"))
    );
    let kinds: Vec<&str> = v.badges.iter().map(|b| b.kind.as_str()).collect();
    assert_eq!(kinds, ["workers-rejected", "apps-held", "attention"]);

    // The card shows the reason, the progress bar and the last log lines.
    let lnd = html::card(v.apps.iter().find(|a| a.id == "lnd").unwrap(), None);
    assert!(lnd.contains("waiting for bitcoind (syncing 43%"), "{lnd}");
    assert!(lnd.contains("<progress max=\"100\" value=\"43\""), "{lnd}");
    let lp = html::card(v.apps.iter().find(|a| a.id == "loop").unwrap(), None);
    assert!(
        lp.contains("boom") && lp.contains("crash-loop quarantine"),
        "{lp}"
    );
}

#[test]
fn disk_and_engine_badges() {
    let disk = |p: f64| DiskView {
        role: "engine".into(),
        path: "/var/lib/containers".into(),
        used_percent: p,
        available_bytes: 1,
    };
    let v = build(vec![], vec![], vec![disk(84.9)]);
    assert!(v.badges.is_empty());
    let v = build(vec![], vec![], vec![disk(85.0)]);
    assert_eq!(v.badges[0].tone, Tone::Warn);
    let v = build(vec![], vec![], vec![disk(96.2)]);
    assert_eq!(v.badges[0].tone, Tone::Bad);
    assert_eq!(
        v.badges[0].label,
        "disk 96% full (engine data, /var/lib/containers)"
    );

    let status = json!({"apps": []});
    let d = json!({"ticks": {"engine_error": "connection refused"}});
    let (v, _) = build_state(&StateInput {
        now_ms: 0,
        status: &status,
        daemon: &d,
        operations: vec![],
        disks: vec![],
        samples: &BTreeMap::new(),
    });
    assert!(!v.engine.reachable);
    assert_eq!(v.badges[0].kind, "engine-unreachable");
}

#[test]
fn sync_rate_and_eta_follow_the_samples() {
    let s = |at_ms, height| NodeSample { at_ms, height };
    // First sample: nothing to compare with.
    assert_eq!(
        sync_estimate(None, s(0, 100), Some(1000)),
        (None, None, Some(s(0, 100)))
    );
    // Too soon to measure: keep the old sample.
    assert_eq!(
        sync_estimate(Some(&s(0, 100)), s(1000, 110), Some(1000)),
        (None, None, Some(s(0, 100)))
    );
    // 100 blocks in 10 s: 10/s, 800 left → 80 s.
    assert_eq!(
        sync_estimate(Some(&s(0, 100)), s(10_000, 200), Some(1000)),
        (Some(10.0), Some(80), Some(s(0, 100)))
    );
    // A height that went back restarts the measurement.
    assert_eq!(
        sync_estimate(Some(&s(0, 500)), s(10_000, 200), Some(1000)),
        (None, None, Some(s(10_000, 200)))
    );
    // An old sample is replaced after use.
    let (rate, _, keep) = sync_estimate(Some(&s(0, 0)), s(200_000, 2000), Some(4000));
    assert_eq!((rate, keep), (Some(10.0), Some(s(200_000, 2000))));
}

#[test]
fn nodes_from_chain_state_and_changes() {
    let mut node = app("bitcoind", "running", json!({"state": "running"}));
    node["chain"] = json!({"reachable": true, "synced": false, "syncing": true, "current": 425, "target": 1000, "percent": 42.5, "detail": "", "raw": null});
    let v1 = build(vec![node.clone()], vec![], vec![]);
    assert_eq!(v1.nodes.len(), 1);
    assert_eq!(v1.nodes[0].percent, Some(42.5));
    node["chain"]["current"] = json!(500);
    let v2 = build(vec![node], vec![], vec![]);
    // The card does not show the height: only the sync panel changes.
    assert_eq!(changes(&v1, &v2), vec![Change::Nodes]);
    assert!(changes(&v2, &v2).is_empty());
    let empty = build(vec![], vec![], vec![]);
    let c = changes(&v2, &empty);
    assert_eq!(c[0], Change::Apps);
    assert!(c.contains(&Change::AppRemoved("bitcoind".into())));
}

#[test]
fn percent_in_finds_the_first_percentage() {
    assert_eq!(
        percent_in("waiting for bitcoind (syncing 43%, 1/2)"),
        Some(43.0)
    );
    assert_eq!(percent_in("syncing 99.5% done"), Some(99.5));
    assert_eq!(percent_in("no number"), None);
}

#[test]
fn html_escapes_everything_from_outside() {
    let mut a = app("x", "running", json!({"state": "unhealthy"}));
    a["health_detail"] = json!("<script>alert(1)</script>");
    let v = build(vec![a], vec![], vec![]);
    let card = html::card(&v.apps[0], Some("c5rf"));
    assert!(!card.contains("<script>"), "{card}");
    assert!(
        card.contains("&#60;script&#62;") || card.contains("&lt;script&gt;"),
        "{card}"
    );
    assert!(card.contains("name=\"_csrf\" value=\"c5rf\""));
    // Fragments for the live stream carry no per-session token.
    assert!(!html::card(&v.apps[0], None).contains("_csrf"));
    let row = html::event(&crate::EventRow::new(
        1,
        0,
        Some("x".into()),
        "note".into(),
        "<img src=x onerror=alert(1)>".into(),
    ));
    assert!(!row.contains("<img"), "{row}");
}

#[test]
fn the_dashboard_page_has_the_live_wiring() {
    let v = build(
        vec![app("lnd", "running", json!({"state": "running"}))],
        vec![],
        vec![],
    );
    let page = html::dashboard_page(&v, &[], "tok3n", 0);
    for needle in [
        "sse-connect=\"/ui/stream\"",
        "hx-ext=\"sse\"",
        "sse-swap=\"app-lnd\"",
        "sse-swap=\"badges\"",
        "sse-swap=\"sync\"",
        "sse-swap=\"event\"",
        "\"X-Berth-CSRF\": \"tok3n\"",
        "/static/htmx.min.js?v=",
        "http-equiv=\"refresh\"",
        "href=\"/runs\" data-role=\"nav-runs\"",
        "href=\"/\" data-role=\"nav-apps\" aria-current=\"page\"",
    ] {
        assert!(page.contains(needle), "missing {needle}:\n{page}");
    }
    assert!(!page.contains("held-count"), "no held run, no count");
    let held = html::dashboard_page(&v, &[], "tok3n", 2);
    assert!(
        held.contains("data-role=\"held-count\">2 held</span>"),
        "{held}"
    );
}

#[test]
fn nodes_in_the_gates_shape_and_the_node_down_badge() {
    let mut node = app("monerod", "running", json!({"state": "running"}));
    node["chain"] = json!({"kind": "monerod", "state": "down", "summary": "down since 12:03:10 (connection refused)",
        "current": null, "target": null, "percent": null, "down": true, "down_since_ms": 5, "probed_at_ms": 6});
    let mut btc = app("bitcoind", "running", json!({"state": "running"}));
    btc["chain"] = json!({"kind": "bitcoind", "state": "syncing", "summary": "syncing 43%, 430/1000",
        "current": 430, "target": 1000, "percent": 43.0, "down": false, "down_since_ms": null, "probed_at_ms": 6});
    let v = build(vec![node, btc], vec![], vec![]);
    let m = &v.nodes[0];
    assert_eq!(
        (m.state.as_str(), m.down, m.reachable),
        ("down", true, false)
    );
    assert_eq!(m.detail, "down since 12:03:10 (connection refused)");
    let b = &v.nodes[1];
    assert_eq!(
        (b.syncing, b.reachable, b.percent),
        (true, true, Some(43.0))
    );
    assert_eq!(v.badges[0].label, "node down: monerod");
    let panel = html::sync(&v.nodes);
    assert!(
        panel.contains("430 / 1000") && panel.contains("43.0%"),
        "{panel}"
    );
}
