//! `berth vet`, `berth run …` and `berth verify` through the real binary:
//! vetting this VM, runs held and resolved from the CLI and over the
//! daemon's socket, and a short real lifecycle matrix (2 iterations,
//! destructive cells included) of a small stack on each engine in
//! `BERTH_TEST_ENGINES`. The HTML/JSON reports are kept under
//! `target/test-artifacts/` for CI.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Where CI finds the reports: `target/test-artifacts/<name>`.
fn artifacts_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts")
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clear old artifacts");
    }
    std::fs::create_dir_all(&dir).expect("create artifacts dir");
    dir
}

/// A work directory on the build's disk (not a tmpfs /tmp: vet measures it).
fn work() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-vt-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir")
}

fn berth(engine: &str, state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--engine")
        .arg(engine)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("BERTH_NO_DAEMON", "1")
        .env_remove("BERTH_CRASH_AFTER_STEP")
        .output()
        .expect("run berth")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(out)))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One JSON-RPC call over the daemon's socket (HTTP/1.0).
fn rpc(socket: &Path, method: &str, params: Value) -> Option<Value> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let req = format!(
        "POST /rpc/v1 HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (_, body) = answer.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stage<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stage {name} in {summary}"))
}

/// Every stage runs on this VM; what the VM lacks (SMART on a virtual
/// disk, smartctl itself, a time daemon) is reported, not failed; the run
/// is listed and shown from the store.
#[test]
fn vet_runs_every_stage_here_and_run_list_and_show_read_it() {
    for engine in engines() {
        let w = work();
        let state = w.path().join("state");
        let data = w.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let spec = w.path().join("spec.toml");
        std::fs::write(
            &spec,
            format!("min_cpus = 1\nmin_memory_gib = 1\nengine = \"{engine}\"\n"),
        )
        .unwrap();
        let report = artifacts_dir(&format!("vet-{engine}"));
        let started = Instant::now();
        let out = berth(
            &engine,
            &state,
            &[
                "vet",
                "--data",
                data.to_str().unwrap(),
                "--spec",
                spec.to_str().unwrap(),
                "--report",
                report.to_str().unwrap(),
                "--disk-test-mib",
                "32",
                "--memory-test-mib",
                "64",
                "--json",
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "vet on {engine}:\n{}",
            text(&out)
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        let summary = json_of(&out);
        let names: Vec<&str> = summary["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Inventory",
                "SpecValidate",
                "Disk",
                "Memory",
                "Clock",
                "Engine",
                "Reporting"
            ]
        );
        for s in summary["stages"].as_array().unwrap() {
            assert_eq!(s["state"], "passed", "{engine}: {s}");
        }
        // No SMART on this VM's virtual disk: reported, not failed.
        let disk = stage(&summary, "Disk")["summary"].as_str().unwrap();
        assert!(disk.contains("SMART"), "{disk}");
        assert!(
            stage(&summary, "Engine")["summary"]
                .as_str()
                .unwrap()
                .contains(&format!("{engine} ran")),
            "{summary}"
        );
        assert!(report.join("report.html").is_file());
        let rj: Value =
            serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(rj["run"]["verdict"], "passed");
        assert_eq!(rj["environment"]["engine.kind"], engine.as_str());

        let id = summary["run_id"].as_str().unwrap();
        let list = berth(&engine, &state, &["run", "list", "--json"]);
        assert!(list.status.success(), "{}", text(&list));
        let list = json_of(&list);
        assert_eq!(list[0]["id"], id);
        assert_eq!(list[0]["kind"], "vet");
        assert_eq!(list[0]["state"], "completed");
        assert_eq!(list[0]["verdict"], "passed");
        let show = berth(&engine, &state, &["run", "show", id, "--json"]);
        assert!(show.status.success(), "{}", text(&show));
        let show = json_of(&show);
        assert_eq!(show["run"]["id"], id);
        assert_eq!(show["run"]["stages"].as_array().unwrap().len(), 7);
        assert_eq!(
            show["report_html"].as_str().map(PathBuf::from),
            Some(report.join("report.html"))
        );
        let table = berth(&engine, &state, &["run", "show", id]);
        let table = String::from_utf8_lossy(&table.stdout).to_string();
        assert!(
            table.contains("SpecValidate") && table.contains("completed"),
            "{table}"
        );
    }
}

/// A failed stage holds the run (exit 1); the operator resolves it from the
/// CLI or over the daemon's socket (`run.*`), and invalid actions are
/// refused with usage errors.
#[test]
fn a_held_vet_is_resolved_from_the_cli_and_over_the_socket() {
    let w = work();
    let state = w.path().join("state");
    let data = w.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let spec = w.path().join("spec.toml");
    std::fs::write(&spec, "min_cpus = 100000\n").unwrap();
    let held = || {
        let out = berth(
            "podman",
            &state,
            &[
                "vet",
                "--no-engine",
                "--data",
                data.to_str().unwrap(),
                "--spec",
                spec.to_str().unwrap(),
                "--disk-test-mib",
                "4",
                "--memory-test-mib",
                "16",
                "--disk-write-min",
                "0",
                "--disk-read-min",
                "0",
                "--fsync-p99-max",
                "100000",
                "--json",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let s = json_of(&out);
        assert_eq!(s["state"], "failed_holding");
        assert_eq!(s["failed_stage"], "SpecValidate");
        s["run_id"].as_str().unwrap().to_string()
    };
    let first = held();
    // Not a wait for readiness: the second run must start in a later
    // millisecond than the first, so "newest first" has one answer.
    std::thread::sleep(Duration::from_millis(5));
    let second = held();
    let show = berth("podman", &state, &["run", "show", &first]);
    let text_show = String::from_utf8_lossy(&show.stdout).to_string();
    assert!(text_show.contains("holding"), "{text_show}");
    assert!(
        text_show.contains(&format!("berth run override {first}")),
        "{text_show}"
    );

    // The CLI: abandon the second, then it takes no more actions.
    let out = berth("podman", &state, &["run", "abandon", &second]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = berth("podman", &state, &["run", "retry", &second]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already abandoned"));
    let out = berth("podman", &state, &["run", "show", "no-such-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // The API: the same actions over the daemon's socket.
    let log = std::fs::File::create(w.path().join("daemon.log")).unwrap();
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["--engine", "podman", "--state-dir"])
            .arg(&state)
            .arg("daemon")
            .env("BERTH_LISTEN", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let socket = state.join("berth.sock");
    wait_for("the daemon's socket", Duration::from_secs(30), || {
        rpc(&socket, "daemon.status", json!({})).is_some()
    });
    let list = rpc(&socket, "run.list", json!({})).unwrap();
    let runs = list["result"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{list}");
    assert_eq!(runs[0]["id"], second.as_str());
    assert_eq!(runs[0]["state"], "abandoned");
    assert_eq!(runs[1]["state"], "failed_holding");
    let shown = rpc(&socket, "run.show", json!({"run": first})).unwrap();
    assert_eq!(shown["result"]["run"]["state"], "failed_holding", "{shown}");
    let unknown = rpc(&socket, "run.show", json!({"run": "nope"})).unwrap();
    assert_eq!(unknown["error"]["code"], -32010, "{unknown}");
    let refused = rpc(&socket, "run.retry", json!({"run": second})).unwrap();
    assert_eq!(refused["error"]["code"], -32011, "{refused}");
    let done = rpc(&socket, "run.override", json!({"run": first})).unwrap();
    assert_eq!(done["result"]["verdict"], "passed_with_overrides", "{done}");
    let stages = done["result"]["stages"].as_array().unwrap();
    assert_eq!(stages[1]["state"], "overridden");
    assert!(stages[2..].iter().all(|s| s["state"] == "passed"), "{done}");
    // The CLI reads what the daemon wrote.
    let out = berth("podman", &state, &["run", "list", "--json"]);
    assert_eq!(json_of(&out)[1]["verdict"], "passed_with_overrides");
}

fn verify_stack(web_port: u16, ui_path: &str) -> String {
    format!(
        r#"[stack]
name = "vfytest"
start_timeout = "30s"

[apps.web]
image = "{IMAGE}"
entrypoint = ["/bin/berth-fake"]
command = ["http", "--listen", "0.0.0.0:8080", "--control", "0.0.0.0:9100", "--name", "web", "--data-dir", "/data"]
ports = ["127.0.0.1:{web_port}:8080"]
web_ui = {{ port = {web_port}, path = "{ui_path}" }}
volumes = {{ data = "/data" }}
secrets = ["web-password"]
stop_grace = "5s"
probe = {{ kind = "http", port = 8080, path = "/health" }}

[apps.web.health]
http = {{ port = 8080, path = "/health" }}
interval = "1s"

[apps.worker]
image = "{IMAGE}"
entrypoint = ["/bin/berth-fake"]
command = ["tcp", "--listen", "0.0.0.0:3333", "--control", "0.0.0.0:9100", "--banner", "worker"]
depends_on = {{ web = "healthy" }}
stop_grace = "5s"

[apps.worker.health]
tcp = {{ port = 3333 }}
interval = "1s"
"#
    )
}

/// Engine objects labelled with `stack`.
fn engine_leftovers(engine: &str, stack: &str) -> Vec<String> {
    let label = format!("label=io.berth.stack={stack}");
    let mut out = Vec::new();
    for args in [
        vec!["ps", "-a", "--filter", &label, "--format", "{{.Names}}"],
        vec!["volume", "ls", "--filter", &label, "--format", "{{.Name}}"],
        vec!["network", "ls", "--filter", &label, "--format", "{{.Name}}"],
    ] {
        let o = Command::new(engine).args(&args).output().unwrap();
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    out
}

/// The release gate in miniature: every cell, destructive ones included,
/// twice, on each engine; exit 0, a full green matrix, reports written,
/// nothing left behind.
#[test]
fn verify_runs_the_whole_matrix_twice_on_each_engine() {
    for engine in engines() {
        let w = work();
        let state = w.path().join("state");
        let stack = w.path().join("berth.toml");
        std::fs::write(&stack, verify_stack(free_port(), "/")).unwrap();
        let report = artifacts_dir(&format!("verify-{engine}"));
        let started = Instant::now();
        let out = berth(
            &engine,
            &state,
            &[
                "verify",
                stack.to_str().unwrap(),
                "--iterations",
                "2",
                "--destructive",
                "--report",
                report.to_str().unwrap(),
                "--json",
            ],
        );
        let took = started.elapsed();
        eprintln!("verify on {engine} took {took:?}");
        assert_eq!(
            out.status.code(),
            Some(0),
            "verify on {engine}:\n{}",
            text(&out)
        );
        let summary = json_of(&out);
        assert_eq!(summary["verdict"], "passed");

        let rj: Value =
            serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
                .unwrap();
        let m = &rj["matrix"];
        assert_eq!(m["all_passed"], true, "{m}");
        let cells: Vec<&str> = m["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            cells,
            [
                "installed",
                "state",
                "probe",
                "ui",
                "stop",
                "start",
                "restart",
                "reinstall",
                "daemon-restart",
                "crash-restart",
                "killed-mid-install",
                "uninstall"
            ]
        );
        let rows = m["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        for row in rows {
            let app = row["app"].as_str().unwrap();
            for c in row["cells"].as_array().unwrap() {
                let cell = c["cell"].as_str().unwrap();
                let not_applicable =
                    app == "worker" && matches!(cell, "probe" | "ui" | "reinstall");
                if not_applicable {
                    assert_eq!(c["mark"], "not_applicable", "{app} {cell}");
                } else {
                    assert_eq!(c["symbol"], "●", "{engine} {app} {cell}: {c}");
                    assert_eq!(
                        (c["passed"].as_u64(), c["total"].as_u64()),
                        (Some(2), Some(2))
                    );
                }
            }
        }
        assert_eq!(rj["environment"]["engine.kind"], engine.as_str());
        assert!(rj["environment"]["berth.git_rev"].as_str().is_some());
        assert!(
            rj["environment"][format!("image.{IMAGE}")]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:") || d.len() >= 12),
            "{}",
            rj["environment"]
        );
        let html = std::fs::read_to_string(report.join("report.html")).unwrap();
        assert!(html.contains("killed-mid-install") && html.contains("●"));
        // Self-contained: URLs appear as text (the UI cell names them), but
        // nothing is loaded from anywhere.
        for forbidden in ["<script", "<link", "src=", "href=\"http", "url(", "@import"] {
            assert!(
                !html.contains(forbidden),
                "report.html contains {forbidden}"
            );
        }
        assert!(report.join("artifacts/Reporting/1-scorecard.md").is_file());

        // Nothing left behind: no engine object, no state directory.
        let verify_stack = rj["environment"]["verify.stack_name"].as_str().unwrap();
        assert_ne!(verify_stack, "vfytest", "verify renames the stack");
        assert_eq!(
            engine_leftovers(&engine, verify_stack),
            Vec::<String>::new()
        );
        let id = summary["run_id"].as_str().unwrap();
        assert!(!state.join("runs").join(id).join("work/state").exists());
        let show = json_of(&berth(&engine, &state, &["run", "show", id, "--json"]));
        assert_eq!(show["run"]["state"], "completed");
        assert_eq!(show["matrix"]["apps"], json!(["web", "worker"]));
    }
}

/// A failing cell holds the run with its evidence (redacted), and
/// abandoning it removes the run's stack.
#[test]
fn a_failing_cell_holds_verify_and_abandon_removes_its_stack() {
    for engine in engines() {
        let w = work();
        let state = w.path().join("state");
        let stack = w.path().join("berth.toml");
        // The UI path answers 404: the ui cell fails.
        std::fs::write(&stack, verify_stack(free_port(), "/no-such-page")).unwrap();
        let out = berth(
            &engine,
            &state,
            &[
                "verify",
                stack.to_str().unwrap(),
                "--apps",
                "web",
                "--wait-timeout",
                "3s",
                "--json",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let s = json_of(&out);
        assert_eq!(s["state"], "failed_holding", "{s}");
        assert_eq!(s["failed_stage"], "i1/ui");
        let id = s["run_id"].as_str().unwrap().to_string();
        let run_dir = state.join("runs").join(&id);
        let rj: Value =
            serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
                .unwrap();
        let verify_stack = rj["environment"]["verify.stack_name"]
            .as_str()
            .unwrap()
            .to_string();
        let failure = &rj["matrix"]["failures"][0];
        assert_eq!(failure["cell"], "ui");
        assert!(
            failure["message"].as_str().unwrap().contains("HTTP 404"),
            "{failure}"
        );
        let names: Vec<&str> = failure["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        for want in [
            "web/logs-web.txt",
            "web/inspect-web.json",
            "web/status.json",
            "web/events.json",
        ] {
            assert!(names.contains(&want), "{names:?}");
        }
        // The held run keeps its stack for inspection; no artifact holds
        // the secret's value.
        assert!(!engine_leftovers(&engine, &verify_stack).is_empty());
        let secret = std::fs::read_to_string(
            run_dir
                .join("work/state/secrets")
                .join(&verify_stack)
                .join("web-password"),
        )
        .unwrap();
        assert!(secret.len() >= 16);
        let mut files = Vec::new();
        walk(&run_dir.join("artifacts"), &mut files);
        assert!(files.len() >= 4);
        for f in files {
            let t = std::fs::read_to_string(&f).unwrap_or_default();
            assert!(
                !t.contains(secret.trim()),
                "{} holds the secret",
                f.display()
            );
        }
        let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
        assert!(html.contains("holding on failed stage i1/ui"));

        let out = berth(&engine, &state, &["run", "abandon", &id]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(
            engine_leftovers(&engine, &verify_stack),
            Vec::<String>::new()
        );
        assert!(!run_dir.join("work/state").exists());
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}
