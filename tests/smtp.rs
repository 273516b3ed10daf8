//! PIN mails through a real SMTP relay on loopback: Python's `aiosmtpd` run by
//! `tests/smtp/sink.py`, which writes every accepted message into a directory.
//!
//! * relay up: ResetPIN answers 200 and the mail arrives, addressed to the mailbox, with a PIN
//!   that `umws pin check` accepts;
//! * relay down: ResetPIN still answers 200, the mail stays queued; relay back: delivered;
//! * a mail queued when the server stops is delivered once by the restarted server;
//! * STARTTLS required against a relay without it: queued, and the log does not hold the PIN.
//!
//! The sink runs on the test virtual environment's Python (made from `tests/requirements.txt` by
//! `tests/common/env.rs` on first use); set `UMWS_SKIP_SMTP=1` to skip these tests.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{pin_check, pin_in_mail, try_reset_pin, umws_in, wait_until, Sent};
use umws::store::Store;

const USER: &str = "alice";
const PASSWORD: &str = "alice-pw";
const EMAIL: &str = "alice@example.org";

/// Short retries, so that a relay coming back is noticed within a second or two.
const FAST_RETRIES: &str = "[outbox]\nretry_base_ms = 200\nretry_max_ms = 1000\n";

/// Whether the relay tests run: `false` (with a message) when `UMWS_SKIP_SMTP=1`; otherwise
/// provides the test virtual environment with aiosmtpd (see `tests/common/env.rs`), panicking
/// with what to do when it cannot.
fn smtp_available() -> bool {
    if std::env::var("UMWS_SKIP_SMTP").as_deref() == Ok("1") {
        eprintln!("skipping the SMTP tests (UMWS_SKIP_SMTP=1)");
        return false;
    }
    common::python_exe();
    true
}

/// A free loopback port (nothing listens on it once this returns).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The aiosmtpd sink: a Python process, killed on drop.
struct Sink {
    child: Child,
}

impl Sink {
    /// Starts the sink on `port`, writing messages into `dir`, and waits until it listens.
    fn start(port: u16, dir: &Path) -> Sink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/sink.py");
        let mut child = common::python()
            .arg(script)
            .arg(port.to_string())
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the aiosmtpd sink");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the sink did not start");
        Sink { child }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages the sink received, by arrival.
fn received(dir: &Path) -> Vec<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// A `umws serve --no-demo` on a data directory, with its log; killed on drop.
struct Umws {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Umws {
    fn start(data: &Path, extra: &[&str]) -> Umws {
        let mut child = Command::new(env!("CARGO_BIN_EXE_umws"))
            .args([
                "serve",
                "--no-demo",
                "--listen",
                "127.0.0.1:0",
                "--sip-listen",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(data)
            .args(extra)
            .env("UMWS_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn umws serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!(
                    "server exited before printing its address:\n{}",
                    log.lock().unwrap().join("\n")
                ),
            };
            if let Some(rest) = line.strip_prefix("umws: serving the UM web service on ") {
                let url = rest.trim();
                break url[..url.find("/UnifiedMessaging").unwrap()].to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Umws { child, base, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn reset_pin(&self) -> Sent {
        try_reset_pin(&self.base, USER, PASSWORD)
    }
}

impl Drop for Umws {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data directory with the mailbox `alice <alice@example.org>` and a config file.
fn setup(config: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    umws_in(
        &data,
        &["mailbox", "add"],
        &["--user", USER, "--password", PASSWORD, "--email", EMAIL],
        0,
    );
    let config_path = dir.path().join("umws.toml");
    std::fs::write(&config_path, config).unwrap();
    (dir, config_path)
}

fn outbox_len(data: &Path) -> u64 {
    Store::open(data).unwrap().outbox_len().unwrap()
}

/// The PIN in the one queued mail of the outbox.
fn queued_pin(data: &Path) -> String {
    let pending = Store::open(data).unwrap().outbox_pending(0, 10).unwrap();
    assert_eq!(pending.len(), 1);
    pin_in_mail(&String::from_utf8_lossy(&pending[0].message))
}

/// Checks a mail the sink received: envelope and header recipient, Message-ID from the outbox
/// key, and a PIN that is the mailbox's current one. Returns the Message-ID line.
fn check_mail(mail: &str, data: &Path) -> String {
    assert!(
        mail.contains(&format!("X-Envelope-To: {EMAIL}\r\n")),
        "{mail}"
    );
    assert!(mail.contains(&format!("To: {EMAIL}\r\n")), "{mail}");
    assert!(mail.contains("Subject: Your voice mail PIN has been reset"));
    let pin = pin_in_mail(mail);
    assert_eq!(pin_check(data, USER, &pin), 0, "the mailed PIN is accepted");
    mail.lines()
        .find(|l| l.starts_with("Message-ID: <"))
        .expect("Message-ID")
        .to_owned()
}

#[test]
fn relay_up_the_mail_arrives_with_a_working_pin() {
    if !smtp_available() {
        return;
    }
    let (dir, config) = setup("");
    let data = dir.path().join("data");
    let mails = dir.path().join("sink");
    let port = free_port();
    let _sink = Sink::start(port, &mails);
    let relay = format!("127.0.0.1:{port}");
    let server = Umws::start(
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "--smtp-relay",
            &relay,
            "--smtp-starttls",
            "opportunistic",
        ],
    );
    assert_eq!(server.reset_pin(), Sent::Status(200));
    // The reset delivers before answering when the relay is up.
    let got = received(&mails);
    assert_eq!(got.len(), 1, "{got:?}");
    check_mail(&got[0], &data);
    assert_eq!(outbox_len(&data), 0);
    assert!(
        got[0].contains("X-Envelope-From: umws@"),
        "envelope sender is the From address: {}",
        got[0]
    );
}

#[test]
fn relay_down_queues_and_answers_success_then_delivers_when_it_is_back() {
    if !smtp_available() {
        return;
    }
    let (dir, config) = setup(FAST_RETRIES);
    let data = dir.path().join("data");
    let mails = dir.path().join("sink");
    let port = free_port();
    let relay = format!("127.0.0.1:{port}");
    let server = Umws::start(
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "--smtp-relay",
            &relay,
            "--smtp-starttls",
            "off",
        ],
    );
    assert_eq!(server.reset_pin(), Sent::Status(200), "{}", server.log());
    assert_eq!(outbox_len(&data), 1, "the mail is queued");
    let pin = queued_pin(&data);
    // Retries fail while nothing listens.
    assert!(wait_until(Duration::from_secs(10), || {
        Store::open(&data).unwrap().outbox_pending(0, 1).unwrap()[0].attempts >= 3
    }));
    assert!(received(&mails).is_empty());

    let _sink = Sink::start(port, &mails);
    let back = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || outbox_len(&data) == 0),
        "not delivered after the relay came back:\n{}",
        server.log()
    );
    eprintln!("delivered {:?} after the relay came back", back.elapsed());
    // Nothing more arrives: one copy.
    std::thread::sleep(Duration::from_millis(500));
    let got = received(&mails);
    assert_eq!(got.len(), 1, "{got:?}");
    check_mail(&got[0], &data);
    assert_eq!(pin_in_mail(&got[0]), pin);
    let log = server.log();
    assert!(log.contains("will retry"), "{log}");
    assert!(!log.contains(&pin), "the log holds the PIN");
}

#[test]
fn a_mail_queued_at_shutdown_is_delivered_once_by_the_restarted_server() {
    if !smtp_available() {
        return;
    }
    let (dir, config) = setup(FAST_RETRIES);
    let data = dir.path().join("data");
    let mails = dir.path().join("sink");
    let port = free_port();
    let relay = format!("127.0.0.1:{port}");
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--smtp-relay",
        &relay,
        "--smtp-starttls",
        "off",
    ];
    let server = Umws::start(&data, &args);
    assert_eq!(server.reset_pin(), Sent::Status(200));
    assert_eq!(outbox_len(&data), 1);
    let pending = Store::open(&data).unwrap().outbox_pending(0, 1).unwrap();
    let key = pending[0].key.clone();
    drop(server);

