//! [`OctocrabGitHub`]: the [`GitHub`] trait over the real REST API.
//!
//! Requests go through [`octocrab`] on a `reqwest` transport, which gives proxy support
//! (`HTTPS_PROXY`, `NO_PROXY`…) that octocrab's default hyper client lacks. Octocrab's own
//! middleware stack is not used: this module sets every header itself and runs its own
//! retry loop, because the retry rules (rate-limit headers, `Retry-After`, GitHub's error
//! messages) are part of the [`GitHub`] contract.

use super::config::{GitHubConfig, ProxySettings};
use super::request::{ApiRequest, created_id};
use super::{
    CheckRunUpdate, CommitStatus, GitHub, GitHubError, NewCheckRun, ReactionTarget, RepoRef,
};
use async_trait::async_trait;
use hamster_core::redact::Redactor;
use http::StatusCode;
use http::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use octocrab::service::middleware::reqwest_connector::ReqwestConnector;
use octocrab::{AuthState, Octocrab, OctocrabBuilder};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The media type GitHub recommends for REST calls.
const GITHUB_JSON: &str = "application/vnd.github+json";
/// Longest slice of a non-JSON error body quoted in an error message.
const MAX_QUOTED_BODY: usize = 200;
/// `rate_limit_remaining` before any response carried the header.
const UNKNOWN: u64 = u64::MAX;

/// Counters for metrics, as returned by [`OctocrabGitHub::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Calls that succeeded (possibly after retries).
    pub succeeded: u64,
    /// Calls GitHub refused with a 4xx ([`GitHubError::Refused`]).
    pub refused: u64,
    /// Calls given up after retries or because of a too-long rate-limit wait
    /// ([`GitHubError::Unavailable`]).
    pub unavailable: u64,
    /// Calls that failed otherwise (unreadable response, request that cannot be built).
    pub failed: u64,
    /// Attempts beyond the first, over all calls.
    pub retries: u64,
    /// Responses that said the client was rate limited.
    pub rate_limited: u64,
    /// The last `x-ratelimit-remaining` GitHub sent, if any response had one.
    pub rate_limit_remaining: Option<u64>,
}

