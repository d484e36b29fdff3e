//! Host detection for engine start-up and `berth doctor`.
//!
//! Podman's defaults assume a modern host: `crun` as the OCI runtime,
//! systemd managing cgroups, and a hard `RLIMIT_NOFILE` high enough for its
//! default container ulimits (1048576). Appliances and VMs often break all
//! three (this project's own CI VM does: hybrid cgroups, no systemd, hard
//! nofile 20000), and Podman then fails every container start with messages
//! like "error setting rlimit type 7: operation not permitted". berth detects
//! the situation itself instead of relying on a hand-edited containers.conf.
//!
//! The parsing functions take file contents as `&str` so they are tested with
//! fixtures; only [`detect_host`] touches the filesystem.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Podman's default `nofile` ulimit for containers started by root.
pub const PODMAN_DEFAULT_NOFILE: u64 = 1_048_576;
/// Podman's default `nproc` ulimit for containers started by root.
pub const PODMAN_DEFAULT_NPROC: u64 = 1_048_576;
/// Podman 4.3 sets its own RLIMIT_NPROC to 32768 (soft and hard) when it
/// starts (measured with strace), so without CAP_SYS_RESOURCE no container
/// it starts can get more than that.
pub const PODMAN_SERVICE_NPROC: u64 = 32_768;
/// Bit of CAP_SYS_RESOURCE in /proc/self/status capability masks.
const CAP_SYS_RESOURCE_BIT: u32 = 24;

/// The OCI runtimes berth knows how to pick between, in preference order.
const KNOWN_RUNTIMES: [&str; 2] = ["crun", "runc"];

/// Directories searched for OCI runtimes besides `$PATH`: Podman looks in
/// sbin directories that a non-login root shell may not have on its PATH.
const RUNTIME_EXTRA_DIRS: [&str; 5] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/usr/libexec/podman",
];

/// How cgroups are mounted on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only v1 controller hierarchies.
    V1,
    /// The unified (v2) hierarchy at /sys/fs/cgroup.
    V2,
    /// v1 controllers plus a v2 mount (usually /sys/fs/cgroup/unified).
    /// `crun` refuses to run here.
    Hybrid,
    /// No cgroup mount found (or /proc/self/mounts unreadable).
    Unknown,
}

impl std::fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupMode::V1 => "v1",
            CgroupMode::V2 => "v2",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::Unknown => "unknown",
        })
    }
}

/// One resource limit as read from /proc/self/limits. `None` means
/// "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// Facts about the host that decide how berth drives Podman.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReport {
    pub cgroup_mode: CgroupMode,
    /// OCI runtimes found (`"crun"`, `"runc"`), in preference order.
    pub oci_runtimes: Vec<String>,
    /// Where each runtime in `oci_runtimes` was found.
    pub oci_runtime_paths: Vec<PathBuf>,
    /// berth's own RLIMIT_NOFILE; `None` when /proc/self/limits is unreadable.
    pub nofile: Option<Limit>,
    /// berth's own RLIMIT_NPROC; `None` when /proc/self/limits is unreadable.
    pub nproc: Option<Limit>,
    /// Whether PID 1 is systemd (so the systemd cgroup manager can work).
    pub systemd_pid1: bool,
    /// Whether berth holds CAP_SYS_RESOURCE, i.e. may raise resource limits
    /// above its own hard limits (sandboxed roots often may not).
    pub cap_sys_resource: bool,
    /// The podman binary, when found on PATH.
    pub podman_bin: Option<PathBuf>,
}

/// One explicit ulimit to pass on container creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// `nofile`, `nproc`, ... (Docker API names, without `RLIMIT_`).
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// How berth adapts Podman to this host. `Default` means "no adjustment".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAdjustments {
    /// `--runtime` for the Podman service berth starts.
    pub runtime: Option<String>,
    /// `--cgroup-manager` for the Podman service berth starts.
    pub cgroup_manager: Option<String>,
    /// Explicit ulimits set on every container berth creates with Podman.
    pub ulimits: Vec<Ulimit>,
    /// One human sentence per decision, for `berth doctor`.
    pub notes: Vec<String>,
}

