//! Command-line surface. Flag documentation lives next to each flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Single-host container orchestrator for node appliances",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// Podman through its API socket (berth starts `podman system service` when none listens).
    Podman,
    /// Docker through /var/run/docker.sock.
    Docker,
    /// Podman when installed, else Docker.
    Auto,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Container engine to use.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "podman",
        env = "BERTH_ENGINE"
    )]
    pub engine: EngineArg,
    /// Directory holding berth's database, lock and secrets.
    #[arg(
        long,
        global = true,
        env = "BERTH_STATE_DIR",
        default_value = "/var/lib/berth"
    )]
    pub state_dir: PathBuf,
    /// Stack file that APP names are looked up in.
    #[arg(long, global = true, env = "BERTH_STACK", default_value = "berth.toml")]
    pub stack: PathBuf,
    /// Podman API socket to use instead of discovering/starting one.
    #[arg(long, global = true, env = "BERTH_PODMAN_SOCKET")]
    pub podman_socket: Option<PathBuf>,
    /// Docker API socket (default /var/run/docker.sock).
    #[arg(long, global = true, env = "BERTH_DOCKER_SOCKET")]
    pub docker_socket: Option<PathBuf>,
    /// Waits between image pull attempts (3 attempts in all), e.g. "5s,15s".
    #[arg(long, global = true, env = "BERTH_PULL_BACKOFF", default_value = "5s,15s", value_parser = parse_backoff)]
    pub pull_backoff: Backoff,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Args)]
