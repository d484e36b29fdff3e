//! The command line itself, without an engine.

use std::process::{Command, Stdio};

/// A reader that went away (`berth validate … | head -0`) ends the command
/// quietly: no panic, no error message, exit 0.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader); // Every write now fails with EPIPE.
    let stack = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/demo/berth.toml"
    );
    for args in [vec!["validate", stack], vec!["validate", "--json", stack]] {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(&args)
            .stdout(writer.try_clone().expect("clone pipe"))
            .stderr(Stdio::piped())
            .output()
            .expect("run berth");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.trim().is_empty(), "{args:?}: {err}");
    }
}
