//! Subscriber access: the voice mail dialogue of an inbound call. A caller signs in with
//! extension and PIN, changes the PIN when it must be changed, hears the new voice messages and
//! reaches the main menu.
//!
//! The dialogue ([`run`]) is written against two small interfaces, so that it is the same on
//! every telephone line and over every store:
//!
//! * a [`Line`]: what the caller hears ([`Say`]) and keys in (RFC 4733 telephone-events on a
//!   SIP call, see `crate::telephony`); the line owns the inactivity timeouts;
//! * [`Mailboxes`]: the sign-in, PIN change and voice message operations, with the PIN
//!   lifecycle of `crate::phone` (failures counted, automatic reset and mail, lockout, expiry,
//!   forced change after a reset). [`StoreMailboxes`] implements it over the store.
//!
//! The rules of the dialogue (the key map is in the README, "Subscriber access"):
//!
//! * the extension is taken from the caller id when exactly one UM mailbox has it, otherwise
//!   asked for (`*` at the PIN prompt asks for another extension);
//! * three wrong PINs in one call, or three unknown extensions, end the call; every wrong PIN
//!   counts as a failed logon of the mailbox (so `LogonFailuresBeforePINReset` resets and mails
//!   the PIN, and `MaxLogonAttempts` locks the mailbox, across calls);
//! * a PIN that is expired or was set by a reset leads straight to choosing a new PIN (twice),
//!   with the policy's rule read back on refusal; three refusals end the call;
//! * signed in: the count of new messages, the new messages newest first (each with its number
//!   and time, then its menu), then the main menu.
//!
//! No PIN is ever logged: the dialogue logs only what happened (signed in, locked out) and the
//! mailbox id.

pub mod recordings;
pub mod speech;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::mail::{MailDelivery, Outbox};
use crate::phone::{self, PhoneError, PinChange};
use crate::pin_policy::PinRejected;
use crate::store::voicemail::{GreetingType, VoiceMessageId, VoiceMessageInfo};
use crate::store::{Mailbox, MailboxId, PinCheck, StoreError};
use crate::throttle::{ClientKey, Throttle, ThrottlePolicy};

/// The longest extension a caller may key in.
pub const MAX_EXTENSION_DIGITS: usize = 20;
/// The longest PIN a caller may key in (the policy's maximum).
pub const MAX_PIN_DIGITS: usize = 24;
/// Wrong PINs, unknown extensions, refused new PINs or unanswered menus after which a call
/// ends.
pub const MAX_TRIES: u32 = 3;

/// A recorded prompt. [`Prompt::text`] is what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prompt {
    /// The first thing a caller hears.
    Welcome,
    /// Asks for the extension.
    EnterExtension,
    /// Asks for the PIN.
    EnterPin,
    /// The extension names no UM mailbox.
    UnknownExtension,
    /// The PIN is wrong.
    WrongPin,
    /// This failure reset the PIN and mailed the new one.
    PinResetMailed,
    /// The mailbox is locked out.
    LockedOut,
    /// The mailbox has no PIN yet.
    NoPin,
    /// Too many wrong tries in this call.
    TooManyTries,
    /// Ends every call we end.
    Goodbye,
    /// The PIN is older than the policy allows.
    PinExpired,
    /// The PIN was reset and must be changed now.
    MustChangePin,
    /// Asks for a new PIN.
    EnterNewPin,
    /// Asks for the new PIN again.
    ReenterNewPin,
    /// The two entries differ.
    PinsDoNotMatch,
    /// Followed by a number and [`Prompt::Digits`].
    PinTooShort,
    /// The new PIN is longer than allowed.
    PinTooLong,
    /// Repeated or consecutive digits.
    PinCommonPattern,
    /// The new PIN starts with the extension.
    PinStartsWithExtension,
    /// The new PIN is in the PIN history.
    PinUsedBefore,
    /// The PIN was changed.
    PinChanged,
    /// "digits", after a number.
    Digits,
    /// "You have", before a number.
    YouHave,
    /// "new voice message", after one.
    NewMessage,
    /// "new voice messages", after a number other than one.
    NewMessages,
    /// "Message from", before the calling number.
    MessageFrom,
    /// Said instead of the number when there is none.
    UnknownCaller,
    /// "received", before the time.
    Received,
    /// The keys of a message.
    MessageMenu,
    /// The message was deleted.
    MessageDeleted,
    /// The last message was played.
    NoMoreMessages,
    /// The keys of the main menu.
    MainMenu,
    /// Which greeting to record.
    GreetingMenu,
    /// A key that means nothing here.
    InvalidKey,
    /// Something failed on our side.
    SystemError,
}

