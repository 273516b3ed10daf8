//! Local delivery into a Maildir per user, at `<data>/mail/<user>/`.
//!
//! The Maildir protocol: the message is written to `tmp/<unique>`, flushed to disk, renamed to
//! `new/<unique>`, and the `new` directory is flushed so that the rename survives a crash. The
//! unique name is `<secs>.<pid>_<counter>_<random>.<hostname>`. Messages are stored with LF
//! line endings, as local mail files are. A file a crash left in `tmp/` is removed by a later
//! delivery to the same Maildir once it is [`STALE_TMP_AGE`] old (the protocol's 36 hours).
//!
//! The directory name of a user is [`mailbox_dir_name`]: the case-folded user name with every
//! byte other than ASCII letters, digits, `-`, `_`, `@`, `+` and (not first) `.` written as
//! `%XX`. So `/`, `\`, NUL and a leading `.` (hence `..`) never reach the file system as such,
//! different names never share a directory, and names differing only in case do (as they name
//! the same mailbox).
//!
//! The Maildirs are private to the service's user, whatever the umask: every directory is
//! made `0700` (also one that exists with a wider mode) and every mail file is created `0600`
//! (see `crate::store::private`).
//!
//! A mail of the outbox gets the unique name [`queued_name`], derived from its outbox row alone
//! (`<created_at>.Q<row id>_<key>.umws`), so delivering it twice finds the first copy, in `new/`
//! or, once a mail reader has seen it, in `cur/` as `<name>:2,<flags>`. Such names sort in the
//! order the PIN changes were committed.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use lettre::Message;
use rand::Rng;

use super::{host_name, DeliveryReceipt, MailDelivery, MailError};
use crate::store::private::{private_dir, private_open_options};
use crate::store::{normalize_user, OutboxMail, StoreError};

/// The longest directory name [`mailbox_dir_name`] produces (file systems allow 255 bytes).
pub const MAX_DIR_NAME_LEN: usize = 200;

/// How old a file in `tmp/` must be before a delivery removes it as left over by a crash:
/// 36 hours, as the Maildir protocol says (no delivery takes that long).
pub const STALE_TMP_AGE: std::time::Duration = std::time::Duration::from_secs(36 * 60 * 60);

/// Counts deliveries of this process, for unique names.
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// The directory name of `user`'s Maildir (see the module docs). Refuses an empty name and one
/// whose encoding exceeds [`MAX_DIR_NAME_LEN`] bytes.
pub fn mailbox_dir_name(user: &str) -> Result<String, MailError> {
    let user = normalize_user(user);
    if user.is_empty() {
        return Err(MailError::InvalidUserName { reason: "empty" });
    }
    let mut name = String::with_capacity(user.len());
    for (i, b) in user.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'@' | b'+')
            || (b == b'.' && i > 0);
        if plain {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    if name.len() > MAX_DIR_NAME_LEN {
        return Err(MailError::InvalidUserName { reason: "too long" });
    }
    Ok(name)
}

/// A unique file name for one delivery: `<secs>.<pid>_<counter>_<random>.<hostname>`.
fn unique_name() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let counter = DELIVERIES.fetch_add(1, Ordering::Relaxed);
    let random: u64 = rand::thread_rng().gen();
    // host_name() holds only [A-Za-z0-9.-], so no '/' or ':' to escape.
    format!(
        "{secs}.{}_{counter}_{random:016x}.{}",
        std::process::id(),
        host_name()
    )
}

/// The Maildir unique name of a queued mail: `<created_at>.Q<id, 12 digits>_<key>.umws`. It
/// depends only on the outbox row, so a repeated delivery of the row finds its earlier copy.
/// The key is reduced to the characters a Maildir name may hold (it is a hex UUID anyway).
pub fn queued_name(mail: &OutboxMail) -> String {
    let key: String = mail
        .key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("{}.Q{:012}_{key}.umws", mail.created_at, mail.id)
}

