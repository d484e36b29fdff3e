//! The rules a manifest must satisfy.
//!
//! Two kinds live here. Value rules (`check_app_id`, `parse_port`,
//! `parse_memory`, ...) judge one value and return a lowercase message; the
//! loader in `manifest` calls them while it walks the TOML document, so the
//! message lands on the value's line and column. Stack rules
//! (`validate_stack`) need the whole normalised stack — dependencies,
//! cycles, host-port conflicts, web UIs, container-name lengths, gates and
//! their nodes' probes, the probe a progress check reads — and use a
//! `SourceMap` the loader filled in to point back at the source.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::graph;
use crate::manifest::Diagnostic;
use crate::model::{
    DependsCondition, PortMapping, ProbeKind, ProbeSpec, ProgressCheck, ProgressSource, Protocol,
    Stack,
};
use crate::naming;

/// Longest app id, stack name or companion key (so that `{stack}-{app}`
/// stays a valid engine name).
pub const ID_LEN_MAX: usize = 31;
/// Longest container name the engines accept as a DNS-safe hostname.
pub const CONTAINER_NAME_LEN_MAX: usize = 63;
/// Highest explicit tier floor; tiers are small numbers in practice.
pub const TIER_MAX: u32 = 1000;
/// Most apps (companions included) one stack may hold.
pub const APPS_MAX: usize = 256;
/// Largest manifest file the loader parses.
pub const MANIFEST_BYTES_MAX: usize = 1024 * 1024;

/// Linux capabilities `cap_add` may name (without the `CAP_` prefix).
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// Label prefix reserved for the labels berth sets itself.
pub const RESERVED_LABEL_PREFIX: &str = "io.berth.";

// ---------------------------------------------------------------------------
// Value rules
// ---------------------------------------------------------------------------

/// `^[a-z]([a-z0-9-]{0,29}[a-z0-9])?$`: app ids, stack names and companion
/// keys. Each is used in DNS names (an app id is its container's network
/// alias, `{stack}-{app}` its container name and hostname), so it is an
/// RFC 1123 label: lowercase letters, digits and '-', not starting with a
/// digit (berth's own, stricter rule) and not ending with '-'.
fn is_short_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= ID_LEN_MAX
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
        && !s.ends_with('-')
}

fn short_name(what: &str, s: &str) -> Result<(), String> {
    if is_short_name(s) {
        Ok(())
    } else if s.ends_with('-') && is_short_name(s.trim_end_matches('-')) {
        Err(format!(
            "invalid {what} {s:?}: it is used as a DNS name, which cannot end with '-'"
        ))
    } else {
        Err(format!(
            "invalid {what} {s:?}: use 1 to {ID_LEN_MAX} characters, a lowercase letter followed by lowercase letters, digits or '-', not ending with '-'"
        ))
    }
}

/// A DNS label (RFC 1123) of at most 63 characters: the check every name
/// berth derives for the network (container names, companion ids) passes.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= CONTAINER_NAME_LEN_MAX
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn check_app_id(s: &str) -> Result<(), String> {
    short_name("app id", s)
}

pub fn check_stack_name(s: &str) -> Result<(), String> {
    short_name("stack name", s)
}

/// The key under `companions`; the companion's id is `{parent}-{key}`.
pub fn check_companion_key(s: &str) -> Result<(), String> {
    short_name("companion name", s)
}

/// Engine network names: `^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`.
pub fn check_network_name(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && s.len() <= CONTAINER_NAME_LEN_MAX
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(format!(
            "invalid network name {s:?}: use 1 to {CONTAINER_NAME_LEN_MAX} letters, digits, '_', '.' or '-', starting with a letter or digit"
        ));
    }
    if let Some(reserved) = RESERVED_NETWORK_NAMES
        .iter()
        .find(|r| r.eq_ignore_ascii_case(s))
    {
        return Err(format!(
            "network name {s:?} is reserved: {reserved:?} is a network mode of the engine, and berth needs a network of the stack's own for its DNS aliases; choose another name"
        ));
    }
    Ok(())
}

/// Network names the engines give a meaning of their own (network modes and
/// their default networks). A stack on one of them would lose its own
/// network and the DNS aliases of its apps. Compared case-insensitively.
/// Modes with an argument (`container:<id>`, `ns:<path>`) are refused by
/// the network name's character set already (no ':').
pub const RESERVED_NETWORK_NAMES: &[&str] = &[
    "host",
    "none",
    "bridge",
    "default",
    "private",
    "slirp4netns",
    "pasta",
    "podman",
    "container",
    "ns",
];

/// An image reference in the distribution grammar (what `docker pull`
/// and `podman pull` accept): `[DOMAIN[:PORT]/]PATH[:TAG][@DIGEST]`.
/// See [`parse_image`] for the rules; the message names the offending part.
pub fn check_image(s: &str) -> Result<(), String> {
    parse_image(s).map(|_| ())
}

/// Longest image name (domain and path, without tag or digest), as the
/// distribution reference grammar limits it.
pub const IMAGE_NAME_LEN_MAX: usize = 255;
/// Longest image tag.
pub const IMAGE_TAG_LEN_MAX: usize = 128;

/// The parts of an image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef<'s> {
    /// The registry host with its optional port, when written.
    pub domain: Option<&'s str>,
    /// The repository path under the domain.
    pub path: &'s str,
    pub tag: Option<&'s str>,
    pub digest: Option<&'s str>,
}

