//! Tests of the envelope reader, writer and fault reader.

use super::fault::*;
use super::reader::*;
use super::writer::*;
use super::*;
use crate::fault::{DetailEntry, FaultCode, SoapFault};
use crate::namespace::NamespaceAliases;
use quick_xml::events::{BytesStart, Event};
use std::borrow::Cow;

const SEED: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body>
<ResetPIN xmlns="https://schemas.microsoft.com/exchange/services/2006/messages" />
  </soap:Body>
</soap:Envelope>"#;

fn aliases() -> NamespaceAliases {
    NamespaceAliases::none().with(
        "https://schemas.microsoft.com/",
        "http://schemas.microsoft.com/",
    )
}

#[test]
fn seed_request_reads_with_canonical_namespace() {
    let a = aliases();
    let env = parse(SEED.as_bytes(), ParseOptions::new(&a)).unwrap();
    let body = env.body.unwrap();
    assert_eq!(body.local_name, "ResetPIN");
    assert_eq!(
        body.namespace,
        "http://schemas.microsoft.com/exchange/services/2006/messages"
    );
    assert!(body
        .xml
        .contains("xmlns=\"http://schemas.microsoft.com/exchange/services/2006/messages\""));
    assert_eq!(env.alias, Some(0));
}

#[test]
fn strict_refuses_alias() {
    let a = aliases();
    let mut o = ParseOptions::new(&a);
    o.accept_aliases = false;
    assert!(matches!(
        parse(SEED.as_bytes(), o),
        Err(EnvelopeError::AliasRefused(_))
    ));
}

#[test]
fn scope_is_copied_onto_fragment() {
    let a = NamespaceAliases::none();
    let xml = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="urn:m"><s:Header><m:H s:mustUnderstand="1">x</m:H></s:Header><s:Body><m:Op><m:a>1 &amp; 2</m:a></m:Op></s:Body></s:Envelope>"#;
    let env = parse(xml.as_bytes(), ParseOptions::new(&a)).unwrap();
    assert_eq!(env.headers.len(), 1);
    assert!(env.headers[0].must_understand);
    let body = env.body.unwrap();
    assert_eq!(body.namespace, "urn:m");
    assert_eq!(
        body.xml,
        r#"<m:Op xmlns:m="urn:m" xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><m:a>1 &amp; 2</m:a></m:Op>"#
    );
}

#[test]
fn declarations_are_borrowed_from_the_message_unless_rewritten() {
    let a = aliases();
    let xml = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns="https://schemas.microsoft.com/x" xmlns:p="urn:p">"#;
    let mut r = Reader::new(xml, ParseOptions::new(&a));
    assert!(matches!(r.next_event().unwrap(), Event::Start(_)));
    let kinds: Vec<(&[u8], bool, bool)> = r
        .bindings
        .iter()
        .map(|b| {
            (
                b.prefix.as_ref(),
                matches!(b.prefix, Cow::Borrowed(_)),
                matches!(b.name, Cow::Borrowed(_)),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (&b"s"[..], true, true),
            (&b""[..], true, false),
            (&b"p"[..], true, true)
        ]
    );
    assert_eq!(
        r.bindings[1].name.as_ref(),
        b"http://schemas.microsoft.com/x"
    );
    // Bytes from elsewhere are copied.
    assert!(matches!(r.keep(b"urn:p"), Cow::Owned(_)));
    assert!(matches!(
        r.keep(&xml.as_bytes()[3..8]),
        Cow::Borrowed(b"Envel")
    ));
}

#[test]
fn bare_body_elements_are_marked() {
    let a = NamespaceAliases::none();
    let body = |inner: &str| {
        let xml = format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:p="urn:p"><s:Body>{inner}</s:Body></s:Envelope>"#
        );
        parse(xml.as_bytes(), ParseOptions::new(&a))
            .unwrap()
            .body
            .unwrap()
    };
    for bare in [
        "<x/>",
        "<x></x>",
        r#"<x xmlns="urn:m"/>"#,
        r#"<q:x xmlns:q="urn:q" xmlns="urn:m"></q:x>"#,
    ] {
        assert!(body(bare).bare, "{bare}");
    }
    for not_bare in [
        r#"<x a="1"/>"#,
        r#"<x p:a="1"></x>"#,
        "<x> </x>",
        "<x>text</x>",
        "<x><!-- c --></x>",
        "<x><?pi?></x>",
        "<x><![CDATA[]]></x>",
        "<x><y/></x>",
    ] {
        assert!(!body(not_bare).bare, "{not_bare}");
    }
}

