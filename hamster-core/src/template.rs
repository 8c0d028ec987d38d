//! Templates and criteria: minijinja configured for Hamster.
//!
//! One [`Environment`] is built per handler and holds every template of that handler,
//! compiled once when the handler is loaded. Rendering sees a [`Scope`]: `source`, `event`
//! and the results of earlier steps by name.
//!
//! Two choices matter for safety and speed:
//! - Strings rendered into a shell script are shell-quoted by the formatter unless marked
//!   `| raw`, so an attacker-controlled pull request title can never become shell syntax.
//! - Event payloads are exposed through [`json`], a lazy view over the JSON value, so a
//!   25 KB payload is not converted into template values on every render.

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};
use parking_lot::Mutex;
use regex::Regex;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// Suffix of template names whose output is a shell script.
pub(crate) const SHELL_SUFFIX: &str = ".sh";
const SHELL_ESCAPE: AutoEscape = AutoEscape::Custom("shell");

/// Filter that turns a value into JSON for typed args, refusing undefined values (minijinja's
/// strict mode lets undefined values through filters).
pub(crate) const TYPED_FILTER: &str = "__hamster_typed";

/// The names of tests Hamster adds to minijinja's built-in ones.
pub const EXTRA_TESTS: [&str; 4] = ["matches", "startswith", "endswith", "contains"];

/// The environment criteria expressions are compiled in: shared by every handler, so that a
/// compiled [`Expression`](minijinja::Expression) can live as long as its handler.
pub(crate) static CRITERIA_ENV: LazyLock<Environment<'static>> = LazyLock::new(environment);

/// A minijinja environment with Hamster's settings: strict undefined, shell quoting for
/// templates named `*.sh`, the `raw` filter, and the `matches` / `startswith` / `endswith` /
/// `contains` tests.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(SHELL_SUFFIX) {
            SHELL_ESCAPE
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(shell_aware_formatter);
    env.add_filter("raw", |value: Value| {
        Value::from_safe_string(value.to_string())
    });
    env.add_filter(TYPED_FILTER, |value: Value| {
        if value.is_undefined() {
            return Err(Error::new(ErrorKind::UndefinedError, "undefined value"));
        }
        serde_json::to_string(&value)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
    });
    env.add_test("matches", test_matches);
    env.add_test("startswith", |value: &str, prefix: &str| {
        value.starts_with(prefix)
    });
    env.add_test("endswith", |value: &str, suffix: &str| {
        value.ends_with(suffix)
    });
    env.add_test("contains", test_contains);
    env
}

fn shell_aware_formatter(
    out: &mut minijinja::Output<'_>,
    state: &State<'_, '_>,
    value: &Value,
) -> Result<(), Error> {
    if state.auto_escape() != SHELL_ESCAPE || value.is_safe() {
        // `escape_formatter` would reject the custom format; the value is written as is.
        if state.auto_escape() == SHELL_ESCAPE {
            return out
                .write_str(&value.to_string())
                .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()));
        }
        return minijinja::escape_formatter(out, state, value);
    }
    let text = value.to_string();
    let quoted = shlex::try_quote(&text).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            "a value rendered into a shell command contains a NUL byte",
        )
    })?;
    out.write_str(&quoted)
        .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()))
}

static REGEX_CACHE: LazyLock<Mutex<HashMap<String, Arc<Regex>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Compiles a regex, caching it: criteria run on every delivery with the same patterns.
fn cached_regex(pattern: &str) -> Result<Arc<Regex>, Error> {
    let mut cache = REGEX_CACHE.lock();
    if let Some(re) = cache.get(pattern) {
        return Ok(re.clone());
    }
    let re = Arc::new(Regex::new(pattern).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("invalid regular expression `{pattern}`: {e}"),
        )
    })?);
    if cache.len() >= 1024 {
        cache.clear();
    }
    cache.insert(pattern.to_owned(), re.clone());
    Ok(re)
}

fn test_matches(value: &str, pattern: &str) -> Result<bool, Error> {
    Ok(cached_regex(pattern)?.is_match(value))
}

fn test_contains(haystack: Value, needle: Value) -> Result<bool, Error> {
    if let (Some(text), Some(part)) = (haystack.as_str(), needle.as_str()) {
        return Ok(text.contains(part));
    }
    let mut items = haystack.try_iter()?;
    Ok(items.any(|item| item == needle))
}

/// Something that holds a JSON value a template may read lazily.
pub trait JsonRoot: Send + Sync + std::fmt::Debug + 'static {
    /// The JSON value.
    fn json(&self) -> &serde_json::Value;
}

