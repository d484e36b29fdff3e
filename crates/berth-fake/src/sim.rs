//! The simulated chain state: mode, height, target, sync rate. Pure logic
//! driven by an explicit clock (`Instant` passed in), so it is unit-testable.

use std::time::{Duration, Instant};

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// blocks == headers == target; not in initial block download.
    Synced,
    /// Height advances at `rate` blocks/s toward target, then becomes synced.
    Syncing,
    /// The service listener refuses connections (control port stays up).
    Down,
    /// Answers, but reports busy (HTTP 503 / status "BUSY").
    Busy,
    /// Warm-up: bitcoind answers RPC error -28, monerod target_height 0.
    Starting,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::Synced,
        Mode::Syncing,
        Mode::Down,
        Mode::Busy,
        Mode::Starting,
    ];

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Synced => "synced",
            Mode::Syncing => "syncing",
            Mode::Down => "down",
            Mode::Busy => "busy",
            Mode::Starting => "starting",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A consistent copy of the state, taken under the lock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub mode: Mode,
    pub height: u64,
    pub target: u64,
    pub rate: f64,
}

impl View {
    /// Fraction of the target reached, 1.0 when synced.
    pub fn progress(&self) -> f64 {
        progress(self.mode, self.height, self.target)
    }
}

fn progress(mode: Mode, height: u64, target: u64) -> f64 {
    if mode == Mode::Synced || target == 0 || height >= target {
        1.0
    } else {
        height as f64 / target as f64
    }
}

fn bucket(mode: Mode, height: u64, target: u64) -> u64 {
    ((progress(mode, height, target) * 10.0).floor() as u64).min(10)
}

/// Body of `POST /control`. All fields optional.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    pub mode: Option<String>,
    pub height: Option<u64>,
    pub target: Option<u64>,
    /// Blocks per second.
    pub rate: Option<f64>,
    /// Sets the rate so that reaching target from height takes this long.
    pub sync_seconds: Option<f64>,
    /// Exit code for `"mode": "exit"` (default 1).
    pub code: Option<i64>,
    /// `true`: the height stops changing by itself (no sync progress, no
    /// new blocks) until `false`; an explicit `height` still sets it.
    pub freeze: Option<bool>,
    /// While synced, a new block every this many seconds (height and
    /// target advance together); 0 turns new blocks off.
    pub block_seconds: Option<f64>,
}

/// A validated control request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Update {
    pub mode: Option<Mode>,
    pub exit: Option<i32>,
    pub height: Option<u64>,
    pub target: Option<u64>,
    pub rate: Option<f64>,
    pub sync_seconds: Option<f64>,
    pub freeze: Option<bool>,
    /// `Some(None)`: new blocks off.
    pub block_seconds: Option<Option<f64>>,
}

/// Seconds between new blocks as the command line and the control port
/// take them: `> 0`, or 0 for none.
pub fn parse_block_seconds(s: f64) -> Result<Option<f64>, String> {
    if !s.is_finite() || s < 0.0 {
        Err(format!("block_seconds must be a number >= 0, got {s}"))
    } else if s == 0.0 {
        Ok(None)
    } else {
        Ok(Some(s))
    }
}

impl ControlRequest {
    pub fn validate(self) -> Result<Update, String> {
        let mut update = Update {
            height: self.height,
            target: self.target,
            freeze: self.freeze,
            ..Update::default()
        };
        if let Some(b) = self.block_seconds {
            update.block_seconds = Some(parse_block_seconds(b)?);
        }
        match self.mode.as_deref() {
            None => {}
            Some("exit") => {
                let code = self.code.unwrap_or(1);
                if !(0..=255).contains(&code) {
                    return Err(format!("code must be 0..=255, got {code}"));
                }
                update.exit = Some(code as i32);
            }
            Some(m) => {
                update.mode = Some(Mode::parse(m).ok_or_else(|| {
                    format!("unknown mode {m:?} (synced|syncing|down|busy|starting|exit)")
                })?);
            }
        }
        if self.code.is_some() && update.exit.is_none() {
            return Err("code is only valid with \"mode\": \"exit\"".into());
        }
        if let Some(rate) = self.rate {
            if !rate.is_finite() || rate < 0.0 {
                return Err(format!("rate must be a finite number >= 0, got {rate}"));
            }
            update.rate = Some(rate);
        }
        if let Some(s) = self.sync_seconds {
            if !s.is_finite() || s <= 0.0 {
                return Err(format!("sync_seconds must be > 0, got {s}"));
            }
            if update.rate.is_some() {
                return Err("give either rate or sync_seconds, not both".into());
            }
            update.sync_seconds = Some(s);
        }
        Ok(update)
    }
}