#[test]
fn inner_content_is_copied_verbatim_except_alias_declarations() {
    let a = aliases();
    let xml = "\u{feff}<?xml version=\"1.0\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><Op xmlns=\"urn:m\"><a  x='1'>t &lt; <![CDATA[<raw>]]><!-- c --></a><b xmlns=\"https://schemas.microsoft.com/t\"><c/></b><d xmlns:q=\"urn:q\" q:y=\"2\"/></Op></soap:Body></soap:Envelope>";
    let env = parse(xml.as_bytes(), ParseOptions::new(&a)).unwrap();
    assert_eq!(env.alias, Some(0));
    assert_eq!(
        env.body.unwrap().xml,
        "<Op xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns=\"urn:m\"><a  x='1'>t &lt; <![CDATA[<raw>]]><!-- c --></a><b xmlns=\"http://schemas.microsoft.com/t\"><c/></b><d xmlns:q=\"urn:q\" q:y=\"2\"/></Op>"
    );
    let mut strict = ParseOptions::new(&a);
    strict.accept_aliases = false;
    assert!(matches!(
        parse(xml.as_bytes(), strict),
        Err(EnvelopeError::AliasRefused(_))
    ));
}

#[test]
fn whitespace_inside_fragments_is_kept() {
    let a = NamespaceAliases::none();
    let inner = "\n  <a>  leading and trailing  </a>\n\t<b> <c/> </b>\r\n  <d>\n</d>  ";
    let xml = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\">\n \
         <s:Header>\n  <h xmlns=\"urn:h\">  x </h>\n </s:Header>\n \
         <s:Body>\n  <Op xmlns=\"urn:m\">{inner}</Op>\n </s:Body>\n</s:Envelope>\n"
    );
    let env = parse(xml.as_bytes(), ParseOptions::new(&a)).unwrap();
    assert_eq!(
        env.headers[0].xml,
        r#"<h xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:h">  x </h>"#
    );
    let body = env.body.unwrap();
    assert_eq!(
        body.xml,
        format!(
            r#"<Op xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:m">{inner}</Op>"#
        )
    );
    assert!(!body.bare);
}

#[test]
fn root_declarations_are_rewritten_in_canonical_spelling() {
    let a = aliases();
    let xml = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="urn:outer"><s:Body xmlns:q='urn:"q"'><m:Op xmlns="https://schemas.microsoft.com/m" xmlns:m="urn:m" a='x'><b/></m:Op></s:Body></s:Envelope>"#;
    let body = parse(xml.as_bytes(), ParseOptions::new(&a))
        .unwrap()
        .body
        .unwrap();
    assert_eq!(body.namespace, "urn:m");
    assert_eq!(
        body.xml,
        r#"<m:Op xmlns:q="urn:&quot;q&quot;" xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns="http://schemas.microsoft.com/m" xmlns:m="urn:m" a="x"><b/></m:Op>"#
    );
}

#[test]
fn namespace_scopes_follow_the_elements() {
    let a = NamespaceAliases::none();
    let o = ParseOptions::new(&a);
    let env = |body: &str| {
        format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{body}</s:Body></s:Envelope>"#
        )
    };
    // A prefix declared on a sibling is out of scope.
    let out_of_scope = env(r#"<m:Op xmlns:m="urn:m"><a xmlns:p="urn:p"/><p:b/></m:Op>"#);
    assert!(matches!(
        parse(out_of_scope.as_bytes(), o),
        Err(EnvelopeError::UnboundPrefix(p)) if p == "p"
    ));
    // Redeclared inside, undeclared default, the xml prefix.
    let fine = env(
        r#"<m:Op xmlns:m="urn:m" xmlns="urn:d"><m:a xmlns:m="urn:other" xml:lang="en"/><b xmlns=""/></m:Op>"#,
    );
    let body = parse(fine.as_bytes(), o).unwrap().body.unwrap();
    assert_eq!(body.namespace, "urn:m");
    // The Body's namespace after a header block that redeclared the prefix.
    let header = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="urn:m"><s:Header><m:H xmlns:m="urn:h" s:mustUnderstand="true"/></s:Header><s:Body><m:Op/></s:Body></s:Envelope>"#;
    let parsed = parse(header.as_bytes(), o).unwrap();
    assert_eq!(parsed.headers[0].namespace, "urn:h");
    assert!(parsed.headers[0].must_understand);
    assert_eq!(parsed.body.unwrap().namespace, "urn:m");
    // A prefix used on the envelope itself before any declaration.
    assert!(matches!(
        parse(b"<x:Envelope><x:Body/></x:Envelope>", o),
        Err(EnvelopeError::UnboundPrefix(_))
    ));
}

