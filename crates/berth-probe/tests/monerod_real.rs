//! Tier 2, contract: berth's monerod probe against the *real* monerod
//! (Debian's `monero` package, 0.18, installed on the host by
//! `scripts/setup.sh`), run as host processes in regtest on loopback ports
//! in a temporary directory — no engine, no network.
//!
//! How a real monerod is made "not synced", then "synced", with no network
//! and no timing luck: a *seed* monerod holds a few blocks; the *node*
//! dials only the seed (`--add-exclusive-node`) but starts with
//! `--out-peers 0`, so it has no peer and reports `synchronized: false`,
//! `target_height: 0`. Raising its limit through its own RPC
//! (`/out_peers`) lets it connect, sync the seed's blocks and report
//! `synchronized: true` (and `target_height` 0 again). An `--offline`
//! regtest monerod reports itself synchronized at once.
//!
//! The same bodies are sent to the real daemon and to berth-fake's
//! monerod, and their answers compared, so the fake cannot drift from the
//! real wire format unnoticed.
//!
//! Every monerod is killed by a drop guard (also when a test panics). Every
//! wait polls with a deadline; the only fixed wait is the window proving a
//! node without a peer *stays* not synced.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_core::gate::ChainState;
use berth_core::model::{ProbeKind, ProbeSpec};
use berth_probe::chain::probe_chain;
use berth_probe::http::request;
use serde_json::{Value, json};

const MONEROD: &str = "/usr/bin/monerod";
/// A throwaway wallet address made for these tests with `monero-wallet-cli
/// --generate-new-wallet --offline`: regtest's `generateblocks` wants one to
/// pay the block rewards to, and regtest coins are worth nothing.
const MINER_ADDRESS: &str = "47hm1JfqQX6WwQuwfPXTVfcN8rhoUEPKrRReLfjWa8yV76qA7MzkyWhUyb1MMy1iNj6qyKzoRoz1iTtaw3PC5Q6WEYYYdU7";
/// Blocks the seed mines before the node may sync (mining costs about
/// 0.1 s a block here: RandomX still hashes at difficulty 1).
const SEED_BLOCKS: u64 = 20;
const TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on any single wait (start-up is about 2 s; a busy host is slower).
const WAIT: Duration = Duration::from_secs(90);

fn spec() -> ProbeSpec {
    ProbeSpec {
        kind: ProbeKind::Monerod,
        port: 0,
        interval: Duration::from_secs(1),
        timeout: TIMEOUT,
        down_after: Duration::from_secs(4),
        recovery_after: Duration::from_secs(3),
    }
}

/// A loopback port nothing listens on right now (the kernel's pick).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One real monerod process, killed when dropped.
struct Monerod {
    name: &'static str,
    child: Option<Child>,
    rpc: String,
    p2p_port: u16,
    data: PathBuf,
}

