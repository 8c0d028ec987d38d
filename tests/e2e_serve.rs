//! End to end, one process: `hamster serve` on the embedded SQLite store receives a signed
//! `pull_request.opened` delivery, runs the seed's linter handler in a checkout of the PR
//! head (a local bare repository) and talks to a fake GitHub; then shuts down on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_seed_handler_against_a_fake_github() {
    let dir = tempfile::tempdir().unwrap();
    let git_root = dir.path().join("git");
    let sha = bare_repo(&git_root, &lint_repo_files());
    let handlers = dir.path().join("handlers");
    std::fs::create_dir(&handlers).unwrap();
    std::fs::write(handlers.join("linter.yml"), LINTER_HANDLER).unwrap();
    let github = wiremock::MockServer::start().await;
    mount_fake_github(&github).await;

    let mut command = hamster();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "2"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--handlers")
        .arg(&handlers)
        .env("HAMSTER_GITHUB_API_TOKEN", API_TOKEN)
        .env("HAMSTER_GITHUB_API_URL", github.uri())
        .env("HAMSTER_GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("HAMSTER_GIT_URL_TEMPLATE", url_template(&git_root))
        .env("HAMSTER_LOG", "info");
    let mut serve = HamsterProcess::spawn("serve", command, dir.path());
    let address = serve.wait_for_address();
    let hint = serve.wait_for_line("send a test delivery: ", Duration::from_secs(10));
    assert!(hint.contains("hamster send --url"), "{hint}");
    assert!(dir.path().join("data/hamster.db").is_file());

    let client = http_client();
    let body = payload_with_head("pull_request/opened.payload.json", &sha);

    // A delivery with a wrong signature is refused and runs nothing.
    let refused = client
        .post(format!("{address}/webhooks/github"))
        .header("X-GitHub-Event", "pull_request")
        .header("X-GitHub-Delivery", "e2e-forged")
        .header("X-Hub-Signature-256", sign("not-the-secret", &body))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    let (status, answer) =
        post_delivery(&client, &address, "pull_request", "e2e-serve-1", body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["runs"].as_array().map(Vec::len), Some(1), "{answer}");

    expect_linter_calls(&github, &sha).await;

    // The GitHub client's counters reach /metrics (serve runs the workers in process).
    let metrics = client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let succeeded_calls = metrics
        .lines()
        .find(|l| l.starts_with("hamster_github_api_calls_total") && l.contains("succeeded"))
        .unwrap_or_else(|| panic!("no GitHub call counter in:\n{metrics}"));
    assert!(succeeded_calls.ends_with(" 3"), "{succeeded_calls}");
    // Step durations too, through the engine's step hook.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hamster_step_duration_seconds_count")
                && l.contains("action=\"shell_command\"")
                && l.contains("status=\"success\"")),
        "no shell_command step duration in:\n{metrics}"
    );

    // Graceful shutdown: SIGTERM stops the server and the workers, exit code 0.
    serve.signal("TERM");
    let exit = serve.wait_exit(Duration::from_secs(40));
    assert!(
        exit.success(),
        "exit status {exit:?}; stderr:\n{}",
        serve.stderr()
    );
    assert!(
        serve.stdout_lines().iter().any(|l| l == "stopped"),
        "{:?}",
        serve.stdout_lines()
    );
    // Nothing secret reached the logs.
    let stderr = serve.stderr();
    assert!(
        !stderr.contains(API_TOKEN),
        "the API token leaked into the logs"
    );
    assert!(
        !stderr.contains(WEBHOOK_SECRET),
        "the webhook secret leaked into the logs"
    );
}

#[test]
fn serve_without_a_github_token_starts_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = hamster();
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let mut serve = HamsterProcess::spawn("serve-no-token", command, dir.path());
    serve.wait_for_address();
    let warning = serve.wait_for_line("GitHub API token not configured", Duration::from_secs(10));
    assert!(warning.contains("HAMSTER_GITHUB_API_TOKEN"), "{warning}");
    serve.signal("INT");
    let exit = serve.wait_exit(Duration::from_secs(40));
    assert!(
        exit.success(),
        "exit status {exit:?}; stderr:\n{}",
        serve.stderr()
    );
}

#[test]
fn serve_refuses_invalid_handlers_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let handler = dir.path().join("broken.yml");
    std::fs::write(
        &handler,
        "name: broken\nevents: [push]\nactions:\n  - action: no_such_action\n",
    )
    .unwrap();
    let output = hamster()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--handlers")
        .arg(&handler)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:4:", handler.display())),
        "{stderr}"
    );
}
