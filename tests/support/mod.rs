//! Helpers shared by the process-level tests: the `hamster` binary as a child process, a
//! local bare repository standing in for GitHub's git, signed fixtures, and the
//! PostgreSQL/Redis availability rule.
#![allow(dead_code)] // Each test file uses a different part of this module.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The webhook secret the tests configure.
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret";
/// The GitHub API token the tests configure (the fake GitHub checks it).
pub const API_TOKEN: &str = "ghp_e2eTestToken0123456789";
/// The PR number of `pull_request/opened.payload.json`.
pub const PR_NUMBER: u64 = 2;

/// The repository's fixture directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-webhooks")
}

/// The `hamster` binary built for these tests.
pub fn hamster_bin() -> &'static str {
    env!("CARGO_BIN_EXE_hamster")
}

/// A `Command` for the binary with every `HAMSTER_*` variable of the test's environment
/// removed, so that the developer's configuration cannot leak into a test.
pub fn hamster() -> Command {
    let mut command = Command::new(hamster_bin());
    for (name, _) in std::env::vars() {
        if name.starts_with("HAMSTER_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

/// `sha256=<hex>`: GitHub's `X-Hub-Signature-256`, computed independently of the binary.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A bare repository at `<root>/Codertocat/Hello-World.git` with one commit holding
/// `files`, reachable as `refs/heads/changes` and `refs/pull/2/head`. Returns the commit's
/// sha.
pub fn bare_repo(root: &Path, files: &[(&str, &str)]) -> String {
    let path = root.join("Codertocat/Hello-World.git");
    let repo = git2::Repository::init_bare(&path).unwrap();
    let mut tree = repo.treebuilder(None).unwrap();
    for (name, content) in files {
        let blob = repo.blob(content.as_bytes()).unwrap();
        tree.insert(name, blob, 0o100644).unwrap();
    }
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let signature = git2::Signature::now("Codertocat", "codertocat@example.com").unwrap();
    let commit = repo
        .commit(
            Some("refs/heads/changes"),
            &signature,
            &signature,
            "changes",
            &tree,
            &[],
        )
        .unwrap();
    repo.reference("refs/pull/2/head", commit, true, "pull request head")
        .unwrap();
    commit.to_string()
}

/// The clone URL template pointing at repositories made by [`bare_repo`] under `root`.
pub fn url_template(root: &Path) -> String {
    format!("file://{}/{{owner}}/{{repo}}.git", root.display())
}

/// A recorded delivery's body with the pull request's head moved to `head_sha` (the local
/// repository's commit), so that the checkout finds it.
pub fn payload_with_head(relative: &str, head_sha: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(fixtures().join(relative)).unwrap();
    let mut payload: serde_json::Value = serde_json::from_str(&text).unwrap();
    payload["pull_request"]["head"]["sha"] = serde_json::Value::String(head_sha.to_owned());
    serde_json::to_vec(&payload).unwrap()
}

/// The seed's Pull Request Linter handler, with its lint command replaced by one that
/// exists here, a pending commit status first and a success status last.
pub const LINTER_HANDLER: &str = r#"name: Pull Request Linter
events: [pull_request.opened, pull_request.reopened]
criteria: source.repository is Hello-World
actions:
  - action: commit_status
    name: lint_pending
    args: {state: pending, context: hamster/lint, description: linting}
  - action: shell_command
    name: linter
    args: ['python3 lint.py *.py']
    on_failure:
      - action: pull_request_comment
        args: ['lint failed: {{ linter.output }}']
  - action: pull_request_comment
    args: ['hey @{{ source.user }} pylint returned {{ linter.output }}']
  - action: commit_status
    name: lint_success
    args: {state: success, context: hamster/lint, description: lint passed}
"#;

/// A tiny linter committed in the test repository: counts the Python files it was given
/// and checks that they compile.
pub const LINT_SCRIPT: &str = r#"import sys, py_compile
files = sys.argv[1:]
for name in files:
    py_compile.compile(name, doraise=True)
print("checked %d file(s): no problem found" % len(files))
"#;

/// What [`LINT_SCRIPT`] prints for the files of [`lint_repo_files`].
pub const LINT_OUTPUT: &str = "checked 2 file(s): no problem found\n";

/// The files of the linted repository.
pub fn lint_repo_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("lint.py", LINT_SCRIPT),
        ("hello.py", "print('hello world')\n"),
        ("README.md", "Hello World\n"),
    ]
}

/// A child process running the binary, with its stdout lines collected and its stderr in
/// a file. Killed (SIGKILL) when dropped, if still running.
#[derive(Debug)]
pub struct HamsterProcess {
    pub name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr_path: PathBuf,
}

impl HamsterProcess {
    /// Starts `command` (from [`hamster`]) with stdout piped and stderr to
    /// `<log_dir>/<name>.stderr`.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Self {
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
            stderr_path,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line starting with `prefix` and returns it.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return line.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "{}: no line starting with {prefix:?} within {timeout:?} (exited: {status:?}); stdout so far: {:#?}\nstderr:\n{}",
                        self.name,
                        self.seen,
                        self.stderr()
                    );
                }
            }
        }
    }

    /// The `http://ADDR` from its "listening on" line.
    pub fn wait_for_address(&mut self) -> String {
        let line = self.wait_for_line("listening on ", Duration::from_secs(120));
        line.trim_start_matches("listening on ").trim().to_owned()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Every stdout line received so far (draining what is pending).
    pub fn stdout_lines(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    /// Sends a signal (`TERM`, `KILL`…).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not exit within {timeout:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resident memory (VmRSS) in KiB, from `/proc`.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }
}

impl Drop for HamsterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.name, self.stderr());
        }
    }
}

