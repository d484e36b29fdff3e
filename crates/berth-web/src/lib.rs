//! The dashboard and the state view of berth's HTTP API, without the
//! server: the view model `GET /api/state` answers and the dashboard
//! renders ([`view`]), the vet/verify runs and their scorecards
//! ([`runs`]), the HTML pages and live fragments ([`html`], askama
//! templates under `templates/`) and the static files ([`assets`], with
//! htmx and its SSE extension vendored under `static/vendor/`).
//!
//! Pure: no IO, no clock (`now_ms` is a parameter), no async runtime. The
//! daemon (`berth-daemon::http`) serves what this crate builds.

pub mod assets;
pub mod html;
pub mod runs;
pub mod view;

pub use html::{EventRow, FlashLine, UninstallPreview};
pub use runs::{RunDetailView, RunExtras, RunRow, RunsView};
pub use view::{
    AppView, Badge, Change, NodeSample, StateInput, StateView, Tone, build_state, changes,
};