#[derive(Debug)]
struct Counters {
    succeeded: AtomicU64,
    refused: AtomicU64,
    unavailable: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    rate_limit_remaining: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            succeeded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            rate_limit_remaining: AtomicU64::new(UNKNOWN),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The GitHub REST API client.
///
/// Every call is retried on 5xx, network errors and rate limiting, with exponential
/// backoff and jitter, following `Retry-After` and `x-ratelimit-reset` when GitHub sends
/// them; other 4xx fail at once with GitHub's message. The token never appears in an
/// error, a log line or this type's `Debug`.
#[derive(Debug)]
pub struct OctocrabGitHub {
    octocrab: Octocrab,
    base_url: String,
    user_agent: HeaderValue,
    /// Marked sensitive, so its `Debug` prints `Sensitive`.
    authorization: HeaderValue,
    retry: super::config::RetryPolicy,
    redactor: Redactor,
    counters: Counters,
}

impl OctocrabGitHub {
    /// A client for `config`. Needs a token, and must be called inside a Tokio runtime
    /// (octocrab spawns its request buffer there).
    pub fn new(config: &GitHubConfig) -> Result<Self, GitHubError> {
        let token = config.token().ok_or_else(|| {
            GitHubError::Config(format!(
                "no API token: set {} or call GitHubConfigBuilder::token",
                super::config::TOKEN_VAR
            ))
        })?;
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                GitHubError::Config(
                    "the API token contains characters not allowed in an HTTP header (a stray newline?)"
                        .into(),
                )
            })?;
        authorization.set_sensitive(true);
        let user_agent = HeaderValue::try_from(config.user_agent()).map_err(|_| {
            GitHubError::Config(format!(
                "the user agent {:?} is not a valid HTTP header value",
                config.user_agent()
            ))
        })?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(GitHubError::Config(
                "create the GitHub client inside a Tokio runtime".into(),
            ));
        }
        let http_client = http_client(config)?;
        let octocrab = OctocrabBuilder::new_empty()
            .with_service(ReqwestConnector::new(http_client))
            .with_auth(AuthState::None)
            .build()
            .map_err(|never| match never {})?;
        Ok(Self {
            octocrab,
            base_url: config.base_url().to_owned(),
            user_agent,
            authorization,
            retry: config.retry(),
            redactor: Redactor::new([token.expose_secret()]),
            counters: Counters::default(),
        })
    }

    /// A client configured from the environment (see [`GitHubConfig::from_env`]).
    pub fn from_env() -> Result<Self, GitHubError> {
        let config = GitHubConfig::from_env().map_err(|e| GitHubError::Config(e.to_string()))?;
        Self::new(&config)
    }

    /// Call counts by outcome and the last seen `x-ratelimit-remaining`.
    pub fn stats(&self) -> ClientStats {
        let c = &self.counters;
        let remaining = c.rate_limit_remaining.load(Ordering::Relaxed);
        ClientStats {
            succeeded: c.succeeded.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            unavailable: c.unavailable.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            rate_limit_remaining: (remaining != UNKNOWN).then_some(remaining),
        }
    }

    /// Sends `request` with retries and returns the response's JSON (`Null` when empty).
    /// This is what every [`GitHub`] method does; it is public so that recorded calls
    /// (see [`RecordingGitHub`](super::RecordingGitHub)) can be replayed.
    pub async fn send(&self, request: &ApiRequest) -> Result<Value, GitHubError> {
        let result = self.send_with_retries(request).await;
        let counter = match &result {
            Ok(_) => &self.counters.succeeded,
            Err(GitHubError::Refused { .. }) => &self.counters.refused,
            Err(GitHubError::Unavailable { .. }) => &self.counters.unavailable,
            Err(_) => &self.counters.failed,
        };
        bump(counter);
        result
    }

    async fn send_with_retries(&self, request: &ApiRequest) -> Result<Value, GitHubError> {
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (message, mandated_wait) = match self.attempt(request).await? {
                Verdict::Success(value) => {
                    tracing::debug!(method = %request.method, path = %request.path, attempt, "GitHub call succeeded");
                    return Ok(value);
                }
                Verdict::Refused { status, message } => {
                    return Err(GitHubError::Refused {
                        method: request.method.to_string(),
                        path: request.path.clone(),
                        status,
                        message,
                    });
                }
                Verdict::Decode(message) => {
                    return Err(GitHubError::Decode {
                        path: request.path.clone(),
                        message,
                    });
                }
                Verdict::Retry { message, wait } => (message, wait),
            };
            let unavailable = |message: String| GitHubError::Unavailable {
                method: request.method.to_string(),
                path: request.path.clone(),
                attempts: attempt,
                message,
            };
            if attempt >= max_attempts {
                return Err(unavailable(message));
            }
            let delay = match mandated_wait {
                Some(wait) if wait > self.retry.max_rate_limit_wait => {
                    return Err(unavailable(format!(
                        "{message}; GitHub asks to wait {}s, more than the configured maximum of {}s",
                        wait.as_secs(),
                        self.retry.max_rate_limit_wait.as_secs()
                    )));
                }
                Some(wait) => wait,
                None => with_jitter(self.retry.backoff(attempt)),
            };
            bump(&self.counters.retries);
            tracing::warn!(
                method = %request.method,
                path = %request.path,
                attempt,
                max_attempts,
                delay_ms = delay.as_millis() as u64,
                reason = %message,
                "GitHub call failed, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt. `Err` only for requests that cannot even be built (not retryable).
    async fn attempt(&self, request: &ApiRequest) -> Result<Verdict, GitHubError> {
        let builder = http::Request::builder()
            .method(request.method.clone())
            .uri(format!("{}{}", self.base_url, request.path))
            .header(ACCEPT, GITHUB_JSON)
            .header(USER_AGENT, self.user_agent.clone())
            .header(AUTHORIZATION, self.authorization.clone());
        // `build_request` adds `X-GitHub-Api-Version` and the JSON content type.
        let http_request = self
            .octocrab
            .build_request(builder, request.body.as_ref())
            .map_err(|e| {
                GitHubError::Config(format!(
                    "cannot build {} {}: {}",
                    request.method,
                    request.path,
                    self.describe(&e)
                ))
            })?;
        let response = match self.octocrab.execute(http_request).await {
            Ok(response) => response,
            Err(error) => {
                return Ok(Verdict::Retry {
                    message: self.describe(&error),
                    wait: None,
                });
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(remaining) = header_u64(&headers, "x-ratelimit-remaining") {
            self.counters
                .rate_limit_remaining
                .store(remaining, Ordering::Relaxed);
        }
        let body = match self.octocrab.body_to_string(response).await {
            Ok(body) => body,
            Err(error) => {
                return Ok(Verdict::Retry {
                    message: format!("reading the response: {}", self.describe(&error)),
                    wait: None,
                });
            }
        };
        let verdict = classify(request, status, &headers, &body, SystemTime::now());
        // 403 and 429 are retried only when they are rate limiting.
        if matches!(verdict, Verdict::Retry { .. })
            && matches!(
                status,
                StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
            )
        {
            bump(&self.counters.rate_limited);
        }
        Ok(match verdict {
            Verdict::Refused { status, message } => Verdict::Refused {
                status,
                message: self.redactor.redact(&message),
            },
            Verdict::Retry { message, wait } => Verdict::Retry {
                message: self.redactor.redact(&message),
                wait,
            },
            other => other,
        })
    }

    /// An error and its causes on one line, with the token redacted.
    fn describe(&self, error: &(dyn std::error::Error + 'static)) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        self.redactor.redact(&text)
    }
}

/// The reqwest client: timeouts, and proxies from the configuration only (the process
/// environment was already read into it by [`GitHubConfig::from_env`]).
fn http_client(config: &GitHubConfig) -> Result<reqwest::Client, GitHubError> {
    ensure_crypto_provider();
    let ProxySettings {
        https_proxy,
        http_proxy,
        no_proxy,
    } = config.proxy();
    let no_proxy = no_proxy.as_deref().and_then(reqwest::NoProxy::from_string);
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(config.connect_timeout())
        .timeout(config.request_timeout());
    // Proxy URLs may carry credentials: errors name the setting, never the URL.
    if let Some(url) = https_proxy {
        let proxy = reqwest::Proxy::https(url.as_str())
            .map_err(|_| GitHubError::Config("HTTPS_PROXY is not a usable proxy URL".into()))?;
        builder = builder.proxy(proxy.no_proxy(no_proxy.clone()));
    }
    if let Some(url) = http_proxy {
        let proxy = reqwest::Proxy::http(url.as_str())
            .map_err(|_| GitHubError::Config("HTTP_PROXY is not a usable proxy URL".into()))?;
        builder = builder.proxy(proxy.no_proxy(no_proxy));
    }
    builder
        .build()
        .map_err(|e| GitHubError::Config(format!("cannot create the HTTP client: {e}")))
}

/// reqwest is built without a bundled crypto provider (to use ring, like the rest of the
/// workspace, rather than aws-lc): install ring unless the application chose one.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// What one response means for the call.
#[derive(Debug, PartialEq)]
enum Verdict {
    Success(Value),
    Refused {
        status: u16,
        message: String,
    },
    /// Retryable; `wait` is what rate limiting mandates, `None` means "use the backoff".
    Retry {
        message: String,
        wait: Option<Duration>,
    },
    Decode(String),
}

fn classify(
    request: &ApiRequest,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: SystemTime,
) -> Verdict {
    if status.is_success() {
        if body.trim().is_empty() {
            return Verdict::Success(Value::Null);
        }
        return match serde_json::from_str(body) {
            Ok(value) => Verdict::Success(value),
            Err(e) => Verdict::Decode(format!("the {status} response is not JSON: {e}")),
        };
    }
    if status == StatusCode::NOT_FOUND && request.not_found_is_success {
        return Verdict::Success(Value::Null);
    }
    let message = github_message(status, body);
    if let Some(wait) = rate_limit(status, headers, &message, now) {
        return Verdict::Retry {
            message: format!("rate limited ({status}): {message}"),
            wait,
        };
    }
    if status.is_server_error() {
        return Verdict::Retry {
            message: format!("{status}: {message}"),
            wait: None,
        };
    }
    Verdict::Refused {
        status: status.as_u16(),
        message,
    }
}

/// `Some(wait)` when the response says the client is rate limited: `Some(Some(d))` when
/// GitHub says how long to wait, `Some(None)` when the backoff should decide.
fn rate_limit(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: SystemTime,
) -> Option<Option<Duration>> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    if let Some(seconds) = header_u64(headers, "retry-after") {
        return Some(Some(Duration::from_secs(seconds)));
    }
    if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
        let wait = header_u64(headers, "x-ratelimit-reset").map(|reset| {
            let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            // At least a second: the reset time has one-second resolution and clocks drift.
            Duration::from_secs(reset.saturating_sub(now).max(1))
        });
        return Some(wait);
    }
    // Secondary rate limits may come as a bare 403 whose message says so.
    if status == StatusCode::TOO_MANY_REQUESTS
        || message.to_ascii_lowercase().contains("rate limit")
    {
        return Some(None);
    }
    None
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// GitHub's `message`, with the details of its `errors` array (422s say there what is
/// invalid); the raw body, shortened, when it is not GitHub's JSON.
fn github_message(status: StatusCode, body: &str) -> String {
    let Ok(json) = serde_json::from_str::<Value>(body) else {
        let body = body.trim();
        if body.is_empty() {
            return status.canonical_reason().unwrap_or("no message").to_owned();
        }
        let mut quoted: String = body.chars().take(MAX_QUOTED_BODY).collect();
        if quoted.len() < body.len() {
            quoted.push('…');
        }
        return quoted;
    };
    let mut message = json
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message"))
        .to_owned();
    let details: Vec<String> = json
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(error_detail)
        .collect();
    if !details.is_empty() {
        message = format!("{message} ({})", details.join("; "));
    }
    message
}

fn error_detail(error: &Value) -> Option<String> {
    if let Some(text) = error.as_str() {
        return Some(text.to_owned());
    }
    if let Some(text) = error.get("message").and_then(Value::as_str) {
        return Some(text.to_owned());
    }
    let field = |key: &str| error.get(key).and_then(Value::as_str);
    match (field("resource"), field("field"), field("code")) {
        (Some(resource), Some(name), Some(code)) => Some(format!("{resource}.{name}: {code}")),
        (_, Some(name), Some(code)) => Some(format!("{name}: {code}")),
        (_, _, Some(code)) => Some(code.to_owned()),
        _ => None,
    }
}

/// Somewhere in the upper half of `backoff`, so that clients failing together do not
/// retry together.
fn with_jitter(backoff: Duration) -> Duration {
    let millis = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
    let half = millis / 2;
    Duration::from_millis(half + fastrand::u64(0..=millis - half))
}

#[async_trait]
impl GitHub for OctocrabGitHub {
    async fn create_comment(
        &self,
        repo: &RepoRef,
        number: u64,
        body: &str,
    ) -> Result<u64, GitHubError> {
        let request = ApiRequest::create_comment(repo, number, body);
        let response = self.send(&request).await?;
        created_id(&request, &response)
    }

    async fn set_commit_status(
        &self,
        repo: &RepoRef,
        sha: &str,
        status: &CommitStatus,
    ) -> Result<(), GitHubError> {
        self.send(&ApiRequest::set_commit_status(repo, sha, status))
            .await
            .map(drop)
    }

    async fn create_check_run(
        &self,
        repo: &RepoRef,
        check: &NewCheckRun,
    ) -> Result<u64, GitHubError> {
        let request = ApiRequest::create_check_run(repo, check);
        let response = self.send(&request).await?;
        created_id(&request, &response)
    }

    async fn update_check_run(
        &self,
        repo: &RepoRef,
        check_run_id: u64,
        update: &CheckRunUpdate,
    ) -> Result<(), GitHubError> {
        self.send(&ApiRequest::update_check_run(repo, check_run_id, update))
            .await
            .map(drop)
    }

    async fn add_labels(
        &self,
        repo: &RepoRef,
        number: u64,
        labels: &[String],
    ) -> Result<(), GitHubError> {
        self.send(&ApiRequest::add_labels(repo, number, labels))
            .await
            .map(drop)
    }

    async fn remove_label(
        &self,
        repo: &RepoRef,
        number: u64,
        label: &str,
    ) -> Result<(), GitHubError> {
        self.send(&ApiRequest::remove_label(repo, number, label))
            .await
            .map(drop)
    }

    async fn add_reaction(
        &self,
        repo: &RepoRef,
        target: ReactionTarget,
        content: &str,
    ) -> Result<(), GitHubError> {
        self.send(&ApiRequest::add_reaction(repo, target, content))
            .await
            .map(drop)
    }

    async fn get_pull_request(&self, repo: &RepoRef, number: u64) -> Result<Value, GitHubError> {
        let request = ApiRequest::get_pull_request(repo, number);
        let response = self.send(&request).await?;
        if response.is_object() {
            Ok(response)
        } else {
            Err(GitHubError::Decode {
                path: request.path,
                message: "expected a pull request object".into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::header::HeaderName::from_static(name),
                    HeaderValue::from_str(value).expect("valid header"),
                )
            })
            .collect()
    }

    fn comment() -> ApiRequest {
        ApiRequest::create_comment(&RepoRef::new("o", "r"), 1, "hi")
    }

    #[test]
    fn rate_limit_reset_sets_the_wait() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let verdict = classify(
            &comment(),
            StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1042"),
            ]),
            r#"{"message":"API rate limit exceeded"}"#,
            now,
        );
        assert_eq!(
            verdict,
            Verdict::Retry {
                message: "rate limited (403 Forbidden): API rate limit exceeded".into(),
                wait: Some(Duration::from_secs(42)),
            }
        );
    }

    #[test]
    fn past_reset_still_waits_a_second() {
        let now = UNIX_EPOCH + Duration::from_secs(2_000);
        let wait = rate_limit(
            StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1990"),
            ]),
            "",
            now,
        );
        assert_eq!(wait, Some(Some(Duration::from_secs(1))));
    }

    #[test]
    fn plain_403_is_refused_but_secondary_rate_limit_is_retried() {
        let now = SystemTime::now();
        let refused = classify(
            &comment(),
            StatusCode::FORBIDDEN,
            &headers(&[("x-ratelimit-remaining", "4999")]),
            r#"{"message":"Resource not accessible by integration"}"#,
            now,
        );
        assert_eq!(
            refused,
            Verdict::Refused {
                status: 403,
                message: "Resource not accessible by integration".into()
            }
        );
        let secondary = classify(
            &comment(),
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            r#"{"message":"You have exceeded a secondary rate limit."}"#,
            now,
        );
        assert!(
            matches!(secondary, Verdict::Retry { wait: None, .. }),
            "{secondary:?}"
        );
    }

    #[test]
    fn validation_errors_are_spelled_out() {
        let body = json!({
            "message": "Validation Failed",
            "errors": [{"resource": "Label", "field": "name", "code": "invalid"}, "bad thing"],
        })
        .to_string();
        assert_eq!(
            github_message(StatusCode::UNPROCESSABLE_ENTITY, &body),
            "Validation Failed (Label.name: invalid; bad thing)"
        );
        assert_eq!(github_message(StatusCode::BAD_GATEWAY, "  "), "Bad Gateway");
    }

    #[test]
    fn absent_label_is_success_and_empty_body_is_null() {
        let request = ApiRequest::remove_label(&RepoRef::new("o", "r"), 1, "bug");
        let verdict = classify(
            &request,
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            "{}",
            SystemTime::now(),
        );
        assert_eq!(verdict, Verdict::Success(Value::Null));
        let other = classify(
            &comment(),
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            "{}",
            SystemTime::now(),
        );
        assert!(
            matches!(other, Verdict::Refused { status: 404, .. }),
            "{other:?}"
        );
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        for _ in 0..200 {
            let jittered = with_jitter(Duration::from_millis(1_000));
            assert!(
                (500..=1_000).contains(&jittered.as_millis()),
                "{jittered:?}"
            );
        }
    }
}
