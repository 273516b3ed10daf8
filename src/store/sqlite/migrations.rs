//! The schema. Its version is kept in SQLite's `user_version`; [`MIGRATIONS`] are applied in
//! order when the file is opened, and a file from a newer program is refused.

use rusqlite::{params, Connection, TransactionBehavior};

use crate::store::{display_user, normalize_user, StoreError};

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
    // the message lives in a spool file (`crate::store::spool`), and `user_key` is the NFC +
    // case-fold key of `normalize_user` (recomputed by `rekey_users` on upgrade).
    "CREATE TABLE pin_resets (
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        at INTEGER NOT NULL                       -- unix seconds
    );
    CREATE INDEX pin_resets_by_mailbox ON pin_resets (mailbox_id, at);",
    // Version 4: voice messages and greetings (see `crate::store::voicemail`). Audio is 8 kHz
    // mono 16-bit little-endian PCM. `store_identity` holds the random GUID that entry ids
    // carry as their database GUID, so that an entry id of another data directory is unknown.
    "CREATE TABLE store_identity (
        guid BLOB NOT NULL CHECK (length(guid) = 16)
    );
    INSERT INTO store_identity (guid) VALUES (randomblob(16));
    CREATE TABLE voice_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,     -- the entry id's message counter, never reused
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        calling_number TEXT,
        duration_ms INTEGER NOT NULL,
        received_at INTEGER NOT NULL,             -- unix seconds
        audio BLOB NOT NULL
    );
    CREATE INDEX voice_messages_by_mailbox ON voice_messages (mailbox_id, id);
    CREATE TABLE greetings (
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('normal', 'oof')),
        audio BLOB NOT NULL,
        set_at INTEGER NOT NULL,                  -- unix seconds
        PRIMARY KEY (mailbox_id, kind)
    );",
    // Version 5: subscriber access by phone. `heard_at` marks a voice message listened to by
    // phone (NULL = new); mailboxes are looked up by the extension a caller keys in.
    "ALTER TABLE voice_messages ADD COLUMN heard_at INTEGER;  -- unix seconds; NULL = new
    CREATE INDEX mailboxes_by_extension ON mailboxes (extension);",
];

/// The schema version from which outbox messages are spooled and user keys are NFC-folded.
const SPOOL_VERSION: i64 = 3;

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{alice, store};
    use super::super::Store;
    use super::*;

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

    /// Turns the database of `store` back into version 2 (version 3 added the `pin_resets`
    /// table, version 4 the voice mail tables, version 5 an index on the extension) and opens
    /// it again, which migrates it to the current version.
    fn reopen_as_version_2(dir: &std::path::Path, store: Store) -> Store {
        let conn = store.conn().unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "DROP TABLE pin_resets; DROP TABLE store_identity; DROP TABLE voice_messages;
             DROP TABLE greetings; DROP INDEX mailboxes_by_extension;",
        )
        .unwrap();
        drop(conn);
        drop(store);
        Store::open(dir).unwrap()
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
        drop(conn);
        let store = reopen_as_version_2(dir.path(), store);
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
        store
            .conn()
            .unwrap()
            .execute("DELETE FROM mailboxes WHERE id = ?1", [bob.0])
            .unwrap();
        let store = reopen_as_version_2(dir.path(), store);
        let m = store.mailbox("J\u{fc}RGEN").unwrap().unwrap();
        assert_eq!((m.id, m.user.as_str()), (id, "J\u{fc}rgen"));
    }
}
