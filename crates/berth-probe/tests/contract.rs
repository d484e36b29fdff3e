//! Tier 2, contract: berth's real chain-probe clients (`berth_probe::chain`)
//! against the controllable fake daemons of `berth-fake`, running in
//! process on loopback ports, in every mode. The fakes speak the real wire
//! formats (bitcoind JSON-RPC with basic auth, monerod `get_info`), so
//! these tests prove the clients parse what the daemons say — and classify
//! it by the rules of issue 4.
//!
//! No fixed sleeps: a mode change through the control API takes effect
//! before `control` returns, and the one wait (a sync that advances by
//! itself) polls with a deadline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_core::gate::ChainState;
use berth_core::model::{ProbeKind, ProbeSpec};
use berth_fake::{App, Config, ControlRequest, Fake};
use berth_probe::chain::probe_chain;

const TIMEOUT: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(10);

fn spec(kind: ProbeKind) -> ProbeSpec {
    ProbeSpec {
        kind,
        port: 0,
        interval: Duration::from_secs(1),
        timeout: TIMEOUT,
        down_after: Duration::from_secs(4),
        recovery_after: Duration::from_secs(3),
    }
}

fn bitcoind_spec(user: Option<&str>) -> ProbeSpec {
    spec(ProbeKind::Bitcoind {
        user: user.map(str::to_string),
        password_secret: Some("btc-rpc-password".into()),
    })
}

fn start(app: App) -> Fake {
    berth_fake::start(Config::for_test(app)).expect("start fake")
}

fn mode(fake: &Fake, mode: &str) {
    fake.control(ControlRequest {
        mode: Some(mode.into()),
        ..Default::default()
    })
    .expect("control");
}

/// Syncing, frozen at `height` of `target` (rate 0).
fn syncing(fake: &Fake, height: u64, target: u64) {
    fake.control(ControlRequest {
        mode: Some("syncing".into()),
        height: Some(height),
        target: Some(target),
        rate: Some(0.0),
        ..Default::default()
    })
    .expect("control");
}

async fn probe(fake: &Fake, spec: &ProbeSpec, password_file: Option<&Path>) -> ChainState {
    probe_chain(spec, &fake.listen_addr().to_string(), password_file).await
}

fn assert_unreachable(s: &ChainState, detail: &str) {
    assert!(!s.reachable, "{s:?}");
    assert!(!s.synced && !s.syncing, "{s:?}");
    assert!(
        s.detail.contains(detail),
        "{detail:?} not in {:?}",
        s.detail
    );
}

fn secret_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write secret");
    path
}

// ---------------------------------------------------------------------------
// bitcoind
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bitcoind_every_mode() {
    let fake = start(App::Bitcoind);
    let spec = spec(ProbeKind::Bitcoind {
        user: None,
        password_secret: None,
    });

    let s = probe(&fake, &spec, None).await;
    assert!(s.reachable && s.synced && !s.syncing, "{s:?}");
    assert_eq!((s.current, s.target), (Some(850_000), Some(850_000)));
    assert_eq!(s.percent, Some(100.0));
    assert_eq!(s.raw["initialblockdownload"], false);
    assert_eq!(s.raw["chain"], "main");

    syncing(&fake, 430, 1000);
    let s = probe(&fake, &spec, None).await;
    assert!(s.reachable && !s.synced && s.syncing, "{s:?}");
    assert_eq!((s.current, s.target), (Some(430), Some(1000)));
    assert_eq!(s.summary(), "syncing 43%, 430/1000");

    // Height reaching the target: synced.
    fake.control(ControlRequest {
        height: Some(1000),
        ..Default::default()
    })
    .expect("control");
    let s = probe(&fake, &spec, None).await;
    assert!(s.synced, "{s:?}");
    assert_eq!((s.current, s.target), (Some(1000), Some(1000)));

    // Warming up: RPC error -28 is not OK.
    mode(&fake, "starting");
    assert_unreachable(
        &probe(&fake, &spec, None).await,
        "warming up (rpc error -28)",
    );

    // Work queue depth exceeded: busy is down.
    mode(&fake, "busy");
    assert_unreachable(&probe(&fake, &spec, None).await, "busy (HTTP 503)");

    mode(&fake, "down");
    let s = probe(&fake, &spec, None).await;
    assert!(!s.reachable, "{s:?}");

    mode(&fake, "synced");
    assert!(probe(&fake, &spec, None).await.synced);
}

