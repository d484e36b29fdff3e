//! Unit tests of the daemon's gate executor on `FakeEngine` with paused
//! time and chain probes answered by the test (`Supervisor::with_chain_probe`):
//! what the loop does with `plan_gates`' plans — claims, persistence, the
//! engine's verdicts, supervision leaving gated apps alone, a restarted
//! daemon. The planner's rules have their own tables in
//! `berth-core/tests/gates.rs`; the real probe clients their contract tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::classify::EngineStatus;
use berth_core::gate::ChainState;
use berth_core::supervise::plan_tick;
use berth_engine::{CallKind, Engine, FakeEngine};
use berth_ops::{Ctx, Quiet};
use berth_store::{Desired, StateDir};
use tokio::sync::mpsc;

use crate::Clock;
use crate::config::Settings;
use crate::supervisor::Supervisor;

const IMAGE: &str = "localhost/app:1";

const STACK: &str = r#"[stack]
name = "s"
start_timeout = "5s"

[apps.n]
image = "localhost/app:1"
stop_grace = "5s"

[apps.n.probe]
kind = "tcp"
port = 7000
interval = "1s"
timeout = "1s"
down_after = "4s"
recovery_after = "3s"

[apps.a]
image = "localhost/app:1"
stop_grace = "5s"
depends_on = { n = "started" }

[apps.a.gate]
wait_for = ["n"]
reject_when_down = ["n"]

[apps.b]
image = "localhost/app:1"
stop_grace = "5s"
depends_on = { a = "started" }
"#;

type Chain = Arc<Mutex<BTreeMap<String, ChainState>>>;

struct World {
    _tmp: tempfile::TempDir,
    state: StateDir,
    fake: FakeEngine,
    ctx: Arc<Ctx>,
    chain: Chain,
}

/// The stack installed by hand (records and containers, no operation, so
/// no real probe runs): `n` running, `a` created and held (as an install
/// leaves it), `b` (depends on `a`) created.
async fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("berth.toml");
    std::fs::write(&file, STACK).unwrap();
    let fake = FakeEngine::new();
    fake.add_image(IMAGE);
    let state = StateDir::open(&tmp.path().join("state")).unwrap();
    let ctx = Ctx::new(Arc::new(fake.clone()), state.clone(), Arc::new(Quiet)).unwrap();
    let stack = berth_ops::load_stack_file(&file).unwrap();
    fake.ensure_network("s", &BTreeMap::new()).await.unwrap();
    for id in ["n", "a", "b"] {
        let app = &stack.apps[id];
        let spec = berth_ops::install::spec_for(&ctx, &stack, app);
        fake.create_container(&spec).await.unwrap();
        ctx.store()
            .put_app(&berth_ops::stackdb::record_for(
                &stack,
                app,
                Some(&file.display().to_string()),
                Desired::Running,
                None,
            ))
            .unwrap();
    }
    fake.start_container("s-n").await.unwrap();
    fake.take_calls();
    World {
        _tmp: tmp,
        state,
        fake,
        ctx,
        chain: Arc::new(Mutex::new(BTreeMap::from([("n".to_string(), syncing())]))),
    }
}

fn settings() -> Settings {
    let mut s = Settings {
        tick: Duration::from_secs(1),
        ..Settings::default()
    };
    s.supervision.backoff_initial = Duration::from_secs(1);
    s.supervision.backoff_max = Duration::from_secs(4);
    s
}

fn supervisor(w: &World) -> Supervisor {
    let (tx, _rx) = mpsc::channel(64);
    let chain = w.chain.clone();
    Supervisor::new(
        w.ctx.clone(),
        settings(),
        plan_tick,
        tx,
        Clock::at(1_000_000),
    )
    .with_chain_probe(Arc::new(move |node: &str| {
        chain
            .lock()
            .unwrap()
            .get(node)
            .cloned()
            .unwrap_or_else(|| ChainState::unreachable("unknown node"))
    }))
}

fn syncing() -> ChainState {
    ChainState {
        reachable: true,
        synced: false,
        syncing: true,
        current: Some(430),
        target: Some(1000),
        percent: Some(43.0),
        detail: String::new(),
        raw: serde_json::Value::Null,
    }
}

fn set(w: &World, state: ChainState) {
    w.chain.lock().unwrap().insert("n".into(), state);
}

fn status(w: &World, name: &str) -> EngineStatus {
    w.fake.container(name).expect("container exists").status
}

fn events(w: &World, app: &str) -> Vec<(String, String)> {
    w.ctx
        .store()
        .events(Some(app), None, 1000)
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.message))
        .collect()
}

fn count(w: &World, app: &str, kind: &str) -> usize {
    events(w, app).iter().filter(|(k, _)| k == kind).count()
}

