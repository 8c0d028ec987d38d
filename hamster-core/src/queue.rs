//! The [`Queue`] contract: at-least-once delivery of jobs to workers, under leases.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Debug;
use std::time::Duration;

/// Identifies a job; assigned by the queue at enqueue time.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The default number of deliveries before a job is dead-lettered.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// A job to enqueue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// What the worker needs (for Hamster, the run id).
    pub payload: Value,
    /// Not delivered before this time.
    pub not_before: Option<DateTime<Utc>>,
    /// Deliveries allowed before the job is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Makes the job unique: while a job with this key is in the queue, enqueueing another
    /// adds nothing (see [`Queue`]'s contract). Hamster keys a run's job by the run id, so
    /// that a run stranded without a job can be enqueued again without ever having two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl NewJob {
    /// A job deliverable now, with [`DEFAULT_MAX_ATTEMPTS`].
    pub fn new(payload: Value) -> Self {
        Self {
            payload,
            not_before: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            key: None,
        }
    }

    /// Unique under `key`: see [`NewJob::key`].
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Not delivered before `at`.
    pub fn not_before(mut self, at: DateTime<Utc>) -> Self {
        self.not_before = Some(at);
        self
    }

    /// Dead-lettered after `attempts` deliveries.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
}

/// A job as delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// What was enqueued.
    pub payload: Value,
    /// 1 on first delivery, incremented by every redelivery (retry or expired lease).
    pub attempt: u32,
    /// Deliveries allowed.
    pub max_attempts: u32,
    /// When it was first enqueued.
    pub enqueued_at: DateTime<Utc>,
}

/// A job held by one consumer until the lease expires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The job.
    pub job: Job,
    /// Opaque proof of ownership, checked by ack/extend/retry/release.
    pub token: String,
    /// When the job becomes deliverable to others, unless extended.
    pub expires_at: DateTime<Utc>,
}

/// What [`Queue::retry`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Will be delivered again, not before `at`.
    Scheduled {
        /// Earliest redelivery.
        at: DateTime<Utc>,
    },
    /// Out of attempts: moved to the dead letters.
    DeadLettered,
}

/// A job that ran out of attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The job as last delivered.
    pub job: Job,
    /// Why it last failed.
    pub reason: String,
    /// When it was dead-lettered.
    pub failed_at: DateTime<Utc>,
}

/// How many jobs are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Deliverable now.
    pub ready: u64,
    /// Waiting for their `not_before` (including retries' backoff).
    pub delayed: u64,
    /// Held under a lease.
    pub leased: u64,
    /// Dead-lettered.
    pub dead: u64,
}

/// Why a queue operation failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum QueueError {
    /// The lease expired and the job may have been handed to another consumer; the caller
    /// no longer owns it and must not ack it.
    #[error("the lease on job {0} was lost (it expired and may have been delivered again)")]
    LeaseLost(JobId),
    /// No such job (for dead-letter operations).
    #[error("job {0} does not exist")]
    NotFound(JobId),
    /// The backend could not be reached or failed.
    #[error("queue backend error: {0}")]
    Backend(String),
    /// A stored job could not be decoded.
    #[error("queued data is corrupt: {0}")]
    Corrupt(String),
}

impl QueueError {
    /// A backend error from anything displayable.
    pub fn backend(error: impl std::fmt::Display) -> Self {
        Self::Backend(error.to_string())
    }
}

/// Jobs for workers, delivered at least once.
///
/// Contract (checked by `testing::queue_conformance`):
/// - [`enqueue`](Queue::enqueue) returns once the job is durable in the backend.
/// - A job with a [`key`](NewJob::key) is unique: while a job with the same key is in the
///   queue (ready, delayed, leased or dead-lettered), enqueueing returns that job's id and
///   changes nothing. [`ack`](Queue::ack) removes the job and frees its key.
/// - [`receive`](Queue::receive) waits up to `wait` for a deliverable job and leases it for
///   `lease_for`; while the lease holds, no other consumer receives the job. Jobs that are
///   deliverable are received in enqueue order (FIFO) by a single consumer; no order is
///   promised between delayed and retried jobs.
/// - A lease that expires without [`ack`](Queue::ack) makes the job deliverable again with
///   `attempt + 1`. A job whose attempts are used up when its lease expires is
///   dead-lettered instead (reason: "lease expired").
/// - [`extend`](Queue::extend), [`ack`](Queue::ack), [`retry`](Queue::retry) and
///   [`release`](Queue::release) fail with [`QueueError::LeaseLost`] when the lease expired
///   and the job was delivered again or removed; acking is then the new owner's business.
/// - [`retry`](Queue::retry) makes the job deliverable again after `delay` with
///   `attempt + 1`, or dead-letters it when `attempt >= max_attempts`.
/// - [`release`](Queue::release) gives a job back at once without counting an attempt: its
///   next delivery has the same `attempt` (graceful shutdown).
/// - Dead letters can be listed and re-queued; a re-queued job starts again at attempt 1.
#[async_trait]
pub trait Queue: Send + Sync + Debug {
    /// Adds a job.
    async fn enqueue(&self, job: NewJob) -> Result<JobId, QueueError>;
    /// Leases the next deliverable job, waiting up to `wait` for one.
    async fn receive(
        &self,
        lease_for: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>, QueueError>;
    /// Extends a lease to `lease_for` from now; returns the new expiry.
    async fn extend(&self, lease: &Lease, lease_for: Duration)
    -> Result<DateTime<Utc>, QueueError>;
    /// Removes a finished job.
    async fn ack(&self, lease: &Lease) -> Result<(), QueueError>;
    /// Redelivers a failed job after `delay`, or dead-letters it when out of attempts.
    async fn retry(
        &self,
        lease: &Lease,
        delay: Duration,
        reason: &str,
    ) -> Result<RetryOutcome, QueueError>;
    /// Gives a job back at once, without counting an attempt.
    async fn release(&self, lease: &Lease) -> Result<(), QueueError>;
    /// Dead-lettered jobs, oldest first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, QueueError>;
    /// Moves a dead-lettered job back to the queue, at attempt 1; `false` if no such job.
    async fn requeue_dead_letter(&self, id: &JobId) -> Result<bool, QueueError>;
    /// How many jobs are in each state.
    async fn stats(&self) -> Result<QueueStats, QueueError>;
}
