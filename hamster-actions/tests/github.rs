//! The GitHub actions end to end through the engine, against a recording GitHub.
#![allow(clippy::unwrap_used)]

mod common;

use common::{builder, data, handler, pr_event};
use hamster_core::store::{RunStatus, StepStatus};
use hamster_core::testing::{RunReport, TestKit};
use hamster_github::{GitHub, RecordedCall, RecordingGitHub};
use serde_json::{Value, json};
use std::sync::Arc;

async fn kit(steps: &str) -> (TestKit, Arc<RecordingGitHub>) {
    let github = Arc::new(RecordingGitHub::new());
    let kit = builder()
        .service::<dyn GitHub>(github.clone())
        .handlers(handler(steps))
        .build()
        .await
        .unwrap();
    (kit, github)
}

async fn run_steps(
    steps: &str,
    event: hamster_core::event::EventRecord,
) -> (RunReport, Vec<RecordedCall>) {
    let (kit, github) = kit(steps).await;
    let mut runs = kit.run_event(&event).await.unwrap();
    (runs.remove(0), github.calls())
}

fn call(method: &str, path: &str, body: Value) -> RecordedCall {
    RecordedCall {
        method: method.into(),
        path: path.into(),
        body,
    }
}

#[tokio::test]
async fn comments_on_the_pull_request() {
    let (run, calls) = run_steps(
        "  - action: pull_request_comment\n    name: hello\n    args: ['hey @{{ source.user }}, {{ source.number }} it is']\n  - action: issue_comment\n    args: {body: 'elsewhere', number: '{{ source.number + 5 }}'}\n",
        pr_event(json!({}), false),
    )
    .await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{:?}", run.steps);
    assert_eq!(
        calls,
        [
            call(
                "POST",
                "/repos/Codertocat/Hello-World/issues/2/comments",
                json!({"body": "hey @Codertocat, 2 it is"})
            ),
            call(
                "POST",
                "/repos/Codertocat/Hello-World/issues/7/comments",
                json!({"body": "elsewhere"})
            ),
        ]
    );
    assert_eq!(data(&run, "hello", "comment_id"), &json!(1));
    assert_eq!(
        data(&run, "hello", "url"),
        &json!("https://github.com/Codertocat/Hello-World/pull/2#issuecomment-1")
    );
    assert_eq!(data(&run, "issue_comment", "number"), &json!(7));
}

#[tokio::test]
async fn pull_request_comment_refuses_an_issue_event() {
    let mut event = pr_event(json!({"kind": "issue"}), false);
    event.source.kind = "issue".into();
    let (run, calls) = run_steps("  - action: pull_request_comment\n    args: [hi]\n", event).await;
    assert!(calls.is_empty());
    let error = run
        .step("pull_request_comment")
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(error.contains("use issue_comment"), "{error}");
}

#[tokio::test]
async fn github_errors_fail_the_step_with_githubs_message() {
    let (kit, github) = kit("  - action: pull_request_comment\n    args: [hi]\n").await;
    github.fail_matching(
        "POST",
        "/repos/Codertocat/Hello-World/issues/2/comments",
        403,
        "Resource not accessible by integration",
    );
    let runs = kit.run_event(&pr_event(json!({}), false)).await.unwrap();
    let step = runs[0].step("pull_request_comment").unwrap();
    assert_eq!(step.status, StepStatus::Failure);
    let error = step.error.as_deref().unwrap();
    assert!(
        error.contains("Resource not accessible by integration") && error.contains("403"),
        "{error}"
    );
}

#[tokio::test]
async fn long_bodies_are_cut_to_what_github_accepts() {
    let (run, calls) = run_steps(
        "  - action: shell_command\n    name: big\n    args: [\"head -c 200000 /dev/zero | tr '\\\\0' x\"]\n  - action: issue_comment\n    args: ['{{ big.output }}']\n",
        pr_event(json!({}), false),
    )
    .await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{:?}", run.steps);
    let body = calls[0].body["body"].as_str().unwrap();
    assert!(body.chars().count() <= 65_536, "{}", body.len());
    assert!(body.contains("characters omitted"));
}

#[tokio::test]
async fn commit_status_defaults_to_the_head_sha() {
    let (run, calls) = run_steps(
        "  - action: commit_status\n    args: {state: failure, description: 'lint failed on {{ source.branch }}', target_url: 'https://ci.example/{{ source.number }}'}\n  - action: commit_status\n    name: explicit\n    args: {state: success, context: ci/x, sha: abc123}\n",
        pr_event(json!({}), false),
    )
    .await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{:?}", run.steps);
    assert_eq!(
        calls,
        [
            call(
                "POST",
                "/repos/Codertocat/Hello-World/statuses/ec26c3e57ca3a959ca5aad62de7213c562f8c821",
                json!({"state": "failure", "context": "hamster/test", "description": "lint failed on changes", "target_url": "https://ci.example/2"})
            ),
            call(
                "POST",
                "/repos/Codertocat/Hello-World/statuses/abc123",
                json!({"state": "success", "context": "ci/x"})
            ),
        ]
    );
    assert_eq!(data(&run, "commit_status", "state"), &json!("failure"));
}

