//! In-memory store.
//!
//! Layout, chosen so that the engine's hot paths (`get_run`, `transition_run`,
//! `record_step`, `append_log`) are O(1) or O(log n) and hold a lock only for a few pointer
//! moves:
//! - handlers live in their own table behind one lock (they change rarely);
//! - runs and deliveries share one table, so that [`Store::record_delivery`] stores a
//!   delivery and its runs atomically; records are kept behind `Arc`s so that readers clone
//!   them *after* releasing the lock;
//! - every run has its own mutex for its steps and logs, so that workers recording steps of
//!   different runs never wait for each other nor for the run table's write lock.

use crate::handler::HandlerSpec;
use crate::store::{
    DeliveryOutcome, DeliveryRecord, HandlerId, HandlerRecord, LogChunk, RunFilter, RunId,
    RunRecord, RunStatus, StepRecord, Store, StoreError,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

/// Runs returned by [`Store::list_runs`] when the filter gives no limit.
const DEFAULT_RUN_LIMIT: u32 = 100;
/// Most records one list call returns, whatever limit is asked for.
const MAX_LIST_LIMIT: u32 = 1000;

/// An in-memory [`Store`]: complete and honest, for tests, benchmarks and single-process
/// embedding. Nothing survives the process.
///
/// Cloning is cheap and every clone shares the same state.
///
/// Behaviour where the [`Store`] contract leaves a choice:
/// - handlers list in byte order of their names; a handler's `enabled` flag is taken from
///   its spec when it is created and then only changed by
///   [`set_handler_enabled`](Store::set_handler_enabled) (updates keep it); the stored spec
///   is kept exactly as given;
/// - a run id must be new: storing a run whose id exists fails with
///   [`StoreError::Backend`] and stores nothing of that call;
/// - writing steps or logs of a run that does not exist fails with
///   [`StoreError::NotFound`]; reading them returns nothing;
/// - [`transition_run`](Store::transition_run) fails with [`StoreError::NotFound`] for an
///   unknown run, replaces `error` only when one is given, and clears `finished_at` when a
///   run moves back to a non-terminal status;
/// - [`list_runs`](Store::list_runs) orders by `(created_at, id)`, newest first; `before`
///   naming an unknown run fails with [`StoreError::NotFound`]; limits are capped at 1000,
///   as is [`list_deliveries`](Store::list_deliveries);
/// - a stored delivery's `run_ids` are the ones it was given followed by the ids of the
///   runs stored with it that it did not list;
/// - [`read_log`](Store::read_log) returns at most 1 MiB per call; an offset that falls
///   inside a UTF-8 character reads from the next character boundary, and an offset past
///   the end reads nothing and returns the log's length as `next_offset`;
/// - [`count_runs_by_status`](Store::count_runs_by_status) lists every status, with zero
///   for the ones no run has.
#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for MemoryStore {
    // Dumping every record would be useless in logs; the sizes say what matters. `try_*`
    // because `Debug` may be called while this thread holds a lock.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("MemoryStore");
        match self.shared.handlers.try_read() {
            Some(handlers) => out.field("handlers", &handlers.by_id.len()),
            None => out.field("handlers", &"<locked>"),
        };
        match self.shared.runs.try_read() {
            Some(runs) => out
                .field("runs", &runs.runs.len())
                .field("deliveries", &runs.deliveries.len()),
            None => out.field("runs", &"<locked>"),
        };
        out.finish()
    }
}

#[derive(Default)]
struct Shared {
    handlers: RwLock<HandlerTable>,
    runs: RwLock<RunTable>,
}

#[derive(Default)]
struct HandlerTable {
    by_id: HashMap<HandlerId, HandlerRecord>,
    /// Sorted, so that listing by name needs no sort.
    id_by_name: BTreeMap<String, HandlerId>,
    revision: u64,
}

impl HandlerTable {
    fn changed(&mut self) {
        self.revision = self.revision.wrapping_add(1);
    }
}

