//! [`RedisQueue`]: the [`Queue`] implementation.

use crate::config::RedisQueueConfig;
use crate::error::ConnectError;
use crate::scripts::{PROMOTE_LIMIT, SCRIPTS};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hamster_core::coalesce::Coalescer;
use hamster_core::queue::{
    DeadLetter, Job, JobId, Lease, NewJob, Queue, QueueError, QueueStats, RetryOutcome,
};
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, ErrorKind, FromRedisValue, RedisError, ScriptInvocation};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Jobs per `EVALSHA` when enqueueing or acking several: bounds how long one script holds
/// Redis (about a millisecond).
const MAX_BATCH: usize = 500;
/// Idle blocking connections kept for waiting consumers.
const MAX_IDLE_WAITER_CONNECTIONS: usize = 8;
/// A prefetched lease is handed out only while this share of the requested lease remains.
const PREFETCH_MIN_REMAINING: f64 = 0.9;

/// The names of one queue's keys; all share the hash tag `{prefix}`.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// LIST of ids deliverable now, oldest first.
    pub(crate) ready: String,
    /// ZSET id → when it becomes deliverable (ms).
    pub(crate) delayed: String,
    /// ZSET id → when its lease expires (ms).
    pub(crate) leased: String,
    /// ZSET id → when it was dead-lettered (ms).
    pub(crate) dead: String,
    /// LIST of wake-up tokens that waiting consumers block on.
    pub(crate) wake: String,
    /// HASH unique key → the id of the job holding it ([`NewJob::key`]).
    pub(crate) unique: String,
    /// Prefix of the per-job HASH keys (`payload`, `max`, `enq`, `n`, `tok`, `reason`,
    /// `failed`, `key`).
    pub(crate) job_prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        let tag = format!("{{{prefix}}}");
        Self {
            ready: format!("{tag}:ready"),
            delayed: format!("{tag}:delayed"),
            leased: format!("{tag}:leased"),
            dead: format!("{tag}:dead"),
            wake: format!("{tag}:wake"),
            unique: format!("{tag}:keys"),
            job_prefix: format!("{tag}:job:"),
        }
    }

    pub(crate) fn job(&self, id: &JobId) -> String {
        format!("{}{}", self.job_prefix, id.0)
    }
}

/// A lease taken ahead of a `receive` call (see [`RedisQueueConfig::prefetch`]).
#[derive(Debug)]
struct Prefetched {
    lease: Lease,
    /// When the lease expires, on this process's monotonic clock.
    expires: Instant,
}

/// What one receive script call found.
enum Received {
    Leases(Vec<Prefetched>),
    /// Nothing deliverable; the next delayed job or lease comes due in this long, if any.
    Nothing {
        next_due_in: Option<Duration>,
    },
}

/// What every operation needs, shared with the tasks that send coalesced batches.
struct Backend {
    connection: ConnectionManager,
    address: String,
    unavailable_timeout: Duration,
    keys: Keys,
}

impl Backend {
    fn error(&self, error: RedisError, retried_for: Option<Duration>) -> QueueError {
        match (is_unavailable(&error), retried_for) {
            (true, Some(elapsed)) => QueueError::Backend(format!(
                "redis at {} is unreachable: {error} (gave up after {} ms; check that Redis is running and reachable)",
                self.address,
                elapsed.as_millis()
            )),
            (true, None) => {
                QueueError::Backend(format!("redis at {} is unreachable: {error}", self.address))
            }
            (false, _) => QueueError::Backend(format!("redis at {} failed: {error}", self.address)),
        }
    }

