//! `OctocrabGitHub` against a local fake GitHub (wiremock): exact requests, retries,
//! rate limiting, errors, and agreement with `RecordingGitHub`.

use hamster_github::client::{
    CheckRunUpdate, CommitStatus, GitHub, GitHubConfig, GitHubError, NewCheckRun, OctocrabGitHub,
    ReactionTarget, RecordedCall, RecordingGitHub, RepoRef, RetryPolicy, StatusState,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "ghp_TestToken0123456789abcdef";

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_rate_limit_wait: Duration::from_secs(5),
    }
}

fn client_for(base_url: &str, retry: RetryPolicy) -> OctocrabGitHub {
    let config = GitHubConfig::builder()
        .token(TOKEN)
        .base_url(base_url)
        .user_agent("hamster-tests/1")
        .request_timeout(Duration::from_secs(5))
        .retry(retry)
        .build()
        .expect("valid config");
    OctocrabGitHub::new(&config).expect("client")
}

fn repo() -> RepoRef {
    RepoRef::new("octo-org", "hello-world")
}

fn check_run() -> NewCheckRun {
    NewCheckRun {
        name: "hamster/test".into(),
        head_sha: "0123abcd".into(),
        status: Some("in_progress".into()),
        conclusion: None,
        title: Some("Running".into()),
        summary: Some("Tests are running".into()),
        details_url: None,
    }
}

/// Every call of the trait, with fixed inputs, against `github`.
async fn make_every_call(github: &dyn GitHub) -> Vec<String> {
    let mut outcomes = Vec::new();
    let repo = repo();
    outcomes.push(format!(
        "{:?}",
        github.create_comment(&repo, 7, "Build **passed**").await
    ));
    let status = CommitStatus {
        state: StatusState::Failure,
        context: "hamster/lint".into(),
        description: Some("2 warnings".into()),
        target_url: None,
    };
    outcomes.push(format!(
        "{:?}",
        github.set_commit_status(&repo, "0123abcd", &status).await
    ));
    outcomes.push(format!(
        "{:?}",
        github.create_check_run(&repo, &check_run()).await
    ));
    let update = CheckRunUpdate {
        status: Some("completed".into()),
        conclusion: Some("success".into()),
        ..CheckRunUpdate::default()
    };
    outcomes.push(format!(
        "{:?}",
        github.update_check_run(&repo, 555, &update).await
    ));
    outcomes.push(format!(
        "{:?}",
        github
            .add_labels(&repo, 7, &["bug".into(), "needs review".into()])
            .await
    ));
    outcomes.push(format!(
        "{:?}",
        github.remove_label(&repo, 7, "area/ci: flaky").await
    ));
    for target in [
        ReactionTarget::Issue(7),
        ReactionTarget::IssueComment(11),
        ReactionTarget::ReviewComment(12),
    ] {
        outcomes.push(format!(
            "{:?}",
            github.add_reaction(&repo, target, "rocket").await
        ));
    }
    outcomes.push(format!("{:?}", github.get_pull_request(&repo, 7).await));
    outcomes
}

/// The expected (method, path, body) of `make_every_call`, below `prefix`.
fn expected_requests(prefix: &str) -> Vec<(&'static str, String, Value)> {
    let r = format!("{prefix}/repos/octo-org/hello-world");
    vec![
        (
            "POST",
            format!("{r}/issues/7/comments"),
            json!({"body": "Build **passed**"}),
        ),
        (
            "POST",
            format!("{r}/statuses/0123abcd"),
            json!({"state": "failure", "context": "hamster/lint", "description": "2 warnings"}),
        ),
        (
            "POST",
            format!("{r}/check-runs"),
            json!({
                "name": "hamster/test", "head_sha": "0123abcd", "status": "in_progress",
                "output": {"title": "Running", "summary": "Tests are running"}
            }),
        ),
        (
            "PATCH",
            format!("{r}/check-runs/555"),
            json!({"status": "completed", "conclusion": "success"}),
        ),
        (
            "POST",
            format!("{r}/issues/7/labels"),
            json!({"labels": ["bug", "needs review"]}),
        ),
        (
            "DELETE",
            format!("{r}/issues/7/labels/area%2Fci%3A%20flaky"),
            Value::Null,
        ),
        (
            "POST",
            format!("{r}/issues/7/reactions"),
            json!({"content": "rocket"}),
        ),
        (
            "POST",
            format!("{r}/issues/comments/11/reactions"),
            json!({"content": "rocket"}),
        ),
        (
            "POST",
            format!("{r}/pulls/comments/12/reactions"),
            json!({"content": "rocket"}),
        ),
        ("GET", format!("{r}/pulls/7"), Value::Null),
    ]
}

