//! Reading a `soap:Fault` out of an answer's body ([`read_fault`](super::read_fault)), for
//! the client.

use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

use crate::fault::{DetailEntry, FaultCode, SoapFault};

#[allow(unused_imports)]
use super::*;

/// Reads a `soap:Fault` body element (see [`BodyElement`]) into a
/// [`SoapFault`]. Returns `None` when the element is not a fault of
/// `version`.
pub fn read_fault(
    body: &BodyElement,
    version: SoapVersion,
) -> Option<Result<SoapFault, EnvelopeError>> {
    let env_ns = version.envelope_ns();
    if body.namespace != env_ns || body.local_name != "Fault" {
        return None;
    }
    Some(read_fault_fragment(&body.xml, env_ns))
}

pub(super) fn read_fault_fragment(xml: &str, env_ns: &str) -> Result<SoapFault, EnvelopeError> {
    let mut reader = NsReader::from_str(xml);
    let mut fault = SoapFault::new(FaultCode::qualified("", ""), "");
    let mut depth = 0usize;
    let mut current: Option<(Option<String>, String)> = None;
    let mut text = String::new();
    let mut in_detail = false;
    loop {
        let position = reader.buffer_position();
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|source| EnvelopeError::Xml { position, source })?;
        let ns = match resolved {
            ResolveResult::Bound(Namespace(ns)) => Some(String::from_utf8_lossy(ns).into_owned()),
            _ => None,
        };
        match event {
            Event::Start(s) => {
                depth += 1;
                let local = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                if depth == 2 && local == "detail" {
                    in_detail = true;
                } else if depth == 2 || (in_detail && depth == 3) {
                    if local == "faultstring" {
                        for a in s.attributes().flatten() {
                            if a.key.as_ref() == b"xml:lang" {
                                fault.lang = Some(String::from_utf8_lossy(&a.value).into_owned());
                            }
                        }
                    }
                    current = Some((ns, local));
                    text.clear();
                }
            }
            Event::Empty(s) if in_detail && depth == 2 => {
                let local = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                fault.detail.push(DetailEntry {
                    namespace: ns,
                    local_name: local,
                    text: String::new(),
                });
            }
            Event::Text(t) if current.is_some() => {
                text.push_str(&t.decode().map_err(|e| EnvelopeError::Xml {
                    position,
                    source: e.into(),
                })?);
            }
            Event::GeneralRef(r) if current.is_some() => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else {
                    let name = r.decode().unwrap_or_default();
                    if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
                        text.push_str(s);
                    }
                }
            }
            Event::CData(c) if current.is_some() => {
                text.push_str(&String::from_utf8_lossy(&c));
            }
            Event::End(_) => {
                if in_detail && depth == 3 {
                    if let Some((ns, local)) = current.take() {
                        fault.detail.push(DetailEntry {
                            namespace: ns,
                            local_name: local,
                            text: std::mem::take(&mut text),
                        });
                    }
                } else if depth == 2 {
                    if in_detail {
                        in_detail = false;
                    } else if let Some((_, local)) = current.take() {
                        let value = std::mem::take(&mut text);
                        match local.as_str() {
                            "faultcode" => {
                                let trimmed = value.trim();
                                let (prefix, local) = match trimmed.split_once(':') {
                                    Some((p, l)) => (Some(p), l),
                                    None => (None, trimmed),
                                };
                                let (res, _) = reader.resolver().resolve(
                                    quick_xml::name::QName(
                                        prefix
                                            .map(|p| format!("{p}:x"))
                                            .unwrap_or_else(|| "x".into())
                                            .as_bytes(),
                                    ),
                                    true,
                                );
                                let code_ns = match res {
                                    ResolveResult::Bound(Namespace(ns)) => {
                                        Some(String::from_utf8_lossy(ns).into_owned())
                                    }
                                    _ => None,
                                };
                                fault.code =
                                    FaultCode::from_resolved(code_ns.as_deref(), local, env_ns);
                            }
                            "faultstring" => fault.string = value,
                            "faultactor" => fault.actor = Some(value),
                            _ => {}
                        }
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(fault)
}
