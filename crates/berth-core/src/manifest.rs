//! The manifest loader: TOML text in, a validated `model::Stack` out, or
//! every problem at once, each with its file, line, column and key.
//!
//! # Format
//!
//! A stack file has `[stack]` (`name` required; `network` defaults to the
//! name; `max_parallel` 1..=32; `start_timeout` a duration) and `[apps.<id>]`
//! tables. An app has `image` (required), `entrypoint`, `command`, `env`,
//! `ports` (`[HOST_IP:]HOST:CONTAINER[/tcp|udp]`, IPv6 in brackets),
//! `volumes` (`name = "/abs/path"`), `depends_on` (`id = "started" |
//! "healthy"`), `tier`, `stop_grace`, `restart` (`always` | `on-failure` |
//! `no`), `secrets`, `labels`, `memory` (bytes, or `"512m"`), `cap_add`,
//! `user`, `web_ui = { port, path }` (a published host port), `health` (one
//! of `http = { port, path }`, `tcp = { port }`, `command = [...]`, plus
//! `interval`, `timeout`, `retries`, `start_period`, and an optional
//! `progress` table: one source of a value that must advance — `probe =
//! "height"`, `http = { port, path, pointer }` or `command = [...]` —, the
//! required `within` window, longer than `interval`, and a `label`),
//! `probe` (how berth reads a node's chain state: `kind` = `bitcoind` | `monerod` | `http` |
//! `tcp`, `port`, bitcoind's `user` and `password_secret`, http's `path`,
//! `interval`, `timeout`, `down_after`, `recovery_after`), `gate` (node
//! lists `wait_for`, `wait_for_optional`, `reject_when_down`,
//! `reject_when_down_optional`) and `companions.<key>` (an app without
//! `companions`, `depends_on`, `tier` or `gate`, whose id is
//! `<parent>-<key>` and which depends on its parent with `started`). Instead
//! of inline keys an app may be `manifest = "path"` alone: an app file with
//! the same keys at top level plus an optional `id` that must equal the
//! stack key. `parse_app_file` reads such a file standalone (`id` required)
//! into a one-app stack named `berth`.
//!
//! # How it works
//!
//! The text is parsed once into toml's span-preserving document
//! (`DeTable`), and the loader walks the keys it knows by hand instead of
//! deriving serde types: serde stops at the first error, and an operator
//! fixing a manifest wants the whole list. Each value is checked where it
//! is read (so the message lands on its line); rules that need the whole
//! stack run afterwards in `validate::validate_stack`.
//!
//! Diagnostic keys are logical dotted paths: `apps.lnd.health.interval`
//! even when `lnd` lives in an included file (the diagnostic then names
//! that file), `apps.bitcoind.companions.ui.image` for a companion, and
//! `apps.a.ports[1]` for an array item. In a standalone app file the paths
//! have no `apps.<id>.` prefix. Diagnostics are sorted by file (the stack
//! file, then included files as read), line and column.
//!
//! This module does no IO: included files arrive through the caller's
//! `read_include` callback.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::duration::{format_duration, parse_duration};
use crate::model::{
    App, DOWN_AFTER_S_DEFAULT, DependsCondition, GateSpec, HealthCheck, HealthKind,
    MAX_PARALLEL_MAX, PROBE_INTERVAL_S_DEFAULT, PROBE_TIMEOUT_S_DEFAULT, PROGRESS_LABEL_CHAIN,
    PROGRESS_LABEL_DEFAULT, ProbeKind, ProbeSpec, ProgressCheck, ProgressSource,
    RECOVERY_AFTER_S_DEFAULT, RestartPolicy, STOP_GRACE_S_DEFAULT, Stack, StackSettings,
    UpdatePolicy, VolumeClass, VolumeMount, WebUi,
};
use crate::model::{HEALTH_INTERVAL_S_DEFAULT, HEALTH_RETRIES_DEFAULT, HEALTH_TIMEOUT_S_DEFAULT};
use crate::validate::{self, Location, SourceMap, join_path};

/// Name of the one-app stack a standalone app file becomes.
pub const STANDALONE_STACK_NAME: &str = "berth";
/// Highest `retries` of a health check.
pub const HEALTH_RETRIES_MAX: u32 = 100;

// The bounds of every duration in a manifest, checked at load (see
// docs/manifest.md). Each maximum keeps the sums and products the shell
// makes of these values (timeouts of engine calls, deadlines) far from
// overflow, and each minimum keeps a loop from spinning.

/// Longest `stop_grace`: the engine waits this long before it kills.
pub const STOP_GRACE_S_MAX: u64 = 3600;
/// Shortest and longest `stack.start_timeout`.
pub const START_TIMEOUT_MS_MIN: u64 = 1000;
pub const START_TIMEOUT_S_MAX: u64 = 24 * 3600;
/// Longest `stack.settle` (and never longer than `start_timeout`).
pub const SETTLE_S_MAX: u64 = 600;
/// Shortest and longest health-check `interval`.
pub const HEALTH_INTERVAL_MS_MIN: u64 = 100;
pub const HEALTH_INTERVAL_S_MAX: u64 = 3600;
/// Shortest and longest health-check `timeout`.
pub const HEALTH_TIMEOUT_MS_MIN: u64 = 100;
pub const HEALTH_TIMEOUT_S_MAX: u64 = 600;
/// Longest health-check `start_period`.
pub const HEALTH_START_PERIOD_S_MAX: u64 = 24 * 3600;
/// Longest progress `within` (the shortest is just over the interval).
pub const PROGRESS_WITHIN_S_MAX: u64 = 7 * 24 * 3600;
/// Shortest and longest probe `interval`.
pub const PROBE_INTERVAL_MS_MIN: u64 = 100;
pub const PROBE_INTERVAL_S_MAX: u64 = 3600;
/// Shortest and longest probe `timeout`.
pub const PROBE_TIMEOUT_MS_MIN: u64 = 100;
pub const PROBE_TIMEOUT_S_MAX: u64 = 600;
/// Shortest and longest probe `down_after` and `recovery_after`.
pub const PROBE_AFTER_MS_MIN: u64 = 1;
pub const PROBE_AFTER_S_MAX: u64 = 24 * 3600;

/// Shortest and longest `update_window`.
pub const UPDATE_WINDOW_MS_MIN: u64 = 1000;
pub const UPDATE_WINDOW_S_MAX: u64 = 24 * 3600;
/// Longest `min_healthy` (and never longer than `update_window`).
pub const MIN_HEALTHY_S_MAX: u64 = 3600;
/// Highest `data_version`.
pub const DATA_VERSION_MAX: u32 = 1_000_000;

/// Bounds of one duration key: `(min, max)`.
type Bounds = (Duration, Duration);

const fn bounds_ms_s(min_ms: u64, max_s: u64) -> Bounds {
    (Duration::from_millis(min_ms), Duration::from_secs(max_s))
}

const STACK_FILE_KEYS: &[&str] = &["stack", "apps"];
const STACK_KEYS: &[&str] = &["name", "network", "max_parallel", "start_timeout", "settle"];
/// Keys of an app, in the order the manifest reference lists them.
const APP_KEYS: &[&str] = &[
    "image",
    "entrypoint",
    "command",
    "env",
    "ports",
    "volumes",
    "depends_on",
    "tier",
    "stop_grace",
    "restart",
    "secrets",
    "labels",
    "memory",
    "cap_add",
    "user",
    "web_ui",
    "health",
    "probe",
    "gate",
    "companions",
    "update_window",
    "min_healthy",
    "snapshot_before_update",
    "data_version",
];
/// Keys of a volume's long form (`data = { path = "/data", class = ... }`).
const VOLUME_KEYS: &[&str] = &["path", "class", "snapshot_before_update"];
const VOLUME_CLASSES: &[&str] = &["precious", "regenerable", "cache"];
/// App keys a companion may not have: it has no dependencies, tier or gate
/// of its own (it starts right after its parent) and companions do not nest.
const COMPANION_FORBIDDEN: &[&str] = &["companions", "depends_on", "tier", "gate"];
const HEALTH_KEYS: &[&str] = &[
    "http",
    "tcp",
    "command",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "progress",
];
/// Keys of a health check's `progress` table: one source, the window, a label.
const PROGRESS_KEYS: &[&str] = &["probe", "http", "command", "within", "label"];
/// The sources of a progress value, in the order the reference lists them.
const PROGRESS_SOURCES: &[&str] = &["probe", "http", "command"];
const PROGRESS_HTTP_KEYS: &[&str] = &["port", "path", "pointer"];
/// The one value `probe` takes in a progress check.
pub const PROGRESS_PROBE_HEIGHT: &str = "height";
const HTTP_KEYS: &[&str] = &["port", "path"];
const TCP_KEYS: &[&str] = &["port"];
const WEB_UI_KEYS: &[&str] = &["port", "path"];
const PROBE_KEYS: &[&str] = &[
    "kind",
    "port",
    "user",
    "password_secret",
    "path",
    "interval",
    "timeout",
    "down_after",
    "recovery_after",
];
const PROBE_KINDS: &[&str] = &["bitcoind", "monerod", "http", "tcp"];
/// Keys of a probe that only one kind of probe has.
const PROBE_KIND_KEYS: &[(&str, &str)] = &[
    ("user", "bitcoind"),
    ("password_secret", "bitcoind"),
    ("path", "http"),
];
/// The gate's node lists, in the order the manifest reference lists them:
/// required then optional, for the sync gate then for failover.
const GATE_KEYS: &[&str] = &[
    "wait_for",
    "wait_for_optional",
    "reject_when_down",
    "reject_when_down_optional",
];

/// One problem in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    /// Dotted key path, e.g. `apps.lnd.health.interval`; empty when the
    /// problem is not about one key (a TOML syntax error).
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `file:line:column: key: message`. Every part comes from user input
    /// (a file name, a key, a value quoted in the message), so control
    /// characters are escaped here once more: a diagnostic is always one
    /// line that cannot repaint the terminal or forge a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::text::escape_control;
        f.write_str(&escape_control(&self.file))?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", escape_control(&self.key))?;
        }
        f.write_str(&escape_control(&self.message))
    }
}

/// Every problem found in a manifest, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Parse and fully validate a stack file.
///
/// `read_include(path_as_written)` supplies an app file named by
/// `manifest = "..."` as `(display_name, text)`; the caller resolves the
/// path relative to the stack file and does the IO. Its error message is
/// reported on the `manifest` key.
// The callback type is spelled out so the signature documents itself.
#[allow(clippy::type_complexity)]
pub fn parse_stack(
    file: &str,
    text: &str,
    read_include: &dyn Fn(&str) -> Result<(String, String), String>,
) -> Result<Stack, Diagnostics> {
    let mut out = Out::new(file);
    let src = Src::new(file, text);
    let Some(doc) = parse_document(&src, &mut out) else {
        return Err(out.finish());
    };
    let mut walk = Walk {
        src: &src,
        out: &mut out,
    };
    let header = walk.stack_header(doc.get_ref());
    let mut apps = Apps::default();
    walk.apps(doc.get_ref(), read_include, &mut apps);
    let stack = assemble(header, apps, &mut out);
    finish(stack, out)
}

/// Parse a standalone app file (the app keys at top level plus a required
/// `id`) into a one-app stack named `berth` with default settings.
pub fn parse_app_file(file: &str, text: &str) -> Result<Stack, Diagnostics> {
    let mut out = Out::new(file);
    out.map.standalone = true;
    let src = Src::new(file, text);
    let Some(doc) = parse_document(&src, &mut out) else {
        return Err(out.finish());
    };
    let mut walk = Walk {
        src: &src,
        out: &mut out,
    };
    let mut apps = Apps::default();
    walk.app_file(doc.get_ref(), None, "", &mut apps);
    let header = StackHeader {
        name: STANDALONE_STACK_NAME.to_string(),
        settings: StackSettings::with_network(STANDALONE_STACK_NAME),
    };
    let stack = assemble(header, apps, &mut out);
    finish(stack, out)
}

/// Whether `text` is a stack file (it has a top-level `stack` or `apps`
/// key) rather than a standalone app file. Decided by parsing the TOML, so
/// every spelling counts: `[stack]`, `[ stack ]`, `["stack"]`, a header
/// with a trailing comment, dotted keys (`stack.name = ...`) and inline
/// tables (`stack = { name = ... }`). Text that is not valid TOML counts as
/// a stack file; either parser reports the same syntax error for it.
pub fn is_stack_text(text: &str) -> bool {
    match DeTable::parse(text) {
        Ok(doc) => {
            let doc = doc.into_inner();
            doc.contains_key("stack") || doc.contains_key("apps")
        }
        Err(_) => true,
    }
}

/// Parse a stack file or a standalone app file, telling them apart with
/// [`is_stack_text`].
#[allow(clippy::type_complexity)]
pub fn parse_manifest(
    file: &str,
    text: &str,
    read_include: &dyn Fn(&str) -> Result<(String, String), String>,
) -> Result<Stack, Diagnostics> {
    if is_stack_text(text) {
        parse_stack(file, text, read_include)
    } else {
        parse_app_file(file, text)
    }
}

fn finish(stack: Stack, mut out: Out) -> Result<Stack, Diagnostics> {
    let cross = validate::validate_stack(&stack, &out.map);
    out.diags.extend(cross);
    if out.diags.is_empty() {
        Ok(stack)
    } else {
        Err(out.finish())
    }
}

// ---------------------------------------------------------------------------
// Plumbing: source files, locations, collected output
// ---------------------------------------------------------------------------

type Value<'i> = Spanned<DeValue<'i>>;
/// `read_include(path_as_written) -> (display_name, text)`.
type ReadInclude<'r> = dyn Fn(&str) -> Result<(String, String), String> + 'r;
type Key<'i> = Spanned<DeString<'i>>;

/// One manifest file's text, with what is needed to turn byte offsets into
/// line and column.
struct Src<'t> {
    name: String,
    text: &'t str,
    line_starts: Vec<usize>,
}

impl<'t> Src<'t> {
    fn new(name: &str, text: &'t str) -> Self {
        // A UTF-8 byte-order mark is not a column: line 1 starts after it.
        let first = if text.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            0
        };
        let mut line_starts = vec![first];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Src {
            name: crate::text::escape_control(name).into_owned(),
            text,
            line_starts,
        }
    }

    fn location(&self, span: Option<&Range<usize>>) -> Location {
        let Some(span) = span else {
            return Location {
                file: self.name.clone(),
                line: None,
                column: None,
            };
        };
        let offset = span.start.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let column = match self.text.get(start.min(offset)..offset) {
            Some(prefix) => prefix.chars().count(),
            None => offset.saturating_sub(start),
        };
        Location {
            file: self.name.clone(),
            line: Some(line + 1),
            column: Some(column + 1),
        }
    }

    /// The source text of a value, shortened for a message.
    fn snippet(&self, span: &Range<usize>) -> String {
        let text = self.text.get(span.clone()).unwrap_or("");
        shorten(text)
    }
}

