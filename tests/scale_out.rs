//! Several `umws serve` instances on one PostgreSQL database (the test cluster of
//! `common::postgres`, each test in a database of its own), with clients spread over them:
//! failed HTTP logons are throttled across instances, failed phone logons lock a mailbox
//! across processes, one mailbox's credentials never reach another, and instances killed with
//! SIGKILL at random moments lose no acknowledged reset and invent no mail.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::postgres::{query_text, TestDatabase};
use common::{
    basic, maildir_mails, pin_in_mail, post_raw, try_reset_pin, umws_in, wait_until, Sent, Serve,
    MANY_RESETS,
};
use rand::Rng;
use umws::store::Store;

fn database() -> TestDatabase {
    common::postgres::test_database(&common::test_env_dir(), common::apt_install)
}

const GET_PROPERTIES: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetUMProperties xmlns="http://schemas.microsoft.com/exchange/services/2006/messages"/></soap:Body></soap:Envelope>"#;

/// The answer to one GetUMProperties as `user`: status and `Retry-After`, if any.
fn logon(base: &str, user: &str, password: &str) -> (u16, Option<u64>) {
    let auth = basic(user, password);
    let headers = [
        ("Content-Type", "text/xml; charset=utf-8"),
        ("Authorization", auth.as_str()),
    ];
    let (status, headers, _) = post_raw(
        base,
        "/UnifiedMessaging/Service.asmx",
        &headers,
        GET_PROPERTIES.as_bytes(),
    );
    let retry_after = headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .map(|(_, v)| v.parse().expect("Retry-After in seconds"));
    (status, retry_after)
}

/// One verified logon (401 or 200), retried on `base` while the throttle refuses it
/// unchecked (429): its status.
fn verified_logon(base: &str, user: &str, password: &str) -> u16 {
    let mut refused = 0;
    loop {
        match logon(base, user, password) {
            (429, Some(secs)) if secs >= 1 => {
                refused += 1;
                assert!(refused < 1200, "refused for two minutes");
                std::thread::sleep(Duration::from_millis(100));
            }
            (status @ (200 | 401), _) => return status,
            other => panic!("{user}: {other:?}"),
        }
    }
}

/// A ResetPIN as `user` through `base`, retried while the throttle refuses it (429).
fn reset(base: &str, user: &str) -> Sent {
    for _ in 0..1200 {
        match try_reset_pin(base, user, &format!("pw-{user}")) {
            Sent::Status(429) => std::thread::sleep(Duration::from_millis(100)),
            sent => return sent,
        }
    }
    panic!("{user}: throttled for two minutes");
}

/// `umws pin check --database URL` exit code.
fn pin_check(data: &Path, url: &str, user: &str, pin: &str) -> i32 {
    Command::new(env!("CARGO_BIN_EXE_umws"))
        .args(["pin", "check", "--data"])
        .arg(data)
        .args(["--database", url, "--user", user, "--pin", pin])
        .env("UMWS_LOG", "warn")
        .output()
        .unwrap()
        .status
        .code()
        .unwrap_or(-1)
}

/// Adds mailbox `user` (password `pw-USER`) to the database `url`.
fn add_mailbox(data: &Path, url: &str, user: &str) {
    umws_in(
        data,
        &["mailbox", "add"],
        &[
            "--database",
            url,
            "--user",
            user,
            "--password",
            &format!("pw-{user}"),
        ],
        0,
    );
}

/// `n` instances serving the database `url` on the data directory `data`.
fn instances(n: usize, data: &Path, url: &str, extra: &[&str]) -> Vec<Serve> {
    let mut args = vec!["--database", url];
    args.extend(extra);
    (0..n).map(|_| Serve::start_with(data, &args)).collect()
}

/// The Message-ID of a mail.
fn message_id(mail: &str) -> String {
    mail.lines()
        .find_map(|l| l.strip_prefix("Message-ID:"))
        .expect("mail has a Message-ID")
        .trim()
        .to_owned()
}

