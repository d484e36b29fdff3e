//! `cargo run --release -p xtask -- bench-daemon`: the daemon's own costs,
//! side by side in one run, written to `bench/DAEMON.md` and
//! `bench/daemon.json`.
//!
//! 1. No-op reconcile tick (`berth_daemon::bench::ticks`, the daemon's own
//!    `Supervisor::tick` driven in process) with 50 and 500 installed apps
//!    (one stack) on `FakeEngine`, real Podman and real Docker (apps
//!    installed by `berth up --no-daemon` into a fresh state directory):
//!    p50/p99/max and engine calls per tick. Beside each, the same list
//!    calls timed alone (`berth_daemon::bench::lists`), which splits a
//!    tick into the engine's share and berth's own.
//! 2. Daemon start to ready with 50 apps: spawn `target/release/berth
//!    daemon` and time until `<state>/berth.sock` answers `daemon.status`,
//!    and until the status shows the first tick done.
//! 3. Idle daemon with 50 apps: CPU (utime+stime of /proc/<pid>/stat) and
//!    RSS (VmRSS of /proc/<pid>/status) over a window, with the default
//!    30 s tick and with a 5 s tick.
//!
//! Everything is bounded; the stacks are removed (`berth down --purge`),
//! the daemon killed and leftover containers swept by name prefix at the
//! end, also on failure.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const IMAGE: &str = "localhost/berth-demo:latest";
/// Every stack and container this benchmark makes starts with this.
const PREFIX: &str = "benchd";
/// Podman 4.3's state database (BoltDB, the only backend of that version).
const PODMAN_DB: &str = "/var/lib/containers/storage/libpod/bolt_state.db";
const WAIT: Duration = Duration::from_secs(60);
/// A stack holds at most 256 apps, so larger cases use several stacks of
/// at most this many (a tick makes one engine call per stack).
const APPS_PER_STACK: usize = 250;

/// (stack name, apps in it) for `apps` apps named after `base`.
fn split_stacks(base: &str, apps: usize) -> Vec<(String, usize, usize)> {
    let n = apps.div_ceil(APPS_PER_STACK).max(1);
    (0..n)
        .map(|i| {
            let k = (apps - i * APPS_PER_STACK).min(APPS_PER_STACK);
            let name = if n == 1 {
                base.to_string()
            } else {
                format!("{base}s{i}")
            };
            (name, i * APPS_PER_STACK, k)
        })
        .collect()
}

const USAGE: &str = "\
usage: cargo run --release -p xtask -- bench-daemon [options]

  --engines LIST     comma-separated, of fake,podman,docker (default all three);
                     the daemon start and idle cases use podman if listed,
                     else docker
  --real-large N     real-engine apps for the large tick case (default 500)
  --idle-seconds S   idle window per tick setting (default 60)
  --starts N         daemon starts timed (default 5)
  --no-write         print only; do not write bench/DAEMON.md, bench/daemon.json
";

struct Opts {
    engines: Vec<String>,
    real_large: usize,
    idle_s: u64,
    starts: usize,
    write: bool,
}

pub fn main(args: &[String]) -> Result<()> {
    let mut o = Opts {
        engines: vec!["fake".into(), "podman".into(), "docker".into()],
        real_large: 500,
        idle_s: 60,
        starts: 5,
        write: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64> {
            it.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--real-large" => o.real_large = num("--real-large")? as usize,
            "--engines" => {
                let list = it.next().context("--engines needs a value")?;
                o.engines = list.split(',').map(str::trim).map(str::to_string).collect();
                if let Some(bad) = o
                    .engines
                    .iter()
                    .find(|e| !["fake", "podman", "docker"].contains(&e.as_str()))
                {
                    bail!("--engines: unknown engine {bad:?} (fake, podman, docker)\n\n{USAGE}");
                }
            }
            "--idle-seconds" => o.idle_s = num("--idle-seconds")?,
            "--starts" => o.starts = num("--starts")?.max(1) as usize,
            "--no-write" => o.write = false,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    eprintln!("bench-daemon: building the release binary");
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "berth"])
        .current_dir(&root)
        .status()?;
    if !st.success() {
        bail!("cargo build --release -p berth failed");
    }
    let berth = root.join("target/release/berth");
    let dir = root.join("bench/tmp/daemon");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut cleanup = Cleanup {
        berth: berth.clone(),
        installed: Vec::new(),
        daemon: None,
    };
    let result = run(&o, &berth, &dir, &rt, &mut cleanup);
    drop(cleanup);
    let report = result?;
    let md = markdown(&report);
    println!("{md}");
    if o.write {
        std::fs::write(root.join("bench/DAEMON.md"), &md)?;
        std::fs::write(
            root.join("bench/daemon.json"),
            serde_json::to_string_pretty(&report)? + "\n",
        )?;
        eprintln!("bench-daemon: wrote bench/DAEMON.md and bench/daemon.json");
    }
    Ok(())
}

