//! The SIP agent and the task that drives one outbound call.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{Dialog, DialogStateReceiver};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transport::{udp::UdpConnection, SipAddr, TransportLayer};
use rsipstack::EndpointBuilder;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::greeting::{self, GreetingSession};
use super::inbound::{self, Inbound, InboundState};
use super::media;
use super::session::{Ended, Limits, SendStats, Session};
use super::{new_call_id, CallState, EventCause, NewCallId, TelephonyError};
/// How long the INVITE may go on after our CANCEL before we give up on it: 64*T1, the
/// transaction timeout of RFC 3261 (a phone that already rang has no timer B to end it).
const AFTER_CANCEL: Duration = Duration::from_secs(32);

/// Digest credentials for the 401 and 407 challenges of a proxy, trunk or phone.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The digest user name.
    pub user: String,
    /// The password.
    pub password: String,
    /// The realm the credentials are for, when known. (The SIP stack answers a challenge with
    /// the challenge's own realm; this is handed to it as the credential's realm.)
    pub realm: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // (never the password)
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// How a [`SipAgent`] places calls.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The SIP/UDP address to listen on (port 0 picks a free port). It goes into Contact
    /// headers and SDP offers, so it cannot be a wildcard; RTP sockets use its IP address.
    pub listen: SocketAddr,
    /// The outbound proxy: every INVITE (and its CANCEL) is sent there, with a `Route` header
    /// naming it (`;lr`), while the Request-URI stays the dialled target. `None`: INVITEs go
    /// to the target's own host and port.
    pub outbound_proxy: Option<SocketAddr>,
    /// Answers a 401 or 407 challenge to an INVITE once; a second challenge ends the call
    /// ([`EventCause::Other`]). `None`: a challenge ends the call.
    pub credentials: Option<Credentials>,
    /// The UDP ports for RTP (an even port per call, RFC 3550); `None`: any free port.
    pub rtp_ports: Option<RangeInclusive<u16>>,
    /// A connected call is hung up (BYE, cause None) after this long without RTP from the
    /// phone.
    pub no_rtp_timeout: Duration,
    /// A connected call is hung up (BYE, cause None) this long after it was answered.
    pub max_call: Duration,
}

impl AgentConfig {
    /// The default no-RTP timeout: 30 s.
    pub const DEFAULT_NO_RTP_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default maximum call length: 20 minutes (a 10-minute message, or a 5-minute
    /// greeting recorded twice with its menus).
    pub const DEFAULT_MAX_CALL: Duration = Duration::from_secs(20 * 60);

    /// Listening on `listen`, calling targets directly, no credentials, any RTP port, the
    /// default timeouts.
    pub fn new(listen: SocketAddr) -> AgentConfig {
        AgentConfig {
            listen,
            outbound_proxy: None,
            credentials: None,
            rtp_ports: None,
            no_rtp_timeout: AgentConfig::DEFAULT_NO_RTP_TIMEOUT,
            max_call: AgentConfig::DEFAULT_MAX_CALL,
        }
    }

    /// The same settings, listening on `listen`.
    pub fn with_listen(&self, listen: SocketAddr) -> AgentConfig {
        AgentConfig {
            listen,
            ..self.clone()
        }
    }
}

/// One SIP/UDP endpoint placing outbound calls. Dropping it stops the endpoint (calls still
/// running lose their signalling: hang them up first).
pub struct SipAgent {
    dialogs: Arc<DialogLayer>,
    local: SocketAddr,
    stop: CancellationToken,
    config: AgentConfig,
    inbound: Arc<InboundState>,
}

impl Drop for SipAgent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What to call and what the call does once answered.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The SIP URI to call, e.g. `sip:alice@127.0.0.1:5062`.
    pub target: String,
    /// The user part of our From URI.
    pub from_user: String,
    /// What the call does once answered.
    pub media: CallMedia,
    /// How long the phone may ring before we CANCEL (cause [`EventCause::NoAnswer`]).
    pub ring_timeout: Duration,
}

