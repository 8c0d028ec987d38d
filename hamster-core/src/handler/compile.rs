//! Validating a handler and compiling it: templates compiled once, actions resolved,
//! criteria ready to evaluate.

use super::diagnostic::{Diagnostic, HandlerErrors, did_you_mean};
use super::spec::{HandlerSpec, StepSpec};
use super::yaml::{Document, Position};
use crate::action::{Action, ActionRegistry, ArgPathSegment, RenderMode};
use crate::template::{self, SHELL_SUFFIX, Scope};
use minijinja::{Environment, ErrorKind};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Names a step may not take: templates use them for something else.
const RESERVED_NAMES: [&str; 4] = ["source", "event", "step", "env"];

/// Maps pointers inside one handler to positions in its origin.
pub(crate) trait Locate {
    fn origin(&self) -> &str;
    fn value(&self, pointer: &str) -> Option<Position>;
    fn key(&self, pointer: &str) -> Option<Position>;
    fn in_string(&self, pointer: &str, line: usize, column: usize) -> Option<Position>;
}

/// Positions from a parsed YAML document; `base` is the handler's pointer in the file.
pub(crate) struct DocumentLocator<'a> {
    pub origin: &'a str,
    pub document: &'a Document,
    pub base: String,
}

impl Locate for DocumentLocator<'_> {
    fn origin(&self) -> &str {
        self.origin
    }
    fn value(&self, pointer: &str) -> Option<Position> {
        Some(self.document.nearest(&format!("{}{pointer}", self.base)))
    }
    fn key(&self, pointer: &str) -> Option<Position> {
        let full = format!("{}{pointer}", self.base);
        self.document
            .key_position(&full)
            .or_else(|| Some(self.document.nearest(&full)))
    }
    fn in_string(&self, pointer: &str, line: usize, column: usize) -> Option<Position> {
        Some(
            self.document
                .position_in_string(&format!("{}{pointer}", self.base), line, column),
        )
    }
}

/// No positions (a handler read back from a store): diagnostics carry pointers only.
pub(crate) struct Unlocated<'a>(pub &'a str);

impl Locate for Unlocated<'_> {
    fn origin(&self) -> &str {
        self.0
    }
    fn value(&self, _: &str) -> Option<Position> {
        None
    }
    fn key(&self, _: &str) -> Option<Position> {
        None
    }
    fn in_string(&self, _: &str, _: usize, _: usize) -> Option<Position> {
        None
    }
}

/// An event-name pattern: exact, or with `*` wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventPattern {
    /// Matches one name.
    Exact(String),
    /// `*` matches any run of characters (including dots).
    Glob(String),
}

impl EventPattern {
    fn parse(text: &str) -> Self {
        if text.contains('*') {
            Self::Glob(text.to_owned())
        } else {
            Self::Exact(text.to_owned())
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == name,
            Self::Glob(glob) => glob_matches(glob, name),
        }
    }

    /// For globs: the literal text before the first `*` (used to index them).
    pub fn literal_prefix(&self) -> &str {
        match self {
            Self::Exact(exact) => exact,
            Self::Glob(glob) => glob.split('*').next().unwrap_or(""),
        }
    }
}

fn glob_matches(glob: &str, name: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if last {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// A compiled template reference inside an args tree.
#[derive(Debug, Clone)]
pub(crate) struct TemplateRef {
    /// Template name in the handler's environment.
    name: String,
    /// When the whole string is one `{{ expression }}` in text mode: its value keeps its
    /// type (a number stays a number), rendered through `tojson`.
    typed: bool,
    /// Variables the template reads (dotted), to name the missing one on error.
    paths: Arc<Vec<String>>,
    /// Pointer of the string in the handler (for errors).
    pointer: String,
}

/// A step's args with templates compiled.
#[derive(Debug, Clone)]
pub(crate) enum ArgsTemplate {
    Literal(Value),
    Template(TemplateRef),
    List(Vec<ArgsTemplate>),
    Map(Vec<(String, ArgsTemplate)>),
}

/// Why rendering failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RenderError {
    /// The undefined variable, when that was the problem.
    pub variable: Option<String>,
    /// What went wrong.
    pub message: String,
}

impl ArgsTemplate {
    pub(crate) fn render(
        &self,
        env: &Environment<'static>,
        scope: &minijinja::Value,
        names: &Scope,
    ) -> Result<Value, RenderError> {
        Ok(match self {
            Self::Literal(v) => v.clone(),
            Self::Template(t) => t.render(env, scope, names)?,
            Self::List(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.render(env, scope, names))
                    .collect::<Result<_, _>>()?,
            ),
            Self::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.render(env, scope, names)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
        })
    }
}

