//! A worker process killed with SIGKILL in the middle of a run: a second worker process
//! on the same SQLite file finishes the run without re-running the step that had finished.
//!
//! Worker processes are this test binary re-executed with `HAMSTER_SQLITE_CRASH_DB` set.
#![allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hamster_core::action::{ActionContext, ActionError, ActionOutput, ActionRegistry, TypedAction};
use hamster_core::engine::{Engine, WorkerConfig};
use hamster_core::event::{EventRecord, Repository, SourceRecord};
use hamster_core::queue::{
    DeadLetter, JobId, Lease, NewJob, Queue, QueueError, QueueStats, RetryOutcome,
};
use hamster_core::store::{RunId, RunStatus, StepStatus, Store};
use hamster_store_sqlite::SqliteBackend;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

const TEST_NAME: &str = "a_run_interrupted_by_sigkill_is_finished_by_the_next_worker";
const DB: &str = "HAMSTER_SQLITE_CRASH_DB";
const RUN: &str = "HAMSTER_SQLITE_CRASH_RUN";
/// Short, so that the killed worker's job is redelivered quickly.
const LEASE: Duration = Duration::from_secs(1);

const HANDLER: &str = r#"name: crash-test
events: [push]
actions:
  - action: count
    name: one
    args: {step: one}
  - action: count
    name: two
    args: {step: two, block_first: true}
  - action: count
    name: three
    args: {step: three}
"#;

/// Counts its executions in `<dir>/<step>.count`, one line each; with `block_first`, the
/// first execution writes `<dir>/<step>.started` and then hangs until it is killed.
#[derive(Debug)]
struct Count {
    directory: PathBuf,
}

#[derive(serde::Deserialize)]
struct CountArgs {
    step: String,
    #[serde(default)]
    block_first: bool,
}

