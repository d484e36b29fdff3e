//! Lenient wire types for the container list and inspect answers.
//!
//! bollard's models turn container states into a closed enum, and Podman 4.3
//! reports states Docker does not have (`stopped`, between a container's
//! exit and its cleanup; `configured`; `initialized`). One such container
//! makes bollard fail the whole list, so these two answers — the ones berth
//! reads every tick — are parsed here with states as plain strings
//! (`EngineStatus::parse` knows every engine's words) and every field
//! optional.

use std::collections::HashMap;

use berth_core::classify::EngineStatus;
use berth_core::observed::ObservedContainer;
use serde::Deserialize;

use crate::api::AppliedConfig;
use crate::detect::Ulimit;

/// One entry of `GET /containers/json`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Summary {
    pub id: Option<String>,
    pub names: Option<Vec<String>>,
    pub image: Option<String>,
    pub state: Option<String>,
    pub status: Option<String>,
    pub labels: Option<HashMap<String, String>>,
}

/// One entry of Podman's `GET /libpod/containers/json`: unlike the
/// compat list it carries the exit code as a number (and Podman answers it
/// faster, which the no-op reconcile tick is made of).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct LibpodSummary {
    pub id: Option<String>,
    pub names: Option<Vec<String>>,
    pub image: Option<String>,
    pub state: Option<String>,
    pub exit_code: Option<i64>,
    pub labels: Option<HashMap<String, String>>,
}

impl LibpodSummary {
    pub fn observed(self) -> ObservedContainer {
        let status = EngineStatus::parse(self.state.as_deref().unwrap_or(""));
        ObservedContainer {
            id: self.id.unwrap_or_default(),
            name: self
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            image: self.image.unwrap_or_default(),
            status,
            exit_code: match status {
                EngineStatus::Exited | EngineStatus::Dead => self.exit_code,
                _ => None,
            },
            oom_killed: false,
            started_at: None,
            labels: self.labels.unwrap_or_default().into_iter().collect(),
        }
    }
}

