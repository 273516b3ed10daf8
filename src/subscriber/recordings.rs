//! The recordings of the [`Word`]s: µ-law WAVs under `assets/prompts/access/`, made by
//! `scripts/make-prompts.sh` from `assets/prompts/access.txt` and built into the binary.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use super::speech::Word;

/// The WAV file of the word with this file stem.
fn wav(stem: &str) -> Option<&'static [u8]> {
    Some(match stem {
        "prompt-welcome" => include_bytes!("../../assets/prompts/access/prompt-welcome.wav"),
        "prompt-enter-extension" => {
            include_bytes!("../../assets/prompts/access/prompt-enter-extension.wav")
        }
        "prompt-enter-pin" => include_bytes!("../../assets/prompts/access/prompt-enter-pin.wav"),
        "prompt-unknown-extension" => {
            include_bytes!("../../assets/prompts/access/prompt-unknown-extension.wav")
        }
        "prompt-wrong-pin" => include_bytes!("../../assets/prompts/access/prompt-wrong-pin.wav"),
        "prompt-pin-reset-mailed" => {
            include_bytes!("../../assets/prompts/access/prompt-pin-reset-mailed.wav")
        }
        "prompt-locked-out" => include_bytes!("../../assets/prompts/access/prompt-locked-out.wav"),
        "prompt-no-pin" => include_bytes!("../../assets/prompts/access/prompt-no-pin.wav"),
        "prompt-too-many-tries" => {
            include_bytes!("../../assets/prompts/access/prompt-too-many-tries.wav")
        }
        "prompt-goodbye" => include_bytes!("../../assets/prompts/access/prompt-goodbye.wav"),
        "prompt-pin-expired" => {
            include_bytes!("../../assets/prompts/access/prompt-pin-expired.wav")
        }
        "prompt-must-change-pin" => {
            include_bytes!("../../assets/prompts/access/prompt-must-change-pin.wav")
        }
        "prompt-enter-new-pin" => {
            include_bytes!("../../assets/prompts/access/prompt-enter-new-pin.wav")
        }
        "prompt-reenter-new-pin" => {
            include_bytes!("../../assets/prompts/access/prompt-reenter-new-pin.wav")
        }
        "prompt-pins-do-not-match" => {
            include_bytes!("../../assets/prompts/access/prompt-pins-do-not-match.wav")
        }
        "prompt-pin-too-short" => {
            include_bytes!("../../assets/prompts/access/prompt-pin-too-short.wav")
        }
        "prompt-pin-too-long" => {
            include_bytes!("../../assets/prompts/access/prompt-pin-too-long.wav")
        }
        "prompt-pin-common-pattern" => {
            include_bytes!("../../assets/prompts/access/prompt-pin-common-pattern.wav")
        }
        "prompt-pin-starts-with-extension" => {
            include_bytes!("../../assets/prompts/access/prompt-pin-starts-with-extension.wav")
        }
        "prompt-pin-used-before" => {
            include_bytes!("../../assets/prompts/access/prompt-pin-used-before.wav")
        }
        "prompt-pin-changed" => {
            include_bytes!("../../assets/prompts/access/prompt-pin-changed.wav")
        }
        "prompt-digits" => include_bytes!("../../assets/prompts/access/prompt-digits.wav"),
        "prompt-you-have" => include_bytes!("../../assets/prompts/access/prompt-you-have.wav"),
        "prompt-new-message" => {
            include_bytes!("../../assets/prompts/access/prompt-new-message.wav")
        }
        "prompt-new-messages" => {
            include_bytes!("../../assets/prompts/access/prompt-new-messages.wav")
        }
        "prompt-message-from" => {
            include_bytes!("../../assets/prompts/access/prompt-message-from.wav")
        }
        "prompt-unknown-caller" => {
            include_bytes!("../../assets/prompts/access/prompt-unknown-caller.wav")
        }
        "prompt-received" => include_bytes!("../../assets/prompts/access/prompt-received.wav"),
        "prompt-message-menu" => {
            include_bytes!("../../assets/prompts/access/prompt-message-menu.wav")
        }
        "prompt-message-deleted" => {
            include_bytes!("../../assets/prompts/access/prompt-message-deleted.wav")
        }
        "prompt-no-more-messages" => {
            include_bytes!("../../assets/prompts/access/prompt-no-more-messages.wav")
        }
        "prompt-main-menu" => include_bytes!("../../assets/prompts/access/prompt-main-menu.wav"),
        "prompt-greeting-menu" => {
            include_bytes!("../../assets/prompts/access/prompt-greeting-menu.wav")
        }
        "prompt-invalid-key" => {
            include_bytes!("../../assets/prompts/access/prompt-invalid-key.wav")
        }
        "prompt-system-error" => {
            include_bytes!("../../assets/prompts/access/prompt-system-error.wav")
        }
        "number-0" => include_bytes!("../../assets/prompts/access/number-0.wav"),
        "number-1" => include_bytes!("../../assets/prompts/access/number-1.wav"),
        "number-2" => include_bytes!("../../assets/prompts/access/number-2.wav"),
        "number-3" => include_bytes!("../../assets/prompts/access/number-3.wav"),
        "number-4" => include_bytes!("../../assets/prompts/access/number-4.wav"),
        "number-5" => include_bytes!("../../assets/prompts/access/number-5.wav"),
        "number-6" => include_bytes!("../../assets/prompts/access/number-6.wav"),
        "number-7" => include_bytes!("../../assets/prompts/access/number-7.wav"),
        "number-8" => include_bytes!("../../assets/prompts/access/number-8.wav"),
        "number-9" => include_bytes!("../../assets/prompts/access/number-9.wav"),
        "number-10" => include_bytes!("../../assets/prompts/access/number-10.wav"),
        "number-11" => include_bytes!("../../assets/prompts/access/number-11.wav"),
        "number-12" => include_bytes!("../../assets/prompts/access/number-12.wav"),
        "number-13" => include_bytes!("../../assets/prompts/access/number-13.wav"),
        "number-14" => include_bytes!("../../assets/prompts/access/number-14.wav"),
        "number-15" => include_bytes!("../../assets/prompts/access/number-15.wav"),
        "number-16" => include_bytes!("../../assets/prompts/access/number-16.wav"),
        "number-17" => include_bytes!("../../assets/prompts/access/number-17.wav"),
        "number-18" => include_bytes!("../../assets/prompts/access/number-18.wav"),
        "number-19" => include_bytes!("../../assets/prompts/access/number-19.wav"),
        "number-20" => include_bytes!("../../assets/prompts/access/number-20.wav"),
        "number-30" => include_bytes!("../../assets/prompts/access/number-30.wav"),
        "number-40" => include_bytes!("../../assets/prompts/access/number-40.wav"),
        "number-50" => include_bytes!("../../assets/prompts/access/number-50.wav"),
        "number-60" => include_bytes!("../../assets/prompts/access/number-60.wav"),
        "number-70" => include_bytes!("../../assets/prompts/access/number-70.wav"),
        "number-80" => include_bytes!("../../assets/prompts/access/number-80.wav"),
        "number-90" => include_bytes!("../../assets/prompts/access/number-90.wav"),
        "number-hundred" => include_bytes!("../../assets/prompts/access/number-hundred.wav"),
        "number-thousand" => include_bytes!("../../assets/prompts/access/number-thousand.wav"),
        "number-million" => include_bytes!("../../assets/prompts/access/number-million.wav"),
        "month-1" => include_bytes!("../../assets/prompts/access/month-1.wav"),
        "month-2" => include_bytes!("../../assets/prompts/access/month-2.wav"),
        "month-3" => include_bytes!("../../assets/prompts/access/month-3.wav"),
        "month-4" => include_bytes!("../../assets/prompts/access/month-4.wav"),
        "month-5" => include_bytes!("../../assets/prompts/access/month-5.wav"),
        "month-6" => include_bytes!("../../assets/prompts/access/month-6.wav"),
        "month-7" => include_bytes!("../../assets/prompts/access/month-7.wav"),
        "month-8" => include_bytes!("../../assets/prompts/access/month-8.wav"),
        "month-9" => include_bytes!("../../assets/prompts/access/month-9.wav"),
        "month-10" => include_bytes!("../../assets/prompts/access/month-10.wav"),
        "month-11" => include_bytes!("../../assets/prompts/access/month-11.wav"),
        "month-12" => include_bytes!("../../assets/prompts/access/month-12.wav"),
        "word-at" => include_bytes!("../../assets/prompts/access/word-at.wav"),
        "word-oh" => include_bytes!("../../assets/prompts/access/word-oh.wav"),
        "word-oclock" => include_bytes!("../../assets/prompts/access/word-oclock.wav"),
        "word-plus" => include_bytes!("../../assets/prompts/access/word-plus.wav"),
        _ => return None,
    })
}