impl TemplateRef {
    pub(crate) fn render(
        &self,
        env: &Environment<'static>,
        scope: &minijinja::Value,
        names: &Scope,
    ) -> Result<Value, RenderError> {
        let result = env
            .get_template(&self.name)
            .and_then(|template| template.render(scope));
        match result {
            Ok(text) if self.typed => serde_json::from_str(&text).map_err(|e| RenderError {
                variable: None,
                message: format!(
                    "template at {} produced a value that is not JSON: {e}",
                    self.pointer
                ),
            }),
            Ok(text) => Ok(Value::String(text)),
            Err(error) if error.kind() == ErrorKind::UndefinedError => {
                let variable = names.first_unresolved(self.paths.iter());
                let message = match &variable {
                    Some(v) => format!(
                        "undefined variable `{v}` in the template at {}",
                        self.pointer
                    ),
                    None => format!(
                        "undefined value in the template at {}: {}",
                        self.pointer,
                        error_detail(&error)
                    ),
                };
                Err(RenderError { variable, message })
            }
            Err(error) => Err(RenderError {
                variable: None,
                message: format!(
                    "template at {} failed: {}",
                    self.pointer,
                    error_detail(&error)
                ),
            }),
        }
    }
}

fn error_detail(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{} ({detail})", error.kind()),
        None => error.kind().to_string(),
    }
}

/// Compiled criteria: an expression evaluated for its truth.
pub(crate) struct Criteria {
    expression: minijinja::Expression<'static, 'static>,
    paths: Vec<String>,
}

impl std::fmt::Debug for Criteria {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Criteria")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// A step with its action resolved and templates compiled.
#[derive(Debug, Clone)]
pub struct CompiledStep {
    /// Position in the pipeline (`0`, `0.on_failure.1`), unique within the handler.
    pub key: String,
    /// The name templates see.
    pub name: String,
    /// The action's name.
    pub action_name: String,
    pub(crate) action: Arc<dyn Action>,
    pub(crate) args: ArgsTemplate,
    /// The step's timeout.
    pub timeout: Option<Duration>,
    /// Whether the pipeline goes on when it fails.
    pub continue_on_failure: bool,
    /// Callbacks on success.
    pub on_success: Vec<CompiledStep>,
    /// Callbacks on failure.
    pub on_failure: Vec<CompiledStep>,
}

/// A handler ready to match and run: validated, templates compiled once.
#[derive(Debug)]
pub struct CompiledHandler {
    /// The handler as written.
    pub spec: Arc<HandlerSpec>,
    pub(crate) env: Environment<'static>,
    pub(crate) patterns: Vec<EventPattern>,
    pub(crate) criteria: Option<Criteria>,
    pub(crate) env_vars: Vec<(String, TemplateRef)>,
    /// The pipeline.
    pub steps: Vec<CompiledStep>,
    /// Top-level `source` fields that templates or criteria read.
    pub(crate) source_fields_used: BTreeSet<String>,
}

impl CompiledHandler {
    /// The event patterns, as parsed.
    pub fn patterns(&self) -> &[EventPattern] {
        &self.patterns
    }

    /// Whether an event with this name is one the handler reacts to.
    pub fn reacts_to(&self, event_name: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(event_name))
    }

    /// Evaluates the criteria (true when there are none).
    pub fn criteria_match(&self, scope: &Scope) -> Result<bool, RenderError> {
        self.criteria_match_in(&scope.to_value(), scope)
    }

