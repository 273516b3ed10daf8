//! Assembling the UM web service: store, mail, authentication, SOAP server.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use umws_soap::namespace::NamespaceAliases;
use umws_soap::server::{AuthDecision, Credentials, ServerConfig, SoapServer};
use umws_soap::wsdl::WsdlDocuments;

use crate::auth::{user_name_too_long, Authenticator, Completion, LogUser, Lookup, Verified};
use crate::config::ServeConfig;
use crate::fault::ExchangeFaults;
use crate::generated::um_service_soap::UmServiceSoapServer;
use crate::mail::{default_from, MailDelivery, MailError, Maildir, ResetPinMailer, SmtpRelay};
use crate::service::{Caller, UmService};
use crate::store::Store;
use crate::telephony::Telephony;
use crate::throttle::{ClientKey, Permit, Refusal, Throttle, ThrottlePolicy};

/// The URL paths the service answers on: Exchange 2007's and Exchange
/// 2010's.
pub const PATHS: [&str; 2] = ["/UnifiedMessaging/Service.asmx", "/EWS/UM2007Legacy.asmx"];

/// How often the server retries the delivery of queued PIN mails.
pub const OUTBOX_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// The realm of HTTP Basic authentication.
pub const REALM: &str = "umws";

/// The alias prefix of the namespace spelling in Microsoft's translated
/// documentation, and the canonical prefix it stands for.
pub const HTTPS_ALIAS: (&str, &str) = (
    "https://schemas.microsoft.com/",
    "http://schemas.microsoft.com/",
);

/// The WSDL and schemas as published on `GET <path>?wsdl`.
pub fn wsdl_documents() -> WsdlDocuments {
    WsdlDocuments::new(
        include_str!("../schemas/um.wsdl"),
        vec![
            (
                "messages.xsd".into(),
                include_str!("../schemas/messages.xsd").into(),
            ),
            (
                "types.xsd".into(),
                include_str!("../schemas/types.xsd").into(),
            ),
        ],
    )
}

/// HTTP Basic authentication against the mailbox store, with failed attempts limited per
/// user and per client ([`Throttle`]).
///
/// A logon goes: a user name longer than the store allows is refused (401) before anything
/// else; a password in the credentials cache is let in unless its user name is throttled;
/// any other attempt needs an argon2 verification, which the throttle admits or refuses
/// unchecked (429 with `Retry-After`). Failures are logged at INFO with the (escaped,
/// shortened) user name when a mailbox of that name exists; a name that is no mailbox's -
/// perhaps a password typed into the wrong field - only at DEBUG.
#[derive(Clone)]
pub struct MailboxAuth {
    inner: Authenticator,
    throttle: Arc<Throttle>,
}

impl MailboxAuth {
    /// Authentication over `store`, with the verified-credentials cache and
    /// the default throttle.
    pub fn new(store: Store) -> Self {
        Self::with_throttle(store, ThrottlePolicy::default())
    }

    /// Authentication over `store` with a throttle of `policy`. Within a tokio runtime, the
    /// throttle's sweeper is started ([`Throttle::spawn_sweeper`]).
    pub fn with_throttle(store: Store, policy: ThrottlePolicy) -> Self {
        let throttle = Arc::new(Throttle::new(policy).with_store(&store));
        throttle.spawn_sweeper();
        Self {
            inner: Authenticator::new(store),
            throttle,
        }
    }

    /// The underlying authenticator (for its statistics).
    pub fn authenticator(&self) -> &Authenticator {
        &self.inner
    }

    /// The throttle (for tests and diagnostics).
    pub fn throttle(&self) -> &Arc<Throttle> {
        &self.throttle
    }

    /// The [`Completion`] of an admitted verification: reports it to the throttle and logs a
    /// failure.
    fn on_verified(permit: Permit, user: &str, client: Option<IpAddr>) -> Completion {
        let shown = LogUser(user).to_string();
        Box::new(move |verified: Option<&Verified>| {
            permit.finish(
                verified.map(|v| matches!(v, Verified::Right(_))),
                Instant::now(),
            );
            let client = client.map(tracing::field::display);
            match verified {
                Some(Verified::Wrong { known_user: true }) => {
                    tracing::info!(user = %shown, client, "authentication failed: wrong password");
                }
                Some(Verified::Wrong { known_user: false }) => {
                    tracing::info!(client, "authentication failed: no such user");
                    tracing::debug!(user = %shown, "the unknown user name");
                }
                Some(Verified::Right(_)) | None => {}
            }
        })
    }
}

