//! Updates of a running app on real engines: a new version that does not
//! come up never costs the app its working version, and berth killed at
//! any step of an update leaves exactly one container, the right one.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// The `web` app at `version` (an environment variable, so each version
/// has its own spec hash), healthy.
fn web_at(version: &str) -> String {
    web("app", &format!("env = {{ VERSION = \"{version}\" }}"))
}

/// The same app, its data volume kept, as a version that exits 3 at start.
fn exits_at_start() -> String {
    format!(
        "[apps.app]\nimage = \"{IMAGE}\"\nentrypoint = [\"/bin/sh\"]\ncommand = [\"-c\", \"echo v2 cannot start; exit 3\"]\nvolumes = {{ data = \"/data\" }}\nstop_grace = \"5s\"\n"
    )
}

/// The same app as a version that runs but never passes its health check.
fn never_healthy() -> String {
    format!(
        "[apps.app]\nimage = \"{IMAGE}\"\nentrypoint = [\"/bin/berth-fake\"]\ncommand = [\"http\", \"--listen\", \"0.0.0.0:8080\", \"--control\", \"0.0.0.0:9100\", \"--name\", \"app\", \"--data-dir\", \"/data\"]\nvolumes = {{ data = \"/data\" }}\nstop_grace = \"5s\"\nenv = {{ VERSION = \"unhealthy\" }}\n[apps.app.health]\nhttp = {{ port = 8080, path = \"/no-such-page\" }}\ninterval = \"1s\"\nretries = 2\n"
    )
}

