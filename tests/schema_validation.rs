//! Every request and response of the eleven operations, validated by a real
//! XML Schema validator (`xmllint --schema`) against the published schemas.
//!
//! - Body children (requests and successful responses) are cut out of their
//!   envelope, keeping the namespace declarations in scope, and validated
//!   against `schemas/messages.xsd` (which imports `types.xsd`).
//! - Whole envelopes, faults included, are validated against
//!   `tests/fixtures/validation/um-envelope.xsd`: a SOAP 1.1 envelope subset
//!   (faultcode an `xs:QName`, faultstring with `xml:lang`, any detail) whose
//!   lax wildcards also validate the UM elements, `ExceptionType` and the
//!   errors-namespace `ResponseCode`/`Message`.
//! - The fault shapes of UM-SPEC.md ("Faults") are asserted exactly.
//!
//! The tests install xmllint when it is missing and they may (`tests/common/env.rs`); when they
//! cannot, they fail saying what to install, unless `UMWS_SKIP_XMLLINT=1` is set.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::{basic, post_raw, Server};
use quick_xml::events::Event;
use quick_xml::name::{QName, ResolveResult};

const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const MESSAGES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
const TYPES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const ERRORS_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
const SERVICE_PATH: &str = "/UnifiedMessaging/Service.asmx";

/// A well-formed call id (base64 of `"<uuid>@<host>"`) that no call has.
const UNKNOWN_CALL_ID: &str =
    "NDFiMmU3YzAtYjA1Ny00YjYzLWE4ZTAtN2E0ZDdjNzQ1ZTQ4QHVtLmV4YW1wbGUuY29t";

