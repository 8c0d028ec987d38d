//! The Store conformance suite from `hamster-core`, against the real local PostgreSQL.

#![allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".

mod common;

use hamster_core::testing::store_conformance;
use hamster_store_postgres::PostgresConfig;
use std::sync::{Arc, Mutex};

/// Runs the suite with every check on a fresh store connected with `config`.
async fn conforms(test: &str, config: PostgresConfig) {
    if !common::database_available(test).await {
        return;
    }
    // Every check gets a store in a schema of its own; they are dropped at the end.
    let schemas = Arc::new(Mutex::new(Vec::new()));
    store_conformance(|| {
        let (schemas, config) = (Arc::clone(&schemas), config.clone());
        async move {
            let schema = common::fresh_schema();
            schemas.lock().unwrap().push(schema.clone());
            common::connect_with(&schema, config)
                .await
                .expect("connecting a conformance store")
        }
    })
    .await;
    let schemas = std::mem::take(&mut *schemas.lock().unwrap());
    for schema in schemas {
        common::drop_schema(&schema).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_conforms() {
    conforms("postgres_store_conforms", common::test_config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_with_relaxed_step_writes_conforms() {
    let config = PostgresConfig {
        durable_step_writes: false,
        ..common::test_config()
    };
    conforms("postgres_store_with_relaxed_step_writes_conforms", config).await;
}
