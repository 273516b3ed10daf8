//! The calls of the running service by call id, for GetCallInfo and Disconnect: a call id is
//! answered only to the user who placed the call, and a finished call is forgotten a while
//! after it ended (15 minutes for GetCallInfo).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Call, CallState};

/// The call id is unknown to this user: never placed, placed by another user, expired, or not
/// a call id at all (GetCallInfo and Disconnect answer `InvalidCallIdException`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown call id")]
pub struct UnknownCall;

struct Entry {
    owner: String,
    call: Call,
}

/// The calls placed, by call id.
pub struct CallRegistry {
    calls: Mutex<HashMap<String, Entry>>,
    keep: Duration,
}

impl CallRegistry {
    /// A registry that forgets a call `keep` after it ended.
    pub fn new(keep: Duration) -> CallRegistry {
        CallRegistry {
            calls: Mutex::new(HashMap::new()),
            keep,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // (a panic while holding the lock leaves the map consistent: every change is one call)
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `call`, placed by `owner`.
    pub fn insert(&self, owner: &str, call: Call) {
        self.lock().insert(
            call.id().to_owned(),
            Entry {
                owner: owner.to_owned(),
                call,
            },
        );
    }

    /// `owner`'s call `id`.
    pub fn get(&self, owner: &str, id: &str) -> Result<Call, UnknownCall> {
        match self.lock().get(id) {
            Some(entry) if entry.owner == owner => Ok(entry.call.clone()),
            _ => Err(UnknownCall),
        }
    }

    /// The calls not yet [`CallState::Disconnected`]: in all, and `owner`'s (for call limits).
    pub fn running(&self, owner: &str) -> (usize, usize) {
        let calls = self.lock();
        let running = calls
            .values()
            .filter(|e| e.call.status().state != CallState::Disconnected);
        running.fold((0, 0), |(all, own), e| {
            (all + 1, own + usize::from(e.owner == owner))
        })
    }

    /// Forgets the calls that ended `keep` or more before `now`; returns how many.
    pub fn purge(&self, now: Instant) -> usize {
        let mut calls = self.lock();
        let before = calls.len();
        calls.retain(|_, e| {
            e.call
                .ended_at()
                .is_none_or(|ended| now.saturating_duration_since(ended) < self.keep)
        });
        before - calls.len()
    }

    /// Hangs up every call (graceful shutdown); returns them to wait for.
    pub fn hang_up_all(&self) -> Vec<Call> {
        let calls: Vec<Call> = self.lock().values().map(|e| e.call.clone()).collect();
        for call in &calls {
            call.hang_up();
        }
        calls
    }
}
