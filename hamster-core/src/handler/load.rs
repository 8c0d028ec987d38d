//! Loading handler files: YAML (or JSON) text into validated, compiled handlers.

use super::compile::{self, CompiledHandler, DocumentLocator, Unlocated};
use super::diagnostic::{Diagnostic, HandlerErrors};
use super::spec::HandlerSpec;
use super::yaml::{self, Document};
use crate::action::ActionRegistry;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// A handler read from text, validated and compiled.
#[derive(Debug, Clone)]
pub struct LoadedHandler {
    /// The handler as written.
    pub spec: HandlerSpec,
    /// The handler's own text (the whole file when it holds one handler).
    pub source_text: String,
    /// Ready to match and run.
    pub compiled: Arc<CompiledHandler>,
}

/// Loads every handler in `text` (one handler, a list of handlers, or several YAML
/// documents). All or nothing: when any handler is invalid, every problem found is returned
/// and no handler is.
///
/// `origin` names the text in diagnostics (a file path, or `<api>`).
pub fn load_str(
    text: &str,
    origin: &str,
    registry: &ActionRegistry,
) -> Result<Vec<LoadedHandler>, HandlerErrors> {
    let documents = yaml::parse(text).map_err(|error| {
        HandlerErrors(vec![Diagnostic {
            origin: origin.to_owned(),
            position: Some(error.position),
            pointer: String::new(),
            handler: None,
            message: format!("invalid YAML: {}", error.message),
        }])
    })?;
    let mut loaded = Vec::new();
    let mut diagnostics = Vec::new();
    let mut units: Vec<(&Document, String)> = Vec::new();
    for document in &documents {
        match document.value() {
            Value::Array(items) => {
                units.extend((0..items.len()).map(|i| (document, format!("/{i}"))))
            }
            Value::Null => {}
            _ => units.push((document, String::new())),
        }
    }
    if units.is_empty() {
        return Err(HandlerErrors(vec![Diagnostic {
            origin: origin.to_owned(),
            position: None,
            pointer: String::new(),
            handler: None,
            message: "no handler found; write a handler (a map with `name`, `events` and `actions`) or a list of them".to_owned(),
        }]));
    }
    let single = units.len() == 1;
    for (document, base) in &units {
        let value = document
            .value()
            .pointer(base)
            .cloned()
            .unwrap_or(Value::Null);
        let locator = DocumentLocator {
            origin,
            document,
            base: base.clone(),
        };
        match deserialize_spec(&value, &locator) {
            Err(diagnostic) => diagnostics.push(*diagnostic),
            Ok(spec) => match compile::compile(spec.clone(), registry, &locator) {
                Err(errors) => diagnostics.extend(errors.0),
                Ok(compiled) => {
                    let source_text = if single {
                        text.to_owned()
                    } else {
                        serde_json::to_string_pretty(&value).unwrap_or_default()
                    };
                    loaded.push(LoadedHandler {
                        spec,
                        source_text,
                        compiled: Arc::new(compiled),
                    });
                }
            },
        }
    }
    for (i, handler) in loaded.iter().enumerate() {
        if loaded[..i].iter().any(|h| h.spec.name == handler.spec.name) {
            diagnostics.push(Diagnostic {
                origin: origin.to_owned(),
                position: None,
                pointer: String::new(),
                handler: Some(handler.spec.name.clone()),
                message: format!(
                    "two handlers in this file are named `{}`; handler names must be unique",
                    handler.spec.name
                ),
            });
        }
    }
    if diagnostics.is_empty() {
        Ok(loaded)
    } else {
        Err(HandlerErrors(diagnostics))
    }
}

/// Loads a handler file; see [`load_str`].
pub fn load_file(
    path: &Path,
    registry: &ActionRegistry,
) -> Result<Vec<LoadedHandler>, HandlerErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        HandlerErrors(vec![Diagnostic {
            origin: origin.clone(),
            position: None,
            pointer: String::new(),
            handler: None,
            message: format!("cannot read the handler file: {e}"),
        }])
    })?;
    load_str(&text, &origin, registry)
}

/// Compiles a handler that was validated before (read back from a store).
pub fn compile_spec(
    spec: &HandlerSpec,
    registry: &ActionRegistry,
) -> Result<CompiledHandler, HandlerErrors> {
    let origin = format!("handler `{}`", spec.name);
    compile::compile(spec.clone(), registry, &Unlocated(&origin))
}

fn deserialize_spec(
    value: &Value,
    locator: &DocumentLocator<'_>,
) -> Result<HandlerSpec, Box<Diagnostic>> {
    serde_path_to_error::deserialize::<_, HandlerSpec>(value).map_err(|error| {
        let mut pointer: String = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Seq { index } => Some(format!("/{index}")),
                serde_path_to_error::Segment::Map { key } => {
                    Some(format!("/{}", key.replace('~', "~0").replace('/', "~1")))
                }
                _ => None,
            })
            .collect();
        let message = error.inner().to_string();
        use super::compile::Locate;
        let position = if let Some(field) = unknown_field(&message) {
            if !pointer.ends_with(&format!("/{field}")) {
                pointer = format!("{pointer}/{field}");
            }
            locator.key(&pointer)
        } else {
            locator.value(&pointer)
        };
        Box::new(Diagnostic {
            origin: locator.origin.to_owned(),
            position,
            pointer,
            handler: value.get("name").and_then(Value::as_str).map(str::to_owned),
            message: explain_serde_error(&message),
        })
    })
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn explain_serde_error(message: &str) -> String {
    if message.starts_with("unknown field") {
        format!("{message}; remove it or fix its spelling")
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let example = match field {
            "name" => "name: My handler",
            "events" => "events: [pull_request.opened]",
            "actions" => "actions: [{action: shell_command, args: ['make test']}]",
            "action" => "action: shell_command",
            _ => "",
        };
        if example.is_empty() {
            format!("{message}; add it")
        } else {
            format!("{message}; add it, e.g. `{example}`")
        }
    } else {
        message.to_owned()
    }
}
