//! How to reach the GitHub API: token, base URL, timeouts, retries and proxies.

use std::time::Duration;

/// The public GitHub API.
pub const GITHUB_API_URL: &str = "https://api.github.com";

/// Environment variable holding the API token.
pub const TOKEN_VAR: &str = "HAMSTER_GITHUB_API_TOKEN";
/// Environment variable holding the username used with the token for git over HTTPS.
pub const USERNAME_VAR: &str = "HAMSTER_GITHUB_API_USERNAME";
/// Environment variable naming a GitHub Enterprise Server host.
pub const HOST_VAR: &str = "HAMSTER_GITHUB_HOST";

/// A GitHub API token. Its `Debug` and `Display` print `[REDACTED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for an `Authorization` header or a git credential. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(hamster_core::redact::REDACTED)
    }
}

impl std::fmt::Display for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(hamster_core::redact::REDACTED)
    }
}

/// When and how long to retry failed calls (5xx, network errors, rate limiting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles with each retry, with jitter.
    pub base_backoff: Duration,
    /// Longest backoff between two attempts.
    pub max_backoff: Duration,
    /// Longest wait GitHub's rate limiting (`Retry-After`, `x-ratelimit-reset`) may impose
    /// before a retry; a call asked to wait longer fails at once instead of stalling.
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries: every call is attempted once.
    pub fn no_retries() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The backoff before retry number `retry` (1 for the first retry), before jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Proxies to use, as `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` describe them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// Proxy URL for `https://` API URLs.
    pub https_proxy: Option<String>,
    /// Proxy URL for `http://` API URLs (test servers, plain-HTTP Enterprise installs).
    pub http_proxy: Option<String>,
    /// Comma-separated hosts, domains (`.example.com` or `example.com`), IPs or CIDR
    /// ranges reached directly; `*` disables proxies.
    pub no_proxy: Option<String>,
}

impl std::fmt::Debug for ProxySettings {
    // Proxy URLs may carry credentials (`http://user:pass@proxy`): show only whether set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySettings")
            .field("https_proxy", &self.https_proxy.as_ref().map(|_| "[set]"))
            .field("http_proxy", &self.http_proxy.as_ref().map(|_| "[set]"))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl ProxySettings {
    /// Reads `HTTPS_PROXY`/`https_proxy`, `HTTP_PROXY`/`http_proxy` and
    /// `NO_PROXY`/`no_proxy` through `lookup`; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: [&str; 2]| names.into_iter().find_map(|name| non_empty(lookup(name)));
        Self {
            https_proxy: first(["HTTPS_PROXY", "https_proxy"]),
            http_proxy: first(["HTTP_PROXY", "http_proxy"]),
            no_proxy: first(["NO_PROXY", "no_proxy"]),
        }
    }
}

/// Why a [`GitHubConfig`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GitHubConfigError {
    /// `HAMSTER_GITHUB_HOST` (or [`GitHubConfigBuilder::enterprise_host`]) is not a bare host.
    #[error(
        "invalid GitHub Enterprise host {host:?}: {reason}; give a bare host name such as `github.example.com` (the API URL becomes https://HOST/api/v3)"
    )]
    InvalidHost {
        /// The host as given.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The API base URL is not an absolute `http(s)://` URL.
    #[error(
        "invalid GitHub API base URL {url:?}: {reason}; expected e.g. https://api.github.com or https://github.example.com/api/v3"
    )]
    InvalidBaseUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A proxy setting cannot be used (its URL is not shown: it may hold credentials).
    #[error("invalid {setting} proxy URL: {reason}; expected e.g. http://proxy.example:3128")]
    InvalidProxy {
        /// `HTTPS_PROXY` or `HTTP_PROXY`.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The retry policy allows no attempt at all.
    #[error("invalid GitHub retry policy: max_attempts must be at least 1")]
    NoAttempts,
}

/// Everything the GitHub API client needs. Build it with [`GitHubConfig::from_env`] or
/// [`GitHubConfig::builder`].
#[derive(Clone, Debug)]
pub struct GitHubConfig {
    token: Option<ApiToken>,
    username: Option<String>,
    base_url: String,
    user_agent: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
    proxy: ProxySettings,
}

impl GitHubConfig {
    /// A builder starting from the defaults (api.github.com, no token, no proxy).
    pub fn builder() -> GitHubConfigBuilder {
        GitHubConfigBuilder::default()
    }

