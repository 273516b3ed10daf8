//! The `umws` command: clear errors for bad arguments, a missing data
//! directory and an unreachable server; mailbox and PIN commands; `umws client` against a
//! real server.

mod common;

use std::process::{Command, Output};

use common::{pin_check, pin_in_mail, Server};

fn umws(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_umws"))
        .args(args)
        .env_remove("UMWS_PASSWORD")
        .output()
        .expect("run umws")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = umws(&["serve", "--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'not-an-address'"),
        "{}",
        stderr(&out)
    );
    let out = umws(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = umws(&["client", "set-oof-status", "--status", "perhaps"]);
    assert_eq!(out.status.code(), Some(2));
    let out = umws(&["client", "is-um-enabled", "--user", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--user and --password go together"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plain_http_off_loopback_needs_an_explicit_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let out = umws(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--allow-plain-http"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_data_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = umws(&[
        "pin",
        "check",
        "--data",
        missing.to_str().unwrap(),
        "--user",
        "a",
        "--pin",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    assert!(
        err.contains("umws mailbox add --data DIR") && !err.contains("Store::"),
        "the hint names a command, not the Rust API: {err}"
    );
    assert!(
        !missing.exists(),
        "pin check never creates a data directory"
    );
}

#[test]
fn an_unreachable_server_is_reported() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/UnifiedMessaging/Service.asmx");
    let out = umws(&[
        "client",
        "is-um-enabled",
        "--url",
        &url,
        "--user",
        "a",
        "--password",
        "b",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot reach the server"),
        "{}",
        stderr(&out)
    );
    let out = umws(&["client", "is-um-enabled", "--url", "ftp://x/y"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid endpoint URL"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn mailboxes_are_added_listed_and_refused_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let out = umws(&[
        "mailbox",
        "add",
        "--data",
        d,
        "--user",
        "Alice",
        "--password",
        "pw",
        "--extension",
        "4711",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = umws(&[
        "mailbox",
        "add",
        "--data",
        d,
        "--user",
        "alice",
        "--password",
        "pw",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    let out = umws(&["mailbox", "list", "--data", d]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("Alice\tum=true\textension=4711"), "{list}");
    assert!(!list.contains("pw"), "no secret in the listing");
    // No PIN yet: refused.
    let out = umws(&[
        "pin", "check", "--data", d, "--user", "alice", "--pin", "123456",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

/// Every kind of `umws client` answer against a real `umws serve`: values printed, settings
/// that round-trip, ResetPIN's mail, an application fault (exit 1, with its exception name),
/// and wrong credentials (exit 2, said plainly).
#[test]
fn the_client_command_talks_to_a_real_server() {
    let server = Server::start();
    let url = server.url();
    let client = |op: &[&str], password: &str| {
        let mut args = vec!["client"];
        args.extend(op);
        args.extend(["--url", &url, "--user", "demo", "--password", password]);
        let out = umws(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), text, stderr(&out))
    };
    let ok = |op: &[&str]| {
        let (code, out, err) = client(op, &server.demo_password);
        assert_eq!(code, Some(0), "{op:?}: {out}{err}");
        out
    };

    assert_eq!(ok(&["is-um-enabled"]).trim(), "true");
    ok(&["set-oof-status", "--status", "true"]);
    ok(&[
        "set-play-on-phone-dial-string",
        "--dial-string",
        "+1 425 555 0199",
    ]);
    ok(&["set-missed-call-notification-enabled", "--status", "false"]);
    let props = ok(&["get-um-properties"]);
    for line in [
        "OofStatus: true",
        "MissedCallNotificationEnabled: false",
        "PlayOnPhoneDialString: +1 425 555 0199",
    ] {
        assert!(props.lines().any(|l| l == line), "{line:?} in\n{props}");
    }
    // Leaving the value out clears it.
    ok(&["set-play-on-phone-dial-string"]);
    let props = ok(&["get-um-properties"]);
    assert!(
        props.lines().any(|l| l == "PlayOnPhoneDialString: "),
        "{props}"
    );

    assert!(ok(&["reset-pin"]).starts_with("ok"));
    let mails = server.mails("demo");
    assert_eq!(mails.len(), 1);
    assert_eq!(
        pin_check(server.data_dir(), "demo", &pin_in_mail(&mails[0])),
        0
    );

    // An application fault: exit 1, code and exception named.
    let (code, _, err) = client(
        &["get-call-info", "--call-id", "bm90IGEgY2FsbA=="],
        &server.demo_password,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("SOAP fault"), "{err}");
    assert!(err.contains("exception: InvalidCallIdException"), "{err}");

    // Wrong credentials: exit 2 and a plain sentence, no server internals.
    let (code, out, err) = client(&["is-um-enabled"], "not-the-password");
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("did not accept the user name and password"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
}
