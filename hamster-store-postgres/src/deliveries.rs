//! Recording webhook deliveries: concurrent calls share one statement and one commit.
//!
//! Intake records every delivery before it answers, so its rate is bounded by what one
//! delivery costs PostgreSQL. Most of that is per statement and per commit (a round trip,
//! planning, a WAL flush to wait for), not per row, so deliveries arriving together are
//! written together: a [`Coalescer`] gathers them, and one `INSERT … SELECT FROM UNNEST`
//! records a batch with its runs. Each delivery keeps its own outcome: a redelivery in the
//! batch is reported as a duplicate, and when the batch statement fails, its deliveries are
//! retried one by one so that one bad delivery fails alone.

use crate::error::{ErrorContext, UNIQUE_VIOLATION, violation};
use crate::json::to_jsonb_text;
use crate::store::{RunArrays, insert_runs_from_arrays};
use chrono::{DateTime, Utc};
use hamster_core::coalesce::Coalescer;
use hamster_core::store::{DeliveryOutcome, DeliveryRecord, RunId, RunRecord, StoreError};
use sqlx::{PgPool, Row};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// Deliveries in one statement at most: bounds the statement's size (a delivery is tens of
/// kilobytes) and how long one batch holds its connection.
const MAX_BATCH: usize = 64;
/// Batches in flight at once: while one waits for its commit to be flushed, the next is
/// being written.
const MAX_IN_FLIGHT: usize = 2;

type Outcome = Result<DeliveryOutcome, StoreError>;

/// A delivery and its runs, waiting to be recorded.
pub(crate) struct NewDelivery {
    delivery: DeliveryRecord,
    runs: Vec<RunRecord>,
}

/// Records deliveries in batches; see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct DeliveryWriter {
    batches: Arc<Coalescer<NewDelivery, Outcome, StoreError>>,
    pool: PgPool,
    errors: ErrorContext,
}

impl DeliveryWriter {
    pub(crate) fn new(pool: PgPool, errors: ErrorContext) -> Self {
        Self {
            batches: Coalescer::with_senders("delivery", MAX_BATCH, MAX_IN_FLIGHT),
            pool,
            errors,
        }
    }

    /// [`Store::record_delivery`](hamster_core::store::Store::record_delivery).
    pub(crate) async fn record(&self, delivery: DeliveryRecord, runs: Vec<RunRecord>) -> Outcome {
        let pool = self.pool.clone();
        let errors = self.errors.clone();
        self.batches
            .submit(NewDelivery { delivery, runs }, move |batch| {
                let pool = pool.clone();
                let errors = errors.clone();
                async move { Ok(record_batch(&pool, &errors, batch).await) }
            })
            .await?
    }
}

