//! The store's test suite, run against both backends: every test below is one function of a
//! [`Fixture`], run once on SQLite (`suite::sqlite::NAME`) and once on a fresh PostgreSQL
//! database (`suite::postgres::NAME`, on the test server of `tests/common/postgres.rs`).
//! What only one backend has (SQLite's pragmas, file modes and schema upgrades) is tested in
//! its own modules.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::postgres::test_support::TestDatabase;
use super::voicemail::{
    EntryId, EntryIdError, GreetingType, NewVoiceMessage, VoiceMessageId, VoiceMessageLookupError,
};
use super::*;
use crate::pin_policy::PinPolicy;

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// A store of one backend, with its data directory (and database).
struct Fixture {
    kind: Kind,
    store: Store,
    dir: tempfile::TempDir,
    db: Option<TestDatabase>,
}

impl Fixture {
    fn new(kind: Kind) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (store, db) = match kind {
            Kind::Sqlite => (Store::open(dir.path()).unwrap(), None),
            Kind::Postgres => {
                let db = super::postgres::test_support::database();
                (Store::open_postgres(&db.url, dir.path()).unwrap(), Some(db))
            }
        };
        Fixture {
            kind,
            store: store.with_hash_cost(HashCost::Test),
            dir,
            db,
        }
    }

    /// Another handle on the same store, as another process (another instance) has.
    fn reopen(&self) -> Store {
        let store = match &self.db {
            None => Store::open(self.dir.path()),
            Some(db) => Store::open_postgres(&db.url, self.dir.path()),
        };
        store.unwrap().with_hash_cost(HashCost::Test)
    }

    /// Runs `sql` (both dialects understand it) on the store's database.
    fn exec(&self, sql: &str) {
        match &self.db {
            None => self
                .store
                .as_sqlite()
                .unwrap()
                .conn()
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            Some(_) => {
                let conn = self.store.as_postgres().unwrap().conn().unwrap();
                super::postgres::block(conn.batch_execute(sql)).unwrap();
            }
        }
    }

    /// The one value of `sql`.
    fn query<T>(&self, sql: &str) -> T
    where
        T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a>,
    {
        match &self.db {
            None => self
                .store
                .as_sqlite()
                .unwrap()
                .conn()
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .unwrap(),
            Some(_) => {
                let conn = self.store.as_postgres().unwrap().conn().unwrap();
                super::postgres::block(conn.query_one(sql, &[]))
                    .unwrap()
                    .get(0)
            }
        }
    }

    fn history_len(&self, id: MailboxId) -> i64 {
        self.query(&format!(
            "SELECT COUNT(*) FROM pin_history WHERE mailbox_id = {id}"
        ))
    }
}

fn alice() -> NewMailbox {
    NewMailbox {
        user: "Alice".into(),
        password: "correct horse".into(),
        um_enabled: true,
        extension: Some("36697".into()),
        email: Some("alice@example.org".into()),
    }
}

/// Adds `n` mailboxes like [`alice`], named `user0`, `user1`, ...
fn users(store: &Store, n: usize) -> Vec<MailboxId> {
    (0..n)
        .map(|i| {
            let mut new = alice();
            new.user = format!("user{i}");
            store.add_mailbox(new).unwrap()
        })
        .collect()
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(99)
}

#[derive(Debug, thiserror::Error)]
#[error("mail down")]
struct MailDown;

fn queue(store: &Store, id: MailboxId, reason: ResetReason) -> (OutboxMail, String) {
    let mut pin = String::new();
    let mail = store
        .reset_pin_queued(id, &mut rand::rngs::OsRng, reason, |o, _| {
            pin.clone_from(&o.pin);
            Ok::<_, MailDown>(OutgoingMail {
                recipient: "alice@example.org".into(),
                message: b"mail".to_vec(),
            })
        })
        .unwrap();
    (mail, pin)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Each test, once per backend.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(super::Fixture::new(super::Kind::Sqlite)) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(super::Fixture::new(super::Kind::Postgres)) })*
        }
    };
}

suite! {
    reopen_keeps_data,
    store_is_shared_across_threads,
    add_mailbox_refuses_duplicates_case_insensitively,
    new_mailbox_defaults,
    verify_password_checks_hash,
    settings_round_trip,
    policies_are_validated_and_named,
    wrong_pins_count_up_lock_out_and_reset_clears,
    old_pins_expire,
    change_pin_enforces_the_policy_and_clears_must_change,
    pin_record_lines_up_history_and_current,
    reset_pin_sets_a_valid_pin_and_state,
    failed_delivery_keeps_old_pin,
    reset_pin_refuses_non_um_and_unknown,
    history_is_trimmed_and_never_repeats,
    history_check_refuses_recent_pins,
    automatic_reset_keeps_counting_towards_the_lockout,
    requested_resets_are_limited_per_mailbox_in_the_store,
    resets_of_one_mailbox_serialise_and_others_overlap,
    outbox_rows_grow_in_order_and_are_removed,
    queued_mails_live_in_spool_files_removed_on_delivery_and_at_open,
    messages_are_found_by_entry_id_of_their_own_mailbox_only,
    phone_access_marks_deletes_and_reads_only_its_own_mailboxs_messages,
    a_mailbox_is_found_by_an_extension_only_it_has,
    refused_entry_ids_are_invalid_object_id_faults,
    greetings_are_per_mailbox_and_type_and_replaced,
    change_version_moves_with_commits_of_any_handle,
    failures_and_lockout_count_across_handles,
    credentials_of_one_mailbox_never_reach_another,
}

