//! Project automation. `cargo run --release -p xtask -- bench` measures berth
//! against podman-compose and docker-compose; see `bench/README.md`.

use std::process::ExitCode;

mod bench;
mod bench_api;
mod bench_daemon;

const USAGE: &str = "\
usage: cargo run --release -p xtask -- <command>

commands:
  bench    measure berth against podman-compose and docker-compose
           (`bench --help` lists its options)
  bench-api  measure the HTTP API: GET /api/state with 50 apps under wrk,
           SSE fan-out to 100 clients (writes bench/RESULTS.md's API section)
  bench-daemon  tick, start-up and idle costs of the daemon (bench/DAEMON.md)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench::main(&args[1..]),
        Some("bench-api") => bench_api::main(&args[1..]),
        Some("bench-daemon") => bench_daemon::main(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprint!("xtask: unknown command {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
