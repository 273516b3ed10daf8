//! The WSDL 1.1 reader (`umws_codegen::wsdl`): fixtures under `tests/fixtures/wsdl/`, the UM
//! WSDL from `schemas/`, and (when present) Microsoft's Exchange Web Services WSDL from
//! `../shared/ews/`.

use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use umws_codegen::wsdl::{
    parse_wsdl, read_wsdl, Definitions, PartKind, QName, SchemaSource, SoapVersion, Style, Use,
    WsdlError, WSDL_NS, XSD_NS,
};

const UM_WSDL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/um.wsdl");
const EWS_WSDL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/ews/services.wsdl"
);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wsdl")
        .join(name)
}

fn read(name: &str) -> Definitions {
    read_wsdl(&fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn read_err(name: &str) -> WsdlError {
    match read_wsdl(&fixture(name)) {
        Ok(_) => panic!("{name} was accepted"),
        Err(e) => e,
    }
}

fn q(namespace: &str, local: &str) -> QName {
    QName::new(namespace, local)
}

fn inline_schemas(defs: &Definitions) -> Vec<(&str, Option<&str>, &Path)> {
    defs.schemas
        .iter()
        .filter_map(|s| match s {
            SchemaSource::Inline {
                text,
                target_namespace,
                origin,
            } => Some((text.as_str(), target_namespace.as_deref(), origin.as_path())),
            SchemaSource::File(_) => None,
        })
        .collect()
}

/// Parses a standalone schema text and returns, for every element, its resolved namespace and
/// local name plus its `schemaLocation` attribute; panics on an unbound prefix.
fn schema_elements(text: &str) -> Vec<(Option<String>, String, Option<String>)> {
    let mut reader = NsReader::from_str(text);
    let mut out = Vec::new();
    loop {
        let (ns, event) = reader.read_resolved_event().expect("well-formed schema");
        let start = match event {
            Event::Start(s) | Event::Empty(s) => s,
            Event::Eof => return out,
            _ => continue,
        };
        let ns = match ns {
            ResolveResult::Bound(ns) => Some(String::from_utf8(ns.as_ref().to_vec()).unwrap()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => panic!("unbound prefix {p:?} in\n{text}"),
        };
        let local = String::from_utf8(start.local_name().as_ref().to_vec()).unwrap();
        // Rewritten locations are file:// URLs; the fixture paths need no
        // percent-decoding, so the path is what follows the scheme.
        let location = start.try_get_attribute("schemaLocation").unwrap().map(|a| {
            let value = a
                .decode_and_unescape_value(start.decoder())
                .unwrap()
                .into_owned();
            value
                .strip_prefix("file://")
                .map(str::to_owned)
                .unwrap_or(value)
        });
        out.push((ns, local, location));
    }
}

#[test]
fn document_literal_with_element_parts() {
    let defs = read("doc_literal.wsdl");
    assert_eq!(defs.source, fixture("doc_literal.wsdl"));
    assert_eq!(defs.name.as_deref(), Some("Calculator"));
    assert_eq!(defs.target_namespace.as_deref(), Some("urn:example:calc"));

    let add_in = defs.message(&q("urn:example:calc", "AddIn")).unwrap();
    assert_eq!(add_in.parts.len(), 2);
    assert_eq!(add_in.parts[0].name, "parameters");
    assert_eq!(
        add_in.parts[0].kind,
        PartKind::Element(q("urn:example:calc", "Add"))
    );
    // `h:` is declared on wsdl:definitions only; resolved, not kept as a prefix.
    assert_eq!(
        add_in.parts[1].kind,
        PartKind::Element(q("urn:example:headers", "Session"))
    );

    let port_type = defs.port_type(&q("urn:example:calc", "CalcSoap")).unwrap();
    let add = port_type.operation("Add").unwrap();
    let input = add.input.as_ref().unwrap();
    assert_eq!(input.name.as_deref(), Some("AddRequest"));
    assert_eq!(input.message, q("urn:example:calc", "AddIn"));
    assert_eq!(
        add.output.as_ref().unwrap().message,
        q("urn:example:calc", "AddOut")
    );

    let binding = defs.binding(&q("urn:example:calc", "CalcSoap")).unwrap();
    assert_eq!(binding.port_type, port_type.name);
    let soap = binding.soap.as_ref().unwrap();
    assert_eq!(soap.version, SoapVersion::Soap11);
    assert_eq!(soap.style, Style::Document, "style defaults to document");
    assert_eq!(
        soap.transport.as_deref(),
        Some("http://schemas.xmlsoap.org/soap/http")
    );
    let op = binding.operation("Add").unwrap();
    assert_eq!(op.soap_action.as_deref(), Some("urn:example:calc/Add"));
    assert_eq!(op.style, Some(Style::Document));
    let body = op.input.as_ref().unwrap().body.as_ref().unwrap();
    assert_eq!(body.use_, Use::Literal);
    assert_eq!(body.parts, Some(vec!["parameters".to_owned()]));
    assert_eq!(
        op.output.as_ref().unwrap().body.as_ref().unwrap().parts,
        None
    );

    assert_eq!(defs.services.len(), 1);
    let service = &defs.services[0];
    assert_eq!(service.name, q("urn:example:calc", "Calculator"));
    assert_eq!(service.ports.len(), 1);
    assert_eq!(service.ports[0].name, "CalcSoap");
    assert_eq!(service.ports[0].binding, binding.name);
    assert_eq!(
        service.ports[0].address.as_deref(),
        Some("http://localhost:8080/calc")
    );
    assert_eq!(service.ports[0].version, Some(SoapVersion::Soap11));
}

#[test]
fn documentation_is_the_trimmed_text_of_mixed_content() {
    let defs = read("doc_literal.wsdl");
    assert_eq!(
        defs.documentation.as_deref(),
        Some("A tiny calculator & friends.")
    );
    let port_type = &defs.port_types[0];
    assert_eq!(
        port_type.documentation.as_deref(),
        Some("The calculator interface.")
    );
    assert_eq!(
        port_type.operations[0].documentation.as_deref(),
        Some("Adds two numbers.")
    );
    assert_eq!(
        defs.services[0].documentation.as_deref(),
        Some("Where the calculator lives.")
    );
}

#[test]
fn soap_header_names_message_and_part() {
    let defs = read("doc_literal.wsdl");
    let input = defs.bindings[0].operations[0].input.as_ref().unwrap();
    assert_eq!(input.headers.len(), 1);
    let header = &input.headers[0];
    assert_eq!(header.message, q("urn:example:calc", "AddIn"));
    assert_eq!(header.part, "session");
    assert_eq!(header.use_, Use::Literal);
    let out = defs.bindings[0].operations[0].output.as_ref().unwrap();
    assert!(out.headers.is_empty());
}

#[test]
fn soap_fault_binds_port_type_fault() {
    let defs = read("doc_literal.wsdl");
    let op = &defs.port_types[0].operations[0];
    assert_eq!(op.faults.len(), 1);
    assert_eq!(op.faults[0].name.as_deref(), Some("Overflow"));
    assert_eq!(op.faults[0].message, q("urn:example:calc", "OverflowFault"));
    let faults = &defs.bindings[0].operations[0].faults;
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].name, "Overflow");
    assert_eq!(faults[0].use_, Use::Literal);
}

#[test]
fn two_inline_schemas_stand_alone_with_inherited_namespaces() {
    let defs = read("doc_literal.wsdl");
    let schemas = inline_schemas(&defs);
    assert_eq!(schemas.len(), 2);
    assert_eq!(defs.schemas.len(), 2);

    let (first, tns, origin) = schemas[0];
    assert_eq!(tns, Some("urn:example:calc"));
    assert_eq!(origin, fixture("doc_literal.wsdl"));
    assert!(first.starts_with("<xs:schema targetNamespace=\"urn:example:calc\""));
    assert!(first.trim_end().ends_with("</xs:schema>"));
    for decl in [
        "xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"",
        "xmlns:tns=\"urn:example:calc\"",
        "xmlns:h=\"urn:example:headers\"",
        "xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\"",
    ] {
        assert!(first.contains(decl), "{decl} missing from\n{first}");
    }
    let elements = schema_elements(first);
    assert_eq!(elements[0].0.as_deref(), Some(XSD_NS));
    assert_eq!(elements[0].1, "schema");
    assert!(first.contains("<xs:element name=\"Overflow\" type=\"xs:string\"/>"));

    // The second schema redeclares `tns`: its own declaration wins and is not duplicated.
    let (second, tns, _) = schemas[1];
    assert_eq!(tns, Some("urn:example:headers"));
    assert_eq!(second.matches("xmlns:tns=").count(), 1, "{second}");
    assert!(second.contains("xmlns:tns=\"urn:example:headers\""));
    assert!(second.contains("xmlns:xs=\"http://www.w3.org/2001/XMLSchema\""));
    assert_eq!(schema_elements(second).len(), 2);
}

#[test]
fn rpc_literal_with_type_parts() {
    let defs = read("rpc_literal.wsdl");
    let ns = "urn:example:weather";
    let request = defs.message(&q(ns, "GetTemperatureRequest")).unwrap();
    let kinds: Vec<_> = request.parts.iter().map(|p| &p.kind).collect();
    assert_eq!(
        kinds,
        [
            &PartKind::Type(q(XSD_NS, "string")),
            &PartKind::Type(q(XSD_NS, "string"))
        ]
    );
    let binding = defs.binding(&q(ns, "WeatherRpc")).unwrap();
    assert_eq!(binding.soap.as_ref().unwrap().style, Style::Rpc);
    let op = &binding.operations[0];
    assert_eq!(op.soap_action.as_deref(), Some(""));
    assert_eq!(op.style, None);
    let body = op.input.as_ref().unwrap().body.as_ref().unwrap();
    assert_eq!(body.namespace.as_deref(), Some("urn:example:weather:rpc"));
    assert_eq!(body.use_, Use::Literal);
    assert!(defs.schemas.is_empty());
}

#[test]
fn soap12_binding_and_a_non_soap_binding() {
    let defs = read("soap12.wsdl");
    let ns = "urn:example:echo";
    let soap12 = defs.binding(&q(ns, "EchoSoap12")).unwrap();
    let soap = soap12.soap.as_ref().unwrap();
    assert_eq!(soap.version, SoapVersion::Soap12);
    assert_eq!(soap.style, Style::Document);
    assert_eq!(
        soap12.operations[0].soap_action.as_deref(),
        Some("urn:example:echo/Echo")
    );
    assert!(soap12.operations[0].input.as_ref().unwrap().body.is_some());

    let http = defs.binding(&q(ns, "EchoHttp")).unwrap();
    assert_eq!(http.soap, None, "http:binding is kept but is not SOAP");
    assert_eq!(http.operations.len(), 1);

    let ports = &defs.services[0].ports;
    assert_eq!(ports[0].version, Some(SoapVersion::Soap12));
    assert_eq!(ports[0].address.as_deref(), Some("http://localhost/echo"));
    assert_eq!(ports[1].version, None);
    assert_eq!(ports[1].address, None);

    // The schema uses XSD as its default namespace; nothing of the WSDL's leaks over it.
    let (text, tns, _) = inline_schemas(&defs)[0];
    assert_eq!(tns, Some(ns));
    assert!(text.contains("xmlns:w=\"http://schemas.xmlsoap.org/wsdl/\""));
    assert!(schema_elements(text)
        .iter()
        .all(|(ns, _, _)| ns.as_deref() == Some(XSD_NS)));
}

#[test]
fn inline_schema_locations_are_rewritten_to_absolute_paths() {
    let defs = read("schema_import.wsdl");
    let (text, _, _) = inline_schemas(&defs)[0];
    let locations: Vec<String> = schema_elements(text)
        .into_iter()
        .filter_map(|(_, _, location)| location)
        .collect();
    assert_eq!(locations.len(), 3, "{text}");

    let common = Path::new(&locations[0]);
    assert!(common.is_absolute(), "{common:?}");
    assert!(common.exists(), "{common:?}");
    assert_eq!(
        common.canonicalize().unwrap(),
        fixture("xsd/common.xsd").canonicalize().unwrap()
    );

    let include = Path::new(&locations[1]);
    assert!(include.is_absolute() && include.exists(), "{include:?}");
    assert!(
        !locations[1].contains("/./") && !locations[1].contains(".."),
        "{include:?} is not normalized"
    );
    // Single quotes and the explicit end tag are handled; the rest of the schema is verbatim.
    assert!(text.contains("</xs:include>"));
    assert!(text.contains("<xs:element name=\"Order\" type=\"c:Money\"/>"));

    assert_eq!(locations[2], "http://example.com/remote.xsd", "URLs stay");
}

#[test]
fn wsdl_import_of_a_wsdl_and_an_xsd() {
    let defs = read("imports_main.wsdl");
    // The root's name and documentation, not the imported WSDL's.
    assert_eq!(defs.name.as_deref(), Some("Concrete"));
    assert_eq!(
        defs.target_namespace.as_deref(),
        Some("urn:example:concrete")
    );
    assert_eq!(defs.documentation, None);

    // Document order: the imported WSDL's inline schema, then the imported XSD.
    assert_eq!(defs.schemas.len(), 2, "{:#?}", defs.schemas);
    let SchemaSource::Inline { text, origin, .. } = &defs.schemas[0] else {
        panic!("{:?}", defs.schemas[0]);
    };
    assert!(origin.ends_with("imported/abstract.wsdl"), "{origin:?}");
    let location = schema_elements(text)
        .into_iter()
        .find_map(|(_, _, location)| location)
        .unwrap();
    // Relative to the imported WSDL's directory, not the root's.
    assert_eq!(
        Path::new(&location).canonicalize().unwrap(),
        fixture("imported/elements.xsd").canonicalize().unwrap()
    );
    let SchemaSource::File(xsd) = &defs.schemas[1] else {
        panic!("{:?}", defs.schemas[1]);
    };
    assert!(xsd.is_absolute());
    assert_eq!(
        xsd.canonicalize().unwrap(),
        fixture("imported/elements.xsd").canonicalize().unwrap()
    );

    // Components of both files, each in its own target namespace.
    let abs = "urn:example:abstract";
    assert_eq!(defs.messages.len(), 2);
    assert_eq!(
        defs.message(&q(abs, "QuoteIn")).unwrap().parts[0].kind,
        PartKind::Element(q("urn:example:elements", "Quote"))
    );
    assert!(defs.port_type(&q(abs, "Stock")).is_some());
    let binding = defs
        .binding(&q("urn:example:concrete", "StockSoap"))
        .unwrap();
    assert_eq!(binding.port_type, q(abs, "Stock"));
    assert_eq!(defs.bindings.len(), 1, "the import cycle is read once");
    assert_eq!(defs.services.len(), 1);
}

#[test]
fn wsdl_without_service() {
    let defs = read("no_service.wsdl");
    assert!(defs.services.is_empty());
    assert_eq!(defs.bindings.len(), 1);
    let op = &defs.port_types[0].operations[0];
    assert!(
        op.input.is_some() && op.output.is_none(),
        "one-way operation"
    );
}

#[test]
fn parse_wsdl_resolves_against_the_given_source() {
    let path = fixture("imports_main.wsdl");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(parse_wsdl(&text, &path).unwrap(), read_wsdl(&path).unwrap());
}

#[test]
fn qname_displays_in_clark_notation() {
    assert_eq!(q("urn:x", "Y").to_string(), "{urn:x}Y");
    assert_eq!(QName::local("Y").to_string(), "Y");
}

#[test]
fn rpc_encoded_is_refused_naming_file_and_element() {
    let err = read_err("errors/rpc_encoded.wsdl");
    assert!(matches!(err, WsdlError::Unsupported { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("rpc_encoded.wsdl: "), "{message}");
    assert!(
        message.contains(
            "<wsdl:binding name=\"X\">/<wsdl:operation name=\"Call\">/<wsdl:input>/<soap:body>"
        ),
        "{message}"
    );
    assert!(message.contains("encoded"), "{message}");
}

#[test]
fn binding_type_must_name_a_port_type() {
    let err = read_err("errors/dangling_port_type.wsdl");
    assert!(matches!(err, WsdlError::Unresolved { .. }), "{err:?}");
    let expected = format!(
        "{}: <wsdl:binding name=\"X\">: type \"tns:Y\" names no wsdl:portType",
        fixture("errors/dangling_port_type.wsdl").display()
    );
    assert_eq!(err.to_string(), expected);
}

#[test]
fn operation_message_must_name_a_message() {
    let message = read_err("errors/dangling_message.wsdl").to_string();
    assert!(
        message.ends_with(
            "dangling_message.wsdl: <wsdl:portType name=\"Port\">/<wsdl:operation name=\"Call\">/\
             <wsdl:input>: message \"tns:Missing\" names no wsdl:message"
        ),
        "{message}"
    );
}

#[test]
fn port_binding_must_name_a_binding() {
    let message = read_err("errors/dangling_binding.wsdl").to_string();
    assert!(
        message.ends_with(
            "dangling_binding.wsdl: <wsdl:service name=\"S\">/<wsdl:port name=\"P\">: \
             binding \"tns:Missing\" names no wsdl:binding"
        ),
        "{message}"
    );
}

#[test]
fn soap_header_part_must_exist() {
    let message = read_err("errors/dangling_header_part.wsdl").to_string();
    assert!(
        message.contains(
            "<soap:header>: part \"session\" names no wsdl:part of wsdl:message \"tns:In\""
        ),
        "{message}"
    );
}

#[test]
fn binding_operation_must_be_in_the_port_type() {
    let err = read_err("errors/unknown_operation.wsdl");
    let message = err.to_string();
    assert!(
        message.contains(
            "<wsdl:binding name=\"X\">/<wsdl:operation name=\"Subtract\">: name \"Subtract\" \
             names no operation of wsdl:portType \"{urn:example:err}Port\""
        ),
        "{message}"
    );
}

#[test]
fn soap_body_parts_and_binding_faults_must_match_the_port_type() {
    let path = fixture("doc_literal.wsdl");
    let text = std::fs::read_to_string(&path).unwrap();

    let bad_parts = text.replace("parts=\"parameters\"", "parts=\"parameters extra\"");
    let message = parse_wsdl(&bad_parts, &path).unwrap_err().to_string();
    assert!(
        message.contains(
            "<wsdl:input>/<soap:body>: parts \"extra\" names no wsdl:part of wsdl:message \
             \"{urn:example:calc}AddIn\""
        ),
        "{message}"
    );

    let bad_fault = text.replace(
        "<wsdl:fault name=\"Overflow\">",
        "<wsdl:fault name=\"Underflow\">",
    );
    let message = parse_wsdl(&bad_fault, &path).unwrap_err().to_string();
    assert!(
        message.contains("<wsdl:fault name=\"Underflow\">: name \"Underflow\" names no wsdl:fault"),
        "{message}"
    );
}

#[test]
fn malformed_xml_reports_the_byte_position() {
    let path = fixture("errors/malformed.wsdl");
    let err = read_err("errors/malformed.wsdl");
    let WsdlError::Xml { file, position, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(file, &path);
    let text = std::fs::read_to_string(&path).unwrap();
    let end_tag = text.find("</wsdl:porttype>").unwrap() as u64;
    assert!(
        (end_tag..end_tag + 16).contains(position),
        "position {position}, end tag at {end_tag}"
    );
    assert!(err.to_string().contains(&format!("at byte {position}")));
}

#[test]
fn unbound_prefix_in_a_qname_value() {
    let err = read_err("errors/unbound_prefix.wsdl");
    let WsdlError::UnboundPrefix {
        prefix, element, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(prefix, "zz");
    assert!(element.ends_with("<wsdl:input>"), "{element}");
    assert!(err.to_string().contains("unbound_prefix.wsdl: "));
}

#[test]
fn unbound_prefix_on_an_element() {
    let err = read_err("errors/unbound_element_prefix.wsdl");
    let WsdlError::UnboundPrefix {
        prefix, element, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(prefix, "ext");
    assert_eq!(element, "<ext:policy>");
}

#[test]
fn prefixes_are_resolved_not_compared() {
    // The same WSDL spelled with other prefixes (and default namespaces) reads the same.
    let text = std::fs::read_to_string(fixture("doc_literal.wsdl")).unwrap();
    let respelled = text
        .replace("wsdl:", "w:")
        .replace("xmlns:wsdl=", "xmlns:w=")
        .replace("soap:", "s11:")
        .replace("xmlns:soap=", "xmlns:s11=")
        .replace("tns:", "c:")
        .replace("xmlns:tns=", "xmlns:c=");
    let a = parse_wsdl(&text, &fixture("doc_literal.wsdl")).unwrap();
    let b = parse_wsdl(&respelled, &fixture("doc_literal.wsdl")).unwrap();
    assert_eq!(a.messages, b.messages);
    assert_eq!(a.port_types, b.port_types);
    assert_eq!(a.bindings, b.bindings);
    assert_eq!(a.services, b.services);

    // A prefix that merely looks like WSDL's is not WSDL.
    let fake = text.replace(
        "xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\"",
        "xmlns:wsdl=\"urn:not-wsdl\"",
    );
    let err = parse_wsdl(&fake, &fixture("doc_literal.wsdl")).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("not {{{WSDL_NS}}}definitions")),
        "{err}"
    );
}

#[test]
fn duplicate_component_names_are_refused() {
    let text = r#"<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" targetNamespace="urn:d">
        <message name="M"/><message name="M"/></definitions>"#;
    let err = parse_wsdl(text, Path::new("dup.wsdl")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "dup.wsdl: <message name=\"M\">: a wsdl:message named {urn:d}M is already defined"
    );
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let path = fixture("does-not-exist.wsdl");
    let err = read_wsdl(&path).unwrap_err();
    assert!(matches!(err, WsdlError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("does-not-exist.wsdl"));
}

#[test]
fn import_of_a_missing_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.wsdl");
    std::fs::write(
        &main,
        r#"<definitions xmlns="http://schemas.xmlsoap.org/wsdl/">
             <import namespace="urn:x" location="gone.wsdl"/></definitions>"#,
    )
    .unwrap();
    let err = read_wsdl(&main).unwrap_err();
    let WsdlError::Io { path, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &dir.path().join("gone.wsdl"));
}

#[test]
fn remote_import_is_unsupported() {
    let text = r#"<definitions xmlns="http://schemas.xmlsoap.org/wsdl/">
        <import namespace="urn:x" location="http://example.com/x.wsdl"/></definitions>"#;
    let err = parse_wsdl(text, Path::new("remote.wsdl")).unwrap_err();
    assert!(matches!(err, WsdlError::Unsupported { .. }), "{err:?}");
}

#[test]
fn non_utf8_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.wsdl");
    std::fs::write(&path, b"<definitions name=\"caf\xe9\"/>").unwrap();
    let err = read_wsdl(&path).unwrap_err();
    assert!(matches!(err, WsdlError::Encoding { .. }), "{err:?}");
}

#[test]
fn self_import_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("self.wsdl");
    std::fs::write(
        &path,
        r#"<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" targetNamespace="urn:s">
             <import namespace="urn:s" location="./self.wsdl"/>
             <message name="M"/></definitions>"#,
    )
    .unwrap();
    assert_eq!(read_wsdl(&path).unwrap().messages.len(), 1);
}

#[test]
fn no_panic_on_truncated_input() {
    for name in ["doc_literal.wsdl", "imports_main.wsdl"] {
        let path = fixture(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let complete = text.trim_end().len();
        for end in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
            let result = parse_wsdl(&text[..end], &path);
            assert_eq!(result.is_ok(), end >= complete, "{name} truncated at {end}");
        }
    }
}

#[test]
fn no_panic_on_random_or_mangled_input() {
    // xorshift64*: deterministic, no dependency.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let path = fixture("doc_literal.wsdl");
    let valid = std::fs::read(&path).unwrap();
    let alphabet = b"<>/=\"' :xmlnswdefiotap&;#!?-[]\n";
    for round in 0..2000 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            let len = (next() % 300) as usize;
            (0..len)
                .map(|_| {
                    let r = next();
                    if r % 3 == 0 {
                        r as u8
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect()
        } else {
            let mut bytes = valid.clone();
            for _ in 0..(1 + next() % 8) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = alphabet[(next() as usize) % alphabet.len()];
            }
            bytes
        };
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_wsdl(&text, &path);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let text = format!(
        "<definitions xmlns=\"{WSDL_NS}\">{}",
        "<documentation>".repeat(70_000)
    );
    let err = parse_wsdl(&text, Path::new("deep.wsdl")).unwrap_err();
    assert!(err.to_string().starts_with("deep.wsdl: "), "{err}");
}

#[test]
fn reads_the_um_wsdl() {
    let defs = read_wsdl(Path::new(UM_WSDL)).unwrap_or_else(|e| panic!("{e}"));
    let ns = "http://schemas.microsoft.com/exchange/services/2006/messages";
    assert_eq!(defs.target_namespace.as_deref(), Some(ns));
    assert!(defs.documentation.is_some());
    assert_eq!(defs.port_types.len(), 1);
    assert_eq!(defs.port_types[0].operations.len(), 11);
    assert!(defs.port_types[0]
        .operations
        .iter()
        .all(|op| op.documentation.is_some()));

    let binding = defs.binding(&q(ns, "UMServiceSoap")).unwrap();
    assert_eq!(binding.operations.len(), 11);
    assert_eq!(binding.soap.as_ref().unwrap().version, SoapVersion::Soap11);
    let reset = binding.operation("ResetPIN").unwrap();
    assert_eq!(
        reset.soap_action.as_deref(),
        Some("http://schemas.microsoft.com/exchange/services/2006/messages/ResetPIN")
    );
    let reset_in = defs.message(&q(ns, "ResetPINSoapIn")).unwrap();
    assert_eq!(reset_in.parts[0].kind, PartKind::Element(q(ns, "ResetPIN")));

    let port = &defs.services[0].ports[0];
    assert_eq!(port.binding, binding.name);
    assert!(port.address.is_some());

    let (text, _, _) = inline_schemas(&defs)[0];
    let location = schema_elements(text)
        .into_iter()
        .find_map(|(_, _, location)| location)
        .unwrap();
    assert!(Path::new(&location).is_absolute() && Path::new(&location).exists());
    assert!(location.ends_with("messages.xsd"));
}

#[test]
fn reads_the_exchange_web_services_wsdl() {
    let path = Path::new(EWS_WSDL);
    if !path.exists() {
        eprintln!("skipping: ../shared/ews not present ({EWS_WSDL})");
        return;
    }
    let defs = read_wsdl(path).unwrap_or_else(|e| panic!("{e}"));
    let m = "http://schemas.microsoft.com/exchange/services/2006/messages";
    let t = "http://schemas.microsoft.com/exchange/services/2006/types";
    let port_type = defs.port_type(&q(m, "ExchangeServicePortType")).unwrap();
    assert!(port_type.operations.len() > 100);
    let binding = defs.binding(&q(m, "ExchangeServiceBinding")).unwrap();
    assert_eq!(binding.operations.len(), port_type.operations.len());

    let resolve = binding.operation("ResolveNames").unwrap();
    assert_eq!(
        resolve.soap_action.as_deref(),
        Some("http://schemas.microsoft.com/exchange/services/2006/messages/ResolveNames")
    );
    let input = resolve.input.as_ref().unwrap();
    assert_eq!(
        input.body.as_ref().unwrap().parts,
        Some(vec!["request".to_owned()])
    );
    assert!(input
        .headers
        .iter()
        .any(|h| h.part == "RequestVersion" && h.message == q(m, "ResolveNamesSoapIn")));
    let header_message = defs.message(&q(m, "ResolveNamesSoapIn")).unwrap();
    assert_eq!(
        header_message.part("RequestVersion").unwrap().kind,
        PartKind::Element(q(t, "RequestServerVersion"))
    );

    // The inline schema declares its own `xs`; the WSDL's `s`, `t`, `tns` ... are copied on.
    let (text, _, _) = inline_schemas(&defs)[0];
    assert_eq!(text.matches("xmlns:xs=").count(), 1);
    assert!(text.contains(&format!("xmlns:t=\"{t}\"")));
    let location = schema_elements(text)
        .into_iter()
        .find_map(|(_, _, location)| location)
        .unwrap();
    assert!(Path::new(&location).exists(), "{location}");
    assert_eq!(defs.services.len(), 1);
}