impl Prompt {
    /// Every prompt, for the prompt set and its tests.
    pub const ALL: [Prompt; 35] = [
        Prompt::Welcome,
        Prompt::EnterExtension,
        Prompt::EnterPin,
        Prompt::UnknownExtension,
        Prompt::WrongPin,
        Prompt::PinResetMailed,
        Prompt::LockedOut,
        Prompt::NoPin,
        Prompt::TooManyTries,
        Prompt::Goodbye,
        Prompt::PinExpired,
        Prompt::MustChangePin,
        Prompt::EnterNewPin,
        Prompt::ReenterNewPin,
        Prompt::PinsDoNotMatch,
        Prompt::PinTooShort,
        Prompt::PinTooLong,
        Prompt::PinCommonPattern,
        Prompt::PinStartsWithExtension,
        Prompt::PinUsedBefore,
        Prompt::PinChanged,
        Prompt::Digits,
        Prompt::YouHave,
        Prompt::NewMessage,
        Prompt::NewMessages,
        Prompt::MessageFrom,
        Prompt::UnknownCaller,
        Prompt::Received,
        Prompt::MessageMenu,
        Prompt::MessageDeleted,
        Prompt::NoMoreMessages,
        Prompt::MainMenu,
        Prompt::GreetingMenu,
        Prompt::InvalidKey,
        Prompt::SystemError,
    ];

    /// Whether the prompt reports what happened (a wrong PIN, a reset, a lockout, a change, a
    /// deletion, a failure): such a prompt is said in full even when keys were pressed ahead,
    /// which skip every other prompt.
    pub fn reports(self) -> bool {
        matches!(
            self,
            Prompt::WrongPin
                | Prompt::PinResetMailed
                | Prompt::LockedOut
                | Prompt::TooManyTries
                | Prompt::PinExpired
                | Prompt::MustChangePin
                | Prompt::PinChanged
                | Prompt::MessageDeleted
                | Prompt::SystemError
        )
    }

    /// What the prompt says.
    pub fn text(self) -> &'static str {
        match self {
            Prompt::Welcome => "Welcome to voice mail.",
            Prompt::EnterExtension => "Please enter your extension, followed by the pound key.",
            Prompt::EnterPin => "Please enter your PIN, followed by the pound key.",
            Prompt::UnknownExtension => "That extension is not valid.",
            Prompt::WrongPin => "That PIN is not correct.",
            Prompt::PinResetMailed => {
                "Your PIN has been reset. The new PIN was sent to your mailbox."
            }
            Prompt::LockedOut => "Your mailbox is locked. Please contact your administrator.",
            Prompt::NoPin => "No PIN has been set for this mailbox.",
            Prompt::TooManyTries => "Too many attempts.",
            Prompt::Goodbye => "Goodbye.",
            Prompt::PinExpired => "Your PIN has expired.",
            Prompt::MustChangePin => "You must choose a new PIN now.",
            Prompt::EnterNewPin => "Please enter your new PIN, followed by the pound key.",
            Prompt::ReenterNewPin => "Please enter the new PIN again, followed by the pound key.",
            Prompt::PinsDoNotMatch => "The two PINs do not match.",
            Prompt::PinTooShort => "That PIN is too short. A PIN must have at least",
            Prompt::PinTooLong => "That PIN is too long.",
            Prompt::PinCommonPattern => {
                "A PIN must not be one repeated digit or a run of consecutive digits."
            }
            Prompt::PinStartsWithExtension => "A PIN must not start with your extension.",
            Prompt::PinUsedBefore => "You have used that PIN before. Please choose another.",
            Prompt::PinChanged => "Your PIN has been changed.",
            Prompt::Digits => "digits.",
            Prompt::YouHave => "You have",
            Prompt::NewMessage => "new voice message.",
            Prompt::NewMessages => "new voice messages.",
            Prompt::MessageFrom => "Message from",
            Prompt::UnknownCaller => "an unknown caller.",
            Prompt::Received => "received",
            Prompt::MessageMenu => {
                "To replay the message, press 1. To delete it, press 7. For the next message, \
                 press pound. For the main menu, press star."
            }
            Prompt::MessageDeleted => "Message deleted.",
            Prompt::NoMoreMessages => "There are no more messages.",
            Prompt::MainMenu => {
                "To listen to your messages, press 1. To record a greeting, press 3. To change \
                 your PIN, press 4. To end the call, press star."
            }
            Prompt::GreetingMenu => {
                "For your normal greeting, press 1. For your out of office greeting, press 2. \
                 To go back, press star."
            }
            Prompt::InvalidKey => "That key is not valid.",
            Prompt::SystemError => "Sorry, that cannot be done now.",
        }
    }
}