impl umws_soap::server::Authenticator for MailboxAuth {
    async fn authenticate(
        &self,
        credentials: Option<Credentials>,
        remote_addr: Option<SocketAddr>,
    ) -> Result<AuthDecision, Box<dyn std::error::Error + Send + Sync>> {
        let Some(credentials) = credentials else {
            return Ok(AuthDecision::Deny);
        };
        let (user, password) = (credentials.user(), credentials.password());
        if user_name_too_long(user) {
            tracing::debug!(bytes = user.len(), "logon refused: user name too long");
            return Ok(AuthDecision::Deny);
        }
        let refused = |refusal: Refusal| {
            tracing::debug!(
                user = %LogUser(user),
                retry_after_ms = refusal.retry_after.as_millis() as u64,
                "logon refused unchecked: throttled"
            );
            Ok(AuthDecision::Throttled(refusal.retry_after))
        };
        let mailbox = match self.inner.lookup(user, password)? {
            Lookup::Hit(mailbox) => match self.throttle.admit_verified(user, Instant::now) {
                Ok(()) => Some(mailbox),
                Err(refusal) => return refused(refusal),
            },
            lookup => {
                let ip = remote_addr.map(|a| a.ip());
                let known_wrong = matches!(lookup, Lookup::Mismatch);
                let user_key = self.throttle.user_key(user);
                let client = ip.map(ClientKey::of);
                // Other instances' counts (a shared database), read before the lock below.
                let shared = self.throttle.shared_windows(user_key, client).await?;
                let admit = || {
                    let permit = self.throttle.admit_shared(
                        user_key,
                        client,
                        known_wrong,
                        shared,
                        Instant::now(),
                    )?;
                    Ok(Self::on_verified(permit, user, ip))
                };
                // Boxed: the future of every request holds only what a cache hit needs.
                match Box::pin(self.inner.verify_admitted(user, password, admit)).await? {
                    Ok(verified) => verified.mailbox(),
                    Err(refusal) => return refused(refusal),
                }
            }
        };
        match mailbox {
            Some(mailbox) => {
                let mut ext = http::Extensions::new();
                ext.insert(Caller {
                    mailbox: mailbox.id,
                    user: credentials.into_user(),
                    record: mailbox,
                });
                Ok(AuthDecision::Allow(ext))
            }
            None => Ok(AuthDecision::Deny),
        }
    }
}

/// The UM SOAP server type.
pub type UmServer = SoapServer<UmServiceSoapServer<UmService>, MailboxAuth>;

/// Errors assembling the server.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The sender address is invalid.
    #[error("invalid mail_from address")]
    MailFrom(#[source] lettre::address::AddressError),
    /// The SMTP relay settings cannot be used.
    #[error("invalid SMTP relay settings")]
    Smtp(#[source] MailError),
}

/// Builds the server over an open store and its data directory. Inside a tokio runtime this
/// also starts the outbox delivery: mails queued by an earlier run are delivered at once,
/// failed ones retried with the configured backoff (checked every [`OUTBOX_RETRY_INTERVAL`] or
/// every backoff base, when shorter). Mails go to the SMTP relay of `config.smtp` when set, else
/// into the Maildirs under `data`.
pub fn build_server(store: Store, data: &Path, config: &ServeConfig) -> Result<UmServer, AppError> {
    build_server_with_telephony(store, data, config, None)
}

/// [`build_server`] whose call operations place calls with `telephony` (`None`: they answer
/// a `TransportException`, as without a telephony backend).
pub fn build_server_with_telephony(
    store: Store,
    data: &Path,
    config: &ServeConfig,
    telephony: Option<Arc<Telephony>>,
) -> Result<UmServer, AppError> {
    let from = match &config.mail_from {
        Some(from) => from.parse().map_err(AppError::MailFrom)?,
        None => default_from(),
    };
    let delivery: Box<dyn MailDelivery> = match &config.smtp {
        Some(smtp) => {
            let relay = SmtpRelay::new(smtp, &from).map_err(AppError::Smtp)?;
            tracing::info!(relay = %relay.relay(), starttls = ?smtp.starttls, "PIN mails go to an SMTP relay");
            Box::new(relay)
        }
        None => Box::new(Maildir::in_data_dir(data)),
    };
    let mailer = ResetPinMailer::new(delivery).with_from(from);
    let mut service = UmService::with_backoff(store.clone(), mailer, config.backoff);
    if let Some(telephony) = telephony {
        // Calls to the SIP address are subscriber access calls.
        telephony.answer_calls(crate::subscriber::inbound(
            Arc::clone(service.outbox()),
            config.telephony.max_calls,
            config.telephony.subscriber_access.clone(),
            config.telephony.zone(),
        ));
        service = service.with_telephony(telephony);
    }
    // Deliver what a previous run left in the outbox, then keep retrying what fails.
    Arc::clone(service.outbox()).spawn_drain(OUTBOX_RETRY_INTERVAL);
    let server_config = ServerConfig {
        paths: PATHS.iter().map(|p| (*p).to_owned()).collect(),
        max_body_bytes: config.max_body_bytes,
        header_read_timeout: Some(config.header_read_timeout),
        body_read_timeout: Some(config.body_read_timeout),
        max_connections: config.max_connections,
        aliases: NamespaceAliases::none().with(HTTPS_ALIAS.0, HTTPS_ALIAS.1),
        accept_aliases: !config.strict_namespaces,
        realm: REALM.into(),
        wsdl: Some(wsdl_documents()),
        tls: config.tls.is_some(),
        ..ServerConfig::default()
    };
    Ok(SoapServer::new(
        UmServiceSoapServer::new(service),
        MailboxAuth::new(store),
        ExchangeFaults,
        server_config,
    ))
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is
/// called (not when the future is first polled), so call it before telling
/// anyone the server is up: a signal that arrives in between is not lost.
/// Must be called within a tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    if tokio::signal::ctrl_c().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
