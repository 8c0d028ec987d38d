//! Fetching what a comment event does not say about its pull request.

use super::source::PullRequestBranches;
use crate::client::{GitHub, RepoRef};
use async_trait::async_trait;
use hamster_core::event::{EnrichError, SourceEnricher, SourceRecord};
use serde_json::Value;
use std::sync::Arc;

/// Fills the [deferred fields](super::PULL_REQUEST_DEFERRED_FIELDS) of a `pull_request`
/// source (`head`, `base`, `branch`, `draft`, `merged`, plus `fork`) by fetching the pull
/// request from the API, exactly as a `pull_request` event would have set them, and pins the
/// checkout to the head commit it saw.
#[derive(Debug, Clone)]
pub struct PullRequestEnricher {
    github: Arc<dyn GitHub>,
}

impl PullRequestEnricher {
    /// An enricher that asks `github`.
    pub fn new(github: Arc<dyn GitHub>) -> Self {
        Self { github }
    }
}

#[async_trait]
impl SourceEnricher for PullRequestEnricher {
    async fn enrich(&self, source: &mut SourceRecord) -> Result<(), EnrichError> {
        let Some(first_deferred) = source.deferred.first().cloned() else {
            return Ok(());
        };
        let what = describe(source);
        let fail = |reason: String| EnrichError {
            field: first_deferred.clone(),
            what: what.clone(),
            reason,
        };
        if source.kind != "pull_request" {
            return Err(fail(format!(
                "PullRequestEnricher only fills pull_request sources, this one is a `{}`; \
                 configure an enricher for that kind",
                source.kind
            )));
        }
        let number = source
            .fields
            .get("number")
            .and_then(Value::as_u64)
            .ok_or_else(|| fail("the source has no pull request `number`".to_owned()))?;
        let repo = RepoRef::from(&source.repository);
        tracing::debug!(%repo, number, deferred = ?source.deferred, "fetching pull request to fill deferred fields");
        let pull_request = self
            .github
            .get_pull_request(&repo, number)
            .await
            .map_err(|error| fail(error.to_string()))?;
        if !pull_request.get("head").is_some_and(Value::is_object) {
            return Err(fail(
                "GitHub's answer has no `head` object; is the token allowed to read pull requests?"
                    .to_owned(),
            ));
        }
        let branches = PullRequestBranches::from_object(&pull_request);

        let mut fields = source.fields.as_object().cloned().unwrap_or_default();
        branches.insert_fields(&mut fields);
        if let Some(missing) = source
            .deferred
            .iter()
            .find(|field| !fields.contains_key(field.as_str()))
        {
            return Err(EnrichError {
                field: missing.clone(),
                what,
                reason: "a pull request has no such field".to_owned(),
            });
        }
        set_fields(&mut source.fields, Value::Object(fields));
        if let Some(checkout) = &mut source.checkout {
            if checkout.sha.is_none() {
                // Pin the checkout to the commit the fields describe, not whatever the branch
                // points to when the workspace fetches.
                checkout.sha = branches.head.sha.clone();
            }
        }
        source.deferred.clear();
        Ok(())
    }
}

/// Stores new fields whether the record holds them as a `Value` or shares them (`Arc<Value>`).
fn set_fields<Fields: From<Value>>(slot: &mut Fields, fields: Value) {
    *slot = Fields::from(fields);
}

fn describe(source: &SourceRecord) -> String {
    match source.fields.get("number").and_then(Value::as_u64) {
        Some(number) => format!("{}#{number}", source.repository.full_name()),
        None => source.repository.full_name(),
    }
}
