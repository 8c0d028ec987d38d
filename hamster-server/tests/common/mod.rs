//! Shared test fixtures: an engine on in-memory backends, a router over it, requests.
#![allow(dead_code, clippy::unwrap_used)]

use async_trait::async_trait;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use hamster_core::action::ActionRegistry;
use hamster_core::engine::Engine;
use hamster_core::handler::HandlerSpec;
use hamster_core::memory::{MemoryQueue, MemoryStore};
use hamster_core::store::{
    DeliveryOutcome, DeliveryRecord, HandlerId, HandlerRecord, LogChunk, RunFilter, RunId,
    RunRecord, RunStatus, StepRecord, Store, StoreError,
};
use hamster_core::testing::RecordingAction;
use hamster_server::{ServerConfig, router};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower::ServiceExt;

pub const TOKEN: &str = "s3cret-api-token";
pub const SECRET: &str = "It's a Secret to Everybody";

/// Matches the `pull_request/opened` fixture (Codertocat/Hello-World#2).
pub const GREET: &str = r#"
name: greet
events: [pull_request.opened]
actions:
  - action: record
    args: ["hello {{ source.number }}"]
"#;

/// Reacts to the same event, but its criteria are false for the fixture.
pub const ELSEWHERE: &str = r#"
name: elsewhere
events: [pull_request.*]
criteria: source.repository == "Other"
actions:
  - action: record
"#;

pub struct Harness {
    pub engine: Engine,
    pub store: Arc<FlakyStore>,
    pub queue: Arc<MemoryQueue>,
    pub router: Router,
    pub action: RecordingAction,
}

/// Default config: the webhook secret and one API token, fast log polling.
pub fn config() -> ServerConfig {
    ServerConfig {
        webhook_secret: Some(SECRET.to_owned()),
        api_tokens: vec![TOKEN.to_owned()],
        log_poll_interval: Duration::from_millis(10),
        ..ServerConfig::default()
    }
}

pub async fn harness() -> Harness {
    harness_with(config(), &[GREET, ELSEWHERE]).await
}

pub async fn harness_with(config: ServerConfig, handlers: &[&str]) -> Harness {
    let store = Arc::new(FlakyStore::default());
    let queue = Arc::new(MemoryQueue::new());
    let action = RecordingAction::new("record");
    let mut registry = ActionRegistry::new();
    registry.register(action.clone()).unwrap();
    let engine = Engine::builder(store.clone(), queue.clone())
        .registry(registry)
        .build();
    for text in handlers {
        engine.put_handlers(text, "<test>").await.unwrap();
    }
    Harness {
        router: router(engine.clone(), config),
        engine,
        store,
        queue,
        action,
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }
}

pub async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

/// An authenticated API request.
pub fn api(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
}

pub async fn get(router: &Router, uri: &str) -> Answer {
    send(router, api("GET", uri).body(Body::empty()).unwrap()).await
}

pub async fn post(router: &Router, uri: &str) -> Answer {
    send(router, api("POST", uri).body(Body::empty()).unwrap()).await
}

pub fn fixture(path: &str) -> Vec<u8> {
    let full = format!(
        "{}/../tests/fixtures/github-webhooks/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&full).unwrap_or_else(|error| panic!("{full}: {error}"))
}

pub fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A signed delivery as GitHub sends it.
pub fn delivery(event: &str, id: &str, body: Vec<u8>) -> Request<Body> {
    let signature = sign(&body);
    Request::builder()
        .method("POST")
        .uri("/webhooks/github")
        .header("x-github-event", event)
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", signature)
        .header("x-github-hook-id", "292430182")
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/044aadd")
        .body(Body::from(body))
        .unwrap()
}

pub fn run_id(value: &Value) -> RunId {
    value.as_str().unwrap().parse().unwrap()
}

/// A [`MemoryStore`] whose deliveries, run listing and ping can be made to fail like an
/// unreachable backend.
#[derive(Debug, Default)]
pub struct FlakyStore {
    pub inner: MemoryStore,
    pub down: AtomicBool,
}

impl FlakyStore {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::backend("connection refused (test)"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for FlakyStore {
    async fn create_handler(
        &self,
        spec: HandlerSpec,
        text: String,
    ) -> Result<HandlerRecord, StoreError> {
        self.inner.create_handler(spec, text).await
    }
    async fn update_handler(
        &self,
        id: HandlerId,
        spec: HandlerSpec,
        text: String,
        expected: Option<i64>,
    ) -> Result<HandlerRecord, StoreError> {
        self.inner.update_handler(id, spec, text, expected).await
    }
    async fn set_handler_enabled(
        &self,
        id: HandlerId,
        enabled: bool,
    ) -> Result<HandlerRecord, StoreError> {
        self.inner.set_handler_enabled(id, enabled).await
    }
    async fn delete_handler(&self, id: HandlerId) -> Result<bool, StoreError> {
        self.inner.delete_handler(id).await
    }
    async fn get_handler(&self, id: HandlerId) -> Result<Option<HandlerRecord>, StoreError> {
        self.inner.get_handler(id).await
    }
    async fn get_handler_by_name(&self, name: &str) -> Result<Option<HandlerRecord>, StoreError> {
        self.inner.get_handler_by_name(name).await
    }
    async fn list_handlers(&self) -> Result<Vec<HandlerRecord>, StoreError> {
        self.inner.list_handlers().await
    }
    async fn handlers_revision(&self) -> Result<u64, StoreError> {
        self.inner.handlers_revision().await
    }
    async fn record_delivery(
        &self,
        delivery: DeliveryRecord,
        runs: Vec<RunRecord>,
    ) -> Result<DeliveryOutcome, StoreError> {
        self.check()?;
        self.inner.record_delivery(delivery, runs).await
    }
    async fn get_delivery(&self, id: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        self.inner.get_delivery(id).await
    }
    async fn list_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.inner.list_deliveries(limit).await
    }
    async fn add_delivery_runs(&self, id: &str, runs: Vec<RunRecord>) -> Result<(), StoreError> {
        self.inner.add_delivery_runs(id, runs).await
    }
    async fn create_runs(&self, runs: Vec<RunRecord>) -> Result<(), StoreError> {
        self.inner.create_runs(runs).await
    }
    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        self.inner.get_run(id).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.check()?;
        self.inner.list_runs(filter).await
    }
    async fn transition_run(
        &self,
        id: RunId,
        from: &[RunStatus],
        to: RunStatus,
        error: Option<String>,
    ) -> Result<Option<RunRecord>, StoreError> {
        self.inner.transition_run(id, from, to, error).await
    }
    async fn count_runs_by_status(&self) -> Result<BTreeMap<RunStatus, u64>, StoreError> {
        self.inner.count_runs_by_status().await
    }
    async fn record_step(&self, run: RunId, step: StepRecord) -> Result<(), StoreError> {
        self.inner.record_step(run, step).await
    }
    async fn list_steps(&self, run: RunId) -> Result<Vec<StepRecord>, StoreError> {
        self.inner.list_steps(run).await
    }
    async fn append_log(&self, run: RunId, key: &str, text: &str) -> Result<(), StoreError> {
        self.inner.append_log(run, key, text).await
    }
    async fn read_log(&self, run: RunId, key: &str, offset: u64) -> Result<LogChunk, StoreError> {
        self.inner.read_log(run, key, offset).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.ping().await
    }
}