    /// Runs a script, retrying with backoff while Redis is unreachable, for up to
    /// [`RedisQueueConfig::unavailable_timeout`].
    ///
    /// Retrying is safe because every script is idempotent or checks a lease token: a
    /// repeated enqueue finds its id present; a repeated ack/retry/release whose first run
    /// succeeded reports [`QueueError::LeaseLost`], the worst case; a receive whose reply was
    /// lost leaves a lease that expires and is redelivered.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, QueueError> {
        const FIRST_PAUSE: Duration = Duration::from_millis(20);
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        loop {
            let mut connection = self.connection.clone();
            let error = match invocation.invoke_async(&mut connection).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let elapsed = started.elapsed();
            if !is_unavailable(&error) || elapsed + pause > self.unavailable_timeout {
                return Err(self.error(error, Some(elapsed)));
            }
            if pause == FIRST_PAUSE {
                tracing::warn!(address = %self.address, %error, "redis is unreachable; reconnecting");
            }
            tokio::time::sleep(pause.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Acks a batch of `(id, token)` leases in one script call; `true` per lease that was
    /// still held.
    async fn ack_batch(&self, leases: &[(String, String)]) -> Result<Vec<bool>, QueueError> {
        let mut invocation = SCRIPTS.ack.prepare_invoke();
        invocation
            .key(&self.keys.leased)
            .key(&self.keys.unique)
            .arg(&self.keys.job_prefix);
        for (id, token) in leases {
            invocation.arg(id).arg(token);
        }
        let acked: Vec<i64> = self.run(&invocation).await?;
        Ok(acked.into_iter().map(|acked| acked == 1).collect())
    }

    /// Enqueues a batch of encoded jobs in one script call (atomically); returns per job the
    /// id of the job holding it (another one's for a unique key already held).
    async fn enqueue_batch(&self, jobs: &[EncodedJob]) -> Result<Vec<JobId>, QueueError> {
        let mut invocation = SCRIPTS.enqueue.prepare_invoke();
        invocation
            .key(&self.keys.ready)
            .key(&self.keys.delayed)
            .key(&self.keys.wake)
            .key(&self.keys.unique)
            .arg(&self.keys.job_prefix);
        for job in jobs {
            invocation
                .arg(&job.id)
                .arg(&job.payload)
                .arg(job.max_attempts)
                .arg(&job.not_before)
                .arg(job.key.as_deref().unwrap_or_default());
        }
        let holders: Vec<String> = self.run(&invocation).await?;
        if holders.len() != jobs.len() {
            return Err(QueueError::Corrupt(format!(
                "the enqueue script answered {} ids for {} jobs",
                holders.len(),
                jobs.len()
            )));
        }
        Ok(holders.into_iter().map(JobId).collect())
    }
}

/// A job as the enqueue script takes it.
#[derive(Debug)]
struct EncodedJob {
    id: String,
    payload: String,
    max_attempts: u32,
    /// Milliseconds since the epoch, or empty for "deliverable now".
    not_before: String,
    /// [`NewJob::key`].
    key: Option<String>,
}

impl EncodedJob {
    /// Gives the job its id (UUIDv7: time-ordered, and generated here so that a retried
    /// script call cannot create a second job) and serializes it.
    fn new(job: &NewJob) -> Result<Self, QueueError> {
        Ok(Self {
            id: uuid::Uuid::now_v7().to_string(),
            payload: serde_json::to_string(&job.payload).map_err(|error| {
                QueueError::Corrupt(format!("the job payload cannot be serialized: {error}"))
            })?,
            max_attempts: job.max_attempts.max(1),
            not_before: job
                .not_before
                .map(|at| at.timestamp_millis().to_string())
                .unwrap_or_default(),
            key: job.key.clone(),
        })
    }
}

/// A durable [`Queue`] on Redis: leases, retries, dead letters and delayed jobs, every state
/// change one atomic Lua script. See the crate documentation for the design.
///
/// Cheap operations share one auto-reconnecting multiplexed connection; consumers waiting in
/// [`receive`](Queue::receive) block on dedicated connections, so waiting never delays other
/// commands.
pub struct RedisQueue {
    backend: Arc<Backend>,
    client: redis::Client,
    config: RedisQueueConfig,
    acks: Arc<Coalescer<(String, String), bool, QueueError>>,
    enqueues: Arc<Coalescer<EncodedJob, JobId, QueueError>>,
    idle_waiter_connections: Mutex<Vec<MultiplexedConnection>>,
    prefetched: Mutex<VecDeque<Prefetched>>,
    closed: CancellationToken,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("address", &self.backend.address)
            .field("prefix", &self.config.prefix)
            .field("closed", &self.closed.is_cancelled())
            .finish_non_exhaustive()
    }
}

fn validate_prefix(prefix: &str) -> Result<(), ConnectError> {
    let invalid = |reason| {
        Err(ConnectError::InvalidPrefix {
            prefix: prefix.to_owned(),
            reason,
        })
    };
    if prefix.is_empty() {
        return invalid("it must not be empty");
    }
    if prefix
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "{}*?[]\\".contains(c))
    {
        return invalid("it must not contain whitespace, braces or any of *?[]\\");
    }
    Ok(())
}

