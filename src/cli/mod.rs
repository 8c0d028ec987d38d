//! The `hamster` command line: argument parsing and the subcommands.

mod replay;
mod send;
mod validate;

use crate::app::{
    self,
    config::ConfigLayer,
    process::{ProcessArgs, flags_layer, run_mode, settings_or_exit, with_runtime},
};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// React to GitHub events by running pipelines of actions on workers.
#[derive(Debug, Parser)]
#[command(name = "hamster", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file (also HAMSTER_CONFIG). Flags override environment
    /// variables, which override the file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `hamster_core=debug` (also HAMSTER_LOG / RUST_LOG).
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server and workers in one process on the embedded SQLite store.
    Serve(ProcessArgs),
    /// Work with handler files.
    #[command(subcommand)]
    Handlers(HandlersCommand),
    /// Run the matching handlers against a recorded delivery, in process; GitHub calls are
    /// recorded and printed, not sent.
    Replay(replay::ReplayArgs),
    /// Post a recorded delivery to a Hamster server, as GitHub would.
    Send(send::SendArgs),
    /// Run an HTTP server on PostgreSQL + Redis, without workers (examples/appserver.rs).
    #[command(hide = true)]
    Appserver(ProcessArgs),
    /// Run a worker on PostgreSQL + Redis, without HTTP server (examples/worker.rs).
    #[command(hide = true)]
    Worker(ProcessArgs),
}

#[derive(Debug, Subcommand)]
enum HandlersCommand {
    /// Check handler files or directories; prints `file:line:col: message` for each problem.
    Validate {
        /// Handler files, or directories searched for *.yml, *.yaml and *.json.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}

impl Cli {
    /// Runs the command and returns the process's exit code.
    pub fn run(self) -> ExitCode {
        let config = self.config.as_deref();
        match self.command {
            Command::Handlers(HandlersCommand::Validate { paths }) => validate::run(&paths),
            Command::Send(args) => with_runtime(|| send::run(args)),
            Command::Replay(args) => {
                // The report is the output: logs only when something is wrong.
                let quiet = ConfigLayer {
                    log: Some("warn".to_owned()),
                    ..ConfigLayer::default()
                };
                let flags = flags_layer(&ProcessArgs::default(), self.log);
                match settings_or_exit(flags, quiet, config) {
                    Ok(settings) => with_runtime(|| replay::run(args, settings)),
                    Err(code) => code,
                }
            }
            Command::Serve(args) => run_mode(flags_layer(&args, self.log), config, app::serve),
            Command::Appserver(args) => {
                run_mode(flags_layer(&args, self.log), config, app::appserver)
            }
            Command::Worker(args) => run_mode(flags_layer(&args, self.log), config, app::worker),
        }
    }
}
