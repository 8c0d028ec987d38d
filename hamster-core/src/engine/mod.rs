//! The engine: matching events to handlers, creating and queueing runs, executing them.
//!
//! Intake ([`Engine::dispatch`]) never does I/O beyond the store and the queue: no API call,
//! no checkout. Execution ([`Engine::execute_run`], driven by a [`Worker`]) records every
//! step's result before the next step starts, so an interrupted run resumes at the step that
//! was running.

mod execute;
mod index;
mod stranded;
mod worker;

pub use index::{HandlerIndex, IndexedHandler};
pub use stranded::{STRANDED_AFTER, STRANDED_SWEEP_EVERY};
pub use worker::{Worker, WorkerConfig};

use crate::action::ActionRegistry;
use crate::event::{EventRecord, SourceEnricher};
use crate::handler::{HandlerErrors, LoadedHandler, load_str};
use crate::queue::{NewJob, Queue, QueueError};
use crate::redact::Redactor;
use crate::services::Services;
use crate::store::{
    DeliveryOutcome, DeliveryRecord, HandlerRecord, RunId, RunRecord, RunStatus, Store, StoreError,
};
use crate::template::{self, Scope};
use crate::workspace::{NoCheckout, TempWorkspaces, WorkspaceProvider};
use chrono::Utc;
use index::HandlerCache;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How the engine behaves.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Deliveries of a run's job before it is dead-lettered.
    pub max_attempts: u32,
    /// How often the store's handler revision is checked on intake.
    pub handler_refresh: Duration,
    /// Timeout for steps that set none.
    pub default_step_timeout: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_attempts: crate::queue::DEFAULT_MAX_ATTEMPTS,
            handler_refresh: Duration::from_secs(1),
            default_step_timeout: Some(Duration::from_secs(30 * 60)),
        }
    }
}

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Handler text was invalid; nothing was stored.
    #[error("{0}")]
    Invalid(#[from] HandlerErrors),
    /// The run does not exist.
    #[error("run {0} does not exist")]
    RunNotFound(RunId),
    /// A delivery said its body is its events' payload, and it is not JSON.
    #[error(
        "delivery {delivery} says its body is its events' payload, but the body is not JSON ({reason}); \
         set `body_is_payload` only for a JSON body"
    )]
    PayloadNotJson {
        /// The delivery's id.
        delivery: String,
        /// What the JSON parser said.
        reason: String,
    },
}

/// A handler that reacted to the event's name but did not get a run, and why.
///
/// Names are shared, and the reason is formatted only when shown: intake builds one of
/// these for every handler whose criteria are false, on every delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmatched {
    /// The handler's name.
    pub handler: Arc<str>,
    /// The event's name.
    pub event: Arc<str>,
    /// Why it did not match.
    #[serde(serialize_with = "serialize_display")]
    pub reason: UnmatchedReason,
}

/// Why a handler did not match an event it reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnmatchedReason {
    /// The handler is disabled.
    Disabled,
    /// The criteria (shown) evaluated to false.
    CriteriaFalse(Arc<str>),
    /// The criteria could not be evaluated.
    CriteriaError(String),
}

impl std::fmt::Display for UnmatchedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Disabled => f.write_str("the handler is disabled"),
            Self::CriteriaFalse(criteria) => {
                write!(f, "criteria `{criteria}` is false for this event")
            }
            Self::CriteriaError(error) => write!(f, "criteria could not be evaluated: {error}"),
        }
    }
}

fn serialize_display<S: serde::Serializer, T: std::fmt::Display>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// What [`Engine::dispatch`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dispatch {
    /// The runs created (or, for a redelivery, created the first time).
    pub runs: Vec<RunId>,
    /// Whether the delivery had been received before (nothing new was created).
    pub duplicate: bool,
    /// Handlers that reacted to the event name but did not match.
    pub unmatched: Vec<Unmatched>,
}

/// Called with every step result once it is recorded (for metrics and notifications).
pub type StepHook = Arc<dyn Fn(&RunRecord, &crate::store::StepRecord) + Send + Sync>;

#[derive(Clone, Default)]
struct StepHooks(Vec<StepHook>);

impl std::fmt::Debug for StepHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} step hooks", self.0.len())
    }
}

/// Builds an [`Engine`].
#[derive(Debug)]
pub struct EngineBuilder {
    step_hooks: StepHooks,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    registry: ActionRegistry,
    workspaces: Arc<dyn WorkspaceProvider>,
    services: Services,
    enricher: Option<Arc<dyn SourceEnricher>>,
    redactor: Redactor,
    config: EngineConfig,
}

