//! [`GitHubEvent`]: one event of a delivery, with its typed source.

use super::source::{
    Commit, GitHubSource, Issue, PullRequest, RepositoryInfo, RepositorySource, login_of, text,
};
use hamster_core::event::{Event, EventRecord, Source, SourceRecord};
use serde_json::{Map, Value};
use std::sync::Arc;

/// An event GitHub sent, e.g. `pull_request.opened` or `push`.
///
/// Templates see [`data`](Event::data) as `event` (with `action`, `sender`, `comment`,
/// `review`, `label`, `installation` and the raw `payload`) and the [source](Self::github_source)
/// as `source`; `docs/templates.md` lists every field.
#[derive(Clone, PartialEq)]
pub struct GitHubEvent {
    name: String,
    delivery_id: String,
    source: GitHubSource,
    payload: Value,
}

impl std::fmt::Debug for GitHubEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The payload is tens of kilobytes: leave it out of logs.
        f.debug_struct("GitHubEvent")
            .field("name", &self.name)
            .field("delivery_id", &self.delivery_id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl GitHubEvent {
    /// Builds the event for a payload that GitHub sent as `X-GitHub-Event: <event>`.
    ///
    /// Never fails: fields that are missing or of an unexpected type read as absent, and an
    /// event this crate does not know gets a [`RepositorySource`].
    pub fn from_payload(event: &str, delivery_id: impl Into<String>, payload: Value) -> Self {
        let name = match payload.get("action").and_then(Value::as_str) {
            Some(action) => format!("{event}.{action}"),
            None => event.to_owned(),
        };
        let source = source_of(event, &payload);
        Self {
            name,
            delivery_id: delivery_id.into(),
            source,
            payload,
        }
    }

    /// What the event is about, typed.
    pub fn github_source(&self) -> &GitHubSource {
        &self.source
    }

    /// The payload exactly as GitHub sent it.
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// The payload's `action` (`opened`, `created`…), when it has one.
    pub fn action(&self) -> Option<&str> {
        self.payload.get("action").and_then(Value::as_str)
    }

    /// Takes the payload out of the event.
    pub fn into_payload(self) -> Value {
        self.payload
    }

    /// The event as a record, like [`Event::to_record`] but moving the payload into it
    /// instead of copying it: intake uses this, since the payload is tens of kilobytes.
    pub fn into_record(self) -> EventRecord {
        self.into_record_with(true)
    }

    /// The event as a record whose data leave the payload out (intake, when the payload is
    /// the delivery's body, and was read only in part).
    pub(crate) fn into_record_without_payload(self) -> EventRecord {
        self.into_record_with(false)
    }

    fn into_record_with(self, payload: bool) -> EventRecord {
        let source = SourceRecord {
            kind: self.source.kind().to_owned(),
            repository: self.source.repository().clone(),
            fields: Arc::new(self.source.fields()),
            checkout: self.source.checkout(),
            deferred: self.source.deferred_fields(),
        };
        let mut data = self.data_without_payload();
        if payload {
            data.insert("payload".into(), self.payload);
        }
        EventRecord {
            name: self.name,
            delivery_id: Some(self.delivery_id),
            source,
            data: Arc::new(Value::Object(data)),
        }
    }

    fn data_without_payload(&self) -> Map<String, Value> {
        let payload = &self.payload;
        let mut data = Map::with_capacity(8);
        data.insert(
            "action".into(),
            self.action().map_or(Value::Null, Value::from),
        );
        data.insert(
            "sender".into(),
            login_of(payload.get("sender")).map_or(Value::Null, Value::from),
        );
        data.insert(
            "installation".into(),
            payload
                .get("installation")
                .and_then(|installation| installation.get("id"))
                .and_then(Value::as_u64)
                .map_or(Value::Null, Value::from),
        );
        if let Some(comment) = payload.get("comment").filter(|comment| comment.is_object()) {
            data.insert(
                "comment".into(),
                summary(comment, &["id", "body", "html_url", "created_at"]),
            );
        }
        if let Some(review) = payload.get("review").filter(|review| review.is_object()) {
            data.insert(
                "review".into(),
                summary(
                    review,
                    &[
                        "id",
                        "body",
                        "state",
                        "html_url",
                        "commit_id",
                        "submitted_at",
                    ],
                ),
            );
        }
        if let Some(label) = payload.get("label").and_then(|label| text(label, "name")) {
            data.insert("label".into(), label.into());
        }
        data
    }
}

fn source_of(event: &str, payload: &Value) -> GitHubSource {
    let repository = RepositoryInfo::from_payload(payload);
    match event {
        "pull_request"
        | "pull_request_review"
        | "pull_request_review_comment"
        | "pull_request_review_thread" => {
            GitHubSource::PullRequest(PullRequest::from_pull_request(repository, payload))
        }
        "issues" | "issue_comment" => {
            let issue = payload.get("issue").unwrap_or(&Value::Null);
            // GitHub models a pull request's conversation as an issue carrying a
            // `pull_request` link object. A comment there is a comment on the pull request;
            // `issues.*` events (a pull request can be milestoned as an issue) stay issues.
            if event == "issue_comment" && Issue::is_pull_request(issue) {
                GitHubSource::PullRequest(PullRequest::from_issue(repository, issue))
            } else {
                GitHubSource::Issue(Issue::from_issue(repository, issue))
            }
        }
        "push" => GitHubSource::Commit(Commit::from_push(repository, payload)),
        "status" => GitHubSource::Commit(Commit::from_status(repository, payload)),
        "check_suite" => GitHubSource::Commit(Commit::from_check_suite(repository, payload)),
        "check_run" => GitHubSource::Commit(Commit::from_check_run(repository, payload)),
        _ => GitHubSource::Repository(RepositorySource { repository }),
    }
}

impl Event for GitHubEvent {
    fn name(&self) -> &str {
        &self.name
    }

    fn delivery_id(&self) -> Option<&str> {
        Some(&self.delivery_id)
    }

    fn source(&self) -> &dyn Source {
        &self.source
    }

    fn data(&self) -> Value {
        let mut data = self.data_without_payload();
        data.insert("payload".into(), self.payload.clone());
        Value::Object(data)
    }
}

/// `keys` of `object`, with `user` as the login and `html_url` as `url`.
fn summary(object: &Value, keys: &[&str]) -> Value {
    let mut summary = Map::with_capacity(keys.len() + 1);
    for &key in keys {
        let value = object.get(key).cloned().unwrap_or(Value::Null);
        let key = if key == "html_url" { "url" } else { key };
        summary.insert(key.to_owned(), value);
    }
    summary.insert(
        "user".into(),
        login_of(object.get("user")).map_or(Value::Null, Value::from),
    );
    Value::Object(summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn into_record_equals_to_record() {
        let event = GitHubEvent::from_payload(
            "issue_comment",
            "d-1",
            json!({"action": "created", "comment": {"id": 7, "body": "hi", "user": {"login": "u"}},
                   "issue": {"number": 3, "pull_request": {}}, "sender": {"login": "u"},
                   "repository": {"name": "r", "full_name": "o/r", "owner": {"login": "o"}, "html_url": "https://github.com/o/r"}}),
        );
        assert_eq!(event.to_record(), event.clone().into_record());
    }

    #[test]
    fn names_join_event_and_action_only_when_action_is_a_string() {
        let named = |payload| GitHubEvent::from_payload("thing", "d", payload).name;
        assert_eq!(named(json!({"action": "done"})), "thing.done");
        assert_eq!(named(json!({})), "thing");
        assert_eq!(named(json!({"action": 3})), "thing");
        assert_eq!(named(json!({"action": null})), "thing");
    }

    #[test]
    fn an_unknown_event_about_a_repository_checks_out_the_default_branch() {
        let event = GitHubEvent::from_payload(
            "brand_new_event",
            "d",
            json!({ "repository": { "name": "r", "full_name": "o/r", "owner": { "login": "o" },
                                    "html_url": "https://github.com/o/r", "default_branch": "dev" } }),
        );
        assert_eq!(event.source().kind(), "repository");
        let checkout = event.source().checkout().unwrap();
        assert_eq!(checkout.fetch_ref.as_deref(), Some("refs/heads/dev"));
        assert_eq!(event.source().fields()["repository"], "r");
    }

    #[test]
    fn debug_leaves_the_payload_out() {
        let event = GitHubEvent::from_payload("ping", "d", json!({"zen": "very-long-zen"}));
        assert!(!format!("{event:?}").contains("very-long-zen"));
    }
}
