//! What every request handler shares.

use crate::ServerConfig;
use crate::auth::ApiTokens;
use crate::metrics::{GitHubStatsSource, ServerMetrics};
use hamster_core::engine::Engine;
use hamster_github::WebhookParser;
use std::sync::Arc;
use std::time::Duration;

/// Cheap to clone: one `Arc`.
#[derive(Clone, Debug)]
pub(crate) struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    /// Keyed once with the webhook secret.
    pub(crate) parser: WebhookParser,
    pub(crate) tokens: ApiTokens,
    pub(crate) metrics: ServerMetrics,
    pub(crate) github_stats: Option<GitHubStatsSource>,
    pub(crate) log_poll_interval: Duration,
    /// Largest webhook body accepted.
    pub(crate) body_limit: usize,
}

impl AppState {
    pub(crate) fn new(engine: Engine, config: &ServerConfig) -> Self {
        Self(Arc::new(Inner {
            engine,
            parser: WebhookParser::new(config.webhook_secret.as_deref().map(str::as_bytes)),
            tokens: ApiTokens::new(&config.api_tokens),
            metrics: config.metrics.clone(),
            github_stats: config.github_stats.clone(),
            log_poll_interval: config.log_poll_interval,
            body_limit: config.body_limit,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("engine", &self.engine)
            .field("parser", &self.parser)
            .field("tokens", &self.tokens)
            .field("github_stats", &self.github_stats.is_some())
            .field("log_poll_interval", &self.log_poll_interval)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}
