//! The outbox of PIN mails, voice messages and greetings on PostgreSQL.
//!
//! The mails live in the spool of the data directory, as with SQLite (the database never holds
//! a PIN), so instances that deliver each other's mails share one data directory. What the
//! SQLite store gets from its write lock, this one gets from an advisory lock: every
//! transaction that writes a spool file holds it shared from before the file is created until
//! it ends, and the sweep of orphaned files holds it exclusively, so that it never takes the
//! file of a reset still in flight at another instance for an orphan.
//!
//! Which instance delivers a mail: [`PgStore::outbox_claim`] leases the row (`leased_until`,
//! `leased_by`) with `FOR UPDATE SKIP LOCKED`, so one instance at a time delivers it. The lease
//! also names the holder's liveness lock (`leased_key`, a session advisory lock that the
//! holder's change listener keeps): when an instance dies its connections close, PostgreSQL
//! drops the lock, and another instance takes the mail over at its next look at the outbox
//! (every few seconds) rather than when the lease runs out. Where the holder's death does not
//! close its connections at once (a machine gone without a word), the lease's end is the bound.
//! The price: should the listener's connection alone drop while its instance is delivering, a
//! second instance may deliver the same mail too (with the same Message-ID: at least once), in
//! the moment before the listener holds a lock again and moves its leases to it.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use super::pins::SPOOL_LOCK;
use super::{begin, exec, get_u32, is_state, row, row_opt, rows, unix_now, PgStore};
use crate::store::voicemail::{
    EntryId, EntryIdError, GreetingType, NewVoiceMessage, VoiceMessage, VoiceMessageId,
    VoiceMessageInfo, VoiceMessageLookupError,
};
use crate::store::{MailboxId, OutboxMail, StoreError};

/// The longest calling number stored (characters).
const MAX_CALLING_NUMBER_CHARS: usize = 64;