fn reopen_keeps_data(f: Fixture) {
    let id = f.store.add_mailbox(alice()).unwrap();
    f.store.set_oof_status(id, true).unwrap();
    let store = f.reopen();
    drop(f.store);
    let m = store.mailbox("alice").unwrap().unwrap();
    assert_eq!(m.id, id);
    assert!(m.oof_status);
    assert_eq!(m.policy, PinPolicy::default());
    assert_eq!(m.policy_name, DEFAULT_POLICY_NAME);
}

fn store_is_shared_across_threads(f: Fixture) {
    fn assert_send_sync<T: Clone + Send + Sync>() {}
    assert_send_sync::<Store>();
    let store = &f.store;
    let ids = users(store, 4);
    std::thread::scope(|s| {
        for &id in &ids {
            let store = store.clone();
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(id.0 as u64);
                for _ in 0..5 {
                    store.reset_pin(id, &mut rng).unwrap();
                    store.set_oof_status(id, true).unwrap();
                }
            });
        }
    });
    for id in ids {
        assert_eq!(f.history_len(id), 4);
    }
}

fn add_mailbox_refuses_duplicates_case_insensitively(f: Fixture) {
    let store = &f.store;
    store.add_mailbox(alice()).unwrap();
    let mut dup = alice();
    dup.user = "ALICE".into();
    assert!(matches!(
        store.add_mailbox(dup),
        Err(StoreError::DuplicateUser { .. })
    ));
    let mut bad = alice();
    bad.user = "bob".into();
    bad.extension = Some("12a".into());
    assert!(matches!(
        store.add_mailbox(bad),
        Err(StoreError::InvalidInput {
            field: "extension",
            ..
        })
    ));
    // NFD and NFC spellings are one name.
    let mut nfd = alice();
    nfd.user = "Ju\u{308}rgen".into();
    let id = store.add_mailbox(nfd).unwrap();
    assert_eq!(
        store.mailbox_by_id(id).unwrap().unwrap().user,
        "J\u{fc}rgen"
    );
    assert_eq!(store.mailbox("j\u{fc}RGEN").unwrap().unwrap().id, id);
    let mut nfc = alice();
    nfc.user = "J\u{fc}rgen".into();
    assert!(matches!(
        store.add_mailbox(nfc),
        Err(StoreError::DuplicateUser { .. })
    ));
}

fn new_mailbox_defaults(f: Fixture) {
    let store = &f.store;
    let id = store.add_mailbox(alice()).unwrap();
    let m = store.mailbox_by_id(id).unwrap().unwrap();
    assert_eq!(m.user, "Alice");
    assert!(m.um_enabled && !m.pin_set && !m.oof_status && !m.locked_out);
    assert!(m.missed_call_notification_enabled);
    assert_eq!(m.failed_logon_count, 0);
    assert_eq!(m.pin_set_at, None);
    assert_eq!(m.extension.as_deref(), Some("36697"));
    assert_eq!(store.mailbox("nobody").unwrap(), None);
    assert_eq!(store.mailboxes().unwrap(), vec![m]);
}

fn verify_password_checks_hash(f: Fixture) {
    let store = &f.store;
    let id = store.add_mailbox(alice()).unwrap();
    let m = store
        .verify_password("aLiCe", "correct horse")
        .unwrap()
        .unwrap();
    assert_eq!(m.id, id);
    assert_eq!(store.verify_password("alice", "wrong").unwrap(), None);
    assert_eq!(
        store.verify_password("nobody", "correct horse").unwrap(),
        None
    );
    let hash: String = f.query("SELECT password_hash FROM mailboxes");
    assert!(hash.starts_with("$argon2id$"));
    assert!(!hash.contains("correct horse"));

    let before = m.credential_stamp();
    store.set_password(id, "battery staple").unwrap();
    assert_eq!(
        store.verify_password("alice", "correct horse").unwrap(),
        None
    );
    assert!(store
        .verify_password("alice", "battery staple")
        .unwrap()
        .is_some());
    assert_ne!(
        store.mailbox("alice").unwrap().unwrap().credential_stamp(),
        before
    );
}

fn settings_round_trip(f: Fixture) {
    let store = &f.store;
    let id = store.add_mailbox(alice()).unwrap();
    store.set_oof_status(id, true).unwrap();
    store
        .set_missed_call_notification_enabled(id, false)
        .unwrap();
    store
        .set_play_on_phone_dial_string(id, Some("4255550123"))
        .unwrap();
    store
        .set_telephone_access_folder_email(id, Some("AAAAAA=="))
        .unwrap();
    store
        .set_telephone_access_numbers(id, Some("+1 425 555 0100, 4100"))
        .unwrap();
    let m = store.mailbox_by_id(id).unwrap().unwrap();
    assert!(m.oof_status && !m.missed_call_notification_enabled);
    assert_eq!(m.play_on_phone_dial_string.as_deref(), Some("4255550123"));
    assert_eq!(m.telephone_access_folder_email.as_deref(), Some("AAAAAA=="));
    assert_eq!(
        m.telephone_access_numbers.as_deref(),
        Some("+1 425 555 0100, 4100")
    );
    store.set_play_on_phone_dial_string(id, None).unwrap();
    assert_eq!(
        store
            .mailbox_by_id(id)
            .unwrap()
            .unwrap()
            .play_on_phone_dial_string,
        None
    );
    assert!(matches!(
        store.set_oof_status(MailboxId(999), true),
        Err(StoreError::UnknownMailbox(MailboxId(999)))
    ));
}

