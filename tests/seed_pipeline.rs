//! The seed example end to end: the Pull Request Linter handler fires on GitHub's recorded
//! `pull_request.opened` delivery, runs a lint command in a real git checkout of the pull
//! request's head (cloned from a local bare repository), and comments through a recording
//! GitHub client.
#![allow(clippy::unwrap_used)]

use hamster_core::testing::{RunReport, TestKit};
use hamster_core::workspace::TempWorkspaces;
use hamster_github::git::{GitConfig, GitMaterializer};
use hamster_github::{GitHub, RecordedCall, RecordingGitHub, WebhookParser};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

/// The seed handler, with `pip install pylint && pylint ./` replaced by a lint that exists
/// on every machine with Python (pylint is not installed here), and a failure status.
const SEED: &str = r#"name: Pull Request Linter
events: [pull_request.opened, pull_request.reopened]
criteria: source.repository is Hello-World
actions:
  - action: shell_command
    name: linter
    args: ['python3 -m py_compile *.py && echo "$(ls *.py | wc -l) files compile"']
    on_failure:
      - action: pull_request_comment
        args: ['lint failed: {{ linter.output }}']
      - action: commit_status
        args: {state: failure, context: hamster/lint, description: 'lint failed on {{ source.head.ref }}'}
  - action: pull_request_comment
    args: ['hey @{{ source.user }} pylint returned {{ linter.output }}']
"#;

/// A bare repository at `<root>/Codertocat/Hello-World.git` whose `refs/pull/2/head` holds
/// `files`; returns the head commit's sha.
fn bare_repository(root: &Path, files: &[(&str, &str)]) -> String {
    let repo = git2::Repository::init_bare(root.join("Codertocat/Hello-World.git")).unwrap();
    let signature = git2::Signature::now("Codertocat", "octocat@github.com").unwrap();
    let mut base_tree = repo.treebuilder(None).unwrap();
    let readme = repo.blob(b"# Hello-World\n").unwrap();
    base_tree.insert("README.md", readme, 0o100644).unwrap();
    let base_tree = repo.find_tree(base_tree.write().unwrap()).unwrap();
    let base = repo
        .commit(
            Some("refs/heads/master"),
            &signature,
            &signature,
            "Initial commit",
            &base_tree,
            &[],
        )
        .unwrap();
    let mut head_tree = repo.treebuilder(Some(&base_tree)).unwrap();
    for (name, content) in files {
        let blob = repo.blob(content.as_bytes()).unwrap();
        head_tree.insert(name, blob, 0o100644).unwrap();
    }
    let head_tree = repo.find_tree(head_tree.write().unwrap()).unwrap();
    let base = repo.find_commit(base).unwrap();
    let head = repo
        .commit(
            Some("refs/pull/2/head"),
            &signature,
            &signature,
            "Update the README with new information.",
            &head_tree,
            &[&base],
        )
        .unwrap();
    head.to_string()
}

/// GitHub's recorded `pull_request.opened` delivery, with the head pointed at `head_sha`
/// (the fixture's commit exists only on github.com), parsed as the server would.
fn opened_delivery(head_sha: &str) -> hamster_github::GitHubEvent {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/github-webhooks/pull_request/opened.payload.json");
    let mut payload: Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    payload["pull_request"]["head"]["sha"] = json!(head_sha);
    let body = serde_json::to_vec(&payload).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-github-event", "pull_request".parse().unwrap());
    headers.insert(
        "x-github-delivery",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958".parse().unwrap(),
    );
    headers.insert("content-type", "application/json".parse().unwrap());
    let mut delivery = WebhookParser::new(None).parse(&headers, &body).unwrap();
    assert_eq!(delivery.events.len(), 1);
    delivery.events.remove(0)
}

/// Runs the seed handler on a pull request whose head holds `files`.
async fn run_seed(files: &[(&str, &str)]) -> (RunReport, Vec<RecordedCall>, String) {
    let dir = tempfile::tempdir().unwrap();
    let remotes = dir.path().join("remotes");
    let head_sha = bare_repository(&remotes, files);
    let config = GitConfig::builder(dir.path().join("cache"))
        .url_template(format!(
            "file://{}/{{owner}}/{{repo}}.git",
            remotes.display()
        ))
        .build()
        .unwrap();
    let github = Arc::new(RecordingGitHub::new());
    let kit = TestKit::builder()
        .service::<dyn GitHub>(github.clone())
        .workspaces(Arc::new(
            TempWorkspaces::new(GitMaterializer::new(config)).in_dir(dir.path().join("runs")),
        ))
        // Named explicitly: link-time registration alone is not guaranteed to survive linking.
        .action(hamster_actions::ShellCommand)
        .action(hamster_actions::PullRequestComment)
        .action(hamster_actions::SetCommitStatus)
        .handlers(SEED)
        .build()
        .await
        .unwrap();
    let event = opened_delivery(&head_sha);
    let mut runs = kit.run_event(&event).await.unwrap();
    assert_eq!(runs.len(), 1, "the seed handler should match exactly once");
    // The run's workspace (the clone) is gone once the run is over.
    assert_eq!(
        std::fs::read_dir(dir.path().join("runs")).unwrap().count(),
        0
    );
    (runs.remove(0), github.calls(), head_sha)
}

#[tokio::test]
async fn clean_head_gets_the_success_comment() {
    let (run, calls, _) = run_seed(&[
        ("app.py", "def greet(name):\n    return f'hello {name}'\n"),
        ("util.py", "VALUE = 42\n"),
    ])
    .await;
    assert_eq!(
        run.status(),
        hamster_core::store::RunStatus::Succeeded,
        "{:#?}",
        run.steps
    );
    let output = run.output("linter").unwrap();
    assert_eq!(output, "2 files compile\n");
    assert_eq!(
        calls,
        [RecordedCall {
            method: "POST".into(),
            path: "/repos/Codertocat/Hello-World/issues/2/comments".into(),
            body: json!({"body": format!("hey @Codertocat pylint returned {output}")}),
        }]
    );
}

#[tokio::test]
async fn failing_lint_comments_and_sets_a_failure_status_on_the_head() {
    let (run, calls, head_sha) = run_seed(&[
        ("app.py", "def greet(name):\n    return f'hello {name}'\n"),
        ("broken.py", "def oops(:\n    pass\n"),
    ])
    .await;
    assert_eq!(run.status(), hamster_core::store::RunStatus::Failed);
    let linter = run.step("linter").unwrap();
    assert_eq!(linter.data["exit_code"], json!(1));
    let output = run.output("linter").unwrap();
    assert!(
        output.contains("broken.py") && output.contains("SyntaxError"),
        "{output}"
    );
    assert_eq!(
        calls,
        [
            RecordedCall {
                method: "POST".into(),
                path: "/repos/Codertocat/Hello-World/issues/2/comments".into(),
                body: json!({"body": format!("lint failed: {output}")}),
            },
            RecordedCall {
                method: "POST".into(),
                path: format!("/repos/Codertocat/Hello-World/statuses/{head_sha}"),
                body: json!({"state": "failure", "context": "hamster/lint", "description": "lint failed on changes"}),
            },
        ]
    );
}
