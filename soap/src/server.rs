//! Serving a generated SOAP service over hyper.
//!
//! A generated `<PortType>Server<T>` implements [`SoapService`]; wrap it in a
//! [`SoapServer`] with an [`Authenticator`] and a [`FaultStyle`], then
//! [`serve`](SoapServer::serve) it on a listener. The server owns the HTTP
//! side (paths, `?wsdl`, Basic authentication, body limit, content type,
//! `SOAPAction`) and turns every problem into exactly one response.

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{Buf, Bytes};
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use zeroize::Zeroize as _;

use crate::context::CallContext;
use crate::envelope::{
    self, BodyElement, EnvelopeError, EnvelopeWriter, ParseOptions, SoapVersion,
};
use crate::fault::SoapFault;
use crate::namespace::NamespaceAliases;
use crate::operation::OperationInfo;
use crate::wsdl::{RenderError, WsdlDocuments};
use crate::xml::XmlError;

/// The answer of an operation, ready to be written into an envelope.
pub trait ReplyBody: Send {
    /// Writes the response element into the envelope's body.
    fn write(&self, out: &mut EnvelopeWriter<'_>) -> Result<(), XmlError>;
}

impl<T> ReplyBody for T
where
    T: xsd_parser_types::quick_xml::WithSerializer + Send + 'static,
{
    fn write(&self, out: &mut EnvelopeWriter<'_>) -> Result<(), XmlError> {
        crate::xml::write_body(self, out)
    }
}

/// The answer of an operation without output: an empty `soap:Body`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyReply;

impl ReplyBody for EmptyReply {
    fn write(&self, _out: &mut EnvelopeWriter<'_>) -> Result<(), XmlError> {
        Ok(())
    }
}

/// A boxed [`ReplyBody`].
pub type Reply = Box<dyn ReplyBody>;

/// Why a generated dispatcher could not produce a reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request element did not match its schema type.
    #[error("the request does not match its schema: {0}")]
    InvalidRequest(#[source] XmlError),
    /// The operation answered with a fault.
    #[error(transparent)]
    Fault(#[from] SoapFault),
}

/// A service the server can dispatch to; implemented by generated code.
pub trait SoapService: Send + Sync + 'static {
    /// The operations of the service, in WSDL order.
    fn operations(&self) -> &'static [OperationInfo];

    /// Reads the request element of operation `op` (an index into
    /// [`operations`](Self::operations)), calls the implementation and
    /// returns its answer.
    fn call<'a>(
        &'a self,
        ctx: &'a CallContext,
        op: usize,
        body: &'a BodyElement,
    ) -> impl Future<Output = Result<Reply, CallError>> + Send + 'a;
}

/// Basic credentials of a request: a user name and a password (which may contain colons;
/// the user name cannot). Held in one buffer, as they arrive.
#[derive(Clone)]
pub struct Credentials {
    /// `user:password`.
    text: String,
    /// Where the user name ends.
    colon: usize,
}

impl Credentials {
    /// Credentials from their parts; `None` when `user` contains a colon (Basic
    /// authentication cannot carry it).
    pub fn new(user: &str, password: &str) -> Option<Self> {
        if user.contains(':') {
            return None;
        }
        Some(Self {
            text: format!("{user}:{password}"),
            colon: user.len(),
        })
    }

    /// Credentials from the decoded `user:password` of a Basic `Authorization` header;
    /// `None` without a colon.
    pub fn from_pair(mut text: String) -> Option<Self> {
        let Some(colon) = text.find(':') else {
            text.zeroize();
            return None;
        };
        Some(Self { text, colon })
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The password. Never log it.
    pub fn password(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// The user name, keeping the buffer (the password is wiped and cut off).
    pub fn into_user(mut self) -> String {
        let mut bytes = std::mem::take(&mut self.text).into_bytes();
        bytes[self.colon..].zeroize();
        bytes.truncate(self.colon);
        // A prefix of UTF-8 ending before an ASCII colon is UTF-8.
        String::from_utf8(bytes).unwrap_or_default()
    }
}

impl Drop for Credentials {
    /// Wipes this copy of the password (the request's `Authorization` header is hyper's).
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user())
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The decision of an [`Authenticator`].
#[derive(Debug)]
pub enum AuthDecision {
    /// The caller is who they say; these values go into
    /// [`CallContext::extensions`].
    Allow(http::Extensions),
    /// The credentials are wrong, unknown, or the account may not log on.
    Deny,
}

/// Checks the credentials of every request.
pub trait Authenticator: Send + Sync + 'static {
    /// Decides whether `credentials` (absent when the request sent none)
    /// may call the service. An `Err` means the check itself failed; the
    /// request gets a 503 and the error goes to the log.
    fn authenticate(
        &self,
        credentials: Option<Credentials>,
        remote_addr: Option<SocketAddr>,
    ) -> impl Future<Output = Result<AuthDecision, Box<dyn std::error::Error + Send + Sync>>> + Send;
}

/// An [`Authenticator`] that lets every request in, for services that need
/// no authentication.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAuthentication;

impl Authenticator for NoAuthentication {
    async fn authenticate(
        &self,
        _credentials: Option<Credentials>,
        _remote_addr: Option<SocketAddr>,
    ) -> Result<AuthDecision, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AuthDecision::Allow(http::Extensions::new()))
    }
}