fn shorten(text: &str) -> String {
    const SNIPPET_CHARS_MAX: usize = 40;
    if text.chars().count() > SNIPPET_CHARS_MAX {
        let cut: String = text.chars().take(SNIPPET_CHARS_MAX).collect();
        format!("{cut}...")
    } else {
        text.to_string()
    }
}

/// Everything the walk produces besides the apps.
struct Out {
    diags: Vec<Diagnostic>,
    map: SourceMap,
    /// Files in the order they were read, to sort diagnostics by.
    files: Vec<String>,
}

impl Out {
    fn new(file: &str) -> Self {
        Out {
            diags: Vec::new(),
            map: SourceMap::new(&crate::text::escape_control(file)),
            files: vec![crate::text::escape_control(file).into_owned()],
        }
    }

    /// The diagnostics in file order: the stack file first, then included
    /// files as they were read; within a file by line and column, unlocated
    /// ones last.
    fn finish(mut self) -> Diagnostics {
        let files = self.files;
        let rank = |file: &str| files.iter().position(|f| f == file).unwrap_or(files.len());
        self.diags.sort_by_key(|d| {
            (
                rank(&d.file),
                d.line.unwrap_or(usize::MAX),
                d.column.unwrap_or(usize::MAX),
            )
        });
        Diagnostics(self.diags)
    }
}

fn parse_document<'t>(src: &Src<'t>, out: &mut Out) -> Option<Spanned<DeTable<'t>>> {
    if src.text.len() > validate::MANIFEST_BYTES_MAX {
        out.diags.push(Diagnostic {
            file: src.name.clone(),
            line: None,
            column: None,
            key: String::new(),
            message: format!(
                "manifest is too large: {} bytes, at most {}",
                src.text.len(),
                validate::MANIFEST_BYTES_MAX
            ),
        });
        return None;
    }
    match DeTable::parse(src.text) {
        Ok(doc) => Some(doc),
        Err(e) => {
            // The parser reports its key-depth limit without a span; point
            // at the line whose key is that deep.
            let span = e.span().or_else(|| deep_key_span(src.text));
            let location = src.location(span.as_ref());
            out.diags.push(Diagnostic {
                file: location.file,
                line: location.line,
                column: location.column,
                key: String::new(),
                message: syntax_message(src, &e),
            });
            None
        }
    }
}

/// How many components before its last a key may have before the TOML
/// parser gives up on it ("recursion limit", toml's `LIMIT`), counted per
/// key: a table header or a dotted key.
const TOML_KEY_DEPTH_MAX: usize = 80;

/// The span of the first header or dotted key with more components than the
/// parser takes, for the parser's recursion error that comes without a span.
fn deep_key_span(text: &str) -> Option<Range<usize>> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if key_components(trimmed.trim_start_matches('[')) > TOML_KEY_DEPTH_MAX {
            return Some(start + indent..start + line.trim_end().len());
        }
    }
    None
}

/// The number of components of the key at the start of `s` (up to the
/// first unquoted '=' or ']'), counting unquoted '.' separators.
fn key_components(s: &str) -> usize {
    let mut count = 1;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '.') => count += 1,
            (None, '=' | ']' | '#') => break,
            _ => {}
        }
    }
    count
}

fn syntax_message(src: &Src<'_>, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    // The parser says "duplicate key" without naming it; the span does.
    let key = e
        .span()
        .and_then(|span| src.text.get(span))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    match key {
        Some(key) if message == "duplicate key" => {
            format!("invalid toml: duplicate key `{}`", shorten(key))
        }
        _ => format!("invalid toml: {message}"),
    }
}

/// `[stack]` settings.
struct StackHeader {
    name: String,
    settings: StackSettings,
}

/// Apps as the walk found them, with the key path each was written under.
#[derive(Default)]
struct Apps {
    top: Vec<(App, String)>,
    companions: Vec<(App, String, Location)>,
}

/// Put the apps into the stack. Companion ids are derived
/// (`{parent}-{key}`), so this is where one can collide with another app.
fn assemble(header: StackHeader, apps: Apps, out: &mut Out) -> Stack {
    let mut map: BTreeMap<String, App> = BTreeMap::new();
    for (app, path) in apps.top {
        out.map.set_app_path(&app.id, &path);
        map.insert(app.id.clone(), app);
    }
    for (app, path, location) in apps.companions {
        let parent = app.companion_of.clone().unwrap_or_default();
        if let Some(existing) = map.get(&app.id) {
            let other = match &existing.companion_of {
                Some(other_parent) => format!("a companion of app {other_parent:?}"),
                None => "an app".to_string(),
            };
            out.map.mark_invalid(&path);
            out.diags.push(Diagnostic {
                file: location.file,
                line: location.line,
                column: location.column,
                key: path,
                message: format!(
                    "companion id {:?} of app {parent:?} collides with {other} of the same id: rename the companion",
                    app.id
                ),
            });
            if let Some(p) = map.get_mut(&parent) {
                p.companions.retain(|c| *c != app.id);
            }
            continue;
        }
        out.map.set_app_path(&app.id, &path);
        map.insert(app.id.clone(), app);
    }
    Stack {
        name: header.name,
        settings: header.settings,
        apps: map,
    }
}

// ---------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Defined in the stack file under `[apps.<id>]`.
    Inline,
    /// Defined in a file named by `manifest = "..."`.
    Included,
    /// A standalone app file.
    Standalone,
    /// Under `companions.<key>` of another app.
    Companion,
}

struct Walk<'a, 't> {
    src: &'a Src<'t>,
    out: &'a mut Out,
}

fn describe(src: &Src<'_>, v: &Value<'_>) -> String {
    match v.get_ref() {
        DeValue::String(s) => format!("string {:?}", shorten(s)),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
        other => format!("{} {}", other.type_str(), src.snippet(&v.span())),
    }
}

fn key_str<'k>(k: &'k Key<'_>) -> &'k str {
    k.get_ref().as_ref()
}

impl Walk<'_, '_> {
    fn error(&mut self, span: Option<Range<usize>>, key: &str, message: String) {
        let location = self.src.location(span.as_ref());
        self.out.map.mark_invalid(key);
        self.out.diags.push(Diagnostic {
            file: location.file,
            line: location.line,
            column: location.column,
            key: key.to_string(),
            message,
        });
    }

    fn record(&mut self, path: &str, span: Range<usize>) {
        let location = self.src.location(Some(&span));
        self.out.map.record(path, location);
    }