fn policies_are_validated_and_named(f: Fixture) {
    let store = &f.store;
    assert_eq!(store.policy("default").unwrap(), Some(PinPolicy::default()));
    let bad = PinPolicy {
        min_pin_length: 3,
        ..PinPolicy::default()
    };
    assert!(matches!(
        store.set_policy("Default", &bad),
        Err(StoreError::InvalidPolicy(_))
    ));
    let lax = PinPolicy {
        min_pin_length: 4,
        pin_lifetime_days: None,
        reset_pin_text: "Call the help desk.".into(),
        ..PinPolicy::default()
    };
    store.set_policy("Default", &lax).unwrap();
    store.set_policy("Other", &PinPolicy::default()).unwrap();
    assert_eq!(store.policy("Default").unwrap(), Some(lax.clone()));
    let id = store.add_mailbox(alice()).unwrap();
    assert_eq!(store.mailbox_by_id(id).unwrap().unwrap().policy, lax);
    assert_eq!(store.policy("none").unwrap(), None);
}

fn wrong_pins_count_up_lock_out_and_reset_clears(f: Fixture) {
    let store = &f.store;
    let policy = PinPolicy {
        logon_failures_before_pin_reset: Some(2),
        max_logon_attempts: Some(4),
        ..PinPolicy::default()
    };
    store.set_policy(DEFAULT_POLICY_NAME, &policy).unwrap();
    let id = store.add_mailbox(alice()).unwrap();
    let pin = store.reset_pin(id, &mut rng()).unwrap();
    assert_eq!(
        store.check_pin("alice", "0").unwrap(),
        PinCheck::Wrong {
            failures: 1,
            reset_due: false
        }
    );
    assert_eq!(
        store.check_pin("alice", &pin).unwrap(),
        PinCheck::OkMustChange
    );
    assert_eq!(
        store.mailbox_by_id(id).unwrap().unwrap().failed_logon_count,
        0
    );
    let answers: Vec<PinCheck> = (0..5)
        .map(|_| store.check_pin("alice", "0").unwrap())
        .collect();
    assert_eq!(
        answers,
        vec![
            PinCheck::Wrong {
                failures: 1,
                reset_due: false
            },
            PinCheck::Wrong {
                failures: 2,
                reset_due: true
            },
            // Due at every multiple of LogonFailuresBeforePINReset only.
            PinCheck::Wrong {
                failures: 3,
                reset_due: false
            },
            PinCheck::LockedOut,
            PinCheck::LockedOut,
        ]
    );
    // Locked out: even the right PIN is refused.
    assert_eq!(store.check_pin("alice", &pin).unwrap(), PinCheck::LockedOut);
    let new_pin = store.reset_pin(id, &mut rng()).unwrap();
    let m = store.mailbox_by_id(id).unwrap().unwrap();
    assert!(!m.locked_out);
    assert_eq!(m.failed_logon_count, 0);
    assert_eq!(
        store.check_pin("alice", &new_pin).unwrap(),
        PinCheck::OkMustChange
    );
}

fn old_pins_expire(f: Fixture) {
    let store = &f.store;
    let id = store.add_mailbox(alice()).unwrap();
    let pin = store.reset_pin(id, &mut rng()).unwrap();
    f.exec(&format!(
        "UPDATE mailboxes SET pin_must_change = false, pin_set_at = {}",
        unix_now() - 59 * 86_400
    ));
    assert_eq!(store.check_pin("alice", &pin).unwrap(), PinCheck::Ok);
    f.exec(&format!(
        "UPDATE mailboxes SET pin_set_at = {}",
        unix_now() - 60 * 86_400
    ));
    assert_eq!(store.check_pin("alice", &pin).unwrap(), PinCheck::Expired);
    let unlimited = PinPolicy {
        pin_lifetime_days: None,
        ..PinPolicy::default()
    };
    store.set_policy(DEFAULT_POLICY_NAME, &unlimited).unwrap();
    assert_eq!(store.check_pin("alice", &pin).unwrap(), PinCheck::Ok);
    let _ = id;
}

fn change_pin_enforces_the_policy_and_clears_must_change(f: Fixture) {
    use crate::pin_policy::PinRejected;
    let store = &f.store;
    let id = store.add_mailbox(alice()).unwrap();
    let first = store.reset_pin(id, &mut rng()).unwrap();
    let refused = |old: &str, new: &str| match store.change_pin("alice", old, new) {
        Err(ChangePinError::Rejected { source }) => source,
        other => panic!("{other:?}"),
    };
    assert_eq!(refused(&first, "12a456"), PinRejected::NotDigits);
    assert_eq!(refused(&first, "2468"), PinRejected::TooShort { min: 6 });
    assert_eq!(
        refused(&first, &"5".repeat(25)),
        PinRejected::TooLong { max: 24 }
    );
    assert_eq!(refused(&first, "777777"), PinRejected::AllSameDigit);
    assert_eq!(refused(&first, "345678"), PinRejected::ConsecutiveDigits);
    assert_eq!(refused(&first, "3669712"), PinRejected::StartsWithExtension);
    assert_eq!(refused(&first, &first), PinRejected::InHistory { count: 5 });
    let err = store.change_pin("alice", &first, "777777").unwrap_err();
    assert!(err.to_string().contains("AllowCommonPatterns"), "{err}");
    assert!(!err.to_string().contains("777777"));

    assert!(matches!(
        store.change_pin("alice", "000000", "480151"),
        Err(ChangePinError::OldPinRefused(PinCheck::Wrong {
            failures: 1,
            ..
        }))
    ));
    store.change_pin("alice", &first, "480151").unwrap();
    let m = store.mailbox_by_id(id).unwrap().unwrap();
    assert!(!m.pin_must_change);
    assert_eq!(m.failed_logon_count, 0);
    assert_eq!(store.check_pin("alice", "480151").unwrap(), PinCheck::Ok);
    assert_eq!(
        refused("480151", &first),
        PinRejected::InHistory { count: 5 }
    );
    // A new policy applies at the next change.
    let lax = PinPolicy {
        min_pin_length: 4,
        allow_common_patterns: true,
        ..PinPolicy::default()
    };
    store.set_policy("Lax", &lax).unwrap();
    store.set_mailbox_policy(id, "lax").unwrap();
    store.change_pin("alice", "480151", "1111").unwrap();
    assert_eq!(store.mailbox_by_id(id).unwrap().unwrap().policy_name, "Lax");
    assert!(matches!(
        store.set_mailbox_policy(id, "nope"),
        Err(StoreError::UnknownPolicy { .. })
    ));
    assert!(matches!(
        store.change_pin("bob", "1111", "2222"),
        Err(ChangePinError::OldPinRefused(PinCheck::UnknownUser))
    ));
    let names: Vec<String> = store.policies().unwrap().into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["Default", "Lax"]);
}

