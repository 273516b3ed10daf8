//! Publishing a WSDL and its schemas on `GET <path>?wsdl`.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, Writer};

/// A WSDL and the schema files it references by relative location.
///
/// Served copies point every `soap:address` at the URL the client used and
/// every reference to a known schema file at `<url>?xsd=<name>`, so a client
/// that loads `?wsdl` finds everything on the same server.
#[derive(Debug, Clone)]
pub struct WsdlDocuments {
    wsdl: String,
    schemas: Vec<(String, String)>,
}

/// A published document could not be rewritten (it is not well-formed XML).
#[derive(Debug, thiserror::Error)]
#[error("the published document is not well-formed XML: {0}")]
pub struct RenderError(#[source] quick_xml::Error);

impl WsdlDocuments {
    /// The WSDL text and `(file name, text)` of each schema it references.
    pub fn new(wsdl: impl Into<String>, schemas: Vec<(String, String)>) -> Self {
        Self {
            wsdl: wsdl.into(),
            schemas,
        }
    }

    /// The WSDL with addresses and schema locations pointing at `base`.
    pub fn render_wsdl(&self, base: &str) -> Result<String, RenderError> {
        self.rewrite(&self.wsdl, base)
    }

    /// The schema file `name` with schema locations pointing at `base`;
    /// `None` when no schema has that name.
    pub fn render_schema(&self, name: &str, base: &str) -> Option<Result<String, RenderError>> {
        let (_, text) = self.schemas.iter().find(|(n, _)| n == name)?;
        Some(self.rewrite(text, base))
    }

    fn rewrite(&self, text: &str, base: &str) -> Result<String, RenderError> {
        let mut reader = Reader::from_str(text);
        let mut writer = Writer::new(Vec::with_capacity(text.len() + 256));
        loop {
            let event = reader.read_event().map_err(RenderError)?;
            let event = match event {
                Event::Eof => break,
                Event::Start(s) => Event::Start(self.rewrite_tag(s, base)),
                Event::Empty(s) => Event::Empty(self.rewrite_tag(s, base)),
                other => other,
            };
            writer
                .write_event(event)
                .map_err(|e| RenderError(quick_xml::Error::Io(e.into())))?;
        }
        Ok(String::from_utf8_lossy(&writer.into_inner()).into_owned())
    }

    fn rewrite_tag<'a>(&self, start: BytesStart<'a>, base: &str) -> BytesStart<'a> {
        let local = start.local_name().as_ref().to_vec();
        let mut copy = start.to_owned();
        copy.clear_attributes();
        for attr in start.attributes().flatten() {
            let key = attr.key.as_ref();
            let value = String::from_utf8_lossy(&attr.value);
            let new: Option<Cow<'_, str>> = if local == b"address" && key == b"location" {
                Some(Cow::Borrowed(base))
            } else if key == b"schemaLocation" || (local == b"import" && key == b"location") {
                self.schemas
                    .iter()
                    .find(|(n, _)| *n == value)
                    .map(|(n, _)| Cow::Owned(format!("{base}?xsd={n}")))
            } else {
                None
            };
            match new {
                Some(v) => copy.push_attribute((key, v.as_bytes())),
                None => copy.push_attribute(attr),
            }
        }
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_address_and_schemas_at_base() {
        let docs = WsdlDocuments::new(
            r#"<d xmlns:soap="urn:s"><t><s:schema xmlns:s="urn:x"><s:import schemaLocation="m.xsd"/></s:schema></t><soap:address location="http://old/x"/></d>"#,
            vec![(
                "m.xsd".into(),
                r#"<s:schema xmlns:s="urn:x"><s:import schemaLocation="t.xsd"/></s:schema>"#.into(),
            )],
        );
        let w = docs.render_wsdl("http://h:1/p").unwrap();
        assert!(
            w.contains(r#"schemaLocation="http://h:1/p?xsd=m.xsd""#),
            "{w}"
        );
        assert!(w.contains(r#"location="http://h:1/p""#), "{w}");
        let m = docs
            .render_schema("m.xsd", "http://h:1/p")
            .unwrap()
            .unwrap();
        assert!(
            m.contains(r#"schemaLocation="t.xsd""#),
            "unknown names stay: {m}"
        );
        assert!(docs.render_schema("nope.xsd", "b").is_none());
    }
}