/// What a call does once answered.
#[derive(Debug, Clone)]
pub enum CallMedia {
    /// PlayOnPhone: play this audio (8 kHz, 16-bit PCM, mono), then hang up.
    Play(Arc<[i16]>),
    /// PlayOnPhoneGreeting: play the greeting and run the recording menu
    /// ([`GreetingSession`]), then hang up.
    Greeting(GreetingSession),
}

/// A call's state and cause, as GetCallInfo reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallStatus {
    /// Connecting, Connected or Disconnected.
    pub state: CallState,
    /// Why it ended ([`EventCause::None`] while it runs).
    pub cause: EventCause,
}

impl CallStatus {
    fn new(state: CallState, cause: EventCause) -> CallStatus {
        CallStatus { state, cause }
    }
}

/// The handle of a call placed by [`SipAgent::place_call`]. Dropping it does not end the call.
#[derive(Debug, Clone)]
pub struct Call {
    id: String,
    sip_call_id: String,
    status: watch::Receiver<CallStatus>,
    hang_up: CancellationToken,
    sent: Arc<SendStats>,
    ended_at: Arc<OnceLock<Instant>>,
}

impl Call {
    /// The call id (the base64 of `"<uuid>@<host>"`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The SIP Call-ID of the call's dialog: `"<uuid>@<host>"`, what [`Call::id`] encodes.
    pub fn sip_call_id(&self) -> &str {
        &self.sip_call_id
    }

    /// The current state and cause.
    pub fn status(&self) -> CallStatus {
        *self.status.borrow()
    }

    /// Ends the call: CANCEL while it rings, BYE once connected; nothing once it ended. Returns
    /// at once; [`Call::finished`] waits for the end.
    pub fn hang_up(&self) {
        self.hang_up.cancel();
    }

    /// Waits until the call is [`CallState::Disconnected`] and returns its final status.
    pub async fn finished(&self) -> CallStatus {
        self.wait_for(|s| s.state == CallState::Disconnected).await
    }

    /// Waits until the call leaves [`CallState::Connecting`] and returns that status.
    pub async fn answered(&self) -> CallStatus {
        self.wait_for(|s| s.state != CallState::Connecting).await
    }

    async fn wait_for(&self, done: impl FnMut(&CallStatus) -> bool) -> CallStatus {
        let mut status = self.status.clone();
        let reached = status.wait_for(done).await.map(|s| *s);
        // (the task always ends in Disconnected before it drops the sender; were it to end
        // otherwise, report a failure rather than wait forever)
        reached.unwrap_or(CallStatus::new(CallState::Disconnected, EventCause::Other))
    }

    /// When the call became [`CallState::Disconnected`].
    pub fn ended_at(&self) -> Option<Instant> {
        self.ended_at.get().copied()
    }

    /// The number of RTP packets sent so far.
    pub fn rtp_packets_sent(&self) -> u64 {
        self.sent.packets.load(Ordering::Relaxed)
    }

    /// The pacing jitter of the RTP sent: how far the time between two packets was from
    /// 20 ms, as the number of gaps per bucket of [`JITTER_BUCKET`](super::JITTER_BUCKET)
    /// (bucket `i` holds deviations from `i` to `i + 1` buckets; the last one everything from
    /// 10 ms on). For benchmarks.
    pub fn send_jitter(&self) -> Vec<u64> {
        self.sent.jitter()
    }
}

impl SipAgent {
    /// Opens the SIP/UDP endpoint on `config.listen` (port 0 picks a free port) and starts
    /// serving it.
    pub async fn bind(config: AgentConfig) -> Result<SipAgent, TelephonyError> {
        let listen = config.listen;
        if listen.ip().is_unspecified() {
            return Err(TelephonyError::Unspecified(listen));
        }
        let stop = CancellationToken::new();
        let transport = TransportLayer::new(stop.clone());
        let connection = UdpConnection::create_connection(listen, None, Some(stop.child_token()))
            .await
            .map_err(|e| TelephonyError::Bind {
                what: "SIP",
                addr: listen,
                source: std::io::Error::other(e.to_string()),
            })?;
        let local = connection
            .get_addr()
            .get_socketaddr()
            .map_err(|e| TelephonyError::Bind {
                what: "SIP",
                addr: listen,
                source: std::io::Error::other(e.to_string()),
            })?;
        transport.add_transport(connection.into());
        let endpoint = EndpointBuilder::new()
            .with_cancel_token(stop.clone())
            .with_transport_layer(transport)
            .build();
        let incoming = endpoint.incoming_transactions()?;
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        tokio::spawn(async move { endpoint.serve().await });
        let inbound = Arc::new(InboundState::default());
        tokio::spawn(route_requests(
            incoming,
            dialogs.clone(),
            stop.clone(),
            Router {
                inbound: Arc::clone(&inbound),
                local,
                rtp_ports: config.rtp_ports.clone(),
                limits: Limits {
                    no_rtp_timeout: config.no_rtp_timeout,
                    max_call: config.max_call,
                },
            },
        ));
        Ok(SipAgent {
            dialogs,
            local,
            stop,
            config,
            inbound,
        })
    }

