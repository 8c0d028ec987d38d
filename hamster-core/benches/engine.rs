//! Engine benchmarks: matching against 10,000 stored handlers, and the throughput of the
//! in-memory engine on no-op 3-step pipelines whose args are templates.
//!
//! `cargo bench -p hamster-core --bench engine`

use async_trait::async_trait;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hamster_core::action::{
    Action, ActionContext, ActionError, ActionOutput, ActionRegistry, ArgsError,
};
use hamster_core::engine::{Engine, EngineConfig};
use hamster_core::event::{EventRecord, Repository, SourceRecord};
use hamster_core::memory::{MemoryQueue, MemoryStore};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Noop;

#[async_trait]
impl Action for Noop {
    fn name(&self) -> &str {
        "noop"
    }
    fn validate_args(&self, _args: &Value) -> Result<(), ArgsError> {
        Ok(())
    }
    async fn run(
        &self,
        args: Value,
        _ctx: &ActionContext<'_>,
    ) -> Result<ActionOutput, ActionError> {
        Ok(ActionOutput::success().with("output", args))
    }
}

fn event(payload: &Value) -> EventRecord {
    EventRecord {
        name: "pull_request.opened".into(),
        delivery_id: None,
        source: SourceRecord {
            kind: "pull_request".into(),
            repository: Repository::new("github.com", "Codertocat", "Hello-World"),
            fields: json!({"repository": "Hello-World", "owner": "Codertocat", "user": "Codertocat", "number": 2, "title": "Update the README with new information."}).into(),
            checkout: None,
            deferred: vec![],
        },
        data: json!({"action": "opened", "sender": "Codertocat", "payload": payload}).into(),
    }
}

fn registry() -> ActionRegistry {
    let mut registry = ActionRegistry::new();
    registry.register(Noop).expect("one action");
    registry
}

fn engine(rt: &tokio::runtime::Runtime, yaml: &str) -> Engine {
    let engine = Engine::builder(Arc::new(MemoryStore::new()), Arc::new(MemoryQueue::new()))
        .registry(registry())
        .config(EngineConfig {
            handler_refresh: Duration::from_secs(3600),
            ..EngineConfig::default()
        })
        .build();
    rt.block_on(engine.put_handlers(yaml, "bench.yaml"))
        .expect("valid handlers");
    engine
}

fn payload() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/github-webhooks/pull_request/opened.payload.json"
    ))
    .expect("fixture");
    serde_json::from_str(&text).expect("json")
}

fn matching(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // 10,000 handlers over 100 event names; 100 of them react to pull_request.opened, each
    // with its own criteria (so nothing is shared between evaluations).
    let mut yaml = String::new();
    for i in 0..10_000 {
        let event = if i % 100 == 0 {
            "pull_request.opened".to_owned()
        } else {
            format!("event_{}.created", i % 99)
        };
        let criteria = if i % 2 == 0 {
            format!("source.repository is Repo-{i}")
        } else {
            format!("source.number > {i} and event.sender not in [\"bot-{i}\"]")
        };
        yaml.push_str(&format!("- name: h{i}\n  events: [{event}]\n  criteria: '{criteria}'\n  actions: [{{action: noop, args: ['{{{{ source.title }}}}']}}]\n"));
    }
    let engine = engine(&rt, &yaml);
    let event = event(&payload());
    let (matched, unmatched) = rt.block_on(engine.match_event(&event)).expect("match");
    assert_eq!(matched.len() + unmatched.len(), 100);
    let mut group = c.benchmark_group("matching");
    group.bench_function(
        BenchmarkId::new("10k_handlers_100_for_event", "criteria"),
        |b| {
            b.iter(|| rt.block_on(engine.match_event(&event)).expect("match"));
        },
    );
    group.finish();
}

const PIPELINE: &str = r#"name: three steps
events: [pull_request.opened]
criteria: source.repository is Hello-World
actions:
  - action: noop
    name: first
    args: ['hello {{ source.user }} on {{ source.repository }}#{{ source.number }}']
  - action: noop
    name: second
    args: {text: '{{ first.output }} / {{ event.sender }}', number: '{{ source.number }}'}
  - action: noop
    name: third
    args: ['{{ second.output.text }} done']
"#;

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let engine = engine(&rt, PIPELINE);
    let event = event(&payload());
    let mut group = c.benchmark_group("pipelines");
    group.sample_size(10);
    group.bench_function("dispatch_and_run_1000_three_step_pipelines", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let start = Instant::now();
                rt.block_on(async {
                    for _ in 0..1000 {
                        engine
                            .dispatch(std::slice::from_ref(&event), None)
                            .await
                            .expect("dispatch");
                    }
                    let done = engine.run_until_idle().await.expect("run");
                    assert_eq!(done.len(), 1000);
                });
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, matching, throughput);
criterion_main!(benches);
