//! Revisions of each installed app: the manifests it was installed or
//! updated to, and the updates that failed, newest last. Bounded per app
//! ([`REVISIONS_PER_APP_MAX`]); removed with the app.

use berth_core::model::App;
use rusqlite::{Connection, Row, params};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::truncate_bytes;

/// Revisions kept per app; the oldest go first.
pub const REVISIONS_PER_APP_MAX: i64 = 16;
/// Longest failure reason kept with a revision, in bytes.
pub const REVISION_ERROR_MAX_BYTES: usize = 4 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevisionOutcome {
    /// The first install of the app came up.
    Installed,
    /// An update to this manifest came up and was committed.
    Updated,
    /// An update to this manifest failed; the previous version was put back.
    UpdateFailed,
}

impl RevisionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionOutcome::Installed => "installed",
            RevisionOutcome::Updated => "updated",
            RevisionOutcome::UpdateFailed => "update-failed",
        }
    }

    fn parse(s: &str) -> Option<RevisionOutcome> {
        Some(match s {
            "installed" => RevisionOutcome::Installed,
            "updated" => RevisionOutcome::Updated,
            "update-failed" => RevisionOutcome::UpdateFailed,
            _ => return None,
        })
    }
}

/// One revision of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub app: String,
    /// 1 for the app's first revision, one more for each after it (never
    /// reused while the app stays installed, even after pruning).
    pub seq: i64,
    pub at_ms: i64,
    pub outcome: RevisionOutcome,
    /// The image reference of the manifest.
    pub image: String,
    /// The image the engine actually ran (its id), when known.
    pub image_id: Option<String>,
    pub spec_hash: String,
    pub manifest: App,
    /// Why an update failed (redacted by the caller).
    pub error: Option<String>,
}

/// A revision to record; its `seq` is assigned by the store.
#[derive(Debug, Clone, Copy)]
pub struct NewRevision<'a> {
    pub outcome: RevisionOutcome,
    pub manifest: &'a App,
    pub image_id: Option<&'a str>,
    pub spec_hash: &'a str,
    pub error: Option<&'a str>,
}

impl Store {
    /// Records a revision of `app` and prunes its oldest beyond
    /// [`REVISIONS_PER_APP_MAX`]. Returns its `seq`.
    pub fn add_revision(&self, app: &str, r: &NewRevision<'_>, now_ms: i64) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let seq = add_revision_on(&tx, app, r, now_ms)?;
        tx.commit()?;
        Ok(seq)
    }

    /// The revisions of `app`, oldest first.
    pub fn revisions(&self, app: &str) -> Result<Vec<Revision>> {
        let rows = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT app, seq, at_ms, outcome, image, image_id, spec_hash, app_json, error
                 FROM revisions WHERE app = ?1 ORDER BY seq",
            )?;
            stmt.query_map([app], RevisionRow::from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        rows.into_iter().map(RevisionRow::into_revision).collect()
    }
}

pub(crate) fn add_revision_on(
    conn: &Connection,
    app: &str,
    r: &NewRevision<'_>,
    now_ms: i64,
) -> Result<i64> {
    let app_json = serde_json::to_string(r.manifest).map_err(|e| {
        StoreError::invalid_state(format!("app {app}: manifest does not encode: {e}"))
    })?;
    let seq: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM revisions WHERE app = ?1")?
        .query_row([app], |row| row.get(0))?;
    conn.prepare_cached(
        "INSERT INTO revisions (app, seq, at_ms, outcome, image, image_id, spec_hash, app_json, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        app,
        seq,
        now_ms,
        r.outcome.as_str(),
        r.manifest.image,
        r.image_id,
        r.spec_hash,
        app_json,
        r.error.map(|e| truncate_bytes(e, REVISION_ERROR_MAX_BYTES)),
    ])?;
    conn.prepare_cached("DELETE FROM revisions WHERE app = ?1 AND seq <= ?2")?
        .execute(params![app, seq - REVISIONS_PER_APP_MAX])?;
    Ok(seq)
}

struct RevisionRow {
    app: String,
    seq: i64,
    at_ms: i64,
    outcome: String,
    image: String,
    image_id: Option<String>,
    spec_hash: String,
    app_json: String,
    error: Option<String>,
}

impl RevisionRow {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<RevisionRow> {
        Ok(RevisionRow {
            app: row.get(0)?,
            seq: row.get(1)?,
            at_ms: row.get(2)?,
            outcome: row.get(3)?,
            image: row.get(4)?,
            image_id: row.get(5)?,
            spec_hash: row.get(6)?,
            app_json: row.get(7)?,
            error: row.get(8)?,
        })
    }

    fn into_revision(self) -> Result<Revision> {
        let outcome = RevisionOutcome::parse(&self.outcome).ok_or_else(|| {
            StoreError::invalid_state(format!(
                "revision {} of app {}: unknown outcome {:?}",
                self.seq, self.app, self.outcome
            ))
        })?;
        let manifest = serde_json::from_str(&self.app_json).map_err(|e| {
            StoreError::invalid_state(format!(
                "revision {} of app {}: manifest does not decode: {e}",
                self.seq, self.app
            ))
        })?;
        Ok(Revision {
            app: self.app,
            seq: self.seq,
            at_ms: self.at_ms,
            outcome,
            image: self.image,
            image_id: self.image_id,
            spec_hash: self.spec_hash,
            manifest,
            error: self.error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(image: &str) -> App {
        let stack = berth_core::manifest::parse_stack(
            "berth.toml",
            &format!("[stack]\nname = \"demo\"\n[apps.lnd]\nimage = \"{image}\"\n"),
            &|_| Err("no includes".into()),
        )
        .expect("a valid stack");
        stack.apps["lnd"].clone()
    }

    #[test]
    fn revisions_are_numbered_bounded_and_removed_with_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let total = REVISIONS_PER_APP_MAX + 3;
        for i in 1..=total {
            let m = app(&format!("lnd:v{i}"));
            let seq = store
                .add_revision(
                    "lnd",
                    &NewRevision {
                        outcome: if i == 1 {
                            RevisionOutcome::Installed
                        } else {
                            RevisionOutcome::Updated
                        },
                        manifest: &m,
                        image_id: Some("sha256:abc"),
                        spec_hash: "h",
                        error: None,
                    },
                    i,
                )
                .unwrap();
            assert_eq!(seq, i);
        }
        let revs = store.revisions("lnd").unwrap();
        assert_eq!(revs.len() as i64, REVISIONS_PER_APP_MAX, "bounded");
        assert_eq!(revs.first().unwrap().seq, 4, "the oldest went first");
        assert_eq!(revs.last().unwrap().manifest.image, format!("lnd:v{total}"));
        assert!(store.revisions("other").unwrap().is_empty());
        store.delete_app("lnd").unwrap();
        assert!(
            store.revisions("lnd").unwrap().is_empty(),
            "removed with the app"
        );
    }

    #[test]
    fn a_failure_reason_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let long = "x".repeat(REVISION_ERROR_MAX_BYTES * 2);
        let m = app("lnd:v2");
        store
            .add_revision(
                "lnd",
                &NewRevision {
                    outcome: RevisionOutcome::UpdateFailed,
                    manifest: &m,
                    image_id: None,
                    spec_hash: "h",
                    error: Some(&long),
                },
                1,
            )
            .unwrap();
        let r = &store.revisions("lnd").unwrap()[0];
        assert_eq!(r.error.as_ref().unwrap().len(), REVISION_ERROR_MAX_BYTES);
        assert_eq!(r.outcome, RevisionOutcome::UpdateFailed);
    }
}
