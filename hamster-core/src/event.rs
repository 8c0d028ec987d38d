//! Events and the sources they are about.
//!
//! A forge integration (such as `hamster-github`) turns a delivery into values implementing
//! [`Event`]. The engine snapshots each event into an [`EventRecord`] at intake: runs are
//! stored and shipped to workers as records, so a worker never needs the original payload
//! types, and a user-defined event type works as well as a built-in one.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt::Debug;
use std::sync::Arc;

/// Identity of a repository on a forge.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Repository {
    /// Host of the forge, e.g. `github.com` or a GitHub Enterprise host name.
    pub host: String,
    /// Owner login (user or organization), e.g. `Codertocat`.
    pub owner: String,
    /// Repository name without the owner, e.g. `Hello-World`.
    pub name: String,
    /// HTTPS clone URL, when the forge told us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_url: Option<String>,
    /// SSH clone URL, when the forge told us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_url: Option<String>,
}

impl Repository {
    /// Creates an identity with no clone URLs.
    pub fn new(host: impl Into<String>, owner: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            owner: owner.into(),
            name: name.into(),
            clone_url: None,
            ssh_url: None,
        }
    }

    /// `owner/name`, e.g. `Codertocat/Hello-World`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// What a [`Workspace`](crate::workspace::Workspace) must put on disk to materialize a source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    /// The repository to clone.
    pub repository: Repository,
    /// The ref to fetch, e.g. `refs/pull/7/head` or `refs/heads/main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_ref: Option<String>,
    /// The commit to check out. When absent, the tip of `fetch_ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
}

/// What an event is about: a pull request, a pushed commit, an issue, a repository…
///
/// Contract:
/// - [`kind`](Source::kind) is a short stable word (`pull_request`, `commit`, `issue`,
///   `repository`) that handlers and logs may show.
/// - [`fields`](Source::fields) is a JSON object; it is what templates and criteria see as
///   `source`. It must be cheap to compute and must not perform I/O.
/// - [`checkout`](Source::checkout) says how to materialize the source on disk, or `None`
///   when there is nothing to check out. Materialization itself is the workspace's job and
///   happens only when an action asks for it.
/// - [`deferred_fields`](Source::deferred_fields) names top-level fields that are not known
///   from the event itself (a pull request's head for a comment event). The engine asks a
///   [`SourceEnricher`] to fill them only when a handler's
///   templates or criteria use them.
pub trait Source: Send + Sync + Debug {
    /// A short stable word naming what this source is.
    fn kind(&self) -> &str;
    /// The repository this source lives in.
    fn repository(&self) -> &Repository;
    /// The object templates see as `source`.
    fn fields(&self) -> Value;
    /// How to materialize this source on disk, if it can be.
    fn checkout(&self) -> Option<Checkout>;
    /// Fields of [`fields`](Source::fields) that must be fetched before they can be used.
    fn deferred_fields(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Something that happened on the forge, that handlers react to.
///
/// Contract:
/// - [`name`](Event::name) is `<event>.<action>` (`pull_request.opened`) or just `<event>`
///   when the event has no action (`push`). Handlers select events by this name.
/// - [`source`](Event::source) is mandatory: every event is about something.
/// - [`data`](Event::data) is a JSON object with the event's own data (`action`, `sender`,
///   `comment`, the raw `payload`…). Templates see it as `event`, together with `name` and
///   `delivery`, which the engine adds.
/// - [`delivery_id`](Event::delivery_id) identifies the delivery the event came from, when
///   there is one; redeliveries carry the same id.
pub trait Event: Send + Sync + Debug {
    /// The event's name, e.g. `pull_request.opened`.
    fn name(&self) -> &str;
    /// The delivery this event came from, if any.
    fn delivery_id(&self) -> Option<&str>;
    /// What the event is about.
    fn source(&self) -> &dyn Source;
    /// The event's own data, seen by templates as `event`.
    fn data(&self) -> Value;

    /// A serializable snapshot of this event, as stored with runs and sent to workers.
    fn to_record(&self) -> EventRecord {
        let source = self.source();
        EventRecord {
            name: self.name().to_owned(),
            delivery_id: self.delivery_id().map(str::to_owned),
            source: SourceRecord {
                kind: source.kind().to_owned(),
                repository: source.repository().clone(),
                fields: Arc::new(source.fields()),
                checkout: source.checkout(),
                deferred: source.deferred_fields(),
            },
            data: Arc::new(self.data()),
        }
    }
}

/// A serializable snapshot of a [`Source`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// See [`Source::kind`].
    pub kind: String,
    /// See [`Source::repository`].
    pub repository: Repository,
    /// See [`Source::fields`]. Shared: runs and template scopes hold the same snapshot.
    pub fields: Arc<Value>,
    /// See [`Source::checkout`].
    #[serde(default)]
    pub checkout: Option<Checkout>,
    /// See [`Source::deferred_fields`]; emptied once enriched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<String>,
}

impl Source for SourceRecord {
    fn kind(&self) -> &str {
        &self.kind
    }
    fn repository(&self) -> &Repository {
        &self.repository
    }
    fn fields(&self) -> Value {
        (*self.fields).clone()
    }
    fn checkout(&self) -> Option<Checkout> {
        self.checkout.clone()
    }
    fn deferred_fields(&self) -> Vec<String> {
        self.deferred.clone()
    }
}

/// A serializable snapshot of an [`Event`]: what runs store and workers receive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// See [`Event::name`].
    pub name: String,
    /// See [`Event::delivery_id`].
    #[serde(default)]
    pub delivery_id: Option<String>,
    /// See [`Event::source`].
    pub source: SourceRecord,
    /// See [`Event::data`]. Shared: runs and template scopes hold the same snapshot.
    ///
    /// At intake, `payload` may be left out when it is the body of the delivery the event
    /// came with ([`DeliveryRecord::left_out_payload_of`]): the engine puts it back before
    /// criteria that read it are evaluated, and stores put it back when they read runs.
    ///
    /// [`DeliveryRecord::left_out_payload_of`]: crate::store::DeliveryRecord::left_out_payload_of
    pub data: Arc<Value>,
}

