//! Telephony: outbound calls over SIP/UDP with RTP media, the side of the call operations
//! (PlayOnPhone, PlayOnPhoneGreeting, GetCallInfo, Disconnect) that talks to phones.
//!
//! A [`SipAgent`] owns one SIP/UDP endpoint, set up by an [`AgentConfig`]: the listen
//! address, an optional outbound proxy (INVITEs and their CANCELs are sent there with a
//! preloaded `Route`; the Request-URI stays the dialled target), optional digest
//! [`Credentials`] (a 401 or 407 is answered once; a second challenge ends the call with
//! [`EventCause::Other`]), an RTP port range, the no-RTP timeout and the maximum call length.
//! [`SipAgent::place_call`] sends an INVITE whose SDP offers PCMU (0), PCMA (8) and
//! telephone-event (101), and returns a [`Call`] at once; a task then drives the call:
//!
//! * provisional answers (100/180/183) keep it [`CallState::Connecting`];
//! * a 2xx is ACKed, the codec, the phone's RTP address and its telephone-event payload type
//!   are taken from the answer's SDP ([`media`]), the call is [`CallState::Connected`] and
//!   its [`CallMedia`] runs: [`CallMedia::Play`] sends the audio as RTP in 20 ms packets,
//!   [`CallMedia::Greeting`] runs the greeting menu ([`GreetingSession`]: play, record from
//!   the keypad, save through a callback); at the end we send BYE;
//! * while connected, the phone's RTP is received (only from the address its SDP gave),
//!   G.711 is decoded and RFC 4733 telephone-events become digits ([`dtmf`]); without RTP
//!   from the phone for the no-RTP timeout, or at the maximum call length, we send BYE
//!   (cause [`EventCause::None`]);
//! * a final failure, a ring timeout (we CANCEL), a BYE from the phone (answered 200) or our own
//!   [`Call::hang_up`] (CANCEL while ringing, BYE once connected) end it in
//!   [`CallState::Disconnected`] with the [`EventCause`] of the table of GetCallInfo's states
//!   ([`EventCause::from_status`]).
//!
//! The SIP protocol work (transactions, retransmissions, ACK, CANCEL, digest authentication, a
//! 2xx that crosses our CANCEL being ACKed and BYEd, in-dialog BYE) is done by `rsipstack`,
//! pinned to an exact version in `Cargo.toml` because its API changes between minor versions.
//! SDP answers are parsed with `sdp`, RTP packets are read and written with `rtp-types`, G.711
//! comes from `audio-codec-algorithms`. Hand-written here: the offer, the choice of the
//! answered codec, the RTP pacing, the RFC 4733 receiver, the menus and the mapping to the UM
//! call states. The menus' spoken [`prompts`] are WAVs built into the binary.
//!
//! [`CallRegistry`] keeps the calls by id for GetCallInfo and Disconnect: only to the user who
//! placed them, and until a while after they ended.
//!
//! Nothing the peer sends (SIP, SDP, RTP, telephone-events) can panic this module: malformed
//! messages are dropped by the stack, an unusable SDP answer ends the call with
//! [`EventCause::Other`], RTP that does not parse or comes from elsewhere is ignored.

mod call;
mod calls;
pub mod dialplan;
pub mod dtmf;
mod greeting;
mod inbound;
pub mod media;
pub mod prompts;
mod registry;
mod session;

pub use call::{AgentConfig, Call, CallMedia, CallRequest, CallStatus, Credentials, SipAgent};
pub use calls::{Listening, PlaceError, SharedCalls, Telephony, CALL_INFO_KEEP};
pub use greeting::{
    GreetingSession, SaveError, SaveGreeting, DEFAULT_MAX_GREETING, SILENCE_ENDS_RECORDING,
};
pub use inbound::{BoxFuture, GreetingMenus, Inbound, InboundHandler, SessionLine};
pub use registry::{CallRegistry, UnknownCall};
pub use session::{JITTER_BUCKET, JITTER_BUCKETS};

use base64::Engine as _;

