//! `berth import compose`: read the compose files (and the `.env`,
//! `env_file` and `extends` files they name, all size-capped), let
//! `berth-compose` map them, print the report, and write the stack file
//! only when the import succeeded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use berth_compose::{NoteKind, Options};
use berth_store::files::{STACK_FILE_MAX_BYTES, read_text_capped};

use crate::cli::ImportCompose;
use crate::context::{CmdResult, Failure};

pub fn compose(args: ImportCompose) -> CmdResult {
    let mut files = Vec::new();
    for f in &args.files {
        let text =
            read_text_capped(f, STACK_FILE_MAX_BYTES).map_err(|e| Failure::usage(anyhow!(e)))?;
        files.push((f.display().to_string(), text));
    }
    let first = args
        .files
        .first()
        .ok_or_else(|| Failure::usage(anyhow!("no compose file given")))?;
    let project_dir = absolute_dir(first).map_err(Failure::usage)?;
    let opts = Options {
        project_name: args.project_name.clone(),
        profiles: args.profile.clone(),
        strict: args.strict,
        env_file: args.env_file.as_ref().map(|p| p.display().to_string()),
        project_dir,
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let read = |path: &str| -> Result<Option<String>, String> {
        match read_text_capped(Path::new(path), STACK_FILE_MAX_BYTES) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    };
    let import = berth_compose::import(&files, &env, &opts, &read)
        .map_err(|e| Failure::usage(anyhow!("{e}\nberth: nothing written")))?;
    for note in &import.notes {
        if args.quiet && note.kind == NoteKind::Mapped {
            continue;
        }
        eprintln!("{note}");
    }
    write_output(&args.output, &import.stack_toml).map_err(Failure::usage)?;
    let count = |k: NoteKind| import.notes.iter().filter(|n| n.kind == k).count();
    eprintln!(
        "berth: wrote {} (stack {}): {} mapped, {} changed, {} unsupported, {} unresolved, {} skipped",
        args.output.display(),
        import.stack_name,
        count(NoteKind::Mapped),
        count(NoteKind::Changed),
        count(NoteKind::Unsupported),
        count(NoteKind::Unresolved),
        count(NoteKind::Skipped),
    );
    Ok(0)
}

fn absolute_dir(file: &Path) -> anyhow::Result<String> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir =
        std::fs::canonicalize(&dir).with_context(|| format!("resolving {}", dir.display()))?;
    Ok(dir.display().to_string())
}

/// Write through a temporary file renamed into place, so a failed write
/// never leaves half a stack file.
fn write_output(path: &Path, text: &str) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        print!("{text}");
        return Ok(());
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
