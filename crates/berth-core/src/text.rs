//! Showing user-supplied text in messages.
//!
//! File names, keys and values come from the user and may hold control
//! characters (a NUL, an escape sequence that repaints the terminal, a
//! newline that forges a second log line). Every message that prints such
//! text prints it through [`escape_control`] so it stays one readable line.

use std::borrow::Cow;
use std::path::Path;

/// `text` with every control character (Unicode general category Cc:
/// NUL, ESC, newline, DEL, C1 controls, ...) written as a Rust escape
/// (`\0`, `\n`, `\u{1b}`). Text without control characters is returned
/// borrowed, unchanged.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A path for a message: lossily decoded (a byte that is not UTF-8 shows as
/// U+FFFD) and with control characters escaped.
pub fn display_path(path: &Path) -> String {
    escape_control(&path.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(
            escape_control("stack.toml"),
            Cow::Borrowed("stack.toml")
        ));
        assert_eq!(escape_control("caf\u{e9}"), "caf\u{e9}");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_control("a\0b"), "a\\0b");
        assert_eq!(escape_control("x\ny\tz"), "x\\ny\\tz");
        assert_eq!(escape_control("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(escape_control("\u{7f}\u{85}"), "\\u{7f}\\u{85}");
    }

    #[test]
    fn paths_are_escaped() {
        assert_eq!(display_path(Path::new("/tmp/a\0b.toml")), "/tmp/a\\0b.toml");
    }
}
