//! Chain gates on real engines (BERTH_TEST_ENGINES, default both): the real
//! `berth` binary and `berth daemon` against containers of the project's
//! fake node daemons, driven through their control endpoint
//! (`POST http://<container-ip>:9100/control`), with short windows (tick
//! 1 s, probes every 1 s, down_after 4 s, recovery_after 3 s).
//!
//! The twelve scenarios of issue 4 run in one stack per engine, in the
//! order they chain naturally (each comment names its scenario). Every wait
//! polls a real signal with a timeout; the only fixed waits are "stays in
//! state" windows proving nothing acts too early, and the windows
//! themselves are checked from the other side: nothing is stopped before
//! `down_after` nor started before `recovery_after` has passed since the
//! fake was switched.
//!
//! The stack:
//! - `btc`: bitcoind-like node (RPC basic auth, password from a secret);
//! - `xmr`: monerod-like node; `tari`: another monerod-like node, optional
//!   for the proxy; `ghost`: a node that never answers (TCP probe);
//! - `pool` waits for `xmr` (and is never rejected: it keeps its position);
//! - `proxy` waits for `xmr` and `btc` (tari optional) and is rejected while
//!   `xmr` or `btc` is down (tari ignored);
//! - `watcher` is rejected while `ghost` is down — which never happens, as
//!   ghost was never reachable.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The daemon's knobs for these tests (the gate windows are in the stack).
const DAEMON_ENV: &[(&str, &str)] = &[
    ("BERTH_TICK", "1s"),
    ("BERTH_BACKOFF_INITIAL", "1s"),
    ("BERTH_BACKOFF_MAX", "4s"),
    ("BERTH_EVENT_DEBOUNCE", "100ms"),
];

const DOWN_AFTER: Duration = Duration::from_secs(4);
const RECOVERY_AFTER: Duration = Duration::from_secs(3);
/// Generous bound on any single wait for a signal.
const WAIT: Duration = Duration::from_secs(30);

fn probe(kind_and_keys: &str) -> String {
    format!(
        "{kind_and_keys}\ninterval = \"1s\"\ntimeout = \"1s\"\ndown_after = \"4s\"\nrecovery_after = \"3s\"\n"
    )
}

fn fake(id: &str, args: &str, extra: &str) -> String {
    format!(
        "[apps.{id}]\nimage = \"{IMAGE}\"\nentrypoint = [\"/bin/berth-fake\"]\ncommand = [{args}, \"--control\", \"0.0.0.0:9100\", \"--quiet\"]\nstop_grace = \"5s\"\n{extra}\n"
    )
}

fn stack() -> String {
    let mut s = String::new();
    s += &fake(
        "btc",
        r#""bitcoind", "--listen", "0.0.0.0:8332", "--rpc-user", "berth", "--rpc-password-file", "/run/secrets/rpc-pass", "--mode", "syncing", "--height", "430000", "--target", "1000000", "--sync-rate", "0""#,
        "secrets = [\"rpc-pass\"]",
    );
    s += &format!(
        "[apps.btc.probe]\n{}\n",
        probe("kind = \"bitcoind\"\nport = 8332\nuser = \"berth\"\npassword_secret = \"rpc-pass\"")
    );
    for node in ["xmr", "tari"] {
        s += &fake(
            node,
            r#""monerod", "--listen", "0.0.0.0:18081", "--mode", "syncing", "--height", "500000", "--target", "1000000", "--sync-rate", "0""#,
            "",
        );
        s += &format!(
            "[apps.{node}.probe]\n{}\n",
            probe("kind = \"monerod\"\nport = 18081")
        );
    }
    s += &fake(
        "ghost",
        r#""tcp", "--listen", "0.0.0.0:7000", "--mode", "down""#,
        "",
    );
    s += &format!(
        "[apps.ghost.probe]\n{}\n",
        probe("kind = \"tcp\"\nport = 7000")
    );
    s += &fake(
        "pool",
        r#""tcp", "--listen", "0.0.0.0:3333", "--banner", "pool""#,
        "depends_on = { xmr = \"started\" }",
    );
    s += "[apps.pool.gate]\nwait_for = [\"xmr\"]\n\n";
    s += &fake(
        "proxy",
        r#""tcp", "--listen", "0.0.0.0:3334", "--banner", "proxy""#,
        "depends_on = { xmr = \"started\", btc = \"started\", pool = \"started\" }",
    );
    s += "[apps.proxy.gate]\nwait_for = [\"xmr\", \"btc\"]\nwait_for_optional = [\"tari\"]\nreject_when_down = [\"xmr\", \"btc\"]\nreject_when_down_optional = [\"tari\"]\n\n";
    s += &sleeper("watcher", "depends_on = { ghost = \"started\" }");
    s += "[apps.watcher.gate]\nreject_when_down = [\"ghost\"]\n\n";
    s
}