/// Every word's audio, decoded once: 8 kHz mono 16-bit PCM.
static AUDIO: LazyLock<HashMap<Word, Arc<[i16]>>> = LazyLock::new(|| {
    Word::all()
        .into_iter()
        .map(|word| {
            let audio = wav(&word.file_stem())
                .and_then(|bytes| crate::audio::decode_wav(bytes).ok())
                .map(|a| Arc::from(a.samples()))
                .unwrap_or_else(|| {
                    // (a test checks that every word decodes; were one missing, it is silence)
                    tracing::error!(word = word.text(), "a prompt recording is missing");
                    Arc::from(Vec::new())
                });
            (word, audio)
        })
        .collect()
});

/// The audio of `word`.
pub fn audio(word: Word) -> Arc<[i16]> {
    AUDIO
        .get(&word)
        .cloned()
        .unwrap_or_else(|| Arc::from(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_has_a_recording_of_speech() {
        for word in Word::all() {
            let bytes = wav(&word.file_stem()).expect("a WAV for every word");
            let decoded = crate::audio::decode_wav(bytes).expect("a WAV umws reads");
            let samples = decoded.samples();
            // At least 0.15 s, at most 15 s, and not silence.
            assert!(
                (1200..120_000).contains(&samples.len()),
                "{word:?}: {} samples",
                samples.len()
            );
            let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            assert!(peak > 8000, "{word:?}: peak {peak}");
            assert_eq!(audio(word).len(), samples.len());
        }
    }
}
