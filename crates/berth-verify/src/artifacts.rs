//! Writing stage artifacts (tool output, logs, inventories) under a run's
//! report directory. Every text passes through the caller's redactor
//! before it touches the disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_core::pipeline::ArtifactMeta;

/// Largest artifact written, in bytes (after redaction); longer texts are
/// cut and marked.
pub const ARTIFACT_BYTES_MAX: usize = 1024 * 1024;
/// The folder under the report directory holding artifacts.
pub const ARTIFACTS_DIR: &str = "artifacts";

/// Removes secret values from a text before it is written anywhere.
pub type Redactor = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A redactor that changes nothing (for hosts with no secrets in play).
pub fn no_redaction() -> Redactor {
    Arc::new(|text: &str| text.to_string())
}

/// A redactor replacing every occurrence of each non-empty `secret` with
/// `[redacted]`. Longer secrets are replaced first, so a secret containing
/// another is not half-revealed.
pub fn redact_values(secrets: Vec<String>) -> Redactor {
    let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    Arc::new(move |text: &str| {
        let mut out = text.to_string();
        for secret in &secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "[redacted]");
            }
        }
        out
    })
}

/// Writes artifacts below `<root>/artifacts/<stage>/`.
#[derive(Clone)]
pub struct ArtifactSink {
    root: PathBuf,
    redact: Redactor,
}

impl std::fmt::Debug for ArtifactSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactSink")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl ArtifactSink {
    /// `root` is the run's report directory; artifact paths are relative
    /// to it.
    pub fn new(root: impl Into<PathBuf>, redact: Redactor) -> ArtifactSink {
        ArtifactSink {
            root: root.into(),
            redact,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Apply the redactor.
    pub fn redact(&self, text: &str) -> String {
        (self.redact)(text)
    }

    /// Redact `content`, bound it, and write it as
    /// `artifacts/<stage>/<attempt>-<name>`.
    pub fn write_text(
        &self,
        stage: &str,
        attempt: u32,
        name: &str,
        media_type: &str,
        content: &str,
    ) -> std::io::Result<ArtifactMeta> {
        let redacted = self.redact(content);
        let text = bound_text(&redacted, ARTIFACT_BYTES_MAX);
        let rel = format!(
            "{ARTIFACTS_DIR}/{}/{attempt}-{}",
            safe_name(stage),
            safe_name(name)
        );
        let path = self.root.join(&rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
        }
        std::fs::write(&path, text.as_bytes()).map_err(|e| with_path(e, &path))?;
        Ok(ArtifactMeta {
            name: name.to_string(),
            path: rel,
            bytes: text.len() as u64,
            media_type: media_type.to_string(),
        })
    }

    /// Up to `max` bytes of an artifact written earlier, for inline display.
    pub fn excerpt(&self, meta: &ArtifactMeta, max: usize) -> Option<String> {
        read_excerpt(&self.root.join(&meta.path), max)
    }
}

/// Up to `max` bytes of the file at `path` (cut at a char boundary and
/// marked when longer); `None` when unreadable.
pub fn read_excerpt(path: &Path, max: usize) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::new();
    file.take(max as u64).read_to_end(&mut bytes).ok()?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if total > bytes.len() as u64 {
        // A lossy cut may have split a char: the replacement char is fine.
        text.push_str(&format!(
            "\n… ({} more bytes in the file)",
            total - bytes.len() as u64
        ));
    }
    Some(text)
}

/// `text` cut to at most `max` bytes at a char boundary, with a marker.
pub(crate) fn bound_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    const MARK: &str = "\n… (cut)";
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

/// A file-name-safe version of `name`: ASCII letters, digits, `.`, `_` and
/// `-` are kept, anything else becomes `_`; never empty, never `.`/`..`.
pub(crate) fn safe_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.chars().all(|c| c == '.') {
        out = format!("_{out}");
    }
    out
}

fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_are_redacted_before_they_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ArtifactSink::new(
            dir.path(),
            redact_values(vec!["hunter2".into(), "".into(), "hunter2-long".into()]),
        );
        let meta = sink
            .write_text(
                "Engine",
                1,
                "logs/app.txt",
                "text/plain",
                "pw=hunter2 and hunter2-long",
            )
            .unwrap();
        assert_eq!(meta.path, "artifacts/Engine/1-logs_app.txt");
        let written = std::fs::read_to_string(dir.path().join(&meta.path)).unwrap();
        assert_eq!(written, "pw=[redacted] and [redacted]");
        assert_eq!(meta.bytes, written.len() as u64);
        assert_eq!(
            sink.excerpt(&meta, 6).unwrap(),
            "pw=[re\n… (22 more bytes in the file)"
        );
    }

    #[test]
    fn names_cannot_escape_the_artifact_folder() {
        assert_eq!(safe_name("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(safe_name(".."), "_..");
        assert_eq!(safe_name(""), "_");
        assert_eq!(safe_name("smart-vda.txt"), "smart-vda.txt");
    }

    #[test]
    fn long_texts_are_cut_at_a_char_boundary() {
        let cut = bound_text(&"é".repeat(100), 51);
        assert!(cut.len() <= 51);
        assert!(cut.ends_with("(cut)"));
    }
}
