//! Why a [`RedisQueue`](crate::RedisQueue) could not be created.

use hamster_core::queue::QueueError;

/// Why [`RedisQueue::connect`](crate::RedisQueue::connect) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not a Redis URL. The URL itself is not repeated: it may hold a password.
    #[error(
        "the Redis URL is invalid ({reason}); expected redis://[[user]:password@]host[:port][/db] or rediss://…"
    )]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The key prefix cannot be used.
    #[error("the queue prefix {prefix:?} is invalid: {reason}")]
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
        /// What to change.
        reason: &'static str,
    },
    /// Redis did not answer.
    #[error(
        "redis at {address} is unreachable: {reason} (check that Redis is running and that the URL, password and TLS settings are right)"
    )]
    Unreachable {
        /// `host:port` (never the password).
        address: String,
        /// The underlying error.
        reason: String,
    },
    /// Redis answered but cannot run the queue (for example, scripting is disabled).
    #[error("redis at {address} cannot host the queue: {reason}")]
    Unsupported {
        /// `host:port`.
        address: String,
        /// What Redis said.
        reason: String,
    },
}

impl From<ConnectError> for QueueError {
    fn from(error: ConnectError) -> Self {
        QueueError::Backend(error.to_string())
    }
}
