//! The dial plan: what a PlayOnPhone dial string becomes, the SIP URI to call.
//!
//! A dial string is either a `sip:` URI or a telephone number.
//!
//! * A `sip:` URI is dialled as it is when the plan allows them (`allow_sip_uris`, on by
//!   default), after a syntax check (RFC 3261 section 25.1, restricted to what the agent can
//!   call: no password, no headers, UDP only).
//! * A telephone number is digits with the usual separators (`+1 (425) 555-0100`); it needs a
//!   route to a trunk (a SIP domain or an outbound proxy): without one the answer is
//!   [`DialError::NoTrunk`]. Its digits are then classified:
//!   - exactly `extension_length` digits: an extension, dialled as it is;
//!   - `+` and digits: an E.164 number;
//!   - after an optional `outside_line_code`, the `international_prefix` and digits: the
//!     E.164 number `+digits`; the `national_prefix` and digits: `+<country_code>digits`;
//!   - anything else is refused ([`DialError::Refused`]).
//!
//!   When `allowed_numbers` is not empty, the number (the extension's digits, or the E.164
//!   form with its `+`) must match one of its patterns: digits, `x` for any one digit, and a
//!   trailing `*` for any rest (`+1425*`, `4xxx`). The number sent is the extension, or for
//!   other numbers the E.164 form; with an `outside_line_code` (a PBX behind the trunk) it is
//!   that code followed by the number as dialled from the plan's country (the national prefix
//!   and the national number, else the international prefix and the E.164 digits). The URI
//!   is `sip:<number>@<route>`.
//!
//! Every error says what is wrong in words a user can act on; nothing in them is internal.

use std::fmt;

/// The longest dial string accepted, in characters.
pub const MAX_DIAL_STRING: usize = 256;
/// The most digits of a telephone number.
pub const MAX_DIGITS: usize = 32;
/// The digits of an E.164 number (without the `+`): at least / at most.
pub const E164_DIGITS: (usize, usize) = (7, 15);

/// Why a dial string cannot be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// Neither a `sip:` URI nor a telephone number (`InvalidPhoneNumberException`).
    #[error("the dial string is not a telephone number: {0}")]
    NotANumber(&'static str),
    /// A `sip:` URI that is not valid or not callable (`InvalidSipUriException`).
    #[error("the SIP URI is not valid: {0}")]
    InvalidSipUri(&'static str),
    /// The plan does not allow `sip:` URIs (`InvalidSipUriException`).
    #[error("this server's dial plan does not allow dialling sip: URIs")]
    SipUrisNotAllowed,
    /// A telephone number, but no trunk to send it to (`TransportException`).
    #[error(
        "telephone numbers cannot be dialled: no outbound proxy or SIP domain is configured \
         (dial a sip: URI instead)"
    )]
    NoTrunk,
    /// The plan refuses the number (`DialingRulesException`).
    #[error("the dial plan refuses the number: {0}")]
    Refused(Refusal),
}

/// Why the plan refuses a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No rule of the plan classifies it (not an extension, no known prefix).
    NoRule,
    /// It has `*` or `#`, which only the keypad of a connected call can send.
    KeypadSymbols,
    /// A national number, but the plan has no `country_code`.
    NoCountryCode,
    /// It matches none of the `allowed_numbers`.
    NotAllowed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NoRule => {
                "it is neither an extension nor a number with a known national or \
                 international prefix"
            }
            Refusal::KeypadSymbols => "* and # cannot be dialled",
            Refusal::NoCountryCode => "national numbers need the plan's country code",
            Refusal::NotAllowed => "it is not one of the numbers this server may call",
        })
    }
}

/// A pattern of `allowed_numbers`: an optional `+`, digits and `x` (any one digit), and an
/// optional trailing `*` (any rest, also none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPattern {
    text: String,
}

/// Why a number pattern is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{pattern:?} is not a number pattern (an optional +, digits and x, an optional * at the end)"
)]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
}

impl NumberPattern {
    /// Parses a pattern.
    pub fn parse(text: &str) -> Result<NumberPattern, PatternError> {
        let err = || PatternError {
            pattern: text.to_owned(),
        };
        let body = text.strip_prefix('+').unwrap_or(text);
        let body = body.strip_suffix('*').unwrap_or(body);
        let ok = !text.is_empty()
            && text != "+"
            && text.len() <= MAX_DIGITS + 2
            && body
                .chars()
                .all(|c| c.is_ascii_digit() || c == 'x' || c == 'X');
        if ok {
            Ok(NumberPattern {
                text: text.to_ascii_lowercase(),
            })
        } else {
            Err(err())
        }
    }

