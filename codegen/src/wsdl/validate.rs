//! The checks that need the whole merged description: every reference between WSDL components
//! resolves. Parsing records one [`Check`] per reference, in document order; [`run`] checks them
//! once every imported file has been read.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use super::{Definitions, Message, PortType, QName, WsdlError};

/// Where a reference was written: the file and the element (as [`WsdlError`] shows it).
#[derive(Debug, Clone)]
pub(super) struct Site {
    /// The file.
    pub file: Rc<Path>,
    /// The element, e.g. `<wsdl:binding name="X">/<wsdl:operation name="Y">`.
    pub element: String,
}

impl Site {
    fn unresolved(&self, attribute: &str, reference: &str, target: String) -> WsdlError {
        WsdlError::Unresolved {
            file: self.file.to_path_buf(),
            element: self.element.clone(),
            attribute: attribute.to_owned(),
            reference: reference.to_owned(),
            target,
        }
    }
}

/// Input or output of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Input,
    Output,
}

/// One reference to check.
#[derive(Debug)]
pub(super) enum Check {
    /// `wsdl:binding type` names a `wsdl:portType`.
    PortType {
        site: Site,
        raw: String,
        target: QName,
    },
    /// `wsdl:input|output|fault message` names a `wsdl:message`.
    Message {
        site: Site,
        raw: String,
        target: QName,
    },
    /// `wsdl:port binding` names a `wsdl:binding`.
    Binding {
        site: Site,
        raw: String,
        target: QName,
    },
    /// `soap:header message part` names a part of a `wsdl:message`.
    HeaderPart {
        site: Site,
        raw: String,
        message: QName,
        part: String,
    },
    /// A binding operation names an operation of the bound port type.
    BindingOperation {
        site: Site,
        port_type: QName,
        operation: String,
    },
    /// `soap:body parts` names parts of the operation's input or output message.
    BodyParts {
        site: Site,
        port_type: QName,
        operation: String,
        direction: Direction,
        parts: Vec<String>,
    },
    /// A binding `wsdl:fault name` names a fault of the port type operation.
    Fault {
        site: Site,
        port_type: QName,
        operation: String,
        fault: String,
    },
}

/// Runs every check against the merged description; the first failure is the error.
pub(super) fn run(defs: &Definitions, checks: &[Check]) -> Result<(), WsdlError> {
    let messages: HashMap<&QName, &Message> = defs.messages.iter().map(|m| (&m.name, m)).collect();
    let port_types: HashMap<&QName, &PortType> =
        defs.port_types.iter().map(|p| (&p.name, p)).collect();
    let operation =
        |port_type: &QName, name: &str| port_types.get(port_type).and_then(|p| p.operation(name));

    for check in checks {
        match check {
            Check::PortType { site, raw, target } => {
                if !port_types.contains_key(target) {
                    return Err(site.unresolved("type", raw, "wsdl:portType".into()));
                }
            }
            Check::Message { site, raw, target } => {
                if !messages.contains_key(target) {
                    return Err(site.unresolved("message", raw, "wsdl:message".into()));
                }
            }
            Check::Binding { site, raw, target } => {
                if defs.binding(target).is_none() {
                    return Err(site.unresolved("binding", raw, "wsdl:binding".into()));
                }
            }
            Check::HeaderPart {
                site,
                raw,
                message,
                part,
            } => match messages.get(message) {
                None => return Err(site.unresolved("message", raw, "wsdl:message".into())),
                Some(m) if m.part(part).is_none() => {
                    let target = format!("wsdl:part of wsdl:message \"{raw}\"");
                    return Err(site.unresolved("part", part, target));
                }
                Some(_) => {}
            },
            Check::BindingOperation {
                site,
                port_type,
                operation: name,
            } => {
                // A missing port type is reported by its own `Check::PortType`.
                if port_types.contains_key(port_type) && operation(port_type, name).is_none() {
                    let target = format!("operation of wsdl:portType \"{port_type}\"");
                    return Err(site.unresolved("name", name, target));
                }
            }
            Check::BodyParts {
                site,
                port_type,
                operation: name,
                direction,
                parts,
            } => {
                let op = operation(port_type, name);
                let op_message = op.and_then(|op| match direction {
                    Direction::Input => op.input.as_ref(),
                    Direction::Output => op.output.as_ref(),
                });
                let Some(op_message) = op_message else {
                    if op.is_some() {
                        let which = match direction {
                            Direction::Input => "input",
                            Direction::Output => "output",
                        };
                        return Err(WsdlError::Invalid {
                            file: site.file.to_path_buf(),
                            element: site.element.clone(),
                            problem: format!(
                                "operation \"{name}\" of wsdl:portType \"{port_type}\" has no \
                                 wsdl:{which}"
                            ),
                        });
                    }
                    continue;
                };
                if let Some(message) = messages.get(&op_message.message) {
                    if let Some(missing) = parts.iter().find(|p| message.part(p).is_none()) {
                        let target = format!("wsdl:part of wsdl:message \"{}\"", message.name);
                        return Err(site.unresolved("parts", missing, target));
                    }
                }
            }
            Check::Fault {
                site,
                port_type,
                operation: name,
                fault,
            } => {
                if let Some(op) = operation(port_type, name) {
                    if !op.faults.iter().any(|f| f.name.as_deref() == Some(fault)) {
                        let target = format!(
                            "wsdl:fault of operation \"{name}\" of wsdl:portType \"{port_type}\""
                        );
                        return Err(site.unresolved("name", fault, target));
                    }
                }
            }
        }
    }
    Ok(())
}