/// The example request element of `op` (`tests/fixtures/messages/<op>.request.xml`,
/// which `tests/operations.rs` requires for every operation of the schema).
fn example(op: &str, kind: &str) -> String {
    let path = manifest_path(&format!("tests/fixtures/messages/{op}.{kind}.xml"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

// ---------------------------------------------------------------------------
// xmllint
// ---------------------------------------------------------------------------

/// Whether the validation tests should run: `false` (with a message) when
/// `UMWS_SKIP_XMLLINT=1`; otherwise makes sure xmllint is installed (`tests/common/env.rs`
/// installs Debian's libxml2-utils when it may), panicking with what to do when it cannot.
fn xmllint_required() -> bool {
    if std::env::var("UMWS_SKIP_XMLLINT").as_deref() == Ok("1") {
        eprintln!("SKIPPED: xmllint schema validation (UMWS_SKIP_XMLLINT=1)");
        return false;
    }
    common::xmllint();
    true
}

fn manifest_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `schemas/messages.xsd`.
fn messages_xsd() -> PathBuf {
    manifest_path("schemas/messages.xsd")
}

/// The SOAP 1.1 envelope + UM driver schema.
fn envelope_xsd() -> PathBuf {
    manifest_path("tests/fixtures/validation/um-envelope.xsd")
}

/// Temporary files for the documents handed to xmllint.
struct Validator {
    dir: tempfile::TempDir,
    count: usize,
}

impl Validator {
    fn new() -> Self {
        Validator {
            dir: tempfile::tempdir().expect("temp dir"),
            count: 0,
        }
    }

    /// Runs `xmllint --noout --schema schema` on `xml`; `Err` holds
    /// xmllint's complaint.
    fn check(&mut self, xml: &str, schema: &Path) -> Result<(), String> {
        self.count += 1;
        let file = self.dir.path().join(format!("doc{}.xml", self.count));
        std::fs::write(&file, xml).expect("write document");
        let out = Command::new("xmllint")
            .arg("--noout")
            .arg("--nonet")
            .arg("--schema")
            .arg(schema)
            .arg(&file)
            .output()
            .expect("run xmllint");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Asserts that `xml` is valid against `schema`.
    #[track_caller]
    fn assert_valid(&mut self, what: &str, xml: &str, schema: &Path) {
        if let Err(e) = self.check(xml, schema) {
            panic!(
                "{what} is not valid against {}:\n{e}\ndocument:\n{xml}",
                schema.display()
            );
        }
    }

    /// Asserts that `xml` is invalid against `schema`.
    #[track_caller]
    fn assert_invalid(&mut self, what: &str, xml: &str, schema: &Path) {
        assert!(
            self.check(xml, schema).is_err(),
            "{what} should be rejected by {}:\n{xml}",
            schema.display()
        );
    }

    /// Validates a whole envelope against the SOAP schema and its body
    /// child (if any) against messages.xsd.
    #[track_caller]
    fn assert_valid_message(&mut self, what: &str, envelope: &str) {
        self.assert_valid(&format!("{what} (envelope)"), envelope, &envelope_xsd());
        let child = body_child(envelope);
        self.assert_valid(&format!("{what} (body element)"), &child, &messages_xsd());
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// The request element `<op xmlns="messages">children</op>`.
fn request_element(op: &str, children: &str) -> String {
    if children.is_empty() {
        format!(r#"<{op} xmlns="{MESSAGES_NS}"/>"#)
    } else {
        format!(r#"<{op} xmlns="{MESSAGES_NS}">{children}</{op}>"#)
    }
}

/// A SOAP 1.1 envelope around `body`.
fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <soap:Envelope xmlns:soap=\"{SOAP_ENV_NS}\"><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
}

/// The HTTP answer to a SOAP call.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// POSTs `body` with the SOAP 1.1 headers and Basic auth.
fn call(server: &Server, user: &str, password: &str, op: &str, body: &str) -> Answer {
    let action = format!("\"{MESSAGES_NS}/{op}\"");
    let auth = basic(user, password);
    let (status, headers, body) = post_raw(
        &server.base,
        SERVICE_PATH,
        &[
            ("Content-Type", "text/xml; charset=utf-8"),
            ("SOAPAction", &action),
            ("Authorization", &auth),
        ],
        body.as_bytes(),
    );
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        body,
    }
}

// ---------------------------------------------------------------------------
// XML helpers
// ---------------------------------------------------------------------------

/// The first child element of `soap:Body`, cut out of `envelope` as text,
/// with the namespace declarations of its ancestors that it does not
/// redeclare added to its start tag, so it stands alone.
fn body_child(envelope: &str) -> String {
    let mut reader = quick_xml::Reader::from_str(envelope);
    // Namespace declarations in scope from Envelope and Body: name -> raw value.
    let mut inherited: BTreeMap<String, String> = BTreeMap::new();
    let mut depth = 0usize;
    let mut in_body = false;
    let mut start: Option<(usize, String, BTreeMap<String, String>)> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().expect("well-formed envelope");
        let after = reader.buffer_position() as usize;
        let is_empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(e) | Event::Empty(e) if depth < 2 || (in_body && depth == 2) => {
                let decls: BTreeMap<String, String> = e
                    .attributes()
                    .map(|a| a.expect("attribute"))
                    .filter(|a| a.key.as_namespace_binding().is_some())
                    .map(|a| {
                        (
                            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                            String::from_utf8_lossy(&a.value).into_owned(),
                        )
                    })
                    .collect();
                if depth < 2 {
                    inherited.extend(decls);
                    if depth == 1 && e.local_name().as_ref() == b"Body" {
                        in_body = true;
                    }
                    if is_empty {
                        assert!(depth == 1, "empty Envelope");
                        in_body = false;
                    } else {
                        depth += 1;
                    }
                } else {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    if is_empty {
                        return with_declarations(
                            &envelope[before..after],
                            &name,
                            &decls,
                            &inherited,
                        );
                    }
                    start = Some((before, name, decls));
                    depth += 1;
                }
            }
            Event::Start(_) => depth += 1,
            Event::End(_) => {
                depth -= 1;
                if depth == 2 {
                    if let Some((from, name, decls)) = start.take() {
                        return with_declarations(
                            &envelope[from..after],
                            &name,
                            &decls,
                            &inherited,
                        );
                    }
                }
                if depth == 1 {
                    in_body = false;
                }
            }
            Event::Eof => panic!("no element in soap:Body:\n{envelope}"),
            _ => {}
        }
    }
}

/// `element` (text starting with `<name`) with the `inherited`
/// declarations it does not make itself.
fn with_declarations(
    element: &str,
    name: &str,
    own: &BTreeMap<String, String>,
    inherited: &BTreeMap<String, String>,
) -> String {
    let mut extra = String::new();
    for (k, v) in inherited {
        if !own.contains_key(k) {
            let q = if v.contains('"') { '\'' } else { '"' };
            extra.push_str(&format!(" {k}={q}{v}{q}"));
        }
    }
    let split = 1 + name.len();
    format!("{}{}{}", &element[..split], extra, &element[split..])
}

/// An element of a parsed document, names resolved.
#[derive(Debug, Default)]
struct Element {
    ns: Option<String>,
    local: String,
    /// (namespace, local name, value); namespace declarations left out.
    attrs: Vec<(Option<String>, String, String)>,
    /// The element's own text, unescaped.
    text: String,
    /// The text read as a QName in the element's scope: (namespace, local).
    qname: Option<(Option<String>, String)>,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, ns: Option<&str>, local: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.ns.as_deref() == ns && c.local == local)
    }

    fn attr(&self, ns: Option<&str>, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, l, _)| n.as_deref() == ns && l == local)
            .map(|(_, _, v)| v.as_str())
    }

    fn names(&self) -> Vec<(Option<&str>, &str)> {
        self.children
            .iter()
            .map(|c| (c.ns.as_deref(), c.local.as_str()))
            .collect()
    }
}

