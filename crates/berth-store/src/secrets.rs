//! Stack secrets: files under the state directory, never in the database and
//! never logged.
//!
//! A stack secret lives at `<root>/secrets/<stack>/<name>` and is generated on
//! first need. An app that uses it gets a copy under
//! `<root>/secret-mounts/<stack>/<app>/<name>`, a directory berth bind-mounts
//! read-only at `/run/secrets`. Copies rather than a mount of the stack
//! directory, so an app sees only the secrets its manifest names.
//!
//! Nothing in this module puts a secret value into an error, a log line or a
//! `Debug` output: errors name files, never their content.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::TryRngCore;
use rand::rngs::OsRng;

use crate::error::{Result, StoreError};

/// Directory of stack secrets, under the state directory.
pub const SECRETS_DIR_NAME: &str = "secrets";
/// Directory of the apps' secret copies, under the state directory.
pub const SECRET_MOUNTS_DIR_NAME: &str = "secret-mounts";
/// Length of a generated secret, in characters of `[A-Za-z0-9]` (~190 bits).
pub const SECRET_LEN_CHARS: usize = 32;
/// Mode of every directory holding stack secrets.
pub const SECRET_DIR_MODE: u32 = 0o700;
/// Mode of a stack secret file.
pub const SECRET_FILE_MODE: u32 = 0o600;
/// Mode of an app's mount directory. 0700 rather than 0500 so berth can
/// update it in place without a chmod dance; the container sees it read-only
/// through the bind mount anyway.
pub const MOUNT_DIR_MODE: u32 = 0o700;
/// Mode of an app's copy of a secret.
pub const MOUNT_FILE_MODE: u32 = 0o400;
/// Longest stack, app or secret name accepted, in bytes.
pub const NAME_MAX_BYTES: usize = 128;
/// Largest secret file berth reads (a user may have put their own value in
/// place); anything bigger is reported as corrupt instead of read.
pub const SECRET_FILE_MAX_BYTES: u64 = 64 * 1024;
/// What `Redactor::redact` puts in place of a secret value.
pub const REDACTED: &str = "[redacted]";

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Temporary files start with this, which no valid name does, so they can
/// never be mistaken for a secret.
const TMP_PREFIX: &str = ".tmp-";

/// Access to the secrets of one state directory. Holds only the root path.
#[derive(Debug, Clone)]
pub struct Secrets {
    root: PathBuf,
}

impl Secrets {
    pub(crate) fn new(root: PathBuf) -> Secrets {
        Secrets { root }
    }

    fn stack_dir(&self, stack: &str) -> PathBuf {
        self.root.join(SECRETS_DIR_NAME).join(stack)
    }

    fn secret_path(&self, stack: &str, name: &str) -> PathBuf {
        self.stack_dir(stack).join(name)
    }

