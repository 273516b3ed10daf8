//! [`Store`]: the one store type the rest of umws uses, over one of two backends, the embedded
//! SQLite database ([`super::sqlite`], the default) or a PostgreSQL server
//! ([`super::postgres`], for several instances on one database). Both give the same records
//! with the same guarantees; each method's semantics are documented on the SQLite store's
//! method of the same name, and where PostgreSQL differs, on its own.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::{CryptoRng, RngCore};

use super::postgres::PgStore;
use super::sqlite::Store as SqliteStore;
use super::voicemail::{
    GreetingType, NewVoiceMessage, VoiceMessage, VoiceMessageId, VoiceMessageInfo,
    VoiceMessageLookupError,
};
use super::{
    ChangePinError, HashCost, Mailbox, MailboxId, NewMailbox, OutboxMail, OutgoingMail, PinCheck,
    PinRecordMatch, PinWorkHook, ResetLimit, ResetPinError, ResetPinOutcome, ResetReason,
    StoreError,
};
use crate::pin_policy::PinPolicy;

/// The durable mailbox store (see the module docs). Cheap to clone; clones share one pool of
/// connections.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Calls the method of the backend.
macro_rules! delegate {
    ($(
        $(#[$meta:meta])*
        pub fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
    )*) => {$(
        $(#[$meta])*
        pub fn $name(&self $(, $arg: $ty)*) -> $ret {
            match &self.backend {
                Backend::Sqlite(s) => s.$name($($arg),*),
                Backend::Postgres(p) => p.$name($($arg),*),
            }
        }
    )*};
}

/// Calls a builder method of the backend.
macro_rules! builder {
    ($(
        $(#[$meta:meta])*
        pub fn $name:ident(self, $arg:ident: $ty:ty);
    )*) => {$(
        $(#[$meta])*
        pub fn $name(self, $arg: $ty) -> Store {
            let backend = match self.backend {
                Backend::Sqlite(s) => Backend::Sqlite(s.$name($arg)),
                Backend::Postgres(p) => Backend::Postgres(p.$name($arg)),
            };
            Store { backend }
        }
    )*};
}

impl Store {
    /// Opens the SQLite store of `data_dir` ([`SqliteStore::open`]).
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        SqliteStore::open(data_dir).map(Store::from)
    }

    /// Creates (when needed) and opens the SQLite store of `data_dir`
    /// ([`SqliteStore::create`]).
    pub fn create(data_dir: &Path) -> Result<Store, StoreError> {
        SqliteStore::create(data_dir).map(Store::from)
    }

    /// Opens the PostgreSQL store at `url` (`postgres://user[:password]@host[:port]/database`;
    /// a password the URL does not give is read from the file named by
    /// `UMWS_DATABASE_PASSWORD_FILE`, or from `PGPASSWORD`), applying the schema migrations it
    /// lacks. `data_dir` (which must exist) holds what is not in the database: the outbox
    /// spool and the Maildirs.
    pub fn open_postgres(url: &str, data_dir: &Path) -> Result<Store, StoreError> {
        PgStore::open(url, data_dir).map(Store::from)
    }

    /// Opens the store a command line names: the PostgreSQL database `database` when given,
    /// else the SQLite store of `data_dir`; with `create`, `data_dir` is created when missing
    /// (and, for SQLite, the database in it).
    pub fn open_with(
        database: Option<&str>,
        data_dir: &Path,
        create: bool,
    ) -> Result<Store, StoreError> {
        match (database, create) {
            (Some(url), true) => {
                // The directory and its privacy as SQLite's `create` makes them.
                SqliteStore::create_data_dir(data_dir)?;
                let store = Self::open_postgres(url, data_dir)?;
                super::private::private_tree(data_dir)?;
                Ok(store)
            }
            (Some(url), false) => Self::open_postgres(url, data_dir),
            (None, true) => Self::create(data_dir),
            (None, false) => Self::open(data_dir),
        }
    }

    /// Whether this is the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The SQLite store, if that is the backend.
    pub fn as_sqlite(&self) -> Option<&SqliteStore> {
        match &self.backend {
            Backend::Sqlite(s) => Some(s),
            Backend::Postgres(_) => None,
        }
    }

    /// The PostgreSQL store, if that is the backend.
    pub fn as_postgres(&self) -> Option<&PgStore> {
        match &self.backend {
            Backend::Postgres(p) => Some(p),
            Backend::Sqlite(_) => None,
        }
    }

    /// The SQLite database file, if that is the backend.
    pub fn path(&self) -> Option<&Path> {
        self.as_sqlite().map(SqliteStore::path)
    }

    builder! {
        /// Limits requested resets per mailbox ([`SqliteStore::with_reset_limit`]).
        pub fn with_reset_limit(self, limit: Option<ResetLimit>);
        /// Sets the cost of new hashes ([`SqliteStore::with_hash_cost`]).
        pub fn with_hash_cost(self, cost: HashCost);
        /// Installs a test hook in PIN changes ([`SqliteStore::with_pin_work_hook`]).
        pub fn with_pin_work_hook(self, hook: PinWorkHook);
    }

    /// How often [`change_version`](Self::change_version) looks for commits by other
    /// processes ([`SqliteStore::with_external_poll`]). The PostgreSQL store is told of them
    /// (`LISTEN`/`NOTIFY`) and does not poll; this changes nothing there.
    pub fn with_external_poll(self, every: Duration) -> Store {
        match self.backend {
            Backend::Sqlite(s) => Store::from(s.with_external_poll(every)),
            Backend::Postgres(_) => self,
        }
    }

    delegate! {
        /// A number that changes with every commit ([`SqliteStore::data_version`]).
        pub fn data_version(&self) -> Result<u64, StoreError>;
        /// A number that changes after every commit, read cheaply
        /// ([`SqliteStore::change_version`], [`PgStore::change_version`]).
        pub fn change_version(&self) -> Result<u64, StoreError>;
        /// [`change_version`](Self::change_version) with the time already read.
        pub fn change_version_at(&self, now: Instant) -> Result<u64, StoreError>;

        /// Adds a mailbox ([`SqliteStore::add_mailbox`]).
        pub fn add_mailbox(&self, new: NewMailbox) -> Result<MailboxId, StoreError>;
        /// Checks a user's password ([`SqliteStore::verify_password`]).
        pub fn verify_password(&self, user: &str, password: &str) -> Result<Option<Mailbox>, StoreError>;
        /// Replaces a mailbox's password.
        pub fn set_password(&self, id: MailboxId, password: &str) -> Result<(), StoreError>;
        /// The mailbox of `user` (case-insensitive), if any.
        pub fn mailbox(&self, user: &str) -> Result<Option<Mailbox>, StoreError>;
        /// The mailbox with this id, if any.
        pub fn mailbox_by_id(&self, id: MailboxId) -> Result<Option<Mailbox>, StoreError>;
        /// The mailbox only `extension` names ([`SqliteStore::mailbox_by_extension`]).
        pub fn mailbox_by_extension(&self, extension: &str) -> Result<Option<Mailbox>, StoreError>;
        /// All mailboxes, ordered by id.
        pub fn mailboxes(&self) -> Result<Vec<Mailbox>, StoreError>;
        /// Sets the Out of Office status (`SetOofStatus`).
        pub fn set_oof_status(&self, id: MailboxId, status: bool) -> Result<(), StoreError>;
        /// Turns missed-call notifications on or off.
        pub fn set_missed_call_notification_enabled(&self, id: MailboxId, enabled: bool) -> Result<(), StoreError>;
        /// Sets or clears the default Play on Phone dial string.
        pub fn set_play_on_phone_dial_string(&self, id: MailboxId, dial_string: Option<&str>) -> Result<(), StoreError>;
        /// Sets or clears the telephone access folder (a base64 folder id).
        pub fn set_telephone_access_folder_email(&self, id: MailboxId, base64_folder_id: Option<&str>) -> Result<(), StoreError>;
        /// Sets or clears the voice mail access numbers.
        pub fn set_telephone_access_numbers(&self, id: MailboxId, numbers: Option<&str>) -> Result<(), StoreError>;

        /// The PIN policy named `name` (case-insensitive), if any.
        pub fn policy(&self, name: &str) -> Result<Option<PinPolicy>, StoreError>;
        /// Creates or replaces a PIN policy ([`SqliteStore::set_policy`]).
        pub fn set_policy(&self, name: &str, policy: &PinPolicy) -> Result<(), StoreError>;
        /// All PIN policies, by name.
        pub fn policies(&self) -> Result<Vec<(String, PinPolicy)>, StoreError>;
        /// Assigns a policy to a mailbox ([`SqliteStore::set_mailbox_policy`]).
        pub fn set_mailbox_policy(&self, id: MailboxId, policy: &str) -> Result<(), StoreError>;

        /// Changes a PIN as the phone does ([`SqliteStore::change_pin`]).
        pub fn change_pin(&self, user: &str, old: &str, new: &str) -> Result<(), ChangePinError>;
        /// Lifts a lockout ([`SqliteStore::unlock`]).
        pub fn unlock(&self, id: MailboxId) -> Result<(), StoreError>;
        /// Checks a PIN at a phone logon ([`SqliteStore::check_pin`]).
        pub fn check_pin(&self, user: &str, pin: &str) -> Result<PinCheck, StoreError>;
        /// Lines PINs up with the PIN record ([`SqliteStore::match_pin_record`]).
        pub fn match_pin_record(&self, id: MailboxId, pins: &[&str]) -> Result<PinRecordMatch, StoreError>;
        /// How many times the PIN was set ([`SqliteStore::pin_changes`]).
        pub fn pin_changes(&self, id: MailboxId) -> Result<u64, StoreError>;

        /// Removes spool files that no outbox row names ([`SqliteStore::sweep_spool`]).
        pub fn sweep_spool(&self) -> Result<(), StoreError>;
        /// Queued mails after row `after`, oldest first ([`SqliteStore::outbox_pending`]).
        pub fn outbox_pending(&self, after: i64, limit: u32) -> Result<Vec<OutboxMail>, StoreError>;
        /// How many mails the outbox holds.
        pub fn outbox_len(&self) -> Result<u64, StoreError>;
        /// Removes a delivered mail ([`SqliteStore::outbox_remove`]).
        pub fn outbox_remove(&self, id: i64) -> Result<bool, StoreError>;

        /// The GUID that entry ids carry.
        pub fn store_guid(&self) -> Result<[u8; 16], StoreError>;
        /// Stores a voice message ([`SqliteStore::add_voice_message`]).
        pub fn add_voice_message(&self, mailbox: MailboxId, message: NewVoiceMessage<'_>) -> Result<VoiceMessageInfo, StoreError>;
        /// Removes a voice message.
        pub fn remove_voice_message(&self, id: VoiceMessageId) -> Result<(), StoreError>;
        /// The voice messages of `mailbox`, oldest first.
        pub fn voice_messages(&self, mailbox: MailboxId) -> Result<Vec<VoiceMessageInfo>, StoreError>;
        /// The voice message an entry id names ([`SqliteStore::voice_message`]).
        pub fn voice_message(&self, mailbox: MailboxId, entry_id: &str) -> Result<VoiceMessage, VoiceMessageLookupError>;
        /// The audio of a voice message of `mailbox` ([`SqliteStore::voice_message_audio`]).
        pub fn voice_message_audio(&self, mailbox: MailboxId, id: VoiceMessageId) -> Result<Option<Vec<u8>>, StoreError>;
        /// Marks a voice message heard ([`SqliteStore::mark_voice_message_heard`]).
        pub fn mark_voice_message_heard(&self, mailbox: MailboxId, id: VoiceMessageId) -> Result<bool, StoreError>;
        /// Deletes a voice message of `mailbox` ([`SqliteStore::delete_voice_message`]).
        pub fn delete_voice_message(&self, mailbox: MailboxId, id: VoiceMessageId) -> Result<bool, StoreError>;
        /// Stores a greeting ([`SqliteStore::set_greeting`]).
        pub fn set_greeting(&self, mailbox: MailboxId, kind: GreetingType, audio: &[u8]) -> Result<(), StoreError>;
        /// A greeting, if one was set.
        pub fn greeting(&self, mailbox: MailboxId, kind: GreetingType) -> Result<Option<Vec<u8>>, StoreError>;
    }

    /// Claims queued mail `id` for delivery by this process for `lease`: false when another
    /// process holds it (its lease not yet run out). On SQLite (one process per data
    /// directory) always true; on PostgreSQL see [`PgStore::outbox_claim`].
    pub fn outbox_claim(&self, id: i64, lease: Duration) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(true),
            Backend::Postgres(p) => p.outbox_claim(id, lease),
        }
    }

    /// Records a failed delivery attempt of mail `id`, due again after `retry_in`: on
    /// PostgreSQL no instance claims it before then; on SQLite the outbox of the one process
    /// keeps the time itself.
    pub fn outbox_record_failure(&self, id: i64, retry_in: Duration) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.outbox_record_failure(id),
            Backend::Postgres(p) => p.outbox_record_failure(id, retry_in),
        }
    }

    /// Resets the PIN without mailing it ([`SqliteStore::reset_pin`]).
    pub fn reset_pin<R>(
        &self,
        id: MailboxId,
        rng: &mut R,
    ) -> Result<String, ResetPinError<std::convert::Infallible>>
    where
        R: CryptoRng + RngCore + ?Sized,
    {
        match &self.backend {
            Backend::Sqlite(s) => s.reset_pin(id, rng),
            Backend::Postgres(p) => p.reset_pin(id, rng),
        }
    }

    /// The ResetPIN step: a new PIN and its queued mail, all-or-nothing
    /// ([`SqliteStore::reset_pin_queued`]; on PostgreSQL, serialised per mailbox across
    /// instances by a row lock, see `postgres::pins`).
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
        match &self.backend {
            Backend::Sqlite(s) => s.reset_pin_queued(id, rng, reason, render),
            Backend::Postgres(p) => p.reset_pin_queued(id, rng, reason, render),
        }
    }
}

impl From<SqliteStore> for Store {
    fn from(s: SqliteStore) -> Self {
        Store {
            backend: Backend::Sqlite(s),
        }
    }
}

impl From<PgStore> for Store {
    fn from(p: PgStore) -> Self {
        Store {
            backend: Backend::Postgres(p),
        }
    }
}
