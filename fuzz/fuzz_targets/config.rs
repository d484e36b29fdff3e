//! The daemon config on arbitrary text: the TOML file, then `BERTH_*`
//! variables. The input is the file's text, optionally followed by a line
//! `%%env` and `NAME=value` lines served as the environment. The file goes
//! through `Settings::load`, as `berth daemon --config FILE` reads it.
//!
//! Errors are fine; a panic is a bug, and so is a setting that loads but
//! does not load again to the same value once written back as text (what
//! the daemon accepts, an operator copying it into a file must get back).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use berth_core::duration::format_duration;
use berth_daemon::config::{CONFIG_FILE_BYTES_MAX, Settings};
use libfuzzer_sys::fuzz_target;

const ENV_SEPARATOR: &str = "\n%%env\n";

/// One directory per process, on tmpfs when there is one: the config is
/// read from a file, and the fuzzer writes one per input.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = ["/dev/shm", "/tmp"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let d = base.join(format!("berth-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("a scratch directory");
        d
    })
}

fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, String> {
    let path = dir().join("config.toml");
    std::fs::write(&path, text).expect("the scratch file is writable");
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    Settings::load(Some(&path), dir(), lookup).map_err(|e| e.to_string())
}

/// The settings written back as a config file, every knob explicit.
fn render(s: &Settings) -> String {
    let d = |d| format!("{:?}", format_duration(d));
    let sup = &s.supervision;
    let listen = s.listen.map_or("off".to_string(), |a| a.to_string());
    format!(
        "tick = {}\nevent_debounce = {}\nbackoff_initial = {}\nbackoff_max = {}\n\
         stable_after = {}\nmax_failures = {}\nfailure_window = {}\nactions_parallel = {}\n\
         shutdown_timeout = {}\nrequest_timeout = {}\noperation_timeout = {}\nlisten = {:?}\n",
        d(s.tick),
        d(s.event_debounce),
        d(sup.backoff_initial),
        d(sup.backoff_max),
        d(sup.stable_after),
        sup.max_failures,
        d(sup.failure_window),
        s.actions_parallel,
        d(s.shutdown_timeout),
        d(s.request_timeout),
        d(s.operation_timeout),
        listen,
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (text, env_text) = input.split_once(ENV_SEPARATOR).unwrap_or((input, ""));
    let env: Vec<(&str, &str)> = env_text.lines().filter_map(|l| l.split_once('=')).collect();
    let loaded = load(text, &env);
    if text.len() as u64 > CONFIG_FILE_BYTES_MAX {
        assert!(loaded.is_err(), "a file above the size cap was read");
    }
    let Ok(settings) = loaded else {
        return;
    };
    let again = load(&render(&settings), &[]).unwrap_or_else(|e| {
        panic!(
            "accepted settings do not load back: {e}\n{}",
            render(&settings)
        )
    });
    assert_eq!(settings, again, "settings changed through their text");
});
