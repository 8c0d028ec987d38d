//! The queue conformance suite must fail on broken queues: each case wraps
//! [`MemoryQueue`] with one bug and expects the suite to panic naming a check that
//! covers it. Run with `cargo test -p hamster-core --features testing`.
#![cfg(feature = "testing")]

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use hamster_core::memory::MemoryQueue;
use hamster_core::queue::{
    DeadLetter, JobId, Lease, NewJob, Queue, QueueError, QueueStats, RetryOutcome,
};
use hamster_core::testing::queue_conformance;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    AckKeepsTheJob,
    AckTwiceSucceeds,
    ReleaseCountsAnAttempt,
    ReceiveDoesNotWait,
    RequeueDoesNothing,
    StatsForgetTheDead,
    NotBeforeIgnored,
    EnqueueIgnoresKeys,
}

#[derive(Debug)]
struct BuggyQueue {
    inner: MemoryQueue,
    bug: Bug,
}

#[async_trait]
impl Queue for BuggyQueue {
    async fn enqueue(&self, mut job: NewJob) -> Result<JobId, QueueError> {
        match self.bug {
            Bug::NotBeforeIgnored => job.not_before = None,
            Bug::EnqueueIgnoresKeys => job.key = None,
            _ => {}
        }
        self.inner.enqueue(job).await
    }

    async fn receive(
        &self,
        lease_for: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>, QueueError> {
        let wait = if self.bug == Bug::ReceiveDoesNotWait {
            Duration::ZERO
        } else {
            wait
        };
        self.inner.receive(lease_for, wait).await
    }

    async fn extend(
        &self,
        lease: &Lease,
        lease_for: Duration,
    ) -> Result<DateTime<Utc>, QueueError> {
        self.inner.extend(lease, lease_for).await
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        match self.bug {
            Bug::AckKeepsTheJob => Ok(()),
            Bug::AckTwiceSucceeds => {
                let _ = self.inner.ack(lease).await;
                Ok(())
            }
            _ => self.inner.ack(lease).await,
        }
    }

    async fn retry(
        &self,
        lease: &Lease,
        delay: Duration,
        reason: &str,
    ) -> Result<RetryOutcome, QueueError> {
        self.inner.retry(lease, delay, reason).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), QueueError> {
        if self.bug == Bug::ReleaseCountsAnAttempt {
            return self
                .inner
                .retry(lease, Duration::ZERO, "released")
                .await
                .map(|_| ());
        }
        self.inner.release(lease).await
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, QueueError> {
        self.inner.dead_letters(limit).await
    }

    async fn requeue_dead_letter(&self, id: &JobId) -> Result<bool, QueueError> {
        if self.bug == Bug::RequeueDoesNothing {
            return Ok(false);
        }
        self.inner.requeue_dead_letter(id).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut stats = self.inner.stats().await?;
        if self.bug == Bug::StatsForgetTheDead {
            stats.dead = 0;
        }
        Ok(stats)
    }
}

/// Runs the suite on queues with `bug` and returns its panic message.
async fn failure_for(bug: Bug) -> String {
    let run = queue_conformance(move || async move {
        BuggyQueue {
            inner: MemoryQueue::new(),
            bug,
        }
    });
    let Err(panic) = AssertUnwindSafe(run).catch_unwind().await else {
        panic!("the conformance suite passed a queue with bug {bug:?}");
    };
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

async fn assert_caught(bug: Bug, checks: &[&str]) {
    let message = failure_for(bug).await;
    assert!(
        checks
            .iter()
            .any(|check| message.starts_with(&format!("queue conformance: {check}: "))),
        "bug {bug:?}: expected a failure of one of {checks:?}, got: {message}"
    );
}

#[tokio::test]
async fn catches_an_ack_that_keeps_the_job() {
    assert_caught(
        Bug::AckKeepsTheJob,
        &[
            "payload round-trip",
            "FIFO for a single consumer",
            "receive wakes on enqueue",
            "a leased job is not received by another consumer",
            "an expired lease redelivers",
            "extend keeps the lease",
            "release keeps the attempt",
            "stats count every state",
            "acking twice",
            "concurrent consumers",
            "retry out of attempts dead-letters",
            "not_before delays delivery",
            "retry with a delay",
        ],
    )
    .await;
}

#[tokio::test]
async fn catches_a_second_ack_that_succeeds() {
    assert_caught(
        Bug::AckTwiceSucceeds,
        &[
            "acking twice",
            "an expired lease redelivers",
            "a lease expiring on the last attempt dead-letters",
            "retry with a delay",
            "release keeps the attempt",
        ],
    )
    .await;
}

#[tokio::test]
async fn catches_a_release_that_counts_an_attempt() {
    assert_caught(Bug::ReleaseCountsAnAttempt, &["release keeps the attempt"]).await;
}

#[tokio::test]
async fn catches_a_receive_that_does_not_wait() {
    assert_caught(
        Bug::ReceiveDoesNotWait,
        &[
            "receive on an empty queue waits",
            "receive wakes on enqueue",
            "an expired lease redelivers",
            "retry with a delay",
            "not_before delays delivery",
            "a leased job is not received by another consumer",
            "extend keeps the lease",
            "concurrent consumers",
        ],
    )
    .await;
}

#[tokio::test]
async fn catches_a_requeue_that_does_nothing() {
    assert_caught(
        Bug::RequeueDoesNothing,
        &[
            "retry out of attempts dead-letters",
            "a key makes a job unique until it is acked",
        ],
    )
    .await;
}

#[tokio::test]
async fn catches_stats_that_forget_the_dead() {
    assert_caught(
        Bug::StatsForgetTheDead,
        &[
            "retry out of attempts dead-letters",
            "a lease expiring on the last attempt dead-letters",
            "stats count every state",
        ],
    )
    .await;
}

#[tokio::test]
async fn catches_an_ignored_not_before() {
    assert_caught(
        Bug::NotBeforeIgnored,
        &["not_before delays delivery", "stats count every state"],
    )
    .await;
}

#[tokio::test]
async fn catches_an_enqueue_that_ignores_keys() {
    assert_caught(
        Bug::EnqueueIgnoresKeys,
        &["a key makes a job unique until it is acked"],
    )
    .await;
}