#[tokio::test]
async fn bitcoind_basic_auth_and_a_wrong_password_never_leaks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_pw = secret_file(dir.path(), "server", "correct-horse-battery\n");
    let mut cfg = Config::for_test(App::Bitcoind);
    cfg.rpc_user = Some("berth".into());
    cfg.rpc_password_file = Some(server_pw.clone());
    let fake = berth_fake::start(cfg).expect("start fake");

    // The right user and password (the secret file's trailing newline is
    // not part of the password).
    let s = probe(&fake, &bitcoind_spec(Some("berth")), Some(&server_pw)).await;
    assert!(s.synced, "{s:?}");

    // A wrong password: unreachable, with an auth message that does not
    // carry the password — neither in the state nor in its Debug output.
    let wrong = secret_file(dir.path(), "wrong", "hunter2-wrong-password");
    let s = probe(&fake, &bitcoind_spec(Some("berth")), Some(&wrong)).await;
    assert_unreachable(&s, "rpc authentication failed");
    let shown = format!("{s:?} {}", serde_json::to_string(&s).expect("json"));
    for secret in ["hunter2-wrong-password", "correct-horse-battery"] {
        assert!(!shown.contains(secret), "{shown}");
    }

    // A wrong user, and no credentials at all.
    let s = probe(&fake, &bitcoind_spec(Some("admin")), Some(&server_pw)).await;
    assert_unreachable(&s, "rpc authentication failed");
    let s = probe(&fake, &bitcoind_spec(Some("berth")), None).await;
    assert_unreachable(&s, "rpc authentication failed");

    // A secret file that is missing is reported by path, not guessed.
    let missing = dir.path().join("missing");
    let s = probe(&fake, &bitcoind_spec(Some("berth")), Some(&missing)).await;
    assert_unreachable(&s, "cannot read the rpc password file");
}

