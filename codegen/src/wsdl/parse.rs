//! The pull parser for one WSDL document, on quick-xml's namespace-aware [`NsReader`].
//!
//! Element names and QName-valued attributes are resolved against the namespace declarations in
//! scope at the element; prefixes are never compared. Components are appended to the
//! [`Loader`](super::Loader)'s merged [`Definitions`](super::Definitions) as they are read, and
//! `wsdl:import` is followed on the spot, so schemas stay in document order.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{PrefixDeclaration, QName as XmlName, ResolveResult};
use quick_xml::NsReader;

use super::location::{self, Location};
use super::validate::{Check, Direction, Site};
use super::{
    Binding, BindingFault, BindingMessage, BindingOperation, Loader, Message, OpMessage, Operation,
    Part, PartKind, Port, PortType, QName, SchemaSource, Service, SoapBinding, SoapBody,
    SoapHeader, SoapVersion, Style, Use, WsdlError, SOAP11_NS, SOAP12_NS, WSDL_NS, XSD_NS,
};

/// Elements nested deeper than this are refused (quick-xml counts nesting in a `u16`).
const MAX_DEPTH: usize = 256;

/// One element as the handlers see it: its resolved name and start tag, read just now.
struct Elem<'t> {
    /// The resolved element name.
    name: QName,
    /// The start tag (for attributes).
    start: BytesStart<'t>,
    /// `<x/>` rather than `<x>...</x>`.
    empty: bool,
    /// How errors show it: `<wsdl:binding name="X">/<wsdl:operation name="Y">`.
    site: String,
    /// Whether this is the document element (its children start a fresh `site` chain).
    root: bool,
    /// Byte offset of the `<`.
    begin: usize,
    /// Byte offset just past the `>`.
    end: usize,
}

/// Reads one WSDL (or, when imported, XSD) document into the loader.
pub(super) struct DocParser<'t, 'l> {
    text: &'t str,
    reader: NsReader<&'t [u8]>,
    file: Rc<Path>,
    /// Raw names of the open elements.
    open: Vec<String>,
    loader: &'l mut Loader,
    /// Whether this is the file the caller asked for (not an import).
    is_root: bool,
    /// `targetNamespace` of this document's `wsdl:definitions`.
    tns: Option<String>,
    /// Absolute directory of `file`, computed on first use.
    base: Option<PathBuf>,
}

impl<'t, 'l> DocParser<'t, 'l> {
    pub(super) fn new(text: &'t str, file: &Path, loader: &'l mut Loader, is_root: bool) -> Self {
        Self {
            text,
            reader: NsReader::from_str(text),
            file: Rc::from(file),
            open: Vec::new(),
            loader,
            is_root,
            tns: None,
            base: None,
        }
    }

