//! Shared helpers: a queue under a random prefix on the test Redis, purged on drop.

#![allow(dead_code, clippy::unwrap_used)]

use hamster_queue_redis::{RedisQueue, RedisQueueConfig};
use std::ops::Deref;

/// The Redis the tests use.
pub fn redis_url() -> String {
    std::env::var("HAMSTER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A fresh random prefix.
pub fn random_prefix() -> String {
    format!("hamster-test-{}", uuid::Uuid::new_v4().simple())
}

/// Whether the test Redis answers; when it does not, fails under `CI` and otherwise prints
/// `skipped: <test>: <why>` and returns false.
pub fn redis_available(test: &str) -> bool {
    let outcome = redis::Client::open(redis_url())
        .and_then(|client| client.get_connection_with_timeout(std::time::Duration::from_secs(2)))
        .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection));
    match outcome {
        Ok(_) => true,
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!(
                "{test}: redis at {} is unreachable and CI is set: {error}",
                redis_url()
            )
        }
        Err(error) => {
            eprintln!(
                "skipped: {test}: redis at {} is unreachable: {error}",
                redis_url()
            );
            false
        }
    }
}

/// A queue whose keys are deleted when it is dropped, even if the test panicked.
#[derive(Debug)]
pub struct TestQueue {
    pub queue: RedisQueue,
}

impl TestQueue {
    /// A queue on a fresh prefix with `configure` applied to the defaults.
    pub async fn new(configure: impl FnOnce(&mut RedisQueueConfig)) -> Self {
        let mut config = RedisQueueConfig::new(random_prefix());
        configure(&mut config);
        Self::with_config(config).await
    }

    /// A queue with exactly this configuration.
    pub async fn with_config(config: RedisQueueConfig) -> Self {
        let queue = RedisQueue::connect(&redis_url(), config)
            .await
            .expect("connect to the test redis");
        Self { queue }
    }
}

impl Deref for TestQueue {
    type Target = RedisQueue;
    fn deref(&self) -> &RedisQueue {
        &self.queue
    }
}

/// Deletes every key under `prefix`, synchronously (usable in `Drop`).
pub fn purge_prefix(prefix: &str) {
    let Ok(mut connection) = redis::Client::open(redis_url()).and_then(|c| c.get_connection())
    else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}:*"))
        .query(&mut connection)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<u64, _> = redis::cmd("DEL").arg(&keys).query(&mut connection);
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        purge_prefix(&self.queue.config().prefix);
    }
}
