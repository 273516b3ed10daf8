//! The calls of the running service: the SIP agent, the dial plan, the call limits and the
//! [`CallRegistry`] together, as the call operations use them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::dialplan::{DialError, DialPlan, Dialed};
use super::{
    AgentConfig, Call, CallMedia, CallRegistry, CallRequest, CallState, CallStatus, Credentials,
    SipAgent, TelephonyError, UnknownCall,
};
use crate::config::{TelephonyConfig, DEFAULT_SIP_LISTEN};

/// How long a finished call stays answerable to GetCallInfo.
pub const CALL_INFO_KEEP: Duration = Duration::from_secs(15 * 60);

/// How often finished calls older than [`CALL_INFO_KEEP`] are forgotten.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// The user part of our From URI when the config gives no `from_uri`.
const DEFAULT_FROM_USER: &str = "umws";

/// Why a call was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// The server's limit of simultaneous calls is reached.
    #[error("the server's limit of {0} simultaneous calls is reached")]
    ServerLimit(usize),
    /// The caller's limit of simultaneous calls is reached.
    #[error("the limit of {0} simultaneous calls per user is reached")]
    UserLimit(usize),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The SIP agent could not place it.
    #[error("the call could not be placed")]
    Agent(#[source] TelephonyError),
}

/// Where the SIP agent listens, and whether that is a fallback from the busy default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// The address bound.
    pub addr: SocketAddr,
    /// The default address was asked for implicitly and could not be bound.
    pub fell_back: bool,
}

/// The telephony side of the service.
pub struct Telephony {
    agent: SipAgent,
    listening: Listening,
    registry: Arc<CallRegistry>,
    plan: DialPlan,
    from_user: String,
    ring_timeout: Duration,
    max_calls: usize,
    max_calls_per_user: usize,
    /// Held while checking the limits and placing, so two requests cannot both take the last
    /// place.
    placing: tokio::sync::Mutex<()>,
    closing: AtomicBool,
}

impl std::fmt::Debug for Telephony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telephony")
            .field("listening", &self.listening)
            .finish_non_exhaustive()
    }
}

impl Telephony {
    /// Starts the SIP agent of `config` and the task that forgets old calls. An address given
    /// in `config.sip_listen` must be bound; the default one (127.0.0.1:5060) falls back to a
    /// free port on 127.0.0.1 when it cannot be bound, with a warning in the log.
    pub async fn start(config: &TelephonyConfig) -> Result<Arc<Telephony>, TelephonyError> {
        let agent_config = agent_config(config).await?;
        let (agent, fell_back) = match config.sip_listen {
            Some(addr) => (SipAgent::bind(agent_config.with_listen(addr)).await?, false),
            None => match SipAgent::bind(agent_config.with_listen(DEFAULT_SIP_LISTEN)).await {
                Ok(agent) => (agent, false),
                Err(e) => {
                    let fallback = SocketAddr::new(DEFAULT_SIP_LISTEN.ip(), 0);
                    let agent = SipAgent::bind(agent_config.with_listen(fallback)).await?;
                    tracing::warn!(
                        default = %DEFAULT_SIP_LISTEN,
                        error = %e,
                        listen = %agent.local_addr(),
                        "the default SIP address is busy; listening on another port \
                         (set sip_listen or --sip-listen to choose one)"
                    );
                    (agent, true)
                }
            },
        };
        Ok(Telephony::with_agent(agent, config, fell_back))
    }

    /// The telephony over an agent already bound (`fell_back`: see [`Listening`]), with the
    /// dial plan, limits and timeouts of `config`; starts the task that forgets old calls.
    pub fn with_agent(
        agent: SipAgent,
        config: &TelephonyConfig,
        fell_back: bool,
    ) -> Arc<Telephony> {
        let from_user = config
            .from_uri
            .as_deref()
            .and_then(|uri| uri.split_once(':'))
            .and_then(|(_, rest)| rest.split_once('@'))
            .map_or(DEFAULT_FROM_USER.to_owned(), |(user, _)| user.to_owned());
        let telephony = Arc::new(Telephony {
            listening: Listening {
                addr: agent.local_addr(),
                fell_back,
            },
            agent,
            registry: Arc::new(CallRegistry::new(CALL_INFO_KEEP)),
            plan: config.dial_plan.clone(),
            from_user,
            ring_timeout: config.ring_timeout,
            max_calls: config.max_calls,
            max_calls_per_user: config.max_calls_per_user,
            placing: tokio::sync::Mutex::new(()),
            closing: AtomicBool::new(false),
        });
        spawn_purge(Arc::downgrade(&telephony.registry));
        telephony
    }

