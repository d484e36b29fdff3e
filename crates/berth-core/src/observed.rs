//! What berth sees of a container through the engine, as plain data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::classify::{Classification, EngineStatus, HealthStatus, classify};
use crate::naming;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    pub status: EngineStatus,
    /// Exit code of the last run, when the engine reports one.
    pub exit_code: Option<i64>,
    /// Only known after an inspect; `false` from a plain list.
    pub oom_killed: bool,
    /// RFC 3339 start time of the current/last run, when known.
    pub started_at: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl ObservedContainer {
    pub fn app(&self) -> Option<&str> {
        self.labels.get(naming::LABEL_APP).map(String::as_str)
    }

    pub fn stack(&self) -> Option<&str> {
        self.labels.get(naming::LABEL_STACK).map(String::as_str)
    }

    pub fn spec_hash(&self) -> Option<&str> {
        self.labels.get(naming::LABEL_SPEC_HASH).map(String::as_str)
    }

    pub fn classify(&self, health: Option<HealthStatus>) -> Classification {
        classify(Some(self.status), self.exit_code, self.oom_killed, health)
    }
}
