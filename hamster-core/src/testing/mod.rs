//! Conformance suites for backends and the in-process test kit (feature `testing`).

mod kit;
mod queue_conformance;
mod store_conformance;

pub use queue_conformance::queue_conformance;
pub use store_conformance::store_conformance;
pub use store_conformance::{sample_handler, sample_run};

pub use kit::{RecordingAction, RunReport, TestKit, TestKitBuilder, TestKitError};
