//! [`Queue`] on SQLite.

use crate::SqliteBackend;
use crate::error;
use crate::time::{FOREVER, from_micros, micros_after, now_micros, utc_after};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hamster_core::queue::{
    DeadLetter, Job, JobId, Lease, NewJob, Queue, QueueError, QueueStats, RetryOutcome,
};
use sqlx::Connection;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
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

/// Makes the queue's state true at `now`: due delayed jobs become ready, and overdue
/// leases end — the job is ready again at `attempt + 1`, or dead when its attempts are
/// used up.
async fn process_due(connection: &mut SqliteConnection, now: i64) -> Result<(), QueueError> {
    sqlx::query(
        "UPDATE jobs SET state = 'ready', available_at = NULL \
         WHERE state = 'delayed' AND available_at <= ?",
    )
    .bind(now)
    .execute(&mut *connection)
    .await
    .map_err(error::queue)?;
    sqlx::query(
        "UPDATE jobs SET \
             state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'ready' END, \
             attempt = CASE WHEN attempt >= max_attempts THEN attempt ELSE attempt + 1 END, \
             reason = CASE WHEN attempt >= max_attempts THEN ?2 ELSE NULL END, \
             failed_at = CASE WHEN attempt >= max_attempts THEN ?1 ELSE NULL END, \
             token = NULL, lease_expires_at = NULL \
         WHERE state = 'leased' AND lease_expires_at <= ?1",
    )
    .bind(now)
    .bind(LEASE_EXPIRED)
    .execute(&mut *connection)
    .await
    .map_err(error::queue)?;
    Ok(())
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

    /// Leases the oldest ready job, after processing what is due.
    async fn lease_next(&self, lease_for: Duration) -> Result<Option<Lease>, QueueError> {
        let mut writer = self.writer().await.map_err(error::queue)?;
        let mut transaction = writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(error::queue)?;
        let now = now_micros();
        process_due(&mut transaction, now).await?;
        let token = Uuid::new_v4().to_string();
        let expires = micros_after(now, lease_for);
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'leased', token = ?, lease_expires_at = ? \
             WHERE seq = (SELECT seq FROM jobs WHERE state = 'ready' ORDER BY seq LIMIT 1) \
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(&token)
        .bind(expires)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(error::queue)?;
        let lease = row
            .map(|row| {
                Ok::<_, QueueError>(Lease {
                    job: job_from_row(&row)?,
                    token,
                    expires_at: utc_after(now, lease_for),
                })
            })
            .transpose()?;
        transaction.commit().await.map_err(error::queue)?;
        Ok(lease)
    }

    /// Processes what is due, in its own transaction.
    async fn process_due_now(&self) -> Result<(), QueueError> {
        let mut writer = self.writer().await.map_err(error::queue)?;
        let mut transaction = writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(error::queue)?;
        process_due(&mut transaction, now_micros()).await?;
        transaction.commit().await.map_err(error::queue)
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
        sqlx::query(
            "INSERT INTO jobs (id, payload, state, attempt, max_attempts, enqueued_at, \
             available_at) VALUES (?, ?, ?, 1, ?, ?, ?)",
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
        .execute(&mut *self.writer().await.map_err(error::queue)?)
        .await
        .map_err(error::queue)?;
        if available_at.is_none() {
            self.wake_receivers();
        }
        Ok(id)
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
        let extended = sqlx::query(
            "UPDATE jobs SET lease_expires_at = ?1 \
             WHERE id = ?2 AND token = ?3 AND state = 'leased' AND lease_expires_at > ?4",
        )
        .bind(micros_after(now, lease_for))
        .bind(&lease.job.id.0)
        .bind(&lease.token)
        .bind(now)
        .execute(&mut *self.writer().await.map_err(error::queue)?)
        .await
        .map_err(error::queue)?;
        if extended.rows_affected() == 0 {
            return Err(QueueError::LeaseLost(lease.job.id.clone()));
        }
        Ok(utc_after(now, lease_for))
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        let deleted = sqlx::query(
            "DELETE FROM jobs \
             WHERE id = ? AND token = ? AND state = 'leased' AND lease_expires_at > ?",
        )
        .bind(&lease.job.id.0)
        .bind(&lease.token)
        .bind(now_micros())
        .execute(&mut *self.writer().await.map_err(error::queue)?)
        .await
        .map_err(error::queue)?;
        if deleted.rows_affected() == 0 {
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
        let state: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET \
                 state = CASE WHEN attempt >= max_attempts THEN 'dead' \
                     WHEN ?1 <= ?2 THEN 'ready' ELSE 'delayed' END, \
                 available_at = CASE WHEN attempt < max_attempts AND ?1 > ?2 THEN ?1 \
                     ELSE NULL END, \
                 attempt = CASE WHEN attempt >= max_attempts THEN attempt ELSE attempt + 1 END, \
                 reason = CASE WHEN attempt >= max_attempts THEN ?3 ELSE NULL END, \
                 failed_at = CASE WHEN attempt >= max_attempts THEN ?2 ELSE NULL END, \
                 token = NULL, lease_expires_at = NULL \
             WHERE id = ?4 AND token = ?5 AND state = 'leased' AND lease_expires_at > ?2 \
             RETURNING state",
        )
        .bind(due)
        .bind(now)
        .bind(reason)
        .bind(&lease.job.id.0)
        .bind(&lease.token)
        .fetch_optional(&mut *self.writer().await.map_err(error::queue)?)
        .await
        .map_err(error::queue)?;
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
        let released = sqlx::query(
            "UPDATE jobs SET state = 'ready', token = NULL, lease_expires_at = NULL \
             WHERE id = ? AND token = ? AND state = 'leased' AND lease_expires_at > ?",
        )
        .bind(&lease.job.id.0)
        .bind(&lease.token)
        .bind(now_micros())
        .execute(&mut *self.writer().await.map_err(error::queue)?)
        .await
        .map_err(error::queue)?;
        if released.rows_affected() == 0 {
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
        let requeued = sqlx::query(
            "UPDATE jobs SET state = 'ready', attempt = 1, reason = NULL, failed_at = NULL \
             WHERE id = ? AND state = 'dead'",
        )
        .bind(&id.0)
        .execute(&mut *self.writer().await.map_err(error::queue)?)
        .await
        .map_err(error::queue)?;
        let requeued = requeued.rows_affected() > 0;
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
