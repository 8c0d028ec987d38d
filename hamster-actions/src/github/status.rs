//! `commit_status`.

use super::{api_error, client, optional_text, repo};
use crate::source;
use async_trait::async_trait;
use hamster_core::action::{ActionContext, ActionError, ActionOutput, TypedAction};
use hamster_github::client::{CommitStatus, StatusState};
use serde::Deserialize;

/// GitHub keeps this many characters of a status description.
const MAX_DESCRIPTION_CHARS: usize = 140;

/// Args of `commit_status`: `{state, context?, description?, target_url?, sha?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitStatusArgs {
    /// `pending`, `success`, `failure` or `error`.
    state: StatusState,
    /// Which check this is; defaults to `hamster/<handler name>`.
    #[serde(default, deserialize_with = "optional_text")]
    context: Option<String>,
    /// A short description (cut to 140 characters).
    #[serde(default, deserialize_with = "optional_text")]
    description: Option<String>,
    /// Where the details are.
    #[serde(default, deserialize_with = "optional_text")]
    target_url: Option<String>,
    /// The commit; defaults to the pull request's head or the pushed commit.
    #[serde(default, deserialize_with = "optional_text")]
    sha: Option<String>,
}

/// `commit_status`: sets a commit status on the event's commit (a pull request's head,
/// a pushed commit) or on `sha`.
///
/// Returns `sha`, `state`, `context`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SetCommitStatus;

#[async_trait]
impl TypedAction for SetCommitStatus {
    const NAME: &'static str = "commit_status";
    type Args = CommitStatusArgs;

    async fn run(
        &self,
        args: CommitStatusArgs,
        ctx: &ActionContext<'_>,
    ) -> Result<ActionOutput, ActionError> {
        let sha = args
            .sha
            .filter(|sha| !sha.trim().is_empty())
            .or_else(|| source::sha(ctx.event))
            .ok_or_else(|| {
                ActionError::failed(format!(
                    "this event's source ({}) has no commit to set a status on; pass `sha:` in args",
                    ctx.event.source.kind
                ))
            })?;
        let context = args
            .context
            .filter(|context| !context.trim().is_empty())
            .unwrap_or_else(|| format!("hamster/{}", ctx.handler));
        let description = args.description.map(|description| {
            let description = ctx.redactor.redact(&description);
            if description.chars().count() <= MAX_DESCRIPTION_CHARS {
                description
            } else {
                let mut cut: String = description
                    .chars()
                    .take(MAX_DESCRIPTION_CHARS - 1)
                    .collect();
                cut.push('…');
                cut
            }
        });
        let status = CommitStatus {
            state: args.state,
            context: context.clone(),
            description,
            target_url: args.target_url,
        };
        client(ctx)?
            .set_commit_status(&repo(ctx), &sha, &status)
            .await
            .map_err(|error| api_error(ctx, Self::NAME, error))?;
        let state = serde_json::to_value(args.state).unwrap_or_default();
        Ok(ActionOutput::success()
            .with("sha", sha)
            .with("state", state)
            .with("context", context))
    }
}
