//! Voice messages and greetings: their records, and the entry ids that name voice messages.
//!
//! A voice message is named outside the store by its **entry id**: the base64 of a binary
//! Message EntryID of MS-OXCDATA 2.2.4.2, 70 bytes, all integers little-endian except the
//! global counters (GLOBCNT, big-endian as in MS-OXCDATA 2.2.1.1):
//!
//! | bytes | field | value here |
//! |---|---|---|
//! | 0..4 | Flags | 0 |
//! | 4..20 | Provider UID | [`PROVIDER_UID`], fixed for umws |
//! | 20..22 | MessageType | 0x0007, eitLTPrivateMessage |
//! | 22..38 | Folder database GUID | the store's GUID (random, made with the database) |
//! | 38..44 | Folder global counter | the mailbox id (the mailbox's voice mail folder) |
//! | 44..46 | Pad | 0 |
//! | 46..62 | Message database GUID | the store's GUID |
//! | 62..68 | Message global counter | the voice message's row id |
//! | 68..70 | Pad | 0 |
//!
//! [`EntryId::parse`] refuses bad base64, another length, nonzero flags or padding, another
//! provider or message type ([`EntryIdError`]); the store then refuses an entry id of another
//! store (database GUID), of an unknown message, or of another mailbox's message. All of these
//! are `InvalidObjectIdException` for a client (`crate::fault`).

use base64::Engine as _;

use super::{MailboxId, StoreError};

/// The Provider UID of umws's entry ids (a fixed random UID, as a MAPI store provider has one).
pub const PROVIDER_UID: [u8; 16] = [
    0x5b, 0x1e, 0x9a, 0x3c, 0x77, 0x02, 0x4d, 0x8e, 0xa1, 0x6f, 0x0c, 0x55, 0xd3, 0x28, 0xe4, 0x91,
];

/// The MessageType of a message in a private mailbox (eitLTPrivateMessage).
pub const PRIVATE_MESSAGE: u16 = 0x0007;

/// The length of a binary Message EntryID.
pub const ENTRY_ID_LEN: usize = 70;

/// The database id of a voice message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VoiceMessageId(pub i64);

/// The fields of a Message EntryID that vary (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryId {
    /// The store's GUID (folder and message database GUID).
    pub store_guid: [u8; 16],
    /// The folder global counter: the mailbox id.
    pub folder: u64,
    /// The message global counter: the voice message id.
    pub message: u64,
}

/// The largest value of a 6-byte global counter.
const MAX_GLOBCNT: u64 = (1 << 48) - 1;

fn globcnt(value: u64) -> [u8; 6] {
    let b = value.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn read_globcnt(b: &[u8]) -> u64 {
    b.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

impl EntryId {
    /// The entry id of voice message `message` of `mailbox` in the store `store_guid`.
    pub fn new(store_guid: [u8; 16], mailbox: MailboxId, message: VoiceMessageId) -> EntryId {
        EntryId {
            store_guid,
            folder: u64::try_from(mailbox.0).unwrap_or(0) & MAX_GLOBCNT,
            message: u64::try_from(message.0).unwrap_or(0) & MAX_GLOBCNT,
        }
    }

    /// The 70 bytes.
    pub fn to_bytes(&self) -> [u8; ENTRY_ID_LEN] {
        let mut b = [0u8; ENTRY_ID_LEN];
        b[4..20].copy_from_slice(&PROVIDER_UID);
        b[20..22].copy_from_slice(&PRIVATE_MESSAGE.to_le_bytes());
        b[22..38].copy_from_slice(&self.store_guid);
        b[38..44].copy_from_slice(&globcnt(self.folder));
        b[46..62].copy_from_slice(&self.store_guid);
        b[62..68].copy_from_slice(&globcnt(self.message));
        b
    }

    /// The base64 text (standard alphabet, padded) that clients see.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.to_bytes())
    }

    /// Parses the base64 text of an entry id (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<EntryId, EntryIdError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| EntryIdError::Base64)?;
        if bytes.len() != ENTRY_ID_LEN {
            return Err(EntryIdError::Length(bytes.len()));
        }
        if bytes[0..4] != [0; 4] || bytes[44..46] != [0; 2] || bytes[68..70] != [0; 2] {
            return Err(EntryIdError::Reserved);
        }
        if bytes[4..20] != PROVIDER_UID {
            return Err(EntryIdError::Provider);
        }
        if bytes[20..22] != PRIVATE_MESSAGE.to_le_bytes() {
            return Err(EntryIdError::MessageType);
        }
        if bytes[22..38] != bytes[46..62] {
            return Err(EntryIdError::UnknownMessage);
        }
        let mut store_guid = [0u8; 16];
        store_guid.copy_from_slice(&bytes[22..38]);
        Ok(EntryId {
            store_guid,
            folder: read_globcnt(&bytes[38..44]),
            message: read_globcnt(&bytes[62..68]),
        })
    }
}

