//! The dialogue over a real store (SQLite in a temp dir, mails in its Maildir), with a
//! scripted caller: what the caller keys in is a list, what the caller hears is recorded. (The
//! same dialogue over a real SIP call is tested with sipp in `tests/`.)

use std::collections::VecDeque;
use std::time::Duration;

use rand::rngs::OsRng;

use super::*;
use crate::mail::{Maildir, ResetPinMailer};
use crate::pin_policy::PinPolicy;
use crate::store::voicemail::NewVoiceMessage;
use crate::store::{HashCost, NewMailbox, ResetReason, Store, DEFAULT_POLICY_NAME};

/// One thing the scripted caller does when the dialogue waits for it.
#[derive(Clone, Debug)]
enum Act {
    /// Answers a [`Line::read`].
    Read(Input),
    /// Answers a [`Line::key`].
    Key(Option<char>),
}

fn digits(s: &str) -> Act {
    Act::Read(Input::Digits(s.into()))
}

fn key(c: char) -> Act {
    Act::Key(Some(c))
}

/// A caller who keys in `script` and then hangs up.
#[derive(Default)]
struct Script {
    script: VecDeque<Act>,
    heard: Vec<Say>,
    greetings: Vec<(MailboxId, GreetingType)>,
}

impl Script {
    fn new(script: Vec<Act>) -> Script {
        Script {
            script: script.into(),
            ..Script::default()
        }
    }

    fn prompts(&self) -> Vec<Prompt> {
        self.heard
            .iter()
            .filter_map(|s| match s {
                Say::Prompt(p) => Some(*p),
                _ => None,
            })
            .collect()
    }

    fn heard_prompt(&self, p: Prompt) -> bool {
        self.prompts().contains(&p)
    }
}

impl Line for Script {
    async fn say(&mut self, items: Vec<Say>) -> Result<(), HungUp> {
        self.heard.extend(items);
        Ok(())
    }

    async fn read(&mut self, _max: usize) -> Result<Input, HungUp> {
        match self.script.pop_front() {
            Some(Act::Read(input)) => Ok(input),
            Some(other) => panic!("the dialogue read digits where the script has {other:?}"),
            None => Err(HungUp),
        }
    }

    async fn key(&mut self) -> Result<Option<char>, HungUp> {
        match self.script.pop_front() {
            Some(Act::Key(k)) => Ok(k),
            Some(other) => panic!("the dialogue read a key where the script has {other:?}"),
            None => Err(HungUp),
        }
    }

    async fn greeting(&mut self, mailbox: MailboxId, kind: GreetingType) -> Result<(), HungUp> {
        self.greetings.push((mailbox, kind));
        Ok(())
    }
}

struct Setup {
    dir: tempfile::TempDir,
    outbox: Arc<Outbox<Maildir>>,
    mailboxes: StoreMailboxes<Maildir>,
    id: MailboxId,
}

const EXTENSION: &str = "4711";

/// A throttle policy that never refuses.
fn unthrottled() -> crate::throttle::ThrottlePolicy {
    crate::throttle::ThrottlePolicy {
        user_allowance: u32::MAX,
        client_allowance: u32::MAX,
        ..Default::default()
    }
}

/// frank's mailbox: UM-enabled, extension [`EXTENSION`], password "pw".
fn frank() -> NewMailbox {
    NewMailbox {
        user: "frank".into(),
        password: "pw".into(),
        um_enabled: true,
        extension: Some(EXTENSION.into()),
        email: None,
    }
}

