//! Reading only the part of a payload that intake needs.
//!
//! A `pull_request` delivery is about 28 KB of JSON, of which a source and the event's data
//! read a few dozen fields. Building the whole tree and freeing it was most of the
//! appserver's CPU per delivery; [`read_summary`] builds only the fields listed in
//! [`SUMMARY`], and reads the rest without allocating.
//!
//! It accepts exactly the texts a full parse accepts: the payload is parsed whole again
//! later (by a store, from the delivery's body), so a body that only the summary could read
//! would leave runs that cannot be read back. Skipped values are therefore checked as a
//! full parse checks them ([`Checked`]: UTF-8, escapes, number range, nesting depth),
//! which `serde::de::IgnoredAny` does not do.
//!
//! [`SUMMARY`] must name every field that [`source`](super::source) and
//! [`event`](super::event) read from a payload: a field it misses reads as absent at intake.
//! `tests/webhooks.rs` checks, over every recorded payload, that a summary gives the same
//! record as the whole payload, and a test here that every key those modules name is kept.

use serde::Deserializer;
use serde::de::{Deserialize, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// What to keep of a JSON value.
#[derive(Debug)]
pub(crate) enum Keep {
    /// All of it.
    All,
    /// Of an object, these keys (each with what to keep of it); of an array, this of each
    /// element; a scalar is kept as it is.
    Fields(&'static [(&'static str, Keep)]),
}

use Keep::{All, Fields};

/// A user or account: its login, and its page (which names the host of an account-level
/// event).
const ACCOUNT: Keep = Fields(&[("login", All), ("html_url", All), ("name", All)]);

/// An issue or a pull request, as a conversation.
const CONVERSATION: [(&str, Keep); 10] = [
    ("number", All),
    ("title", All),
    ("body", All),
    ("user", ACCOUNT),
    ("html_url", All),
    ("labels", Fields(&[("name", All)])),
    ("state", All),
    ("locked", All),
    ("assignees", Fields(&[("login", All)])),
    ("milestone", Fields(&[("title", All)])),
];

/// A pull request's head or base.
const BRANCH_TIP: Keep = Fields(&[
    ("ref", All),
    ("sha", All),
    ("repo", Fields(&[("full_name", All)])),
    ("label", All),
]);

/// A pull request: its conversation, and its branches.
const PULL_REQUEST: [(&str, Keep); 15] = {
    // A const array cannot be spread into another; taking it apart can.
    let [a, b, c, d, e, f, g, h, i, j] = CONVERSATION;
    [
        a,
        b,
        c,
        d,
        e,
        f,
        g,
        h,
        i,
        j,
        ("merged", All),
        ("merged_at", All),
        ("draft", All),
        ("head", BRANCH_TIP),
        ("base", BRANCH_TIP),
    ]
};

const ISSUE: [(&str, Keep); 11] = {
    let [a, b, c, d, e, f, g, h, i, j] = CONVERSATION;
    // An issue with a `pull_request` object is a pull request's conversation; only that the
    // object is there matters.
    [a, b, c, d, e, f, g, h, i, j, ("pull_request", Fields(&[]))]
};

const HEAD_COMMIT: Keep = Fields(&[
    ("author", Fields(&[("username", All), ("name", All)])),
    ("message", All),
    ("url", All),
]);

const CHECK_APP: Keep = Fields(&[("slug", All), ("name", All)]);

const CHECK_PULL_REQUESTS: Keep = Fields(&[("number", All)]);

