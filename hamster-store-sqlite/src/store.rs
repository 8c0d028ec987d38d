//! [`Store`] on SQLite.

use crate::SqliteBackend;
use crate::error::{self, violation};
use crate::time::{from_micros, now_micros, to_micros};
use crate::writer::{Executed, Write};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::TryStreamExt;
use hamster_core::event::EventRecord;
use hamster_core::handler::HandlerSpec;
use hamster_core::store::{
    DeliveryOutcome, DeliveryRecord, HandlerId, HandlerRecord, LogChunk, RunFilter, RunId,
    RunRecord, RunStatus, StepRecord, StepStatus, Store, StoreError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Connection;
use sqlx::error::ErrorKind;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Row, Sqlite};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Runs returned by [`Store::list_runs`] when the filter gives no limit.
const DEFAULT_RUN_LIMIT: u32 = 100;
/// Most records one list call returns, whatever limit is asked for.
const MAX_LIST_LIMIT: u32 = 1000;

const HANDLER_COLUMNS: &str =
    "id, name, version, enabled, source_text, spec, created_at, updated_at";
const RUN_COLUMNS: &str = "id, handler_id, handler_name, handler_version, handler, event, \
     repository, delivery_id, status, created_at, started_at, finished_at, error";
const STEP_COLUMNS: &str =
    "key, name, action, status, attempt, started_at, finished_at, data, error";
/// [`RUN_COLUMNS`] as read: with the delivery's body when the run's payload was left in it
/// (an empty body if that delivery is gone, which fails to restore rather than reading back
/// an event without its payload).
const RUN_SELECT: &str = "id, handler_id, handler_name, handler_version, handler, event, \
     repository, delivery_id, status, created_at, started_at, finished_at, error, \
     CASE WHEN payload_in_delivery THEN \
         COALESCE((SELECT body FROM deliveries WHERE deliveries.id = runs.delivery_id), x'') \
     END AS payload_body";
const DELIVERY_COLUMNS: &str = "id, event, received_at, headers, body, run_ids, body_is_payload";

// ---------------------------------------------------------------------------------------
// Encoding and decoding.

fn to_json<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|error| StoreError::Backend(format!("could not encode {what} as JSON: {error}")))
}

fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt(format!("stored {what} is not valid: {error}")))
}

fn column<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(name)
        .map_err(|error| StoreError::Corrupt(format!("column `{name}`: {error}")))
}

fn uuid_column(row: &SqliteRow, name: &str) -> Result<Uuid, StoreError> {
    let text: &str = column(row, name)?;
    Uuid::parse_str(text)
        .map_err(|error| StoreError::Corrupt(format!("column `{name}` is not a UUID: {error}")))
}

fn time_column(row: &SqliteRow, name: &str) -> Result<DateTime<Utc>, StoreError> {
    let micros: i64 = column(row, name)?;
    from_micros(micros).ok_or_else(|| {
        StoreError::Corrupt(format!("column `{name}` holds an impossible time {micros}"))
    })
}

fn optional_time_column(row: &SqliteRow, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let micros: Option<i64> = column(row, name)?;
    micros
        .map(|micros| {
            from_micros(micros).ok_or_else(|| {
                StoreError::Corrupt(format!("column `{name}` holds an impossible time {micros}"))
            })
        })
        .transpose()
}

fn json_column<T: DeserializeOwned>(row: &SqliteRow, name: &str) -> Result<T, StoreError> {
    let text: &str = column(row, name)?;
    from_json(name, text)
}

fn handler_from_row(row: &SqliteRow) -> Result<HandlerRecord, StoreError> {
    Ok(HandlerRecord {
        id: HandlerId(uuid_column(row, "id")?),
        name: column(row, "name")?,
        version: column(row, "version")?,
        enabled: column(row, "enabled")?,
        source_text: column(row, "source_text")?,
        spec: json_column(row, "spec")?,
        created_at: time_column(row, "created_at")?,
        updated_at: time_column(row, "updated_at")?,
    })
}

