//! The queue conformance suite: checks a [`Queue`] backend against the contract documented
//! on the trait.

use crate::queue::{
    DEFAULT_MAX_ATTEMPTS, Job, JobId, Lease, NewJob, Queue, QueueError, QueueStats, RetryOutcome,
};
use chrono::{DateTime, TimeDelta, Utc};
use futures::future::LocalBoxFuture;
use serde_json::json;
use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// A lease no check outlives.
const LONG_LEASE: Duration = Duration::from_secs(60);
/// A lease a check lets expire.
const SHORT_LEASE: Duration = Duration::from_millis(500);
/// How long to wait when a job is expected (receive returns as soon as it has one).
const LONG_WAIT: Duration = Duration::from_secs(5);
/// How long to wait when no job is expected.
const SHORT_WAIT: Duration = Duration::from_millis(300);
/// Slack for backends with millisecond (or coarser) clocks, for "not before" bounds.
const GRANULARITY: Duration = Duration::from_millis(100);
/// The latest a waiting receiver may see a job after it became deliverable.
const PROMPTLY: Duration = Duration::from_secs(2);
/// Slack between the backend's clock and ours for reported timestamps.
const CLOCK_SKEW: TimeDelta = TimeDelta::seconds(5);

type CheckFn<Q> = fn(Check, Arc<Q>) -> LocalBoxFuture<'static, ()>;

