//! `pull_request_comment` and `issue_comment`.

use super::{api_error, client, fit, issue_number, optional_number, repo, text, web_url};
use crate::source;
use async_trait::async_trait;
use hamster_core::action::{ActionContext, ActionError, ActionOutput, ArgsError, TypedAction};
use serde::Deserialize;

/// GitHub refuses comment bodies longer than this many characters.
const MAX_BODY_CHARS: usize = 65_536;

/// Args of the comment actions: `['body']` or `{body, number}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentArgs {
    /// The comment, in Markdown.
    #[serde(deserialize_with = "text")]
    body: String,
    /// The issue or pull request; defaults to the event's.
    #[serde(default, deserialize_with = "optional_number")]
    number: Option<u64>,
}

fn check_body(args: &CommentArgs) -> Result<(), ArgsError> {
    if args.body.trim().is_empty() {
        return Err(ArgsError {
            path: vec![hamster_core::action::ArgPathSegment::Key("body".into())],
            message: "the comment body is empty; GitHub refuses empty comments".into(),
        });
    }
    Ok(())
}

async fn comment(
    action: &str,
    args: CommentArgs,
    number: u64,
    ctx: &ActionContext<'_>,
) -> Result<ActionOutput, ActionError> {
    if args.body.trim().is_empty() {
        return Err(ActionError::InvalidArgs(
            "the comment body rendered empty; GitHub refuses empty comments".into(),
        ));
    }
    let github = client(ctx)?;
    let repo = repo(ctx);
    let body = fit(&ctx.redactor.redact(&args.body), MAX_BODY_CHARS);
    let id = github
        .create_comment(&repo, number, &body)
        .await
        .map_err(|error| api_error(ctx, action, error))?;
    let page = if source::is_pull_request(ctx.event) && args.number.is_none() {
        "pull"
    } else {
        "issues"
    };
    Ok(ActionOutput::success()
        .with("comment_id", id)
        .with("number", number)
        .with(
            "url",
            web_url(ctx, &format!("{page}/{number}#issuecomment-{id}")),
        ))
}

/// `pull_request_comment`: comments on the event's pull request.
///
/// Args: `['body']` or `{body, number?}`. Returns `comment_id`, `number`, `url`.
#[derive(Debug, Default, Clone, Copy)]
pub struct PullRequestComment;

#[async_trait]
impl TypedAction for PullRequestComment {
    const NAME: &'static str = "pull_request_comment";
    type Args = CommentArgs;

    fn check(&self, args: &CommentArgs) -> Result<(), ArgsError> {
        check_body(args)
    }

    async fn run(
        &self,
        args: CommentArgs,
        ctx: &ActionContext<'_>,
    ) -> Result<ActionOutput, ActionError> {
        if args.number.is_none() && !source::is_pull_request(ctx.event) {
            return Err(ActionError::failed(format!(
                "this event is about a {}, not a pull request; use issue_comment, or pass `number:`",
                ctx.event.source.kind
            )));
        }
        let number = issue_number(ctx, args.number)?;
        comment(Self::NAME, args, number, ctx).await
    }
}

/// `issue_comment`: comments on the event's issue (or pull request conversation).
///
/// Args: `['body']` or `{body, number?}`. Returns `comment_id`, `number`, `url`.
#[derive(Debug, Default, Clone, Copy)]
pub struct IssueComment;

#[async_trait]
impl TypedAction for IssueComment {
    const NAME: &'static str = "issue_comment";
    type Args = CommentArgs;

    fn check(&self, args: &CommentArgs) -> Result<(), ArgsError> {
        check_body(args)
    }

    async fn run(
        &self,
        args: CommentArgs,
        ctx: &ActionContext<'_>,
    ) -> Result<ActionOutput, ActionError> {
        let number = issue_number(ctx, args.number)?;
        comment(Self::NAME, args, number, ctx).await
    }
}