/// One second: a tick, its tasks (probe round, actions) awaited, then the
/// tick that plans with the probe results.
async fn second(sup: &mut Supervisor) {
    tokio::time::advance(Duration::from_secs(1)).await;
    sup.tick().await;
    sup.settle().await;
    sup.tick().await;
    sup.settle().await;
}

#[tokio::test(start_paused = true)]
async fn a_held_app_is_never_started_and_stopped_again_when_started_by_hand() {
    let w = world().await;
    let mut sup = supervisor(&w);
    for _ in 0..5 {
        second(&mut sup).await;
    }
    // Neither the held app nor its dependent is started by supervision
    // (a created container would otherwise be started at once), and no
    // failure is counted.
    assert_eq!(status(&w, "s-a"), EngineStatus::Created);
    assert_eq!(status(&w, "s-b"), EngineStatus::Created);
    assert_eq!(w.fake.count_calls(CallKind::Start), 0);
    assert!(
        w.ctx
            .store()
            .restart_trackers()
            .unwrap()
            .get("a")
            .is_none_or(|t| t.attempts == 0)
    );
    assert_eq!(
        events(&w, "a"),
        vec![(
            "held".to_string(),
            "held: waiting for n (syncing 43%, 430/1000)".to_string()
        )],
        "the hold is said once"
    );
    assert!(
        events(&w, "b")
            .iter()
            .any(|(k, m)| k == "waiting" && m == "b waits for a: kept stopped by its gate"),
        "{:?}",
        events(&w, "b")
    );

    // Started behind berth's back: stopped again, quietly.
    w.fake.start_behind_back("s-a");
    second(&mut sup).await;
    assert_eq!(status(&w, "s-a"), EngineStatus::Exited);
    assert_eq!(count(&w, "a", "held"), 1);
    assert_eq!(w.fake.count_calls(CallKind::Start), 0);
}

#[tokio::test(start_paused = true)]
async fn release_latches_only_after_the_start_succeeded_and_then_supervision_takes_over() {
    let w = world().await;
    let mut sup = supervisor(&w);
    second(&mut sup).await;
    set(&w, ChainState::up("tcp accepted"));
    // The first start fails: no latch, retried.
    w.fake.fail_next_on(CallKind::Start, 1);
    second(&mut sup).await;
    assert_eq!(status(&w, "s-a"), EngineStatus::Created);
    assert!(!w.ctx.store().gate_state("a").unwrap().latched);
    assert_eq!(count(&w, "a", "action-failed"), 1, "{:?}", events(&w, "a"));
    for _ in 0..3 {
        second(&mut sup).await;
    }
    assert_eq!(status(&w, "s-a"), EngineStatus::Running);
    assert!(w.ctx.store().gate_state("a").unwrap().latched);
    // Its dependent follows through supervision once `a` runs.
    for _ in 0..2 {
        second(&mut sup).await;
    }
    assert_eq!(status(&w, "s-b"), EngineStatus::Running);

    // Latched: the node syncing again holds nothing (one-way latch), and
    // a crash of `a` is supervision's to restart.
    set(&w, syncing());
    w.fake.set_exited("s-a", 3, false);
    for _ in 0..3 {
        second(&mut sup).await;
    }
    assert_eq!(status(&w, "s-a"), EngineStatus::Running);
    assert_eq!(count(&w, "a", "restarted"), 1);
}

