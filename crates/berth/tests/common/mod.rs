//! Shared harness of the CLI integration tests: runs the real `berth`
//! binary against a real engine with its own state directory and a stack
//! name unique to the test, and inspects the engine with its own CLI.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const IMAGE: &str = "localhost/berth-demo:latest";

/// Engines to test: `BERTH_TEST_ENGINES` (default both). An engine that is
/// requested but unavailable fails the test — it never silently skips.
pub fn engines() -> Vec<String> {
    let list = std::env::var("BERTH_TEST_ENGINES").unwrap_or_else(|_| "podman,docker".into());
    let out: Vec<String> = list
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for e in &out {
        let ok = Command::new(e)
            .args(["image", "inspect", IMAGE])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "engine {e} is unavailable or lacks {IMAGE}: run `make setup images` (or set BERTH_TEST_ENGINES)"
        );
    }
    out
}

pub struct Env {
    pub engine: String,
    pub stack: String,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new(engine: &str, tag: &str) -> Env {
        let stack = format!("t{}{}{}", tag, &engine[..1], std::process::id() % 100000);
        let dir = tempfile::Builder::new()
            .prefix("berth-it-")
            .tempdir()
            .expect("tempdir");
        let env = Env {
            engine: engine.to_string(),
            stack,
            dir,
        };
        env.sweep();
        env
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn stack_file(&self) -> PathBuf {
        self.dir.path().join("berth.toml")
    }

    /// Write the stack file: `[stack]` header plus `apps` (TOML text).
    pub fn write_stack(&self, apps: &str) -> PathBuf {
        self.write_stack_with("", apps)
    }

    /// Write the stack file with `settings` (lines of `[stack]`) added.
    pub fn write_stack_with(&self, settings: &str, apps: &str) -> PathBuf {
        let text = format!(
            "[stack]\nname = \"{}\"\nstart_timeout = \"30s\"\n{settings}\n{}",
            self.stack, apps
        );
        std::fs::write(self.stack_file(), text).expect("write stack");
        self.stack_file()
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_env(args, &[])
    }

    pub fn berth_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.berth_command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run berth")
    }

