//! The [`Store`] implementation.

use crate::PostgresStore;
use crate::deliveries::run_insert_failed;
use crate::error::{FOREIGN_KEY_VIOLATION, UNIQUE_VIOLATION, violation};
use crate::json::{event_bytes, event_bytes_without_payload, to_jsonb_text};
use crate::rows::{
    self, delivery_columns, handler_columns, run_columns, step_columns, unsigned_at,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hamster_core::handler::HandlerSpec;
use hamster_core::store::{
    DeliveryOutcome, DeliveryRecord, HandlerId, HandlerRecord, LogChunk, RunFilter, RunId,
    RunRecord, RunStatus, StepRecord, Store, StoreError,
};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, QueryBuilder, Row};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Runs listed when [`RunFilter::limit`] is `None`.
const DEFAULT_RUN_LIMIT: u32 = 100;
/// Most runs one listing returns, whatever the filter asks.
const MAX_RUN_LIMIT: u32 = 1000;

/// Inserts the runs bound as arrays in `$1`…`$13` by [`RunArrays::bind`]; one statement
/// whatever the number of runs. With arguments, more arrays (`", $21::text[]"`) are
/// unnested beside them as more columns of `new_run` (`", owner"`, for a `WHERE`), of which
/// those named in the third argument (`", payload_in_delivery"`) are inserted too.
macro_rules! insert_runs_from_arrays {
    () => {
        insert_runs_from_arrays!("", "", "")
    };
    ($extra_arrays:literal, $extra_columns:literal, $extra_inserted:literal) => {
        concat!(
            "INSERT INTO runs (id, handler_id, handler_name, handler_version, handler_spec, \
                 event, repository, delivery_id, status, created_at, started_at, finished_at, \
                 error",
            $extra_inserted,
            ") SELECT id, handler_id, handler_name, handler_version, handler_spec::jsonb, \
                 event, repository, delivery_id, status, created_at, started_at, \
                 finished_at, error",
            $extra_inserted,
            " FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::int8[], $5::text[], \
                 $6::bytea[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], \
                 $11::timestamptz[], $12::timestamptz[], $13::text[]",
            $extra_arrays,
            ") AS new_run (id, handler_id, handler_name, handler_version, handler_spec, \
                 event, repository, delivery_id, status, created_at, started_at, \
                 finished_at, error",
            $extra_columns,
            ")"
        )
    };
}
pub(crate) use insert_runs_from_arrays;

/// Bumps the handlers revision when the data-modifying CTE `changed` touched a row.
macro_rules! bump_revision_if_changed {
    () => {
        "bumped AS (UPDATE handlers_revision SET revision = revision + 1 \
         WHERE EXISTS (SELECT 1 FROM changed))"
    };
}

/// Runs column by column, to be bound as arrays.
#[derive(Default)]
pub(crate) struct RunArrays {
    ids: Vec<Uuid>,
    handler_ids: Vec<Uuid>,
    handler_names: Vec<String>,
    handler_versions: Vec<i64>,
    handler_specs: Vec<String>,
    events: Vec<Vec<u8>>,
    repositories: Vec<String>,
    delivery_ids: Vec<Option<String>>,
    statuses: Vec<&'static str>,
    created_at: Vec<DateTime<Utc>>,
    started_at: Vec<Option<DateTime<Utc>>>,
    finished_at: Vec<Option<DateTime<Utc>>>,
    errors: Vec<Option<String>>,
    /// Not bound by [`bind`](Self::bind): only intake inserts it.
    pub(crate) payloads_in_delivery: Vec<bool>,
}

