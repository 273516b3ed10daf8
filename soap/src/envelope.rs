//! Reading and writing SOAP envelopes.
//!
//! [`parse`] reads a whole envelope with quick-xml's namespace-aware reader
//! and cuts out the header blocks and the body element as standalone XML
//! fragments: every namespace declaration in scope is copied onto the
//! fragment's root, so a fragment can be handed to a generated deserializer
//! on its own. [`EnvelopeWriter`] writes an answer around body content.

use std::borrow::Cow;
use std::sync::LazyLock;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::{NsReader, Writer};
use smallvec::SmallVec;

use crate::fault::{DetailEntry, FaultCode, SoapFault};
use crate::namespace::NamespaceAliases;

/// The SOAP 1.1 envelope namespace.
pub const SOAP11_ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The SOAP 1.2 envelope namespace.
pub const SOAP12_ENVELOPE_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
/// The XML Schema instance namespace, declared on every envelope we write.
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The XML Schema namespace, declared on every envelope we write.
pub const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";

/// The default limit on element nesting inside an envelope.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// The SOAP version of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    /// SOAP 1.1 (`text/xml`).
    Soap11,
    /// SOAP 1.2 (`application/soap+xml`).
    Soap12,
}

impl SoapVersion {
    /// The envelope namespace of this version.
    pub fn envelope_ns(self) -> &'static str {
        match self {
            Self::Soap11 => SOAP11_ENVELOPE_NS,
            Self::Soap12 => SOAP12_ENVELOPE_NS,
        }
    }
}

/// A header block of a request, cut out as a standalone fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderBlock {
    /// Namespace name of the block's element (canonical spelling).
    pub namespace: String,
    /// Local name of the block's element.
    pub local_name: String,
    /// Whether `soap:mustUnderstand` is `1` or `true`.
    pub must_understand: bool,
    /// The block as standalone XML.
    pub xml: String,
}

/// The first (and only) element of a `soap:Body`, cut out as a standalone
/// fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyElement {
    /// Namespace name of the element (canonical spelling); empty when the
    /// element is unqualified.
    pub namespace: String,
    /// Local name of the element.
    pub local_name: String,
    /// The element as standalone XML, namespaces in canonical spelling.
    pub xml: String,
    /// Whether the element is bare: no attributes besides namespace declarations and no
    /// content at all (`<x/>` or `<x></x>`; whitespace or a comment inside is content).
    pub bare: bool,
}

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The SOAP version, from the envelope namespace.
    pub version: SoapVersion,
    /// The header blocks, in document order.
    pub headers: Vec<HeaderBlock>,
    /// The body's element; `None` for an empty body.
    pub body: Option<BodyElement>,
    /// The index of the namespace alias the message used, if it used one
    /// (see [`NamespaceAliases`]).
    pub alias: Option<usize>,
}

/// Why an envelope could not be read.
///
/// The messages are safe to show a client: they name what is wrong with the
/// message, never anything about the server.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The bytes are not well-formed XML.
    #[error("the message is not well-formed XML (at byte {position}): {source}")]
    Xml {
        /// Byte offset where reading failed.
        position: u64,
        /// What quick-xml reported.
        #[source]
        source: quick_xml::Error,
    },
    /// The message is not UTF-8 or declares another encoding.
    #[error("the message must be encoded in UTF-8")]
    Encoding,
    /// The message contains a document type declaration.
    #[error("a DOCTYPE is not allowed in a SOAP message")]
    DocType,
    /// The message uses an entity other than the five predefined ones.
    #[error("the entity reference &{0}; is not defined")]
    UndefinedEntity(String),
    /// The root element is not a SOAP envelope.
    #[error("the root element is {found}, not a SOAP Envelope")]
    NotEnvelope {
        /// The root element as `{namespace}local`.
        found: String,
    },
    /// The envelope is in a namespace of another SOAP version.
    #[error("the envelope namespace {namespace} is not supported")]
    VersionMismatch {
        /// The envelope's namespace name.
        namespace: String,
        /// The version it denotes, when it is a known one.
        version: Option<SoapVersion>,
    },
    /// The envelope has no `Body`.
    #[error("the envelope has no Body")]
    MissingBody,
    /// Something other than `Header` then `Body` inside the envelope, more
    /// than one element inside the body, or text where none may be.
    #[error("unexpected content in the envelope: {0}")]
    UnexpectedContent(String),
    /// An element or attribute uses a prefix that is not declared.
    #[error("the namespace prefix of {0} is not declared")]
    UnboundPrefix(String),
    /// Elements are nested deeper than the limit.
    #[error("elements are nested deeper than {0} levels")]
    TooDeep(usize),
    /// The message uses an alternative namespace spelling and the reader
    /// was told to refuse them.
    #[error("the namespace {0} is not the schema's spelling")]
    AliasRefused(String),
}

