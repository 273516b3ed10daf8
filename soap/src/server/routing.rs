//! Which requests reach the service: [`SoapServer::handle`] checks the path, the method
//! and, for a POST, the headers (content type, credentials, `SOAPAction`, declared length)
//! before anything waits; a GET is answered with the WSDL or a schema.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use hyper::body::Body;

use super::auth::basic_credentials;
use super::rejection::Rejection;
use super::response::{xml_response, HttpResponse};
use super::{Authenticator, Credentials, SoapServer, SoapService};
use crate::envelope;

/// A request after its synchronous checks.
enum Routed<B> {
    /// A GET, answered with the WSDL or a schema.
    Document(HttpResponse),
    /// A POST whose headers passed.
    Post(Post<B>),
}

/// What a POST needs once its headers are checked.
pub(super) struct Post<B> {
    pub(super) credentials: Option<Credentials>,
    pub(super) soap_action: String,
    /// `Content-Length` declares more than the limit.
    pub(super) too_large: bool,
    pub(super) body: B,
}

impl<S: SoapService, A: Authenticator> SoapServer<S, A> {
    /// Answers one HTTP request. Never panics on any input; every problem
    /// becomes a status code or a fault.
    ///
    /// The checks that need no waiting run before the returned future is built, so that it
    /// holds only what the waiting steps need (authentication, the body, the operation),
    /// not the request: hyper keeps the future of every request in progress.
    ///
    /// Runs on a tokio runtime with its timer enabled (`enable_time` or `enable_all`) when
    /// [`ServerConfig::body_read_timeout`](super::ServerConfig::body_read_timeout) is set,
    /// as it is by default.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
