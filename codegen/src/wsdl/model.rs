//! The WSDL 1.1 description model: what [`read_wsdl`](super::read_wsdl) returns.
//!
//! Every cross reference is a resolved [`QName`]; prefixes are gone by the time a value lands
//! here, so two documents that spell the same namespace with different prefixes compare equal.

use std::fmt;
use std::path::PathBuf;

/// A namespace-resolved qualified name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QName {
    /// The namespace URI, `None` for a name in no namespace.
    pub namespace: Option<String>,
    /// The local part.
    pub local: String,
}

impl QName {
    /// A name in `namespace`.
    pub fn new(namespace: impl Into<String>, local: impl Into<String>) -> Self {
        Self {
            namespace: Some(namespace.into()),
            local: local.into(),
        }
    }

    /// A name in no namespace.
    pub fn local(local: impl Into<String>) -> Self {
        Self {
            namespace: None,
            local: local.into(),
        }
    }

    /// Whether this is `local` in `namespace`.
    pub fn is(&self, namespace: &str, local: &str) -> bool {
        self.namespace.as_deref() == Some(namespace) && self.local == local
    }
}

impl fmt::Display for QName {
    /// Clark notation: `{namespace}local`, or just `local` without a namespace.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{{{ns}}}{}", self.local),
            None => f.write_str(&self.local),
        }
    }
}

/// A WSDL 1.1 description, merged with every WSDL it imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definitions {
    /// The WSDL file read (as given to [`read_wsdl`](super::read_wsdl) / [`parse_wsdl`](super::parse_wsdl)).
    pub source: PathBuf,
    /// `name` of the root `wsdl:definitions`.
    pub name: Option<String>,
    /// `targetNamespace` of the root `wsdl:definitions`.
    pub target_namespace: Option<String>,
    /// Trimmed text of the root `wsdl:documentation`.
    pub documentation: Option<String>,
    /// Schemas in document order, including those of imported WSDLs.
    pub schemas: Vec<SchemaSource>,
    /// Every `wsdl:message`, in document order.
    pub messages: Vec<Message>,
    /// Every `wsdl:portType`, in document order.
    pub port_types: Vec<PortType>,
    /// Every `wsdl:binding` (SOAP or not), in document order.
    pub bindings: Vec<Binding>,
    /// Every `wsdl:service`; empty for a WSDL that only describes interfaces.
    pub services: Vec<Service>,
}

impl Definitions {
    /// The `wsdl:message` named `q`.
    pub fn message(&self, q: &QName) -> Option<&Message> {
        self.messages.iter().find(|m| &m.name == q)
    }

    /// The `wsdl:portType` named `q`.
    pub fn port_type(&self, q: &QName) -> Option<&PortType> {
        self.port_types.iter().find(|p| &p.name == q)
    }

    /// The `wsdl:binding` named `q`.
    pub fn binding(&self, q: &QName) -> Option<&Binding> {
        self.bindings.iter().find(|b| &b.name == q)
    }

    /// The `wsdl:service` named `q`.
    pub fn service(&self, q: &QName) -> Option<&Service> {
        self.services.iter().find(|s| &s.name == q)
    }
}

/// Where a schema comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaSource {
    /// An inline `xs:schema` from `wsdl:types`, as standalone XML text.
    ///
    /// Every namespace declaration in scope (e.g. on `wsdl:definitions`) is copied onto the
    /// `xs:schema` start tag unless the schema redeclares it, and a relative `schemaLocation` on
    /// `xs:import` / `xs:include` / `xs:redefine` / `xs:override` is rewritten to an absolute
    /// `file://` URL resolved against the directory of the WSDL that contains the schema.
    /// Absolute paths and URLs are left alone.
    Inline {
        /// The schema document.
        text: String,
        /// `targetNamespace` of the `xs:schema`.
        target_namespace: Option<String>,
        /// The WSDL file the schema was found in.
        origin: PathBuf,
    },
    /// A schema file named by `wsdl:import location="x.xsd"`, resolved against the importing
    /// WSDL's directory.
    File(PathBuf),
}

/// A `wsdl:message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message name, in the target namespace of its `wsdl:definitions`.
    pub name: QName,
    /// Its parts, in document order.
    pub parts: Vec<Part>,
}

impl Message {
    /// The part called `name`.
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }
}

/// A `wsdl:part`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The part name.
    pub name: String,
    /// What the part holds.
    pub kind: PartKind,
}

/// What a `wsdl:part` refers to (not checked against the schemas here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind {
    /// `element="..."`: a global schema element (document style).
    Element(QName),
    /// `type="..."`: a schema type (rpc style).
    Type(QName),
}