#[derive(Default)]
struct RunTable {
    runs: HashMap<RunId, RunSlot>,
    /// `(created_at, id)` of every run: newest first is a reverse walk.
    by_creation: BTreeSet<(DateTime<Utc>, RunId)>,
    /// Indexed by [`status_index`].
    counts: [u64; RunStatus::ALL.len()],
    deliveries: HashMap<String, Arc<DeliveryRecord>>,
    /// `(received_at, arrival sequence)` → delivery id; the sequence breaks ties.
    deliveries_by_arrival: BTreeMap<(DateTime<Utc>, u64), String>,
    next_delivery_sequence: u64,
}

struct RunSlot {
    record: Arc<RunRecord>,
    steps: Arc<Mutex<RunSteps>>,
}

#[derive(Default)]
struct RunSteps {
    steps: Vec<StepRecord>,
    position_by_key: HashMap<String, usize>,
    logs: HashMap<String, String>,
}

fn status_index(status: RunStatus) -> usize {
    status as usize
}

fn handler_not_found(id: HandlerId) -> StoreError {
    StoreError::NotFound {
        what: "handler",
        id: id.to_string(),
    }
}

fn run_not_found(id: RunId) -> StoreError {
    StoreError::NotFound {
        what: "run",
        id: id.to_string(),
    }
}

impl RunTable {
    /// Fails unless every run id is new (in the store and within `runs`), so that a batch
    /// is stored whole or not at all.
    fn check_new_run_ids(&self, runs: &[RunRecord]) -> Result<(), StoreError> {
        let mut seen = HashSet::with_capacity(if runs.len() > 1 { runs.len() } else { 0 });
        for run in runs {
            let repeated_in_batch = runs.len() > 1 && !seen.insert(run.id);
            if repeated_in_batch || self.runs.contains_key(&run.id) {
                return Err(StoreError::Backend(format!(
                    "run `{}` exists already; every new run needs a fresh RunId",
                    run.id
                )));
            }
        }
        Ok(())
    }

    /// Inserts runs whose ids [`check_new_run_ids`](Self::check_new_run_ids) accepted.
    fn insert_runs(&mut self, runs: Vec<RunRecord>) {
        self.runs.reserve(runs.len());
        for run in runs {
            self.by_creation.insert((run.created_at, run.id));
            self.counts[status_index(run.status)] += 1;
            self.runs.insert(
                run.id,
                RunSlot {
                    record: Arc::new(run),
                    steps: Arc::default(),
                },
            );
        }
    }

    fn steps_of(&self, run_id: RunId) -> Option<Arc<Mutex<RunSteps>>> {
        self.runs.get(&run_id).map(|slot| Arc::clone(&slot.steps))
    }
}

