//! Tier 3 of `berth import compose`: compose files shaped like node-app
//! stores' (crates/berth-compose/tests/fixtures, on the demo image) are
//! imported, brought up on each engine, every app runs, and
//! `down --purge` leaves nothing behind. Also the CLI's refusals: nothing
//! is written.

mod common;

use std::path::PathBuf;

use common::*;

fn fixture(stack: &str, file: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../berth-compose/tests/fixtures")
        .join(stack)
        .join(file)
        .display()
        .to_string()
}

/// Import `files` of fixture `stack`, then up, check, down --purge, on
/// every engine. `apps` are the berth app ids the import must produce.
fn import_and_run(stack: &str, files: &[&str], extra: &[&str], apps: &[&str]) {
    for engine in engines() {
        let env = Env::new(&engine, &stack[..3]);
        let out = env.stack_file().display().to_string();
        let mut args: Vec<String> = vec!["import".into(), "compose".into()];
        args.extend(files.iter().map(|f| fixture(stack, f)));
        args.extend(["--project-name".into(), env.stack.clone(), "-o".into(), out]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.ok(&args);
        let toml = std::fs::read_to_string(env.stack_file()).expect("stack file written");
        for app in apps {
            assert!(
                toml.contains(&format!("[apps.{app}]")),
                "{stack}: no app {app} in\n{toml}"
            );
        }
        env.ok(&["up"]);
        for app in apps {
            assert!(
                env.running(&env.container(app)),
                "{stack} on {engine}: {app} is not running\n{}",
                text(&env.berth(&["status"]))
            );
            assert_eq!(env.app_state(app), "running", "{stack} on {engine}: {app}");
        }
        env.ok(&["down", "--purge"]);
        assert_eq!(env.leftovers(), Vec::<String>::new(), "{stack} on {engine}");
    }
}

#[test]
fn bitcoin_node_with_app_proxy_runs() {
    import_and_run(
        "bitcoin",
        &["docker-compose.yml"],
        &[],
        &["bitcoind", "app-proxy"],
    );
}

#[test]
fn electrum_server_runs() {
    import_and_run(
        "electrs",
        &["docker-compose.yml"],
        &[],
        &["electrs", "app-proxy"],
    );
}

#[test]
fn mempool_with_database_runs_and_debug_profile_is_skipped() {
    import_and_run(
        "mempool",
        &["docker-compose.yml"],
        &[],
        &["web", "api", "db"],
    );
}

#[test]
fn btcpay_with_postgres_and_override_runs() {
    import_and_run(
        "btcpay",
        &["docker-compose.yml", "docker-compose.override.yml"],
        &[],
        &["btcpayserver", "nbxplorer", "postgres"],
    );
}

#[test]
fn monero_node_with_p2pool_and_proxy_runs() {
    import_and_run(
        "monero",
        &["docker-compose.yml"],
        &[],
        &["monerod", "p2pool", "xmrig-proxy"],
    );
}

/// Refusals: an error naming the problem, exit 2, and no file written.
#[test]
fn refusals_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &str, &[&str], &str)] = &[
        (
            "no-image.yml",
            "services:\n  web:\n    build: .\n",
            &[],
            "service \"web\" has no image",
        ),
        (
            "required.yml",
            "services:\n  web:\n    image: \"x:${TAG:?set TAG}\"\n",
            &[],
            "required variable TAG is not set: set TAG",
        ),
        (
            "k8s.yml",
            "apiVersion: v1\nkind: Pod\n",
            &[],
            "is not a compose file",
        ),
        (
            "strict.yml",
            "services:\n  web:\n    image: x\n    privileged: true\n",
            &["--strict"],
            "--strict: unsupported: services.web.privileged",
        ),
        (
            "unset.yml",
            "services:\n  web:\n    image: x\n    command: \"run ${TAG}\"\n",
            &["--strict"],
            "variable TAG is not set",
        ),
    ];
    for (name, text_, extra, message) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text_).expect("write");
        let out_file = dir.path().join(format!("{name}.toml"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(["import", "compose"])
            .arg(&file)
            .arg("-o")
            .arg(&out_file)
            .args(*extra)
            .env_remove("TAG");
        let out = cmd.output().expect("run berth");
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{name}:")),
            "{name}: names the file: {stderr}"
        );
        assert!(!out_file.exists(), "{name}: wrote {}", out_file.display());
    }
}