/// How [`parse`] treats alternative spellings and nesting.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions<'a> {
    /// Known alternative namespace spellings.
    pub aliases: &'a NamespaceAliases,
    /// Accept the aliases (`true`) or refuse a message that uses one.
    pub accept_aliases: bool,
    /// Maximum element nesting depth.
    pub max_depth: usize,
}

impl<'a> ParseOptions<'a> {
    /// Options that accept the given aliases, with the default depth limit.
    pub fn new(aliases: &'a NamespaceAliases) -> Self {
        Self {
            aliases,
            accept_aliases: true,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// One namespace declaration in scope.
#[derive(Debug)]
struct Binding<'i> {
    /// The prefix; empty for the default namespace. Borrowed from the message.
    prefix: Cow<'i, [u8]>,
    /// The namespace name in canonical spelling: borrowed from the message unless it was
    /// rewritten from an alias spelling.
    name: Cow<'i, [u8]>,
    /// The depth of the element that declared it (the root element is 1).
    depth: usize,
}

struct Reader<'i, 'o> {
    inner: quick_xml::Reader<&'i [u8]>,
    /// The whole message: fragments are copied out of it.
    input: &'i [u8],
    opts: ParseOptions<'o>,
    alias: Option<usize>,
    /// The namespace declarations in scope, innermost last, in canonical spelling. A message
    /// seldom declares more than four, so they usually live on the stack.
    bindings: SmallVec<[Binding<'i>; 4]>,
    /// How many elements are open (the start tag just read included).
    depth: usize,
    /// The last event was an empty-element tag, whose declarations go out of scope before
    /// the next event.
    pending_pop: bool,
    /// Whether a declaration of the last start tag used an alias spelling.
    last_aliased: bool,
    /// Whether the last start tag had attributes other than namespace declarations.
    last_had_attributes: bool,
}

/// The namespace name bound to the `xml` prefix.
const XML_NS: &[u8] = b"http://www.w3.org/XML/1998/namespace";

impl<'i, 'o> Reader<'i, 'o> {
    fn new(text: &'i str, opts: ParseOptions<'o>) -> Self {
        let mut inner = quick_xml::Reader::from_str(text);
        inner.config_mut().check_end_names = true;
        inner.config_mut().check_comments = true;
        // Whitespace-only text between tags is no event (the positions still cover it, so
        // fragments copied by position keep it).
        inner.config_mut().trim_text_start = true;
        Self {
            inner,
            input: text.as_bytes(),
            opts,
            alias: None,
            bindings: SmallVec::new(),
            depth: 0,
            pending_pop: false,
            last_aliased: false,
            last_had_attributes: false,
        }
    }

    /// The next event with, for a start tag, the namespace name of its element in canonical
    /// spelling.
    fn next(&mut self) -> Result<(Option<Cow<'static, str>>, Event<'i>), EnvelopeError> {
        let event = self.next_event()?;
        let ns = match &event {
            Event::Start(s) | Event::Empty(s) => self.element_namespace(s)?,
            _ => None,
        };
        Ok((ns, event))
    }

    /// The next event, checked (no DOCTYPE, UTF-8 only, predefined entities only, attributes
    /// well-formed and unique, no undeclared element prefix), with the namespace declarations
    /// of a start tag taken into scope. Allocates only for declarations.
    fn next_event(&mut self) -> Result<Event<'i>, EnvelopeError> {
        if std::mem::take(&mut self.pending_pop) {
            self.pop_frame();
        }
        let position = self.inner.buffer_position();
        let event = self
            .inner
            .read_event()
            .map_err(|source| EnvelopeError::Xml { position, source })?;
        match &event {
            Event::Start(s) | Event::Empty(s) => {
                self.push_frame(s)?;
                self.pending_pop = matches!(event, Event::Empty(_));
                self.resolve_prefix(s.name().prefix().map(|p| p.into_inner()))?;
            }
            Event::End(_) => self.pop_frame(),
            Event::DocType(_) => return Err(EnvelopeError::DocType),
            Event::Decl(decl) if !declares_utf8(decl) => return Err(EnvelopeError::Encoding),
            Event::GeneralRef(r) if !r.is_char_ref() && !is_predefined_entity(r) => {
                return Err(EnvelopeError::UndefinedEntity(
                    String::from_utf8_lossy(r).into_owned(),
                ));
            }
            _ => {}
        }
        Ok(event)
    }

    /// Checks the attributes of a start tag and takes its namespace declarations into scope.
    fn push_frame(&mut self, start: &BytesStart<'_>) -> Result<(), EnvelopeError> {
        let depth = self.depth + 1;
        let mut aliased = false;
        let mut plain = false;
        // Keys are checked for uniqueness here, without quick-xml's list on the heap per tag;
        // quick-xml's check reports a duplicate, and checks tags with more attributes.
        let mut keys: [&[u8]; 8] = [&[]; 8];
        let mut count = 0usize;
        for attr in start.attributes().with_checks(false) {
            let attr = attr.map_err(|e| self.attribute_error(e))?;
            let key = attr.key.into_inner();
            if let Some(slot) = keys.get_mut(count) {
                *slot = key;
                if keys[..count].contains(&key) {
                    return self
                        .check_unique(start)
                        .and(Err(EnvelopeError::UnexpectedContent(
                            "an attribute appears twice in a tag".into(),
                        )));
                }
            }
            count += 1;
            let prefix = if key == b"xmlns" {
                Cow::Borrowed(&[][..])
            } else if let Some(p) = key.strip_prefix(b"xmlns:") {
                self.keep(p)
            } else {
                plain = true;
                continue;
            };
            let value = match self.canonical_bytes(attr.value)? {
                Cow::Borrowed(v) => self.keep(v),
                Cow::Owned(v) => {
                    aliased = true;
                    Cow::Owned(v)
                }
            };
            self.bindings.push(Binding {
                prefix,
                name: value,
                depth,
            });
        }
        if count > keys.len() {
            self.check_unique(start)?;
        }
        self.depth = depth;
        self.last_aliased = aliased;
        self.last_had_attributes = plain;
        Ok(())
    }

    /// quick-xml's check that the keys of `start` are unique (its error names the positions
    /// of both).
    fn check_unique(&self, start: &BytesStart<'_>) -> Result<(), EnvelopeError> {
        for attr in start.attributes().with_checks(true) {
            attr.map_err(|e| self.attribute_error(e))?;
        }
        Ok(())
    }

    fn attribute_error(&self, error: quick_xml::events::attributes::AttrError) -> EnvelopeError {
        EnvelopeError::Xml {
            position: self.inner.buffer_position(),
            source: error.into(),
        }
    }

    fn pop_frame(&mut self) {
        self.bindings
            .truncate(self.bindings.len() - self.own_bindings());
        self.depth = self.depth.saturating_sub(1);
    }

    /// How many of the last `bindings` the innermost open element declared.
    fn own_bindings(&self) -> usize {
        let depth = self.depth;
        self.bindings
            .iter()
            .rev()
            .take_while(|b| b.depth >= depth)
            .count()
    }

    /// The namespace name bound to `prefix` (`None`: the default namespace) in the current
    /// scope; `None` when an unprefixed name has no namespace.
    fn resolve_prefix(&self, prefix: Option<&[u8]>) -> Result<Option<&[u8]>, EnvelopeError> {
        let key = prefix.unwrap_or_default();
        if key == b"xml" {
            return Ok(Some(XML_NS));
        }
        match self
            .bindings
            .iter()
            .rev()
            .find(|b| b.prefix.as_ref() == key)
        {
            Some(b) if !b.name.is_empty() => Ok(Some(&b.name)),
            _ if prefix.is_none() => Ok(None),
            _ => Err(EnvelopeError::UnboundPrefix(
                String::from_utf8_lossy(key).into_owned(),
            )),
        }
    }

    /// The namespace name of an element just read, in canonical spelling (borrowed for the
    /// envelope namespaces, which every message uses).
    fn element_namespace(
        &mut self,
        start: &BytesStart<'_>,
    ) -> Result<Option<Cow<'static, str>>, EnvelopeError> {
        let name = start.name();
        Ok(
            match self.resolve_prefix(name.prefix().map(|p| p.into_inner()))? {
                None => None,
                Some(b"http://schemas.xmlsoap.org/soap/envelope/") => {
                    Some(Cow::Borrowed(SOAP11_ENVELOPE_NS))
                }
                Some(b"http://www.w3.org/2003/05/soap-envelope") => {
                    Some(Cow::Borrowed(SOAP12_ENVELOPE_NS))
                }
                Some(other) => Some(Cow::Owned(utf8_string(other))),
            },
        )
    }

    /// `part`, a slice of an event read from [`input`](Self::input), kept beyond the event:
    /// borrowed as the slice of the input it is (no copy), copied only if it is not one.
    fn keep(&self, part: &[u8]) -> Cow<'i, [u8]> {
        let in_input = (part.as_ptr() as usize)
            .checked_sub(self.input.as_ptr() as usize)
            .and_then(|start| self.input.get(start..start.checked_add(part.len())?))
            .filter(|s| s.as_ptr() == part.as_ptr());
        match in_input {
            Some(slice) => Cow::Borrowed(slice),
            None => Cow::Owned(part.to_vec()),
        }
    }

