//! `umws voicemail`: deposit voice messages into a mailbox and list them.

use std::path::PathBuf;

use clap::Subcommand;

use umws::audio::{self, Audio};
use umws::mail::voicemail::{voice_mail_message, VoiceMail};
use umws::mail::{default_from, MailDelivery as _, Maildir};
use umws::store::voicemail::{NewVoiceMessage, VoiceMessageLookupError};
use umws::store::{Mailbox, Store};

use super::StoreArgs;
use crate::CliError;

#[derive(Debug, Subcommand)]
pub(crate) enum VoicemailCommand {
    /// Store a voice message from a WAV file, deliver it as a voice mail into the user's
    /// Maildir, and print its entry id.
    ///
    /// The WAV may be PCM 8- or 16-bit or G.711 A-law or µ-law, mono or stereo, at 4 to 192 kHz
    /// (stored as 8 kHz 16-bit mono); at most 32 MiB and 10 minutes, not empty and not
    /// silence only.
    #[command(verbatim_doc_comment)]
    Deposit {
        #[command(flatten)]
        store_args: StoreArgs,
        /// User name.
        #[arg(long)]
        user: String,
        /// The WAV file.
        #[arg(long)]
        wav: PathBuf,
        /// The calling telephone number.
        #[arg(long)]
        from: Option<String>,
    },
    /// Write the audio of a voice message, named by its entry id, to a WAV file (8 kHz 16-bit
    /// mono PCM).
    Get {
        #[command(flatten)]
        store_args: StoreArgs,
        /// User name.
        #[arg(long)]
        user: String,
        /// The entry id `umws voicemail deposit` printed.
        #[arg(long)]
        entry_id: String,
        /// The WAV file to write (replaced if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// List the voice messages of a mailbox: entry id, calling number, duration, time
    /// received (UTC), one a line, oldest first.
    List {
        #[command(flatten)]
        store_args: StoreArgs,
        /// User name.
        #[arg(long)]
        user: String,
    },
}

/// The mailbox of `user` in `store`.
pub(crate) fn mailbox_of(store: &Store, user: &str) -> Result<Mailbox, CliError> {
    store
        .mailbox(user)?
        .ok_or_else(|| CliError::UnknownUser(user.to_string()))
}

pub(crate) fn voicemail(cmd: VoicemailCommand) -> Result<(), CliError> {
    match cmd {
        VoicemailCommand::Deposit {
            store_args: StoreArgs { data, database },
            user,
            wav,
            from,
        } => {
            let store = Store::open_with(database.as_deref(), &data, false)?;
            let mailbox = mailbox_of(&store, &user)?;
            let audio = audio::read_wav_file(&wav)?;
            let info = store.add_voice_message(
                mailbox.id,
                NewVoiceMessage {
                    calling_number: from.as_deref(),
                    duration_ms: audio.duration_ms(),
                    audio: &audio.to_le_bytes(),
                },
            )?;
            let delivered = audio
                .to_wav()
                .map_err(CliError::from)
                .and_then(|wav| {
                    let mail = VoiceMail {
                        user: &mailbox.user,
                        email: mailbox.email.as_deref(),
                        calling_number: from.as_deref(),
                        duration_secs: audio.duration_secs(),
                        entry_id: &info.entry_id,
                        received_at: info.received_at,
                        wav,
                    };
                    Ok(voice_mail_message(&mail, &default_from())?)
                })
                .and_then(|message| {
                    Ok(Maildir::in_data_dir(&data).deliver(&mailbox.user, &message)?)
                });
            if let Err(e) = delivered {
                // No stored message without its mail.
                store.remove_voice_message(info.id)?;
                return Err(e);
            }
            println!("{}", info.entry_id);
            Ok(())
        }
        VoicemailCommand::Get {
            store_args: StoreArgs { data, database },
            user,
            entry_id,
            out,
        } => {
            let store = Store::open_with(database.as_deref(), &data, false)?;
            let mailbox = mailbox_of(&store, &user)?;
            let message = store
                .voice_message(mailbox.id, &entry_id)
                .map_err(|e| match e {
                    VoiceMessageLookupError::EntryId(e) => CliError::EntryId(e),
                    VoiceMessageLookupError::Store(e) => CliError::Store(e),
                })?;
            let wav = Audio::from_le_bytes(&message.audio).to_wav()?;
            std::fs::write(&out, wav).map_err(|source| CliError::Write {
                path: out.clone(),
                source,
            })?;
            Ok(())
        }
        VoicemailCommand::List {
            store_args: StoreArgs { data, database },
            user,
        } => {
            let store = Store::open_with(database.as_deref(), &data, false)?;
            let mailbox = mailbox_of(&store, &user)?;
            for m in store.voice_messages(mailbox.id)? {
                println!(
                    "{}\tfrom={}\tseconds={}.{:03}\treceived={}\t{}",
                    m.entry_id,
                    m.calling_number.as_deref().unwrap_or("Unknown"),
                    m.duration_ms / 1000,
                    m.duration_ms % 1000,
                    utc(m.received_at),
                    if m.heard { "heard" } else { "new" },
                );
            }
            Ok(())
        }
    }
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (the number itself when out of range).
pub(crate) fn utc(secs: i64) -> String {
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => secs.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
