//! The settings of a [`SoapServer`](super::SoapServer) and their defaults.

use std::time::Duration;

use crate::envelope;
use crate::namespace::NamespaceAliases;
use crate::wsdl::WsdlDocuments;

/// Settings of a [`SoapServer`](super::SoapServer).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The URL paths the service answers on, e.g. `/Service.asmx`.
    pub paths: Vec<String>,
    /// The largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// Alternative namespace spellings.
    pub aliases: NamespaceAliases,
    /// Accept the alternative spellings (`true`) or refuse them.
    pub accept_aliases: bool,
    /// The Basic authentication realm.
    pub realm: String,
    /// The WSDL and schemas served on `GET <path>?wsdl`.
    pub wsdl: Option<WsdlDocuments>,
    /// Maximum element nesting in a request.
    pub max_depth: usize,
    /// How long a graceful shutdown waits for open connections.
    pub shutdown_grace: Duration,
    /// How long a client has to send a request's head (request line and headers), counted
    /// from when the server starts waiting for it, so also the longest a keep-alive
    /// connection stays idle between requests. The connection is closed when it runs out
    /// (hyper's `header_read_timeout`). `None`: no limit.
    pub header_read_timeout: Option<Duration>,
    /// How long reading a request's body may take once its head has arrived; the answer is
    /// `408 Request Timeout` and the connection is closed. `None`: no limit.
    pub body_read_timeout: Option<Duration>,
    /// The most connections served at once. Beyond it the server accepts no more until one
    /// closes (new ones wait in the listener's backlog), so that a flood of connections
    /// cannot take every file descriptor of the process.
    pub max_connections: usize,
    /// Whether the server is reached over TLS (for the published address).
    pub tls: bool,
}

/// The default [`ServerConfig::header_read_timeout`] (hyper's own default).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The default [`ServerConfig::body_read_timeout`].
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The default [`ServerConfig::max_connections`] (below the usual limit of 1024 open files
/// per process, leaving room for the files the service itself opens).
pub const DEFAULT_MAX_CONNECTIONS: usize = 900;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            paths: vec!["/".into()],
            max_body_bytes: 64 * 1024,
            aliases: NamespaceAliases::none(),
            accept_aliases: true,
            realm: "SOAP".into(),
            wsdl: None,
            max_depth: envelope::DEFAULT_MAX_DEPTH,
            shutdown_grace: Duration::from_secs(10),
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
            body_read_timeout: Some(DEFAULT_BODY_READ_TIMEOUT),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: false,
        }
    }
}
