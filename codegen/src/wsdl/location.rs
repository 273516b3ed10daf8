//! Resolving `location` / `schemaLocation` values against the directory of the file holding them.

use std::path::{Component, Path, PathBuf};

use super::WsdlError;

/// What a location value names.
pub(super) enum Location {
    /// A URL with a scheme (`http:`, `file:`, `urn:` ...); never fetched.
    Url,
    /// An absolute filesystem path.
    Absolute(PathBuf),
    /// A path relative to the containing file's directory.
    Relative,
}

/// Classifies a location value.
pub(super) fn classify(location: &str) -> Location {
    let path = Path::new(location);
    if path.is_absolute() {
        return Location::Absolute(path.to_path_buf());
    }
    // A scheme is ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"; one letter is a drive (C:\).
    if let Some((scheme, _)) = location.split_once(':') {
        let mut chars = scheme.chars();
        let starts_alpha = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if starts_alpha && rest_ok && scheme.len() > 1 {
            return Location::Url;
        }
    }
    Location::Relative
}

/// The absolute directory of `file` (the current directory for a bare file name).
pub(super) fn base_dir(file: &Path) -> Result<PathBuf, WsdlError> {
    let io = |source| WsdlError::Io {
        path: file.to_path_buf(),
        source,
    };
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = match parent {
        Some(dir) => std::path::absolute(dir).map_err(io)?,
        None => std::env::current_dir().map_err(io)?,
    };
    Ok(normalize(&dir))
}

/// `dir.join(relative)` with `.` and `..` resolved lexically (no filesystem access, so the
/// result is stable whether or not the file exists).
pub(super) fn resolve(dir: &Path, relative: &str) -> PathBuf {
    normalize(&dir.join(relative))
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The key under which a loaded file is remembered for cycle detection.
pub(super) fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| match std::path::absolute(path) {
        Ok(abs) => normalize(&abs),
        Err(_) => path.to_path_buf(),
    })
}

/// A `file://` URL for an absolute path, percent-encoding every byte outside
/// the unreserved set and `/` (schema readers such as xsd-parser resolve
/// `schemaLocation` as a URL).
pub(super) fn file_url(path: &str) -> String {
    let mut url = String::from("file://");
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}