    /// Where the reader is in [`input`](Self::input).
    fn position(&self) -> usize {
        usize::try_from(self.inner.buffer_position()).unwrap_or(usize::MAX)
    }

    fn canonical_bytes<'v>(
        &mut self,
        value: Cow<'v, [u8]>,
    ) -> Result<Cow<'v, [u8]>, EnvelopeError> {
        let Ok(text) = std::str::from_utf8(&value) else {
            return Ok(value);
        };
        match self.opts.aliases.to_canonical(text) {
            None => Ok(value),
            Some(_) if !self.opts.accept_aliases => {
                Err(EnvelopeError::AliasRefused(text.to_owned()))
            }
            Some((index, canonical)) => {
                self.alias.get_or_insert(index);
                Ok(Cow::Owned(canonical.into_bytes()))
            }
        }
    }

    /// The namespace declarations in scope at the start tag just read: those of the enclosing
    /// elements, and the tag's own (in canonical spelling, innermost last).
    fn scope(&self) -> (&[Binding<'i>], &[Binding<'i>]) {
        self.bindings
            .split_at(self.bindings.len() - self.own_bindings())
    }
}

/// A name or namespace name read from the message as a `String`. The message is UTF-8 and
/// names end at ASCII delimiters, so the lossy conversion never replaces anything; it is only
/// the slower path.
fn utf8_string(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Whether an XML declaration declares UTF-8 or no encoding. Its first `encoding` is read like
/// [`BytesDecl::encoding`] does (none when the pseudo-attributes before it are malformed),
/// without that method's heap list of the keys seen.
fn declares_utf8(decl: &BytesDecl<'_>) -> bool {
    let Ok(text) = std::str::from_utf8(decl) else {
        return true; // (the message was checked as UTF-8 as a whole)
    };
    // The declaration's content starts with `xml`, its "name".
    let content = BytesStart::from_content(text, 3);
    let encoding = content
        .attributes()
        .with_checks(false)
        .map_while(Result::ok)
        .find(|a| a.key.as_ref() == b"encoding");
    encoding.is_none_or(|a| is_utf8_label(&a.value))
}

/// Whether an encoding name (an XML declaration's `encoding`, an HTTP `charset`) means UTF-8.
pub(crate) fn is_utf8_label(label: &[u8]) -> bool {
    label.eq_ignore_ascii_case(b"utf-8") || label.eq_ignore_ascii_case(b"utf8")
}

fn is_predefined_entity(name: &[u8]) -> bool {
    matches!(name, b"amp" | b"lt" | b"gt" | b"apos" | b"quot")
}

fn qname_display(ns: Option<&str>, local: &[u8]) -> String {
    let local = String::from_utf8_lossy(local);
    match ns {
        Some(ns) => format!("{{{ns}}}{local}"),
        None => local.into_owned(),
    }
}

fn is_blank(text: &BytesText<'_>) -> bool {
    text.iter().all(u8::is_ascii_whitespace)
}

/// Reads a SOAP envelope.
///
/// Accepts SOAP 1.1 and SOAP 1.2 envelopes (the caller decides whether it
/// serves the version found). Refuses DOCTYPEs, entities other than the
/// predefined ones, encodings other than UTF-8, undeclared prefixes, nesting
/// beyond `opts.max_depth`, and any content besides optional `Header` and
/// one `Body` with at most one element.
pub fn parse(bytes: &[u8], opts: ParseOptions<'_>) -> Result<Envelope, EnvelopeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| EnvelopeError::Encoding)?;
    // Without the byte order mark, the reader's positions are offsets into `text`.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut r = Reader::new(text, opts);

    // Prolog, up to the root element.
    let (version, root_empty) = loop {
        let (ns, event) = r.next()?;
        match event {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Text(t) if is_blank(&t) => {}
            Event::Start(ref s) | Event::Empty(ref s) => {
                let local = s.local_name();
                let version = match ns.as_deref() {
                    Some(SOAP11_ENVELOPE_NS) => SoapVersion::Soap11,
                    Some(SOAP12_ENVELOPE_NS) => SoapVersion::Soap12,
                    other if local.as_ref() == b"Envelope" => {
                        return Err(EnvelopeError::VersionMismatch {
                            namespace: other.unwrap_or_default().to_owned(),
                            version: None,
                        })
                    }
                    other => {
                        return Err(EnvelopeError::NotEnvelope {
                            found: qname_display(other, local.as_ref()),
                        })
                    }
                };
                if local.as_ref() != b"Envelope" {
                    return Err(EnvelopeError::NotEnvelope {
                        found: qname_display(ns.as_deref(), local.as_ref()),
                    });
                }
                break (version, matches!(event, Event::Empty(_)));
            }
            Event::Eof => {
                return Err(EnvelopeError::UnexpectedContent(
                    "the message is empty".into(),
                ))
            }
            _ => {
                return Err(EnvelopeError::UnexpectedContent(
                    "content before the Envelope".into(),
                ))
            }
        }
    };
    if root_empty {
        return Err(EnvelopeError::MissingBody);
    }
    let env_ns = version.envelope_ns();

    let mut headers = Vec::new();
    let mut body = None;
    let mut seen_body = false;
    loop {
        let (ns, event) = r.next()?;
        match event {
            Event::Comment(_) => {}
            Event::Text(t) if is_blank(&t) => {}
            Event::Start(ref s) | Event::Empty(ref s) if ns.as_deref() == Some(env_ns) => {
                let empty = matches!(event, Event::Empty(_));
                match s.local_name().as_ref() {
                    b"Header" if !seen_body && headers.is_empty() => {
                        if !empty {
                            headers = read_header_blocks(&mut r, env_ns)?;
                        }
                    }
                    b"Body" if !seen_body => {
                        seen_body = true;
                        if !empty {
                            body = read_body(&mut r)?;
                        }
                    }
                    other => {
                        return Err(EnvelopeError::UnexpectedContent(format!(
                            "element {}",
                            qname_display(ns.as_deref(), other)
                        )))
                    }
                }
            }
            Event::End(_) => break,
            Event::Start(ref s) | Event::Empty(ref s) => {
                return Err(EnvelopeError::UnexpectedContent(format!(
                    "element {}",
                    qname_display(ns.as_deref(), s.local_name().as_ref())
                )))
            }
            _ => {
                return Err(EnvelopeError::UnexpectedContent(
                    "text inside the Envelope".into(),
                ))
            }
        }
    }
    if !seen_body {
        return Err(EnvelopeError::MissingBody);
    }
    // Epilog: only comments, PIs and whitespace.
    loop {
        let (_, event) = r.next()?;
        match event {
            Event::Eof => break,
            Event::Comment(_) | Event::PI(_) => {}
            Event::Text(t) if is_blank(&t) => {}
            _ => {
                return Err(EnvelopeError::UnexpectedContent(
                    "content after the Envelope".into(),
                ))
            }
        }
    }
    Ok(Envelope {
        version,
        headers,
        body,
        alias: r.alias,
    })
}

fn read_header_blocks(
    r: &mut Reader<'_, '_>,
    env_ns: &str,
) -> Result<Vec<HeaderBlock>, EnvelopeError> {
    let mut blocks = Vec::new();
    loop {
        let (ns, event) = r.next()?;
        match event {
            Event::Comment(_) => {}
            Event::Text(t) if is_blank(&t) => {}
            Event::End(_) => return Ok(blocks),
            Event::Start(_) | Event::Empty(_) => {
                let must_understand = match &event {
                    Event::Start(s) | Event::Empty(s) => must_understand(r, s, env_ns),
                    _ => false,
                };
                let copy = copy_element(r, ns, event)?;
                blocks.push(HeaderBlock {
                    namespace: copy.namespace,
                    local_name: copy.local_name,
                    must_understand,
                    xml: copy.xml,
                });
            }
            _ => {
                return Err(EnvelopeError::UnexpectedContent(
                    "text inside the Header".into(),
                ))
            }
        }
    }
}

fn must_understand(r: &Reader<'_, '_>, start: &BytesStart<'_>, env_ns: &str) -> bool {
    for attr in start.attributes().flatten() {
        // Unprefixed attributes are in no namespace.
        let Some(prefix) = attr.key.prefix() else {
            continue;
        };
        // (`xmlns:p` declarations have no binding to find.)
        let in_env =
            r.resolve_prefix(Some(prefix.into_inner())).ok().flatten() == Some(env_ns.as_bytes());
        if in_env && attr.key.local_name().as_ref() == b"mustUnderstand" {
            return matches!(attr.value.as_ref(), b"1" | b"true");
        }
    }
    false
}

fn read_body(r: &mut Reader<'_, '_>) -> Result<Option<BodyElement>, EnvelopeError> {
    let mut body = None;
    loop {
        let (ns, event) = r.next()?;
        match event {
            Event::Comment(_) => {}
            Event::Text(t) if is_blank(&t) => {}
            Event::End(_) => return Ok(body),
            Event::Start(_) | Event::Empty(_) if body.is_none() => {
                let copy = copy_element(r, ns, event)?;
                body = Some(BodyElement {
                    namespace: copy.namespace,
                    local_name: copy.local_name,
                    xml: copy.xml,
                    bare: copy.bare,
                });
            }
            Event::Start(_) | Event::Empty(_) => {
                return Err(EnvelopeError::UnexpectedContent(
                    "more than one element in the Body".into(),
                ))
            }
            _ => {
                return Err(EnvelopeError::UnexpectedContent(
                    "text inside the Body".into(),
                ))
            }
        }
    }
}

/// An element copied out of a message by [`copy_element`].
struct Copied {
    namespace: String,
    local_name: String,
    xml: String,
    /// No attributes but namespace declarations, no content.
    bare: bool,
}

/// Copies the element that starts with `first` into a standalone fragment.
///
/// The root's start tag is written anew (with the declarations in scope); the rest is copied
/// byte for byte from the message, except start tags that declare a namespace in an alias
/// spelling, which are rewritten in canonical spelling.
fn copy_element<'i>(
    r: &mut Reader<'i, '_>,
    ns: Option<Cow<'static, str>>,
    first: Event<'i>,
) -> Result<Copied, EnvelopeError> {
    let (start, empty) = match first {
        Event::Start(s) => (s, false),
        Event::Empty(s) => (s, true),
        _ => {
            return Err(EnvelopeError::UnexpectedContent(
                "expected an element".into(),
            ))
        }
    };
    let local_name = utf8_string(start.local_name().as_ref());
    let mut writer = Writer::new(Vec::with_capacity(256));
    let write = |w: &mut Writer<Vec<u8>>, e: Event<'_>| w.write_event(e).map_err(xml_io_error);

    // The root: every declaration in scope that it does not redeclare, then its own attributes
    // (namespace names in canonical spelling).
    let (scope, own) = r.scope();
    let out = writer.get_mut();
    out.push(b'<');
    out.extend_from_slice(start.name().as_ref());
    for (i, Binding { prefix, name, .. }) in scope.iter().enumerate().rev() {
        let shadowed = own.iter().any(|b| b.prefix == *prefix)
            || scope[i + 1..].iter().any(|b| b.prefix == *prefix);
        if !shadowed {
            out.extend_from_slice(b" xmlns");
            if !prefix.is_empty() {
                out.push(b':');
                out.extend_from_slice(prefix);
            }
            out.extend_from_slice(b"=\"");
            // The value as it was written, escaped; only a quote needs care here.
            for &b in name.iter() {
                match b {
                    b'"' => out.extend_from_slice(b"&quot;"),
                    _ => out.push(b),
                }
            }
            out.push(b'"');
        }
    }
    // `attributes_raw` keeps the separating whitespace.
    match checked_start(r, &start)? {
        None => out.extend_from_slice(start.attributes_raw()),
        Some(rewritten) => out.extend_from_slice(rewritten.attributes_raw()),
    }
    let mut bare = !r.last_had_attributes;
    if empty {
        out.extend_from_slice(b"/>");
    } else {
        out.push(b'>');
        let mut depth = 1usize;
        // Anything but the end tag right after the start tag (whitespace included, which the
        // reader reports as no event) is content.
        let mut content = false;
        let mut first = true;
        while depth > 0 {
            content |= !std::mem::take(&mut first);
            let from = r.position();
            let event = r.next_event()?;
            let raw = r.input.get(from..r.position()).unwrap_or_default();
            match event {
                Event::Start(s) => {
                    depth += 1;
                    if depth > r.opts.max_depth {
                        return Err(EnvelopeError::TooDeep(r.opts.max_depth));
                    }
                    match checked_start(r, &s)? {
                        Some(copy) => write(&mut writer, Event::Start(copy))?,
                        None => writer.get_mut().extend_from_slice(raw),
                    }
                }
                Event::Empty(s) => match checked_start(r, &s)? {
                    Some(copy) => write(&mut writer, Event::Empty(copy))?,
                    None => writer.get_mut().extend_from_slice(raw),
                },
                Event::End(_) => {
                    depth -= 1;
                    content |= !raw.starts_with(b"</");
                    writer.get_mut().extend_from_slice(raw);
                }
                Event::Eof => {
                    return Err(EnvelopeError::UnexpectedContent(
                        "the message ends inside an element".into(),
                    ))
                }
                Event::Decl(_) => {
                    return Err(EnvelopeError::UnexpectedContent(
                        "an XML declaration inside an element".into(),
                    ))
                }
                _ => writer.get_mut().extend_from_slice(raw),
            }
        }
        bare &= !content;
    }
    let xml = String::from_utf8(writer.into_inner()).map_err(|_| EnvelopeError::Encoding)?;
    Ok(Copied {
        namespace: ns.map(Cow::into_owned).unwrap_or_default(),
        local_name,
        xml,
        bare,
    })
}