/// A store with the UM mailbox `frank` (extension 4711) whose policy resets the PIN every 2
/// failures and locks at 5, and whose PIN was just reset (and then changed to `pin`, when
/// given).
fn setup(pin: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path())
        .unwrap()
        .with_hash_cost(HashCost::Test);
    store
        .set_policy(
            DEFAULT_POLICY_NAME,
            &PinPolicy {
                logon_failures_before_pin_reset: Some(2),
                max_logon_attempts: Some(5),
                ..PinPolicy::default()
            },
        )
        .unwrap();
    let id = store.add_mailbox(frank()).unwrap();
    let mailer = ResetPinMailer::new(Maildir::in_data_dir(dir.path()));
    let outbox = Arc::new(Outbox::new(store, Arc::new(mailer)));
    outbox
        .reset_pin(id, &mut OsRng, ResetReason::Requested)
        .unwrap();
    if let Some(pin) = pin {
        let mailed = last_mailed_pin(&dir);
        assert_eq!(
            phone::change_pin(&outbox, "frank", &mailed, pin).unwrap(),
            PinChange::Changed
        );
    }
    // (the script keys in PINs faster than any phone: the throttle is tested on its own)
    let mailboxes = StoreMailboxes::with_throttle(Arc::clone(&outbox), unthrottled());
    Setup {
        dir,
        outbox,
        mailboxes,
        id,
    }
}

