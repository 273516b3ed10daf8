//! The one place where errors become SOAP faults, in Exchange's style.
//!
//! Malformed requests get `a:ErrorInvalidRequest` (`a` = the types
//! namespace) with `ResponseCode` and `Message` in the errors namespace;
//! application errors get `a:<ExceptionName>` (`a` = the errors namespace)
//! with `ExceptionType` in the messages namespace (UM-SPEC.md, "Faults").
//! Internal detail goes to the log, never into a fault, and never a PIN.

use umws_soap::fault::DetailEntry;
use umws_soap::server::{FaultStyle, RequestProblem};
use umws_soap::{FaultCode, SoapFault};

use crate::generated::namespaces;
use crate::mail::MailError;
use crate::store::voicemail::{EntryIdError, VoiceMessageLookupError};
use crate::store::{ResetPinError, StoreError};
use crate::telephony::dialplan::DialError;
use crate::telephony::{PlaceError, TelephonyError};

/// The errors namespace of Exchange faults.
pub const ERRORS_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

/// The `faultstring` of an invalid request.
pub const INVALID_REQUEST_TEXT: &str = "The request is invalid.";

/// Why a UM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UmError {
    /// The caller's mailbox is not enabled for Unified Messaging.
    #[error("the caller is not enabled for Unified Messaging")]
    NotUmEnabled,
    /// The authenticated caller has no mailbox (any more).
    #[error("the caller has no mailbox")]
    InvalidPrincipal,
    /// An entry id or folder id is not valid base64 of an id.
    #[error("the object identifier is not valid")]
    InvalidObjectId,
    /// A call id is not valid.
    #[error("the call identifier is not valid")]
    InvalidCallId,
    /// A dial string is not a telephone number.
    #[error("the dial string is not a valid telephone number")]
    InvalidPhoneNumber,
    /// A call operation was asked for, but this server has no telephony
    /// backend to place calls.
    #[error("{operation} needs a telephony backend, and none is configured")]
    NoCallBackend {
        /// The operation.
        operation: &'static str,
    },
    /// The dial string cannot be called (the dial plan says why).
    #[error("the dial string cannot be called")]
    Dial(#[from] DialError),
    /// The call could not be placed (limits, shutdown, SIP agent).
    #[error("the call could not be placed")]
    Place(#[from] PlaceError),
    /// ResetPIN failed; the old PIN is still valid.
    #[error("the PIN could not be reset")]
    ResetPin(#[source] ResetPinError<MailError>),
    /// The mailbox store failed.
    #[error("the mailbox store failed")]
    Store(#[from] StoreError),
    /// A blocking task failed.
    #[error("a worker task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl UmError {
    /// The Exchange exception name and the client-facing message of an
    /// application error; `None` for internal failures.
    fn exception(&self) -> Option<(&'static str, String)> {
        Some(match self {
            Self::NotUmEnabled | Self::ResetPin(ResetPinError::NotUmEnabled) => (
                "UserNotUmEnabledException",
                "The user isn't enabled for Unified Messaging.".into(),
            ),
            Self::InvalidPrincipal => (
                "InvalidPrincipalException",
                "The caller's mailbox could not be found.".into(),
            ),
            Self::InvalidObjectId => (
                "InvalidObjectIdException",
                "The object identifier isn't valid.".into(),
            ),
            Self::InvalidCallId => ("InvalidCallIdException", "The call identifier isn't valid.".into()),
            Self::InvalidPhoneNumber => (
                "InvalidPhoneNumberException",
                "The dial string isn't a valid telephone number.".into(),
            ),
            Self::NoCallBackend { operation } => (
                "TransportException",
                format!("{operation} is not available: this server has no telephony backend to place calls."),
            ),
            Self::Dial(e @ DialError::NotANumber(_)) => {
                ("InvalidPhoneNumberException", sentence(e))
            }
            Self::Dial(e @ (DialError::InvalidSipUri(_) | DialError::SipUrisNotAllowed)) => {
                ("InvalidSipUriException", sentence(e))
            }
            Self::Dial(e @ DialError::NoTrunk) => ("TransportException", sentence(e)),
            Self::Dial(e @ DialError::Refused(_)) => ("DialingRulesException", sentence(e)),
            Self::Place(PlaceError::Agent(TelephonyError::InvalidTarget(_))) => (
                "InvalidSipUriException",
                "The SIP URI cannot be called.".into(),
            ),
            Self::Place(PlaceError::Agent(_)) => (
                "TransportException",
                "The call could not be placed.".into(),
            ),
            Self::Place(e) => ("TransportException", sentence(e)),
            Self::ResetPin(ResetPinError::TooManyResets { limit, retry_after }) => (
                "ResetPINException",
                format!(
                    "Too many PIN resets: a mailbox may reset its PIN at most {} times per {}. \
                     Try again in {} minutes; the current PIN is unchanged.",
                    limit.max,
                    window_text(limit.window),
                    retry_after.as_secs().div_ceil(60).max(1)
                ),
            ),
            Self::ResetPin(_) => (
                "ResetPINException",
                "The PIN could not be reset; the current PIN is unchanged.".into(),
            ),
            Self::Store(_) | Self::Task(_) => return None,
        })
    }
}

impl From<EntryIdError> for UmError {
    /// Every way an entry id fails to name one of the caller's voice messages is
    /// `InvalidObjectIdException` (the reason goes to the log only).
    fn from(error: EntryIdError) -> Self {
        tracing::debug!(reason = %error, "entry id refused");
        UmError::InvalidObjectId
    }
}

impl From<VoiceMessageLookupError> for UmError {
    fn from(error: VoiceMessageLookupError) -> Self {
        match error {
            VoiceMessageLookupError::EntryId(e) => e.into(),
            VoiceMessageLookupError::Store(e) => UmError::Store(e),
        }
    }
}

impl From<UmError> for SoapFault {
    fn from(error: UmError) -> Self {
        match error.exception() {
            Some((name, message)) => {
                // Application errors are expected; the chain goes to the
                // log for operators (no secret is part of any error).
                tracing::info!(exception = name, error = %ErrorChain(&error), "operation failed");
                application_fault(name, message)
            }
            None => {
                tracing::error!(error = %ErrorChain(&error), "internal error");
                SoapFault::server("An internal server error occurred.").with_lang("en-US")
            }
        }
    }
}

/// An error's message as a sentence: capitalised, with a full stop.
fn sentence(error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => text,
    }
}

/// A rate-limit window in words: "hour", "30 minutes", ...
fn window_text(window: std::time::Duration) -> String {
    match window.as_secs() {
        3600 => "hour".into(),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{} minutes", s.div_ceil(60)),
    }
}

/// An application fault `a:<name>` in Exchange's style.
pub fn application_fault(name: &str, message: impl Into<String>) -> SoapFault {
    SoapFault::new(FaultCode::qualified(ERRORS_NS, name), message)
        .with_lang("en-US")
        .with_detail(DetailEntry::new(
            namespaces::MESSAGES,
            "ExceptionType",
            name,
        ))
}

/// The `a:ErrorInvalidRequest` fault.
pub fn invalid_request_fault() -> SoapFault {
    SoapFault::new(
        FaultCode::qualified(namespaces::TYPES, "ErrorInvalidRequest"),
        INVALID_REQUEST_TEXT,
    )
    .with_lang("en-US")
    .with_detail(DetailEntry::new(
        ERRORS_NS,
        "ResponseCode",
        "ErrorInvalidRequest",
    ))
    .with_detail(DetailEntry::new(ERRORS_NS, "Message", INVALID_REQUEST_TEXT))
}

/// Exchange's answer to requests it cannot read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExchangeFaults;

impl FaultStyle for ExchangeFaults {
    fn invalid_request(&self, problem: &RequestProblem<'_>) -> SoapFault {
        tracing::info!(problem = %problem, "invalid request");
        invalid_request_fault()
    }
}

/// Displays an error with its `source` chain.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
