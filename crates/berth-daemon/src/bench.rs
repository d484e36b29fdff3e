//! Benchmark hooks for `cargo run --release -p xtask -- bench-daemon`.
//!
//! `ticks` drives the real supervision loop's reconcile tick
//! (`Supervisor::tick`, the same code the daemon runs on its timer) by
//! hand on a state directory whose stacks are already installed, and
//! reports each tick's wall time, engine calls and actions. Nothing here
//! is used by the daemon itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_ops::Ctx;
use tokio::sync::mpsc;

use crate::Clock;
use crate::config::Settings;
use crate::supervisor::{EVENTS_QUEUE_MAX, Supervisor};

/// One measured tick.
#[derive(Debug, Clone, Copy)]
pub struct TickSample {
    /// Wall time of `Supervisor::tick` (actions it dispatched run as
    /// tasks and are not included; a no-op tick dispatches none).
    pub duration: Duration,
    /// Of `duration`, the time the tick's container lists took (the
    /// engine's share, measured inside the tick).
    pub observe: Duration,
    /// Engine calls made during the tick (`Engine::call_count` delta).
    pub engine_calls: u64,
    /// Supervision actions the tick dispatched (0 for a no-op tick).
    pub actions: usize,
}

/// Run `warmup` unmeasured ticks (the first adopts what runs), then `n`
/// measured ones, each followed by waiting for any task it started.
/// Uses `berth_core::supervise::plan_tick`, as the daemon does.
pub async fn ticks(ctx: Arc<Ctx>, settings: Settings, warmup: usize, n: usize) -> Vec<TickSample> {
    let (tx, _rx) = mpsc::channel(EVENTS_QUEUE_MAX);
    let mut sup = Supervisor::new(
        ctx.clone(),
        settings,
        berth_core::supervise::plan_tick,
        tx,
        Clock::start(),
    );
    for _ in 0..warmup {
        sup.tick().await;
        sup.settle().await;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let calls = ctx.engine.call_count();
        let started = Instant::now();
        sup.tick().await;
        let duration = started.elapsed();
        let engine_calls = ctx.engine.call_count().saturating_sub(calls);
        let actions = sup.stats().last_tick_actions;
        let observe = Duration::from_micros(sup.stats().last_tick_observe_us.unwrap_or(0));
        sup.settle().await;
        out.push(TickSample {
            duration,
            observe,
            engine_calls,
            actions,
        });
    }
    out
}

/// The engine's share of a tick, measured alone: `n` rounds of exactly
/// the calls a tick observes with (one container list per installed
/// stack, `berth_ops::install::observe_stack`), with none of the tick's
/// own work. Comparing it with [`ticks`] splits a tick's wall time into
/// the engine's part and berth's part.
pub async fn lists(ctx: &Ctx, n: usize) -> berth_ops::Result<Vec<Duration>> {
    let stacks: Vec<String> = berth_ops::stackdb::installed_stacks(ctx)?
        .into_keys()
        .collect();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        for name in &stacks {
            berth_ops::install::observe_stack(ctx, name).await?;
        }
        out.push(started.elapsed());
    }
    Ok(out)
}
