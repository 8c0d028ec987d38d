//! `/api/handlers`: list, show, create or update (YAML or JSON), enable, disable, delete.

use super::{ApiBody, ApiPath};
use crate::error::{ApiError, HandlerProblem};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hamster_core::handler::load_str;
use hamster_core::store::HandlerRecord;
use serde::Serialize;

/// How handler text from the API is named in diagnostics.
const ORIGIN: &str = "<api>";

#[derive(Serialize)]
pub(crate) struct HandlersAnswer {
    handlers: Vec<HandlerRecord>,
}

/// `GET /api/handlers`: every handler, by name.
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<HandlersAnswer>, ApiError> {
    let handlers = state.engine.store().list_handlers().await?;
    Ok(Json(HandlersAnswer { handlers }))
}

/// `GET /api/handlers/{name}`.
pub(crate) async fn get_one(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<HandlerRecord>, ApiError> {
    Ok(Json(find(&state, &name).await?))
}

/// `POST /api/handlers`: creates or updates every handler in the body, by name.
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    put(&state, &headers, &body, None).await
}

/// `PUT /api/handlers/{name}`: creates or updates one handler; the body must be that handler.
pub(crate) async fn replace(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    put(&state, &headers, &body, Some(&name)).await
}

/// `POST /api/handlers/{name}/enable`.
pub(crate) async fn enable(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<HandlerRecord>, ApiError> {
    set_enabled(&state, &name, true).await
}

/// `POST /api/handlers/{name}/disable`.
pub(crate) async fn disable(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<HandlerRecord>, ApiError> {
    set_enabled(&state, &name, false).await
}

/// `DELETE /api/handlers/{name}`: `204`; the handler's runs are kept.
pub(crate) async fn delete(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let handler = find(&state, &name).await?;
    if !state.engine.store().delete_handler(handler.id).await? {
        return Err(not_found(&name));
    }
    state.engine.handlers_changed();
    tracing::info!(handler = %name, "handler deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn set_enabled(
    state: &AppState,
    name: &str,
    enabled: bool,
) -> Result<Json<HandlerRecord>, ApiError> {
    let handler = find(state, name).await?;
    let record = state
        .engine
        .store()
        .set_handler_enabled(handler.id, enabled)
        .await?;
    state.engine.handlers_changed();
    tracing::info!(handler = %name, enabled, "handler switched");
    Ok(Json(record))
}

async fn find(state: &AppState, name: &str) -> Result<HandlerRecord, ApiError> {
    state
        .engine
        .store()
        .get_handler_by_name(name)
        .await?
        .ok_or_else(|| not_found(name))
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "handler `{name}` does not exist; GET /api/handlers lists them"
    ))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

/// JSON by `Content-Type`; YAML for YAML types, `text/plain` or no type.
fn body_format(headers: &HeaderMap) -> Result<Format, ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(Format::Yaml);
    };
    let mime = value
        .to_str()
        .ok()
        .and_then(|value| value.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match mime.as_str() {
        "application/json" => Ok(Format::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" | "text/plain" => {
            Ok(Format::Yaml)
        }
        _ if mime.ends_with("+json") => Ok(Format::Json),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type `{mime}`; send handlers as application/yaml or application/json"
            ),
        )),
    }
}

async fn put(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    expected_name: Option<&str>,
) -> Result<Response, ApiError> {
    let format = body_format(headers)?;
    let text = std::str::from_utf8(body).map_err(|error| {
        ApiError::bad_request(format!(
            "the body is not UTF-8 text (invalid byte at offset {}); send YAML or JSON",
            error.valid_up_to()
        ))
    })?;
    if format == Format::Json {
        // YAML reads JSON too, but a JSON body deserves a JSON parser's diagnosis.
        if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            return Err(json_syntax_error(&error));
        }
    }
    let loaded = load_str(text, ORIGIN, state.engine.registry())
        .map_err(|errors| ApiError::invalid_handlers(&errors))?;
    if let Some(expected) = expected_name {
        let names: Vec<&str> = loaded.iter().map(|h| h.spec.name.as_str()).collect();
        if names != [expected] {
            return Err(name_mismatch(expected, &names));
        }
    }
    let store = state.engine.store();
    let mut created = false;
    let mut handlers = Vec::with_capacity(loaded.len());
    for handler in loaded {
        let exists = store
            .get_handler_by_name(&handler.spec.name)
            .await?
            .is_some();
        created |= !exists;
        let record = state.engine.put_loaded(handler).await?;
        tracing::info!(handler = %record.name, version = record.version, "handler stored");
        handlers.push(record);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(HandlersAnswer { handlers })).into_response())
}

fn json_syntax_error(error: &serde_json::Error) -> ApiError {
    let mut answer = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "the body is not valid JSON; nothing was stored",
    );
    let message = error.to_string();
    let reason = message
        .rfind(" at line ")
        .map_or(message.as_str(), |position| &message[..position]);
    answer.errors.push(HandlerProblem {
        line: Some(error.line()),
        column: Some(error.column()),
        pointer: String::new(),
        handler: None,
        message: format!("invalid JSON: {reason}"),
    });
    answer
}

fn name_mismatch(expected: &str, found: &[&str]) -> ApiError {
    let message = match found {
        [one] => format!(
            "the body defines handler `{one}` but the URL names `{expected}`; \
             PUT a handler to its own name, or rename it with POST /api/handlers"
        ),
        _ => format!(
            "PUT /api/handlers/{expected} takes exactly one handler, named `{expected}`, \
             but the body defines {}; use POST /api/handlers for several",
            found.len()
        ),
    };
    let mut answer = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message.clone());
    answer.errors.push(HandlerProblem {
        line: None,
        column: None,
        pointer: "/name".to_owned(),
        handler: found.first().map(|name| (*name).to_owned()),
        message,
    });
    answer
}