    /// Where the SIP agent listens.
    pub fn listening(&self) -> Listening {
        self.listening
    }

    /// The URI to call for `dial` (a dial string, not empty), by the dial plan.
    pub fn dial(&self, dial: &str) -> Result<Dialed, DialError> {
        self.plan.resolve(dial)
    }

    /// Checks the call limits for `owner` (a call placed later may still find them reached).
    pub fn check_limits(&self, owner: &str) -> Result<(), PlaceError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(PlaceError::ShuttingDown);
        }
        let (all, own) = self.registry.running(owner);
        if all >= self.max_calls {
            return Err(PlaceError::ServerLimit(self.max_calls));
        }
        if own >= self.max_calls_per_user {
            return Err(PlaceError::UserLimit(self.max_calls_per_user));
        }
        Ok(())
    }

    /// Places a call to `dialed` that runs `media` (a message to play, or the greeting menu)
    /// for `owner`, within the limits, and keeps it for [`Telephony::call`].
    pub async fn place(
        &self,
        owner: &str,
        dialed: &Dialed,
        media: CallMedia,
    ) -> Result<Call, PlaceError> {
        let _placing = self.placing.lock().await;
        self.check_limits(owner)?;
        let call = self
            .agent
            .place_call(CallRequest {
                target: dialed.uri().to_owned(),
                from_user: self.from_user.clone(),
                media,
                ring_timeout: self.ring_timeout,
            })
            .await
            .map_err(PlaceError::Agent)?;
        self.registry.insert(owner, call.clone());
        Ok(call)
    }

    /// Answers inbound calls with `inbound` (subscriber access).
    pub fn answer_calls(&self, inbound: super::Inbound) {
        self.agent.answer_calls(inbound);
    }

    /// `owner`'s call `id`.
    pub fn call(&self, owner: &str, id: &str) -> Result<Call, UnknownCall> {
        self.registry.get(owner, id)
    }

    /// Graceful shutdown: refuses new calls, hangs up every call and waits until they ended
    /// or `limit` passed; returns how many had not ended by then.
    pub async fn shut_down(&self, limit: Duration) -> usize {
        self.closing.store(true, Ordering::Release);
        // (a placement under way finishes first, so its call is hung up too)
        let _placing = self.placing.lock().await;
        let calls = self.registry.hang_up_all();
        self.agent.hang_up_inbound();
        let running = calls
            .iter()
            .filter(|c| c.status().state != CallState::Disconnected)
            .count();
        if running > 0 {
            tracing::info!(calls = running, "hanging up the calls");
        }
        let deadline = tokio::time::Instant::now() + limit;
        let mut left = 0;
        for call in &calls {
            if tokio::time::timeout_at(deadline, call.finished())
                .await
                .is_err()
            {
                left += 1;
            }
        }
        while self.agent.inbound_calls() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        left += self.agent.inbound_calls();
        if left > 0 {
            tracing::warn!(calls = left, "calls had not ended when the server stopped");
        }
        left
    }
}

/// The agent settings of `config` (the listen address is set by the caller): the outbound
/// proxy resolved to an address, the credentials, the RTP ports, and the timeouts (no no-RTP
/// timeout: the call's maximum length ends a silent call).
async fn agent_config(config: &TelephonyConfig) -> Result<AgentConfig, TelephonyError> {
    let mut agent = AgentConfig::new(DEFAULT_SIP_LISTEN);
    if let Some(proxy) = &config.outbound_proxy {
        let host = proxy.host.trim_start_matches('[').trim_end_matches(']');
        let port = proxy.port.unwrap_or(5060);
        let found = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next());
        agent.outbound_proxy = Some(found.ok_or_else(|| TelephonyError::ProxyUnresolved {
            proxy: format!("{}:{port}", proxy.host),
        })?);
    }
    agent.credentials = config.credentials.as_ref().map(|c| Credentials {
        user: c.username.clone(),
        password: c.password.0.clone(),
        realm: None,
    });
    agent.rtp_ports = Some(config.rtp_ports.0..=config.rtp_ports.1);
    agent.max_call = config.max_call;
    agent.no_rtp_timeout = config.no_rtp_timeout.unwrap_or(config.max_call);
    Ok(agent)
}

