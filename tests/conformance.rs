//! The seed's and the spec's examples against a real `umws serve` process,
//! byte for byte where the spec shows bytes, and the faults and HTTP answers
//! of UM-SPEC.md for bad requests.

mod common;

use common::{basic, pin_check, pin_in_mail, post_raw, Server, SEED_REQUEST, SEED_RESPONSE};

const PATH: &str = "/UnifiedMessaging/Service.asmx";
const LEGACY: &str = "/EWS/UM2007Legacy.asmx";
const M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
const T: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const E: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

/// Drops whitespace between tags and before `?>`/`/>`, which XML does not
/// count; everything else must match byte for byte.
fn normalize(xml: &str) -> String {
    let chars: Vec<char> = xml.trim().chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_whitespace() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let between_tags = out.ends_with('>') && chars.get(i) == Some(&'<');
        let before_close =
            matches!(chars.get(i), Some('?' | '/')) && chars.get(i + 1) == Some(&'>');
        if !between_tags && !before_close {
            out.extend(&chars[start..i]);
        }
    }
    out
}

fn soap(
    server: &Server,
    path: &str,
    action: Option<&str>,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let auth = basic("demo", &server.demo_password);
    let mut headers = vec![
        ("Content-Type", "text/xml; charset=utf-8"),
        ("Authorization", auth.as_str()),
    ];
    let quoted;
    if let Some(a) = action {
        quoted = format!("\"{a}\"");
        headers.push(("SOAPAction", quoted.as_str()));
    }
    post_raw(&server.base, path, &headers, body.as_bytes())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn envelope(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
}

/// Asserts the `a:ErrorInvalidRequest` fault of UM-SPEC.md.
fn assert_invalid_request(status: u16, body: &str) {
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains(&format!(
            r#"<faultcode xmlns:a="{T}">a:ErrorInvalidRequest</faultcode>"#
        )),
        "{body}"
    );
    assert!(
        body.contains(r#"<faultstring xml:lang="en-US">The request is invalid.</faultstring>"#),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#"<ResponseCode xmlns="{E}">ErrorInvalidRequest</ResponseCode>"#
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#"<Message xmlns="{E}">The request is invalid.</Message>"#
        )),
        "{body}"
    );
}

/// Asserts an application fault `a:<name>` of UM-SPEC.md.
fn assert_exception(status: u16, body: &str, name: &str) {
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains(&format!(r#"<faultcode xmlns:a="{E}">a:{name}</faultcode>"#)),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#"<ExceptionType xmlns="{M}">{name}</ExceptionType>"#
        )),
        "{body}"
    );
}

/// The server's log (at the most verbose level, `trace`, which
/// `tests/common` sets) holds neither the PIN nor the password: no digit run of the log equals the PIN (timestamps, the first
/// field of each line, are left out), and the password appears nowhere.
fn assert_no_secret_in_log(server: &Server, pin: &str) {
    let log = server.log();
    assert!(!log.is_empty());
    assert!(!log.contains(&server.demo_password));
    let credentials = basic("demo", &server.demo_password);
    let token = credentials.trim_start_matches("Basic ");
    assert!(
        !log.contains(token),
        "the log never holds the Basic credentials"
    );
    for line in log.lines() {
        let rest = line.split_once(' ').map_or("", |(_, r)| r);
        assert!(
            !rest
                .split(|c: char| !c.is_ascii_digit())
                .any(|run| run == pin),
            "PIN in log line: {line}"
        );
    }
}