/// One thing said to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Say {
    /// A recorded prompt.
    Prompt(Prompt),
    /// A number, as a number ("twelve").
    Number(u64),
    /// Digits one by one (a calling number).
    DigitString(String),
    /// A time, in unix seconds (said in the time zone of `[telephony] time_zone`).
    Time(i64),
    /// Audio: 8 kHz mono 16-bit PCM (a voice message).
    Audio(Arc<[i16]>),
}

/// What the caller keyed in for [`Line::read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Digits ended by `#` (not included) or by reaching the most asked for.
    Digits(String),
    /// `*` was pressed (the digits before it are dropped).
    Star,
    /// Nothing (more) was keyed in within the line's inactivity timeout.
    Timeout,
}

/// The caller hung up (or the call was ended by us, e.g. at its maximum length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the caller hung up")]
pub struct HungUp;

/// A telephone line with a caller on it.
pub trait Line: Send {
    /// Says `items` in order. A key pressed meanwhile stops the rest (barge-in) and is kept
    /// for the next [`Line::read`] or [`Line::key`].
    fn say(&mut self, items: Vec<Say>) -> impl Future<Output = Result<(), HungUp>> + Send;

    /// Reads keys until `#`, `*` or `max` digits; keys pressed during the last
    /// [`Line::say`] come first.
    fn read(&mut self, max: usize) -> impl Future<Output = Result<Input, HungUp>> + Send;

    /// Reads one key (`0`-`9`, `*`, `#`); `None` when none came within the timeout.
    fn key(&mut self) -> impl Future<Output = Result<Option<char>, HungUp>> + Send;

    /// Runs the greeting dialogue of PlayOnPhoneGreeting for `kind` (hear it, record a new one
    /// from the keypad, save or cancel), then returns to the caller.
    fn greeting(
        &mut self,
        mailbox: MailboxId,
        kind: GreetingType,
    ) -> impl Future<Output = Result<(), HungUp>> + Send;
}

/// The store operations of the dialogue.
pub trait Mailboxes: Send + Sync {
    /// The UM mailbox with this extension, when exactly one has it.
    fn by_extension(
        &self,
        extension: &str,
    ) -> impl Future<Output = Result<Option<Mailbox>, PhoneError>> + Send;

    /// A phone logon from `addr`: checks the PIN, counting a failure and resetting the PIN
    /// (with its mail) when the policy says so (`crate::phone::logon`), unless the failed-logon
    /// throttle refuses it.
    fn logon(
        &self,
        user: &str,
        pin: &str,
        addr: Option<IpAddr>,
    ) -> impl Future<Output = Result<SignInCheck, PhoneError>> + Send;

    /// A PIN change under the mailbox's policy (`crate::phone::change_pin`).
    fn change_pin(
        &self,
        user: &str,
        old: &str,
        new: &str,
    ) -> impl Future<Output = Result<PinChange, PhoneError>> + Send;

    /// The voice messages of the mailbox, newest first.
    fn messages(
        &self,
        mailbox: MailboxId,
    ) -> impl Future<Output = Result<Vec<VoiceMessageInfo>, PhoneError>> + Send;

    /// The audio of a message; `None` when it is gone.
    fn audio(
        &self,
        mailbox: MailboxId,
        id: VoiceMessageId,
    ) -> impl Future<Output = Result<Option<Arc<[i16]>>, PhoneError>> + Send;

    /// Marks a message heard.
    fn mark_heard(
        &self,
        mailbox: MailboxId,
        id: VoiceMessageId,
    ) -> impl Future<Output = Result<(), PhoneError>> + Send;

    /// Deletes a message.
    fn delete(
        &self,
        mailbox: MailboxId,
        id: VoiceMessageId,
    ) -> impl Future<Output = Result<(), PhoneError>> + Send;
}

/// Who is calling: the user part of the caller's SIP identity (From) and the address the call
/// came from, when known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The user part of the From URI (a number or an extension), if any.
    pub id: Option<String>,
    /// The IP address the INVITE came from (the failed-logon throttle's client).
    pub addr: Option<IpAddr>,
}