fn run_from_row(row: &SqliteRow) -> Result<RunRecord, StoreError> {
    let status: &str = column(row, "status")?;
    let mut event: EventRecord = json_column(row, "event")?;
    let payload_body: Option<&[u8]> = column(row, "payload_body")?;
    if let Some(body) = payload_body {
        event.restore_payload(body).map_err(|error| {
            StoreError::Corrupt(format!(
                "the payload of a run's event is kept with its delivery, whose body could not \
                 be read back as JSON (was the delivery deleted?): {error}"
            ))
        })?;
    }
    Ok(RunRecord {
        id: RunId(uuid_column(row, "id")?),
        handler_id: HandlerId(uuid_column(row, "handler_id")?),
        handler_name: column(row, "handler_name")?,
        handler_version: column(row, "handler_version")?,
        handler: json_column(row, "handler")?,
        event,
        repository: column(row, "repository")?,
        delivery_id: column(row, "delivery_id")?,
        status: status.parse().map_err(StoreError::Corrupt)?,
        created_at: time_column(row, "created_at")?,
        started_at: optional_time_column(row, "started_at")?,
        finished_at: optional_time_column(row, "finished_at")?,
        error: column(row, "error")?,
    })
}

fn parse_step_status(text: &str) -> Result<StepStatus, StoreError> {
    [
        StepStatus::Running,
        StepStatus::Success,
        StepStatus::Failure,
        StepStatus::TimedOut,
        StepStatus::Cancelled,
    ]
    .into_iter()
    .find(|status| status.as_str() == text)
    .ok_or_else(|| StoreError::Corrupt(format!("unknown step status `{text}`")))
}

fn step_from_row(row: &SqliteRow) -> Result<StepRecord, StoreError> {
    let status: &str = column(row, "status")?;
    let attempt: i64 = column(row, "attempt")?;
    Ok(StepRecord {
        key: column(row, "key")?,
        name: column(row, "name")?,
        action: column(row, "action")?,
        status: parse_step_status(status)?,
        attempt: u32::try_from(attempt)
            .map_err(|_| StoreError::Corrupt(format!("impossible step attempt {attempt}")))?,
        started_at: time_column(row, "started_at")?,
        finished_at: optional_time_column(row, "finished_at")?,
        data: json_column(row, "data")?,
        error: column(row, "error")?,
    })
}

fn delivery_from_row(row: &SqliteRow) -> Result<DeliveryRecord, StoreError> {
    Ok(DeliveryRecord {
        id: column(row, "id")?,
        event: column(row, "event")?,
        received_at: time_column(row, "received_at")?,
        headers: json_column(row, "headers")?,
        body: column(row, "body")?,
        run_ids: json_column(row, "run_ids")?,
        body_is_payload: column(row, "body_is_payload")?,
    })
}

fn run_not_found(id: RunId) -> StoreError {
    StoreError::NotFound {
        what: "run",
        id: id.to_string(),
    }
}

fn handler_not_found(id: HandlerId) -> StoreError {
    StoreError::NotFound {
        what: "handler",
        id: id.to_string(),
    }
}

/// Most rows a list call asks for.
fn capped(limit: u32) -> i64 {
    i64::from(limit.min(MAX_LIST_LIMIT))
}

/// A time as stored, and as a record returned by the store should carry it (truncated to
/// the microsecond), so that what a write returns equals what a later read returns.
fn stored_now() -> (i64, DateTime<Utc>) {
    let micros = now_micros();
    (micros, from_micros(micros).unwrap_or_else(Utc::now))
}

/// The rows the first statement of a write returned.
fn first_rows(executed: Vec<Executed>) -> Vec<SqliteRow> {
    executed
        .into_iter()
        .next()
        .map(|executed| executed.rows)
        .unwrap_or_default()
}

/// The first row the first statement of a write returned.
fn first_row(executed: Vec<Executed>) -> Option<SqliteRow> {
    first_rows(executed).into_iter().next()
}

