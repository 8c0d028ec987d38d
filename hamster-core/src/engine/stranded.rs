//! Runs left `queued` without a job, and the sweep that gives them one.
//!
//! With separate store and queue servers, a process can die between recording a run and
//! enqueueing its job. A run's job is keyed by the run, so enqueueing it again adds a job
//! only where it is missing: the sweep may run in every process that takes webhooks.

use super::{Engine, EngineError};
use crate::store::{RunFilter, RunId, RunRecord, RunStatus};
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a run may stay `queued` before [`Engine::sweep_stranded`] enqueues its job
/// again: far longer than intake takes between recording a run and enqueueing it
/// (milliseconds).
pub const STRANDED_AFTER: Duration = Duration::from_secs(120);

/// How often [`Engine::sweep_stranded`] sweeps.
pub const STRANDED_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How many queued runs [`Engine::enqueue_stranded`] reads at a time.
const STRANDED_PAGE: u32 = 100;

impl Engine {
    /// Enqueues the job of every run still `queued` that was created before
    /// `created_before` and, when `since` is given, not before `since`; returns how many
    /// such runs there were. A run whose job is still in the queue (a backlog) keeps that
    /// job: jobs are keyed by run, so this never makes a second one.
    ///
    /// [`sweep_stranded`](Self::sweep_stranded) calls it periodically; call it yourself for
    /// a one-off recovery.
    pub async fn enqueue_stranded(
        &self,
        created_before: DateTime<Utc>,
        since: Option<DateTime<Utc>>,
    ) -> Result<usize, EngineError> {
        let mut filter = RunFilter {
            status: Some(RunStatus::Queued),
            created_before: Some(created_before),
            limit: Some(STRANDED_PAGE),
            ..RunFilter::default()
        };
        let mut offered = 0;
        loop {
            let page = self.inner.store.list_runs(&filter).await?;
            let in_window = |run: &&RunRecord| since.is_none_or(|since| run.created_at >= since);
            let stranded: Vec<RunId> = page
                .iter()
                .take_while(in_window)
                .map(|run| run.id)
                .collect();
            self.enqueue_all(&stranded).await?;
            offered += stranded.len();
            // Newest first: a run older than the window ends it. A store may cap the page
            // below what was asked, so only an empty page is the end otherwise.
            match page.last() {
                Some(last) if in_window(&last) => filter.before = Some(last.id),
                _ => return Ok(offered),
            }
        }
    }

    /// Enqueues the jobs of runs left `queued` without one, at once and then every
    /// [`STRANDED_SWEEP_EVERY`], until `shutdown`. Every process that takes webhooks
    /// (`serve`, each appserver) should run it; several may at once.
    ///
    /// The first sweep reads every run queued for over [`STRANDED_AFTER`]. Each later one
    /// reads only the runs created since the previous window began, less
    /// [`STRANDED_AFTER`] again: a run is looked at a few times, a backlog is not read again
    /// every minute, and processes whose clocks differ by less than that miss nothing.
    pub async fn sweep_stranded(&self, shutdown: CancellationToken) {
        let after = TimeDelta::from_std(STRANDED_AFTER).unwrap_or(TimeDelta::MAX);
        let mut since = None;
        loop {
            let created_before = Utc::now() - after;
            match self.enqueue_stranded(created_before, since).await {
                Ok(runs) => {
                    if runs > 0 {
                        tracing::info!(
                            runs,
                            "runs queued for over {} s: their jobs are in the queue (enqueued again where they were missing)",
                            STRANDED_AFTER.as_secs()
                        );
                    }
                    since = Some(created_before - after);
                }
                Err(error) => {
                    tracing::warn!(%error, "could not sweep for runs left without a job; trying again later");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(STRANDED_SWEEP_EVERY) => {}
            }
        }
    }
}
