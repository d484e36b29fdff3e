//! berth's functional core. Everything here is a pure function of its
//! inputs: no IO, no async runtime, no clock (`now` is always a parameter).
//! The daemon and CLI execute what these functions decide.

pub mod classify;
pub mod duration;
pub mod gate;
pub mod graph;
pub mod manifest;
pub mod model;
pub mod naming;
pub mod observed;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod spec;
pub mod supervise;
pub mod text;
pub mod update;
pub mod validate;
