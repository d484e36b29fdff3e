//! Reading a stack file (or a single app manifest) from disk, shared by the
//! CLI's direct mode and the daemon, so both report the same problems.

use std::path::{Path, PathBuf};

use berth_core::manifest::Diagnostics;
use berth_core::model::Stack;

#[derive(Debug, thiserror::Error)]
pub enum StackFileError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
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
    let text = std::fs::read_to_string(path).map_err(|source| StackFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let display = path.display().to_string();
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let read_include = |p: &str| -> Result<(String, String), String> {
        let full = base.join(p);
        std::fs::read_to_string(&full)
            .map(|t| (full.display().to_string(), t))
            .map_err(|e| format!("cannot read {}: {e}", full.display()))
    };
    let parsed = if is_app_file(&text) {
        berth_core::manifest::parse_app_file(&display, &text)
    } else {
        berth_core::manifest::parse_stack(&display, &text, &read_include)
    };
    parsed.map_err(|diagnostics| StackFileError::Invalid {
        display,
        diagnostics,
    })
}

/// A stack file has a `[stack]` table; an app manifest does not.
pub fn is_app_file(text: &str) -> bool {
    !text.lines().any(|l| {
        let t = l.trim();
        t == "[stack]" || t.starts_with("[apps.") || t.starts_with("[stack.")
    })
}
