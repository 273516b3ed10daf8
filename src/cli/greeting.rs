//! `umws greeting`: set and get a mailbox's greetings (`UMGreetingType`).

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use umws::audio::{self, Audio};
use umws::store::voicemail::GreetingType;
use umws::store::Store;

use super::voicemail::mailbox_of;
use super::StoreArgs;
use crate::CliError;

/// The greeting types, as `--type` spells them.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum GreetingKind {
    /// NormalCustom: played when the user is not out of office.
    Normal,
    /// OofCustom: played when the user is out of office.
    Oof,
}

impl From<GreetingKind> for GreetingType {
    fn from(kind: GreetingKind) -> Self {
        match kind {
            GreetingKind::Normal => GreetingType::NormalCustom,
            GreetingKind::Oof => GreetingType::OofCustom,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum GreetingCommand {
    /// Set a greeting from a WAV file (the formats and limits of `umws voicemail deposit`),
    /// replacing the one of that type.
    Set {
        #[command(flatten)]
        store_args: StoreArgs,
        /// User name.
        #[arg(long)]
        user: String,
        /// Which greeting.
        #[arg(long = "type", value_enum)]
        kind: GreetingKind,
        /// The WAV file.
        #[arg(long)]
        wav: PathBuf,
    },
    /// Write a greeting to a WAV file (8 kHz 16-bit mono PCM).
    Get {
        #[command(flatten)]
        store_args: StoreArgs,
        /// User name.
        #[arg(long)]
        user: String,
        /// Which greeting.
        #[arg(long = "type", value_enum)]
        kind: GreetingKind,
        /// The WAV file to write (replaced if it exists).
        #[arg(long)]
        out: PathBuf,
    },
}

pub(crate) fn greeting(cmd: GreetingCommand) -> Result<(), CliError> {
    match cmd {
        GreetingCommand::Set {
            store_args: StoreArgs { data, database },
            user,
            kind,
            wav,
        } => {
            let store = Store::open_with(database.as_deref(), &data, false)?;
            let mailbox = mailbox_of(&store, &user)?;
            let audio = audio::read_wav_file(&wav)?;
            let kind = GreetingType::from(kind);
            store.set_greeting(mailbox.id, kind, &audio.to_le_bytes())?;
            println!(
                "{} greeting of {} set ({} seconds)",
                kind.schema_name(),
                mailbox.user,
                audio.duration_secs()
            );
            Ok(())
        }
        GreetingCommand::Get {
            store_args: StoreArgs { data, database },
            user,
            kind,
            out,
        } => {
            let store = Store::open_with(database.as_deref(), &data, false)?;
            let mailbox = mailbox_of(&store, &user)?;
            let kind = GreetingType::from(kind);
            let audio = store
                .greeting(mailbox.id, kind)?
                .ok_or_else(|| CliError::NoGreeting {
                    user: mailbox.user.clone(),
                    kind: kind.schema_name(),
                })?;
            let wav = Audio::from_le_bytes(&audio).to_wav()?;
            std::fs::write(&out, wav).map_err(|source| CliError::Write {
                path: out.clone(),
                source,
            })?;
            Ok(())
        }
    }
}
