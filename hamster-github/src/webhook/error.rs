//! Why a delivery was refused.

use http::StatusCode;

/// Why a webhook delivery was refused.
///
/// Signature problems ([`is_unauthorized`](WebhookError::is_unauthorized)) mean the request
/// may not come from GitHub and should be answered with `401`; everything else is a malformed
/// request (`400`). [`status_code`](WebhookError::status_code) gives the answer to send.
/// Messages never contain the webhook secret, nor the body.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A secret is configured but the delivery has no `X-Hub-Signature-256` header.
    #[error(
        "delivery has no X-Hub-Signature-256 header, but a webhook secret is configured: \
         set the same secret on the GitHub webhook, or configure no secret here"
    )]
    MissingSignature,
    /// The `X-Hub-Signature-256` header is not `sha256=` followed by 64 hex digits.
    #[error(
        "X-Hub-Signature-256 header is malformed ({reason}); \
         expected `sha256=` followed by 64 hex digits"
    )]
    MalformedSignature {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signature does not match the body: the secret differs from GitHub's, or the body
    /// was altered on the way.
    #[error(
        "X-Hub-Signature-256 does not match the body: check that the webhook secret here is \
         the one set on the GitHub webhook, and that no proxy rewrites the body"
    )]
    SignatureMismatch,
    /// A required header is absent.
    #[error("delivery has no {name} header; is this request really from a GitHub webhook?")]
    MissingHeader {
        /// The header's name.
        name: &'static str,
    },
    /// A header has a value this parser cannot accept.
    #[error("delivery header {name} is invalid: {reason}")]
    InvalidHeader {
        /// The header's name.
        name: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// An `application/x-www-form-urlencoded` body has no `payload` field.
    #[error(
        "form-encoded delivery has no `payload` field; \
         set the webhook's content type to application/json"
    )]
    MissingFormPayload,
    /// The body (or the form's `payload` field) is not valid JSON.
    #[error("delivery body is not valid JSON at line {line}, column {column}: {reason}")]
    MalformedBody {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser expected.
        reason: String,
    },
    /// The body is JSON but not an object.
    #[error("delivery body is JSON {found}, but GitHub sends a JSON object")]
    NotAnObject {
        /// What the body is instead (`an array`, `a string`…).
        found: &'static str,
    },
}

impl WebhookError {
    /// Whether the delivery failed authentication (answer `401`) rather than being malformed.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            Self::MissingSignature | Self::MalformedSignature { .. } | Self::SignatureMismatch
        )
    }

    /// The HTTP status to answer the delivery with: `401` or `400`.
    pub fn status_code(&self) -> StatusCode {
        if self.is_unauthorized() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        }
    }

    pub(crate) fn from_json(error: &serde_json::Error) -> Self {
        // serde_json's Display appends " at line L column C"; keep only what went wrong.
        let message = error.to_string();
        let reason = match message.rfind(" at line ") {
            Some(position) => message[..position].to_owned(),
            None => message,
        };
        Self::MalformedBody {
            line: error.line(),
            column: error.column(),
            reason,
        }
    }
}
