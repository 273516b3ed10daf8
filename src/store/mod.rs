//! The durable mailbox store: accounts, their UM settings, their PIN state and PIN history.
//!
//! The records and errors are defined here; [`sqlite`] holds the [`Store`] itself, an embedded
//! SQLite database at `<data>/umws.sqlite3`. Secrets (passwords, PINs) are kept only as salted
//! argon2id hashes in PHC string form; the hashing helpers live here too.
//!
//! Everything is synchronous. Slow hashing is always done outside any database transaction and
//! outside any lock shared between mailboxes: PIN changes of one mailbox are serialised by a lock
//! of that mailbox only (documented on [`Store::reset_pin_queued`]).
//!
//! The store also holds the durable **outbox** of PIN mails ([`OutboxMail`]): a PIN reset
//! queues its rendered mail in the same transaction that changes the PIN, so the change and its
//! mail commit together; `crate::mail::outbox` delivers and removes the rows afterwards.

mod backend;
pub mod postgres;
pub mod private;
mod spool;
pub mod sqlite;
#[cfg(test)]
mod suite;
pub mod voicemail;

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

use crate::pin_policy::{PinGenerationError, PinPolicy, PinRejected, PolicyError};

pub use backend::Store;
pub use spool::SPOOL_DIR;
pub use sqlite::{PinWorkHook, DEFAULT_EXTERNAL_POLL};

/// The URL of a PostgreSQL database (`postgres://...`). Its `Debug` hides it, since it may hold
/// the password.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatabaseUrl(..)")
    }
}

/// The database id of a mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MailboxId(pub i64);

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The name of the policy every new mailbox gets, created with the database.
pub const DEFAULT_POLICY_NAME: &str = "Default";

/// The key under which a user name is stored and looked up, by every entry point (the store,
/// the credentials cache, the logon throttle, the Maildir names): user names match
/// case-insensitively (like Windows accounts) and by canonical equivalence. The name is put
/// in Unicode normalization form C, lower-cased, and put in form C again (lower-casing can
/// produce decomposed sequences). So an NFD `jürgen` is the NFC `jürgen`, and the Kelvin sign
/// (U+212A, canonically `K`) is `k`. Borrowed, without an allocation, when the name is
/// lower-case ASCII already (the usual case).
pub fn normalize_user(user: &str) -> Cow<'_, str> {
    use unicode_normalization::UnicodeNormalization as _;
    if user
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        Cow::Borrowed(user)
    } else {
        let lower = user.nfc().collect::<String>().to_lowercase();
        Cow::Owned(lower.nfc().collect())
    }
}

/// A user name as it is stored for display (`Mailbox::user`): in normalization form C, case
/// kept.
pub fn display_user(user: &str) -> Cow<'_, str> {
    use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization as _};
    if is_nfc_quick(user.chars()) == IsNormalized::Yes {
        Cow::Borrowed(user)
    } else {
        Cow::Owned(user.nfc().collect())
    }
}

/// How many PIN resets the ResetPIN operation may make per mailbox within a window; further
/// ones are refused ([`ResetPinError::TooManyResets`]) until the oldest leaves the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetLimit {
    /// The most resets within `window`.
    pub max: u32,
    /// The window.
    pub window: std::time::Duration,
}

/// The ResetPIN limit of the service: 5 resets per mailbox per hour (an Exchange user resets a
/// PIN a few times a day at most; each reset costs argon2 work).
pub const RESET_PIN_LIMIT: ResetLimit = ResetLimit {
    max: 5,
    window: std::time::Duration::from_secs(3600),
};

/// The cost of the argon2id hashes the store creates. Verification always uses the parameters
/// recorded in the stored hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HashCost {
    /// argon2id with m = 19456 KiB, t = 2, p = 1 (the OWASP recommendation). Use this in
    /// production.
    #[default]
    Production,
    /// argon2id with m = 64 KiB, t = 1, p = 1: fast and insecure, for tests only.
    Test,
}

