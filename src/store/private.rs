//! Keeping the data directory private to the user the service runs as.
//!
//! Everything under the data directory is secret or leads to secrets: the database holds
//! argon2 hashes of PINs (six digits are cracked offline in minutes) and, while a mail is
//! queued, its spool file holds the PIN in clear; the Maildirs hold the PIN mails. So the data
//! directory and every directory below it are `0700`, every file `0600`, **whatever the
//! umask**, and also when they already exist with wider modes (an older version, a restore,
//! an administrator's `cp`): modes are set explicitly, not left to the umask.
//!
//! A data directory that others can write to is refused instead of repaired: whoever could
//! write there may have replaced files or planted symbolic links, so nothing in it can be
//! trusted. Symbolic links below the data directory are never followed.

use std::fs;
use std::path::Path;

use super::StoreError;

/// The mode of every directory under (and including) the data directory.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// The mode of every file under the data directory.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Private {
        path: path.to_path_buf(),
        source,
    }
}

/// The permission bits of `meta`.
#[cfg(unix)]
fn mode_of(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

/// Sets the permission bits of `path` to `mode` unless they are that already.
#[cfg(unix)]
fn set_mode(path: &Path, meta: &fs::Metadata, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    if mode_of(meta) != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_error(path))?;
    }
    Ok(())
}

/// Checks the data directory itself and makes it `0700`: refuses one that the group or others
/// may write to ([`StoreError::InsecureDataDir`]).
pub fn check_data_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        let meta = fs::metadata(dir).map_err(io_error(dir))?;
        let mode = mode_of(&meta);
        if mode & 0o022 != 0 {
            return Err(StoreError::InsecureDataDir {
                path: dir.to_path_buf(),
                mode,
            });
        }
        set_mode(dir, &meta, PRIVATE_DIR_MODE)?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates the directory `dir` (its parent must exist) as `0700`, or makes an existing one
/// `0700`. A symbolic link is refused.
pub fn private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR_MODE);
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(dir)(e)),
    }
    #[cfg(unix)]
    {
        let meta = fs::symlink_metadata(dir).map_err(io_error(dir))?;
        if !meta.is_dir() {
            return Err(io_error(dir)(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a directory",
            )));
        }
        set_mode(dir, &meta, PRIVATE_DIR_MODE)?;
    }
    Ok(())
}

/// Makes the regular file `path` `0600` if it exists (a missing file, a symbolic link or
/// anything else is left alone).
pub fn private_file(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(path)(e)),
        };
        if meta.is_file() {
            set_mode(path, &meta, PRIVATE_FILE_MODE)?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Options for a new private file (`0600` from its creation, whatever the umask: the umask
/// can only remove bits).
pub fn private_open_options() -> fs::OpenOptions {
    #[allow(unused_mut)]
    let mut options = fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, PRIVATE_FILE_MODE);
    options
}

/// Makes the entries directly in `dir` private: files `0600`, directories `0700` (their
/// contents are left alone). Symbolic links are not followed.
pub fn private_entries(dir: &Path) -> Result<(), StoreError> {
    private_tree_at(dir, 1)
}

/// Makes everything under `dir` private, to any depth: files `0600`, directories `0700`.
/// Symbolic links are not followed. Costs one `lstat` per entry.
pub fn private_tree(dir: &Path) -> Result<(), StoreError> {
    private_tree_at(dir, usize::MAX)
}

fn private_tree_at(dir: &Path, depth: usize) -> Result<(), StoreError> {
    if depth == 0 {
        return Ok(());
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_error(&path))?;
        if kind.is_dir() {
            private_dir(&path)?;
            private_tree_at(&path, depth - 1)?;
        } else if kind.is_file() {
            private_file(&path)?;
        }
    }
    Ok(())
}
