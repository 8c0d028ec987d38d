//! Running Hamster as a process: configuration, wiring the engine to its backends and to
//! GitHub, and the three ways to run it.
//!
//! - [`serve`]: the HTTP server and workers in one process on the embedded SQLite store
//!   (`hamster serve`).
//! - [`appserver`]: the HTTP server alone on PostgreSQL + Redis; run several side by side
//!   (`examples/appserver.rs`, `hamster appserver`).
//! - [`worker`]: a worker alone on PostgreSQL + Redis (`examples/worker.rs`,
//!   `hamster worker`).
//!
//! Each runs until its `shutdown` token is cancelled ([`cancel_on_signal`] cancels it on
//! SIGTERM or SIGINT): the HTTP server stops accepting and finishes the requests in
//! flight, and workers take no new job, give runs in progress the configured grace period
//! and release the rest to other workers.

pub mod config;
pub mod github;
pub mod handlers;
pub mod process;

use config::{ConfigError, LogFormat, Settings};
use github::GitHubSetupError;
use hamster_core::action::{ActionRegistry, DuplicateAction};
use hamster_core::engine::{Engine, EngineError, WorkerConfig};
use hamster_core::handler::HandlerErrors;
use hamster_core::queue::Queue;
use hamster_core::redact::Redactor;
use hamster_core::services::Services;
use hamster_core::store::Store;
use hamster_github::{GitHub, PullRequestEnricher};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Why a Hamster process could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The GitHub client or the git settings are invalid.
    #[error(transparent)]
    GitHub(#[from] GitHubSetupError),
    /// Two built-in actions share a name (a build problem, not a configuration one).
    #[error(transparent)]
    Actions(#[from] DuplicateAction),
    /// The embedded database could not be opened.
    #[error("cannot open the embedded database: {0}")]
    Sqlite(#[from] hamster_store_sqlite::OpenError),
    /// PostgreSQL could not be reached or prepared.
    #[cfg(feature = "postgres")]
    #[error("cannot connect to PostgreSQL (HAMSTER_DATABASE_URL): {0}")]
    Postgres(#[from] hamster_store_postgres::ConnectError),
    /// Redis could not be reached.
    #[cfg(feature = "redis")]
    #[error("cannot connect to Redis (HAMSTER_REDIS_URL): {0}")]
    Redis(#[from] hamster_queue_redis::ConnectError),
    /// This binary was built without the PostgreSQL or Redis backend.
    #[cfg(not(all(feature = "postgres", feature = "redis")))]
    #[error(
        "this build has no {0} support; rebuild with the default features (`postgres`, `redis`)"
    )]
    NotBuiltIn(&'static str),
    /// A handler file is invalid.
    #[error("invalid handlers:\n{0}")]
    Handlers(#[from] HandlerErrors),
    /// The engine failed (store or queue unavailable…).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {address}: {source}; choose another address with --listen or HAMSTER_LISTEN"
    )]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// The log filter is invalid.
    #[error("invalid log filter {filter:?} (HAMSTER_LOG / RUST_LOG): {reason}")]
    LogFilter {
        /// The filter as given.
        filter: String,
        /// Why it does not parse.
        reason: String,
    },
}

impl AppError {
    /// Whether the error is the user's configuration (exit code 2) rather than a failure
    /// at run time.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::Config(_) | Self::GitHub(_) | Self::Handlers(_) | Self::LogFilter { .. }
        ) || self.is_not_built_in()
    }

    #[cfg(all(feature = "postgres", feature = "redis"))]
    fn is_not_built_in(&self) -> bool {
        false
    }

    #[cfg(not(all(feature = "postgres", feature = "redis")))]
    fn is_not_built_in(&self) -> bool {
        matches!(self, Self::NotBuiltIn(_))
    }
}

/// Sets up logging to stderr from `settings.log` (an `EnvFilter` directive such as
/// `info,hamster_core=debug`) in `settings.log_format`. Does nothing if a global subscriber
/// is already set.
pub fn init_logging(settings: &Settings) -> Result<(), AppError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log).map_err(|error| {
        AppError::LogFilter {
            filter: settings.log.clone(),
            reason: error.to_string(),
        }
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

/// Cancels `token` when the process receives SIGTERM or SIGINT.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        hamster_server::shutdown_signal().await;
        tracing::info!("shutdown requested; finishing work in progress");
        token.cancel();
    });
}

/// Runs [`Engine::sweep_stranded`] in the background until `shutdown`.
fn spawn_stranded_sweep(engine: Engine, shutdown: CancellationToken) {
    tokio::spawn(async move { engine.sweep_stranded(shutdown).await });
}

/// The actions every Hamster process offers: the built-ins.
pub fn action_registry() -> Result<ActionRegistry, AppError> {
    let mut registry = ActionRegistry::new();
    hamster_actions::register_builtins(&mut registry)?;
    Ok(registry)
}

