//! The stack a verify run exercises: a copy of the user's stack file under
//! another stack name (so its containers, volumes and network never collide
//! with an installation of the same stack), written into the run's work
//! directory with include paths made absolute.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth_core::model::{Protocol, Stack};

/// Name of the stack copy inside the work directory.
pub const STACK_COPY_FILE_NAME: &str = "berth.toml";
/// Read and validate a stack file the way berth does (includes relative to
/// the file, every file read capped). Returns every problem at once.
pub fn load(path: &Path) -> Result<Stack, String> {
    let text = read_bounded(path)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let read_include = |p: &str| berth_store::read_include(&base, p);
    let shown = berth_core::text::display_path(path);
    berth_core::manifest::parse_stack(&shown, &text, &read_include)
        .map_err(|d| format!("{shown} is not valid: {d}"))
}

/// A regular file of at most `STACK_FILE_MAX_BYTES`, capped while reading.
fn read_bounded(path: &Path) -> Result<String, String> {
    berth_store::read_text_capped(path, berth_store::STACK_FILE_MAX_BYTES)
        .map_err(|e| format!("cannot read: {e}"))
}

/// `[HOST_IP:]HOST:CONTAINER[/proto]` with HOST raised by `offset`.
fn shift_port(spec: &str, offset: u16) -> Result<String, String> {
    let (main, proto) = match spec.rsplit_once('/') {
        Some((m, p)) => (m, format!("/{p}")),
        None => (spec, String::new()),
    };
    let (left, container) = main
        .rsplit_once(':')
        .ok_or_else(|| format!("port {spec:?} has no host port"))?;
    let (ip, host) = match left.rsplit_once(':') {
        Some((ip, host)) => (format!("{ip}:"), host),
        None => (String::new(), left),
    };
    let host: u16 = host
        .parse()
        .map_err(|_| format!("port {spec:?}: bad host port {host:?}"))?;
    let shifted = host
        .checked_add(offset)
        .ok_or_else(|| format!("port {spec:?}: {host} + {offset} is above 65535"))?;
    Ok(format!("{ip}{shifted}:{container}{proto}"))
}

/// Raise the host ports an app table (and its companions) publishes.
fn shift_app(app: &mut toml::Table, offset: u16) -> Result<(), String> {
    if offset == 0 {
        return Ok(());
    }
    if let Some(toml::Value::Array(ports)) = app.get_mut("ports") {
        for p in ports.iter_mut() {
            if let toml::Value::String(spec) = p {
                *spec = shift_port(spec, offset)?;
            }
        }
    }
    if let Some(toml::Value::Table(ui)) = app.get_mut("web_ui")
        && let Some(toml::Value::Integer(port)) = ui.get_mut("port")
    {
        *port += i64::from(offset);
        if *port > i64::from(u16::MAX) {
            return Err(format!("web_ui port {port} is above 65535"));
        }
    }
    if let Some(toml::Value::Table(companions)) = app.get_mut("companions") {
        for (_, c) in companions.iter_mut() {
            if let toml::Value::Table(c) = c {
                shift_app(c, offset)?;
            }
        }
    }
    Ok(())
}

/// The text of `original`'s stack file renamed to `stack_name` (network
/// too), its includes (`manifest = "…"`) made absolute — or, with a port
/// offset, copied into `work_dir` with their host ports raised too.
pub fn renamed_copy(
    original: &Path,
    stack_name: &str,
    port_offset: u16,
    work_dir: &Path,
) -> Result<String, String> {
    let text = read_bounded(original)?;
    if !berth_core::manifest::is_stack_text(&text) {
        return Err(format!(
            "{} is not a stack file (no [stack] table): verify needs a stack file",
            original.display()
        ));
    }
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e| format!("{} is not valid TOML: {e}", original.display()))?;
    let base = original.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    let Some(toml::Value::Table(stack)) = doc.get_mut("stack") else {
        return Err(format!("{}: [stack] must be a table", original.display()));
    };
    stack.insert("name".into(), toml::Value::String(stack_name.into()));
    stack.insert("network".into(), toml::Value::String(stack_name.into()));
    if let Some(toml::Value::Table(apps)) = doc.get_mut("apps") {
        for (id, app) in apps.iter_mut() {
            let toml::Value::Table(app) = app else {
                continue;
            };
            shift_app(app, port_offset)?;
            if let Some(toml::Value::String(p)) = app.get_mut("manifest") {
                let included = base.join(&*p);
                if port_offset == 0 {
                    *p = included.display().to_string();
                } else {
                    let text = read_bounded(&included)?;
                    let mut inc: toml::Table = text
                        .parse()
                        .map_err(|e| format!("{} is not valid TOML: {e}", included.display()))?;
                    shift_app(&mut inc, port_offset)?;
                    std::fs::create_dir_all(work_dir)
                        .map_err(|e| format!("cannot create {}: {e}", work_dir.display()))?;
                    let copy = work_dir.join(format!("include-{id}.toml"));
                    let out = toml::to_string(&inc)
                        .map_err(|e| format!("cannot write {}: {e}", copy.display()))?;
                    std::fs::write(&copy, out)
                        .map_err(|e| format!("cannot write {}: {e}", copy.display()))?;
                    *p = copy.display().to_string();
                }
            }
        }
    }
    let header = format!(
        "# Written by `berth verify` from {}: the same stack under the name {stack_name:?}{}.\n",
        original.display(),
        if port_offset == 0 {
            String::new()
        } else {
            format!(", host ports raised by {port_offset}")
        }
    );
    Ok(header + &toml::to_string(&doc).map_err(|e| format!("cannot write the stack copy: {e}"))?)
}

