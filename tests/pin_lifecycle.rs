//! The PIN lifecycle of the UM mailbox policy against a real server and the `umws` CLI:
//! named policies with validated ranges, the automatic reset after
//! `LogonFailuresBeforePINReset` failed phone logons, the lockout at `MaxLogonAttempts` (lifted
//! by ResetPIN or `umws mailbox unlock`), `PINLifetime` expiry, and `umws pin set`.

mod common;

use common::{pin_in_mail, try_reset_pin, umws_in, Sent, Server};

fn newest_pin(server: &Server) -> String {
    pin_in_mail(server.mails("demo").last().expect("a mail"))
}

fn reset(server: &Server) {
    assert_eq!(
        try_reset_pin(&server.base, "demo", &server.demo_password),
        Sent::Status(200)
    );
}

/// `umws pin check` on the demo mailbox: (exit code, output).
fn check(server: &Server, pin: &str, code: i32) -> String {
    umws_in(
        server.data_dir(),
        &["pin", "check"],
        &["--user", "demo", "--pin", pin],
        code,
    )
}

#[test]
fn policy_values_out_of_range_are_refused_naming_parameter_and_range() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    umws_in(
        dir,
        &["mailbox", "add"],
        &["--user", "u", "--password", "pw"],
        0,
    );
    let long_text = "x".repeat(513);
    for (flag, value, message) in [
        ("--min-pin-length", "3", "MinPINLength is 3, allowed: 4-24"),
        (
            "--min-pin-length",
            "25",
            "MinPINLength is 25, allowed: 4-24",
        ),
        (
            "--pin-lifetime",
            "0",
            "PINLifetime is 0, allowed: 1-999 or Unlimited",
        ),
        (
            "--pin-lifetime",
            "1000",
            "PINLifetime is 1000, allowed: 1-999 or Unlimited",
        ),
        (
            "--pin-history-count",
            "21",
            "PINHistoryCount is 21, allowed: 1-20",
        ),
        (
            "--max-logon-attempts",
            "1000",
            "MaxLogonAttempts is 1000, allowed: 1-999 or Unlimited",
        ),
        (
            "--logon-failures-before-pin-reset",
            "15",
            "LogonFailuresBeforePINReset is 15, allowed: below MaxLogonAttempts (15) or Unlimited",
        ),
        (
            "--reset-pin-text",
            &long_text,
            "ResetPINText has 513 characters, allowed: at most 512",
        ),
    ] {
        let out = umws_in(
            dir,
            &["policy", "set"],
            &["--name", "Default", flag, value],
            2,
        );
        assert!(out.contains(message), "{flag} {value}: {out}");
    }
    let out = umws_in(
        dir,
        &["policy", "set"],
        &["--name", "Default", "--pin-lifetime", "soon"],
        2,
    );
    assert!(out.contains("neither a number nor Unlimited"), "{out}");
    // Nothing was changed by the refusals.
    let shown = umws_in(dir, &["policy", "show"], &["--name", "default"], 0);
    assert!(shown.contains("min_pin_length = 6\n"), "{shown}");
    assert!(shown.contains("pin_lifetime_days = 60\n"), "{shown}");

    // A policy from a file, flags winning; Unlimited both ways.
    let file = dir.join("strict.toml");
    std::fs::write(
        &file,
        "min_pin_length = 8\nmax_logon_attempts = \"Unlimited\"\nreset_pin_text = \"Call 4100.\"\n",
    )
    .unwrap();
    umws_in(
        dir,
        &["policy", "set"],
        &[
            "--name",
            "Strict",
            "--file",
            file.to_str().unwrap(),
            "--pin-lifetime",
            "Unlimited",
            "--pin-history-count",
            "20",
        ],
        0,
    );
    let shown = umws_in(dir, &["policy", "show"], &["--name", "Strict"], 0);
    for line in [
        "min_pin_length = 8",
        "pin_lifetime_days = \"Unlimited\"",
        "pin_history_count = 20",
        "max_logon_attempts = \"Unlimited\"",
        "reset_pin_text = \"Call 4100.\"",
    ] {
        assert!(shown.contains(line), "{line} missing in {shown}");
    }
    let all = umws_in(dir, &["policy", "show"], &[], 0);
    assert!(
        all.contains("\"Default\"") && all.contains("\"Strict\""),
        "{all}"
    );
    umws_in(
        dir,
        &["mailbox", "set-policy"],
        &["--user", "U", "--policy", "strict"],
        0,
    );
    let out = umws_in(
        dir,
        &["mailbox", "set-policy"],
        &["--user", "u", "--policy", "nope"],
        2,
    );
    assert!(out.contains("no PIN policy named \"nope\""), "{out}");
    let list = umws_in(dir, &["mailbox", "list"], &[], 0);
    assert!(list.contains("policy=Strict"), "{list}");
}

