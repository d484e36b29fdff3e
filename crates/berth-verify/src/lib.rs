//! The verification pipeline shell: runs the stages of a
//! [`berth_core::pipeline::Run`] (the pure state machine) and persists every
//! transition through a [`RunStore`] (SQLite: `berth_store::Store`), vets a
//! host (`berth vet`: inventory, expected-spec diff, disk, memory, clock,
//! engine, reporting), drives the lifecycle matrix on the real engine
//! (`berth verify`, module [`verify`]) and renders the self-contained HTML
//! and JSON reports with the app × cell scorecard. [`runs`] is what the CLI
//! and the daemon call: start, list, show and resume runs of a state
//! directory, one driver per run.
//!
//! Everything that decides (stage order, holding, operator actions) is in
//! `berth_core::pipeline`; this crate only executes and measures.

pub mod artifacts;
pub mod clock;
pub mod engine_ref;
pub mod environment;
pub mod executor;
pub mod report;
pub mod runs;
pub mod store;
mod tool;
pub mod verify;
pub mod vet;

pub use artifacts::{ArtifactSink, Redactor, no_redaction, redact_values};
pub use clock::{Clock, FakeClock, SystemClock};
pub use engine_ref::EngineRef;
pub use executor::{ArtifactOut, ExecError, Executor, Stage, StageContext, StageOutcome};
pub use report::matrix::{Cell, CellMark, Iteration, Matrix};
pub use report::{Report, write_reports};
pub use runs::{Driver, RunDetail, RunsError};
pub use store::{MemoryRunStore, RunListing, RunStore, RunStoreError};
pub use verify::{VerifyError, VerifyOptions, VerifyParams, resume_verify, verify};
pub use vet::{RunSummary, VetError, VetFloors, VetOptions, VetParams, resume_vet, vet};