    /// Makes sure the stack secret exists, generating a random value if not.
    /// Returns true when it was generated now. Safe against a concurrent
    /// `ensure` from another process: exactly one value wins.
    pub fn ensure(&self, stack: &str, name: &str) -> Result<bool> {
        validate_name("stack", stack)?;
        validate_name("secret", name)?;
        let dir = self.stack_dir(stack);
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => return Ok(false),
            Ok(_) => {
                return Err(StoreError::corrupt(format!(
                    "secret {} is not a regular file",
                    path.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("reading secret", &path, e)),
        }
        create_dir(&self.root.join(SECRETS_DIR_NAME), SECRET_DIR_MODE)?;
        create_dir(&dir, SECRET_DIR_MODE)?;
        let value = generate_value().map_err(|e| StoreError::io("generating secret", &path, e))?;
        let tmp = write_temp(&dir, name, value.as_bytes(), SECRET_FILE_MODE)?;
        // A hard link never replaces an existing file, so if another process
        // generated the secret since we looked, its value stays.
        let created = match fs::hard_link(&tmp, &path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                remove_quietly(&tmp);
                return Err(StoreError::io("creating secret", &path, e));
            }
        };
        remove_quietly(&tmp);
        sync_dir(&dir)?;
        if created {
            tracing::info!(stack, secret = name, "generated secret");
        }
        Ok(created)
    }

    /// Writes the app's secret directory so that it holds exactly a copy of
    /// each named stack secret (each generated first if needed), mode 0400.
    /// Each file is replaced atomically (temporary file + rename), so a
    /// running container never reads a half-written secret. Files for names
    /// not listed are removed. Returns the directory to bind-mount.
    pub fn materialize(&self, stack: &str, app: &str, names: &[String]) -> Result<PathBuf> {
        validate_name("stack", stack)?;
        validate_name("app", app)?;
        let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        for name in &wanted {
            validate_name("secret", name)?;
        }
        for name in &wanted {
            self.ensure(stack, name)?;
        }
        let mounts = self.root.join(SECRET_MOUNTS_DIR_NAME);
        let stack_dir = mounts.join(stack);
        let dir = stack_dir.join(app);
        create_dir(&mounts, SECRET_DIR_MODE)?;
        create_dir(&stack_dir, SECRET_DIR_MODE)?;
        create_dir(&dir, MOUNT_DIR_MODE)?;

        for name in &wanted {
            let value = read_secret(&self.secret_path(stack, name))?;
            let target = dir.join(name);
            if copy_is_current(&target, &value) {
                continue;
            }
            let tmp = write_temp(&dir, name, &value, MOUNT_FILE_MODE)?;
            if let Err(e) = fs::rename(&tmp, &target) {
                remove_quietly(&tmp);
                return Err(StoreError::io("replacing secret copy", &target, e));
            }
        }

        let entries = fs::read_dir(&dir).map_err(|e| StoreError::io("listing", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("listing", &dir, e))?;
            let file_name = entry.file_name();
            if file_name.to_str().is_some_and(|n| wanted.contains(n)) {
                continue;
            }
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let removed = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("removing stale secret copy", &path, e)),
            }
        }
        sync_dir(&dir)?;
        Ok(dir)
    }

    /// The directory `materialize` writes for this app (whether or not it
    /// exists yet).
    pub fn app_dir(&self, stack: &str, app: &str) -> PathBuf {
        self.root.join(SECRET_MOUNTS_DIR_NAME).join(stack).join(app)
    }

    /// Removes the app's secret copies. Returns true when something was
    /// removed; removing what is already gone is not an error.
    pub fn remove_app(&self, stack: &str, app: &str) -> Result<bool> {
        validate_name("stack", stack)?;
        validate_name("app", app)?;
        let dir = self.app_dir(stack, app);
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io("reading", &dir, e)),
            Ok(_) => {}
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io("removing secret copies", &dir, e)),
        }
        // Tidy the stack's directory once its last app is gone; failing
        // (because it is not empty) is the normal case.
        if let Some(stack_dir) = dir.parent() {
            let _ = fs::remove_dir(stack_dir);
        }
        Ok(true)
    }

    /// Deletes a stack secret (apps keep their copies until the next
    /// `materialize` or `remove_app`). Returns true when it existed.
    pub fn remove_stack_secret(&self, stack: &str, name: &str) -> Result<bool> {
        validate_name("stack", stack)?;
        validate_name("secret", name)?;
        let path = self.secret_path(stack, name);
        match fs::remove_file(&path) {
            Ok(()) => {
                let _ = fs::remove_dir(self.stack_dir(stack));
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("removing secret", &path, e)),
        }
    }

    /// Names of the stack's secrets, sorted. Never their values.
    pub fn list_stack_secrets(&self, stack: &str) -> Result<Vec<String>> {
        validate_name("stack", stack)?;
        list_files(&self.stack_dir(stack))
    }

    /// Every secret value in the state directory (stack secrets and app
    /// copies, deduplicated), for redacting output and for leak tests.
    pub fn all_values(&self) -> Result<Vec<String>> {
        let mut values = BTreeSet::new();
        let secrets = self.root.join(SECRETS_DIR_NAME);
        for stack in list_dirs(&secrets)? {
            let dir = secrets.join(&stack);
            for name in list_files(&dir)? {
                values.insert(read_secret_string(&dir.join(name))?);
            }
        }
        let mounts = self.root.join(SECRET_MOUNTS_DIR_NAME);
        for stack in list_dirs(&mounts)? {
            for app in list_dirs(&mounts.join(&stack))? {
                let dir = mounts.join(&stack).join(app);
                for name in list_files(&dir)? {
                    values.insert(read_secret_string(&dir.join(name))?);
                }
            }
        }
        Ok(values.into_iter().collect())
    }
}

