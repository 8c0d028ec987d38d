//! Throughput of the PostgreSQL store's hot writes, against the real local server.
//!
//! ```text
//! cargo bench -p hamster-store-postgres --bench record_step
//! ```
//!
//! Each measurement spreads its operations over 8 concurrent writers (as 8 workers would)
//! sharing one pool of 8 connections, so criterion's "thrpt" is operations per second for
//! the whole store. Uses `HAMSTER_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1/test`) and a throw-away schema.

use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hamster_core::event::{EventRecord, Repository, SourceRecord};
use hamster_core::handler::HandlerSpec;
use hamster_core::store::{
    DeliveryRecord, HandlerId, RunId, RunRecord, RunStatus, StepRecord, StepStatus, Store,
};
use hamster_store_postgres::{PostgresConfig, PostgresStore};
use serde_json::json;
use sqlx::Connection;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

const WRITERS: u64 = 8;

fn database_url() -> String {
    std::env::var("HAMSTER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1/test".to_owned())
}

fn run_record() -> RunRecord {
    let handler: HandlerSpec = serde_json::from_value(json!({
        "name": "linter",
        "events": ["pull_request.opened"],
        "actions": [{"action": "shell_command", "args": ["pylint ./"]}],
    }))
    .expect("a valid handler");
    RunRecord {
        id: RunId::new(),
        handler_id: HandlerId::new(),
        handler_name: "linter".to_owned(),
        handler_version: 1,
        handler,
        event: EventRecord {
            name: "pull_request.opened".to_owned(),
            delivery_id: None,
            source: SourceRecord {
                kind: "pull_request".to_owned(),
                repository: Repository::new("github.com", "octo", "hello"),
                fields: json!({"number": 7, "title": "Fix the thing"}).into(),
                checkout: None,
                deferred: Vec::new(),
            },
            data: json!({"action": "opened", "sender": {"login": "octocat"}}).into(),
        },
        repository: "octo/hello".to_owned(),
        delivery_id: None,
        status: RunStatus::Queued,
        created_at: Utc::now(),
        started_at: None,
        finished_at: None,
        error: None,
    }
}

fn step_record(key: String) -> StepRecord {
    StepRecord {
        key,
        name: "linter".to_owned(),
        action: "shell_command".to_owned(),
        status: StepStatus::Success,
        attempt: 1,
        started_at: Utc::now(),
        finished_at: Some(Utc::now()),
        data: json!({"output": "All checks passed.\n", "exit_code": 0})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        error: None,
    }
}

/// Runs `iterations` operations split over [`WRITERS`] tasks; `operation(writer, n)`.
async fn concurrently<F, Fut>(iterations: u64, operation: F) -> Duration
where
    F: Fn(u64, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let operation = operation.clone();
            let share = iterations / WRITERS + u64::from(writer < iterations % WRITERS);
            tokio::spawn(async move {
                for n in 0..share {
                    operation(writer, n).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a writer panicked");
    }
    started.elapsed()
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let schema = format!("hamster_bench_{}", Uuid::new_v4().simple());
    let connected = runtime.block_on(PostgresStore::connect(
        &database_url(),
        PostgresConfig {
            schema: Some(schema.clone()),
            max_connections: WRITERS as u32,
            ..PostgresConfig::default()
        },
    ));
    let store = match connected {
        Ok(store) => store,
        Err(error) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL is required under CI: {error}"
            );
            eprintln!("skipped: record_step bench: {error}");
            return;
        }
    };

    // One run per writer; every iteration records a new step key, as a pipeline does.
    let runs: Vec<RunId> = runtime.block_on(async {
        let runs: Vec<RunRecord> = (0..WRITERS).map(|_| run_record()).collect();
        let ids = runs.iter().map(|run| run.id).collect();
        store.create_runs(runs).await.expect("creating the runs");
        ids
    });

    let mut group = c.benchmark_group("postgres_store");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(10));

    // The same schema, with step writes committed asynchronously.
    let relaxed = runtime
        .block_on(PostgresStore::connect(
            &database_url(),
            PostgresConfig {
                schema: Some(schema.clone()),
                max_connections: WRITERS as u32,
                durable_step_writes: false,
                ..PostgresConfig::default()
            },
        ))
        .expect("connecting the relaxed store");

    let mut round = 0_u64;
    for (name, store) in [
        ("record_step (8 writers)", &store),
        (
            "record_step (8 writers, durable_step_writes = false)",
            &relaxed,
        ),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_custom(|iterations| {
                round += 1;
                let (store, runs, round) = (store.clone(), runs.clone(), round);
                concurrently(iterations, move |writer, n| {
                    let (store, run) = (store.clone(), runs[writer as usize]);
                    async move {
                        store
                            .record_step(run, step_record(format!("{round}.{n}")))
                            .await
                            .expect("recording a step");
                    }
                })
            })
        });
    }

    group.bench_function("record_delivery with 1 run (8 writers)", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            let store = store.clone();
            concurrently(iterations, move |_, _| {
                let store = store.clone();
                async move {
                    let run = run_record();
                    let delivery = DeliveryRecord {
                        id: Uuid::new_v4().to_string(),
                        event: "pull_request".to_owned(),
                        received_at: Utc::now(),
                        headers: BTreeMap::from([(
                            "x-github-event".to_owned(),
                            "pull_request".to_owned(),
                        )]),
                        body: vec![b'x'; 4096],
                        run_ids: vec![run.id],
                        body_is_payload: false,
                    };
                    store
                        .record_delivery(delivery, vec![run])
                        .await
                        .expect("recording a delivery");
                }
            })
        })
    });

    // Every iteration moves the writer's run to running from queued or running, so each
    // compare-and-set succeeds and writes.
    group.bench_function("transition_run (8 writers)", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            let (store, runs) = (store.clone(), runs.clone());
            concurrently(iterations, move |writer, _| {
                let (store, run) = (store.clone(), runs[writer as usize]);
                async move {
                    let moved = store
                        .transition_run(
                            run,
                            &[RunStatus::Queued, RunStatus::Running],
                            RunStatus::Running,
                            None,
                        )
                        .await
                        .expect("transitioning a run");
                    assert!(moved.is_some());
                }
            })
        })
    });
    group.finish();

    runtime.block_on(async {
        store.close().await;
        relaxed.close().await;
        match sqlx::PgConnection::connect(&database_url()).await {
            Ok(mut admin) => {
                let statement = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                if let Err(error) = sqlx::query(&statement).execute(&mut admin).await {
                    eprintln!("could not drop bench schema {schema}: {error}");
                }
            }
            Err(error) => eprintln!("could not drop bench schema {schema}: {error}"),
        }
    });
}

criterion_group!(postgres_store, benches);
criterion_main!(postgres_store);
