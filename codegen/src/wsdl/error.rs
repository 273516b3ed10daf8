//! [`WsdlError`]: everything that can go wrong reading a WSDL, each naming the file and element.

use std::path::PathBuf;

/// Why a WSDL could not be read.
///
/// Every variant names the file; those about content also name the element, written as in the
/// source (`<wsdl:binding name="X">`, nested elements joined with `/`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsdlError {
    /// A file (the WSDL itself or one it imports) could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not UTF-8 text.
    #[error("{}: not UTF-8 text: {source}", path.display())]
    Encoding {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::str::Utf8Error,
    },
    /// The XML is not well-formed.
    #[error("{}: malformed XML at byte {position}: {source}", file.display())]
    Xml {
        /// The file.
        file: PathBuf,
        /// Byte offset of the problem in the file.
        position: u64,
        /// The parser's complaint.
        #[source]
        source: quick_xml::Error,
    },
    /// An element name or QName value uses a prefix that no `xmlns:` declaration binds.
    #[error("{}: {element}: prefix \"{prefix}\" is not bound to a namespace", file.display())]
    UnboundPrefix {
        /// The file.
        file: PathBuf,
        /// The element with the name or value.
        element: String,
        /// The unbound prefix.
        prefix: String,
    },
    /// A reference names nothing: `type "tns:Y" names no wsdl:portType`.
    #[error("{}: {element}: {attribute} \"{reference}\" names no {target}", file.display())]
    Unresolved {
        /// The file containing the reference.
        file: PathBuf,
        /// The element holding the reference.
        element: String,
        /// The attribute holding the reference.
        attribute: String,
        /// The reference as written.
        reference: String,
        /// What it should have named.
        target: String,
    },
    /// A valid WSDL construct that this toolchain does not handle (rpc/encoded, remote imports).
    #[error("{}: {element}: {what} is not supported", file.display())]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// The element.
        element: String,
        /// What is not supported.
        what: String,
    },
    /// The WSDL breaks a WSDL 1.1 rule (missing attribute, bad value, duplicate name, ...).
    #[error("{}: {element}: {problem}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The element.
        element: String,
        /// What is wrong.
        problem: String,
    },
}
