//! The bridge between xsd-parser's generated (de)serializers and envelopes.

use quick_xml::events::Event;
use quick_xml::Writer;
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
    source: xsd_parser_types::quick_xml::Error,
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
        Self { message, source }
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