impl EventRecord {
    /// The object templates see as `event`: the event's data plus `name` and `delivery`.
    pub fn template_value(&self) -> Value {
        let mut object = match &*self.data {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            other => {
                let mut map = Map::new();
                map.insert("data".to_owned(), other.clone());
                map
            }
        };
        object.insert("name".to_owned(), Value::String(self.name.clone()));
        object.insert(
            "delivery".to_owned(),
            self.delivery_id.clone().map_or(Value::Null, Value::String),
        );
        object
            .entry("action")
            .or_insert_with(|| match self.name.split_once('.') {
                Some((_, action)) => Value::String(action.to_owned()),
                None => Value::Null,
            });
        Value::Object(object)
    }
}

/// The key of [`EventRecord::data`] that holds the delivery's payload.
const PAYLOAD: &str = "payload";

impl EventRecord {
    /// This event as JSON, without `data.payload`: for a store that keeps the payload once,
    /// with the delivery it came in (see [`DeliveryRecord::body_is_payload`]). The payload
    /// is neither serialized nor copied.
    ///
    /// [`DeliveryRecord::body_is_payload`]: crate::store::DeliveryRecord::body_is_payload
    pub fn to_json_without_payload(&self) -> serde_json::Result<Vec<u8>> {
        let data = match &*self.data {
            Value::Object(map) if map.contains_key(PAYLOAD) => Arc::new(Value::Object(
                map.iter()
                    .filter(|(key, _)| key.as_str() != PAYLOAD)
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
            )),
            _ => self.data.clone(),
        };
        serde_json::to_vec(&EventRecord {
            name: self.name.clone(),
            delivery_id: self.delivery_id.clone(),
            source: self.source.clone(),
            data,
        })
    }

    /// Whether `data` holds a `payload`.
    pub fn has_payload(&self) -> bool {
        self.data.get(PAYLOAD).is_some()
    }

    /// Puts back the payload that [`to_json_without_payload`](Self::to_json_without_payload)
    /// (or intake) left out, from the delivery's body.
    pub fn restore_payload(&mut self, body: &[u8]) -> serde_json::Result<()> {
        let payload: Value = serde_json::from_slice(body)?;
        // Only object data ever has a payload left out.
        if let Value::Object(map) = Arc::make_mut(&mut self.data) {
            map.insert(PAYLOAD.to_owned(), payload);
        }
        Ok(())
    }
}

impl Event for EventRecord {
    fn name(&self) -> &str {
        &self.name
    }
    fn delivery_id(&self) -> Option<&str> {
        self.delivery_id.as_deref()
    }
    fn source(&self) -> &dyn Source {
        &self.source
    }
    fn data(&self) -> Value {
        (*self.data).clone()
    }
    fn to_record(&self) -> EventRecord {
        self.clone()
    }
}

/// Why a source could not be enriched.
#[derive(Debug, thiserror::Error)]
#[error("could not fetch {field} of {what}: {reason}")]
pub struct EnrichError {
    /// Which deferred field.
    pub field: String,
    /// What the source is, e.g. `Codertocat/Hello-World#2`.
    pub what: String,
    /// Why, with what to fix.
    pub reason: String,
}

/// Fills a source's [deferred fields](Source::deferred_fields) (for example, fetches a pull
/// request's head from the API for a comment event).
///
/// Contract: on success every name in `source.deferred` is present in `source.fields` and
/// `deferred` is empty. The engine calls it at most once per run, on the worker, and only
/// when the handler uses a deferred field or the run needs a checkout.
#[async_trait]
pub trait SourceEnricher: Send + Sync + Debug {
    /// Fills the deferred fields of `source`.
    async fn enrich(&self, source: &mut SourceRecord) -> Result<(), EnrichError>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: Value) -> EventRecord {
        EventRecord {
            name: "pull_request.opened".to_owned(),
            delivery_id: Some("d-1".to_owned()),
            source: SourceRecord {
                kind: "pull_request".to_owned(),
                repository: Repository::new("github.com", "octo", "hello"),
                fields: Arc::new(json!({"number": 7})),
                checkout: None,
                deferred: Vec::new(),
            },
            data: Arc::new(data),
        }
    }

    #[test]
    fn a_payload_left_out_is_restored_from_the_body() {
        let body = br#"{"action": "opened", "pull_request": {"title": "T\u00e9st \u0000"}}"#;
        let payload: Value = serde_json::from_slice(body).unwrap();
        let original = event(json!({"action": "opened", "sender": "octocat", "payload": payload}));

        let stored = original.to_json_without_payload().unwrap();
        let text = String::from_utf8(stored.clone()).unwrap();
        assert!(!text.contains("pull_request\":{"), "{text}");
        assert!(text.contains("\"sender\":\"octocat\""), "{text}");

        let mut read: EventRecord = serde_json::from_slice(&stored).unwrap();
        assert_ne!(read, original);
        read.restore_payload(body).unwrap();
        assert_eq!(read, original);
        assert!(read.restore_payload(b"{not json").is_err());
    }

    #[test]
    fn events_without_a_payload_are_written_whole() {
        let original = event(json!({"action": "opened"}));
        let stored = original.to_json_without_payload().unwrap();
        assert_eq!(stored, serde_json::to_vec(&original).unwrap());
    }
}
