//! How [`Say`] items are spoken: each becomes a list of recorded [`Word`]s (a prompt, or a
//! word of a number, a date or a time), which the line plays one after the other.

use jiff::tz::TimeZone;

use super::{Prompt, Say};

/// One recorded piece of speech.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Word {
    /// A whole prompt.
    Prompt(Prompt),
    /// "zero" to "nineteen".
    Small(u8),
    /// "twenty", "thirty", ... "ninety" (the tens digit, 2-9).
    Tens(u8),
    /// "hundred".
    Hundred,
    /// "thousand".
    Thousand,
    /// "million".
    Million,
    /// "January" ... "December" (1-12).
    Month(u8),
    /// "at" (between a date and a time).
    At,
    /// "oh" (a minute below ten: "four oh five").
    Oh,
    /// "o'clock".
    OClock,
    /// "plus" (the `+` of an international number).
    Plus,
}

impl Word {
    /// The text of the word, as recorded.
    pub fn text(self) -> &'static str {
        const SMALL: [&str; 20] = [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ];
        const TENS: [&str; 10] = [
            "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
        ];
        const MONTHS: [&str; 13] = [
            "",
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        match self {
            Word::Prompt(p) => p.text(),
            Word::Small(n) => SMALL.get(usize::from(n)).copied().unwrap_or(""),
            Word::Tens(n) => TENS.get(usize::from(n)).copied().unwrap_or(""),
            Word::Hundred => "hundred",
            Word::Thousand => "thousand",
            Word::Million => "million",
            Word::Month(m) => MONTHS.get(usize::from(m)).copied().unwrap_or(""),
            Word::At => "at",
            Word::Oh => "oh",
            Word::OClock => "o'clock",
            Word::Plus => "plus",
        }
    }

    /// Every word there is a recording of.
    pub fn all() -> Vec<Word> {
        let mut all: Vec<Word> = Prompt::ALL.iter().copied().map(Word::Prompt).collect();
        all.extend((0..20).map(Word::Small));
        all.extend((2..10).map(Word::Tens));
        all.extend([Word::Hundred, Word::Thousand, Word::Million]);
        all.extend((1..13).map(Word::Month));
        all.extend([Word::At, Word::Oh, Word::OClock, Word::Plus]);
        all
    }

    /// The file name of its recording (without `.wav`): `prompt-enter-pin`, `number-7`, ...
    pub fn file_stem(self) -> String {
        match self {
            Word::Prompt(p) => {
                let mut stem = String::from("prompt");
                for c in format!("{p:?}").chars() {
                    if c.is_ascii_uppercase() {
                        stem.push('-');
                    }
                    stem.push(c.to_ascii_lowercase());
                }
                stem
            }
            Word::Small(n) => format!("number-{n}"),
            Word::Tens(n) => format!("number-{n}0"),
            Word::Hundred => "number-hundred".into(),
            Word::Thousand => "number-thousand".into(),
            Word::Million => "number-million".into(),
            Word::Month(m) => format!("month-{m}"),
            Word::At => "word-at".into(),
            Word::Oh => "word-oh".into(),
            Word::OClock => "word-oclock".into(),
            Word::Plus => "word-plus".into(),
        }
    }
}

/// The head of `assets/prompts/access.txt`.
pub const LIST_HEADER: &str = "\
# The words of subscriber access (src/subscriber/speech.rs, Word::all): NAME|TEXT a line, NAME
# being the WAV's name (assets/prompts/access/NAME.wav). Made by scripts/make-prompts.sh;
# a test checks this list against the code.
";

/// The words of `say`, times in `zone`; `None` for audio, which is played as it is.
pub fn words(say: &Say, zone: &TimeZone) -> Option<Vec<Word>> {
    let mut out = Vec::new();
    match say {
        Say::Prompt(p) => out.push(Word::Prompt(*p)),
        Say::Number(n) => number(*n, &mut out),
        Say::DigitString(s) => {
            for c in s.chars() {
                match c {
                    '0'..='9' => out.push(Word::Small(c as u8 - b'0')),
                    '+' => out.push(Word::Plus),
                    // (separators such as spaces, dashes and brackets are not spoken)
                    _ => {}
                }
            }
        }
        Say::Time(secs) => time(*secs, zone, &mut out),
        Say::Audio(_) => return None,
    }
    Some(out)
}

/// `n` in words: "three hundred twelve thousand four hundred five".
fn number(n: u64, out: &mut Vec<Word>) {
    if n == 0 {
        out.push(Word::Small(0));
        return;
    }
    let millions = n / 1_000_000;
    if millions > 0 {
        // (a count of a million and more is said in groups of digits of a million)
        number(millions, out);
        out.push(Word::Million);
    }
    let thousands = n / 1000 % 1000;
    if thousands > 0 {
        below_thousand(thousands, out);
        out.push(Word::Thousand);
    }
    below_thousand(n % 1000, out);
}

