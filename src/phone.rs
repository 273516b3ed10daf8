//! The telephone side of the PIN lifecycle: the phone logon (with the automatic reset after
//! `LogonFailuresBeforePINReset` failures) and the PIN change. The subscriber access dialogue
//! of an inbound call (`crate::subscriber`) uses these, as do `umws pin check` and
//! `umws pin set`.
//!
//! The rules (UM-SPEC.md, "PIN policy"):
//! * every wrong PIN counts a failure; a right one clears the count;
//! * at every multiple of `LogonFailuresBeforePINReset` failures the PIN is reset and the new
//!   one mailed, through the durable outbox like a ResetPIN, but the count goes on;
//! * at `MaxLogonAttempts` failures the mailbox is locked out: even the right PIN is refused,
//!   until a ResetPIN or an administrator's unlock ([`Store::unlock`]);
//! * a PIN older than `PINLifetime` is reported expired; it may still be used to change it.

use rand::rngs::OsRng;

use crate::mail::{Delivery, MailDelivery, MailError, Outbox};
use crate::pin_policy::PinRejected;
use crate::store::{ChangePinError, PinCheck, ResetPinError, ResetReason, Store, StoreError};

/// The result of a phone logon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logon {
    /// What the store said about the PIN.
    pub check: PinCheck,
    /// Set when this failure made the PIN reset automatically: what became of its mail.
    pub auto_reset: Option<Delivery>,
}

/// The result of a PIN change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinChange {
    /// The PIN was changed.
    Changed,
    /// The old PIN was not accepted (a wrong one counted as a failed logon, maybe resetting
    /// the PIN).
    OldPinRefused(Logon),
    /// The new PIN breaks a rule of the policy ([`PinRejected::rule`] names it).
    Rejected(PinRejected),
}

/// A phone logon or PIN change failed. No message contains a PIN.
#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    /// The store failed.
    #[error("the mailbox store failed")]
    Store(#[from] StoreError),
    /// The automatic PIN reset failed; the PIN is unchanged (the failure stays counted).
    #[error("the automatic PIN reset failed")]
    AutoReset(#[source] ResetPinError<MailError>),
    /// The worker thread running the store call failed (it panicked or was cancelled).
    #[error("a store worker failed")]
    Worker,
}

/// A phone logon of `user` with `pin`: checks it (counting a failure), and resets and mails
/// the PIN when the failure count reaches a multiple of `LogonFailuresBeforePINReset`.
pub fn logon<D: MailDelivery>(
    outbox: &Outbox<D>,
    user: &str,
    pin: &str,
) -> Result<Logon, PhoneError> {
    let check = outbox.store().check_pin(user, pin)?;
    after_check(outbox, user, check)
}

/// Changes the PIN of `user` from `old` to `new` under the mailbox's policy (see
/// [`Store::change_pin`]); a wrong `old` is a failed logon, with its automatic reset.
pub fn change_pin<D: MailDelivery>(
    outbox: &Outbox<D>,
    user: &str,
    old: &str,
    new: &str,
) -> Result<PinChange, PhoneError> {
    match outbox.store().change_pin(user, old, new) {
        Ok(()) => Ok(PinChange::Changed),
        Err(ChangePinError::OldPinRefused(check)) => {
            Ok(PinChange::OldPinRefused(after_check(outbox, user, check)?))
        }
        Err(ChangePinError::Rejected { source }) => Ok(PinChange::Rejected(source)),
        Err(ChangePinError::Store(e)) => Err(e.into()),
    }
}

fn after_check<D: MailDelivery>(
    outbox: &Outbox<D>,
    user: &str,
    check: PinCheck,
) -> Result<Logon, PhoneError> {
    let PinCheck::Wrong {
        reset_due: true,
        failures,
    } = check
    else {
        return Ok(Logon {
            check,
            auto_reset: None,
        });
    };
    let Some(mailbox) = outbox.store().mailbox(user)? else {
        return Ok(Logon {
            check,
            auto_reset: None,
        });
    };
    let delivery = outbox
        .reset_pin(mailbox.id, &mut OsRng, ResetReason::TooManyFailures)
        .map_err(PhoneError::AutoReset)?;
    tracing::info!(mailbox = %mailbox.id, failures, "PIN reset after too many failed logons");
    Ok(Logon {
        check,
        auto_reset: Some(delivery),
    })
}

/// Lifts the lockout of `user` (the administrator's unlock); false for an unknown user.
pub fn unlock(store: &Store, user: &str) -> Result<bool, StoreError> {
    match store.mailbox(user)? {
        Some(m) => store.unlock(m.id).map(|()| true),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::{Maildir, ResetPinMailer};
    use crate::pin_policy::PinPolicy;
    use crate::store::{HashCost, NewMailbox, DEFAULT_POLICY_NAME};
    use std::sync::Arc;

    fn setup() -> (tempfile::TempDir, Outbox<Maildir>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path())
            .unwrap()
            .with_hash_cost(HashCost::Test);
        store
            .set_policy(
                DEFAULT_POLICY_NAME,
                &PinPolicy {
                    logon_failures_before_pin_reset: Some(2),
                    max_logon_attempts: Some(5),
                    ..PinPolicy::default()
                },
            )
            .unwrap();
        store
            .add_mailbox(NewMailbox {
                user: "frank".into(),
                password: "pw".into(),
                um_enabled: true,
                extension: Some("4711".into()),
                email: None,
            })
            .unwrap();
        let mailer = ResetPinMailer::new(Maildir::in_data_dir(dir.path()));
        (dir, Outbox::new(store, Arc::new(mailer)))
    }

    fn mail_count(dir: &tempfile::TempDir) -> usize {
        std::fs::read_dir(dir.path().join("mail/frank/new"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[test]
    fn failures_reset_then_lock_out_and_unlock_restores() {
        let (dir, outbox) = setup();
        let id = outbox.store().mailbox("frank").unwrap().unwrap().id;
        outbox
            .reset_pin(id, &mut OsRng, ResetReason::Requested)
            .unwrap();
        assert_eq!(mail_count(&dir), 1);
        let checks: Vec<Logon> = (0..5)
            .map(|_| logon(&outbox, "frank", "0").unwrap())
            .collect();
        let resets: Vec<bool> = checks.iter().map(|l| l.auto_reset.is_some()).collect();
        assert_eq!(resets, [false, true, false, true, false]);
        assert_eq!(checks[4].check, PinCheck::LockedOut);
        assert_eq!(mail_count(&dir), 3);
        assert_eq!(outbox.store().outbox_len().unwrap(), 0);
        assert!(unlock(outbox.store(), "FRANK").unwrap());
        assert!(!unlock(outbox.store(), "nobody").unwrap());
        assert_eq!(
            change_pin(&outbox, "frank", "0", "480151").unwrap(),
            PinChange::OldPinRefused(Logon {
                check: PinCheck::Wrong {
                    failures: 1,
                    reset_due: false
                },
                auto_reset: None
            })
        );
    }
}
