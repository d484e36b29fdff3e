//! A small block-style YAML writer for the Kubernetes objects.
//!
//! Why not a YAML serializer crate: `serde-saphyr` (the recommended one)
//! depends on `serde_json` with `preserve_order`, and through Cargo's
//! feature unification that would turn every `serde_json::Value` map of
//! the whole workspace from sorted into insertion-ordered (JSON output,
//! snapshots and the OpenAPI document would change order, and `Value`
//! grows). The objects are plain data with a small surface, so they are
//! turned into a `serde_json::Value` and written here. Scalars that YAML
//! could read as anything but the same string are written as JSON string
//! literals, which are valid YAML double-quoted scalars.

use serde::Serialize;
use serde_json::Value;

/// One YAML document (without the `---` line) for `value`.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let v = serde_json::to_value(value)?;
    let mut out = String::new();
    match &v {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    Ok(out)
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_map(out: &mut String, m: &serde_json::Map<String, Value>, level: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        // The first entry of a map that is a sequence item continues the
        // `- ` line; the caller wrote the indent already.
        if i > 0 || level == 0 {
            indent(out, level);
        }
        out.push_str(&key(k));
        out.push(':');
        write_value_after_key(out, v, level);
    }
}

fn write_value_after_key(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            indent(out, level + 2);
            write_map_continued(out, m, level + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(out, a, level + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// A map whose first line's indent is already written.
fn write_map_continued(out: &mut String, m: &serde_json::Map<String, Value>, level: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            indent(out, level);
        }
        out.push_str(&key(k));
        out.push(':');
        write_value_after_key(out, v, level);
    }
}

fn write_seq(out: &mut String, a: &[Value], level: usize) {
    for v in a {
        indent(out, level);
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => write_map_continued(out, m, level + 2),
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, level + 2);
            }
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn key(k: &str) -> String {
    if is_plain(k) {
        k.to_string()
    } else {
        quoted(k)
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if is_plain(s) => s.clone(),
        Value::String(s) => quoted(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

fn quoted(s: &str) -> String {
    // A JSON string literal: YAML's double-quoted style has the same escapes.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Whether `s` reads back as the same string when written plain: only
/// characters with no meaning to YAML, not a word YAML 1.1 or 1.2 reads as
/// a bool or null, and nothing that looks like a number.
fn is_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    !matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "nan" | "inf"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_and_sequences_are_block_style() {
        let v = json!({
            "kind": "Pod",
            "metadata": {"name": "demo-a", "labels": {"io.berth.app": "a"}},
            "spec": {"containers": [
                {"name": "a", "args": ["-c", "echo hi: #1"], "ports": [{"containerPort": 8080}]}
            ], "volumes": []},
        });
        assert_eq!(
            to_string(&v).unwrap(),
            "kind: Pod\nmetadata:\n  labels:\n    io.berth.app: a\n  name: demo-a\nspec:\n  containers:\n    - args:\n        - \"-c\"\n        - \"echo hi: #1\"\n      name: a\n      ports:\n        - containerPort: 8080\n  volumes: []\n"
        );
    }

    #[test]
    fn strings_yaml_would_read_otherwise_are_quoted() {
        for s in [
            "true", "No", "null", "", "8080", "1e3", "-1", "a: b", "#x", "x #y", " x", "*a", "&a",
            "!t", "{}", "[a]", "a\nb", "~", "on", "0x1f", ".5", "x\u{0}y",
        ] {
            let out = to_string(&json!({ "k": s })).unwrap();
            let value = out.strip_prefix("k: ").unwrap().trim_end_matches('\n');
            assert!(value.starts_with('"'), "{s:?} written as {value}");
            assert_eq!(serde_json::from_str::<String>(value).unwrap(), s);
        }
        for s in [
            "demo-a",
            "localhost/berth-demo",
            "io.berth.app",
            "/data",
            "ReadWriteOnce",
        ] {
            assert_eq!(to_string(&json!({ "k": s })).unwrap(), format!("k: {s}\n"));
        }
    }
}