impl RunArrays {
    /// The runs, each with its whole event.
    pub(crate) fn new<'a>(
        runs: impl IntoIterator<Item = &'a RunRecord>,
    ) -> Result<Self, StoreError> {
        Self::with_payloads(runs.into_iter().map(|run| (run, false)))
    }

    /// The runs, each with whether its event's payload is left out (kept with its delivery).
    pub(crate) fn with_payloads<'a>(
        runs: impl IntoIterator<Item = (&'a RunRecord, bool)>,
    ) -> Result<Self, StoreError> {
        let mut arrays = Self::default();
        for (run, payload_in_delivery) in runs {
            arrays.payloads_in_delivery.push(payload_in_delivery);
            arrays.ids.push(run.id.0);
            arrays.handler_ids.push(run.handler_id.0);
            arrays.handler_names.push(run.handler_name.clone());
            arrays.handler_versions.push(run.handler_version);
            arrays
                .handler_specs
                .push(to_jsonb_text(&run.handler, "a run's handler")?);
            arrays.events.push(if payload_in_delivery {
                event_bytes_without_payload(&run.event)?
            } else {
                event_bytes(&run.event)?
            });
            arrays.repositories.push(run.repository.clone());
            arrays.delivery_ids.push(run.delivery_id.clone());
            arrays.statuses.push(run.status.as_str());
            arrays.created_at.push(run.created_at);
            arrays.started_at.push(run.started_at);
            arrays.finished_at.push(run.finished_at);
            arrays.errors.push(run.error.clone());
        }
        Ok(arrays)
    }

    /// Binds `$1`…`$13` of [`insert_runs_from_arrays`].
    pub(crate) fn bind(
        self,
        query: Query<'_, Postgres, PgArguments>,
    ) -> Query<'_, Postgres, PgArguments> {
        query
            .bind(self.ids)
            .bind(self.handler_ids)
            .bind(self.handler_names)
            .bind(self.handler_versions)
            .bind(self.handler_specs)
            .bind(self.events)
            .bind(self.repositories)
            .bind(self.delivery_ids)
            .bind(self.statuses)
            .bind(self.created_at)
            .bind(self.started_at)
            .bind(self.finished_at)
            .bind(self.errors)
    }
}

impl PostgresStore {
    fn failed<'a>(&'a self, doing: &'a str) -> impl FnOnce(sqlx::Error) -> StoreError + 'a {
        move |error| self.errors.map(doing, error)
    }

    /// Maps an error from inserting runs: a taken run id is reported as such.
    fn run_insert_failed<'a>(
        &'a self,
        doing: &'a str,
    ) -> impl FnOnce(sqlx::Error) -> StoreError + 'a {
        move |error| run_insert_failed(&self.errors, doing, error)
    }

    /// Maps an error from writing a handler: a taken name becomes `HandlerExists`.
    fn handler_write_failed<'a>(
        &'a self,
        doing: &'a str,
        name: &'a str,
    ) -> impl FnOnce(sqlx::Error) -> StoreError + 'a {
        move |error| match violation(&error) {
            Some((code, Some(constraint)))
                if code == UNIQUE_VIOLATION && constraint == "handlers_name_unique" =>
            {
                StoreError::HandlerExists(name.to_owned())
            }
            _ => self.errors.map(doing, error),
        }
    }

    /// Maps an error from writing a step or log: an unknown run becomes `NotFound`.
    fn step_write_failed<'a>(
        &'a self,
        doing: &'a str,
        run_id: RunId,
    ) -> impl FnOnce(sqlx::Error) -> StoreError + 'a {
        move |error| match violation(&error) {
            Some((code, _)) if code == FOREIGN_KEY_VIOLATION => StoreError::NotFound {
                what: "run",
                id: run_id.to_string(),
            },
            _ => self.errors.map(doing, error),
        }
    }

    /// Whether a handler exists, and its version.
    async fn handler_version(&self, id: HandlerId) -> Result<Option<i64>, StoreError> {
        sqlx::query("SELECT version FROM handlers WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.failed("reading a handler's version"))?
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()
            .map_err(self.failed("reading a handler's version"))
    }

    async fn run_exists(&self, id: RunId) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM runs WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.failed("looking a run up"))?;
        Ok(row.is_some())
    }
}

fn handler_not_found(id: HandlerId) -> StoreError {
    StoreError::NotFound {
        what: "handler",
        id: id.to_string(),
    }
}

