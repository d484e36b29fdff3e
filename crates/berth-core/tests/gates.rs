//! The sync gate and node failover at tier 1: `gate::plan_gates` driven
//! through every scenario of issue 4 with a fake clock, fake probes and a
//! fake engine (a set of running apps that can be told to fail the next
//! call for an app). Each scenario is a table of steps; the world probes
//! every node every `PROBE_S` seconds between steps, as the daemon does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_core::gate::{
    ChainState, GateAction, GateInput, GatePlan, GateState, GateStatus, GatedApp, NodeInput,
    NodeTiming, NodeTracker, plan_gates, settle,
};
use berth_core::model::GateSpec;

/// 2024-05-01T12:00:00Z: reasons show times of day.
const T0_MS: u64 = 1_714_564_800_000;
const PROBE_S: u64 = 5;
const DOWN_AFTER_S: u64 = 90;
const RECOVERY_AFTER_S: u64 = 60;

use GateStatus::{Held, Rejected, Released};

/// What a node's probe sees.
#[derive(Debug, Clone, Copy)]
enum Node {
    Synced(u64),
    Syncing(u64, u64),
    /// monerod right after a restart, no peers: target 0, not synchronized.
    NoPeers,
    /// Connection refused.
    Down,
    /// Answers, but not OK (monerod status BUSY, bitcoind 503).
    Busy,
}

impl Node {
    fn state(self) -> ChainState {
        match self {
            Node::Synced(h) => ChainState {
                current: Some(h),
                target: Some(h),
                percent: Some(100.0),
                ..ChainState::up("synced")
            },
            Node::Syncing(h, t) => ChainState {
                reachable: true,
                synced: false,
                syncing: true,
                current: Some(h),
                target: Some(t),
                percent: Some(h as f64 / t as f64 * 100.0),
                detail: "syncing".into(),
                raw: serde_json::Value::Null,
            },
            Node::NoPeers => ChainState {
                reachable: true,
                synced: false,
                syncing: false,
                current: Some(1),
                target: None,
                percent: None,
                detail: "no target height yet".into(),
                raw: serde_json::Value::Null,
            },
            Node::Down => ChainState::unreachable("connection refused"),
            Node::Busy => ChainState::unreachable("status BUSY"),
        }
    }
}

struct World {
    /// Gated apps: (id, tier, gate).
    apps: Vec<(String, u32, GateSpec)>,
    nodes: BTreeMap<String, Node>,
    trackers: BTreeMap<String, NodeTracker>,
    gates: BTreeMap<String, GateState>,
    running: BTreeSet<String>,
    /// The user stopped these.
    user_stopped: BTreeSet<String>,
    /// The next engine call for these apps fails (once).
    fail_next: BTreeSet<String>,
    now_s: u64,
    /// Every engine call: "stop p2pool", "start p2pool (failed)".
    calls: Vec<String>,
    events: Vec<(u64, String, String, String)>,
    last: GatePlan,
}

fn gate(
    wait_for: &[&str],
    wait_for_optional: &[&str],
    reject_when_down: &[&str],
    reject_when_down_optional: &[&str],
) -> GateSpec {
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    GateSpec {
        wait_for: v(wait_for),
        wait_for_optional: v(wait_for_optional),
        reject_when_down: v(reject_when_down),
        reject_when_down_optional: v(reject_when_down_optional),
    }
}

impl World {
    fn new(apps: Vec<(&str, u32, GateSpec)>, nodes: &[(&str, Node)]) -> World {
        World {
            apps: apps
                .into_iter()
                .map(|(id, tier, g)| (id.to_string(), tier, g))
                .collect(),
            nodes: nodes.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
            trackers: BTreeMap::new(),
            gates: BTreeMap::new(),
            running: BTreeSet::new(),
            user_stopped: BTreeSet::new(),
            fail_next: BTreeSet::new(),
            now_s: 0,
            calls: Vec::new(),
            events: Vec::new(),
            last: GatePlan::default(),
        }
    }