    /// Answers inbound calls (INVITEs outside a dialog) with `inbound`; until this is called
    /// they get 480. Only the first call of this takes effect.
    pub fn answer_calls(&self, inbound: Inbound) {
        if self.inbound.inbound.set(inbound).is_err() {
            tracing::warn!("inbound calls are answered already");
        }
    }

    /// The inbound calls running now.
    pub fn inbound_calls(&self) -> usize {
        self.inbound
            .active
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Hangs up every inbound call (graceful shutdown); new ones are still answered until the
    /// agent is dropped.
    pub fn hang_up_inbound(&self) {
        self.inbound.stop.cancel();
    }

    /// The address the SIP endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Places a call: sends the INVITE and returns its handle at once, in
    /// [`CallState::Connecting`].
    pub async fn place_call(&self, request: CallRequest) -> Result<Call, TelephonyError> {
        let target: rsipstack::sip::Uri = request
            .target
            .as_str()
            .try_into()
            .map_err(|_| TelephonyError::InvalidTarget(request.target.clone()))?;
        if !matches!(target.scheme, Some(rsipstack::sip::Scheme::Sip)) {
            return Err(TelephonyError::InvalidTarget(request.target.clone()));
        }
        let rtp = bind_rtp(self.local.ip(), self.config.rtp_ports.clone()).await?;
        let rtp_local = rtp.local_addr().map_err(|source| TelephonyError::Bind {
            what: "RTP",
            addr: SocketAddr::new(self.local.ip(), 0),
            source,
        })?;
        let host = self.local.ip().to_string();
        let NewCallId {
            id,
            sip: sip_call_id,
        } = new_call_id(&host);
        let ours = |user: &str| -> Result<rsipstack::sip::Uri, TelephonyError> {
            format!("sip:{user}@{}", self.local)
                .as_str()
                .try_into()
                .map_err(|_| TelephonyError::InvalidTarget(user.to_owned()))
        };
        let (destination, route_set) = match self.config.outbound_proxy {
            Some(proxy) => {
                let uri: rsipstack::sip::Uri = format!("sip:{proxy};lr")
                    .as_str()
                    .try_into()
                    .map_err(|_| TelephonyError::InvalidTarget(proxy.to_string()))?;
                let route = rsipstack::sip::typed::Route {
                    display_name: None,
                    uri,
                    params: vec![],
                };
                (Some(SipAddr::from(proxy)), vec![route])
            }
            None => {
                let direct = target
                    .host_with_port
                    .to_string()
                    .parse::<SocketAddr>()
                    .ok()
                    .map(SipAddr::from);
                (direct, Vec::new())
            }
        };
        let credential = self.config.credentials.as_ref().map(|c| Credential {
            username: c.user.clone(),
            password: c.password.clone(),
            realm: c.realm.clone(),
            auth_username: None,
        });
        let option = InviteOption {
            caller: ours(&request.from_user)?,
            callee: target,
            destination,
            content_type: Some("application/sdp".into()),
            offer: Some(media::offer(rtp_local, rand::random::<u32>().into()).into_bytes()),
            contact: ours(&request.from_user)?,
            call_id: Some(sip_call_id.clone()),
            credential,
            route_set,
            ..Default::default()
        };
        let (status_tx, status) =
            watch::channel(CallStatus::new(CallState::Connecting, EventCause::None));
        let (state_tx, state_rx) = self.dialogs.new_dialog_state_channel();
        let (dialog, invite) = self.dialogs.do_invite_async(option, state_tx)?;
        let call = Call {
            id,
            sip_call_id,
            status,
            hang_up: self.stop.child_token(),
            sent: Arc::new(SendStats::new()),
            ended_at: Arc::new(OnceLock::new()),
        };
        let driver = Driver {
            dialogs: self.dialogs.clone(),
            status: status_tx,
            hang_up: call.hang_up.clone(),
            sent: call.sent.clone(),
            ended_at: call.ended_at.clone(),
            media: request.media,
            limits: Limits {
                no_rtp_timeout: self.config.no_rtp_timeout,
                max_call: self.config.max_call,
            },
            rtp,
        };
        tokio::spawn(driver.run(dialog, invite, state_rx, request.ring_timeout));
        Ok(call)
    }
}

/// Hands requests from the phone to their dialog (BYE is answered 200 there); a request for no
/// dialog of ours gets 481.
/// What [`route_requests`] needs to answer inbound calls.
struct Router {
    inbound: Arc<InboundState>,
    local: SocketAddr,
    rtp_ports: Option<RangeInclusive<u16>>,
    limits: Limits,
}

async fn route_requests(
    mut incoming: TransactionReceiver,
    dialogs: Arc<DialogLayer>,
    stop: CancellationToken,
    router: Router,
) {
    loop {
        let mut tx = tokio::select! {
            _ = stop.cancelled() => return,
            tx = incoming.recv() => match tx {
                Some(tx) => tx,
                None => return,
            },
        };
        match dialogs.match_dialog(&tx) {
            Some(Dialog::Invite(mut dialog)) => {
                tokio::spawn(async move {
                    if let Err(e) = dialog.handle(&mut tx).await {
                        tracing::debug!(error = %e, "in-dialog request failed");
                    }
                });
            }
            _ if tx.original.method == rsipstack::sip::Method::Invite => {
                tokio::spawn(inbound::answer(
                    dialogs.clone(),
                    tx,
                    Arc::clone(&router.inbound),
                    router.local,
                    router.rtp_ports.clone(),
                    router.limits,
                ));
            }
            _ => {
                if tx.original.method != rsipstack::sip::Method::Ack {
                    let _ = tx
                        .reply(rsipstack::sip::StatusCode::CallTransactionDoesNotExist)
                        .await;
                }
            }
        }
    }
}

/// The task behind one [`Call`].
struct Driver {
    dialogs: Arc<DialogLayer>,
    status: watch::Sender<CallStatus>,
    hang_up: CancellationToken,
    sent: Arc<SendStats>,
    ended_at: Arc<OnceLock<Instant>>,
    media: CallMedia,
    limits: Limits,
    rtp: UdpSocket,
}

type InviteHandle =
    rsipstack::platform::JoinHandle<rsipstack::dialog::invitation::InviteAsyncResult>;

impl Driver {
    async fn run(
        self,
        dialog: InviteDialog,
        mut invite: InviteHandle,
        mut states: DialogStateReceiver,
        ring_timeout: Duration,
    ) {
        let finish = |cause| {
            let _ = self.ended_at.set(Instant::now());
            self.status
                .send_replace(CallStatus::new(CallState::Disconnected, cause));
        };
        // Ringing: wait for the final answer, or cancel on timeout or hang-up.
        let mut cancelled_cause = None;
        let outcome = tokio::select! {
            outcome = &mut invite => Some(outcome),
            _ = tokio::time::sleep(ring_timeout) => {
                cancelled_cause = Some(EventCause::NoAnswer);
                cancel(&dialog, &mut invite).await
            }
            _ = self.hang_up.cancelled() => {
                cancelled_cause = Some(EventCause::None);
                cancel(&dialog, &mut invite).await
            }
        };
        let Some(outcome) = outcome else {
            // (no final answer to our CANCEL: the INVITE task was aborted)
            return finish(cancelled_cause.unwrap_or(EventCause::Other));
        };
        let (dialog_id, response) = match outcome {
            Ok(Ok((dialog_id, Some(response)))) => (dialog_id, response),
            Ok(Ok((_, None))) => return finish(cancelled_cause.unwrap_or(EventCause::Other)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "INVITE failed");
                return finish(cancelled_cause.unwrap_or(EventCause::Other));
            }
            Err(e) => {
                tracing::warn!(error = %e, "INVITE task failed");
                return finish(EventCause::Other);
            }
        };
        let code = response.status_code.code();
        if !(200..300).contains(&code) {
            return finish(cancelled_cause.unwrap_or(EventCause::from_status(code)));
        }
        if let Some(cause) = cancelled_cause {
            // A 2xx crossed our CANCEL: the stack ACKs it and sends BYE.
            self.dialogs.remove_dialog(&dialog_id);
            return finish(cause);
        }
        self.status
            .send_replace(CallStatus::new(CallState::Connected, EventCause::None));
        let answer = match media::parse_answer(&response.body) {
            Ok(answer) => answer,
            Err(e) => {
                tracing::info!(error = %e, "unusable SDP answer; hanging up");
                bye(&dialog).await;
                self.dialogs.remove_dialog(&dialog_id);
                return finish(EventCause::Other);
            }
        };
        let mut session = Session::new(
            &self.rtp,
            &answer,
            &mut states,
            &self.hang_up,
            &self.sent,
            self.limits,
        );
        let end = match &self.media {
            CallMedia::Play(audio) => session.play(audio, false).await.map(|_| ()),
            CallMedia::Greeting(greeting) => greeting::run(&mut session, greeting).await,
        };
        drop(session);
        match end {
            Ok(()) | Err(Ended::HungUp) => {}
            Err(Ended::NoRtp) => tracing::info!("no RTP from the phone; hanging up"),
            Err(Ended::MaxLength) => tracing::info!("the call reached its maximum length"),
            Err(Ended::ByPhone) => {}
        }
        if end != Err(Ended::ByPhone) {
            bye(&dialog).await;
        }
        self.dialogs.remove_dialog(&dialog_id);
        finish(EventCause::None);
    }
}

