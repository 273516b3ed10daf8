//! The voice mail: the mail that carries a voice message into the user's mailbox, as
//! Exchange's UM sends it: subject `Voice Mail from NUMBER (N seconds)`, a short text part, the
//! audio as an `audio/wav` attachment, and the headers `X-CallingTelephoneNumber`,
//! `X-VoiceMessageDuration` (seconds) and `X-VoiceMessageEntryId` (the message's entry id, so
//! that a mail reader or a test can name the message to the web service).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox as Address, MultiPart, SinglePart};
use lettre::Message;

use super::{host_name, MailError};

/// The header with the calling number (`Unknown` when there is none).
pub const CALLING_NUMBER_HEADER: &str = "X-CallingTelephoneNumber";
/// The header with the duration in seconds.
pub const DURATION_HEADER: &str = "X-VoiceMessageDuration";
/// The header with the base64 entry id of the voice message.
pub const ENTRY_ID_HEADER: &str = "X-VoiceMessageEntryId";

/// What the voice mail says.
#[derive(Clone, Debug)]
pub struct VoiceMail<'a> {
    /// The user the mail goes to.
    pub user: &'a str,
    /// The user's email address, if the mailbox has one (else `<user>@localhost`).
    pub email: Option<&'a str>,
    /// The calling number, if known.
    pub calling_number: Option<&'a str>,
    /// The duration in whole seconds.
    pub duration_secs: u64,
    /// The entry id (base64).
    pub entry_id: &'a str,
    /// When the message was received, in unix seconds.
    pub received_at: i64,
    /// The audio as a WAV file.
    pub wav: Vec<u8>,
}

/// The subject: `Voice Mail from NUMBER (N seconds)`, with `Unknown` for no number.
pub fn subject(calling_number: Option<&str>, duration_secs: u64) -> String {
    // One fixed form, "(N seconds)" for every N, that mail rules can match.
    format!(
        "Voice Mail from {} ({duration_secs} seconds)",
        calling_number.unwrap_or("Unknown")
    )
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// Builds the voice mail from `from`.
pub fn voice_mail_message(mail: &VoiceMail<'_>, from: &Address) -> Result<Message, MailError> {
    let email = match mail.email {
        Some(email) => email.parse::<lettre::Address>(),
        None => lettre::Address::new(mail.user, "localhost"),
    }
    .map_err(|source| MailError::Address {
        which: "To",
        source,
    })?;
    let number = mail.calling_number.unwrap_or("Unknown");
    let received = UNIX_EPOCH + Duration::from_secs(u64::try_from(mail.received_at).unwrap_or(0));
    let text = format!(
        "You received a voice message from {number} ({} seconds). The recording is attached.\n",
        mail.duration_secs
    );
    let audio = Attachment::new("voicemail.wav".to_string()).body(
        mail.wav.clone(),
        ContentType::parse("audio/wav").map_err(|_| MailError::ContentType("audio/wav"))?,
    );
    Message::builder()
        .from(from.clone())
        .to(Address::new(None, email))
        .subject(subject(mail.calling_number, mail.duration_secs))
        .date(if mail.received_at > 0 {
            received
        } else {
            SystemTime::now()
        })
        .message_id(Some(format!("<{}@{}>", uuid::Uuid::new_v4(), host_name())))
        .raw_header(header(CALLING_NUMBER_HEADER, number.to_string()))
        .raw_header(header(DURATION_HEADER, mail.duration_secs.to_string()))
        .raw_header(header(ENTRY_ID_HEADER, mail.entry_id.to_string()))
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(text))
                .singlepart(audio),
        )
        .map_err(MailError::Build)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::default_from;

    #[test]
    fn voice_mail_has_subject_headers_and_attachment() {
        let mail = VoiceMail {
            user: "alice",
            email: None,
            calling_number: Some("+14255550100"),
            duration_secs: 7,
            entry_id: "AAAA",
            received_at: 1_700_000_000,
            wav: b"RIFF....WAVE".to_vec(),
        };
        let m = String::from_utf8(
            voice_mail_message(&mail, &default_from())
                .unwrap()
                .formatted(),
        )
        .unwrap();
        for needle in [
            "Subject: Voice Mail from +14255550100 (7 seconds)\r\n",
            "To: alice@localhost\r\n",
            "X-CallingTelephoneNumber: +14255550100\r\n",
            "X-VoiceMessageDuration: 7\r\n",
            "X-VoiceMessageEntryId: AAAA\r\n",
            "Content-Type: audio/wav\r\n",
            "filename=\"voicemail.wav\"",
        ] {
            assert!(m.contains(needle), "missing {needle:?} in\n{m}");
        }
        assert_eq!(subject(None, 1), "Voice Mail from Unknown (1 seconds)");
    }
}
