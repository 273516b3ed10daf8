//! Envelope and body (de)serialisation speed: the CPU work of one request apart from HTTP,
//! authentication and the store.
//!
//! `cargo bench --bench envelope` (see BENCHMARKS.md).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use umws::types::{GetUmPropertiesResponse, SetOofStatus, UmPropertiesType};
use umws_soap::envelope::{self, EnvelopeWriter, ParseOptions, SoapVersion};
use umws_soap::namespace::NamespaceAliases;
use umws_soap::xml;

/// The seed's exact ResetPIN request (the `https://` namespace spelling, so the alias path).
const SEED_REQUEST: &str = include_str!("../tests/fixtures/seed_reset_pin_request.xml");

/// The aliases the server accepts (`umws::app::HTTPS_ALIAS`).
fn aliases() -> NamespaceAliases {
    NamespaceAliases::none().with(umws::app::HTTPS_ALIAS.0, umws::app::HTTPS_ALIAS.1)
}

/// A GetUMProperties answer with every optional field set, as a server would send it.
fn properties() -> GetUmPropertiesResponse {
    GetUmPropertiesResponse {
        get_um_properties_response: UmPropertiesType {
            oof_status: true,
            missed_call_notification_enabled: true,
            play_on_phone_dial_string: Some("+1 425 555 0123".into()),
            telephone_access_numbers: Some("+1 425 555 0100, 4100".into()),
            telephone_access_folder_email: Some(
                "AQMkADAwATM0MDAAMS1iNTcwLWI2NTEtMDACLTAwCgAuAAADm9+6fQ1fuU2u7n0+rXvh7QEAAAA="
                    .into(),
            ),
        },
    }
}

/// The full response envelope for `value`.
fn response_envelope(value: &GetUmPropertiesResponse) -> Vec<u8> {
    let mut out = EnvelopeWriter::new(SoapVersion::Soap11, None);
    xml::write_body(value, &mut out).expect("the response serialises");
    out.finish()
}

fn parse(c: &mut Criterion) {
    let aliases = aliases();
    let mut group = c.benchmark_group("envelope::parse");

    let seed = SEED_REQUEST.as_bytes();
    group.throughput(Throughput::Bytes(seed.len() as u64));
    group.bench_function("seed ResetPIN request", |b| {
        b.iter(|| envelope::parse(black_box(seed), ParseOptions::new(&aliases)).unwrap())
    });

    let response = response_envelope(&properties());
    group.throughput(Throughput::Bytes(response.len() as u64));
    group.bench_function("GetUMProperties response", |b| {
        b.iter(|| envelope::parse(black_box(&response), ParseOptions::new(&aliases)).unwrap())
    });
    group.finish();
}

fn body(c: &mut Criterion) {
    let mut group = c.benchmark_group("xml");

    let oof = xml::to_fragment(&SetOofStatus { status: true }).unwrap();
    let oof = String::from_utf8(oof).unwrap();
    group.bench_function("from_fragment SetOofStatus", |b| {
        b.iter(|| xml::from_fragment::<SetOofStatus>(black_box(&oof)).unwrap())
    });
    group.bench_function("to_fragment SetOofStatus", |b| {
        b.iter(|| xml::to_fragment(black_box(&SetOofStatus { status: true })).unwrap())
    });

    let props = properties();
    group.bench_function("to_fragment GetUMPropertiesResponse", |b| {
        b.iter(|| xml::to_fragment(black_box(&props)).unwrap())
    });
    group.bench_function("EnvelopeWriter+write_body GetUMPropertiesResponse", |b| {
        b.iter(|| response_envelope(black_box(&props)))
    });
    let aliases = aliases();
    group.bench_function(
        "EnvelopeWriter+write_body GetUMPropertiesResponse (https alias)",
        |b| {
            b.iter(|| {
                let mut out = EnvelopeWriter::new(SoapVersion::Soap11, Some((&aliases, 0)));
                xml::write_body(black_box(&props), &mut out).unwrap();
                out.finish()
            })
        },
    );
    group.finish();
}

criterion_group!(benches, parse, body);
criterion_main!(benches);
