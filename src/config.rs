//! The `umws serve` settings: embedded defaults, a TOML file, and flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::mail::smtp::{Secret, SmtpSettings, StartTls, DEFAULT_TIMEOUT};
use crate::mail::Backoff;
use crate::telephony::dialplan::{DialPlan, NumberPattern};

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
///
/// [telephony]                    # the calls of PlayOnPhone (see TelephonyConfig)
/// enabled = true
/// sip_listen = "127.0.0.1:5060"  # not a wildcard: it goes into Contact and SDP
/// outbound_proxy = "pbx.example.com:5060"
/// domain = "example.com"         # host of the URIs of telephone numbers
/// from_uri = "sip:umws@example.com"
/// username = "umws"              # digest credentials, with password_env
/// password_env = "UMWS_SIP_PASSWORD"
/// rtp_ports = "10000-20000"
/// ring_timeout_secs = 30
/// max_call_secs = 3600
/// no_rtp_timeout_secs = 60       # 0: never hang up for missing RTP
/// max_calls = 100
/// max_calls_per_user = 5
///
/// [telephony.dial_plan]
/// extension_length = 4
/// country_code = "49"
/// national_prefix = "0"
/// international_prefix = "00"
/// outside_line_code = "9"
/// allowed_numbers = ["+49*", "4xxx"]
/// allow_sip_uris = true
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
    /// The telephony side of the call operations.
    pub telephony: Option<TelephonyFile>,
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
    /// The telephony side of the call operations.
    pub telephony: TelephonyConfig,
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
            telephony: TelephonyConfig::default(),
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
            telephony: file
                .telephony
                .map(TelephonyFile::settings)
                .transpose()?
                .unwrap_or_default(),
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
        self.telephony.validate()
    }
}

/// The address the SIP agent listens on when nothing else is said (another free port on
/// 127.0.0.1 when it is busy).
pub const DEFAULT_SIP_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5060);

/// The `[telephony]` table of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelephonyFile {
    /// Place calls at all (default true).
    pub enabled: Option<bool>,
    /// The SIP/UDP address (default 127.0.0.1:5060).
    pub sip_listen: Option<SocketAddr>,
    /// Send every request through this proxy: `host[:port]` or `sip:host[:port]`.
    pub outbound_proxy: Option<String>,
    /// The SIP domain: the host of the URIs of telephone numbers.
    pub domain: Option<String>,
    /// Our From URI.
    pub from_uri: Option<String>,
    /// The digest user name.
    pub username: Option<String>,
    /// The environment variable holding the digest password.
    pub password_env: Option<String>,
    /// The UDP ports of RTP, `"LOW-HIGH"`.
    pub rtp_ports: Option<String>,
    /// Seconds a phone may ring before the call is cancelled.
    pub ring_timeout_secs: Option<u64>,
    /// The longest call, seconds.
    pub max_call_secs: Option<u64>,
    /// Seconds without RTP from the phone before we hang up (0: never).
    pub no_rtp_timeout_secs: Option<u64>,
    /// The most calls at once.
    pub max_calls: Option<usize>,
    /// The most calls of one user at once.
    pub max_calls_per_user: Option<usize>,
    /// The numbers or URIs (the Request-URI's user part, or the whole `sip:` URI) that reach
    /// subscriber access; empty or absent: every inbound call.
    pub subscriber_access: Option<Vec<String>>,
    /// The time zone (an IANA name such as `Europe/Berlin`) in which subscriber access says
    /// when a message came; absent: the system's.
    pub time_zone: Option<String>,
    /// The dial plan.
    pub dial_plan: Option<DialPlanFile>,
}

/// The `[telephony.dial_plan]` table of the config file (see [`crate::telephony::dialplan`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialPlanFile {
    /// The digits of an extension.
    pub extension_length: Option<u8>,
    /// The country code of national numbers, e.g. `"1"`, `"49"`.
    pub country_code: Option<String>,
    /// The national prefix, e.g. `"0"`.
    pub national_prefix: Option<String>,
    /// The international prefix, e.g. `"00"`, `"011"`.
    pub international_prefix: Option<String>,
    /// The code for an outside line of a PBX, e.g. `"9"`.
    pub outside_line_code: Option<String>,
    /// Patterns of the numbers that may be called (empty or absent: all).
    pub allowed_numbers: Option<Vec<String>>,
    /// Whether `sip:` URIs may be dialled (default true).
    pub allow_sip_uris: Option<bool>,
}

