//! The spool of queued PIN mails: one file per outbox row, `<data>/outbox/<key>.eml`.
//!
//! # Why the mail is not kept in the database
//!
//! A queued mail holds a PIN in clear. Once it is delivered nothing of it may remain readable
//! in the data directory outside the Maildirs. Deleting the outbox row does not achieve that:
//! SQLite keeps the old page images in the WAL until a checkpoint, and deleted cells stay in
//! the database file's pages and free pages. `PRAGMA secure_delete` zeroes a cell when it is
//! deleted and a page when it is freed, and a `wal_checkpoint(TRUNCATE)` empties the WAL, but
//! that is still not enough: when SQLite rebuilds or defragments a page (`rebuildPage`,
//! `defragmentPage`, run whenever rows are inserted into or balanced across pages) it moves the
//! live cells and leaves the bytes of their old positions in the page's unallocated gap,
//! un-zeroed even with `secure_delete`. A mail queued next to others (concurrent resets) can
//! so leave a copy of itself that no later delete overwrites.
//!
//! So the database never holds the message: the row keeps its metadata and an empty
//! `message`, and the message lives in its own file, created `0600` and flushed (with its
//! directory) inside the transaction that inserts the row, before the commit. Once the mail is
//! delivered the row is deleted and then the file is unlinked: the file system no longer
//! gives its bytes to anyone. Crashes:
//! - before the commit: the file has no row (its PIN never became valid); it is an orphan;
//! - between the deletion of a delivered row and the unlink: an orphan too.
//!
//! Orphans are removed when the store is opened (`Store::open`), while holding
//! SQLite's write lock: every writer creates its file inside its `BEGIN IMMEDIATE`
//! transaction, so while the sweeper holds the lock, a file without a row belongs to no
//! transaction in flight, in this process or another.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::private::{private_dir, private_open_options};
use super::StoreError;

/// The spool directory's name inside the data directory.
pub const SPOOL_DIR: &str = "outbox";

/// The suffix of a spool file.
const SUFFIX: &str = ".eml";

/// The spool directory of a data directory.
#[derive(Clone, Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
}

fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Spool {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `key` can name a spool file (the keys are simple UUIDs: hex digits).
fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Spool {
    /// The spool of `data_dir`, created (`0700`) when missing.
    pub(crate) fn open(data_dir: &Path) -> Result<Spool, StoreError> {
        let dir = data_dir.join(SPOOL_DIR);
        private_dir(&dir)?;
        Ok(Spool { dir })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if !valid_key(key) {
            return Err(StoreError::InvalidInput {
                field: "outbox key",
                reason: "not a spool file name",
            });
        }
        Ok(self.dir.join(format!("{key}{SUFFIX}")))
    }

    /// Writes the message of `key` into a new file (`0600`) and flushes it and the directory,
    /// so that it is durable before the row that names it commits.
    pub(crate) fn write(&self, key: &str, message: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let mut file = private_open_options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error("create", &path))?;
        let written = file
            .write_all(message)
            .and_then(|()| file.sync_all())
            .map_err(io_error("write", &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.sync_dir()
    }

    /// The message of `key`; `None` when its file is missing.
    pub(crate) fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &path)(e)),
        }
    }

    /// Unlinks the file of `key` (gone already is fine).
    pub(crate) fn remove(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("remove", &path)(e)),
        }
    }

    /// The keys of the files in the spool (files are created under their final name, so a
    /// half-written one is named after its key too). Anything else is logged and left alone.
    pub(crate) fn keys(&self) -> Result<Vec<String>, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(io_error("read", &self.dir))?;
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error("read", &self.dir))?;
            let name = entry.file_name();
            let key = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .filter(|k| valid_key(k));
            match key {
                Some(key) => keys.push(key.to_owned()),
                None => {
                    tracing::debug!(file = %entry.path().display(), "unexpected file in the outbox spool; left alone")
                }
            }
        }
        Ok(keys)
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        #[cfg(unix)]
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("sync", &self.dir))?;
        Ok(())
    }
}