fn pull_request_json() -> Value {
    json!({"number": 7, "state": "open", "head": {"sha": "0123abcd", "ref": "feature"}})
}

/// Mounts one strict mock per expected request: method, path, headers and body must all
/// match, exactly once.
async fn mount_strict_github(server: &MockServer, prefix: &str) {
    for (verb, request_path, body) in expected_requests(prefix) {
        let response = match (verb, request_path.as_str()) {
            ("GET", _) => ResponseTemplate::new(200).set_body_json(pull_request_json()),
            ("DELETE", _) => {
                ResponseTemplate::new(404).set_body_json(json!({"message": "Label does not exist"}))
            }
            (_, p) if p.ends_with("/comments") => {
                ResponseTemplate::new(201).set_body_json(json!({"id": 9001}))
            }
            ("POST", p) if p.ends_with("/check-runs") => {
                ResponseTemplate::new(201).set_body_json(json!({"id": 555}))
            }
            _ => ResponseTemplate::new(200).set_body_json(json!({})),
        };
        let mut mock = Mock::given(method(verb))
            .and(path(request_path.as_str()))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .and(header("accept", "application/vnd.github+json"))
            .and(header("x-github-api-version", "2022-11-28"))
            .and(header("user-agent", "hamster-tests/1"));
        if !body.is_null() {
            mock = mock.and(body_json(body));
        }
        mock.respond_with(response)
            .expect(1)
            .named(format!("{verb} {request_path}"))
            .mount(server)
            .await;
    }
}

/// What the fake server received, in the recorder's terms.
fn as_recorded(requests: &[Request], strip_prefix: &str) -> Vec<RecordedCall> {
    requests
        .iter()
        .map(|request| RecordedCall {
            method: request.method.to_string(),
            path: request
                .url
                .path()
                .strip_prefix(strip_prefix)
                .unwrap_or(request.url.path())
                .to_owned(),
            body: if request.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&request.body).expect("JSON body")
            },
        })
        .collect()
}

async fn exact_requests_below(prefix: &str) {
    let server = MockServer::start().await;
    mount_strict_github(&server, prefix).await;
    let github = client_for(&format!("{}{prefix}", server.uri()), fast_retries());

    let outcomes = make_every_call(&github).await;

    let ok_unit = "Ok(())".to_owned();
    let mut expected_outcomes = vec!["Ok(9001)".to_owned(), ok_unit.clone(), "Ok(555)".to_owned()];
    expected_outcomes.extend(std::iter::repeat_n(ok_unit, 6));
    expected_outcomes.push(format!("Ok({:?})", pull_request_json()));
    assert_eq!(outcomes, expected_outcomes);

    let received = server.received_requests().await.expect("recording on");
    for request in &received {
        let versions: Vec<_> = request
            .headers
            .get_all("x-github-api-version")
            .iter()
            .collect();
        assert_eq!(
            versions.len(),
            1,
            "one API version header on {}",
            request.url
        );
        let agents: Vec<_> = request.headers.get_all("user-agent").iter().collect();
        assert_eq!(agents.len(), 1, "one user agent on {}", request.url);
        if !request.body.is_empty() {
            assert_eq!(
                request.headers.get("content-type").map(|v| v.as_bytes()),
                Some(&b"application/json"[..])
            );
        }
    }
    let sent: Vec<(String, String, Value)> = as_recorded(&received, "")
        .into_iter()
        .map(|call| (call.method, call.path, call.body))
        .collect();
    let expected: Vec<(String, String, Value)> = expected_requests(prefix)
        .into_iter()
        .map(|(m, p, b)| (m.to_owned(), p, b))
        .collect();
    assert_eq!(sent, expected);
    let stats = github.stats();
    assert_eq!((stats.succeeded, stats.refused, stats.retries), (10, 0, 0));
    server.verify().await;
}

