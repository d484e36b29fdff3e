//! `xtask bench`: berth against podman-compose and docker-compose, side by
//! side in one run. See bench/README.md for what each scenario means.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

mod exec;
mod manifest;
mod opts;
mod report;
mod results;
mod stacks;
mod stats;
mod tools;

use results::{Config, Outcome, Results, Row, Rows, Sample};
use stacks::{Chain, Link};
use tools::{Deployment, Engine, Tool};

/// Limit for building berth and the images.
const BUILD_LIMIT: Duration = Duration::from_secs(1800);
/// Chain length of scenarios 1 to 4.
const CHAIN_APPS: usize = 10;

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let Some(mut opts) = opts::parse(args)? else {
        print!("{}", opts::HELP);
        return Ok(());
    };
    let root = workspace_root();
    opts.out = root.join(&opts.out);
    if opts.render_only {
        return render_only(&opts);
    }
    opts.berth = root.join(&opts.berth);
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;

    let work = std::env::temp_dir().join(format!("berth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let conf = work.join("containers.conf");
    std::fs::write(&conf, stacks::containers_conf())?;
    let env = tools::Env {
        berth: opts.berth.clone(),
        containers_conf: conf,
    };

    let mut bench = Bench::new(&opts, &env, &work)?;
    let outcome = bench.run_all();
    // Whatever happened, leave nothing behind.
    let daemons = tools::stop_berth_daemons(&work, &env.berth);
    if !daemons.is_empty() {
        say(format!(
            "stopped {} berth daemons left running",
            daemons.len()
        ));
    }
    for engine in &opts.engines {
        tools::sweep(*engine, &env.containers_conf, &work);
    }
    bench.results.manifest.load_end = manifest::loadavg();
    bench.write(outcome.is_ok())?;
    match &outcome {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&work);
        }
        Err(_) => eprintln!("bench: logs of the commands kept in {}", work.display()),
    }
    outcome?;
    eprintln!(
        "bench: wrote {} and {}",
        opts.out.display(),
        opts.json_path().display()
    );
    Ok(())
}

/// Rewrites the Markdown report from the results.json beside it.
fn render_only(opts: &opts::Opts) -> anyhow::Result<()> {
    let path = opts.json_path();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let results: Results = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a bench results file", path.display()))?;
    std::fs::write(&opts.out, report::render(&results))
        .with_context(|| format!("cannot write {}", opts.out.display()))?;
    say(format!(
        "rewrote {} from {}",
        opts.out.display(),
        path.display()
    ));
    Ok(())
}

fn workspace_root() -> PathBuf {
    // crates/xtask → the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn say(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

struct Bench<'a> {
    opts: &'a opts::Opts,
    env: &'a tools::Env,
    work: &'a Path,
    tools: Vec<Tool>,
    results: Results,
}

