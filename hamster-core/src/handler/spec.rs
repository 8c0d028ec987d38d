//! The handler model, as written in YAML or JSON.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// A handler: which events it reacts to, when, and the pipeline it runs.
///
/// ```yaml
/// name: Pull Request Linter
/// events: [pull_request.opened, pull_request.reopened]
/// criteria: source.repository is Hello-World
/// actions:
///   - action: shell_command
///     name: linter
///     args: ['pylint ./']
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    /// Unique among stored handlers.
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Event names (`pull_request.opened`), with `*` wildcards (`pull_request.*`).
    #[serde(deserialize_with = "one_or_many")]
    pub events: Vec<String>,
    /// An expression over `source` and `event`; the handler matches when it is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criteria: Option<String>,
    /// Disabled handlers never match.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Environment variables (values are templates) for every step's commands.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The pipeline, in order.
    pub actions: Vec<StepSpec>,
}

fn enabled_by_default() -> bool {
    true
}

/// One step of a pipeline, or of a callback list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The action's name, as registered.
    pub action: String,
    /// The name later steps use to see this step's result; defaults to the action's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The action's arguments, a list or a map; every string in it is a template.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub args: Value,
    /// Steps to run when this one succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<StepSpec>,
    /// Steps to run when this one fails (including a timeout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<StepSpec>,
    /// Fails the step when it runs longer: `30s`, `5m`, `1h 30m`, or a number of seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "duration_opt",
        serialize_with = "serialize_duration_opt"
    )]
    pub timeout: Option<Duration>,
    /// Keeps the pipeline going when this step fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_failure: bool,
}

impl StepSpec {
    /// The name templates use: the explicit name, or the action's.
    pub fn effective_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.action)
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Fraction(f64),
        Text(String),
    }
    let raw: Option<Raw> = Option::deserialize(d)?;
    raw.map(|raw| match raw {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Fraction(f) if f.is_finite() && f > 0.0 => Ok(Duration::from_secs_f64(f)),
        Raw::Fraction(f) => Err(serde::de::Error::custom(format!(
            "timeout must be positive, got {f}"
        ))),
        Raw::Text(text) => humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid timeout `{text}` ({e}); write it like `30s`, `5m` or `1h 30m`"
            ))
        }),
    })
    .transpose()
}

fn serialize_duration_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}
