//! The spoken prompts of the telephone menus: 8 kHz mono 16-bit WAVs made once with espeak-ng
//! by `scripts/make-prompts.sh` from the list in `assets/prompts/prompts.txt` (which holds each
//! prompt's text), and built into the binary.
//!
//! Besides the greeting menu's prompts, the list has those a phone sign-in menu needs (welcome,
//! extension, PIN, lock-out, the number of new messages spoken digit by digit).

use std::sync::{Arc, LazyLock};

use crate::audio::SAMPLE_RATE;

/// One spoken prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prompt {
    /// "Welcome to voice mail."
    Welcome,
    /// "Please enter your extension, then press pound."
    EnterExtension,
    /// "Please enter your PIN, then press pound."
    EnterPin,
    /// "That PIN is not correct."
    WrongPin,
    /// "Your mailbox is locked. Goodbye."
    LockedOut,
    /// "You have"
    YouHave,
    /// "new messages."
    NewMessages,
    /// "You have no new messages."
    NoNewMessages,
    /// "zero"
    Digit0,
    /// "one"
    Digit1,
    /// "two"
    Digit2,
    /// "three"
    Digit3,
    /// "four"
    Digit4,
    /// "five"
    Digit5,
    /// "six"
    Digit6,
    /// "seven"
    Digit7,
    /// "eight"
    Digit8,
    /// "nine"
    Digit9,
    /// "Your current greeting is:"
    GreetingCurrent,
    /// "You have not recorded this greeting."
    GreetingNone,
    /// "To record a new greeting, press 1. To hang up, press star."
    GreetingMenu,
    /// "Record your greeting after the tone. Press pound when you are done."
    RecordAfterTone,
    /// "To save this greeting, press 1. To record it again, press 2. To cancel, press star."
    ReviewMenu,
    /// "Your greeting has been saved."
    GreetingSaved,
    /// "Sorry, your greeting could not be saved."
    GreetingNotSaved,
    /// "I did not hear anything."
    NothingRecorded,
    /// "Cancelled."
    Cancelled,
    /// "That is not a valid choice."
    InvalidChoice,
    /// "Goodbye."
    Goodbye,
}

impl Prompt {
    /// Every prompt, in the order of `assets/prompts/prompts.txt`.
    pub const ALL: [Prompt; 29] = [
        Prompt::Welcome,
        Prompt::EnterExtension,
        Prompt::EnterPin,
        Prompt::WrongPin,
        Prompt::LockedOut,
        Prompt::YouHave,
        Prompt::NewMessages,
        Prompt::NoNewMessages,
        Prompt::Digit0,
        Prompt::Digit1,
        Prompt::Digit2,
        Prompt::Digit3,
        Prompt::Digit4,
        Prompt::Digit5,
        Prompt::Digit6,
        Prompt::Digit7,
        Prompt::Digit8,
        Prompt::Digit9,
        Prompt::GreetingCurrent,
        Prompt::GreetingNone,
        Prompt::GreetingMenu,
        Prompt::RecordAfterTone,
        Prompt::ReviewMenu,
        Prompt::GreetingSaved,
        Prompt::GreetingNotSaved,
        Prompt::NothingRecorded,
        Prompt::Cancelled,
        Prompt::InvalidChoice,
        Prompt::Goodbye,
    ];

