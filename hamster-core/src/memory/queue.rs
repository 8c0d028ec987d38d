//! In-memory queue.

use crate::queue::{
    DeadLetter, Job, JobId, Lease, NewJob, Queue, QueueError, QueueStats, RetryOutcome,
};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

/// The reason recorded when a job's last lease expires.
const LEASE_EXPIRED: &str = "lease expired";

/// Longer leases and delays are clamped to this (about a century): "effectively forever",
/// without overflowing clock arithmetic.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// An in-memory [`Queue`]: complete and honest, for tests, benchmarks and single-process
/// embedding. Nothing survives the process.
///
/// Leases expire, unacked work is redelivered with `attempt + 1`, retries wait out their
/// delay, and jobs out of attempts are dead-lettered, exactly as the [`Queue`] contract
/// says. Expired leases and due delayed jobs are processed lazily at the start of every
/// operation; a waiting [`receive`](Queue::receive) sleeps until a job is enqueued or
/// released, or until the earliest delayed job or lease comes due, so it wakes promptly
/// without polling. Every operation is O(log n) or better.
///
/// Behaviour specific to this backend:
/// - A lease is lost the moment it expires: `ack`, `extend`, `retry` and `release` then
///   fail with [`QueueError::LeaseLost`] even if nobody has received the job again yet.
/// - A released job goes to the front of the line, since it was taken from there.
///
/// Cloning is cheap: clones share the same jobs. Must be used inside a tokio runtime (for
/// the timers of a waiting `receive`).
#[derive(Clone)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signals waiting receivers: `notify_one` when a job became ready, `notify_waiters`
    /// when the earliest timer moved earlier so that every sleeper recomputes its wake-up.
    wakeup: Notify,
}

/// When a timer fires, with a sequence number that keeps keys unique and ties in order.
type TimerKey = (Instant, u64);

/// All jobs not yet acked, and indexes of them by state. Every job is in exactly one
/// index, matching its [`Entry::state`], so counts are exact and nothing is stale.
#[derive(Default)]
struct State {
    entries: HashMap<JobId, Entry>,
    /// Deliverable now, in delivery order.
    ready: VecDeque<JobId>,
    /// Waiting for their due time.
    delayed: BTreeMap<TimerKey, JobId>,
    /// Leased, by expiry.
    leases: BTreeMap<TimerKey, JobId>,
    /// Dead-lettered, oldest first.
    dead: BTreeMap<u64, JobId>,
    /// The jobs that have a key, by key.
    keys: HashMap<String, JobId>,
    next_sequence: u64,
}

struct Entry {
    /// The job as it will next be delivered (`attempt` is the next delivery's attempt),
    /// or as it was last delivered when dead.
    job: Job,
    state: EntryState,
    /// Its key, if it has one ([`NewJob::key`]).
    key: Option<String>,
}

enum EntryState {
    Ready,
    Delayed,
    Leased {
        token: String,
        expires: TimerKey,
    },
    Dead {
        sequence: u64,
        reason: String,
        failed_at: DateTime<Utc>,
    },
}

/// Whom to wake once the state lock is released.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
enum Wake {
    #[default]
    Nobody,
    /// A job became ready: one waiting receiver should take it.
    OneReceiver,
    /// The earliest timer moved earlier: every sleeping receiver must recompute.
    AllReceivers,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            shared: Arc::default(),
        }
    }

    /// Runs `operation` on the state after processing everything due, then wakes whom it
    /// asks for, outside the lock.
    fn with_state<T>(&self, operation: impl FnOnce(&mut State, Instant) -> (T, Wake)) -> T {
        let (result, wake) = {
            let mut state = self.shared.state.lock();
            let now = Instant::now();
            state.process_due(now);
            operation(&mut state, now)
        };
        match wake {
            Wake::Nobody => {}
            Wake::OneReceiver => self.shared.wakeup.notify_one(),
            Wake::AllReceivers => self.shared.wakeup.notify_waiters(),
        }
        result
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: payloads may be large or sensitive.
        let mut debug = f.debug_struct("MemoryQueue");
        match self.shared.state.try_lock() {
            Some(state) => debug
                .field("ready", &state.ready.len())
                .field("delayed", &state.delayed.len())
                .field("leased", &state.leases.len())
                .field("dead", &state.dead.len())
                .finish(),
            None => debug.finish_non_exhaustive(),
        }
    }
}