/// Every field of a payload that intake reads, for every kind of event.
pub(crate) static SUMMARY: Keep = Fields(&[
    // The event's own data.
    ("action", All),
    ("sender", ACCOUNT),
    ("installation", Fields(&[("id", All), ("account", ACCOUNT)])),
    ("organization", ACCOUNT),
    (
        "comment",
        Fields(&[
            ("id", All),
            ("body", All),
            ("html_url", All),
            ("created_at", All),
            ("user", ACCOUNT),
        ]),
    ),
    (
        "review",
        Fields(&[
            ("id", All),
            ("body", All),
            ("state", All),
            ("html_url", All),
            ("commit_id", All),
            ("submitted_at", All),
            ("user", ACCOUNT),
        ]),
    ),
    ("label", Fields(&[("name", All)])),
    // The repository.
    (
        "repository",
        Fields(&[
            ("html_url", All),
            ("url", All),
            ("full_name", All),
            ("owner", ACCOUNT),
            ("name", All),
            ("clone_url", All),
            ("ssh_url", All),
            ("default_branch", All),
            ("master_branch", All),
            ("private", All),
        ]),
    ),
    // Pull requests and issues.
    ("pull_request", Fields(&PULL_REQUEST)),
    ("number", All),
    ("issue", Fields(&ISSUE)),
    // Pushes.
    ("ref", All),
    ("before", All),
    ("after", All),
    ("created", All),
    ("deleted", All),
    ("forced", All),
    ("base_ref", All),
    ("compare", All),
    ("head_commit", HEAD_COMMIT),
    ("pusher", Fields(&[("name", All)])),
    // Only how many there are.
    ("commits", Fields(&[])),
    // Commit statuses.
    ("sha", All),
    ("state", All),
    ("context", All),
    ("description", All),
    ("target_url", All),
    (
        "branches",
        Fields(&[("name", All), ("commit", Fields(&[("sha", All)]))]),
    ),
    (
        "commit",
        Fields(&[
            (
                "commit",
                Fields(&[("author", Fields(&[("name", All)])), ("message", All)]),
            ),
            ("author", ACCOUNT),
            ("html_url", All),
        ]),
    ),
    // Check suites and runs.
    (
        "check_suite",
        Fields(&[
            ("status", All),
            ("conclusion", All),
            ("app", CHECK_APP),
            ("pull_requests", CHECK_PULL_REQUESTS),
            ("head_sha", All),
            ("head_branch", All),
            ("head_commit", HEAD_COMMIT),
        ]),
    ),
    (
        "check_run",
        Fields(&[
            ("name", All),
            ("status", All),
            ("conclusion", All),
            ("details_url", All),
            ("html_url", All),
            ("app", CHECK_APP),
            ("pull_requests", CHECK_PULL_REQUESTS),
            ("head_sha", All),
            (
                "check_suite",
                Fields(&[("head_branch", All), ("head_commit", HEAD_COMMIT)]),
            ),
        ]),
    ),
]);

/// Reads `json` keeping only what [`SUMMARY`] names. The whole text is checked: invalid JSON
/// fails exactly as a full parse would.
pub(crate) fn read_summary(json: &[u8]) -> serde_json::Result<Value> {
    // One UTF-8 check of the whole text costs less than one per string. A text that is not
    // UTF-8 is read as bytes, only to fail where a full parse fails, with its message.
    match std::str::from_utf8(json) {
        Ok(text) => read(serde_json::Deserializer::from_str(text)),
        Err(_) => read(serde_json::Deserializer::from_slice(json)),
    }
}

fn read<'de, R: serde_json::de::Read<'de>>(
    mut deserializer: serde_json::Deserializer<R>,
) -> serde_json::Result<Value> {
    let value = Pruned(&SUMMARY).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Deserializes a value, keeping what its [`Keep`] says.
#[derive(Clone, Copy)]
struct Pruned(&'static Keep);

impl<'de> DeserializeSeed<'de> for Pruned {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.0 {
            All => serde::Deserialize::deserialize(deserializer),
            Fields(fields) => deserializer.deserialize_any(PrunedFields(fields)),
        }
    }
}

/// Deserializes a value whose [`Keep`] is [`Fields`].
#[derive(Clone, Copy)]
struct PrunedFields(&'static [(&'static str, Keep)]);

impl<'de> DeserializeSeed<'de> for PrunedFields {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PrunedFields {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    /// Each element is kept as the array is.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(field) = map.next_key_seed(FieldName(self.0))? {
            match field {
                Some((name, keep)) => {
                    // A repeated key keeps its last value, as a full parse does.
                    object.insert(name.to_owned(), map.next_value_seed(Pruned(keep))?);
                }
                None => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// Reads an object's key and says which listed field it is, without allocating.
struct FieldName(&'static [(&'static str, Keep)]);

impl<'de> DeserializeSeed<'de> for FieldName {
    type Value = Option<(&'static str, &'static Keep)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldName {
    type Value = Option<(&'static str, &'static Keep)>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(name, keep)| (*name, keep)))
    }
}

