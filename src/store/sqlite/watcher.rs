//! The change version ([`Store::change_version`]): a number that moves after every commit, so
//! that a caller may keep what it read while the number stays the same. Commits through this
//! process are counted by the pool (`pool.rs`); commits by other processes are found by polling
//! SQLite's `PRAGMA data_version` on a connection of its own.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{PoisonError, TryLockError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::pool::open_connection;
use super::Store;
use crate::store::StoreError;

/// How often [`Store::change_version`] looks for commits by other processes (by default).
pub const DEFAULT_EXTERNAL_POLL: Duration = Duration::from_millis(100);

pub(super) const NEVER_POLLED: u64 = u64::MAX;

/// Nanoseconds from `epoch` to `now` (0 when `now` is earlier).
fn nanos_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX - 1)
}

/// The connection that answers [`Store::data_version`] (it never writes, so its
/// `PRAGMA data_version` changes exactly when another connection commits), with what it last
/// saw.
#[derive(Default)]
pub(super) struct Watcher {
    conn: Option<Connection>,
    last: Option<u64>,
}

impl Store {
    /// A number that changes whenever any connection to the database file, in this process or
    /// another, commits a change: SQLite's `PRAGMA data_version`, read on a connection of its
    /// own that never writes. Equal numbers mean no commit in between, so a record read after
    /// one call is still current while later calls return the same number. Costs no disk I/O
    /// (it reads the WAL index in shared memory).
    pub fn data_version(&self) -> Result<u64, StoreError> {
        let mut watcher = self
            .shared
            .watcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Self::read_data_version(&self.shared.path, &mut watcher)
    }

    fn read_data_version(path: &Path, watcher: &mut Watcher) -> Result<u64, StoreError> {
        let conn = match &mut watcher.conn {
            Some(conn) => conn,
            slot => slot.insert(open_connection(path, None)?),
        };
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        Ok(version as u64)
    }

    /// A number that changes after every commit to the database: at once for commits through
    /// this [`Store`] (any clone; counted when the connection that committed is given back), and
    /// within the [`with_external_poll`](Self::with_external_poll) interval for commits by other
    /// processes (found through [`data_version`](Self::data_version) on the first call after the
    /// interval). So a record read after a call that returned `v` is current as long as later
    /// calls return `v`. Almost always one atomic load: no lock, no SQLite call.
    pub fn change_version(&self) -> Result<u64, StoreError> {
        self.change_version_at(Instant::now())
    }

    /// [`change_version`](Self::change_version) with the time already read by the caller.
    pub fn change_version_at(&self, now: Instant) -> Result<u64, StoreError> {
        let shared = &*self.shared;
        let interval = u64::try_from(self.external_poll.as_nanos()).unwrap_or(u64::MAX);
        let poll_due = || {
            let polled = shared.polled_at.load(Ordering::Acquire);
            polled == NEVER_POLLED
                || nanos_since(shared.epoch, now).saturating_sub(polled) >= interval
        };
        // Without a lock first: is a poll due at all?
        if !poll_due() {
            return Ok(shared.version.load(Ordering::Acquire));
        }
        // Another thread polling now answers for this one too.
        let watcher = match shared.watcher.try_lock() {
            Ok(watcher) => Some(watcher),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(mut watcher) = watcher {
            // Another thread may have polled between the check above and the lock.
            if poll_due() {
                let seen = match Self::read_data_version(&shared.path, &mut watcher) {
                    Ok(seen) => seen,
                    Err(error) => {
                        // A new connection next time; its numbering starts afresh.
                        *watcher = Watcher::default();
                        return Err(error);
                    }
                };
                // Only the watcher's own numbers compare; the first one is a baseline.
                if watcher.last.is_some_and(|last| last != seen) {
                    shared.version.fetch_add(1, Ordering::AcqRel);
                }
                watcher.last = Some(seen);
                shared
                    .polled_at
                    .store(nanos_since(shared.epoch, now), Ordering::Release);
            }
        }
        Ok(shared.version.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{alice, store};
    use super::*;

    #[test]
    fn change_version_moves_with_commits_only() {
        let (dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        let v0 = store.change_version().unwrap();
        // Reads and rolled-back transactions are not changes.
        store.mailbox("alice").unwrap().unwrap();
        store.mailboxes().unwrap();
        store.verify_password("alice", "wrong").unwrap();
        {
            let mut conn = store.conn().unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute("UPDATE mailboxes SET oof_status = 1", [])
                .unwrap();
            tx.rollback().unwrap();
        }
        assert_eq!(store.change_version().unwrap(), v0);
        // A commit through any clone is seen at once.
        store.clone().set_oof_status(id, true).unwrap();
        let v1 = store.change_version().unwrap();
        assert_ne!(v1, v0);
        assert_eq!(store.change_version().unwrap(), v1);
        // A commit by another handle on the file (another process) is seen by the poll.
        let polling = store.clone().with_external_poll(Duration::ZERO);
        let v2 = polling.change_version().unwrap();
        let other = Store::open(dir.path()).unwrap();
        other.set_oof_status(id, false).unwrap();
        assert_ne!(polling.change_version().unwrap(), v2);
    }
}
