//! Tier 1 of the compose importer: the node-store fixtures as snapshots
//! (stack file and report), mapping and refusal tables, and the
//! differential test against Debian's `docker-compose config`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_compose::{Errors, Import, NoteKind, Options};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Reads files under a fixture directory; other paths do not exist.
fn reader(dir: &Path) -> impl Fn(&str) -> Result<Option<String>, String> + '_ {
    move |path: &str| {
        let p = Path::new(path);
        if !p.starts_with(dir) {
            return Ok(None);
        }
        match std::fs::read_to_string(p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn fixture_files(dir: &Path, files: &[&str]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|f| {
            let p = dir.join(f);
            let text = std::fs::read_to_string(&p).expect("fixture");
            (p.display().to_string(), text)
        })
        .collect()
}

fn import_fixture(name: &str, files: &[&str], opts: Options) -> Result<Import, Errors> {
    let dir = fixtures().join(name).canonicalize().expect("fixture dir");
    let opts = Options {
        project_dir: dir.display().to_string(),
        ..opts
    };
    let files = fixture_files(&dir, files);
    berth_compose::import(&files, &BTreeMap::new(), &opts, &reader(&dir))
}

/// The stack file and the report, with the machine's fixture path cut.
fn rendered(import: &Import) -> String {
    let root = fixtures()
        .canonicalize()
        .expect("fixtures")
        .display()
        .to_string();
    let mut out = import.stack_toml.clone();
    out.push_str("\n# report\n");
    for n in &import.notes {
        out.push_str(&format!("{n}\n"));
    }
    out.replace(&root, "<fixtures>")
}

const STACKS: &[(&str, &[&str])] = &[
    ("bitcoin", &["docker-compose.yml"]),
    ("electrs", &["docker-compose.yml"]),
    ("mempool", &["docker-compose.yml"]),
    (
        "btcpay",
        &["docker-compose.yml", "docker-compose.override.yml"],
    ),
    ("monero", &["docker-compose.yml"]),
    ("differential", &["a.yml", "b.yml"]),
];

#[test]
fn node_store_stacks_import_to_valid_stack_files() {
    for (name, files) in STACKS {
        let import = import_fixture(name, files, Options::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        berth_core::manifest::parse_stack("imported.toml", &import.stack_toml, &|_| {
            Err("no includes".into())
        })
        .unwrap_or_else(|d| panic!("{name}: {d}\n{}", import.stack_toml));
        insta::assert_snapshot!(*name, rendered(&import));
    }
}

#[test]
fn secrets_are_never_inlined() {
    let import = import_fixture("bitcoin", &["docker-compose.yml"], Options::default()).unwrap();
    assert!(
        !import.stack_toml.contains("not-copied"),
        "{}",
        import.stack_toml
    );
    assert!(
        import
            .stack_toml
            .contains("secrets = [\"btc-rpc-password\"]")
    );
    let import = import_fixture("differential", &["a.yml", "b.yml"], Options::default()).unwrap();
    assert!(
        !import.stack_toml.contains("not-copied"),
        "{}",
        import.stack_toml
    );
}

#[test]
fn profiles_skip_with_a_report_line_and_import_when_given() {
    let import = import_fixture("mempool", &["docker-compose.yml"], Options::default()).unwrap();
    assert!(!import.stack_toml.contains("[apps.adminer]"));
    let skipped: Vec<String> = import
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::Skipped)
        .map(|n| n.to_string())
        .collect();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].contains("docker-compose.yml:54: skipped: services.adminer"),
        "{skipped:?}"
    );
    let opts = Options {
        profiles: vec!["debug".into()],
        ..Options::default()
    };
    let import = import_fixture("mempool", &["docker-compose.yml"], opts).unwrap();
    assert!(import.stack_toml.contains("[apps.adminer]"));
}

/// One service written inline (as `services:\n  s:\n` + body), imported
/// alone.
fn one(body: &str, strict: bool) -> Result<Import, Errors> {
    let text = format!("services:\n  s:\n    image: img\n{body}");
    let files = vec![("c.yml".to_string(), text)];
    let opts = Options {
        strict,
        project_name: Some("t".into()),
        project_dir: "/p".into(),
        ..Options::default()
    };
    let env: BTreeMap<String, String> = [("SET".to_string(), "v".to_string())].into();
    berth_compose::import(&files, &env, &opts, &|_| Ok(None))
}