/// Whether the error means Redis could not be reached (worth reconnecting and retrying), as
/// opposed to Redis refusing the command.
fn is_unavailable(error: &RedisError) -> bool {
    use redis::ServerErrorKind::{BusyLoading, MasterDown, TryAgain};
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(BusyLoading | TryAgain | MasterDown)
        )
}

fn corrupt(what: &str, value: &str) -> QueueError {
    QueueError::Corrupt(format!("{what} {value:?} is not valid"))
}

fn parse_number<T: std::str::FromStr>(what: &str, value: &str) -> Result<T, QueueError> {
    value.parse().map_err(|_| corrupt(what, value))
}

fn parse_time(what: &str, millis: &str) -> Result<DateTime<Utc>, QueueError> {
    DateTime::from_timestamp_millis(parse_number(what, millis)?)
        .ok_or_else(|| corrupt(what, millis))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl RedisQueue {
    /// Connects to the Redis at `url` (`redis://[[user]:password@]host[:port][/db]`, or
    /// `rediss://` for TLS) and checks that it can run the queue.
    ///
    /// Fails fast (after a few quick reconnection attempts) when Redis is unreachable;
    /// afterwards, the queue reconnects on its own.
    pub async fn connect(url: &str, config: RedisQueueConfig) -> Result<Self, ConnectError> {
        validate_prefix(&config.prefix)?;
        let client = redis::Client::open(url).map_err(|error| ConnectError::InvalidUrl {
            reason: error.to_string(),
        })?;
        let address = client.get_connection_info().addr().to_string();
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(3)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_connection_timeout(Some(config.response_timeout))
            .set_response_timeout(Some(config.response_timeout));
        let unreachable = |error: RedisError| ConnectError::Unreachable {
            address: address.clone(),
            reason: error.to_string(),
        };
        let mut connection = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(unreachable)?;
        // Loading the scripts checks that this Redis runs Lua, and saves a NOSCRIPT round
        // trip on first use. They are reloaded on demand after a Redis restart.
        for script in SCRIPTS.all() {
            script.load_async(&mut connection).await.map_err(|error| {
                match is_unavailable(&error) {
                    true => unreachable(error),
                    false => ConnectError::Unsupported {
                        address: address.clone(),
                        reason: error.to_string(),
                    },
                }
            })?;
        }
        tracing::debug!(%address, prefix = %config.prefix, "connected to the redis queue");
        Ok(Self {
            backend: Arc::new(Backend {
                connection,
                address,
                unavailable_timeout: config.unavailable_timeout,
                keys: Keys::new(&config.prefix),
            }),
            client,
            config,
            acks: Coalescer::new("ack", MAX_BATCH),
            enqueues: Coalescer::new("enqueue", MAX_BATCH),
            idle_waiter_connections: Mutex::new(Vec::new()),
            prefetched: Mutex::new(VecDeque::new()),
            closed: CancellationToken::new(),
        })
    }

    /// The `host:port` this queue talks to.
    pub fn address(&self) -> &str {
        &self.backend.address
    }

    /// The settings this queue was created with.
    pub fn config(&self) -> &RedisQueueConfig {
        &self.config
    }

    /// Enqueues several jobs with one script call per 500 jobs; returns their ids in order.
    ///
    /// Each chunk of 500 is atomic. If an error is returned, earlier chunks may have been
    /// enqueued: enqueueing them again may run them twice, never zero times.
    pub async fn enqueue_many(
        &self,
        jobs: impl IntoIterator<Item = NewJob>,
    ) -> Result<Vec<JobId>, QueueError> {
        let jobs = jobs
            .into_iter()
            .map(|job| EncodedJob::new(&job))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ids = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(MAX_BATCH) {
            ids.extend(self.backend.enqueue_batch(chunk).await?);
        }
        Ok(ids)
    }

    /// Stops this queue object from handing out jobs: waiting and future
    /// [`receive`](Queue::receive) calls return `Ok(None)`, and prefetched leases that no
    /// caller got are released. Leases already handed out stay valid: ack, retry or release
    /// them as usual. For graceful shutdown.
    pub async fn close(&self) {
        self.closed.cancel();
        let unused: Vec<Prefetched> = self.prefetched.lock().drain(..).collect();
        for prefetched in unused {
            if let Err(error) = self.release(&prefetched.lease).await {
                tracing::warn!(job = %prefetched.lease.job.id, %error,
                    "could not release a prefetched lease; it will be redelivered when it expires");
            }
        }
        self.idle_waiter_connections.lock().clear();
    }

    /// Deletes every key of this queue (every job in every state). For tests and for
    /// decommissioning a queue; returns how many keys were deleted.
    pub async fn purge(&self) -> Result<u64, QueueError> {
        let pattern = format!("{{{}}}:*", self.config.prefix);
        let mut connection = self.backend.connection.clone();
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(|error| self.backend.error(error, None))?;
            if !keys.is_empty() {
                let removed: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await
                    .map_err(|error| self.backend.error(error, None))?;
                deleted += removed;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    fn take_prefetched(&self, lease_for: Duration) -> (Option<Lease>, Vec<Lease>) {
        let now = Instant::now();
        let needed = lease_for.mul_f64(PREFETCH_MIN_REMAINING);
        let mut stale = Vec::new();
        let mut buffer = self.prefetched.lock();
        while let Some(prefetched) = buffer.pop_front() {
            if prefetched.expires.saturating_duration_since(now) >= needed {
                return (Some(prefetched.lease), stale);
            }
            stale.push(prefetched.lease);
        }
        (None, stale)
    }

    async fn lease_batch(&self, lease_for: Duration) -> Result<Received, QueueError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut invocation = SCRIPTS.receive.prepare_invoke();
        invocation
            .key(&self.backend.keys.ready)
            .key(&self.backend.keys.delayed)
            .key(&self.backend.keys.leased)
            .key(&self.backend.keys.dead)
            .key(&self.backend.keys.wake)
            .arg(&self.backend.keys.job_prefix)
            .arg(millis(lease_for))
            .arg(token)
            .arg(self.config.prefetch.max(1))
            .arg(PROMOTE_LIMIT);
        let sent = Instant::now();
        let reply: Vec<String> = self.backend.run(&invocation).await?;
        let [now, expires, next_due_in, jobs @ ..] = reply.as_slice() else {
            return Err(QueueError::Corrupt(format!(
                "unexpected receive reply of {} items",
                reply.len()
            )));
        };
        if jobs.is_empty() {
            let next_due_in: i64 = parse_number("next due time", next_due_in)?;
            return Ok(Received::Nothing {
                next_due_in: u64::try_from(next_due_in).ok().map(Duration::from_millis),
            });
        }
        let lease_ms: i64 = parse_number("lease expiry", expires)?;
        let remaining_ms = lease_ms - parse_number::<i64>("server time", now)?;
        // Measured from when the request left, so the local deadline errs on the early side.
        let local_expiry = sent + Duration::from_millis(u64::try_from(remaining_ms).unwrap_or(0));
        let expires_at = parse_time("lease expiry", expires)?;
        let mut leases = Vec::with_capacity(jobs.len() / 6);
        let mut first_error = None;
        for fields in jobs.chunks(6) {
            match decode_lease(fields, expires_at) {
                Ok(lease) => leases.push(Prefetched {
                    lease,
                    expires: local_expiry,
                }),
                Err(error) => {
                    // Left leased: it is redelivered when the lease expires and dead-lettered
                    // once out of attempts, where an operator can see it.
                    tracing::error!(job = ?fields.first(), %error, "could not decode a leased job");
                    first_error.get_or_insert(error);
                }
            }
        }
        match (leases.is_empty(), first_error) {
            (true, Some(error)) => Err(error),
            _ => Ok(Received::Leases(leases)),
        }
    }

    async fn waiter_connection(&self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(connection) = self.idle_waiter_connections.lock().pop() {
            return Ok(connection);
        }
        // No response timeout: blocking commands answer late by design; `block_until_woken`
        // bounds the wait itself.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.response_timeout))
            .set_response_timeout(None);
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        // Named so that an operator reading CLIENT LIST knows what the blocked clients are.
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(self.waiter_name())
            .exec_async(&mut connection)
            .await?;
        Ok(connection)
    }

    fn waiter_name(&self) -> String {
        format!("hamster-queue-wait:{}", self.config.prefix)
    }

    /// Blocks until a wake-up token arrives, `block` passes, or the queue is closed.
    async fn block_until_woken(&self, block: Duration) {
        let mut connection = match self.waiter_connection().await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::debug!(address = %self.backend.address, %error, "no connection to wait on");
                tokio::select! {
                    () = self.closed.cancelled() => {}
                    () = tokio::time::sleep(block.min(Duration::from_millis(100))) => {}
                }
                return;
            }
        };
        let mut blpop = redis::cmd("BLPOP");
        blpop
            .arg(&self.backend.keys.wake)
            .arg(format!("{:.3}", block.as_secs_f64().max(0.001)));
        let guard = block + self.config.response_timeout;
        tokio::select! {
            // The connection is dropped mid-command; Redis forgets the blocked client.
            () = self.closed.cancelled() => {}
            outcome = tokio::time::timeout(guard, blpop.query_async::<Option<(String, String)>>(&mut connection)) => {
                match outcome {
                    Ok(Ok(_)) => {
                        let mut idle = self.idle_waiter_connections.lock();
                        if idle.len() < MAX_IDLE_WAITER_CONNECTIONS {
                            idle.push(connection);
                        }
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(address = %self.backend.address, %error, "waiting connection failed");
                    }
                    Err(_) => {
                        tracing::debug!(address = %self.backend.address, "waiting connection timed out");
                    }
                }
            }
        }
    }
}

