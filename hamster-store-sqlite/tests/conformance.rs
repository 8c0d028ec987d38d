//! The store and queue conformance suites, each check on a fresh SQLite file.

use hamster_core::testing::{queue_conformance, store_conformance};
use hamster_store_sqlite::SqliteBackend;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Opens a new database file in `directory`, a different one on every call.
async fn fresh(directory: &tempfile::TempDir, counter: &AtomicUsize) -> SqliteBackend {
    let number = counter.fetch_add(1, Ordering::SeqCst);
    let path = directory.path().join(format!("check-{number}.db"));
    SqliteBackend::open(&path)
        .await
        .unwrap_or_else(|error| panic!("opening {}: {error}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_backend_passes_the_store_conformance_suite() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let counter = AtomicUsize::new(0);
    store_conformance(|| fresh(&directory, &counter)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_backend_passes_the_queue_conformance_suite() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let counter = AtomicUsize::new(0);
    queue_conformance(|| fresh(&directory, &counter)).await;
}
