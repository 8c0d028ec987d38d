//! `react`: adds a reaction to the event's issue, pull request or comment.

use super::{api_error, client, issue_number, optional_number, repo};
use async_trait::async_trait;
use hamster_core::action::{ActionContext, ActionError, ActionOutput, TypedAction};
use hamster_github::client::ReactionTarget;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A reaction GitHub knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReactionContent {
    /// `+1`
    #[serde(rename = "+1")]
    ThumbsUp,
    /// `-1`
    #[serde(rename = "-1")]
    ThumbsDown,
    /// `laugh`
    #[serde(rename = "laugh")]
    Laugh,
    /// `confused`
    #[serde(rename = "confused")]
    Confused,
    /// `heart`
    #[serde(rename = "heart")]
    Heart,
    /// `hooray`
    #[serde(rename = "hooray")]
    Hooray,
    /// `rocket`
    #[serde(rename = "rocket")]
    Rocket,
    /// `eyes`
    #[serde(rename = "eyes")]
    Eyes,
}

impl ReactionContent {
    /// The word GitHub uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ThumbsUp => "+1",
            Self::ThumbsDown => "-1",
            Self::Laugh => "laugh",
            Self::Confused => "confused",
            Self::Heart => "heart",
            Self::Hooray => "hooray",
            Self::Rocket => "rocket",
            Self::Eyes => "eyes",
        }
    }
}

/// What a reaction goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReactionOn {
    /// The issue or pull request itself.
    Issue,
    /// The comment the event is about.
    Comment,
}

/// Args of `react`: `['eyes']` or `{content, on?, number?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactArgs {
    /// The reaction.
    content: ReactionContent,
    /// Where it goes; defaults to the event's comment when there is one, else the issue.
    #[serde(default)]
    on: Option<ReactionOn>,
    /// The issue or pull request when `on: issue`; defaults to the event's.
    #[serde(default, deserialize_with = "optional_number")]
    number: Option<u64>,
}

/// `react`: adds a reaction to the event's comment or issue / pull request.
///
/// Returns `content`, `on`, `id` (the comment id or issue number).
#[derive(Debug, Default, Clone, Copy)]
pub struct React;

#[async_trait]
impl TypedAction for React {
    const NAME: &'static str = "react";
    type Args = ReactArgs;

    async fn run(
        &self,
        args: ReactArgs,
        ctx: &ActionContext<'_>,
    ) -> Result<ActionOutput, ActionError> {
        let comment_id = ctx
            .event
            .data
            .get("comment")
            .and_then(|comment| comment.get("id"))
            .and_then(Value::as_u64);
        let on = args.on.unwrap_or(match (comment_id, args.number) {
            (Some(_), None) => ReactionOn::Comment,
            _ => ReactionOn::Issue,
        });
        let (target, id) = match on {
            ReactionOn::Issue => {
                let number = issue_number(ctx, args.number)?;
                (ReactionTarget::Issue(number), number)
            }
            ReactionOn::Comment => {
                let id = comment_id.ok_or_else(|| {
                    ActionError::failed(format!(
                        "`{}` is not an event about a comment; react `on: issue` instead",
                        ctx.event.name
                    ))
                })?;
                if ctx.event.name.starts_with("pull_request_review_comment") {
                    (ReactionTarget::ReviewComment(id), id)
                } else {
                    (ReactionTarget::IssueComment(id), id)
                }
            }
        };
        client(ctx)?
            .add_reaction(&repo(ctx), target, args.content.as_str())
            .await
            .map_err(|error| api_error(ctx, Self::NAME, error))?;
        let on = match on {
            ReactionOn::Issue => "issue",
            ReactionOn::Comment => "comment",
        };
        Ok(ActionOutput::success()
            .with("content", args.content.as_str())
            .with("on", on)
            .with("id", id))
    }
}