impl EngineBuilder {
    /// The actions handlers may use (default: none).
    pub fn registry(mut self, registry: ActionRegistry) -> Self {
        self.registry = registry;
        self
    }
    /// Where runs get their workspace (default: temporary directories that cannot check out).
    pub fn workspaces(mut self, workspaces: Arc<dyn WorkspaceProvider>) -> Self {
        self.workspaces = workspaces;
        self
    }
    /// Services actions look up (the GitHub client…).
    pub fn services(mut self, services: Services) -> Self {
        self.services = services;
        self
    }
    /// Fills deferred source fields on workers.
    pub fn enricher(mut self, enricher: Arc<dyn SourceEnricher>) -> Self {
        self.enricher = Some(enricher);
        self
    }
    /// Secrets to keep out of step results and logs.
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }
    /// Calls `hook` with every finished step, after its result is recorded.
    pub fn on_step_finished(mut self, hook: StepHook) -> Self {
        self.step_hooks.0.push(hook);
        self
    }

    /// Behaviour settings.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }
    /// The engine.
    pub fn build(self) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                handlers: HandlerCache::new(self.config.handler_refresh),
                store: self.store,
                queue: self.queue,
                registry: Arc::new(self.registry),
                workspaces: self.workspaces,
                services: self.services,
                enricher: self.enricher,
                redactor: self.redactor,
                config: self.config,
                step_hooks: self.step_hooks,
            }),
        }
    }
}

/// Hamster's engine. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    registry: Arc<ActionRegistry>,
    workspaces: Arc<dyn WorkspaceProvider>,
    services: Services,
    enricher: Option<Arc<dyn SourceEnricher>>,
    redactor: Redactor,
    config: EngineConfig,
    handlers: HandlerCache,
    step_hooks: StepHooks,
}

