//! Vet this host without the CLI (until `berth vet` is wired):
//!
//! ```text
//! cargo run -p berth-verify --example vet -- REPORT_DIR [podman|docker|none] [DATA_PATH...]
//! ```
//!
//! Prints the summary as JSON; the reports land in REPORT_DIR.

use std::path::PathBuf;
use std::sync::Arc;

use berth_engine::Engine;
use berth_engine::podman_service::{ConnectOptions, EngineChoice, connect};
use berth_verify::{MemoryRunStore, VetOptions, vet};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let report_dir = PathBuf::from(
        args.next()
            .ok_or("usage: vet REPORT_DIR [ENGINE] [DATA_PATH...]")?,
    );
    let engine: Option<Arc<dyn Engine>> = match args.next().as_deref() {
        None | Some("podman") => Some(Arc::from(
            connect(EngineChoice::Podman, &ConnectOptions::default()).await?,
        )),
        Some("docker") => Some(Arc::from(
            connect(EngineChoice::Docker, &ConnectOptions::default()).await?,
        )),
        Some("none") => None,
        Some(other) => return Err(format!("unknown engine {other}").into()),
    };
    let mut opts = VetOptions::new(report_dir);
    opts.data_paths = args.map(PathBuf::from).collect();
    let summary = vet(engine, opts, &MemoryRunStore::new()).await?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