fn namespace_of(r: ResolveResult<'_>) -> Option<String> {
    match r {
        ResolveResult::Bound(ns) => Some(String::from_utf8_lossy(ns.as_ref()).into_owned()),
        ResolveResult::Unbound => None,
        ResolveResult::Unknown(p) => {
            Some(format!("<unbound prefix {}>", String::from_utf8_lossy(&p)))
        }
    }
}

/// Parses `xml` into a tree with namespaces resolved.
fn parse_tree(xml: &str) -> Element {
    let mut reader = quick_xml::NsReader::from_str(xml);
    let mut stack: Vec<(Element, String)> = Vec::new();
    loop {
        let (resolved, event) = reader.read_resolved_event().expect("well-formed XML");
        let ns = namespace_of(resolved);
        let is_empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let mut el = Element {
                    ns,
                    local: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                for a in e.attributes() {
                    let a = a.expect("attribute");
                    if a.key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (r, local) = reader.resolve_attribute(a.key);
                    el.attrs.push((
                        namespace_of(r),
                        String::from_utf8_lossy(local.as_ref()).into_owned(),
                        a.decode_and_unescape_value(reader.decoder())
                            .expect("attribute value")
                            .into_owned(),
                    ));
                }
                if is_empty {
                    match stack.last_mut() {
                        Some((parent, _)) => parent.children.push(el),
                        None => return el,
                    }
                } else {
                    stack.push((el, String::new()));
                }
            }
            Event::Text(t) => {
                if let Some((_, raw)) = stack.last_mut() {
                    raw.push_str(&t.decode().expect("text"));
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, raw)) = stack.last_mut() {
                    raw.push_str(&format!("&{};", r.decode().expect("reference")));
                }
            }
            Event::CData(c) => {
                if let Some((_, raw)) = stack.last_mut() {
                    raw.push_str(&quick_xml::escape::escape(c.decode().expect("cdata")));
                }
            }
            Event::End(_) => {
                let (mut el, raw) = stack.pop().expect("balanced");
                el.text = quick_xml::escape::unescape(&raw)
                    .expect("text")
                    .into_owned();
                let trimmed = el.text.trim();
                if !trimmed.is_empty() {
                    let (r, local) = reader.resolve_element(QName(trimmed.as_bytes()));
                    el.qname = Some((
                        namespace_of(r),
                        String::from_utf8_lossy(local.as_ref()).into_owned(),
                    ));
                }
                match stack.last_mut() {
                    Some((parent, _)) => parent.children.push(el),
                    None => return el,
                }
            }
            Event::Eof => panic!("no root element"),
            _ => {}
        }
    }
}

/// The `soap:Fault` of a fault envelope, checked to be the only thing in
/// the body.
fn fault_of(envelope: &Element) -> &Element {
    assert_eq!(envelope.ns.as_deref(), Some(SOAP_ENV_NS));
    assert_eq!(envelope.local, "Envelope");
    let body = envelope
        .child(Some(SOAP_ENV_NS), "Body")
        .expect("soap:Body");
    assert_eq!(body.names(), [(Some(SOAP_ENV_NS), "Fault")], "{body:?}");
    &body.children[0]
}

/// Asserts the `a:ErrorInvalidRequest` fault of UM-SPEC.md.
#[track_caller]
fn assert_invalid_request_fault(what: &str, answer: &Answer) {
    assert_eq!(answer.status, 500, "{what}: {}", answer.body);
    let tree = parse_tree(&answer.body);
    let fault = fault_of(&tree);
    assert_eq!(
        fault.names(),
        [(None, "faultcode"), (None, "faultstring"), (None, "detail")],
        "{what}"
    );
    let code = &fault.children[0];
    assert_eq!(code.text, "a:ErrorInvalidRequest", "{what}");
    assert_eq!(
        code.qname,
        Some((Some(TYPES_NS.to_owned()), "ErrorInvalidRequest".to_owned())),
        "{what}: the prefix a must be bound to the types namespace"
    );
    let string = &fault.children[1];
    assert_eq!(string.text, "The request is invalid.", "{what}");
    assert_eq!(string.attr(Some(XML_NS), "lang"), Some("en-US"), "{what}");
    let detail = &fault.children[2];
    assert_eq!(
        detail.names(),
        [
            (Some(ERRORS_NS), "ResponseCode"),
            (Some(ERRORS_NS), "Message")
        ],
        "{what}"
    );
    assert_eq!(detail.children[0].text, "ErrorInvalidRequest", "{what}");
    assert_eq!(detail.children[1].text, "The request is invalid.", "{what}");
}

