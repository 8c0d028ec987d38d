//! A Hamster appserver: the HTTP server (webhooks, REST API, health, metrics) on PostgreSQL
//! and Redis, with no workers. Run several side by side behind a load balancer, and
//! `examples/worker.rs` processes to execute the runs.
//!
//! ```sh
//! HAMSTER_DATABASE_URL=postgres://postgres@127.0.0.1/hamster \
//! HAMSTER_REDIS_URL=redis://127.0.0.1:6379 \
//! HAMSTER_GITHUB_WEBHOOK_SECRET=... HAMSTER_API_TOKEN=... \
//! cargo run --release --example appserver -- --listen 0.0.0.0:8080 --handlers handlers/
//! ```
//!
//! Flags: `--listen ADDR`, `--handlers PATH` (repeatable), `--config FILE`; every other
//! option is an environment variable or a configuration file key (docs/configuration.md).
//! This is what `hamster appserver` runs.

use hamster::app;

use clap::Parser;
use std::path::PathBuf;

/// The appserver's command line.
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
    app::process::run_mode(flags, cli.config.as_deref(), app::appserver)
}
