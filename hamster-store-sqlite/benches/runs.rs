//! Full runs recorded per second on one SQLite file (WAL, `synchronous=NORMAL`).
//!
//! A full run is what the engine writes for a 3-step run: `record_delivery` with its run,
//! `transition_run` to running, 3 × (`record_step` running, `record_step` finished),
//! `transition_run` to succeeded — 9 write transactions.
//!
//! `cargo bench -p hamster-store-sqlite --bench runs`
//! (`HAMSTER_BENCH_RUNS=<n>` changes how many runs each scenario records.)
#![allow(clippy::unwrap_used)] // A benchmark that cannot write has nothing to report.

use chrono::Utc;
use hamster_core::store::{
    DeliveryRecord, HandlerRecord, RunStatus, StepRecord, StepStatus, Store,
};
use hamster_core::testing::{sample_handler, sample_run};
use hamster_store_sqlite::SqliteBackend;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

async fn full_run(backend: &SqliteBackend, handler: &HandlerRecord, delivery: String) {
    let run = sample_run(handler, "octo/bench");
    let delivery = DeliveryRecord {
        id: delivery,
        event: "pull_request".to_owned(),
        received_at: Utc::now(),
        headers: BTreeMap::from([("x-github-event".to_owned(), "pull_request".to_owned())]),
        body: br#"{"action":"opened","number":7}"#.to_vec(),
        run_ids: vec![run.id],
        body_is_payload: false,
    };
    backend
        .record_delivery(delivery, vec![run.clone()])
        .await
        .unwrap();
    backend
        .transition_run(run.id, &[RunStatus::Queued], RunStatus::Running, None)
        .await
        .unwrap()
        .unwrap();
    for (index, name) in ["checkout", "lint", "comment"].into_iter().enumerate() {
        let mut step = StepRecord {
            key: index.to_string(),
            name: name.to_owned(),
            action: "shell_command".to_owned(),
            status: StepStatus::Running,
            attempt: 1,
            started_at: Utc::now(),
            finished_at: None,
            data: serde_json::Map::new(),
            error: None,
        };
        backend.record_step(run.id, step.clone()).await.unwrap();
        step.status = StepStatus::Success;
        step.finished_at = Some(Utc::now());
        step.data = json!({"output": "Your code has been rated at 10.00/10", "exit_code": 0})
            .as_object()
            .cloned()
            .unwrap();
        backend.record_step(run.id, step).await.unwrap();
    }
    backend
        .transition_run(run.id, &[RunStatus::Running], RunStatus::Succeeded, None)
        .await
        .unwrap()
        .unwrap();
}

/// Records `runs` full runs with `tasks` concurrent tasks spread over `backends` backends
/// on the same file (each backend has its own writer connection, as separate processes
/// would); returns runs per second.
async fn scenario(path: &Path, runs: usize, tasks: usize, backends: usize) -> f64 {
    let mut opened = Vec::new();
    for _ in 0..backends {
        opened.push(SqliteBackend::open(path).await.unwrap());
    }
    let handler = match opened[0].get_handler_by_name("bench").await.unwrap() {
        Some(handler) => handler,
        None => opened[0]
            .create_handler(sample_handler("bench"), String::new())
            .await
            .unwrap(),
    };
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|task| {
            let backend = opened[task % backends].clone();
            let handler = handler.clone();
            // Unique across scenarios: a repeated delivery id would store no run.
            let prefix = format!("{}-{task}", uuid::Uuid::now_v7());
            tokio::spawn(async move {
                for index in (task..runs).step_by(tasks) {
                    full_run(&backend, &handler, format!("{prefix}-{index}")).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    for backend in &opened {
        backend.close().await;
    }
    runs as f64
        / elapsed
            .as_secs_f64()
            .max(Duration::from_micros(1).as_secs_f64())
}

fn main() {
    let runs: usize = std::env::var("HAMSTER_BENCH_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(5000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("bench.db");
    runtime.block_on(async {
        // Warm up: creates the file and the handler, fills the statement caches' disk pages.
        scenario(&path, 200, 1, 1).await;
        for (tasks, backends, label) in [
            (1, 1, "1 task, 1 writer connection"),
            (16, 1, "16 tasks, 1 writer connection (the default)"),
            (
                16,
                4,
                "16 tasks, 4 writer connections (4 backends on the file)",
            ),
        ] {
            let rate = scenario(&path, runs, tasks, backends).await;
            println!(
                "sqlite full runs ({runs} runs, 9 write transactions each): {label}: \
                 {rate:.0} runs/s ({:.0} writes/s)",
                rate * 9.0
            );
        }
    });
}