/// What the gate tests read from the daemon.
trait GateView {
    fn gates(&self) -> Value;
    fn gate(&self, app: &str) -> Value;
    fn node(&self, node: &str) -> Value;
}

impl GateView for Daemon {
    fn gates(&self) -> Value {
        self.rpc("gate.status", json!({}))
    }

    fn gate(&self, app: &str) -> Value {
        self.gates()["apps"][app].clone()
    }

    fn node(&self, node: &str) -> Value {
        self.gates()["nodes"][node].clone()
    }
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
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("{container} has no address: {}", common::text(&out)))
        .to_string()
}

/// Switch the fake node in `app`'s container: `POST /control {"mode": …}`.
/// Switch a fake's mode; returns the moment just before the switch was
/// asked for (a "not before" bound must be measured from there: the switch
/// happens somewhere inside this call, which can be slow on a busy host).
fn set_mode(env: &Env, app: &str, mode: &str) -> Instant {
    let asked = Instant::now();
    let addr = format!("{}:9100", ip(env, &env.container(app)));
    let body = json!({ "mode": mode }).to_string();
    let mut last = String::new();
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        match std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)) {
            Ok(mut s) => {
                let req = format!(
                    "POST /control HTTP/1.0\r\nHost: fake\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = s.write_all(req.as_bytes());
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
                    return asked;
                }
                last = answer;
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{app}: control {body} never answered: {last}");
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

fn count(events: &[(String, String)], kind: &str) -> usize {
    events.iter().filter(|(k, _)| k == kind).count()
}

fn status_app(env: &Env, app: &str) -> (i32, Value) {
    let (code, v) = env.status_json();
    let a = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == app)
        .cloned()
        .unwrap_or(Value::Null);
    (code, a)
}

/// `proxy`, `pool` and `watcher` must stay as they are for `window`: the
/// "stays in state" check (container running or not, same start time).
fn stays(env: &Env, window: Duration, expect: &[(&str, bool)], why: &str) {
    let before: Vec<(String, Option<String>)> = expect
        .iter()
        .map(|(app, _)| {
            let c = env.container(app);
            (c.clone(), env.inspect(&c, "{{.State.StartedAt}}"))
        })
        .collect();
    let end = Instant::now() + window;
    while Instant::now() < end {
        for ((app, running), (c, started)) in expect.iter().zip(&before) {
            assert_eq!(
                env.running(c),
                *running,
                "{}: {why}: {app} should {}be running",
                env.engine,
                if *running { "" } else { "not " }
            );
            assert_eq!(
                &env.inspect(c, "{{.State.StartedAt}}"),
                started,
                "{}: {why}: {app} was restarted",
                env.engine
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn running_within(env: &Env, app: &str, what: &str) -> Duration {
    running_since(Instant::now(), env, app, what)
}

fn stopped_within(env: &Env, app: &str, what: &str) -> Duration {
    stopped_since(Instant::now(), env, app, what)
}

/// Time from `t0` until `app` runs.
fn running_since(t0: Instant, env: &Env, app: &str, what: &str) -> Duration {
    wait_for(what, WAIT, || env.running(&env.container(app)));
    t0.elapsed()
}

/// Time from `t0` until `app` no longer runs.
fn stopped_since(t0: Instant, env: &Env, app: &str, what: &str) -> Duration {
    wait_for(what, WAIT, || !env.running(&env.container(app)));
    t0.elapsed()
}

#[test]
fn gates_hold_release_reject_and_readmit_on_real_containers() {
    for engine in engines() {
        let t_engine = Instant::now();
        let env = Env::new(&engine, "gate");
        env.write_stack(&stack());

        // Without a daemon, `up` probes the nodes once: both sync, so pool
        // and proxy are created but held; watcher waits for no node and runs.
        let out = env.ok(&["up"]);
        let say = text(&out);
        assert!(
            say.contains("proxy") && say.contains("held: waiting for xmr (syncing 50%, 500000/1000000), btc (syncing 43%, 430000/1000000)"),
            "{engine}: up says why proxy is held:\n{say}"
        );
        assert!(
            say.contains("held: waiting for xmr (syncing 50%"),
            "{engine}: {say}"
        );
        for app in ["btc", "xmr", "tari", "ghost", "watcher"] {
            assert!(env.running(&env.container(app)), "{engine}: {app} runs");
        }
        for app in ["pool", "proxy"] {
            assert!(
                env.exists(&env.container(app)) && !env.running(&env.container(app)),
                "{engine}: {app} created, not started"
            );
        }
        // A hold is intentional: status exits 0 and says why.
        let (code, proxy) = status_app(&env, "proxy");
        assert_eq!(code, 0, "{engine}: held is not degraded: {proxy}");
        assert_eq!(proxy["gate"]["status"], "held", "{engine}: {proxy}");
        assert!(
            proxy["summary"]
                .as_str()
                .unwrap()
                .contains("held: waiting for xmr (syncing 50%, 500000/1000000), btc (syncing 43%"),
            "{engine}: {proxy}"
        );
        let (_, btc) = status_app(&env, "btc");
        assert_eq!(btc["chain"]["state"], "syncing", "{engine}: {btc}");
        assert_eq!(count(&events(&env, "proxy"), "held"), 1, "{engine}");
        let watcher_started = env.started_at(&env.container("watcher"));

        let mut d = Daemon::start(&env, DAEMON_ENV);

        // 1. Boot while both nodes sync: the dependents stay held, quietly;
        // started by hand, the proxy is stopped again.
        d.ticks(3);
        assert_eq!(d.gate("proxy")["status"], "held", "{engine}");
        assert_eq!(d.gate("pool")["status"], "held", "{engine}");
        assert!(!env.running(&env.container("proxy")));
        let hand = env.engine_cmd(&["start", &env.container("proxy")]);
        assert!(hand.status.success(), "{}", text(&hand));
        stopped_within(&env, "proxy", "a hand-started held proxy stopped again");
        assert_eq!(
            count(&events(&env, "proxy"), "held"),
            1,
            "{engine}: the hold note is said once"
        );
        assert!(
            d.gate("proxy")["badges"][0]
                .as_str()
                .unwrap()
                .starts_with("tari: syncing 50%"),
            "{engine}: optional node as a passive badge: {}",
            d.gate("proxy")
        );

        // 2. One required node synced, the other still syncing: the pool
        // (which waits for xmr only) is released, the proxy stays held.
        set_mode(&env, "xmr", "synced");
        running_within(&env, "pool", "pool released once xmr is synced");
        stays(
            &env,
            Duration::from_secs(3),
            &[("proxy", false)],
            "btc still syncing",
        );
        let reason = d.gate("proxy")["reason"].as_str().unwrap().to_string();
        assert!(
            reason.starts_with("held: waiting for btc (syncing 43%") && !reason.contains("xmr"),
            "{engine}: {reason}"
        );

        // 3 + 11. Both synced: the proxy is released and latched, although
        // its optional node (tari) still syncs.
        set_mode(&env, "btc", "synced");
        running_within(&env, "proxy", "proxy released once btc is synced too");
        wait_for("proxy latched", WAIT, || d.gate("proxy")["latched"] == true);
        assert_eq!(d.gate("pool")["latched"], true, "{engine}");
        assert_eq!(d.node("tari")["state"], "syncing", "{engine}");
        let evs = events(&env, "proxy");
        assert!(
            evs.iter()
                .any(|(k, m)| k == "released" && m.contains("released: xmr, btc synced")),
            "{engine}: {evs:?}"
        );

        // 4 + 11. The optional node goes down: it is marked down, nothing is
        // rejected, the badge says it is ignored.
        set_mode(&env, "tari", "down");
        wait_for("tari down", WAIT, || d.node("tari")["state"] == "down");
        stays(
            &env,
            Duration::from_secs(2),
            &[("proxy", true), ("pool", true)],
            "an optional node's outage is ignored",
        );
        assert_eq!(d.gate("proxy")["status"], "released", "{engine}");
        assert!(
            d.gate("proxy")["badges"][0]
                .as_str()
                .unwrap()
                .contains("(ignored)"),
            "{engine}: {}",
            d.gate("proxy")
        );

        // 5. The optional node comes back: healthy after its recovery
        // window, nothing else changes.
        set_mode(&env, "tari", "synced");
        wait_for("tari recovered", WAIT, || {
            count(&events(&env, "tari"), "node-recovered") == 1
        });
        stays(
            &env,
            Duration::from_secs(1),
            &[("proxy", true), ("pool", true)],
            "an optional node's recovery changes nothing",
        );
        assert_eq!(count(&events(&env, "proxy"), "rejected"), 0, "{engine}");

        // 6. A blip shorter than down_after does nothing; a real outage of
        // a required node stops the proxy (not before down_after), the pool
        // keeps running.
        let pool_started = env.started_at(&env.container("pool"));
        set_mode(&env, "xmr", "down");
        stays(
            &env,
            Duration::from_secs(2),
            &[("proxy", true), ("pool", true)],
            "a 2 s blip is shorter than down_after",
        );
        set_mode(&env, "xmr", "synced");
        stays(
            &env,
            Duration::from_secs(3),
            &[("proxy", true), ("pool", true)],
            "after the blip",
        );
        let asked = set_mode(&env, "xmr", "down");
        let took = stopped_since(asked, &env, "proxy", "proxy rejected while xmr is down");
        assert!(took >= DOWN_AFTER, "{engine}: rejected after {took:?}");
        assert!(
            env.running(&env.container("pool")),
            "{engine}: pool runs on"
        );
        assert_eq!(env.started_at(&env.container("pool")), pool_started);
        wait_for("rejected flag", WAIT, || {
            d.gate("proxy")["rejected"] == true
        });
        let (code, proxy) = status_app(&env, "proxy");
        assert_eq!(code, 0, "{engine}: a rejection is intentional: {proxy}");
        assert_eq!(proxy["gate"]["status"], "rejected", "{engine}");
        assert!(
            proxy["gate"]["reason"]
                .as_str()
                .unwrap()
                .starts_with("rejected: xmr down since "),
            "{engine}: {proxy}"
        );

        // 7. The node comes back: readmitted, but only after the recovery
        // window.
        let asked = set_mode(&env, "xmr", "synced");
        let took = running_since(asked, &env, "proxy", "proxy readmitted");
        assert!(
            took >= RECOVERY_AFTER,
            "{engine}: readmitted after {took:?}"
        );
        assert_eq!(count(&events(&env, "proxy"), "readmitted"), 1, "{engine}");
        wait_for("rejected flag cleared", WAIT, || {
            d.gate("proxy")["rejected"] == false
        });

        // 8. A busy node (answers, but not OK) is down: rejected, then
        // readmitted.
        let asked = set_mode(&env, "btc", "busy");
        let took = stopped_since(asked, &env, "proxy", "proxy rejected while btc is busy");
        assert!(took >= DOWN_AFTER, "{engine}: {took:?}");
        assert!(
            d.gate("proxy")["reason"]
                .as_str()
                .unwrap()
                .contains("btc down since"),
            "{engine}: {}",
            d.gate("proxy")
        );
        let asked = set_mode(&env, "btc", "synced");
        let took = running_since(asked, &env, "proxy", "proxy readmitted after busy");
        assert!(took >= RECOVERY_AFTER, "{engine}: {took:?}");

        // 9. Double outage: readmitted only when both recover.
        set_mode(&env, "xmr", "down");
        set_mode(&env, "btc", "down");
        stopped_within(&env, "proxy", "proxy rejected (double outage)");
        wait_for("both down", WAIT, || {
            d.node("xmr")["down"] == true && d.node("btc")["down"] == true
        });
        set_mode(&env, "xmr", "synced");
        wait_for("xmr healthy again", WAIT, || d.node("xmr")["down"] == false);
        stays(
            &env,
            RECOVERY_AFTER + Duration::from_secs(1),
            &[("proxy", false), ("pool", true)],
            "btc is still down",
        );
        set_mode(&env, "btc", "synced");
        running_within(&env, "proxy", "proxy readmitted when both recovered");

        // 10. Daemon restart: the latch and a rejection survive, and the
        // fresh daemon readmits only after it has itself seen the node
        // healthy for the recovery window.
        set_mode(&env, "xmr", "down");
        stopped_within(&env, "proxy", "proxy rejected before the restart");
        wait_for("rejected flag", WAIT, || {
            d.gate("proxy")["rejected"] == true
        });
        d.sigkill();
        let d = Daemon::start(&env, DAEMON_ENV);
        d.ticks(3);
        stays(
            &env,
            Duration::from_secs(2),
            &[("proxy", false), ("pool", true)],
            "a fresh daemon keeps the rejection and the latch",
        );
        assert_eq!(d.gate("proxy")["status"], "rejected", "{engine}");
        assert_eq!(d.gate("proxy")["latched"], true, "{engine}");
        assert_eq!(d.gate("pool")["status"], "released", "{engine}");
        assert_eq!(env.started_at(&env.container("pool")), pool_started);
        let asked = set_mode(&env, "xmr", "synced");
        let took = running_since(asked, &env, "proxy", "proxy readmitted by the fresh daemon");
        assert!(took >= RECOVERY_AFTER, "{engine}: {took:?}");

        // 12. ghost was never reachable: it never went down, watcher was
        // never rejected nor restarted, through everything above.
        assert_eq!(d.node("ghost")["state"], "unreachable", "{engine}");
        assert_eq!(d.node("ghost")["down"], false, "{engine}");
        assert_eq!(
            env.started_at(&env.container("watcher")),
            watcher_started,
            "{engine}: watcher untouched"
        );
        let evs = events(&env, "watcher");
        assert_eq!(count(&evs, "rejected"), 0, "{engine}: {evs:?}");

        // `gate reset` re-arms the latch: the pool is held again until xmr
        // is synced (it is: released again at once, never stopped for long).
        let out = env.ok(&["gate", "reset", "pool"]);
        assert!(text(&out).contains("re-armed"), "{}", text(&out));
        wait_for("pool latched again", WAIT, || {
            d.gate("pool")["latched"] == true
        });
        assert!(env.running(&env.container("pool")), "{engine}");
        let evs = events(&env, "pool");
        assert_eq!(count(&evs, "gate-reset"), 1, "{engine}: {evs:?}");

        // Supervision never counted a gate's stop as a failure.
        for app in ["proxy", "pool"] {
            let evs = events(&env, app);
            assert_eq!(
                count(&evs, "restarted") + count(&evs, "quarantined"),
                0,
                "{engine}: {app}: {evs:?}"
            );
        }
        eprintln!("{engine}: gate scenarios took {:?}", t_engine.elapsed());
        drop(d);
    }
}
