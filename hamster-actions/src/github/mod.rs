//! Actions that talk to GitHub through the worker's [`GitHub`] service.

mod check_run;
mod comment;
mod labels;
mod react;
mod status;

pub use check_run::{CheckRun, CheckRunConclusion, CheckRunStatus};
pub use comment::{IssueComment, PullRequestComment};
pub use labels::{AddLabels, RemoveLabel};
pub use react::{React, ReactionContent, ReactionOn};
pub use status::SetCommitStatus;

use crate::source;
use hamster_core::action::{ActionContext, ActionError};
use hamster_github::{GitHub, GitHubError, RepoRef};
use serde::{Deserialize, Deserializer};
use std::sync::Arc;

/// The GitHub client configured on the worker.
fn client(ctx: &ActionContext<'_>) -> Result<Arc<dyn GitHub>, ActionError> {
    ctx.require::<dyn GitHub>()
}

/// The repository the event's source lives in.
fn repo(ctx: &ActionContext<'_>) -> RepoRef {
    RepoRef::from(&ctx.event.source.repository)
}

/// The issue or pull request to act on: `number` from args, else the source's.
fn issue_number(ctx: &ActionContext<'_>, from_args: Option<u64>) -> Result<u64, ActionError> {
    from_args.or_else(|| source::number(ctx.event)).ok_or_else(|| {
        ActionError::failed(format!(
            "this event's source ({}) is not an issue or a pull request; pass `number:` in args",
            ctx.event.source.kind
        ))
    })
}

/// The page of something in the source's repository, e.g. `pull/2`.
fn web_url(ctx: &ActionContext<'_>, path: &str) -> String {
    let repository = &ctx.event.source.repository;
    format!(
        "https://{}/{}/{}/{path}",
        repository.host, repository.owner, repository.name
    )
}

/// A GitHub failure as the step's error, with GitHub's message.
fn api_error(ctx: &ActionContext<'_>, action: &str, error: GitHubError) -> ActionError {
    ActionError::failed(ctx.redactor.redact(&format!("{action}: {error}")))
}

/// `text` cut to at most `max_chars` characters, keeping its head and tail around a marker
/// (GitHub refuses longer comment bodies and check run summaries).
fn fit(text: &str, max_chars: usize) -> String {
    let count = text.chars().count();
    if count <= max_chars {
        return text.to_owned();
    }
    let marker_room = 48;
    let keep = max_chars.saturating_sub(marker_room);
    let head: String = text.chars().take(keep / 2).collect();
    let tail_len = keep - keep / 2;
    let tail: String = text.chars().skip(count - tail_len).collect();
    let omitted = count - keep;
    format!("{head}\n[… {omitted} characters omitted …]\n{tail}")
}

/// Deserializes text that a template may have rendered as a number or a boolean (a lone
/// `{{ expression }}` keeps its value's type).
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        String(String),
        Integer(i64),
        Float(f64),
        Bool(bool),
    }
    Text::deserialize(deserializer)
        .map(|text| match text {
            Text::String(s) => s,
            Text::Integer(n) => n.to_string(),
            Text::Float(n) => n.to_string(),
            Text::Bool(b) => b.to_string(),
        })
        .map_err(|_| serde::de::Error::custom("expected text"))
}

/// Like [`text`], for optional fields (`null` is absent).
fn optional_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "text")] String);
    Option::<Wrapped>::deserialize(deserializer).map(|w| w.map(|Wrapped(s)| s))
}

/// An optional issue, comment or check run number, also accepted as a string of digits.
fn optional_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Number(u64),
        Text(String),
    }
    match Option::<Number>::deserialize(deserializer) {
        Ok(None) => Ok(None),
        Ok(Some(Number::Number(n))) => Ok(Some(n)),
        Ok(Some(Number::Text(text))) => text
            .trim()
            .trim_start_matches('#')
            .parse()
            .map(Some)
            .map_err(|_| {
                serde::de::Error::custom(format!("expected a positive number, not `{text}`"))
            }),
        Err(_) => Err(serde::de::Error::custom("expected a positive number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_head_and_tail_within_the_limit() {
        let text = "a".repeat(100) + &"b".repeat(100);
        let fitted = fit(&text, 100);
        assert!(fitted.chars().count() <= 100, "{}", fitted.chars().count());
        assert!(
            fitted.starts_with("aaaa") && fitted.ends_with("bbbb"),
            "{fitted}"
        );
        assert!(fitted.contains("characters omitted"), "{fitted}");
        assert_eq!(fit("short", 100), "short");
    }
}