fn pin_record_lines_up_history_and_current(f: Fixture) {
    let store = &f.store;
    let id = store.add_mailbox(alice()).unwrap();
    let mut rng = rng();
    let pins: Vec<String> = (0..4)
        .map(|_| store.reset_pin(id, &mut rng).unwrap())
        .collect();
    let all: Vec<&str> = pins.iter().map(String::as_str).collect();
    assert_eq!(store.pin_changes(id).unwrap(), 4);
    let m = store.match_pin_record(id, &all).unwrap();
    assert!(m.is_exact(), "{m:?}");
    let m = store.match_pin_record(id, &[all[1], all[3]]).unwrap();
    assert_eq!(m.positions, vec![Some(1), Some(3)]);
    assert!(!m.is_exact());
    let m = store.match_pin_record(id, &[all[3], all[0]]).unwrap();
    assert_eq!(m.positions, vec![Some(3), None], "order matters");
}

fn reset_pin_sets_a_valid_pin_and_state(f: Fixture) {
    let store = &f.store;
    let id = store.add_mailbox(alice()).unwrap();
    assert_eq!(store.check_pin("alice", "918273").unwrap(), PinCheck::NoPin);
    let mut seen = None;
    let queued = store
        .reset_pin_queued(id, &mut rng(), ResetReason::Requested, |o, key| {
            seen = Some((o.clone(), key.to_owned()));
            Ok::<_, MailDown>(OutgoingMail {
                recipient: "alice@example.org".into(),
                message: format!("PIN {}", o.pin).into_bytes(),
            })
        })
        .unwrap();
    let (outcome, key) = seen.unwrap();
    assert_eq!(queued.key, key);
    assert_eq!(key.len(), 32, "a simple uuid");
    assert_eq!(store.outbox_pending(0, 10).unwrap(), vec![queued.clone()]);
    assert!(!format!("{queued:?}").contains(&outcome.pin));
    assert_eq!(outcome.user, "Alice");
    assert_eq!(outcome.email.as_deref(), Some("alice@example.org"));
    assert_eq!(outcome.extension.as_deref(), Some("36697"));
    PinPolicy::default()
        .check_pin(&outcome.pin, Some("36697"))
        .unwrap();
    let m = store.mailbox_by_id(id).unwrap().unwrap();
    assert!(m.pin_set && m.pin_must_change);
    assert_eq!(m.pin_set_at, Some(outcome.pin_set_at));
    assert_eq!(
        store.check_pin("alice", &outcome.pin).unwrap(),
        PinCheck::OkMustChange
    );
    let stored: String = f.query("SELECT pin_hash FROM mailboxes");
    assert!(stored.starts_with("$argon2id$") && !stored.contains(&outcome.pin));
}

fn failed_delivery_keeps_old_pin(f: Fixture) {
    let store = &f.store;
    let id = store.add_mailbox(alice()).unwrap();
    let old = store.reset_pin(id, &mut rng()).unwrap();
    for _ in 0..3 {
        assert!(matches!(
            store.check_pin("alice", "000000").unwrap(),
            PinCheck::Wrong { .. }
        ));
    }
    let before = store.mailbox_by_id(id).unwrap().unwrap();
    let mut offered = String::new();
    let err = store
        .reset_pin_queued(id, &mut rng(), ResetReason::Requested, |o, _| {
            offered.clone_from(&o.pin);
            Err::<OutgoingMail, _>(MailDown)
        })
        .unwrap_err();
    assert!(matches!(err, ResetPinError::Delivery(MailDown)));
    assert_eq!(store.mailbox_by_id(id).unwrap().unwrap(), before);
    assert_eq!(f.history_len(id), 0);
    assert_eq!(store.outbox_len().unwrap(), 0);
    assert!(matches!(
        store.check_pin("alice", &offered).unwrap(),
        PinCheck::Wrong { failures: 4, .. }
    ));
    assert_eq!(
        store.check_pin("alice", &old).unwrap(),
        PinCheck::OkMustChange
    );
}