/// Forgets finished calls [`CALL_INFO_KEEP`] after their end, until the registry is dropped.
fn spawn_purge(registry: Weak<CallRegistry>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PURGE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(registry) = registry.upgrade() else {
                return;
            };
            let purged = registry.purge(Instant::now());
            if purged > 0 {
                tracing::debug!(calls = purged, "forgot finished calls");
            }
        }
    });
}

/// How often the owner of a running call looks for a hang-up requested through another
/// instance although it heard of none (the notification is how it learns of one at once; this
/// is the bound when one is missed, e.g. while the listener reconnects).
const HANG_UP_POLL: Duration = Duration::from_secs(5);

/// How often the owner of a running call rewrites its row although nothing changed, so that
/// the others can tell a live owner from a dead one.
const CALL_HEARTBEAT: Duration = Duration::from_secs(30);

/// A running call whose row was not rewritten for this long has lost its owner (the instance
/// died): GetCallInfo elsewhere reports it Disconnected (Other), and the purge deletes it.
/// (Where the owner's liveness lock is known, its loss tells at once.)
const CALL_ORPHANED: Duration = Duration::from_secs(90);

/// The calls of all instances on one PostgreSQL database (see `store::postgres::calls`): the
/// owner records its calls' states as they move and executes hang-ups asked for elsewhere;
/// GetCallInfo and Disconnect of a call placed by another instance go through the store.
/// With the SQLite store (one instance) there is none of this.
pub struct SharedCalls {
    store: crate::store::postgres::PgStore,
}

impl std::fmt::Debug for SharedCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCalls").finish_non_exhaustive()
    }
}

fn state_word(state: CallState) -> &'static str {
    match state {
        CallState::Connecting => "connecting",
        CallState::Connected => "connected",
        CallState::Disconnected => "disconnected",
    }
}

fn cause_word(cause: super::EventCause) -> &'static str {
    use super::EventCause as C;
    match cause {
        C::None => "none",
        C::UserBusy => "user_busy",
        C::NoAnswer => "no_answer",
        C::Unavailable => "unavailable",
        C::Other => "other",
    }
}

fn keep_secs() -> i64 {
    i64::try_from(CALL_INFO_KEEP.as_secs()).unwrap_or(i64::MAX)
}