/// Asserts an application fault `a:<exception>` of UM-SPEC.md.
#[track_caller]
fn assert_application_fault(what: &str, answer: &Answer, exception: &str) {
    assert_eq!(answer.status, 500, "{what}: {}", answer.body);
    let tree = parse_tree(&answer.body);
    let fault = fault_of(&tree);
    assert_eq!(
        fault.names(),
        [(None, "faultcode"), (None, "faultstring"), (None, "detail")],
        "{what}"
    );
    let code = &fault.children[0];
    assert_eq!(code.text, format!("a:{exception}"), "{what}");
    assert_eq!(
        code.qname,
        Some((Some(ERRORS_NS.to_owned()), exception.to_owned())),
        "{what}: the prefix a must be bound to the errors namespace"
    );
    assert!(
        !fault.children[1].text.trim().is_empty(),
        "{what}: empty faultstring"
    );
    let detail = &fault.children[2];
    assert_eq!(
        detail.names(),
        [(Some(MESSAGES_NS), "ExceptionType")],
        "{what}"
    );
    assert_eq!(detail.children[0].text, exception, "{what}");
    let literal = format!(r#"<ExceptionType xmlns="{MESSAGES_NS}">{exception}</ExceptionType>"#);
    assert!(
        answer.body.contains(&literal),
        "{what}: the detail should be exactly {literal}:\n{}",
        answer.body
    );
}

/// Asserts a successful answer: HTTP 200, XML, the body holding
/// `<op>Response` in the messages namespace; returns the parsed envelope.
#[track_caller]
fn assert_success(what: &str, answer: &Answer, op: &str) -> Element {
    assert_eq!(answer.status, 200, "{what}: {}", answer.body);
    assert!(
        answer.content_type.starts_with("text/xml"),
        "{what}: content type {}",
        answer.content_type
    );
    let tree = parse_tree(&answer.body);
    let body = tree.child(Some(SOAP_ENV_NS), "Body").expect("soap:Body");
    let response = format!("{op}Response");
    assert_eq!(
        body.names(),
        [(Some(MESSAGES_NS), response.as_str())],
        "{what}"
    );
    tree
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn every_request_validates_against_messages_xsd() {
    if !xmllint_required() {
        return;
    }
    let mut v = Validator::new();
    // Every operation of the schema, from the operation table: its example
    // request and response.
    for op in umws::um_service_soap::OPERATIONS.iter().map(|o| o.name) {
        let element = example(op, "request");
        v.assert_valid(&format!("{op} request"), &element, &messages_xsd());
        v.assert_valid_message(&format!("{op} request"), &envelope(&element));
        let response = example(op, "response");
        v.assert_valid(&format!("{op} response"), &response, &messages_xsd());
    }
    // The ResetPIN request fixture in the canonical namespace.
    v.assert_valid_message(
        "the ResetPIN request fixture",
        include_str!("fixtures/reset_pin_request_http.xml"),
    );
    // The seed's https:// spelling is not the schema's namespace: the
    // server accepts it as an alias (UM-SPEC.md), the schema does not.
    v.assert_invalid(
        "the seed's https:// ResetPIN request",
        &body_child(common::SEED_REQUEST),
        &messages_xsd(),
    );
}

#[test]
fn successful_responses_validate_against_messages_xsd() {
    if !xmllint_required() {
        return;
    }
    let server = Server::start();
    set_access_numbers(&server, "demo", "+1 425 555 0100, 4100");
    let pw = server.demo_password.clone();
    let mut v = Validator::new();
    // The setters first, so that GetUMProperties shows every optional element.
    for op in [
        "SetOofStatus",
        "SetPlayOnPhoneDialString",
        "SetTelephoneAccessFolderEmail",
        "SetMissedCallNotificationEnabled",
        "IsUMEnabled",
        "GetUMProperties",
        "ResetPIN",
    ] {
        let request = envelope(&example(op, "request"));
        v.assert_valid_message(&format!("{op} request"), &request);
        let answer = call(&server, "demo", &pw, op, &request);
        let tree = assert_success(op, &answer, op);
        v.assert_valid_message(&format!("{op} response"), &answer.body);
        let body = tree.child(Some(SOAP_ENV_NS), "Body").expect("Body");
        let response = &body.children[0];
        match op {
            "IsUMEnabled" => {
                let value = response.child(Some(MESSAGES_NS), "IsUMEnabledResponse");
                assert_eq!(value.map(|e| e.text.as_str()), Some("true"));
            }
            "GetUMProperties" => {
                let props = response
                    .child(Some(MESSAGES_NS), "GetUMPropertiesResponse")
                    .expect("GetUMPropertiesResponse");
                // The children of UMProperties are in the messages namespace (UM-SPEC.md).
                let m = Some(MESSAGES_NS);
                assert_eq!(
                    props.names(),
                    [
                        (m, "OofStatus"),
                        (m, "MissedCallNotificationEnabled"),
                        (m, "PlayOnPhoneDialString"),
                        (m, "TelephoneAccessNumbers"),
                        (m, "TelephoneAccessFolderEmail"),
                    ],
                    "every optional element should appear once set"
                );
                let text = |name| props.child(m, name).map(|e| e.text.as_str());
                assert_eq!(text("OofStatus"), Some("true"));
                assert_eq!(text("MissedCallNotificationEnabled"), Some("true"));
                assert_eq!(text("PlayOnPhoneDialString"), Some("+1 (425) 555-0100"));
                assert_eq!(
                    text("TelephoneAccessNumbers"),
                    Some("+1 425 555 0100, 4100")
                );
                assert_eq!(text("TelephoneAccessFolderEmail"), Some("AAECAwQFBgc="));
            }
            _ => assert!(response.children.is_empty(), "{op}: {response:?}"),
        }
    }
    assert_eq!(server.mails("demo").len(), 1, "ResetPIN mails one PIN");

    // A mailbox without UM answers IsUMEnabled with false, also valid.
    server.add_mailbox("plain", "plain-password-1", &["--no-um"]);
    let request = envelope(&request_element("IsUMEnabled", ""));
    let answer = call(
        &server,
        "plain",
        "plain-password-1",
        "IsUMEnabled",
        &request,
    );
    assert_success("IsUMEnabled (no UM)", &answer, "IsUMEnabled");
    v.assert_valid_message("IsUMEnabled response (no UM)", &answer.body);
    assert!(answer
        .body
        .contains("<IsUMEnabledResponse>false</IsUMEnabledResponse>"));
}

#[test]
fn fault_responses_validate_and_have_the_exchange_shapes() {
    if !xmllint_required() {
        return;
    }
    let server = Server::start();
    server.add_mailbox("plain", "plain-password-1", &["--no-um"]);
    let pw = server.demo_password.clone();
    let mut v = Validator::new();
    let envelope_xsd = envelope_xsd();

    // Application faults: valid requests the server refuses.
    let application: &[(&str, &str, Option<&str>, &str, &str)] = &[
        // (user, operation, request children (None: its example request), exception, what)
        (
            "demo",
            "PlayOnPhone",
            None,
            "TransportException",
            "no telephony",
        ),
        (
            "demo",
            "PlayOnPhoneGreeting",
            None,
            "TransportException",
            "no telephony",
        ),
        (
            "demo",
            "GetCallInfo",
            None,
            "InvalidCallIdException",
            "unknown call",
        ),
        (
            "demo",
            "Disconnect",
            None,
            "InvalidCallIdException",
            "unknown call",
        ),
        (
            "demo",
            "PlayOnPhone",
            Some("<entryId>not base64!</entryId><DialString>4100</DialString>"),
            "InvalidObjectIdException",
            "bad entry id",
        ),
        (
            "demo",
            "SetPlayOnPhoneDialString",
            Some("<dialString>call me</dialString>"),
            "InvalidPhoneNumberException",
            "bad dial string",
        ),
        (
            "plain",
            "GetUMProperties",
            Some(""),
            "UserNotUmEnabledException",
            "no UM",
        ),
        (
            "plain",
            "SetOofStatus",
            Some("<status>true</status>"),
            "UserNotUmEnabledException",
            "no UM",
        ),
        (
            "plain",
            "ResetPIN",
            Some(""),
            "UserNotUmEnabledException",
            "no UM",
        ),
        (
            "plain",
            "PlayOnPhone",
            None,
            "UserNotUmEnabledException",
            "no UM",
        ),
    ];
    for (user, op, children, exception, why) in application {
        let what = format!("{op} ({why})");
        let request = envelope(&match children {
            Some(children) => request_element(op, children),
            None => example(op, "request"),
        });
        v.assert_valid_message(&format!("{what} request"), &request);
        let password = if *user == "demo" {
            pw.as_str()
        } else {
            "plain-password-1"
        };
        let answer = call(&server, user, password, op, &request);
        v.assert_valid(&format!("{what} fault"), &answer.body, &envelope_xsd);
        assert_application_fault(&what, &answer, exception);
    }
    assert!(
        server.mails("plain").is_empty(),
        "no PIN mail for a non-UM user"
    );

    // Invalid requests: each is also rejected by messages.xsd (or is not XML).
    let invalid: &[(&str, &str, &str)] = &[
        (
            "unknown element",
            "IsUMEnabled",
            &request_element("Bogus", ""),
        ),
        (
            "wrong namespace",
            "IsUMEnabled",
            r#"<IsUMEnabled xmlns="urn:not-the-um-namespace"/>"#,
        ),
        (
            "missing required child",
            "SetOofStatus",
            &request_element("SetOofStatus", ""),
        ),
        (
            "wrong value type",
            "SetOofStatus",
            &request_element("SetOofStatus", "<status>maybe</status>"),
        ),
        (
            "unknown child",
            "ResetPIN",
            &request_element("ResetPIN", "<Pin>1234</Pin>"),
        ),
        (
            "bad enumeration value",
            "PlayOnPhoneGreeting",
            &request_element(
                "PlayOnPhoneGreeting",
                "<GreetingType>Loud</GreetingType><DialString>4100</DialString>",
            ),
        ),
    ];
    for (why, op, element) in invalid {
        let what = format!("invalid request ({why})");
        v.assert_invalid(&what, element, &messages_xsd());
        let answer = call(&server, "demo", &pw, op, &envelope(element));
        v.assert_valid(&format!("{what} fault"), &answer.body, &envelope_xsd);
        assert_invalid_request_fault(&what, &answer);
    }

    // Not XML at all.
    let answer = call(
        &server,
        "demo",
        &pw,
        "ResetPIN",
        "<soap:Envelope xmlns:soap=",
    );
    v.assert_valid("malformed request fault", &answer.body, &envelope_xsd);
    assert_invalid_request_fault("malformed request", &answer);

    // A SOAPAction naming another operation is a client fault (its shape is
    // not fixed by the spec; it must still be a valid SOAP fault).
    let answer = call(
        &server,
        "demo",
        &pw,
        "ResetPIN",
        &envelope(&request_element("IsUMEnabled", "")),
    );
    assert_eq!(answer.status, 500, "{}", answer.body);
    v.assert_valid("SOAPAction mismatch fault", &answer.body, &envelope_xsd);
    fault_of(&parse_tree(&answer.body));

    assert!(
        server.mails("demo").is_empty(),
        "no request above resets the PIN"
    );
}

#[test]
fn typed_client_requests_validate_against_messages_xsd() {
    if !xmllint_required() {
        return;
    }
    use umws::types;
    use umws::um_service_soap::UmServiceSoapClient;
    use umws_soap::client::{ClientError, Transport};

    let server = Server::start();
    let proxy = RecordingProxy::start(&server.base);
    let transport = Transport::new(&format!("{}{SERVICE_PATH}", proxy.base))
        .expect("endpoint")
        .with_basic_auth("demo", &server.demo_password);
    let client = UmServiceSoapClient::new(transport);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let call_id = || Some(UNKNOWN_CALL_ID.to_owned());
        client
            .set_oof_status(&types::SetOofStatus { status: true })
            .await
            .expect("SetOofStatus");
        client
            .set_play_on_phone_dial_string(&types::SetPlayOnPhoneDialString {
                dial_string: Some("+1 (425) 555-0100".into()),
            })
            .await
            .expect("SetPlayOnPhoneDialString");
        client
            .set_telephone_access_folder_email(&types::SetTelephoneAccessFolderEmail {
                base_64_folder_id: Some("AAECAwQFBgc=".into()),
            })
            .await
            .expect("SetTelephoneAccessFolderEmail");
        client
            .set_missed_call_notification_enabled(&types::SetMissedCallNotificationEnabled {
                status: true,
            })
            .await
            .expect("SetMissedCallNotificationEnabled");
        let enabled = client
            .is_um_enabled(&types::IsUmEnabled {})
            .await
            .expect("IsUMEnabled");
        assert!(enabled.is_um_enabled_response);
        let props = client
            .get_um_properties(&types::GetUmProperties {})
            .await
            .expect("GetUMProperties");
        assert!(props.get_um_properties_response.oof_status);
        client
            .reset_pin(&types::ResetPin {})
            .await
            .expect("ResetPIN");
        let fault_name = |r: Result<_, ClientError>| match r {
            Err(ClientError::Fault(f)) => format!("{f:?}"),
            other => panic!("expected a fault, got {other:?}"),
        };
        let f = fault_name(
            client
                .play_on_phone(&types::PlayOnPhone {
                    entry_id: Some("AAECAw==".into()),
                    dial_string: Some("+1 425 555 0100".into()),
                })
                .await
                .map(drop),
        );
        assert!(f.contains("TransportException"), "{f}");
        let f = fault_name(
            client
                .play_on_phone_greeting(&types::PlayOnPhoneGreeting {
                    greeting_type: types::UmGreetingType::OofCustom,
                    dial_string: Some("4100".into()),
                })
                .await
                .map(drop),
        );
        assert!(f.contains("TransportException"), "{f}");
        let f = fault_name(
            client
                .get_call_info(&types::GetCallInfo { call_id: call_id() })
                .await
                .map(drop),
        );
        assert!(f.contains("InvalidCallIdException"), "{f}");
        let f = fault_name(
            client
                .disconnect(&types::Disconnect { call_id: call_id() })
                .await
                .map(drop),
        );
        assert!(f.contains("InvalidCallIdException"), "{f}");
    });

    let exchanges = proxy.exchanges();
    let ops: Vec<&str> = exchanges.iter().map(|x| x.op.as_str()).collect();
    assert_eq!(
        ops,
        [
            "SetOofStatus",
            "SetPlayOnPhoneDialString",
            "SetTelephoneAccessFolderEmail",
            "SetMissedCallNotificationEnabled",
            "IsUMEnabled",
            "GetUMProperties",
            "ResetPIN",
            "PlayOnPhone",
            "PlayOnPhoneGreeting",
            "GetCallInfo",
            "Disconnect",
        ],
        "the SOAPAction of each typed call"
    );
    let mut v = Validator::new();
    for x in &exchanges {
        v.assert_valid_message(&format!("typed client's {} request", x.op), &x.request);
        let child = parse_tree(&body_child(&x.request));
        assert_eq!(
            (child.ns.as_deref(), child.local.as_str()),
            (Some(MESSAGES_NS), x.op.as_str()),
            "the request element matches the SOAPAction"
        );
        if x.status == 200 {
            v.assert_valid_message(&format!("{} response", x.op), &x.response);
        } else {
            v.assert_valid(&format!("{} fault", x.op), &x.response, &envelope_xsd());
        }
    }
}

