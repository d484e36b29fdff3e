//! The app lifecycle on real engines: the same tests against Podman and
//! Docker (BERTH_TEST_ENGINES).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn install_stop_start_restart_reinstall_uninstall_leaves_nothing() {
    for engine in engines() {
        let env = Env::new(&engine, "life");
        env.write_stack(&format!(
            "{}{}",
            web("node", "secrets = [\"rpc-pass\"]"),
            sleeper(
                "indexer",
                "depends_on = { node = \"healthy\" }\nsecrets = [\"rpc-pass\"]"
            )
        ));
        // Installing the dependent installs its dependency first.
        env.ok(&["install", "indexer"]);
        assert!(env.running(&env.container("node")), "{engine}: node runs");
        assert!(
            env.running(&env.container("indexer")),
            "{engine}: indexer runs"
        );
        let (code, _) = env.status_json();
        assert_eq!(code, 0, "{engine}: status is clean after install");

        // Hardened defaults and secrets as read-only files, never env.
        let node = env.container("node");
        // Checked on the running process itself, not on the engine's view.
        let st = env.engine_cmd(&["exec", &node, "cat", "/proc/1/status"]);
        let st = String::from_utf8_lossy(&st.stdout).to_string();
        assert!(
            st.contains("CapEff:\t0000000000000000"),
            "{engine}: all capabilities dropped: {st}"
        );
        assert!(
            st.contains("CapBnd:\t0000000000000000"),
            "{engine}: bounding set empty: {st}"
        );
        assert!(
            st.contains("NoNewPrivs:\t1"),
            "{engine}: no-new-privileges: {st}"
        );
        let envs = env.inspect(&node, "{{json .Config.Env}}").unwrap();
        let secret = std::fs::read_to_string(
            env.state_dir()
                .join(format!("secrets/{}/rpc-pass", env.stack)),
        )
        .unwrap();
        assert!(
            !envs.contains(secret.trim()),
            "{engine}: secret must not be in env"
        );
        let cat = env.engine_cmd(&["exec", &node, "cat", "/run/secrets/rpc-pass"]);
        assert_eq!(
            String::from_utf8_lossy(&cat.stdout).trim(),
            secret.trim(),
            "{engine}: secret file mounted"
        );

        // Stop is intentional: status stays 0.
        env.ok(&["stop", "indexer"]);
        assert!(!env.running(&env.container("indexer")));
        let (code, v) = env.status_json();
        assert_eq!(code, 0, "{engine}: user-stopped app is not degraded: {v}");
        env.ok(&["start", "indexer"]);
        assert!(env.running(&env.container("indexer")));

        // Restart gives a new start time.
        let before = env.started_at(&node);
        env.ok(&["restart", "node"]);
        assert_ne!(env.started_at(&node), before, "{engine}: restart restarts");

        // Reinstall keeps the data volume: a marker written before is read back after.
        let w = env.engine_cmd(&["exec", &node, "sh", "-c", "echo keep-me > /data/marker"]);
        assert!(w.status.success(), "{}", text(&w));
        let id_before = env.inspect(&node, "{{.Id}}").unwrap();
        env.ok(&["reinstall", "node"]);
        assert_ne!(
            env.inspect(&node, "{{.Id}}").unwrap(),
            id_before,
            "{engine}: reinstall recreates"
        );
        let r = env.engine_cmd(&["exec", &node, "cat", "/data/marker"]);
        assert_eq!(
            String::from_utf8_lossy(&r.stdout).trim(),
            "keep-me",
            "{engine}: data kept"
        );

        // Uninstall refuses while a dependent is installed.
        let out = env.berth(&["uninstall", "node"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("indexer"),
            "{}",
            text(&out)
        );
        assert!(
            env.exists(&node),
            "{engine}: refused uninstall changed nothing"
        );

        // --cascade removes both, and nothing is left.
        env.ok(&["uninstall", "node", "--cascade"]);
        assert_eq!(
            env.leftovers(),
            Vec::<String>::new(),
            "{engine}: nothing left behind"
        );
        assert_eq!(
            env.secret_files(),
            Vec::<std::path::PathBuf>::new(),
            "{engine}: secrets removed"
        );
        let (code, v) = env.status_json();
        assert_eq!(code, 0);
        assert_eq!(v["apps"].as_array().map(Vec::len), Some(0));
        // Running it again is harmless.
        env.ok(&["uninstall", "node", "--cascade"]);
    }
}

