//! Finding (or starting) the engine API socket berth talks to.
//!
//! Podman has no daemon: its API is served by `podman system service`. berth
//! uses the system socket when one answers, and otherwise runs its own
//! service on `/run/berth/podman.sock`, started fully detached: a new
//! process group, no inherited stdio, and not even berth's child (a shell
//! launches it in the background and exits), so neither the service nor the
//! containers under it ever die with berth or become its zombies.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::api::ApiEngine;
use crate::detect::{self, HostAdjustments};
use crate::{Engine, EngineError, EngineKind, Result, rawhttp};

/// Podman's system-wide API socket (socket-activated on systemd hosts).
pub const PODMAN_SYSTEM_SOCKET: &str = "/run/podman/podman.sock";
/// Docker's default socket.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// berth's runtime directory; its own Podman service lives here.
pub const BERTH_RUN_DIR: &str = "/run/berth";
/// How long a started Podman service gets to answer `/_ping`.
pub const SERVICE_START_TIMEOUT_MS: u64 = 10_000;
/// How long one `/_ping` probe may take.
const PING_TIMEOUT_MS: u64 = 2_000;
/// Interval between `/_ping` probes while a service starts.
const PING_INTERVAL_MS: u64 = 50;
/// Bytes of the service log quoted in a start failure.
const LOG_TAIL_BYTES: u64 = 2_000;

/// How to reach Podman.
#[derive(Debug, Clone)]
pub struct PodmanOptions {
    /// Use exactly this socket (no discovery, no service start).
    pub socket: Option<PathBuf>,
    /// The system socket to try before starting berth's own service.
    pub system_socket: PathBuf,
    /// Directory holding berth's own socket, lock, pid and log files.
    pub run_dir: PathBuf,
    /// The podman binary used to start the service.
    pub podman_bin: PathBuf,
    /// Host adjustments; `None` detects them (`detect::detect_host`).
    pub adjust: Option<HostAdjustments>,
    /// How long a started service gets to answer.
    pub start_timeout: Duration,
}

impl Default for PodmanOptions {
    fn default() -> Self {
        PodmanOptions {
            socket: None,
            system_socket: PathBuf::from(PODMAN_SYSTEM_SOCKET),
            run_dir: PathBuf::from(BERTH_RUN_DIR),
            podman_bin: PathBuf::from("podman"),
            adjust: None,
            start_timeout: Duration::from_millis(SERVICE_START_TIMEOUT_MS),
        }
    }
}

impl PodmanOptions {
    /// berth's own service socket: `<run_dir>/podman.sock`.
    pub fn own_socket(&self) -> PathBuf {
        self.run_dir.join("podman.sock")
    }
    /// Where the started service writes its output.
    pub fn log_path(&self) -> PathBuf {
        self.run_dir.join("podman-service.log")
    }
    /// The pid of the service berth last started.
    pub fn pid_path(&self) -> PathBuf {
        self.run_dir.join("podman-service.pid")
    }
    fn lock_path(&self) -> PathBuf {
        self.run_dir.join("podman-service.lock")
    }
}

/// Which engine to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    Podman,
    Docker,
    /// Podman when its binary or a Podman socket exists, else Docker.
    Auto,
}

/// Connect to Podman: the configured socket, else the system socket if it
/// answers, else berth's own service (started if nothing answers there).
pub async fn connect_podman(opts: &PodmanOptions) -> Result<ApiEngine> {
    let adjust = opts
        .adjust
        .clone()
        .unwrap_or_else(|| detect::podman_adjustments(&detect::detect_host()));
    let ping_timeout = Duration::from_millis(PING_TIMEOUT_MS);
    if let Some(socket) = &opts.socket {
        return ApiEngine::podman(socket, adjust).await;
    }
    if rawhttp::ping(&opts.system_socket, ping_timeout).await {
        return ApiEngine::podman(&opts.system_socket, adjust).await;
    }
    let own = opts.own_socket();
    if !rawhttp::ping(&own, ping_timeout).await {
        start_service(opts, &adjust).await?;
    }
    ApiEngine::podman(&own, adjust).await
}

/// Connect to Docker at `socket` (default `/var/run/docker.sock`).
pub async fn connect_docker(socket: Option<&Path>) -> Result<ApiEngine> {
    let socket = socket.unwrap_or(Path::new(DOCKER_SOCKET));
    if !socket.exists() {
        return Err(EngineError::Unavailable {
            engine: EngineKind::Docker,
            detail: format!(
                "socket {} does not exist: start dockerd (e.g. `dockerd &`) or choose podman",
                socket.display()
            ),
        });
    }
    ApiEngine::docker(socket).await
}

/// Where the engines are, as berth's command line states it.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Podman API socket; `None` discovers or starts one.
    pub podman_socket: Option<PathBuf>,
    /// Docker socket; `None` means `/var/run/docker.sock`.
    pub docker_socket: Option<PathBuf>,
}

/// Connect to the chosen engine with default Podman discovery.
pub async fn connect(choice: EngineChoice, opts: &ConnectOptions) -> Result<Box<dyn Engine>> {
    let podman = PodmanOptions {
        socket: opts.podman_socket.clone(),
        ..PodmanOptions::default()
    };
    connect_with(choice, &podman, opts.docker_socket.as_deref()).await
}

