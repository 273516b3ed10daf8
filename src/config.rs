//! The `umws serve` settings: embedded defaults, a TOML file, and flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::mail::smtp::{Secret, SmtpSettings, StartTls, DEFAULT_TIMEOUT};
use crate::mail::Backoff;

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
/// database = "postgres://umws@db.example.com/umws"  # PostgreSQL instead of SQLite in `data`
/// strict_namespaces = false      # true: refuse the https:// namespace spelling
/// max_body_bytes = 65536
/// header_read_timeout_secs = 30  # request head, and idle keep-alive; then the connection closes
/// body_read_timeout_secs = 60    # request body after its head; then 408
/// max_connections = 900          # served at once; more wait in the listen backlog
/// mail_from = "UM Service <umws@example.com>"
/// demo_mailbox = true            # create a demo mailbox in an empty store
/// max_pin_resets_per_hour = 5    # ResetPINs per mailbox per hour; more get a ResetPINException
/// allow_plain_http = false       # Basic auth over plain HTTP off loopback
/// tls_cert = "cert.pem"          # with tls_key: serve HTTPS
/// tls_key = "key.pem"
///
/// [smtp]                         # deliver PIN mails to a relay instead of the Maildir
/// host = "mail.example.com"
/// port = 587                     # default 25
/// starttls = "required"          # "required" (default), "opportunistic" or "off"
/// username = "umws"              # AUTH, with password or password_env
/// password_env = "UMWS_SMTP_PASSWORD"
/// from = "bounces@example.com"   # envelope sender; default: the mail_from address
/// timeout_secs = 10
///
/// [outbox]                       # retries of failed deliveries: base * 2^(n-1), capped
/// retry_base_ms = 1000
/// retry_max_ms = 300000
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The socket address to listen on.
    pub listen: Option<SocketAddr>,
    /// The data directory (store, Maildirs).
    pub data: Option<PathBuf>,
    /// The PostgreSQL database URL; `data` then holds the Maildirs and the outbox spool only.
    pub database: Option<crate::store::DatabaseUrl>,
    /// Refuse the `https://schemas.microsoft.com/...` namespace spelling.
    pub strict_namespaces: Option<bool>,
    /// The request body limit in bytes.
    pub max_body_bytes: Option<usize>,
    /// Seconds a client has to send a request head (also the idle time of a kept-alive
    /// connection).
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request body once its head has arrived.
    pub body_read_timeout_secs: Option<u64>,
    /// The most connections served at once.
    pub max_connections: Option<usize>,
    /// The sender of ResetPIN mails.
    pub mail_from: Option<String>,
    /// Create a demo mailbox when the store has none.
    pub demo_mailbox: Option<bool>,
    /// The most ResetPINs per mailbox within an hour.
    pub max_pin_resets_per_hour: Option<u32>,
    /// Allow Basic authentication over plain HTTP on a non-loopback address.
    pub allow_plain_http: Option<bool>,
    /// The TLS certificate chain (PEM); serve HTTPS when set with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Delivery to an SMTP relay.
    pub smtp: Option<SmtpFile>,
    /// Retries of the outbox.
    pub outbox: Option<OutboxFile>,
}

/// The `[smtp]` table of the config file.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    /// The relay's host name.
    pub host: String,
    /// The relay's port (default 25).
    pub port: Option<u16>,
    /// `STARTTLS`: required (default), opportunistic or off.
    pub starttls: Option<StartTls>,
    /// The `AUTH` user name.
    pub username: Option<String>,
    /// The `AUTH` password (prefer `password_env`).
    pub password: Option<String>,
    /// The environment variable holding the `AUTH` password.
    pub password_env: Option<String>,
    /// The envelope sender (`MAIL FROM`).
    pub from: Option<String>,
    /// The time limit of one SMTP command, seconds.
    pub timeout_secs: Option<u64>,
}

impl std::fmt::Debug for SmtpFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpFile")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("starttls", &self.starttls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .field("password_env", &self.password_env)
            .field("from", &self.from)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// The `[outbox]` table of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxFile {
    /// The wait after the first failed delivery, milliseconds (default 1000).
    pub retry_base_ms: Option<u64>,
    /// The longest wait between attempts, milliseconds (default 300000).
    pub retry_max_ms: Option<u64>,
}

/// Where the `AUTH` password of the relay comes from.
pub fn smtp_password_from_env(var: &str) -> Result<Secret, ConfigError> {
    std::env::var(var)
        .map(Secret)
        .map_err(|_| ConfigError::Invalid {
            key: "smtp.password_env",
            reason: format!("the environment variable {var} is not set"),
        })
}

