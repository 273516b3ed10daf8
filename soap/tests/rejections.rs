//! Every answer the server gives to a request it refuses, byte for byte.
//!
//! Each request goes over a real socket to a `SoapServer` on 127.0.0.1:0, and the whole
//! response (status line, headers, body; only the `date` header is left out) is compared
//! with what a client has always received. A change to a status code, a header or a body
//! text of any rejection or fault fails here.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use umws_soap::envelope::{BodyElement, EnvelopeWriter};
use umws_soap::fault::DetailEntry;
use umws_soap::namespace::NamespaceAliases;
use umws_soap::server::{
    AuthDecision, Authenticator, CallError, Credentials, EmptyReply, PlainFaults, Reply, ReplyBody,
    ServerConfig, SoapServer, SoapService,
};
use umws_soap::wsdl::WsdlDocuments;
use umws_soap::xml::XmlError;
use umws_soap::{CallContext, OperationInfo, SoapFault};

const NS: &str = "http://example.com/t";

const fn op(name: &'static str, soap_action: Option<&'static str>) -> OperationInfo {
    OperationInfo {
        name,
        request_namespace: NS,
        request_element: name,
        response_namespace: NS,
        response_element: name,
        soap_action,
        understood_headers: &[],
    }
}

/// `Ping` answers, `Bad` finds its request invalid, `Fail` answers with a fault and
/// `Unwritable` with a reply that cannot be written.
static OPERATIONS: [OperationInfo; 4] = [
    op("Ping", Some("http://example.com/t/Ping")),
    op("Bad", None),
    op("Fail", None),
    op("Unwritable", None),
];

/// An error of the kind a generated reader returns.
fn xml_error() -> XmlError {
    umws_soap::xml::from_fragment::<i32>("<n>not a number</n>").unwrap_err()
}

struct Unwritable;

impl ReplyBody for Unwritable {
    fn write(&self, _out: &mut EnvelopeWriter<'_>) -> Result<(), XmlError> {
        Err(xml_error())
    }
}

struct Service;

impl SoapService for Service {
    fn operations(&self) -> &'static [OperationInfo] {
        &OPERATIONS
    }

    async fn call(
        &self,
        _ctx: &CallContext,
        op: usize,
        _body: &BodyElement,
    ) -> Result<Reply, CallError> {
        match op {
            0 => Ok(Box::new(EmptyReply)),
            1 => Err(CallError::InvalidRequest(xml_error())),
            2 => Err(CallError::Fault(
                SoapFault::client("The operation refused.")
                    .with_detail(DetailEntry::new(NS, "Reason", "none")),
            )),
            _ => Ok(Box::new(Unwritable)),
        }
    }
}

/// `demo:pw` may call; `broken:pw` makes the check itself fail; anyone else is denied.
struct Auth;

impl Authenticator for Auth {
    async fn authenticate(
        &self,
        credentials: Option<Credentials>,
        _remote_addr: Option<SocketAddr>,
    ) -> Result<AuthDecision, Box<dyn std::error::Error + Send + Sync>> {
        match credentials.as_ref().map(|c| (c.user(), c.password())) {
            Some(("demo", "pw")) => Ok(AuthDecision::Allow(http::Extensions::new())),
            Some(("broken", _)) => Err("the account store is down".into()),
            Some(("slow", _)) => Ok(AuthDecision::Throttled(std::time::Duration::from_millis(
                1500,
            ))),
            _ => Ok(AuthDecision::Deny),
        }
    }
}

/// A server with `config` (paths `/svc`, realm `Test`, a 1,000-byte limit, aliases
/// `https://example.com/` for `http://example.com/`, unless changed) on 127.0.0.1:0.
async fn server(change: impl FnOnce(&mut ServerConfig)) -> (SocketAddr, oneshot::Sender<()>) {
    let mut config = ServerConfig {
        paths: vec!["/svc".into()],
        max_body_bytes: 1000,
        aliases: NamespaceAliases::none().with("https://example.com/", "http://example.com/"),
        realm: "Test".into(),
        ..ServerConfig::default()
    };
    change(&mut config);
    let server = SoapServer::new(Service, Auth, PlainFaults, config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Sends `request` on a new connection and returns the response without its `date`
/// header: the head, then as many body bytes as `content-length` says.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                if got.len() >= end + 4 + length {
                    got.truncate(end + 4 + length);
                    return;
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole response: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the server answers");
    String::from_utf8(got)
        .unwrap()
        .split_inclusive("\r\n")
        .filter(|line| !line.starts_with("date: "))
        .collect()
}

fn basic(pair: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pair)
}

/// A POST to `/svc` with these extra header lines and body.
fn post(headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /svc HTTP/1.1\r\nHost: h\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An authenticated SOAP 1.1 POST of `body` with these extra header lines.
fn soap(headers: &str, body: &str) -> Vec<u8> {
    post(
        &format!(
            "Content-Type: text/xml; charset=utf-8\r\nAuthorization: Basic {}\r\n{headers}",
            basic("demo:pw")
        ),
        body,
    )
}

/// A SOAP 1.1 envelope around `body`, with `header` blocks.
fn envelope(header: &str, body: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"#
    )
}