    /// The berth command line of `berth`/`berth_env`, to spawn it (and,
    /// say, kill it from outside).
    pub fn berth_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("--engine")
            .arg(&self.engine)
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--stack")
            .arg(self.stack_file())
            .args(args)
            .env("BERTH_PULL_BACKOFF", "200ms,400ms")
            // These tests exercise direct mode: `up` must not leave a
            // daemon behind (the daemon has its own tests, daemon.rs).
            .env("BERTH_NO_DAEMON", "1")
            .env_remove("BERTH_CRASH_AFTER_STEP");
        cmd
    }

    /// Run berth and require success, printing its output on failure.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({:?}):\n{}",
            out.status.code(),
            text(&out)
        );
        out
    }

    pub fn container(&self, app: &str) -> String {
        format!("{}-{}", self.stack, app)
    }

    pub fn engine_cmd(&self, args: &[&str]) -> Output {
        Command::new(&self.engine)
            .args(args)
            .output()
            .expect("run engine cli")
    }

    pub fn inspect(&self, container: &str, format: &str) -> Option<String> {
        let out = self.engine_cmd(&["container", "inspect", "--format", format, container]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn exists(&self, container: &str) -> bool {
        self.inspect(container, "{{.Id}}").is_some()
    }

    pub fn started_at(&self, container: &str) -> String {
        self.inspect(container, "{{.State.StartedAt}}")
            .expect("container exists")
    }

    pub fn running(&self, container: &str) -> bool {
        self.inspect(container, "{{.State.Running}}").as_deref() == Some("true")
    }

    /// Names of containers, volumes and networks of this test's stack.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        let label = format!("label=io.berth.stack={}", self.stack);
        for (kind, args) in [
            (
                "container",
                vec!["ps", "-a", "--filter", &label, "--format", "{{.Names}}"],
            ),
            (
                "volume",
                vec!["volume", "ls", "--filter", &label, "--format", "{{.Name}}"],
            ),
            (
                "network",
                vec!["network", "ls", "--filter", &label, "--format", "{{.Name}}"],
            ),
        ] {
            let o = self.engine_cmd(&args);
            for l in String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
            {
                out.push(format!("{kind} {l}"));
            }
        }
        // Objects named after the stack but lacking labels would be a bug too.
        let o = self.engine_cmd(&["ps", "-a", "--format", "{{.Names}}"]);
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            if l.starts_with(&format!("{}-", self.stack)) && !out.iter().any(|x| x.ends_with(l)) {
                out.push(format!("unlabelled container {l}"));
            }
        }
        out
    }

    /// Secret files left in the state directory for this stack.
    pub fn secret_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for sub in ["secrets", "secret-mounts"] {
            walk(&self.state_dir().join(sub), &mut out);
        }
        out
    }

    /// Remove everything of this test's stack from the engine.
    pub fn sweep(&self) {
        let label = format!("label=io.berth.stack={}", self.stack);
        let o = self.engine_cmd(&["ps", "-aq", "--filter", &label]);
        for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let _ = self.engine_cmd(&["rm", "-f", id]);
        }
        let o = self.engine_cmd(&["volume", "ls", "-q", "--filter", &label]);
        for v in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let _ = self.engine_cmd(&["volume", "rm", "-f", v]);
        }
        let o = self.engine_cmd(&["network", "ls", "-q", "--filter", &label]);
        for n in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let _ = self.engine_cmd(&["network", "rm", n]);
        }
    }

    pub fn status_json(&self) -> (i32, serde_json::Value) {
        let out = self.berth(&["status", "--json"]);
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}\n{}", text(&out)));
        (out.status.code().unwrap_or(-1), v)
    }

    pub fn app_state(&self, app: &str) -> String {
        let (_, v) = self.status_json();
        v["apps"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == app))
            .map(|x| x["observed"]["state"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| "absent".into())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.sweep();
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Poll `f` until it is true or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A long-running app that stops promptly on SIGTERM.
pub fn sleeper(id: &str, extra: &str) -> String {
    format!(
        "[apps.{id}]\nimage = \"{IMAGE}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\nstop_grace = \"5s\"\n{extra}\n"
    )
}

/// A fake HTTP app with a data volume and an HTTP health check.
pub fn web(id: &str, extra: &str) -> String {
    format!(
        "[apps.{id}]\nimage = \"{IMAGE}\"\nentrypoint = [\"/bin/berth-fake\"]\ncommand = [\"http\", \"--listen\", \"0.0.0.0:8080\", \"--control\", \"0.0.0.0:9100\", \"--name\", \"{id}\", \"--data-dir\", \"/data\"]\nvolumes = {{ data = \"/data\" }}\nstop_grace = \"5s\"\n{extra}\n[apps.{id}.health]\nhttp = {{ port = 8080, path = \"/health\" }}\ninterval = \"1s\"\n"
    )
}

/// A running `berth daemon` on an `Env`'s state directory, killed (SIGKILL)
/// when dropped. Declare it after the `Env` so it goes first: a live daemon
/// would recreate what the sweep removes.
pub struct Daemon {
    child: Option<std::process::Child>,
    pub socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Start the real binary with `knobs` as environment (e.g. `BERTH_TICK`)
    /// and wait until its socket answers.
    pub fn start(env: &Env, knobs: &[(&str, &str)]) -> Daemon {
        let log = env.dir.path().join(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("--engine")
            .arg(&env.engine)
            .arg("--state-dir")
            .arg(env.state_dir())
            .arg("daemon")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .env("BERTH_LOG", "info,berth_daemon=debug");
        for (k, v) in knobs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn berth daemon");
        let d = Daemon {
            child: Some(child),
            socket: env.state_dir().join("berth.sock"),
            log,
        };
        wait_for(
            "the daemon's socket to answer",
            Duration::from_secs(20),
            || rpc_try(&d.socket, "daemon.status", serde_json::json!({})).is_some(),
        );
        d
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A JSON-RPC call that must succeed; returns its result.
    pub fn rpc(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let v = rpc_try(&self.socket, method, params).expect("daemon answers");
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    pub fn status(&self) -> serde_json::Value {
        self.rpc("daemon.status", serde_json::json!({}))
    }

    /// Wait until the daemon has completed `n` more ticks.
    pub fn ticks(&self, n: u64) {
        let count = || self.status()["ticks"]["ticks"].as_u64().unwrap();
        let start = count();
        wait_for(&format!("{n} ticks"), Duration::from_secs(30), || {
            count() >= start + n
        });
    }

    pub fn sigkill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit (status 0).
    pub fn sigterm(&mut self) {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let mut exit = None;
        wait_for(
            "the daemon to exit on SIGTERM",
            Duration::from_secs(30),
            || {
                exit = child.try_wait().unwrap();
                exit.is_some()
            },
        );
        let status = exit.expect("exited");
        assert!(
            status.success(),
            "daemon exit status {status}:\n{}",
            self.log_text()
        );
        assert!(!self.socket.exists(), "socket removed on clean shutdown");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One JSON-RPC call over the daemon's unix socket, `None` when nothing
/// answers.
pub fn rpc_try(
    socket: &Path,
    method: &str,
    params: serde_json::Value,
) -> Option<serde_json::Value> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let req = format!(
        "POST /rpc/v1 HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (_, body) = answer.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}
