//! Unit tests of the store, against real files in a temporary directory.

mod apps;
mod events;
mod gates;
mod journal;
mod runs;
mod secrets;
mod state_dir;
mod supervision;

use std::collections::BTreeMap;
use std::time::Duration;

use berth_core::model::{
    App, DependsCondition, HealthCheck, HealthKind, PortMapping, Protocol, RestartPolicy,
    VolumeMount, WebUi,
};

use crate::{StateDir, Store};

/// A fresh state directory in a temporary directory (kept alive by the
/// returned guard).
pub(crate) fn state_dir() -> (tempfile::TempDir, StateDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = StateDir::open(&tmp.path().join("state")).expect("open state dir");
    (tmp, dir)
}

pub(crate) fn store() -> (tempfile::TempDir, StateDir, Store) {
    let (tmp, dir) = state_dir();
    let store = dir.store().expect("open store");
    (tmp, dir, store)
}

/// bitcoind as a Bitcoin stack manifest would describe it.
pub(crate) fn bitcoind() -> App {
    App {
        id: "bitcoind".into(),
        companion_of: None,
        image: "registry.local/bitcoin/bitcoind:27.1".into(),
        entrypoint: None,
        command: Some(vec![
            "bitcoind".into(),
            "-server=1".into(),
            "-rpcbind=0.0.0.0".into(),
            "-rpcallowip=10.0.0.0/8".into(),
        ]),
        env: BTreeMap::from([
            ("BITCOIN_NETWORK".into(), "mainnet".into()),
            ("RPC_USER".into(), "berth".into()),
        ]),
        ports: vec![
            PortMapping {
                host_ip: None,
                host_port: 8333,
                container_port: 8333,
                protocol: Protocol::Tcp,
            },
            PortMapping {
                host_ip: Some("127.0.0.1".into()),
                host_port: 8332,
                container_port: 8332,
                protocol: Protocol::Tcp,
            },
        ],
        volumes: vec![VolumeMount {
            name: "data".into(),
            path: "/data/.bitcoin".into(),
            class: Default::default(),
            snapshot_before_update: false,
        }],
        depends_on: BTreeMap::new(),
        tier: Some(0),
        stop_grace: Duration::from_secs(600),
        restart: RestartPolicy::Always,
        health: Some(HealthCheck {
            kind: HealthKind::Command {
                argv: vec!["bitcoin-cli".into(), "getblockchaininfo".into()],
            },
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            retries: 3,
            start_period: Duration::from_secs(120),
            progress: None,
        }),
        secrets: vec!["rpc-password".into()],
        labels: BTreeMap::from([("io.berth.tier".into(), "chain".into())]),
        memory_bytes: Some(4 * 1024 * 1024 * 1024),
        cap_add: vec![],
        user: Some("1000:1000".into()),
        web_ui: None,
        companions: vec!["bitcoind-exporter".into()],
        probe: None,
        gate: None,
        update: Default::default(),
    }
}

/// electrs, which waits for bitcoind to be healthy.
pub(crate) fn electrs() -> App {
    App {
        id: "electrs".into(),
        companion_of: None,
        image: "registry.local/electrs:0.10.5".into(),
        entrypoint: Some(vec!["/usr/bin/electrs".into()]),
        command: None,
        env: BTreeMap::from([("ELECTRS_DAEMON_RPC_ADDR".into(), "bitcoind:8332".into())]),
        ports: vec![PortMapping {
            host_ip: None,
            host_port: 50001,
            container_port: 50001,
            protocol: Protocol::Tcp,
        }],
        volumes: vec![VolumeMount {
            name: "db".into(),
            path: "/data".into(),
            class: Default::default(),
            snapshot_before_update: false,
        }],
        depends_on: BTreeMap::from([("bitcoind".into(), DependsCondition::Healthy)]),
        tier: None,
        stop_grace: Duration::from_secs(30),
        restart: RestartPolicy::OnFailure,
        health: Some(HealthCheck {
            kind: HealthKind::Tcp { port: 50001 },
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            retries: 3,
            start_period: Duration::ZERO,
            progress: None,
        }),
        secrets: vec!["rpc-password".into()],
        labels: BTreeMap::new(),
        memory_bytes: None,
        cap_add: vec!["NET_BIND_SERVICE".into()],
        user: None,
        web_ui: Some(WebUi {
            host_port: 3006,
            path: "/".into(),
        }),
        companions: vec![],
        probe: None,
        gate: None,
        update: Default::default(),
    }
}

#[test]
fn now_ms_reads_the_system_clock() {
    // 2020-01-01T00:00:00Z; any machine running these tests is past it.
    assert!(crate::now_ms() > 1_577_836_800_000);
}
