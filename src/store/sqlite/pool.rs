//! The connection pool: each operation takes a connection from the pool (or opens one), uses
//! it, and gives it back, so operations on different mailboxes do not queue behind one lock;
//! SQLite itself serialises the writers (with a busy timeout). Every connection is in WAL mode
//! with `synchronous=FULL` and foreign keys on, and counts its commits for
//! [`Store::change_version`].

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rusqlite::Connection;

use super::{Shared, Store};
use crate::store::StoreError;

/// How long a connection waits for another writer before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many idle connections the pool keeps.
const MAX_IDLE_CONNECTIONS: usize = 8;

/// A connection borrowed from the pool; given back on drop (an open transaction on it has been
/// rolled back by then, since transactions borrow it).
pub(in crate::store) struct PooledConnection<'a> {
    conn: Option<Connection>,
    shared: &'a Shared,
    /// `shared.commits` when the connection was taken.
    commits: u64,
}

impl Deref for PooledConnection<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Invariant: `conn` is only taken in `drop`.
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl DerefMut for PooledConnection<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        // Invariant: `conn` is only taken in `drop`.
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for PooledConnection<'_> {
    fn drop(&mut self) {
        // Whatever this connection committed is complete now (a transaction borrows the
        // connection, so it has ended). Bumping the version only after that means a reader
        // that sees the new version also sees the commit.
        if self.shared.commits.load(Ordering::Acquire) != self.commits {
            self.shared.version.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(conn) = self.conn.take() {
            let mut idle = self
                .shared
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_CONNECTIONS {
                idle.push(conn);
            }
        }
    }
}

pub(super) fn open_connection(
    path: &Path,
    commits: Option<&Arc<AtomicU64>>,
) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    if let Some(commits) = commits {
        let commits = Arc::clone(commits);
        // Runs for write transactions only, just before they commit.
        conn.commit_hook(Some(move || {
            commits.fetch_add(1, Ordering::AcqRel);
            false
        }));
    }
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "SQLite refused WAL journal mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

impl Store {
    pub(in crate::store) fn conn(&self) -> Result<PooledConnection<'_>, StoreError> {
        let idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        // Read before the connection can commit anything.
        let commits = self.shared.commits.load(Ordering::Acquire);
        let conn = match idle {
            Some(conn) => conn,
            None => open_connection(&self.shared.path, Some(&self.shared.commits))?,
        };
        Ok(PooledConnection {
            conn: Some(conn),
            shared: &self.shared,
            commits,
        })
    }
}