/// A log written to a pipe or a file (here: the tests read the server's stderr through a pipe)
/// carries no terminal colour codes, so that it reads as text in a file or journal.
#[test]
fn the_log_has_no_colour_codes_off_a_terminal() {
    let server = Server::start();
    let (status, _, body) = soap(&server, PATH, None, SEED_REQUEST);
    assert_eq!(status, 200, "{body}");
    let log = server.log();
    assert!(log.contains(" INFO "), "{log}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
}

#[test]
fn seed_request_returns_seed_response_and_mails_a_pin_that_pin_check_accepts() {
    let server = Server::start();
    let (status, headers, body) = soap(&server, PATH, None, SEED_REQUEST);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/xml; charset=utf-8")
    );
    assert_eq!(normalize(&body), normalize(SEED_RESPONSE));

    let mails = server.mails("demo");
    assert_eq!(mails.len(), 1);
    let pin = pin_in_mail(&mails[0]);
    assert_eq!(pin.len(), 6, "MinPINLength digits");
    assert!(pin.chars().all(|c| c.is_ascii_digit()));
    assert!(
        !pin.starts_with("12345"),
        "a PIN never starts with the extension"
    );
    assert!(mails[0].contains("To: demo@localhost"));
    assert_eq!(pin_check(server.data_dir(), "demo", &pin), 0);
    assert_no_secret_in_log(&server, &pin);
    // A wrong PIN is refused (one digit changed).
    let wrong: String = pin
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                if c == '9' {
                    '0'
                } else {
                    char::from(c as u8 + 1)
                }
            } else {
                c
            }
        })
        .collect();
    assert_eq!(pin_check(server.data_dir(), "demo", &wrong), 1);
}

#[test]
fn http_namespace_form_answers_in_http_namespace_on_both_paths() {
    let server = Server::start();
    let request = SEED_REQUEST.replace("https://", "http://");
    for path in [PATH, LEGACY] {
        let (status, _, body) = soap(&server, path, Some(&format!("{M}/ResetPIN")), &request);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            normalize(&body),
            normalize(&SEED_RESPONSE.replace("https://", "http://"))
        );
    }
    let mails = server.mails("demo");
    assert_eq!(mails.len(), 2);
    let (first, second) = (pin_in_mail(&mails[0]), pin_in_mail(&mails[1]));
    assert_ne!(first, second, "a reset never reuses a PIN in the history");
    assert_eq!(
        pin_check(server.data_dir(), "demo", &first),
        1,
        "the old PIN no longer works"
    );
    assert_eq!(pin_check(server.data_dir(), "demo", &second), 0);
}

#[test]
fn strict_namespaces_refuse_the_https_spelling_and_change_nothing() {
    let server = Server::start_with(&["--strict-namespaces"]);
    let (status, _, body) = soap(&server, PATH, None, SEED_REQUEST);
    assert_invalid_request(status, &body);
    assert!(server.mails("demo").is_empty());
}

