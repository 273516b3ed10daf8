//! One IsUMEnabled request through the real server object, without TCP and HTTP/1 framing:
//! what the server's own code costs per request, step by step.
//!
//! `cargo bench --bench handle` (see BENCHMARKS.md).

use std::hint::black_box;

use base64::Engine as _;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::Full;
use umws::app::UmServer;
use umws::auth::Authenticator;
use umws::config::ServeConfig;
use umws::namespaces::MESSAGES;
use umws::store::{NewMailbox, Store};
use umws::types::IsUmEnabledResponse;
use umws::um_service_soap::actions;
use umws_soap::envelope::{self, EnvelopeWriter, ParseOptions, SoapVersion};
use umws_soap::namespace::NamespaceAliases;
use umws_soap::xml;

/// The allocator of the `umws` binary, so that the servers here run as `umws serve` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USER: &str = "demo";
const PASSWORD: &str = "demo-password";

fn body() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\n  \
         <soap:Body>\n    <IsUMEnabled xmlns=\"{MESSAGES}\" />\n  </soap:Body>\n</soap:Envelope>\n"
    )
}

fn request(body: &Bytes) -> hyper::Request<Full<Bytes>> {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    hyper::Request::builder()
        .method("POST")
        .uri("/EWS/UM2007Legacy.asmx")
        .header("host", "127.0.0.1")
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", format!("\"{}\"", actions::IS_UM_ENABLED))
        .header("authorization", format!("Basic {token}"))
        .header("content-length", body.len())
        .body(Full::new(body.clone()))
        .expect("a valid request")
}

fn handle(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let store = Store::create(&data).expect("store");
    store
        .add_mailbox(NewMailbox {
            user: USER.into(),
            password: PASSWORD.into(),
            um_enabled: true,
            extension: Some("12345".into()),
            email: None,
        })
        .expect("add mailbox");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server: UmServer = rt.block_on(async {
        umws::app::build_server(store.clone(), &data, &ServeConfig::default()).expect("server")
    });
    let body = Bytes::from(body());
    // Fill the credentials cache (one argon2 verification).
    let first = rt.block_on(server.handle(request(&body), None));
    assert_eq!(first.status(), 200);

    println!(
        "size of the SoapServer::handle future: {} bytes",
        std::mem::size_of_val(&server.handle(request(&body), None))
    );
    let mut group = c.benchmark_group("handle");
    group.bench_function("IsUMEnabled, Basic auth (cache hit)", |b| {
        b.iter(|| {
            let r = rt.block_on(server.handle(request(black_box(&body)), None));
            assert_eq!(r.status(), 200);
        })
    });
    group.bench_function("building the request alone", |b| {
        b.iter(|| request(black_box(&body)))
    });
    group.finish();

    let mut group = c.benchmark_group("steps");
    let auth = Authenticator::new(store.clone());
    auth.authenticate(USER, PASSWORD)
        .expect("auth")
        .expect("known");
    group.bench_function("Authenticator::cached_mailbox (hit)", |b| {
        b.iter(|| {
            auth.cached_mailbox(black_box(USER), black_box(PASSWORD))
                .expect("auth")
                .expect("hit")
        })
    });
    group.bench_function("Store::data_version", |b| {
        b.iter(|| store.data_version().expect("version"))
    });
    group.bench_function("Store::mailbox (the row a hit reads)", |b| {
        b.iter(|| {
            store
                .mailbox(black_box(USER))
                .expect("read")
                .expect("found")
        })
    });
    let aliases = NamespaceAliases::none().with(umws::app::HTTPS_ALIAS.0, umws::app::HTTPS_ALIAS.1);
    group.bench_function("envelope::parse IsUMEnabled", |b| {
        b.iter(|| envelope::parse(black_box(&body), ParseOptions::new(&aliases)).expect("parses"))
    });
    group.bench_function("quick_xml NsReader, all events (floor)", |b| {
        b.iter(|| {
            let text = std::str::from_utf8(black_box(&body)).expect("utf-8");
            let mut reader = quick_xml::NsReader::from_str(text);
            let mut n = 0usize;
            loop {
                match reader.read_resolved_event().expect("well-formed") {
                    (_, quick_xml::events::Event::Eof) => break n,
                    _ => n += 1,
                }
            }
        })
    });
    let answer = IsUmEnabledResponse {
        is_um_enabled_response: true,
    };
    group.bench_function("EnvelopeWriter+write_body IsUMEnabledResponse", |b| {
        b.iter(|| {
            let mut out = EnvelopeWriter::new(SoapVersion::Soap11, None);
            xml::write_body(black_box(&answer), &mut out).expect("writes");
            out.finish()
        })
    });
    group.finish();
}

criterion_group!(benches, handle);
criterion_main!(benches);
