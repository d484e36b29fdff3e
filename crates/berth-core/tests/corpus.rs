//! The manifest corpus: every `tests/corpus/<name>.toml` is a broken stack
//! file (or standalone app file) whose exact diagnostics are in
//! `<name>.expected`, one per line; every `tests/corpus/valid/*.toml` must
//! load. Files are told apart by parsing, as berth does (`parse_manifest`),
//! and included files are read capped (an include may name `/dev/zero`).
//! File names start with the class of problem they cover (`image-`,
//! `numbers-`, `control-`, `reserved-`, `collision-`, `dns-`, `read-`,
//! `stack-`/`app-file-`, `two-`/`many-`, `bom-`/`deep-`).
//!
//! Included files (`manifest = "..."`) resolve relative to the stack file's
//! directory, as the CLI does. To regenerate the expected files after a
//! deliberate message change, run with `BERTH_BLESS=1` and review the diff.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use berth_core::graph;
use berth_core::manifest::{Diagnostics, parse_manifest};
use berth_core::model::Stack;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Largest included file the corpus reads: includes may name `/dev/zero`.
const INCLUDE_BYTES_MAX: u64 = 1024 * 1024;

/// Reads an include the way berth does (berth-store's `read_text_capped`,
/// which this crate cannot depend on): a regular file only, capped while
/// reading.
fn read_capped(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    })?;
    if !meta.is_file() {
        return Err("it is not a regular file".to_string());
    }
    let mut text = String::new();
    fs::File::open(path)
        .map_err(|e| e.to_string())?
        .take(INCLUDE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > INCLUDE_BYTES_MAX {
        return Err(format!("it is larger than {INCLUDE_BYTES_MAX} bytes"));
    }
    Ok(text)
}

/// Loads a corpus file as berth does: a stack file or an app file, told
/// apart by parsing (`parse_manifest`).
fn load(path: &Path) -> Result<Stack, Diagnostics> {
    let dir = path.parent().expect("a file has a directory").to_path_buf();
    let name = path
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    let text = fs::read_to_string(path).expect("readable corpus file");
    let read_include = move |include: &str| -> Result<(String, String), String> {
        read_capped(&dir.join(include)).map(|text| (include.to_string(), text))
    };
    parse_manifest(&name, &text, &read_include)
}

#[test]
fn broken_manifests_report_exactly_the_expected_diagnostics() {
    let bless = std::env::var_os("BERTH_BLESS").is_some();
    let files = toml_files(&corpus_dir());
    assert!(
        files.len() >= 100,
        "the corpus has only {} broken files",
        files.len()
    );
    let mut failures = Vec::new();
    for path in files {
        let expected_path = path.with_extension("expected");
        let actual = match load(&path) {
            Ok(_) => "(loaded without diagnostics)".to_string(),
            Err(diags) => diags.to_string(),
        };
        if bless {
            fs::write(&expected_path, format!("{actual}\n")).expect("writable corpus");
            continue;
        }
        let expected = fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if expected.trim_end() != actual {
            failures.push(format!(
                "{}\n--- expected\n{}\n--- actual\n{actual}\n",
                path.display(),
                expected.trim_end()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "corpus mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_diagnostic_is_located() {
    // Only the diagnostics that are about the file as a whole may lack a
    // line: a missing `[stack]`.
    for path in toml_files(&corpus_dir()) {
        let Err(diags) = load(&path) else { continue };
        for d in &diags.0 {
            if d.key != "stack" {
                assert!(
                    d.line.is_some() && d.column.is_some(),
                    "{}: unlocated: {d}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn valid_manifests_load() {
    let files = toml_files(&corpus_dir().join("valid"));
    assert!(files.len() >= 20, "only {} valid files", files.len());
    for path in files {
        let stack = load(&path).unwrap_or_else(|d| panic!("{}:\n{d}", path.display()));
        assert!(graph::find_cycle(&stack).is_none());
        // Every companion is listed by its parent and depends on it.
        for app in stack.apps.values() {
            if let Some(parent) = &app.companion_of {
                assert!(stack.apps[parent].companions.contains(&app.id));
                assert!(app.depends_on.contains_key(parent));
            }
        }
    }
}

fn load_valid(name: &str) -> Stack {
    load(&corpus_dir().join("valid").join(name)).unwrap_or_else(|d| panic!("{name}:\n{d}"))
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn included_app_and_its_companion_are_normalised() {
    let stack = load_valid("with-include.toml");
    assert_eq!(
        stack.apps.keys().cloned().collect::<BTreeSet<_>>(),
        set(&["bitcoind", "lnd", "lnd-ui", "rtl"])
    );
    assert_eq!(stack.apps["lnd"].companions, vec!["lnd-ui".to_string()]);
    assert_eq!(stack.apps["lnd-ui"].companion_of.as_deref(), Some("lnd"));
    assert_eq!(
        stack.apps["rtl"].web_ui.as_ref().map(|w| w.path.as_str()),
        Some("/rtl")
    );
    let tiers = graph::tiers(&stack);
    let expected: BTreeMap<String, u32> = [("bitcoind", 0), ("lnd", 1), ("lnd-ui", 2), ("rtl", 2)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(tiers, expected);
}

#[test]
fn companions_stack_orders_companions_after_their_parent() {
    let stack = load_valid("companions.toml");
    assert_eq!(
        stack.apps["monerod"].companions,
        vec!["monerod-rpc-proxy".to_string(), "monerod-ui".into()]
    );
    let all: BTreeSet<String> = stack.apps.keys().cloned().collect();
    assert_eq!(
        graph::start_batches(&stack, &all),
        vec![
            vec!["monerod".to_string()],
            vec!["monerod-rpc-proxy".to_string(), "monerod-ui".into()],
            vec!["p2pool".to_string()],
        ]
    );
    assert_eq!(
        graph::with_dependencies(&stack, &set(&["p2pool"])),
        set(&["p2pool", "monerod", "monerod-rpc-proxy", "monerod-ui"])
    );
}

#[test]
fn full_manifest_snapshot() {
    insta::assert_debug_snapshot!(load_valid("full.toml"));
}

#[test]
fn gates_stack_names_its_nodes_and_their_probes() {
    use berth_core::gate::gate_nodes;
    use berth_core::model::ProbeKind;
    use std::time::Duration;

    let stack = load_valid("gates.toml");
    let nodes = gate_nodes(&stack);
    assert_eq!(
        nodes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["bitcoind", "electrs", "monerod", "tari"]
    );
    assert_eq!(
        nodes["bitcoind"].kind,
        ProbeKind::Bitcoind {
            user: Some("berth".into()),
            password_secret: Some("btc-rpc-password".into()),
        }
    );
    assert_eq!(nodes["monerod"].down_after, Duration::from_secs(4));
    assert_eq!(
        nodes["tari"].kind,
        ProbeKind::Http {
            path: "/health".into()
        }
    );
    let proxy = stack.apps["xmrig-proxy"].gate.as_ref().expect("gate");
    assert_eq!(proxy.reject_when_down, ["monerod"]);
    assert_eq!(proxy.reject_when_down_optional, ["tari"]);
    // A node can be gated itself (electrs waits for bitcoind).
    assert!(stack.apps["electrs"].gate.is_some() && stack.apps["electrs"].probe.is_some());
}
