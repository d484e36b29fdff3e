//! `cargo run --release -p xtask -- bench-api`: the HTTP API under load, on
//! a real engine. A real `berth daemon` (release build) supervises 50 apps;
//! then
//! 1. `wrk` loads `GET /api/state` for 10 s over 16 loopback connections
//!    (p50/p99 latency, requests per second; target p99 < 20 ms);
//! 2. 100 clients follow `GET /api/events/stream`; an app is stopped (then
//!    started) over the JSON-RPC API, and the delay until each client
//!    receives the change is measured, from the moment the RPC answered.
//!
//! Results replace the API section of `bench/RESULTS.md` (between its
//! markers). Everything runs on loopback, bounded in time and count, and
//! the stack is removed at the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

const APPS: usize = 50;
const SSE_CLIENTS: usize = 100;
const WRK_SECONDS: u32 = 10;
const WRK_CONNECTIONS: u32 = 16;
const WRK_THREADS: u32 = 2;
const IMAGE: &str = "localhost/berth-demo:latest";
const STACK: &str = "benchapi";
const BEGIN: &str = "<!-- bench-api:begin -->";
const END: &str = "<!-- bench-api:end -->";
/// Bound on any wait for a signal.
const WAIT: Duration = Duration::from_secs(180);

const USAGE: &str = "\
usage: cargo run --release -p xtask -- bench-api [--engine podman|docker] [--no-write]