/// A problem with a request that the service never saw.
#[derive(Debug)]
pub enum RequestProblem<'a> {
    /// The envelope could not be read.
    Envelope(&'a EnvelopeError),
    /// The body holds no element.
    EmptyBody,
    /// No operation has this request element.
    UnknownOperation {
        /// Namespace of the body element.
        namespace: &'a str,
        /// Local name of the body element.
        local_name: &'a str,
    },
    /// The `SOAPAction` names another operation than the body.
    ActionMismatch {
        /// The `SOAPAction` sent.
        action: &'a str,
        /// The operation the body names.
        operation: &'a str,
    },
    /// The request element does not match its schema type.
    InvalidBody(&'a XmlError),
}

impl std::fmt::Display for RequestProblem<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Envelope(e) => write!(f, "{e}"),
            Self::EmptyBody => write!(f, "the Body holds no request element"),
            Self::UnknownOperation {
                namespace,
                local_name,
            } => write!(
                f,
                "no operation has the request element {{{namespace}}}{local_name}"
            ),
            Self::ActionMismatch { action, operation } => write!(
                f,
                "the SOAPAction {action} does not name the operation {operation} of the body"
            ),
            Self::InvalidBody(e) => write!(f, "the request does not match its schema: {e}"),
        }
    }
}

/// How a service reports requests it cannot read: the one place that
/// turns a [`RequestProblem`] into a fault.
pub trait FaultStyle: Send + Sync + 'static {
    /// The fault for a request the service never saw.
    fn invalid_request(&self, problem: &RequestProblem<'_>) -> SoapFault {
        SoapFault::client(problem.to_string())
    }
}

/// The plain SOAP style: `soap:Client` faults that say what is wrong.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFaults;

impl FaultStyle for PlainFaults {}

/// Settings of a [`SoapServer`].
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

/// A SOAP service on HTTP: dispatch, authentication, faults, WSDL.
pub struct SoapServer<S, A> {
    inner: Arc<Inner<S, A>>,
}

impl<S, A> Clone for SoapServer<S, A> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<S, A> {
    service: S,
    auth: A,
    faults: Box<dyn FaultStyle>,
    config: ServerConfig,
}

type HttpResponse = Response<Full<Bytes>>;

/// A request after its synchronous checks.
enum Routed<B> {
    /// A GET, answered with the WSDL or a schema.
    Document(HttpResponse),
    /// A POST whose headers passed.
    Post(Post<B>),
}

/// What a POST needs once its headers are checked.
struct Post<B> {
    credentials: Option<Credentials>,
    soap_action: String,
    /// `Content-Length` declares more than the limit.
    too_large: bool,
    body: B,
}