/// (body, lines the stack file holds, report lines: "LINE: KIND: KEY")
#[test]
fn mapping_table() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "    command: sh -c 'echo \"a b\"'\n",
            &["command = [\"sh\", \"-c\", \"echo \\\"a b\\\"\"]"],
            &["4: mapped: services.s.command"],
        ),
        (
            "    entrypoint: [/bin/x, --y]\n",
            &["entrypoint = [\"/bin/x\", \"--y\"]"],
            &["4: mapped: services.s.entrypoint"],
        ),
        (
            "    environment:\n      - A=1\n      - B\n",
            &["A = \"1\""],
            &["6: unsupported: services.s.environment.B"],
        ),
        (
            "    environment:\n      SET:\n",
            &["SET = \"v\""],
            &["5: changed: services.s.environment.SET"],
        ),
        (
            "    environment: {DB_PASSWORD: x}\n",
            &["DB_PASSWORD = \"x\""],
            &["4: changed: services.s.environment.DB_PASSWORD"],
        ),
        (
            "    ports: [\"8080:80\", \"127.0.0.1:53:53/udp\", \"[::1]:9:9\"]\n",
            &["ports = [\"8080:80/tcp\", \"127.0.0.1:53:53/udp\", \"[::1]:9:9/tcp\"]"],
            &["4: mapped: services.s.ports[0]"],
        ),
        (
            "    ports: [\"80\"]\n",
            &[],
            &["4: unsupported: services.s.ports[0]"],
        ),
        (
            "    ports: [\"8000-8001:8000-8001\"]\n",
            &[],
            &["4: unsupported: services.s.ports[0]"],
        ),
        (
            "    ports:\n      - {target: 80, published: 8080, host_ip: 127.0.0.1}\n",
            &["ports = [\"127.0.0.1:8080:80/tcp\"]"],
            &["5: mapped: services.s.ports[0]"],
        ),
        (
            "    volumes: [\"data:/data\"]\n",
            &["data = \"/data\""],
            &["4: mapped: services.s.volumes[0]"],
        ),
        (
            "    volumes: [\"./conf:/etc/app:ro\"]\n",
            &["conf = \"/etc/app\""],
            &["4: changed: services.s.volumes[0]: bind mount /p/conf"],
        ),
        (
            "    volumes: [\"/var/lib/x\"]\n",
            &["x = \"/var/lib/x\""],
            &["4: changed: services.s.volumes[0]: anonymous volume"],
        ),
        (
            "    volumes:\n      - {type: tmpfs, target: /tmp}\n",
            &[],
            &["5: unsupported: services.s.volumes[0]"],
        ),
        (
            "    volumes:\n      - {type: volume, source: db, target: /db, read_only: true}\n",
            &["db = \"/db\""],
            &["5: changed: services.s.volumes[0]: berth mounts volumes read-write"],
        ),
        (
            "    healthcheck:\n      test: [CMD, curl, -f, http://x]\n      interval: 1m30s\n      timeout: 500ms\n      retries: 5\n      start_period: 1m\n",
            &[
                "command = [\"curl\", \"-f\", \"http://x\"]",
                "interval = \"1m30s\"",
                "timeout = \"500ms\"",
                "retries = 5",
                "start_period = \"1m\"",
            ],
            &["4: mapped: services.s.healthcheck"],
        ),
        (
            "    healthcheck:\n      test: [CMD-SHELL, \"pgrep x\"]\n",
            &[
                "command = [\"sh\", \"-c\", \"pgrep x\"]",
                "interval = \"30s\"",
            ],
            &[],
        ),
        (
            "    healthcheck:\n      test: pgrep x\n",
            &["command = [\"sh\", \"-c\", \"pgrep x\"]"],
            &[],
        ),
        (
            "    healthcheck:\n      test: [NONE]\n",
            &[],
            &["4: mapped: services.s.healthcheck: NONE"],
        ),
        (
            "    healthcheck:\n      disable: true\n      test: [CMD, x]\n",
            &[],
            &["4: mapped: services.s.healthcheck: disabled"],
        ),
        (
            "    restart: unless-stopped\n",
            &["restart = \"always\""],
            &["4: mapped: services.s.restart"],
        ),
        (
            "    restart: on-failure:3\n",
            &["restart = \"on-failure\""],
            &["4: changed: services.s.restart"],
        ),
        (
            "",
            &["restart = \"no\""],
            &["2: changed: services.s: berth drops every capability"],
        ),
        (
            "    stop_grace_period: 1m30s\n",
            &["stop_grace = \"1m30s\""],
            &["4: mapped: services.s.stop_grace_period"],
        ),
        (
            "    user: \"1000:1000\"\n",
            &["user = \"1000:1000\""],
            &["4: mapped: services.s.user"],
        ),
        (
            "    working_dir: /app\n",
            &[],
            &["4: unsupported: services.s.working_dir"],
        ),
        (
            "    cap_add: [NET_ADMIN, CAP_SYS_NICE]\n    cap_drop: [ALL]\n",
            &["cap_add = [\"NET_ADMIN\", \"SYS_NICE\"]"],
            &[
                "4: mapped: services.s.cap_add",
                "5: mapped: services.s.cap_drop",
            ],
        ),
        (
            "    cap_add: [ALL]\n",
            &[],
            &["4: unsupported: services.s.cap_add"],
        ),
        (
            "    read_only: true\n",
            &[],
            &["4: unsupported: services.s.read_only"],
        ),
        (
            "    mem_limit: 1g\n",
            &["memory = 1073741824"],
            &["4: mapped: services.s.mem_limit"],
        ),
        (
            "    deploy:\n      resources:\n        limits: {memory: 64M, cpus: '1'}\n        reservations: {memory: 32M}\n",
            &["memory = 67108864"],
            &[
                "6: unsupported: services.s.deploy.resources.limits.cpus",
                "7: unsupported: services.s.deploy.resources.reservations.memory",
            ],
        ),
        (
            "    secrets: [db_pass]\n",
            &["secrets = [\"db_pass\"]"],
            &["4: changed: services.s.secrets[0]"],
        ),
        (
            "    secrets:\n      - {source: k, target: /etc/k, mode: 0440}\n",
            &["secrets = [\"k\"]"],
            &[
                "5: unsupported: services.s.secrets[0]: target",
                "5: unsupported: services.s.secrets[0].mode",
            ],
        ),
        (
            "    labels: [\"a.b=c\"]\n",
            &["\"a.b\" = \"c\""],
            &["4: mapped: services.s.labels"],
        ),
        (
            "    labels: {io.berth.app: x}\n",
            &[],
            &["4: unsupported: services.s.labels.io.berth.app"],
        ),
        (
            "    init: true\n",
            &[],
            &["4: unsupported: services.s.init"],
        ),
        (
            "    ulimits: {nofile: 1024}\n",
            &[],
            &["4: unsupported: services.s.ulimits"],
        ),
        (
            "    extra_hosts: [\"a:1.2.3.4\"]\n",
            &[],
            &["4: unsupported: services.s.extra_hosts"],
        ),
        ("    build: .\n", &[], &["4: unsupported: services.s.build"]),
        (
            "    privileged: true\n",
            &[],
            &["4: unsupported: services.s.privileged"],
        ),
        (
            "    network_mode: host\n",
            &[],
            &["4: unsupported: services.s.network_mode"],
        ),
        (
            "    networks:\n      lan:\n        ipv4_address: 10.0.0.5\n",
            &[],
            &[
                "4: changed: services.s.networks",
                "6: unsupported: services.s.networks.lan.ipv4_address",
            ],
        ),
        (
            "    devices: [\"/dev/ttyUSB0:/dev/ttyUSB0\"]\n",
            &[],
            &["4: unsupported: services.s.devices"],
        ),
        (
            "    container_name: my-s\n",
            &[],
            &["4: changed: services.s.container_name"],
        ),
        (
            "    x-store: {port: 1}\n",
            &[],
            &["4: ignored: services.s.x-store"],
        ),
        (
            "    frobnicate: 1\n",
            &[],
            &["4: unsupported: services.s.frobnicate"],
        ),
        (
            "    image_pull: x\n    command: \"${UNSET_X}\"\n",
            &[],
            &["5: unresolved", "4: unsupported: services.s.image_pull"],
        ),
    ];
    for (body, lines, notes) in cases {
        let import = one(body, false).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        for l in *lines {
            assert!(
                import.stack_toml.lines().any(|x| x == *l),
                "{body:?}: no line {l:?} in\n{}",
                import.stack_toml
            );
        }
        let report: Vec<String> = import.notes.iter().map(|n| n.to_string()).collect();
        for n in *notes {
            let want = format!("c.yml:{n}");
            assert!(
                report.iter().any(|r| r.starts_with(&want)),
                "{body:?}: no report line {want:?} in\n{}",
                report.join("\n")
            );
        }
        // Nothing is dropped silently: every key of the service has a
        // report line, on its own line or inside its value.
        let lines: Vec<&str> = body.lines().collect();
        let keys: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].len() - lines[i].trim_start().len() == 4)
            .collect();
        for (n, &i) in keys.iter().enumerate() {
            let end = keys.get(n + 1).copied().unwrap_or(lines.len());
            let covered = (i..end).any(|l| {
                let at = format!("c.yml:{}:", l + 4);
                report.iter().any(|r| r.starts_with(&at))
            });
            assert!(
                covered,
                "{body:?}: no report line for {:?}:\n{}",
                lines[i],
                report.join("\n")
            );
        }
    }
}