/// Parse an image reference by the distribution/reference grammar:
///
/// - name: `[domain/]path-component(/path-component)*`, at most
///   [`IMAGE_NAME_LEN_MAX`] characters;
/// - the first component is a domain when it holds a '.' or ':', is
///   `localhost`, or has an uppercase letter: domain components are
///   `[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?` joined by '.', or an IPv6
///   address in brackets, with an optional numeric port;
/// - path components are lowercase `[a-z0-9]+` runs joined by one
///   separator: '.', '_', "__" or any number of '-';
/// - tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`;
/// - digest: `algorithm:hex`, where berth knows `sha256` (64 lowercase hex
///   digits) and `sha512` (128), the algorithms the engines verify.
pub fn parse_image(s: &str) -> Result<ImageRef<'_>, String> {
    let wrap = |why: String| format!("invalid image {s:?}: {why}");
    let bad = |why: String| Err(wrap(why));
    if s.is_empty() {
        return Err("image must not be empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("an image reference has no spaces or control characters".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    if let Some(digest) = digest {
        check_image_digest(digest).map_err(wrap)?;
    }
    // The tag is after the last ':' that comes after the last '/': a ':'
    // before a '/' is the registry's port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if name.is_empty() {
        return bad(match (tag, digest) {
            (Some(tag), _) => format!("tag {tag:?} has no image name before it"),
            (None, Some(_)) => "the digest has no image name before it".into(),
            (None, None) => "missing image name".into(),
        });
    }
    if let Some(tag) = tag {
        check_image_tag(tag).map_err(wrap)?;
    }
    if name.len() > IMAGE_NAME_LEN_MAX {
        return bad(format!(
            "the name is {} characters long, at most {IMAGE_NAME_LEN_MAX}",
            name.len()
        ));
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            check_image_domain(first).map_err(wrap)?;
            (Some(first), path)
        }
        _ => (None, name),
    };
    for component in path.split('/') {
        check_image_path_component(component).map_err(wrap)?;
    }
    Ok(ImageRef {
        domain,
        path,
        tag,
        digest,
    })
}

fn check_image_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("the tag after ':' is empty".into());
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    let ok = chars.next().is_some_and(word) && chars.all(|c| word(c) || matches!(c, '.' | '-'));
    if !ok {
        return Err(format!(
            "tag {tag:?} must be letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        ));
    }
    if tag.len() > IMAGE_TAG_LEN_MAX {
        return Err(format!(
            "tag {tag:?} is {} characters long, at most {IMAGE_TAG_LEN_MAX}",
            tag.len()
        ));
    }
    Ok(())
}

fn check_image_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!(
            "digest {digest:?} must be ALGORITHM:HEX, e.g. \"sha256:\" and 64 hex digits"
        ));
    };
    let hex_len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        other => {
            return Err(format!(
                "digest {digest:?}: unknown algorithm {other:?} (use sha256 or sha512)"
            ));
        }
    };
    if hex.len() != hex_len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "digest {digest:?}: {algorithm} needs exactly {hex_len} lowercase hex digits"
        ));
    }
    Ok(())
}

fn check_image_domain(domain: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "registry {domain:?} must be a host name, an IPv4 address or an IPv6 address in brackets, with an optional numeric port"
        ))
    };
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return bad();
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return bad();
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return bad(),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad();
    }
    if let Some(host) = host {
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        };
        if !host.split('.').all(component_ok) {
            return bad();
        }
    }
    Ok(())
}

fn check_image_path_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err(
            "the repository path has an empty component (a leading, trailing or double '/')".into(),
        );
    }
    if component.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("repository {component:?} must be lowercase"));
    }
    // alnum+ (separator alnum+)*, separator = '.' | '_' | "__" | '-'+
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut ok = true;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            ok = false;
            break;
        }
        if i == bytes.len() {
            break;
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[sep_start..i];
        let sep_ok =
            matches!(sep, "." | "_" | "__") || (!sep.is_empty() && sep.bytes().all(|b| b == b'-'));
        if !sep_ok || i == bytes.len() {
            ok = false;
            break;
        }
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "repository {component:?} must be lowercase letters and digits, separated by one '.', '_', \"__\" or dashes, not starting or ending with a separator"
        ))
    }
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`
pub fn check_env_key(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid environment variable name {s:?}: use letters, digits and '_', not starting with a digit"
        ))
    }
}

/// `^[a-z][a-z0-9_-]*$`
pub fn check_volume_name(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let ok = matches!(chars.next(), Some('a'..='z'))
        && s.len() <= ID_LEN_MAX
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid volume name {s:?}: use 1 to {ID_LEN_MAX} characters, a lowercase letter followed by lowercase letters, digits, '_' or '-'"
        ))
    }
}

/// Longest volume mount path inside the container (Linux's `PATH_MAX`).
pub const VOLUME_PATH_BYTES_MAX: usize = 4096;

/// An absolute container path, not `/` itself and not the secrets mount.
pub fn check_volume_path(s: &str) -> Result<(), String> {
    normalize_volume_path(s).map(|_| ())
}

/// The mount path of a volume, lexically normalised (repeated '/' and '.'
/// components collapsed, no trailing '/'), so that the reserved places are
/// recognised however they are spelled: `/.`, `//` and `/x/..` are the
/// root, `//run/secrets` and `/run/./secrets` the secrets mount. A `..`
/// component is refused outright: a mount path has no reason to climb, and
/// the engines resolve it differently.
pub fn normalize_volume_path(s: &str) -> Result<String, String> {
    if s.chars().any(|c| c.is_control()) {
        return Err(format!(
            "invalid volume path {s:?}: control characters are not allowed"
        ));
    }
    if !s.starts_with('/') {
        return Err(format!(
            "volume path {s:?} is relative: use an absolute path inside the container, e.g. \"/data\""
        ));
    }
    if s.len() > VOLUME_PATH_BYTES_MAX {
        return Err(format!(
            "volume path is {} bytes long, at most {VOLUME_PATH_BYTES_MAX}",
            s.len()
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("volume path {s:?} must not contain \"..\"")),
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err(if s == "/" {
            "a volume cannot be mounted at \"/\"".to_string()
        } else {
            format!("a volume cannot be mounted at \"/\" ({s:?} is the root)")
        });
    }
    let normal = format!("/{}", parts.join("/"));
    let secrets = naming::SECRETS_MOUNT_PATH;
    if normal == secrets || normal.starts_with(&format!("{secrets}/")) {
        return Err(format!(
            "volume path {s:?} is reserved: berth mounts secrets at {secrets}"
        ));
    }
    Ok(normal)
}

/// A string that reaches the engine as a name, path or single-line value
/// (a label value, a user): no control characters at all.
pub fn check_single_line(what: &str, s: &str) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        Err(format!(
            "{what} {s:?} contains a control character, which the engine cannot take"
        ))
    } else {
        Ok(())
    }
}

