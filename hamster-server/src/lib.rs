//! hamster-server (in progress).
