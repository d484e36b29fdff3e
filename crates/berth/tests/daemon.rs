//! `berth daemon` on real engines (BERTH_TEST_ENGINES, default both): the
//! real binary with a temporary state directory and short intervals (tick
//! 1 s, backoff 1 s → 4 s, quarantine after 3 failures). Every wait polls a
//! real signal with a timeout; the only fixed waits are "stays in state"
//! windows that prove nothing acts too early.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The daemon's knobs for these tests.
const DAEMON_ENV: &[(&str, &str)] = &[
    ("BERTH_TICK", "1s"),
    ("BERTH_BACKOFF_INITIAL", "1s"),
    ("BERTH_BACKOFF_MAX", "4s"),
    ("BERTH_MAX_FAILURES", "3"),
    ("BERTH_STABLE_AFTER", "10m"),
    ("BERTH_EVENT_DEBOUNCE", "100ms"),
];

fn rpc(socket: &std::path::Path, method: &str, params: Value) -> Value {
    let v = rpc_try(socket, method, params).expect("daemon answers");
    assert!(v.get("error").is_none(), "{method}: {v}");
    v["result"].clone()
}

/// POST a control request to the fake daemon inside `container`, through
/// the container's own loopback (busybox nc), so no host network is used.
/// Retried until the control port answers (it opens a moment after start).
fn control(env: &Env, container: &str, body: &str) {
    let script = format!(
        "printf 'POST /control HTTP/1.0\\r\\nContent-Length: {}\\r\\n\\r\\n%s' '{body}' | nc 127.0.0.1 9100",
        body.len()
    );
    let mut last = String::new();
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        let out = env.engine_cmd(&["exec", container, "sh", "-c", &script]);
        if String::from_utf8_lossy(&out.stdout).contains("200 OK") {
            return;
        }
        last = text(&out);
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("control {body} never answered: {last}");
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

fn app_json(env: &Env, app: &str) -> Value {
    let (_, v) = env.status_json();
    v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == app)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn daemon_killed_leaves_containers_running_and_adopts_them_again_and_recreates_a_removed_one() {
    for engine in engines() {
        let env = Env::new(&engine, "dkill");
        env.write_stack(&format!("{}{}", web("node", ""), sleeper("app", "")));
        env.ok(&["up"]);
        let node = env.container("node");
        let app = env.container("app");
        let w = env.engine_cmd(&["exec", &node, "sh", "-c", "echo keep-me > /data/marker"]);
        assert!(w.status.success(), "{}", text(&w));

        let mut d = Daemon::start(&env, DAEMON_ENV);
        d.ticks(2);
        let started = (env.started_at(&node), env.started_at(&app));

        // SIGKILL: no shutdown code runs at all, and every container runs on.
        d.sigkill();
        assert!(
            env.running(&node) && env.running(&app),
            "{engine}: containers survive the daemon"
        );
        assert_eq!((env.started_at(&node), env.started_at(&app)), started);

        // A new daemon adopts everything: nothing restarted or recreated,
        // over several ticks.
        let d = Daemon::start(&env, DAEMON_ENV);
        d.ticks(3);
        assert_eq!(
            (env.started_at(&node), env.started_at(&app)),
            started,
            "{engine}: adopted, not restarted"
        );
        for a in ["node", "app"] {
            let evs = events(&env, a);
            assert_eq!(
                count(&evs, "restarted") + count(&evs, "recreated") + count(&evs, "started"),
                0,
                "{engine}: {evs:?}"
            );
        }

        // Removed behind berth's back: recreated within a tick (plus the
        // bring-up), with its volume and data.
        let id = env.inspect(&node, "{{.Id}}").unwrap();
        let rm = env.engine_cmd(&["rm", "-f", &node]);
        assert!(rm.status.success(), "{}", text(&rm));
        let removed = Instant::now();
        wait_for("node recreated", Duration::from_secs(20), || {
            env.running(&node) && env.inspect(&node, "{{.Id}}").unwrap() != id
        });
        assert!(
            removed.elapsed() < Duration::from_secs(10),
            "{engine}: recreated after {:?}",
            removed.elapsed()
        );
        let r = env.engine_cmd(&["exec", &node, "cat", "/data/marker"]);
        assert_eq!(
            String::from_utf8_lossy(&r.stdout).trim(),
            "keep-me",
            "{engine}: data kept"
        );
        let evs = events(&env, "node");
        assert_eq!(
            evs.iter()
                .filter(|(k, m)| k == "recreated" && m.contains("container vanished"))
                .count(),
            1,
            "{engine}: one decision: {evs:?}"
        );
        assert_eq!(
            env.started_at(&app),
            started.1,
            "{engine}: the other app untouched"
        );
        drop(d);
    }
}

#[test]
fn crashing_app_is_restarted_with_backoff_then_quarantined() {
    for engine in engines() {
        let env = Env::new(&engine, "dcrash");
        env.write_stack(&web("node", ""));
        env.ok(&["up"]);
        let node = env.container("node");
        let d = Daemon::start(&env, DAEMON_ENV);
        d.ticks(1);

        for attempt in 1..=2 {
            let before = env.started_at(&node);
            control(&env, &node, r#"{"mode":"exit","code":3}"#);
            wait_for(
                &format!("restart {attempt}"),
                Duration::from_secs(20),
                || env.running(&node) && env.started_at(&node) != before,
            );
            let evs = events(&env, "node");
            assert_eq!(count(&evs, "restarted"), attempt, "{engine}: {evs:?}");
            let (_, last) = evs.iter().rfind(|(k, _)| k == "restarted").unwrap();
            assert!(
                last.contains(&format!("exited 3 (crashed), attempt {attempt}/3")),
                "{engine}: {last}"
            );
            // Wait for health again so the next crash is a crash of a
            // running app (and the backoff has passed).
            wait_for("healthy again", Duration::from_secs(20), || {
                app_json(&env, "node")["health"] == "healthy"
            });
        }
        let evs = events(&env, "node");
        let backoffs: Vec<&str> = evs
            .iter()
            .filter(|(k, _)| k == "restarted")
            .map(|(_, m)| m.rsplit("next backoff ").next().unwrap())
            .collect();
        assert_eq!(backoffs, vec!["1s", "2s"], "{engine}: doubling backoff");

        // The third failure in the window: quarantine, with the exit code
        // and the last log lines, visible in `status --json`.
        control(&env, &node, r#"{"mode":"exit","code":3}"#);
        // The tick records the quarantine first; the quarantine action then
        // reads the container's last log lines and adds them, from its own
        // task: wait for both (regression: read between the two, the logs
        // were still empty).
        wait_for(
            "quarantine with its log lines",
            Duration::from_secs(20),
            || {
                let q = &app_json(&env, "node")["quarantine"];
                q["last_logs"].as_array().is_some_and(|l| !l.is_empty())
            },
        );
        let a = app_json(&env, "node");
        assert_eq!(a["quarantine"]["exit_code"], 3, "{engine}: {a}");
        let logs = a["quarantine"]["last_logs"].as_array().unwrap();
        assert!(
            logs.iter()
                .any(|l| l.as_str().unwrap().contains("exit requested with code 3")),
            "{engine}: {a}"
        );
        assert_eq!(a["degraded"], true);
        let (code, _) = env.status_json();
        assert_eq!(code, 1, "{engine}: quarantine is degraded");
        // No more restarts: longer than the backoff ceiling.
        std::thread::sleep(Duration::from_secs(6));
        assert!(!env.running(&node), "{engine}: quarantined app left alone");
        assert_eq!(count(&events(&env, "node"), "restarted"), 2);

        // The user acting lifts the quarantine.
        env.ok(&["start", "node"]);
        assert!(env.running(&node));
        assert!(app_json(&env, "node")["quarantine"].is_null(), "{engine}");
        drop(d);
    }
}

#[test]
fn unhealthy_app_is_restarted() {
    for engine in engines() {
        let env = Env::new(&engine, "dhealth");
        env.write_stack(&web("node", ""));
        env.ok(&["up"]);
        let node = env.container("node");
        let d = Daemon::start(&env, DAEMON_ENV);
        d.ticks(1);
        let before = env.started_at(&node);
        control(&env, &node, r#"{"mode":"busy"}"#);
        wait_for("restart after unhealthy", Duration::from_secs(30), || {
            env.running(&node) && env.started_at(&node) != before
        });
        let evs = events(&env, "node");
        assert!(
            evs.iter()
                .any(|(k, m)| k == "restarted" && m.contains("unhealthy: GET /health answered 503")),
            "{engine}: {evs:?}"
        );
        // The restarted fake answers again: healthy, no second restart.
        wait_for("healthy", Duration::from_secs(20), || {
            app_json(&env, "node")["health"] == "healthy"
        });
        assert_eq!(count(&events(&env, "node"), "restarted"), 1, "{engine}");
        drop(d);
    }
}

#[test]
fn user_stopped_app_stays_stopped_across_restarts_and_the_cli_answers_alike_through_the_socket() {
    for engine in engines() {
        let env = Env::new(&engine, "dstop");
        env.write_stack(&format!(
            "{}{}",
            web("node", ""),
            sleeper("app", "depends_on = { node = \"healthy\" }")
        ));
        env.ok(&["up"]);
        let node = env.container("node");
        let app = env.container("app");

        // Direct mode first, for the comparison.
        let direct_status = env.berth(&["status", "--json"]);
        let direct_unknown = env.berth(&["stop", "nope"]);
        let direct_conflict = env.berth(&["uninstall", "node"]);
        let direct_events_code = env.berth(&["events"]).status.code();

        let mut d = Daemon::start(&env, DAEMON_ENV);
        d.ticks(1);
        let via_status = env.berth(&["status", "--json"]);
        assert_eq!(via_status.status.code(), direct_status.status.code());
        let strip = |o: &std::process::Output| {
            let mut v: Value = serde_json::from_slice(&o.stdout).unwrap();
            for a in v["apps"].as_array_mut().unwrap() {
                a.as_object_mut().unwrap().remove("started_at");
            }
            v
        };
        assert_eq!(
            strip(&via_status),
            strip(&direct_status),
            "{engine}: same status JSON"
        );
        for (direct, args) in [
            (&direct_unknown, vec!["stop", "nope"]),
            (&direct_conflict, vec!["uninstall", "node"]),
        ] {
            let via = env.berth(&args);
            assert_eq!(
                via.status.code(),
                direct.status.code(),
                "{engine} {args:?}: {}",
                text(&via)
            );
            assert_eq!(
                String::from_utf8_lossy(&via.stderr),
                String::from_utf8_lossy(&direct.stderr),
                "{engine} {args:?}: same message"
            );
        }
        assert_eq!(env.berth(&["events"]).status.code(), direct_events_code);

        // The user stops the app through the daemon: it stays stopped.
        let out = env.ok(&["stop", "app"]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("stopped"),
            "{}",
            text(&out)
        );
        assert!(!env.running(&app));
        d.ticks(3);
        assert!(!env.running(&app), "{engine}: never restarted");
        let (code, _) = env.status_json();
        assert_eq!(code, 0, "{engine}: stopped on purpose is not degraded");

        // SIGTERM: a clean exit that touches no container.
        let node_started = env.started_at(&node);
        d.sigterm();
        assert!(
            env.running(&node),
            "{engine}: shutdown left the node running"
        );
        assert_eq!(env.started_at(&node), node_started);
        assert!(!env.running(&app));

        // A new daemon still leaves the user's stop alone.
        let d = Daemon::start(&env, DAEMON_ENV);
        d.ticks(3);
        assert!(
            !env.running(&app),
            "{engine}: still stopped across a daemon restart"
        );
        assert_eq!(
            env.started_at(&node),
            node_started,
            "{engine}: node adopted"
        );
        // And starts it when the user asks, through the socket.
        env.ok(&["start", "app"]);
        assert!(env.running(&app));
        drop(d);
    }
}

#[test]
fn up_leaves_the_stack_supervised_by_a_detached_daemon() {
    for engine in engines() {
        let env = Env::new(&engine, "dup");
        env.write_stack(&sleeper("app", ""));
        let out = env.berth_env(&["up"], &[("BERTH_NO_DAEMON", "0"), ("BERTH_TICK", "1s")]);
        assert!(out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("supervised by `berth daemon`"), "{err}");
        assert!(err.contains("dist/berth.service"), "{err}");
        let socket = env.state_dir().join("berth.sock");
        let status = rpc(&socket, "daemon.status", json!({}));
        let pid = status["pid"].as_u64().unwrap().to_string();
        // Not our child: its parent is init (the launching shell exited).
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let ppid = ppid
            .rsplit(") ")
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .to_string();
        assert_ne!(ppid, std::process::id().to_string(), "{engine}: detached");
        // A second up goes through it and changes nothing.
        let again = env.berth_env(&["up"], &[("BERTH_NO_DAEMON", "0")]);
        assert!(again.status.success(), "{}", text(&again));
        assert!(
            String::from_utf8_lossy(&again.stderr)
                .contains("supervised by the running berth daemon"),
            "{}",
            text(&again)
        );
        // It supervises: a crash is repaired.
        let app = env.container("app");
        let before = env.started_at(&app);
        env.engine_cmd(&["kill", &app]);
        wait_for("restart", Duration::from_secs(30), || {
            env.running(&app) && env.started_at(&app) != before
        });
        let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(kill.success());
        wait_for("daemon gone", Duration::from_secs(30), || !socket.exists());
        assert!(
            env.running(&app),
            "{engine}: its shutdown left the app running"
        );
    }
}

/// Raw HTTP to the socket, for requests the helpers would never send.
fn post_raw(socket: &std::path::Path, body: &[u8]) -> Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /rpc/v1 HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A peer that stops reading early (oversized body) may reset us.
    let _ = s.write_all(body);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let (_, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

#[test]
fn the_socket_is_private_and_rejects_bad_requests_with_json_rpc_codes() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    for engine in engines() {
        let env = Env::new(&engine, "dsock");
        let d = Daemon::start(&env, DAEMON_ENV);
        let meta = std::fs::metadata(&d.socket).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{engine}: socket mode"
        );
        let code = |body: &[u8]| post_raw(&d.socket, body)["error"]["code"].as_i64();
        assert_eq!(code(b"{not json"), Some(-32700));
        assert_eq!(
            code(br#"[{"jsonrpc":"2.0","method":"daemon.status","id":1}]"#),
            Some(-32600)
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","method":"daemon.reboot","id":1}"#),
            Some(-32601)
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","method":"package.stop","params":{"apps":["a"],"force":true},"id":1}"#),
            Some(-32602)
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","method":"package.stop","params":{"apps":["nope"]},"id":1}"#),
            Some(-32001)
        );
        let big = format!(
            r#"{{"jsonrpc":"2.0","method":"daemon.status","id":1,"params":{{"x":"{}"}}}}"#,
            "a".repeat(100 * 1024)
        );
        assert_eq!(code(big.as_bytes()), Some(-32600), "{engine}: body cap");
        // And a good request still works after all that.
        let ok = post_raw(
            &d.socket,
            br#"{"jsonrpc":"2.0","method":"daemon.status","id":"x"}"#,
        );
        assert_eq!(ok["id"], "x");
        assert_eq!(ok["result"]["engine"]["kind"], engine.as_str());
    }
}