fn reset_pin_refuses_non_um_and_unknown(f: Fixture) {
    let store = &f.store;
    let mut new = alice();
    new.um_enabled = false;
    let id = store.add_mailbox(new).unwrap();
    assert!(matches!(
        store.reset_pin(id, &mut rng()),
        Err(ResetPinError::NotUmEnabled)
    ));
    assert!(matches!(
        store.reset_pin(MailboxId(42), &mut rng()),
        Err(ResetPinError::Store(StoreError::UnknownMailbox(_)))
    ));
    assert_eq!(
        store.check_pin("alice", "123456").unwrap(),
        PinCheck::NotUmEnabled
    );
    assert_eq!(
        store.check_pin("bob", "123456").unwrap(),
        PinCheck::UnknownUser
    );
}

fn history_is_trimmed_and_never_repeats(f: Fixture) {
    let store = &f.store;
    // Four digits with common patterns allowed: small enough that a repeat would show.
    let policy = PinPolicy {
        min_pin_length: 4,
        pin_history_count: 3,
        allow_common_patterns: true,
        ..PinPolicy::default()
    };
    store.set_policy(DEFAULT_POLICY_NAME, &policy).unwrap();
    let mut new = alice();
    new.extension = None;
    let id = store.add_mailbox(new).unwrap();
    let mut rng = rng();
    let mut pins = Vec::new();
    for i in 0..8 {
        let pin = store.reset_pin(id, &mut rng).unwrap();
        assert!(!pins.iter().rev().take(4).any(|p| p == &pin), "repeat");
        pins.push(pin);
        assert_eq!(f.history_len(id), i64::from(i.min(3)));
        assert_eq!(
            store.pin_changes(id).unwrap(),
            u64::try_from(i).unwrap() + 1
        );
    }
}

fn history_check_refuses_recent_pins(f: Fixture) {
    let store = &f.store;
    let id = store.add_mailbox(alice()).unwrap();
    let pin = store.reset_pin(id, &mut rng()).unwrap();
    // Same seed, same candidate sequence: the first candidate is now the current PIN and
    // must be skipped.
    let next = store.reset_pin(id, &mut rng()).unwrap();
    assert_ne!(pin, next);
    let third = store.reset_pin(id, &mut rng()).unwrap();
    assert_ne!(third, pin);
    assert_ne!(third, next);
}

fn automatic_reset_keeps_counting_towards_the_lockout(f: Fixture) {
    let store = &f.store;
    let policy = PinPolicy {
        logon_failures_before_pin_reset: Some(2),
        max_logon_attempts: Some(5),
        ..PinPolicy::default()
    };
    store.set_policy(DEFAULT_POLICY_NAME, &policy).unwrap();
    let id = store.add_mailbox(alice()).unwrap();
    store.reset_pin(id, &mut rng()).unwrap();
    store.check_pin("alice", "0").unwrap();
    store.check_pin("alice", "0").unwrap();
    let (_, pin) = queue(store, id, ResetReason::TooManyFailures);
    let m = store.mailbox_by_id(id).unwrap().unwrap();
    assert_eq!(m.failed_logon_count, 2);
    assert!(m.pin_must_change && !m.locked_out);
    for _ in 0..2 {
        store.check_pin("alice", "0").unwrap();
    }
    assert_eq!(store.check_pin("alice", "0").unwrap(), PinCheck::LockedOut);
    assert_eq!(store.check_pin("alice", &pin).unwrap(), PinCheck::LockedOut);
    store.unlock(id).unwrap();
    assert_eq!(
        store.check_pin("alice", &pin).unwrap(),
        PinCheck::OkMustChange
    );
    let m = store.mailbox_by_id(id).unwrap().unwrap();
    assert_eq!((m.failed_logon_count, m.locked_out), (0, false));
}