/// Records `batch`, one outcome per delivery in its order.
async fn record_batch(
    pool: &PgPool,
    errors: &ErrorContext,
    batch: Vec<NewDelivery>,
) -> Vec<Outcome> {
    // A delivery id seen twice in one statement would be a conflict with itself; repeats
    // are recorded after the batch, where they meet the first as a stored duplicate.
    let mut seen = HashSet::with_capacity(batch.len());
    let (mut first, repeats): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .enumerate()
        .partition(|(_, item)| seen.insert(item.delivery.id.clone()));
    // Two batches in flight take their rows' locks in the same order, so that concurrent
    // redeliveries cannot deadlock them.
    first.sort_by(|(_, a), (_, b)| a.delivery.id.cmp(&b.delivery.id));
    let mut outcomes: Vec<Option<Outcome>> = Vec::new();
    outcomes.resize_with(first.len() + repeats.len(), || None);

    let (positions, items): (Vec<usize>, Vec<NewDelivery>) = first.into_iter().unzip();
    let written = match insert(pool, errors, &items).await {
        Ok(inserted) => items
            .iter()
            .map(|item| Ok(inserted.contains(item.delivery.id.as_str())))
            .collect(),
        Err(error) if items.len() == 1 => vec![Err(error)],
        Err(error) => {
            tracing::debug!(%error, deliveries = items.len(), "a batch of deliveries failed; recording them one by one");
            let mut written = Vec::with_capacity(items.len());
            for item in &items {
                let single = insert(pool, errors, std::slice::from_ref(item)).await;
                written.push(single.map(|inserted| !inserted.is_empty()));
            }
            written
        }
    };
    let duplicates: Vec<&str> = items
        .iter()
        .zip(&written)
        .filter(|(_, written)| matches!(written, Ok(false)))
        .map(|(item, _)| item.delivery.id.as_str())
        .collect();
    let mut existing = stored_run_ids(pool, errors, &duplicates).await;
    for ((position, item), written) in positions.into_iter().zip(&items).zip(written) {
        outcomes[position] = Some(match written {
            Ok(true) => Ok(DeliveryOutcome::Recorded),
            Ok(false) => match &mut existing {
                Ok(existing) => existing
                    .remove(item.delivery.id.as_str())
                    .map(DeliveryOutcome::Duplicate)
                    .ok_or_else(|| vanished(&item.delivery.id)),
                Err(error) => Err(error.clone()),
            },
            Err(error) => Err(error),
        });
    }

    if !repeats.is_empty() {
        let (positions, items): (Vec<usize>, Vec<NewDelivery>) = repeats.into_iter().unzip();
        // Boxed: the repeats of the repeats are handled by the same function.
        let repeated = Box::pin(record_batch(pool, errors, items)).await;
        for (position, outcome) in positions.into_iter().zip(repeated) {
            outcomes[position] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                Err(StoreError::Backend(
                    "a delivery of a batch was given no outcome (a bug in the batching); \
                     it may or may not be recorded"
                        .to_owned(),
                ))
            })
        })
        .collect()
}

/// Inserts deliveries with distinct ids, and the runs of those not stored before, in one
/// statement; the ids of the deliveries it inserted.
async fn insert(
    pool: &PgPool,
    errors: &ErrorContext,
    items: &[NewDelivery],
) -> Result<HashSet<String>, StoreError> {
    const DOING: &str = "recording deliveries";
    let mut ids = Vec::with_capacity(items.len());
    let mut events = Vec::with_capacity(items.len());
    let mut received_at: Vec<DateTime<Utc>> = Vec::with_capacity(items.len());
    let mut headers = Vec::with_capacity(items.len());
    let mut bodies: Vec<&[u8]> = Vec::with_capacity(items.len());
    let mut bodies_are_payloads = Vec::with_capacity(items.len());
    // `run_ids` of each delivery, flattened: (its position, starting at 1, and a run id).
    let mut run_owners: Vec<i64> = Vec::new();
    let mut run_ids: Vec<Uuid> = Vec::new();
    let mut runs_delivery = Vec::new();
    for (position, item) in (1_i64..).zip(items) {
        let delivery = &item.delivery;
        ids.push(delivery.id.as_str());
        events.push(delivery.event.as_str());
        received_at.push(delivery.received_at);
        headers.push(to_jsonb_text(&delivery.headers, "a delivery's headers")?);
        bodies.push(&delivery.body);
        bodies_are_payloads.push(delivery.body_is_payload);
        for id in delivery_run_ids(delivery, &item.runs) {
            run_owners.push(position);
            run_ids.push(id);
        }
        runs_delivery.extend(item.runs.iter().map(|_| delivery.id.as_str()));
    }
    let query = sqlx::query(concat!(
        "WITH batch AS (SELECT * FROM UNNEST($14::text[], $15::text[], $16::timestamptz[], \
             $17::text[], $18::bytea[], $22::bool[]) WITH ORDINALITY \
             AS d (id, event, received_at, headers, body, body_is_payload, position)), \
         new_delivery AS (INSERT INTO deliveries \
             (id, event, received_at, headers, body, run_ids, body_is_payload) \
             SELECT d.id, d.event, d.received_at, d.headers::jsonb, d.body, \
                 ARRAY(SELECT r.run_id FROM UNNEST($19::int8[], $20::uuid[]) WITH ORDINALITY \
                     AS r (position, run_id, n) WHERE r.position = d.position ORDER BY r.n), \
                 d.body_is_payload \
             FROM batch d \
             ON CONFLICT (id) DO NOTHING RETURNING id), \
         new_runs AS (",
        insert_runs_from_arrays!(
            ", $21::text[], $23::bool[]",
            ", owner, payload_in_delivery",
            ", payload_in_delivery"
        ),
        " WHERE owner IN (SELECT id FROM new_delivery)) \
         SELECT id FROM new_delivery"
    ));
    let runs = items.iter().flat_map(|item| {
        item.runs
            .iter()
            .map(|run| (run, item.delivery.holds_payload_of(run)))
    });
    let mut arrays = RunArrays::with_payloads(runs)?;
    let payloads_in_delivery = std::mem::take(&mut arrays.payloads_in_delivery);
    let rows = arrays
        .bind(query)
        .bind(ids)
        .bind(events)
        .bind(received_at)
        .bind(headers)
        .bind(bodies)
        .bind(run_owners)
        .bind(run_ids)
        .bind(runs_delivery)
        .bind(bodies_are_payloads)
        .bind(payloads_in_delivery)
        .fetch_all(pool)
        .await
        .map_err(|error| run_insert_failed(errors, DOING, error))?;
    rows.iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(|error| errors.map(DOING, error))
}