/// A SIP host and port (the outbound proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipHostPort {
    /// A host name, an IPv4 address or a bracketed IPv6 address.
    pub host: String,
    /// The port (`None`: 5060, or what DNS says).
    pub port: Option<u16>,
}

impl SipHostPort {
    /// Parses `host[:port]`, also written as a `sip:` URI (`sip:host[:port][;lr]`).
    pub fn parse(text: &str) -> Option<SipHostPort> {
        let text = text.trim();
        let bare = match text.split_once(':') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sip") => rest,
            _ => text,
        };
        let bare = match bare.split_once(';') {
            Some((hp, params)) if params.split(';').all(|p| p.eq_ignore_ascii_case("lr")) => hp,
            Some(_) => return None,
            None => bare,
        };
        if bare.contains('@') {
            return None;
        }
        crate::telephony::dialplan::check_sip_uri(&format!("sip:{bare}")).ok()?;
        let (host, port) = if bare.starts_with('[') {
            match bare.rsplit_once("]:") {
                Some((h, p)) => (format!("{h}]"), Some(p)),
                None => (bare.to_owned(), None),
            }
        } else {
            match bare.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (bare.to_owned(), None),
            }
        };
        let port = match port {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        Some(SipHostPort { host, port })
    }

    /// The proxy as a loose-routing SIP URI: `sip:host[:port];lr`.
    pub fn uri(&self) -> String {
        format!("sip:{self};lr")
    }
}

impl std::fmt::Display for SipHostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// Digest credentials for 401/407 challenges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipCredentials {
    /// The user name.
    pub username: String,
    /// The password (from the environment; `Debug` does not show it).
    pub password: Secret,
}

/// The resolved `[telephony]` settings: everything the SIP agent, the dial plan and the
/// call limits need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelephonyConfig {
    /// Place calls at all; off, the call operations answer a `TransportException`.
    pub enabled: bool,
    /// The SIP/UDP address; `None`: [`DEFAULT_SIP_LISTEN`], or another free port on
    /// 127.0.0.1 when that one is busy. An address given here must be bound.
    pub sip_listen: Option<SocketAddr>,
    /// Send every request through this proxy.
    pub outbound_proxy: Option<SipHostPort>,
    /// The SIP domain (the host of the URIs of telephone numbers; else the proxy's).
    pub domain: Option<String>,
    /// Our From URI (`None`: `sip:umws@<the SIP address>`).
    pub from_uri: Option<String>,
    /// Digest credentials.
    pub credentials: Option<SipCredentials>,
    /// The UDP ports RTP sockets are opened on (inclusive).
    pub rtp_ports: (u16, u16),
    /// How long a phone may ring before the call is cancelled (NoAnswer).
    pub ring_timeout: Duration,
    /// The longest call; then we hang up.
    pub max_call: Duration,
    /// How long without RTP from the phone before we hang up (`None`: never).
    pub no_rtp_timeout: Option<Duration>,
    /// The most calls at once.
    pub max_calls: usize,
    /// The most calls of one user at once.
    pub max_calls_per_user: usize,
    /// The numbers or `sip:` URIs an inbound call must be addressed to, to reach subscriber
    /// access (empty: any).
    pub subscriber_access: Vec<String>,
    /// The time zone subscriber access says times in (from an IANA name, looked up when the
    /// configuration is read); `None`: the system's ([`TelephonyConfig::zone`]).
    pub time_zone: Option<jiff::tz::TimeZone>,
    /// The dial plan (its `route` is the domain, else the outbound proxy).
    pub dial_plan: DialPlan,
}

