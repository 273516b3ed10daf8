//! Voice messages and greetings (see `crate::store::voicemail` for the records and entry ids).

use rusqlite::{params, OptionalExtension, Row};

use super::{unix_now, Store};
use crate::store::voicemail::{
    EntryId, EntryIdError, GreetingType, NewVoiceMessage, VoiceMessage, VoiceMessageId,
    VoiceMessageInfo, VoiceMessageLookupError,
};
use crate::store::{MailboxId, StoreError};

/// The longest calling number stored (characters).
pub const MAX_CALLING_NUMBER_CHARS: usize = 64;

fn is_foreign_key_error(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
    )
}

impl Store {
    /// The GUID of this store, which entry ids carry as their database GUID.
    pub fn store_guid(&self) -> Result<[u8; 16], StoreError> {
        let guid: Vec<u8> = self
            .conn()?
            .query_row("SELECT guid FROM store_identity", [], |r| r.get(0))?;
        guid.try_into().map_err(|_| StoreError::InvalidInput {
            field: "store GUID",
            reason: "not 16 bytes",
        })
    }

    fn info(&self, guid: [u8; 16], r: &Row<'_>) -> rusqlite::Result<VoiceMessageInfo> {
        let id = VoiceMessageId(r.get(0)?);
        let mailbox_id = MailboxId(r.get(1)?);
        Ok(VoiceMessageInfo {
            id,
            entry_id: EntryId::new(guid, mailbox_id, id).to_base64(),
            mailbox_id,
            calling_number: r.get(2)?,
            duration_ms: r.get(3)?,
            received_at: r.get(4)?,
            heard: r.get(5)?,
        })
    }

    /// Stores a voice message of `mailbox`; returns it as listed (with its entry id).
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
        let guid = self.store_guid()?;
        let conn = self.conn()?;
        let received_at = unix_now();
        let inserted = conn
            .prepare_cached(
                "INSERT INTO voice_messages (mailbox_id, calling_number, duration_ms,
                    received_at, audio) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                mailbox.0,
                message.calling_number,
                message.duration_ms,
                received_at,
                message.audio
            ]);
        match inserted {
            Ok(_) => {}
            Err(e) if is_foreign_key_error(&e) => return Err(StoreError::UnknownMailbox(mailbox)),
            Err(e) => return Err(e.into()),
        }
        let id = VoiceMessageId(conn.last_insert_rowid());
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

    /// Removes a voice message (for a deposit whose mail could not be delivered).
    pub fn remove_voice_message(&self, id: VoiceMessageId) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM voice_messages WHERE id = ?1", [id.0])?;
        Ok(())
    }

    /// The voice messages of `mailbox`, oldest first.
    pub fn voice_messages(&self, mailbox: MailboxId) -> Result<Vec<VoiceMessageInfo>, StoreError> {
        let guid = self.store_guid()?;
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, mailbox_id, calling_number, duration_ms, received_at,
                heard_at IS NOT NULL
             FROM voice_messages WHERE mailbox_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([mailbox.0], |r| self.info(guid, r))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The voice message of `mailbox` that `entry_id` (base64) names. An entry id that is
    /// malformed, of another store, of no message or of another mailbox's message is an
    /// [`EntryIdError`].
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
        let conn = self.conn().map_err(VoiceMessageLookupError::Store)?;
        let found = conn
            .prepare_cached(
                "SELECT id, mailbox_id, calling_number, duration_ms, received_at,
                    heard_at IS NOT NULL, audio
                 FROM voice_messages WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([id], |r| Ok((self.info(guid, r)?, r.get::<_, Vec<u8>>(6)?)))
                    .optional()
            })
            .map_err(StoreError::from)?;
        let (info, audio) = found.ok_or(EntryIdError::UnknownMessage)?;
        if info.mailbox_id != mailbox || u64::try_from(mailbox.0).ok() != Some(parsed.folder) {
            return Err(EntryIdError::OtherMailbox.into());
        }
        Ok(VoiceMessage { info, audio })
    }

    /// The audio of `mailbox`'s voice message `id` (8 kHz mono 16-bit little-endian PCM), if
    /// that mailbox has it.
    pub fn voice_message_audio(
        &self,
        mailbox: MailboxId,
        id: VoiceMessageId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()?
            .prepare_cached("SELECT audio FROM voice_messages WHERE id = ?1 AND mailbox_id = ?2")?
            .query_row(params![id.0, mailbox.0], |r| r.get(0))
            .optional()?)
    }

    /// Marks `mailbox`'s voice message `id` as heard (listened to by phone); false when that
    /// mailbox has no such message. Marking it again keeps the first time.
    pub fn mark_voice_message_heard(
        &self,
        mailbox: MailboxId,
        id: VoiceMessageId,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn()?
            .prepare_cached(
                "UPDATE voice_messages SET heard_at = coalesce(heard_at, ?3)
             WHERE id = ?1 AND mailbox_id = ?2",
            )?
            .execute(params![id.0, mailbox.0, unix_now()])?;
        Ok(changed > 0)
    }

    /// Deletes `mailbox`'s voice message `id` (a delete by phone); false when that mailbox has
    /// no such message. Its entry id is then unknown.
    pub fn delete_voice_message(
        &self,
        mailbox: MailboxId,
        id: VoiceMessageId,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn()?
            .prepare_cached("DELETE FROM voice_messages WHERE id = ?1 AND mailbox_id = ?2")?
            .execute(params![id.0, mailbox.0])?;
        Ok(changed > 0)
    }

    /// Stores (replacing any earlier one) the greeting `kind` of `mailbox`: 8 kHz mono 16-bit
    /// little-endian PCM.
    pub fn set_greeting(
        &self,
        mailbox: MailboxId,
        kind: GreetingType,
        audio: &[u8],
    ) -> Result<(), StoreError> {
        let result = self
            .conn()?
            .prepare_cached(
                "INSERT INTO greetings (mailbox_id, kind, audio, set_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (mailbox_id, kind) DO UPDATE SET audio = ?3, set_at = ?4",
            )?
            .execute(params![mailbox.0, kind.as_db(), audio, unix_now()]);
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_foreign_key_error(&e) => Err(StoreError::UnknownMailbox(mailbox)),
            Err(e) => Err(e.into()),
        }
    }

    /// The greeting `kind` of `mailbox`, if one was set.
    pub fn greeting(
        &self,
        mailbox: MailboxId,
        kind: GreetingType,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()?
            .prepare_cached("SELECT audio FROM greetings WHERE mailbox_id = ?1 AND kind = ?2")?
            .query_row(params![mailbox.0, kind.as_db()], |r| r.get(0))
            .optional()?)
    }
}
