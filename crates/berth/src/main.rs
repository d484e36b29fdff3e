//! `berth`: install, run, supervise and uninstall container stacks.
//!
//! Exit codes: 0 success; 1 an operation failed or something is degraded;
//! 2 usage or configuration error (bad flags, invalid manifest);
//! 3 the engine is unavailable; 4 another berth process holds the state
//! directory.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod context;
mod output;

pub use context::Failure;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The daemon logs what it decides at info by default (systemd keeps
    // stderr); commands stay quiet unless asked.
    let daemon = matches!(cli.command, cli::Command::Daemon { .. });
    output::init_tracing(cli.global.verbose, daemon);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    if std::env::var_os("BERTH_REPORT_CALLS").is_some() {
        eprintln!("engine-calls: {}", context::engine_calls());
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("berth: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