impl HashCost {
    fn params(self) -> Result<Params, StoreError> {
        let (m, t, p) = match self {
            HashCost::Production => (19_456, 2, 1),
            HashCost::Test => (64, 1, 1),
        };
        Params::new(m, t, p, None).map_err(|e| StoreError::Hash(e.into()))
    }
}

/// Hashes `secret` with a fresh random salt; returns the PHC string.
pub(crate) fn hash_secret(cost: HashCost, secret: &[u8]) -> Result<String, StoreError> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, cost.params()?);
    let _permit = Argon2Permits::global().acquire();
    let salt = SaltString::generate(&mut OsRng);
    argon
        .hash_password(secret, &salt)
        .map(|h| h.to_string())
        .map_err(StoreError::Hash)
}

/// Verifies `secret` against the PHC string `phc`. A mismatch is `Ok(false)`; a malformed hash
/// is an error.
pub(crate) fn verify_secret(phc: &str, secret: &[u8]) -> Result<bool, StoreError> {
    let parsed = PasswordHash::new(phc).map_err(StoreError::Hash)?;
    let _permit = Argon2Permits::global().acquire();
    match Argon2::default().verify_password(secret, &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(StoreError::Hash(e)),
    }
}

/// Bounds how many argon2 computations run at once in the process: each takes a CPU and its
/// memory cost (19 MiB in production), so with more of them at once (a burst of ResetPINs,
/// many logons on a cold credentials cache) none is faster and memory grows per request.
/// The others wait, blocking their thread; requests reach argon2 through [`spawn_argon2`],
/// which waits for a turn before taking a blocking thread.
struct Argon2Permits {
    permits: usize,
    free: Mutex<usize>,
    freed: Condvar,
    peak: AtomicUsize,
}

/// A turn at argon2; the next waiter goes on drop.
struct Argon2Permit(&'static Argon2Permits);

impl Argon2Permits {
    /// The process's permits: as many as the machine has CPUs.
    fn global() -> &'static Argon2Permits {
        static PERMITS: OnceLock<Argon2Permits> = OnceLock::new();
        PERMITS.get_or_init(|| {
            let permits = argon2_concurrency();
            Argon2Permits {
                permits,
                free: Mutex::new(permits),
                freed: Condvar::new(),
                peak: AtomicUsize::new(0),
            }
        })
    }

    fn acquire(&'static self) -> Argon2Permit {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        self.peak.fetch_max(self.permits - *free, Ordering::AcqRel);
        Argon2Permit(self)
    }
}

impl Drop for Argon2Permit {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

/// Runs `job`, which computes argon2 hashes (a logon on a cold cache, a PIN reset), on tokio's
/// blocking pool when one of the [`argon2_concurrency`] turns is free.
///
/// The wait for a turn is async: requests queued behind a burst of argon2 work (many logons
/// with wrong passwords, many resets at once) hold no blocking thread while they wait, so the
/// pool stays free for the short store operations of everyone else and the process does not
/// grow a thread per waiting request. The turn is held until `job` ends, even when the caller
/// stops waiting for it. A job computes its hashes one after another, so the per-computation
/// bound inside (around each hash and verification) never makes a gated job wait.
pub async fn spawn_argon2<T, F>(job: F) -> Result<T, tokio::task::JoinError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    static TURNS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let turns = TURNS.get_or_init(|| tokio::sync::Semaphore::new(argon2_concurrency()));
    // The semaphore is never closed; were it, the job would still be bounded by the permits
    // of each computation.
    let turn = turns.acquire().await.ok();
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        job()
    })
    .await
}

/// How many argon2 computations may run at once: the number of CPUs.
pub fn argon2_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// The most argon2 computations that have run at once in this process (for tests).
pub fn argon2_peak() -> usize {
    Argon2Permits::global().peak.load(Ordering::Acquire)
}

/// An opaque fingerprint of a mailbox's stored password hash: it changes whenever the password
/// changes, so a cache of verified credentials can tell that an entry is stale
/// ([`Mailbox::credential_stamp`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CredentialStamp([u8; 32]);

