//! PlayOnPhoneGreeting's call: play the user's greeting, and let them record a new one from the
//! keypad.
//!
//! Once answered: the current greeting of the type asked for is played (after "Your current
//! greeting is"), or a prompt saying there is none; then the menu: **1** records after a tone,
//! **\*** hangs up. A recording ends with **#**, with [`SILENCE_ENDS_RECORDING`] of silence
//! (the trailing silence is cut off), or at the maximum greeting length; then **1** saves it,
//! **2** records again, **\*** cancels (nothing is saved). Saving hands the recording to the
//! [`GreetingSession::save`] callback, whose result is announced. Prompts can be interrupted
//! with a key (barge-in), except the one before the tone. A menu that gets no valid key after
//! three tries ends the call; so does a recording that is silence only, after three tries.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::prompts::{self, Prompt};
use super::session::{Ended, Event, Session};
use crate::audio::{Audio, SAMPLE_RATE, SILENCE_RMS};
use crate::store::voicemail::GreetingType;
use crate::store::{MailboxId, Store};

/// The longest greeting by default: 5 minutes.
pub const DEFAULT_MAX_GREETING: Duration = Duration::from_secs(5 * 60);
/// The silence that ends a recording.
pub const SILENCE_ENDS_RECORDING: Duration = Duration::from_secs(5);
/// How long a menu waits for a key after its prompt.
const MENU_WAIT: Duration = Duration::from_secs(5);
/// How many times a menu is offered.
const MENU_TRIES: usize = 3;
/// Audio kept after the last sound when silence ends a recording.
const TAIL: usize = SAMPLE_RATE as usize / 4;

/// The saving of a recorded greeting failed (the caller hears that it was not saved).
pub type SaveError = Box<dyn std::error::Error + Send + Sync>;

/// Stores a recorded greeting: 8 kHz mono 16-bit PCM. Called once per save from the call's
/// task; the call waits for it.
pub type SaveGreeting = Arc<
    dyn Fn(Arc<[i16]>) -> Pin<Box<dyn Future<Output = Result<(), SaveError>> + Send>> + Send + Sync,
>;

/// What a PlayOnPhoneGreeting call needs.
#[derive(Clone)]
pub struct GreetingSession {
    /// The greeting stored now (8 kHz mono 16-bit PCM), played first; `None` when there is
    /// none.
    pub current: Option<Arc<[i16]>>,
    /// The longest recording ([`DEFAULT_MAX_GREETING`]).
    pub max_length: Duration,
    /// Where a recording the user saves goes.
    pub save: SaveGreeting,
    /// Say goodbye at the end (a call placed for the menu ends with it; a menu reached from
    /// subscriber access returns to its main menu).
    pub goodbye: bool,
}

impl GreetingSession {
    /// A session with the default maximum length.
    pub fn new(current: Option<Arc<[i16]>>, save: SaveGreeting) -> GreetingSession {
        GreetingSession {
            current,
            max_length: DEFAULT_MAX_GREETING,
            save,
            goodbye: true,
        }
    }
}

impl GreetingSession {
    /// The menu of greeting `kind` of `mailbox` in `store`: plays `stored` (the greeting as
    /// [`Store::greeting`] returns it) and saves a recording in `store` in its place.
    pub fn for_mailbox(
        store: Store,
        mailbox: MailboxId,
        kind: GreetingType,
        stored: Option<Vec<u8>>,
    ) -> GreetingSession {
        let current = stored.map(|bytes| Arc::from(Audio::from_le_bytes(&bytes).samples()));
        let save: SaveGreeting = Arc::new(move |recording: Arc<[i16]>| {
            let store = store.clone();
            Box::pin(async move {
                let bytes = Audio::from_samples(recording.to_vec()).to_le_bytes();
                tokio::task::spawn_blocking(move || store.set_greeting(mailbox, kind, &bytes))
                    .await
                    .map_err(|e| Box::new(e) as SaveError)?
                    .map_err(|e| Box::new(e) as SaveError)?;
                tracing::info!(
                    mailbox = mailbox.0,
                    greeting = kind.as_db(),
                    "greeting recorded by phone"
                );
                Ok(())
            })
        });
        GreetingSession::new(current, save)
    }
}

impl std::fmt::Debug for GreetingSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GreetingSession")
            .field("current_samples", &self.current.as_ref().map(|c| c.len()))
            .field("max_length", &self.max_length)
            .finish_non_exhaustive()
    }
}

/// How a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordEnd {
    Pound,
    Silence,
    MaxLength,
}

