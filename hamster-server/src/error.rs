//! Error responses: JSON `{"error": "…"}` with the right status.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hamster_core::engine::EngineError;
use hamster_core::handler::{Diagnostic, HandlerErrors};
use hamster_core::queue::QueueError;
use hamster_core::store::StoreError;
use serde::Serialize;

/// An error answer: a status and a message saying what to fix, sent as
/// `{"error": "…"}` (plus `"errors"` for invalid handlers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
    /// Every problem found in an invalid handler, with where it is.
    pub errors: Vec<HandlerProblem>,
}

/// One problem in a handler, as sent by `422` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandlerProblem {
    /// 1-based line in the request body, when known.
    pub line: Option<usize>,
    /// 1-based column in the request body, when known.
    pub column: Option<usize>,
    /// JSON pointer of the offending value, e.g. `/actions/0/args`.
    pub pointer: String,
    /// The handler's name, when it could be read.
    pub handler: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl From<&Diagnostic> for HandlerProblem {
    fn from(diagnostic: &Diagnostic) -> Self {
        Self {
            line: diagnostic.position.map(|p| p.line),
            column: diagnostic.position.map(|p| p.column),
            pointer: diagnostic.pointer.clone(),
            handler: diagnostic.handler.clone(),
            message: diagnostic.message.clone(),
        }
    }
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    /// `400`: a request the client must fix.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// `404`: the thing asked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// `422` with every problem of an invalid handler.
    pub fn invalid_handlers(errors: &HandlerErrors) -> Self {
        let count = errors.0.len();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: format!(
                "the handler is invalid ({count} problem{}); nothing was stored",
                if count == 1 { "" } else { "s" }
            ),
            errors: errors.0.iter().map(HandlerProblem::from).collect(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let status = match &error {
            StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::HandlerExists(_) | StoreError::Conflict { .. } => StatusCode::CONFLICT,
            StoreError::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        logged(status, error.to_string())
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        let status = match &error {
            QueueError::NotFound(_) => StatusCode::NOT_FOUND,
            QueueError::LeaseLost(_) => StatusCode::CONFLICT,
            QueueError::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
            QueueError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        logged(status, error.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Store(error) => error.into(),
            EngineError::Queue(error) => error.into(),
            EngineError::Invalid(errors) => Self::invalid_handlers(&errors),
            EngineError::RunNotFound(id) => Self::not_found(format!("run {id} does not exist")),
            error @ EngineError::PayloadNotJson { .. } => {
                Self::new(StatusCode::BAD_REQUEST, error.to_string())
            }
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

/// Server-side failures are logged here, once, where they become answers.
fn logged(status: StatusCode, message: String) -> ApiError {
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), error = %message, "request failed");
    }
    ApiError::new(status, message)
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [HandlerProblem],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            errors: &self.errors,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
