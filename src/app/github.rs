//! The GitHub side of a process: the API client actions use and the git workspaces.

use super::config::Settings;
use async_trait::async_trait;
use hamster_core::workspace::TempWorkspaces;
use hamster_github::client::{
    CheckRunUpdate, CommitStatus, GitHubConfig, NewCheckRun, ProxySettings, ReactionTarget,
};
use hamster_github::git::{GitConfig, GitMaterializer};
use hamster_github::{GitHub, GitHubError, OctocrabGitHub, RepoRef};
use serde_json::Value;
use std::sync::Arc;

/// Why the GitHub client or the git workspaces could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum GitHubSetupError {
    /// The API settings are invalid.
    #[error("invalid GitHub API settings: {0}")]
    Api(#[from] hamster_github::client::GitHubConfigError),
    /// The client could not be built.
    #[error("cannot create the GitHub client: {0}")]
    Client(#[from] GitHubError),
    /// The git settings are invalid.
    #[error("invalid git settings: {0}")]
    Git(#[from] hamster_github::git::GitConfigError),
}

/// A [`GitHub`] for processes started without an API token: every call fails with a
/// message saying what to set, so that a handler's GitHub step fails clearly instead of
/// the process refusing to start.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnconfiguredGitHub;

impl UnconfiguredGitHub {
    fn error() -> GitHubError {
        GitHubError::Config(
            "no API token; set HAMSTER_GITHUB_API_TOKEN (or github_api_token in the configuration file) and restart".to_owned(),
        )
    }
}

#[async_trait]
impl GitHub for UnconfiguredGitHub {
    async fn create_comment(&self, _: &RepoRef, _: u64, _: &str) -> Result<u64, GitHubError> {
        Err(Self::error())
    }
    async fn set_commit_status(
        &self,
        _: &RepoRef,
        _: &str,
        _: &CommitStatus,
    ) -> Result<(), GitHubError> {
        Err(Self::error())
    }
    async fn create_check_run(&self, _: &RepoRef, _: &NewCheckRun) -> Result<u64, GitHubError> {
        Err(Self::error())
    }
    async fn update_check_run(
        &self,
        _: &RepoRef,
        _: u64,
        _: &CheckRunUpdate,
    ) -> Result<(), GitHubError> {
        Err(Self::error())
    }
    async fn add_labels(&self, _: &RepoRef, _: u64, _: &[String]) -> Result<(), GitHubError> {
        Err(Self::error())
    }
    async fn remove_label(&self, _: &RepoRef, _: u64, _: &str) -> Result<(), GitHubError> {
        Err(Self::error())
    }
    async fn add_reaction(
        &self,
        _: &RepoRef,
        _: ReactionTarget,
        _: &str,
    ) -> Result<(), GitHubError> {
        Err(Self::error())
    }
    async fn get_pull_request(&self, _: &RepoRef, _: u64) -> Result<Value, GitHubError> {
        Err(Self::error())
    }
}

/// The GitHub API client of a process.
#[derive(Debug, Clone)]
pub struct GitHubClient {
    /// What actions and the enricher call.
    pub api: Arc<dyn GitHub>,
    /// The real client, when a token is configured (for its call counters).
    pub octocrab: Option<Arc<OctocrabGitHub>>,
}

impl GitHubClient {
    /// Where `/metrics` reads the client's call counters and rate limit from.
    pub fn stats_source(&self) -> Option<hamster_server::GitHubStatsSource> {
        let client = self.octocrab.clone()?;
        Some(Arc::new(move || Some(client.stats())))
    }
}

/// The API client for `settings`: the real one when a token is configured, else
/// [`UnconfiguredGitHub`]. Must be called inside a Tokio runtime.
pub fn github_client(settings: &Settings) -> Result<GitHubClient, GitHubSetupError> {
    let Some(token) = &settings.github_api_token else {
        return Ok(GitHubClient {
            api: Arc::new(UnconfiguredGitHub),
            octocrab: None,
        });
    };
    let mut proxy = ProxySettings::from_lookup(|name| std::env::var(name).ok());
    if settings.no_proxy.is_some() {
        proxy.no_proxy = settings.no_proxy.clone();
    }
    let mut builder = GitHubConfig::builder().token(token.clone()).proxy(proxy);
    if let Some(username) = &settings.github_api_username {
        builder = builder.username(username.clone());
    }
    if let Some(host) = &settings.github_host {
        builder = builder.enterprise_host(host.clone());
    }
    if let Some(url) = &settings.github_api_url {
        builder = builder.base_url(url.clone());
    }
    let config = builder.build()?;
    let client = Arc::new(OctocrabGitHub::new(&config)?);
    Ok(GitHubClient {
        api: client.clone(),
        octocrab: Some(client),
    })
}

/// The git configuration for `settings` (mirror cache, clone URL template, credentials).
pub fn git_config(settings: &Settings) -> Result<GitConfig, GitHubSetupError> {
    let mut builder = GitConfig::builder(settings.git_cache_dir.clone());
    if let Some(template) = &settings.git_url_template {
        builder = builder.url_template(template.clone());
    }
    if let Some(key) = &settings.github_ssh_key {
        builder = builder.ssh_key(key.clone());
    }
    if let Some(token) = &settings.github_api_token {
        builder = builder.api_token(token.clone());
    }
    if let Some(username) = &settings.github_api_username {
        builder = builder.api_username(username.clone());
    }
    Ok(builder.build()?)
}

/// Temporary, self-cleaning workspaces materialized from the git mirror cache.
pub fn git_workspaces(
    settings: &Settings,
) -> Result<TempWorkspaces<GitMaterializer>, GitHubSetupError> {
    Ok(TempWorkspaces::new(GitMaterializer::new(git_config(
        settings,
    )?)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::app::config::{ConfigLayer, Settings};

    #[tokio::test]
    async fn without_a_token_every_call_says_what_to_set() {
        let settings = Settings::from_layer(ConfigLayer::default()).unwrap();
        let client = github_client(&settings).unwrap();
        assert!(client.octocrab.is_none());
        assert!(client.stats_source().is_none());
        let error = client
            .api
            .create_comment(&RepoRef::new("o", "r"), 1, "hello")
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("not configured"), "{error}");
        assert!(error.contains("HAMSTER_GITHUB_API_TOKEN"), "{error}");
    }

    #[tokio::test]
    async fn with_a_token_the_real_client_is_used_at_the_configured_url() {
        let settings = Settings::from_layer(ConfigLayer {
            github_api_token: Some("ghp_unit_test_token".to_owned()),
            github_api_url: Some("http://127.0.0.1:9".to_owned()),
            ..ConfigLayer::default()
        })
        .unwrap();
        let client = github_client(&settings).unwrap();
        let stats = client.stats_source().unwrap();
        assert_eq!(stats().map(|s| s.succeeded), Some(0));
        assert!(!format!("{client:?}").contains("ghp_unit_test_token"));
    }
}