    /// The prompt's name: its file is `assets/prompts/NAME.wav`.
    pub fn name(self) -> &'static str {
        self.entry().0
    }

    /// The spoken digit `digit` (0-9); `None` for anything else.
    pub fn digit(digit: u8) -> Option<Prompt> {
        [
            Prompt::Digit0,
            Prompt::Digit1,
            Prompt::Digit2,
            Prompt::Digit3,
            Prompt::Digit4,
            Prompt::Digit5,
            Prompt::Digit6,
            Prompt::Digit7,
            Prompt::Digit8,
            Prompt::Digit9,
        ]
        .get(usize::from(digit))
        .copied()
    }

    /// The words spoken, as listed in `assets/prompts/prompts.txt`.
    pub fn text(self) -> &'static str {
        let name = self.name();
        LIST.lines()
            .filter_map(|line| line.split_once('|'))
            .find(|(n, _)| *n == name)
            .map_or("", |(_, text)| text)
    }

    /// The audio: 8 kHz mono 16-bit PCM, decoded from the built-in WAV on first use.
    pub fn audio(self) -> Arc<[i16]> {
        DECODED[self as usize].clone()
    }

    fn entry(self) -> (&'static str, &'static [u8]) {
        match self {
            Prompt::Welcome => (
                "welcome",
                include_bytes!("../../assets/prompts/welcome.wav"),
            ),
            Prompt::EnterExtension => (
                "enter_extension",
                include_bytes!("../../assets/prompts/enter_extension.wav"),
            ),
            Prompt::EnterPin => (
                "enter_pin",
                include_bytes!("../../assets/prompts/enter_pin.wav"),
            ),
            Prompt::WrongPin => (
                "wrong_pin",
                include_bytes!("../../assets/prompts/wrong_pin.wav"),
            ),
            Prompt::LockedOut => (
                "locked_out",
                include_bytes!("../../assets/prompts/locked_out.wav"),
            ),
            Prompt::YouHave => (
                "you_have",
                include_bytes!("../../assets/prompts/you_have.wav"),
            ),
            Prompt::NewMessages => (
                "new_messages",
                include_bytes!("../../assets/prompts/new_messages.wav"),
            ),
            Prompt::NoNewMessages => (
                "no_new_messages",
                include_bytes!("../../assets/prompts/no_new_messages.wav"),
            ),
            Prompt::Digit0 => (
                "digit_0",
                include_bytes!("../../assets/prompts/digit_0.wav"),
            ),
            Prompt::Digit1 => (
                "digit_1",
                include_bytes!("../../assets/prompts/digit_1.wav"),
            ),
            Prompt::Digit2 => (
                "digit_2",
                include_bytes!("../../assets/prompts/digit_2.wav"),
            ),
            Prompt::Digit3 => (
                "digit_3",
                include_bytes!("../../assets/prompts/digit_3.wav"),
            ),
            Prompt::Digit4 => (
                "digit_4",
                include_bytes!("../../assets/prompts/digit_4.wav"),
            ),
            Prompt::Digit5 => (
                "digit_5",
                include_bytes!("../../assets/prompts/digit_5.wav"),
            ),
            Prompt::Digit6 => (
                "digit_6",
                include_bytes!("../../assets/prompts/digit_6.wav"),
            ),
            Prompt::Digit7 => (
                "digit_7",
                include_bytes!("../../assets/prompts/digit_7.wav"),
            ),
            Prompt::Digit8 => (
                "digit_8",
                include_bytes!("../../assets/prompts/digit_8.wav"),
            ),
            Prompt::Digit9 => (
                "digit_9",
                include_bytes!("../../assets/prompts/digit_9.wav"),
            ),
            Prompt::GreetingCurrent => (
                "greeting_current",
                include_bytes!("../../assets/prompts/greeting_current.wav"),
            ),
            Prompt::GreetingNone => (
                "greeting_none",
                include_bytes!("../../assets/prompts/greeting_none.wav"),
            ),
            Prompt::GreetingMenu => (
                "greeting_menu",
                include_bytes!("../../assets/prompts/greeting_menu.wav"),
            ),
            Prompt::RecordAfterTone => (
                "record_after_tone",
                include_bytes!("../../assets/prompts/record_after_tone.wav"),
            ),
            Prompt::ReviewMenu => (
                "review_menu",
                include_bytes!("../../assets/prompts/review_menu.wav"),
            ),
            Prompt::GreetingSaved => (
                "greeting_saved",
                include_bytes!("../../assets/prompts/greeting_saved.wav"),
            ),
            Prompt::GreetingNotSaved => (
                "greeting_not_saved",
                include_bytes!("../../assets/prompts/greeting_not_saved.wav"),
            ),
            Prompt::NothingRecorded => (
                "nothing_recorded",
                include_bytes!("../../assets/prompts/nothing_recorded.wav"),
            ),
            Prompt::Cancelled => (
                "cancelled",
                include_bytes!("../../assets/prompts/cancelled.wav"),
            ),
            Prompt::InvalidChoice => (
                "invalid_choice",
                include_bytes!("../../assets/prompts/invalid_choice.wav"),
            ),
            Prompt::Goodbye => (
                "goodbye",
                include_bytes!("../../assets/prompts/goodbye.wav"),
            ),
        }
    }
}

/// The list of prompts and their texts.
const LIST: &str = include_str!("../../assets/prompts/prompts.txt");

/// Each prompt's audio, in the order of [`Prompt::ALL`] (which is the order of the enum).
static DECODED: LazyLock<Vec<Arc<[i16]>>> = LazyLock::new(|| {
    Prompt::ALL
        .iter()
        .map(|prompt| match crate::audio::decode_wav(prompt.entry().1) {
            Ok(audio) => Arc::from(audio.samples()),
            Err(e) => {
                // (the unit tests decode every prompt: this is not reached)
                tracing::error!(prompt = prompt.name(), error = %e, "a built-in prompt does not decode");
                Arc::from(Vec::new())
            }
        })
        .collect()
});

/// The tone before a recording: 1 kHz for 400 ms.
pub fn tone() -> Arc<[i16]> {
    static TONE: LazyLock<Arc<[i16]>> = LazyLock::new(|| {
        let n = SAMPLE_RATE as usize * 2 / 5;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(SAMPLE_RATE);
                (12000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
            })
            .collect()
    });
    TONE.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_prompt_is_built_in_speech() {
        let listed: Vec<&str> = LIST
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_once('|').map_or(l, |(name, _)| name))
            .collect();
        let names: Vec<&str> = Prompt::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(listed, names);
        for (i, prompt) in Prompt::ALL.iter().enumerate() {
            assert_eq!(*prompt as usize, i);
            assert!(!prompt.text().is_empty(), "{prompt:?}");
            let audio = prompt.audio();
            // a word or more: over 0.2 s, and not silence
            assert!(audio.len() > 1600, "{prompt:?}: {} samples", audio.len());
            assert!(!crate::audio::is_silent(&audio), "{prompt:?}");
            // kept short: under 8 s
            assert!(
                audio.len() < 8 * 8000,
                "{prompt:?}: {} samples",
                audio.len()
            );
        }
    }

    #[test]
    fn digits_have_their_prompts() {
        for d in 0..10u8 {
            let prompt = Prompt::digit(d).expect("a digit prompt");
            assert_eq!(prompt.name(), format!("digit_{d}"));
        }
        assert_eq!(Prompt::digit(10), None);
        assert_eq!(
            Prompt::GreetingMenu.text(),
            "To record a new greeting, press 1. To hang up, press star."
        );
    }

    #[test]
    fn the_tone_is_400_ms() {
        assert_eq!(tone().len(), 3200);
        assert!(!crate::audio::is_silent(&tone()));
    }
}
