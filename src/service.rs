//! The UM web service: the generated [`UmServiceSoap`] trait implemented
//! against the mailbox store and the mail delivery.
//!
//! Every operation acts on the authenticated caller's own mailbox (the
//! [`Caller`] that authentication put into the call context). Store work
//! (SQLite, argon2) runs on tokio's blocking pool.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use umws_soap::{CallContext, SoapFault};

use crate::audio::Audio;
use crate::fault::UmError;
use crate::generated::types;
use crate::generated::um_service_soap::{operations, UmServiceSoap};
use crate::mail::{Backoff, Delivery, MailDelivery, Outbox, ResetPinMailer};
use crate::store::voicemail::GreetingType;
use crate::store::{Mailbox, MailboxId, ResetReason, Store};
use crate::telephony::dialplan::Dialed;
use crate::telephony::{
    Call, CallMedia, CallState, CallStatus, EventCause, GreetingSession, SharedCalls, Telephony,
};

/// The authenticated caller, put into [`CallContext::extensions`] by
/// authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's mailbox.
    pub mailbox: MailboxId,
    /// The user name the caller logged on with.
    pub user: String,
    /// The caller's mailbox as read while authenticating this request: the
    /// read-only operations answer from it without a second read.
    pub record: Arc<Mailbox>,
}

/// The UM service over a [`Store`] and a mail delivery, and the [`Telephony`] that places
/// the calls of PlayOnPhone (without it, the call operations answer faults).
pub struct UmService {
    store: Store,
    outbox: Arc<Outbox<Box<dyn MailDelivery>>>,
    telephony: Option<Arc<Telephony>>,
    /// On PostgreSQL: the calls of all instances (GetCallInfo and Disconnect of a call that
    /// another instance placed).
    shared_calls: Option<Arc<SharedCalls>>,
}

/// A call of the caller, found here or through the store.
enum FoundCall {
    /// Placed by this instance.
    Here(Call),
    /// Placed by another instance on the same database; its state as last recorded.
    Elsewhere(CallStatus),
}

/// How long Disconnect waits for the call to end (a phone answers CANCEL and BYE at once;
/// one that does not is not waited for longer).
const DISCONNECT_WAIT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for UmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmService").finish_non_exhaustive()
    }
}

impl UmService {
    /// A service over `store`, mailing new PINs with `mailer` through the store's outbox.
    /// Mails left queued (by a crash or a failed delivery) are delivered by
    /// [`Outbox::deliver_pending`]; see [`outbox`](Self::outbox).
    pub fn new(store: Store, mailer: ResetPinMailer<Box<dyn MailDelivery>>) -> Self {
        Self::with_backoff(store, mailer, Backoff::default())
    }

    /// [`new`](Self::new) with the retry [`Backoff`] of failed mail deliveries.
    pub fn with_backoff(
        store: Store,
        mailer: ResetPinMailer<Box<dyn MailDelivery>>,
        backoff: Backoff,
    ) -> Self {
        let outbox = Arc::new(Outbox::new(store.clone(), Arc::new(mailer)).with_backoff(backoff));
        Self {
            store,
            outbox,
            telephony: None,
            shared_calls: None,
        }
    }

    /// The service placing calls with `telephony`.
    /// On PostgreSQL the calls are also recorded in the database, so that GetCallInfo and
    /// Disconnect work on every instance.
    pub fn with_telephony(mut self, telephony: Arc<Telephony>) -> Self {
        self.telephony = Some(telephony);
        self.shared_calls = self.store.as_postgres().cloned().map(SharedCalls::new);
        self
    }

    /// Records a call just placed for `mailbox` in the database, when it is shared.
    async fn share(&self, call: &Call, mailbox: MailboxId) {
        if let Some(shared) = &self.shared_calls {
            shared.placed(call, mailbox).await;
        }
    }

    /// The caller's call `call_id`, placed here or (on PostgreSQL) by another instance: any
    /// call id that is not one of the caller's is `InvalidCallIdException`.
    async fn find_call(
        &self,
        ctx: &CallContext,
        call_id: Option<&str>,
    ) -> Result<FoundCall, UmError> {
        match self.own_call(ctx, call_id) {
            Ok(call) => Ok(FoundCall::Here(call)),
            Err(UmError::InvalidCallId) if self.telephony.is_some() => {
                let Some(shared) = &self.shared_calls else {
                    return Err(UmError::InvalidCallId);
                };
                let id = Self::caller(ctx)?;
                let call_id = call_id.unwrap_or("").trim();
                shared
                    .status(id, call_id)
                    .await?
                    .map(FoundCall::Elsewhere)
                    .ok_or(UmError::InvalidCallId)
            }
            Err(e) => Err(e),
        }
    }

