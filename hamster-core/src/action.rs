//! Actions: what a pipeline step does.

use crate::event::EventRecord;
use crate::redact::Redactor;
use crate::services::Services;
use crate::store::RunId;
use crate::workspace::{Workspace, WorkspaceError};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Whether an action did what it was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The step succeeded; `on_success` callbacks run.
    Success,
    /// The step failed; `on_failure` callbacks run and the pipeline stops unless the step
    /// has `continue_on_failure`.
    Failure,
}

/// What an action returns: an outcome and data that later steps see by the step's name.
///
/// `data` keys become template fields: a shell step named `linter` that returns
/// `{"output": "…", "exit_code": 1}` is seen as `linter.output` and `linter.exit_code`.
/// The engine adds `status` (`success` / `failure` / `timed_out`…) and `duration_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionOutput {
    /// Success or failure.
    pub outcome: Outcome,
    /// Data for later steps and callbacks.
    pub data: Map<String, Value>,
}

impl ActionOutput {
    /// A successful output with no data.
    pub fn success() -> Self {
        Self {
            outcome: Outcome::Success,
            data: Map::new(),
        }
    }

    /// A failed output with no data.
    pub fn failure() -> Self {
        Self {
            outcome: Outcome::Failure,
            data: Map::new(),
        }
    }

    /// Adds one data field.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }
}

/// Why an action could not do its work (as opposed to doing it and reporting a failure).
///
/// Both fail the step; an error's message becomes the step's `error` and `output`.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The rendered arguments are not what the action takes.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// The workspace could not be prepared.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// A service the action needs was not configured on this worker.
    #[error("{0} is not configured on this worker")]
    MissingService(&'static str),
    /// Anything else, with a message that says what to fix.
    #[error("{0}")]
    Failed(String),
}

impl ActionError {
    /// An error with a message.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }
}

/// How a string argument's template interpolates values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RenderMode {
    /// Values are inserted as they are.
    #[default]
    Text,
    /// Values are shell-quoted so that they are always one word of a `bash -c` script;
    /// `{{ value | raw }}` opts out.
    Shell,
}

/// One segment of the path to a value inside a step's `args`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArgPathSegment {
    /// An index into a list.
    Index(usize),
    /// A key of a map.
    Key(String),
}

impl std::fmt::Display for ArgPathSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Index(i) => write!(f, "[{i}]"),
            Self::Key(k) => write!(f, ".{k}"),
        }
    }
}

/// Arguments that an action refused at validation time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ArgsError {
    /// Where in `args` the problem is (empty for `args` as a whole).
    pub path: Vec<ArgPathSegment>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ArgsError {
    /// An error about `args` as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            path: Vec::new(),
            message: message.into(),
        }
    }

    /// Deserializes `args` as `T`, reporting where it does not fit.
    pub fn deserialize<T: DeserializeOwned>(args: &Value) -> Result<T, ArgsError> {
        serde_path_to_error::deserialize(args).map_err(|error| {
            let path = error
                .path()
                .iter()
                .filter_map(|segment| match segment {
                    serde_path_to_error::Segment::Seq { index } => {
                        Some(ArgPathSegment::Index(*index))
                    }
                    serde_path_to_error::Segment::Map { key } => {
                        Some(ArgPathSegment::Key(key.clone()))
                    }
                    _ => None,
                })
                .collect();
            ArgsError {
                path,
                message: error.into_inner().to_string(),
            }
        })
    }
}

/// Where an action writes its progressive output (a shell command's lines, say), so that a
/// running step's log can be followed. The engine redacts secrets before storing.
#[async_trait]
pub trait LogSink: Send + Sync + Debug {
    /// Appends text to the step's log.
    async fn append(&self, text: &str);
}

/// A log sink that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardLog;

#[async_trait]
impl LogSink for DiscardLog {
    async fn append(&self, _text: &str) {}
}