/// Connect to the chosen engine with full control over Podman discovery.
pub async fn connect_with(
    choice: EngineChoice,
    podman: &PodmanOptions,
    docker_socket: Option<&Path>,
) -> Result<Box<dyn Engine>> {
    let kind = match choice {
        EngineChoice::Podman => EngineKind::Podman,
        EngineChoice::Docker => EngineKind::Docker,
        EngineChoice::Auto if podman_present(podman) => EngineKind::Podman,
        EngineChoice::Auto => EngineKind::Docker,
    };
    Ok(match kind {
        EngineKind::Podman => Box::new(connect_podman(podman).await?),
        _ => Box::new(connect_docker(docker_socket).await?),
    })
}

/// Whether Podman looks installed or running here.
pub fn podman_present(opts: &PodmanOptions) -> bool {
    let bin_found = if opts.podman_bin.components().count() > 1 {
        opts.podman_bin.is_file()
    } else {
        let path_var = std::env::var("PATH").unwrap_or_default();
        detect::find_in_path(&path_var, &opts.podman_bin.to_string_lossy(), |p| {
            p.is_file()
        })
        .is_some()
    };
    bin_found
        || opts.socket.as_ref().is_some_and(|s| s.exists())
        || opts.system_socket.exists()
        || opts.own_socket().exists()
}

/// Start berth's own Podman service, unless another process did so while
/// we waited for the lock. Returns once it answers `/_ping`.
async fn start_service(opts: &PodmanOptions, adjust: &HostAdjustments) -> Result<()> {
    let unavailable = |detail: String| EngineError::Unavailable {
        engine: EngineKind::Podman,
        detail,
    };
    std::fs::create_dir_all(&opts.run_dir)
        .map_err(|e| unavailable(format!("cannot create {}: {e}", opts.run_dir.display())))?;
    let lock_path = opts.lock_path();
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| unavailable(format!("cannot open {}: {e}", lock_path.display())))?;
    // Another berth may hold the lock while it starts the service, for at
    // most its own start timeout.
    let lock_wait = opts.start_timeout * 2;
    let lock = tokio::task::spawn_blocking(move || lock_file.lock().map(|()| lock_file));
    let _lock: File = match tokio::time::timeout(lock_wait, lock).await {
        Ok(Ok(Ok(file))) => file,
        Ok(Ok(Err(e))) => {
            return Err(unavailable(format!(
                "cannot lock {}: {e}",
                lock_path.display()
            )));
        }
        Ok(Err(e)) => return Err(unavailable(format!("lock task failed: {e}"))),
        Err(_) => {
            return Err(unavailable(format!(
                "another process holds {} for more than {lock_wait:?}",
                lock_path.display()
            )));
        }
    };

    let socket = opts.own_socket();
    let ping_timeout = Duration::from_millis(PING_TIMEOUT_MS);
    if rawhttp::ping(&socket, ping_timeout).await {
        return Ok(()); // Started by whoever held the lock before us.
    }
    // A socket file nobody answers on is left over from a dead service.
    if socket.exists() {
        std::fs::remove_file(&socket)
            .map_err(|e| unavailable(format!("cannot remove stale {}: {e}", socket.display())))?;
    }
    let pid = spawn_detached(opts, adjust, &socket)?;
    let _ = std::fs::write(opts.pid_path(), format!("{pid}\n"));
    tracing::info!(pid, socket = %socket.display(), args = ?adjust.podman_global_args(), "started podman API service");

    let deadline = Instant::now() + opts.start_timeout;
    loop {
        if rawhttp::ping(&socket, ping_timeout).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(unavailable(format!(
                "started `podman system service` (pid {pid}) but {} did not answer within {:?}; \
                 its log {} ends with: {}",
                socket.display(),
                opts.start_timeout,
                opts.log_path().display(),
                log_tail(&opts.log_path())
            )));
        }
        tokio::time::sleep(Duration::from_millis(PING_INTERVAL_MS)).await;
    }
}

/// Launch `podman [global args] system service --time=0 unix://SOCKET` so
/// that it is not our child: a shell (in a new process group) starts it in
/// the background, prints its pid and exits. Returns the service's pid.
fn spawn_detached(opts: &PodmanOptions, adjust: &HostAdjustments, socket: &Path) -> Result<u32> {
    let unavailable = |detail: String| EngineError::Unavailable {
        engine: EngineKind::Podman,
        detail,
    };
    let log_path = opts.log_path();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| unavailable(format!("cannot open {}: {e}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|e| unavailable(format!("cannot open {}: {e}", log_path.display())))?;
    let mut podman_args: Vec<String> = vec![opts.podman_bin.to_string_lossy().into_owned()];
    podman_args.extend(adjust.podman_global_args());
    podman_args.extend([
        "system".into(),
        "service".into(),
        "--time=0".into(),
        format!("unix://{}", socket.display()),
    ]);
    // The service's stdout goes to the log, not to the pid pipe, so reading
    // the pipe ends when the shell exits.
    let script = r#"log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!"#;
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(&log_path)
        .args(&podman_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_err)
        .process_group(0)
        .output()
        .map_err(|e| unavailable(format!("cannot run sh to start podman: {e}")))?;
    drop(log);
    let pid_text = String::from_utf8_lossy(&output.stdout);
    pid_text.trim().parse::<u32>().map_err(|_| {
        unavailable(format!(
            "starting `{}` failed (launcher said {:?}); log {}: {}",
            podman_args.join(" "),
            pid_text.trim(),
            log_path.display(),
            log_tail(&log_path)
        ))
    })
}

/// The last `LOG_TAIL_BYTES` of a log file, one line, for error messages.
fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return "(no log)".into();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        "(empty)".into()
    } else {
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}
