//! The in-process test kit: load handlers, feed events, run every matching pipeline to
//! completion on in-memory backends, and inspect what happened.
//!
//! ```no_run
//! # async fn demo(event: hamster_core::event::EventRecord) -> Result<(), Box<dyn std::error::Error>> {
//! use hamster_core::testing::{RecordingAction, TestKit};
//!
//! let comments = RecordingAction::new("pull_request_comment");
//! let kit = TestKit::builder()
//!     .action(comments.clone())
//!     .handlers_file("handlers/lint.yaml")
//!     .build()
//!     .await?;
//! let runs = kit.run_event(&event).await?;
//! assert_eq!(runs[0].status(), hamster_core::store::RunStatus::Succeeded);
//! assert_eq!(comments.calls().len(), 1);
//! # Ok(()) }
//! ```

use crate::action::{Action, ActionContext, ActionError, ActionOutput, ActionRegistry, ArgsError};
use crate::engine::{Dispatch, Engine, EngineConfig, EngineError};
use crate::event::{Event, EventRecord, SourceEnricher};
use crate::handler::HandlerErrors;
use crate::memory::{MemoryQueue, MemoryStore};
use crate::redact::Redactor;
use crate::services::Services;
use crate::store::{DeliveryRecord, RunRecord, RunStatus, StepRecord, Store};
use crate::workspace::WorkspaceProvider;
use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// Why the kit could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum TestKitError {
    /// A handler file is invalid.
    #[error("{0}")]
    Handlers(#[from] HandlerErrors),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Two actions have one name.
    #[error(transparent)]
    Registry(#[from] crate::action::DuplicateAction),
    /// A handler file could not be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// Builds a [`TestKit`].
#[derive(Debug, Default)]
pub struct TestKitBuilder {
    actions: Vec<Arc<dyn Action>>,
    handler_files: Vec<PathBuf>,
    handler_texts: Vec<String>,
    services: Services,
    workspaces: Option<Arc<dyn WorkspaceProvider>>,
    enricher: Option<Arc<dyn SourceEnricher>>,
    redactor: Redactor,
    config: Option<EngineConfig>,
    no_linked_actions: bool,
    base: Option<ActionRegistry>,
}

impl TestKitBuilder {
    /// Adds an action, replacing a linked one of the same name (put fakes in place of
    /// actions that talk to the outside).
    pub fn action(mut self, action: impl Action) -> Self {
        self.actions.push(Arc::new(action));
        self
    }

    /// Starts from this registry (e.g. one with the built-in actions) instead of every action
    /// linked into the test binary; [`action`](Self::action) still adds to it.
    pub fn registry(mut self, registry: ActionRegistry) -> Self {
        self.base = Some(registry);
        self
    }

    /// Starts from an empty registry instead of every action linked into the test binary.
    pub fn without_linked_actions(mut self) -> Self {
        self.no_linked_actions = true;
        self
    }

    /// Loads handlers from a YAML file.
    pub fn handlers_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.handler_files.push(path.into());
        self
    }

    /// Loads handlers from YAML text.
    pub fn handlers(mut self, yaml: impl Into<String>) -> Self {
        self.handler_texts.push(yaml.into());
        self
    }

    /// Adds a service that actions look up (e.g. a recording GitHub client).
    pub fn service<T: Send + Sync + ?Sized + 'static>(mut self, service: Arc<T>) -> Self {
        self.services.insert::<T>(service);
        self
    }

    /// Where runs get their workspaces.
    pub fn workspaces(mut self, workspaces: Arc<dyn WorkspaceProvider>) -> Self {
        self.workspaces = Some(workspaces);
        self
    }

    /// Fills deferred source fields.
    pub fn enricher(mut self, enricher: Arc<dyn SourceEnricher>) -> Self {
        self.enricher = Some(enricher);
        self
    }

    /// Secrets to redact.
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Engine settings.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Validates and stores the handlers; fails with every validation error found.
    pub async fn build(self) -> Result<TestKit, TestKitError> {
        let mut registry = if self.no_linked_actions {
            ActionRegistry::new()
        } else {
            ActionRegistry::with_linked()?
        };
        for action in self.actions {
            registry.replace_arc(action);
        }
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::new());
        let mut builder = Engine::builder(store.clone(), queue.clone())
            .registry(registry)
            .services(self.services)
            .redactor(self.redactor)
            .config(self.config.unwrap_or_default());
        if let Some(workspaces) = self.workspaces {
            builder = builder.workspaces(workspaces);
        }
        if let Some(enricher) = self.enricher {
            builder = builder.enricher(enricher);
        }
        let engine = builder.build();
        for path in self.handler_files {
            let text = std::fs::read_to_string(&path).map_err(|error| TestKitError::Io {
                path: path.clone(),
                error,
            })?;
            engine
                .put_handlers(&text, &path.display().to_string())
                .await
                .map_err(flatten)?;
        }
        for text in self.handler_texts {
            engine
                .put_handlers(&text, "<test>")
                .await
                .map_err(flatten)?;
        }
        Ok(TestKit { engine, store })
    }
}