#[test]
fn depends_on_table() {
    let text = "services:
  a:
    image: img
    depends_on:
      b: {condition: service_healthy}
      c: {condition: service_started}
      d: {condition: service_completed_successfully, restart: true}
      e: {condition: service_healthy}
  b:
    image: img
    healthcheck: {test: [CMD, x]}
  c: {image: img}
  d: {image: img}
  e: {image: img}
";
    let files = vec![("c.yml".to_string(), text.to_string())];
    let opts = Options {
        project_name: Some("t".into()),
        ..Options::default()
    };
    let import = berth_compose::import(&files, &BTreeMap::new(), &opts, &|_| Ok(None)).unwrap();
    for l in [
        "b = \"healthy\"",
        "c = \"started\"",
        "d = \"started\"",
        "e = \"started\"",
    ] {
        assert!(
            import.stack_toml.lines().any(|x| x == l),
            "{l}\n{}",
            import.stack_toml
        );
    }
    let report: Vec<String> = import.notes.iter().map(|n| n.to_string()).collect();
    for want in [
        "c.yml:7: changed: services.a.depends_on.d",
        "c.yml:7: ignored: services.a.depends_on.d.restart",
        "c.yml:2: changed: services.a.depends_on.e: waits for \"e\" to start",
    ] {
        assert!(
            report.iter().any(|r| r.starts_with(want)),
            "{want}\n{}",
            report.join("\n")
        );
    }
}