impl Default for TelephonyConfig {
    /// The embedded default: on, on 127.0.0.1:5060, no trunk, `sip:` URIs dialled directly.
    fn default() -> TelephonyConfig {
        TelephonyConfig {
            enabled: true,
            sip_listen: None,
            outbound_proxy: None,
            domain: None,
            from_uri: None,
            credentials: None,
            rtp_ports: (10_000, 20_000),
            ring_timeout: Duration::from_secs(30),
            max_call: Duration::from_secs(3600),
            no_rtp_timeout: Some(Duration::from_secs(60)),
            max_calls: 100,
            max_calls_per_user: 5,
            subscriber_access: Vec::new(),
            time_zone: None,
            dial_plan: DialPlan::default(),
        }
    }
}

/// The `subscriber_access` entries: each a number (digits, an optional leading `+`) or a
/// `sip:` URI, trimmed.
fn subscriber_access(entries: Vec<String>) -> Result<Vec<String>, ConfigError> {
    entries
        .into_iter()
        .map(|entry| {
            let entry = entry.trim().to_owned();
            let number = entry.strip_prefix('+').unwrap_or(&entry);
            let is_number = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
            let is_uri = entry.len() > 4
                && entry[..4].eq_ignore_ascii_case("sip:")
                && !entry.contains(char::is_whitespace);
            if is_number || is_uri {
                Ok(entry)
            } else {
                Err(invalid(
                    "telephony.subscriber_access",
                    format!("{entry:?} is neither a number nor a sip: URI"),
                ))
            }
        })
        .collect()
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// `digits` of 1 to `max` ASCII digits.
fn digits(
    key: &'static str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, ConfigError> {
    match value {
        Some(v) if v.is_empty() || v.len() > max || !v.chars().all(|c| c.is_ascii_digit()) => {
            Err(invalid(key, format!("{v:?} is not 1 to {max} digits")))
        }
        v => Ok(v),
    }
}

/// `"LOW-HIGH"`: a range of at least two UDP ports from 1024 up.
fn rtp_ports(text: &str) -> Result<(u16, u16), ConfigError> {
    let bad = || {
        invalid(
            "telephony.rtp_ports",
            format!("{text:?} is not LOW-HIGH, two ports from 1024 to 65535 with LOW < HIGH"),
        )
    };
    let (low, high) = text.split_once('-').ok_or_else(bad)?;
    let low: u16 = low.trim().parse().map_err(|_| bad())?;
    let high: u16 = high.trim().parse().map_err(|_| bad())?;
    if low < 1024 || low >= high {
        return Err(bad());
    }
    Ok((low, high))
}

impl TelephonyFile {
    /// The settings this table describes (ranges are checked by [`TelephonyConfig::validate`]).
    pub fn settings(self) -> Result<TelephonyConfig, ConfigError> {
        let d = TelephonyConfig::default();
        let outbound_proxy = match self.outbound_proxy {
            Some(p) => Some(SipHostPort::parse(&p).ok_or_else(|| {
                invalid(
                    "telephony.outbound_proxy",
                    format!("{p:?} is not host[:port] or sip:host[:port]"),
                )
            })?),
            None => None,
        };
        if let Some(domain) = &self.domain {
            if !crate::telephony::dialplan::is_host_name(domain) {
                return Err(invalid(
                    "telephony.domain",
                    format!("{domain:?} is not a host name or IPv4 address"),
                ));
            }
        }
        if let Some(uri) = &self.from_uri {
            crate::telephony::dialplan::check_sip_uri(uri)
                .map_err(|e| invalid("telephony.from_uri", e.to_string()))?;
            if !uri.contains('@') {
                return Err(invalid(
                    "telephony.from_uri",
                    "it needs a user part (sip:user@host)",
                ));
            }
        }
        let credentials = match (self.username, self.password_env) {
            (Some(username), Some(var)) => {
                if username.is_empty()
                    || username
                        .chars()
                        .any(|c| c.is_control() || c.is_whitespace())
                {
                    return Err(invalid("telephony.username", "empty, or has white space"));
                }
                let password = std::env::var(&var).map(Secret).map_err(|_| {
                    invalid(
                        "telephony.password_env",
                        format!("the environment variable {var} is not set"),
                    )
                })?;
                Some(SipCredentials { username, password })
            }
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "telephony.username",
                    "username and password_env go together",
                ))
            }
        };
        let plan = self.dial_plan.unwrap_or_default();
        let allowed_numbers = plan
            .allowed_numbers
            .unwrap_or_default()
            .iter()
            .map(|p| NumberPattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("telephony.dial_plan.allowed_numbers", e.to_string()))?;
        let route = self
            .domain
            .clone()
            .or_else(|| outbound_proxy.as_ref().map(ToString::to_string));
        let dial_plan = DialPlan {
            extension_length: plan.extension_length,
            country_code: digits("telephony.dial_plan.country_code", plan.country_code, 3)?,
            national_prefix: digits(
                "telephony.dial_plan.national_prefix",
                plan.national_prefix,
                4,
            )?,
            international_prefix: digits(
                "telephony.dial_plan.international_prefix",
                plan.international_prefix,
                4,
            )?,
            outside_line_code: digits(
                "telephony.dial_plan.outside_line_code",
                plan.outside_line_code,
                4,
            )?,
            allowed_numbers,
            allow_sip_uris: plan.allow_sip_uris.unwrap_or(true),
            route,
        };
        Ok(TelephonyConfig {
            enabled: self.enabled.unwrap_or(d.enabled),
            sip_listen: self.sip_listen,
            outbound_proxy,
            domain: self.domain,
            from_uri: self.from_uri,
            credentials,
            rtp_ports: match &self.rtp_ports {
                Some(text) => rtp_ports(text)?,
                None => d.rtp_ports,
            },
            ring_timeout: self
                .ring_timeout_secs
                .map_or(d.ring_timeout, Duration::from_secs),
            max_call: self.max_call_secs.map_or(d.max_call, Duration::from_secs),
            no_rtp_timeout: match self.no_rtp_timeout_secs {
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(s)),
                None => d.no_rtp_timeout,
            },
            max_calls: self.max_calls.unwrap_or(d.max_calls),
            max_calls_per_user: self.max_calls_per_user.unwrap_or(d.max_calls_per_user),
            subscriber_access: subscriber_access(self.subscriber_access.unwrap_or_default())?,
            time_zone: match self.time_zone {
                Some(name) => {
                    let name = name.trim();
                    Some(
                        jiff::tz::TimeZone::get(name).map_err(|e| {
                            invalid("telephony.time_zone", format!("{name:?}: {e}"))
                        })?,
                    )
                }
                None => None,
            },
            dial_plan,
        })
    }
}

