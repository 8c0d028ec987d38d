//! The queue conformance suite.

/// Runs every queue conformance check (placeholder until the suite lands).
pub async fn queue_conformance() {}
