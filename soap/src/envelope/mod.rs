//! Reading and writing SOAP envelopes.
//!
//! [`parse`] (`reader.rs`) reads a whole envelope in one pass of quick-xml's
//! `Reader`, resolving namespaces itself, and cuts out the header blocks and
//! the body element as standalone XML fragments: every namespace declaration
//! in scope is copied onto the fragment's root, so a fragment can be handed to
//! a generated deserializer on its own. [`EnvelopeWriter`] (`writer.rs`)
//! writes an answer around body content; [`read_fault`] (`fault.rs`) reads a
//! fault out of an answer.

mod fault;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use fault::read_fault;
#[cfg(feature = "server")]
pub(crate) use reader::is_utf8_label;
pub use reader::parse;
pub use writer::EnvelopeWriter;

use crate::namespace::NamespaceAliases;

/// The SOAP 1.1 envelope namespace.
pub const SOAP11_ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The SOAP 1.2 envelope namespace.
pub const SOAP12_ENVELOPE_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
/// The XML Schema instance namespace, declared on every envelope we write.
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The XML Schema namespace, declared on every envelope we write.
pub const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";

/// The default limit on element nesting inside an envelope.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// The SOAP version of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    /// SOAP 1.1 (`text/xml`).
    Soap11,
    /// SOAP 1.2 (`application/soap+xml`).
    Soap12,
}

impl SoapVersion {
    /// The envelope namespace of this version.
    pub fn envelope_ns(self) -> &'static str {
        match self {
            Self::Soap11 => SOAP11_ENVELOPE_NS,
            Self::Soap12 => SOAP12_ENVELOPE_NS,
        }
    }
}

/// A header block of a request, cut out as a standalone fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderBlock {
    /// Namespace name of the block's element (canonical spelling).
    pub namespace: String,
    /// Local name of the block's element.
    pub local_name: String,
    /// Whether `soap:mustUnderstand` is `1` or `true`.
    pub must_understand: bool,
    /// The block as standalone XML.
    pub xml: String,
}

/// The first (and only) element of a `soap:Body`, cut out as a standalone
/// fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyElement {
    /// Namespace name of the element (canonical spelling); empty when the
    /// element is unqualified.
    pub namespace: String,
    /// Local name of the element.
    pub local_name: String,
    /// The element as standalone XML, namespaces in canonical spelling.
    pub xml: String,
    /// Whether the element is bare: no attributes besides namespace declarations and no
    /// content at all (`<x/>` or `<x></x>`; whitespace or a comment inside is content).
    pub bare: bool,
}

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The SOAP version, from the envelope namespace.
    pub version: SoapVersion,
    /// The header blocks, in document order.
    pub headers: Vec<HeaderBlock>,
    /// The body's element; `None` for an empty body.
    pub body: Option<BodyElement>,
    /// The index of the namespace alias the message used, if it used one
    /// (see [`NamespaceAliases`]).
    pub alias: Option<usize>,
}

/// Why an envelope could not be read.
///
/// The messages are safe to show a client: they name what is wrong with the
/// message, never anything about the server.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The bytes are not well-formed XML.
    #[error("the message is not well-formed XML (at byte {position}): {source}")]
    Xml {
        /// Byte offset where reading failed.
        position: u64,
        /// What quick-xml reported.
        #[source]
        source: quick_xml::Error,
    },
    /// The message is not UTF-8 or declares another encoding.
    #[error("the message must be encoded in UTF-8")]
    Encoding,
    /// The message contains a document type declaration.
    #[error("a DOCTYPE is not allowed in a SOAP message")]
    DocType,
    /// The message uses an entity other than the five predefined ones.
    #[error("the entity reference &{0}; is not defined")]
    UndefinedEntity(String),
    /// The root element is not a SOAP envelope.
    #[error("the root element is {found}, not a SOAP Envelope")]
    NotEnvelope {
        /// The root element as `{namespace}local`.
        found: String,
    },
    /// The envelope is in a namespace of another SOAP version.
    #[error("the envelope namespace {namespace} is not supported")]
    VersionMismatch {
        /// The envelope's namespace name.
        namespace: String,
        /// The version it denotes, when it is a known one.
        version: Option<SoapVersion>,
    },
    /// The envelope has no `Body`.
    #[error("the envelope has no Body")]
    MissingBody,
    /// Something other than `Header` then `Body` inside the envelope, more
    /// than one element inside the body, or text where none may be.
    #[error("unexpected content in the envelope: {0}")]
    UnexpectedContent(String),
    /// An element or attribute uses a prefix that is not declared.
    #[error("the namespace prefix of {0} is not declared")]
    UnboundPrefix(String),
    /// Elements are nested deeper than the limit.
    #[error("elements are nested deeper than {0} levels")]
    TooDeep(usize),
    /// The message uses an alternative namespace spelling and the reader
    /// was told to refuse them.
    #[error("the namespace {0} is not the schema's spelling")]
    AliasRefused(String),
}

/// How [`parse`] treats alternative spellings and nesting.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions<'a> {
    /// Known alternative namespace spellings.
    pub aliases: &'a NamespaceAliases,
    /// Accept the aliases (`true`) or refuse a message that uses one.
    pub accept_aliases: bool,
    /// Maximum element nesting depth.
    pub max_depth: usize,
}

impl<'a> ParseOptions<'a> {
    /// Options that accept the given aliases, with the default depth limit.
    pub fn new(aliases: &'a NamespaceAliases) -> Self {
        Self {
            aliases,
            accept_aliases: true,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}