/// Replaces secret values in text (logs, error messages, engine output)
/// with `[redacted]`.
pub struct Redactor {
    /// Longest first, so a value that contains another is replaced whole.
    values: Vec<String>,
}

impl Redactor {
    /// Values are taken without trailing line breaks (a hand-written secret
    /// file often ends in one); empty values are ignored.
    pub fn new(values: Vec<String>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .map(|v| v.trim_end_matches(['\n', '\r']).to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Redactor { values }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
        out
    }

    /// Number of distinct values redacted.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("values", &format_args!("<{} redacted>", self.values.len()))
            .finish()
    }
}

/// A name must be usable as exactly one path component and look like what
/// manifests allow, so a hostile or mistaken name can never reach outside
/// its directory or hide as a temporary file.
fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX_BYTES
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            kind,
            name: name.to_owned(),
        })
    }
}

/// 32 characters of `[A-Za-z0-9]` straight from the operating system's
/// CSPRNG.
fn generate_value() -> io::Result<String> {
    let mut out = String::with_capacity(SECRET_LEN_CHARS);
    let mut buf = [0u8; 64];
    while out.len() < SECRET_LEN_CHARS {
        OsRng.try_fill_bytes(&mut buf).map_err(io::Error::other)?;
        for &b in &buf {
            // 248 = 4 * 62: rejecting bytes at or above it keeps every
            // character equally likely.
            if b < 248 && out.len() < SECRET_LEN_CHARS {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

fn create_dir(path: &Path, mode: u32) -> Result<()> {
    match DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if path.is_dir() {
                Ok(())
            } else {
                Err(StoreError::io("creating directory", path, e))
            }
        }
        Err(e) => Err(StoreError::io("creating directory", path, e)),
    }
}

/// Writes `contents` to a new temporary file in `dir`, created with `mode`
/// (so it is never readable by others, not even for an instant), synced to
/// disk. Returns its path.
fn write_temp(dir: &Path, name: &str, contents: &[u8], mode: u32) -> Result<PathBuf> {
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{name}-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            // The umask can only have removed bits; make the mode exact.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.write_all(contents)?;
            file.sync_all()
        });
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            remove_quietly(&tmp);
            Err(StoreError::io("writing temporary secret file", &tmp, e))
        }
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "removing temporary file");
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing directory", dir, e))
}

fn read_secret(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| StoreError::io("reading secret", path, e))?;
    let mut value = Vec::new();
    file.take(SECRET_FILE_MAX_BYTES + 1)
        .read_to_end(&mut value)
        .map_err(|e| StoreError::io("reading secret", path, e))?;
    if value.len() as u64 > SECRET_FILE_MAX_BYTES {
        return Err(StoreError::corrupt(format!(
            "secret {} is larger than {SECRET_FILE_MAX_BYTES} bytes",
            path.display()
        )));
    }
    Ok(value)
}

fn read_secret_string(path: &Path) -> Result<String> {
    String::from_utf8(read_secret(path)?)
        .map_err(|_| StoreError::corrupt(format!("secret {} is not valid utf-8", path.display())))
}

/// True when `target` already is a 0400 regular file holding `value`, so
/// `materialize` can leave it alone.
fn copy_is_current(target: &Path, value: &[u8]) -> bool {
    let Ok(meta) = fs::symlink_metadata(target) else {
        return false;
    };
    if !meta.is_file() || meta.permissions().mode() & 0o7777 != MOUNT_FILE_MODE {
        return false;
    }
    read_secret(target).is_ok_and(|current| current == value)
}

/// Regular files of `dir` that are not temporary files, sorted; empty when
/// `dir` does not exist.
fn list_files(dir: &Path) -> Result<Vec<String>> {
    list_entries(dir, |t| t.is_file())
}

fn list_dirs(dir: &Path) -> Result<Vec<String>> {
    list_entries(dir, |t| t.is_dir())
}

fn list_entries(dir: &Path, keep: impl Fn(&fs::FileType) -> bool) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("listing", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("listing", dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let file_type = entry
            .file_type()
            .map_err(|e| StoreError::io("reading", entry.path(), e))?;
        if keep(&file_type) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
