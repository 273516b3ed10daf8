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

#[cfg(test)]
mod tests {
    use super::super::test_support::{store, users};
    use super::*;

    fn new(audio: &[u8]) -> NewVoiceMessage<'_> {
        NewVoiceMessage {
            calling_number: Some("+14255550100"),
            duration_ms: 1500,
            audio,
        }
    }

    #[test]
    fn phone_access_marks_deletes_and_reads_only_its_own_mailboxs_messages() {
        let (_dir, store) = store();
        let ids = users(&store, 2);
        let a = store.add_voice_message(ids[0], new(&[1, 2])).unwrap();
        assert!(!a.heard);
        // Another mailbox cannot read, mark or delete it.
        assert_eq!(store.voice_message_audio(ids[1], a.id).unwrap(), None);
        assert!(!store.mark_voice_message_heard(ids[1], a.id).unwrap());
        assert!(!store.delete_voice_message(ids[1], a.id).unwrap());
        assert!(!store.voice_messages(ids[0]).unwrap()[0].heard);
        assert_eq!(
            store.voice_message_audio(ids[0], a.id).unwrap(),
            Some(vec![1, 2])
        );
        assert!(store.mark_voice_message_heard(ids[0], a.id).unwrap());
        assert!(store.voice_messages(ids[0]).unwrap()[0].heard);
        assert!(store.voice_message(ids[0], &a.entry_id).unwrap().info.heard);
        assert!(store.delete_voice_message(ids[0], a.id).unwrap());
        assert!(store.voice_messages(ids[0]).unwrap().is_empty());
        assert!(!store.mark_voice_message_heard(ids[0], a.id).unwrap());
    }

    #[test]
    fn a_mailbox_is_found_by_an_extension_only_it_has() {
        let (_dir, store) = store();
        let ids = users(&store, 1);
        let found = store.mailbox_by_extension("36697").unwrap().unwrap();
        assert_eq!(found.id, ids[0]);
        assert_eq!(store.mailbox_by_extension("3669").unwrap(), None);
        // A second mailbox with the same extension: it names neither.
        let mut twin = super::super::test_support::alice();
        twin.user = "twin".into();
        store.add_mailbox(twin).unwrap();
        assert_eq!(store.mailbox_by_extension("36697").unwrap(), None);
    }

    #[test]
    fn messages_are_found_by_entry_id_of_their_own_mailbox_only() {
        let (dir, store) = store();
        let ids = users(&store, 2);
        let a = store.add_voice_message(ids[0], new(&[1, 2, 3, 4])).unwrap();
        let b = store.add_voice_message(ids[1], new(&[5, 6])).unwrap();
        assert_ne!(a.entry_id, b.entry_id);
        let found = store.voice_message(ids[0], &a.entry_id).unwrap();
        assert_eq!(found.audio, [1, 2, 3, 4]);
        assert_eq!(found.info, a);
        assert_eq!(
            store.voice_messages(ids[0]).unwrap(),
            std::slice::from_ref(&a)
        );
        assert!(matches!(
            store.voice_message(ids[0], &b.entry_id),
            Err(VoiceMessageLookupError::EntryId(EntryIdError::OtherMailbox))
        ));
        // A forged id naming b's message in a's folder is still another mailbox's message.
        let guid = store.store_guid().unwrap();
        let forged = EntryId::new(guid, ids[0], b.id).to_base64();
        assert!(matches!(
            store.voice_message(ids[0], &forged),
            Err(VoiceMessageLookupError::EntryId(EntryIdError::OtherMailbox))
        ));
        let unknown = EntryId::new(guid, ids[0], VoiceMessageId(999)).to_base64();
        assert!(matches!(
            store.voice_message(ids[0], &unknown),
            Err(VoiceMessageLookupError::EntryId(
                EntryIdError::UnknownMessage
            ))
        ));
        // Another data directory's store has another GUID.
        let (_dir2, other) = super::super::test_support::store();
        assert_ne!(other.store_guid().unwrap(), guid);
        // The GUID is kept across opens.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.store_guid().unwrap(), guid);
        store.remove_voice_message(a.id).unwrap();
        assert!(matches!(
            store.voice_message(ids[0], &a.entry_id),
            Err(VoiceMessageLookupError::EntryId(
                EntryIdError::UnknownMessage
            ))
        ));
    }

    #[test]
    fn refused_entry_ids_are_invalid_object_id_faults() {
        use crate::fault::UmError;
        let (_dir, store) = store();
        let ids = users(&store, 1);
        for bad in ["%%%", "AAAA", ""] {
            let err = store.voice_message(ids[0], bad).unwrap_err();
            assert!(matches!(UmError::from(err), UmError::InvalidObjectId));
        }
    }

    #[test]
    fn greetings_are_per_mailbox_and_type_and_replaced() {
        let (_dir, store) = store();
        let ids = users(&store, 2);
        assert_eq!(
            store.greeting(ids[0], GreetingType::NormalCustom).unwrap(),
            None
        );
        store
            .set_greeting(ids[0], GreetingType::NormalCustom, &[1, 1])
            .unwrap();
        store
            .set_greeting(ids[0], GreetingType::OofCustom, &[2, 2])
            .unwrap();
        store
            .set_greeting(ids[0], GreetingType::NormalCustom, &[3, 3])
            .unwrap();
        assert_eq!(
            store.greeting(ids[0], GreetingType::NormalCustom).unwrap(),
            Some(vec![3, 3])
        );
        assert_eq!(
            store.greeting(ids[0], GreetingType::OofCustom).unwrap(),
            Some(vec![2, 2])
        );
        assert_eq!(
            store.greeting(ids[1], GreetingType::OofCustom).unwrap(),
            None
        );
        assert!(matches!(
            store.set_greeting(MailboxId(999), GreetingType::OofCustom, &[1]),
            Err(StoreError::UnknownMailbox(MailboxId(999)))
        ));
        assert!(matches!(
            store.add_voice_message(MailboxId(999), new(&[1])),
            Err(StoreError::UnknownMailbox(MailboxId(999)))
        ));
    }
}
