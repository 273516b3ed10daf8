//! Concurrent ResetPIN against a real server: calls on one mailbox serialize (the PIN record
//! holds every acknowledged PIN, in order, and the newest mail holds the valid PIN), and calls
//! on different mailboxes run side by side. That no lock shared between mailboxes is held
//! during the argon2 work is shown structurally by the store's unit test
//! `resets_of_one_mailbox_serialise_and_others_overlap` (a hook that only returns once four
//! mailboxes are inside their PIN work at the same time); here the wall times are printed for
//! the report, not asserted.

mod common;

use std::time::{Duration, Instant};

use common::{
    maildir_mails, pin_check, pin_in_mail, try_reset_pin, umws_in, Sent, Serve, MANY_RESETS,
};
use umws::store::Store;

/// Clients and resets per client on one mailbox: 7 x 3 = 21 PINs, which a PIN record with
/// PINHistoryCount 20 (20 history entries and the current PIN) holds completely.
const CLIENTS: usize = 7;
const RESETS_PER_CLIENT: usize = 3;

#[test]
fn concurrent_resets_of_one_mailbox_serialize() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    umws_in(
        dir,
        &["mailbox", "add"],
        &["--user", "one", "--password", "pw"],
        0,
    );
    umws_in(
        dir,
        &["policy", "set"],
        &["--name", "Default", "--pin-history-count", "20"],
        0,
    );
    let server = Serve::start_with(dir, MANY_RESETS);
    let started = Instant::now();
    let answers: Vec<Sent> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    (0..RESETS_PER_CLIENT)
                        .map(|_| try_reset_pin(&server.base, "one", "pw"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();
    assert!(
        answers.iter().all(|a| *a == Sent::Status(200)),
        "{answers:?}"
    );
    let store = Store::open(dir).unwrap();
    assert_eq!(store.outbox_len().unwrap(), 0, "every mail delivered");
    drop(server);

    let mails = maildir_mails(dir, "one");
    assert_eq!(mails.len(), CLIENTS * RESETS_PER_CLIENT);
    let pins: Vec<String> = mails.iter().map(|(_, m)| pin_in_mail(m)).collect();
    let refs: Vec<&str> = pins.iter().map(String::as_str).collect();
    let id = store.mailbox("one").unwrap().unwrap().id;
    assert_eq!(store.pin_changes(id).unwrap(), pins.len() as u64);
    let record = store.match_pin_record(id, &refs).unwrap();
    assert!(
        record.is_exact(),
        "history + current != acknowledged PINs in mail order: {record:?}"
    );
    assert_eq!(pin_check(dir, "one", pins.last().unwrap()), 0);
    eprintln!(
        "one mailbox: {} concurrent resets ({CLIENTS} clients x {RESETS_PER_CLIENT}) in {elapsed:.2?}",
        pins.len()
    );
}

#[test]
fn resets_of_different_mailboxes_proceed_side_by_side() {
    const MAILBOXES: usize = 4;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let users: Vec<String> = (0..MAILBOXES).map(|i| format!("side{i}")).collect();
    for user in &users {
        umws_in(
            dir,
            &["mailbox", "add"],
            &["--user", user, "--password", "pw"],
            0,
        );
    }
    let server = Serve::start_with(dir, MANY_RESETS);
    let reset = |user: &str| {
        let t = Instant::now();
        assert_eq!(try_reset_pin(&server.base, user, "pw"), Sent::Status(200));
        t.elapsed()
    };
    // Warm up: the credential cache, and one PIN each so every later reset does the same work.
    for user in &users {
        reset(user);
    }
    // The same work twice: one reset per mailbox, first one after the other, then all at once.
    let t = Instant::now();
    let serial: Vec<Duration> = users.iter().map(|u| reset(u)).collect();
    let serial_wall = t.elapsed();
    let t = Instant::now();
    let parallel: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = users.iter().map(|u| s.spawn(|| reset(u))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let parallel_wall = t.elapsed();
    drop(server);

    let store = Store::open(dir).unwrap();
    for user in &users {
        let mails = maildir_mails(dir, user);
        assert_eq!(mails.len(), 3, "{user}");
        let id = store.mailbox(user).unwrap().unwrap().id;
        let pins: Vec<String> = mails.iter().map(|(_, m)| pin_in_mail(m)).collect();
        let refs: Vec<&str> = pins.iter().map(String::as_str).collect();
        assert!(
            store.match_pin_record(id, &refs).unwrap().is_exact(),
            "{user}"
        );
    }
    eprintln!(
        "{MAILBOXES} mailboxes: one after the other {serial_wall:.2?} (each {serial:.2?}); \
         all at once {parallel_wall:.2?} (each {parallel:.2?}); {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}
