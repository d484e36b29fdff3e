//! Reading the files a user names (stack files, includes, app manifests)
//! without letting the name decide how much berth reads or whether it hangs.
//!
//! A path may name a FIFO (opening it for reading blocks until a writer
//! comes), a character device such as `/dev/zero` (it never ends), a
//! directory, or a file far larger than any manifest. [`read_text_capped`]
//! refuses everything but a regular file, looks at the type before opening
//! and again on the opened handle (the path may be swapped in between),
//! opens with `O_NONBLOCK` so that a FIFO slipped in by such a swap cannot
//! block the open, and enforces the size cap while reading, so a file that
//! grows after the check is still cut off at the cap.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use berth_core::text::display_path;

/// Largest stack file berth reads, in bytes. A stack of a few dozen apps is
/// tens of kilobytes; 1 MiB leaves ample room and still bounds memory.
pub const STACK_FILE_MAX_BYTES: u64 = 1024 * 1024;

/// Largest included file or app manifest berth reads, in bytes.
pub const APP_FILE_MAX_BYTES: u64 = 1024 * 1024;

/// Why a file could not be read as text.
#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    /// The path does not exist, is not accessible, or reading failed. The
    /// io error is part of the message, not a `source`, so a report that
    /// prints the chain does not say it twice.
    #[error("reading {}: {error}", display_path(path))]
    Io { path: PathBuf, error: io::Error },

    /// The path names something other than a regular file (after following
    /// symlinks): a directory, FIFO, socket or device.
    #[error("{} is {kind}, not a regular file", display_path(path))]
    NotRegularFile { path: PathBuf, kind: &'static str },

    /// The file holds more than the cap.
    #[error("{} is larger than {cap_bytes} bytes", display_path(path))]
    TooLarge { path: PathBuf, cap_bytes: u64 },

    /// The file is not valid UTF-8.
    #[error(
        "{} is not valid UTF-8 text (first bad byte at offset {offset})",
        display_path(path)
    )]
    NotUtf8 { path: PathBuf, offset: usize },
}

impl ReadFileError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::NotRegularFile { path, .. }
            | Self::TooLarge { path, .. }
            | Self::NotUtf8 { path, .. } => path,
        }
    }

    /// True when the file does not exist (callers word that case their own way).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { error, .. } if error.kind() == io::ErrorKind::NotFound)
    }
}

/// Reads the regular file at `path` (symlinks are followed: a link to a
/// regular file is read, a link to a device is refused) as UTF-8 text of at
/// most `cap_bytes` bytes.
pub fn read_text_capped(path: &Path, cap_bytes: u64) -> Result<String, ReadFileError> {
    let io_err = |error| ReadFileError::Io {
        path: path.to_path_buf(),
        error,
    };
    // Checked before opening: opening a FIFO for reading would block.
    let before = std::fs::metadata(path).map_err(io_err)?;
    check_regular(path, &before.file_type())?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err)?;
    // Checked again on the handle: the path may have been replaced between
    // the first look and the open.
    let after = file.metadata().map_err(io_err)?;
    check_regular(path, &after.file_type())?;
    read_capped(path, file, cap_bytes)
}

/// The `read_include` callback every caller of
/// `berth_core::manifest::parse_stack` passes: `written` (as the stack file
/// spells it) relative to the stack file's directory `base`, read as an app
/// file capped at [`APP_FILE_MAX_BYTES`]. Returns the shown name and text,
/// or the reason without the path (the diagnostic names it already).
pub fn read_include(base: &Path, written: &str) -> Result<(String, String), String> {
    let full = base.join(written);
    read_text_capped(&full, APP_FILE_MAX_BYTES)
        .map(|text| (display_path(&full), text))
        .map_err(|e| e.reason())
}