/// The answer to a PIN at sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignInCheck {
    /// The PIN was checked.
    Checked(phone::Logon),
    /// Refused unchecked by the failed-logon throttle (too many failures of this mailbox or
    /// from this address just now); nothing was counted.
    Throttled,
}

/// How a call ended, for the log and the tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The caller hung up; `signed_in` names the mailbox when the caller had signed in.
    HungUp {
        /// The mailbox signed in to, if any.
        signed_in: Option<MailboxId>,
    },
    /// The caller chose to end the call from the main menu, or it timed out there.
    Finished(MailboxId),
    /// Three wrong PINs, unknown extensions or refused new PINs, or unanswered prompts.
    TooManyTries,
    /// The mailbox is locked out (already, or by this call's failures).
    LockedOut(MailboxId),
    /// The mailbox has no PIN yet.
    NoPin(MailboxId),
    /// The failed-logon throttle refused a PIN check.
    Throttled,
    /// The store failed; the caller heard [`Prompt::SystemError`].
    Failed,
}

/// Runs the dialogue of one call from `caller` on `line`. Returns when the call is to end (the
/// caller of `run` then hangs up if the caller has not).
pub async fn run<L: Line, M: Mailboxes>(line: &mut L, mailboxes: &M, caller: &Caller) -> Ending {
    let mut dialogue = Dialogue {
        line,
        mailboxes,
        signed_in: None,
        addr: caller.addr,
    };
    match dialogue.call(caller.id.as_deref()).await {
        Ok(ending) => ending,
        Err(Stop::HungUp) => Ending::HungUp {
            signed_in: dialogue.signed_in,
        },
        Err(Stop::Failed(e)) => {
            tracing::warn!(error = %e, "subscriber access failed");
            let _ = dialogue
                .line
                .say(vec![
                    Say::Prompt(Prompt::SystemError),
                    Say::Prompt(Prompt::Goodbye),
                ])
                .await;
            Ending::Failed
        }
    }
}

/// Why the dialogue stops early.
enum Stop {
    HungUp,
    Failed(PhoneError),
}

impl From<HungUp> for Stop {
    fn from(_: HungUp) -> Stop {
        Stop::HungUp
    }
}

impl From<PhoneError> for Stop {
    fn from(e: PhoneError) -> Stop {
        Stop::Failed(e)
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Failed(PhoneError::Store(e))
    }
}

struct Dialogue<'a, L, M> {
    line: &'a mut L,
    mailboxes: &'a M,
    signed_in: Option<MailboxId>,
    addr: Option<IpAddr>,
}

/// The outcome of the sign-in.
enum SignIn {
    /// Signed in with this PIN.
    Done(Box<Mailbox>, String),
    /// The call ends.
    End(Ending),
}