fn below_thousand(n: u64, out: &mut Vec<Word>) {
    let hundreds = n / 100;
    if hundreds > 0 {
        out.push(Word::Small(hundreds as u8));
        out.push(Word::Hundred);
    }
    let rest = (n % 100) as u8;
    match rest {
        0 => {}
        1..=19 => out.push(Word::Small(rest)),
        _ => {
            out.push(Word::Tens(rest / 10));
            if rest % 10 > 0 {
                out.push(Word::Small(rest % 10));
            }
        }
    }
}

/// A time in unix seconds, in `zone`: "December six at four oh five" (24-hour clock);
/// nothing for a time out of range.
fn time(secs: i64, zone: &TimeZone, out: &mut Vec<Word>) {
    let Ok(at) = jiff::Timestamp::from_second(secs) else {
        return;
    };
    let local = zone.to_datetime(at);
    let month = u8::try_from(local.month()).unwrap_or(1);
    let minute = u64::try_from(local.minute()).unwrap_or(0);
    out.push(Word::Month(month));
    number(u64::try_from(local.day()).unwrap_or(1), out);
    out.push(Word::At);
    number(u64::try_from(local.hour()).unwrap_or(0), out);
    match minute {
        0 => out.push(Word::OClock),
        1..=9 => {
            out.push(Word::Oh);
            number(minute, out);
        }
        _ => number(minute, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(say: Say) -> String {
        said_in(say, &TimeZone::UTC)
    }

    fn said_in(say: Say, zone: &TimeZone) -> String {
        words(&say, zone)
            .unwrap()
            .iter()
            .map(|w| w.text())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn numbers() {
        assert_eq!(said(Say::Number(0)), "zero");
        assert_eq!(said(Say::Number(7)), "seven");
        assert_eq!(said(Say::Number(19)), "nineteen");
        assert_eq!(said(Say::Number(20)), "twenty");
        assert_eq!(said(Say::Number(42)), "forty two");
        assert_eq!(said(Say::Number(100)), "one hundred");
        assert_eq!(said(Say::Number(305)), "three hundred five");
        assert_eq!(said(Say::Number(1000)), "one thousand");
        assert_eq!(
            said(Say::Number(312_405)),
            "three hundred twelve thousand four hundred five"
        );
        assert_eq!(said(Say::Number(2_000_001)), "two million one");
        assert!(!said(Say::Number(u64::MAX)).is_empty());
    }

    #[test]
    fn digit_strings_say_digits_and_plus_only() {
        assert_eq!(
            said(Say::DigitString("+1 (425) 555-01".into())),
            "plus one four two five five five five zero one"
        );
    }

    #[test]
    fn times_are_month_day_hour_minute_in_utc() {
        // 2026-12-06T04:05:00Z
        assert_eq!(
            said(Say::Time(1_796_529_900)),
            "December six at four oh five"
        );
        // 2000-02-29T13:00:00Z
        assert_eq!(
            said(Say::Time(951_829_200)),
            "February twenty nine at thirteen o'clock"
        );
        // 1970-01-01T23:59:00Z
        assert_eq!(
            said(Say::Time(86_340)),
            "January one at twenty three fifty nine"
        );
        // Out of range: nothing.
        assert_eq!(said(Say::Time(i64::MAX)), "");
    }

    /// Times are said in the zone given, with its offset on that day (summer time too).
    #[test]
    fn times_are_said_in_the_zone() {
        let zone = |name| TimeZone::get(name).expect("the system's time zone database");
        // 2026-12-06T04:05:00Z: 05:05 in Berlin (CET, +1), 09:35 in Kolkata (+5:30)
        assert_eq!(
            said_in(Say::Time(1_796_529_900), &zone("Europe/Berlin")),
            "December six at five oh five"
        );
        assert_eq!(
            said_in(Say::Time(1_796_529_900), &zone("Asia/Kolkata")),
            "December six at nine thirty five"
        );
        // 2026-07-01T02:00:00Z: the day before in New York (EDT, -4), at 22:00
        assert_eq!(
            said_in(Say::Time(1_782_871_200), &zone("America/New_York")),
            "June thirty at twenty two o'clock"
        );
    }

    /// `assets/prompts/access.txt`, the list `scripts/make-prompts.sh` records, is
    /// [`Word::all`].
    #[test]
    fn the_recorded_list_is_the_list_of_words() {
        let mut expected = String::from(LIST_HEADER);
        for word in Word::all() {
            expected.push_str(&format!("{}|{}\n", word.file_stem(), word.text()));
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/prompts/access.txt");
        let found = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            found == expected,
            "{path} differs from Word::all(); it should read:\n{expected}"
        );
    }

    #[test]
    fn every_word_has_text_and_a_file_of_its_own() {
        let all = Word::all();
        let mut stems: Vec<String> = all.iter().map(|w| w.file_stem()).collect();
        assert!(all.iter().all(|w| !w.text().is_empty()));
        assert_eq!(
            Word::Prompt(Prompt::EnterPin).file_stem(),
            "prompt-enter-pin"
        );
        stems.sort();
        stems.dedup();
        assert_eq!(stems.len(), all.len());
        assert!(words(
            &Say::Audio(std::sync::Arc::from(vec![0i16])),
            &TimeZone::UTC
        )
        .is_none());
    }
}
