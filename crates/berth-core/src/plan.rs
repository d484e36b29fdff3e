//! Decisions about what to do with an app's container, as data. The
//! executor (berth-ops) carries these out; nothing here touches an engine.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::classify::EngineStatus;
use crate::graph;
use crate::model::Stack;
use crate::observed::ObservedContainer;

/// What bringing one app up requires, given what the engine shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum ContainerAction {
    /// A running container with the same spec hash: leave it alone.
    Adopt,
    /// A container with the same spec hash that is not running: start it.
    Start,
    /// No container: create and start one.
    Create,
    /// A container exists but its spec changed (or it is broken): remove it,
    /// keep its volumes, create and start a new one.
    Recreate { reason: String },
}

impl ContainerAction {
    pub fn is_noop(&self) -> bool {
        matches!(self, ContainerAction::Adopt)
    }
}

/// Decide the container action for one app from its wanted spec hash and
/// the observed container of the same name (if any).
pub fn decide_container(
    wanted_hash: &str,
    observed: Option<&ObservedContainer>,
) -> ContainerAction {
    let Some(obs) = observed else {
        return ContainerAction::Create;
    };
    match obs.spec_hash() {
        Some(h) if h == wanted_hash => {}
        Some(h) => {
            return ContainerAction::Recreate {
                reason: format!("spec changed ({h} -> {wanted_hash})"),
            };
        }
        None => {
            return ContainerAction::Recreate {
                reason: "container has no spec hash label".into(),
            };
        }
    }
    match obs.status {
        EngineStatus::Running => ContainerAction::Adopt,
        EngineStatus::Created | EngineStatus::Exited => ContainerAction::Start,
        EngineStatus::Paused
        | EngineStatus::Restarting
        | EngineStatus::Dead
        | EngineStatus::Removing
        | EngineStatus::Unknown => ContainerAction::Recreate {
            reason: format!("container is {:?}", obs.status).to_lowercase(),
        },
    }
}

/// One app's part of an `up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStep {
    pub app: String,
    pub action: ContainerAction,
}

/// Bringing a set of apps up: batches in tier order; apps within a batch
/// are independent and may run in parallel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UpPlan {
    pub batches: Vec<Vec<AppStep>>,
}

impl UpPlan {
    pub fn is_noop(&self) -> bool {
        self.batches.iter().flatten().all(|s| s.action.is_noop())
    }

    pub fn steps(&self) -> impl Iterator<Item = &AppStep> {
        self.batches.iter().flatten()
    }
}

/// Plan bringing `ids` (with their dependencies and companions) up.
/// `hashes` holds the wanted spec hash of every app; `observed` the
/// containers of the stack keyed by app id.
pub fn plan_up(
    stack: &Stack,
    ids: &BTreeSet<String>,
    hashes: &BTreeMap<String, String>,
    observed: &BTreeMap<String, ObservedContainer>,
) -> UpPlan {
    let all = graph::with_dependencies(stack, ids);
    let batches = graph::start_batches(stack, &all)
        .into_iter()
        .map(|batch| {
            batch
                .into_iter()
                .map(|app| {
                    let hash = hashes.get(&app).map(String::as_str).unwrap_or_default();
                    let action = decide_container(hash, observed.get(&app));
                    AppStep { app, action }
                })
                .collect()
        })
        .collect();
    UpPlan { batches }
}

/// A journaled step as the executor recorded it, for rollback planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalStep {
    pub id: i64,
    pub kind: String,
    pub resource: String,
    /// The step finished (its effect exists).
    pub done: bool,
    /// The step created the resource (as opposed to finding it).
    pub created: bool,
}

/// What rolling back an interrupted or failed install must undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "undo")]
pub enum Undo {
    RemoveContainer {
        name: String,
        step: i64,
    },
    RemoveVolume {
        name: String,
        step: i64,
    },
    /// Remove the network only if no other container still uses it.
    RemoveNetworkIfUnused {
        name: String,
        step: i64,
    },
    RemoveSecrets {
        app: String,
        step: i64,
    },
    /// Remove a stack secret value the install generated, unless another
    /// app uses it by now.
    RemoveStackSecret {
        name: String,
        step: i64,
    },
    /// Put back the container an update kept (renamed, stopped) under
    /// its own name `name`, and start it again when it was running.
    RestoreKept {
        name: String,
        step: i64,
        start: bool,
    },
}

