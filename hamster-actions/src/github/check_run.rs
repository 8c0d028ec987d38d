//! `check_run`: creates or updates a check run.

use super::{api_error, client, fit, optional_number, optional_text, repo, web_url};
use crate::source;
use async_trait::async_trait;
use hamster_core::action::{
    ActionContext, ActionError, ActionOutput, ArgPathSegment, ArgsError, TypedAction,
};
use hamster_github::client::{CheckRunUpdate, NewCheckRun};
use serde::{Deserialize, Serialize};

/// GitHub refuses check run summaries longer than this many characters.
const MAX_SUMMARY_CHARS: usize = 65_535;

/// A check run's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckRunStatus {
    /// `queued`
    Queued,
    /// `in_progress`
    InProgress,
    /// `completed`
    Completed,
}

/// How a completed check run concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckRunConclusion {
    /// `success`
    Success,
    /// `failure`
    Failure,
    /// `neutral`
    Neutral,
    /// `cancelled`
    Cancelled,
    /// `skipped`
    Skipped,
    /// `timed_out`
    TimedOut,
    /// `action_required`
    ActionRequired,
}

fn word<T: Serialize>(value: T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(word)) => word,
        _ => String::new(),
    }
}

/// Args of `check_run`: `{name, status?, conclusion?, title?, summary?, details_url?, id?, sha?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRunArgs {
    /// The check's name; required to create one.
    #[serde(default, deserialize_with = "optional_text")]
    name: Option<String>,
    /// `queued`, `in_progress` or `completed`.
    #[serde(default)]
    status: Option<CheckRunStatus>,
    /// Sets the run completed with this conclusion.
    #[serde(default)]
    conclusion: Option<CheckRunConclusion>,
    /// The output's title; defaults to the name.
    #[serde(default, deserialize_with = "optional_text")]
    title: Option<String>,
    /// The output's summary, in Markdown.
    #[serde(default, deserialize_with = "optional_text")]
    summary: Option<String>,
    /// Where the details are.
    #[serde(default, deserialize_with = "optional_text")]
    details_url: Option<String>,
    /// An existing check run to update (e.g. `{{ check.check_run_id }}`).
    #[serde(default, deserialize_with = "optional_number")]
    id: Option<u64>,
    /// The commit, when creating; defaults to the pull request's head or the pushed commit.
    #[serde(default, deserialize_with = "optional_text")]
    sha: Option<String>,
}

/// `check_run`: creates a check run on the event's commit, or updates the one given by `id`.
///
/// Returns `check_run_id`, `url`, `created`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckRun;

#[async_trait]
impl TypedAction for CheckRun {
    const NAME: &'static str = "check_run";
    type Args = CheckRunArgs;

    fn check(&self, args: &CheckRunArgs) -> Result<(), ArgsError> {
        if args.id.is_none() && args.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(ArgsError::new(
                "`name` is required to create a check run (or pass `id` to update one)",
            ));
        }
        if args.conclusion.is_some()
            && args
                .status
                .is_some_and(|status| status != CheckRunStatus::Completed)
        {
            return Err(ArgsError {
                path: vec![ArgPathSegment::Key("status".into())],
                message: "a check run with a `conclusion` is completed: set `status: completed` or remove the status".into(),
            });
        }
        Ok(())
    }

    async fn run(
        &self,
        args: CheckRunArgs,
        ctx: &ActionContext<'_>,
    ) -> Result<ActionOutput, ActionError> {
        self.check(&args)
            .map_err(|error| ActionError::InvalidArgs(error.message))?;
        let github = client(ctx)?;
        let repo = repo(ctx);
        // GitHub requires both a title and a summary once either is given.
        let summary = args
            .summary
            .map(|summary| fit(&ctx.redactor.redact(&summary), MAX_SUMMARY_CHARS));
        let title = match (&args.title, &summary) {
            (Some(title), _) => Some(ctx.redactor.redact(title)),
            (None, Some(_)) => Some(args.name.clone().unwrap_or_else(|| ctx.step.to_owned())),
            (None, None) => None,
        };
        let summary = summary.or_else(|| title.clone());
        let status = args
            .status
            .map(word)
            .or_else(|| args.conclusion.map(|_| word(CheckRunStatus::Completed)));
        let conclusion = args.conclusion.map(word);
        let (id, created) = match args.id {
            Some(id) => {
                let update = CheckRunUpdate {
                    status,
                    conclusion,
                    title,
                    summary,
                    details_url: args.details_url,
                };
                github
                    .update_check_run(&repo, id, &update)
                    .await
                    .map_err(|error| api_error(ctx, Self::NAME, error))?;
                (id, false)
            }
            None => {
                let head_sha = args
                    .sha
                    .filter(|sha| !sha.trim().is_empty())
                    .or_else(|| source::sha(ctx.event))
                    .ok_or_else(|| {
                        ActionError::failed(format!(
                            "this event's source ({}) has no commit to put a check run on; pass `sha:` in args",
                            ctx.event.source.kind
                        ))
                    })?;
                let check = NewCheckRun {
                    name: args.name.unwrap_or_default(),
                    head_sha,
                    status,
                    conclusion,
                    title,
                    summary,
                    details_url: args.details_url,
                };
                let id = github
                    .create_check_run(&repo, &check)
                    .await
                    .map_err(|error| api_error(ctx, Self::NAME, error))?;
                (id, true)
            }
        };
        Ok(ActionOutput::success()
            .with("check_run_id", id)
            .with("created", created)
            .with("url", web_url(ctx, &format!("runs/{id}"))))
    }
}