/// A string that reaches a process (an environment value, a command or
/// entrypoint argument): no NUL (`execve` cannot carry one) and no control
/// character but tab and newline, which multi-line scripts
/// (`["sh", "-c", "..."]`) and values such as PEM certificates need.
pub fn check_process_text(what: &str, s: &str) -> Result<(), String> {
    match s
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n'))
    {
        Some('\0') => Err(format!(
            "{what} {s:?} contains a NUL byte, which cannot reach a process"
        )),
        Some(c) => Err(format!(
            "{what} {s:?} contains the control character {:?}: only tab and newline are allowed",
            c
        )),
        None => Ok(()),
    }
}

/// `^[a-z0-9][a-z0-9_.-]*$`
pub fn check_secret_name(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let ok = matches!(chars.next(), Some('a'..='z' | '0'..='9'))
        && s.len() <= 255
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid secret name {s:?}: use lowercase letters, digits, '_', '.' or '-', starting with a letter or digit"
        ))
    }
}

pub fn check_label_key(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Err("label key must not be empty".into())
    } else if s.starts_with(RESERVED_LABEL_PREFIX) {
        Err(format!(
            "label {s:?} is reserved: keys starting with {RESERVED_LABEL_PREFIX:?} belong to berth"
        ))
    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!(
            "invalid label key {s:?}: a label key has no spaces or control characters"
        ))
    } else {
        Ok(())
    }
}

/// A capability name, uppercase, with an optional `CAP_` prefix that is
/// stripped: `CAP_NET_ADMIN` → `NET_ADMIN`.
pub fn normalize_capability(s: &str) -> Result<String, String> {
    let name = s.strip_prefix("CAP_").unwrap_or(s);
    if CAPABILITIES.contains(&name) {
        return Ok(name.to_string());
    }
    let upper = name.to_ascii_uppercase();
    let upper = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if CAPABILITIES.contains(&upper) {
        Err(format!(
            "capability {s:?} must be written in uppercase: {upper:?}"
        ))
    } else {
        Err(format!("unknown capability {s:?}"))
    }
}

/// `uid[:gid]` or `name[:group]`.
pub fn check_user(s: &str) -> Result<(), String> {
    let part_ok = |p: &str| {
        let mut chars = p.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    let ok = match s.split_once(':') {
        Some((user, group)) => part_ok(user) && part_ok(group),
        None => part_ok(s),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid user {s:?}: use USER or USER:GROUP, as names or numeric ids, e.g. \"1000:1000\""
        ))
    }
}

/// A bitcoind RPC user name: HTTP basic auth cannot carry a `:` in it.
pub fn check_rpc_user(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Err("rpc user must not be empty".into())
    } else if s.contains(':') {
        Err(format!(
            "invalid rpc user {s:?}: HTTP basic auth cannot carry a ':' in the user name"
        ))
    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!("invalid rpc user {s:?}: a user name has no spaces"))
    } else {
        Ok(())
    }
}

/// An HTTP path: starts with `/`, no spaces.
pub fn check_http_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        Err(format!("path {s:?} must start with \"/\""))
    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!("invalid path {s:?}: a path has no spaces"))
    } else {
        Ok(())
    }
}

/// Longest `label` of a progress check.
pub const PROGRESS_LABEL_CHARS_MAX: usize = 40;

/// A JSON pointer (RFC 6901): empty (the whole document) or `/`-separated
/// tokens, where `~` only appears as `~0` (`~`) or `~1` (`/`).
pub fn check_json_pointer(s: &str) -> Result<(), String> {
    if !s.is_empty() && !s.starts_with('/') {
        return Err(format!(
            "invalid JSON pointer {s:?}: it starts with \"/\", e.g. \"/result/blocks\" (\"\" is the whole answer)"
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("invalid JSON pointer {s:?}: control character"));
    }
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "invalid JSON pointer {s:?}: write \"~\" as \"~0\" and \"/\" inside a key as \"~1\""
            ));
        }
    }
    Ok(())
}

/// The name of a progress value in reasons: short, one line.
pub fn check_progress_label(s: &str) -> Result<String, String> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        Err("label must not be empty".into())
    } else if s.chars().any(char::is_control) {
        Err(format!(
            "invalid label {s:?}: one line, no control characters"
        ))
    } else if s.chars().count() > PROGRESS_LABEL_CHARS_MAX {
        Err(format!(
            "label {s:?} is too long: at most {PROGRESS_LABEL_CHARS_MAX} characters"
        ))
    } else {
        Ok(trimmed.to_string())
    }
}

fn parse_port_number(s: &str, what: &str, spec: &str) -> Result<u16, String> {
    if s.is_empty() {
        return Err(format!("invalid port mapping {spec:?}: missing {what}"));
    }
    if s.contains('-')
        && s.split('-')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "invalid port mapping {spec:?}: port ranges are not supported, list each port"
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid port mapping {spec:?}: {what} {s:?} is not a number"
        ));
    }
    match s.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!(
            "invalid port mapping {spec:?}: {what} {s} is out of range 1-65535"
        )),
    }
}

