//! The tools measured, how each one is invoked, and the clean-up sweep.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::exec;
use super::stacks::{self, Chain};

/// Every container, network and volume the bench creates has a name starting
/// with this, so the sweep can find them all and nothing else.
pub const NAME_PREFIX: &str = "bnch";
/// Limit of the helper commands (listing, sweeping).
pub const HELPER_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Podman,
    Docker,
}

impl Engine {
    pub fn cli(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    BerthPodman,
    PodmanCompose,
    BerthDocker,
    DockerCompose,
    /// Reference, not a peer: N sequential `podman run -d`, the floor an
    /// orchestrator on Podman's CLI could reach (scenario 1 only).
    PodmanRunFloor,
    /// N sequential `docker run -d`.
    DockerRunFloor,
}

impl Tool {
    /// Report order: each engine's berth beside its compose peer.
    pub const ALL: [Tool; 4] = [
        Tool::BerthPodman,
        Tool::PodmanCompose,
        Tool::BerthDocker,
        Tool::DockerCompose,
    ];

    /// The reference floors (scenario 1 only).
    pub const FLOORS: [Tool; 2] = [Tool::PodmanRunFloor, Tool::DockerRunFloor];

    pub fn label(self) -> &'static str {
        match self {
            Tool::BerthPodman => "berth (podman)",
            Tool::PodmanCompose => "podman-compose",
            Tool::BerthDocker => "berth (docker)",
            Tool::DockerCompose => "docker-compose",
            Tool::PodmanRunFloor => "sequential `podman run -d`",
            Tool::DockerRunFloor => "sequential `docker run -d`",
        }
    }

    /// Short code used in names (lowercase alphanumerics only: docker-compose
    /// 1.x strips anything else from project names).
    pub fn code(self) -> &'static str {
        match self {
            Tool::BerthPodman => "bp",
            Tool::PodmanCompose => "pc",
            Tool::BerthDocker => "bd",
            Tool::DockerCompose => "dc",
            Tool::PodmanRunFloor => "pr",
            Tool::DockerRunFloor => "dr",
        }
    }

    pub fn engine(self) -> Engine {
        match self {
            Tool::BerthPodman | Tool::PodmanCompose | Tool::PodmanRunFloor => Engine::Podman,
            Tool::BerthDocker | Tool::DockerCompose | Tool::DockerRunFloor => Engine::Docker,
        }
    }

    pub fn is_berth(self) -> bool {
        matches!(self, Tool::BerthPodman | Tool::BerthDocker)
    }

    pub fn is_floor(self) -> bool {
        matches!(self, Tool::PodmanRunFloor | Tool::DockerRunFloor)
    }

    /// The reference floors on `engines`.
    pub fn floors_for(engines: &[Engine]) -> Vec<Tool> {
        Tool::FLOORS
            .into_iter()
            .filter(|t| engines.contains(&t.engine()))
            .collect()
    }

    /// berth and its peers on `engines`, in report order.
    pub fn for_engines(engines: &[Engine]) -> Vec<Tool> {
        Tool::ALL
            .into_iter()
            .filter(|t| engines.contains(&t.engine()))
            .collect()
    }
}

/// Stack/project name of one measurement: unique per tool, scenario, size and
/// repetition, so nothing ever collides with an earlier measurement that was
/// not cleaned up. At most 31 characters, lowercase alphanumerics, as both a
/// berth stack name and a compose project name require.
pub fn project_name(tool: Tool, scenario: &str, apps: usize, rep: usize) -> String {
    let name = format!("{NAME_PREFIX}{}{scenario}{apps}r{rep}", tool.code());
    debug_assert!(
        name.len() <= 31
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{name}"
    );
    name
}

/// Container names a tool gives the services of project `project`, so the
/// bench can check what really runs.
pub fn container_prefix(tool: Tool, project: &str) -> String {
    if tool.is_berth() || tool.is_floor() {
        // berth-core's naming: "{stack}-{app}" (the floors copy it).
        format!("{project}-")
    } else {
        // compose 1.x: "{project}_{service}_{index}".
        format!("{project}_")
    }
}