impl CredentialStamp {
    pub(crate) fn of(password_hash: &str) -> Self {
        Self(Sha256::digest(password_hash.as_bytes()).into())
    }
}

impl fmt::Debug for CredentialStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialStamp(..)")
    }
}

/// A mailbox as the UM operations see it. Hashes are not part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    /// The database id.
    pub id: MailboxId,
    /// The user name as it was given when the mailbox was added.
    pub user: String,
    /// Whether the mailbox is enabled for Unified Messaging.
    pub um_enabled: bool,
    /// The user's extension (digits), if any.
    pub extension: Option<String>,
    /// The user's email address, if any.
    pub email: Option<String>,
    /// The name of the mailbox's UM mailbox policy.
    pub policy_name: String,
    /// The PIN settings of that policy.
    pub policy: PinPolicy,
    /// Whether a PIN has been set (by a ResetPIN).
    pub pin_set: bool,
    /// When the current PIN was set, in unix seconds.
    pub pin_set_at: Option<i64>,
    /// Whether the PIN must be changed at the next phone logon.
    pub pin_must_change: bool,
    /// Failed phone logons since the last success or reset.
    pub failed_logon_count: u32,
    /// Whether the mailbox is locked out of phone access.
    pub locked_out: bool,
    /// The Out of Office status (`SetOofStatus`).
    pub oof_status: bool,
    /// Whether missed-call notifications are sent (`SetMissedCallNotificationEnabled`).
    pub missed_call_notification_enabled: bool,
    /// The default dial string for Play on Phone (`SetPlayOnPhoneDialString`).
    pub play_on_phone_dial_string: Option<String>,
    /// The folder read by telephone access, as a base64 folder id
    /// (`SetTelephoneAccessFolderEmail`).
    pub telephone_access_folder_email: Option<String>,
    /// The numbers to call for voice mail access, joined by ", ".
    pub telephone_access_numbers: Option<String>,
    stamp: CredentialStamp,
}

impl Mailbox {
    /// The fingerprint of the password hash this record was read with.
    pub fn credential_stamp(&self) -> CredentialStamp {
        self.stamp
    }
}

/// What [`Store::add_mailbox`] needs to create a mailbox. It gets the default policy, no PIN
/// (until the first ResetPIN), OOF off and missed-call notifications on.
#[derive(Clone)]
pub struct NewMailbox {
    /// The user name; unique, compared case-insensitively. 1-256 characters, no control
    /// characters.
    pub user: String,
    /// The password for HTTP authentication; stored only as an argon2id hash. Not empty.
    pub password: String,
    /// Whether the mailbox is enabled for Unified Messaging.
    pub um_enabled: bool,
    /// The extension, digits only (1-32 of them).
    pub extension: Option<String>,
    /// The email address the ResetPIN mail is addressed to.
    pub email: Option<String>,
}

impl fmt::Debug for NewMailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewMailbox")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("um_enabled", &self.um_enabled)
            .field("extension", &self.extension)
            .field("email", &self.email)
            .finish()
    }
}

/// Everything the ResetPIN mail needs, handed to the render callback of
/// [`Store::reset_pin_queued`] while the new PIN is not yet committed. Its `Debug` hides the PIN.
#[derive(Clone)]
pub struct ResetPinOutcome {
    /// The mailbox whose PIN was reset.
    pub mailbox_id: MailboxId,
    /// The new PIN, in clear. Never log it.
    pub pin: String,
    /// The user name.
    pub user: String,
    /// The user's email address, if any.
    pub email: Option<String>,
    /// The user's extension, if any.
    pub extension: Option<String>,
    /// The policy's `ResetPINText` (may be empty).
    pub reset_pin_text: String,
    /// The voice mail access numbers, if known.
    pub telephone_access_numbers: Option<String>,
    /// When the PIN was set, unix seconds.
    pub pin_set_at: i64,
}