/// Runs every queue conformance check against queues made by `new_queue`, panicking with
/// `queue conformance: <check>: <what was expected, what happened>` on the first failure.
///
/// Each check gets its own queue from `new_queue()`, which must be empty and isolated from
/// every other queue it returns (for example under a unique key prefix or schema): the
/// checks run concurrently. Must run inside a tokio runtime; takes a few seconds, since
/// leases and delays have to expire for real.
///
/// ```no_run
/// # async fn example() {
/// use hamster_core::memory::MemoryQueue;
/// use hamster_core::testing::queue_conformance;
///
/// queue_conformance(|| async { MemoryQueue::new() }).await;
/// # }
/// ```
pub async fn queue_conformance<Q, F, Fut>(new_queue: F)
where
    Q: Queue + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Q>,
{
    let checks: [(&'static str, CheckFn<Q>); 16] = [
        ("payload round-trip", |c, q| {
            Box::pin(payload_round_trip(c, q))
        }),
        ("FIFO for a single consumer", |c, q| Box::pin(fifo(c, q))),
        ("receive on an empty queue waits", |c, q| {
            Box::pin(empty_receive_waits(c, q))
        }),
        ("receive wakes on enqueue", |c, q| {
            Box::pin(receive_wakes_on_enqueue(c, q))
        }),
        (
            "a leased job is not received by another consumer",
            |c, q| Box::pin(leased_job_is_exclusive(c, q)),
        ),
        ("an expired lease redelivers", |c, q| {
            Box::pin(expired_lease_redelivers(c, q))
        }),
        ("extend keeps the lease", |c, q| {
            Box::pin(extend_keeps_the_lease(c, q))
        }),
        ("retry with a delay", |c, q| {
            Box::pin(retry_with_delay(c, q))
        }),
        ("retry out of attempts dead-letters", |c, q| {
            Box::pin(retry_out_of_attempts_dead_letters(c, q))
        }),
        (
            "a lease expiring on the last attempt dead-letters",
            |c, q| Box::pin(last_lease_expiry_dead_letters(c, q)),
        ),
        ("release keeps the attempt", |c, q| {
            Box::pin(release_keeps_the_attempt(c, q))
        }),
        ("not_before delays delivery", |c, q| {
            Box::pin(not_before_delays_delivery(c, q))
        }),
        ("stats count every state", |c, q| {
            Box::pin(stats_count_every_state(c, q))
        }),
        ("acking twice", |c, q| Box::pin(acking_twice(c, q))),
        ("a key makes a job unique until it is acked", |c, q| {
            Box::pin(keyed_jobs_are_unique(c, q))
        }),
        ("concurrent consumers", |c, q| {
            Box::pin(concurrent_consumers(c, q))
        }),
    ];
    let new_queue = &new_queue;
    let runs = checks.into_iter().map(|(name, check)| async move {
        let queue = Arc::new(new_queue().await);
        eprintln!("queue conformance: {name} ...");
        let started = Instant::now();
        check(Check { name }, queue).await;
        eprintln!(
            "queue conformance: {name}: ok ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    });
    futures::future::join_all(runs).await;
}

/// One running check: names it in failures, and turns surprises into them.
#[derive(Clone, Copy, Debug)]
struct Check {
    name: &'static str,
}

impl Check {
    fn fail(self, what: impl Display) -> ! {
        panic!("queue conformance: {}: {what}", self.name)
    }

    fn ensure(self, condition: bool, what: impl FnOnce() -> String) {
        if !condition {
            self.fail(what());
        }
    }

    fn ok<T>(self, result: Result<T, QueueError>, operation: &str) -> T {
        result.unwrap_or_else(|error| {
            self.fail(format_args!(
                "expected {operation} to succeed, it failed: {error}"
            ))
        })
    }

    /// Expects `operation` with a stale lease on job `id` to fail with `LeaseLost`.
    fn lease_lost<T>(self, result: Result<T, QueueError>, operation: &str, id: &JobId) {
        match result {
            Err(QueueError::LeaseLost(lost)) if lost == *id => {}
            Err(QueueError::LeaseLost(lost)) => self.fail(format_args!(
                "{operation}: expected LeaseLost naming job {id}, it named job {lost}"
            )),
            Err(error) => self.fail(format_args!(
                "{operation}: expected LeaseLost for job {id}, got another error: {error}"
            )),
            Ok(_) => self.fail(format_args!(
                "{operation}: expected LeaseLost for job {id}, it succeeded"
            )),
        }
    }

    async fn stats(self, queue: &impl Queue, expected: QueueStats, when: &str) {
        let stats = self.ok(queue.stats().await, "stats");
        self.ensure(stats == expected, || {
            format!("{when}: expected stats {expected:?}, got {stats:?}")
        });
    }

    async fn enqueue(self, queue: &impl Queue, job: NewJob) -> JobId {
        self.ok(queue.enqueue(job).await, "enqueue")
    }

    /// Receives a job, failing if none arrives within `wait`.
    async fn receive(
        self,
        queue: &impl Queue,
        lease_for: Duration,
        wait: Duration,
        what: &str,
    ) -> Lease {
        match self.ok(queue.receive(lease_for, wait).await, "receive") {
            Some(lease) => lease,
            None => self.fail(format_args!(
                "expected to receive {what} within {wait:?}, received nothing"
            )),
        }
    }

    /// Receives job `id` at `attempt`, failing on anything else.
    async fn receive_job(
        self,
        queue: &impl Queue,
        lease_for: Duration,
        wait: Duration,
        (id, attempt): (&JobId, u32),
    ) -> Lease {
        let what = format!("job {id} at attempt {attempt}");
        let lease = self.receive(queue, lease_for, wait, &what).await;
        let job = &lease.job;
        self.ensure(job.id == *id && job.attempt == attempt, || {
            format!("expected {what}, received {}", describe(job))
        });
        lease
    }

    /// Expects `receive` to wait `wait` and return nothing.
    async fn receive_nothing(self, queue: &impl Queue, wait: Duration, why: &str) {
        if let Some(lease) = self.ok(queue.receive(LONG_LEASE, wait).await, "receive") {
            self.fail(format_args!(
                "expected nothing to receive ({why}), received {}",
                describe(&lease.job)
            ));
        }
    }
}

fn describe(job: &Job) -> String {
    format!(
        "job {} at attempt {}/{} with payload {}",
        job.id, job.attempt, job.max_attempts, job.payload
    )
}

fn empty() -> QueueStats {
    QueueStats::default()
}

fn utc_after(duration: Duration) -> DateTime<Utc> {
    Utc::now() + TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

async fn payload_round_trip<Q: Queue>(c: Check, queue: Arc<Q>) {
    c.stats(&*queue, empty(), "a fresh queue").await;
    let payload = json!({
        "run": "01890a5d-ac96-774b-bcce-b302099a8057",
        "nested": { "list": [1, -2, 1.5, true, null, "x"], "empty": {} },
        "text": "quotes \" and \\ backslashes,\nnewlines, unicode: h\u{e4}mster \u{1f439}",
        "big": 9_007_199_254_740_993_i64,
    });
    let enqueued_after = Utc::now() - CLOCK_SKEW;
    let id = c
        .enqueue(&*queue, NewJob::new(payload.clone()).max_attempts(3))
        .await;
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&id, 1))
        .await;
    let job = &lease.job;
    c.ensure(job.payload == payload, || {
        format!(
            "expected the payload back unchanged: {payload}, got {}",
            job.payload
        )
    });
    c.ensure(job.max_attempts == 3, || {
        format!(
            "expected max_attempts 3 as enqueued, got {}",
            job.max_attempts
        )
    });
    c.ensure(
        job.enqueued_at >= enqueued_after && job.enqueued_at <= Utc::now() + CLOCK_SKEW,
        || format!("expected enqueued_at about now, got {}", job.enqueued_at),
    );
    c.ensure(lease.expires_at > Utc::now(), || {
        format!(
            "a fresh {LONG_LEASE:?} lease reports expires_at {} in the past",
            lease.expires_at
        )
    });
    let leased = QueueStats {
        leased: 1,
        ..empty()
    };
    c.stats(&*queue, leased, "while the job is leased").await;
    c.ok(queue.ack(&lease).await, "ack");
    c.stats(&*queue, empty(), "after the only job was acked")
        .await;
    c.receive_nothing(&*queue, SHORT_WAIT, "the only job was acked")
        .await;

    let default_id = c.enqueue(&*queue, NewJob::new(json!("default"))).await;
    c.ensure(default_id != id, || {
        format!("two jobs got the same id {id}")
    });
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&default_id, 1))
        .await;
    c.ensure(lease.job.max_attempts == DEFAULT_MAX_ATTEMPTS, || {
        format!(
            "expected NewJob::new to get the default max_attempts {DEFAULT_MAX_ATTEMPTS}, got {}",
            lease.job.max_attempts
        )
    });
    c.ok(queue.ack(&lease).await, "ack");
}

async fn fifo<Q: Queue>(c: Check, queue: Arc<Q>) {
    const JOBS: u64 = 20;
    let mut ids = Vec::new();
    for sequence in 0..JOBS {
        ids.push(
            c.enqueue(&*queue, NewJob::new(json!({ "sequence": sequence })))
                .await,
        );
    }
    let distinct: HashSet<&JobId> = ids.iter().collect();
    c.ensure(distinct.len() == ids.len(), || {
        format!("expected {JOBS} distinct job ids, got {}", distinct.len())
    });
    let mut leases = Vec::new();
    for (sequence, id) in ids.iter().enumerate() {
        let lease = c
            .receive(&*queue, LONG_LEASE, LONG_WAIT, "the next job")
            .await;
        c.ensure(lease.job.id == *id, || {
            format!(
                "expected jobs in enqueue order: delivery {sequence} should be job {id}, \
                 got {}",
                describe(&lease.job)
            )
        });
        leases.push(lease);
    }
    for lease in &leases {
        c.ok(queue.ack(lease).await, "ack");
    }
    c.stats(&*queue, empty(), "after every job was acked").await;
}

async fn empty_receive_waits<Q: Queue>(c: Check, queue: Arc<Q>) {
    let wait = Duration::from_millis(600);
    let started = Instant::now();
    c.receive_nothing(&*queue, wait, "the queue is empty").await;
    let waited = started.elapsed();
    c.ensure(waited + GRANULARITY >= wait, || {
        format!("expected receive on an empty queue to wait about {wait:?}, it returned after {waited:?}")
    });
    c.ensure(waited <= wait + PROMPTLY, || {
        format!(
            "expected receive on an empty queue to give up after about {wait:?}, it took {waited:?}"
        )
    });
}

async fn receive_wakes_on_enqueue<Q: Queue + 'static>(c: Check, queue: Arc<Q>) {
    let wait = Duration::from_secs(10);
    let receiver = tokio::spawn({
        let queue = Arc::clone(&queue);
        async move { queue.receive(LONG_LEASE, wait).await }
    });
    // Let the receiver start waiting before the job arrives.
    tokio::time::sleep(SHORT_WAIT).await;
    let enqueued = Instant::now();
    let id = c.enqueue(&*queue, NewJob::new(json!("wake up"))).await;
    let received = match receiver.await {
        Ok(result) => c.ok(result, "receive"),
        Err(error) => c.fail(format_args!("the receiving task failed: {error}")),
    };
    let latency = enqueued.elapsed();
    let Some(lease) = received else {
        c.fail(format_args!(
            "expected a waiting receive to get the job enqueued meanwhile, it returned nothing"
        ));
    };
    c.ensure(lease.job.id == id, || {
        format!("expected job {id}, received {}", describe(&lease.job))
    });
    c.ensure(latency <= PROMPTLY, || {
        format!(
            "expected a waiting receive to return promptly once a job was enqueued, \
             it took {latency:?} (it waits up to {wait:?})"
        )
    });
    c.ok(queue.ack(&lease).await, "ack");
}

