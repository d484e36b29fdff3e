//! From compose files to one merged, interpolated model: parse each file,
//! check it is a compose file, interpolate, normalise each service's keys
//! into the shape merging needs, resolve `extends`, merge the files in
//! order (`-f a -f b`) and fold `env_file` into `environment`.
//!
//! The model stays a YAML tree (`yaml::Node`) so that every key keeps the
//! file and line it came from; `map` reads it into a berth stack.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::yaml::{self, Key, Node, Pos, Value};
use crate::{Error, Note, NoteKind, ReadFile, dotenv, interp};

/// Top-level keys of a compose file (besides `x-*` extensions).
const TOP_KEYS: &[&str] = &[
    "version", "name", "services", "volumes", "networks", "secrets", "configs",
];
/// Sections whose values are interpolated (keys never are).
const INTERPOLATED: &[&str] = &[
    "name", "services", "volumes", "networks", "secrets", "configs",
];
/// Deepest chain of `extends`.
pub const EXTENDS_DEPTH_MAX: usize = 16;
/// Most files one import reads (compose files, extended files, env files).
pub const FILES_MAX: usize = 64;

/// The merged model: services and the top-level sections, by name.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub name: Option<Node>,
    pub services: Vec<(Key, Node)>,
    /// Top-level `volumes`, `networks`, `secrets`, `configs`, `x-*`, `version`.
    pub sections: Vec<(Key, Node)>,
}

pub struct Loader<'a> {
    pub env: &'a BTreeMap<String, String>,
    /// `.env` (or `--env-file`) variables; the shell's environment wins.
    pub dotenv: BTreeMap<String, String>,
    pub project_dir: String,
    pub read: &'a ReadFile<'a>,
    pub errors: Vec<Error>,
    pub notes: Vec<Note>,
    files_read: usize,
    /// Files named by `extends.file`, parsed once each (None: refused).
    extended: BTreeMap<String, Option<Node>>,
}

/// `dir` joined with `rel` (unless absolute), `.` and `..` folded.
pub fn join_path(dir: &str, rel: &str) -> String {
    let joined = if rel.starts_with('/') || dir.is_empty() {
        rel.to_string()
    } else {
        format!("{dir}/{rel}")
    };
    let absolute = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    match (absolute, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

/// The directory part of a path (`.` for a bare name).
pub fn dir_of(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) => "/".to_string(),
        Some((dir, _)) => dir.to_string(),
        None => ".".to_string(),
    }
}

fn err(pos: &Pos, message: impl Into<String>) -> Error {
    Error {
        pos: Some(pos.clone()),
        message: message.into(),
    }
}

impl<'a> Loader<'a> {
    pub fn new(
        env: &'a BTreeMap<String, String>,
        project_dir: &str,
        read: &'a ReadFile<'a>,
    ) -> Self {
        Loader {
            env,
            dotenv: BTreeMap::new(),
            project_dir: project_dir.to_string(),
            read,
            errors: Vec::new(),
            notes: Vec::new(),
            files_read: 0,
            extended: BTreeMap::new(),
        }
    }

    /// Read a file through the caller's callback (None: it does not exist).
    pub fn read_file(&mut self, path: &str) -> Result<Option<String>, String> {
        self.files_read += 1;
        if self.files_read > FILES_MAX {
            return Err(format!("more than {FILES_MAX} files to read"));
        }
        (self.read)(path)
    }

    /// Load the `.env` file: `--env-file` (which must exist) or `.env` in
    /// the project directory (if there is one).
    pub fn load_dotenv(&mut self, env_file: Option<&str>) {
        let (path, required) = match env_file {
            Some(p) => (join_path(&self.project_dir, p), true),
            None => (join_path(&self.project_dir, ".env"), false),
        };
        match self.read_file(&path) {
            Ok(Some(text)) => match dotenv::parse(&text) {
                Ok(lines) => {
                    for l in lines {
                        if let Some(v) = l.value {
                            self.dotenv.insert(l.key, v);
                        }
                    }
                }
                Err((line, message)) => self.errors.push(Error {
                    pos: Some(Pos {
                        file: Arc::from(path.as_str()),
                        line,
                    }),
                    message,
                }),
            },
            Ok(None) if !required => {}
            Ok(None) => self.errors.push(Error {
                pos: None,
                message: format!("env file {path} does not exist"),
            }),
            Err(e) => self.errors.push(Error {
                pos: None,
                message: format!("cannot read env file {path}: {e}"),
            }),
        }
    }