/// A telephony failure that prevents a call from being placed (a call that was placed and then
/// failed reports it through its [`CallStatus`] instead).
#[derive(Debug, thiserror::Error)]
pub enum TelephonyError {
    /// The SIP or RTP socket could not be opened.
    #[error("cannot open the {what} socket on {addr}: {source}")]
    Bind {
        /// `SIP` or `RTP`.
        what: &'static str,
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The SIP listen address is a wildcard (0.0.0.0 or ::): the agent puts its address into
    /// Contact headers and SDP, so it must be one the phone can reach.
    #[error("the SIP listen address {0} is a wildcard; give the address phones reach")]
    Unspecified(std::net::SocketAddr),
    /// The SIP stack refused to start or to build the request.
    #[error("SIP stack error: {0}")]
    Sip(Box<rsipstack::Error>),
    /// Every port of the configured RTP range is taken.
    #[error("no free RTP port in {}-{}", .0.start(), .0.end())]
    NoRtpPort(std::ops::RangeInclusive<u16>),
    /// The configured outbound proxy's host does not resolve.
    #[error("the outbound proxy {proxy} does not resolve to an address")]
    ProxyUnresolved {
        /// `host:port` as configured.
        proxy: String,
    },
    /// The dial target is not a SIP URI the stack accepts.
    #[error("not a usable SIP URI: {0}")]
    InvalidTarget(String),
}

impl From<rsipstack::Error> for TelephonyError {
    fn from(e: rsipstack::Error) -> TelephonyError {
        TelephonyError::Sip(Box::new(e))
    }
}

/// The state of a call, as GetCallInfo reports it (`CallState` in the UM schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// INVITE sent, no final answer yet.
    Connecting,
    /// Answered (2xx, ACK sent).
    Connected,
    /// Ended, for the reason in the [`EventCause`].
    Disconnected,
}

/// Why a call ended (`EventCause` in the UM schema); `None` while it runs and after a normal
/// hang-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventCause {
    /// Nothing to report: running, or hung up normally.
    None,
    /// 486 Busy Here or 600 Busy Everywhere.
    UserBusy,
    /// No answer before the ring timeout (we cancelled), or 408.
    NoAnswer,
    /// 404, 410, 480, 484 or 604.
    Unavailable,
    /// Any other failure: other final statuses, transport errors, timer B, unusable SDP.
    Other,
}

impl EventCause {
    /// The cause for a final non-2xx answer to our INVITE (GetCallInfo's table of causes).
    pub fn from_status(code: u16) -> EventCause {
        match code {
            486 | 600 => EventCause::UserBusy,
            408 => EventCause::NoAnswer,
            404 | 410 | 480 | 484 | 604 => EventCause::Unavailable,
            _ => EventCause::Other,
        }
    }
}

/// The two names of a new call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCallId {
    /// What the UM operations hand out: the base64 of UTF-8 `"<uuid>@<host>"`.
    pub id: String,
    /// `"<uuid>@<host>"` itself, the SIP Call-ID. Not the base64: its `=` padding is not a
    /// character RFC 3261 allows in a Call-ID, and token-strict peers refuse it.
    pub sip: String,
}

/// A new call's ids, for a call placed from `host`.
pub fn new_call_id(host: &str) -> NewCallId {
    let sip = format!("{}@{}", uuid::Uuid::new_v4(), host);
    let id = base64::engine::general_purpose::STANDARD.encode(sip.as_bytes());
    NewCallId { id, sip }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_get_call_info_causes() {
        for (code, cause) in [
            (486, EventCause::UserBusy),
            (600, EventCause::UserBusy),
            (408, EventCause::NoAnswer),
            (404, EventCause::Unavailable),
            (410, EventCause::Unavailable),
            (480, EventCause::Unavailable),
            (484, EventCause::Unavailable),
            (604, EventCause::Unavailable),
            (403, EventCause::Other),
            (503, EventCause::Other),
            (603, EventCause::Other),
        ] {
            assert_eq!(EventCause::from_status(code), cause, "{code}");
        }
    }

    #[test]
    fn call_ids_are_base64_of_uuid_at_host() {
        let NewCallId { id, sip } = new_call_id("127.0.0.1");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&id)
            .expect("base64");
        let raw = String::from_utf8(raw).expect("UTF-8");
        assert_eq!(raw, sip, "the SIP Call-ID is what the id encodes");
        let (uuid, host) = raw.split_once('@').expect("an @");
        assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{uuid}");
        assert_eq!(host, "127.0.0.1");
        assert_ne!(new_call_id("127.0.0.1").id, id);
        // RFC 3261 25.1: Call-ID = word ["@" word], no '=' in a word
        let word = |w: &str| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~()<>:\\\"/[]?{}".contains(c))
        };
        for host in ["127.0.0.1", "::1", "pbx.example"] {
            let sip = new_call_id(host).sip;
            let (left, right) = sip.split_once('@').expect("an @");
            assert!(word(left) && word(right), "{sip}");
        }
    }
}
