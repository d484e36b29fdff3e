//! A stack file with included app files (`manifest = "a.toml"`): the input
//! is the stack file and up to `INCLUDES_MAX` app files, separated by lines
//! of `%%`. The callback serves `a.toml`, `b.toml`, ... and refuses every
//! other path, as a missing file would be.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

const FILE: &str = "berth.toml";
const SEPARATOR: &str = "\n%%\n";
const INCLUDES_MAX: usize = 4;
const NAMES: [&str; INCLUDES_MAX] = ["a.toml", "b.toml", "c.toml", "d.toml"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(INCLUDES_MAX + 1, SEPARATOR);
    let main = parts.next().unwrap_or("");
    let includes: Vec<(&str, &str)> = NAMES.iter().copied().zip(parts).collect();
    let read = |path: &str| -> Result<(String, String), String> {
        includes
            .iter()
            .find(|(name, _)| *name == path)
            .map(|(name, body)| (name.to_string(), body.to_string()))
            .ok_or_else(|| format!("{path}: no such file"))
    };
    let mut files = vec![(FILE, main)];
    files.extend(includes.iter().copied());
    match berth_core::manifest::parse_stack(FILE, main, &read) {
        Ok(stack) => common::check_stack(&stack),
        Err(d) => common::check_diagnostics(&d, &files),
    }
});