#[test]
fn caller_not_um_enabled_gets_user_not_um_enabled_exception_and_no_mail() {
    let server = Server::start();
    server.add_mailbox("plain", "pw-plain-1", &["--no-um"]);
    let auth = basic("plain", "pw-plain-1");
    let headers = [
        ("Content-Type", "text/xml; charset=utf-8"),
        ("Authorization", auth.as_str()),
    ];
    let http_request = SEED_REQUEST.replace("https://", "http://");
    let (status, _, body) = post_raw(&server.base, PATH, &headers, http_request.as_bytes());
    assert_exception(status, &body, "UserNotUmEnabledException");
    assert!(
        body.contains("The user isn't enabled for Unified Messaging."),
        "{body}"
    );
    // A fault echoes the namespace spelling of the request.
    let (status, _, body) = post_raw(&server.base, PATH, &headers, SEED_REQUEST.as_bytes());
    assert_eq!(status, 500);
    assert!(
        body.contains(r#"<faultcode xmlns:a="https://schemas.microsoft.com/exchange/services/2006/errors">a:UserNotUmEnabledException</faultcode>"#),
        "{body}"
    );
    assert!(server.mails("plain").is_empty());
    // IsUMEnabled is the one operation that does not require UM.
    let (status, _, body) = post_raw(
        &server.base,
        PATH,
        &headers,
        envelope(&format!(r#"<IsUMEnabled xmlns="{M}"/>"#)).as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<IsUMEnabledResponse>false</IsUMEnabledResponse>"),
        "{body}"
    );
}

#[test]
fn malformed_requests_get_error_invalid_request() {
    let server = Server::start();
    let cases = [
        ("bad XML", envelope(&format!(r#"<ResetPIN xmlns="{M}">"#))),
        (
            "wrong namespace",
            envelope(r#"<ResetPIN xmlns="urn:wrong"/>"#),
        ),
        (
            "unknown operation",
            envelope(&format!(r#"<ResetPassword xmlns="{M}"/>"#)),
        ),
        (
            "missing required child",
            envelope(&format!(r#"<SetOofStatus xmlns="{M}"/>"#)),
        ),
        (
            "wrong value type",
            envelope(&format!(
                r#"<SetOofStatus xmlns="{M}"><status>maybe</status></SetOofStatus>"#
            )),
        ),
        (
            "unexpected child",
            envelope(&format!(
                r#"<ResetPIN xmlns="{M}"><mailbox>other</mailbox></ResetPIN>"#
            )),
        ),
        // An unprefixed child is read by its local name; its namespace is checked apart.
        (
            "child in another default namespace",
            envelope(&format!(
                r#"<SetOofStatus xmlns="{M}"><status xmlns="urn:wrong">true</status></SetOofStatus>"#
            )),
        ),
        (
            "child in no namespace",
            envelope(&format!(
                r#"<SetOofStatus xmlns="{M}"><status xmlns="">true</status></SetOofStatus>"#
            )),
        ),
        (
            "child in the types namespace",
            envelope(&format!(
                r#"<m:SetOofStatus xmlns:m="{M}"><status xmlns="{T}">true</status></m:SetOofStatus>"#
            )),
        ),
        (
            "unexpected attribute",
            envelope(&format!(r#"<ResetPIN xmlns="{M}" mailbox="other"/>"#)),
        ),
        (
            "unexpected text",
            envelope(&format!(r#"<ResetPIN xmlns="{M}">other</ResetPIN>"#)),
        ),
        ("empty body", envelope("")),
        (
            "two body elements",
            envelope(&format!(
                r#"<ResetPIN xmlns="{M}"/><ResetPIN xmlns="{M}"/>"#
            )),
        ),
        (
            "DOCTYPE",
            format!(
                r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ResetPIN xmlns="{M}"/></soap:Body></soap:Envelope>"#
            ),
        ),
        ("not an envelope", format!(r#"<ResetPIN xmlns="{M}"/>"#)),
        ("not XML at all", "hello".to_owned()),
        ("empty", String::new()),
    ];
    for (what, request) in cases {
        let (status, _, body) = soap(&server, PATH, None, &request);
        assert_eq!(status, 500, "{what}: {body}");
        assert_invalid_request(status, &body);
    }
    assert!(
        server.mails("demo").is_empty(),
        "no bad request reset the PIN"
    );
    // The same child in its own namespace, by default or by prefix, is read.
    for request in [
        format!(r#"<SetOofStatus xmlns="{M}"><status>true</status></SetOofStatus>"#),
        format!(r#"<m:SetOofStatus xmlns:m="{M}"><m:status>true</m:status></m:SetOofStatus>"#),
        format!(
            r#"<m:SetOofStatus xmlns:m="{M}"><status xmlns="{M}">true</status></m:SetOofStatus>"#
        ),
    ] {
        let (status, _, body) = soap(&server, PATH, None, &envelope(&request));
        assert_eq!(status, 200, "{request}: {body}");
    }
}

#[test]
fn soap_action_naming_another_operation_is_refused() {
    let server = Server::start();
    let request = SEED_REQUEST.replace("https://", "http://");
    let (status, _, body) = soap(&server, PATH, Some(&format!("{M}/IsUMEnabled")), &request);
    assert_invalid_request(status, &body);
    assert!(server.mails("demo").is_empty());
    // The seed's https spelling of the action is accepted like the namespace.
    let (status, _, _) = soap(
        &server,
        PATH,
        Some("https://schemas.microsoft.com/exchange/services/2006/messages/ResetPIN"),
        SEED_REQUEST,
    );
    assert_eq!(status, 200);
}

#[test]
fn soap12_envelope_gets_version_mismatch() {
    let server = Server::start();
    let body = format!(
        r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><ResetPIN xmlns="{M}"/></e:Body></e:Envelope>"#
    );
    let auth = basic("demo", &server.demo_password);
    let headers = [
        ("Content-Type", "application/soap+xml; charset=utf-8"),
        ("Authorization", auth.as_str()),
    ];
    let (status, _, body) = post_raw(&server.base, PATH, &headers, body.as_bytes());
    assert_eq!(status, 500);
    assert!(
        body.contains("<faultcode>soap:VersionMismatch</faultcode>"),
        "{body}"
    );
    assert!(server.mails("demo").is_empty());
}

#[test]
fn authentication_is_required_and_checked() {
    let server = Server::start();
    let none = [("Content-Type", "text/xml; charset=utf-8")];
    let (status, headers, _) = post_raw(&server.base, PATH, &none, SEED_REQUEST.as_bytes());
    assert_eq!(status, 401);
    assert_eq!(
        header(&headers, "www-authenticate"),
        Some(r#"Basic realm="umws", charset="UTF-8""#)
    );

    for auth in [
        basic("demo", "wrong password"),
        basic("nobody", &server.demo_password),
        "Basic !!!not-base64".to_owned(),
        "Bearer abc".to_owned(),
    ] {
        let headers = [
            ("Content-Type", "text/xml; charset=utf-8"),
            ("Authorization", auth.as_str()),
        ];
        let (status, _, _) = post_raw(&server.base, PATH, &headers, SEED_REQUEST.as_bytes());
        assert_eq!(status, 401, "{auth}");
    }
    assert!(server.mails("demo").is_empty());
    let log = server.log();
    assert!(
        !log.contains(&server.demo_password),
        "the log never holds a password"
    );
}

#[test]
fn oversize_bodies_get_413_and_bad_content_types_415() {
    let server = Server::start();
    let auth = basic("demo", &server.demo_password);
    let big = envelope(&format!(
        r#"<SetPlayOnPhoneDialString xmlns="{M}"><dialString>{}</dialString></SetPlayOnPhoneDialString>"#,
        "1".repeat(200_000)
    ));
    let headers = [
        ("Content-Type", "text/xml; charset=utf-8"),
        ("Authorization", auth.as_str()),
    ];
    let (status, _, _) = post_raw(&server.base, PATH, &headers, big.as_bytes());
    assert_eq!(status, 413);

    let json = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    let (status, _, _) = post_raw(&server.base, PATH, &json, SEED_REQUEST.as_bytes());
    assert_eq!(status, 415);
    let latin1 = [
        ("Content-Type", "text/xml; charset=iso-8859-1"),
        ("Authorization", auth.as_str()),
    ];
    let (status, _, _) = post_raw(&server.base, PATH, &latin1, SEED_REQUEST.as_bytes());
    assert_eq!(status, 415);
    assert!(server.mails("demo").is_empty());
}

fn get(base: &str, target: &str, host: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let (status, _, body) = common::parse_response(&out);
    (status, body)
}

#[test]
fn wsdl_is_served_with_the_address_the_client_used() {
    let server = Server::start();
    let host = "um.example.test:8443";
    let (status, body) = get(&server.base, &format!("{LEGACY}?wsdl"), host);
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!(r#"location="http://{host}{LEGACY}""#)),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#"schemaLocation="http://{host}{LEGACY}?xsd=messages.xsd""#
        )),
        "{body}"
    );
    assert!(body.contains(
        "soapAction=\"http://schemas.microsoft.com/exchange/services/2006/messages/ResetPIN\""
    ));
    let (status, xsd) = get(&server.base, &format!("{LEGACY}?xsd=messages.xsd"), host);
    assert_eq!(status, 200);
    assert!(
        xsd.contains(&format!(
            r#"schemaLocation="http://{host}{LEGACY}?xsd=types.xsd""#
        )),
        "{xsd}"
    );
    assert_eq!(
        get(&server.base, &format!("{PATH}?xsd=../../etc/passwd"), host).0,
        404
    );
    assert_eq!(get(&server.base, PATH, host).0, 400);
    assert_eq!(get(&server.base, "/nowhere", host).0, 404);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let server = Server::start();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

// ---------------------------------------------------------------------------
// The shapes of the answers that carry values (UM-SPEC.md, "Types")
// ---------------------------------------------------------------------------

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// One element of an answer: depth below `soap:Body` (its child is 1), namespace,
/// local name, and its text when it holds no element.
type Shape = Vec<(usize, String, String, Option<String>)>;

/// Every element inside `soap:Body` of `envelope`, in document order, with the namespace
/// each name resolves to (whatever prefixes the writer chose).
fn body_shape(envelope: &str) -> Shape {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    let namespace = |r: ResolveResult<'_>| match r {
        ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(p) => panic!(
            "undeclared prefix {} in {envelope}",
            String::from_utf8_lossy(&p)
        ),
    };
    let mut reader = quick_xml::NsReader::from_str(envelope);
    let mut shape = Shape::new();
    // The open elements: (namespace, local name, index in `shape` when inside the Body).
    let mut open: Vec<(String, String, Option<usize>)> = Vec::new();
    let mut body_depth = None;
    let mut text = String::new();
    loop {
        let (resolved, event) = reader
            .read_resolved_event()
            .unwrap_or_else(|e| panic!("{e}: {envelope}"));
        let start = |e: &quick_xml::events::BytesStart<'_>| {
            String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let (ns, local) = (namespace(resolved), start(e));
                let index = body_depth.map(|d| {
                    shape.push((open.len() - d, ns.clone(), local.clone(), None));
                    shape.len() - 1
                });
                text.clear();
                if matches!(event, Event::Start(_)) {
                    if body_depth.is_none() && ns == SOAP_ENV && local == "Body" {
                        body_depth = Some(open.len());
                    }
                    open.push((ns, local, index));
                }
            }
            Event::Text(t) => text.push_str(&t.decode().expect("utf-8 text")),
            Event::GeneralRef(r) => text.push_str(&format!("&{};", r.decode().expect("utf-8"))),
            Event::End(_) => {
                let (ns, local, index) = open.pop().expect("balanced");
                if let Some(i) = index {
                    // A leaf keeps its text; an element with children has none.
                    if shape.len() == i + 1 && !text.trim().is_empty() {
                        shape[i].3 = Some(text.trim().to_owned());
                    }
                }
                if index.is_none() && ns == SOAP_ENV && local == "Body" {
                    body_depth = None;
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    shape
}

/// `(depth, namespace, name, text)` rows as a [`Shape`].
fn shape(rows: &[(usize, &str, &str, Option<&str>)]) -> Shape {
    rows.iter()
        .map(|(d, ns, local, text)| {
            (
                *d,
                ns.to_string(),
                local.to_string(),
                text.map(String::from),
            )
        })
        .collect()
}

/// Calls `op` on the real server with SOAPAction set and returns the answer's envelope.
fn call_ok(server: &Server, op: &str, children: &str) -> String {
    let (status, _, body) = soap(
        server,
        PATH,
        Some(&format!("{M}/{op}")),
        &envelope(&format!(r#"<{op} xmlns="{M}">{children}</{op}>"#)),
    );
    assert_eq!(status, 200, "{op}: {body}");
    body
}

/// GetUMProperties answers `GetUMPropertiesResponse > GetUMPropertiesResponse` of type
/// `UMProperties`, whose children - in this order - are in the messages namespace, as
/// Exchange writes them (UM-SPEC.md, "Types"). Checked element by element: names,
/// namespaces, order and values.
#[test]
fn get_um_properties_answers_the_documented_shape_in_the_messages_namespace() {
    let server = Server::start();
    // Unset optional strings are left out; a fresh mailbox has none of them.
    let fresh = body_shape(&call_ok(&server, "GetUMProperties", ""));
    assert_eq!(
        fresh,
        shape(&[
            (1, M, "GetUMPropertiesResponse", None),
            (2, M, "GetUMPropertiesResponse", None),
            (3, M, "OofStatus", Some("false")),
            (3, M, "MissedCallNotificationEnabled", Some("true")),
        ]),
    );

    for (op, children) in [
        ("SetOofStatus", "<status>true</status>"),
        ("SetMissedCallNotificationEnabled", "<status>false</status>"),
        (
            "SetPlayOnPhoneDialString",
            "<dialString>+1 (425) 555-0100</dialString>",
        ),
        (
            "SetTelephoneAccessFolderEmail",
            "<base64FolderId>AAECAwQFBgc=</base64FolderId>",
        ),
    ] {
        call_ok(&server, op, children);
    }
    let store = umws::store::Store::open(server.data_dir()).expect("open the store");
    let mailbox = store.mailbox("demo").expect("read").expect("demo exists");
    store
        .set_telephone_access_numbers(mailbox.id, Some("+1 425 555 0100, 4100"))
        .expect("set access numbers");
    drop(store);

    let full = body_shape(&call_ok(&server, "GetUMProperties", ""));
    assert_eq!(
        full,
        shape(&[
            (1, M, "GetUMPropertiesResponse", None),
            (2, M, "GetUMPropertiesResponse", None),
            (3, M, "OofStatus", Some("true")),
            (3, M, "MissedCallNotificationEnabled", Some("false")),
            (3, M, "PlayOnPhoneDialString", Some("+1 (425) 555-0100")),
            (
                3,
                M,
                "TelephoneAccessNumbers",
                Some("+1 425 555 0100, 4100")
            ),
            (3, M, "TelephoneAccessFolderEmail", Some("AAECAwQFBgc=")),
        ]),
    );
}

/// Answers GetCallInfo with a fixed call state, written by the generated serializer; every
/// other operation is refused. A `SoapService` over the operation table, so that it needs no
/// method per operation.
struct OneCall;

impl umws_soap::server::SoapService for OneCall {
    fn operations(&self) -> &'static [umws_soap::OperationInfo] {
        &umws::um_service_soap::OPERATIONS
    }

    async fn call<'a>(
        &'a self,
        _: &'a umws_soap::CallContext,
        op: usize,
        _: &'a umws_soap::envelope::BodyElement,
    ) -> Result<umws_soap::server::Reply, umws_soap::server::CallError> {
        if self.operations()[op].name != umws::um_service_soap::operations::GET_CALL_INFO {
            return Err(umws_soap::server::CallError::Fault(
                umws_soap::SoapFault::server("not served"),
            ));
        }
        Ok(Box::new(umws::types::GetCallInfoResponse {
            get_call_info_response: umws::types::UmCallInfoType {
                call_state: umws::types::UmCallStateType::Disconnected,
                event_cause: umws::types::UmEventCauseType::NoAnswer,
            },
        }))
    }
}

/// GetCallInfo answers `GetCallInfoResponse > GetCallInfoResponse` of type `UMCallInfo`:
/// `CallState` then `EventCause`, both in the messages namespace (UM-SPEC.md, "Types").
/// `umws serve` has no telephony backend and so knows no call; the generated dispatcher and
/// serializer that write its answer are served here on a real socket by a service that
/// knows one call.
#[test]
fn get_call_info_answers_the_documented_shape_in_the_messages_namespace() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let server = umws_soap::server::SoapServer::new(
        OneCall,
        umws_soap::server::NoAuthentication,
        umws::fault::ExchangeFaults,
        umws_soap::server::ServerConfig {
            paths: vec![PATH.into()],
            ..Default::default()
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));

    let request = envelope(&format!(
        r#"<GetCallInfo xmlns="{M}"><CallId>MEBob3N0</CallId></GetCallInfo>"#
    ));
    let (status, _, body) = post_raw(
        &base,
        PATH,
        &[("Content-Type", "text/xml; charset=utf-8")],
        request.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body_shape(&body),
        shape(&[
            (1, M, "GetCallInfoResponse", None),
            (2, M, "GetCallInfoResponse", None),
            (3, M, "CallState", Some("Disconnected")),
            (3, M, "EventCause", Some("NoAnswer")),
        ]),
        "{body}"
    );

    let _ = stop.send(());
    runtime
        .block_on(serving)
        .expect("server task")
        .expect("server");
}

/// Serves `body` as the answer to one HTTP request on 127.0.0.1:0; returns the base URL.
fn answer_once(body: String) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("request head");
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("Content-Length");
                }
            }
            if line.trim().is_empty() {
                break;
            }
        }
        let mut request = vec![0; length];
        reader.read_exact(&mut request).expect("request body");
        let mut stream = reader.into_inner();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("answer");
    });
    base
}

/// Writes `<name>children</name>` in the messages namespace, with every element unprefixed
/// under a default namespace declaration (as Exchange writes it) or, `prefixed`, as `m:name`
/// (as other SOAP stacks write the same XML).
fn messages_xml(prefixed: bool, name: &str, children: &[(&str, &str)]) -> String {
    let (p, declaration) = if prefixed {
        ("m:", format!(r#" xmlns:m="{M}""#))
    } else {
        ("", format!(r#" xmlns="{M}""#))
    };
    let inner: String = children
        .iter()
        .map(|(child, value)| format!("<{p}{child}>{value}</{p}{child}>"))
        .collect();
    format!("<{p}{name}{declaration}><{p}{name}>{inner}</{p}{name}></{p}{name}>")
}

/// The typed client reads the values of GetUMProperties and GetCallInfo in the messages
/// namespace, unprefixed under its default declaration as Exchange writes them, and with a
/// prefix as other SOAP stacks write the same XML.
#[test]
fn the_typed_client_reads_exchange_shaped_answers() {
    use umws::um_service_soap::UmServiceSoapClient;
    use umws_soap::client::Transport;
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let client = |base: &str| {
        UmServiceSoapClient::new(
            Transport::new(&format!("{base}{PATH}"))
                .expect("endpoint")
                .with_timeout(std::time::Duration::from_secs(30)),
        )
    };
    for prefixed in [false, true] {
        let base = answer_once(envelope(&messages_xml(
            prefixed,
            "GetUMPropertiesResponse",
            &[
                ("OofStatus", "true"),
                ("MissedCallNotificationEnabled", "false"),
                ("PlayOnPhoneDialString", "4100"),
                ("TelephoneAccessNumbers", "+1 425 555 0100, 4100"),
                ("TelephoneAccessFolderEmail", "AAECAwQFBgc="),
            ],
        )));
        let props = runtime
            .block_on(client(&base).get_um_properties(&umws::types::GetUmProperties {}))
            .unwrap_or_else(|e| panic!("GetUMProperties (prefixed: {prefixed}): {e}"))
            .get_um_properties_response;
        assert!(props.oof_status);
        assert!(!props.missed_call_notification_enabled);
        assert_eq!(props.play_on_phone_dial_string.as_deref(), Some("4100"));
        assert_eq!(
            props.telephone_access_numbers.as_deref(),
            Some("+1 425 555 0100, 4100")
        );
        assert_eq!(
            props.telephone_access_folder_email.as_deref(),
            Some("AAECAwQFBgc=")
        );

        let base = answer_once(envelope(&messages_xml(
            prefixed,
            "GetCallInfoResponse",
            &[("CallState", "Connected"), ("EventCause", "None")],
        )));
        let info = runtime
            .block_on(client(&base).get_call_info(&umws::types::GetCallInfo {
                call_id: Some("MEBob3N0".into()),
            }))
            .unwrap_or_else(|e| panic!("GetCallInfo (prefixed: {prefixed}): {e}"))
            .get_call_info_response;
        assert_eq!(info.call_state, umws::types::UmCallStateType::Connected);
        assert_eq!(info.event_cause, umws::types::UmEventCauseType::None);
    }
}