/// A `wsdl:portType`: the abstract interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortType {
    /// The port type name, in the target namespace of its `wsdl:definitions`.
    pub name: QName,
    /// Trimmed text of its `wsdl:documentation`.
    pub documentation: Option<String>,
    /// Its operations, in document order.
    pub operations: Vec<Operation>,
}

impl PortType {
    /// The operation called `name` (the first, if the name is overloaded).
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| o.name == name)
    }
}

/// An operation of a `wsdl:portType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The operation name.
    pub name: String,
    /// Trimmed text of its `wsdl:documentation`.
    pub documentation: Option<String>,
    /// `wsdl:input`.
    pub input: Option<OpMessage>,
    /// `wsdl:output`.
    pub output: Option<OpMessage>,
    /// `wsdl:fault`s, in document order.
    pub faults: Vec<OpMessage>,
}

/// A `wsdl:input` / `wsdl:output` / `wsdl:fault` of a port type operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpMessage {
    /// Its `name` attribute.
    pub name: Option<String>,
    /// The `wsdl:message` it carries.
    pub message: QName,
}

/// The SOAP version of a binding or port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SoapVersion {
    /// SOAP 1.1 (`http://schemas.xmlsoap.org/wsdl/soap/`).
    Soap11,
    /// SOAP 1.2 (`http://schemas.xmlsoap.org/wsdl/soap12/`).
    Soap12,
}

/// `style` of a SOAP binding or operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Style {
    /// The body holds the parts' elements directly.
    #[default]
    Document,
    /// The body holds one wrapper element named for the operation.
    Rpc,
}

/// `use` of a SOAP body, header or fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Use {
    /// Parts are described by their schema.
    #[default]
    Literal,
    /// SOAP section 5 encoding (refused by the validator).
    Encoded,
}

/// A `wsdl:binding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The binding name, in the target namespace of its `wsdl:definitions`.
    pub name: QName,
    /// The `wsdl:portType` it binds.
    pub port_type: QName,
    /// The `soap:binding` / `soap12:binding`; `None` for a non-SOAP binding (e.g. `http:binding`).
    pub soap: Option<SoapBinding>,
    /// Its operations, in document order.
    pub operations: Vec<BindingOperation>,
}

impl Binding {
    /// The binding operation called `name`.
    pub fn operation(&self, name: &str) -> Option<&BindingOperation> {
        self.operations.iter().find(|o| o.name == name)
    }
}

/// A `soap:binding` / `soap12:binding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapBinding {
    /// Which SOAP namespace the element was in.
    pub version: SoapVersion,
    /// The default style of the binding's operations ([`Style::Document`] when absent).
    pub style: Style,
    /// The `transport` URI.
    pub transport: Option<String>,
}

/// An operation of a `wsdl:binding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingOperation {
    /// The operation name (matches an operation of the bound port type).
    pub name: String,
    /// `soap:operation soapAction`.
    pub soap_action: Option<String>,
    /// `soap:operation style`, overriding the binding's.
    pub style: Option<Style>,
    /// `wsdl:input`.
    pub input: Option<BindingMessage>,
    /// `wsdl:output`.
    pub output: Option<BindingMessage>,
    /// `wsdl:fault`s, in document order.
    pub faults: Vec<BindingFault>,
}

/// The SOAP details of a binding operation's input or output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BindingMessage {
    /// `soap:body`.
    pub body: Option<SoapBody>,
    /// `soap:header`s, in document order.
    pub headers: Vec<SoapHeader>,
}

/// A `soap:body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapBody {
    /// `use`.
    pub use_: Use,
    /// `parts`: the message parts that go in the body; `None` means all of them.
    pub parts: Option<Vec<String>>,
    /// `namespace` (rpc style wrapper namespace).
    pub namespace: Option<String>,
}

/// A `soap:header`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapHeader {
    /// The `wsdl:message` holding the header part.
    pub message: QName,
    /// The part of that message that is the header.
    pub part: String,
    /// `use`.
    pub use_: Use,
}

/// A `wsdl:fault` of a binding operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingFault {
    /// The fault name (matches a fault of the port type operation).
    pub name: String,
    /// `soap:fault use`.
    pub use_: Use,
}

/// A `wsdl:service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service name, in the target namespace of its `wsdl:definitions`.
    pub name: QName,
    /// Trimmed text of its `wsdl:documentation`.
    pub documentation: Option<String>,
    /// Its ports, in document order.
    pub ports: Vec<Port>,
}

/// A `wsdl:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The port name.
    pub name: String,
    /// The `wsdl:binding` it exposes.
    pub binding: QName,
    /// `soap:address location` / `soap12:address location`.
    pub address: Option<String>,
    /// Which SOAP address element was present, if any.
    pub version: Option<SoapVersion>,
}
