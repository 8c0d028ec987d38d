//! Encoding values for JSON columns.
//!
//! JSONB cannot hold the character U+0000 (PostgreSQL's text type cannot), while command
//! output, and so step data, sometimes does. Such characters are replaced by U+FFFD
//! (`�`) rather than failing the write: losing a NUL in a stored copy is better than
//! losing the step result.

use hamster_core::event::EventRecord;
use hamster_core::store::StoreError;
use serde::Serialize;
use serde_json::Value;

/// How serde_json writes U+0000 inside a string.
const ESCAPED_NUL: &str = "\\u0000";

/// Serializes `value` to JSON text ready to be cast to JSONB, replacing U+0000 in strings
/// and keys. `what` names the value in errors (`"step data"`).
pub(crate) fn to_jsonb_text<T: Serialize + ?Sized>(
    value: &T,
    what: &str,
) -> Result<String, StoreError> {
    let unserializable =
        |error: serde_json::Error| StoreError::Backend(format!("cannot serialize {what}: {error}"));
    let text = serde_json::to_string(value).map_err(unserializable)?;
    // Fast path: every U+0000 is written as `\u0000`, so text without that sequence has
    // none. (A literal backslash followed by `u0000` only costs the slow path.)
    if !text.contains(ESCAPED_NUL) {
        return Ok(text);
    }
    let mut tree: Value = serde_json::from_str(&text).map_err(unserializable)?;
    if replace_nul(&mut tree) {
        tracing::debug!("replaced U+0000 in {what}: JSONB cannot store it");
    }
    serde_json::to_string(&tree).map_err(unserializable)
}

/// A run's event as the JSON bytes stored in `runs.event` (BYTEA: U+0000 needs no
/// replacing there).
pub(crate) fn event_bytes(event: &EventRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(event)
        .map_err(|error| StoreError::Backend(format!("cannot serialize a run's event: {error}")))
}

/// A run's event without its payload, which its delivery keeps.
pub(crate) fn event_bytes_without_payload(event: &EventRecord) -> Result<Vec<u8>, StoreError> {
    event
        .to_json_without_payload()
        .map_err(|error| StoreError::Backend(format!("cannot serialize a run's event: {error}")))
}

/// Replaces U+0000 in every string and key of `value`; whether anything changed.
fn replace_nul(value: &mut Value) -> bool {
    match value {
        Value::String(text) => replace_nul_in(text),
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| replace_nul(item) | changed),
        Value::Object(map) => {
            let mut changed = false;
            if map.keys().any(|key| key.contains('\0')) {
                let entries = std::mem::take(map);
                for (mut key, value) in entries {
                    replace_nul_in(&mut key);
                    map.insert(key, value);
                }
                changed = true;
            }
            map.values_mut()
                .fold(changed, |changed, item| replace_nul(item) | changed)
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn replace_nul_in(text: &mut String) -> bool {
    if text.contains('\0') {
        *text = text.replace('\0', "\u{FFFD}");
        true
    } else {
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leaves_ordinary_values_untouched() {
        let value = json!({"output": "ok\n", "exit_code": 0, "nested": [{"a": null}]});
        let text = to_jsonb_text(&value, "test").unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    }

    #[test]
    fn replaces_nul_in_strings_keys_and_nested_values() {
        let value = json!({"out\u{0}put": ["a\u{0}b", {"c": "\u{0}"}], "plain": "x"});
        let text = to_jsonb_text(&value, "test").unwrap();
        assert!(!text.contains(ESCAPED_NUL), "{text}");
        let stored: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            stored,
            json!({"out\u{FFFD}put": ["a\u{FFFD}b", {"c": "\u{FFFD}"}], "plain": "x"})
        );
    }

    #[test]
    fn keeps_a_literal_backslash_u0000() {
        let value = json!({"text": "\\u0000"});
        let text = to_jsonb_text(&value, "test").unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    }
}
