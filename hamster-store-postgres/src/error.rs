//! Errors: [`ConnectError`] for start-up, and the mapping of `sqlx` errors onto
//! [`StoreError`].

use hamster_core::store::StoreError;
use std::sync::Arc;

/// SQLSTATE `unique_violation`.
pub(crate) const UNIQUE_VIOLATION: &str = "23505";
/// SQLSTATE `foreign_key_violation`.
pub(crate) const FOREIGN_KEY_VIOLATION: &str = "23503";
/// SQLSTATE `duplicate_schema`.
const DUPLICATE_SCHEMA: &str = "42P06";

/// Why [`PostgresStore::connect`](crate::PostgresStore::connect) or
/// [`PostgresStore::from_pool`](crate::PostgresStore::from_pool) failed. Messages never
/// contain the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connection URL could not be parsed.
    #[error(
        "invalid PostgreSQL URL ({reason}); write it like postgres://user:password@host:5432/database"
    )]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The configured schema name is not accepted.
    #[error("invalid PostgreSQL schema name `{schema}`: {reason}")]
    InvalidSchema {
        /// The name as configured.
        schema: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered at the server's address.
    #[error(
        "PostgreSQL at {address} is unreachable: {reason}; check that the server is running and the URL's host and port"
    )]
    Unreachable {
        /// `host:port` (or the socket path).
        address: String,
        /// The network error.
        reason: String,
    },
    /// The server answered but refused or failed (authentication, missing database,
    /// permissions…).
    #[error("PostgreSQL at {address} refused the connection or setup: {reason}")]
    Database {
        /// `host:port` (or the socket path).
        address: String,
        /// The server's message.
        reason: String,
    },
    /// The embedded migrations could not be applied.
    #[error(
        "could not migrate the Hamster schema on PostgreSQL at {address}: {reason}; \
         if the schema was created by a newer Hamster, upgrade this one"
    )]
    Migration {
        /// `host:port` (or the socket path).
        address: String,
        /// What failed.
        reason: String,
    },
}

impl From<ConnectError> for StoreError {
    fn from(error: ConnectError) -> Self {
        StoreError::Backend(error.to_string())
    }
}

impl ConnectError {
    /// Classifies an error met while connecting or preparing the schema.
    pub(crate) fn from_sqlx(error: sqlx::Error, address: &str) -> Self {
        let address = address.to_owned();
        match error {
            sqlx::Error::Io(io) => Self::Unreachable {
                address,
                reason: io.to_string(),
            },
            sqlx::Error::PoolTimedOut => Self::Unreachable {
                address,
                reason: "timed out connecting".to_owned(),
            },
            sqlx::Error::Migrate(migrate) => Self::Migration {
                address,
                reason: migrate.to_string(),
            },
            other => Self::Database {
                address,
                reason: other.to_string(),
            },
        }
    }
}

/// Whether `error` says the schema exists already: `CREATE SCHEMA IF NOT EXISTS` run by
/// several processes at once can still collide on the catalog's unique index.
pub(crate) fn is_schema_exists(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == UNIQUE_VIOLATION || code == DUPLICATE_SCHEMA)
}

/// The SQLSTATE and constraint of a database error, if it is one.
pub(crate) fn violation(error: &sqlx::Error) -> Option<(String, Option<String>)> {
    let db = error.as_database_error()?;
    Some((db.code()?.into_owned(), db.constraint().map(str::to_owned)))
}

/// Turns `sqlx` errors into [`StoreError`]s that say where and what.
#[derive(Clone, Debug)]
pub(crate) struct ErrorContext {
    /// `host:port` of the server, for messages.
    address: Arc<str>,
}

impl ErrorContext {
    pub(crate) fn new(address: String) -> Self {
        Self {
            address: address.into(),
        }
    }

    /// Maps an error met while `doing` something (`"recording a step"`).
    pub(crate) fn map(&self, doing: &str, error: sqlx::Error) -> StoreError {
        let address = &self.address;
        match error {
            sqlx::Error::Io(io) => StoreError::Backend(format!(
                "PostgreSQL at {address} is unreachable: {io} (while {doing})"
            )),
            sqlx::Error::Tls(tls) => StoreError::Backend(format!(
                "TLS with PostgreSQL at {address} failed: {tls} (while {doing})"
            )),
            sqlx::Error::PoolTimedOut => StoreError::Backend(format!(
                "timed out waiting for a connection to PostgreSQL at {address} while {doing}; \
                 the server is slow or unreachable, or the pool is too small \
                 (raise PostgresConfig::max_connections)"
            )),
            sqlx::Error::PoolClosed => StoreError::Backend(format!(
                "the connection pool to PostgreSQL at {address} was closed (while {doing})"
            )),
            sqlx::Error::ColumnDecode { index, source } => {
                StoreError::Corrupt(format!("column {index} while {doing}: {source}"))
            }
            sqlx::Error::Decode(source) => StoreError::Corrupt(format!("while {doing}: {source}")),
            sqlx::Error::Database(db) => {
                let code = db.code().map(|code| code.into_owned()).unwrap_or_default();
                StoreError::Backend(format!(
                    "PostgreSQL at {address} failed while {doing}: {} (SQLSTATE {code})",
                    db.message()
                ))
            }
            other => StoreError::Backend(format!(
                "PostgreSQL at {address} failed while {doing}: {other}"
            )),
        }
    }
}
