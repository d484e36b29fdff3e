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
use berth_core::text::{display_path, escape_control};
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
/// Zero debounce is allowed: every event then causes its own early tick.
pub const EVENT_DEBOUNCE_MS_MIN: u64 = 0;
/// Longer than a minute and the "early" tick is no longer early.
pub const EVENT_DEBOUNCE_MS_MAX: u64 = 60_000;
/// A restart backoff below this would restart a crashing app in a spin.
pub const BACKOFF_INITIAL_MS_MIN: u64 = 100;
/// The first backoff is at most an hour (it doubles from there).
pub const BACKOFF_INITIAL_MS_MAX: u64 = 3_600_000;
/// The backoff ceiling is at least the smallest first backoff.
pub const BACKOFF_MAX_MS_MIN: u64 = BACKOFF_INITIAL_MS_MIN;
/// A crashed app is looked at again at least once a day.
pub const BACKOFF_MAX_MS_MAX: u64 = 86_400_000;
/// Running this long resets the restart counter: at least a second.
pub const STABLE_AFTER_MS_MIN: u64 = 1_000;
/// At most a week (beyond it the counter would never reset in practice).
pub const STABLE_AFTER_MS_MAX: u64 = 7 * 86_400_000;
/// At least one failure puts an app into quarantine.
pub const MAX_FAILURES_MIN: u32 = 1;
/// More than this many restarts inside a window is a crash loop anyway.
pub const MAX_FAILURES_MAX: u32 = 10_000;
/// Failures are counted over at least a second.
pub const FAILURE_WINDOW_MS_MIN: u64 = 1_000;
/// And over at most a week (the history kept per app is bounded).
pub const FAILURE_WINDOW_MS_MAX: u64 = 7 * 86_400_000;
/// Supervision actions executed at once.
pub const ACTIONS_PARALLEL_DEFAULT: usize = 4;
/// At least one action runs at a time.
pub const ACTIONS_PARALLEL_MIN: usize = 1;
/// Upper bound on `actions_parallel`.
pub const ACTIONS_PARALLEL_MAX: usize = 32;
/// How long a shutdown waits for in-flight actions and requests.
pub const SHUTDOWN_TIMEOUT_S_DEFAULT: u64 = 60;
/// A shutdown gets at least a second to finish work.
pub const SHUTDOWN_TIMEOUT_MS_MIN: u64 = 1_000;
/// Init systems kill a service that takes longer than this to stop anyway.
pub const SHUTDOWN_TIMEOUT_MS_MAX: u64 = 3_600_000;
/// Time limit of a read request (status, events, health).
pub const REQUEST_TIMEOUT_S_DEFAULT: u64 = 30;
/// A read request gets at least a second.
pub const REQUEST_TIMEOUT_MS_MIN: u64 = 1_000;
/// A read that takes over ten minutes is stuck, not slow.
pub const REQUEST_TIMEOUT_MS_MAX: u64 = 600_000;
/// Time limit of a mutating request (install, up, …) before the caller
/// gets an answer; the operation itself goes on in the daemon.
pub const OPERATION_TIMEOUT_S_DEFAULT: u64 = 1_800;
/// A mutating request gets at least a second before its caller is answered.
pub const OPERATION_TIMEOUT_MS_MIN: u64 = 1_000;
/// A caller waits at most a day (a pull of huge images on a slow link).
pub const OPERATION_TIMEOUT_MS_MAX: u64 = 86_400_000;
/// Longest text value read for a knob, in bytes (the longest valid value,
/// an IPv6 address with a port, is under 64).
pub const VALUE_BYTES_MAX: usize = 256;