fn plain(status: &str, extra: &str, text: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n{extra}content-length: {}\r\n\r\n{text}",
        text.len()
    )
}

/// A `500` fault answer with this `faultcode` and `faultstring`.
fn fault(code: &str, string: &str) -> String {
    fault_with(code, string, "")
}

/// A `500` fault answer with this `faultcode`, `faultstring` and `detail` (XML).
fn fault_with(code: &str, string: &str, detail: &str) -> String {
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body><soap:Fault><faultcode>{code}</faultcode><faultstring>{string}</faultstring>{detail}</soap:Fault></soap:Body></soap:Envelope>"#
    );
    format!(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/xml; charset=utf-8\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

const UNAUTHORIZED: &str = "www-authenticate: Basic realm=\"Test\", charset=\"UTF-8\"\r\n";

#[tokio::test]
async fn http_rejections_are_answered_as_before() {
    let (addr, _stop) = server(|_| {}).await;
    let xml = "Content-Type: text/xml; charset=utf-8\r\n";
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "unknown path",
            b"GET /other HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            plain("404 Not Found", "", "not found\n"),
        ),
        (
            "method",
            b"PUT /svc HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n".to_vec(),
            plain(
                "405 Method Not Allowed",
                "allow: GET, POST\r\n",
                "use POST, or GET ?wsdl\n",
            ),
        ),
        (
            "no WSDL",
            b"GET /svc?wsdl HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            plain("404 Not Found", "", "no WSDL is published here\n"),
        ),
        (
            "media type",
            post("Content-Type: application/json\r\n", "{}"),
            plain(
                "415 Unsupported Media Type",
                "",
                "a SOAP 1.1 request needs Content-Type: text/xml; charset=utf-8\n",
            ),
        ),
        (
            "charset",
            post("Content-Type: text/xml; charset=latin1\r\n", "<a/>"),
            plain(
                "415 Unsupported Media Type",
                "",
                "only charset=utf-8 is supported\n",
            ),
        ),
        (
            "throttled logon",
            post(
                &format!("{xml}Authorization: Basic {}\r\n", basic("slow:pw")),
                "<a/>",
            ),
            plain(
                "429 Too Many Requests",
                "retry-after: 2\r\n",
                "too many failed logons; retry later\n",
            ),
        ),
        (
            "unreadable Authorization",
            post(&format!("{xml}Authorization: Bearer x\r\n"), "<a/>"),
            plain(
                "401 Unauthorized",
                UNAUTHORIZED,
                "authentication required\n",
            ),
        ),
        (
            "no credentials",
            post(xml, "<a/>"),
            plain(
                "401 Unauthorized",
                UNAUTHORIZED,
                "authentication required\n",
            ),
        ),
        (
            "wrong credentials",
            post(
                &format!("{xml}Authorization: Basic {}\r\n", basic("demo:no")),
                "<a/>",
            ),
            plain(
                "401 Unauthorized",
                UNAUTHORIZED,
                "authentication required\n",
            ),
        ),
        (
            "authentication fails",
            post(
                &format!("{xml}Authorization: Basic {}\r\n", basic("broken:pw")),
                "<a/>",
            ),
            plain(
                "503 Service Unavailable",
                "",
                "authentication is unavailable\n",
            ),
        ),
        (
            "declared length over the limit",
            soap("", &"x".repeat(1001)),
            plain(
                "413 Payload Too Large",
                "",
                "the request body is larger than 1000 bytes\n",
            ),
        ),
        (
            "chunked body over the limit",
            format!(
                "POST /svc HTTP/1.1\r\nHost: h\r\n{xml}Authorization: Basic {}\r\n\
                 Transfer-Encoding: chunked\r\n\r\n3e8\r\n{}\r\n1\r\nx\r\n0\r\n\r\n",
                basic("demo:pw"),
                "x".repeat(1000)
            )
            .into_bytes(),
            plain(
                "413 Payload Too Large",
                "",
                "the request body is larger than 1000 bytes\n",
            ),
        ),
        (
            "broken chunked body",
            format!(
                "POST /svc HTTP/1.1\r\nHost: h\r\n{xml}Authorization: Basic {}\r\n\
                 Transfer-Encoding: chunked\r\n\r\nzz\r\n",
                basic("demo:pw"),
            )
            .into_bytes(),
            plain(
                "400 Bad Request",
                "",
                "the request body could not be read\n",
            ),
        ),
    ];
    for (name, request, expected) in cases {
        assert_eq!(exchange(addr, &request).await, expected, "{name}");
    }
}

