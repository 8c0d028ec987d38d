//! The exact HTTP request behind each [`GitHub`](super::GitHub) call.
//!
//! Both [`OctocrabGitHub`](super::OctocrabGitHub) and
//! [`RecordingGitHub`](super::RecordingGitHub) build their requests here, so what the fake
//! records is, byte for byte, what the real client sends.

use super::{CheckRunUpdate, CommitStatus, GitHubError, NewCheckRun, ReactionTarget, RepoRef};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

/// Characters escaped in a path segment: everything but RFC 3986 "unreserved" characters,
/// so that labels such as `good first issue` or `area/ci` stay a single segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One GitHub REST API request: method, path below the API base URL, and JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRequest {
    /// HTTP method.
    pub method: http::Method,
    /// Path below the API base URL, starting with `/`, already percent-encoded.
    pub path: String,
    /// JSON body, if the request has one.
    pub body: Option<Value>,
    /// Whether a 404 means "already done" rather than an error (removing an absent label).
    pub not_found_is_success: bool,
}

impl ApiRequest {
    fn new(method: http::Method, path: String, body: Option<Value>) -> Self {
        Self {
            method,
            path,
            body,
            not_found_is_success: false,
        }
    }

    /// `POST /repos/{owner}/{repo}/issues/{number}/comments`.
    pub fn create_comment(repo: &RepoRef, number: u64, body: &str) -> Self {
        Self::new(
            http::Method::POST,
            format!("{}/issues/{number}/comments", repo_path(repo)),
            Some(json!({ "body": body })),
        )
    }

    /// `POST /repos/{owner}/{repo}/statuses/{sha}`; absent optional fields are omitted.
    pub fn set_commit_status(repo: &RepoRef, sha: &str, status: &CommitStatus) -> Self {
        let mut body = Map::new();
        body.insert("state".into(), json!(status.state));
        body.insert("context".into(), json!(status.context));
        insert_some(&mut body, "description", status.description.as_deref());
        insert_some(&mut body, "target_url", status.target_url.as_deref());
        Self::new(
            http::Method::POST,
            format!("{}/statuses/{}", repo_path(repo), segment(sha)),
            Some(Value::Object(body)),
        )
    }

    /// `POST /repos/{owner}/{repo}/check-runs`; `output` is sent only when a title or a
    /// summary is given (GitHub requires both once `output` is present).
    pub fn create_check_run(repo: &RepoRef, check: &NewCheckRun) -> Self {
        let mut body = Map::new();
        body.insert("name".into(), json!(check.name));
        body.insert("head_sha".into(), json!(check.head_sha));
        insert_some(&mut body, "status", check.status.as_deref());
        insert_some(&mut body, "conclusion", check.conclusion.as_deref());
        insert_some(&mut body, "details_url", check.details_url.as_deref());
        insert_output(&mut body, check.title.as_deref(), check.summary.as_deref());
        Self::new(
            http::Method::POST,
            format!("{}/check-runs", repo_path(repo)),
            Some(Value::Object(body)),
        )
    }

    /// `PATCH /repos/{owner}/{repo}/check-runs/{id}` with only the fields being changed.
    pub fn update_check_run(repo: &RepoRef, check_run_id: u64, update: &CheckRunUpdate) -> Self {
        let mut body = Map::new();
        insert_some(&mut body, "status", update.status.as_deref());
        insert_some(&mut body, "conclusion", update.conclusion.as_deref());
        insert_some(&mut body, "details_url", update.details_url.as_deref());
        insert_output(
            &mut body,
            update.title.as_deref(),
            update.summary.as_deref(),
        );
        Self::new(
            http::Method::PATCH,
            format!("{}/check-runs/{check_run_id}", repo_path(repo)),
            Some(Value::Object(body)),
        )
    }

    /// `POST /repos/{owner}/{repo}/issues/{number}/labels`.
    pub fn add_labels(repo: &RepoRef, number: u64, labels: &[String]) -> Self {
        Self::new(
            http::Method::POST,
            format!("{}/issues/{number}/labels", repo_path(repo)),
            Some(json!({ "labels": labels })),
        )
    }

    /// `DELETE /repos/{owner}/{repo}/issues/{number}/labels/{label}`, the label
    /// percent-encoded; a 404 (label not on the issue) counts as success.
    pub fn remove_label(repo: &RepoRef, number: u64, label: &str) -> Self {
        Self {
            not_found_is_success: true,
            ..Self::new(
                http::Method::DELETE,
                format!(
                    "{}/issues/{number}/labels/{}",
                    repo_path(repo),
                    segment(label)
                ),
                None,
            )
        }
    }

