//! In-memory store.

/// An in-memory [`Store`](crate::store::Store).
#[derive(Debug, Default)]
pub struct MemoryStore {}