impl HostAdjustments {
    /// Global `podman` flags implementing `runtime` and `cgroup_manager`.
    pub fn podman_global_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(runtime) = &self.runtime {
            args.push(format!("--runtime={runtime}"));
        }
        if let Some(manager) = &self.cgroup_manager {
            args.push(format!("--cgroup-manager={manager}"));
        }
        args
    }
}

/// Read the host facts. Unreadable files degrade to "unknown" values; this
/// never fails, because `berth doctor` must report even on odd hosts.
pub fn detect_host() -> HostReport {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let path_var = std::env::var("PATH").unwrap_or_default();
    let found = find_runtimes(&path_var, |p| p.is_file());
    HostReport {
        cgroup_mode: parse_cgroup_mode(&mounts),
        oci_runtimes: found.iter().map(|(name, _)| name.clone()).collect(),
        oci_runtime_paths: found.into_iter().map(|(_, path)| path).collect(),
        nofile: limits
            .as_deref()
            .and_then(|l| parse_limit(l, "Max open files")),
        nproc: limits
            .as_deref()
            .and_then(|l| parse_limit(l, "Max processes")),
        systemd_pid1: is_systemd(&pid1) || Path::new("/run/systemd/system").is_dir(),
        cap_sys_resource: has_effective_cap(&status, CAP_SYS_RESOURCE_BIT),
        podman_bin: find_in_path(&path_var, "podman", |p| p.is_file()),
    }
}

/// Decide how to run Podman on the host described by `report`.
pub fn podman_adjustments(report: &HostReport) -> HostAdjustments {
    let mut adjust = HostAdjustments::default();
    let has = |name: &str| report.oci_runtimes.iter().any(|r| r == name);

    // Runtime: crun cannot run on hybrid cgroups, and Podman's default is
    // crun, so pin runc whenever crun is unusable or absent.
    if report.cgroup_mode == CgroupMode::Hybrid {
        if has("runc") {
            adjust.runtime = Some("runc".into());
            adjust.notes.push(
                "hybrid cgroups detected: crun does not support them; using runc with cgroupfs"
                    .into(),
            );
        } else {
            adjust.notes.push(
                "hybrid cgroups detected but runc is not installed: crun does not support \
                 hybrid cgroups, so containers will fail to start; install runc"
                    .into(),
            );
        }
    } else if !has("crun") {
        if has("runc") {
            adjust.runtime = Some("runc".into());
            adjust
                .notes
                .push("crun is not installed: using runc as the OCI runtime".into());
        } else {
            adjust.notes.push(
                "no OCI runtime (crun or runc) found on PATH: Podman cannot run containers".into(),
            );
        }
    }

    // Cgroup manager: the systemd manager needs systemd as PID 1; hybrid
    // cgroups are also only reliable with cgroupfs.
    if !report.systemd_pid1 {
        adjust.cgroup_manager = Some("cgroupfs".into());
        adjust
            .notes
            .push("systemd is not PID 1: using the cgroupfs cgroup manager".into());
    } else if report.cgroup_mode == CgroupMode::Hybrid {
        adjust.cgroup_manager = Some("cgroupfs".into());
    }

    // Ulimits: Podman gives every container nofile=nproc=1048576. Raising a
    // limit above the hard limit of the process doing it needs
    // CAP_SYS_RESOURCE; without it (or with a low hard nofile, which Podman
    // inherits from whoever starts it) container starts fail with "error
    // setting rlimit type 7". Pin both limits to what the service really
    // has: our hard nofile, and our hard nproc capped at the 32768 Podman
    // sets on itself.
    let nofile_hard = report
        .nofile
        .and_then(|l| l.hard)
        .unwrap_or(PODMAN_DEFAULT_NOFILE)
        .min(PODMAN_DEFAULT_NOFILE);
    if nofile_hard < PODMAN_DEFAULT_NOFILE || !report.cap_sys_resource {
        let nproc_hard = report
            .nproc
            .and_then(|l| l.hard)
            .unwrap_or(PODMAN_SERVICE_NPROC)
            .min(PODMAN_SERVICE_NPROC);
        adjust.ulimits.push(Ulimit {
            name: "nofile".into(),
            soft: nofile_hard,
            hard: nofile_hard,
        });
        adjust.ulimits.push(Ulimit {
            name: "nproc".into(),
            soft: nproc_hard,
            hard: nproc_hard,
        });
        let why = if nofile_hard < PODMAN_DEFAULT_NOFILE {
            format!(
                "hard open-files limit is {nofile_hard}, below Podman's default \
                 {PODMAN_DEFAULT_NOFILE}"
            )
        } else {
            "no CAP_SYS_RESOURCE to raise Podman's default limits".to_string()
        };
        adjust.notes.push(format!(
            "{why}: setting explicit ulimits nofile={nofile_hard}:{nofile_hard} \
             nproc={nproc_hard}:{nproc_hard}"
        ));
    }
    adjust
}

