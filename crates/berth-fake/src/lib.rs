//! Controllable fake node daemons for berth's demo stack and tests.
//!
//! One binary (`berth-fake`) with four personalities — `bitcoind`,
//! `monerod`, `http`, `tcp` — each with a control port that switches its
//! mode (synced, syncing, down, busy, starting), height and target, or makes
//! it exit (crash injection). The same daemons can run in-process through
//! [`start`], which is handy for contract tests:
//!
//! ```no_run
//! use berth_fake::{App, Config, ControlRequest};
//! let fake = berth_fake::start(Config::for_test(App::Bitcoind)).unwrap();
//! let rpc = fake.listen_addr();
//! fake.control(ControlRequest { mode: Some("syncing".into()), height: Some(430),
//!     target: Some(1000), rate: Some(0.0), ..Default::default() }).unwrap();
//! # let _ = rpc;
//! ```
//!
//! The HTTP server is hand-written on std (no async runtime) so the static
//! build stays small.

// serde_json's json! macro for monerod's 43-field get_info.
#![recursion_limit = "256"]

pub mod bitcoind;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod http;
pub mod monerod;
pub mod sim;
pub mod tcp;
pub mod web;

pub use cli::{App, Command, Config};
pub use daemon::{Fake, start};
pub use sim::{ControlRequest, Mode, View};

/// A deterministic, hash-looking 64-hex-digit string for a block height
/// (8 leading zeros, like a real proof-of-work hash).
pub fn fake_hash(height: u64) -> String {
    let mut x = height ^ 0x6a09_e667_f3bc_c908;
    let mut out = String::from("00000000");
    for _ in 0..4 {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.push_str(&format!("{z:016x}"));
    }
    out.truncate(64);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn fake_hash_is_stable_and_distinct() {
        let a = super::fake_hash(1);
        assert_eq!(a.len(), 64);
        assert!(a.starts_with("00000000"));
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, super::fake_hash(1));
        assert_ne!(a, super::fake_hash(2));
    }
}