    let _sink = Sink::start(port, &mails);
    let server = Umws::start(&data, &args);
    assert!(
        wait_until(Duration::from_secs(15), || outbox_len(&data) == 0),
        "{}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    drop(server);
    // And once more: nothing left to send.
    let server = Umws::start(&data, &args);
    std::thread::sleep(Duration::from_millis(500));
    drop(server);
    let got = received(&mails);
    assert_eq!(got.len(), 1, "exactly one copy: {got:?}");
    let message_id = check_mail(&got[0], &data);
    assert!(
        message_id.starts_with(&format!("Message-ID: <{key}@")),
        "Message-ID from the outbox key {key}: {message_id}"
    );
}

#[test]
fn starttls_required_without_starttls_keeps_the_mail_queued_and_the_pin_out_of_the_log() {
    if !smtp_available() {
        return;
    }
    let (dir, config) = setup(FAST_RETRIES);
    let data = dir.path().join("data");
    let mails = dir.path().join("sink");
    let port = free_port();
    let _sink = Sink::start(port, &mails);
    let relay = format!("127.0.0.1:{port}");
    // The default mode is "required".
    let server = Umws::start(
        &data,
        &["--config", config.to_str().unwrap(), "--smtp-relay", &relay],
    );
    assert_eq!(server.reset_pin(), Sent::Status(200));
    let pin = queued_pin(&data);
    assert!(wait_until(Duration::from_secs(10), || {
        Store::open(&data).unwrap().outbox_pending(0, 1).unwrap()[0].attempts >= 2
    }));
    assert!(received(&mails).is_empty(), "nothing sent in clear");
    assert_eq!(outbox_len(&data), 1);
    let log = server.log();
    assert!(
        log.contains("SMTP delivery failed"),
        "the failure is logged:\n{log}"
    );
    assert!(log.contains("STARTTLS"), "the cause is logged:\n{log}");
    assert!(!log.contains(&pin), "the log holds the PIN:\n{log}");
}

#[test]
fn smtp_flags_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::run_umws(&[
        "serve",
        "--data",
        dir.path().to_str().unwrap(),
        "--smtp-relay",
        "no-port",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST:PORT"));
    let out = common::run_umws(&[
        "serve",
        "--data",
        dir.path().to_str().unwrap(),
        "--smtp-starttls",
        "off",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--smtp-relay"));
}