impl fmt::Debug for ResetPinOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResetPinOutcome")
            .field("mailbox_id", &self.mailbox_id)
            .field("pin", &"<redacted>")
            .field("user", &self.user)
            .field("email", &self.email)
            .field("extension", &self.extension)
            .field("reset_pin_text", &self.reset_pin_text)
            .field("telephone_access_numbers", &self.telephone_access_numbers)
            .field("pin_set_at", &self.pin_set_at)
            .finish()
    }
}

/// The result of checking a PIN at a phone logon ([`Store::check_pin`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinCheck {
    /// The PIN is right and current.
    Ok,
    /// The PIN is right, but was reset and must be changed now.
    OkMustChange,
    /// The PIN is right but older than the policy's `PINLifetime`; it must be changed now.
    Expired,
    /// The PIN is wrong. `failures` is the count after this attempt; `reset_due` says that it has
    /// reached a multiple of the policy's `LogonFailuresBeforePINReset` (5, 10, ... by
    /// default), so the PIN should now be reset with [`ResetReason::TooManyFailures`] and mailed
    /// (the caller's job, see `crate::phone`).
    Wrong {
        /// Failed logons so far, this one included.
        failures: u32,
        /// Whether the automatic PIN reset is due.
        reset_due: bool,
    },
    /// The mailbox is locked out (already, or by this failed attempt reaching
    /// `MaxLogonAttempts`). A ResetPIN unlocks it.
    LockedOut,
    /// No PIN has been set yet.
    NoPin,
    /// The mailbox is not enabled for Unified Messaging.
    NotUmEnabled,
    /// No mailbox has this user name.
    UnknownUser,
}

/// A failure of the store. Messages name no secret and no SQL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory given to [`Store::open`] does not exist.
    #[error("data directory {} does not exist (Store::create makes one)", path.display())]
    DataDirMissing {
        /// The missing directory.
        path: PathBuf,
    },
    /// Creating the data directory failed.
    #[error("cannot create data directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer version of this program.
    #[error("database schema version {found} is newer than the supported {supported}")]
    SchemaTooNew {
        /// The version found in the file.
        found: i64,
        /// The newest version this program knows.
        supported: i64,
    },
    /// SQLite failed.
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (a statement was refused, or the connection broke during it).
    #[error("database error")]
    Postgres(#[from] tokio_postgres::Error),
    /// The PostgreSQL database cannot be reached: no connection could be made or had within
    /// the timeout.
    #[error("cannot reach the database")]
    DatabaseUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database URL's `sslrootcert` file cannot be used.
    #[error("cannot use {} as the database's root certificates (sslrootcert): {reason}", path.display())]
    DatabaseRootCert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS settings for the database could not be made.
    #[error("cannot set up TLS to the database")]
    DatabaseTls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A mailbox with this user name (compared case-insensitively) exists already.
    #[error("a mailbox named {user:?} exists already")]
    DuplicateUser {
        /// The refused user name.
        user: String,
    },
    /// No mailbox has this id.
    #[error("no mailbox with id {0}")]
    UnknownMailbox(MailboxId),
    /// No policy has this name.
    #[error("no PIN policy named {name:?}")]
    UnknownPolicy {
        /// The name looked up.
        name: String,
    },
    /// An input value is not acceptable.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which input.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A policy (given, or read from the database) is out of range.
    #[error("invalid PIN policy")]
    InvalidPolicy(#[from] PolicyError),
    /// Hashing or verifying a secret failed, or a stored hash is malformed.
    #[error("password hashing failed")]
    Hash(#[source] argon2::password_hash::Error),
    /// The mailbox's PIN state kept changing under a concurrent writer; try again.
    #[error("the mailbox was changed concurrently; try again")]
    Conflict,
    /// The data directory may be written by the group or others: refused, since anyone who can
    /// write there can replace the database or read the mails planted through links.
    #[error(
        "data directory {} is writable by its group or by others (mode {mode:04o}); \
         make it private to the service's user (chmod 700) or use another one",
        path.display()
    )]
    InsecureDataDir {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Making a file or directory of the data directory private failed.
    #[error("cannot make {} private to its owner", path.display())]
    Private {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The spool of queued mails failed.
    #[error("cannot {op} outbox spool file {}", path.display())]
    Spool {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Why a PIN reset was made; it decides what happens to the failed logon count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    /// The user asked for it (the ResetPIN operation) or an administrator did: the failed logon
    /// count and any lockout are cleared.
    Requested,
    /// The automatic reset after `LogonFailuresBeforePINReset` failed phone logons: the failed
    /// logon count keeps counting towards `MaxLogonAttempts`, so guessing on cannot go on for
    /// ever.
    TooManyFailures,
}

/// A rendered mail, handed to the store to queue in its outbox. Its `Debug` hides the message,
/// which holds a PIN.
#[derive(Clone)]
pub struct OutgoingMail {
    /// The envelope recipient (the `To` address).
    pub recipient: String,
    /// The RFC 5322 message, CRLF line endings.
    pub message: Vec<u8>,
}

impl fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("recipient", &self.recipient)
            .field("message", &format_args!("<{} bytes>", self.message.len()))
            .finish()
    }
}

/// A mail in the durable outbox: committed together with the PIN change it announces, removed
/// once delivered. Its `Debug` hides the message, which holds a PIN.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxMail {
    /// The row id; grows with every queued mail, in commit order.
    pub id: i64,
    /// The unique idempotency key (a UUID in simple form, also the local part of the
    /// Message-ID). A delivery names its copy after it, so delivering twice leaves one copy.
    pub key: String,
    /// The mailbox the mail is for.
    pub mailbox_id: MailboxId,
    /// The user name of that mailbox (a Maildir is named after it).
    pub user: String,
    /// The envelope recipient.
    pub recipient: String,
    /// The RFC 5322 message, CRLF line endings.
    pub message: Vec<u8>,
    /// When it was queued, unix seconds.
    pub created_at: i64,
    /// Failed delivery attempts so far.
    pub attempts: u32,
}