impl JsonRoot for serde_json::Value {
    fn json(&self) -> &serde_json::Value {
        self
    }
}

/// A lazy template view of a JSON value: nested objects and arrays are converted only when a
/// template reaches into them.
pub fn json(value: Arc<serde_json::Value>) -> Value {
    json_root(value)
}

/// Like [`json`], for any holder of a JSON value.
pub fn json_root(root: Arc<dyn JsonRoot>) -> Value {
    JsonNode {
        root,
        pointer: String::new(),
    }
    .itself()
    .unwrap_or_else(|| Value::from(()))
}

fn scalar_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        _ => Value::from(()),
    }
}

#[derive(Debug)]
struct JsonNode {
    root: Arc<dyn JsonRoot>,
    pointer: String,
}

impl JsonNode {
    fn node(&self) -> Option<&serde_json::Value> {
        if self.pointer.is_empty() {
            Some(self.root.json())
        } else {
            self.root.json().pointer(&self.pointer)
        }
    }

    /// This node itself as a template value.
    fn itself(&self) -> Option<Value> {
        Some(match self.node()? {
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                Value::from_object(JsonNode {
                    root: self.root.clone(),
                    pointer: self.pointer.clone(),
                })
            }
            scalar => scalar_value(scalar),
        })
    }

    fn child(&self, value: &serde_json::Value, segment: impl std::fmt::Display) -> Value {
        match value {
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                let segment = segment.to_string().replace('~', "~0").replace('/', "~1");
                Value::from_object(JsonNode {
                    root: self.root.clone(),
                    pointer: format!("{}/{segment}", self.pointer),
                })
            }
            scalar => scalar_value(scalar),
        }
    }
}

impl Object for JsonNode {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.node() {
            Some(serde_json::Value::Array(_)) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match self.node()? {
            serde_json::Value::Object(map) => {
                let key = key.as_str()?;
                map.get(key).map(|child| self.child(child, key))
            }
            serde_json::Value::Array(items) => {
                let index = i64::try_from(key.clone()).ok()?;
                let index = if index < 0 {
                    items.len().checked_sub(index.unsigned_abs() as usize)?
                } else {
                    usize::try_from(index).ok()?
                };
                items.get(index).map(|child| self.child(child, index))
            }
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.node() {
            Some(serde_json::Value::Object(map)) => {
                Enumerator::Values(map.keys().map(|k| Value::from(k.as_str())).collect())
            }
            Some(serde_json::Value::Array(items)) => Enumerator::Seq(items.len()),
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.node() {
            Some(serde_json::Value::Object(map)) => Some(map.len()),
            Some(serde_json::Value::Array(items)) => Some(items.len()),
            _ => Some(0),
        }
    }
}

/// The template view of an event: its data plus `name`, `delivery` and `action`. Small
/// fields are converted once; the raw `payload` (tens of kilobytes) stays a lazy view.
pub fn event_value(event: &crate::event::EventRecord) -> Value {
    let mut fields: Vec<(Value, Value)> = Vec::with_capacity(12);
    let mut payload = None;
    if let serde_json::Value::Object(map) = &*event.data {
        for (key, value) in map {
            match key.as_str() {
                "payload" => payload = Some(key.clone()),
                "name" | "delivery" | "action" => {}
                _ => fields.push((Value::from(key.as_str()), Value::from_serialize(value))),
            }
        }
    }
    let action = match event.data.get("action") {
        Some(serde_json::Value::String(a)) => Value::from(a.as_str()),
        _ => event
            .name
            .split_once('.')
            .map_or(Value::from(()), |(_, a)| Value::from(a)),
    };
    fields.push((Value::from("name"), Value::from(event.name.as_str())));
    fields.push((
        Value::from("delivery"),
        event
            .delivery_id
            .as_deref()
            .map_or(Value::from(()), Value::from),
    ));
    fields.push((Value::from("action"), action));
    Value::from_object(EventView {
        fields: fields.into_iter().collect(),
        payload: payload.map(|key| JsonNode {
            root: event.data.clone(),
            pointer: format!("/{key}"),
        }),
    })
}

/// A small JSON value (a source's fields) as a native template value, converted once.
pub fn small_json(value: &serde_json::Value) -> Value {
    Value::from_serialize(value)
}

#[derive(Debug)]
struct EventView {
    fields: std::collections::BTreeMap<Value, Value>,
    payload: Option<JsonNode>,
}

impl Object for EventView {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if key.as_str() == Some("payload") {
            return self.payload.as_ref()?.itself();
        }
        self.fields.get(key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys: Vec<Value> = self.fields.keys().cloned().collect();
        if self.payload.is_some() {
            keys.push(Value::from("payload"));
        }
        Enumerator::Values(keys)
    }
}

/// What templates and criteria see: `source`, `event`, and step results by name.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    entries: Vec<(Arc<str>, Value)>,
}

impl Scope {
    /// A scope with `source` and `event`.
    pub fn new(source: Value, event: Value) -> Self {
        Self {
            entries: vec![(Arc::from("source"), source), (Arc::from("event"), event)],
        }
    }