/// A rewritten copy of the start tag just read when a namespace declaration on it uses an
/// alias spelling (`None`: copy the tag as it is).
fn checked_start<'a>(
    r: &mut Reader<'_, '_>,
    start: &BytesStart<'a>,
) -> Result<Option<BytesStart<'a>>, EnvelopeError> {
    // The reader checked the attributes when it read the tag.
    if !r.last_aliased {
        return Ok(None);
    }
    let mut copy = start.to_owned();
    copy.clear_attributes();
    copy_attributes(r, start, &mut copy)?;
    Ok(Some(copy))
}

fn xml_io_error(e: std::io::Error) -> EnvelopeError {
    EnvelopeError::Xml {
        position: 0,
        source: quick_xml::Error::Io(e.into()),
    }
}

/// Copies all attributes of `from` onto `to`, namespace declarations in
/// canonical spelling.
fn copy_attributes(
    r: &mut Reader<'_, '_>,
    from: &BytesStart<'_>,
    to: &mut BytesStart<'_>,
) -> Result<(), EnvelopeError> {
    for attr in from.attributes().with_checks(true) {
        let attr = attr.map_err(|e| EnvelopeError::Xml {
            position: r.inner.buffer_position(),
            source: e.into(),
        })?;
        let key = attr.key.as_ref();
        if key == b"xmlns" || key.starts_with(b"xmlns:") {
            let value = r.canonical_bytes(attr.value)?;
            to.push_attribute((key, value.as_ref()));
        } else {
            to.push_attribute(attr);
        }
    }
    Ok(())
}

