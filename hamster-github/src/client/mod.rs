//! The GitHub API, as Hamster's actions use it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

pub mod config;
pub mod octocrab_client;
pub mod recording;
pub mod request;

pub use config::{
    ApiToken, GitHubConfig, GitHubConfigBuilder, GitHubConfigError, ProxySettings, RetryPolicy,
};
pub use octocrab_client::{ClientStats, OctocrabGitHub};
pub use recording::{RecordedCall, RecordingGitHub};
pub use request::ApiRequest;

/// A repository on GitHub, as API calls address it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RepoRef {
    /// Owner login.
    pub owner: String,
    /// Repository name.
    pub name: String,
}

impl RepoRef {
    /// `owner/name`.
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            name: name.into(),
        }
    }
}

impl From<&hamster_core::event::Repository> for RepoRef {
    fn from(repo: &hamster_core::event::Repository) -> Self {
        Self::new(repo.owner.clone(), repo.name.clone())
    }
}

impl std::fmt::Display for RepoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// The state of a commit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusState {
    /// `pending`
    Pending,
    /// `success`
    Success,
    /// `failure`
    Failure,
    /// `error`
    Error,
}

/// A commit status to set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitStatus {
    /// The state.
    pub state: StatusState,
    /// Which check this is, e.g. `hamster/lint`.
    pub context: String,
    /// A short description (GitHub truncates at 140 characters).
    pub description: Option<String>,
    /// Where the details are.
    pub target_url: Option<String>,
}

/// A check run to create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCheckRun {
    /// Its name.
    pub name: String,
    /// The commit it is about.
    pub head_sha: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: Option<String>,
    /// When completed: `success`, `failure`, `neutral`, `cancelled`, `skipped`,
    /// `timed_out`, `action_required`.
    pub conclusion: Option<String>,
    /// The output's title.
    pub title: Option<String>,
    /// The output's summary (Markdown).
    pub summary: Option<String>,
    /// Where the details are.
    pub details_url: Option<String>,
}

/// Changes to an existing check run; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRunUpdate {
    /// `queued`, `in_progress` or `completed`.
    pub status: Option<String>,
    /// See [`NewCheckRun::conclusion`].
    pub conclusion: Option<String>,
    /// The output's title.
    pub title: Option<String>,
    /// The output's summary (Markdown).
    pub summary: Option<String>,
    /// Where the details are.
    pub details_url: Option<String>,
}

/// What a reaction is put on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum ReactionTarget {
    /// An issue or pull request, by number.
    Issue(u64),
    /// An issue or pull-request conversation comment, by id.
    IssueComment(u64),
    /// A pull request review comment, by id.
    ReviewComment(u64),
}

/// Why a GitHub call failed. Messages never contain the API token.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// GitHub refused the request (4xx other than rate limiting), with GitHub's message.
    #[error("GitHub refused {method} {path}: {status} {message}")]
    Refused {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// Still failing (5xx, rate limited, network) after the configured retries.
    #[error("GitHub {method} {path} failed after {attempts} attempts: {message}")]
    Unavailable {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
    /// The client is not configured (missing token…).
    #[error("GitHub client is not configured: {0}")]
    Config(String),
    /// A response could not be understood.
    #[error("unexpected response from GitHub for {path}: {message}")]
    Decode {
        /// Request path.
        path: String,
        /// What was wrong.
        message: String,
    },
}

/// The GitHub API calls Hamster's actions make.
///
/// Contract: implementations retry 5xx and rate-limited calls with backoff (honouring
/// `Retry-After` and the rate-limit headers), fail at once on other 4xx with GitHub's
/// message, and never put the token in an error or a log line.
#[async_trait]
pub trait GitHub: Send + Sync + Debug {
    /// Comments on an issue or a pull request's conversation; returns the comment's id.
    async fn create_comment(
        &self,
        repo: &RepoRef,
        number: u64,
        body: &str,
    ) -> Result<u64, GitHubError>;
    /// Sets a commit status on `sha`.
    async fn set_commit_status(
        &self,
        repo: &RepoRef,
        sha: &str,
        status: &CommitStatus,
    ) -> Result<(), GitHubError>;
    /// Creates a check run; returns its id.
    async fn create_check_run(
        &self,
        repo: &RepoRef,
        check: &NewCheckRun,
    ) -> Result<u64, GitHubError>;
    /// Updates a check run.
    async fn update_check_run(
        &self,
        repo: &RepoRef,
        check_run_id: u64,
        update: &CheckRunUpdate,
    ) -> Result<(), GitHubError>;
    /// Adds labels to an issue or pull request.
    async fn add_labels(
        &self,
        repo: &RepoRef,
        number: u64,
        labels: &[String],
    ) -> Result<(), GitHubError>;
    /// Removes a label from an issue or pull request (absent labels are not an error).
    async fn remove_label(
        &self,
        repo: &RepoRef,
        number: u64,
        label: &str,
    ) -> Result<(), GitHubError>;
    /// Adds a reaction (`+1`, `-1`, `laugh`, `confused`, `heart`, `hooray`, `rocket`, `eyes`).
    async fn add_reaction(
        &self,
        repo: &RepoRef,
        target: ReactionTarget,
        content: &str,
    ) -> Result<(), GitHubError>;
    /// Fetches a pull request, as the JSON object the API returns (the same shape as a
    /// webhook's `pull_request`).
    async fn get_pull_request(
        &self,
        repo: &RepoRef,
        number: u64,
    ) -> Result<serde_json::Value, GitHubError>;
}