impl<'a> Bench<'a> {
    fn new(opts: &'a opts::Opts, env: &'a tools::Env, work: &'a Path) -> anyhow::Result<Bench<'a>> {
        let tools = Tool::for_engines(&opts.engines);
        let command = format!(
            "cargo run --release -p xtask -- bench {}",
            std::env::args().skip(2).collect::<Vec<_>>().join(" ")
        );
        let manifest = manifest::Manifest {
            date: String::new(),
            os: String::new(),
            kernel: String::new(),
            cpus: 0,
            load_start: String::new(),
            load_end: String::new(),
            podman: None,
            docker_client: None,
            docker_server: None,
            podman_compose: None,
            docker_compose: None,
            runc: None,
            berth_revision: String::new(),
            berth_version: None,
            image: opts.image.clone(),
            image_id_podman: None,
            image_id_docker: None,
        };
        let results = Results {
            manifest,
            config: Config {
                reps: opts.reps,
                timeout_s: opts.timeout.as_secs(),
                image: opts.image.clone(),
                tools: tools.clone(),
                scenarios: opts.scenarios.clone(),
                sizes: opts.sizes.clone(),
                command: command.trim_end().to_string(),
            },
            engine_calls_available: None,
            cold_up: Rows::default(),
            noop_up: Rows::default(),
            down: Rows::default(),
            healthy_up: Rows::default(),
            chain: Rows::default(),
            install_one: Rows::default(),
            log: Vec::new(),
            complete: false,
        };
        Ok(Bench {
            opts,
            env,
            work,
            tools,
            results,
        })
    }

    fn log(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        say(&msg);
        self.results.log.push(msg);
    }

    fn write(&mut self, complete: bool) -> anyhow::Result<()> {
        self.results.complete = complete;
        if let Some(dir) = self.opts.out.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(&self.results)?;
        std::fs::write(self.opts.json_path(), json + "\n")
            .with_context(|| format!("cannot write {}", self.opts.json_path().display()))?;
        std::fs::write(&self.opts.out, report::render(&self.results))
            .with_context(|| format!("cannot write {}", self.opts.out.display()))?;
        Ok(())
    }

    fn run_all(&mut self) -> anyhow::Result<()> {
        self.preflight()?;
        self.results.manifest = manifest::collect(
            &self.opts.engines,
            &self.opts.berth,
            &self.opts.image,
            &self.env.containers_conf,
            self.work,
        );
        self.warm_up()?;
        self.write(false)?;
        if [1, 2, 3].iter().any(|s| self.opts.wants(*s)) {
            self.scenario_cycle()?;
            self.write(false)?;
        }
        if self.opts.wants(4) {
            self.scenario_healthy()?;
            self.write(false)?;
        }
        if self.opts.wants(5) {
            self.scenario_chains()?;
            self.write(false)?;
        }
        if self.opts.wants(6) {
            self.scenario_calls()?;
        }
        Ok(())
    }

    // ----- preparation -------------------------------------------------

    fn preflight(&mut self) -> anyhow::Result<()> {
        if self.opts.build {
            say("building berth (cargo build --release -p berth)…");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let o = exec::run(
                Command::new(cargo).args(["build", "--release", "-p", "berth"]),
                BUILD_LIMIT,
                self.work,
                "build-berth",
            )?;
            if !o.ok() {
                bail!("cannot build berth: {}", o.failure_detail());
            }
        }
        if !self.opts.berth.is_file() {
            bail!(
                "no berth binary at {}: build it with `cargo build --release -p berth` or pass --berth",
                self.opts.berth.display()
            );
        }
        for engine in self.opts.engines.clone() {
            self.check_engine(engine)?;
        }
        for engine in self.opts.engines.clone() {
            let swept = tools::sweep(engine, &self.env.containers_conf, self.work);
            if !swept.is_empty() {
                self.log(format!(
                    "removed leftovers of an earlier run from {}: {swept:?}",
                    engine.cli()
                ));
            }
        }
        // The generated stacks must be valid for this berth, or every berth
        // figure below would be an error message.
        for link in [Link::Started, Link::Healthy] {
            let chain = Chain {
                name: "bnchvalidate",
                apps: CHAIN_APPS,
                link,
                image: &self.opts.image,
            };
            let file = self.work.join(format!("validate-{link:?}.toml"));
            std::fs::write(&file, stacks::berth_stack(&chain))?;
            let o = exec::run(
                Command::new(&self.opts.berth).arg("validate").arg(&file),
                Duration::from_secs(60),
                self.work,
                "validate",
            )?;
            if !o.ok() {
                bail!(
                    "berth rejects the generated {link:?} stack {}: {}",
                    file.display(),
                    o.failure_detail()
                );
            }
        }
        Ok(())
    }

    fn check_engine(&mut self, engine: Engine) -> anyhow::Result<()> {
        let conf = self.env.containers_conf.clone();
        let envs: [(&str, &Path); 1] = [("CONTAINERS_CONF", &conf)];
        let limit = Duration::from_secs(60);
        let (answers, hint) = match engine {
            Engine::Podman => (
                exec::output(
                    "podman",
                    &["info", "--format", "{{.Version.Version}}"],
                    &envs,
                    limit,
                    self.work,
                ),
                "is podman installed?",
            ),
            Engine::Docker => (
                exec::output(
                    "docker",
                    &["version", "--format", "{{.Server.Version}}"],
                    &[],
                    limit,
                    self.work,
                ),
                "the Docker daemon does not answer on /var/run/docker.sock: start it (`bash scripts/setup.sh`) \
                 or pass --engines podman",
            ),
        };
        if answers.is_none() {
            bail!("{} does not work: {hint}", engine.cli());
        }
        let (compose, args): (&str, &[&str]) = match engine {
            Engine::Podman => ("podman-compose", &["version"]),
            Engine::Docker => ("docker-compose", &["version", "--short"]),
        };
        if exec::output(compose, args, &[], limit, self.work).is_none() {
            bail!("{compose} does not run: install the Debian package `{compose}`");
        }
        if !self.image_present(engine) {
            let script = Path::new("scripts/build-images.sh");
            if !script.is_file() {
                bail!(
                    "{} has no image {} and there is no {} to build it",
                    engine.cli(),
                    self.opts.image,
                    script.display()
                );
            }
            self.log(format!(
                "{} has no image {}: running scripts/build-images.sh all",
                engine.cli(),
                self.opts.image
            ));
            let o = exec::run(
                Command::new("bash").args(["scripts/build-images.sh", "all"]),
                BUILD_LIMIT,
                self.work,
                "build-images",
            )?;
            if !o.ok() || !self.image_present(engine) {
                bail!(
                    "scripts/build-images.sh all did not give {} the image {}: {}",
                    engine.cli(),
                    self.opts.image,
                    o.failure_detail()
                );
            }
        }
        Ok(())
    }

    fn image_present(&self, engine: Engine) -> bool {
        let conf = self.env.containers_conf.clone();
        let envs: [(&str, &Path); 1] = [("CONTAINERS_CONF", &conf)];
        let args: &[&str] = match engine {
            Engine::Podman => &["image", "exists", &self.opts.image],
            Engine::Docker => &["image", "inspect", "--format", "{{.Id}}", &self.opts.image],
        };
        exec::output(
            engine.cli(),
            args,
            &envs,
            Duration::from_secs(60),
            self.work,
        )
        .is_some()
    }

    /// One unmeasured up/down of a 2-app chain per tool: loads every binary
    /// into the page cache and lets berth start its Podman API service, which
    /// it keeps running afterwards (as dockerd runs for Docker).
    fn warm_up(&mut self) -> anyhow::Result<()> {
        let dir = self.work.join("warmup");
        for tool in self.tools.clone() {
            let name = tools::project_name(tool, "warm", 2, 0);
            let chain = Chain {
                name: &name,
                apps: 2,
                link: Link::Started,
                image: &self.opts.image,
            };
            let d = Deployment::create(self.env, tool, &chain, &dir)?;
            let up = exec::run(&mut d.up(), self.opts.timeout, &d.dir, "up")?;
            let down = exec::run(&mut d.down(), self.opts.timeout, &d.dir, "down")?;
            self.finish(&d);
            let status = if up.ok() && down.ok() {
                "ok".to_string()
            } else {
                format!(
                    "up: {}; down: {}",
                    if up.ok() {
                        "ok".into()
                    } else {
                        up.failure_detail()
                    },
                    if down.ok() {
                        "ok".into()
                    } else {
                        down.failure_detail()
                    }
                )
            };
            if tool.is_berth() && self.results.engine_calls_available != Some(true) && up.ok() {
                self.results.engine_calls_available =
                    Some(tools::engine_calls(&up.stderr).is_some());
            }
            self.log(format!(
                "warm-up (unmeasured) {}: up of 2 apps {}, down {}: {status}",
                tool.label(),
                report::fmt_secs(up.secs),
                report::fmt_secs(down.secs)
            ));
        }
        Ok(())
    }

    // ----- measuring ---------------------------------------------------

    /// Runs `cmd` of deployment `d` and makes a sample of it, counting it as
    /// successful only when `expect` containers of `d` exist afterwards
    /// (running ones, or any state with `all`).
    fn measure(
        &self,
        d: &Deployment,
        mut cmd: Command,
        label: &str,
        rep: usize,
        expect: usize,
    ) -> anyhow::Result<Sample> {
        let load = manifest::loadavg();
        let o = exec::run(&mut cmd, self.opts.timeout, &d.dir, label)?;
        if o.status == exec::Status::Timeout {
            d.timed_out.set(true);
        }
        let calls = if d.tool.is_berth() {
            tools::engine_calls(&o.stderr)
        } else {
            None
        };
        let after = if expect == 0 {
            d.present()
        } else {
            d.running()
        };
        let (outcome, detail) = match (&o.status, after) {
            (exec::Status::Timeout, _) => {
                let started = match after {
                    Some(n) => format!(
                        "; {n} of the {} containers running when it was killed",
                        d.apps
                    ),
                    None => String::new(),
                };
                (
                    Outcome::Timeout,
                    Some(format!("timeout after {:.0} s{started}", o.secs)),
                )
            }
            _ if !o.ok() => (Outcome::Failed, Some(o.failure_detail())),
            (_, Some(n)) if n != expect => (
                Outcome::Failed,
                Some(format!(
                    "exit 0, but {n} of the {} containers {} afterwards",
                    d.apps,
                    if expect == 0 { "remain" } else { "run" }
                )),
            ),
            (_, None) => (
                Outcome::Failed,
                Some("exit 0, but the engine could not be asked what runs".to_string()),
            ),
            _ => (Outcome::Ok, None),
        };
        say(format!(
            "  {:<15} {label:<8} {:>3} apps run {rep}: {} {}",
            d.tool.label(),
            d.apps,
            report::fmt_secs(o.secs),
            match outcome {
                Outcome::Ok => String::new(),
                _ => detail
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect(),
            }
        ));
        Ok(Sample {
            rep,
            outcome,
            secs: o.secs,
            detail,
            containers_after: after,
            engine_calls: calls,
            load,
        })
    }

    /// Removes deployment `d` without measuring (with its tool's own `down`,
    /// unless something of it timed out), stops its berth daemon and sweeps
    /// its engine.
    fn remove(&self, d: &Deployment) -> anyhow::Result<()> {
        if !d.timed_out.get() {
            let _ = exec::run(&mut d.down(), self.opts.timeout, &d.dir, "down-cleanup")?;
        }
        self.finish(d);
        Ok(())
    }

    /// Stops the berth daemon of `d` and sweeps its engine.
    fn finish(&self, d: &Deployment) -> tools::Swept {
        if d.tool.is_berth() {
            tools::stop_berth_daemons(&d.dir, &self.opts.berth);
        }
        tools::sweep(d.tool.engine(), &self.env.containers_conf, self.work)
    }

    /// Scenarios 1–3: cold up, no-op up, down of the 10-app chain, with
    /// the tools interleaved within each repetition.
    fn scenario_cycle(&mut self) -> anyhow::Result<()> {
        say("scenarios 1-3: cold up, no-op up, down of a 10-app chain");
        let (noop, down) = (self.opts.wants(2), self.opts.wants(3));
        // The floors (N sequential `run -d`) only give scenario 1 a reference.
        let floors = if self.opts.wants(1) {
            Tool::floors_for(&self.opts.engines)
        } else {
            Vec::new()
        };
        let all: Vec<Tool> = self.tools.iter().copied().chain(floors).collect();
        for rep in 1..=self.opts.reps {
            for tool in all.clone() {
                if self
                    .results
                    .cold_up
                    .get(tool, CHAIN_APPS)
                    .is_some_and(Row::timed_out)
                {
                    continue;
                }
                let (noop, down) = if tool.is_floor() {
                    (false, false)
                } else {
                    (noop, down)
                };
                self.cycle(tool, rep, noop, down)?;
            }
        }
        for tool in all {
            if let Some(row) = self.results.cold_up.get(tool, CHAIN_APPS)
                && row.timed_out()
                && row.samples.len() < self.opts.reps
            {
                self.results
                    .cold_up
                    .row(tool, CHAIN_APPS)
                    .note("timed out, so not repeated");
            }
        }
        Ok(())
    }

    /// One repetition of scenarios 1-3 for `tool`: a measured cold `up`,
    /// then (when it worked) a measured no-op `up` and `down` as asked.
    fn cycle(&mut self, tool: Tool, rep: usize, noop: bool, down: bool) -> anyhow::Result<()> {
        let name = tools::project_name(tool, "cold", CHAIN_APPS, rep);
        let chain = Chain {
            name: &name,
            apps: CHAIN_APPS,
            link: Link::Started,
            image: &self.opts.image,
        };
        let d = Deployment::create(self.env, tool, &chain, &self.work.join("cycle"))?;
        let up = self.measure(&d, d.up(), "up", rep, CHAIN_APPS)?;
        let up_ok = up.outcome == Outcome::Ok;
        self.results.cold_up.row(tool, CHAIN_APPS).push(up);
        if !up_ok {
            return self.remove(&d);
        }
        if noop {
            let s = self.measure(&d, d.up(), "no-op up", rep, CHAIN_APPS)?;
            self.results.noop_up.row(tool, CHAIN_APPS).push(s);
        }
        if down {
            let s = self.measure(&d, d.down(), "down", rep, 0)?;
            let measured_ok = s.outcome == Outcome::Ok;
            self.results.down.row(tool, CHAIN_APPS).push(s);
            let left = self.finish(&d);
            if measured_ok && !left.is_empty() {
                let what = [
                    ("containers", &left.containers),
                    ("networks", &left.networks),
                    ("volumes", &left.volumes),
                ]
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| {
                    let kind = if v.len() == 1 {
                        k.trim_end_matches('s')
                    } else {
                        k
                    };
                    format!("{} {kind}", v.len())
                })
                .collect::<Vec<_>>()
                .join(", ");
                self.results.down.row(tool, CHAIN_APPS).note(format!(
                    "`down` leaves {what} behind (removed by the sweep)"
                ));
            }
        } else {
            self.remove(&d)?;
        }
        Ok(())
    }

