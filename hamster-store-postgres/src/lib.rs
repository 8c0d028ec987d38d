//! A durable Hamster [`Store`](hamster_core::store::Store) on PostgreSQL.
//!
//! ```no_run
//! use hamster_store_postgres::{PostgresConfig, PostgresStore};
//!
//! # async fn example() -> Result<(), hamster_store_postgres::ConnectError> {
//! let store = PostgresStore::connect(
//!     "postgres://hamster:secret@127.0.0.1:5432/hamster",
//!     PostgresConfig { schema: Some("hamster".to_owned()), ..PostgresConfig::default() },
//! )
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! - **Migrations** are embedded in the binary and applied by [`PostgresStore::connect`] and
//!   [`PostgresStore::from_pool`]. Several appservers may start at once: sqlx's migrator
//!   holds a PostgreSQL advisory lock while it migrates, so exactly one applies each
//!   migration and the others wait for it.
//! - **Building needs no database**: every query is checked at run time
//!   (`sqlx::query(…).bind(…)`), not by sqlx's compile-time macros, so there is no offline
//!   query data to keep up to date either.
//! - **Schemas**: [`PostgresConfig::schema`] puts the tables in their own schema (created
//!   if missing), so several stores, or parallel tests, can share one database.
//! - **Timestamps** are `TIMESTAMPTZ`, which keeps microseconds: a time stored with
//!   nanoseconds reads back truncated to the microsecond.
//! - **JSON** (handler specs, step data, delivery headers) is stored as `JSONB`, which does
//!   not keep object key order and cannot hold U+0000; that character is replaced by
//!   U+FFFD. A run's event is stored as the JSON bytes written (`BYTEA`): it is read back
//!   whole, and parsing tens of kilobytes into JSONB on every intake cost more than anything
//!   else. Delivery bodies and step logs are bytes and keep everything.
//! - **Intake** records concurrent deliveries in one statement (group commit), see
//!   `record_delivery`; large columns are compressed with lz4 when the server has it.

mod config;
mod deliveries;
mod error;
mod json;
mod rows;
mod store;

pub use config::PostgresConfig;
pub use error::ConnectError;

use deliveries::DeliveryWriter;
use error::ErrorContext;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;

/// The schema's migrations, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A [`Store`](hamster_core::store::Store) on PostgreSQL; cheap to clone (clones share
/// the connection pool).
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// Where step results and logs are written: `pool` itself, or a pool whose sessions
    /// commit asynchronously (see [`PostgresConfig::durable_step_writes`]).
    step_pool: PgPool,
    errors: ErrorContext,
    deliveries: DeliveryWriter,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// creates [`PostgresConfig::schema`] if it is missing and applies the migrations.
    pub async fn connect(url: &str, config: PostgresConfig) -> Result<Self, ConnectError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|error| ConnectError::InvalidUrl {
                reason: error.to_string(),
            })?
            .application_name("hamster");
        if let Some(schema) = &config.schema {
            config::validate_schema(schema)?;
            // A startup parameter rather than `SET` after connecting: it costs no round
            // trip and survives anything that resets the session.
            options = options.options([("search_path", schema.as_str())]);
        }
        let address = describe_address(&options);
        let failed = |error| ConnectError::from_sqlx(error, &address);

        let mut connection = options.connect().await.map_err(failed)?;
        if let Some(schema) = &config.schema {
            create_schema(&mut connection, schema)
                .await
                .map_err(failed)?;
        }
        migrate(connection, &address).await?;

        let pool_options = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .min_connections(config.min_connections)
            .acquire_timeout(config.acquire_timeout);
        let pool = pool_options
            .clone()
            .connect_with(options.clone())
            .await
            .map_err(failed)?;
        let step_pool = if config.durable_step_writes {
            pool.clone()
        } else {
            pool_options.connect_lazy_with(options.options([("synchronous_commit", "off")]))
        };
        tracing::info!(
            %address,
            schema = ?config.schema,
            durable_step_writes = config.durable_step_writes,
            "connected the PostgreSQL store"
        );
        let errors = ErrorContext::new(address);
        Ok(Self {
            deliveries: DeliveryWriter::new(pool.clone(), errors.clone()),
            pool,
            step_pool,
            errors,
        })
    }

    /// Uses an existing pool (whose connections' `search_path` chooses the schema) and
    /// applies the migrations.
    pub async fn from_pool(pool: PgPool) -> Result<Self, ConnectError> {
        let address = describe_address(&pool.connect_options());
        let connection = pool
            .acquire()
            .await
            .map_err(|error| ConnectError::from_sqlx(error, &address))?
            // Taken out of the pool so that it is closed after migrating (see `migrate`).
            .detach();
        migrate(connection, &address).await?;
        let errors = ErrorContext::new(address);
        Ok(Self {
            deliveries: DeliveryWriter::new(pool.clone(), errors.clone()),
            step_pool: pool.clone(),
            pool,
            errors,
        })
    }

    /// The connection pool, for health checks, metrics or maintenance queries.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the store's pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
        self.step_pool.close().await;
    }
}

/// Applies the embedded migrations on `connection`, then closes it: sqlx's migrator takes
/// a session-level advisory lock, and a connection that failed half-way must not go back to
/// a pool still holding it.
async fn migrate(mut connection: PgConnection, address: &str) -> Result<(), ConnectError> {
    // `run_direct` rather than `run`: with `run(&mut connection)` rustc cannot prove the
    // future `Send` ("implementation of `Acquire` is not general enough"), which would make
    // `connect` impossible to spawn. sqlx keeps `run_direct` public for exactly this.
    let outcome = MIGRATOR.run_direct(&mut connection).await;
    if let Err(error) = connection.close().await {
        tracing::debug!(%error, "closing the migration connection failed");
    }
    outcome.map_err(|error| ConnectError::Migration {
        address: address.to_owned(),
        reason: error.to_string(),
    })
}

/// `CREATE SCHEMA IF NOT EXISTS`, tolerating another process creating it at the same time.
async fn create_schema(connection: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    // `schema` was validated to be a plain lower-case identifier, safe to splice in.
    let statement = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
    match sqlx::query(&statement).execute(connection).await {
        Err(error) if !error::is_schema_exists(&error) => Err(error),
        _ => Ok(()),
    }
}

/// `host:port`, or the socket path: where the server is, for messages (never the password).
fn describe_address(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".
mod tests {
    use super::*;

    async fn synchronous_commit(pool: &PgPool) -> String {
        sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn only_step_writes_commit_asynchronously_when_asked() {
        const TEST: &str = "only_step_writes_commit_asynchronously_when_asked";
        let url = std::env::var("HAMSTER_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1/test".to_owned());
        let schema = format!("hamster_test_{}", uuid::Uuid::new_v4().simple());
        let config = PostgresConfig {
            schema: Some(schema.clone()),
            durable_step_writes: false,
            ..PostgresConfig::default()
        };
        let store = match PostgresStore::connect(&url, config).await {
            Ok(store) => store,
            Err(error @ ConnectError::Unreachable { .. }) => {
                assert!(std::env::var_os("CI").is_none(), "{TEST}: {error}");
                eprintln!("skipped: {TEST}: {error}");
                return;
            }
            Err(error) => panic!("{TEST}: {error}"),
        };
        let server_default: String = {
            let mut connection = PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(&mut connection)
                .await
                .unwrap()
        };
        assert_eq!(synchronous_commit(&store.step_pool).await, "off");
        assert_eq!(synchronous_commit(&store.pool).await, server_default);

        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&store.pool)
            .await
            .unwrap();
        store.close().await;
    }
}