async fn leased_job_is_exclusive<Q: Queue + 'static>(c: Check, queue: Arc<Q>) {
    let first = c.enqueue(&*queue, NewJob::new(json!("first"))).await;
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&first, 1))
        .await;
    let other_consumer = tokio::spawn({
        let queue = Arc::clone(&queue);
        async move { queue.receive(LONG_LEASE, Duration::from_millis(600)).await }
    });
    match other_consumer.await {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(stolen))) => c.fail(format_args!(
            "expected another consumer to receive nothing while the only job is leased, \
             it received {}",
            describe(&stolen.job)
        )),
        Ok(Err(error)) => c.fail(format_args!(
            "expected receive to succeed, it failed: {error}"
        )),
        Err(error) => c.fail(format_args!("the other consumer's task failed: {error}")),
    }
    let second = c.enqueue(&*queue, NewJob::new(json!("second"))).await;
    let other = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&second, 1))
        .await;
    c.ok(queue.ack(&other).await, "ack");
    c.ok(queue.ack(&lease).await, "ack");
    c.stats(&*queue, empty(), "after both jobs were acked")
        .await;
}

async fn expired_lease_redelivers<Q: Queue>(c: Check, queue: Arc<Q>) {
    let id = c
        .enqueue(&*queue, NewJob::new(json!("abandoned")).max_attempts(3))
        .await;
    let leased_at = Instant::now();
    let stale = c
        .receive_job(&*queue, SHORT_LEASE, LONG_WAIT, (&id, 1))
        .await;
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&id, 2))
        .await;
    let redelivered_after = leased_at.elapsed();
    c.ensure(redelivered_after + GRANULARITY >= SHORT_LEASE, || {
        format!("a {SHORT_LEASE:?} lease was redelivered after only {redelivered_after:?}")
    });
    c.ensure(redelivered_after <= SHORT_LEASE + PROMPTLY, || {
        format!(
            "expected a waiting receive to get the job promptly once its {SHORT_LEASE:?} lease \
             expired, it took {redelivered_after:?}"
        )
    });
    c.lease_lost(queue.ack(&stale).await, "ack with an expired lease", &id);
    c.lease_lost(
        queue.extend(&stale, LONG_LEASE).await,
        "extend with an expired lease",
        &id,
    );
    c.lease_lost(
        queue.retry(&stale, Duration::ZERO, "stale").await,
        "retry with an expired lease",
        &id,
    );
    c.lease_lost(
        queue.release(&stale).await,
        "release with an expired lease",
        &id,
    );
    let leased = QueueStats {
        leased: 1,
        ..empty()
    };
    c.stats(&*queue, leased, "after the stale lease's operations failed")
        .await;
    c.ok(queue.ack(&lease).await, "ack with the new lease");
    c.stats(&*queue, empty(), "after the job was acked").await;
}

