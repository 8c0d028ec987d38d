//! Executing one run: render, run, record each step before the next.

use super::{Engine, EngineError, event_scope};
use crate::action::{ActionContext, ActionOutput, LogSink, Outcome};
use crate::handler::{CompiledHandler, CompiledStep};
use crate::redact::Redactor;
use crate::store::{RunId, RunRecord, RunStatus, StepRecord, StepStatus, Store, StoreError};
use crate::template::Scope;
use crate::workspace::Workspace;
use async_trait::async_trait;
use chrono::Utc;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why execution stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interruption {
    /// The worker is shutting down (or lost its lease): leave the run for another worker.
    Released,
}

/// Tokens that stop a run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stops {
    /// The run was cancelled by a user: record it.
    pub cancel: CancellationToken,
    /// The worker is going away: do not record anything, the run resumes elsewhere.
    pub release: CancellationToken,
}

/// Appends a step's output to the store, redacted.
#[derive(Debug)]
struct StoreLog {
    store: Arc<dyn Store>,
    run: RunId,
    key: String,
    redactor: Redactor,
}

#[async_trait]
impl LogSink for StoreLog {
    async fn append(&self, text: &str) {
        let text = self.redactor.redact(text);
        if let Err(error) = self.store.append_log(self.run, &self.key, &text).await {
            tracing::warn!(run = %self.run, step = %self.key, %error, "could not append to the step log");
        }
    }
}

struct RunState<'a> {
    engine: &'a Engine,
    run: &'a RunRecord,
    handler: &'a CompiledHandler,
    workspace: &'a dyn Workspace,
    env: BTreeMap<String, String>,
    done: HashMap<String, StepRecord>,
    stops: &'a Stops,
    /// Why the last failed step failed, for the run's error.
    last_failure: Option<String>,
}

impl Engine {
    /// Executes a run to its end, resuming after its last recorded step. Returns the run's
    /// status (a non-terminal status means the run was released for another worker).
    pub async fn execute_run(&self, run_id: RunId) -> Result<RunStatus, EngineError> {
        self.execute_with(run_id, &Stops::default())
            .await
            .map(|(status, _)| status)
    }

    pub(crate) async fn execute_with(
        &self,
        run_id: RunId,
        stops: &Stops,
    ) -> Result<(RunStatus, Option<Interruption>), EngineError> {
        let store = &self.inner.store;
        // The compare-and-set both claims the run and returns it: one round trip on the
        // path of every run. Only when it refuses is the run read, to say why.
        let claimed = store
            .transition_run(
                run_id,
                &[RunStatus::Queued, RunStatus::Running],
                RunStatus::Running,
                None,
            )
            .await;
        let mut run = match claimed {
            Ok(Some(run)) => run,
            Ok(None) | Err(StoreError::NotFound { .. }) => {
                return match store.get_run(run_id).await? {
                    Some(run) => Ok((run.status, None)),
                    None => Err(EngineError::RunNotFound(run_id)),
                };
            }
            Err(error) => return Err(error.into()),
        };
        let Some(handler) = self.inner.handlers.compiled(
            run.handler_id,
            run.handler_version,
            &run.handler,
            &self.inner.registry,
        ) else {
            return self.finish(&run, RunStatus::Failed, Some(format!("handler `{}` version {} no longer compiles on this worker (is an action it uses not registered here?)", run.handler_name, run.handler_version))).await;
        };
        if !run.event.source.deferred.is_empty()
            && handler.uses_any_source_field(&run.event.source.deferred)
        {
            match &self.inner.enricher {
                Some(enricher) => {
                    if let Err(error) = enricher.enrich(&mut run.event.source).await {
                        return self
                            .finish(&run, RunStatus::Failed, Some(error.to_string()))
                            .await;
                    }
                }
                None => {
                    return self.finish(&run, RunStatus::Failed, Some(format!("the handler uses source fields that must be fetched ({}) but this worker has no enricher configured", run.event.source.deferred.join(", ")))).await;
                }
            }
        }
        let workspace = match self.inner.workspaces.create(&run.event.source) {
            Ok(workspace) => workspace,
            Err(error) => {
                return self
                    .finish(&run, RunStatus::Failed, Some(error.to_string()))
                    .await;
            }
        };
        let mut scope = event_scope(&run.event);
        let env = match handler.render_env(&scope) {
            Ok(env) => env,
            Err(error) => {
                return self
                    .finish(
                        &run,
                        RunStatus::Failed,
                        Some(format!("handler env: {error}")),
                    )
                    .await;
            }
        };
        let done = store
            .list_steps(run_id)
            .await?
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect();
        let mut state = RunState {
            engine: self,
            run: &run,
            handler: &handler,
            workspace: workspace.as_ref(),
            env,
            done,
            stops,
            last_failure: None,
        };
        let mut failed: Option<String> = None;
        for step in &handler.steps {
            state.last_failure = None;
            match state.step(step, &mut scope).await? {
                StepEnd::Interrupted(why) => return Ok((RunStatus::Running, Some(why))),
                StepEnd::Cancelled => {
                    return self
                        .finish(
                            &run,
                            RunStatus::Cancelled,
                            Some("cancelled by request".to_owned()),
                        )
                        .await;
                }
                StepEnd::Done { success: true } => {}
                StepEnd::Done { success: false } if step.continue_on_failure => {}
                StepEnd::Done { success: false } => {
                    failed = Some(match &state.last_failure {
                        Some(why) => format!("step `{}` failed: {why}", step.name),
                        None => format!("step `{}` failed", step.name),
                    });
                    break;
                }
            }
        }
        drop(state);
        // The workspace is removed before the run is reported finished.
        drop(workspace);
        match failed {
            Some(error) => self.finish(&run, RunStatus::Failed, Some(error)).await,
            None => self.finish(&run, RunStatus::Succeeded, None).await,
        }
    }

