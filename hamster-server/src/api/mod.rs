//! The REST API under `/api`: handlers, runs, deliveries and the queue, behind Bearer-token
//! authentication.

mod deliveries;
mod handlers;
mod queue;
mod runs;

use crate::auth::require_token;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

pub(crate) fn router(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route("/handlers", get(handlers::list).post(handlers::create))
        .route(
            "/handlers/{name}",
            get(handlers::get_one)
                .put(handlers::replace)
                .delete(handlers::delete),
        )
        .route("/handlers/{name}/enable", post(handlers::enable))
        .route("/handlers/{name}/disable", post(handlers::disable))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::get_one))
        .route("/runs/{id}/steps/{key}/log", get(runs::log))
        .route("/runs/{id}/rerun", post(runs::rerun))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}", get(deliveries::get_one))
        .route("/deliveries/{id}/reprocess", post(deliveries::reprocess))
        .route("/queue", get(queue::stats))
        .route("/queue/dead", get(queue::dead_letters))
        .route("/queue/dead/{id}/requeue", post(queue::requeue))
        .layer(DefaultBodyLimit::max(body_limit))
        .route_layer(from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// `Path`, with rejections answered as JSON errors.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ApiPath<T>(pub(crate) T);

/// `Query`, with rejections answered as JSON errors naming the parameter.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub(crate) T);

/// The raw body, with rejections (too large…) answered as JSON errors.
pub(crate) struct ApiBody(pub(crate) axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(axum::body::Bytes::from_request(request, state).await?))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

/// The most items one listing returns.
const MAX_LIMIT: u32 = 1000;
/// Items a listing returns when `limit` is not given.
const DEFAULT_LIMIT: u32 = 100;

/// Parses a `limit` query parameter: 1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
pub(crate) fn parse_limit(value: Option<&str>) -> Result<u32, ApiError> {
    match non_empty(value) {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "query parameter `limit` must be a whole number from 1 to {MAX_LIMIT}, got `{text}`"
                ))
            }),
    }
}

/// `None` for an absent or empty parameter (`?repository=` means "any").
pub(crate) fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

/// Parses an id from the path, saying what it should look like when it is not one.
pub(crate) fn parse_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "`{text}` is not a {what} id; {what} ids are UUIDs like 0190e4f4-5e4a-7c3b-8a9d-2f1e3d4c5b6a"
        ))
    })
}
