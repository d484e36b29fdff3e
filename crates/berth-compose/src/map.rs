//! The merged compose model to berth apps. Every key of every service is
//! reported: mapped (same meaning), changed (expressed, different
//! meaning), unsupported (not expressed; an error with `--strict`) or
//! ignored (not needed), each with its line and what to do instead.

use std::collections::{BTreeMap, BTreeSet};

use berth_core::duration::format_duration;
use berth_core::validate;

use crate::load::{Model, join_path};
use crate::yaml::{Key, Node, Pos, Value};
use crate::{Error, Errors, Note, NoteKind, Options};

#[derive(Debug, Clone)]
pub struct Health {
    pub argv: Vec<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub start_period: Option<String>,
}

#[derive(Debug, Clone)]
pub struct App {
    pub id: String,
    pub service: String,
    pub pos: Pos,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<String>,
    pub volumes: Vec<(String, String)>,
    pub depends_on: BTreeMap<String, &'static str>,
    pub stop_grace: Option<String>,
    pub restart: &'static str,
    pub secrets: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub memory: Option<u64>,
    pub cap_add: Vec<String>,
    pub user: Option<String>,
    pub health: Option<Health>,
}

#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    pub apps: Vec<App>,
}

/// Docker's default capability set, which compose keeps and berth drops.
const DOCKER_DEFAULT_CAPS: &str = "CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP";

/// A name as a berth id: lowercase letters, digits and `-`, starting with
/// a letter, at most 31 characters.
pub fn to_id(name: &str, fallback_prefix: &str) -> String {
    let mut s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let mut s = s.trim_matches('-').to_string();
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s = format!("{fallback_prefix}-{s}");
    }
    s.truncate(validate::ID_LEN_MAX);
    s.trim_end_matches('-').to_string()
}

/// A compose duration (`1m30s`, `1.5s`, `500ms`, `10us`, `2h`) in ms.
pub fn parse_compose_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration {s:?}: use e.g. \"30s\", \"1m30s\" or \"500ms\"");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest.bytes().all(|b| b.is_ascii_digit()) {
        // A bare number is seconds in docker-compose 1.29 (and
        // nanoseconds in the Go implementation): refused as ambiguous.
        return Err(format!("duration {s:?} has no unit: write e.g. \"{s}s\""));
    }
    let mut total_us: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let us = match unit {
            "h" => 3_600_000_000.0,
            "m" => 60_000_000.0,
            "s" => 1_000_000.0,
            "ms" => 1_000.0,
            "us" | "µs" => 1.0,
            "ns" => 0.001,
            _ => return Err(bad()),
        };
        total_us += n * us;
        rest = tail;
    }
    if total_us > (berth_core::duration::DURATION_S_MAX as f64) * 1e6 {
        return Err(format!("duration {s:?} is too long"));
    }
    Ok((total_us / 1000.0).ceil() as u64)
}

fn berth_duration(ms: u64) -> String {
    format_duration(std::time::Duration::from_millis(ms))
}

/// Compose byte sizes: `512m`, `1g`, `1024k`, `2gb`, `100b`, a number.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_len);
    let mult: f64 = match unit {
        "" | "b" => 1.0,
        "k" | "kb" => 1024.0,
        "m" | "mb" => 1024.0 * 1024.0,
        "g" | "gb" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("invalid size {s:?}: use e.g. \"512m\" or \"1g\"")),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let bytes = (n * mult) as u64;
    if bytes == 0 {
        return Err(format!("size {s:?} must be greater than zero"));
    }
    Ok(bytes)
}

struct Ctx<'a> {
    notes: &'a mut Vec<Note>,
    errors: Vec<Error>,
    service: String,
}

impl Ctx<'_> {
    fn note(
        &mut self,
        pos: &Pos,
        key: &str,
        kind: NoteKind,
        message: String,
        instead: Option<&str>,
    ) {
        let key = if key.is_empty() {
            format!("services.{}", self.service)
        } else {
            format!("services.{}.{key}", self.service)
        };
        self.notes.push(Note {
            pos: pos.clone(),
            key,
            kind,
            message,
            instead: instead.map(str::to_string),
        });
    }
    fn mapped(&mut self, pos: &Pos, key: &str, message: String) {
        self.note(pos, key, NoteKind::Mapped, message, None);
    }
    fn changed(&mut self, pos: &Pos, key: &str, message: String, instead: &str) {
        self.note(pos, key, NoteKind::Changed, message, Some(instead));
    }
    fn unsupported(&mut self, pos: &Pos, key: &str, message: String, instead: &str) {
        self.note(pos, key, NoteKind::Unsupported, message, Some(instead));
    }
    fn error(&mut self, pos: &Pos, message: String) {
        self.errors.push(Error {
            pos: Some(pos.clone()),
            message,
        });
    }
}

/// A scalar's text, or an error noted on the key.
fn text(ctx: &mut Ctx<'_>, node: &Node, key: &str) -> Option<String> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text.clone()),
        _ => {
            ctx.error(
                &node.pos,
                format!(
                    "services.{}.{key}: expected a string, found {}",
                    ctx.service,
                    node.kind()
                ),
            );
            None
        }
    }
}