    /// Disconnect of a call placed by another instance: the request goes through the store to
    /// the owner (which looks for it every 200 ms); the answer waits (a little) for the end,
    /// as for a call of this instance.
    async fn disconnect_elsewhere(
        &self,
        ctx: &CallContext,
        call_id: Option<&str>,
    ) -> Result<(), UmError> {
        let (Some(shared), id) = (&self.shared_calls, Self::caller(ctx)?) else {
            return Err(UmError::InvalidCallId);
        };
        let call_id = call_id.unwrap_or("").trim();
        if !shared.request_hang_up(id, call_id).await? {
            return Err(UmError::InvalidCallId);
        }
        let deadline = tokio::time::Instant::now() + DISCONNECT_WAIT;
        while tokio::time::Instant::now() < deadline {
            match shared.status(id, call_id).await? {
                Some(status) if status.state != CallState::Disconnected => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => return Ok(()),
            }
        }
        tracing::info!(call_id, "Disconnect: the call has not ended yet");
        Ok(())
    }

    /// The key of the caller's calls in the registry: the mailbox id.
    fn call_owner(id: MailboxId) -> String {
        id.0.to_string()
    }

    /// The telephony and the URI to call for a call operation's `dial_string`: an empty one
    /// calls the mailbox's PlayOnPhoneDialString. Without telephony, the dial string is still
    /// checked, then the operation answers that there is no call backend.
    fn dial(
        &self,
        ctx: &CallContext,
        dial_string: Option<&str>,
        operation: &'static str,
    ) -> Result<(&Arc<Telephony>, Dialed), UmError> {
        let mailbox = Self::um_mailbox(ctx)?;
        let Some(telephony) = &self.telephony else {
            check_stored_dial_string(dial_string.unwrap_or("").trim())?;
            return Err(UmError::NoCallBackend { operation });
        };
        let dial = match dial_string.map(str::trim) {
            Some(dial) if !dial.is_empty() => dial,
            _ => mailbox
                .play_on_phone_dial_string
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .ok_or(UmError::InvalidPhoneNumber)?,
        };
        Ok((telephony, telephony.dial(dial)?))
    }

    /// The caller's call `call_id`: any call id that is not one of the caller's (malformed,
    /// unknown, another user's, expired) is `InvalidCallIdException`.
    fn own_call(&self, ctx: &CallContext, call_id: Option<&str>) -> Result<Call, UmError> {
        let id = Self::caller(ctx)?;
        Self::um_mailbox(ctx)?;
        let call_id = call_id.unwrap_or("").trim();
        check_call_id(call_id)?;
        let telephony = self.telephony.as_ref().ok_or(UmError::InvalidCallId)?;
        telephony
            .call(&Self::call_owner(id), call_id)
            .map_err(|_| UmError::InvalidCallId)
    }

    /// The outbox the PIN mails go through (to run its background delivery).
    pub fn outbox(&self) -> &Arc<Outbox<Box<dyn MailDelivery>>> {
        &self.outbox
    }

    /// The caller's mailbox id, from the call context.
    fn caller(ctx: &CallContext) -> Result<MailboxId, UmError> {
        ctx.extensions
            .get::<Caller>()
            .map(|c| c.mailbox)
            .ok_or(UmError::InvalidPrincipal)
    }

    /// Runs `f` with the store on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, UmError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, UmError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store)).await?
    }

    /// The caller's mailbox as read while authenticating this request.
    /// Reading it again would cost a blocking-pool round trip per request
    /// (see BENCHMARKS.md) and could not be fresher in any useful way.
    fn record(ctx: &CallContext) -> Result<&Mailbox, UmError> {
        ctx.extensions
            .get::<Caller>()
            .map(|c| &*c.record)
            .ok_or(UmError::InvalidPrincipal)
    }

    /// The caller's mailbox, which must be UM-enabled.
    fn um_mailbox(ctx: &CallContext) -> Result<&Mailbox, UmError> {
        let mailbox = Self::record(ctx)?;
        if mailbox.um_enabled {
            Ok(mailbox)
        } else {
            Err(UmError::NotUmEnabled)
        }
    }

    /// Runs a setter on the caller's UM-enabled mailbox.
    async fn update<F>(&self, ctx: &CallContext, f: F) -> Result<(), UmError>
    where
        F: FnOnce(&Store, MailboxId) -> Result<(), crate::store::StoreError> + Send + 'static,
    {
        let id = Self::caller(ctx)?;
        self.blocking(move |store| {
            enabled_mailbox(store, id)?;
            f(store, id).map_err(UmError::from)
        })
        .await
    }
}

