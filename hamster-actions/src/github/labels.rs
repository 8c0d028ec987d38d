//! `add_labels` and `remove_label`.

use super::{api_error, client, issue_number, optional_number, repo, text};
use async_trait::async_trait;
use hamster_core::action::{
    Action, ActionContext, ActionError, ActionOutput, ArgPathSegment, ArgsError, TypedAction,
};
use serde::Deserialize;
use serde_json::Value;

/// `add_labels`: adds labels to the event's issue or pull request.
///
/// Args: a list of labels (`[bug, triage]`) or `{labels, number?}`. Returns `labels`,
/// `number`.
#[derive(Debug, Default, Clone, Copy)]
pub struct AddLabels;

impl AddLabels {
    /// The name handlers use.
    pub const NAME: &'static str = "add_labels";
}

struct LabelsArgs {
    labels: Vec<String>,
    number: Option<u64>,
}

fn parse_labels(args: &Value) -> Result<LabelsArgs, ArgsError> {
    let key = |name: &str| ArgPathSegment::Key(name.to_owned());
    let (labels, mut path, number) = match args {
        Value::Object(map) => {
            if let Some(unknown) = map.keys().find(|k| *k != "labels" && *k != "number") {
                return Err(ArgsError {
                    path: vec![key(unknown)],
                    message: format!(
                        "unknown key `{unknown}`; add_labels takes `labels` and `number`"
                    ),
                });
            }
            let number = match map.get("number") {
                None => None,
                Some(value) => optional_number(value).map_err(|error| ArgsError {
                    path: vec![key("number")],
                    message: error.to_string(),
                })?,
            };
            let labels = map
                .get("labels")
                .ok_or_else(|| ArgsError::new("`labels` is missing: add `labels: [bug]`"))?;
            (labels, vec![key("labels")], number)
        }
        other => (other, Vec::new(), None),
    };
    let labels = match labels {
        // A template rendering a list gives `[[a, b]]` in the list form.
        Value::Array(items) if items.len() == 1 && items[0].is_array() => {
            path.push(ArgPathSegment::Index(0));
            &items[0]
        }
        other => other,
    };
    let items: Vec<&Value> = match labels {
        Value::Array(items) => items.iter().collect(),
        Value::String(_) => vec![labels],
        other => {
            return Err(ArgsError {
                path,
                message: format!("labels must be a list of names, e.g. [bug, triage], not {other}"),
            });
        }
    };
    if items.is_empty() {
        return Err(ArgsError {
            path,
            message: "there are no labels to add: list at least one".into(),
        });
    }
    let mut names = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let mut at = path.clone();
        if labels.is_array() {
            at.push(ArgPathSegment::Index(index));
        }
        let name = text(item).map_err(|_| ArgsError {
            path: at.clone(),
            message: format!("a label must be text, not {item}"),
        })?;
        if name.trim().is_empty() {
            return Err(ArgsError {
                path: at,
                message: "a label is empty".into(),
            });
        }
        names.push(name);
    }
    Ok(LabelsArgs {
        labels: names,
        number,
    })
}

#[async_trait]
impl Action for AddLabels {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn validate_args(&self, args: &Value) -> Result<(), ArgsError> {
        parse_labels(args).map(drop)
    }

    async fn run(&self, args: Value, ctx: &ActionContext<'_>) -> Result<ActionOutput, ActionError> {
        let args = parse_labels(&args).map_err(|error| {
            let path: String = error.path.iter().map(ToString::to_string).collect();
            ActionError::InvalidArgs(format!("args{path}: {}", error.message))
        })?;
        let number = issue_number(ctx, args.number)?;
        client(ctx)?
            .add_labels(&repo(ctx), number, &args.labels)
            .await
            .map_err(|error| api_error(ctx, Self::NAME, error))?;
        Ok(ActionOutput::success()
            .with("labels", args.labels)
            .with("number", number))
    }
}

/// Args of `remove_label`: `['bug']` or `{label, number?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveLabelArgs {
    /// The label's name.
    #[serde(deserialize_with = "text")]
    label: String,
    /// The issue or pull request; defaults to the event's.
    #[serde(default, deserialize_with = "optional_number")]
    number: Option<u64>,
}

/// `remove_label`: removes a label from the event's issue or pull request (a label that is
/// not there is not an error).
///
/// Returns `label`, `number`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RemoveLabel;

#[async_trait]
impl TypedAction for RemoveLabel {
    const NAME: &'static str = "remove_label";
    type Args = RemoveLabelArgs;

    fn check(&self, args: &RemoveLabelArgs) -> Result<(), ArgsError> {
        if args.label.trim().is_empty() {
            return Err(ArgsError {
                path: vec![ArgPathSegment::Key("label".into())],
                message: "the label is empty".into(),
            });
        }
        Ok(())
    }

    async fn run(
        &self,
        args: RemoveLabelArgs,
        ctx: &ActionContext<'_>,
    ) -> Result<ActionOutput, ActionError> {
        let number = issue_number(ctx, args.number)?;
        client(ctx)?
            .remove_label(&repo(ctx), number, &args.label)
            .await
            .map_err(|error| api_error(ctx, Self::NAME, error))?;
        Ok(ActionOutput::success()
            .with("label", args.label)
            .with("number", number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_come_as_a_list_a_map_or_one_name() {
        for args in [
            json!(["bug", "triage"]),
            json!({"labels": ["bug", "triage"]}),
            json!([["bug", "triage"]]),
        ] {
            assert_eq!(
                parse_labels(&args).expect("valid").labels,
                ["bug", "triage"],
                "{args}"
            );
        }
        assert_eq!(parse_labels(&json!("bug")).expect("valid").labels, ["bug"]);
        assert_eq!(
            parse_labels(&json!({"labels": "bug", "number": 7}))
                .expect("valid")
                .number,
            Some(7)
        );
    }

    #[test]
    fn refuses_what_cannot_work() {
        let error = parse_labels(&json!({"labels": ["bug", {"x": 1}]}))
            .err()
            .expect("refused");
        assert_eq!(
            error.path,
            [
                ArgPathSegment::Key("labels".into()),
                ArgPathSegment::Index(1)
            ]
        );
        assert!(parse_labels(&json!([])).is_err());
        assert!(
            parse_labels(&json!({"label": ["bug"]}))
                .err()
                .expect("refused")
                .message
                .contains("unknown key")
        );
        assert!(parse_labels(&json!(null)).is_err());
    }
}
