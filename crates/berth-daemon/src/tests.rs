//! Unit tests of the daemon loop on `FakeEngine` with paused time: the
//! executor side of supervision (the planner has its own table tests in
//! berth-core).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_core::classify::EngineStatus;
use berth_core::observed::ObservedContainer;
use berth_core::spec::ContainerSpec;
use berth_core::supervise::{SupervisionAction, TickInput, TickPlan, plan_tick};
use berth_engine::{
    Call, CallKind, Engine, EngineEvent, EngineInfo, EngineKind, EngineObject, ExecOutput,
    FakeEngine, PullProgress,
};
use berth_ops::{Ctx, Quiet};
use berth_store::{Desired, StateDir};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::Clock;
use crate::config::Settings;
use crate::rpc::RpcCall;
use crate::supervisor::{Event, Planner, Supervisor};

const IMAGE: &str = "localhost/app:1";

struct World {
    _tmp: tempfile::TempDir,
    fake: FakeEngine,
    ctx: Arc<Ctx>,
}

fn settings() -> Settings {
    let mut s = Settings {
        tick: Duration::from_secs(30),
        ..Settings::default()
    };
    s.supervision.backoff_initial = Duration::from_secs(10);
    s.supervision.backoff_max = Duration::from_secs(40);
    s.supervision.max_failures = 3;
    s.supervision.failure_window = Duration::from_secs(3600);
    s
}

/// A stack `s` with the given apps TOML, installed on a fresh fake.
async fn world(apps: &str, engine: Option<Arc<dyn Engine>>, fake: FakeEngine) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("berth.toml");
    std::fs::write(
        &file,
        format!("[stack]\nname = \"s\"\nstart_timeout = \"5s\"\n\n{apps}"),
    )
    .unwrap();
    fake.add_image(IMAGE);
    let state = StateDir::open(&tmp.path().join("state")).unwrap();
    let engine = engine.unwrap_or_else(|| Arc::new(fake.clone()));
    let ctx = Ctx::new(engine, state, Arc::new(Quiet)).unwrap();
    let stack = berth_ops::load_stack_file(&file).unwrap();
    berth_ops::up(&ctx, &stack, Some(&file.display().to_string()))
        .await
        .unwrap();
    fake.take_calls();
    World {
        _tmp: tmp,
        fake,
        ctx,
    }
}

/// Two independent apps `a` and `b` (containers `s-a`, `s-b`), installed.
async fn apps_a_and_b() -> World {
    world(
        &format!("{}{}", app("a", ""), app("b", "")),
        None,
        FakeEngine::new(),
    )
    .await
}

fn app(id: &str, extra: &str) -> String {
    format!("[apps.{id}]\nimage = \"{IMAGE}\"\nstop_grace = \"5s\"\n{extra}\n")
}

fn supervisor(
    w: &World,
    planner: Planner,
) -> (Supervisor, mpsc::Sender<Event>, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel(64);
    let sup = Supervisor::new(
        w.ctx.clone(),
        settings(),
        planner,
        tx.clone(),
        Clock::at(1_000_000),
    );
    (sup, tx, rx)
}

/// The supervisor's loop in a task of its own, as the daemon runs it: send
/// on the sender to shut it down; the task hands the supervisor back.
fn run_loop(
    mut sup: Supervisor,
    rx: mpsc::Receiver<Event>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<Supervisor>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        sup.run(rx, async {
            let _ = stop_rx.await;
        })
        .await;
        sup
    });
    (stop_tx, task)
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

fn status(w: &World, name: &str) -> EngineStatus {
    w.fake.container(name).expect("container exists").status
}