#[test]
fn failing_install_is_rolled_back_with_exit_code_and_logs() {
    for engine in engines() {
        let env = Env::new(&engine, "fail");
        // A generous settle window: on a loaded machine the shell may take
        // a while to reach its `exit 3`, and the install must still see it.
        env.write_stack_with("settle = \"5s\"\n", &format!(
            "[apps.broken]\nimage = \"{IMAGE}\"\ncommand = [\"sh\", \"-c\", \"echo boom-marker-line; exit 3\"]\nvolumes = {{ data = \"/data\" }}\nsecrets = [\"s1\"]\n"
        ));
        let out = env.berth(&["install", "broken"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{engine}: {}", text(&out));
        assert!(
            err.contains("exit code 3"),
            "{engine}: exit code in error: {err}"
        );
        assert!(
            err.contains("boom-marker-line"),
            "{engine}: logs in error: {err}"
        );
        assert!(err.contains("rolled back"), "{engine}: {err}");
        assert_eq!(
            env.leftovers(),
            Vec::<String>::new(),
            "{engine}: rollback left nothing"
        );
        let (_, v) = env.status_json();
        assert_eq!(
            v["apps"].as_array().map(Vec::len),
            Some(0),
            "{engine}: not recorded as installed"
        );
    }
}

/// An app without a health check that runs at first and exits a moment
/// later, inside the stack's settle window, fails its install (rolled
/// back); one that outlives the window is installed.
#[test]
fn exit_inside_the_settle_window_fails_the_install() {
    for engine in engines() {
        let env = Env::new(&engine, "settle");
        env.write_stack_with(
            "settle = \"4s\"\n",
            &format!(
                "[apps.late]\nimage = \"{IMAGE}\"\ncommand = [\"sh\", \"-c\", \"sleep 1; echo late-marker; exit 4\"]\n\n{}",
                sleeper("steady", "")
            ),
        );
        let started = std::time::Instant::now();
        let out = env.berth(&["install", "late"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{engine}: {}", text(&out));
        assert!(err.contains("exited within 4s"), "{engine}: {err}");
        assert!(err.contains("exit code 4"), "{engine}: {err}");
        assert!(err.contains("late-marker"), "{engine}: {err}");
        assert_eq!(
            env.leftovers(),
            Vec::<String>::new(),
            "{engine}: rolled back"
        );
        // The steady one is watched for the whole window, then installed.
        env.ok(&["install", "steady"]);
        assert!(
            started.elapsed() >= Duration::from_secs(8),
            "{engine}: both installs waited out the window"
        );
        assert!(env.running(&env.container("steady")), "{engine}");
        env.ok(&["uninstall", "steady"]);
    }
}

#[test]
fn failing_health_check_rolls_back() {
    for engine in engines() {
        let env = Env::new(&engine, "unh");
        env.write_stack(&format!(
            "{}\n[apps.sick.health]\ncommand = [\"sh\", \"-c\", \"echo not-ready; exit 1\"]\ninterval = \"200ms\"\nretries = 2\n",
            sleeper("sick", "")
        ));
        let out = env.berth(&["install", "sick"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{engine}: {}", text(&out));
        assert!(err.contains("health check failed"), "{engine}: {err}");
        assert!(
            err.contains("not-ready"),
            "{engine}: probe output quoted: {err}"
        );
        assert_eq!(env.leftovers(), Vec::<String>::new(), "{engine}");
    }
}

#[test]
fn unchanged_running_container_is_adopted_and_changed_one_recreated() {
    for engine in engines() {
        let env = Env::new(&engine, "adopt");
        env.write_stack(&format!(
            "{}{}",
            web("a", ""),
            sleeper("b", "depends_on = { a = \"started\" }")
        ));
        env.ok(&["up"]);
        let a = env.container("a");
        let started = env.started_at(&a);
        let id = env.inspect(&a, "{{.Id}}").unwrap();
        // A second up is a no-op: nothing restarted.
        let out = env.ok(&["up"]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nothing to do"),
            "{}",
            text(&out)
        );
        assert_eq!(
            env.started_at(&a),
            started,
            "{engine}: adopted, not restarted"
        );
        // A fresh state directory adopts the running containers too.
        std::fs::remove_dir_all(env.state_dir()).unwrap();
        env.ok(&["up"]);
        assert_eq!(
            env.started_at(&a),
            started,
            "{engine}: adopted by a new state dir"
        );
        // A changed spec is recreated with its volume kept.
        env.engine_cmd(&["exec", &a, "sh", "-c", "echo v1 > /data/marker"]);
        env.write_stack(&format!(
            "{}{}",
            web("a", "env = { CHANGED = \"1\" }"),
            sleeper("b", "depends_on = { a = \"started\" }")
        ));
        env.ok(&["up"]);
        assert_ne!(
            env.inspect(&a, "{{.Id}}").unwrap(),
            id,
            "{engine}: changed spec recreated"
        );
        let r = env.engine_cmd(&["exec", &a, "cat", "/data/marker"]);
        assert_eq!(
            String::from_utf8_lossy(&r.stdout).trim(),
            "v1",
            "{engine}: volume kept"
        );
        // A container stopped behind berth's back is started by up.
        let b = env.container("b");
        env.engine_cmd(&["stop", "-t", "1", &b]);
        env.ok(&["up"]);
        assert!(env.running(&b));
        env.ok(&["down", "--purge"]);
        assert_eq!(env.leftovers(), Vec::<String>::new());
    }
}

#[test]
fn status_reports_crashes_and_exits_1() {
    for engine in engines() {
        let env = Env::new(&engine, "stat");
        env.write_stack(&sleeper("w", ""));
        env.ok(&["up"]);
        assert_eq!(env.status_json().0, 0);
        // Killed behind berth's back: degraded.
        env.engine_cmd(&["kill", &env.container("w")]);
        wait_for("container to die", Duration::from_secs(10), || {
            !env.running(&env.container("w"))
        });
        let (code, v) = env.status_json();
        assert_eq!(code, 1, "{engine}: {v}");
        assert_eq!(v["apps"][0]["observed"]["state"], "killed", "{engine}: {v}");
        // Removed behind berth's back: missing.
        env.engine_cmd(&["rm", "-f", &env.container("w")]);
        assert_eq!(env.app_state("w"), "missing");
        let list = env.berth(&["list", "--json"]);
        assert!(list.status.success());
        env.ok(&["down", "--purge"]);
    }
}

#[test]
fn bad_manifest_exits_2_and_changes_nothing() {
    for engine in engines() {
        let env = Env::new(&engine, "bad");
        env.write_stack(&format!(
            "{}\n[apps.y]\nimage = \"{IMAGE}\"\ndepends_on = {{ nope = \"started\" }}\nbogus = 1\n",
            sleeper("x", "")
        ));
        for args in [
            vec!["up"],
            vec!["install", "x"],
            vec!["validate", env.stack_file().to_str().unwrap()],
        ] {
            let out = env.berth(&args);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{engine} {args:?}: {}",
                text(&out)
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("nope") && err.contains("bogus"),
                "{engine}: every problem reported: {err}"
            );
        }
        assert_eq!(env.leftovers(), Vec::<String>::new());
        let out = env.berth(&["start", "ghost"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    }
}
