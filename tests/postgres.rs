//! umws on PostgreSQL, end to end: the command line and `umws serve` with `--database`, against
//! a real PostgreSQL server (the private test cluster of `common::postgres`, or
//! `UMWS_TEST_DATABASE_URL`), each test in a database of its own.

mod common;

use std::process::Command;
use std::time::Duration;

use common::postgres::{liveness_locks, Stopped, TestDatabase};
use common::{
    maildir_mails, pin_in_mail, try_reset_pin, umws_in, wait_until, Sent, Serve, MANY_RESETS,
};
use umws::store::Store;

fn database() -> TestDatabase {
    common::postgres::test_database(&common::test_env_dir(), common::apt_install)
}

/// `url` without its password (`postgres://user:password@...` to `postgres://user@...`), and
/// the password.
fn split_password(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.split_once('@').unwrap();
    let (user, password) = userinfo.split_once(':').unwrap();
    (format!("{scheme}://{user}@{host}"), password.to_owned())
}

/// `umws pin check --database` exit code.
fn pin_check(data: &std::path::Path, url: &str, user: &str, pin: &str) -> i32 {
    umws_in_code(
        data,
        &["pin", "check"],
        &["--database", url, "--user", user, "--pin", pin],
    )
}

/// `umws WORDS --data DATA REST`, returning the exit code.
fn umws_in_code(data: &std::path::Path, words: &[&str], rest: &[&str]) -> i32 {
    Command::new(env!("CARGO_BIN_EXE_umws"))
        .args(words)
        .arg("--data")
        .arg(data)
        .args(rest)
        .env("UMWS_LOG", "warn")
        .output()
        .unwrap()
        .status
        .code()
        .unwrap_or(-1)
}

/// `umws mailbox add --database URL` of `user` with `password`, which must succeed.
fn add_mailbox(data: &std::path::Path, url: &str, user: &str, password: &str) {
    umws_in(
        data,
        &["mailbox", "add"],
        &["--database", url, "--user", user, "--password", password],
        0,
    );
}

/// The PostgreSQL store of `url` as the tests read it.
fn open(url: &str, data: &std::path::Path) -> Store {
    Store::open_postgres(url, data).unwrap()
}

