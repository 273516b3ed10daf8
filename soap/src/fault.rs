//! SOAP faults: the error half of every operation.

use std::fmt;

/// The `faultcode` of a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultCode {
    /// One of the codes SOAP itself defines, in the envelope namespace.
    Soap(StandardCode),
    /// An application code: a qualified name in an application namespace,
    /// written with the prefix `a` (as Exchange does).
    Qualified {
        /// The namespace name the prefix is bound to.
        namespace: String,
        /// The local part, e.g. `ErrorInvalidRequest`.
        local: String,
    },
}

/// The fault codes defined by SOAP 1.1 (section 4.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandardCode {
    /// The envelope is not in the SOAP 1.1 namespace.
    VersionMismatch,
    /// A header block marked `mustUnderstand` was not understood.
    MustUnderstand,
    /// The message was incorrectly formed or lacked information.
    Client,
    /// The message could not be processed for reasons not directly
    /// attributable to its contents.
    Server,
}

impl StandardCode {
    /// The local name of the code, e.g. `Client`.
    pub fn local_name(self) -> &'static str {
        match self {
            Self::VersionMismatch => "VersionMismatch",
            Self::MustUnderstand => "MustUnderstand",
            Self::Client => "Client",
            Self::Server => "Server",
        }
    }

    fn from_local_name(local: &str) -> Option<Self> {
        Some(match local {
            "VersionMismatch" => Self::VersionMismatch,
            "MustUnderstand" => Self::MustUnderstand,
            "Client" => Self::Client,
            "Server" => Self::Server,
            _ => return None,
        })
    }
}

impl FaultCode {
    /// An application code `a:{local}` with `a` bound to `namespace`.
    pub fn qualified(namespace: impl Into<String>, local: impl Into<String>) -> Self {
        Self::Qualified {
            namespace: namespace.into(),
            local: local.into(),
        }
    }

    /// The namespace name of the code, given the envelope namespace for
    /// standard codes.
    pub fn namespace<'a>(&'a self, envelope_ns: &'a str) -> &'a str {
        match self {
            Self::Soap(_) => envelope_ns,
            Self::Qualified { namespace, .. } => namespace,
        }
    }

    /// The local part of the code.
    pub fn local_name(&self) -> &str {
        match self {
            Self::Soap(code) => code.local_name(),
            Self::Qualified { local, .. } => local,
        }
    }

    pub(crate) fn from_resolved(namespace: Option<&str>, local: &str, envelope_ns: &str) -> Self {
        match namespace {
            Some(ns) if ns == envelope_ns => StandardCode::from_local_name(local)
                .map(Self::Soap)
                .unwrap_or_else(|| Self::qualified(ns, local)),
            Some(ns) => Self::qualified(ns, local),
            None => Self::qualified("", local),
        }
    }
}

impl fmt::Display for FaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Soap(code) => write!(f, "soap:{}", code.local_name()),
            Self::Qualified { namespace, local } => write!(f, "{{{namespace}}}{local}"),
        }
    }
}

/// One element of a fault's `detail`: a simple element with text content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailEntry {
    /// Its namespace name (`None` for an unqualified element).
    pub namespace: Option<String>,
    /// Its local name.
    pub local_name: String,
    /// Its text content.
    pub text: String,
}

impl DetailEntry {
    /// A detail element `{namespace}local_name` holding `text`.
    pub fn new(
        namespace: impl Into<String>,
        local_name: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Self {
            namespace: Some(namespace.into()),
            local_name: local_name.into(),
            text: text.into(),
        }
    }
}

/// A SOAP 1.1 fault (`soap:Fault`), as sent or received.
///
/// A fault says what went wrong in terms a client may see. It never carries
/// internal detail (paths, SQL, stack traces) and never a secret: build it
/// from a typed error in one place and log the internals there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapFault {
    /// The `faultcode`.
    pub code: FaultCode,
    /// The `faultstring`: a human-readable explanation.
    pub string: String,
    /// The `xml:lang` of the `faultstring`, e.g. `en-US`.
    pub lang: Option<String>,
    /// The `faultactor`, when the fault names one.
    pub actor: Option<String>,
    /// The children of `detail`; empty when the fault has no `detail`.
    pub detail: Vec<DetailEntry>,
}

impl SoapFault {
    /// A fault with this code and string and nothing else.
    pub fn new(code: FaultCode, string: impl Into<String>) -> Self {
        Self {
            code,
            string: string.into(),
            lang: None,
            actor: None,
            detail: Vec::new(),
        }
    }

    /// A `soap:Client` fault: the request was at fault.
    pub fn client(string: impl Into<String>) -> Self {
        Self::new(FaultCode::Soap(StandardCode::Client), string)
    }

    /// A `soap:Server` fault: the server could not process a valid request.
    pub fn server(string: impl Into<String>) -> Self {
        Self::new(FaultCode::Soap(StandardCode::Server), string)
    }

    /// A `soap:VersionMismatch` fault.
    pub fn version_mismatch() -> Self {
        Self::new(
            FaultCode::Soap(StandardCode::VersionMismatch),
            "The SOAP envelope namespace is not supported; use SOAP 1.1.",
        )
    }

    /// A `soap:MustUnderstand` fault for a header block.
    pub fn must_understand(namespace: &str, local_name: &str) -> Self {
        Self::new(
            FaultCode::Soap(StandardCode::MustUnderstand),
            format!("The header {{{namespace}}}{local_name} is marked mustUnderstand but is not understood."),
        )
    }

    /// Sets the `xml:lang` of the `faultstring`.
    pub fn with_lang(mut self, lang: impl Into<String>) -> Self {
        self.lang = Some(lang.into());
        self
    }

    /// Appends a `detail` element.
    pub fn with_detail(mut self, entry: DetailEntry) -> Self {
        self.detail.push(entry);
        self
    }

    /// The text of the first `detail` element with this local name.
    pub fn detail_text(&self, local_name: &str) -> Option<&str> {
        self.detail
            .iter()
            .find(|d| d.local_name == local_name)
            .map(|d| d.text.as_str())
    }
}

impl fmt::Display for SoapFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SOAP fault {}: {}", self.code, self.string)
    }
}

impl std::error::Error for SoapFault {}
