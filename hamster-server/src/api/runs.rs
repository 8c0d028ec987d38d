//! `/api/runs`: list with filters, show with steps, logs (one chunk or followed), re-run,
//! cancel.

use super::{ApiPath, ApiQuery, non_empty, parse_id, parse_limit};
use crate::ShutdownToken;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Extension;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::Stream;
use hamster_core::engine::Engine;
use hamster_core::store::{
    LogChunk, RunFilter, RunId, RunRecord, RunStatus, StepRecord, StepStatus,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Query parameters of `GET /api/runs`, parsed by hand to name the one that is wrong.
#[derive(Deserialize)]
pub(crate) struct RunsQuery {
    repository: Option<String>,
    handler: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    before: Option<String>,
    created_before: Option<String>,
}

/// A run in a listing: everything but the handler and the event snapshot.
#[derive(Serialize)]
struct RunSummary<'a> {
    id: RunId,
    handler: &'a str,
    handler_version: i64,
    event: &'a str,
    repository: &'a str,
    delivery_id: Option<&'a str>,
    status: RunStatus,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<&'a str>,
}

impl<'a> From<&'a RunRecord> for RunSummary<'a> {
    fn from(run: &'a RunRecord) -> Self {
        Self {
            id: run.id,
            handler: &run.handler_name,
            handler_version: run.handler_version,
            event: &run.event.name,
            repository: &run.repository,
            delivery_id: run.delivery_id.as_deref(),
            status: run.status,
            created_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            error: run.error.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct RunsAnswer<'a> {
    runs: Vec<RunSummary<'a>>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<RunId>,
}

/// `GET /api/runs?repository=&handler=&status=&limit=&before=&created_before=`: newest
/// first.
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Response, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let status = non_empty(query.status.as_deref())
        .map(|text| {
            text.parse::<RunStatus>().map_err(|error| {
                ApiError::bad_request(format!("query parameter `status`: {error}"))
            })
        })
        .transpose()?;
    let before = non_empty(query.before.as_deref())
        .map(|text| {
            parse_id::<RunId>(text, "run").map_err(|error| {
                ApiError::bad_request(format!("query parameter `before`: {}", error.message))
            })
        })
        .transpose()?;
    let created_before = non_empty(query.created_before.as_deref())
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|time| time.to_utc())
                .map_err(|error| {
                    ApiError::bad_request(format!(
                        "query parameter `created_before`: `{text}` is not an RFC 3339 time such as 2026-11-24T15:00:00Z ({error})"
                    ))
                })
        })
        .transpose()?;
    let filter = RunFilter {
        repository: non_empty(query.repository.as_deref()).map(str::to_owned),
        handler: non_empty(query.handler.as_deref()).map(str::to_owned),
        status,
        before,
        created_before,
        limit: Some(limit),
    };
    let runs = state.engine.store().list_runs(&filter).await?;
    let next_before = (runs.len() >= limit as usize)
        .then(|| runs.last().map(|run| run.id))
        .flatten();
    let answer = RunsAnswer {
        runs: runs.iter().map(RunSummary::from).collect(),
        next_before,
    };
    Ok(Json(answer).into_response())
}

#[derive(Serialize)]
pub(crate) struct RunAnswer {
    run: RunRecord,
    steps: Vec<StepRecord>,
}

/// `GET /api/runs/{id}`: the run (with its handler and event snapshot) and its steps.
pub(crate) async fn get_one(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunAnswer>, ApiError> {
    let id = parse_id::<RunId>(&id, "run")?;
    let store = state.engine.store();
    let (run, steps) = tokio::join!(store.get_run(id), store.list_steps(id));
    let run = run?.ok_or_else(|| run_not_found(id))?;
    Ok(Json(RunAnswer { run, steps: steps? }))
}

#[derive(Deserialize)]
pub(crate) struct LogQuery {
    offset: Option<String>,
    follow: Option<String>,
}

/// `GET /api/runs/{id}/steps/{key}/log?offset=N[&follow=true]`.
///
/// Without `follow`: `{"text", "next_offset"}`. With it, the log is streamed until the step
/// (or the run) is over: as server-sent events when the client accepts
/// `text/event-stream`, as chunked `text/plain` otherwise.
pub(crate) async fn log(
    State(state): State<AppState>,
    ApiPath((id, key)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<LogQuery>,
    shutdown: Option<Extension<ShutdownToken>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id::<RunId>(&id, "run")?;
    let offset = match non_empty(query.offset.as_deref()) {
        None => 0,
        Some(text) => text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter `offset` must be a byte offset (a whole number ≥ 0), got `{text}`"
            ))
        })?,
    };
    let follow = match non_empty(query.follow.as_deref()) {
        None | Some("false" | "0" | "no") => false,
        Some("true" | "1" | "yes") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter `follow` must be `true` or `false`, got `{other}`"
            )));
        }
    };
    let store = state.engine.store();
    if store.get_run(id).await?.is_none() {
        return Err(run_not_found(id));
    }
    if !follow {
        let chunk = store.read_log(id, &key, offset).await?;
        return Ok(Json(chunk).into_response());
    }
    let follower = Follower {
        engine: state.engine.clone(),
        run: id,
        key,
        offset,
        interval: state.log_poll_interval,
        shutdown: shutdown.map(|Extension(token)| token.0).unwrap_or_default(),
        phase: Phase::Following,
    };
    let wants_sse = headers
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    Ok(if wants_sse {
        Sse::new(sse_events(follower))
            .keep_alive(KeepAlive::default())
            .into_response()
    } else {
        let mut response = Response::new(Body::from_stream(text_chunks(follower)));
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Proxies such as nginx would otherwise hold the stream back.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    })
}

