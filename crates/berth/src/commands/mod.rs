//! One file per command: each parses its arguments, calls the library and
//! adds context to errors.

use crate::cli::{Cli, Command};
use crate::context::CmdResult;

mod daemon;
mod doctor;
mod down;
mod events;
mod export;
mod gate;
mod history;
mod import;
mod install;
mod list;
mod logs;
mod recover;
mod reinstall;
mod restart;
mod run;
mod start;
mod status;
mod stop;
mod token;
mod uninstall;
mod up;
mod validate;
mod verify;
mod vet;

pub async fn run(cli: Cli) -> CmdResult {
    let g = &cli.global;
    match cli.command {
        Command::Validate { file, json } => validate::run(&file, json.json),
        Command::Install { apps } => install::run(g, &apps).await,
        Command::Start { apps } => start::run(g, &apps).await,
        Command::Stop { apps } => stop::run(g, &apps).await,
        Command::Restart { apps } => restart::run(g, &apps).await,
        Command::Reinstall { apps } => reinstall::run(g, &apps).await,
        Command::Uninstall {
            apps,
            keep_data,
            cascade,
        } => uninstall::run(g, &apps, keep_data, cascade).await,
        Command::Up { stack, no_daemon } => up::run(g, stack, no_daemon).await,
        Command::Down { stack, purge } => down::run(g, stack, purge).await,
        Command::Status { json } => status::run(g, json.json).await,
        Command::List { json } => list::run(g, json.json).await,
        Command::Logs { app, tail, json } => logs::run(g, &app, tail, json.json).await,
        Command::Doctor { json } => doctor::run(g, json.json).await,
        Command::Recover { json } => recover::run(g, json.json).await,
        Command::History { app, json } => history::run(g, &app, json.json),
        Command::Events {
            app,
            limit,
            follow,
            json,
        } => events::run(g, app.as_deref(), limit, follow, json.json).await,
        Command::Daemon {
            config,
            tick,
            listen,
        } => daemon::run(g, config, tick, listen).await,
        Command::Token { json } => token::run(g, json.json),
        Command::Import {
            command: crate::cli::ImportCommand::Compose(args),
        } => import::compose(args),
        Command::Vet(args) => vet::run(g, args).await,
        Command::Verify(args) => verify::run(g, args).await,
        Command::Run { command } => run::run(g, command).await,
        Command::Gate { command } => gate::run(g, command).await,
        Command::Export { command } => export::run(g, command),
    }
}

/// Ids given on the command line, as a set.
fn id_set(apps: &[String]) -> std::collections::BTreeSet<String> {
    apps.iter().cloned().collect()
}
