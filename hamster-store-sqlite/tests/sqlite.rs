//! What only a file-backed backend can get wrong: surviving a reopen, several connections
//! (as several processes would) writing at once, and opening.
#![allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".

use chrono::Utc;
use hamster_core::queue::{NewJob, Queue, QueueStats};
use hamster_core::store::{
    DeliveryOutcome, DeliveryRecord, RunFilter, RunStatus, StepRecord, StepStatus, Store,
};
use hamster_core::testing::{sample_handler, sample_run};
use hamster_store_sqlite::{OpenError, SqliteBackend};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);

fn step(key: &str, status: StepStatus) -> StepRecord {
    StepRecord {
        key: key.to_owned(),
        name: format!("step {key}"),
        action: "shell_command".to_owned(),
        status,
        attempt: 1,
        started_at: Utc::now(),
        finished_at: status.is_terminal().then(Utc::now),
        data: json!({"output": "ok ✓"}).as_object().cloned().unwrap(),
        error: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_runs_steps_logs_deliveries_and_jobs_survive_a_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("nested/dirs/hamster.db");

    let backend = SqliteBackend::open(&path).await.unwrap();
    let handler = backend
        .create_handler(sample_handler("lint"), "name: lint\n".to_owned())
        .await
        .unwrap();
    let revision = backend.handlers_revision().await.unwrap();
    let run = sample_run(&handler, "octo/hello");
    let delivery = DeliveryRecord {
        id: "d-1".to_owned(),
        event: "pull_request".to_owned(),
        received_at: Utc::now(),
        headers: BTreeMap::from([("x-github-event".to_owned(), "pull_request".to_owned())]),
        body: b"{\"action\":\"opened\"}".to_vec(),
        run_ids: vec![run.id],
        body_is_payload: false,
    };
    backend
        .record_delivery(delivery.clone(), vec![run.clone()])
        .await
        .unwrap();
    let running = backend
        .transition_run(run.id, &[RunStatus::Queued], RunStatus::Running, None)
        .await
        .unwrap()
        .unwrap();
    backend
        .record_step(run.id, step("0", StepStatus::Success))
        .await
        .unwrap();
    backend
        .record_step(run.id, step("1", StepStatus::Running))
        .await
        .unwrap();
    backend
        .append_log(run.id, "1", "first line\n")
        .await
        .unwrap();
    backend.append_log(run.id, "1", "second ✓\n").await.unwrap();
    let pending = backend
        .enqueue(NewJob::new(json!({"run": run.id})))
        .await
        .unwrap();
    let leased = backend.enqueue(NewJob::new(json!("leased"))).await.unwrap();
    let steps = backend.list_steps(run.id).await.unwrap();
    backend.close().await;
    drop(backend);

    let reopened = SqliteBackend::open(&path).await.unwrap();
    assert_eq!(
        reopened.get_handler(handler.id).await.unwrap(),
        Some(handler.clone())
    );
    assert_eq!(reopened.handlers_revision().await.unwrap(), revision);
    assert_eq!(reopened.get_run(run.id).await.unwrap(), Some(running));
    assert_eq!(reopened.list_steps(run.id).await.unwrap(), steps);
    let log = reopened.read_log(run.id, "1", 0).await.unwrap();
    assert_eq!(log.text, "first line\nsecond ✓\n");
    assert_eq!(log.next_offset, log.text.len() as u64);
    let stored = reopened.get_delivery("d-1").await.unwrap().unwrap();
    assert_eq!(stored.body, delivery.body);
    assert_eq!(
        reopened
            .record_delivery(delivery, Vec::new())
            .await
            .unwrap(),
        DeliveryOutcome::Duplicate(vec![run.id]),
        "the delivery id is still known after a reopen"
    );
    let first = reopened.receive(MINUTE, Duration::ZERO).await.unwrap();
    assert_eq!(first.as_ref().map(|lease| &lease.job.id), Some(&pending));
    assert_eq!(
        first.unwrap().job.payload,
        json!({"run": run.id}),
        "the payload survives"
    );
    let second = reopened.receive(MINUTE, Duration::ZERO).await.unwrap();
    assert_eq!(second.map(|lease| lease.job.id), Some(leased));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_when_the_process_stopped_expires_after_a_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("hamster.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let id = backend.enqueue(NewJob::new(json!("held"))).await.unwrap();
    let lease = backend
        .receive(Duration::from_millis(300), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    backend.close().await;

    let reopened = SqliteBackend::open(&path).await.unwrap();
    let stats = reopened.stats().await.unwrap();
    assert_eq!(stats.leased, 1, "{stats:?}");
    let redelivered = reopened
        .receive(MINUTE, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("redelivered once the lease expired");
    assert_eq!((redelivered.job.id, redelivered.job.attempt), (id, 2));
    assert!(reopened.ack(&lease).await.is_err(), "the old lease is lost");
}

/// Two backends on one file have two writer connections, as two processes would: their
/// writes contend for SQLite's lock for real.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_file_never_fail_with_busy() {
    const TASKS: usize = 8;
    const RUNS_PER_TASK: usize = 40;
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("hamster.db");
    let first = SqliteBackend::open(&path).await.unwrap();
    let second = SqliteBackend::open(&path).await.unwrap();
    let handler = first
        .create_handler(sample_handler("busy"), String::new())
        .await
        .unwrap();

    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let backend = if task % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                for index in 0..RUNS_PER_TASK {
                    let run = sample_run(&handler, "octo/busy");
                    let delivery = DeliveryRecord {
                        id: format!("d-{task}-{index}"),
                        event: "push".to_owned(),
                        received_at: Utc::now(),
                        headers: BTreeMap::new(),
                        body: Vec::new(),
                        run_ids: vec![run.id],
                        body_is_payload: false,
                    };
                    backend.record_delivery(delivery, vec![run.clone()]).await?;
                    backend.enqueue(NewJob::new(json!(run.id))).await?;
                    backend
                        .transition_run(run.id, &[RunStatus::Queued], RunStatus::Running, None)
                        .await?;
                    for key in ["0", "1"] {
                        backend
                            .record_step(run.id, step(key, StepStatus::Running))
                            .await?;
                        backend.append_log(run.id, key, "output\n").await?;
                        backend
                            .record_step(run.id, step(key, StepStatus::Success))
                            .await?;
                    }
                    backend
                        .transition_run(run.id, &[RunStatus::Running], RunStatus::Succeeded, None)
                        .await?;
                    if let Some(lease) = backend.receive(MINUTE, Duration::ZERO).await? {
                        backend.ack(&lease).await?;
                    }
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // Whatever the receives above left behind is still there, exactly once.
    let mut drained = HashSet::new();
    while let Some(lease) = second.receive(MINUTE, Duration::ZERO).await.unwrap() {
        assert!(drained.insert(lease.job.id.clone()), "delivered twice");
        second.ack(&lease).await.unwrap();
    }
    assert_eq!(first.stats().await.unwrap(), QueueStats::default());
    let counts = first.count_runs_by_status().await.unwrap();
    assert_eq!(
        counts[&RunStatus::Succeeded],
        (TASKS * RUNS_PER_TASK) as u64
    );
    let filter = RunFilter {
        limit: Some(1000),
        ..RunFilter::default()
    };
    assert_eq!(
        second.list_runs(&filter).await.unwrap().len(),
        TASKS * RUNS_PER_TASK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_receive_sees_a_job_another_process_enqueued() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("hamster.db");
    let consumer = SqliteBackend::open(&path).await.unwrap();
    let producer = SqliteBackend::open(&path).await.unwrap();
    let waiter = tokio::spawn({
        let consumer = consumer.clone();
        async move { consumer.receive(MINUTE, Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let enqueued_at = std::time::Instant::now();
    let id = producer.enqueue(NewJob::new(json!("hello"))).await.unwrap();
    let lease = waiter.await.unwrap().unwrap().expect("the job");
    let latency = enqueued_at.elapsed();
    assert_eq!(lease.job.id, id);
    // The default poll interval is 50 ms; leave room for a loaded machine.
    assert!(latency < Duration::from_millis(500), "took {latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_changes_by_another_process_change_the_revision() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("hamster.db");
    let appserver = SqliteBackend::open(&path).await.unwrap();
    let cli = SqliteBackend::open(&path).await.unwrap();
    let before = appserver.handlers_revision().await.unwrap();
    let created = cli
        .create_handler(sample_handler("from-cli"), String::new())
        .await
        .unwrap();
    assert_ne!(appserver.handlers_revision().await.unwrap(), before);
    assert_eq!(
        appserver
            .get_handler_by_name("from-cli")
            .await
            .unwrap()
            .map(|handler| handler.id),
        Some(created.id)
    );
}

#[tokio::test]
async fn the_file_is_in_wal_mode_with_foreign_keys_enforced() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("hamster.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    assert!(path.with_extension("db-wal").exists(), "a WAL file exists");
    let unknown = hamster_core::store::RunId::new();
    let error = backend
        .record_step(unknown, step("0", StepStatus::Running))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            hamster_core::store::StoreError::NotFound { what: "run", .. }
        ),
        "{error:?}"
    );
    let mut raw = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn opening_a_directory_says_which_path_is_wrong() {
    let directory = tempfile::tempdir().unwrap();
    let error = SqliteBackend::open(directory.path()).await.unwrap_err();
    assert!(matches!(error, OpenError::Open { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&directory.path().display().to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn clones_share_one_database_and_debug_shows_only_the_path() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("hamster.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let clone = backend.clone();
    let store: Arc<dyn Store> = Arc::new(backend.clone());
    let queue: Arc<dyn Queue> = Arc::new(clone.clone());
    queue
        .enqueue(NewJob::new(json!("secret payload")))
        .await
        .unwrap();
    assert_eq!(backend.stats().await.unwrap().ready, 1);
    store
        .create_handler(sample_handler("shared"), String::new())
        .await
        .unwrap();
    assert!(clone.get_handler_by_name("shared").await.unwrap().is_some());
    let debug = format!("{backend:?}");
    assert!(
        debug.contains("hamster.db") && !debug.contains("secret"),
        "{debug}"
    );
    assert_eq!(backend.path(), path);
}

/// The writer never checkpoints (`wal_autocheckpoint=0`); a task of the backend does, so
/// what is committed reaches the database file without anyone asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_writes_are_checkpointed_into_the_file_in_the_background() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("hamster.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let handler = backend
        .create_handler(sample_handler("checkpointed"), String::new())
        .await
        .unwrap();
    let file_size = || std::fs::metadata(&path).unwrap().len();
    let before = file_size();
    let runs: Vec<_> = (0..200)
        .map(|_| sample_run(&handler, "octo/hello"))
        .collect();
    backend.create_runs(runs).await.unwrap();
    let wal = std::fs::metadata(directory.path().join("hamster.db-wal"))
        .unwrap()
        .len();
    assert!(wal > 100_000, "the runs should be in the WAL: {wal} bytes");

    // The runs take more than half their WAL frames' size once in the file.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while file_size() < before + wal / 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the runs were not checkpointed into the file within 5 s: {} bytes, {before} before, \
             WAL {wal}",
            file_size()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    backend.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_the_delivery_body_is_stored_once() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("hamster.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let handler = backend
        .create_handler(sample_handler("once"), String::new())
        .await
        .unwrap();
    let body = br#"{"action":"opened","marker":"only-in-the-payload"}"#;
    let mut run = sample_run(&handler, "octo/hello");
    run.delivery_id = Some("d-once".to_owned());
    run.event.data = Arc::new(
        json!({"action": "opened", "payload": serde_json::from_slice::<serde_json::Value>(body).unwrap()}),
    );
    let delivery = DeliveryRecord {
        id: "d-once".to_owned(),
        event: "pull_request".to_owned(),
        received_at: Utc::now(),
        headers: BTreeMap::new(),
        body: body.to_vec(),
        run_ids: vec![run.id],
        body_is_payload: true,
    };
    backend
        .record_delivery(delivery, vec![run.clone()])
        .await
        .unwrap();
    backend.close().await;

    let mut raw = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    let (kept_apart, event): (bool, String) =
        sqlx::query_as("SELECT payload_in_delivery, event FROM runs WHERE id = ?")
            .bind(run.id.to_string())
            .fetch_one(&mut raw)
            .await
            .unwrap();
    assert!(kept_apart);
    assert!(!event.contains("only-in-the-payload"), "{event}");
    drop(raw);

    let backend = SqliteBackend::open(&path).await.unwrap();
    assert_eq!(
        backend.get_run(run.id).await.unwrap().unwrap().event,
        run.event
    );
    backend.close().await;
}