Measures GET /api/state with 50 apps under wrk (10 s, 16 connections) and
the delivery of a state change to 100 SSE clients; writes the API section
of bench/RESULTS.md unless --no-write.
";

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn main(args: &[String]) -> Result<()> {
    let mut engine = "podman".to_string();
    let mut write = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--engine" => engine = it.next().context("--engine needs a value")?.clone(),
            "--no-write" => write = false,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    eprintln!("bench-api: building the release binary");
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "berth"])
        .current_dir(&root)
        .status()?;
    if !st.success() {
        bail!("cargo build --release -p berth failed");
    }
    let berth = root.join("target/release/berth");
    let dir = root.join("bench/tmp/api");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let state = dir.join("state");
    let stack_file = dir.join("berth.toml");
    let mut stack =
        format!("[stack]\nname = \"{STACK}\"\nmax_parallel = 8\nstart_timeout = \"60s\"\n\n");
    for i in 0..APPS {
        stack += &format!(
            "[apps.app-{i:02}]\nimage = \"{IMAGE}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\nstop_grace = \"5s\"\n\n"
        );
    }
    std::fs::write(&stack_file, stack)?;

    let cli = |args: &[&str]| -> Result<String> {
        let out = Command::new(&berth)
            .arg("--engine")
            .arg(&engine)
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "berth {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    std::fs::create_dir_all(&state)?;
    let log = std::fs::File::create(dir.join("daemon.log"))?;
    let daemon = Daemon(
        Command::new(&berth)
            .arg("--engine")
            .arg(&engine)
            .arg("--state-dir")
            .arg(&state)
            .arg("daemon")
            .env("BERTH_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let addr = wait(WAIT, "the daemon's API address", || {
        std::fs::read_to_string(state.join("api-address"))
            .ok()
            .map(|s| s.trim().to_string())
    })?;
    let token = std::fs::read_to_string(state.join("api-token"))?
        .trim()
        .to_string();
    eprintln!("bench-api: installing {APPS} apps on {engine}");
    let started = Instant::now();
    cli(&["up", &stack_file.display().to_string()])?;
    let up_s = started.elapsed().as_secs_f64();
    wait(WAIT, "50 running apps in /api/state", || {
        let (_, body) = http(&addr, "GET", "/api/state", &token, None).ok()?;
        let v: Value = serde_json::from_slice(&body).ok()?;
        let running = v["apps"]
            .as_array()?
            .iter()
            .filter(|a| a["badge"]["kind"] == "running")
            .count();
        (running == APPS).then_some(())
    })?;
    let (_, body) = http(&addr, "GET", "/api/state", &token, None)?;
    let state_bytes = body.len();

    eprintln!("bench-api: wrk {WRK_SECONDS} s, {WRK_CONNECTIONS} connections on GET /api/state");
    let wrk = Command::new("wrk")
        .args([
            &format!("-t{WRK_THREADS}"),
            &format!("-c{WRK_CONNECTIONS}"),
            &format!("-d{WRK_SECONDS}s"),
            "--latency",
            "--timeout",
            "5s",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("http://{addr}/api/state"),
        ])
        .output()
        .context("run wrk (package wrk; scripts/setup.sh installs it)")?;
    let wrk_out = String::from_utf8_lossy(&wrk.stdout).into_owned();
    if !wrk.status.success() {
        bail!(
            "wrk failed: {wrk_out}{}",
            String::from_utf8_lossy(&wrk.stderr)
        );
    }
    let p50 = wrk_percentile(&wrk_out, "50%")?;
    let p99 = wrk_percentile(&wrk_out, "99%")?;
    let rps = wrk_out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow!("no Requests/sec in wrk's output:\n{wrk_out}"))?;
    let errors = wrk_out
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map(str::to_string);

    eprintln!("bench-api: {SSE_CLIENTS} live clients, one state change per round");
    let mut rounds = Vec::new();
    for (method, want) in [
        ("package.stop", "stopped"),
        ("package.start", "running"),
        ("package.stop", "stopped"),
        ("package.start", "running"),
    ] {
        rounds.push(fan_out(&addr, &token, method, "app-07", want)?);
    }

    eprintln!("bench-api: removing the stack");
    cli(&["down", "--purge", &stack_file.display().to_string()])?;
    drop(daemon);

    let fan: Vec<f64> = rounds.iter().flatten().copied().collect();
    // First to last client of a round: the cost of the fan-out itself.
    let mut spreads: Vec<f64> = rounds
        .iter()
        .map(|r| {
            let max = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let min = r.iter().copied().fold(f64::INFINITY, f64::min);
            max - min
        })
        .collect();
    spreads.sort_by(f64::total_cmp);
    let spread_max = spreads[spreads.len() - 1];
    let first: Vec<f64> = rounds
        .iter()
        .map(|r| r.iter().copied().fold(f64::INFINITY, f64::min))
        .collect();
    let first_med = {
        let mut f = first.clone();
        f.sort_by(f64::total_cmp);
        f[f.len() / 2]
    };
    let mut sorted = fan.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
    let section = format!(
        "{BEGIN}\n## HTTP API (`cargo run --release -p xtask -- bench-api`)\n\n\
         Measured {date} on {engine}, {cores} cores; release build; {APPS} apps supervised\n\
         (busybox sleepers, installed by `berth up` in {up_s:.1} s); everything on loopback.\n\n\
         | measurement | result | target |\n|---|---|---|\n\
         | `GET /api/state` ({state_bytes} bytes), wrk {WRK_SECONDS} s, {WRK_THREADS} threads, {WRK_CONNECTIONS} connections: p50 | {p50:.2} ms | |\n\
         | same: p99 | {p99:.2} ms | < 20 ms {verdict} |\n\
         | same: throughput | {rps:.0} requests/s | |\n\
         | SSE fan-out: {SSE_CLIENTS} clients of `/api/events/stream` receive an app's state change ({n} deliveries over {r} stop/start rounds), delay after the RPC answered: p50 | {f50:.1} ms | |\n\
         | same: p99 / max | {f99:.1} ms / {fmax:.1} ms | |\n\
         | same: first client (median of rounds) — the snapshot refresh | {first_med:.1} ms | |\n\
         | same: first to last of the {SSE_CLIENTS} clients — the fan-out itself, worst round | {spread_max:.1} ms | |\n\n\
         `/api/state` is served from the daemon's live snapshot (rebuilt when \
         something changes), so its latency does not depend on the engine. The \
         fan-out delay is measured from the JSON-RPC answer of `package.stop` / \
         `package.start` to the moment each client read the `app` event; the \
         snapshot is refreshed after the answer, so this includes one refresh \
         (one engine list call).{errs}\n{END}\n",
        date = today(),
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        verdict = if p99 < 20.0 { "✓" } else { "✗" },
        n = fan.len(),
        r = rounds.len(),
        f50 = pct(0.5),
        f99 = pct(0.99),
        fmax = sorted[sorted.len() - 1],
        errs = errors
            .map(|e| format!("\n\nwrk reported: `{}`", e.trim()))
            .unwrap_or_default(),
    );
    println!("{section}");
    if write {
        let path = root.join("bench/RESULTS.md");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let new = match (text.find(BEGIN), text.find(END)) {
            (Some(b), Some(e)) if b < e => {
                format!(
                    "{}{}{}",
                    &text[..b],
                    section.trim_end(),
                    &text[e + END.len()..]
                )
            }
            _ => format!("{}\n\n{}", text.trim_end(), section),
        };
        std::fs::write(&path, new)?;
        eprintln!("bench-api: wrote the API section of {}", path.display());
    }
    Ok(())
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn wait<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > end {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `50%    1.23ms` in wrk's latency distribution, in milliseconds.
fn wrk_percentile(out: &str, label: &str) -> Result<f64> {
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(label))
        .ok_or_else(|| anyhow!("no {label} line in wrk's output:\n{out}"))?;
    let v = line[label.len()..].trim();
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse()?;
    Ok(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => bail!("unknown unit in {line:?}"),
    })
}

