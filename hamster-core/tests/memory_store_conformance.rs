//! Runs the store conformance suite against [`MemoryStore`], and measures its throughput.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".

use chrono::Utc;
use hamster_core::memory::MemoryStore;
use hamster_core::store::{RunStatus, StepRecord, StepStatus, Store};
use hamster_core::testing::{sample_handler, sample_run, store_conformance};
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_store_conformance_suite() {
    store_conformance(|| async { MemoryStore::new() }).await;
}

/// What the engine does to the store for one run of a three-step pipeline.
async fn one_run(store: &MemoryStore, handler: &hamster_core::store::HandlerRecord) {
    let run = sample_run(handler, "octo/hello");
    let id = run.id;
    store.create_runs(vec![run]).await.unwrap();
    store.get_run(id).await.unwrap().unwrap();
    store
        .transition_run(id, &[RunStatus::Queued], RunStatus::Running, None)
        .await
        .unwrap()
        .unwrap();
    for key in ["0", "1", "2"] {
        let mut step = StepRecord {
            key: key.to_owned(),
            name: format!("step {key}"),
            action: "shell_command".to_owned(),
            status: StepStatus::Running,
            attempt: 1,
            started_at: Utc::now(),
            finished_at: None,
            data: serde_json::Map::new(),
            error: None,
        };
        store.record_step(id, step.clone()).await.unwrap();
        store.append_log(id, key, "compiling…\nok\n").await.unwrap();
        step.status = StepStatus::Success;
        step.finished_at = Some(Utc::now());
        step.data
            .insert("exit_code".to_owned(), serde_json::Value::from(0));
        store.record_step(id, step).await.unwrap();
    }
    store
        .transition_run(id, &[RunStatus::Running], RunStatus::Succeeded, None)
        .await
        .unwrap()
        .unwrap();
}

/// `cargo test --release -p hamster-core --features testing --test memory_store_conformance
/// -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it in release mode"]
async fn memory_store_throughput() {
    const TASKS: usize = 8;
    const RUNS_PER_TASK: usize = 25_000;
    let store = MemoryStore::new();
    let handler = store
        .create_handler(sample_handler("bench"), String::new())
        .await
        .unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                for _ in 0..RUNS_PER_TASK {
                    one_run(&store, &handler).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let runs = TASKS * RUNS_PER_TASK;
    let counts = store.count_runs_by_status().await.unwrap();
    assert_eq!(counts[&RunStatus::Succeeded], runs as u64);
    eprintln!(
        "memory store: {runs} runs (create, get, 2 transitions, 3 steps recorded twice, 3 log appends) in {elapsed:.2?}: {:.0} runs/s",
        runs as f64 / elapsed.as_secs_f64()
    );

    let started = Instant::now();
    let filter = hamster_core::store::RunFilter {
        status: Some(RunStatus::Succeeded),
        ..Default::default()
    };
    const LISTS: u32 = 1000;
    for _ in 0..LISTS {
        assert_eq!(store.list_runs(&filter).await.unwrap().len(), 100);
    }
    eprintln!(
        "memory store: list_runs (100 of {runs}) {:.1?} per call",
        started.elapsed() / LISTS
    );
}