fn decode_lease(fields: &[String], expires_at: DateTime<Utc>) -> Result<Lease, QueueError> {
    let [id, payload, attempt, max_attempts, enqueued_at, token] = fields else {
        return Err(QueueError::Corrupt(format!(
            "a leased job has {} fields instead of 6",
            fields.len()
        )));
    };
    Ok(Lease {
        job: decode_job(id, payload, attempt, max_attempts, enqueued_at)?,
        token: token.clone(),
        expires_at,
    })
}

fn decode_job(
    id: &str,
    payload: &str,
    attempt: &str,
    max_attempts: &str,
    enqueued_at: &str,
) -> Result<Job, QueueError> {
    Ok(Job {
        id: JobId(id.to_owned()),
        payload: serde_json::from_str(payload).map_err(|error| {
            QueueError::Corrupt(format!("the payload of job {id} is not JSON: {error}"))
        })?,
        attempt: parse_number("attempt", attempt)?,
        max_attempts: parse_number("max attempts", max_attempts)?,
        enqueued_at: parse_time("enqueue time", enqueued_at)?,
    })
}

#[async_trait]
impl Queue for RedisQueue {
    /// Concurrent calls on one queue object share script calls (see the crate's `## Design`);
    /// each returns once its own job is in Redis.
    async fn enqueue(&self, job: NewJob) -> Result<JobId, QueueError> {
        let job = EncodedJob::new(&job)?;
        let backend = Arc::clone(&self.backend);
        self.enqueues
            .submit(job, move |batch| {
                let backend = Arc::clone(&backend);
                async move { backend.enqueue_batch(&batch).await }
            })
            .await
    }

