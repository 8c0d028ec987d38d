//! The [`Store`] contract: handlers, runs, step results and logs, webhook deliveries.

use crate::event::EventRecord;
use crate::handler::HandlerSpec;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Debug;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// Identifies a pipeline run.
    RunId
);
uuid_id!(
    /// Identifies a stored handler across its versions.
    HandlerId
);

/// A handler as stored: its validated spec and the text it was written in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandlerRecord {
    /// Stable across versions.
    pub id: HandlerId,
    /// Unique among stored handlers.
    pub name: String,
    /// Starts at 1, incremented by every update.
    pub version: i64,
    /// Disabled handlers are kept but never match.
    pub enabled: bool,
    /// The YAML or JSON the handler was written in, as given.
    pub source_text: String,
    /// The validated handler.
    pub spec: HandlerSpec,
    /// When the first version was stored.
    pub created_at: DateTime<Utc>,
    /// When this version was stored.
    pub updated_at: DateTime<Utc>,
}

/// The state of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created and enqueued; no worker has started it.
    Queued,
    /// A worker is executing it.
    Running,
    /// Every step succeeded (or failed with `continue_on_failure`).
    Succeeded,
    /// A step failed.
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl RunStatus {
    /// Whether the run is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The word used in APIs and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Every status.
    pub const ALL: [RunStatus; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                format!("unknown run status `{s}`; expected one of queued, running, succeeded, failed, cancelled")
            })
    }
}

/// One execution of a handler's pipeline for one event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub id: RunId,
    /// The handler that matched.
    pub handler_id: HandlerId,
    /// The handler's name when the run was created.
    pub handler_name: String,
    /// The handler's version when the run was created.
    pub handler_version: i64,
    /// The handler as it was when the run was created: editing a handler never changes a
    /// run already created.
    pub handler: HandlerSpec,
    /// The event, as a snapshot.
    pub event: EventRecord,
    /// `owner/name` of the event's repository, for filtering.
    pub repository: String,
    /// The delivery the run came from, if any.
    pub delivery_id: Option<String>,
    /// Current state.
    pub status: RunStatus,
    /// When the run was created.
    pub created_at: DateTime<Utc>,
    /// When a worker first started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed or was cancelled, when it did.
    pub error: Option<String>,
}

/// The state of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Started and not finished (or its worker died).
    Running,
    /// Succeeded.
    Success,
    /// Failed (non-zero exit, error, template error…).
    Failure,
    /// Did not finish within its timeout.
    TimedOut,
    /// Stopped because the run was cancelled.
    Cancelled,
}

impl StepStatus {
    /// Whether the step is over.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Running)
    }

    /// Whether it counts as a success for the pipeline.
    pub fn is_success(self) -> bool {
        matches!(self, Self::Success)
    }

    /// The word used in APIs, storage and templates (`linter.status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The result of one step of a run, recorded before the next step starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Position in the pipeline: `0`, `1`, `0.on_failure.0`… Unique within a run and
    /// ordered as the steps run when compared as produced by the engine.
    pub key: String,
    /// The step's name (as seen by templates).
    pub name: String,
    /// The action it ran.
    pub action: String,
    /// Its state.
    pub status: StepStatus,
    /// 1 for the first execution; a step re-run after a worker died has 2, and so on.
    pub attempt: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The action's data (`output`, `exit_code`…), redacted.
    pub data: serde_json::Map<String, Value>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// A webhook delivery as received, kept so that it can be listed and re-processed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The forge's delivery id (`X-GitHub-Delivery`); unique.
    pub id: String,
    /// The forge's event header (`X-GitHub-Event`), e.g. `pull_request`.
    pub event: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// The request headers that matter for re-processing (event, delivery, signature).
    pub headers: BTreeMap<String, String>,
    /// The raw body, exactly as received.
    pub body: Vec<u8>,
    /// The runs it created.
    pub run_ids: Vec<RunId>,
    /// Whether the body, parsed as JSON, is the `payload` in the data of the events this
    /// delivery's runs were created for (true of GitHub's JSON deliveries). A store may then
    /// keep that payload once, with the delivery, instead of once more in every run: it is
    /// most of what intake writes (see [`Store`]'s contract). The events may also arrive
    /// with the payload already left out (intake leaves it unparsed when no criteria read
    /// it); the store puts it back all the same.
    #[serde(default)]
    pub body_is_payload: bool,
}