#[tokio::test]
async fn bitcoind_sync_advances_by_itself_until_synced() {
    let fake = start(App::Bitcoind);
    fake.control(ControlRequest {
        mode: Some("syncing".into()),
        height: Some(0),
        target: Some(2000),
        rate: Some(4000.0),
        ..Default::default()
    })
    .expect("control");
    let spec = spec(ProbeKind::Bitcoind {
        user: None,
        password_secret: None,
    });
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let s = probe(&fake, &spec, None).await;
        seen.push(s.current);
        if s.synced {
            assert_eq!(s.current, Some(2000));
            break;
        }
        assert!(s.syncing, "{s:?}");
        assert!(Instant::now() < deadline, "never synced: {seen:?}");
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------------------
// monerod
// ---------------------------------------------------------------------------

#[tokio::test]
async fn monerod_every_mode() {
    let fake = start(App::Monerod);
    let spec = spec(ProbeKind::Monerod);

    let s = probe(&fake, &spec, None).await;
    assert!(s.reachable && s.synced && !s.syncing, "{s:?}");
    // A synchronized monerod 0.18 reports target_height 0: no target.
    assert_eq!((s.current, s.target), (Some(3_200_000), None));
    assert_eq!(s.raw["status"], "OK");
    assert_eq!(s.raw["synchronized"], true);

    syncing(&fake, 1_600_000, 3_200_000);
    let s = probe(&fake, &spec, None).await;
    assert!(s.reachable && !s.synced && s.syncing, "{s:?}");
    assert_eq!(s.summary(), "syncing 50%, 1600000/3200000");
    assert_eq!(s.raw["busy_syncing"], true);

    // height == target: synced.
    fake.control(ControlRequest {
        height: Some(3_200_000),
        ..Default::default()
    })
    .expect("control");
    let s = probe(&fake, &spec, None).await;
    assert!(s.synced, "{s:?}");
    assert_eq!((s.current, s.target), (Some(3_200_000), None));

    // Restarted with no peers: target_height 0, synchronized false. It
    // answers, so it is up — but it is not synced.
    mode(&fake, "starting");
    let s = probe(&fake, &spec, None).await;
    assert!(s.reachable && !s.synced && !s.syncing, "{s:?}");
    assert_eq!(s.raw["target_height"], 0);
    assert_eq!(s.summary(), "not synced, height 1");

    // status BUSY: unreachable.
    mode(&fake, "busy");
    let s = probe(&fake, &spec, None).await;
    assert_unreachable(&s, "status BUSY");
    assert_eq!(s.raw["status"], "BUSY");

    mode(&fake, "down");
    assert!(!probe(&fake, &spec, None).await.reachable);

    mode(&fake, "synced");
    assert!(probe(&fake, &spec, None).await.synced);
}

// ---------------------------------------------------------------------------
// Generic HTTP and TCP apps
// ---------------------------------------------------------------------------

#[tokio::test]
async fn http_probe_every_mode() {
    let fake = start(App::Http);
    let health = spec(ProbeKind::Http {
        path: "/health".into(),
    });
    let s = probe(&fake, &health, None).await;
    assert!(s.reachable && s.synced, "{s:?}");
    assert_eq!(s.detail, "GET /health answered 200");
    // The generic app is healthy while it syncs: an HTTP probe cannot see
    // chain progress, only 2xx.
    syncing(&fake, 1, 10);
    assert!(probe(&fake, &health, None).await.synced);
    for m in ["busy", "starting", "down"] {
        mode(&fake, m);
        assert_unreachable(&probe(&fake, &health, None).await, "answered 503");
    }
    mode(&fake, "synced");
    let missing = spec(ProbeKind::Http {
        path: "/nope".into(),
    });
    assert_unreachable(&probe(&fake, &missing, None).await, "answered 404");
}

#[tokio::test]
async fn tcp_probe_every_mode() {
    let fake = start(App::Tcp);
    let tcp = spec(ProbeKind::Tcp);
    assert!(probe(&fake, &tcp, None).await.synced);
    // A TCP probe only proves the port accepts: busy and starting still
    // accept (and then write BUSY/STARTING), so they count as up.
    for m in ["syncing", "busy", "starting"] {
        mode(&fake, m);
        assert!(probe(&fake, &tcp, None).await.reachable, "{m}");
    }
    mode(&fake, "down");
    assert!(!probe(&fake, &tcp, None).await.reachable);
}

#[tokio::test]
async fn nothing_listening_and_no_answer_in_time_are_unreachable() {
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    for kind in [
        ProbeKind::Monerod,
        ProbeKind::Http { path: "/".into() },
        ProbeKind::Tcp,
        ProbeKind::Bitcoind {
            user: None,
            password_secret: None,
        },
    ] {
        let s = probe_chain(&spec(kind), &closed.to_string(), None).await;
        assert!(!s.reachable, "{s:?}");
    }
    // A server that accepts and never answers: the timeout bounds the probe.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let mut short = spec(ProbeKind::Monerod);
    short.timeout = Duration::from_millis(200);
    let started = Instant::now();
    let s = probe_chain(&short, &addr.to_string(), None).await;
    assert_unreachable(&s, "no answer within 200ms");
    assert!(started.elapsed() < WAIT);
    drop(silent);
}

#[tokio::test]
async fn probe_container_without_an_address_is_unreachable() {
    let engine = berth_engine::fake::FakeEngine::new();
    let target = berth_probe::health::Target {
        container: "demo-monerod",
        network: "demo",
    };
    let s = berth_probe::chain::probe_container(&engine, &target, &spec(ProbeKind::Monerod), None)
        .await;
    assert_unreachable(&s, "has no address on network demo");
}
