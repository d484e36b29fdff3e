//! The berth stack file as TOML text: deterministic order, one
//! `# from FILE:LINE` comment above each app.

use std::fmt::Write;

use crate::map::{App, Stack};

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be, else quoted.
fn toml_key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        toml_str(s)
    }
}

fn list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", parts.join(", "))
}

pub fn emit(stack: &Stack, files: &[(String, String)]) -> String {
    let mut out = String::new();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let _ = writeln!(
        out,
        "# Imported by `berth import compose` from {}.",
        names.join(", ")
    );
    let _ = writeln!(
        out,
        "# Read the import report: it lists every key that was changed or left out."
    );
    out.push('\n');
    let _ = writeln!(out, "[stack]");
    let _ = writeln!(out, "name = {}", toml_str(&stack.name));
    for app in &stack.apps {
        out.push('\n');
        emit_app(&mut out, app);
    }
    out
}

fn emit_app(out: &mut String, a: &App) {
    let _ = writeln!(out, "# from {} (service {})", a.pos, toml_str(&a.service));
    let _ = writeln!(out, "[apps.{}]", a.id);
    let _ = writeln!(out, "image = {}", toml_str(&a.image));
    if let Some(e) = &a.entrypoint {
        let _ = writeln!(out, "entrypoint = {}", list(e));
    }
    if let Some(c) = &a.command {
        let _ = writeln!(out, "command = {}", list(c));
    }
    if !a.ports.is_empty() {
        let _ = writeln!(out, "ports = {}", list(&a.ports));
    }
    if !a.secrets.is_empty() {
        let _ = writeln!(out, "secrets = {}", list(&a.secrets));
    }
    if !a.cap_add.is_empty() {
        let _ = writeln!(out, "cap_add = {}", list(&a.cap_add));
    }
    if let Some(m) = a.memory {
        let _ = writeln!(out, "memory = {m}");
    }
    if let Some(u) = &a.user {
        let _ = writeln!(out, "user = {}", toml_str(u));
    }
    if let Some(g) = &a.stop_grace {
        let _ = writeln!(out, "stop_grace = {}", toml_str(g));
    }
    let _ = writeln!(out, "restart = {}", toml_str(a.restart));
    let table = |out: &mut String, name: &str, entries: Vec<(String, String)>| {
        if entries.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n[apps.{}.{name}]", a.id);
        for (k, v) in entries {
            let _ = writeln!(out, "{} = {}", toml_key(&k), toml_str(&v));
        }
    };
    table(
        out,
        "env",
        a.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    );
    table(
        out,
        "labels",
        a.labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    table(out, "volumes", a.volumes.clone());
    table(
        out,
        "depends_on",
        a.depends_on
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
    );
    if let Some(h) = &a.health {
        let _ = writeln!(out, "\n[apps.{}.health]", a.id);
        let _ = writeln!(out, "command = {}", list(&h.argv));
        for (k, v) in [
            ("interval", &h.interval),
            ("timeout", &h.timeout),
            ("start_period", &h.start_period),
        ] {
            if let Some(v) = v {
                let _ = writeln!(out, "{k} = {}", toml_str(v));
            }
        }
        if let Some(r) = h.retries {
            let _ = writeln!(out, "retries = {r}");
        }
    }
}