#[derive(Debug, Clone)]
pub struct Sim {
    pub mode: Mode,
    pub height: u64,
    pub target: u64,
    pub rate: f64,
    frac: f64,
    last: Instant,
    bucket: u64,
    /// How long `starting` lasts before it moves on by itself (None: forever).
    pub starting_duration: Option<Duration>,
    starting_until: Option<Instant>,
    /// While synced: a new block every this many seconds (None: never).
    pub block_seconds: Option<f64>,
    /// Fractional blocks accumulated while synced.
    block_frac: f64,
    /// The height does not change by itself (neither syncing nor new blocks).
    pub frozen: bool,
}

impl Sim {
    pub fn new(
        mode: Mode,
        height: u64,
        target: u64,
        rate: f64,
        starting_duration: Option<Duration>,
        now: Instant,
    ) -> Sim {
        let mut sim = Sim {
            mode,
            height,
            target,
            rate,
            frac: 0.0,
            last: now,
            bucket: 0,
            starting_duration,
            starting_until: None,
            block_seconds: None,
            block_frac: 0.0,
            frozen: false,
        };
        if mode == Mode::Starting {
            sim.starting_until = starting_duration.map(|d| now + d);
        }
        let mut logs = Vec::new();
        sim.normalize(false, &mut logs);
        sim.bucket = bucket(sim.mode, sim.height, sim.target);
        sim
    }

    /// New blocks while synced, every `block_seconds` (None: never).
    pub fn with_blocks(mut self, block_seconds: Option<f64>) -> Sim {
        self.block_seconds = block_seconds;
        self
    }

    pub fn view(&self) -> View {
        View {
            mode: self.mode,
            height: self.height,
            target: self.target,
            rate: self.rate,
        }
    }

    /// Enforces mode invariants: synced means height == target; syncing that
    /// reached its target becomes synced.
    fn normalize(&mut self, height_given_alone: bool, logs: &mut Vec<String>) {
        match self.mode {
            Mode::Synced => {
                if height_given_alone {
                    self.target = self.height;
                } else {
                    self.height = self.target;
                }
                self.frac = 0.0;
            }
            Mode::Syncing if self.height >= self.target => {
                self.height = self.target;
                self.mode = Mode::Synced;
                self.frac = 0.0;
                logs.push(format!("sync complete at height {}", self.height));
            }
            _ => {}
        }
    }

