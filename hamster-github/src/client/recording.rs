//! [`RecordingGitHub`]: a [`GitHub`] that records calls instead of making them, for tests
//! and for a dry-run "replay" mode.

use super::request::{ApiRequest, created_id};
use super::{
    CheckRunUpdate, CommitStatus, GitHub, GitHubError, NewCheckRun, ReactionTarget, RepoRef,
};
use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};

/// One call as the real client would have sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCall {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path below the API base URL, e.g. `/repos/o/r/issues/1/comments`.
    pub path: String,
    /// JSON body; `null` for requests without one.
    pub body: Value,
}

impl From<&ApiRequest> for RecordedCall {
    fn from(request: &ApiRequest) -> Self {
        Self {
            method: request.method.to_string(),
            path: request.path.clone(),
            body: request.body.clone().unwrap_or(Value::Null),
        }
    }
}

#[derive(Debug)]
struct FailureRule {
    method: String,
    path_prefix: String,
    status: u16,
    message: String,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<RecordedCall>,
    fail_next: VecDeque<GitHubError>,
    rules: Vec<FailureRule>,
    pull_requests: HashMap<(RepoRef, u64), Value>,
    last_id: u64,
}

/// A [`GitHub`] that records every call (with the exact method, path and body
/// [`OctocrabGitHub`](super::OctocrabGitHub) would send) and answers from memory.
///
/// Failed calls are recorded too: the real client would have sent them.
#[derive(Debug, Default)]
pub struct RecordingGitHub {
    state: Mutex<State>,
}

impl RecordingGitHub {
    /// An empty recorder that accepts every call.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes [`GitHub::get_pull_request`] answer `pull_request` for `repo`/`number`.
    pub fn with_pull_request(self, repo: RepoRef, number: u64, pull_request: Value) -> Self {
        self.state
            .lock()
            .pull_requests
            .insert((repo, number), pull_request);
        self
    }

    /// The calls made so far, oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.state.lock().calls.clone()
    }

    /// The calls made so far, forgetting them.
    pub fn take_calls(&self) -> Vec<RecordedCall> {
        std::mem::take(&mut self.state.lock().calls)
    }

    /// Makes the next call fail with `error` (queued: several calls fail in order).
    pub fn fail_next(&self, error: GitHubError) {
        self.state.lock().fail_next.push_back(error);
    }

    /// Makes every call with `method` (e.g. `POST`) whose path starts with `path_prefix`
    /// fail as the real client would on a `status` response carrying `message`:
    /// [`GitHubError::Unavailable`] for 5xx and 429, [`GitHubError::Refused`] otherwise,
    /// and success for a 404 on a label removal.
    pub fn fail_matching(&self, method: &str, path_prefix: &str, status: u16, message: &str) {
        self.state.lock().rules.push(FailureRule {
            method: method.to_ascii_uppercase(),
            path_prefix: path_prefix.to_owned(),
            status,
            message: message.to_owned(),
        });
    }

    /// Records `request` and decides its fate: `Ok(())` means it succeeds.
    fn record(&self, request: &ApiRequest) -> Result<(), GitHubError> {
        let call = RecordedCall::from(request);
        let mut state = self.state.lock();
        state.calls.push(call.clone());
        if let Some(error) = state.fail_next.pop_front() {
            return Err(error);
        }
        let rule = state
            .rules
            .iter()
            .find(|rule| rule.method == call.method && call.path.starts_with(&rule.path_prefix));
        match rule {
            None => Ok(()),
            Some(rule) if rule.status == 404 && request.not_found_is_success => Ok(()),
            Some(rule) if rule.status >= 500 || rule.status == 429 => {
                Err(GitHubError::Unavailable {
                    method: call.method,
                    path: call.path,
                    attempts: 1,
                    message: format!("{}: {}", rule.status, rule.message),
                })
            }
            Some(rule) => Err(GitHubError::Refused {
                method: call.method,
                path: call.path,
                status: rule.status,
                message: rule.message.clone(),
            }),
        }
    }

    fn next_id(&self) -> u64 {
        let mut state = self.state.lock();
        state.last_id += 1;
        state.last_id
    }

    /// Records a call that creates something, answering with a fresh `id`.
    fn record_creation(&self, request: &ApiRequest) -> Result<u64, GitHubError> {
        self.record(request)?;
        // Through `created_id`, like the real client, so both read the answer alike.
        created_id(request, &json!({ "id": self.next_id() }))
    }
}

#[async_trait]
impl GitHub for RecordingGitHub {
    async fn create_comment(
        &self,
        repo: &RepoRef,
        number: u64,
        body: &str,
    ) -> Result<u64, GitHubError> {
        self.record_creation(&ApiRequest::create_comment(repo, number, body))
    }

    async fn set_commit_status(
        &self,
        repo: &RepoRef,
        sha: &str,
        status: &CommitStatus,
    ) -> Result<(), GitHubError> {
        self.record(&ApiRequest::set_commit_status(repo, sha, status))
    }

    async fn create_check_run(
        &self,
        repo: &RepoRef,
        check: &NewCheckRun,
    ) -> Result<u64, GitHubError> {
        self.record_creation(&ApiRequest::create_check_run(repo, check))
    }