pub struct Json {
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a stack or app manifest and report every problem at once.
    Validate {
        /// Stack file or app manifest.
        file: PathBuf,
        #[command(flatten)]
        json: Json,
    },
    /// Install apps (with their dependencies and companions) and start them.
    Install {
        /// App ids of the stack file, or paths of app manifests.
        #[arg(required = true)]
        apps: Vec<String>,
    },
    /// Start installed apps (and the apps they depend on).
    Start {
        #[arg(required = true)]
        apps: Vec<String>,
    },
    /// Stop apps; they stay stopped until started again.
    Stop {
        #[arg(required = true)]
        apps: Vec<String>,
    },
    /// Stop, then start.
    Restart {
        #[arg(required = true)]
        apps: Vec<String>,
    },
    /// Recreate apps' containers from the stack file, keeping their volumes.
    Reinstall {
        #[arg(required = true)]
        apps: Vec<String>,
    },
    /// Remove apps: container, companions, volumes, secrets.
    Uninstall {
        #[arg(required = true)]
        apps: Vec<String>,
        /// Keep volumes and secrets, so a later install finds the data.
        #[arg(long)]
        keep_data: bool,
        /// Also uninstall installed apps that depend on these.
        #[arg(long)]
        cascade: bool,
    },
    /// Install and start every app of a stack file, in dependency order, and leave it supervised (starts `berth daemon` detached when none runs).
    Up {
        /// Stack file (default: --stack).
        stack: Option<PathBuf>,
        /// Do not start the supervising daemon (also: BERTH_NO_DAEMON=1).
        #[arg(long, env = "BERTH_NO_DAEMON", value_parser = clap::builder::BoolishValueParser::new())]
        no_daemon: bool,
    },
    /// Uninstall every app of a stack, keeping volumes and secrets.
    Down {
        /// Stack file (default: --stack).
        stack: Option<PathBuf>,
        /// Also remove volumes and secrets.
        #[arg(long)]
        purge: bool,
    },
    /// Show every installed app. Exit 0 when all run or were stopped on purpose, 1 when something is degraded.
    Status {
        #[command(flatten)]
        json: Json,
    },
    /// List installed apps with their containers and ports.
    List {
        #[command(flatten)]
        json: Json,
    },
    /// Print the last lines of an app's container log.
    Logs {
        app: String,
        /// Number of lines.
        #[arg(long, default_value_t = 100)]
        tail: usize,
        #[command(flatten)]
        json: Json,
    },
    /// Check the host, the engine and the state directory.
    Doctor {
        #[command(flatten)]
        json: Json,
    },
    /// Finish or roll back operations interrupted by a crash (every mutating command does this first).
    Recover {
        #[command(flatten)]
        json: Json,
    },
    /// The revisions of an installed app: what it was installed and updated to, and the updates that failed, oldest first.
    History {
        /// The app id.
        app: String,
        #[command(flatten)]
        json: Json,
    },
    /// Show the event history.
    Events {
        /// Only this app's events.
        app: Option<String>,
        /// Number of events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Keep printing new events as they happen (until interrupted).
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        json: Json,
    },
    /// Chain gates: which apps are held until their node is synced or rejected while it is down, and why.
    Gate {
        #[command(subcommand)]
        command: GateCommand,
    },
    /// Vet this host: inventory, expected-spec diff, disk, memory, clock and engine checks, then a report. Exit 0 only when every stage passed; a failed stage holds the run (see `berth run`).
    Vet(VetArgs),
    /// Verify a stack: every app through every lifecycle cell N times on the real engine, on a state directory of its own; writes an app × cell scorecard. Exit 0 only when every cell passed every iteration.
    Verify(VerifyArgs),
    /// Runs of `berth vet` and `berth verify`: list, show, and resolve a run holding on a failed stage.
    Run {
        #[command(subcommand)]
        command: RunCommand,
    },
    /// Run the supervision daemon in the foreground (logs to stderr; stops cleanly on SIGTERM/SIGINT without stopping containers).
    Daemon {
        /// Config file (default: <state-dir>/config.toml when it exists). See docs/configuration.md.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Periodic reconcile tick, e.g. "30s" (overrides the config file and BERTH_TICK).
        #[arg(long)]
        tick: Option<String>,
        /// Address of the HTTP API and dashboard, e.g. "127.0.0.1:7780", or "off" (overrides the config file and BERTH_LISTEN).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Export a stack for another supervisor: Quadlet units, plain systemd units, or Kubernetes objects (docs/export-quadlet.md, docs/export-systemd.md, docs/export-kube.md).
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Print the HTTP API token (made at the first daemon start; made now if missing) and where the dashboard is.
    Token {
        #[command(flatten)]
        json: Json,
    },
    /// Import stacks from other tools into a berth stack file.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import docker-compose files (merged in order, like `-f a -f b`) into a berth stack file; every key is reported as mapped, changed, unsupported or skipped (docs/import-compose.md).
    Compose(ImportCompose),
}

#[derive(Debug, Args)]
pub struct ImportCompose {
    /// Compose files, merged in order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Variables for interpolation (default: .env beside the first file, when it exists); the shell's environment wins.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Also import services of this profile (repeatable; "*" for all).
    #[arg(long, value_name = "PROFILE")]
    pub profile: Vec<String>,
    /// Stack name (default: the file's `name:`, else the first file's directory name).
    #[arg(long, value_name = "NAME")]
    pub project_name: Option<String>,
    /// Stack file to write ("-" for stdout).
    #[arg(short, long, default_value = "berth.toml")]
    pub output: PathBuf,
    /// Refuse (write nothing) when a key is unsupported or a variable is unset.
    #[arg(long)]
    pub strict: bool,
    /// Leave the mapped keys out of the report (changes and refusals are always printed).
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum GateCommand {
    /// Show every gated app's verdict (held / released / rejected, with the reason) and every node's chain state.
    Status {
        #[command(flatten)]
        json: Json,
    },
    /// Re-arm an app's sync gate: held again until its required nodes are synced (e.g. after a restore onto new hardware).
    Reset {
        /// The gated app.
        app: String,
    },
    /// Block until APP's required nodes are synced (same probes and latch as berth's gate; a latched gate returns at once). Exported units and init containers run this. Exit 0 when released, 1 with the reason on timeout.
    Wait {
        /// The gated app (looked up in --stack: a stack file, or the JSON stack model of `berth export kube`).
        app: String,
        /// Give up after this long, e.g. "30m" (default: wait as long as it takes).
        #[arg(long, value_name = "DUR")]
        timeout: Option<String>,
        /// Reach a node at HOST:PORT instead of through the engine (repeatable; all required nodes or none), e.g. bitcoind=demo-bitcoind:8332.
        #[arg(long, value_name = "NODE=HOST:PORT")]
        node: Vec<String>,
        /// With --node: the directory holding each node's RPC password as NODE/SECRET.
        #[arg(long, value_name = "DIR")]
        node_secrets: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Quadlet units (.container, .volume, .network) for Podman 4.4 or later, plus a plain unit per gate.
    Quadlet {
        /// Stack file (default: --stack).
        stack: Option<PathBuf>,
        /// Directory the units are written to (created if missing).
        #[arg(short, long, value_name = "DIR")]
        output: PathBuf,
        /// Podman release of the target host, e.g. 4.4 or 5.2.1: which Quadlet keys it knows.
        #[arg(long, value_name = "VERSION")]
        podman_version: String,
        #[command(flatten)]
        host: ExportHost,
    },
    /// Plain systemd .service units running `podman run` or `docker run`, for Podman before 4.4 and Docker.
    Systemd {
        /// Stack file (default: --stack).
        stack: Option<PathBuf>,
        /// Directory the units are written to (created if missing).
        #[arg(short, long, value_name = "DIR")]
        output: PathBuf,
        /// Engine whose command line the units run.
        #[arg(long, value_enum, default_value = "podman")]
        engine_cli: EngineCliArg,
        /// Path of the engine's CLI on the target host (default /usr/bin/podman or /usr/bin/docker).
        #[arg(long, value_name = "PATH")]
        engine_bin: Option<String>,
        #[command(flatten)]
        host: ExportHost,
    },
    /// Kubernetes objects in one YAML file, for a cluster or for `podman kube play`.
    Kube {
        /// Stack file (default: --stack).
        stack: Option<PathBuf>,
        /// The YAML file written.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Where the objects are played: a cluster, or Podman 4.3's `kube play` (no Secret, Service or readiness probe).
        #[arg(long, value_enum, default_value = "kubernetes")]
        target: KubeTargetArg,
        /// Image with the berth binary, for the gate init containers.
        #[arg(long, default_value = "localhost/berth:latest")]
        berth_image: String,
        /// Image with sh, nc and sleep, for the dependency init containers.
        #[arg(long, default_value = "docker.io/library/busybox:1.36")]
        wait_image: String,
        /// berth's state directory on the target host (podman target: its secret files are mounted from there).
        #[arg(long, value_name = "DIR", default_value = "/var/lib/berth")]
        host_state_dir: String,
    },
}

/// Where the exported units find berth on the target host.
#[derive(Debug, Args)]
pub struct ExportHost {
    /// berth's state directory on the target host (secret files, gate latches).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/berth")]
    pub host_state_dir: String,
    /// The berth binary on the target host, for `berth gate wait`.
    #[arg(long, value_name = "PATH", default_value = "/usr/local/bin/berth")]
    pub berth_bin: String,
    /// The stack file on the target host, for `berth gate wait` (default: this stack file's absolute path).
    #[arg(long, value_name = "PATH")]
    pub host_stack: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineCliArg {
    Podman,
    Docker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubeTargetArg {
    /// A Kubernetes cluster: Deployments (Recreate), Services, Secrets referenced by name.
    Kubernetes,
    /// Podman 4.3's `podman kube play`: Pods, PVCs, a ConfigMap; secrets as read-only hostPath mounts.
    Podman,
}

#[derive(Debug, Args)]
pub struct VetArgs {
    /// Directory whose disk is measured and whose free space is inventoried (repeatable; default: the state directory).
    #[arg(long = "data", value_name = "PATH")]
    pub data: Vec<PathBuf>,
    /// Expected-spec TOML file to diff the host against (see docs/verify.md).
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Where report.html, report.json and artifacts/ go (default: <state-dir>/runs/<run>/).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Record a failed stage and go on, instead of holding the run on it.
    #[arg(long)]
    pub continue_on_error: bool,
    /// Floor on synchronous write throughput, MB/s (default 10).
    #[arg(long, value_name = "MB_S")]
    pub disk_write_min: Option<f64>,
    /// Floor on read throughput, MB/s (default 20).
    #[arg(long, value_name = "MB_S")]
    pub disk_read_min: Option<f64>,
    /// Ceiling on the 99th percentile fsync latency, ms (default 100).
    #[arg(long, value_name = "MS")]
    pub fsync_p99_max: Option<f64>,
    /// Ceiling on the clock offset a time source reports, ms (default 1000).
    #[arg(long, value_name = "MS")]
    pub clock_offset_max: Option<f64>,
    /// Size of the disk test per data path, MiB (default 64, at most 1024).
    #[arg(long, value_name = "MIB")]
    pub disk_test_mib: Option<u32>,
    /// Size of the memory pattern test, MiB (default 256, at most 4096).
    #[arg(long, value_name = "MIB")]
    pub memory_test_mib: Option<u32>,
    /// Do not check the engine (the Engine stage then passes with a note).
    #[arg(long)]
    pub no_engine: bool,
    /// Print the run's summary as JSON on stdout (no progress lines).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Stack file (default: --stack).
    pub stack: Option<PathBuf>,
    /// Only these apps (comma-separated or repeated; default: every app that is not a companion). Dependencies are installed as needed.
    #[arg(long, value_name = "APP,APP")]
    pub apps: Vec<String>,
    /// Iterations of every cell.
    #[arg(long, default_value_t = 1)]
    pub iterations: u32,
    /// Also run the destructive cells: daemon SIGTERM/SIGKILL, crash injection, berth killed at each install step.
    #[arg(long)]
    pub destructive: bool,
    /// Record a failed cell and go on (the whole matrix), instead of holding the run on it.
    #[arg(long)]
    pub continue_on_error: bool,
    /// Where report.html, report.json and artifacts/ go (default: <state-dir>/runs/<run>/).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Bound on every wait for a readiness signal (running, healthy, a UI answering, a restart).
    #[arg(long, default_value = "120s")]
    pub wait_timeout: String,
    /// Publish every host port of the stack this much higher (web UIs included), e.g. to verify a stack beside a running installation of it.
    #[arg(long, default_value_t = 0)]
    pub port_offset: u16,
    /// Print the run's summary (with the scorecard) as JSON on stdout (no progress lines).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// The newest runs.
    List {
        /// Number of runs (at most 1000).
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        json: Json,
    },
    /// One run: its stages, environment manifest, scorecard and report.
    Show {
        run: String,
        #[command(flatten)]
        json: Json,
    },
    /// Continue a run holding on a failed stage past it (the stage stays visible as overridden).
    Override {
        run: String,
        #[command(flatten)]
        json: Json,
    },
    /// Run the failed stage of a holding run again (also drives on a run interrupted by a crash).
    Retry {
        run: String,
        #[command(flatten)]
        json: Json,
    },
    /// End a run; a verify run's stack is removed.
    Abandon {
        run: String,
        #[command(flatten)]
        json: Json,
    },
}

/// Pull retry waits.
#[derive(Debug, Clone)]
pub struct Backoff(pub Vec<std::time::Duration>);

fn parse_backoff(s: &str) -> Result<Backoff, String> {
    s.split(',')
        .map(|p| berth_core::duration::parse_duration(p.trim()))
        .collect::<Result<_, _>>()
        .map(Backoff)
}