    /// Reads `HAMSTER_GITHUB_API_TOKEN`, `HAMSTER_GITHUB_API_USERNAME`,
    /// `HAMSTER_GITHUB_HOST` and the proxy variables (see [`ProxySettings::from_lookup`]).
    pub fn from_env() -> Result<Self, GitHubConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`GitHubConfig::from_env`] reading variables through `lookup` instead of the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, GitHubConfigError> {
        Self::builder_from_lookup(lookup).build()
    }

    /// A builder pre-filled from variables read through `lookup` (see
    /// [`GitHubConfig::from_env`]), to adjust further before [`GitHubConfigBuilder::build`].
    pub fn builder_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> GitHubConfigBuilder {
        let mut builder = Self::builder().proxy(ProxySettings::from_lookup(&lookup));
        if let Some(token) = non_empty(lookup(TOKEN_VAR)) {
            builder = builder.token(token);
        }
        if let Some(username) = non_empty(lookup(USERNAME_VAR)) {
            builder = builder.username(username);
        }
        if let Some(host) = non_empty(lookup(HOST_VAR)) {
            builder = builder.enterprise_host(host);
        }
        builder
    }

    /// The API token, if configured.
    pub fn token(&self) -> Option<&ApiToken> {
        self.token.as_ref()
    }

    /// The username to pair with the token (git over HTTPS), if configured.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The API base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The `User-Agent` sent with every request.
    pub fn user_agent(&self) -> &str {
        &self.user_agent
    }

    /// How long establishing a connection may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How long one attempt (request and response body) may take.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The retry policy.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// The proxies.
    pub fn proxy(&self) -> &ProxySettings {
        &self.proxy
    }
}

/// Builds a [`GitHubConfig`]; [`GitHubConfigBuilder::build`] validates it.
#[derive(Clone, Debug)]
pub struct GitHubConfigBuilder {
    token: Option<ApiToken>,
    username: Option<String>,
    base_url: String,
    enterprise_host: Option<String>,
    user_agent: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
    proxy: ProxySettings,
}

impl Default for GitHubConfigBuilder {
    fn default() -> Self {
        Self {
            token: None,
            username: None,
            base_url: GITHUB_API_URL.into(),
            enterprise_host: None,
            user_agent: concat!("hamster/", env!("CARGO_PKG_VERSION")).into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            proxy: ProxySettings::default(),
        }
    }
}

