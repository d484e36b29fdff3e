//! The database schema, as an append-only list of migrations.
//!
//! Never edit a migration that has shipped: add a new one at the end. The
//! schema version lives in SQLite's `user_version`.

use rusqlite_migration::{M, Migrations};

const MIGRATION_LIST: &[M<'static>] = &[
    M::up(
        r#"
-- One row per installed app: what the user wants, not what the engine has.
CREATE TABLE apps (
    id              TEXT PRIMARY KEY NOT NULL,
    stack           TEXT NOT NULL,
    stack_file      TEXT,
    network         TEXT NOT NULL,
    app_json        TEXT NOT NULL,
    desired         TEXT NOT NULL CHECK (desired IN ('running', 'stopped')),
    installed_at_ms INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
) STRICT;

-- The operation journal. An operation with finished_at_ms NULL was
-- interrupted (berth died) and must be resumed or rolled back.
-- AUTOINCREMENT: ids are never reused after pruning.
CREATE TABLE ops (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,
    app            TEXT NOT NULL,
    state          TEXT NOT NULL
                   CHECK (state IN ('running', 'succeeded', 'failed', 'rolled-back', 'resumed')),
    error          TEXT,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER
) STRICT;
CREATE INDEX ops_by_app ON ops (app, id);
CREATE INDEX ops_unfinished ON ops (id) WHERE finished_at_ms IS NULL;

-- Steps of an operation, each recorded (intent) before it runs.
CREATE TABLE steps (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id          INTEGER NOT NULL REFERENCES ops (id) ON DELETE CASCADE,
    seq            INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    resource       TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('intent', 'done', 'undone')),
    created        INTEGER NOT NULL CHECK (created IN (0, 1)),
    recorded_at_ms INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    UNIQUE (op_id, seq)
) STRICT;

-- Bounded event history (see EVENTS_MAX). AUTOINCREMENT so that an event
-- stream resumed "after id N" never sees a reused id.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    app     TEXT,
    kind    TEXT NOT NULL,
    message TEXT NOT NULL
) STRICT;
CREATE INDEX events_by_app ON events (app, id);

-- Settings that must survive restarts.
CREATE TABLE kv (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
"#,
    ),
    M::up(
        r#"
-- Supervision (berth daemon): the restart tracker of each app as JSON
-- (berth_core::supervise::RestartTracker, quarantine included).
CREATE TABLE restart_trackers (
    app           TEXT PRIMARY KEY NOT NULL,
    tracker_json  TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

-- Written before a supervision stop, cleared after the start that follows
-- it: a daemon that dies in between still ends with the app started.
CREATE TABLE owed_starts (
    app            TEXT PRIMARY KEY NOT NULL,
    reason         TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL
) STRICT;
"#,
    ),
    // 3: chain gates (issue 4).
    M::up(
        r#"
-- The gate state of each gated app as JSON (berth_core::gate::GateState:
-- the one-way latch, the last hold note, the rejection). A missing row is
-- the default: not latched, not rejected.
CREATE TABLE gate_states (
    app           TEXT PRIMARY KEY NOT NULL,
    state_json    TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

-- What berth knows of each node's health as JSON
-- (berth_core::gate::NodeTracker: ever reachable, down since, last probe).
CREATE TABLE node_trackers (
    node          TEXT PRIMARY KEY NOT NULL,
    tracker_json  TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
"#,
    ),
    // 4: verification and vetting runs (issue 6).
    M::up(
        r#"
-- Runs of the staged pipeline (`berth vet`, `berth verify`): the whole
-- berth_core::pipeline::Run as JSON, replaced atomically after every
-- transition, plus the columns a listing needs. params_json holds what the
-- run was started with, so another process can resume it.
CREATE TABLE runs (
    id           TEXT PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    verdict      TEXT,
    failed_stage TEXT,
    stages       INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    finished_ms  INTEGER,
    run_json     TEXT NOT NULL,
    params_json  TEXT
) STRICT;
CREATE INDEX runs_by_created ON runs (created_ms, id);
"#,
    ),
    // 5: revisions of each installed app (issue 12): what was installed or
    // updated to, or tried and failed, newest last, bounded per app.
    M::up(
        r#"
CREATE TABLE revisions (
    app          TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    at_ms        INTEGER NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('installed', 'updated', 'update-failed')),
    image        TEXT NOT NULL,
    image_id     TEXT,
    spec_hash    TEXT NOT NULL,
    app_json     TEXT NOT NULL,
    error        TEXT,
    PRIMARY KEY (app, seq)
) STRICT;
"#,
    ),
];

/// Every migration of the state database, oldest first.
pub(crate) const MIGRATIONS: Migrations<'static> = Migrations::from_slice(MIGRATION_LIST);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        assert!(MIGRATIONS.validate().is_ok());
    }
}