/// Why an entry id does not name one of the caller's voice messages.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryIdError {
    /// Not base64.
    #[error("the entry id is not base64")]
    Base64,
    /// Not 70 bytes.
    #[error("the entry id is {0} bytes long, not 70")]
    Length(usize),
    /// Flags or padding not zero.
    #[error("the entry id's flags or padding are not zero")]
    Reserved,
    /// Another store provider's entry id.
    #[error("the entry id is of another store provider")]
    Provider,
    /// Not the entry id of a private message.
    #[error("the entry id does not name a message")]
    MessageType,
    /// No such message in this store (another store's GUID, or a removed or never-made
    /// message).
    #[error("no voice message has this entry id")]
    UnknownMessage,
    /// The message is another mailbox's.
    #[error("the voice message is another mailbox's")]
    OtherMailbox,
}

/// Why looking up a voice message by entry id failed.
#[derive(Debug, thiserror::Error)]
pub enum VoiceMessageLookupError {
    /// The entry id does not name one of the caller's voice messages.
    #[error(transparent)]
    EntryId(#[from] EntryIdError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A voice message as listed (without its audio).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceMessageInfo {
    /// Its id.
    pub id: VoiceMessageId,
    /// Its entry id (base64).
    pub entry_id: String,
    /// The mailbox it belongs to.
    pub mailbox_id: MailboxId,
    /// The calling number, when known.
    pub calling_number: Option<String>,
    /// The length of the audio in milliseconds.
    pub duration_ms: u64,
    /// When it was received, in unix seconds.
    pub received_at: i64,
    /// Whether it was listened to by phone (a new message is not).
    pub heard: bool,
}

/// A voice message with its audio.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceMessage {
    /// What the listing shows.
    pub info: VoiceMessageInfo,
    /// The audio: 8 kHz mono 16-bit little-endian PCM (see `crate::audio::Audio`).
    pub audio: Vec<u8>,
}

/// A new voice message.
#[derive(Clone, Debug)]
pub struct NewVoiceMessage<'a> {
    /// The calling number, when known.
    pub calling_number: Option<&'a str>,
    /// The length of the audio in milliseconds.
    pub duration_ms: u64,
    /// The audio: 8 kHz mono 16-bit little-endian PCM.
    pub audio: &'a [u8],
}

/// The two greetings of a mailbox (`UMGreetingType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GreetingType {
    /// `NormalCustom`: played when the user is not out of office.
    NormalCustom,
    /// `OofCustom`: played when the user is out of office.
    OofCustom,
}

impl GreetingType {
    /// The value stored in the database.
    pub fn as_db(self) -> &'static str {
        match self {
            GreetingType::NormalCustom => "normal",
            GreetingType::OofCustom => "oof",
        }
    }

    /// The `UMGreetingType` value.
    pub fn schema_name(self) -> &'static str {
        match self {
            GreetingType::NormalCustom => "NormalCustom",
            GreetingType::OofCustom => "OofCustom",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    proptest! {
        #[test]
        fn entry_ids_round_trip(guid: [u8; 16], mailbox in 1i64..=(1 << 48) - 1,
                                message in 1i64..=(1 << 48) - 1) {
            let id = EntryId::new(guid, MailboxId(mailbox), VoiceMessageId(message));
            let text = id.to_base64();
            prop_assert_eq!(base64::engine::general_purpose::STANDARD.decode(&text).unwrap().len(), 70);
            let back = EntryId::parse(&text).unwrap();
            prop_assert_eq!(back, id);
            prop_assert_eq!(back.folder as i64, mailbox);
            prop_assert_eq!(back.message as i64, message);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,120}") {
            let _ = EntryId::parse(&text);
        }
    }

    #[test]
    fn layout_is_the_message_entry_id() {
        let id = EntryId::new([0xAB; 16], MailboxId(0x0102), VoiceMessageId(0x030405));
        let b = id.to_bytes();
        assert_eq!(&b[0..4], &[0; 4]);
        assert_eq!(&b[4..20], &PROVIDER_UID);
        assert_eq!(&b[20..22], &[7, 0]);
        assert_eq!(&b[22..38], &[0xAB; 16]);
        assert_eq!(&b[38..44], &[0, 0, 0, 0, 1, 2]);
        assert_eq!(&b[46..62], &[0xAB; 16]);
        assert_eq!(&b[62..68], &[0, 0, 0, 3, 4, 5]);
        assert_eq!(&b[68..70], &[0, 0]);
    }

    #[test]
    fn bad_entry_ids_are_refused() {
        let good = EntryId::new([1; 16], MailboxId(1), VoiceMessageId(1)).to_bytes();
        assert_eq!(EntryId::parse("not base64!"), Err(EntryIdError::Base64));
        assert_eq!(
            EntryId::parse(&b64(&good[..69])),
            Err(EntryIdError::Length(69))
        );
        assert_eq!(EntryId::parse(""), Err(EntryIdError::Length(0)));
        let mut bad = good;
        bad[5] ^= 1;
        assert_eq!(EntryId::parse(&b64(&bad)), Err(EntryIdError::Provider));
        let mut bad = good;
        bad[0] = 1;
        assert_eq!(EntryId::parse(&b64(&bad)), Err(EntryIdError::Reserved));
        let mut bad = good;
        bad[20] = 1;
        assert_eq!(EntryId::parse(&b64(&bad)), Err(EntryIdError::MessageType));
        let mut bad = good;
        bad[50] ^= 1;
        assert_eq!(
            EntryId::parse(&b64(&bad)),
            Err(EntryIdError::UnknownMessage)
        );
    }
}