async fn extend_keeps_the_lease<Q: Queue>(c: Check, queue: Arc<Q>) {
    let id = c.enqueue(&*queue, NewJob::new(json!("long job"))).await;
    let lease_for = Duration::from_millis(600);
    let leased_at = Instant::now();
    let mut lease = c.receive_job(&*queue, lease_for, LONG_WAIT, (&id, 1)).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let extended = c.ok(
        queue.extend(&lease, Duration::from_millis(1500)).await,
        "extend",
    );
    c.ensure(extended > lease.expires_at, || {
        format!(
            "expected extend to move the expiry past {}, it returned {extended}",
            lease.expires_at
        )
    });
    lease.expires_at = extended;
    // Wait well past the original expiry, well before the extended one.
    let past_original =
        (leased_at + Duration::from_millis(1000)).saturating_duration_since(Instant::now());
    c.receive_nothing(
        &*queue,
        past_original,
        "the lease was extended beyond its original expiry",
    )
    .await;
    c.ok(queue.ack(&lease).await, "ack with the extended lease");
    c.stats(&*queue, empty(), "after the job was acked").await;
}

async fn retry_with_delay<Q: Queue>(c: Check, queue: Arc<Q>) {
    let id = c.enqueue(&*queue, NewJob::new(json!("flaky"))).await;
    let first = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&id, 1))
        .await;
    let delay = Duration::from_millis(700);
    let earliest = utc_after(delay) - CLOCK_SKEW;
    let retried_at = Instant::now();
    let outcome = c.ok(queue.retry(&first, delay, "flaky failure").await, "retry");
    match outcome {
        RetryOutcome::Scheduled { at } => c.ensure(
            at >= earliest && at <= utc_after(delay) + CLOCK_SKEW,
            || format!("expected retry to be scheduled about {delay:?} from now, got {at}"),
        ),
        RetryOutcome::DeadLettered => {
            c.fail("expected retry at attempt 1 of 5 to be scheduled, it dead-lettered the job")
        }
    }
    let delayed = QueueStats {
        delayed: 1,
        ..empty()
    };
    c.stats(&*queue, delayed, "while the retry waits out its delay")
        .await;
    c.receive_nothing(&*queue, SHORT_WAIT, "the retry's delay has not passed")
        .await;
    let second = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&id, 2))
        .await;
    let redelivered_after = retried_at.elapsed();
    c.ensure(redelivered_after + GRANULARITY >= delay, || {
        format!("a retry delayed {delay:?} was redelivered after only {redelivered_after:?}")
    });
    c.ensure(redelivered_after <= delay + PROMPTLY, || {
        format!(
            "expected a waiting receive to get the retried job promptly after its {delay:?} \
             delay, it took {redelivered_after:?}"
        )
    });
    c.lease_lost(queue.ack(&first).await, "ack with the retried lease", &id);
    c.ok(queue.ack(&second).await, "ack");
}

