//! Hamster's HTTP layer, as a library: the GitHub webhook endpoint, the REST API, health
//! checks and Prometheus metrics, assembled into one [`axum::Router`] by [`router`].
//!
//! ```no_run
//! # async fn demo(engine: hamster_core::engine::Engine) -> std::io::Result<()> {
//! use hamster_server::{ServerConfig, router, serve, shutdown_signal};
//!
//! let config = ServerConfig {
//!     webhook_secret: std::env::var("HAMSTER_GITHUB_WEBHOOK_SECRET").ok(),
//!     api_tokens: std::env::var("HAMSTER_API_TOKEN").into_iter().collect(),
//!     ..ServerConfig::default()
//! };
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! serve(listener, router(engine, config), shutdown_signal()).await
//! # }
//! ```
//!
//! Every endpoint is documented, with examples, in `docs/api.md`.
//!
//! The webhook path does no GitHub call and no checkout: it verifies the signature, parses
//! the body once, records the delivery and its runs in the store, enqueues the runs and
//! answers. Everything slow happens on workers.

mod api;
mod auth;
mod error;
mod health;
mod metrics;
mod state;
mod webhook;

pub use error::ApiError;
pub use metrics::{GitHubStatsSource, ServerMetrics};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hamster_core::engine::Engine;
use state::AppState;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// The largest webhook body GitHub sends (its payload cap): 25 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 25 * 1024 * 1024;

/// How the HTTP layer behaves.
///
/// `Debug` never shows the webhook secret nor the API tokens.
#[derive(Clone)]
pub struct ServerConfig {
    /// The GitHub webhook secret. When set, every delivery must carry a valid
    /// `X-Hub-Signature-256`; when `None`, signatures are not checked (only for local setups).
    pub webhook_secret: Option<String>,
    /// Bearer tokens accepted by `/api`. With none, every `/api` request is refused: there is
    /// no default password.
    pub api_tokens: Vec<String>,
    /// Largest webhook body accepted (default [`DEFAULT_BODY_LIMIT`]); larger ones get `413`.
    pub body_limit: usize,
    /// Largest `/api` request body accepted (default 2 MiB); larger ones get `413`.
    pub api_body_limit: usize,
    /// Time allowed to produce a response's headers (default 30 s); slower requests get
    /// `503`. Streamed bodies (`follow=true` logs) are not limited by it.
    pub request_timeout: Duration,
    /// How often a followed log is polled in the store (default 500 ms).
    pub log_poll_interval: Duration,
    /// Where `/metrics` reads GitHub API counters from, when the process has a client.
    pub github_stats: Option<GitHubStatsSource>,
    /// The metrics registry `/metrics` renders. Keep a clone to record step durations with
    /// [`ServerMetrics::observe_step`]; the default is a fresh registry.
    pub metrics: ServerMetrics,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            webhook_secret: None,
            api_tokens: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            api_body_limit: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            log_poll_interval: Duration::from_millis(500),
            github_stats: None,
            metrics: ServerMetrics::new(),
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "api_tokens",
                &format_args!("<{} redacted>", self.api_tokens.len()),
            )
            .field("body_limit", &self.body_limit)
            .field("api_body_limit", &self.api_body_limit)
            .field("request_timeout", &self.request_timeout)
            .field("log_poll_interval", &self.log_poll_interval)
            .field("github_stats", &self.github_stats.is_some())
            .finish_non_exhaustive()
    }
}

/// Everything the server answers, with tracing and a request timeout:
///
/// - `POST /webhooks/github`: GitHub deliveries;
/// - `/api/...`: the REST API (Bearer token);
/// - `GET /healthz`, `GET /readyz`, `GET /metrics`.
///
/// Run [`Engine::sweep_stranded`] beside it, as the `hamster` binaries do: a webhook answered
/// `503` because the queue failed leaves its runs recorded but not queued, and the sweep
/// queues them.
pub fn router(engine: Engine, config: ServerConfig) -> Router {
    let state = AppState::new(engine, &config);
    let api = api::router(state.clone(), config.api_body_limit);
    Router::new()
        .merge(webhook::router(state.clone(), config.body_limit))
        .merge(health::router(state.clone()))
        .nest("/api", api)
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        .layer(TraceLayer::new_for_http())
}

async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> impl IntoResponse {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint {method} {}; see docs/api.md for the endpoints",
            uri.path()
        ),
    )
}

/// Tells long-lived responses (followed logs) that the server is shutting down, so that
/// graceful shutdown does not wait for them forever.
#[derive(Clone, Debug, Default)]
pub(crate) struct ShutdownToken(pub(crate) CancellationToken);

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting
/// connections, ends followed log streams and waits for requests in flight to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = ShutdownToken::default();
    let on_shutdown = token.0.clone();
    let router = router.layer(axum::Extension(token));
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving HTTP");
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
            on_shutdown.cancel();
        })
        .await
}

/// Resolves when the process receives SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
