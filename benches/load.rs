//! Load generator: the real UM server next to fixed-bytes servers (the ceiling), in one run.
//!
//! `cargo bench --bench load` (see BENCHMARKS.md for the method and the numbers).
//!
//! Everything runs in this process on three kinds of threads: the servers on one tokio runtime
//! (threads `umws-srv`, workers and blocking pool, like `umws serve`), the load generator on
//! another (threads `umws-cli`), and this main thread, which only orchestrates. The CPU time
//! of each group is read from `/proc/self/task/*/schedstat` around the measured window, so the
//! table shows server CPU per request next to throughput: on a small shared machine that is
//! the steadier number.
//!
//! Targets, each driven by the same client over HTTP/1.1 keep-alive connections:
//! - `umws`: `umws::app::build_server` over a fresh store, served by `SoapServer::serve`;
//! - `umws, access log on`: the same with a `tracing` fmt subscriber writing the per-request
//!   access log line (into a sink, so formatting is measured, not the terminal);
//! - `umws, trusted auth`: the same service and server with an authenticator that trusts the
//!   caller (no cache lookup, no SQLite read), to show what authentication costs;
//! - `umws, inline read`: the real service and authentication, but IsUMEnabled reads the
//!   mailbox on the async worker instead of through `spawn_blocking` (a proposed change);
//! - `hyper fixed`: a hyper 1 HTTP/1.1 server whose service reads the body and answers the
//!   bytes the real server answered (same status, content type, body);
//! - `hand-written`: the reference point, a hyper + quick-xml server for IsUMEnabled
//!   alone on the ceiling's HTTP stack (checks, Basic with the real credentials cache, a
//!   quick-xml pass over the envelope, the answer from a template; no schema layer);
//! - `raw fixed`: tokio TCP reading a request head and body and writing the exact response the
//!   real server sent (head included): the floor of any HTTP server on this machine;
//! - `node-soap`: a stock SOAP server from another ecosystem, npm's `soap` on Node.js serving
//!   `schemas/um.wsdl`'s IsUMEnabled with Basic auth (`benches/node_soap/server.js`, the
//!   version pinned in its `package-lock.json`), run as a child process on a free port and
//!   killed at the end. The first use installs it with `npm ci` into `target/bench-node/`;
//!   its CPU time is that of its process tree, read from `/proc/PID/task/*/schedstat`.
//!
//! Settings (environment variables): `UMWS_LOAD_SECS` (5), `UMWS_LOAD_WARMUP_SECS` (1),
//! `UMWS_LOAD_CONNECTIONS` (`64`, comma-separated list), `UMWS_LOAD_RESET_CONNECTIONS` (`4,16`),
//! `UMWS_LOAD_RESET_SECS` (10), `UMWS_LOAD_RESET_WARMUP_SECS` (2), `UMWS_LOAD_ROUNDS` (2),
//! `UMWS_LOAD_SERVER_THREADS` (the number of CPUs, like `umws serve`),
//! `UMWS_LOAD_CLIENT_THREADS` (1), `UMWS_LOAD_ONLY` (`is-um-enabled`, `reset-pin` or `phases`),
//! `UMWS_LOAD_TARGETS` (comma-separated subset of `umws,log,trusted,inline,hand,hyper,raw,node`;
//! without it every target, `node` only when Node.js and npm are installed),
//! `UMWS_LOAD_MAX_BLOCKING` (the server runtime's blocking pool limit; tokio's default 512),
//! `UMWS_LOAD_NODE_WORKERS` (node-soap's processes, node's `cluster` module sharing the port; 1),
//! `UMWS_LOAD_NODE_CHUNKED` (1: node-soap answers chunked, its default; 0, the default here:
//! with a Content-Length, node's cheaper way).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use umws::app::{MailboxAuth, UmServer};
use umws::config::ServeConfig;
use umws::mail::{MailDelivery, Maildir, ResetPinMailer};
use umws::namespaces::MESSAGES;
use umws::service::{Caller, UmService};
use umws::store::{MailboxId, NewMailbox, ResetPinOutcome, Store};
use umws::types;
use umws::um_service_soap::{actions, operations, UmServiceSoapServer, OPERATIONS};
use umws_soap::envelope::{self, ParseOptions};
use umws_soap::namespace::NamespaceAliases;
use umws_soap::server::{
    AuthDecision, CallError, Credentials, Reply, ServerConfig, SoapServer, SoapService,
};

/// The allocator of the `umws` binary, so that the servers here run as `umws serve` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PATH: &str = "/UnifiedMessaging/Service.asmx";
const DEMO_USER: &str = "demo";
const DEMO_PASSWORD: &str = "bench-password-0123";

/// Whether the access log subscriber formats events (see [`install_log_switch`]).
static LOG_ON: AtomicBool = AtomicBool::new(false);

// ---------------------------------------------------------------------------------------------
// Settings

struct Settings {
    secs: f64,
    warmup: f64,
    connections: Vec<usize>,
    reset_connections: Vec<usize>,
    reset_secs: f64,
    reset_warmup: f64,
    rounds: usize,
    server_threads: usize,
    client_threads: usize,
    only: Option<String>,
    targets: Option<Vec<String>>,
    max_blocking: Option<usize>,
    node_workers: usize,
    node_chunked: bool,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .filter(|n| *n > 0)
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

impl Settings {
    fn from_env() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            secs: env_or("UMWS_LOAD_SECS", 5.0),
            warmup: env_or("UMWS_LOAD_WARMUP_SECS", 1.0),
            connections: env_list("UMWS_LOAD_CONNECTIONS", &[64]),
            reset_connections: env_list("UMWS_LOAD_RESET_CONNECTIONS", &[4, 16]),
            reset_secs: env_or("UMWS_LOAD_RESET_SECS", 10.0),
            reset_warmup: env_or("UMWS_LOAD_RESET_WARMUP_SECS", 2.0),
            rounds: env_or("UMWS_LOAD_ROUNDS", 2usize).max(1),
            server_threads: env_or("UMWS_LOAD_SERVER_THREADS", cpus).max(1),
            client_threads: env_or("UMWS_LOAD_CLIENT_THREADS", 1usize).max(1),
            only: std::env::var("UMWS_LOAD_ONLY")
                .ok()
                .filter(|s| !s.is_empty()),
            targets: std::env::var("UMWS_LOAD_TARGETS")
                .ok()
                .map(|v| v.split(',').map(|t| t.trim().to_owned()).collect()),
            max_blocking: std::env::var("UMWS_LOAD_MAX_BLOCKING")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|n| *n > 0),
            node_workers: env_or("UMWS_LOAD_NODE_WORKERS", 1usize).max(1),
            node_chunked: env_or("UMWS_LOAD_NODE_CHUNKED", 0u8) != 0,
        }
    }

    fn targets(&self, key: &str) -> bool {
        self.targets
            .as_ref()
            .is_none_or(|t| t.iter().any(|k| k == key))
    }

    /// Whether `UMWS_LOAD_TARGETS` names `key` (not merely leaves it in by being unset).
    fn names_target(&self, key: &str) -> bool {
        self.targets
            .as_ref()
            .is_some_and(|t| t.iter().any(|k| k == key))
    }

    fn runs(&self, part: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == part)
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