fn append_line(path: &Path, line: &str) -> usize {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
    file.sync_all().unwrap();
    lines(path)
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

#[async_trait]
impl TypedAction for Count {
    const NAME: &'static str = "count";
    type Args = CountArgs;
    async fn run(
        &self,
        args: CountArgs,
        _ctx: &ActionContext<'_>,
    ) -> Result<ActionOutput, ActionError> {
        let executions = append_line(
            &self.directory.join(format!("{}.count", args.step)),
            &std::process::id().to_string(),
        );
        if args.block_first && executions == 1 {
            append_line(&self.directory.join(format!("{}.started", args.step)), "");
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Ok(ActionOutput::success().with("executions", executions))
    }
}

/// Delegates to the SQLite queue and writes every lease it hands out to `leases.log`.
#[derive(Debug)]
struct CountingQueue {
    inner: SqliteBackend,
    log: PathBuf,
}

#[async_trait]
impl Queue for CountingQueue {
    async fn enqueue(&self, job: NewJob) -> Result<JobId, QueueError> {
        self.inner.enqueue(job).await
    }
    async fn receive(
        &self,
        lease_for: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>, QueueError> {
        let lease = self.inner.receive(lease_for, wait).await?;
        if let Some(lease) = &lease {
            append_line(
                &self.log,
                &format!("{} attempt {}", lease.job.id, lease.job.attempt),
            );
        }
        Ok(lease)
    }
    async fn extend(
        &self,
        lease: &Lease,
        lease_for: Duration,
    ) -> Result<DateTime<Utc>, QueueError> {
        self.inner.extend(lease, lease_for).await
    }
    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        self.inner.ack(lease).await
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
        self.inner.release(lease).await
    }
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, QueueError> {
        self.inner.dead_letters(limit).await
    }
    async fn requeue_dead_letter(&self, id: &JobId) -> Result<bool, QueueError> {
        self.inner.requeue_dead_letter(id).await
    }
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.inner.stats().await
    }
}

fn engine(backend: &SqliteBackend, queue: Arc<dyn Queue>, directory: &Path) -> Engine {
    let mut registry = ActionRegistry::new();
    registry
        .register(Count {
            directory: directory.to_path_buf(),
        })
        .unwrap();
    Engine::builder(Arc::new(backend.clone()), queue)
        .registry(registry)
        .build()
}

fn push_event() -> EventRecord {
    EventRecord {
        name: "push".to_owned(),
        delivery_id: None,
        source: SourceRecord {
            kind: "commit".to_owned(),
            repository: Repository::new("github.com", "octo", "hello"),
            fields: json!({}).into(),
            checkout: None,
            deferred: Vec::new(),
        },
        data: json!({}).into(),
    }
}

/// Worker mode: run a worker on the file until the run is over.
async fn worker(db: &Path, run: RunId) {
    let directory = db.parent().unwrap();
    let backend = SqliteBackend::open(db).await.unwrap();
    let queue = Arc::new(CountingQueue {
        inner: backend.clone(),
        log: directory.join("leases.log"),
    });
    let engine = engine(&backend, queue, directory);
    let worker = engine.worker(WorkerConfig {
        concurrency: 1,
        lease: LEASE,
        poll_wait: Duration::from_millis(200),
        retry_backoff: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(5),
    });
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { worker.run(shutdown).await }
    });
    loop {
        let status = backend.get_run(run).await.unwrap().unwrap().status;
        if status.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

fn spawn_worker(db: &Path, run: RunId) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(DB, db)
        .env(RUN, run.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_interrupted_by_sigkill_is_finished_by_the_next_worker() {
    if let (Ok(db), Ok(run)) = (std::env::var(DB), std::env::var(RUN)) {
        worker(Path::new(&db), run.parse().unwrap()).await;
        return;
    }

    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let db = dir.join("hamster.db");
    let backend = SqliteBackend::open(&db).await.unwrap();
    let engine = engine(&backend, Arc::new(backend.clone()), dir);
    engine.put_handlers(HANDLER, "crash.yaml").await.unwrap();
    let dispatch = engine.dispatch(&[push_event()], None).await.unwrap();
    let run = dispatch.runs[0];
    // Nothing of this process stays open: the workers find everything in the file.
    drop(engine);
    backend.close().await;
    drop(backend);

    let count = |step: &str| lines(&dir.join(format!("{step}.count")));
    let mut first = spawn_worker(&db, run);
    wait_for("the first worker to block in step two", || {
        dir.join("two.started").exists()
    })
    .await;
    first.kill().await.unwrap(); // SIGKILL on Unix.
    assert_eq!((count("one"), count("two"), count("three")), (1, 1, 0));

    let mut second = spawn_worker(&db, run);
    let status = tokio::time::timeout(Duration::from_secs(60), second.wait())
        .await
        .expect("the second worker finishes the run within a minute")
        .unwrap();
    assert!(status.success(), "the second worker failed: {status}");

    assert_eq!(
        count("one"),
        1,
        "step one finished before the kill: not run again"
    );
    assert_eq!(count("two"), 2, "step two was interrupted: run again");
    assert_eq!(count("three"), 1, "step three ran once");
    let backend = SqliteBackend::open(&db).await.unwrap();
    let finished = backend.get_run(run).await.unwrap().unwrap();
    assert_eq!(finished.status, RunStatus::Succeeded, "{finished:?}");
    let steps = backend.list_steps(run).await.unwrap();
    let summary: Vec<(&str, StepStatus, u32)> = steps
        .iter()
        .map(|step| (step.name.as_str(), step.status, step.attempt))
        .collect();
    assert_eq!(
        summary,
        [
            ("one", StepStatus::Success, 1),
            ("two", StepStatus::Success, 2),
            ("three", StepStatus::Success, 1),
        ]
    );
    let leases = std::fs::read_to_string(dir.join("leases.log")).unwrap();
    let attempts: Vec<&str> = leases
        .lines()
        .map(|line| line.split_once(' ').map_or(line, |(_, attempt)| attempt))
        .collect();
    assert_eq!(
        attempts,
        ["attempt 1", "attempt 2"],
        "the job ran twice: once per worker"
    );
    assert_eq!(backend.stats().await.unwrap(), QueueStats::default());
}