fn requested_resets_are_limited_per_mailbox_in_the_store(f: Fixture) {
    let store = &f.store;
    let limit = ResetLimit {
        max: 2,
        window: Duration::from_secs(3600),
    };
    let limited = store.clone().with_reset_limit(Some(limit));
    let id = store.add_mailbox(alice()).unwrap();
    let mut bob = alice();
    bob.user = "bob".into();
    let other = store.add_mailbox(bob).unwrap();
    let mut rng = rng();
    limited.reset_pin(id, &mut rng).unwrap();
    limited.reset_pin(id, &mut rng).unwrap();
    let pins = store.pin_changes(id).unwrap();
    match limited.reset_pin(id, &mut rng) {
        Err(ResetPinError::TooManyResets {
            limit: l,
            retry_after,
        }) => {
            assert_eq!(l, limit);
            assert!(retry_after > Duration::ZERO && retry_after <= limit.window);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.pin_changes(id).unwrap(), pins, "nothing changed");
    // Other mailboxes, other reasons and unlimited handles are not limited.
    limited.reset_pin(other, &mut rng).unwrap();
    store.reset_pin(id, &mut rng).unwrap();
    queue(&limited, id, ResetReason::TooManyFailures);
    // Once the oldest reset leaves the window, one more is allowed.
    let row = match f.kind {
        Kind::Sqlite => "rowid",
        Kind::Postgres => "ctid",
    };
    f.exec(&format!(
        "UPDATE pin_resets SET at = at - 3600 WHERE mailbox_id = {id} AND {row} =
            (SELECT {row} FROM pin_resets WHERE mailbox_id = {id} LIMIT 1)"
    ));
    limited.reset_pin(id, &mut rng).unwrap();
    assert!(limited.reset_pin(id, &mut rng).is_err());
}

fn resets_of_one_mailbox_serialise_and_others_overlap(f: Fixture) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Barrier, Condvar};
    // Four mailboxes reset at once: each reset blocks in the hook until all four are in it.
    // Were PIN work serialised behind one lock, this would never finish (the wait times
    // out and the test fails).
    let arrived = Arc::new((Mutex::new(0usize), Condvar::new()));
    let in_hook = Arc::new(AtomicUsize::new(0));
    let hook: PinWorkHook = {
        let arrived = Arc::clone(&arrived);
        Arc::new(move |_| {
            let (count, cv) = &*arrived;
            let mut n = count.lock().unwrap();
            *n += 1;
            cv.notify_all();
            let (n, timeout) = cv
                .wait_timeout_while(n, Duration::from_secs(20), |n| *n < 4)
                .unwrap();
            assert!(!timeout.timed_out(), "only {} resets overlapped", *n);
        })
    };
    let store = f.store.clone().with_pin_work_hook(hook);
    let ids = users(&store, 4);
    let start = Barrier::new(4);
    std::thread::scope(|s| {
        for &id in &ids {
            let (store, start) = (store.clone(), &start);
            s.spawn(move || {
                start.wait();
                store.reset_pin(id, &mut rand::rngs::OsRng).unwrap();
            });
        }
    });

    // One mailbox, eight threads: never two in its PIN work at once, every reset lands.
    let f = Fixture::new(f.kind);
    let hook: PinWorkHook = {
        let in_hook = Arc::clone(&in_hook);
        Arc::new(move |_| {
            assert_eq!(in_hook.fetch_add(1, Ordering::SeqCst), 0, "overlap");
            std::thread::sleep(Duration::from_millis(5));
            in_hook.fetch_sub(1, Ordering::SeqCst);
        })
    };
    let store = f.store.clone().with_pin_work_hook(hook);
    let id = store.add_mailbox(alice()).unwrap();
    let policy = PinPolicy {
        pin_history_count: 20,
        ..PinPolicy::default()
    };
    store.set_policy(DEFAULT_POLICY_NAME, &policy).unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            let store = store.clone();
            s.spawn(move || {
                for _ in 0..2 {
                    store.reset_pin(id, &mut rand::rngs::OsRng).unwrap();
                }
            });
        }
    });
    assert_eq!(f.history_len(id), 15);
    let locks = match (store.as_sqlite(), store.as_postgres()) {
        (Some(s), _) => s.pin_locks_len(),
        (_, Some(p)) => p.pin_locks_len(),
        _ => unreachable!(),
    };
    assert!(locks <= 1);
}

fn outbox_rows_grow_in_order_and_are_removed(f: Fixture) {
    let store = &f.store;
    let id = store.add_mailbox(alice()).unwrap();
    let (a, _) = queue(store, id, ResetReason::Requested);
    let (b, _) = queue(store, id, ResetReason::Requested);
    assert!(b.id > a.id && a.key != b.key);
    assert_eq!(store.outbox_len().unwrap(), 2);
    store.outbox_record_failure(a.id, Duration::ZERO).unwrap();
    let pending = store.outbox_pending(0, 10).unwrap();
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(pending[1], b);
    assert!(store.outbox_remove(a.id).unwrap());
    assert!(!store.outbox_remove(a.id).unwrap());
    let (c, _) = queue(store, id, ResetReason::Requested);
    assert!(store.outbox_remove(b.id).unwrap());
    assert!(store.outbox_remove(c.id).unwrap());
    let (d, _) = queue(store, id, ResetReason::Requested);
    assert!(d.id > c.id, "ids are never reused");
}

fn queued_mails_live_in_spool_files_removed_on_delivery_and_at_open(f: Fixture) {
    let store = &f.store;
    let id = store.add_mailbox(alice()).unwrap();
    let spool = f.dir.path().join(SPOOL_DIR);
    let files = || std::fs::read_dir(&spool).unwrap().count();
    let (a, pin) = queue(store, id, ResetReason::Requested);
    let (b, _) = queue(store, id, ResetReason::Requested);
    assert_eq!(files(), 2);
    // The database holds no message: SQLite's row an empty one, PostgreSQL has no column.
    match f.kind {
        Kind::Sqlite => {
            let stored: Vec<u8> =
                f.query(&format!("SELECT message FROM outbox WHERE id = {}", a.id));
            assert!(stored.is_empty());
        }
        Kind::Postgres => {
            let columns: i64 = f.query(
                "SELECT COUNT(*) FROM information_schema.columns
                 WHERE table_name = 'outbox' AND column_name = 'message'",
            );
            assert_eq!(columns, 0);
        }
    }
    assert_eq!(
        store.outbox_pending(0, 10).unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert!(!pin.is_empty());
    assert!(store.outbox_remove(a.id).unwrap());
    assert_eq!(files(), 1);
    // What crashes leave: a file without a row (deleted row, or never committed).
    std::fs::write(spool.join("0123abcd.eml"), b"PIN").unwrap();
    let store = f.reopen();
    assert_eq!(files(), 1);
    assert_eq!(store.outbox_pending(0, 10).unwrap(), vec![b.clone()]);
    // A row whose file is lost is not delivered empty: dropped (logged) on SQLite; on
    // PostgreSQL left for the instance that has the file.
    std::fs::remove_file(spool.join(format!("{}.eml", b.key))).unwrap();
    assert!(store.outbox_pending(0, 10).unwrap().is_empty());
    let left = match f.kind {
        Kind::Sqlite => 0,
        Kind::Postgres => 1,
    };
    assert_eq!(store.outbox_len().unwrap(), left);
    // A failed render leaves no file.
    let err = store
        .reset_pin_queued(id, &mut rng(), ResetReason::Requested, |_, _| {
            Err::<OutgoingMail, _>(MailDown)
        })
        .unwrap_err();
    assert!(matches!(err, ResetPinError::Delivery(MailDown)));
    assert_eq!(files(), 0);
}

fn new_message(audio: &[u8]) -> NewVoiceMessage<'_> {
    NewVoiceMessage {
        calling_number: Some("+14255550100"),
        duration_ms: 1500,
        audio,
    }
}

