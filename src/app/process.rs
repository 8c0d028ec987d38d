//! Running a long-lived mode as a process: flags, logging, the runtime, signals and the
//! exit code. Shared by `hamster serve|appserver|worker` and the examples.

use super::config::{ConfigLayer, Settings};
use super::{AppError, cancel_on_signal, init_logging};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Exit code for "the command ran and something failed".
pub const EXIT_FAILED: u8 = 1;
/// Exit code for usage and configuration errors (what clap uses too).
pub const EXIT_USAGE: u8 = 2;

/// The flags of the long-running modes. Each overrides its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ProcessArgs {
    /// Address to listen on (also HAMSTER_LISTEN; default 127.0.0.1:8080; port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for the database and the git cache (also HAMSTER_DATA_DIR; default
    /// ./hamster-data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Handler file or directory to load at startup; repeat for several (also
    /// HAMSTER_HANDLERS, comma-separated).
    #[arg(long = "handlers", value_name = "PATH")]
    pub handlers: Vec<PathBuf>,
    /// Runs executed at once (also HAMSTER_WORKERS; default 4).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

impl ProcessArgs {
    /// These flags as a configuration layer.
    pub fn layer(&self) -> ConfigLayer {
        ConfigLayer {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            handlers: (!self.handlers.is_empty()).then(|| self.handlers.clone()),
            workers: self.workers,
            ..ConfigLayer::default()
        }
    }
}

/// The flags of a long-running mode plus the global `--log`, as one configuration layer.
pub fn flags_layer(args: &ProcessArgs, log: Option<String>) -> ConfigLayer {
    args.layer().or(ConfigLayer {
        log,
        ..ConfigLayer::default()
    })
}

/// Resolves the settings (`flags` over the environment over the file over `defaults`)
/// and sets up
/// logging; prints the error and returns exit code 2 when either fails.
pub fn settings_or_exit(
    flags: ConfigLayer,
    defaults: ConfigLayer,
    config: Option<&Path>,
) -> Result<Settings, ExitCode> {
    let settings = Settings::from_process(flags, defaults, config).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(EXIT_USAGE)
    })?;
    init_logging(&settings).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(EXIT_USAGE)
    })?;
    Ok(settings)
}

/// Runs `body` on a new multi-threaded Tokio runtime.
pub fn with_runtime<F, Fut>(body: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    // reqwest (the GitHub client, `hamster send`) needs a TLS provider before any client
    // is built; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(body()),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Runs a long-lived `mode` until SIGTERM or SIGINT. Exit code 0 after a clean shutdown,
/// 2 on a configuration error, 1 on any other error.
pub fn run_mode<F, Fut>(flags: ConfigLayer, config: Option<&Path>, mode: F) -> ExitCode
where
    F: FnOnce(Settings, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), AppError>>,
{
    let settings = match settings_or_exit(flags, ConfigLayer::default(), config) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    with_runtime(|| async move {
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        match mode(settings, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) if error.is_configuration() => {
                eprintln!("error: {error}");
                ExitCode::from(EXIT_USAGE)
            }
            Err(error) => {
                // Logged for collectors (JSON logs) and printed for whoever is watching.
                tracing::error!(%error, "stopped on an error");
                eprintln!("error: {error}");
                ExitCode::from(EXIT_FAILED)
            }
        }
    })
}
