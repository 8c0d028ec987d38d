//! `POST /webhooks/github`: every answer it gives.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use hamster_core::store::{RunStatus, Store};
use hamster_server::ServerConfig;
use serde_json::json;

const ID: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

#[tokio::test]
async fn a_matching_delivery_is_recorded_and_its_runs_queued() {
    let h = harness().await;
    let body = fixture("pull_request/opened.payload.json");
    let answer = send(&h.router, delivery("pull_request", ID, body.clone())).await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["delivery"], ID);
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert!(json.get("duplicate").is_none());
    // `elsewhere` reacted to the event but its criteria were false: say so.
    assert_eq!(json["unmatched"][0]["handler"], "elsewhere");

    let stored = h.store.get_delivery(ID).await.unwrap().unwrap();
    assert_eq!(stored.body, body, "the body is stored exactly as received");
    assert_eq!(stored.event, "pull_request");
    assert_eq!(stored.run_ids, vec![run_id(&runs[0])]);
    assert_eq!(stored.headers["x-github-hook-id"], "292430182");
    assert_eq!(stored.headers["user-agent"], "GitHub-Hookshot/044aadd");
    assert!(stored.headers["x-hub-signature-256"].starts_with("sha256="));
    let run = h.store.get_run(run_id(&runs[0])).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.repository, "Codertocat/Hello-World");
    // Intake read only part of the payload; the run reads back with all of it.
    assert!(stored.body_is_payload);
    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(run.event.data["payload"], payload);

    // The job is on the queue: executing it calls the action with the rendered args.
    h.engine.run_until_idle().await.unwrap();
    assert_eq!(h.action.calls(), vec![json!(["hello 2"])]);
}

#[tokio::test]
async fn a_delivery_no_handler_matches_says_why() {
    let h = harness().await;
    let body = fixture("pull_request/closed.payload.json");
    let answer = send(&h.router, delivery("pull_request", ID, body)).await;

    assert_eq!(answer.status, StatusCode::OK);
    let json = answer.json();
    assert_eq!(json["runs"], json!([]));
    assert_eq!(
        json["unmatched"],
        json!([{
            "handler": "elsewhere",
            "event": "pull_request.closed",
            "reason": "criteria `source.repository == \"Other\"` is false for this event"
        }])
    );
    // Recorded all the same, for re-processing later.
    assert!(h.store.get_delivery(ID).await.unwrap().is_some());
}

#[tokio::test]
async fn a_redelivery_returns_the_first_runs_and_creates_nothing() {
    let h = harness().await;
    let body = fixture("pull_request/opened.payload.json");
    let first = send(&h.router, delivery("pull_request", ID, body.clone())).await;
    let again = send(&h.router, delivery("pull_request", ID, body)).await;

    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(again.json()["runs"], first.json()["runs"]);
    assert_eq!(h.queue_ready().await, 1, "the redelivery enqueued nothing");

    // A redelivery of one that had no runs is a 200.
    let closed = fixture("pull_request/closed.payload.json");
    send(
        &h.router,
        delivery("pull_request", "other-id", closed.clone()),
    )
    .await;
    let again = send(&h.router, delivery("pull_request", "other-id", closed)).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(again.json()["runs"], json!([]));
}

#[tokio::test]
async fn a_ping_is_answered_and_not_recorded() {
    let h = harness().await;
    let answer = send(
        &h.router,
        delivery("ping", ID, fixture("ping/payload.json")),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["ping"], true);
    assert!(answer.json()["zen"].is_string());
    assert!(h.store.get_delivery(ID).await.unwrap().is_none());
}

#[tokio::test]
async fn bad_or_missing_signatures_are_401() {
    let h = harness().await;
    let body = fixture("pull_request/opened.payload.json");

    let mut tampered = delivery("pull_request", ID, body.clone());
    tampered.headers_mut().insert(
        "x-hub-signature-256",
        sign(b"another body").parse().unwrap(),
    );
    let answer = send(&h.router, tampered).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );

    let mut unsigned = delivery("pull_request", ID, body);
    unsigned.headers_mut().remove("x-hub-signature-256");
    let answer = send(&h.router, unsigned).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("X-Hub-Signature-256")
    );
    assert!(h.store.get_delivery(ID).await.unwrap().is_none());
}

