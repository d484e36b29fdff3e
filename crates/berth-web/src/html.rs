//! HTML rendering with askama: the full pages and the fragments the live
//! stream swaps in. Everything is escaped by askama; only fragments this
//! module rendered itself are inserted unescaped (`|safe`).
//!
//! Fragments sent over the live stream are rendered once for every
//! client, so they carry no per-session value: the CSRF token reaches
//! htmx requests through the page's `hx-headers`, and only the first,
//! full render puts it into the forms as well (for browsers without
//! JavaScript).

use askama::Template;
use serde::Serialize;

use crate::runs::{RunDetailView, RunRow, StageView, environment_lines, human_ms};
use crate::view::{AppView, Badge, EngineView, NodeView, StateView, Tone};

/// One event row of the events panel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    pub id: i64,
    /// `HH:MM:SS` (UTC).
    pub time: String,
    pub app: Option<String>,
    pub kind: String,
    pub message: String,
    pub tone: Tone,
}

impl EventRow {
    pub fn new(id: i64, at_ms: i64, app: Option<String>, kind: String, message: String) -> Self {
        let tone = event_tone(&kind);
        EventRow {
            id,
            time: time_of_day(at_ms.max(0) as u64),
            app,
            kind,
            message,
            tone,
        }
    }
}

/// How an event kind looks in the events panel.
pub fn event_tone(kind: &str) -> Tone {
    let k = kind.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| k.contains(w));
    if has(&[
        "fail",
        "crash",
        "quarantine",
        "killed",
        "reject",
        "down",
        "error",
        "unavailable",
    ]) {
        Tone::Bad
    } else if has(&["stopped", "uninstalled", "removed"]) {
        Tone::Idle
    } else if has(&["held", "hold", "unhealthy", "restart", "incomplete", "warn"]) {
        Tone::Warn
    } else if has(&[
        "started",
        "installed",
        "released",
        "readmitted",
        "recovered",
        "available",
        "healthy",
    ]) {
        Tone::Ok
    } else {
        Tone::Info
    }
}

/// `HH:MM:SS` of a Unix time in milliseconds, UTC.
pub fn time_of_day(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// `45 s`, `12 min`, `3 h 20 min`, `2 d 4 h`.
pub fn format_eta(s: u64) -> String {
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s.div_ceil(60)),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    version: &'a str,
    error: Option<&'a str>,
}

/// The login form; `error` is shown above it.
pub fn login_page(error: Option<&str>) -> String {
    render(&LoginPage {
        version: crate::assets::version(),
        error,
    })
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage<'a> {
    version: &'a str,
    title: String,
    csrf: &'a str,
    nav: &'a str,
    held_runs: usize,
    engine: String,
    badges: String,
    cards: String,
    sync: String,
    events: String,
}

/// The whole dashboard. `events` oldest first (shown newest first);
/// `held_runs`: vet/verify runs waiting for an operator (shown in the
/// navigation).
pub fn dashboard_page(
    state: &StateView,
    events: &[EventRow],
    csrf: &str,
    held_runs: usize,
) -> String {
    let title = match state.stacks.len() {
        0 => "no apps installed".to_string(),
        _ => state
            .stacks
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    render(&DashboardPage {
        version: crate::assets::version(),
        title,
        csrf,
        nav: "apps",
        held_runs,
        engine: engine(&state.engine),
        badges: badges(&state.badges),
        cards: cards(&state.apps, Some(csrf)),
        sync: sync(&state.nodes),
        events: events.iter().rev().map(event).collect(),
    })
}

#[derive(Template)]
#[template(path = "card.html")]
struct Card<'a> {
    app: &'a AppView,
    csrf: Option<&'a str>,
}

impl Card<'_> {
    fn action(&self, action: &str, label: &str, _danger: bool) -> String {
        render(&Action {
            app: &self.app.id,
            action,
            label,
            csrf: self.csrf,
        })
    }
}

#[derive(Template)]
#[template(path = "action.html")]
struct Action<'a> {
    app: &'a str,
    action: &'a str,
    label: &'a str,
    csrf: Option<&'a str>,
}

/// One app's card. `csrf` only for a full page render (see the module docs).
pub fn card(app: &AppView, csrf: Option<&str>) -> String {
    render(&Card { app, csrf })
}

/// Every card, for the grid.
pub fn cards(apps: &[AppView], csrf: Option<&str>) -> String {
    if apps.is_empty() {
        return "<p class=\"muted\" id=\"no-apps\">No app is installed. Install one with <code>berth install APP</code> or <code>berth up STACK</code>.</p>".into();
    }
    apps.iter().map(|a| card(a, csrf)).collect()
}

#[derive(Template)]
#[template(path = "badges.html")]
struct Badges<'a> {
    badges: &'a [Badge],
}

pub fn badges(badges: &[Badge]) -> String {
    render(&Badges { badges })
}

#[derive(Template)]
#[template(path = "engine.html")]
struct Engine<'a> {
    engine: &'a EngineView,
}

pub fn engine(engine: &EngineView) -> String {
    render(&Engine { engine })
}

#[derive(Template)]
#[template(path = "sync.html")]
struct Sync<'a> {
    nodes: &'a [NodeView],
}

impl Sync<'_> {
    fn pct(&self, p: &f64) -> String {
        format_percent(*p)
    }

    /// `849657 / 850000 · 99.9% · 30 s left`, whatever of it is known.
    fn facts(&self, n: &NodeView) -> String {
        let mut parts = Vec::new();
        match (n.current, n.target) {
            (Some(c), Some(t)) => parts.push(format!("{c} / {t}")),
            (Some(c), None) => parts.push(format!("height {c}")),
            _ => {}
        }
        if let Some(p) = n.percent
            && n.current.is_some()
        {
            parts.push(format!("{}%", format_percent(p)));
        }
        if let Some(e) = n.eta_s {
            parts.push(format!("{} left", format_eta(e)));
        }
        parts.join(" · ")
    }
}