impl fmt::Debug for OutboxMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxMail")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("mailbox_id", &self.mailbox_id)
            .field("user", &self.user)
            .field("recipient", &self.recipient)
            .field("message", &format_args!("<{} bytes>", self.message.len()))
            .field("created_at", &self.created_at)
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// How a list of PINs lines up with a mailbox's PIN record (its history, oldest first, then its
/// current PIN); see [`Store::match_pin_record`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinRecordMatch {
    /// How many PINs the record holds (history entries plus the current PIN).
    pub record_len: usize,
    /// For each PIN given, its position in the record, found scanning forward from just after
    /// the previous match; `None` when it is not there.
    pub positions: Vec<Option<usize>>,
}

impl PinRecordMatch {
    /// True when the PINs given are exactly the record, in order.
    pub fn is_exact(&self) -> bool {
        self.positions.len() == self.record_len
            && self
                .positions
                .iter()
                .enumerate()
                .all(|(i, p)| *p == Some(i))
    }
}

/// Why [`Store::change_pin`] refused or failed. No message contains a PIN.
#[derive(Debug, thiserror::Error)]
pub enum ChangePinError {
    /// The old PIN was not accepted (wrong, locked out, no PIN, unknown user, not UM-enabled);
    /// a wrong old PIN counts as a failed logon.
    #[error("the old PIN was not accepted")]
    OldPinRefused(PinCheck),
    /// The new PIN breaks a rule of the mailbox's policy.
    #[error("the new PIN is refused by {}: {source}", source.rule())]
    Rejected {
        /// The rule.
        #[source]
        source: PinRejected,
    },
    /// The store failed.
    #[error("cannot store the new PIN")]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ChangePinError {
    fn from(e: rusqlite::Error) -> Self {
        ChangePinError::Store(StoreError::Sqlite(e))
    }
}