    /// Whether `number` (digits with an optional leading `+`) matches.
    pub fn matches(&self, number: &str) -> bool {
        let (body, open) = match self.text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (self.text.as_str(), false),
        };
        let (p, n) = (body.as_bytes(), number.as_bytes());
        if n.len() < p.len() || (!open && n.len() != p.len()) {
            return false;
        }
        p.iter()
            .zip(n)
            .all(|(&p, &n)| p == n || (p == b'x' && n.is_ascii_digit()))
    }

    /// The pattern as written (lower case).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The dial plan of the server (`[telephony.dial_plan]`), with the route to its trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPlan {
    /// The digits of an extension; `None`: no extensions.
    pub extension_length: Option<u8>,
    /// The country code of national numbers (digits, no `+`).
    pub country_code: Option<String>,
    /// The prefix of national numbers (e.g. `0`).
    pub national_prefix: Option<String>,
    /// The prefix of international numbers (e.g. `00`, `011`).
    pub international_prefix: Option<String>,
    /// The code a PBX needs to reach an outside line (e.g. `9`); see the module docs.
    pub outside_line_code: Option<String>,
    /// The numbers that may be called; empty: all.
    pub allowed_numbers: Vec<NumberPattern>,
    /// Whether `sip:` URIs may be dialled.
    pub allow_sip_uris: bool,
    /// The host part of the URIs of telephone numbers (the SIP domain, or the outbound proxy's
    /// `host[:port]`); `None`: telephone numbers cannot be dialled.
    pub route: Option<String>,
}

impl Default for DialPlan {
    /// The embedded default: `sip:` URIs are dialled directly, there is no trunk.
    fn default() -> DialPlan {
        DialPlan {
            extension_length: None,
            country_code: None,
            national_prefix: None,
            international_prefix: None,
            outside_line_code: None,
            allowed_numbers: Vec::new(),
            allow_sip_uris: true,
            route: None,
        }
    }
}

/// What a dial string is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialed {
    /// A `sip:` URI, dialled as it is.
    SipUri(String),
    /// An extension of the plan.
    Extension {
        /// Its digits.
        number: String,
        /// The URI to call.
        uri: String,
    },
    /// A number outside: national or international.
    External {
        /// The E.164 form, `+` and digits.
        e164: String,
        /// The URI to call.
        uri: String,
    },
}

impl Dialed {
    /// The SIP URI to call.
    pub fn uri(&self) -> &str {
        match self {
            Dialed::SipUri(uri) => uri,
            Dialed::Extension { uri, .. } | Dialed::External { uri, .. } => uri,
        }
    }
}

impl DialPlan {
    /// What `dial` (a PlayOnPhone dial string, not empty) is and the URI to call.
    pub fn resolve(&self, dial: &str) -> Result<Dialed, DialError> {
        let dial = dial.trim();
        if dial.is_empty() {
            return Err(DialError::NotANumber("it is empty"));
        }
        if dial.chars().count() > MAX_DIAL_STRING {
            return Err(DialError::NotANumber("it is longer than 256 characters"));
        }
        if has_sip_scheme(dial) {
            if !self.allow_sip_uris {
                return Err(DialError::SipUrisNotAllowed);
            }
            check_sip_uri(dial)?;
            return Ok(Dialed::SipUri(dial.to_owned()));
        }
        let number = PhoneNumber::parse(dial)?;
        let Some(route) = &self.route else {
            return Err(DialError::NoTrunk);
        };
        let dialed = self.classify(&number, route)?;
        let canonical = match &dialed {
            Dialed::Extension { number, .. } => number,
            Dialed::External { e164, .. } => e164,
            Dialed::SipUri(uri) => uri,
        };
        if !self.allowed_numbers.is_empty()
            && !self.allowed_numbers.iter().any(|p| p.matches(canonical))
        {
            return Err(DialError::Refused(Refusal::NotAllowed));
        }
        Ok(dialed)
    }

    /// Checks that `dial` could be dialled by some plan: a syntactically valid `sip:` URI or
    /// telephone number (what SetPlayOnPhoneDialString stores).
    pub fn check_syntax(dial: &str) -> Result<(), DialError> {
        let dial = dial.trim();
        if dial.chars().count() > MAX_DIAL_STRING {
            return Err(DialError::NotANumber("it is longer than 256 characters"));
        }
        if has_sip_scheme(dial) {
            check_sip_uri(dial)
        } else {
            PhoneNumber::parse(dial).map(drop)
        }
    }

