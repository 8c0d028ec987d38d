//! End to end, distributed: an appserver and two workers as separate processes (the hidden
//! `hamster appserver` / `hamster worker` modes, which `examples/appserver.rs` and
//! `examples/worker.rs` also run) on the local PostgreSQL and Redis, a fake GitHub, and a
//! local bare repository as the pull request's remote.
//!
//! Each test uses its own PostgreSQL schema and Redis prefix, and removes them at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use hamster::core::store::{RunFilter, RunId, RunStatus, Store};
use hamster::queue_redis::{RedisQueue, RedisQueueConfig};
use hamster::store_postgres::{PostgresConfig, PostgresStore};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

/// A handler whose first step sleeps, so that a worker can be killed in the middle of it.
/// The step records which worker runs it (`$PPID` of the shell is the worker).
fn slow_handler(marker: &Path) -> String {
    format!(
        r#"name: Slow step
events: [pull_request.synchronize]
env:
  MARKER: '{}'
actions:
  - action: shell_command
    name: slow
    args:
      command: 'echo $PPID >> "$MARKER"; sleep 3; echo slept'
      checkout: false
  - action: pull_request_comment
    args: ['slow step done: {{{{ slow.output }}}}']
"#,
        marker.display()
    )
}

/// The processes of one test, on one schema and prefix.
struct Cluster {
    dir: tempfile::TempDir,
    git_root: PathBuf,
    sha: String,
    schema: String,
    prefix: String,
    github: wiremock::MockServer,
    appserver: HamsterProcess,
    address: String,
    workers: Vec<HamsterProcess>,
}

impl Cluster {
    fn base_command(&self, mode: &str) -> Command {
        Self::command(mode, &self.schema, &self.prefix)
    }

    fn command(mode: &str, schema: &str, prefix: &str) -> Command {
        let mut command = hamster();
        command
            .arg(mode)
            .env("HAMSTER_DATABASE_URL", DATABASE_URL)
            .env("HAMSTER_DATABASE_SCHEMA", schema)
            .env("HAMSTER_REDIS_URL", REDIS_URL)
            .env("HAMSTER_REDIS_PREFIX", prefix)
            .env("HAMSTER_LOG", "info");
        command
    }