impl SmtpFile {
    /// The settings this table describes.
    pub fn settings(self) -> Result<SmtpSettings, ConfigError> {
        let password = match (self.password, self.password_env) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "smtp.password",
                    reason: "give password or password_env, not both".into(),
                })
            }
            (Some(p), None) => Some(Secret(p)),
            (None, Some(var)) => Some(smtp_password_from_env(&var)?),
            (None, None) => None,
        };
        let credentials = match (self.username, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "smtp.username",
                    reason: "username and a password go together".into(),
                })
            }
        };
        Ok(SmtpSettings {
            host: self.host,
            port: self.port.unwrap_or(25),
            starttls: self.starttls.unwrap_or_default(),
            credentials,
            envelope_from: self.from,
            timeout: self
                .timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_TIMEOUT),
        })
    }
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
    /// The PostgreSQL database, if not the SQLite store in `data`.
    pub database: Option<crate::store::DatabaseUrl>,
    /// Refuse the `https://` namespace spelling.
    pub strict_namespaces: bool,
    /// The request body limit in bytes.
    pub max_body_bytes: usize,
    /// How long a client has to send a request head (and the longest a kept-alive connection
    /// stays idle); the connection is closed after it.
    pub header_read_timeout: Duration,
    /// How long a client has to send a request body once its head has arrived; the answer
    /// is `408 Request Timeout` after it.
    pub body_read_timeout: Duration,
    /// The most connections served at once; more wait until one closes.
    pub max_connections: usize,
    /// The sender of ResetPIN mails (`None`: `UM Service <umws@HOST>`).
    pub mail_from: Option<String>,
    /// Create a demo mailbox when the store has none.
    pub demo_mailbox: bool,
    /// The most ResetPINs per mailbox within an hour (default
    /// [`RESET_PIN_LIMIT`](crate::store::RESET_PIN_LIMIT)); see `Store::with_reset_limit`.
    pub max_pin_resets_per_hour: u32,
    /// Allow Basic authentication over plain HTTP on a non-loopback address.
    pub allow_plain_http: bool,
    /// The TLS certificate chain and private key (PEM files): HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Deliver PIN mails to this SMTP relay (`None`: into the Maildirs of the data directory).
    pub smtp: Option<SmtpSettings>,
    /// The retry backoff of failed mail deliveries.
    pub backoff: Backoff,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data: PathBuf::from(DEFAULT_DATA),
            database: None,
            strict_namespaces: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout: umws_soap::server::DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: umws_soap::server::DEFAULT_BODY_READ_TIMEOUT,
            max_connections: umws_soap::server::DEFAULT_MAX_CONNECTIONS,
            mail_from: None,
            demo_mailbox: true,
            max_pin_resets_per_hour: crate::store::RESET_PIN_LIMIT.max,
            allow_plain_http: false,
            tls: None,
            smtp: None,
            backoff: Backoff::default(),
        }
    }
}

impl ServeConfig {
    /// The ResetPIN limit per mailbox: `max_pin_resets_per_hour` per hour.
    pub fn reset_limit(&self) -> crate::store::ResetLimit {
        crate::store::ResetLimit {
            max: self.max_pin_resets_per_hour,
            window: Duration::from_secs(3600),
        }
    }

