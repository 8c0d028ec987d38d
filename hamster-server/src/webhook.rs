//! `POST /webhooks/github`: verify, parse once, record durably, enqueue, answer.

use crate::error::ApiError;
use crate::metrics::DeliveryOutcome;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use hamster_core::engine::{Dispatch, EngineError, Unmatched};
use hamster_core::store::{DeliveryRecord, RunId};
use hamster_github::webhook::{DELIVERY_HEADER, EVENT_HEADER, HOOK_ID_HEADER, SIGNATURE_HEADER};
use serde::Serialize;
use std::collections::BTreeMap;

/// The headers kept with a delivery: what re-processing and people looking at it need.
const KEPT_HEADERS: [&str; 6] = [
    EVENT_HEADER,
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    HOOK_ID_HEADER,
    "content-type",
    "user-agent",
];

/// The metrics label for deliveries refused before their headers could be trusted: the event
/// header of an unverified request is whatever the sender wrote, and must not create series.
const UNVERIFIED: &str = "unverified";

pub(crate) fn router(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route("/webhooks/github", post(github_webhook))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// What a delivery created, or had created the first time it was received.
#[derive(Serialize)]
pub(crate) struct DispatchAnswer<'a> {
    pub(crate) delivery: &'a str,
    pub(crate) runs: &'a [RunId],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) duplicate: bool,
    /// Always shown when no run was created, so that the sender can see why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unmatched: Option<&'a [Unmatched]>,
}

impl<'a> DispatchAnswer<'a> {
    pub(crate) fn new(delivery: &'a str, dispatch: &'a Dispatch) -> Self {
        let show_unmatched = dispatch.runs.is_empty() || !dispatch.unmatched.is_empty();
        Self {
            delivery,
            runs: &dispatch.runs,
            duplicate: dispatch.duplicate,
            unmatched: (show_unmatched && !dispatch.duplicate).then_some(&dispatch.unmatched),
        }
    }

    /// `202` when runs exist (they will run), `200` otherwise.
    pub(crate) fn status(&self) -> StatusCode {
        if self.runs.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        }
    }
}

#[derive(Serialize)]
struct PingAnswer<'a> {
    delivery: &'a str,
    ping: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    zen: Option<&'a str>,
}

async fn github_webhook(State(state): State<AppState>, request: Request) -> Response {
    let received_at = Utc::now();
    // Refuse an announced oversize body before reading any of it.
    if content_length(request.headers()).is_some_and(|length| length > state.body_limit) {
        return too_large(&state);
    }
    let mut request = request;
    // The request keeps its extensions (the body limit) for the extractor.
    let headers = std::mem::take(request.headers_mut());
    let headers = &headers;
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(BytesRejection::FailedToBufferBody(rejection))
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
        {
            return too_large(&state);
        }
        Err(rejection) => {
            state
                .metrics
                .delivery(UNVERIFIED, DeliveryOutcome::Malformed);
            return ApiError::new(
                rejection.status(),
                format!(
                    "could not read the delivery body: {}",
                    rejection.body_text()
                ),
            )
            .into_response();
        }
    };

    let delivery = match state.parser.parse_for_intake(headers, &body) {
        Ok(delivery) => delivery,
        Err(error) => {
            let outcome = if error.is_unauthorized() {
                DeliveryOutcome::Unauthorized
            } else {
                DeliveryOutcome::Malformed
            };
            state.metrics.delivery(UNVERIFIED, outcome);
            tracing::warn!(%error, "webhook delivery refused");
            return ApiError::new(error.status_code(), error.to_string()).into_response();
        }
    };
    if let Some(ping) = &delivery.ping {
        state
            .metrics
            .delivery(&delivery.event, DeliveryOutcome::Ping);
        tracing::info!(delivery = %delivery.id, hook_id = ?ping.hook_id, "webhook ping");
        let answer = PingAnswer {
            delivery: &delivery.id,
            ping: true,
            zen: ping.zen.as_deref(),
        };
        return (StatusCode::OK, Json(answer)).into_response();
    }

    // The records leave the payload out: it is the body, which moves into the delivery
    // record (without a copy when nothing else shares its buffer).
    let events = delivery.events;
    let record = DeliveryRecord {
        id: delivery.id.clone(),
        event: delivery.event.clone(),
        received_at,
        headers: kept_headers(headers),
        body: Vec::from(body),
        run_ids: Vec::new(),
        body_is_payload: delivery.body_is_payload,
    };
    match state.engine.dispatch(&events, Some(record)).await {
        Ok(dispatch) => {
            let outcome = if dispatch.duplicate {
                DeliveryOutcome::Duplicate
            } else if dispatch.runs.is_empty() {
                DeliveryOutcome::Unmatched
            } else {
                state.metrics.runs_created(dispatch.runs.len());
                DeliveryOutcome::Runs
            };
            state.metrics.delivery(&delivery.event, outcome);
            tracing::debug!(
                delivery = %delivery.id,
                event = %delivery.event,
                runs = dispatch.runs.len(),
                duplicate = dispatch.duplicate,
                "webhook delivery recorded"
            );
            let answer = DispatchAnswer::new(&delivery.id, &dispatch);
            (answer.status(), Json(&answer)).into_response()
        }
        // The parser checked the body; this is only for a body it could not have read.
        Err(error @ EngineError::PayloadNotJson { .. }) => {
            state
                .metrics
                .delivery(&delivery.event, DeliveryOutcome::Malformed);
            ApiError::from(error).into_response()
        }
        Err(error) => {
            state
                .metrics
                .delivery(&delivery.event, DeliveryOutcome::Unavailable);
            unavailable(&delivery.id, error).into_response()
        }
    }
}

