//! Conformance suites for backends and the in-process test kit (feature `testing`).

mod queue_conformance;
mod store_conformance;

pub use queue_conformance::queue_conformance;
pub use store_conformance::store_conformance;
