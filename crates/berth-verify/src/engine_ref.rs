//! Which engine a run uses, as plain data stored with the run: a process
//! that resumes the run (another CLI, the daemon) connects to the same
//! engine the run started on.

use std::path::PathBuf;
use std::sync::Arc;

use berth_engine::podman_service::{ConnectOptions, EngineChoice, connect};
use berth_engine::{Engine, EngineKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineRef {
    pub kind: EngineKind,
    /// The Podman API socket given on the command line, if any.
    pub podman_socket: Option<PathBuf>,
    /// The Docker socket given on the command line, if any.
    pub docker_socket: Option<PathBuf>,
}

impl EngineRef {
    pub fn new(kind: EngineKind) -> EngineRef {
        EngineRef {
            kind,
            podman_socket: None,
            docker_socket: None,
        }
    }

    /// Connect (Podman: its socket, else berth's own API service).
    pub async fn connect(&self) -> Result<Arc<dyn Engine>, String> {
        let choice = match self.kind {
            EngineKind::Podman => EngineChoice::Podman,
            EngineKind::Docker => EngineChoice::Docker,
            EngineKind::Fake => return Err("the fake engine cannot be reconnected".into()),
        };
        let opts = ConnectOptions {
            podman_socket: self.podman_socket.clone(),
            docker_socket: self.docker_socket.clone(),
        };
        connect(choice, &opts)
            .await
            .map(Arc::from)
            .map_err(|e| e.to_string())
    }
}