    /// Like [`criteria_match`](Self::criteria_match) with the scope already turned into a
    /// template context (matching many handlers against one event builds it once).
    pub fn criteria_match_in(
        &self,
        context: &minijinja::Value,
        scope: &Scope,
    ) -> Result<bool, RenderError> {
        let Some(criteria) = &self.criteria else {
            return Ok(true);
        };
        match criteria.expression.eval(context) {
            Ok(value) => Ok(value.is_true()),
            Err(error) if error.kind() == ErrorKind::UndefinedError => {
                let variable = scope.first_unresolved(criteria.paths.iter());
                let message = match &variable {
                    Some(v) => format!("undefined variable `{v}`"),
                    None => format!("undefined value: {}", error_detail(&error)),
                };
                Err(RenderError { variable, message })
            }
            Err(error) => Err(RenderError {
                variable: None,
                message: error_detail(&error),
            }),
        }
    }

    /// Renders the handler's `env:` values.
    pub(crate) fn render_env(
        &self,
        scope: &Scope,
    ) -> Result<std::collections::BTreeMap<String, String>, RenderError> {
        let ctx = scope.to_value();
        self.env_vars
            .iter()
            .map(|(k, t)| {
                let v = t.render(&self.env, &ctx, scope)?;
                Ok((
                    k.clone(),
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                ))
            })
            .collect()
    }

    /// Whether templates or criteria use any of these source fields.
    pub fn uses_any_source_field(&self, fields: &[String]) -> bool {
        fields.iter().any(|f| self.source_fields_used.contains(f))
    }

    /// Whether the criteria may read `event.payload`, so that matching needs the payload
    /// (intake leaves it unparsed otherwise). True also when the criteria use `event` as a
    /// whole (`event | tojson`) or by subscript (`event["payload"]`): the paths then say
    /// only `event`.
    pub fn criteria_read_payload(&self) -> bool {
        self.criteria.as_ref().is_some_and(|criteria| {
            criteria.paths.iter().any(|path| {
                path == "event" || path == "event.payload" || path.starts_with("event.payload.")
            })
        })
    }
}

fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Inner expression when the string is exactly one `{{ … }}`.
fn whole_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then(|| inner.trim())
}

fn pointer_escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn args_path_pointer(path: &[ArgPathSegment]) -> String {
    path.iter()
        .map(|s| match s {
            ArgPathSegment::Index(i) => format!("/{i}"),
            ArgPathSegment::Key(k) => format!("/{}", pointer_escape(k)),
        })
        .collect()
}

fn value_at<'v>(value: &'v Value, path: &[ArgPathSegment]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, segment| match segment {
        ArgPathSegment::Index(i) => v.get(*i),
        ArgPathSegment::Key(k) => v.get(k),
    })
}

/// Where in the pipeline a step is, and what it can see.
struct StepScope<'s> {
    /// Names visible to this step's templates (earlier steps, parent, earlier callbacks).
    visible: Vec<String>,
    /// Names of main steps that run later (to explain "runs after this step").
    later: &'s [String],
}

struct Compiler<'a> {
    registry: &'a ActionRegistry,
    locate: &'a dyn Locate,
    handler: Option<String>,
    env: Environment<'static>,
    diagnostics: Vec<Diagnostic>,
    source_fields_used: BTreeSet<String>,
    template_count: usize,
}

impl<'a> Compiler<'a> {
    fn error_at(&mut self, pointer: &str, position: Option<Position>, message: String) {
        self.diagnostics.push(Diagnostic {
            origin: self.locate.origin().to_owned(),
            position,
            pointer: pointer.to_owned(),
            handler: self.handler.clone(),
            message,
        });
    }

    fn error(&mut self, pointer: &str, message: String) {
        let position = self.locate.value(pointer);
        self.error_at(pointer, position, message);
    }

