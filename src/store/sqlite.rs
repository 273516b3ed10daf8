//! The SQLite implementation of the mailbox store: one database file `<data>/umws.sqlite3` in
//! WAL mode with `synchronous=FULL`.
//!
//! [`Store`] is a cheap handle (`Clone + Send + Sync`) over a small pool of connections: each
//! operation takes a connection from the pool (or opens one), uses it, and gives it back, so
//! operations on different mailboxes do not queue behind one lock; SQLite itself serialises the
//! writers (with a busy timeout). Argon2 hashing is never done while holding the pool lock, and
//! never inside a write transaction except for the rare re-checks described on
//! [`Store::reset_pin_queued`].
//!
//! The schema version is kept in SQLite's `user_version`; [`MIGRATIONS`] are applied in order
//! when the file is opened, and a file from a newer program is refused.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, TryLockError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::{CryptoRng, RngCore};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::private::{check_data_dir, private_entries, private_file, private_open_options};
use super::spool::Spool;
use super::{
    display_user, hash_secret, normalize_user, validate_extension, validate_user, verify_secret,
    ChangePinError, CredentialStamp, HashCost, Mailbox, MailboxId, NewMailbox, OutboxMail,
    OutgoingMail, PinCheck, PinRecordMatch, ResetLimit, ResetPinError, ResetPinOutcome,
    ResetReason, StoreError, DEFAULT_POLICY_NAME,
};
use crate::pin_policy::{PinPolicy, PinRejected};

/// The file name of the database inside the data directory.
pub const DATABASE_FILE: &str = "umws.sqlite3";

/// How long a connection waits for another writer before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many idle connections the pool keeps.
const MAX_IDLE_CONNECTIONS: usize = 8;

/// How often [`Store::change_version`] looks for commits by other processes (by default).
pub const DEFAULT_EXTERNAL_POLL: Duration = Duration::from_millis(100);

/// How often a PIN reset or change starts over when the PIN state changed between its
/// preparation and its transaction (possible only through another process, since one process
/// serialises the PIN changes of a mailbox).
const RESET_PIN_ATTEMPTS: u32 = 3;

/// The schema, one entry per version: entry `i` turns version `i` into version `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE policies (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        min_pin_length INTEGER NOT NULL,
        pin_lifetime_days INTEGER,                -- NULL = Unlimited
        pin_history_count INTEGER NOT NULL,
        allow_common_patterns INTEGER NOT NULL,
        logon_failures_before_pin_reset INTEGER,  -- NULL = Unlimited
        max_logon_attempts INTEGER,               -- NULL = Unlimited
        reset_pin_text TEXT NOT NULL
    );
    INSERT INTO policies (id, name, min_pin_length, pin_lifetime_days, pin_history_count,
        allow_common_patterns, logon_failures_before_pin_reset, max_logon_attempts,
        reset_pin_text)
        VALUES (1, 'Default', 6, 60, 5, 0, 5, 15, '');
    CREATE TABLE mailboxes (
        id INTEGER PRIMARY KEY,
        user_key TEXT NOT NULL UNIQUE,            -- normalize_user(user_name)
        user_name TEXT NOT NULL,
        password_hash TEXT NOT NULL,              -- argon2id PHC string
        um_enabled INTEGER NOT NULL,
        extension TEXT,
        email TEXT,
        policy_id INTEGER NOT NULL REFERENCES policies (id),
        pin_hash TEXT,                            -- argon2id PHC string; NULL = no PIN yet
        pin_set_at INTEGER,                       -- unix seconds
        pin_must_change INTEGER NOT NULL DEFAULT 0,
        failed_logon_count INTEGER NOT NULL DEFAULT 0,
        locked_out INTEGER NOT NULL DEFAULT 0,
        oof_status INTEGER NOT NULL DEFAULT 0,
        missed_call_notification_enabled INTEGER NOT NULL DEFAULT 1,
        play_on_phone_dial_string TEXT,
        telephone_access_folder_email TEXT,
        telephone_access_numbers TEXT
    );
    CREATE TABLE pin_history (
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        pin_hash TEXT NOT NULL,
        set_at INTEGER NOT NULL,
        PRIMARY KEY (mailbox_id, seq)
    );",
    // Version 2: the durable outbox of PIN mails (see `crate::mail::outbox`). A row is inserted
    // in the transaction that changes the PIN and deleted once the mail is delivered; `message`
    // holds the PIN in clear, like any mail queue, so rows must not outlive their delivery.
    "CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,     -- grows in commit order, never reused
        key TEXT NOT NULL UNIQUE,                 -- idempotency key, part of the Message-ID
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        user_name TEXT NOT NULL,
        recipient TEXT NOT NULL,
        message BLOB NOT NULL,                    -- RFC 5322, CRLF
        created_at INTEGER NOT NULL,              -- unix seconds
        attempts INTEGER NOT NULL DEFAULT 0,      -- failed deliveries so far
        last_attempt_at INTEGER                   -- unix seconds of the last failure
    );",
    // Version 3: the ResetPIN rate limit's log, one row per counted reset (see
    // `Store::with_reset_limit`). Also from this version on: the outbox's `message` is empty and
    // the message lives in a spool file (`super::spool`), and `user_key` is the NFC + case-fold
    // key of `normalize_user` (recomputed by `rekey_users` on upgrade).
    "CREATE TABLE pin_resets (
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        at INTEGER NOT NULL                       -- unix seconds
    );
    CREATE INDEX pin_resets_by_mailbox ON pin_resets (mailbox_id, at);",
];

/// The schema version from which outbox messages are spooled and user keys are NFC-folded.
const SPOOL_VERSION: i64 = 3;

/// The columns read into a [`MailboxRow`], in the order [`read_row`] expects.
/// A macro so that the queries below are built once, at compile time
/// (`row_by_user` runs on every authenticated request).
macro_rules! select_mailbox {
    ($tail:literal) => {
        concat!(
            "SELECT m.id, m.user_name, m.um_enabled, m.extension, m.email,
        p.name, p.min_pin_length, p.pin_lifetime_days, p.pin_history_count,
        p.allow_common_patterns, p.logon_failures_before_pin_reset, p.max_logon_attempts,
        p.reset_pin_text,
        m.pin_hash, m.pin_set_at, m.pin_must_change, m.failed_logon_count, m.locked_out,
        m.oof_status, m.missed_call_notification_enabled, m.play_on_phone_dial_string,
        m.telephone_access_folder_email, m.telephone_access_numbers, m.password_hash
    FROM mailboxes m JOIN policies p ON p.id = m.policy_id ",
            $tail
        )
    };
}

/// A mailbox with the hashes that [`Mailbox`] does not expose.
struct MailboxRow {
    mailbox: Mailbox,
    password_hash: String,
    pin_hash: Option<String>,
}

fn read_row(r: &Row<'_>) -> rusqlite::Result<MailboxRow> {
    let pin_hash: Option<String> = r.get(13)?;
    let password_hash: String = r.get(23)?;
    let mailbox = Mailbox {
        id: MailboxId(r.get(0)?),
        user: r.get(1)?,
        um_enabled: r.get(2)?,
        extension: r.get(3)?,
        email: r.get(4)?,
        policy_name: r.get(5)?,
        policy: PinPolicy {
            min_pin_length: r.get(6)?,
            pin_lifetime_days: r.get(7)?,
            pin_history_count: r.get(8)?,
            allow_common_patterns: r.get(9)?,
            logon_failures_before_pin_reset: r.get(10)?,
            max_logon_attempts: r.get(11)?,
            reset_pin_text: r.get(12)?,
        },
        pin_set: pin_hash.is_some(),
        pin_set_at: r.get(14)?,
        pin_must_change: r.get(15)?,
        failed_logon_count: r.get(16)?,
        locked_out: r.get(17)?,
        oof_status: r.get(18)?,
        missed_call_notification_enabled: r.get(19)?,
        play_on_phone_dial_string: r.get(20)?,
        telephone_access_folder_email: r.get(21)?,
        telephone_access_numbers: r.get(22)?,
        stamp: CredentialStamp::of(&password_hash),
    };
    Ok(MailboxRow {
        mailbox,
        password_hash,
        pin_hash,
    })
}

fn row_by_user(conn: &Connection, user: &str) -> Result<Option<MailboxRow>, StoreError> {
    Ok(conn
        .prepare_cached(select_mailbox!("WHERE m.user_key = ?1"))?
        .query_row([normalize_user(user)], read_row)
        .optional()?)
}

fn row_by_id(conn: &Connection, id: MailboxId) -> Result<Option<MailboxRow>, StoreError> {
    Ok(conn
        .prepare_cached(select_mailbox!("WHERE m.id = ?1"))?
        .query_row([id.0], read_row)
        .optional()?)
}

/// What a new PIN is generated against; if it changes between the unlocked preparation and the
/// write transaction of a reset, the reset starts over.
#[derive(PartialEq, Eq)]
struct PinState {
    um_enabled: bool,
    policy: PinPolicy,
    extension: Option<String>,
    pin_hash: Option<String>,
    pin_set_at: Option<i64>,
    /// The newest `pin_history_count` history hashes, newest first.
    history: Vec<String>,
}