fn envelope_for(element: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\n  \
         <soap:Body>\n    <{element} xmlns=\"{MESSAGES}\" />\n  </soap:Body>\n</soap:Envelope>\n"
    )
}

/// A complete HTTP/1.1 request, as a SOAP client sends it.
fn http_request(addr: SocketAddr, action: &str, body: &str, user: &str, password: &str) -> Vec<u8> {
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=utf-8\r\n\
         SOAPAction: \"{action}\"\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        basic(user, password),
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// The requests of one operation: one per user.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Operation {
    IsUmEnabled,
    ResetPin,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Self::IsUmEnabled => "IsUMEnabled",
            Self::ResetPin => "ResetPIN",
        }
    }

    fn request(self, addr: SocketAddr, user: &str, password: &str) -> Vec<u8> {
        let (action, body) = match self {
            Self::IsUmEnabled => (actions::IS_UM_ENABLED, envelope_for("IsUMEnabled")),
            Self::ResetPin => (actions::RESET_PIN, envelope_for("ResetPIN")),
        };
        http_request(addr, action, &body, user, password)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 framing for the client and the raw server (Content-Length, or a chunked body
// without trailers; no pipelining)

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The value of header `name` in `head`.
fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

fn content_length(head: &[u8]) -> usize {
    header_value(&String::from_utf8_lossy(head), "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn is_chunked(head: &[u8]) -> bool {
    header_value(&String::from_utf8_lossy(head), "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
}

/// Reads more of the stream into `buf`; an end of stream is an error here.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    if stream.read_buf(buf).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Reads one message (head and a Content-Length or chunked body) into `buf`; returns its
/// length, or `None` at a clean end of stream.
async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    buf.clear();
    let head = loop {
        if let Some(end) = head_end(buf) {
            break end;
        }
        if stream.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
    };
    let total = if is_chunked(&buf[..head]) {
        // Chunks `SIZE[;ext]\r\nDATA\r\n` up to the last one, `0\r\n\r\n` (no trailers).
        let mut at = head;
        loop {
            let line = loop {
                if let Some(i) = buf[at..].windows(2).position(|w| w == b"\r\n") {
                    break at + i;
                }
                read_more(stream, buf).await?;
            };
            let size = std::str::from_utf8(&buf[at..line])
                .ok()
                .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
                .ok_or(io::ErrorKind::InvalidData)?;
            at = line + 2 + size + 2;
            while buf.len() < at {
                read_more(stream, buf).await?;
            }
            if size == 0 {
                break at;
            }
        }
    } else {
        head + content_length(&buf[..head])
    };
    while buf.len() < total {
        read_more(stream, buf).await?;
    }
    Ok(Some(total))
}

fn status_of(response: &[u8]) -> u16 {
    response
        .split(|b| *b == b' ')
        .nth(1)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// One request over a fresh connection; the whole response.
async fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut buf = Vec::with_capacity(4096);
    let n = read_message(&mut stream, &mut buf)
        .await?
        .ok_or(io::ErrorKind::UnexpectedEof)?;
    buf.truncate(n);
    Ok(buf)
}

// ---------------------------------------------------------------------------------------------
// The ceilings

/// A response body of fixed bytes.
struct Fixed(Option<Bytes>);

impl Body for Fixed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// A tokio stream as hyper IO, without `unsafe` (so reads copy once through a buffer; the
/// copy is of a few hundred bytes per request).
struct Io {
    stream: TcpStream,
    buf: Box<[u8]>,
}

impl hyper::rt::Read for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut cursor: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = cursor.remaining().min(this.buf.len());
        let mut rb = ReadBuf::new(&mut this.buf[..n]);
        match Pin::new(&mut this.stream).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                cursor.put_slice(rb.filled());
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl hyper::rt::Write for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, b)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Reads a request body to its end (as the real server does); returns its length.
async fn drain(mut body: Incoming) -> usize {
    let mut n = 0;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        match frame {
            Ok(f) => n += f.data_ref().map_or(0, Bytes::len),
            Err(_) => break,
        }
    }
    n
}

/// Serves every connection of `listener` with hyper 1, HTTP/1.1 keep-alive, over [`Io`], with
/// a clone of `service` each.
async fn serve_http1<S>(listener: TcpListener, service: S)
where
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<Fixed>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = Io {
            stream,
            buf: vec![0; 8192].into_boxed_slice(),
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// A response with `status` and `body` as `text/xml; charset=utf-8`.
fn xml_answer(status: http::StatusCode, body: Bytes) -> hyper::Response<Fixed> {
    let mut response = hyper::Response::new(Fixed(Some(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    response
}

/// hyper 1, HTTP/1.1, keep-alive, a service answering `status` with `body` as `text/xml`.
async fn serve_hyper_fixed(listener: TcpListener, status: u16, body: Bytes) {
    let status =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let body = body.clone();
        async move {
            drain(req.into_body()).await;
            Ok::<_, Infallible>(xml_answer(status, body))
        }
    });
    serve_http1(listener, service).await;
}

/// The reference point: a hand-written hyper + quick-xml server for IsUMEnabled alone,
/// on the ceiling's HTTP stack. Per request it checks the method, path, content type,
/// `SOAPAction` and Basic credentials (the real [`umws::auth::Authenticator`], so a cache hit
/// as in `umws`), reads the body, checks with quick-xml's `NsReader` that it is a SOAP 1.1
/// envelope whose body holds `IsUMEnabled` in the messages namespace, and writes the answer
/// from a template around the mailbox's flag (the real server's bytes). No schema layer, no
/// fault details: it shows what the checks and the XML cost without the generated code.
async fn serve_hand_written(
    listener: TcpListener,
    auth: umws::auth::Authenticator,
    template: (Bytes, Bytes),
) {
    let shared = Arc::new((auth, template));
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let shared = Arc::clone(&shared);
        async move {
            let (auth, (before, after)) = &*shared;
            let answer = match hand_written_answer(auth, req).await {
                Some(enabled) => {
                    let flag: &[u8] = if enabled { b"true" } else { b"false" };
                    let mut out = Vec::with_capacity(before.len() + 5 + after.len());
                    out.extend_from_slice(before);
                    out.extend_from_slice(flag);
                    out.extend_from_slice(after);
                    xml_answer(http::StatusCode::OK, Bytes::from(out))
                }
                None => xml_answer(http::StatusCode::BAD_REQUEST, Bytes::new()),
            };
            Ok::<_, Infallible>(answer)
        }
    });
    serve_http1(listener, service).await;
}

/// The caller's UM flag when `req` is a well-formed, authenticated IsUMEnabled request.
async fn hand_written_answer(
    auth: &umws::auth::Authenticator,
    req: hyper::Request<Incoming>,
) -> Option<bool> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;

    if req.method() != http::Method::POST || req.uri().path() != PATH {
        return None;
    }
    let headers = req.headers();
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let mime = header(http::header::CONTENT_TYPE)?.split(';').next()?;
    if !mime.trim().eq_ignore_ascii_case("text/xml") {
        return None;
    }
    if header(http::HeaderName::from_static("soapaction"))?.trim_matches('"')
        != actions::IS_UM_ENABLED
    {
        return None;
    }
    let token = header(http::header::AUTHORIZATION)?.strip_prefix("Basic ")?;
    let pair = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let (user, password) = std::str::from_utf8(&pair).ok()?.split_once(':')?;
    let mailbox = auth.authenticate_mailbox(user, password).await.ok()??;

    let mut body = req.into_body();
    let mut bytes = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Some(data) = frame.ok()?.data_ref() {
            bytes.extend_from_slice(data);
        }
    }
    let mut reader = quick_xml::NsReader::from_str(std::str::from_utf8(&bytes).ok()?);
    let expected: [(&[u8], &[u8]); 3] = [
        (b"http://schemas.xmlsoap.org/soap/envelope/", b"Envelope"),
        (b"http://schemas.xmlsoap.org/soap/envelope/", b"Body"),
        (MESSAGES.as_bytes(), b"IsUMEnabled"),
    ];
    let mut depth = 0usize;
    let mut found = false;
    loop {
        let (ns, event) = reader.read_resolved_event().ok()?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let ResolveResult::Bound(ns) = ns else {
                    return None;
                };
                let (want_ns, want_local) = expected.get(depth)?;
                if ns.as_ref() != *want_ns || e.local_name().as_ref() != *want_local {
                    return None;
                }
                found |= depth == 2;
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth -= 1,
            Event::Eof => break,
            Event::DocType(_) => return None,
            _ => {}
        }
    }
    found.then_some(mailbox.um_enabled)
}

