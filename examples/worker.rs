//! A Hamster worker: takes run jobs from the Redis queue and executes them (store:
//! PostgreSQL), `--workers N` at once. On SIGTERM or SIGINT it takes no new job, gives the
//! runs in progress `HAMSTER_SHUTDOWN_GRACE` (default 25 s) to finish and releases the rest
//! to other workers, which resume them at the step that was running.
//!
//! ```sh
//! HAMSTER_DATABASE_URL=postgres://postgres@127.0.0.1/hamster \
//! HAMSTER_REDIS_URL=redis://127.0.0.1:6379 \
//! HAMSTER_GITHUB_API_TOKEN=... \
//! cargo run --release --example worker -- --workers 8
//! ```
//!
//! This is what `hamster worker` runs.

use hamster::app;

use clap::Parser;
use std::path::PathBuf;

/// The worker's command line.
#[derive(Debug, Parser)]
struct Cli {
    /// TOML configuration file (also HAMSTER_CONFIG).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter (also HAMSTER_LOG / RUST_LOG).
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
    #[command(flatten)]
    args: app::process::ProcessArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let flags = app::process::flags_layer(&cli.args, cli.log);
    app::process::run_mode(flags, cli.config.as_deref(), app::worker)
}
