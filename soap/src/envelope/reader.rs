//! Reading an envelope: [`parse`](super::parse) walks the message once with
//! quick-xml's `Reader`, keeping the namespace declarations in scope itself (on
//! the stack, with their element's depth), and copies the header blocks and the
//! body element out as standalone fragments.

use std::borrow::Cow;

use quick_xml::events::{BytesDecl, BytesStart, BytesText, Event};
use quick_xml::Writer;
use smallvec::SmallVec;

#[allow(unused_imports)]
use super::*;

/// One namespace declaration in scope.
#[derive(Debug)]
pub(super) struct Binding<'i> {
    /// The prefix; empty for the default namespace. Borrowed from the message.
    pub(super) prefix: Cow<'i, [u8]>,
    /// The namespace name in canonical spelling: borrowed from the message unless it was
    /// rewritten from an alias spelling.
    pub(super) name: Cow<'i, [u8]>,
    /// The depth of the element that declared it (the root element is 1).
    depth: usize,
}

pub(super) struct Reader<'i, 'o> {
    inner: quick_xml::Reader<&'i [u8]>,
    /// The whole message: fragments are copied out of it.
    input: &'i [u8],
    opts: ParseOptions<'o>,
    alias: Option<usize>,
    /// The namespace declarations in scope, innermost last, in canonical spelling. A message
    /// seldom declares more than four, so they usually live on the stack.
    pub(super) bindings: SmallVec<[Binding<'i>; 4]>,
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
pub(super) const XML_NS: &[u8] = b"http://www.w3.org/XML/1998/namespace";

impl<'i, 'o> Reader<'i, 'o> {
    pub(super) fn new(text: &'i str, opts: ParseOptions<'o>) -> Self {
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
    pub(super) fn next(&mut self) -> Result<(Option<Cow<'static, str>>, Event<'i>), EnvelopeError> {
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
    pub(super) fn next_event(&mut self) -> Result<Event<'i>, EnvelopeError> {
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
    pub(super) fn push_frame(&mut self, start: &BytesStart<'_>) -> Result<(), EnvelopeError> {
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
    pub(super) fn check_unique(&self, start: &BytesStart<'_>) -> Result<(), EnvelopeError> {
        for attr in start.attributes().with_checks(true) {
            attr.map_err(|e| self.attribute_error(e))?;
        }
        Ok(())
    }

    pub(super) fn attribute_error(
        &self,
        error: quick_xml::events::attributes::AttrError,
    ) -> EnvelopeError {
        EnvelopeError::Xml {
            position: self.inner.buffer_position(),
            source: error.into(),
        }
    }

    pub(super) fn pop_frame(&mut self) {
        self.bindings
            .truncate(self.bindings.len() - self.own_bindings());
        self.depth = self.depth.saturating_sub(1);
    }

    /// How many of the last `bindings` the innermost open element declared.
    pub(super) fn own_bindings(&self) -> usize {
        let depth = self.depth;
        self.bindings
            .iter()
            .rev()
            .take_while(|b| b.depth >= depth)
            .count()
    }

    /// The namespace name bound to `prefix` (`None`: the default namespace) in the current
    /// scope; `None` when an unprefixed name has no namespace.
    pub(super) fn resolve_prefix(
        &self,
        prefix: Option<&[u8]>,
    ) -> Result<Option<&[u8]>, EnvelopeError> {
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
    pub(super) fn element_namespace(
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
    pub(super) fn keep(&self, part: &[u8]) -> Cow<'i, [u8]> {
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
    pub(super) fn position(&self) -> usize {
        usize::try_from(self.inner.buffer_position()).unwrap_or(usize::MAX)
    }

    pub(super) fn canonical_bytes<'v>(
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
    pub(super) fn scope(&self) -> (&[Binding<'i>], &[Binding<'i>]) {
        self.bindings
            .split_at(self.bindings.len() - self.own_bindings())
    }
}

/// A name or namespace name read from the message as a `String`. The message is UTF-8 and
/// names end at ASCII delimiters, so the lossy conversion never replaces anything; it is only
/// the slower path.
pub(super) fn utf8_string(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Whether an XML declaration declares UTF-8 or no encoding. Its first `encoding` is read like
/// [`BytesDecl::encoding`] does (none when the pseudo-attributes before it are malformed),
/// without that method's heap list of the keys seen.
pub(super) fn declares_utf8(decl: &BytesDecl<'_>) -> bool {
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

pub(super) fn is_predefined_entity(name: &[u8]) -> bool {
    matches!(name, b"amp" | b"lt" | b"gt" | b"apos" | b"quot")
}

pub(super) fn qname_display(ns: Option<&str>, local: &[u8]) -> String {
    let local = String::from_utf8_lossy(local);
    match ns {
        Some(ns) => format!("{{{ns}}}{local}"),
        None => local.into_owned(),
    }
}

pub(super) fn is_blank(text: &BytesText<'_>) -> bool {
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

pub(super) fn read_header_blocks(
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

pub(super) fn must_understand(r: &Reader<'_, '_>, start: &BytesStart<'_>, env_ns: &str) -> bool {
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

pub(super) fn read_body(r: &mut Reader<'_, '_>) -> Result<Option<BodyElement>, EnvelopeError> {
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
pub(super) struct Copied {
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
pub(super) fn copy_element<'i>(
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
pub(super) fn checked_start<'a>(
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

pub(super) fn xml_io_error(e: std::io::Error) -> EnvelopeError {
    EnvelopeError::Xml {
        position: 0,
        source: quick_xml::Error::Io(e.into()),
    }
}

/// Copies all attributes of `from` onto `to`, namespace declarations in
/// canonical spelling.
pub(super) fn copy_attributes(
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
