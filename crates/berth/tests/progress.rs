//! Progress health checks on real engines (BERTH_TEST_ENGINES, default
//! both): the real `berth daemon` supervising fake bitcoind nodes whose
//! chain tip advances by itself (`--block-seconds`), until they are told
//! to freeze it through their control port.
//!
//! Three apps, one per source of the value: `node` reads its chain probe's
//! height (bitcoind RPC with basic auth, the password from its secret) and
//! is restarted when stalled; `web` reads `/height` of a JSON answer over
//! HTTP and `cmd` the number a command prints — both `restart = "no"`, so
//! the unhealthy verdict and its reason stay visible in `status`.
//!
//! Windows are short (`within` 4 s, probes every 1 s, 2 retries). Every
//! wait polls a real signal (status, engine inspect, the fake's state) with
//! a bound; the one fixed window is the "advancing stays healthy" one,
//! which is what it proves.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The daemon's knobs: tick 1 s, short backoff, as in daemon.rs.
const DAEMON_ENV: &[(&str, &str)] = &[
    ("BERTH_TICK", "1s"),
    ("BERTH_BACKOFF_INITIAL", "1s"),
    ("BERTH_BACKOFF_MAX", "4s"),
    ("BERTH_MAX_FAILURES", "3"),
    ("BERTH_STABLE_AFTER", "10m"),
    ("BERTH_EVENT_DEBOUNCE", "100ms"),
];

/// The progress window of every app.
const WITHIN: Duration = Duration::from_secs(4);

/// A fake bitcoind making a block every 0.5 s, with its control port on
/// 9100, and a health check: TCP on the RPC port plus `progress`.
fn node_app(id: &str, extra: &str, progress: &str) -> String {
    format!(
        r#"[apps.{id}]
image = "{IMAGE}"
entrypoint = ["/bin/berth-fake"]
command = ["bitcoind", "--listen", "0.0.0.0:8332", "--control", "0.0.0.0:9100", "--name", "{id}",
           "--height", "812000", "--block-seconds", "0.5", "--data-dir", "/data"{extra_args}]
volumes = {{ data = "/data" }}
stop_grace = "5s"
{extra}

[apps.{id}.health]
tcp = {{ port = 8332 }}
interval = "1s"
timeout = "2s"
retries = 2
start_period = "1s"

[apps.{id}.health.progress]
{progress}
within = "{within}s"
"#,
        extra_args = if id == "node" {
            r#", "--rpc-user", "berth", "--rpc-password-file", "/run/secrets/btc-rpc-password""#
        } else {
            ""
        },
        within = WITHIN.as_secs(),
    )
}

fn stack() -> String {
    let node = node_app(
        "node",
        "secrets = [\"btc-rpc-password\"]\n\n[apps.node.probe]\nkind = \"bitcoind\"\nport = 8332\nuser = \"berth\"\npassword_secret = \"btc-rpc-password\"",
        "probe = \"height\"",
    );
    let web = node_app(
        "web",
        "restart = \"no\"",
        "http = { port = 9100, path = \"/control\", pointer = \"/height\" }\nlabel = \"tip\"",
    );
    let cmd = node_app(
        "cmd",
        "restart = \"no\"",
        "command = [\"cat\", \"/data/height\"]",
    );
    format!("{node}\n{web}\n{cmd}")
}

/// One HTTP/1.0 request to the fake's control port, from inside its own
/// container (busybox nc on its loopback); the JSON body. Retried until the
/// port answers (it opens a moment after a start).
fn control_request(env: &Env, container: &str, method: &str, body: &str) -> Value {
    let script = format!(
        "printf '{method} /control HTTP/1.0\\r\\nContent-Length: {}\\r\\n\\r\\n%s' '{body}' | nc 127.0.0.1 9100",
        body.len()
    );
    let mut last = String::new();
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        let out = env.engine_cmd(&["exec", container, "sh", "-c", &script]);
        let answer = String::from_utf8_lossy(&out.stdout).to_string();
        if answer.contains("200 OK")
            && let Some((_, json)) = answer.split_once("\r\n\r\n")
            && let Ok(v) = serde_json::from_str::<Value>(json)
        {
            return v;
        }
        last = text(&out);
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("control {method} {body} never answered: {last}");
}

fn fake_state(env: &Env, app: &str) -> Value {
    control_request(env, &env.container(app), "GET", "")
}

fn height(env: &Env, app: &str) -> u64 {
    fake_state(env, app)["height"].as_u64().expect("height")
}