    async fn update_check_run(
        &self,
        repo: &RepoRef,
        check_run_id: u64,
        update: &CheckRunUpdate,
    ) -> Result<(), GitHubError> {
        self.record(&ApiRequest::update_check_run(repo, check_run_id, update))
    }

    async fn add_labels(
        &self,
        repo: &RepoRef,
        number: u64,
        labels: &[String],
    ) -> Result<(), GitHubError> {
        self.record(&ApiRequest::add_labels(repo, number, labels))
    }

    async fn remove_label(
        &self,
        repo: &RepoRef,
        number: u64,
        label: &str,
    ) -> Result<(), GitHubError> {
        self.record(&ApiRequest::remove_label(repo, number, label))
    }

    async fn add_reaction(
        &self,
        repo: &RepoRef,
        target: ReactionTarget,
        content: &str,
    ) -> Result<(), GitHubError> {
        self.record(&ApiRequest::add_reaction(repo, target, content))
    }

    async fn get_pull_request(&self, repo: &RepoRef, number: u64) -> Result<Value, GitHubError> {
        let request = ApiRequest::get_pull_request(repo, number);
        self.record(&request)?;
        self.state
            .lock()
            .pull_requests
            .get(&(repo.clone(), number))
            .cloned()
            .ok_or_else(|| GitHubError::Refused {
                method: request.method.to_string(),
                path: request.path,
                status: 404,
                message: "Not Found".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoRef {
        RepoRef::new("octo", "repo")
    }

    #[tokio::test]
    async fn records_calls_and_hands_out_increasing_ids() {
        let github = RecordingGitHub::new();
        let first = github
            .create_comment(&repo(), 5, "hello")
            .await
            .expect("ok");
        let check = NewCheckRun {
            name: "lint".into(),
            head_sha: "abc".into(),
            status: None,
            conclusion: None,
            title: None,
            summary: None,
            details_url: None,
        };
        let second = github.create_check_run(&repo(), &check).await.expect("ok");
        assert!(second > first, "{first} then {second}");
        let calls = github.take_calls();
        assert_eq!(
            calls,
            [
                RecordedCall {
                    method: "POST".into(),
                    path: "/repos/octo/repo/issues/5/comments".into(),
                    body: json!({"body": "hello"}),
                },
                RecordedCall {
                    method: "POST".into(),
                    path: "/repos/octo/repo/check-runs".into(),
                    body: json!({"name": "lint", "head_sha": "abc"}),
                },
            ]
        );
        assert!(github.calls().is_empty());
    }

    #[tokio::test]
    async fn fail_next_fails_once_and_still_records() {
        let github = RecordingGitHub::new();
        github.fail_next(GitHubError::Config("boom".into()));
        let failed = github.add_labels(&repo(), 1, &["bug".into()]).await;
        assert!(matches!(failed, Err(GitHubError::Config(_))), "{failed:?}");
        github
            .add_labels(&repo(), 1, &["bug".into()])
            .await
            .expect("second call succeeds");
        assert_eq!(github.calls().len(), 2);
    }

    #[tokio::test]
    async fn fail_matching_maps_statuses_like_the_real_client() {
        let github = RecordingGitHub::new();
        github.fail_matching(
            "post",
            "/repos/octo/repo/statuses/",
            422,
            "Validation Failed",
        );
        github.fail_matching(
            "POST",
            "/repos/octo/repo/issues/1/comments",
            502,
            "Bad Gateway",
        );
        github.fail_matching(
            "DELETE",
            "/repos/octo/repo/issues/1/labels/",
            404,
            "Not Found",
        );
        let status = CommitStatus {
            state: crate::client::StatusState::Success,
            context: "ci".into(),
            description: None,
            target_url: None,
        };
        let refused = github.set_commit_status(&repo(), "abc", &status).await;
        assert!(
            matches!(&refused, Err(GitHubError::Refused { status: 422, message, .. }) if message == "Validation Failed"),
            "{refused:?}"
        );
        let unavailable = github.create_comment(&repo(), 1, "x").await;
        assert!(
            matches!(unavailable, Err(GitHubError::Unavailable { .. })),
            "{unavailable:?}"
        );
        github
            .remove_label(&repo(), 1, "bug")
            .await
            .expect("absent label is fine");
        github
            .create_comment(&repo(), 2, "x")
            .await
            .expect("other issue unaffected");
    }

    #[tokio::test]
    async fn pull_requests_come_from_registered_json() {
        let pr = json!({"number": 3, "head": {"sha": "abc"}});
        let github = RecordingGitHub::new().with_pull_request(repo(), 3, pr.clone());
        assert_eq!(
            github.get_pull_request(&repo(), 3).await.expect("known"),
            pr
        );
        let missing = github.get_pull_request(&repo(), 4).await;
        assert!(
            matches!(missing, Err(GitHubError::Refused { status: 404, .. })),
            "{missing:?}"
        );
        assert_eq!(github.calls()[1].path, "/repos/octo/repo/pulls/4");
    }
}
