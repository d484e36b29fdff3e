//! Plain systemd units that run the engine's CLI, for hosts whose Podman
//! predates Quadlet (Debian 12's 4.3) and for Docker hosts: one
//! `<stack>-<app>.service` per app running `podman run` / `docker run` in
//! the foreground, a oneshot `<stack>-network.service` creating the stack
//! network, and a gate unit per gated app.
//!
//! The container is created fresh on every start (`--rm`, and a stale one
//! removed first), with berth's names, so its volumes — named, never
//! removed by the unit — carry the data across restarts. The engine's own
//! restart policy is `no`: systemd restarts, as berth would.

use berth_core::model::{App, Stack};
use berth_core::naming;

use crate::quadlet::{container_service, gate_unit, port_spec, restart};
use crate::unit::{UnitFile, command_line};
use crate::{ExportFile, HostPaths};

/// The engine whose CLI the units run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineCli {
    Podman,
    Docker,
}

impl EngineCli {
    pub fn name(self) -> &'static str {
        match self {
            EngineCli::Podman => "podman",
            EngineCli::Docker => "docker",
        }
    }

    /// The CLI's usual path on Debian.
    pub fn default_bin(self) -> &'static str {
        match self {
            EngineCli::Podman => "/usr/bin/podman",
            EngineCli::Docker => "/usr/bin/docker",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SystemdOptions {
    pub engine: EngineCli,
    /// Absolute path of the engine's CLI on the target host.
    pub engine_bin: String,
    pub paths: HostPaths,
    /// The stack file on the target host, for `berth gate wait`.
    pub stack_file: Option<String>,
}

/// The oneshot unit creating the stack network.
pub fn network_service(stack: &str) -> String {
    format!("{stack}-network.service")
}

/// Render every unit of `stack`, sorted by file name.
pub fn render(stack: &Stack, opts: &SystemdOptions) -> Vec<ExportFile> {
    let mut files = vec![network_unit(stack, opts)];
    for app in crate::start_order(stack) {
        files.push(app_unit(stack, app, opts));
        if let Some(g) = gate_unit(
            stack,
            app,
            &opts.paths,
            opts.stack_file.as_deref(),
            opts.engine.name(),
        ) {
            files.push(g);
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

fn network_unit(stack: &Stack, opts: &SystemdOptions) -> ExportFile {
    let net = &stack.settings.network;
    let bin = &opts.engine_bin;
    let mut u = UnitFile::default();
    u.header(format!(
        "berth export systemd: the network of stack {} ({})",
        stack.name,
        opts.engine.name()
    ));
    u.set(
        "Unit",
        "Description",
        format!("berth {}: network {net}", stack.name),
    );
    u.set("Service", "Type", "oneshot");
    u.set("Service", "RemainAfterExit", "yes");
    // Neither podman 4.3 nor docker has an idempotent "create": look first.
    let check = match opts.engine {
        EngineCli::Podman => format!("{bin} network exists {net}"),
        EngineCli::Docker => format!("{bin} network inspect {net} >/dev/null 2>&1"),
    };
    u.set(
        "Service",
        "ExecStart",
        command_line(
            &[
                "/bin/sh".to_string(),
                "-c".into(),
                format!("{check} || {bin} network create {net}"),
            ],
            true,
        ),
    );
    u.set("Install", "WantedBy", "multi-user.target");
    ExportFile {
        name: network_service(&stack.name),
        contents: u.render(),
    }
}

/// The `run` command line of `app` (without the engine binary).
fn run_args(stack: &Stack, app: &App, opts: &SystemdOptions) -> Vec<String> {
    let name = naming::container_name(&stack.name, &app.id);
    let mut a: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--name".into(),
        name,
        "--network".into(),
        stack.settings.network.clone(),
        "--network-alias".into(),
        app.id.clone(),
        "--restart".into(),
        "no".into(),
        "--security-opt".into(),
        "no-new-privileges".into(),
        "--cap-drop".into(),
        "ALL".into(),
    ];
    for cap in &app.cap_add {
        a.extend(["--cap-add".into(), cap.clone()]);
    }
    a.extend([
        "--log-opt".into(),
        format!("max-size={}", berth_core::spec::LOG_MAX_SIZE),
    ]);
    if opts.engine == EngineCli::Docker {
        // Podman's k8s-file driver has no file count: only docker gets it.
        a.extend([
            "--log-opt".into(),
            format!("max-file={}", berth_core::spec::LOG_MAX_FILES),
        ]);
    }
    a.extend([
        "--stop-timeout".into(),
        app.stop_grace.as_secs().to_string(),
    ]);
    if let Some(m) = app.memory_bytes {
        a.extend(["--memory".into(), crate::memory_arg(m)]);
    }
    if let Some(u) = &app.user {
        a.extend(["--user".into(), u.clone()]);
    }
    for (k, v) in &app.env {
        a.extend(["--env".into(), format!("{k}={v}")]);
    }
    for p in &app.ports {
        a.extend(["--publish".into(), port_spec(p)]);
    }
    for v in &app.volumes {
        let vol = naming::volume_name(&stack.name, &app.id, &v.name);
        a.extend(["--volume".into(), format!("{vol}:{}", v.path)]);
    }
    if !app.secrets.is_empty() {
        let dir = opts.paths.secrets_dir(&stack.name, &app.id);
        a.extend([
            "--volume".into(),
            format!("{dir}:{}:ro", naming::SECRETS_MOUNT_PATH),
        ]);
    }
    for (k, v) in crate::labels(stack, app, "systemd") {
        a.extend(["--label".into(), format!("{k}={v}")]);
    }
    if let Some(h) = &app.health {
        let cmd = crate::health_command(&h.kind);
        let cmd = match opts.engine {
            // Podman takes the exec form as JSON; docker's flag is a
            // shell command line.
            EngineCli::Podman => {
                serde_json::to_string(&cmd).expect("a list of strings always serialises")
            }
            EngineCli::Docker => shell_line(&cmd),
        };
        a.extend([
            "--health-cmd".into(),
            cmd,
            "--health-interval".into(),
            format!("{}s", crate::secs(h.interval)),
            "--health-timeout".into(),
            format!("{}s", crate::secs(h.timeout)),
            "--health-retries".into(),
            h.retries.to_string(),
            "--health-start-period".into(),
            format!("{}s", h.start_period.as_secs()),
        ]);
    }
    let mut rest: Vec<String> = Vec::new();
    if let Some(ep) = &app.entrypoint
        && let Some((first, tail)) = ep.split_first()
    {
        // Both CLIs take one word for --entrypoint; the rest leads the
        // command, as the engine joins them.
        a.extend(["--entrypoint".into(), first.clone()]);
        rest.extend(tail.iter().cloned());
    }
    a.push(app.image.clone());
    a.extend(rest);
    if let Some(cmd) = &app.command {
        a.extend(cmd.iter().cloned());
    }
    a
}

/// POSIX shell quoting: every word in single quotes.
fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn app_unit(stack: &Stack, app: &App, opts: &SystemdOptions) -> ExportFile {
    let name = naming::container_name(&stack.name, &app.id);
    let bin = &opts.engine_bin;
    let engine = opts.engine.name();
    let mut u = UnitFile::default();
    u.header(format!(
        "berth export systemd: app {} of stack {} ({engine} run)",
        app.id, stack.name
    ));
    u.header("Generated; edit the stack and export again.");
    u.set(
        "Unit",
        "Description",
        format!("berth {}: {} ({engine})", stack.name, app.id),
    );
    let mut after = vec![network_service(&stack.name)];
    for (dep, cond) in crate::dependencies(app) {
        after.push(container_service(&stack.name, dep));
        if cond == berth_core::model::DependsCondition::Healthy {
            u.comment(
                "Unit",
                format!(
                    "{dep} must be healthy, not just started: plain units order on {dep} \
                     having started (use quadlet with Notify=healthy where podman has it)"
                ),
            );
        }
    }
    if !crate::gate_nodes(app).is_empty() {
        after.push(crate::quadlet::gate_service(&stack.name, &app.id));
    }
    for s in &after {
        u.set("Unit", "Requires", s);
        u.set("Unit", "After", s);
    }
    for list in crate::unenforced_gate_lists(app) {
        u.comment(
            "Unit",
            format!("not exported: gate {list} (failover needs berth's daemon watching the nodes)"),
        );
    }
    if app.health.as_ref().is_some_and(|h| h.progress.is_some()) {
        u.comment(
            "Unit",
            "not exported: the health check's progress check (berth evaluates it; the engine cannot)",
        );
    }
    let s = "Service";
    // A container left behind by a crash would make `run --name` fail.
    u.set(
        s,
        "ExecStartPre",
        command_line(
            &[
                format!("-{bin}"),
                "rm".into(),
                "--force".into(),
                name.clone(),
            ],
            true,
        ),
    );
    let mut argv = vec![bin.clone()];
    argv.extend(run_args(stack, app, opts));
    u.set(s, "ExecStart", command_line(&argv, true));
    u.set(
        s,
        "ExecStop",
        command_line(
            &[
                bin.clone(),
                "stop".into(),
                "--time".into(),
                app.stop_grace.as_secs().to_string(),
                name,
            ],
            true,
        ),
    );
    u.set(s, "Restart", restart(app.restart));
    u.set(
        s,
        "TimeoutStartSec",
        crate::secs(crate::start_budget(stack, app)).to_string(),
    );
    u.set(
        s,
        "TimeoutStopSec",
        (app.stop_grace.as_secs() + crate::STOP_HEADROOM_S).to_string(),
    );
    u.set("Install", "WantedBy", "multi-user.target");
    ExportFile {
        name: container_service(&stack.name, &app.id),
        contents: u.render(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn opts(engine: EngineCli) -> SystemdOptions {
        SystemdOptions {
            engine,
            engine_bin: engine.default_bin().into(),
            paths: HostPaths::default(),
            stack_file: Some("/etc/berth/berth.toml".into()),
        }
    }

    fn all(files: &[ExportFile]) -> String {
        files
            .iter()
            .map(|f| format!("=== {}\n{}", f.name, f.contents))
            .collect()
    }

    #[test]
    fn demo_for_podman() {
        insta::assert_snapshot!(all(&render(&testdata::demo(), &opts(EngineCli::Podman))));
    }

    #[test]
    fn demo_for_docker() {
        insta::assert_snapshot!(all(&render(&testdata::demo(), &opts(EngineCli::Docker))));
    }

    #[test]
    fn every_feature_for_podman() {
        insta::assert_snapshot!(all(&render(
            &testdata::every_feature(),
            &opts(EngineCli::Podman)
        )));
    }

    #[test]
    fn docker_health_command_is_one_shell_line() {
        assert_eq!(
            shell_line(&["sh".into(), "-c".into(), "it's".into()]),
            r"'sh' '-c' 'it'\''s'"
        );
    }
}