/// (files, strict, the error's start)
#[test]
fn refusals() {
    let cases: &[(&[&str], bool, &str)] = &[
        (
            &["services:\n  web:\n    build: .\n"],
            false,
            "c0.yml:2: service \"web\" has no image: it only has `build`",
        ),
        (
            &["services:\n  web: {command: x}\n"],
            false,
            "c0.yml:2: service \"web\" has no image",
        ),
        (
            &["services:\n  web:\n    image: \"x:${TAG:?set TAG first}\"\n"],
            false,
            "c0.yml:3: required variable TAG is not set: set TAG first",
        ),
        (
            &["services:\n  web:\n    image: \"x:${TAG?}\"\n"],
            false,
            "c0.yml:3: required variable TAG is not set",
        ),
        (
            &["apiVersion: v1\nkind: Pod\n"],
            false,
            "c0.yml:1: c0.yml is not a compose file: unknown top-level key `apiVersion`",
        ),
        (
            &["- a\n- b\n"],
            false,
            "c0.yml:1: c0.yml is not a compose file: its top level is a list",
        ),
        (
            &["services: [a]\n"],
            false,
            "c0.yml:1: `services` is a list",
        ),
        (&["version: '3'\n"], false, "c0.yml:1: no services"),
        (
            &["services:\n  a: {image: x}\n  a: {image: y}\n"],
            false,
            "c0.yml:3: duplicate key `a`",
        ),
        (
            &[
                "services:\n  web:\n    image: x\n    healthcheck: {test: [CMD, x]}\n",
                "services:\n  web:\n    healthcheck: x\n",
            ],
            false,
            "c1.yml:3: merge conflict: services.web.healthcheck is a mapping in c0.yml:4 but a scalar in c1.yml:3",
        ),
        (
            &["services:\n  my_app: {image: x}\n  my-app: {image: y}\n"],
            false,
            "c0.yml:3: services \"my_app\" and \"my-app\" both become berth app \"my-app\": berth cannot express both; rename one",
        ),
        (
            &[
                "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    profiles: [dev]\n",
            ],
            false,
            "c0.yml:4: service \"a\" depends on \"b\", which is only in profile dev",
        ),
        (
            &["services:\n  a:\n    image: x\n    depends_on: [zz]\n"],
            false,
            "c0.yml:4: service \"a\" depends on undefined service \"zz\"",
        ),
        (
            &["services:\n  a:\n    extends: b\n  b:\n    extends: a\n"],
            false,
            "c0.yml:3: extends cycle: b -> a -> b",
        ),
        (
            &["services:\n  a:\n    image: x\n    command: \"echo 'unterminated\"\n"],
            false,
            "c0.yml:4: services.a.command: cannot split",
        ),
        (
            &["services:\n  a:\n    image: \"x$\"\n"],
            false,
            "c0.yml:3: invalid interpolation",
        ),
        (
            &["services:\n  a:\n    image: x\n    privileged: true\n"],
            true,
            "c0.yml:4: --strict: unsupported: services.a.privileged",
        ),
        (
            &["services:\n  a:\n    image: x\n    command: \"run ${TAG}\"\n"],
            true,
            "c0.yml:4: --strict: unresolved: variable TAG is not set",
        ),
    ];
    for (texts, strict, want) in cases {
        let files: Vec<(String, String)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("c{i}.yml"), t.to_string()))
            .collect();
        let opts = Options {
            strict: *strict,
            project_name: Some("t".into()),
            ..Options::default()
        };
        let e = berth_compose::import(&files, &BTreeMap::new(), &opts, &|_| Ok(None)).unwrap_err();
        assert!(
            e.to_string().starts_with(want),
            "{texts:?}:\n got {e}\nwant {want}"
        );
    }
}

