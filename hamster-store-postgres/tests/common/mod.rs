//! Test support: stores in throw-away schemas of the real local PostgreSQL.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use hamster_store_postgres::{ConnectError, PostgresConfig, PostgresStore};
use sqlx::Connection;
use uuid::Uuid;

/// The database tests use: `HAMSTER_TEST_DATABASE_URL`, or the local trust-auth server.
pub fn database_url() -> String {
    std::env::var("HAMSTER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1/test".to_owned())
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    format!("hamster_test_{}", Uuid::new_v4().simple())
}

/// Whether PostgreSQL is reachable. When it is not: fails the test under `CI`, otherwise
/// prints why it is skipped and returns `false`.
pub async fn database_available(test: &str) -> bool {
    match sqlx::PgConnection::connect(&database_url()).await {
        Ok(connection) => {
            let _ = connection.close().await;
            true
        }
        Err(error) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: PostgreSQL is required under CI: {error}"
            );
            eprintln!("skipped: {test}: PostgreSQL unreachable: {error}");
            false
        }
    }
}

/// Connects a store to `schema`.
pub async fn connect(schema: &str) -> Result<PostgresStore, ConnectError> {
    connect_with(schema, test_config()).await
}

/// Connects a store to `schema` with `config` (whose `schema` is replaced).
pub async fn connect_with(
    schema: &str,
    config: PostgresConfig,
) -> Result<PostgresStore, ConnectError> {
    let config = PostgresConfig {
        schema: Some(schema.to_owned()),
        ..config
    };
    PostgresStore::connect(&database_url(), config).await
}

/// A small pool: tests run in parallel against one server.
pub fn test_config() -> PostgresConfig {
    PostgresConfig {
        max_connections: 4,
        ..PostgresConfig::default()
    }
}

/// Drops `schema` and everything in it.
pub async fn drop_schema(schema: &str) {
    let mut connection = sqlx::PgConnection::connect(&database_url())
        .await
        .expect("connecting to drop a test schema");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut connection)
        .await
        .expect("dropping a test schema");
    let _ = connection.close().await;
}

/// A store in its own schema, dropped by [`TestStore::finish`], or when the test panics.
pub struct TestStore {
    pub store: PostgresStore,
    pub schema: String,
    finished: bool,
}

impl TestStore {
    /// A store in a fresh schema, or `None` when the test is skipped.
    pub async fn new(test: &str) -> Option<Self> {
        if !database_available(test).await {
            return None;
        }
        let schema = fresh_schema();
        let store = connect(&schema).await.expect("connecting the test store");
        Some(Self {
            store,
            schema,
            finished: false,
        })
    }

    /// Closes the pools and drops the schema.
    pub async fn finish(mut self) {
        self.store.close().await;
        drop_schema(&self.schema).await;
        self.finished = true;
    }
}

impl Drop for TestStore {
    /// A failed test never reaches `finish`: drop its schema from a thread of its own,
    /// since the test's runtime cannot be blocked on from here.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let schema = self.schema.clone();
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop a test schema")
                .block_on(drop_schema(&schema));
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop test schema {}", self.schema);
        }
    }
}