/// Removes what the run made, whatever happened.
struct Cleanup {
    berth: PathBuf,
    /// (engine, state dir, stack file) installed on a real engine.
    installed: Vec<(String, PathBuf, PathBuf)>,
    daemon: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            stop_daemon(d);
        }
        for (engine, state, file) in self.installed.drain(..) {
            eprintln!("bench-daemon: removing {}", file.display());
            let _ = Command::new(&self.berth)
                .arg(format!("--engine={engine}"))
                .arg("--state-dir")
                .arg(&state)
                .args(["down", "--purge"])
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Sweep anything left by name prefix, on both engines.
        for cli in ["podman", "docker"] {
            sweep(cli);
        }
    }
}

fn sweep(cli: &str) {
    if let Ok(out) = Command::new(cli)
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
    {
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|n| n.starts_with(PREFIX))
            .map(str::to_string)
            .collect();
        if !names.is_empty() {
            eprintln!("bench-daemon: sweeping {} leftover containers", names.len());
            let _ = Command::new(cli)
                .args(["rm", "-f"])
                .args(&names)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// SIGTERM, then SIGKILL after 10 s.
fn stop_daemon(mut d: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &d.id().to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(Some(_)) = d.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = d.kill();
    let _ = d.wait();
}

/// A stack `name` of `apps` sleepers `app-<first>`…: app ids must be unique
/// across the stacks of one state directory.
fn stack_toml(name: &str, first: usize, apps: usize) -> String {
    let mut s =
        format!("[stack]\nname = \"{name}\"\nmax_parallel = 8\nstart_timeout = \"120s\"\n\n");
    for i in first..first + apps {
        s += &format!(
            "[apps.app-{i:03}]\nimage = \"{IMAGE}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\nstop_grace = \"5s\"\n\n"
        );
    }
    s
}

#[derive(serde::Serialize)]
struct TickRow {
    engine: String,
    apps: usize,
    ticks: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Engine calls per tick, min..max over the measured ticks.
    calls_min: u64,
    calls_max: u64,
    /// Actions dispatched over all measured ticks (0 = all no-op).
    actions: usize,
    target_ms: Option<f64>,
    install_s: Option<f64>,
    /// Stacks the apps are split into (expected engine calls per tick).
    stacks: usize,
    /// The same list calls timed alone (`bench::lists`), p50 and p99.
    list_p50_ms: f64,
    list_p99_ms: f64,
    /// Per tick, its wall time less the time its container lists took:
    /// berth's own work, p50 and p99.
    own_p50_ms: f64,
    own_p99_ms: f64,
}

#[derive(serde::Serialize)]
struct IdleRow {
    tick: String,
    window_s: f64,
    cpu_percent: f64,
    rss_mib_max: f64,
    rss_mib_end: f64,
    ticks_in_window: u64,
}

#[derive(serde::Serialize)]
struct Report {
    date: String,
    cores: usize,
    kernel: String,
    podman: String,
    /// Size of Podman's state database (`bolt_state.db`), which its list
    /// call reads several times per container.
    podman_db_bytes: Option<u64>,
    docker: String,
    real_large_requested: usize,
    ticks: Vec<TickRow>,
    /// Spawn to `daemon.status` answering, ms, per start.
    start_to_api_ms: Vec<f64>,
    /// Spawn to `daemon.status` showing the first tick done, ms.
    start_to_first_tick_ms: Vec<f64>,
    idle: Vec<IdleRow>,
    notes: Vec<String>,
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn sorted_ms(d: impl Iterator<Item = Duration>) -> Vec<f64> {
    let mut ms: Vec<f64> = d.map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

fn tick_row(
    engine: &str,
    apps: usize,
    (s, lists): &(Vec<berth_daemon::bench::TickSample>, Vec<Duration>),
    target_ms: Option<f64>,
    install_s: Option<f64>,
) -> TickRow {
    let ms = sorted_ms(s.iter().map(|t| t.duration));
    let list = sorted_ms(lists.iter().copied());
    let own = sorted_ms(s.iter().map(|t| t.duration.saturating_sub(t.observe)));
    TickRow {
        engine: engine.into(),
        apps,
        ticks: s.len(),
        p50_ms: pct(&ms, 0.5),
        p99_ms: pct(&ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
        calls_min: s.iter().map(|t| t.engine_calls).min().unwrap_or(0),
        calls_max: s.iter().map(|t| t.engine_calls).max().unwrap_or(0),
        actions: s.iter().map(|t| t.actions).sum(),
        target_ms,
        install_s,
        stacks: apps.div_ceil(APPS_PER_STACK).max(1),
        list_p50_ms: pct(&list, 0.5),
        list_p99_ms: pct(&list, 0.99),
        own_p50_ms: pct(&own, 0.5),
        own_p99_ms: pct(&own, 0.99),
    }
}

fn target_for(apps: usize) -> Option<f64> {
    match apps {
        50 => Some(10.0),
        500 => Some(50.0),
        _ => None,
    }
}

fn run(
    o: &Opts,
    berth: &Path,
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    cleanup: &mut Cleanup,
) -> Result<Report> {
    let mut report = Report {
        date: cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel: cmd_out("uname", &["-r"]),
        podman: cmd_out("podman", &["--version"]),
        podman_db_bytes: std::fs::metadata(PODMAN_DB).ok().map(|m| m.len()),
        docker: cmd_out("docker", &["version", "--format", "{{.Server.Version}}"]),
        real_large_requested: o.real_large,
        ticks: Vec::new(),
        start_to_api_ms: Vec::new(),
        start_to_first_tick_ms: Vec::new(),
        idle: Vec::new(),
        notes: Vec::new(),
    };
    let wants = |e: &str| o.engines.iter().any(|x| x == e);

    // 1a. FakeEngine, in process.
    if wants("fake") {
        for (apps, n) in [(50usize, 2000usize), (500, 300)] {
            eprintln!("bench-daemon: fake engine, {apps} apps, {n} ticks");
            let samples = rt.block_on(fake_ticks(dir, apps, n))?;
            report
                .ticks
                .push(tick_row("fake (in-memory)", apps, &samples, None, None));
        }
    }

    // 1b. Real engines, 50 apps and the large case. The daemon start and
    // idle cases run on the 50-app state of the first real engine listed.
    let mut daemon_done = false;
    for engine in ["podman", "docker"].into_iter().filter(|e| wants(e)) {
        let (state50, install50) = install_real(berth, dir, engine, 50, cleanup)?;
        let s = rt.block_on(real_ticks(engine, &state50, 200))?;
        report
            .ticks
            .push(tick_row(engine, 50, &s, target_for(50), Some(install50)));

        if !daemon_done {
            daemon_done = true;
            // 2. Start to ready.
            for i in 0..o.starts {
                eprintln!(
                    "bench-daemon: daemon start {}/{} on {engine}",
                    i + 1,
                    o.starts
                );
                let (api, first) = time_start(berth, engine, &state50, dir, cleanup)?;
                report.start_to_api_ms.push(api);
                report.start_to_first_tick_ms.push(first);
            }
            // 3. Idle.
            for tick in [None, Some("5s")] {
                eprintln!(
                    "bench-daemon: idle {} s, tick {}, on {engine}",
                    o.idle_s,
                    tick.unwrap_or("30s (default)")
                );
                report
                    .idle
                    .push(idle(berth, engine, &state50, dir, tick, o.idle_s, cleanup)?);
            }
            report
                .notes
                .push(format!("The daemon start and idle cases ran on {engine}."));
        }
        down(cleanup, &state50)?;

        if o.real_large > 0 {
            let (state_l, install_l) = install_real(berth, dir, engine, o.real_large, cleanup)?;
            let s = rt.block_on(real_ticks(engine, &state_l, 50))?;
            report.ticks.push(tick_row(
                engine,
                o.real_large,
                &s,
                target_for(o.real_large),
                Some(install_l),
            ));
            down(cleanup, &state_l)?;
        }
    }
    if o.real_large != 500 {
        report.notes.push(format!(
            "The large case on the real engines used {} apps, not 500.",
            o.real_large
        ));
    }
    Ok(report)
}

type Samples = (Vec<berth_daemon::bench::TickSample>, Vec<Duration>);

async fn fake_ticks(dir: &Path, apps: usize, n: usize) -> Result<Samples> {
    let d = dir.join(format!("fake-{apps}"));
    std::fs::create_dir_all(&d)?;
    let fake = berth_engine::FakeEngine::new();
    fake.add_image(IMAGE);
    let state = berth_store::StateDir::open(&d.join("state"))?;
    let ctx = berth_ops::Ctx::new(Arc::new(fake), state, Arc::new(berth_ops::Quiet))?;
    for (name, first, k) in split_stacks(&format!("{PREFIX}fake{apps}"), apps) {
        let file = d.join(format!("{name}.toml"));
        std::fs::write(&file, stack_toml(&name, first, k))?;
        let stack = berth_ops::load_stack_file(&file)?;
        berth_ops::up(&ctx, &stack, Some(&file.display().to_string())).await?;
    }
    let lists = berth_daemon::bench::lists(&ctx, n).await?;
    let ticks = berth_daemon::bench::ticks(ctx, berth_daemon::Settings::default(), 2, n).await;
    Ok((ticks, lists))
}

async fn real_ticks(engine: &str, state: &Path, n: usize) -> Result<Samples> {
    use berth_engine::podman_service::{ConnectOptions, EngineChoice, connect};
    let choice = match engine {
        "docker" => EngineChoice::Docker,
        _ => EngineChoice::Podman,
    };
    let engine: Arc<dyn berth_engine::Engine> =
        Arc::from(connect(choice, &ConnectOptions::default()).await?);
    let state = berth_store::StateDir::open(state)?;
    let lock = state.lock()?;
    let ctx = berth_ops::Ctx::new(engine, state, Arc::new(berth_ops::Quiet))?;
    // Warm the connection the way the ticks' warm-up does.
    berth_daemon::bench::lists(&ctx, 2).await?;
    let lists = berth_daemon::bench::lists(&ctx, n).await?;
    let ticks = berth_daemon::bench::ticks(ctx, berth_daemon::Settings::default(), 2, n).await;
    drop(lock);
    Ok((ticks, lists))
}

/// `berth up --no-daemon` of `apps` sleepers into a fresh state dir.
fn install_real(
    berth: &Path,
    dir: &Path,
    engine: &str,
    apps: usize,
    cleanup: &mut Cleanup,
) -> Result<(PathBuf, f64)> {
    let d = dir.join(format!("{engine}-{apps}"));
    std::fs::create_dir_all(&d)?;
    let state = d.join("state");
    eprintln!("bench-daemon: berth up --no-daemon, {apps} apps on {engine}");
    let t = Instant::now();
    for (name, first, k) in split_stacks(&format!("{PREFIX}{}{apps}", &engine[..1]), apps) {
        let file = d.join(format!("{name}.toml"));
        std::fs::write(&file, stack_toml(&name, first, k))?;
        cleanup
            .installed
            .push((engine.to_string(), state.clone(), file.clone()));
        let out = Command::new(berth)
            .arg(format!("--engine={engine}"))
            .arg("--state-dir")
            .arg(&state)
            .arg("up")
            .arg("--no-daemon")
            .arg(&file)
            .output()?;
        if !out.status.success() {
            bail!(
                "berth up failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let s = t.elapsed().as_secs_f64();
    eprintln!("bench-daemon: installed {apps} apps in {s:.1} s");
    Ok((state, s))
}

fn down(cleanup: &mut Cleanup, state: &Path) -> Result<()> {
    while let Some(i) = cleanup.installed.iter().position(|(_, s, _)| s == state) {
        let (engine, state, file) = cleanup.installed.remove(i);
        eprintln!("bench-daemon: berth down --purge {}", file.display());
        let out = Command::new(&cleanup.berth)
            .arg(format!("--engine={engine}"))
            .arg("--state-dir")
            .arg(&state)
            .args(["down", "--purge"])
            .arg(&file)
            .output()?;
        if !out.status.success() {
            eprintln!(
                "bench-daemon: down failed (the final sweep removes leftovers): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

fn spawn_daemon(
    berth: &Path,
    engine: &str,
    state: &Path,
    dir: &Path,
    tick: Option<&str>,
) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))?;
    let mut c = Command::new(berth);
    c.arg(format!("--engine={engine}"))
        .arg("--state-dir")
        .arg(state)
        .arg("daemon")
        .env("BERTH_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(t) = tick {
        c.args(["--tick", t]);
    }
    Ok(c.spawn()?)
}

/// One JSON-RPC call over the unix socket (HTTP/1.1, `Connection: close`).
fn rpc(socket: &Path, method: &str) -> Result<Value> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let body = json!({"jsonrpc": "2.0", "method": method, "id": 1}).to_string();
    write!(
        s,
        "POST /rpc/v1 HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP answer")?;
    let v: Value = serde_json::from_slice(&raw[split + 4..]).context("not JSON")?;
    v.get("result")
        .cloned()
        .with_context(|| format!("no result: {v}"))
}

/// Ticks done, from `daemon.status`.
fn ticks_done(status: &Value) -> u64 {
    status["ticks"]["ticks"].as_u64().unwrap_or(0)
}

fn time_start(
    berth: &Path,
    engine: &str,
    state: &Path,
    dir: &Path,
    cleanup: &mut Cleanup,
) -> Result<(f64, f64)> {
    let socket = state.join("berth.sock");
    let _ = std::fs::remove_file(&socket);
    let t = Instant::now();
    cleanup.daemon = Some(spawn_daemon(berth, engine, state, dir, None)?);
    let mut api = None;
    let first = loop {
        if t.elapsed() > WAIT {
            bail!("the daemon did not answer within {WAIT:?} (see bench/tmp/daemon/daemon.log)");
        }
        if let Ok(st) = rpc(&socket, "daemon.status") {
            let now = t.elapsed().as_secs_f64() * 1e3;
            api.get_or_insert(now);
            if ticks_done(&st) >= 1 {
                break now;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if let Some(d) = cleanup.daemon.take() {
        stop_daemon(d);
    }
    Ok((api.unwrap_or(first), first))
}

fn idle(
    berth: &Path,
    engine: &str,
    state: &Path,
    dir: &Path,
    tick: Option<&str>,
    window_s: u64,
    cleanup: &mut Cleanup,
) -> Result<IdleRow> {
    let socket = state.join("berth.sock");
    let _ = std::fs::remove_file(&socket);
    let child = spawn_daemon(berth, engine, state, dir, tick)?;
    let pid = child.id();
    cleanup.daemon = Some(child);
    let t = Instant::now();
    let ticks0 = loop {
        if t.elapsed() > WAIT {
            bail!("the daemon did not become ready");
        }
        if let Ok(st) = rpc(&socket, "daemon.status")
            && ticks_done(&st) >= 1
        {
            break ticks_done(&st);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let start-up work (first tick, monitors) settle.
    std::thread::sleep(Duration::from_secs(2));
    let hz: f64 = cmd_out("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0);
    let read_cpu = || -> Result<u64> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        proc_stat_cpu_ticks(&s).context("parse /proc/<pid>/stat")
    };
    let read_rss = || -> Result<u64> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        proc_status_vmrss_kib(&s).context("parse /proc/<pid>/status")
    };
    let cpu0 = read_cpu()?;
    let w0 = Instant::now();
    let mut rss_max = read_rss()?;
    let mut rss_end = rss_max;
    while w0.elapsed() < Duration::from_secs(window_s) {
        std::thread::sleep(Duration::from_secs(1));
        rss_end = read_rss()?;
        rss_max = rss_max.max(rss_end);
    }
    let cpu1 = read_cpu()?;
    let window = w0.elapsed().as_secs_f64();
    let ticks1 = rpc(&socket, "daemon.status")
        .map(|s| ticks_done(&s))
        .unwrap_or(ticks0);
    if let Some(d) = cleanup.daemon.take() {
        stop_daemon(d);
    }
    Ok(IdleRow {
        tick: tick.unwrap_or("30s (default)").into(),
        window_s: window,
        cpu_percent: (cpu1 - cpu0) as f64 / hz / window * 100.0,
        rss_mib_max: rss_max as f64 / 1024.0,
        rss_mib_end: rss_end as f64 / 1024.0,
        ticks_in_window: ticks1.saturating_sub(ticks0),
    })
}

/// utime + stime (clock ticks) from the text of `/proc/<pid>/stat`. The
/// command name (field 2) is in parentheses and may hold spaces and `)`,
/// so fields are counted after the last `)`.
fn proc_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in KiB from the text of `/proc/<pid>/status`.
fn proc_status_vmrss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut it = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") | None => Some(n),
        _ => None,
    }
}

fn cmd_out(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

fn markdown(r: &Report) -> String {
    let mut s = format!(
        "# Daemon benchmarks (`cargo run --release -p xtask -- bench-daemon`)\n\n\
         Measured {} on {} cores, kernel {}; {} (state database {}); Docker {}; release build. \
         Apps are busybox sleepers (`{IMAGE}`, `sh -c \"trap 'exit 0' TERM; sleep 100000 & wait\"`) \
         in one stack, installed by `berth up --no-daemon` into a fresh state directory. \
         Raw figures: `bench/daemon.json`.\n\n",
        r.date,
        r.cores,
        r.kernel,
        r.podman,
        r.podman_db_bytes
            .map(|b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
            .unwrap_or_else(|| "not found".into()),
        r.docker
    );
    s += "## No-op reconcile tick\n\n\
          The daemon's own `Supervisor::tick` (via `berth_daemon::bench::ticks`), driven in \
          process after two warm-up ticks; every measured tick must dispatch no action. \
          *Engine list alone* times the very list calls a tick observes with, and nothing \
          else, on the same connection in the same run (`berth_daemon::bench::lists`); \
          *berth's own work* is, per tick, its wall time less the time its list calls took \
          inside it (`last_tick_observe_us` of `daemon.status`): reading the state \
          database, planning, health-monitor upkeep.\n\n\
          | engine | apps | ticks | p50 | p99 | max | engine list alone p50 / p99 | berth's own work p50 / p99 | engine calls / tick | actions | target (p99) |\n\
          |---|---|---|---|---|---|---|---|---|---|---|\n";
    for t in &r.ticks {
        let calls = if t.calls_min == t.calls_max {
            format!("{}", t.calls_min)
        } else {
            format!("{}–{}", t.calls_min, t.calls_max)
        };
        let target = match t.target_ms {
            Some(ms) => format!("< {ms} ms {}", mark(t.p99_ms < ms)),
            None => "—".into(),
        };
        s += &format!(
            "| {} | {}{} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {} {} | {} | {} |\n",
            t.engine,
            if t.stacks > 1 {
                format!("{} ({} stacks)", t.apps, t.stacks)
            } else {
                t.apps.to_string()
            },
            t.install_s
                .map(|i| format!(" (installed in {i:.0} s)"))
                .unwrap_or_default(),
            t.ticks,
            t.p50_ms,
            t.p99_ms,
            t.max_ms,
            t.list_p50_ms,
            t.list_p99_ms,
            t.own_p50_ms,
            t.own_p99_ms,
            calls,
            mark(t.calls_min == t.stacks as u64 && t.calls_max == t.stacks as u64),
            t.actions,
            target,
        );
    }
    s += "\nEngine calls per tick must be exactly 1 per stack (one container list per stack). \
          A stack holds at most 256 apps, so 500 apps are installed as 2 stacks of 250 \
          (2 calls per tick). The issue's targets are for real Podman; the Docker rows carry \
          the same targets for comparison. The seeds' own tick target was 250 ms.\n\n";
    for t in r.ticks.iter().filter(|t| t.target_ms.is_some()) {
        let target = t.target_ms.unwrap_or(f64::NAN);
        if t.p99_ms < target {
            continue;
        }
        let cause = if t.list_p50_ms >= target {
            " because of the engine's own list call: the list alone takes"
        } else {
            ": the list alone takes"
        };
        s += &format!(
            "- **{} with {} apps misses its target**{cause} {:.1} ms at p50 against a budget of \
             {target} ms for the whole tick; berth's own work in the tick is {:.2} ms at p50 \
             ({:.2} ms at p99).\n",
            t.engine, t.apps, t.list_p50_ms, t.own_p50_ms, t.own_p99_ms
        );
    }
    s += "\n";
    let sorted = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    let api = sorted(&r.start_to_api_ms);
    let first = sorted(&r.start_to_first_tick_ms);
    s += &format!(
        "## Daemon start to ready (50 apps installed)\n\n\
         `target/release/berth daemon` spawned {} times on the 50-app state directory; \
         time from spawn until `<state>/berth.sock` answers `daemon.status`, and until that \
         status shows the first reconcile tick done.\n\n\
         | measurement | median | max | target |\n|---|---|---|---|\n\
         | spawn → `daemon.status` answers | {:.1} ms | {:.1} ms | < 200 ms {} |\n\
         | spawn → first tick done | {:.1} ms | {:.1} ms | |\n\n\
         (Seeds' target: 5 s.)\n\n",
        api.len(),
        pct(&api, 0.5),
        api.last().copied().unwrap_or(f64::NAN),
        mark(api.last().copied().unwrap_or(f64::INFINITY) < 200.0),
        pct(&first, 0.5),
        first.last().copied().unwrap_or(f64::NAN),
    );
    s += "## Idle daemon (50 apps installed)\n\n\
          CPU is utime+stime of the daemon process (`/proc/<pid>/stat`) over the window, \
          as a share of one core; RSS is `VmRSS` of `/proc/<pid>/status`, sampled every second. \
          The engine's own processes (Podman's API service) are not counted.\n\n\
          | tick | window | ticks in window | CPU | RSS max / end | targets |\n|---|---|---|---|---|---|\n";
    for i in &r.idle {
        s += &format!(
            "| {} | {:.0} s | {} | {:.3} % | {:.1} / {:.1} MiB | CPU < 1 % {}, RSS < 30 MiB {} |\n",
            i.tick,
            i.window_s,
            i.ticks_in_window,
            i.cpu_percent,
            i.rss_mib_max,
            i.rss_mib_end,
            mark(i.cpu_percent < 1.0),
            mark(i.rss_mib_max < 30.0),
        );
    }
    if !r.notes.is_empty() {
        s += "\n## Notes\n\n";
        for n in &r.notes {
            s += &format!("- {n}\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks_counts_fields_after_the_command_name() {
        // A command name with a space and a parenthesis.
        let stat = "1234 (berth d) aemon) S 1 1234 1234 0 -1 4194560 2000 0 0 0 \
                    150 37 0 0 20 0 8 0 99999 123456789 4000 18446744073709551615";
        assert_eq!(proc_stat_cpu_ticks(stat), Some(187));
        assert_eq!(proc_stat_cpu_ticks("1 (x) S 1 2"), None);
        assert_eq!(proc_stat_cpu_ticks("no parens"), None);
    }

    #[test]
    fn stat_cpu_ticks_reads_this_process() {
        let s = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(proc_stat_cpu_ticks(&s).is_some());
    }

    #[test]
    fn vmrss_is_read_in_kib() {
        let status = "Name:\tberth\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nThreads:\t8\n";
        assert_eq!(proc_status_vmrss_kib(status), Some(12345));
        assert_eq!(proc_status_vmrss_kib("Name:\tx\n"), None);
        assert_eq!(proc_status_vmrss_kib("VmRSS:\t 1 MB\n"), None);
    }

    #[test]
    fn percentiles_pick_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 0.5), 51.0);
        assert_eq!(pct(&v, 0.99), 99.0);
        assert!(pct(&[], 0.5).is_nan());
    }

    #[test]
    fn generated_stack_has_every_app() {
        let t = stack_toml("benchd3", 0, 3);
        assert!(t.contains("name = \"benchd3\""));
        assert_eq!(t.matches("[apps.app-").count(), 3);
        assert!(t.contains("app-002"));
    }

    #[test]
    fn large_cases_split_into_stacks_of_at_most_250() {
        assert_eq!(split_stacks("b", 50), vec![("b".to_string(), 0, 50)]);
        assert_eq!(
            split_stacks("b", 500),
            vec![("bs0".to_string(), 0, 250), ("bs1".to_string(), 250, 250)]
        );
        assert_eq!(
            split_stacks("b", 260).iter().map(|s| s.2).sum::<usize>(),
            260
        );
        // App ids are unique across the stacks of one state directory.
        assert!(stack_toml("bs1", 250, 250).contains("[apps.app-250]"));
    }
}