/// Why [`Store::reset_pin_queued`] failed. In every case the old PIN stays valid and nothing was
/// queued.
#[derive(Debug, thiserror::Error)]
pub enum ResetPinError<E: std::error::Error + 'static> {
    /// The mailbox is not enabled for Unified Messaging.
    #[error("the mailbox is not enabled for Unified Messaging")]
    NotUmEnabled,
    /// No PIN satisfying the policy could be generated.
    #[error("cannot generate a new PIN")]
    Generate(#[source] PinGenerationError),
    /// The store failed (including an unknown mailbox id).
    #[error("cannot store the new PIN")]
    Store(#[from] StoreError),
    /// The render callback failed (e.g. an invalid recipient address); the new PIN was rolled
    /// back.
    #[error("cannot build the mail with the new PIN")]
    Delivery(#[source] E),
    /// The mailbox had its [`ResetLimit`] of resets within the window already.
    #[error("too many PIN resets: at most {} per {} minutes", limit.max, limit.window.as_secs() / 60)]
    TooManyResets {
        /// The limit.
        limit: ResetLimit,
        /// When the next reset is allowed, from now.
        retry_after: std::time::Duration,
    },
}

impl<E: std::error::Error + 'static> From<rusqlite::Error> for ResetPinError<E> {
    fn from(e: rusqlite::Error) -> Self {
        ResetPinError::Store(StoreError::Sqlite(e))
    }
}

/// Checks what [`Store::add_mailbox`] is given, the user name already in NFC.
pub(crate) fn validate_new_mailbox(new: &NewMailbox) -> Result<(), StoreError> {
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
    Ok(())
}

/// The longest user name a mailbox may have, in characters.
pub const MAX_USER_CHARS: usize = 256;

/// Checks a user name for [`Store::add_mailbox`] (give it in NFC, see [`display_user`]).
pub(crate) fn validate_user(user: &str) -> Result<(), StoreError> {
    let reason = if user.is_empty() {
        "empty"
    } else if user.chars().count() > MAX_USER_CHARS {
        "longer than 256 characters"
    } else if user.chars().any(char::is_control) {
        "contains a control character"
    } else if user.trim() != user {
        "begins or ends with white space"
    } else if user.contains(':') {
        "contains ':', which HTTP Basic authentication cannot carry in a user name \
         (such a user could never log on)"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidInput {
        field: "user name",
        reason,
    })
}

/// Checks an extension: 1-32 ASCII digits.
pub(crate) fn validate_extension(ext: &str) -> Result<(), StoreError> {
    if ext.is_empty() || ext.len() > 32 || !ext.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StoreError::InvalidInput {
            field: "extension",
            reason: "must be 1-32 digits",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let a = hash_secret(HashCost::Test, b"secret").unwrap();
        let b = hash_secret(HashCost::Test, b"secret").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(verify_secret(&a, b"secret").unwrap());
        assert!(!verify_secret(&a, b"Secret").unwrap());
        assert!(verify_secret("not a hash", b"secret").is_err());
    }

    #[test]
    fn production_cost_is_owasp() {
        let p = HashCost::default().params().unwrap();
        assert_eq!((p.m_cost(), p.t_cost(), p.p_cost()), (19_456, 2, 1));
    }

    #[test]
    fn user_names_fold_case() {
        assert_eq!(normalize_user("ÄLICE"), normalize_user("älice"));
        validate_user("alice").unwrap();
        validate_user("DOMAIN\\alice").unwrap();
        assert!(validate_user("").is_err());
        assert!(validate_user(" alice").is_err());
        assert!(validate_user("a\0b").is_err());
    }

    #[test]
    fn user_names_are_nfc_and_case_folded() {
        // The Kelvin sign is canonically K.
        assert_eq!(normalize_user("\u{212A}"), "k");
        assert_eq!(normalize_user("\u{212A}ATE"), normalize_user("kate"));
        // NFD and NFC are one name, in any case.
        let nfc = "j\u{fc}rgen";
        let nfd = "ju\u{308}rgen";
        assert_eq!(normalize_user(nfd), nfc);
        assert_eq!(normalize_user("JU\u{308}RGEN"), nfc);
        assert_eq!(display_user(nfd), nfc);
        assert_eq!(display_user("J\u{dc}rgen"), "J\u{dc}rgen");
        // Lower-case ASCII is borrowed.
        assert!(matches!(normalize_user("alice"), Cow::Borrowed(_)));
        assert!(matches!(display_user("Alice"), Cow::Borrowed(_)));
        // A colon can never log on with Basic authentication.
        let err = validate_user("ops:admin").unwrap_err();
        assert!(err.to_string().contains("contains ':'"), "{err}");
    }

    #[test]
    fn debug_hides_secrets() {
        let o = ResetPinOutcome {
            mailbox_id: MailboxId(1),
            pin: "918273".into(),
            user: "u".into(),
            email: None,
            extension: None,
            reset_pin_text: String::new(),
            telephone_access_numbers: None,
            pin_set_at: 0,
        };
        assert!(!format!("{o:?}").contains("918273"));
        let n = NewMailbox {
            user: "u".into(),
            password: "hunter2".into(),
            um_enabled: true,
            extension: None,
            email: None,
        };
        assert!(!format!("{n:?}").contains("hunter2"));
    }

    /// Jobs waiting for an argon2 turn hold no blocking thread: with a pool of one thread more
    /// than there are turns and more jobs than turns, a short blocking operation (what every
    /// store call is) still runs while the jobs hold all the turns.
    #[test]
    fn argon2_jobs_wait_for_a_turn_without_a_blocking_thread() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        use std::time::Duration;

        /// Lets the stand-in jobs end, also when an assertion fails first (the runtime waits
        /// for its blocking threads when it is dropped).
        struct Release(Arc<(Mutex<bool>, Condvar)>);
        impl Drop for Release {
            fn drop(&mut self) {
                let (lock, cvar) = &*self.0;
                *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
                cvar.notify_all();
            }
        }

        let turns = argon2_concurrency();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(turns + 1)
            .enable_all()
            .build()
            .unwrap();
        // The jobs stand in for argon2 work: each runs until it is released.
        let released = Arc::new((Mutex::new(false), Condvar::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let release = Release(Arc::clone(&released));
            let jobs: Vec<_> = (0..turns + 4)
                .map(|_| {
                    let (released, running, most) = (
                        Arc::clone(&released),
                        Arc::clone(&running),
                        Arc::clone(&most),
                    );
                    tokio::spawn(spawn_argon2(move || {
                        let now = running.fetch_add(1, Ordering::AcqRel) + 1;
                        most.fetch_max(now, Ordering::AcqRel);
                        let (lock, cvar) = &*released;
                        let mut go = lock.lock().unwrap_or_else(PoisonError::into_inner);
                        while !*go {
                            go = cvar.wait(go).unwrap_or_else(PoisonError::into_inner);
                        }
                        running.fetch_sub(1, Ordering::AcqRel);
                    }))
                })
                .collect();
            // Every turn taken (other tests of this process may hold turns for a moment).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while running.load(Ordering::Acquire) < turns {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the jobs did not take every turn"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let other =
                tokio::time::timeout(Duration::from_secs(30), tokio::task::spawn_blocking(|| 42))
                    .await;
            assert_eq!(
                other
                    .expect("a blocking thread is free while argon2 jobs wait")
                    .unwrap(),
                42
            );
            assert_eq!(running.load(Ordering::Acquire), turns);
            drop(release);
            for job in jobs {
                job.await.unwrap().unwrap();
            }
        });
        assert_eq!(most.load(Ordering::Acquire), turns);
    }

    #[test]
    fn argon2_runs_at_most_one_per_cpu() {
        let permits = argon2_concurrency();
        let threads = permits + 4;
        let start = std::sync::Barrier::new(threads);
        std::thread::scope(|scope| {
            for i in 0..threads {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    let hash = hash_secret(HashCost::Production, &[i as u8; 8]).unwrap();
                    assert!(verify_secret(&hash, &[i as u8; 8]).unwrap());
                });
            }
        });
        let peak = argon2_peak();
        assert!(peak >= 1);
        assert!(
            peak <= permits,
            "{peak} argon2 at once with {permits} permits"
        );
    }
}
