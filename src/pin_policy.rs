//! The PIN part of a UM mailbox policy: its parameters, their ranges, the rules a PIN must
//! satisfy, and the generation of a random PIN that satisfies them.
//!
//! The parameters and defaults are those of UM-SPEC.md ("PIN policy"). Decisions this module
//! takes where the spec is silent:
//!
//! * **Consecutive digits wrap around**: a PIN whose every digit is the previous one plus one
//!   (ascending) or minus one (descending) *modulo 10* is refused, so `123456`, `65432`, `8901`
//!   and `2109` are all refused. The rule applies to the whole PIN, not to a part of it
//!   (`123457` is accepted).
//! * **Extension rule**: a PIN that begins with the user's extension is refused whatever
//!   `allow_common_patterns` says. An empty extension is treated as no extension.
//! * **Configuration**: in TOML the optional limits are either a number or the string
//!   `"Unlimited"` (case-insensitive); a field left out takes its default, so a default that is a
//!   number (e.g. `pin_lifetime_days = 60`) is turned off only by writing `"Unlimited"`.
//!   Serialising writes `"Unlimited"` for a turned-off limit.
//!
//! Nothing here ever puts a PIN into an error message or a log line.

use std::fmt;

use rand::{CryptoRng, Rng, RngCore};
use serde::{Deserialize, Serialize};

/// Allowed range of [`PinPolicy::min_pin_length`] (`MinPINLength`).
pub const MIN_PIN_LENGTH_RANGE: std::ops::RangeInclusive<u32> = 4..=24;
/// Allowed range of [`PinPolicy::pin_lifetime_days`] (`PINLifetime`) when not Unlimited.
pub const PIN_LIFETIME_DAYS_RANGE: std::ops::RangeInclusive<u32> = 1..=999;
/// Allowed range of [`PinPolicy::pin_history_count`] (`PINHistoryCount`).
pub const PIN_HISTORY_COUNT_RANGE: std::ops::RangeInclusive<u32> = 1..=20;
/// Allowed range of [`PinPolicy::max_logon_attempts`] (`MaxLogonAttempts`) when not Unlimited.
pub const MAX_LOGON_ATTEMPTS_RANGE: std::ops::RangeInclusive<u32> = 1..=999;
/// The most digits a PIN may have (the upper end of `MinPINLength`).
pub const MAX_PIN_LENGTH: u32 = 24;
/// Longest allowed [`PinPolicy::reset_pin_text`] (`ResetPINText`), in characters.
pub const RESET_PIN_TEXT_MAX_CHARS: usize = 512;
/// How many candidates [`PinPolicy::generate_pin`] draws before giving up.
///
/// With the smallest allowed PIN (4 digits, 10 000 values) the rules refuse at most a few
/// dozen values plus those starting with the extension, so a valid policy practically never
/// needs more than a handful of draws; running out means the caller's history check refuses
/// everything.
pub const GENERATE_MAX_ATTEMPTS: u32 = 1000;

/// The PIN settings of a UM mailbox policy.
///
/// Field names follow the Exchange parameters (`MinPINLength` is `min_pin_length`, ...). `None`
/// in an optional limit means "Unlimited". Call [`PinPolicy::validate`] after building one from
/// untrusted input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PinPolicy {
    /// `MinPINLength`: the least number of digits of a PIN, and the length of generated PINs.
    /// Default 6, range 4-24.
    pub min_pin_length: u32,
    /// `PINLifetime`: days after which a PIN expires; `None` = Unlimited. Default 60, range
    /// 1-999.
    #[serde(with = "unlimited")]
    pub pin_lifetime_days: Option<u32>,
    /// `PINHistoryCount`: how many previous PINs may not be reused. Default 5, range 1-20.
    pub pin_history_count: u32,
    /// `AllowCommonPatterns`: when false, PINs of one repeated digit or of consecutive digits are
    /// refused. Default false.
    pub allow_common_patterns: bool,
    /// `LogonFailuresBeforePINReset`: failed phone logons after which the PIN is reset and
    /// mailed; `None` = Unlimited. Default 5; must be below `max_logon_attempts` when both are
    /// set.
    #[serde(with = "unlimited")]
    pub logon_failures_before_pin_reset: Option<u32>,
    /// `MaxLogonAttempts`: failed phone logons after which the mailbox is locked out; `None` =
    /// Unlimited. Default 15, range 1-999.
    #[serde(with = "unlimited")]
    pub max_logon_attempts: Option<u32>,
    /// `ResetPINText`: extra text put into the PIN reset mail. Default empty, at most 512
    /// characters.
    pub reset_pin_text: String,
}