/// `[HOST_IP:]HOST:CONTAINER[/tcp|udp]`; an IPv6 host address is written
/// in brackets: `[::1]:8080:80`.
pub fn parse_port(spec: &str) -> Result<PortMapping, String> {
    let (body, protocol) = match spec.rsplit_once('/') {
        Some((body, "tcp")) => (body, Protocol::Tcp),
        Some((body, "udp")) => (body, Protocol::Udp),
        Some((_, other)) => {
            return Err(format!(
                "invalid port mapping {spec:?}: unknown protocol {other:?} (use tcp or udp)"
            ));
        }
        None => (spec, Protocol::Tcp),
    };
    let (host_ip, ports) = if let Some(rest) = body.strip_prefix('[') {
        let Some((ip, ports)) = rest.split_once("]:") else {
            return Err(format!(
                "invalid port mapping {spec:?}: expected [IPV6]:HOST:CONTAINER"
            ));
        };
        (Some(ip), ports)
    } else {
        match body.matches(':').count() {
            0 => {
                return Err(format!(
                    "invalid port mapping {spec:?}: expected [HOST_IP:]HOST:CONTAINER[/tcp|udp], e.g. \"8080:80\""
                ));
            }
            1 => (None, body),
            2 => {
                let (ip, ports) = body.split_once(':').expect("two colons");
                (Some(ip), ports)
            }
            _ => {
                return Err(format!(
                    "invalid port mapping {spec:?}: write an IPv6 host address in brackets, e.g. \"[::1]:8080:80\""
                ));
            }
        }
    };
    let host_ip = match host_ip {
        None => None,
        Some(ip) => match ip.parse::<IpAddr>() {
            Ok(addr) => Some(addr.to_string()),
            Err(_) => {
                return Err(format!(
                    "invalid port mapping {spec:?}: bad host address {ip:?}"
                ));
            }
        },
    };
    let (host, container) = ports.split_once(':').ok_or_else(|| {
        format!("invalid port mapping {spec:?}: expected HOST:CONTAINER after the host address")
    })?;
    if container.contains(':') {
        return Err(format!(
            "invalid port mapping {spec:?}: expected [HOST_IP:]HOST:CONTAINER[/tcp|udp]"
        ));
    }
    Ok(PortMapping {
        host_ip,
        host_port: parse_port_number(host, "host port", spec)?,
        container_port: parse_port_number(container, "container port", spec)?,
        protocol,
    })
}

/// The mapping as a manifest would write it.
pub fn format_port(p: &PortMapping) -> String {
    let proto = match p.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    match &p.host_ip {
        Some(ip) if ip.contains(':') => {
            format!("[{ip}]:{}:{}/{proto}", p.host_port, p.container_port)
        }
        Some(ip) => format!("{ip}:{}:{}/{proto}", p.host_port, p.container_port),
        None => format!("{}:{}/{proto}", p.host_port, p.container_port),
    }
}

/// Memory as a string: bytes, or a number with a `k`, `m` or `g` suffix
/// (KiB, MiB, GiB; either case).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let help = "use a number of bytes, or a number with a k, m or g suffix, e.g. \"512m\"";
    let (digits, multiplier) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid memory {s:?}: {help}"));
    }
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("invalid memory {s:?}: too large"))?;
    check_memory_bytes(bytes)
}

/// Smallest memory limit: the engines refuse less than 6 MiB (Docker says
/// "minimum memory limit allowed is 6MB"), so berth refuses it at load.
pub const MEMORY_BYTES_MIN: u64 = 6 << 20;
/// Largest memory limit: 1 TiB, far above any appliance's RAM and far
/// below the engines' `i64`, so it never wraps or gets clamped.
pub const MEMORY_BYTES_MAX: u64 = 1 << 40;

pub fn check_memory_bytes(bytes: u64) -> Result<u64, String> {
    if bytes == 0 {
        Err("memory limit must be greater than zero".into())
    } else if bytes < MEMORY_BYTES_MIN {
        Err(format!(
            "memory limit {bytes} bytes is below the engines' minimum of {MEMORY_BYTES_MIN} bytes (6m)"
        ))
    } else if bytes > MEMORY_BYTES_MAX {
        Err(format!(
            "memory limit {bytes} bytes is above the maximum of {MEMORY_BYTES_MAX} bytes (1024g)"
        ))
    } else {
        Ok(bytes)
    }
}

// ---------------------------------------------------------------------------
// Source locations
// ---------------------------------------------------------------------------

/// Where a key or value sits in a manifest file. Line and column are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// What the loader learned about the source while walking it, for the
/// stack rules: where each dotted key path sits, under which path each app
/// was written, and which parts were already rejected (so a stack rule does
/// not pile a second, derived complaint onto them).
///
/// Paths are the loader's logical key paths: `apps.lnd.depends_on.bitcoind`,
/// `apps.bitcoind.companions.ui.ports[0]`; in a standalone app file they
/// have no `apps.<id>.` prefix.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    /// File for diagnostics that have no recorded location.
    pub file: String,
    /// The stack came from a standalone app file.
    pub standalone: bool,
    locations: BTreeMap<String, Location>,
    app_paths: BTreeMap<String, String>,
    /// `(list path, item)` → the item's path (`apps.lnd.gate.wait_for[1]`),
    /// for rules that find an item by value in a normalised list.
    items: BTreeMap<(String, String), String>,
    invalid: BTreeSet<String>,
    unloaded: BTreeSet<String>,
}

impl SourceMap {
    pub fn new(file: &str) -> Self {
        SourceMap {
            file: file.to_string(),
            ..SourceMap::default()
        }
    }

    pub fn record(&mut self, path: &str, location: Location) {
        self.locations.insert(path.to_string(), location);
    }

    pub fn location(&self, path: &str) -> Location {
        self.locations
            .get(path)
            .cloned()
            .unwrap_or_else(|| Location {
                file: self.file.clone(),
                line: None,
                column: None,
            })
    }

    pub fn has(&self, path: &str) -> bool {
        self.locations.contains_key(path)
    }

    /// The key path an app was written under (`apps.lnd`).
    pub fn set_app_path(&mut self, id: &str, path: &str) {
        self.app_paths.insert(id.to_string(), path.to_string());
    }

    pub fn app_path(&self, id: &str) -> String {
        self.app_paths
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("apps.{}", key_segment(id)))
    }

    /// Remember where the item `value` of the list at `list` was written.
    pub fn record_item(&mut self, list: &str, value: &str, item_path: &str) {
        self.items
            .insert((list.to_string(), value.to_string()), item_path.to_string());
    }

    /// The path of the item `value` of the list at `list`, or the list's
    /// own path when the item was not recorded.
    pub fn item_path(&self, list: &str, value: &str) -> String {
        self.items
            .get(&(list.to_string(), value.to_string()))
            .cloned()
            .unwrap_or_else(|| list.to_string())
    }

    /// The value at `path` was rejected by a value rule.
    pub fn mark_invalid(&mut self, path: &str) {
        self.invalid.insert(path.to_string());
    }

    /// Was `path`, or anything under it, rejected?
    pub fn is_invalid_under(&self, path: &str) -> bool {
        self.invalid
            .range(path.to_string()..)
            .take_while(|p| p.starts_with(path))
            .any(|p| {
                let rest = &p[path.len()..];
                rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            })
    }

    /// The app exists in the manifest but its definition could not be
    /// loaded (an include that failed); references to it are not unknown.
    pub fn mark_unloaded(&mut self, id: &str) {
        self.unloaded.insert(id.to_string());
    }

    pub fn is_unloaded(&self, id: &str) -> bool {
        self.unloaded.contains(id)
    }

    pub fn diagnostic(&self, path: &str, message: String) -> Diagnostic {
        let location = self.location(path);
        Diagnostic {
            file: location.file,
            line: location.line,
            column: location.column,
            key: path.to_string(),
            message,
        }
    }
}