    fn classify(&self, number: &PhoneNumber, route: &str) -> Result<Dialed, DialError> {
        if number.keypad {
            return Err(DialError::Refused(Refusal::KeypadSymbols));
        }
        let digits = number.digits.as_str();
        if !number.plus && self.extension_length.map(usize::from) == Some(digits.len()) {
            return Ok(Dialed::Extension {
                number: digits.to_owned(),
                uri: format!("sip:{digits}@{route}"),
            });
        }
        let international = if number.plus {
            digits.to_owned()
        } else {
            let rest = match &self.outside_line_code {
                Some(code) if digits.len() > code.len() => {
                    digits.strip_prefix(code.as_str()).unwrap_or(digits)
                }
                _ => digits,
            };
            let after = |prefix: &Option<String>| {
                prefix
                    .as_deref()
                    .and_then(|p| rest.strip_prefix(p))
                    .filter(|r| !r.is_empty())
            };
            if let Some(international) = after(&self.international_prefix) {
                international.to_owned()
            } else if let Some(national) = after(&self.national_prefix) {
                let cc = self
                    .country_code
                    .as_deref()
                    .ok_or(DialError::Refused(Refusal::NoCountryCode))?;
                format!("{cc}{national}")
            } else {
                return Err(DialError::Refused(Refusal::NoRule));
            }
        };
        if !(E164_DIGITS.0..=E164_DIGITS.1).contains(&international.len()) {
            return Err(DialError::NotANumber(
                "an international number has 7 to 15 digits",
            ));
        }
        let e164 = format!("+{international}");
        let sent = match &self.outside_line_code {
            None => e164.clone(),
            Some(code) => {
                let national = self
                    .country_code
                    .as_deref()
                    .and_then(|cc| international.strip_prefix(cc));
                match national {
                    Some(national) => {
                        let prefix = self.national_prefix.as_deref().unwrap_or("");
                        format!("{code}{prefix}{national}")
                    }
                    None => match &self.international_prefix {
                        Some(prefix) => format!("{code}{prefix}{international}"),
                        None => format!("{code}{e164}"),
                    },
                }
            }
        };
        Ok(Dialed::External {
            e164,
            uri: format!("sip:{sent}@{route}"),
        })
    }
}

/// A telephone number as typed: its digits, without separators.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PhoneNumber {
    /// It began with `+`.
    plus: bool,
    /// The digits (and `*`/`#`).
    digits: String,
    /// It has `*` or `#`.
    keypad: bool,
}

impl PhoneNumber {
    fn parse(text: &str) -> Result<PhoneNumber, DialError> {
        let text = text.trim();
        let (plus, rest) = match text.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let mut digits = String::new();
        for c in rest.chars() {
            match c {
                '0'..='9' | '*' | '#' => digits.push(c),
                ' ' | '-' | '(' | ')' | '.' => {}
                '+' => return Err(DialError::NotANumber("+ may only begin the number")),
                _ => {
                    return Err(DialError::NotANumber(
                        "it may hold only digits, a leading +, * and #, and the separators \
                         space, - . ( )",
                    ))
                }
            }
        }
        if !digits.chars().any(|c| c.is_ascii_digit()) {
            return Err(DialError::NotANumber("it has no digits"));
        }
        if digits.len() > MAX_DIGITS {
            return Err(DialError::NotANumber("it has more than 32 digits"));
        }
        let keypad = digits.contains(['*', '#']);
        if plus && keypad {
            return Err(DialError::NotANumber(
                "an international number has digits only",
            ));
        }
        Ok(PhoneNumber {
            plus,
            digits,
            keypad,
        })
    }
}

fn has_sip_scheme(dial: &str) -> bool {
    dial.split_once(':').is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")
    })
}