/// What every envelope of `version` we write starts with: the XML declaration, `Envelope`
/// (declaring `soap`, `xsi` and `xsd`) and `Body`, built once.
fn envelope_head(version: SoapVersion) -> &'static str {
    fn build(version: SoapVersion) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{}\" \
             xmlns:xsi=\"{XSI_NS}\" xmlns:xsd=\"{XSD_NS}\"><soap:Body>",
            version.envelope_ns()
        )
    }
    static SOAP11: LazyLock<String> = LazyLock::new(|| build(SoapVersion::Soap11));
    static SOAP12: LazyLock<String> = LazyLock::new(|| build(SoapVersion::Soap12));
    match version {
        SoapVersion::Soap11 => &SOAP11,
        SoapVersion::Soap12 => &SOAP12,
    }
}

/// Writes a response envelope around body content.
///
/// The envelope declares `soap`, `xsi` and `xsd` like ASP.NET web services
/// do. Body content is passed as quick-xml events; namespace declarations in
/// them are rewritten into the alias spelling the request used, if any.
pub struct EnvelopeWriter<'a> {
    writer: Writer<Vec<u8>>,
    version: SoapVersion,
    alias: Option<(&'a NamespaceAliases, usize)>,
}

impl std::fmt::Debug for EnvelopeWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeWriter")
            .field("version", &self.version)
            .field("alias", &self.alias)
            .finish_non_exhaustive()
    }
}

