//! Terminal output: progress while operations run, tables for reads.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use berth_ops::{Progress, Reporter};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub fn init_tracing(verbose: u8, daemon: bool) {
    let default = match verbose {
        0 if daemon => "info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Plain text when stderr is a file (daemon.log, the journal).
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Renders progress with one spinner per app on a terminal, or one line
/// per step otherwise (logs, CI).
pub struct TermReporter {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl TermReporter {
    pub fn new() -> TermReporter {
        let tty = std::io::stderr().is_terminal();
        TermReporter {
            multi: tty.then(MultiProgress::new),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, app: &str) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let mut bars = self.bars.lock().expect("progress bars lock");
        Some(
            bars.entry(app.to_string())
                .or_insert_with(|| {
                    let pb = multi.add(ProgressBar::new_spinner());
                    pb.set_style(
                        ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {wide_msg}")
                            .expect("static template"),
                    );
                    pb.set_prefix(app.to_string());
                    pb.enable_steady_tick(Duration::from_millis(120));
                    pb
                })
                .clone(),
        )
    }
}

impl Reporter for TermReporter {
    fn report(&self, p: Progress) {
        match p {
            Progress::Step { app, step } => match self.bar(&app) {
                Some(pb) => pb.set_message(step),
                None => eprintln!("  {app}: {step}"),
            },
            Progress::Pull { app, progress } => {
                if let Some(pb) = self.bar(&app) {
                    let amount = match (progress.current, progress.total) {
                        (Some(c), Some(t)) if t > 0 => {
                            format!(" {:.0}%", c as f64 * 100.0 / t as f64)
                        }
                        _ => String::new(),
                    };
                    pb.set_message(format!("pull: {}{amount}", progress.status));
                }
            }
            Progress::Done { app, message } => match self.bar(&app) {
                Some(pb) => pb.finish_with_message(format!("✓ {message}")),
                None => eprintln!("✓ {app}: {message}"),
            },
            Progress::Failed { app, message } => {
                let first = message.lines().next().unwrap_or("").to_string();
                match self.bar(&app) {
                    Some(pb) => pb.abandon_with_message(format!("✗ {first}")),
                    None => eprintln!("✗ {app}: {first}"),
                }
            }
            Progress::Note { message } => match &self.multi {
                Some(m) => {
                    let _ = m.println(message);
                }
                None => eprintln!("{message}"),
            },
        }
    }
}

/// Write one line of a command's output to stdout. A reader that went away
/// (`berth events | head`) ends the command quietly, as it would end `cat`:
/// the output was not wanted any more, which is not berth's failure.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("berth: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// `println!` for command output, through `write_line`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}

pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    crate::outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
