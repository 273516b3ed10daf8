//! What a service method knows about the call it serves.

use std::net::SocketAddr;

use crate::envelope::HeaderBlock;

/// The context of one SOAP call, handed to every service method.
///
/// Authentication puts what it learned about the caller into
/// [`extensions`](CallContext::extensions) (a typed map), so a service can ask
/// for its own principal type with `ctx.extensions.get::<T>()`.
#[derive(Debug, Default)]
pub struct CallContext {
    /// The peer address of the connection, when served over a socket.
    pub remote_addr: Option<SocketAddr>,
    /// The unquoted `SOAPAction` of the request; empty when none was sent.
    pub soap_action: String,
    /// The SOAP header blocks of the request, in document order.
    pub headers: Vec<HeaderBlock>,
    /// Typed values attached by authentication and middleware.
    pub extensions: http::Extensions,
}

impl CallContext {
    /// The first header block with this namespace and local name.
    pub fn header(&self, namespace: &str, local_name: &str) -> Option<&HeaderBlock> {
        self.headers
            .iter()
            .find(|h| h.namespace == namespace && h.local_name == local_name)
    }
}