fn pin_state(conn: &Connection, id: MailboxId) -> Result<(MailboxRow, PinState), StoreError> {
    let row = row_by_id(conn, id)?.ok_or(StoreError::UnknownMailbox(id))?;
    let history = conn
        .prepare_cached(
            "SELECT pin_hash FROM pin_history WHERE mailbox_id = ?1 ORDER BY seq DESC LIMIT ?2",
        )?
        .query_map(params![id.0, row.mailbox.policy.pin_history_count], |r| {
            r.get(0)
        })?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let state = PinState {
        um_enabled: row.mailbox.um_enabled,
        policy: row.mailbox.policy.clone(),
        extension: row.mailbox.extension.clone(),
        pin_hash: row.pin_hash.clone(),
        pin_set_at: row.mailbox.pin_set_at,
        history,
    };
    Ok((row, state))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
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

const NEVER_POLLED: u64 = u64::MAX;

/// Nanoseconds from `epoch` to `now` (0 when `now` is earlier).
fn nanos_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX - 1)
}

/// The connection that answers [`Store::data_version`] (it never writes, so its
/// `PRAGMA data_version` changes exactly when another connection commits), with what it last
/// saw.
#[derive(Default)]
struct Watcher {
    conn: Option<Connection>,
    last: Option<u64>,
}

/// A test hook called by every PIN reset and change once its slow hashing is done, while it
/// holds only the lock of its own mailbox; see [`Store::with_pin_work_hook`].
pub type PinWorkHook = Arc<dyn Fn(MailboxId) + Send + Sync>;

/// A connection borrowed from the pool; given back on drop (an open transaction on it has been
/// rolled back by then, since transactions borrow it).
struct PooledConnection<'a> {
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

fn open_connection(
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

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    if found == supported {
        return Ok(());
    }
    for sql in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.execute_batch(sql)?;
    }
    if found > 0 && found < SPOOL_VERSION {
        rekey_users(&tx)?;
    }
    tx.pragma_update(None, "user_version", supported)?;
    tx.commit()?;
    tracing::info!(from = found, to = supported, "migrated database schema");
    if found > 0 && found < SPOOL_VERSION {
        // An older version kept delivered PIN mails in the database until their pages were
        // reused: rebuild the file from its live rows (once) and empty the WAL, so that no
        // delivered PIN of that time stays behind. (Mails still queued then stay in their rows
        // until delivered; see `OutboxMail` for such legacy rows.)
        conn.execute_batch("VACUUM")?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    Ok(())
}

