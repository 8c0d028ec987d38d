//! Column lists and decoding of rows into the contract's records.

use chrono::{DateTime, Utc};
use hamster_core::event::EventRecord;
use hamster_core::handler::HandlerSpec;
use hamster_core::store::{
    DeliveryRecord, HandlerId, HandlerRecord, RunId, RunRecord, RunStatus, StepRecord, StepStatus,
    StoreError,
};
use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Decode, Postgres, Row, Type};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The `handlers` columns [`handler`] reads, in SQL.
macro_rules! handler_columns {
    () => {
        "id, name, version, enabled, source_text, spec, created_at, updated_at"
    };
}

/// The `runs` columns [`run`] reads, in SQL: with the delivery's body when the run's payload
/// was left in it (an empty body if that delivery is gone, which fails to restore rather
/// than reading back an event without its payload).
macro_rules! run_columns {
    () => {
        "id, handler_id, handler_name, handler_version, handler_spec, event, repository, \
         delivery_id, status, created_at, started_at, finished_at, error, \
         CASE WHEN payload_in_delivery THEN \
             COALESCE((SELECT body FROM deliveries WHERE deliveries.id = runs.delivery_id), \
                 ''::bytea) \
         END AS payload_body"
    };
}

/// The `steps` columns [`step`] reads, in SQL.
macro_rules! step_columns {
    () => {
        "key, name, action, status, attempt, started_at, finished_at, data, error"
    };
}

/// The `deliveries` columns [`delivery`] reads, in SQL.
macro_rules! delivery_columns {
    () => {
        "id, event, received_at, headers, body, run_ids, body_is_payload"
    };
}

pub(crate) use {delivery_columns, handler_columns, run_columns, step_columns};

/// Reads one column, reporting a value that does not decode as corrupt data.
fn get<'r, T>(row: &'r PgRow, table: &str, column: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(column)
        .map_err(|error| StoreError::Corrupt(format!("{table}.{column}: {error}")))
}

/// Reads a JSONB column into `T`.
fn get_json<T>(row: &PgRow, table: &str, column: &str) -> Result<T, StoreError>
where
    T: for<'de> Deserialize<'de>,
{
    get::<Json<T>>(row, table, column).map(|Json(value)| value)
}

/// Reads a BYTEA column holding JSON into `T`.
fn get_json_bytes<T>(row: &PgRow, table: &str, column: &str) -> Result<T, StoreError>
where
    T: for<'de> Deserialize<'de>,
{
    let bytes: &[u8] = get(row, table, column)?;
    serde_json::from_slice(bytes)
        .map_err(|error| StoreError::Corrupt(format!("{table}.{column}: {error}")))
}

/// Reads a BIGINT column that holds a non-negative count.
fn get_unsigned<T: TryFrom<i64>>(row: &PgRow, table: &str, column: &str) -> Result<T, StoreError> {
    let value: i64 = get(row, table, column)?;
    T::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{table}.{column}: {value} is out of range")))
}

pub(crate) fn handler(row: &PgRow) -> Result<HandlerRecord, StoreError> {
    const TABLE: &str = "handlers";
    Ok(HandlerRecord {
        id: HandlerId(get(row, TABLE, "id")?),
        name: get(row, TABLE, "name")?,
        version: get(row, TABLE, "version")?,
        enabled: get(row, TABLE, "enabled")?,
        source_text: get(row, TABLE, "source_text")?,
        spec: get_json::<HandlerSpec>(row, TABLE, "spec")?,
        created_at: get(row, TABLE, "created_at")?,
        updated_at: get(row, TABLE, "updated_at")?,
    })
}

pub(crate) fn run(row: &PgRow) -> Result<RunRecord, StoreError> {
    const TABLE: &str = "runs";
    let status: String = get(row, TABLE, "status")?;
    let mut event = get_json_bytes::<EventRecord>(row, TABLE, "event")?;
    if let Some(body) = get::<Option<&[u8]>>(row, TABLE, "payload_body")? {
        event.restore_payload(body).map_err(|error| {
            StoreError::Corrupt(format!(
                "runs.event: its payload is kept with its delivery, whose body could not be \
                 read back as JSON (was the delivery deleted?): {error}"
            ))
        })?;
    }
    Ok(RunRecord {
        id: RunId(get(row, TABLE, "id")?),
        handler_id: HandlerId(get(row, TABLE, "handler_id")?),
        handler_name: get(row, TABLE, "handler_name")?,
        handler_version: get(row, TABLE, "handler_version")?,
        handler: get_json::<HandlerSpec>(row, TABLE, "handler_spec")?,
        event,
        repository: get(row, TABLE, "repository")?,
        delivery_id: get(row, TABLE, "delivery_id")?,
        status: status
            .parse::<RunStatus>()
            .map_err(|error| StoreError::Corrupt(format!("runs.status: {error}")))?,
        created_at: get(row, TABLE, "created_at")?,
        started_at: get(row, TABLE, "started_at")?,
        finished_at: get(row, TABLE, "finished_at")?,
        error: get(row, TABLE, "error")?,
    })
}

pub(crate) fn step(row: &PgRow) -> Result<StepRecord, StoreError> {
    const TABLE: &str = "steps";
    let status: String = get(row, TABLE, "status")?;
    Ok(StepRecord {
        key: get(row, TABLE, "key")?,
        name: get(row, TABLE, "name")?,
        action: get(row, TABLE, "action")?,
        status: parse_step_status(&status)?,
        attempt: get_unsigned(row, TABLE, "attempt")?,
        started_at: get(row, TABLE, "started_at")?,
        finished_at: get::<Option<DateTime<Utc>>>(row, TABLE, "finished_at")?,
        data: get_json::<Map<String, Value>>(row, TABLE, "data")?,
        error: get(row, TABLE, "error")?,
    })
}

pub(crate) fn delivery(row: &PgRow) -> Result<DeliveryRecord, StoreError> {
    const TABLE: &str = "deliveries";
    let run_ids: Vec<Uuid> = get(row, TABLE, "run_ids")?;
    Ok(DeliveryRecord {
        id: get(row, TABLE, "id")?,
        event: get(row, TABLE, "event")?,
        received_at: get(row, TABLE, "received_at")?,
        headers: get_json::<BTreeMap<String, String>>(row, TABLE, "headers")?,
        body: get(row, TABLE, "body")?,
        run_ids: run_ids.into_iter().map(RunId).collect(),
        body_is_payload: get(row, TABLE, "body_is_payload")?,
    })
}

/// Reads a BIGINT count or length column by position.
pub(crate) fn unsigned_at<T: TryFrom<i64>>(row: &PgRow, index: usize) -> Result<T, StoreError> {
    let value: i64 = row
        .try_get(index)
        .map_err(|error| StoreError::Corrupt(format!("column {index}: {error}")))?;
    T::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("column {index}: {value} is out of range")))
}

/// Parses a stored step status; the stored words are [`StepStatus::as_str`], which are
/// also the type's serde names, so new variants need no change here.
pub(crate) fn parse_step_status(text: &str) -> Result<StepStatus, StoreError> {
    StepStatus::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(text))
        .map_err(|error| StoreError::Corrupt(format!("steps.status: {error}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".
mod tests {
    use super::*;

    #[test]
    fn every_step_status_reads_back_from_its_stored_word() {
        for status in [
            StepStatus::Running,
            StepStatus::Success,
            StepStatus::Failure,
            StepStatus::TimedOut,
            StepStatus::Cancelled,
        ] {
            assert_eq!(parse_step_status(status.as_str()).unwrap(), status);
        }
        assert!(matches!(
            parse_step_status("exploded"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