async fn retry_out_of_attempts_dead_letters<Q: Queue>(c: Check, queue: Arc<Q>) {
    let doomed = c
        .enqueue(&*queue, NewJob::new(json!("doomed")).max_attempts(2))
        .await;
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&doomed, 1))
        .await;
    match c.ok(
        queue.retry(&lease, Duration::ZERO, "first failure").await,
        "retry",
    ) {
        RetryOutcome::Scheduled { .. } => {}
        RetryOutcome::DeadLettered => {
            c.fail("expected retry at attempt 1 of 2 to be scheduled, it dead-lettered the job")
        }
    }
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&doomed, 2))
        .await;
    match c.ok(
        queue.retry(&lease, Duration::ZERO, "final failure").await,
        "retry",
    ) {
        RetryOutcome::DeadLettered => {}
        RetryOutcome::Scheduled { at } => c.fail(format_args!(
            "expected retry at attempt 2 of 2 to dead-letter the job, it was scheduled at {at}"
        )),
    }
    let once = c
        .enqueue(&*queue, NewJob::new(json!("single shot")).max_attempts(1))
        .await;
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&once, 1))
        .await;
    match c.ok(
        queue
            .retry(&lease, Duration::from_secs(30), "only failure")
            .await,
        "retry",
    ) {
        RetryOutcome::DeadLettered => {}
        RetryOutcome::Scheduled { at } => c.fail(format_args!(
            "expected retry at attempt 1 of 1 to dead-letter the job, it was scheduled at {at}"
        )),
    }
    let dead = QueueStats { dead: 2, ..empty() };
    c.stats(&*queue, dead, "after two jobs were dead-lettered")
        .await;
    c.receive_nothing(&*queue, SHORT_WAIT, "every job is dead-lettered")
        .await;

    let letters = c.ok(queue.dead_letters(10).await, "dead_letters");
    let listed: Vec<(&JobId, u32, &str)> = letters
        .iter()
        .map(|letter| (&letter.job.id, letter.job.attempt, letter.reason.as_str()))
        .collect();
    let expected = vec![(&doomed, 2, "final failure"), (&once, 1, "only failure")];
    c.ensure(listed == expected, || {
        format!(
            "expected dead letters (id, last attempt, reason) oldest first: {expected:?}, \
             got {listed:?}"
        )
    });
    c.ensure(letters[0].job.payload == json!("doomed"), || {
        format!(
            "expected the dead letter's payload \"doomed\", got {}",
            letters[0].job.payload
        )
    });
    let now = Utc::now();
    c.ensure(
        letters
            .iter()
            .all(|letter| (letter.failed_at - now).abs() <= CLOCK_SKEW),
        || "expected dead letters' failed_at to be about now".to_owned(),
    );
    let first_only = c.ok(queue.dead_letters(1).await, "dead_letters");
    c.ensure(
        first_only.len() == 1 && first_only[0].job.id == doomed,
        || {
            format!(
                "expected dead_letters(1) to list only the oldest, job {doomed}, got {} letters",
                first_only.len()
            )
        },
    );

    c.ensure(
        c.ok(
            queue.requeue_dead_letter(&doomed).await,
            "requeue_dead_letter",
        ),
        || format!("expected requeue_dead_letter of dead job {doomed} to return true"),
    );
    let stats = QueueStats {
        ready: 1,
        dead: 1,
        ..empty()
    };
    c.stats(&*queue, stats, "after one dead letter was re-queued")
        .await;
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&doomed, 1))
        .await;
    c.ensure(
        lease.job.payload == json!("doomed") && lease.job.max_attempts == 2,
        || {
            format!(
                "expected the re-queued job as enqueued, got {}",
                describe(&lease.job)
            )
        },
    );
    c.ensure(
        !c.ok(
            queue.requeue_dead_letter(&doomed).await,
            "requeue_dead_letter",
        ),
        || format!("expected requeue_dead_letter of job {doomed}, no longer dead, to return false"),
    );
    c.ok(queue.ack(&lease).await, "ack");
    c.ensure(
        !c.ok(
            queue.requeue_dead_letter(&doomed).await,
            "requeue_dead_letter",
        ),
        || format!("expected requeue_dead_letter of acked job {doomed} to return false"),
    );
    let remaining = c.ok(queue.dead_letters(10).await, "dead_letters");
    c.ensure(remaining.len() == 1 && remaining[0].job.id == once, || {
        format!(
            "expected only job {once} still dead-lettered, got {} letters",
            remaining.len()
        )
    });
}