    /// Defaults overridden by a file.
    pub fn from_file(file: FileConfig) -> Result<Self, ConfigError> {
        let d = Self::default();
        let config = Self {
            listen: file.listen.unwrap_or(d.listen),
            data: file.data.unwrap_or(d.data),
            database: file.database,
            strict_namespaces: file.strict_namespaces.unwrap_or(d.strict_namespaces),
            max_body_bytes: file.max_body_bytes.unwrap_or(d.max_body_bytes),
            header_read_timeout: file
                .header_read_timeout_secs
                .map_or(d.header_read_timeout, Duration::from_secs),
            body_read_timeout: file
                .body_read_timeout_secs
                .map_or(d.body_read_timeout, Duration::from_secs),
            max_connections: file.max_connections.unwrap_or(d.max_connections),
            mail_from: file.mail_from.or(d.mail_from),
            demo_mailbox: file.demo_mailbox.unwrap_or(d.demo_mailbox),
            max_pin_resets_per_hour: file
                .max_pin_resets_per_hour
                .unwrap_or(d.max_pin_resets_per_hour),
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
            smtp: file.smtp.map(SmtpFile::settings).transpose()?,
            backoff: match file.outbox {
                Some(o) => Backoff {
                    base: o
                        .retry_base_ms
                        .map_or(d.backoff.base, Duration::from_millis),
                    max: o.retry_max_ms.map_or(d.backoff.max, Duration::from_millis),
                },
                None => d.backoff,
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
        for (key, value) in [
            ("header_read_timeout_secs", self.header_read_timeout),
            ("body_read_timeout_secs", self.body_read_timeout),
        ] {
            if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&value) {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("{} s is outside 1..=3600", value.as_secs_f64()),
                });
            }
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(ConfigError::Invalid {
                key: "max_connections",
                reason: format!("{} is outside 1..=1000000", self.max_connections),
            });
        }
        if self.max_pin_resets_per_hour == 0 {
            return Err(ConfigError::Invalid {
                key: "max_pin_resets_per_hour",
                reason: "0 would refuse every ResetPIN; at least 1".into(),
            });
        }
        if self.backoff.base > self.backoff.max {
            return Err(ConfigError::Invalid {
                key: "outbox.retry_base_ms",
                reason: "the base wait is longer than retry_max_ms".into(),
            });
        }
        if let Some(smtp) = &self.smtp {
            if smtp.host.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "smtp.host",
                    reason: "empty".into(),
                });
            }
            if let Some(from) = &smtp.envelope_from {
                from.parse::<lettre::Address>()
                    .map_err(|e| ConfigError::Invalid {
                        key: "smtp.from",
                        reason: e.to_string(),
                    })?;
            }
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
    fn connection_limits_come_from_the_file_within_range() {
        let f: FileConfig =
            toml::from_str("header_read_timeout_secs = 5\nbody_read_timeout_secs = 120").unwrap();
        let c = ServeConfig::from_file(f).unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_secs(5));
        assert_eq!(c.body_read_timeout, Duration::from_secs(120));
        let d = ServeConfig::default();
        assert_eq!(d.header_read_timeout, Duration::from_secs(30));
        assert_eq!(d.body_read_timeout, Duration::from_secs(60));
        assert_eq!(d.max_connections, 900);
        let f: FileConfig = toml::from_str("max_connections = 50").unwrap();
        assert_eq!(ServeConfig::from_file(f).unwrap().max_connections, 50);
        for (text, key) in [
            ("header_read_timeout_secs = 0", "header_read_timeout_secs"),
            ("body_read_timeout_secs = 3601", "body_read_timeout_secs"),
            ("max_connections = 0", "max_connections"),
        ] {
            let f: FileConfig = toml::from_str(text).unwrap();
            match ServeConfig::from_file(f) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

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

    #[test]
    fn smtp_and_outbox_tables() {
        let f: FileConfig = toml::from_str(
            "[smtp]\nhost = \"relay.example.org\"\nport = 587\nstarttls = \"opportunistic\"\n\
             username = \"u\"\npassword = \"hunter2\"\nfrom = \"b@example.org\"\n\
             [outbox]\nretry_base_ms = 50\nretry_max_ms = 200\n",
        )
        .unwrap();
        assert!(!format!("{f:?}").contains("hunter2"));
        let c = ServeConfig::from_file(f).unwrap();
        let smtp = c.smtp.clone().unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port), ("relay.example.org", 587));
        assert_eq!(smtp.starttls, StartTls::Opportunistic);
        assert_eq!(smtp.credentials.unwrap().1 .0, "hunter2");
        assert_eq!(c.backoff.base, Duration::from_millis(50));
        assert!(!format!("{c:?}").contains("hunter2"));
        let f: FileConfig = toml::from_str("[smtp]\nhost = \"h\"\n").unwrap();
        let smtp = ServeConfig::from_file(f).unwrap().smtp.unwrap();
        assert_eq!((smtp.port, smtp.starttls), (25, StartTls::Required));
        for bad in [
            "[smtp]\nhost = \"h\"\nstarttls = \"yes\"\n",
            "[smtp]\nhost = \"h\"\nusername = \"u\"\n",
            "[smtp]\nhost = \"h\"\npassword_env = \"UMWS_TEST_SURELY_UNSET_VAR\"\nusername = \"u\"\n",
            "[outbox]\nretry_base_ms = 5\nretry_max_ms = 1\n",
        ] {
            let parsed = toml::from_str::<FileConfig>(bad);
            assert!(
                parsed.is_err() || ServeConfig::from_file(parsed.unwrap()).is_err(),
                "{bad}"
            );
        }
    }
}
