//! How a POST reaches an operation: authentication before the body is read, the body
//! within its size and time limits, then the envelope, the operation it names, the
//! `SOAPAction` and `mustUnderstand` checks, the call and the reply.

use std::borrow::Cow;
use std::net::SocketAddr;

use bytes::{Buf, Bytes};
use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;

use super::rejection::Rejection;
use super::response::{xml_response, HttpResponse};
use super::routing::Post;
use super::{AuthDecision, Authenticator, CallError, SoapServer, SoapService};
use crate::context::CallContext;
use crate::envelope::{self, EnvelopeError, EnvelopeWriter, ParseOptions, SoapVersion};
use crate::namespace::NamespaceAliases;

impl<S: SoapService, A: Authenticator> SoapServer<S, A> {
    /// A POST: authentication before reading the body, then the operation, whose name goes
    /// into `op` once the body names it.
    pub(super) async fn post<B>(
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
            Ok(AuthDecision::Throttled(retry_after)) => {
                return Err(Rejection::TooManyAttempts { retry_after })
            }
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
}

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