/// A command: a string split like a shell would, or a list of strings.
fn argv(ctx: &mut Ctx<'_>, node: &Node, key: &str) -> Option<Vec<String>> {
    match &node.value {
        Value::Scalar { text, .. } => match shell_words::split(text) {
            // An empty string means "none", as an empty list does.
            Ok(words) if words.is_empty() => None,
            Ok(words) => Some(words),
            Err(e) => {
                ctx.error(
                    &node.pos,
                    format!(
                        "services.{}.{key}: cannot split {text:?} like a shell: {e}",
                        ctx.service
                    ),
                );
                None
            }
        },
        // An empty list means "none", as compose reads it.
        Value::Seq(items) if items.is_empty() => None,
        Value::Seq(items) => {
            let mut out = Vec::new();
            for i in items {
                out.push(text(ctx, i, key)?);
            }
            Some(out)
        }
        Value::Null => None,
        Value::Map(_) => {
            ctx.error(
                &node.pos,
                format!(
                    "services.{}.{key}: expected a string or a list",
                    ctx.service
                ),
            );
            None
        }
    }
}

/// Who uses each top-level named volume (for the "shared" note).
fn volume_users(model: &Model) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, s) in &model.services {
        for v in s.get("volumes").and_then(Node::as_seq).unwrap_or_default() {
            let source = match &v.value {
                Value::Scalar { text, .. } => {
                    let parts: Vec<&str> = text.split(':').collect();
                    if parts.len() >= 2 {
                        Some(parts[0].to_string())
                    } else {
                        None
                    }
                }
                _ => v.get("source").and_then(Node::as_str).map(str::to_string),
            };
            if let Some(src) = source
                && !src.starts_with(['/', '.', '~'])
            {
                out.entry(src).or_default().push(k.name.clone());
            }
        }
    }
    out
}

