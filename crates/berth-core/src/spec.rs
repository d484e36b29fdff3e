//! The effective container spec of an app: exactly what berth asks the
//! engine to create, and the hash that lets berth adopt instead of recreate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{App, PortMapping, Stack};
use crate::naming;

/// Log size cap per container file, so logs cannot fill the disk.
pub const LOG_MAX_SIZE: &str = "10m";
/// Rotated log files kept per container.
pub const LOG_MAX_FILES: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    pub host_path: String,
    pub container_path: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedVolume {
    pub volume: String,
    pub container_path: String,
}

/// Everything the engine needs to create one container. Built by
/// `ContainerSpec::for_app`; hashed for adoption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub stack: String,
    pub app: String,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<NamedVolume>,
    pub binds: Vec<BindMount>,
    pub network: String,
    /// DNS aliases on `network` (the app id, so dependents reach `bitcoind:8332`).
    pub aliases: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub cap_add: Vec<String>,
    pub memory_bytes: Option<u64>,
    pub user: Option<String>,
    pub stop_grace_s: u64,
    /// Always true: no container berth creates can gain privileges.
    pub no_new_privileges: bool,
    /// Always true: every capability is dropped unless `cap_add` adds it.
    pub cap_drop_all: bool,
    pub log_max_size: String,
    pub log_max_files: u32,
}

impl ContainerSpec {
    /// The spec for `app` of `stack`. `secrets_dir` is the host directory
    /// holding the app's secret files (bound read-only at `/run/secrets`);
    /// `None` when the app needs no secrets.
    pub fn for_app(stack: &Stack, app: &App, secrets_dir: Option<&str>) -> ContainerSpec {
        let mut labels = app.labels.clone();
        labels.insert(naming::LABEL_MANAGED.into(), "true".into());
        labels.insert(naming::LABEL_STACK.into(), stack.name.clone());
        labels.insert(naming::LABEL_APP.into(), app.id.clone());
        let volumes = app
            .volumes
            .iter()
            .map(|v| NamedVolume {
                volume: naming::volume_name(&stack.name, &app.id, &v.name),
                container_path: v.path.clone(),
            })
            .collect();
        let binds = match (secrets_dir, app.secrets.is_empty()) {
            (Some(dir), false) => vec![BindMount {
                host_path: dir.to_string(),
                container_path: naming::SECRETS_MOUNT_PATH.into(),
                read_only: true,
            }],
            _ => Vec::new(),
        };
        let mut spec = ContainerSpec {
            name: naming::container_name(&stack.name, &app.id),
            stack: stack.name.clone(),
            app: app.id.clone(),
            image: app.image.clone(),
            entrypoint: app.entrypoint.clone(),
            command: app.command.clone(),
            env: app.env.clone(),
            ports: app.ports.clone(),
            volumes,
            binds,
            network: stack.settings.network.clone(),
            aliases: vec![app.id.clone()],
            labels,
            cap_add: app.cap_add.clone(),
            memory_bytes: app.memory_bytes,
            user: app.user.clone(),
            stop_grace_s: app.stop_grace.as_secs(),
            no_new_privileges: true,
            cap_drop_all: true,
            log_max_size: LOG_MAX_SIZE.into(),
            log_max_files: LOG_MAX_FILES,
        };
        let hash = spec.hash();
        spec.labels.insert(naming::LABEL_SPEC_HASH.into(), hash);
        spec
    }

    /// Hash of everything that shapes the container, excluding the hash
    /// label itself. Stable across runs: serde_json over ordered maps.
    pub fn hash(&self) -> String {
        let mut copy = self.clone();
        copy.labels.remove(naming::LABEL_SPEC_HASH);
        let bytes = serde_json::to_vec(&copy).expect("a ContainerSpec always serialises");
        let digest = Sha256::digest(&bytes);
        hex::encode(&digest[..12])
    }

    pub fn spec_hash_label(&self) -> Option<&str> {
        self.labels.get(naming::LABEL_SPEC_HASH).map(String::as_str)
    }
}
