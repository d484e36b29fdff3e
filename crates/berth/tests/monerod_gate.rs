//! Tier 3: the sync gate against the *real* monerod (Debian's `monero`
//! package, 0.18, in `localhost/berth-monerod:latest`, built by
//! `scripts/build-monerod-image.sh`) on real engines (BERTH_TEST_ENGINES,
//! default both), with the real `berth` binary and `berth daemon`.
//!
//! The node is `/bin/monerod-regtest-pair` (images/monerod/regtest-pair.sh):
//! a regtest seed and the probed node on the container's loopback, the
//! node allowed no outgoing peer, so it answers `synchronized: false`.
//! The test raises that limit through the node's own RPC (`/out_peers`);
//! the node dials the seed and reports `synchronized: true`. The scenario:
//! the dependent is held, with the reason, while monerod is not synced,
//! and released (started, latched) once it is.
//!
//! Every wait polls a real signal with a timeout; the one fixed wait is the
//! window proving the dependent stays held while monerod is not synced.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const MONEROD_IMAGE: &str = "localhost/berth-monerod:latest";
/// The node's RPC port in the container (regtest-pair.sh).
const NODE_RPC_PORT: u16 = 18081;
const DAEMON_ENV: &[(&str, &str)] = &[
    ("BERTH_TICK", "1s"),
    ("BERTH_BACKOFF_INITIAL", "1s"),
    ("BERTH_BACKOFF_MAX", "4s"),
    ("BERTH_EVENT_DEBOUNCE", "100ms"),
];
/// Generous bound on any single wait (monerod answers about 2 s after its
/// container starts and syncs about 1 s after it may dial).
const WAIT: Duration = Duration::from_secs(60);

fn stack() -> String {
    let mut s = format!(
        "[apps.xmr]\nimage = \"{MONEROD_IMAGE}\"\nentrypoint = [\"/bin/monerod-regtest-pair\"]\nvolumes = {{ data = \"/data\" }}\nstop_grace = \"20s\"\n\n"
    );
    // The regtest RPC can stall a few seconds while it adds blocks: a
    // down_after longer than that keeps a stall from counting as an outage.
    s += &format!(
        "[apps.xmr.probe]\nkind = \"monerod\"\nport = {NODE_RPC_PORT}\ninterval = \"1s\"\ntimeout = \"2s\"\ndown_after = \"30s\"\nrecovery_after = \"3s\"\n\n"
    );
    s += &sleeper("pool", "depends_on = { xmr = \"started\" }");
    s += "[apps.pool.gate]\nwait_for = [\"xmr\"]\n\n";
    s
}

fn gates(d: &Daemon) -> Value {
    d.rpc("gate.status", json!({}))
}

/// The container's address on its stack network (root reaches it).
fn ip(env: &Env, container: &str) -> String {
    let out = env.engine_cmd(&[
        "container",
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        container,
    ]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("{container} has no address: {}", text(&out)))
        .to_string()
}