#[tokio::test]
async fn invalid_literals_are_refused_at_load_but_templates_wait() {
    for (step, expected) in [
        (
            "  - action: commit_status\n    args: {state: failed}\n",
            "unknown variant `failed`",
        ),
        (
            "  - action: react\n    args: [thumbsup]\n",
            "unknown variant `thumbsup`",
        ),
        (
            "  - action: check_run\n    args: {status: completed}\n",
            "`name` is required",
        ),
        (
            "  - action: check_run\n    args: {name: x, status: queued, conclusion: success}\n",
            "set `status: completed`",
        ),
        (
            "  - action: add_labels\n    args: {labels: []}\n",
            "no labels",
        ),
        (
            "  - action: pull_request_comment\n    args: {body: hi, colour: red}\n",
            "unknown field `colour`",
        ),
        (
            "  - action: pull_request_comment\n    args: ['  ']\n",
            "empty",
        ),
    ] {
        let result = builder().handlers(handler(step)).build().await;
        let error = result.err().unwrap_or_else(|| panic!("accepted: {step}"));
        assert!(error.to_string().contains(expected), "{step}: {error}");
    }
    // A template is checked once rendered: a bad value fails the step, not the load.
    let (run, calls) = run_steps(
        "  - action: commit_status\n    args: {state: '{{ source.title }}'}\n  - action: commit_status\n    name: ok\n    args: {state: '{{ \"pending\" }}'}\n",
        pr_event(json!({}), false),
    )
    .await;
    assert!(calls.is_empty());
    let error = run.step("commit_status").unwrap().error.clone().unwrap();
    assert!(
        error.contains("state") && error.contains("unknown variant"),
        "{error}"
    );
    let (run, _) =
        run_ok("  - action: commit_status\n    args: {state: '{{ \"pending\" }}'}\n").await;
    assert_eq!(data(&run, "commit_status", "state"), &json!("pending"));
}

async fn run_ok(steps: &str) -> (RunReport, Vec<RecordedCall>) {
    let (run, calls) = run_steps(steps, pr_event(json!({}), false)).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{:?}", run.steps);
    (run, calls)
}

#[tokio::test]
async fn check_run_is_created_then_updated() {
    let (run, calls) = run_ok(
        "  - action: check_run\n    name: check\n    args: {name: lint, status: in_progress}\n  - action: check_run\n    name: done\n    args: {id: '{{ check.check_run_id }}', conclusion: failure, summary: 'found {{ source.number }} problems'}\n",
    )
    .await;
    assert_eq!(
        calls,
        [
            call(
                "POST",
                "/repos/Codertocat/Hello-World/check-runs",
                json!({"name": "lint", "head_sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "status": "in_progress"})
            ),
            call(
                "PATCH",
                "/repos/Codertocat/Hello-World/check-runs/1",
                json!({"status": "completed", "conclusion": "failure", "output": {"title": "done", "summary": "found 2 problems"}})
            ),
        ]
    );
    assert_eq!(data(&run, "check", "check_run_id"), &json!(1));
    assert_eq!(data(&run, "check", "created"), &json!(true));
    assert_eq!(
        data(&run, "check", "url"),
        &json!("https://github.com/Codertocat/Hello-World/runs/1")
    );
    assert_eq!(data(&run, "done", "created"), &json!(false));
}

#[tokio::test]
async fn labels_are_added_and_removed() {
    let (run, calls) = run_ok(
        "  - action: add_labels\n    args: [bug, 'size/{{ source.number }}']\n  - action: add_labels\n    name: map\n    args: {labels: [x], number: 9}\n  - action: remove_label\n    args: [triage]\n",
    )
    .await;
    assert_eq!(
        calls,
        [
            call(
                "POST",
                "/repos/Codertocat/Hello-World/issues/2/labels",
                json!({"labels": ["bug", "size/2"]})
            ),
            call(
                "POST",
                "/repos/Codertocat/Hello-World/issues/9/labels",
                json!({"labels": ["x"]})
            ),
            call(
                "DELETE",
                "/repos/Codertocat/Hello-World/issues/2/labels/triage",
                Value::Null
            ),
        ]
    );
    assert_eq!(
        data(&run, "add_labels", "labels"),
        &json!(["bug", "size/2"])
    );
}

#[tokio::test]
async fn reactions_go_on_the_comment_or_the_issue() {
    let mut event = pr_event(json!({}), false);
    event.name = "issue_comment.created".into();
    event.data = json!({"comment": {"id": 492700400, "body": "/build"}}).into();
    let (run, calls) = run_steps(
        "  - action: react\n    args: [eyes]\n  - action: react\n    name: on_issue\n    args: {content: '+1', on: issue}\n",
        event,
    )
    .await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{:?}", run.steps);
    assert_eq!(
        calls,
        [
            call(
                "POST",
                "/repos/Codertocat/Hello-World/issues/comments/492700400/reactions",
                json!({"content": "eyes"})
            ),
            call(
                "POST",
                "/repos/Codertocat/Hello-World/issues/2/reactions",
                json!({"content": "+1"})
            ),
        ]
    );
    assert_eq!(data(&run, "react", "on"), &json!("comment"));
    let (run, calls) = run_steps(
        "  - action: react\n    args: {content: heart, on: comment}\n",
        pr_event(json!({}), false),
    )
    .await;
    assert!(calls.is_empty());
    assert!(
        run.step("react")
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("not an event about a comment")
    );
}

#[tokio::test]
async fn a_worker_without_github_says_so() {
    let kit = builder()
        .handlers(handler(
            "  - action: pull_request_comment\n    args: [hi]\n",
        ))
        .build()
        .await
        .unwrap();
    let runs = kit.run_event(&pr_event(json!({}), false)).await.unwrap();
    let error = runs[0]
        .step("pull_request_comment")
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        error.contains("GitHub") && error.contains("not configured"),
        "{error}"
    );
}
