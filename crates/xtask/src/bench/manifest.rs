//! The environment a run was measured in.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::exec;
use super::tools::Engine;

const LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub date: String,
    pub os: String,
    pub kernel: String,
    pub cpus: usize,
    /// /proc/loadavg at the start and the end of the run: other work on the
    /// machine shows up here.
    pub load_start: String,
    pub load_end: String,
    pub podman: Option<String>,
    pub docker_client: Option<String>,
    pub docker_server: Option<String>,
    pub podman_compose: Option<String>,
    pub docker_compose: Option<String>,
    pub runc: Option<String>,
    /// `git rev-parse --short HEAD`, with "uncommitted" when the tree is dirty.
    pub berth_revision: String,
    pub berth_version: Option<String>,
    pub image: String,
    pub image_id_podman: Option<String>,
    pub image_id_docker: Option<String>,
}

fn first_line(s: Option<String>) -> Option<String> {
    s.and_then(|s| {
        s.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(String::from)
    })
}

fn out(program: &str, args: &[&str], conf: &Path, log_dir: &Path) -> Option<String> {
    first_line(exec::output(
        program,
        args,
        &[("CONTAINERS_CONF", conf)],
        LIMIT,
        log_dir,
    ))
}

/// The version podman-compose 1.x prints among its other chatter
/// (`podman-composer version  1.0.3`).
pub fn podman_compose_version(text: &str) -> Option<String> {
    text.lines()
        .find(|l| l.contains("podman-compose") && l.contains("version"))
        .and_then(|l| l.split_whitespace().last())
        .map(String::from)
}

/// "abc1234", or "uncommitted (HEAD abc1234)" when the tree has changes.
pub fn revision(head: Option<&str>, porcelain: Option<&str>) -> String {
    let head = head
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .unwrap_or("unknown");
    match porcelain {
        Some(p) if !p.trim().is_empty() => format!("uncommitted (HEAD {head})"),
        _ => head.to_string(),
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn collect(
    engines: &[Engine],
    berth: &Path,
    image: &str,
    conf: &Path,
    log_dir: &Path,
) -> Manifest {
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_default();
    let podman = engines.contains(&Engine::Podman);
    let docker = engines.contains(&Engine::Docker);
    let head = out("git", &["rev-parse", "--short", "HEAD"], conf, log_dir);
    let porcelain = exec::output("git", &["status", "--porcelain"], &[], LIMIT, log_dir);
    Manifest {
        date: out("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"], conf, log_dir).unwrap_or_default(),
        os,
        kernel: out("uname", &["-r"], conf, log_dir).unwrap_or_default(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load_start: loadavg(),
        load_end: String::new(),
        podman: podman
            .then(|| {
                out(
                    "podman",
                    &["version", "--format", "{{.Client.Version}}"],
                    conf,
                    log_dir,
                )
            })
            .flatten(),
        docker_client: docker
            .then(|| {
                out(
                    "docker",
                    &["version", "--format", "{{.Client.Version}}"],
                    conf,
                    log_dir,
                )
            })
            .flatten(),
        docker_server: docker
            .then(|| {
                out(
                    "docker",
                    &["version", "--format", "{{.Server.Version}}"],
                    conf,
                    log_dir,
                )
            })
            .flatten(),
        podman_compose: podman
            .then(|| exec::output("podman-compose", &["version"], &[], LIMIT, log_dir))
            .flatten()
            .and_then(|t| podman_compose_version(&t)),
        docker_compose: docker
            .then(|| out("docker-compose", &["version", "--short"], conf, log_dir))
            .flatten(),
        runc: first_line(exec::output("runc", &["--version"], &[], LIMIT, log_dir)),
        berth_revision: revision(head.as_deref(), porcelain.as_deref()),
        berth_version: out(&berth.display().to_string(), &["--version"], conf, log_dir),
        image: image.to_string(),
        image_id_podman: podman
            .then(|| {
                out(
                    "podman",
                    &["image", "inspect", "--format", "{{.Id}}", image],
                    conf,
                    log_dir,
                )
            })
            .flatten()
            .map(|id| short_id(&id)),
        image_id_docker: docker
            .then(|| {
                out(
                    "docker",
                    &["image", "inspect", "--format", "{{.Id}}", image],
                    conf,
                    log_dir,
                )
            })
            .flatten()
            .map(|id| short_id(&id)),
    }
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_compose_version_is_found_in_its_chatter() {
        let text = "['podman', '--version', '']\nusing podman version: 4.3.1\npodman-composer version  1.0.3\npodman --version \npodman version 4.3.1\nexit code: 0\n";
        assert_eq!(podman_compose_version(text).as_deref(), Some("1.0.3"));
        assert_eq!(podman_compose_version("nothing here"), None);
    }

    #[test]
    fn a_dirty_tree_is_marked_uncommitted() {
        assert_eq!(revision(Some("fafb5a4\n"), Some("")), "fafb5a4");
        assert_eq!(
            revision(Some("fafb5a4"), Some(" M Cargo.lock\n")),
            "uncommitted (HEAD fafb5a4)"
        );
        assert_eq!(revision(None, None), "unknown");
    }

    #[test]
    fn image_ids_are_shortened() {
        assert_eq!(
            short_id("sha256:8855c2104d0c7ffc780808b93a52"),
            "8855c2104d0c"
        );
    }
}
