//! Tier 2, contract: the progress readers (`berth_probe::progress`)
//! against the controllable fake daemons of `berth-fake` on loopback, and
//! their readings judged by the real tracker (`berth_core::progress`).
//!
//! Every wait polls with a deadline; the one "stays put" window (a frozen
//! tip read over and over) is what is being proven.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_core::model::{ProbeKind, ProbeSpec, ProgressSource};
use berth_core::progress::{ProgressTracker, ProgressVerdict};
use berth_fake::{App, Config, ControlRequest, Fake};
use berth_probe::progress::{ChainAccess, read_progress_at};

const TIMEOUT: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(10);

fn chain(kind: ProbeKind, fake: &Fake, password_file: Option<&Path>) -> ChainAccess {
    ChainAccess {
        spec: ProbeSpec {
            kind,
            port: fake.listen_addr().port(),
            interval: Duration::from_secs(1),
            timeout: TIMEOUT,
            down_after: Duration::from_secs(4),
            recovery_after: Duration::from_secs(3),
        },
        password_file: password_file.map(Path::to_path_buf),
    }
}

fn bitcoind_kind() -> ProbeKind {
    ProbeKind::Bitcoind {
        user: Some("berth".into()),
        password_secret: Some("btc-rpc-password".into()),
    }
}

/// A fake node making a block every `block_seconds`.
fn node(app: App, block_seconds: f64, password_file: Option<&Path>) -> Fake {
    let mut cfg = Config::for_test(app);
    cfg.height = Some(812_000);
    cfg.block_seconds = Some(block_seconds);
    if let Some(p) = password_file {
        cfg.rpc_user = Some("berth".into());
        cfg.rpc_password_file = Some(p.to_path_buf());
    }
    berth_fake::start(cfg).expect("start fake")
}

fn control(fake: &Fake, req: ControlRequest) {
    fake.control(req).expect("control");
}

async fn height(chain: &ChainAccess) -> Result<f64, String> {
    read_progress_at(
        "127.0.0.1",
        &ProgressSource::ProbeHeight,
        Some(chain),
        TIMEOUT,
    )
    .await
}