/// An engine on `store` and `queue` with the built-in actions, `github` as the API client
/// (and the pull request enricher), git workspaces and the configured secrets redacted.
pub fn build_engine(
    settings: &Settings,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    github: Arc<dyn GitHub>,
    metrics: &hamster_server::ServerMetrics,
) -> Result<Engine, AppError> {
    let mut services = Services::new();
    services.insert::<dyn GitHub>(github.clone());
    let step_metrics = metrics.clone();
    Ok(Engine::builder(store, queue)
        .on_step_finished(Arc::new(move |_run, step| {
            if let Some(finished) = step.finished_at {
                let took = (finished - step.started_at).to_std().unwrap_or_default();
                step_metrics.observe_step(&step.action, step.status.as_str(), took);
            }
        }))
        .registry(action_registry()?)
        .workspaces(Arc::new(github::git_workspaces(settings)?))
        .services(services)
        .enricher(Arc::new(PullRequestEnricher::new(github)))
        .redactor(Redactor::new(settings.secrets()))
        .build())
}

/// An engine and the GitHub client it uses.
#[derive(Debug, Clone)]
pub struct Wired {
    /// The engine.
    pub engine: Engine,
    /// Its GitHub client.
    pub github: github::GitHubClient,
    /// The metrics `/metrics` shows; the engine reports step durations into them.
    pub metrics: hamster_server::ServerMetrics,
}

/// The engine of `hamster serve`: the embedded SQLite store and queue in the data directory.
pub async fn embedded_engine(settings: &Settings) -> Result<Wired, AppError> {
    let backend = hamster_store_sqlite::SqliteBackend::open(settings.database_file()).await?;
    let github = github::github_client(settings)?;
    let metrics = hamster_server::ServerMetrics::new();
    let engine = build_engine(
        settings,
        Arc::new(backend.clone()),
        Arc::new(backend),
        github.api.clone(),
        &metrics,
    )?;
    Ok(Wired {
        engine,
        github,
        metrics,
    })
}

/// The engine of appservers and workers: PostgreSQL (`database_url`) and Redis
/// (`redis_url`).
pub async fn distributed_engine(
    settings: &Settings,
    mode: &'static str,
) -> Result<Wired, AppError> {
    let database_url = settings
        .database_url
        .as_deref()
        .ok_or(ConfigError::Missing {
            option: "HAMSTER_DATABASE_URL",
            mode,
        })?;
    let redis_url = settings.redis_url.as_deref().ok_or(ConfigError::Missing {
        option: "HAMSTER_REDIS_URL",
        mode,
    })?;
    let store = connect_postgres(settings, database_url).await?;
    let queue = connect_redis(settings, redis_url).await?;
    let github = github::github_client(settings)?;
    let metrics = hamster_server::ServerMetrics::new();
    let engine = build_engine(settings, store, queue, github.api.clone(), &metrics)?;
    Ok(Wired {
        engine,
        github,
        metrics,
    })
}

#[cfg(feature = "postgres")]
async fn connect_postgres(settings: &Settings, url: &str) -> Result<Arc<dyn Store>, AppError> {
    use hamster_store_postgres::{PostgresConfig, PostgresStore};
    let config = PostgresConfig {
        schema: settings.database_schema.clone(),
        max_connections: settings.database_max_connections,
        ..PostgresConfig::default()
    };
    Ok(Arc::new(PostgresStore::connect(url, config).await?))
}

#[cfg(not(feature = "postgres"))]
async fn connect_postgres(_: &Settings, _: &str) -> Result<Arc<dyn Store>, AppError> {
    Err(AppError::NotBuiltIn("PostgreSQL"))
}

#[cfg(feature = "redis")]
async fn connect_redis(settings: &Settings, url: &str) -> Result<Arc<dyn Queue>, AppError> {
    use hamster_queue_redis::{RedisQueue, RedisQueueConfig};
    let config = RedisQueueConfig::new(settings.redis_prefix.clone());
    Ok(Arc::new(RedisQueue::connect(url, config).await?))
}

#[cfg(not(feature = "redis"))]
async fn connect_redis(_: &Settings, _: &str) -> Result<Arc<dyn Queue>, AppError> {
    Err(AppError::NotBuiltIn("Redis"))
}

/// Validates and stores the handlers named in the configuration; returns how many.
pub async fn load_configured_handlers(
    engine: &Engine,
    settings: &Settings,
) -> Result<usize, AppError> {
    if settings.handlers.is_empty() {
        return Ok(0);
    }
    let loaded = handlers::load_handlers(&settings.handlers, engine.registry())?;
    let stored = handlers::store_handlers(engine, loaded).await?;
    for record in &stored {
        tracing::info!(handler = %record.name, version = record.version, "handler loaded");
    }
    Ok(stored.len())
}

/// The worker settings from the configuration.
pub fn worker_config(settings: &Settings) -> WorkerConfig {
    WorkerConfig {
        concurrency: settings.workers,
        lease: settings.worker_lease,
        shutdown_grace: settings.shutdown_grace,
        ..WorkerConfig::default()
    }
}