    /// The pithead mining stack: p2pool keeps its position through a
    /// monerod outage, xmrig-proxy (the miners) is turned away. Tari is
    /// optional, or required with `tari_required`.
    fn mining(tari_required: bool, nodes: &[(&str, Node)]) -> World {
        let (p2pool, proxy) = if tari_required {
            (
                gate(&["monerod", "tari"], &[], &[], &[]),
                gate(&["monerod", "tari"], &[], &["monerod", "tari"], &[]),
            )
        } else {
            (
                gate(&["monerod"], &["tari"], &[], &[]),
                gate(&["monerod"], &["tari"], &["monerod"], &["tari"]),
            )
        };
        World::new(
            vec![("p2pool", 1, p2pool), ("xmrig-proxy", 2, proxy)],
            nodes,
        )
    }

    fn timing() -> NodeTiming {
        NodeTiming {
            down_after: Duration::from_secs(DOWN_AFTER_S),
            recovery_after: Duration::from_secs(RECOVERY_AFTER_S),
        }
    }

    fn set(&mut self, node: &str, state: Node) {
        self.nodes.insert(node.to_string(), state);
    }

    /// One daemon tick at the current time: probe, plan, execute, settle.
    fn tick(&mut self) {
        let now_ms = T0_MS + self.now_s * 1000;
        let observations: BTreeMap<String, ChainState> = self
            .nodes
            .iter()
            .map(|(n, s)| (n.clone(), s.state()))
            .collect();
        let plan = {
            let input = GateInput {
                apps: self
                    .apps
                    .iter()
                    .map(|(id, tier, g)| GatedApp {
                        id,
                        gate: g,
                        tier: *tier,
                        wants_running: !self.user_stopped.contains(id),
                        running: self.running.contains(id),
                    })
                    .collect(),
                nodes: observations
                    .iter()
                    .map(|(n, s)| {
                        (
                            n.clone(),
                            NodeInput {
                                timing: World::timing(),
                                observation: Some(s),
                            },
                        )
                    })
                    .collect(),
                trackers: &self.trackers,
                gates: &self.gates,
                now_ms,
            };
            plan_gates(&input)
        };
        // Execute in order, as the daemon does; a failed start stops the
        // remaining starts (their dependencies may be missing).
        let mut results = Vec::new();
        let mut start_failed = false;
        for action in &plan.actions {
            let app = action.app().to_string();
            if action.is_start() && start_failed {
                continue;
            }
            let ok = !self.fail_next.remove(&app);
            let verb = if action.is_start() { "start" } else { "stop" };
            self.calls.push(format!(
                "{}s {verb} {app}{}",
                self.now_s,
                if ok { "" } else { " (failed)" }
            ));
            if ok {
                if action.is_start() {
                    self.running.insert(app);
                } else {
                    self.running.remove(&app);
                }
            } else if action.is_start() {
                start_failed = true;
            }
            results.push((action.clone(), ok));
        }
        self.gates = settle(&plan, &results, now_ms);
        self.trackers = plan.trackers.clone();
        for e in &plan.events {
            self.events
                .push((self.now_s, e.app.clone(), e.kind.clone(), e.message.clone()));
        }
        self.last = plan;
    }

    /// Tick every `PROBE_S` seconds up to and including `at_s`.
    fn run_until(&mut self, at_s: u64) {
        assert!(at_s >= self.now_s, "time runs forward");
        while self.now_s + PROBE_S <= at_s {
            self.now_s += PROBE_S;
            self.tick();
        }
        if self.now_s < at_s {
            self.now_s = at_s;
            self.tick();
        }
    }

    /// The daemon dies and a new one starts: only what is persisted (as
    /// JSON) survives, and the trackers lose their continuity.
    fn restart_daemon(&mut self) {
        let trackers = serde_json::to_string(&self.trackers).unwrap();
        let gates = serde_json::to_string(&self.gates).unwrap();
        let trackers: BTreeMap<String, NodeTracker> = serde_json::from_str(&trackers).unwrap();
        self.trackers = trackers
            .into_iter()
            .map(|(n, t)| (n, t.restored()))
            .collect();
        self.gates = serde_json::from_str(&gates).unwrap();
    }

    fn status(&self, app: &str) -> GateStatus {
        self.last.apps[app].status
    }

    fn reason(&self, app: &str) -> String {
        self.last.apps[app].reason.clone().unwrap_or_default()
    }

