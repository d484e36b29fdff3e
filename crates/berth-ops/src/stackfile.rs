//! Reading a stack file (or a single app manifest) from disk, shared by the
//! CLI's direct mode and the daemon, so both report the same problems.
//!
//! Every file is read through `berth_store::read_text_capped`: only a
//! regular file, at most `STACK_FILE_MAX_BYTES` / `APP_FILE_MAX_BYTES`,
//! capped while reading, so a path naming `/dev/zero` or a FIFO is refused
//! instead of filling memory or hanging.

use std::path::{Path, PathBuf};

use berth_core::manifest::Diagnostics;
use berth_core::model::Stack;
use berth_core::text::display_path;
use berth_store::{ReadFileError, STACK_FILE_MAX_BYTES, read_include, read_text_capped};

#[derive(Debug, thiserror::Error)]
pub enum StackFileError {
    /// The read error names the path itself (control characters escaped),
    /// and is the whole message: not a `source`, so it is not said twice.
    #[error("{error}")]
    Read { path: PathBuf, error: ReadFileError },
    /// Every problem of the file at once (file:line:column).
    #[error("{display} is not valid: {diagnostics}")]
    Invalid {
        display: String,
        diagnostics: Diagnostics,
    },
}

/// Load and validate a stack file or an app manifest. Includes are read
/// relative to the file.
pub fn load_stack_file(path: &Path) -> Result<Stack, StackFileError> {
    let text =
        read_text_capped(path, STACK_FILE_MAX_BYTES).map_err(|error| StackFileError::Read {
            path: path.to_path_buf(),
            error,
        })?;
    let display = display_path(path);
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let read_include = |p: &str| read_include(&base, p);
    berth_core::manifest::parse_manifest(&display, &text, &read_include).map_err(|diagnostics| {
        StackFileError::Invalid {
            display,
            diagnostics,
        }
    })
}

/// A stack file has a `stack` or `apps` table; an app manifest does not.
/// Decided by parsing the TOML, so every valid spelling of the header counts.
pub fn is_app_file(text: &str) -> bool {
    !berth_core::manifest::is_stack_text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_headers_in_every_toml_spelling_are_stack_files() {
        for text in [
            "[stack]\nname = \"x\"\n",
            "[ stack ]\nname = \"x\"\n",
            "[\"stack\"]\nname = \"x\"\n",
            "[stack] # the stack\nname = \"x\"\n",
            "stack.name = \"x\"\n",
            "stack = { name = \"x\" }\n",
            "[apps.a]\nimage = \"i\"\n",
            "apps = { a = { image = \"i\" } }\n",
        ] {
            assert!(!is_app_file(text), "{text:?}");
        }
        assert!(is_app_file("id = \"a\"\nimage = \"i\"\n"));
        // A string that merely mentions the header is still an app file.
        assert!(is_app_file(
            "id = \"a\"\nimage = \"i\"\ncommand = [\"[stack]\"]\n"
        ));
    }

    #[test]
    fn dev_zero_as_stack_file_or_include_is_refused() {
        let err = load_stack_file(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let stack = dir.path().join("berth.toml");
        std::fs::write(
            &stack,
            "[stack]\nname = \"s\"\n[apps.a]\nmanifest = \"/dev/zero\"\n",
        )
        .unwrap();
        let err = load_stack_file(&stack).unwrap_err().to_string();
        assert!(
            err.contains("apps.a.manifest: cannot read app manifest \"/dev/zero\": it is a character device, not a regular file"),
            "{err}"
        );
    }

    #[test]
    fn dotted_stack_keys_load_as_a_stack() {
        let dir = tempfile::tempdir().unwrap();
        let stack = dir.path().join("berth.toml");
        std::fs::write(
            &stack,
            "stack.name = \"s\"\napps.web.image = \"localhost/web:1\"\n",
        )
        .unwrap();
        let loaded = load_stack_file(&stack).unwrap();
        assert_eq!(loaded.name, "s");
        assert!(loaded.apps.contains_key("web"));
    }
}