    /// Report every key of `table` that is not in `allowed`.
    fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], path: &str) {
        for key in table.keys() {
            let name = key_str(key);
            if !allowed.contains(&name) {
                self.unknown_key(key, allowed, path);
            }
        }
    }

    fn unknown_key(&mut self, key: &Key<'_>, allowed: &[&str], path: &str) {
        let name = key_str(key);
        self.error(
            Some(key.span()),
            &join_path(path, name),
            format!(
                "unknown key `{}`, expected one of: {}",
                crate::text::escape_control(name),
                allowed.join(", ")
            ),
        );
    }

    fn type_error(&mut self, v: &Value<'_>, path: &str, expected: &str) {
        let found = describe(self.src, v);
        self.error(
            Some(v.span()),
            path,
            format!("expected {expected}, found {found}"),
        );
    }

    /// Report a value rule's verdict on `v`.
    fn checked<T>(&mut self, v: &Value<'_>, path: &str, verdict: Result<T, String>) -> Option<T> {
        match verdict {
            Ok(t) => Some(t),
            Err(message) => {
                self.error(Some(v.span()), path, message);
                None
            }
        }
    }

    /// A string value. Every string of a manifest reaches the engine or a
    /// process in some form, so none may hold a NUL or a control character
    /// other than tab and newline (multi-line scripts and values need
    /// those); names and paths are held to single-line rules by their own
    /// checks.
    fn string(&mut self, v: &Value<'_>, path: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => {
                self.checked(v, path, validate::check_process_text("value", s))?;
                Some(s.to_string())
            }
            _ => {
                self.type_error(v, path, "a string");
                None
            }
        }
    }

    fn integer(&mut self, v: &Value<'_>, path: &str) -> Option<i128> {
        match v.get_ref() {
            DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    let text = self.src.snippet(&v.span());
                    self.error(
                        Some(v.span()),
                        path,
                        format!("integer {text} is out of range"),
                    );
                    None
                }
            },
            _ => {
                self.type_error(v, path, "an integer");
                None
            }
        }
    }

    fn integer_in(
        &mut self,
        v: &Value<'_>,
        path: &str,
        what: &str,
        min: i128,
        max: i128,
    ) -> Option<i128> {
        let n = self.integer(v, path)?;
        if (min..=max).contains(&n) {
            Some(n)
        } else {
            self.error(
                Some(v.span()),
                path,
                format!("{what} {n} is out of range {min}-{max}"),
            );
            None
        }
    }

    fn port_number(&mut self, v: &Value<'_>, path: &str) -> Option<u16> {
        self.integer_in(v, path, "port", 1, u16::MAX.into())
            .map(|n| n as u16)
    }

    fn table<'v, 'i>(&mut self, v: &'v Value<'i>, path: &str) -> Option<&'v DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.type_error(v, path, "a table");
                None
            }
        }
    }

    /// An array of strings. Bad items are reported; the good ones returned
    /// with their spans and `path[i]` keys.
    fn string_list(
        &mut self,
        v: &Value<'_>,
        path: &str,
    ) -> Option<Vec<(String, Range<usize>, String)>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(v, path, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            if let Some(s) = self.string(item, &item_path) {
                out.push((s, item.span(), item_path));
            }
        }
        Some(out)
    }

    /// A duration within `bounds` (inclusive).
    fn duration(&mut self, v: &Value<'_>, path: &str, bounds: Bounds) -> Option<Duration> {
        let DeValue::String(s) = v.get_ref() else {
            self.type_error(v, path, "a duration string such as \"30s\"");
            return None;
        };
        let d = self.checked(v, path, parse_duration(s))?;
        let (min, max) = bounds;
        if d.is_zero() && !min.is_zero() {
            self.error(
                Some(v.span()),
                path,
                format!("duration {s:?} must be greater than zero"),
            );
            return None;
        }
        if d < min || d > max {
            self.error(
                Some(v.span()),
                path,
                format!(
                    "duration {s:?} is out of range {}-{}",
                    format_duration(min),
                    format_duration(max)
                ),
            );
            return None;
        }
        Some(d)
    }

    // --- stack file -------------------------------------------------------

    fn stack_header(&mut self, root: &DeTable<'_>) -> StackHeader {
        self.check_keys(root, STACK_FILE_KEYS, "");
        let mut header = StackHeader {
            name: String::new(),
            settings: StackSettings::with_network(String::new()),
        };
        let Some((key, v)) = root.get_key_value("stack") else {
            self.error(
                None,
                "stack",
                "missing required table `[stack]`".to_string(),
            );
            return header;
        };
        let Some(t) = self.table(v, "stack") else {
            return header;
        };
        self.check_keys(t, STACK_KEYS, "stack");
        match t.get("name") {
            Some(v) => {
                if let Some(name) = self.string(v, "stack.name") {
                    self.checked(v, "stack.name", validate::check_stack_name(&name));
                    header.name = name;
                }
            }
            None => self.error(
                Some(key.span()),
                "stack",
                "missing required key `name`".to_string(),
            ),
        }
        header.settings.network = match t.get("network") {
            Some(v) => self
                .string(v, "stack.network")
                .and_then(|n| {
                    let verdict = validate::check_network_name(&n).map(|()| n);
                    self.checked(v, "stack.network", verdict)
                })
                .unwrap_or_default(),
            None => {
                // The network defaults to the stack's name, so that name
                // must not be one the engine reserves either.
                if let Some(v) = t.get("name")
                    && validate::check_stack_name(&header.name).is_ok()
                    && let Err(message) = validate::check_network_name(&header.name)
                {
                    self.error(
                        Some(v.span()),
                        "stack.name",
                        format!(
                            "{message} (the network defaults to the stack name: set `network`)"
                        ),
                    );
                }
                header.name.clone()
            }
        };
        if let Some(v) = t.get("max_parallel")
            && let Some(n) = self.integer_in(
                v,
                "stack.max_parallel",
                "max_parallel",
                1,
                MAX_PARALLEL_MAX as i128,
            )
        {
            header.settings.max_parallel = n as usize;
        }
        if let Some(v) = t.get("start_timeout")
            && let Some(d) = self.duration(
                v,
                "stack.start_timeout",
                bounds_ms_s(START_TIMEOUT_MS_MIN, START_TIMEOUT_S_MAX),
            )
        {
            header.settings.start_timeout = d;
        }
        if let Some(v) = t.get("settle")
            && let Some(d) = self.duration(v, "stack.settle", bounds_ms_s(0, SETTLE_S_MAX))
        {
            if d > header.settings.start_timeout {
                self.error(
                    Some(v.span()),
                    "stack.settle",
                    format!(
                        "settle ({}) must not be longer than start_timeout ({})",
                        crate::duration::format_duration(d),
                        crate::duration::format_duration(header.settings.start_timeout)
                    ),
                );
            } else {
                header.settings.settle = d;
            }
        }
        header
    }

    fn apps(&mut self, root: &DeTable<'_>, read_include: &ReadInclude<'_>, apps: &mut Apps) {
        let Some(v) = root.get("apps") else {
            return;
        };
        let Some(t) = self.table(v, "apps") else {
            return;
        };
        for (key, v) in t.iter() {
            let id = key_str(key);
            let path = join_path("apps", id);
            self.record(&path, key.span());
            if let Err(message) = validate::check_app_id(id) {
                self.error(Some(key.span()), &path, message);
            }
            let Some(table) = self.table(v, &path) else {
                self.out.map.mark_unloaded(id);
                continue;
            };
            if table.contains_key("manifest") {
                self.include(id, &path, table, read_include, apps);
            } else {
                self.app(id, &path, Some(key.span()), table, Kind::Inline, None, apps);
            }
        }
    }

    fn include(
        &mut self,
        id: &str,
        path: &str,
        table: &DeTable<'_>,
        read_include: &ReadInclude<'_>,
        apps: &mut Apps,
    ) {
        let manifest_path = join_path(path, "manifest");
        let v = table.get("manifest").expect("checked by the caller");
        let file = self.string(v, &manifest_path);
        let shown = file.as_deref().unwrap_or("another file");
        for key in table.keys() {
            let name = key_str(key);
            if name != "manifest" {
                self.error(
                    Some(key.span()),
                    &join_path(path, name),
                    format!(
                        "`{}` cannot be combined with `manifest`: app {id:?} is defined in {shown:?}",
                        crate::text::escape_control(name)
                    ),
                );
            }
        }
        let Some(file) = file else {
            self.out.map.mark_unloaded(id);
            return;
        };
        if file.is_empty() {
            self.error(
                Some(v.span()),
                &manifest_path,
                "manifest path must not be empty".to_string(),
            );
            self.out.map.mark_unloaded(id);
            return;
        }
        let (name, text) = match read_include(&file) {
            Ok(included) => included,
            Err(e) => {
                self.error(
                    Some(v.span()),
                    &manifest_path,
                    format!("cannot read app manifest {file:?}: {e}"),
                );
                self.out.map.mark_unloaded(id);
                return;
            }
        };
        let name = crate::text::escape_control(&name).into_owned();
        if !self.out.files.contains(&name) {
            self.out.files.push(name.clone());
        }
        let src = Src::new(&name, &text);
        let Some(doc) = parse_document(&src, self.out) else {
            self.out.map.mark_unloaded(id);
            return;
        };
        let mut walk = Walk {
            src: &src,
            out: &mut *self.out,
        };
        walk.app_file(doc.get_ref(), Some(id), path, apps);
    }

    /// An app file: the app keys at top level plus `id`. Included from a
    /// stack file (`key` is the stack's key for it, and `id` must match)
    /// or standalone (`id` is required).
    fn app_file(&mut self, root: &DeTable<'_>, key: Option<&str>, path: &str, apps: &mut Apps) {
        let id_path = join_path(path, "id");
        let written = match root.get_key_value("id") {
            Some((k, v)) => self.string(v, &id_path).map(|s| (s, k.span(), v)),
            None => None,
        };
        let (id, header) = match (key, written) {
            (Some(key), Some((written, span, v))) => {
                if written != key {
                    self.error(
                        Some(v.span()),
                        &id_path,
                        format!(
                            "id {written:?} does not match the app's key {key:?} in the stack file"
                        ),
                    );
                }
                (key.to_string(), Some(span))
            }
            (Some(key), None) => (key.to_string(), None),
            (None, Some((written, span, v))) => {
                self.checked(v, &id_path, validate::check_app_id(&written));
                (written, Some(span))
            }
            (None, None) => {
                if !root.contains_key("id") {
                    self.error(
                        None,
                        "id",
                        "missing required key `id`: a standalone app file names its app"
                            .to_string(),
                    );
                }
                ("app".to_string(), None)
            }
        };
        if let Some(span) = &header {
            // The app's own location: its `id` line.
            self.record(path, span.clone());
        }
        let kind = if key.is_some() {
            Kind::Included
        } else {
            Kind::Standalone
        };
        self.app(&id, path, header, root, kind, None, apps);
    }

    // --- one app --------------------------------------------------------

    /// Walk one app table. `header` is where the app is named (its key), for
    /// problems such as a missing `image`.
    #[allow(clippy::too_many_arguments)]
    fn app(
        &mut self,
        id: &str,
        path: &str,
        header: Option<Range<usize>>,
        t: &DeTable<'_>,
        kind: Kind,
        parent: Option<&str>,
        apps: &mut Apps,
    ) {
        let parent = parent.map(str::to_string);
        self.app_keys(t, kind, parent.as_deref(), path);
        let p = |key: &str| join_path(path, key);

        let mut app = App {
            id: id.to_string(),
            companion_of: parent.clone(),
            image: String::new(),
            entrypoint: None,
            command: None,
            env: BTreeMap::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            depends_on: BTreeMap::new(),
            tier: None,
            stop_grace: Duration::from_secs(STOP_GRACE_S_DEFAULT),
            restart: RestartPolicy::Always,
            health: None,
            secrets: Vec::new(),
            labels: BTreeMap::new(),
            memory_bytes: None,
            cap_add: Vec::new(),
            user: None,
            web_ui: None,
            companions: Vec::new(),
            probe: None,
            gate: None,
            update: UpdatePolicy::default(),
        };
        if let Some(parent) = &parent {
            app.depends_on
                .insert(parent.clone(), DependsCondition::Started);
        }

        match t.get("image") {
            Some(v) => {
                if let Some(image) = self.string(v, &p("image")) {
                    self.checked(v, &p("image"), validate::check_image(&image));
                    app.image = image;
                }
            }
            None => self.error(
                header.clone(),
                path,
                format!("app {id:?} is missing required key `image`"),
            ),
        }
        if let Some(v) = t.get("entrypoint") {
            app.entrypoint = self
                .string_list(v, &p("entrypoint"))
                .map(|items| items.into_iter().map(|(s, _, _)| s).collect());
        }
        if let Some(v) = t.get("command") {
            app.command = self
                .string_list(v, &p("command"))
                .map(|items| items.into_iter().map(|(s, _, _)| s).collect());
        }
        if let Some(v) = t.get("env") {
            app.env = self.env(v, &p("env"));
        }
        if let Some(v) = t.get("ports") {
            app.ports = self.ports(v, &p("ports"));
        }
        if let Some(v) = t.get("volumes") {
            app.volumes = self.volumes(v, &p("volumes"));
        }
        if kind != Kind::Companion {
            if let Some(v) = t.get("depends_on") {
                app.depends_on = self.depends_on(v, &p("depends_on"));
            }
            if let Some(v) = t.get("tier") {
                app.tier = self
                    .integer_in(v, &p("tier"), "tier", 0, validate::TIER_MAX.into())
                    .map(|n| n as u32);
            }
        }
        if let Some(v) = t.get("stop_grace")
            && let Some(d) = self.duration(v, &p("stop_grace"), bounds_ms_s(0, STOP_GRACE_S_MAX))
        {
            app.stop_grace = d;
        }
        if let Some(v) = t.get("restart")
            && let Some(r) = self.restart(v, &p("restart"))
        {
            app.restart = r;
        }
        if let Some(v) = t.get("secrets") {
            app.secrets = self.secrets(v, &p("secrets"));
        }
        if let Some(v) = t.get("labels") {
            app.labels = self.labels(v, &p("labels"));
        }
        if let Some(v) = t.get("memory") {
            app.memory_bytes = self.memory(v, &p("memory"));
        }
        if let Some(v) = t.get("cap_add") {
            app.cap_add = self.cap_add(v, &p("cap_add"));
        }
        if let Some(v) = t.get("user")
            && let Some(user) = self.string(v, &p("user"))
        {
            self.checked(v, &p("user"), validate::check_user(&user));
            app.user = Some(user);
        }
        if let Some((k, v)) = t.get_key_value("web_ui") {
            app.web_ui = self.web_ui(k, v, &p("web_ui"));
        }
        if let Some((k, v)) = t.get_key_value("health") {
            self.record(&p("health"), k.span());
            app.health = self.health(k, v, &p("health"));
        }
        if let Some((k, v)) = t.get_key_value("probe") {
            self.record(&p("probe"), k.span());
            app.probe = self.probe(k, v, &p("probe"));
        }
        if kind != Kind::Companion
            && let Some((k, v)) = t.get_key_value("gate")
        {
            self.record(&p("gate"), k.span());
            app.gate = self.gate(k, v, &p("gate"));
        }
        let mut companions = Vec::new();
        if kind != Kind::Companion
            && let Some(v) = t.get("companions")
        {
            companions = self.companions(id, v, &p("companions"), apps);
        }
        app.companions = companions;
        self.update_keys(t, &mut app, path);
        if kind == Kind::Companion {
            let location = self.src.location(header.as_ref());
            apps.companions.push((app, path.to_string(), location));
        } else {
            apps.top.push((app, path.to_string()));
        }
    }

    fn app_keys(&mut self, t: &DeTable<'_>, kind: Kind, parent: Option<&str>, path: &str) {
        let allowed: Vec<&str> = match kind {
            Kind::Inline => APP_KEYS.iter().copied().chain(["manifest"]).collect(),
            Kind::Included | Kind::Standalone => {
                ["id"].into_iter().chain(APP_KEYS.iter().copied()).collect()
            }
            Kind::Companion => APP_KEYS
                .iter()
                .copied()
                .filter(|k| !COMPANION_FORBIDDEN.contains(k))
                .collect(),
        };
        for key in t.keys() {
            let name = key_str(key);
            if allowed.contains(&name) {
                continue;
            }
            let key_path = join_path(path, name);
            if kind == Kind::Companion && COMPANION_FORBIDDEN.contains(&name) {
                let parent = parent.unwrap_or_default();
                self.error(
                    Some(key.span()),
                    &key_path,
                    format!(
                        "`{name}` is not allowed in a companion: a companion starts right after its app {parent:?} and has no dependencies, tier, gate or companions of its own"
                    ),
                );
            } else if name == "manifest" && kind != Kind::Inline {
                self.error(
                    Some(key.span()),
                    &key_path,
                    "`manifest` is not allowed in an app file: includes do not nest".to_string(),
                );
            } else {
                self.unknown_key(key, &allowed, path);
            }
        }
    }

    fn env(&mut self, v: &Value<'_>, path: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let Some(t) = self.table(v, path) else {
            return env;
        };
        for (k, v) in t.iter() {
            let name = key_str(k);
            let key_path = join_path(path, name);
            if let Err(message) = validate::check_env_key(name) {
                self.error(Some(k.span()), &key_path, message);
            }
            if let Some(value) = self.string(v, &key_path) {
                env.insert(name.to_string(), value);
            }
        }
        env
    }

    fn ports(&mut self, v: &Value<'_>, path: &str) -> Vec<crate::model::PortMapping> {
        let mut ports = Vec::new();
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(v, path, "an array of port mappings such as \"8080:80\"");
            return ports;
        };
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            self.record(&item_path, item.span());
            let Some(spec) = self.string(item, &item_path) else {
                continue;
            };
            if let Some(port) = self.checked(item, &item_path, validate::parse_port(&spec)) {
                ports.push(port);
            }
        }
        ports
    }

    fn volumes(&mut self, v: &Value<'_>, path: &str) -> Vec<VolumeMount> {
        let mut volumes: Vec<VolumeMount> = Vec::new();
        let Some(t) = self.table(v, path) else {
            return volumes;
        };
        for (k, v) in t.iter() {
            let name = key_str(k);
            let key_path = join_path(path, name);
            if let Err(message) = validate::check_volume_name(name) {
                self.error(Some(k.span()), &key_path, message);
            }
            // The short form is the path alone; the long form a table with
            // the path, the class and whether an update snapshots it.
            let (path_value, path_key, class, snapshot) = match v.get_ref() {
                DeValue::Table(vt) => {
                    self.check_keys(vt, VOLUME_KEYS, &key_path);
                    let class = vt
                        .get("class")
                        .and_then(|c| self.volume_class(c, &join_path(&key_path, "class")));
                    let snap_path = join_path(&key_path, "snapshot_before_update");
                    let snapshot = vt
                        .get("snapshot_before_update")
                        .and_then(|s| self.boolean(s, &snap_path).map(|b| (b, s)));
                    let Some(p) = vt.get("path") else {
                        self.error(
                            Some(v.span()),
                            &key_path,
                            format!("volume {name:?} is missing required key `path`"),
                        );
                        continue;
                    };
                    (p, join_path(&key_path, "path"), class, snapshot)
                }
                _ => (v, key_path.clone(), None, None),
            };
            let class = class.unwrap_or_default();
            if let Some((true, s)) = snapshot
                && class != VolumeClass::Precious
            {
                let message = format!(
                    "volume {name:?} is {}: only a precious volume is snapshotted",
                    class.as_str()
                );
                self.error(
                    Some(s.span()),
                    &join_path(&key_path, "snapshot_before_update"),
                    message,
                );
            }
            let Some(mount) = self.string(path_value, &path_key) else {
                continue;
            };
            let Some(normal) = self.checked(
                path_value,
                &path_key,
                validate::normalize_volume_path(&mount),
            ) else {
                continue;
            };
            if let Some(other) = volumes.iter().find(|m| m.path == normal) {
                let message = format!(
                    "volumes {:?} and {name:?} are both mounted at {normal:?}",
                    other.name
                );
                self.error(Some(path_value.span()), &path_key, message);
                continue;
            }
            self.record(&key_path, k.span());
            volumes.push(VolumeMount {
                name: name.to_string(),
                path: normal,
                class,
                snapshot_before_update: snapshot.is_some_and(|(b, _)| b),
            });
        }
        volumes
    }

    fn volume_class(&mut self, v: &Value<'_>, path: &str) -> Option<VolumeClass> {
        let s = self.string(v, path)?;
        let class = match s.as_str() {
            "precious" => VolumeClass::Precious,
            "regenerable" => VolumeClass::Regenerable,
            "cache" => VolumeClass::Cache,
            other => {
                let message = format!(
                    "unknown volume class {:?}, expected one of: {}",
                    crate::text::escape_control(other),
                    VOLUME_CLASSES.join(", ")
                );
                self.error(Some(v.span()), path, message);
                return None;
            }
        };
        Some(class)
    }

    fn boolean(&mut self, v: &Value<'_>, path: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(v, path, "true or false");
                None
            }
        }
    }

    /// `update_window`, `min_healthy`, `data_version` and the app-wide
    /// `snapshot_before_update` (which asks it of every volume; the update
    /// says which ones are never snapshotted because of their class).
    fn update_keys(&mut self, t: &DeTable<'_>, app: &mut App, path: &str) {
        let p = |key: &str| join_path(path, key);
        if let Some(v) = t.get("update_window")
            && let Some(d) = self.duration(
                v,
                &p("update_window"),
                bounds_ms_s(UPDATE_WINDOW_MS_MIN, UPDATE_WINDOW_S_MAX),
            )
        {
            app.update.window = d;
        }
        if let Some(v) = t.get("min_healthy")
            && let Some(d) = self.duration(v, &p("min_healthy"), bounds_ms_s(0, MIN_HEALTHY_S_MAX))
        {
            if d > app.update.window {
                let message = format!(
                    "min_healthy ({}) must not be longer than update_window ({})",
                    crate::duration::format_duration(d),
                    crate::duration::format_duration(app.update.window)
                );
                self.error(Some(v.span()), &p("min_healthy"), message);
            } else {
                app.update.min_healthy = d;
            }
        } else if app.update.min_healthy > app.update.window {
            // A short window without its own min_healthy shortens it.
            app.update.min_healthy = app.update.window;
        }
        if let Some(v) = t.get("data_version")
            && let Some(n) = self.integer_in(
                v,
                &p("data_version"),
                "data_version",
                0,
                DATA_VERSION_MAX.into(),
            )
        {
            app.update.data_version = n as u32;
        }
        if let Some(v) = t.get("snapshot_before_update")
            && let Some(true) = self.boolean(v, &p("snapshot_before_update"))
        {
            for volume in &mut app.volumes {
                volume.snapshot_before_update = true;
            }
        }
    }

    fn depends_on(&mut self, v: &Value<'_>, path: &str) -> BTreeMap<String, DependsCondition> {
        let mut deps = BTreeMap::new();
        let Some(t) = self.table(v, path) else {
            return deps;
        };
        for (k, v) in t.iter() {
            let dep = key_str(k);
            let key_path = join_path(path, dep);
            self.record(&key_path, k.span());
            let condition = match self.string(v, &key_path).as_deref() {
                Some("started") => DependsCondition::Started,
                Some("healthy") => DependsCondition::Healthy,
                Some(other) => {
                    self.error(
                        Some(v.span()),
                        &key_path,
                        format!(
                            "unknown condition {other:?} for dependency {dep:?}: use \"started\" or \"healthy\""
                        ),
                    );
                    DependsCondition::Started
                }
                // Keep the edge, so a bad condition does not also turn
                // into an unknown dependency or hide a cycle.
                None => DependsCondition::Started,
            };
            deps.insert(dep.to_string(), condition);
        }
        deps
    }

    fn restart(&mut self, v: &Value<'_>, path: &str) -> Option<RestartPolicy> {
        let s = self.string(v, path)?;
        match s.as_str() {
            "always" => Some(RestartPolicy::Always),
            "on-failure" => Some(RestartPolicy::OnFailure),
            "no" => Some(RestartPolicy::No),
            other => {
                self.error(
                    Some(v.span()),
                    path,
                    format!(
                        "unknown restart policy {other:?}: use \"always\", \"on-failure\" or \"no\""
                    ),
                );
                None
            }
        }
    }

    fn secrets(&mut self, v: &Value<'_>, path: &str) -> Vec<String> {
        let mut secrets: Vec<String> = Vec::new();
        for (name, span, item_path) in self.string_list(v, path).unwrap_or_default() {
            if let Err(message) = validate::check_secret_name(&name) {
                self.error(Some(span), &item_path, message);
            } else if secrets.contains(&name) {
                self.error(
                    Some(span),
                    &item_path,
                    format!("secret {name:?} is listed twice"),
                );
            } else {
                secrets.push(name);
            }
        }
        secrets
    }

    fn labels(&mut self, v: &Value<'_>, path: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        let Some(t) = self.table(v, path) else {
            return labels;
        };
        for (k, v) in t.iter() {
            let name = key_str(k);
            let key_path = join_path(path, name);
            if let Err(message) = validate::check_label_key(name) {
                self.error(Some(k.span()), &key_path, message);
            }
            if let Some(value) = self.string(v, &key_path) {
                self.checked(
                    v,
                    &key_path,
                    validate::check_single_line("label value", &value),
                );
                labels.insert(name.to_string(), value);
            }
        }
        labels
    }

    fn memory(&mut self, v: &Value<'_>, path: &str) -> Option<u64> {
        match v.get_ref() {
            DeValue::Integer(_) => {
                let n = self.integer(v, path)?;
                let verdict = if n <= 0 {
                    Err("memory limit must be greater than zero".to_string())
                } else {
                    u64::try_from(n)
                        .map_err(|_| format!("memory {n} is too large"))
                        .and_then(validate::check_memory_bytes)
                };
                self.checked(v, path, verdict)
            }
            DeValue::String(s) => {
                let verdict = validate::parse_memory(s);
                self.checked(v, path, verdict)
            }
            _ => {
                self.type_error(v, path, "a number of bytes or a string such as \"512m\"");
                None
            }
        }
    }

    fn cap_add(&mut self, v: &Value<'_>, path: &str) -> Vec<String> {
        let mut caps: Vec<String> = Vec::new();
        for (name, span, item_path) in self.string_list(v, path).unwrap_or_default() {
            match validate::normalize_capability(&name) {
                Err(message) => self.error(Some(span), &item_path, message),
                Ok(cap) if caps.contains(&cap) => {
                    self.error(
                        Some(span),
                        &item_path,
                        format!("capability {cap:?} is listed twice"),
                    );
                }
                Ok(cap) => caps.push(cap),
            }
        }
        caps
    }

    fn http_path(&mut self, t: &DeTable<'_>, path: &str) -> String {
        match t.get("path") {
            None => "/".to_string(),
            Some(v) => {
                let key_path = join_path(path, "path");
                match self.string(v, &key_path) {
                    Some(s) => {
                        self.checked(v, &key_path, validate::check_http_path(&s));
                        s
                    }
                    None => "/".to_string(),
                }
            }
        }
    }

    /// The required `port` of a `{ port = ..., path = ... }` table.
    fn required_port(&mut self, key: &Key<'_>, t: &DeTable<'_>, path: &str) -> Option<u16> {
        let port_path = join_path(path, "port");
        match t.get("port") {
            Some(v) => {
                self.record(&port_path, v.span());
                self.port_number(v, &port_path)
            }
            None => {
                self.error(
                    Some(key.span()),
                    path,
                    "missing required key `port`".to_string(),
                );
                None
            }
        }
    }

    fn web_ui(&mut self, key: &Key<'_>, v: &Value<'_>, path: &str) -> Option<WebUi> {
        let t = self.table(v, path)?;
        self.check_keys(t, WEB_UI_KEYS, path);
        let port = self.required_port(key, t, path);
        let ui_path = self.http_path(t, path);
        Some(WebUi {
            host_port: port?,
            path: ui_path,
        })
    }

    fn health(&mut self, key: &Key<'_>, v: &Value<'_>, path: &str) -> Option<HealthCheck> {
        let t = self.table(v, path)?;
        self.check_keys(t, HEALTH_KEYS, path);
        let p = |k: &str| join_path(path, k);

        let present: Vec<(&Key<'_>, &Value<'_>)> = ["http", "tcp", "command"]
            .iter()
            .filter_map(|k| t.get_key_value(*k))
            .collect();
        let kind = match present.as_slice() {
            [] => {
                self.error(
                    Some(key.span()),
                    path,
                    "a health check needs one of `http`, `tcp` or `command`".to_string(),
                );
                None
            }
            [(k, v)] => self.health_kind(k, v, &p(key_str(k))),
            [first, second, ..] => {
                let mut names: Vec<String> = present
                    .iter()
                    .map(|(k, _)| format!("`{}`", key_str(k)))
                    .collect();
                let last = names.pop().unwrap_or_default();
                self.error(
                    Some(second.0.span()),
                    &p(key_str(second.0)),
                    format!(
                        "a health check has exactly one of `http`, `tcp` or `command`, found {} and {last}",
                        names.join(", ")
                    ),
                );
                self.health_kind(first.0, first.1, &p(key_str(first.0)))
            }
        };

        let mut check = HealthCheck {
            kind: kind.unwrap_or(HealthKind::Tcp { port: 1 }),
            interval: Duration::from_secs(HEALTH_INTERVAL_S_DEFAULT),
            timeout: Duration::from_secs(HEALTH_TIMEOUT_S_DEFAULT),
            retries: HEALTH_RETRIES_DEFAULT,
            start_period: Duration::ZERO,
            progress: None,
        };
        if let Some(v) = t.get("interval")
            && let Some(d) = self.duration(
                v,
                &p("interval"),
                bounds_ms_s(HEALTH_INTERVAL_MS_MIN, HEALTH_INTERVAL_S_MAX),
            )
        {
            check.interval = d;
        }
        if let Some(v) = t.get("timeout")
            && let Some(d) = self.duration(
                v,
                &p("timeout"),
                bounds_ms_s(HEALTH_TIMEOUT_MS_MIN, HEALTH_TIMEOUT_S_MAX),
            )
        {
            check.timeout = d;
        }
        if let Some(v) = t.get("retries")
            && let Some(n) =
                self.integer_in(v, &p("retries"), "retries", 1, HEALTH_RETRIES_MAX.into())
        {
            check.retries = n as u32;
        }
        if let Some(v) = t.get("start_period")
            && let Some(d) = self.duration(
                v,
                &p("start_period"),
                bounds_ms_s(0, HEALTH_START_PERIOD_S_MAX),
            )
        {
            check.start_period = d;
        }
        if let Some((k, v)) = t.get_key_value("progress") {
            let interval_invalid = self.out.map.is_invalid_under(&p("interval"));
            check.progress = self.progress(k, v, &p("progress"), check.interval, interval_invalid);
        }
        if self.out.map.is_invalid_under(path) {
            return None;
        }
        Some(check)
    }

    /// A health check's `progress` table. `interval` is the check's (every
    /// round reads the value once), judged only when it is valid itself.
    fn progress(
        &mut self,
        key: &Key<'_>,
        v: &Value<'_>,
        path: &str,
        interval: Duration,
        interval_invalid: bool,
    ) -> Option<ProgressCheck> {
        let t = self.table(v, path)?;
        self.check_keys(t, PROGRESS_KEYS, path);
        let p = |k: &str| join_path(path, k);

        let present: Vec<(&Key<'_>, &Value<'_>)> = PROGRESS_SOURCES
            .iter()
            .filter_map(|k| t.get_key_value(*k))
            .collect();
        let source = match present.as_slice() {
            [] => {
                self.error(
                    Some(key.span()),
                    path,
                    "a progress check needs one of `probe`, `http` or `command`: where berth reads the value that must advance".to_string(),
                );
                None
            }
            [(k, v)] => self.progress_source(k, v, &p(key_str(k))),
            [first, second, ..] => {
                let mut names: Vec<String> = present
                    .iter()
                    .map(|(k, _)| format!("`{}`", key_str(k)))
                    .collect();
                let last = names.pop().unwrap_or_default();
                self.error(
                    Some(second.0.span()),
                    &p(key_str(second.0)),
                    format!(
                        "a progress check has exactly one of `probe`, `http` or `command`, found {} and {last}",
                        names.join(", ")
                    ),
                );
                self.progress_source(first.0, first.1, &p(key_str(first.0)))
            }
        };

        let within = match t.get("within") {
            Some(v) => {
                let within = self.duration(v, &p("within"), bounds_ms_s(1, PROGRESS_WITHIN_S_MAX));
                if let Some(w) = within
                    && !interval_invalid
                    && w <= interval
                {
                    self.error(
                        Some(v.span()),
                        &p("within"),
                        format!(
                            "within {:?} must be longer than the check's interval {:?}: the value is read once per interval",
                            format_duration(w),
                            format_duration(interval)
                        ),
                    );
                    None
                } else {
                    within
                }
            }
            None => {
                self.error(
                    Some(key.span()),
                    path,
                    "missing required key `within`: how long the value may go without advancing, e.g. \"60m\"".to_string(),
                );
                None
            }
        };

        let label = match t.get("label") {
            Some(v) => {
                let label = self.string(v, &p("label"));
                label.and_then(|l| self.checked(v, &p("label"), validate::check_progress_label(&l)))
            }
            None => Some(
                match source {
                    Some(ProgressSource::ProbeHeight) => PROGRESS_LABEL_CHAIN,
                    _ => PROGRESS_LABEL_DEFAULT,
                }
                .to_string(),
            ),
        };
        Some(ProgressCheck {
            source: source?,
            within: within?,
            label: label?,
        })
    }

    fn progress_source(
        &mut self,
        key: &Key<'_>,
        v: &Value<'_>,
        path: &str,
    ) -> Option<ProgressSource> {
        match key_str(key) {
            "probe" => {
                self.record(path, v.span());
                let s = self.string(v, path)?;
                if s == PROGRESS_PROBE_HEIGHT {
                    Some(ProgressSource::ProbeHeight)
                } else {
                    self.error(
                        Some(v.span()),
                        path,
                        format!(
                            "unknown progress value {s:?} of the probe: use \"{PROGRESS_PROBE_HEIGHT}\" (the height the app's chain probe reads)"
                        ),
                    );
                    None
                }
            }
            "http" => {
                let t = self.table(v, path)?;
                self.check_keys(t, PROGRESS_HTTP_KEYS, path);
                let port = self.required_port(key, t, path);
                let http_path = self.http_path(t, path);
                let pointer = match t.get("pointer") {
                    Some(v) => {
                        let pointer_path = join_path(path, "pointer");
                        let s = self.string(v, &pointer_path);
                        s.and_then(|s| {
                            self.checked(v, &pointer_path, validate::check_json_pointer(&s))
                                .map(|()| s)
                        })
                    }
                    None => {
                        self.error(
                            Some(key.span()),
                            path,
                            "missing required key `pointer`: the JSON pointer to the number in the answer, e.g. \"/blocks\"".to_string(),
                        );
                        None
                    }
                };
                Some(ProgressSource::Http {
                    port: port?,
                    path: http_path,
                    pointer: pointer?,
                })
            }
            _ => {
                let argv: Vec<String> = self
                    .string_list(v, path)?
                    .into_iter()
                    .map(|(s, _, _)| s)
                    .collect();
                if argv.is_empty() {
                    self.error(
                        Some(v.span()),
                        path,
                        "a progress command must not be empty".to_string(),
                    );
                    return None;
                }
                Some(ProgressSource::Command { argv })
            }
        }
    }

    fn health_kind(&mut self, key: &Key<'_>, v: &Value<'_>, path: &str) -> Option<HealthKind> {
        match key_str(key) {
            "http" => {
                let t = self.table(v, path)?;
                self.check_keys(t, HTTP_KEYS, path);
                let port = self.required_port(key, t, path);
                let http_path = self.http_path(t, path);
                Some(HealthKind::Http {
                    port: port?,
                    path: http_path,
                })
            }
            "tcp" => {
                let t = self.table(v, path)?;
                self.check_keys(t, TCP_KEYS, path);
                let port = self.required_port(key, t, path)?;
                Some(HealthKind::Tcp { port })
            }
            _ => {
                let argv: Vec<String> = self
                    .string_list(v, path)?
                    .into_iter()
                    .map(|(s, _, _)| s)
                    .collect();
                if argv.is_empty() {
                    self.error(
                        Some(v.span()),
                        path,
                        "a health check command must not be empty".to_string(),
                    );
                    return None;
                }
                Some(HealthKind::Command { argv })
            }
        }
    }

    fn probe(&mut self, key: &Key<'_>, v: &Value<'_>, path: &str) -> Option<ProbeSpec> {
        let t = self.table(v, path)?;
        self.check_keys(t, PROBE_KEYS, path);
        let p = |k: &str| join_path(path, k);

        let kind = match t.get("kind") {
            Some(v) => match self.string(v, &p("kind")) {
                Some(s) if PROBE_KINDS.contains(&s.as_str()) => Some(s),
                Some(s) => {
                    self.error(
                        Some(v.span()),
                        &p("kind"),
                        format!(
                            "unknown probe kind {s:?}: use \"bitcoind\", \"monerod\", \"http\" or \"tcp\""
                        ),
                    );
                    None
                }
                None => None,
            },
            None => {
                self.error(
                    Some(key.span()),
                    path,
                    "a probe needs `kind`: \"bitcoind\", \"monerod\", \"http\" or \"tcp\""
                        .to_string(),
                );
                None
            }
        };
        let port = self.required_port(key, t, path);
        if let Some(kind) = &kind {
            for (name, owner) in PROBE_KIND_KEYS {
                if kind != owner
                    && let Some((k, _)) = t.get_key_value(*name)
                {
                    self.error(
                        Some(k.span()),
                        &p(name),
                        format!("`{name}` is only for a probe of kind {owner:?}, not {kind:?}"),
                    );
                }
            }
        }
        // Values of keys of another kind were reported above; don't judge
        // them too.
        let applies = |key: &str| {
            let owner = PROBE_KIND_KEYS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, o)| *o);
            kind.as_deref()
                .is_none_or(|kind| owner.is_none_or(|o| o == kind))
        };
        let mut user = None;
        if applies("user")
            && let Some(v) = t.get("user")
            && let Some(u) = self.string(v, &p("user"))
        {
            self.checked(v, &p("user"), validate::check_rpc_user(&u));
            user = Some(u);
        }
        let mut password_secret = None;
        if applies("password_secret")
            && let Some(v) = t.get("password_secret")
            && let Some(name) = self.string(v, &p("password_secret"))
        {
            self.record(&p("password_secret"), v.span());
            self.checked(v, &p("password_secret"), validate::check_secret_name(&name));
            password_secret = Some(name);
        }
        let http_path = if applies("path") {
            self.http_path(t, path)
        } else {
            "/".to_string()
        };
        let duration = |this: &mut Self, key: &str, default_s: u64, bounds: Bounds| {
            t.get(key)
                .and_then(|v| this.duration(v, &p(key), bounds))
                .unwrap_or(Duration::from_secs(default_s))
        };
        let interval = duration(
            self,
            "interval",
            PROBE_INTERVAL_S_DEFAULT,
            bounds_ms_s(PROBE_INTERVAL_MS_MIN, PROBE_INTERVAL_S_MAX),
        );
        let timeout = duration(
            self,
            "timeout",
            PROBE_TIMEOUT_S_DEFAULT,
            bounds_ms_s(PROBE_TIMEOUT_MS_MIN, PROBE_TIMEOUT_S_MAX),
        );
        let after = bounds_ms_s(PROBE_AFTER_MS_MIN, PROBE_AFTER_S_MAX);
        let down_after = duration(self, "down_after", DOWN_AFTER_S_DEFAULT, after);
        let recovery_after = duration(self, "recovery_after", RECOVERY_AFTER_S_DEFAULT, after);

        // A probe with a usable kind and port is kept even when another of
        // its values is wrong (the stack does not load either way), so the
        // stack rules can still judge its password secret; a node without
        // one is not also reported as "has no probe" (see `validate`).
        let kind = match kind?.as_str() {
            "bitcoind" => ProbeKind::Bitcoind {
                user,
                password_secret,
            },
            "monerod" => ProbeKind::Monerod,
            "http" => ProbeKind::Http { path: http_path },
            _ => ProbeKind::Tcp,
        };
        Some(ProbeSpec {
            kind,
            port: port?,
            interval,
            timeout,
            down_after,
            recovery_after,
        })
    }

    /// The gate's node lists. Names are checked against the stack later
    /// (`validate`); here: strings, no repeats, not both required and
    /// optional, not empty altogether.
    fn gate(&mut self, key: &Key<'_>, v: &Value<'_>, path: &str) -> Option<GateSpec> {
        let t = self.table(v, path)?;
        self.check_keys(t, GATE_KEYS, path);
        let mut lists: [Vec<String>; 4] = Default::default();
        for (list, name) in lists.iter_mut().zip(GATE_KEYS) {
            if let Some(v) = t.get(*name) {
                *list = self.node_list(v, &join_path(path, name));
            }
        }
        // A node is either required or optional, per purpose.
        for (required, optional) in [(0, 1), (2, 3)] {
            let optional_path = join_path(path, GATE_KEYS[optional]);
            let (req, opt) = (lists[required].clone(), &mut lists[optional]);
            let mut clashes = Vec::new();
            opt.retain(|name| {
                let clash = req.contains(name);
                if clash {
                    clashes.push(name.clone());
                }
                !clash
            });
            for name in clashes {
                let item = self.out.map.item_path(&optional_path, &name);
                let location = self.out.map.location(&item);
                self.out.map.mark_invalid(&item);
                self.out.diags.push(Diagnostic {
                    file: location.file,
                    line: location.line,
                    column: location.column,
                    key: item,
                    message: format!(
                        "{name:?} is in both `{}` and `{}`: a node is either required or optional",
                        GATE_KEYS[required], GATE_KEYS[optional]
                    ),
                });
            }
        }
        if lists.iter().all(Vec::is_empty) && !self.out.map.is_invalid_under(path) {
            self.error(
                Some(key.span()),
                path,
                format!(
                    "a gate names no node: list at least one in {}",
                    GATE_KEYS.join(", ")
                ),
            );
            return None;
        }
        let [
            wait_for,
            wait_for_optional,
            reject_when_down,
            reject_when_down_optional,
        ] = lists;
        Some(GateSpec {
            wait_for,
            wait_for_optional,
            reject_when_down,
            reject_when_down_optional,
        })
    }

    /// One of the gate's lists of node names.
    fn node_list(&mut self, v: &Value<'_>, path: &str) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (name, span, item_path) in self.string_list(v, path).unwrap_or_default() {
            if names.contains(&name) {
                self.error(Some(span), &item_path, format!("{name:?} is listed twice"));
                continue;
            }
            self.record(&item_path, span);
            self.out.map.record_item(path, &name, &item_path);
            names.push(name);
        }
        names
    }

    /// Walk `companions`; returns the companion ids.
    fn companions(
        &mut self,
        parent: &str,
        v: &Value<'_>,
        path: &str,
        apps: &mut Apps,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        let Some(t) = self.table(v, path) else {
            return ids;
        };
        for (k, v) in t.iter() {
            let name = key_str(k);
            let key_path = join_path(path, name);
            let id = format!("{parent}-{name}");
            self.record(&key_path, k.span());
            if let Err(message) = validate::check_companion_key(name) {
                self.error(Some(k.span()), &key_path, message);
                self.out.map.mark_unloaded(&id);
                continue;
            }
            let Some(table) = self.table(v, &key_path) else {
                self.out.map.mark_unloaded(&id);
                continue;
            };
            self.app(
                &id,
                &key_path,
                Some(k.span()),
                table,
                Kind::Companion,
                Some(parent),
                apps,
            );
            ids.push(id);
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::{MAX_PARALLEL_DEFAULT, PortMapping, Protocol, START_TIMEOUT_S_DEFAULT};

    const REFERENCE: &str = r#"
[stack]
name = "demo"
network = "demo"
max_parallel = 4
start_timeout = "120s"

[apps.bitcoind]
image = "localhost/berth-demo:latest"
entrypoint = ["/bin/berth-fake"]
command = ["bitcoind", "--sync-seconds", "60"]
env = { RUST_LOG = "info" }
ports = ["127.0.0.1:18443:18443", "8080:80/tcp", "9000:9000/udp", "3000:3000"]
volumes = { data = "/data" }
tier = 0
stop_grace = "600s"
restart = "always"
secrets = ["bitcoind-rpc-password"]
labels = { "com.example.tier" = "x" }
memory = "512m"
cap_add = ["NET_BIND_SERVICE"]
user = "1000:1000"
web_ui = { port = 3000, path = "/" }

[apps.bitcoind.health]
http = { port = 8332, path = "/" }
interval = "10s"
timeout = "2s"
retries = 3
start_period = "0s"

[apps.bitcoind.companions.ui]
image = "localhost/ui:1"

[apps.electrs]
image = "localhost/electrs:1"
depends_on = { bitcoind = "healthy" }

[apps.lnd]
manifest = "apps/lnd.toml"
"#;

    const LND: &str = r#"
id = "lnd"
image = "localhost/lnd:1"
depends_on = { bitcoind = "healthy", electrs = "started" }
"#;

    fn includes(path: &str) -> Result<(String, String), String> {
        match path {
            "apps/lnd.toml" => Ok((path.to_string(), LND.to_string())),
            other => Err(format!("no file {other:?}")),
        }
    }

    const HEAD: &str = "[stack]\nname = \"demo\"\n";

    fn load(text: &str) -> Stack {
        parse_stack("berth.toml", text, &includes).unwrap_or_else(|d| panic!("{d}"))
    }

    fn errors(text: &str) -> Vec<String> {
        match parse_stack("berth.toml", text, &includes) {
            Ok(_) => Vec::new(),
            Err(d) => d.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// The stack head plus `body`: the line numbers in the tests count
    /// from the top of the whole text (the head is two lines).
    fn stack_errors(body: &str) -> Vec<String> {
        errors(&format!("{HEAD}{body}"))
    }

    #[test]
    fn reference_manifest_normalises() {
        let stack = load(REFERENCE);
        assert_eq!(stack.name, "demo");
        assert_eq!(stack.settings.network, "demo");
        assert_eq!(stack.settings.max_parallel, 4);
        assert_eq!(stack.settings.start_timeout, Duration::from_secs(120));
        assert_eq!(
            stack.apps.keys().map(String::as_str).collect::<Vec<_>>(),
            ["bitcoind", "bitcoind-ui", "electrs", "lnd"]
        );
        let b = &stack.apps["bitcoind"];
        assert_eq!(
            b.entrypoint.as_deref(),
            Some(&["/bin/berth-fake".to_string()][..])
        );
        assert_eq!(b.command.as_ref().map(Vec::len), Some(3));
        assert_eq!(b.env["RUST_LOG"], "info");
        assert_eq!(
            b.ports[0],
            PortMapping {
                host_ip: Some("127.0.0.1".into()),
                host_port: 18443,
                container_port: 18443,
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(b.ports[2].protocol, Protocol::Udp);
        assert_eq!(b.ports[3].host_ip, None);
        assert_eq!(
            b.volumes,
            vec![VolumeMount {
                name: "data".into(),
                path: "/data".into(),
                class: VolumeClass::Precious,
                snapshot_before_update: false,
            }]
        );
        assert_eq!(b.tier, Some(0));
        assert_eq!(b.stop_grace, Duration::from_secs(600));
        assert_eq!(b.restart, RestartPolicy::Always);
        assert_eq!(b.secrets, vec!["bitcoind-rpc-password".to_string()]);
        assert_eq!(b.labels["com.example.tier"], "x");
        assert_eq!(b.memory_bytes, Some(512 * 1024 * 1024));
        assert_eq!(b.cap_add, vec!["NET_BIND_SERVICE".to_string()]);
        assert_eq!(b.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            b.web_ui,
            Some(WebUi {
                host_port: 3000,
                path: "/".into()
            })
        );
        assert_eq!(
            b.health,
            Some(HealthCheck {
                kind: HealthKind::Http {
                    port: 8332,
                    path: "/".into()
                },
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(2),
                retries: 3,
                start_period: Duration::ZERO,
                progress: None,
            })
        );
        assert_eq!(b.companions, vec!["bitcoind-ui".to_string()]);

        let ui = &stack.apps["bitcoind-ui"];
        assert_eq!(ui.companion_of.as_deref(), Some("bitcoind"));
        assert_eq!(
            ui.depends_on,
            BTreeMap::from([("bitcoind".to_string(), DependsCondition::Started)])
        );

        let lnd = &stack.apps["lnd"];
        assert_eq!(lnd.image, "localhost/lnd:1");
        assert_eq!(lnd.depends_on["bitcoind"], DependsCondition::Healthy);
        assert_eq!(lnd.depends_on["electrs"], DependsCondition::Started);
    }

    #[test]
    fn settle_defaults_parses_and_is_bounded_by_start_timeout() {
        let app = "[apps.a]\nimage = \"i\"\n";
        assert_eq!(
            load(&format!("{HEAD}{app}")).settings.settle,
            Duration::from_millis(crate::model::SETTLE_MS_DEFAULT)
        );
        let stack = load(&format!("[stack]\nname = \"demo\"\nsettle = \"0s\"\n{app}"));
        assert_eq!(stack.settings.settle, Duration::ZERO);
        let stack = load(&format!("[stack]\nname = \"demo\"\nsettle = \"3s\"\n{app}"));
        assert_eq!(stack.settings.settle, Duration::from_secs(3));
        assert_eq!(
            errors(&format!(
                "[stack]\nname = \"demo\"\nstart_timeout = \"5s\"\nsettle = \"10s\"\n{app}"
            )),
            vec![
                "berth.toml:4:10: stack.settle: settle (10s) must not be longer than start_timeout (5s)"
                    .to_string()
            ]
        );
    }

    #[test]
    fn update_keys_default_parse_and_are_bounded() {
        let a = &load(&format!("{HEAD}[apps.a]\nimage = \"i\"\n")).apps["a"];
        assert_eq!(a.update, UpdatePolicy::default());
        assert_eq!(
            a.update.window,
            Duration::from_secs(crate::model::UPDATE_WINDOW_S_DEFAULT)
        );
        assert_eq!(
            a.update.min_healthy,
            Duration::from_secs(crate::model::MIN_HEALTHY_S_DEFAULT)
        );
        let a = &load(&format!(
            "{HEAD}[apps.a]\nimage = \"i\"\nupdate_window = \"60s\"\nmin_healthy = \"2s\"\ndata_version = 3\n"
        ))
        .apps["a"];
        assert_eq!(a.update.window, Duration::from_secs(60));
        assert_eq!(a.update.min_healthy, Duration::from_secs(2));
        assert_eq!(a.update.data_version, 3);
        // A window shorter than the default min_healthy shortens it.
        let a = &load(&format!(
            "{HEAD}[apps.a]\nimage = \"i\"\nupdate_window = \"2s\"\n"
        ))
        .apps["a"];
        assert_eq!(a.update.min_healthy, Duration::from_secs(2));
        assert_eq!(
            errors(&format!(
                "{HEAD}[apps.a]\nimage = \"i\"\nupdate_window = \"10s\"\nmin_healthy = \"20s\"\n"
            )),
            vec![
                "berth.toml:6:15: apps.a.min_healthy: min_healthy (20s) must not be longer than update_window (10s)"
                    .to_string()
            ]
        );
        let errs = errors(&format!(
            "{HEAD}[apps.a]\nimage = \"i\"\nupdate_window = \"500ms\"\ndata_version = -1\nsnapshot_before_update = \"yes\"\n"
        ));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("apps.a.update_window"), "{errs:?}");
        assert!(
            errs[1].contains("apps.a.data_version: data_version -1 is out of range 0-1000000"),
            "{errs:?}"
        );
        assert!(
            errs[2].contains("apps.a.snapshot_before_update: expected true or false"),
            "{errs:?}"
        );
    }

    #[test]
    fn volumes_long_form_classes_and_snapshots() {
        let a = &load(&format!(
            "{HEAD}[apps.a]\nimage = \"i\"\nsnapshot_before_update = true\n\
             volumes = {{ wallet = \"/wallet\", chain = {{ path = \"/chain/\", class = \"regenerable\" }}, \
             tmp = {{ path = \"/tmp\", class = \"cache\" }}, db = {{ path = \"/db\", class = \"precious\" }} }}\n"
        ))
        .apps["a"];
        let by_name = |n: &str| a.volumes.iter().find(|v| v.name == n).expect("volume");
        // A volume without a class is precious: the safe default.
        assert_eq!(by_name("wallet").class, VolumeClass::Precious);
        assert_eq!(by_name("chain").class, VolumeClass::Regenerable);
        assert_eq!(by_name("chain").path, "/chain");
        assert_eq!(by_name("tmp").class, VolumeClass::Cache);
        let snapped: Vec<_> = a.snapshot_volumes().map(|v| v.name.as_str()).collect();
        assert_eq!(snapped, ["db", "wallet"]);
        let skipped: Vec<_> = a.unsnapshotted_volumes().map(|v| v.name.as_str()).collect();
        assert_eq!(skipped, ["chain", "tmp"]);

        // Per volume: only the volume that asks is snapshotted.
        let a = &load(&format!(
            "{HEAD}[apps.a]\nimage = \"i\"\nvolumes.db = {{ path = \"/db\", snapshot_before_update = true }}\nvolumes.logs = \"/logs\"\n"
        ))
        .apps["a"];
        let snapped: Vec<_> = a.snapshot_volumes().map(|v| v.name.as_str()).collect();
        assert_eq!(snapped, ["db"]);
        // Without the key, nothing is.
        let a = &load(&format!(
            "{HEAD}[apps.a]\nimage = \"i\"\nvolumes = {{ db = \"/db\" }}\n"
        ))
        .apps["a"];
        assert_eq!(a.snapshot_volumes().count(), 0);

        let errs = errors(&format!(
            "{HEAD}[apps.a]\nimage = \"i\"\nvolumes.a = {{ class = \"cache\" }}\n\
             volumes.b = {{ path = \"/b\", class = \"gold\" }}\n\
             volumes.c = {{ path = \"/c\", class = \"cache\", snapshot_before_update = true }}\n\
             volumes.d = {{ path = \"/d\", size = 1 }}\n"
        ));
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(
            errs[0].contains("apps.a.volumes.a: volume \"a\" is missing required key `path`"),
            "{errs:?}"
        );
        assert!(
            errs[1].contains(
                "apps.a.volumes.b.class: unknown volume class \"gold\", expected one of: precious, regenerable, cache"
            ),
            "{errs:?}"
        );
        assert!(
            errs[2].contains(
                "apps.a.volumes.c.snapshot_before_update: volume \"c\" is cache: only a precious volume is snapshotted"
            ),
            "{errs:?}"
        );
        assert!(
            errs[3].contains("apps.a.volumes.d.size: unknown key `size`, expected one of: path, class, snapshot_before_update"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_stored_app_without_update_keys_loads_with_defaults() {
        let a = &load(&format!(
            "{HEAD}[apps.a]\nimage = \"i\"\nvolumes = {{ db = \"/db\" }}\n"
        ))
        .apps["a"];
        let mut json = serde_json::to_value(a).expect("serialise");
        json.as_object_mut().expect("object").remove("update");
        json["volumes"][0]
            .as_object_mut()
            .expect("object")
            .retain(|k, _| k == "name" || k == "path");
        let back: App = serde_json::from_value(json).expect("old record loads");
        assert_eq!(&back, a);
    }

    #[test]
    fn defaults_apply() {
        let stack = load(&format!(
            "{HEAD}[apps.a]\nimage = \"i\"\nports = [\"80:80\"]\nweb_ui = {{ port = 80 }}\nhealth = {{ http = {{ port = 80 }} }}\n"
        ));
        assert_eq!(stack.settings.network, "demo");
        assert_eq!(stack.settings.max_parallel, MAX_PARALLEL_DEFAULT);
        assert_eq!(
            stack.settings.start_timeout,
            Duration::from_secs(START_TIMEOUT_S_DEFAULT)
        );
        let a = &stack.apps["a"];
        assert_eq!(a.stop_grace, Duration::from_secs(STOP_GRACE_S_DEFAULT));
        assert_eq!(a.restart, RestartPolicy::Always);
        assert_eq!(a.tier, None);
        assert_eq!(a.entrypoint, None);
        assert_eq!(a.command, None);
        assert_eq!(a.web_ui.as_ref().map(|w| w.path.as_str()), Some("/"));
        let health = a.health.as_ref().expect("health");
        assert_eq!(
            health.kind,
            HealthKind::Http {
                port: 80,
                path: "/".into()
            }
        );
        assert_eq!(
            health.interval,
            Duration::from_secs(HEALTH_INTERVAL_S_DEFAULT)
        );
        assert_eq!(
            health.timeout,
            Duration::from_secs(HEALTH_TIMEOUT_S_DEFAULT)
        );
        assert_eq!(health.retries, HEALTH_RETRIES_DEFAULT);
        assert_eq!(health.start_period, Duration::ZERO);
    }

    #[test]
    fn memory_accepts_bytes_and_suffixes_and_capabilities_lose_their_prefix() {
        let stack = load(&format!(
            "{HEAD}[apps.a]\nimage = \"i\"\nmemory = 8388608\ncap_add = [\"CAP_NET_ADMIN\"]\n[apps.b]\nimage = \"i\"\nmemory = \"2g\"\n"
        ));
        assert_eq!(stack.apps["a"].memory_bytes, Some(8 << 20));
        assert_eq!(stack.apps["a"].cap_add, vec!["NET_ADMIN".to_string()]);
        assert_eq!(stack.apps["b"].memory_bytes, Some(2 << 30));
    }

    #[test]
    fn diagnostic_display() {
        let mut d = Diagnostic {
            file: "berth.toml".into(),
            line: Some(3),
            column: Some(7),
            key: "apps.a.image".into(),
            message: "image must not be empty".into(),
        };
        assert_eq!(
            d.to_string(),
            "berth.toml:3:7: apps.a.image: image must not be empty"
        );
        d.line = None;
        d.column = None;
        assert_eq!(
            d.to_string(),
            "berth.toml: apps.a.image: image must not be empty"
        );
        d.key.clear();
        assert_eq!(d.to_string(), "berth.toml: image must not be empty");
        let both = Diagnostics(vec![d.clone(), d]);
        assert_eq!(
            both.to_string(),
            "berth.toml: image must not be empty\nberth.toml: image must not be empty"
        );
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_location() {
        let errs = stack_errors(
            "colour = 1\n[apps.a]\nimage = \"i\"\nimgae = \"j\"\nweb_ui = { port = 80, size = 2 }\nports = [\"80:80\"]\n[apps.a.health]\ntcp = { port = 1, addr = \"x\" }\nintervall = \"1s\"\n",
        );
        assert_eq!(
            errs,
            [
                "berth.toml:3:1: stack.colour: unknown key `colour`, expected one of: name, network, max_parallel, start_timeout, settle",
                "berth.toml:6:1: apps.a.imgae: unknown key `imgae`, expected one of: image, entrypoint, command, env, ports, volumes, depends_on, tier, stop_grace, restart, secrets, labels, memory, cap_add, user, web_ui, health, probe, gate, companions, update_window, min_healthy, snapshot_before_update, data_version, manifest",
                "berth.toml:7:23: apps.a.web_ui.size: unknown key `size`, expected one of: port, path",
                "berth.toml:10:19: apps.a.health.tcp.addr: unknown key `addr`, expected one of: port",
                "berth.toml:11:1: apps.a.health.intervall: unknown key `intervall`, expected one of: http, tcp, command, interval, timeout, retries, start_period, progress",
            ]
        );
    }

    #[test]
    fn syntax_error_is_one_located_diagnostic() {
        let errs = stack_errors("[apps.a]\nimage = \"i\nports = []\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("berth.toml:4:"), "{errs:?}");
        assert!(errs[0].contains("invalid toml"), "{errs:?}");
    }

    #[test]
    fn columns_count_characters_and_crlf_lines_count_once() {
        let errs = errors(
            "[stack]\r\nname = \"demo\"\r\n[apps.a]\r\nimage = \"i\"\r\nlabels = { \"é\" = \"x\", \"io.berth.x\" = \"y\" }\r\n",
        );
        assert_eq!(
            errs,
            [
                "berth.toml:5:23: apps.a.labels.\"io.berth.x\": label \"io.berth.x\" is reserved: keys starting with \"io.berth.\" belong to berth"
            ]
        );
    }

    #[test]
    fn all_problems_are_reported_in_file_order() {
        let errs = stack_errors(
            "max_parallel = 0\n[apps.b]\nimage = \"i\"\ndepends_on = { ghost = \"started\" }\n[apps.a]\nimage = \"\"\nstop_grace = \"soon\"\n",
        );
        assert_eq!(
            errs,
            [
                "berth.toml:3:16: stack.max_parallel: max_parallel 0 is out of range 1-32",
                "berth.toml:6:16: apps.b.depends_on.ghost: unknown dependency \"ghost\"",
                "berth.toml:8:9: apps.a.image: image must not be empty",
                "berth.toml:9:14: apps.a.stop_grace: bad duration \"soon\": expected a number, e.g. \"30s\"",
            ]
        );
    }

    #[test]
    fn dependency_rules() {
        assert_eq!(
            stack_errors(
                "[apps.lnd]\nimage = \"i\"\ndepends_on = { bitcoin = \"started\" }\n[apps.bitcoind]\nimage = \"i\"\n"
            ),
            [
                "berth.toml:5:16: apps.lnd.depends_on.bitcoin: unknown dependency \"bitcoin\" (did you mean \"bitcoind\"?)"
            ]
        );
        assert_eq!(
            stack_errors("[apps.a]\nimage = \"i\"\ndepends_on = { a = \"started\" }\n"),
            ["berth.toml:5:16: apps.a.depends_on.a: app \"a\" depends on itself"]
        );
        assert_eq!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\ndepends_on = { b = \"started\" }\n[apps.b]\nimage = \"i\"\ndepends_on = { a = \"started\" }\n"
            ),
            ["berth.toml:5:16: apps.a.depends_on.b: dependency cycle: a -> b -> a"]
        );
        assert_eq!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\ndepends_on = { b = \"ready\" }\n[apps.b]\nimage = \"i\"\n"
            ),
            [
                "berth.toml:5:20: apps.a.depends_on.b: unknown condition \"ready\" for dependency \"b\": use \"started\" or \"healthy\""
            ]
        );
        assert_eq!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\ndepends_on = { b = \"healthy\" }\n[apps.b]\nimage = \"i\"\n"
            ),
            [
                "berth.toml:5:16: apps.a.depends_on.b: app \"a\" waits for \"b\" to be healthy, but \"b\" has no health check (add one, or use \"started\")"
            ]
        );
    }

    #[test]
    fn derived_problems_are_not_piled_on() {
        // b's health check is broken: a's healthy dependency on it is not
        // also reported as "no health check".
        let errs = stack_errors(
            "[apps.a]\nimage = \"i\"\ndepends_on = { b = \"healthy\" }\n[apps.b]\nimage = \"i\"\nhealth = { tcp = { port = 0 } }\n",
        );
        assert_eq!(
            errs,
            ["berth.toml:8:27: apps.b.health.tcp.port: port 0 is out of range 1-65535"]
        );
        // A broken port entry does not make the web ui "unpublished".
        let errs =
            stack_errors("[apps.a]\nimage = \"i\"\nports = [\"3000\"]\nweb_ui = { port = 3000 }\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        // A dependency on an app whose include failed is not unknown.
        let errs = stack_errors(
            "[apps.a]\nimage = \"i\"\ndepends_on = { b = \"healthy\" }\n[apps.b]\nmanifest = \"missing.toml\"\n",
        );
        assert_eq!(
            errs,
            [
                "berth.toml:7:12: apps.b.manifest: cannot read app manifest \"missing.toml\": no file \"missing.toml\""
            ]
        );
    }

    #[test]
    fn host_port_conflicts() {
        let conflict = |a: &str, b: &str| {
            !stack_errors(&format!(
                "[apps.a]\nimage = \"i\"\nports = [\"{a}\"]\n[apps.b]\nimage = \"i\"\nports = [\"{b}\"]\n"
            ))
            .is_empty()
        };
        assert!(conflict("8080:80", "8080:81"));
        assert!(conflict("127.0.0.1:8080:80", "8080:80"));
        assert!(conflict("8080:80", "127.0.0.1:8080:80"));
        assert!(conflict("0.0.0.0:8080:80", "127.0.0.1:8080:80"));
        assert!(conflict("127.0.0.1:8080:80", "127.0.0.1:8080:81"));
        assert!(!conflict("127.0.0.1:8080:80", "127.0.0.2:8080:80"));
        assert!(!conflict("8080:80/tcp", "8080:80/udp"));
        assert!(!conflict("8080:80", "8081:80"));
        assert_eq!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\nports = [\"8080:80\"]\n[apps.b]\nimage = \"i\"\nports = [\"127.0.0.1:8080:80\"]\n"
            ),
            [
                "berth.toml:8:10: apps.b.ports[0]: host port 8080/tcp of app \"b\" (\"127.0.0.1:8080:80/tcp\") is already published by app \"a\" (\"8080:80/tcp\")"
            ]
        );
    }

    #[test]
    fn web_ui_must_be_a_published_host_port() {
        assert_eq!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\nports = [\"8080:80\"]\nweb_ui = { port = 80 }\n"
            ),
            [
                "berth.toml:6:19: apps.a.web_ui.port: web ui port 80 is not a host port app \"a\" publishes (it publishes 8080)"
            ]
        );
    }

    #[test]
    fn health_needs_exactly_one_kind_and_positive_retries() {
        assert_eq!(
            stack_errors("[apps.a]\nimage = \"i\"\n[apps.a.health]\nretries = 3\n"),
            [
                "berth.toml:5:9: apps.a.health: a health check needs one of `http`, `tcp` or `command`"
            ]
        );
        assert_eq!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\n[apps.a.health]\ntcp = { port = 1 }\ncommand = [\"true\"]\n"
            ),
            [
                "berth.toml:7:1: apps.a.health.command: a health check has exactly one of `http`, `tcp` or `command`, found `tcp` and `command`"
            ]
        );
        assert_eq!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\n[apps.a.health]\ntcp = { port = 1 }\nretries = 0\n"
            ),
            ["berth.toml:7:11: apps.a.health.retries: retries 0 is out of range 1-100"]
        );
        assert_eq!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\nhealth = { tcp = { port = 1 }, retries = \"three\" }\n"
            ),
            ["berth.toml:5:42: apps.a.health.retries: expected an integer, found string \"three\""]
        );
    }

    #[test]
    fn progress_checks_normalise_with_defaults() {
        use crate::model::{PROGRESS_LABEL_CHAIN, PROGRESS_LABEL_DEFAULT, ProgressSource};
        let stack = load(&format!(
            "{HEAD}[apps.a]\nimage = \"i\"\nprobe = {{ kind = \"bitcoind\", port = 8332 }}\n\
             [apps.a.health]\ntcp = {{ port = 8332 }}\ninterval = \"1s\"\nstart_period = \"2s\"\n\
             [apps.a.health.progress]\nprobe = \"height\"\nwithin = \"4s\"\n\
             [apps.b]\nimage = \"i\"\nhealth = {{ tcp = {{ port = 1 }}, progress = {{ http = {{ port = 9100, pointer = \"\" }}, within = \"11s\", label = \" indexed height \" }} }}\n\
             [apps.c]\nimage = \"i\"\nprobe = {{ kind = \"monerod\", port = 18081 }}\n\
             [apps.c.companions.ui]\nimage = \"i\"\nhealth = {{ tcp = {{ port = 1 }}, progress = {{ command = [\"cat\", \"/h\"], within = \"1h\" }} }}\n\
             [apps.d]\nimage = \"i\"\nhealth = {{ tcp = {{ port = 1 }} }}\n"
        ));
        let progress = |id: &str| {
            stack.apps[id]
                .health
                .as_ref()
                .expect("health")
                .progress
                .clone()
        };
        let a = progress("a").expect("progress");
        assert_eq!(a.source, ProgressSource::ProbeHeight);
        assert_eq!(a.within, Duration::from_secs(4));
        assert_eq!(a.label, PROGRESS_LABEL_CHAIN);
        // The default interval is 10s: 11s is longer. An empty pointer is
        // the whole answer; the label is trimmed.
        let b = progress("b").expect("progress");
        assert_eq!(
            b.source,
            ProgressSource::Http {
                port: 9100,
                path: "/".into(),
                pointer: String::new()
            }
        );
        assert_eq!(b.label, "indexed height");
        // A companion may have one too.
        let ui = progress("c-ui").expect("progress");
        assert_eq!(
            ui.source,
            ProgressSource::Command {
                argv: vec!["cat".into(), "/h".into()]
            }
        );
        assert_eq!(ui.label, PROGRESS_LABEL_DEFAULT);
        assert_eq!(progress("d"), None);
    }

    #[test]
    fn progress_rules() {
        let app = |health: &str| {
            stack_errors(&format!(
                "[apps.a]\nimage = \"i\"\nprobe = {{ kind = \"bitcoind\", port = 1 }}\nhealth = {{ tcp = {{ port = 1 }}, {health} }}\n"
            ))
        };
        // `within` against the default interval (10s) and a given one.
        assert_eq!(
            app("progress = { probe = \"height\", within = \"10s\" }"),
            [
                "berth.toml:6:72: apps.a.health.progress.within: within \"10s\" must be longer than the check's interval \"10s\": the value is read once per interval"
            ]
        );
        assert!(
            app("interval = \"1s\", progress = { probe = \"height\", within = \"1001ms\" }")
                .is_empty()
        );
        assert_eq!(
            app("interval = \"2m\", progress = { probe = \"height\", within = \"90s\" }"),
            [
                "berth.toml:6:89: apps.a.health.progress.within: within \"1m30s\" must be longer than the check's interval \"2m\": the value is read once per interval"
            ]
        );
        // A bad interval is reported once, not again through `within`.
        assert_eq!(
            app("interval = \"0s\", progress = { probe = \"height\", within = \"1s\" }"),
            ["berth.toml:6:43: apps.a.health.interval: duration \"0s\" must be greater than zero"]
        );
        // Wrong types.
        assert_eq!(
            app("progress = { probe = true, within = \"1h\" }"),
            [
                "berth.toml:6:53: apps.a.health.progress.probe: expected a string, found boolean true"
            ]
        );
        assert_eq!(
            app("progress = { command = \"cat /h\", within = \"1h\" }"),
            [
                "berth.toml:6:55: apps.a.health.progress.command: expected an array of strings, found string \"cat /h\""
            ]
        );
        assert_eq!(
            app("progress = { http = { port = 1, pointer = 3 }, within = \"1h\", label = 5 }"),
            [
                "berth.toml:6:74: apps.a.health.progress.http.pointer: expected a string, found integer 3",
                "berth.toml:6:102: apps.a.health.progress.label: expected a string, found integer 5",
            ]
        );
        // The probe rule needs the whole app: a broken probe is not also
        // reported as missing.
        assert_eq!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\nprobe = { kind = \"bitcoin\", port = 1 }\nhealth = { tcp = { port = 1 }, progress = { probe = \"height\", within = \"1h\" } }\n"
            ),
            [
                "berth.toml:5:18: apps.a.probe.kind: unknown probe kind \"bitcoin\": use \"bitcoind\", \"monerod\", \"http\" or \"tcp\""
            ]
        );
        for (value, ok) in [
            ("", true),
            ("/", true),
            ("/result/blocks", true),
            ("/a~0b/c~1d/0", true),
            ("result", false),
            ("/a~", false),
            ("/a~2", false),
            ("/a\u{7}", false),
        ] {
            assert_eq!(validate::check_json_pointer(value).is_ok(), ok, "{value:?}");
        }
        assert_eq!(
            validate::check_progress_label("x".repeat(41).as_str()).map_err(|_| ()),
            Err(())
        );
        assert_eq!(
            validate::check_progress_label("a\nb"),
            Err("invalid label \"a\\nb\": one line, no control characters".into())
        );
    }

    #[test]
    fn validate_progress_without_a_source_map_still_reports() {
        let mut stack = load(REFERENCE);
        let health = stack
            .apps
            .get_mut("bitcoind")
            .unwrap()
            .health
            .as_mut()
            .unwrap();
        health.progress = Some(crate::model::ProgressCheck {
            source: crate::model::ProgressSource::ProbeHeight,
            within: Duration::from_secs(3600),
            label: "chain tip".into(),
        });
        let diags = validate::validate_stack(&stack, &SourceMap::new("generated"));
        assert_eq!(
            diags.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "generated: apps.bitcoind.health.progress.probe: the progress value comes from app \"bitcoind\"'s chain probe, but it has none: add `apps.bitcoind.probe` of kind \"bitcoind\" or \"monerod\""
            ]
        );
    }

    #[test]
    fn probes_and_gates_normalise_with_defaults() {
        let stack = load(&format!(
            "{HEAD}[apps.a]\nimage = \"i\"\nsecrets = [\"pw\"]\nprobe = {{ kind = \"bitcoind\", port = 8332, password_secret = \"pw\" }}\n\
             [apps.b]\nimage = \"i\"\nprobe = {{ kind = \"http\", port = 80 }}\n\
             [apps.c]\nimage = \"i\"\nprobe = {{ kind = \"monerod\", port = 18081, down_after = \"4s\", recovery_after = \"3s\" }}\n\
             [apps.d]\nimage = \"i\"\ngate = {{ wait_for = [\"a\", \"c\"], wait_for_optional = [\"b\"], reject_when_down = [\"c\"] }}\n"
        ));
        let a = stack.apps["a"].probe.as_ref().expect("probe");
        assert_eq!(
            a.kind,
            ProbeKind::Bitcoind {
                user: None,
                password_secret: Some("pw".into())
            }
        );
        assert_eq!(a.port, 8332);
        assert_eq!(a.interval, Duration::from_secs(PROBE_INTERVAL_S_DEFAULT));
        assert_eq!(a.timeout, Duration::from_secs(PROBE_TIMEOUT_S_DEFAULT));
        assert_eq!(a.down_after, Duration::from_secs(DOWN_AFTER_S_DEFAULT));
        assert_eq!(
            a.recovery_after,
            Duration::from_secs(RECOVERY_AFTER_S_DEFAULT)
        );
        assert_eq!(
            stack.apps["b"].probe.as_ref().map(|p| &p.kind),
            Some(&ProbeKind::Http { path: "/".into() })
        );
        let c = stack.apps["c"].probe.as_ref().expect("probe");
        assert_eq!(c.kind, ProbeKind::Monerod);
        assert_eq!(
            (c.down_after, c.recovery_after),
            (Duration::from_secs(4), Duration::from_secs(3))
        );
        let d = stack.apps["d"].gate.as_ref().expect("gate");
        assert_eq!(d.wait_for, ["a", "c"]);
        assert_eq!(d.wait_for_optional, ["b"]);
        assert_eq!(d.reject_when_down, ["c"]);
        assert!(d.reject_when_down_optional.is_empty());
        assert_eq!(d.nodes().into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(stack.apps["a"].gate.is_none());
    }

    #[test]
    fn gate_rules() {
        assert_eq!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\nprobe = { kind = \"tcp\", port = 1 }\n[apps.b]\nimage = \"i\"\ngate = { wait_for = [\"a\"], reject_when_down = [\"ghost\", \"a\", \"b\"] }\n"
            ),
            [
                "berth.toml:8:48: apps.b.gate.reject_when_down[0]: unknown app \"ghost\"",
                "berth.toml:8:62: apps.b.gate.reject_when_down[2]: app \"b\" cannot gate on itself",
            ]
        );
        // Optional waits and failover do not deadlock: only required waits.
        assert!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\ndepends_on = { b = \"started\" }\nprobe = { kind = \"tcp\", port = 1 }\n[apps.b]\nimage = \"i\"\ngate = { wait_for_optional = [\"a\"], reject_when_down = [\"a\"] }\n"
            )
            .is_empty()
        );
        // A dependency cycle is reported once, not also as a gate deadlock.
        assert_eq!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\ndepends_on = { b = \"started\" }\nprobe = { kind = \"tcp\", port = 1 }\n[apps.b]\nimage = \"i\"\ndepends_on = { a = \"started\" }\ngate = { wait_for = [\"a\"] }\n"
            ),
            ["berth.toml:5:16: apps.a.depends_on.b: dependency cycle: a -> b -> a"]
        );
        // A standalone app file cannot name other apps.
        let errs = match parse_app_file(
            "lnd.toml",
            "id = \"lnd\"\nimage = \"i\"\ngate = { wait_for = [\"bitcoind\"] }\n",
        ) {
            Ok(_) => Vec::new(),
            Err(d) => d.0.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(
            errs,
            [
                "lnd.toml:3:22: gate.wait_for[0]: unknown app \"bitcoind\" (a standalone app file cannot gate on other apps: include it from a stack file)"
            ]
        );
    }

    #[test]
    fn validate_gates_without_a_source_map_still_reports() {
        let mut stack = load(REFERENCE);
        stack.apps.get_mut("lnd").unwrap().gate = Some(GateSpec {
            wait_for: vec!["bitcoind".into()],
            ..GateSpec::default()
        });
        stack.apps.get_mut("electrs").unwrap().probe = Some(ProbeSpec {
            kind: ProbeKind::Bitcoind {
                user: None,
                password_secret: Some("nope".into()),
            },
            port: 1,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            down_after: Duration::from_secs(1),
            recovery_after: Duration::from_secs(1),
        });
        let diags = validate::validate_stack(&stack, &SourceMap::new("generated"));
        assert_eq!(
            diags.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "generated: apps.electrs.probe.password_secret: password_secret \"nope\" is not one of app \"electrs\"'s secrets: add it to `secrets`",
                "generated: apps.lnd.gate.wait_for: app \"bitcoind\" has no probe, so berth cannot read its chain state (add `apps.bitcoind.probe`)",
            ]
        );
    }

    #[test]
    fn companion_rules() {
        assert_eq!(
            stack_errors(
                "[apps.a]\nimage = \"i\"\n[apps.a.companions.b]\nimage = \"i\"\n[apps.a-b]\nimage = \"i\"\n"
            ),
            [
                "berth.toml:5:20: apps.a.companions.b: companion id \"a-b\" of app \"a\" collides with an app of the same id: rename the companion"
            ]
        );
        let long_parent = "p".repeat(31);
        let errs = errors(&format!(
            "[stack]\nname = \"{}\"\n[apps.{long_parent}]\nimage = \"i\"\n[apps.{long_parent}.companions.ui]\nimage = \"i\"\n",
            "s".repeat(31)
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("is 66 characters long, at most 63"),
            "{errs:?}"
        );
    }

    #[test]
    fn include_rules() {
        let read = |path: &str| -> Result<(String, String), String> {
            match path {
                "ok.toml" => Ok(("apps/ok.toml".into(), "image = \"i\"\n".into())),
                "wrong-id.toml" => Ok((
                    "apps/wrong-id.toml".into(),
                    "id = \"other\"\nimage = \"i\"\n".into(),
                )),
                "broken.toml" => Ok(("apps/broken.toml".into(), "image = \n".into())),
                "bad-key.toml" => Ok((
                    "apps/bad-key.toml".into(),
                    "image = \"i\"\nimage_tag = \"x\"\n".into(),
                )),
                _ => Err("no such file".into()),
            }
        };
        let run = |body: &str| -> Vec<String> {
            match parse_stack("berth.toml", &format!("{HEAD}{body}"), &read) {
                Ok(_) => Vec::new(),
                Err(d) => d.0.iter().map(ToString::to_string).collect(),
            }
        };
        assert!(run("[apps.x]\nmanifest = \"ok.toml\"\n").is_empty());
        assert_eq!(
            run("[apps.x]\nmanifest = \"wrong-id.toml\"\n"),
            [
                "apps/wrong-id.toml:1:6: apps.x.id: id \"other\" does not match the app's key \"x\" in the stack file"
            ]
        );
        let errs = run("[apps.x]\nmanifest = \"broken.toml\"\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("apps/broken.toml:1:"), "{errs:?}");
        assert_eq!(
            run("[apps.x]\nmanifest = \"bad-key.toml\"\n"),
            [
                "apps/bad-key.toml:2:1: apps.x.image_tag: unknown key `image_tag`, expected one of: id, image, entrypoint, command, env, ports, volumes, depends_on, tier, stop_grace, restart, secrets, labels, memory, cap_add, user, web_ui, health, probe, gate, companions, update_window, min_healthy, snapshot_before_update, data_version"
            ]
        );
        assert_eq!(
            run("[apps.x]\nmanifest = \"gone.toml\"\n"),
            [
                "berth.toml:4:12: apps.x.manifest: cannot read app manifest \"gone.toml\": no such file"
            ]
        );
        assert_eq!(
            run("[apps.x]\nmanifest = \"ok.toml\"\nimage = \"j\"\n"),
            [
                "berth.toml:5:1: apps.x.image: `image` cannot be combined with `manifest`: app \"x\" is defined in \"ok.toml\""
            ]
        );
    }

    #[test]
    fn standalone_app_file() {
        let stack = parse_app_file(
            "lnd.toml",
            "id = \"lnd\"\nimage = \"localhost/lnd:1\"\n[companions.ui]\nimage = \"u\"\n",
        )
        .unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(stack.name, STANDALONE_STACK_NAME);
        assert_eq!(stack.settings.network, "berth");
        assert_eq!(stack.settings.max_parallel, MAX_PARALLEL_DEFAULT);
        assert_eq!(stack.apps.keys().collect::<Vec<_>>(), ["lnd", "lnd-ui"]);

        let errs = |text: &str| -> Vec<String> {
            match parse_app_file("lnd.toml", text) {
                Ok(_) => Vec::new(),
                Err(d) => d.0.iter().map(ToString::to_string).collect(),
            }
        };
        assert_eq!(
            errs("image = \"i\"\n"),
            ["lnd.toml: id: missing required key `id`: a standalone app file names its app"]
        );
        assert_eq!(
            errs("id = \"Lnd\"\nimage = \"i\"\n"),
            [
                "lnd.toml:1:6: id: invalid app id \"Lnd\": use 1 to 31 characters, a lowercase letter followed by lowercase letters, digits or '-', not ending with '-'"
            ]
        );
        assert_eq!(
            errs("id = \"lnd\"\nimage = \"i\"\ndepends_on = { bitcoind = \"healthy\" }\n"),
            [
                "lnd.toml:3:16: depends_on.bitcoind: unknown dependency \"bitcoind\" (a standalone app file cannot depend on other apps: include it from a stack file)"
            ]
        );
        assert_eq!(
            errs("id = \"lnd\"\nimage = \"i\"\nmanifest = \"x.toml\"\n"),
            [
                "lnd.toml:3:1: manifest: `manifest` is not allowed in an app file: includes do not nest"
            ]
        );
    }

    #[test]
    fn oversized_manifest_is_rejected_without_parsing() {
        let text = format!("{HEAD}# {}\n", "x".repeat(validate::MANIFEST_BYTES_MAX));
        let errs = errors(&text);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("berth.toml: manifest is too large"),
            "{errs:?}"
        );
    }

    #[test]
    fn validate_stack_without_a_source_map_still_reports() {
        let mut stack = load(REFERENCE);
        stack
            .apps
            .get_mut("electrs")
            .unwrap()
            .depends_on
            .insert("ghost".into(), DependsCondition::Started);
        let diags = validate::validate_stack(&stack, &SourceMap::new("generated"));
        assert_eq!(
            diags.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["generated: apps.electrs.depends_on.ghost: unknown dependency \"ghost\""]
        );
    }

    /// One edit of a manifest text, applied at a char boundary.
    #[derive(Debug, Clone)]
    enum Edit {
        Delete { at: usize, len: usize },
        Insert { at: usize, text: String },
        DuplicateLine { line: usize },
    }

    fn apply(text: &str, edit: &Edit) -> String {
        let boundary = |at: usize| {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            at
        };
        match edit {
            Edit::Delete { at, len } => {
                let start = boundary(*at);
                let end = boundary(start + len).max(start);
                format!("{}{}", &text[..start], &text[end..])
            }
            Edit::Insert { at, text: insert } => {
                let at = boundary(*at);
                format!("{}{insert}{}", &text[..at], &text[at..])
            }
            Edit::DuplicateLine { line } => {
                let lines: Vec<&str> = text.lines().collect();
                let i = line % lines.len().max(1);
                let mut out: Vec<&str> = lines.clone();
                if let Some(l) = lines.get(i) {
                    out.insert(i, l);
                }
                out.join("\n")
            }
        }
    }

    fn arb_edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (any::<usize>(), 1usize..24).prop_map(|(at, len)| Edit::Delete { at, len }),
            (any::<usize>(), "[a-z0-9_.\\-=\"'\\[\\]{}, \n:/#é]{0,12}")
                .prop_map(|(at, text)| Edit::Insert { at, text }),
            any::<usize>().prop_map(|line| Edit::DuplicateLine { line }),
        ]
    }

    /// Keys the structured fuzzer draws from: every key the format knows,
    /// some app ids (so dependencies and companions resolve) and a stray.
    const FUZZ_KEYS: &[&str] = &[
        "image",
        "entrypoint",
        "command",
        "env",
        "ports",
        "volumes",
        "depends_on",
        "tier",
        "stop_grace",
        "restart",
        "secrets",
        "labels",
        "memory",
        "cap_add",
        "user",
        "web_ui",
        "health",
        "probe",
        "gate",
        "companions",
        "update_window",
        "min_healthy",
        "snapshot_before_update",
        "data_version",
        "manifest",
        "id",
        "kind",
        "user",
        "password_secret",
        "down_after",
        "recovery_after",
        "wait_for",
        "wait_for_optional",
        "reject_when_down",
        "reject_when_down_optional",
        "http",
        "tcp",
        "port",
        "path",
        "interval",
        "timeout",
        "retries",
        "start_period",
        "progress",
        "within",
        "label",
        "pointer",
        "a",
        "b",
        "c",
        "a-b",
        "ui",
        "bogus",
    ];
    const FUZZ_STRINGS: &[&str] = &[
        "",
        "i",
        "/data",
        "data",
        "8080:80",
        "127.0.0.1:8080:80",
        "8080:80/udp",
        "[::1]:1:2",
        "started",
        "healthy",
        "30s",
        "0s",
        "1h",
        "512m",
        "0",
        "always",
        "no",
        "NET_ADMIN",
        "a",
        "b",
        "a-b",
        "inc.toml",
        "io.berth.x",
        "/run/secrets",
        "/",
        "bitcoind",
        "monerod",
        "http",
        "tcp",
        "height",
        "/blocks",
    ];

    fn arb_toml_value() -> impl Strategy<Value = toml::Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(toml::Value::Integer),
            prop::sample::select(vec![0i64, 1, 3, 80, 8080, 65535, 65536, -1, 1000, 1001])
                .prop_map(toml::Value::Integer),
            prop::sample::select(FUZZ_STRINGS).prop_map(|s| toml::Value::String(s.into())),
            any::<bool>().prop_map(toml::Value::Boolean),
        ];
        leaf.prop_recursive(3, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
                prop::collection::btree_map(prop::sample::select(FUZZ_KEYS), inner, 0..5).prop_map(
                    |m| {
                        toml::Value::Table(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                    }
                ),
            ]
        })
    }

    /// A well-formed TOML stack file made of known keys and random values.
    fn arb_stack_text() -> impl Strategy<Value = String> {
        let app =
            prop::collection::btree_map(prop::sample::select(FUZZ_KEYS), arb_toml_value(), 0..8);
        (
            any::<bool>(),
            prop::collection::btree_map(
                prop::sample::select(&["a", "b", "c", "a-b", "B", "a-"][..]),
                app,
                0..5,
            ),
        )
            .prop_map(|(with_stack, apps)| {
                let mut root = toml::Table::new();
                if with_stack {
                    let mut stack = toml::Table::new();
                    stack.insert("name".into(), toml::Value::String("demo".into()));
                    root.insert("stack".into(), toml::Value::Table(stack));
                }
                let apps: toml::Table = apps
                    .into_iter()
                    .map(|(id, keys)| {
                        let mut table: toml::Table =
                            keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                        // Most apps get a good image, so some stacks load.
                        table
                            .entry("image")
                            .or_insert_with(|| toml::Value::String("i".into()));
                        (id.to_string(), toml::Value::Table(table))
                    })
                    .collect();
                root.insert("apps".into(), toml::Value::Table(apps));
                toml::to_string(&root).unwrap_or_default()
            })
    }

    #[test]
    fn every_toml_spelling_of_the_stack_table_is_a_stack_file() {
        for text in [
            "[stack]\nname = \"x\"\n",
            "[ stack ]\nname = \"x\"\n",
            "[\"stack\"]\nname = \"x\"\n",
            "['stack']\nname = \"x\"\n",
            "[stack] # the stack\nname = \"x\"\n",
            "stack.name = \"x\"\n",
            "stack = { name = \"x\" }\n",
            "\"stack\".name = \"x\"\n",
        ] {
            assert!(is_stack_text(text), "{text:?}");
            let stack = parse_manifest("berth.toml", text, &includes)
                .unwrap_or_else(|d| panic!("{text:?}: {d}"));
            assert_eq!(stack.name, "x");
        }
        for text in [
            "id = \"a\"\nimage = \"i\"\n",
            "id = \"a\"\nimage = \"i\"\ncommand = [\"[stack]\"]\n",
            "id = \"a\"\nimage = \"i\"\n# [stack]\n",
            "id = \"a\"\nimage = \"i\"\nlabels = { stack = \"x\" }\n",
        ] {
            assert!(!is_stack_text(text), "{text:?}");
            let stack = parse_manifest("app.toml", text, &includes)
                .unwrap_or_else(|d| panic!("{text:?}: {d}"));
            assert_eq!(stack.name, STANDALONE_STACK_NAME);
        }
    }

    #[test]
    fn column_after_a_byte_order_mark_counts_from_the_first_character() {
        let text = "\u{feff}stack.name = \"Bad\"\n";
        assert_eq!(
            errors(text),
            [
                "berth.toml:1:14: stack.name: invalid stack name \"Bad\": use 1 to 31 characters, a lowercase letter followed by lowercase letters, digits or '-', not ending with '-'"
            ]
        );
    }

    #[test]
    fn recursion_limit_of_a_deep_dotted_key_is_located() {
        let deep = vec!["a"; 100].join(".");
        let text = format!("{HEAD}\n{deep} = 1\n");
        let diags = parse_stack("berth.toml", &text, &includes).unwrap_err();
        assert_eq!(diags.0.len(), 1, "{diags}");
        let d = &diags.0[0];
        assert_eq!((d.line, d.column), (Some(4), Some(1)), "{d}");
        // The same for a deep table header, indented.
        let text = format!("{HEAD}  [{deep}]\n");
        let d = &parse_stack("berth.toml", &text, &includes).unwrap_err().0[0];
        assert_eq!((d.line, d.column), (Some(3), Some(3)), "{d}");
        // A key of exactly the depth the parser takes is parsed (and judged).
        let most = vec!["a"; TOML_KEY_DEPTH_MAX].join(".");
        let d = &parse_stack("berth.toml", &format!("{HEAD}{most} = 1\n"), &includes)
            .unwrap_err()
            .0[0];
        assert!(d.message.starts_with("unknown key `a`"), "{d}");
    }

    #[test]
    fn control_characters_in_file_names_and_keys_are_escaped_in_messages() {
        let text = "[stack]\nname = \"s\"\n\"bad\\u0000key\" = 1\n";
        let diags = parse_stack("evil\0\u{1b}[2J.toml", text, &includes).unwrap_err();
        let shown = diags.to_string();
        assert!(
            !shown.contains('\0') && !shown.contains('\u{1b}'),
            "{shown:?}"
        );
        assert!(shown.starts_with("evil\\0\\u{1b}[2J.toml:3:1: "), "{shown}");
        assert!(shown.contains("unknown key `bad\\0key`"), "{shown}");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse_stack("berth.toml", &text, &includes);
            let _ = parse_app_file("app.toml", &text);
        }

        #[test]
        fn diagnostics_are_one_line_each_whatever_the_input(
            text in "[\\[\\]a-z_.=\"{}, \n0-9\\\\u]{0,200}",
        ) {
            if let Err(diags) = parse_manifest("berth.toml", &text, &includes) {
                for d in &diags.0 {
                    let shown = d.to_string();
                    prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
                }
            }
        }

        #[test]
        fn toml_shaped_text_never_panics(text in "[\\[\\]a-z_.=\"{}, \n0-9:/-]{0,300}") {
            let _ = parse_stack("berth.toml", &text, &includes);
            let _ = parse_app_file("app.toml", &text);
        }

        #[test]
        fn structured_manifests_never_panic(text in arb_stack_text(), include in arb_stack_text()) {
            let read = move |_: &str| -> Result<(String, String), String> {
                Ok(("inc.toml".to_string(), include.clone()))
            };
            // About one generated stack in ten loads.
            if let Ok(stack) = parse_stack("berth.toml", &text, &read) {
                // Whatever loads is a valid stack: the graph functions work.
                prop_assert!(crate::graph::find_cycle(&stack).is_none());
                // ...and it obeys the value rules: DNS-label ids, image
                // references, bounded durations, no NUL anywhere.
                for app in stack.apps.values() {
                    prop_assert!(validate::is_dns_label(&app.id), "{}", app.id);
                    prop_assert!(validate::parse_image(&app.image).is_ok(), "{}", app.image);
                    prop_assert!(app.stop_grace <= Duration::from_secs(STOP_GRACE_S_MAX));
                    let texts = app.env.iter().flat_map(|(k, v)| [k, v])
                        .chain(app.command.iter().flatten())
                        .chain(app.entrypoint.iter().flatten());
                    for t in texts {
                        prop_assert!(!t.contains('\0'), "{t:?}");
                    }
                }
                let _ = crate::graph::tiers(&stack);
                for app in stack.apps.values() {
                    for dep in app.depends_on.keys() {
                        prop_assert!(stack.apps.contains_key(dep));
                    }
                }
            }
        }

        #[test]
        fn mutated_manifests_never_panic(edits in proptest::collection::vec(arb_edit(), 1..6)) {
            let mut text = REFERENCE.to_string();
            for edit in &edits {
                text = apply(&text, edit);
            }
            let mut lnd = LND.to_string();
            for edit in &edits {
                lnd = apply(&lnd, edit);
            }
            let read = move |_: &str| -> Result<(String, String), String> {
                Ok(("apps/lnd.toml".to_string(), lnd.clone()))
            };
            match parse_stack("berth.toml", &text, &read) {
                Ok(stack) => {
                    // Whatever loads is a valid stack: the graph functions work.
                    prop_assert!(crate::graph::find_cycle(&stack).is_none());
                    let _ = crate::graph::tiers(&stack);
                }
                Err(diags) => {
                    prop_assert!(!diags.0.is_empty());
                    for d in &diags.0 {
                        prop_assert!(!d.message.is_empty());
                        prop_assert!(d.line.is_none_or(|l| l >= 1));
                        prop_assert!(d.column.is_none_or(|c| c >= 1));
                    }
                }
            }
        }
    }
}
