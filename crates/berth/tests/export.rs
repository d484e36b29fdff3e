//! `berth export` and `berth gate wait` through the binary: the plain units
//! pass `systemd-analyze verify`, the Quadlet export refuses a Podman that
//! predates Quadlet, `gate wait` blocks on a real (fake) bitcoind's sync
//! and keeps berth's latch, and the exported demo stack runs under a real
//! `podman kube play`.
//!
//! Nothing here skips: a missing tool or image fails with what to install.
//! Round trips through a compose import are not tested: there is no compose
//! import yet.

use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DEMO_IMAGE: &str = "localhost/berth-demo:latest";
const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn demo_stack() -> PathBuf {
    root().join("examples/demo/berth.toml")
}

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env_remove("BERTH_STACK")
        .env_remove("BERTH_STATE_DIR")
        .output()
        .expect("berth runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tool(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install {package} (scripts/setup.sh does)"
    );
}

/// Every plain unit of the demo stack, for podman and for docker, passes
/// `systemd-analyze verify` (which checks the unit syntax and that every
/// ExecStart binary exists).
#[test]
fn systemd_units_of_the_demo_pass_systemd_analyze_verify() {
    tool(SYSTEMD_ANALYZE, "systemd");
    for (engine, bin) in [("podman", "/usr/bin/podman"), ("docker", "/usr/bin/docker")] {
        tool(bin, engine);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("units");
        let o = berth(&[
            "export",
            "systemd",
            demo_stack().to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--engine-cli",
            engine,
            "--berth-bin",
            env!("CARGO_BIN_EXE_berth"),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let mut units: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        units.sort();
        // 8 apps, 4 gates, the network.
        assert_eq!(units.len(), 13, "{units:?}");
        let v = Command::new(SYSTEMD_ANALYZE)
            .arg("verify")
            .args(&units)
            .current_dir(&out)
            .output()
            .unwrap();
        assert!(
            v.status.success() && v.stderr.is_empty(),
            "{engine}: {}",
            text(&v)
        );
        // Byte-identical on a second export.
        let again = dir.path().join("again");
        let o = berth(&[
            "export",
            "systemd",
            demo_stack().to_str().unwrap(),
            "-o",
            again.to_str().unwrap(),
            "--engine-cli",
            engine,
            "--berth-bin",
            env!("CARGO_BIN_EXE_berth"),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        for u in &units {
            let name = u.file_name().unwrap();
            assert_eq!(
                std::fs::read(u).unwrap(),
                std::fs::read(again.join(name)).unwrap(),
                "{name:?}"
            );
        }
    }
    // The check is not a no-op: a unit naming a missing binary fails it.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.service");
    std::fs::write(
        &bad,
        "[Service]\nExecStart=/usr/bin/no-such-engine run x\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    let v = Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!v.status.success(), "{}", text(&v));
}

#[test]
fn quadlet_export_refuses_podman_before_4_4_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("units");
    let o = berth(&[
        "export",
        "quadlet",
        demo_stack().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--podman-version",
        "4.3.1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("berth export systemd"),
        "{}",
        text(&o)
    );
    assert!(!out.exists(), "nothing is written");
    let o = berth(&[
        "export",
        "quadlet",
        demo_stack().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--podman-version",
        "5.2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for want in [
        "demo.network",
        "demo-bitcoind.container",
        "demo-bitcoind-data.volume",
        "demo-lnd-gate.service",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
}

/// The secret-mount directory the exports bind is the one the store fills.
#[test]
fn exports_name_the_stores_secret_directory() {
    let dir = tempfile::tempdir().unwrap();
    let state = berth_store::StateDir::open(dir.path()).unwrap();
    let paths = berth_export::HostPaths {
        state_dir: dir.path().to_str().unwrap().into(),
        berth_bin: "/usr/local/bin/berth".into(),
    };
    assert_eq!(
        state.secrets().app_dir("demo", "bitcoind"),
        PathBuf::from(paths.secrets_dir("demo", "bitcoind"))
    );
}

// ---------------------------------------------------------------------------
// berth gate wait, against the fake bitcoind on loopback
// ---------------------------------------------------------------------------

/// The static berth-fake `scripts/build-images.sh` builds.
fn fake_bin() -> PathBuf {
    let p = root().join("target/static/x86_64-unknown-linux-gnu/release/berth-fake");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/build-images.sh` (make images)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Fake(Child);

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the fake never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fake bitcoind on loopback, syncing for `sync_seconds`, with its RPC
/// password in `<secrets>/bitcoind/btc-rpc-password`.
fn fake_bitcoind(secrets: &Path, sync_seconds: u32) -> (Fake, u16) {
    let dir = secrets.join("bitcoind");
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("btc-rpc-password");
    std::fs::write(&pw, "s3cret-pass").unwrap();
    let (rpc, control) = (free_port(), free_port());
    let child = Command::new(fake_bin())
        .args([
            "bitcoind",
            "--listen",
            &format!("127.0.0.1:{rpc}"),
            "--control",
            &format!("127.0.0.1:{control}"),
            "--rpc-user",
            "berth",
            "--rpc-password-file",
            pw.to_str().unwrap(),
            "--mode",
            "syncing",
            "--height",
            "400000",
            "--target",
            "850000",
            "--sync-seconds",
            &sync_seconds.to_string(),
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("berth-fake starts");
    wait_port(rpc);
    (Fake(child), rpc)
}

const GATED_STACK: &str = r#"
[stack]
name = "gw"

[apps.bitcoind]
image = "localhost/berth-demo:latest"
secrets = ["btc-rpc-password"]

[apps.bitcoind.probe]
kind = "bitcoind"
port = 8332
user = "berth"
password_secret = "btc-rpc-password"
interval = "1s"

[apps.lnd]
image = "localhost/berth-demo:latest"

[apps.lnd.gate]
wait_for = ["bitcoind"]
"#;

#[test]
fn gate_wait_times_out_with_the_reason_then_releases_and_latches() {
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("berth.toml");
    std::fs::write(&stack, GATED_STACK).unwrap();
    let state = dir.path().join("state");
    let secrets = dir.path().join("node-secrets");
    let (fake, rpc) = fake_bitcoind(&secrets, 3600);
    let args = |timeout: &str| {
        vec![
            "--state-dir".to_string(),
            state.to_str().unwrap().into(),
            "--stack".into(),
            stack.to_str().unwrap().into(),
            "gate".into(),
            "wait".into(),
            "lnd".into(),
            "--node".into(),
            format!("bitcoind=127.0.0.1:{rpc}"),
            "--node-secrets".into(),
            secrets.to_str().unwrap().into(),
            "--timeout".into(),
            timeout.into(),
        ]
    };
    let run = |timeout: &str| {
        let a = args(timeout);
        berth(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Still syncing: held, progress shown, exit 1 with the reason.
    let o = run("2s");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("waiting for bitcoind: syncing"),
        "{}",
        text(&o)
    );
    assert!(
        err.contains("gate of lnd still held after 2s"),
        "{}",
        text(&o)
    );
    assert!(!err.contains("s3cret-pass"), "the password never shows");
    drop(fake);

    // Synced (the fake reaches its target in 1s): released and latched.
    let secrets2 = dir.path().join("node-secrets-2");
    let (fake, rpc2) = fake_bitcoind(&secrets2, 1);
    let mut a = args("30s");
    a[8] = format!("bitcoind=127.0.0.1:{rpc2}");
    a[10] = secrets2.to_str().unwrap().into();
    let o = berth(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("lnd: released"),
        "{}",
        text(&o)
    );
    drop(fake);

    // The latch is berth's own: with the node gone, it returns at once.
    let started = Instant::now();
    let o = run("30s");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("gate latched"),
        "{}",
        text(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // Bad input: an unknown app and a node the gate does not name.
    let mut a = args("1s");
    a[6] = "nope".into();
    let o = berth(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let mut a = args("1s");
    a[8] = "electrs=127.0.0.1:1".into();
    let o = berth(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

// ---------------------------------------------------------------------------
// podman kube play of the exported demo stack
// ---------------------------------------------------------------------------

const BERTH_TEST_IMAGE: &str = "localhost/berth-export-test:latest";

fn podman(args: &[&str], conf: &Path) -> Output {
    Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", conf)
        .output()
        .expect("podman runs")
}

/// An image holding this build's berth binary and the libraries it links,
/// for the gate init containers (no registry, no static build needed).
fn build_berth_image(conf: &Path) {
    let ctx = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_berth");
    let ldd = Command::new("ldd").arg(bin).output().expect("ldd runs");
    assert!(ldd.status.success(), "{}", text(&ldd));
    let mut files = vec![PathBuf::from(bin)];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(p) = line.split_whitespace().find(|w| w.starts_with('/')) {
            files.push(PathBuf::from(p));
        }
    }
    let mut containerfile = String::from("FROM scratch\n");
    for (i, f) in files.iter().enumerate() {
        let name = format!("f{i}");
        std::fs::copy(f, ctx.path().join(&name)).unwrap();
        let dest = if i == 0 {
            "/bin/berth".to_string()
        } else {
            f.display().to_string()
        };
        containerfile.push_str(&format!("COPY {name} {dest}\n"));
    }
    containerfile.push_str("ENTRYPOINT [\"/bin/berth\"]\n");
    std::fs::write(ctx.path().join("Containerfile"), containerfile).unwrap();
    let o = podman(
        &[
            "build",
            "-q",
            "-t",
            BERTH_TEST_IMAGE,
            ctx.path().to_str().unwrap(),
        ],
        conf,
    );
    assert!(o.status.success(), "{}", text(&o));
}

fn http_get(port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    use std::io::Write as _;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

struct KubeDown<'a> {
    yaml: PathBuf,
    conf: &'a Path,
}

impl Drop for KubeDown<'_> {
    fn drop(&mut self) {
        let _ = podman(&["kube", "down", self.yaml.to_str().unwrap()], self.conf);
        for v in [
            "demo-berth-state",
            "demo-berth-stack",
            "demo-bitcoind-data",
            "demo-electrs-db",
            "demo-lnd-data",
            "demo-monerod-data",
            "demo-p2pool-data",
        ] {
            let _ = podman(&["volume", "rm", "-f", v], self.conf);
        }
        let _ = podman(&["network", "rm", "-f", "demo"], self.conf);
    }
}

#[test]
fn exported_demo_runs_under_podman_kube_play_and_kube_down_removes_it() {
    tool("/usr/bin/podman", "podman");
    let dir = tempfile::tempdir().unwrap();
    // The VM's hybrid cgroups need runc + cgroupfs and explicit ulimits
    // (docs: environment); kube play has no flags for those, so they come
    // from a containers.conf of the test's own.
    let conf = dir.path().join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
         [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
    )
    .unwrap();
    let o = podman(&["image", "exists", DEMO_IMAGE], &conf);
    assert!(
        o.status.success(),
        "{DEMO_IMAGE} is missing: run `bash scripts/build-images.sh podman`"
    );
    build_berth_image(&conf);

    // The host side of berth's secrets: the demo's one secret, for
    // bitcoind and lnd, as berth materializes it.
    let state = dir.path().join("state");
    for app in ["bitcoind", "lnd"] {
        let d = state.join("secret-mounts/demo").join(app);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("btc-rpc-password"), "demo-pass").unwrap();
    }
    let yaml = dir.path().join("demo.yaml");
    let o = berth(&[
        "export",
        "kube",
        demo_stack().to_str().unwrap(),
        "-o",
        yaml.to_str().unwrap(),
        "--target",
        "podman",
        "--berth-image",
        BERTH_TEST_IMAGE,
        "--wait-image",
        DEMO_IMAGE,
        "--host-state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let body = std::fs::read_to_string(&yaml).unwrap();
    assert!(!body.contains("demo-pass"), "no secret value in the YAML");

    let _ = podman(&["network", "rm", "-f", "demo"], &conf);
    let o = podman(&["network", "create", "demo"], &conf);
    assert!(o.status.success(), "{}", text(&o));
    let guard = KubeDown {
        yaml: yaml.clone(),
        conf: &conf,
    };
    // kube play starts the pods in document order and runs each pod's init
    // containers to completion first: the gates of electrs, lnd and
    // mempool block until the demo bitcoind is synced (about a minute).
    let o = podman(
        &["kube", "play", "--network", "demo", yaml.to_str().unwrap()],
        &conf,
    );
    assert!(o.status.success(), "{}", text(&o));

    // Every app runs, and the HTTP ones answer on their published ports.
    let ps = podman(&["ps", "--format", "{{.Names}} {{.Status}}"], &conf);
    let listing = String::from_utf8_lossy(&ps.stdout).to_string();
    for app in [
        "bitcoind",
        "bitcoind-ui",
        "electrs",
        "lnd",
        "mempool",
        "monerod",
        "p2pool",
        "xmrig-proxy",
    ] {
        let name = format!("demo-{app}-{app} Up");
        assert!(listing.contains(&name), "{name} in\n{listing}");
    }
    for (port, what) in [
        (18080, "bitcoind (demo)"),
        (18081, "lnd"),
        (18082, "mempool"),
    ] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match http_get(port) {
                Ok(b) if b.contains(what) => break,
                r => assert!(Instant::now() < deadline, "port {port}: {r:?}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // kube down removes every pod.
    let o = podman(&["kube", "down", yaml.to_str().unwrap()], &conf);
    assert!(o.status.success(), "{}", text(&o));
    let ps = podman(
        &[
            "pod",
            "ps",
            "--format",
            "{{.Name}}",
            "--filter",
            "name=^demo-",
        ],
        &conf,
    );
    assert!(
        String::from_utf8_lossy(&ps.stdout).trim().is_empty(),
        "{}",
        text(&ps)
    );
    drop(guard);
}