    /// Moves simulated time forward to `now`.
    pub fn advance(&mut self, now: Instant, logs: &mut Vec<String>) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        match self.mode {
            // Frozen: time passes, the height stays (and nothing is owed
            // when it thaws).
            Mode::Syncing | Mode::Synced if self.frozen => {}
            Mode::Synced => {
                let Some(every) = self.block_seconds else {
                    return;
                };
                self.block_frac += dt / every;
                let whole = self.block_frac.floor();
                self.block_frac -= whole;
                if whole >= 1.0 {
                    self.height = self.height.saturating_add(whole as u64);
                    self.target = self.height;
                }
            }
            Mode::Syncing => {
                self.frac += self.rate * dt;
                let whole = self.frac.floor();
                self.frac -= whole;
                let remaining = self.target.saturating_sub(self.height);
                if whole >= remaining as f64 {
                    self.height = self.target;
                } else {
                    self.height += whole as u64;
                }
                let b = bucket(self.mode, self.height, self.target);
                if b > self.bucket && self.height < self.target {
                    logs.push(format!(
                        "sync progress {}% (height {}/{})",
                        b * 10,
                        self.height,
                        self.target
                    ));
                }
                self.bucket = self.bucket.max(b);
                self.normalize(false, logs);
            }
            Mode::Starting if self.starting_until.is_some_and(|t| now >= t) => {
                self.starting_until = None;
                self.mode = Mode::Syncing;
                logs.push(format!(
                    "warm-up finished: mode starting -> syncing (height {}/{})",
                    self.height, self.target
                ));
                self.normalize(false, logs);
            }
            _ => {}
        }
    }

    /// Applies a control update at `now`. Returns log lines describing the
    /// change (empty when nothing changed).
    pub fn apply(&mut self, u: &Update, now: Instant) -> Vec<String> {
        let mut logs = Vec::new();
        self.advance(now, &mut logs);
        let before = self.view();
        if let Some(t) = u.target {
            self.target = t;
        }
        if let Some(h) = u.height {
            self.height = h;
            self.frac = 0.0;
        }
        if let Some(m) = u.mode {
            self.mode = m;
            self.starting_until = if m == Mode::Starting {
                self.starting_duration.map(|d| now + d)
            } else {
                None
            };
        }
        if let Some(r) = u.rate {
            self.rate = r;
        }
        if let Some(s) = u.sync_seconds {
            self.rate = self.target.saturating_sub(self.height) as f64 / s;
        }
        let (frozen_before, blocks_before) = (self.frozen, self.block_seconds);
        if let Some(f) = u.freeze {
            self.frozen = f;
        }
        if let Some(b) = u.block_seconds {
            self.block_seconds = b;
            self.block_frac = 0.0;
        }
        let height_alone = u.height.is_some() && u.target.is_none();
        let mut normalize_logs = Vec::new();
        self.normalize(height_alone, &mut normalize_logs);
        if u.height.is_some() || u.target.is_some() || u.mode.is_some() {
            self.bucket = bucket(self.mode, self.height, self.target);
        }
        let after = self.view();
        let mut changes = Vec::new();
        if before.mode != after.mode {
            changes.push(format!("mode {} -> {}", before.mode, after.mode));
        }
        if before.height != after.height {
            changes.push(format!("height {} -> {}", before.height, after.height));
        }
        if before.target != after.target {
            changes.push(format!("target {} -> {}", before.target, after.target));
        }
        if before.rate != after.rate {
            changes.push(format!("rate {} -> {} blocks/s", before.rate, after.rate));
        }
        if frozen_before != self.frozen {
            changes.push(if self.frozen {
                format!("height frozen at {}", after.height)
            } else {
                format!("height thawed at {}", after.height)
            });
        }
        if blocks_before != self.block_seconds {
            changes.push(match self.block_seconds {
                Some(s) => format!("a new block every {s}s while synced"),
                None => "no new blocks while synced".to_string(),
            });
        }
        if changes.is_empty() {
            changes.push(format!(
                "no change (mode {}, height {}/{})",
                after.mode, after.height, after.target
            ));
        }
        logs.push(format!("control: {}", changes.join(", ")));
        logs.extend(normalize_logs);
        logs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn synced_means_height_equals_target() {
        let now = t0();
        let s = Sim::new(Mode::Synced, 5, 100, 1.0, None, now);
        assert_eq!((s.height, s.target), (100, 100));
        assert_eq!(s.view().progress(), 1.0);
    }

    #[test]
    fn syncing_advances_and_becomes_synced() {
        let now = t0();
        let mut s = Sim::new(Mode::Syncing, 0, 100, 10.0, None, now);
        let mut logs = Vec::new();
        s.advance(now + Duration::from_millis(2500), &mut logs);
        assert_eq!(s.height, 25);
        assert_eq!(s.mode, Mode::Syncing);
        // Jumping two buckets logs only the bucket reached.
        assert_eq!(logs, vec!["sync progress 20% (height 25/100)".to_string()]);
        // Fractional blocks accumulate.
        s.advance(now + Duration::from_millis(2550), &mut logs);
        s.advance(now + Duration::from_millis(2600), &mut logs);
        assert_eq!(s.height, 26);
        // Step a second at a time: one line per 10% bucket, no repeats.
        for i in 1..=10 {
            s.advance(now + Duration::from_millis(2600 + i * 1000), &mut logs);
        }
        assert_eq!(s.mode, Mode::Synced);
        assert_eq!(s.height, 100);
        assert!(logs.iter().any(|l| l == "sync complete at height 100"));
        let progress_lines: Vec<_> = logs
            .iter()
            .filter(|l| l.starts_with("sync progress"))
            .collect();
        assert_eq!(progress_lines.len(), 8, "{logs:?}");
        assert_eq!(progress_lines[7], "sync progress 90% (height 96/100)");
    }

    #[test]
    fn syncing_at_or_past_target_is_synced() {
        let s = Sim::new(Mode::Syncing, 150, 100, 1.0, None, t0());
        assert_eq!((s.mode, s.height), (Mode::Synced, 100));
    }

    #[test]
    fn other_modes_freeze_height() {
        let now = t0();
        for mode in [Mode::Down, Mode::Busy, Mode::Starting] {
            let mut s = Sim::new(mode, 10, 100, 10.0, None, now);
            s.advance(now + Duration::from_secs(5), &mut Vec::new());
            assert_eq!(s.height, 10, "{mode}");
            assert_eq!(s.mode, mode);
        }
    }

    #[test]
    fn starting_moves_on_after_its_duration() {
        let now = t0();
        let mut s = Sim::new(
            Mode::Starting,
            10,
            100,
            0.0,
            Some(Duration::from_secs(2)),
            now,
        );
        s.advance(now + Duration::from_secs(1), &mut Vec::new());
        assert_eq!(s.mode, Mode::Starting);
        s.advance(now + Duration::from_secs(2), &mut Vec::new());
        assert_eq!(s.mode, Mode::Syncing);
        let mut s = Sim::new(
            Mode::Starting,
            100,
            100,
            0.0,
            Some(Duration::from_secs(1)),
            now,
        );
        s.advance(now + Duration::from_secs(1), &mut Vec::new());
        assert_eq!(s.mode, Mode::Synced);
    }

    #[test]
    fn apply_updates_and_describes_changes() {
        let now = t0();
        let mut s = Sim::new(Mode::Synced, 0, 100, 1.0, None, now);
        let u = ControlRequest {
            mode: Some("syncing".into()),
            height: Some(43),
            target: Some(100),
            rate: Some(0.0),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let logs = s.apply(&u, now);
        assert_eq!(s.view().mode, Mode::Syncing);
        assert_eq!(s.height, 43);
        assert_eq!(
            logs[0],
            "control: mode synced -> syncing, height 100 -> 43, rate 1 -> 0 blocks/s"
        );
        // Rate 0 stays put.
        s.advance(now + Duration::from_secs(10), &mut Vec::new());
        assert_eq!(s.height, 43);
        // sync_seconds derives the rate from the remaining distance.
        let u = ControlRequest {
            sync_seconds: Some(5.7),
            ..Default::default()
        }
        .validate()
        .unwrap();
        s.apply(&u, now + Duration::from_secs(10));
        assert!((s.rate - 10.0).abs() < 1e-9);
        // Synced with a height alone moves the target along.
        let u = ControlRequest {
            mode: Some("synced".into()),
            height: Some(500),
            ..Default::default()
        }
        .validate()
        .unwrap();
        s.apply(&u, now + Duration::from_secs(10));
        assert_eq!((s.mode, s.height, s.target), (Mode::Synced, 500, 500));
        // Synced alone jumps to the target.
        let mut s = Sim::new(Mode::Syncing, 1, 100, 0.0, None, now);
        let u = ControlRequest {
            mode: Some("synced".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        s.apply(&u, now);
        assert_eq!((s.height, s.target), (100, 100));
    }

    #[test]
    fn synced_makes_new_blocks_when_told_to() {
        let now = t0();
        // By default a synced node's tip stays where it is.
        let mut s = Sim::new(Mode::Synced, 0, 100, 1.0, None, now);
        s.advance(now + Duration::from_secs(60), &mut Vec::new());
        assert_eq!((s.height, s.target), (100, 100));
        // One block every 2 s: height and target advance together, and
        // fractions of a block accumulate.
        let mut s = Sim::new(Mode::Synced, 0, 100, 1.0, None, now).with_blocks(Some(2.0));
        s.advance(now + Duration::from_millis(1500), &mut Vec::new());
        assert_eq!(s.height, 100);
        s.advance(now + Duration::from_millis(2500), &mut Vec::new());
        assert_eq!((s.height, s.target, s.mode), (101, 101, Mode::Synced));
        s.advance(now + Duration::from_millis(10_000), &mut Vec::new());
        assert_eq!((s.height, s.target), (105, 105));
        assert_eq!(s.view().progress(), 1.0);
        // Other modes make no blocks.
        for mode in [Mode::Down, Mode::Busy, Mode::Starting] {
            let mut s = Sim::new(mode, 10, 100, 0.0, None, now).with_blocks(Some(1.0));
            s.advance(now + Duration::from_secs(5), &mut Vec::new());
            assert_eq!((s.height, s.target), (10, 100), "{mode}");
        }
    }

    #[test]
    fn freeze_stops_the_height_and_thawing_owes_nothing() {
        let now = t0();
        let at = |ms: u64| now + Duration::from_millis(ms);
        let req = |json: &str| {
            serde_json::from_str::<ControlRequest>(json)
                .unwrap()
                .validate()
                .unwrap()
        };
        // Synced with new blocks every second.
        let mut s = Sim::new(Mode::Synced, 0, 500, 1.0, None, now).with_blocks(Some(1.0));
        s.advance(at(3_000), &mut Vec::new());
        assert_eq!(s.height, 503);
        let logs = s.apply(&req(r#"{"freeze":true}"#), at(3_000));
        assert_eq!(logs, ["control: height frozen at 503"]);
        assert!(s.frozen);
        for ms in [4_000, 10_000, 60_000] {
            s.advance(at(ms), &mut Vec::new());
            assert_eq!((s.height, s.target), (503, 503), "{ms}");
        }
        // An explicit height still sets it, frozen or not.
        s.apply(&req(r#"{"height":600}"#), at(60_000));
        s.advance(at(70_000), &mut Vec::new());
        assert_eq!((s.height, s.target), (600, 600));
        // Thawed: blocks resume from now, none owed for the frozen time.
        let logs = s.apply(&req(r#"{"freeze":false}"#), at(70_000));
        assert_eq!(logs, ["control: height thawed at 600"]);
        s.advance(at(70_500), &mut Vec::new());
        assert_eq!(s.height, 600);
        s.advance(at(71_000), &mut Vec::new());
        assert_eq!(s.height, 601);

        // Syncing freezes too (and the mode stays syncing).
        let mut s = Sim::new(Mode::Syncing, 0, 100, 10.0, None, now);
        s.apply(&req(r#"{"freeze":true}"#), at(1_000));
        assert_eq!(s.height, 10);
        s.advance(at(20_000), &mut Vec::new());
        assert_eq!((s.height, s.mode), (10, Mode::Syncing));
        s.apply(&req(r#"{"freeze":false}"#), at(20_000));
        s.advance(at(21_000), &mut Vec::new());
        assert_eq!(s.height, 20);

        // Blocks turned on and off through the control port.
        let mut s = Sim::new(Mode::Synced, 0, 7, 1.0, None, now);
        let logs = s.apply(&req(r#"{"block_seconds":0.5}"#), now);
        assert_eq!(logs, ["control: a new block every 0.5s while synced"]);
        s.advance(at(1_000), &mut Vec::new());
        assert_eq!(s.height, 9);
        let logs = s.apply(&req(r#"{"block_seconds":0}"#), at(1_000));
        assert_eq!(logs, ["control: no new blocks while synced"]);
        s.advance(at(9_000), &mut Vec::new());
        assert_eq!(s.height, 9);
    }

    #[test]
    fn control_request_validation() {
        let ok = |json: &str| {
            serde_json::from_str::<ControlRequest>(json)
                .map_err(|e| e.to_string())
                .and_then(ControlRequest::validate)
        };
        assert_eq!(ok(r#"{"mode":"exit"}"#).unwrap().exit, Some(1));
        assert_eq!(ok(r#"{"mode":"exit","code":3}"#).unwrap().exit, Some(3));
        assert!(ok(r#"{"mode":"exit","code":256}"#).is_err());
        assert!(ok(r#"{"mode":"exit","code":-1}"#).is_err());
        assert!(ok(r#"{"code":3}"#).is_err());
        assert!(ok(r#"{"mode":"sleepy"}"#).is_err());
        assert!(ok(r#"{"rate":-1}"#).is_err());
        assert!(ok(r#"{"rate":1,"sync_seconds":2}"#).is_err());
        assert!(ok(r#"{"sync_seconds":0}"#).is_err());
        assert!(ok(r#"{"height":-5}"#).is_err());
        assert!(ok(r#"{"height":1.5}"#).is_err());
        assert!(ok(r#"{"hieght":1}"#).is_err());
        assert!(ok(r#"{"freeze":"yes"}"#).is_err());
        assert!(ok(r#"{"block_seconds":-1}"#).is_err());
        assert_eq!(ok(r#"{"freeze":true}"#).unwrap().freeze, Some(true));
        assert_eq!(
            ok(r#"{"block_seconds":2}"#).unwrap().block_seconds,
            Some(Some(2.0))
        );
        assert_eq!(
            ok(r#"{"block_seconds":0}"#).unwrap().block_seconds,
            Some(None)
        );
        assert_eq!(ok("{}").unwrap(), Update::default());
        for m in Mode::ALL {
            assert_eq!(ok(&format!(r#"{{"mode":"{m}"}}"#)).unwrap().mode, Some(m));
        }
    }
}