/// The copy of the mail named `name` in the Maildir `dir`, in `new/` or (seen by a reader,
/// with flags) in `cur/`, if there is one.
fn find_copy(dir: &Path, name: &str) -> Result<Option<PathBuf>, MailError> {
    let new = dir.join("new").join(name);
    if new.exists() {
        return Ok(Some(new));
    }
    let cur = dir.join("cur");
    let entries = fs::read_dir(&cur).map_err(io_error("read", &cur))?;
    for entry in entries {
        let entry = entry.map_err(io_error("read", &cur))?;
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name == name
            || file_name
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(':'))
        {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

/// Turns the CRLF line endings of a formatted message into LF.
fn crlf_to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut iter = bytes.iter().peekable();
    while let Some(&b) = iter.next() {
        if b == b'\r' && iter.peek() == Some(&&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> MailError + 'a {
    move |source| MailError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Flushes a directory's entries to disk (a no-op where directories cannot be opened).
fn sync_dir(dir: &Path) -> Result<(), MailError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("sync", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates the directory `dir` `0700`, or makes an existing one `0700`.
fn make_private_dir(dir: &Path) -> Result<(), MailError> {
    private_dir(dir).map_err(|e| match e {
        StoreError::Private { path, source } => MailError::Io {
            op: "create",
            path,
            source,
        },
        other => MailError::Io {
            op: "create",
            path: dir.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

/// Creates `tmp` (which must not exist) `0600`, writes `bytes` into it and flushes it to disk.
fn write_synced(tmp: &Path, bytes: &[u8]) -> Result<(), MailError> {
    let mut file = private_open_options()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(io_error("create", tmp))?;
    file.write_all(bytes).map_err(io_error("write", tmp))?;
    file.sync_all().map_err(io_error("sync", tmp))
}

/// Removes the files in `tmp` last modified [`STALE_TMP_AGE`] ago or earlier: deliveries a
/// crash interrupted between writing and moving. Best effort: a file that cannot be read or
/// removed is left for the next delivery (the mail itself is still in the outbox until a
/// delivery succeeds).
fn remove_stale_tmp(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .ok()
            .filter(fs::Metadata::is_file)
            .and_then(|m| m.modified().ok())
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age >= STALE_TMP_AGE);
        if stale {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a stale file from a Maildir's tmp")
                }
                Err(error) => {
                    tracing::debug!(%error, file = %entry.path().display(), "cannot remove a stale Maildir tmp file")
                }
            }
        }
    }
}

/// A tree of per-user Maildirs under one root (`<data>/mail`).
#[derive(Clone, Debug)]
pub struct Maildir {
    root: PathBuf,
}

impl Maildir {
    /// Maildirs under `root`; each user's is `root/<mailbox_dir_name(user)>`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Maildirs under `<data_dir>/mail`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::new(data_dir.join("mail"))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The Maildir of `user` (which need not exist yet).
    pub fn user_dir(&self, user: &str) -> Result<PathBuf, MailError> {
        Ok(self.root.join(mailbox_dir_name(user)?))
    }

    /// Creates `cur`, `new` and `tmp` of `dir` where missing, flushing the parents of anything
    /// created; in an existing Maildir, removes what crashes left in `tmp`. The root, `dir`
    /// and its subdirectories are made `0700`, existing or not.
    fn ensure_maildir(&self, dir: &Path) -> Result<(), MailError> {
        let existed = dir.is_dir();
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_error("create", parent))?;
        }
        make_private_dir(&self.root)?;
        make_private_dir(dir)?;
        for sub in ["cur", "new", "tmp"] {
            make_private_dir(&dir.join(sub))?;
        }
        if existed {
            remove_stale_tmp(&dir.join("tmp"));
        } else {
            sync_dir(dir)?;
            sync_dir(&self.root)?;
        }
        Ok(())
    }

    /// Delivers an already formatted message (stored as given) into `user`'s `new/`.
    pub fn deliver_bytes(&self, user: &str, message: &[u8]) -> Result<DeliveryReceipt, MailError> {
        let dir = self.user_dir(user)?;
        self.ensure_maildir(&dir)?;
        let unique = unique_name();
        let tmp = dir.join("tmp").join(&unique);
        let new_dir = dir.join("new");
        let new = new_dir.join(&unique);
        let written = write_synced(&tmp, message)
            .and_then(|()| fs::rename(&tmp, &new).map_err(io_error("rename into", &new)));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(&new_dir)?;
        tracing::debug!(user, id = %unique, "mail delivered to Maildir");
        Ok(DeliveryReceipt {
            id: unique,
            path: Some(new),
        })
    }
}

impl Maildir {
    /// Delivers a mail of the outbox into `new/<queued_name>`, unless a copy of it is there
    /// already (in `new/` or `cur/`). The file is written to `tmp/`, flushed, hard-linked to
    /// its name in `new/` (a link that exists already means another delivery won the race),
    /// and `new/` is flushed.
    pub fn deliver_queued_mail(&self, mail: &OutboxMail) -> Result<DeliveryReceipt, MailError> {
        let dir = self.user_dir(&mail.user)?;
        self.ensure_maildir(&dir)?;
        let name = queued_name(mail);
        if let Some(path) = find_copy(&dir, &name)? {
            tracing::debug!(user = %mail.user, id = %name, "queued mail was delivered before");
            return Ok(DeliveryReceipt {
                id: name,
                path: Some(path),
            });
        }
        let tmp = dir.join("tmp").join(format!(
            "{name}.{}_{}",
            std::process::id(),
            DELIVERIES.fetch_add(1, Ordering::Relaxed)
        ));
        let new_dir = dir.join("new");
        let new = new_dir.join(&name);
        let written = write_synced(&tmp, &crlf_to_lf(&mail.message)).and_then(|()| {
            match fs::hard_link(&tmp, &new) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(MailError::Io {
                    op: "link into",
                    path: new.clone(),
                    source: e,
                }),
            }
        });
        let _ = fs::remove_file(&tmp);
        written?;
        sync_dir(&new_dir)?;
        tracing::debug!(user = %mail.user, id = %name, "queued mail delivered to Maildir");
        Ok(DeliveryReceipt {
            id: name,
            path: Some(new),
        })
    }
}

impl MailDelivery for Maildir {
    fn deliver(&self, user: &str, message: &Message) -> Result<DeliveryReceipt, MailError> {
        self.deliver_bytes(user, &crlf_to_lf(&message.formatted()))
    }

    fn deliver_queued(&self, mail: &OutboxMail) -> Result<DeliveryReceipt, MailError> {
        self.deliver_queued_mail(mail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::{default_from, reset_pin_message, ResetPinMailer};
    use crate::store::{MailboxId, OutboxMail, ResetPinOutcome};

    fn outcome(user: &str) -> ResetPinOutcome {
        ResetPinOutcome {
            mailbox_id: MailboxId(1),
            pin: "582047".into(),
            user: user.into(),
            email: None,
            extension: Some("4711".into()),
            reset_pin_text: String::new(),
            telephone_access_numbers: None,
            pin_set_at: 0,
        }
    }

    fn entries(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[test]
    fn delivery_lands_in_new_and_is_parseable() {
        let data = tempfile::tempdir().unwrap();
        let maildir = Maildir::in_data_dir(data.path());
        let mailer = ResetPinMailer::new(maildir.clone());
        let receipt = mailer.send(&outcome("Bob")).unwrap();
        let dir = data.path().join("mail").join("bob");
        let path = receipt.path.unwrap();
        assert_eq!(path, dir.join("new").join(&receipt.id));
        assert!(entries(&dir.join("tmp")).is_empty());
        assert!(entries(&dir.join("cur")).is_empty());
        assert_eq!(entries(&dir.join("new")), vec![path.clone()]);

        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains('\r'));
        let (headers, body) = text.split_once("\n\n").unwrap();
        for name in [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "Content-Type",
        ] {
            assert!(
                headers.lines().any(|l| l.starts_with(&format!("{name}: "))),
                "no {name} in {headers}"
            );
        }
        assert!(headers.contains("To: Bob@localhost"), "{headers}");
        assert!(body.contains("582047"), "{body}");

        let parts: Vec<&str> = receipt.id.split('.').collect();
        assert!(parts[0].parse::<u64>().is_ok(), "{}", receipt.id);
        assert!(parts[1].starts_with(&format!("{}_", std::process::id())));
    }

    #[test]
    fn names_are_unique_and_case_folds_to_one_maildir() {
        let data = tempfile::tempdir().unwrap();
        let maildir = Maildir::in_data_dir(data.path());
        let m = reset_pin_message(&outcome("carol"), &default_from()).unwrap();
        let a = maildir.deliver("Carol", &m).unwrap();
        let b = maildir.deliver("CAROL", &m).unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(entries(&data.path().join("mail/carol/new")).len(), 2);
    }

    #[test]
    fn user_names_cannot_escape_the_root() {
        assert_eq!(mailbox_dir_name("../evil").unwrap(), "%2E.%2Fevil");
        assert_eq!(mailbox_dir_name("..").unwrap(), "%2E.");
        assert_eq!(mailbox_dir_name(".hidden").unwrap(), "%2Ehidden");
        assert_eq!(mailbox_dir_name("a\0b").unwrap(), "a%00b");
        assert_eq!(mailbox_dir_name("DOMAIN\\Al").unwrap(), "domain%5Cal");
        assert_eq!(mailbox_dir_name("j.doe@x").unwrap(), "j.doe@x");
        assert_eq!(mailbox_dir_name("a%2F").unwrap(), "a%252f");
        assert_eq!(mailbox_dir_name("é").unwrap(), "%C3%A9");
        assert!(mailbox_dir_name("").is_err());
        assert!(mailbox_dir_name(&"/".repeat(100)).is_err());

        let data = tempfile::tempdir().unwrap();
        let maildir = Maildir::in_data_dir(data.path());
        let receipt = maildir.deliver_bytes("../../etc", b"x\n").unwrap();
        let path = receipt.path.unwrap();
        assert!(path.starts_with(data.path().join("mail")));
        assert_eq!(
            path.parent().unwrap().parent().unwrap().parent().unwrap(),
            maildir.root()
        );
    }

    #[test]
    fn failed_delivery_leaves_no_file() {
        let data = tempfile::tempdir().unwrap();
        // A file where the mail directory should be: creating the Maildir fails.
        fs::write(data.path().join("mail"), b"").unwrap();
        let maildir = Maildir::in_data_dir(data.path());
        let err = maildir.deliver_bytes("dave", b"x\n").unwrap_err();
        assert!(matches!(err, MailError::Io { op: "create", .. }), "{err:?}");
    }

    /// What a crash left in `tmp/` goes with the next delivery once it is 36 hours old; a
    /// younger file (a delivery that may still be running) stays, and so does a directory.
    #[test]
    fn stale_tmp_files_are_removed_by_the_next_delivery() {
        let data = tempfile::tempdir().unwrap();
        let maildir = Maildir::in_data_dir(data.path());
        maildir.deliver_bytes("erin", b"first\n").unwrap();
        let tmp = maildir.user_dir("erin").unwrap().join("tmp");
        let now = SystemTime::now();
        let aged = |name: &str, age: std::time::Duration| {
            let path = tmp.join(name);
            let file = File::create(&path).unwrap();
            file.set_modified(now - age).unwrap();
            path
        };
        let stale = aged(
            "1.crashed",
            STALE_TMP_AGE + std::time::Duration::from_secs(60),
        );
        let young = aged(
            "2.running",
            STALE_TMP_AGE - std::time::Duration::from_secs(3600),
        );
        let dir = tmp.join("3.dir");
        fs::create_dir(&dir).unwrap();

        maildir.deliver_bytes("erin", b"second\n").unwrap();
        assert!(!stale.exists(), "the stale file is removed");
        assert!(young.exists(), "a younger file stays");
        assert!(dir.is_dir(), "directories are not touched");
        assert_eq!(
            entries(&maildir.user_dir("erin").unwrap().join("new")).len(),
            2
        );

        // A queued mail's delivery cleans up too.
        let stale = aged("4.crashed", STALE_TMP_AGE * 2);
        maildir.deliver_queued_mail(&queued(9, "erin")).unwrap();
        assert!(!stale.exists());
        assert!(young.exists());
    }

    #[test]
    fn crlf_becomes_lf_only_in_pairs() {
        assert_eq!(crlf_to_lf(b"a\r\nb\rc\n\r\n"), b"a\nb\rc\n\n");
    }
    fn queued(id: i64, user: &str) -> OutboxMail {
        OutboxMail {
            id,
            key: "0123456789abcdef0123456789abcdef".into(),
            mailbox_id: MailboxId(1),
            user: user.into(),
            recipient: "erin@localhost".into(),
            message: b"Subject: x\r\n\r\nYour new PIN is: 582047\r\n".to_vec(),
            created_at: 1_700_000_000,
            attempts: 0,
        }
    }

    #[test]
    fn queued_delivery_is_idempotent_across_new_and_cur() {
        let data = tempfile::tempdir().unwrap();
        let maildir = Maildir::in_data_dir(data.path());
        let mail = queued(7, "Erin");
        let first = maildir.deliver_queued(&mail).unwrap();
        assert_eq!(
            first.id,
            "1700000000.Q000000000007_0123456789abcdef0123456789abcdef.umws"
        );
        let dir = data.path().join("mail/erin");
        assert_eq!(
            fs::read(first.path.as_ref().unwrap()).unwrap(),
            b"Subject: x\n\nYour new PIN is: 582047\n"
        );
        assert_eq!(maildir.deliver_queued(&mail).unwrap(), first);
        assert_eq!(entries(&dir.join("new")).len(), 1);
        assert!(entries(&dir.join("tmp")).is_empty());
        // A reader moved it to cur/ with flags: still delivered.
        let seen = dir.join("cur").join(format!("{}:2,S", first.id));
        fs::rename(first.path.unwrap(), &seen).unwrap();
        let again = maildir.deliver_queued(&mail).unwrap();
        assert_eq!(again.path, Some(seen));
        assert!(entries(&dir.join("new")).is_empty());
        // Another row is another mail, sorting after the first.
        let next = maildir.deliver_queued(&queued(8, "erin")).unwrap();
        assert!(next.id > again.id);
    }
}
