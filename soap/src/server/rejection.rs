//! What a refused request is answered: [`Rejection`], one variant per reason and the one
//! place that turns it into an HTTP response, and the [`FaultStyle`] that words the fault
//! of a request the service never saw.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, WWW_AUTHENTICATE};
use http::StatusCode;

use super::response::{plain, response, xml_response, HttpResponse};
use super::ServerConfig;
use crate::envelope::{EnvelopeError, EnvelopeWriter, SoapVersion};
use crate::fault::SoapFault;
use crate::wsdl::RenderError;
use crate::xml::XmlError;

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

/// Why a request gets no answer from the service: every refusal at the HTTP level and
/// every fault the server writes, one variant per reason.
///
/// The request path returns `Result<_, Rejection>`; [`into_response`](Self::into_response)
/// is the one place that turns a rejection into its status code, headers and body (as
/// axum's `IntoResponse` does), and [`log`](Self::log) the one place that logs what the
/// client is not told.
#[derive(Debug, thiserror::Error)]
pub(super) enum Rejection {
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
    /// The [`Authenticator`](super::Authenticator) refused the credentials unchecked after
    /// failed attempts ([`AuthDecision::Throttled`](super::AuthDecision::Throttled)): `429`
    /// with `Retry-After` in whole seconds (at least 1).
    #[error("too many failed logons")]
    TooManyAttempts {
        /// How long until an attempt may be checked again.
        retry_after: std::time::Duration,
    },
    /// The [`Authenticator`](super::Authenticator) itself failed: `503`.
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
    pub(super) fn log(&self, remote_addr: Option<SocketAddr>) {
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
    pub(super) fn into_response(
        self,
        config: &ServerConfig,
        faults: &dyn FaultStyle,
    ) -> HttpResponse {
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
            Self::TooManyAttempts { retry_after } => {
                let mut r = plain(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed logons; retry later\n",
                );
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
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
