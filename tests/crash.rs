//! Nothing lost when the process dies: ResetPIN load on several mailboxes from several
//! threads against a real `umws serve`, killed with SIGKILL at random moments many times and
//! restarted on the same data directory. Afterwards, for every mailbox:
//!
//! * there are as many mails as committed PIN changes, and the newest mails are exactly the
//!   PIN record (the last `PINHistoryCount` PINs, then the current one), in order: each of
//!   them announces a change that happened, and no committed change lacks its mail;
//! * every reset answered 200 has its mail (acknowledged <= mails <= attempted);
//! * the PIN in the newest mail is the one `umws pin check` accepts;
//! * the outbox is empty once the restarted server has delivered what the crashes left.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{maildir_mails, pin_check, pin_in_mail, try_reset_pin, umws_in, wait_until};
use common::{Sent, Serve, MANY_RESETS};
use rand::Rng;
use umws::store::Store;

/// Mailboxes under load.
const MAILBOXES: usize = 4;
/// Client threads; thread `t` resets mailbox `t % MAILBOXES`, so the first mailbox has two
/// racing each other. (Few: every request in flight at a kill is lost work, and the server
/// hashes at production argon2 cost on two shared cores.)
const THREADS: usize = 5;
/// SIGKILLs.
const KILLS: usize = 20;

#[test]
fn sigkill_during_reset_load_loses_nothing_and_invents_nothing() {
    let started = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let users: Vec<String> = (0..MAILBOXES).map(|i| format!("crash{i}")).collect();
    for user in &users {
        umws_in(
            dir,
            &["mailbox", "add"],
            &["--user", user, "--password", &format!("pw-{user}")],
            0,
        );
    }

    let base: Arc<RwLock<Option<String>>> = Arc::new(RwLock::new(None));
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
            let (base, stop, attempts, acked, faults, unanswered) = (
                Arc::clone(&base),
                Arc::clone(&stop),
                Arc::clone(&attempts),
                Arc::clone(&acked),
                Arc::clone(&faults),
                Arc::clone(&unanswered),
            );
            std::thread::spawn(move || {
                let password = format!("pw-{user}");
                while !stop.load(Ordering::SeqCst) {
                    let Some(url) = base.read().unwrap().clone() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    // Counted before sending: a request may take effect even if the server
                    // dies before answering.
                    attempts[mb].fetch_add(1, Ordering::SeqCst);
                    match try_reset_pin(&url, &user, &password) {
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

    let mut rng = rand::thread_rng();
    let mut left_queued = Vec::new();
    let mut kills = 0;
    while kills < KILLS {
        let server = Serve::start_with(dir, MANY_RESETS);
        *base.write().unwrap() = Some(server.base.clone());
        std::thread::sleep(Duration::from_millis(rng.gen_range(400..2600)));
        server.kill9();
        *base.write().unwrap() = None;
        kills += 1;
        // What the crash left in the outbox (committed, not yet delivered).
        left_queued.push(Store::open(dir).unwrap().outbox_len().unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }

    // Restart: the server delivers the outbox at start.
    let server = Serve::start_with(dir, MANY_RESETS);
    let store = Store::open(dir).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || store.outbox_len().unwrap() == 0),
        "the restarted server did not drain the outbox"
    );
    server.kill9();

    let mut report = Vec::new();
    let checks: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(mb, user)| {
            let (store, user) = (store.clone(), user.clone());
            let dir = dir.to_path_buf();
            let attempted = attempts[mb].load(Ordering::SeqCst);
            let acked = acked[mb].load(Ordering::SeqCst);
            std::thread::spawn(move || {
                let mails = maildir_mails(&dir, &user);
                let pins: Vec<String> = mails.iter().map(|(_, m)| pin_in_mail(m)).collect();
                let n = pins.len() as u32;
                assert!(
                    acked <= n && n <= attempted,
                    "{user}: {acked} acknowledged, {n} mails, {attempted} attempted"
                );
                let id = store.mailbox(&user).unwrap().unwrap().id;
                assert_eq!(
                    store.pin_changes(id).unwrap(),
                    u64::from(n),
                    "{user}: mails and committed PIN changes differ"
                );
                // The record holds the last PINHistoryCount PINs and the current one: the
                // newest mails must be exactly those, in order.
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
                        pin_check(&dir, &user, newest),
                        0,
                        "{user}: the newest mail's PIN is refused"
                    );
                }
                (user, attempted, acked, n)
            })
        })
        .collect();
    for c in checks {
        report.push(c.join().unwrap());
    }
    eprintln!(
        "crash test: {kills} SIGKILLs, {} mails left queued by crashes (per kill {left_queued:?}), \
         {} unanswered, {} faults, {:.1?} in all",
        left_queued.iter().sum::<u64>(),
        unanswered.load(Ordering::SeqCst),
        faults.load(Ordering::SeqCst),
        started.elapsed()
    );
    for (user, attempted, acked, mails) in &report {
        eprintln!(
            "  {user}: {attempted} attempted, {acked} acknowledged, {mails} mails = PIN changes"
        );
    }
    assert!(kills >= 15);
    assert!(
        report.iter().map(|r| r.2).sum::<u32>() > 0,
        "no reset was acknowledged at all"
    );
}

/// The two crash windows of the outbox, made on purpose: a crash right after the commit (PIN
/// changed, mail queued, not delivered) and one after the delivery but before the row was
/// removed. The restarted server delivers the first and does not deliver the second twice.
#[test]
fn mails_left_in_the_outbox_by_a_crash_are_delivered_once_at_restart() {
    use umws::mail::{MailDelivery, Maildir, ResetPinMailer};
    use umws::store::{HashCost, ResetReason};

    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    umws_in(
        dir,
        &["mailbox", "add"],
        &["--user", "queued", "--password", "pw"],
        0,
    );
    let store = Store::open(dir).unwrap().with_hash_cost(HashCost::Test);
    let id = store.mailbox("queued").unwrap().unwrap().id;
    let maildir = Maildir::in_data_dir(dir);
    let mailer = ResetPinMailer::new(maildir.clone());
    let queue = || {
        store
            .reset_pin_queued(
                id,
                &mut rand::rngs::OsRng,
                ResetReason::Requested,
                |o, key| mailer.render(o, key),
            )
            .unwrap()
    };
    let delivered_not_removed = queue();
    maildir.deliver_queued(&delivered_not_removed).unwrap();
    let _committed_not_delivered = queue();
    assert_eq!(store.outbox_len().unwrap(), 2);
    assert_eq!(maildir_mails(dir, "queued").len(), 1);

    let server = Serve::start(dir);
    assert!(wait_until(Duration::from_secs(30), || store
        .outbox_len()
        .unwrap()
        == 0));
    server.kill9();

    let mails = maildir_mails(dir, "queued");
    assert_eq!(mails.len(), 2, "one copy each: {mails:?}");
    let pins: Vec<String> = mails.iter().map(|(_, m)| pin_in_mail(m)).collect();
    let refs: Vec<&str> = pins.iter().map(String::as_str).collect();
    assert!(store.match_pin_record(id, &refs).unwrap().is_exact());
    assert_eq!(pin_check(dir, "queued", &pins[1]), 0);
}
