//! Hand-written argument parsing (no clap: keeps the static binary small).

use std::path::PathBuf;
use std::time::Duration;

use crate::sim::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    Bitcoind,
    Monerod,
    Http,
    Tcp,
}

impl App {
    pub fn parse(s: &str) -> Option<App> {
        match s {
            "bitcoind" => Some(App::Bitcoind),
            "monerod" => Some(App::Monerod),
            "http" => Some(App::Http),
            "tcp" => Some(App::Tcp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            App::Bitcoind => "bitcoind",
            App::Monerod => "monerod",
            App::Http => "http",
            App::Tcp => "tcp",
        }
    }

    pub fn default_listen(self) -> &'static str {
        match self {
            App::Bitcoind => "0.0.0.0:8332",
            App::Monerod => "0.0.0.0:18081",
            App::Http => "0.0.0.0:8080",
            App::Tcp => "0.0.0.0:50001",
        }
    }

    pub fn default_target(self) -> u64 {
        match self {
            App::Bitcoind => 850_000,
            App::Monerod => 3_200_000,
            App::Http | App::Tcp => 1_000,
        }
    }

    pub fn default_chain(self) -> &'static str {
        match self {
            App::Monerod => "mainnet",
            _ => "main",
        }
    }

    /// In `down` mode, whether the service port is closed (connection
    /// refused). The generic web app instead answers 503.
    pub fn refuses_when_down(self) -> bool {
        !matches!(self, App::Http)
    }

    fn allows(self, flag: &str) -> bool {
        match flag {
            "--rpc-user" | "--rpc-password-file" => self == App::Bitcoind,
            "--chain" => matches!(self, App::Bitcoind | App::Monerod),
            "--body" => self == App::Http,
            "--banner" => self == App::Tcp,
            _ => true,
        }
    }
}

pub const DEFAULT_CONTROL: &str = "0.0.0.0:9100";
pub const DEFAULT_RATE: f64 = 100.0;

/// Everything a fake daemon needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub app: App,
    /// Used in logs and in the web page; defaults to the app name.
    pub name: String,
    pub listen: String,
    /// `None`: no control port (`--control off`).
    pub control: Option<String>,
    pub mode: Mode,
    /// Explicit `--height` (a persisted height in data-dir wins over it).
    pub height: Option<u64>,
    pub target: Option<u64>,
    /// Blocks per second while syncing.
    pub rate: Option<f64>,
    pub sync_seconds: Option<f64>,
    /// How long `starting` lasts before moving on to syncing (None: until
    /// changed through the control port).
    pub starting_seconds: Option<f64>,
    /// While synced, a new block every this many seconds (None: never).
    pub block_seconds: Option<f64>,
    pub data_dir: Option<PathBuf>,
    pub rpc_user: Option<String>,
    pub rpc_password_file: Option<PathBuf>,
    pub chain: String,
    pub body: Option<String>,
    pub banner: Option<String>,
    pub quiet: bool,
}

impl Config {
    /// Defaults for an app, as if run with no flags.
    pub fn new(app: App) -> Config {
        Config {
            app,
            name: app.as_str().to_string(),
            listen: app.default_listen().to_string(),
            control: Some(DEFAULT_CONTROL.to_string()),
            mode: Mode::Synced,
            height: None,
            target: None,
            rate: None,
            sync_seconds: None,
            starting_seconds: None,
            block_seconds: None,
            data_dir: None,
            rpc_user: None,
            rpc_password_file: None,
            chain: app.default_chain().to_string(),
            body: None,
            banner: None,
            quiet: false,
        }
    }

    /// Loopback, ephemeral ports, quiet: handy for in-process tests.
    pub fn for_test(app: App) -> Config {
        Config {
            listen: "127.0.0.1:0".into(),
            control: Some("127.0.0.1:0".into()),
            quiet: true,
            ..Config::new(app)
        }
    }

    /// The starting target: `--target`, else (synced with only `--height`)
    /// the height, else the app's default (raised to the height if needed).
    pub fn effective_target(&self) -> u64 {
        match (self.target, self.height) {
            (Some(t), _) => t,
            (None, Some(h)) if self.mode == Mode::Synced => h,
            (None, Some(h)) => h.max(self.app.default_target()),
            (None, None) => self.app.default_target(),
        }
    }