/// `POST path body` to monerod's RPC at `addr`, retried until it answers
/// 200 with JSON (the RPC may still be starting); the JSON answer.
fn monerod_post(addr: &str, path: &str, body: &Value) -> Value {
    let body = body.to_string();
    let end = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < end {
        match std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)) {
            Ok(mut s) => {
                let req = format!(
                    "POST {path} HTTP/1.0\r\nHost: monerod\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = s.write_all(req.as_bytes());
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200")
                    && let Some((_, json)) = answer.split_once("\r\n\r\n")
                    && let Ok(v) = serde_json::from_str::<Value>(json)
                {
                    return v;
                }
                last = answer;
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("monerod at {addr}: POST {path} {body} never answered: {last}");
}

fn events(env: &Env, app: &str) -> Vec<(String, String)> {
    let out = env.berth(&["events", app, "--limit", "1000", "--json"]);
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn real_monerod_holds_its_dependent_until_synced_then_releases_it() {
    for engine in engines() {
        let has_image = std::process::Command::new(&engine)
            .args(["image", "inspect", MONEROD_IMAGE])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            has_image,
            "{engine} lacks {MONEROD_IMAGE}: run `make setup images` (scripts/build-monerod-image.sh)"
        );
        let t_engine = Instant::now();
        let env = Env::new(&engine, "xmrgate");
        env.write_stack(&stack());
        let xmr = env.container("xmr");
        let pool = env.container("pool");

        // Without a daemon, `up` probes xmr once: a monerod that has just
        // started (not answering yet, or answering not synced) holds the
        // pool: created, not started, with the reason.
        let out = env.ok(&["up"]);
        let say = text(&out);
        assert!(say.contains("held: waiting for xmr ("), "{engine}: {say}");
        assert!(env.running(&xmr), "{engine}: xmr runs");
        assert!(
            env.exists(&pool) && !env.running(&pool),
            "{engine}: pool created, not started"
        );

        let d = Daemon::start(&env, DAEMON_ENV);

        // The real monerod answers: reachable, not synchronized, no peer.
        let t0 = Instant::now();
        wait_for("xmr probed not synced", WAIT, || {
            gates(&d)["nodes"]["xmr"]["state"] == "not-synced"
        });
        eprintln!(
            "{engine}: real monerod answered not synced {:?} after the daemon started",
            t0.elapsed()
        );
        let g = gates(&d);
        assert_eq!(
            g["nodes"]["xmr"]["summary"], "not synced, height 1",
            "{engine}: {g}"
        );
        assert_eq!(g["apps"]["pool"]["status"], "held", "{engine}: {g}");
        assert_eq!(
            g["apps"]["pool"]["reason"], "held: waiting for xmr (not synced, height 1)",
            "{engine}: {g}"
        );

        // It stays held: a monerod without a peer never syncs by itself.
        let end = Instant::now() + Duration::from_secs(4);
        while Instant::now() < end {
            assert!(
                !env.running(&pool),
                "{engine}: pool started while xmr is not synced"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let (code, status) = env.status_json();
        assert_eq!(code, 0, "{engine}: a hold is not degraded: {status}");
        let held = status["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == "pool")
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(held["gate"]["status"], "held", "{engine}: {held}");

        // Let the node dial its seed: it syncs, and the pool is released.
        let addr = format!("{}:{NODE_RPC_PORT}", ip(&env, &xmr));
        let asked = Instant::now();
        let v = monerod_post(&addr, "/out_peers", &json!({"out_peers": 1}));
        assert_eq!(v["status"], "OK", "{engine}: {v}");
        wait_for("xmr probed synced", WAIT, || {
            gates(&d)["nodes"]["xmr"]["state"] == "synced"
        });
        let synced_after = asked.elapsed();
        wait_for("pool released once xmr is synced", WAIT, || {
            env.running(&pool)
        });
        eprintln!(
            "{engine}: allowed a peer, monerod was probed synced after {synced_after:?}, pool ran after {:?}",
            asked.elapsed()
        );
        wait_for("pool latched", WAIT, || {
            gates(&d)["apps"]["pool"]["latched"] == true
        });
        let g = gates(&d);
        assert_eq!(g["nodes"]["xmr"]["state"], "synced", "{engine}: {g}");
        assert_eq!(g["apps"]["pool"]["status"], "released", "{engine}: {g}");
        let evs = events(&env, "pool");
        assert!(
            evs.iter()
                .any(|(k, m)| k == "released" && m.contains("released: xmr synced")),
            "{engine}: {evs:?}"
        );
        assert_eq!(
            evs.iter().filter(|(k, _)| k == "held").count(),
            1,
            "{engine}: the hold note is said once: {evs:?}"
        );

        // Everything goes: the daemon first (it would recreate what the
        // sweep removes), then the stack's containers, volume and network.
        drop(d);
        env.sweep();
        assert_eq!(env.leftovers(), Vec::<String>::new(), "{engine}");
        eprintln!(
            "{engine}: real-monerod gate scenario took {:?}",
            t_engine.elapsed()
        );
    }
}