/// Everything an action may use while it runs.
#[derive(Debug)]
pub struct ActionContext<'a> {
    /// The run this step belongs to.
    pub run_id: RunId,
    /// The handler's name.
    pub handler: &'a str,
    /// The step's name.
    pub step: &'a str,
    /// The event that started the run.
    pub event: &'a EventRecord,
    /// The handler's environment variables, rendered.
    pub env: &'a BTreeMap<String, String>,
    /// The step's timeout, if any; the engine enforces it by dropping the action's future,
    /// so actions that start processes must kill them on drop.
    pub timeout: Option<std::time::Duration>,
    /// Cancelled when the run is cancelled or the worker shuts down.
    pub cancel: CancellationToken,
    /// Known secrets, to keep out of anything the action returns.
    pub redactor: &'a Redactor,
    pub(crate) workspace: &'a dyn Workspace,
    pub(crate) log: &'a dyn LogSink,
    pub(crate) services: &'a Services,
}

impl<'a> ActionContext<'a> {
    /// The run's workspace. Its source is materialized only when
    /// [`Workspace::source_dir`] is called.
    pub fn workspace(&self) -> &'a dyn Workspace {
        self.workspace
    }

    /// Appends text to this step's log.
    pub async fn log(&self, text: &str) {
        self.log.append(text).await;
    }

    /// The step's log sink, for actions that stream output from another task.
    pub fn log_sink(&self) -> &'a dyn LogSink {
        self.log
    }

    /// A service configured on the worker, e.g. the GitHub client.
    pub fn service<T: Send + Sync + ?Sized + 'static>(&self) -> Option<Arc<T>> {
        self.services.get::<T>()
    }

    /// Like [`service`](Self::service), failing with [`ActionError::MissingService`].
    pub fn require<T: Send + Sync + ?Sized + 'static>(&self) -> Result<Arc<T>, ActionError> {
        self.services
            .get::<T>()
            .ok_or(ActionError::MissingService(std::any::type_name::<T>()))
    }
}

/// What a pipeline step does.
///
/// Contract:
/// - [`name`](Action::name) is the word handlers use in `action:`; unique in a registry.
/// - [`validate_args`](Action::validate_args) runs when a handler is loaded, on the args
///   as written (templates not yet rendered). It rejects what can never work, naming the
///   path in `args`. It must not do I/O.
/// - [`run`](Action::run) receives the rendered args and returns an [`ActionOutput`]
///   (`Failure` for "did it, and it failed", e.g. a non-zero exit) or an [`ActionError`]
///   ("could not do it"). It must be cancel-safe: the engine enforces timeouts and
///   cancellation by dropping the future, and anything it started must stop then.
/// - Nothing an action returns may contain a secret; the engine also redacts known secrets.
///
/// Most actions are easier to write as a [`TypedAction`].
#[async_trait]
pub trait Action: Send + Sync + Debug + 'static {
    /// The name handlers use in `action:`.
    fn name(&self) -> &str;
    /// Checks the args as written in the handler.
    fn validate_args(&self, args: &Value) -> Result<(), ArgsError>;
    /// How the string at `path` in args interpolates values.
    fn render_mode(&self, _path: &[ArgPathSegment]) -> RenderMode {
        RenderMode::Text
    }
    /// Does the work.
    async fn run(&self, args: Value, ctx: &ActionContext<'_>) -> Result<ActionOutput, ActionError>;
}

/// An action whose args are a Rust type: deserialized from the rendered args, and checked
/// against the args as written when a handler is loaded.
///
/// A list in YAML fills the struct's fields in order (`args: ['hello']` for
/// `struct Args { body: String }`), a map fills them by name.
///
/// ```
/// use hamster_core::action::{ActionContext, ActionError, ActionOutput, TypedAction};
///
/// #[derive(Debug)]
/// struct Greet;
///
/// #[derive(serde::Deserialize)]
/// struct GreetArgs { who: String }
///
/// #[async_trait::async_trait]
/// impl TypedAction for Greet {
///     const NAME: &'static str = "greet";
///     type Args = GreetArgs;
///     async fn run(&self, args: GreetArgs, _ctx: &ActionContext<'_>) -> Result<ActionOutput, ActionError> {
///         Ok(ActionOutput::success().with("output", format!("hello {}", args.who)))
///     }
/// }
/// hamster_core::register_action!(Greet);
/// ```
#[async_trait]
pub trait TypedAction: Send + Sync + Debug + 'static {
    /// The name handlers use in `action:`.
    const NAME: &'static str;
    /// The args, deserialized from the handler's `args` after rendering.
    type Args: DeserializeOwned + Send;
    /// How the string at `path` in args interpolates values.
    fn render_mode(&self, _path: &[ArgPathSegment]) -> RenderMode {
        RenderMode::Text
    }
    /// Extra checks on the args as written, after they deserialized.
    fn check(&self, _args: &Self::Args) -> Result<(), ArgsError> {
        Ok(())
    }
    /// Does the work.
    async fn run(
        &self,
        args: Self::Args,
        ctx: &ActionContext<'_>,
    ) -> Result<ActionOutput, ActionError>;
}