    /// Compiles one template string; checks its variables against what it may see.
    fn template(
        &mut self,
        pointer: &str,
        text: &str,
        mode: RenderMode,
        allowed: &StepScope<'_>,
    ) -> Option<TemplateRef> {
        self.template_count += 1;
        let typed_expr = match mode {
            RenderMode::Text => whole_expression(text),
            RenderMode::Shell => None,
        };
        let base_name = format!(
            "t{}{}",
            self.template_count,
            if mode == RenderMode::Shell {
                SHELL_SUFFIX
            } else {
                ""
            }
        );
        let source = match typed_expr {
            Some(expr) => format!("{{{{ ({expr}) | {} }}}}", template::TYPED_FILTER),
            None => text.to_owned(),
        };
        if let Err(error) = self.env.add_template_owned(base_name.clone(), source) {
            // Recompile the text as written to report positions relative to it.
            let (line, column) = match minijinja::Environment::new().template_from_str(text) {
                Err(e) => error_line_column(&e, text),
                Ok(_) => error_line_column(&error, text),
            };
            let position = self.locate.in_string(pointer, line, column);
            let detail = error.detail().unwrap_or("invalid template").to_owned();
            self.error_at(pointer, position, format!("template syntax error: {detail}; check the `{{{{ }}}}` / `{{% %}}` tags and the expression inside"));
            return None;
        }
        let template = self.env.get_template(&base_name).ok()?;
        let mut top: Vec<String> = template.undeclared_variables(false).into_iter().collect();
        top.sort();
        let paths: Vec<String> = template.undeclared_variables(true).into_iter().collect();
        for path in &paths {
            if let Some(rest) = path.strip_prefix("source.") {
                let field = rest.split('.').next().unwrap_or(rest);
                self.source_fields_used.insert(field.to_owned());
            }
        }
        for name in top {
            if name == "source"
                || name == "event"
                || allowed.visible.contains(&name)
                || self.env.globals().any(|(g, _)| g == name)
            {
                continue;
            }
            let message = if allowed.later.contains(&name) {
                format!(
                    "`{name}` is a step that runs after this one, so its result is not available here; move this step after `{name}` or use another step's result"
                )
            } else {
                let candidates: Vec<&str> = ["source", "event"]
                    .into_iter()
                    .chain(allowed.visible.iter().map(String::as_str))
                    .collect();
                match did_you_mean(&name, candidates.iter().copied()) {
                    Some(suggestion) => format!(
                        "unknown variable `{name}`; did you mean `{suggestion}`? Templates see `source`, `event` and earlier steps by name"
                    ),
                    None => format!(
                        "unknown variable `{name}`; templates see `source`, `event` and earlier steps by name ({})",
                        if allowed.visible.is_empty() {
                            "no earlier steps here".to_owned()
                        } else {
                            allowed.visible.join(", ")
                        }
                    ),
                }
            };
            self.error(pointer, message);
        }
        Some(TemplateRef {
            name: base_name,
            typed: typed_expr.is_some(),
            paths: Arc::new(paths),
            pointer: pointer.to_owned(),
        })
    }