/// The bounds of every duration knob, in milliseconds: `(key, min, max)`.
pub const DURATION_BOUNDS_MS: &[(&str, u64, u64)] = &[
    ("tick", TICK_MS_MIN, TICK_MS_MAX),
    (
        "event_debounce",
        EVENT_DEBOUNCE_MS_MIN,
        EVENT_DEBOUNCE_MS_MAX,
    ),
    (
        "backoff_initial",
        BACKOFF_INITIAL_MS_MIN,
        BACKOFF_INITIAL_MS_MAX,
    ),
    ("backoff_max", BACKOFF_MAX_MS_MIN, BACKOFF_MAX_MS_MAX),
    ("stable_after", STABLE_AFTER_MS_MIN, STABLE_AFTER_MS_MAX),
    (
        "failure_window",
        FAILURE_WINDOW_MS_MIN,
        FAILURE_WINDOW_MS_MAX,
    ),
    (
        "shutdown_timeout",
        SHUTDOWN_TIMEOUT_MS_MIN,
        SHUTDOWN_TIMEOUT_MS_MAX,
    ),
    (
        "request_timeout",
        REQUEST_TIMEOUT_MS_MIN,
        REQUEST_TIMEOUT_MS_MAX,
    ),
    (
        "operation_timeout",
        OPERATION_TIMEOUT_MS_MIN,
        OPERATION_TIMEOUT_MS_MAX,
    ),
];

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
    #[error("cannot read config file: {0}")]
    Read(#[from] berth_store::files::ReadFileError),
    #[error("config file {}: {detail}", display_path(.path))]
    Parse { path: PathBuf, detail: String },
    #[error("{}: {key} = {value:?}: {detail}", escape_control(.source_name))]
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
        let src = display_path(path);
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
        // The value is shown in the error: cut a long one short first.
        let shown = match value.char_indices().nth(VALUE_BYTES_MAX) {
            Some((i, _)) => format!("{}…", &value[..i]),
            None => value.to_string(),
        };
        let err = |detail: String| ConfigError::Value {
            source_name: source_name.to_string(),
            key: key.to_string(),
            value: shown.clone(),
            detail,
        };
        if value.len() > VALUE_BYTES_MAX {
            return Err(err(format!("longer than {VALUE_BYTES_MAX} bytes")));
        }
        if value.chars().any(char::is_control) {
            return Err(err("control characters are not allowed".into()));
        }
        let duration = || {
            let d = parse_duration(value.trim()).map_err(err)?;
            let (_, min_ms, max_ms) = DURATION_BOUNDS_MS
                .iter()
                .find(|(k, _, _)| *k == key)
                .copied()
                .unwrap_or((key, 0, u64::MAX));
            let ms = d.as_millis();
            if ms < u128::from(min_ms) || ms > u128::from(max_ms) {
                let show = |ms: u64| format_duration(Duration::from_millis(ms));
                return Err(err(format!(
                    "must be between {} and {}",
                    show(min_ms),
                    show(max_ms)
                )));
            }
            Ok(d)
        };
        let whole = |min: u64, max: u64| -> Result<u64, ConfigError> {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| err("expected a whole number".into()))?;
            if !(min..=max).contains(&n) {
                return Err(err(format!("must be between {min} and {max}")));
            }
            Ok(n)
        };
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
                let n = whole(MAX_FAILURES_MIN.into(), MAX_FAILURES_MAX.into())?;
                // In range, so it fits.
                sup.max_failures = u32::try_from(n).unwrap_or(MAX_FAILURES_MAX);
            }
            "actions_parallel" => {
                let n = whole(ACTIONS_PARALLEL_MIN as u64, ACTIONS_PARALLEL_MAX as u64)?;
                self.actions_parallel = usize::try_from(n).unwrap_or(ACTIONS_PARALLEL_MAX);
            }
            "listen" => self.listen = crate::http::parse_listen(value).map_err(err)?,
            _ => return Err(err("no such setting".into())),
        }
        Ok(())
    }

    /// Bounds and relations between knobs (also for settings built in
    /// code, not through [`Settings::set`]).
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Inconsistent(m));
        let sup = &self.supervision;
        for (key, d) in [
            ("tick", self.tick),
            ("event_debounce", self.event_debounce),
            ("backoff_initial", sup.backoff_initial),
            ("backoff_max", sup.backoff_max),
            ("stable_after", sup.stable_after),
            ("failure_window", sup.failure_window),
            ("shutdown_timeout", self.shutdown_timeout),
            ("request_timeout", self.request_timeout),
            ("operation_timeout", self.operation_timeout),
        ] {
            let Some((_, min_ms, max_ms)) = DURATION_BOUNDS_MS.iter().find(|(k, _, _)| *k == key)
            else {
                continue;
            };
            let ms = d.as_millis();
            if ms < u128::from(*min_ms) || ms > u128::from(*max_ms) {
                return bad(format!(
                    "{key} must be between {} and {}, not {}",
                    format_duration(Duration::from_millis(*min_ms)),
                    format_duration(Duration::from_millis(*max_ms)),
                    format_duration(d)
                ));
            }
        }
        if sup.backoff_initial > sup.backoff_max {
            return bad(format!(
                "backoff_initial ({}) is above backoff_max ({})",
                format_duration(sup.backoff_initial),
                format_duration(sup.backoff_max)
            ));
        }
        if !(MAX_FAILURES_MIN..=MAX_FAILURES_MAX).contains(&sup.max_failures) {
            return bad(format!(
                "max_failures must be between {MAX_FAILURES_MIN} and {MAX_FAILURES_MAX}, not {}",
                sup.max_failures
            ));
        }
        if !(ACTIONS_PARALLEL_MIN..=ACTIONS_PARALLEL_MAX).contains(&self.actions_parallel) {
            return bad(format!(
                "actions_parallel must be between {ACTIONS_PARALLEL_MIN} and {ACTIONS_PARALLEL_MAX}, not {}",
                self.actions_parallel
            ));
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    // A regular file only (never a FIFO or a device), cut off at the cap
    // while reading.
    let text = berth_store::files::read_text_capped(path, CONFIG_FILE_BYTES_MAX)?;
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
        assert!(
            e.to_string()
                .starts_with("BERTH_TICK: tick = \"1ms\": must be between 100ms and 1h"),
            "{e}"
        );
        let e = load(None, &[("BERTH_ACTIONS_PARALLEL", "0")]).unwrap_err();
        assert!(e.to_string().contains("actions_parallel"), "{e}");
    }

    #[test]
    fn an_explicit_config_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let e = Settings::load(Some(&missing), dir.path(), |_| None).unwrap_err();
        assert!(matches!(e, ConfigError::Read(_)), "{e}");
    }

    fn env_of(key: &str) -> &'static str {
        KNOBS.iter().find(|k| k.key == key).unwrap().env
    }

    #[test]
    fn every_duration_knob_is_bounded_and_the_error_names_the_variable_and_the_bound() {
        for (key, min_ms, max_ms) in DURATION_BOUNDS_MS {
            let var = env_of(key);
            let over = format!("{}ms", max_ms + 1);
            let e = load(None, &[(var, &over)]).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{var}: {key} = ")) && e.contains("must be between"),
                "{key} above its maximum: {e}"
            );
            assert!(
                e.contains(&format_duration(Duration::from_millis(*max_ms))),
                "{e}"
            );
            if *min_ms > 0 {
                let under = format!("{}ms", min_ms - 1);
                let e = load(None, &[(var, &under)]).unwrap_err().to_string();
                assert!(
                    e.contains("must be between"),
                    "{key} below its minimum: {e}"
                );
            }
            // The file names the key the same way.
            let e = load(Some(&format!("{key} = \"{over}\"\n")), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("config.toml") && e.contains(key), "{e}");
        }
    }

    #[test]
    fn a_duration_too_large_for_the_clock_is_refused_not_a_panic() {
        for huge in [
            "18446744073709551615s",
            "99999999999999999999d",
            "584942417y",
        ] {
            let e = load(None, &[("BERTH_SHUTDOWN_TIMEOUT", huge)]).unwrap_err();
            assert!(e.to_string().contains("BERTH_SHUTDOWN_TIMEOUT"), "{e}");
        }
    }

    #[test]
    fn whole_number_knobs_are_bounded() {
        for (var, v) in [
            ("BERTH_MAX_FAILURES", "0"),
            ("BERTH_MAX_FAILURES", "10001"),
            ("BERTH_MAX_FAILURES", "99999999999999999999999"),
            ("BERTH_ACTIONS_PARALLEL", "33"),
            ("BERTH_ACTIONS_PARALLEL", "-1"),
        ] {
            let e = load(None, &[(var, v)]).unwrap_err().to_string();
            assert!(e.starts_with(var), "{var}={v}: {e}");
        }
        let e = load(Some("max_failures = 20000\n"), &[]).unwrap_err();
        assert!(e.to_string().contains("between 1 and 10000"), "{e}");
        // Settings built in code are checked the same way.
        let s = Settings {
            actions_parallel: 0,
            ..Settings::default()
        };
        assert!(s.check().is_err());
        let mut s = Settings::default();
        s.supervision.backoff_max = Duration::from_secs(u64::MAX);
        assert!(s.check().unwrap_err().to_string().contains("backoff_max"));
    }

    #[test]
    fn control_characters_in_values_are_refused_and_shown_escaped() {
        let e = load(None, &[("BERTH_LISTEN", "127.0.0.1:7780\n")]).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("control characters"), "{m}");
        assert!(!m.contains('\n'), "the message stays one line: {m:?}");
        let e = load(Some("tick = \"1s\\u001b[2J\"\n"), &[]).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("control characters") && !m.contains('\u{1b}'),
            "{m:?}"
        );
        // Overlong values are cut short in the message.
        let long = "9".repeat(100_000);
        let m = load(None, &[("BERTH_TICK", &long)])
            .unwrap_err()
            .to_string();
        assert!(m.len() < 1_000 && m.contains("longer than"), "{}", m.len());
    }

    #[test]
    fn the_config_file_must_be_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        // A device that never ends, and a directory: refused, not read.
        for p in [Path::new("/dev/zero"), dir.path()] {
            let e = Settings::load(Some(p), dir.path(), |_| None).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        let big = dir.path().join("big.toml");
        std::fs::write(
            &big,
            format!("# {}\n", "x".repeat(CONFIG_FILE_BYTES_MAX as usize)),
        )
        .unwrap();
        let e = Settings::load(Some(&big), dir.path(), |_| None).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[test]
    fn config_paths_are_printed_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a\u{1b}[2Jb.toml");
        let e = Settings::load(Some(&odd), dir.path(), |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a\\u{1b}[2Jb.toml") && !e.contains('\u{1b}'),
            "{e:?}"
        );
        std::fs::write(&odd, "tick = \"2ms\"\n").unwrap();
        let e = Settings::load(Some(&odd), dir.path(), |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\\u{1b}") && !e.contains('\u{1b}'), "{e:?}");
    }

    #[test]
    fn every_bound_is_the_documented_one() {
        let doc = include_str!("../../../docs/configuration.md");
        let row = |key: &str| {
            doc.lines()
                .find(|l| l.starts_with(&format!("| `{key}` |")))
                .unwrap_or_else(|| panic!("no row for {key}"))
        };
        let show = |ms: u64| format_duration(Duration::from_millis(ms));
        for (key, min_ms, max_ms) in DURATION_BOUNDS_MS {
            let range = format!("| {} to {} |", show(*min_ms), show(*max_ms));
            assert!(row(key).contains(&range), "{key}: {range} in {}", row(key));
        }
        let n = format!("| {MAX_FAILURES_MIN} to {MAX_FAILURES_MAX} |");
        assert!(row("max_failures").contains(&n));
        let n = format!("| {ACTIONS_PARALLEL_MIN} to {ACTIONS_PARALLEL_MAX} |");
        assert!(row("actions_parallel").contains(&n));
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