impl<'a> EnvelopeWriter<'a> {
    /// Starts an envelope: XML declaration, `Envelope` and `Body` start tags.
    pub fn new(version: SoapVersion, alias: Option<(&'a NamespaceAliases, usize)>) -> Self {
        let mut buffer = Vec::with_capacity(512);
        buffer.extend_from_slice(envelope_head(version).as_bytes());
        Self {
            writer: Writer::new(buffer),
            version,
            alias,
        }
    }

    /// The SOAP version being written.
    pub fn version(&self) -> SoapVersion {
        self.version
    }

    /// Writes one event of body content.
    pub fn write_event(&mut self, event: Event<'_>) {
        let event = match (self.alias, event) {
            (Some((aliases, index)), Event::Start(s)) => {
                Event::Start(alias_start(aliases, index, s))
            }
            (Some((aliases, index)), Event::Empty(s)) => {
                Event::Empty(alias_start(aliases, index, s))
            }
            (_, event) => event,
        };
        // Writing into a Vec cannot fail.
        let _ = self.writer.write_event(event);
    }

    /// Writes a fault as the body content.
    pub fn write_fault(&mut self, fault: &SoapFault) {
        self.write_event(Event::Start(BytesStart::new("soap:Fault")));
        let mut code = BytesStart::new("faultcode");
        let code_text = match &fault.code {
            FaultCode::Soap(c) => format!("soap:{}", c.local_name()),
            FaultCode::Qualified { namespace, local } => {
                code.push_attribute(("xmlns:a", namespace.as_str()));
                format!("a:{local}")
            }
        };
        self.text_element(code, &code_text);
        let mut string = BytesStart::new("faultstring");
        if let Some(lang) = &fault.lang {
            string.push_attribute(("xml:lang", lang.as_str()));
        }
        self.text_element(string, &fault.string);
        if let Some(actor) = &fault.actor {
            self.text_element(BytesStart::new("faultactor"), actor);
        }
        if !fault.detail.is_empty() {
            self.write_event(Event::Start(BytesStart::new("detail")));
            for entry in &fault.detail {
                let mut start = BytesStart::new(entry.local_name.as_str());
                if let Some(ns) = &entry.namespace {
                    start.push_attribute(("xmlns", ns.as_str()));
                }
                self.text_element(start, &entry.text);
            }
            self.write_event(Event::End(BytesEnd::new("detail")));
        }
        self.write_event(Event::End(BytesEnd::new("soap:Fault")));
    }

    fn text_element(&mut self, start: BytesStart<'_>, text: &str) {
        let end = start.to_end().into_owned();
        self.write_event(Event::Start(start));
        // Escape only what must be: `<`, `>` and `&`.
        let escaped = quick_xml::escape::partial_escape(text);
        self.write_event(Event::Text(BytesText::from_escaped(escaped)));
        self.write_event(Event::End(end));
    }

    /// Closes `Body` and `Envelope` and returns the bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut bytes = self.writer.into_inner();
        bytes.extend_from_slice(b"</soap:Body></soap:Envelope>");
        bytes
    }
}