impl SharedCalls {
    /// The shared calls of `store`; starts (on the current runtime, if any) the task that
    /// deletes the rows of old calls.
    pub fn new(store: crate::store::postgres::PgStore) -> Arc<SharedCalls> {
        let shared = Arc::new(SharedCalls { store });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&shared);
            runtime.spawn(async move {
                let mut ticks = tokio::time::interval(PURGE_INTERVAL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let Some(shared) = weak.upgrade() else {
                        return;
                    };
                    let orphaned = i64::try_from(CALL_ORPHANED.as_secs()).unwrap_or(i64::MAX);
                    let purged = tokio::task::spawn_blocking(move || {
                        shared.store.calls_purge(keep_secs(), orphaned)
                    })
                    .await;
                    match purged {
                        Ok(Ok(0)) => {}
                        Ok(Ok(n)) => tracing::debug!(calls = n, "deleted the rows of old calls"),
                        Ok(Err(e)) => tracing::warn!(
                            error = %crate::fault::ErrorChain(&e),
                            "cannot delete the rows of old calls"
                        ),
                        Err(_) => {}
                    }
                }
            });
        }
        shared
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::postgres::PgStore) -> Result<T, crate::store::StoreError>
            + Send
            + 'static,
    ) -> Result<T, crate::store::StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| crate::store::StoreError::DatabaseUnavailable(Box::new(e)))?
    }

    /// Records `call`, just placed here for `mailbox`, and follows it until it ends: every
    /// change of its state is written, and a hang-up asked for through another instance is
    /// executed. A call whose row cannot be written still runs (only this instance then knows
    /// it; the failure is logged).
    pub async fn placed(self: &Arc<Self>, call: &Call, mailbox: crate::store::MailboxId) {
        let id = call.id().to_owned();
        if let Err(e) = self.blocking(move |s| s.call_placed(&id, mailbox)).await {
            tracing::warn!(
                call_id = call.id(),
                error = %crate::fault::ErrorChain(&e),
                "cannot record the call in the database; only this instance answers for it"
            );
            return;
        }
        let shared = Arc::clone(self);
        let call = call.clone();
        tokio::spawn(async move { shared.follow(call).await });
    }

    /// The owner's side of a call: writes its states, executes hang-ups asked for elsewhere.
    async fn follow(&self, call: Call) {
        let mut hang_ups = self.store.hang_ups();
        let mut written = CallStatus {
            state: CallState::Connecting,
            cause: super::EventCause::None,
        };
        let mut hung_up = false;
        let mut heartbeat = tokio::time::Instant::now() + CALL_HEARTBEAT;
        loop {
            let now = call.status();
            if now != written || tokio::time::Instant::now() >= heartbeat {
                let (id, state, cause) = (
                    call.id().to_owned(),
                    state_word(now.state),
                    cause_word(now.cause),
                );
                match self
                    .blocking(move |s| s.call_moved(&id, state, cause))
                    .await
                {
                    Ok(()) => {
                        written = now;
                        heartbeat = tokio::time::Instant::now() + CALL_HEARTBEAT;
                    }
                    Err(e) => tracing::warn!(
                        call_id = call.id(),
                        error = %crate::fault::ErrorChain(&e),
                        "cannot record the call's state in the database"
                    ),
                }
                if written.state == CallState::Disconnected {
                    return;
                }
            }
            let changed = async {
                if now.state == CallState::Connecting {
                    call.answered().await
                } else {
                    call.finished().await
                }
            };
            let heard = async {
                loop {
                    match hang_ups.recv().await {
                        Ok(id) if id == call.id() => return,
                        Ok(_) => {}
                        // (missed some: look at the row)
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            };
            // A hang-up heard of, or the time for a look at the row anyway.
            let look = async {
                tokio::select! {
                    () = heard => {}
                    () = tokio::time::sleep(HANG_UP_POLL) => {}
                }
            };
            tokio::select! {
                _ = changed, if now == written => {}
                () = look => {
                    if !hung_up && now.state != CallState::Disconnected {
                        let id = call.id().to_owned();
                        if let Ok(true) = self
                            .blocking(move |s| s.call_hang_up_requested(&id))
                            .await
                        {
                            tracing::info!(call_id = call.id(), "Disconnect through another instance");
                            hung_up = true;
                            call.hang_up();
                        }
                    }
                }
            }
        }
    }

    /// The state of call `call_id` of `mailbox` placed by another instance; `None` when the
    /// store knows no such call (of this mailbox, not expired).
    pub async fn status(
        &self,
        mailbox: crate::store::MailboxId,
        call_id: &str,
    ) -> Result<Option<CallStatus>, crate::store::StoreError> {
        let id = call_id.to_owned();
        let found = self
            .blocking(move |s| s.call_record(mailbox, &id, keep_secs()))
            .await?;
        Ok(found.map(|record| {
            let orphaned = i64::try_from(CALL_ORPHANED.as_secs()).unwrap_or(i64::MAX);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            if !record.ended
                && (!record.owner_alive || record.updated_at < now.saturating_sub(orphaned))
            {
                // Its owner's liveness lock is gone, or it stopped writing: it died, and the
                // call with it.
                return CallStatus {
                    state: CallState::Disconnected,
                    cause: super::EventCause::Other,
                };
            }
            let state = match record.state.as_str() {
                "connecting" => CallState::Connecting,
                "connected" => CallState::Connected,
                _ => CallState::Disconnected,
            };
            use super::EventCause as C;
            let cause = match record.cause.as_str() {
                "none" => C::None,
                "user_busy" => C::UserBusy,
                "no_answer" => C::NoAnswer,
                "unavailable" => C::Unavailable,
                _ => C::Other,
            };
            CallStatus { state, cause }
        }))
    }

    /// Asks the owner of call `call_id` of `mailbox` to hang it up; false when the store knows
    /// no such call.
    pub async fn request_hang_up(
        &self,
        mailbox: crate::store::MailboxId,
        call_id: &str,
    ) -> Result<bool, crate::store::StoreError> {
        let id = call_id.to_owned();
        self.blocking(move |s| s.call_request_hang_up(mailbox, &id, keep_secs()))
            .await
    }
}