/// Runs the greeting menu on an answered call; `Ok` when it is done and we hang up.
pub(super) async fn run(
    session: &mut Session<'_>,
    greeting: &GreetingSession,
) -> Result<(), Ended> {
    let mut key = match &greeting.current {
        Some(current) => match session.play(&Prompt::GreetingCurrent.audio(), true).await? {
            Some(key) => Some(key),
            None => session.play(current, true).await?,
        },
        None => session.play(&Prompt::GreetingNone.audio(), true).await?,
    };
    if !matches!(
        menu(session, Prompt::GreetingMenu, &mut key, "1*").await?,
        Some('1')
    ) {
        return goodbye(session, greeting).await;
    }
    let mut silent_tries = 0;
    loop {
        session
            .play(&Prompt::RecordAfterTone.audio(), false)
            .await?;
        session.play(&prompts::tone(), false).await?;
        let (recording, end) = record(session, greeting.max_length).await?;
        tracing::debug!(samples = recording.len(), ?end, "greeting recorded");
        if crate::audio::is_silent(&recording) {
            silent_tries += 1;
            session.play(&Prompt::NothingRecorded.audio(), true).await?;
            if silent_tries >= MENU_TRIES {
                return goodbye(session, greeting).await;
            }
            continue;
        }
        let mut key = None;
        match menu(session, Prompt::ReviewMenu, &mut key, "12*").await? {
            Some('1') => {
                let saved = (greeting.save)(Arc::from(recording)).await;
                let prompt = match saved {
                    Ok(()) => Prompt::GreetingSaved,
                    Err(e) => {
                        tracing::warn!(error = %e, "a recorded greeting could not be saved");
                        Prompt::GreetingNotSaved
                    }
                };
                session.play(&prompt.audio(), true).await?;
                return goodbye(session, greeting).await;
            }
            Some('2') => continue,
            Some(_) => {
                session.play(&Prompt::Cancelled.audio(), true).await?;
                return goodbye(session, greeting).await;
            }
            None => return goodbye(session, greeting).await,
        }
    }
}

/// Offers a menu (its prompt, then a wait) until one of `valid` is pressed, up to
/// [`MENU_TRIES`] times; `key` is a key already pressed (during an earlier prompt).
async fn menu(
    session: &mut Session<'_>,
    prompt: Prompt,
    key: &mut Option<char>,
    valid: &str,
) -> Result<Option<char>, Ended> {
    for _ in 0..MENU_TRIES {
        let pressed = match key.take() {
            Some(key) => Some(key),
            None => match session.play(&prompt.audio(), true).await? {
                Some(key) => Some(key),
                None => session.wait_digit(MENU_WAIT).await?,
            },
        };
        match pressed {
            Some(k) if valid.contains(k) => return Ok(Some(k)),
            Some(_) => *key = session.play(&Prompt::InvalidChoice.audio(), true).await?,
            None => {}
        }
    }
    Ok(None)
}

async fn goodbye(session: &mut Session<'_>, greeting: &GreetingSession) -> Result<(), Ended> {
    if !greeting.goodbye {
        return Ok(());
    }
    session.play(&Prompt::Goodbye.audio(), false).await?;
    Ok(())
}

/// Whether a packet's worth of audio has sound in it (its RMS reaches [`SILENCE_RMS`]).
fn has_sound(samples: &[i16]) -> bool {
    if samples.is_empty() {
        return false;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (energy / samples.len() as f64).sqrt() >= SILENCE_RMS
}

/// Records the phone's audio (sending silence meanwhile) until `#`, silence or `max_length`.
async fn record(
    session: &mut Session<'_>,
    max_length: Duration,
) -> Result<(Vec<i16>, RecordEnd), Ended> {
    let max_samples = usize::try_from(max_length.as_millis() * u128::from(SAMPLE_RATE) / 1000)
        .unwrap_or(usize::MAX);
    let started = tokio::time::Instant::now();
    let mut last_sound = started;
    // the length of the recording up to its last sound
    let mut sound_end = 0usize;
    let mut recording = Vec::new();
    loop {
        match session.next().await? {
            Event::Tick => {
                session.send_silence().await;
                let now = tokio::time::Instant::now();
                if now.duration_since(started) >= max_length {
                    return Ok((recording, RecordEnd::MaxLength));
                }
                if now.duration_since(last_sound) >= SILENCE_ENDS_RECORDING {
                    recording.truncate(sound_end.saturating_add(TAIL).min(recording.len()));
                    return Ok((recording, RecordEnd::Silence));
                }
            }
            Event::Audio(samples) => {
                if has_sound(&samples) {
                    last_sound = tokio::time::Instant::now();
                    sound_end = recording.len() + samples.len();
                }
                recording.extend_from_slice(&samples);
                if recording.len() >= max_samples {
                    recording.truncate(max_samples);
                    return Ok((recording, RecordEnd::MaxLength));
                }
            }
            Event::Digit('#') => return Ok((recording, RecordEnd::Pound)),
            Event::Digit(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sound_is_a_packet_over_the_silence_level() {
        assert!(!has_sound(&[]));
        assert!(!has_sound(&[8; 160]));
        assert!(!has_sound(&[-99; 160]));
        assert!(has_sound(&[100; 160]));
        assert!(has_sound(&[-3000; 240]));
    }
}
