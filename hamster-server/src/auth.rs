//! Bearer-token authentication for `/api`.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The accepted tokens, kept only as SHA-256 digests: comparing digests of equal length in
/// constant time reveals neither a token nor its length.
pub(crate) struct ApiTokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTokens")
            .field("count", &self.digests.len())
            .finish()
    }
}

impl ApiTokens {
    pub(crate) fn new(tokens: &[String]) -> Self {
        Self {
            digests: tokens
                .iter()
                .map(|token| token.trim())
                .filter(|token| !token.is_empty())
                .map(|token| Sha256::digest(token.as_bytes()).into())
                .collect(),
        }
    }

    /// Whether `presented` is one of the tokens. Every token is compared, so the time taken
    /// does not say which one matched either.
    fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, accepted| {
                found | accepted.ct_eq(&digest)
            })
            .into()
    }
}

/// Refuses `/api` requests without a valid `Authorization: Bearer <token>`.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.tokens.digests.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the API is disabled because no API token is configured; set HAMSTER_API_TOKEN \
             and send it as `Authorization: Bearer <token>`",
        ));
    }
    let Some(header) = request.headers().get(AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>` header; send one of the configured API tokens",
        ));
    };
    let token = header
        .to_str()
        .ok()
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the Authorization header must be `Bearer <token>`",
            )
        })?;
    if !state.tokens.accepts(token) {
        tracing::debug!("API request with an invalid token");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid API token; send one of the tokens configured in HAMSTER_API_TOKEN",
        ));
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_tokens() {
        let tokens = ApiTokens::new(&["alpha".to_owned(), " beta ".to_owned(), String::new()]);
        assert!(tokens.accepts("alpha"));
        assert!(tokens.accepts("beta"));
        assert!(!tokens.accepts(""));
        assert!(!tokens.accepts("alph"));
        assert!(!tokens.accepts("alphaa"));
        assert_eq!(tokens.digests.len(), 2);
    }
}