/// A guesser spreading wrong passwords round-robin over instances is throttled as against
/// one: after seven failures over two instances, both refuse the user unchecked (429) for the
/// window of seven failures (6.4 s with the default policy), where instances counting alone
/// would each know three or four failures (a window of 0.8 s at most); and a third instance,
/// which has the right password in its credentials cache, refuses it too within the shared
/// windows' poll interval (else its cache would tell the guesser which guess is right). The
/// right password works once the window is over, and that success clears the count
/// everywhere.
#[test]
fn failed_logons_spread_over_instances_are_throttled_as_against_one() {
    const FAILURES: usize = 7;
    let db = database();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    add_mailbox(dir, &db.url, "guessed");
    let servers = instances(3, dir, &db.url, &[]);
    assert_eq!(logon(&servers[0].base, "guessed", "pw-guessed").0, 200);
    for i in 0..FAILURES {
        let server = &servers[1 + i % 2];
        let status = verified_logon(&server.base, "guessed", &format!("guess-{i}"));
        assert_eq!(status, 401, "guess {i}");
    }
    let mut waits = Vec::new();
    for (i, server) in servers.iter().enumerate().skip(1) {
        let (status, retry_after) = logon(&server.base, "guessed", "pw-guessed");
        assert_eq!(
            status, 429,
            "instance {i} let a logon through right after {FAILURES} failures spread over two \
             instances"
        );
        waits.push(retry_after.unwrap());
    }
    assert!(
        waits.iter().all(|w| *w >= 3),
        "every instance holds the window of all {FAILURES} failures (6.4 s), not of its own \
         share: Retry-After {waits:?}"
    );
    let mut cached = (0, None);
    assert!(
        wait_until(Duration::from_secs(3), || {
            cached = logon(&servers[0].base, "guessed", "pw-guessed");
            cached.0 == 429
        }),
        "the instance with the password cached lets it in inside the window: {cached:?}"
    );
    waits.extend(cached.1);
    // After the window, the right password works, on any instance.
    std::thread::sleep(Duration::from_secs(*waits.iter().max().unwrap()));
    assert_eq!(
        verified_logon(&servers[1].base, "guessed", "pw-guessed"),
        200
    );
    // The success cleared the shared count: one new failure (within the allowance) opens no
    // window on another instance.
    assert_eq!(verified_logon(&servers[2].base, "guessed", "typo"), 401);
    assert_eq!(logon(&servers[0].base, "guessed", "pw-guessed").0, 200);
}

/// A client trying many user names, spread round-robin over three instances, is throttled
/// as against one: after nine names have failed from it (three per instance, which alone
/// would open a window of 0.2 s), every instance refuses a tenth name from it unchecked for
/// the window of nine (10 s with the default policy: two names free, then doubling).
#[test]
fn a_client_spraying_names_over_instances_is_throttled_as_against_one() {
    const NAMES: usize = 9;
    let db = database();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    add_mailbox(dir, &db.url, "someone");
    let servers = instances(3, dir, &db.url, &[]);
    for i in 0..NAMES {
        let status = verified_logon(&servers[i % 3].base, &format!("sprayed{i}"), "Summer2026");
        assert_eq!(status, 401, "name {i}");
    }
    for (i, server) in servers.iter().enumerate() {
        let (status, retry_after) = logon(&server.base, "someone", "Summer2026");
        assert_eq!(
            status, 429,
            "instance {i} verified a new name right after {NAMES} names failed from the same \
             client on three instances"
        );
        let retry_after = retry_after.unwrap();
        assert!(
            retry_after >= 5,
            "instance {i} holds the client's window of {NAMES} names, not of its own share: \
             Retry-After {retry_after}"
        );
    }
}

