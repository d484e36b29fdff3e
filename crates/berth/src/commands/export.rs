//! `berth export quadlet|systemd|kube`: render a stack for another
//! supervisor with `berth-export` and write the files. Everything is
//! rendered before anything is written, so a stack the export refuses
//! changes nothing.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use berth_export::kube::{KubeOptions, KubeTarget};
use berth_export::quadlet::QuadletOptions;
use berth_export::systemd::{EngineCli, SystemdOptions};
use berth_export::{ExportError, ExportFile, HostPaths};

use crate::cli::{EngineCliArg, ExportCommand, ExportHost, Global, KubeTargetArg};
use crate::context::{CmdResult, Failure, load_stack};

pub fn run(g: &Global, command: ExportCommand) -> CmdResult {
    match command {
        ExportCommand::Quadlet {
            stack,
            output,
            podman_version,
            host,
        } => {
            let path = stack.unwrap_or_else(|| g.stack.clone());
            let s = load_stack(&path)?;
            let opts = QuadletOptions {
                podman_version: podman_version.parse().map_err(usage)?,
                paths: paths(&host),
                stack_file: Some(host_stack(&host, &path)?),
            };
            let files = berth_export::quadlet::render(&s, &opts).map_err(usage)?;
            write_dir(&output, &files)?;
            eprintln!(
                "wrote {} units to {}: put the .container/.volume/.network files in \
                 /etc/containers/systemd/ and the .service files in /etc/systemd/system/, \
                 then `systemctl daemon-reload`",
                files.len(),
                output.display()
            );
        }
        ExportCommand::Systemd {
            stack,
            output,
            engine_cli,
            engine_bin,
            host,
        } => {
            let path = stack.unwrap_or_else(|| g.stack.clone());
            let s = load_stack(&path)?;
            let engine = match engine_cli {
                EngineCliArg::Podman => EngineCli::Podman,
                EngineCliArg::Docker => EngineCli::Docker,
            };
            let opts = SystemdOptions {
                engine,
                engine_bin: engine_bin.unwrap_or_else(|| engine.default_bin().into()),
                paths: paths(&host),
                stack_file: Some(host_stack(&host, &path)?),
            };
            if !opts.engine_bin.starts_with('/') {
                return Err(Failure::usage(anyhow!(
                    "--engine-bin {:?}: systemd needs an absolute path",
                    opts.engine_bin
                )));
            }
            let files = berth_export::systemd::render(&s, &opts);
            write_dir(&output, &files)?;
            eprintln!(
                "wrote {} units to {}: put them in /etc/systemd/system/, then \
                 `systemctl daemon-reload`",
                files.len(),
                output.display()
            );
        }
        ExportCommand::Kube {
            stack,
            output,
            target,
            berth_image,
            wait_image,
            host_state_dir,
        } => {
            let path = stack.unwrap_or_else(|| g.stack.clone());
            let s = load_stack(&path)?;
            let target = match target {
                KubeTargetArg::Kubernetes => KubeTarget::Kubernetes,
                KubeTargetArg::Podman => KubeTarget::Podman,
            };
            let opts = KubeOptions {
                target,
                paths: HostPaths {
                    state_dir: host_state_dir,
                    berth_bin: berth_export::BERTH_BIN_DEFAULT.into(),
                },
                berth_image,
                wait_image,
            };
            let export = berth_export::kube::render(&s, &opts).map_err(usage)?;
            let yaml = berth_export::kube::to_yaml(&export, &s, target).map_err(usage)?;
            write_file(&output, &yaml)?;
            eprintln!(
                "wrote {} objects to {}",
                export.objects.len(),
                output.display()
            );
            for n in &export.notes {
                eprintln!("note: {n}");
            }
        }
    }
    Ok(0)
}

fn usage(e: ExportError) -> Failure {
    Failure::usage(anyhow::Error::new(e))
}

fn paths(host: &ExportHost) -> HostPaths {
    HostPaths {
        state_dir: host.host_state_dir.clone(),
        berth_bin: host.berth_bin.clone(),
    }
}

/// The stack file the gate units name: `--host-stack`, else this file's
/// absolute path (the export is usually made on the host that runs it).
fn host_stack(host: &ExportHost, path: &Path) -> CmdResult<String> {
    if let Some(h) = &host.host_stack {
        return Ok(h.clone());
    }
    let abs: PathBuf = std::path::absolute(path)
        .with_context(|| format!("cannot make {} absolute", path.display()))?;
    abs.to_str().map(str::to_string).ok_or_else(|| {
        Failure::usage(anyhow!(
            "{} is not valid UTF-8: give --host-stack",
            abs.display()
        ))
    })
}

fn write_dir(dir: &Path, files: &[ExportFile]) -> CmdResult<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for f in files {
        write_file(&dir.join(&f.name), &f.contents)?;
    }
    Ok(())
}

/// Write through a temporary file and a rename, so a reader never sees
/// half a unit.
fn write_file(path: &Path, contents: &str) -> CmdResult<()> {
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
