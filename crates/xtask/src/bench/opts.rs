//! Command-line options of `xtask bench`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::tools::Engine;

pub const REPS_DEFAULT: usize = 3;
pub const TIMEOUT_S_DEFAULT: u64 = 300;
pub const IMAGE_DEFAULT: &str = "localhost/berth-demo:latest";
pub const OUT_DEFAULT: &str = "bench/RESULTS.md";
pub const BERTH_DEFAULT: &str = "target/release/berth";
/// Chain lengths of scenario 5 (berth's growth curve).
pub const SIZES_DEFAULT: [usize; 3] = [10, 20, 50];
/// Longest chain accepted: app ids are `s01`..`s99`, and bigger chains only
/// make the run longer without saying more about growth.
pub const APPS_MAX: usize = 99;

pub const HELP: &str = "\
usage: cargo run --release -p xtask -- bench [options]

Brings up equivalent chains of containers with berth, podman-compose and
docker-compose, side by side, and writes a Markdown report plus raw JSON.

options:
  --engines LIST     engines to measure: podman,docker (default both)
  --out PATH         Markdown report (default bench/RESULTS.md); the raw
                     numbers go to results.json in the same directory
  --reps N           repetitions per measurement (default 3)
  --timeout SECS     limit for every measured command (default 300)
  --scenarios LIST   which scenarios to run, e.g. 1,4,6 (default all;
                     1, 2 and 3 share one up/no-op/down cycle)
  --sizes LIST       chain lengths for scenario 5 (default 10,20,50)
  --image REF        image every service runs (default localhost/berth-demo:latest)
  --berth PATH       berth binary (default target/release/berth, built first
                     with `cargo build --release -p berth` unless --no-build)
  --no-build         do not build berth
  --render-only      measure nothing: rewrite the Markdown report from the
                     results.json beside it (after a change to the report)
";

#[derive(Debug, Clone, PartialEq)]
pub struct Opts {
    pub engines: Vec<Engine>,
    pub out: PathBuf,
    pub reps: usize,
    pub timeout: Duration,
    pub scenarios: Vec<u8>,
    pub sizes: Vec<usize>,
    pub image: String,
    pub berth: PathBuf,
    pub build: bool,
    pub render_only: bool,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            engines: vec![Engine::Podman, Engine::Docker],
            out: PathBuf::from(OUT_DEFAULT),
            reps: REPS_DEFAULT,
            timeout: Duration::from_secs(TIMEOUT_S_DEFAULT),
            scenarios: vec![1, 2, 3, 4, 5, 6],
            sizes: SIZES_DEFAULT.to_vec(),
            image: IMAGE_DEFAULT.to_string(),
            berth: PathBuf::from(BERTH_DEFAULT),
            build: true,
            render_only: false,
        }
    }
}

impl Opts {
    pub fn wants(&self, scenario: u8) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// Where the raw numbers go: `results.json` beside the Markdown report.
    pub fn json_path(&self) -> PathBuf {
        self.out.with_file_name("results.json")
    }
}

/// `Ok(None)` means help was asked for.
pub fn parse(args: &[String]) -> anyhow::Result<Option<Opts>> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (flag.as_str(), None),
        };
        if matches!(name, "-h" | "--help") {
            return Ok(None);
        }
        if name == "--no-build" {
            o.build = false;
            continue;
        }
        if name == "--render-only" {
            o.render_only = true;
            continue;
        }
        const WITH_VALUE: [&str; 7] = [
            "--engines",
            "--out",
            "--reps",
            "--timeout",
            "--scenarios",
            "--sizes",
            "--image",
        ];
        if !WITH_VALUE.contains(&name) && name != "--berth" {
            bail!("unknown option {name:?}\n\n{HELP}");
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))?,
        };
        match name {
            "--engines" => {
                o.engines = list(&value)?
                    .iter()
                    .map(|e| match e.as_str() {
                        "podman" => Ok(Engine::Podman),
                        "docker" => Ok(Engine::Docker),
                        other => bail!("unknown engine {other:?} (podman or docker)"),
                    })
                    .collect::<anyhow::Result<_>>()?;
                o.engines.dedup();
            }
            "--out" => o.out = PathBuf::from(value),
            "--reps" => o.reps = number(name, &value)?,
            "--timeout" => o.timeout = Duration::from_secs(number(name, &value)?),
            "--scenarios" => {
                o.scenarios = list(&value)?
                    .iter()
                    .map(|s| number(name, s))
                    .collect::<anyhow::Result<_>>()?;
                if let Some(bad) = o.scenarios.iter().find(|s| !(1..=6).contains(*s)) {
                    bail!("there is no scenario {bad} (1 to 6)");
                }
            }
            "--sizes" => {
                o.sizes = list(&value)?
                    .iter()
                    .map(|s| number(name, s))
                    .collect::<anyhow::Result<_>>()?;
                if let Some(bad) = o.sizes.iter().find(|s| !(1..=APPS_MAX).contains(*s)) {
                    bail!("chain length {bad} is out of range (1 to {APPS_MAX})");
                }
            }
            "--image" => o.image = value,
            "--berth" => {
                o.berth = PathBuf::from(value);
                o.build = false;
            }
            other => bail!("unknown option {other:?}\n\n{HELP}"),
        }
    }
    if o.engines.is_empty() {
        bail!("--engines is empty");
    }
    if o.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if o.timeout.is_zero() {
        bail!("--timeout must be at least 1 second");
    }
    Ok(Some(o))
}

fn list(value: &str) -> anyhow::Result<Vec<String>> {
    let items: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        bail!("empty list {value:?}");
    }
    Ok(items)
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> anyhow::Result<T> {
    value
        .parse()
        .ok()
        .with_context(|| format!("{name}: {value:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_cover_every_scenario_on_both_engines() {
        let o = parse(&[]).unwrap().unwrap();
        assert_eq!(o, Opts::default());
        assert_eq!(o.engines, vec![Engine::Podman, Engine::Docker]);
        assert_eq!(o.json_path(), PathBuf::from("bench/results.json"));
    }

    #[test]
    fn options_take_separate_or_inline_values() {
        let o = parse(&args("--engines docker --reps=5 --timeout 60 --out /tmp/x/R.md --scenarios 1,6 --sizes 10,20"))
            .unwrap()
            .unwrap();
        assert_eq!(o.engines, vec![Engine::Docker]);
        assert_eq!(o.reps, 5);
        assert_eq!(o.timeout, Duration::from_secs(60));
        assert_eq!(o.json_path(), PathBuf::from("/tmp/x/results.json"));
        assert_eq!(o.scenarios, vec![1, 6]);
        assert_eq!(o.sizes, vec![10, 20]);
        assert!(o.wants(6) && !o.wants(4));
    }

    #[test]
    fn a_given_berth_binary_is_not_rebuilt() {
        let o = parse(&args("--berth /usr/bin/berth")).unwrap().unwrap();
        assert!(!o.build);
    }

    #[test]
    fn bad_values_are_rejected() {
        for bad in [
            "--engines kubernetes",
            "--reps 0",
            "--reps x",
            "--scenarios 7",
            "--sizes 100",
            "--bogus 1",
            "--out",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn help_is_not_an_error() {
        assert_eq!(parse(&args("--help")).unwrap(), None);
    }
}