/// A key as it appears in a dotted path: bare when TOML allows it, quoted
/// otherwise (`labels."com.example.tier"`).
pub fn key_segment(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// `prefix.key`, or just `key` under the empty prefix.
pub fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key_segment(key)
    } else {
        format!("{prefix}.{}", key_segment(key))
    }
}

// ---------------------------------------------------------------------------
// Stack rules
// ---------------------------------------------------------------------------

/// Every rule that needs more than one value: dependencies, cycles, host
/// ports, web UIs, container names, gates and probes, the app count.
/// Returns all problems.
pub fn validate_stack(stack: &Stack, map: &SourceMap) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if stack.apps.len() > APPS_MAX {
        out.push(map.diagnostic(
            "apps",
            format!(
                "too many apps: {} (companions included), at most {APPS_MAX}",
                stack.apps.len()
            ),
        ));
    }
    check_dependencies(stack, map, &mut out);
    check_cycle(stack, map, &mut out);
    check_host_ports(stack, map, &mut out);
    check_web_uis(stack, map, &mut out);
    check_container_names(stack, map, &mut out);
    check_volume_names(stack, map, &mut out);
    check_probe_secrets(stack, map, &mut out);
    check_progress_probes(stack, map, &mut out);
    check_gate_nodes(stack, map, &mut out);
    check_gate_deadlock(stack, map, &mut out);
    out
}

fn check_dependencies(stack: &Stack, map: &SourceMap, out: &mut Vec<Diagnostic>) {
    for (id, app) in &stack.apps {
        let app_path = map.app_path(id);
        for (dep, condition) in &app.depends_on {
            // A companion's edge to its parent is implicit; never report it.
            if app.companion_of.as_deref() == Some(dep.as_str()) {
                continue;
            }
            let path = join_path(&join_path(&app_path, "depends_on"), dep);
            if dep == id {
                out.push(map.diagnostic(&path, format!("app {id:?} depends on itself")));
                continue;
            }
            let Some(target) = stack.apps.get(dep) else {
                if map.is_unloaded(dep) {
                    continue;
                }
                let hint = if map.standalone {
                    " (a standalone app file cannot depend on other apps: include it from a stack file)".to_string()
                } else {
                    match suggest(dep, stack.apps.keys().filter(|k| *k != id)) {
                        Some(s) => format!(" (did you mean {s:?}?)"),
                        None => String::new(),
                    }
                };
                out.push(map.diagnostic(&path, format!("unknown dependency {dep:?}{hint}")));
                continue;
            };
            let target_health = join_path(&map.app_path(dep), "health");
            if *condition == DependsCondition::Healthy
                && target.health.is_none()
                && !map.is_invalid_under(&target_health)
            {
                out.push(map.diagnostic(
                    &path,
                    format!(
                        "app {id:?} waits for {dep:?} to be healthy, but {dep:?} has no health check (add one, or use \"started\")"
                    ),
                ));
            }
        }
    }
}

fn check_cycle(stack: &Stack, map: &SourceMap, out: &mut Vec<Diagnostic>) {
    // Self-dependencies and unknown ids are reported on their own; strip
    // them so the cycle search finds a real one.
    let mut graph = stack.clone();
    for (id, app) in graph.apps.iter_mut() {
        app.depends_on
            .retain(|dep, _| dep != id && stack.apps.contains_key(dep));
    }
    // One cycle per strongly connected component: two separate cycles are
    // two problems, and fixing one must not reveal the other only later.
    for cycle in graph::cycles(&graph) {
        // Point at the first edge of the cycle the manifest spells out (a
        // companion's edge to its parent is implicit).
        let path = cycle
            .windows(2)
            .map(|pair| join_path(&join_path(&map.app_path(&pair[0]), "depends_on"), &pair[1]))
            .find(|path| map.has(path))
            .unwrap_or_else(|| map.app_path(&cycle[0]));
        out.push(map.diagnostic(&path, format!("dependency cycle: {}", cycle.join(" -> "))));
    }
}

/// Both bind the same host port: same port and protocol, and the same
/// address or either binds every address.
fn ports_conflict(a: &PortMapping, b: &PortMapping) -> bool {
    let wildcard = |ip: &Option<String>| match ip {
        None => true,
        Some(ip) => ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()),
    };
    a.host_port == b.host_port
        && a.protocol == b.protocol
        && (wildcard(&a.host_ip) || wildcard(&b.host_ip) || a.host_ip == b.host_ip)
}

fn check_host_ports(stack: &Stack, map: &SourceMap, out: &mut Vec<Diagnostic>) {
    let mut seen: Vec<(&str, &PortMapping)> = Vec::new();
    for (id, app) in &stack.apps {
        let app_path = map.app_path(id);
        for (i, port) in app.ports.iter().enumerate() {
            if let Some((other, earlier)) = seen.iter().find(|(_, p)| ports_conflict(p, port)) {
                let proto = match port.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                };
                let message = if *other == id.as_str() {
                    format!(
                        "host port {}/{proto} is published twice by app {id:?} ({:?} and {:?})",
                        port.host_port,
                        format_port(earlier),
                        format_port(port)
                    )
                } else {
                    format!(
                        "host port {}/{proto} of app {id:?} ({:?}) is already published by app {other:?} ({:?})",
                        port.host_port,
                        format_port(port),
                        format_port(earlier)
                    )
                };
                out.push(
                    map.diagnostic(&format!("{}[{i}]", join_path(&app_path, "ports")), message),
                );
            }
            seen.push((id, port));
        }
    }
}