/// A value read and checked as a full parse would, and dropped: strings are validated (and
/// borrowed, not copied, when they have no escapes), numbers converted, depth counted.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn kept_keys(keep: &Keep, into: &mut BTreeSet<&'static str>) {
        if let Fields(fields) = keep {
            for (name, keep) in *fields {
                into.insert(name);
                kept_keys(keep, into);
            }
        }
    }

    /// The string literals of a module's code (its tests left out) that look like keys.
    fn key_literals(code: &str) -> BTreeSet<String> {
        let code = code.split("#[cfg(test)]").next().unwrap_or(code);
        code.lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .flat_map(|line| line.split('"').skip(1).step_by(2))
            .filter(|literal| {
                !literal.is_empty() && literal.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
            .map(str::to_owned)
            .collect()
    }

    /// A tripwire for the one way this module goes wrong: a field read from payloads in
    /// `source.rs` or `event.rs` that [`SUMMARY`] does not keep. (The fixtures in
    /// `tests/webhooks.rs` check the paths; this checks the names, fallbacks included.)
    #[test]
    fn every_key_the_sources_read_is_kept() {
        // Literals that are never looked up in a payload: fields written into sources and
        // data, and event names.
        const WRITTEN_OR_EVENT_NAMES: [&str; 14] = [
            "branch",
            "delivery_id",
            "fork",
            "host",
            "kind",
            "payload",
            "source",
            "tag",
            "issue_comment",
            "issues",
            "push",
            "pull_request_review",
            "pull_request_review_comment",
            "pull_request_review_thread",
        ];
        let mut kept = BTreeSet::new();
        kept_keys(&SUMMARY, &mut kept);
        let mut read = key_literals(include_str!("source.rs"));
        read.extend(key_literals(include_str!("event.rs")));
        let missing: Vec<&String> = read
            .iter()
            .filter(|key| !kept.contains(key.as_str()))
            .filter(|key| !WRITTEN_OR_EVENT_NAMES.contains(&key.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "read from payloads but not kept by SUMMARY: {missing:?}; keep them where they are \
             read, or list them here if they are only written"
        );
    }

    /// Whatever a full parse refuses, the summary refuses too, with the same message.
    #[test]
    fn skipped_values_are_checked_as_a_full_parse_checks_them() {
        let deep = format!("{{\"skipped\": {}1{}}}", "[".repeat(200), "]".repeat(200));
        let refused: [&[u8]; 7] = [
            b"{\"skipped\": \"\\ud800 lone surrogate\"}",
            b"{\"skipped\": 1e400}",
            b"{\"skipped\": \"\xff not UTF-8\"}",
            b"{\"skipped\": {\"\xff\": 1}}",
            b"{\"skipped\": [1, 2,]}",
            b"{\"skipped\": \"tab\there\"}",
            deep.as_bytes(),
        ];
        for text in refused {
            let full = serde_json::from_slice::<Value>(text).unwrap_err();
            let summary = read_summary(text).unwrap_err();
            assert_eq!(
                summary.to_string(),
                full.to_string(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let trailing = b"{\"action\": \"opened\"} trailing";
        assert_eq!(
            read_summary(trailing).unwrap_err().to_string(),
            serde_json::from_slice::<Value>(trailing)
                .unwrap_err()
                .to_string()
        );
    }

    #[test]
    fn only_listed_fields_are_kept_at_every_depth() {
        let text = br#"{
            "action": "opened",
            "zen": "not listed",
            "pull_request": {
                "number": 7, "title": null, "diff_url": "not listed",
                "labels": [{"name": "bug", "color": "f00"}, "plain"],
                "head": {"ref": "topic", "repo": {"full_name": "o/r", "size": 3}},
                "draft": true
            },
            "commits": [{"id": "a"}, {"id": "b"}],
            "repository": {"name": "r", "owner": {"login": "o", "id": 1}},
            "action": "reopened"
        }"#;
        let expected = serde_json::json!({
            "action": "reopened",
            "pull_request": {
                "number": 7, "title": null,
                "labels": [{"name": "bug"}, "plain"],
                "head": {"ref": "topic", "repo": {"full_name": "o/r"}},
                "draft": true
            },
            "commits": [{}, {}],
            "repository": {"name": "r", "owner": {"login": "o"}}
        });
        assert_eq!(read_summary(text).unwrap(), expected);
    }
}
