//! The `umws serve` settings: embedded defaults, a TOML file, and flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The address served when nothing else is said.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The data directory used when nothing else is said.
pub const DEFAULT_DATA: &str = "./umws-data";
/// The default request body limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Settings of the server, as read from a config file. Every field is
/// optional; flags on the command line win over the file.
///
/// ```toml
/// listen = "127.0.0.1:8080"
/// data = "./umws-data"
/// strict_namespaces = false      # true: refuse the https:// namespace spelling
/// max_body_bytes = 65536
/// mail_from = "UM Service <umws@example.com>"
/// demo_mailbox = true            # create a demo mailbox in an empty store
/// allow_plain_http = false       # Basic auth over plain HTTP off loopback
/// tls_cert = "cert.pem"          # with tls_key: serve HTTPS
/// tls_key = "key.pem"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The socket address to listen on.
    pub listen: Option<SocketAddr>,
    /// The data directory (store, Maildirs).
    pub data: Option<PathBuf>,
    /// Refuse the `https://schemas.microsoft.com/...` namespace spelling.
    pub strict_namespaces: Option<bool>,
    /// The request body limit in bytes.
    pub max_body_bytes: Option<usize>,
    /// The sender of ResetPIN mails.
    pub mail_from: Option<String>,
    /// Create a demo mailbox when the store has none.
    pub demo_mailbox: Option<bool>,
    /// Allow Basic authentication over plain HTTP on a non-loopback address.
    pub allow_plain_http: Option<bool>,
    /// The TLS certificate chain (PEM); serve HTTPS when set with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
}

/// A config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("the config file {} is invalid: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML reader said.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid setting {key}: {reason}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

impl FileConfig {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_owned(),
        })
    }
}

/// The resolved settings `umws serve` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// The socket address to listen on.
    pub listen: SocketAddr,
    /// The data directory.
    pub data: PathBuf,
    /// Refuse the `https://` namespace spelling.
    pub strict_namespaces: bool,
    /// The request body limit in bytes.
    pub max_body_bytes: usize,
    /// The sender of ResetPIN mails (`None`: `UM Service <umws@HOST>`).
    pub mail_from: Option<String>,
    /// Create a demo mailbox when the store has none.
    pub demo_mailbox: bool,
    /// Allow Basic authentication over plain HTTP on a non-loopback address.
    pub allow_plain_http: bool,
    /// The TLS certificate chain and private key (PEM files): HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data: PathBuf::from(DEFAULT_DATA),
            strict_namespaces: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            mail_from: None,
            demo_mailbox: true,
            allow_plain_http: false,
            tls: None,
        }
    }
}

impl ServeConfig {
    /// Defaults overridden by a file.
    pub fn from_file(file: FileConfig) -> Result<Self, ConfigError> {
        let d = Self::default();
        let config = Self {
            listen: file.listen.unwrap_or(d.listen),
            data: file.data.unwrap_or(d.data),
            strict_namespaces: file.strict_namespaces.unwrap_or(d.strict_namespaces),
            max_body_bytes: file.max_body_bytes.unwrap_or(d.max_body_bytes),
            mail_from: file.mail_from.or(d.mail_from),
            demo_mailbox: file.demo_mailbox.unwrap_or(d.demo_mailbox),
            allow_plain_http: file.allow_plain_http.unwrap_or(d.allow_plain_http),
            tls: match (file.tls_cert, file.tls_key) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "tls_cert",
                        reason: "tls_cert and tls_key go together".into(),
                    })
                }
            },
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(ConfigError::Invalid {
                key: "max_body_bytes",
                reason: format!("{} is outside 1024..=67108864", self.max_body_bytes),
            });
        }
        if let Some(from) = &self.mail_from {
            from.parse::<lettre::message::Mailbox>()
                .map_err(|e| ConfigError::Invalid {
                    key: "mail_from",
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_unknown_keys_are_refused() {
        let f: FileConfig =
            toml::from_str("listen = \"127.0.0.1:9\"\nstrict_namespaces = true").unwrap();
        let c = ServeConfig::from_file(f).unwrap();
        assert_eq!(c.listen.port(), 9);
        assert!(c.strict_namespaces);
        assert_eq!(c.data, PathBuf::from(DEFAULT_DATA));
        assert!(toml::from_str::<FileConfig>("lisen = 1").is_err());
        let bad = FileConfig {
            max_body_bytes: Some(1),
            ..FileConfig::default()
        };
        assert!(ServeConfig::from_file(bad).is_err());
    }
}
