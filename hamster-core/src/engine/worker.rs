//! Workers: take run jobs from the queue and execute them.

use super::execute::{Interruption, Stops};
use super::{Engine, EngineError};
use crate::queue::{Lease, QueueError};
use crate::store::{RunId, RunStatus};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Runs executed at once.
    pub concurrency: usize,
    /// How long a job is leased; the worker extends it every third of that while it runs, so
    /// a dead worker's job is handed to another after at most this long.
    pub lease: Duration,
    /// How long one `receive` waits for a job.
    pub poll_wait: Duration,
    /// Backoff before a run whose execution failed on an infrastructure error (store down)
    /// is retried; doubled per attempt.
    pub retry_backoff: Duration,
    /// On shutdown, how long runs in progress may take to finish before they are released
    /// for another worker.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease: Duration::from_secs(30),
            poll_wait: Duration::from_secs(1),
            retry_backoff: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

/// Executes runs from the queue. See [`Engine::worker`].
#[derive(Debug, Clone)]
pub struct Worker {
    engine: Engine,
    config: WorkerConfig,
}

impl Worker {
    pub(crate) fn new(engine: Engine, config: WorkerConfig) -> Self {
        Self { engine, config }
    }

    /// Takes and executes jobs until `shutdown` is cancelled. Then it takes no more work,
    /// gives runs in progress `shutdown_grace` to finish, and releases the rest to the queue
    /// so that another worker resumes them at the step that was running.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), EngineError> {
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let release = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut receive_backoff = Duration::from_millis(100);
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                received = self.engine.inner.queue.receive(self.config.lease, self.config.poll_wait) => received,
            };
            match received {
                Ok(Some(lease)) => {
                    receive_backoff = Duration::from_millis(100);
                    let worker = self.clone();
                    let release = release.clone();
                    tasks.spawn(async move {
                        worker.handle(lease, release).await;
                        drop(permit);
                    });
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, backoff = ?receive_backoff, "could not receive from the queue; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(receive_backoff) => {}
                    }
                    receive_backoff = (receive_backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        tracing::info!(
            in_progress = tasks.len(),
            "worker stopping: no new work is taken"
        );
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!(
                in_progress = tasks.len(),
                "grace period over; releasing runs in progress to other workers"
            );
            release.cancel();
            while tasks.join_next().await.is_some() {}
        }
        Ok(())
    }

    /// Executes every job ready now, one at a time, until `receive` returns nothing.
    pub async fn drain(&self) -> Result<Vec<RunId>, EngineError> {
        let mut executed = Vec::new();
        while let Some(lease) = self
            .engine
            .inner
            .queue
            .receive(self.config.lease, self.config.poll_wait)
            .await?
        {
            if let Some(run) = run_id(&lease) {
                executed.push(run);
            }
            self.handle(lease, CancellationToken::new()).await;
        }
        Ok(executed)
    }

    async fn handle(&self, lease: Lease, release: CancellationToken) {
        let queue = &self.engine.inner.queue;
        let Some(run) = run_id(&lease) else {
            tracing::error!(job = %lease.job.id, payload = %lease.job.payload, "job payload has no valid run_id; dropping it");
            let _ = queue.ack(&lease).await;
            return;
        };
        let stops = Stops {
            cancel: CancellationToken::new(),
            release: release.child_token(),
        };
        let keeper = tokio::spawn(keep_lease(
            self.engine.clone(),
            lease.clone(),
            self.config.lease,
            run,
            stops.clone(),
        ));
        let result = AssertUnwindSafe(self.engine.execute_with(run, &stops))
            .catch_unwind()
            .await;
        keeper.abort();
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(panic) => {
                let message = panic_message(&panic);
                tracing::error!(%run, %message, "run panicked; marking it failed");
                let _ = self
                    .engine
                    .inner
                    .store
                    .transition_run(
                        run,
                        &[RunStatus::Running, RunStatus::Queued],
                        RunStatus::Failed,
                        Some(format!("a step panicked: {message}")),
                    )
                    .await;
                Ok((RunStatus::Failed, None))
            }
        };
        let acked = match outcome {
            Ok((_, Some(Interruption::Released))) => queue.release(&lease).await,
            Ok((status, None)) => {
                tracing::debug!(%run, status = status.as_str(), "job settled");
                queue.ack(&lease).await
            }
            Err(EngineError::RunNotFound(_)) => {
                tracing::error!(%run, "job refers to a run that does not exist; dropping it");
                queue.ack(&lease).await
            }
            Err(error) => {
                let delay = self.config.retry_backoff
                    * 2u32.saturating_pow(lease.job.attempt.saturating_sub(1).min(10));
                tracing::warn!(%run, %error, ?delay, attempt = lease.job.attempt, "run could not be executed; it will be retried");
                queue
                    .retry(&lease, delay, &error.to_string())
                    .await
                    .map(|_| ())
            }
        };
        if let Err(error) = acked {
            match error {
                QueueError::LeaseLost(_) => {
                    tracing::warn!(%run, "lease lost before the job was settled; another worker owns it now")
                }
                error => {
                    tracing::error!(%run, %error, "could not settle the job; it will be redelivered after its lease")
                }
            }
        }
    }
}

/// Extends the lease while the run executes; notices cancellation and lost leases.
async fn keep_lease(engine: Engine, lease: Lease, lease_for: Duration, run: RunId, stops: Stops) {
    let every = (lease_for / 3).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(every).await;
        match engine.inner.queue.extend(&lease, lease_for).await {
            Ok(_) => {}
            Err(QueueError::LeaseLost(_)) => {
                tracing::warn!(%run, "lease lost while running (the worker stalled longer than the lease); stopping so the new owner can resume");
                stops.release.cancel();
                return;
            }
            Err(error) => tracing::warn!(%run, %error, "could not extend the lease"),
        }
        if let Ok(Some(record)) = engine.inner.store.get_run(run).await
            && record.status == RunStatus::Cancelled
        {
            stops.cancel.cancel();
        }
    }
}

fn run_id(lease: &Lease) -> Option<RunId> {
    lease.job.payload.get("run_id")?.as_str()?.parse().ok()
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