    /// Parse, check and interpolate one compose file.
    pub fn file(&mut self, name: &str, text: &str) -> Option<Node> {
        let root = match yaml::parse(name, text) {
            Ok(root) => root,
            Err(e) => {
                self.errors.push(err(&e.pos, e.message));
                return None;
            }
        };
        let Some(entries) = root.as_map() else {
            self.errors.push(err(
                &root.pos,
                format!(
                    "{name} is not a compose file: its top level is {}, not a mapping with `services`",
                    root.kind()
                ),
            ));
            return None;
        };
        let foreign: Vec<&Key> = entries
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !TOP_KEYS.contains(&k.name.as_str()) && !k.name.starts_with("x-"))
            .collect();
        if let Some(k) = foreign.first() {
            self.errors.push(err(
                &k.pos,
                format!(
                    "{name} is not a compose file: unknown top-level key `{}` (a compose file has {})",
                    k.name,
                    TOP_KEYS.join(", ")
                ),
            ));
            return None;
        }
        if let Some(s) = root.get("services")
            && s.as_map().is_none()
            && !s.is_null()
        {
            self.errors.push(err(
                &s.pos,
                format!("`services` is {}, expected a mapping of services", s.kind()),
            ));
            return None;
        }
        let mut root = root;
        let map = root.as_map_mut().expect("checked above");
        for (k, v) in map.iter_mut() {
            if INTERPOLATED.contains(&k.name.as_str()) {
                self.interpolate(v);
            }
        }
        Some(root)
    }

    fn interpolate(&mut self, node: &mut Node) {
        match &mut node.value {
            Value::Scalar { text, .. } => {
                if !text.contains('$') {
                    return;
                }
                let mut unresolved = Vec::new();
                let env = self.env;
                let dotenv = &self.dotenv;
                let lookup = |n: &str| env.get(n).or_else(|| dotenv.get(n)).cloned();
                match interp::interpolate(text, &lookup, &mut unresolved) {
                    Ok(s) => *text = s,
                    Err(e) => self.errors.push(err(&node.pos, e.to_string())),
                }
                for name in unresolved {
                    self.notes.push(Note {
                        pos: node.pos.clone(),
                        key: String::new(),
                        kind: NoteKind::Unresolved,
                        message: format!(
                            "variable {name} is not set: substituted an empty string"
                        ),
                        instead: Some(format!(
                            "set {name} in the environment or the .env file, or give a default: ${{{name}:-value}}"
                        )),
                    });
                }
            }
            Value::Seq(items) => items.iter_mut().for_each(|n| self.interpolate(n)),
            Value::Map(entries) => entries.iter_mut().for_each(|(_, n)| self.interpolate(n)),
            Value::Null => {}
        }
    }

    /// Services of one file, normalised and with `extends` resolved.
    pub fn services(&mut self, file: &str, root: &Node) -> Vec<(Key, Node)> {
        let Some(services) = root.get("services").and_then(Node::as_map) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in services {
            if v.as_map().is_none() && !v.is_null() {
                self.errors.push(err(
                    &v.pos,
                    format!("service {:?} is {}, expected a mapping", k.name, v.kind()),
                ));
                continue;
            }
            let mut chain = vec![(file.to_string(), k.name.clone())];
            if let Some(s) = self.resolve(file, root, k, v, &mut chain) {
                out.push((k.clone(), s));
            }
        }
        out
    }

    /// A service with its `extends` resolved (recursively).
    fn resolve(
        &mut self,
        file: &str,
        root: &Node,
        key: &Key,
        service: &Node,
        chain: &mut Vec<(String, String)>,
    ) -> Option<Node> {
        let service = normalise(service, &mut self.errors);
        let Some((ek, ev)) = service
            .get_entry("extends")
            .map(|(k, v)| (k.clone(), v.clone()))
        else {
            return Some(service);
        };
        if chain.len() > EXTENDS_DEPTH_MAX {
            self.errors.push(err(
                &ek.pos,
                format!("extends nests deeper than {EXTENDS_DEPTH_MAX} levels"),
            ));
            return None;
        }
        let (base_file, base_name) = match &ev.value {
            Value::Scalar { text, .. } => (None, text.clone()),
            Value::Map(_) => {
                let Some(name) = ev.get("service").and_then(Node::as_str) else {
                    self.errors.push(err(&ev.pos, "extends needs `service`"));
                    return None;
                };
                (
                    ev.get("file").and_then(Node::as_str).map(str::to_string),
                    name.to_string(),
                )
            }
            _ => {
                self.errors.push(err(
                    &ev.pos,
                    "extends is a service name or { service, file }",
                ));
                return None;
            }
        };
        let (other_file, other_root) = match base_file {
            None => (file.to_string(), root.clone()),
            Some(rel) => {
                let path = join_path(&dir_of(file), &rel);
                if let Some(parsed) = self.extended.get(&path) {
                    // Its errors were reported when it was first read.
                    let r = parsed.clone()?;
                    return self.extend_from(&path, r, key, service, ek, base_name, chain);
                }
                let text = match self.read_file(&path) {
                    Ok(Some(t)) => t,
                    Ok(None) => {
                        self.errors
                            .push(err(&ev.pos, format!("extends: file {path} does not exist")));
                        return None;
                    }
                    Err(e) => {
                        self.errors
                            .push(err(&ev.pos, format!("extends: cannot read {path}: {e}")));
                        return None;
                    }
                };
                let r = self.file(&path, &text);
                self.extended.insert(path.clone(), r.clone());
                (path, r?)
            }
        };
        self.extend_from(&other_file, other_root, key, service, ek, base_name, chain)
    }

    /// The rest of `resolve`: `service` extends `base_name` of `other_file`.
    #[allow(clippy::too_many_arguments)]
    fn extend_from(
        &mut self,
        other_file: &str,
        other_root: Node,
        key: &Key,
        mut service: Node,
        ek: Key,
        base_name: String,
        chain: &mut Vec<(String, String)>,
    ) -> Option<Node> {
        let other_file = other_file.to_string();
        let link = (other_file.clone(), base_name.clone());
        if chain.contains(&link) {
            let names: Vec<String> = chain
                .iter()
                .map(|(_, n)| n.clone())
                .chain([base_name])
                .collect();
            self.errors.push(err(
                &ek.pos,
                format!("extends cycle: {}", names.join(" -> ")),
            ));
            return None;
        }
        let Some((bk, bv)) = other_root
            .get("services")
            .and_then(|s| s.get_entry(&base_name))
            .map(|(k, v)| (k.clone(), v.clone()))
        else {
            self.errors.push(err(
                &ek.pos,
                format!(
                    "service {:?} extends {base_name:?}, which {other_file} does not define",
                    key.name
                ),
            ));
            return None;
        };
        chain.push(link);
        let base = self.resolve(&other_file, &other_root, &bk, &bv, chain)?;
        chain.pop();
        if let Some(m) = service.as_map_mut() {
            m.retain(|(k, _)| k.name != "extends");
        }
        self.notes.push(Note {
            pos: ek.pos.clone(),
            key: format!("services.{}.extends", key.name),
            kind: NoteKind::Mapped,
            message: format!("extends {base_name:?} of {other_file}: resolved into the service"),
            instead: None,
        });
        merge_service(&base, &service, &key.name, &mut self.errors)
    }

    /// Fold `env_file` into `environment` (explicit entries win) and take
    /// variables written without a value from the shell.
    pub fn env_files(&mut self, name: &str, service: &mut Node) {
        let Some(files) = service
            .get_entry("env_file")
            .map(|(k, v)| (k.clone(), v.clone()))
        else {
            return;
        };
        let (fk, fv) = files;
        let paths: Vec<Node> = match &fv.value {
            Value::Seq(items) => items.clone(),
            Value::Null => Vec::new(),
            _ => vec![fv.clone()],
        };
        let mut from_files: Vec<(Key, Node)> = Vec::new();
        for p in paths {
            let rel = match p.value {
                Value::Scalar { ref text, .. } => text.clone(),
                Value::Map(_) => p
                    .get("path")
                    .and_then(Node::as_str)
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            };
            let path = join_path(&self.project_dir, &rel);
            let text = match self.read_file(&path) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    self.errors
                        .push(err(&p.pos, format!("env_file {path} does not exist")));
                    continue;
                }
                Err(e) => {
                    self.errors
                        .push(err(&p.pos, format!("cannot read env_file {path}: {e}")));
                    continue;
                }
            };
            match dotenv::parse(&text) {
                Ok(lines) => {
                    let file: Arc<str> = Arc::from(path.as_str());
                    for l in lines {
                        let pos = Pos {
                            file: file.clone(),
                            line: l.line,
                        };
                        let value = match l.value {
                            Some(v) => Node::string(v, pos.clone()),
                            None => Node::new(Value::Null, pos.clone()),
                        };
                        from_files.retain(|(k, _)| k.name != l.key);
                        from_files.push((Key { name: l.key, pos }, value));
                    }
                }
                Err((line, message)) => self.errors.push(Error {
                    pos: Some(Pos {
                        file: Arc::from(path.as_str()),
                        line,
                    }),
                    message: format!("env_file: {message}"),
                }),
            }
        }
        self.notes.push(Note {
            pos: fk.pos.clone(),
            key: format!("services.{name}.env_file"),
            kind: NoteKind::Changed,
            message: format!(
                "{} variables read from env_file and written into env",
                from_files.len()
            ),
            instead: Some(
                "the stack file now holds their values: move passwords to berth `secrets`".into(),
            ),
        });
        let map = service.as_map_mut().expect("a service is a mapping");
        map.retain(|(k, _)| k.name != "env_file");
        let env_pos = fk.pos.clone();
        let env = match map.iter_mut().find(|(k, _)| k.name == "environment") {
            Some((_, v)) => v,
            None => {
                map.push((
                    Key {
                        name: "environment".into(),
                        pos: env_pos.clone(),
                    },
                    Node::new(Value::Map(Vec::new()), env_pos),
                ));
                &mut map.last_mut().expect("pushed").1
            }
        };
        if let Some(entries) = env.as_map_mut() {
            for (k, v) in from_files {
                if !entries.iter().any(|(e, _)| e.name == k.name) {
                    entries.push((k, v));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Normalising a service: the shapes merging works on
// ---------------------------------------------------------------------------

/// A list of `K=V` (or `K`) strings, or a mapping, as a mapping.
fn list_to_map(node: &Node, sep: char, what: &str, errors: &mut Vec<Error>) -> Node {
    match &node.value {
        Value::Seq(items) => {
            let mut out: Vec<(Key, Node)> = Vec::new();
            for item in items {
                let Some(s) = item.as_str() else {
                    errors.push(err(
                        &item.pos,
                        format!("{what} entries are strings, found {}", item.kind()),
                    ));
                    continue;
                };
                let (k, v) = match s.split_once(sep) {
                    Some((k, v)) => (k.to_string(), Node::string(v, item.pos.clone())),
                    None => (s.to_string(), Node::new(Value::Null, item.pos.clone())),
                };
                out.retain(|(e, _)| e.name != k);
                out.push((
                    Key {
                        name: k,
                        pos: item.pos.clone(),
                    },
                    v,
                ));
            }
            Node::new(Value::Map(out), node.pos.clone())
        }
        Value::Map(_) => node.clone(),
        Value::Null => Node::new(Value::Map(Vec::new()), node.pos.clone()),
        _ => {
            errors.push(err(
                &node.pos,
                format!("{what} is {}, expected a mapping or a list", node.kind()),
            ));
            Node::new(Value::Map(Vec::new()), node.pos.clone())
        }
    }
}

/// Rewrite a service's list-or-map keys as mappings and `depends_on` into
/// its long form, so two definitions merge key by key.
pub fn normalise(service: &Node, errors: &mut Vec<Error>) -> Node {
    let mut out = service.clone();
    if out.is_null() {
        out = Node::new(Value::Map(Vec::new()), service.pos.clone());
    }
    let Some(map) = out.as_map_mut() else {
        return out;
    };
    for (k, v) in map.iter_mut() {
        match k.name.as_str() {
            "environment" => *v = list_to_map(v, '=', "environment", errors),
            "labels" => *v = list_to_map(v, '=', "labels", errors),
            "extra_hosts" => {
                // `host:ip` in a list, `host: ip` in a mapping; an IPv6
                // address holds colons, so split at the first one.
                *v = list_to_map(v, ':', "extra_hosts", errors);
            }
            "depends_on" => {
                let pos = v.pos.clone();
                *v = match &v.value {
                    Value::Seq(items) => {
                        let entries = items
                            .iter()
                            .filter_map(|i| {
                                let name = i.as_str()?;
                                let cond = Node::new(
                                    Value::Map(vec![(
                                        Key {
                                            name: "condition".into(),
                                            pos: i.pos.clone(),
                                        },
                                        Node::string("service_started", i.pos.clone()),
                                    )]),
                                    i.pos.clone(),
                                );
                                Some((
                                    Key {
                                        name: name.to_string(),
                                        pos: i.pos.clone(),
                                    },
                                    cond,
                                ))
                            })
                            .collect();
                        Node::new(Value::Map(entries), pos)
                    }
                    _ => v.clone(),
                };
            }
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Merging: `-f a -f b` and `extends`
// ---------------------------------------------------------------------------

/// Keys merged entry by entry (override wins per entry).
const MERGE_MAPPINGS: &[&str] = &[
    "environment",
    "labels",
    "ulimits",
    "sysctls",
    "depends_on",
    "extra_hosts",
    "storage_opt",
    "healthcheck",
];
/// Keys merged recursively.
const MERGE_DEEP: &[&str] = &["deploy", "networks", "logging", "build"];
/// Lists merged as sets.
const MERGE_UNIQUE: &[&str] = &[
    "cap_add",
    "cap_drop",
    "expose",
    "external_links",
    "profiles",
    "ports",
];
/// Lists (or single strings) concatenated.
const MERGE_CONCAT: &[&str] = &["dns", "dns_search", "env_file", "tmpfs"];

/// The identity of a list item for merging (`volumes` by target path,
/// `secrets` by source).
fn item_key(field: &str, item: &Node) -> String {
    match field {
        "volumes" | "devices" => match &item.value {
            Value::Scalar { text, .. } => {
                let parts: Vec<&str> = text.split(':').collect();
                match parts.as_slice() {
                    [target] => target.to_string(),
                    [_, target, ..] => target.to_string(),
                    [] => String::new(),
                }
            }
            _ => item
                .get("target")
                .and_then(Node::as_str)
                .unwrap_or_default()
                .to_string(),
        },
        "secrets" | "configs" => match &item.value {
            Value::Scalar { text, .. } => text.clone(),
            _ => item
                .get("source")
                .and_then(Node::as_str)
                .unwrap_or_default()
                .to_string(),
        },
        _ => canonical(item),
    }
}

/// A node as text, for set comparison.
fn canonical(node: &Node) -> String {
    match &node.value {
        Value::Null => "~".into(),
        Value::Scalar { text, .. } => format!("{text:?}"),
        Value::Seq(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        Value::Map(entries) => {
            let mut parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{:?}:{}", k.name, canonical(v)))
                .collect();
            parts.sort();
            format!("{{{}}}", parts.join(","))
        }
    }
}

fn as_list(node: &Node) -> Vec<Node> {
    match &node.value {
        Value::Seq(items) => items.clone(),
        Value::Null => Vec::new(),
        _ => vec![node.clone()],
    }
}

fn conflict(path: &str, base: &Node, over: &Node) -> Error {
    err(
        &over.pos,
        format!(
            "merge conflict: {path} is {} in {} but {} in {}: berth cannot merge them; write it the same way in both files",
            base.kind(),
            base.pos,
            over.kind(),
            over.pos
        ),
    )
}

fn merge_deep(base: &Node, over: &Node, path: &str, errors: &mut Vec<Error>) -> Node {
    match (&base.value, &over.value) {
        (Value::Map(b), Value::Map(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                match out.iter_mut().find(|(e, _)| e.name == k.name) {
                    Some((ek, ev)) => {
                        *ev = merge_deep(ev, v, &format!("{path}.{}", k.name), errors);
                        *ek = k.clone();
                    }
                    None => out.push((k.clone(), v.clone())),
                }
            }
            Node::new(Value::Map(out), over.pos.clone())
        }
        (Value::Map(_), Value::Null) => base.clone(),
        (Value::Map(_), _) | (_, Value::Map(_)) if !base.is_null() => {
            errors.push(conflict(path, base, over));
            over.clone()
        }
        _ => over.clone(),
    }
}

/// `over` merged onto `base`, by compose's rules per key.
pub fn merge_service(
    base: &Node,
    over: &Node,
    name: &str,
    errors: &mut Vec<Error>,
) -> Option<Node> {
    let (Some(b), Some(o)) = (base.as_map(), over.as_map()) else {
        return Some(over.clone());
    };
    let mut out: Vec<(Key, Node)> = b.to_vec();
    for (k, v) in o {
        let path = format!("services.{name}.{}", k.name);
        let Some(slot) = out.iter_mut().find(|(e, _)| e.name == k.name) else {
            out.push((k.clone(), v.clone()));
            continue;
        };
        let field = k.name.as_str();
        let merged = if MERGE_MAPPINGS.contains(&field) {
            match (&slot.1.value, &v.value) {
                (Value::Map(_), Value::Map(_)) => {
                    let mut entries = slot.1.as_map().unwrap_or_default().to_vec();
                    for (ok, ov) in v.as_map().unwrap_or_default() {
                        entries.retain(|(e, _)| e.name != ok.name);
                        entries.push((ok.clone(), ov.clone()));
                    }
                    Node::new(Value::Map(entries), v.pos.clone())
                }
                (_, Value::Null) => slot.1.clone(),
                (Value::Null, _) => v.clone(),
                _ => {
                    errors.push(conflict(&path, &slot.1, v));
                    return None;
                }
            }
        } else if MERGE_DEEP.contains(&field) {
            let before = errors.len();
            let m = merge_deep(&slot.1, v, &path, errors);
            if errors.len() > before {
                return None;
            }
            m
        } else if MERGE_UNIQUE.contains(&field) || MERGE_CONCAT.contains(&field) {
            let mut items = as_list(&slot.1);
            for item in as_list(v) {
                let unique = MERGE_UNIQUE.contains(&field);
                if !unique || !items.iter().any(|i| canonical(i) == canonical(&item)) {
                    items.push(item);
                }
            }
            Node::new(Value::Seq(items), v.pos.clone())
        } else if matches!(field, "volumes" | "devices" | "secrets" | "configs") {
            let mut items = as_list(&slot.1);
            for item in as_list(v) {
                let key = item_key(field, &item);
                match items.iter_mut().find(|i| item_key(field, i) == key) {
                    Some(slot) => *slot = item,
                    None => items.push(item),
                }
            }
            Node::new(Value::Seq(items), v.pos.clone())
        } else {
            v.clone()
        };
        *slot = (k.clone(), merged);
    }
    Some(Node::new(Value::Map(out), over.pos.clone()))
}

/// Merge the files' models in order.
pub fn merge_files(models: Vec<Model>, errors: &mut Vec<Error>) -> Model {
    let mut out = Model::default();
    for m in models {
        if m.name.is_some() {
            out.name = m.name;
        }
        for (k, v) in m.services {
            match out.services.iter_mut().find(|(e, _)| e.name == k.name) {
                Some(slot) => {
                    if let Some(merged) = merge_service(&slot.1, &v, &k.name, errors) {
                        slot.1 = merged;
                    }
                }
                None => out.services.push((k, v)),
            }
        }
        for (k, v) in m.sections {
            match out.sections.iter_mut().find(|(e, _)| e.name == k.name) {
                Some(slot) => {
                    // Top-level entries (a volume, a network, a secret)
                    // are replaced whole by a later file's definition.
                    if let (Some(b), Some(o)) = (slot.1.as_map(), v.as_map()) {
                        let mut entries = b.to_vec();
                        for (ok, ov) in o {
                            entries.retain(|(e, _)| e.name != ok.name);
                            entries.push((ok.clone(), ov.clone()));
                        }
                        slot.1 = Node::new(Value::Map(entries), v.pos.clone());
                    } else {
                        slot.1 = v;
                    }
                }
                None => out.sections.push((k, v)),
            }
        }
    }
    out
}

/// Service names each active service depends on that are missing.
pub fn missing_dependencies(model: &Model) -> BTreeSet<String> {
    let names: BTreeSet<&str> = model
        .services
        .iter()
        .map(|(k, _)| k.name.as_str())
        .collect();
    let mut out = BTreeSet::new();
    for (_, s) in &model.services {
        if let Some(deps) = s.get("depends_on").and_then(Node::as_map) {
            for (d, _) in deps {
                if !names.contains(d.name.as_str()) {
                    out.insert(d.name.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let cases = [
            ("/a/b", "c", "/a/b/c"),
            ("/a/b", "./c", "/a/b/c"),
            ("/a/b", "../c", "/a/c"),
            ("/a/b", "/etc/x", "/etc/x"),
            (".", "x.env", "x.env"),
            ("dir", "../../x", "../x"),
            ("/", "../x", "/x"),
        ];
        for (dir, rel, want) in cases {
            assert_eq!(join_path(dir, rel), want, "{dir} + {rel}");
        }
        assert_eq!(dir_of("/a/b.yml"), "/a");
        assert_eq!(dir_of("b.yml"), ".");
        assert_eq!(dir_of("/b.yml"), "/");
    }
}
