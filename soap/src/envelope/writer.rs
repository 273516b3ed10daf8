//! Writing an answer: [`EnvelopeWriter`](super::EnvelopeWriter) around body content.

use std::sync::LazyLock;

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use crate::fault::{FaultCode, SoapFault};
use crate::namespace::NamespaceAliases;

#[allow(unused_imports)]
use super::*;

/// What every envelope of `version` we write starts with: the XML declaration, `Envelope`
/// (declaring `soap`, `xsi` and `xsd`) and `Body`, built once.
pub(super) fn envelope_head(version: SoapVersion) -> &'static str {
    fn build(version: SoapVersion) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{}\" \
             xmlns:xsi=\"{XSI_NS}\" xmlns:xsd=\"{XSD_NS}\"><soap:Body>",
            version.envelope_ns()
        )
    }
    static SOAP11: LazyLock<String> = LazyLock::new(|| build(SoapVersion::Soap11));
    static SOAP12: LazyLock<String> = LazyLock::new(|| build(SoapVersion::Soap12));
    match version {
        SoapVersion::Soap11 => &SOAP11,
        SoapVersion::Soap12 => &SOAP12,
    }
}

/// Writes a response envelope around body content.
///
/// The envelope declares `soap`, `xsi` and `xsd` like ASP.NET web services
/// do. Body content is passed as quick-xml events; namespace declarations in
/// them are rewritten into the alias spelling the request used, if any.
pub struct EnvelopeWriter<'a> {
    writer: Writer<Vec<u8>>,
    version: SoapVersion,
    alias: Option<(&'a NamespaceAliases, usize)>,
}

impl std::fmt::Debug for EnvelopeWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeWriter")
            .field("version", &self.version)
            .field("alias", &self.alias)
            .finish_non_exhaustive()
    }
}

impl<'a> EnvelopeWriter<'a> {
    /// Starts an envelope: XML declaration, `Envelope` and `Body` start tags.
    pub fn new(version: SoapVersion, alias: Option<(&'a NamespaceAliases, usize)>) -> Self {
        let mut buffer = Vec::with_capacity(512);
        buffer.extend_from_slice(envelope_head(version).as_bytes());
        Self {
            writer: Writer::new(buffer),
            version,
            alias,
        }
    }

    /// The SOAP version being written.
    pub fn version(&self) -> SoapVersion {
        self.version
    }

    /// Writes one event of body content.
    pub fn write_event(&mut self, event: Event<'_>) {
        let event = match (self.alias, event) {
            (Some((aliases, index)), Event::Start(s)) => {
                Event::Start(alias_start(aliases, index, s))
            }
            (Some((aliases, index)), Event::Empty(s)) => {
                Event::Empty(alias_start(aliases, index, s))
            }
            (_, event) => event,
        };
        // Writing into a Vec cannot fail.
        let _ = self.writer.write_event(event);
    }

    /// Writes a fault as the body content.
    pub fn write_fault(&mut self, fault: &SoapFault) {
        self.write_event(Event::Start(BytesStart::new("soap:Fault")));
        let mut code = BytesStart::new("faultcode");
        let code_text = match &fault.code {
            FaultCode::Soap(c) => format!("soap:{}", c.local_name()),
            FaultCode::Qualified { namespace, local } => {
                code.push_attribute(("xmlns:a", namespace.as_str()));
                format!("a:{local}")
            }
        };
        self.text_element(code, &code_text);
        let mut string = BytesStart::new("faultstring");
        if let Some(lang) = &fault.lang {
            string.push_attribute(("xml:lang", lang.as_str()));
        }
        self.text_element(string, &fault.string);
        if let Some(actor) = &fault.actor {
            self.text_element(BytesStart::new("faultactor"), actor);
        }
        if !fault.detail.is_empty() {
            self.write_event(Event::Start(BytesStart::new("detail")));
            for entry in &fault.detail {
                let mut start = BytesStart::new(entry.local_name.as_str());
                if let Some(ns) = &entry.namespace {
                    start.push_attribute(("xmlns", ns.as_str()));
                }
                self.text_element(start, &entry.text);
            }
            self.write_event(Event::End(BytesEnd::new("detail")));
        }
        self.write_event(Event::End(BytesEnd::new("soap:Fault")));
    }

    fn text_element(&mut self, start: BytesStart<'_>, text: &str) {
        let end = start.to_end().into_owned();
        self.write_event(Event::Start(start));
        // Escape only what must be: `<`, `>` and `&`.
        let escaped = quick_xml::escape::partial_escape(text);
        self.write_event(Event::Text(BytesText::from_escaped(escaped)));
        self.write_event(Event::End(end));
    }

    /// Closes `Body` and `Envelope` and returns the bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut bytes = self.writer.into_inner();
        bytes.extend_from_slice(b"</soap:Body></soap:Envelope>");
        bytes
    }
}

pub(super) fn alias_start<'e>(
    aliases: &NamespaceAliases,
    index: usize,
    start: BytesStart<'e>,
) -> BytesStart<'e> {
    let needs = start.attributes().flatten().any(|a| {
        let k = a.key.as_ref();
        (k == b"xmlns" || k.starts_with(b"xmlns:"))
            && std::str::from_utf8(&a.value)
                .ok()
                .and_then(|v| aliases.to_alias(index, v))
                .is_some()
    });
    if !needs {
        return start;
    }
    let mut copy = start.to_owned();
    copy.clear_attributes();
    for a in start.attributes().flatten() {
        let k = a.key.as_ref();
        let aliased = (k == b"xmlns" || k.starts_with(b"xmlns:"))
            .then(|| std::str::from_utf8(&a.value).ok())
            .flatten()
            .and_then(|v| aliases.to_alias(index, v));
        match aliased {
            Some(v) => copy.push_attribute((k, v.as_bytes())),
            None => copy.push_attribute(a),
        }
    }
    copy
}
