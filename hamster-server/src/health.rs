//! `GET /healthz`, `GET /readyz` and `GET /metrics`.

use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use std::time::Duration;

/// A backend slower than this is not ready.
const READINESS_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

/// The process is alive and serving.
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    store: String,
    queue: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Ready when the store answers a ping and the queue its stats.
async fn readyz(State(state): State<AppState>) -> Response {
    let (store, queue) = tokio::join!(
        tokio::time::timeout(READINESS_TIMEOUT, state.engine.store().ping()),
        tokio::time::timeout(READINESS_TIMEOUT, state.engine.queue().stats()),
    );
    let store = match store {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some(format!("no answer within {READINESS_TIMEOUT:?}")),
    };
    let queue = match queue {
        Ok(Ok(_)) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some(format!("no answer within {READINESS_TIMEOUT:?}")),
    };
    let failed: Vec<String> = [("store", &store), ("queue", &queue)]
        .into_iter()
        .filter_map(|(name, error)| error.as_ref().map(|error| format!("{name}: {error}")))
        .collect();
    let ready = failed.is_empty();
    if !ready {
        tracing::warn!(problems = %failed.join("; "), "not ready");
    }
    let answer = Readiness {
        status: if ready { "ready" } else { "not ready" },
        store: store.unwrap_or_else(|| "ok".to_owned()),
        queue: queue.unwrap_or_else(|| "ok".to_owned()),
        error: (!ready).then(|| format!("not ready: {}", failed.join("; "))),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(answer)).into_response()
}

/// Prometheus text exposition. Gauges read from the backends are refreshed first; a backend
/// that fails leaves its gauges at their last value (and is logged) rather than failing the
/// scrape.
async fn metrics(State(state): State<AppState>) -> Response {
    let (runs, queue) = tokio::join!(
        state.engine.store().count_runs_by_status(),
        state.engine.queue().stats(),
    );
    let runs = runs
        .inspect_err(|error| tracing::warn!(%error, "metrics: cannot count runs"))
        .ok();
    let queue = queue
        .inspect_err(|error| tracing::warn!(%error, "metrics: cannot read queue stats"))
        .ok();
    state
        .metrics
        .set_backend_state(runs.as_ref(), queue.as_ref());
    if let Some(stats) = state.github_stats.as_ref().and_then(|source| source()) {
        state.metrics.set_github(&stats);
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}
