//! Static descriptions of the operations of a generated service, and a typed
//! walk over them ([`OperationVisitor`]).

use xsd_parser_types::quick_xml::{WithDeserializer, WithSerializer};

/// One operation of a port type, as the generator read it from the WSDL.
///
/// The generated dispatcher hands a table of these to the server; the server
/// finds the operation by the qualified name of the body's first element and
/// cross-checks the `SOAPAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationInfo {
    /// The WSDL operation name, e.g. `ResetPIN`.
    pub name: &'static str,
    /// The namespace of the request element.
    pub request_namespace: &'static str,
    /// The local name of the request element.
    pub request_element: &'static str,
    /// The namespace of the response element.
    pub response_namespace: &'static str,
    /// The local name of the response element.
    pub response_element: &'static str,
    /// The `soapAction` of the binding, when it declares one.
    pub soap_action: Option<&'static str>,
    /// The header elements (namespace, local name) the binding declares for
    /// the input; a `mustUnderstand` header outside this list is refused.
    pub understood_headers: &'static [(&'static str, &'static str)],
}

impl OperationInfo {
    /// Whether `action` (the unquoted `SOAPAction` of a request) names this
    /// operation. An empty action names no operation and is always accepted,
    /// as SOAP 1.1 allows.
    pub fn accepts_action(&self, action: &str) -> bool {
        action.is_empty() || self.soap_action.is_none_or(|own| own == action)
    }
}

/// A request or response element type of a generated service: it can be
/// written and read as XML, compared and sent between threads.
pub trait Message:
    WithSerializer + WithDeserializer + Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static
{
}

impl<T> Message for T where
    T: WithSerializer
        + WithDeserializer
        + Clone
        + std::fmt::Debug
        + PartialEq
        + Send
        + Sync
        + 'static
{
}

/// Receives every operation of a port type with its request and response
/// types, from the generated `for_each_operation`.
///
/// Code that must handle every operation (a command-line client, example
/// messages in tests, a benchmark) walks the operations this way instead of
/// listing them, so that an operation added to the schema reaches it without
/// an edit, or makes a test say what is missing.
pub trait OperationVisitor {
    /// An operation that answers `Resp` to `Req`.
    fn visit<Req: Message, Resp: Message>(&mut self, op: &'static OperationInfo);

    /// An operation without output (one-way). Ignored unless overridden.
    fn visit_one_way<Req: Message>(&mut self, op: &'static OperationInfo) {
        let _ = op;
    }
}
