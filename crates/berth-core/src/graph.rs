//! The dependency graph of a stack: cycles, tiers and the order in which
//! apps start and stop.
//!
//! Edges come from `App::depends_on` (a companion's edge to its parent is
//! already there: the loader adds it). Dependencies on ids that are not in
//! the stack are ignored here; the validator reports them, so a loaded stack
//! never has any.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::Stack;

/// The dependencies of `id` that exist in the stack, in id order.
fn deps<'s>(stack: &'s Stack, id: &str) -> impl Iterator<Item = &'s str> {
    stack
        .apps
        .get(id)
        .into_iter()
        .flat_map(|app| app.depends_on.keys())
        .filter(|dep| stack.apps.contains_key(dep.as_str()))
        .map(String::as_str)
}

/// One dependency cycle, as the path that closes it (`["a", "b", "c", "a"]`:
/// a depends on b, b on c, c on a), or `None` when the graph is acyclic. A
/// self-dependency is the cycle `["a", "a"]`.
///
/// Deterministic: apps and their dependencies are visited in id order, so
/// the same stack always yields the same cycle, starting at the app where
/// the search first entered it.
pub fn find_cycle(stack: &Stack) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark: BTreeMap<&str, Mark> = stack
        .apps
        .keys()
        .map(|id| (id.as_str(), Mark::New))
        .collect();

    // An explicit stack instead of recursion: a hostile manifest must not be
    // able to overflow the call stack with a long dependency chain.
    for root in stack.apps.keys() {
        if mark[root.as_str()] != Mark::New {
            continue;
        }
        // Each frame: the app and its not yet visited dependencies.
        let mut path: Vec<(&str, Vec<&str>)> = Vec::new();
        mark.insert(root, Mark::OnPath);
        path.push((root, deps(stack, root).collect::<Vec<_>>()));
        while let Some((node, pending)) = path.last_mut() {
            let node = *node;
            if pending.is_empty() {
                mark.insert(node, Mark::Done);
                path.pop();
                continue;
            }
            let next = pending.remove(0);
            match mark[next] {
                Mark::Done => {}
                Mark::OnPath => {
                    let start = path
                        .iter()
                        .position(|(id, _)| *id == next)
                        .expect("an app marked on-path is on the path");
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|(id, _)| id.to_string()).collect();
                    cycle.push(next.to_string());
                    return Some(cycle);
                }
                Mark::New => {
                    mark.insert(next, Mark::OnPath);
                    path.push((next, deps(stack, next).collect()));
                }
            }
        }
    }
    None
}

/// One cycle for every strongly connected component of the dependency
/// graph that has one (a self-dependency included), so two separate
/// cycles are both reported. Each cycle is the path that closes it, as
/// [`find_cycle`] returns it, found inside its component alone; the cycles
/// are in the order of their components' smallest ids.
pub fn cycles(stack: &Stack) -> Vec<Vec<String>> {
    let ids: Vec<&str> = stack.apps.keys().map(String::as_str).collect();
    let reach: BTreeMap<&str, BTreeSet<&str>> =
        ids.iter().map(|id| (*id, reachable(stack, id))).collect();
    let mut assigned: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for id in &ids {
        if assigned.contains(id) {
            continue;
        }
        // The component of `id`: the apps it reaches that reach it back.
        let component: BTreeSet<&str> = reach[id]
            .iter()
            .copied()
            .filter(|other| reach[other].contains(id))
            .collect();
        assigned.extend(component.iter().copied());
        if component.is_empty() {
            continue;
        }
        let mut sub = Stack {
            name: stack.name.clone(),
            settings: stack.settings.clone(),
            apps: BTreeMap::new(),
        };
        for member in &component {
            let mut app = stack.apps[*member].clone();
            app.depends_on
                .retain(|dep, _| component.contains(dep.as_str()));
            sub.apps.insert(member.to_string(), app);
        }
        if let Some(cycle) = find_cycle(&sub) {
            out.push(cycle);
        }
    }
    out
}

/// The apps `id` reaches through one or more dependency edges (itself only
/// when it is on a cycle).
fn reachable<'s>(stack: &'s Stack, id: &str) -> BTreeSet<&'s str> {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<&str> = deps(stack, id).collect();
    while let Some(next) = todo.pop() {
        if seen.insert(next) {
            todo.extend(deps(stack, next));
        }
    }
    seen
}

