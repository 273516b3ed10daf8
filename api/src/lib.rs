//! **umws-api**: the Exchange Unified Messaging (UM) web service as Rust types,
//! generated from the repository's `schemas/` by its top-level `build.rs`.
//!
//! This crate is what a program needs to talk UM, and nothing of the umws
//! service (no store, mail, CLI or configuration):
//!
//! - [`types`]: the XML types of the schemas, with quick-xml (de)serializers;
//! - [`namespaces`]: the namespace URIs;
//! - [`um_service_soap`]: the operation names, SOAP actions and the
//!   [`OPERATIONS`](um_service_soap::OPERATIONS) table; the async service trait
//!   [`UmServiceSoap`](um_service_soap::UmServiceSoap) and its dispatcher
//!   `UmServiceSoapServer` (feature `server`); the typed client
//!   `UmServiceSoapClient` (feature `client`);
//! - [`client`] (feature `client`): everything needed to make the client's
//!   transport - endpoint, Basic credentials, TLS with a CA, timeout - so that
//!   a client program depends on this crate alone (plus an async runtime).
//!
//! ```toml
//! [dependencies]
//! umws-api = { path = "...", default-features = false, features = ["client"] }
//! tokio = { version = "1", features = ["rt-multi-thread", "macros"] }
//! ```
//!
//! See `examples/client.rs` for a client program.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The code generated from `schemas/um.wsdl` (`generated/um.rs` at the top of
/// the repository is the reviewed copy).
#[allow(
    missing_docs,
    dead_code,
    unused_imports,
    unused_variables,
    unused_mut,
    unreachable_patterns,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/um.rs"));
}

pub use generated::{namespaces, types, um_service_soap};

/// The source this crate was compiled from (what `build.rs` wrote), for the
/// test that compares it with `generated/um.rs` and a fresh generation.
#[doc(hidden)]
pub const GENERATED_SOURCE: &str = include_str!(concat!(env!("OUT_DIR"), "/um.rs"));

/// The SOAP runtime the generated code calls into (envelope, faults, server
/// glue, client transport).
pub use umws_soap as soap;
pub use umws_soap::{CallContext, FaultCode, OperationInfo, SoapFault};

/// What a client program needs: the typed client and the pieces of its
/// transport.
#[cfg(feature = "client")]
pub mod client {
    pub use crate::um_service_soap::UmServiceSoapClient;
    /// rustls, for a TLS setting made by hand ([`Transport::with_tls`]).
    pub use rustls;
    pub use umws_soap::client::{ClientError, Transport, MAX_RESPONSE_BYTES};
    pub use umws_soap::tls::{client_config, TlsError};
}
