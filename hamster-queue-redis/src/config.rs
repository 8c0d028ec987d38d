//! How a [`RedisQueue`](crate::RedisQueue) behaves.

use std::time::Duration;

/// Settings of a [`RedisQueue`](crate::RedisQueue).
///
/// Build it with [`RedisQueueConfig::new`] or with struct update syntax:
/// `RedisQueueConfig { prefix: "ci".into(), ..Default::default() }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisQueueConfig {
    /// Namespace of the queue's keys: they are all named `{<prefix>}:…`, so they share one
    /// Redis Cluster hash slot. Queues with different prefixes are independent. Must be
    /// non-empty and free of whitespace, braces and glob characters (`*?[]\`).
    pub prefix: String,
    /// How long an operation keeps retrying, reconnecting with backoff, while Redis is
    /// unreachable before it fails with a [`QueueError::Backend`](hamster_core::queue::QueueError).
    pub unavailable_timeout: Duration,
    /// How long Redis may take to answer one command before the connection is considered
    /// broken (and re-established).
    pub response_timeout: Duration,
    /// The longest a waiting [`receive`](hamster_core::queue::Queue::receive) blocks before
    /// it looks at the queue again even though nothing woke it. A safety net: consumers are
    /// woken when jobs become ready and when delayed jobs or leases come due.
    pub max_block: Duration,
    /// How many jobs one `receive` leases from Redis at once (at least 1). Extra leases are
    /// kept in the queue object and handed to the next `receive` calls, which saves a round
    /// trip per job at high throughput. A prefetched lease runs from the moment it is taken,
    /// so one is handed out only while at least 90% of the requested `lease_for` remains;
    /// otherwise it is released back. [`RedisQueue::close`](crate::RedisQueue::close)
    /// releases unused prefetched leases. Prefetched jobs count as leased in
    /// [`stats`](hamster_core::queue::Queue::stats). Keep it at 1 unless jobs are short and
    /// plentiful.
    pub prefetch: u32,
}

impl RedisQueueConfig {
    /// The defaults, under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            ..Self::default()
        }
    }
}

impl Default for RedisQueueConfig {
    fn default() -> Self {
        Self {
            prefix: "hamster:queue".to_owned(),
            unavailable_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(2),
            max_block: Duration::from_secs(2),
            prefetch: 1,
        }
    }
}
