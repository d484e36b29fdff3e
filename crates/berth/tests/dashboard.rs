//! The dashboard in a real browser (tier 3): Debian's headless Chromium
//! driven over WebDriver (`chromedriver`), against the real `berth daemon`
//! on a real engine (BERTH_TEST_ENGINES, default both; a requested engine
//! that is missing fails the test). Screenshots of every step go to
//! `target/test-artifacts/dashboard-<engine>-*.png`.
//!
//! The stack: `node`, a bitcoind-like fake that syncs from 50% to 100% in
//! about 30 s (RPC password from a secret); `gated`, which waits for it
//! (held with a progress bar, then released); `web`, an HTTP app with a
//! health check, a volume and a published web UI.
//!
//! The runs pages get their own test: `berth vet` runs made beside the
//! daemon (one finished with the engine stage, two held on a critical
//! spec difference), listed, opened, overridden and abandoned from the
//! browser (screenshots `runs-<engine>-*.png`).

mod common;
mod webdriver;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use webdriver::{Driver, artifacts_dir};

/// Generous bound on one wait for something the page must show.
const WAIT: Duration = Duration::from_secs(90);

/// The daemon (`common::Daemon`, tick 1 s) with its HTTP API on `listen`,
/// once the API's address is written too.
fn start_daemon_on(env: &Env, listen: &str) -> Daemon {
    let d = Daemon::start(
        env,
        &[
            ("BERTH_LISTEN", listen),
            ("BERTH_TICK", "1s"),
            ("BERTH_EVENT_DEBOUNCE", "100ms"),
        ],
    );
    wait_for("the daemon's HTTP API", Duration::from_secs(30), || {
        env.state_dir().join("api-address").exists()
    });
    d
}

fn start_daemon(env: &Env) -> Daemon {
    start_daemon_on(env, "127.0.0.1:0")
}

/// A file the daemon writes into the state directory (`api-address`,
/// `api-token`), trimmed.
fn state_file(env: &Env, name: &str) -> String {
    std::fs::read_to_string(env.state_dir().join(name))
        .unwrap()
        .trim()
        .to_string()
}