/// Checks a `sip:` URI: `sip:[user@]host[:port][;params]`, with an RFC 3261 user part, a
/// host name, IPv4 address or bracketed IPv6 address, and no password, headers or transport
/// other than UDP.
pub fn check_sip_uri(uri: &str) -> Result<(), DialError> {
    let bad = DialError::InvalidSipUri;
    if uri.len() > MAX_DIAL_STRING {
        return Err(bad("it is longer than 256 characters"));
    }
    let (scheme, rest) = uri.split_once(':').ok_or(bad("it has no scheme"))?;
    if scheme.eq_ignore_ascii_case("sips") {
        return Err(bad("sips: (SIP over TLS) is not supported; use sip:"));
    }
    if !scheme.eq_ignore_ascii_case("sip") {
        return Err(bad("it does not begin with sip:"));
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains white space"));
    }
    if rest.contains('?') {
        return Err(bad("headers (?...) are not allowed"));
    }
    let (user, host_part) = match rest.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, rest),
    };
    if let Some(user) = user {
        check_user(user)?;
    }
    let (host_port, params) = match host_part.split_once(';') {
        Some((hp, params)) => (hp, Some(params)),
        None => (host_part, None),
    };
    check_host_port(host_port)?;
    if let Some(params) = params {
        for param in params.split(';') {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.is_empty()
                || !name.chars().all(is_param_char)
                || !value.chars().all(is_param_char)
            {
                return Err(bad("a URI parameter is malformed"));
            }
            if name.eq_ignore_ascii_case("transport") && !value.eq_ignore_ascii_case("udp") {
                return Err(bad("only transport=udp is supported"));
            }
        }
    }
    Ok(())
}

fn check_user(user: &str) -> Result<(), DialError> {
    let bad = DialError::InvalidSipUri;
    if user.is_empty() {
        return Err(bad("the user part before @ is empty"));
    }
    if user.contains(':') {
        return Err(bad("a password in the URI is not allowed"));
    }
    let bytes = user.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'%' {
            let escaped = bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
            if !escaped {
                return Err(bad(
                    "a % in the user part is not followed by two hex digits",
                ));
            }
            i += 3;
            continue;
        }
        // unreserved / user-unreserved (RFC 3261 section 25.1)
        if !(c.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&c)) {
            return Err(bad("the user part has a character that must be escaped"));
        }
        i += 1;
    }
    Ok(())
}

fn check_host_port(host_port: &str) -> Result<(), DialError> {
    let bad = DialError::InvalidSipUri;
    let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or(bad("an IPv6 address lacks its ]"))?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("the IPv6 address is not valid"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or(bad("junk after the IPv6 address"))?,
            ),
        };
        (None, port)
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(host_port), None),
        }
    };
    if let Some(host) = host {
        if !is_host_name(host) {
            return Err(bad("the host is not a host name or IP address"));
        }
    }
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.len() <= 5
            && port.chars().all(|c| c.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !ok {
            return Err(bad("the port is not a number from 1 to 65535"));
        }
    }
    Ok(())
}

/// A DNS host name or an IPv4 address.
pub fn is_host_name(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    // (a name of digits and dots only would be a malformed IPv4 address)
    labels_ok && !host.chars().all(|c| c.is_ascii_digit() || c == '.')
}