impl ReadFileError {
    /// What went wrong, without the path.
    pub fn reason(&self) -> String {
        match self {
            Self::Io { error, .. } => error.to_string(),
            Self::NotRegularFile { kind, .. } => format!("it is {kind}, not a regular file"),
            Self::TooLarge { cap_bytes, .. } => format!("it is larger than {cap_bytes} bytes"),
            Self::NotUtf8 { offset, .. } => {
                format!("it is not valid UTF-8 text (first bad byte at offset {offset})")
            }
        }
    }
}

fn read_capped(path: &Path, file: File, cap_bytes: u64) -> Result<String, ReadFileError> {
    let mut bytes = Vec::new();
    // One byte more than the cap tells "exactly at the cap" from "over it"
    // without ever holding more than cap + 1 bytes.
    file.take(cap_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|error| ReadFileError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > cap_bytes {
        return Err(ReadFileError::TooLarge {
            path: path.to_path_buf(),
            cap_bytes,
        });
    }
    String::from_utf8(bytes).map_err(|e| ReadFileError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

fn check_regular(path: &Path, file_type: &std::fs::FileType) -> Result<(), ReadFileError> {
    use std::os::unix::fs::FileTypeExt;
    let kind = if file_type.is_file() {
        return Ok(());
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a fifo"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "not a file"
    };
    Err(ReadFileError::NotRegularFile {
        path: path.to_path_buf(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn regular_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stack.toml");
        std::fs::write(&path, "[stack]\nname = \"x\"\n").unwrap();
        assert_eq!(
            read_text_capped(&path, 100).unwrap(),
            "[stack]\nname = \"x\"\n"
        );
    }

    #[test]
    fn file_exactly_at_the_cap_is_read_one_byte_over_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        std::fs::write(&path, "x".repeat(64)).unwrap();
        assert_eq!(read_text_capped(&path, 64).unwrap().len(), 64);
        let err = read_text_capped(&path, 63).unwrap_err();
        assert!(
            matches!(err, ReadFileError::TooLarge { cap_bytes: 63, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("larger than 63 bytes"), "{err}");
    }

    #[test]
    fn dev_zero_is_refused_without_reading() {
        let err = read_text_capped(Path::new("/dev/zero"), STACK_FILE_MAX_BYTES).unwrap_err();
        assert!(
            matches!(
                err,
                ReadFileError::NotRegularFile {
                    kind: "a character device",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "/dev/zero is a character device, not a regular file"
        );
    }

    #[test]
    fn directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_text_capped(dir.path(), 100).unwrap_err();
        assert!(
            matches!(
                err,
                ReadFileError::NotRegularFile {
                    kind: "a directory",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe.toml");
        let status = Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(status.success());
        // With no writer, opening this FIFO for reading would block forever;
        // the test finishing at all is half of what it proves.
        let err = read_text_capped(&path, 100).unwrap_err();
        assert!(
            matches!(err, ReadFileError::NotRegularFile { kind: "a fifo", .. }),
            "{err}"
        );
    }

    #[test]
    fn symlink_to_regular_file_is_allowed() {
        // Allowed on purpose: stacks are often symlinked into place.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.toml");
        std::fs::write(&target, "a = 1\n").unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read_text_capped(&link, 100).unwrap(), "a = 1\n");
    }

    #[test]
    fn symlink_to_dev_zero_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = read_text_capped(&link, 100).unwrap_err();
        assert!(matches!(err, ReadFileError::NotRegularFile { .. }), "{err}");
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = read_text_capped(Path::new("/nonexistent/berth.toml"), 100).unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[test]
    fn non_utf8_is_refused_with_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin.toml");
        std::fs::write(&path, b"ab\xffcd").unwrap();
        let err = read_text_capped(&path, 100).unwrap_err();
        assert!(
            matches!(err, ReadFileError::NotUtf8 { offset: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn control_characters_in_the_path_are_escaped() {
        let err = read_text_capped(Path::new("/nonexistent/a\0b\n.toml"), 100).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("reading /nonexistent/a\\0b\\n.toml: "),
            "{msg}"
        );
        assert!(!msg.contains('\0') && !msg.contains('\n'), "{msg}");
    }
}