    /// `POST …/reactions` on an issue, an issue comment or a review comment.
    pub fn add_reaction(repo: &RepoRef, target: ReactionTarget, content: &str) -> Self {
        let target_path = match target {
            ReactionTarget::Issue(number) => format!("issues/{number}"),
            ReactionTarget::IssueComment(id) => format!("issues/comments/{id}"),
            ReactionTarget::ReviewComment(id) => format!("pulls/comments/{id}"),
        };
        Self::new(
            http::Method::POST,
            format!("{}/{target_path}/reactions", repo_path(repo)),
            Some(json!({ "content": content })),
        )
    }

    /// `GET /repos/{owner}/{repo}/pulls/{number}`.
    pub fn get_pull_request(repo: &RepoRef, number: u64) -> Self {
        Self::new(
            http::Method::GET,
            format!("{}/pulls/{number}", repo_path(repo)),
            None,
        )
    }
}

/// The `id` field of a created resource (comment, check run).
pub(crate) fn created_id(request: &ApiRequest, response: &Value) -> Result<u64, GitHubError> {
    response
        .get("id")
        .and_then(Value::as_u64)
        .ok_or_else(|| GitHubError::Decode {
            path: request.path.clone(),
            message: "the response has no numeric `id`".into(),
        })
}

fn repo_path(repo: &RepoRef) -> String {
    format!("/repos/{}/{}", segment(&repo.owner), segment(&repo.name))
}

fn segment(raw: &str) -> String {
    utf8_percent_encode(raw, PATH_SEGMENT).to_string()
}

fn insert_some(body: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        body.insert(key.into(), json!(value));
    }
}

fn insert_output(body: &mut Map<String, Value>, title: Option<&str>, summary: Option<&str>) {
    if title.is_none() && summary.is_none() {
        return;
    }
    let mut output = Map::new();
    insert_some(&mut output, "title", title);
    insert_some(&mut output, "summary", summary);
    body.insert("output".into(), Value::Object(output));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::StatusState;

    fn repo() -> RepoRef {
        RepoRef::new("octo", "hello-world")
    }

    #[test]
    fn label_is_a_single_encoded_segment() {
        let request = ApiRequest::remove_label(&repo(), 7, "area/ci: good first issue~é");
        assert_eq!(request.method, http::Method::DELETE);
        assert_eq!(
            request.path,
            "/repos/octo/hello-world/issues/7/labels/area%2Fci%3A%20good%20first%20issue~%C3%A9"
        );
        assert!(request.not_found_is_success);
        assert_eq!(request.body, None);
    }

    #[test]
    fn commit_status_omits_absent_optionals() {
        let status = CommitStatus {
            state: StatusState::Pending,
            context: "hamster/lint".into(),
            description: None,
            target_url: Some("https://ci.example/1".into()),
        };
        let request = ApiRequest::set_commit_status(&repo(), "abc123", &status);
        assert_eq!(request.path, "/repos/octo/hello-world/statuses/abc123");
        assert_eq!(
            request.body,
            Some(
                json!({"state": "pending", "context": "hamster/lint", "target_url": "https://ci.example/1"})
            )
        );
    }

    #[test]
    fn check_run_output_only_when_given() {
        let update = CheckRunUpdate {
            status: Some("completed".into()),
            conclusion: Some("success".into()),
            ..CheckRunUpdate::default()
        };
        let request = ApiRequest::update_check_run(&repo(), 42, &update);
        assert_eq!(request.method, http::Method::PATCH);
        assert_eq!(
            request.body,
            Some(json!({"status": "completed", "conclusion": "success"}))
        );

        let with_summary = CheckRunUpdate {
            summary: Some("all good".into()),
            ..CheckRunUpdate::default()
        };
        assert_eq!(
            ApiRequest::update_check_run(&repo(), 42, &with_summary).body,
            Some(json!({"output": {"summary": "all good"}}))
        );
    }

    #[test]
    fn reaction_paths_per_target() {
        let paths: Vec<String> = [
            ReactionTarget::Issue(3),
            ReactionTarget::IssueComment(11),
            ReactionTarget::ReviewComment(12),
        ]
        .into_iter()
        .map(|target| ApiRequest::add_reaction(&repo(), target, "rocket").path)
        .collect();
        assert_eq!(
            paths,
            [
                "/repos/octo/hello-world/issues/3/reactions",
                "/repos/octo/hello-world/issues/comments/11/reactions",
                "/repos/octo/hello-world/pulls/comments/12/reactions",
            ]
        );
    }

    #[test]
    fn created_id_requires_a_numeric_id() {
        let request = ApiRequest::create_comment(&repo(), 1, "hi");
        assert_eq!(created_id(&request, &json!({"id": 99})).ok(), Some(99));
        let error = created_id(&request, &json!({"id": "99"})).err();
        assert!(
            matches!(error, Some(GitHubError::Decode { .. })),
            "{error:?}"
        );
    }
}