/// The rows the first statement of a write changed.
fn first_changes(executed: &[Executed]) -> u64 {
    executed.first().map_or(0, |executed| executed.changes)
}

// ---------------------------------------------------------------------------------------
// Writes shared by several operations, inside a transaction.

/// Inserts runs; fails, leaving the caller to roll back, when a run id exists.
async fn insert_runs(
    connection: &mut SqliteConnection,
    runs: &[RunRecord],
) -> Result<(), StoreError> {
    let sql =
        format!("INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for run in runs {
        sqlx::query(&sql)
            .bind(run.id.to_string())
            .bind(run.handler_id.to_string())
            .bind(&run.handler_name)
            .bind(run.handler_version)
            .bind(to_json("a run's handler", &run.handler)?)
            .bind(to_json("a run's event", &run.event)?)
            .bind(&run.repository)
            .bind(&run.delivery_id)
            .bind(run.status.as_str())
            .bind(to_micros(run.created_at))
            .bind(run.started_at.map(to_micros))
            .bind(run.finished_at.map(to_micros))
            .bind(&run.error)
            .execute(&mut *connection)
            .await
            .map_err(|error| match violation(&error) {
                Some(ErrorKind::UniqueViolation) => StoreError::Backend(format!(
                    "run `{}` exists already; every new run needs a fresh RunId",
                    run.id
                )),
                _ => error::store(error),
            })?;
    }
    Ok(())
}

/// `write` with the values of `run` bound, in [`RUN_COLUMNS`]' order, its event as the JSON
/// `event`.
fn bind_run(write: Write, run: &RunRecord, event: String) -> Result<Write, StoreError> {
    Ok(write
        .bind(run.id.to_string())
        .bind(run.handler_id.to_string())
        .bind(&run.handler_name)
        .bind(run.handler_version)
        .bind(to_json("a run's handler", &run.handler)?)
        .bind(event)
        .bind(&run.repository)
        .bind(run.delivery_id.as_ref())
        .bind(run.status.as_str())
        .bind(to_micros(run.created_at))
        .bind(run.started_at.map(to_micros))
        .bind(run.finished_at.map(to_micros))
        .bind(run.error.as_ref()))
}

/// The run ids of a stored delivery, or `None` if there is no such delivery.
async fn delivery_run_ids(
    connection: &mut SqliteConnection,
    delivery_id: &str,
) -> Result<Option<Vec<RunId>>, StoreError> {
    let row = sqlx::query("SELECT run_ids FROM deliveries WHERE id = ?")
        .bind(delivery_id)
        .fetch_optional(&mut *connection)
        .await
        .map_err(error::store)?;
    row.map(|row| json_column(&row, "run_ids")).transpose()
}

/// What a read from `offset` returns of the log made of `chunks` (each
/// `(end_offset, text)`, in order, the first one containing or following `offset`).
fn assemble_log(chunks: &[(u64, String)], offset: u64) -> Result<LogChunk, std::str::Utf8Error> {
    let Some((first_end, first_text)) = chunks.first() else {
        return Ok(LogChunk {
            text: String::new(),
            next_offset: offset,
        });
    };
    let first_start = first_end.saturating_sub(first_text.len() as u64);
    let text: String = chunks.iter().map(|(_, text)| text.as_str()).collect();
    LogChunk::cut(text.as_bytes(), first_start, offset)
}

#[async_trait]
impl Store for SqliteBackend {
    async fn create_handler(
        &self,
        spec: HandlerSpec,
        source_text: String,
    ) -> Result<HandlerRecord, StoreError> {
        let (now_micros, now) = stored_now();
        let record = HandlerRecord {
            id: HandlerId::new(),
            name: spec.name.clone(),
            version: 1,
            enabled: spec.enabled,
            source_text,
            spec,
            created_at: now,
            updated_at: now,
        };
        let write = Write::new(format!(
            "INSERT INTO handlers ({HANDLER_COLUMNS}) VALUES (?, ?, 1, ?, ?, ?, ?, ?)"
        ))
        .bind(record.id.to_string())
        .bind(&record.name)
        .bind(record.enabled)
        .bind(&record.source_text)
        .bind(to_json("a handler", &record.spec)?)
        .bind(now_micros)
        .bind(now_micros);
        self.writer()
            .write(write)
            .await
            .map_err(|error| match violation(&error) {
                Some(ErrorKind::UniqueViolation) => StoreError::HandlerExists(record.name.clone()),
                _ => error::store(error),
            })?;
        Ok(record)
    }

