//! Issue 15, section 5, against real `umws` processes: the demo password is printed only when
//! the demo mailbox is created; user names are NFC-normalised and case-folded at every entry
//! point, and `:` is refused in new ones; ResetPIN is limited per mailbox, also under
//! concurrent requests.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{basic, post_raw, umws_in, Serve, RESET_PIN_BODY};

const PATH: &str = "/UnifiedMessaging/Service.asmx";

/// Starts `umws serve` (demo mailbox on) on `data`, reads its banner up to the last line,
/// stops it; returns (stdout banner, stderr).
fn serve_banner(data: &Path) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_umws"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sip-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .env("UMWS_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("stop with Ctrl-C") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    (banner, log)
}

#[test]
fn demo_password_is_printed_only_when_the_demo_mailbox_is_created() {
    let data = tempfile::tempdir().unwrap();
    let (first, _) = serve_banner(data.path());
    let password = first
        .lines()
        .find_map(|l| l.strip_prefix("demo mailbox: user demo, password "))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no demo password in\n{first}"))
        .to_owned();
    assert!(first.contains("--no-demo"), "{first}");
    let credentials = std::fs::read_to_string(data.path().join("demo-credentials.txt")).unwrap();
    assert!(credentials.contains(&format!("password={password}")));

    for _ in 0..2 {
        let (again, log) = serve_banner(data.path());
        assert!(
            !again.contains(&password) && !log.contains(&password),
            "the demo password was printed again:\n{again}"
        );
        assert!(
            again.contains("demo mailbox: user demo") && again.contains("demo-credentials.txt"),
            "{again}"
        );
    }
}

/// `umws mailbox add` of `user`; (exit code, stderr).
fn add(data: &Path, user: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_umws"))
        .args(["mailbox", "add", "--data"])
        .arg(data)
        .args(["--user", user, "--password", "pw"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A SOAP call as `user`; (status, body).
fn call(base: &str, user: &str, body: &str) -> (u16, String) {
    let auth = basic(user, "pw");
    let (status, _, body) = post_raw(
        base,
        PATH,
        &[
            ("Content-Type", "text/xml; charset=utf-8"),
            ("Authorization", &auth),
        ],
        body.as_bytes(),
    );
    (status, body)
}

#[test]
fn user_names_are_nfc_and_case_folded_and_colons_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let nfc = "j\u{fc}rgen";
    let nfd = "ju\u{308}rgen";
    assert_ne!(nfc, nfd);
    assert_eq!(add(dir, nfc).0, 0);
    // The NFD spelling, and another case of it, are the same mailbox.
    for other in [nfd, "JU\u{308}RGEN"] {
        let (code, err) = add(dir, other);
        assert_eq!(code, 2, "{other:?} was added as a second mailbox");
        assert!(err.contains("exists already"), "{err}");
    }
    // The Kelvin sign (U+212A) is canonically K: "\u{212A}ate" is "kate".
    assert_eq!(add(dir, "\u{212A}ate").0, 0);
    let (code, err) = add(dir, "kate");
    assert_eq!(code, 2, "kate and \\u{{212A}}ate are one mailbox");
    assert!(err.contains("exists already"), "{err}");

    // A colon can never log on (Basic credentials split at the first one): refused clearly.
    let (code, err) = add(dir, "ops:admin");
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid user name") && err.contains("contains ':'"),
        "{err}"
    );
    let list = umws_in(dir, &["mailbox", "list"], &[], 0);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(!list.contains("ops"), "{list}");

    // Logons: every spelling reaches the one mailbox.
    let server = Serve::start(dir);
    for user in [nfc, nfd, "J\u{dc}RGEN", "kate", "KATE", "\u{212A}ate"] {
        let (status, body) = call(&server.base, user, common::IS_UM_ENABLED_BODY);
        assert_eq!(status, 200, "{user:?}: {body}");
    }
    // The CLI looks names up the same way.
    umws_in(dir, &["mailbox", "unlock"], &["--user", nfd], 0);
}

/// A ResetPIN as `user`; (status, body).
fn reset(base: &str, user: &str) -> (u16, String) {
    call(base, user, RESET_PIN_BODY)
}

fn mails(dir: &Path, user: &str) -> usize {
    std::fs::read_dir(dir.join("mail").join(user).join("new"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn reset_pin_is_limited_per_mailbox_also_under_concurrent_requests() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    for user in ["steady", "burst", "other"] {
        assert_eq!(add(dir, user).0, 0);
    }
    let server = Serve::start(dir);

    // One after the other: five, then a fault that says why; the PIN stays as it was.
    for i in 0..5 {
        let (status, body) = reset(&server.base, "steady");
        assert_eq!(status, 200, "reset {i}: {body}");
    }
    let (status, body) = reset(&server.base, "steady");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("ResetPINException"), "{body}");
    assert!(
        body.contains("Too many PIN resets") && body.contains("at most 5 times per hour"),
        "{body}"
    );
    assert_eq!(mails(dir, "steady"), 5);

    // At once: twelve requests, five succeed.
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let requests: Vec<_> = (0..12)
            .map(|_| s.spawn(|| reset(&server.base, "burst")))
            .collect();
        requests.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    let limited = answers
        .iter()
        .filter(|(status, body)| *status == 500 && body.contains("Too many PIN resets"))
        .count();
    assert_eq!((ok, limited), (5, 7), "{answers:?}");
    assert_eq!(mails(dir, "burst"), 5);

    // Per mailbox: another one is not affected.
    let (status, body) = reset(&server.base, "other");
    assert_eq!(status, 200, "{body}");
    drop(server);

    // The limit is counted in the database: a restarted server (or another process) keeps it;
    // a higher configured limit allows more.
    let server = Serve::start(dir);
    assert_eq!(reset(&server.base, "steady").0, 500);
    drop(server);
    let server = Serve::start_with(dir, &["--max-pin-resets-per-hour", "6"]);
    assert_eq!(reset(&server.base, "steady").0, 200);
    assert_eq!(reset(&server.base, "steady").0, 500);
}
