//! The SQLite implementation of the mailbox store: one database file `<data>/umws.sqlite3` in
//! WAL mode with `synchronous=FULL`.
//!
//! [`Store`] is a cheap handle (`Clone + Send + Sync`) over a small pool of connections. This
//! file opens and configures it; the rest is one file per question:
//!
//! - `pool.rs`: how an operation gets a connection (the pool, the pragmas).
//! - `migrations.rs`: the schema and its versions ([`MIGRATIONS`]).
//! - `watcher.rs`: how a caller knows that nothing changed ([`Store::change_version`]).
//! - `mailboxes.rs`: mailbox rows: adding, looking up, passwords, settings.
//! - `policies.rs`: PIN policies.
//! - `pins.rs`: PIN checks at logon, PIN changes, the PIN record.
//! - `resets.rs`: PIN resets and their rate limit.
//! - `outbox.rs`: the queued PIN mails and their spool files.
//! - `voicemail.rs`: voice messages and greetings.
//!
//! Argon2 hashing is never done while holding the pool lock, and never inside a write
//! transaction except for the rare re-checks described on [`Store::reset_pin_queued`].

mod mailboxes;
mod migrations;
mod outbox;
mod pins;
mod policies;
mod pool;
mod resets;
#[cfg(test)]
mod test_support;
mod voicemail;
mod watcher;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use rusqlite::Connection;

use super::private::{check_data_dir, private_entries, private_file, private_open_options};
use super::spool::Spool;
use super::{hash_secret, verify_secret, HashCost, MailboxId, ResetLimit, StoreError};
use migrations::migrate;
pub use migrations::MIGRATIONS;
use pool::open_connection;
pub use watcher::DEFAULT_EXTERNAL_POLL;
use watcher::{Watcher, NEVER_POLLED};

/// The file name of the database inside the data directory.
pub const DATABASE_FILE: &str = "umws.sqlite3";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The state shared by all clones of a [`Store`].
struct Shared {
    path: PathBuf,
    /// The spool of queued mails (see [`super::spool`]).
    spool: Spool,
    idle: Mutex<Vec<Connection>>,
    /// A hash of a random secret, verified against for unknown users so that their answer
    /// takes as long as a known user's.
    dummy_hash: OnceLock<String>,
    /// One lock per mailbox with a PIN change in flight (see [`Store::reset_pin_queued`]).
    pin_locks: Mutex<HashMap<MailboxId, Arc<Mutex<()>>>>,
    /// Write commits by this process's connections, counted (before they complete) by a
    /// commit hook on every pooled connection.
    commits: Arc<AtomicU64>,
    /// The change version of [`Store::change_version`].
    version: AtomicU64,
    /// Looks for commits by other processes.
    watcher: Mutex<Watcher>,
    /// When the watcher last polled, in nanoseconds since `epoch` ([`NEVER_POLLED`] before
    /// the first poll), so that most calls need no lock to know no poll is due.
    polled_at: AtomicU64,
    epoch: Instant,
}

/// A test hook called by every PIN reset and change once its slow hashing is done, while it
/// holds only the lock of its own mailbox; see [`Store::with_pin_work_hook`].
pub type PinWorkHook = Arc<dyn Fn(MailboxId) + Send + Sync>;

/// The durable mailbox store. Cheap to clone; all clones share one pool of connections.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    cost: HashCost,
    external_poll: Duration,
    pin_work_hook: Option<PinWorkHook>,
    reset_limit: Option<ResetLimit>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .field("cost", &self.cost)
            .finish()
    }
}

