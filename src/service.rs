//! The UM web service: the generated [`UmServiceSoap`] trait implemented
//! against the mailbox store and the mail delivery.
//!
//! Every operation acts on the authenticated caller's own mailbox (the
//! [`Caller`] that authentication put into the call context). Store work
//! (SQLite, argon2) runs on tokio's blocking pool.

use std::sync::Arc;

use base64::Engine as _;
use umws_soap::{CallContext, SoapFault};

use crate::fault::UmError;
use crate::generated::types;
use crate::generated::um_service_soap::{operations, UmServiceSoap};
use crate::mail::{Backoff, Delivery, MailDelivery, Outbox, ResetPinMailer};
use crate::store::{Mailbox, MailboxId, ResetReason, Store};

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

/// The UM service over a [`Store`] and a mail delivery.
pub struct UmService {
    store: Store,
    outbox: Arc<Outbox<Box<dyn MailDelivery>>>,
}

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
        Self { store, outbox }
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
            check_dial_string(d)?;
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
        Self::um_mailbox(ctx)?;
        check_object_id(request.entry_id.as_deref().unwrap_or(""))?;
        check_dial_string(request.dial_string.as_deref().unwrap_or(""))?;
        Err(UmError::NoCallBackend {
            operation: operations::PLAY_ON_PHONE,
        }
        .into())
    }

    async fn get_call_info(
        &self,
        ctx: &CallContext,
        request: types::GetCallInfo,
    ) -> Result<types::GetCallInfoResponse, SoapFault> {
        Self::um_mailbox(ctx)?;
        check_call_id(request.call_id.as_deref().unwrap_or(""))?;
        // No call was ever placed by this server, so no call id is known.
        Err(UmError::InvalidCallId.into())
    }

    async fn disconnect(
        &self,
        ctx: &CallContext,
        request: types::Disconnect,
    ) -> Result<types::DisconnectResponse, SoapFault> {
        Self::um_mailbox(ctx)?;
        check_call_id(request.call_id.as_deref().unwrap_or(""))?;
        Err(UmError::InvalidCallId.into())
    }

    async fn play_on_phone_greeting(
        &self,
        ctx: &CallContext,
        request: types::PlayOnPhoneGreeting,
    ) -> Result<types::PlayOnPhoneGreetingResponse, SoapFault> {
        Self::um_mailbox(ctx)?;
        check_dial_string(request.dial_string.as_deref().unwrap_or(""))?;
        Err(UmError::NoCallBackend {
            operation: operations::PLAY_ON_PHONE_GREETING,
        }
        .into())
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
