//! Webhook deliveries into events.
//!
//! [`WebhookParser::parse`] (or [`parse_delivery`]) takes the headers and raw body of a
//! delivery, verifies its `X-Hub-Signature-256` when a secret is configured, parses the JSON
//! once and returns a [`Delivery`] holding [`GitHubEvent`]s whose typed sources
//! ([`PullRequest`], [`Commit`], [`Issue`], [`RepositorySource`]) implement
//! [`Source`](hamster_core::event::Source).
//!
//! A `ping` (sent when a webhook is created) produces no events: [`Delivery::ping`] says it
//! was one, and the server should just answer `200`.
//!
//! A server's intake uses [`WebhookParser::parse_for_intake`] instead: the same checks and
//! the same sources, as [`EventRecord`]s that leave the payload in the body. It builds only
//! the fields sources need, at about half the cost of a full parse.
//!
//! ```
//! use hamster_github::webhook::WebhookParser;
//! use hamster_core::event::Event;
//!
//! let parser = WebhookParser::new(None);
//! let mut headers = http::HeaderMap::new();
//! headers.insert("x-github-event", "push".parse().unwrap());
//! headers.insert("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958".parse().unwrap());
//! let body = br#"{"ref": "refs/heads/main", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246"}"#;
//!
//! let delivery = parser.parse(&headers, body).unwrap();
//! assert_eq!(delivery.events[0].name(), "push");
//! assert_eq!(delivery.events[0].source().kind(), "commit");
//! ```

mod enrich;
mod error;
mod event;
mod signature;
mod source;
mod summary;

pub use enrich::PullRequestEnricher;
pub use error::WebhookError;
pub use event::GitHubEvent;
pub use signature::verify_signature;
pub use source::{
    BranchTip, Commit, Conversation, GitHubSource, Issue, PULL_REQUEST_DEFERRED_FIELDS,
    PullRequest, PullRequestBranches, RepositoryInfo, RepositorySource,
};

use hamster_core::event::EventRecord;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use serde_json::Value;
use signature::SignatureKey;

/// `X-GitHub-Event`: which event the delivery carries.
pub const EVENT_HEADER: &str = "x-github-event";
/// `X-GitHub-Delivery`: the delivery's id, kept across redeliveries.
pub const DELIVERY_HEADER: &str = "x-github-delivery";
/// `X-Hub-Signature-256`: `sha256=` and the HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// `X-GitHub-Hook-ID`: the webhook configuration that sent the delivery.
pub const HOOK_ID_HEADER: &str = "x-github-hook-id";

/// Longest delivery id accepted; GitHub's are 36-character GUIDs.
const MAX_DELIVERY_ID_LEN: usize = 128;

/// A verified, parsed webhook delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// `X-GitHub-Delivery`; redeliveries keep it, so it is fit for de-duplication.
    pub id: String,
    /// `X-GitHub-Event`, e.g. `pull_request`.
    pub event: String,
    /// `X-GitHub-Hook-ID`, when sent.
    pub hook_id: Option<String>,
    /// Set when the delivery is a `ping`; a ping produces no events.
    pub ping: Option<Ping>,
    /// The events to react to: one per delivery, none for a ping.
    pub events: Vec<GitHubEvent>,
}

impl Delivery {
    /// Whether this is the `ping` GitHub sends when a webhook is created.
    pub fn is_ping(&self) -> bool {
        self.ping.is_some()
    }
}

/// What a `ping` delivery says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    /// GitHub's zen quote.
    pub zen: Option<String>,
    /// The webhook's id.
    pub hook_id: Option<u64>,
}

/// Parses deliveries for one webhook configuration. Cheap to share (`Clone`, `Send`,
/// `Sync`); the secret is keyed once here, not per delivery, and never shown by `Debug`.
#[derive(Clone, Debug)]
pub struct WebhookParser {
    key: Option<SignatureKey>,
}

impl WebhookParser {
    /// A parser that requires a valid `X-Hub-Signature-256` made with `secret`, or (with
    /// `None`) accepts unsigned deliveries and ignores signatures.
    pub fn new(secret: Option<&[u8]>) -> Self {
        Self {
            key: secret.map(SignatureKey::new),
        }
    }

    /// Whether deliveries must be signed.
    pub fn requires_signature(&self) -> bool {
        self.key.is_some()
    }

    /// Verifies and parses one delivery. Nothing is parsed before the signature checks out.
    pub fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<Delivery, WebhookError> {
        let head = self.verify(headers, body)?;
        let payload = parse_payload(headers, body)?;
        Ok(head.into_delivery(payload))
    }