/// Everything needed to drive one tool.
pub struct Env {
    pub berth: PathBuf,
    /// containers.conf for podman-compose (and the podman CLI calls of the
    /// sweep), see `stacks::containers_conf`.
    pub containers_conf: PathBuf,
}

/// One chain deployed (or about to be) by one tool, with its own directory
/// holding the stack/compose file, berth's state directory and the logs.
pub struct Deployment<'a> {
    pub tool: Tool,
    pub project: String,
    pub apps: usize,
    pub dir: PathBuf,
    pub file: PathBuf,
    /// Set when a measured command of this deployment timed out: its tool's
    /// own `down` is then skipped (podman-compose's would hang the same way).
    pub timed_out: std::cell::Cell<bool>,
    env: &'a Env,
}

impl<'a> Deployment<'a> {
    pub fn create(
        env: &'a Env,
        tool: Tool,
        chain: &Chain,
        parent: &Path,
    ) -> anyhow::Result<Deployment<'a>> {
        let dir = parent.join(chain.name);
        std::fs::create_dir_all(dir.join("state"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let (file, text) = if tool.is_berth() {
            (dir.join("stack.toml"), stacks::berth_stack(chain))
        } else if tool.is_floor() {
            (
                dir.join("run.sh"),
                stacks::run_script(tool.engine().cli(), chain),
            )
        } else {
            (dir.join("compose.yml"), stacks::compose_file(chain))
        };
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        Ok(Deployment {
            tool,
            project: chain.name.to_string(),
            apps: chain.apps,
            dir,
            file,
            timed_out: std::cell::Cell::new(false),
            env,
        })
    }

    fn berth(&self) -> Command {
        let mut cmd = Command::new(&self.env.berth);
        cmd.env("BERTH_REPORT_CALLS", "1")
            .arg("--engine")
            .arg(self.tool.engine().cli())
            .arg("--state-dir")
            .arg(self.dir.join("state"));
        cmd
    }

    fn compose(&self) -> Command {
        let mut cmd = match self.tool {
            Tool::PodmanCompose => {
                let mut c = Command::new("podman-compose");
                c.env("CONTAINERS_CONF", &self.env.containers_conf);
                c
            }
            _ => Command::new("docker-compose"),
        };
        cmd.arg("-f").arg(&self.file).arg("-p").arg(&self.project);
        cmd
    }

    fn floor_env(&self, mut cmd: Command) -> Command {
        if self.tool.engine() == Engine::Podman {
            cmd.env("CONTAINERS_CONF", &self.env.containers_conf);
        }
        cmd
    }

    /// `up` (cold or no-op alike: the same command both times).
    pub fn up(&self) -> Command {
        if self.tool.is_floor() {
            let mut c = Command::new("sh");
            c.arg(&self.file);
            return self.floor_env(c);
        }
        if self.tool.is_berth() {
            let mut c = self.berth();
            c.arg("up").arg(&self.file);
            c
        } else {
            let mut c = self.compose();
            c.args(["up", "-d"]);
            c
        }
    }

    /// `down`, removing volumes too.
    pub fn down(&self) -> Command {
        if self.tool.is_floor() {
            let prefix = container_prefix(self.tool, &self.project);
            let mut c = Command::new(self.tool.engine().cli());
            c.args(["rm", "-f"]);
            c.args((1..=self.apps).map(|k| format!("{prefix}{}", stacks::app_id(k))));
            return self.floor_env(c);
        }
        if self.tool.is_berth() {
            let mut c = self.berth();
            c.arg("down").arg(&self.file).arg("--purge");
            c
        } else {
            let mut c = self.compose();
            c.args(["down", "-v"]);
            c
        }
    }

    /// berth's single-app install: `berth --stack FILE install s01`.
    pub fn install_first(&self) -> Command {
        let mut c = self.berth();
        c.arg("--stack")
            .arg(&self.file)
            .arg("install")
            .arg(stacks::app_id(1));
        c
    }

    /// How many of this deployment's containers are running.
    pub fn running(&self) -> Option<usize> {
        self.count(&["ps", "--format", "{{.Names}}"])
    }

    /// How many of this deployment's containers exist, in any state.
    pub fn present(&self) -> Option<usize> {
        self.count(&["ps", "-a", "--format", "{{.Names}}"])
    }

    fn count(&self, args: &[&str]) -> Option<usize> {
        let prefix = container_prefix(self.tool, &self.project);
        let names = list(
            self.tool.engine(),
            &self.env.containers_conf,
            args,
            &self.dir,
        )?;
        Some(names.iter().filter(|n| n.starts_with(&prefix)).count())
    }
}

fn list(engine: Engine, conf: &Path, args: &[&str], log_dir: &Path) -> Option<Vec<String>> {
    let envs: Vec<(&str, &Path)> = match engine {
        Engine::Podman => vec![("CONTAINERS_CONF", conf)],
        Engine::Docker => vec![],
    };
    let out = exec::output(engine.cli(), args, &envs, HELPER_LIMIT, log_dir)?;
    Some(
        out.lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
    )
}

/// What the sweep found and removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Swept {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

impl Swept {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }
}