    async fn update_handler(
        &self,
        id: HandlerId,
        spec: HandlerSpec,
        source_text: String,
        expected_version: Option<i64>,
    ) -> Result<HandlerRecord, StoreError> {
        let write = Write::new(format!(
            "UPDATE handlers SET name = ?, version = version + 1, source_text = ?, spec = ?, \
             updated_at = ? WHERE id = ? AND (? IS NULL OR version = ?) \
             RETURNING {HANDLER_COLUMNS}"
        ))
        .bind(&spec.name)
        .bind(source_text)
        .bind(to_json("a handler", &spec)?)
        .bind(now_micros())
        .bind(id.to_string())
        .bind(expected_version)
        .bind(expected_version);
        let updated =
            self.writer()
                .write(write)
                .await
                .map_err(|error| match violation(&error) {
                    Some(ErrorKind::UniqueViolation) => {
                        StoreError::HandlerExists(spec.name.clone())
                    }
                    _ => error::store(error),
                })?;
        if let Some(row) = first_row(updated) {
            return handler_from_row(&row);
        }
        let exists = sqlx::query("SELECT 1 FROM handlers WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(self.readers())
            .await
            .map_err(error::store)?;
        match (exists, expected_version) {
            (Some(_), Some(expected)) => Err(StoreError::Conflict {
                what: "handler",
                id: id.to_string(),
                expected,
            }),
            _ => Err(handler_not_found(id)),
        }
    }

    async fn set_handler_enabled(
        &self,
        id: HandlerId,
        enabled: bool,
    ) -> Result<HandlerRecord, StoreError> {
        let write = Write::new(format!(
            "UPDATE handlers SET enabled = ? WHERE id = ? RETURNING {HANDLER_COLUMNS}"
        ))
        .bind(enabled)
        .bind(id.to_string());
        let updated = self.writer().write(write).await.map_err(error::store)?;
        let row = first_row(updated).ok_or_else(|| handler_not_found(id))?;
        handler_from_row(&row)
    }

    async fn delete_handler(&self, id: HandlerId) -> Result<bool, StoreError> {
        let write = Write::new("DELETE FROM handlers WHERE id = ?").bind(id.to_string());
        let deleted = self.writer().write(write).await.map_err(error::store)?;
        Ok(first_changes(&deleted) > 0)
    }

    async fn get_handler(&self, id: HandlerId) -> Result<Option<HandlerRecord>, StoreError> {
        let sql = format!("SELECT {HANDLER_COLUMNS} FROM handlers WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(self.readers())
            .await
            .map_err(error::store)?;
        row.as_ref().map(handler_from_row).transpose()
    }

    async fn get_handler_by_name(&self, name: &str) -> Result<Option<HandlerRecord>, StoreError> {
        let sql = format!("SELECT {HANDLER_COLUMNS} FROM handlers WHERE name = ?");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(self.readers())
            .await
            .map_err(error::store)?;
        row.as_ref().map(handler_from_row).transpose()
    }

    async fn list_handlers(&self) -> Result<Vec<HandlerRecord>, StoreError> {
        let sql = format!("SELECT {HANDLER_COLUMNS} FROM handlers ORDER BY name");
        let rows = sqlx::query(&sql)
            .fetch_all(self.readers())
            .await
            .map_err(error::store)?;
        rows.iter().map(handler_from_row).collect()
    }

    async fn handlers_revision(&self) -> Result<u64, StoreError> {
        let revision: i64 =
            sqlx::query_scalar("SELECT value FROM counters WHERE name = 'handlers_revision'")
                .fetch_one(self.readers())
                .await
                .map_err(error::store)?;
        // The counter only grows; reinterpreting the bits keeps "changes" after a wrap.
        Ok(revision as u64)
    }

    async fn record_delivery(
        &self,
        mut delivery: DeliveryRecord,
        runs: Vec<RunRecord>,
    ) -> Result<DeliveryOutcome, StoreError> {
        for run in &runs {
            if !delivery.run_ids.contains(&run.id) {
                delivery.run_ids.push(run.id);
            }
        }
        let headers = to_json("a delivery's headers", &delivery.headers)?;
        let run_ids = to_json("a delivery's run ids", &delivery.run_ids)?;
        // One atomic write, with no decision taken in between, so that it is one round trip
        // and can be committed with others: the runs are inserted unless the delivery is
        // stored already, then the delivery unless it is, then its run ids are read back
        // for a duplicate.
        let mut write = Write::default();
        for run in &runs {
            let payload_in_delivery = delivery.holds_payload_of(run);
            let event = if payload_in_delivery {
                let json = run.event.to_json_without_payload().map_err(|error| {
                    StoreError::Backend(format!("could not encode a run's event as JSON: {error}"))
                })?;
                // serde_json writes UTF-8; the check is for the TEXT column.
                String::from_utf8(json).map_err(|error| {
                    StoreError::Backend(format!("a run's event is not UTF-8 JSON: {error}"))
                })?
            } else {
                to_json("a run's event", &run.event)?
            };
            write = bind_run(
                write.then(format!(
                    "INSERT INTO runs ({RUN_COLUMNS}, payload_in_delivery) \
                     SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
                     WHERE NOT EXISTS (SELECT 1 FROM deliveries WHERE id = ?)"
                )),
                run,
                event,
            )?
            .bind(payload_in_delivery)
            .bind(&delivery.id);
        }
        let write = write
            .then(format!(
                "INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO NOTHING"
            ))
            .bind(&delivery.id)
            .bind(&delivery.event)
            .bind(to_micros(delivery.received_at))
            .bind(headers)
            .bind(delivery.body)
            .bind(run_ids)
            .bind(delivery.body_is_payload)
            .then("SELECT run_ids FROM deliveries WHERE id = ?")
            .bind(&delivery.id);
        let mut executed =
            self.writer()
                .write(write)
                .await
                .map_err(|error| match violation(&error) {
                    Some(ErrorKind::UniqueViolation) => StoreError::Backend(format!(
                        "a run of delivery `{}` exists already; every new run needs a fresh RunId",
                        delivery.id
                    )),
                    _ => error::store(error),
                })?;
        let stored = executed.pop();
        let inserted = executed.pop().is_some_and(|insert| insert.changes > 0);
        if inserted {
            return Ok(DeliveryOutcome::Recorded);
        }
        let run_ids = stored
            .and_then(|stored| stored.rows.into_iter().next())
            .map(|row| json_column(&row, "run_ids"))
            .transpose()?;
        Ok(DeliveryOutcome::Duplicate(run_ids.unwrap_or_default()))
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.readers())
            .await
            .map_err(error::store)?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn list_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries ORDER BY received_at DESC, seq DESC LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(capped(limit))
            .fetch_all(self.readers())
            .await
            .map_err(error::store)?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn add_delivery_runs(
        &self,
        delivery_id: &str,
        runs: Vec<RunRecord>,
    ) -> Result<(), StoreError> {
        let delivery_id = delivery_id.to_owned();
        // Rare, and what it writes depends on what it reads: a transaction of its own.
        self.writer()
            .exclusive(move |connection| {
                async move {
                    let mut transaction = connection
                        .begin_with("BEGIN IMMEDIATE")
                        .await
                        .map_err(error::store)?;
                    let mut run_ids = delivery_run_ids(&mut transaction, &delivery_id)
                        .await?
                        .ok_or_else(|| StoreError::NotFound {
                            what: "delivery",
                            id: delivery_id.clone(),
                        })?;
                    insert_runs(&mut transaction, &runs).await?;
                    run_ids.extend(runs.iter().map(|run| run.id));
                    sqlx::query("UPDATE deliveries SET run_ids = ? WHERE id = ?")
                        .bind(to_json("a delivery's run ids", &run_ids)?)
                        .bind(&delivery_id)
                        .execute(&mut *transaction)
                        .await
                        .map_err(error::store)?;
                    transaction.commit().await.map_err(error::store)
                }
                .boxed()
            })
            .await
            .map_err(error::store)?
    }

    async fn create_runs(&self, runs: Vec<RunRecord>) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        // Rare: a transaction of its own, which names the run that exists already if any.
        self.writer()
            .exclusive(move |connection| {
                async move {
                    let mut transaction = connection
                        .begin_with("BEGIN IMMEDIATE")
                        .await
                        .map_err(error::store)?;
                    insert_runs(&mut transaction, &runs).await?;
                    transaction.commit().await.map_err(error::store)
                }
                .boxed()
            })
            .await
            .map_err(error::store)?
    }

    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        let sql = format!("SELECT {RUN_SELECT} FROM runs WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(self.readers())
            .await
            .map_err(error::store)?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let before = match filter.before {
            Some(before) => {
                let created_at: Option<i64> =
                    sqlx::query_scalar("SELECT created_at FROM runs WHERE id = ?")
                        .bind(before.to_string())
                        .fetch_optional(self.readers())
                        .await
                        .map_err(error::store)?;
                Some((created_at.ok_or_else(|| run_not_found(before))?, before))
            }
            None => None,
        };
        // Only the filters given appear in the query, so that SQLite can use the index
        // that starts with them.
        let mut conditions = Vec::new();
        if filter.repository.is_some() {
            conditions.push("repository = ?");
        }
        if filter.handler.is_some() {
            conditions.push("handler_name = ?");
        }
        if filter.status.is_some() {
            conditions.push("status = ?");
        }
        if before.is_some() {
            conditions.push("(created_at, id) < (?, ?)");
        }
        if filter.created_before.is_some() {
            conditions.push("created_at < ?");
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {RUN_SELECT} FROM runs {where_clause} \
             ORDER BY created_at DESC, id DESC LIMIT ?"
        );
        let mut query = sqlx::query(&sql);
        if let Some(repository) = &filter.repository {
            query = query.bind(repository);
        }
        if let Some(handler) = &filter.handler {
            query = query.bind(handler);
        }
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        if let Some((created_at, id)) = before {
            query = query.bind(created_at).bind(id.to_string());
        }
        if let Some(time) = filter.created_before {
            query = query.bind(to_micros(time));
        }
        let rows = query
            .bind(capped(filter.limit.unwrap_or(DEFAULT_RUN_LIMIT)))
            .fetch_all(self.readers())
            .await
            .map_err(error::store)?;
        rows.iter().map(run_from_row).collect()
    }

    async fn transition_run(
        &self,
        id: RunId,
        from: &[RunStatus],
        to: RunStatus,
        error: Option<String>,
    ) -> Result<Option<RunRecord>, StoreError> {
        if !from.is_empty() {
            // The statuses are this crate's own words, never user input.
            let from_list = from
                .iter()
                .map(|status| format!("'{}'", status.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            let now = now_micros();
            // A run starts once (a retried run keeps its first start) and only a finished
            // run has a finish time.
            let write = Write::new(format!(
                "UPDATE runs SET status = ?, started_at = COALESCE(started_at, ?), \
                 finished_at = ?, error = COALESCE(?, error) \
                 WHERE id = ? AND status IN ({from_list}) RETURNING {RUN_SELECT}"
            ))
            .bind(to.as_str())
            .bind((to == RunStatus::Running).then_some(now))
            .bind(to.is_terminal().then_some(now))
            .bind(error)
            .bind(id.to_string());
            let updated = self.writer().write(write).await.map_err(error::store)?;
            if let Some(row) = first_row(updated) {
                return run_from_row(&row).map(Some);
            }
        }
        let exists = sqlx::query("SELECT 1 FROM runs WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(self.readers())
            .await
            .map_err(error::store)?;
        match exists {
            Some(_) => Ok(None),
            None => Err(run_not_found(id)),
        }
    }

    async fn count_runs_by_status(&self) -> Result<BTreeMap<RunStatus, u64>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS count FROM runs GROUP BY status")
            .fetch_all(self.readers())
            .await
            .map_err(error::store)?;
        let mut counts: BTreeMap<RunStatus, u64> = RunStatus::ALL
            .into_iter()
            .map(|status| (status, 0))
            .collect();
        for row in &rows {
            let status: &str = column(row, "status")?;
            let count: i64 = column(row, "count")?;
            let status: RunStatus = status.parse().map_err(StoreError::Corrupt)?;
            counts.insert(status, u64::try_from(count).unwrap_or_default());
        }
        Ok(counts)
    }

    async fn record_step(&self, run_id: RunId, step: StepRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO steps (run_id, {STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (run_id, key) DO UPDATE SET name = excluded.name, \
             action = excluded.action, status = excluded.status, attempt = excluded.attempt, \
             started_at = excluded.started_at, finished_at = excluded.finished_at, \
             data = excluded.data, error = excluded.error"
        );
        let data = to_json("a step's data", &step.data)?;
        let write = Write::new(sql)
            .bind(run_id.to_string())
            .bind(step.key)
            .bind(step.name)
            .bind(step.action)
            .bind(step.status.as_str())
            .bind(i64::from(step.attempt))
            .bind(to_micros(step.started_at))
            .bind(step.finished_at.map(to_micros))
            .bind(data)
            .bind(step.error);
        self.writer()
            .write(write)
            .await
            .map_err(|error| match violation(&error) {
                Some(ErrorKind::ForeignKeyViolation) => run_not_found(run_id),
                _ => error::store(error),
            })?;
        Ok(())
    }

    async fn list_steps(&self, run_id: RunId) -> Result<Vec<StepRecord>, StoreError> {
        let sql = format!("SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY seq");
        let rows = sqlx::query(&sql)
            .bind(run_id.to_string())
            .fetch_all(self.readers())
            .await
            .map_err(error::store)?;
        rows.iter().map(step_from_row).collect()
    }

    async fn append_log(
        &self,
        run_id: RunId,
        step_key: &str,
        text: &str,
    ) -> Result<(), StoreError> {
        if text.is_empty() {
            // Nothing to store, but the run must exist, as for any append.
            let exists = sqlx::query("SELECT 1 FROM runs WHERE id = ?")
                .bind(run_id.to_string())
                .fetch_optional(self.readers())
                .await
                .map_err(error::store)?;
            return exists.map(|_| ()).ok_or_else(|| run_not_found(run_id));
        }
        let length = i64::try_from(text.len()).unwrap_or(i64::MAX);
        let run = run_id.to_string();
        let write = Write::new(
            "INSERT INTO log_chunks (run_id, step_key, end_offset, text) VALUES (?, ?, \
             COALESCE((SELECT MAX(end_offset) FROM log_chunks \
                 WHERE run_id = ? AND step_key = ?), 0) + ?, ?)",
        )
        .bind(&run)
        .bind(step_key)
        .bind(&run)
        .bind(step_key)
        .bind(length)
        .bind(text);
        self.writer()
            .write(write)
            .await
            .map_err(|error| match violation(&error) {
                Some(ErrorKind::ForeignKeyViolation) => run_not_found(run_id),
                _ => error::store(error),
            })?;
        Ok(())
    }

    /// Returns at most 1 MiB per call; an offset that falls inside a UTF-8 character reads
    /// from the next character boundary, and an offset past the end reads nothing and
    /// returns the log's length as `next_offset`.
    async fn read_log(
        &self,
        run_id: RunId,
        step_key: &str,
        offset: u64,
    ) -> Result<LogChunk, StoreError> {
        let run = run_id.to_string();
        let from = i64::try_from(offset).unwrap_or(i64::MAX);
        let mut chunks: Vec<(u64, String)> = Vec::new();
        let mut collected = 0;
        {
            let mut rows = sqlx::query(
                "SELECT end_offset, text FROM log_chunks \
                 WHERE run_id = ? AND step_key = ? AND end_offset > ? ORDER BY end_offset",
            )
            .bind(&run)
            .bind(step_key)
            .bind(from)
            .fetch(self.readers());
            while let Some(row) = rows.try_next().await.map_err(error::store)? {
                let end: i64 = column(&row, "end_offset")?;
                let text: String = column(&row, "text")?;
                collected += text.len();
                chunks.push((u64::try_from(end).unwrap_or_default(), text));
                if collected >= LogChunk::MAX_BYTES.saturating_add(offset_slack(offset, &chunks)) {
                    break;
                }
            }
        }
        if !chunks.is_empty() {
            return assemble_log(&chunks, offset).map_err(|error| {
                StoreError::Corrupt(format!(
                    "the log of run {run_id} step `{step_key}`: {error}"
                ))
            });
        }
        let length: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(end_offset), 0) FROM log_chunks WHERE run_id = ? AND step_key = ?",
        )
        .bind(&run)
        .bind(step_key)
        .fetch_one(self.readers())
        .await
        .map_err(error::store)?;
        Ok(LogChunk {
            text: String::new(),
            next_offset: u64::try_from(length).unwrap_or_default(),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(self.readers())
            .await
            .map_err(error::store)?;
        Ok(())
    }
}

/// The bytes of the first chunk that lie before `offset` and will be skipped, so that
/// enough text is fetched to fill a whole chunk after them.
fn offset_slack(offset: u64, chunks: &[(u64, String)]) -> usize {
    chunks.first().map_or(0, |(end, text)| {
        let start = end.saturating_sub(text.len() as u64);
        usize::try_from(offset.saturating_sub(start)).unwrap_or(usize::MAX)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".
mod tests {
    use super::*;

    fn chunks(parts: &[&str]) -> Vec<(u64, String)> {
        let mut end = 0;
        parts
            .iter()
            .map(|part| {
                end += part.len() as u64;
                (end, (*part).to_owned())
            })
            .collect()
    }

    #[test]
    fn a_log_reads_from_the_next_character_boundary_across_chunks() {
        let all = chunks(&["aé", "🐹b"]); // a=0, é=1..3, 🐹=3..7, b=7
        let from = |offset: u64| {
            let first = all
                .iter()
                .position(|(end, _)| *end > offset)
                .unwrap_or(all.len());
            assemble_log(&all[first..], offset).unwrap()
        };
        assert_eq!(from(0).text, "aé🐹b");
        assert_eq!(from(2).text, "🐹b");
        assert_eq!(from(2).next_offset, 8);
        assert_eq!(from(4).text, "b");
        assert_eq!(from(7).text, "b");
        assert_eq!(from(7).next_offset, 8);
    }

    #[test]
    fn a_log_chunk_is_capped_at_a_character_boundary() {
        let big = "✓".repeat(LogChunk::MAX_BYTES / 3 + 10);
        let all = chunks(&[&big, "tail"]);
        let first = assemble_log(&all, 0).unwrap();
        assert!(first.text.len() <= LogChunk::MAX_BYTES);
        assert!(first.text.len() > LogChunk::MAX_BYTES - 3);
        assert_eq!(first.next_offset, first.text.len() as u64);
        let rest = assemble_log(&all, first.next_offset).unwrap();
        assert_eq!(first.text + &rest.text, big + "tail");
    }
}
