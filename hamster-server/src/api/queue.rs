//! `/api/queue`: stats and dead letters.

use super::{ApiPath, ApiQuery, parse_limit};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use hamster_core::queue::{DeadLetter, JobId, QueueStats};
use serde::{Deserialize, Serialize};

/// `GET /api/queue`: how many jobs are ready, delayed, leased and dead.
pub(crate) async fn stats(State(state): State<AppState>) -> Result<Json<QueueStats>, ApiError> {
    Ok(Json(state.engine.queue().stats().await?))
}

#[derive(Deserialize)]
pub(crate) struct LimitQuery {
    limit: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct DeadLettersAnswer {
    dead_letters: Vec<DeadLetter>,
}

/// `GET /api/queue/dead?limit=`: dead-lettered jobs, oldest first.
pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<Json<DeadLettersAnswer>, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let dead_letters = state.engine.queue().dead_letters(limit).await?;
    Ok(Json(DeadLettersAnswer { dead_letters }))
}

#[derive(Serialize)]
pub(crate) struct RequeueAnswer {
    job: JobId,
    requeued: bool,
}

/// `POST /api/queue/dead/{id}/requeue`: back to the queue at attempt 1.
pub(crate) async fn requeue(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RequeueAnswer>, ApiError> {
    let job = JobId(id);
    if !state.engine.queue().requeue_dead_letter(&job).await? {
        return Err(ApiError::not_found(format!(
            "no dead-lettered job {job}; GET /api/queue/dead lists them"
        )));
    }
    tracing::info!(%job, "dead letter re-queued");
    Ok(Json(RequeueAnswer {
        job,
        requeued: true,
    }))
}
