//! The envelope reader never panics, and reads what the writer writes.

use proptest::prelude::*;
use umws_soap::envelope::{parse, read_fault, EnvelopeWriter, ParseOptions, SoapVersion};
use umws_soap::fault::DetailEntry;
use umws_soap::namespace::NamespaceAliases;
use umws_soap::{FaultCode, SoapFault};

const SEED: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Header><h:Id xmlns:h="urn:h" soap:mustUnderstand="0">7</h:Id></soap:Header>
  <soap:Body>
    <ResetPIN xmlns="https://schemas.microsoft.com/exchange/services/2006/messages"><a x="1">t&amp;</a></ResetPIN>
  </soap:Body>
</soap:Envelope>"#;

fn aliases() -> NamespaceAliases {
    NamespaceAliases::none().with(
        "https://schemas.microsoft.com/",
        "http://schemas.microsoft.com/",
    )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let a = aliases();
        let _ = parse(&bytes, ParseOptions::new(&a));
    }

    #[test]
    fn mutated_envelopes_never_panic(pos in 0usize..SEED.len(), len in 0usize..16, byte in any::<u8>()) {
        let a = aliases();
        let mut bytes = SEED.as_bytes().to_vec();
        let end = (pos + len).min(bytes.len());
        bytes.splice(pos..end, std::iter::once(byte));
        let _ = parse(&bytes, ParseOptions::new(&a));
        let _ = parse(&SEED.as_bytes()[..pos], ParseOptions::new(&a));
    }

    #[test]
    fn faults_round_trip(local in "[A-Za-z][A-Za-z0-9]{0,30}", text in "[ -~éü€]{0,60}") {
        let fault = SoapFault::new(FaultCode::qualified("urn:errors", local.clone()), text.clone())
            .with_lang("en-US")
            .with_detail(DetailEntry::new("urn:m", "ExceptionType", local));
        let mut w = EnvelopeWriter::new(SoapVersion::Soap11, None);
        w.write_fault(&fault);
        let bytes = w.finish();
        let a = NamespaceAliases::none();
        let env = parse(&bytes, ParseOptions::new(&a)).unwrap();
        let back = read_fault(&env.body.unwrap(), SoapVersion::Soap11).unwrap().unwrap();
        prop_assert_eq!(back, fault);
    }
}

#[test]
fn seed_with_header_reads() {
    let a = aliases();
    let env = parse(SEED.as_bytes(), ParseOptions::new(&a)).unwrap();
    assert_eq!(env.headers.len(), 1);
    assert!(!env.headers[0].must_understand);
    assert_eq!(
        env.headers[0].xml,
        r#"<h:Id xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:h="urn:h" soap:mustUnderstand="0">7</h:Id>"#
    );
    let body = env.body.unwrap();
    assert_eq!(body.local_name, "ResetPIN");
    assert!(
        body.xml.ends_with(r#"<a x="1">t&amp;</a></ResetPIN>"#),
        "{}",
        body.xml
    );
}