/// Write the renamed copy into `work_dir` (kept as is when it exists: a
/// resumed run goes on with the stack it started with) and load it.
pub fn prepare(
    original: &Path,
    stack_name: &str,
    port_offset: u16,
    work_dir: &Path,
) -> Result<(Stack, PathBuf), String> {
    // Validate the original first, so problems name the user's file.
    load(original)?;
    std::fs::create_dir_all(work_dir)
        .map_err(|e| format!("cannot create {}: {e}", work_dir.display()))?;
    let copy = work_dir.join(STACK_COPY_FILE_NAME);
    if !copy.exists() {
        let text = renamed_copy(original, stack_name, port_offset, work_dir)?;
        std::fs::write(&copy, text).map_err(|e| format!("cannot write {}: {e}", copy.display()))?;
    }
    let stack = load(&copy)?;
    Ok((stack, copy))
}

/// The apps a verify run covers: `wanted` (or every app that is not a
/// companion), in start order (tier, then id). Errors name unknown apps and
/// companions (they are verified with their app).
pub fn select_apps(stack: &Stack, wanted: &[String]) -> Result<Vec<String>, String> {
    let tops: Vec<&str> = stack
        .apps
        .values()
        .filter(|a| a.companion_of.is_none())
        .map(|a| a.id.as_str())
        .collect();
    let mut chosen: BTreeSet<String> = BTreeSet::new();
    if wanted.is_empty() {
        chosen.extend(tops.iter().map(|s| s.to_string()));
    }
    for w in wanted {
        match stack.apps.get(w) {
            None => {
                return Err(format!(
                    "unknown app {w:?}: the stack has {}",
                    tops.join(", ")
                ));
            }
            Some(a) if a.companion_of.is_some() => {
                return Err(format!(
                    "{w:?} is a companion of {:?}: it is verified with its app",
                    a.companion_of.as_deref().unwrap_or("")
                ));
            }
            Some(_) => {
                chosen.insert(w.clone());
            }
        }
    }
    if chosen.is_empty() {
        return Err("the stack has no app to verify".into());
    }
    Ok(start_order(stack, &chosen))
}

/// `ids` in start order: tier, then id.
pub fn start_order(stack: &Stack, ids: &BTreeSet<String>) -> Vec<String> {
    let tiers = berth_core::graph::tiers(stack);
    let mut out: Vec<String> = ids.iter().cloned().collect();
    out.sort_by_key(|id| (tiers.get(id).copied().unwrap_or(0), id.clone()));
    out
}

