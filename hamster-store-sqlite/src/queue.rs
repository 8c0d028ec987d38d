//! [`Queue`] on SQLite.

use crate::SqliteBackend;
use crate::error;
use crate::time::{FOREVER, from_micros, micros_after, now_micros, utc_after};
use crate::writer::{Executed, Write};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hamster_core::queue::{
    DeadLetter, Job, JobId, Lease, NewJob, Queue, QueueError, QueueStats, RetryOutcome,
};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// The reason recorded when a job's last lease expires.
const LEASE_EXPIRED: &str = "lease expired";

const JOB_COLUMNS: &str = "id, payload, attempt, max_attempts, enqueued_at";

fn column<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T, QueueError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(name)
        .map_err(|error| QueueError::Corrupt(format!("column `{name}`: {error}")))
}

fn time_column(row: &SqliteRow, name: &str) -> Result<DateTime<Utc>, QueueError> {
    let micros: i64 = column(row, name)?;
    from_micros(micros).ok_or_else(|| {
        QueueError::Corrupt(format!("column `{name}` holds an impossible time {micros}"))
    })
}

fn count_column(row: &SqliteRow, name: &str) -> Result<u32, QueueError> {
    let count: i64 = column(row, name)?;
    u32::try_from(count).map_err(|_| QueueError::Corrupt(format!("column `{name}` holds {count}")))
}

fn job_from_row(row: &SqliteRow) -> Result<Job, QueueError> {
    let payload: &str = column(row, "payload")?;
    Ok(Job {
        id: JobId(column(row, "id")?),
        payload: serde_json::from_str(payload)
            .map_err(|error| QueueError::Corrupt(format!("a job's payload: {error}")))?,
        attempt: count_column(row, "attempt")?,
        max_attempts: count_column(row, "max_attempts")?,
        enqueued_at: time_column(row, "enqueued_at")?,
    })
}

/// `write` followed by what makes the queue's state true at `now`: due delayed jobs become
/// ready, and overdue leases end — the job is ready again at `attempt + 1`, or dead when
/// its attempts are used up.
fn process_due(write: Write, now: i64) -> Write {
    write
        .then(
            "UPDATE jobs SET state = 'ready', available_at = NULL \
             WHERE state = 'delayed' AND available_at <= ?",
        )
        .bind(now)
        .then(
            "UPDATE jobs SET \
                 state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'ready' END, \
                 attempt = CASE WHEN attempt >= max_attempts THEN attempt ELSE attempt + 1 END, \
                 reason = CASE WHEN attempt >= max_attempts THEN ? ELSE NULL END, \
                 failed_at = CASE WHEN attempt >= max_attempts THEN ? ELSE NULL END, \
                 token = NULL, lease_expires_at = NULL \
             WHERE state = 'leased' AND lease_expires_at <= ?",
        )
        .bind(LEASE_EXPIRED)
        .bind(now)
        .bind(now)
}

/// The rows the last statement of a write changed.
fn last_changes(executed: &[Executed]) -> u64 {
    executed.last().map_or(0, |executed| executed.changes)
}

/// What a waiting receiver learns from one cheap look at the queue.
struct Probe {
    /// A job is ready, or a delayed job or a lease is due: worth taking the write lock.
    deliverable: bool,
    /// The earliest future time a delayed job or a lease comes due, in microseconds.
    next_due: Option<i64>,
}

impl SqliteBackend {
    async fn probe(&self, now: i64) -> Result<Probe, QueueError> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'ready') AS ready, \
                 (SELECT MIN(available_at) FROM jobs WHERE state = 'delayed') AS delayed, \
                 (SELECT MIN(lease_expires_at) FROM jobs WHERE state = 'leased') AS lease",
        )
        .fetch_one(self.readers())
        .await
        .map_err(error::queue)?;
        let ready: bool = column(&row, "ready")?;
        let due: Option<i64> = [
            column::<Option<i64>>(&row, "delayed")?,
            column::<Option<i64>>(&row, "lease")?,
        ]
        .into_iter()
        .flatten()
        .min();
        Ok(Probe {
            deliverable: ready || due.is_some_and(|due| due <= now),
            next_due: due.filter(|due| *due > now),
        })
    }

    /// Leases the oldest ready job, after processing what is due, in one transaction.
    async fn lease_next(&self, lease_for: Duration) -> Result<Option<Lease>, QueueError> {
        let now = now_micros();
        let token = Uuid::new_v4().to_string();
        let write = process_due(Write::default(), now)
            .then(format!(
                "UPDATE jobs SET state = 'leased', token = ?, lease_expires_at = ? \
                 WHERE seq = (SELECT seq FROM jobs WHERE state = 'ready' ORDER BY seq LIMIT 1) \
                 RETURNING {JOB_COLUMNS}"
            ))
            .bind(&token)
            .bind(micros_after(now, lease_for));
        let mut executed = self.writer().write(write).await.map_err(error::queue)?;
        let leased = executed
            .pop()
            .and_then(|leased| leased.rows.into_iter().next());
        leased
            .map(|row| {
                Ok(Lease {
                    job: job_from_row(&row)?,
                    token,
                    expires_at: utc_after(now, lease_for),
                })
            })
            .transpose()
    }

    /// Processes what is due, in its own transaction.
    async fn process_due_now(&self) -> Result<(), QueueError> {
        let write = process_due(Write::default(), now_micros());
        self.writer().write(write).await.map_err(error::queue)?;
        Ok(())
    }

    fn wake_receivers(&self) {
        self.inner.job_ready.notify_waiters();
    }
}