/// A percentage with one decimal, rounded down: a node at 99.96% still
/// syncs and must not read "100.0%".
pub fn format_percent(p: f64) -> String {
    let p = if p.is_finite() {
        p.clamp(0.0, 100.0)
    } else {
        0.0
    };
    format!("{:.1}", (p * 10.0).floor() / 10.0)
}

pub fn sync(nodes: &[NodeView]) -> String {
    render(&Sync { nodes })
}

#[derive(Template)]
#[template(path = "event.html")]
struct Event<'a> {
    e: &'a EventRow,
}

pub fn event(e: &EventRow) -> String {
    render(&Event { e })
}

#[derive(Template)]
#[template(path = "flash.html")]
struct Flash<'a> {
    tone: Tone,
    message: &'a str,
}

/// The answer to an action: one line, coloured.
pub fn flash(tone: Tone, message: &str) -> String {
    render(&Flash { tone, message })
}

/// What uninstalling an app deletes, for the confirmation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UninstallPreview {
    pub app: String,
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub secrets: Vec<String>,
    /// Installed apps that depend on it.
    pub dependents: Vec<String>,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct Confirm<'a> {
    p: &'a UninstallPreview,
    csrf: Option<&'a str>,
}

/// The uninstall confirmation (a dialog with htmx, a page without).
pub fn confirm_uninstall(p: &UninstallPreview, csrf: Option<&str>) -> String {
    render(&Confirm { p, csrf })
}

#[derive(Template)]
#[template(path = "page.html")]
struct Page<'a> {
    version: &'a str,
    title: &'a str,
    content: &'a str,
}

/// A bare page around a fragment this module rendered (no-JS fallbacks).
pub fn page(title: &str, content: &str) -> String {
    render(&Page {
        version: crate::assets::version(),
        title,
        content,
    })
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage<'a> {
    version: &'a str,
    csrf: &'a str,
    nav: &'a str,
    held_runs: usize,
    runs: &'a [RunRow],
    held: Vec<&'a RunRow>,
    /// A run is in progress: the page refreshes itself.
    live: bool,
}

/// The runs list (newest first), held runs called out above it.
pub fn runs_page(runs: &[RunRow], csrf: &str) -> String {
    let held: Vec<&RunRow> = runs.iter().filter(|r| r.held).collect();
    render(&RunsPage {
        version: crate::assets::version(),
        csrf,
        nav: "runs",
        held_runs: held.len(),
        live: runs
            .iter()
            .any(|r| matches!(r.state.as_str(), "running" | "pending")),
        runs,
        held,
    })
}

/// A one-line message on a page (the answer to an operator action).
#[derive(Debug, Clone, PartialEq)]
pub struct FlashLine {
    pub tone: Tone,
    pub message: String,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage<'a> {
    version: &'a str,
    csrf: &'a str,
    nav: &'a str,
    held_runs: usize,
    d: &'a RunDetailView,
    flash: Option<&'a FlashLine>,
    live: bool,
}

impl RunPage<'_> {
    fn failed_stage(&self) -> Option<&StageView> {
        let name = self.d.run.failed_stage.as_deref()?;
        self.d.stages.iter().find(|s| s.name == name)
    }

    fn environment(&self) -> Vec<(String, String)> {
        environment_lines(&self.d.environment)
    }

    fn human(&self, ms: &u64) -> String {
        human_ms(*ms)
    }
}

/// One run's page: the held banner with the operator's actions, the facts,
/// the scorecard (verify), the stages, the environment manifest, the
/// operator log. `held_runs` counts every held run (the navigation).
pub fn run_page(
    d: &RunDetailView,
    csrf: &str,
    flash: Option<&FlashLine>,
    held_runs: usize,
) -> String {
    render(&RunPage {
        version: crate::assets::version(),
        csrf,
        nav: "runs",
        held_runs,
        live: matches!(d.run.state.as_str(), "running" | "pending"),
        d,
        flash,
    })
}

#[derive(Template)]
#[template(path = "run_confirm.html")]
struct RunConfirm<'a> {
    d: &'a RunDetailView,
    csrf: Option<&'a str>,
}

/// The confirmation before abandoning a run.
pub fn confirm_abandon(d: &RunDetailView, csrf: Option<&str>) -> String {
    render(&RunConfirm { d, csrf })
}

fn render(t: &impl Template) -> String {
    // The templates are checked at compile time and write to a String:
    // rendering cannot fail short of a formatting bug in a Display impl.
    t.render().expect("template renders")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_and_time_formats() {
        assert_eq!(format_eta(0), "0 s");
        assert_eq!(format_eta(59), "59 s");
        assert_eq!(format_eta(61), "2 min");
        assert_eq!(format_eta(3600 * 3 + 20 * 60), "3 h 20 min");
        assert_eq!(format_eta(86_400 * 2 + 3600 * 4), "2 d 4 h");
        assert_eq!(
            time_of_day(12 * 3_600_000 + 3 * 60_000 + 10_000),
            "12:03:10"
        );
        assert_eq!(format_percent(99.96), "99.9");
        assert_eq!(format_percent(100.0), "100.0");
        assert_eq!(format_percent(f64::NAN), "0.0");
    }

    #[test]
    fn event_tones() {
        assert_eq!(event_tone("crashed"), Tone::Bad);
        assert_eq!(event_tone("held"), Tone::Warn);
        assert_eq!(event_tone("started"), Tone::Ok);
        assert_eq!(event_tone("stopped"), Tone::Idle);
        assert_eq!(event_tone("supervision-reset"), Tone::Info);
    }
}
