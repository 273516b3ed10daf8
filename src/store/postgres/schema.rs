//! The PostgreSQL schema. Its version is the row of `umws_schema`; [`MIGRATIONS`] are applied in
//! order at start, each in a transaction, while holding a session advisory lock, so that
//! instances starting at once migrate one after the other (the later ones find the work done).
//! A database of a newer program is refused.
//!
//! The tables are those of the SQLite schema at its current version, with PostgreSQL's types
//! (`BIGINT` counts and times, `BOOLEAN`, `BYTEA`), and with what several instances need: the
//! outbox has no `message` column at all (the mail lives in the spool only) and has lease
//! columns; triggers announce every commit that changes a mailbox or a policy on the channel
//! `umws_changes` (see `PgStore::change_version`).

use crate::store::StoreError;

/// The key of the advisory lock held while migrating ("umws" in ASCII).
const MIGRATION_LOCK: i64 = 0x756d_7773;

/// The schema, one entry per version: entry `i` turns version `i` into version `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE policies (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL,
        min_pin_length BIGINT NOT NULL,
        pin_lifetime_days BIGINT,                 -- NULL = Unlimited
        pin_history_count BIGINT NOT NULL,
        allow_common_patterns BOOLEAN NOT NULL,
        logon_failures_before_pin_reset BIGINT,   -- NULL = Unlimited
        max_logon_attempts BIGINT,                -- NULL = Unlimited
        reset_pin_text TEXT NOT NULL
    );
    CREATE UNIQUE INDEX policies_by_name ON policies (lower(name));
    INSERT INTO policies (name, min_pin_length, pin_lifetime_days, pin_history_count,
        allow_common_patterns, logon_failures_before_pin_reset, max_logon_attempts,
        reset_pin_text)
        VALUES ('Default', 6, 60, 5, false, 5, 15, '');
    CREATE TABLE mailboxes (
        id BIGSERIAL PRIMARY KEY,
        user_key TEXT NOT NULL UNIQUE,            -- normalize_user(user_name)
        user_name TEXT NOT NULL,
        password_hash TEXT NOT NULL,              -- argon2id PHC string
        um_enabled BOOLEAN NOT NULL,
        extension TEXT,
        email TEXT,
        policy_id BIGINT NOT NULL REFERENCES policies (id),
        pin_hash TEXT,                            -- argon2id PHC string; NULL = no PIN yet
        pin_set_at BIGINT,                        -- unix seconds
        pin_must_change BOOLEAN NOT NULL DEFAULT false,
        failed_logon_count BIGINT NOT NULL DEFAULT 0,
        locked_out BOOLEAN NOT NULL DEFAULT false,
        oof_status BOOLEAN NOT NULL DEFAULT false,
        missed_call_notification_enabled BOOLEAN NOT NULL DEFAULT true,
        play_on_phone_dial_string TEXT,
        telephone_access_folder_email TEXT,
        telephone_access_numbers TEXT
    );
    CREATE TABLE pin_history (
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        seq BIGINT NOT NULL,
        pin_hash TEXT NOT NULL,
        set_at BIGINT NOT NULL,
        PRIMARY KEY (mailbox_id, seq)
    );
    CREATE TABLE outbox (
        id BIGSERIAL PRIMARY KEY,                 -- grows with every mail, never reused
        key TEXT NOT NULL UNIQUE,                 -- idempotency key, part of the Message-ID
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        user_name TEXT NOT NULL,
        recipient TEXT NOT NULL,
        created_at BIGINT NOT NULL,               -- unix seconds
        attempts BIGINT NOT NULL DEFAULT 0,       -- failed deliveries so far
        last_attempt_at BIGINT,                   -- unix seconds of the last failure
        leased_until BIGINT,                      -- unix seconds; NULL = free
        leased_by TEXT                            -- the instance delivering it
    );
    CREATE TABLE pin_resets (
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        at BIGINT NOT NULL                        -- unix seconds
    );
    CREATE INDEX pin_resets_by_mailbox ON pin_resets (mailbox_id, at);
    CREATE TABLE store_identity (
        guid BYTEA NOT NULL CHECK (length(guid) = 16)
    );
    INSERT INTO store_identity (guid) VALUES (uuid_send(gen_random_uuid()));
    CREATE TABLE voice_messages (
        id BIGSERIAL PRIMARY KEY,                 -- the entry id's message counter
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        calling_number TEXT,
        duration_ms BIGINT NOT NULL,
        received_at BIGINT NOT NULL,              -- unix seconds
        audio BYTEA NOT NULL,
        heard_at BIGINT                           -- unix seconds; NULL = new
    );
    CREATE INDEX voice_messages_by_mailbox ON voice_messages (mailbox_id, id);
    CREATE INDEX mailboxes_by_extension ON mailboxes (extension);
    CREATE TABLE greetings (
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('normal', 'oof')),
        audio BYTEA NOT NULL,
        set_at BIGINT NOT NULL,                   -- unix seconds
        PRIMARY KEY (mailbox_id, kind)
    );
    CREATE FUNCTION umws_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('umws_changes', '');
        RETURN NULL;
    END $$;
    CREATE TRIGGER mailboxes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
        ON mailboxes FOR EACH STATEMENT EXECUTE FUNCTION umws_notify_change();
    CREATE TRIGGER policies_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
        ON policies FOR EACH STATEMENT EXECUTE FUNCTION umws_notify_change();",
    // Version 2: the failed-HTTP-logon throttle's counters, shared by the instances.
    "CREATE TABLE http_throttle_key (
        key BYTEA NOT NULL CHECK (length(key) = 32)
    );
    INSERT INTO http_throttle_key (key)
        VALUES (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
    CREATE TABLE http_throttle (
        key BYTEA PRIMARY KEY,                    -- the throttle's digest of the user name
        failures BIGINT NOT NULL,
        last_ms BIGINT NOT NULL,                  -- the server's clock, ms since the epoch
        until_ms BIGINT NOT NULL                  -- the window is open before this
    );
    CREATE INDEX http_throttle_by_until ON http_throttle (until_ms);
    CREATE TABLE http_throttle_clients (
        client BYTEA NOT NULL,                    -- an IPv4 address or an IPv6 /64
        name BYTEA NOT NULL,                      -- the digest of a user name that failed
        at_ms BIGINT NOT NULL,                    -- its last failure from the client
        PRIMARY KEY (client, name)
    );",
    // Version 3: the calls placed by PlayOnPhone and PlayOnPhoneGreeting, so that any instance
    // answers GetCallInfo and Disconnect for a call another one placed (`postgres::calls`).
    // Written by the instance that owns the call as it moves; `hang_up_requested` is set by
    // another instance's Disconnect and executed by the owner. Rows go 15 minutes after the end.
    "CREATE TABLE calls (
        call_id TEXT PRIMARY KEY,
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        instance TEXT NOT NULL,                   -- the owning instance (PgStore::instance_id)
        state TEXT NOT NULL CHECK (state IN ('connecting', 'connected', 'disconnected')),
        cause TEXT NOT NULL,                      -- none, user_busy, no_answer, unavailable, other
        started_at BIGINT NOT NULL,               -- unix seconds
        updated_at BIGINT NOT NULL,               -- unix seconds
        ended_at BIGINT,                          -- unix seconds; NULL = running
        hang_up_requested BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX calls_by_end ON calls (ended_at);",
    // Version 4: the instances' liveness locks (session advisory locks with the first key
    // `LIVENESS_CLASS`, 0x6c697665, and a random second one, held by each instance's change
    // listener). An outbox lease and a call name their holder's key, so that the mails of an
    // instance that died are taken over at once and its calls reported ended at once; NULL when
    // the holder held none (then only the lease's end or the call's heartbeat tells).
    "CREATE FUNCTION umws_alive(lock_key INTEGER) RETURNS BOOLEAN LANGUAGE sql STABLE AS $$
        SELECT EXISTS (
            SELECT 1 FROM pg_locks
            WHERE locktype = 'advisory' AND granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND classid::BIGINT = 1818850917 AND objid::BIGINT = lock_key AND objsubid = 2)
    $$;
    ALTER TABLE outbox ADD COLUMN leased_key INTEGER;
    ALTER TABLE calls ADD COLUMN owner_key INTEGER;",
];

/// Applies the missing migrations on a connection of its own, under the advisory lock.
pub(super) async fn migrate(config: &super::ConnectConfig) -> Result<(), StoreError> {
    let (mut client, connection) = config.connect().await.map_err(super::unavailable)?;
    let driver = tokio::spawn(connection);
    // The lock is the session's: it goes with the connection, whatever happens below.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS umws_schema (version BIGINT NOT NULL);
             INSERT INTO umws_schema (version)
                SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM umws_schema);",
        )
        .await?;
    let found: i64 = client
        .query_one("SELECT version FROM umws_schema", &[])
        .await?
        .get(0);
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        let version = i64::try_from(i + 1).unwrap_or(i64::MAX);
        tx.execute("UPDATE umws_schema SET version = $1", &[&version])
            .await?;
        tx.commit().await?;
    }
    if found < supported {
        tracing::info!(from = found, to = supported, "migrated database schema");
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}