fn alias_start<'e>(
    aliases: &NamespaceAliases,
    index: usize,
    start: BytesStart<'e>,
) -> BytesStart<'e> {
    let needs = start.attributes().flatten().any(|a| {
        let k = a.key.as_ref();
        (k == b"xmlns" || k.starts_with(b"xmlns:"))
            && std::str::from_utf8(&a.value)
                .ok()
                .and_then(|v| aliases.to_alias(index, v))
                .is_some()
    });
    if !needs {
        return start;
    }
    let mut copy = start.to_owned();
    copy.clear_attributes();
    for a in start.attributes().flatten() {
        let k = a.key.as_ref();
        let aliased = (k == b"xmlns" || k.starts_with(b"xmlns:"))
            .then(|| std::str::from_utf8(&a.value).ok())
            .flatten()
            .and_then(|v| aliases.to_alias(index, v));
        match aliased {
            Some(v) => copy.push_attribute((k, v.as_bytes())),
            None => copy.push_attribute(a),
        }
    }
    copy
}

/// Reads a `soap:Fault` body element (see [`BodyElement`]) into a
/// [`SoapFault`]. Returns `None` when the element is not a fault of
/// `version`.
pub fn read_fault(
    body: &BodyElement,
    version: SoapVersion,
) -> Option<Result<SoapFault, EnvelopeError>> {
    let env_ns = version.envelope_ns();
    if body.namespace != env_ns || body.local_name != "Fault" {
        return None;
    }
    Some(read_fault_fragment(&body.xml, env_ns))
}

