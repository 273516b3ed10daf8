//! `umws store copy`: a SQLite store moved into PostgreSQL (the private test cluster of
//! `common::postgres`, or `UMWS_TEST_DATABASE_URL`) is served by `umws serve --database` as it
//! was: the same passwords, PINs, entry ids and queued mails.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::postgres::TestDatabase;
use common::{maildir_mails, try_reset_pin, wait_until, Sent, Serve};
use umws::store::voicemail::{GreetingType, NewVoiceMessage};
use umws::store::{HashCost, NewMailbox, OutgoingMail, ResetReason, Store, RESET_PIN_LIMIT};

fn database() -> TestDatabase {
    common::postgres::test_database(&common::test_env_dir(), common::apt_install)
}

/// Runs `umws ARGS`: (exit code, stdout + stderr).
fn umws(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_umws"))
        .args(args)
        .env("UMWS_LOG", "warn")
        .env_remove("UMWS_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What the populated SQLite store holds that the copy must keep.
struct Populated {
    pins: Vec<String>,
    entry_id: String,
    audio: Vec<u8>,
    greeting: Vec<u8>,
    queued_keys: Vec<String>,
}

/// A SQLite store in `dir`: two mailboxes, a reset of alice's PIN (with its history, its
/// ResetPIN log row, and its mail queued, not delivered), a changed policy, a voice message
/// (and a second one deleted, so that its id must not be given again) and a greeting.
fn populate(dir: &Path) -> Populated {
    let store = Store::create(dir)
        .unwrap()
        .with_hash_cost(HashCost::Test)
        .with_reset_limit(Some(RESET_PIN_LIMIT));
    let alice = store
        .add_mailbox(NewMailbox {
            user: "Alice".into(),
            password: "alice-pw".into(),
            um_enabled: true,
            extension: Some("4711".into()),
            email: Some("alice@example.org".into()),
        })
        .unwrap();
    store
        .add_mailbox(NewMailbox {
            user: "bob".into(),
            password: "bob-pw".into(),
            um_enabled: true,
            extension: None,
            email: None,
        })
        .unwrap();
    let mut policy = store.policy("Default").unwrap().unwrap();
    policy.min_pin_length = 7;
    store.set_policy("Strict", &policy).unwrap();
    store.set_mailbox_policy(alice, "Strict").unwrap();
    store.set_oof_status(alice, true).unwrap();
    // Two resets: the first PIN goes into the history, both mails stay queued.
    let mut pins = Vec::new();
    let mut queued_keys = Vec::new();
    for _ in 0..2 {
        let mut pin = String::new();
        let queued = store
            .reset_pin_queued(
                alice,
                &mut rand::rngs::OsRng,
                ResetReason::Requested,
                |outcome, key| {
                    pin = outcome.pin.clone();
                    Ok::<_, std::convert::Infallible>(OutgoingMail {
                        recipient: "alice@example.org".into(),
                        message: format!(
                            "Message-ID: <{key}@umws>\r\nSubject: copied PIN mail\r\n\r\nqueued\r\n"
                        )
                        .into_bytes(),
                    })
                },
            )
            .unwrap();
        pins.push(pin);
        queued_keys.push(queued.key);
    }
    let audio: Vec<u8> = (0..16_000u32).map(|i| (i % 251) as u8).collect();
    let message = store
        .add_voice_message(
            alice,
            NewVoiceMessage {
                calling_number: Some("+4930123"),
                duration_ms: 1000,
                audio: &audio,
            },
        )
        .unwrap();
    let dropped = store
        .add_voice_message(
            alice,
            NewVoiceMessage {
                calling_number: None,
                duration_ms: 500,
                audio: &audio[..8000],
            },
        )
        .unwrap();
    assert!(store.delete_voice_message(alice, dropped.id).unwrap());
    let greeting = vec![7u8; 3200];
    store
        .set_greeting(alice, GreetingType::NormalCustom, &greeting)
        .unwrap();
    Populated {
        pins,
        entry_id: message.entry_id,
        audio,
        greeting,
        queued_keys,
    }
}

#[test]
fn a_copied_store_is_served_from_postgres_as_it_was() {
    let db = database();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let old = populate(&dir);
    let sqlite = Store::open(&dir).unwrap();
    let sqlite_alice = sqlite.mailbox("alice").unwrap().unwrap();
    let guid = sqlite.store_guid().unwrap();
    drop(sqlite);

    let (code, out) = umws(&[
        "store",
        "copy",
        "--from-data",
        path(&dir),
        "--to-database",
        &db.url,
    ]);
    assert_eq!(code, 0, "{out}");
    for line in [
        "mailboxes\t2",
        "policies\t2",
        "pin_history\t1",
        "pin_resets\t2",
        "outbox\t2",
        "voice_messages\t1",
        "greetings\t1",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    assert!(
        !out.contains(&db.url),
        "the URL (with its password) is not shown: {out}"
    );

    // The records, as the PostgreSQL store reads them.
    let pg = Store::open_postgres(&db.url, &dir).unwrap();
    let alice = pg.mailbox("ALICE").unwrap().unwrap();
    assert_eq!(alice, sqlite_alice, "every field, the credential stamp too");
    assert_eq!(alice.policy.min_pin_length, 7);
    assert_eq!(pg.store_guid().unwrap(), guid);
    let pins: Vec<&str> = old.pins.iter().map(String::as_str).collect();
    assert!(pg.match_pin_record(alice.id, &pins).unwrap().is_exact());
    assert_eq!(pg.pin_changes(alice.id).unwrap(), 2);
    assert_eq!(
        pg.greeting(alice.id, GreetingType::NormalCustom).unwrap(),
        Some(old.greeting.clone())
    );
    assert_eq!(pg.outbox_len().unwrap(), 2);
    // The deleted message's id is not given again: the sequence continues after it.
    let next = pg
        .add_voice_message(
            alice.id,
            NewVoiceMessage {
                calling_number: None,
                duration_ms: 10,
                audio: &old.audio[..160],
            },
        )
        .unwrap();
    assert_eq!(next.id.0, 3, "ids 1 and 2 were SQLite's");
    assert!(pg.remove_voice_message(next.id).is_ok());
    drop(pg);

    // The old PIN, the old entry id, the old password, served from PostgreSQL.
    let (code, out) = umws(&[
        "pin",
        "check",
        "--data",
        path(&dir),
        "--database",
        &db.url,
        "--user",
        "alice",
        "--pin",
        &old.pins[1],
    ]);
    assert_eq!(code, 0, "the PIN set before the copy is accepted: {out}");
    let wav = tmp.path().join("message.wav");
    let (code, out) = umws(&[
        "voicemail",
        "get",
        "--data",
        path(&dir),
        "--database",
        &db.url,
        "--user",
        "alice",
        "--entry-id",
        &old.entry_id,
        "--out",
        path(&wav),
    ]);
    assert_eq!(code, 0, "the entry id made before the copy is found: {out}");
    let wav = std::fs::read(&wav).unwrap();
    assert!(
        wav.ends_with(&old.audio),
        "the WAV holds the copied audio ({} bytes)",
        wav.len()
    );

    let server = Serve::start_with(&dir, &["--database", &db.url]);
    // The mails queued in SQLite before the copy are delivered from PostgreSQL's outbox.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let mails = maildir_mails(&dir, "alice");
            old.queued_keys
                .iter()
                .all(|key| mails.iter().any(|(_, text)| text.contains(key.as_str())))
        }),
        "the queued mail is delivered: {:?}",
        maildir_mails(&dir, "alice")
    );
    assert_eq!(
        try_reset_pin(&server.base, "bob", "bob-pw"),
        Sent::Status(200)
    );
    assert_eq!(
        try_reset_pin(&server.base, "bob", "wrong"),
        Sent::Status(401),
        "a wrong password is still refused"
    );
    drop(server);

    // A mail queued by a PostgreSQL instance, its spool file in the shared data directory.
    let pg = Store::open_postgres(&db.url, &dir).unwrap();
    let bob = pg.mailbox("bob").unwrap().unwrap().id;
    let queued = pg
        .reset_pin_queued(
            bob,
            &mut rand::rngs::OsRng,
            ResetReason::Requested,
            |_, key| {
                Ok::<_, std::convert::Infallible>(OutgoingMail {
                    recipient: "bob@example.org".into(),
                    message: format!("Message-ID: <{key}@umws>\r\n\r\nqueued\r\n").into_bytes(),
                })
            },
        )
        .unwrap();
    drop(pg);
    let spool_file = dir
        .join(umws::store::SPOOL_DIR)
        .join(format!("{}.eml", queued.key));
    assert!(spool_file.is_file());

    // A second copy into the same (now full) database is refused, and changes nothing: not
    // the database, and not the spool of the PostgreSQL instances (which the SQLite store,
    // whose outbox does not name that mail, would sweep if it were opened).
    let (code, out) = umws(&[
        "store",
        "copy",
        "--from-data",
        path(&dir),
        "--to-database",
        &db.url,
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("the target database is not empty"), "{out}");
    assert!(out.contains("rows in mailboxes"), "{out}");
    assert!(spool_file.is_file(), "the queued mail's spool file is kept");
    let pg = Store::open_postgres(&db.url, &dir).unwrap();
    assert_eq!(pg.mailboxes().unwrap().len(), 2);
    assert_eq!(pg.outbox_pending(0, 10).unwrap().len(), 1);
}

#[test]
fn bad_targets_and_sources_are_refused_clearly() {
    let db = database();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    populate(&dir);
    let copy = |from: &Path, url: &str| {
        umws(&[
            "store",
            "copy",
            "--from-data",
            path(from),
            "--to-database",
            url,
        ])
    };

    let (code, out) = copy(&dir, "mysql://u:secret@127.0.0.1/db");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("invalid database URL: must begin with postgres://"),
        "{out}"
    );
    assert!(!out.contains("secret"), "{out}");

    // Nothing listens on the port of a listener just closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, out) = copy(&dir, &format!("postgres://u:secret@127.0.0.1:{port}/db"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot reach the database"), "{out}");
    assert!(!out.contains("secret"), "{out}");

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, out) = copy(&empty, &db.url);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("holds no SQLite store"), "{out}");
    assert!(!empty.join(umws::store::sqlite::DATABASE_FILE).exists());

    // A database with a mailbox of its own is refused, and keeps only that mailbox.
    let other = tmp.path().join("other");
    let (code, out) = umws(&[
        "mailbox",
        "add",
        "--data",
        path(&other),
        "--database",
        &db.url,
        "--user",
        "carol",
        "--password",
        "pw",
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = copy(&dir, &db.url);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("the target database is not empty"), "{out}");
    let pg = Store::open_postgres(&db.url, &other).unwrap();
    let users: Vec<String> = pg
        .mailboxes()
        .unwrap()
        .into_iter()
        .map(|m| m.user)
        .collect();
    assert_eq!(users, ["carol"]);
}
