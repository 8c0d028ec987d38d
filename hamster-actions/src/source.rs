//! What the built-in actions read from the event's source.

use hamster_core::event::EventRecord;
use serde_json::Value;

fn field<'a>(event: &'a EventRecord, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(&*event.source.fields, |value, key| value.get(key))
}

/// The commit the event is about: a pull request's head, a pushed or checked commit, or
/// the commit the checkout is pinned to.
pub(crate) fn sha(event: &EventRecord) -> Option<String> {
    field(event, &["head", "sha"])
        .or_else(|| field(event, &["sha"]))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| event.source.checkout.as_ref()?.sha.clone())
        .filter(|sha| !sha.is_empty())
}

/// The ref the event is about (`refs/pull/2/head`, `refs/heads/main`).
pub(crate) fn git_ref(event: &EventRecord) -> Option<String> {
    field(event, &["ref"])
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| event.source.checkout.as_ref()?.fetch_ref.clone())
}

/// The issue or pull request number, when the source is one.
pub(crate) fn number(event: &EventRecord) -> Option<u64> {
    field(event, &["number"]).and_then(Value::as_u64)
}

/// Whether the source is a pull request (or an issue event on a pull request's conversation).
pub(crate) fn is_pull_request(event: &EventRecord) -> bool {
    event.source.kind == "pull_request"
        || field(event, &["pull_request"]).and_then(Value::as_bool) == Some(true)
}