    /// Reads the whole document.
    pub(super) fn parse_document(mut self) -> Result<(), WsdlError> {
        let mut seen_root = false;
        loop {
            let (begin, event) = self.next()?;
            let (start, empty) = match event {
                Event::Start(start) => (start, false),
                Event::Empty(start) => (start, true),
                Event::Eof if seen_root => return Ok(()),
                Event::Eof => return Err(self.invalid("document", "no root element")),
                Event::Text(text) if !is_blank(&text) => {
                    return Err(self.invalid("document", "text outside the root element"));
                }
                _ => continue,
            };
            if seen_root {
                return Err(self.invalid("document", "more than one root element"));
            }
            seen_root = true;
            let root = self.elem(None, start, empty, begin)?;
            if root.name.is(WSDL_NS, "definitions") {
                self.definitions(root)?;
            } else if root.name.is(XSD_NS, "schema") && !self.is_root {
                self.loader
                    .defs
                    .schemas
                    .push(SchemaSource::File(self.file.to_path_buf()));
                self.skip(&root)?;
            } else {
                let problem = format!(
                    "the root element is {}, not {{{WSDL_NS}}}definitions",
                    root.name
                );
                return Err(self.invalid(&root.site, problem));
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // WSDL components

    fn definitions(&mut self, root: Elem<'t>) -> Result<(), WsdlError> {
        self.tns = self.attr(&root, "targetNamespace")?;
        if self.is_root {
            self.loader.defs.name = self.attr(&root, "name")?;
            self.loader.defs.target_namespace = self.tns.clone();
        }
        self.children(&root, |p, child| {
            if child.name.namespace.as_deref() != Some(WSDL_NS) {
                return Ok(()); // extensibility element
            }
            match child.name.local.as_str() {
                "documentation" => {
                    let text = p.documentation(&child)?;
                    if p.is_root && p.loader.defs.documentation.is_none() {
                        p.loader.defs.documentation = text;
                    }
                    Ok(())
                }
                "import" => p.import(&child),
                "types" => p.types(&child),
                "message" => p.message(child),
                "portType" => p.port_type(child),
                "binding" => p.binding(child),
                "service" => p.service(child),
                _ => Ok(()),
            }
        })
    }

    fn import(&mut self, elem: &Elem<'t>) -> Result<(), WsdlError> {
        let Some(location) = self.attr(elem, "location")? else {
            return Ok(()); // a namespace-only import brings nothing to read
        };
        let path = match location::classify(&location) {
            Location::Url => {
                let what = format!("importing \"{location}\" (only local files are read)");
                return Err(self.unsupported(&elem.site, what));
            }
            Location::Absolute(path) => path,
            Location::Relative => location::resolve(&self.base_dir()?, &location),
        };
        self.loader.import(&path)
    }

    fn types(&mut self, elem: &Elem<'t>) -> Result<(), WsdlError> {
        self.children(elem, |p, child| {
            if child.name.is(XSD_NS, "schema") {
                p.inline_schema(&child)?;
            }
            Ok(())
        })
    }

    fn message(&mut self, elem: Elem<'t>) -> Result<(), WsdlError> {
        let name = self.component_name(&elem)?;
        if !self.loader.message_names.insert(name.clone()) {
            return Err(self.duplicate(&elem, "wsdl:message", &name));
        }
        let mut parts: Vec<Part> = Vec::new();
        self.children(&elem, |p, child| {
            if !child.name.is(WSDL_NS, "part") {
                return Ok(());
            }
            let name = p.required(&child, "name")?;
            let element = p.qname_attr(&child, "element")?;
            let type_ = p.qname_attr(&child, "type")?;
            let kind = match (element, type_) {
                (Some((_, q)), None) => PartKind::Element(q),
                (None, Some((_, q))) => PartKind::Type(q),
                (None, None) => {
                    return Err(p.invalid(&child.site, "needs an element or a type attribute"));
                }
                (Some(_), Some(_)) => {
                    return Err(p.invalid(&child.site, "has both element and type attributes"));
                }
            };
            if parts.iter().any(|part| part.name == name) {
                let problem = format!("a wsdl:part named \"{name}\" is already in this message");
                return Err(p.invalid(&child.site, problem));
            }
            parts.push(Part { name, kind });
            Ok(())
        })?;
        self.loader.defs.messages.push(Message { name, parts });
        Ok(())
    }

    fn port_type(&mut self, elem: Elem<'t>) -> Result<(), WsdlError> {
        let name = self.component_name(&elem)?;
        if !self.loader.port_type_names.insert(name.clone()) {
            return Err(self.duplicate(&elem, "wsdl:portType", &name));
        }
        let mut documentation = None;
        let mut operations = Vec::new();
        self.children(&elem, |p, child| {
            if child.name.is(WSDL_NS, "documentation") {
                documentation = p.documentation(&child)?;
            } else if child.name.is(WSDL_NS, "operation") {
                operations.push(p.operation(&child)?);
            }
            Ok(())
        })?;
        self.loader.defs.port_types.push(PortType {
            name,
            documentation,
            operations,
        });
        Ok(())
    }

    fn operation(&mut self, elem: &Elem<'t>) -> Result<Operation, WsdlError> {
        let mut op = Operation {
            name: self.required(elem, "name")?,
            documentation: None,
            input: None,
            output: None,
            faults: Vec::new(),
        };
        self.children(elem, |p, child| {
            if child.name.namespace.as_deref() != Some(WSDL_NS) {
                return Ok(());
            }
            let slot = match child.name.local.as_str() {
                "documentation" => {
                    op.documentation = p.documentation(&child)?;
                    return Ok(());
                }
                "input" => &mut op.input,
                "output" => &mut op.output,
                "fault" => {
                    op.faults.push(p.op_message(&child)?);
                    return Ok(());
                }
                _ => return Ok(()),
            };
            if slot.is_some() {
                return Err(p.invalid(&child.site, "appears twice in one operation"));
            }
            *slot = Some(p.op_message(&child)?);
            Ok(())
        })?;
        Ok(op)
    }

    fn op_message(&mut self, elem: &Elem<'t>) -> Result<OpMessage, WsdlError> {
        let name = self.attr(elem, "name")?;
        let (raw, message) = self.required_qname(elem, "message")?;
        let site = self.site(elem);
        self.loader.checks.push(Check::Message {
            site,
            raw,
            target: message.clone(),
        });
        Ok(OpMessage { name, message })
    }

    fn binding(&mut self, elem: Elem<'t>) -> Result<(), WsdlError> {
        let name = self.component_name(&elem)?;
        if !self.loader.binding_names.insert(name.clone()) {
            return Err(self.duplicate(&elem, "wsdl:binding", &name));
        }
        let (raw, port_type) = self.required_qname(&elem, "type")?;
        let site = self.site(&elem);
        self.loader.checks.push(Check::PortType {
            site,
            raw,
            target: port_type.clone(),
        });
        let mut soap = None;
        let mut operations: Vec<BindingOperation> = Vec::new();
        self.children(&elem, |p, child| {
            if let Some(version) = soap_version(&child.name, "binding") {
                soap = Some(SoapBinding {
                    version,
                    style: p.style(&child)?.unwrap_or_default(),
                    transport: p.attr(&child, "transport")?,
                });
            } else if child.name.is(WSDL_NS, "operation") {
                let op = p.binding_operation(&child, &port_type)?;
                if operations.iter().any(|o| o.name == op.name) {
                    let problem = "names an operation already bound by this binding";
                    return Err(p.invalid(&child.site, problem));
                }
                operations.push(op);
            }
            Ok(())
        })?;
        self.loader.defs.bindings.push(Binding {
            name,
            port_type,
            soap,
            operations,
        });
        Ok(())
    }

    fn binding_operation(
        &mut self,
        elem: &Elem<'t>,
        port_type: &QName,
    ) -> Result<BindingOperation, WsdlError> {
        let name = self.required(elem, "name")?;
        let site = self.site(elem);
        self.loader.checks.push(Check::BindingOperation {
            site,
            port_type: port_type.clone(),
            operation: name.clone(),
        });
        let mut op = BindingOperation {
            name,
            soap_action: None,
            style: None,
            input: None,
            output: None,
            faults: Vec::new(),
        };
        self.children(elem, |p, child| {
            if soap_version(&child.name, "operation").is_some() {
                op.soap_action = p.attr(&child, "soapAction")?;
                op.style = p.style(&child)?;
                return Ok(());
            }
            if child.name.namespace.as_deref() != Some(WSDL_NS) {
                return Ok(());
            }
            let (slot, direction) = match child.name.local.as_str() {
                "input" => (&mut op.input, Direction::Input),
                "output" => (&mut op.output, Direction::Output),
                "fault" => {
                    op.faults
                        .push(p.binding_fault(&child, port_type, &op.name)?);
                    return Ok(());
                }
                _ => return Ok(()),
            };
            if slot.is_some() {
                return Err(p.invalid(&child.site, "appears twice in one operation"));
            }
            *slot = Some(p.binding_message(&child, port_type, &op.name, direction)?);
            Ok(())
        })?;
        Ok(op)
    }

    fn binding_message(
        &mut self,
        elem: &Elem<'t>,
        port_type: &QName,
        operation: &str,
        direction: Direction,
    ) -> Result<BindingMessage, WsdlError> {
        let mut message = BindingMessage::default();
        self.children(elem, |p, child| {
            if soap_version(&child.name, "body").is_some() {
                let parts = p
                    .attr(&child, "parts")?
                    .map(|parts| parts.split_whitespace().map(str::to_owned).collect());
                if let Some(parts) = &parts {
                    let site = p.site(&child);
                    p.loader.checks.push(Check::BodyParts {
                        site,
                        port_type: port_type.clone(),
                        operation: operation.to_owned(),
                        direction,
                        parts: Vec::clone(parts),
                    });
                }
                message.body = Some(SoapBody {
                    use_: p.use_(&child)?,
                    parts,
                    namespace: p.attr(&child, "namespace")?,
                });
            } else if soap_version(&child.name, "header").is_some() {
                let (raw, header_message) = p.required_qname(&child, "message")?;
                let part = p.required(&child, "part")?;
                let use_ = p.use_(&child)?;
                let site = p.site(&child);
                p.loader.checks.push(Check::HeaderPart {
                    site,
                    raw,
                    message: header_message.clone(),
                    part: part.clone(),
                });
                message.headers.push(SoapHeader {
                    message: header_message,
                    part,
                    use_,
                });
            }
            Ok(())
        })?;
        Ok(message)
    }

    fn binding_fault(
        &mut self,
        elem: &Elem<'t>,
        port_type: &QName,
        operation: &str,
    ) -> Result<BindingFault, WsdlError> {
        let mut name = self.attr(elem, "name")?;
        let mut use_ = Use::Literal;
        self.children(elem, |p, child| {
            if soap_version(&child.name, "fault").is_some() {
                use_ = p.use_(&child)?;
                if name.is_none() {
                    name = p.attr(&child, "name")?;
                }
            }
            Ok(())
        })?;
        let Some(name) = name else {
            return Err(self.invalid(&elem.site, "missing attribute \"name\""));
        };
        let site = self.site(elem);
        self.loader.checks.push(Check::Fault {
            site,
            port_type: port_type.clone(),
            operation: operation.to_owned(),
            fault: name.clone(),
        });
        Ok(BindingFault { name, use_ })
    }

    fn service(&mut self, elem: Elem<'t>) -> Result<(), WsdlError> {
        let name = self.component_name(&elem)?;
        if !self.loader.service_names.insert(name.clone()) {
            return Err(self.duplicate(&elem, "wsdl:service", &name));
        }
        let mut documentation = None;
        let mut ports = Vec::new();
        self.children(&elem, |p, child| {
            if child.name.is(WSDL_NS, "documentation") {
                documentation = p.documentation(&child)?;
            } else if child.name.is(WSDL_NS, "port") {
                ports.push(p.port(&child)?);
            }
            Ok(())
        })?;
        self.loader.defs.services.push(Service {
            name,
            documentation,
            ports,
        });
        Ok(())
    }

    fn port(&mut self, elem: &Elem<'t>) -> Result<Port, WsdlError> {
        let name = self.required(elem, "name")?;
        let (raw, binding) = self.required_qname(elem, "binding")?;
        let site = self.site(elem);
        self.loader.checks.push(Check::Binding {
            site,
            raw,
            target: binding.clone(),
        });
        let mut port = Port {
            name,
            binding,
            address: None,
            version: None,
        };
        self.children(elem, |p, child| {
            if let Some(version) = soap_version(&child.name, "address") {
                port.address = p.attr(&child, "location")?;
                port.version = Some(version);
            }
            Ok(())
        })?;
        Ok(port)
    }

    // ---------------------------------------------------------------------------------------
    // Inline schemas

    /// Copies an inline `xs:schema` out as a standalone document: in-scope namespace
    /// declarations added to its start tag, relative `schemaLocation`s made absolute.
    fn inline_schema(&mut self, elem: &Elem<'t>) -> Result<(), WsdlError> {
        let target_namespace = self.attr(elem, "targetNamespace")?;
        let declared = self.declared_prefixes(elem)?;
        let mut inherited = String::new();
        for (prefix, namespace) in self.reader.prefixes() {
            let prefix = match prefix {
                PrefixDeclaration::Default => None,
                PrefixDeclaration::Named(prefix) => Some(prefix),
            };
            if declared.iter().any(|d| d.as_deref() == prefix) {
                continue;
            }
            inherited.push_str(" xmlns");
            if let Some(prefix) = prefix {
                inherited.push(':');
                inherited.push_str(&String::from_utf8_lossy(prefix));
            }
            inherited.push_str("=\"");
            // The resolver keeps values as written (escaped); only a `"` needs care.
            inherited.push_str(&String::from_utf8_lossy(namespace.as_ref()).replace('"', "&quot;"));
            inherited.push('"');
        }

        let close = if elem.empty { "/>" } else { ">" };
        let head_end = elem.end.saturating_sub(close.len());
        let mut out = String::with_capacity(elem.end.saturating_sub(elem.begin) + inherited.len());
        out.push_str(self.slice(elem.begin, head_end)?);
        out.push_str(&inherited);
        out.push_str(close);

        if !elem.empty {
            let depth = self.open.len().saturating_sub(1);
            let mut copied_to = elem.end;
            while self.open.len() > depth {
                let (begin, event) = self.next()?;
                let (start, empty) = match event {
                    Event::Start(start) => (start, false),
                    Event::Empty(start) => (start, true),
                    Event::Eof => break,
                    _ => continue,
                };
                let child = self.elem(Some(elem), start, empty, begin)?;
                if let Some(tag) = self.relocated_tag(&child)? {
                    out.push_str(self.slice(copied_to, child.begin)?);
                    out.push_str(&tag);
                    copied_to = child.end;
                }
            }
            out.push_str(self.slice(copied_to, self.position())?);
        }

        let origin = self.file.to_path_buf();
        self.loader.defs.schemas.push(SchemaSource::Inline {
            text: out,
            target_namespace,
            origin,
        });
        Ok(())
    }

    /// The start tag of an `xs:import` / `xs:include` / `xs:redefine` / `xs:override` with its
    /// relative `schemaLocation` made an absolute `file://` URL; `None` when nothing needs rewriting.
    fn relocated_tag(&mut self, elem: &Elem<'t>) -> Result<Option<String>, WsdlError> {
        let is_reference = elem.name.namespace.as_deref() == Some(XSD_NS)
            && matches!(
                elem.name.local.as_str(),
                "import" | "include" | "redefine" | "override"
            );
        if !is_reference {
            return Ok(None);
        }
        let Some(location) = self.attr(elem, "schemaLocation")? else {
            return Ok(None);
        };
        if location.is_empty() || !matches!(location::classify(&location), Location::Relative) {
            return Ok(None);
        }
        let path = location::resolve(&self.base_dir()?, &location);
        let Some(path) = path.to_str() else {
            let problem = format!("schemaLocation resolves to a non-UTF-8 path {path:?}");
            return Err(self.invalid(&elem.site, problem));
        };
        let mut tag = String::from("<");
        tag.push_str(&String::from_utf8_lossy(elem.start.name().as_ref()));
        for attr in elem.start.attributes() {
            let attr = attr.map_err(|e| self.xml_error(e.into(), elem.begin))?;
            tag.push(' ');
            tag.push_str(&String::from_utf8_lossy(attr.key.as_ref()));
            tag.push_str("=\"");
            if attr.key.as_ref() == b"schemaLocation" {
                tag.push_str(&escape(location::file_url(path)));
            } else {
                tag.push_str(&String::from_utf8_lossy(&attr.value).replace('"', "&quot;"));
            }
            tag.push('"');
        }
        tag.push_str(if elem.empty { "/>" } else { ">" });
        Ok(Some(tag))
    }

    /// The prefixes `elem` declares itself (`None` for a default namespace declaration).
    fn declared_prefixes(&self, elem: &Elem<'t>) -> Result<Vec<Option<Vec<u8>>>, WsdlError> {
        let mut declared = Vec::new();
        for attr in elem.start.attributes() {
            let attr = attr.map_err(|e| self.xml_error(e.into(), elem.begin))?;
            match attr.key.as_namespace_binding() {
                Some(PrefixDeclaration::Default) => declared.push(None),
                Some(PrefixDeclaration::Named(prefix)) => declared.push(Some(prefix.to_vec())),
                None => {}
            }
        }
        Ok(declared)
    }

    // ---------------------------------------------------------------------------------------
    // Attributes and values

    /// The unescaped value of the unqualified attribute `name`.
    fn attr(&self, elem: &Elem<'t>, name: &str) -> Result<Option<String>, WsdlError> {
        for attr in elem.start.attributes() {
            let attr = attr.map_err(|e| self.xml_error(e.into(), elem.begin))?;
            if attr.key.as_ref() == name.as_bytes() {
                let value = attr
                    .decode_and_unescape_value(elem.start.decoder())
                    .map_err(|e| self.xml_error(e, elem.begin))?;
                return Ok(Some(value.into_owned()));
            }
        }
        Ok(None)
    }

    fn required(&self, elem: &Elem<'t>, name: &str) -> Result<String, WsdlError> {
        self.attr(elem, name)?
            .ok_or_else(|| self.invalid(&elem.site, format!("missing attribute \"{name}\"")))
    }

    /// A QName-valued attribute, resolved in the scope of `elem` (which must be the element
    /// read last): `(as written, resolved)`.
    fn qname_attr(
        &self,
        elem: &Elem<'t>,
        name: &str,
    ) -> Result<Option<(String, QName)>, WsdlError> {
        let Some(raw) = self.attr(elem, name)? else {
            return Ok(None);
        };
        let value = raw.trim();
        let (prefix, local) = match value.split_once(':') {
            Some((prefix, local)) => (Some(prefix), local),
            None => (None, value),
        };
        let lexical_ok = !local.is_empty()
            && prefix.is_none_or(|p| !p.is_empty())
            && !local.contains(':')
            && !value.contains(char::is_whitespace);
        if !lexical_ok {
            let problem = format!("{name} \"{raw}\" is not a QName");
            return Err(self.invalid(&elem.site, problem));
        }
        let (resolved, _) = self.reader.resolve_element(XmlName(value.as_bytes()));
        let namespace = match resolved {
            ResolveResult::Bound(ns) => Some(String::from_utf8_lossy(ns.as_ref()).into_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => {
                return Err(self.unbound_prefix(&elem.site, &prefix));
            }
        };
        let qname = QName {
            namespace,
            local: local.to_owned(),
        };
        Ok(Some((value.to_owned(), qname)))
    }

    fn required_qname(&self, elem: &Elem<'t>, name: &str) -> Result<(String, QName), WsdlError> {
        self.qname_attr(elem, name)?
            .ok_or_else(|| self.invalid(&elem.site, format!("missing attribute \"{name}\"")))
    }

    /// `name` of a top-level component, in this document's target namespace.
    fn component_name(&self, elem: &Elem<'t>) -> Result<QName, WsdlError> {
        Ok(QName {
            namespace: self.tns.clone(),
            local: self.required(elem, "name")?,
        })
    }

    fn style(&self, elem: &Elem<'t>) -> Result<Option<Style>, WsdlError> {
        match self.attr(elem, "style")?.as_deref() {
            None => Ok(None),
            Some("document") => Ok(Some(Style::Document)),
            Some("rpc") => Ok(Some(Style::Rpc)),
            Some(other) => {
                let problem = format!("style \"{other}\" is neither \"document\" nor \"rpc\"");
                Err(self.invalid(&elem.site, problem))
            }
        }
    }

    /// `use` of a `soap:body` / `soap:header` / `soap:fault`; `encoded` is refused.
    fn use_(&self, elem: &Elem<'t>) -> Result<Use, WsdlError> {
        match self.attr(elem, "use")?.as_deref() {
            None | Some("literal") => Ok(Use::Literal),
            Some("encoded") => Err(self.unsupported(
                &elem.site,
                "use=\"encoded\" (SOAP encoding, rpc/encoded)".to_owned(),
            )),
            Some(other) => {
                let problem = format!("use \"{other}\" is neither \"literal\" nor \"encoded\"");
                Err(self.invalid(&elem.site, problem))
            }
        }
    }

    /// The trimmed text content of a `wsdl:documentation` (mixed content: all descendant
    /// text), `None` when blank.
    fn documentation(&mut self, elem: &Elem<'t>) -> Result<Option<String>, WsdlError> {
        if elem.empty {
            return Ok(None);
        }
        let depth = self.open.len().saturating_sub(1);
        let mut text = String::new();
        while self.open.len() > depth {
            let (begin, event) = self.next()?;
            let encoding = |e: quick_xml::encoding::EncodingError| self.xml_error(e.into(), begin);
            match event {
                Event::Text(t) => text.push_str(&t.xml_content().map_err(encoding)?),
                Event::CData(t) => text.push_str(&t.xml_content().map_err(encoding)?),
                Event::GeneralRef(r) => {
                    if let Some(c) = r.resolve_char_ref().map_err(|e| self.xml_error(e, begin))? {
                        text.push(c);
                        continue;
                    }
                    let name = r.decode().map_err(encoding)?;
                    match resolve_predefined_entity(&name) {
                        Some(s) => text.push_str(s),
                        None => {
                            let e = quick_xml::escape::EscapeError::UnrecognizedEntity(
                                0..name.len(),
                                name.into_owned(),
                            );
                            return Err(self.xml_error(e.into(), begin));
                        }
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        let text = text.trim();
        Ok((!text.is_empty()).then(|| text.to_owned()))
    }

    // ---------------------------------------------------------------------------------------
    // Walking the tree

    /// The next event with the byte offset where it starts; keeps `open` in step and refuses
    /// end of input inside an element.
    fn next(&mut self) -> Result<(usize, Event<'t>), WsdlError> {
        let begin = self.position();
        let event = match self.reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let at = match e {
                    quick_xml::Error::Namespace(_) => begin,
                    _ => usize::try_from(self.reader.error_position()).unwrap_or(begin),
                };
                return Err(self.xml_error(e, at));
            }
        };
        match &event {
            Event::Start(start) => {
                if self.open.len() >= MAX_DEPTH {
                    let problem = format!("elements nested deeper than {MAX_DEPTH} levels");
                    return Err(self.invalid(&describe(start, None), problem));
                }
                self.open
                    .push(String::from_utf8_lossy(start.name().as_ref()).into_owned());
            }
            Event::End(_) => {
                self.open.pop();
            }
            Event::Eof => {
                if let Some(name) = self.open.last() {
                    let e = quick_xml::errors::IllFormedError::MissingEndTag(name.clone());
                    return Err(self.xml_error(e.into(), begin));
                }
            }
            _ => {}
        }
        Ok((begin, event))
    }

    /// Calls `f` on each child element of `parent` (which must be the element read last);
    /// whatever of a child `f` leaves unread is skipped, text between children is ignored.
    fn children(
        &mut self,
        parent: &Elem<'t>,
        mut f: impl FnMut(&mut Self, Elem<'t>) -> Result<(), WsdlError>,
    ) -> Result<(), WsdlError> {
        if parent.empty {
            return Ok(());
        }
        let depth = self.open.len();
        loop {
            let (begin, event) = self.next()?;
            let (start, empty) = match event {
                Event::Start(start) => (start, false),
                Event::Empty(start) => (start, true),
                Event::End(_) | Event::Eof => return Ok(()),
                _ => continue,
            };
            let child = self.elem(Some(parent), start, empty, begin)?;
            f(self, child)?;
            while self.open.len() > depth {
                if let (_, Event::Eof) = self.next()? {
                    return Ok(());
                }
            }
        }
    }

    /// Skips the content of `elem` (which must be the element read last).
    fn skip(&mut self, elem: &Elem<'t>) -> Result<(), WsdlError> {
        self.children(elem, |_, _| Ok(()))
    }

    /// Resolves the name of a start tag just read.
    fn elem(
        &self,
        parent: Option<&Elem<'t>>,
        start: BytesStart<'t>,
        empty: bool,
        begin: usize,
    ) -> Result<Elem<'t>, WsdlError> {
        let chain = parent.filter(|p| !p.root).map(|p| p.site.as_str());
        let site = describe(&start, chain);
        let (resolved, local) = self.reader.resolve_element(start.name());
        let namespace = match resolved {
            ResolveResult::Bound(ns) => Some(String::from_utf8_lossy(ns.as_ref()).into_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => return Err(self.unbound_prefix(&site, &prefix)),
        };
        let local = String::from_utf8_lossy(local.as_ref()).into_owned();
        Ok(Elem {
            name: QName { namespace, local },
            start,
            empty,
            site,
            root: parent.is_none(),
            begin,
            end: self.position(),
        })
    }

    fn position(&self) -> usize {
        usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX)
    }

    fn slice(&self, from: usize, to: usize) -> Result<&'t str, WsdlError> {
        let text: &'t str = self.text;
        text.get(from..to).ok_or_else(|| WsdlError::Invalid {
            file: self.file.to_path_buf(),
            element: "xs:schema".to_owned(),
            problem: format!("cannot copy bytes {from}..{to} of the inline schema"),
        })
    }

    fn base_dir(&mut self) -> Result<PathBuf, WsdlError> {
        if let Some(base) = &self.base {
            return Ok(base.clone());
        }
        let base = location::base_dir(&self.file)?;
        self.base = Some(base.clone());
        Ok(base)
    }

    fn site(&self, elem: &Elem<'t>) -> Site {
        Site {
            file: Rc::clone(&self.file),
            element: elem.site.clone(),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Errors

    fn xml_error(&self, source: quick_xml::Error, position: usize) -> WsdlError {
        WsdlError::Xml {
            file: self.file.to_path_buf(),
            position: u64::try_from(position).unwrap_or(u64::MAX),
            source,
        }
    }

    fn invalid(&self, element: &str, problem: impl Into<String>) -> WsdlError {
        WsdlError::Invalid {
            file: self.file.to_path_buf(),
            element: element.to_owned(),
            problem: problem.into(),
        }
    }

    fn unsupported(&self, element: &str, what: String) -> WsdlError {
        WsdlError::Unsupported {
            file: self.file.to_path_buf(),
            element: element.to_owned(),
            what,
        }
    }

    fn unbound_prefix(&self, element: &str, prefix: &[u8]) -> WsdlError {
        WsdlError::UnboundPrefix {
            file: self.file.to_path_buf(),
            element: element.to_owned(),
            prefix: String::from_utf8_lossy(prefix).into_owned(),
        }
    }

    fn duplicate(&self, elem: &Elem<'t>, kind: &str, name: &QName) -> WsdlError {
        self.invalid(
            &elem.site,
            format!("a {kind} named {name} is already defined"),
        )
    }
}

/// The SOAP version if `name` is `local` in the SOAP 1.1 or 1.2 WSDL binding namespace.
fn soap_version(name: &QName, local: &str) -> Option<SoapVersion> {
    if name.local != local {
        return None;
    }
    match name.namespace.as_deref() {
        Some(SOAP11_NS) => Some(SoapVersion::Soap11),
        Some(SOAP12_NS) => Some(SoapVersion::Soap12),
        _ => None,
    }
}

/// `<raw:name name="...">`, after `chain/` when nested.
fn describe(start: &BytesStart<'_>, chain: Option<&str>) -> String {
    let mut site = String::new();
    if let Some(chain) = chain {
        site.push_str(chain);
        site.push('/');
    }
    site.push('<');
    site.push_str(&String::from_utf8_lossy(start.name().as_ref()));
    let name = start
        .attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.as_ref() == b"name")
        .map(|a| match a.decode_and_unescape_value(start.decoder()) {
            Ok(v) => v.into_owned(),
            Err(_) => String::from_utf8_lossy(&a.value).into_owned(),
        });
    if let Some(name) = name {
        site.push_str(" name=\"");
        site.push_str(&name);
        site.push('"');
    }
    site.push('>');
    site
}

fn is_blank(text: &[u8]) -> bool {
    text.iter().all(u8::is_ascii_whitespace)
}