fn flatten(error: EngineError) -> TestKitError {
    match error {
        EngineError::Invalid(errors) => TestKitError::Handlers(errors),
        other => TestKitError::Engine(other),
    }
}

/// Handlers on in-memory backends, run in-process. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct TestKit {
    engine: Engine,
    store: Arc<MemoryStore>,
}

impl TestKit {
    /// Starts building a kit.
    pub fn builder() -> TestKitBuilder {
        TestKitBuilder::default()
    }

    /// The engine, for anything the kit does not wrap.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The in-memory store.
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// Matches an event, runs every matching pipeline to completion, and reports the runs.
    pub async fn run_event(&self, event: &dyn Event) -> Result<Vec<RunReport>, TestKitError> {
        self.run_events(&[event.to_record()], None)
            .await
            .map(|(reports, _)| reports)
    }

    /// Like [`run_event`](Self::run_event) for several events, optionally as one delivery;
    /// also returns what dispatch said (unmatched handlers and why).
    pub async fn run_events(
        &self,
        events: &[EventRecord],
        delivery: Option<DeliveryRecord>,
    ) -> Result<(Vec<RunReport>, Dispatch), TestKitError> {
        let dispatch = self.engine.dispatch(events, delivery).await?;
        self.engine.run_until_idle().await?;
        let mut reports = Vec::with_capacity(dispatch.runs.len());
        for id in &dispatch.runs {
            let run = self
                .store
                .get_run(*id)
                .await
                .map_err(EngineError::from)?
                .ok_or(EngineError::RunNotFound(*id))?;
            let steps = self
                .store
                .list_steps(*id)
                .await
                .map_err(EngineError::from)?;
            reports.push(RunReport { run, steps });
        }
        Ok((reports, dispatch))
    }
}

/// A finished run and its steps.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run.
    pub run: RunRecord,
    /// Its steps in the order they ran (callbacks included).
    pub steps: Vec<StepRecord>,
}

impl RunReport {
    /// The run's status.
    pub fn status(&self) -> RunStatus {
        self.run.status
    }

    /// The step with this name (the first, when callbacks reuse a name).
    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The step at this key (`0`, `0.on_failure.0`).
    pub fn step_at(&self, key: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.key == key)
    }

    /// A step's `output`, when it has one.
    pub fn output(&self, name: &str) -> Option<&str> {
        self.step(name)?.data.get("output")?.as_str()
    }
}

/// A fake action that records the rendered args of each call and answers as told.
///
/// Clones share the recording, so keep one clone to inspect after giving one to the kit.
#[derive(Debug, Clone)]
pub struct RecordingAction {
    name: String,
    calls: Arc<Mutex<Vec<Value>>>,
    answers: Arc<Mutex<Vec<Result<ActionOutput, String>>>>,
    default: Arc<Mutex<Result<ActionOutput, String>>>,
}

impl RecordingAction {
    /// A fake named `name` that succeeds with no data.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            calls: Arc::default(),
            answers: Arc::default(),
            default: Arc::new(Mutex::new(Ok(ActionOutput::success()))),
        }
    }

    /// Every call answers with `output` (after any queued answers).
    pub fn always(self, output: ActionOutput) -> Self {
        *self.default.lock() = Ok(output);
        self
    }

    /// The next call answers with `output`.
    pub fn then(self, output: ActionOutput) -> Self {
        self.answers.lock().push(Ok(output));
        self
    }

    /// The next call fails with an error.
    pub fn then_error(self, message: impl Into<String>) -> Self {
        self.answers.lock().push(Err(message.into()));
        self
    }

    /// The rendered args of each call so far.
    pub fn calls(&self) -> Vec<Value> {
        self.calls.lock().clone()
    }
}

#[async_trait]
impl Action for RecordingAction {
    fn name(&self) -> &str {
        &self.name
    }

    fn validate_args(&self, _args: &Value) -> Result<(), ArgsError> {
        Ok(())
    }

    async fn run(
        &self,
        args: Value,
        _ctx: &ActionContext<'_>,
    ) -> Result<ActionOutput, ActionError> {
        self.calls.lock().push(args);
        let answer = {
            let mut answers = self.answers.lock();
            if answers.is_empty() {
                self.default.lock().clone()
            } else {
                answers.remove(0)
            }
        };
        answer.map_err(ActionError::Failed)
    }
}