impl<L: Line, M: Mailboxes> Dialogue<'_, L, M> {
    async fn say(&mut self, prompts: &[Prompt]) -> Result<(), HungUp> {
        self.line
            .say(prompts.iter().copied().map(Say::Prompt).collect())
            .await
    }

    async fn goodbye(&mut self, first: Prompt, ending: Ending) -> Result<Ending, Stop> {
        self.say(&[first, Prompt::Goodbye]).await?;
        Ok(ending)
    }

    async fn call(&mut self, caller_id: Option<&str>) -> Result<Ending, Stop> {
        self.say(&[Prompt::Welcome]).await?;
        let from_caller_id = match caller_id {
            Some(id) if is_extension(id) => self
                .mailboxes
                .by_extension(id)
                .await?
                .filter(|m| m.um_enabled),
            _ => None,
        };
        let (mailbox, pin) = match self.sign_in(from_caller_id).await? {
            SignIn::Done(mailbox, pin) => (mailbox, pin),
            SignIn::End(ending) => return Ok(ending),
        };
        self.signed_in = Some(mailbox.id);
        tracing::info!(mailbox = %mailbox.id, "signed in by phone");
        self.main(&mailbox, pin).await
    }

    /// Asks for the extension until it names a UM mailbox; `None` after [`MAX_TRIES`].
    async fn extension(&mut self) -> Result<Option<Mailbox>, Stop> {
        for _ in 0..MAX_TRIES {
            self.say(&[Prompt::EnterExtension]).await?;
            let Input::Digits(digits) = self.line.read(MAX_EXTENSION_DIGITS).await? else {
                continue;
            };
            if !digits.is_empty() {
                if let Some(m) = self.mailboxes.by_extension(&digits).await? {
                    if m.um_enabled {
                        return Ok(Some(m));
                    }
                }
            }
            self.say(&[Prompt::UnknownExtension]).await?;
        }
        Ok(None)
    }

    async fn sign_in(&mut self, mut mailbox: Option<Mailbox>) -> Result<SignIn, Stop> {
        let mut wrong = 0;
        loop {
            let current = match mailbox.take() {
                Some(m) => m,
                None => match self.extension().await? {
                    Some(m) => m,
                    None => {
                        return Ok(SignIn::End(
                            self.goodbye(Prompt::TooManyTries, Ending::TooManyTries)
                                .await?,
                        ))
                    }
                },
            };
            self.say(&[Prompt::EnterPin]).await?;
            let pin = match self.line.read(MAX_PIN_DIGITS).await? {
                // `*`: another extension.
                Input::Star => continue,
                Input::Digits(pin) if !pin.is_empty() => pin,
                Input::Digits(_) | Input::Timeout => {
                    wrong += 1;
                    if wrong >= MAX_TRIES {
                        return Ok(SignIn::End(
                            self.goodbye(Prompt::TooManyTries, Ending::TooManyTries)
                                .await?,
                        ));
                    }
                    mailbox = Some(current);
                    continue;
                }
            };
            let logon = match self.mailboxes.logon(&current.user, &pin, self.addr).await? {
                SignInCheck::Checked(logon) => logon,
                SignInCheck::Throttled => {
                    tracing::info!(mailbox = %current.id, "phone logon refused by the throttle");
                    return Ok(SignIn::End(
                        self.goodbye(Prompt::TooManyTries, Ending::Throttled)
                            .await?,
                    ));
                }
            };
            match logon.check {
                PinCheck::Ok => return Ok(SignIn::Done(Box::new(current), pin)),
                PinCheck::OkMustChange | PinCheck::Expired => {
                    let why = if logon.check == PinCheck::Expired {
                        Prompt::PinExpired
                    } else {
                        Prompt::MustChangePin
                    };
                    self.say(&[why]).await?;
                    return match self.new_pin(&current, &pin).await? {
                        Some(new) => Ok(SignIn::Done(Box::new(current), new)),
                        None => Ok(SignIn::End(
                            self.goodbye(Prompt::TooManyTries, Ending::TooManyTries)
                                .await?,
                        )),
                    };
                }
                PinCheck::Wrong { .. } => {
                    tracing::info!(mailbox = %current.id, "wrong PIN by phone");
                    if logon.auto_reset.is_some() {
                        self.say(&[Prompt::WrongPin, Prompt::PinResetMailed])
                            .await?;
                    } else {
                        self.say(&[Prompt::WrongPin]).await?;
                    }
                    wrong += 1;
                    if wrong >= MAX_TRIES {
                        return Ok(SignIn::End(
                            self.goodbye(Prompt::TooManyTries, Ending::TooManyTries)
                                .await?,
                        ));
                    }
                    mailbox = Some(current);
                }
                PinCheck::LockedOut => {
                    tracing::info!(mailbox = %current.id, "locked-out mailbox called");
                    let ending = Ending::LockedOut(current.id);
                    return Ok(SignIn::End(self.goodbye(Prompt::LockedOut, ending).await?));
                }
                PinCheck::NoPin => {
                    let ending = Ending::NoPin(current.id);
                    return Ok(SignIn::End(self.goodbye(Prompt::NoPin, ending).await?));
                }
                // (the mailbox was disabled or removed since it was looked up)
                PinCheck::NotUmEnabled | PinCheck::UnknownUser => {
                    self.say(&[Prompt::UnknownExtension]).await?;
                }
            }
        }
    }

    /// Asks for a new PIN twice and sets it (the old one is `old`); `None` after [`MAX_TRIES`]
    /// refusals or unanswered prompts.
    async fn new_pin(&mut self, mailbox: &Mailbox, old: &str) -> Result<Option<String>, Stop> {
        for _ in 0..MAX_TRIES {
            self.say(&[Prompt::EnterNewPin]).await?;
            let Input::Digits(first) = self.line.read(MAX_PIN_DIGITS).await? else {
                continue;
            };
            self.say(&[Prompt::ReenterNewPin]).await?;
            let Input::Digits(second) = self.line.read(MAX_PIN_DIGITS).await? else {
                continue;
            };
            if first != second {
                self.say(&[Prompt::PinsDoNotMatch]).await?;
                continue;
            }
            match self
                .mailboxes
                .change_pin(&mailbox.user, old, &first)
                .await?
            {
                PinChange::Changed => {
                    tracing::info!(mailbox = %mailbox.id, "PIN changed by phone");
                    self.say(&[Prompt::PinChanged]).await?;
                    return Ok(Some(first));
                }
                PinChange::Rejected(rule) => {
                    let said = rule_said(&rule, mailbox.policy.min_pin_length);
                    self.line.say(said).await?;
                }
                // (changed meanwhile by another call or a ResetPIN)
                PinChange::OldPinRefused(_) => {
                    self.say(&[Prompt::WrongPin]).await?;
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    async fn main(&mut self, mailbox: &Mailbox, mut pin: String) -> Result<Ending, Stop> {
        let messages = self.mailboxes.messages(mailbox.id).await?;
        let new: Vec<VoiceMessageInfo> = messages.into_iter().filter(|m| !m.heard).collect();
        let count = u64::try_from(new.len()).unwrap_or(u64::MAX);
        self.line
            .say(vec![
                Say::Prompt(Prompt::YouHave),
                Say::Number(count),
                Say::Prompt(if count == 1 {
                    Prompt::NewMessage
                } else {
                    Prompt::NewMessages
                }),
            ])
            .await?;
        if !new.is_empty() {
            self.messages(mailbox.id, new).await?;
        }
        let mut unanswered = 0;
        loop {
            self.say(&[Prompt::MainMenu]).await?;
            match self.line.key().await? {
                Some('1') => {
                    let all = self.mailboxes.messages(mailbox.id).await?;
                    self.messages(mailbox.id, all).await?;
                }
                Some('3') => self.greeting(mailbox.id).await?,
                Some('4') => {
                    if let Some(new) = self.new_pin(mailbox, &pin).await? {
                        pin = new;
                    }
                }
                Some('*') => {
                    self.say(&[Prompt::Goodbye]).await?;
                    return Ok(Ending::Finished(mailbox.id));
                }
                Some(_) => self.say(&[Prompt::InvalidKey]).await?,
                None => {
                    unanswered += 1;
                    if unanswered >= MAX_TRIES {
                        self.say(&[Prompt::Goodbye]).await?;
                        return Ok(Ending::Finished(mailbox.id));
                    }
                }
            }
        }
    }

    async fn greeting(&mut self, mailbox: MailboxId) -> Result<(), Stop> {
        for _ in 0..MAX_TRIES {
            self.say(&[Prompt::GreetingMenu]).await?;
            let kind = match self.line.key().await? {
                Some('1') => GreetingType::NormalCustom,
                Some('2') => GreetingType::OofCustom,
                Some('*') => return Ok(()),
                Some(_) => {
                    self.say(&[Prompt::InvalidKey]).await?;
                    continue;
                }
                None => continue,
            };
            self.line.greeting(mailbox, kind).await?;
            return Ok(());
        }
        Ok(())
    }

    /// Plays `messages` (newest first), each followed by its menu; returns at the end or on
    /// `*`.
    async fn messages(
        &mut self,
        mailbox: MailboxId,
        mut messages: Vec<VoiceMessageInfo>,
    ) -> Result<(), Stop> {
        messages.sort_by_key(|m| std::cmp::Reverse((m.received_at, m.id)));
        let mut at = 0;
        let mut unanswered = 0;
        let mut play = true;
        while let Some(message) = messages.get(at) {
            if play {
                let Some(audio) = self.mailboxes.audio(mailbox, message.id).await? else {
                    // (deleted meanwhile, e.g. by another call)
                    at += 1;
                    continue;
                };
                let from = match &message.calling_number {
                    Some(number) if number.chars().any(|c| c.is_ascii_digit()) => {
                        Say::DigitString(number.clone())
                    }
                    _ => Say::Prompt(Prompt::UnknownCaller),
                };
                self.line
                    .say(vec![
                        Say::Prompt(Prompt::MessageFrom),
                        from,
                        Say::Prompt(Prompt::Received),
                        Say::Time(message.received_at),
                        Say::Audio(audio),
                    ])
                    .await?;
                self.mailboxes.mark_heard(mailbox, message.id).await?;
                play = false;
            }
            self.say(&[Prompt::MessageMenu]).await?;
            match self.line.key().await? {
                Some('1') => play = true,
                Some('7') => {
                    self.mailboxes.delete(mailbox, message.id).await?;
                    tracing::info!(mailbox = %mailbox, "voice message deleted by phone");
                    self.say(&[Prompt::MessageDeleted]).await?;
                    at += 1;
                    play = true;
                }
                Some('#') => {
                    at += 1;
                    play = true;
                }
                Some('*') => return Ok(()),
                Some(_) => self.say(&[Prompt::InvalidKey]).await?,
                None => {
                    unanswered += 1;
                    if unanswered >= MAX_TRIES {
                        return Ok(());
                    }
                }
            }
        }
        self.say(&[Prompt::NoMoreMessages]).await?;
        Ok(())
    }
}

fn is_extension(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_EXTENSION_DIGITS && id.bytes().all(|b| b.is_ascii_digit())
}

/// What the caller hears when the policy refuses a new PIN.
fn rule_said(rule: &PinRejected, min_length: u32) -> Vec<Say> {
    match rule {
        PinRejected::TooShort { .. } | PinRejected::NotDigits => vec![
            Say::Prompt(Prompt::PinTooShort),
            Say::Number(u64::from(min_length)),
            Say::Prompt(Prompt::Digits),
        ],
        PinRejected::TooLong { .. } => vec![Say::Prompt(Prompt::PinTooLong)],
        PinRejected::AllSameDigit | PinRejected::ConsecutiveDigits => {
            vec![Say::Prompt(Prompt::PinCommonPattern)]
        }
        PinRejected::StartsWithExtension => vec![Say::Prompt(Prompt::PinStartsWithExtension)],
        PinRejected::InHistory { .. } => vec![Say::Prompt(Prompt::PinUsedBefore)],
    }
}

/// The namespace of the phone logons' throttle in a shared database.
const PHONE_THROTTLE: &[u8] = b"phone";

/// [`Mailboxes`] over the store and its outbox (automatic resets are mailed through it). Every
/// store call runs on a blocking thread; PIN checks wait for an argon2 turn.
///
/// PIN checks go through a failed-logon throttle of their own, with the policy of the HTTP
/// logons ([`ThrottlePolicy::default`]): keyed by the mailbox and by the calling address. On a
/// PostgreSQL store its counts are the database's, so that they hold across instances as those
/// of HTTP logons do (in a namespace of their own: PIN failures do not slow HTTP logons).
pub struct StoreMailboxes<D> {
    outbox: Arc<Outbox<D>>,
    throttle: Arc<Throttle>,
}

impl<D: MailDelivery> StoreMailboxes<D> {
    /// The mailboxes of `outbox`'s store.
    pub fn new(outbox: Arc<Outbox<D>>) -> StoreMailboxes<D> {
        StoreMailboxes::with_throttle(outbox, ThrottlePolicy::default())
    }

    /// The mailboxes of `outbox`'s store, PIN checks throttled by `policy` (with counters
    /// shared by the instances on a PostgreSQL store, apart from those of HTTP logons).
    pub fn with_throttle(outbox: Arc<Outbox<D>>, policy: ThrottlePolicy) -> StoreMailboxes<D> {
        let throttle = Throttle::new(policy)
            .with_store(outbox.store())
            .with_namespace(PHONE_THROTTLE);
        StoreMailboxes {
            outbox,
            throttle: Arc::new(throttle),
        }
    }
}

impl<D: MailDelivery + Send + Sync + 'static> StoreMailboxes<D> {
    async fn blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Outbox<D>) -> Result<T, PhoneError> + Send + 'static,
    ) -> Result<T, PhoneError> {
        let outbox = Arc::clone(&self.outbox);
        tokio::task::spawn_blocking(move || job(&outbox))
            .await
            .map_err(|_| PhoneError::Worker)?
    }

    async fn argon2<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Outbox<D>) -> Result<T, PhoneError> + Send + 'static,
    ) -> Result<T, PhoneError> {
        let outbox = Arc::clone(&self.outbox);
        crate::store::spawn_argon2(move || job(&outbox))
            .await
            .map_err(|_| PhoneError::Worker)?
    }
}

