//! The store conformance suite.

/// Runs every store conformance check (placeholder until the suite lands).
pub async fn store_conformance() {}