fn matches_filter(run: &RunRecord, filter: &RunFilter) -> bool {
    filter
        .repository
        .as_ref()
        .is_none_or(|repository| *repository == run.repository)
        && filter
            .handler
            .as_ref()
            .is_none_or(|handler| *handler == run.handler_name)
        && filter.status.is_none_or(|status| status == run.status)
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_handler(
        &self,
        spec: HandlerSpec,
        source_text: String,
    ) -> Result<HandlerRecord, StoreError> {
        let mut table = self.shared.handlers.write();
        if table.id_by_name.contains_key(&spec.name) {
            return Err(StoreError::HandlerExists(spec.name));
        }
        let now = Utc::now();
        let record = HandlerRecord {
            id: HandlerId::new(),
            name: spec.name.clone(),
            version: 1,
            enabled: spec.enabled,
            source_text,
            spec,
            created_at: now,
            updated_at: now,
        };
        table.id_by_name.insert(record.name.clone(), record.id);
        table.by_id.insert(record.id, record.clone());
        table.changed();
        Ok(record)
    }

    async fn update_handler(
        &self,
        id: HandlerId,
        spec: HandlerSpec,
        source_text: String,
        expected_version: Option<i64>,
    ) -> Result<HandlerRecord, StoreError> {
        let mut guard = self.shared.handlers.write();
        let table = &mut *guard;
        let record = table
            .by_id
            .get_mut(&id)
            .ok_or_else(|| handler_not_found(id))?;
        if let Some(expected) = expected_version.filter(|&expected| expected != record.version) {
            return Err(StoreError::Conflict {
                what: "handler",
                id: id.to_string(),
                expected,
            });
        }
        if spec.name != record.name {
            if table.id_by_name.contains_key(&spec.name) {
                return Err(StoreError::HandlerExists(spec.name));
            }
            table.id_by_name.remove(&record.name);
            table.id_by_name.insert(spec.name.clone(), id);
            record.name.clone_from(&spec.name);
        }
        record.version += 1;
        record.spec = spec;
        record.source_text = source_text;
        record.updated_at = Utc::now();
        let updated = record.clone();
        table.changed();
        Ok(updated)
    }

    async fn set_handler_enabled(
        &self,
        id: HandlerId,
        enabled: bool,
    ) -> Result<HandlerRecord, StoreError> {
        let mut table = self.shared.handlers.write();
        let record = table
            .by_id
            .get_mut(&id)
            .ok_or_else(|| handler_not_found(id))?;
        record.enabled = enabled;
        let updated = record.clone();
        table.changed();
        Ok(updated)
    }

    async fn delete_handler(&self, id: HandlerId) -> Result<bool, StoreError> {
        let mut table = self.shared.handlers.write();
        let Some(record) = table.by_id.remove(&id) else {
            return Ok(false);
        };
        table.id_by_name.remove(&record.name);
        table.changed();
        Ok(true)
    }

    async fn get_handler(&self, id: HandlerId) -> Result<Option<HandlerRecord>, StoreError> {
        Ok(self.shared.handlers.read().by_id.get(&id).cloned())
    }

    async fn get_handler_by_name(&self, name: &str) -> Result<Option<HandlerRecord>, StoreError> {
        let table = self.shared.handlers.read();
        Ok(table
            .id_by_name
            .get(name)
            .and_then(|id| table.by_id.get(id))
            .cloned())
    }

    async fn list_handlers(&self) -> Result<Vec<HandlerRecord>, StoreError> {
        let table = self.shared.handlers.read();
        Ok(table
            .id_by_name
            .values()
            .filter_map(|id| table.by_id.get(id))
            .cloned()
            .collect())
    }

    async fn handlers_revision(&self) -> Result<u64, StoreError> {
        Ok(self.shared.handlers.read().revision)
    }

    async fn record_delivery(
        &self,
        mut delivery: DeliveryRecord,
        runs: Vec<RunRecord>,
    ) -> Result<DeliveryOutcome, StoreError> {
        let mut table = self.shared.runs.write();
        if let Some(existing) = table.deliveries.get(&delivery.id) {
            return Ok(DeliveryOutcome::Duplicate(existing.run_ids.clone()));
        }
        table.check_new_run_ids(&runs)?;
        for run in &runs {
            if !delivery.run_ids.contains(&run.id) {
                delivery.run_ids.push(run.id);
            }
        }
        table.insert_runs(with_payloads_restored(&delivery, runs)?);
        let sequence = table.next_delivery_sequence;
        table.next_delivery_sequence += 1;
        table
            .deliveries_by_arrival
            .insert((delivery.received_at, sequence), delivery.id.clone());
        table
            .deliveries
            .insert(delivery.id.clone(), Arc::new(delivery));
        Ok(DeliveryOutcome::Recorded)
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        let delivery = self.shared.runs.read().deliveries.get(id).cloned();
        Ok(delivery.map(Arc::unwrap_or_clone))
    }

    async fn list_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        let limit = limit.min(MAX_LIST_LIMIT) as usize;
        let newest: Vec<Arc<DeliveryRecord>> = {
            let table = self.shared.runs.read();
            table
                .deliveries_by_arrival
                .values()
                .rev()
                .filter_map(|id| table.deliveries.get(id))
                .take(limit)
                .cloned()
                .collect()
        };
        Ok(newest.into_iter().map(Arc::unwrap_or_clone).collect())
    }

    async fn add_delivery_runs(
        &self,
        delivery_id: &str,
        runs: Vec<RunRecord>,
    ) -> Result<(), StoreError> {
        let mut guard = self.shared.runs.write();
        let table = &mut *guard;
        if !table.deliveries.contains_key(delivery_id) {
            return Err(StoreError::NotFound {
                what: "delivery",
                id: delivery_id.to_owned(),
            });
        }
        table.check_new_run_ids(&runs)?;
        let new_ids: Vec<RunId> = runs.iter().map(|run| run.id).collect();
        table.insert_runs(runs);
        if let Some(delivery) = table.deliveries.get_mut(delivery_id) {
            Arc::make_mut(delivery).run_ids.extend(new_ids);
        }
        Ok(())
    }

    async fn create_runs(&self, runs: Vec<RunRecord>) -> Result<(), StoreError> {
        let mut table = self.shared.runs.write();
        table.check_new_run_ids(&runs)?;
        table.insert_runs(runs);
        Ok(())
    }

    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        let record = self
            .shared
            .runs
            .read()
            .runs
            .get(&id)
            .map(|slot| Arc::clone(&slot.record));
        Ok(record.map(Arc::unwrap_or_clone))
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let limit = filter
            .limit
            .unwrap_or(DEFAULT_RUN_LIMIT)
            .min(MAX_LIST_LIMIT) as usize;
        let found: Vec<Arc<RunRecord>> = {
            let table = self.shared.runs.read();
            let before_run = match filter.before {
                Some(before) => {
                    let slot = table
                        .runs
                        .get(&before)
                        .ok_or_else(|| run_not_found(before))?;
                    Some((slot.record.created_at, before))
                }
                None => None,
            };
            // Every key of a run created at `time` is above `(time, nil)`.
            let before_time = filter
                .created_before
                .map(|time| (time, RunId(uuid::Uuid::nil())));
            let newer_bound = match (before_run, before_time) {
                (Some(run), Some(time)) => Bound::Excluded(run.min(time)),
                (Some(key), None) | (None, Some(key)) => Bound::Excluded(key),
                (None, None) => Bound::Unbounded,
            };
            table
                .by_creation
                .range((Bound::Unbounded, newer_bound))
                .rev()
                .filter_map(|(_, id)| table.runs.get(id))
                .map(|slot| &slot.record)
                .filter(|run| matches_filter(run, filter))
                .take(limit)
                .cloned()
                .collect()
        };
        Ok(found.into_iter().map(Arc::unwrap_or_clone).collect())
    }

    async fn transition_run(
        &self,
        id: RunId,
        from: &[RunStatus],
        to: RunStatus,
        error: Option<String>,
    ) -> Result<Option<RunRecord>, StoreError> {
        let now = Utc::now();
        let updated = {
            let mut guard = self.shared.runs.write();
            let table = &mut *guard;
            let slot = table.runs.get_mut(&id).ok_or_else(|| run_not_found(id))?;
            let previous = slot.record.status;
            if !from.contains(&previous) {
                return Ok(None);
            }
            // Clones only when a reader still holds the previous version.
            let record = Arc::make_mut(&mut slot.record);
            record.status = to;
            if to == RunStatus::Running && record.started_at.is_none() {
                record.started_at = Some(now);
            }
            record.finished_at = to.is_terminal().then_some(now);
            if error.is_some() {
                record.error = error;
            }
            let updated = Arc::clone(&slot.record);
            table.counts[status_index(previous)] -= 1;
            table.counts[status_index(to)] += 1;
            updated
        };
        Ok(Some(Arc::unwrap_or_clone(updated)))
    }

    async fn count_runs_by_status(&self) -> Result<BTreeMap<RunStatus, u64>, StoreError> {
        let counts = self.shared.runs.read().counts;
        Ok(RunStatus::ALL
            .into_iter()
            .map(|status| (status, counts[status_index(status)]))
            .collect())
    }

    async fn record_step(&self, run_id: RunId, step: StepRecord) -> Result<(), StoreError> {
        let steps = self
            .shared
            .runs
            .read()
            .steps_of(run_id)
            .ok_or_else(|| run_not_found(run_id))?;
        let mut steps = steps.lock();
        let steps = &mut *steps;
        match steps.position_by_key.get(&step.key) {
            Some(&position) => {
                if let Some(slot) = steps.steps.get_mut(position) {
                    *slot = step;
                }
            }
            None => {
                steps
                    .position_by_key
                    .insert(step.key.clone(), steps.steps.len());
                steps.steps.push(step);
            }
        }
        Ok(())
    }

    async fn list_steps(&self, run_id: RunId) -> Result<Vec<StepRecord>, StoreError> {
        let steps = self.shared.runs.read().steps_of(run_id);
        Ok(steps
            .map(|steps| steps.lock().steps.clone())
            .unwrap_or_default())
    }

    async fn append_log(
        &self,
        run_id: RunId,
        step_key: &str,
        text: &str,
    ) -> Result<(), StoreError> {
        let steps = self
            .shared
            .runs
            .read()
            .steps_of(run_id)
            .ok_or_else(|| run_not_found(run_id))?;
        let mut steps = steps.lock();
        match steps.logs.get_mut(step_key) {
            Some(log) => log.push_str(text),
            None => {
                steps.logs.insert(step_key.to_owned(), text.to_owned());
            }
        }
        Ok(())
    }

    /// See [`MemoryStore`] for offsets inside a character or past the end.
    async fn read_log(
        &self,
        run_id: RunId,
        step_key: &str,
        offset: u64,
    ) -> Result<LogChunk, StoreError> {
        let steps = self.shared.runs.read().steps_of(run_id);
        let steps = steps.as_ref().map(|steps| steps.lock());
        let log = steps
            .as_ref()
            .and_then(|steps| steps.logs.get(step_key))
            .map_or("", String::as_str);
        // A `String` is UTF-8, so the cut cannot fail.
        LogChunk::cut(log.as_bytes(), 0, offset).map_err(|error| {
            StoreError::Corrupt(format!(
                "the log of run {run_id} step `{step_key}`: {error}"
            ))
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// `runs` with the payload put back into the events that came with it left out in
/// `delivery`'s body: this store keeps runs as they are read, so it restores them once, here.
fn with_payloads_restored(
    delivery: &DeliveryRecord,
    mut runs: Vec<RunRecord>,
) -> Result<Vec<RunRecord>, StoreError> {
    for run in &mut runs {
        if delivery.holds_payload_of(run) && delivery.left_out_payload_of(&run.event) {
            run.event.restore_payload(&delivery.body).map_err(|error| {
                StoreError::Corrupt(format!(
                    "delivery {} says its body is its runs' payload, but the body is not JSON: {error}",
                    delivery.id
                ))
            })?;
        }
    }
    Ok(runs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".
mod tests {
    use super::*;
    use crate::event::{EventRecord, Repository, SourceRecord};
    use crate::store::StepStatus;
    use chrono::TimeDelta;
    use serde_json::json;

    fn spec(name: &str) -> HandlerSpec {
        HandlerSpec {
            name: name.to_owned(),
            description: None,
            events: vec!["push".to_owned()],
            criteria: None,
            enabled: true,
            env: BTreeMap::new(),
            actions: Vec::new(),
        }
    }

    fn run(handler: &HandlerRecord) -> RunRecord {
        RunRecord {
            id: RunId::new(),
            handler_id: handler.id,
            handler_name: handler.name.clone(),
            handler_version: handler.version,
            handler: handler.spec.clone(),
            event: EventRecord {
                name: "push".to_owned(),
                delivery_id: None,
                source: SourceRecord {
                    kind: "commit".to_owned(),
                    repository: Repository::new("github.com", "octo", "hello"),
                    fields: json!({}).into(),
                    checkout: None,
                    deferred: Vec::new(),
                },
                data: json!({}).into(),
            },
            repository: "octo/hello".to_owned(),
            delivery_id: None,
            status: RunStatus::Queued,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            error: None,
        }
    }

    fn step(key: &str) -> StepRecord {
        StepRecord {
            key: key.to_owned(),
            name: key.to_owned(),
            action: "shell_command".to_owned(),
            status: StepStatus::Running,
            attempt: 1,
            started_at: Utc::now(),
            finished_at: None,
            data: serde_json::Map::new(),
            error: None,
        }
    }

    async fn store_with_run() -> (MemoryStore, RunRecord) {
        let store = MemoryStore::new();
        let handler = store
            .create_handler(spec("h"), String::new())
            .await
            .unwrap();
        let run = run(&handler);
        store.create_runs(vec![run.clone()]).await.unwrap();
        (store, run)
    }

    #[tokio::test]
    async fn clones_share_state() {
        let store = MemoryStore::new();
        let clone = store.clone();
        let created = clone
            .create_handler(spec("shared"), String::new())
            .await
            .unwrap();
        assert_eq!(store.get_handler(created.id).await.unwrap(), Some(created));
        assert_eq!(store.handlers_revision().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn debug_shows_sizes_not_records() {
        let (store, _) = store_with_run().await;
        assert_eq!(
            format!("{store:?}"),
            "MemoryStore { handlers: 1, runs: 1, deliveries: 0 }"
        );
    }

    #[tokio::test]
    async fn steps_and_logs_of_an_unknown_run() {
        let store = MemoryStore::new();
        let unknown = RunId::new();
        assert!(matches!(
            store.record_step(unknown, step("0")).await,
            Err(StoreError::NotFound { what: "run", .. })
        ));
        assert!(matches!(
            store.append_log(unknown, "0", "text").await,
            Err(StoreError::NotFound { what: "run", .. })
        ));
        assert!(store.list_steps(unknown).await.unwrap().is_empty());
        assert_eq!(
            store.read_log(unknown, "0", 3).await.unwrap(),
            LogChunk {
                text: String::new(),
                next_offset: 0
            }
        );
        assert!(matches!(
            store
                .transition_run(unknown, &[RunStatus::Queued], RunStatus::Running, None)
                .await,
            Err(StoreError::NotFound { what: "run", .. })
        ));
    }

    #[tokio::test]
    async fn a_batch_with_a_known_or_repeated_run_id_stores_nothing() {
        let (store, existing) = store_with_run().await;
        let handler = store.get_handler_by_name("h").await.unwrap().unwrap();
        let fresh = run(&handler);
        let error = store
            .create_runs(vec![fresh.clone(), existing.clone()])
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains(&existing.id.to_string()),
            "{error}"
        );
        assert_eq!(store.get_run(fresh.id).await.unwrap(), None);

        let twice = run(&handler);
        assert!(
            store
                .create_runs(vec![twice.clone(), twice.clone()])
                .await
                .is_err()
        );
        assert_eq!(store.get_run(twice.id).await.unwrap(), None);
        let total: u64 = store.count_runs_by_status().await.unwrap().values().sum();
        assert_eq!(total, 1);
    }

    #[tokio::test]
    async fn list_limits_are_capped_and_unknown_before_is_an_error() {
        let store = MemoryStore::new();
        let handler = store
            .create_handler(spec("h"), String::new())
            .await
            .unwrap();
        let start = Utc::now();
        let runs: Vec<RunRecord> = (0..1005)
            .map(|i| {
                let mut run = run(&handler);
                run.created_at = start + TimeDelta::milliseconds(i);
                run
            })
            .collect();
        store.create_runs(runs).await.unwrap();
        let filter = RunFilter {
            limit: Some(u32::MAX),
            ..RunFilter::default()
        };
        assert_eq!(store.list_runs(&filter).await.unwrap().len(), 1000);
        let zero = RunFilter {
            limit: Some(0),
            ..RunFilter::default()
        };
        assert!(store.list_runs(&zero).await.unwrap().is_empty());
        let unknown = RunFilter {
            before: Some(RunId::new()),
            ..RunFilter::default()
        };
        assert!(matches!(
            store.list_runs(&unknown).await,
            Err(StoreError::NotFound { what: "run", .. })
        ));
    }

    #[tokio::test]
    async fn runs_created_in_the_same_instant_page_by_id() {
        let store = MemoryStore::new();
        let handler = store
            .create_handler(spec("h"), String::new())
            .await
            .unwrap();
        let instant = Utc::now();
        let mut runs: Vec<RunRecord> = (0..5)
            .map(|_| {
                let mut run = run(&handler);
                run.created_at = instant;
                run
            })
            .collect();
        store.create_runs(runs.clone()).await.unwrap();
        runs.sort_by_key(|run| std::cmp::Reverse(run.id));
        let first = RunFilter {
            limit: Some(2),
            ..RunFilter::default()
        };
        let page = store.list_runs(&first).await.unwrap();
        let next = RunFilter {
            before: Some(page[1].id),
            ..RunFilter::default()
        };
        let rest = store.list_runs(&next).await.unwrap();
        let all: Vec<RunId> = page.iter().chain(&rest).map(|run| run.id).collect();
        assert_eq!(all, runs.iter().map(|run| run.id).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn counts_list_every_status() {
        let store = MemoryStore::new();
        let counts = store.count_runs_by_status().await.unwrap();
        assert_eq!(counts.len(), RunStatus::ALL.len());
        assert!(counts.values().all(|&count| count == 0));
    }

    #[tokio::test]
    async fn enabled_comes_from_the_spec_then_survives_updates() {
        let store = MemoryStore::new();
        let mut disabled = spec("quiet");
        disabled.enabled = false;
        let created = store.create_handler(disabled, String::new()).await.unwrap();
        assert!(!created.enabled);
        let enabled = store.set_handler_enabled(created.id, true).await.unwrap();
        assert!(enabled.enabled);
        let mut edited = spec("quiet");
        edited.enabled = false;
        let updated = store
            .update_handler(created.id, edited, "edited".to_owned(), Some(1))
            .await
            .unwrap();
        assert!(updated.enabled, "updates keep the enabled flag");
        assert!(!updated.spec.enabled, "the spec is kept as given");
    }

    #[tokio::test]
    async fn transitions_replace_error_only_when_given_and_requeue_clears_finished_at() {
        let (store, run) = store_with_run().await;
        let failed = store
            .transition_run(
                run.id,
                &[RunStatus::Queued],
                RunStatus::Failed,
                Some("boom".into()),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(failed.finished_at.is_some());
        let requeued = store
            .transition_run(run.id, &[RunStatus::Failed], RunStatus::Queued, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(requeued.error.as_deref(), Some("boom"));
        assert_eq!(requeued.finished_at, None);
        assert_eq!(requeued.started_at, None);
    }

    #[tokio::test]
    async fn readers_keep_their_snapshot_while_the_run_changes() {
        let (store, run) = store_with_run().await;
        let before = store.get_run(run.id).await.unwrap().unwrap();
        store
            .transition_run(run.id, &[RunStatus::Queued], RunStatus::Running, None)
            .await
            .unwrap();
        assert_eq!(before.status, RunStatus::Queued);
        assert_eq!(
            store.get_run(run.id).await.unwrap().unwrap().status,
            RunStatus::Running
        );
    }
}