/// Force-removes every container, network and volume of `engine` whose name
/// starts with `NAME_PREFIX`. podman-compose's `down` leaves its network
/// behind, and a timed-out `up` leaves whatever it had created.
pub fn sweep(engine: Engine, conf: &Path, log_dir: &Path) -> Swept {
    let ours = |names: Option<Vec<String>>| -> Vec<String> {
        names
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.starts_with(NAME_PREFIX))
            .collect()
    };
    let envs: Vec<(&str, &Path)> = match engine {
        Engine::Podman => vec![("CONTAINERS_CONF", conf)],
        Engine::Docker => vec![],
    };
    let remove = |args: &[&str], names: &[String]| {
        for chunk in names.chunks(50) {
            let mut all: Vec<&str> = args.to_vec();
            all.extend(chunk.iter().map(String::as_str));
            let _ = exec::output(engine.cli(), &all, &envs, HELPER_LIMIT, log_dir);
        }
    };
    let containers = ours(list(
        engine,
        conf,
        &["ps", "-a", "--format", "{{.Names}}"],
        log_dir,
    ));
    remove(&["rm", "-f"], &containers);
    let networks = ours(list(
        engine,
        conf,
        &["network", "ls", "--format", "{{.Name}}"],
        log_dir,
    ));
    remove(&["network", "rm"], &networks);
    let volumes = ours(list(
        engine,
        conf,
        &["volume", "ls", "--format", "{{.Name}}"],
        log_dir,
    ));
    remove(&["volume", "rm", "-f"], &volumes);
    Swept {
        containers,
        networks,
        volumes,
    }
}

/// How long a `berth daemon` gets to stop on SIGTERM before SIGKILL.
const DAEMON_STOP_WAIT: Duration = Duration::from_secs(10);

/// The state directory of a `berth daemon` command line (`args[0]` named
/// `berth_name`), or `None` for any other process. The `sh -c` wrapper that
/// `berth up` starts the daemon through has the same arguments but is `sh`.
pub fn daemon_state_dir<'a>(args: &'a [String], berth_name: &str) -> Option<&'a str> {
    let program = Path::new(args.first()?).file_name()?.to_str()?;
    if program != berth_name || !args.iter().any(|a| a == "daemon") {
        return None;
    }
    args.windows(2)
        .find(|w| w[0] == "--state-dir")
        .map(|w| w[1].as_str())
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--state-dir=")))
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Stops, by pid, every `berth daemon` whose state directory lies under
/// `under` (the bench's own temporary directory, so only daemons the bench
/// made berth start). `berth up` starts one detached per state directory
/// and `berth down --purge` leaves it running; left alone they would pile
/// up over a run. Returns the pids stopped.
pub fn stop_berth_daemons(under: &Path, berth: &Path) -> Vec<u32> {
    let Some(name) = berth.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            cmdline(*pid).is_some_and(|args| {
                daemon_state_dir(&args, name).is_some_and(|dir| Path::new(dir).starts_with(under))
            })
        })
        .collect();
    for pid in &pids {
        signal("-TERM", *pid);
    }
    let deadline = std::time::Instant::now() + DAEMON_STOP_WAIT;
    while pids.iter().any(|p| alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in pids.iter().filter(|p| alive(**p)) {
        signal("-KILL", *pid);
    }
    pids
}

