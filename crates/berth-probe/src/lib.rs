//! Probe clients. Health checks are evaluated by berth itself (an HTTP
//! request, a TCP connect, or a command executed in the container through
//! the engine API) so they behave the same on Podman and Docker — Podman's
//! own health checks need systemd timers, which appliances often lack.
//!
//! Chain probes (`chain`) read a node's chain state — bitcoind's
//! `getblockchaininfo`, monerod's `get_info`, plain HTTP, TCP — for the
//! sync gate and node failover (`berth_core::gate`).
//!
//! `progress` reads the value of a progress check (a chain tip that must
//! advance): from the chain probe, an HTTP JSON answer or a command.

pub mod chain;
pub mod health;
pub mod http;
pub mod progress;
