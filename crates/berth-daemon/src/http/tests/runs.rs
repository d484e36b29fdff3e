//! The runs on the dashboard and in the REST API, over real TCP against
//! the real daemon: vet runs made by `berth_verify::runs` in the daemon's
//! state directory (as `berth vet` beside a running daemon makes them)
//! and a verify run with a scorecard, stored as the harness stores one.

use std::path::Path;

use berth_core::pipeline::{ArtifactMeta, Measurement, Run, RunState, StageState};
use berth_verify::runs::{Driver, start_vet};
use berth_verify::{EngineRef, VetOptions};

use super::*;

const VERIFY_ID: &str = "verify-synth";

fn driver(root: &Path) -> Driver {
    Driver {
        state: StateDir::open(root).unwrap(),
        berth_exe: PathBuf::from("/nonexistent/berth"),
        observer: None,
    }
}

/// A small vet of run `id`: held on SpecValidate when `min_cpus` is more
/// than the host has, passed otherwise. No engine, small disk and memory
/// tests, floors anyone meets.
async fn vet(root: &Path, id: &str, min_cpus: u32) -> RunState {
    let d = driver(root);
    let run_dir = d.state.run_dir(id).unwrap();
    let data = run_dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let spec = run_dir.join("spec.toml");
    std::fs::write(&spec, format!("min_cpus = {min_cpus}\n")).unwrap();
    let mut opts = VetOptions::new(run_dir.clone());
    opts.run_id = Some(id.into());
    opts.data_paths = vec![data];
    opts.expected_spec = Some(spec);
    opts.disk_test_mib = 4;
    opts.memory_test_mib = 16;
    opts.floors.disk_write_mb_s_min = 0.0;
    opts.floors.disk_read_mb_s_min = 0.0;
    opts.floors.disk_fsync_p99_ms_max = f64::MAX;
    opts.floors.clock_offset_ms_max = f64::MAX;
    start_vet(&d, opts).await.unwrap().state
}

/// A finished verify run of app `web` over 2 iterations: every cell passed
/// but `restart` in iteration 2, `ui` does not apply. `secret` appears in
/// a summary and in the environment: the daemon must redact it.
fn verify_run(root: &Path, stack_file: &str, secret: &str) {
    let store = StateDir::open(root).unwrap().store().unwrap();
    let names = berth_verify::verify::stage_names(2, false);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // Started last: the newest run.
    let t0 = now_ms_u64();
    let mut run = Run::new(VERIFY_ID, "verify", &refs, true, t0);
    for (i, stage) in run.stages.iter_mut().enumerate() {
        let start = t0 + i as u64 * 1000;
        stage.started_ms = Some(start);
        stage.finished_ms = Some(start + 400);
        stage.attempts = 1;
        stage.state = StageState::Passed;
        let Some((iteration, cell)) = berth_verify::verify::parse_stage_name(&stage.name) else {
            stage.summary = format!("{} done", stage.name);
            continue;
        };
        let (value, summary) = match (iteration, cell.name()) {
            (_, "ui") => (-1.0, "web: not applicable".to_string()),
            (2, "restart") => {
                stage.state = StageState::Failed;
                stage.artifacts.push(ArtifactMeta {
                    name: "web/logs".into(),
                    path: "artifacts/i2-restart/web/logs.txt".into(),
                    bytes: 2048,
                    media_type: "text/plain".into(),
                });
                (
                    0.0,
                    format!("web: FAILED no new start time within 120 s (password {secret})"),
                )
            }
            _ => (1.0, "web: passed".to_string()),
        };
        stage.summary = summary;
        stage.measurements = vec![
            Measurement::new("web", value, berth_verify::verify::RESULT_UNIT),
            Measurement::new("web ms", 300.0 + f64::from(iteration) * 100.0, "ms"),
        ];
    }
    run.state = RunState::Completed;
    run.finished_ms = Some(t0 + 30_000);
    run.updated_ms = t0 + 30_000;
    for (k, v) in [
        ("berth.version", "0.0.0"),
        ("berth.git_rev", "abc123def456"),
        ("engine.kind", "podman"),
        ("engine.version", "4.3.1"),
        ("host.kernel", "6.1.0-test"),
        ("image.localhost/app:1", "sha256:0123456789abcdef"),
    ] {
        run.environment.insert(k.into(), v.into());
    }
    run.environment
        .insert("verify.note".into(), format!("pw={secret}"));
    run.check().unwrap();
    store.save_run(&run).unwrap();
    let params = berth_verify::VerifyParams {
        stack_file: PathBuf::from(stack_file),
        apps: vec!["web".into()],
        iterations: 2,
        destructive: false,
        continue_on_error: true,
        engine: EngineRef::new(berth_engine::EngineKind::Podman),
        report_dir: root.join("runs").join(VERIFY_ID).join("no-report-here"),
        work_dir: root.join("runs").join(VERIFY_ID).join("work"),
        stack_name: "vabcdef".into(),
        wait_timeout_s: 120,
        daemon_tick_ms: 1000,
        port_offset: 0,
    };
    store
        .set_run_params(VERIFY_ID, &serde_json::to_string(&params).unwrap())
        .unwrap();
}

