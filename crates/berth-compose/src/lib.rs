//! `berth import compose`: docker-compose files in, a berth stack file and
//! a report of every key out — nothing is dropped silently.
//!
//! The pipeline: `yaml` parses each file into a tree that keeps lines
//! (anchors, aliases and YAML 1.1 merge keys applied), `load` checks it is
//! compose, interpolates (`interp`, with `.env` read by `dotenv`),
//! normalises, resolves `extends`, merges the files in order and folds
//! `env_file` in; `project` turns that model into normalised JSON (what
//! the differential test compares with `docker-compose config`); `map`
//! turns it into berth apps, each key reported as mapped, changed in
//! meaning, unsupported or ignored; `emit` writes the stack file.
//!
//! Pure: files (`.env`, `env_file`, `extends.file`) are read through the
//! caller's callback, the environment is a parameter, there is no clock.

use std::collections::BTreeMap;
use std::fmt;

pub mod dotenv;
mod emit;
pub mod interp;
pub mod load;
mod map;
pub mod project;
pub mod yaml;

pub use yaml::Pos;

/// Reads a file by path (resolved by the importer): `Ok(None)` when it
/// does not exist, `Err` with a reason when it cannot be read.
pub type ReadFile<'a> = dyn Fn(&str) -> Result<Option<String>, String> + 'a;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--project-name`: the berth stack name (else the file's `name:`,
    /// else the project directory's name).
    pub project_name: Option<String>,
    /// `--profile`: services with one of these profiles are imported too.
    pub profiles: Vec<String>,
    /// `--strict`: an unsupported key or an unset variable is an error.
    pub strict: bool,
    /// `--env-file` (relative to the project directory); default `.env`
    /// there, when it exists.
    pub env_file: Option<String>,
    /// The directory relative paths are resolved against: the first
    /// file's directory, as compose does.
    pub project_dir: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoteKind {
    /// Expressed in berth with the same meaning.
    Mapped,
    /// Expressed, but it means something different in berth.
    Changed,
    /// Not expressed: berth cannot do it (an error with `--strict`).
    Unsupported,
    /// Not expressed and not needed (extension fields, `version`).
    Ignored,
    /// A variable without a value: replaced by an empty string.
    Unresolved,
    /// A service hidden by a profile.
    Skipped,
}

impl NoteKind {
    pub fn label(self) -> &'static str {
        match self {
            NoteKind::Mapped => "mapped",
            NoteKind::Changed => "changed",
            NoteKind::Unsupported => "unsupported",
            NoteKind::Ignored => "ignored",
            NoteKind::Unresolved => "unresolved",
            NoteKind::Skipped => "skipped",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub pos: Pos,
    /// Dotted compose key, e.g. `services.bitcoind.ports[0]`.
    pub key: String,
    pub kind: NoteKind,
    pub message: String,
    /// What to do instead, when there is something to do.
    pub instead: Option<String>,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.pos, self.kind.label())?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(i) = &self.instead {
            write!(f, " — {i}")?;
        }
        Ok(())
    }
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pos {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every refusal of an import, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors(pub Vec<Error>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Import {
    /// The berth stack file (TOML).
    pub stack_toml: String,
    /// The stack name it declares.
    pub stack_name: String,
    /// Every key, in file and line order.
    pub notes: Vec<Note>,
}

/// The merged, interpolated compose model as normalised JSON (every
/// service, whatever its profiles), with the notes collected so far.
pub fn model(
    files: &[(String, String)],
    env: &BTreeMap<String, String>,
    opts: &Options,
    read: &ReadFile<'_>,
) -> Result<(serde_json::Value, Vec<Note>), Errors> {
    let (model, loader_notes) = load_model(files, env, opts, read)?;
    Ok((
        project::project_with_dir(&model, &opts.project_dir),
        loader_notes,
    ))
}

fn load_model(
    files: &[(String, String)],
    env: &BTreeMap<String, String>,
    opts: &Options,
    read: &ReadFile<'_>,
) -> Result<(load::Model, Vec<Note>), Errors> {
    if files.is_empty() {
        return Err(Errors(vec![Error {
            pos: None,
            message: "no compose file given".into(),
        }]));
    }
    let mut loader = load::Loader::new(env, &opts.project_dir, read);
    loader.load_dotenv(opts.env_file.as_deref());
    let mut models = Vec::new();
    for (name, text) in files {
        let Some(root) = loader.file(name, text) else {
            continue;
        };
        let services = loader.services(name, &root);
        let mut m = load::Model {
            name: root.get("name").cloned(),
            services,
            sections: Vec::new(),
        };
        for (k, v) in root.as_map().unwrap_or_default() {
            if !matches!(k.name.as_str(), "services" | "name") {
                m.sections.push((k.clone(), v.clone()));
            }
        }
        models.push(m);
    }
    if !loader.errors.is_empty() {
        return Err(sorted(loader.errors));
    }
    let mut errors = Vec::new();
    let mut model = load::merge_files(models, &mut errors);
    if model.services.is_empty() && errors.is_empty() {
        errors.push(Error {
            pos: Some(Pos {
                file: files[0].0.as_str().into(),
                line: 1,
            }),
            message: "no services: a compose file to import defines `services`".into(),
        });
    }
    for (k, s) in model.services.iter_mut() {
        loader.env_files(&k.name, s);
    }
    errors.append(&mut loader.errors);
    if !errors.is_empty() {
        return Err(sorted(errors));
    }
    Ok((model, loader.notes))
}

fn sorted(mut errors: Vec<Error>) -> Errors {
    errors.sort_by(|a, b| {
        let key = |e: &Error| e.pos.as_ref().map(|p| (p.file.to_string(), p.line));
        key(a).cmp(&key(b))
    });
    errors.dedup();
    Errors(errors)
}

/// Import compose files (`(display name, text)`, merged in order) into a
/// berth stack file. `env` is the shell's environment.
pub fn import(
    files: &[(String, String)],
    env: &BTreeMap<String, String>,
    opts: &Options,
    read: &ReadFile<'_>,
) -> Result<Import, Errors> {
    let (model, mut notes) = load_model(files, env, opts, read)?;
    let mapped = map::map(&model, opts, env, &mut notes, files)?;
    // The report reads in the order the files were given; files read on
    // the way (extended, env files) come after, by name.
    let rank = |file: &str| {
        files
            .iter()
            .position(|(n, _)| n == file)
            .unwrap_or(files.len())
    };
    notes.sort_by(|a, b| {
        let key = |n: &Note| {
            (
                rank(&n.pos.file),
                n.pos.file.clone(),
                n.pos.line,
                n.key.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    if opts.strict {
        let refused: Vec<Error> = notes
            .iter()
            .filter(|n| matches!(n.kind, NoteKind::Unsupported | NoteKind::Unresolved))
            .map(|n| Error {
                pos: Some(n.pos.clone()),
                message: format!(
                    "--strict: {}",
                    n.to_string()
                        .split_once(": ")
                        .map(|(_, rest)| rest)
                        .unwrap_or_default()
                ),
            })
            .collect();
        if !refused.is_empty() {
            return Err(Errors(refused));
        }
    }
    let stack_toml = emit::emit(&mapped, files);
    // The output must load: a stack berth cannot parse is a bug of the
    // mapping, never something to write.
    if let Err(d) = berth_core::manifest::parse_stack("imported stack", &stack_toml, &|p| {
        Err(format!("an imported stack has no includes ({p})"))
    }) {
        return Err(Errors(vec![Error {
            pos: None,
            message: format!("the imported stack does not validate (a bug of the importer): {d}"),
        }]));
    }
    Ok(Import {
        stack_toml,
        stack_name: mapped.name.clone(),
        notes,
    })
}