impl GitHubConfigBuilder {
    /// The API token (a personal access token or an installation token).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(ApiToken::new(token));
        self
    }

    /// The username paired with the token for git over HTTPS.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// A GitHub Enterprise Server host: the base URL becomes `https://HOST/api/v3`.
    pub fn enterprise_host(mut self, host: impl Into<String>) -> Self {
        self.enterprise_host = Some(host.into());
        self
    }

    /// The API base URL itself (e.g. a local fake server in tests); overrides
    /// [`GitHubConfigBuilder::enterprise_host`].
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self.enterprise_host = None;
        self
    }

    /// The `User-Agent` header (GitHub rejects requests without one).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// How long establishing a connection may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one attempt (request and response body) may take.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The proxies (replacing any read from the environment).
    pub fn proxy(mut self, proxy: ProxySettings) -> Self {
        self.proxy = proxy;
        self
    }

    /// Validates and builds the configuration.
    pub fn build(self) -> Result<GitHubConfig, GitHubConfigError> {
        let base_url = match &self.enterprise_host {
            Some(host) => enterprise_base_url(host)?,
            None => validate_base_url(&self.base_url)?,
        };
        if self.retry.max_attempts == 0 {
            return Err(GitHubConfigError::NoAttempts);
        }
        for (setting, url) in [
            ("HTTPS_PROXY", &self.proxy.https_proxy),
            ("HTTP_PROXY", &self.proxy.http_proxy),
        ] {
            if let Some(url) = url {
                validate_proxy_url(setting, url)?;
            }
        }
        Ok(GitHubConfig {
            token: self.token,
            username: self.username,
            base_url,
            user_agent: self.user_agent,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            retry: self.retry,
            proxy: self.proxy,
        })
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn enterprise_base_url(host: &str) -> Result<String, GitHubConfigError> {
    let invalid = |reason: &str| GitHubConfigError::InvalidHost {
        host: host.to_owned(),
        reason: reason.to_owned(),
    };
    let host = host.trim();
    if host.contains("://") {
        return Err(invalid("it contains a URL scheme"));
    }
    if host.contains(['/', '?', '#', '@']) || host.chars().any(char::is_whitespace) {
        return Err(invalid("it contains a path, credentials or spaces"));
    }
    let authority: http::uri::Authority = host
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    Ok(format!("https://{authority}/api/v3"))
}

fn validate_base_url(url: &str) -> Result<String, GitHubConfigError> {
    let invalid = |reason: &str| GitHubConfigError::InvalidBaseUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = url.trim().trim_end_matches('/');
    let uri: http::Uri = trimmed
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    match uri.scheme_str() {
        Some("https" | "http") => {}
        _ => return Err(invalid("it must start with https:// or http://")),
    }
    if uri.authority().is_none() {
        return Err(invalid("it has no host"));
    }
    if uri.query().is_some() {
        return Err(invalid("it must not have a query string"));
    }
    Ok(trimmed.to_owned())
}

fn validate_proxy_url(setting: &'static str, url: &str) -> Result<(), GitHubConfigError> {
    // Without a scheme, curl and reqwest assume http://; check the rest the same way.
    let with_scheme = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let invalid = |reason: String| GitHubConfigError::InvalidProxy { setting, reason };
    let uri: http::Uri = with_scheme
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(()),
        Some("http" | "https") => Err(invalid("it has no host".into())),
        _ => Err(invalid("the scheme must be http or https".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn defaults_to_github_com_without_token() {
        let config = GitHubConfig::from_lookup(lookup(&[])).expect("valid");
        assert_eq!(config.base_url(), "https://api.github.com");
        assert!(config.token().is_none());
        assert!(config.user_agent().starts_with("hamster/"));
        assert_eq!(config.proxy(), &ProxySettings::default());
    }

    #[test]
    fn reads_token_username_host_and_proxies() {
        let config = GitHubConfig::from_lookup(lookup(&[
            (TOKEN_VAR, "ghp_abcdef123456"),
            (USERNAME_VAR, "hamster-bot"),
            (HOST_VAR, "github.example.com:8443"),
            ("https_proxy", "http://proxy.example:3128"),
            ("NO_PROXY", "localhost,.internal"),
            ("HTTP_PROXY", ""),
        ]))
        .expect("valid");
        assert_eq!(
            config.token().map(ApiToken::expose_secret),
            Some("ghp_abcdef123456")
        );
        assert_eq!(config.username(), Some("hamster-bot"));
        assert_eq!(config.base_url(), "https://github.example.com:8443/api/v3");
        assert_eq!(
            config.proxy(),
            &ProxySettings {
                https_proxy: Some("http://proxy.example:3128".into()),
                http_proxy: None,
                no_proxy: Some("localhost,.internal".into()),
            }
        );
    }

    #[test]
    fn rejects_a_host_that_is_a_url() {
        let error = GitHubConfig::from_lookup(lookup(&[(HOST_VAR, "https://github.example.com")]))
            .expect_err("a URL is not a host");
        assert!(
            matches!(error, GitHubConfigError::InvalidHost { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("github.example.com"), "{error}");
    }

    #[test]
    fn base_url_is_validated_and_trimmed() {
        let config = GitHubConfig::builder()
            .base_url("http://127.0.0.1:8080/")
            .build()
            .expect("valid");
        assert_eq!(config.base_url(), "http://127.0.0.1:8080");
        for bad in ["api.github.com", "ftp://example.com", "https://x/?a=1"] {
            let result = GitHubConfig::builder().base_url(bad).build();
            assert!(
                matches!(result, Err(GitHubConfigError::InvalidBaseUrl { .. })),
                "{bad}: {result:?}"
            );
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let config = GitHubConfig::builder()
            .token("ghp_supersecret")
            .proxy(ProxySettings {
                https_proxy: Some("http://user:proxypass@proxy:3128".into()),
                ..ProxySettings::default()
            })
            .build()
            .expect("valid");
        let debug = format!("{config:?}");
        assert!(!debug.contains("ghp_supersecret"), "{debug}");
        assert!(!debug.contains("proxypass"), "{debug}");
        assert!(debug.contains("[REDACTED]"), "{debug}");
        assert_eq!(ApiToken::new("ghp_supersecret").to_string(), "[REDACTED]");
    }

    #[test]
    fn invalid_proxy_error_hides_the_url() {
        let error = GitHubConfig::builder()
            .proxy(ProxySettings {
                https_proxy: Some("ftp://user:proxypass@proxy".into()),
                ..ProxySettings::default()
            })
            .build()
            .expect_err("ftp proxy");
        assert!(!error.to_string().contains("proxypass"), "{error}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_rate_limit_wait: Duration::from_secs(1),
        };
        let backoffs: Vec<u128> = (1..=4).map(|r| policy.backoff(r).as_millis()).collect();
        assert_eq!(backoffs, [100, 200, 350, 350]);
        assert!(matches!(
            GitHubConfig::builder()
                .retry(RetryPolicy {
                    max_attempts: 0,
                    ..policy
                })
                .build(),
            Err(GitHubConfigError::NoAttempts)
        ));
    }
}
