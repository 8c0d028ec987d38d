//! The handler index: which handlers react to an event name, without scanning them all.

use crate::action::ActionRegistry;
use crate::handler::{CompiledHandler, EventPattern, compile_spec};
use crate::store::{HandlerId, HandlerRecord, Store, StoreError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stored handler, compiled.
#[derive(Debug)]
pub struct IndexedHandler {
    /// Its id.
    pub id: HandlerId,
    /// Its version.
    pub version: i64,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Its name (shared, for reports).
    pub name: Arc<str>,
    /// Its criteria as written (shared, for reports).
    pub criteria: Option<Arc<str>>,
    /// Compiled.
    pub compiled: Arc<CompiledHandler>,
}

/// Handlers by event name.
///
/// Exact names are a hash lookup. Wildcard patterns are filed under the event family
/// before the first `.` (`pull_request.*` under `pull_request`), and only patterns whose
/// literal prefix has no `.` at all (`*`, `pull_*`) are checked for every event.
#[derive(Debug, Default)]
pub struct HandlerIndex {
    exact: HashMap<String, Vec<Arc<IndexedHandler>>>,
    by_family: HashMap<String, Vec<(EventPattern, Arc<IndexedHandler>)>>,
    anywhere: Vec<(EventPattern, Arc<IndexedHandler>)>,
    len: usize,
    /// Whether any enabled handler's criteria read the payload (most sets have none, and
    /// intake then never looks for one).
    criteria_read_payload: bool,
}

impl HandlerIndex {
    /// Builds the index.
    pub fn new(handlers: impl IntoIterator<Item = Arc<IndexedHandler>>) -> Self {
        let mut index = Self::default();
        for handler in handlers {
            index.len += 1;
            index.criteria_read_payload |=
                handler.enabled && handler.compiled.criteria_read_payload();
            let mut seen = std::collections::HashSet::new();
            for pattern in handler
                .compiled
                .patterns()
                .iter()
                .filter(|p| seen.insert(*p))
            {
                match pattern {
                    EventPattern::Exact(name) => {
                        index
                            .exact
                            .entry(name.clone())
                            .or_default()
                            .push(handler.clone());
                    }
                    EventPattern::Glob(_) => match pattern.literal_prefix().split_once('.') {
                        Some((family, _)) => index
                            .by_family
                            .entry(family.to_owned())
                            .or_default()
                            .push((pattern.clone(), handler.clone())),
                        None => index.anywhere.push((pattern.clone(), handler.clone())),
                    },
                }
            }
        }
        index
    }

    /// How many handlers are indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no handler is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether an enabled handler reacting to `event_name` has criteria that read the
    /// event's payload ([`CompiledHandler::criteria_read_payload`]).
    ///
    /// [`CompiledHandler::criteria_read_payload`]: crate::handler::CompiledHandler::criteria_read_payload
    pub fn criteria_read_payload(&self, event_name: &str) -> bool {
        if !self.criteria_read_payload {
            return false;
        }
        let mut read = false;
        self.for_each_candidate(event_name, |handler| {
            read |= handler.enabled && handler.compiled.criteria_read_payload();
        });
        read
    }

    /// The handlers that react to `event_name`, each once, enabled or not.
    pub fn candidates(&self, event_name: &str) -> Vec<Arc<IndexedHandler>> {
        let mut found = Vec::new();
        self.for_each_candidate(event_name, |handler| found.push(handler.clone()));
        found
    }

    /// Calls `visit` for each handler that reacts to `event_name`, each once, without
    /// copying the list (intake visits every candidate of every delivery).
    pub fn for_each_candidate(
        &self,
        event_name: &str,
        mut visit: impl FnMut(&Arc<IndexedHandler>),
    ) {
        let exact = self.exact.get(event_name).map_or(&[][..], Vec::as_slice);
        exact.iter().for_each(&mut visit);
        let family = event_name.split('.').next().unwrap_or(event_name);
        let mut from_globs: Vec<HandlerId> = Vec::new();
        let globs = self
            .by_family
            .get(family)
            .into_iter()
            .flatten()
            .chain(&self.anywhere)
            .filter(|(pattern, _)| pattern.matches(event_name));
        // A handler is in `exact` at most once (patterns are deduplicated when indexing), so
        // only handlers found through a wildcard can be repeats.
        for (_, handler) in globs {
            if !exact.iter().any(|h| h.id == handler.id) && !from_globs.contains(&handler.id) {
                from_globs.push(handler.id);
                visit(handler);
            }
        }
    }
}

/// The index of stored handlers, rebuilt when the store's handler revision changes.
///
/// The revision is checked at most once per `refresh_every`, so with several appservers a
/// handler change made on another one is seen within that interval; changes made through
/// this process's [`Engine`](super::Engine) are seen at once.
#[derive(Debug)]
pub(crate) struct HandlerCache {
    state: Mutex<CacheState>,
    refresh: tokio::sync::Mutex<()>,
    refresh_every: Duration,
}

#[derive(Debug)]
struct CacheState {
    index: Arc<HandlerIndex>,
    revision: Option<u64>,
    checked_at: Option<Instant>,
    compiled: HashMap<(HandlerId, i64), Arc<CompiledHandler>>,
}

impl HandlerCache {
    pub(crate) fn new(refresh_every: Duration) -> Self {
        Self {
            state: Mutex::new(CacheState {
                index: Arc::new(HandlerIndex::default()),
                revision: None,
                checked_at: None,
                compiled: HashMap::new(),
            }),
            refresh: tokio::sync::Mutex::new(()),
            refresh_every,
        }
    }

    /// Forces the next lookup to check the store.
    pub(crate) fn invalidate(&self) {
        self.state.lock().checked_at = None;
    }

    pub(crate) async fn index(
        &self,
        store: &dyn Store,
        registry: &ActionRegistry,
    ) -> Result<Arc<HandlerIndex>, StoreError> {
        {
            let state = self.state.lock();
            if state
                .checked_at
                .is_some_and(|at| at.elapsed() < self.refresh_every)
            {
                return Ok(state.index.clone());
            }
        }
        // One refresh at a time; others wait for it and reuse its result.
        let _guard = self.refresh.lock().await;
        {
            let state = self.state.lock();
            if state
                .checked_at
                .is_some_and(|at| at.elapsed() < self.refresh_every)
            {
                return Ok(state.index.clone());
            }
        }
        let revision = store.handlers_revision().await?;
        if self.state.lock().revision == Some(revision) {
            let mut state = self.state.lock();
            state.checked_at = Some(Instant::now());
            return Ok(state.index.clone());
        }
        let records = store.list_handlers().await?;
        let index = Arc::new(HandlerIndex::new(
            records
                .iter()
                .filter_map(|record| self.indexed(record, registry)),
        ));
        let mut state = self.state.lock();
        state.index = index.clone();
        state.revision = Some(revision);
        state.checked_at = Some(Instant::now());
        Ok(index)
    }

    fn indexed(
        &self,
        record: &HandlerRecord,
        registry: &ActionRegistry,
    ) -> Option<Arc<IndexedHandler>> {
        let compiled = self.compiled(record.id, record.version, &record.spec, registry)?;
        Some(Arc::new(IndexedHandler {
            id: record.id,
            version: record.version,
            enabled: record.enabled,
            name: Arc::from(record.name.as_str()),
            criteria: record.spec.criteria.as_deref().map(Arc::from),
            compiled,
        }))
    }

    /// A compiled handler, compiled once per (id, version).
    pub(crate) fn compiled(
        &self,
        id: HandlerId,
        version: i64,
        spec: &crate::handler::HandlerSpec,
        registry: &ActionRegistry,
    ) -> Option<Arc<CompiledHandler>> {
        if let Some(compiled) = self.state.lock().compiled.get(&(id, version)) {
            return Some(compiled.clone());
        }
        match compile_spec(spec, registry) {
            Ok(compiled) => {
                let compiled = Arc::new(compiled);
                let mut state = self.state.lock();
                state
                    .compiled
                    .retain(|(other, v), _| *other != id || *v >= version - 4);
                state.compiled.insert((id, version), compiled.clone());
                Some(compiled)
            }
            Err(errors) => {
                tracing::error!(handler = %spec.name, %errors, "stored handler no longer compiles (was an action removed?); it is skipped");
                None
            }
        }
    }

    pub(crate) fn insert_compiled(
        &self,
        id: HandlerId,
        version: i64,
        compiled: Arc<CompiledHandler>,
    ) {
        self.state.lock().compiled.insert((id, version), compiled);
    }
}
