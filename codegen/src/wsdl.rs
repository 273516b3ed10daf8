//! A WSDL 1.1 reader: [`read_wsdl`] turns a WSDL file (and every WSDL or XSD it imports) into
//! a [`Definitions`] whose references are namespace-resolved [`QName`]s and checked to resolve.
//!
//! ```no_run
//! let defs = umws_codegen::wsdl::read_wsdl("schemas/um.wsdl".as_ref())?;
//! for binding in &defs.bindings {
//!     let port_type = defs.port_type(&binding.port_type).expect("validated");
//!     println!("{} binds {} operations", binding.name, port_type.operations.len());
//! }
//! # Ok::<(), umws_codegen::wsdl::WsdlError>(())
//! ```
//!
//! What is refused: SOAP encoding (`use="encoded"`), imports of remote URLs, and any dangling
//! reference between WSDL components. References into schemas (`wsdl:part element|type`) are
//! left to the schema reader.

mod error;
mod location;
mod model;
mod parse;
mod validate;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use error::WsdlError;
pub use model::{
    Binding, BindingFault, BindingMessage, BindingOperation, Definitions, Message, OpMessage,
    Operation, Part, PartKind, Port, PortType, QName, SchemaSource, Service, SoapBinding, SoapBody,
    SoapHeader, SoapVersion, Style, Use,
};

/// The WSDL 1.1 namespace.
pub const WSDL_NS: &str = "http://schemas.xmlsoap.org/wsdl/";
/// The WSDL 1.1 SOAP 1.1 binding namespace.
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
/// The WSDL 1.1 SOAP 1.2 binding namespace.
pub const SOAP12_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";
/// The XML Schema namespace.
pub const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";

/// Reads the WSDL file at `path`, follows its `wsdl:import`s (WSDL or XSD, relative to the
/// importing file; each file is read once, so import cycles are harmless) and validates the
/// merged result.
pub fn read_wsdl(path: &Path) -> Result<Definitions, WsdlError> {
    let text = read_text(path)?;
    load(&text, path)
}

/// Like [`read_wsdl`] with the root document's text given; `source` names it in errors and is
/// the base for relative `location`s and `schemaLocation`s.
pub fn parse_wsdl(text: &str, source: &Path) -> Result<Definitions, WsdlError> {
    load(text, source)
}

fn load(text: &str, source: &Path) -> Result<Definitions, WsdlError> {
    let mut loader = Loader::new(source);
    loader.seen.insert(location::identity(source));
    parse::DocParser::new(strip_bom(text), source, &mut loader, true).parse_document()?;
    validate::run(&loader.defs, &loader.checks)?;
    Ok(loader.defs)
}

/// The merged description being built, shared by the parsers of the root file and its imports.
struct Loader {
    defs: Definitions,
    /// References to check once everything is read.
    checks: Vec<validate::Check>,
    /// Files already read (canonical paths).
    seen: HashSet<PathBuf>,
    message_names: HashSet<QName>,
    port_type_names: HashSet<QName>,
    binding_names: HashSet<QName>,
    service_names: HashSet<QName>,
}

impl Loader {
    fn new(source: &Path) -> Self {
        Self {
            defs: Definitions {
                source: source.to_path_buf(),
                name: None,
                target_namespace: None,
                documentation: None,
                schemas: Vec::new(),
                messages: Vec::new(),
                port_types: Vec::new(),
                bindings: Vec::new(),
                services: Vec::new(),
            },
            checks: Vec::new(),
            seen: HashSet::new(),
            message_names: HashSet::new(),
            port_type_names: HashSet::new(),
            binding_names: HashSet::new(),
            service_names: HashSet::new(),
        }
    }

    /// Reads an imported WSDL (merging it) or notes an imported XSD; files already read are
    /// skipped.
    fn import(&mut self, path: &Path) -> Result<(), WsdlError> {
        if !self.seen.insert(location::identity(path)) {
            return Ok(());
        }
        let text = read_text(path)?;
        parse::DocParser::new(strip_bom(&text), path, self, false).parse_document()
    }
}

fn read_text(path: &Path) -> Result<String, WsdlError> {
    let bytes = std::fs::read(path).map_err(|source| WsdlError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| WsdlError::Encoding {
        path: path.to_path_buf(),
        source: e.utf8_error(),
    })
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}