/// Cancels the ringing INVITE and waits for its final answer (487, or a 2xx that crossed the
/// CANCEL, which the stack ACKs and BYEs); `None` when none came in time (the INVITE's task is
/// then aborted, which unregisters its early dialog).
async fn cancel(
    dialog: &InviteDialog,
    invite: &mut InviteHandle,
) -> Option<<InviteHandle as std::future::Future>::Output> {
    if let Err(e) = dialog.cancel().await {
        tracing::debug!(error = %e, "CANCEL failed");
    }
    match tokio::time::timeout(AFTER_CANCEL, &mut *invite).await {
        Ok(outcome) => Some(outcome),
        Err(_) => {
            invite.abort();
            None
        }
    }
}

async fn bye(dialog: &InviteDialog) {
    if let Err(e) = dialog.bye().await {
        tracing::debug!(error = %e, "BYE failed");
    }
}

/// Opens the RTP socket of a call on `ip`: an even port of `ports` (tried from a random one on),
/// or any free port.
pub(super) async fn bind_rtp(
    ip: std::net::IpAddr,
    ports: Option<RangeInclusive<u16>>,
) -> Result<UdpSocket, TelephonyError> {
    let Some(ports) = ports else {
        let addr = SocketAddr::new(ip, 0);
        return UdpSocket::bind(addr)
            .await
            .map_err(|source| TelephonyError::Bind {
                what: "RTP",
                addr,
                source,
            });
    };
    let first = ports.start().saturating_add(ports.start() % 2);
    let even: Vec<u16> = (first..=*ports.end()).step_by(2).collect();
    if even.is_empty() {
        return Err(TelephonyError::NoRtpPort(ports));
    }
    let offset = rand::random::<usize>() % even.len();
    for port in even[offset..].iter().chain(&even[..offset]) {
        if let Ok(socket) = UdpSocket::bind(SocketAddr::new(ip, *port)).await {
            return Ok(socket);
        }
    }
    Err(TelephonyError::NoRtpPort(ports))
}
