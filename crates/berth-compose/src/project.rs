//! The merged model as normalised JSON: what `berth import` understood of
//! the compose files, independent of berth. The differential test compares
//! it with the same projection of what `docker-compose config` prints, so
//! each key is reduced to one canonical form here (ports and volumes to
//! their long fields, durations to milliseconds, sizes to bytes, sets
//! sorted).

use serde_json::{Map, Value as J, json};

use crate::load::Model;
use crate::map::{parse_bytes, parse_compose_duration};
use crate::yaml::{Node, Value};

fn raw(node: &Node) -> J {
    match &node.value {
        Value::Null => J::Null,
        Value::Scalar { text, .. } => J::String(text.clone()),
        Value::Seq(items) => J::Array(items.iter().map(raw).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (k.name.clone(), raw(v)))
                .collect(),
        ),
    }
}

fn ms(node: &Node) -> J {
    match node.as_str().map(parse_compose_duration) {
        Some(Ok(ms)) => json!(ms),
        _ => raw(node),
    }
}

fn bytes(node: &Node) -> J {
    match node.as_str().map(parse_bytes) {
        Some(Ok(b)) => json!(b),
        _ => raw(node),
    }
}

fn sorted_strings(node: &Node) -> J {
    let mut items: Vec<String> = node
        .as_seq()
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i.as_str().map(str::to_string))
        .collect();
    items.sort();
    items.dedup();
    json!(items)
}

fn boolean(node: &Node) -> J {
    node.as_bool().map(J::Bool).unwrap_or_else(|| raw(node))
}