    /// The starting height when nothing is persisted: `--height`, else the
    /// target in synced/down/busy modes, else 0.
    pub fn effective_height(&self) -> u64 {
        match self.height {
            Some(h) => h,
            None if matches!(self.mode, Mode::Syncing | Mode::Starting) => 0,
            None => self.effective_target(),
        }
    }

    /// Blocks per second: `--sync-rate`, or derived from `--sync-seconds`
    /// over the configured distance (`--height` to `--target`), so a restart
    /// that resumes from a persisted height keeps the same speed.
    pub fn effective_rate(&self) -> f64 {
        if let Some(r) = self.rate {
            return r;
        }
        if let Some(s) = self.sync_seconds {
            let start = self.height.unwrap_or(0);
            return self.effective_target().saturating_sub(start) as f64 / s;
        }
        DEFAULT_RATE
    }

    pub fn starting_duration(&self) -> Option<Duration> {
        self.starting_seconds.map(Duration::from_secs_f64)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(Box<Config>),
    Help(String),
    Version,
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn usage() -> String {
    format!(
        "berth-fake {VERSION}: controllable fake node daemons for berth's demo stack and tests

USAGE:
    berth-fake <COMMAND> [OPTIONS]
    berth-fake help [COMMAND]

COMMANDS:
    bitcoind   bitcoind-like JSON-RPC over HTTP POST /     (default --listen 0.0.0.0:8332)
    monerod    monerod-like POST /json_rpc, GET /get_info  (default --listen 0.0.0.0:18081)
    http       generic web app: GET /, GET /health         (default --listen 0.0.0.0:8080)
    tcp        generic TCP app writing a banner line       (default --listen 0.0.0.0:50001)

COMMON OPTIONS (every command):
    --listen ADDR              service address (host:port; port 0 = ephemeral)
    --control ADDR|off         control HTTP port [default: {DEFAULT_CONTROL}]
    --name NAME                name used in logs and pages [default: the command]
    --mode MODE                synced|syncing|down|busy|starting [default: synced]
    --height N                 start height (a height persisted in --data-dir wins)
    --target N                 chain tip to sync toward
    --sync-rate BLOCKS_PER_S   sync speed [default: {DEFAULT_RATE}]
    --sync-seconds S           set the rate so --height -> --target takes S seconds
    --starting-seconds S       leave 'starting' by itself after S seconds (to syncing)
    --block-seconds S          while synced, a new block every S seconds (height and
                               target advance together) [default: 0, no new blocks]
    --data-dir DIR             persists height in DIR/height; marker file DIR/marker
    --quiet                    no log lines on stdout
    -h, --help                 this help
    -V, --version              print the version

BITCOIND OPTIONS:
    --rpc-user USER            required user name when a password file exists
    --rpc-password-file PATH   if PATH exists, HTTP basic auth with its content
                               (trailing newline ignored) is required, else 401
    --chain NAME               'chain' in getblockchaininfo [default: main]

MONEROD OPTIONS:
    --chain NAME               mainnet|testnet|stagenet [default: mainnet]

HTTP OPTIONS:
    --body TEXT                text shown on the page at GET /

TCP OPTIONS:
    --banner TEXT              first line written to every connection

MODES:
    synced     height == target; bitcoind blocks == headers, ibd false, progress 1.0;
               monerod synchronized true, target_height 0 (as 0.18); with
               --block-seconds the tip advances by itself
    syncing    height advances by itself at the sync rate; at target -> synced
    starting   bitcoind: RPC error -28 'Loading block index…';
               monerod: target_height 0, synchronized false, height 1;
               http: /health 503; tcp: writes 'STARTING' and closes
    busy       bitcoind: HTTP 503 'Work queue depth exceeded'; monerod: status BUSY;
               http: /health 503; tcp: writes 'BUSY' and closes
    down       the service port refuses connections (http: answers 503);
               the control port stays up

CONTROL PORT:
    GET  /control              current state as JSON
    POST /control              {{\"mode\": \"synced|syncing|down|busy|starting|exit\",
                                \"height\": N, \"target\": N, \"rate\": N,
                                \"sync_seconds\": S, \"code\": N,
                                \"freeze\": true|false, \"block_seconds\": S}}  (all optional)
                               'exit' ends the process with 'code' (default 1);
                               'freeze' stops the height changing by itself (sync
                               progress and new blocks) until false
    GET|PUT|DELETE /marker     read/write DIR/marker (404 when none)

Exits 0 on SIGTERM/SIGINT.
"
    )
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("invalid value {v:?} for {flag}"))
}

fn parse_secs(flag: &str, v: &str) -> Result<f64, String> {
    let s: f64 = parse_num(flag, v)?;
    if !s.is_finite() || s <= 0.0 {
        return Err(format!("{flag} must be a number > 0, got {v:?}"));
    }
    Ok(s)
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some(first) = args.first() else {
        return Err("missing command (bitcoind|monerod|http|tcp)".into());
    };
    match first.as_str() {
        "-h" | "--help" | "help" => return Ok(Command::Help(usage())),
        "-V" | "--version" | "version" => return Ok(Command::Version),
        _ => {}
    }
    let app = App::parse(first)
        .ok_or_else(|| format!("unknown command {first:?} (bitcoind|monerod|http|tcp)"))?;
    let mut cfg = Config::new(app);
    let mut i = 1;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help(usage()));
        }
        if arg == "-V" || arg == "--version" {
            return Ok(Command::Version);
        }
        if arg == "--quiet" {
            cfg.quiet = true;
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument {arg:?}"));
        }
        const FLAGS: &[&str] = &[
            "--listen",
            "--control",
            "--name",
            "--mode",
            "--height",
            "--target",
            "--sync-rate",
            "--sync-seconds",
            "--starting-seconds",
            "--block-seconds",
            "--data-dir",
            "--rpc-user",
            "--rpc-password-file",
            "--chain",
            "--body",
            "--banner",
        ];
        if !FLAGS.contains(&flag) {
            return Err(format!("unknown option {flag}"));
        }
        if !app.allows(flag) {
            return Err(format!("{flag} is not an option of '{}'", app.as_str()));
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("{flag} needs a value"))?
                    .clone();
                i += 1;
                v
            }
        };
        match flag {
            "--listen" => cfg.listen = value,
            "--control" => {
                cfg.control = match value.as_str() {
                    "off" | "none" | "" => None,
                    _ => Some(value),
                }
            }
            "--name" => {
                if value.is_empty() {
                    return Err("--name must not be empty".into());
                }
                cfg.name = value
            }
            "--mode" => {
                cfg.mode = Mode::parse(&value).ok_or_else(|| {
                    format!("invalid --mode {value:?} (synced|syncing|down|busy|starting)")
                })?
            }
            "--height" => cfg.height = Some(parse_num(flag, &value)?),
            "--target" => cfg.target = Some(parse_num(flag, &value)?),
            "--sync-rate" => {
                let r: f64 = parse_num(flag, &value)?;
                if !r.is_finite() || r < 0.0 {
                    return Err(format!("--sync-rate must be >= 0, got {value:?}"));
                }
                cfg.rate = Some(r)
            }
            "--sync-seconds" => cfg.sync_seconds = Some(parse_secs(flag, &value)?),
            "--starting-seconds" => cfg.starting_seconds = Some(parse_secs(flag, &value)?),
            "--block-seconds" => {
                let s: f64 = parse_num(flag, &value)?;
                cfg.block_seconds = crate::sim::parse_block_seconds(s)
                    .map_err(|_| format!("--block-seconds must be a number >= 0, got {value:?}"))?;
            }
            "--data-dir" => cfg.data_dir = Some(PathBuf::from(value)),
            "--rpc-user" => cfg.rpc_user = Some(value),
            "--rpc-password-file" => cfg.rpc_password_file = Some(PathBuf::from(value)),
            "--chain" => cfg.chain = value,
            "--body" => cfg.body = Some(value),
            "--banner" => cfg.banner = Some(value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if cfg.rate.is_some() && cfg.sync_seconds.is_some() {
        return Err("give either --sync-rate or --sync-seconds, not both".into());
    }
    Ok(Command::Run(Box::new(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&args)? {
            Command::Run(c) => Ok(*c),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&["bitcoind"]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8332");
        assert_eq!(c.control.as_deref(), Some("0.0.0.0:9100"));
        assert_eq!(c.mode, Mode::Synced);
        assert_eq!(c.effective_height(), c.effective_target());
        assert_eq!(run(&["monerod"]).unwrap().listen, "0.0.0.0:18081");
        assert_eq!(run(&["http"]).unwrap().listen, "0.0.0.0:8080");
        assert_eq!(run(&["tcp"]).unwrap().listen, "0.0.0.0:50001");
    }

    #[test]
    fn all_flags_both_syntaxes() {
        let c = run(&[
            "bitcoind",
            "--listen",
            "127.0.0.1:1",
            "--control=off",
            "--name",
            "node",
            "--mode=syncing",
            "--height",
            "10",
            "--target=110",
            "--sync-seconds",
            "5",
            "--starting-seconds=2.5",
            "--block-seconds",
            "0.5",
            "--data-dir",
            "/data",
            "--rpc-user",
            "u",
            "--rpc-password-file",
            "/run/secrets/x",
            "--chain",
            "regtest",
            "--quiet",
        ])
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:1");
        assert_eq!(c.control, None);
        assert_eq!(c.name, "node");
        assert_eq!(c.mode, Mode::Syncing);
        assert_eq!((c.effective_height(), c.effective_target()), (10, 110));
        assert_eq!(c.effective_rate(), 20.0);
        assert_eq!(c.starting_duration(), Some(Duration::from_millis(2500)));
        assert_eq!(c.block_seconds, Some(0.5));
        assert_eq!(c.data_dir, Some(PathBuf::from("/data")));
        assert_eq!(c.rpc_user.as_deref(), Some("u"));
        assert_eq!(c.chain, "regtest");
        assert!(c.quiet);
    }

    #[test]
    fn height_target_defaults_follow_mode() {
        let c = run(&["bitcoind", "--mode", "synced", "--height", "7"]).unwrap();
        assert_eq!((c.effective_height(), c.effective_target()), (7, 7));
        let c = run(&["monerod", "--mode", "syncing"]).unwrap();
        assert_eq!((c.effective_height(), c.effective_target()), (0, 3_200_000));
        let c = run(&["bitcoind", "--mode", "syncing", "--height", "900000"]).unwrap();
        assert_eq!(c.effective_target(), 900_000);
        assert_eq!(c.effective_rate(), DEFAULT_RATE);
    }

    #[test]
    fn errors() {
        for bad in [
            &[][..],
            &["nope"],
            &["bitcoind", "--bogus", "1"],
            &["bitcoind", "--listen"],
            &["bitcoind", "--mode", "sleepy"],
            &["bitcoind", "--height", "-1"],
            &["bitcoind", "--height", "x"],
            &["bitcoind", "--sync-rate", "-1"],
            &["bitcoind", "--sync-rate", "NaN"],
            &["bitcoind", "--sync-seconds", "0"],
            &["bitcoind", "--block-seconds", "-1"],
            &["bitcoind", "--block-seconds", "inf"],
            &["bitcoind", "--sync-rate", "1", "--sync-seconds", "1"],
            &["bitcoind", "stray"],
            &["monerod", "--rpc-user", "u"],
            &["http", "--banner", "x"],
            &["tcp", "--body", "x"],
            &["http", "--name", ""],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn help_and_version() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(parse(&s(&["--help"])), Ok(Command::Help(_))));
        assert!(matches!(parse(&s(&["help"])), Ok(Command::Help(_))));
        assert!(matches!(
            parse(&s(&["monerod", "-h"])),
            Ok(Command::Help(_))
        ));
        assert!(matches!(parse(&s(&["-V"])), Ok(Command::Version)));
        let Ok(Command::Help(text)) = parse(&s(&["--help"])) else {
            unreachable!()
        };
        for flag in [
            "--listen",
            "--control",
            "--rpc-password-file",
            "--sync-seconds",
            "--data-dir",
            "--body",
            "--block-seconds",
            "freeze",
        ] {
            assert!(text.contains(flag), "{flag}");
        }
    }
}