impl Default for PinPolicy {
    fn default() -> Self {
        Self {
            min_pin_length: 6,
            pin_lifetime_days: Some(60),
            pin_history_count: 5,
            allow_common_patterns: false,
            logon_failures_before_pin_reset: Some(5),
            max_logon_attempts: Some(15),
            reset_pin_text: String::new(),
        }
    }
}

/// A policy parameter outside its allowed range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A numeric parameter lies outside its range.
    #[error("{parameter} is {value}, allowed: {allowed}")]
    OutOfRange {
        /// The Exchange name of the parameter, e.g. `MinPINLength`.
        parameter: &'static str,
        /// The refused value.
        value: u32,
        /// The allowed values, in words.
        allowed: &'static str,
    },
    /// `LogonFailuresBeforePINReset` is not below `MaxLogonAttempts`.
    #[error(
        "LogonFailuresBeforePINReset is {reset}, allowed: below MaxLogonAttempts ({max}) or Unlimited"
    )]
    ResetNotBelowLockout {
        /// The refused `LogonFailuresBeforePINReset`.
        reset: u32,
        /// The `MaxLogonAttempts` it must stay below.
        max: u32,
    },
    /// `ResetPINText` is too long.
    #[error("ResetPINText has {chars} characters, allowed: at most 512")]
    ResetPinTextTooLong {
        /// Its length in characters.
        chars: usize,
    },
}

/// Why a PIN was refused. The messages never contain the PIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PinRejected {
    /// The PIN contains something other than the digits 0-9 (or is empty).
    #[error("the PIN must consist of digits only")]
    NotDigits,
    /// The PIN has fewer digits than `MinPINLength`.
    #[error("the PIN must have at least {min} digits")]
    TooShort {
        /// The policy's `MinPINLength`.
        min: u32,
    },
    /// The PIN has more than [`MAX_PIN_LENGTH`] digits.
    #[error("the PIN may have at most {max} digits")]
    TooLong {
        /// [`MAX_PIN_LENGTH`].
        max: u32,
    },
    /// All digits are the same (`11111`) and common patterns are not allowed.
    #[error("the PIN may not repeat one digit")]
    AllSameDigit,
    /// The digits ascend or descend by one (`123456`, `65432`, `8901`) and common patterns are
    /// not allowed.
    #[error("the PIN may not be a run of consecutive digits")]
    ConsecutiveDigits,
    /// The PIN begins with the user's extension.
    #[error("the PIN may not begin with the extension")]
    StartsWithExtension,
    /// The PIN is one of the last `PINHistoryCount` PINs (or the current one).
    #[error("the PIN is the current one or one of the last {count} PINs")]
    InHistory {
        /// The policy's `PINHistoryCount`.
        count: u32,
    },
}

impl PinRejected {
    /// The policy rule that refused the PIN, by its Exchange parameter name where it has one.
    pub fn rule(&self) -> &'static str {
        match self {
            PinRejected::NotDigits => "the digits-only rule",
            PinRejected::TooShort { .. } => "MinPINLength",
            PinRejected::TooLong { .. } => "the maximum PIN length",
            PinRejected::AllSameDigit | PinRejected::ConsecutiveDigits => "AllowCommonPatterns",
            PinRejected::StartsWithExtension => "the extension rule",
            PinRejected::InHistory { .. } => "PINHistoryCount",
        }
    }
}

/// [`PinPolicy::generate_pin`] could not produce a PIN.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PinGenerationError {
    /// The policy itself is invalid.
    #[error("the PIN policy is invalid")]
    InvalidPolicy(#[source] PolicyError),
    /// Every candidate drawn was refused by the rules or the history check.
    #[error("no acceptable PIN found in {attempts} attempts")]
    Exhausted {
        /// How many candidates were drawn.
        attempts: u32,
    },
}

