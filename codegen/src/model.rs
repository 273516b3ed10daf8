//! The checked model of a WSDL that the generator works from: for each port
//! type, its SOAP binding and its document/literal operations with the
//! elements of their messages. [`crate::types`] generates the Rust types of
//! those elements; [`crate::service`] emits the constants, traits,
//! dispatchers and clients of the port types.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::error::Error;
use crate::wsdl::{Definitions, PartKind, QName, SoapVersion, Style};

/// What the generator needs from a WSDL, checked.
pub(crate) struct Model {
    /// The WSDL file, for error messages.
    pub file: PathBuf,
    /// The WSDL's `targetNamespace`.
    pub target_namespace: Option<String>,
    /// The port types that have a SOAP binding, in binding order (SOAP 1.1 first).
    pub port_types: Vec<PortTypeModel>,
}

/// A port type and the SOAP binding chosen for it.
pub(crate) struct PortTypeModel {
    /// The port type's name.
    pub name: String,
    /// Its `wsdl:documentation`.
    pub doc: Option<String>,
    /// The name of the binding chosen for it.
    pub binding: String,
    /// The SOAP version of that binding.
    pub version: SoapVersion,
    /// Its operations, in WSDL order.
    pub operations: Vec<OperationModel>,
}

/// A document/literal operation: the elements of its messages.
pub(crate) struct OperationModel {
    /// The operation's name.
    pub name: String,
    /// Its `wsdl:documentation`.
    pub doc: Option<String>,
    /// Its SOAPAction, when the binding gives a non-empty one.
    pub action: Option<String>,
    /// The element of the input body.
    pub input: QName,
    /// The element of the output body; `None` for a one-way operation.
    pub output: Option<QName>,
    /// The elements of the input's SOAP header parts.
    pub headers: Vec<QName>,
}

impl Model {
    /// Picks, for each port type, its SOAP binding (SOAP 1.1 preferred) and
    /// checks that every operation is document/literal with element parts.
    pub(crate) fn new(defs: &Definitions) -> Result<Self, Error> {
        let file = defs.source.clone();
        let unsupported = |element: String, reason: String| Error::Unsupported {
            file: file.clone(),
            element,
            reason,
        };
        let mut port_types: Vec<PortTypeModel> = Vec::new();
        let mut bindings: Vec<_> = defs.bindings.iter().filter(|b| b.soap.is_some()).collect();
        // SOAP 1.1 bindings first, so they win over SOAP 1.2 ones.
        bindings.sort_by_key(|b| match b.soap.as_ref().map(|s| s.version) {
            Some(SoapVersion::Soap11) => 0,
            _ => 1,
        });
        for binding in bindings {
            let Some(soap) = &binding.soap else { continue };
            if port_types.iter().any(|p| p.name == binding.port_type.local) {
                continue;
            }
            let Some(port_type) = defs.port_type(&binding.port_type) else {
                continue;
            };
            let mut operations = Vec::new();
            for op in &port_type.operations {
                let element = format!("<wsdl:operation name=\"{}\">", op.name);
                let bop = binding.operation(&op.name);
                let style = bop.and_then(|b| b.style).unwrap_or(soap.style);
                if style == Style::Rpc {
                    return Err(unsupported(
                        element,
                        "rpc style is not supported; use document/literal (wrapped)".into(),
                    ));
                }
                let body_parts = |input: bool| {
                    bop.and_then(|b| {
                        if input {
                            b.input.as_ref()
                        } else {
                            b.output.as_ref()
                        }
                    })
                    .and_then(|m| m.body.as_ref())
                    .and_then(|b| b.parts.clone())
                };
                let part_element = |input: bool| -> Result<Option<QName>, Error> {
                    let msg = if input { &op.input } else { &op.output };
                    let Some(msg) = msg else { return Ok(None) };
                    let Some(message) = defs.message(&msg.message) else {
                        return Ok(None);
                    };
                    let wanted = body_parts(input);
                    let parts: Vec<_> = message
                        .parts
                        .iter()
                        .filter(|p| wanted.as_ref().is_none_or(|w| w.contains(&p.name)))
                        .collect();
                    match parts.as_slice() {
                        [] => Ok(None),
                        [part] => match &part.kind {
                            PartKind::Element(q) => Ok(Some(q.clone())),
                            PartKind::Type(_) => Err(unsupported(
                                element.clone(),
                                format!(
                                    "part \"{}\" of message \"{}\" names a type; document style needs element parts",
                                    part.name, message.name.local
                                ),
                            )),
                        },
                        _ => Err(unsupported(
                            element.clone(),
                            format!(
                                "message \"{}\" puts {} parts in the body; document/literal wrapped needs exactly one",
                                message.name.local,
                                parts.len()
                            ),
                        )),
                    }
                };
                let Some(input) = part_element(true)? else {
                    return Err(unsupported(
                        element,
                        "the operation has no input element; notification operations are not supported"
                            .into(),
                    ));
                };
                let output = part_element(false)?;
                let mut headers = Vec::new();
                if let Some(h) = bop.and_then(|b| b.input.as_ref()) {
                    for header in &h.headers {
                        let part = defs
                            .message(&header.message)
                            .and_then(|m| m.part(&header.part));
                        if let Some(PartKind::Element(q)) = part.map(|p| &p.kind) {
                            headers.push(q.clone());
                        }
                    }
                }
                operations.push(OperationModel {
                    name: op.name.clone(),
                    doc: op.documentation.clone(),
                    action: bop
                        .and_then(|b| b.soap_action.clone())
                        .filter(|a| !a.is_empty()),
                    input,
                    output,
                    headers,
                });
            }
            port_types.push(PortTypeModel {
                name: port_type.name.local.clone(),
                doc: port_type.documentation.clone(),
                binding: binding.name.local.clone(),
                version: soap.version,
                operations,
            });
        }
        Ok(Self {
            file,
            target_namespace: defs.target_namespace.clone(),
            port_types,
        })
    }

    /// Every element a body part names, in order, without repeats.
    pub(crate) fn elements(&self) -> impl Iterator<Item = &QName> {
        let mut seen = BTreeSet::new();
        self.port_types
            .iter()
            .flat_map(|p| &p.operations)
            .flat_map(|o| std::iter::once(&o.input).chain(o.output.as_ref()))
            .filter(move |q| seen.insert((q.namespace.clone(), q.local.clone())))
    }
}