fn enabled_mailbox(store: &Store, id: MailboxId) -> Result<Mailbox, UmError> {
    let mailbox = store.mailbox_by_id(id)?.ok_or(UmError::InvalidPrincipal)?;
    if mailbox.um_enabled {
        Ok(mailbox)
    } else {
        Err(UmError::NotUmEnabled)
    }
}

/// The most characters a dial string may have.
const MAX_DIAL_STRING: usize = 64;

/// A dial string: digits with the usual separators, at least one digit.
fn check_dial_string(s: &str) -> Result<(), UmError> {
    let ok = s.chars().count() <= MAX_DIAL_STRING
        && s.chars().any(|c| c.is_ascii_digit())
        && s.chars().all(|c| {
            c.is_ascii_digit() || matches!(c, '+' | '*' | '#' | '-' | '(' | ')' | ' ' | '.')
        });
    if ok {
        Ok(())
    } else {
        Err(UmError::InvalidPhoneNumber)
    }
}

/// What SetPlayOnPhoneDialString stores: a dial string ([`check_dial_string`]) or a `sip:`
/// URI (checked as PlayOnPhone will; the dial plan decides at call time).
fn check_stored_dial_string(s: &str) -> Result<(), UmError> {
    let scheme = s
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("sip" | "sips") => Ok(crate::telephony::dialplan::DialPlan::check_syntax(s)?),
        _ => check_dial_string(s),
    }
}

/// A non-empty base64 id (an entry id or a folder id).
fn check_object_id(s: &str) -> Result<(), UmError> {
    match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
        Ok(bytes) if !bytes.is_empty() => Ok(()),
        _ => Err(UmError::InvalidObjectId),
    }
}

/// A call id: base64 of UTF-8 `"<uuid>@<host>"`.
fn check_call_id(s: &str) -> Result<(), UmError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| UmError::InvalidCallId)?;
    let text = String::from_utf8(bytes).map_err(|_| UmError::InvalidCallId)?;
    match text.split_once('@') {
        Some((id, host)) if uuid::Uuid::parse_str(id).is_ok() && !host.is_empty() => Ok(()),
        _ => Err(UmError::InvalidCallId),
    }
}

impl UmServiceSoap for UmService {
    async fn is_um_enabled(
        &self,
        ctx: &CallContext,
        _request: types::IsUmEnabled,
    ) -> Result<types::IsUmEnabledResponse, SoapFault> {
        Ok(types::IsUmEnabledResponse {
            is_um_enabled_response: Self::record(ctx)?.um_enabled,
        })
    }

    async fn get_um_properties(
        &self,
        ctx: &CallContext,
        _request: types::GetUmProperties,
    ) -> Result<types::GetUmPropertiesResponse, SoapFault> {
        let m = Self::um_mailbox(ctx)?;
        Ok(types::GetUmPropertiesResponse {
            get_um_properties_response: types::UmPropertiesType {
                oof_status: m.oof_status,
                missed_call_notification_enabled: m.missed_call_notification_enabled,
                play_on_phone_dial_string: m.play_on_phone_dial_string.clone(),
                telephone_access_numbers: m.telephone_access_numbers.clone(),
                telephone_access_folder_email: m.telephone_access_folder_email.clone(),
            },
        })
    }

    async fn set_oof_status(
        &self,
        ctx: &CallContext,
        request: types::SetOofStatus,
    ) -> Result<types::SetOofStatusResponse, SoapFault> {
        let status = request.status;
        self.update(ctx, move |s, id| s.set_oof_status(id, status))
            .await?;
        Ok(types::SetOofStatusResponse {})
    }