async fn last_lease_expiry_dead_letters<Q: Queue>(c: Check, queue: Arc<Q>) {
    let id = c
        .enqueue(&*queue, NewJob::new(json!("last chance")).max_attempts(1))
        .await;
    let lease_for = Duration::from_millis(400);
    let stale = c.receive_job(&*queue, lease_for, LONG_WAIT, (&id, 1)).await;
    c.receive_nothing(
        &*queue,
        Duration::from_millis(1200),
        "the only job's last lease expired, so it is dead-lettered, not redelivered",
    )
    .await;
    let letters = c.ok(queue.dead_letters(10).await, "dead_letters");
    let listed: Vec<(&JobId, u32, &str)> = letters
        .iter()
        .map(|letter| (&letter.job.id, letter.job.attempt, letter.reason.as_str()))
        .collect();
    c.ensure(listed == [(&id, 1, "lease expired")], || {
        format!(
            "expected job {id} dead-lettered at attempt 1 with reason \"lease expired\", \
             dead letters (id, attempt, reason) are {listed:?}"
        )
    });
    let dead = QueueStats { dead: 1, ..empty() };
    c.stats(&*queue, dead, "after the last lease expired").await;
    c.lease_lost(queue.ack(&stale).await, "ack with an expired lease", &id);
}

async fn release_keeps_the_attempt<Q: Queue>(c: Check, queue: Arc<Q>) {
    let id = c.enqueue(&*queue, NewJob::new(json!("interrupted"))).await;
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&id, 1))
        .await;
    c.ok(queue.release(&lease).await, "release");
    let ready = QueueStats {
        ready: 1,
        ..empty()
    };
    c.stats(&*queue, ready, "after the job was released").await;
    let released_at = Instant::now();
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&id, 1))
        .await;
    let latency = released_at.elapsed();
    c.ensure(latency <= PROMPTLY, || {
        format!("expected a released job to be deliverable at once, receive took {latency:?}")
    });
    c.ok(
        queue.retry(&lease, Duration::ZERO, "failure").await,
        "retry",
    );
    let stale = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&id, 2))
        .await;
    c.ok(queue.release(&stale).await, "release");
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&id, 2))
        .await;
    c.lease_lost(queue.ack(&stale).await, "ack with a released lease", &id);
    c.ok(queue.ack(&lease).await, "ack");
    c.stats(&*queue, empty(), "after the job was acked").await;
}