impl<S: SoapService, A: Authenticator> SoapServer<S, A> {
    /// A server for `service`, checking callers with `auth` and reporting
    /// unreadable requests in `faults` style.
    pub fn new(service: S, auth: A, faults: impl FaultStyle, config: ServerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                service,
                auth,
                faults: Box::new(faults),
                config,
            }),
        }
    }

    /// The server's settings.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Answers one HTTP request. Never panics on any input; every problem
    /// becomes a status code or a fault.
    ///
    /// The checks that need no waiting run before the returned future is built, so that it
    /// holds only what the waiting steps need (authentication, the body, the operation),
    /// not the request: hyper keeps the future of every request in progress.
    ///
    /// Runs on a tokio runtime with its timer enabled (`enable_time` or `enable_all`) when
    /// [`ServerConfig::body_read_timeout`] is set, as it is by default.
    pub fn handle<'s, B>(
        &'s self,
        req: Request<B>,
        remote_addr: Option<SocketAddr>,
    ) -> impl Future<Output = HttpResponse> + Send + 's
    where
        B: Body + Send + 's,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        // The access log line; what it needs is kept only when it is written.
        let log = tracing::enabled!(target: "umws_soap::access", tracing::Level::INFO).then(|| {
            (
                Instant::now(),
                req.method().clone(),
                req.uri().path().to_owned(),
            )
        });
        let routed = self.route(req);
        async move {
            // The operation the body names, once known.
            let mut op = None;
            let answer = match routed {
                Ok(Routed::Document(response)) => Ok(response),
                Ok(Routed::Post(post)) => self.post(post, remote_addr, &mut op).await,
                Err(rejection) => Err(rejection),
            };
            let response = answer.unwrap_or_else(|rejection| {
                rejection.log(remote_addr);
                rejection.into_response(&self.inner.config, &*self.inner.faults)
            });
            if let Some((started, method, path)) = log {
                tracing::info!(
                    target: "umws_soap::access",
                    %method,
                    path = %path,
                    operation = op.unwrap_or("-"),
                    status = response.status().as_u16(),
                    micros = started.elapsed().as_micros() as u64,
                    remote = ?remote_addr,
                );
            }
            response
        }
    }

    /// Path, method and, for a POST, the headers: a document, or what the POST needs.
    fn route<B>(&self, req: Request<B>) -> Result<Routed<B>, Rejection> {
        let config = &self.inner.config;
        let path = req.uri().path();
        if !config.paths.iter().any(|p| p.eq_ignore_ascii_case(path)) {
            return Err(Rejection::NotFound);
        }
        match *req.method() {
            Method::GET => self.get(&req).map(Routed::Document),
            Method::POST => self.post_headers(req).map(Routed::Post),
            _ => Err(Rejection::MethodNotAllowed),
        }
    }

    /// A GET: the WSDL (`?wsdl`, `?singlewsdl`) or one of its schemas (`?xsd=name`).
    fn get<B>(&self, req: &Request<B>) -> Result<HttpResponse, Rejection> {
        let config = &self.inner.config;
        let query = req.uri().query().unwrap_or("");
        let Some(docs) = &config.wsdl else {
            return Err(Rejection::NoWsdl);
        };
        let base = base_url(req, if config.tls { "https" } else { "http" });
        let text = if query.eq_ignore_ascii_case("wsdl") || query.eq_ignore_ascii_case("singlewsdl")
        {
            docs.render_wsdl(&base)
        } else if let Some(name) = query.strip_prefix("xsd=") {
            docs.render_schema(name, &base)
                .ok_or(Rejection::NoSuchSchema)?
        } else {
            return Err(Rejection::NotADocumentRequest);
        };
        Ok(xml_response(StatusCode::OK, text?.into_bytes()))
    }

    /// The headers of a POST: content type, credentials, `SOAPAction`, declared length.
    fn post_headers<B>(&self, req: Request<B>) -> Result<Post<B>, Rejection> {
        let config = &self.inner.config;
        // Content type: text/xml for SOAP 1.1; application/soap+xml is SOAP
        // 1.2, which is read only to answer a version mismatch.
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut params = content_type.split(';').map(str::trim);
        let mime = params.next().unwrap_or("");
        if !mime.eq_ignore_ascii_case("text/xml")
            && !mime.eq_ignore_ascii_case("application/soap+xml")
        {
            return Err(Rejection::UnsupportedMediaType);
        }
        let mut action_param = None;
        for p in params {
            if let Some((k, v)) = p.split_once('=') {
                let (k, v) = (k.trim(), unquote(v));
                if k.eq_ignore_ascii_case("charset") && !envelope::is_utf8_label(v.as_bytes()) {
                    return Err(Rejection::UnsupportedCharset);
                }
                if k.eq_ignore_ascii_case("action") {
                    action_param = Some(v.to_owned());
                }
            }
        }
        let credentials = basic_credentials(&req).map_err(|()| Rejection::Unauthorized)?;
        let soap_action = req
            .headers()
            .get(&SOAP_ACTION)
            .and_then(|v| v.to_str().ok())
            .map(|v| unquote(v).to_owned())
            .or(action_param)
            .unwrap_or_default();
        let too_large = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > config.max_body_bytes as u64);
        Ok(Post {
            credentials,
            soap_action,
            too_large,
            body: req.into_body(),
        })
    }

    /// A POST: authentication before reading the body, then the operation, whose name goes
    /// into `op` once the body names it.
    async fn post<B>(
        &self,
        post: Post<B>,
        remote_addr: Option<SocketAddr>,
        op: &mut Option<&'static str>,
    ) -> Result<HttpResponse, Rejection>
    where
        B: Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let config = &self.inner.config;
        let Post {
            credentials,
            soap_action,
            too_large,
            body,
        } = post;
        let extensions = match self.inner.auth.authenticate(credentials, remote_addr).await {
            Ok(AuthDecision::Allow(ext)) => ext,
            Ok(AuthDecision::Deny) => return Err(Rejection::Unauthorized),
            Err(error) => return Err(Rejection::AuthenticationUnavailable(error)),
        };

        // The body, within the limit.
        let limit = config.max_body_bytes;
        if too_large {
            return Err(Rejection::PayloadTooLarge { limit });
        }
        let read = read_body(body, limit);
        let read = match config.body_read_timeout {
            // The timer is armed only if the body is not complete at the first poll.
            Some(timeout) => tokio::time::timeout(timeout, read)
                .await
                .map_err(|_| Rejection::RequestTimeout)?,
            None => read.await,
        };
        let bytes = read.map_err(|error| {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Rejection::PayloadTooLarge { limit }
            } else {
                Rejection::UnreadableBody(error)
            }
        })?;

        let mut ctx = CallContext {
            remote_addr,
            soap_action,
            headers: Vec::new(),
            extensions,
        };
        self.dispatch(&bytes, &mut ctx, op).await
    }

    /// The envelope, its operation and the call: the reply, or the fault to answer.
    async fn dispatch(
        &self,
        bytes: &[u8],
        ctx: &mut CallContext,
        op_name: &mut Option<&'static str>,
    ) -> Result<HttpResponse, Rejection> {
        let inner = &*self.inner;
        let config = &inner.config;
        let opts = ParseOptions {
            aliases: &config.aliases,
            accept_aliases: config.accept_aliases,
            max_depth: config.max_depth,
        };
        let envelope = envelope::parse(bytes, opts).map_err(|error| match error {
            EnvelopeError::VersionMismatch { .. } => Rejection::VersionMismatch { alias: None },
            error => Rejection::BadEnvelope(error),
        })?;
        let alias = envelope.alias;
        if envelope.version != SoapVersion::Soap11 {
            return Err(Rejection::VersionMismatch { alias });
        }
        let Some(body) = envelope.body else {
            return Err(Rejection::EmptyBody { alias });
        };
        let operations = inner.service.operations();
        let Some(index) = operations.iter().position(|op| {
            op.request_element == body.local_name && op.request_namespace == body.namespace
        }) else {
            return Err(Rejection::UnknownOperation {
                namespace: body.namespace,
                local_name: body.local_name,
                alias,
            });
        };
        let op = &operations[index];
        *op_name = Some(op.name);
        let action = canonical_action(&config.aliases, &ctx.soap_action);
        if !op.accepts_action(&action) {
            return Err(Rejection::ActionMismatch {
                action: std::mem::take(&mut ctx.soap_action),
                operation: op.name,
                alias,
            });
        }
        let mut headers = envelope.headers;
        if let Some(i) = headers.iter().position(|h| {
            h.must_understand
                && !op
                    .understood_headers
                    .iter()
                    .any(|(ns, local)| *ns == h.namespace && *local == h.local_name)
        }) {
            let header = headers.swap_remove(i);
            return Err(Rejection::MustUnderstand {
                namespace: header.namespace,
                local_name: header.local_name,
                alias,
            });
        }
        ctx.headers = headers;
        let reply = inner
            .service
            .call(ctx, index, &body)
            .await
            .map_err(|error| match error {
                CallError::InvalidRequest(source) => Rejection::InvalidBody {
                    source: Box::new(source),
                    operation: op.name,
                    alias,
                },
                CallError::Fault(fault) => Rejection::Fault {
                    fault: Box::new(fault),
                    alias,
                },
            })?;
        let mut out = EnvelopeWriter::new(SoapVersion::Soap11, alias.map(|i| (&config.aliases, i)));
        reply
            .write(&mut out)
            .map_err(|source| Rejection::UnwritableReply {
                source: Box::new(source),
                operation: op.name,
                alias,
            })?;
        Ok(xml_response(StatusCode::OK, out.finish()))
    }

    /// Serves connections from `listener` until `shutdown` completes, then
    /// lets open connections finish (up to the configured grace period).
    /// Needs a tokio runtime with its timer enabled (`enable_time` or `enable_all`).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        self.serve_with(listener, None, shutdown).await
    }

    /// Like [`serve`](Self::serve), over TLS: every connection is a TLS
    /// handshake with `config` first (a handshake that fails or takes over
    /// 10 seconds closes the connection).
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        self.serve_with(listener, Some(acceptor), shutdown).await
    }

    async fn serve_with(
        self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let connections = Arc::new(Connections::default());
        // SOAP is HTTP/1.1 (keep-alive, pipelining allowed); no HTTP/2 sniffing per connection.
        let mut builder = hyper::server::conn::http1::Builder::new();
        // A client that never finishes its request head (or idles on a kept-alive connection)
        // must not hold a connection, and so a file descriptor, for ever.
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.inner.config.header_read_timeout);
        tokio::pin!(shutdown);
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.inner
                .config
                .max_connections
                .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let mut saturated = false;
        loop {
            // A free connection slot first; while there is none, new connections wait in the
            // listener's backlog.
            let slot = match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => {
                    saturated = false;
                    slot
                }
                Err(_) => {
                    // Once per episode, not once per connection of a flood.
                    if !std::mem::replace(&mut saturated, true) {
                        tracing::warn!(
                            max = self.inner.config.max_connections,
                            "connection limit reached; new connections wait"
                        );
                    }
                    tokio::select! {
                        slot = Arc::clone(&slots).acquire_owned() => match slot {
                            Ok(slot) => slot,
                            // The semaphore is never closed.
                            Err(_) => break,
                        },
                        () = &mut shutdown => break,
                    }
                }
            };
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, remote) = match accepted {
                        Ok(pair) => pair,
                        Err(error) => {
                            // Out of file descriptors and the like: back off
                            // instead of spinning.
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let server = self.clone();
                    let builder = builder.clone();
                    let registration = connections.register();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        // Held until the connection ends.
                        let _slot = slot;
                        let service = hyper::service::service_fn(move |req| {
                            let server = server.clone();
                            async move { Ok::<_, Infallible>(server.handle(req, Some(remote)).await) }
                        });
                        let result = match tls {
                            None => {
                                let conn = builder.serve_connection(TokioIo::new(stream), service);
                                registration.drive(conn).await
                            }
                            Some(acceptor) => {
                                let handshake = tokio::time::timeout(
                                    Duration::from_secs(10),
                                    acceptor.accept(stream),
                                );
                                let stream = match handshake.await {
                                    Ok(Ok(stream)) => stream,
                                    Ok(Err(error)) => {
                                        tracing::debug!(%error, ?remote, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!(?remote, "TLS handshake timed out");
                                        return;
                                    }
                                };
                                let conn = builder.serve_connection(TokioIo::new(stream), service);
                                registration.drive(conn).await
                            }
                        };
                        if let Err(error) = result {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        connections.close_all();
        tokio::select! {
            () = connections.all_closed() => {}
            () = tokio::time::sleep(self.inner.config.shutdown_grace) => {
                tracing::warn!("connections still open after the grace period; closing");
            }
        }
        Ok(())
    }
}

/// The open connections of a server, each with a stop signal of its own.
///
/// Polling a connection touches nothing the others share: hyper-util's `GracefulShutdown`
/// polls one watch channel from every connection on every wake-up, a lock shared by all
/// connections on all cores. Here a connection polls its own `oneshot` receiver, and the
/// shared state is locked only when a connection opens or ends.
#[derive(Default)]
struct Connections {
    state: Mutex<ConnectionsState>,
    /// Woken when the last connection ends.
    idle: Notify,
}

#[derive(Default)]
struct ConnectionsState {
    next_id: u64,
    /// The stop signals not sent yet, by connection.
    signals: HashMap<u64, oneshot::Sender<()>>,
    /// Connections registered and not ended (signalled or not).
    live: usize,
    closing: bool,
}

impl Connections {
    fn state(&self) -> std::sync::MutexGuard<'_, ConnectionsState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection; it counts as open until the registration is dropped.
    fn register(self: &Arc<Self>) -> Registration {
        let (tx, stop) = oneshot::channel();
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        state.live += 1;
        if state.closing {
            let _ = tx.send(());
        } else {
            state.signals.insert(id, tx);
        }
        Registration {
            connections: Arc::clone(self),
            id,
            stop,
        }
    }

    /// Asks every open connection to finish: the request in progress is answered, then the
    /// connection closes.
    fn close_all(&self) {
        let mut state = self.state();
        state.closing = true;
        for (_, tx) in state.signals.drain() {
            let _ = tx.send(());
        }
    }

    /// Completes when no connection is open.
    async fn all_closed(&self) {
        loop {
            let idle = self.idle.notified();
            let mut idle = std::pin::pin!(idle);
            // Registered before the check, so that a connection ending in between wakes it.
            idle.as_mut().enable();
            if self.state().live == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// One connection of [`Connections`].
struct Registration {
    connections: Arc<Connections>,
    id: u64,
    stop: oneshot::Receiver<()>,
}

impl Registration {
    /// Serves `conn` to its end, shutting it down gracefully when the server stops.
    async fn drive<C: GracefulConnection>(mut self, conn: C) -> Result<(), C::Error> {
        let mut conn = std::pin::pin!(conn);
        let mut stopping = false;
        std::future::poll_fn(|cx| {
            // (A received or dropped signal is never polled again.)
            if !stopping && Pin::new(&mut self.stop).poll(cx).is_ready() {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            conn.as_mut().poll(cx)
        })
        .await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.connections.state();
        state.signals.remove(&self.id);
        state.live -= 1;
        if state.live == 0 {
            self.connections.idle.notify_waiters();
        }
    }
}

/// Why a request gets no answer from the service: every refusal at the HTTP level and
/// every fault the server writes, one variant per reason.
///
/// The request path returns `Result<_, Rejection>`; [`into_response`](Self::into_response)
/// is the one place that turns a rejection into its status code, headers and body (as
/// axum's `IntoResponse` does), and [`log`](Self::log) the one place that logs what the
/// client is not told.
#[derive(Debug, thiserror::Error)]
enum Rejection {
    /// The path is none of [`ServerConfig::paths`]: `404`.
    #[error("the service does not answer on this path")]
    NotFound,
    /// Neither GET nor POST: `405` with `Allow: GET, POST`.
    #[error("the method is neither GET nor POST")]
    MethodNotAllowed,
    /// A GET where no WSDL is published: `404`.
    #[error("no WSDL is published")]
    NoWsdl,
    /// A GET for neither `?wsdl`, `?singlewsdl` nor `?xsd=name`: `400`.
    #[error("a GET asks for neither the WSDL nor a schema")]
    NotADocumentRequest,
    /// `?xsd=name` names no published schema: `404`.
    #[error("no schema of that name is published")]
    NoSuchSchema,
    /// The published WSDL or schema could not be rendered: `500`.
    #[error("the published document cannot be rendered")]
    DocumentUnrenderable(#[from] RenderError),
    /// The content type is neither `text/xml` nor `application/soap+xml`: `415`.
    #[error("the content type is not SOAP's")]
    UnsupportedMediaType,
    /// The content type names a charset other than UTF-8: `415`.
    #[error("the charset is not UTF-8")]
    UnsupportedCharset,
    /// The credentials are missing, unreadable or refused: `401` with a Basic challenge for
    /// [`ServerConfig::realm`].
    #[error("authentication required")]
    Unauthorized,
    /// The [`Authenticator`] itself failed: `503`.
    #[error("authentication is unavailable")]
    AuthenticationUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The body is larger than [`ServerConfig::max_body_bytes`] (declared or sent): `413`.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body did not arrive within [`ServerConfig::body_read_timeout`]: `408`, closing
    /// the connection (the rest of the body may still come).
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// Reading the body failed (a broken chunked encoding, a reset connection): `400`.
    #[error("the request body could not be read")]
    UnreadableBody(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The envelope is not SOAP 1.1: a `VersionMismatch` fault.
    #[error("the envelope is not SOAP 1.1")]
    VersionMismatch {
        /// The namespace spelling of the request, by index into [`ServerConfig::aliases`].
        alias: Option<usize>,
    },
    /// The envelope could not be read: the [`FaultStyle`]'s fault.
    #[error("the envelope cannot be read")]
    BadEnvelope(#[source] EnvelopeError),
    /// The body holds no element: the [`FaultStyle`]'s fault.
    #[error("the Body holds no request element")]
    EmptyBody {
        /// The namespace spelling of the request.
        alias: Option<usize>,
    },
    /// No operation has the body's element: the [`FaultStyle`]'s fault.
    #[error("no operation has the request element {{{namespace}}}{local_name}")]
    UnknownOperation {
        /// Namespace of the body element.
        namespace: String,
        /// Local name of the body element.
        local_name: String,
        /// The namespace spelling of the request.
        alias: Option<usize>,
    },
    /// The `SOAPAction` names another operation than the body: the [`FaultStyle`]'s fault.
    #[error("the SOAPAction {action} does not name the operation {operation} of the body")]
    ActionMismatch {
        /// The `SOAPAction` sent.
        action: String,
        /// The operation the body names.
        operation: &'static str,
        /// The namespace spelling of the request.
        alias: Option<usize>,
    },
    /// A `mustUnderstand` header the operation does not declare: a `MustUnderstand` fault.
    #[error("the header {{{namespace}}}{local_name} is not understood")]
    MustUnderstand {
        /// Namespace of the header element.
        namespace: String,
        /// Local name of the header element.
        local_name: String,
        /// The namespace spelling of the request.
        alias: Option<usize>,
    },
    /// The request element does not match its schema type: the [`FaultStyle`]'s fault.
    #[error("the request element of {operation} does not match its schema")]
    InvalidBody {
        /// What does not match.
        source: Box<XmlError>,
        /// The operation called.
        operation: &'static str,
        /// The namespace spelling of the request.
        alias: Option<usize>,
    },
    /// The operation answered with a fault.
    #[error("the operation answered with a fault")]
    Fault {
        /// The fault.
        fault: Box<SoapFault>,
        /// The namespace spelling of the request.
        alias: Option<usize>,
    },
    /// The operation's reply could not be written: a `Server` fault.
    #[error("the reply of {operation} cannot be written")]
    UnwritableReply {
        /// Why.
        source: Box<XmlError>,
        /// The operation called.
        operation: &'static str,
        /// The namespace spelling of the request.
        alias: Option<usize>,
    },
}

impl Rejection {
    /// Logs what the answer does not tell the client: a failure on the server's side, or
    /// for debugging, what was wrong with the request.
    fn log(&self, remote_addr: Option<SocketAddr>) {
        match self {
            Self::DocumentUnrenderable(error) => {
                tracing::error!(%error, "cannot render the WSDL");
            }
            Self::AuthenticationUnavailable(error) => {
                tracing::error!(%error, "authentication failed");
            }
            Self::RequestTimeout => {
                tracing::debug!(?remote_addr, "request body not received in time");
            }
            Self::UnreadableBody(error) => {
                tracing::debug!(%error, "reading the request body failed");
            }
            Self::BadEnvelope(error) => tracing::debug!(%error, "unreadable envelope"),
            Self::InvalidBody {
                source: error,
                operation,
                ..
            } => {
                tracing::debug!(operation = *operation, %error, "invalid request element");
            }
            Self::UnwritableReply {
                source: error,
                operation,
                ..
            } => {
                tracing::error!(operation = *operation, %error, "cannot write the response");
            }
            _ => {}
        }
    }

    /// The answer to the client: a plain-text status for an HTTP-level refusal, a SOAP
    /// fault (`500`, in the request's namespace spelling) once the envelope is being read.
    /// `faults` makes the fault of a request the service never saw.
    fn into_response(self, config: &ServerConfig, faults: &dyn FaultStyle) -> HttpResponse {
        let (fault, alias) = match self {
            Self::NotFound => return plain(StatusCode::NOT_FOUND, "not found\n"),
            Self::MethodNotAllowed => {
                let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use POST, or GET ?wsdl\n");
                r.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, POST"));
                return r;
            }
            Self::NoWsdl => return plain(StatusCode::NOT_FOUND, "no WSDL is published here\n"),
            Self::NotADocumentRequest => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "POST a SOAP request, or GET ?wsdl\n",
                )
            }
            Self::NoSuchSchema => return plain(StatusCode::NOT_FOUND, "no such schema\n"),
            Self::DocumentUnrenderable(_) => {
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
            }
            Self::UnsupportedMediaType => {
                return plain(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "a SOAP 1.1 request needs Content-Type: text/xml; charset=utf-8\n",
                )
            }
            Self::UnsupportedCharset => {
                return plain(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "only charset=utf-8 is supported\n",
                )
            }
            Self::Unauthorized => {
                let mut r = plain(StatusCode::UNAUTHORIZED, "authentication required\n");
                let realm = config.realm.replace(['"', '\\'], "");
                if let Ok(v) =
                    HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
                {
                    r.headers_mut().insert(WWW_AUTHENTICATE, v);
                }
                return r;
            }
            Self::AuthenticationUnavailable(_) => {
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "authentication is unavailable\n",
                )
            }
            Self::PayloadTooLarge { limit } => {
                let text = format!("the request body is larger than {limit} bytes\n");
                return response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain; charset=utf-8",
                    Bytes::from(text),
                );
            }
            Self::RequestTimeout => {
                let mut r = plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time\n",
                );
                r.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                return r;
            }
            Self::UnreadableBody(_) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read\n",
                )
            }
            Self::VersionMismatch { alias } => (SoapFault::version_mismatch(), alias),
            Self::BadEnvelope(error) => (
                faults.invalid_request(&RequestProblem::Envelope(&error)),
                None,
            ),
            Self::EmptyBody { alias } => {
                (faults.invalid_request(&RequestProblem::EmptyBody), alias)
            }
            Self::UnknownOperation {
                namespace,
                local_name,
                alias,
            } => (
                faults.invalid_request(&RequestProblem::UnknownOperation {
                    namespace: &namespace,
                    local_name: &local_name,
                }),
                alias,
            ),
            Self::ActionMismatch {
                action,
                operation,
                alias,
            } => (
                faults.invalid_request(&RequestProblem::ActionMismatch {
                    action: &action,
                    operation,
                }),
                alias,
            ),
            Self::MustUnderstand {
                namespace,
                local_name,
                alias,
            } => (SoapFault::must_understand(&namespace, &local_name), alias),
            Self::InvalidBody { source, alias, .. } => (
                faults.invalid_request(&RequestProblem::InvalidBody(&source)),
                alias,
            ),
            Self::Fault { fault, alias } => (*fault, alias),
            Self::UnwritableReply { alias, .. } => (
                SoapFault::server("The server could not write its response."),
                alias,
            ),
        };
        let mut out = EnvelopeWriter::new(SoapVersion::Soap11, alias.map(|i| (&config.aliases, i)));
        out.write_fault(&fault);
        xml_response(StatusCode::INTERNAL_SERVER_ERROR, out.finish())
    }
}

/// `value` without surrounding whitespace and double quotes (all of them, balanced or not:
/// what `str::trim_matches('"')` does, without its general pattern search).
fn unquote(value: &str) -> &str {
    let bytes = value.trim().as_bytes();
    let start = bytes.iter().position(|&b| b != b'"').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b'"')
        .map_or(start, |i| i + 1);
    // Quotes are ASCII: the cuts are on character boundaries.
    std::str::from_utf8(&bytes[start..end]).unwrap_or_default()
}

/// The `SOAPAction` header (header names are compared in lower case).
static SOAP_ACTION: http::HeaderName = http::HeaderName::from_static("soapaction");

fn canonical_action<'a>(aliases: &NamespaceAliases, action: &'a str) -> Cow<'a, str> {
    match aliases.to_canonical(action) {
        Some((_, canonical)) => Cow::Owned(canonical),
        None => Cow::Borrowed(action),
    }
}