fn server_config(settings: &Settings, wired: &Wired) -> hamster_server::ServerConfig {
    hamster_server::ServerConfig {
        webhook_secret: settings.webhook_secret.clone(),
        api_tokens: settings.api_tokens.clone(),
        github_stats: wired.github.stats_source(),
        metrics: wired.metrics.clone(),
        ..hamster_server::ServerConfig::default()
    }
}

async fn bind(settings: &Settings) -> Result<(tokio::net::TcpListener, SocketAddr), AppError> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| AppError::Bind {
            address: settings.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| AppError::Bind {
        address: settings.listen,
        source,
    })?;
    Ok((listener, address))
}

/// Prints a line to stdout at once (tests and scripts wait for these lines).
fn announce(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Says which security and GitHub settings are missing; `runs_actions` is whether this
/// process executes runs (and so calls GitHub).
fn warn_unconfigured(settings: &Settings, runs_actions: bool) {
    if runs_actions && settings.github_api_token.is_none() {
        announce(
            "GitHub API token not configured (HAMSTER_GITHUB_API_TOKEN): actions that call GitHub will fail with a \"not configured\" error",
        );
        tracing::warn!("HAMSTER_GITHUB_API_TOKEN is not set; GitHub actions will fail");
    }
    if settings.webhook_secret.is_none() {
        announce(
            "webhook secret not configured (HAMSTER_GITHUB_WEBHOOK_SECRET): unsigned deliveries are accepted",
        );
    }
    if settings.api_tokens.is_empty() {
        announce(
            "API token not configured (HAMSTER_API_TOKEN): the REST API refuses every request",
        );
    }
}

async fn run_http(
    wired: Wired,
    settings: &Settings,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let config = server_config(settings, &wired);
    let router = hamster_server::router(wired.engine, config);
    hamster_server::serve(listener, router, shutdown.cancelled_owned())
        .await
        .map_err(AppError::Serve)
}

/// `hamster serve`: the HTTP server and workers in one process, on the embedded SQLite
/// store in the data directory, with the configured handlers loaded. Returns when
/// `shutdown` is cancelled and everything has stopped.
pub async fn serve(settings: Settings, shutdown: CancellationToken) -> Result<(), AppError> {
    let wired = embedded_engine(&settings).await?;
    let handlers = load_configured_handlers(&wired.engine, &settings).await?;
    let (listener, address) = bind(&settings).await?;
    announce(&format!("listening on http://{address}"));
    announce(&format!(
        "database {}, {} handler(s) loaded, {} worker slot(s)",
        settings.database_file().display(),
        handlers,
        settings.workers
    ));
    warn_unconfigured(&settings, true);
    let secret_flag = if settings.webhook_secret.is_some() {
        " --secret \"$HAMSTER_GITHUB_WEBHOOK_SECRET\""
    } else {
        ""
    };
    announce(&format!(
        "send a test delivery: hamster send --url http://{address}/webhooks/github --event pull_request --payload tests/fixtures/github-webhooks/pull_request/opened.payload.json{secret_flag}"
    ));
    spawn_stranded_sweep(wired.engine.clone(), shutdown.clone());
    let worker = wired.engine.worker(worker_config(&settings));
    let worker_shutdown = shutdown.clone();
    let worker_task = tokio::spawn(async move { worker.run(worker_shutdown).await });
    let served = run_http(wired, &settings, listener, shutdown.clone()).await;
    // The server stops on `shutdown` too; should it fail on its own, stop the workers.
    shutdown.cancel();
    let worked = match worker_task.await {
        Ok(result) => result.map_err(AppError::from),
        Err(join) => {
            tracing::error!(error = %join, "the worker task panicked");
            Ok(())
        }
    };
    served?;
    worked?;
    announce("stopped");
    Ok(())
}

/// An appserver: the HTTP server on PostgreSQL + Redis, with the configured handlers
/// loaded. Several may run side by side.
pub async fn appserver(settings: Settings, shutdown: CancellationToken) -> Result<(), AppError> {
    let wired = distributed_engine(&settings, "the appserver").await?;
    let handlers = load_configured_handlers(&wired.engine, &settings).await?;
    let (listener, address) = bind(&settings).await?;
    announce(&format!("listening on http://{address}"));
    announce(&format!("{handlers} handler(s) loaded"));
    warn_unconfigured(&settings, false);
    spawn_stranded_sweep(wired.engine.clone(), shutdown.clone());
    run_http(wired, &settings, listener, shutdown).await?;
    announce("stopped");
    Ok(())
}

/// A worker: takes run jobs from the Redis queue and executes them, `settings.workers` at
/// once, until `shutdown` is cancelled.
pub async fn worker(settings: Settings, shutdown: CancellationToken) -> Result<(), AppError> {
    let wired = distributed_engine(&settings, "the worker").await?;
    if settings.github_api_token.is_none() {
        tracing::warn!("HAMSTER_GITHUB_API_TOKEN is not set; GitHub actions will fail");
    }
    announce(&format!(
        "worker ready: {} run(s) at once, pid {}",
        settings.workers,
        std::process::id()
    ));
    wired
        .engine
        .worker(worker_config(&settings))
        .run(shutdown)
        .await?;
    announce("stopped");
    Ok(())
}