#[async_trait]
impl<T: TypedAction> Action for T {
    fn name(&self) -> &str {
        T::NAME
    }

    fn validate_args(&self, args: &Value) -> Result<(), ArgsError> {
        let typed: T::Args = ArgsError::deserialize(args)?;
        self.check(&typed)
    }

    fn render_mode(&self, path: &[ArgPathSegment]) -> RenderMode {
        TypedAction::render_mode(self, path)
    }

    async fn run(&self, args: Value, ctx: &ActionContext<'_>) -> Result<ActionOutput, ActionError> {
        let typed: T::Args = ArgsError::deserialize(&args).map_err(|e| {
            let path: String = e.path.iter().map(ToString::to_string).collect();
            ActionError::InvalidArgs(format!("args{path}: {}", e.message))
        })?;
        TypedAction::run(self, typed, ctx).await
    }
}

/// A link-time registration of an action, made by [`register_action!`](crate::register_action).
#[derive(Debug)]
pub struct ActionRegistration {
    make: fn() -> Arc<dyn Action>,
}

impl ActionRegistration {
    /// A registration that builds the action with `make`.
    pub const fn new(make: fn() -> Arc<dyn Action>) -> Self {
        Self { make }
    }
}

inventory::collect!(ActionRegistration);

/// Registers an action at link time, so that every registry built with
/// [`ActionRegistry::with_linked`] has it.
///
/// The argument is an expression that builds the action, evaluated once per registry.
#[macro_export]
macro_rules! register_action {
    ($action:expr) => {
        $crate::__private::inventory::submit! {
            $crate::action::ActionRegistration::new(|| ::std::sync::Arc::new($action))
        }
    };
}

/// Two actions were registered under one name.
#[derive(Debug, thiserror::Error)]
#[error("two actions are registered as `{name}`; rename one of them (action names must be unique)")]
pub struct DuplicateAction {
    /// The name registered twice.
    pub name: String,
}

/// The actions handlers may use, by name.
#[derive(Debug, Clone, Default)]
pub struct ActionRegistry {
    actions: BTreeMap<String, Arc<dyn Action>>,
}

impl ActionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with every action registered with [`register_action!`](crate::register_action)
    /// in the crates linked into this binary.
    pub fn with_linked() -> Result<Self, DuplicateAction> {
        let mut registry = Self::new();
        for registration in inventory::iter::<ActionRegistration> {
            registry.register_arc((registration.make)())?;
        }
        Ok(registry)
    }

    /// Adds an action.
    pub fn register(&mut self, action: impl Action) -> Result<&mut Self, DuplicateAction> {
        self.register_arc(Arc::new(action))
    }

    /// Adds a shared action.
    pub fn register_arc(&mut self, action: Arc<dyn Action>) -> Result<&mut Self, DuplicateAction> {
        let name = action.name().to_owned();
        if self.actions.contains_key(&name) {
            return Err(DuplicateAction { name });
        }
        self.actions.insert(name, action);
        Ok(self)
    }

    /// Adds or replaces an action (tests use it to put a fake in place of a real action).
    pub fn replace(&mut self, action: impl Action) -> &mut Self {
        self.actions
            .insert(action.name().to_owned(), Arc::new(action));
        self
    }

    /// Adds or replaces a shared action.
    pub fn replace_arc(&mut self, action: Arc<dyn Action>) -> &mut Self {
        self.actions.insert(action.name().to_owned(), action);
        self
    }

    /// The action registered as `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Action>> {
        self.actions.get(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.actions.keys().map(String::as_str)
    }
}