fn events(env: &Env, app: &str) -> Vec<(String, String)> {
    let out = env.berth(&["events", app, "--limit", "1000", "--json"]);
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    v.as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn count(events: &[(String, String)], kind: &str) -> usize {
    events.iter().filter(|(k, _)| k == kind).count()
}

/// `(health, health_detail)` of every app in `status --json`.
fn health(env: &Env) -> (i32, Vec<(String, String, String)>) {
    let (code, v) = env.status_json();
    let apps = v["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or("").to_string(),
                a["health"].as_str().unwrap_or("").to_string(),
                a["health_detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    (code, apps)
}

fn health_of(env: &Env, app: &str) -> (String, String) {
    let (_, apps) = health(env);
    apps.into_iter()
        .find(|(id, _, _)| id == app)
        .map(|(_, h, d)| (h, d))
        .unwrap_or_default()
}

/// `LABEL stuck at VALUE since HH:MM:SS (must advance within 4s)`.
fn is_stuck_reason(detail: &str, label: &str, value: u64) -> bool {
    let Some(rest) = detail.strip_prefix(&format!("{label} stuck at {value} since ")) else {
        return false;
    };
    let Some(time) = rest.strip_suffix(" (must advance within 4s)") else {
        return false;
    };
    time.len() == 8
        && time.chars().enumerate().all(|(i, c)| {
            if i == 2 || i == 5 {
                c == ':'
            } else {
                c.is_ascii_digit()
            }
        })
}

const LABELS: [(&str, &str); 3] = [
    ("node", "chain tip"),
    ("web", "tip"),
    ("cmd", "progress value"),
];

#[test]
fn a_stalled_chain_tip_makes_the_app_unhealthy_and_it_is_restarted() {
    for engine in engines() {
        let env = Env::new(&engine, "prog");
        env.write_stack(&stack());
        env.ok(&["up"]);
        let node = env.container("node");
        let d = Daemon::start(&env, DAEMON_ENV);

        // Every monitor has a verdict on its value (past the start period).
        wait_for("progress verdicts", Duration::from_secs(30), || {
            let (_, apps) = health(&env);
            LABELS.iter().all(|(app, label)| {
                apps.iter().any(|(id, h, detail)| {
                    id == app
                        && h == "healthy"
                        && detail.contains(&format!("{label} at "))
                        && !detail.contains("start period")
                })
            })
        });

        // Advancing: healthy for two whole windows, nothing restarted,
        // while every tip really moves.
        let started = env.started_at(&node);
        let first: Vec<u64> = LABELS.iter().map(|(app, _)| height(&env, app)).collect();
        let until = Instant::now() + 2 * WITHIN;
        while Instant::now() < until {
            let (_, apps) = health(&env);
            for (id, h, detail) in &apps {
                assert_eq!(h, "healthy", "{engine}: {id} while advancing: {detail}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        for ((app, _), before) in LABELS.iter().zip(&first) {
            let now = height(&env, app);
            assert!(
                now >= before + 8,
                "{engine}: {app} advanced {before} -> {now}"
            );
            let evs = events(&env, app);
            assert_eq!(
                count(&evs, "restarted") + count(&evs, "not-restarted"),
                0,
                "{engine}: {app}: {evs:?}"
            );
        }
        assert_eq!(env.started_at(&node), started, "{engine}: not restarted");

        // Freeze every tip.
        let frozen_at = Instant::now();
        let stuck: Vec<u64> = LABELS
            .iter()
            .map(|(app, _)| {
                let s = control_request(&env, &env.container(app), "POST", r#"{"freeze":true}"#);
                assert_eq!(s["frozen"], true, "{engine}: {s}");
                s["height"].as_u64().expect("height")
            })
            .collect();

        // `node` (restart always): unhealthy with the stuck value, then
        // restarted like a crashed app — not before the window passed.
        wait_for("node restarted", Duration::from_secs(40), || {
            env.running(&node) && env.started_at(&node) != started
        });
        let took = frozen_at.elapsed();
        assert!(took >= WITHIN, "{engine}: restarted after {took:?}");
        let evs = events(&env, "node");
        let restarts: Vec<&String> = evs
            .iter()
            .filter(|(k, _)| k == "restarted")
            .map(|(_, m)| m)
            .collect();
        assert_eq!(restarts.len(), 1, "{engine}: {evs:?}");
        let reason = restarts[0]
            .split("unhealthy: ")
            .nth(1)
            .and_then(|r| r.split(", attempt").next())
            .unwrap_or_default();
        assert!(
            is_stuck_reason(reason, "chain tip", stuck[0]),
            "{engine}: {:?} (stuck at {})",
            restarts[0],
            stuck[0]
        );

        // `web` and `cmd` (restart "no"): unhealthy, with the reason in
        // `status` (exit 1: degraded), one note each, never restarted.
        for (i, (app, label)) in LABELS.iter().enumerate().skip(1) {
            wait_for(&format!("{app} unhealthy"), Duration::from_secs(30), || {
                let (h, detail) = health_of(&env, app);
                h == "unhealthy" && is_stuck_reason(&detail, label, stuck[i])
            });
        }
        let (code, _) = health(&env);
        assert_eq!(code, 1, "{engine}: unhealthy apps are degraded");

        // The restarted node makes blocks again (its height kept in its
        // volume, the freeze gone with the process): healthy, advancing
        // past the stuck tip, no second restart.
        wait_for("node healthy again", Duration::from_secs(30), || {
            let (h, detail) = health_of(&env, "node");
            h == "healthy"
                && detail
                    .rsplit("chain tip at ")
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|v| v > stuck[0])
        });
        assert!(height(&env, "node") >= stuck[0], "{engine}: height kept");
        assert_eq!(fake_state(&env, "node")["frozen"], false);

        // A few more ticks: the stable reason gives one note, not one per
        // tick; the stalled apps were never restarted.
        d.ticks(3);
        for (app, label) in LABELS.iter().skip(1) {
            let evs = events(&env, app);
            let notes: Vec<&String> = evs
                .iter()
                .filter(|(k, _)| k == "not-restarted")
                .map(|(_, m)| m)
                .collect();
            assert_eq!(notes.len(), 1, "{engine}: {app}: {evs:?}");
            assert!(
                notes[0].contains(&format!("is unhealthy: {label} stuck at "))
                    && notes[0].ends_with("restart policy no: not restarting"),
                "{engine}: {notes:?}"
            );
            assert_eq!(count(&evs, "restarted"), 0, "{engine}: {app}: {evs:?}");
        }
        assert_eq!(count(&events(&env, "node"), "restarted"), 1, "{engine}");

        // Thawed, a stalled app heals by itself (the same monitor's window).
        let s = control_request(
            &env,
            &env.container("web"),
            "POST",
            &json!({"freeze": false}).to_string(),
        );
        assert_eq!(s["frozen"], false);
        wait_for("web healthy again", Duration::from_secs(30), || {
            health_of(&env, "web").0 == "healthy"
        });
        drop(d);
    }
}