impl PgStore {
    /// See [`crate::store::Store::sweep_spool`]; runs under the spool lock (see the module
    /// docs).
    pub fn sweep_spool(&self) -> Result<(), StoreError> {
        let spool = &self.shared.spool;
        if spool.keys()?.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        exec(&tx, "SELECT pg_advisory_xact_lock($1)", &[&SPOOL_LOCK])?;
        let mut removed = 0u32;
        for key in spool.keys()? {
            if !queued(&tx, &key)? {
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

    /// Unlinks the spool file of `key` unless an outbox row names it.
    pub(super) fn remove_if_unqueued(&self, key: &str) -> Result<(), StoreError> {
        if !queued(&self.conn()?, key)? {
            self.shared.spool.remove(key)?;
        }
        Ok(())
    }

    /// See [`crate::store::Store::outbox_pending`]. A row whose spool file is missing is left
    /// alone and logged (unlike on SQLite, where it is removed): another instance may be
    /// delivering it right now, or the instances do not share their data directory.
    pub fn outbox_pending(&self, after: i64, limit: u32) -> Result<Vec<OutboxMail>, StoreError> {
        let found = rows(
            &self.conn()?,
            "SELECT id, key, mailbox_id, user_name, recipient, created_at, attempts
             FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &i64::from(limit)],
        )?;
        let mut mails = Vec::with_capacity(found.len());
        for r in &found {
            let key: String = r.try_get(1)?;
            let Some(message) = self.shared.spool.read(&key)? else {
                tracing::debug!(key = %key, "queued PIN mail without a spool file here; left alone");
                continue;
            };
            mails.push(OutboxMail {
                id: r.try_get(0)?,
                key,
                mailbox_id: MailboxId(r.try_get(2)?),
                user: r.try_get(3)?,
                recipient: r.try_get(4)?,
                message,
                created_at: r.try_get(5)?,
                attempts: get_u32(r, 6)?,
            });
        }
        Ok(mails)
    }

    /// See [`crate::store::Store::outbox_len`].
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = row(&self.conn()?, "SELECT COUNT(*) FROM outbox", &[])?.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// See [`crate::store::Store::outbox_claim`]: leases mail `id` to this instance for
    /// `lease`, unless another instance holds an unexpired lease (and is alive: see the
    /// module docs) or has the row locked.
    pub fn outbox_claim(&self, id: i64, lease: Duration) -> Result<bool, StoreError> {
        let now = unix_now();
        let until = now.saturating_add(i64::try_from(lease.as_secs()).unwrap_or(i64::MAX));
        let claimed = row_opt(
            &self.conn()?,
            "UPDATE outbox SET leased_until = $3, leased_by = $4, leased_key = $5
             WHERE id = (SELECT id FROM outbox
                         WHERE id = $1 AND CASE
                             WHEN leased_until IS NULL OR leased_until <= $2
                                  OR leased_by = $4 THEN true
                             WHEN leased_by IS NULL OR leased_key IS NULL THEN false
                             ELSE NOT umws_alive(leased_key)
                         END
                         FOR UPDATE SKIP LOCKED)
             RETURNING id",
            &[&id, &now, &until, &self.shared.instance, &self.live_key()],
        )?;
        Ok(claimed.is_some())
    }

    /// See [`crate::store::Store::outbox_remove`].
    pub fn outbox_remove(&self, id: i64) -> Result<bool, StoreError> {
        let key = row_opt(
            &self.conn()?,
            "DELETE FROM outbox WHERE id = $1 RETURNING key",
            &[&id],
        )?;
        match key {
            Some(r) => {
                let key: String = r.try_get(0)?;
                self.shared.spool.remove(&key)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// See [`crate::store::Store::outbox_record_failure`]: counts the attempt and turns this
    /// instance's lease into a wait of `retry_in` for every instance.
    pub fn outbox_record_failure(&self, id: i64, retry_in: Duration) -> Result<(), StoreError> {
        let now = unix_now();
        let wait = i64::try_from(retry_in.as_secs()).unwrap_or(i64::MAX);
        exec(
            &self.conn()?,
            "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = $2,
                leased_until = $3, leased_by = NULL, leased_key = NULL
             WHERE id = $1",
            &[&id, &now, &now.saturating_add(wait)],
        )?;
        Ok(())
    }

    fn info(guid: [u8; 16], r: &Row) -> Result<VoiceMessageInfo, StoreError> {
        let id = VoiceMessageId(r.try_get(0)?);
        let mailbox_id = MailboxId(r.try_get(1)?);
        let duration: i64 = r.try_get(3)?;
        Ok(VoiceMessageInfo {
            id,
            entry_id: EntryId::new(guid, mailbox_id, id).to_base64(),
            mailbox_id,
            calling_number: r.try_get(2)?,
            duration_ms: u64::try_from(duration).unwrap_or(0),
            received_at: r.try_get(4)?,
            heard: r.try_get(5)?,
        })
    }

    /// See [`crate::store::Store::add_voice_message`].
    pub fn add_voice_message(
        &self,
        mailbox: MailboxId,
        message: NewVoiceMessage<'_>,
    ) -> Result<VoiceMessageInfo, StoreError> {
        if let Some(number) = message.calling_number {
            if number.chars().count() > MAX_CALLING_NUMBER_CHARS
                || number.chars().any(char::is_control)
            {
                return Err(StoreError::InvalidInput {
                    field: "calling number",
                    reason: "longer than 64 characters or contains a control character",
                });
            }
        }
        let duration =
            i64::try_from(message.duration_ms).map_err(|_| StoreError::InvalidInput {
                field: "duration",
                reason: "out of range",
            })?;
        let guid = self.store_guid()?;
        let received_at = unix_now();
        let inserted = row(
            &self.conn()?,
            "INSERT INTO voice_messages (mailbox_id, calling_number, duration_ms, received_at,
                audio) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &mailbox.0,
                &message.calling_number,
                &duration,
                &received_at,
                &message.audio,
            ],
        );
        let id = match inserted {
            Ok(r) => VoiceMessageId(r.try_get(0)?),
            Err(e) if is_state(&e, &SqlState::FOREIGN_KEY_VIOLATION) => {
                return Err(StoreError::UnknownMailbox(mailbox))
            }
            Err(e) => return Err(e),
        };
        Ok(VoiceMessageInfo {
            id,
            entry_id: EntryId::new(guid, mailbox, id).to_base64(),
            mailbox_id: mailbox,
            calling_number: message.calling_number.map(str::to_string),
            duration_ms: message.duration_ms,
            received_at,
            heard: false,
        })
    }

    /// See [`crate::store::Store::remove_voice_message`].
    pub fn remove_voice_message(&self, id: VoiceMessageId) -> Result<(), StoreError> {
        exec(
            &self.conn()?,
            "DELETE FROM voice_messages WHERE id = $1",
            &[&id.0],
        )?;
        Ok(())
    }

    /// See [`crate::store::Store::voice_messages`].
    pub fn voice_messages(&self, mailbox: MailboxId) -> Result<Vec<VoiceMessageInfo>, StoreError> {
        let guid = self.store_guid()?;
        rows(
            &self.conn()?,
            "SELECT id, mailbox_id, calling_number, duration_ms, received_at,
                heard_at IS NOT NULL
             FROM voice_messages WHERE mailbox_id = $1 ORDER BY id",
            &[&mailbox.0],
        )?
        .iter()
        .map(|r| Self::info(guid, r))
        .collect()
    }

    /// See [`crate::store::Store::voice_message`].
    pub fn voice_message(
        &self,
        mailbox: MailboxId,
        entry_id: &str,
    ) -> Result<VoiceMessage, VoiceMessageLookupError> {
        let parsed = EntryId::parse(entry_id)?;
        let guid = self.store_guid()?;
        if parsed.store_guid != guid {
            return Err(EntryIdError::UnknownMessage.into());
        }
        let id = i64::try_from(parsed.message).map_err(|_| EntryIdError::UnknownMessage)?;
        let found = row_opt(
            &self.conn()?,
            "SELECT id, mailbox_id, calling_number, duration_ms, received_at,
                heard_at IS NOT NULL, audio
             FROM voice_messages WHERE id = $1",
            &[&id],
        )?;
        let found = found.ok_or(EntryIdError::UnknownMessage)?;
        let info = Self::info(guid, &found)?;
        let audio: Vec<u8> = found.try_get(6).map_err(StoreError::from)?;
        if info.mailbox_id != mailbox || u64::try_from(mailbox.0).ok() != Some(parsed.folder) {
            return Err(EntryIdError::OtherMailbox.into());
        }
        Ok(VoiceMessage { info, audio })
    }

    /// See [`crate::store::Store::voice_message_audio`].
    pub fn voice_message_audio(
        &self,
        mailbox: MailboxId,
        id: VoiceMessageId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        row_opt(
            &self.conn()?,
            "SELECT audio FROM voice_messages WHERE id = $1 AND mailbox_id = $2",
            &[&id.0, &mailbox.0],
        )?
        .map(|r| r.try_get(0).map_err(StoreError::from))
        .transpose()
    }

    /// See [`crate::store::Store::mark_voice_message_heard`].
    pub fn mark_voice_message_heard(
        &self,
        mailbox: MailboxId,
        id: VoiceMessageId,
    ) -> Result<bool, StoreError> {
        let changed = exec(
            &self.conn()?,
            "UPDATE voice_messages SET heard_at = coalesce(heard_at, $3)
             WHERE id = $1 AND mailbox_id = $2",
            &[&id.0, &mailbox.0, &unix_now()],
        )?;
        Ok(changed > 0)
    }

    /// See [`crate::store::Store::delete_voice_message`].
    pub fn delete_voice_message(
        &self,
        mailbox: MailboxId,
        id: VoiceMessageId,
    ) -> Result<bool, StoreError> {
        let changed = exec(
            &self.conn()?,
            "DELETE FROM voice_messages WHERE id = $1 AND mailbox_id = $2",
            &[&id.0, &mailbox.0],
        )?;
        Ok(changed > 0)
    }

    /// See [`crate::store::Store::set_greeting`].
    pub fn set_greeting(
        &self,
        mailbox: MailboxId,
        kind: GreetingType,
        audio: &[u8],
    ) -> Result<(), StoreError> {
        let result = exec(
            &self.conn()?,
            "INSERT INTO greetings (mailbox_id, kind, audio, set_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (mailbox_id, kind) DO UPDATE SET audio = $3, set_at = $4",
            &[&mailbox.0, &kind.as_db(), &audio, &unix_now()],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_state(&e, &SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(StoreError::UnknownMailbox(mailbox))
            }
            Err(e) => Err(e),
        }
    }

    /// See [`crate::store::Store::greeting`].
    pub fn greeting(
        &self,
        mailbox: MailboxId,
        kind: GreetingType,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        row_opt(
            &self.conn()?,
            "SELECT audio FROM greetings WHERE mailbox_id = $1 AND kind = $2",
            &[&mailbox.0, &kind.as_db()],
        )?
        .map(|r| r.try_get(0).map_err(StoreError::from))
        .transpose()
    }
}

/// Whether an outbox row names `key`.
fn queued(c: &impl GenericClient, key: &str) -> Result<bool, StoreError> {
    Ok(row(
        c,
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE key = $1)",
        &[&key],
    )?
    .try_get(0)?)
}
