//! `berth vet`: vet this host on the staged pipeline (Inventory →
//! SpecValidate → Disk → Memory → Clock → Engine → Reporting). Exit 0 only
//! when every stage passed; a failed stage holds the run (exit 1) until
//! `berth run override|retry|abandon`.

use berth_verify::runs::{self, new_run_id};
use berth_verify::vet::VET_KIND;
use berth_verify::{EngineRef, VetOptions};

use crate::cli::{Global, VetArgs};
use crate::commands::run::{conclude, driver, interruptible, runs_failure};
use crate::context::{CmdResult, Failure, connect_engine};

pub async fn run(g: &Global, a: VetArgs) -> CmdResult {
    let driver = driver(g, !a.json)?;
    let id = new_run_id(
        VET_KIND,
        berth_verify::Clock::now_ms(&berth_verify::SystemClock),
    );
    let report_dir = match a.report {
        Some(dir) => dir,
        None => driver
            .state
            .run_dir(&id)
            .map_err(|e| Failure::from(anyhow::Error::new(e)))?,
    };
    let mut opts = VetOptions::new(report_dir);
    opts.run_id = Some(id);
    opts.data_paths = if a.data.is_empty() {
        vec![driver.state.root().to_path_buf()]
    } else {
        a.data
    };
    opts.expected_spec = a.spec;
    opts.continue_on_error = a.continue_on_error;
    if let Some(v) = a.disk_write_min {
        opts.floors.disk_write_mb_s_min = v;
    }
    if let Some(v) = a.disk_read_min {
        opts.floors.disk_read_mb_s_min = v;
    }
    if let Some(v) = a.fsync_p99_max {
        opts.floors.disk_fsync_p99_ms_max = v;
    }
    if let Some(v) = a.clock_offset_max {
        opts.floors.clock_offset_ms_max = v;
    }
    if let Some(v) = a.disk_test_mib {
        opts.disk_test_mib = v;
    }
    if let Some(v) = a.memory_test_mib {
        opts.memory_test_mib = v;
    }
    if !a.no_engine {
        // The engine actually reached (`--engine auto` resolves here); one
        // that cannot be reached fails the Engine stage, with the reason.
        let kind = match connect_engine(g).await {
            Ok(e) => e.kind(),
            Err(f) => {
                opts.engine_error = Some(format!("{:#}", f.error));
                match g.engine {
                    crate::cli::EngineArg::Docker => berth_engine::EngineKind::Docker,
                    _ => berth_engine::EngineKind::Podman,
                }
            }
        };
        opts.engine = Some(EngineRef {
            kind,
            podman_socket: g.podman_socket.clone(),
            docker_socket: g.docker_socket.clone(),
        });
    }
    let run_id = opts.run_id.clone().unwrap_or_default();
    let summary = interruptible(&run_id, async {
        runs::start_vet(&driver, opts).await.map_err(runs_failure)
    })
    .await?;
    conclude(&summary, a.json)
}