/// Raw tokio: read a request, write `response` (a complete HTTP response), repeat.
async fn serve_raw_fixed(listener: TcpListener, response: Bytes) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let response = response.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            while let Ok(Some(_)) = read_message(&mut stream, &mut buf).await {
                if stream.write_all(&response).await.is_err() {
                    break;
                }
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The real server and its variants

/// An authenticator that lets everyone in as `caller` (for the "trusted auth" row only).
struct Trusted(Caller);

impl umws_soap::server::Authenticator for Trusted {
    async fn authenticate(
        &self,
        _credentials: Option<Credentials>,
        _remote_addr: Option<SocketAddr>,
    ) -> Result<AuthDecision, Box<dyn std::error::Error + Send + Sync>> {
        let mut ext = http::Extensions::new();
        ext.insert(self.0.clone());
        Ok(AuthDecision::Allow(ext))
    }
}

type TrustedServer = SoapServer<UmServiceSoapServer<UmService>, Trusted>;

/// `build_server`'s server with [`Trusted`] authentication.
fn trusted_server(store: Store, data: &Path, caller: Caller) -> TrustedServer {
    let mailer = ResetPinMailer::new(Box::new(Maildir::in_data_dir(data)) as Box<dyn MailDelivery>);
    SoapServer::new(
        UmServiceSoapServer::new(UmService::new(store, mailer)),
        Trusted(caller),
        umws::fault::ExchangeFaults,
        server_config(),
    )
}

/// [`UmService`] with IsUMEnabled's mailbox read done inline on the async worker instead of
/// on the blocking pool (a few microseconds of SQLite; the "inline read" rows). Every other
/// operation goes to the generated dispatcher unchanged, whatever the schema holds.
struct InlineReads {
    inner: UmServiceSoapServer<UmService>,
    store: Store,
}

impl SoapService for InlineReads {
    fn operations(&self) -> &'static [umws_soap::OperationInfo] {
        self.inner.operations()
    }

    async fn call<'a>(
        &'a self,
        ctx: &'a umws_soap::CallContext,
        op: usize,
        body: &'a umws_soap::envelope::BodyElement,
    ) -> Result<Reply, CallError> {
        if OPERATIONS.get(op).map(|o| o.name) != Some(operations::IS_UM_ENABLED) {
            return self.inner.call(ctx, op, body).await;
        }
        let unavailable = || CallError::Fault(umws_soap::SoapFault::server("unavailable"));
        let id = ctx
            .extensions
            .get::<Caller>()
            .map(|c| c.mailbox)
            .ok_or_else(unavailable)?;
        let mailbox = self
            .store
            .mailbox_by_id(id)
            .map_err(|_| unavailable())?
            .ok_or_else(unavailable)?;
        Ok(Box::new(types::IsUmEnabledResponse {
            is_um_enabled_response: mailbox.um_enabled,
        }) as Reply)
    }
}

type InlineServer = SoapServer<InlineReads, MailboxAuth>;

/// `build_server`'s server (same authentication) with [`InlineReads`].
fn inline_server(store: Store, data: &Path) -> InlineServer {
    let mailer = ResetPinMailer::new(Box::new(Maildir::in_data_dir(data)) as Box<dyn MailDelivery>);
    SoapServer::new(
        InlineReads {
            inner: UmServiceSoapServer::new(UmService::new(store.clone(), mailer)),
            store: store.clone(),
        },
        MailboxAuth::new(store),
        umws::fault::ExchangeFaults,
        server_config(),
    )
}

/// The settings `build_server` uses with the default `ServeConfig`.
fn server_config() -> ServerConfig {
    ServerConfig {
        paths: umws::app::PATHS.iter().map(|p| (*p).to_owned()).collect(),
        aliases: aliases(),
        realm: umws::app::REALM.into(),
        wsdl: Some(umws::app::wsdl_documents()),
        ..ServerConfig::default()
    }
}

fn aliases() -> NamespaceAliases {
    NamespaceAliases::none().with(umws::app::HTTPS_ALIAS.0, umws::app::HTTPS_ALIAS.1)
}

/// A `tracing` subscriber that formats every event into a sink while [`LOG_ON`] is set, like
/// `umws serve` does into stderr at its default `info` level.
fn install_log_switch() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::Layer as _;
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(io::sink)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            LOG_ON.load(Ordering::Relaxed) && *meta.level() <= tracing::Level::INFO
        }));
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
}

struct World {
    dir: tempfile::TempDir,
    store: Store,
    umws: SocketAddr,
    trusted: SocketAddr,
    inline: SocketAddr,
    /// Ids of `user0..userN`, for ResetPIN (one mailbox per connection).
    reset_users: Vec<MailboxId>,
    demo: MailboxId,
    _stop: Vec<oneshot::Sender<()>>,
}

