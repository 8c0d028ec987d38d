//! How to connect: [`PostgresConfig`].

use crate::error::ConnectError;
use std::time::Duration;

/// Longest schema name PostgreSQL keeps without truncating (`NAMEDATALEN - 1`).
const MAX_SCHEMA_NAME_BYTES: usize = 63;

/// Options for [`PostgresStore::connect`](crate::PostgresStore::connect).
///
/// ```
/// use hamster_store_postgres::PostgresConfig;
///
/// let config = PostgresConfig {
///     schema: Some("hamster".to_owned()),
///     ..PostgresConfig::default()
/// };
/// assert_eq!(config.max_connections, 10);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresConfig {
    /// The schema holding Hamster's tables, created if missing and put first on every
    /// pooled connection's `search_path`; `None` uses the server's `search_path`
    /// (normally `public`). Lower-case letters, digits and `_`, not starting with a digit.
    pub schema: Option<String>,
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// Connections the pool keeps open when idle.
    pub min_connections: u32,
    /// How long an operation waits for a free connection before it fails.
    pub acquire_timeout: Duration,
    /// Whether [`record_step`](hamster_core::store::Store::record_step) and
    /// [`append_log`](hamster_core::store::Store::append_log) wait for their commit to
    /// reach the disk (the default). When `false` they commit with PostgreSQL's
    /// `synchronous_commit = off`, on a second pool of up to `max_connections`: on a disk
    /// with slow flushes they are several times faster, and a crash of the PostgreSQL
    /// server (not of an appserver or worker) can lose the step results and log lines of
    /// its last fraction of a second. The database stays consistent either way, and
    /// handlers, deliveries and runs are always durable.
    pub durable_step_writes: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            schema: None,
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(10),
            durable_step_writes: true,
        }
    }
}

/// Checks that `schema` can be used unquoted in `search_path` and SQL.
///
/// Restricting the alphabet (rather than quoting) keeps the name identical in every place
/// PostgreSQL reads it: `CREATE SCHEMA`, the `options` startup parameter and `psql`.
pub(crate) fn validate_schema(schema: &str) -> Result<(), ConnectError> {
    let invalid = |reason: &str| ConnectError::InvalidSchema {
        schema: schema.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(first) = schema.chars().next() else {
        return Err(invalid("it is empty"));
    };
    if schema.len() > MAX_SCHEMA_NAME_BYTES {
        return Err(invalid("it is longer than 63 bytes"));
    }
    if !(first.is_ascii_lowercase() || first == '_') {
        return Err(invalid("it must start with a lower-case letter or `_`"));
    }
    if !schema
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(invalid(
            "it may only contain lower-case letters, digits and `_`",
        ));
    }
    if schema.starts_with("pg_") {
        return Err(invalid(
            "names starting with `pg_` are reserved by PostgreSQL",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_lower_case_names() {
        for name in ["hamster", "_private", "hamster_test_01", &"a".repeat(63)] {
            assert!(validate_schema(name).is_ok(), "{name} should be accepted");
        }
    }

    #[test]
    fn rejects_names_that_would_need_quoting() {
        for name in [
            "",
            "Hamster",
            "1st",
            "with space",
            "semi;colon",
            "quote\"d",
            "pg_catalog",
            &"a".repeat(64),
        ] {
            let error = validate_schema(name).expect_err(name);
            assert!(
                matches!(error, ConnectError::InvalidSchema { .. }),
                "{name}: {error}"
            );
        }
    }
}
