//! Carrying typed calls to a remote SOAP service over hyper.
//!
//! A generated `<PortType>Client` holds a [`Transport`] and has one async
//! method per operation; each calls [`Transport::call`].

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use xsd_parser_types::quick_xml::{WithDeserializer, WithSerializer};

use crate::envelope::{self, EnvelopeError, EnvelopeWriter, ParseOptions, SoapVersion};
use crate::fault::SoapFault;
use crate::namespace::NamespaceAliases;
use crate::xml::XmlError;

/// The largest response body a client reads.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Why a call did not produce a typed answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not an `http://` URL.
    #[error("invalid endpoint URL {url}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request could not be written (a value does not fit its schema).
    #[error("cannot write the request: {0}")]
    Serialize(#[source] XmlError),
    /// Connecting or talking to the server failed.
    #[error("cannot reach the server: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The server did not answer in time.
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with an HTTP error and no SOAP fault.
    #[error("HTTP {status}: {body}")]
    Http {
        /// The status code.
        status: StatusCode,
        /// The start of the response body, as text.
        body: String,
    },
    /// The server answered with a SOAP fault.
    #[error(transparent)]
    Fault(Box<SoapFault>),
    /// The answer is not a SOAP envelope holding the expected element.
    #[error("the response cannot be read")]
    InvalidResponse {
        /// What is wrong with it.
        #[source]
        cause: Box<ResponseError>,
        /// The response body as it arrived (at most [`MAX_RESPONSE_BYTES`]).
        body: Bytes,
    },
}

/// Why a response could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// The body is not a SOAP envelope (or its fault is malformed).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The envelope's Body is empty where the operation answers an element.
    #[error("the response Body is empty")]
    EmptyBody,
    /// The Body's element does not read as the operation's response type.
    #[error(transparent)]
    Element(#[from] XmlError),
}

impl ClientError {
    /// The fault, when the server answered with one.
    pub fn fault(&self) -> Option<&SoapFault> {
        match self {
            Self::Fault(f) => Some(f),
            _ => None,
        }
    }

    /// The response body, when the server answered something unreadable.
    pub fn response_body(&self) -> Option<&[u8]> {
        match self {
            Self::InvalidResponse { body, .. } => Some(body),
            _ => None,
        }
    }
}

/// An HTTP connection pool bound to one endpoint, with credentials and a
/// timeout.
#[derive(Clone)]
pub struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: Uri,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("endpoint", &self.endpoint)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Transport {
    /// A transport for the service at `endpoint` (an `http://` URL), with a
    /// 30 second timeout and no credentials. For `https://` use
    /// [`with_tls`](Self::with_tls).
    pub fn new(endpoint: &str) -> Result<Self, ClientError> {
        Self::build(endpoint, None)
    }

    /// A transport for `endpoint` (`https://` or `http://`) that trusts the
    /// servers `tls` trusts (e.g. [`crate::tls::client_config`] with a CA).
    pub fn with_tls(endpoint: &str, tls: rustls::ClientConfig) -> Result<Self, ClientError> {
        Self::build(endpoint, Some(tls))
    }

    fn build(endpoint: &str, tls: Option<rustls::ClientConfig>) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: endpoint.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = endpoint.parse().map_err(|_| invalid("not a URL"))?;
        match (uri.scheme_str(), &tls) {
            (Some("http"), _) | (Some("https"), Some(_)) => {}
            (Some("https"), None) => {
                return Err(invalid(
                    "an https:// URL needs a TLS setting (a trusted CA)",
                ))
            }
            _ => return Err(invalid("the URL must start with http:// or https://")),
        }
        if uri.host().is_none() {
            return Err(invalid("the URL has no host"));
        }
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match tls {
            Some(config) => builder.with_tls_config(config),
            // Plain http only; the TLS setting is never used.
            None => builder.with_tls_config(
                rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid(&e.to_string()))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            ),
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            client,
            endpoint: uri,
            authorization: None,
            timeout: Duration::from_secs(30),
        })
    }

    /// Sends HTTP Basic credentials with every call.
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Self {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.authorization = HeaderValue::from_str(&format!("Basic {token}"))
            .ok()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        self
    }

    /// Sets the time a whole call (connect, send, receive) may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &Uri {
        &self.endpoint
    }

    /// Sends `request` with `SOAPAction: "action"` and reads the answer as
    /// `Resp`, or the fault the server sent.
    pub async fn call<Req, Resp>(&self, action: &str, request: &Req) -> Result<Resp, ClientError>
    where
        Req: WithSerializer,
        Resp: WithDeserializer,
    {
        let (status, bytes) = self.send(action, request).await?;
        read_response(status, bytes)
    }

    /// Sends `request` to an operation without output: succeeds on an
    /// answer with an empty body.
    pub async fn call_one_way<Req>(&self, action: &str, request: &Req) -> Result<(), ClientError>
    where
        Req: WithSerializer,
    {
        let (status, bytes) = self.send(action, request).await?;
        read_envelope(status, &bytes)
            .map(|_| ())
            .map_err(|e| e.with_body(bytes))
    }

    /// Writes `request` into an envelope and exchanges it within the timeout.
    async fn send<Req: WithSerializer>(
        &self,
        action: &str,
        request: &Req,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let mut out = EnvelopeWriter::new(SoapVersion::Soap11, None);
        crate::xml::write_body(request, &mut out).map_err(ClientError::Serialize)?;
        let body = out.finish();
        tokio::time::timeout(self.timeout, self.exchange(action, body))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    async fn exchange(
        &self,
        action: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{action}\""));
        if let Some(auth) = &self.authorization {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Transport(Box::new(e)))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| ClientError::Transport(Box::new(e)))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(ClientError::Transport)?
            .to_bytes();
        Ok((status, bytes))
    }
}