#[test]
fn failed_logons_reset_the_pin_then_lock_out_until_unlock_or_reset_pin() {
    let server = Server::start();
    let dir = server.data_dir();
    umws_in(
        dir,
        &["policy", "set"],
        &[
            "--name",
            "Quick",
            "--logon-failures-before-pin-reset",
            "2",
            "--max-logon-attempts",
            "4",
        ],
        0,
    );
    umws_in(
        dir,
        &["mailbox", "set-policy"],
        &["--user", "demo", "--policy", "Quick"],
        0,
    );
    reset(&server);
    let first = newest_pin(&server);
    let wrong = if first == "480151" {
        "480152"
    } else {
        "480151"
    };

    check(&server, wrong, 1);
    let out = check(&server, wrong, 1);
    assert!(
        out.contains("after 2 failed logons the PIN was reset"),
        "{out}"
    );
    assert_eq!(server.mails("demo").len(), 2, "the automatic reset mailed");
    let second = newest_pin(&server);
    assert_ne!(second, first);
    check(&server, &first, 1); // the old PIN is gone (and that is failure 3)
    let out = check(&server, &second, 0);
    assert!(out.contains("must be changed"), "{out}");

    // The count was cleared: two more failures reset again, four lock out.
    check(&server, wrong, 1);
    let out = check(&server, wrong, 1);
    assert!(out.contains("the PIN was reset"), "{out}");
    check(&server, wrong, 1);
    let out = check(&server, wrong, 4);
    assert!(out.contains("locked out"), "{out}");
    assert_eq!(server.mails("demo").len(), 3);
    let third = newest_pin(&server);
    check(&server, &third, 4); // even the right PIN
    umws_in(dir, &["mailbox", "unlock"], &["--user", "demo"], 0);
    check(&server, &third, 0);

    // Locked again; a ResetPIN unlocks too.
    for _ in 0..3 {
        check(&server, wrong, 1);
    }
    check(&server, wrong, 4);
    reset(&server);
    check(&server, &newest_pin(&server), 0);
    let out = umws_in(dir, &["mailbox", "unlock"], &["--user", "nobody"], 2);
    assert!(out.contains("no mailbox named"), "{out}");
}

#[test]
fn pin_set_applies_the_policy_rules_and_clears_must_change() {
    let server = Server::start();
    let dir = server.data_dir();
    reset(&server);
    let pin = newest_pin(&server);
    let set = |old: &str, new: &str, code: i32| {
        umws_in(
            dir,
            &["pin", "set"],
            &["--user", "demo", "--old", old, "--new", new],
            code,
        )
    };
    // The demo mailbox has extension 12345.
    for (new, rule) in [
        ("2468", "MinPINLength"),
        ("777777", "AllowCommonPatterns"),
        ("456789", "AllowCommonPatterns"),
        ("1234590", "the extension rule"),
        ("12a456", "digits-only"),
        (&*"5".repeat(25), "the maximum PIN length"),
        (&*pin, "PINHistoryCount"),
    ] {
        let out = set(&pin, new, 5);
        assert!(out.contains(rule), "{new}: {out}");
        assert!(out.contains("PIN not changed"), "{out}");
    }
    let out = set("000000", "480151", 1);
    assert!(out.contains("PIN not changed"), "{out}");
    set(&pin, "480151", 0);
    let out = check(&server, "480151", 0);
    assert_eq!(out.trim(), "PIN accepted", "no longer must-change");
    let out = set("480151", &pin, 5);
    assert!(
        out.contains("PINHistoryCount"),
        "the reset PIN is in the history: {out}"
    );

    // A changed policy applies at the next change.
    umws_in(
        dir,
        &["policy", "set"],
        &["--name", "Default", "--min-pin-length", "8"],
        0,
    );
    let out = set("480151", "5803917", 5);
    assert!(out.contains("MinPINLength"), "{out}");
    set("480151", "58039172", 0);

    // An expired PIN is reported as such (exit 3) and can still be changed.
    let db = rusqlite::Connection::open(dir.join("umws.sqlite3")).unwrap();
    db.execute(
        "UPDATE mailboxes SET pin_set_at = pin_set_at - 61 * 86400 WHERE user_key = 'demo'",
        [],
    )
    .unwrap();
    let out = check(&server, "58039172", 3);
    assert!(out.contains("expired"), "{out}");
    set("58039172", "69150283", 0);
    check(&server, "69150283", 0);
}

/// The reset mail is a MIME message that Python's `email` package (a parser that is not ours)
/// reads back without defects: `MIME-Version: 1.0`, one `text/plain` part in UTF-8, the
/// policy's non-ASCII `ResetPINText` decoded intact, and the PIN that `umws pin check` accepts.
#[test]
fn the_reset_mail_is_mime_that_a_standard_parser_reads_back() {
    let server = Server::start();
    let text = "Llame al servicio de asistencia técnica (¿olvidó su PIN?) ✓";
    umws_in(
        server.data_dir(),
        &["policy", "set"],
        &["--name", "Default", "--reset-pin-text", text],
        0,
    );
    reset(&server);
    let mail = server.mails("demo").pop().expect("a mail");

    let script = r#"
import email, email.policy, sys
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
print("mime-version:", m["MIME-Version"])
print("type:", m.get_content_type(), m.get_content_charset())
print("multipart:", m.is_multipart())
print("defects:", len(m.defects) + sum(len(p.defects) for p in m.walk()))
sys.stdout.write("--body--\n" + m.get_content())
"#;
    let mut child = common::python()
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the test virtual environment's python");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(mail.as_bytes())
        .expect("write the mail");
    let out = child.wait_with_output().expect("python runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (head, body) = stdout.split_once("--body--\n").expect("a body");
    for line in [
        "mime-version: 1.0",
        "type: text/plain utf-8",
        "multipart: False",
        "defects: 0",
    ] {
        assert!(
            head.contains(line),
            "missing {line:?} in\n{head}\nmail:\n{mail}"
        );
    }
    assert!(body.contains(text), "ResetPINText not intact in\n{body}");
    let out = check(&server, &pin_in_mail(body), 0);
    assert!(out.contains("PIN accepted"), "{out}");
}
