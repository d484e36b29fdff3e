//! Generators of the equivalent stacks: a berth stack file, a compose file
//! (read by both docker-compose and podman-compose) and the containers.conf
//! podman-compose needs on these machines.

/// What every service runs: a shell that exits at once on SIGTERM, so stop
/// times measure the tools and not a grace period.
pub const SERVICE_COMMAND: [&str; 3] = ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"];
/// Health check of the healthy chain, the same on every tool.
pub const HEALTH_COMMAND: [&str; 3] = ["sh", "-c", "true"];
pub const HEALTH_INTERVAL: &str = "1s";
pub const HEALTH_TIMEOUT: &str = "1s";
pub const HEALTH_RETRIES: u32 = 3;
pub const STOP_GRACE: &str = "10s";
/// berth's `max_parallel` for the bench stacks.
pub const MAX_PARALLEL: u32 = 4;

/// How each link of the chain waits for the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// Start once the previous service has started.
    Started,
    /// Start once the previous service reports healthy (every service has a
    /// health check).
    Healthy,
}

/// A chain of `apps` services where service k depends on service k-1.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a> {
    /// berth stack name / compose project name.
    pub name: &'a str,
    pub apps: usize,
    pub link: Link,
    pub image: &'a str,
}

/// Service ids `s01`, `s02`, …: sorted order is chain order.
pub fn app_id(k: usize) -> String {
    format!("s{k:02}")
}

