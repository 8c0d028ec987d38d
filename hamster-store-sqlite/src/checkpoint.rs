//! WAL checkpoints on a connection of their own, off the write path.
//!
//! A checkpoint copies the WAL's pages into the database file and fsyncs it. SQLite runs it
//! by default in whichever connection's commit crosses `wal_autocheckpoint`, which here is
//! the one writer: under intake load, a quarter of the writer thread's time went to
//! checkpoints, during which no write of the process could commit. A `PASSIVE` checkpoint
//! on another connection never blocks the writer (it copies what is committed and stops
//! where the writer is), so the writer connection turns automatic checkpoints off and this
//! task runs them on its own thread instead.

use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the WAL is checkpointed. Short enough that the WAL stays small (it holds what
/// was written in this long), long enough that each checkpoint copies hot pages once.
const INTERVAL: Duration = Duration::from_millis(250);

/// The checkpointing task; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    task: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts checkpointing with `connection`, which it owns from now on.
    pub(crate) fn start(connection: SqliteConnection) -> Self {
        Self {
            task: tokio::spawn(run(connection)),
        }
    }
}

impl Checkpointer {
    /// Stops checkpointing (the connection closes with the task).
    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(mut connection: SqliteConnection) {
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut connection)
            .await
        {
            Ok(row) => {
                // (busy, frames in the WAL, frames checkpointed)
                let frames: i64 = row.try_get(1).unwrap_or_default();
                let copied: i64 = row.try_get(2).unwrap_or_default();
                tracing::trace!(frames, copied, "WAL checkpoint");
            }
            Err(sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed) => break,
            // Another process's checkpoint holds the lock, or the disk is full: the WAL
            // keeps every commit meanwhile, and the next tick tries again.
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed; retrying"),
        }
    }
    let _ = connection.close().await;
}