/// One request, `Connection: close`.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut b = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        b = dechunk(&b);
    }
    Ok((status, b))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

/// Connect `SSE_CLIENTS` clients, change `app` with `method`, and return
/// each client's delay (ms) from the RPC answer to reading the change.
fn fan_out(addr: &str, token: &str, method: &str, app: &str, want: &str) -> Result<Vec<f64>> {
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (seen_tx, seen_rx) = mpsc::channel::<Instant>();
    let needle_id = format!("\"id\":\"{app}\"");
    let needle_kind = format!("\"kind\":\"{want}\"");
    let mut threads = Vec::new();
    for _ in 0..SSE_CLIENTS {
        let (addr, token) = (addr.to_string(), token.to_string());
        let (ready_tx, seen_tx) = (ready_tx.clone(), seen_tx.clone());
        let (needle_id, needle_kind) = (needle_id.clone(), needle_kind.clone());
        threads.push(std::thread::spawn(move || -> Result<()> {
            let mut s = TcpStream::connect(&addr)?;
            s.set_read_timeout(Some(WAIT))?;
            write!(
                s,
                "GET /api/events/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
            )?;
            let mut r = BufReader::new(s);
            let mut line = String::new();
            let mut event = String::new();
            let mut ready = false;
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 {
                    bail!("stream closed");
                }
                let l = line.trim_end();
                if let Some(e) = l.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = l.strip_prefix("data:") {
                    if event == "state" && !ready {
                        ready = true;
                        let _ = ready_tx.send(());
                    } else if event == "app" && d.contains(&needle_id) && d.contains(&needle_kind) {
                        let _ = seen_tx.send(Instant::now());
                        return Ok(());
                    }
                }
            }
        }));
    }
    drop((ready_tx, seen_tx));
    for _ in 0..SSE_CLIENTS {
        ready_rx
            .recv_timeout(WAIT)
            .map_err(|_| anyhow!("not every live client connected"))?;
    }
    let (status, body) = http(
        addr,
        "POST",
        "/rpc/v1",
        token,
        Some(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"apps": [app]}})),
    )?;
    let answered = Instant::now();
    if status != 200
        || serde_json::from_slice::<Value>(&body)?
            .get("error")
            .is_some()
    {
        bail!("{method} failed: {}", String::from_utf8_lossy(&body));
    }
    let mut delays = Vec::new();
    for _ in 0..SSE_CLIENTS {
        let at = seen_rx
            .recv_timeout(WAIT)
            .map_err(|_| anyhow!("not every client saw {app} {want}"))?;
        delays.push(at.saturating_duration_since(answered).as_secs_f64() * 1000.0);
    }
    for t in threads {
        t.join()
            .map_err(|_| anyhow!("a client thread panicked"))??;
    }
    Ok(delays)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_latency_lines_parse() {
        let out =
            "  Latency Distribution\n     50%  412.00us\n     75%    1.20ms\n     99%    2.50s\n";
        assert_eq!(wrk_percentile(out, "50%").unwrap(), 0.412);
        assert_eq!(wrk_percentile(out, "99%").unwrap(), 2500.0);
        assert!(wrk_percentile(out, "90%").is_err());
    }
}