    async fn set_play_on_phone_dial_string(
        &self,
        ctx: &CallContext,
        request: types::SetPlayOnPhoneDialString,
    ) -> Result<types::SetPlayOnPhoneDialStringResponse, SoapFault> {
        let dial = request
            .dial_string
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty());
        if let Some(d) = &dial {
            check_stored_dial_string(d)?;
        }
        self.update(ctx, move |s, id| {
            s.set_play_on_phone_dial_string(id, dial.as_deref())
        })
        .await?;
        Ok(types::SetPlayOnPhoneDialStringResponse {})
    }

    async fn set_telephone_access_folder_email(
        &self,
        ctx: &CallContext,
        request: types::SetTelephoneAccessFolderEmail,
    ) -> Result<types::SetTelephoneAccessFolderEmailResponse, SoapFault> {
        let folder = request
            .base_64_folder_id
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty());
        if let Some(f) = &folder {
            check_object_id(f)?;
        }
        self.update(ctx, move |s, id| {
            s.set_telephone_access_folder_email(id, folder.as_deref())
        })
        .await?;
        Ok(types::SetTelephoneAccessFolderEmailResponse {})
    }

    async fn set_missed_call_notification_enabled(
        &self,
        ctx: &CallContext,
        request: types::SetMissedCallNotificationEnabled,
    ) -> Result<types::SetMissedCallNotificationEnabledResponse, SoapFault> {
        let status = request.status;
        self.update(ctx, move |s, id| {
            s.set_missed_call_notification_enabled(id, status)
        })
        .await?;
        Ok(types::SetMissedCallNotificationEnabledResponse {})
    }

    async fn reset_pin(
        &self,
        ctx: &CallContext,
        _request: types::ResetPin,
    ) -> Result<types::ResetPinResponse, SoapFault> {
        let id = Self::caller(ctx)?;
        let outbox = Arc::clone(&self.outbox);
        // The PIN and its queued mail commit together; an answer is sent only after that
        // commit, so a success means the mail is delivered or durably queued (a mail left
        // queued, also when the client goes away in between, is delivered by the outbox).
        // The reset is argon2-bound (the new PIN against the history, then its hash): it
        // waits for an argon2 turn without holding a blocking thread, and gives the turn back
        // before the mail is delivered (an SMTP relay may take its time).
        let queue = Arc::clone(&outbox);
        let mail = crate::store::spawn_argon2(move || {
            queue
                .queue_reset_pin(id, &mut rand::rngs::OsRng, ResetReason::Requested)
                .map_err(UmError::ResetPin)
        })
        .await
        .map_err(UmError::from)??;
        let delivery = self
            .blocking(move |_| Ok(outbox.deliver_reset_mail(&mail)))
            .await?;
        match delivery {
            Delivery::Delivered(_) => tracing::info!(mailbox = id.0, "PIN reset and mailed"),
            Delivery::Queued => tracing::info!(mailbox = id.0, "PIN reset; mail queued"),
        }
        Ok(types::ResetPinResponse {})
    }

    async fn play_on_phone(
        &self,
        ctx: &CallContext,
        request: types::PlayOnPhone,
    ) -> Result<types::PlayOnPhoneResponse, SoapFault> {
        let id = Self::caller(ctx)?;
        let entry_id = request.entry_id.as_deref().unwrap_or("").trim().to_owned();
        check_object_id(&entry_id)?;
        let (telephony, dialed) = self.dial(
            ctx,
            request.dial_string.as_deref(),
            operations::PLAY_ON_PHONE,
        )?;
        let owner = Self::call_owner(id);
        telephony.check_limits(&owner).map_err(UmError::from)?;
        let message = self
            .blocking(move |store| Ok(store.voice_message(id, &entry_id)?))
            .await?;
        let audio: Arc<[i16]> = Arc::from(Audio::from_le_bytes(&message.audio).samples());
        let call = telephony
            .place(&owner, &dialed, CallMedia::Play(audio))
            .await
            .map_err(UmError::from)?;
        self.share(&call, id).await;
        tracing::info!(mailbox = id.0, call_id = call.id(), "PlayOnPhone: calling");
        Ok(types::PlayOnPhoneResponse {
            play_on_phone_response: Some(call.id().to_owned()),
        })
    }

    async fn get_call_info(
        &self,
        ctx: &CallContext,
        request: types::GetCallInfo,
    ) -> Result<types::GetCallInfoResponse, SoapFault> {
        let status = match self.find_call(ctx, request.call_id.as_deref()).await? {
            FoundCall::Here(call) => call.status(),
            FoundCall::Elsewhere(status) => status,
        };
        Ok(types::GetCallInfoResponse {
            get_call_info_response: types::UmCallInfoType {
                call_state: match status.state {
                    CallState::Connecting => types::UmCallStateType::Connecting,
                    CallState::Connected => types::UmCallStateType::Connected,
                    CallState::Disconnected => types::UmCallStateType::Disconnected,
                },
                event_cause: match status.cause {
                    EventCause::None => types::UmEventCauseType::None,
                    EventCause::UserBusy => types::UmEventCauseType::UserBusy,
                    EventCause::NoAnswer => types::UmEventCauseType::NoAnswer,
                    EventCause::Unavailable => types::UmEventCauseType::Unavailable,
                    EventCause::Other => types::UmEventCauseType::Other,
                },
            },
        })
    }

    async fn disconnect(
        &self,
        ctx: &CallContext,
        request: types::Disconnect,
    ) -> Result<types::DisconnectResponse, SoapFault> {
        let call = match self.find_call(ctx, request.call_id.as_deref()).await? {
            FoundCall::Here(call) => call,
            FoundCall::Elsewhere(status) => {
                if status.state != CallState::Disconnected {
                    self.disconnect_elsewhere(ctx, request.call_id.as_deref())
                        .await?;
                }
                return Ok(types::DisconnectResponse {});
            }
        };
        // CANCEL while it rings, BYE once connected, nothing once it ended; the answer waits
        // (a little) for the end, so a GetCallInfo after it says Disconnected.
        call.hang_up();
        if tokio::time::timeout(DISCONNECT_WAIT, call.finished())
            .await
            .is_err()
        {
            tracing::info!(
                call_id = call.id(),
                "Disconnect: the call has not ended yet"
            );
        }
        Ok(types::DisconnectResponse {})
    }

    async fn play_on_phone_greeting(
        &self,
        ctx: &CallContext,
        request: types::PlayOnPhoneGreeting,
    ) -> Result<types::PlayOnPhoneGreetingResponse, SoapFault> {
        let id = Self::caller(ctx)?;
        let kind = match request.greeting_type {
            types::UmGreetingType::NormalCustom => GreetingType::NormalCustom,
            types::UmGreetingType::OofCustom => GreetingType::OofCustom,
        };
        let (telephony, dialed) = self.dial(
            ctx,
            request.dial_string.as_deref(),
            operations::PLAY_ON_PHONE_GREETING,
        )?;
        let owner = Self::call_owner(id);
        telephony.check_limits(&owner).map_err(UmError::from)?;
        let stored = self
            .blocking(move |store| Ok(store.greeting(id, kind)?))
            .await?;
        // A greeting recorded on the call is saved in the stored one's place.
        let session = GreetingSession::for_mailbox(self.store.clone(), id, kind, stored);
        let call = telephony
            .place(&owner, &dialed, CallMedia::Greeting(session))
            .await
            .map_err(UmError::from)?;
        self.share(&call, id).await;
        tracing::info!(
            mailbox = id.0,
            call_id = call.id(),
            "PlayOnPhoneGreeting: calling"
        );
        Ok(types::PlayOnPhoneGreetingResponse {
            play_on_phone_greeting_response: Some(call.id().to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_strings() {
        assert!(check_dial_string("+1 (425) 555-0100").is_ok());
        assert!(check_dial_string("1234#").is_ok());
        assert!(check_dial_string("").is_err());
        assert!(check_dial_string("call me").is_err());
        assert!(check_dial_string(&"1".repeat(65)).is_err());
        assert!(check_stored_dial_string("sip:phone@127.0.0.1:5062").is_ok());
        assert!(check_stored_dial_string("+1 (425) 555-0100").is_ok());
        assert!(matches!(
            check_stored_dial_string("sip:@127.0.0.1"),
            Err(UmError::Dial(_))
        ));
        assert!(matches!(
            check_stored_dial_string("call me"),
            Err(UmError::InvalidPhoneNumber)
        ));
    }

    #[test]
    fn ids() {
        assert!(check_object_id("AAECAw==").is_ok());
        assert!(check_object_id("not base64!").is_err());
        assert!(check_object_id("").is_err());
        let good = base64::engine::general_purpose::STANDARD
            .encode(format!("{}@um.example.com", uuid::Uuid::new_v4()));
        assert!(check_call_id(&good).is_ok());
        assert!(check_call_id("AAECAw==").is_err());
    }
}
