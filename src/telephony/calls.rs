//! The calls of the running service: the SIP agent, the dial plan, the call limits and the
//! [`CallRegistry`] together, as the call operations use them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::dialplan::{DialError, DialPlan, Dialed};
use super::{Call, CallRegistry, CallRequest, CallState, SipAgent, TelephonyError, UnknownCall};
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
        let (agent, fell_back) = match config.sip_listen {
            Some(addr) => (SipAgent::bind(addr).await?, false),
            None => match SipAgent::bind(DEFAULT_SIP_LISTEN).await {
                Ok(agent) => (agent, false),
                Err(e) => {
                    let fallback = SocketAddr::new(DEFAULT_SIP_LISTEN.ip(), 0);
                    let agent = SipAgent::bind(fallback).await?;
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

    /// Places a call to `dialed` that plays `audio` (8 kHz PCM) for `owner`, within the
    /// limits, and keeps it for [`Telephony::call`].
    pub async fn place(
        &self,
        owner: &str,
        dialed: &Dialed,
        audio: Arc<[i16]>,
    ) -> Result<Call, PlaceError> {
        let _placing = self.placing.lock().await;
        self.check_limits(owner)?;
        let call = self
            .agent
            .place_call(CallRequest {
                target: dialed.uri().to_owned(),
                from_user: self.from_user.clone(),
                audio,
                ring_timeout: self.ring_timeout,
            })
            .await
            .map_err(PlaceError::Agent)?;
        self.registry.insert(owner, call.clone());
        Ok(call)
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
        if left > 0 {
            tracing::warn!(calls = left, "calls had not ended when the server stopped");
        }
        left
    }
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