/// A GET with the bearer token; the whole raw answer.
fn get(addr: &str, path: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stack(web_port: u16) -> String {
    let node = format!(
        "[apps.node]\nimage = \"{IMAGE}\"\nentrypoint = [\"/bin/berth-fake\"]\ncommand = [\"bitcoind\", \"--listen\", \"0.0.0.0:8332\", \"--control\", \"0.0.0.0:9100\", \"--rpc-user\", \"berth\", \"--rpc-password-file\", \"/run/secrets/rpc-pass\", \"--mode\", \"syncing\", \"--height\", \"500\", \"--target\", \"1000\", \"--sync-seconds\", \"30\", \"--quiet\"]\nsecrets = [\"rpc-pass\"]\nstop_grace = \"5s\"\n\n[apps.node.probe]\nkind = \"bitcoind\"\nport = 8332\nuser = \"berth\"\npassword_secret = \"rpc-pass\"\ninterval = \"1s\"\ntimeout = \"1s\"\n\n"
    );
    let gated = format!(
        "[apps.gated]\nimage = \"{IMAGE}\"\nentrypoint = [\"/bin/berth-fake\"]\ncommand = [\"tcp\", \"--listen\", \"0.0.0.0:3333\", \"--control\", \"0.0.0.0:9100\", \"--banner\", \"gated\", \"--quiet\"]\ndepends_on = {{ node = \"started\" }}\nstop_grace = \"5s\"\n\n[apps.gated.gate]\nwait_for = [\"node\"]\n\n"
    );
    let web = web(
        "web",
        &format!(
            "ports = [\"127.0.0.1:{web_port}:8080\"]\nweb_ui = {{ port = {web_port}, path = \"/\" }}"
        ),
    );
    format!("{node}{gated}{web}")
}

/// The `value` of a progress bar (0 when absent).
fn progress(d: &Driver, css: &str) -> f64 {
    d.js(
        "const p = document.querySelector(arguments[0]); return p ? p.value : 0;",
        json!([css]),
    )
    .as_f64()
    .unwrap_or(0.0)
}

fn state_of(d: &Driver, app: &str) -> String {
    d.js(
        "const c = document.getElementById('app-' + arguments[0]); return c ? c.dataset.state : '';",
        json!([app]),
    )
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// Wait until `app`'s card shows `want` (and htmx has settled its classes:
/// it keeps the old `class` for a moment after a swap).
fn wait_state(d: &Driver, app: &str, want: &str) {
    d.wait_js(
        &format!("{app} to show {want}"),
        WAIT,
        &format!(
            "const c = document.getElementById('app-{app}'); return c && c.dataset.state === '{want}' && !c.classList.contains('htmx-settling');"
        ),
    );
}

#[test]
fn dashboard_in_chromium_logs_in_shows_the_stack_and_updates_live() {
    for engine in engines() {
        dashboard_on(&engine);
    }
}

fn dashboard_on(engine: &str) {
    let env = Env::new(engine, "ui");
    let port = free_port();
    env.write_stack(&stack(port));
    let daemon = start_daemon(&env);
    let up = env.berth(&["up"]);
    assert!(
        up.status.success(),
        "up failed:\n{}\n{}",
        text(&up),
        daemon.log_text()
    );
    let (addr, token) = (
        state_file(&env, "api-address"),
        state_file(&env, "api-token"),
    );
    let base = format!("http://{addr}");
    // `berth token` shows the same token again (and makes no new one).
    let shown = env.ok(&["token"]);
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), token);
    let shown = env.ok(&["token", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        (shown["token"].as_str(), shown["created"].as_bool()),
        (Some(token.as_str()), Some(false))
    );
    assert_eq!(shown["dashboard"], format!("http://{addr}/"));
    let shot = |d: &Driver, name: &str| {
        d.screenshot(&artifacts_dir().join(format!("dashboard-{engine}-{name}.png")));
    };
    let mut pages: Vec<String> = Vec::new();

    let d = Driver::start(&[]);
    // Not logged in: the dashboard sends the browser to the login form.
    d.goto(&format!("{base}/"));
    assert!(d.url().ends_with("/login"), "{}", d.url());
    d.type_into("#token", "not-the-token");
    d.click("#login-submit");
    d.wait_js(
        "the wrong-token message",
        WAIT,
        "return document.getElementById('login-error') !== null;",
    );
    d.type_into("#token", &token);
    d.click("#login-submit");
    d.wait_js(
        "three cards and a live stream",
        WAIT,
        "return document.querySelectorAll('.card').length === 3 && document.body.dataset.live === '1';",
    );
    shot(&d, "01-loaded");
    pages.push(d.page_source());

    // The held app: its progress bar (the node's sync) moves while the
    // node syncs, and so does the sync panel's gauge — without a reload.
    d.js("window.__berthMarker = 7; return 1;", json!([]));
    wait_state(&d, "gated", "held");
    let held_detail = d
        .js(
            "return document.querySelector('#app-gated [data-role=detail]').textContent;",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(held_detail.contains("waiting for node"), "{held_detail}");
    let p1 = progress(&d, "#app-gated progress");
    let g1 = progress(&d, "[data-node=node] progress");
    assert!(p1 > 0.0 && g1 > 0.0, "progress bars show: {p1} {g1}");
    shot(&d, "02-held");
    let started = Instant::now();
    loop {
        let (p2, g2) = (
            progress(&d, "#app-gated progress"),
            progress(&d, "[data-node=node] progress"),
        );
        if (p2 > p1 && g2 > g1) || state_of(&d, "gated") == "running" {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the held app's progress never moved from {p1}%"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    shot(&d, "03-held-progress-moved");

    // Stop an app: its badge turns grey without a reload.
    d.click("#app-web button[data-action=stop]");
    wait_state(&d, "web", "stopped");
    let (badge, card_class) = (
        d.js(
            "return document.querySelector('#app-web [data-role=badge]').textContent;",
            json!([]),
        ),
        d.js(
            "return document.getElementById('app-web').className;",
            json!([]),
        ),
    );
    assert_eq!(badge, "stopped");
    assert!(
        card_class.as_str().unwrap().contains("tone-idle"),
        "{card_class}"
    );
    assert_eq!(
        d.js("return window.__berthMarker;", json!([])),
        7,
        "the page was not reloaded"
    );
    shot(&d, "04-stopped");
    assert!(!env.running(&env.container("web")));

    // Start it again.
    d.click("#app-web button[data-action=start]");
    wait_state(&d, "web", "running");
    shot(&d, "05-started");
    assert!(env.running(&env.container("web")));

    // The node syncs: the held app is released and runs.
    wait_state(&d, "gated", "running");
    d.wait_js(
        "the sync gauge to show synced",
        WAIT,
        "const s = document.querySelector('[data-node=node] [data-role=sync-state]'); return s && s.textContent === 'synced';",
    );
    assert_eq!(
        d.js("return window.__berthMarker;", json!([])),
        7,
        "still no reload"
    );
    shot(&d, "06-released");
    pages.push(d.page_source());

    // Phone width: one column, nothing wider than the screen.
    d.set_size(390, 844);
    d.wait_js(
        "no horizontal overflow at phone width",
        Duration::from_secs(5),
        "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
    );
    shot(&d, "07-phone");
    d.set_size(1280, 1000);

    // Uninstall asks first and names what goes.
    d.click("#app-web [data-action=uninstall]");
    d.wait_js("the confirmation", WAIT, "const f = document.querySelector('#dialog [data-role=confirm]'); return f !== null && document.getElementById('dialog').open;");
    let confirm = d
        .js(
            "return document.getElementById('dialog').textContent;",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string();
    let container = env.container("web");
    assert!(confirm.contains(&container), "{confirm}");
    assert!(confirm.contains(&format!("{container}-data")), "{confirm}");
    shot(&d, "08-confirm-uninstall");
    d.js(
        "const f = document.getElementById('flash'); f.innerHTML = ''; return 1;",
        json!([]),
    );
    d.click("#dialog [data-action=confirm-uninstall]");
    let flash = d.wait_js(
        "the answer to the uninstall",
        WAIT,
        "const f = document.querySelector('#flash [data-role=flash]'); return f ? f.textContent : '';",
    );
    assert!(
        flash
            .as_str()
            .unwrap_or_default()
            .contains("uninstalled web"),
        "{flash}\n{}",
        daemon.log_text()
    );
    d.wait_js(
        "the web card to go",
        WAIT,
        "return document.getElementById('app-web') === null && document.querySelectorAll('.card').length === 2;",
    );
    assert!(!env.exists(&container));
    shot(&d, "09-uninstalled");
    pages.push(d.page_source());
    drop(d);

    // Without JavaScript: the login form and the read-only view still work.
    let n = Driver::start(&["--blink-settings=scriptEnabled=false"]);
    n.goto(&format!("{base}/login"));
    n.type_into("#token", &token);
    n.click("#login-submit");
    let started = Instant::now();
    while n.find("#app-gated").is_none() {
        assert!(started.elapsed() < WAIT, "no cards without JavaScript");
        std::thread::sleep(Duration::from_millis(200));
    }
    let src = n.page_source();
    assert!(
        src.contains("data-state=\"running\""),
        "badges render without JavaScript"
    );
    assert!(
        src.contains("http-equiv=\"refresh\""),
        "the page refreshes itself"
    );
    shot(&n, "10-no-javascript");
    pages.push(src);
    drop(n);

    // What API clients get on the real engine, too.
    for path in [
        "/api/state",
        "/api/apps/node",
        "/api/events?limit=1000",
        "/metrics",
    ] {
        let body = get(&addr, path, &token);
        assert!(body.starts_with("HTTP/1.1 200"), "{path}: {body}");
        pages.push(body);
    }
    let logs = env.ok(&["logs", "node", "--json"]);
    pages.push(String::from_utf8_lossy(&logs.stdout).into_owned());

    // No secret and no token in anything the browser or a client got, nor
    // in the daemon's log.
    let secrets = env.secret_files();
    assert!(!secrets.is_empty());
    let values: Vec<String> = secrets
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let log = daemon.log_text();
    for page in pages.iter().chain(std::iter::once(&log)) {
        for v in &values {
            assert!(!page.contains(v.as_str()), "a secret leaked");
        }
        assert!(!page.contains(&token), "the token leaked");
    }
    drop(daemon);
}

/// `berth vet` on the test's state directory (beside the running daemon, as
/// an operator would): small disk and memory tests, floors any disk meets.
/// `min_cpus` beyond the host's holds the run on SpecValidate; `engine`
/// false skips the Engine stage. Returns (exit code, run id).
fn vet(env: &Env, min_cpus: u32, engine: bool) -> (i32, String) {
    let data = env.dir.path().join("vet-data");
    std::fs::create_dir_all(&data).unwrap();
    let spec = env.dir.path().join(format!("spec-{min_cpus}.toml"));
    std::fs::write(&spec, format!("min_cpus = {min_cpus}\n")).unwrap();
    let mut args = vec![
        "vet",
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
    ];
    if !engine {
        args.push("--no-engine");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--engine")
        .arg(&env.engine)
        .arg("--state-dir")
        .arg(env.state_dir())
        .args(&args)
        .env_remove("BERTH_CRASH_AFTER_STEP")
        .output()
        .expect("run berth vet");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("vet --json is not JSON ({e}):\n{}", text(&out)));
    let id = summary["run_id"].as_str().unwrap_or_default().to_string();
    assert!(!id.is_empty(), "{summary}");
    (out.status.code().unwrap_or(-1), id)
}

/// The text of the first element matching `css` ('' when absent).
fn text_of(d: &Driver, css: &str) -> String {
    d.js(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
        json!([css]),
    )
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// Wait until the run page shows run `id` in `state`.
fn wait_run_page(d: &Driver, id: &str, state: &str) {
    d.wait_js(
        &format!("the page of run {id} showing {state}"),
        WAIT,
        &format!(
            "const m = document.querySelector('main[data-run]'); return m !== null && m.dataset.run === '{id}' && m.dataset.state === '{state}' && document.readyState === 'complete';"
        ),
    );
}

/// The runs of `berth vet` in a real browser: a finished vet (with the
/// engine stage on the real engine) and two held ones; the Runs page lists
/// them newest first with the held ones called out; a held run's page
/// names the failed stage; Override completes it, Abandon (after its
/// confirmation) ends the other; the HTML report opens from the run page.
#[test]
fn runs_in_chromium_list_held_and_finished_runs_and_resolve_a_held_one() {
    for engine in engines() {
        runs_on(&engine);
    }
}

fn runs_on(engine: &str) {
    let env = Env::new(engine, "runs");
    let daemon = start_daemon(&env);
    let (code, done_id) = vet(&env, 1, true);
    assert_eq!(code, 0, "the vet with the engine stage passes");
    // Not a readiness wait: each run must start in a millisecond of its
    // own, so the runs list has a defined order.
    std::thread::sleep(Duration::from_millis(5));
    let (code, held_id) = vet(&env, 100_000, false);
    assert_eq!(code, 1, "a critical spec difference holds the vet");
    std::thread::sleep(Duration::from_millis(5));
    let (code, other_id) = vet(&env, 100_000, false);
    assert_eq!(code, 1);

    let (addr, token) = (
        state_file(&env, "api-address"),
        state_file(&env, "api-token"),
    );
    let base = format!("http://{addr}");
    let shot = |d: &Driver, name: &str| {
        d.screenshot(&artifacts_dir().join(format!("runs-{engine}-{name}.png")));
    };
    let mut pages: Vec<String> = Vec::new();

    let d = Driver::start(&[]);
    // A run page sends a browser that is not logged in to the login form.
    d.goto(&format!("{base}/runs/{held_id}"));
    assert!(d.url().ends_with("/login"), "{}", d.url());
    d.type_into("#token", &token);
    d.click("#login-submit");
    d.wait_js(
        "the dashboard",
        WAIT,
        "return document.querySelector('[data-role=nav-runs]') !== null;",
    );
    // The dashboard's navigation counts the held runs and leads to them.
    assert_eq!(text_of(&d, "[data-role=held-count]"), "2 held");
    d.click("[data-role=nav-runs]");
    d.wait_js(
        "the runs page",
        WAIT,
        "return document.getElementById('runs') !== null;",
    );
    assert!(d.url().ends_with("/runs"), "{}", d.url());
    let ids = d.js(
        "return Array.from(document.querySelectorAll('#runs tr[data-run]')).map(r => r.dataset.run);",
        json!([]),
    );
    assert_eq!(
        ids,
        json!([other_id, held_id, done_id]),
        "newest first, every run"
    );
    let state_of_row = |id: &str| {
        text_of(
            &d,
            &format!("#runs tr[data-run='{id}'] [data-role=run-state]"),
        )
    };
    assert_eq!(state_of_row(&held_id), "held on SpecValidate");
    assert_eq!(state_of_row(&done_id), "passed");
    let held_class = d.js(
        "return document.querySelector(\"#runs tr[data-run='\" + arguments[0] + \"']\").className;",
        json!([held_id]),
    );
    assert!(
        held_class.as_str().unwrap().contains("held"),
        "{held_class}"
    );
    let banner = text_of(&d, "[data-role=held-banner]");
    assert!(
        banner.contains("2 runs are held")
            && banner.contains(&held_id)
            && banner.contains(&other_id)
            && banner.contains("SpecValidate")
            && !banner.contains(&done_id),
        "{banner}"
    );
    let engine_cell = d.js(
        "return document.querySelector(\"#runs tr[data-run='\" + arguments[0] + \"'] td:nth-of-type(3)\").textContent;",
        json!([done_id]),
    );
    assert_eq!(engine_cell, engine, "the finished vet used the engine");
    shot(&d, "01-list");
    pages.push(d.page_source());

    // The held run's page: the banner names the failed stage and offers
    // the three actions.
    d.click(&format!("#runs tr[data-run='{held_id}'] th a"));
    wait_run_page(&d, &held_id, "failed_holding");
    let banner = text_of(&d, "[data-role=held-banner]");
    assert!(
        banner.contains("Held: stage SpecValidate failed"),
        "{banner}"
    );
    assert!(
        banner.contains("expected at least 100000"),
        "the stage's summary: {banner}"
    );
    for action in ["override", "retry", "abandon"] {
        assert!(
            d.find(&format!("[data-role=held-banner] [data-action={action}]"))
                .is_some(),
            "no {action}"
        );
    }
    let spec_state = d.js(
        "return document.querySelector('tr[data-stage=SpecValidate]').dataset.state;",
        json!([]),
    );
    assert_eq!(spec_state, "failed");
    let env_text = text_of(&d, "[data-role=environment]");
    assert!(
        env_text.contains("berth version") && env_text.contains("kernel"),
        "{env_text}"
    );
    shot(&d, "02-held");
    pages.push(d.page_source());

    // Override: the run completes, and the page says so.
    d.click("[data-role=held-banner] button[data-action=override]");
    wait_run_page(&d, &held_id, "completed");
    let flash = text_of(&d, "[data-role=flash]");
    assert_eq!(
        flash,
        "Override done: the run is passed with overrides.",
        "{}",
        daemon.log_text()
    );
    assert_eq!(
        text_of(&d, "h2 [data-role=run-state]"),
        "passed with overrides"
    );
    assert!(d.find("[data-role=held-banner]").is_none());
    let spec_state = d.js(
        "return document.querySelector('tr[data-stage=SpecValidate]').dataset.state;",
        json!([]),
    );
    assert_eq!(spec_state, "overridden");
    assert!(text_of(&d, ".operator-log").contains("override"));
    shot(&d, "03-overridden");
    pages.push(d.page_source());

    // Abandon asks first, then ends the other held run.
    d.goto(&format!("{base}/runs/{other_id}"));
    wait_run_page(&d, &other_id, "failed_holding");
    d.click("[data-role=held-banner] [data-action=abandon]");
    d.wait_js(
        "the abandon confirmation",
        WAIT,
        "return document.querySelector('[data-role=confirm]') !== null;",
    );
    assert!(text_of(&d, "[data-role=confirm]").contains(&format!("Abandon run {other_id}?")));
    shot(&d, "04-confirm-abandon");
    d.click("[data-action=confirm-abandon]");
    wait_run_page(&d, &other_id, "abandoned");
    assert_eq!(
        text_of(&d, "[data-role=flash]"),
        "Abandon done: the run is abandoned on SpecValidate."
    );
    shot(&d, "05-abandoned");

    // Back on the list: nothing is held any more.
    d.click("[data-role=nav-runs]");
    d.wait_js(
        "the runs page again",
        WAIT,
        "return document.getElementById('runs') !== null && document.readyState === 'complete';",
    );
    assert!(d.find("[data-role=held-banner]").is_none());
    assert!(d.find("[data-role=held-count]").is_none());
    assert_eq!(state_of_row(&held_id), "passed with overrides");
    assert_eq!(state_of_row(&other_id), "abandoned on SpecValidate");
    shot(&d, "06-list-resolved");
    pages.push(d.page_source());
    // Phone width: the tables scroll inside their box, the page does not.
    d.set_size(390, 844);
    d.wait_js(
        "no horizontal overflow of the runs page at phone width",
        Duration::from_secs(5),
        "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
    );
    shot(&d, "06b-list-phone");
    d.goto(&format!("{base}/runs/{held_id}"));
    wait_run_page(&d, &held_id, "completed");
    d.wait_js(
        "no horizontal overflow of a run page at phone width",
        Duration::from_secs(5),
        "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
    );
    shot(&d, "06c-run-phone");
    d.set_size(1280, 1000);

    // The finished run's HTML report opens from its page.
    d.goto(&format!("{base}/runs/{done_id}"));
    wait_run_page(&d, &done_id, "completed");
    assert!(text_of(&d, "[data-role=environment]").contains("image localhost/berth-demo:latest"));
    d.click("[data-role=report-link]");
    d.wait_js(
        "the HTML report",
        WAIT,
        &format!(
            "return document.title.indexOf('{done_id}') >= 0 && document.readyState === 'complete';"
        ),
    );
    assert!(
        d.url().ends_with(&format!("/runs/{done_id}/report")),
        "{}",
        d.url()
    );
    shot(&d, "07-report");
    pages.push(d.page_source());
    drop(d);

    // Without JavaScript the runs pages are the same plain pages.
    let n = Driver::start(&["--blink-settings=scriptEnabled=false"]);
    n.goto(&format!("{base}/login"));
    n.type_into("#token", &token);
    n.click("#login-submit");
    let started = Instant::now();
    while n.find("[data-role=nav-runs]").is_none() {
        assert!(started.elapsed() < WAIT, "no dashboard without JavaScript");
        std::thread::sleep(Duration::from_millis(200));
    }
    n.goto(&format!("{base}/runs/{held_id}"));
    let started = Instant::now();
    while n.find("main[data-run]").is_none() {
        assert!(started.elapsed() < WAIT, "no run page without JavaScript");
        std::thread::sleep(Duration::from_millis(200));
    }
    let src = n.page_source();
    assert!(
        src.contains("data-state=\"completed\"")
            && src.contains("data-stage=\"SpecValidate\" data-state=\"overridden\""),
        "the run page renders without JavaScript"
    );
    shot(&n, "08-no-javascript");
    pages.push(src);
    drop(n);

    // Scripts get the same runs as JSON.
    let list = get(&addr, "/api/runs", &token);
    assert!(list.starts_with("HTTP/1.1 200"), "{list}");
    let body: serde_json::Value =
        serde_json::from_str(list.split_once("\r\n\r\n").unwrap().1).unwrap();
    let states: Vec<(String, String)> = body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["label"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (other_id.clone(), "abandoned on SpecValidate".to_string()),
            (held_id.clone(), "passed with overrides".to_string()),
            (done_id.clone(), "passed".to_string()),
        ]
    );
    let missing = get(&addr, "/api/runs/no-such-run", &token);
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    pages.push(list);

    let log = daemon.log_text();
    for page in pages.iter().chain(std::iter::once(&log)) {
        assert!(!page.contains(&token), "the token leaked");
    }
    drop(daemon);
}

/// Live updates degrade to a plain refresh: when the stream fails (the
/// daemon is killed), the page says so at once and reloads itself a few
/// seconds later. Sessions live in the daemon's memory, so the reload of a
/// page served by the restarted daemon lands on the login form; logging in
/// again brings the live page back. The browser side does not depend on the
/// engine, so this runs on the first engine only.
#[test]
fn the_page_falls_back_to_a_reload_when_the_live_stream_fails() {
    let engine = engines().into_iter().next().expect("an engine");
    let env = Env::new(&engine, "ssefail");
    env.write_stack(&sleeper("app", ""));
    let listen = format!("127.0.0.1:{}", free_port());
    let daemon = start_daemon_on(&env, &listen);
    let up = env.berth(&["up"]);
    assert!(up.status.success(), "{}\n{}", text(&up), daemon.log_text());
    let token = state_file(&env, "api-token");
    let base = format!("http://{listen}");
    let login = |d: &Driver| {
        d.type_into("#token", &token);
        d.click("#login-submit");
        d.wait_js(
            "the live page",
            WAIT,
            "return document.getElementById('app-app') !== null && document.body.dataset.live === '1';",
        );
    };
    let d = Driver::start(&[]);
    d.goto(&format!("{base}/login"));
    login(&d);
    assert!(
        d.js("return document.getElementById('conn').hidden;", json!([])) == json!(true),
        "no interruption banner while live"
    );
    d.js("window.__berthMarker = 11; return 1;", json!([]));

    // The daemon dies: the page says so, without a reload.
    drop(daemon);
    d.wait_js(
        "the interruption banner",
        WAIT,
        "return document.getElementById('conn').hidden === false && document.body.dataset.live === '0';",
    );
    assert_eq!(
        d.js("return window.__berthMarker || 0;", json!([])),
        json!(11),
        "the banner came without a reload"
    );

    // A new daemon on the same address: the page's own reload reaches it
    // and, the session being gone, shows the login form.
    let _ = std::fs::remove_file(env.state_dir().join("api-address"));
    let daemon = start_daemon_on(&env, &listen);
    d.wait_js(
        "the fallback reload to the login form",
        WAIT,
        "return location.pathname === '/login' && !window.__berthMarker;",
    );
    login(&d);
    assert!(
        d.js("return document.getElementById('conn').hidden;", json!([])) == json!(true),
        "live again: {}",
        daemon.log_text()
    );
    drop(d);
    let down = env.berth(&["down"]);
    assert!(down.status.success(), "{}", text(&down));
}