fn check_web_uis(stack: &Stack, map: &SourceMap, out: &mut Vec<Diagnostic>) {
    for (id, app) in &stack.apps {
        let Some(web_ui) = &app.web_ui else { continue };
        let app_path = map.app_path(id);
        if app.ports.iter().any(|p| p.host_port == web_ui.host_port)
            || map.is_invalid_under(&join_path(&app_path, "ports"))
        {
            continue;
        }
        let published: Vec<String> = app.ports.iter().map(|p| p.host_port.to_string()).collect();
        let published = if published.is_empty() {
            "it publishes no ports".to_string()
        } else {
            format!("it publishes {}", published.join(", "))
        };
        out.push(map.diagnostic(
            &join_path(&join_path(&app_path, "web_ui"), "port"),
            format!(
                "web ui port {} is not a host port app {id:?} publishes ({published})",
                web_ui.host_port
            ),
        ));
    }
}

fn check_container_names(stack: &Stack, map: &SourceMap, out: &mut Vec<Diagnostic>) {
    if check_stack_name(&stack.name).is_err() {
        // Already reported; every app would repeat it.
        return;
    }
    for id in stack.apps.keys() {
        let name = naming::container_name(&stack.name, id);
        if name.len() > CONTAINER_NAME_LEN_MAX {
            out.push(map.diagnostic(
                &map.app_path(id),
                format!(
                    "container name {name:?} of app {id:?} is {} characters long, at most {CONTAINER_NAME_LEN_MAX}: shorten the stack name or the app id",
                    name.len()
                ),
            ));
        }
    }
}

/// Two apps whose volumes map to the same engine volume would share its
/// data without saying so: `{stack}-{app}-{volume}` makes app "a" with
/// volume "b-c" and app "a-b" with volume "c" both `s-a-b-c`. Every
/// collision is reported, on the later of the two in id order.
fn check_volume_names(stack: &Stack, map: &SourceMap, out: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    for (id, app) in &stack.apps {
        for volume in &app.volumes {
            let engine_name = naming::volume_name(&stack.name, id, &volume.name);
            match seen.get(&engine_name) {
                Some((other_app, other_volume)) => {
                    let path = join_path(&join_path(&map.app_path(id), "volumes"), &volume.name);
                    out.push(map.diagnostic(
                        &path,
                        format!(
                            "volume {:?} of app {id:?} and volume {other_volume:?} of app {other_app:?} are both the engine volume {engine_name:?}: rename one",
                            volume.name
                        ),
                    ));
                }
                None => {
                    seen.insert(engine_name, (id, &volume.name));
                }
            }
        }
    }
}

/// A bitcoind probe reads its RPC password from one of the node's own
/// secrets, so the secret must be one the app lists.
fn check_probe_secrets(stack: &Stack, map: &SourceMap, out: &mut Vec<Diagnostic>) {
    for (id, app) in &stack.apps {
        let Some(ProbeSpec {
            kind:
                ProbeKind::Bitcoind {
                    password_secret: Some(secret),
                    ..
                },
            ..
        }) = &app.probe
        else {
            continue;
        };
        let app_path = map.app_path(id);
        let path = join_path(&join_path(&app_path, "probe"), "password_secret");
        if app.secrets.contains(secret)
            || map.is_invalid_under(&join_path(&app_path, "secrets"))
            || map.is_invalid_under(&path)
        {
            continue;
        }
        out.push(map.diagnostic(
            &path,
            format!(
                "password_secret {secret:?} is not one of app {id:?}'s secrets: add it to `secrets`"
            ),
        ));
    }
}

/// Every node a gate names is another app of the stack with a probe.
/// A progress check reading `probe = "height"` needs the app's own chain
/// probe, of a kind that reports a height.
fn check_progress_probes(stack: &Stack, map: &SourceMap, out: &mut Vec<Diagnostic>) {
    for (id, app) in &stack.apps {
        let Some(ProgressCheck {
            source: ProgressSource::ProbeHeight,
            ..
        }) = app.health.as_ref().and_then(|h| h.progress.as_ref())
        else {
            continue;
        };
        let app_path = map.app_path(id);
        let probe_path = join_path(&app_path, "probe");
        let path = join_path(
            &join_path(&join_path(&app_path, "health"), "progress"),
            "probe",
        );
        match &app.probe {
            None if map.is_invalid_under(&probe_path) => {}
            None => out.push(map.diagnostic(
                &path,
                format!(
                    "the progress value comes from app {id:?}'s chain probe, but it has none: add `{probe_path}` of kind \"bitcoind\" or \"monerod\""
                ),
            )),
            Some(probe) => match probe.kind {
                ProbeKind::Bitcoind { .. } | ProbeKind::Monerod => {}
                ProbeKind::Http { .. } | ProbeKind::Tcp => out.push(map.diagnostic(
                    &path,
                    format!(
                        "app {id:?}'s probe is of kind {:?}, which reports no height: the progress value needs a \"bitcoind\" or \"monerod\" probe (or read it with `http` or `command`)",
                        probe.kind.name()
                    ),
                )),
            },
        }
    }
}

fn check_gate_nodes(stack: &Stack, map: &SourceMap, out: &mut Vec<Diagnostic>) {
    for (id, app) in &stack.apps {
        let Some(gate) = &app.gate else { continue };
        let gate_path = join_path(&map.app_path(id), "gate");
        for (list_name, list) in gate.lists() {
            let list_path = join_path(&gate_path, list_name);
            for name in list {
                let path = map.item_path(&list_path, name);
                if name == id {
                    out.push(map.diagnostic(&path, format!("app {id:?} cannot gate on itself")));
                    continue;
                }
                let Some(node) = stack.apps.get(name) else {
                    if map.is_unloaded(name) {
                        continue;
                    }
                    let hint = if map.standalone {
                        " (a standalone app file cannot gate on other apps: include it from a stack file)".to_string()
                    } else {
                        match suggest(name, stack.apps.keys().filter(|k| *k != id)) {
                            Some(s) => format!(" (did you mean {s:?}?)"),
                            None => String::new(),
                        }
                    };
                    out.push(map.diagnostic(&path, format!("unknown app {name:?}{hint}")));
                    continue;
                };
                let node_probe = join_path(&map.app_path(name), "probe");
                if node.probe.is_none() && !map.is_invalid_under(&node_probe) {
                    out.push(map.diagnostic(
                        &path,
                        format!(
                            "app {name:?} has no probe, so berth cannot read its chain state (add `{node_probe}`)"
                        ),
                    ));
                }
            }
        }
    }
}