impl PinPolicy {
    /// Checks every parameter against its range, naming the first one out of range.
    pub fn validate(&self) -> Result<(), PolicyError> {
        fn range(
            parameter: &'static str,
            value: u32,
            range: &std::ops::RangeInclusive<u32>,
            allowed: &'static str,
        ) -> Result<(), PolicyError> {
            if range.contains(&value) {
                Ok(())
            } else {
                Err(PolicyError::OutOfRange {
                    parameter,
                    value,
                    allowed,
                })
            }
        }
        range(
            "MinPINLength",
            self.min_pin_length,
            &MIN_PIN_LENGTH_RANGE,
            "4-24",
        )?;
        if let Some(days) = self.pin_lifetime_days {
            range(
                "PINLifetime",
                days,
                &PIN_LIFETIME_DAYS_RANGE,
                "1-999 or Unlimited",
            )?;
        }
        range(
            "PINHistoryCount",
            self.pin_history_count,
            &PIN_HISTORY_COUNT_RANGE,
            "1-20",
        )?;
        if let Some(max) = self.max_logon_attempts {
            range(
                "MaxLogonAttempts",
                max,
                &MAX_LOGON_ATTEMPTS_RANGE,
                "1-999 or Unlimited",
            )?;
        }
        if let Some(reset) = self.logon_failures_before_pin_reset {
            if reset == 0 {
                return Err(PolicyError::OutOfRange {
                    parameter: "LogonFailuresBeforePINReset",
                    value: reset,
                    allowed: "at least 1 and below MaxLogonAttempts, or Unlimited",
                });
            }
            if let Some(max) = self.max_logon_attempts {
                if reset >= max {
                    return Err(PolicyError::ResetNotBelowLockout { reset, max });
                }
            }
        }
        let chars = self.reset_pin_text.chars().count();
        if chars > RESET_PIN_TEXT_MAX_CHARS {
            return Err(PolicyError::ResetPinTextTooLong { chars });
        }
        Ok(())
    }

    /// Checks `pin` against the rules of this policy (not against the history, which needs the
    /// stored hashes).
    ///
    /// `extension` is the user's extension if any; a PIN beginning with it is always refused.
    pub fn check_pin(&self, pin: &str, extension: Option<&str>) -> Result<(), PinRejected> {
        let digits = pin.as_bytes();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(PinRejected::NotDigits);
        }
        if digits.len() < self.min_pin_length as usize {
            return Err(PinRejected::TooShort {
                min: self.min_pin_length,
            });
        }
        if digits.len() > MAX_PIN_LENGTH as usize {
            return Err(PinRejected::TooLong {
                max: MAX_PIN_LENGTH,
            });
        }
        if !self.allow_common_patterns {
            if digits.windows(2).all(|w| w[0] == w[1]) {
                return Err(PinRejected::AllSameDigit);
            }
            if is_run(digits, 1) || is_run(digits, 9) {
                return Err(PinRejected::ConsecutiveDigits);
            }
        }
        if let Some(ext) = extension.filter(|e| !e.is_empty()) {
            if pin.starts_with(ext) {
                return Err(PinRejected::StartsWithExtension);
            }
        }
        Ok(())
    }

    /// Generates a random PIN of exactly `min_pin_length` digits that passes
    /// [`check_pin`](Self::check_pin) and for which `is_in_history` returns false.
    ///
    /// Each digit is drawn uniformly from `rng` (which must be a CSPRNG); a refused candidate is
    /// thrown away whole and a new one drawn, so the accepted PINs are uniform over the
    /// acceptable ones. `is_in_history` is only called for candidates that pass the rules (it is
    /// typically a slow hash comparison). Gives up after [`GENERATE_MAX_ATTEMPTS`] candidates.
    pub fn generate_pin<R>(
        &self,
        rng: &mut R,
        extension: Option<&str>,
        mut is_in_history: impl FnMut(&str) -> bool,
    ) -> Result<String, PinGenerationError>
    where
        R: CryptoRng + RngCore + ?Sized,
    {
        self.validate().map_err(PinGenerationError::InvalidPolicy)?;
        let len = self.min_pin_length as usize;
        let mut pin = String::with_capacity(len);
        for _ in 0..GENERATE_MAX_ATTEMPTS {
            pin.clear();
            for _ in 0..len {
                pin.push(char::from(b'0' + rng.gen_range(0..10u8)));
            }
            if self.check_pin(&pin, extension).is_ok() && !is_in_history(&pin) {
                return Ok(pin);
            }
        }
        Err(PinGenerationError::Exhausted {
            attempts: GENERATE_MAX_ATTEMPTS,
        })
    }
}