fn read_response<Resp: WithDeserializer>(
    status: StatusCode,
    bytes: Bytes,
) -> Result<Resp, ClientError> {
    let read = read_envelope(status, &bytes).and_then(|body| {
        let body = body.ok_or(Failure::Invalid(ResponseError::EmptyBody))?;
        crate::xml::from_fragment(&body.xml).map_err(|e| Failure::Invalid(e.into()))
    });
    read.map_err(|e| e.with_body(bytes))
}

/// A failure to read an answer, before the body is attached to it.
enum Failure {
    /// Anything but an unreadable answer.
    Error(ClientError),
    /// An unreadable answer.
    Invalid(ResponseError),
}

impl Failure {
    fn with_body(self, body: Bytes) -> ClientError {
        match self {
            Self::Error(e) => e,
            Self::Invalid(cause) => ClientError::InvalidResponse {
                cause: Box::new(cause),
                body,
            },
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Self::Error(e)
    }
}

/// Reads an answer envelope: its body element, or the fault it carries.
fn read_envelope(
    status: StatusCode,
    bytes: &[u8],
) -> Result<Option<envelope::BodyElement>, Failure> {
    let http_error = || ClientError::Http {
        status,
        body: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
    };
    if status != StatusCode::OK && status != StatusCode::INTERNAL_SERVER_ERROR {
        return Err(http_error().into());
    }
    let aliases = NamespaceAliases::none();
    let envelope = match envelope::parse(bytes, ParseOptions::new(&aliases)) {
        Ok(env) => env,
        Err(_) if status != StatusCode::OK => return Err(http_error().into()),
        Err(e) => return Err(Failure::Invalid(e.into())),
    };
    if let Some(body) = &envelope.body {
        if let Some(fault) = envelope::read_fault(body, envelope.version) {
            let fault = fault.map_err(|e| Failure::Invalid(e.into()))?;
            return Err(ClientError::Fault(Box::new(fault)).into());
        }
    }
    if status != StatusCode::OK {
        return Err(http_error().into());
    }
    Ok(envelope.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

    fn read(status: StatusCode, body: &'static str) -> Result<String, ClientError> {
        read_response::<String>(status, Bytes::from_static(body.as_bytes()))
    }

    #[test]
    fn an_answer_that_is_no_envelope_keeps_its_cause_and_bytes() {
        let err = read(StatusCode::OK, "<not-an-envelope").expect_err("not an answer");
        match &err {
            ClientError::InvalidResponse { cause, body } => {
                assert!(matches!(**cause, ResponseError::Envelope(_)), "{cause:?}");
                assert_eq!(&body[..], b"<not-an-envelope");
            }
            other => panic!("expected InvalidResponse, got {other:?}"),
        }
        assert_eq!(err.response_body(), Some(&b"<not-an-envelope"[..]));
        assert!(
            std::error::Error::source(&err).is_some(),
            "the cause is the error's source"
        );
    }

    #[test]
    fn an_empty_body_is_named_as_such() {
        let text = format!("<s:Envelope xmlns:s=\"{ENVELOPE_NS}\"><s:Body/></s:Envelope>");
        let text: &'static str = Box::leak(text.into_boxed_str());
        let err = read(StatusCode::OK, text).expect_err("no element");
        assert!(
            matches!(
                &err,
                ClientError::InvalidResponse { cause, body }
                    if matches!(**cause, ResponseError::EmptyBody) && body == text.as_bytes()
            ),
            "{err:?}"
        );
    }

    #[test]
    fn other_failures_carry_no_body() {
        let err = read(StatusCode::NOT_FOUND, "nothing here").expect_err("404");
        assert!(matches!(err, ClientError::Http { .. }), "{err:?}");
        assert_eq!(err.response_body(), None);
    }
}
