//! Webhook intake throughput and latency, in process: signed `pull_request.opened`
//! deliveries (25 KB fixture) sent through the full router (tracing, timeout, signature,
//! parse, dispatch) onto the in-memory store and queue, with 64 concurrent senders.
//!
//! `cargo bench -p hamster-server --bench webhook_intake`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::Request;
use hamster_core::action::ActionRegistry;
use hamster_core::engine::Engine;
use hamster_core::memory::{MemoryQueue, MemoryStore};
use hamster_core::testing::RecordingAction;
use hamster_server::{ServerConfig, router};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const SECRET: &str = "bench-secret";
const DELIVERIES: usize = 40_000;
const CONCURRENCY: usize = 64;

const HANDLERS: &str = r#"
- name: greet
  events: [pull_request.opened]
  actions:
    - action: record
      args: ["hello {{ source.number }}"]
- name: elsewhere
  events: [pull_request.*]
  criteria: source.repository == "Other"
  actions:
    - action: record
"#;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let mut registry = ActionRegistry::new();
    registry.register(RecordingAction::new("record")).unwrap();
    let engine = Engine::builder(Arc::new(MemoryStore::new()), Arc::new(MemoryQueue::new()))
        .registry(registry)
        .build();
    engine.put_handlers(HANDLERS, "<bench>").await.unwrap();
    let app = router(
        engine,
        ServerConfig {
            webhook_secret: Some(SECRET.to_owned()),
            ..ServerConfig::default()
        },
    );
    let body = bytes(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/github-webhooks/pull_request/opened.payload.json"
        ))
        .unwrap(),
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));

    let request = |id: usize| {
        Request::post("/webhooks/github")
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", format!("bench-{id}"))
            .header("x-hub-signature-256", &signature)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(Body::from(body.clone()))
            .unwrap()
    };
    // Warm up.
    for id in 0..1_000 {
        let response = app.clone().oneshot(request(id)).await.unwrap();
        assert_eq!(response.status(), 202);
    }

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(CONCURRENCY);
    for worker in 0..CONCURRENCY {
        let app = app.clone();
        let requests: Vec<_> = (0..DELIVERIES / CONCURRENCY)
            .map(|i| request(1_000 + worker * DELIVERIES + i))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(requests.len());
            for request in requests {
                let sent = Instant::now();
                let response = app.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), 202);
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(DELIVERIES);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "webhook intake (memory backends, {} B body, {CONCURRENCY} concurrent): {} deliveries in {:.2?} = {:.0}/s; p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        body.len(),
        latencies.len(),
        elapsed,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(0.50),
        percentile(0.99),
        latencies[latencies.len() - 1],
    );
}

fn bytes(data: Vec<u8>) -> axum::body::Bytes {
    axum::body::Bytes::from(data)
}