#[tokio::test(start_paused = true)]
async fn a_noop_tick_makes_exactly_one_engine_list_call_and_nothing_else() {
    let w = world(
        &format!(
            "{}{}",
            app("a", ""),
            app("b", "depends_on = { a = \"started\" }")
        ),
        None,
        FakeEngine::new(),
    )
    .await;
    let (mut sup, _tx, _rx) = supervisor(&w, plan_tick);
    // The first tick adopts what runs (it records when each app became stable).
    sup.tick().await;
    sup.settle().await;
    w.fake.take_calls();
    let events_before = w.ctx.store().max_event_id().unwrap();
    let trackers_before = w.ctx.store().restart_trackers().unwrap();

    tokio::time::advance(Duration::from_secs(5)).await;
    sup.tick().await;
    sup.settle().await;
    assert_eq!(
        w.fake.take_calls(),
        vec![Call::List],
        "one list call, nothing else"
    );
    assert_eq!(
        w.ctx.store().max_event_id().unwrap(),
        events_before,
        "no event"
    );
    assert_eq!(
        w.ctx.store().restart_trackers().unwrap(),
        trackers_before,
        "no tracker write"
    );
    assert_eq!(sup.stats().last_tick_actions, 0);
    assert_eq!(sup.stats().last_tick_engine_calls, Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_crashed_app_is_restarted_with_backoff_then_quarantined_with_its_logs() {
    let w = world(&app("a", ""), None, FakeEngine::new()).await;
    let (mut sup, _tx, _rx) = supervisor(&w, plan_tick);
    sup.tick().await;
    sup.settle().await;

    // Crash 1: restarted at once (attempt 1, next backoff 10 s).
    w.fake.set_exited("s-a", 3, false);
    sup.tick().await;
    sup.settle().await;
    assert_eq!(status(&w, "s-a"), EngineStatus::Running);
    assert_eq!(w.fake.count_calls(CallKind::Start), 1);

    // Crash 2 right away: the backoff holds the restart ...
    w.fake.set_exited("s-a", 3, false);
    tokio::time::advance(Duration::from_secs(5)).await;
    sup.tick().await;
    sup.settle().await;
    assert_eq!(status(&w, "s-a"), EngineStatus::Exited, "still in backoff");
    assert_eq!(w.fake.count_calls(CallKind::Start), 1);
    // ... until it expires (the plan asked to be woken then).
    tokio::time::advance(Duration::from_secs(5)).await;
    sup.tick().await;
    sup.settle().await;
    assert_eq!(status(&w, "s-a"), EngineStatus::Running);
    assert_eq!(w.fake.count_calls(CallKind::Start), 2);

    // Crash 3 within the window: quarantine (max_failures 3), with the
    // exit code and the last log lines, redacted.
    w.fake
        .set_logs("s-a", vec!["starting".into(), "fatal: disk full".into()]);
    w.fake.set_exited("s-a", 3, false);
    tokio::time::advance(Duration::from_secs(20)).await;
    sup.tick().await;
    sup.settle().await;
    assert_eq!(status(&w, "s-a"), EngineStatus::Exited);
    let q = w
        .ctx
        .store()
        .restart_tracker("a")
        .unwrap()
        .quarantine
        .expect("quarantined");
    assert_eq!(q.exit_code, Some(3));
    assert_eq!(q.last_logs, vec!["starting", "fatal: disk full"]);

    // No further restarts, however long we wait.
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(300)).await;
        sup.tick().await;
        sup.settle().await;
    }
    assert_eq!(w.fake.count_calls(CallKind::Start), 2);
    let kinds: Vec<String> = events(&w, "a").into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "restarted").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"quarantined".to_string()), "{kinds:?}");
    let (_, msg) = events(&w, "a")
        .into_iter()
        .find(|(k, _)| k == "restarted")
        .unwrap();
    assert!(
        msg.contains("exited 3 (crashed), attempt 1/3, next backoff 10s"),
        "{msg}"
    );

    // The status report shows the quarantine and counts the app as degraded.
    let report = berth_ops::status(&w.ctx).await.unwrap();
    assert!(report.apps[0].quarantine.is_some() && report.apps[0].degraded);
}

/// A user's stop that lands while a tick waits for the engine's list is
/// not undone: the tick read `a` as wanted running and its container as
/// exited, so it planned a restart; the record changed since, so the
/// restart is dropped (no start, no event, no tracker), and later ticks
/// leave the stopped app alone.
#[tokio::test(start_paused = true)]
async fn an_app_stopped_by_the_user_while_the_tick_lists_is_not_restarted() {
    let w = apps_a_and_b().await;
    let (mut sup, _tx, _rx) = supervisor(&w, plan_tick);
    w.fake.set_exited("s-a", 1, false);
    w.fake.set_exited("s-b", 1, false);
    let ctx = w.ctx.clone();
    w.fake.during_next_list(move || {
        ctx.store()
            .set_desired("a", Desired::Stopped, 5_000_000)
            .unwrap();
    });
    sup.tick().await;
    sup.settle().await;
    assert_eq!(status(&w, "s-a"), EngineStatus::Exited, "a not restarted");
    assert_eq!(status(&w, "s-b"), EngineStatus::Running, "b restarted");
    assert!(
        !events(&w, "a").iter().any(|(k, _)| k == "restarted"),
        "{:?}",
        events(&w, "a")
    );
    assert!(
        !w.ctx.store().restart_trackers().unwrap().contains_key("a"),
        "no tracker written for a"
    );
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(60)).await;
        sup.tick().await;
        sup.settle().await;
    }
    assert_eq!(status(&w, "s-a"), EngineStatus::Exited, "stays stopped");
}

