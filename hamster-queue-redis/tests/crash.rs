//! A worker process killed with SIGKILL while it holds a job: another worker completes the job
//! once the lease expires; the job ran at most twice and its result is recorded once.
//!
//! Worker processes are this test binary re-executed with `HAMSTER_CRASH_WORKER` set.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::{purge_prefix, random_prefix, redis_available, redis_url};
use hamster_core::queue::{NewJob, Queue, QueueStats};
use hamster_queue_redis::{RedisQueue, RedisQueueConfig};
use redis::AsyncCommands;
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const TEST_NAME: &str = "a_killed_worker_s_job_is_completed_by_another_worker_once";
const MODE: &str = "HAMSTER_CRASH_WORKER";
const PREFIX: &str = "HAMSTER_CRASH_PREFIX";
const LEASE: Duration = Duration::from_millis(1500);

fn executions_key(prefix: &str) -> String {
    format!("{{{prefix}}}:test:executions")
}

fn results_key(prefix: &str) -> String {
    format!("{{{prefix}}}:test:results")
}

/// Worker mode: take one job, count the execution, then either hang (to be killed) or finish:
/// record the result once and ack.
async fn worker(mode: &str, prefix: &str) {
    let queue = RedisQueue::connect(&redis_url(), RedisQueueConfig::new(prefix))
        .await
        .unwrap();
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let lease = queue
        .receive(LEASE, Duration::from_secs(20))
        .await
        .unwrap()
        .expect("a job");
    let id = lease.job.id.to_string();
    let _: i64 = redis.hincr(executions_key(prefix), &id, 1).await.unwrap();
    println!("leased {id} attempt {}", lease.job.attempt);
    if mode == "hang" {
        // Simulates a worker stuck mid-job until the parent kills it.
        tokio::time::sleep(Duration::from_secs(600)).await;
        return;
    }
    let result = format!(
        "done at attempt {} by pid {}",
        lease.job.attempt,
        std::process::id()
    );
    let _: bool = redis
        .hset_nx(results_key(prefix), &id, result)
        .await
        .unwrap();
    queue.ack(&lease).await.unwrap();
    println!("acked {id}");
}

fn spawn_worker(mode: &str, prefix: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .env(PREFIX, prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The first line the worker prints about its job.
async fn leased_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // libtest prints "test <name> ... " on the same line, before ours.
            if let Some(start) = line.find("leased ") {
                return line[start..].to_owned();
            }
        }
        panic!("the worker exited without leasing a job");
    };
    let line = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("worker leased in time");
    // Keep reading, so that the worker's later output does not hit a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_job_is_completed_by_another_worker_once() {
    if let (Ok(mode), Ok(prefix)) = (std::env::var(MODE), std::env::var(PREFIX)) {
        worker(&mode, &prefix).await;
        return;
    }
    if !redis_available(TEST_NAME) {
        return;
    }
    let prefix = random_prefix();
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            purge_prefix(&self.0);
        }
    }
    let _cleanup = Cleanup(prefix.clone());

    let queue = RedisQueue::connect(&redis_url(), RedisQueueConfig::new(&prefix))
        .await
        .unwrap();
    let id = queue
        .enqueue(NewJob::new(json!({"run": 1})).max_attempts(3))
        .await
        .unwrap();

    let mut doomed = spawn_worker("hang", &prefix);
    assert_eq!(
        leased_line(&mut doomed).await,
        format!("leased {id} attempt 1")
    );
    doomed.kill().await.unwrap(); // SIGKILL: no chance to release or ack
    let status = doomed.wait().await.unwrap();
    assert!(!status.success());

    let mut survivor = spawn_worker("finish", &prefix);
    assert_eq!(
        leased_line(&mut survivor).await,
        format!("leased {id} attempt 2")
    );
    let status = tokio::time::timeout(Duration::from_secs(30), survivor.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the second worker failed: {status}");

    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let executions: i64 = redis
        .hget(executions_key(&prefix), id.to_string())
        .await
        .unwrap();
    assert_eq!(
        executions, 2,
        "ran once in the killed worker, once in the survivor"
    );
    let results: std::collections::HashMap<String, String> =
        redis.hgetall(results_key(&prefix)).await.unwrap();
    assert_eq!(results.len(), 1);
    assert!(
        results[&id.to_string()].starts_with("done at attempt 2"),
        "{results:?}"
    );
    assert_eq!(queue.stats().await.unwrap(), QueueStats::default());
}
