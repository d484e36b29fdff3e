//! The manifest loader on arbitrary text: a stack file (every include
//! missing) and a standalone app file. Errors are fine; a panic, a
//! diagnostic pointing outside the text, or a parsed stack that breaks the
//! invariants in `common` is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

const FILE: &str = "berth.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let missing =
        |path: &str| -> Result<(String, String), String> { Err(format!("{path}: no such file")) };
    match berth_core::manifest::parse_stack(FILE, text, &missing) {
        Ok(stack) => common::check_stack(&stack),
        Err(d) => common::check_diagnostics(&d, &[(FILE, text)]),
    }
    match berth_core::manifest::parse_app_file(FILE, text) {
        Ok(stack) => {
            assert_eq!(stack.apps.len(), 1, "an app file is one app");
            common::check_stack(&stack);
        }
        Err(d) => common::check_diagnostics(&d, &[(FILE, text)]),
    }
});