/// The effective tier of every app: `max(app.tier.unwrap_or(0), 1 + the
/// highest tier among its dependencies)`. An app starts only after every
/// app of a lower tier.
///
/// # Panics
/// When the stack has a dependency cycle: a validated stack never has one,
/// so calling this on a cyclic stack is a bug in the caller.
pub fn tiers(stack: &Stack) -> BTreeMap<String, u32> {
    // Kahn's algorithm: an app's tier is known once all its dependencies'
    // tiers are.
    let mut missing: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for id in stack.apps.keys() {
        let mut count = 0;
        for dep in deps(stack, id) {
            count += 1;
            dependents_of.entry(dep).or_default().push(id);
        }
        missing.insert(id, count);
    }
    let mut ready: Vec<&str> = missing
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut out: BTreeMap<String, u32> = BTreeMap::new();
    while let Some(id) = ready.pop() {
        let app = &stack.apps[id];
        let floor = app.tier.unwrap_or(0);
        let after_deps = deps(stack, id)
            .map(|dep| out[dep].saturating_add(1))
            .max()
            .unwrap_or(0);
        out.insert(id.to_string(), floor.max(after_deps));
        for dependent in dependents_of.get(id).into_iter().flatten() {
            let n = missing.get_mut(dependent).expect("every app is counted");
            *n -= 1;
            if *n == 0 {
                ready.push(dependent);
            }
        }
    }
    assert_eq!(
        out.len(),
        stack.apps.len(),
        "graph::tiers called on a stack with a dependency cycle: {:?}",
        find_cycle(stack)
    );
    out
}

/// `ids` grouped by effective tier, lowest tier first; each batch is sorted.
/// The apps of one batch may start in parallel. Ids not in the stack are
/// ignored. Tiers are those of the whole stack, so a subset starts in the
/// same relative order as the full stack would.
pub fn start_batches(stack: &Stack, ids: &BTreeSet<String>) -> Vec<Vec<String>> {
    let tiers = tiers(stack);
    let mut by_tier: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for id in ids {
        if let Some(tier) = tiers.get(id) {
            by_tier.entry(*tier).or_default().push(id.clone());
        }
    }
    // `ids` iterates in order, so every batch is already sorted.
    by_tier.into_values().collect()
}

/// The reverse of `start_batches`: dependents stop before what they depend on.
pub fn stop_batches(stack: &Stack, ids: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut batches = start_batches(stack, ids);
    batches.reverse();
    batches
}

/// `ids` plus everything they transitively depend on, plus the companions
/// of every app in the result (a companion is installed with its parent).
/// Ids not in the stack are kept as they are.
pub fn with_dependencies(stack: &Stack, ids: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = ids.clone();
    let mut todo: Vec<String> = ids.iter().cloned().collect();
    while let Some(id) = todo.pop() {
        let Some(app) = stack.apps.get(&id) else {
            continue;
        };
        let deps = app
            .depends_on
            .keys()
            .filter(|d| stack.apps.contains_key(*d));
        let companions = app
            .companions
            .iter()
            .filter(|c| stack.apps.contains_key(*c));
        for next in deps.chain(companions) {
            if out.insert(next.clone()) {
                todo.push(next.clone());
            }
        }
    }
    out
}