/// Byte offsets travel as BIGINT.
fn offset_to_sql(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_handler(
        &self,
        spec: HandlerSpec,
        source_text: String,
    ) -> Result<HandlerRecord, StoreError> {
        let spec_json = to_jsonb_text(&spec, "the handler")?;
        let row = sqlx::query(concat!(
            "WITH changed AS (INSERT INTO handlers \
                 (id, name, version, enabled, source_text, spec, created_at, updated_at) \
                 VALUES ($1, $2, 1, $3, $4, $5::jsonb, $6, $6) RETURNING ",
            handler_columns!(),
            "), ",
            bump_revision_if_changed!(),
            " SELECT * FROM changed"
        ))
        .bind(HandlerId::new().0)
        .bind(&spec.name)
        .bind(spec.enabled)
        .bind(source_text)
        .bind(spec_json)
        .bind(Utc::now())
        .fetch_one(&self.pool)
        .await
        .map_err(self.handler_write_failed("creating a handler", &spec.name))?;
        rows::handler(&row)
    }

    async fn update_handler(
        &self,
        id: HandlerId,
        spec: HandlerSpec,
        source_text: String,
        expected_version: Option<i64>,
    ) -> Result<HandlerRecord, StoreError> {
        let spec_json = to_jsonb_text(&spec, "the handler")?;
        let row = sqlx::query(concat!(
            "WITH changed AS (UPDATE handlers SET name = $2, version = version + 1, \
                 enabled = $3, source_text = $4, spec = $5::jsonb, updated_at = $6 \
                 WHERE id = $1 AND ($7::bigint IS NULL OR version = $7) RETURNING ",
            handler_columns!(),
            "), ",
            bump_revision_if_changed!(),
            " SELECT * FROM changed"
        ))
        .bind(id.0)
        .bind(&spec.name)
        .bind(spec.enabled)
        .bind(source_text)
        .bind(spec_json)
        .bind(Utc::now())
        .bind(expected_version)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.handler_write_failed("updating a handler", &spec.name))?;
        match row {
            Some(row) => rows::handler(&row),
            None => match (self.handler_version(id).await?, expected_version) {
                (Some(_), Some(expected)) => Err(StoreError::Conflict {
                    what: "handler",
                    id: id.to_string(),
                    expected,
                }),
                _ => Err(handler_not_found(id)),
            },
        }
    }

    async fn set_handler_enabled(
        &self,
        id: HandlerId,
        enabled: bool,
    ) -> Result<HandlerRecord, StoreError> {
        // The spec's own `enabled` is kept equal to the column, so that a run's snapshot
        // and the API never disagree with the record.
        let row = sqlx::query(concat!(
            "WITH changed AS (UPDATE handlers SET enabled = $2, \
                 spec = jsonb_set(spec, '{enabled}', to_jsonb($2::boolean)) \
                 WHERE id = $1 RETURNING ",
            handler_columns!(),
            "), ",
            bump_revision_if_changed!(),
            " SELECT * FROM changed"
        ))
        .bind(id.0)
        .bind(enabled)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.failed("enabling or disabling a handler"))?;
        row.map_or_else(|| Err(handler_not_found(id)), |row| rows::handler(&row))
    }

    async fn delete_handler(&self, id: HandlerId) -> Result<bool, StoreError> {
        let row = sqlx::query(concat!(
            "WITH changed AS (DELETE FROM handlers WHERE id = $1 RETURNING id), ",
            bump_revision_if_changed!(),
            " SELECT EXISTS (SELECT 1 FROM changed)"
        ))
        .bind(id.0)
        .fetch_one(&self.pool)
        .await
        .map_err(self.failed("deleting a handler"))?;
        row.try_get(0).map_err(self.failed("deleting a handler"))
    }

    async fn get_handler(&self, id: HandlerId) -> Result<Option<HandlerRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            handler_columns!(),
            " FROM handlers WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.failed("reading a handler"))?
        .map(|row| rows::handler(&row))
        .transpose()
    }

    async fn get_handler_by_name(&self, name: &str) -> Result<Option<HandlerRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            handler_columns!(),
            " FROM handlers WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.failed("reading a handler by name"))?
        .map(|row| rows::handler(&row))
        .transpose()
    }

    async fn list_handlers(&self) -> Result<Vec<HandlerRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            handler_columns!(),
            " FROM handlers ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed("listing handlers"))?
        .iter()
        .map(rows::handler)
        .collect()
    }

    async fn handlers_revision(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT revision FROM handlers_revision")
            .fetch_one(&self.pool)
            .await
            .map_err(self.failed("reading the handlers revision"))?;
        unsigned_at(&row, 0)
    }

    async fn record_delivery(
        &self,
        delivery: DeliveryRecord,
        runs: Vec<RunRecord>,
    ) -> Result<DeliveryOutcome, StoreError> {
        self.deliveries.record(delivery, runs).await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.failed("reading a delivery"))?
        .map(|row| rows::delivery(&row))
        .transpose()
    }

    async fn list_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries ORDER BY received_at DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed("listing deliveries"))?
        .iter()
        .map(rows::delivery)
        .collect()
    }

    async fn add_delivery_runs(
        &self,
        delivery_id: &str,
        runs: Vec<RunRecord>,
    ) -> Result<(), StoreError> {
        const DOING: &str = "adding runs to a delivery";
        let run_ids: Vec<Uuid> = runs.iter().map(|run| run.id.0).collect();
        let query = sqlx::query(concat!(
            "WITH delivery AS (UPDATE deliveries SET run_ids = run_ids || $15 \
                 WHERE id = $14 RETURNING id), \
             new_runs AS (",
            insert_runs_from_arrays!(),
            " WHERE EXISTS (SELECT 1 FROM delivery)) \
             SELECT EXISTS (SELECT 1 FROM delivery)"
        ));
        let row = RunArrays::new(&runs)?
            .bind(query)
            .bind(delivery_id)
            .bind(run_ids)
            .fetch_one(&self.pool)
            .await
            .map_err(self.run_insert_failed(DOING))?;
        let found: bool = row.try_get(0).map_err(self.failed(DOING))?;
        if found {
            Ok(())
        } else {
            Err(StoreError::NotFound {
                what: "delivery",
                id: delivery_id.to_owned(),
            })
        }
    }

    async fn create_runs(&self, runs: Vec<RunRecord>) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        RunArrays::new(&runs)?
            .bind(sqlx::query(insert_runs_from_arrays!()))
            .execute(&self.pool)
            .await
            .map_err(self.run_insert_failed("creating runs"))?;
        Ok(())
    }

    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.failed("reading a run"))?
        .map(|row| rows::run(&row))
        .transpose()
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        // Only the filters in use appear in the SQL, so that each combination gets a plan
        // that uses its index (a generic `$1 IS NULL OR …` plan would scan).
        let mut query = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE TRUE"
        ));
        if let Some(repository) = &filter.repository {
            query.push(" AND repository = ").push_bind(repository);
        }
        if let Some(handler) = &filter.handler {
            query.push(" AND handler_name = ").push_bind(handler);
        }
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(before) = filter.before {
            query
                .push(" AND (created_at, id) < (SELECT created_at, id FROM runs WHERE id = ")
                .push_bind(before.0)
                .push(")");
        }
        if let Some(time) = filter.created_before {
            query.push(" AND created_at < ").push_bind(time);
        }
        let limit = filter.limit.unwrap_or(DEFAULT_RUN_LIMIT).min(MAX_RUN_LIMIT);
        query
            .push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(self.failed("listing runs"))?
            .iter()
            .map(rows::run)
            .collect()
    }

    async fn transition_run(
        &self,
        id: RunId,
        from: &[RunStatus],
        to: RunStatus,
        error: Option<String>,
    ) -> Result<Option<RunRecord>, StoreError> {
        let from: Vec<&str> = from.iter().map(|status| status.as_str()).collect();
        let row = sqlx::query(concat!(
            "UPDATE runs SET status = $3, error = $4, \
                 started_at = CASE WHEN $3 = 'running' THEN COALESCE(started_at, $5) \
                     ELSE started_at END, \
                 finished_at = CASE WHEN $6 THEN $5 ELSE NULL END \
             WHERE id = $1 AND status = ANY($2) RETURNING ",
            run_columns!()
        ))
        .bind(id.0)
        .bind(from)
        .bind(to.as_str())
        .bind(error)
        .bind(Utc::now())
        .bind(to.is_terminal())
        .fetch_optional(&self.pool)
        .await
        .map_err(self.failed("changing a run's status"))?;
        match row {
            Some(row) => rows::run(&row).map(Some),
            None if self.run_exists(id).await? => Ok(None),
            None => Err(StoreError::NotFound {
                what: "run",
                id: id.to_string(),
            }),
        }
    }

    async fn count_runs_by_status(&self) -> Result<BTreeMap<RunStatus, u64>, StoreError> {
        let rows = sqlx::query("SELECT status, count(*) FROM runs GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(self.failed("counting runs"))?;
        // Every status is present, with 0 when no run has it, so that gauges fall to 0.
        let mut counts: BTreeMap<RunStatus, u64> = RunStatus::ALL
            .into_iter()
            .map(|status| (status, 0))
            .collect();
        for row in rows {
            let status: String = row.try_get(0).map_err(self.failed("counting runs"))?;
            let status = status
                .parse::<RunStatus>()
                .map_err(|error| StoreError::Corrupt(format!("runs.status: {error}")))?;
            counts.insert(status, unsigned_at(&row, 1)?);
        }
        Ok(counts)
    }

    async fn record_step(&self, run_id: RunId, step: StepRecord) -> Result<(), StoreError> {
        let data = to_jsonb_text(&step.data, "the step's data")?;
        sqlx::query(
            "INSERT INTO steps (run_id, key, name, action, status, attempt, started_at, \
                 finished_at, data, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10) \
             ON CONFLICT (run_id, key) DO UPDATE SET name = EXCLUDED.name, \
                 action = EXCLUDED.action, status = EXCLUDED.status, \
                 attempt = EXCLUDED.attempt, started_at = EXCLUDED.started_at, \
                 finished_at = EXCLUDED.finished_at, data = EXCLUDED.data, \
                 error = EXCLUDED.error",
        )
        .bind(run_id.0)
        .bind(&step.key)
        .bind(&step.name)
        .bind(&step.action)
        .bind(step.status.as_str())
        .bind(i64::from(step.attempt))
        .bind(step.started_at)
        .bind(step.finished_at)
        .bind(data)
        .bind(&step.error)
        .execute(&self.step_pool)
        .await
        .map_err(self.step_write_failed("recording a step", run_id))?;
        Ok(())
    }

    async fn list_steps(&self, run_id: RunId) -> Result<Vec<StepRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            step_columns!(),
            " FROM steps WHERE run_id = $1 ORDER BY seq"
        ))
        .bind(run_id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed("listing steps"))?
        .iter()
        .map(rows::step)
        .collect()
    }

    async fn append_log(
        &self,
        run_id: RunId,
        step_key: &str,
        text: &str,
    ) -> Result<(), StoreError> {
        if text.is_empty() {
            // Nothing to add; a zero-length chunk would also collide with the previous
            // chunk's end offset.
            return Ok(());
        }
        // The upsert on `step_logs` locks the log's row, so concurrent appends to one log
        // get distinct, ordered end offsets; the chunk lands in the same statement.
        sqlx::query(
            "WITH log AS (INSERT INTO step_logs (run_id, step_key, length) \
                 VALUES ($1, $2, $4) \
                 ON CONFLICT (run_id, step_key) \
                 DO UPDATE SET length = step_logs.length + EXCLUDED.length \
                 RETURNING length) \
             INSERT INTO step_log_chunks (run_id, step_key, end_offset, content) \
             SELECT $1, $2, length, $3 FROM log",
        )
        .bind(run_id.0)
        .bind(step_key)
        .bind(text.as_bytes())
        .bind(offset_to_sql(text.len() as u64))
        .execute(&self.step_pool)
        .await
        .map_err(self.step_write_failed("appending to a step's log", run_id))?;
        Ok(())
    }

    async fn read_log(
        &self,
        run_id: RunId,
        step_key: &str,
        offset: u64,
    ) -> Result<LogChunk, StoreError> {
        const DOING: &str = "reading a step's log";
        // Only the chunks that can reach the text returned: those starting before the
        // offset plus a whole chunk (and the continuation bytes a read may skip).
        let reach = offset.saturating_add(LogChunk::MAX_BYTES as u64 + 4);
        let rows = sqlx::query(
            "SELECT log.length, chunk.end_offset, chunk.content \
             FROM step_logs log \
             LEFT JOIN step_log_chunks chunk ON chunk.run_id = log.run_id \
                 AND chunk.step_key = log.step_key AND chunk.end_offset > $3 \
                 AND chunk.end_offset - octet_length(chunk.content) < $4 \
             WHERE log.run_id = $1 AND log.step_key = $2 \
             ORDER BY chunk.end_offset",
        )
        .bind(run_id.0)
        .bind(step_key)
        .bind(offset_to_sql(offset))
        .bind(offset_to_sql(reach))
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed(DOING))?;
        let Some(first) = rows.first() else {
            return Ok(LogChunk {
                text: String::new(),
                next_offset: 0,
            });
        };
        let length: u64 = unsigned_at(first, 0)?;
        let corrupt = |what: String| {
            StoreError::Corrupt(format!("the log of run {run_id} step `{step_key}`: {what}"))
        };
        // The chunks are consecutive: the bytes run from the first one's start.
        let mut bytes_start = None;
        let mut bytes = Vec::new();
        for row in &rows {
            let end: Option<i64> = row.try_get(1).map_err(self.failed(DOING))?;
            let content: Option<Vec<u8>> = row.try_get(2).map_err(self.failed(DOING))?;
            let (Some(end), Some(content)) = (end, content) else {
                continue;
            };
            let chunk_start = u64::try_from(end)
                .ok()
                .and_then(|end| end.checked_sub(content.len() as u64))
                .ok_or_else(|| {
                    corrupt(format!(
                        "a chunk ending at {end} holds {} bytes",
                        content.len()
                    ))
                })?;
            let start = *bytes_start.get_or_insert(chunk_start);
            if chunk_start != start + bytes.len() as u64 {
                return Err(corrupt(format!(
                    "a chunk starts at {chunk_start}, not where the one before it ends"
                )));
            }
            bytes.extend_from_slice(&content);
        }
        match bytes_start {
            Some(start) => {
                LogChunk::cut(&bytes, start, offset).map_err(|error| corrupt(error.to_string()))
            }
            // Nothing after `offset`: the log ends there or before.
            None => Ok(LogChunk {
                text: String::new(),
                next_offset: length,
            }),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(self.failed("checking the connection"))?;
        Ok(())
    }
}