/// An action that finishes while a tick lists the engine makes what the
/// tick saw of its app stale (here: exited, though the action may have
/// started it): the tick leaves the app alone, and the next tick, looking
/// afresh, acts. Without this, one crash was restarted twice.
#[tokio::test(start_paused = true)]
async fn an_app_acted_on_while_the_tick_lists_is_left_to_the_next_tick() {
    let w = apps_a_and_b().await;
    let (mut sup, _tx, _rx) = supervisor(&w, plan_tick);
    sup.tick().await;
    sup.settle().await;
    w.fake.set_exited("s-a", 3, false);
    w.fake.set_exited("s-b", 3, false);
    let in_flight = sup.in_flight();
    w.fake.during_next_list(move || {
        let apps = std::collections::BTreeSet::from(["a".to_string()]);
        let claim = crate::supervisor::try_claim(&in_flight, &apps, "restart").unwrap();
        drop(claim);
    });
    tokio::time::advance(Duration::from_secs(1)).await;
    sup.tick().await;
    sup.settle().await;
    assert_eq!(
        status(&w, "s-a"),
        EngineStatus::Exited,
        "left to the next tick"
    );
    assert_eq!(status(&w, "s-b"), EngineStatus::Running, "b restarted");
    assert!(!events(&w, "a").iter().any(|(k, _)| k == "restarted"));
    tokio::time::advance(Duration::from_secs(1)).await;
    sup.tick().await;
    sup.settle().await;
    assert_eq!(status(&w, "s-a"), EngineStatus::Running, "restarted now");
    let restarts = events(&w, "a")
        .iter()
        .filter(|(k, _)| k == "restarted")
        .count();
    assert_eq!(restarts, 1);
}

/// Spec hashes the recording planner saw, by app.
static SEEN_HASHES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn record_hashes(input: &TickInput<'_>) -> TickPlan {
    let mut seen = SEEN_HASHES.lock().unwrap();
    for a in &input.apps {
        seen.push((a.app.id.clone(), a.spec_hash.to_string()));
    }
    TickPlan::default()
}

#[tokio::test(start_paused = true)]
async fn a_changed_manifest_reaches_the_planner_with_its_new_spec_hash() {
    // The tick keeps spec hashes between ticks; a manifest written to the
    // store since (a reinstall with a new image, say) must not be planned
    // with the old hash, or a quarantine tied to the old spec would hold.
    let w = world(&app("a", ""), None, FakeEngine::new()).await;
    let (mut sup, _tx, _rx) = supervisor(&w, record_hashes);
    let hash_of = |rec: &berth_store::AppRecord| {
        let (stack, _) = berth_ops::stackdb::installed_stack_of(&w.ctx, &rec.id).unwrap();
        berth_ops::install::spec_for(&w.ctx, &stack, &stack.apps[&rec.id]).hash()
    };
    let before = w.ctx.store().get_app("a").unwrap().unwrap();
    sup.tick().await;
    sup.tick().await;
    let mut changed = before.clone();
    changed.app.env.insert("NEW".into(), "1".into());
    w.ctx.store().put_app(&changed).unwrap();
    sup.tick().await;
    let seen: Vec<String> = SEEN_HASHES
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| id == "a")
        .map(|(_, h)| h.clone())
        .collect();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0], seen[1], "unchanged manifest, same hash");
    assert_ne!(seen[2], seen[1], "the new manifest gives a new hash");
    assert_eq!(
        seen[2],
        hash_of(&changed),
        "the hash of the stored manifest"
    );
}