fn start_world(server_rt: &Runtime, reset_users: usize) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let store = Store::create(&data).expect("store");
    let add = |user: &str| {
        store
            .add_mailbox(NewMailbox {
                user: user.into(),
                password: DEMO_PASSWORD.into(),
                um_enabled: true,
                extension: Some("12345".into()),
                email: Some(format!("{user}@localhost")),
            })
            .expect("add mailbox")
    };
    let demo = add(DEMO_USER);
    let reset_ids = (0..reset_users).map(|i| add(&format!("user{i}"))).collect();

    let server: UmServer =
        umws::app::build_server(store.clone(), &data, &ServeConfig::default()).expect("server");
    let trusted = trusted_server(store.clone(), &data, demo_caller(&store, demo));
    let inline = inline_server(store.clone(), &data);
    let (c, stop_c) = oneshot::channel::<()>();
    let (a, stop_a) = oneshot::channel::<()>();
    let (b, stop_b) = oneshot::channel::<()>();
    let (umws, trusted_addr, inline_addr) = server_rt.block_on(async {
        let bind = || async {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let a = l.local_addr().expect("addr");
            (l, a)
        };
        let ((l1, a1), (l2, a2), (l3, a3)) = (bind().await, bind().await, bind().await);
        tokio::spawn(server.serve(l1, async {
            let _ = stop_a.await;
        }));
        tokio::spawn(trusted.serve(l2, async {
            let _ = stop_b.await;
        }));
        tokio::spawn(inline.serve(l3, async {
            let _ = stop_c.await;
        }));
        (a1, a2, a3)
    });
    World {
        dir,
        store,
        umws,
        trusted: trusted_addr,
        inline: inline_addr,
        reset_users: reset_ids,
        demo,
        _stop: vec![a, b, c],
    }
}

/// Starts the two fixed-bytes servers answering like `real` (a complete response of the real
/// server); returns (hyper, raw) addresses.
fn start_ceilings(server_rt: &Runtime, real: &[u8]) -> (SocketAddr, SocketAddr) {
    let head = head_end(real).expect("a complete response");
    let status = status_of(real);
    let body = Bytes::copy_from_slice(&real[head..]);
    let whole = Bytes::copy_from_slice(real);
    server_rt.block_on(async {
        let h = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let r = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addrs = (h.local_addr().expect("addr"), r.local_addr().expect("addr"));
        tokio::spawn(serve_hyper_fixed(h, status, body));
        tokio::spawn(serve_raw_fixed(r, whole));
        addrs
    })
}

/// Starts the hand-written server ([`serve_hand_written`]) over `store`, answering with the
/// bytes of `real` (a complete IsUMEnabled response of the real server) around the flag.
fn start_hand_written(server_rt: &Runtime, store: &Store, real: &[u8]) -> SocketAddr {
    let body = &real[head_end(real).expect("a complete response")..];
    let (open, flag) = (&b"<IsUMEnabledResponse>"[..], &b"true"[..]);
    let marker = [open, flag].concat();
    let at = body
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the flag in the response")
        + open.len();
    let template = (
        Bytes::copy_from_slice(&body[..at]),
        Bytes::copy_from_slice(&body[at + flag.len()..]),
    );
    let auth = umws::auth::Authenticator::new(store.clone());
    server_rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(serve_hand_written(l, auth, template));
        addr
    })
}

// ---------------------------------------------------------------------------------------------
// node-soap: a stock SOAP server from another ecosystem

/// A running `benches/node_soap/server.js`: killed (with its workers) when dropped.
struct NodeSoap {
    child: Child,
    /// Held open: the server exits by itself when it closes (if this process dies first).
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    /// `node --version` and the pinned `soap` version, for the table's heading.
    versions: String,
}

impl Drop for NodeSoap {
    fn drop(&mut self) {
        // Closing stdin lets the cluster primary stop its workers; the kill is for a server
        // that does not notice.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory Cargo builds this bench into (`target/` or `CARGO_TARGET_DIR`): the bench
/// runs as `TARGET/release/deps/load-HASH`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The output of `program --version`, when it runs.
fn version_of(program: &str) -> Option<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `node_modules` holding npm's `soap` as pinned in `benches/node_soap/package-lock.json`:
/// installed with `npm ci` into `target/bench-node/` on first use (and again when the lock
/// file changes), reused after. Returns it with `node --version`.
fn node_soap_modules() -> Result<(PathBuf, String), String> {
    let missing = "the node-soap target (`node`) needs Node.js 18 or later and npm; install \
                   them (Debian/Ubuntu: `apt-get install nodejs npm`) or leave `node` out of \
                   UMWS_LOAD_TARGETS";
    let node = version_of("node").ok_or_else(|| format!("`node` does not run: {missing}"))?;
    let major: u32 = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 18 {
        return Err(format!("node {node} is installed: {missing}"));
    }
    version_of("npm").ok_or_else(|| format!("`npm` does not run: {missing}"))?;

    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/node_soap");
    let dir = target_dir().join("bench-node");
    let modules = dir.join("node_modules");
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let manifest = read(&source.join("package.json"))?;
    let lock = read(&source.join("package-lock.json"))?;
    // Written after a successful `npm ci`: what it installed.
    let stamp = dir.join("umws-installed.json");
    let wanted = [manifest.as_slice(), b"\n", lock.as_slice()].concat();
    if modules.join("soap/package.json").is_file()
        && std::fs::read(&stamp).ok() == Some(wanted.clone())
    {
        return Ok((modules, node));
    }
    eprintln!(
        "node-soap: installing npm's soap from {} into {} (npm ci)",
        source.join("package-lock.json").display(),
        dir.display()
    );
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let _ = std::fs::remove_file(&stamp);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write(&dir.join("package.json"), &manifest)?;
    write(&dir.join("package-lock.json"), &lock)?;
    let status = Command::new("npm")
        .args(["ci", "--prefix"])
        .arg(&dir)
        .args([
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
        ])
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`npm ci --prefix {}` failed ({status}); npm needs to reach its registry once",
            dir.display()
        ));
    }
    write(&stamp, &wanted)?;
    Ok((modules, node))
}

/// Starts node-soap (`benches/node_soap/server.js`) over `schemas/um.wsdl` with `workers`
/// processes, accepting the load's user and password, its answers chunked (node-soap's
/// default) or with a Content-Length; waits until it serves.
fn start_node_soap(workers: usize, chunked: bool) -> Result<NodeSoap, String> {
    use std::io::BufRead as _;

    let (modules, node_version) = node_soap_modules()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("node")
        .arg(root.join("benches/node_soap/server.js"))
        .arg(root.join("schemas/um.wsdl"))
        .args([DEMO_USER, DEMO_PASSWORD])
        .arg(workers.to_string())
        .env("NODE_PATH", &modules)
        .env("NODE_ENV", "production")
        .env("NODE_SOAP_CHUNKED", if chunked { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    // The guard from here on, so that an error below does not leave node running.
    let mut server = NodeSoap {
        child,
        stdin,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        versions: String::new(),
    };
    let stdout = stdout.ok_or("node's stdout is not a pipe")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = io::BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        // Keep reading, so that a later write of the server never fails on a closed pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(Ok(line))) => line,
        Ok(_) => return Err("node-soap exited before it served (see its output above)".into()),
        Err(_) => return Err("node-soap did not start serving within 60 s".into()),
    };
    let port: u16 = line
        .strip_prefix("listening ")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("node-soap said {line:?} instead of `listening PORT`"))?;
    server.addr = SocketAddr::from(([127, 0, 0, 1], port));
    let soap_version = std::fs::read_to_string(modules.join("soap/package.json"))
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let v = l.trim().strip_prefix("\"version\": \"")?;
                Some(v.trim_end_matches([',', '"']).to_owned())
            })
        })
        .unwrap_or_else(|| "?".into());
    server.versions = format!(
        "npm soap {soap_version} on Node.js {node_version}, {workers} process{}, answers {}",
        if workers == 1 { "" } else { "es" },
        if chunked {
            "chunked (node-soap's default)"
        } else {
            "with a Content-Length"
        }
    );
    Ok(server)
}