#[tokio::test]
async fn a_chain_tip_advances_then_freezes_and_the_tracker_calls_it_stuck() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "correct-horse\n").expect("secret");
    let fake = node(App::Bitcoind, 0.05, Some(&pw));
    let access = chain(bitcoind_kind(), &fake, Some(&pw));

    // Advancing: the tracker never fails while blocks come.
    let t0 = Instant::now();
    let ms = |t: Instant| t.duration_since(t0).as_millis() as u64;
    let within = Duration::from_millis(400);
    let mut tracker = ProgressTracker::new(within, 0, Duration::ZERO);
    let first = height(&access).await.expect("height");
    assert!(first >= 812_000.0, "{first}");
    let deadline = Instant::now() + WAIT;
    loop {
        let read = height(&access).await;
        let verdict = tracker.observe(read.clone(), ms(Instant::now()));
        assert!(!verdict.fails(), "{verdict:?}");
        if read.expect("height") >= first + 5.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the tip never advanced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Frozen: the same value on every read, and past `within` the tracker
    // says so, with the stuck value.
    control(
        &fake,
        ControlRequest {
            freeze: Some(true),
            ..Default::default()
        },
    );
    let stuck = height(&access).await.expect("height");
    let frozen_at = Instant::now();
    let verdict = loop {
        let read = height(&access).await;
        assert_eq!(read, Ok(stuck), "frozen");
        let verdict = tracker.observe(read, ms(Instant::now()));
        if verdict.fails() {
            break verdict;
        }
        assert!(frozen_at.elapsed() < WAIT, "never stalled: {verdict:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Not before the window passed since the last advance.
    assert!(frozen_at.elapsed() >= within - Duration::from_millis(100));
    let ProgressVerdict::Stalled { value, .. } = verdict else {
        panic!("{verdict:?}");
    };
    assert_eq!(value, stuck);
    let reason = verdict.describe("chain tip");
    assert!(
        reason.starts_with(&format!("chain tip stuck at {stuck} since "))
            && reason.ends_with("(must advance within 400ms)"),
        "{reason}"
    );
    assert!(!reason.contains("correct-horse"));

    // Thawed: advancing again.
    control(
        &fake,
        ControlRequest {
            freeze: Some(false),
            ..Default::default()
        },
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let verdict = tracker.observe(height(&access).await, ms(Instant::now()));
        if !verdict.fails() {
            assert!(matches!(verdict, ProgressVerdict::Advancing { value, .. } if value > stuck));
            break;
        }
        assert!(Instant::now() < deadline, "never advanced again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn chain_heights_and_why_there_is_none() {
    // monerod's height.
    let fake = node(App::Monerod, 3600.0, None);
    let access = chain(ProbeKind::Monerod, &fake, None);
    assert_eq!(height(&access).await, Ok(812_000.0));
    control(
        &fake,
        ControlRequest {
            height: Some(812_010),
            ..Default::default()
        },
    );
    assert_eq!(height(&access).await, Ok(812_010.0));
    // A node that is warming up or busy has no height to give.
    control(
        &fake,
        ControlRequest {
            mode: Some("busy".into()),
            ..Default::default()
        },
    );
    assert_eq!(height(&access).await, Err("status BUSY".to_string()));

    let btc = node(App::Bitcoind, 3600.0, None);
    let access = chain(
        ProbeKind::Bitcoind {
            user: None,
            password_secret: None,
        },
        &btc,
        None,
    );
    control(
        &btc,
        ControlRequest {
            mode: Some("starting".into()),
            ..Default::default()
        },
    );
    let e = height(&access).await.unwrap_err();
    assert!(e.starts_with("warming up (rpc error -28)"), "{e}");
    // A probe that reads no height, and no probe at all.
    // (The control port answers `GET /`: the http probe finds it up.)
    let mut http = chain(ProbeKind::Http { path: "/".into() }, &btc, None);
    http.spec.port = btc.control_addr().expect("control port").port();
    control(
        &btc,
        ControlRequest {
            mode: Some("synced".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        height(&http).await,
        Err("the http probe reports no height".to_string())
    );
    assert_eq!(
        read_progress_at("127.0.0.1", &ProgressSource::ProbeHeight, None, TIMEOUT).await,
        Err("the app has no chain probe to read a height from".to_string())
    );
}

#[tokio::test]
async fn a_number_in_an_http_answer() {
    // The fake's control port answers `GET /control` with its state as
    // JSON, `height` among it: a real JSON API to point into.
    let fake = node(App::Bitcoind, 3600.0, None);
    let port = fake.control_addr().expect("control port").port();
    let source = |path: &str, pointer: &str| ProgressSource::Http {
        port,
        path: path.into(),
        pointer: pointer.into(),
    };
    let read =
        |s: ProgressSource| async move { read_progress_at("127.0.0.1", &s, None, TIMEOUT).await };
    assert_eq!(read(source("/control", "/height")).await, Ok(812_000.0));
    control(
        &fake,
        ControlRequest {
            height: Some(812_345),
            ..Default::default()
        },
    );
    assert_eq!(read(source("/control", "/height")).await, Ok(812_345.0));
    assert_eq!(
        read(source("/control", "/mode")).await,
        Err(r#"GET /control: the value at "/mode" is not a number: "synced""#.to_string())
    );
    assert_eq!(
        read(source("/control", "/blocks")).await,
        Err(r#"GET /control: no value at "/blocks""#.to_string())
    );
    assert_eq!(
        read(source("/nope", "/height")).await,
        Err("GET /nope answered 404".to_string())
    );
    // The plain-text index page is not JSON.
    let e = read(source("/", "/height")).await.unwrap_err();
    assert!(e.starts_with("GET /: the answer is not JSON"), "{e}");
    // Nothing listening.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = free.local_addr().expect("addr").port();
    drop(free);
    let e = read(ProgressSource::Http {
        port: closed,
        path: "/".into(),
        pointer: String::new(),
    })
    .await
    .unwrap_err();
    assert!(e.contains(&format!("127.0.0.1:{closed}")), "{e}");
}