impl DeliveryRecord {
    /// Whether `run`'s payload is this delivery's body, so that a store keeps it only once,
    /// here: the delivery says its body is the payload, and `run` came from it. The run's
    /// event may carry the payload or have it left out; either way it reads back with it.
    pub fn holds_payload_of(&self, run: &RunRecord) -> bool {
        self.body_is_payload && run.delivery_id.as_deref() == Some(self.id.as_str())
    }

    /// Whether `event`, from this delivery, still lacks the payload that is this delivery's
    /// body (see [`body_is_payload`](Self::body_is_payload)).
    pub fn left_out_payload_of(&self, event: &EventRecord) -> bool {
        self.body_is_payload
            && event.delivery_id.as_deref() == Some(self.id.as_str())
            && !event.has_payload()
    }
}

/// What [`Store::record_delivery`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The delivery and its runs were stored.
    Recorded,
    /// A delivery with this id was stored before; nothing was written. The runs it created
    /// are returned.
    Duplicate(Vec<RunId>),
}

/// Which runs to list. Every field narrows the result; `None` does not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFilter {
    /// `owner/name`.
    pub repository: Option<String>,
    /// Handler name.
    pub handler: Option<String>,
    /// Status.
    pub status: Option<RunStatus>,
    /// Only runs created strictly before this run (for paging, newest first).
    pub before: Option<RunId>,
    /// Only runs created strictly before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    /// At most this many (the store may cap it); `None` means the store's default of 100.
    pub limit: Option<u32>,
}

/// A chunk of a step's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// Text from the requested offset.
    pub text: String,
    /// Offset (in bytes) to ask for next.
    pub next_offset: u64,
}

impl LogChunk {
    /// The most text one [`Store::read_log`] returns in the built-in stores, so that
    /// following a long log never holds all of it at once.
    pub const MAX_BYTES: usize = 1024 * 1024;

    /// What a read from byte `offset` returns, cut from `bytes`: the log from byte
    /// `bytes_start` on (at most `offset`; it may go on past what one chunk holds).
    ///
    /// The text starts at the first character boundary at or after `offset`, since a
    /// reader may ask for any byte offset, and is at most [`MAX_BYTES`](Self::MAX_BYTES),
    /// ending at a character boundary. `next_offset` is where it ends: the end of `bytes`
    /// when they are all read. Fails only when those bytes are not UTF-8 (a corrupt log).
    pub fn cut(bytes: &[u8], bytes_start: u64, offset: u64) -> Result<Self, std::str::Utf8Error> {
        let is_continuation = |byte: u8| byte & 0b1100_0000 == 0b1000_0000;
        let skip = usize::try_from(offset.saturating_sub(bytes_start))
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let after_offset = bytes.get(skip..).unwrap_or_default();
        let partial = after_offset
            .iter()
            .take_while(|byte| is_continuation(**byte))
            .count();
        let rest = after_offset.get(partial..).unwrap_or_default();
        let mut end = rest.len().min(Self::MAX_BYTES);
        // `rest` starts on a character, so this stops at 0 at the latest.
        while rest.get(end).is_some_and(|byte| is_continuation(*byte)) {
            end -= 1;
        }
        let text = std::str::from_utf8(rest.get(..end).unwrap_or_default())?;
        Ok(Self {
            text: text.to_owned(),
            next_offset: bytes_start + (skip + partial + end) as u64,
        })
    }
}

/// Why a store operation failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// A handler with this name exists already (from [`Store::create_handler`]).
    #[error("a handler named `{0}` exists already; update it instead, or choose another name")]
    HandlerExists(String),
    /// The thing asked for does not exist.
    #[error("{what} `{id}` does not exist")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// An optimistic update lost a race.
    #[error(
        "{what} `{id}` was changed concurrently (expected version {expected}); reload it and try again"
    )]
    Conflict {
        /// What kind of thing.
        what: &'static str,
        /// Its id.
        id: String,
        /// The version the caller expected.
        expected: i64,
    },
    /// The backend could not be reached or failed.
    #[error("store backend error: {0}")]
    Backend(String),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// A backend error from anything displayable.
    pub fn backend(error: impl std::fmt::Display) -> Self {
        Self::Backend(error.to_string())
    }
}

