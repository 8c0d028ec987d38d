//! Connecting: migrations under concurrency, `from_pool`, and error messages.

#![allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".

mod common;

use hamster_core::store::{Store, StoreError};
use hamster_store_postgres::{ConnectError, PostgresConfig, PostgresStore};
use sqlx::postgres::PgPoolOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_connects_on_a_fresh_schema_all_succeed() {
    if !common::database_available("concurrent_connects_on_a_fresh_schema_all_succeed").await {
        return;
    }
    let schema = common::fresh_schema();
    let connects = (0..4).map(|_| {
        let schema = schema.clone();
        tokio::spawn(async move { common::connect(&schema).await })
    });
    let stores: Vec<PostgresStore> = futures::future::try_join_all(connects)
        .await
        .unwrap()
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();

    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    let embedded = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(
        applied, embedded as i64,
        "each migration is applied exactly once"
    );
    for store in &stores {
        store.ping().await.unwrap();
    }
    // They all see one database: what one writes, the others read.
    let handler = serde_json::from_value(serde_json::json!({
        "name": "shared", "events": ["push"], "actions": []
    }))
    .unwrap();
    stores[0]
        .create_handler(handler, String::new())
        .await
        .unwrap();
    assert!(
        stores[3]
            .get_handler_by_name("shared")
            .await
            .unwrap()
            .is_some()
    );

    // Reconnecting to a migrated schema changes nothing.
    let again = common::connect(&schema).await.unwrap();
    assert_eq!(again.list_handlers().await.unwrap().len(), 1);
    for store in stores.iter().chain([&again]) {
        store.close().await;
    }
    common::drop_schema(&schema).await;
}

#[tokio::test]
async fn from_pool_migrates_the_pool_schema() {
    if !common::database_available("from_pool_migrates_the_pool_schema").await {
        return;
    }
    let schema = common::fresh_schema();
    // Prepares the schema; the pool below then brings its own `search_path`.
    common::connect(&schema).await.unwrap().close().await;
    let search_path = format!("SET search_path TO {schema}");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .after_connect(move |connection, _| {
            let search_path = search_path.clone();
            Box::pin(async move {
                sqlx::query(&search_path)
                    .execute(connection)
                    .await
                    .map(|_| ())
            })
        })
        .connect(&common::database_url())
        .await
        .unwrap();
    let store = PostgresStore::from_pool(pool).await.unwrap();
    assert_eq!(store.handlers_revision().await.unwrap(), 0);
    store.close().await;
    common::drop_schema(&schema).await;
}

#[tokio::test]
async fn an_unreachable_server_is_named_without_the_password() {
    // Port 1 on localhost: nothing listens there, so the connection is refused at once.
    let error = PostgresStore::connect(
        "postgres://hamster:s3cr3t-pw@127.0.0.1:1/hamster",
        PostgresConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, ConnectError::Unreachable { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("PostgreSQL at 127.0.0.1:1 is unreachable"),
        "{message}"
    );
    assert!(!message.contains("s3cr3t-pw"), "{message}");
    assert!(!format!("{error:?}").contains("s3cr3t-pw"));
    let as_store_error = StoreError::from(error);
    assert!(matches!(as_store_error, StoreError::Backend(_)));
    assert!(!as_store_error.to_string().contains("s3cr3t-pw"));
}

#[tokio::test]
async fn bad_configuration_is_refused_before_connecting() {
    let bad_schema = PostgresStore::connect(
        "postgres://hamster@127.0.0.1:1/hamster",
        PostgresConfig {
            schema: Some("Robert'); DROP TABLE runs;--".to_owned()),
            ..PostgresConfig::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(bad_schema, ConnectError::InvalidSchema { .. }),
        "{bad_schema}"
    );

    let bad_url = PostgresStore::connect(
        "postgres://hamster:pw@host:notaport/db",
        PostgresConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(bad_url, ConnectError::InvalidUrl { .. }),
        "{bad_url}"
    );
    assert!(!bad_url.to_string().contains(":pw@"), "{bad_url}");
}

#[tokio::test]
async fn a_pool_that_cannot_reach_the_server_reports_it_per_operation() {
    if !common::database_available("a_pool_that_cannot_reach_the_server_reports_it_per_operation")
        .await
    {
        return;
    }
    let schema = common::fresh_schema();
    let store = common::connect(&schema).await.unwrap();
    store.close().await;
    let error = store.ping().await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Backend(message) if message.contains("closed")),
        "{error}"
    );
    common::drop_schema(&schema).await;
}
