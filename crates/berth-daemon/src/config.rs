//! The daemon's knobs: defaults, overridden by a TOML config file
//! (`<state-dir>/config.toml` or `--config FILE`), overridden by
//! environment variables. Parsing is strict: an unknown key, a bad value or
//! an inconsistent combination is an error naming the key and its source.
//!
//! Every knob is listed in [`KNOBS`] with its environment variable and
//! default; `docs/configuration.md` documents each one (a test checks that
//! none is missing there).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::duration::{format_duration, parse_duration};
use berth_core::supervise::{
    BACKOFF_INITIAL_S_DEFAULT, BACKOFF_MAX_S_DEFAULT, FAILURE_WINDOW_S_DEFAULT,
    MAX_FAILURES_DEFAULT, STABLE_AFTER_S_DEFAULT, SupervisionConfig,
};
use serde::{Deserialize, Serialize};

/// Name of the config file inside the state directory.
pub const CONFIG_FILE_NAME: &str = "config.toml";
/// Largest config file read, in bytes.
pub const CONFIG_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Periodic reconcile tick.
pub const TICK_MS_DEFAULT: u64 = 30_000;
/// Shortest tick accepted: below this the daemon would only load the engine.
pub const TICK_MS_MIN: u64 = 100;
/// Longest tick accepted: supervision must look at least this often.
pub const TICK_MS_MAX: u64 = 3_600_000;
/// Engine events and health changes wait this long for more before the
/// early tick they cause (a burst of events makes one tick).
pub const EVENT_DEBOUNCE_MS_DEFAULT: u64 = 250;
/// Supervision actions executed at once.
pub const ACTIONS_PARALLEL_DEFAULT: usize = 4;
/// Upper bound on `actions_parallel`.
pub const ACTIONS_PARALLEL_MAX: usize = 32;
/// How long a shutdown waits for in-flight actions and requests.
pub const SHUTDOWN_TIMEOUT_S_DEFAULT: u64 = 60;
/// Time limit of a read request (status, events, health).
pub const REQUEST_TIMEOUT_S_DEFAULT: u64 = 30;
/// Time limit of a mutating request (install, up, …) before the caller
/// gets an answer; the operation itself goes on in the daemon.
pub const OPERATION_TIMEOUT_S_DEFAULT: u64 = 1_800;

/// One documented knob: its key in the config file, its environment
/// variable, its default as text and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Knob {
    pub key: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every knob of the daemon, in documentation order.
pub const KNOBS: &[Knob] = &[
    Knob {
        key: "tick",
        env: "BERTH_TICK",
        default: "30s",
        doc: "periodic reconcile tick (engine events and health changes cause earlier ticks)",
    },
    Knob {
        key: "event_debounce",
        env: "BERTH_EVENT_DEBOUNCE",
        default: "250ms",
        doc: "wait after an engine event or health change before the early tick it causes",
    },
    Knob {
        key: "backoff_initial",
        env: "BERTH_BACKOFF_INITIAL",
        default: "10s",
        doc: "first restart backoff; doubles with every restart",
    },
    Knob {
        key: "backoff_max",
        env: "BERTH_BACKOFF_MAX",
        default: "5m",
        doc: "restart backoff ceiling",
    },
    Knob {
        key: "stable_after",
        env: "BERTH_STABLE_AFTER",
        default: "10m",
        doc: "running and healthy this long resets an app's restart counter",
    },
    Knob {
        key: "max_failures",
        env: "BERTH_MAX_FAILURES",
        default: "10",
        doc: "failures within failure_window that put an app into crash-loop quarantine",
    },
    Knob {
        key: "failure_window",
        env: "BERTH_FAILURE_WINDOW",
        default: "1h",
        doc: "the window failures are counted in",
    },
    Knob {
        key: "actions_parallel",
        env: "BERTH_ACTIONS_PARALLEL",
        default: "4",
        doc: "supervision actions (create, start, restart) executed at once (1 to 32)",
    },
    Knob {
        key: "shutdown_timeout",
        env: "BERTH_SHUTDOWN_TIMEOUT",
        default: "60s",
        doc: "how long SIGTERM waits for in-flight actions and requests before the daemon exits anyway",
    },
    Knob {
        key: "request_timeout",
        env: "BERTH_REQUEST_TIMEOUT",
        default: "30s",
        doc: "time limit of a read request on the socket (status, events, health, logs)",
    },
    Knob {
        key: "operation_timeout",
        env: "BERTH_OPERATION_TIMEOUT",
        default: "30m",
        doc: "time limit of a mutating request before the caller gets an answer (the operation goes on)",
    },
    Knob {
        key: "listen",
        env: "BERTH_LISTEN",
        default: "127.0.0.1:7780",
        doc: "address of the HTTP API and dashboard (`off` to serve only the unix socket); port 0 lets the kernel pick one",
    },
];

