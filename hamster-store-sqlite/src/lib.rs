//! hamster-store-sqlite (in progress).