/// Recomputes every `user_key` with [`normalize_user`] (NFC + case fold; before version 3 it
/// was case fold only), and puts the names in NFC. Where two mailboxes now share a key (an NFC
/// and an NFD spelling of one name), the first to hold it (by its old key, else by id) keeps
/// it, and the other keeps its old key, which no logon can produce any more; that is logged.
fn rekey_users(tx: &Connection) -> Result<(), StoreError> {
    let users = tx
        .prepare("SELECT id, user_name, user_key FROM mailboxes ORDER BY id")?
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (id, name, old_key) in users {
        let key = normalize_user(&name);
        if key == old_key {
            continue;
        }
        let taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM mailboxes WHERE user_key = ?1)",
            [key.as_ref()],
            |r| r.get(0),
        )?;
        if taken {
            tracing::warn!(mailbox = id, user = %name, "user name is another mailbox's after Unicode normalization; this mailbox cannot log on");
            continue;
        }
        tx.execute(
            "UPDATE mailboxes SET user_key = ?2, user_name = ?3 WHERE id = ?1",
            params![id, key, display_user(&name)],
        )?;
    }
    Ok(())
}

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
        let store = Self::open(data_dir)?;
        super::private::private_tree(data_dir)?;
        Ok(store)
    }

    /// Limits the resets that this handle makes for [`ResetReason::Requested`] (the ResetPIN
    /// operation) per mailbox: a reset beyond `limit` within its window is refused with
    /// [`ResetPinError::TooManyResets`], before any argon2 work. The count is kept in the
    /// database and checked in the reset's write transaction, so it holds across concurrent
    /// requests and processes. Without this (the default, for tools and tests) resets are not
    /// limited and not counted; automatic resets ([`ResetReason::TooManyFailures`]) never are.
    pub fn with_reset_limit(mut self, limit: Option<ResetLimit>) -> Store {
        self.reset_limit = limit;
        self
    }

    /// Removes the spool files that no outbox row names: mails delivered just before a crash
    /// (the row deleted, the file not yet) or whose file could not be unlinked then, and mails
    /// whose transaction never committed. Runs under SQLite's write lock, so no transaction is
    /// between creating its file and committing its row (see `super::spool`). Called by
    /// [`open`](Self::open) and by the outbox's background delivery when the outbox is empty;
    /// an empty spool costs one directory read.
    pub fn sweep_spool(&self) -> Result<(), StoreError> {
        let spool = &self.shared.spool;
        if spool.keys()?.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut removed = 0u32;
        for key in spool.keys()? {
            let queued: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE key = ?1)",
                [&key],
                |r| r.get(0),
            )?;
            if !queued {
                spool.remove(&key)?;
                removed += 1;
            }
        }
        drop(tx);
        if removed > 0 {
            tracing::info!(
                files = removed,
                "removed spool files of delivered or uncommitted mails"
            );
        }
        Ok(())
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

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    fn conn(&self) -> Result<PooledConnection<'_>, StoreError> {
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

    /// Adds a mailbox with the default policy and no PIN. Refuses a user name that exists
    /// already (compared case-insensitively) with [`StoreError::DuplicateUser`].
    pub fn add_mailbox(&self, mut new: NewMailbox) -> Result<MailboxId, StoreError> {
        new.user = display_user(&new.user).into_owned();
        validate_user(&new.user)?;
        if let Some(ext) = &new.extension {
            validate_extension(ext)?;
        }
        if let Some(email) = &new.email {
            if email.len() > 320
                || !email.contains('@')
                || email.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(StoreError::InvalidInput {
                    field: "email address",
                    reason: "must look like local@domain",
                });
            }
        }
        if new.password.is_empty() {
            return Err(StoreError::InvalidInput {
                field: "password",
                reason: "empty",
            });
        }
        let password_hash = hash_secret(self.cost, new.password.as_bytes())?;
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let duplicate = || StoreError::DuplicateUser {
            user: new.user.clone(),
        };
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM mailboxes WHERE user_key = ?1)",
            [normalize_user(&new.user)],
            |r| r.get(0),
        )?;
        if exists {
            return Err(duplicate());
        }
        let policy_id: i64 = tx
            .query_row(
                "SELECT id FROM policies WHERE name = ?1",
                [DEFAULT_POLICY_NAME],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownPolicy {
                name: DEFAULT_POLICY_NAME.to_string(),
            })?;
        tx.execute(
            "INSERT INTO mailboxes (user_key, user_name, password_hash, um_enabled, extension,
                email, policy_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                normalize_user(&new.user),
                new.user,
                password_hash,
                new.um_enabled,
                new.extension,
                new.email,
                policy_id
            ],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                duplicate()
            } else {
                e.into()
            }
        })?;
        let id = MailboxId(tx.last_insert_rowid());
        tx.commit()?;
        tracing::info!(mailbox = %id, user = %new.user, "mailbox added");
        Ok(id)
    }

    /// Checks a user's password. `Ok(None)` for a wrong password and for an unknown user; the
    /// latter still spends one hash verification, so timing does not tell them apart.
    ///
    /// This is slow on purpose (one argon2 verification); see `crate::auth` for the cache that
    /// keeps it off the per-request path.
    pub fn verify_password(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<Mailbox>, StoreError> {
        let row = row_by_user(&*self.conn()?, user)?;
        match row {
            Some(row) => {
                Ok(verify_secret(&row.password_hash, password.as_bytes())?.then_some(row.mailbox))
            }
            None => {
                self.verify_dummy(password.as_bytes())?;
                Ok(None)
            }
        }
    }

    /// Replaces a mailbox's password.
    pub fn set_password(&self, id: MailboxId, password: &str) -> Result<(), StoreError> {
        if password.is_empty() {
            return Err(StoreError::InvalidInput {
                field: "password",
                reason: "empty",
            });
        }
        let hash = hash_secret(self.cost, password.as_bytes())?;
        self.update(
            id,
            "UPDATE mailboxes SET password_hash = ?2 WHERE id = ?1",
            hash,
        )
    }

    /// The mailbox of `user` (case-insensitive), if any.
    pub fn mailbox(&self, user: &str) -> Result<Option<Mailbox>, StoreError> {
        Ok(row_by_user(&*self.conn()?, user)?.map(|r| r.mailbox))
    }

    /// The mailbox with this id, if any.
    pub fn mailbox_by_id(&self, id: MailboxId) -> Result<Option<Mailbox>, StoreError> {
        Ok(row_by_id(&*self.conn()?, id)?.map(|r| r.mailbox))
    }

    /// All mailboxes, ordered by id.
    pub fn mailboxes(&self) -> Result<Vec<Mailbox>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(select_mailbox!("ORDER BY m.id"))?;
        let rows = stmt
            .query_map([], |r| read_row(r).map(|row| row.mailbox))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Runs an `UPDATE ... WHERE id = ?1` with `value` as `?2`; no row is
    /// [`StoreError::UnknownMailbox`].
    fn update(
        &self,
        id: MailboxId,
        sql: &str,
        value: impl rusqlite::ToSql,
    ) -> Result<(), StoreError> {
        let changed = self
            .conn()?
            .prepare_cached(sql)?
            .execute(params![id.0, value])?;
        if changed == 0 {
            return Err(StoreError::UnknownMailbox(id));
        }
        Ok(())
    }

    /// Sets the Out of Office status (`SetOofStatus`).
    pub fn set_oof_status(&self, id: MailboxId, status: bool) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET oof_status = ?2 WHERE id = ?1",
            status,
        )
    }

    /// Turns missed-call notifications on or off (`SetMissedCallNotificationEnabled`).
    pub fn set_missed_call_notification_enabled(
        &self,
        id: MailboxId,
        enabled: bool,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET missed_call_notification_enabled = ?2 WHERE id = ?1",
            enabled,
        )
    }

    /// Sets or clears the default Play on Phone dial string (`SetPlayOnPhoneDialString`).
    pub fn set_play_on_phone_dial_string(
        &self,
        id: MailboxId,
        dial_string: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET play_on_phone_dial_string = ?2 WHERE id = ?1",
            dial_string,
        )
    }

    /// Sets or clears the telephone access folder, a base64 folder id
    /// (`SetTelephoneAccessFolderEmail`).
    pub fn set_telephone_access_folder_email(
        &self,
        id: MailboxId,
        base64_folder_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET telephone_access_folder_email = ?2 WHERE id = ?1",
            base64_folder_id,
        )
    }

    /// Sets or clears the voice mail access numbers shown to the user (several joined by ", ").
    pub fn set_telephone_access_numbers(
        &self,
        id: MailboxId,
        numbers: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET telephone_access_numbers = ?2 WHERE id = ?1",
            numbers,
        )
    }

    /// The PIN policy named `name` (case-insensitive), if any.
    pub fn policy(&self, name: &str) -> Result<Option<PinPolicy>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT min_pin_length, pin_lifetime_days, pin_history_count, allow_common_patterns,
                logon_failures_before_pin_reset, max_logon_attempts, reset_pin_text
             FROM policies WHERE name = ?1",
        )?;
        Ok(stmt
            .query_row([name], |r| {
                Ok(PinPolicy {
                    min_pin_length: r.get(0)?,
                    pin_lifetime_days: r.get(1)?,
                    pin_history_count: r.get(2)?,
                    allow_common_patterns: r.get(3)?,
                    logon_failures_before_pin_reset: r.get(4)?,
                    max_logon_attempts: r.get(5)?,
                    reset_pin_text: r.get(6)?,
                })
            })
            .optional()?)
    }

    /// Creates or replaces the PIN policy named `name` after [validating](PinPolicy::validate)
    /// it. Use [`DEFAULT_POLICY_NAME`] to change the policy of every mailbox that has no other.
    pub fn set_policy(&self, name: &str, policy: &PinPolicy) -> Result<(), StoreError> {
        policy.validate()?;
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(StoreError::InvalidInput {
                field: "policy name",
                reason: "empty or contains a control character",
            });
        }
        self.conn()?
            .prepare_cached(
                "INSERT INTO policies (name, min_pin_length, pin_lifetime_days, pin_history_count,
                allow_common_patterns, logon_failures_before_pin_reset, max_logon_attempts,
                reset_pin_text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (name) DO UPDATE SET min_pin_length = ?2, pin_lifetime_days = ?3,
                pin_history_count = ?4, allow_common_patterns = ?5,
                logon_failures_before_pin_reset = ?6, max_logon_attempts = ?7,
                reset_pin_text = ?8",
            )?
            .execute(params![
                name,
                policy.min_pin_length,
                policy.pin_lifetime_days,
                policy.pin_history_count,
                policy.allow_common_patterns,
                policy.logon_failures_before_pin_reset,
                policy.max_logon_attempts,
                policy.reset_pin_text
            ])?;
        Ok(())
    }

    /// Resets the PIN of mailbox `id` to a new random one (like
    /// [`reset_pin_queued`](Self::reset_pin_queued) with [`ResetReason::Requested`]) without
    /// mailing it, and returns it. For tools and tests; the ResetPIN operation must use
    /// `reset_pin_queued` so that the PIN and its mail commit together.
    pub fn reset_pin<R>(
        &self,
        id: MailboxId,
        rng: &mut R,
    ) -> Result<String, ResetPinError<std::convert::Infallible>>
    where
        R: CryptoRng + RngCore + ?Sized,
    {
        self.reset_pin_inner(id, rng, ResetReason::Requested, |_, outcome| {
            Ok(outcome.pin.clone())
        })
    }

    /// The ResetPIN step: gives mailbox `id` a new random PIN and queues the mail announcing it
    /// in the outbox, all-or-nothing.
    ///
    /// 1. Take the lock of this mailbox: an in-process lock per mailbox, so that concurrent
    ///    resets and changes of one mailbox run one after the other, while those of other
    ///    mailboxes proceed in parallel (nothing below holds a lock shared between mailboxes,
    ///    except SQLite's write lock during step 3).
    /// 2. Read the policy, extension, current PIN hash and the newest `PINHistoryCount` history
    ///    hashes; generate a PIN from `rng` by the policy, refusing any candidate that verifies
    ///    against one of those hashes (up to 1 + `PINHistoryCount` argon2 verifications per
    ///    candidate); hash it.
    /// 3. In one `BEGIN IMMEDIATE` transaction: re-read that state; if it changed meanwhile (a
    ///    change by another process, or a policy change), roll back and start over (at most
    ///    three times, then [`StoreError::Conflict`]). Otherwise push the old PIN hash into the
    ///    history and trim it to `PINHistoryCount` entries, store the new hash, set `pin_set_at`
    ///    to now and `pin_must_change`; for [`ResetReason::Requested`] clear the failed logon
    ///    count and the lockout. Then call `render(&outcome, key)` with a fresh idempotency key
    ///    (to be used in the Message-ID) and insert the mail it returns into the outbox.
    /// 4. Commit.
    ///
    /// So the new PIN and the mail announcing it become durable together, or neither does (a
    /// crash before the commit, any error, a failing `render`: the old PIN stays valid and
    /// nothing is queued). `render` runs inside the write transaction and must not do I/O.
    /// The returned mail is to be delivered by `crate::mail::outbox`; if that does not happen
    /// (crash, delivery failure) it stays queued and is delivered later.
    pub fn reset_pin_queued<R, E, F>(
        &self,
        id: MailboxId,
        rng: &mut R,
        reason: ResetReason,
        render: F,
    ) -> Result<OutboxMail, ResetPinError<E>>
    where
        R: CryptoRng + RngCore + ?Sized,
        E: std::error::Error + 'static,
        F: FnOnce(&ResetPinOutcome, &str) -> Result<OutgoingMail, E>,
    {
        let mut spooled = None;
        let result = self.reset_pin_inner(id, rng, reason, |tx, outcome| {
            let key = uuid::Uuid::new_v4().simple().to_string();
            let mail = render(outcome, &key).map_err(|e| {
                tracing::warn!(mailbox = %id, "PIN reset rolled back: the mail could not be built");
                ResetPinError::Delivery(e)
            })?;
            let created_at = outcome.pin_set_at;
            // The message goes into its spool file, flushed before the row commits; the row
            // keeps an empty `message` (see `super::spool` for why the PIN stays out of the
            // database).
            self.shared.spool.write(&key, &mail.message)?;
            spooled = Some(key.clone());
            let row_id: i64 = tx
                .prepare_cached(
                    "INSERT INTO outbox (key, mailbox_id, user_name, recipient, message,
                        created_at) VALUES (?1, ?2, ?3, ?4, x'', ?5) RETURNING id",
                )?
                .query_row(
                    params![key, id.0, outcome.user, mail.recipient, created_at],
                    |r| r.get(0),
                )?;
            Ok(OutboxMail {
                id: row_id,
                key,
                mailbox_id: id,
                user: outcome.user.clone(),
                recipient: mail.recipient,
                message: mail.message,
                created_at,
                attempts: 0,
            })
        });
        if let (Err(_), Some(key)) = (&result, spooled) {
            // Rolled back (or the commit failed): the file names no row, unless the commit
            // went through after all.
            if let Err(e) = self.remove_if_unqueued(&key) {
                tracing::warn!(error = %crate::fault::ErrorChain(&e), "cannot remove the spool file of a rolled-back reset; removed at the next start");
            }
        }
        result
    }

    /// Unlinks the spool file of `key` unless an outbox row names it.
    fn remove_if_unqueued(&self, key: &str) -> Result<(), StoreError> {
        let queued: bool = self.conn()?.query_row(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE key = ?1)",
            [key],
            |r| r.get(0),
        )?;
        if !queued {
            self.shared.spool.remove(key)?;
        }
        Ok(())
    }

    /// The lock that serialises PIN changes of mailbox `id` in this process.
    fn mailbox_lock(&self, id: MailboxId) -> Arc<Mutex<()>> {
        let mut locks = self
            .shared
            .pin_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Forget the locks nobody holds or waits for, so the map stays as small as the work in
        // flight.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        Arc::clone(locks.entry(id).or_default())
    }

    /// Tells the test hook (if any) that the slow work of a PIN change of `id` is done.
    fn pin_work_done(&self, id: MailboxId) {
        if let Some(hook) = &self.pin_work_hook {
            hook(id);
        }
    }

    /// Steps 1-4 of [`reset_pin_queued`](Self::reset_pin_queued), with `finish` in place of the
    /// outbox insert.
    fn reset_pin_inner<R, E, T, F>(
        &self,
        id: MailboxId,
        rng: &mut R,
        reason: ResetReason,
        finish: F,
    ) -> Result<T, ResetPinError<E>>
    where
        R: CryptoRng + RngCore + ?Sized,
        E: std::error::Error + 'static,
        F: FnOnce(&Connection, &ResetPinOutcome) -> Result<T, ResetPinError<E>>,
    {
        let lock = self.mailbox_lock(id);
        let _serialised = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = self
            .reset_limit
            .filter(|_| reason == ResetReason::Requested);
        let mut finish = Some(finish);
        for _ in 0..RESET_PIN_ATTEMPTS {
            // Step 2: only this mailbox's lock held. A reset over the limit is refused here,
            // before the argon2 work; the count is checked again in the transaction.
            if let Some(limit) = limit {
                check_reset_limit(&*self.conn()?, id, limit, unix_now())?;
            }
            let (_, before) = pin_state(&*self.conn()?, id)?;
            if !before.um_enabled {
                return Err(ResetPinError::NotUmEnabled);
            }
            let mut hash_error = None;
            let pin = before
                .policy
                .generate_pin(rng, before.extension.as_deref(), |candidate| {
                    let mut used = before.pin_hash.iter().chain(&before.history);
                    used.any(|h| match verify_secret(h, candidate.as_bytes()) {
                        Ok(matched) => matched,
                        Err(e) => {
                            hash_error.get_or_insert(e);
                            true
                        }
                    })
                });
            if let Some(e) = hash_error {
                return Err(e.into());
            }
            let pin = pin.map_err(ResetPinError::Generate)?;
            let new_hash = hash_secret(self.cost, pin.as_bytes())?;
            self.pin_work_done(id);

            // Step 3, under the database write lock.
            let mut conn = self.conn()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (row, now_state) = pin_state(&tx, id)?;
            if now_state != before {
                tracing::debug!(mailbox = %id, "PIN state changed during reset; starting over");
                continue;
            }
            let now = unix_now();
            if let Some(limit) = limit {
                check_reset_limit(&tx, id, limit, now)?;
                let window = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
                tx.prepare_cached("DELETE FROM pin_resets WHERE mailbox_id = ?1 AND at <= ?2")?
                    .execute(params![id.0, now.saturating_sub(window)])?;
                tx.prepare_cached("INSERT INTO pin_resets (mailbox_id, at) VALUES (?1, ?2)")?
                    .execute(params![id.0, now])?;
            }
            replace_pin(&tx, id, &before, &new_hash, now, true)?;
            if reason == ResetReason::Requested {
                tx.execute(
                    "UPDATE mailboxes SET failed_logon_count = 0, locked_out = 0 WHERE id = ?1",
                    [id.0],
                )?;
            }
            let mailbox = row.mailbox;
            let outcome = ResetPinOutcome {
                mailbox_id: id,
                pin,
                user: mailbox.user,
                email: mailbox.email,
                extension: mailbox.extension,
                reset_pin_text: mailbox.policy.reset_pin_text,
                telephone_access_numbers: mailbox.telephone_access_numbers,
                pin_set_at: now,
            };
            // Invariant: every earlier iteration that reaches this point returns.
            let finish = finish.take().expect("finish is called at most once");
            let result = finish(&tx, &outcome)?;
            // Step 4.
            tx.commit()?;
            tracing::info!(mailbox = %id, ?reason, "PIN reset");
            return Ok(result);
        }
        Err(StoreError::Conflict.into())
    }

    /// Changes the PIN of `user` from `old` to `new`, as the telephone user interface does
    /// after a logon: `old` must be accepted as by [`check_pin`](Self::check_pin) (an expired
    /// or must-change PIN is accepted here; a wrong one counts as a failed logon and is
    /// [`ChangePinError::OldPinRefused`]), and `new` must satisfy the mailbox's policy
    /// (digits, `MinPINLength` to 24 digits, `AllowCommonPatterns`, the extension rule, and not
    /// the current PIN nor one of the last `PINHistoryCount`), else
    /// [`ChangePinError::Rejected`] names the rule.
    ///
    /// On success the old hash goes into the history, `pin_set_at` is now, the must-change
    /// mark and the failed logon count are cleared. Serialised with the other PIN changes of
    /// the mailbox like [`reset_pin_queued`](Self::reset_pin_queued); nothing is mailed.
    pub fn change_pin(&self, user: &str, old: &str, new: &str) -> Result<(), ChangePinError> {
        let Some(first) = row_by_user(&*self.conn()?, user)? else {
            self.verify_dummy(old.as_bytes())?;
            return Err(ChangePinError::OldPinRefused(PinCheck::UnknownUser));
        };
        let id = first.mailbox.id;
        let lock = self.mailbox_lock(id);
        let _serialised = lock.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..RESET_PIN_ATTEMPTS {
            let conn = self.conn()?;
            let (row, before) = pin_state(&conn, id)?;
            drop(conn);
            match self.logon(&row, old)? {
                PinCheck::Ok | PinCheck::OkMustChange | PinCheck::Expired => {}
                refused => return Err(ChangePinError::OldPinRefused(refused)),
            }
            let policy = &before.policy;
            policy
                .check_pin(new, before.extension.as_deref())
                .map_err(|source| ChangePinError::Rejected { source })?;
            for hash in before.pin_hash.iter().chain(&before.history) {
                if verify_secret(hash, new.as_bytes())? {
                    return Err(ChangePinError::Rejected {
                        source: PinRejected::InHistory {
                            count: policy.pin_history_count,
                        },
                    });
                }
            }
            let new_hash = hash_secret(self.cost, new.as_bytes())?;
            self.pin_work_done(id);

            let mut conn = self.conn()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (_, now_state) = pin_state(&tx, id)?;
            if now_state != before {
                tracing::debug!(mailbox = %id, "PIN state changed during change; starting over");
                continue;
            }
            replace_pin(&tx, id, &before, &new_hash, unix_now(), false)?;
            tx.execute(
                "UPDATE mailboxes SET failed_logon_count = 0 WHERE id = ?1",
                [id.0],
            )?;
            tx.commit()?;
            tracing::info!(mailbox = %id, "PIN changed");
            return Ok(());
        }
        Err(StoreError::Conflict.into())
    }

    /// Lifts the lockout of mailbox `id` and clears its failed logon count (the administrator's
    /// unlock). The PIN is not changed.
    pub fn unlock(&self, id: MailboxId) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET locked_out = 0, failed_logon_count = ?2 WHERE id = ?1",
            0,
        )?;
        tracing::info!(mailbox = %id, "mailbox unlocked");
        Ok(())
    }

    /// Checks a PIN entered at a phone logon and updates the failed logon count: cleared on
    /// success, incremented on failure, with a lockout once it reaches `MaxLogonAttempts`.
    ///
    /// A locked-out mailbox is answered [`PinCheck::LockedOut`] without looking at the PIN. An
    /// unknown user costs one dummy hash verification, like a known one. The automatic reset
    /// at every `LogonFailuresBeforePINReset` failures is left to the caller, signalled by
    /// `PinCheck::Wrong { reset_due: true, .. }`.
    pub fn check_pin(&self, user: &str, pin: &str) -> Result<PinCheck, StoreError> {
        let row = row_by_user(&*self.conn()?, user)?;
        let Some(row) = row else {
            self.verify_dummy(pin.as_bytes())?;
            return Ok(PinCheck::UnknownUser);
        };
        self.logon(&row, pin)
    }

    /// [`check_pin`](Self::check_pin) for a mailbox already read.
    fn logon(&self, row: &MailboxRow, pin: &str) -> Result<PinCheck, StoreError> {
        let mailbox = &row.mailbox;
        if !mailbox.um_enabled {
            return Ok(PinCheck::NotUmEnabled);
        }
        if mailbox.locked_out {
            return Ok(PinCheck::LockedOut);
        }
        let Some(pin_hash) = &row.pin_hash else {
            return Ok(PinCheck::NoPin);
        };
        let policy = &mailbox.policy;
        if verify_secret(pin_hash, pin.as_bytes())? {
            // Cleared only if the mailbox was not locked out meanwhile.
            let locked_out: Option<bool> = self
                .conn()?
                .prepare_cached(
                    "UPDATE mailboxes SET failed_logon_count = 0
                     WHERE id = ?1 AND locked_out = 0 RETURNING locked_out",
                )?
                .query_row([mailbox.id.0], |r| r.get(0))
                .optional()?;
            if locked_out.is_none() {
                return Ok(PinCheck::LockedOut);
            }
            let expired = match (policy.pin_lifetime_days, mailbox.pin_set_at) {
                (Some(days), Some(set_at)) => {
                    unix_now() >= set_at.saturating_add(i64::from(days) * 86_400)
                }
                _ => false,
            };
            return Ok(if expired {
                PinCheck::Expired
            } else if mailbox.pin_must_change {
                PinCheck::OkMustChange
            } else {
                PinCheck::Ok
            });
        }
        let (failures, locked_out): (u32, bool) = self
            .conn()?
            .prepare_cached(
                "UPDATE mailboxes SET failed_logon_count = failed_logon_count + 1,
                    locked_out = CASE WHEN ?2 IS NOT NULL AND failed_logon_count + 1 >= ?2
                                      THEN 1 ELSE locked_out END
                 WHERE id = ?1 RETURNING failed_logon_count, locked_out",
            )?
            .query_row(params![mailbox.id.0, policy.max_logon_attempts], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        tracing::info!(mailbox = %mailbox.id, failures, locked_out, "wrong PIN");
        if locked_out {
            return Ok(PinCheck::LockedOut);
        }
        Ok(PinCheck::Wrong {
            failures,
            reset_due: policy
                .logon_failures_before_pin_reset
                .is_some_and(|n| n > 0 && failures % n == 0),
        })
    }

    /// Lines `pins` (oldest first) up with the PIN record of mailbox `id`: its history, oldest
    /// first, then its current PIN. Reads only; costs up to one argon2 verification per record
    /// entry and PIN. For audits and tests ("is every PIN that was mailed in the record, in
    /// order?"); keep `PINHistoryCount` in mind, older PINs are forgotten.
    pub fn match_pin_record(
        &self,
        id: MailboxId,
        pins: &[&str],
    ) -> Result<PinRecordMatch, StoreError> {
        let conn = self.conn()?;
        let row = row_by_id(&conn, id)?.ok_or(StoreError::UnknownMailbox(id))?;
        let mut record = conn
            .prepare_cached("SELECT pin_hash FROM pin_history WHERE mailbox_id = ?1 ORDER BY seq")?
            .query_map([id.0], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        drop(conn);
        record.extend(row.pin_hash);
        let mut next = 0;
        let mut positions = Vec::with_capacity(pins.len());
        for pin in pins {
            let mut found = None;
            for (i, hash) in record.iter().enumerate().skip(next) {
                if verify_secret(hash, pin.as_bytes())? {
                    found = Some(i);
                    next = i + 1;
                    break;
                }
            }
            positions.push(found);
        }
        Ok(PinRecordMatch {
            record_len: record.len(),
            positions,
        })
    }

    /// How many times the PIN of mailbox `id` was set (resets and changes), ever: history
    /// entries are numbered on and only the oldest are trimmed, so the newest number survives.
    pub fn pin_changes(&self, id: MailboxId) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let row = row_by_id(&conn, id)?.ok_or(StoreError::UnknownMailbox(id))?;
        let newest: u64 = conn
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM pin_history WHERE mailbox_id = ?1")?
            .query_row([id.0], |r| r.get(0))?;
        Ok(newest + u64::from(row.pin_hash.is_some()))
    }

    /// Up to `limit` mails of the outbox with a row id above `after` (0: from the start),
    /// oldest first.
    pub fn outbox_pending(&self, after: i64, limit: u32) -> Result<Vec<OutboxMail>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, key, mailbox_id, user_name, recipient, message, created_at, attempts
             FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![after, limit], |r| {
                Ok(OutboxMail {
                    id: r.get(0)?,
                    key: r.get(1)?,
                    mailbox_id: MailboxId(r.get(2)?),
                    user: r.get(3)?,
                    recipient: r.get(4)?,
                    message: r.get(5)?,
                    created_at: r.get(6)?,
                    attempts: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(stmt);
        drop(conn);
        let mut mails = Vec::with_capacity(rows.len());
        for mut mail in rows {
            // A row of an older version holds its message; since version 3 it is spooled.
            if !mail.message.is_empty() {
                mails.push(mail);
                continue;
            }
            match self.shared.spool.read(&mail.key)? {
                Some(message) => {
                    mail.message = message;
                    mails.push(mail);
                }
                None => self.spool_file_missing(&mail)?,
            }
        }
        Ok(mails)
    }

    /// A queued row whose spool file is gone: delivered meanwhile by another process (which
    /// deletes the row before the file), or lost. A lost one is logged and its row removed,
    /// so that it does not block the outbox for ever.
    fn spool_file_missing(&self, mail: &OutboxMail) -> Result<(), StoreError> {
        let removed = self
            .conn()?
            .prepare_cached("DELETE FROM outbox WHERE id = ?1")?
            .execute([mail.id])?;
        if removed > 0 {
            tracing::error!(mailbox = %mail.mailbox_id, key = %mail.key, "queued PIN mail lost: its spool file is missing; the user must reset the PIN again");
        }
        Ok(())
    }

    /// How many mails the outbox holds.
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn()?
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?)
    }

    /// Removes a delivered mail from the outbox, then unlinks its spool file, so that nothing
    /// of it (nor its PIN) stays in the data directory outside the Maildir; false when it was
    /// gone already (delivered by someone else). A crash between the two leaves a file without
    /// a row, removed at the next [`open`](Self::open).
    pub fn outbox_remove(&self, id: i64) -> Result<bool, StoreError> {
        let key: Option<String> = self
            .conn()?
            .prepare_cached("DELETE FROM outbox WHERE id = ?1 RETURNING key")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        match key {
            Some(key) => {
                self.shared.spool.remove(&key)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Records a failed delivery attempt of an outbox mail.
    pub fn outbox_record_failure(&self, id: i64) -> Result<(), StoreError> {
        self.conn()?
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?2 WHERE id = ?1",
            )?
            .execute(params![id, unix_now()])?;
        Ok(())
    }

    /// All PIN policies, by name.
    pub fn policies(&self) -> Result<Vec<(String, PinPolicy)>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT name, min_pin_length, pin_lifetime_days, pin_history_count,
                allow_common_patterns, logon_failures_before_pin_reset, max_logon_attempts,
                reset_pin_text
             FROM policies ORDER BY name",
        )?;
        let policies = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    PinPolicy {
                        min_pin_length: r.get(1)?,
                        pin_lifetime_days: r.get(2)?,
                        pin_history_count: r.get(3)?,
                        allow_common_patterns: r.get(4)?,
                        logon_failures_before_pin_reset: r.get(5)?,
                        max_logon_attempts: r.get(6)?,
                        reset_pin_text: r.get(7)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(policies)
    }

    /// Assigns the policy named `policy` (case-insensitive) to mailbox `id`. It applies from the
    /// next PIN reset, change or logon on.
    pub fn set_mailbox_policy(&self, id: MailboxId, policy: &str) -> Result<(), StoreError> {
        let policy_id: i64 = self
            .conn()?
            .prepare_cached("SELECT id FROM policies WHERE name = ?1")?
            .query_row([policy], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::UnknownPolicy {
                name: policy.to_string(),
            })?;
        self.update(
            id,
            "UPDATE mailboxes SET policy_id = ?2 WHERE id = ?1",
            policy_id,
        )
    }
}

/// Refuses a reset of mailbox `id` at `now` when it had `limit.max` counted resets within the
/// window already.
fn check_reset_limit<E: std::error::Error + 'static>(
    conn: &Connection,
    id: MailboxId,
    limit: ResetLimit,
    now: i64,
) -> Result<(), ResetPinError<E>> {
    let window = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
    let since = now.saturating_sub(window);
    let (count, oldest): (u32, Option<i64>) = conn
        .prepare_cached(
            "SELECT COUNT(*), MIN(at) FROM pin_resets WHERE mailbox_id = ?1 AND at > ?2",
        )?
        .query_row(params![id.0, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if count >= limit.max {
        let wait = oldest.map_or(window, |oldest| {
            oldest.saturating_add(window).saturating_sub(now).max(1)
        });
        tracing::info!(mailbox = %id, count, "PIN reset refused: rate limit");
        return Err(ResetPinError::TooManyResets {
            limit,
            retry_after: Duration::from_secs(u64::try_from(wait).unwrap_or(1)),
        });
    }
    Ok(())
}

/// Replaces the PIN hash of mailbox `id` inside a write transaction: pushes the old hash (of
/// `before`) into the history, trims the history to `PINHistoryCount`, and stores `new_hash`
/// set at `now` with the must-change mark `must_change`.
fn replace_pin(
    tx: &Connection,
    id: MailboxId,
    before: &PinState,
    new_hash: &str,
    now: i64,
    must_change: bool,
) -> Result<(), StoreError> {
    if let Some(old) = &before.pin_hash {
        tx.execute(
            "INSERT INTO pin_history (mailbox_id, seq, pin_hash, set_at)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM pin_history
                          WHERE mailbox_id = ?1), ?2, ?3)",
            params![id.0, old, before.pin_set_at.unwrap_or(now)],
        )?;
        tx.execute(
            "DELETE FROM pin_history WHERE mailbox_id = ?1 AND seq NOT IN
                (SELECT seq FROM pin_history WHERE mailbox_id = ?1
                 ORDER BY seq DESC LIMIT ?2)",
            params![id.0, before.policy.pin_history_count],
        )?;
    }
    tx.execute(
        "UPDATE mailboxes SET pin_hash = ?2, pin_set_at = ?3, pin_must_change = ?4 WHERE id = ?1",
        params![id.0, new_hash, now, must_change],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ResetLimit;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path())
            .unwrap()
            .with_hash_cost(HashCost::Test);
        (dir, store)
    }

    fn alice() -> NewMailbox {
        NewMailbox {
            user: "Alice".into(),
            password: "correct horse".into(),
            um_enabled: true,
            extension: Some("36697".into()),
            email: Some("alice@example.org".into()),
        }
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(99)
    }

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

    fn history_len(store: &Store, id: MailboxId) -> i64 {
        store
            .conn()
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM pin_history WHERE mailbox_id = ?1",
                [id.0],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[derive(Debug, thiserror::Error)]
    #[error("mail down")]
    struct MailDown;

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

    #[test]
    fn schema_is_versioned_and_wal() {
        let (dir, store) = store();
        let conn = store.conn().unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        drop(store);
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }

    #[test]
    fn reopen_keeps_data() {
        let (dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        store.set_oof_status(id, true).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let m = store.mailbox("alice").unwrap().unwrap();
        assert_eq!(m.id, id);
        assert!(m.oof_status);
        assert_eq!(m.policy, PinPolicy::default());
        assert_eq!(m.policy_name, DEFAULT_POLICY_NAME);
    }

    #[test]
    fn add_mailbox_refuses_duplicates_case_insensitively() {
        let (_dir, store) = store();
        store.add_mailbox(alice()).unwrap();
        let mut dup = alice();
        dup.user = "ALICE".into();
        assert!(matches!(
            store.add_mailbox(dup),
            Err(StoreError::DuplicateUser { .. })
        ));
        let mut bad = alice();
        bad.user = "bob".into();
        bad.extension = Some("12a".into());
        assert!(matches!(
            store.add_mailbox(bad),
            Err(StoreError::InvalidInput {
                field: "extension",
                ..
            })
        ));
    }

    #[test]
    fn new_mailbox_defaults() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        let m = store.mailbox_by_id(id).unwrap().unwrap();
        assert_eq!(m.user, "Alice");
        assert!(m.um_enabled && !m.pin_set && !m.oof_status && !m.locked_out);
        assert!(m.missed_call_notification_enabled);
        assert_eq!(m.failed_logon_count, 0);
        assert_eq!(m.pin_set_at, None);
        assert_eq!(m.extension.as_deref(), Some("36697"));
        assert_eq!(store.mailbox("nobody").unwrap(), None);
        assert_eq!(store.mailboxes().unwrap(), vec![m]);
    }

    #[test]
    fn verify_password_checks_hash() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        let m = store
            .verify_password("aLiCe", "correct horse")
            .unwrap()
            .unwrap();
        assert_eq!(m.id, id);
        assert_eq!(store.verify_password("alice", "wrong").unwrap(), None);
        assert_eq!(
            store.verify_password("nobody", "correct horse").unwrap(),
            None
        );
        let hash: String = store
            .conn()
            .unwrap()
            .query_row("SELECT password_hash FROM mailboxes", [], |r| r.get(0))
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct horse"));

        let before = m.credential_stamp();
        store.set_password(id, "battery staple").unwrap();
        assert_eq!(
            store.verify_password("alice", "correct horse").unwrap(),
            None
        );
        assert!(store
            .verify_password("alice", "battery staple")
            .unwrap()
            .is_some());
        assert_ne!(
            store.mailbox("alice").unwrap().unwrap().credential_stamp(),
            before
        );
    }

    #[test]
    fn settings_round_trip() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        store.set_oof_status(id, true).unwrap();
        store
            .set_missed_call_notification_enabled(id, false)
            .unwrap();
        store
            .set_play_on_phone_dial_string(id, Some("4255550123"))
            .unwrap();
        store
            .set_telephone_access_folder_email(id, Some("AAAAAA=="))
            .unwrap();
        store
            .set_telephone_access_numbers(id, Some("+1 425 555 0100, 4100"))
            .unwrap();
        let m = store.mailbox_by_id(id).unwrap().unwrap();
        assert!(m.oof_status && !m.missed_call_notification_enabled);
        assert_eq!(m.play_on_phone_dial_string.as_deref(), Some("4255550123"));
        assert_eq!(m.telephone_access_folder_email.as_deref(), Some("AAAAAA=="));
        assert_eq!(
            m.telephone_access_numbers.as_deref(),
            Some("+1 425 555 0100, 4100")
        );
        store.set_play_on_phone_dial_string(id, None).unwrap();
        assert_eq!(
            store
                .mailbox_by_id(id)
                .unwrap()
                .unwrap()
                .play_on_phone_dial_string,
            None
        );
        assert!(matches!(
            store.set_oof_status(MailboxId(999), true),
            Err(StoreError::UnknownMailbox(MailboxId(999)))
        ));
    }

    #[test]
    fn policies_are_validated_and_named() {
        let (_dir, store) = store();
        assert_eq!(store.policy("default").unwrap(), Some(PinPolicy::default()));
        let bad = PinPolicy {
            min_pin_length: 3,
            ..PinPolicy::default()
        };
        assert!(matches!(
            store.set_policy("Default", &bad),
            Err(StoreError::InvalidPolicy(_))
        ));
        let lax = PinPolicy {
            min_pin_length: 4,
            pin_lifetime_days: None,
            reset_pin_text: "Call the help desk.".into(),
            ..PinPolicy::default()
        };
        store.set_policy("Default", &lax).unwrap();
        store.set_policy("Other", &PinPolicy::default()).unwrap();
        assert_eq!(store.policy("Default").unwrap(), Some(lax.clone()));
        let id = store.add_mailbox(alice()).unwrap();
        assert_eq!(store.mailbox_by_id(id).unwrap().unwrap().policy, lax);
        assert_eq!(store.policy("none").unwrap(), None);
    }

    #[test]
    fn reset_pin_sets_a_valid_pin_and_state() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        assert_eq!(store.check_pin("alice", "918273").unwrap(), PinCheck::NoPin);
        let mut seen = None;
        let queued = store
            .reset_pin_queued(id, &mut rng(), ResetReason::Requested, |o, key| {
                seen = Some((o.clone(), key.to_owned()));
                Ok::<_, MailDown>(OutgoingMail {
                    recipient: "alice@example.org".into(),
                    message: format!("PIN {}", o.pin).into_bytes(),
                })
            })
            .unwrap();
        let (outcome, key) = seen.unwrap();
        assert_eq!(queued.key, key);
        assert_eq!(key.len(), 32, "a simple uuid");
        assert_eq!(store.outbox_pending(0, 10).unwrap(), vec![queued.clone()]);
        assert!(!format!("{queued:?}").contains(&outcome.pin));
        assert_eq!(outcome.user, "Alice");
        assert_eq!(outcome.email.as_deref(), Some("alice@example.org"));
        assert_eq!(outcome.extension.as_deref(), Some("36697"));
        PinPolicy::default()
            .check_pin(&outcome.pin, Some("36697"))
            .unwrap();
        let m = store.mailbox_by_id(id).unwrap().unwrap();
        assert!(m.pin_set && m.pin_must_change);
        assert_eq!(m.pin_set_at, Some(outcome.pin_set_at));
        assert_eq!(
            store.check_pin("alice", &outcome.pin).unwrap(),
            PinCheck::OkMustChange
        );
        let stored: String = store
            .conn()
            .unwrap()
            .query_row("SELECT pin_hash FROM mailboxes", [], |r| r.get(0))
            .unwrap();
        assert!(stored.starts_with("$argon2id$") && !stored.contains(&outcome.pin));
    }

    #[test]
    fn failed_delivery_keeps_old_pin() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        let old = store.reset_pin(id, &mut rng()).unwrap();
        for _ in 0..3 {
            assert!(matches!(
                store.check_pin("alice", "000000").unwrap(),
                PinCheck::Wrong { .. }
            ));
        }
        let before = store.mailbox_by_id(id).unwrap().unwrap();
        let mut offered = String::new();
        let err = store
            .reset_pin_queued(id, &mut rng(), ResetReason::Requested, |o, _| {
                offered.clone_from(&o.pin);
                Err::<OutgoingMail, _>(MailDown)
            })
            .unwrap_err();
        assert!(matches!(err, ResetPinError::Delivery(MailDown)));
        assert_eq!(store.mailbox_by_id(id).unwrap().unwrap(), before);
        assert_eq!(history_len(&store, id), 0);
        assert_eq!(store.outbox_len().unwrap(), 0);
        assert!(matches!(
            store.check_pin("alice", &offered).unwrap(),
            PinCheck::Wrong { failures: 4, .. }
        ));
        assert_eq!(
            store.check_pin("alice", &old).unwrap(),
            PinCheck::OkMustChange
        );
    }

    #[test]
    fn reset_pin_refuses_non_um_and_unknown() {
        let (_dir, store) = store();
        let mut new = alice();
        new.um_enabled = false;
        let id = store.add_mailbox(new).unwrap();
        assert!(matches!(
            store.reset_pin(id, &mut rng()),
            Err(ResetPinError::NotUmEnabled)
        ));
        assert!(matches!(
            store.reset_pin(MailboxId(42), &mut rng()),
            Err(ResetPinError::Store(StoreError::UnknownMailbox(_)))
        ));
        assert_eq!(
            store.check_pin("alice", "123456").unwrap(),
            PinCheck::NotUmEnabled
        );
        assert_eq!(
            store.check_pin("bob", "123456").unwrap(),
            PinCheck::UnknownUser
        );
    }

    #[test]
    fn history_is_trimmed_and_never_repeats() {
        let (_dir, store) = store();
        // Four digits with common patterns allowed: small enough that a repeat would show.
        let policy = PinPolicy {
            min_pin_length: 4,
            pin_history_count: 3,
            allow_common_patterns: true,
            ..PinPolicy::default()
        };
        store.set_policy(DEFAULT_POLICY_NAME, &policy).unwrap();
        let mut new = alice();
        new.extension = None;
        let id = store.add_mailbox(new).unwrap();
        let mut rng = rng();
        let mut pins = Vec::new();
        for i in 0..8 {
            let pin = store.reset_pin(id, &mut rng).unwrap();
            assert!(!pins.iter().rev().take(4).any(|p| p == &pin), "repeat");
            pins.push(pin);
            assert_eq!(history_len(&store, id), i64::from(i.min(3)));
            assert_eq!(
                store.pin_changes(id).unwrap(),
                u64::try_from(i).unwrap() + 1
            );
        }
    }

    #[test]
    fn history_check_refuses_recent_pins() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        let pin = store.reset_pin(id, &mut rng()).unwrap();
        // Same seed, same candidate sequence: the first candidate is now the current PIN and
        // must be skipped.
        let next = store.reset_pin(id, &mut rng()).unwrap();
        assert_ne!(pin, next);
        let third = store.reset_pin(id, &mut rng()).unwrap();
        assert_ne!(third, pin);
        assert_ne!(third, next);
    }

    #[test]
    fn wrong_pins_count_up_lock_out_and_reset_clears() {
        let (_dir, store) = store();
        let policy = PinPolicy {
            logon_failures_before_pin_reset: Some(2),
            max_logon_attempts: Some(4),
            ..PinPolicy::default()
        };
        store.set_policy(DEFAULT_POLICY_NAME, &policy).unwrap();
        let id = store.add_mailbox(alice()).unwrap();
        let pin = store.reset_pin(id, &mut rng()).unwrap();
        assert_eq!(
            store.check_pin("alice", "0").unwrap(),
            PinCheck::Wrong {
                failures: 1,
                reset_due: false
            }
        );
        assert_eq!(
            store.check_pin("alice", &pin).unwrap(),
            PinCheck::OkMustChange
        );
        assert_eq!(
            store.mailbox_by_id(id).unwrap().unwrap().failed_logon_count,
            0
        );
        let answers: Vec<PinCheck> = (0..5)
            .map(|_| store.check_pin("alice", "0").unwrap())
            .collect();
        assert_eq!(
            answers,
            vec![
                PinCheck::Wrong {
                    failures: 1,
                    reset_due: false
                },
                PinCheck::Wrong {
                    failures: 2,
                    reset_due: true
                },
                // Due at every multiple of LogonFailuresBeforePINReset only.
                PinCheck::Wrong {
                    failures: 3,
                    reset_due: false
                },
                PinCheck::LockedOut,
                PinCheck::LockedOut,
            ]
        );
        // Locked out: even the right PIN is refused.
        assert_eq!(store.check_pin("alice", &pin).unwrap(), PinCheck::LockedOut);
        let new_pin = store.reset_pin(id, &mut rng()).unwrap();
        let m = store.mailbox_by_id(id).unwrap().unwrap();
        assert!(!m.locked_out);
        assert_eq!(m.failed_logon_count, 0);
        assert_eq!(
            store.check_pin("alice", &new_pin).unwrap(),
            PinCheck::OkMustChange
        );
    }

    #[test]
    fn old_pins_expire() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        let pin = store.reset_pin(id, &mut rng()).unwrap();
        let conn = store.conn().unwrap();
        conn.execute(
            "UPDATE mailboxes SET pin_must_change = 0, pin_set_at = ?1",
            [unix_now() - 59 * 86_400],
        )
        .unwrap();
        drop(conn);
        assert_eq!(store.check_pin("alice", &pin).unwrap(), PinCheck::Ok);
        store
            .conn()
            .unwrap()
            .execute(
                "UPDATE mailboxes SET pin_set_at = ?1",
                [unix_now() - 60 * 86_400],
            )
            .unwrap();
        assert_eq!(store.check_pin("alice", &pin).unwrap(), PinCheck::Expired);
        let unlimited = PinPolicy {
            pin_lifetime_days: None,
            ..PinPolicy::default()
        };
        store.set_policy(DEFAULT_POLICY_NAME, &unlimited).unwrap();
        assert_eq!(store.check_pin("alice", &pin).unwrap(), PinCheck::Ok);
    }

    #[test]
    fn store_is_shared_across_threads() {
        fn assert_send_sync<T: Clone + Send + Sync>() {}
        assert_send_sync::<Store>();
        let (_dir, store) = store();
        let ids: Vec<MailboxId> = (0..4)
            .map(|i| {
                let mut new = alice();
                new.user = format!("user{i}");
                store.add_mailbox(new).unwrap()
            })
            .collect();
        std::thread::scope(|s| {
            for &id in &ids {
                let store = store.clone();
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(id.0 as u64);
                    for _ in 0..5 {
                        store.reset_pin(id, &mut rng).unwrap();
                        store.set_oof_status(id, true).unwrap();
                    }
                });
            }
        });
        for id in ids {
            assert_eq!(history_len(&store, id), 4);
        }
    }
    fn queue(store: &Store, id: MailboxId, reason: ResetReason) -> (OutboxMail, String) {
        let mut pin = String::new();
        let mail = store
            .reset_pin_queued(id, &mut rand::rngs::OsRng, reason, |o, _| {
                pin.clone_from(&o.pin);
                Ok::<_, MailDown>(OutgoingMail {
                    recipient: "alice@example.org".into(),
                    message: b"mail".to_vec(),
                })
            })
            .unwrap();
        (mail, pin)
    }

    #[test]
    fn automatic_reset_keeps_counting_towards_the_lockout() {
        let (_dir, store) = store();
        let policy = PinPolicy {
            logon_failures_before_pin_reset: Some(2),
            max_logon_attempts: Some(5),
            ..PinPolicy::default()
        };
        store.set_policy(DEFAULT_POLICY_NAME, &policy).unwrap();
        let id = store.add_mailbox(alice()).unwrap();
        store.reset_pin(id, &mut rng()).unwrap();
        store.check_pin("alice", "0").unwrap();
        store.check_pin("alice", "0").unwrap();
        let (_, pin) = queue(&store, id, ResetReason::TooManyFailures);
        let m = store.mailbox_by_id(id).unwrap().unwrap();
        assert_eq!(m.failed_logon_count, 2);
        assert!(m.pin_must_change && !m.locked_out);
        for _ in 0..2 {
            store.check_pin("alice", "0").unwrap();
        }
        assert_eq!(store.check_pin("alice", "0").unwrap(), PinCheck::LockedOut);
        assert_eq!(store.check_pin("alice", &pin).unwrap(), PinCheck::LockedOut);
        store.unlock(id).unwrap();
        assert_eq!(
            store.check_pin("alice", &pin).unwrap(),
            PinCheck::OkMustChange
        );
        let m = store.mailbox_by_id(id).unwrap().unwrap();
        assert_eq!((m.failed_logon_count, m.locked_out), (0, false));
    }

    #[test]
    fn outbox_rows_grow_in_order_and_are_removed() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        let (a, _) = queue(&store, id, ResetReason::Requested);
        let (b, _) = queue(&store, id, ResetReason::Requested);
        assert!(b.id > a.id && a.key != b.key);
        assert_eq!(store.outbox_len().unwrap(), 2);
        store.outbox_record_failure(a.id).unwrap();
        let pending = store.outbox_pending(0, 10).unwrap();
        assert_eq!(pending[0].attempts, 1);
        assert_eq!(pending[1], b);
        assert!(store.outbox_remove(a.id).unwrap());
        assert!(!store.outbox_remove(a.id).unwrap());
        let (c, _) = queue(&store, id, ResetReason::Requested);
        assert!(store.outbox_remove(b.id).unwrap());
        assert!(store.outbox_remove(c.id).unwrap());
        let (d, _) = queue(&store, id, ResetReason::Requested);
        assert!(d.id > c.id, "ids are never reused");
    }

    #[test]
    fn change_pin_enforces_the_policy_and_clears_must_change() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        let first = store.reset_pin(id, &mut rng()).unwrap();
        let refused = |old: &str, new: &str| match store.change_pin("alice", old, new) {
            Err(ChangePinError::Rejected { source }) => source,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(&first, "12a456"), PinRejected::NotDigits);
        assert_eq!(refused(&first, "2468"), PinRejected::TooShort { min: 6 });
        assert_eq!(
            refused(&first, &"5".repeat(25)),
            PinRejected::TooLong { max: 24 }
        );
        assert_eq!(refused(&first, "777777"), PinRejected::AllSameDigit);
        assert_eq!(refused(&first, "345678"), PinRejected::ConsecutiveDigits);
        assert_eq!(refused(&first, "3669712"), PinRejected::StartsWithExtension);
        assert_eq!(refused(&first, &first), PinRejected::InHistory { count: 5 });
        let err = store.change_pin("alice", &first, "777777").unwrap_err();
        assert!(err.to_string().contains("AllowCommonPatterns"), "{err}");
        assert!(!err.to_string().contains("777777"));

        assert!(matches!(
            store.change_pin("alice", "000000", "480151"),
            Err(ChangePinError::OldPinRefused(PinCheck::Wrong {
                failures: 1,
                ..
            }))
        ));
        store.change_pin("alice", &first, "480151").unwrap();
        let m = store.mailbox_by_id(id).unwrap().unwrap();
        assert!(!m.pin_must_change);
        assert_eq!(m.failed_logon_count, 0);
        assert_eq!(store.check_pin("alice", "480151").unwrap(), PinCheck::Ok);
        assert_eq!(
            refused("480151", &first),
            PinRejected::InHistory { count: 5 }
        );
        // A new policy applies at the next change.
        let lax = PinPolicy {
            min_pin_length: 4,
            allow_common_patterns: true,
            ..PinPolicy::default()
        };
        store.set_policy("Lax", &lax).unwrap();
        store.set_mailbox_policy(id, "lax").unwrap();
        store.change_pin("alice", "480151", "1111").unwrap();
        assert_eq!(store.mailbox_by_id(id).unwrap().unwrap().policy_name, "Lax");
        assert!(matches!(
            store.set_mailbox_policy(id, "nope"),
            Err(StoreError::UnknownPolicy { .. })
        ));
        assert!(matches!(
            store.change_pin("bob", "1111", "2222"),
            Err(ChangePinError::OldPinRefused(PinCheck::UnknownUser))
        ));
        let names: Vec<String> = store.policies().unwrap().into_iter().map(|p| p.0).collect();
        assert_eq!(names, ["Default", "Lax"]);
    }

    #[test]
    fn pin_record_lines_up_history_and_current() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        let mut rng = rng();
        let pins: Vec<String> = (0..4)
            .map(|_| store.reset_pin(id, &mut rng).unwrap())
            .collect();
        let all: Vec<&str> = pins.iter().map(String::as_str).collect();
        assert_eq!(store.pin_changes(id).unwrap(), 4);
        let m = store.match_pin_record(id, &all).unwrap();
        assert!(m.is_exact(), "{m:?}");
        let m = store.match_pin_record(id, &[all[1], all[3]]).unwrap();
        assert_eq!(m.positions, vec![Some(1), Some(3)]);
        assert!(!m.is_exact());
        let m = store.match_pin_record(id, &[all[3], all[0]]).unwrap();
        assert_eq!(m.positions, vec![Some(3), None], "order matters");
    }

    #[test]
    fn nfd_and_nfc_names_are_one_mailbox_and_old_keys_are_recomputed() {
        let (dir, store) = store();
        let mut new = alice();
        new.user = "Ju\u{308}rgen".into();
        let id = store.add_mailbox(new).unwrap();
        assert_eq!(
            store.mailbox_by_id(id).unwrap().unwrap().user,
            "J\u{fc}rgen"
        );
        assert_eq!(store.mailbox("j\u{fc}RGEN").unwrap().unwrap().id, id);
        let mut dup = alice();
        dup.user = "J\u{fc}rgen".into();
        assert!(matches!(
            store.add_mailbox(dup),
            Err(StoreError::DuplicateUser { .. })
        ));
        // A version 2 database keyed by lower-casing only: NFD key and name.
        let mut bob = alice();
        bob.user = "bob".into();
        let bob = store.add_mailbox(bob).unwrap();
        let conn = store.conn().unwrap();
        conn.execute(
            "UPDATE mailboxes SET user_key = 'ju\u{308}rgen', user_name = 'Ju\u{308}rgen'
             WHERE id = ?1",
            [id.0],
        )
        .unwrap();
        // And a second mailbox that only differed by normalization then.
        conn.execute(
            "UPDATE mailboxes SET user_key = 'j\u{fc}rgen', user_name = 'j\u{fc}rgen'
             WHERE id = ?1",
            [bob.0],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch("DROP TABLE pin_resets").unwrap();
        drop(conn);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        // The mailbox whose key was right already keeps it; the other keeps its old key
        // (logged), which no logon produces any more.
        let m = store.mailbox("Ju\u{308}rgen").unwrap().unwrap();
        assert_eq!(m.id, bob);
        let keys: Vec<String> = store
            .conn()
            .unwrap()
            .prepare("SELECT user_key FROM mailboxes ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(keys, ["ju\u{308}rgen", "j\u{fc}rgen"]);
        // Without a clash, an old key is recomputed.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let conn = store.conn().unwrap();
        conn.execute("DELETE FROM mailboxes WHERE id = ?1", [bob.0])
            .unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch("DROP TABLE pin_resets").unwrap();
        drop(conn);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let m = store.mailbox("J\u{fc}RGEN").unwrap().unwrap();
        assert_eq!((m.id, m.user.as_str()), (id, "J\u{fc}rgen"));
    }

    #[test]
    fn requested_resets_are_limited_per_mailbox_in_the_store() {
        let (_dir, store) = store();
        let limit = ResetLimit {
            max: 2,
            window: Duration::from_secs(3600),
        };
        let limited = store.clone().with_reset_limit(Some(limit));
        let id = store.add_mailbox(alice()).unwrap();
        let mut bob = alice();
        bob.user = "bob".into();
        let other = store.add_mailbox(bob).unwrap();
        let mut rng = rng();
        limited.reset_pin(id, &mut rng).unwrap();
        limited.reset_pin(id, &mut rng).unwrap();
        let pins = store.pin_changes(id).unwrap();
        match limited.reset_pin(id, &mut rng) {
            Err(ResetPinError::TooManyResets {
                limit: l,
                retry_after,
            }) => {
                assert_eq!(l, limit);
                assert!(retry_after > Duration::ZERO && retry_after <= limit.window);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.pin_changes(id).unwrap(), pins, "nothing changed");
        // Other mailboxes, other reasons and unlimited handles are not limited.
        limited.reset_pin(other, &mut rng).unwrap();
        store.reset_pin(id, &mut rng).unwrap();
        queue(&limited, id, ResetReason::TooManyFailures);
        // Once the oldest reset leaves the window, one more is allowed.
        store
            .conn()
            .unwrap()
            .execute(
                "UPDATE pin_resets SET at = at - 3600 WHERE mailbox_id = ?1 AND rowid =
                    (SELECT MIN(rowid) FROM pin_resets WHERE mailbox_id = ?1)",
                [id.0],
            )
            .unwrap();
        limited.reset_pin(id, &mut rng).unwrap();
        assert!(limited.reset_pin(id, &mut rng).is_err());
    }

    #[test]
    fn queued_mails_live_in_spool_files_removed_on_delivery_and_at_open() {
        let (dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        let spool = dir.path().join(super::super::SPOOL_DIR);
        let files = || std::fs::read_dir(&spool).unwrap().count();
        let (a, pin) = queue(&store, id, ResetReason::Requested);
        let (b, _) = queue(&store, id, ResetReason::Requested);
        assert_eq!(files(), 2);
        // The row holds no message; the spool file does.
        let stored: Vec<u8> = store
            .conn()
            .unwrap()
            .query_row("SELECT message FROM outbox WHERE id = ?1", [a.id], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(stored.is_empty());
        assert_eq!(
            store.outbox_pending(0, 10).unwrap(),
            vec![a.clone(), b.clone()]
        );
        assert!(!pin.is_empty());
        assert!(store.outbox_remove(a.id).unwrap());
        assert_eq!(files(), 1);
        // What crashes leave: a file without a row (deleted row, or never committed).
        std::fs::write(spool.join("0123abcd.eml"), b"PIN").unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(files(), 1);
        assert_eq!(store.outbox_pending(0, 10).unwrap(), vec![b.clone()]);
        // A row whose file is lost is dropped (logged), not delivered empty.
        std::fs::remove_file(spool.join(format!("{}.eml", b.key))).unwrap();
        assert!(store.outbox_pending(0, 10).unwrap().is_empty());
        assert_eq!(store.outbox_len().unwrap(), 0);
        // A failed render leaves no file.
        let err = store
            .reset_pin_queued(id, &mut rng(), ResetReason::Requested, |_, _| {
                Err::<OutgoingMail, _>(MailDown)
            })
            .unwrap_err();
        assert!(matches!(err, ResetPinError::Delivery(MailDown)));
        assert_eq!(files(), 0);
    }

    #[test]
    fn resets_of_one_mailbox_serialise_and_others_overlap() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Barrier, Condvar};
        // Four mailboxes reset at once: each reset blocks in the hook until all four are in it.
        // Were PIN work serialised behind one lock, this would never finish (the wait times
        // out and the test fails).
        let arrived = Arc::new((Mutex::new(0usize), Condvar::new()));
        let in_hook = Arc::new(AtomicUsize::new(0));
        let hook: PinWorkHook = {
            let arrived = Arc::clone(&arrived);
            Arc::new(move |_| {
                let (count, cv) = &*arrived;
                let mut n = count.lock().unwrap();
                *n += 1;
                cv.notify_all();
                let (n, timeout) = cv
                    .wait_timeout_while(n, Duration::from_secs(20), |n| *n < 4)
                    .unwrap();
                assert!(!timeout.timed_out(), "only {} resets overlapped", *n);
            })
        };
        let (_dir, store) = store();
        let store = store.with_pin_work_hook(hook);
        let ids: Vec<MailboxId> = (0..4)
            .map(|i| {
                let mut new = alice();
                new.user = format!("user{i}");
                store.add_mailbox(new).unwrap()
            })
            .collect();
        let start = Barrier::new(4);
        std::thread::scope(|s| {
            for &id in &ids {
                let (store, start) = (store.clone(), &start);
                s.spawn(move || {
                    start.wait();
                    store.reset_pin(id, &mut rand::rngs::OsRng).unwrap();
                });
            }
        });

        // One mailbox, eight threads: never two in its PIN work at once, every reset lands.
        let (_dir, store) = self::store();
        let hook: PinWorkHook = {
            let in_hook = Arc::clone(&in_hook);
            Arc::new(move |_| {
                assert_eq!(in_hook.fetch_add(1, Ordering::SeqCst), 0, "overlap");
                std::thread::sleep(Duration::from_millis(5));
                in_hook.fetch_sub(1, Ordering::SeqCst);
            })
        };
        let store = store.with_pin_work_hook(hook);
        let id = store.add_mailbox(alice()).unwrap();
        let policy = PinPolicy {
            pin_history_count: 20,
            ..PinPolicy::default()
        };
        store.set_policy(DEFAULT_POLICY_NAME, &policy).unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                let store = store.clone();
                s.spawn(move || {
                    for _ in 0..2 {
                        store.reset_pin(id, &mut rand::rngs::OsRng).unwrap();
                    }
                });
            }
        });
        assert_eq!(history_len(&store, id), 15);
        assert!(store.shared.pin_locks.lock().unwrap().len() <= 1);
    }
}
