//! The compose importer on arbitrary text: a `docker-compose.yml`, then
//! (separated by lines of `%%`) the files the importer may read through
//! its callback: `.env`, `common.yml` (for `extends`) and `app.env` (for
//! `env_file`), all in the project directory `/p`.
//!
//! Refusals are fine. A panic is a bug, and so is an import whose stack
//! file berth cannot load (the importer reports that as "a bug of the
//! importer"), or one that breaks the invariants in `common`.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

mod common;

const SEPARATOR: &str = "\n%%\n";
const PROJECT_DIR: &str = "/p";
const SERVED: [&str; 3] = ["/p/.env", "/p/common.yml", "/p/app.env"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(SERVED.len() + 1, SEPARATOR);
    let main = parts.next().unwrap_or("");
    let served: Vec<(&str, &str)> = SERVED.iter().copied().zip(parts).collect();
    let read = |path: &str| -> Result<Option<String>, String> {
        Ok(served
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, body)| body.to_string()))
    };
    let files = vec![("/p/docker-compose.yml".to_string(), main.to_string())];
    let env = BTreeMap::from([
        ("HOME".to_string(), "/root".to_string()),
        ("TAG".to_string(), "1.0".to_string()),
    ]);
    for strict in [false, true] {
        let opts = berth_compose::Options {
            strict,
            project_dir: PROJECT_DIR.to_string(),
            ..Default::default()
        };
        let _ = berth_compose::model(&files, &env, &opts, &read);
        match berth_compose::import(&files, &env, &opts, &read) {
            Ok(import) => {
                let stack =
                    berth_core::manifest::parse_stack("imported.toml", &import.stack_toml, &|p| {
                        Err(format!("{p}: no includes"))
                    })
                    .unwrap_or_else(|d| panic!("an import that does not load: {d}"));
                assert_eq!(stack.name, import.stack_name, "the stack name reported");
                common::check_stack(&stack);
            }
            Err(errors) => {
                assert!(!errors.0.is_empty(), "a refusal without an error");
                for e in &errors.0 {
                    assert!(
                        !e.message.contains("a bug of the importer"),
                        "{}\n{main}",
                        e.message
                    );
                }
            }
        }
    }
});