/// Durable state: handlers, runs, step results and logs, webhook deliveries.
///
/// Contract (checked by `testing::store_conformance`):
/// - Handlers: names are unique. [`create_handler`](Store::create_handler) fails with
///   [`StoreError::HandlerExists`] on a taken name; [`update_handler`](Store::update_handler)
///   replaces the spec and text and increments the version, failing with
///   [`StoreError::Conflict`] when `expected_version` is given and differs.
///   [`handlers_revision`](Store::handlers_revision) changes whenever any handler is created,
///   updated, enabled/disabled or deleted, so that matchers can cache compiled handlers.
///   The store never validates handlers: the engine does, before it stores them.
/// - Deliveries: [`record_delivery`](Store::record_delivery) is atomic and idempotent on the
///   delivery id: the first call stores the delivery and its runs together; any later call
///   with the same id writes nothing and returns the first call's run ids. When the delivery
///   says [`body_is_payload`](DeliveryRecord::body_is_payload), the store may leave
///   `data.payload` out of the runs it stores for that delivery
///   ([`EventRecord::to_json_without_payload`]), and it must put the body back when it
///   reads them ([`EventRecord::restore_payload`]), also into runs whose event came with
///   the payload left out: runs always read back whole.
/// - Runs: [`transition_run`](Store::transition_run) is a compare-and-set on status; it sets
///   `started_at` the first time a run becomes `running` and `finished_at` when it becomes
///   terminal. Runs list newest first.
/// - Steps: [`record_step`](Store::record_step) upserts by `(run, key)`;
///   [`list_steps`](Store::list_steps) returns them in the order they were first recorded.
/// - Logs: [`append_log`](Store::append_log) appends; [`read_log`](Store::read_log) returns
///   the text from a byte offset and the offset to continue from.
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// Stores a new handler (version 1).
    async fn create_handler(
        &self,
        spec: HandlerSpec,
        source_text: String,
    ) -> Result<HandlerRecord, StoreError>;
    /// Replaces a handler's spec and text, incrementing its version.
    async fn update_handler(
        &self,
        id: HandlerId,
        spec: HandlerSpec,
        source_text: String,
        expected_version: Option<i64>,
    ) -> Result<HandlerRecord, StoreError>;
    /// Enables or disables a handler.
    async fn set_handler_enabled(
        &self,
        id: HandlerId,
        enabled: bool,
    ) -> Result<HandlerRecord, StoreError>;
    /// Deletes a handler; `false` if it did not exist. Its runs are kept.
    async fn delete_handler(&self, id: HandlerId) -> Result<bool, StoreError>;
    /// One handler by id.
    async fn get_handler(&self, id: HandlerId) -> Result<Option<HandlerRecord>, StoreError>;
    /// One handler by name.
    async fn get_handler_by_name(&self, name: &str) -> Result<Option<HandlerRecord>, StoreError>;
    /// Every handler, by name.
    async fn list_handlers(&self) -> Result<Vec<HandlerRecord>, StoreError>;
    /// A value that changes whenever the set of handlers changes.
    async fn handlers_revision(&self) -> Result<u64, StoreError>;

    /// Stores a delivery and the runs it created, atomically; idempotent on the delivery id.
    async fn record_delivery(
        &self,
        delivery: DeliveryRecord,
        runs: Vec<RunRecord>,
    ) -> Result<DeliveryOutcome, StoreError>;
    /// One delivery.
    async fn get_delivery(&self, id: &str) -> Result<Option<DeliveryRecord>, StoreError>;
    /// Deliveries, newest first.
    async fn list_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Adds runs to a stored delivery (when it is re-processed).
    async fn add_delivery_runs(
        &self,
        delivery_id: &str,
        runs: Vec<RunRecord>,
    ) -> Result<(), StoreError>;

    /// Stores runs that did not come from a delivery (replays, re-runs).
    async fn create_runs(&self, runs: Vec<RunRecord>) -> Result<(), StoreError>;
    /// One run.
    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError>;
    /// Runs matching `filter`, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError>;
    /// Moves a run to `to` if its status is one of `from`; returns the updated run, or
    /// `None` when its status was not in `from`.
    async fn transition_run(
        &self,
        id: RunId,
        from: &[RunStatus],
        to: RunStatus,
        error: Option<String>,
    ) -> Result<Option<RunRecord>, StoreError>;
    /// How many runs have each status.
    async fn count_runs_by_status(&self) -> Result<BTreeMap<RunStatus, u64>, StoreError>;

    /// Inserts or replaces a step result, by `(run_id, step.key)`.
    async fn record_step(&self, run_id: RunId, step: StepRecord) -> Result<(), StoreError>;
    /// A run's steps, in the order they were first recorded.
    async fn list_steps(&self, run_id: RunId) -> Result<Vec<StepRecord>, StoreError>;
    /// Appends to a step's log.
    async fn append_log(&self, run_id: RunId, step_key: &str, text: &str)
    -> Result<(), StoreError>;
    /// A step's log from byte `offset`, from the first character boundary at or after it,
    /// possibly in several chunks: the caller reads on from `next_offset` until a chunk is
    /// empty. [`LogChunk::cut`] makes such a chunk of at most [`LogChunk::MAX_BYTES`] from
    /// the bytes a store holds.
    async fn read_log(
        &self,
        run_id: RunId,
        step_key: &str,
        offset: u64,
    ) -> Result<LogChunk, StoreError>;

    /// Whether the backend is reachable (for readiness checks).
    async fn ping(&self) -> Result<(), StoreError>;
}