impl TelephonyConfig {
    /// The time zone subscriber access says times in: `time_zone`, else the system's (the
    /// `TZ` environment variable or `/etc/localtime`), else UTC.
    pub fn zone(&self) -> jiff::tz::TimeZone {
        match &self.time_zone {
            Some(zone) => zone.clone(),
            None => jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC),
        }
    }

    /// Checks ranges and that the settings fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(listen) = self.sip_listen {
            if listen.ip().is_unspecified() {
                return Err(invalid(
                    "telephony.sip_listen",
                    format!(
                        "{listen} is a wildcard address; give the address phones reach                          (it goes into Contact headers and SDP)"
                    ),
                ));
            }
        }
        let secs = |key, value: Duration, range: std::ops::RangeInclusive<u64>| {
            if range.contains(&value.as_secs()) {
                Ok(())
            } else {
                Err(invalid(
                    key,
                    format!(
                        "{} s is outside {}..={}",
                        value.as_secs(),
                        range.start(),
                        range.end()
                    ),
                ))
            }
        };
        secs("telephony.ring_timeout_secs", self.ring_timeout, 1..=600)?;
        secs("telephony.max_call_secs", self.max_call, 10..=86_400)?;
        if let Some(t) = self.no_rtp_timeout {
            secs("telephony.no_rtp_timeout_secs", t, 1..=3600)?;
        }
        if !(1..=100_000).contains(&self.max_calls) {
            return Err(invalid(
                "telephony.max_calls",
                format!("{} is outside 1..=100000", self.max_calls),
            ));
        }
        if !(1..=self.max_calls).contains(&self.max_calls_per_user) {
            return Err(invalid(
                "telephony.max_calls_per_user",
                format!(
                    "{} is outside 1..=max_calls ({})",
                    self.max_calls_per_user, self.max_calls
                ),
            ));
        }
        let (low, high) = self.rtp_ports;
        if low < 1024 || low >= high {
            return Err(invalid(
                "telephony.rtp_ports",
                format!("{low}-{high} is not a range of ports from 1024"),
            ));
        }
        let plan = &self.dial_plan;
        if let Some(n) = plan.extension_length {
            if !(1..=20).contains(&n) {
                return Err(invalid(
                    "telephony.dial_plan.extension_length",
                    format!("{n} is outside 1..=20"),
                ));
            }
        }
        if plan.national_prefix.is_some() && plan.country_code.is_none() {
            return Err(invalid(
                "telephony.dial_plan.national_prefix",
                "national numbers need country_code too",
            ));
        }
        if plan.national_prefix.is_some() && plan.national_prefix == plan.international_prefix {
            return Err(invalid(
                "telephony.dial_plan.international_prefix",
                "the national and international prefixes are the same",
            ));
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

    fn telephony(text: &str) -> Result<TelephonyConfig, ConfigError> {
        let f: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "test.toml".into(),
            message: e.message().to_owned(),
        })?;
        ServeConfig::from_file(f).map(|c| c.telephony)
    }

    fn refused_key(text: &str) -> String {
        match telephony(text) {
            Err(ConfigError::Invalid { key, .. }) => key.to_owned(),
            Err(ConfigError::Parse { message, .. }) => format!("parse: {message}"),
            other => panic!("{text}: accepted: {other:?}"),
        }
    }

    #[test]
    fn telephony_defaults_are_the_embedded_default() {
        let t = ServeConfig::default().telephony;
        assert_eq!(t, telephony("").unwrap());
        assert_eq!(t, telephony("[telephony]\n").unwrap());
        assert!(t.enabled);
        assert_eq!(t.sip_listen, None);
        assert_eq!(DEFAULT_SIP_LISTEN.to_string(), "127.0.0.1:5060");
        assert_eq!(t.rtp_ports, (10_000, 20_000));
        assert_eq!(t.ring_timeout, Duration::from_secs(30));
        assert_eq!(t.dial_plan, DialPlan::default());
        assert!(t.dial_plan.allow_sip_uris);
        assert_eq!(t.dial_plan.route, None);
        assert!(t.max_calls_per_user <= t.max_calls);
    }

    #[test]
    fn every_telephony_key_is_read() {
        let t = telephony(
            "[telephony]\nenabled = false\nsip_listen = \"127.0.0.1:5070\"\n\
             outbound_proxy = \"sip:pbx.example.com:5080;lr\"\ndomain = \"example.com\"\n\
             from_uri = \"sip:voicemail@example.com\"\nusername = \"umws\"\n\
             password_env = \"PATH\"\nrtp_ports = \"30000-30100\"\nring_timeout_secs = 5\n\
             max_call_secs = 600\nno_rtp_timeout_secs = 0\nmax_calls = 10\n\
             max_calls_per_user = 2\n\
             [telephony.dial_plan]\nextension_length = 4\ncountry_code = \"49\"\n\
             national_prefix = \"0\"\ninternational_prefix = \"00\"\n\
             outside_line_code = \"9\"\nallowed_numbers = [\"+49*\", \"4xxx\"]\n\
             allow_sip_uris = false\n",
        )
        .unwrap();
        assert!(!t.enabled);
        assert_eq!(t.sip_listen, Some("127.0.0.1:5070".parse().unwrap()));
        let proxy = t.outbound_proxy.clone().unwrap();
        assert_eq!(
            (proxy.host.as_str(), proxy.port),
            ("pbx.example.com", Some(5080))
        );
        assert_eq!(proxy.uri(), "sip:pbx.example.com:5080;lr");
        assert_eq!(t.domain.as_deref(), Some("example.com"));
        assert_eq!(t.from_uri.as_deref(), Some("sip:voicemail@example.com"));
        let credentials = t.credentials.clone().unwrap();
        assert_eq!(credentials.username, "umws");
        let password = std::env::var("PATH").unwrap();
        assert_eq!(credentials.password.0, password);
        // the password is never shown
        assert!(!format!("{t:?}").contains(&password), "{t:?}");
        assert_eq!(t.rtp_ports, (30_000, 30_100));
        assert_eq!(t.ring_timeout, Duration::from_secs(5));
        assert_eq!(t.max_call, Duration::from_secs(600));
        assert_eq!(t.no_rtp_timeout, None);
        assert_eq!((t.max_calls, t.max_calls_per_user), (10, 2));
        let plan = &t.dial_plan;
        assert_eq!(plan.extension_length, Some(4));
        assert_eq!(plan.country_code.as_deref(), Some("49"));
        assert_eq!(plan.national_prefix.as_deref(), Some("0"));
        assert_eq!(plan.international_prefix.as_deref(), Some("00"));
        assert_eq!(plan.outside_line_code.as_deref(), Some("9"));
        assert_eq!(plan.allowed_numbers.len(), 2);
        assert!(!plan.allow_sip_uris);
        // telephone numbers go to the domain
        assert_eq!(plan.route.as_deref(), Some("example.com"));
        // without a domain, to the proxy
        let t = telephony("[telephony]\noutbound_proxy = \"10.0.0.1\"\n").unwrap();
        assert_eq!(t.dial_plan.route.as_deref(), Some("10.0.0.1"));
        assert_eq!(t.outbound_proxy.unwrap().port, None);
        let t = telephony("[telephony]\noutbound_proxy = \"[::1]:5060\"\n").unwrap();
        assert_eq!(t.dial_plan.route.as_deref(), Some("[::1]:5060"));
        assert_eq!(
            telephony("[telephony]\nno_rtp_timeout_secs = 7\n")
                .unwrap()
                .no_rtp_timeout,
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn bad_telephony_settings_are_refused_with_their_key() {
        for (text, key) in [
            ("sip_listen = \"0.0.0.0:5060\"", "telephony.sip_listen"),
            ("sip_listen = \"[::]:5060\"", "telephony.sip_listen"),
            (
                "outbound_proxy = \"pbx example\"",
                "telephony.outbound_proxy",
            ),
            ("outbound_proxy = \"sip:u@pbx\"", "telephony.outbound_proxy"),
            ("outbound_proxy = \"pbx:99999\"", "telephony.outbound_proxy"),
            (
                "outbound_proxy = \"sip:pbx;transport=tcp\"",
                "telephony.outbound_proxy",
            ),
            ("domain = \"exa mple\"", "telephony.domain"),
            ("from_uri = \"umws@example.com\"", "telephony.from_uri"),
            ("from_uri = \"sip:example.com\"", "telephony.from_uri"),
            ("username = \"u\"", "telephony.username"),
            ("password_env = \"PATH\"", "telephony.username"),
            (
                "username = \"u\"\npassword_env = \"UMWS_TEST_SURELY_UNSET_VAR\"",
                "telephony.password_env",
            ),
            ("rtp_ports = \"10000\"", "telephony.rtp_ports"),
            ("rtp_ports = \"20000-10000\"", "telephony.rtp_ports"),
            ("rtp_ports = \"10000-10000\"", "telephony.rtp_ports"),
            ("rtp_ports = \"80-90\"", "telephony.rtp_ports"),
            ("rtp_ports = \"a-b\"", "telephony.rtp_ports"),
            ("ring_timeout_secs = 0", "telephony.ring_timeout_secs"),
            ("ring_timeout_secs = 601", "telephony.ring_timeout_secs"),
            ("max_call_secs = 1", "telephony.max_call_secs"),
            (
                "no_rtp_timeout_secs = 3601",
                "telephony.no_rtp_timeout_secs",
            ),
            ("max_calls = 0", "telephony.max_calls"),
            ("max_calls_per_user = 0", "telephony.max_calls_per_user"),
            (
                "max_calls = 3\nmax_calls_per_user = 4",
                "telephony.max_calls_per_user",
            ),
            (
                "[telephony.dial_plan]\nextension_length = 0",
                "telephony.dial_plan.extension_length",
            ),
            (
                "[telephony.dial_plan]\nextension_length = 21",
                "telephony.dial_plan.extension_length",
            ),
            (
                "[telephony.dial_plan]\ncountry_code = \"+49\"",
                "telephony.dial_plan.country_code",
            ),
            (
                "[telephony.dial_plan]\ncountry_code = \"1234\"",
                "telephony.dial_plan.country_code",
            ),
            (
                "[telephony.dial_plan]\nnational_prefix = \"\"",
                "telephony.dial_plan.national_prefix",
            ),
            (
                "[telephony.dial_plan]\nnational_prefix = \"0\"",
                "telephony.dial_plan.national_prefix",
            ),
            (
                "[telephony.dial_plan]\ncountry_code = \"1\"\nnational_prefix = \"1\"\n\
                 international_prefix = \"1\"",
                "telephony.dial_plan.international_prefix",
            ),
            (
                "[telephony.dial_plan]\ninternational_prefix = \"x\"",
                "telephony.dial_plan.international_prefix",
            ),
            (
                "[telephony.dial_plan]\noutside_line_code = \"99999\"",
                "telephony.dial_plan.outside_line_code",
            ),
            (
                "[telephony.dial_plan]\nallowed_numbers = [\"4a\"]",
                "telephony.dial_plan.allowed_numbers",
            ),
        ] {
            assert_eq!(
                refused_key(&format!("[telephony]\n{text}\n")),
                key,
                "{text}"
            );
        }
        // unknown and mistyped keys are refused by the reader
        for text in [
            "[telephony]\nsip_listn = \"127.0.0.1:5060\"",
            "[telephony]\nsip_listen = \"localhost\"",
            "[telephony]\nmax_calls = -1",
            "[telephony.dial_plan]\ncountry_code = 49",
            "[telephony.dial_plan]\nallow_sip_uri = true",
        ] {
            assert!(refused_key(text).starts_with("parse: "), "{text}");
        }
        // the messages say what is wrong
        let e = telephony("[telephony]\nsip_listen = \"0.0.0.0:5060\"\n").unwrap_err();
        assert!(e.to_string().contains("wildcard"), "{e}");
        let e = telephony(
            "[telephony]\nusername = \"u\"\npassword_env = \"UMWS_TEST_SURELY_UNSET_VAR\"\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("UMWS_TEST_SURELY_UNSET_VAR is not set"),
            "{e}"
        );
    }

    #[test]
    fn time_zones_are_iana_names() {
        let parse = |value: &str| {
            toml::from_str::<TelephonyFile>(&format!("time_zone = {value}"))
                .expect("TOML")
                .settings()
        };
        let t = parse("\"Europe/Berlin\"").expect("valid");
        assert_eq!(
            t.time_zone.as_ref().and_then(|z| z.iana_name()),
            Some("Europe/Berlin")
        );
        assert_eq!(t.zone().iana_name(), Some("Europe/Berlin"));
        let err = parse("\"Mars/Olympus_Mons\"").unwrap_err().to_string();
        assert!(err.contains("telephony.time_zone"), "{err}");
        // Absent: the system's.
        let t = toml::from_str::<TelephonyFile>("")
            .expect("TOML")
            .settings()
            .expect("valid");
        assert_eq!(t.time_zone, None);
        assert_eq!(
            t.zone(),
            jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC)
        );
    }

    #[test]
    fn subscriber_access_takes_numbers_and_sip_uris_only() {
        let parse = |value: &str| {
            toml::from_str::<TelephonyFile>(&format!("subscriber_access = {value}"))
                .expect("TOML")
                .settings()
        };
        let t = parse(r#"[" +4000 ", "sip:vm@example.com", "4711"]"#).expect("valid");
        assert_eq!(t.subscriber_access, ["+4000", "sip:vm@example.com", "4711"]);
        assert!(parse(r#"["voice mail"]"#).is_err());
        assert!(parse(r#"[""]"#).is_err());
        assert!(parse(r#"["sip:"]"#).is_err());
        assert!(parse("[]").expect("valid").subscriber_access.is_empty());
    }
}
