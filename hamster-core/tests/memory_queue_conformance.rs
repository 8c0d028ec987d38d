//! Runs the queue conformance suite on [`MemoryQueue`]:
//! `cargo test -p hamster-core --features testing`.
#![cfg(feature = "testing")]

use hamster_core::memory::MemoryQueue;
use hamster_core::testing::queue_conformance;

#[tokio::test]
async fn memory_queue_conforms_on_a_current_thread_runtime() {
    queue_conformance(|| async { MemoryQueue::new() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_queue_conforms_on_a_multi_thread_runtime() {
    queue_conformance(|| async { MemoryQueue::new() }).await;
}