/// Failed phone logons (`umws pin check`, each a process of its own) from three places at
/// once, 15 in all: with the default policy (a reset after 5 failures, lockout after 15) the
/// mailbox is locked, with the count at exactly 15 and two automatic resets, at 5 and at 10,
/// each mailed once - wherever the failures were counted.
#[test]
fn failed_phone_logons_across_processes_lock_the_mailbox() {
    let db = database();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    add_mailbox(dir, &db.url, "phone");
    // Three instances run (and deliver what the outbox holds) meanwhile.
    let servers = instances(3, dir, &db.url, &[]);
    let store = Store::open_postgres(&db.url, dir).unwrap();
    let id = store.mailbox("phone").unwrap().unwrap().id;
    let initial = store.reset_pin(id, &mut rand::rngs::OsRng).unwrap();
    let wrong = if initial == "390417" {
        "390418"
    } else {
        "390417"
    };
    let refused: Vec<i32> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let url = db.url.as_str();
                s.spawn(move || {
                    (0..5)
                        .map(|_| pin_check(dir, url, "phone", wrong))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        callers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    assert!(refused.iter().all(|code| *code != 0), "{refused:?}");
    let mailbox = store.mailbox("phone").unwrap().unwrap();
    assert_eq!(mailbox.failed_logon_count, 15);
    assert!(mailbox.locked_out, "15 failures lock the mailbox");
    assert!(
        wait_until(Duration::from_secs(30), || store.outbox_len().unwrap() == 0),
        "every mail delivered"
    );
    drop(servers);
    let mails = maildir_mails(dir, "phone");
    assert_eq!(mails.len(), 2, "two automatic resets, each mailed once");
    assert_eq!(
        store.pin_changes(id).unwrap(),
        3,
        "the first PIN and two resets"
    );
    let pins: Vec<String> = mails.iter().map(|(_, m)| pin_in_mail(m)).collect();
    let record = store
        .match_pin_record(id, &[&initial, &pins[0], &pins[1]])
        .unwrap();
    assert!(record.is_exact(), "{record:?}");
    assert_ne!(
        pin_check(dir, &db.url, "phone", &pins[1]),
        0,
        "locked out: even the newest PIN is refused"
    );
    umws_in(
        dir,
        &["mailbox", "unlock"],
        &["--database", &db.url, "--user", "phone"],
        0,
    );
    assert_eq!(pin_check(dir, &db.url, "phone", &pins[1]), 0);
}

/// One mailbox's credentials never reach another on the PostgreSQL backend: a logon as A
/// with B's password fails on every instance (also once B's password is cached there), and
/// resets of A - many, through every instance, while B is reset too - never change B's PIN
/// nor mail B, and the reverse.
#[test]
fn mailboxes_stay_apart_across_instances() {
    const RESETS: usize = 6;
    let db = database();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    add_mailbox(dir, &db.url, "a");
    add_mailbox(dir, &db.url, "b");
    let servers = instances(3, dir, &db.url, MANY_RESETS);
    for server in &servers {
        // B's password in the cache of every instance first.
        assert_eq!(logon(&server.base, "b", "pw-b").0, 200);
    }
    for (i, server) in servers.iter().enumerate() {
        assert_eq!(
            verified_logon(&server.base, "a", "pw-b"),
            401,
            "instance {i}"
        );
        assert_eq!(
            verified_logon(&server.base, "b", "pw-a"),
            401,
            "instance {i}"
        );
    }
    let store = Store::open_postgres(&db.url, dir).unwrap();
    let a = store.mailbox("a").unwrap().unwrap().id;
    let b = store.mailbox("b").unwrap().unwrap().id;
    // Only A is reset: B is untouched.
    for server in &servers {
        assert_eq!(reset(&server.base, "a"), Sent::Status(200));
    }
    assert!(wait_until(Duration::from_secs(30), || store
        .outbox_len()
        .unwrap()
        == 0));
    assert_eq!(
        store.pin_changes(b).unwrap(),
        0,
        "A's resets changed B's PIN"
    );
    assert!(maildir_mails(dir, "b").is_empty(), "A's resets mailed B");
    // Both at once, through every instance.
    std::thread::scope(|s| {
        for user in ["a", "b"] {
            let servers = &servers;
            s.spawn(move || {
                for r in 0..RESETS {
                    let sent = reset(&servers[r % 3].base, user);
                    assert_eq!(sent, Sent::Status(200), "{user}");
                }
            });
        }
    });
    assert!(wait_until(Duration::from_secs(30), || store
        .outbox_len()
        .unwrap()
        == 0));
    drop(servers);
    for (user, id, resets) in [("a", a, 3 + RESETS), ("b", b, RESETS)] {
        let mails = maildir_mails(dir, user);
        assert_eq!(mails.len(), resets, "{user}: one mail per reset of its own");
        assert_eq!(store.pin_changes(id).unwrap(), resets as u64, "{user}");
        let pins: Vec<String> = mails.iter().map(|(_, m)| pin_in_mail(m)).collect();
        let tail: Vec<&str> = pins[pins.len().saturating_sub(6)..]
            .iter()
            .map(String::as_str)
            .collect();
        assert!(
            store.match_pin_record(id, &tail).unwrap().is_exact(),
            "{user}: its mails are its PIN record"
        );
        let other = if user == "a" { "b" } else { "a" };
        assert_ne!(
            pin_check(dir, &db.url, other, pins.last().unwrap()),
            0,
            "{user}'s PIN opens {other}'s mailbox"
        );
        assert_eq!(pin_check(dir, &db.url, user, pins.last().unwrap()), 0);
    }
}

/// Mailboxes under the kill load.
const MAILBOXES: usize = 3;
/// Client threads; thread `t` resets mailbox `t % MAILBOXES` through a random live instance.
const THREADS: usize = 5;
/// Instances at a time.
const INSTANCES: usize = 3;
/// SIGKILLs (of a random instance each, restarted at once on the same database).
const KILLS: usize = 12;

/// Three instances under ResetPIN load, one of them killed with SIGKILL at a random moment
/// and restarted, many times, the others serving meanwhile. Afterwards, for every mailbox:
/// every reset answered 200 has its mail, there are as many distinct mails (by Message-ID)
/// as committed PIN changes and the newest are exactly the PIN record in order (no mail for
/// a change that did not happen), a mail delivered twice is the same mail, the outbox is
/// empty, and `pin check` accepts the newest mail's PIN.
#[test]
fn sigkill_of_instances_under_reset_load_loses_nothing() {
    let started = Instant::now();
    let db = database();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let users: Vec<String> = (0..MAILBOXES).map(|i| format!("kill{i}")).collect();
    for user in &users {
        add_mailbox(dir, &db.url, user);
    }
    let mut args = vec!["--database", db.url.as_str()];
    args.extend(MANY_RESETS);

    let bases: Arc<RwLock<Vec<Option<String>>>> = Arc::new(RwLock::new(vec![None; INSTANCES]));
    let stop = Arc::new(AtomicBool::new(false));
    let attempts: Arc<Vec<AtomicU32>> =
        Arc::new((0..MAILBOXES).map(|_| AtomicU32::new(0)).collect());
    let acked: Arc<Vec<AtomicU32>> = Arc::new((0..MAILBOXES).map(|_| AtomicU32::new(0)).collect());
    let faults = Arc::new(AtomicU32::new(0));
    let unanswered = Arc::new(AtomicU32::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let mb = t % MAILBOXES;
            let user = users[mb].clone();
            let (bases, stop, attempts, acked, faults, unanswered) = (
                Arc::clone(&bases),
                Arc::clone(&stop),
                Arc::clone(&attempts),
                Arc::clone(&acked),
                Arc::clone(&faults),
                Arc::clone(&unanswered),
            );
            std::thread::spawn(move || {
                let password = format!("pw-{user}");
                let mut rng = rand::thread_rng();
                while !stop.load(Ordering::SeqCst) {
                    let live: Vec<String> =
                        bases.read().unwrap().iter().flatten().cloned().collect();
                    if live.is_empty() {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    let url = &live[rng.gen_range(0..live.len())];
                    // Counted before sending: a request may take effect even if the instance
                    // dies before answering.
                    attempts[mb].fetch_add(1, Ordering::SeqCst);
                    match try_reset_pin(url, &user, &password) {
                        Sent::NotConnected => {
                            attempts[mb].fetch_sub(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Sent::NoAnswer => {
                            unanswered.fetch_add(1, Ordering::SeqCst);
                        }
                        Sent::Status(200) => {
                            acked[mb].fetch_add(1, Ordering::SeqCst);
                        }
                        Sent::Status(_) => {
                            faults.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();

    let mut servers: Vec<Serve> = (0..INSTANCES)
        .map(|_| Serve::start_with(dir, &args))
        .collect();
    for (slot, server) in servers.iter().enumerate() {
        bases.write().unwrap()[slot] = Some(server.base.clone());
    }
    let mut rng = rand::thread_rng();
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..2000)));
        let slot = rng.gen_range(0..INSTANCES);
        bases.write().unwrap()[slot] = None;
        let restarted = Serve::start_with(dir, &args);
        std::mem::replace(&mut servers[slot], restarted).kill9();
        bases.write().unwrap()[slot] = Some(servers[slot].base.clone());
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    // The instances still running take over what the killed ones had leased or left queued.
    let store = Store::open_postgres(&db.url, dir).unwrap();
    if !wait_until(Duration::from_secs(60), || store.outbox_len().unwrap() == 0) {
        let left = query_text(
            &db.url,
            "SELECT id, attempts, leased_until - extract(epoch from now())::bigint, leased_by \
             FROM outbox ORDER BY id",
        );
        panic!("the live instances did not drain the outbox: (id, attempts, lease left, holder) {left:?}");
    }
    drop(servers);

    let mut report = Vec::new();
    for (mb, user) in users.iter().enumerate() {
        let attempted = attempts[mb].load(Ordering::SeqCst);
        let acked = acked[mb].load(Ordering::SeqCst);
        let files = maildir_mails(dir, user);
        // Mails by Message-ID: a mail delivered twice must be the same mail.
        let mut by_id: HashMap<String, &str> = HashMap::new();
        let mut pins = Vec::new();
        for (_, text) in &files {
            match by_id.insert(message_id(text), text) {
                Some(earlier) => assert_eq!(earlier, text, "{user}: one Message-ID, two mails"),
                None => pins.push(pin_in_mail(text)),
            }
        }
        let n = pins.len() as u32;
        assert!(
            acked <= n && n <= attempted,
            "{user}: {acked} acknowledged, {n} mails, {attempted} attempted"
        );
        let id = store.mailbox(user).unwrap().unwrap().id;
        assert_eq!(
            store.pin_changes(id).unwrap(),
            u64::from(n),
            "{user}: mails and committed PIN changes differ"
        );
        let policy = store.mailbox_by_id(id).unwrap().unwrap().policy;
        let kept = pins.len().min(policy.pin_history_count as usize + 1);
        let tail: Vec<&str> = pins[pins.len() - kept..]
            .iter()
            .map(String::as_str)
            .collect();
        let record = store.match_pin_record(id, &tail).unwrap();
        assert!(
            record.is_exact(),
            "{user}: the newest mails do not match the PIN record one to one, in order: \
             {record:?}"
        );
        if let Some(newest) = pins.last() {
            assert_eq!(
                pin_check(dir, &db.url, user, newest),
                0,
                "{user}: the newest mail's PIN is refused"
            );
        }
        report.push((user.clone(), attempted, acked, n, files.len()));
    }
    eprintln!(
        "scale-out kill test: {KILLS} SIGKILLs of {INSTANCES} instances, {} unanswered, {} \
         faults, {:.1?} in all",
        unanswered.load(Ordering::SeqCst),
        faults.load(Ordering::SeqCst),
        started.elapsed()
    );
    for (user, attempted, acked, mails, files) in &report {
        eprintln!(
            "  {user}: {attempted} attempted, {acked} acknowledged, {mails} mails = PIN changes \
             ({files} files)"
        );
    }
    assert!(
        report.iter().map(|r| r.2).sum::<u32>() > 0,
        "no reset was acknowledged at all"
    );
}
