//! The REST API under `/api`.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use common::*;
use hamster_core::queue::{NewJob, Queue};
use hamster_core::store::{RunId, StepRecord, StepStatus, Store};
use hamster_server::ServerConfig;
use serde_json::{Value, json};
use std::time::Duration;

fn handler_request(method: &str, uri: &str, content_type: &str, body: &str) -> Request<Body> {
    api(method, uri)
        .header("content-type", content_type)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// Sends the `pull_request/opened` fixture and returns the run it created.
async fn one_run(h: &Harness, delivery_id: &str) -> RunId {
    let answer = send(
        &h.router,
        delivery(
            "pull_request",
            delivery_id,
            fixture("pull_request/opened.payload.json"),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    run_id(&answer.json()["runs"][0])
}

#[tokio::test]
async fn every_api_request_needs_a_configured_token() {
    let h = harness().await;
    let missing = send(
        &h.router,
        Request::get("/api/handlers").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    assert!(missing.json()["error"].as_str().unwrap().contains("Bearer"));

    for header in [
        "Bearer wrong",
        "Basic czNjcmV0",
        "Bearer",
        &format!("Bearer {TOKEN}x"),
    ] {
        let request = Request::get("/api/runs")
            .header("authorization", header)
            .body(Body::empty())
            .unwrap();
        let answer = send(&h.router, request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{header}");
    }
    // Mutations too, before any body is looked at.
    let answer = send(
        &h.router,
        Request::delete("/api/handlers/greet")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        h.store
            .get_handler_by_name("greet")
            .await
            .unwrap()
            .is_some()
    );

    assert_eq!(get(&h.router, "/api/handlers").await.status, StatusCode::OK);
}

#[tokio::test]
async fn with_no_token_configured_the_api_is_closed() {
    let config = ServerConfig {
        api_tokens: Vec::new(),
        ..config()
    };
    let h = harness_with(config, &[GREET]).await;
    let answer = get(&h.router, "/api/handlers").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("HAMSTER_API_TOKEN")
    );
    // Webhooks and health do not use API tokens.
    let ping = send(
        &h.router,
        delivery("ping", "p", fixture("ping/payload.json")),
    )
    .await;
    assert_eq!(ping.status, StatusCode::OK);
}

#[tokio::test]
async fn handlers_are_created_updated_and_listed() {
    let h = harness_with(config(), &[]).await;
    let yaml = "name: lint\nevents: [pull_request.opened]\nactions:\n  - action: record\n";
    let created = send(
        &h.router,
        handler_request("POST", "/api/handlers", "application/yaml", yaml),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert_eq!(created.json()["handlers"][0]["name"], "lint");
    assert_eq!(created.json()["handlers"][0]["version"], 1);
    assert_eq!(created.json()["handlers"][0]["source_text"], yaml);

    // The same name again updates it; JSON is accepted by Content-Type.
    let json_body = json!({
        "name": "lint",
        "events": ["pull_request.*"],
        "actions": [{"action": "record", "args": ["again"]}]
    })
    .to_string();
    let updated = send(
        &h.router,
        handler_request("POST", "/api/handlers", "application/json", &json_body),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.json()["handlers"][0]["version"], 2);

    let put = send(
        &h.router,
        handler_request(
            "PUT",
            "/api/handlers/fmt",
            "text/yaml",
            "name: fmt\nevents: push\nactions: [{action: record}]\n",
        ),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED);

    let list = get(&h.router, "/api/handlers").await.json();
    let names: Vec<&str> = list["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fmt", "lint"]);

    let one = get(&h.router, "/api/handlers/lint").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["spec"]["events"], json!(["pull_request.*"]));
    assert_eq!(
        get(&h.router, "/api/handlers/nope").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn invalid_handlers_are_422_with_positions_and_nothing_is_stored() {
    let h = harness_with(config(), &[]).await;
    let yaml = "name: lint\nevents: [pull_request.opened]\nactions:\n  - action: recrod\n";
    let answer = send(
        &h.router,
        handler_request("POST", "/api/handlers", "application/yaml", yaml),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let json = answer.json();
    let problem = &json["errors"][0];
    assert_eq!(problem["line"], 4, "{json}");
    assert_eq!(problem["column"], 13, "{json}");
    assert_eq!(problem["pointer"], "/actions/0/action");
    assert_eq!(problem["handler"], "lint");
    assert!(
        problem["message"].as_str().unwrap().contains("record"),
        "{json}"
    );
    assert!(h.store.list_handlers().await.unwrap().is_empty());

    // An unknown field is located at its key.
    let yaml = "name: lint\nevents: push\nactoins: []\nactions: []\n";
    let answer = send(
        &h.router,
        handler_request("POST", "/api/handlers", "application/yaml", yaml),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.json()["errors"][0]["line"], 3);
    assert_eq!(answer.json()["errors"][0]["pointer"], "/actoins");

    // Broken JSON sent as JSON is diagnosed by a JSON parser.
    let answer = send(
        &h.router,
        handler_request(
            "POST",
            "/api/handlers",
            "application/json",
            "{\n  \"name\": \n}",
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.json()["errors"][0]["line"], 3);
    assert!(
        answer.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );

    let answer = send(
        &h.router,
        handler_request("POST", "/api/handlers", "image/png", "name: x"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn put_requires_the_body_to_be_the_named_handler() {
    let h = harness().await;
    let answer = send(
        &h.router,
        handler_request(
            "PUT",
            "/api/handlers/greet",
            "application/yaml",
            "name: other\nevents: push\nactions: [{action: record}]\n",
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.json()["error"].as_str().unwrap().contains("`other`"));
    assert!(
        h.store
            .get_handler_by_name("other")
            .await
            .unwrap()
            .is_none()
    );

    let answer = send(
        &h.router,
        handler_request(
            "PUT",
            "/api/handlers/greet",
            "application/yaml",
            "name: greet\nevents: push\nactions: [{action: record}]\n",
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["handlers"][0]["version"], 2);
}

#[tokio::test]
async fn handlers_are_disabled_enabled_and_deleted() {
    let h = harness().await;
    let answer = post(&h.router, "/api/handlers/greet/disable").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["enabled"], false);

    // The engine sees it at once: the delivery does not match, and says why.
    let body = fixture("pull_request/opened.payload.json");
    let answer = send(&h.router, delivery("pull_request", "d1", body.clone())).await;
    assert_eq!(answer.status, StatusCode::OK);
    let reasons: Vec<Value> = answer.json()["unmatched"].as_array().unwrap().clone();
    assert!(reasons.contains(&json!({
        "handler": "greet", "event": "pull_request.opened", "reason": "the handler is disabled"
    })));

    assert_eq!(
        post(&h.router, "/api/handlers/greet/enable").await.json()["enabled"],
        true
    );
    let answer = send(&h.router, delivery("pull_request", "d2", body.clone())).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);

    let deleted = send(
        &h.router,
        api("DELETE", "/api/handlers/greet")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&h.router, "/api/handlers/greet").await.status,
        StatusCode::NOT_FOUND
    );
    let answer = send(&h.router, delivery("pull_request", "d3", body)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        post(&h.router, "/api/handlers/greet/enable").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn runs_are_listed_with_filters_and_paging() {
    let h = harness().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(one_run(&h, &format!("delivery-{i}")).await);
    }
    h.engine.run_until_idle().await.unwrap();
    // A fourth, still queued.
    ids.push(one_run(&h, "delivery-3").await);

    let all = get(&h.router, "/api/runs").await.json();
    let listed: Vec<RunId> = all["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| run_id(&r["id"]))
        .collect();
    assert_eq!(
        listed,
        ids.iter().rev().copied().collect::<Vec<_>>(),
        "newest first"
    );
    assert_eq!(all["runs"][0]["handler"], "greet");
    assert_eq!(all["runs"][0]["event"], "pull_request.opened");
    assert!(
        all["runs"][0].get("handler_id").is_none(),
        "listings carry summaries"
    );

    let queued = get(&h.router, "/api/runs?status=queued").await.json();
    assert_eq!(queued["runs"].as_array().unwrap().len(), 1);
    let succeeded = get(
        &h.router,
        "/api/runs?status=succeeded&handler=greet&repository=Codertocat/Hello-World",
    )
    .await
    .json();
    assert_eq!(succeeded["runs"].as_array().unwrap().len(), 3);
    let none = get(&h.router, "/api/runs?repository=someone/else")
        .await
        .json();
    assert_eq!(none["runs"], json!([]));

    let page = get(&h.router, "/api/runs?limit=2").await.json();
    assert_eq!(page["runs"].as_array().unwrap().len(), 2);
    let next = page["next_before"].as_str().unwrap();
    let page2 = get(&h.router, &format!("/api/runs?limit=2&before={next}"))
        .await
        .json();
    let page2_ids: Vec<RunId> = page2["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| run_id(&r["id"]))
        .collect();
    assert_eq!(page2_ids, vec![ids[1], ids[0]]);

    let third = &all["runs"][listed.len() - 3];
    assert_eq!(run_id(&third["id"]), ids[2]);
    let created = third["created_at"].as_str().unwrap();
    let older = get(
        &h.router,
        &format!("/api/runs?created_before={}", created.replace('+', "%2B")),
    )
    .await
    .json();
    let older_ids: Vec<RunId> = older["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| run_id(&r["id"]))
        .collect();
    assert_eq!(older_ids, vec![ids[1], ids[0]], "strictly before {created}");

    for (query, parameter) in [
        ("status=done", "`status`"),
        ("limit=0", "`limit`"),
        ("limit=ten", "`limit`"),
        ("before=not-a-uuid", "`before`"),
        ("created_before=yesterday", "`created_before`"),
    ] {
        let answer = get(&h.router, &format!("/api/runs?{query}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(parameter), "{query}: {error}");
    }
}

#[tokio::test]
async fn a_run_shows_its_steps_and_can_be_rerun_or_cancelled() {
    let h = harness().await;
    let first = one_run(&h, "d1").await;
    h.engine.run_until_idle().await.unwrap();

    let shown = get(&h.router, &format!("/api/runs/{first}")).await;
    assert_eq!(shown.status, StatusCode::OK);
    let json = shown.json();
    assert_eq!(json["run"]["status"], "succeeded");
    assert_eq!(json["run"]["event"]["name"], "pull_request.opened");
    assert_eq!(json["steps"][0]["action"], "record");
    assert_eq!(json["steps"][0]["status"], "success");

    // A finished run cannot be cancelled.
    let answer = post(&h.router, &format!("/api/runs/{first}/cancel")).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("succeeded")
    );

    let rerun = post(&h.router, &format!("/api/runs/{first}/rerun")).await;
    assert_eq!(rerun.status, StatusCode::ACCEPTED);
    let second = run_id(&rerun.json()["run"]);
    assert_ne!(second, first);
    assert_eq!(rerun.json()["rerun_of"], first.to_string());

    let cancelled = post(&h.router, &format!("/api/runs/{second}/cancel")).await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.json()["status"], "cancelled");
    let run = h.store.get_run(second).await.unwrap().unwrap();
    assert_eq!(run.status.as_str(), "cancelled");
    h.engine.run_until_idle().await.unwrap();
    assert_eq!(h.action.calls().len(), 1, "the cancelled run never ran");

    let unknown = RunId::new();
    for path in [format!("/api/runs/{unknown}")] {
        assert_eq!(get(&h.router, &path).await.status, StatusCode::NOT_FOUND);
    }
    for path in [
        format!("/api/runs/{unknown}/rerun"),
        format!("/api/runs/{unknown}/cancel"),
    ] {
        assert_eq!(
            post(&h.router, &path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let bad = get(&h.router, "/api/runs/123").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error"].as_str().unwrap().contains("UUID"));
}

fn step(status: StepStatus) -> StepRecord {
    StepRecord {
        key: "0".to_owned(),
        name: "build".to_owned(),
        action: "record".to_owned(),
        status,
        attempt: 1,
        started_at: Utc::now(),
        finished_at: status.is_terminal().then(Utc::now),
        data: serde_json::Map::new(),
        error: None,
    }
}

#[tokio::test]
async fn logs_are_read_by_offset() {
    let h = harness().await;
    let run = one_run(&h, "d1").await;
    h.store
        .append_log(run, "0", "first line\nsecond")
        .await
        .unwrap();

    let chunk = get(&h.router, &format!("/api/runs/{run}/steps/0/log")).await;
    assert_eq!(chunk.status, StatusCode::OK);
    assert_eq!(
        chunk.json(),
        json!({"text": "first line\nsecond", "next_offset": 17})
    );
    let rest = get(&h.router, &format!("/api/runs/{run}/steps/0/log?offset=11")).await;
    assert_eq!(rest.json()["text"], "second");

    let bad = get(&h.router, &format!("/api/runs/{run}/steps/0/log?offset=-1")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error"].as_str().unwrap().contains("`offset`"));
    let missing = get(
        &h.router,
        &format!("/api/runs/{}/steps/0/log", RunId::new()),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_followed_log_streams_until_the_step_finishes() {
    let h = harness().await;
    let run = one_run(&h, "d1").await;
    h.store
        .record_step(run, step(StepStatus::Running))
        .await
        .unwrap();
    h.store.append_log(run, "0", "one\n").await.unwrap();

    let store = h.store.clone();
    let writer = tokio::spawn(async move {
        for line in ["two\n", "three\n"] {
            tokio::time::sleep(Duration::from_millis(30)).await;
            store.append_log(run, "0", line).await.unwrap();
        }
        // The last words land just before the step is marked finished.
        store.append_log(run, "0", "done\n").await.unwrap();
        store
            .record_step(run, step(StepStatus::Success))
            .await
            .unwrap();
    });
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        get(
            &h.router,
            &format!("/api/runs/{run}/steps/0/log?follow=true&offset=4"),
        ),
    )
    .await
    .expect("the stream ends when the step finishes");
    writer.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(answer.text(), "two\nthree\ndone\n");
}

#[tokio::test]
async fn a_followed_log_as_server_sent_events_ends_with_the_status() {
    let h = harness().await;
    let run = one_run(&h, "d1").await;
    h.store.append_log(run, "0", "line\n").await.unwrap();
    h.store
        .record_step(run, step(StepStatus::Failure))
        .await
        .unwrap();

    let request = api("GET", &format!("/api/runs/{run}/steps/0/log?follow=true"))
        .header("accept", "text/event-stream")
        .body(Body::empty())
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), send(&h.router, request))
        .await
        .unwrap();
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    let text = answer.text();
    assert!(text.contains("event: log\n"), "{text}");
    assert!(
        text.contains(r#"data: {"text":"line\n","next_offset":5}"#),
        "{text}"
    );
    assert!(text.contains("event: end\n"), "{text}");
    assert!(
        text.contains(r#"data: {"status":"failure","next_offset":5}"#),
        "{text}"
    );
}

#[tokio::test]
async fn following_a_step_of_a_finished_run_ends_at_once() {
    let h = harness().await;
    let run = one_run(&h, "d1").await;
    h.engine.cancel(run).await.unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        get(
            &h.router,
            &format!("/api/runs/{run}/steps/7/log?follow=true"),
        ),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), "");
}

#[tokio::test]
async fn deliveries_are_listed_shown_and_reprocessed() {
    let h = harness_with(config(), &[]).await;
    let body = fixture("pull_request/opened.payload.json");
    let answer = send(&h.router, delivery("pull_request", "d1", body.clone())).await;
    assert_eq!(answer.status, StatusCode::OK, "no handler yet");

    let list = get(&h.router, "/api/deliveries?limit=10").await.json();
    assert_eq!(list["deliveries"][0]["id"], "d1");
    assert_eq!(list["deliveries"][0]["body_bytes"], body.len());
    assert!(list["deliveries"][0].get("body").is_none());

    let shown = get(&h.router, "/api/deliveries/d1").await;
    assert_eq!(shown.status, StatusCode::OK);
    let shown = shown.json();
    assert_eq!(shown["event"], "pull_request");
    assert_eq!(shown["body"]["action"], "opened");
    assert_eq!(shown["body"]["number"], 2);

    // A handler added later: re-processing creates its run.
    send(
        &h.router,
        handler_request("POST", "/api/handlers", "application/yaml", GREET),
    )
    .await;
    let reprocessed = post(&h.router, "/api/deliveries/d1/reprocess").await;
    assert_eq!(
        reprocessed.status,
        StatusCode::ACCEPTED,
        "{}",
        reprocessed.text()
    );
    let run = run_id(&reprocessed.json()["runs"][0]);
    let stored = h.store.get_delivery("d1").await.unwrap().unwrap();
    assert_eq!(stored.run_ids, vec![run]);
    h.engine.run_until_idle().await.unwrap();
    assert_eq!(h.action.calls(), vec![json!(["hello 2"])]);

    assert_eq!(
        get(&h.router, "/api/deliveries/nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(&h.router, "/api/deliveries/nope/reprocess")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&h.router, "/api/deliveries?limit=5000").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_queue_shows_stats_and_requeues_dead_letters() {
    let h = harness().await;
    one_run(&h, "d1").await;
    let stats = get(&h.router, "/api/queue").await.json();
    assert_eq!(
        stats,
        json!({"ready": 1, "delayed": 0, "leased": 0, "dead": 0})
    );

    // Kill a job: one attempt, failed.
    let lease = loop {
        if let Some(lease) = h
            .queue
            .receive(Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap()
        {
            break lease;
        }
    };
    h.queue.ack(&lease).await.unwrap();
    h.queue
        .enqueue(NewJob::new(json!({"run_id": "x"})).max_attempts(1))
        .await
        .unwrap();
    let lease = h
        .queue
        .receive(Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    h.queue.retry(&lease, Duration::ZERO, "boom").await.unwrap();

    let dead = get(&h.router, "/api/queue/dead").await.json();
    assert_eq!(dead["dead_letters"][0]["reason"], "boom");
    let job = dead["dead_letters"][0]["job"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let requeued = post(&h.router, &format!("/api/queue/dead/{job}/requeue")).await;
    assert_eq!(requeued.status, StatusCode::OK);
    assert_eq!(requeued.json()["requeued"], true);
    assert_eq!(get(&h.router, "/api/queue").await.json()["ready"], 1);
    assert_eq!(
        post(&h.router, &format!("/api/queue/dead/{job}/requeue"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn store_failures_on_the_api_are_503() {
    let h = harness().await;
    h.store.set_down(true);
    let answer = get(&h.router, "/api/runs").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("store backend error")
    );
}