    /// Adds or replaces a name (a step's result).
    pub fn set(&mut self, name: &str, value: Value) {
        match self.entries.iter_mut().find(|(k, _)| &**k == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((Arc::from(name), value)),
        }
    }

    /// Looks a name up.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v)
    }

    /// The scope as a template context.
    pub fn to_value(&self) -> Value {
        Value::from_object(ScopeObject(self.entries.clone()))
    }

    /// The first of `paths` (dotted, as from `undeclared_variables(true)`) that does not
    /// resolve in this scope, for error messages.
    pub fn first_unresolved<'p>(
        &self,
        paths: impl IntoIterator<Item = &'p String>,
    ) -> Option<String> {
        let mut paths: Vec<&String> = paths.into_iter().collect();
        paths.sort();
        paths.into_iter().find_map(|path| {
            let mut segments = path.split('.');
            let first = segments.next()?;
            let Some(mut value) = self.get(first).cloned() else {
                return Some(path.clone());
            };
            let mut walked = first.to_owned();
            for segment in segments {
                walked.push('.');
                walked.push_str(segment);
                match value.get_attr(segment) {
                    Ok(next) if !next.is_undefined() => value = next,
                    _ => return Some(walked),
                }
            }
            None
        })
    }
}

#[derive(Debug)]
struct ScopeObject(Vec<(Arc<str>, Value)>);

impl Object for ScopeObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        self.0
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.iter().map(|(k, _)| Value::from(&**k)).collect())
    }
}

