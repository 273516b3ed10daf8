//! The data directory is private to the service's user: with the usual
//! umask 022, after `umws mailbox add`, `umws serve` and ResetPINs, every directory under the
//! data directory is `0700` and every file `0600`; modes an older version left wider are
//! tightened at start; a data directory the group or others may write to is refused.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{try_reset_pin, wait_until, Sent, Serve};

/// Every entry under `dir` (not following links) with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        out.push((
            entry.path(),
            meta.is_dir(),
            meta.permissions().mode() & 0o7777,
        ));
        if meta.is_dir() {
            out.extend(modes(&entry.path()));
        }
    }
    out
}

/// Panics naming every entry under `dir` (and `dir` itself) that anyone but the owner may
/// read, write or enter.
fn assert_private(dir: &Path) {
    let top = std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777;
    let mut open: Vec<String> = modes(dir)
        .into_iter()
        .filter(|(_, is_dir, mode)| *mode != if *is_dir { 0o700 } else { 0o600 })
        .map(|(path, _, mode)| format!("{} {mode:04o}", path.display()))
        .collect();
    if top != 0o700 {
        open.push(format!("{} {top:04o}", dir.display()));
    }
    assert!(
        open.is_empty(),
        "not private to the owner:\n{}",
        open.join("\n")
    );
}

/// `umws` with `args` under umask 022; panics unless it succeeds.
fn umws_022(args: &[&str]) {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_umws"))
        .args(args)
        .env("UMWS_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn nothing_under_the_data_directory_is_readable_by_others_after_serve_and_resets() {
    let parent = tempfile::tempdir().unwrap();
    // A data directory the commands create themselves, under umask 022.
    let data = parent.path().join("umws-data");
    let d = data.to_str().unwrap();
    umws_022(&[
        "mailbox",
        "add",
        "--data",
        d,
        "--user",
        "alice",
        "--password",
        "pw",
    ]);
    umws_022(&[
        "mailbox",
        "add",
        "--data",
        d,
        "--user",
        "bob",
        "--password",
        "pw",
    ]);
    assert_private(&data);

    // ResetPINs: Maildirs, mails, the spool, the database's side files.
    let server = Serve::spawn(&data, &[], Some("022")).unwrap();
    for user in ["alice", "bob", "alice"] {
        assert_eq!(try_reset_pin(&server.base, user, "pw"), Sent::Status(200));
    }
    let mails = |user: &str| {
        std::fs::read_dir(data.join("mail").join(user).join("new"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(30), || mails("alice") == 2
        && mails("bob") == 1));
    // While it runs (the database's -wal and -shm exist now) ...
    assert!(data.join("umws.sqlite3-wal").exists());
    assert_private(&data);
    server.kill9();
    // ... and after.
    assert_private(&data);

    // The demo mailbox of `umws serve` on an empty store, under umask 022 too.
    let demo_data = parent.path().join("demo-data");
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_umws"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sip-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(&demo_data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = out;
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    assert!(lines.any(|l| l.unwrap().starts_with("stop with Ctrl-C")));
    assert!(demo_data.join("demo-credentials.txt").is_file());
    assert_private(&demo_data);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn modes_left_open_by_an_older_version_are_tightened_at_start() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    umws_022(&[
        "mailbox",
        "add",
        "--data",
        dir.to_str().unwrap(),
        "--user",
        "carol",
        "--password",
        "pw",
    ]);
    // What an older version (or a restore with a careless umask) leaves behind.
    let server = Serve::start(dir);
    assert_eq!(
        try_reset_pin(&server.base, "carol", "pw"),
        Sent::Status(200)
    );
    server.kill9();
    let maildir = dir.join("mail").join("carol");
    let mail = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(dir.join("demo-credentials.txt"), "user=demo\npassword=x\n").unwrap();
    std::fs::write(dir.join("cache.bin"), "cached").unwrap();
    for file in [
        dir.join("umws.sqlite3"),
        dir.join("umws.sqlite3-wal"),
        dir.join("umws.sqlite3-shm"),
        dir.join("demo-credentials.txt"),
        dir.join("cache.bin"),
        mail.clone(),
    ] {
        if file.exists() {
            chmod(&file, 0o644);
        }
    }
    for sub in ["new", "cur", "tmp"] {
        chmod(&maildir.join(sub), 0o755);
    }
    chmod(&maildir, 0o755);
    chmod(&dir.join("mail"), 0o755);
    chmod(dir, 0o755);
    assert_eq!(
        std::fs::metadata(dir.join("umws.sqlite3"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );

    let server = Serve::spawn(dir, &[], Some("022")).unwrap();
    assert_private(dir);
    drop(server);

    // The store alone (as `umws pin check` opens it) tightens the database and the data
    // directory too.
    chmod(&dir.join("umws.sqlite3"), 0o644);
    chmod(dir, 0o711);
    umws::store::Store::open(dir).unwrap();
    let db = std::fs::metadata(dir.join("umws.sqlite3")).unwrap();
    assert_eq!(db.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn a_data_directory_others_may_write_to_is_refused() {
    for mode in [0o777, 0o770, 0o1777, 0o702] {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path();
        chmod(dir, mode);
        let err = match Serve::spawn(dir, &[], None) {
            Ok(_) => panic!("served a data directory with mode {mode:04o}"),
            Err(err) => err,
        };
        assert!(
            err.contains("is writable by its group or by others")
                && err.contains(&format!("{mode:04o}"))
                && err.contains("chmod 700"),
            "{err}"
        );
        // Nothing was created in it, and its mode is left as it was.
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0, "{mode:04o}");
        assert_eq!(
            std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777,
            mode
        );
        let out = Command::new(env!("CARGO_BIN_EXE_umws"))
            .args(["mailbox", "list", "--data"])
            .arg(dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        chmod(dir, 0o700);
    }
}