/// The whole body, at most `limit` bytes. A body that arrives in one frame (the usual case)
/// is returned as it is, without a copy.
async fn read_body<B>(
    body: B,
    limit: usize,
) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let mut first: Option<Bytes> = None;
    let mut more: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(mut data) = frame?.into_data() else {
            continue; // trailers
        };
        // Free for `Bytes` (hyper's body chunks): no copy.
        let data = data.copy_to_bytes(data.remaining());
        match &first {
            None => first = Some(data),
            Some(head) => {
                if more.is_empty() {
                    more.extend_from_slice(head);
                }
                more.extend_from_slice(&data);
            }
        }
    }
    Ok(if more.is_empty() {
        first.unwrap_or_default()
    } else {
        Bytes::from(more)
    })
}

fn basic_credentials<B>(req: &Request<B>) -> Result<Option<Credentials>, ()> {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| ())?;
    let pair = String::from_utf8(decoded).map_err(|e| e.into_bytes().zeroize())?;
    Credentials::from_pair(pair).map(Some).ok_or(())
}

fn base_url<B>(req: &Request<B>, scheme: &str) -> String {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'<')
        })
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    format!("{scheme}://{host}{}", req.uri().path())
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> HttpResponse {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn plain(status: StatusCode, text: &'static str) -> HttpResponse {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(text.as_bytes()),
    )
}