async fn not_before_delays_delivery<Q: Queue>(c: Check, queue: Arc<Q>) {
    let not_before = utc_after(Duration::from_millis(800));
    let later = c
        .enqueue(&*queue, NewJob::new(json!("later")).not_before(not_before))
        .await;
    let past = Utc::now() - TimeDelta::seconds(10);
    let now = c
        .enqueue(&*queue, NewJob::new(json!("now")).not_before(past))
        .await;
    let stats = QueueStats {
        ready: 1,
        delayed: 1,
        ..empty()
    };
    c.stats(&*queue, stats, "with a past and a future not_before")
        .await;
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&now, 1))
        .await;
    c.ok(queue.ack(&lease).await, "ack");
    c.receive_nothing(
        &*queue,
        SHORT_WAIT,
        "the only job's not_before has not come",
    )
    .await;
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&later, 1))
        .await;
    let received_at = Utc::now();
    let granularity = TimeDelta::from_std(GRANULARITY).unwrap_or(TimeDelta::MAX);
    let promptly = TimeDelta::from_std(PROMPTLY).unwrap_or(TimeDelta::MAX);
    c.ensure(received_at + granularity >= not_before, || {
        format!("a job not before {not_before} was delivered at {received_at}")
    });
    c.ensure(received_at <= not_before + promptly, || {
        format!(
            "expected a waiting receive to get a job promptly at its not_before {not_before}, \
             it got it at {received_at}"
        )
    });
    c.ok(queue.ack(&lease).await, "ack");
}

async fn stats_count_every_state<Q: Queue>(c: Check, queue: Arc<Q>) {
    c.stats(&*queue, empty(), "a fresh queue").await;
    let doomed = c
        .enqueue(&*queue, NewJob::new(json!("doomed")).max_attempts(1))
        .await;
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&doomed, 1))
        .await;
    c.ok(
        queue.retry(&lease, Duration::ZERO, "failure").await,
        "retry",
    );
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(c.enqueue(&*queue, NewJob::new(json!(name))).await);
    }
    let tomorrow = Utc::now() + TimeDelta::days(1);
    c.enqueue(&*queue, NewJob::new(json!("d")).not_before(tomorrow))
        .await;
    let stats = QueueStats {
        ready: 3,
        delayed: 1,
        leased: 0,
        dead: 1,
    };
    c.stats(&*queue, stats, "with 3 ready, 1 delayed and 1 dead job")
        .await;
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&ids[0], 1))
        .await;
    let stats = QueueStats {
        ready: 2,
        delayed: 1,
        leased: 1,
        dead: 1,
    };
    c.stats(&*queue, stats, "after one ready job was leased")
        .await;
    c.ok(queue.ack(&lease).await, "ack");
    let stats = QueueStats {
        ready: 2,
        delayed: 1,
        leased: 0,
        dead: 1,
    };
    c.stats(&*queue, stats, "after the leased job was acked")
        .await;
}

async fn acking_twice<Q: Queue>(c: Check, queue: Arc<Q>) {
    let id = c.enqueue(&*queue, NewJob::new(json!("once"))).await;
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&id, 1))
        .await;
    c.ok(queue.ack(&lease).await, "ack");
    c.lease_lost(queue.ack(&lease).await, "acking the same lease again", &id);
    c.stats(&*queue, empty(), "after the job was acked").await;
}