/// The runs stored for deliveries recorded before. A separate statement from the insert:
/// when the first delivery committed while the insert waited on the conflict, only a new
/// snapshot sees it.
async fn stored_run_ids(
    pool: &PgPool,
    errors: &ErrorContext,
    ids: &[&str],
) -> Result<HashMap<String, Vec<RunId>>, StoreError> {
    const DOING: &str = "reading a duplicate delivery's runs";
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query("SELECT id, run_ids FROM deliveries WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(pool)
        .await
        .map_err(|error| errors.map(DOING, error))?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get(0)?;
            let runs: Vec<Uuid> = row.try_get(1)?;
            Ok((id, runs.into_iter().map(RunId).collect()))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|error| errors.map(DOING, error))
}

fn vanished(id: &str) -> StoreError {
    StoreError::Backend(format!(
        "delivery `{id}` was recorded by another writer and then removed before its runs \
         could be read; redeliver it"
    ))
}

/// Maps an error from inserting runs: a taken run id is reported as such.
pub(crate) fn run_insert_failed(
    errors: &ErrorContext,
    doing: &str,
    error: sqlx::Error,
) -> StoreError {
    match violation(&error) {
        Some((code, Some(constraint))) if code == UNIQUE_VIOLATION && constraint == "runs_pkey" => {
            StoreError::Backend(format!(
                "a run with the same id is stored already (while {doing}); run ids must be new"
            ))
        }
        _ => errors.map(doing, error),
    }
}

/// The delivery's run ids: those it lists, then those of `runs` it does not.
pub(crate) fn delivery_run_ids(delivery: &DeliveryRecord, runs: &[RunRecord]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = delivery.run_ids.iter().map(|id| id.0).collect();
    for run in runs {
        if !ids.contains(&run.id.0) {
            ids.push(run.id.0);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn delivery_run_ids_keep_order_without_duplicates() {
        let listed = RunId::new();
        let delivery = DeliveryRecord {
            id: "d".to_owned(),
            event: "push".to_owned(),
            received_at: Utc::now(),
            headers: BTreeMap::new(),
            body: Vec::new(),
            run_ids: vec![listed],
            body_is_payload: false,
        };
        assert_eq!(delivery_run_ids(&delivery, &[]), vec![listed.0]);
    }
}