/// Journal step kind of an update that kept the old container, which was
/// running before the update stopped it.
pub const STEP_KEEP_RUNNING: &str = "keep-running";
/// Journal step kind of an update that kept the old container, which was
/// not running.
pub const STEP_KEEP_STOPPED: &str = "keep-stopped";
/// Journal step of an update's commit point: written in one transaction
/// with the app's new record. Before it an interrupted update reverts to
/// the kept container; after it the update is finished.
pub const STEP_COMMIT: &str = "commit";

/// Rollback of an install journal: every resource this install created,
/// in reverse order.
///
/// The executor journals a `container`, `volume`, `network` or `secrets`
/// step only when the resource did not exist before (finding an existing
/// one is journaled as `*-existing`, which is never undone, so a volume
/// kept by `uninstall --keep-data` can never be deleted by a rollback).
/// A `secret` step is journaled for each stack secret value the install
/// generates (resource: the secret's name); a value that already existed
/// (kept by `--keep-data`, shared with an installed app) has no step.
/// A step that is only an intent (berth died during the engine call) is
/// undone too, because the engine may have carried it out; removing a
/// missing resource is harmless.
pub fn plan_rollback(steps: &[JournalStep]) -> Vec<Undo> {
    let mut out = Vec::new();
    for s in steps.iter().rev() {
        // A kept container is always put back, whether the keep step
        // finished or not (the rename may have happened either way).
        let keep = s.kind == STEP_KEEP_RUNNING || s.kind == STEP_KEEP_STOPPED;
        if s.done && !s.created && !keep {
            continue;
        }
        let name = s.resource.clone();
        match s.kind.as_str() {
            "container" => out.push(Undo::RemoveContainer { name, step: s.id }),
            "volume" => out.push(Undo::RemoveVolume { name, step: s.id }),
            "network" => out.push(Undo::RemoveNetworkIfUnused { name, step: s.id }),
            "secrets" => out.push(Undo::RemoveSecrets {
                app: name,
                step: s.id,
            }),
            "secret" => out.push(Undo::RemoveStackSecret { name, step: s.id }),
            STEP_KEEP_RUNNING | STEP_KEEP_STOPPED => out.push(Undo::RestoreKept {
                name,
                step: s.id,
                start: s.kind == STEP_KEEP_RUNNING,
            }),
            _ => {}
        }
    }
    out
}

/// How an interrupted operation is recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recovery {
    /// Undo what it created (a fresh install never half-exists).
    RollBack,
    /// Finish it (an uninstall or reinstall always completes).
    Resume,
    /// An update: finished when it reached its commit point
    /// ([`update_committed`]), otherwise rolled back to the kept container.
    Update,
}

/// Journal kind of an update (a running or stopped app's container
/// replaced by one of a changed spec).
pub const OP_UPDATE: &str = "update";

pub fn recovery_for(kind: &str) -> Recovery {
    match kind {
        "install" => Recovery::RollBack,
        OP_UPDATE => Recovery::Update,
        _ => Recovery::Resume,
    }
}