#[test]
fn project_name_from_the_file_or_the_flag() {
    let files = vec![(
        "c.yml".to_string(),
        "name: My_Stack\nservices:\n  a: {image: x}\n".to_string(),
    )];
    let opts = Options {
        project_dir: "/srv/ignored".into(),
        ..Options::default()
    };
    let import = berth_compose::import(&files, &BTreeMap::new(), &opts, &|_| Ok(None)).unwrap();
    assert_eq!(import.stack_name, "my-stack");
    assert!(import.notes.iter().any(|n| n.to_string().starts_with(
        "c.yml:1: changed: name: project name \"My_Stack\" became stack name \"my-stack\""
    )));
    let opts = Options {
        project_name: Some("node".into()),
        ..opts
    };
    let import = berth_compose::import(&files, &BTreeMap::new(), &opts, &|_| Ok(None)).unwrap();
    assert_eq!(import.stack_name, "node");
    let files = vec![(
        "c.yml".to_string(),
        "services:\n  a: {image: x}\n".to_string(),
    )];
    let opts = Options {
        project_dir: "/srv/bitcoin".into(),
        ..Options::default()
    };
    let import = berth_compose::import(&files, &BTreeMap::new(), &opts, &|_| Ok(None)).unwrap();
    assert_eq!(import.stack_name, "bitcoin");
}

#[test]
fn unresolved_variables_are_reported_with_their_line() {
    let import = one("    command: \"run ${NOPE} ${SET}\"\n", false).unwrap();
    let unresolved: Vec<String> = import
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::Unresolved)
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        unresolved,
        [
            "c.yml:4: unresolved: variable NOPE is not set: substituted an empty string — set NOPE in the environment or the .env file, or give a default: ${NOPE:-value}"
        ]
    );
    assert!(import.stack_toml.contains("command = [\"run\", \"v\"]"));
}

/// Merging several files follows compose: scalars replaced, mappings by
/// key, ports and capabilities as sets, volumes by target.
#[test]
fn merging_files_in_order() {
    let import = import_fixture("differential", &["a.yml", "b.yml"], Options::default()).unwrap();
    let t = &import.stack_toml;
    for l in [
        "RPC_USER = \"overridden\"",
        "ADDED = \"in-b\"",
        "OVERRIDDEN = \"indexer\"",
        "FROM_BASE = \"yes\"",
        "other-data = \"/data\"",
        "retries = 9",
        "\"com.example.role\" = \"main-node\"",
        "restart = \"on-failure\"",
        "cap_add = [\"NET_ADMIN\", \"SYS_NICE\"]",
        "FILE_VAR = \"from-env-file\"",
        "FROM_DOTENV = \"from-dotenv\"",
        "LITERAL = \"$HOME\"",
        "EMPTY_DEFAULT = \"fallback\"",
        "EMPTY_DASH = \"\"",
    ] {
        assert!(t.lines().any(|x| x == l), "no {l:?} in\n{t}");
    }
    assert!(
        !t.contains("node-data = "),
        "volume replaced by target:\n{t}"
    );
}

