//! The same test bodies against real Podman and real Docker.
//!
//! `BERTH_TEST_ENGINES` (comma list, default `podman,docker`) selects the
//! engines. A requested engine that cannot be reached fails the test with a
//! message saying so: nothing is skipped silently.
//!
//! Every object a test creates is named `bt-<case>-<pid>-<engine>-...` and
//! labelled `io.berth.test.pid=<pid>`; each case first removes leftovers of
//! its own earlier runs whose process is gone, then cleans up after itself.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_core::classify::EngineStatus;
use berth_core::model::{PortMapping, Protocol};
use berth_core::observed::ObservedContainer;
use berth_core::spec::{BindMount, ContainerSpec, NamedVolume};
use berth_engine::api::ApiEngine;
use berth_engine::podman_service::{self, PodmanOptions};
use berth_engine::{Engine, EngineError, EngineKind, PullProgress};
use futures_util::FutureExt;

const TEST_IMAGE: &str = "localhost/berth-test-busybox:latest";
const LABEL_CASE: &str = "io.berth.test.case";
const LABEL_PID: &str = "io.berth.test.pid";
const REGISTRY_ADDR: &str = "127.0.0.1:5000";
/// Bound on every wait for a container state.
const WAIT_S: u64 = 30;
/// Applets the test image links besides /bin/busybox (the rest are run as
/// `busybox <applet>`).
const IMAGE_APPLETS: [&str; 6] = ["sh", "sleep", "nc", "httpd", "cat", "echo"];

// ---- engine selection ---------------------------------------------------

fn requested_engines() -> Vec<EngineKind> {
    let raw = std::env::var("BERTH_TEST_ENGINES").unwrap_or_else(|_| "podman,docker".into());
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "podman" => EngineKind::Podman,
            "docker" => EngineKind::Docker,
            other => panic!("BERTH_TEST_ENGINES: unknown engine {other:?} (use podman, docker)"),
        })
        .collect()
}

async fn connect(kind: EngineKind) -> ApiEngine {
    let result = match kind {
        EngineKind::Podman => podman_service::connect_podman(&PodmanOptions::default()).await,
        _ => podman_service::connect_docker(None).await,
    };
    result.unwrap_or_else(|e| {
        panic!(
            "BERTH_TEST_ENGINES requests {kind}, but it is unavailable: {e}\n\
             Start it (docker: `dockerd >/var/log/dockerd.log 2>&1 &`) or set \
             BERTH_TEST_ENGINES to the engines present here."
        )
    })
}

/// One case running against one engine.
struct Env {
    engine: ApiEngine,
    kind: EngineKind,
    case: &'static str,
    prefix: String,
    network: String,
}

impl Env {
    async fn new(kind: EngineKind, case: &'static str) -> Env {
        let engine = connect(kind).await;
        ensure_test_image(&engine).await;
        let prefix = format!(
            "bt-{}-{}-{kind}",
            case.replace('_', "-"),
            std::process::id()
        );
        let env = Env {
            network: format!("{prefix}-net"),
            engine,
            kind,
            case,
            prefix,
        };
        env.remove_leftovers().await;
        env.engine
            .ensure_network(&env.network, &env.labels())
            .await
            .expect("create test network");
        env
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_CASE.to_string(), self.case.to_string()),
            (LABEL_PID.to_string(), std::process::id().to_string()),
        ])
    }

    /// A hardened spec like `ContainerSpec::for_app` builds, running `cmd`.
    fn spec(&self, suffix: &str, cmd: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: self.name(suffix),
            stack: self.prefix.clone(),
            app: suffix.into(),
            image: TEST_IMAGE.into(),
            entrypoint: None,
            command: Some(cmd.iter().map(|s| s.to_string()).collect()),
            env: BTreeMap::from([("BERTH_TEST".to_string(), "1".to_string())]),
            ports: vec![],
            volumes: vec![],
            binds: vec![],
            network: self.network.clone(),
            aliases: vec![suffix.into()],
            labels: self.labels(),
            cap_add: vec![],
            memory_bytes: None,
            user: None,
            stop_grace_s: 10,
            no_new_privileges: true,
            cap_drop_all: true,
            log_max_size: "10m".into(),
            log_max_files: 3,
        }
    }

    async fn run(&self, spec: &ContainerSpec) {
        self.engine
            .create_container(spec)
            .await
            .unwrap_or_else(|e| panic!("[{}] create {}: {e}", self.kind, spec.name));
        self.engine
            .start_container(&spec.name)
            .await
            .unwrap_or_else(|e| panic!("[{}] start {}: {e}", self.kind, spec.name));
    }

    async fn wait_status(&self, name: &str, want: EngineStatus) -> ObservedContainer {
        wait_until(
            &format!("[{}] {name} to be {want:?}", self.kind),
            || async {
                let c = self.engine.inspect_container(name).await.unwrap()?;
                (c.status == want).then_some(c)
            },
        )
        .await
    }

    async fn exec(&self, name: &str, argv: &[&str]) -> berth_engine::ExecOutput {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.engine
            .exec(name, &argv, Duration::from_secs(WAIT_S))
            .await
            .unwrap_or_else(|e| panic!("[{}] exec {argv:?} in {name}: {e}", self.kind))
    }

    /// Remove this case's containers, networks and volumes whose creating
    /// process is gone (or is us).
    async fn remove_leftovers(&self) {
        let me = std::process::id().to_string();
        let stale = |labels: &BTreeMap<String, String>| match labels.get(LABEL_PID) {
            Some(pid) => pid == &me || !Path::new(&format!("/proc/{pid}")).exists(),
            None => false,
        };
        let e = &self.engine;
        for c in e.list_containers((LABEL_CASE, self.case)).await.unwrap() {
            if stale(&c.labels) {
                e.remove_container(&c.name, true).await.unwrap();
            }
        }
        for v in e.list_volumes((LABEL_CASE, self.case)).await.unwrap() {
            if stale(&v.labels) {
                e.remove_volume(&v.name).await.unwrap();
            }
        }
        for n in e.list_networks((LABEL_CASE, self.case)).await.unwrap() {
            if stale(&n.labels) {
                e.remove_network(&n.name).await.unwrap();
            }
        }
    }
}