    async fn finish(
        &self,
        run: &RunRecord,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<(RunStatus, Option<Interruption>), EngineError> {
        let error = error.map(|e| self.inner.redactor.redact(&e));
        match &error {
            Some(error) => {
                tracing::info!(run = %run.id, handler = %run.handler_name, status = status.as_str(), %error, "run finished")
            }
            None => {
                tracing::info!(run = %run.id, handler = %run.handler_name, status = status.as_str(), "run finished")
            }
        }
        match self
            .inner
            .store
            .transition_run(run.id, &[RunStatus::Running], status, error)
            .await?
        {
            Some(updated) => Ok((updated.status, None)),
            // Cancelled (or finished by another worker) meanwhile: report what it is.
            None => Ok((
                self.inner
                    .store
                    .get_run(run.id)
                    .await?
                    .map_or(status, |r| r.status),
                None,
            )),
        }
    }
}

enum StepEnd {
    Done { success: bool },
    Interrupted(Interruption),
    Cancelled,
}

impl RunState<'_> {
    /// Runs a step (or restores its recorded result) and then its callbacks.
    fn step<'s>(
        &'s mut self,
        step: &'s CompiledStep,
        scope: &'s mut Scope,
    ) -> futures::future::BoxFuture<'s, Result<StepEnd, EngineError>> {
        Box::pin(async move {
            let previous = self.done.get(&step.key).cloned();
            let record = match previous {
                Some(record) if record.status.is_terminal() => record,
                previous => {
                    let attempt = previous.map_or(1, |p| p.attempt + 1);
                    match self.execute_step(step, scope, attempt).await? {
                        Ok(record) => record,
                        Err(end) => return Ok(end),
                    }
                }
            };
            scope.set(&step.name, step_value(&record));
            // The first failure under a main step is its own (callbacks run after it).
            if !record.status.is_success() && self.last_failure.is_none() {
                self.last_failure = record.error.clone().or_else(|| {
                    record
                        .data
                        .get("exit_code")
                        .map(|code| format!("exit code {code}"))
                });
            }
            if record.status == StepStatus::Cancelled {
                return Ok(StepEnd::Cancelled);
            }
            let success = record.status.is_success();
            let callbacks = if success {
                &step.on_success
            } else {
                &step.on_failure
            };
            if callbacks.is_empty() {
                return Ok(StepEnd::Done { success });
            }
            // Callbacks see the step and each other; later main steps do not see them.
            let mut callback_scope = scope.clone();
            let mut callbacks_ok = true;
            for callback in callbacks {
                match self.step(callback, &mut callback_scope).await? {
                    StepEnd::Done { success: true } => {}
                    StepEnd::Done { success: false } if callback.continue_on_failure => {}
                    StepEnd::Done { success: false } => {
                        callbacks_ok = false;
                        break;
                    }
                    other => return Ok(other),
                }
            }
            Ok(StepEnd::Done {
                success: success && callbacks_ok,
            })
        })
    }

    async fn execute_step(
        &mut self,
        step: &CompiledStep,
        scope: &Scope,
        attempt: u32,
    ) -> Result<Result<StepRecord, StepEnd>, EngineError> {
        let engine = &self.engine.inner;
        let started_at = Utc::now();
        let mut record = StepRecord {
            key: step.key.clone(),
            name: step.name.clone(),
            action: step.action_name.clone(),
            status: StepStatus::Running,
            attempt,
            started_at,
            finished_at: None,
            data: Map::new(),
            error: None,
        };
        engine
            .store
            .record_step(self.run.id, record.clone())
            .await?;
        let clock = Instant::now();
        let context = scope.to_value();
        let rendered = step.args.render(&self.handler.env, &context, scope);
        let (status, mut data, error) = match rendered {
            Err(error) => {
                let message = format!(
                    "handler `{}`, step `{}`: {}",
                    self.handler.spec.name, step.name, error.message
                );
                (StepStatus::Failure, Map::new(), Some(message))
            }
            Ok(args) => {
                let log = StoreLog {
                    store: engine.store.clone(),
                    run: self.run.id,
                    key: step.key.clone(),
                    redactor: engine.redactor.clone(),
                };
                let timeout = step.timeout.or(engine.config.default_step_timeout);
                let ctx = ActionContext {
                    run_id: self.run.id,
                    handler: &self.handler.spec.name,
                    step: &step.name,
                    event: &self.run.event,
                    env: &self.env,
                    timeout,
                    cancel: self.stops.cancel.child_token(),
                    redactor: &engine.redactor,
                    workspace: self.workspace,
                    log: &log,
                    services: &engine.services,
                };
                let action = step.action.run(args, &ctx);
                let timed = async {
                    match timeout {
                        Some(limit) => tokio::time::timeout(limit, action).await.map_err(|_| limit),
                        None => Ok(action.await),
                    }
                };
                tokio::select! {
                    biased;
                    () = self.stops.release.cancelled() => return Ok(Err(StepEnd::Interrupted(Interruption::Released))),
                    () = self.stops.cancel.cancelled() => (StepStatus::Cancelled, Map::new(), Some("cancelled by request".to_owned())),
                    result = timed => match result {
                        Ok(Ok(ActionOutput { outcome: Outcome::Success, data })) => (StepStatus::Success, data, None),
                        Ok(Ok(ActionOutput { outcome: Outcome::Failure, data })) => {
                            let error = data.get("error").and_then(Value::as_str).map(str::to_owned);
                            (StepStatus::Failure, data, error)
                        }
                        Ok(Err(error)) => (StepStatus::Failure, Map::new(), Some(error.to_string())),
                        Err(limit) => (StepStatus::TimedOut, Map::new(), Some(format!("timed out after {}", humantime::format_duration(limit)))),
                    },
                }
            }
        };
        if matches!(status, StepStatus::TimedOut | StepStatus::Cancelled)
            && !data.contains_key("output")
        {
            // The action's own result was dropped with it; what it logged so far is the
            // best account of what happened (a linter's output up to the timeout).
            if let Some(logged) = self.log_tail(&step.key).await {
                data.insert("output".to_owned(), Value::String(logged));
            }
        }
        if let Some(message) = &error {
            data.entry("error")
                .or_insert_with(|| Value::String(message.clone()));
            // Templates such as `{{ linter.output }}` in an on_failure callback should show
            // why the step failed even when the action produced no output.
            data.entry("output")
                .or_insert_with(|| Value::String(message.clone()));
        }
        data.insert(
            "status".to_owned(),
            Value::String(status.as_str().to_owned()),
        );
        data.insert(
            "duration_ms".to_owned(),
            Value::from(u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX)),
        );
        let mut data = Value::Object(data);
        engine.redactor.redact_json(&mut data);
        record.data = match data {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        record.status = status;
        record.error = error.map(|e| engine.redactor.redact(&e));
        record.finished_at = Some(Utc::now());
        engine
            .store
            .record_step(self.run.id, record.clone())
            .await?;
        for hook in &engine.step_hooks.0 {
            hook(self.run, &record);
        }
        tracing::debug!(run = %self.run.id, step = %step.name, status = status.as_str(), "step finished");
        Ok(Ok(record))
    }
}

impl RunState<'_> {
    /// The last [`LOG_TAIL`] bytes of a step's log, if it logged anything.
    async fn log_tail(&self, key: &str) -> Option<String> {
        let text = self
            .engine
            .inner
            .store
            .read_log(self.run.id, key, 0)
            .await
            .ok()?
            .text;
        let mut start = text.len().saturating_sub(LOG_TAIL);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        (!text.is_empty()).then(|| text[start..].to_owned())
    }
}

/// How much of a step's log becomes its `output` when the step is stopped.
const LOG_TAIL: usize = 64 * 1024;

/// What templates see for a finished step.
fn step_value(record: &StepRecord) -> minijinja::Value {
    crate::template::json(Arc::new(Value::Object(record.data.clone())))
}
