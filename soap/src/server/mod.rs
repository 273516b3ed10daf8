//! Serving a generated SOAP service over hyper.
//!
//! A generated `<PortType>Server<T>` implements [`SoapService`]; wrap it in a
//! [`SoapServer`] with an [`Authenticator`] and a [`FaultStyle`], then
//! [`serve`](SoapServer::serve) it on a listener. The server owns the HTTP
//! side (paths, `?wsdl`, Basic authentication, body limit, content type,
//! `SOAPAction`) and turns every problem into exactly one response.
//!
//! One file per question:
//! - here: what a generated service implements ([`SoapService`]) and the server that
//!   wraps it ([`SoapServer`]);
//! - `config`: the settings ([`ServerConfig`]) and their defaults;
//! - `auth`: who may call ([`Credentials`] from a Basic `Authorization` header, an
//!   [`Authenticator`] and its [`AuthDecision`]);
//! - `routing`: which requests reach the service ([`SoapServer::handle`]: path, method,
//!   `?wsdl`, content type, credentials, `SOAPAction`);
//! - `dispatch`: how a POST reaches an operation (authentication, the body within its
//!   size and time limits, the envelope, the operation, the call, the reply);
//! - `rejection`: what a refused request is answered (`Rejection`, the one place that
//!   turns a refusal into a status code or a fault, and the [`FaultStyle`] of requests
//!   the service never saw); `response`: how an answer is put on the wire;
//! - `serve`: the accept loop ([`SoapServer::serve`], [`SoapServer::serve_tls`]): the
//!   connection limit, the request-head timeout, TLS handshakes, graceful stop;
//!   `connections`: the registry of open connections that a stop signals.

use std::future::Future;
use std::sync::Arc;

use crate::context::CallContext;
use crate::envelope::{BodyElement, EnvelopeWriter};
use crate::fault::SoapFault;
use crate::operation::OperationInfo;
use crate::xml::XmlError;

mod auth;
mod config;
mod connections;
mod dispatch;
mod rejection;
mod response;
mod routing;
mod serve;

pub use auth::{AuthDecision, Authenticator, Credentials, NoAuthentication};
pub use config::{
    ServerConfig, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
};
pub use rejection::{FaultStyle, PlainFaults, RequestProblem};

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
}