#[test]
fn serve_resets_a_pin_whose_mail_pin_check_accepts() {
    let db = database();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("data");
    // The password from PGPASSWORD rather than the URL.
    let (bare_url, password) = split_password(&db.url);
    let out = Command::new(env!("CARGO_BIN_EXE_umws"))
        .args(["mailbox", "add", "--data"])
        .arg(&dir)
        .args(["--database", &bare_url, "--user", "One", "--password", "pw"])
        .env("PGPASSWORD", &password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The mailbox is in the database, not in a SQLite file of the data directory.
    assert!(!dir.join(umws::store::sqlite::DATABASE_FILE).exists());
    let store = open(&db.url, &dir);
    let id = store.mailbox("one").unwrap().unwrap().id;

    let server = Serve::start_with(&dir, &["--database", &db.url]);
    assert_eq!(try_reset_pin(&server.base, "one", "pw"), Sent::Status(200));
    assert!(
        wait_until(Duration::from_secs(30), || maildir_mails(&dir, "one").len()
            == 1),
        "the PIN mail arrives"
    );
    assert!(!dir.join(umws::store::sqlite::DATABASE_FILE).exists());
    let mails = maildir_mails(&dir, "one");
    let pin = pin_in_mail(&mails[0].1);
    assert_eq!(store.pin_changes(id).unwrap(), 1);
    assert!(store.match_pin_record(id, &[&pin]).unwrap().is_exact());
    assert_eq!(
        pin_check(&dir, &db.url, "one", &pin),
        0,
        "the mailed PIN is accepted"
    );
    assert_eq!(
        pin_check(&dir, &db.url, "one", "000000"),
        1,
        "a wrong one is not"
    );
    // Without --database the command reads the (empty) SQLite store of the data directory.
    assert_eq!(
        umws_in_code(&dir, &["pin", "check"], &["--user", "one", "--pin", &pin]),
        1
    );
    assert_eq!(
        store.mailbox("one").unwrap().unwrap().failed_logon_count,
        1,
        "the wrong PIN was counted in the database"
    );
    drop(server);
}

/// Clients spread over three instances on one database, resetting one mailbox: the instances
/// serialise the resets (row lock), so the PIN record is exactly the mailed PINs in order.
#[test]
fn three_instances_serialize_resets_of_one_mailbox() {
    const CLIENTS: usize = 6;
    const RESETS_PER_CLIENT: usize = 3;
    let db = database();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    add_mailbox(dir, &db.url, "one", "pw");
    umws_in(
        dir,
        &["policy", "set"],
        &[
            "--database",
            &db.url,
            "--name",
            "Default",
            "--pin-history-count",
            "20",
        ],
        0,
    );
    let mut args = vec!["--database", db.url.as_str()];
    args.extend(MANY_RESETS);
    let servers = [
        Serve::start_with(dir, &args),
        Serve::start_with(dir, &args),
        Serve::start_with(dir, &args),
    ];
    let answers: Vec<Sent> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let servers = &servers;
                s.spawn(move || {
                    (0..RESETS_PER_CLIENT)
                        .map(|r| try_reset_pin(&servers[(c + r) % servers.len()].base, "one", "pw"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    assert!(
        answers.iter().all(|a| *a == Sent::Status(200)),
        "{answers:?}"
    );
    let store = open(&db.url, dir);
    assert!(
        wait_until(Duration::from_secs(30), || store.outbox_len().unwrap() == 0),
        "every mail delivered"
    );
    drop(servers);

    let mails = maildir_mails(dir, "one");
    assert_eq!(
        mails.len(),
        CLIENTS * RESETS_PER_CLIENT,
        "one mail per reset"
    );
    let pins: Vec<String> = mails.iter().map(|(_, m)| pin_in_mail(m)).collect();
    let refs: Vec<&str> = pins.iter().map(String::as_str).collect();
    let id = store.mailbox("one").unwrap().unwrap().id;
    assert_eq!(store.pin_changes(id).unwrap(), pins.len() as u64);
    let record = store.match_pin_record(id, &refs).unwrap();
    assert!(
        record.is_exact(),
        "history + current != acknowledged PINs in mail order: {record:?}"
    );
    assert_eq!(pin_check(dir, &db.url, "one", pins.last().unwrap()), 0);
}

/// Instances started at once on an empty database: one migrates it while the others wait
/// (advisory lock), one makes the demo mailbox and the others find it; all serve.
#[test]
fn instances_start_at_once_on_an_empty_database() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let db = database();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut children: Vec<_> = dirs
        .iter()
        .map(|dir| {
            Command::new(env!("CARGO_BIN_EXE_umws"))
                .args(["serve", "--listen", "127.0.0.1:0", "--data"])
                .arg(dir.path())
                .args(["--database", &db.url])
                .env("UMWS_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut demo_created = 0;
    for child in &mut children {
        let stdout = child.stdout.take().unwrap();
        let lines: Vec<String> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.starts_with("stop with Ctrl-C"))
            .collect();
        let serving = lines
            .iter()
            .any(|l| l.starts_with("umws: serving the UM web service on "));
        if !serving {
            let _ = child.kill();
            let out = child.wait_with_output_stderr();
            panic!("an instance did not start: {lines:?}\n{out}");
        }
        demo_created += lines
            .iter()
            .filter(|l| l.starts_with("demo mailbox: user demo, password "))
            .count();
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(demo_created, 1, "one instance made the demo mailbox");
    let store = open(&db.url, dirs[0].path());
    assert_eq!(store.mailboxes().unwrap().len(), 1);
}

/// The stderr of a child that was killed.
trait StderrOf {
    fn wait_with_output_stderr(&mut self) -> String;
}

impl StderrOf for std::process::Child {
    fn wait_with_output_stderr(&mut self) -> String {
        use std::io::Read;
        let _ = self.wait();
        let mut text = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut text);
        }
        text
    }
}

/// `database` in the config file chooses the PostgreSQL store as `--database` does.
#[test]
fn the_config_file_names_the_database() {
    let db = database();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    add_mailbox(dir, &db.url, "two", "pw");
    let config = dir.join("umws.toml");
    std::fs::write(&config, format!("database = \"{}\"\n", db.url)).unwrap();
    let server = Serve::start_with(dir, &["--config", config.to_str().unwrap()]);
    assert_eq!(try_reset_pin(&server.base, "two", "pw"), Sent::Status(200));
    assert!(
        wait_until(Duration::from_secs(30), || maildir_mails(dir, "two").len()
            == 1),
        "the PIN mail arrives"
    );
    let pin = pin_in_mail(&maildir_mails(dir, "two")[0].1);
    assert_eq!(pin_check(dir, &db.url, "two", &pin), 0);
    assert!(!dir.join(umws::store::sqlite::DATABASE_FILE).exists());
}

/// Every command that takes `--data` works on the database with `--database`: mailbox list,
/// set-policy and unlock, policy set and show, voicemail deposit, list and get, greeting set and
/// get; and nothing of it lands in a SQLite store of the data directory.
#[test]
fn every_data_command_takes_the_database() {
    let db = database();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let url = db.url.as_str();
    let run = |words: &[&str], rest: &[&str]| {
        let mut all = vec!["--database", url];
        all.extend(rest);
        umws_in(dir, words, &all, 0)
    };
    run(
        &["mailbox", "add"],
        &["--user", "Carol", "--password", "pw", "--extension", "4711"],
    );
    run(
        &["policy", "set"],
        &[
            "--name",
            "Strict",
            "--max-logon-attempts",
            "2",
            "--logon-failures-before-pin-reset",
            "Unlimited",
            "--min-pin-length",
            "8",
        ],
    );
    assert!(run(&["policy", "show"], &["--name", "strict"]).contains("min_pin_length = 8"));
    run(
        &["mailbox", "set-policy"],
        &["--user", "carol", "--policy", "Strict"],
    );
    let store = open(url, dir);
    let id = store.mailbox("carol").unwrap().unwrap().id;
    let pin = store.reset_pin(id, &mut rand::rngs::OsRng).unwrap();
    assert_eq!(pin.len(), 8, "the policy set through the CLI applies");
    for _ in 0..2 {
        pin_check(dir, url, "carol", "00000000");
    }
    assert!(store.mailbox("carol").unwrap().unwrap().locked_out);
    let list = run(&["mailbox", "list"], &[]);
    assert!(
        list.contains("Carol") && list.contains("policy=Strict") && list.contains("locked_out"),
        "{list}"
    );
    run(&["mailbox", "unlock"], &["--user", "carol"]);
    assert_eq!(pin_check(dir, url, "carol", &pin), 0);

    // One second of a 440 Hz tone, 8 kHz 16-bit mono.
    let wav = dir.join("tone.wav");
    {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&wav, spec).unwrap();
        for i in 0..8000 {
            let t = f64::from(i) / 8000.0;
            w.write_sample((8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
    }
    let wav = wav.to_str().unwrap();
    let entry_id = run(
        &["voicemail", "deposit"],
        &["--user", "carol", "--wav", wav, "--from", "+14255550100"],
    );
    let entry_id = entry_id.lines().next().unwrap().trim().to_owned();
    assert_eq!(store.voice_messages(id).unwrap().len(), 1);
    assert!(run(&["voicemail", "list"], &["--user", "carol"]).contains(&entry_id));
    let out = dir.join("out.wav");
    run(
        &["voicemail", "get"],
        &[
            "--user",
            "carol",
            "--entry-id",
            &entry_id,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(hound::WavReader::open(&out).unwrap().len(), 8000);
    run(
        &["greeting", "set"],
        &["--user", "carol", "--type", "oof", "--wav", wav],
    );
    assert!(store
        .greeting(id, umws::store::voicemail::GreetingType::OofCustom)
        .unwrap()
        .is_some());
    let greeting = dir.join("greeting.wav");
    run(
        &["greeting", "get"],
        &[
            "--user",
            "carol",
            "--type",
            "oof",
            "--out",
            greeting.to_str().unwrap(),
        ],
    );
    assert_eq!(hound::WavReader::open(&greeting).unwrap().len(), 8000);
    assert!(!dir.join(umws::store::sqlite::DATABASE_FILE).exists());
}

/// `IsUMEnabled` through `base` as `user`: the HTTP status.
fn is_um_enabled(base: &str, user: &str, password: &str) -> u16 {
    let auth = common::basic(user, password);
    common::post_raw(
        base,
        "/UnifiedMessaging/Service.asmx",
        &[
            ("Content-Type", "text/xml; charset=utf-8"),
            ("Authorization", &auth),
        ],
        common::IS_UM_ENABLED_BODY.as_bytes(),
    )
    .0
}

/// An instance whose change listener's connection goes silent without closing (its server
/// process stopped, as behind a network partition) still sees a password change made
/// elsewhere, within the listener's heartbeat: it stops trusting its cache, and listens
/// again on a new connection. (Without the heartbeat the old password is answered 200 for
/// as long as the cache entry lives, five minutes.)
#[test]
fn a_change_reaches_an_instance_whose_listener_went_silent() {
    let db = database();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    add_mailbox(dir, &db.url, "one", "old");
    let server = Serve::start_with(dir, &["--database", db.url.as_str()]);
    assert_eq!(is_um_enabled(&server.base, "one", "old"), 200);
    // The listener's session is the one holding the instance's liveness lock.
    let mut locks = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            locks = liveness_locks(&db.url);
            locks.len() == 1
        }),
        "one liveness lock: {locks:?}"
    );
    let stopped = Stopped::new(locks[0].pid);

    let store = open(&db.url, dir);
    let id = store.mailbox("one").unwrap().unwrap().id;
    store.set_password(id, "new").unwrap();
    let mut last = 0;
    assert!(
        wait_until(Duration::from_secs(30), || {
            last = is_um_enabled(&server.base, "one", "old");
            last == 401
        }),
        "the old password is still answered {last} by the instance whose listener is silent"
    );
    assert_eq!(is_um_enabled(&server.base, "one", "new"), 200);
    // The instance listens again (a new session, a new liveness lock) while the old one is
    // still stopped.
    assert!(
        wait_until(Duration::from_secs(20), || {
            locks = liveness_locks(&db.url);
            locks.len() == 2
        }),
        "a second liveness lock: {locks:?}"
    );
    drop(stopped);
}