impl State {
    fn next_sequence(&mut self) -> u64 {
        self.next_sequence += 1;
        self.next_sequence
    }

    /// The earliest delayed job or lease expiry, when a sleeping receiver must look again.
    fn next_timer(&self) -> Option<Instant> {
        let delayed = self.delayed.first_key_value().map(|((at, _), _)| *at);
        let lease = self.leases.first_key_value().map(|((at, _), _)| *at);
        match (delayed, lease) {
            (Some(delayed), Some(lease)) => Some(delayed.min(lease)),
            (delayed, lease) => delayed.or(lease),
        }
    }

    /// Expires the leases and promotes the delayed jobs that are due at `now`.
    fn process_due(&mut self, now: Instant) {
        while let Some(entry) = self.leases.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            self.redeliver_or_kill(id, LEASE_EXPIRED);
        }
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            if let Some(job) = self.entries.get_mut(&id) {
                job.state = EntryState::Ready;
                self.ready.push_back(id);
            }
        }
    }

    /// After a lease ended unacked: ready again at `attempt + 1`, or dead when the
    /// attempts are used up. The caller has removed the lease from its index.
    fn redeliver_or_kill(&mut self, id: JobId, reason: &str) -> RedeliveryOutcome {
        let Some(entry) = self.entries.get_mut(&id) else {
            // Every indexed id has an entry; an orphan has nothing left to deliver.
            return RedeliveryOutcome::DeadLettered;
        };
        if entry.job.attempt >= entry.job.max_attempts {
            self.next_sequence += 1;
            let sequence = self.next_sequence;
            entry.state = EntryState::Dead {
                sequence,
                reason: reason.to_owned(),
                failed_at: Utc::now(),
            };
            tracing::debug!(job = %id, attempt = entry.job.attempt, "job dead-lettered");
            self.dead.insert(sequence, id);
            RedeliveryOutcome::DeadLettered
        } else {
            entry.job.attempt += 1;
            entry.state = EntryState::Ready;
            self.ready.push_back(id);
            RedeliveryOutcome::Ready
        }
    }

    /// Schedules `id` for `due`; the entry's state must already say `Delayed`.
    fn schedule(&mut self, id: JobId, due: Instant) -> Wake {
        let was_earliest = self.next_timer();
        let key = (due, self.next_sequence());
        self.delayed.insert(key, id);
        wake_if_earlier(due, was_earliest)
    }

    /// Leases the first ready job, if any.
    fn lease_next(&mut self, now: Instant, lease_for: Duration) -> Option<(Lease, Wake)> {
        let was_earliest = self.next_timer();
        let expires = (instant_after(now, lease_for), self.next_sequence());
        // Every ready id has an entry; skipping an orphan keeps a bug from wedging the queue.
        let (id, entry) = loop {
            let id = self.ready.pop_front()?;
            if let Some(entry) = self.entries.get_mut(&id) {
                break (id, entry);
            }
        };
        let token = Uuid::new_v4().to_string();
        entry.state = EntryState::Leased {
            token: token.clone(),
            expires,
        };
        let lease = Lease {
            job: entry.job.clone(),
            token,
            expires_at: utc_after(lease_for),
        };
        self.leases.insert(expires, id);
        Some((lease, wake_if_earlier(expires.0, was_earliest)))
    }

    /// Ends `lease` if it is still the job's current lease: removes it from the lease
    /// index and returns the entry, whose state the caller must then set.
    fn end_lease(&mut self, lease: &Lease) -> Result<&mut Entry, QueueError> {
        let lost = || QueueError::LeaseLost(lease.job.id.clone());
        let entry = self.entries.get_mut(&lease.job.id).ok_or_else(lost)?;
        match &entry.state {
            EntryState::Leased { token, expires } if *token == lease.token => {
                self.leases.remove(expires);
                Ok(entry)
            }
            _ => Err(lost()),
        }
    }
}

/// Where [`State::redeliver_or_kill`] put a job.
enum RedeliveryOutcome {
    Ready,
    DeadLettered,
}

/// Sleepers computed their wake-up from `was_earliest`; a timer at `at` before it needs
/// them to look again.
fn wake_if_earlier(at: Instant, was_earliest: Option<Instant>) -> Wake {
    match was_earliest {
        Some(earliest) if earliest <= at => Wake::Nobody,
        _ => Wake::AllReceivers,
    }
}