/// An app held until a node is synced, where the node (transitively)
/// needs the app to start first, would wait forever: dependency edges plus
/// required sync-gate edges must stay acyclic. (A dependency cycle alone is
/// reported by `check_cycle`.)
fn check_gate_deadlock(stack: &Stack, map: &SourceMap, out: &mut Vec<Diagnostic>) {
    let mut graph = stack.clone();
    for (id, app) in graph.apps.iter_mut() {
        app.depends_on
            .retain(|dep, _| dep != id && stack.apps.contains_key(dep));
    }
    if graph::find_cycle(&graph).is_some() {
        return;
    }
    let mut waits: BTreeSet<(String, String)> = BTreeSet::new();
    for (id, app) in graph.apps.iter_mut() {
        let Some(gate) = &app.gate else { continue };
        for node in &gate.wait_for {
            if node != id && stack.apps.contains_key(node) {
                waits.insert((id.clone(), node.clone()));
                app.depends_on
                    .entry(node.clone())
                    .or_insert(DependsCondition::Started);
            }
        }
    }
    // Every deadlock, one per strongly connected component of dependency
    // plus wait edges (the dependency edges alone are acyclic here).
    for cycle in graph::cycles(&graph) {
        report_gate_deadlock(&cycle, &waits, map, out);
    }
}

fn report_gate_deadlock(
    cycle: &[String],
    waits: &BTreeSet<(String, String)>,
    map: &SourceMap,
    out: &mut Vec<Diagnostic>,
) {
    // Tell it from the first waiting app of the cycle: "a waits for b,
    // which can only start after a".
    let edges = cycle.len() - 1;
    let Some(start) =
        (0..edges).find(|&i| waits.contains(&(cycle[i].clone(), cycle[i + 1].clone())))
    else {
        return;
    };
    let mut rotated: Vec<String> = (0..edges)
        .map(|i| cycle[(start + i) % edges].clone())
        .collect();
    rotated.push(rotated[0].clone());
    let (app, node) = (&rotated[0], &rotated[1]);
    let list_path = join_path(&join_path(&map.app_path(app), "gate"), "wait_for");
    out.push(map.diagnostic(
        &map.item_path(&list_path, node),
        format!(
            "gate deadlock: {}: {app:?} waits for {node:?} to be synced, but {node:?} can only start after {app:?}",
            rotated.join(" -> ")
        ),
    ));
}

