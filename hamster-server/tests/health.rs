//! `/healthz`, `/readyz` and `/metrics`.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use hamster_github::client::ClientStats;
use hamster_server::{ServerConfig, ServerMetrics};
use std::sync::Arc;
use std::time::Duration;

async fn unauthenticated_get(h: &Harness, uri: &str) -> Answer {
    send(&h.router, Request::get(uri).body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn healthz_and_readyz_answer_without_a_token() {
    let h = harness().await;
    let health = unauthenticated_get(&h, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = unauthenticated_get(&h, "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["store"], "ok");
    assert_eq!(ready.json()["queue"], "ok");
}

#[tokio::test]
async fn readyz_is_503_naming_the_backend_that_failed() {
    let h = harness().await;
    h.store.set_down(true);
    let ready = unauthenticated_get(&h, "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let json = ready.json();
    assert!(
        json["store"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{json}"
    );
    assert_eq!(json["queue"], "ok");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .starts_with("not ready: store:"),
        "{json}"
    );
    // Liveness does not depend on the backends.
    assert_eq!(
        unauthenticated_get(&h, "/healthz").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_count_deliveries_runs_queue_steps_and_github_calls() {
    let metrics = ServerMetrics::new();
    let config = ServerConfig {
        metrics: metrics.clone(),
        github_stats: Some(Arc::new(|| {
            Some(ClientStats {
                succeeded: 12,
                refused: 1,
                rate_limit_remaining: Some(4321),
                ..ClientStats::default()
            })
        })),
        ..config()
    };
    let h = harness_with(config, &[GREET]).await;
    let body = fixture("pull_request/opened.payload.json");
    send(&h.router, delivery("pull_request", "d1", body.clone())).await;
    send(&h.router, delivery("pull_request", "d1", body.clone())).await;
    send(
        &h.router,
        delivery("issues", "d2", fixture("issues/opened.payload.json")),
    )
    .await;
    let mut unsigned = delivery("pull_request", "d3", body);
    unsigned.headers_mut().remove("x-hub-signature-256");
    send(&h.router, unsigned).await;
    metrics.observe_step("shell_command", "success", Duration::from_millis(1500));

    let answer = unauthenticated_get(&h, "/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = answer.text();
    for line in [
        r#"hamster_webhook_deliveries_total{event="pull_request",outcome="runs_created"} 1"#,
        r#"hamster_webhook_deliveries_total{event="pull_request",outcome="duplicate"} 1"#,
        r#"hamster_webhook_deliveries_total{event="issues",outcome="unmatched"} 1"#,
        r#"hamster_webhook_deliveries_total{event="unverified",outcome="unauthorized"} 1"#,
        "hamster_runs_created_total 1",
        r#"hamster_runs{status="queued"} 1"#,
        r#"hamster_runs{status="succeeded"} 0"#,
        r#"hamster_queue_jobs{state="ready"} 1"#,
        r#"hamster_github_api_calls_total{outcome="succeeded"} 12"#,
        r#"hamster_github_api_calls_total{outcome="refused"} 1"#,
        "hamster_github_rate_limit_remaining 4321",
        r#"hamster_step_duration_seconds_bucket{action="shell_command",status="success",le="5"} 1"#,
        r#"hamster_step_duration_seconds_bucket{action="shell_command",status="success",le="1"} 0"#,
        "# HELP hamster_webhook_deliveries_total GitHub webhook deliveries received",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

#[tokio::test]
async fn two_routers_keep_separate_metrics() {
    let a = harness().await;
    let b = harness().await;
    send(
        &a.router,
        delivery("ping", "p", fixture("ping/payload.json")),
    )
    .await;
    let a_text = unauthenticated_get(&a, "/metrics").await.text();
    let b_text = unauthenticated_get(&b, "/metrics").await.text();
    assert!(a_text.contains(r#"outcome="ping"} 1"#), "{a_text}");
    assert!(!b_text.contains(r#"outcome="ping""#), "{b_text}");
}
