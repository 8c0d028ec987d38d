//! Mutated real payloads never make the parser panic.

#![allow(clippy::unwrap_used)] // Tests and benches: a panic is the failure report.

use hamster_core::event::Event;
use hamster_github::webhook::{WebhookError, WebhookParser};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::OnceLock;

/// Events worth mutating: one of each source kind, plus the odd shapes.
const FIXTURES: &[(&str, &str)] = &[
    ("pull_request", "pull_request/opened.payload.json"),
    ("pull_request", "pull_request/edited.pr-triage-app.json"),
    (
        "pull_request_review",
        "pull_request_review/submitted.payload.json",
    ),
    (
        "issue_comment",
        "issue_comment/created.on-pull-request.go-playground-webhooks.json",
    ),
    ("issue_comment", "issue_comment/created.payload.json"),
    ("issues", "issues/opened.payload.json"),
    ("push", "push/with-new-branch.payload.json"),
    ("status", "status/payload.json"),
    ("check_run", "check_run/created.payload.json"),
    ("check_suite", "check_suite/requested.payload.json"),
    ("installation", "installation/created.payload.json"),
    ("ping", "ping/with-organization.payload.json"),
    ("release", "release/published.payload.json"),
];

fn payloads() -> &'static [(&'static str, Value)] {
    static PAYLOADS: OnceLock<Vec<(&'static str, Value)>> = OnceLock::new();
    PAYLOADS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/github-webhooks");
        FIXTURES
            .iter()
            .map(|(event, file)| {
                let body = std::fs::read(dir.join(file)).unwrap();
                (*event, serde_json::from_slice(&body).unwrap())
            })
            .collect()
    })
}

fn headers(event: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-github-event", HeaderValue::from_str(event).unwrap());
    headers.insert("x-github-delivery", HeaderValue::from_static("d-1"));
    headers
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Remove the key found by following `path` (indices modulo each level's size).
    Delete(Vec<usize>),
    /// Replace the value found by following `path` with another JSON type.
    Replace(Vec<usize>, Value),
}

fn other_values() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1, "two", null])),
        Just(json!({"login": 3, "sha": [], "ref": {}})),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let path = prop::collection::vec(any::<usize>(), 1..6);
    prop_oneof![
        path.clone().prop_map(Mutation::Delete),
        (path, other_values()).prop_map(|(path, value)| Mutation::Replace(path, value)),
    ]
}

/// Follows `path` as far as containers go and applies the mutation at the last container.
fn apply(value: &mut Value, mutation: &Mutation) {
    let (path, replacement) = match mutation {
        Mutation::Delete(path) => (path, None),
        Mutation::Replace(path, value) => (path, Some(value)),
    };
    let mut current = value;
    for (depth, &index) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        match current {
            Value::Object(map) if !map.is_empty() => {
                let key = map
                    .keys()
                    .nth(index % map.len())
                    .cloned()
                    .unwrap_or_default();
                let child_is_container = map.get(&key).is_some_and(|child| {
                    child.as_object().is_some_and(|o| !o.is_empty())
                        || child.as_array().is_some_and(|a| !a.is_empty())
                });
                if last || !child_is_container {
                    match replacement {
                        Some(new) => {
                            map.insert(key, new.clone());
                        }
                        None => {
                            map.remove(&key);
                        }
                    }
                    return;
                }
                current = map.get_mut(&key).unwrap_or_else(|| unreachable!());
            }
            Value::Array(items) if !items.is_empty() => {
                let at = index % items.len();
                let child_is_container = items[at].is_object() || items[at].is_array();
                if last || !child_is_container {
                    match replacement {
                        Some(new) => items[at] = new.clone(),
                        None => {
                            items.remove(at);
                        }
                    }
                    return;
                }
                current = &mut items[at];
            }
            _ => return,
        }
    }
}

/// Uses everything a handler could touch, so that a panic anywhere would show.
///
/// Intake's partial reading must accept and refuse the same bodies, and give the same
/// records once the payload is put back.
fn exercise(parser: &WebhookParser, event: &str, body: &[u8]) -> Result<usize, WebhookError> {
    let intake = parser.parse_for_intake(&headers(event), body);
    let delivery = match parser.parse(&headers(event), body) {
        Ok(delivery) => delivery,
        Err(error) => {
            assert_eq!(intake.unwrap_err().to_string(), error.to_string());
            return Err(error);
        }
    };
    let intake = intake.unwrap();
    assert_eq!(intake.events.len(), delivery.events.len());
    for (record, event) in intake.events.iter().zip(&delivery.events) {
        let mut record = record.clone();
        record.restore_payload(body).unwrap();
        assert_eq!(record, event.clone().into_record());
    }
    for event in &delivery.events {
        let record = event.to_record();
        assert!(record.source.fields.is_object());
        assert!(record.data.is_object());
        let _ = event.source().checkout();
        let _ = event.source().deferred_fields();
        assert!(event.name().starts_with(delivery.event.as_str()));
    }
    Ok(delivery.events.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_payloads_still_parse(
        which in 0..FIXTURES.len(),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let (event, payload) = &payloads()[which];
        let mut payload = payload.clone();
        for mutation in &mutations {
            apply(&mut payload, mutation);
        }
        let body = serde_json::to_vec(&payload).unwrap();
        let parser = WebhookParser::new(None);
        // Still a JSON object: missing or oddly typed fields must never be an error.
        let events = exercise(&parser, event, &body);
        prop_assert!(events.is_ok(), "{:?}", events);
        let expected = usize::from(*event != "ping");
        prop_assert_eq!(events.unwrap(), expected);
    }

    #[test]
    fn truncated_or_corrupted_bodies_are_ok_or_err(
        which in 0..FIXTURES.len(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let (event, payload) = &payloads()[which];
        let mut body = serde_json::to_vec_pretty(payload).unwrap();
        body.truncate(cut.index(body.len()));
        for (at, byte) in flips {
            if !body.is_empty() {
                let at = at.index(body.len());
                body[at] = byte;
            }
        }
        let _ = exercise(&WebhookParser::new(None), event, &body);
        // With a secret, unsigned garbage is always refused as unauthorized.
        let signed = WebhookParser::new(Some(b"secret"));
        let error = exercise(&signed, event, &body).unwrap_err();
        prop_assert!(error.is_unauthorized());
    }
}

#[test]
fn the_mutator_really_mutates() {
    let mut value = json!({"a": {"b": 1, "c": [1, 2]}});
    apply(&mut value, &Mutation::Delete(vec![0, 0]));
    assert_eq!(value, json!({"a": {"c": [1, 2]}}));
    apply(&mut value, &Mutation::Replace(vec![0, 0, 1], json!("x")));
    assert_eq!(value, json!({"a": {"c": [1, "x"]}}));
}