    fn args(
        &mut self,
        pointer: &str,
        value: &Value,
        action: &dyn Action,
        path: &mut Vec<ArgPathSegment>,
        allowed: &StepScope<'_>,
    ) -> ArgsTemplate {
        match value {
            Value::String(text) if is_template(text) => {
                let mode = action.render_mode(path);
                match self.template(pointer, text, mode, allowed) {
                    Some(t) => ArgsTemplate::Template(t),
                    None => ArgsTemplate::Literal(value.clone()),
                }
            }
            Value::Array(items) => ArgsTemplate::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        path.push(ArgPathSegment::Index(i));
                        let compiled =
                            self.args(&format!("{pointer}/{i}"), item, action, path, allowed);
                        path.pop();
                        compiled
                    })
                    .collect(),
            ),
            Value::Object(map) => ArgsTemplate::Map(
                map.iter()
                    .map(|(k, v)| {
                        path.push(ArgPathSegment::Key(k.clone()));
                        let compiled = self.args(
                            &format!("{pointer}/{}", pointer_escape(k)),
                            v,
                            action,
                            path,
                            allowed,
                        );
                        path.pop();
                        (k.clone(), compiled)
                    })
                    .collect(),
            ),
            other => ArgsTemplate::Literal(other.clone()),
        }
    }

    fn step(
        &mut self,
        pointer: &str,
        key: String,
        spec: &StepSpec,
        allowed: &StepScope<'_>,
    ) -> Option<CompiledStep> {
        let name = spec.effective_name().to_owned();
        let Some(action) = self.registry.get(&spec.action).cloned() else {
            let hint = match did_you_mean(&spec.action, self.registry.names()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "registered actions: {}",
                    self.registry.names().collect::<Vec<_>>().join(", ")
                ),
            };
            self.error(
                &format!("{pointer}/action"),
                format!("unknown action `{}`; {hint}", spec.action),
            );
            return None;
        };
        if spec.timeout == Some(Duration::ZERO) {
            self.error(
                &format!("{pointer}/timeout"),
                "timeout must be longer than zero; remove it to use the default".to_owned(),
            );
        }
        // Args: the action checks what is written literally; values that are templates can
        // only be checked once rendered, so an error pointing into one is deferred.
        if let Err(error) = action.validate_args(&spec.args) {
            let at = value_at(&spec.args, &error.path);
            let deferred = matches!(at, Some(Value::String(s)) if is_template(s));
            if !deferred {
                let arg_pointer = format!("{pointer}/args{}", args_path_pointer(&error.path));
                let shown: String = error.path.iter().map(ToString::to_string).collect();
                self.error(
                    &arg_pointer,
                    format!(
                        "invalid args{shown} for action `{}`: {}",
                        spec.action, error.message
                    ),
                );
            }
        }
        let mut path = Vec::new();
        let args = self.args(
            &format!("{pointer}/args"),
            &spec.args,
            action.as_ref(),
            &mut path,
            allowed,
        );

        // Callbacks see the main steps this step sees, the step itself, and earlier callbacks of their list.
        let callbacks = |list: &[StepSpec], which: &str, this: &mut Self| -> Vec<CompiledStep> {
            let mut visible = allowed.visible.clone();
            visible.push(name.clone());
            let mut seen: HashSet<String> = HashSet::new();
            let mut compiled = Vec::new();
            for (i, callback) in list.iter().enumerate() {
                let cb_pointer = format!("{pointer}/{which}/{i}");
                let cb_name = callback.effective_name().to_owned();
                this.check_name(&cb_pointer, callback, &cb_name);
                if visible.contains(&cb_name) || !seen.insert(cb_name.clone()) {
                    this.error_at(&cb_pointer, this.name_position(&cb_pointer, callback), format!("duplicate step name `{cb_name}`: another step this callback can see has that name; give this step a unique `name:`"));
                }
                let scope = StepScope {
                    visible: visible.clone(),
                    later: allowed.later,
                };
                if let Some(step) =
                    this.step(&cb_pointer, format!("{key}.{which}.{i}"), callback, &scope)
                {
                    compiled.push(step);
                }
                visible.push(cb_name);
            }
            compiled
        };
        let on_success = callbacks(&spec.on_success, "on_success", self);
        let on_failure = callbacks(&spec.on_failure, "on_failure", self);
        Some(CompiledStep {
            key,
            name,
            action_name: spec.action.clone(),
            action,
            args,
            timeout: spec.timeout,
            continue_on_failure: spec.continue_on_failure,
            on_success,
            on_failure,
        })
    }

    fn name_position(&self, pointer: &str, spec: &StepSpec) -> Option<Position> {
        if spec.name.is_some() {
            self.locate.value(&format!("{pointer}/name"))
        } else {
            self.locate.value(pointer)
        }
    }

    fn check_name(&mut self, pointer: &str, spec: &StepSpec, name: &str) {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let at = if spec.name.is_some() {
            format!("{pointer}/name")
        } else {
            pointer.to_owned()
        };
        if !valid {
            self.error(&at, format!("step name `{name}` cannot be used in templates; use letters, digits and `_`, starting with a letter (e.g. `{}`)", name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")));
        } else if RESERVED_NAMES.contains(&name) {
            self.error(
                &at,
                format!(
                    "step name `{name}` is reserved (templates use it); choose another `name:`"
                ),
            );
        }
    }
}

fn error_line_column(error: &minijinja::Error, text: &str) -> (usize, usize) {
    let line = error.line().unwrap_or(1);
    let column = error
        .range()
        .map(|range| {
            let start = range.start.min(text.len());
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            text[line_start..start].chars().count() + 1
        })
        .unwrap_or(1);
    (line, column)
}

/// Validates and compiles one handler.
pub(crate) fn compile(
    spec: HandlerSpec,
    registry: &ActionRegistry,
    locate: &dyn Locate,
) -> Result<CompiledHandler, HandlerErrors> {
    let mut compiler = Compiler {
        registry,
        locate,
        handler: Some(spec.name.clone()),
        env: template::environment(),
        diagnostics: Vec::new(),
        source_fields_used: BTreeSet::new(),
        template_count: 0,
    };
    if spec.name.trim().is_empty() {
        compiler.error(
            "/name",
            "the handler's `name` is empty; give it a unique name".to_owned(),
        );
    }
    if spec.events.is_empty() {
        compiler.error(
            "/events",
            "`events` is empty; list the events to react to, e.g. `[pull_request.opened]`"
                .to_owned(),
        );
    }
    let mut patterns = Vec::new();
    for (i, event) in spec.events.iter().enumerate() {
        let valid = !event.is_empty()
            && event
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '*'));
        if valid {
            patterns.push(EventPattern::parse(event));
        } else {
            compiler.error(&format!("/events/{i}"), format!("`{event}` is not an event name; write `<event>.<action>` such as `pull_request.opened`, or use `*` as in `pull_request.*`"));
        }
    }
    let handler_scope = StepScope {
        visible: Vec::new(),
        later: &[],
    };
    let criteria = spec.criteria.as_deref().and_then(|text| {
        let rewritten = template::rewrite_bare_word_tests(text, template::is_known_test);
        match template::CRITERIA_ENV.compile_expression_owned(rewritten) {
            Err(error) => {
                let detail = error.detail().unwrap_or("invalid expression").to_owned();
                compiler.error("/criteria", format!("criteria syntax error: {detail}; write an expression such as `source.repository is Hello-World and event.sender != \"dependabot[bot]\"`"));
                None
            }
            Ok(expression) => {
                let paths: Vec<String> = expression.undeclared_variables(true).into_iter().collect();
                let mut top: Vec<String> = expression.undeclared_variables(false).into_iter().collect();
                top.sort();
                for name in top {
                    if name != "source" && name != "event" {
                        compiler.error("/criteria", format!("unknown variable `{name}` in criteria; criteria see `source` and `event` only"));
                    }
                }
                for path in &paths {
                    if let Some(rest) = path.strip_prefix("source.") {
                        compiler.source_fields_used.insert(rest.split('.').next().unwrap_or(rest).to_owned());
                    }
                }
                Some(Criteria { expression, paths })
            }
        }
    });
    let env_vars = spec
        .env
        .iter()
        .filter_map(|(k, v)| {
            let pointer = format!("/env/{}", pointer_escape(k));
            compiler
                .template(&pointer, v, RenderMode::Text, &handler_scope)
                .map(|t| (k.clone(), t))
        })
        .collect();

    if spec.actions.is_empty() {
        compiler.error(
            "/actions",
            "`actions` is empty; a handler needs at least one step".to_owned(),
        );
    }
    let names: Vec<String> = spec
        .actions
        .iter()
        .map(|s| s.effective_name().to_owned())
        .collect();
    let mut steps = Vec::new();
    for (i, step) in spec.actions.iter().enumerate() {
        let pointer = format!("/actions/{i}");
        compiler.check_name(&pointer, step, &names[i]);
        if names[..i].contains(&names[i]) {
            let position = compiler.name_position(&pointer, step);
            let hint = if step.name.is_none() {
                format!(
                    "two steps use action `{}` without a `name:`; name them",
                    step.action
                )
            } else {
                "give this step a unique `name:`".to_owned()
            };
            compiler.error_at(
                &pointer,
                position,
                format!("duplicate step name `{}`: {hint}", names[i]),
            );
        }
        let scope = StepScope {
            visible: names[..i].to_vec(),
            later: &names[i + 1..],
        };
        if let Some(compiled) = compiler.step(&pointer, i.to_string(), step, &scope) {
            steps.push(compiled);
        }
    }
    if !compiler.diagnostics.is_empty() {
        return Err(HandlerErrors(compiler.diagnostics));
    }
    Ok(CompiledHandler {
        spec: Arc::new(spec),
        env: compiler.env,
        patterns,
        criteria,
        env_vars,
        steps,
        source_fields_used: compiler.source_fields_used,
    })
}