/// The closest candidate to `word`, if any is within a small edit distance.
pub fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut row = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            row[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1);
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        for ok in ["a", "bitcoind", "lnd-2", "a234567890123456789012345678901"] {
            assert!(check_app_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "1abc",
            "-a",
            "a_b",
            "a.b",
            "a234567890123456789012345678901x",
            "bitcoïnd",
        ] {
            assert!(check_app_id(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_stack_name("Demo").unwrap_err(),
            "invalid stack name \"Demo\": use 1 to 31 characters, a lowercase letter followed by lowercase letters, digits or '-', not ending with '-'"
        );
    }

    #[test]
    fn port_mappings() {
        let p = parse_port("127.0.0.1:18443:18443").unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            (p.host_port, p.container_port, p.protocol),
            (18443, 18443, Protocol::Tcp)
        );
        let p = parse_port("8080:80/tcp").unwrap();
        assert_eq!((p.host_ip, p.host_port, p.container_port), (None, 8080, 80));
        assert_eq!(parse_port("9000:9000/udp").unwrap().protocol, Protocol::Udp);
        let p = parse_port("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("::1"));
        assert_eq!(format_port(&p), "[::1]:8080:80/tcp");

        let cases = [
            ("8080", "expected [HOST_IP:]HOST:CONTAINER[/tcp|udp]"),
            ("8080:80/sctp", "unknown protocol \"sctp\""),
            ("0:80", "host port 0 is out of range 1-65535"),
            ("8080:70000", "container port 70000 is out of range 1-65535"),
            ("http:80", "host port \"http\" is not a number"),
            ("8000-8010:8000-8010", "port ranges are not supported"),
            ("localhost:8080:80", "bad host address \"localhost\""),
            ("::1:8080:80", "write an IPv6 host address in brackets"),
            (":80", "missing host port"),
            ("8080:", "missing container port"),
            ("[::1:8080:80", "expected [IPV6]:HOST:CONTAINER"),
        ];
        for (spec, want) in cases {
            let err = parse_port(spec).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn memory() {
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("2G"), Ok(2 << 30));
        assert_eq!(parse_memory("8192k"), Ok(8 << 20));
        assert_eq!(parse_memory("8388608"), Ok(8 << 20));
        assert_eq!(parse_memory("1024g"), Ok(MEMORY_BYTES_MAX));
        assert_eq!(parse_memory("6m"), Ok(MEMORY_BYTES_MIN));
        for out_of_range in ["64k", "1048576", "6291455", "1025g", "9223372036854775808"] {
            let err = parse_memory(out_of_range).unwrap_err();
            assert!(
                err.contains("minimum") || err.contains("maximum"),
                "{out_of_range}: {err}"
            );
        }
        for bad in [
            "",
            "m",
            "512mb",
            "1.5g",
            "-1g",
            "lots",
            "99999999999999999999g",
        ] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_memory("0m"),
            Err("memory limit must be greater than zero".into())
        );
    }

    #[test]
    fn capabilities() {
        assert_eq!(
            normalize_capability("CAP_NET_ADMIN"),
            Ok("NET_ADMIN".into())
        );
        assert_eq!(
            normalize_capability("NET_BIND_SERVICE"),
            Ok("NET_BIND_SERVICE".into())
        );
        assert_eq!(
            normalize_capability("net_admin"),
            Err("capability \"net_admin\" must be written in uppercase: \"NET_ADMIN\"".into())
        );
        assert_eq!(
            normalize_capability("ALL"),
            Err("unknown capability \"ALL\"".into())
        );
    }

    #[test]
    fn names_and_paths() {
        assert!(check_env_key("RUST_LOG").is_ok());
        assert!(check_env_key("_x1").is_ok());
        assert!(check_env_key("1X").is_err());
        assert!(check_env_key("A-B").is_err());
        assert!(check_volume_name("data_dir-2").is_ok());
        assert!(check_volume_name("Data").is_err());
        assert!(check_volume_path("/data").is_ok());
        assert!(check_volume_path("data").is_err());
        assert!(check_volume_path("/").is_err());
        assert!(check_volume_path("/run/secrets/x").is_err());
        assert!(check_volume_path("/run/secretsx").is_ok());
        assert!(check_volume_path("/a/../b").is_err());
        assert!(check_secret_name("bitcoind-rpc.password_1").is_ok());
        assert!(check_secret_name(".hidden").is_err());
        assert!(check_secret_name("a/b").is_err());
        assert!(check_label_key("com.example.tier").is_ok());
        assert!(check_label_key("io.berth.app").is_err());
        assert!(check_user("1000:1000").is_ok());
        assert!(check_user("bitcoin").is_ok());
        assert!(check_user("a:b:c").is_err());
        assert!(check_user("").is_err());
        assert!(check_network_name("demo_net.1").is_ok());
        assert!(check_network_name("-x").is_err());
        assert!(check_image("localhost/x:latest").is_ok());
        assert!(check_image("a b").is_err());
        assert!(check_http_path("/health").is_ok());
        assert!(check_http_path("health").is_err());
    }

    #[test]
    fn image_references_follow_the_distribution_grammar() {
        let r = parse_image("localhost:5000/org/app:1.0@sha256:").unwrap_err();
        assert!(r.contains("64 lowercase hex"), "{r}");
        let digest = format!("sha256:{}", "a".repeat(64));
        let image = format!("localhost:5000/org/app:1.0@{digest}");
        let r = parse_image(&image).unwrap();
        assert_eq!(r.domain, Some("localhost:5000"));
        assert_eq!(r.path, "org/app");
        assert_eq!(r.tag, Some("1.0"));
        assert_eq!(r.digest, Some(digest.as_str()));
        let r = parse_image("library/busybox").unwrap();
        assert_eq!((r.domain, r.path, r.tag), (None, "library/busybox", None));
        // A first component with a capital is a registry host.
        assert_eq!(parse_image("Reg/app").unwrap().domain, Some("Reg"));
        for ok in [
            "a",
            "a-b--c",
            "a__b",
            "a.b_c",
            "[::1]/x",
            "h:1/x:t",
            &"a".repeat(255),
        ] {
            assert!(parse_image(ok).is_ok(), "{ok}");
        }
        for bad in [
            "A",
            "a:",
            ":t",
            "a/",
            "/a",
            "a__-b",
            "a@",
            &"a".repeat(256),
            "h:x/a",
        ] {
            assert!(parse_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volume_paths_are_judged_normalised() {
        assert_eq!(
            normalize_volume_path("//data//sub/./").as_deref(),
            Ok("/data/sub")
        );
        assert_eq!(
            normalize_volume_path("/run/secretsx").as_deref(),
            Ok("/run/secretsx")
        );
        for reserved in [
            "//run/secrets",
            "/run/./secrets",
            "/run/secrets/x",
            "/./run//secrets",
        ] {
            let err = normalize_volume_path(reserved).unwrap_err();
            assert!(err.contains("is reserved"), "{reserved}: {err}");
        }
        for root in ["/", "/.", "//", "/./."] {
            let err = normalize_volume_path(root).unwrap_err();
            assert!(err.contains("cannot be mounted at"), "{root}: {err}");
        }
        assert!(normalize_volume_path("/a/..").is_err());
        assert!(normalize_volume_path("/a\0").is_err());
    }

    #[test]
    fn process_text_allows_tab_and_newline_only() {
        assert!(check_process_text("value", "a\tb\nc").is_ok());
        for bad in ["\0", "\u{1b}", "\r", "\u{7f}", "\u{85}"] {
            assert!(check_process_text("value", bad).is_err(), "{bad:?}");
        }
        assert!(check_single_line("label value", "a\nb").is_err());
    }

    #[test]
    fn reserved_networks_and_dns_labels() {
        for reserved in [
            "host", "none", "bridge", "default", "Host", "pasta", "podman",
        ] {
            assert!(check_network_name(reserved).is_err(), "{reserved}");
        }
        assert!(check_network_name("hostnet").is_ok());
        assert!(check_app_id("lnd-").is_err());
        assert!(check_app_id("a--b").is_ok());
        assert!(is_dns_label("a-b"));
        assert!(!is_dns_label("a-") && !is_dns_label("-a") && !is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn suggestions() {
        let ids = ["bitcoind".to_string(), "electrs".into(), "lnd".into()];
        assert_eq!(suggest("bitcoin", ids.iter()), Some("bitcoind"));
        assert_eq!(suggest("lnx", ids.iter()), Some("lnd"));
        assert_eq!(suggest("monerod", ids.iter()), None);
    }

    #[test]
    fn invalid_paths_cover_children_only() {
        let mut map = SourceMap::new("f");
        map.mark_invalid("apps.a.ports[1]");
        map.mark_invalid("apps.a-b.x");
        map.mark_invalid("apps.a.port!");
        assert!(map.is_invalid_under("apps.a.ports"));
        assert!(map.is_invalid_under("apps.a"));
        assert!(!map.is_invalid_under("apps.a.port"));
        assert!(!map.is_invalid_under("apps.ab"));
        assert!(!map.is_invalid_under("apps.a.ports[1]x"));
    }

    #[test]
    fn key_segments_are_quoted_when_needed() {
        assert_eq!(
            join_path("apps.x.labels", "com.example.tier"),
            "apps.x.labels.\"com.example.tier\""
        );
        assert_eq!(join_path("", "stack"), "stack");
        assert_eq!(join_path("a", ""), "a.\"\"");
    }
}