/// True when every digit is the previous one plus `step` modulo 10 (`step` 1 ascends, 9
/// descends).
fn is_run(digits: &[u8], step: u8) -> bool {
    digits
        .windows(2)
        .all(|w| (w[0] - b'0' + step) % 10 == w[1] - b'0')
}

/// Serde for an optional limit: a number, or the string `"Unlimited"` for `None`.
mod unlimited {
    use super::fmt;
    use serde::{de, Deserializer, Serializer};

    const UNLIMITED: &str = "Unlimited";

    pub(super) fn serialize<S: Serializer>(v: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u32(*n),
            None => s.serialize_str(UNLIMITED),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Option<u32>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number or \"Unlimited\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(Some)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(Some)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.eq_ignore_ascii_case(UNLIMITED) {
                    Ok(None)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn strict() -> PinPolicy {
        PinPolicy::default()
    }

    #[test]
    fn defaults_match_spec_and_validate() {
        let p = PinPolicy::default();
        assert_eq!(p.min_pin_length, 6);
        assert_eq!(p.pin_lifetime_days, Some(60));
        assert_eq!(p.pin_history_count, 5);
        assert!(!p.allow_common_patterns);
        assert_eq!(p.logon_failures_before_pin_reset, Some(5));
        assert_eq!(p.max_logon_attempts, Some(15));
        assert!(p.reset_pin_text.is_empty());
        p.validate().unwrap();
    }

    #[test]
    fn validate_names_parameter_and_range() {
        let cases: Vec<(PinPolicy, &str)> = vec![
            (
                PinPolicy {
                    min_pin_length: 3,
                    ..strict()
                },
                "MinPINLength is 3, allowed: 4-24",
            ),
            (
                PinPolicy {
                    min_pin_length: 25,
                    ..strict()
                },
                "MinPINLength is 25, allowed: 4-24",
            ),
            (
                PinPolicy {
                    pin_lifetime_days: Some(0),
                    ..strict()
                },
                "PINLifetime is 0, allowed: 1-999 or Unlimited",
            ),
            (
                PinPolicy {
                    pin_lifetime_days: Some(1000),
                    ..strict()
                },
                "PINLifetime is 1000, allowed: 1-999 or Unlimited",
            ),
            (
                PinPolicy {
                    pin_history_count: 21,
                    ..strict()
                },
                "PINHistoryCount is 21, allowed: 1-20",
            ),
            (
                PinPolicy {
                    pin_history_count: 0,
                    ..strict()
                },
                "PINHistoryCount is 0, allowed: 1-20",
            ),
            (
                PinPolicy {
                    max_logon_attempts: Some(1000),
                    logon_failures_before_pin_reset: None,
                    ..strict()
                },
                "MaxLogonAttempts is 1000, allowed: 1-999 or Unlimited",
            ),
            (
                PinPolicy {
                    logon_failures_before_pin_reset: Some(15),
                    ..strict()
                },
                "LogonFailuresBeforePINReset is 15, allowed: below MaxLogonAttempts (15) or Unlimited",
            ),
            (
                PinPolicy {
                    reset_pin_text: "é".repeat(513),
                    ..strict()
                },
                "ResetPINText has 513 characters, allowed: at most 512",
            ),
        ];
        for (policy, message) in cases {
            assert_eq!(policy.validate().unwrap_err().to_string(), message);
        }
        // Boundaries that are allowed.
        PinPolicy {
            min_pin_length: 24,
            pin_lifetime_days: None,
            pin_history_count: 20,
            logon_failures_before_pin_reset: Some(998),
            max_logon_attempts: Some(999),
            reset_pin_text: "é".repeat(512),
            ..strict()
        }
        .validate()
        .unwrap();
        PinPolicy {
            logon_failures_before_pin_reset: Some(100),
            max_logon_attempts: None,
            ..strict()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn toml_unlimited_and_defaults() {
        let p: PinPolicy = toml::from_str(
            "min_pin_length = 8\npin_lifetime_days = \"Unlimited\"\nmax_logon_attempts = \"unlimited\"\n",
        )
        .unwrap();
        assert_eq!(p.min_pin_length, 8);
        assert_eq!(p.pin_lifetime_days, None);
        assert_eq!(p.max_logon_attempts, None);
        assert_eq!(p.logon_failures_before_pin_reset, Some(5));
        let text = toml::to_string(&p).unwrap();
        assert!(text.contains("pin_lifetime_days = \"Unlimited\""), "{text}");
        assert_eq!(toml::from_str::<PinPolicy>(&text).unwrap(), p);
        assert_eq!(
            toml::from_str::<PinPolicy>("").unwrap(),
            PinPolicy::default()
        );
        assert!(toml::from_str::<PinPolicy>("pin_lifetime_days = \"never\"").is_err());
        assert!(toml::from_str::<PinPolicy>("pin_lifetime_days = -1").is_err());
        assert!(toml::from_str::<PinPolicy>("no_such_field = 1").is_err());
    }

    #[test]
    fn spec_examples_are_refused() {
        let p = PinPolicy {
            min_pin_length: 4,
            ..strict()
        };
        assert_eq!(p.check_pin("11111", None), Err(PinRejected::AllSameDigit));
        assert_eq!(
            p.check_pin("123456", None),
            Err(PinRejected::ConsecutiveDigits)
        );
        assert_eq!(
            p.check_pin("65432", None),
            Err(PinRejected::ConsecutiveDigits)
        );
        assert_eq!(
            p.check_pin("3669712", Some("36697")),
            Err(PinRejected::StartsWithExtension)
        );
    }

    #[test]
    fn consecutive_runs_wrap_around() {
        let p = PinPolicy {
            min_pin_length: 4,
            ..strict()
        };
        for pin in ["8901", "7890123", "2109", "1098765"] {
            assert_eq!(
                p.check_pin(pin, None),
                Err(PinRejected::ConsecutiveDigits),
                "{pin}"
            );
        }
        for pin in ["123457", "124356", "1357", "901234a"] {
            assert_ne!(
                p.check_pin(pin, None),
                Err(PinRejected::ConsecutiveDigits),
                "{pin}"
            );
        }
    }

    #[test]
    fn common_patterns_allowed_keeps_extension_rule() {
        let p = PinPolicy {
            allow_common_patterns: true,
            ..strict()
        };
        assert_eq!(p.check_pin("111111", None), Ok(()));
        assert_eq!(p.check_pin("123456", None), Ok(()));
        assert_eq!(
            p.check_pin("3669712", Some("36697")),
            Err(PinRejected::StartsWithExtension)
        );
        assert_eq!(p.check_pin("7366971", Some("36697")), Ok(()));
        assert_eq!(p.check_pin("366971", Some("")), Ok(()));
    }

    #[test]
    fn length_and_charset() {
        let p = strict();
        assert_eq!(p.check_pin("", None), Err(PinRejected::NotDigits));
        assert_eq!(p.check_pin("12a456", None), Err(PinRejected::NotDigits));
        assert_eq!(
            p.check_pin("１２３４５６", None),
            Err(PinRejected::NotDigits)
        );
        assert_eq!(p.check_pin(" 184736", None), Err(PinRejected::NotDigits));
        assert_eq!(
            p.check_pin("18473", None),
            Err(PinRejected::TooShort { min: 6 })
        );
        assert_eq!(p.check_pin("184736", None), Ok(()));
        assert_eq!(p.check_pin("1847369999", None), Ok(()));
    }

    #[test]
    fn generation_gives_up_instead_of_looping() {
        let mut rng = StdRng::seed_from_u64(1);
        let err = strict().generate_pin(&mut rng, None, |_| true).unwrap_err();
        assert_eq!(
            err,
            PinGenerationError::Exhausted {
                attempts: GENERATE_MAX_ATTEMPTS
            }
        );
        let bad = PinPolicy {
            min_pin_length: 2,
            ..strict()
        };
        assert!(matches!(
            bad.generate_pin(&mut rng, None, |_| false),
            Err(PinGenerationError::InvalidPolicy(_))
        ));
    }

    #[test]
    fn generation_avoids_history_and_extension_of_full_length() {
        let p = PinPolicy {
            min_pin_length: 4,
            ..strict()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut history = vec!["5555".to_string()];
        for _ in 0..200 {
            let pin = p
                .generate_pin(&mut rng, Some("4821"), |c| history.iter().any(|h| h == c))
                .unwrap();
            assert_ne!(pin, "4821");
            assert!(!history.contains(&pin));
            history.push(pin);
        }
    }

    #[test]
    fn generated_digits_are_roughly_uniform() {
        let p = PinPolicy {
            allow_common_patterns: true,
            min_pin_length: 24,
            ..strict()
        };
        let mut rng = StdRng::seed_from_u64(42);
        let mut counts = [0u32; 10];
        for _ in 0..500 {
            for b in p.generate_pin(&mut rng, None, |_| false).unwrap().bytes() {
                counts[usize::from(b - b'0')] += 1;
            }
        }
        // 12 000 digits, 1200 expected per digit; 6 sigma is about 200.
        for c in counts {
            assert!((1000..1400).contains(&c), "{counts:?}");
        }
    }

    fn any_valid_policy() -> impl Strategy<Value = PinPolicy> {
        (4u32..=24, 1u32..=20, any::<bool>()).prop_map(|(len, hist, allow)| PinPolicy {
            min_pin_length: len,
            pin_history_count: hist,
            allow_common_patterns: allow,
            ..PinPolicy::default()
        })
    }

    proptest! {
        #[test]
        fn generated_pins_satisfy_the_policy(
            policy in any_valid_policy(),
            ext in proptest::option::of("[0-9]{1,6}"),
            seed in any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let forbidden = "9999999".to_string();
            let pin = policy
                .generate_pin(&mut rng, ext.as_deref(), |c| c.starts_with(&forbidden[..4]))
                .unwrap();
            prop_assert_eq!(pin.len(), policy.min_pin_length as usize);
            prop_assert!(pin.bytes().all(|b| b.is_ascii_digit()));
            prop_assert_eq!(policy.check_pin(&pin, ext.as_deref()), Ok(()));
            prop_assert!(!pin.starts_with("9999"));
        }

        #[test]
        fn extension_prefix_always_refused(
            ext in "[0-9]{1,8}",
            tail in "[0-9]{0,8}",
            allow in any::<bool>(),
        ) {
            let policy = PinPolicy { min_pin_length: 4, allow_common_patterns: allow, ..PinPolicy::default() };
            let pin = format!("{ext}{tail}");
            let result = policy.check_pin(&pin, Some(&ext));
            prop_assert!(result.is_err());
            if pin.len() >= 4 && allow {
                prop_assert_eq!(result, Err(PinRejected::StartsWithExtension));
            }
        }

        #[test]
        fn runs_and_repeats_refused_unless_allowed(
            start in 0u8..10,
            len in 4usize..=24,
            kind in 0u8..3,
        ) {
            let step = [0u8, 1, 9][usize::from(kind)];
            let pin: String = (0..len)
                .map(|i| char::from(b'0' + (start + (step * (i % 10) as u8) % 10) % 10))
                .collect();
            let strict = PinPolicy { min_pin_length: 4, ..PinPolicy::default() };
            let expected = if kind == 0 { PinRejected::AllSameDigit } else { PinRejected::ConsecutiveDigits };
            prop_assert_eq!(strict.check_pin(&pin, None), Err(expected));
            let lax = PinPolicy { allow_common_patterns: true, ..strict };
            prop_assert_eq!(lax.check_pin(&pin, None), Ok(()));
        }

        #[test]
        fn accepted_pins_obey_every_rule(pin in "[0-9a]{0,10}", ext in proptest::option::of("[0-9]{1,4}")) {
            let policy = PinPolicy::default();
            if policy.check_pin(&pin, ext.as_deref()).is_ok() {
                let b = pin.as_bytes();
                prop_assert!(b.len() >= 6 && b.iter().all(u8::is_ascii_digit));
                prop_assert!(b.windows(2).any(|w| w[0] != w[1]));
                prop_assert!(!is_run(b, 1) && !is_run(b, 9));
                if let Some(e) = &ext {
                    prop_assert!(!pin.starts_with(e.as_str()));
                }
            }
        }
    }
}