#[async_trait]
impl Queue for SqliteBackend {
    async fn enqueue(&self, new_job: NewJob) -> Result<JobId, QueueError> {
        let now = now_micros();
        let id = JobId(Uuid::now_v7().to_string());
        let payload = serde_json::to_string(&new_job.payload)
            .map_err(|error| QueueError::Backend(format!("could not encode a payload: {error}")))?;
        let available_at = new_job
            .not_before
            .map(|at| at.timestamp_micros())
            .filter(|at| *at > now);
        let mut write = Write::new(
            "INSERT INTO jobs (id, payload, state, attempt, max_attempts, enqueued_at, \
             available_at, unique_key) VALUES (?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&id.0)
        .bind(payload)
        .bind(if available_at.is_some() {
            "delayed"
        } else {
            "ready"
        })
        .bind(i64::from(new_job.max_attempts.max(1)))
        .bind(now)
        .bind(available_at)
        .bind(new_job.key.clone());
        if let Some(key) = &new_job.key {
            // In the same transaction: the job holding the key, this one or an earlier one.
            write = write
                .then("SELECT id FROM jobs WHERE unique_key = ?")
                .bind(key.as_str());
        }
        let executed = self.writer().write(write).await.map_err(error::queue)?;
        let inserted = executed.first().is_some_and(|insert| insert.changes == 1);
        if inserted && available_at.is_none() {
            self.wake_receivers();
        }
        if inserted || new_job.key.is_none() {
            return Ok(id);
        }
        let holder = executed
            .get(1)
            .and_then(|select| select.rows.first())
            .ok_or_else(|| {
                QueueError::Corrupt(
                    "a keyed job was neither inserted nor found holding its key".to_owned(),
                )
            })?;
        Ok(JobId(column(holder, "id")?))
    }

    /// Wakes at once for jobs this process makes ready, at the earliest due time it saw,
    /// and otherwise every [`SqliteOptions::poll_interval`](crate::SqliteOptions) for jobs
    /// other processes wrote.
    async fn receive(
        &self,
        lease_for: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>, QueueError> {
        let started = Instant::now();
        let deadline = started
            .checked_add(wait.min(FOREVER))
            .unwrap_or(started + FOREVER);
        loop {
            // Registered before looking, so that a job enqueued between the look and the
            // sleep still wakes this receiver.
            let notified = self.inner.job_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = now_micros();
            let probe = self.probe(now).await?;
            if probe.deliverable {
                if let Some(lease) = self.lease_next(lease_for).await? {
                    return Ok(Some(lease));
                }
                // Another consumer took it: look again at once, unless time is up.
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                continue;
            }
            let looked_at = Instant::now();
            if looked_at >= deadline {
                return Ok(None);
            }
            let mut wake_at = deadline.min(looked_at + self.inner.poll_interval);
            if let Some(due) = probe.next_due {
                let until_due = Duration::from_micros(u64::try_from(due - now).unwrap_or(0));
                wake_at = wake_at.min(looked_at + until_due);
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    async fn extend(
        &self,
        lease: &Lease,
        lease_for: Duration,
    ) -> Result<DateTime<Utc>, QueueError> {
        let now = now_micros();
        let write = Write::new(
            "UPDATE jobs SET lease_expires_at = ? \
             WHERE id = ? AND token = ? AND state = 'leased' AND lease_expires_at > ?",
        )
        .bind(micros_after(now, lease_for))
        .bind(&lease.job.id.0)
        .bind(&lease.token)
        .bind(now);
        let extended = self.writer().write(write).await.map_err(error::queue)?;
        if last_changes(&extended) == 0 {
            return Err(QueueError::LeaseLost(lease.job.id.clone()));
        }
        Ok(utc_after(now, lease_for))
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        let write = Write::new(
            "DELETE FROM jobs \
             WHERE id = ? AND token = ? AND state = 'leased' AND lease_expires_at > ?",
        )
        .bind(&lease.job.id.0)
        .bind(&lease.token)
        .bind(now_micros());
        let deleted = self.writer().write(write).await.map_err(error::queue)?;
        if last_changes(&deleted) == 0 {
            return Err(QueueError::LeaseLost(lease.job.id.clone()));
        }
        Ok(())
    }

    async fn retry(
        &self,
        lease: &Lease,
        delay: Duration,
        reason: &str,
    ) -> Result<RetryOutcome, QueueError> {
        let now = now_micros();
        let due = micros_after(now, delay);
        let delayed = due > now;
        // Every expression reads the row as it was before the update.
        let write = Write::new(
            "UPDATE jobs SET \
                 state = CASE WHEN attempt >= max_attempts THEN 'dead' \
                     WHEN ? THEN 'delayed' ELSE 'ready' END, \
                 available_at = CASE WHEN attempt < max_attempts THEN ? ELSE NULL END, \
                 attempt = CASE WHEN attempt >= max_attempts THEN attempt ELSE attempt + 1 END, \
                 reason = CASE WHEN attempt >= max_attempts THEN ? ELSE NULL END, \
                 failed_at = CASE WHEN attempt >= max_attempts THEN ? ELSE NULL END, \
                 token = NULL, lease_expires_at = NULL \
             WHERE id = ? AND token = ? AND state = 'leased' AND lease_expires_at > ? \
             RETURNING state",
        )
        .bind(delayed)
        .bind(delayed.then_some(due))
        .bind(reason)
        .bind(now)
        .bind(&lease.job.id.0)
        .bind(&lease.token)
        .bind(now);
        let executed = self.writer().write(write).await.map_err(error::queue)?;
        let row = executed
            .into_iter()
            .next()
            .and_then(|retried| retried.rows.into_iter().next());
        let state: Option<String> = row.map(|row| column(&row, "state")).transpose()?;
        match state.as_deref() {
            None => Err(QueueError::LeaseLost(lease.job.id.clone())),
            Some("dead") => {
                tracing::debug!(job = %lease.job.id, attempt = lease.job.attempt, "job dead-lettered");
                Ok(RetryOutcome::DeadLettered)
            }
            Some(state) => {
                if state == "ready" {
                    self.wake_receivers();
                }
                Ok(RetryOutcome::Scheduled {
                    at: utc_after(now, delay),
                })
            }
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), QueueError> {
        let write = Write::new(
            "UPDATE jobs SET state = 'ready', token = NULL, lease_expires_at = NULL \
             WHERE id = ? AND token = ? AND state = 'leased' AND lease_expires_at > ?",
        )
        .bind(&lease.job.id.0)
        .bind(&lease.token)
        .bind(now_micros());
        let released = self.writer().write(write).await.map_err(error::queue)?;
        if last_changes(&released) == 0 {
            return Err(QueueError::LeaseLost(lease.job.id.clone()));
        }
        self.wake_receivers();
        Ok(())
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, QueueError> {
        // Leases that expired on their last attempt are dead letters too.
        self.process_due_now().await?;
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS}, reason, failed_at FROM jobs WHERE state = 'dead' \
             ORDER BY failed_at, seq LIMIT ?"
        ))
        .bind(i64::from(limit))
        .fetch_all(self.readers())
        .await
        .map_err(error::queue)?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetter {
                    job: job_from_row(row)?,
                    reason: column::<Option<String>>(row, "reason")?.unwrap_or_default(),
                    failed_at: time_column(row, "failed_at")?,
                })
            })
            .collect()
    }

    async fn requeue_dead_letter(&self, id: &JobId) -> Result<bool, QueueError> {
        self.process_due_now().await?;
        let write = Write::new(
            "UPDATE jobs SET state = 'ready', attempt = 1, reason = NULL, failed_at = NULL \
             WHERE id = ? AND state = 'dead'",
        )
        .bind(&id.0);
        let requeued = self.writer().write(write).await.map_err(error::queue)?;
        let requeued = last_changes(&requeued) > 0;
        if requeued {
            self.wake_receivers();
        }
        Ok(requeued)
    }

    /// Counts as of now, without writing: a job whose delay or lease ran out is counted
    /// where the next `receive` will put it.
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let row = sqlx::query(
            "SELECT \
                 COALESCE(SUM(state = 'ready' \
                     OR (state = 'delayed' AND available_at <= ?1) \
                     OR (state = 'leased' AND lease_expires_at <= ?1 \
                         AND attempt < max_attempts)), 0) AS ready, \
                 COALESCE(SUM(state = 'delayed' AND available_at > ?1), 0) AS delayed, \
                 COALESCE(SUM(state = 'leased' AND lease_expires_at > ?1), 0) AS leased, \
                 COALESCE(SUM(state = 'dead' \
                     OR (state = 'leased' AND lease_expires_at <= ?1 \
                         AND attempt >= max_attempts)), 0) AS dead \
             FROM jobs",
        )
        .bind(now_micros())
        .fetch_one(self.readers())
        .await
        .map_err(error::queue)?;
        let count = |name: &str| -> Result<u64, QueueError> {
            let count: i64 = column(&row, name)?;
            Ok(u64::try_from(count).unwrap_or_default())
        };
        Ok(QueueStats {
            ready: count("ready")?,
            delayed: count("delayed")?,
            leased: count("leased")?,
            dead: count("dead")?,
        })
    }
}