#[tokio::test]
async fn without_a_secret_unsigned_deliveries_are_accepted() {
    let config = ServerConfig {
        webhook_secret: None,
        ..config()
    };
    let h = harness_with(config, &[GREET]).await;
    let mut request = delivery(
        "pull_request",
        ID,
        fixture("pull_request/opened.payload.json"),
    );
    request.headers_mut().remove("x-hub-signature-256");
    assert_eq!(send(&h.router, request).await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn malformed_deliveries_are_400_naming_the_problem() {
    let h = harness().await;
    let answer = send(
        &h.router,
        delivery("pull_request", ID, b"{\"action\": ".to_vec()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("not valid JSON at line 1"), "{error}");

    let answer = send(&h.router, delivery("pull_request", ID, b"[1, 2]".to_vec())).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("an array")
    );

    let mut no_event = delivery("pull_request", ID, b"{}".to_vec());
    no_event.headers_mut().remove("x-github-event");
    let answer = send(&h.router, no_event).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("X-GitHub-Event")
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let config = ServerConfig {
        body_limit: 1024,
        ..config()
    };
    let h = harness_with(config, &[GREET]).await;
    let body = fixture("pull_request/opened.payload.json");
    assert!(body.len() > 1024);

    // Announced by Content-Length: refused before reading.
    let mut request = delivery("pull_request", ID, body.clone());
    request
        .headers_mut()
        .insert("content-length", body.len().to_string().parse().unwrap());
    let answer = send(&h.router, request).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("1024 byte limit")
    );

    // Streamed without a length: refused while reading.
    let stream = futures::stream::iter(
        body.chunks(512)
            .map(|chunk| Ok::<_, std::io::Error>(axum::body::Bytes::copy_from_slice(chunk)))
            .collect::<Vec<_>>(),
    );
    let mut request = delivery("pull_request", ID, Vec::new());
    *request.body_mut() = Body::from_stream(stream);
    let answer = send(&h.router, request).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_default_limit_is_25_mib() {
    let h = harness().await;
    let body = vec![b' '; 25 * 1024 * 1024 + 1];
    let answer = send(&h.router, delivery("pull_request", ID, body)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_failing_store_is_503_and_a_later_redelivery_succeeds() {
    let h = harness().await;
    let body = fixture("pull_request/opened.payload.json");
    h.store.set_down(true);
    let answer = send(&h.router, delivery("pull_request", ID, body.clone())).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("store") && error.contains("redeliver"),
        "{error}"
    );

    h.store.set_down(false);
    let answer = send(&h.router, delivery("pull_request", ID, body)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert!(answer.json().get("duplicate").is_none());
}

#[tokio::test]
async fn form_encoded_deliveries_are_accepted() {
    let h = harness().await;
    let json = fixture("pull_request/opened.payload.json");
    let form: String = form_urlencoded_payload(&json);
    let mut request = delivery("pull_request", ID, form.into_bytes());
    request.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    let answer = send(&h.router, request).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    // The body is a form, not the payload: the run keeps its payload itself.
    let stored = h.store.get_delivery(ID).await.unwrap().unwrap();
    assert!(!stored.body_is_payload);
    let run = run_id(&answer.json()["runs"][0]);
    let run = h.store.get_run(run).await.unwrap().unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(run.event.data["payload"], payload);
}

/// Criteria may read any field of the payload, not only those intake reads for sources.
#[tokio::test]
async fn criteria_on_payload_fields_intake_does_not_read() {
    const ON_PAYLOAD: &str = r#"
name: small changes
events: [pull_request.opened]
criteria: event.payload.pull_request.additions < 10 and event.payload.pull_request.mergeable_state == "unknown"
actions:
  - action: record
    args: ["{{ event.payload.pull_request.additions }} addition"]
"#;
    const LARGE: &str = r#"
name: large changes
events: [pull_request.opened]
criteria: event.payload.pull_request.additions >= 10
actions:
  - action: record
"#;
    let h = harness_with(config(), &[ON_PAYLOAD, LARGE]).await;
    let body = fixture("pull_request/opened.payload.json");
    let answer = send(&h.router, delivery("pull_request", ID, body)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["runs"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["unmatched"][0]["handler"], "large changes");
    h.engine.run_until_idle().await.unwrap();
    assert_eq!(h.action.calls(), vec![json!(["1 addition"])]);
}

fn form_urlencoded_payload(json: &[u8]) -> String {
    let mut out = String::from("payload=");
    for &byte in json {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[tokio::test]
async fn get_on_the_webhook_is_405_and_unknown_paths_404() {
    let h = harness().await;
    let request = Request::get("/webhooks/github")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&h.router, request).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let answer = send(
        &h.router,
        Request::get("/nope").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.json()["error"].as_str().unwrap().contains("/nope"));
}

trait QueueReady {
    async fn queue_ready(&self) -> u64;
}

impl QueueReady for Harness {
    async fn queue_ready(&self) -> u64 {
        use hamster_core::queue::Queue;
        self.queue.stats().await.unwrap().ready
    }
}