fn messages_are_found_by_entry_id_of_their_own_mailbox_only(f: Fixture) {
    let store = &f.store;
    let ids = users(store, 2);
    let a = store
        .add_voice_message(ids[0], new_message(&[1, 2, 3, 4]))
        .unwrap();
    let b = store
        .add_voice_message(ids[1], new_message(&[5, 6]))
        .unwrap();
    assert_ne!(a.entry_id, b.entry_id);
    let found = store.voice_message(ids[0], &a.entry_id).unwrap();
    assert_eq!(found.audio, [1, 2, 3, 4]);
    assert_eq!(found.info, a);
    assert_eq!(
        store.voice_messages(ids[0]).unwrap(),
        std::slice::from_ref(&a)
    );
    assert!(matches!(
        store.voice_message(ids[0], &b.entry_id),
        Err(VoiceMessageLookupError::EntryId(EntryIdError::OtherMailbox))
    ));
    // A forged id naming b's message in a's folder is still another mailbox's message.
    let guid = store.store_guid().unwrap();
    let forged = EntryId::new(guid, ids[0], b.id).to_base64();
    assert!(matches!(
        store.voice_message(ids[0], &forged),
        Err(VoiceMessageLookupError::EntryId(EntryIdError::OtherMailbox))
    ));
    let unknown = EntryId::new(guid, ids[0], VoiceMessageId(999)).to_base64();
    assert!(matches!(
        store.voice_message(ids[0], &unknown),
        Err(VoiceMessageLookupError::EntryId(
            EntryIdError::UnknownMessage
        ))
    ));
    // Another store has another GUID.
    let other = Fixture::new(f.kind);
    assert_ne!(other.store.store_guid().unwrap(), guid);
    // The GUID is kept across opens.
    let store = f.reopen();
    assert_eq!(store.store_guid().unwrap(), guid);
    store.remove_voice_message(a.id).unwrap();
    assert!(matches!(
        store.voice_message(ids[0], &a.entry_id),
        Err(VoiceMessageLookupError::EntryId(
            EntryIdError::UnknownMessage
        ))
    ));
}

fn phone_access_marks_deletes_and_reads_only_its_own_mailboxs_messages(f: Fixture) {
    let store = &f.store;
    let ids = users(store, 2);
    let a = store
        .add_voice_message(ids[0], new_message(&[1, 2]))
        .unwrap();
    assert!(!a.heard);
    // Another mailbox cannot read, mark or delete it.
    assert_eq!(store.voice_message_audio(ids[1], a.id).unwrap(), None);
    assert!(!store.mark_voice_message_heard(ids[1], a.id).unwrap());
    assert!(!store.delete_voice_message(ids[1], a.id).unwrap());
    assert!(!store.voice_messages(ids[0]).unwrap()[0].heard);
    assert_eq!(
        store.voice_message_audio(ids[0], a.id).unwrap(),
        Some(vec![1, 2])
    );
    assert!(store.mark_voice_message_heard(ids[0], a.id).unwrap());
    assert!(store.voice_messages(ids[0]).unwrap()[0].heard);
    assert!(store.voice_message(ids[0], &a.entry_id).unwrap().info.heard);
    assert!(store.delete_voice_message(ids[0], a.id).unwrap());
    assert!(store.voice_messages(ids[0]).unwrap().is_empty());
    assert!(!store.mark_voice_message_heard(ids[0], a.id).unwrap());
}

fn a_mailbox_is_found_by_an_extension_only_it_has(f: Fixture) {
    let store = &f.store;
    let ids = users(store, 1);
    let found = store.mailbox_by_extension("36697").unwrap().unwrap();
    assert_eq!(found.id, ids[0]);
    assert_eq!(store.mailbox_by_extension("3669").unwrap(), None);
    // A second mailbox with the same extension: it names neither.
    let mut twin = alice();
    twin.user = "twin".into();
    store.add_mailbox(twin).unwrap();
    assert_eq!(store.mailbox_by_extension("36697").unwrap(), None);
}

fn refused_entry_ids_are_invalid_object_id_faults(f: Fixture) {
    use crate::fault::UmError;
    let ids = users(&f.store, 1);
    for bad in ["%%%", "AAAA", ""] {
        let err = f.store.voice_message(ids[0], bad).unwrap_err();
        assert!(matches!(UmError::from(err), UmError::InvalidObjectId));
    }
}

fn greetings_are_per_mailbox_and_type_and_replaced(f: Fixture) {
    let store = &f.store;
    let ids = users(store, 2);
    assert_eq!(
        store.greeting(ids[0], GreetingType::NormalCustom).unwrap(),
        None
    );
    store
        .set_greeting(ids[0], GreetingType::NormalCustom, &[1, 1])
        .unwrap();
    store
        .set_greeting(ids[0], GreetingType::OofCustom, &[2, 2])
        .unwrap();
    store
        .set_greeting(ids[0], GreetingType::NormalCustom, &[3, 3])
        .unwrap();
    assert_eq!(
        store.greeting(ids[0], GreetingType::NormalCustom).unwrap(),
        Some(vec![3, 3])
    );
    assert_eq!(
        store.greeting(ids[0], GreetingType::OofCustom).unwrap(),
        Some(vec![2, 2])
    );
    assert_eq!(
        store.greeting(ids[1], GreetingType::OofCustom).unwrap(),
        None
    );
    assert!(matches!(
        store.set_greeting(MailboxId(999), GreetingType::OofCustom, &[1]),
        Err(StoreError::UnknownMailbox(MailboxId(999)))
    ));
    assert!(matches!(
        store.add_voice_message(MailboxId(999), new_message(&[1])),
        Err(StoreError::UnknownMailbox(MailboxId(999)))
    ));
}