#[test]
fn the_validator_rejects_broken_documents() {
    // Guards against vacuous validation (e.g. lax wildcards that check
    // nothing): each document breaks one rule the schemas state.
    if !xmllint_required() {
        return;
    }
    let mut v = Validator::new();
    let fault = |code_ns: &str, code: &str, rest: &str| {
        envelope(&format!(
            r#"<soap:Fault><faultcode xmlns:a="{code_ns}">{code}</faultcode>{rest}</soap:Fault>"#
        ))
    };
    let good_rest = r#"<faultstring xml:lang="en-US">x</faultstring>"#;
    v.assert_valid(
        "a minimal fault",
        &fault(ERRORS_NS, "a:X", good_rest),
        &envelope_xsd(),
    );
    for (why, doc) in [
        (
            "unbound faultcode prefix",
            fault(ERRORS_NS, "b:X", good_rest),
        ),
        ("no faultstring", fault(ERRORS_NS, "a:X", "")),
        (
            "bad xml:lang",
            fault(
                ERRORS_NS,
                "a:X",
                r#"<faultstring xml:lang="en US">x</faultstring>"#,
            ),
        ),
        (
            "qualified faultstring",
            fault(
                ERRORS_NS,
                "a:X",
                r#"<soap:faultstring>x</soap:faultstring>"#,
            ),
        ),
        (
            "ExceptionType with element content",
            fault(
                ERRORS_NS,
                "a:X",
                &format!(
                    r#"{good_rest}<detail><ExceptionType xmlns="{MESSAGES_NS}"><b/></ExceptionType></detail>"#
                ),
            ),
        ),
        (
            "IsUMEnabledResponse without its value",
            envelope(&request_element("IsUMEnabledResponse", "")),
        ),
        (
            "no Body",
            format!(r#"<soap:Envelope xmlns:soap="{SOAP_ENV_NS}"/>"#),
        ),
    ] {
        v.assert_invalid(why, &doc, &envelope_xsd());
    }
    v.assert_valid(
        "UMProperties",
        &request_element(
            "GetUMPropertiesResponse",
            "<GetUMPropertiesResponse><OofStatus>true</OofStatus><MissedCallNotificationEnabled>true</MissedCallNotificationEnabled></GetUMPropertiesResponse>",
        ),
        &messages_xsd(),
    );
    v.assert_invalid(
        "UMProperties out of order",
        &request_element(
            "GetUMPropertiesResponse",
            "<GetUMPropertiesResponse><MissedCallNotificationEnabled>true</MissedCallNotificationEnabled><OofStatus>true</OofStatus></GetUMPropertiesResponse>",
        ),
        &messages_xsd(),
    );
    let t = TYPES_NS;
    v.assert_invalid(
        "UMProperties children in the types namespace",
        &request_element(
            "GetUMPropertiesResponse",
            &format!(
                r#"<GetUMPropertiesResponse xmlns:t="{t}"><t:OofStatus>true</t:OofStatus><t:MissedCallNotificationEnabled>true</t:MissedCallNotificationEnabled></GetUMPropertiesResponse>"#
            ),
        ),
        &messages_xsd(),
    );
    v.assert_invalid(
        "UMCallInfo children in the types namespace",
        &request_element(
            "GetCallInfoResponse",
            &format!(
                r#"<GetCallInfoResponse xmlns:t="{t}"><t:CallState>Connected</t:CallState><t:EventCause>None</t:EventCause></GetCallInfoResponse>"#
            ),
        ),
        &messages_xsd(),
    );
    v.assert_valid(
        "UMCallInfo",
        &request_element(
            "GetCallInfoResponse",
            "<GetCallInfoResponse><CallState>Connected</CallState><EventCause>None</EventCause></GetCallInfoResponse>",
        ),
        &messages_xsd(),
    );
    // And the cut-out body child keeps the declarations it relies on.
    let doc = format!(
        r#"<soap:Envelope xmlns:soap="{SOAP_ENV_NS}" xmlns:m="{MESSAGES_NS}"><soap:Header/><soap:Body><m:IsUMEnabledResponse><m:IsUMEnabledResponse>true</m:IsUMEnabledResponse></m:IsUMEnabledResponse></soap:Body></soap:Envelope>"#
    );
    let child = body_child(&doc);
    assert!(
        child.starts_with("<m:IsUMEnabledResponse xmlns:m="),
        "{child}"
    );
    v.assert_valid("a prefixed body child", &child, &messages_xsd());
}

// ---------------------------------------------------------------------------
// Setup helpers
// ---------------------------------------------------------------------------

/// Gives `user` telephone access numbers (no CLI flag sets them).
fn set_access_numbers(server: &Server, user: &str, numbers: &str) {
    let store = umws::store::Store::open(server.data_dir()).expect("open the store");
    let mailbox = store
        .mailbox(user)
        .expect("read the mailbox")
        .expect("the mailbox exists");
    store
        .set_telephone_access_numbers(mailbox.id, Some(numbers))
        .expect("set access numbers");
}

/// One request/response pair seen by the [`RecordingProxy`].
#[derive(Debug, Clone)]
struct Exchange {
    /// The operation named by the SOAPAction header.
    op: String,
    request: String,
    status: u16,
    response: String,
}

/// An HTTP/1.1 proxy on 127.0.0.1:0 that records each SOAP request and the
/// server's answer, so the bytes the typed client sends can be validated.
struct RecordingProxy {
    base: String,
    log: Arc<Mutex<Vec<Exchange>>>,
}

impl RecordingProxy {
    fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let upstream = upstream.to_owned();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let sink = Arc::clone(&sink);
                let upstream = upstream.clone();
                std::thread::spawn(move || proxy_connection(stream, &upstream, &sink));
            }
        });
        RecordingProxy { base, log }
    }

    fn exchanges(&self) -> Vec<Exchange> {
        self.log.lock().expect("log").clone()
    }
}

/// Serves keep-alive requests on one connection until the client closes it.
fn proxy_connection(stream: TcpStream, upstream: &str, log: &Mutex<Vec<Exchange>>) {
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let forwarded: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(k, _)| {
                !["host", "content-length", "connection"]
                    .iter()
                    .any(|h| k.eq_ignore_ascii_case(h))
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, response_headers, response) = post_raw(upstream, &path, &forwarded, &body);
        let op = header("soapaction")
            .unwrap_or_default()
            .trim_matches('"')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        log.lock().expect("log").push(Exchange {
            op,
            request: String::from_utf8_lossy(&body).into_owned(),
            status,
            response: response.clone(),
        });
        let content_type = response_headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str())
            .unwrap_or("text/plain");
        let head = format!(
            "HTTP/1.1 {status} Proxied\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            response.len()
        );
        if writer.write_all(head.as_bytes()).is_err()
            || writer.write_all(response.as_bytes()).is_err()
        {
            return;
        }
    }
}