/// Resident memory (VmRSS) of a process in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` with
/// `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Local PostgreSQL and Redis for the distributed tests.
pub const DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// See [`DATABASE_URL`].
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Whether PostgreSQL and Redis answer on their local ports. When they do not: fails the
/// test if `CI` is set, else prints `skipped: <test>: <why>` and returns `false`.
pub fn backends_available(test: &str) -> bool {
    let mut missing = Vec::new();
    for (name, address) in [
        ("PostgreSQL", "127.0.0.1:5432"),
        ("Redis", "127.0.0.1:6379"),
    ] {
        let reachable = address
            .parse()
            .ok()
            .and_then(|addr| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()
            })
            .is_some();
        if !reachable {
            missing.push(format!("{name} is not reachable at {address}"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = missing.join("; ");
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why} (CI is set, so this is a failure)");
    }
    eprintln!("skipped: {test}: {why}");
    false
}

/// A name unique to this test run, usable as a PostgreSQL schema and a Redis prefix.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Posts a delivery signed with [`WEBHOOK_SECRET`]; returns the status and the JSON body.
pub async fn post_delivery(
    client: &reqwest::Client,
    address: &str,
    event: &str,
    delivery: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let signature = sign(WEBHOOK_SECRET, &body);
    let response = client
        .post(format!("{address}/webhooks/github"))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", signature)
        .header("Content-Type", "application/json")
        .header("User-Agent", "GitHub-Hookshot/e2e")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let json = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// An HTTP client for the tests (plain HTTP on loopback).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Mounts the fake GitHub's answers for comments and commit statuses.
pub async fn mount_fake_github(server: &wiremock::MockServer) {
    use wiremock::matchers::{header, method, path_regex};
    use wiremock::{Mock, ResponseTemplate};
    let auth = format!("Bearer {API_TOKEN}");
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/issues/\d+/comments$"))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
            "id": 4242, "html_url": "https://github.example/c/4242"
        })))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/statuses/[0-9a-f]+$"))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"id": 1})))
        .mount(server)
        .await;
}

/// One request the fake GitHub received.
#[derive(Debug, Clone)]
pub struct GitHubCall {
    pub method: String,
    pub path: String,
    pub body: serde_json::Value,
}

/// The requests the fake GitHub received so far, oldest first.
pub async fn github_calls(server: &wiremock::MockServer) -> Vec<GitHubCall> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|request| GitHubCall {
            method: request.method.to_string(),
            path: request.url.path().to_owned(),
            body: serde_json::from_slice(&request.body).unwrap_or(serde_json::Value::Null),
        })
        .collect()
}

/// Waits until the fake GitHub has received the linter's comment and both commit statuses
/// for `sha`, then checks them: the comment carries the linter's output, and the statuses
/// go pending → success on the PR head.
pub async fn expect_linter_calls(server: &wiremock::MockServer, sha: &str) {
    let status_path = format!("/repos/Codertocat/Hello-World/statuses/{sha}");
    let comment_path = format!("/repos/Codertocat/Hello-World/issues/{PR_NUMBER}/comments");
    let calls = eventually(
        Duration::from_secs(90),
        "the linter's GitHub calls",
        || async {
            let calls = github_calls(server).await;
            let statuses = calls.iter().filter(|c| c.path == status_path).count();
            let done = calls
                .iter()
                .any(|c| c.path == status_path && c.body["state"] == "success");
            (statuses >= 2 && done).then_some(calls)
        },
    )
    .await;
    let comments: Vec<_> = calls.iter().filter(|c| c.path == comment_path).collect();
    assert_eq!(comments.len(), 1, "one comment: {calls:#?}");
    assert_eq!(comments[0].method, "POST");
    assert_eq!(
        comments[0].body["body"],
        format!("hey @Codertocat pylint returned {LINT_OUTPUT}")
    );
    let states: Vec<_> = calls
        .iter()
        .filter(|c| c.path == status_path)
        .map(|c| c.body["state"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(states, ["pending", "success"], "{calls:#?}");
    let pending = calls.iter().position(|c| c.path == status_path).unwrap();
    let comment = calls.iter().position(|c| c.path == comment_path).unwrap();
    assert!(
        pending < comment,
        "pending is set before the comment: {calls:#?}"
    );
}