fn read_fault_fragment(xml: &str, env_ns: &str) -> Result<SoapFault, EnvelopeError> {
    let mut reader = NsReader::from_str(xml);
    let mut fault = SoapFault::new(FaultCode::qualified("", ""), "");
    let mut depth = 0usize;
    let mut current: Option<(Option<String>, String)> = None;
    let mut text = String::new();
    let mut in_detail = false;
    loop {
        let position = reader.buffer_position();
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|source| EnvelopeError::Xml { position, source })?;
        let ns = match resolved {
            ResolveResult::Bound(Namespace(ns)) => Some(String::from_utf8_lossy(ns).into_owned()),
            _ => None,
        };
        match event {
            Event::Start(s) => {
                depth += 1;
                let local = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                if depth == 2 && local == "detail" {
                    in_detail = true;
                } else if depth == 2 || (in_detail && depth == 3) {
                    if local == "faultstring" {
                        for a in s.attributes().flatten() {
                            if a.key.as_ref() == b"xml:lang" {
                                fault.lang = Some(String::from_utf8_lossy(&a.value).into_owned());
                            }
                        }
                    }
                    current = Some((ns, local));
                    text.clear();
                }
            }
            Event::Empty(s) if in_detail && depth == 2 => {
                let local = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                fault.detail.push(DetailEntry {
                    namespace: ns,
                    local_name: local,
                    text: String::new(),
                });
            }
            Event::Text(t) if current.is_some() => {
                text.push_str(&t.decode().map_err(|e| EnvelopeError::Xml {
                    position,
                    source: e.into(),
                })?);
            }
            Event::GeneralRef(r) if current.is_some() => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else {
                    let name = r.decode().unwrap_or_default();
                    if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
                        text.push_str(s);
                    }
                }
            }
            Event::CData(c) if current.is_some() => {
                text.push_str(&String::from_utf8_lossy(&c));
            }
            Event::End(_) => {
                if in_detail && depth == 3 {
                    if let Some((ns, local)) = current.take() {
                        fault.detail.push(DetailEntry {
                            namespace: ns,
                            local_name: local,
                            text: std::mem::take(&mut text),
                        });
                    }
                } else if depth == 2 {
                    if in_detail {
                        in_detail = false;
                    } else if let Some((_, local)) = current.take() {
                        let value = std::mem::take(&mut text);
                        match local.as_str() {
                            "faultcode" => {
                                let trimmed = value.trim();
                                let (prefix, local) = match trimmed.split_once(':') {
                                    Some((p, l)) => (Some(p), l),
                                    None => (None, trimmed),
                                };
                                let (res, _) = reader.resolver().resolve(
                                    quick_xml::name::QName(
                                        prefix
                                            .map(|p| format!("{p}:x"))
                                            .unwrap_or_else(|| "x".into())
                                            .as_bytes(),
                                    ),
                                    true,
                                );
                                let code_ns = match res {
                                    ResolveResult::Bound(Namespace(ns)) => {
                                        Some(String::from_utf8_lossy(ns).into_owned())
                                    }
                                    _ => None,
                                };
                                fault.code =
                                    FaultCode::from_resolved(code_ns.as_deref(), local, env_ns);
                            }
                            "faultstring" => fault.string = value,
                            "faultactor" => fault.actor = Some(value),
                            _ => {}
                        }
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(fault)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let quick = d.encoding().and_then(Result::ok).is_none_or(|e| {
                e.eq_ignore_ascii_case(b"utf-8") || e.eq_ignore_ascii_case(b"utf8")
            });
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
}