/// Whether an update's journal reached its commit point: the new record is
/// stored and the new container is the app's from then on.
pub fn update_committed(steps: &[JournalStep]) -> bool {
    steps.iter().any(|s| s.kind == STEP_COMMIT && s.done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming;

    fn obs(status: EngineStatus, hash: Option<&str>) -> ObservedContainer {
        let mut labels = BTreeMap::new();
        if let Some(h) = hash {
            labels.insert(naming::LABEL_SPEC_HASH.to_string(), h.to_string());
        }
        ObservedContainer {
            id: "id".into(),
            name: "demo-a".into(),
            image: "img".into(),
            status,
            exit_code: None,
            oom_killed: false,
            started_at: None,
            labels,
        }
    }

    #[test]
    fn container_decisions() {
        use ContainerAction as A;
        assert_eq!(decide_container("h1", None), A::Create);
        assert_eq!(
            decide_container("h1", Some(&obs(EngineStatus::Running, Some("h1")))),
            A::Adopt
        );
        assert_eq!(
            decide_container("h1", Some(&obs(EngineStatus::Exited, Some("h1")))),
            A::Start
        );
        assert_eq!(
            decide_container("h1", Some(&obs(EngineStatus::Created, Some("h1")))),
            A::Start
        );
        assert!(matches!(
            decide_container("h2", Some(&obs(EngineStatus::Running, Some("h1")))),
            A::Recreate { .. }
        ));
        assert!(matches!(
            decide_container("h1", Some(&obs(EngineStatus::Running, None))),
            A::Recreate { .. }
        ));
        assert!(matches!(
            decide_container("h1", Some(&obs(EngineStatus::Dead, Some("h1")))),
            A::Recreate { .. }
        ));
    }

    fn step(id: i64, kind: &str, done: bool, created: bool) -> JournalStep {
        JournalStep {
            id,
            kind: kind.into(),
            resource: format!("{kind}-{id}"),
            done,
            created,
        }
    }

    #[test]
    fn rollback_undoes_created_resources_in_reverse() {
        let steps = vec![
            step(1, "pull", true, false),
            step(2, "network", true, true),
            step(3, "volume-existing", true, false),
            step(4, "volume", true, true),
            step(5, "secrets", true, true),
            step(6, "container", true, true),
            step(7, "start", false, false),
        ];
        let undo = plan_rollback(&steps);
        assert_eq!(
            undo,
            vec![
                Undo::RemoveContainer {
                    name: "container-6".into(),
                    step: 6
                },
                Undo::RemoveSecrets {
                    app: "secrets-5".into(),
                    step: 5
                },
                Undo::RemoveVolume {
                    name: "volume-4".into(),
                    step: 4
                },
                Undo::RemoveNetworkIfUnused {
                    name: "network-2".into(),
                    step: 2
                },
            ]
        );
    }

    /// r6: a rolled-back first install left the stack secret value it had
    /// generated (found by `berth verify`, killed-mid-install).
    #[test]
    fn r6_rollback_removes_the_stack_secret_values_the_install_generated() {
        let steps = vec![
            step(1, "secret", true, true),
            step(2, "secret", false, false),
            step(3, "secrets", true, true),
        ];
        assert_eq!(
            plan_rollback(&steps),
            vec![
                Undo::RemoveSecrets {
                    app: "secrets-3".into(),
                    step: 3
                },
                Undo::RemoveStackSecret {
                    name: "secret-2".into(),
                    step: 2
                },
                Undo::RemoveStackSecret {
                    name: "secret-1".into(),
                    step: 1
                },
            ]
        );
    }

    #[test]
    fn rollback_removes_a_container_whose_create_was_interrupted() {
        let steps = vec![
            step(1, "network-existing", true, false),
            step(2, "volume", false, false),
            step(3, "container", false, false),
        ];
        assert_eq!(
            plan_rollback(&steps),
            vec![
                Undo::RemoveContainer {
                    name: "container-3".into(),
                    step: 3
                },
                Undo::RemoveVolume {
                    name: "volume-2".into(),
                    step: 2
                },
            ]
        );
    }

    #[test]
    fn recovery_policy() {
        assert_eq!(recovery_for("install"), Recovery::RollBack);
        assert_eq!(recovery_for("uninstall"), Recovery::Resume);
        assert_eq!(recovery_for("reinstall"), Recovery::Resume);
        assert_eq!(recovery_for("update"), Recovery::Update);
    }

    /// r12: an update removed the old container first, so a new version
    /// that failed left the app with none. The rollback of an update now
    /// removes the new container and then puts the kept one back.
    #[test]
    fn r12_rolling_back_an_update_removes_the_new_container_then_restores_the_old() {
        let steps = vec![
            step(1, "stack", true, false),
            JournalStep {
                id: 2,
                kind: STEP_KEEP_RUNNING.into(),
                resource: "demo-lnd".into(),
                done: true,
                created: false,
            },
            step(3, "network-existing", true, false),
            JournalStep {
                id: 4,
                kind: "container".into(),
                resource: "demo-lnd".into(),
                done: true,
                created: true,
            },
            step(5, "start", true, false),
            step(6, "wait", false, false),
        ];
        assert_eq!(
            plan_rollback(&steps),
            vec![
                Undo::RemoveContainer {
                    name: "demo-lnd".into(),
                    step: 4
                },
                Undo::RestoreKept {
                    name: "demo-lnd".into(),
                    step: 2,
                    start: true
                },
            ]
        );
        assert!(!update_committed(&steps));
    }

    #[test]
    fn an_update_interrupted_while_keeping_the_old_container_restores_it_and_keeps_it_stopped_if_it_was()
     {
        let steps = vec![JournalStep {
            id: 1,
            kind: STEP_KEEP_STOPPED.into(),
            resource: "demo-web".into(),
            done: false,
            created: false,
        }];
        assert_eq!(
            plan_rollback(&steps),
            vec![Undo::RestoreKept {
                name: "demo-web".into(),
                step: 1,
                start: false
            }]
        );
    }

    #[test]
    fn an_update_is_committed_only_once_its_commit_step_is_done() {
        let mut steps = vec![
            step(1, "wait", true, false),
            step(2, STEP_COMMIT, false, false),
        ];
        assert!(!update_committed(&steps));
        steps[1].done = true;
        assert!(update_committed(&steps));
    }
}