fn now_ms_u64() -> u64 {
    super::super::now_ms()
}

fn location(r: &Resp) -> Option<&str> {
    r.header("location")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_pages_and_api_need_auth_answer_errors_and_resolve_a_held_run() {
    let d = Daemon::start(&two_apps()).await;
    d.rpc(
        "package.install",
        json!({"stack_file": d.stack_file(), "apps": ["a"]}),
    )
    .await;
    let root = d.state_root();
    let secrets = StateDir::open(&root)
        .unwrap()
        .secrets()
        .all_values()
        .unwrap();
    let secret = secrets.first().expect("app a has a secret").clone();
    assert_eq!(
        vet(&root, "vet-held", 100_000).await,
        RunState::FailedHolding
    );
    assert_eq!(
        vet(&root, "vet-held2", 100_000).await,
        RunState::FailedHolding
    );
    assert_eq!(vet(&root, "vet-done", 1).await, RunState::Completed);
    verify_run(&root, &d.stack_file(), &secret);

    // Without a token: the API refuses, the pages send a browser to log in.
    for path in ["/api/runs", "/api/runs/vet-held", "/api/runs/nope"] {
        let r = request(d.addr, "GET", path, &[], b"").await;
        assert_eq!(r.status, 401, "{path}: {}", r.text());
    }
    for path in [
        "/runs",
        "/runs/vet-held",
        "/runs/vet-done/report",
        "/ui/runs/vet-held/abandon",
    ] {
        let r = request(d.addr, "GET", path, &[], b"").await;
        assert_eq!((r.status, location(&r)), (303, Some("/login")), "{path}");
    }
    for path in ["/ui/runs/vet-held/override", "/ui/runs/vet-held/abandon"] {
        let r = request(d.addr, "POST", path, &[], b"").await;
        assert_eq!(r.status, 401, "{path}");
    }

    // The list, newest first, with what each run is.
    let r = d.get("/api/runs").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let list = r.json();
    let runs = list["runs"].as_array().unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [VERIFY_ID, "vet-done", "vet-held2", "vet-held"]);
    let held = &runs[3];
    assert_eq!(held["kind"], "vet");
    assert_eq!(held["state"], "failed_holding");
    assert_eq!(held["held"], true);
    assert_eq!(held["failed_stage"], "SpecValidate");
    assert_eq!(held["label"], "held on SpecValidate");
    assert_eq!(held["tone"], "bad");
    assert_eq!(held["engine"], "none");
    assert_eq!(held["verdict"], Value::Null);
    assert_eq!(held["duration_ms"], Value::Null);
    let done = &runs[1];
    assert_eq!(
        (&done["state"], &done["verdict"], &done["held"]),
        (&json!("completed"), &json!("passed"), &json!(false))
    );
    assert!(done["duration_ms"].as_u64().is_some(), "{done}");
    assert!(done["finished_ms"].as_u64() >= done["created_ms"].as_u64());
    let verify = &runs[0];
    assert_eq!(verify["stack"], d.stack_file());
    assert_eq!(verify["engine"], "podman");
    assert_eq!(verify["verdict"], "failed");
    assert_eq!(verify["stages"], 21);
    assert_eq!(
        d.get("/api/runs?limit=2").await.json()["runs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    for bad in ["/api/runs?limit=x", "/api/runs?bogus=1"] {
        let r = d.get(bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.json()["error"], "bad-request");
    }

    // One run; unknown → 404, malformed → 400, as JSON.
    let r = d.get("/api/runs/nope").await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"], "not-found");
    assert!(r.json()["message"].as_str().unwrap().contains("nope"));
    for bad in ["/api/runs/..%2Fetc", "/api/runs/.hidden", "/api/runs/a%20b"] {
        let r = d.get(bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.json()["error"], "bad-request", "{bad}");
    }
    let r = d.get("/api/runs/vet-held").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["run"]["held"], true);
    assert_eq!(v["actions"], json!(["override", "retry", "abandon"]));
    assert_eq!(v["matrix"], Value::Null);
    assert_eq!(v["report_url"], "/runs/vet-held/report");
    let spec = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SpecValidate")
        .unwrap();
    assert_eq!(spec["state"], "failed");
    assert!(!spec["summary"].as_str().unwrap().is_empty());
    assert!(v["environment"]["berth.version"].is_string(), "{v}");
    assert_eq!(v["environment"]["engine.kind"], "none");

    // The scorecard of the verify run.
    let r = d.get(&format!("/api/runs/{VERIFY_ID}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(!text.contains(&secret), "a secret leaked: {text}");
    let v = r.json();
    assert_eq!(v["run"]["engine"], "podman 4.3.1");
    assert_eq!(v["actions"], json!([]));
    assert_eq!(v["report_url"], Value::Null, "no report file was written");
    assert_eq!(
        v["environment"]["image.localhost/app:1"],
        "sha256:0123456789abcdef"
    );
    let m = &v["matrix"];
    assert_eq!(m["all_passed"], false);
    assert_eq!(m["cells"].as_array().unwrap().len(), 9);
    let web = &m["rows"][0];
    assert_eq!(web["app"], "web");
    let cell = |name: &str| {
        web["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cell"] == name)
            .unwrap_or_else(|| panic!("no cell {name}: {web}"))
            .clone()
    };
    let installed = cell("installed");
    assert_eq!(
        (
            &installed["symbol"],
            &installed["mark"],
            &installed["passed"],
            &installed["total"]
        ),
        (&json!("●"), &json!("all"), &json!(2), &json!(2))
    );
    assert_eq!(
        (&installed["median_ms"], &installed["max_ms"]),
        (&json!(400), &json!(500))
    );
    let restart = cell("restart");
    assert_eq!(
        (&restart["symbol"], &restart["passed"], &restart["total"]),
        (&json!("◐"), &json!(1), &json!(2))
    );
    assert_eq!(cell("ui")["symbol"], "–");
    let failure = &m["failures"][0];
    assert_eq!(
        (&failure["cell"], &failure["iteration"]),
        (&json!("restart"), &json!(2))
    );
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("no new start time")
    );
    assert!(
        failure["message"].as_str().unwrap().contains("[redacted]"),
        "{failure}"
    );
    assert_eq!(
        failure["artifacts"][0]["path"],
        "artifacts/i2-restart/web/logs.txt"
    );

    // The pages, with a session.
    let (cookie, csrf) = super::login(&d).await;
    let page = |path: String| {
        let cookie = cookie.clone();
        async move { request(d.addr, "GET", &path, &[("Cookie", &cookie)], b"").await }
    };
    let dash = page("/".into()).await.text();
    assert!(
        dash.contains("data-role=\"held-count\">2 held<"),
        "the dashboard links the held runs"
    );
    let r = page("/runs".into()).await;
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(html.contains("data-role=\"held-banner\""), "{html}");
    assert!(html.contains("2 runs are held"));
    assert!(html.contains("data-run=\"vet-held\" data-state=\"failed_holding\""));
    assert!(html.contains(&format!("href=\"/runs/{VERIFY_ID}\"")));
    let r = page(format!("/runs/{VERIFY_ID}")).await;
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(!html.contains(&secret), "a secret leaked into the page");
    assert!(
        html.contains("data-cell=\"restart\" data-mark=\"some\""),
        "{html}"
    );
    assert!(html.contains("<span class=\"mark\" aria-hidden=\"true\">◐</span>"));
    assert!(!html.contains("held-banner"));
    let r = page("/runs/vet-held".into()).await;
    let html = r.text();
    assert!(html.contains("Held: stage SpecValidate failed"), "{html}");
    assert!(html.contains(&format!(
        "name=\"_csrf\" value=\"{csrf}\"><button type=\"submit\" data-action=\"override\""
    )));
    let r = page("/runs/nope".into()).await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("run nope not found"), "{}", r.text());
    assert_eq!(page("/runs/..%2Fx".into()).await.status, 400);

    // The HTML report: only the run's own, with its own strict policy.
    let r = page("/runs/vet-done/report".into()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-security-policy"),
        Some(crate::http::runs::REPORT_CSP)
    );
    assert!(r.text().contains("vet-done"));
    assert_eq!(page(format!("/runs/{VERIFY_ID}/report")).await.status, 404);
    // Everything else keeps the dashboard's policy.
    assert!(
        page("/runs".into())
            .await
            .header("content-security-policy")
            .unwrap()
            .contains("script-src 'self'")
    );

    // Actions need the CSRF token and our origin: without, nothing moves.
    let origin = format!("http://{}", d.addr);
    let post = |path: &'static str, headers: Vec<(&'static str, String)>, body: &[u8]| {
        let cookie = cookie.clone();
        let body = body.to_vec();
        async move {
            let mut h: Vec<(&str, &str)> = vec![("Cookie", cookie.as_str())];
            h.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            request(d.addr, "POST", path, &h, &body).await
        }
    };
    let form = (
        "Content-Type",
        "application/x-www-form-urlencoded".to_string(),
    );
    let r = post("/ui/runs/vet-held/override", vec![form.clone()], b"").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (403, Some("csrf")));
    let r = post(
        "/ui/runs/vet-held/override",
        vec![form.clone()],
        b"_csrf=0000000000000000000000000000000000000000000000000000000000000000",
    )
    .await;
    assert_eq!(r.status, 403);
    let field = format!("_csrf={csrf}");
    let body = field.as_bytes();
    let r = post(
        "/ui/runs/vet-held/override",
        vec![form.clone(), ("Origin", "http://evil.example".into())],
        body,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        d.get("/api/runs/vet-held").await.json()["run"]["state"],
        "failed_holding"
    );

    // Bad actions get clear answers.
    let with = |extra: Option<(&'static str, String)>| {
        let mut h = vec![form.clone(), ("Origin", origin.clone())];
        h.extend(extra);
        h
    };
    let r = post("/ui/runs/vet-held/explode", with(None), body).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = post("/ui/runs/nope/override", with(None), body).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = post("/ui/runs/..%2Fx/override", with(None), body).await;
    assert_eq!(r.status, 400, "{}", r.text());
    // Not held: 409, said on the run's page; the run is unchanged.
    let r = post("/ui/runs/vet-done/override", with(None), body).await;
    assert_eq!(r.status, 409, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains("data-role=\"flash\">override: run vet-done is already completed"),
        "{text}"
    );
    assert!(text.contains("data-run=\"vet-done\" data-state=\"completed\""));
    let r = page("/ui/runs/vet-done/abandon".into()).await;
    assert_eq!(r.status, 409);
    assert!(r.text().contains("is not held"), "{}", r.text());
    assert_eq!(
        d.get("/api/runs/vet-done").await.json()["run"]["verdict"],
        "passed"
    );

    // Retry: the stage runs again, fails again (the host did not grow
    // CPUs), and the run holds again — which the page says.
    let r = post("/ui/runs/vet-held/retry", with(None), body).await;
    assert_eq!(
        (r.status, location(&r)),
        (303, Some("/runs/vet-held?done=retry")),
        "{}",
        r.text()
    );
    let html = page("/runs/vet-held?done=retry".into()).await.text();
    assert!(
        html.contains(
            "data-role=\"flash\">Retry done: the run holds again, on stage SpecValidate.</p>"
        ),
        "{html}"
    );
    assert!(html.contains("data-role=\"held-banner\""));
    let v = d.get("/api/runs/vet-held").await.json();
    let spec = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SpecValidate")
        .unwrap()
        .clone();
    assert_eq!(
        (&spec["state"], &spec["attempts"]),
        (&json!("failed"), &json!(2))
    );
    // A page asked to say an action happened says nothing about one it
    // does not know.
    let html = page("/runs/vet-held?done=%3Cb%3Eexplode".into())
        .await
        .text();
    assert!(!html.contains("data-role=\"flash\""), "{html}");

    // Override the held run (a plain form, as without JavaScript): the run
    // completes and the page says so.
    let r = post("/ui/runs/vet-held/override", with(None), body).await;
    assert_eq!(
        (r.status, location(&r)),
        (303, Some("/runs/vet-held?done=override")),
        "{}",
        r.text()
    );
    let html = page("/runs/vet-held?done=override".into()).await.text();
    assert!(
        html.contains("data-role=\"flash\">Override done: the run is passed with overrides.</p>"),
        "{html}"
    );
    assert!(!html.contains("held-banner"));
    let v = d.get("/api/runs/vet-held").await.json();
    assert_eq!(
        (&v["run"]["state"], &v["run"]["verdict"]),
        (&json!("completed"), &json!("passed_with_overrides"))
    );
    let spec = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SpecValidate")
        .unwrap();
    assert_eq!(spec["state"], "overridden");
    let log: Vec<&str> = v["operator_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["action"].as_str().unwrap())
        .collect();
    assert_eq!(log, ["retry", "override"]);
    // The same action again: refused.
    let r = post("/ui/runs/vet-held/override", with(None), body).await;
    assert_eq!(r.status, 409);

    // Abandon asks first, then ends the run (htmx's header instead of the
    // form field works too).
    let r = page("/ui/runs/vet-held2/abandon".into()).await;
    assert_eq!(r.status, 200);
    let confirm = r.text();
    assert!(
        confirm.contains("action=\"/ui/runs/vet-held2/abandon\""),
        "{confirm}"
    );
    assert!(confirm.contains(&format!("name=\"_csrf\" value=\"{csrf}\"")));
    let r = post(
        "/ui/runs/vet-held2/abandon",
        vec![("X-Berth-CSRF", csrf.clone()), ("Origin", origin.clone())],
        b"",
    )
    .await;
    assert_eq!(
        (r.status, location(&r)),
        (303, Some("/runs/vet-held2?done=abandon")),
        "{}",
        r.text()
    );
    let v = d.get("/api/runs/vet-held2").await.json();
    assert_eq!(
        (&v["run"]["state"], &v["run"]["label"]),
        (&json!("abandoned"), &json!("abandoned on SpecValidate"))
    );
    assert_eq!(v["actions"], json!([]));
    let dash = page("/".into()).await.text();
    assert!(!dash.contains("held-count"), "no held run left");
    d.stop().await;
}
