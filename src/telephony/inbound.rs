//! Inbound calls: an INVITE that reaches the agent outside any dialog is a call to the voice
//! mail number. It is answered (200 with an SDP answer: the caller's first G.711 codec and its
//! telephone-event type), and once ACKed its media [`Session`] becomes a [`SessionLine`] on
//! which the service's [`InboundHandler`] runs (the subscriber access dialogue,
//! `crate::subscriber`). When the handler returns we send BYE, unless the caller hung up.
//!
//! Limits: at most `max_inbound` calls at once (more get 486 Busy Here); the media session's
//! no-RTP timeout and maximum call length; a [`SessionLine`] waits at most
//! [`FIRST_KEY_WAIT`] for a first key and [`NEXT_KEY_WAIT`] between keys. The caller's RTP is
//! taken from the IP address of its SDP offer, from any port (sipp and some gateways send
//! from another port than the one they receive on).

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::{Header, HeadersExt as _, StatusCode};
use rsipstack::transaction::Transaction;
use tokio_util::sync::CancellationToken;

use super::greeting;
use super::media;
use super::session::{Ended, Limits, SendStats, Session};
use super::GreetingSession;
use crate::store::voicemail::GreetingType;
use crate::store::MailboxId;
use crate::subscriber::{recordings, speech, Caller, HungUp, Input, Line, Say};

/// How long a caller has for the first key of an entry or a menu choice.
pub const FIRST_KEY_WAIT: Duration = Duration::from_secs(8);
/// How long a caller has between two keys of an entry.
pub const NEXT_KEY_WAIT: Duration = Duration::from_secs(4);
/// How long an answered call may wait for its ACK.
const ACK_WAIT: Duration = Duration::from_secs(32);

/// A future borrowed for `'a`, as the handlers return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What runs on an answered inbound call: given the caller (the user part of the From URI and
/// the address the INVITE came from) and the line, it returns when the call is to end.
pub type InboundHandler = Arc<
    dyn for<'x, 'l, 'a> Fn(Caller, &'x mut SessionLine<'l, 'a>) -> BoxFuture<'x, ()> + Send + Sync,
>;

/// The greeting menu of a mailbox for one greeting type (its current greeting and where a
/// recording is saved), for [`Line::greeting`]; `None` when it cannot be had now.
pub type GreetingMenus = Arc<
    dyn Fn(MailboxId, GreetingType) -> BoxFuture<'static, Option<GreetingSession>> + Send + Sync,
>;

/// How the agent answers inbound calls.
#[derive(Clone)]
pub struct Inbound {
    /// What runs on a call.
    pub handler: InboundHandler,
    /// The greeting menus reached from it.
    pub greetings: GreetingMenus,
    /// The most inbound calls at once.
    pub max_calls: usize,
    /// The numbers or `sip:` URIs a call must be addressed to (its Request-URI's user part, or
    /// the whole URI); empty: any. Others are answered 404.
    pub numbers: Vec<String>,
    /// The time zone times are said in.
    pub time_zone: jiff::tz::TimeZone,
}

impl Inbound {
    /// Whether a call to `uri` is ours.
    fn answers(&self, uri: &rsipstack::sip::Uri) -> bool {
        if self.numbers.is_empty() {
            return true;
        }
        let whole = uri.to_string();
        let whole = whole.split(';').next().unwrap_or(&whole);
        let user = uri.user().unwrap_or("");
        self.numbers.iter().any(|n| {
            if n.len() > 4 && n[..4].eq_ignore_ascii_case("sip:") {
                n.eq_ignore_ascii_case(whole)
            } else {
                n == user
            }
        })
    }
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("max_calls", &self.max_calls)
            .finish_non_exhaustive()
    }
}

/// The inbound side of an agent: the handler once set, the calls running, and the token that
/// hangs them all up.
#[derive(Default)]
pub(super) struct InboundState {
    pub(super) inbound: std::sync::OnceLock<Inbound>,
    pub(super) active: AtomicUsize,
    pub(super) stop: CancellationToken,
}

