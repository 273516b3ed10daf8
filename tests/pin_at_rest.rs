//! No PIN at rest once its mail is delivered: after many ResetPINs on
//! several mailboxes at once, and again after a SIGKILL under that load and a restart, no PIN
//! that was delivered into a Maildir is found in any file of the data directory outside
//! `mail/` (the database, its WAL and shared memory, free pages, the spool).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    maildir_mails, pin_in_mail, try_reset_pin, umws_in, wait_until, Sent, Serve, MANY_RESETS,
};
use umws::store::Store;

const USERS: [&str; 3] = ["rest0", "rest1", "rest2"];

/// Every file under `dir` except those under `dir/mail`.
fn files_outside_mail(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path == skip {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(&path, skip, out);
            } else if meta.is_file() {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &dir.join("mail"), &mut out);
    out
}

/// The PINs of every mail delivered to the test's mailboxes.
fn delivered_pins(dir: &Path) -> Vec<String> {
    USERS
        .iter()
        .flat_map(|user| maildir_mails(dir, user))
        .map(|(_, mail)| pin_in_mail(&mail))
        .collect()
}

/// Panics naming every delivered PIN found (as its digits) in a file outside `mail/`.
fn assert_no_delivered_pin_at_rest(dir: &Path, pins: &[String]) {
    assert!(!pins.is_empty());
    let files = files_outside_mail(dir);
    assert!(
        files.iter().any(|f| f.ends_with("umws.sqlite3")),
        "{files:?}"
    );
    let mut found = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for pin in pins {
            if bytes.windows(pin.len()).any(|w| w == pin.as_bytes()) {
                found.push(format!("PIN {pin} in {}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "{} of {} delivered PINs readable outside mail/:\n{}",
        found.len(),
        pins.len(),
        found.join("\n")
    );
}

/// Resets the test's mailboxes from one thread per mailbox until `stop`; returns how many
/// were acknowledged.
fn load(base: &str, stop: &AtomicBool, limit: usize) -> usize {
    std::thread::scope(|s| {
        let workers: Vec<_> = USERS
            .iter()
            .map(|user| {
                s.spawn(move || {
                    let mut acked = 0;
                    while acked < limit && !stop.load(Ordering::SeqCst) {
                        match try_reset_pin(base, user, "pw") {
                            Sent::Status(200) => acked += 1,
                            Sent::Status(status) => panic!("ResetPIN answered {status}"),
                            Sent::NotConnected | Sent::NoAnswer => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    })
}

fn drained(dir: &Path) -> bool {
    let store = Store::open(dir).unwrap();
    wait_until(Duration::from_secs(60), || store.outbox_len().unwrap() == 0)
}

#[test]
fn no_delivered_pin_stays_in_the_data_directory() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    for user in USERS {
        umws_in(
            dir,
            &["mailbox", "add"],
            &["--user", user, "--password", "pw"],
            0,
        );
    }

    // Many resets, three mailboxes at once (their outbox rows share pages).
    let server = Serve::start_with(dir, MANY_RESETS);
    let acked = load(&server.base, &AtomicBool::new(false), 12);
    assert_eq!(acked, 36);
    assert!(drained(dir), "the outbox was not delivered");
    let pins = delivered_pins(dir);
    assert_eq!(pins.len(), 36);
    // While the server runs (the WAL is there) and after it stopped.
    assert_no_delivered_pin_at_rest(dir, &pins);
    server.kill9();
    assert_no_delivered_pin_at_rest(dir, &pins);

    // SIGKILL under load, a few times, then a restart that delivers what was left queued.
    for round in 0..3u64 {
        let server = Serve::start_with(dir, MANY_RESETS);
        let base = server.base.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let loader = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || load(&base, &stop, usize::MAX))
        };
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        server.kill9();
        stop.store(true, Ordering::SeqCst);
        loader.join().unwrap();
    }
    let server = Serve::start_with(dir, MANY_RESETS);
    load(&server.base, &AtomicBool::new(false), 2);
    assert!(
        drained(dir),
        "the restarted server did not drain the outbox"
    );
    server.kill9();
    let pins = delivered_pins(dir);
    assert_no_delivered_pin_at_rest(dir, &pins);
}

/// A spool file that names no queued mail (its unlink failed after delivery, or its reset
/// rolled back) is removed by the running server, not only at the next start.
#[test]
fn a_running_server_removes_spool_files_of_no_queued_mail() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    umws_in(
        dir,
        &["mailbox", "add"],
        &["--user", "rest0", "--password", "pw"],
        0,
    );
    let server = Serve::start(dir);
    let orphan = dir
        .join(umws::store::SPOOL_DIR)
        .join("00000000000000000000000000000001.eml");
    std::fs::write(&orphan, "Your new PIN is: 135790\n").unwrap();
    assert_eq!(
        try_reset_pin(&server.base, "rest0", "pw"),
        Sent::Status(200)
    );
    assert!(
        wait_until(Duration::from_secs(30), || !orphan.exists()),
        "the orphan spool file is still there"
    );
    assert!(drained(dir));
    assert_no_delivered_pin_at_rest(dir, &delivered_pins(dir));
    server.kill9();
}