#[tokio::test]
async fn wsdl_requests_are_refused_as_before() {
    let docs = WsdlDocuments::new(
        r#"<d><import location="a.xsd"/></d>"#,
        vec![
            ("a.xsd".into(), "<s/>".into()),
            ("broken.xsd".into(), "<s></t>".into()),
        ],
    );
    let (addr, _stop) = server(|c| c.wsdl = Some(docs)).await;
    let get = |query: &str| format!("GET /svc?{query} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes();
    let cases = [
        (
            "other query",
            get("x=1"),
            plain("400 Bad Request", "", "POST a SOAP request, or GET ?wsdl\n"),
        ),
        (
            "unknown schema",
            get("xsd=nope.xsd"),
            plain("404 Not Found", "", "no such schema\n"),
        ),
        (
            "unrenderable schema",
            get("xsd=broken.xsd"),
            plain("500 Internal Server Error", "", "internal error\n"),
        ),
    ];
    for (name, request, expected) in cases {
        assert_eq!(exchange(addr, &request).await, expected, "{name}");
    }
    // The documents themselves are served.
    let wsdl = exchange(addr, &get("wsdl")).await;
    assert!(wsdl.starts_with("HTTP/1.1 200 OK\r\n"), "{wsdl}");
    assert!(
        wsdl.contains("location=\"http://h/svc?xsd=a.xsd\""),
        "{wsdl}"
    );
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_refused_as_before() {
    let (addr, _stop) = server(|c| c.body_read_timeout = Some(Duration::from_millis(200))).await;
    let mut request = soap("", &"x".repeat(500));
    request.truncate(request.len() - 400);
    assert_eq!(
        exchange(addr, &request).await,
        plain(
            "408 Request Timeout",
            "connection: close\r\n",
            "the request body did not arrive in time\n"
        )
    );
}

#[tokio::test]
async fn faults_are_answered_as_before() {
    let (addr, _stop) = server(|_| {}).await;
    let soap12 = format!(
        "Content-Type: application/soap+xml; charset=utf-8\r\nAuthorization: Basic {}\r\n",
        basic("demo:pw")
    );
    let ping = format!(r#"<Ping xmlns="{NS}"/>"#);
    let cases = [
        (
            "SOAP 1.2 envelope",
            post(
                &soap12,
                r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>"#,
            ),
            fault(
                "soap:VersionMismatch",
                "The SOAP envelope namespace is not supported; use SOAP 1.1.",
            ),
        ),
        (
            "unknown envelope namespace",
            soap(
                "",
                r#"<e:Envelope xmlns:e="urn:not-soap"><e:Body/></e:Envelope>"#,
            ),
            fault(
                "soap:VersionMismatch",
                "The SOAP envelope namespace is not supported; use SOAP 1.1.",
            ),
        ),
        (
            "not XML",
            soap("", "<s:Envelope"),
            fault(
                "soap:Client",
                "the message is not well-formed XML (at byte 0): syntax error: \
                 tag not closed: `&gt;` not found before end of input",
            ),
        ),
        (
            "empty Body",
            soap("", &envelope("", "")),
            fault("soap:Client", "the Body holds no request element"),
        ),
        (
            "unknown operation",
            soap("", &envelope("", r#"<Pong xmlns="http://example.com/t"/>"#)),
            fault(
                "soap:Client",
                "no operation has the request element {http://example.com/t}Pong",
            ),
        ),
        (
            "unknown operation, alias spelling",
            soap(
                "",
                &envelope("", r#"<Pong xmlns="https://example.com/t"/>"#),
            ),
            fault(
                "soap:Client",
                "no operation has the request element {http://example.com/t}Pong",
            ),
        ),
        (
            "SOAPAction of another operation",
            soap("SOAPAction: \"urn:other\"\r\n", &envelope("", &ping)),
            fault(
                "soap:Client",
                "the SOAPAction urn:other does not name the operation Ping of the body",
            ),
        ),
        (
            "mustUnderstand header",
            soap(
                "",
                &envelope(r#"<h:Trace xmlns:h="urn:h" s:mustUnderstand="1"/>"#, &ping),
            ),
            fault(
                "soap:MustUnderstand",
                "The header {urn:h}Trace is marked mustUnderstand but is not understood.",
            ),
        ),
        (
            "invalid request element",
            soap("", &envelope("", r#"<Bad xmlns="http://example.com/t"/>"#)),
            fault(
                "soap:Client",
                "the request does not match its schema: Custom Error: message=Unable to \
                 deserialize value from string (value = not a number, error = invalid digit \
                 found in string)",
            ),
        ),
        (
            "the operation's fault",
            soap("", &envelope("", r#"<Fail xmlns="http://example.com/t"/>"#)),
            fault_with(
                "soap:Client",
                "The operation refused.",
                r#"<detail><Reason xmlns="http://example.com/t">none</Reason></detail>"#,
            ),
        ),
        (
            "the operation's fault, alias spelling",
            soap(
                "",
                &envelope("", r#"<Fail xmlns="https://example.com/t"/>"#),
            ),
            fault_with(
                "soap:Client",
                "The operation refused.",
                r#"<detail><Reason xmlns="https://example.com/t">none</Reason></detail>"#,
            ),
        ),
        (
            "unwritable reply",
            soap(
                "",
                &envelope("", r#"<Unwritable xmlns="http://example.com/t"/>"#),
            ),
            fault("soap:Server", "The server could not write its response."),
        ),
    ];
    for (name, request, expected) in cases {
        assert_eq!(exchange(addr, &request).await, expected, "{name}");
    }
    // The operation itself answers.
    let ok = exchange(addr, &soap("", &envelope("", &ping))).await;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
}