    /// Waits by blocking (`BLPOP`) on the queue's wake list, never longer than until the next
    /// delayed job or lease comes due, nor than [`RedisQueueConfig::max_block`].
    async fn receive(
        &self,
        lease_for: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>, QueueError> {
        if self.closed.is_cancelled() {
            return Ok(None);
        }
        let (ready, stale) = self.take_prefetched(lease_for);
        for lease in stale {
            match self.release(&lease).await {
                Ok(()) | Err(QueueError::LeaseLost(_)) => {}
                Err(error) => return Err(error),
            }
        }
        if ready.is_some() {
            return Ok(ready);
        }
        let deadline = Instant::now() + wait;
        loop {
            match self.lease_batch(lease_for).await? {
                Received::Leases(leases) => {
                    let mut leases = leases.into_iter();
                    let first = leases.next().map(|prefetched| prefetched.lease);
                    self.prefetched.lock().extend(leases);
                    return Ok(first);
                }
                Received::Nothing { next_due_in } => {
                    let now = Instant::now();
                    if now >= deadline || self.closed.is_cancelled() {
                        return Ok(None);
                    }
                    let mut block = (deadline - now).min(self.config.max_block);
                    if let Some(next_due_in) = next_due_in {
                        block = block.min(next_due_in);
                    }
                    if block.is_zero() {
                        // A backlog of due jobs larger than one call promotes.
                        tokio::task::yield_now().await;
                    } else {
                        self.block_until_woken(block).await;
                    }
                    if self.closed.is_cancelled() {
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn extend(
        &self,
        lease: &Lease,
        lease_for: Duration,
    ) -> Result<DateTime<Utc>, QueueError> {
        let mut invocation = SCRIPTS.extend.prepare_invoke();
        invocation
            .key(&self.backend.keys.leased)
            .key(self.backend.keys.job(&lease.job.id))
            .arg(&lease.job.id.0)
            .arg(&lease.token)
            .arg(millis(lease_for));
        let expires: Option<String> = self.backend.run(&invocation).await?;
        match expires {
            Some(expires) => parse_time("lease expiry", &expires),
            None => Err(QueueError::LeaseLost(lease.job.id.clone())),
        }
    }

    /// Concurrent calls on one queue object share script calls (see the crate's `## Design`);
    /// each returns once its own job is acked in Redis, or with its own `LeaseLost`.
    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        let backend = Arc::clone(&self.backend);
        let acked = self
            .acks
            .submit(
                (lease.job.id.0.clone(), lease.token.clone()),
                move |batch| {
                    let backend = Arc::clone(&backend);
                    async move { backend.ack_batch(&batch).await }
                },
            )
            .await?;
        match acked {
            true => Ok(()),
            false => Err(QueueError::LeaseLost(lease.job.id.clone())),
        }
    }

    async fn retry(
        &self,
        lease: &Lease,
        delay: Duration,
        reason: &str,
    ) -> Result<RetryOutcome, QueueError> {
        let mut invocation = SCRIPTS.retry.prepare_invoke();
        invocation
            .key(&self.backend.keys.ready)
            .key(&self.backend.keys.delayed)
            .key(&self.backend.keys.leased)
            .key(&self.backend.keys.dead)
            .key(&self.backend.keys.wake)
            .key(self.backend.keys.job(&lease.job.id))
            .arg(&lease.job.id.0)
            .arg(&lease.token)
            .arg(millis(delay))
            .arg(reason);
        let outcome: Option<(String, String)> = self.backend.run(&invocation).await?;
        match outcome {
            None => Err(QueueError::LeaseLost(lease.job.id.clone())),
            Some((state, _)) if state == "dead" => Ok(RetryOutcome::DeadLettered),
            Some((_, at)) => Ok(RetryOutcome::Scheduled {
                at: parse_time("retry time", &at)?,
            }),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), QueueError> {
        let mut invocation = SCRIPTS.release.prepare_invoke();
        invocation
            .key(&self.backend.keys.ready)
            .key(&self.backend.keys.leased)
            .key(&self.backend.keys.wake)
            .key(self.backend.keys.job(&lease.job.id))
            .arg(&lease.job.id.0)
            .arg(&lease.token);
        match self.backend.run::<i64>(&invocation).await? {
            1 => Ok(()),
            _ => Err(QueueError::LeaseLost(lease.job.id.clone())),
        }
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, QueueError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut invocation = SCRIPTS.dead_letters.prepare_invoke();
        invocation
            .key(&self.backend.keys.dead)
            .arg(&self.backend.keys.job_prefix)
            .arg(limit);
        let reply: Vec<String> = self.backend.run(&invocation).await?;
        reply
            .chunks(7)
            .map(|fields| {
                let [
                    id,
                    payload,
                    attempt,
                    max_attempts,
                    enqueued_at,
                    reason,
                    failed_at,
                ] = fields
                else {
                    return Err(QueueError::Corrupt(format!(
                        "a dead letter has {} fields instead of 7",
                        fields.len()
                    )));
                };
                Ok(DeadLetter {
                    job: decode_job(id, payload, attempt, max_attempts, enqueued_at)?,
                    reason: reason.clone(),
                    failed_at: parse_time("failure time", failed_at)?,
                })
            })
            .collect()
    }

    async fn requeue_dead_letter(&self, id: &JobId) -> Result<bool, QueueError> {
        let mut invocation = SCRIPTS.requeue_dead_letter.prepare_invoke();
        invocation
            .key(&self.backend.keys.ready)
            .key(&self.backend.keys.dead)
            .key(&self.backend.keys.wake)
            .key(self.backend.keys.job(id))
            .arg(&id.0);
        Ok(self.backend.run::<i64>(&invocation).await? == 1)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut invocation = SCRIPTS.stats.prepare_invoke();
        invocation
            .key(&self.backend.keys.ready)
            .key(&self.backend.keys.delayed)
            .key(&self.backend.keys.leased)
            .key(&self.backend.keys.dead)
            .key(&self.backend.keys.wake)
            .arg(&self.backend.keys.job_prefix)
            .arg(PROMOTE_LIMIT);
        let (ready, delayed, leased, dead): (u64, u64, u64, u64) =
            self.backend.run(&invocation).await?;
        Ok(QueueStats {
            ready,
            delayed,
            leased,
            dead,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redis_url() -> String {
        std::env::var("HAMSTER_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    async fn admin_connection(test: &str) -> Option<MultiplexedConnection> {
        let outcome = async {
            redis::Client::open(redis_url())?
                .get_multiplexed_async_connection()
                .await
        }
        .await;
        match outcome {
            Ok(connection) => Some(connection),
            Err(error) if std::env::var_os("CI").is_some() => {
                panic!("{test}: redis is unreachable and CI is set: {error}")
            }
            Err(error) => {
                eprintln!(
                    "skipped: {test}: redis at {} is unreachable: {error}",
                    redis_url()
                );
                None
            }
        }
    }

    /// Kills this queue's connections the way a Redis restart or a proxy timeout would.
    async fn kill_connections_of(queue: &RedisQueue, admin: &mut MultiplexedConnection) -> usize {
        let mut ids: Vec<i64> = Vec::new();
        let manager_id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut queue.backend.connection.clone())
            .await
            .unwrap();
        ids.push(manager_id);
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(admin)
            .await
            .unwrap();
        let waiter = format!("name={}", queue.waiter_name());
        for line in clients
            .lines()
            .filter(|line| line.split(' ').any(|f| f == waiter))
        {
            let id = line
                .split(' ')
                .find_map(|field| field.strip_prefix("id="))
                .unwrap();
            ids.push(id.parse().unwrap());
        }
        for id in &ids {
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(*id)
                .arg("TYPE")
                .arg("normal")
                .query_async(admin)
                .await
                .unwrap();
            assert_eq!(killed, 1, "client {id}");
        }
        ids.len()
    }

    #[tokio::test]
    async fn producers_and_waiting_consumers_survive_killed_connections() {
        let test = "producers_and_waiting_consumers_survive_killed_connections";
        let Some(mut admin) = admin_connection(test).await else {
            return;
        };
        let prefix = format!("hamster-test-{}", uuid::Uuid::new_v4().simple());
        let config = RedisQueueConfig {
            max_block: Duration::from_secs(30),
            ..RedisQueueConfig::new(&prefix)
        };
        let queue = std::sync::Arc::new(RedisQueue::connect(&redis_url(), config).await.unwrap());
        let other = RedisQueue::connect(&redis_url(), queue.config.clone())
            .await
            .unwrap();

        let waiting = {
            let queue = queue.clone();
            tokio::spawn(async move {
                queue
                    .receive(Duration::from_secs(30), Duration::from_secs(10))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            kill_connections_of(&queue, &mut admin).await,
            2,
            "manager and waiter"
        );

        // The producer side reconnects transparently.
        let first = queue.enqueue(NewJob::new(json!(1))).await.unwrap();
        // The waiting consumer lost its blocking connection; it must still get the job.
        let lease = waiting
            .await
            .unwrap()
            .unwrap()
            .expect("the waiting consumer gets the job");
        assert_eq!(lease.job.id, first);
        queue.ack(&lease).await.unwrap();

        // Again while idle, then through the other queue object.
        kill_connections_of(&queue, &mut admin).await;
        let second = other.enqueue(NewJob::new(json!(2))).await.unwrap();
        let lease = queue
            .receive(Duration::from_secs(30), Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lease.job.id, second);
        queue.ack(&lease).await.unwrap();
        assert_eq!(queue.stats().await.unwrap(), QueueStats::default());
        queue.purge().await.unwrap();
    }

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = Keys::new("runs");
        for key in [
            &keys.ready,
            &keys.delayed,
            &keys.leased,
            &keys.dead,
            &keys.wake,
        ] {
            assert!(key.starts_with("{runs}:"), "{key}");
        }
        assert_eq!(keys.job(&JobId("42".into())), "{runs}:job:42");
    }
}
