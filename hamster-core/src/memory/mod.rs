//! In-memory [`Store`](crate::store::Store) and [`Queue`](crate::queue::Queue): complete and
//! honest (leases expire, unacked work is redelivered), for tests, benchmarks and embedding.

mod queue;
mod store;

pub use queue::MemoryQueue;
pub use store::MemoryStore;