pub fn map(
    model: &Model,
    opts: &Options,
    env: &BTreeMap<String, String>,
    notes: &mut Vec<Note>,
    files: &[(String, String)],
) -> Result<Stack, Errors> {
    let mut errors = Vec::new();
    let first = Pos {
        file: files[0].0.as_str().into(),
        line: 1,
    };
    // The stack name.
    let (raw_name, name_pos) = match (&opts.project_name, &model.name) {
        (Some(n), _) => (n.clone(), first.clone()),
        (None, Some(n)) => (n.as_str().unwrap_or_default().to_string(), n.pos.clone()),
        (None, None) => {
            let dir = opts.project_dir.trim_end_matches('/');
            (
                dir.rsplit('/').next().unwrap_or("compose").to_string(),
                first.clone(),
            )
        }
    };
    let name = to_id(&raw_name, "stack");
    if name != raw_name {
        notes.push(Note {
            pos: name_pos.clone(),
            key: "name".into(),
            kind: NoteKind::Changed,
            message: format!("project name {raw_name:?} became stack name {name:?}"),
            instead: Some("berth stack names are lowercase letters, digits and '-': pass --project-name to choose".into()),
        });
    }

    // Top-level sections.
    for (k, v) in &model.sections {
        let (kind, message, instead): (NoteKind, String, Option<&str>) = match k.name.as_str() {
            "version" => (NoteKind::Ignored, "the compose file format version is obsolete".into(), None),
            n if n.starts_with("x-") => (NoteKind::Ignored, "extension field (its anchors were applied where used)".into(), None),
            "volumes" => (NoteKind::Changed, "named volumes become per-app berth volumes (\"<stack>-<app>-<name>\"); driver options are not kept".into(), Some("a volume two services share in compose is one volume per app in berth")),
            "networks" => (NoteKind::Changed, "berth puts every app on one stack network, where each app id is its DNS name".into(), Some("address other apps by their app id")),
            "secrets" => (NoteKind::Changed, "berth generates each secret (32 random characters) at install; the compose source (file, environment) is not read or copied".into(), Some("apps read /run/secrets/<name> as before; give the app its value through that file")),
            "configs" => (NoteKind::Unsupported, "berth has no configs".into(), Some("bake the file into the image, or put it in a named volume")),
            _ => (NoteKind::Unsupported, "unknown top-level key".into(), None),
        };
        notes.push(Note {
            pos: k.pos.clone(),
            key: k.name.clone(),
            kind,
            message,
            instead: instead.map(str::to_string),
        });
        let _ = v;
    }

    // Which services are active under the profiles given.
    let active = |s: &Node| -> bool {
        match s.get("profiles").and_then(Node::as_seq) {
            None => true,
            Some([]) => true,
            Some(ps) => ps.iter().any(|p| {
                p.as_str()
                    .is_some_and(|p| opts.profiles.iter().any(|o| o == p || o == "*"))
            }),
        }
    };
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut hidden: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, s) in &model.services {
        if !active(s) {
            let ps: Vec<String> = s
                .get("profiles")
                .and_then(Node::as_seq)
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect();
            notes.push(Note {
                pos: k.pos.clone(),
                key: format!("services.{}", k.name),
                kind: NoteKind::Skipped,
                message: format!(
                    "service {:?} skipped: only in profile {}",
                    k.name,
                    ps.join(", ")
                ),
                instead: Some(format!(
                    "import it with --profile {}",
                    ps.first().cloned().unwrap_or_default()
                )),
            });
            hidden.insert(k.name.clone(), ps);
            continue;
        }
        let id = to_id(&k.name, "app");
        if let Some((other, _)) = ids.iter().find(|(_, i)| **i == id) {
            errors.push(Error {
                pos: Some(k.pos.clone()),
                message: format!(
                    "services {other:?} and {:?} both become berth app {id:?}: berth cannot express both; rename one",
                    k.name
                ),
            });
        }
        ids.insert(k.name.clone(), id);
    }

    let users = volume_users(model);
    let mut apps = Vec::new();
    for (k, s) in &model.services {
        let Some(id) = ids.get(&k.name).cloned() else {
            continue;
        };
        let mut ctx = Ctx {
            notes,
            errors: Vec::new(),
            service: k.name.clone(),
        };
        if id != k.name {
            ctx.changed(
                &k.pos,
                "",
                format!("service {:?} became app {id:?}", k.name),
                "berth app ids are lowercase letters, digits and '-'",
            );
        }
        if let Some(app) = service(&mut ctx, &id, k, s, &ids, &hidden, &users, env, opts) {
            apps.push(app);
        }
        errors.append(&mut ctx.errors);
    }
    // A healthy-dependency needs a health check on the dependency in berth.
    let with_health: BTreeSet<String> = apps
        .iter()
        .filter(|a| a.health.is_some())
        .map(|a| a.id.clone())
        .collect();
    for app in &mut apps {
        for (dep, cond) in app.depends_on.iter_mut() {
            if *cond == "healthy" && !with_health.contains(dep) {
                *cond = "started";
                notes.push(Note {
                    pos: app.pos.clone(),
                    key: format!("services.{}.depends_on.{dep}", app.service),
                    kind: NoteKind::Changed,
                    message: format!("waits for {dep:?} to start, not to be healthy: {dep:?} has no health check berth can run"),
                    instead: Some(format!("give {dep:?} a healthcheck")),
                });
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by(|a, b| {
            let key = |e: &Error| e.pos.as_ref().map(|p| (p.file.to_string(), p.line));
            key(a).cmp(&key(b))
        });
        return Err(Errors(errors));
    }
    Ok(Stack { name, apps })
}

#[allow(clippy::too_many_arguments)]
fn service(
    ctx: &mut Ctx<'_>,
    id: &str,
    key: &Key,
    s: &Node,
    ids: &BTreeMap<String, String>,
    hidden: &BTreeMap<String, Vec<String>>,
    users: &BTreeMap<String, Vec<String>>,
    env: &BTreeMap<String, String>,
    opts: &Options,
) -> Option<App> {
    let entries = s.as_map().unwrap_or_default();
    let mut app = App {
        id: id.to_string(),
        service: key.name.clone(),
        pos: key.pos.clone(),
        image: String::new(),
        entrypoint: None,
        command: None,
        env: BTreeMap::new(),
        ports: Vec::new(),
        volumes: Vec::new(),
        depends_on: BTreeMap::new(),
        stop_grace: None,
        // Compose's default: never restart.
        restart: "no",
        secrets: Vec::new(),
        labels: BTreeMap::new(),
        memory: None,
        cap_add: Vec::new(),
        user: None,
        health: None,
    };
    let Some(image) = s
        .get("image")
        .and_then(Node::as_str)
        .filter(|i| !i.is_empty())
    else {
        let why = if s.get("build").is_some() {
            "it only has `build`, and berth does not build images: build and push (or tag) the image, then set `image`"
        } else {
            "set `image`"
        };
        ctx.error(
            &key.pos,
            format!("service {:?} has no image: {why}", key.name),
        );
        return None;
    };
    if let Err(e) = validate::check_image(image) {
        ctx.error(&key.pos, format!("services.{}.image: {e}", key.name));
        return None;
    }
    app.image = image.to_string();
    let mut drops_all = false;
    for (k, v) in entries {
        let p = &k.pos;
        let name = k.name.as_str();
        match name {
            "image" => ctx.mapped(p, name, format!("image {:?}", app.image)),
            "command" => {
                app.command = argv(ctx, v, name);
                ctx.mapped(p, name, "command".into());
            }
            "entrypoint" => {
                app.entrypoint = argv(ctx, v, name);
                ctx.mapped(p, name, "entrypoint".into());
            }
            "environment" => environment(ctx, &mut app, k, v, env),
            "ports" => ports(ctx, &mut app, v),
            "expose" => ctx.note(p, name, NoteKind::Ignored, "berth apps reach every port of each other on the stack network".into(), None),
            "volumes" => volumes(ctx, &mut app, v, users, opts),
            "tmpfs" => ctx.unsupported(p, name, "berth has no tmpfs mounts".into(), "let the app write to its container filesystem, or use a named volume"),
            "depends_on" => depends_on(ctx, &mut app, v, ids, hidden),
            "healthcheck" => healthcheck(ctx, &mut app, k, v),
            "restart" => {
                let r = v.as_str().unwrap_or_default();
                match r.split(':').next().unwrap_or_default() {
                    "no" | "" => {
                        app.restart = "no";
                        ctx.mapped(p, name, "restart \"no\"".into());
                    }
                    "always" => {
                        app.restart = "always";
                        ctx.mapped(p, name, "restart \"always\"".into());
                    }
                    "unless-stopped" => {
                        app.restart = "always";
                        ctx.mapped(p, name, "restart \"always\" (berth never restarts an app you stopped, as unless-stopped)".into());
                    }
                    "on-failure" => {
                        app.restart = "on-failure";
                        if r.contains(':') {
                            ctx.changed(p, name, format!("{r:?} became \"on-failure\": berth's supervision backs off and quarantines instead of a retry count"), "nothing to do");
                        } else {
                            ctx.mapped(p, name, "restart \"on-failure\"".into());
                        }
                    }
                    other => ctx.error(&v.pos, format!("services.{}.restart: unknown policy {other:?}", key.name)),
                }
            }
            "stop_grace_period" => {
                if let Some(t) = text(ctx, v, name) {
                    match parse_compose_duration(&t) {
                        Ok(ms) => {
                            app.stop_grace = Some(berth_duration(ms));
                            ctx.mapped(p, name, format!("stop_grace {:?}", berth_duration(ms)));
                        }
                        Err(e) => ctx.error(&v.pos, format!("services.{}.{name}: {e}", key.name)),
                    }
                }
            }
            "user" => {
                if let Some(u) = text(ctx, v, name) {
                    match validate::check_user(&u) {
                        Ok(()) => {
                            ctx.mapped(p, name, format!("user {u:?}"));
                            app.user = Some(u);
                        }
                        Err(e) => ctx.unsupported(p, name, e, "use USER or USER:GROUP"),
                    }
                }
            }
            "cap_add" => {
                for c in v.as_seq().unwrap_or_default() {
                    let c = c.as_str().unwrap_or_default();
                    match validate::normalize_capability(c) {
                        Ok(cap) if !app.cap_add.contains(&cap) => app.cap_add.push(cap),
                        Ok(_) => {}
                        Err(e) => ctx.unsupported(p, name, e, "list each capability the app needs"),
                    }
                }
                ctx.mapped(p, name, format!("cap_add {:?}", app.cap_add));
            }
            "cap_drop" => {
                drops_all = v.as_seq().unwrap_or_default().iter().any(|c| matches!(c.as_str(), Some("ALL" | "all")));
                ctx.mapped(p, name, "berth drops every capability already (cap-drop ALL)".into());
            }
            "read_only" => match v.as_bool() {
                Some(false) => ctx.mapped(p, name, "read_only false is berth's behaviour".into()),
                _ => ctx.unsupported(p, name, "berth has no read-only root filesystem option".into(), "the container's root filesystem stays writable"),
            },
            "mem_limit" => memory(ctx, &mut app, v, name),
            "deploy" => deploy(ctx, &mut app, v),
            "secrets" => secrets(ctx, &mut app, v),
            "labels" => {
                for (lk, lv) in v.as_map().unwrap_or_default() {
                    let value = lv.as_str().unwrap_or_default().to_string();
                    match validate::check_label_key(&lk.name) {
                        Ok(()) => {
                            app.labels.insert(lk.name.clone(), value);
                        }
                        Err(e) => ctx.unsupported(&lk.pos, &format!("labels.{}", lk.name), e, "rename the label"),
                    }
                }
                ctx.mapped(p, name, format!("{} labels", app.labels.len()));
            }
            "init" => match v.as_bool() {
                Some(false) => ctx.mapped(p, name, "init false is berth's behaviour".into()),
                _ => ctx.unsupported(p, name, "berth runs no init process in the container".into(), "use an image whose entrypoint is an init (tini, dumb-init), or add it to `entrypoint`"),
            },
            "ulimits" => ctx.unsupported(p, name, "berth sets no per-app ulimits".into(), "raise the limits of the engine (berth doctor shows Podman's)"),
            "extra_hosts" => ctx.unsupported(p, name, "berth adds no /etc/hosts entries".into(), "address apps by their app id on the stack network, or use the address itself"),
            "working_dir" => ctx.unsupported(p, name, "berth has no working directory setting".into(), "set WORKDIR in the image, or wrap the command: [\"sh\", \"-c\", \"cd DIR && exec ...\"]"),
            "build" => ctx.unsupported(p, name, "berth does not build images".into(), "build the image yourself (it is used as `image`)"),
            "privileged" => match v.as_bool() {
                Some(false) => ctx.mapped(p, name, "privileged false is berth's behaviour".into()),
                _ => ctx.unsupported(p, name, "berth never runs privileged containers".into(), "add the capabilities the app needs with cap_add"),
            },
            "network_mode" => ctx.unsupported(p, name, format!("network_mode {:?}: berth apps join the stack network", v.as_str().unwrap_or_default()), "publish the ports the host needs with `ports`"),
            "networks" => networks(ctx, v, k),
            "devices" => ctx.unsupported(p, name, "berth passes no devices into containers".into(), "run the app outside berth, or reach the device over the network"),
            "container_name" => ctx.changed(p, name, format!("berth names the container \"<stack>-{id}\", not {:?}", v.as_str().unwrap_or_default()), "address the app by its app id"),
            "hostname" => ctx.unsupported(p, name, "berth sets no host name".into(), "the app id is the container's DNS name on the stack network"),
            "logging" => ctx.changed(p, name, "berth rotates container logs itself (10 MB × 3)".into(), "read them with berth logs"),
            "profiles" => ctx.mapped(p, name, "the service is imported: one of its profiles was given".into()),
            "stop_signal" => ctx.unsupported(p, name, "berth stops apps with SIGTERM".into(), "set STOPSIGNAL in the image"),
            "env_file" | "extends" => {}
            n if n.starts_with("x-") => ctx.note(p, name, NoteKind::Ignored, "extension field".into(), None),
            _ => ctx.unsupported(p, name, format!("berth has no equivalent of `{name}`"), "drop it, or run this service outside berth"),
        }
    }
    if !drops_all {
        ctx.changed(
            &key.pos,
            "",
            format!("berth drops every capability, compose keeps the engine's defaults ({DOCKER_DEFAULT_CAPS})"),
            "add what the image needs with cap_add (images that switch users need CHOWN, SETUID, SETGID)",
        );
    }
    Some(app)
}

const SECRETISH: &[&str] = &["PASSWORD", "PASS", "SECRET", "TOKEN", "PRIVATE"];

fn environment(
    ctx: &mut Ctx<'_>,
    app: &mut App,
    k: &Key,
    v: &Node,
    env: &BTreeMap<String, String>,
) {
    let key_pos = k.pos.clone();
    for (k, val) in v.as_map().unwrap_or_default() {
        let key = format!("environment.{}", k.name);
        if let Err(e) = validate::check_env_key(&k.name) {
            ctx.unsupported(&k.pos, &key, e, "rename the variable");
            continue;
        }
        let value = match &val.value {
            Value::Scalar { text, .. } => text.clone(),
            Value::Null => match env.get(&k.name) {
                Some(v) => {
                    ctx.changed(&k.pos, &key, "no value in the file: the shell's value at import time was written into the stack file".into(), "write the value in the compose file, or move it to a berth secret");
                    v.clone()
                }
                None => {
                    ctx.unsupported(
                        &k.pos,
                        &key,
                        "no value in the file and none in the shell: left out".into(),
                        "give it a value",
                    );
                    continue;
                }
            },
            _ => {
                ctx.error(
                    &val.pos,
                    format!(
                        "services.{}.{key}: expected a string, found {}",
                        ctx.service,
                        val.kind()
                    ),
                );
                continue;
            }
        };
        let upper = k.name.to_ascii_uppercase();
        if SECRETISH.iter().any(|s| upper.contains(s)) && !value.is_empty() {
            ctx.changed(
                &k.pos,
                &key,
                "a password-like value is copied into the stack file's env in plain text".into(),
                "prefer a berth secret (mounted at /run/secrets/<name>) if the app reads one",
            );
        }
        app.env.insert(k.name.clone(), value);
    }
    ctx.mapped(
        &key_pos,
        "environment",
        format!("{} variables in env", app.env.len()),
    );
}

fn ports(ctx: &mut Ctx<'_>, app: &mut App, v: &Node) {
    for (i, item) in v.as_seq().unwrap_or_default().iter().enumerate() {
        let key = format!("ports[{i}]");
        let spec = match &item.value {
            Value::Scalar { text, .. } => {
                let (body, proto) = match text.rsplit_once('/') {
                    Some((b, p)) => (b, format!("/{p}")),
                    None => (text.as_str(), String::new()),
                };
                if !body.contains(':') {
                    ctx.unsupported(&item.pos, &key, format!("port {text:?} has no host port (compose picks a random one)"), "write HOST:CONTAINER, or drop it: apps reach each other's ports on the stack network");
                    continue;
                }
                // A host address or host port range is refused by berth's
                // own parser below, with its message.
                let parts: Vec<&str> = body.rsplitn(3, ':').collect();
                match parts.as_slice() {
                    [c, "", ip] => {
                        ctx.unsupported(
                            &item.pos,
                            &key,
                            format!("port {text:?} has no host port"),
                            &format!("write {ip}:{c}:{c}"),
                        );
                        continue;
                    }
                    _ => format!("{body}{proto}"),
                }
            }
            Value::Map(_) => {
                let target = item
                    .get("target")
                    .and_then(Node::as_str)
                    .unwrap_or_default();
                let Some(published) = item.get("published").and_then(Node::as_str) else {
                    ctx.unsupported(
                        &item.pos,
                        &key,
                        format!("port {target} has no published port"),
                        "set `published`, or drop it",
                    );
                    continue;
                };
                let proto = item.get("protocol").and_then(Node::as_str).unwrap_or("tcp");
                if let Some(mode) = item.get("mode").and_then(Node::as_str)
                    && mode != "host"
                    && mode != "ingress"
                {
                    ctx.unsupported(
                        &item.pos,
                        &key,
                        format!("port mode {mode:?}"),
                        "drop `mode`",
                    );
                }
                match item.get("host_ip").and_then(Node::as_str) {
                    Some(ip) if ip.contains(':') => format!("[{ip}]:{published}:{target}/{proto}"),
                    Some(ip) => format!("{ip}:{published}:{target}/{proto}"),
                    None => format!("{published}:{target}/{proto}"),
                }
            }
            _ => continue,
        };
        match validate::parse_port(&spec) {
            Ok(p) => {
                let s = validate::format_port(&p);
                ctx.mapped(&item.pos, &key, format!("port {s:?}"));
                if !app.ports.contains(&s) {
                    app.ports.push(s);
                }
            }
            Err(e) => ctx.unsupported(&item.pos, &key, e, "list each port as HOST:CONTAINER"),
        }
    }
}

fn volumes(
    ctx: &mut Ctx<'_>,
    app: &mut App,
    v: &Node,
    users: &BTreeMap<String, Vec<String>>,
    opts: &Options,
) {
    for (i, item) in v.as_seq().unwrap_or_default().iter().enumerate() {
        let key = format!("volumes[{i}]");
        // (type, source, target, read-only)
        let (kind, source, target, ro) = match &item.value {
            Value::Scalar { text, .. } => {
                let parts: Vec<&str> = text.split(':').collect();
                match parts.as_slice() {
                    [t] => ("volume".to_string(), String::new(), t.to_string(), false),
                    [s, t] | [s, t, _] => {
                        let ro = parts
                            .get(2)
                            .is_some_and(|m| m.split(',').any(|o| o == "ro"));
                        let kind = if s.starts_with(['/', '.', '~']) {
                            "bind"
                        } else {
                            "volume"
                        };
                        (kind.to_string(), s.to_string(), t.to_string(), ro)
                    }
                    _ => {
                        ctx.unsupported(
                            &item.pos,
                            &key,
                            format!("volume {text:?} is not SOURCE:TARGET[:MODE]"),
                            "fix the volume",
                        );
                        continue;
                    }
                }
            }
            Value::Map(_) => {
                let s = |k: &str| {
                    item.get(k)
                        .and_then(Node::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let ro = item
                    .get("read_only")
                    .and_then(Node::as_bool)
                    .unwrap_or(false);
                let kind = if s("type").is_empty() {
                    "volume".to_string()
                } else {
                    s("type")
                };
                (kind, s("source"), s("target"), ro)
            }
            _ => continue,
        };
        if kind == "tmpfs" {
            ctx.unsupported(
                &item.pos,
                &key,
                format!("tmpfs at {target:?}: berth has no tmpfs mounts"),
                "let the app write to its container filesystem, or use a named volume",
            );
            continue;
        }
        if kind != "volume" && kind != "bind" {
            ctx.unsupported(
                &item.pos,
                &key,
                format!("volume type {kind:?}"),
                "use a named volume",
            );
            continue;
        }
        if let Err(e) = validate::check_volume_path(&target) {
            ctx.unsupported(&item.pos, &key, e, "mount it elsewhere");
            continue;
        }
        let base = if source.is_empty() {
            target
                .rsplit('/')
                .find(|s| !s.is_empty())
                .unwrap_or("data")
                .to_string()
        } else if kind == "bind" {
            source
                .rsplit('/')
                .find(|s| !s.is_empty() && *s != "." && *s != "..")
                .unwrap_or("data")
                .to_string()
        } else {
            source.clone()
        };
        let mut name = to_id(&base, "v").replace('-', "_").replace('_', "-");
        let stem = name.clone();
        let mut n = 2;
        while app.volumes.iter().any(|(v, _)| *v == name) {
            name = to_id(&format!("{stem}-{n}"), "v");
            n += 1;
        }
        if kind == "bind" {
            let host = join_path(&opts.project_dir, &source);
            ctx.changed(&item.pos, &key, format!("bind mount {host} → named volume {name:?} at {target:?}: berth has no bind mounts, and the host directory's files are not copied in"), "copy the files into the volume after install, or bake them into the image");
        } else if source.is_empty() {
            ctx.changed(&item.pos, &key, format!("anonymous volume at {target:?} → named volume {name:?}: berth keeps it across reinstalls"), "nothing to do");
        } else if users.get(&source).is_some_and(|u| u.len() > 1) {
            let u = users.get(&source).map(|u| u.join(", ")).unwrap_or_default();
            ctx.changed(&item.pos, &key, format!("volume {source:?} is shared by {u} in compose; berth volumes belong to one app: this is {name:?} of this app alone"), "share data over the network (an API, a port) instead of a volume");
        } else {
            ctx.mapped(&item.pos, &key, format!("volume {name:?} at {target:?}"));
        }
        if ro {
            ctx.changed(
                &item.pos,
                &key,
                "berth mounts volumes read-write: read-only is dropped".into(),
                "nothing to do, or make the app not write there",
            );
        }
        app.volumes.push((name, target));
    }
}

fn depends_on(
    ctx: &mut Ctx<'_>,
    app: &mut App,
    v: &Node,
    ids: &BTreeMap<String, String>,
    hidden: &BTreeMap<String, Vec<String>>,
) {
    for (dk, dv) in v.as_map().unwrap_or_default() {
        let key = format!("depends_on.{}", dk.name);
        if let Some(ps) = hidden.get(&dk.name) {
            ctx.error(&dk.pos, format!("service {:?} depends on {:?}, which is only in profile {}: import with --profile {}", ctx.service, dk.name, ps.join(", "), ps.first().cloned().unwrap_or_default()));
            continue;
        }
        let Some(dep) = ids.get(&dk.name) else {
            ctx.error(
                &dk.pos,
                format!(
                    "service {:?} depends on undefined service {:?}",
                    ctx.service, dk.name
                ),
            );
            continue;
        };
        for (ck, _) in dv.as_map().unwrap_or_default() {
            if !matches!(ck.name.as_str(), "condition") {
                ctx.note(&ck.pos, &format!("{key}.{}", ck.name), NoteKind::Ignored, format!("`{}` of a dependency: berth always waits for it and restarts dependents itself", ck.name), None);
            }
        }
        let cond = dv
            .get("condition")
            .and_then(Node::as_str)
            .unwrap_or("service_started");
        let c = match cond {
            "service_started" => "started",
            "service_healthy" => "healthy",
            "service_completed_successfully" => {
                ctx.changed(
                    &dk.pos,
                    &key,
                    format!(
                        "berth waits for {:?} to start, not to finish: berth runs long-lived apps",
                        dk.name
                    ),
                    "do one-shot work (migrations, setup) in the app's own entrypoint",
                );
                "started"
            }
            other => {
                ctx.error(
                    &dk.pos,
                    format!(
                        "services.{}.{key}: unknown condition {other:?}",
                        ctx.service
                    ),
                );
                continue;
            }
        };
        if cond != "service_completed_successfully" {
            ctx.mapped(&dk.pos, &key, format!("depends_on {dep} = {c:?}"));
        }
        app.depends_on.insert(dep.clone(), c);
    }
}

fn duration_key(ctx: &mut Ctx<'_>, v: &Node, key: &str, allow_zero: bool) -> Option<String> {
    let t = text(ctx, v, key)?;
    match parse_compose_duration(&t) {
        Ok(0) if !allow_zero => {
            ctx.error(
                &v.pos,
                format!("services.{}.{key}: must be greater than zero", ctx.service),
            );
            None
        }
        Ok(ms) => Some(berth_duration(ms)),
        Err(e) => {
            ctx.error(&v.pos, format!("services.{}.{key}: {e}", ctx.service));
            None
        }
    }
}

fn healthcheck(ctx: &mut Ctx<'_>, app: &mut App, k: &Key, v: &Node) {
    if v.get("disable").and_then(Node::as_bool) == Some(true) {
        ctx.mapped(&k.pos, "healthcheck", "disabled: no health check".into());
        return;
    }
    let test = v.get("test");
    let argv: Option<Vec<String>> = match test.map(|t| &t.value) {
        None => None,
        Some(Value::Scalar { text, .. }) => Some(vec!["sh".into(), "-c".into(), text.clone()]),
        Some(Value::Seq(items)) => {
            let words: Vec<String> = items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect();
            match words.first().map(String::as_str) {
                Some("NONE") => {
                    ctx.mapped(&k.pos, "healthcheck", "NONE: no health check".into());
                    return;
                }
                Some("CMD") if words.len() > 1 => Some(words[1..].to_vec()),
                Some("CMD-SHELL") if words.len() == 2 => {
                    Some(vec!["sh".into(), "-c".into(), words[1].clone()])
                }
                _ => {
                    ctx.error(&k.pos, format!("services.{}.healthcheck.test: expected [\"CMD\", ...], [\"CMD-SHELL\", \"...\"], [\"NONE\"] or a string", ctx.service));
                    return;
                }
            }
        }
        Some(_) => None,
    };
    let Some(argv) = argv else {
        ctx.unsupported(&k.pos, "healthcheck", "a healthcheck without `test` (it would use the image's HEALTHCHECK, which berth does not read)".into(), "write the test");
        return;
    };
    // Compose's defaults, which differ from berth's (10s / 2s).
    let mut h = Health {
        argv,
        interval: Some("30s".into()),
        timeout: Some("30s".into()),
        retries: None,
        start_period: None,
    };
    for (hk, hv) in v.as_map().unwrap_or_default() {
        let key = format!("healthcheck.{}", hk.name);
        match hk.name.as_str() {
            "test" | "disable" => {}
            "interval" => h.interval = duration_key(ctx, hv, &key, false),
            "timeout" => h.timeout = duration_key(ctx, hv, &key, false),
            "start_period" => h.start_period = duration_key(ctx, hv, &key, true),
            "retries" => match hv.as_str().and_then(|r| r.parse::<u32>().ok()) {
                Some(r @ 1..=100) => h.retries = Some(r),
                _ => ctx.unsupported(
                    &hk.pos,
                    &key,
                    format!(
                        "retries {:?}: berth takes 1 to 100",
                        hv.as_str().unwrap_or_default()
                    ),
                    "use 1 to 100",
                ),
            },
            other => ctx.unsupported(
                &hk.pos,
                &key,
                format!("berth health checks have no `{other}`"),
                "drop it",
            ),
        }
    }
    ctx.mapped(
        &k.pos,
        "healthcheck",
        "health.command (executed in the container, as compose does)".into(),
    );
    app.health = Some(h);
}

fn memory(ctx: &mut Ctx<'_>, app: &mut App, v: &Node, key: &str) {
    let Some(t) = text(ctx, v, key) else { return };
    match parse_bytes(&t) {
        Ok(b) => {
            if app.memory.is_some() {
                ctx.changed(
                    &v.pos,
                    key,
                    "a second memory limit: the smaller one is kept".into(),
                    "give one limit",
                );
            }
            app.memory = Some(app.memory.map_or(b, |m| m.min(b)));
            ctx.mapped(&v.pos, key, format!("memory {b} bytes"));
        }
        Err(e) => ctx.error(&v.pos, format!("services.{}.{key}: {e}", ctx.service)),
    }
}

fn deploy(ctx: &mut Ctx<'_>, app: &mut App, v: &Node) {
    for (dk, dv) in v.as_map().unwrap_or_default() {
        let key = format!("deploy.{}", dk.name);
        match dk.name.as_str() {
            "resources" => {
                for (rk, rv) in dv.as_map().unwrap_or_default() {
                    let rkey = format!("{key}.{}", rk.name);
                    for (lk, lv) in rv.as_map().unwrap_or_default() {
                        let lkey = format!("{rkey}.{}", lk.name);
                        if rk.name == "limits" && lk.name == "memory" {
                            memory(ctx, app, lv, &lkey);
                        } else {
                            ctx.unsupported(
                                &lk.pos,
                                &lkey,
                                format!("berth sets no {} {}", rk.name, lk.name),
                                "drop it; berth limits memory only",
                            );
                        }
                    }
                }
            }
            "restart_policy" => {
                let cond = dv.get("condition").and_then(Node::as_str).unwrap_or("any");
                app.restart = match cond {
                    "none" => "no",
                    "on-failure" => "on-failure",
                    _ => "always",
                };
                ctx.mapped(&dk.pos, &key, format!("restart {:?}", app.restart));
                for (pk, _) in dv.as_map().unwrap_or_default() {
                    if pk.name != "condition" {
                        ctx.changed(
                            &pk.pos,
                            &format!("{key}.{}", pk.name),
                            "berth's supervision has its own backoff and quarantine".into(),
                            "nothing to do",
                        );
                    }
                }
            }
            "replicas" if dv.as_str() == Some("1") => {
                ctx.mapped(&dk.pos, &key, "one container".into())
            }
            _ => ctx.unsupported(
                &dk.pos,
                &key,
                format!("berth has no `deploy.{}`", dk.name),
                "drop it: berth runs one container per app",
            ),
        }
    }
}

fn secrets(ctx: &mut Ctx<'_>, app: &mut App, v: &Node) {
    for (i, item) in v.as_seq().unwrap_or_default().iter().enumerate() {
        let key = format!("secrets[{i}]");
        let (source, target) = match &item.value {
            Value::Scalar { text, .. } => (text.clone(), None),
            _ => (
                item.get("source")
                    .and_then(Node::as_str)
                    .unwrap_or_default()
                    .to_string(),
                item.get("target")
                    .and_then(Node::as_str)
                    .map(str::to_string),
            ),
        };
        let name = {
            let n: String = source
                .to_ascii_lowercase()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            n.trim_start_matches(['_', '.', '-']).to_string()
        };
        if let Err(e) = validate::check_secret_name(&name) {
            ctx.unsupported(&item.pos, &key, e, "rename the secret");
            continue;
        }
        if name != source {
            ctx.changed(
                &item.pos,
                &key,
                format!("secret {source:?} is mounted as /run/secrets/{name}"),
                "point the app at the new path",
            );
        }
        if let Some(t) = target
            && t != source
            && t != format!("/run/secrets/{source}")
        {
            ctx.unsupported(
                &item.pos,
                &key,
                format!("target {t:?}: berth mounts secrets at /run/secrets/{name}"),
                "point the app at /run/secrets/<name>",
            );
        }
        for (sk, _) in item.as_map().unwrap_or_default() {
            if matches!(sk.name.as_str(), "uid" | "gid" | "mode") {
                ctx.unsupported(
                    &sk.pos,
                    &format!("{key}.{}", sk.name),
                    "berth's secret files are 0400, owned by root".into(),
                    "run the app as a user that can read them, or copy the file at start",
                );
            }
        }
        ctx.changed(&item.pos, &key, format!("secret {name:?}: berth generates its value (32 random characters) at install; nothing from the compose source is copied"), "if the app needs a value you choose, write it to the secret's file after install");
        if !app.secrets.contains(&name) {
            app.secrets.push(name);
        }
    }
}

fn networks(ctx: &mut Ctx<'_>, v: &Node, k: &Key) {
    ctx.changed(
        &k.pos,
        "networks",
        "berth puts every app on the one stack network".into(),
        "address other apps by their app id",
    );
    for (nk, nv) in v.as_map().unwrap_or_default() {
        for (ak, _) in nv.as_map().unwrap_or_default() {
            let key = format!("networks.{}.{}", nk.name, ak.name);
            match ak.name.as_str() {
                "ipv4_address" | "ipv6_address" => ctx.unsupported(
                    &ak.pos,
                    &key,
                    "a fixed address: berth lets the engine assign addresses".into(),
                    "address the app by its app id",
                ),
                "aliases" => ctx.unsupported(
                    &ak.pos,
                    &key,
                    "berth gives each app one DNS name, its app id".into(),
                    "rename the service, or use the app id",
                ),
                other => ctx.unsupported(
                    &ak.pos,
                    &key,
                    format!("berth has no network `{other}`"),
                    "drop it",
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("30s", 30_000),
            ("1m30s", 90_000),
            ("1.5s", 1_500),
            ("500ms", 500),
            ("2h", 7_200_000),
            ("10us", 1),
            ("0s", 0),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_compose_duration(s), Ok(ms), "{s}");
        }
        for s in ["", "30", "1x", "s", "1..5s"] {
            assert!(parse_compose_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("512m", 512 << 20),
            ("1g", 1 << 30),
            ("1GB", 1 << 30),
            ("1024k", 1 << 20),
            ("100b", 100),
            ("2048", 2048),
        ];
        for (s, b) in ok {
            assert_eq!(parse_bytes(s), Ok(b), "{s}");
        }
        for s in ["", "0", "1t", "m"] {
            assert!(parse_bytes(s).is_err(), "{s}");
        }
    }

    #[test]
    fn ids() {
        let cases = [
            ("web", "web"),
            ("My_App", "my-app"),
            ("app.v2", "app-v2"),
            ("1st", "app-1st"),
            ("__x__", "x"),
        ];
        for (name, id) in cases {
            assert_eq!(to_id(name, "app"), id, "{name}");
        }
        assert_eq!(to_id(&"a".repeat(40), "app"), "a".repeat(31));
    }
}