    /// Scenario 4: the healthy chain.
    fn scenario_healthy(&mut self) -> anyhow::Result<()> {
        say("scenario 4: cold up of a 10-app healthy chain");
        for rep in 1..=self.opts.reps {
            for tool in self.tools.clone() {
                if self
                    .results
                    .healthy_up
                    .get(tool, CHAIN_APPS)
                    .is_some_and(Row::timed_out)
                {
                    continue;
                }
                let name = tools::project_name(tool, "hl", CHAIN_APPS, rep);
                let chain = Chain {
                    name: &name,
                    apps: CHAIN_APPS,
                    link: Link::Healthy,
                    image: &self.opts.image,
                };
                let d = Deployment::create(self.env, tool, &chain, &self.work.join("healthy"))?;
                let s = self.measure(&d, d.up(), "up", rep, CHAIN_APPS)?;
                self.results.healthy_up.row(tool, CHAIN_APPS).push(s);
                self.remove(&d)?;
            }
        }
        if let Some(row) = self
            .results
            .healthy_up
            .0
            .iter_mut()
            .find(|r| r.tool == Tool::PodmanCompose)
        {
            row.note("ignores `condition: service_healthy`: not a healthy chain");
        }
        Ok(())
    }

    /// Scenario 5: longer chains; berth at every length, the peers at the
    /// longest. The 10-app point comes from scenario 1 when it ran.
    fn scenario_chains(&mut self) -> anyhow::Result<()> {
        let mut sizes = self.opts.sizes.clone();
        sizes.sort_unstable();
        sizes.dedup();
        let longest = *sizes.last().expect("sizes is never empty");
        say(format!("scenario 5: chains of {sizes:?} apps"));
        for apps in sizes {
            let have_cold = !self.results.cold_up.0.is_empty();
            for rep in 1..=self.opts.reps {
                for tool in self.tools.clone() {
                    if apps == CHAIN_APPS && have_cold {
                        continue;
                    }
                    if !tool.is_berth() && apps != longest {
                        continue;
                    }
                    if self
                        .results
                        .chain
                        .get(tool, apps)
                        .is_some_and(Row::timed_out)
                    {
                        continue;
                    }
                    let name = tools::project_name(tool, "ch", apps, rep);
                    let chain = Chain {
                        name: &name,
                        apps,
                        link: Link::Started,
                        image: &self.opts.image,
                    };
                    let d = Deployment::create(self.env, tool, &chain, &self.work.join("chain"))?;
                    let s = self.measure(&d, d.up(), "up", rep, apps)?;
                    self.results.chain.row(tool, apps).push(s);
                    self.remove(&d)?;
                }
            }
        }
        for row in self.results.chain.0.iter_mut() {
            if row.timed_out() && row.samples.len() < self.opts.reps {
                row.note("timed out, so not repeated");
            }
        }
        Ok(())
    }

    /// Scenario 6: engine API calls of a single-app install.
    fn scenario_calls(&mut self) -> anyhow::Result<()> {
        say("scenario 6: engine API calls of a single-app install");
        for rep in 1..=self.opts.reps {
            for tool in self.tools.clone().into_iter().filter(|t| t.is_berth()) {
                let name = tools::project_name(tool, "one", 1, rep);
                let chain = Chain {
                    name: &name,
                    apps: 1,
                    link: Link::Started,
                    image: &self.opts.image,
                };
                let d = Deployment::create(self.env, tool, &chain, &self.work.join("calls"))?;
                let s = self.measure(&d, d.install_first(), "install", rep, 1)?;
                if s.outcome == Outcome::Ok {
                    let available = s.engine_calls.is_some();
                    if self.results.engine_calls_available != Some(true) {
                        self.results.engine_calls_available = Some(available);
                    }
                }
                self.results.install_one.row(tool, 1).push(s);
                self.remove(&d)?;
            }
        }
        Ok(())
    }
}