#[tokio::test]
async fn sends_exact_requests_to_a_github_com_style_base_url() {
    exact_requests_below("").await;
}

#[tokio::test]
async fn sends_exact_requests_below_an_enterprise_api_v3_prefix() {
    exact_requests_below("/api/v3").await;
}

#[tokio::test]
async fn recording_fake_records_what_the_real_client_sends() {
    let server = MockServer::start().await;
    mount_strict_github(&server, "/api/v3").await;
    let real = client_for(&format!("{}/api/v3", server.uri()), fast_retries());
    let fake = RecordingGitHub::new().with_pull_request(repo(), 7, pull_request_json());

    make_every_call(&real).await;
    make_every_call(&fake).await;

    let received = server.received_requests().await.expect("recording on");
    assert_eq!(as_recorded(&received, "/api/v3"), fake.calls());
    assert_eq!(fake.calls().len(), 10);
}

#[tokio::test]
async fn retries_a_502_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 42})))
        .with_priority(2)
        .mount(&server)
        .await;
    let github = client_for(&server.uri(), fast_retries());

    let id = github
        .create_comment(&repo(), 1, "hi")
        .await
        .expect("retried");

    assert_eq!(id, 42);
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(2));
    let stats = github.stats();
    assert_eq!(
        (stats.succeeded, stats.retries, stats.rate_limited),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn gives_up_after_max_attempts_of_5xx() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"message": "Service down"})))
        .mount(&server)
        .await;
    let github = client_for(&server.uri(), fast_retries());

    let error = github
        .create_comment(&repo(), 1, "hi")
        .await
        .expect_err("always 503");

    assert!(
        matches!(&error, GitHubError::Unavailable { attempts: 3, message, .. } if message.contains("Service down")),
        "{error}"
    );
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(3));
    assert_eq!(github.stats().unavailable, 1);
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"message": "Too many requests"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .with_priority(2)
        .mount(&server)
        .await;
    let github = client_for(&server.uri(), fast_retries());

    let started = Instant::now();
    github
        .add_labels(&repo(), 1, &["bug".into()])
        .await
        .expect("retried after waiting");

    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(950),
        "waited only {elapsed:?}"
    );
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(2));
    assert_eq!(github.stats().rate_limited, 1);
}

#[tokio::test]
async fn retries_a_rate_limited_403_until_reset() {
    let server = MockServer::start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", (now + 1).to_string().as_str())
                .set_body_json(json!({"message": "API rate limit exceeded for user ID 1."})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-ratelimit-remaining", "4999")
                .set_body_json(pull_request_json()),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    let github = client_for(&server.uri(), fast_retries());

    let started = Instant::now();
    let pr = github.get_pull_request(&repo(), 7).await.expect("retried");

    assert_eq!(pr, pull_request_json());
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(2));
    let stats = github.stats();
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.rate_limit_remaining, Some(4999));
}

#[tokio::test]
async fn rate_limit_wait_beyond_the_cap_fails_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3600")
                .set_body_json(json!({"message": "slow down"})),
        )
        .mount(&server)
        .await;
    let github = client_for(&server.uri(), fast_retries());

    let started = Instant::now();
    let error = github
        .create_comment(&repo(), 1, "hi")
        .await
        .expect_err("would wait an hour");

    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(&error, GitHubError::Unavailable { attempts: 1, message, .. } if message.contains("3600s")),
        "{error}"
    );
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(1));
}