impl Monerod {
    /// Start a regtest monerod with `extra` flags, its data (and log) under
    /// `dir/name`. The ports are fresh unless `p2p_port` is given (a
    /// restart keeps the address peers know).
    fn spawn(dir: &Path, name: &'static str, p2p_port: Option<u16>, extra: &[&str]) -> Monerod {
        assert!(
            Path::new(MONEROD).exists(),
            "{MONEROD} is missing: install the monero package (scripts/setup.sh)"
        );
        let data = dir.join(name);
        std::fs::create_dir_all(&data).expect("data dir");
        let rpc_port = free_port();
        let p2p_port = p2p_port.unwrap_or_else(free_port);
        let rpc_port_s = rpc_port.to_string();
        let p2p_port_s = p2p_port.to_string();
        let log = data.join("monerod.log");
        let mut cmd = Command::new(MONEROD);
        // Regtest at difficulty 1, nothing that looks for the outside
        // world, plain-HTTP RPC; --keep-fakechain because regtest would
        // otherwise wipe its chain at every start.
        cmd.args([
            "--regtest",
            "--keep-fakechain",
            "--fixed-difficulty",
            "1",
            "--non-interactive",
            "--no-igd",
            "--no-zmq",
            "--disable-dns-checkpoints",
            "--check-updates",
            "disabled",
            "--rpc-ssl",
            "disabled",
            "--rpc-bind-ip",
            "127.0.0.1",
            "--rpc-bind-port",
            &rpc_port_s,
            "--p2p-bind-ip",
            "127.0.0.1",
            "--p2p-bind-port",
            &p2p_port_s,
            "--log-level",
            "0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--log-file")
        .arg(&log)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {MONEROD}: {e}"));
        Monerod {
            name,
            child: Some(child),
            rpc: format!("127.0.0.1:{rpc_port}"),
            p2p_port,
            data,
        }
    }

    async fn probe(&self) -> ChainState {
        probe_chain(&spec(), &self.rpc, None).await
    }

    /// The last lines of its log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.data.join("monerod.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Poll the probe until `done` holds; every state seen is returned.
    async fn probe_until(
        &mut self,
        what: &str,
        done: impl Fn(&ChainState) -> bool,
    ) -> Vec<ChainState> {
        let end = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{}: monerod exited ({status}) waiting for {what}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            let s = self.probe().await;
            let finished = done(&s);
            seen.push(s);
            if finished {
                return seen;
            }
            assert!(
                Instant::now() < end,
                "{}: no {what} within {WAIT:?}; last {:?}\n{}",
                self.name,
                seen.last(),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_rpc(&mut self) -> ChainState {
        let seen = self.probe_until("RPC answer", |s| s.reachable).await;
        seen.last().cloned().expect("one state")
    }

    /// A call on one of monerod's RPC paths; the JSON answer.
    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = request(
            "POST",
            &format!("http://{}{path}", self.rpc),
            Some(body.to_string().into_bytes()),
            None,
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: POST {path}: {e}", self.name));
        assert_eq!(resp.status, 200, "{}: POST {path}", self.name);
        serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("{}: POST {path}: {e}", self.name))
    }

    async fn generate_blocks(&self, n: u64) -> u64 {
        let v = self
            .post(
                "/json_rpc",
                json!({"jsonrpc": "2.0", "id": "0", "method": "generateblocks",
                       "params": {"amount_of_blocks": n, "wallet_address": MINER_ADDRESS}}),
            )
            .await;
        assert!(
            v.get("error").is_none(),
            "{}: generateblocks: {v}",
            self.name
        );
        v["result"]["height"]
            .as_u64()
            .expect("generateblocks height")
    }

    /// SIGTERM and wait for the exit (monerod saves its chain on the way).
    fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        let end = Instant::now() + WAIT;
        while child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < end, "{}: no exit on SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Monerod {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-monerod-")
        .tempdir()
        .expect("tempdir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_monerod_is_not_synced_without_a_peer_then_syncs_from_its_seed() {
    let dir = tempdir();

    // The seed mines offline (an offline regtest node counts as
    // synchronized, which generateblocks requires), then restarts online
    // with the same chain, listening for peers but never dialling out.
    let mut seed = Monerod::spawn(dir.path(), "seed", None, &["--offline"]);
    let s = seed.wait_rpc().await;
    assert!(
        s.synced,
        "an offline regtest monerod is synchronized: {s:?}"
    );
    assert_eq!(seed.generate_blocks(SEED_BLOCKS).await, SEED_BLOCKS);
    let seed_p2p = seed.p2p_port;
    seed.stop();
    let mut seed = Monerod::spawn(dir.path(), "seed", Some(seed_p2p), &["--out-peers", "0"]);
    let tip = SEED_BLOCKS + 1; // monerod's height counts the genesis block
    seed.probe_until("the seed's mined chain", |s| s.current == Some(tip))
        .await;

    let exclusive = format!("127.0.0.1:{seed_p2p}");
    let mut node = Monerod::spawn(
        dir.path(),
        "node",
        None,
        &["--out-peers", "0", "--add-exclusive-node", &exclusive],
    );

    // No peer: answers, not synced, not syncing, no target yet.
    let s = node.wait_rpc().await;
    assert!(s.reachable && !s.synced && !s.syncing, "{s:?}");
    assert_eq!(
        (s.current, s.target, s.percent),
        (Some(1), None, None),
        "{s:?}"
    );
    assert_eq!(s.raw["synchronized"], false);
    assert_eq!(s.raw["target_height"], 0);
    assert_eq!(s.raw["nettype"], "fakechain");
    assert_eq!(s.raw["outgoing_connections_count"], 0);
    assert_eq!(
        s.detail,
        "fakechain: not synchronized, height 1, no target height yet (0 outgoing peers)"
    );
    assert_eq!(s.summary(), "not synced, height 1");

    // It stays so: without a peer it has nothing to sync from.
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        let s = node.probe().await;
        assert!(s.reachable && !s.synced, "synced without a peer: {s:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // One outgoing peer allowed: it dials the seed and syncs its chain.
    let v = node.post("/out_peers", json!({"out_peers": 1})).await;
    assert_eq!(v["status"], "OK", "{v}");
    let seen = node
        .probe_until("the node synced to the seed's tip", |s| {
            s.synced && s.current == Some(tip)
        })
        .await;
    let s = seen.last().unwrap();
    // Synchronized monerod 0.18 reports no target height (0).
    assert_eq!((s.target, s.percent), (None, Some(100.0)), "{s:?}");
    assert_eq!(s.raw["target_height"], 0);
    assert_eq!(s.raw["outgoing_connections_count"], 1);
    assert_eq!(s.detail, format!("fakechain: synced at height {tip}"));
    // On the way (if a probe caught it mid-sync): syncing toward the
    // seed's tip, never "synced" below it. The RPC can also stall past the
    // probe timeout while blocks are added — unreachable for that round.
    for s in &seen {
        if s.reachable && s.synced {
            assert_eq!(s.current, Some(tip), "synced below the tip: {s:?}");
        }
        if s.syncing {
            assert_eq!(s.target, Some(tip), "{s:?}");
            assert!(s.current < Some(tip), "{s:?}");
        }
    }

    // Synchronized, the node can mine itself: its height advances.
    assert_eq!(node.generate_blocks(3).await, tip + 2);
    let seen = node
        .probe_until("the node's height to advance", |s| {
            s.current == Some(tip + 3)
        })
        .await;
    assert!(seen.last().unwrap().synced, "{seen:?}");

    // Killed: unreachable, with the reason.
    node.kill();
    let s = node.probe().await;
    assert!(!s.reachable && !s.synced && !s.syncing, "{s:?}");
    assert!(!s.detail.is_empty(), "{s:?}");
    assert_eq!(s.summary(), "unreachable");
    seed.kill();
}

/// The bodies the fake must answer as the real monerod does.
const ENVELOPES: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":"0","method":"get_info"}"#,
    r#"{"jsonrpc":"2.0","id":7,"method":"get_block_count"}"#,
    r#"{"jsonrpc":"2.0","id":7,"method":"getblockcount"}"#,
    r#"{"jsonrpc":"2.0","id":9,"method":"getinfo"}"#,
    r#"{"jsonrpc":"2.0","id":[1],"method":"nope"}"#,
    r#"{"jsonrpc":"2.0","id":1}"#,
    r#"{"id":null,"method":"get_block_count"}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":5}"#,
    "{",
    "",
    "[1]",
    "null",
    "{}",
];

/// HTTP status, then the reply's shape: error code and id, or the sorted
/// result keys with the JSON type of each value.
async fn envelope(addr: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let resp = request(
        method,
        &format!("http://{addr}{path}"),
        (!body.is_empty()).then(|| body.as_bytes().to_vec()),
        None,
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path} {body:?} on {addr}: {e}"));
    let shape = match serde_json::from_slice::<Value>(&resp.body) {
        Ok(v) => {
            let obj = v.get("result").unwrap_or(&v);
            match (v.get("error"), obj.as_object()) {
                (Some(e), _) => json!({"error": e["code"], "id": v["id"]}),
                (None, Some(o)) => {
                    let types: serde_json::Map<String, Value> = o
                        .iter()
                        .map(|(k, x)| {
                            let t = match x {
                                Value::Bool(_) => "bool",
                                Value::Number(_) => "number",
                                Value::String(_) => "string",
                                _ => "other",
                            };
                            (k.clone(), json!(t))
                        })
                        .collect();
                    json!({"id": v.get("id"), "result": types})
                }
                (None, None) => json!({"other": v}),
            }
        }
        Err(_) => json!({"body bytes": resp.body.len()}),
    };
    (resp.status, shape)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_offline_monerod_is_synced_and_the_fake_answers_like_it() {
    let dir = tempdir();
    let mut real = Monerod::spawn(dir.path(), "offline", None, &["--offline"]);
    let t0 = Instant::now();
    let s = real.wait_rpc().await;
    eprintln!(
        "monerod --regtest --offline answered RPC after {:?}",
        t0.elapsed()
    );
    // Offline regtest: synchronized with no target, at the genesis block.
    assert!(s.reachable && s.synced && !s.syncing, "{s:?}");
    assert_eq!((s.current, s.target), (Some(1), None), "{s:?}");
    assert_eq!(s.raw["offline"], true);
    assert_eq!(s.detail, "fakechain: synced at height 1");

    // generateblocks: the probe sees the new height.
    assert_eq!(real.generate_blocks(2).await, 2);
    real.probe_until("height 3", |s| s.synced && s.current == Some(3))
        .await;

    // Wire format: berth-fake's monerod, synced, answers every envelope as
    // the real one does (same status, error codes and ids, and get_info's
    // 43 fields with the same names and JSON types).
    let fake = berth_fake::start(berth_fake::Config::for_test(berth_fake::App::Monerod))
        .expect("start fake");
    let fake_addr = fake.listen_addr().to_string();
    for body in ENVELOPES {
        let r = envelope(&real.rpc, "POST", "/json_rpc", body).await;
        let f = envelope(&fake_addr, "POST", "/json_rpc", body).await;
        assert_eq!(f, r, "fake vs real monerod for POST /json_rpc {body:?}");
    }
    // The comparison above is not of two empty answers.
    let (_, info) = envelope(&real.rpc, "POST", "/json_rpc", ENVELOPES[0]).await;
    assert_eq!(
        info["result"].as_object().map(|o| o.len()),
        Some(43),
        "{info}"
    );
    for (method, path) in [
        ("GET", "/json_rpc"),
        ("GET", "/get_info"),
        ("POST", "/getinfo"),
        ("PUT", "/get_info"),
        ("GET", "/get_height"),
        ("POST", "/getheight"),
        ("GET", "/no_such_path"),
    ] {
        let r = envelope(&real.rpc, method, path, "").await;
        let f = envelope(&fake_addr, method, path, "").await;
        assert_eq!(f, r, "fake vs real monerod for {method} {path}");
    }
    // And the synced state reads the same through the probe: no target.
    let f = probe_chain(&spec(), &fake_addr, None).await;
    assert!(f.synced && f.target.is_none(), "{f:?}");
    assert_eq!(
        f.raw["target_height"],
        real.probe().await.raw["target_height"]
    );

    real.kill();
    let s = real.probe().await;
    assert!(!s.reachable, "{s:?}");
}