impl PartialOrd for RunStatus {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RunStatus {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".
mod tests {
    use super::*;

    fn cut(log: &str, offset: u64) -> LogChunk {
        LogChunk::cut(log.as_bytes(), 0, offset).expect("the log is UTF-8")
    }

    fn chunk(text: &str, next_offset: u64) -> LogChunk {
        LogChunk {
            text: text.to_owned(),
            next_offset,
        }
    }

    #[test]
    fn an_offset_inside_a_character_reads_from_the_next_one() {
        let log = "aé🐹b"; // a=0, é=1..3, 🐹=3..7, b=7
        assert_eq!(cut(log, 0), chunk(log, 8));
        assert_eq!(cut(log, 2), chunk("🐹b", 8));
        for offset in 4..=7 {
            assert_eq!(cut(log, offset), chunk("b", 8), "from {offset}");
        }
        assert_eq!(cut(log, 8), chunk("", 8));
        // Past the end: nothing, and the length to resume from.
        assert_eq!(cut(log, u64::MAX), chunk("", 8));
    }

    #[test]
    fn bytes_that_start_later_in_the_log_keep_its_offsets() {
        let tail = "é🐹b"; // bytes 1.. of "aé🐹b"
        let from = |offset| LogChunk::cut(tail.as_bytes(), 1, offset).unwrap();
        assert_eq!(from(1), chunk("é🐹b", 8));
        assert_eq!(
            from(0),
            chunk("é🐹b", 8),
            "an offset before the bytes reads them all"
        );
        assert_eq!(from(2), chunk("🐹b", 8));
        assert_eq!(from(7), chunk("b", 8));
    }

    #[test]
    fn a_chunk_is_capped_at_a_character_boundary() {
        // 3-byte characters: the cap (a power of two) falls inside one.
        let log = "✓".repeat(LogChunk::MAX_BYTES / 3 + 10);
        let first = cut(&log, 0);
        assert!(first.text.len() <= LogChunk::MAX_BYTES);
        assert!(first.text.len() > LogChunk::MAX_BYTES - 3);
        assert_eq!(first.next_offset, first.text.len() as u64);
        let rest = cut(&log, first.next_offset);
        assert_eq!(rest.next_offset, log.len() as u64);
        assert_eq!(first.text + &rest.text, log);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_an_error() {
        assert!(LogChunk::cut(b"ok \xff", 0, 0).is_err());
        assert!(
            LogChunk::cut(b"ok \xff", 0, 3).is_err(),
            "0xff is no continuation byte, so it is not skipped"
        );
        assert_eq!(
            LogChunk::cut(b"\x80\x80ok", 0, 0).unwrap(),
            chunk("ok", 4),
            "leading continuation bytes are skipped"
        );
    }
}