    async fn start(test: &str, extra_handlers: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let git_root = dir.path().join("git");
        let sha = bare_repo(&git_root, &lint_repo_files());
        let handlers = dir.path().join("handlers");
        std::fs::create_dir(&handlers).unwrap();
        std::fs::write(handlers.join("linter.yml"), LINTER_HANDLER).unwrap();
        for (name, text) in extra_handlers {
            std::fs::write(handlers.join(name), text).unwrap();
        }
        let github = wiremock::MockServer::start().await;
        mount_fake_github(&github).await;
        let schema = unique_name(&format!("e2e_{test}"));
        let prefix = schema.replace('_', "-");

        let mut command = Self::command("appserver", &schema, &prefix);
        command
            .args(["--listen", "127.0.0.1:0"])
            .arg("--handlers")
            .arg(&handlers)
            .env("HAMSTER_GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET);
        let mut appserver = HamsterProcess::spawn("appserver", command, dir.path());
        // The appserver creates the schema; workers start once it exists.
        let address = appserver.wait_for_address();
        let mut cluster = Self {
            dir,
            git_root,
            sha,
            schema,
            prefix,
            github,
            appserver,
            address,
            workers: Vec::new(),
        };
        for i in 0..2 {
            let mut command = cluster.base_command("worker");
            command
                .args(["--workers", "1"])
                .arg("--data-dir")
                .arg(cluster.dir.path().join(format!("worker-{i}")))
                .env("HAMSTER_GITHUB_API_TOKEN", API_TOKEN)
                .env("HAMSTER_GITHUB_API_URL", cluster.github.uri())
                .env("HAMSTER_GIT_URL_TEMPLATE", url_template(&cluster.git_root))
                .env("HAMSTER_WORKER_LEASE", "2s")
                .env("HAMSTER_SHUTDOWN_GRACE", "10s")
                // A worker killed by SIGKILL cannot remove its run's workspace: keep those
                // in the test's directory.
                .env("TMPDIR", cluster.dir.path());
            let mut worker =
                HamsterProcess::spawn(&format!("worker-{i}"), command, cluster.dir.path());
            worker.wait_for_line("worker ready", Duration::from_secs(60));
            cluster.workers.push(worker);
        }
        cluster
    }

    async fn store(&self) -> PostgresStore {
        PostgresStore::connect(
            DATABASE_URL,
            PostgresConfig {
                schema: Some(self.schema.clone()),
                max_connections: 2,
                ..PostgresConfig::default()
            },
        )
        .await
        .unwrap()
    }

    /// Stops every process gracefully (checking that they exit 0) and removes the schema
    /// and the queue's keys.
    async fn shut_down(mut self) {
        for process in self
            .workers
            .iter_mut()
            .chain(std::iter::once(&mut self.appserver))
        {
            if process.signal_if_running("TERM") {
                let exit = process.wait_exit(Duration::from_secs(40));
                assert!(
                    exit.success(),
                    "{} exited with {exit:?}:\n{}",
                    process.name,
                    process.stderr()
                );
            }
        }
        let store = self.store().await;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .execute(store.pool())
            .await
            .unwrap();
        store.close().await;
        let queue = RedisQueue::connect(REDIS_URL, RedisQueueConfig::new(self.prefix.clone()))
            .await
            .unwrap();
        queue.purge().await.unwrap();
        queue.close().await;
    }
}

trait SignalIfRunning {
    fn signal_if_running(&mut self, signal: &str) -> bool;
}

impl SignalIfRunning for HamsterProcess {
    fn signal_if_running(&mut self, signal: &str) -> bool {
        let alive = Path::new(&format!("/proc/{}", self.pid())).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
                .unwrap_or_default()
                .contains(") Z ");
        if alive {
            self.signal(signal);
        }
        alive
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appserver_and_two_workers_run_the_seed_handler() {
    if !backends_available("appserver_and_two_workers_run_the_seed_handler") {
        return;
    }
    let cluster = Cluster::start("seed", &[]).await;
    let client = http_client();
    let body = payload_with_head("pull_request/opened.payload.json", &cluster.sha);
    let (status, answer) = post_delivery(
        &client,
        &cluster.address,
        "pull_request",
        "e2e-distributed-1",
        body.clone(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let run_id = answer["runs"][0].as_str().unwrap().to_owned();

    expect_linter_calls(&cluster.github, &cluster.sha).await;

    // A redelivery of the same id creates nothing new.
    let (status, again) = post_delivery(
        &client,
        &cluster.address,
        "pull_request",
        "e2e-distributed-1",
        body,
    )
    .await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["runs"][0], run_id.as_str());

    let store = cluster.store().await;
    let run = eventually(
        Duration::from_secs(10),
        "the run to be recorded as succeeded",
        || {
            let store = &store;
            let run_id = run_id.clone();
            async move {
                let run = store.get_run(run_id.parse().unwrap()).await.unwrap()?;
                (run.status == RunStatus::Succeeded).then_some(run)
            }
        },
    )
    .await;
    assert_eq!(run.handler_name, "Pull Request Linter");
    let steps = store.list_steps(run.id).await.unwrap();
    assert_eq!(steps.len(), 4, "{steps:#?}");
    assert_eq!(steps[1].data["output"], LINT_OUTPUT);
    store.close().await;
    cluster.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_step_leaves_the_run_to_the_other_worker() {
    if !backends_available("a_worker_killed_mid_step_leaves_the_run_to_the_other_worker") {
        return;
    }
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("slow-step-workers");
    let mut cluster = Cluster::start("kill", &[("slow.yml", slow_handler(&marker))]).await;
    let worker_pids: Vec<u32> = cluster.workers.iter().map(HamsterProcess::pid).collect();

    let client = http_client();
    let body = payload_with_head("pull_request/synchronize.payload.json", &cluster.sha);
    let (status, answer) = post_delivery(
        &client,
        &cluster.address,
        "pull_request",
        "e2e-kill-1",
        body,
    )
    .await;
    assert_eq!(status, 202, "{answer}");

    let first: u32 = eventually(Duration::from_secs(30), "the slow step to start", || {
        let marker = marker.clone();
        async move {
            let text = std::fs::read_to_string(&marker).ok()?;
            text.lines().next()?.trim().parse().ok()
        }
    })
    .await;
    let victim = worker_pids
        .iter()
        .position(|pid| *pid == first)
        .unwrap_or_else(|| panic!("the step ran in {first}, not a worker ({worker_pids:?})"));
    cluster.workers[victim].signal("KILL");
    cluster.workers[victim].wait_exit(Duration::from_secs(10));

    let comment_path = format!("/repos/Codertocat/Hello-World/issues/{PR_NUMBER}/comments");
    let calls = eventually(
        Duration::from_secs(60),
        "the run to finish on the other worker",
        || async {
            let calls = github_calls(&cluster.github).await;
            calls
                .iter()
                .any(|c| c.path == comment_path)
                .then_some(calls)
        },
    )
    .await;
    let comments: Vec<_> = calls.iter().filter(|c| c.path == comment_path).collect();
    assert_eq!(comments.len(), 1, "{calls:#?}");
    assert_eq!(comments[0].body["body"], "slow step done: slept\n");

    let runners: Vec<u32> = std::fs::read_to_string(&marker)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let survivor = worker_pids[1 - victim];
    assert_eq!(
        runners,
        [first, survivor],
        "the step ran again on the survivor"
    );

    // The comment is posted before the run's last records: wait for the run to finish.
    let store = cluster.store().await;
    let run = eventually(Duration::from_secs(30), "the run to be finished", || {
        let store = &store;
        async move {
            let runs = store
                .list_runs(&RunFilter {
                    handler: Some("Slow step".to_owned()),
                    ..RunFilter::default()
                })
                .await
                .unwrap();
            assert_eq!(runs.len(), 1, "{runs:#?}");
            let run = runs.into_iter().next()?;
            run.status.is_terminal().then_some(run)
        }
    })
    .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let steps = store.list_steps(run.id).await.unwrap();
    assert_eq!(steps[0].name, "slow");
    assert_eq!(
        steps[0].attempt, 2,
        "the interrupted step was re-run: {steps:#?}"
    );
    store.close().await;
    cluster.shut_down().await;
}

/// An appserver that dies between recording a run and enqueueing its job leaves the run
/// `queued` with no job. The next appserver to start (or the same one, restarted) sweeps for
/// such runs and enqueues their jobs, and the workers run them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_without_a_job_is_enqueued_by_an_appserver() {
    if !backends_available("a_run_left_without_a_job_is_enqueued_by_an_appserver") {
        return;
    }
    let cluster = Cluster::start("stranded", &[]).await;
    let client = http_client();
    let body = payload_with_head("pull_request/opened.payload.json", &cluster.sha);
    let (status, answer) = post_delivery(
        &client,
        &cluster.address,
        "pull_request",
        "e2e-stranded-1",
        body,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let run_id: RunId = answer["runs"][0].as_str().unwrap().parse().unwrap();
    let store = cluster.store().await;
    let finished = eventually(Duration::from_secs(90), "the first run to succeed", || {
        let store = &store;
        async move {
            let run = store.get_run(run_id).await.unwrap()?;
            (run.status == RunStatus::Succeeded).then_some(run)
        }
    })
    .await;

    // What the crash leaves: a run of the same handler and event, queued ten minutes ago,
    // and no job for it.
    let mut stranded = finished;
    stranded.id = RunId::new();
    stranded.status = RunStatus::Queued;
    stranded.created_at = chrono::Utc::now() - chrono::TimeDelta::minutes(10);
    stranded.started_at = None;
    stranded.finished_at = None;
    store.create_runs(vec![stranded.clone()]).await.unwrap();

    let mut command = cluster.base_command("appserver");
    command.args(["--listen", "127.0.0.1:0"]);
    let mut second = HamsterProcess::spawn("appserver-2", command, cluster.dir.path());
    second.wait_for_address();
    eventually(
        Duration::from_secs(90),
        "the stranded run to be enqueued and to succeed",
        || {
            let store = &store;
            async move {
                let run = store.get_run(stranded.id).await.unwrap()?;
                (run.status == RunStatus::Succeeded).then_some(())
            }
        },
    )
    .await;
    second.signal("TERM");
    let exit = second.wait_exit(Duration::from_secs(40));
    assert!(
        exit.success(),
        "appserver-2 exited with {exit:?}:\n{}",
        second.stderr()
    );
    store.close().await;
    cluster.shut_down().await;
}