impl Store {
    /// Opens (creating the database file and schema when needed) the store in `data_dir`, which
    /// must exist: a missing directory is [`StoreError::DataDirMissing`].
    ///
    /// The data directory must be private (see [`super::private`]): one the group or others
    /// may write to is refused ([`StoreError::InsecureDataDir`]); otherwise it is made `0700`,
    /// the database and its `-wal`, `-shm` and `-journal` files `0600` (SQLite gives its side
    /// files the mode of the database file), and the files and directories directly in the
    /// data directory `0600` and `0700`. [`create`](Self::create) also walks the whole tree.
    /// Spool files of delivered or never-committed mails left by a crash are removed.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        if !data_dir.is_dir() {
            return Err(StoreError::DataDirMissing {
                path: data_dir.to_path_buf(),
            });
        }
        check_data_dir(data_dir)?;
        let path = data_dir.join(DATABASE_FILE);
        // Created here, 0600 whatever the umask, so that SQLite (which creates a missing file
        // 0644 less the umask) finds it and gives the WAL and shared-memory files its mode.
        private_open_options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StoreError::Private {
                path: path.clone(),
                source,
            })?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            private_file(&data_dir.join(format!("{DATABASE_FILE}{suffix}")))?;
        }
        private_entries(data_dir)?;
        let spool = Spool::open(data_dir)?;
        let commits = Arc::new(AtomicU64::new(0));
        let mut conn = open_connection(&path, Some(&commits))?;
        migrate(&mut conn)?;
        let store = Store {
            shared: Arc::new(Shared {
                path,
                spool,
                idle: Mutex::new(vec![conn]),
                dummy_hash: OnceLock::new(),
                pin_locks: Mutex::new(HashMap::new()),
                commits,
                version: AtomicU64::new(0),
                watcher: Mutex::new(Watcher::default()),
                polled_at: AtomicU64::new(NEVER_POLLED),
                epoch: Instant::now(),
            }),
            cost: HashCost::default(),
            external_poll: DEFAULT_EXTERNAL_POLL,
            pin_work_hook: None,
            reset_limit: None,
        };
        store.sweep_spool()?;
        Ok(store)
    }

    /// Like [`open`](Self::open), but creates `data_dir` (`0700`; its parents as the umask
    /// says) first, and makes everything under it private, to any depth: directories `0700`,
    /// files `0600` (the Maildirs and the mails an older version left readable). `umws serve`
    /// and `umws mailbox add` open the store this way.
    pub fn create(data_dir: &Path) -> Result<Store, StoreError> {
        Self::create_data_dir(data_dir)?;
        let store = Self::open(data_dir)?;
        super::private::private_tree(data_dir)?;
        Ok(store)
    }

    /// Creates `data_dir` (`0700`; its parents as the umask says) unless it exists.
    pub(crate) fn create_data_dir(data_dir: &Path) -> Result<(), StoreError> {
        if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: data_dir.to_path_buf(),
                source,
            })?;
        }
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, super::private::PRIVATE_DIR_MODE);
        match builder.create(data_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && data_dir.is_dir() => {}
            Err(source) => {
                return Err(StoreError::CreateDir {
                    path: data_dir.to_path_buf(),
                    source,
                })
            }
        }
        Ok(())
    }

    /// Limits the resets that this handle makes for [`ResetReason::Requested`] (the ResetPIN
    /// operation) per mailbox: a reset beyond `limit` within its window is refused with
    /// [`ResetPinError::TooManyResets`], before any argon2 work. The count is kept in the
    /// database and checked in the reset's write transaction, so it holds across concurrent
    /// requests and processes. Without this (the default, for tools and tests) resets are not
    /// limited and not counted; automatic resets ([`ResetReason::TooManyFailures`]) never are.
    ///
    /// [`ResetReason::Requested`]: super::ResetReason::Requested
    /// [`ResetReason::TooManyFailures`]: super::ResetReason::TooManyFailures
    /// [`ResetPinError::TooManyResets`]: super::ResetPinError::TooManyResets
    pub fn with_reset_limit(mut self, limit: Option<ResetLimit>) -> Store {
        self.reset_limit = limit;
        self
    }

    /// Sets the cost of the hashes this handle creates (the default is
    /// [`HashCost::Production`]). Existing hashes keep their own cost.
    pub fn with_hash_cost(mut self, cost: HashCost) -> Store {
        self.cost = cost;
        self
    }

    /// Installs a hook that every PIN reset and change of this handle calls (with the mailbox
    /// id) after its argon2 work and before its write transaction, holding no lock but its own
    /// mailbox's. For tests that show which work overlaps; a hook that blocks delays that
    /// mailbox only.
    pub fn with_pin_work_hook(mut self, hook: PinWorkHook) -> Store {
        self.pin_work_hook = Some(hook);
        self
    }

    /// Sets how often [`change_version`](Self::change_version) of this handle looks for
    /// commits by other processes (default [`DEFAULT_EXTERNAL_POLL`]; zero: on every call).
    pub fn with_external_poll(mut self, every: Duration) -> Store {
        self.external_poll = every;
        self
    }

    /// How many mailboxes have a lock in the map of per-mailbox locks.
    #[cfg(test)]
    pub(crate) fn pin_locks_len(&self) -> usize {
        self.shared
            .pin_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Spends one hash verification on a dummy, so that an unknown user costs as much time as a
    /// known one.
    fn verify_dummy(&self, secret: &[u8]) -> Result<(), StoreError> {
        let dummy = match self.shared.dummy_hash.get() {
            Some(hash) => hash,
            None => {
                let mut random = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut random);
                let hash = hash_secret(self.cost, &random)?;
                self.shared.dummy_hash.get_or_init(|| hash)
            }
        };
        verify_secret(dummy, secret)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_requires_existing_dir_and_create_makes_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/b");
        assert!(matches!(
            Store::open(&missing),
            Err(StoreError::DataDirMissing { .. })
        ));
        let store = Store::create(&missing).unwrap();
        assert_eq!(store.path(), missing.join(DATABASE_FILE));
        assert!(missing.join(DATABASE_FILE).is_file());
    }
}
