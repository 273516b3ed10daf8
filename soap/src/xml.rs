//! The bridge between xsd-parser's generated (de)serializers and envelopes.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, Writer};
use xsd_parser_types::quick_xml::{
    DeserializeSync, Error as ReadError, Serializer as _, SliceReader, WithDeserializer,
    WithSerializer, XmlReader, XmlReaderSync,
};

use crate::envelope::EnvelopeWriter;

/// A value did not match its schema type (as read by the generated
/// deserializer), or could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct XmlError {
    message: String,
    #[source]
    source: Option<xsd_parser_types::quick_xml::Error>,
}

impl XmlError {
    fn new(source: xsd_parser_types::quick_xml::Error) -> Self {
        // The element path tells a client where its request is wrong; the
        // kind says what. Neither carries server internals.
        let at = source
            .elements
            .as_ref()
            .filter(|e| !e.is_empty())
            .map(|e| format!(" at /{}", e.join("/")))
            .unwrap_or_default();
        let message = format!("{}{at}", source.kind);
        Self {
            message,
            source: Some(source),
        }
    }

    /// An element of a request where the schema has none of that name and namespace.
    fn misplaced(given: &QualifiedName, expected: Option<&QualifiedName>) -> Self {
        let message = match expected {
            Some(expected) => format!("Unexpected element {given}, expected {expected}"),
            None => format!("Unexpected element {given}"),
        };
        Self {
            message,
            source: None,
        }
    }
}

/// Reads a request of a generated type from a standalone XML fragment, like
/// [`from_fragment`], and checks that every element of the fragment is one the
/// schema puts there, namespace included.
///
/// xsd-parser's deserializers match an element written without a prefix by its
/// local name alone, whatever default namespace is in scope (so
/// `<status xmlns="urn:other">` would read as the messages namespace's
/// `status`). The value read is therefore written back and the qualified names
/// of its elements compared with those of the request, in order: any element in
/// another namespace, or one the deserializer skipped, is refused.
pub fn from_request_fragment<T>(xml: &str) -> Result<T, XmlError>
where
    T: WithDeserializer + WithSerializer,
{
    let value = from_fragment::<T>(xml)?;
    let written = to_fragment(&value)?;
    let given = element_names(xml.as_bytes())?;
    let expected = element_names(&written)?;
    if let Some(i) = (0..given.len().max(expected.len())).find(|&i| given.get(i) != expected.get(i))
    {
        return Err(match given.get(i) {
            Some(name) => XmlError::misplaced(name, expected.get(i)),
            None => XmlError::misplaced(&expected[i], None),
        });
    }
    Ok(value)
}

/// The namespace and local name of an element.
#[derive(Debug, PartialEq, Eq)]
struct QualifiedName {
    namespace: Option<Vec<u8>>,
    local: Vec<u8>,
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let local = String::from_utf8_lossy(&self.local);
        match &self.namespace {
            Some(ns) => write!(f, "{{{}}}{local}", String::from_utf8_lossy(ns)),
            None => write!(f, "{local} (no namespace)"),
        }
    }
}

/// The qualified names of the elements of a fragment, in document order.
fn element_names(xml: &[u8]) -> Result<Vec<QualifiedName>, XmlError> {
    let mut reader = NsReader::from_reader(xml);
    let mut names = Vec::new();
    loop {
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| XmlError::new(e.into()))?;
        match event {
            Event::Start(start) | Event::Empty(start) => {
                let namespace = match resolved {
                    ResolveResult::Bound(ns) => Some(ns.as_ref().to_vec()),
                    _ => None,
                };
                names.push(QualifiedName {
                    namespace,
                    local: start.local_name().as_ref().to_vec(),
                });
            }
            Event::Eof => return Ok(names),
            _ => {}
        }
    }
}

/// Reads a value of a generated type from a standalone XML fragment.
pub fn from_fragment<T: WithDeserializer>(xml: &str) -> Result<T, XmlError> {
    // Tracking the element path costs an allocation per element; it is only needed to
    // describe a failure, so a failed read is repeated with it.
    match T::deserialize(&mut FragmentReader::new(xml)) {
        Ok(value) => Ok(value),
        Err(_) => {
            let mut reader = SliceReader::new(xml).with_error_info();
            T::deserialize(&mut reader).map_err(XmlError::new)
        }
    }
}

/// The events of a fragment for a generated deserializer. Unlike xsd-parser's `SliceReader`
/// it does not resolve namespaces (the deserializer keeps its own scope, so a second one
/// would be work thrown away) and adds no position to errors (a failed read is repeated
/// with `SliceReader` to describe the failure).
struct FragmentReader<'a> {
    inner: quick_xml::Reader<&'a [u8]>,
}

impl<'a> FragmentReader<'a> {
    fn new(xml: &'a str) -> Self {
        Self {
            inner: quick_xml::Reader::from_str(xml),
        }
    }
}

impl XmlReader for FragmentReader<'_> {
    fn extend_error(&self, error: ReadError) -> ReadError {
        error
    }
}

impl<'a> XmlReaderSync<'a> for FragmentReader<'a> {
    fn read_event(&mut self) -> Result<Event<'a>, ReadError> {
        self.inner.read_event().map_err(ReadError::from)
    }
}

/// Writes a value of a generated type as the root element of a fragment,
/// using the element name the schema gives it.
pub fn to_fragment<T: WithSerializer>(value: &T) -> Result<Vec<u8>, XmlError> {
    let mut writer = Writer::new(Vec::with_capacity(256));
    for event in events(value)? {
        writer
            .write_event(event?)
            .map_err(|e| XmlError::new(quick_xml::Error::from(e).into()))?;
    }
    Ok(writer.into_inner())
}

/// Writes a value of a generated type into an envelope's body.
pub fn write_body<T: WithSerializer>(
    value: &T,
    out: &mut EnvelopeWriter<'_>,
) -> Result<(), XmlError> {
    for event in events(value)? {
        out.write_event(event?);
    }
    Ok(())
}

fn events<T: WithSerializer>(
    value: &T,
) -> Result<impl Iterator<Item = Result<Event<'_>, XmlError>>, XmlError> {
    let serializer = value.serializer(None, true).map_err(XmlError::new)?;
    Ok(serializer.into_iter().map(|r| r.map_err(XmlError::new)))
}