/// A port as `[IP:]PUBLISHED:TARGET/PROTO` (PUBLISHED empty when none).
fn port(node: &Node) -> String {
    match &node.value {
        Value::Scalar { text, .. } => {
            let (body, proto) = text.rsplit_once('/').unwrap_or((text, "tcp"));
            let parts: Vec<&str> = body.rsplitn(3, ':').collect();
            match parts.as_slice() {
                [t] => format!(":{t}/{proto}"),
                [t, p] => format!("{p}:{t}/{proto}"),
                [t, p, ip] => format!("{ip}:{p}:{t}/{proto}"),
                _ => text.clone(),
            }
        }
        _ => {
            let s = |k: &str| {
                node.get(k)
                    .and_then(Node::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let proto = if s("protocol").is_empty() {
                "tcp".to_string()
            } else {
                s("protocol")
            };
            let ip = s("host_ip");
            let head = if ip.is_empty() {
                String::new()
            } else {
                format!("{ip}:")
            };
            format!("{head}{}:{}/{proto}", s("published"), s("target"))
        }
    }
}

fn volume(node: &Node, project_dir: &str) -> J {
    let (kind, source, target, ro) = match &node.value {
        Value::Scalar { text, .. } => {
            let parts: Vec<&str> = text.split(':').collect();
            match parts.as_slice() {
                [t] => ("volume".to_string(), String::new(), t.to_string(), false),
                [s, t, rest @ ..] => {
                    let ro = rest
                        .first()
                        .is_some_and(|m| m.split(',').any(|o| o == "ro"));
                    let kind = if s.starts_with(['/', '.', '~']) {
                        "bind"
                    } else {
                        "volume"
                    };
                    (kind.to_string(), s.to_string(), t.to_string(), ro)
                }
                [] => (String::new(), String::new(), String::new(), false),
            }
        }
        _ => {
            let s = |k: &str| {
                node.get(k)
                    .and_then(Node::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let ro = node
                .get("read_only")
                .and_then(Node::as_bool)
                .unwrap_or(false);
            (s("type"), s("source"), s("target"), ro)
        }
    };
    let source = if kind == "bind" && source.starts_with('.') {
        crate::load::join_path(project_dir, &source)
    } else {
        source
    };
    json!({"type": kind, "source": source, "target": target, "read_only": ro})
}

fn healthcheck(node: &Node) -> J {
    let mut out = Map::new();
    for (k, v) in node.as_map().unwrap_or_default() {
        let j = match k.name.as_str() {
            "test" => match &v.value {
                Value::Scalar { text, .. } => json!(["CMD-SHELL", text]),
                _ => raw(v),
            },
            "interval" | "timeout" | "start_period" | "start_interval" => ms(v),
            "disable" => boolean(v),
            _ => raw(v),
        };
        out.insert(k.name.clone(), j);
    }
    J::Object(out)
}

fn ulimits(node: &Node) -> J {
    let mut out = Map::new();
    for (k, v) in node.as_map().unwrap_or_default() {
        let j = match &v.value {
            Value::Scalar { text, .. } => json!({"soft": text, "hard": text}),
            _ => json!({
                "soft": v.get("soft").map(raw).unwrap_or(J::Null),
                "hard": v.get("hard").map(raw).unwrap_or(J::Null),
            }),
        };
        out.insert(k.name.clone(), j);
    }
    J::Object(out)
}

fn service(node: &Node, project_dir: &str) -> J {
    let mut out = Map::new();
    for (k, v) in node.as_map().unwrap_or_default() {
        let j = match k.name.as_str() {
            "ports" => {
                let mut ps: Vec<String> = v.as_seq().unwrap_or_default().iter().map(port).collect();
                ps.sort();
                ps.dedup();
                json!(ps)
            }
            "volumes" => {
                let mut vs: Vec<J> = v
                    .as_seq()
                    .unwrap_or_default()
                    .iter()
                    .map(|i| volume(i, project_dir))
                    .collect();
                vs.sort_by_key(|j| j["target"].as_str().unwrap_or_default().to_string());
                J::Array(vs)
            }
            "depends_on" => J::Object(
                v.as_map()
                    .unwrap_or_default()
                    .iter()
                    .map(|(d, c)| {
                        let cond = c
                            .get("condition")
                            .map(raw)
                            .unwrap_or(json!("service_started"));
                        (d.name.clone(), cond)
                    })
                    .collect(),
            ),
            "healthcheck" => healthcheck(v),
            "stop_grace_period" => ms(v),
            "mem_limit" | "mem_reservation" | "shm_size" => bytes(v),
            "cap_add" | "cap_drop" | "profiles" | "expose" => sorted_strings(v),
            "read_only" | "init" | "privileged" | "tty" | "stdin_open" => boolean(v),
            "ulimits" => ulimits(v),
            "secrets" => {
                let mut ss: Vec<String> = v
                    .as_seq()
                    .unwrap_or_default()
                    .iter()
                    .map(|i| match i.as_str() {
                        Some(s) => s.to_string(),
                        None => i
                            .get("source")
                            .and_then(Node::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    })
                    .collect();
                ss.sort();
                json!(ss)
            }
            "deploy" => {
                let mut d = raw(v);
                if let Some(m) = v
                    .get("resources")
                    .and_then(|r| r.get("limits"))
                    .and_then(|l| l.get("memory"))
                {
                    d["resources"]["limits"]["memory"] = bytes(m);
                }
                d
            }
            _ => raw(v),
        };
        out.insert(k.name.clone(), j);
    }
    J::Object(out)
}

/// Every service (whatever its profiles) and the names of the top-level
/// volumes and secrets.
pub fn project_with_dir(model: &Model, project_dir: &str) -> J {
    let mut services: Vec<(&str, J)> = model
        .services
        .iter()
        .map(|(k, v)| (k.name.as_str(), service(v, project_dir)))
        .collect();
    services.sort_by(|a, b| a.0.cmp(b.0));
    let names = |section: &str| -> Vec<String> {
        let mut n: Vec<String> = model
            .sections
            .iter()
            .filter(|(k, _)| k.name == section)
            .flat_map(|(_, v)| {
                v.as_map()
                    .unwrap_or_default()
                    .iter()
                    .map(|(k, _)| k.name.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        n.sort();
        n
    };
    json!({
        "services": J::Object(services.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
        "volumes": names("volumes"),
        "secrets": names("secrets"),
    })
}

pub fn project(model: &Model) -> J {
    project_with_dir(model, ".")
}