/// The body of `response`, a complete HTTP message as [`read_message`] reads it (chunks
/// joined).
fn body_of(response: &[u8]) -> Option<Vec<u8>> {
    let head = head_end(response)?;
    if !is_chunked(&response[..head]) {
        return Some(response[head..].to_vec());
    }
    let mut body = Vec::new();
    let mut rest = &response[head..];
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(line + 2..line + 2 + size)?);
        rest = rest.get(line + 2 + size + 2..)?;
    }
}

/// Checks that `response` (a complete HTTP response) is a SOAP 1.1 answer whose body is an
/// `IsUMEnabledResponse` in the messages namespace that the generated type reads as `true`.
fn check_is_um_enabled_answer(response: &[u8]) -> Result<(), String> {
    let status = status_of(response);
    if status != 200 {
        return Err(format!("HTTP status {status}"));
    }
    let body = body_of(response).ok_or("not a complete HTTP response")?;
    let aliases = NamespaceAliases::none();
    let envelope = envelope::parse(&body, ParseOptions::new(&aliases))
        .map_err(|e| format!("not a SOAP envelope: {e}"))?;
    let element = envelope.body.ok_or("an empty soap:Body")?;
    if (element.namespace.as_str(), element.local_name.as_str())
        != (MESSAGES, "IsUMEnabledResponse")
    {
        return Err(format!(
            "the body holds {{{}}}{}",
            element.namespace, element.local_name
        ));
    }
    let answer: types::IsUmEnabledResponse = umws_soap::xml::from_fragment(&element.xml)
        .map_err(|e| format!("not an IsUMEnabledResponse: {e}"))?;
    if !answer.is_um_enabled_response {
        return Err("IsUMEnabledResponse is false".into());
    }
    Ok(())
}