impl<D: MailDelivery + Send + Sync + 'static> Mailboxes for StoreMailboxes<D> {
    async fn by_extension(&self, extension: &str) -> Result<Option<Mailbox>, PhoneError> {
        let extension = extension.to_owned();
        self.blocking(move |o| Ok(o.store().mailbox_by_extension(&extension)?))
            .await
    }

    async fn logon(
        &self,
        user: &str,
        pin: &str,
        addr: Option<IpAddr>,
    ) -> Result<SignInCheck, PhoneError> {
        let key = self.throttle.user_key(user);
        let client = addr.map(ClientKey::of);
        let shared = self.throttle.shared_windows(key, client).await?;
        let Ok(permit) = self
            .throttle
            .admit_shared(key, client, false, shared, Instant::now())
        else {
            return Ok(SignInCheck::Throttled);
        };
        let (user, pin) = (user.to_owned(), pin.to_owned());
        let logon = self.argon2(move |o| phone::logon(o, &user, &pin)).await?;
        let right = match logon.check {
            PinCheck::Ok | PinCheck::OkMustChange | PinCheck::Expired => Some(true),
            PinCheck::Wrong { .. } => Some(false),
            _ => None,
        };
        // (on a shared store this writes the count to the database)
        let finished =
            tokio::task::spawn_blocking(move || permit.finish(right, Instant::now())).await;
        if finished.is_err() {
            tracing::warn!("counting a phone logon in the throttle failed");
        }
        Ok(SignInCheck::Checked(logon))
    }

    async fn change_pin(&self, user: &str, old: &str, new: &str) -> Result<PinChange, PhoneError> {
        let (user, old, new) = (user.to_owned(), old.to_owned(), new.to_owned());
        self.argon2(move |o| phone::change_pin(o, &user, &old, &new))
            .await
    }

    async fn messages(&self, mailbox: MailboxId) -> Result<Vec<VoiceMessageInfo>, PhoneError> {
        let mut list = self
            .blocking(move |o| Ok(o.store().voice_messages(mailbox)?))
            .await?;
        list.reverse();
        Ok(list)
    }

    async fn audio(
        &self,
        mailbox: MailboxId,
        id: VoiceMessageId,
    ) -> Result<Option<Arc<[i16]>>, PhoneError> {
        let bytes = self
            .blocking(move |o| Ok(o.store().voice_message_audio(mailbox, id)?))
            .await?;
        Ok(bytes.map(|b| {
            let audio = crate::audio::Audio::from_le_bytes(&b);
            Arc::from(audio.samples())
        }))
    }

    async fn mark_heard(&self, mailbox: MailboxId, id: VoiceMessageId) -> Result<(), PhoneError> {
        self.blocking(move |o| Ok(o.store().mark_voice_message_heard(mailbox, id)?))
            .await
            .map(drop)
    }

    async fn delete(&self, mailbox: MailboxId, id: VoiceMessageId) -> Result<(), PhoneError> {
        self.blocking(move |o| Ok(o.store().delete_voice_message(mailbox, id)?))
            .await
            .map(drop)
    }
}