/// `engine-calls: N` as printed by berth on stderr with `BERTH_REPORT_CALLS=1`.
pub fn engine_calls(stderr: &str) -> Option<u64> {
    stderr.lines().rev().find_map(|l| {
        l.trim()
            .strip_prefix("engine-calls:")
            .and_then(|n| n.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_unique_and_valid_everywhere() {
        let mut seen = std::collections::BTreeSet::new();
        for tool in Tool::ALL {
            for (scenario, apps) in [("cold", 10), ("hl", 10), ("ch", 50), ("ch", 20), ("one", 1)] {
                for rep in 1..=9 {
                    let name = project_name(tool, scenario, apps, rep);
                    assert!(name.starts_with(NAME_PREFIX));
                    assert!(name.len() <= 31);
                    assert!(seen.insert(name));
                }
            }
        }
        assert_eq!(
            project_name(Tool::DockerCompose, "cold", 10, 2),
            "bnchdccold10r2"
        );
    }

    #[test]
    fn container_names_follow_each_tool() {
        assert_eq!(container_prefix(Tool::BerthDocker, "bnchbd1"), "bnchbd1-");
        assert_eq!(container_prefix(Tool::PodmanCompose, "bnchpc1"), "bnchpc1_");
    }

    #[test]
    fn tools_follow_the_chosen_engines() {
        assert_eq!(
            Tool::for_engines(&[Engine::Docker]),
            vec![Tool::BerthDocker, Tool::DockerCompose]
        );
        assert_eq!(
            Tool::for_engines(&[Engine::Podman, Engine::Docker]).len(),
            4
        );
    }

    #[test]
    fn berth_daemons_are_recognised_by_their_command_line() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let daemon = args(
            "/work/main/target/release/berth --engine podman --state-dir /tmp/b/x/state daemon",
        );
        assert_eq!(daemon_state_dir(&daemon, "berth"), Some("/tmp/b/x/state"));
        let inline = args("berth --state-dir=/tmp/b/y daemon");
        assert_eq!(daemon_state_dir(&inline, "berth"), Some("/tmp/b/y"));
        let wrapper = args("sh -c script sh log berth --state-dir /tmp/b/x/state daemon");
        assert_eq!(daemon_state_dir(&wrapper, "berth"), None);
        let up = args("berth --state-dir /tmp/b/x/state up stack.toml");
        assert_eq!(daemon_state_dir(&up, "berth"), None);
        assert_eq!(daemon_state_dir(&[], "berth"), None);
    }

    #[test]
    fn stopping_daemons_leaves_other_processes_alone() {
        // Nothing under a directory that does not exist: nothing is signalled.
        let none = stop_berth_daemons(Path::new("/nonexistent/xtask-test"), Path::new("berth"));
        assert!(none.is_empty());
        assert!(alive(std::process::id()));
    }

    #[test]
    fn engine_calls_are_read_from_the_last_report_line() {
        assert_eq!(engine_calls("bench: 1 apps up\nengine-calls: 7\n"), Some(7));
        assert_eq!(engine_calls("engine-calls: 1\nengine-calls: 12"), Some(12));
        assert_eq!(engine_calls("bench: 1 apps up\n"), None);
        assert_eq!(engine_calls("engine-calls: many\n"), None);
    }
}