/// Starts node-soap for the IsUMEnabled load and checks its answers: a valid
/// IsUMEnabledResponse to the load's request, 401 to a wrong password. `None` (with a
/// message) when Node.js is not installed and the target was not asked for by name.
fn node_soap_for_load(s: &Settings, client_rt: &Runtime) -> Option<NodeSoap> {
    if !s.targets("node") {
        return None;
    }
    let server = match start_node_soap(s.node_workers, s.node_chunked) {
        Ok(server) => server,
        Err(e) if !s.names_target("node") => {
            println!("\nnode-soap target skipped: {e}");
            return None;
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let op = Operation::IsUmEnabled;
    let answer = client_rt
        .block_on(exchange(
            server.addr,
            &op.request(server.addr, DEMO_USER, DEMO_PASSWORD),
        ))
        .expect("node-soap answers");
    if let Err(e) = check_is_um_enabled_answer(&answer) {
        panic!(
            "node-soap's answer is not a valid IsUMEnabledResponse ({e}):\n{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let refused = client_rt
        .block_on(exchange(
            server.addr,
            &op.request(server.addr, DEMO_USER, "not-the-password"),
        ))
        .expect("node-soap answers");
    assert_eq!(
        status_of(&refused),
        401,
        "node-soap checks the password: {}",
        String::from_utf8_lossy(&refused)
    );
    Some(server)
}

// ---------------------------------------------------------------------------------------------
// CPU accounting per thread group

/// Nanoseconds on CPU so far of each live thread whose name starts with `prefix`, by thread id.
fn cpu_ns(prefix: &str) -> BTreeMap<u64, u64> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return BTreeMap::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            Some((tid, stat.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// Nanoseconds on CPU so far of every thread of process `root` and of its descendants (node-soap
/// and its cluster workers), by thread id.
fn process_tree_cpu_ns(root: u32) -> BTreeMap<u64, u64> {
    let parent_of = |pid: &str| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let mut pids = vec![root];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        let procs: Vec<(u32, u32)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Some((name.parse().ok()?, parent_of(&name)?))
            })
            .collect();
        let mut i = 0;
        while i < pids.len() {
            let pid = pids[i];
            pids.extend(procs.iter().filter(|(_, p)| *p == pid).map(|(c, _)| *c));
            i += 1;
        }
    }
    pids.iter()
        .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/task")).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            Some((tid, stat.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// Where a target's server runs, for its CPU time: this process's server runtime, or another
/// process (and its children).
#[derive(Clone, Copy)]
enum ServerCpu {
    Runtime,
    Process(u32),
}

impl ServerCpu {
    fn snapshot(self) -> BTreeMap<u64, u64> {
        match self {
            Self::Runtime => cpu_ns("umws-srv"),
            Self::Process(pid) => process_tree_cpu_ns(pid),
        }
    }
}

/// The CPU time the threads spent between two [`cpu_ns`] snapshots (threads born in between
/// count from zero; the server runtime keeps idle threads alive so none dies in between).
fn cpu_delta(before: &BTreeMap<u64, u64>, after: &BTreeMap<u64, u64>) -> u64 {
    after
        .iter()
        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}

// ---------------------------------------------------------------------------------------------
// The load

#[derive(Default)]
struct ConnStats {
    latencies_us: Vec<u32>,
    non_ok: u64,
    error: Option<String>,
}

struct RunResult {
    requests: usize,
    secs: f64,
    latencies_us: Vec<u32>,
    non_ok: u64,
    errors: Vec<String>,
    server_cpu_ns: u64,
    client_cpu_ns: u64,
    server_threads: usize,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }

    fn server_us_per_request(&self) -> f64 {
        self.server_cpu_ns as f64 / 1000.0 / self.requests.max(1) as f64
    }

    fn client_us_per_request(&self) -> f64 {
        self.client_cpu_ns as f64 / 1000.0 / self.requests.max(1) as f64
    }
}

/// One keep-alive connection sending `request` until `end`, recording the latency of every
/// response that completes inside `[start, end)`.
async fn connection(
    addr: SocketAddr,
    request: Arc<[u8]>,
    start: Instant,
    end: Instant,
) -> ConnStats {
    let mut stats = ConnStats::default();
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            stats.error = Some(format!("connect: {e}"));
            return stats;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    while Instant::now() < end {
        let t0 = Instant::now();
        if let Err(e) = stream.write_all(&request).await {
            stats.error = Some(format!("write: {e}"));
            break;
        }
        let n = match read_message(&mut stream, &mut buf).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                stats.error = Some("server closed the connection".into());
                break;
            }
            Err(e) => {
                stats.error = Some(format!("read: {e}"));
                break;
            }
        };
        let t1 = Instant::now();
        if t1 >= start && t1 < end {
            stats
                .latencies_us
                .push(u32::try_from((t1 - t0).as_micros()).unwrap_or(u32::MAX));
            if status_of(&buf[..n]) != 200 {
                stats.non_ok += 1;
            }
        }
    }
    stats
}

/// Drives `target` with one connection per request in `requests` for `warmup + secs`;
/// `server` tells where the target's CPU time is counted.
fn run(
    client_rt: &Runtime,
    target: SocketAddr,
    server: ServerCpu,
    requests: &[Arc<[u8]>],
    warmup: f64,
    secs: f64,
) -> RunResult {
    client_rt.block_on(async {
        let start = Instant::now() + Duration::from_secs_f64(warmup);
        let end = start + Duration::from_secs_f64(secs);
        let tasks: Vec<_> = requests
            .iter()
            .map(|r| tokio::spawn(connection(target, Arc::clone(r), start, end)))
            .collect();
        tokio::time::sleep_until(start.into()).await;
        let (srv0, cli0) = (server.snapshot(), cpu_ns("umws-cli"));
        tokio::time::sleep_until(end.into()).await;
        let (srv1, cli1) = (server.snapshot(), cpu_ns("umws-cli"));
        let server_threads = srv1.len();
        let mut result = RunResult {
            requests: 0,
            secs,
            latencies_us: Vec::new(),
            non_ok: 0,
            errors: Vec::new(),
            server_cpu_ns: cpu_delta(&srv0, &srv1),
            client_cpu_ns: cpu_delta(&cli0, &cli1),
            server_threads,
        };
        for t in tasks {
            let stats = t.await.unwrap_or_default();
            result.latencies_us.extend(stats.latencies_us);
            result.non_ok += stats.non_ok;
            result.errors.extend(stats.error);
        }
        result.requests = result.latencies_us.len();
        result.latencies_us.sort_unstable();
        result
    })
}

fn print_header() {
    println!(
        "{:<11} {:<22} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>11} {:>11} {:>7} {:>6}",
        "operation",
        "target",
        "conns",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "srv µs/req",
        "cli µs/req",
        "srv thr",
        "non200"
    );
}

fn print_row(op: Operation, target: &str, conns: usize, r: &RunResult) {
    println!(
        "{:<11} {:<22} {:>5} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>11.1} {:>11.1} {:>7} {:>6}",
        op.name(),
        target,
        conns,
        r.rate(),
        r.percentile_ms(0.5),
        r.percentile_ms(0.9),
        r.percentile_ms(0.99),
        r.percentile_ms(1.0),
        r.server_us_per_request(),
        r.client_us_per_request(),
        r.server_threads,
        r.non_ok,
    );
    if !r.errors.is_empty() {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &r.errors {
            *counts.entry(e.as_str()).or_default() += 1;
        }
        println!("    connection errors: {counts:?}");
    }
}

/// Prints the ratios of one round and returns them (throughput, server CPU per request).
fn ratio_line(what: &str, num: &RunResult, den: &RunResult) -> (f64, f64) {
    let ratios = (
        num.rate() / den.rate(),
        den.server_us_per_request() / num.server_us_per_request(),
    );
    println!(
        "    {what}: throughput {:.2}x, server CPU per request {:.2}x",
        ratios.0, ratios.1
    );
    ratios
}

/// Prints, for each ratio, its median over the rounds and all rounds sorted.
fn ratio_summary(what: &str, rounds: &[(f64, f64)]) {
    fn spread(mut v: Vec<f64>) -> String {
        v.sort_by(f64::total_cmp);
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        let all: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
        format!("median {median:.2}x (sorted: {})", all.join(" "))
    }
    if rounds.is_empty() {
        return;
    }
    println!(
        "{what}, {} rounds: throughput {}; server CPU per request {}",
        rounds.len(),
        spread(rounds.iter().map(|r| r.0).collect()),
        spread(rounds.iter().map(|r| r.1).collect()),
    );
}

fn is_um_enabled_load(s: &Settings, server_rt: &Runtime, client_rt: &Runtime, world: &World) {
    let op = Operation::IsUmEnabled;
    let real = client_rt
        .block_on(exchange(
            world.umws,
            &op.request(world.umws, DEMO_USER, DEMO_PASSWORD),
        ))
        .expect("IsUMEnabled answers");
    if let Err(e) = check_is_um_enabled_answer(&real) {
        panic!(
            "umws's answer is not a valid IsUMEnabledResponse ({e}):\n{}",
            String::from_utf8_lossy(&real)
        );
    }
    assert!(String::from_utf8_lossy(&real).contains("<IsUMEnabledResponse>true"));
    let (hyper_addr, raw_addr) = start_ceilings(server_rt, &real);
    let hand_addr = start_hand_written(server_rt, &world.store, &real);
    let hand = client_rt
        .block_on(exchange(
            hand_addr,
            &op.request(hand_addr, DEMO_USER, DEMO_PASSWORD),
        ))
        .expect("the hand-written server answers");
    assert_eq!(
        hand[head_end(&hand).unwrap_or(0)..],
        real[head_end(&real).unwrap_or(0)..],
        "the hand-written server answers the real server's bytes"
    );
    // Killed when this function returns.
    let node = node_soap_for_load(s, client_rt);
    println!(
        "\n## IsUMEnabled, Basic auth (one mailbox), response {} bytes ({} of body)",
        real.len(),
        real.len() - head_end(&real).unwrap_or(0)
    );
    if let Some(node) = &node {
        println!("node-soap: {}", node.versions);
    }
    let pairs = [
        ("umws", "hyper", "umws / hyper fixed"),
        ("umws", "raw", "umws / raw fixed"),
        ("log", "hyper", "umws with access log / hyper fixed"),
        ("trusted", "hyper", "umws with trusted auth / hyper fixed"),
        ("inline", "hyper", "umws with inline read / hyper fixed"),
        ("hand", "hyper", "hand-written / hyper fixed"),
        ("umws", "hand", "umws / hand-written"),
        ("umws", "node", "umws / node-soap"),
    ];
    for &conns in &s.connections {
        let mut history: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        for round in 1..=s.rounds {
            println!(
                "\nround {round}/{}, {conns} connections, {}s after {}s warm-up",
                s.rounds, s.secs, s.warmup
            );
            print_header();
            let mut results = BTreeMap::new();
            let in_process = ServerCpu::Runtime;
            let mut targets = vec![
                ("umws", "umws", world.umws, in_process, false),
                ("log", "umws, access log on", world.umws, in_process, true),
                (
                    "trusted",
                    "umws, trusted auth",
                    world.trusted,
                    in_process,
                    false,
                ),
                (
                    "inline",
                    "umws, inline read",
                    world.inline,
                    in_process,
                    false,
                ),
                ("hand", "hand-written", hand_addr, in_process, false),
                ("hyper", "hyper fixed", hyper_addr, in_process, false),
                ("raw", "raw fixed", raw_addr, in_process, false),
            ];
            if let Some(node) = &node {
                let pid = ServerCpu::Process(node.child.id());
                targets.push(("node", "node-soap", node.addr, pid, false));
            }
            // Every other round in reverse order, so that a drift of the machine's load
            // does not always favour the same target.
            if round % 2 == 0 {
                targets.reverse();
            }
            for (key, name, addr, server, log) in targets {
                if !s.targets(key) {
                    continue;
                }
                let request: Arc<[u8]> = op.request(addr, DEMO_USER, DEMO_PASSWORD).into();
                // Fill the server's credentials cache first: a cold cache makes every
                // connection pay an argon2 verification at once.
                let _ = client_rt.block_on(exchange(addr, &request));
                let requests = vec![request; conns];
                LOG_ON.store(log, Ordering::Relaxed);
                let r = run(client_rt, addr, server, &requests, s.warmup, s.secs);
                LOG_ON.store(false, Ordering::Relaxed);
                print_row(op, name, conns, &r);
                results.insert(key, r);
            }
            for (num, den, what) in pairs {
                if let (Some(n), Some(d)) = (results.get(num), results.get(den)) {
                    history
                        .entry(what)
                        .or_default()
                        .push(ratio_line(what, n, d));
                }
            }
        }
        if s.rounds > 1 {
            println!();
            for (_, _, what) in pairs {
                if let Some(rounds) = history.get(what) {
                    ratio_summary(&format!("{what} at {conns} connections"), rounds);
                }
            }
        }
    }
}

fn reset_pin_load(s: &Settings, server_rt: &Runtime, client_rt: &Runtime, world: &World) {
    let op = Operation::ResetPin;
    // Fill the credentials cache of every user (IsUMEnabled is cheap), so that the runs
    // measure resets, not first logons.
    for i in 0..world.reset_users.len() {
        let user = format!("user{i}");
        let request = Operation::IsUmEnabled.request(world.umws, &user, DEMO_PASSWORD);
        let _ = client_rt.block_on(exchange(world.umws, &request));
    }
    let first = client_rt
        .block_on(exchange(
            world.umws,
            &op.request(world.umws, "user0", DEMO_PASSWORD),
        ))
        .expect("ResetPIN answers");
    assert_eq!(
        status_of(&first),
        200,
        "{}",
        String::from_utf8_lossy(&first)
    );
    let (hyper_addr, raw_addr) = start_ceilings(server_rt, &first);
    println!(
        "\n## ResetPIN, Basic auth, one mailbox per connection (production argon2 cost), response {} bytes",
        first.len()
    );
    for &conns in &s.reset_connections {
        let conns = conns.min(world.reset_users.len());
        for round in 1..=s.rounds {
            println!(
                "\nround {round}/{}, {conns} connections, {}s after {}s warm-up",
                s.rounds, s.reset_secs, s.reset_warmup
            );
            print_header();
            let mut results = BTreeMap::new();
            let targets = [
                ("umws", "umws", world.umws),
                ("hyper", "hyper fixed", hyper_addr),
                ("raw", "raw fixed", raw_addr),
            ];
            for (key, name, addr) in targets {
                if !s.targets(key) {
                    continue;
                }
                let requests: Vec<Arc<[u8]>> = (0..conns)
                    .map(|i| op.request(addr, &format!("user{i}"), DEMO_PASSWORD).into())
                    .collect();
                let r = run(
                    client_rt,
                    addr,
                    ServerCpu::Runtime,
                    &requests,
                    s.reset_warmup,
                    s.reset_secs,
                );
                print_row(op, name, conns, &r);
                results.insert(key, r);
            }
            if let (Some(n), Some(d)) = (results.get("umws"), results.get("hyper")) {
                let _ = ratio_line("umws / hyper fixed", n, d);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Phases: what each step costs alone, sequentially on one thread

/// Runs `f` for at least `min_iters` times and about `budget`, and prints the mean and median
/// time per call.
fn phase(name: &str, min_iters: usize, budget: Duration, mut f: impl FnMut()) {
    f();
    let mut samples = Vec::new();
    let began = Instant::now();
    while samples.len() < min_iters || (began.elapsed() < budget && samples.len() < 1_000_000) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    let mean = samples.iter().sum::<Duration>() / u32::try_from(samples.len()).unwrap_or(u32::MAX);
    let median = samples[samples.len() / 2];
    println!(
        "{name:<58} {:>12.1} {:>12.1} {:>8}",
        mean.as_secs_f64() * 1e6,
        median.as_secs_f64() * 1e6,
        samples.len()
    );
}

/// An in-process request to [`SoapServer::handle`].
fn in_process_request(op: Operation, user: &str) -> hyper::Request<Fixed> {
    let element = match op {
        Operation::IsUmEnabled => "IsUMEnabled",
        Operation::ResetPin => "ResetPIN",
    };
    let action = match op {
        Operation::IsUmEnabled => actions::IS_UM_ENABLED,
        Operation::ResetPin => actions::RESET_PIN,
    };
    let body = envelope_for(element);
    hyper::Request::builder()
        .method("POST")
        .uri(PATH)
        .header("host", "127.0.0.1")
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", format!("\"{action}\""))
        .header("authorization", basic(user, DEMO_PASSWORD))
        .header("content-length", body.len())
        .body(Fixed(Some(Bytes::from(body))))
        .expect("a valid request")
}

/// The caller the trusted-auth server lets in: the demo mailbox.
fn demo_caller(store: &Store, demo: MailboxId) -> Caller {
    Caller {
        mailbox: demo,
        user: DEMO_USER.into(),
        record: Arc::new(
            store
                .mailbox_by_id(demo)
                .expect("read")
                .expect("demo mailbox"),
        ),
    }
}

/// A phase that answers one IsUMEnabled request with `server`, in process.
fn handle_phase<S, A>(rt: &Runtime, name: &str, budget: Duration, server: &SoapServer<S, A>)
where
    S: umws_soap::server::SoapService,
    A: umws_soap::server::Authenticator,
{
    phase(name, 1000, budget, || {
        let r = block(
            rt,
            server.handle(in_process_request(Operation::IsUmEnabled, DEMO_USER), None),
        );
        assert_eq!(r.status(), 200);
    });
}

fn block<F: Future>(rt: &Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

fn phases(server_rt: &Runtime, world: &World) {
    let fast = Duration::from_millis(700);
    let slow = Duration::from_secs(3);
    let store = &world.store;
    let data = world.dir.path().join("data");
    println!("\n## Phases, one at a time on one thread (µs)");
    println!("{:<58} {:>12} {:>12} {:>8}", "step", "mean", "median", "n");

    println!("-- IsUMEnabled path");
    let request = envelope_for("IsUMEnabled");
    let aliases = aliases();
    phase("envelope::parse (IsUMEnabled request)", 1000, fast, || {
        envelope::parse(request.as_bytes(), ParseOptions::new(&aliases)).expect("parses");
    });
    let auth = umws::auth::Authenticator::new(store.clone());
    auth.authenticate(DEMO_USER, DEMO_PASSWORD)
        .expect("auth")
        .expect("known");
    phase(
        "Authenticator::cached (hit: SHA-256, lock, change version)",
        1000,
        fast,
        || {
            auth.cached(DEMO_USER, DEMO_PASSWORD)
                .expect("auth")
                .expect("hit");
        },
    );
    phase(
        "Store::mailbox_by_id (the read of a hit after a change)",
        1000,
        fast,
        || {
            store
                .mailbox_by_id(world.demo)
                .expect("read")
                .expect("found");
        },
    );
    phase(
        "tokio spawn_blocking round trip (empty closure)",
        1000,
        fast,
        || {
            block(server_rt, async {
                tokio::task::spawn_blocking(|| ()).await.expect("joined");
            });
        },
    );
    let server =
        umws::app::build_server(store.clone(), &data, &ServeConfig::default()).expect("server");
    handle_phase(
        server_rt,
        "SoapServer::handle IsUMEnabled, in process (no TCP/HTTP)",
        fast,
        &server,
    );
    let trusted = trusted_server(store.clone(), &data, demo_caller(store, world.demo));
    handle_phase(
        server_rt,
        "  same, trusted auth (no SHA-256, no SQLite read in auth)",
        fast,
        &trusted,
    );
    let inline = inline_server(store.clone(), &data);
    handle_phase(
        server_rt,
        "  same, inline mailbox read (no spawn_blocking)",
        fast,
        &inline,
    );
    LOG_ON.store(true, Ordering::Relaxed);
    handle_phase(
        server_rt,
        "  same, full auth, access log formatted (into a sink)",
        fast,
        &server,
    );
    LOG_ON.store(false, Ordering::Relaxed);

    println!("-- ResetPIN steps (production argon2id: m=19456 KiB, t=2, p=1)");
    let params = argon2::Params::new(19_456, 2, 1, None).expect("params");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = argon2::password_hash::SaltString::generate(&mut rand::rngs::OsRng);
    let phc = {
        use argon2::PasswordHasher as _;
        argon
            .hash_password(b"123456", &salt)
            .expect("hash")
            .to_string()
    };
    phase("argon2id hash (one PIN or password)", 5, slow, || {
        use argon2::PasswordHasher as _;
        argon.hash_password(b"123456", &salt).expect("hash");
    });
    phase(
        "argon2id verify (one candidate against one old PIN)",
        5,
        slow,
        || {
            use argon2::PasswordVerifier as _;
            let parsed = argon2::PasswordHash::new(&phc).expect("phc");
            let _ = argon2::Argon2::default().verify_password(b"654321", &parsed);
        },
    );
    phase(
        "Store::verify_password (a cache miss in auth)",
        5,
        slow,
        || {
            store
                .verify_password(DEMO_USER, DEMO_PASSWORD)
                .expect("verify")
                .expect("ok");
        },
    );
    let mut flag = false;
    phase(
        "Store::set_oof_status (one write transaction, fsync'd)",
        50,
        fast,
        || {
            flag = !flag;
            store.set_oof_status(world.demo, flag).expect("write");
        },
    );
    // Fill the PIN history to its steady state (PINHistoryCount = 5) first.
    let id = world.demo;
    for _ in 0..6 {
        store.reset_pin(id, &mut rand::rngs::OsRng).expect("reset");
    }
    phase(
        "Store::reset_pin, no mail (history full: 6 verifies + 1 hash)",
        3,
        slow,
        || {
            store.reset_pin(id, &mut rand::rngs::OsRng).expect("reset");
        },
    );
    let outcome = ResetPinOutcome {
        mailbox_id: id,
        pin: "740291".into(),
        user: DEMO_USER.into(),
        email: Some("demo@localhost".into()),
        extension: Some("12345".into()),
        reset_pin_text: String::new(),
        telephone_access_numbers: None,
        pin_set_at: 0,
    };
    let from = umws::mail::default_from();
    phase(
        "reset_pin_message + formatted (build the mail)",
        200,
        fast,
        || {
            let m = umws::mail::reset_pin_message(&outcome, &from).expect("mail");
            std::hint::black_box(m.formatted());
        },
    );
    let message = umws::mail::reset_pin_message(&outcome, &from)
        .expect("mail")
        .formatted();
    let maildir = Maildir::new(world.dir.path().join("phase-mail"));
    phase(
        "Maildir::deliver_bytes (write, fsync, rename, fsync dir)",
        50,
        fast,
        || {
            maildir
                .deliver_bytes(DEMO_USER, &message)
                .expect("delivered");
        },
    );
    phase(
        "SoapServer::handle ResetPIN, in process (all of the above)",
        3,
        slow,
        || {
            let r = block(
                server_rt,
                server.handle(in_process_request(Operation::ResetPin, DEMO_USER), None),
            );
            assert_eq!(r.status(), 200);
        },
    );
}

// ---------------------------------------------------------------------------------------------

fn runtime(name: &str, threads: usize, max_blocking: Option<usize>) -> Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(threads)
        .thread_name(name)
        // Idle blocking threads stay, so that no thread's CPU time leaves the sums mid-run.
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all();
    if let Some(n) = max_blocking {
        builder.max_blocking_threads(n);
    }
    builder.build().expect("runtime")
}

fn main() {
    let s = Settings::from_env();
    // `cargo bench` passes `--bench`; a name filter is not supported (use UMWS_LOAD_ONLY).
    // Only the access-log rows need a subscriber: without one, the rows without the log pay
    // for a disabled `tracing::enabled!` as `UMWS_LOG=warn umws serve` does, not for a
    // dynamic filter asked on every request.
    if s.targets("log") {
        install_log_switch();
    }
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    println!("# umws load generator");
    println!(
        "machine: {cpus} CPUs ({model}); server runtime {} worker threads (blocking pool max {}), \
         client runtime {}",
        s.server_threads,
        s.max_blocking
            .map_or("512, tokio's default".to_owned(), |n| n.to_string()),
        s.client_threads
    );
    let server_rt = runtime("umws-srv", s.server_threads, s.max_blocking);
    let client_rt = runtime("umws-cli", s.client_threads, None);
    let reset_users = s.reset_connections.iter().copied().max().unwrap_or(0);
    let world = start_world(&server_rt, reset_users.max(1));

    if s.runs("is-um-enabled") {
        is_um_enabled_load(&s, &server_rt, &client_rt, &world);
    }
    if s.runs("reset-pin") {
        reset_pin_load(&s, &server_rt, &client_rt, &world);
    }
    if s.runs("phases") {
        phases(&server_rt, &world);
    }
}