/// Poll `check` until it yields a value, failing after `WAIT_S`.
async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(WAIT_S);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT_S} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Run every listed case against every requested engine.
macro_rules! engine_tests {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            for kind in requested_engines() {
                let env = Env::new(kind, stringify!($case)).await;
                let outcome = AssertUnwindSafe(cases::$case(&env)).catch_unwind().await;
                // Clean up on failure too, then report the failure.
                env.remove_leftovers().await;
                if let Err(panic) = outcome {
                    eprintln!("case {} failed on {kind}", stringify!($case));
                    std::panic::resume_unwind(panic);
                }
            }
        }
    )*};
}

engine_tests!(
    info_describes_the_engine,
    lifecycle_inspect_ip_ports_and_aliases,
    list_reports_exit_codes_in_one_call,
    stop_honours_the_grace_period,
    logs_return_the_tail_of_both_streams,
    exec_reports_exit_codes_and_times_out,
    networks_and_volumes_are_idempotent,
    hardened_defaults_are_applied,
    volumes_persist_and_secrets_are_read_only,
    errors_are_typed,
    event_stream_reports_start_death_and_removal,
);

// ---- the test bodies ----------------------------------------------------

mod cases {
    use super::*;

    pub async fn event_stream_reports_start_death_and_removal(env: &Env) {
        use berth_engine::{EngineEvent, EngineEventAction};
        use std::sync::Arc;
        let seen: Arc<Mutex<Vec<EngineEvent>>> = Arc::default();
        let engine = env.engine.clone();
        let sink_seen = seen.clone();
        let watcher = tokio::spawn(async move {
            let sink = move |e: EngineEvent| sink_seen.lock().unwrap().push(e);
            engine.watch_events(&sink).await
        });
        // Give the stream a moment to be established before acting: an
        // event before the subscription would not be seen. Retried below.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut managed = env.spec(
            "evm",
            &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        );
        managed
            .labels
            .insert(berth_core::naming::LABEL_MANAGED.into(), "true".into());
        managed
            .labels
            .insert(berth_core::naming::LABEL_APP.into(), "evm".into());
        let unmanaged = env.spec(
            "evu",
            &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        );
        env.run(&unmanaged).await;
        env.run(&managed).await;
        env.wait_status(&managed.name, EngineStatus::Running).await;
        env.engine
            .kill_container(&managed.name, "KILL")
            .await
            .unwrap();
        env.wait_status(&managed.name, EngineStatus::Exited).await;
        env.engine
            .remove_container(&managed.name, true)
            .await
            .unwrap();
        let want = [
            EngineEventAction::Started,
            EngineEventAction::Died,
            EngineEventAction::Removed,
        ];
        wait_until(
            &format!("[{}] start, death and removal events", env.kind),
            || async {
                let seen = seen.lock().unwrap();
                want.iter()
                    .all(|a| {
                        seen.iter()
                            .any(|e| e.action == *a && e.container == managed.name)
                    })
                    .then_some(())
            },
        )
        .await;
        watcher.abort();
        let seen = seen.lock().unwrap();
        assert!(
            seen.iter().all(|e| e.container != unmanaged.name),
            "[{}] unmanaged containers are filtered out: {seen:?}",
            env.kind
        );
        assert!(
            seen.iter()
                .filter(|e| e.container == managed.name)
                .all(|e| e.app.as_deref() == Some("evm")),
            "[{}] {seen:?}",
            env.kind
        );
    }

    pub async fn info_describes_the_engine(env: &Env) {
        let info = env.engine.info().await.unwrap();
        assert_eq!(info.kind, env.kind);
        assert!(!info.version.is_empty(), "{info:?}");
        assert!(!info.api_version.is_empty(), "{info:?}");
        assert_eq!(info.endpoint, env.engine.socket().display().to_string());
        assert!(!info.cgroup_driver.is_empty(), "{info:?}");
        assert!(!info.runtime.is_empty(), "{info:?}");
        if env.kind == EngineKind::Podman {
            assert!(info.api_version.contains("libpod"), "{info:?}");
        }
        assert!(env.engine.call_count() > 0);
    }

    pub async fn lifecycle_inspect_ip_ports_and_aliases(env: &Env) {
        let e = &env.engine;
        let port = free_port();
        let mut web = env.spec(
            "web",
            &["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 & wait"],
        );
        web.ports.push(PortMapping {
            host_ip: Some("127.0.0.1".into()),
            host_port: port,
            container_port: 8080,
            protocol: Protocol::Tcp,
        });
        let id = e.create_container(&web).await.unwrap();
        assert!(!id.is_empty());
        let created = e.inspect_container(&web.name).await.unwrap().unwrap();
        assert_eq!(created.status, EngineStatus::Created);
        assert_eq!(
            (created.exit_code, created.started_at.clone()),
            (None, None)
        );
        assert_eq!(created.name, web.name);
        assert_eq!(created.image, TEST_IMAGE);
        assert_eq!(
            created.labels.get(LABEL_CASE).map(String::as_str),
            Some(env.case)
        );

        e.start_container(&web.name).await.unwrap();
        let running = env.wait_status(&web.name, EngineStatus::Running).await;
        let started = running
            .started_at
            .expect("a running container has a start time");
        assert!(started.contains('T') && started.len() >= 20, "{started}");
        assert_eq!(running.exit_code, None);
        let ip = e.container_ip(&web.name, &env.network).await.unwrap();
        let ip = ip.expect("an IP on the app network");
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
        assert_eq!(
            e.container_ip(&web.name, "no-such-net").await.unwrap(),
            None
        );

        let listed = e.list_containers((LABEL_CASE, env.case)).await.unwrap();
        let listed = listed.iter().find(|c| c.name == web.name).expect("listed");
        assert_eq!(listed.status, EngineStatus::Running);

        // The published port answers on the host.
        let answer = wait_until(&format!("[{}] port {port}", env.kind), || async {
            http_get(&format!("127.0.0.1:{port}"))
        })
        .await;
        assert!(answer.starts_with("HTTP/1."), "{answer}");

        // A second container reaches the first by its alias.
        let client = env.spec(
            "client",
            &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        );
        env.run(&client).await;
        let out = wait_until(&format!("[{}] alias web to resolve", env.kind), || async {
            let out = env
                .exec(
                    &client.name,
                    &[
                        "sh",
                        "-c",
                        "echo -e 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 web 8080",
                    ],
                )
                .await;
            out.output.contains("HTTP/1.").then_some(out)
        })
        .await;
        assert!(out.output.contains("HTTP/1."), "{out:?}");

        // A trap-wrapped process stops at once even with a long grace.
        let begun = Instant::now();
        e.stop_container(&web.name, Duration::from_secs(600))
            .await
            .unwrap();
        assert!(
            begun.elapsed() < Duration::from_secs(20),
            "{:?}",
            begun.elapsed()
        );
        let stopped = e.inspect_container(&web.name).await.unwrap().unwrap();
        assert_eq!(
            (stopped.status, stopped.exit_code),
            (EngineStatus::Exited, Some(0))
        );
        // Stopping a stopped container is fine.
        e.stop_container(&web.name, Duration::from_secs(1))
            .await
            .unwrap();

        e.remove_container(&web.name, false).await.unwrap();
        assert_eq!(e.inspect_container(&web.name).await.unwrap(), None);
        e.remove_container(&web.name, false).await.unwrap();
        e.remove_container(&client.name, true).await.unwrap();
    }

    pub async fn list_reports_exit_codes_in_one_call(env: &Env) {
        let e = &env.engine;
        let ok = env.spec("ok", &["sh", "-c", "exit 0"]);
        let crash = env.spec("crash", &["sh", "-c", "exit 3"]);
        let killed = env.spec("killed", &["sleep", "1000"]);
        let never = env.spec("never", &["sleep", "1000"]);
        for spec in [&ok, &crash, &killed] {
            env.run(spec).await;
        }
        e.create_container(&never).await.unwrap();
        env.wait_status(&ok.name, EngineStatus::Exited).await;
        env.wait_status(&crash.name, EngineStatus::Exited).await;
        env.wait_status(&killed.name, EngineStatus::Running).await;
        e.kill_container(&killed.name, "SIGKILL").await.unwrap();
        env.wait_status(&killed.name, EngineStatus::Exited).await;

        let before = e.call_count();
        let list = e.list_containers((LABEL_CASE, env.case)).await.unwrap();
        assert_eq!(e.call_count() - before, 1, "a list is one API call");
        let by_name: BTreeMap<&str, &ObservedContainer> =
            list.iter().map(|c| (c.name.as_str(), c)).collect();
        assert_eq!(by_name.len(), 4, "{list:#?}");
        assert_eq!(by_name[ok.name.as_str()].exit_code, Some(0));
        assert_eq!(by_name[crash.name.as_str()].exit_code, Some(3));
        assert_eq!(by_name[killed.name.as_str()].exit_code, Some(137));
        assert_eq!(by_name[never.name.as_str()].exit_code, None);
        assert_eq!(by_name[never.name.as_str()].status, EngineStatus::Created);
        for c in &list {
            assert_eq!(c.labels.get(LABEL_CASE).map(String::as_str), Some(env.case));
        }

        let inspected = e.inspect_container(&killed.name).await.unwrap().unwrap();
        assert_eq!(
            (inspected.exit_code, inspected.oom_killed),
            (Some(137), false)
        );
        assert!(inspected.started_at.is_some());

        // Another label value matches nothing.
        let none = e
            .list_containers((LABEL_CASE, "no-such-case"))
            .await
            .unwrap();
        assert!(none.is_empty(), "{none:?}");
    }

    pub async fn stop_honours_the_grace_period(env: &Env) {
        let e = &env.engine;
        // `sleep` as PID 1 has no SIGTERM handler, so the kernel ignores
        // SIGTERM and only the SIGKILL after the grace period ends it.
        let stubborn = env.spec("stubborn", &["sleep", "1000"]);
        env.run(&stubborn).await;
        env.wait_status(&stubborn.name, EngineStatus::Running).await;
        let begun = Instant::now();
        e.stop_container(&stubborn.name, Duration::from_secs(2))
            .await
            .unwrap();
        let took = begun.elapsed();
        assert!(
            took >= Duration::from_secs(2),
            "stopped before the grace ended: {took:?}"
        );
        assert!(took < Duration::from_secs(20), "{took:?}");
        let c = e.inspect_container(&stubborn.name).await.unwrap().unwrap();
        assert_eq!(c.exit_code, Some(137));

        let polite = env.spec(
            "polite",
            &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        );
        env.run(&polite).await;
        env.wait_status(&polite.name, EngineStatus::Running).await;
        let begun = Instant::now();
        e.stop_container(&polite.name, Duration::from_secs(600))
            .await
            .unwrap();
        assert!(
            begun.elapsed() < Duration::from_secs(20),
            "{:?}",
            begun.elapsed()
        );
        let c = e.inspect_container(&polite.name).await.unwrap().unwrap();
        assert_eq!(c.exit_code, Some(0));
    }

    pub async fn logs_return_the_tail_of_both_streams(env: &Env) {
        let e = &env.engine;
        let script = "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; done";
        let talker = env.spec("talker", &["sh", "-c", script]);
        // Engines copy stdout and stderr concurrently, so the order *across*
        // the two streams is not kept; each stream is checked on its own.
        let mixed = env.spec("mixed", &["sh", "-c", "echo to-stdout; echo to-stderr >&2"]);
        env.run(&talker).await;
        env.run(&mixed).await;
        env.wait_status(&talker.name, EngineStatus::Exited).await;
        env.wait_status(&mixed.name, EngineStatus::Exited).await;

        let tail = e.logs(&talker.name, 3).await.unwrap();
        assert_eq!(tail, vec!["line8", "line9", "line10"]);
        assert_eq!(e.logs(&talker.name, 100).await.unwrap().len(), 10);
        assert!(e.logs(&talker.name, 0).await.unwrap().is_empty());

        let mut both = e.logs(&mixed.name, 100).await.unwrap();
        both.sort();
        assert_eq!(both, vec!["to-stderr", "to-stdout"]);
    }

    pub async fn exec_reports_exit_codes_and_times_out(env: &Env) {
        let e = &env.engine;
        let box_ = env.spec(
            "box",
            &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        );
        env.run(&box_).await;
        env.wait_status(&box_.name, EngineStatus::Running).await;

        let ok = env.exec(&box_.name, &["sh", "-c", "exit 0"]).await;
        assert_eq!(ok.exit_code, 0);
        let out = env
            .exec(&box_.name, &["sh", "-c", "echo out; echo err >&2; exit 7"])
            .await;
        assert_eq!(out.exit_code, 7);
        assert!(
            out.output.contains("out") && out.output.contains("err"),
            "{out:?}"
        );
        let env_var = env
            .exec(&box_.name, &["sh", "-c", "echo $BERTH_TEST"])
            .await;
        assert_eq!(env_var.output.trim(), "1");

        let begun = Instant::now();
        let err = e
            .exec(
                &box_.name,
                &["sleep".to_string(), "30".to_string()],
                Duration::from_millis(500),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Timeout { .. }), "{err}");
        assert!(
            begun.elapsed() < Duration::from_secs(10),
            "{:?}",
            begun.elapsed()
        );

        let err = e
            .exec(
                &env.name("missing"),
                &["true".to_string()],
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    pub async fn networks_and_volumes_are_idempotent(env: &Env) {
        let e = &env.engine;
        let labels = env.labels();
        let net = env.name("extra-net");
        assert!(e.ensure_network(&net, &labels).await.unwrap());
        assert!(!e.ensure_network(&net, &labels).await.unwrap());
        let nets = e.list_networks((LABEL_CASE, env.case)).await.unwrap();
        let found = nets.iter().find(|n| n.name == net).expect("listed");
        assert_eq!(found.labels.get(LABEL_PID), labels.get(LABEL_PID));
        e.remove_network(&net).await.unwrap();
        e.remove_network(&net).await.unwrap();
        let nets = e.list_networks((LABEL_CASE, env.case)).await.unwrap();
        assert!(!nets.iter().any(|n| n.name == net));

        // Regression: Docker before API 1.44 creates a second network of the
        // same name unless asked with CheckDuplicate.
        let raced = env.name("raced-net");
        let (a, b) = tokio::join!(
            e.ensure_network(&raced, &labels),
            e.ensure_network(&raced, &labels)
        );
        assert!(a.unwrap() || b.unwrap(), "one of the two created it");
        let nets = e.list_networks((LABEL_CASE, env.case)).await.unwrap();
        assert_eq!(
            nets.iter().filter(|n| n.name == raced).count(),
            1,
            "{nets:?}"
        );
        e.remove_network(&raced).await.unwrap();

        let vol = env.name("vol");
        assert!(e.ensure_volume(&vol, &labels).await.unwrap());
        assert!(!e.ensure_volume(&vol, &labels).await.unwrap());
        let vols = e.list_volumes((LABEL_CASE, env.case)).await.unwrap();
        let found = vols.iter().find(|v| v.name == vol).expect("listed");
        assert_eq!(
            found.labels.get(LABEL_CASE).map(String::as_str),
            Some(env.case)
        );
        e.remove_volume(&vol).await.unwrap();
        e.remove_volume(&vol).await.unwrap();
        let vols = e.list_volumes((LABEL_CASE, env.case)).await.unwrap();
        assert!(!vols.iter().any(|v| v.name == vol));

        // A volume in use cannot be removed.
        let used = env.name("used-vol");
        e.ensure_volume(&used, &labels).await.unwrap();
        let mut user = env.spec("user", &["sleep", "1000"]);
        user.volumes.push(NamedVolume {
            volume: used.clone(),
            container_path: "/data".into(),
        });
        e.create_container(&user).await.unwrap();
        let err = e.remove_volume(&used).await.unwrap_err();
        assert!(matches!(err, EngineError::Conflict { .. }), "{err}");
        e.remove_container(&user.name, true).await.unwrap();
        e.remove_volume(&used).await.unwrap();
    }

    pub async fn hardened_defaults_are_applied(env: &Env) {
        let e = &env.engine;
        let mut locked = env.spec(
            "locked",
            &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        );
        locked.memory_bytes = Some(64 * 1024 * 1024);
        locked.user = Some("1000:1000".into());
        env.run(&locked).await;
        env.wait_status(&locked.name, EngineStatus::Running).await;

        let applied = e.applied_config(&locked.name).await.unwrap().unwrap();
        match env.kind {
            EngineKind::Docker => assert_eq!(applied.cap_drop, vec!["ALL"]),
            // Podman lists the capabilities ALL dropped.
            _ => assert!(
                applied
                    .cap_drop
                    .iter()
                    .any(|c| c == "ALL" || c.ends_with("CHOWN")),
                "{applied:?}"
            ),
        }
        assert!(applied.cap_add.is_empty(), "{applied:?}");
        assert!(
            applied
                .security_opt
                .iter()
                .any(|o| o.starts_with("no-new-privileges")),
            "{applied:?}"
        );
        assert_eq!(applied.restart_policy, "no");
        assert_eq!(applied.memory_bytes, Some(64 * 1024 * 1024));
        assert_eq!(applied.user, "1000:1000");
        assert_eq!(applied.stop_timeout_s, Some(10));
        match env.kind {
            EngineKind::Docker => {
                assert_eq!(applied.log_driver, "json-file");
                assert_eq!(applied.log_max_size.as_deref(), Some("10m"));
                assert_eq!(applied.log_max_files.as_deref(), Some("3"));
            }
            _ => {
                assert_eq!(applied.log_driver, "k8s-file");
                assert_eq!(applied.log_max_size.as_deref(), Some("10MB"));
                // The ulimits this host needs are set on the container.
                for u in &e.adjustments().ulimits {
                    assert!(applied.ulimits.contains(u), "{u:?} missing in {applied:?}");
                }
            }
        }

        // ... and they are in force inside the container.
        let status = env.exec(&locked.name, &["cat", "/proc/self/status"]).await;
        assert!(
            status.output.contains("NoNewPrivs:\t1"),
            "{}",
            status.output
        );
        assert!(
            status.output.contains("CapEff:\t0000000000000000"),
            "{}",
            status.output
        );
        let uid = env.exec(&locked.name, &["busybox", "id", "-u"]).await;
        assert_eq!(uid.output.trim(), "1000");
        let limit = env
            .exec(
                &locked.name,
                &[
                    "sh",
                    "-c",
                    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
                ],
            )
            .await;
        assert_eq!(limit.output.trim(), "67108864", "{limit:?}");

        // cap_add adds exactly the named capability back.
        let mut binder = env.spec(
            "binder",
            &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        );
        binder.cap_add = vec!["NET_BIND_SERVICE".into()];
        env.run(&binder).await;
        env.wait_status(&binder.name, EngineStatus::Running).await;
        let status = env.exec(&binder.name, &["cat", "/proc/self/status"]).await;
        assert!(
            status.output.contains("CapEff:\t0000000000000400"),
            "{}",
            status.output
        );
    }

    pub async fn volumes_persist_and_secrets_are_read_only(env: &Env) {
        let e = &env.engine;
        let secrets = tempfile::tempdir().unwrap();
        std::fs::write(secrets.path().join("rpcpassword"), "s3cret").unwrap();
        let volume = env.name("data");
        let with_mounts = |suffix: &str| {
            let mut spec = env.spec(
                suffix,
                &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
            );
            spec.volumes.push(NamedVolume {
                volume: volume.clone(),
                container_path: "/data".into(),
            });
            spec.binds.push(BindMount {
                host_path: secrets.path().display().to_string(),
                container_path: "/run/secrets".into(),
                read_only: true,
            });
            spec
        };
        e.ensure_volume(&volume, &env.labels()).await.unwrap();

        let first = with_mounts("first");
        env.run(&first).await;
        env.wait_status(&first.name, EngineStatus::Running).await;
        let secret = env
            .exec(&first.name, &["cat", "/run/secrets/rpcpassword"])
            .await;
        assert_eq!((secret.exit_code, secret.output.as_str()), (0, "s3cret"));
        let write = env
            .exec(&first.name, &["sh", "-c", "echo x > /run/secrets/new"])
            .await;
        assert_ne!(write.exit_code, 0, "the secrets mount must be read-only");
        assert!(!secrets.path().join("new").exists());
        let stored = env
            .exec(&first.name, &["sh", "-c", "echo kept > /data/file"])
            .await;
        assert_eq!(stored.exit_code, 0, "{stored:?}");
        e.remove_container(&first.name, true).await.unwrap();

        let second = with_mounts("second");
        env.run(&second).await;
        env.wait_status(&second.name, EngineStatus::Running).await;
        let kept = env.exec(&second.name, &["cat", "/data/file"]).await;
        assert_eq!(kept.output.trim(), "kept");
        e.remove_container(&second.name, true).await.unwrap();
        e.remove_volume(&volume).await.unwrap();
    }

    pub async fn errors_are_typed(env: &Env) {
        let e = &env.engine;
        let missing = env.name("missing");
        assert_eq!(e.inspect_container(&missing).await.unwrap(), None);
        assert_eq!(e.container_ip(&missing, &env.network).await.unwrap(), None);
        assert!(
            e.start_container(&missing)
                .await
                .unwrap_err()
                .is_not_found()
        );
        let err = e
            .stop_container(&missing, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(
            e.kill_container(&missing, "SIGKILL")
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(e.logs(&missing, 10).await.unwrap_err().is_not_found());
        e.remove_container(&missing, true).await.unwrap();

        let spec = env.spec("dup", &["sleep", "1000"]);
        e.create_container(&spec).await.unwrap();
        let err = e.create_container(&spec).await.unwrap_err();
        assert!(matches!(err, EngineError::Conflict { .. }), "{err}");
        // Killing a container that is not running is refused.
        let err = e.kill_container(&spec.name, "SIGKILL").await.unwrap_err();
        assert!(
            matches!(err, EngineError::Conflict { .. } | EngineError::Api { .. }),
            "{err}"
        );

        let mut no_image = env.spec("noimage", &["true"]);
        no_image.image = "localhost/berth-no-such-image:1".into();
        let err = e.create_container(&no_image).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(!e.image_exists(&no_image.image).await.unwrap());
        assert!(e.image_exists(TEST_IMAGE).await.unwrap());
    }
}

// ---- tests that are not one body per engine ------------------------------

#[tokio::test]
async fn a_missing_or_dead_socket_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("docker.sock");
    let err = ApiEngine::docker(&missing).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::Unavailable { detail, .. } if detail.contains(&missing.display().to_string())),
        "{err}"
    );
    let err = podman_service::connect_docker(Some(&missing))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("start dockerd"), "{err}");

    // A socket file nobody listens on any more.
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let err = ApiEngine::podman(&dead, Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Unavailable { detail, .. } if detail.contains(&dead.display().to_string())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_a_local_registry() {
    let _registry = Registry::ensure();
    for kind in requested_engines() {
        let engine = connect(kind).await;
        ensure_test_image(&engine).await;
        let image = format!(
            "{REGISTRY_ADDR}/berth-test-pull-{}-{kind}:v1",
            std::process::id()
        );
        push_test_image(kind, &image);
        assert!(
            !engine.image_exists(&image).await.unwrap(),
            "[{kind}] {image} must not be present before the pull"
        );

        let events = Mutex::new(Vec::<PullProgress>::new());
        engine
            .pull_image(&image, &|p| events.lock().unwrap().push(p))
            .await
            .unwrap_or_else(|e| panic!("[{kind}] pull {image}: {e}"));
        assert!(
            engine.image_exists(&image).await.unwrap(),
            "[{kind}] pulled"
        );
        let events = events.into_inner().unwrap();
        assert!(!events.is_empty(), "[{kind}] progress was reported");
        remove_image_cli(kind, &image);

        let missing_tag = format!(
            "{REGISTRY_ADDR}/berth-test-pull-{}-{kind}:nope",
            std::process::id()
        );
        let err = engine.pull_image(&missing_tag, &|_| {}).await.unwrap_err();
        assert!(matches!(err, EngineError::Pull { .. }), "[{kind}] {err}");

        // A registry that is down.
        let down = format!("127.0.0.1:{}/berth-test-down:v1", free_port());
        let begun = Instant::now();
        let err = engine.pull_image(&down, &|_| {}).await.unwrap_err();
        match &err {
            EngineError::Pull { image, detail } => {
                assert_eq!(image, &down);
                assert!(detail.contains("refused"), "[{kind}] {detail}");
            }
            other => panic!("[{kind}] expected a pull error, got {other}"),
        }
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "{:?}",
            begun.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_service_is_started_once_and_detached() {
    if !requested_engines().contains(&EngineKind::Podman) {
        return; // Only Docker was requested: this test is about Podman.
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = PodmanOptions {
        system_socket: dir.path().join("no-system.sock"),
        run_dir: dir.path().join("run"),
        ..PodmanOptions::default()
    };
    let (a, b) = tokio::join!(
        podman_service::connect_podman(&opts),
        podman_service::connect_podman(&opts)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.socket(), opts.own_socket());
    assert_eq!(b.socket(), opts.own_socket());
    a.info().await.unwrap();

    let pid: u32 = std::fs::read_to_string(opts.pid_path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let socket_arg = format!("unix://{}", opts.own_socket().display());
    let services: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|d| d.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&socket_arg))
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(services, vec![pid], "exactly one service for the socket");
    // Not our child, and in its own process group.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let (ppid, pgrp) = (fields[1], fields[2]);
    assert_ne!(ppid, std::process::id().to_string());
    assert_ne!(pgrp, std::process::id().to_string());
    let args = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args = String::from_utf8_lossy(&args).replace('\0', " ");
    for flag in a.adjustments().podman_global_args() {
        assert!(args.contains(&flag), "{flag} missing in {args}");
    }

    // A third connection reuses the running service.
    let c = podman_service::connect_podman(&opts).await.unwrap();
    c.info().await.unwrap();
    let pid_again: u32 = std::fs::read_to_string(opts.pid_path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid_again, pid);

    // End the service this test started, by its pid.
    let status = Command::new("kill").arg(pid.to_string()).status().unwrap();
    assert!(status.success());
    wait_until("the test's podman service to exit", || async {
        (!Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(true))
        .then_some(())
    })
    .await;

    // A podman binary that does not exist fails clearly and quickly.
    let broken = PodmanOptions {
        system_socket: dir.path().join("no-system.sock"),
        run_dir: dir.path().join("run2"),
        podman_bin: dir.path().join("no-podman"),
        start_timeout: Duration::from_secs(2),
        ..PodmanOptions::default()
    };
    let err = podman_service::connect_podman(&broken).await.unwrap_err();
    assert!(matches!(err, EngineError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("no-podman"), "{err}");
}

// ---- helpers --------------------------------------------------------------

static IMAGE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Build the busybox test image in `engine` unless it is there.
async fn ensure_test_image(engine: &ApiEngine) {
    let _guard = IMAGE_LOCK.lock().await;
    if engine.image_exists(TEST_IMAGE).await.unwrap() {
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    let bin = ctx.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("/bin/busybox (package busybox-static) is needed for the test image");
    for applet in IMAGE_APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    std::fs::write(
        ctx.path().join("Containerfile"),
        "FROM scratch\nCOPY bin /bin\n",
    )
    .unwrap();
    let cli = cli_for(engine.kind());
    run_cli(
        Command::new(cli)
            .args(["build", "-t", TEST_IMAGE, "-f"])
            .arg(ctx.path().join("Containerfile"))
            .arg(ctx.path()),
    );
    assert!(engine.image_exists(TEST_IMAGE).await.unwrap());
}

fn cli_for(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Podman => "podman",
        _ => "docker",
    }
}

fn run_cli(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Put the test image into the local registry as `image`, leaving no
/// local copy under that name.
fn push_test_image(kind: EngineKind, image: &str) {
    match kind {
        EngineKind::Podman => {
            run_cli(Command::new("podman").args([
                "push",
                "--tls-verify=false",
                TEST_IMAGE,
                &format!("docker://{image}"),
            ]));
        }
        _ => {
            run_cli(Command::new("docker").args(["tag", TEST_IMAGE, image]));
            run_cli(Command::new("docker").args(["push", image]));
            remove_image_cli(kind, image);
        }
    }
}

fn remove_image_cli(kind: EngineKind, image: &str) {
    run_cli(Command::new(cli_for(kind)).args(["rmi", image]));
}

/// The local registry: one already listening on 127.0.0.1:5000, or a
/// `docker-registry` this test starts (and stops when dropped).
struct Registry {
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Registry {
    fn ensure() -> Registry {
        if TcpStream::connect(REGISTRY_ADDR).is_ok() {
            return Registry {
                child: None,
                _dir: None,
            };
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {REGISTRY_ADDR}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (package docker-registry) is needed for the pull test");
        let registry = Registry {
            child: Some(child),
            _dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(WAIT_S);
        while TcpStream::connect(REGISTRY_ADDR).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {REGISTRY_ADDR}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /` over plain TCP; the first line of the answer, if any.
fn http_get(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let first = answer.lines().next()?.to_string();
    (!first.is_empty()).then_some(first)
}