/// The daemon's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub tick: Duration,
    pub event_debounce: Duration,
    pub actions_parallel: usize,
    pub shutdown_timeout: Duration,
    pub request_timeout: Duration,
    pub operation_timeout: Duration,
    pub supervision: SupervisionConfig,
    /// Where the HTTP API listens; `None`: not at all.
    pub listen: Option<SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tick: Duration::from_millis(TICK_MS_DEFAULT),
            event_debounce: Duration::from_millis(EVENT_DEBOUNCE_MS_DEFAULT),
            actions_parallel: ACTIONS_PARALLEL_DEFAULT,
            shutdown_timeout: Duration::from_secs(SHUTDOWN_TIMEOUT_S_DEFAULT),
            request_timeout: Duration::from_secs(REQUEST_TIMEOUT_S_DEFAULT),
            operation_timeout: Duration::from_secs(OPERATION_TIMEOUT_S_DEFAULT),
            listen: crate::http::LISTEN_DEFAULT.parse().ok(),
            supervision: SupervisionConfig {
                backoff_initial: Duration::from_secs(BACKOFF_INITIAL_S_DEFAULT),
                backoff_max: Duration::from_secs(BACKOFF_MAX_S_DEFAULT),
                stable_after: Duration::from_secs(STABLE_AFTER_S_DEFAULT),
                max_failures: MAX_FAILURES_DEFAULT,
                failure_window: Duration::from_secs(FAILURE_WINDOW_S_DEFAULT),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {} is larger than {CONFIG_FILE_BYTES_MAX} bytes", .path.display())]
    TooLarge { path: PathBuf },
    #[error("config file {}: {detail}", .path.display())]
    Parse { path: PathBuf, detail: String },
    #[error("{source_name}: {key} = {value:?}: {detail}")]
    Value {
        /// Where the value came from: the file path or the variable.
        source_name: String,
        key: String,
        value: String,
        detail: String,
    },
    #[error("inconsistent settings: {0}")]
    Inconsistent(String),
}

/// The config file as written: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    tick: Option<String>,
    event_debounce: Option<String>,
    backoff_initial: Option<String>,
    backoff_max: Option<String>,
    stable_after: Option<String>,
    max_failures: Option<u32>,
    failure_window: Option<String>,
    actions_parallel: Option<usize>,
    shutdown_timeout: Option<String>,
    request_timeout: Option<String>,
    operation_timeout: Option<String>,
    listen: Option<String>,
}

impl Settings {
    /// Defaults, then the config file, then the environment (`env` looks a
    /// variable up; pass `|k| std::env::var(k).ok()`). `file` is the
    /// `--config` path when given (it must exist); otherwise
    /// `<state_dir>/config.toml` is read when it exists.
    pub fn load(
        explicit_file: Option<&Path>,
        state_dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        let default_path = state_dir.join(CONFIG_FILE_NAME);
        let path = match explicit_file {
            Some(p) => Some(p.to_path_buf()),
            None if default_path.exists() => Some(default_path),
            None => None,
        };
        if let Some(path) = path {
            let file = read_file(&path)?;
            s.apply_file(&path, file)?;
        }
        for knob in KNOBS {
            if let Some(value) = env(knob.env) {
                s.set(knob.env, knob.key, &value)?;
            }
        }
        s.check()?;
        Ok(s)
    }

    fn apply_file(&mut self, path: &Path, f: FileSettings) -> Result<(), ConfigError> {
        let src = path.display().to_string();
        let strings = [
            ("tick", f.tick),
            ("event_debounce", f.event_debounce),
            ("backoff_initial", f.backoff_initial),
            ("backoff_max", f.backoff_max),
            ("stable_after", f.stable_after),
            ("failure_window", f.failure_window),
            ("shutdown_timeout", f.shutdown_timeout),
            ("request_timeout", f.request_timeout),
            ("operation_timeout", f.operation_timeout),
            ("listen", f.listen),
        ];
        for (key, value) in strings {
            if let Some(v) = value {
                self.set(&src, key, &v)?;
            }
        }
        if let Some(n) = f.max_failures {
            self.set(&src, "max_failures", &n.to_string())?;
        }
        if let Some(n) = f.actions_parallel {
            self.set(&src, "actions_parallel", &n.to_string())?;
        }
        Ok(())
    }

