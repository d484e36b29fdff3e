//! Quadlet units (Podman ≥ 4.4): a `.container` per app, a `.volume` per
//! volume and a `.network` for the stack network where the target Podman
//! can name them as berth does, and a gate unit per gated app.
//!
//! Quadlet's keys grew release by release, and a key the target does not
//! know makes Quadlet reject the whole unit. So every key newer than 4.4
//! goes through [`FEATURES`], the table keyed by Podman version: on an
//! older target the unit says the same thing through `PodmanArgs=` (the
//! podman CLI flag), or leaves it out with a comment saying why. Keys whose
//! first version we could not confirm are never used; their flags always
//! go through `PodmanArgs=`, which every Quadlet has.

use std::fmt;
use std::str::FromStr;

use berth_core::model::{App, HealthCheck, Protocol, RestartPolicy, Stack};
use berth_core::naming;

use crate::unit::{UnitFile, command_line, word};
use crate::{ExportError, ExportFile, HostPaths};

/// A Podman release, as `--podman-version` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodmanVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl PodmanVersion {
    pub const fn new(major: u32, minor: u32) -> PodmanVersion {
        PodmanVersion {
            major,
            minor,
            patch: 0,
        }
    }
}

impl fmt::Display for PodmanVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for PodmanVersion {
    type Err = ExportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ExportError::BadVersion(s.to_string());
        let parts: Vec<&str> = s.trim().trim_start_matches('v').split('.').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        let num = |p: &str| p.parse::<u32>().map_err(|_| bad());
        Ok(PodmanVersion {
            major: num(parts[0])?,
            minor: num(parts[1])?,
            patch: parts.get(2).map(|p| num(p)).transpose()?.unwrap_or(0),
        })
    }
}

/// The first release with Quadlet.
pub const QUADLET_FIRST: PodmanVersion = PodmanVersion::new(4, 4);

/// A Quadlet capability newer than 4.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// `HealthCmd=`, `HealthInterval=`, `HealthTimeout=`, `HealthRetries=`,
    /// `HealthStartPeriod=`.
    HealthKeys,
    /// `.network` units with `NetworkName=` and `.volume` units with
    /// `VolumeName=`, so the engine objects keep berth's names.
    NamedNetworkAndVolumeUnits,
    /// `StopTimeout=` in `[Container]`.
    StopTimeout,
    /// `Notify=healthy`: the unit is started once the health check passes.
    NotifyHealthy,
}

/// One row of the feature table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureRow {
    pub feature: Feature,
    pub since: PodmanVersion,
    /// What an older target gets instead.
    pub fallback: &'static str,
}

/// Which Quadlet capability arrived in which Podman release (see
/// docs/export-quadlet.md for the sources). Conservative: where the exact
/// release was uncertain the later candidate is used, since a fallback is
/// always correct and an unknown key is not.
pub const FEATURES: &[FeatureRow] = &[
    FeatureRow {
        feature: Feature::HealthKeys,
        since: PodmanVersion::new(4, 5),
        fallback: "PodmanArgs=--health-cmd=… --health-interval=… (the podman run flags)",
    },
    FeatureRow {
        feature: Feature::NamedNetworkAndVolumeUnits,
        since: PodmanVersion::new(5, 0),
        fallback: "no .network/.volume unit: the container names the network and volumes \
                   directly (podman creates a named volume on first use; an ExecStartPre \
                   creates the network)",
    },
    FeatureRow {
        feature: Feature::StopTimeout,
        since: PodmanVersion::new(5, 0),
        fallback: "PodmanArgs=--stop-timeout=N",
    },
    FeatureRow {
        feature: Feature::NotifyHealthy,
        since: PodmanVersion::new(5, 0),
        fallback: "none: the unit counts as started when the container runs (commented in the unit)",
    },
];

/// Whether `version` has `feature`.
pub fn supports(version: PodmanVersion, feature: Feature) -> bool {
    FEATURES
        .iter()
        .find(|r| r.feature == feature)
        .is_some_and(|r| version >= r.since)
}

/// How to render a stack as Quadlet units.
#[derive(Debug, Clone)]
pub struct QuadletOptions {
    pub podman_version: PodmanVersion,
    pub paths: HostPaths,
    /// The stack file on the target host, for the gate units' `berth gate
    /// wait` (None: the app must be installed in berth's state there).
    pub stack_file: Option<String>,
}

/// The systemd service Quadlet generates for `<name>.container`.
pub fn container_service(stack: &str, app: &str) -> String {
    format!("{}.service", naming::container_name(stack, app))
}