/// The PIN of the newest mail in frank's Maildir.
fn last_mailed_pin(dir: &tempfile::TempDir) -> String {
    let mut mails: Vec<_> = std::fs::read_dir(dir.path().join("mail/frank/new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    mails.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    let text = std::fs::read_to_string(mails.last().unwrap()).unwrap();
    let at = text.find("Your new PIN is: ").expect("a PIN line") + "Your new PIN is: ".len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

fn mail_count(dir: &tempfile::TempDir) -> usize {
    std::fs::read_dir(dir.path().join("mail/frank/new"))
        .map(|d| d.count())
        .unwrap_or(0)
}

const PIN: &str = "480151";

fn from(id: &str) -> super::Caller {
    super::Caller {
        id: Some(id.into()),
        addr: None,
    }
}

fn deposit(setup: &Setup, from: Option<&str>, samples: &[i16]) -> VoiceMessageInfo {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    setup
        .outbox
        .store()
        .add_voice_message(
            setup.id,
            NewVoiceMessage {
                calling_number: from,
                duration_ms: 1000,
                audio: &bytes,
            },
        )
        .unwrap()
}

fn check(setup: &Setup, pin: &str) -> PinCheck {
    setup.outbox.store().check_pin("frank", pin).unwrap()
}

#[tokio::test]
async fn right_pin_hears_the_new_messages_newest_first_and_they_become_heard() {
    let s = setup(Some(PIN));
    let old = deposit(&s, Some("+14255550100"), &[1, 2, 3]);
    let new = deposit(&s, None, &[4, 5, 6]);
    // extension, PIN, then `#` after each message and `*` at the main menu.
    let mut caller = Script::new(vec![
        digits(EXTENSION),
        digits(PIN),
        key('#'),
        key('#'),
        key('*'),
    ]);
    let ending = run(&mut caller, &s.mailboxes, &super::Caller::default()).await;
    assert_eq!(ending, Ending::Finished(s.id));
    let heard = &caller.heard;
    let count_at = heard
        .iter()
        .position(|x| *x == Say::Prompt(Prompt::YouHave))
        .unwrap();
    assert_eq!(heard[count_at + 1], Say::Number(2));
    assert_eq!(heard[count_at + 2], Say::Prompt(Prompt::NewMessages));
    let audio: Vec<&Arc<[i16]>> = heard
        .iter()
        .filter_map(|x| match x {
            Say::Audio(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(audio.len(), 2);
    assert_eq!(&audio[0][..], &[4, 5, 6], "the newest first");
    assert_eq!(&audio[1][..], &[1, 2, 3]);
    assert!(heard.contains(&Say::DigitString("+14255550100".into())));
    assert!(heard.contains(&Say::Time(old.received_at)));
    assert!(heard.contains(&Say::Time(new.received_at)));
    assert!(caller.heard_prompt(Prompt::UnknownCaller));
    assert!(caller.heard_prompt(Prompt::NoMoreMessages));
    assert!(s
        .outbox
        .store()
        .voice_messages(s.id)
        .unwrap()
        .iter()
        .all(|m| m.heard));
    // Heard messages are no longer new: the next call hears none.
    let mut again = Script::new(vec![digits(EXTENSION), digits(PIN), key('*')]);
    assert_eq!(
        run(&mut again, &s.mailboxes, &super::Caller::default()).await,
        Ending::Finished(s.id)
    );
    assert!(again.heard.contains(&Say::Number(0)));
    assert!(!again.heard.iter().any(|x| matches!(x, Say::Audio(_))));
}

#[tokio::test]
async fn the_caller_id_stands_for_the_extension() {
    let s = setup(Some(PIN));
    let mut caller = Script::new(vec![digits(PIN), key('*')]);
    let ending = run(&mut caller, &s.mailboxes, &from(EXTENSION)).await;
    assert_eq!(ending, Ending::Finished(s.id));
    assert!(!caller.heard_prompt(Prompt::EnterExtension));
    // `*` at the PIN prompt asks for an extension after all.
    let mut caller = Script::new(vec![
        Act::Read(Input::Star),
        digits(EXTENSION),
        digits(PIN),
        key('*'),
    ]);
    let ending = run(&mut caller, &s.mailboxes, &from(EXTENSION)).await;
    assert_eq!(ending, Ending::Finished(s.id));
    assert!(caller.heard_prompt(Prompt::EnterExtension));
    // A caller id that is no extension of ours is asked for the extension.
    let mut caller = Script::new(vec![digits(EXTENSION), digits(PIN), key('*')]);
    run(&mut caller, &s.mailboxes, &from("999")).await;
    assert!(caller.heard_prompt(Prompt::EnterExtension));
}

#[tokio::test]
async fn three_unknown_extensions_end_the_call() {
    let s = setup(Some(PIN));
    let mut caller = Script::new(vec![digits("1"), digits(""), Act::Read(Input::Timeout)]);
    let ending = run(&mut caller, &s.mailboxes, &super::Caller::default()).await;
    assert_eq!(ending, Ending::TooManyTries);
    assert_eq!(
        caller
            .prompts()
            .iter()
            .filter(|p| **p == Prompt::UnknownExtension)
            .count(),
        2,
        "a timeout is a try without a refusal"
    );
    assert_eq!(caller.prompts().last(), Some(&Prompt::Goodbye));
}

#[tokio::test]
async fn wrong_pins_count_reset_and_mail_the_pin_which_then_forces_a_change() {
    let s = setup(Some(PIN));
    let mails = mail_count(&s.dir);
    // Two wrong PINs: the second is the policy's 2nd failure, which resets and mails the PIN.
    let mut caller = Script::new(vec![digits(EXTENSION), digits("111111"), digits("222222")]);
    let ending = run(&mut caller, &s.mailboxes, &super::Caller::default()).await;
    assert_eq!(ending, Ending::HungUp { signed_in: None });
    assert!(caller.heard_prompt(Prompt::PinResetMailed));
    assert_eq!(mail_count(&s.dir), mails + 1);
    let mailed = last_mailed_pin(&s.dir);
    assert_eq!(
        check(&s, PIN),
        PinCheck::Wrong {
            failures: 3,
            reset_due: false
        }
    );
    // The mailed PIN signs in and forces a change: mismatch, too short, then accepted.
    let mut caller = Script::new(vec![
        digits(EXTENSION),
        digits(&mailed),
        digits("753951"),
        digits("753952"),
        digits("75"),
        digits("75"),
        digits("753951"),
        digits("753951"),
        key('*'),
    ]);
    let ending = run(&mut caller, &s.mailboxes, &super::Caller::default()).await;
    assert_eq!(ending, Ending::Finished(s.id));
    let prompts = caller.prompts();
    assert!(prompts.contains(&Prompt::MustChangePin));
    assert!(prompts.contains(&Prompt::PinsDoNotMatch));
    let short = caller
        .heard
        .iter()
        .position(|x| *x == Say::Prompt(Prompt::PinTooShort))
        .unwrap();
    assert_eq!(caller.heard[short + 1], Say::Number(6));
    assert!(prompts.contains(&Prompt::PinChanged));
    assert_eq!(check(&s, "753951"), PinCheck::Ok);
    assert!(matches!(check(&s, &mailed), PinCheck::Wrong { .. }));
}

#[tokio::test]
async fn three_wrong_pins_end_the_call_and_failures_lock_across_calls() {
    let s = setup(Some(PIN));
    let mut caller = Script::new(vec![
        digits(EXTENSION),
        digits("111111"),
        digits("222222"),
        digits("333333"),
    ]);
    assert_eq!(
        run(&mut caller, &s.mailboxes, &super::Caller::default()).await,
        Ending::TooManyTries
    );
    // Failures 4 and 5 in a second call: locked out at 5.
    let mut caller = Script::new(vec![digits(EXTENSION), digits("444444"), digits("555555")]);
    assert_eq!(
        run(&mut caller, &s.mailboxes, &super::Caller::default()).await,
        Ending::LockedOut(s.id)
    );
    assert!(caller.heard_prompt(Prompt::LockedOut));
    // Even the mailed PIN is refused now.
    let mailed = last_mailed_pin(&s.dir);
    let mut caller = Script::new(vec![digits(EXTENSION), digits(&mailed)]);
    assert_eq!(
        run(&mut caller, &s.mailboxes, &super::Caller::default()).await,
        Ending::LockedOut(s.id)
    );
    assert!(
        s.outbox
            .store()
            .mailbox("frank")
            .unwrap()
            .unwrap()
            .locked_out
    );
}

#[tokio::test]
async fn a_message_deleted_by_phone_is_gone_from_the_store() {
    let s = setup(Some(PIN));
    let keep = deposit(&s, Some("100"), &[1]);
    let gone = deposit(&s, Some("200"), &[2]);
    let mut caller = Script::new(vec![
        digits(EXTENSION),
        digits(PIN),
        key('7'),
        key('9'),
        key('1'),
        key('#'),
        key('*'),
    ]);
    let ending = run(&mut caller, &s.mailboxes, &super::Caller::default()).await;
    assert_eq!(ending, Ending::Finished(s.id));
    assert!(caller.heard_prompt(Prompt::MessageDeleted));
    assert!(caller.heard_prompt(Prompt::InvalidKey));
    let left = s.outbox.store().voice_messages(s.id).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, keep.id);
    assert!(left[0].heard);
    assert!(left.iter().all(|m| m.id != gone.id));
    // `1` replayed the kept message: its audio was said twice.
    let plays = caller
        .heard
        .iter()
        .filter(|x| matches!(x, Say::Audio(a) if a[..] == [1]))
        .count();
    assert_eq!(plays, 2);
}

#[tokio::test]
async fn hanging_up_mid_pin_or_mid_message_leaves_the_store_consistent() {
    let s = setup(Some(PIN));
    deposit(&s, Some("100"), &[1]);
    let mut caller = Script::new(vec![digits(EXTENSION)]);
    assert_eq!(
        run(&mut caller, &s.mailboxes, &super::Caller::default()).await,
        Ending::HungUp { signed_in: None }
    );
    assert_eq!(check(&s, PIN), PinCheck::Ok, "no failure counted");
    // Hung up at the first message's menu: it was heard, nothing else changed.
    let mut caller = Script::new(vec![digits(EXTENSION), digits(PIN)]);
    assert_eq!(
        run(&mut caller, &s.mailboxes, &super::Caller::default()).await,
        Ending::HungUp {
            signed_in: Some(s.id)
        }
    );
    let left = s.outbox.store().voice_messages(s.id).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].heard);
}

#[tokio::test]
async fn the_main_menu_reaches_the_greeting_and_the_pin_change() {
    let s = setup(Some(PIN));
    let mut caller = Script::new(vec![
        digits(EXTENSION),
        digits(PIN),
        key('3'),
        key('2'),
        key('4'),
        digits("258036"),
        digits("258036"),
        Act::Key(None),
        Act::Key(None),
        Act::Key(None),
    ]);
    let ending = run(&mut caller, &s.mailboxes, &super::Caller::default()).await;
    assert_eq!(ending, Ending::Finished(s.id));
    assert_eq!(caller.greetings, [(s.id, GreetingType::OofCustom)]);
    assert_eq!(check(&s, "258036"), PinCheck::Ok);
    assert!(matches!(check(&s, PIN), PinCheck::Wrong { .. }));
}

#[tokio::test]
async fn pins_keyed_faster_than_the_throttle_allows_end_the_call_uncounted() {
    let s = setup(Some(PIN));
    let throttled = StoreMailboxes::with_throttle(
        Arc::clone(&s.outbox),
        crate::throttle::ThrottlePolicy::default(),
    );
    let caller = super::Caller {
        id: None,
        addr: Some("192.0.2.7".parse().unwrap()),
    };
    let mut script = Script::new(vec![
        digits(EXTENSION),
        digits("111111"),
        digits("222222"),
        digits("333333"),
    ]);
    // The policy lets a user fail once unthrottled; the second failure opens a window, and a
    // PIN keyed in inside it is refused unchecked (and not counted).
    assert_eq!(
        run(&mut script, &throttled, &caller).await,
        Ending::Throttled
    );
    assert!(script.heard_prompt(Prompt::TooManyTries));
    let failures = s
        .outbox
        .store()
        .mailbox("frank")
        .unwrap()
        .unwrap()
        .failed_logon_count;
    assert_eq!(failures, 2);
}

#[test]
fn every_prompt_has_text_and_is_listed_once() {
    let mut texts: Vec<&str> = Prompt::ALL.iter().map(|p| p.text()).collect();
    assert!(texts.iter().all(|t| !t.is_empty()));
    texts.sort_unstable();
    texts.dedup();
    assert_eq!(texts.len(), Prompt::ALL.len());
}

/// On PostgreSQL the phone logons' throttle counts across instances: two failures through one
/// instance open a window that another instance respects (the right PIN keyed in there is
/// refused unchecked), while the HTTP logons' throttle of the same name stays closed.
#[test]
fn the_phone_logon_throttle_holds_across_instances_on_postgres() {
    use crate::store::postgres::PgStore;
    use crate::throttle::{Throttle, ThrottlePolicy};
    let (db, dir, a) = crate::store::postgres::test_support::store();
    let b = PgStore::open(&db.url, dir.path())
        .unwrap()
        .with_hash_cost(HashCost::Test);
    let id = a.add_mailbox(frank()).unwrap();
    let instance = |store: PgStore| {
        let mailer = ResetPinMailer::new(Maildir::in_data_dir(dir.path()));
        Arc::new(Outbox::new(Store::from(store), Arc::new(mailer)))
    };
    let (outbox_a, outbox_b) = (instance(a), instance(b));
    outbox_a
        .reset_pin(id, &mut OsRng, ResetReason::Requested)
        .unwrap();
    assert_eq!(
        phone::change_pin(&outbox_a, "frank", &last_mailed_pin(&dir), PIN).unwrap(),
        PinChange::Changed
    );
    // (windows long enough not to close while the test runs)
    let policy = ThrottlePolicy {
        base: Duration::from_secs(60),
        max: Duration::from_secs(60),
        ..ThrottlePolicy::default()
    };
    let on_a = StoreMailboxes::with_throttle(Arc::clone(&outbox_a), policy);
    let on_b = StoreMailboxes::with_throttle(Arc::clone(&outbox_b), policy);
    let addr = Some("192.0.2.7".parse().unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for wrong in ["111111", "222222"] {
            match on_a.logon("frank", wrong, addr).await.unwrap() {
                SignInCheck::Checked(logon) => {
                    assert!(matches!(logon.check, PinCheck::Wrong { .. }))
                }
                SignInCheck::Throttled => panic!("the first two failures are checked"),
            }
        }
        assert!(
            matches!(
                on_b.logon("frank", PIN, addr).await.unwrap(),
                SignInCheck::Throttled
            ),
            "the window opened through A holds on B"
        );
        // HTTP logons count apart.
        let http = Throttle::new(policy).with_store(outbox_b.store());
        let key = http.user_key("frank");
        let shared = http.shared_windows(key, None).await.unwrap();
        assert_eq!(shared, crate::throttle::SharedWindows::default());
    });
    // Refused unchecked: not counted.
    let frank = outbox_b.store().mailbox("frank").unwrap().unwrap();
    assert_eq!(frank.failed_logon_count, 2);
}