// ---------------------------------------------------------------------------
// The differential test
// ---------------------------------------------------------------------------

/// What `docker-compose config` prints for `files` in `dir`, with a clean
/// environment (only `.env` and the files decide).
fn docker_compose_config(dir: &Path, files: &[&str]) -> String {
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/local/bin");
    for f in files {
        cmd.arg("-f").arg(f);
    }
    cmd.arg("config");
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run docker-compose ({e}): install Debian's docker-compose (scripts/setup.sh); this test compares berth's model with it")
    });
    assert!(
        out.status.success(),
        "docker-compose config failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The interpolated and merged model berth computes equals what
/// docker-compose 1.29 prints, projected the same way (the projection
/// reads docker-compose's output with berth's own loader, which on an
/// already resolved file only parses: `$$` back to `$`, nothing else to
/// interpolate, merge or extend). Differences between 1.29 and the
/// specification that are accepted are listed in docs/import-compose.md
/// and kept out of these files.
#[test]
fn model_equals_docker_compose_config() {
    for (name, files) in STACKS {
        let dir = fixtures().join(name).canonicalize().expect("fixture dir");
        let opts = Options {
            project_dir: dir.display().to_string(),
            ..Options::default()
        };
        let ours_files = fixture_files(&dir, files);
        let (ours, _) = berth_compose::model(&ours_files, &BTreeMap::new(), &opts, &reader(&dir))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let printed = docker_compose_config(&dir, files);
        let theirs_files = vec![(format!("docker-compose config of {name}"), printed.clone())];
        // Nothing to read: the printed model has every file folded in.
        let (theirs, _) =
            berth_compose::model(&theirs_files, &BTreeMap::new(), &opts, &|_| Ok(None))
                .unwrap_or_else(|e| {
                    panic!("{name}: reading docker-compose's output: {e}\n{printed}")
                });
        assert_eq!(
            serde_json::to_string_pretty(&ours).unwrap(),
            serde_json::to_string_pretty(&theirs).unwrap(),
            "{name}: berth's model (left) differs from docker-compose config (right); it printed:\n{printed}"
        );
    }
}

/// A file many services extend is read once (reads are bounded per
/// import).
#[test]
fn an_extended_file_is_read_once() {
    let mut text = String::from("services:\n");
    for i in 0..80 {
        text.push_str(&format!(
            "  s{i}:\n    extends: {{file: common.yml, service: base}}\n"
        ));
    }
    let files = vec![("/p/c.yml".to_string(), text)];
    let reads = std::cell::Cell::new(0);
    let read = |path: &str| {
        reads.set(reads.get() + 1);
        Ok((path == "/p/common.yml").then(|| "services:\n  base: {image: x}\n".to_string()))
    };
    let opts = Options {
        project_dir: "/p".into(),
        ..Options::default()
    };
    let import = berth_compose::import(&files, &BTreeMap::new(), &opts, &read).unwrap();
    assert!(import.stack_toml.contains("[apps.s79]"));
    // `.env` and common.yml.
    assert_eq!(reads.get(), 2);
}

/// Bad input is refused, never a panic: every prefix of the richest
/// fixtures (cut anywhere: inside a string, a flow list, an
/// interpolation) imports or is refused.
#[test]
fn truncated_files_never_panic() {
    for (name, file) in [("differential", "a.yml"), ("bitcoin", "docker-compose.yml")] {
        let dir = fixtures().join(name).canonicalize().expect("fixture dir");
        let text = std::fs::read_to_string(dir.join(file)).expect("fixture");
        let opts = Options {
            project_dir: dir.display().to_string(),
            ..Options::default()
        };
        for (cut, _) in text.char_indices().step_by(3) {
            let files = vec![(file.to_string(), text[..cut].to_string())];
            let _ = berth_compose::import(&files, &BTreeMap::new(), &opts, &reader(&dir));
        }
    }
}
