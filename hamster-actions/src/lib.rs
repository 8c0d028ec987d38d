//! hamster-actions (in progress).