/// Rewrites the seed's criteria form `path is Word` / `path is not Word` (where `Word` is
/// not a known test) into `path == "Word"` / `path != "Word"`, outside string literals.
pub(crate) fn rewrite_bare_word_tests(expression: &str, is_test: impl Fn(&str) -> bool) -> String {
    let chars: Vec<char> = expression.chars().collect();
    let mut out = String::with_capacity(expression.len() + 8);
    let mut i = 0;
    let mut quote: Option<char> = None;
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == '\\' && i + 1 < chars.len() {
                out.push(chars[i + 1]);
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
            out.push(c);
            i += 1;
            continue;
        }
        let at_word_start = i == 0 || !word_char(chars[i - 1]);
        if at_word_start
            && chars[i..].starts_with(&['i', 's'])
            && chars.get(i + 2).is_some_and(|c| c.is_whitespace())
        {
            let mut j = i + 2;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let mut negated = false;
            if chars[j..].starts_with(&['n', 'o', 't'])
                && chars.get(j + 3).is_some_and(|c| c.is_whitespace())
            {
                negated = true;
                j += 3;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
            }
            let start = j;
            while j < chars.len() && (word_char(chars[j]) || matches!(chars[j], '-' | '.' | '/')) {
                j += 1;
            }
            let word: String = chars[start..j].iter().collect();
            let followed_by_call = chars[j..]
                .iter()
                .find(|c| !c.is_whitespace())
                .is_some_and(|c| *c == '(' || *c == '"' || *c == '\'');
            let is_identifier = !word.is_empty()
                && word
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_');
            if is_identifier && !is_test(&word) && !followed_by_call {
                let literal = serde_json::to_string(&word).unwrap_or_default();
                out.push_str(if negated { "!= " } else { "== " });
                out.push_str(&literal);
                i = j;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The names minijinja knows as tests, plus Hamster's.
pub(crate) fn is_known_test(name: &str) -> bool {
    const BUILTIN: &[&str] = &[
        "defined",
        "undefined",
        "none",
        "safe",
        "escaped",
        "odd",
        "even",
        "divisibleby",
        "number",
        "integer",
        "float",
        "string",
        "sequence",
        "mapping",
        "iterable",
        "boolean",
        "true",
        "false",
        "startingwith",
        "endingwith",
        "containing",
        "in",
        "eq",
        "equalto",
        "ne",
        "lt",
        "lessthan",
        "le",
        "gt",
        "greaterthan",
        "ge",
        "sameas",
        "filter",
        "test",
        "lower",
        "upper",
    ];
    BUILTIN.contains(&name) || EXTRA_TESTS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(
        env: &Environment<'static>,
        name: &str,
        source: &str,
        scope: &Scope,
    ) -> Result<String, Error> {
        let mut env = env.clone();
        env.add_template_owned(name.to_owned(), source.to_owned())?;
        env.get_template(name)?.render(scope.to_value())
    }

    fn scope() -> Scope {
        Scope::new(
            json(Arc::new(
                json!({"repository": "Hello-World", "title": "\"; touch /tmp/pwned; echo \"", "number": 12, "labels": ["bug", "ui"]}),
            )),
            json(Arc::new(
                json!({"sender": "octocat", "payload": {"a": [1, {"b": "deep"}]}}),
            )),
        )
    }

    #[test]
    fn shell_templates_quote_values_and_raw_opts_out() {
        let env = environment();
        let out = render(&env, "t.sh", "echo {{ source.title }}", &scope()).unwrap();
        assert_eq!(out, r#"echo '"; touch /tmp/pwned; echo "'"#);
        let raw = render(&env, "t.sh", "echo {{ source.number | raw }}", &scope()).unwrap();
        assert_eq!(raw, "echo 12");
        let text = render(&env, "t", "{{ source.title }}", &scope()).unwrap();
        assert_eq!(text, r#""; touch /tmp/pwned; echo ""#);
    }

    #[test]
    fn lazy_json_reaches_deep_values_and_iterates() {
        let env = environment();
        let out = render(&env, "t", "{{ event.payload.a[1].b }} {{ source.labels | join(',') }} {{ source.labels[-1] }} {{ event.payload.a | length }}", &scope()).unwrap();
        assert_eq!(out, "deep bug,ui ui 2");
    }

    #[test]
    fn strict_undefined_and_first_unresolved_names_the_variable() {
        let env = environment();
        let err = render(&env, "t", "{{ source.nope }}", &scope()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
        let paths = vec!["source.nope".to_owned(), "source.title".to_owned()];
        assert_eq!(
            scope().first_unresolved(&paths),
            Some("source.nope".to_owned())
        );
        let paths = vec!["linter.output".to_owned()];
        assert_eq!(
            scope().first_unresolved(&paths),
            Some("linter.output".to_owned())
        );
    }

    #[test]
    fn event_view_has_name_action_delivery_data_and_a_lazy_payload() {
        let record = crate::event::EventRecord {
            name: "issue_comment.created".into(),
            delivery_id: Some("d-7".into()),
            source: crate::event::SourceRecord {
                kind: "issue".into(),
                repository: crate::event::Repository::new("github.com", "o", "r"),
                fields: Arc::new(json!({})),
                checkout: None,
                deferred: vec![],
            },
            data: Arc::new(
                json!({"sender": "octocat", "comment": {"body": "hi", "user": "u"}, "payload": {"issue": {"labels": [{"name": "bug"}]}}}),
            ),
        };
        let env = environment();
        let scope = Scope::new(small_json(&record.source.fields), event_value(&record));
        let out = render(&env, "t", "{{ event.name }}|{{ event.action }}|{{ event.delivery }}|{{ event.sender }}|{{ event.comment.body }}|{{ event.payload.issue.labels[0].name }}|{{ event | list | sort | join(',') }}", &scope).unwrap();
        assert_eq!(
            out,
            "issue_comment.created|created|d-7|octocat|hi|bug|action,comment,delivery,name,payload,sender"
        );
    }

    #[test]
    fn extra_tests() {
        let env = environment();
        let out = render(&env, "t", "{{ source.repository is matches('^Hello-') }} {{ source.repository is startswith 'Hell' }} {{ source.labels is contains 'ui' }} {{ source.repository is contains 'xyz' }}", &scope()).unwrap();
        assert_eq!(out, "True True True False");
    }

    #[test]
    fn rewrites_bare_words_but_not_tests_or_strings() {
        let rw = |s| rewrite_bare_word_tests(s, is_known_test);
        assert_eq!(
            rw("source.repository is Hello-World"),
            r#"source.repository == "Hello-World""#
        );
        assert_eq!(
            rw("a is not Hello and b is defined"),
            r#"a != "Hello" and b is defined"#
        );
        assert_eq!(rw("a is startswith('x')"), "a is startswith('x')");
        assert_eq!(rw("a is matches \"x\""), "a is matches \"x\"");
        assert_eq!(rw("x == 'this is Hello'"), "x == 'this is Hello'");
        assert_eq!(
            rw("source.full_name is Codertocat/Hello-World"),
            r#"source.full_name == "Codertocat/Hello-World""#
        );
        assert_eq!(rw("this_is x"), "this_is x");
    }
}