fn instant_after(now: Instant, duration: Duration) -> Instant {
    // Cannot fail for durations up to FOREVER (an Instant spans billions of years).
    now.checked_add(duration.min(FOREVER)).unwrap_or(now)
}

fn utc_after(duration: Duration) -> DateTime<Utc> {
    let now = Utc::now();
    TimeDelta::from_std(duration.min(FOREVER))
        .ok()
        .and_then(|delta| now.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn enqueue(&self, new_job: NewJob) -> Result<JobId, QueueError> {
        let now_utc = Utc::now();
        let id = JobId(Uuid::now_v7().to_string());
        let job = Job {
            id: id.clone(),
            payload: new_job.payload,
            attempt: 1,
            max_attempts: new_job.max_attempts.max(1),
            enqueued_at: now_utc,
        };
        let delay = new_job
            .not_before
            .and_then(|not_before| (not_before - now_utc).to_std().ok())
            .filter(|delay| !delay.is_zero());
        let key = new_job.key;
        Ok(self.with_state(|state, now| {
            if let Some(existing) = key.as_ref().and_then(|key| state.keys.get(key)) {
                return (existing.clone(), Wake::Nobody);
            }
            let initial_state = match delay {
                Some(_) => EntryState::Delayed,
                None => EntryState::Ready,
            };
            if let Some(key) = &key {
                state.keys.insert(key.clone(), id.clone());
            }
            let entry = Entry {
                job,
                state: initial_state,
                key,
            };
            state.entries.insert(id.clone(), entry);
            let wake = match delay {
                Some(delay) => state.schedule(id.clone(), instant_after(now, delay)),
                None => {
                    state.ready.push_back(id.clone());
                    Wake::OneReceiver
                }
            };
            (id, wake)
        }))
    }

    async fn receive(
        &self,
        lease_for: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>, QueueError> {
        let deadline = Instant::now().checked_add(wait);
        loop {
            // Registered before the state is inspected, under the lock, so that a job
            // enqueued between the inspection and the sleep still wakes this receiver.
            let notified = self.shared.wakeup.notified();
            tokio::pin!(notified);
            let mut next_timer = None;
            let leased = self.with_state(|state, now| match state.lease_next(now, lease_for) {
                Some((lease, wake)) => (Some(lease), wake),
                None => {
                    notified.as_mut().enable();
                    next_timer = state.next_timer();
                    (None, Wake::Nobody)
                }
            });
            if leased.is_some() {
                return Ok(leased);
            }
            let wake_at = match (deadline, next_timer) {
                (Some(deadline), _) if Instant::now() >= deadline => return Ok(None),
                (Some(deadline), Some(timer)) => Some(deadline.min(timer)),
                (deadline, timer) => deadline.or(timer),
            };
            match wake_at {
                Some(wake_at) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(wake_at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    async fn extend(
        &self,
        lease: &Lease,
        lease_for: Duration,
    ) -> Result<DateTime<Utc>, QueueError> {
        self.with_state(|state, now| {
            let was_earliest = state.next_timer();
            let expires = (instant_after(now, lease_for), state.next_sequence());
            let entry = match state.end_lease(lease) {
                Ok(entry) => entry,
                Err(lost) => return (Err(lost), Wake::Nobody),
            };
            entry.state = EntryState::Leased {
                token: lease.token.clone(),
                expires,
            };
            state.leases.insert(expires, lease.job.id.clone());
            (
                Ok(utc_after(lease_for)),
                wake_if_earlier(expires.0, was_earliest),
            )
        })
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        self.with_state(|state, _| {
            let result = state.end_lease(lease).map(|_| ());
            if result.is_ok()
                && let Some(Entry { key: Some(key), .. }) = state.entries.remove(&lease.job.id)
            {
                state.keys.remove(&key);
            }
            (result, Wake::Nobody)
        })
    }

    async fn retry(
        &self,
        lease: &Lease,
        delay: Duration,
        reason: &str,
    ) -> Result<RetryOutcome, QueueError> {
        self.with_state(|state, now| {
            let entry = match state.end_lease(lease) {
                Ok(entry) => entry,
                Err(lost) => return (Err(lost), Wake::Nobody),
            };
            if !delay.is_zero() && entry.job.attempt < entry.job.max_attempts {
                entry.job.attempt += 1;
                entry.state = EntryState::Delayed;
                let wake = state.schedule(lease.job.id.clone(), instant_after(now, delay));
                return (
                    Ok(RetryOutcome::Scheduled {
                        at: utc_after(delay),
                    }),
                    wake,
                );
            }
            match state.redeliver_or_kill(lease.job.id.clone(), reason) {
                RedeliveryOutcome::Ready => (
                    Ok(RetryOutcome::Scheduled { at: Utc::now() }),
                    Wake::OneReceiver,
                ),
                RedeliveryOutcome::DeadLettered => (Ok(RetryOutcome::DeadLettered), Wake::Nobody),
            }
        })
    }

    async fn release(&self, lease: &Lease) -> Result<(), QueueError> {
        self.with_state(|state, _| match state.end_lease(lease) {
            Ok(entry) => {
                entry.state = EntryState::Ready;
                state.ready.push_front(lease.job.id.clone());
                (Ok(()), Wake::OneReceiver)
            }
            Err(lost) => (Err(lost), Wake::Nobody),
        })
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, QueueError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(self.with_state(|state, _| {
            let letters = state
                .dead
                .values()
                .filter_map(|id| state.entries.get(id))
                .filter_map(|entry| match &entry.state {
                    EntryState::Dead {
                        reason, failed_at, ..
                    } => Some(DeadLetter {
                        job: entry.job.clone(),
                        reason: reason.clone(),
                        failed_at: *failed_at,
                    }),
                    _ => None,
                })
                .take(limit)
                .collect();
            (letters, Wake::Nobody)
        }))
    }

    async fn requeue_dead_letter(&self, id: &JobId) -> Result<bool, QueueError> {
        Ok(self.with_state(|state, _| {
            let Some(entry) = state.entries.get_mut(id) else {
                return (false, Wake::Nobody);
            };
            let EntryState::Dead { sequence, .. } = entry.state else {
                return (false, Wake::Nobody);
            };
            entry.job.attempt = 1;
            entry.state = EntryState::Ready;
            state.dead.remove(&sequence);
            state.ready.push_back(id.clone());
            (true, Wake::OneReceiver)
        }))
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        Ok(self.with_state(|state, _| {
            let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
            let stats = QueueStats {
                ready: count(state.ready.len()),
                delayed: count(state.delayed.len()),
                leased: count(state.leases.len()),
                dead: count(state.dead.len()),
            };
            (stats, Wake::Nobody)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MINUTE: Duration = Duration::from_secs(60);

    fn job(name: &str) -> NewJob {
        NewJob::new(json!(name))
    }

    async fn receive_now(queue: &MemoryQueue) -> Option<Lease> {
        queue
            .receive(MINUTE, Duration::ZERO)
            .await
            .expect("the memory queue never fails")
    }

    async fn stats(queue: &MemoryQueue) -> QueueStats {
        queue.stats().await.expect("the memory queue never fails")
    }

    fn index_sizes(queue: &MemoryQueue) -> (usize, usize, usize, usize, usize) {
        let state = queue.shared.state.lock();
        (
            state.entries.len(),
            state.ready.len(),
            state.delayed.len(),
            state.leases.len(),
            state.dead.len(),
        )
    }

    #[tokio::test]
    async fn clones_share_the_jobs() {
        let queue = MemoryQueue::new();
        let clone = queue.clone();
        let id = queue.enqueue(job("shared")).await.expect("enqueue");
        let lease = receive_now(&clone).await.expect("the clone sees the job");
        assert_eq!(lease.job.id, id);
        queue.ack(&lease).await.expect("ack through the original");
        assert_eq!(index_sizes(&clone), (0, 0, 0, 0, 0));
    }

    #[tokio::test]
    async fn ids_are_v7_and_tokens_are_v4() {
        let queue = MemoryQueue::new();
        let first = queue.enqueue(job("a")).await.expect("enqueue");
        let second = queue.enqueue(job("b")).await.expect("enqueue");
        let first_uuid = Uuid::parse_str(&first.0).expect("job ids are uuids");
        assert_eq!(first_uuid.get_version_num(), 7);
        assert!(first < second, "v7 ids sort in enqueue order");
        let lease = receive_now(&queue).await.expect("a job");
        let token = Uuid::parse_str(&lease.token).expect("tokens are uuids");
        assert_eq!(token.get_version_num(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_is_redelivered_lazily_without_a_receiver() {
        let queue = MemoryQueue::new();
        queue.enqueue(job("slow")).await.expect("enqueue");
        let lease = queue
            .receive(Duration::from_secs(30), Duration::ZERO)
            .await
            .expect("receive")
            .expect("a job");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(stats(&queue).await.leased, 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        let after = stats(&queue).await;
        assert_eq!((after.ready, after.leased), (1, 0));
        assert!(matches!(
            queue.extend(&lease, MINUTE).await,
            Err(QueueError::LeaseLost(_))
        ));
        let again = receive_now(&queue).await.expect("redelivered");
        assert_eq!(again.job.attempt, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_receive_wakes_exactly_when_a_delayed_job_is_due() {
        let queue = MemoryQueue::new();
        let started = Instant::now();
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.receive(MINUTE, Duration::from_secs(3600)).await }
        });
        tokio::task::yield_now().await;
        // Enqueued while the receiver sleeps with no timer: it must re-arm for the job.
        let not_before = Utc::now() + TimeDelta::seconds(5);
        queue
            .enqueue(job("later").not_before(not_before))
            .await
            .expect("enqueue");
        let lease = waiter.await.expect("task").expect("receive");
        assert!(lease.is_some(), "the delayed job is delivered");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(4) && waited <= Duration::from_secs(6),
            "woke after {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_receive_wakes_when_a_lease_expires() {
        let queue = MemoryQueue::new();
        queue.enqueue(job("abandoned")).await.expect("enqueue");
        let started = Instant::now();
        let _abandoned = queue
            .receive(Duration::from_secs(10), Duration::ZERO)
            .await
            .expect("receive")
            .expect("a job");
        let lease = queue
            .receive(MINUTE, Duration::from_secs(3600))
            .await
            .expect("receive")
            .expect("redelivered on expiry");
        assert_eq!(lease.job.attempt, 2);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_extension_rearms_waiting_receivers() {
        let queue = MemoryQueue::new();
        queue.enqueue(job("shortened")).await.expect("enqueue");
        let lease = queue
            .receive(Duration::from_secs(600), Duration::ZERO)
            .await
            .expect("receive")
            .expect("a job");
        let started = Instant::now();
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.receive(MINUTE, Duration::from_secs(3600)).await }
        });
        tokio::task::yield_now().await;
        queue
            .extend(&lease, Duration::from_secs(5))
            .await
            .expect("extend");
        let redelivered = waiter.await.expect("task").expect("receive");
        assert!(redelivered.is_some());
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn extending_repeatedly_leaves_no_stale_timers() {
        let queue = MemoryQueue::new();
        queue.enqueue(job("long")).await.expect("enqueue");
        let lease = receive_now(&queue).await.expect("a job");
        for _ in 0..100 {
            queue.extend(&lease, MINUTE).await.expect("extend");
        }
        assert_eq!(index_sizes(&queue), (1, 0, 0, 1, 0));
        queue.ack(&lease).await.expect("ack");
        assert_eq!(index_sizes(&queue), (0, 0, 0, 0, 0));
    }

    #[tokio::test]
    async fn a_released_job_goes_to_the_front_of_the_line() {
        let queue = MemoryQueue::new();
        let first = queue.enqueue(job("first")).await.expect("enqueue");
        queue.enqueue(job("second")).await.expect("enqueue");
        let lease = receive_now(&queue).await.expect("a job");
        queue.release(&lease).await.expect("release");
        let again = receive_now(&queue).await.expect("a job");
        assert_eq!(again.job.id, first);
        assert_eq!(again.job.attempt, 1);
    }

    #[tokio::test]
    async fn zero_max_attempts_means_one_delivery() {
        let queue = MemoryQueue::new();
        let mut new_job = job("once");
        new_job.max_attempts = 0;
        queue.enqueue(new_job).await.expect("enqueue");
        let lease = receive_now(&queue).await.expect("a job");
        assert_eq!(lease.job.max_attempts, 1);
        let outcome = queue
            .retry(&lease, Duration::from_secs(1), "failed")
            .await
            .expect("retry");
        assert_eq!(outcome, RetryOutcome::DeadLettered);
    }

    #[tokio::test]
    async fn huge_durations_mean_forever_and_do_not_panic() {
        let queue = MemoryQueue::new();
        queue.enqueue(job("forever")).await.expect("enqueue");
        let lease = queue
            .receive(Duration::MAX, Duration::MAX)
            .await
            .expect("receive")
            .expect("a ready job is returned at once");
        assert!(lease.expires_at > Utc::now() + TimeDelta::days(365 * 50));
        queue.extend(&lease, Duration::MAX).await.expect("extend");
        let outcome = queue
            .retry(&lease, Duration::MAX, "later")
            .await
            .expect("retry");
        assert!(matches!(outcome, RetryOutcome::Scheduled { .. }));
        assert_eq!(stats(&queue).await.delayed, 1);
    }

    #[tokio::test]
    async fn a_cancelled_receive_loses_no_job() {
        let queue = MemoryQueue::new();
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.receive(MINUTE, MINUTE).await }
        });
        tokio::task::yield_now().await;
        waiter.abort();
        let _ = waiter.await;
        queue.enqueue(job("kept")).await.expect("enqueue");
        let lease = queue
            .receive(MINUTE, Duration::from_secs(1))
            .await
            .expect("receive");
        assert!(lease.is_some(), "the job is still deliverable");
    }

    #[tokio::test(start_paused = true)]
    async fn every_enqueue_wakes_a_distinct_waiter() {
        let queue = MemoryQueue::new();
        let started = Instant::now();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.receive(MINUTE, MINUTE).await })
            })
            .collect();
        tokio::task::yield_now().await;
        for name in ["a", "b", "c"] {
            queue.enqueue(job(name)).await.expect("enqueue");
        }
        for waiter in waiters {
            let lease = waiter.await.expect("task").expect("receive");
            assert!(
                lease.is_some(),
                "a lost wake-up left a waiter without its job"
            );
        }
        // With time paused, a waiter that missed its wake-up would have slept a minute.
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn debug_shows_counts_not_payloads() {
        let queue = MemoryQueue::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime
            .block_on(queue.enqueue(job("secret payload")))
            .expect("enqueue");
        let debug = format!("{queue:?}");
        assert!(debug.contains("ready: 1"), "{debug}");
        assert!(!debug.contains("secret"), "{debug}");
    }

    /// Throughput of enqueue → receive → ack:
    /// `cargo test -p hamster-core --release --lib -- --ignored --nocapture memory_queue_throughput`
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "benchmark; run in release mode"]
    async fn memory_queue_throughput() {
        const JOBS: usize = 200_000;
        const CONSUMERS: usize = 4;
        let queue = MemoryQueue::new();

        let started = std::time::Instant::now();
        for index in 0..JOBS {
            queue
                .enqueue(NewJob::new(json!({ "run": index })))
                .await
                .expect("enqueue");
        }
        while let Some(lease) = receive_now(&queue).await {
            queue.ack(&lease).await.expect("ack");
        }
        let sequential = started.elapsed();

        let started = std::time::Instant::now();
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    let mut acked = 0;
                    while let Some(lease) = queue
                        .receive(MINUTE, Duration::from_millis(100))
                        .await
                        .expect("receive")
                    {
                        queue.ack(&lease).await.expect("ack");
                        acked += 1;
                    }
                    acked
                })
            })
            .collect();
        for index in 0..JOBS {
            queue
                .enqueue(NewJob::new(json!({ "run": index })))
                .await
                .expect("enqueue");
        }
        let mut acked = 0;
        for consumer in consumers {
            acked += consumer.await.expect("consumer");
        }
        // The consumers' final 100 ms wait for more work is not throughput.
        let concurrent = started.elapsed().saturating_sub(Duration::from_millis(100));
        assert_eq!(acked, JOBS);
        assert_eq!(index_sizes(&queue), (0, 0, 0, 0, 0));

        let rate = |elapsed: Duration| JOBS as f64 / elapsed.as_secs_f64();
        eprintln!(
            "memory queue, {JOBS} jobs: enqueue-all then receive+ack one by one: {:.0} jobs/s; \
             1 producer + {CONSUMERS} consumers concurrently: {:.0} jobs/s",
            rate(sequential),
            rate(concurrent)
        );
    }
}