/// The cgroup layout from the contents of /proc/self/mounts.
pub fn parse_cgroup_mode(mounts: &str) -> CgroupMode {
    let mut v1 = false;
    let mut v2_at_root = false;
    let mut v2_elsewhere = false;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_source), Some(target), Some(fstype)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !target.starts_with("/sys/fs/cgroup") {
            continue;
        }
        match fstype {
            "cgroup" => v1 = true,
            "cgroup2" if target == "/sys/fs/cgroup" => v2_at_root = true,
            "cgroup2" => v2_elsewhere = true,
            _ => {}
        }
    }
    match (v1, v2_at_root, v2_elsewhere) {
        (false, true, _) => CgroupMode::V2,
        (true, _, true) | (true, true, _) => CgroupMode::Hybrid,
        (true, false, false) => CgroupMode::V1,
        (false, false, true) => CgroupMode::V2,
        (false, false, false) => CgroupMode::Unknown,
    }
}

/// One limit (by its /proc/self/limits row name, e.g. "Max open files")
/// from the contents of /proc/self/limits.
pub fn parse_limit(limits: &str, row: &str) -> Option<Limit> {
    let line = limits.lines().find(|l| l.starts_with(row))?;
    let mut cols = line[row.len()..].split_whitespace();
    let parse = |s: &str| -> Option<Option<u64>> {
        if s == "unlimited" {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    let soft = parse(cols.next()?)?;
    let hard = parse(cols.next()?)?;
    Some(Limit { soft, hard })
}

/// Whether capability `bit` is in the `CapEff` mask of a
/// /proc/<pid>/status text.
pub fn has_effective_cap(status: &str, bit: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << bit) != 0)
}

/// Whether the contents of /proc/1/comm name systemd.
pub fn is_systemd(pid1_comm: &str) -> bool {
    pid1_comm.trim() == "systemd"
}

/// OCI runtimes found in `path_var` plus the usual sbin directories, as
/// (name, path), in preference order. `exists` is injected for tests.
pub fn find_runtimes(path_var: &str, exists: impl Fn(&Path) -> bool) -> Vec<(String, PathBuf)> {
    KNOWN_RUNTIMES
        .iter()
        .filter_map(|name| {
            find_in_dirs(search_dirs(path_var), name, &exists).map(|p| (name.to_string(), p))
        })
        .collect()
}

/// `name` on `path_var` (no extra directories).
pub fn find_in_path(path_var: &str, name: &str, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    find_in_dirs(
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        name,
        &exists,
    )
}

fn search_dirs(path_var: &str) -> impl Iterator<Item = PathBuf> + '_ {
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .chain(RUNTIME_EXTRA_DIRS.iter().map(PathBuf::from))
}