/// Counts a running inbound call until dropped.
struct Active(Arc<InboundState>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers the INVITE `tx` and runs the inbound handler on the call (see the module docs).
pub(super) async fn answer(
    dialogs: Arc<DialogLayer>,
    mut tx: Transaction,
    state: Arc<InboundState>,
    local: SocketAddr,
    rtp_ports: Option<std::ops::RangeInclusive<u16>>,
    limits: Limits,
) {
    let Some(inbound) = state.inbound.get().cloned() else {
        let _ = tx.reply(StatusCode::TemporarilyUnavailable).await;
        return;
    };
    if !inbound.answers(&tx.original.uri) {
        let _ = tx.reply(StatusCode::NotFound).await;
        return;
    }
    if state.active.fetch_add(1, Ordering::AcqRel) >= inbound.max_calls {
        state.active.fetch_sub(1, Ordering::AcqRel);
        tracing::info!("inbound call refused: the limit of simultaneous calls is reached");
        let _ = tx.reply(StatusCode::BusyHere).await;
        return;
    }
    let _active = Active(Arc::clone(&state));
    let caller = Caller {
        id: tx
            .original
            .from_header()
            .ok()
            .and_then(|from| from.uri().ok())
            .and_then(|uri| uri.user().map(str::to_owned)),
        addr: source_ip(&tx.original),
    };
    let offer = match media::parse_answer(&tx.original.body) {
        Ok(offer) => offer,
        Err(e) => {
            tracing::info!(error = %e, "inbound call with an unusable SDP offer");
            let _ = tx.reply(StatusCode::NotAcceptableHere).await;
            return;
        }
    };
    let rtp = match super::call::bind_rtp(local.ip(), rtp_ports).await {
        Ok(rtp) => rtp,
        Err(e) => {
            tracing::warn!(error = %e, "no RTP port for an inbound call");
            let _ = tx.reply(StatusCode::ServiceUnavailable).await;
            return;
        }
    };
    let Ok(rtp_local) = rtp.local_addr() else {
        let _ = tx.reply(StatusCode::ServiceUnavailable).await;
        return;
    };
    let contact: Option<rsipstack::sip::Uri> =
        format!("sip:voicemail@{local}").as_str().try_into().ok();
    let (state_tx, mut states) = dialogs.new_dialog_state_channel();
    let dialog = match dialogs.get_or_create_server_invite(&tx, state_tx, None, contact) {
        Ok(dialog) => dialog,
        Err(e) => {
            tracing::debug!(error = %e, "inbound INVITE refused by the dialog layer");
            let _ = tx.reply(StatusCode::ServerInternalError).await;
            return;
        }
    };
    let mut handling = dialog.clone();
    let transaction = tokio::spawn(async move {
        if let Err(e) = handling.handle(&mut tx).await {
            tracing::debug!(error = %e, "inbound INVITE transaction failed");
        }
    });
    let sdp = media::answer_sdp(rtp_local, &offer, rand::random::<u32>().into());
    let accepted = dialog.accept(
        Some(vec![Header::ContentType("application/sdp".into())]),
        Some(sdp.into_bytes()),
    );
    let confirmed = accepted.is_ok()
        && tokio::time::timeout(ACK_WAIT, async {
            while let Some(s) = states.recv().await {
                match s {
                    DialogState::Confirmed(..) => return true,
                    DialogState::Terminated(..) => return false,
                    _ => {}
                }
            }
            false
        })
        .await
        .unwrap_or(false);
    if !confirmed {
        tracing::info!("inbound call ended before it was confirmed");
        transaction.abort();
        dialogs.remove_dialog(&dialog.id());
        return;
    }
    // The caller's RTP: from the IP address of its offer, any port.
    let hang_up = state.stop.child_token();
    let stats = SendStats::new();
    let mut session =
        Session::new(&rtp, &offer, &mut states, &hang_up, &stats, limits).with_any_source_port();
    let ended = {
        let mut line = SessionLine::new(
            &mut session,
            inbound.greetings.clone(),
            inbound.time_zone.clone(),
        );
        (inbound.handler)(caller, &mut line).await;
        line.ended
    };
    if ended != Some(Ended::ByPhone) {
        if let Err(e) = dialog.bye().await {
            tracing::debug!(error = %e, "BYE failed");
        }
    }
    dialogs.remove_dialog(&dialog.id());
}

/// The IP address a request came from: its top Via's `received` (which the SIP stack adds for
/// the packet's source), else the Via's sent-by host.
fn source_ip(request: &rsipstack::sip::Request) -> Option<std::net::IpAddr> {
    let via = request.via_header().ok()?.value().to_owned();
    let params = via.split(';').skip(1);
    for param in params {
        if let Some(ip) = param.trim().strip_prefix("received=") {
            return ip.trim().parse().ok();
        }
    }
    let sent_by = via.split(';').next()?.split_whitespace().nth(1)?;
    let host = sent_by.rsplit_once(':').map_or(sent_by, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// A telephone line over the media session of an answered inbound call: prompts and words
/// are played from the recordings, keys come from RFC 4733 telephone-events.
pub struct SessionLine<'l, 'a> {
    session: &'l mut Session<'a>,
    keys: VecDeque<char>,
    greetings: GreetingMenus,
    time_zone: jiff::tz::TimeZone,
    /// Why the media ended, once it did.
    ended: Option<Ended>,
}

impl<'l, 'a> SessionLine<'l, 'a> {
    fn new(
        session: &'l mut Session<'a>,
        greetings: GreetingMenus,
        time_zone: jiff::tz::TimeZone,
    ) -> SessionLine<'l, 'a> {
        SessionLine {
            session,
            keys: VecDeque::new(),
            greetings,
            time_zone,
            ended: None,
        }
    }

    fn ended(&mut self, why: Ended) -> HungUp {
        self.ended = Some(why);
        HungUp
    }

    /// The next key: one typed ahead, or one pressed within `wait`.
    async fn next_key(&mut self, wait: Duration) -> Result<Option<char>, HungUp> {
        if let Some(key) = self.keys.pop_front() {
            return Ok(Some(key));
        }
        match self.session.wait_digit(wait).await {
            Ok(key) => Ok(key),
            Err(why) => Err(self.ended(why)),
        }
    }

    async fn play(&mut self, audio: &[i16]) -> Result<(), HungUp> {
        match self.session.play(audio, true).await {
            Ok(Some(key)) => {
                self.keys.push_back(key);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(why) => Err(self.ended(why)),
        }
    }
}

impl Line for SessionLine<'_, '_> {
    async fn say(&mut self, items: Vec<Say>) -> Result<(), HungUp> {
        for item in items {
            // A report of what happened is always said (keys pressed meanwhile are kept).
            if let Say::Prompt(prompt) = item {
                if prompt.reports() {
                    let audio = recordings::audio(speech::Word::Prompt(prompt));
                    match self.session.play_through(&audio).await {
                        Ok(keys) => self.keys.extend(keys),
                        Err(why) => return Err(self.ended(why)),
                    }
                    continue;
                }
            }
            // (keys typed ahead skip the rest)
            if !self.keys.is_empty() {
                continue;
            }
            match speech::words(&item, &self.time_zone) {
                Some(words) => {
                    for word in words {
                        if !self.keys.is_empty() {
                            break;
                        }
                        self.play(&recordings::audio(word)).await?;
                    }
                }
                None => {
                    if let Say::Audio(audio) = &item {
                        self.play(audio).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn read(&mut self, max: usize) -> Result<Input, HungUp> {
        let mut digits = String::new();
        loop {
            let wait = if digits.is_empty() {
                FIRST_KEY_WAIT
            } else {
                NEXT_KEY_WAIT
            };
            match self.next_key(wait).await? {
                Some('#') => return Ok(Input::Digits(digits)),
                Some('*') => return Ok(Input::Star),
                Some(digit) if digit.is_ascii_digit() => {
                    digits.push(digit);
                    if digits.len() >= max {
                        return Ok(Input::Digits(digits));
                    }
                }
                // (A-D of RFC 4733 mean nothing here)
                Some(_) => {}
                None if digits.is_empty() => return Ok(Input::Timeout),
                None => return Ok(Input::Digits(digits)),
            }
        }
    }

    async fn key(&mut self) -> Result<Option<char>, HungUp> {
        self.next_key(FIRST_KEY_WAIT).await
    }

    async fn greeting(&mut self, mailbox: MailboxId, kind: GreetingType) -> Result<(), HungUp> {
        self.keys.clear();
        let Some(menu) = (self.greetings)(mailbox, kind).await else {
            return Ok(());
        };
        match greeting::run(self.session, &menu).await {
            Ok(()) => Ok(()),
            Err(why) => Err(self.ended(why)),
        }
    }
}