/// What following a log produced.
enum Followed {
    Chunk(LogChunk),
    /// The step (or run) is over; nothing more will be written.
    End {
        status: Option<StepStatus>,
        next_offset: u64,
    },
    /// The server is shutting down.
    Interrupted {
        next_offset: u64,
    },
    Failed(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Following,
    /// The step finished: one more read catches what was written just before.
    Draining(Option<StepStatus>),
    Done,
}

/// Polls a step's log in the store until the step or its run is over.
struct Follower {
    engine: Engine,
    run: RunId,
    key: String,
    offset: u64,
    interval: Duration,
    shutdown: CancellationToken,
    phase: Phase,
}

impl Follower {
    async fn next(&mut self) -> Option<Followed> {
        loop {
            let draining = match self.phase {
                Phase::Done => return None,
                Phase::Draining(status) => Some(status),
                Phase::Following => None,
            };
            let store = self.engine.store();
            let chunk = match store.read_log(self.run, &self.key, self.offset).await {
                Ok(chunk) => chunk,
                Err(error) => {
                    self.phase = Phase::Done;
                    tracing::warn!(run = %self.run, step = %self.key, %error, "log follow failed");
                    return Some(Followed::Failed(error.to_string()));
                }
            };
            if !chunk.text.is_empty() {
                self.offset = chunk.next_offset;
                return Some(Followed::Chunk(chunk));
            }
            if let Some(status) = draining {
                self.phase = Phase::Done;
                return Some(Followed::End {
                    status,
                    next_offset: self.offset,
                });
            }
            match self.finished().await {
                Ok(Some(status)) => {
                    self.phase = Phase::Draining(status);
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    self.phase = Phase::Done;
                    return Some(Followed::Failed(error));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = self.shutdown.cancelled() => {
                    self.phase = Phase::Done;
                    return Some(Followed::Interrupted { next_offset: self.offset });
                }
            }
        }
    }

    /// `Some(step status)` once nothing more will be written to the log: the step is over,
    /// or its run is (the status is `None` when the step never ran).
    async fn finished(&self) -> Result<Option<Option<StepStatus>>, String> {
        let store = self.engine.store();
        let steps = store
            .list_steps(self.run)
            .await
            .map_err(|error| error.to_string())?;
        let status = steps
            .iter()
            .find(|step| step.key == self.key)
            .map(|step| step.status);
        if status.is_some_and(StepStatus::is_terminal) {
            return Ok(Some(status));
        }
        let run = store
            .get_run(self.run)
            .await
            .map_err(|error| error.to_string())?;
        Ok(match run {
            Some(run) if !run.status.is_terminal() => None,
            // A finished (or deleted) run writes no more logs.
            _ => Some(status),
        })
    }
}

fn text_chunks(follower: Follower) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(follower, |mut follower| async move {
        let item = match follower.next().await? {
            Followed::Chunk(chunk) => Ok(Bytes::from(chunk.text)),
            Followed::End { .. } | Followed::Interrupted { .. } => return None,
            // The status line is long gone: cutting the stream short is how a plain-text
            // client learns the follow failed.
            Followed::Failed(error) => Err(std::io::Error::other(error)),
        };
        Some((item, follower))
    })
}

#[derive(Serialize)]
struct SseEnd {
    status: Option<StepStatus>,
    next_offset: u64,
}

fn sse_events(follower: Follower) -> impl Stream<Item = Result<SseEvent, axum::Error>> {
    futures::stream::unfold(follower, |mut follower| async move {
        let event = match follower.next().await? {
            Followed::Chunk(chunk) => SseEvent::default()
                .event("log")
                .id(chunk.next_offset.to_string())
                .json_data(&chunk),
            Followed::End {
                status,
                next_offset,
            } => SseEvent::default().event("end").json_data(SseEnd {
                status,
                next_offset,
            }),
            Followed::Interrupted { next_offset } => {
                SseEvent::default().event("interrupted").json_data(SseEnd {
                    status: None,
                    next_offset,
                })
            }
            Followed::Failed(error) => SseEvent::default()
                .event("error")
                .json_data(serde_json::json!({ "error": error })),
        };
        Some((event, follower))
    })
}

#[derive(Serialize)]
pub(crate) struct RerunAnswer {
    run: RunId,
    rerun_of: RunId,
}

/// `POST /api/runs/{id}/rerun`: a new run of the same handler version for the same event.
pub(crate) async fn rerun(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<RerunAnswer>), ApiError> {
    let id = parse_id::<RunId>(&id, "run")?;
    let run = state.engine.rerun(id).await?;
    state.metrics.runs_created(1);
    tracing::info!(%run, rerun_of = %id, "run re-run");
    Ok((
        StatusCode::ACCEPTED,
        Json(RerunAnswer { run, rerun_of: id }),
    ))
}

#[derive(Serialize)]
pub(crate) struct CancelAnswer {
    run: RunId,
    status: RunStatus,
}

/// `POST /api/runs/{id}/cancel`: `409` when the run is already over.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CancelAnswer>, ApiError> {
    let id = parse_id::<RunId>(&id, "run")?;
    if state.engine.cancel(id).await? {
        tracing::info!(run = %id, "run cancelled");
        return Ok(Json(CancelAnswer {
            run: id,
            status: RunStatus::Cancelled,
        }));
    }
    match state.engine.store().get_run(id).await? {
        None => Err(run_not_found(id)),
        Some(run) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "run {id} is already {}; only queued or running runs can be cancelled",
                run.status.as_str()
            ),
        )),
    }
}

fn run_not_found(id: RunId) -> ApiError {
    ApiError::not_found(format!("run {id} does not exist"))
}
