//! berth killed between journal steps, and the real pull path against a
//! local registry — on real engines.

mod common;

use std::process::Command;

use common::*;

/// Every journal step of an install, as intent (berth died during the
/// engine call) and as done (berth died right after it).
const CRASH_POINTS: &[&str] = &[
    "stack:done",
    "network",
    "network:done",
    "volume",
    "volume:done",
    "secret",
    "secret:done",
    "secrets",
    "secrets:done",
    "container",
    "container:done",
    "start",
    "start:done",
    "wait",
    "wait:done",
];

#[test]
fn berth_killed_at_each_install_step_recovers_cleanly() {
    for engine in engines() {
        let env = Env::new(&engine, "crash");
        env.write_stack(&web("app", "secrets = [\"pw\"]"));
        for point in CRASH_POINTS {
            let out = env.berth_env(&["install", "app"], &[("BERTH_CRASH_AFTER_STEP", point)]);
            assert!(
                !out.status.success(),
                "{engine} {point}: berth should have died: {}",
                text(&out)
            );
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("crash injected"),
                "{engine} {point}: {}",
                text(&out)
            );
            // The next berth process recovers: the interrupted install is rolled back.
            let rec = env.berth(&["recover", "--json"]);
            assert!(rec.status.success(), "{engine} {point}: {}", text(&rec));
            assert_eq!(
                env.leftovers(),
                Vec::<String>::new(),
                "{engine} {point}: nothing orphaned"
            );
            // r6: not even the stack secret value the install generated.
            assert_eq!(
                env.secret_files(),
                Vec::<std::path::PathBuf>::new(),
                "{engine} {point}: no secret file orphaned"
            );
            let (_, v) = env.status_json();
            assert_eq!(
                v["apps"].as_array().map(Vec::len),
                Some(0),
                "{engine} {point}: no half-installed app"
            );
            // And a normal install then works.
            env.ok(&["install", "app"]);
            assert!(env.running(&env.container("app")), "{engine} {point}");
            env.ok(&["uninstall", "app"]);
            assert_eq!(env.leftovers(), Vec::<String>::new(), "{engine} {point}");
        }
    }
}

#[test]
fn berth_killed_mid_uninstall_finishes_it_on_recovery() {
    for engine in engines() {
        let env = Env::new(&engine, "unin");
        env.write_stack(&web("app", "secrets = [\"pw\"]"));
        for point in [
            "stop:done",
            "remove-container",
            "remove-container:done",
            "remove-volume",
        ] {
            env.ok(&["install", "app"]);
            let out = env.berth_env(&["uninstall", "app"], &[("BERTH_CRASH_AFTER_STEP", point)]);
            assert!(!out.status.success(), "{engine} {point}: {}", text(&out));
            env.ok(&["recover"]);
            assert_eq!(
                env.leftovers(),
                Vec::<String>::new(),
                "{engine} {point}: uninstall finished"
            );
            assert_eq!(
                env.secret_files(),
                Vec::<std::path::PathBuf>::new(),
                "{engine} {point}"
            );
        }
    }
}

fn registry_up() -> bool {
    std::net::TcpStream::connect("127.0.0.1:5000").is_ok()
}

#[test]
fn pulls_from_a_local_registry_and_reports_a_registry_that_is_down() {
    assert!(
        registry_up(),
        "the local registry on 127.0.0.1:5000 is not running: run `make setup`"
    );
    for engine in engines() {
        let env = Env::new(&engine, "pull");
        let remote = format!("127.0.0.1:5000/berth-test/{}:latest", env.stack);
        let tag = Command::new(&engine)
            .args(["tag", IMAGE, &remote])
            .output()
            .unwrap();
        assert!(tag.status.success(), "{}", text(&tag));
        let mut push = Command::new(&engine);
        push.arg("push");
        if engine == "podman" {
            push.arg("--tls-verify=false");
        }
        let push = push.arg(&remote).output().unwrap();
        assert!(push.status.success(), "{}", text(&push));
        let rmi = Command::new(&engine)
            .args(["rmi", &remote])
            .output()
            .unwrap();
        assert!(rmi.status.success(), "{}", text(&rmi));

        env.write_stack(&format!(
            "[apps.pulled]\nimage = \"{remote}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n\n[apps.nowhere]\nimage = \"127.0.0.1:5999/berth-test/none:latest\"\n"
        ));
        env.ok(&["install", "pulled"]);
        assert!(
            env.running(&env.container("pulled")),
            "{engine}: pulled image runs"
        );

        let out = env.berth(&["install", "nowhere"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{engine}: {}", text(&out));
        assert!(
            err.contains("after 3 attempts"),
            "{engine}: retried 3 times: {err}"
        );
        assert!(
            err.contains("127.0.0.1:5999"),
            "{engine}: names the image: {err}"
        );
        assert!(!env.exists(&env.container("nowhere")));
        let events = env.berth(&["events", "nowhere", "--json"]);
        let n = String::from_utf8_lossy(&events.stdout)
            .matches("pull-failed")
            .count();
        assert_eq!(
            n,
            3,
            "{engine}: one event per failed attempt: {}",
            text(&events)
        );

        env.ok(&["down", "--purge"]);
        let _ = Command::new(&engine).args(["rmi", "-f", &remote]).output();
        assert_eq!(env.leftovers(), Vec::<String>::new());
    }
}
