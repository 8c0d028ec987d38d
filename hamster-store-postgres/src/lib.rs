//! A Hamster [`Store`](hamster_core::store::Store) on PostgreSQL.