/// While a keyed job is in the queue, in any state, enqueueing its key again returns it and
/// adds nothing; acking it frees the key. Unkeyed jobs and other keys are unaffected.
async fn keyed_jobs_are_unique<Q: Queue>(c: Check, queue: Arc<Q>) {
    let keyed = |payload: &str, key: &str| NewJob::new(json!(payload)).key(key);
    let same = |c: Check, what: &str, first: &JobId, again: &JobId| {
        c.ensure(again == first, || {
            format!("enqueueing key `run-1` again while its job is {what}: expected job {first}, got job {again}")
        });
    };
    let first = c.enqueue(&*queue, keyed("first", "run-1")).await;
    let again = c.enqueue(&*queue, keyed("second", "run-1")).await;
    same(c, "ready", &first, &again);
    let other = c.enqueue(&*queue, keyed("other", "run-2")).await;
    let unkeyed = c.enqueue(&*queue, NewJob::new(json!("unkeyed"))).await;
    let unkeyed_again = c.enqueue(&*queue, NewJob::new(json!("unkeyed"))).await;
    c.ensure(other != first && unkeyed != unkeyed_again, || {
        "another key, or no key, must make a new job".to_owned()
    });
    let stats = QueueStats {
        ready: 4,
        ..empty()
    };
    c.stats(
        &*queue,
        stats,
        "after enqueueing one key twice, another key and two unkeyed jobs",
    )
    .await;

    // Leased, then retried (delayed): still the same job, with its first payload.
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&first, 1))
        .await;
    c.ensure(lease.job.payload == json!("first"), || {
        format!(
            "a repeated key must not change the job: {}",
            describe(&lease.job)
        )
    });
    let again = c.enqueue(&*queue, keyed("third", "run-1")).await;
    same(c, "leased", &first, &again);
    c.ok(
        queue.retry(&lease, Duration::from_secs(30), "later").await,
        "retry",
    );
    let again = c.enqueue(&*queue, keyed("fourth", "run-1")).await;
    same(c, "delayed after a retry", &first, &again);

    // Dead-lettered: the key stays taken until the job is re-queued and acked.
    let doomed = c
        .enqueue(&*queue, keyed("doomed", "run-3").max_attempts(1))
        .await;
    // The three other ready jobs come first (FIFO); ack them on the way.
    loop {
        let lease = c
            .receive(&*queue, LONG_LEASE, LONG_WAIT, &format!("job {doomed}"))
            .await;
        if lease.job.id == doomed {
            c.ok(queue.retry(&lease, Duration::ZERO, "fails").await, "retry");
            break;
        }
        c.ok(queue.ack(&lease).await, "ack");
    }
    let again = c.enqueue(&*queue, keyed("doomed again", "run-3")).await;
    c.ensure(again == doomed, || {
        format!("enqueueing key `run-3` while its job {doomed} is dead-lettered: got job {again}")
    });
    c.ensure(
        c.ok(
            queue.requeue_dead_letter(&doomed).await,
            "requeue_dead_letter",
        ),
        || format!("expected dead letter {doomed} to be re-queued"),
    );
    let lease = c
        .receive_job(&*queue, LONG_LEASE, LONG_WAIT, (&doomed, 1))
        .await;
    c.ok(queue.ack(&lease).await, "ack");

    // Acked: the key is free, and a new job takes it.
    let fresh = c.enqueue(&*queue, keyed("after ack", "run-3")).await;
    c.ensure(fresh != doomed, || {
        format!("enqueueing key `run-3` after its job {doomed} was acked must make a new job")
    });
    let again = c.enqueue(&*queue, keyed("after ack, again", "run-3")).await;
    c.ensure(again == fresh, || {
        format!("the new job {fresh} must hold key `run-3`, enqueueing it again gave {again}")
    });
}

async fn concurrent_consumers<Q: Queue + 'static>(c: Check, queue: Arc<Q>) {
    const CONSUMERS: usize = 4;
    const JOBS: usize = 200;
    let deadline = Instant::now() + Duration::from_secs(10);
    let acked = Arc::new(AtomicUsize::new(0));
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let queue = Arc::clone(&queue);
            let acked = Arc::clone(&acked);
            tokio::spawn(async move {
                let mut received = Vec::new();
                while acked.load(Ordering::SeqCst) < JOBS && Instant::now() < deadline {
                    let lease = match queue.receive(LONG_LEASE, Duration::from_millis(200)).await {
                        Ok(Some(lease)) => lease,
                        Ok(None) => continue,
                        Err(error) => return Err(format!("receive failed: {error}")),
                    };
                    queue
                        .ack(&lease)
                        .await
                        .map_err(|error| format!("ack of job {} failed: {error}", lease.job.id))?;
                    acked.fetch_add(1, Ordering::SeqCst);
                    received.push(lease.job.id);
                }
                Ok(received)
            })
        })
        .collect();
    let mut enqueued = HashSet::new();
    for index in 0..JOBS {
        enqueued.insert(
            c.enqueue(&*queue, NewJob::new(json!({ "index": index })))
                .await,
        );
    }
    let mut received = Vec::new();
    for consumer in consumers {
        match consumer.await {
            Ok(Ok(ids)) => received.extend(ids),
            Ok(Err(error)) => c.fail(error),
            Err(error) => c.fail(format_args!("a consumer task failed: {error}")),
        }
    }
    let distinct: HashSet<&JobId> = received.iter().collect();
    c.ensure(distinct.len() == received.len(), || {
        format!(
            "expected every job received exactly once by {CONSUMERS} consumers under long \
             leases, {} deliveries were of only {} distinct jobs",
            received.len(),
            distinct.len()
        )
    });
    c.ensure(
        distinct.len() == JOBS && distinct.iter().all(|id| enqueued.contains(*id)),
        || {
            format!(
                "expected all {JOBS} enqueued jobs received and acked within 10 s, got {}",
                distinct.len()
            )
        },
    );
    c.stats(&*queue, empty(), "after every job was acked").await;
}