    fn latched(&self, app: &str) -> bool {
        self.gates.get(app).is_some_and(|g| g.latched)
    }

    fn rejected(&self, app: &str) -> bool {
        self.gates.get(app).is_some_and(|g| g.rejected)
    }

    fn calls_since(&self, from_s: u64) -> Vec<String> {
        self.calls
            .iter()
            .filter(|c| c.split('s').next().unwrap().parse::<u64>().unwrap() >= from_s)
            .cloned()
            .collect()
    }

    fn events_of(&self, kind: &str) -> Vec<(u64, String, String)> {
        self.events
            .iter()
            .filter(|e| e.2 == kind)
            .map(|e| (e.0, e.1.clone(), e.3.clone()))
            .collect()
    }
}

/// One step of a scenario table.
enum Step {
    /// Set what a node's probe sees from now on.
    Set(&'static str, Node),
    /// Advance the fake clock to this second, probing and planning on the way.
    At(u64),
    /// The next engine call for this app fails.
    FailNext(&'static str),
    /// Something outside berth starts this app.
    StartedByHand(&'static str),
    RestartDaemon,
    /// (app, status, running, latched, rejected) after the last tick.
    Expect(&'static str, GateStatus, bool, bool, bool),
    /// The app's reason, exactly.
    Reason(&'static str, &'static str),
    /// No engine call since this second.
    NoCallsSince(u64),
    /// Exactly these engine calls since this second.
    CallsSince(u64, &'static [&'static str]),
}

use Step::*;

fn play(name: &str, mut world: World, steps: &[Step]) -> World {
    for (i, step) in steps.iter().enumerate() {
        let at = format!("{name}, step {i} (t={}s)", world.now_s);
        match step {
            Set(n, s) => world.set(n, *s),
            At(s) => world.run_until(*s),
            FailNext(app) => {
                world.fail_next.insert(app.to_string());
            }
            StartedByHand(app) => {
                world.running.insert(app.to_string());
            }
            RestartDaemon => world.restart_daemon(),
            Expect(app, status, running, latched, rejected) => {
                assert_eq!(world.status(app), *status, "{at}: {app} status");
                assert_eq!(
                    world.running.contains(*app),
                    *running,
                    "{at}: {app} running"
                );
                assert_eq!(world.latched(app), *latched, "{at}: {app} latched");
                assert_eq!(world.rejected(app), *rejected, "{at}: {app} rejected");
            }
            Reason(app, reason) => assert_eq!(world.reason(app), *reason, "{at}: {app} reason"),
            NoCallsSince(s) => {
                assert_eq!(world.calls_since(*s), Vec::<String>::new(), "{at}: calls")
            }
            CallsSince(s, want) => assert_eq!(world.calls_since(*s), *want, "{at}: calls"),
        }
    }
    world
}

// The scenarios of issue 4, numbered as there.

#[test]
fn s01_boot_while_both_nodes_sync_holds_the_dependents() {
    let world = play(
        "s01",
        World::mining(
            true,
            &[
                ("monerod", Node::Syncing(1_600_000, 3_200_000)),
                ("tari", Node::Syncing(10, 100)),
            ],
        ),
        &[
            At(5),
            Expect("p2pool", Held, false, false, false),
            Expect("xmrig-proxy", Held, false, false, false),
            Reason(
                "xmrig-proxy",
                "held: waiting for monerod (syncing 50%, 1600000/3200000), tari (syncing 10%, 10/100)",
            ),
            // Someone starts the proxy by hand: stopped again, every tick.
            StartedByHand("xmrig-proxy"),
            At(10),
            CallsSince(0, &["10s stop xmrig-proxy"]),
            Expect("xmrig-proxy", Held, false, false, false),
            StartedByHand("xmrig-proxy"),
            At(300),
            CallsSince(0, &["10s stop xmrig-proxy", "15s stop xmrig-proxy"]),
            Expect("xmrig-proxy", Held, false, false, false),
        ],
    );
    // The hold is an event once per app, then quiet.
    assert_eq!(
        world
            .events_of("held")
            .iter()
            .map(|e| (e.0, e.1.as_str()))
            .collect::<Vec<_>>(),
        [(5, "p2pool"), (5, "xmrig-proxy")]
    );
}

#[test]
fn s01_hold_reason_shows_progress_like_the_issue() {
    let world = play(
        "s01-btc",
        World::new(
            vec![("lnd", 1, gate(&["bitcoind"], &[], &["bitcoind"], &[]))],
            &[("bitcoind", Node::Syncing(812_345, 850_000))],
        ),
        &[At(5)],
    );
    // 812345/850000 is 95.57%: the percentage shown is the probe's.
    assert_eq!(
        world.reason("lnd"),
        "held: waiting for bitcoind (syncing 95%, 812345/850000)"
    );
    let mut world = world;
    world.set("bitcoind", Node::NoPeers);
    world.run_until(10);
    assert_eq!(
        world.reason("lnd"),
        "held: waiting for bitcoind (not synced, height 1)"
    );
    world.set("bitcoind", Node::Down);
    world.run_until(15);
    assert_eq!(
        world.reason("lnd"),
        "held: waiting for bitcoind (unreachable)"
    );
    // Still one event: the set of nodes waited for did not change.
    assert_eq!(world.events_of("held").len(), 1);
}

#[test]
fn s02_one_required_node_synced_the_other_syncing_still_holds() {
    play(
        "s02",
        World::mining(
            true,
            &[
                ("monerod", Node::Synced(3_200_000)),
                ("tari", Node::Syncing(10, 100)),
            ],
        ),
        &[
            At(600),
            Expect("p2pool", Held, false, false, false),
            Expect("xmrig-proxy", Held, false, false, false),
            Reason("p2pool", "held: waiting for tari (syncing 10%, 10/100)"),
            NoCallsSince(0),
            // A restarted monerod with no peers (target 0) is not synced.
            Set("tari", Node::Synced(100)),
            Set("monerod", Node::NoPeers),
            At(700),
            Expect("p2pool", Held, false, false, false),
            Reason("p2pool", "held: waiting for monerod (not synced, height 1)"),
            NoCallsSince(0),
        ],
    );
}

#[test]
fn s03_both_synced_releases_in_dependency_order_and_latches() {
    let world = play(
        "s03",
        World::mining(
            true,
            &[
                ("monerod", Node::Syncing(10, 100)),
                ("tari", Node::Syncing(10, 100)),
            ],
        ),
        &[
            At(5),
            Set("monerod", Node::Synced(100)),
            Set("tari", Node::Synced(100)),
            At(10),
            CallsSince(0, &["10s start p2pool", "10s start xmrig-proxy"]),
            Expect("p2pool", Released, true, true, false),
            Expect("xmrig-proxy", Released, true, true, false),
            // The latch is one-way: the chain falling behind again holds
            // nothing and stops nothing.
            Set("monerod", Node::Syncing(100, 200)),
            Set("tari", Node::NoPeers),
            At(600),
            NoCallsSince(11),
            Expect("p2pool", Released, true, true, false),
            Expect("xmrig-proxy", Released, true, true, false),
        ],
    );
    assert_eq!(world.events_of("released").len(), 2);
}

/// Boot synced and released: the common starting point of the failover
/// scenarios (monerod and tari synced, both apps running and latched).
fn released_mining(tari_required: bool) -> World {
    play(
        "released",
        World::mining(
            tari_required,
            &[("monerod", Node::Synced(100)), ("tari", Node::Synced(100))],
        ),
        &[
            At(5),
            Expect("p2pool", Released, true, true, false),
            Expect("xmrig-proxy", Released, true, true, false),
        ],
    )
}

#[test]
fn s04_s05_optional_node_down_and_back_changes_nothing() {
    let world = play(
        "s04",
        released_mining(false),
        &[
            Set("tari", Node::Down),
            At(1000),
            NoCallsSince(6),
            Expect("p2pool", Released, true, true, false),
            Expect("xmrig-proxy", Released, true, true, false),
        ],
    );
    // Down (it was up once) but ignored: a passive badge. 12:00:10 is the
    // first probe that failed.
    assert_eq!(
        world.last.apps["xmrig-proxy"].badges,
        ["tari: down since 12:00:10 (ignored)"]
    );
    assert_eq!(world.events_of("node-down").len(), 1);
    let world = play(
        "s05",
        world,
        &[
            Set("tari", Node::Synced(100)),
            At(1200),
            NoCallsSince(6),
            Expect("xmrig-proxy", Released, true, true, false),
        ],
    );
    assert_eq!(
        world.last.apps["xmrig-proxy"].badges,
        ["tari: synced at 100"]
    );
    assert_eq!(world.events_of("node-recovered").len(), 1);
}

#[test]
fn s06_required_node_down_rejects_the_proxy_and_the_pool_keeps_running() {
    play(
        "s06",
        released_mining(false),
        &[
            // A blip shorter than down_after: nothing.
            Set("monerod", Node::Down),
            At(60),
            Set("monerod", Node::Synced(100)),
            At(200),
            NoCallsSince(6),
            Expect("xmrig-proxy", Released, true, true, false),
            // A real outage from 205 s: down after 90 s of it, not before.
            Set("monerod", Node::Down),
            At(290),
            NoCallsSince(6),
            Expect("xmrig-proxy", Released, true, true, false),
            At(295),
            CallsSince(6, &["295s stop xmrig-proxy"]),
            Expect("xmrig-proxy", Rejected, false, true, true),
            Reason("xmrig-proxy", "rejected: monerod down since 12:03:25"),
            Expect("p2pool", Released, true, true, false),
            // It stays that way, quietly.
            At(1000),
            CallsSince(6, &["295s stop xmrig-proxy"]),
        ],
    );
}

#[test]
fn s07_node_back_readmits_after_the_recovery_window() {
    play(
        "s07",
        released_mining(false),
        &[
            Set("monerod", Node::Down),
            At(100),
            Expect("xmrig-proxy", Rejected, false, true, true),
            Set("monerod", Node::Synced(100)),
            At(105),
            Reason(
                "xmrig-proxy",
                "rejected: monerod down since 12:00:10 (reachable again since 12:01:45)",
            ),
            // Not before recovery_after of continuous reachability...
            At(160),
            Expect("xmrig-proxy", Rejected, false, true, true),
            // ...and a blip in the window restarts it.
            Set("monerod", Node::Down),
            At(165),
            Set("monerod", Node::Synced(100)),
            At(225),
            Expect("xmrig-proxy", Rejected, false, true, true),
            At(230),
            CallsSince(6, &["100s stop xmrig-proxy", "230s start xmrig-proxy"]),
            Expect("xmrig-proxy", Released, true, true, false),
        ],
    );
}

#[test]
fn s08_busy_node_is_down_then_readmitted() {
    play(
        "s08",
        released_mining(false),
        &[
            Set("monerod", Node::Busy),
            At(95),
            Expect("xmrig-proxy", Released, true, true, false),
            At(100),
            Expect("xmrig-proxy", Rejected, false, true, true),
            Set("monerod", Node::Synced(100)),
            At(160),
            Expect("xmrig-proxy", Rejected, false, true, true),
            At(165),
            Expect("xmrig-proxy", Released, true, true, false),
            CallsSince(6, &["100s stop xmrig-proxy", "165s start xmrig-proxy"]),
        ],
    );
}

#[test]
fn s09_double_outage_readmits_only_when_both_recover() {
    play(
        "s09",
        released_mining(true),
        &[
            Set("monerod", Node::Down),
            Set("tari", Node::Down),
            At(100),
            Expect("xmrig-proxy", Rejected, false, true, true),
            Reason(
                "xmrig-proxy",
                "rejected: monerod down since 12:00:10, tari down since 12:00:10",
            ),
            Set("monerod", Node::Synced(100)),
            At(400),
            Expect("xmrig-proxy", Rejected, false, true, true),
            Reason("xmrig-proxy", "rejected: tari down since 12:00:10"),
            Set("tari", Node::Synced(100)),
            At(460),
            Expect("xmrig-proxy", Rejected, false, true, true),
            At(465),
            Expect("xmrig-proxy", Released, true, true, false),
            Expect("p2pool", Released, true, true, false),
            CallsSince(6, &["100s stop xmrig-proxy", "465s start xmrig-proxy"]),
        ],
    );
}

#[test]
fn s10_daemon_restart_keeps_latch_and_rejection_and_readmits_only_on_observed_health() {
    play(
        "s10",
        released_mining(false),
        &[
            Set("monerod", Node::Down),
            At(100),
            Expect("xmrig-proxy", Rejected, false, true, true),
            // The daemon restarts while monerod is already back.
            Set("monerod", Node::Synced(100)),
            RestartDaemon,
            At(105),
            // Latch and rejection survived; the new daemon has watched monerod
            // for 0 s, so no readmission yet.
            Expect("p2pool", Released, true, true, false),
            Expect("xmrig-proxy", Rejected, false, true, true),
            At(160),
            Expect("xmrig-proxy", Rejected, false, true, true),
            At(165),
            Expect("xmrig-proxy", Released, true, true, false),
            CallsSince(6, &["100s stop xmrig-proxy", "165s start xmrig-proxy"]),
        ],
    );
    // A restart mid-sync keeps holding; a restart after the release keeps
    // the latch although the chain is behind again.
    play(
        "s10-hold",
        World::mining(false, &[("monerod", Node::Syncing(1, 100))]),
        &[
            At(5),
            Expect("p2pool", Held, false, false, false),
            RestartDaemon,
            At(10),
            Expect("p2pool", Held, false, false, false),
            Set("monerod", Node::Synced(100)),
            At(15),
            Expect("p2pool", Released, true, true, false),
            Set("monerod", Node::Syncing(100, 200)),
            RestartDaemon,
            At(20),
            Expect("p2pool", Released, true, true, false),
            CallsSince(0, &["15s start p2pool", "15s start xmrig-proxy"]),
        ],
    );
}

#[test]
fn s11_optional_node_never_blocks_release_and_its_outage_is_ignored() {
    let world = play(
        "s11",
        World::mining(
            false,
            &[
                ("monerod", Node::Synced(100)),
                ("tari", Node::Syncing(5, 100)),
            ],
        ),
        &[
            At(5),
            Expect("p2pool", Released, true, true, false),
            Expect("xmrig-proxy", Released, true, true, false),
        ],
    );
    assert_eq!(
        world.last.apps["p2pool"].badges,
        ["tari: syncing 5%, 5/100"]
    );
    play(
        "s11-outage",
        world,
        &[
            Set("tari", Node::Down),
            At(1000),
            NoCallsSince(6),
            Expect("xmrig-proxy", Released, true, true, false),
        ],
    );
}

#[test]
fn s12_a_node_never_reachable_causes_no_false_rejection() {
    // Tari must reject the proxy when down, but berth has never seen it up.
    play(
        "s12",
        World::new(
            vec![(
                "xmrig-proxy",
                2,
                gate(&["monerod"], &[], &["monerod", "tari"], &[]),
            )],
            &[("monerod", Node::Synced(100)), ("tari", Node::Down)],
        ),
        &[
            At(5),
            Expect("xmrig-proxy", Released, true, true, false),
            At(10_000),
            NoCallsSince(6),
            Expect("xmrig-proxy", Released, true, true, false),
            // Once seen up, its outage counts.
            Set("tari", Node::Synced(1)),
            At(10_005),
            Set("tari", Node::Down),
            At(10_100),
            CallsSince(6, &["10100s stop xmrig-proxy"]),
            Expect("xmrig-proxy", Rejected, false, true, true),
        ],
    );
}

#[test]
fn partial_start_failure_sets_no_latch_and_retries_next_tick() {
    play(
        "partial-start",
        World::mining(false, &[("monerod", Node::Syncing(1, 100))]),
        &[
            At(5),
            Set("monerod", Node::Synced(100)),
            FailNext("xmrig-proxy"),
            At(10),
            CallsSince(0, &["10s start p2pool", "10s start xmrig-proxy (failed)"]),
            // p2pool started, xmrig-proxy did not: no latch for either.
            Expect("p2pool", Released, true, false, false),
            Expect("xmrig-proxy", Released, false, false, false),
            At(15),
            CallsSince(11, &["15s start xmrig-proxy"]),
            Expect("p2pool", Released, true, true, false),
            Expect("xmrig-proxy", Released, true, true, false),
        ],
    );
}

#[test]
fn failed_reject_and_readmit_are_retried_and_the_flag_follows_the_engine() {
    play(
        "failed-calls",
        released_mining(false),
        &[
            Set("monerod", Node::Down),
            FailNext("xmrig-proxy"),
            At(100),
            // The stop failed: still running, not flagged rejected.
            Expect("xmrig-proxy", Rejected, true, true, false),
            At(105),
            Expect("xmrig-proxy", Rejected, false, true, true),
            Set("monerod", Node::Synced(100)),
            FailNext("xmrig-proxy"),
            At(170),
            // The start failed: the gate lets it run, but the flag stays
            // until a start succeeds.
            Expect("xmrig-proxy", Released, false, true, true),
            At(175),
            Expect("xmrig-proxy", Released, true, true, false),
            CallsSince(
                6,
                &[
                    "100s stop xmrig-proxy (failed)",
                    "105s stop xmrig-proxy",
                    "170s start xmrig-proxy (failed)",
                    "175s start xmrig-proxy",
                ],
            ),
        ],
    );
}

#[test]
fn rejected_app_started_by_hand_is_stopped_again() {
    play(
        "rejected-by-hand",
        released_mining(false),
        &[
            Set("monerod", Node::Down),
            At(100),
            StartedByHand("xmrig-proxy"),
            At(105),
            Expect("xmrig-proxy", Rejected, false, true, true),
            CallsSince(6, &["100s stop xmrig-proxy", "105s stop xmrig-proxy"]),
        ],
    );
}

#[test]
fn user_stopped_apps_are_latched_and_readmitted_without_being_started() {
    let mut world = World::mining(false, &[("monerod", Node::Synced(100))]);
    world.user_stopped.insert("xmrig-proxy".into());
    play(
        "user-stopped",
        world,
        &[
            At(5),
            CallsSince(0, &["5s start p2pool"]),
            Expect("xmrig-proxy", Released, false, true, false),
            Set("monerod", Node::Down),
            At(100),
            // Nothing to stop: flagged rejected directly.
            Expect("xmrig-proxy", Rejected, false, true, true),
            Set("monerod", Node::Synced(100)),
            At(165),
            Expect("xmrig-proxy", Released, false, true, false),
            CallsSince(0, &["5s start p2pool"]),
        ],
    );
}

#[test]
fn gate_reset_rearms_the_hold() {
    let mut world = released_mining(false);
    world.set("monerod", Node::Syncing(100, 200));
    berth_core::gate::reset(world.gates.get_mut("xmrig-proxy").unwrap());
    play(
        "reset",
        world,
        &[
            At(10),
            Expect("xmrig-proxy", Held, false, false, false),
            Expect("p2pool", Released, true, true, false),
            CallsSince(6, &["10s stop xmrig-proxy"]),
        ],
    );
}

#[test]
fn plan_is_idempotent_and_wakes_when_a_verdict_can_change() {
    let mut world = released_mining(false);
    world.set("monerod", Node::Down);
    world.run_until(10);
    // Down at 10 s + 90 s unless a probe says otherwise.
    assert_eq!(world.last.next_wake_ms, Some(T0_MS + 100_000));
    // The same input twice gives the same plan.
    let apps: Vec<GatedApp<'_>> = world
        .apps
        .iter()
        .map(|(id, tier, g)| GatedApp {
            id,
            gate: g,
            tier: *tier,
            wants_running: true,
            running: world.running.contains(id),
        })
        .collect();
    let input = GateInput {
        apps,
        nodes: BTreeMap::new(),
        trackers: &world.trackers,
        gates: &world.gates,
        now_ms: T0_MS + 50_000,
    };
    let a = plan_gates(&input);
    let b = plan_gates(&input);
    assert_eq!(a, b);
    assert!(a.actions.is_empty() && a.events.is_empty());
}

#[test]
fn actions_stop_dependents_first_and_start_in_tier_order() {
    let lnd = gate(&["bitcoind"], &[], &["bitcoind"], &[]);
    let mut world = World::new(
        vec![
            ("rtl", 3, lnd.clone()),
            ("lnd", 1, lnd.clone()),
            ("electrs", 1, lnd),
        ],
        &[("bitcoind", Node::Synced(1))],
    );
    world.run_until(5);
    assert_eq!(
        world.calls_since(0),
        ["5s start electrs", "5s start lnd", "5s start rtl"]
    );
    world.set("bitcoind", Node::Down);
    world.run_until(100);
    assert_eq!(
        world.calls_since(6),
        ["100s stop rtl", "100s stop electrs", "100s stop lnd"]
    );
    let kinds: Vec<&str> = world
        .last
        .actions
        .iter()
        .map(|a| match a {
            GateAction::Reject { .. } => "reject",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["reject", "reject", "reject"]);
}

mod props {
    use proptest::prelude::*;

    use super::*;

    fn arb_node() -> impl Strategy<Value = Node> {
        prop_oneof![
            Just(Node::Synced(100)),
            Just(Node::Syncing(50, 100)),
            Just(Node::NoPeers),
            Just(Node::Down),
            Just(Node::Busy),
        ]
    }

    /// One tick of a random history: advance, what each node says, which
    /// app's next engine call fails, whether the daemon restarts first.
    fn arb_tick() -> impl Strategy<Value = (u64, Node, Node, Option<bool>, bool)> {
        (
            1u64..150,
            arb_node(),
            arb_node(),
            proptest::option::weighted(0.15, any::<bool>()),
            proptest::bool::weighted(0.05),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the nodes do, the gate never acts out of turn.
        #[test]
        fn gate_invariants(
            tari_required in any::<bool>(),
            ticks in proptest::collection::vec(arb_tick(), 1..60),
        ) {
            let mut world = World::mining(tari_required, &[]);
            let mut ever_up: BTreeSet<String> = BTreeSet::new();
            for (dt, monerod, tari, fail, restart) in ticks {
                if restart {
                    world.restart_daemon();
                }
                world.set("monerod", monerod);
                world.set("tari", tari);
                if let Some(proxy) = fail {
                    world.fail_next.insert(if proxy { "xmrig-proxy" } else { "p2pool" }.into());
                }
                for (n, s) in &world.nodes {
                    if s.state().reachable {
                        ever_up.insert(n.clone());
                    }
                }
                let before = world.gates.clone();
                let running_before = world.running.clone();
                world.now_s += dt;
                world.tick();
                let plan = &world.last;
                for action in &plan.actions {
                    let app = action.app();
                    let was = before.get(app).cloned().unwrap_or_default();
                    let (_, _, spec) = world.apps.iter().find(|(id, _, _)| id == app).unwrap();
                    match action {
                        GateAction::Hold { .. } => {
                            prop_assert!(!was.latched);
                            prop_assert!(running_before.contains(app));
                        }
                        GateAction::Release { .. } => {
                            prop_assert!(!was.latched);
                            prop_assert!(!running_before.contains(app));
                            // Every required node said synced this tick.
                            for n in &spec.wait_for {
                                prop_assert!(world.nodes[n].state().synced, "{n}");
                            }
                        }
                        GateAction::Reject { .. } => {
                            // Failover never acts before the release.
                            prop_assert!(was.latched);
                            prop_assert!(running_before.contains(app));
                            prop_assert!(
                                was.rejected
                                    || spec.reject_when_down.iter().any(|n| plan.trackers[n].down)
                            );
                        }
                        GateAction::Readmit { .. } => {
                            prop_assert!(was.latched && was.rejected);
                            prop_assert!(!running_before.contains(app));
                            for n in &spec.reject_when_down {
                                prop_assert!(!plan.trackers[n].down, "{n}");
                            }
                        }
                    }
                }
                for (app, state) in &world.gates {
                    let was = before.get(app).cloned().unwrap_or_default();
                    // The latch is one-way.
                    prop_assert!(state.latched || !was.latched, "{app} lost its latch");
                    // Held apps never run unless a stop just failed.
                    if world.last.apps[app].status == GateStatus::Held && fail.is_none() {
                        prop_assert!(!world.running.contains(app), "{app} runs while held");
                    }
                }
                // A node never seen reachable is never down.
                for (n, t) in &world.trackers {
                    if !ever_up.contains(n) {
                        prop_assert!(!t.down, "{n} down without ever being up");
                    }
                }
            }
        }
    }
}
