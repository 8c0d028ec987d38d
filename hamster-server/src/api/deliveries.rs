//! `/api/deliveries`: list, show, re-process.

use super::{ApiPath, ApiQuery, parse_limit};
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhook::DispatchAnswer;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hamster_core::event::{Event, EventRecord};
use hamster_core::store::{DeliveryRecord, RunId};
use hamster_github::WebhookParser;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

#[derive(Deserialize)]
pub(crate) struct LimitQuery {
    limit: Option<String>,
}

/// A delivery without its body.
#[derive(Serialize)]
struct DeliverySummary<'a> {
    id: &'a str,
    event: &'a str,
    received_at: DateTime<Utc>,
    headers: &'a BTreeMap<String, String>,
    run_ids: &'a [RunId],
    body_bytes: usize,
}

impl<'a> From<&'a DeliveryRecord> for DeliverySummary<'a> {
    fn from(delivery: &'a DeliveryRecord) -> Self {
        Self {
            id: &delivery.id,
            event: &delivery.event,
            received_at: delivery.received_at,
            headers: &delivery.headers,
            run_ids: &delivery.run_ids,
            body_bytes: delivery.body.len(),
        }
    }
}

#[derive(Serialize)]
struct DeliveriesAnswer<'a> {
    deliveries: Vec<DeliverySummary<'a>>,
}

/// `GET /api/deliveries?limit=`: newest first, without bodies.
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<Response, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let deliveries = state.engine.store().list_deliveries(limit).await?;
    let answer = DeliveriesAnswer {
        deliveries: deliveries.iter().map(DeliverySummary::from).collect(),
    };
    Ok(Json(answer).into_response())
}

/// A delivery's body as sent: JSON inline, anything else (form-encoded) as a string.
#[derive(Serialize)]
#[serde(untagged)]
enum BodyView<'a> {
    Json(&'a RawValue),
    Text(std::borrow::Cow<'a, str>),
}

#[derive(Serialize)]
struct DeliveryAnswer<'a> {
    #[serde(flatten)]
    summary: DeliverySummary<'a>,
    body: BodyView<'a>,
}

/// `GET /api/deliveries/{id}`: the delivery with its body.
pub(crate) async fn get_one(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let delivery = find(&state, &id).await?;
    // Embedded as is: the body was JSON on arrival, and re-encoding 25 KB per view is waste.
    let body = match serde_json::from_slice::<&RawValue>(&delivery.body) {
        Ok(raw) => BodyView::Json(raw),
        Err(_) => BodyView::Text(String::from_utf8_lossy(&delivery.body)),
    };
    let answer = DeliveryAnswer {
        summary: DeliverySummary::from(&delivery),
        body,
    };
    Ok(Json(answer).into_response())
}

/// `POST /api/deliveries/{id}/reprocess`: matches the stored delivery against today's
/// handlers and creates the runs that match. The signature is not checked again: it was
/// verified on arrival, and the stored body is the one that was verified.
pub(crate) async fn reprocess(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let delivery = find(&state, &id).await?;
    let headers = header_map(&delivery.headers);
    let parsed = WebhookParser::new(None)
        .parse(&headers, &delivery.body)
        .map_err(|error| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("stored delivery {id} cannot be parsed any more: {error}"),
            )
        })?;
    if parsed.is_ping() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("delivery {id} is a ping; there is nothing to re-process"),
        ));
    }
    let events: Vec<EventRecord> = parsed.events.iter().map(Event::to_record).collect();
    let dispatch = state.engine.reprocess(&id, &events).await?;
    state.metrics.runs_created(dispatch.runs.len());
    tracing::info!(delivery = %id, runs = dispatch.runs.len(), "delivery re-processed");
    let answer = DispatchAnswer::new(&id, &dispatch);
    Ok((answer.status(), Json(&answer)).into_response())
}

async fn find(state: &AppState, id: &str) -> Result<DeliveryRecord, ApiError> {
    state.engine.store().get_delivery(id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "delivery `{id}` does not exist; GET /api/deliveries lists them"
        ))
    })
}

fn header_map(headers: &BTreeMap<String, String>) -> HeaderMap {
    headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value).ok()?,
            ))
        })
        .collect()
}