#[tokio::test(start_paused = true)]
async fn a_vanished_container_is_recreated_with_its_volume() {
    let w = world(
        &app("a", "volumes = { data = \"/data\" }"),
        None,
        FakeEngine::new(),
    )
    .await;
    let (mut sup, _tx, _rx) = supervisor(&w, plan_tick);
    w.fake.remove_behind_back("s-a");
    sup.tick().await;
    sup.settle().await;
    assert_eq!(status(&w, "s-a"), EngineStatus::Running);
    assert!(w.fake.has_volume("s-a-data"));
    assert!(
        !w.fake
            .calls()
            .iter()
            .any(|c| matches!(c, Call::RemoveVolume { .. })),
        "volume never removed"
    );
    assert!(events(&w, "a").iter().any(|(k, _)| k == "recreated"));
}

/// An uninstall that finishes while a tick waits for the engine's list is
/// not undone: the records the tick read first are stale by then, so the
/// recreate planned for the vanished container is dropped (no create, no
/// record, no event), and the other app is supervised as before.
#[tokio::test(start_paused = true)]
async fn an_app_uninstalled_while_the_tick_lists_is_not_brought_back() {
    let w = apps_a_and_b().await;
    let (mut sup, _tx, _rx) = supervisor(&w, plan_tick);
    w.fake.remove_behind_back("s-a");
    w.fake.remove_behind_back("s-b");
    let ctx = w.ctx.clone();
    w.fake.during_next_list(move || {
        assert!(ctx.store().delete_app("a").unwrap(), "a was installed");
    });
    sup.tick().await;
    sup.settle().await;
    assert!(w.fake.container("s-a").is_none(), "a not brought back");
    assert_eq!(status(&w, "s-b"), EngineStatus::Running, "b recreated");
    let ids: Vec<String> = w.ctx.store().app_revisions().unwrap().into_keys().collect();
    assert_eq!(ids, ["b"]);
    assert_eq!(
        events(&w, "a"),
        [("installed".to_string(), "installed a".to_string())],
        "nothing about a after its uninstall"
    );
    // The next tick plans from the store as it is now.
    sup.tick().await;
    sup.settle().await;
    assert!(w.fake.container("s-a").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_user_stopped_app_is_never_started_and_an_owed_start_is_honoured() {
    let w = apps_a_and_b().await;
    let (sup, tx, rx) = supervisor(&w, plan_tick);
    let (stop_tx, task) = run_loop(sup, rx);
    // The user stops `a` through the API: intent first, then the engine.
    let (reply_tx, reply_rx) = oneshot::channel();
    tx.send(Event::Request(
        RpcCall::PackageStop {
            apps: vec!["a".into()],
        },
        reply_tx,
    ))
    .await
    .unwrap();
    let answer = reply_rx.await.unwrap().expect("stop succeeds");
    assert!(
        answer["progress"].to_string().contains("stopped"),
        "{answer}"
    );
    assert_eq!(
        w.ctx.store().get_app("a").unwrap().unwrap().desired,
        Desired::Stopped
    );

    // `b` owes a start: a supervision stop happened, its start did not.
    w.ctx
        .store()
        .add_owed_start("b", "restart: unhealthy", 1)
        .unwrap();
    w.fake.set_exited("s-b", 0, false);
    tx.send(Event::EngineEvent {
        app: Some("b".into()),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;

    assert_eq!(status(&w, "s-a"), EngineStatus::Exited, "never restarted");
    assert_eq!(status(&w, "s-b"), EngineStatus::Running, "owed start done");
    assert!(
        w.ctx.store().owed_starts().unwrap().is_empty(),
        "owed start cleared"
    );
    let _ = stop_tx.send(());
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_app_is_restarted_with_an_owed_start_written_first() {
    let check = "[apps.a.health]\ncommand = [\"check\"]\ninterval = \"1s\"\nretries = 2\n";
    let w = world(&format!("{}{check}", app("a", "")), None, FakeEngine::new()).await;
    let (sup, _tx, rx) = supervisor(&w, plan_tick);
    let (stop_tx, task) = run_loop(sup, rx);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.fake.count_calls(CallKind::Stop), 0, "healthy: left alone");
    w.fake.set_exec_result(
        "s-a",
        ExecOutput {
            exit_code: 1,
            output: "not ready".into(),
        },
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The monitor saw two failures, the loop restarted the app.
    assert_eq!(w.fake.count_calls(CallKind::Stop), 1);
    assert!(w.fake.count_calls(CallKind::Start) >= 1);
    assert!(w.ctx.store().owed_starts().unwrap().is_empty());
    let evs = events(&w, "a");
    assert!(
        evs.iter()
            .any(|(k, m)| k == "restarted" && m.contains("unhealthy: command exited 1")),
        "{evs:?}"
    );
    let _ = stop_tx.send(());
    let sup = task.await.unwrap();
    assert!(sup.stats().ticks >= 2);
}

/// An engine whose start takes 5 s (and each container list
/// `list_delay`) and which records how many starts of one container ever
/// ran at once.
#[derive(Clone)]
struct SlowStarts {
    fake: FakeEngine,
    running: Arc<Mutex<BTreeMap<String, usize>>>,
    max_seen: Arc<Mutex<usize>>,
    list_delay: Duration,
}

#[async_trait]
impl Engine for SlowStarts {
    fn kind(&self) -> EngineKind {
        EngineKind::Fake
    }
    async fn info(&self) -> berth_engine::Result<EngineInfo> {
        self.fake.info().await
    }
    async fn list_containers(
        &self,
        l: (&str, &str),
    ) -> berth_engine::Result<Vec<ObservedContainer>> {
        tokio::time::sleep(self.list_delay).await;
        self.fake.list_containers(l).await
    }
    async fn inspect_container(&self, n: &str) -> berth_engine::Result<Option<ObservedContainer>> {
        self.fake.inspect_container(n).await
    }
    async fn container_ip(&self, n: &str, net: &str) -> berth_engine::Result<Option<String>> {
        self.fake.container_ip(n, net).await
    }
    async fn image_exists(&self, i: &str) -> berth_engine::Result<bool> {
        self.fake.image_exists(i).await
    }
    async fn pull_image(
        &self,
        i: &str,
        p: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> berth_engine::Result<()> {
        self.fake.pull_image(i, p).await
    }
    async fn ensure_network(
        &self,
        n: &str,
        l: &BTreeMap<String, String>,
    ) -> berth_engine::Result<bool> {
        self.fake.ensure_network(n, l).await
    }
    async fn remove_network(&self, n: &str) -> berth_engine::Result<()> {
        self.fake.remove_network(n).await
    }
    async fn list_networks(&self, l: (&str, &str)) -> berth_engine::Result<Vec<EngineObject>> {
        self.fake.list_networks(l).await
    }
    async fn ensure_volume(
        &self,
        n: &str,
        l: &BTreeMap<String, String>,
    ) -> berth_engine::Result<bool> {
        self.fake.ensure_volume(n, l).await
    }
    async fn remove_volume(&self, n: &str) -> berth_engine::Result<()> {
        self.fake.remove_volume(n).await
    }
    async fn list_volumes(&self, l: (&str, &str)) -> berth_engine::Result<Vec<EngineObject>> {
        self.fake.list_volumes(l).await
    }
    async fn create_container(&self, s: &ContainerSpec) -> berth_engine::Result<String> {
        self.fake.create_container(s).await
    }
    async fn start_container(&self, n: &str) -> berth_engine::Result<()> {
        {
            let mut r = self.running.lock().unwrap();
            let c = r.entry(n.to_string()).or_default();
            *c += 1;
            let mut m = self.max_seen.lock().unwrap();
            *m = (*m).max(*c);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let r = self.fake.start_container(n).await;
        *self.running.lock().unwrap().get_mut(n).unwrap() -= 1;
        r
    }
    async fn stop_container(&self, n: &str, g: Duration) -> berth_engine::Result<()> {
        self.fake.stop_container(n, g).await
    }
    async fn kill_container(&self, n: &str, s: &str) -> berth_engine::Result<()> {
        self.fake.kill_container(n, s).await
    }
    async fn remove_container(&self, n: &str, f: bool) -> berth_engine::Result<()> {
        self.fake.remove_container(n, f).await
    }
    async fn container_image_id(&self, n: &str) -> berth_engine::Result<Option<String>> {
        self.fake.container_image_id(n).await
    }
    async fn rename_container(&self, n: &str, to: &str) -> berth_engine::Result<()> {
        self.fake.rename_container(n, to).await
    }
    async fn logs(&self, n: &str, t: usize) -> berth_engine::Result<Vec<String>> {
        self.fake.logs(n, t).await
    }
    async fn exec(&self, n: &str, a: &[String], t: Duration) -> berth_engine::Result<ExecOutput> {
        self.fake.exec(n, a, t).await
    }
    async fn watch_events(
        &self,
        sink: &(dyn Fn(EngineEvent) + Send + Sync),
    ) -> berth_engine::Result<()> {
        self.fake.watch_events(sink).await
    }
    fn call_count(&self) -> u64 {
        self.fake.call_count()
    }
}

/// A planner that wants to start `a` on every tick, whatever it sees.
fn always_start_a(_: &TickInput<'_>) -> TickPlan {
    TickPlan {
        actions: vec![SupervisionAction::Start {
            app: "a".into(),
            reason: "test".into(),
        }],
        next_wake_ms: None,
        ..TickPlan::default()
    }
}

#[tokio::test(start_paused = true)]
async fn one_app_is_never_acted_on_twice_at_once() {
    let fake = FakeEngine::new();
    let slow = SlowStarts {
        fake: fake.clone(),
        running: Arc::default(),
        max_seen: Arc::default(),
        list_delay: Duration::ZERO,
    };
    let w = world(&app("a", ""), Some(Arc::new(slow.clone())), fake).await;
    *slow.max_seen.lock().unwrap() = 0;
    let (tx, rx) = mpsc::channel(64);
    let mut s = settings();
    s.tick = Duration::from_millis(500); // ticks far faster than a start
    let sup = Supervisor::new(w.ctx.clone(), s, always_start_a, tx.clone(), Clock::at(1));
    let (stop_tx, task) = run_loop(sup, rx);
    // A user request on the same app while supervision acts on it waits
    // for the claim instead of running alongside.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (reply_tx, reply_rx) = oneshot::channel();
    tx.send(Event::Request(
        RpcCall::PackageStart {
            apps: vec!["a".into()],
        },
        reply_tx,
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let answer = reply_rx.await.unwrap();
    assert!(answer.is_ok(), "{answer:?}");
    let _ = stop_tx.send(());
    let sup = task.await.unwrap();
    assert_eq!(
        *slow.max_seen.lock().unwrap(),
        1,
        "never two starts of s-a at once"
    );
    let starts = slow.fake.count_calls(CallKind::Start);
    assert!(
        (4..=8).contains(&starts),
        "about one start per 5 s: {starts}"
    );
    assert!(
        sup.stats().ticks > 20,
        "ticks kept coming: {}",
        sup.stats().ticks
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_never_touches_containers() {
    let w = apps_a_and_b().await;
    let (sup, tx, rx) = supervisor(&w, plan_tick);
    let (stop_tx, task) = run_loop(sup, rx);
    tokio::time::sleep(Duration::from_secs(90)).await;
    let _ = stop_tx.send(());
    task.await.unwrap();
    let touched: Vec<Call> = w
        .fake
        .calls()
        .into_iter()
        .filter(|c| {
            matches!(
                c.kind(),
                CallKind::Stop
                    | CallKind::Kill
                    | CallKind::Remove
                    | CallKind::Start
                    | CallKind::Create
            )
        })
        .collect();
    assert_eq!(
        touched,
        vec![],
        "the daemon's life and shutdown left containers alone"
    );
    assert_eq!(status(&w, "s-a"), EngineStatus::Running);
    assert_eq!(status(&w, "s-b"), EngineStatus::Running);
    // After the loop is gone, requests are refused rather than lost.
    let (reply_tx, _reply_rx) = oneshot::channel();
    assert!(
        tx.send(Event::Request(RpcCall::DaemonStatus, reply_tx))
            .await
            .is_err()
    );
}

/// The loop lists the engine for a tick in a task of its own: a request
/// that arrives while the engine is slow to list is answered at once, and
/// the tick completes when the list comes back.
#[tokio::test(start_paused = true)]
async fn requests_are_answered_while_a_tick_waits_for_the_engine() {
    let fake = FakeEngine::new();
    let slow = SlowStarts {
        fake: fake.clone(),
        running: Arc::default(),
        max_seen: Arc::default(),
        list_delay: Duration::from_secs(20),
    };
    let w = world(&app("a", ""), Some(Arc::new(slow)), fake).await;
    let (sup, tx, rx) = supervisor(&w, plan_tick);
    let (stop_tx, task) = run_loop(sup, rx);
    let status = || {
        let tx = tx.clone();
        async move {
            let (reply_tx, reply_rx) = oneshot::channel();
            tx.send(Event::Request(RpcCall::DaemonStatus, reply_tx))
                .await
                .unwrap();
            reply_rx.await.unwrap().unwrap()
        }
    };
    // The first tick begins at once and waits 20 s for its list.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = tokio::time::Instant::now();
    let st = status().await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "answered while the tick lists, after {:?}",
        asked.elapsed()
    );
    assert_eq!(st["ticks"]["ticks"], json!(0), "not done yet: {st}");
    assert_eq!(st["ticks"]["last_tick_duration_us"], json!(null), "{st}");
    // Once the list is back the tick is done, its list time recorded.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let st = status().await;
    assert_eq!(st["ticks"]["ticks"], json!(1), "{st}");
    let observe_us = st["ticks"]["last_tick_observe_us"].as_u64().unwrap();
    assert!(observe_us >= 20_000_000, "{st}");
    assert!(st["ticks"]["last_tick_duration_us"].as_u64().unwrap() >= observe_us);
    let _ = stop_tx.send(());
    let sup = task.await.unwrap();
    assert_eq!(sup.stats().actions_started, 0, "nothing to do");
}

#[tokio::test(start_paused = true)]
async fn reads_and_daemon_status_answer_through_the_loop() {
    let w = world(&app("a", ""), None, FakeEngine::new()).await;
    let (sup, tx, rx) = supervisor(&w, plan_tick);
    let (stop_tx, task) = run_loop(sup, rx);
    let call = |c: RpcCall| {
        let tx = tx.clone();
        async move {
            let (reply_tx, reply_rx) = oneshot::channel();
            tx.send(Event::Request(c, reply_tx)).await.unwrap();
            reply_rx.await.unwrap()
        }
    };
    let status = call(RpcCall::DaemonStatus).await.unwrap();
    assert_eq!(status["pid"], json!(std::process::id()));
    let list = call(RpcCall::ContainerList).await.unwrap();
    assert_eq!(list["apps"][0]["id"], json!("a"));
    let evs = call(RpcCall::EventsList {
        app: Some("a".into()),
        after_id: None,
        limit: 10,
    })
    .await
    .unwrap();
    assert!(
        evs["events"].as_array().is_some_and(|e| !e.is_empty()),
        "{evs}"
    );
    let unknown = call(RpcCall::PackageStop {
        apps: vec!["zz".into()],
    })
    .await
    .unwrap_err();
    assert_eq!(unknown.code, crate::rpc::UNKNOWN_APP, "{unknown:?}");
    let logs = call(RpcCall::ContainerLogs {
        app: "zz".into(),
        tail: 5,
    })
    .await
    .unwrap_err();
    assert_eq!(logs.code, crate::rpc::UNKNOWN_APP);
    let _ = stop_tx.send(());
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_action_is_retried_later_and_reported_once() {
    let w = world(&app("a", ""), None, FakeEngine::new()).await;
    let (tx, _rx) = mpsc::channel(64);
    let mut s = settings();
    s.supervision.max_failures = 10;
    let mut sup = Supervisor::new(w.ctx.clone(), s, plan_tick, tx, Clock::at(1_000_000));
    w.fake.set_exited("s-a", 3, false);
    w.fake.fail_next_on(CallKind::Start, 2);
    for _ in 0..2 {
        sup.tick().await;
        sup.settle().await;
        assert_eq!(status(&w, "s-a"), EngineStatus::Exited);
        tokio::time::advance(Duration::from_secs(45)).await;
    }
    sup.tick().await;
    sup.settle().await;
    assert_eq!(status(&w, "s-a"), EngineStatus::Running, "third try works");
    let failed: Vec<String> = events(&w, "a")
        .into_iter()
        .filter(|(k, _)| k == "action-failed")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "the same failure twice is one event: {failed:?}"
    );
    assert!(failed[0].starts_with("start of a failed"), "{failed:?}");
    assert_eq!(sup.stats().actions_failed, 2);
    assert_eq!(w.fake.count_calls(CallKind::Start), 3);
}