    /// Verifies and reads one delivery for intake: like [`parse`](Self::parse), but the
    /// events come as records that leave the payload out, since the body is the payload
    /// ([`IntakeDelivery::body_is_payload`]). Only the fields that sources and event data
    /// read are built, not the whole payload: that is most of the cost of intake. The
    /// whole body's syntax is still checked.
    ///
    /// A form-encoded delivery, whose body is not the payload, and a `ping` are parsed
    /// whole.
    pub fn parse_for_intake(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<IntakeDelivery, WebhookError> {
        let head = self.verify(headers, body)?;
        if head.event == "ping" || is_form_encoded(headers) {
            let delivery = head.into_delivery(parse_payload(headers, body)?);
            return Ok(IntakeDelivery {
                events: delivery
                    .events
                    .into_iter()
                    .map(GitHubEvent::into_record)
                    .collect(),
                id: delivery.id,
                event: delivery.event,
                hook_id: delivery.hook_id,
                ping: delivery.ping,
                body_is_payload: false,
            });
        }
        let summary =
            summary::read_summary(body).map_err(|error| WebhookError::from_json(&error))?;
        let event =
            GitHubEvent::from_payload(&head.event, head.id.clone(), require_object(summary)?);
        Ok(IntakeDelivery {
            id: head.id,
            event: head.event,
            hook_id: head.hook_id,
            ping: None,
            events: vec![event.into_record_without_payload()],
            body_is_payload: true,
        })
    }

    /// Checks the signature and reads the headers.
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Head, WebhookError> {
        if let Some(key) = &self.key {
            key.verify(
                body,
                headers
                    .get(SIGNATURE_HEADER)
                    .map(http::HeaderValue::as_bytes),
            )?;
        }
        Ok(Head {
            event: event_name(headers)?,
            id: delivery_id(headers)?,
            hook_id: headers
                .get(HOOK_ID_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
        })
    }
}

/// A verified delivery read for intake ([`WebhookParser::parse_for_intake`]).
#[derive(Clone, Debug, PartialEq)]
pub struct IntakeDelivery {
    /// `X-GitHub-Delivery`; redeliveries keep it, so it is fit for de-duplication.
    pub id: String,
    /// `X-GitHub-Event`, e.g. `pull_request`.
    pub event: String,
    /// `X-GitHub-Hook-ID`, when sent.
    pub hook_id: Option<String>,
    /// Set when the delivery is a `ping`; a ping produces no events.
    pub ping: Option<Ping>,
    /// The events' records. When [`body_is_payload`](Self::body_is_payload), their data
    /// leave `payload` out: it is the body.
    pub events: Vec<EventRecord>,
    /// Whether the body is the events' payload, to be recorded as
    /// [`DeliveryRecord::body_is_payload`](hamster_core::store::DeliveryRecord::body_is_payload):
    /// true of JSON deliveries, false of form-encoded ones (whose records carry their
    /// payload).
    pub body_is_payload: bool,
}

/// A verified delivery's headers.
struct Head {
    event: String,
    id: String,
    hook_id: Option<String>,
}

impl Head {
    fn into_delivery(self, payload: Value) -> Delivery {
        let Head { event, id, hook_id } = self;
        if event == "ping" {
            let ping = Ping {
                zen: payload
                    .get("zen")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                hook_id: payload.get("hook_id").and_then(Value::as_u64),
            };
            tracing::debug!(delivery = %id, hook_id = ?ping.hook_id, "webhook ping");
            return Delivery {
                id,
                event,
                hook_id,
                ping: Some(ping),
                events: Vec::new(),
            };
        }
        let github_event = GitHubEvent::from_payload(&event, id.clone(), payload);
        Delivery {
            id,
            event,
            hook_id,
            ping: None,
            events: vec![github_event],
        }
    }
}

/// Verifies (when `secret` is set) and parses one delivery; see [`WebhookParser`], which
/// keys the secret once for many deliveries.
pub fn parse_delivery(
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&[u8]>,
) -> Result<Delivery, WebhookError> {
    WebhookParser::new(secret).parse(headers, body)
}

fn required_header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
    display_name: &'static str,
) -> Result<&'a str, WebhookError> {
    let value = headers
        .get(name)
        .ok_or(WebhookError::MissingHeader { name: display_name })?;
    let value = value
        .to_str()
        .map_err(|_| WebhookError::InvalidHeader {
            name: display_name,
            reason: "it is not visible ASCII".to_owned(),
        })?
        .trim();
    if value.is_empty() {
        return Err(WebhookError::InvalidHeader {
            name: display_name,
            reason: "it is empty".to_owned(),
        });
    }
    Ok(value)
}

fn event_name(headers: &HeaderMap) -> Result<String, WebhookError> {
    let event = required_header(headers, EVENT_HEADER, "X-GitHub-Event")?;
    // Event names become the first part of `<event>.<action>`, which handlers match on.
    if !event
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
    {
        return Err(WebhookError::InvalidHeader {
            name: "X-GitHub-Event",
            reason: "GitHub event names only have letters, digits, `_` and `-`".to_owned(),
        });
    }
    Ok(event.to_owned())
}

fn delivery_id(headers: &HeaderMap) -> Result<String, WebhookError> {
    let id = required_header(headers, DELIVERY_HEADER, "X-GitHub-Delivery")?;
    if id.len() > MAX_DELIVERY_ID_LEN {
        return Err(WebhookError::InvalidHeader {
            name: "X-GitHub-Delivery",
            reason: format!("it is longer than {MAX_DELIVERY_ID_LEN} characters"),
        });
    }
    Ok(id.to_owned())
}

fn is_form_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn parse_payload(headers: &HeaderMap, body: &[u8]) -> Result<Value, WebhookError> {
    let payload = if is_form_encoded(headers) {
        let json = form_urlencoded::parse(body)
            .find(|(key, _)| key == "payload")
            .map(|(_, value)| value)
            .ok_or(WebhookError::MissingFormPayload)?;
        serde_json::from_str::<Value>(&json)
    } else {
        serde_json::from_slice::<Value>(body)
    }
    .map_err(|error| WebhookError::from_json(&error))?;
    require_object(payload)
}

fn require_object(payload: Value) -> Result<Value, WebhookError> {
    let found = match &payload {
        Value::Object(_) => return Ok(payload),
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
    };
    Err(WebhookError::NotAnObject { found })
}