fn events(env: &Env, app: &str) -> Vec<(String, String)> {
    let out = env.berth(&["events", app, "--limit", "1000", "--json"]);
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    v.as_array()
        .expect("events --json is an array")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Every container of the test's stack (any state), by name.
fn containers(env: &Env) -> Vec<String> {
    let label = format!("label=io.berth.stack={}", env.stack);
    let o = env.engine_cmd(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"]);
    let mut names: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn version_of(env: &Env, container: &str) -> Option<String> {
    let envs = env.inspect(container, "{{range .Config.Env}}{{println .}}{{end}}")?;
    envs.lines()
        .find_map(|l| l.strip_prefix("VERSION=").map(str::to_string))
}

fn marker(env: &Env, container: &str) -> String {
    let r = env.engine_cmd(&["exec", container, "cat", "/data/marker"]);
    String::from_utf8_lossy(&r.stdout).trim().to_string()
}

/// r12: an app running version 1 whose manifest was changed to a version
/// that exits at start was left missing after `berth up` (the old
/// container was removed first; the rollback removed only what the failed
/// install created). The old container is now kept until the new one runs
/// and put back when it does not.
#[test]
fn r12_a_failed_update_puts_the_running_version_back_with_its_data() {
    for engine in engines() {
        let env = Env::new(&engine, "upd");
        env.write_stack(&web_at("1"));
        env.ok(&["up"]);
        let c = env.container("app");
        let id = env.inspect(&c, "{{.Id}}").expect("v1 exists");
        env.engine_cmd(&["exec", &c, "sh", "-c", "echo v1-data > /data/marker"]);

        for (what, broken) in [
            ("exits at start", exits_at_start()),
            ("never healthy", never_healthy()),
        ] {
            env.write_stack(&broken);
            let out = env.berth(&["up"]);
            assert!(
                !out.status.success(),
                "{engine} {what}: the update must fail: {}",
                text(&out)
            );
            // The very same container runs again, under its own name,
            // with its data; nothing else of the app is left.
            assert_eq!(
                env.inspect(&c, "{{.Id}}").as_deref(),
                Some(id.as_str()),
                "{engine} {what}: the old container is back"
            );
            assert!(env.running(&c), "{engine} {what}: v1 running again");
            assert_eq!(
                version_of(&env, &c).as_deref(),
                Some("1"),
                "{engine} {what}"
            );
            assert_eq!(marker(&env, &c), "v1-data", "{engine} {what}: data kept");
            assert_eq!(
                containers(&env),
                vec![c.clone()],
                "{engine} {what}: one container"
            );
            assert_eq!(env.app_state("app"), "running", "{engine} {what}");
        }
        let failed: Vec<_> = events(&env, "app")
            .into_iter()
            .filter(|(k, _)| k == "update-failed")
            .collect();
        assert_eq!(
            failed.len(),
            2,
            "{engine}: one update-failed per attempt: {failed:?}"
        );
        assert!(
            failed.iter().any(|(_, m)| m.contains("exit code 3")),
            "{engine}: the new container's exit code is reported: {failed:?}"
        );
        assert!(
            failed
                .iter()
                .all(|(_, m)| m.contains("previous version is back")),
            "{engine}: {failed:?}"
        );

        // A good version then updates, and finds the data.
        env.write_stack(&web_at("2"));
        env.ok(&["up"]);
        assert_ne!(env.inspect(&c, "{{.Id}}").as_deref(), Some(id.as_str()));
        assert_eq!(version_of(&env, &c).as_deref(), Some("2"), "{engine}");
        assert_eq!(marker(&env, &c), "v1-data", "{engine}: data kept by v2");
        assert_eq!(
            containers(&env),
            vec![c.clone()],
            "{engine}: kept one removed"
        );
        assert!(
            events(&env, "app").iter().any(|(k, _)| k == "updated"),
            "{engine}"
        );
        // The revisions say what happened, oldest first.
        let out = env.ok(&["history", "app", "--json"]);
        let revs: Value = serde_json::from_slice(&out.stdout).expect("history --json");
        let outcomes: Vec<&str> = revs
            .as_array()
            .expect("an array")
            .iter()
            .map(|r| r["outcome"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            outcomes,
            ["installed", "update-failed", "update-failed", "updated"],
            "{engine}: {revs}"
        );
        assert!(
            revs[3]["image_id"].as_str().is_some_and(|i| !i.is_empty()),
            "{engine}: the image the engine ran is recorded: {revs}"
        );
        env.ok(&["down", "--purge"]);
        assert_eq!(env.leftovers(), Vec::<String>::new(), "{engine}");
        let out = env.berth(&["history", "app"]);
        assert!(
            !out.status.success(),
            "{engine}: no history of an uninstalled app"
        );
    }
}

/// Every journal step of an update, as intent (berth died during the
/// engine call) and as done (berth died right after it), with the version
/// recovery must leave running: the old one before the commit point, the
/// new one after it.
const UPDATE_CRASH_POINTS: &[(&str, &str)] = &[
    ("keep-running", "old"),
    ("keep-running:done", "old"),
    ("container", "old"),
    ("container:done", "old"),
    ("start", "old"),
    ("start:done", "old"),
    ("wait", "old"),
    ("wait:done", "old"),
    ("commit:done", "new"),
    ("remove-kept", "new"),
    ("remove-kept:done", "new"),
];

#[test]
fn berth_killed_at_each_update_step_leaves_exactly_one_container_the_right_one() {
    for engine in engines() {
        let env = Env::new(&engine, "updk");
        let c = env.container("app");
        let mut current = 1u32;
        env.write_stack(&web_at("1"));
        env.ok(&["up"]);
        env.engine_cmd(&["exec", &c, "sh", "-c", "echo kept > /data/marker"]);
        for (point, expect) in UPDATE_CRASH_POINTS {
            let next = current + 1;
            env.write_stack(&web_at(&next.to_string()));
            let out = env.berth_env(&["up"], &[("BERTH_CRASH_AFTER_STEP", point)]);
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("crash injected"),
                "{engine} {point}: berth should have died there: {}",
                text(&out)
            );
            let rec = env.berth(&["recover", "--json"]);
            assert!(rec.status.success(), "{engine} {point}: {}", text(&rec));
            if *expect == "new" {
                current = next;
            }
            assert_eq!(
                containers(&env),
                vec![c.clone()],
                "{engine} {point}: exactly one container"
            );
            wait_for(
                &format!("{engine} {point}: the app running"),
                Duration::from_secs(20),
                || env.running(&c),
            );
            assert_eq!(
                version_of(&env, &c),
                Some(current.to_string()),
                "{engine} {point}: the {expect} version runs"
            );
            assert_eq!(marker(&env, &c), "kept", "{engine} {point}: data kept");
            // The record agrees with the engine: a plain `up` of the version
            // that runs is a no-op.
            env.write_stack(&web_at(&current.to_string()));
            let out = env.ok(&["up"]);
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("nothing to do"),
                "{engine} {point}: store and engine agree: {}",
                text(&out)
            );
        }
        env.ok(&["down", "--purge"]);
        assert_eq!(env.leftovers(), Vec::<String>::new(), "{engine}");
    }
}

/// berth killed with SIGKILL from outside, at moments that fall anywhere in
/// an update (the injected points above only cover the journal's
/// boundaries): recovery leaves exactly one container, running, of either
/// the old or the new version, and the store agrees with it.
#[test]
fn berth_killed_from_outside_during_an_update_leaves_exactly_one_container() {
    for engine in engines() {
        let env = Env::new(&engine, "updx");
        let c = env.container("app");
        let mut current = 1u32;
        env.write_stack(&web_at("1"));
        env.ok(&["up"]);
        env.engine_cmd(&["exec", &c, "sh", "-c", "echo kept > /data/marker"]);
        for delay_ms in [100u64, 250, 400, 550, 700, 850, 1000, 1200, 1500, 2500] {
            let next = current + 1;
            env.write_stack(&web_at(&next.to_string()));
            let mut child = env.berth_command(&["up"]).spawn().expect("spawn berth up");
            std::thread::sleep(Duration::from_millis(delay_ms));
            // SIGKILL: no cleanup of any kind runs in berth.
            let _ = child.kill();
            let _ = child.wait();
            let rec = env.berth(&["recover", "--json"]);
            assert!(
                rec.status.success(),
                "{engine} {delay_ms} ms: {}",
                text(&rec)
            );
            assert_eq!(
                containers(&env),
                vec![c.clone()],
                "{engine} killed after {delay_ms} ms: exactly one container"
            );
            wait_for(
                &format!("{engine} {delay_ms} ms: the app running"),
                Duration::from_secs(20),
                || env.running(&c),
            );
            let running = version_of(&env, &c).expect("the container has a VERSION");
            assert!(
                running == current.to_string() || running == next.to_string(),
                "{engine} {delay_ms} ms: version {running} runs, expected {current} or {next}"
            );
            eprintln!(
                "{engine}: berth killed {delay_ms} ms into an update from {current}: {running} runs"
            );
            current = running.parse().expect("a number");
            assert_eq!(
                marker(&env, &c),
                "kept",
                "{engine} {delay_ms} ms: data kept"
            );
            env.write_stack(&web_at(&current.to_string()));
            let out = env.ok(&["up"]);
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("nothing to do"),
                "{engine} {delay_ms} ms: store and engine agree: {}",
                text(&out)
            );
        }
        env.ok(&["down", "--purge"]);
        assert_eq!(env.leftovers(), Vec::<String>::new(), "{engine}");
    }
}

/// The same app as a version that passes its health check, then dies a few
/// seconds later (Podman's auto-update is fooled by exactly this).
fn dies_after_healthy() -> String {
    format!(
        "[apps.app]\nimage = \"{IMAGE}\"\nentrypoint = [\"/bin/sh\"]\ncommand = [\"-c\", \"/bin/berth-fake http --listen 0.0.0.0:8080 --control 0.0.0.0:9100 --name app --data-dir /data & sleep 3; exit 4\"]\nvolumes = {{ data = \"/data\" }}\nstop_grace = \"5s\"\nmin_healthy = \"8s\"\nenv = {{ VERSION = \"dies\" }}\n[apps.app.health]\nhttp = {{ port = 8080, path = \"/health\" }}\ninterval = \"1s\"\n"
    )
}

/// Issue 12: one passing probe is not a success. A new version that dies a
/// few seconds after its first healthy probe fails the update within its
/// `min_healthy`, and v1 runs again with its data; one `update-failed`
/// event says why.
#[test]
fn an_update_that_dies_after_its_first_healthy_probe_is_reverted() {
    for engine in engines() {
        let env = Env::new(&engine, "updh");
        env.write_stack(&web_at("1"));
        env.ok(&["up"]);
        let c = env.container("app");
        let id = env.inspect(&c, "{{.Id}}").expect("v1 exists");
        env.engine_cmd(&["exec", &c, "sh", "-c", "echo v1-data > /data/marker"]);

        env.write_stack(&dies_after_healthy());
        let out = env.berth(&["up"]);
        assert!(
            !out.status.success(),
            "{engine}: the update must fail: {}",
            text(&out)
        );
        assert_eq!(
            env.inspect(&c, "{{.Id}}").as_deref(),
            Some(id.as_str()),
            "{engine}"
        );
        assert!(env.running(&c), "{engine}: v1 running again");
        assert_eq!(version_of(&env, &c).as_deref(), Some("1"), "{engine}");
        assert_eq!(marker(&env, &c), "v1-data", "{engine}: data kept");
        assert_eq!(containers(&env), vec![c.clone()], "{engine}: one container");
        let failed: Vec<_> = events(&env, "app")
            .into_iter()
            .filter(|(k, _)| k == "update-failed")
            .collect();
        assert_eq!(failed.len(), 1, "{engine}: {failed:?}");
        assert!(
            failed[0]
                .1
                .contains("after its first healthy result (needs 8s healthy)"),
            "{engine}: the reason names the hold: {failed:?}"
        );
    }
}