impl Engine {
    /// Starts building an engine on a store and a queue.
    pub fn builder(store: Arc<dyn Store>, queue: Arc<dyn Queue>) -> EngineBuilder {
        EngineBuilder {
            store,
            queue,
            registry: ActionRegistry::new(),
            workspaces: Arc::new(TempWorkspaces::new(NoCheckout)),
            services: Services::new(),
            enricher: None,
            redactor: Redactor::default(),
            config: EngineConfig::default(),
            step_hooks: StepHooks::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.inner.queue
    }

    /// The action registry.
    pub fn registry(&self) -> &ActionRegistry {
        &self.inner.registry
    }

    /// Validates handler text and stores every handler in it, creating new ones and updating
    /// those whose name exists. All or nothing for validation: an invalid file stores nothing.
    pub async fn put_handlers(
        &self,
        text: &str,
        origin: &str,
    ) -> Result<Vec<HandlerRecord>, EngineError> {
        let loaded = load_str(text, origin, &self.inner.registry)?;
        let mut records = Vec::with_capacity(loaded.len());
        for handler in loaded {
            records.push(self.put_loaded(handler).await?);
        }
        Ok(records)
    }

    /// Stores one validated handler (create, or update by name).
    pub async fn put_loaded(&self, handler: LoadedHandler) -> Result<HandlerRecord, EngineError> {
        let store = &self.inner.store;
        let record = match store.get_handler_by_name(&handler.spec.name).await? {
            Some(existing)
                if existing.spec == handler.spec && existing.source_text == handler.source_text =>
            {
                existing
            }
            Some(existing) => {
                store
                    .update_handler(
                        existing.id,
                        handler.spec,
                        handler.source_text,
                        Some(existing.version),
                    )
                    .await?
            }
            None => {
                store
                    .create_handler(handler.spec, handler.source_text)
                    .await?
            }
        };
        self.inner
            .handlers
            .insert_compiled(record.id, record.version, handler.compiled);
        self.inner.handlers.invalidate();
        Ok(record)
    }

    /// Tells the engine that handlers changed in the store (after direct store edits).
    pub fn handlers_changed(&self) {
        self.inner.handlers.invalidate();
    }

    /// The current handler index (refreshing it from the store when needed).
    pub async fn handler_index(&self) -> Result<Arc<HandlerIndex>, EngineError> {
        Ok(self
            .inner
            .handlers
            .index(&*self.inner.store, &self.inner.registry)
            .await?)
    }

    /// Matches events against the stored handlers and creates one run per match.
    ///
    /// With a delivery, the delivery and its runs are recorded atomically and a redelivery of
    /// the same id creates nothing (the first runs are returned with `duplicate: true`).
    /// Runs are enqueued after they are recorded.
    pub async fn dispatch(
        &self,
        events: &[EventRecord],
        delivery: Option<DeliveryRecord>,
    ) -> Result<Dispatch, EngineError> {
        let (runs, unmatched) = self.plan(events, delivery.as_ref()).await?;
        let mut dispatch = Dispatch {
            unmatched,
            ..Dispatch::default()
        };
        let run_ids: Vec<RunId> = runs.iter().map(|r: &RunRecord| r.id).collect();
        match delivery {
            Some(mut delivery) => {
                delivery.run_ids = run_ids.clone();
                match self.inner.store.record_delivery(delivery, runs).await? {
                    DeliveryOutcome::Duplicate(existing) => {
                        dispatch.runs = existing;
                        dispatch.duplicate = true;
                        return Ok(dispatch);
                    }
                    DeliveryOutcome::Recorded => {}
                }
            }
            None if runs.is_empty() => {}
            None => self.inner.store.create_runs(runs).await?,
        }
        self.enqueue_all(&run_ids).await?;
        dispatch.runs = run_ids;
        Ok(dispatch)
    }

    /// The handlers that match an event (enabled, name and criteria), and those that reacted
    /// to its name but did not match, with why. Does not create runs.
    pub async fn match_event(
        &self,
        event: &EventRecord,
    ) -> Result<(Vec<Arc<IndexedHandler>>, Vec<Unmatched>), EngineError> {
        let index = self.handler_index().await?;
        let mut matched = Vec::new();
        let mut unmatched = Vec::new();
        match_into(&index, event, &mut matched, &mut unmatched);
        Ok((matched, unmatched))
    }

    /// One run per handler that matches one of `events`, and the handlers that did not match.
    ///
    /// An event whose payload was left out in `delivery`'s body gets it back first when the
    /// criteria of a handler reacting to it read it.
    async fn plan(
        &self,
        events: &[EventRecord],
        delivery: Option<&DeliveryRecord>,
    ) -> Result<(Vec<RunRecord>, Vec<Unmatched>), EngineError> {
        let index = self.handler_index().await?;
        let mut runs = Vec::new();
        let mut unmatched = Vec::new();
        let mut matched = Vec::new();
        for event in events {
            let whole;
            let event = match delivery {
                Some(delivery)
                    if delivery.left_out_payload_of(event)
                        && index.criteria_read_payload(&event.name) =>
                {
                    let mut restored = event.clone();
                    restored.restore_payload(&delivery.body).map_err(|error| {
                        EngineError::PayloadNotJson {
                            delivery: delivery.id.clone(),
                            reason: error.to_string(),
                        }
                    })?;
                    whole = restored;
                    &whole
                }
                _ => event,
            };
            matched.clear();
            match_into(&index, event, &mut matched, &mut unmatched);
            runs.extend(matched.iter().map(|handler| new_run(handler, event)));
        }
        Ok((runs, unmatched))
    }

    /// Enqueues the jobs of `runs` together, so that a queue that batches concurrent
    /// enqueues (Redis) sends them at once.
    async fn enqueue_all(&self, runs: &[RunId]) -> Result<(), EngineError> {
        futures::future::try_join_all(runs.iter().map(|run| self.enqueue(*run))).await?;
        Ok(())
    }

    /// Enqueues `run`'s job. The job is keyed by the run, so a run never has two jobs: a
    /// run whose job is still in the queue is left as it is.
    async fn enqueue(&self, run: RunId) -> Result<(), EngineError> {
        let job = NewJob::new(serde_json::json!({ "run_id": run }))
            .max_attempts(self.inner.config.max_attempts)
            .key(run_job_key(run));
        let mut delay = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            match self.inner.queue.enqueue(job.clone()).await {
                Ok(_) => return Ok(()),
                // The run is recorded; losing its job would strand it, so try a little longer
                // before reporting the failure.
                Err(error) if attempt < 4 => {
                    tracing::warn!(%run, %error, attempt, "enqueue failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                    attempt += 1;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Creates a new run of the same handler (as it was) for the same event, and enqueues it.
    pub async fn rerun(&self, run: RunId) -> Result<RunId, EngineError> {
        let original = self
            .inner
            .store
            .get_run(run)
            .await?
            .ok_or(EngineError::RunNotFound(run))?;
        let mut copy = original;
        copy.id = RunId::new();
        copy.status = RunStatus::Queued;
        copy.created_at = Utc::now();
        copy.started_at = None;
        copy.finished_at = None;
        copy.error = None;
        let id = copy.id;
        self.inner.store.create_runs(vec![copy]).await?;
        self.enqueue(id).await?;
        Ok(id)
    }

    /// Re-matches a stored delivery against today's handlers and enqueues the new runs.
    pub async fn reprocess(
        &self,
        delivery_id: &str,
        events: &[EventRecord],
    ) -> Result<Dispatch, EngineError> {
        let (runs, unmatched) = self.plan(events, None).await?;
        let mut dispatch = Dispatch {
            unmatched,
            ..Dispatch::default()
        };
        dispatch.runs = runs.iter().map(|r| r.id).collect();
        self.inner
            .store
            .add_delivery_runs(delivery_id, runs)
            .await?;
        self.enqueue_all(&dispatch.runs).await?;
        Ok(dispatch)
    }

    /// Cancels a run that has not finished; a worker running it stops at once.
    pub async fn cancel(&self, run: RunId) -> Result<bool, EngineError> {
        let updated = self
            .inner
            .store
            .transition_run(
                run,
                &[RunStatus::Queued, RunStatus::Running],
                RunStatus::Cancelled,
                Some("cancelled by request".to_owned()),
            )
            .await?;
        Ok(updated.is_some())
    }

    /// Enqueues a run's job again, unless it is still in the queue (for recovery tools and
    /// tests).
    pub async fn requeue(&self, run: RunId) -> Result<(), EngineError> {
        self.enqueue(run).await
    }

    /// A worker that executes runs from the queue.
    pub fn worker(&self, config: WorkerConfig) -> Worker {
        Worker::new(self.clone(), config)
    }

    /// Executes queued runs in this task until the queue has nothing ready; returns the runs
    /// executed. For tests, replays and benchmarks.
    pub async fn run_until_idle(&self) -> Result<Vec<RunId>, EngineError> {
        let worker = self.worker(WorkerConfig {
            poll_wait: Duration::ZERO,
            ..WorkerConfig::default()
        });
        worker.drain().await
    }
}

fn match_into(
    index: &HandlerIndex,
    event: &EventRecord,
    matched: &mut Vec<Arc<IndexedHandler>>,
    unmatched: &mut Vec<Unmatched>,
) {
    let mut scope: Option<(Scope, minijinja::Value)> = None;
    let mut event_name: Option<Arc<str>> = None;
    index.for_each_candidate(&event.name, |handler| {
        let reason = if !handler.enabled {
            UnmatchedReason::Disabled
        } else {
            // Built once per event, and only when some handler reacts to it.
            let (scope, context) = scope.get_or_insert_with(|| {
                let scope = event_scope(event);
                let context = scope.to_value();
                (scope, context)
            });
            match handler.compiled.criteria_match_in(context, scope) {
                Ok(true) => {
                    matched.push(handler.clone());
                    return;
                }
                Ok(false) => UnmatchedReason::CriteriaFalse(handler.criteria.clone().unwrap_or_else(|| Arc::from(""))),
                Err(error) => {
                    tracing::warn!(handler = %handler.name, event = %event.name, %error, "criteria could not be evaluated; the handler does not match");
                    UnmatchedReason::CriteriaError(error.to_string())
                }
            }
        };
        let event_name = event_name.get_or_insert_with(|| Arc::from(event.name.as_str())).clone();
        unmatched.push(Unmatched { handler: handler.name.clone(), event: event_name, reason });
    });
}

/// The template scope of an event at intake: `source` and `event`.
pub(crate) fn event_scope(event: &EventRecord) -> Scope {
    Scope::new(
        template::json(event.source.fields.clone()),
        template::event_value(event),
    )
}

/// The key of a run's job: a run has at most one job in the queue.
fn run_job_key(run: RunId) -> String {
    format!("run:{run}")
}

fn new_run(handler: &IndexedHandler, event: &EventRecord) -> RunRecord {
    RunRecord {
        id: RunId::new(),
        handler_id: handler.id,
        handler_name: handler.compiled.spec.name.clone(),
        handler_version: handler.version,
        handler: (*handler.compiled.spec).clone(),
        event: event.clone(),
        repository: event.source.repository.full_name(),
        delivery_id: event.delivery_id.clone(),
        status: RunStatus::Queued,
        created_at: Utc::now(),
        started_at: None,
        finished_at: None,
        error: None,
    }
}