    /// Set one knob from text (`source_name` names the file, variable or
    /// flag, for the error); call `check` after the last one.
    pub fn set(&mut self, source_name: &str, key: &str, value: &str) -> Result<(), ConfigError> {
        let err = |detail: String| ConfigError::Value {
            source_name: source_name.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            detail,
        };
        let duration = || parse_duration(value.trim()).map_err(err);
        let sup = &mut self.supervision;
        match key {
            "tick" => self.tick = duration()?,
            "event_debounce" => self.event_debounce = duration()?,
            "backoff_initial" => sup.backoff_initial = duration()?,
            "backoff_max" => sup.backoff_max = duration()?,
            "stable_after" => sup.stable_after = duration()?,
            "failure_window" => sup.failure_window = duration()?,
            "shutdown_timeout" => self.shutdown_timeout = duration()?,
            "request_timeout" => self.request_timeout = duration()?,
            "operation_timeout" => self.operation_timeout = duration()?,
            "max_failures" => {
                sup.max_failures = value
                    .trim()
                    .parse()
                    .map_err(|_| err("expected a whole number".into()))?;
            }
            "actions_parallel" => {
                self.actions_parallel = value
                    .trim()
                    .parse()
                    .map_err(|_| err("expected a whole number".into()))?;
            }
            "listen" => self.listen = crate::http::parse_listen(value).map_err(err)?,
            _ => return Err(err("no such setting".into())),
        }
        Ok(())
    }

    /// Bounds and relations between knobs.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Inconsistent(m));
        let tick_ms = self.tick.as_millis();
        if tick_ms < u128::from(TICK_MS_MIN) || tick_ms > u128::from(TICK_MS_MAX) {
            return bad(format!(
                "tick must be between {TICK_MS_MIN}ms and {}, not {}",
                format_duration(Duration::from_millis(TICK_MS_MAX)),
                format_duration(self.tick)
            ));
        }
        if self.supervision.backoff_initial.is_zero() {
            return bad("backoff_initial must be above zero".into());
        }
        if self.supervision.backoff_initial > self.supervision.backoff_max {
            return bad(format!(
                "backoff_initial ({}) is above backoff_max ({})",
                format_duration(self.supervision.backoff_initial),
                format_duration(self.supervision.backoff_max)
            ));
        }
        if self.supervision.max_failures == 0 {
            return bad("max_failures must be at least 1".into());
        }
        if self.supervision.failure_window.is_zero() {
            return bad("failure_window must be above zero".into());
        }
        if !(1..=ACTIONS_PARALLEL_MAX).contains(&self.actions_parallel) {
            return bad(format!(
                "actions_parallel must be 1 to {ACTIONS_PARALLEL_MAX}, not {}",
                self.actions_parallel
            ));
        }
        for (name, d) in [
            ("request_timeout", self.request_timeout),
            ("operation_timeout", self.operation_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be above zero"));
            }
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > CONFIG_FILE_BYTES_MAX {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        detail: e.to_string().trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = file {
            std::fs::write(dir.path().join(CONFIG_FILE_NAME), text).unwrap();
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(None, dir.path(), |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let s = load(None, &[]).unwrap();
        assert_eq!(s, Settings::default());
        for knob in KNOBS {
            let mut from_default = Settings::default();
            from_default.set("doc", knob.key, knob.default).unwrap();
            assert_eq!(from_default, s, "documented default of {}", knob.key);
        }
    }

    #[test]
    fn file_then_environment() {
        let s = load(
            Some(
                "tick = \"1s\"\nbackoff_initial = \"1s\"\nbackoff_max = \"4s\"\nmax_failures = 3\n",
            ),
            &[("BERTH_TICK", "2s"), ("BERTH_ACTIONS_PARALLEL", "2")],
        )
        .unwrap();
        assert_eq!(s.tick, Duration::from_secs(2));
        assert_eq!(s.supervision.backoff_initial, Duration::from_secs(1));
        assert_eq!(s.supervision.backoff_max, Duration::from_secs(4));
        assert_eq!(s.supervision.max_failures, 3);
        assert_eq!(s.actions_parallel, 2);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_clearly() {
        let e = load(Some("tick = \"1s\"\ntik = \"2s\"\n"), &[]).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("config.toml") && m.contains("tik"), "{m}");
        let e = load(None, &[("BERTH_BACKOFF_MAX", "soon")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("BERTH_BACKOFF_MAX: backoff_max = \"soon\""),
            "{e}"
        );
        let e = load(Some("max_failures = \"ten\"\n"), &[]).unwrap_err();
        assert!(e.to_string().contains("max_failures"), "{e}");
        let e = load(None, &[("BERTH_BACKOFF_INITIAL", "10m")]).unwrap_err();
        assert!(e.to_string().contains("above backoff_max"), "{e}");
        let e = load(None, &[("BERTH_TICK", "1ms")]).unwrap_err();
        assert!(e.to_string().contains("tick must be between"), "{e}");
        let e = load(None, &[("BERTH_ACTIONS_PARALLEL", "0")]).unwrap_err();
        assert!(e.to_string().contains("actions_parallel"), "{e}");
    }

    #[test]
    fn an_explicit_config_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let e = Settings::load(Some(&missing), dir.path(), |_| None).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    }

    #[test]
    fn every_knob_is_documented() {
        let doc = include_str!("../../../docs/configuration.md");
        for knob in KNOBS {
            for needle in [knob.key, knob.env, knob.default] {
                assert!(
                    doc.contains(&format!("`{needle}`")),
                    "docs/configuration.md must mention `{needle}` (knob {})",
                    knob.key
                );
            }
        }
    }
}
