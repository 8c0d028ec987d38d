//! Stopping blocking git work when the future that asked for it is dropped.
//!
//! `spawn_blocking` work cannot be aborted: when a run is cancelled, the blocking thread
//! keeps going while the workspace directory is being removed, and files it writes after
//! the removal would be left behind. So the blocking side checks a flag before writing
//! into the workspace, and the dropped future waits for a write already under way to
//! finish, so that the workspace's own cleanup (which runs after) sees a quiet directory.

use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::Duration;

/// How long a dropped materialization waits for a checkout already writing files.
/// Checkouts are local disk work; this only bounds a pathologically slow disk.
const MAX_WAIT_FOR_WRITER: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct State {
    cancelled: bool,
    writing: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    writer_done: Condvar,
}

/// Held by the materializing future: dropping it cancels the blocking work.
#[derive(Debug)]
pub(crate) struct CancelOnDrop {
    shared: Arc<Shared>,
}

/// Handed to blocking work to learn whether it should stop.
#[derive(Debug, Clone)]
pub(crate) struct CancelToken {
    shared: Arc<Shared>,
}

/// Marks the workspace as being written; dropping it (also on panic) ends the write.
#[derive(Debug)]
pub(crate) struct Writing {
    shared: Arc<Shared>,
}

impl CancelOnDrop {
    pub(crate) fn new() -> Self {
        Self {
            shared: Arc::default(),
        }
    }

    pub(crate) fn token(&self) -> CancelToken {
        CancelToken {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.cancelled = true;
        if state.writing {
            tracing::debug!("materialization cancelled while writing the checkout; waiting for it");
            let timed_out = self
                .shared
                .writer_done
                .wait_while_for(&mut state, |state| state.writing, MAX_WAIT_FOR_WRITER)
                .timed_out();
            if timed_out {
                tracing::warn!(
                    "a cancelled checkout is still writing after {MAX_WAIT_FOR_WRITER:?}; the workspace may not be removed completely"
                );
            }
        }
    }
}

impl CancelToken {
    /// Whether the materialization was abandoned.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.shared.state.lock().cancelled
    }

    /// Starts writing into the workspace, unless the materialization was abandoned.
    pub(crate) fn begin_writing(&self) -> Option<Writing> {
        let mut state = self.shared.state.lock();
        if state.cancelled {
            return None;
        }
        state.writing = true;
        Some(Writing {
            shared: self.shared.clone(),
        })
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.shared.state.lock().writing = false;
        self.shared.writer_done.notify_all();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn cancelled_work_is_not_allowed_to_start_writing() {
        let owner = CancelOnDrop::new();
        let token = owner.token();
        assert!(!token.is_cancelled());
        drop(owner);
        assert!(token.is_cancelled());
        assert!(token.begin_writing().is_none());
    }

    #[test]
    fn dropping_the_owner_waits_for_a_write_under_way() {
        let owner = CancelOnDrop::new();
        let token = owner.token();
        let writing = token.begin_writing().unwrap();
        let finished = Arc::new(AtomicBool::new(false));
        let writer = {
            let finished = finished.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                finished.store(true, Ordering::SeqCst);
                drop(writing);
            })
        };
        drop(owner);
        assert!(
            finished.load(Ordering::SeqCst),
            "drop returned before the writer finished"
        );
        writer.join().unwrap();
    }
}
