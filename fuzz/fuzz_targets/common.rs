//! Invariants every fuzz target of a manifest checks on what parsed.

use berth_core::manifest::Diagnostics;
use berth_core::model::{App, Stack};

/// A stack that parsed must be one berth can act on without panicking, and
/// must survive the store's JSON round trip (each app is kept as JSON and
/// decoded again on every tick) unchanged.
pub fn check_stack(stack: &Stack) {
    assert!(
        berth_core::graph::find_cycle(stack).is_none(),
        "a validated stack has a dependency cycle"
    );
    let tiers = berth_core::graph::tiers(stack);
    for (id, app) in &stack.apps {
        assert!(tiers.contains_key(id), "app {id} has no tier");
        let json = serde_json::to_string(app).expect("an app serializes");
        let back: App = serde_json::from_str(&json).expect("an app decodes from its own JSON");
        assert_eq!(&back, app, "app {id} changed through the store's JSON");
        // The hash decides adopt-or-recreate: it must not depend on
        // anything but the manifest (no hash-map order, no address).
        let spec = berth_core::spec::ContainerSpec::for_app(stack, app, Some("/secrets"));
        let again = berth_core::spec::ContainerSpec::for_app(stack, &back, Some("/secrets"));
        assert_eq!(spec.hash(), again.hash(), "spec hash of {id} not stable");
    }
    let all = stack.apps.keys().cloned().collect();
    let batches = berth_core::graph::start_batches(stack, &all);
    let started: usize = batches.iter().map(Vec::len).sum();
    assert_eq!(
        started,
        stack.apps.len(),
        "start batches lose or repeat apps"
    );
}

/// Diagnostics must point inside the text they name: a line past the end
/// or a zero column would send the user to the wrong place.
pub fn check_diagnostics(diags: &Diagnostics, files: &[(&str, &str)]) {
    assert!(!diags.0.is_empty(), "an error without a diagnostic");
    for d in &diags.0 {
        assert!(!d.message.is_empty(), "an empty diagnostic message: {d:?}");
        let Some((_, text)) = files.iter().find(|(name, _)| *name == d.file) else {
            panic!("a diagnostic names a file that was not read: {d:?}");
        };
        if let Some(line) = d.line {
            let lines = text.split('\n').count();
            assert!(line >= 1 && line <= lines, "line {line} of {lines}: {d:?}");
            if let Some(column) = d.column {
                let width = text
                    .split('\n')
                    .nth(line - 1)
                    .map_or(0, |l| l.chars().count());
                assert!(
                    column >= 1 && column <= width + 1,
                    "column {column} of a {width}-character line: {d:?}"
                );
            }
        }
    }
}
