use std::path::Path;

use crate::context::{CmdResult, load_stack};
use crate::output::print_json;

pub fn run(file: &Path, json: bool) -> CmdResult {
    let stack = load_stack(file)?;
    if json {
        print_json(&stack)?;
    } else {
        let companions = stack
            .apps
            .values()
            .filter(|a| a.companion_of.is_some())
            .count();
        crate::outln!(
            "{}: valid — stack {} with {} apps ({} companions)",
            file.display(),
            stack.name,
            stack.apps.len(),
            companions
        );
    }
    Ok(0)
}