/// `GET /containers/{name}/json`, the parts berth reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Inspect {
    pub id: Option<String>,
    pub name: Option<String>,
    pub image: Option<String>,
    pub state: Option<State>,
    pub config: Option<Config>,
    pub host_config: Option<HostConfig>,
    pub network_settings: Option<NetworkSettings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct State {
    pub status: Option<String>,
    pub exit_code: Option<i64>,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: Option<bool>,
    pub started_at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Config {
    pub image: Option<String>,
    pub labels: Option<HashMap<String, String>>,
    pub user: Option<String>,
    pub stop_timeout: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct HostConfig {
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub security_opt: Option<Vec<String>>,
    pub log_config: Option<LogConfig>,
    pub memory: Option<i64>,
    pub restart_policy: Option<RestartPolicy>,
    pub ulimits: Option<Vec<WireUlimit>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LogConfig {
    #[serde(rename = "Type")]
    pub typ: Option<String>,
    #[serde(rename = "Config")]
    pub config: Option<HashMap<String, String>>,
    /// Podman's libpod inspect only.
    #[serde(rename = "Size")]
    pub size: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct RestartPolicy {
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct WireUlimit {
    pub name: Option<String>,
    pub soft: Option<i64>,
    pub hard: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct NetworkSettings {
    pub networks: Option<HashMap<String, Endpoint>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Endpoint {
    #[serde(rename = "IPAddress")]
    pub ip_address: Option<String>,
}

/// The libpod inspect, for the log settings the compat inspect hides.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct LibpodInspect {
    pub host_config: Option<LibpodHostConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct LibpodHostConfig {
    pub log_config: Option<LogConfig>,
}

impl Summary {
    pub fn observed(self) -> ObservedContainer {
        let status = EngineStatus::parse(self.state.as_deref().unwrap_or(""));
        let exit_code = match status {
            EngineStatus::Exited | EngineStatus::Dead => {
                exit_code_from_status(self.status.as_deref().unwrap_or(""))
            }
            _ => None,
        };
        ObservedContainer {
            id: self.id.unwrap_or_default(),
            name: self
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            image: self.image.unwrap_or_default(),
            status,
            exit_code,
            oom_killed: false,
            started_at: None,
            labels: self.labels.unwrap_or_default().into_iter().collect(),
        }
    }
}

impl Inspect {
    pub fn observed(&self) -> ObservedContainer {
        let state = self.state.as_ref();
        let status = EngineStatus::parse(state.and_then(|s| s.status.as_deref()).unwrap_or(""));
        let config = self.config.as_ref();
        ObservedContainer {
            id: self.id.clone().unwrap_or_default(),
            name: self
                .name
                .as_deref()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            image: config
                .and_then(|c| c.image.clone())
                .or_else(|| self.image.clone())
                .unwrap_or_default(),
            status,
            exit_code: match status {
                EngineStatus::Exited | EngineStatus::Dead => state.and_then(|s| s.exit_code),
                _ => None,
            },
            oom_killed: state.and_then(|s| s.oom_killed).unwrap_or(false),
            started_at: state
                .and_then(|s| s.started_at.clone())
                .filter(|s| !is_zero_time(s)),
            labels: config
                .and_then(|c| c.labels.clone())
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }

    pub fn ip_on(&self, network: &str) -> Option<String> {
        self.network_settings
            .as_ref()?
            .networks
            .as_ref()?
            .get(network)?
            .ip_address
            .clone()
            .filter(|ip| !ip.is_empty())
    }

    pub fn applied(&self) -> AppliedConfig {
        let host = self.host_config.as_ref();
        let config = self.config.as_ref();
        let log = host.and_then(|h| h.log_config.as_ref());
        let log_opt = |key: &str| log.and_then(|l| l.config.as_ref()?.get(key).cloned());
        AppliedConfig {
            cap_add: host.and_then(|h| h.cap_add.clone()).unwrap_or_default(),
            cap_drop: host.and_then(|h| h.cap_drop.clone()).unwrap_or_default(),
            security_opt: host
                .and_then(|h| h.security_opt.clone())
                .unwrap_or_default(),
            log_driver: log.and_then(|l| l.typ.clone()).unwrap_or_default(),
            log_max_size: log_opt("max-size"),
            log_max_files: log_opt("max-file"),
            memory_bytes: host.and_then(|h| h.memory).filter(|m| *m > 0),
            restart_policy: host
                .and_then(|h| h.restart_policy.as_ref()?.name.clone())
                .unwrap_or_default(),
            ulimits: host
                .and_then(|h| h.ulimits.as_ref())
                .into_iter()
                .flatten()
                .map(|u| Ulimit {
                    name: u
                        .name
                        .as_deref()
                        .unwrap_or_default()
                        .trim_start_matches("RLIMIT_")
                        .to_ascii_lowercase(),
                    soft: u.soft.unwrap_or_default().max(0).unsigned_abs(),
                    hard: u.hard.unwrap_or_default().max(0).unsigned_abs(),
                })
                .collect(),
            user: config.and_then(|c| c.user.clone()).unwrap_or_default(),
            stop_timeout_s: config.and_then(|c| c.stop_timeout),
        }
    }
}

/// Both engines report a never-started container's StartedAt as Go's zero
/// time.
fn is_zero_time(s: &str) -> bool {
    s.is_empty() || s.starts_with("0001-01-01")
}

/// The exit code in a container list status text: "Exited (137) 3 seconds
/// ago" (Docker and Podman alike: neither list has a numeric field).
pub fn exit_code_from_status(status: &str) -> Option<i64> {
    let rest = status.trim_start().strip_prefix("Exited (")?;
    let end = rest.find(')')?;
    rest[..end].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_parsed_from_list_status_text() {
        assert_eq!(
            exit_code_from_status("Exited (137) 3 seconds ago"),
            Some(137)
        );
        assert_eq!(
            exit_code_from_status("Exited (0) About a minute ago"),
            Some(0)
        );
        assert_eq!(exit_code_from_status("Exited (3) 1 second ago"), Some(3));
        assert_eq!(exit_code_from_status("Up 5 seconds"), None);
        assert_eq!(exit_code_from_status("Created"), None);
        assert_eq!(exit_code_from_status("Exited (x)"), None);
    }

    #[test]
    fn libpod_list_entries_carry_state_and_exit_code() {
        let list: Vec<LibpodSummary> = serde_json::from_str(
            r#"[{"Id":"abc","Names":["demo-a"],"Image":"img","State":"exited","ExitCode":3,
                 "Exited":true,"StartedAt":1700000000,"Labels":{"io.berth.stack":"demo"},"Ports":null},
                {"Id":"def","Names":["demo-b"],"Image":"img","State":"running","ExitCode":0,
                 "Labels":null},
                {"Id":"ghi","Names":["demo-c"],"State":"created","ExitCode":0}]"#,
        )
        .unwrap();
        let c: Vec<ObservedContainer> = list.into_iter().map(LibpodSummary::observed).collect();
        assert_eq!(
            (c[0].name.as_str(), c[0].status, c[0].exit_code),
            ("demo-a", EngineStatus::Exited, Some(3))
        );
        assert_eq!(
            c[0].labels.get("io.berth.stack").map(String::as_str),
            Some("demo")
        );
        assert_eq!((c[1].status, c[1].exit_code), (EngineStatus::Running, None));
        assert!(c[1].labels.is_empty());
        assert_eq!((c[2].status, c[2].exit_code), (EngineStatus::Created, None));
    }

    /// Regression: Podman's `stopped` state failed bollard's enum and with
    /// it the whole list.
    #[test]
    fn podman_stopped_state_is_an_exit() {
        let list: Vec<Summary> = serde_json::from_str(
            r#"[{"Id":"abc","Names":["/demo-a"],"Image":"img","State":"stopped",
                 "Status":"Exited (3) 1 second ago","Labels":null,"Ports":[]}]"#,
        )
        .unwrap();
        let c = list.into_iter().next().unwrap().observed();
        assert_eq!(c.status, EngineStatus::Exited);
        assert_eq!(c.exit_code, Some(3));
        assert_eq!(c.name, "demo-a");
        assert!(c.labels.is_empty());

        let inspect: Inspect = serde_json::from_str(
            r#"{"Id":"abc","Name":"/demo-a","State":{"Status":"stopped","ExitCode":137,
                "OOMKilled":true,"StartedAt":"2026-01-01T00:00:00Z"},
                "Config":{"Image":"img","Labels":{"a":"b"}},"HostConfig":null,
                "NetworkSettings":{"Networks":{"n":{"IPAddress":"10.0.0.2"},"m":{"IPAddress":""}}}}"#,
        )
        .unwrap();
        let c = inspect.observed();
        assert_eq!(
            (c.status, c.exit_code, c.oom_killed),
            (EngineStatus::Exited, Some(137), true)
        );
        assert_eq!(c.started_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(inspect.ip_on("n").as_deref(), Some("10.0.0.2"));
        assert_eq!(inspect.ip_on("m"), None);
        assert_eq!(inspect.ip_on("x"), None);
    }

    #[test]
    fn never_started_containers_have_no_start_time_or_exit_code() {
        let inspect: Inspect = serde_json::from_str(
            r#"{"Name":"/x","State":{"Status":"created","ExitCode":0,
                "StartedAt":"0001-01-01T00:00:00Z"}}"#,
        )
        .unwrap();
        let c = inspect.observed();
        assert_eq!(
            (c.status, c.exit_code, c.started_at),
            (EngineStatus::Created, None, None)
        );
    }
}