fn is_param_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()%[]/:&+$".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> DialPlan {
        DialPlan {
            route: Some("trunk.example.com".into()),
            ..DialPlan::default()
        }
    }

    fn uri(plan: &DialPlan, dial: &str) -> String {
        match plan.resolve(dial) {
            Ok(d) => d.uri().to_owned(),
            Err(e) => panic!("{dial:?}: {e}"),
        }
    }

    fn err(plan: &DialPlan, dial: &str) -> DialError {
        match plan.resolve(dial) {
            Ok(d) => panic!("{dial:?} was accepted as {d:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_embedded_default_dials_sip_uris_directly_and_has_no_trunk() {
        let d = DialPlan::default();
        assert_eq!(
            d.resolve(" sip:alice@127.0.0.1:5062 "),
            Ok(Dialed::SipUri("sip:alice@127.0.0.1:5062".into()))
        );
        for number in ["+1 425 555 0100", "4100", "0301234567"] {
            assert_eq!(err(&d, number), DialError::NoTrunk, "{number}");
        }
        assert!(DialError::NoTrunk.to_string().contains("no outbound proxy"));
        // not a number at all is said before the missing trunk
        assert!(matches!(err(&d, "call me"), DialError::NotANumber(_)));
    }

    #[test]
    fn sip_uris_are_checked() {
        let d = DialPlan::default();
        for good in [
            "sip:alice@example.com",
            "SIP:alice@example.com",
            "sip:127.0.0.1:5062",
            "sip:phone@127.0.0.1:5062",
            "sip:+14255550100@gw.example.com;user=phone",
            "sip:bob@[::1]:5070",
            "sip:bob@[2001:db8::1]",
            "sip:a%20b@example.com;transport=udp",
            "sip:o'neil.(x)@example.com.",
        ] {
            assert_eq!(d.resolve(good), Ok(Dialed::SipUri(good.into())), "{good}");
        }
        for bad in [
            "sip:",
            "sip:@example.com",
            "sip:alice:secret@example.com",
            "sip:alice@example.com?subject=x",
            "sip:alice@exa mple.com",
            "sip:alice@-example.com",
            "sip:alice@example..com",
            "sip:alice@example.com:0",
            "sip:alice@example.com:65536",
            "sip:alice@example.com:5x",
            "sip:alice@[::1",
            "sip:alice@[nope]",
            "sip:alice@999.1.1.1",
            "sip:al<ice@example.com",
            "sip:a%2@example.com",
            "sip:alice@example.com;transport=tcp",
            "sip:alice@example.com;=x",
            "sips:alice@example.com",
        ] {
            assert!(
                matches!(d.resolve(bad), Err(DialError::InvalidSipUri(_))),
                "{bad}: {:?}",
                d.resolve(bad)
            );
        }
        let long = format!("sip:{}@example.com", "a".repeat(300));
        assert!(d.resolve(&long).is_err());
    }

    #[test]
    fn sip_uris_can_be_forbidden() {
        let d = DialPlan {
            allow_sip_uris: false,
            ..plan()
        };
        assert_eq!(
            err(&d, "sip:alice@example.com"),
            DialError::SipUrisNotAllowed
        );
        assert_eq!(
            err(&d, "sips:alice@example.com"),
            DialError::SipUrisNotAllowed
        );
    }

    #[test]
    fn what_is_not_a_number_is_said() {
        let d = plan();
        for bad in [
            "",
            "   ",
            "call me",
            "tel:+14255550100",
            "1+2",
            "()- .",
            "+1 425 555 0100#",
            "12345678901234567890123456789012345",
        ] {
            assert!(
                matches!(d.resolve(bad), Err(DialError::NotANumber(_))),
                "{bad}: {:?}",
                d.resolve(bad)
            );
        }
    }

    #[test]
    fn extensions_have_the_plan_length() {
        let d = DialPlan {
            extension_length: Some(4),
            ..plan()
        };
        assert_eq!(
            d.resolve("41-00"),
            Ok(Dialed::Extension {
                number: "4100".into(),
                uri: "sip:4100@trunk.example.com".into()
            })
        );
        assert_eq!(err(&d, "410"), DialError::Refused(Refusal::NoRule));
        assert_eq!(err(&d, "41000"), DialError::Refused(Refusal::NoRule));
        assert_eq!(err(&d, "*4100"), DialError::Refused(Refusal::KeypadSymbols));
        // without an extension length, no extensions
        assert_eq!(err(&plan(), "4100"), DialError::Refused(Refusal::NoRule));
    }

    #[test]
    fn e164_numbers_are_dialled_in_e164() {
        let d = plan();
        assert_eq!(
            d.resolve("+1 (425) 555-0100"),
            Ok(Dialed::External {
                e164: "+14255550100".into(),
                uri: "sip:+14255550100@trunk.example.com".into()
            })
        );
        assert!(matches!(d.resolve("+12345"), Err(DialError::NotANumber(_))));
        assert!(matches!(
            d.resolve("+1234567890123456"),
            Err(DialError::NotANumber(_))
        ));
    }

    fn german() -> DialPlan {
        DialPlan {
            extension_length: Some(4),
            country_code: Some("49".into()),
            national_prefix: Some("0".into()),
            international_prefix: Some("00".into()),
            ..plan()
        }
    }

    #[test]
    fn national_and_international_prefixes() {
        let d = german();
        assert_eq!(uri(&d, "030 1234567"), "sip:+49301234567@trunk.example.com");
        assert_eq!(
            uri(&d, "0044 20 7946 0000"),
            "sip:+442079460000@trunk.example.com"
        );
        assert_eq!(uri(&d, "4711"), "sip:4711@trunk.example.com");
        // no prefix and not an extension
        assert_eq!(err(&d, "301234567"), DialError::Refused(Refusal::NoRule));
        // a prefix with too few digits is no number
        assert!(matches!(err(&d, "00"), DialError::NotANumber(_)));
        assert!(matches!(err(&d, "00123"), DialError::NotANumber(_)));
        // a national prefix needs the country code
        let d = DialPlan {
            country_code: None,
            ..german()
        };
        assert_eq!(
            err(&d, "030 1234567"),
            DialError::Refused(Refusal::NoCountryCode)
        );
        assert_eq!(
            uri(&d, "0044 20 7946 0000"),
            "sip:+442079460000@trunk.example.com"
        );
    }

    #[test]
    fn an_outside_line_code_is_taken_off_and_put_before_numbers_sent_to_the_pbx() {
        let d = DialPlan {
            outside_line_code: Some("9".into()),
            ..german()
        };
        // typed with or without the code, sent with it, in the national form at home ...
        assert_eq!(
            uri(&d, "9 030 1234567"),
            "sip:90301234567@trunk.example.com"
        );
        assert_eq!(uri(&d, "030 1234567"), "sip:90301234567@trunk.example.com");
        assert_eq!(
            uri(&d, "+49 30 1234567"),
            "sip:90301234567@trunk.example.com"
        );
        // ... and the international form abroad
        assert_eq!(
            uri(&d, "+44 20 7946 0000"),
            "sip:900442079460000@trunk.example.com"
        );
        assert_eq!(
            uri(&d, "9 0044 20 7946 0000"),
            "sip:900442079460000@trunk.example.com"
        );
        // extensions are dialled without it (and 9xxx is an extension)
        assert_eq!(uri(&d, "9123"), "sip:9123@trunk.example.com");
        // without an international prefix, abroad is +
        let d = DialPlan {
            outside_line_code: Some("9".into()),
            international_prefix: None,
            ..german()
        };
        assert_eq!(
            uri(&d, "+44 20 7946 0000"),
            "sip:9+442079460000@trunk.example.com"
        );
        match d.resolve("+44 20 7946 0000") {
            Ok(Dialed::External { e164, .. }) => assert_eq!(e164, "+442079460000"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn allowed_numbers_limit_what_may_be_called() {
        let d = DialPlan {
            allowed_numbers: ["+49*", "4xxx"]
                .iter()
                .map(|p| NumberPattern::parse(p).unwrap())
                .collect(),
            ..german()
        };
        assert_eq!(uri(&d, "030 1234567"), "sip:+49301234567@trunk.example.com");
        assert_eq!(uri(&d, "4711"), "sip:4711@trunk.example.com");
        assert_eq!(err(&d, "5711"), DialError::Refused(Refusal::NotAllowed));
        assert_eq!(
            err(&d, "+44 20 7946 0000"),
            DialError::Refused(Refusal::NotAllowed)
        );
        // sip: URIs are governed by allow_sip_uris only
        assert!(d.resolve("sip:alice@example.com").is_ok());
        assert!(DialError::Refused(Refusal::NotAllowed)
            .to_string()
            .contains("not one of the numbers"));
    }

    #[test]
    fn number_patterns() {
        let p = |s| NumberPattern::parse(s).unwrap();
        assert!(p("4xxx").matches("4100"));
        assert!(p("4XXX").matches("4100"));
        assert!(!p("4xxx").matches("410"));
        assert!(!p("4xxx").matches("41000"));
        assert!(!p("4xxx").matches("5100"));
        assert!(p("+1425*").matches("+14255550100"));
        assert!(p("+1425*").matches("+1425"));
        assert!(!p("+1425*").matches("+1426"));
        assert!(!p("+1425*").matches("1425"));
        assert!(p("*").matches("+44123"));
        assert!(!p("x").matches("+"));
        for bad in ["", "+", "4a", "4*1", "++1", "1 2", &"1".repeat(40)] {
            assert!(NumberPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_syntax_check_of_stored_dial_strings() {
        assert!(DialPlan::check_syntax("+1 (425) 555-0100").is_ok());
        assert!(DialPlan::check_syntax("1234#").is_ok());
        assert!(DialPlan::check_syntax("sip:phone@127.0.0.1:5062").is_ok());
        assert!(matches!(
            DialPlan::check_syntax("sip:@x"),
            Err(DialError::InvalidSipUri(_))
        ));
        assert!(matches!(
            DialPlan::check_syntax("call me"),
            Err(DialError::NotANumber(_))
        ));
    }

    #[test]
    fn host_names() {
        for good in ["example.com", "a", "127.0.0.1", "x-1.example.com."] {
            assert!(is_host_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a..b", "1.2.3", "a_b.com", &"a".repeat(64)] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