fn find_in_dirs(
    dirs: impl Iterator<Item = PathBuf>,
    name: &str,
    exists: &impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    dirs.map(|d| d.join(name)).find(|p| exists(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS_HYBRID: &str = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";
    const MOUNTS_V2: &str = "\
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
";
    const MOUNTS_V1: &str = "\
tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0
";
    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max processes             96365                96365                processes 
Max open files            20000                20000                files     
Max locked memory         8388608              8388608              bytes     
";

    fn report(mode: CgroupMode, runtimes: &[&str], nofile: u64, systemd: bool) -> HostReport {
        report_caps(mode, runtimes, nofile, systemd, true)
    }

    fn report_caps(
        mode: CgroupMode,
        runtimes: &[&str],
        nofile: u64,
        systemd: bool,
        cap_sys_resource: bool,
    ) -> HostReport {
        HostReport {
            cgroup_mode: mode,
            oci_runtimes: runtimes.iter().map(|s| s.to_string()).collect(),
            oci_runtime_paths: runtimes
                .iter()
                .map(|s| PathBuf::from(format!("/usr/bin/{s}")))
                .collect(),
            nofile: Some(Limit {
                soft: Some(nofile),
                hard: Some(nofile),
            }),
            nproc: Some(Limit {
                soft: Some(96365),
                hard: Some(96365),
            }),
            systemd_pid1: systemd,
            cap_sys_resource,
            podman_bin: Some("/usr/bin/podman".into()),
        }
    }

    #[test]
    fn cgroup_modes_are_recognised() {
        assert_eq!(parse_cgroup_mode(MOUNTS_HYBRID), CgroupMode::Hybrid);
        assert_eq!(parse_cgroup_mode(MOUNTS_V2), CgroupMode::V2);
        assert_eq!(parse_cgroup_mode(MOUNTS_V1), CgroupMode::V1);
        assert_eq!(parse_cgroup_mode(""), CgroupMode::Unknown);
        assert_eq!(parse_cgroup_mode("garbage\n\n"), CgroupMode::Unknown);
    }

    #[test]
    fn limits_are_parsed_including_unlimited() {
        assert_eq!(
            parse_limit(LIMITS, "Max open files"),
            Some(Limit {
                soft: Some(20000),
                hard: Some(20000)
            })
        );
        assert_eq!(
            parse_limit(LIMITS, "Max cpu time"),
            Some(Limit {
                soft: None,
                hard: None
            })
        );
        assert_eq!(parse_limit(LIMITS, "Max pending signals"), None);
        assert_eq!(parse_limit("Max open files  x y z", "Max open files"), None);
    }

    #[test]
    fn systemd_is_recognised_from_comm() {
        assert!(is_systemd("systemd\n"));
        assert!(!is_systemd("process_api\n"));
        assert!(!is_systemd(""));
    }

    #[test]
    fn runtimes_are_found_on_path_and_in_sbin() {
        let exists = |p: &Path| p == Path::new("/usr/sbin/runc") || p == Path::new("/opt/x/crun");
        let found = find_runtimes("/opt/x:/usr/bin", exists);
        assert_eq!(
            found,
            vec![
                ("crun".to_string(), PathBuf::from("/opt/x/crun")),
                ("runc".to_string(), PathBuf::from("/usr/sbin/runc")),
            ]
        );
        assert_eq!(find_runtimes("", |_| false), vec![]);
        assert_eq!(
            find_in_path("/a::/b", "podman", |p| p == Path::new("/b/podman")),
            Some(PathBuf::from("/b/podman"))
        );
    }

    #[test]
    fn this_ci_vm_gets_runc_cgroupfs_and_explicit_ulimits() {
        let adjust = podman_adjustments(&report_caps(
            CgroupMode::Hybrid,
            &["runc"],
            20000,
            false,
            false,
        ));
        assert_eq!(adjust.runtime.as_deref(), Some("runc"));
        assert_eq!(adjust.cgroup_manager.as_deref(), Some("cgroupfs"));
        assert_eq!(
            adjust.ulimits,
            vec![
                Ulimit {
                    name: "nofile".into(),
                    soft: 20000,
                    hard: 20000
                },
                Ulimit {
                    name: "nproc".into(),
                    soft: PODMAN_SERVICE_NPROC,
                    hard: PODMAN_SERVICE_NPROC
                },
            ]
        );
        assert_eq!(
            adjust.podman_global_args(),
            vec!["--runtime=runc", "--cgroup-manager=cgroupfs"]
        );
        assert!(
            adjust.notes.iter().any(|n| n
                == "hybrid cgroups detected: crun does not support them; using runc with cgroupfs"),
            "{:?}",
            adjust.notes
        );
        assert_eq!(adjust.notes.len(), 3, "{:?}", adjust.notes);
    }

    #[test]
    fn a_modern_systemd_host_needs_no_adjustment() {
        let adjust = podman_adjustments(&report(
            CgroupMode::V2,
            &["crun", "runc"],
            PODMAN_DEFAULT_NOFILE,
            true,
        ));
        assert_eq!(adjust, HostAdjustments::default());
        assert!(adjust.podman_global_args().is_empty());
    }

    #[test]
    fn missing_crun_on_v2_picks_runc() {
        let adjust = podman_adjustments(&report(CgroupMode::V2, &["runc"], 2_000_000, true));
        assert_eq!(adjust.runtime.as_deref(), Some("runc"));
        assert_eq!(adjust.cgroup_manager, None);
        assert!(adjust.ulimits.is_empty());
        assert_eq!(adjust.notes.len(), 1);
    }

    #[test]
    fn hybrid_without_runc_explains_the_fix() {
        let adjust = podman_adjustments(&report(CgroupMode::Hybrid, &["crun"], 2_000_000, true));
        assert_eq!(adjust.runtime, None);
        assert_eq!(adjust.cgroup_manager.as_deref(), Some("cgroupfs"));
        assert!(
            adjust.notes[0].contains("install runc"),
            "{:?}",
            adjust.notes
        );
    }

    #[test]
    fn nproc_is_capped_at_what_the_podman_service_has() {
        let mut r = report(CgroupMode::V2, &["crun"], 4096, true);
        r.nproc = Some(Limit {
            soft: None,
            hard: None,
        });
        let adjust = podman_adjustments(&r);
        assert_eq!(adjust.ulimits[1].hard, PODMAN_SERVICE_NPROC);
        r.nproc = Some(Limit {
            soft: Some(1000),
            hard: Some(2000),
        });
        assert_eq!(podman_adjustments(&r).ulimits[1].hard, 2000);
    }

    #[test]
    fn without_cap_sys_resource_limits_are_pinned_even_when_high() {
        let adjust = podman_adjustments(&report_caps(
            CgroupMode::V2,
            &["crun"],
            PODMAN_DEFAULT_NOFILE,
            true,
            false,
        ));
        assert_eq!(adjust.ulimits[0].hard, PODMAN_DEFAULT_NOFILE);
        assert_eq!(adjust.ulimits[1].hard, PODMAN_SERVICE_NPROC);
        assert!(
            adjust.notes[0].contains("CAP_SYS_RESOURCE"),
            "{:?}",
            adjust.notes
        );
    }

    #[test]
    fn effective_capabilities_are_read_from_status() {
        let status = "Name:\tbash\nCapPrm:\t000001ffffffffff\nCapEff:\t000001fffeffffff\n";
        assert!(!has_effective_cap(status, CAP_SYS_RESOURCE_BIT));
        assert!(has_effective_cap(status, 0));
        assert!(has_effective_cap(
            "CapEff:\t0000000001000000\n",
            CAP_SYS_RESOURCE_BIT
        ));
        assert!(!has_effective_cap("", CAP_SYS_RESOURCE_BIT));
    }

    #[test]
    fn detect_host_reads_this_machine_without_failing() {
        let report = detect_host();
        // Every Linux machine that runs these tests has /proc.
        assert!(report.nofile.is_some());
    }
}