/// A string literal valid in TOML (basic string) and YAML (double-quoted
/// scalar) alike: JSON's escapes are a subset of both.
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn quoted_list(items: &[&str]) -> String {
    let parts: Vec<String> = items.iter().map(|s| quoted(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// The berth stack file (TOML) of `chain`.
pub fn berth_stack(chain: &Chain) -> String {
    // `settle = "0s"`: like the compose tools it is compared with, count a
    // service started once its container runs (berth's default also watches
    // an app without a health check for 500 ms after its start, per tier).
    let mut s = format!(
        "[stack]\nname = {}\nmax_parallel = {MAX_PARALLEL}\nsettle = \"0s\"\n",
        quoted(chain.name)
    );
    for k in 1..=chain.apps {
        let id = app_id(k);
        s.push_str(&format!(
            "\n[apps.{id}]\nimage = {}\ncommand = {}\nstop_grace = {}\n",
            quoted(chain.image),
            quoted_list(&SERVICE_COMMAND),
            quoted(STOP_GRACE),
        ));
        if k > 1 {
            let condition = match chain.link {
                Link::Started => "started",
                Link::Healthy => "healthy",
            };
            s.push_str(&format!(
                "depends_on = {{ {} = \"{condition}\" }}\n",
                app_id(k - 1)
            ));
        }
        if chain.link == Link::Healthy {
            s.push_str(&format!(
                "\n[apps.{id}.health]\ncommand = {}\ninterval = {}\ntimeout = {}\nretries = {HEALTH_RETRIES}\n",
                quoted_list(&HEALTH_COMMAND),
                quoted(HEALTH_INTERVAL),
                quoted(HEALTH_TIMEOUT),
            ));
        }
    }
    s
}

/// The compose file (format 2.4, the last one where docker-compose 1.x
/// honours `depends_on: condition:`) of `chain`.
pub fn compose_file(chain: &Chain) -> String {
    let mut s = String::from("version: \"2.4\"\nservices:\n");
    for k in 1..=chain.apps {
        s.push_str(&format!(
            "  {}:\n    image: {}\n    command: {}\n    stop_grace_period: {STOP_GRACE}\n",
            app_id(k),
            quoted(chain.image),
            quoted_list(&SERVICE_COMMAND),
        ));
        if chain.link == Link::Healthy {
            let mut test = vec!["CMD"];
            test.extend(HEALTH_COMMAND);
            s.push_str(&format!(
                "    healthcheck:\n      test: {}\n      interval: {HEALTH_INTERVAL}\n      timeout: {HEALTH_TIMEOUT}\n      retries: {HEALTH_RETRIES}\n",
                quoted_list(&test),
            ));
        }
        if k > 1 {
            let condition = match chain.link {
                Link::Started => "service_started",
                Link::Healthy => "service_healthy",
            };
            s.push_str(&format!(
                "    depends_on:\n      {}:\n        condition: {condition}\n",
                app_id(k - 1)
            ));
        }
    }
    s
}

/// `s` quoted for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A shell script running the chain's containers one after the other with
/// `CLI run -d` (CLI is podman or docker), named like berth names them: the
/// floor an orchestrator driving the engine's CLI could reach.
pub fn run_script(cli: &str, chain: &Chain) -> String {
    let command: Vec<String> = SERVICE_COMMAND.iter().map(|a| sh_quote(a)).collect();
    let mut s = String::from("set -e\n");
    for k in 1..=chain.apps {
        s.push_str(&format!(
            "{cli} run -d --name {}-{} {} {} >/dev/null\n",
            chain.name,
            app_id(k),
            sh_quote(chain.image),
            command.join(" ")
        ));
    }
    s
}

/// containers.conf for the podman CLI that podman-compose drives: these VMs
/// have hybrid cgroups, where the default runtime (crun) and the default
/// ulimits fail (see shared/design/environment.md). Passed through
/// `CONTAINERS_CONF`, so nothing under /etc is edited. berth detects the same
/// situation itself and needs none of this.
pub fn containers_conf() -> String {
    "[containers]\n\
     default_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
     \n\
     [engine]\n\
     runtime = \"runc\"\n\
     cgroup_manager = \"cgroupfs\"\n"
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &str = "localhost/berth-demo:latest";

    fn chain(apps: usize, link: Link) -> Chain<'static> {
        Chain {
            name: "bnchbp1",
            apps,
            link,
            image: IMAGE,
        }
    }

    #[test]
    fn app_ids_sort_in_chain_order() {
        let ids: Vec<String> = (1..=12).map(app_id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert_eq!(app_id(1), "s01");
        assert_eq!(app_id(50), "s50");
    }

    #[test]
    fn berth_stack_of_a_started_chain() {
        let expected = r#"[stack]
name = "bnchbp1"
max_parallel = 4
settle = "0s"

[apps.s01]
image = "localhost/berth-demo:latest"
command = ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
stop_grace = "10s"

[apps.s02]
image = "localhost/berth-demo:latest"
command = ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
stop_grace = "10s"
depends_on = { s01 = "started" }
"#;
        assert_eq!(berth_stack(&chain(2, Link::Started)), expected);
    }

    #[test]
    fn berth_stack_of_a_healthy_chain_gives_every_app_a_check() {
        let text = berth_stack(&chain(10, Link::Healthy));
        assert_eq!(
            text.matches("[apps.s").count(),
            20,
            "10 apps and 10 health tables"
        );
        assert_eq!(
            text.matches("command = [\"sh\", \"-c\", \"true\"]").count(),
            10
        );
        assert_eq!(text.matches("= \"healthy\" }").count(), 9);
        assert!(text.contains("[apps.s10]\n"));
        assert!(text.contains("depends_on = { s09 = \"healthy\" }\n"));
        assert!(text.contains("[apps.s10.health]\ncommand = [\"sh\", \"-c\", \"true\"]\ninterval = \"1s\"\ntimeout = \"1s\"\nretries = 3\n"));
        assert!(!text.contains("[apps.s11]"));
    }

    #[test]
    fn compose_file_of_a_started_chain() {
        let expected = r#"version: "2.4"
services:
  s01:
    image: "localhost/berth-demo:latest"
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
    stop_grace_period: 10s
  s02:
    image: "localhost/berth-demo:latest"
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
    stop_grace_period: 10s
    depends_on:
      s01:
        condition: service_started
"#;
        assert_eq!(compose_file(&chain(2, Link::Started)), expected);
    }

    #[test]
    fn compose_file_of_a_healthy_chain() {
        let text = compose_file(&chain(3, Link::Healthy));
        assert_eq!(text.matches("    healthcheck:\n      test: [\"CMD\", \"sh\", \"-c\", \"true\"]\n      interval: 1s\n").count(), 3);
        assert_eq!(text.matches("condition: service_healthy").count(), 2);
        assert!(text.contains("  s03:\n"));
        assert!(text.contains("      s02:\n        condition: service_healthy\n"));
    }

    #[test]
    fn quoting_escapes_what_toml_and_yaml_need() {
        assert_eq!(quoted("a \"b\" \\ c"), r#""a \"b\" \\ c""#);
        assert_eq!(quoted("trap 'exit 0' TERM"), r#""trap 'exit 0' TERM""#);
    }

    #[test]
    fn run_script_starts_each_service_in_order() {
        let text = run_script("podman", &chain(2, Link::Started));
        let line = |k: &str| {
            format!(
                "podman run -d --name bnchbp1-{k} 'localhost/berth-demo:latest' 'sh' '-c' \
                 'trap '\\''exit 0'\\'' TERM; sleep 100000 & wait' >/dev/null\n"
            )
        };
        assert_eq!(text, format!("set -e\n{}{}", line("s01"), line("s02")));
    }

    #[test]
    fn sh_quote_survives_single_quotes() {
        assert_eq!(sh_quote("a'b"), "'a'\\''b'");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", sh_quote("it's $HOME")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's $HOME");
    }

    #[test]
    fn containers_conf_selects_runc_and_cgroupfs() {
        let conf = containers_conf();
        assert!(conf.contains("runtime = \"runc\"\n"));
        assert!(conf.contains("cgroup_manager = \"cgroupfs\"\n"));
        assert!(conf.contains("nofile=20000:20000"));
    }
}