/// Every app that transitively depends on `id` (its companions included,
/// since they depend on their parent), excluding `id` itself.
pub fn dependents(stack: &Stack, id: &str) -> BTreeSet<String> {
    let mut reverse: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (app_id, app) in &stack.apps {
        for dep in app.depends_on.keys() {
            reverse
                .entry(dep.as_str())
                .or_default()
                .push(app_id.as_str());
        }
    }
    let mut out = BTreeSet::new();
    let mut todo = vec![id];
    while let Some(current) = todo.pop() {
        for dependent in reverse.get(current).into_iter().flatten() {
            if *dependent != id && out.insert(dependent.to_string()) {
                todo.push(dependent);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::model::{App, DependsCondition, RestartPolicy, StackSettings};

    fn app(id: &str, deps: &[&str]) -> App {
        App {
            id: id.into(),
            companion_of: None,
            image: "img".into(),
            entrypoint: None,
            command: None,
            env: BTreeMap::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            depends_on: deps
                .iter()
                .map(|d| (d.to_string(), DependsCondition::Started))
                .collect(),
            tier: None,
            stop_grace: Duration::from_secs(30),
            restart: RestartPolicy::Always,
            health: None,
            secrets: Vec::new(),
            labels: BTreeMap::new(),
            memory_bytes: None,
            cap_add: Vec::new(),
            user: None,
            web_ui: None,
            companions: Vec::new(),
            probe: None,
            gate: None,
            update: Default::default(),
        }
    }

    fn stack(apps: Vec<App>) -> Stack {
        Stack {
            name: "t".into(),
            settings: StackSettings::with_network("t"),
            apps: apps.into_iter().map(|a| (a.id.clone(), a)).collect(),
        }
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cycles_reports_one_cycle_per_component() {
        let s = stack(vec![
            app("a", &["b"]),
            app("b", &["a"]),
            app("c", &["d"]),
            app("d", &["e"]),
            app("e", &["c"]),
            app("f", &["f"]),
            app("g", &["a"]),
        ]);
        assert_eq!(
            cycles(&s),
            vec![
                vec!["a".to_string(), "b".into(), "a".into()],
                vec!["c".to_string(), "d".into(), "e".into(), "c".into()],
                vec!["f".to_string(), "f".into()],
            ]
        );
        assert!(cycles(&node_box()).is_empty());
    }

    /// bitcoind <- electrs <- mempool, bitcoind <- lnd, bitcoind-ui companion.
    fn node_box() -> Stack {
        let mut bitcoind = app("bitcoind", &[]);
        bitcoind.companions = vec!["bitcoind-ui".into()];
        let mut ui = app("bitcoind-ui", &["bitcoind"]);
        ui.companion_of = Some("bitcoind".into());
        stack(vec![
            bitcoind,
            ui,
            app("electrs", &["bitcoind"]),
            app("lnd", &["bitcoind"]),
            app("mempool", &["electrs", "bitcoind"]),
            app("tor", &[]),
        ])
    }

    #[test]
    fn acyclic_stack_has_no_cycle() {
        assert_eq!(find_cycle(&node_box()), None);
    }

    #[test]
    fn cycle_is_reported_as_a_closed_path() {
        let s = stack(vec![
            app("a", &["b"]),
            app("b", &["c"]),
            app("c", &["a"]),
            app("d", &["a"]),
        ]);
        assert_eq!(
            find_cycle(&s),
            Some(
                vec!["a", "b", "c", "a"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
    }

    #[test]
    fn cycle_not_through_the_first_app_is_found() {
        let s = stack(vec![app("a", &["b"]), app("b", &["c"]), app("c", &["b"])]);
        assert_eq!(
            find_cycle(&s),
            Some(vec!["b".to_string(), "c".into(), "b".into()])
        );
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let s = stack(vec![app("a", &["a"])]);
        assert_eq!(find_cycle(&s), Some(vec!["a".to_string(), "a".into()]));
    }

    #[test]
    fn unknown_dependencies_are_ignored_by_the_graph() {
        let s = stack(vec![app("a", &["ghost"])]);
        assert_eq!(find_cycle(&s), None);
        assert_eq!(tiers(&s)["a"], 0);
    }

    #[test]
    fn long_chain_does_not_overflow_the_stack() {
        let n = 20_000;
        let ids: Vec<String> = (0..n).map(|i| format!("a{i:05}")).collect();
        let mut apps: Vec<App> = (0..n)
            .map(|i| {
                let deps: Vec<&str> = if i + 1 < n {
                    vec![ids[i + 1].as_str()]
                } else {
                    vec![]
                };
                app(&ids[i], &deps)
            })
            .collect();
        let s = stack(apps.clone());
        assert_eq!(find_cycle(&s), None);
        assert_eq!(tiers(&s)[&ids[0]], (n - 1) as u32);
        apps[n - 1]
            .depends_on
            .insert(ids[0].clone(), DependsCondition::Started);
        assert_eq!(find_cycle(&stack(apps)).map(|c| c.len()), Some(n + 1));
    }

    #[test]
    fn tiers_follow_dependencies_and_floors() {
        let mut s = node_box();
        let t = tiers(&s);
        assert_eq!(t["bitcoind"], 0);
        assert_eq!(t["bitcoind-ui"], 1);
        assert_eq!(t["electrs"], 1);
        assert_eq!(t["lnd"], 1);
        assert_eq!(t["mempool"], 2);
        assert_eq!(t["tor"], 0);

        // A floor lifts the app and everything after it.
        s.apps.get_mut("electrs").unwrap().tier = Some(5);
        s.apps.get_mut("tor").unwrap().tier = Some(3);
        let t = tiers(&s);
        assert_eq!(t["electrs"], 5);
        assert_eq!(t["mempool"], 6);
        assert_eq!(t["tor"], 3);
        // A floor below what dependencies imply has no effect.
        s.apps.get_mut("mempool").unwrap().tier = Some(1);
        assert_eq!(tiers(&s)["mempool"], 6);
    }

    #[test]
    fn start_and_stop_batches() {
        let s = node_box();
        let all: BTreeSet<String> = s.apps.keys().cloned().collect();
        let expected = vec![
            vec!["bitcoind".to_string(), "tor".into()],
            vec!["bitcoind-ui".into(), "electrs".into(), "lnd".into()],
            vec!["mempool".into()],
        ];
        assert_eq!(start_batches(&s, &all), expected);
        let mut reversed = expected.clone();
        reversed.reverse();
        assert_eq!(stop_batches(&s, &all), reversed);
    }

    #[test]
    fn batches_of_a_subset_keep_global_tiers_and_skip_unknown_ids() {
        let s = node_box();
        assert_eq!(
            start_batches(&s, &set(&["mempool", "tor", "ghost"])),
            vec![vec!["tor".to_string()], vec!["mempool".to_string()]]
        );
        assert!(start_batches(&s, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn with_dependencies_adds_transitive_deps_and_companions() {
        let s = node_box();
        assert_eq!(
            with_dependencies(&s, &set(&["mempool"])),
            set(&["mempool", "electrs", "bitcoind", "bitcoind-ui"])
        );
        assert_eq!(with_dependencies(&s, &set(&["tor"])), set(&["tor"]));
        // Asking for a companion brings its parent (and so the parent's
        // other companions).
        assert_eq!(
            with_dependencies(&s, &set(&["bitcoind-ui"])),
            set(&["bitcoind", "bitcoind-ui"])
        );
    }

    #[test]
    fn dependents_are_transitive_and_include_companions() {
        let s = node_box();
        assert_eq!(
            dependents(&s, "bitcoind"),
            set(&["bitcoind-ui", "electrs", "lnd", "mempool"])
        );
        assert_eq!(dependents(&s, "electrs"), set(&["mempool"]));
        assert_eq!(dependents(&s, "mempool"), BTreeSet::new());
        assert_eq!(dependents(&s, "ghost"), BTreeSet::new());
    }

    /// A random DAG: app i may depend only on apps with a smaller index.
    fn arb_dag() -> impl Strategy<Value = Stack> {
        (1usize..24)
            .prop_flat_map(|n| {
                (
                    proptest::collection::vec(proptest::collection::vec(any::<usize>(), 0..4), n),
                    proptest::collection::vec(proptest::option::of(0u32..6), n),
                )
            })
            .prop_map(|(edges, floors)| {
                let ids: Vec<String> = (0..edges.len()).map(|i| format!("app{i}")).collect();
                let apps = edges
                    .iter()
                    .enumerate()
                    .map(|(i, targets)| {
                        let deps: Vec<&str> = if i == 0 {
                            Vec::new()
                        } else {
                            targets.iter().map(|t| ids[t % i].as_str()).collect()
                        };
                        let mut a = app(&ids[i], &deps);
                        a.tier = floors[i];
                        a
                    })
                    .collect();
                stack(apps)
            })
    }

    proptest! {
        #[test]
        fn every_app_is_above_its_dependencies(s in arb_dag()) {
            prop_assert_eq!(find_cycle(&s), None);
            let t = tiers(&s);
            for (id, app) in &s.apps {
                prop_assert!(t[id] >= app.tier.unwrap_or(0));
                for dep in app.depends_on.keys() {
                    prop_assert!(t[id] > t[dep], "{} (tier {}) depends on {} (tier {})", id, t[id], dep, t[dep]);
                }
            }
            let all: BTreeSet<String> = s.apps.keys().cloned().collect();
            let batches = start_batches(&s, &all);
            let flat: BTreeSet<String> = batches.iter().flatten().cloned().collect();
            prop_assert_eq!(flat, all);
        }

        #[test]
        fn a_back_edge_makes_a_cycle(s in arb_dag()) {
            // Close a cycle from the lowest app to any app that reaches it.
            let mut s = s;
            let Some(dependent) = dependents(&s, "app0").into_iter().next() else {
                return Ok(());
            };
            s.apps.get_mut("app0").unwrap().depends_on.insert(dependent, DependsCondition::Started);
            let cycle = find_cycle(&s).expect("a cycle");
            prop_assert_eq!(cycle.first(), cycle.last());
            for pair in cycle.windows(2) {
                prop_assert!(s.apps[&pair[0]].depends_on.contains_key(&pair[1]));
            }
        }
    }
}
