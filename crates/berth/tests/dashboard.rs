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

mod common;
mod webdriver;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use webdriver::{Driver, artifacts_dir};

/// Generous bound on one wait for something the page must show.
const WAIT: Duration = Duration::from_secs(90);

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(env: &Env) -> Daemon {
        let log = env.dir.path().join("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--engine")
            .arg(&env.engine)
            .arg("--state-dir")
            .arg(env.state_dir())
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .env("BERTH_LISTEN", "127.0.0.1:0")
            .env("BERTH_TICK", "1s")
            .env("BERTH_EVENT_DEBOUNCE", "100ms")
            .env("BERTH_LOG", "info,berth_daemon=debug")
            .spawn()
            .expect("spawn berth daemon");
        let d = Daemon { child, log };
        wait_for("the daemon's HTTP API", Duration::from_secs(30), || {
            env.state_dir().join("api-address").exists()
        });
        d
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let daemon = Daemon::start(&env);
    let up = env.berth(&["up"]);
    assert!(
        up.status.success(),
        "up failed:\n{}\n{}",
        text(&up),
        daemon.log_text()
    );
    let root = env.state_dir();
    let addr = std::fs::read_to_string(root.join("api-address"))
        .unwrap()
        .trim()
        .to_string();
    let token = std::fs::read_to_string(root.join("api-token"))
        .unwrap()
        .trim()
        .to_string();
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