fn xml_response(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    response(status, "text/xml; charset=utf-8", Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::body::Frame;

    use super::*;

    /// A body that arrives in the given chunks, then trailers.
    struct Chunks(VecDeque<Frame<Bytes>>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn chunks(parts: &[&'static str]) -> Chunks {
        let mut frames: VecDeque<_> = parts
            .iter()
            .map(|p| Frame::data(Bytes::from_static(p.as_bytes())))
            .collect();
        frames.push_back(Frame::trailers(http::HeaderMap::new()));
        Chunks(frames)
    }

    /// One operation, `{urn:t}Wait`, answered after `delay`.
    struct Slow {
        delay: Duration,
    }

    static WAIT: [OperationInfo; 1] = [OperationInfo {
        name: "Wait",
        request_namespace: "urn:t",
        request_element: "Wait",
        response_namespace: "urn:t",
        response_element: "WaitResponse",
        soap_action: None,
        understood_headers: &[],
    }];

    impl SoapService for Slow {
        fn operations(&self) -> &'static [OperationInfo] {
            &WAIT
        }

        async fn call(
            &self,
            _ctx: &CallContext,
            _op: usize,
            _body: &BodyElement,
        ) -> Result<Reply, CallError> {
            tokio::time::sleep(self.delay).await;
            Ok(Box::new(EmptyReply) as Reply)
        }
    }

    /// A `Slow` server with the shutdown grace period `grace`, see [`slow_server_with`].
    async fn slow_server(
        delay: Duration,
        grace: Duration,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let config = ServerConfig {
            shutdown_grace: grace,
            ..ServerConfig::default()
        };
        slow_server_with(delay, config).await
    }

    /// A `Slow` server with `config` on 127.0.0.1:0; `stop` shuts it down, the task ends when
    /// `serve` returns.
    async fn slow_server_with(
        delay: Duration,
        config: ServerConfig,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let server = SoapServer::new(Slow { delay }, NoAuthentication, PlainFaults, config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        (addr, stop, task)
    }

    async fn send_wait(addr: SocketAddr) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt as _;
        let body = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Wait xmlns="urn:t"/></s:Body></s:Envelope>"#;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        stream
    }

    /// Everything the server sends until it closes the connection.
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt as _;
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
            .await
            .expect("the server closes the connection")
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn shutdown_answers_requests_in_progress_and_closes_idle_connections() {
        let (addr, stop, task) =
            slow_server(Duration::from_millis(300), Duration::from_secs(60)).await;
        let mut busy = send_wait(addr).await;
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Both connections are served before the stop.
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        let answer = read_to_close(&mut busy).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("</soap:Envelope>"), "{answer}");
        assert_eq!(read_to_close(&mut idle).await, "");
        // Well inside the grace period: serve returns once both connections are gone.
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("serve returns when the connections are closed")
            .unwrap()
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    /// A `Slow` server answering at once, with these read timeouts, on 127.0.0.1:0.
    async fn timed_server(
        header_read_timeout: Duration,
        body_read_timeout: Duration,
    ) -> (SocketAddr, oneshot::Sender<()>) {
        let config = ServerConfig {
            header_read_timeout: Some(header_read_timeout),
            body_read_timeout: Some(body_read_timeout),
            ..ServerConfig::default()
        };
        let (addr, stop, _task) = slow_server_with(Duration::ZERO, config).await;
        (addr, stop)
    }

    #[tokio::test]
    async fn beyond_max_connections_a_connection_waits_for_a_free_slot() {
        use tokio::io::AsyncReadExt as _;
        let config = ServerConfig {
            max_connections: 1,
            ..ServerConfig::default()
        };
        let (addr, _stop, _task) = slow_server_with(Duration::ZERO, config).await;
        // The first connection is answered and stays open (keep-alive): it holds the slot.
        let mut first = send_wait(addr).await;
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(20), first.read(&mut buf))
            .await
            .expect("the first connection is answered")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
        // The second is not served while the first is open...
        let mut second = send_wait(addr).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf))
                .await
                .is_err(),
            "served beyond the limit"
        );
        // ...and is as soon as the first closes.
        drop(first);
        let n = tokio::time::timeout(Duration::from_secs(20), second.read(&mut buf))
            .await
            .expect("the second connection is served once the slot is free")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    }

    #[tokio::test]
    async fn a_request_head_that_never_ends_and_an_idle_connection_are_closed() {
        use tokio::io::AsyncWriteExt as _;
        let (addr, _stop) = timed_server(Duration::from_millis(300), Duration::from_secs(60)).await;
        // Half a request head, then nothing (a "slowloris" client).
        let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
        partial
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/")
            .await
            .unwrap();
        // A connection that never sends anything.
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        // A kept-alive connection idle after one answered request.
        let mut idle = send_wait(addr).await;
        let partial_seen = read_to_close(&mut partial).await;
        assert!(!partial_seen.contains(" 200 "), "{partial_seen}");
        assert_eq!(read_to_close(&mut silent).await, "");
        let answered = read_to_close(&mut idle).await;
        assert!(answered.starts_with("HTTP/1.1 200 OK\r\n"), "{answered}");
        assert_eq!(answered.matches("HTTP/1.1").count(), 1, "{answered}");
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_is_answered_408_and_the_connection_closed() {
        use tokio::io::AsyncWriteExt as _;
        let (addr, _stop) = timed_server(Duration::from_secs(60), Duration::from_millis(300)).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\n\
                  Content-Length: 200\r\n\r\n<s:Envelope xmlns:s=",
            )
            .await
            .unwrap();
        let answer = read_to_close(&mut stream).await;
        assert!(
            answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{answer}"
        );
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(
            answer.ends_with("the request body did not arrive in time\n"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn shutdown_gives_up_after_the_grace_period() {
        let (addr, stop, task) =
            slow_server(Duration::from_secs(3600), Duration::from_millis(200)).await;
        let _busy = send_wait(addr).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("serve returns after the grace period")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn connections_count_until_their_registration_ends() {
        let connections = Arc::new(Connections::default());
        let mut first = connections.register();
        let second = connections.register();
        assert_eq!(connections.state().live, 2);
        drop(second);
        assert_eq!(connections.state().live, 1);
        connections.close_all();
        assert!(first.stop.try_recv().is_ok(), "the open one is signalled");
        // One registered while closing is signalled at once.
        let mut late = connections.register();
        assert!(late.stop.try_recv().is_ok());
        drop((first, late));
        let state = connections.state();
        assert_eq!((state.live, state.signals.len()), (0, 0));
    }

    #[test]
    fn unquote_trims_like_trim_matches() {
        for value in [
            "",
            "\"\"",
            "\"",
            "  \"urn:a/B\"  ",
            "urn:a/B",
            "\"\"urn:\"x\"\"",
            "\"unbalanced",
            "tail\"",
            " \"Jürgen\" ",
        ] {
            assert_eq!(unquote(value), value.trim().trim_matches('"'), "{value:?}");
        }
    }

    #[test]
    fn basic_credentials_are_decoded_and_checked() {
        let with = |value: &str| {
            let req = Request::builder()
                .header(AUTHORIZATION, value)
                .body(())
                .unwrap();
            basic_credentials(&req)
                .map(|c| c.map(|c| (c.user().to_owned(), c.password().to_owned())))
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let pair = |u: &str, p: &str| Ok(Some((u.to_owned(), p.to_owned())));
        assert_eq!(
            with(&format!("Basic {}", b64("demo:pw"))),
            pair("demo", "pw")
        );
        // The password may contain colons; the user name ends at the first.
        assert_eq!(
            with(&format!("basic  {} ", b64("demo:a:b:"))),
            pair("demo", "a:b:")
        );
        assert_eq!(with(&format!("Basic {}", b64(":"))), pair("", ""));
        assert_eq!(
            with(&format!("Basic {}", b64("Jürgen:pässwort"))),
            pair("Jürgen", "pässwort")
        );
        for bad in [
            format!("Basic {}", b64("no colon")),
            format!("Bearer {}", b64("demo:pw")),
            "Basic not*base64".to_owned(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode([0xff, b':', 0xfe])
            ),
            "Basic".to_owned(),
        ] {
            assert_eq!(with(&bad), Err(()), "{bad}");
        }
        let none = Request::builder().body(()).unwrap();
        assert!(matches!(basic_credentials(&none), Ok(None)));
    }

    #[test]
    fn credentials_split_at_the_first_colon() {
        let c = Credentials::new("demo", "a:b").unwrap();
        assert_eq!((c.user(), c.password()), ("demo", "a:b"));
        assert_eq!(
            format!("{c:?}"),
            r#"Credentials { user: "demo", password: "<redacted>" }"#
        );
        assert_eq!(c.into_user(), "demo");
        let c = Credentials::from_pair("Jürgen:pä:sswort".to_owned()).unwrap();
        assert_eq!((c.user(), c.password()), ("Jürgen", "pä:sswort"));
        assert_eq!(c.into_user(), "Jürgen");
        assert!(Credentials::new("de:mo", "pw").is_none());
        let c = Credentials::from_pair("u:".to_owned()).unwrap();
        assert_eq!((c.user(), c.password()), ("u", ""));
        assert!(Credentials::from_pair("nocolon".to_owned()).is_none());
    }

    #[tokio::test]
    async fn bodies_are_joined_and_limited() {
        let one = read_body(chunks(&["<a/>"]), 100).await.unwrap();
        assert_eq!(&one[..], b"<a/>");
        let three = read_body(chunks(&["<a>", "x", "</a>"]), 100).await.unwrap();
        assert_eq!(&three[..], b"<a>x</a>");
        let empty = read_body(chunks(&[]), 100).await.unwrap();
        assert!(empty.is_empty());
        let error = read_body(chunks(&["<a>", "xxxxxxxx", "</a>"]), 8)
            .await
            .unwrap_err();
        assert!(error
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some());
    }
}
