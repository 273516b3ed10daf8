//! Errors of code generation. Each names the file and the element at fault.

use std::path::PathBuf;

use crate::wsdl::WsdlError;

/// Why code could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The WSDL could not be read or is invalid.
    #[error(transparent)]
    Wsdl(#[from] WsdlError),
    /// xsd-parser could not read or translate the schemas.
    #[error("{}: the schemas cannot be translated: {source}", file.display())]
    Schema {
        /// The WSDL whose schemas failed.
        file: PathBuf,
        /// What xsd-parser reported.
        #[source]
        source: Box<xsd_parser::Error>,
    },
    /// The WSDL uses a construct the generator does not support.
    #[error("{}: {element}: {reason}", file.display())]
    Unsupported {
        /// The WSDL file.
        file: PathBuf,
        /// The WSDL element, e.g. `<wsdl:operation name="X">`.
        element: String,
        /// What is not supported and why.
        reason: String,
    },
    /// A message part names an element that no schema defines.
    #[error("{}: {element}: its message names the element {{{namespace}}}{local}, which no schema defines", file.display())]
    UnknownElement {
        /// The WSDL file.
        file: PathBuf,
        /// The WSDL element whose message names the schema element, e.g.
        /// `<wsdl:operation name="X">`.
        element: String,
        /// The schema element's namespace.
        namespace: String,
        /// The schema element's local name.
        local: String,
    },
    /// A schema defines the element a message part names, but xsd-parser
    /// generated no Rust type of its own for it (e.g. a built-in type).
    #[error("{}: {element}: no Rust type {expected} was generated for {{{namespace}}}{local}", file.display())]
    MissingType {
        /// The WSDL file.
        file: PathBuf,
        /// The WSDL element that names the schema element.
        element: String,
        /// The schema element's namespace.
        namespace: String,
        /// The schema element's local name.
        local: String,
        /// The Rust type name looked for.
        expected: String,
    },
    /// The emitted tokens are not valid Rust (a generator bug).
    #[error("{}: the generated code does not parse: {source}", file.display())]
    Emit {
        /// The WSDL file.
        file: PathBuf,
        /// The parse error.
        #[source]
        source: syn::Error,
    },
    /// `OUT_DIR` is not set (not running in a build script).
    #[error("OUT_DIR is not set; call compile() from a build script, or use generate()")]
    NoOutDir,
    /// Writing the output failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