/// The gate unit of a gated app (a plain oneshot unit running `berth gate
/// wait`), shared by the Quadlet and the plain-systemd exports.
pub fn gate_service(stack: &str, app: &str) -> String {
    format!("{}-gate.service", naming::container_name(stack, app))
}

/// Render every unit of `stack`, sorted by file name.
pub fn render(stack: &Stack, opts: &QuadletOptions) -> Result<Vec<ExportFile>, ExportError> {
    let v = opts.podman_version;
    if v < QUADLET_FIRST {
        return Err(ExportError::PodmanTooOld {
            version: v.to_string(),
        });
    }
    let named_units = supports(v, Feature::NamedNetworkAndVolumeUnits);
    let mut files = Vec::new();
    let network = &stack.settings.network;
    if named_units {
        let mut u = UnitFile::default();
        u.header(format!(
            "berth export quadlet: the network of stack {} (podman {v})",
            stack.name
        ));
        u.set("Network", "NetworkName", word(network, false));
        files.push(ExportFile {
            name: format!("{network}.network"),
            contents: u.render(),
        });
    }
    for app in crate::start_order(stack) {
        files.push(container_unit(stack, app, opts)?);
        if named_units {
            for vol in &app.volumes {
                let name = naming::volume_name(&stack.name, &app.id, &vol.name);
                let mut u = UnitFile::default();
                u.header(format!(
                    "berth export quadlet: volume {} of app {} (podman {v})",
                    vol.name, app.id
                ));
                u.set("Volume", "VolumeName", word(&name, false));
                u.set(
                    "Volume",
                    "Label",
                    word(&format!("{}={}", naming::LABEL_STACK, stack.name), false),
                );
                files.push(ExportFile {
                    name: format!("{name}.volume"),
                    contents: u.render(),
                });
            }
        }
        if let Some(gate) = gate_unit(
            stack,
            app,
            &opts.paths,
            opts.stack_file.as_deref(),
            "podman",
        ) {
            files.push(gate);
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

fn container_unit(
    stack: &Stack,
    app: &App,
    opts: &QuadletOptions,
) -> Result<ExportFile, ExportError> {
    let v = opts.podman_version;
    let named_units = supports(v, Feature::NamedNetworkAndVolumeUnits);
    let name = naming::container_name(&stack.name, &app.id);
    let mut u = UnitFile::default();
    u.header(format!(
        "berth export quadlet: app {} of stack {} (podman {v})",
        app.id, stack.name
    ));
    u.header(format!(
        "Generated; edit the stack and export again. Service: {}",
        container_service(&stack.name, &app.id)
    ));
    // [Unit]: ordering on the dependencies' and the gate's services.
    u.set(
        "Unit",
        "Description",
        format!("berth {}: {}", stack.name, app.id),
    );
    let mut after = Vec::new();
    for (dep, cond) in crate::dependencies(app) {
        after.push(container_service(&stack.name, dep));
        if cond == berth_core::model::DependsCondition::Healthy
            && !(supports(v, Feature::NotifyHealthy)
                && stack.app(dep).is_some_and(|d| d.health.is_some()))
        {
            u.comment(
                "Unit",
                format!(
                    "{dep} must be healthy, not just started: this podman has no Notify=healthy, \
                     so systemd orders on {dep} having started"
                ),
            );
        }
    }
    if !crate::gate_nodes(app).is_empty() {
        after.push(gate_service(&stack.name, &app.id));
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

    // [Container]
    let c = "Container";
    u.set(c, "ContainerName", word(&name, false));
    u.set(c, "Image", word(&app.image, false));
    let mut exec: Vec<String> = Vec::new();
    if let Some(ep) = &app.entrypoint {
        // `--entrypoint` takes one word on every engine; the rest of a
        // multi-word entrypoint goes in front of the command, which is how
        // the engine would join them anyway.
        if let Some((first, rest)) = ep.split_first() {
            u.set(
                c,
                "PodmanArgs",
                word(&format!("--entrypoint={first}"), false),
            );
            exec.extend(rest.iter().cloned());
        }
    }
    if let Some(cmd) = &app.command {
        exec.extend(cmd.iter().cloned());
    }
    if !exec.is_empty() {
        u.set(c, "Exec", command_line(&exec, false));
    }
    for (k, val) in &app.env {
        u.set(c, "Environment", word(&format!("{k}={val}"), false));
    }
    if named_units {
        u.set(c, "Network", format!("{}.network", stack.settings.network));
    } else {
        u.comment(
            c,
            format!(
                "podman {v} has no NetworkName=: the network is named directly and created by \
                 ExecStartPre below"
            ),
        );
        u.set(c, "Network", word(&stack.settings.network, false));
    }
    u.set(
        c,
        "PodmanArgs",
        word(&format!("--network-alias={}", app.id), false),
    );
    for p in &app.ports {
        u.set(c, "PublishPort", port_spec(p));
    }
    for vol in &app.volumes {
        let engine_name = naming::volume_name(&stack.name, &app.id, &vol.name);
        let source = if named_units {
            format!("{engine_name}.volume")
        } else {
            engine_name
        };
        u.set(c, "Volume", word(&format!("{source}:{}", vol.path), false));
    }
    if !app.volumes.is_empty() && !named_units {
        u.comment(
            c,
            format!(
                "podman {v} has no VolumeName=: volumes are named directly (podman creates them)"
            ),
        );
    }
    if !app.secrets.is_empty() {
        u.comment(
            c,
            format!(
                "secrets {}: berth's read-only copies, bound as berth binds them (create them \
                 with berth, or put one file per secret in that directory, mode 0400)",
                app.secrets.join(", ")
            ),
        );
        let dir = opts.paths.secrets_dir(&stack.name, &app.id);
        u.set(
            c,
            "Volume",
            word(&format!("{dir}:{}:ro", naming::SECRETS_MOUNT_PATH), false),
        );
    }
    for (k, val) in crate::labels(stack, app, "quadlet") {
        u.set(c, "Label", word(&format!("{k}={val}"), false));
    }
    if let Some(user) = &app.user {
        u.set(c, "User", word(user, false));
    }
    u.set(c, "DropCapability", "all");
    for cap in &app.cap_add {
        u.set(c, "AddCapability", word(cap, false));
    }
    u.set(c, "NoNewPrivileges", "true");
    if let Some(mem) = app.memory_bytes {
        u.set(
            c,
            "PodmanArgs",
            format!("--memory={}", crate::memory_arg(mem)),
        );
    }
    let stop_s = app.stop_grace.as_secs();
    if supports(v, Feature::StopTimeout) {
        u.set(c, "StopTimeout", stop_s.to_string());
    } else {
        u.set(c, "PodmanArgs", format!("--stop-timeout={stop_s}"));
    }
    let mut notify_healthy = false;
    if let Some(h) = &app.health {
        health(&mut u, h, v);
        if supports(v, Feature::NotifyHealthy) {
            u.set(c, "Notify", "healthy");
            notify_healthy = true;
        } else {
            u.comment(
                c,
                format!(
                    "podman {v} has no Notify=healthy: the unit is started once the container runs"
                ),
            );
        }
    }
    if app.health.as_ref().is_some_and(|h| h.progress.is_some()) {
        u.comment(
            c,
            "not exported: the health check's progress check (berth evaluates it; podman cannot)",
        );
    }
    u.comment(
        c,
        "logs go to podman's log driver (journald under systemd, which rotates them): \
         berth's 10m x 3 file cap is not set",
    );

    // [Service]
    let s = "Service";
    if !named_units {
        let net = &stack.settings.network;
        u.set(
            s,
            "ExecStartPre",
            format!(
                "/bin/sh -c {}",
                word(
                    &format!("podman network exists {net} || podman network create {net}"),
                    true
                )
            ),
        );
    }
    u.set(s, "Restart", restart(app.restart));
    let budget = crate::secs(crate::start_budget(stack, app));
    if notify_healthy {
        u.comment(
            s,
            "Notify=healthy: systemd waits for the first passing health check, within the app's start budget",
        );
    }
    u.set(s, "TimeoutStartSec", budget.to_string());
    u.set(
        s,
        "TimeoutStopSec",
        (stop_s + crate::STOP_HEADROOM_S).to_string(),
    );
    u.set("Install", "WantedBy", "multi-user.target default.target");
    Ok(ExportFile {
        name: format!("{name}.container"),
        contents: u.render(),
    })
}

fn health(u: &mut UnitFile, h: &HealthCheck, v: PodmanVersion) {
    let cmd = serde_json::to_string(&crate::health_command(&h.kind))
        .expect("a list of strings always serialises");
    let pairs = [
        ("HealthCmd", "--health-cmd", cmd),
        (
            "HealthInterval",
            "--health-interval",
            format!("{}s", crate::secs(h.interval)),
        ),
        (
            "HealthTimeout",
            "--health-timeout",
            format!("{}s", crate::secs(h.timeout)),
        ),
        ("HealthRetries", "--health-retries", h.retries.to_string()),
        (
            "HealthStartPeriod",
            "--health-start-period",
            format!("{}s", h.start_period.as_secs()),
        ),
    ];
    let keys = supports(v, Feature::HealthKeys);
    for (key, flag, value) in pairs {
        if keys {
            u.set("Container", key, word(&value, false));
        } else {
            u.set(
                "Container",
                "PodmanArgs",
                word(&format!("{flag}={value}"), false),
            );
        }
    }
}

pub(crate) fn port_spec(p: &berth_core::model::PortMapping) -> String {
    let proto = match p.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    match &p.host_ip {
        Some(ip) => format!("{ip}:{}:{}/{proto}", p.host_port, p.container_port),
        None => format!("{}:{}/{proto}", p.host_port, p.container_port),
    }
}

pub(crate) fn restart(r: RestartPolicy) -> &'static str {
    match r {
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::No => "no",
    }
}

/// The oneshot unit that runs `berth gate wait APP` before a gated app's
/// unit starts; None for an app without required gate nodes.
pub(crate) fn gate_unit(
    stack: &Stack,
    app: &App,
    paths: &HostPaths,
    stack_file: Option<&str>,
    engine: &str,
) -> Option<ExportFile> {
    let nodes = crate::gate_nodes(app);
    if nodes.is_empty() {
        return None;
    }
    let mut u = UnitFile::default();
    u.header(format!(
        "berth export: sync gate of app {} of stack {}",
        app.id, stack.name
    ));
    u.set(
        "Unit",
        "Description",
        format!(
            "berth {}: gate of {} (waits for {})",
            stack.name,
            app.id,
            nodes.join(", ")
        ),
    );
    for n in nodes {
        let svc = container_service(&stack.name, n);
        u.set("Unit", "Requires", &svc);
        u.set("Unit", "After", &svc);
    }
    let mut argv = vec![
        paths.berth_bin.clone(),
        "--engine".into(),
        engine.into(),
        "--state-dir".into(),
        paths.state_dir.clone(),
    ];
    if let Some(f) = stack_file {
        argv.push("--stack".into());
        argv.push(f.into());
    }
    argv.extend(["gate".into(), "wait".into(), app.id.clone()]);
    u.set("Service", "Type", "oneshot");
    u.set("Service", "RemainAfterExit", "yes");
    u.set("Service", "ExecStart", command_line(&argv, true));
    u.comment(
        "Service",
        "a node's initial sync can take days: no start timeout; a latched gate returns at once",
    );
    u.set("Service", "TimeoutStartSec", "infinity");
    Some(ExportFile {
        name: gate_service(&stack.name, &app.id),
        contents: u.render(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn opts(v: &str) -> QuadletOptions {
        QuadletOptions {
            podman_version: v.parse().unwrap(),
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
    fn versions_parse_and_bad_ones_are_refused() {
        assert_eq!(
            "4.4".parse::<PodmanVersion>().unwrap(),
            PodmanVersion::new(4, 4)
        );
        assert_eq!(
            "5.2.1".parse::<PodmanVersion>().unwrap(),
            PodmanVersion {
                major: 5,
                minor: 2,
                patch: 1
            }
        );
        for bad in ["", "4", "four.4", "4.4.4.4", "4.x"] {
            assert_eq!(
                bad.parse::<PodmanVersion>(),
                Err(ExportError::BadVersion(bad.into()))
            );
        }
    }

    #[test]
    fn podman_before_quadlet_is_refused_pointing_to_systemd() {
        let err = render(&testdata::demo(), &opts("4.3.1")).unwrap_err();
        assert!(err.to_string().contains("berth export systemd"), "{err}");
    }

    #[test]
    fn the_feature_table_is_ordered_by_release_and_above_4_4() {
        for row in FEATURES {
            assert!(row.since > QUADLET_FIRST, "{row:?}");
        }
        assert!(!supports(PodmanVersion::new(4, 4), Feature::HealthKeys));
        assert!(supports(PodmanVersion::new(4, 5), Feature::HealthKeys));
        assert!(supports(PodmanVersion::new(5, 0), Feature::NotifyHealthy));
    }

    #[test]
    fn demo_for_podman_4_4_degrades_through_podman_args() {
        insta::assert_snapshot!(all(&render(&testdata::demo(), &opts("4.4")).unwrap()));
    }

    #[test]
    fn demo_for_podman_5_uses_the_dedicated_keys() {
        insta::assert_snapshot!(all(&render(&testdata::demo(), &opts("5.2")).unwrap()));
    }

    #[test]
    fn every_feature_for_podman_5() {
        insta::assert_snapshot!(all(
            &render(&testdata::every_feature(), &opts("5.0")).unwrap()
        ));
    }

    #[test]
    fn two_exports_are_byte_identical() {
        let a = render(&testdata::demo(), &opts("5.0")).unwrap();
        let b = render(&testdata::demo(), &opts("5.0")).unwrap();
        assert_eq!(a, b);
    }
}
