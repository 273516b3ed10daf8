//! The `umws` command: clear errors for bad arguments, a missing data
//! directory and an unreachable server; mailbox and PIN commands.

use std::process::{Command, Output};

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