/// Reads are not changes; a commit through any clone moves the version at once, and one by
/// another handle (another process or instance) moves it too, within the backend's bound
/// (SQLite: the poll interval, zero here; PostgreSQL: the notification's delivery).
fn change_version_moves_with_commits_of_any_handle(f: Fixture) {
    let store = f.store.clone().with_external_poll(Duration::ZERO);
    let id = store.add_mailbox(alice()).unwrap();
    // The PostgreSQL listener connects in the background: wait until the version settles.
    let mut v0 = store.change_version().unwrap();
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(10));
        let v = store.change_version().unwrap();
        if v == v0 {
            break;
        }
        v0 = v;
    }
    store.mailbox("alice").unwrap().unwrap();
    store.mailboxes().unwrap();
    store.verify_password("alice", "wrong").unwrap();
    assert_eq!(store.change_version().unwrap(), v0, "reads are not changes");
    store.clone().set_oof_status(id, true).unwrap();
    let v1 = store.change_version().unwrap();
    assert_ne!(v1, v0, "a commit through a clone is seen at once");
    let other = f.reopen();
    other.set_oof_status(id, false).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.change_version().unwrap() == v1 {
        assert!(
            std::time::Instant::now() < deadline,
            "another handle's commit is never seen"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Failed logons through two handles (two instances) add up to one count and one lockout.
fn failures_and_lockout_count_across_handles(f: Fixture) {
    let policy = PinPolicy {
        logon_failures_before_pin_reset: None,
        max_logon_attempts: Some(6),
        ..PinPolicy::default()
    };
    f.store.set_policy(DEFAULT_POLICY_NAME, &policy).unwrap();
    let id = f.store.add_mailbox(alice()).unwrap();
    let pin = f.store.reset_pin(id, &mut rng()).unwrap();
    let handles = [f.store.clone(), f.reopen(), f.reopen()];
    std::thread::scope(|s| {
        for store in &handles {
            s.spawn(move || {
                for _ in 0..2 {
                    assert!(matches!(
                        store.check_pin("alice", "000000").unwrap(),
                        PinCheck::Wrong { .. } | PinCheck::LockedOut
                    ));
                }
            });
        }
    });
    let m = f.store.mailbox_by_id(id).unwrap().unwrap();
    assert_eq!(m.failed_logon_count, 6);
    assert!(m.locked_out);
    for store in &handles {
        assert_eq!(store.check_pin("alice", &pin).unwrap(), PinCheck::LockedOut);
    }
}

/// Two mailboxes through two handles (two instances): one's password or PIN never opens the
/// other, one's failures never count for the other, and one's resets never change the
/// other's PIN nor queue mail for it.
fn credentials_of_one_mailbox_never_reach_another(f: Fixture) {
    let ids = users(&f.store, 2);
    let (a, b) = (ids[0], ids[1]);
    f.store.set_password(b, "b's password").unwrap();
    let other = f.reopen();
    for store in [&f.store, &other] {
        assert!(store
            .verify_password("user0", "b's password")
            .unwrap()
            .is_none());
        assert!(store
            .verify_password("user1", "correct horse")
            .unwrap()
            .is_none());
        assert_eq!(
            store
                .verify_password("user1", "b's password")
                .unwrap()
                .map(|m| m.id),
            Some(b)
        );
    }
    let pin_b = f.store.reset_pin(b, &mut rng()).unwrap();
    let (mail, pin_a) = queue(&other, a, ResetReason::Requested);
    assert_eq!((mail.mailbox_id, mail.user.as_str()), (a, "user0"));
    let pending = f.store.outbox_pending(0, 10).unwrap();
    assert!(pending
        .iter()
        .all(|m| m.mailbox_id == a && m.user == "user0"));
    assert_eq!(
        f.store.pin_changes(b).unwrap(),
        1,
        "A's reset changed B's PIN"
    );
    assert!(f.store.match_pin_record(b, &[&pin_b]).unwrap().is_exact());
    if pin_a != pin_b {
        assert!(matches!(
            other.check_pin("user0", &pin_b).unwrap(),
            PinCheck::Wrong { .. }
        ));
        assert!(matches!(
            f.store.check_pin("user1", &pin_a).unwrap(),
            PinCheck::Wrong { .. }
        ));
    }
    let failed = |id| {
        f.store
            .mailbox_by_id(id)
            .unwrap()
            .unwrap()
            .failed_logon_count
    };
    assert_eq!(failed(a), u32::from(pin_a != pin_b));
    assert_eq!(failed(b), u32::from(pin_a != pin_b));
    assert!(matches!(
        other.check_pin("user1", &pin_b).unwrap(),
        PinCheck::Ok | PinCheck::OkMustChange
    ));
    assert_eq!(
        failed(a),
        u32::from(pin_a != pin_b),
        "B's success cleared A's count"
    );
    assert_eq!(failed(b), 0);
}