/// How the SIP agent answers inbound calls: the dialogue of this module over `outbox`'s store
/// (automatic PIN resets mailed through it), its greeting menu saving to that store; at most
/// `max_calls` at once, only calls to `numbers` (all when empty), times said in `time_zone`.
pub fn inbound<D: MailDelivery + Send + Sync + 'static>(
    outbox: Arc<Outbox<D>>,
    max_calls: usize,
    numbers: Vec<String>,
    time_zone: jiff::tz::TimeZone,
) -> crate::telephony::Inbound {
    use crate::telephony::{GreetingSession, InboundHandler};
    let store = outbox.store().clone();
    let mailboxes = Arc::new(StoreMailboxes::new(outbox));
    let handler: InboundHandler = Arc::new(move |caller, line| {
        let mailboxes = Arc::clone(&mailboxes);
        Box::pin(async move {
            let ending = run(line, &*mailboxes, &caller).await;
            tracing::info!(?ending, "subscriber access call ended");
        })
    });
    let greetings: crate::telephony::GreetingMenus = Arc::new(move |mailbox, kind| {
        let store = store.clone();
        Box::pin(async move {
            let read = store.clone();
            let stored = tokio::task::spawn_blocking(move || read.greeting(mailbox, kind))
                .await
                .ok()?
                .map_err(|e| tracing::warn!(error = %e, "reading a greeting failed"))
                .ok()?;
            let mut menu = GreetingSession::for_mailbox(store, mailbox, kind, stored);
            menu.goodbye = false;
            Some(menu)
        })
    });
    crate::telephony::Inbound {
        handler,
        greetings,
        max_calls,
        numbers,
        time_zone,
    }
}

#[cfg(test)]
mod tests;