/// Host TCP ports the apps (with their dependencies and companions) publish
/// that something already listens on. A verify run cannot share them with
/// a running installation of the same stack.
pub fn busy_ports(stack: &Stack, apps: &[String]) -> Vec<String> {
    let ids: BTreeSet<String> = apps.iter().cloned().collect();
    let closure = berth_core::graph::with_dependencies(stack, &ids);
    let apps: BTreeSet<&str> = closure
        .iter()
        .flat_map(|id| stack.with_companions(id))
        .map(|a| a.id.as_str())
        .collect();
    let mut busy = Vec::new();
    for id in apps {
        if let Some(app) = stack.apps.get(id) {
            for p in &app.ports {
                if p.protocol != Protocol::Tcp {
                    continue;
                }
                let ip = p.host_ip.as_deref().unwrap_or("0.0.0.0");
                if std::net::TcpListener::bind((ip, p.host_port)).is_err() {
                    busy.push(format!("{ip}:{} ({})", p.host_port, app.id));
                }
            }
        }
    }
    busy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_renamed_and_includes_become_absolute() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("lnd.toml"),
            "image = \"localhost/berth-demo:latest\"\n",
        )
        .unwrap();
        let original = dir.path().join("berth.toml");
        std::fs::write(
            &original,
            "[stack]\nname = \"demo\"\nnetwork = \"shared\"\n\n[apps.web]\nimage = \"localhost/berth-demo:latest\"\nports = [\"127.0.0.1:18090:8080\"]\n\n[apps.lnd]\nmanifest = \"lnd.toml\"\n",
        )
        .unwrap();
        let work = dir.path().join("work");
        let (stack, copy) = prepare(&original, "vabc123", 0, &work).unwrap();
        assert_eq!(stack.name, "vabc123");
        assert_eq!(stack.settings.network, "vabc123");
        assert!(stack.apps.contains_key("lnd"));
        assert!(copy.starts_with(&work));
        let text = std::fs::read_to_string(&copy).unwrap();
        assert!(
            text.contains(
                &dir.path()
                    .canonicalize()
                    .unwrap()
                    .join("lnd.toml")
                    .display()
                    .to_string()
            )
        );
        assert_eq!(select_apps(&stack, &[]).unwrap(), ["lnd", "web"]);
        assert_eq!(select_apps(&stack, &["web".into()]).unwrap(), ["web"]);
        assert!(
            select_apps(&stack, &["nope".into()])
                .unwrap_err()
                .contains("unknown app")
        );
    }

    #[test]
    fn an_app_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("app.toml");
        std::fs::write(&f, "image = \"x\"\n").unwrap();
        assert!(
            renamed_copy(&f, "v1", 0, dir.path())
                .unwrap_err()
                .contains("not a stack file")
        );
    }

    #[test]
    fn a_port_offset_raises_every_host_port_companions_and_includes_too() {
        assert_eq!(
            shift_port("127.0.0.1:18332:8332", 1000).unwrap(),
            "127.0.0.1:19332:8332"
        );
        assert_eq!(shift_port("8080:80/udp", 1).unwrap(), "8081:80/udp");
        assert_eq!(shift_port("[::1]:80:80", 1).unwrap(), "[::1]:81:80");
        assert!(shift_port("65535:80", 1).is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("inc.toml"),
            "image = \"i\"\nports = [\"127.0.0.1:7000:70\"]\n",
        )
        .unwrap();
        let original = dir.path().join("berth.toml");
        std::fs::write(
            &original,
            "[stack]\nname = \"s\"\n[apps.a]\nimage = \"i\"\nports = [\"127.0.0.1:8080:80\"]\nweb_ui = { port = 8080, path = \"/\" }\n[apps.a.companions.ui]\nimage = \"i\"\nports = [\"127.0.0.1:8090:80\"]\nweb_ui = { port = 8090 }\n[apps.b]\nmanifest = \"inc.toml\"\n",
        )
        .unwrap();
        let work = dir.path().join("work");
        let (stack, _) = prepare(&original, "vx", 100, &work).unwrap();
        let host = |id: &str| stack.apps[id].ports[0].host_port;
        assert_eq!(host("a"), 8180);
        assert_eq!(stack.apps["a"].web_ui.as_ref().unwrap().host_port, 8180);
        let ui = stack.apps["a"].companions[0].clone();
        assert_eq!(host(&ui), 8190);
        assert_eq!(stack.apps[&ui].web_ui.as_ref().unwrap().host_port, 8190);
        assert_eq!(host("b"), 7100);
        // The user's files are untouched.
        assert!(
            std::fs::read_to_string(dir.path().join("inc.toml"))
                .unwrap()
                .contains("7000")
        );
    }

    #[test]
    fn a_port_in_use_is_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("berth.toml");
        std::fs::write(
            &f,
            format!("[stack]\nname = \"s\"\n[apps.web]\nimage = \"i\"\nports = [\"127.0.0.1:{port}:80\"]\n"),
        )
        .unwrap();
        let stack = load(&f).unwrap();
        assert_eq!(
            busy_ports(&stack, &["web".into()]),
            [format!("127.0.0.1:{port} (web)")]
        );
        drop(listener);
        assert!(busy_ports(&stack, &["web".into()]).is_empty());
    }
}
