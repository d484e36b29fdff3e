//! `berth-fake`: see `berth-fake --help`.

use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;

use berth_fake::cli::{self, Command};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

enum Stop {
    Signal(i32),
    Exit(i32),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cfg = match cli::parse(&args) {
        Ok(Command::Run(cfg)) => *cfg,
        Ok(Command::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("berth-fake {}", cli::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("berth-fake: {e}\nTry 'berth-fake --help'.");
            return ExitCode::from(2);
        }
    };

    // First thing: as PID 1 in a container SIGTERM is ignored unless a
    // handler is installed.
    let (tx, rx) = mpsc::channel();
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth-fake: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let sig_tx = tx.clone();
    thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = sig_tx.send(Stop::Signal(sig));
        }
    });

    let mut fake = match berth_fake::start(cfg) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("berth-fake: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(exit_rx) = fake.take_exit_receiver() {
        thread::spawn(move || {
            if let Ok(code) = exit_rx.recv() {
                let _ = tx.send(Stop::Exit(code));
            }
        });
    }
    let code = match rx.recv() {
        Ok(Stop::Signal(sig)) => {
            let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
            fake.persist();
            fake.log(&format!("received {name}, exiting 0"));
            0
        }
        Ok(Stop::Exit(code)) => {
            fake.log(&format!("exiting with code {code} (control request)"));
            code
        }
        Err(_) => 1,
    };
    // Exit without joining threads: connections may be mid-read.
    std::process::exit(code)
}