#[tokio::test]
async fn a_422_fails_at_once_with_githubs_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "Validation Failed",
            "errors": [{"resource": "Status", "field": "state", "code": "invalid"}],
            "documentation_url": "https://docs.github.com/rest"
        })))
        .mount(&server)
        .await;
    let github = client_for(&server.uri(), fast_retries());
    let status = CommitStatus {
        state: StatusState::Success,
        context: "ci".into(),
        description: None,
        target_url: None,
    };

    let error = github
        .set_commit_status(&repo(), "abc", &status)
        .await
        .expect_err("422");

    match &error {
        GitHubError::Refused {
            method,
            path,
            status,
            message,
        } => {
            assert_eq!(method, "POST");
            assert_eq!(path, "/repos/octo-org/hello-world/statuses/abc");
            assert_eq!(*status, 422);
            assert_eq!(message, "Validation Failed (Status.state: invalid)");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(1));
    let stats = github.stats();
    assert_eq!((stats.refused, stats.retries), (1, 0));
}

#[tokio::test]
async fn the_token_never_appears_in_errors() {
    let server = MockServer::start().await;
    // A misbehaving server echoing the credentials back must not leak them either.
    Mock::given(method("POST"))
        .and(path("/repos/octo-org/hello-world/issues/1/comments"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"message": format!("Bad credentials: Bearer {TOKEN}")})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/octo-org/hello-world/issues/2/comments"))
        .respond_with(ResponseTemplate::new(500).set_body_string(format!("oops {TOKEN}")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!("not json {TOKEN}")))
        .mount(&server)
        .await;
    let github = client_for(&server.uri(), fast_retries());
    // Nothing listens on port 9 of localhost (discard): a network error.
    let unreachable = client_for("http://127.0.0.1:9", RetryPolicy::no_retries());

    let errors = vec![
        github
            .create_comment(&repo(), 1, "x")
            .await
            .expect_err("401"),
        github
            .create_comment(&repo(), 2, "x")
            .await
            .expect_err("500"),
        github
            .get_pull_request(&repo(), 1)
            .await
            .expect_err("not JSON"),
        unreachable
            .create_comment(&repo(), 1, "x")
            .await
            .expect_err("refused"),
        OctocrabGitHub::new(
            &GitHubConfig::builder()
                .token(format!("{TOKEN}\n"))
                .build()
                .expect("config"),
        )
        .expect_err("newline in token"),
    ];

    assert!(
        matches!(errors[0], GitHubError::Refused { status: 401, .. }),
        "{}",
        errors[0]
    );
    assert!(
        matches!(errors[1], GitHubError::Unavailable { .. }),
        "{}",
        errors[1]
    );
    assert!(
        matches!(errors[2], GitHubError::Decode { .. }),
        "{}",
        errors[2]
    );
    assert!(
        matches!(errors[3], GitHubError::Unavailable { .. }),
        "{}",
        errors[3]
    );
    assert!(matches!(errors[4], GitHubError::Config(_)), "{}", errors[4]);
    for error in &errors {
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(TOKEN), "token leaked: {shown}");
    }
    assert!(
        errors[0].to_string().contains("[REDACTED]"),
        "{}",
        errors[0]
    );
    let client_debug = format!("{github:?}");
    assert!(!client_debug.contains(TOKEN), "{client_debug}");
}

#[tokio::test]
async fn missing_token_is_a_config_error() {
    let config = GitHubConfig::builder().build().expect("config");
    let error = OctocrabGitHub::new(&config).expect_err("no token");
    assert!(
        matches!(&error, GitHubError::Config(message) if message.contains("HAMSTER_GITHUB_API_TOKEN")),
        "{error}"
    );
}
