//! Hamster's embedded default: a [`Store`](hamster_core::store::Store) and a
//! [`Queue`](hamster_core::queue::Queue) on one SQLite file.
//!
//! This is what `hamster serve` uses: handlers, runs, step results, logs, deliveries and
//! pending jobs survive restarts, with no server to install.
//!
//! ```no_run
//! use hamster_core::engine::Engine;
//! use hamster_store_sqlite::SqliteBackend;
//! use std::sync::Arc;
//!
//! # async fn example() -> Result<(), hamster_store_sqlite::OpenError> {
//! let backend = SqliteBackend::open("data/hamster.db").await?;
//! // One backend is both the store and the queue.
//! let engine = Engine::builder(Arc::new(backend.clone()), Arc::new(backend)).build();
//! # Ok(())
//! # }
//! ```
//!
//! ## Design
//!
//! - **One file, one type.** [`SqliteBackend`] implements both `Store` and `Queue`, so that
//!   a run and its job live in the same file. It is cheap to clone; clones share the
//!   connections. Several processes may open the same file (a second worker, a CLI).
//! - **One writer connection, a few readers.** SQLite has a single writer at a time; when
//!   many connections race for it they spin in the busy handler and, for transactions that
//!   read before they write, fail with `SQLITE_BUSY` whatever the timeout. So every write in
//!   a process goes through one connection, owned by a writer task (writers queue in tokio,
//!   not in SQLite); every transaction starts with `BEGIN IMMEDIATE` (the write lock is
//!   taken up front, so it waits for other processes instead of failing), and reads use a
//!   separate pool of [`SqliteOptions::readers`] `query_only` connections, which WAL lets
//!   run concurrently with the writer. The busy timeout ([`SqliteOptions::busy_timeout`])
//!   only matters between processes.
//! - **Group commit.** sqlx runs each SQLite connection on its own thread, so every command
//!   is a round trip between threads; those context switches, not SQLite, dominate the cost
//!   of a write (see `docs/benchmarks/sqlite.md`). So each write is a fixed list of
//!   statements with no decision taken in between (`record_delivery` inserts its runs
//!   `WHERE NOT EXISTS` the delivery, then the delivery `ON CONFLICT DO NOTHING`), and the
//!   writer task commits all the writes that queued up while it was busy as one
//!   transaction. Each caller gets its own statements' results; if anything in the group
//!   fails, it is rolled back and its writes are executed again one by one, so an error
//!   fails only the write that caused it. Writes in a group are concurrent (no caller has an
//!   answer yet), so any order is a valid one: they are sorted by their statements (writes
//!   with the same statements keep their order) and sent as a few SQL texts of identical
//!   writes in power-of-two counts, `BEGIN IMMEDIATE` with the first and `COMMIT` with the
//!   last. So there are few distinct texts, each is prepared once and then found in sqlx's
//!   statement cache, and a group costs one round trip per text. A write whose caller
//!   stopped waiting is still executed. The rare writes that decide between statements
//!   (`create_runs`, `add_delivery_runs`) run alone in a transaction of their own.
//! - **Durability.** WAL journal mode with `synchronous=NORMAL`: a committed transaction
//!   survives the process crashing or being killed (SIGKILL) at any point, since it is in
//!   the WAL file in the OS's page cache; an OS crash or power loss may lose the last
//!   transactions committed before it (never corrupt the file), because the WAL is only
//!   fsynced at checkpoints. Foreign keys are enforced (steps and logs need their run).
//! - **Atomic operations.** Every write is atomic; deliveries and their runs are written
//!   in one transaction;
//!   `transition_run` is one conditional `UPDATE … RETURNING`; steps are upserted by
//!   `(run, key)` and keep the order of their first insert; logs are stored as appended
//!   chunks indexed by their end offset, so appending never rewrites a log and reading
//!   from an offset is a range scan. The handlers' revision is a counter bumped by
//!   triggers.
//! - **Queue.** Jobs are rows in states `ready`, `delayed`, `leased` and `dead`. Ready jobs
//!   are delivered oldest-enqueued first. A `receive` leases in one `BEGIN IMMEDIATE`
//!   transaction that first promotes due delayed jobs and expires overdue leases
//!   (redelivery with `attempt + 1`, or dead letter "lease expired"). `ack`, `extend`,
//!   `retry` and `release` are single statements that check the lease token and that the
//!   lease has not expired.
//! - **How `receive` waits.** It wakes at once when this process enqueues, releases or
//!   re-queues a job (an in-process `Notify`), at the earliest known due time of a delayed
//!   job or lease, and otherwise every [`SqliteOptions::poll_interval`] (50 ms) to see jobs
//!   other processes wrote. Each look is a cheap read on a reader connection; the writer is
//!   used only when a job is deliverable.
//! - **Time** is stored as integer microseconds since the Unix epoch (UTC), read from the
//!   wall clock of the process that writes; processes sharing a file should share a clock.
//! - Queries are checked at run time (`sqlx::query` + `bind`), so building needs no
//!   database; the schema is applied by embedded migrations when the file is opened.

