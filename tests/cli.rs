//! The `hamster` subcommands as a user runs them: exit codes and output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Output;
use support::*;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn validate_accepts_valid_handlers_and_summarizes_them() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "linter.yml", LINTER_HANDLER);
    let output = hamster()
        .args(["handlers", "validate"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("ok: Pull Request Linter"), "{out}");
    assert!(out.contains("1 handler(s) in 1 file(s) are valid"), "{out}");
}

#[test]
fn validate_reports_every_problem_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write(
        dir.path(),
        "broken.yml",
        "name: broken\nevents: [push]\nactions:\n  - action: shell_command\n    args: ['true']\n    colour: red\n",
    );
    let unknown = write(
        dir.path(),
        "unknown.yml",
        "name: unknown\nevents: [push]\nactions:\n  - action: no_such_action\n",
    );
    let output = hamster()
        .args(["handlers", "validate"])
        .arg(&broken)
        .arg(&unknown)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!("{}:6:5: ", broken.display())),
        "{out}"
    );
    assert!(lines[0].contains("colour"), "{out}");
    assert!(
        lines[1].starts_with(&format!("{}:4:", unknown.display())),
        "{out}"
    );
    assert!(lines[1].contains("no_such_action"), "{out}");
}

#[test]
fn validate_fails_on_a_missing_path() {
    let output = hamster()
        .args(["handlers", "validate", "/nonexistent/handlers.yml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("/nonexistent/handlers.yml: no such file"));
}

/// A repository and a payload for replays; returns (dir, git root, payload path, sha).
fn replay_setup(files: &[(&str, &str)]) -> (tempfile::TempDir, String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let git_root = dir.path().join("git");
    let sha = bare_repo(&git_root, files);
    let payload = dir.path().join("opened.json");
    std::fs::write(
        &payload,
        payload_with_head("pull_request/opened.payload.json", &sha),
    )
    .unwrap();
    write(dir.path(), "linter.yml", LINTER_HANDLER);
    (dir, sha, payload)
}

#[test]
fn replay_json_prints_runs_steps_and_recorded_github_calls() {
    let (dir, sha, payload) = replay_setup(&lint_repo_files());
    let output = hamster()
        .args(["replay", "--json", "--event", "pull_request"])
        .arg("--handlers")
        .arg(dir.path().join("linter.yml"))
        .arg("--payload")
        .arg(&payload)
        .env(
            "HAMSTER_GIT_URL_TEMPLATE",
            url_template(&dir.path().join("git")),
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut keys: Vec<_> = report.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["github_calls", "runs"]);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{report:#}");
    assert_eq!(runs[0]["handler"], "Pull Request Linter");
    assert_eq!(runs[0]["status"], "succeeded");
    let steps = runs[0]["steps"].as_array().unwrap();
    let names: Vec<_> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "lint_pending",
            "linter",
            "pull_request_comment",
            "lint_success"
        ]
    );
    for step in steps {
        let mut keys: Vec<_> = step.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["action", "name", "output", "status"]);
        assert_eq!(step["status"], "success");
    }
    assert_eq!(steps[1]["action"], "shell_command");
    assert_eq!(steps[1]["output"], LINT_OUTPUT);

    let calls = report["github_calls"].as_array().unwrap();
    let summary: Vec<(String, String)> = calls
        .iter()
        .map(|c| {
            (
                c["method"].as_str().unwrap().to_owned(),
                c["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let status_path = format!("/repos/Codertocat/Hello-World/statuses/{sha}");
    let comment_path = "/repos/Codertocat/Hello-World/issues/2/comments".to_owned();
    assert_eq!(
        summary,
        [
            ("POST".to_owned(), status_path.clone()),
            ("POST".to_owned(), comment_path),
            ("POST".to_owned(), status_path),
        ]
    );
    assert_eq!(calls[0]["body"]["state"], "pending");
    assert_eq!(
        calls[1]["body"]["body"],
        format!("hey @Codertocat pylint returned {LINT_OUTPUT}")
    );
    assert_eq!(calls[2]["body"]["state"], "success");
}

#[test]
fn replay_exits_1_when_a_run_fails_and_shows_the_failure_callback() {
    let mut files = lint_repo_files();
    files[1] = ("hello.py", "def broken(:\n");
    let (dir, _sha, payload) = replay_setup(&files);
    let output = hamster()
        .args(["replay", "--event", "pull_request", "--delivery", "d-1"])
        .arg("--handlers")
        .arg(dir.path().join("linter.yml"))
        .arg("--payload")
        .arg(&payload)
        .env(
            "HAMSTER_GIT_URL_TEMPLATE",
            url_template(&dir.path().join("git")),
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("Pull Request Linter: failed"), "{out}");
    assert!(out.contains("[failure] linter (shell_command)"), "{out}");
    assert!(out.contains("SyntaxError"), "{out}");
    assert!(
        out.contains("lint failed: "),
        "the on_failure comment: {out}"
    );
    assert!(!out.contains("lint_success"), "the pipeline stopped: {out}");
}

#[test]
fn replay_exits_2_on_usage_and_configuration_errors() {
    let (dir, _sha, payload) = replay_setup(&lint_repo_files());
    let handlers = dir.path().join("linter.yml");
    let missing_payload = hamster()
        .args([
            "replay",
            "--event",
            "pull_request",
            "--payload",
            "/nonexistent.json",
        ])
        .arg("--handlers")
        .arg(&handlers)
        .output()
        .unwrap();
    assert_eq!(missing_payload.status.code(), Some(2));
    assert!(stderr(&missing_payload).contains("/nonexistent.json"));

    let config = write(
        dir.path(),
        "hamster.toml",
        "listen = \"127.0.0.1:1\"\nwrokers = 3\n",
    );
    let unknown_key = hamster()
        .args(["replay", "--event", "pull_request"])
        .arg("--config")
        .arg(&config)
        .arg("--handlers")
        .arg(&handlers)
        .arg("--payload")
        .arg(&payload)
        .output()
        .unwrap();
    assert_eq!(unknown_key.status.code(), Some(2));
    let message = stderr(&unknown_key);
    assert!(message.contains("wrokers"), "{message}");
    assert!(message.contains("hamster.toml"), "{message}");

    let no_handlers = hamster()
        .args(["replay", "--event", "pull_request"])
        .arg("--payload")
        .arg(&payload)
        .output()
        .unwrap();
    assert_eq!(no_handlers.status.code(), Some(2), "clap usage error");
}

#[tokio::test]
async fn send_posts_with_githubs_headers_and_signature() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/webhooks/github"))
        .respond_with(ResponseTemplate::new(202).set_body_string(r#"{"delivery":"ok"}"#))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let payload = write(dir.path(), "hello.txt", "Hello, World!");
    let url = format!("{}/webhooks/github", server.uri());

    let signed = tokio::process::Command::new(hamster_bin())
        .args([
            "send",
            "--url",
            &url,
            "--event",
            "push",
            "--delivery",
            "d-42",
        ])
        .args(["--secret", "It's a Secret to Everybody"])
        .arg("--payload")
        .arg(&payload)
        .env_remove("HAMSTER_GITHUB_WEBHOOK_SECRET")
        .output()
        .await
        .unwrap();
    assert_eq!(signed.status.code(), Some(0), "{}", stderr(&signed));
    let out = stdout(&signed);
    assert!(out.contains("202"), "{out}");
    assert!(out.contains(r#"{"delivery":"ok"}"#), "{out}");

    let unsigned = tokio::process::Command::new(hamster_bin())
        .args(["send", "--url", &url, "--event", "pull_request"])
        .arg("--payload")
        .arg(&payload)
        .env_remove("HAMSTER_GITHUB_WEBHOOK_SECRET")
        .output()
        .await
        .unwrap();
    assert_eq!(unsigned.status.code(), Some(0), "{}", stderr(&unsigned));

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let header = |i: usize, name: &str| {
        requests[i]
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(requests[0].body, b"Hello, World!");
    assert_eq!(header(0, "x-github-event").as_deref(), Some("push"));
    assert_eq!(header(0, "x-github-delivery").as_deref(), Some("d-42"));
    assert_eq!(
        header(0, "x-hub-signature-256").as_deref(),
        Some("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    );
    assert_eq!(
        header(0, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header(0, "user-agent").as_deref(),
        Some("GitHub-Hookshot/hamster")
    );

    assert_eq!(header(1, "x-github-event").as_deref(), Some("pull_request"));
    assert_eq!(header(1, "x-hub-signature-256"), None);
    let generated = header(1, "x-github-delivery").unwrap();
    assert!(
        uuid::Uuid::parse_str(&generated).is_ok(),
        "a random UUID: {generated}"
    );
}

#[tokio::test]
async fn send_exits_1_on_an_error_answer() {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401).set_body_string("bad signature"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let payload = write(dir.path(), "body.json", "{}");
    let output = tokio::process::Command::new(hamster_bin())
        .args(["send", "--url", &server.uri(), "--event", "push"])
        .arg("--payload")
        .arg(&payload)
        .env_remove("HAMSTER_GITHUB_WEBHOOK_SECRET")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let out = stdout(&output);
    assert!(
        out.contains("401") && out.contains("bad signature"),
        "{out}"
    );
}