#[tokio::test(start_paused = true)]
async fn rejection_follows_the_engine_and_survives_a_daemon_restart() {
    let w = world().await;
    set(&w, ChainState::up("tcp accepted"));
    let mut sup = supervisor(&w);
    for _ in 0..3 {
        second(&mut sup).await;
    }
    assert_eq!(status(&w, "s-a"), EngineStatus::Running);

    // Down for down_after (4 s): rejected. The first stop fails: the flag
    // stays down and the stop is retried.
    set(&w, ChainState::unreachable("connection refused"));
    w.fake.fail_next_on(CallKind::Stop, 1);
    for _ in 0..4 {
        second(&mut sup).await;
        assert_eq!(
            status(&w, "s-a"),
            EngineStatus::Running,
            "not before down_after"
        );
    }
    second(&mut sup).await;
    assert!(
        !w.ctx.store().gate_state("a").unwrap().rejected,
        "stop failed"
    );
    assert_eq!(status(&w, "s-a"), EngineStatus::Running);
    for _ in 0..2 {
        second(&mut sup).await;
    }
    assert_eq!(status(&w, "s-a"), EngineStatus::Exited);
    let gs = w.ctx.store().gate_state("a").unwrap();
    assert!(gs.rejected && gs.latched);
    assert_eq!(count(&w, "n", "node-down"), 1);
    assert!(w.ctx.store().node_trackers().unwrap()["n"].down);
    // Supervision leaves the rejected app alone: no restart, no failure.
    for _ in 0..5 {
        second(&mut sup).await;
    }
    assert_eq!(status(&w, "s-a"), EngineStatus::Exited);
    assert_eq!(count(&w, "a", "restarted"), 0);

    // A new daemon on the same state (the old one died): the rejection
    // and the node's verdict survive; while the node is still down, and
    // before it has seen it healthy for recovery_after, nothing starts.
    drop(sup);
    let ctx = Ctx::new(Arc::new(w.fake.clone()), w.state.clone(), Arc::new(Quiet)).unwrap();
    let w = World { ctx, ..w };
    let mut sup = supervisor(&w);
    for _ in 0..3 {
        second(&mut sup).await;
    }
    assert_eq!(status(&w, "s-a"), EngineStatus::Exited);
    set(&w, ChainState::up("tcp accepted"));
    // The readmission's first start fails: still rejected, retried.
    w.fake.fail_next_on(CallKind::Start, 1);
    for _ in 0..2 {
        second(&mut sup).await;
        assert_eq!(
            status(&w, "s-a"),
            EngineStatus::Exited,
            "not before recovery_after"
        );
    }
    for _ in 0..2 {
        second(&mut sup).await;
    }
    assert!(
        w.ctx.store().gate_state("a").unwrap().rejected,
        "the start failed"
    );
    for _ in 0..3 {
        second(&mut sup).await;
    }
    assert_eq!(status(&w, "s-a"), EngineStatus::Running);
    let gs = w.ctx.store().gate_state("a").unwrap();
    assert!(!gs.rejected && gs.latched);
    assert_eq!(count(&w, "a", "readmitted"), 2, "{:?}", events(&w, "a"));
}

#[tokio::test(start_paused = true)]
async fn a_fresh_daemon_acts_on_no_gate_before_it_has_probed_the_nodes() {
    let w = world().await;
    // `a` runs although it is not latched (started by hand while no daemon
    // watched): before its node's first probe the daemon must not stop it.
    w.fake.start_container("s-a").await.unwrap();
    set(&w, ChainState::up("tcp accepted"));
    let mut sup = supervisor(&w);
    sup.tick().await;
    // The probe round is in flight, not awaited: the plan has no
    // observation of `n` yet.
    tokio::time::advance(Duration::from_millis(100)).await;
    sup.tick().await;
    assert_eq!(w.fake.count_calls(CallKind::Stop), 0);
    sup.settle().await;
    sup.tick().await;
    sup.settle().await;
    // Probed synced: latched in place, never stopped.
    assert_eq!(status(&w, "s-a"), EngineStatus::Running);
    assert!(w.ctx.store().gate_state("a").unwrap().latched);
    assert_eq!(w.fake.count_calls(CallKind::Stop), 0);
}

/// A release planned from records read before an uninstall finished (the
/// uninstall ran while the tick listed the engine) is dropped: the app is
/// not installed again, gets no gate state and no `released` event.
#[tokio::test(start_paused = true)]
async fn an_app_uninstalled_while_the_tick_lists_is_not_released_again() {
    let w = world().await;
    let mut sup = supervisor(&w);
    second(&mut sup).await;
    assert_eq!(status(&w, "s-a"), EngineStatus::Created, "held");
    set(&w, ChainState::up("tcp accepted"));
    // A probe round sees the node synced; the next tick would release `a`.
    tokio::time::advance(Duration::from_secs(1)).await;
    sup.tick().await;
    sup.settle().await;
    // `berth uninstall a --cascade` finishes while that tick lists.
    let (ctx, fake) = (w.ctx.clone(), w.fake.clone());
    w.fake.during_next_list(move || {
        for (id, name) in [("b", "s-b"), ("a", "s-a")] {
            fake.remove_behind_back(name);
            assert!(ctx.store().delete_app(id).unwrap());
        }
    });
    sup.tick().await;
    sup.settle().await;
    for _ in 0..3 {
        second(&mut sup).await;
    }
    assert!(w.fake.container("s-a").is_none(), "a not installed again");
    assert!(w.fake.container("s-b").is_none(), "b not installed again");
    let ids: Vec<String> = w.ctx.store().app_revisions().unwrap().into_keys().collect();
    assert_eq!(ids, ["n"]);
    assert!(!w.ctx.store().gate_states().unwrap().contains_key("a"));
    assert_eq!(count(&w, "a", "released"), 0, "{:?}", events(&w, "a"));
    assert_eq!(w.fake.count_calls(CallKind::Create), 0);
}