mod checkpoint;
mod error;
mod queue;
mod store;
mod time;
mod writer;

pub use error::OpenError;

use checkpoint::Checkpointer;
use sqlx::ConnectOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use writer::Writer;

/// The schema's migrations, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How [`SqliteBackend::open_with`] opens the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long a write waits for another process holding the write lock before it fails
    /// (default 5 s). Writers in the same process never wait on SQLite: they queue for the
    /// process's single writer connection.
    pub busy_timeout: Duration,
    /// Connections used for reads, concurrently with the writer (default 4, at least 1).
    pub readers: u32,
    /// How often a waiting [`receive`](hamster_core::queue::Queue::receive) looks for jobs
    /// written by other processes (default 50 ms). Jobs enqueued by this process wake it
    /// at once.
    pub poll_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            readers: 4,
            poll_interval: Duration::from_millis(50),
        }
    }
}

/// A [`Store`](hamster_core::store::Store) and a [`Queue`](hamster_core::queue::Queue) on
/// one SQLite file. Cheap to clone: clones share the connections.
///
/// Behaviour where the contracts leave a choice is the same as
/// [`MemoryStore`](hamster_core::memory::MemoryStore)'s and
/// [`MemoryQueue`](hamster_core::memory::MemoryQueue)'s, except that ready jobs are
/// delivered oldest-enqueued first (a released, retried or re-queued job keeps its place),
/// and that timestamps are kept to the microsecond.
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The task that owns the one connection every write of this process goes through.
    writer: Writer,
    /// The task that checkpoints the WAL, off the writer's commits.
    checkpointer: Checkpointer,
    /// `query_only` connections for reads.
    readers: SqlitePool,
    /// Wakes receivers waiting in this process when a job became ready.
    job_ready: Notify,
    poll_interval: Duration,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// Opens the database at `path` with the default [`SqliteOptions`], creating the file
    /// and its parent directories if they are missing, and applies the migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens the database at `path` with `options`; see [`open`](Self::open).
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            tokio::fs::create_dir_all(parent).await.map_err(|source| {
                OpenError::CreateDirectory {
                    path: parent.to_path_buf(),
                    source,
                }
            })?;
        }
        let connect = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            // Sorting and temporary indexes never touch the disk.
            .pragma("temp_store", "memory")
            // Checkpoints run on a connection of their own (see `checkpoint`), never in a
            // commit. Durability is unchanged: a commit is in the WAL either way.
            .pragma("wal_autocheckpoint", "0")
            // Statements are not logged one by one (slow ones still are): at thousands of
            // statements per second even a disabled log costs a little each time.
            .log_statements(log::LevelFilter::Off);
        let open_failed = |source| OpenError::Open {
            path: path.clone(),
            source,
        };
        // The writer's texts are few but come in up to four forms each (with or without
        // `BEGIN` / `COMMIT`; see `writer`): room for all of them in the statement cache.
        let mut writer = connect
            .clone()
            .statement_cache_capacity(256)
            .connect()
            .await
            .map_err(open_failed)?;
        MIGRATOR
            .run(&mut writer)
            .await
            .map_err(|source| OpenError::Migrate {
                path: path.clone(),
                source,
            })?;
        let checkpointer = Checkpointer::start(connect.connect().await.map_err(open_failed)?);
        let readers = SqlitePoolOptions::new()
            .max_connections(options.readers.max(1))
            .test_before_acquire(false)
            .connect_with(connect.pragma("query_only", "ON"))
            .await
            .map_err(open_failed)?;
        tracing::debug!(path = %path.display(), "opened the SQLite store and queue");
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Writer::start(writer),
                checkpointer,
                readers,
                job_ready: Notify::new(),
                poll_interval: options.poll_interval.max(Duration::from_millis(1)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes every connection, waiting for operations in progress; later operations fail.
    /// Dropping the last clone closes them too, without waiting.
    pub async fn close(&self) {
        self.inner.checkpointer.stop();
        self.inner.writer.close().await;
        self.inner.readers.close().await;
    }

    /// The writer; writes of this process queue there.
    fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    fn readers(&self) -> &SqlitePool {
        &self.inner.readers
    }
}
