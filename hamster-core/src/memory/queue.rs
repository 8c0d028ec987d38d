//! In-memory queue.

/// An in-memory [`Queue`](crate::queue::Queue).
#[derive(Debug, Default)]
pub struct MemoryQueue {}