/// The store or queue failed, so GitHub should see a failure. The queue fails only after
/// the delivery and its runs are recorded: those runs are queued by the appservers' sweep
/// for stranded runs. A store failure may have lost the delivery: someone can redeliver it
/// (a redelivery of a recorded one is a no-op).
fn unavailable(delivery: &str, error: EngineError) -> ApiError {
    tracing::error!(%delivery, %error, "webhook delivery could not be recorded and queued");
    let message = match &error {
        EngineError::Queue(error) => format!(
            "delivery {delivery} was recorded, but its runs could not be queued because the \
             queue failed ({error}); once the queue is back they are queued within a few \
             minutes by the appservers' sweep for stranded runs"
        ),
        EngineError::Store(error) => format!(
            "delivery {delivery} could not be recorded because the store failed ({error}); \
             redeliver it from GitHub once the store is back"
        ),
        other => {
            format!("delivery {delivery} could not be recorded ({other}); redeliver it from GitHub")
        }
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
}

fn too_large(state: &AppState) -> Response {
    state
        .metrics
        .delivery(UNVERIFIED, DeliveryOutcome::TooLarge);
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "delivery body is larger than the {} byte limit (GitHub never sends more than 25 MiB)",
            state.body_limit
        ),
    )
    .into_response()
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn kept_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    debug_assert_eq!(CONTENT_TYPE.as_str(), KEPT_HEADERS[4]);
    debug_assert_eq!(USER_AGENT.as_str(), KEPT_HEADERS[5]);
    KEPT_HEADERS
        .iter()
        .filter_map(|&name| {
            let value = headers.get(name)?.to_str().ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hamster_core::queue::QueueError;
    use hamster_core::store::StoreError;

    #[test]
    fn a_failed_queue_says_the_delivery_is_kept_and_its_runs_will_be_queued() {
        let error = unavailable(
            "d1",
            EngineError::Queue(QueueError::backend("connection refused")),
        );
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            error.message.starts_with("delivery d1 was recorded")
                && error.message.contains("connection refused")
                && error.message.contains("sweep"),
            "{}",
            error.message
        );
        assert!(!error.message.contains("redeliver"), "{}", error.message);
    }

    #[test]
    fn a_failed_store_asks_for_a_redelivery() {
        let error = unavailable("d1", EngineError::Store(StoreError::backend("timed out")));
        assert!(
            error
                .message
                .contains("could not be recorded because the store failed")
                && error.message.contains("redeliver it from GitHub"),
            "{}",
            error.message
        );
    }
}