#[test]
fn inner_elements_are_checked() {
    let a = aliases();
    let o = ParseOptions::new(&a);
    let wrap = |inner: &str| {
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><Op xmlns="urn:m">{inner}</Op></soap:Body></soap:Envelope>"#
        )
    };
    for (inner, what) in [
        (r#"<a x="1" x="2"/>"#, "a duplicate attribute"),
        (r#"<p:a/>"#, "an undeclared prefix"),
        (r#"<a>&nope;</a>"#, "an undefined entity"),
        (r#"<a></b>"#, "a mismatched end tag"),
        (r#"<a x=1/>"#, "an unquoted attribute"),
    ] {
        assert!(
            parse(wrap(inner).as_bytes(), o).is_err(),
            "{what} was accepted"
        );
    }
    assert!(parse(wrap("<a x=\"1\">ok</a>").as_bytes(), o).is_ok());
}

#[test]
fn duplicate_attributes_are_reported_by_quick_xml_on_any_tag() {
    let a = NamespaceAliases::none();
    let o = ParseOptions::new(&a);
    let attrs = |n: usize| (0..n).map(|i| format!(" a{i}=\"{i}\"")).collect::<String>();
    let wrap = |tag: &str| {
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{tag}</soap:Body></soap:Envelope>"#
        )
    };
    for n in [0, 1, 7, 8, 9, 20] {
        // Unique keys, fewer or more than the reader checks itself.
        let ok = wrap(&format!("<Op{}/>", attrs(n)));
        assert!(parse(ok.as_bytes(), o).is_ok(), "{ok}");
        // A repeated key (also as a repeated declaration), early and late in the tag.
        let n = n.max(1);
        for dup in [" a0=\"x\"", " xmlns:p=\"urn:p\""] {
            for tag in [
                format!("<Op xmlns:p=\"urn:p\"{}{dup}/>", attrs(n)),
                format!("<Op{dup}{} xmlns:p=\"urn:p\" a0=\"y\"/>", attrs(n)),
            ] {
                let dup_xml = wrap(&tag);
                match parse(dup_xml.as_bytes(), o) {
                    Err(EnvelopeError::Xml { source, .. }) => {
                        let message = source.to_string();
                        assert!(message.contains("duplicated"), "{dup_xml}: {message}");
                    }
                    other => panic!("{dup_xml}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn refuses_doctype_entities_and_junk() {
    let a = NamespaceAliases::none();
    let o = ParseOptions::new(&a);
    let doctype = r#"<!DOCTYPE x [<!ENTITY e "boom">]><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body/></soap:Envelope>"#;
    assert!(matches!(
        parse(doctype.as_bytes(), o),
        Err(EnvelopeError::DocType)
    ));
    let entity = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><a>&e;</a></soap:Body></soap:Envelope>"#;
    assert!(matches!(
        parse(entity.as_bytes(), o),
        Err(EnvelopeError::UndefinedEntity(_))
    ));
    let two = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><a/><b/></soap:Body></soap:Envelope>"#;
    assert!(matches!(
        parse(two.as_bytes(), o),
        Err(EnvelopeError::UnexpectedContent(_))
    ));
    let v12 = r#"<e:Envelope xmlns:e="urn:other"><e:Body/></e:Envelope>"#;
    assert!(matches!(
        parse(v12.as_bytes(), o),
        Err(EnvelopeError::VersionMismatch { .. })
    ));
    assert!(matches!(
        parse(b"<a>", o),
        Err(EnvelopeError::NotEnvelope { .. })
    ));
    assert!(parse(b"\xff\xfe", o).is_err());
    assert!(parse(b"", o).is_err());
    let truncated = &SEED.as_bytes()[..SEED.len() - 20];
    assert!(parse(truncated, o).is_err());
}

#[test]
fn declared_encoding_is_read_like_quick_xml() {
    for decl in [
        r#"<?xml version="1.0"?>"#,
        r#"<?xml version="1.0" encoding="utf-8"?>"#,
        r#"<?xml version="1.0" encoding='UTF8' standalone="yes"?>"#,
        r#"<?xml version="1.0" encoding="ISO-8859-1"?>"#,
        r#"<?xml encoding="latin1" version="1.0"?>"#,
        r#"<?xml version="1.0"  encoding = "latin1" ?>"#,
        r#"<?xml version=1.0 encoding="latin1"?>"#,
        r#"<?xml version="1.0" encoding="utf-8" encoding="latin1"?>"#,
        r#"<?xml version="1.0" encoding="latin1" encoding="utf-8"?>"#,
        r#"<?xml version="1.0" version="1.1" encoding="latin1"?>"#,
        r#"<?xml version="1.0" encoding?>"#,
    ] {
        let mut reader = quick_xml::Reader::from_str(decl);
        let Ok(Event::Decl(d)) = reader.read_event() else {
            panic!("{decl}: not a declaration");
        };
        let quick = d
            .encoding()
            .and_then(Result::ok)
            .is_none_or(|e| e.eq_ignore_ascii_case(b"utf-8") || e.eq_ignore_ascii_case(b"utf8"));
        assert_eq!(declares_utf8(&d), quick, "{decl}");
    }
}

#[test]
fn depth_is_limited() {
    let a = NamespaceAliases::none();
    let mut o = ParseOptions::new(&a);
    o.max_depth = 8;
    let inner = "<a>".repeat(20) + &"</a>".repeat(20);
    let xml = format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{inner}</soap:Body></soap:Envelope>"#
    );
    assert!(matches!(
        parse(xml.as_bytes(), o),
        Err(EnvelopeError::TooDeep(8))
    ));
}

#[test]
fn fault_round_trips() {
    let fault = SoapFault::new(
        FaultCode::qualified("urn:types", "ErrorInvalidRequest"),
        "The request is invalid.",
    )
    .with_lang("en-US")
    .with_detail(DetailEntry::new(
        "urn:errors",
        "ResponseCode",
        "ErrorInvalidRequest",
    ))
    .with_detail(DetailEntry::new(
        "urn:errors",
        "Message",
        "The request is invalid.",
    ));
    let mut w = EnvelopeWriter::new(SoapVersion::Soap11, None);
    w.write_fault(&fault);
    let bytes = w.finish();
    let a = NamespaceAliases::none();
    let env = parse(&bytes, ParseOptions::new(&a)).unwrap();
    let back = read_fault(&env.body.unwrap(), SoapVersion::Soap11)
        .unwrap()
        .unwrap();
    assert_eq!(back, fault);
}

#[test]
fn envelope_heads_use_the_namespace_constants() {
    for version in [SoapVersion::Soap11, SoapVersion::Soap12] {
        let bytes = EnvelopeWriter::new(version, None).finish();
        let text = String::from_utf8(bytes).unwrap();
        for ns in [version.envelope_ns(), XSI_NS, XSD_NS] {
            assert!(text.contains(&format!("\"{ns}\"")), "{text}");
        }
        let a = NamespaceAliases::none();
        let env = parse(text.as_bytes(), ParseOptions::new(&a)).unwrap();
        assert_eq!(env.version, version);
        assert!(env.body.is_none());
    }
}

#[test]
fn writer_echoes_alias() {
    let a = aliases();
    let mut w = EnvelopeWriter::new(SoapVersion::Soap11, Some((&a, 0)));
    let mut s = BytesStart::new("ResetPINResponse");
    s.push_attribute((
        "xmlns",
        "http://schemas.microsoft.com/exchange/services/2006/messages",
    ));
    w.write_event(Event::Empty(s));
    let out = String::from_utf8(w.finish()).unwrap();
    assert_eq!(out, "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><soap:Body><ResetPINResponse xmlns=\"https://schemas.microsoft.com/exchange/services/2006/messages\"/></soap:Body></soap:Envelope>");
}
