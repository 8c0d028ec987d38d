//! Errors: opening the file, and how SQLite failures map onto the contracts' errors.

use hamster_core::queue::QueueError;
use hamster_core::store::StoreError;
use sqlx::error::ErrorKind;
use std::path::PathBuf;

/// Why [`SqliteBackend::open`](crate::SqliteBackend::open) failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory for the database file could not be created.
    #[error(
        "could not create the directory `{path}` for the SQLite database: {source}; \
         check the path and its permissions"
    )]
    CreateDirectory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database file could not be opened or created.
    #[error(
        "could not open the SQLite database `{path}`: {source}; check that the path is a \
         writable file (not a directory) and that it is a SQLite database"
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error(
        "could not apply the schema migrations to `{path}`: {source}; if the file was written \
         by a newer Hamster, upgrade Hamster or use another file"
    )]
    Migrate {
        /// The file.
        path: PathBuf,
        /// Why.
        source: sqlx::migrate::MigrateError,
    },
}

/// The kind of constraint a failed statement violated, if any.
pub(crate) fn violation(error: &sqlx::Error) -> Option<ErrorKind> {
    match error {
        sqlx::Error::Database(database) => Some(database.kind()),
        _ => None,
    }
}

/// A SQLite failure as a store error. sqlx's messages name the constraint or the problem,
/// never the bound values, so no stored data reaches logs through them.
pub(crate) fn store(error: sqlx::Error) -> StoreError {
    StoreError::Backend(format!("SQLite: {error}"))
}

/// A SQLite failure as a queue error.
pub(crate) fn queue(error: sqlx::Error) -> QueueError {
    QueueError::Backend(format!("SQLite: {error}"))
}
