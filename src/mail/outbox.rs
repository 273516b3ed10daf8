//! The durable outbox of PIN mails: how a PIN reset and its mail become durable together.
//!
//! 1. [`Store::reset_pin_queued`] changes the PIN and inserts the rendered mail (with a unique
//!    key) into the `outbox` table in one transaction, and commits.
//! 2. [`Outbox::deliver`] hands the row to the [`MailDelivery`], which delivers it idempotently
//!    by its key (the Maildir names the file after the row), then deletes the row.
//! 3. Whatever is left over (a crash between 1 and 2, a failed delivery) is delivered by
//!    [`Outbox::deliver_pending`], which the server runs at start and then periodically
//!    ([`Outbox::spawn_drain`]).
//!
//! So after a reset returns, the PIN is durable and its mail is delivered or durably queued; a
//! crash before the commit leaves the old PIN and no mail; a crash after it leaves the new PIN
//! and a queued mail that is delivered exactly once. The rows hold the PIN in clear (like any
//! mail queue): they are deleted once delivered and their bodies are never logged.

use std::sync::Arc;
use std::time::Duration;

use rand::{CryptoRng, RngCore};

use super::{DeliveryReceipt, MailDelivery, MailError, ResetPinMailer};
use crate::store::{MailboxId, OutboxMail, ResetPinError, ResetReason, Store, StoreError};

/// How many rows [`Outbox::deliver_pending`] reads at a time.
const BATCH: u32 = 64;

/// What became of the mail of a PIN reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered now.
    Delivered(DeliveryReceipt),
    /// Delivery failed for now; the mail stays in the outbox and is retried.
    Queued,
}

/// What [`Outbox::deliver_pending`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Mails delivered (or found delivered already) and removed.
    pub delivered: u64,
    /// Mails whose delivery failed; they stay queued.
    pub failed: u64,
}

/// A failure to deliver an outbox mail. Messages never contain the PIN.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The delivery failed; the mail stays queued.
    #[error("cannot deliver queued mail {key}")]
    Deliver {
        /// The mail's key.
        key: String,
        /// The cause.
        #[source]
        source: MailError,
    },
    /// The store failed.
    #[error("outbox store error")]
    Store(#[from] StoreError),
}

/// PIN resets with their mails, through the store's outbox and a mailer.
pub struct Outbox<D> {
    store: Store,
    mailer: Arc<ResetPinMailer<D>>,
}

impl<D> std::fmt::Debug for Outbox<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<D: MailDelivery> Outbox<D> {
    /// An outbox over `store`, rendering and delivering with `mailer`.
    pub fn new(store: Store, mailer: Arc<ResetPinMailer<D>>) -> Self {
        Self { store, mailer }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Resets the PIN of mailbox `id` and queues its mail in one transaction
    /// ([`Store::reset_pin_queued`]), then delivers the mail. A failed delivery is logged and
    /// answered [`Delivery::Queued`]: the PIN is changed and the mail will follow. An error
    /// means that nothing changed.
    pub fn reset_pin<R>(
        &self,
        id: MailboxId,
        rng: &mut R,
        reason: ResetReason,
    ) -> Result<Delivery, ResetPinError<MailError>>
    where
        R: CryptoRng + RngCore + ?Sized,
    {
        let mail = self
            .store
            .reset_pin_queued(id, rng, reason, |outcome, key| {
                self.mailer.render(outcome, key)
            })?;
        match self.deliver(&mail) {
            Ok(receipt) => Ok(Delivery::Delivered(receipt)),
            Err(e) => {
                tracing::warn!(
                    mailbox = %id,
                    error = %crate::fault::ErrorChain(&e),
                    "PIN mail queued; delivery failed, will retry"
                );
                Ok(Delivery::Queued)
            }
        }
    }

    /// Delivers one outbox mail and removes it from the outbox. On failure the attempt is
    /// counted and the mail stays queued.
    pub fn deliver(&self, mail: &OutboxMail) -> Result<DeliveryReceipt, OutboxError> {
        match self.mailer.delivery().deliver_queued(mail) {
            Ok(receipt) => {
                self.store.outbox_remove(mail.id)?;
                Ok(receipt)
            }
            Err(source) => {
                self.store.outbox_record_failure(mail.id)?;
                Err(OutboxError::Deliver {
                    key: mail.key.clone(),
                    source,
                })
            }
        }
    }

    /// Delivers every mail queued when it is called (oldest first); failures stay queued and are
    /// counted. Only a store failure is an error.
    pub fn deliver_pending(&self) -> Result<DrainReport, StoreError> {
        let mut report = DrainReport::default();
        let mut after = 0;
        loop {
            let batch = self.store.outbox_pending(after, BATCH)?;
            let Some(last) = batch.last() else {
                break;
            };
            after = last.id;
            for mail in &batch {
                match self.deliver(mail) {
                    Ok(_) => report.delivered += 1,
                    Err(OutboxError::Store(e)) => return Err(e),
                    Err(e) => {
                        report.failed += 1;
                        tracing::warn!(
                            mailbox = %mail.mailbox_id,
                            attempts = mail.attempts + 1,
                            error = %crate::fault::ErrorChain(&e),
                            "queued PIN mail not delivered, will retry"
                        );
                    }
                }
            }
        }
        Ok(report)
    }
}

impl<D: MailDelivery + 'static> Outbox<D> {
    /// Starts the background delivery on the current tokio runtime: everything pending now,
    /// then whatever is queued every `interval`. `None` outside a runtime.
    pub fn spawn_drain(self: Arc<Self>, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        Some(handle.spawn(async move {
            loop {
                let outbox = Arc::clone(&self);
                let drained = tokio::task::spawn_blocking(move || {
                    if outbox.store.outbox_len()? == 0 {
                        return Ok(DrainReport::default());
                    }
                    outbox.deliver_pending()
                })
                .await;
                match drained {
                    Ok(Ok(report)) if report != DrainReport::default() => {
                        tracing::info!(
                            delivered = report.delivered,
                            failed = report.failed,
                            "outbox drained"
                        );
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %crate::fault::ErrorChain(&e), "outbox failed");
                    }
                    Err(e) => tracing::error!(error = %e, "outbox task failed"),
                }
                tokio::time::sleep(interval).await;
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::Maildir;
    use crate::store::{HashCost, NewMailbox};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A Maildir that can be switched off.
    struct Flaky {
        inner: Maildir,
        down: AtomicBool,
    }

    impl MailDelivery for Flaky {
        fn deliver(
            &self,
            user: &str,
            message: &lettre::Message,
        ) -> Result<DeliveryReceipt, MailError> {
            self.inner.deliver(user, message)
        }

        fn deliver_queued(&self, mail: &OutboxMail) -> Result<DeliveryReceipt, MailError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(MailError::InvalidUserName { reason: "down" });
            }
            self.inner.deliver_queued(mail)
        }
    }

    fn setup() -> (tempfile::TempDir, Outbox<Flaky>, MailboxId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path())
            .unwrap()
            .with_hash_cost(HashCost::Test);
        let id = store
            .add_mailbox(NewMailbox {
                user: "erin".into(),
                password: "pw".into(),
                um_enabled: true,
                extension: None,
                email: None,
            })
            .unwrap();
        let flaky = Flaky {
            inner: Maildir::in_data_dir(dir.path()),
            down: AtomicBool::new(false),
        };
        let outbox = Outbox::new(store, Arc::new(ResetPinMailer::new(flaky)));
        (dir, outbox, id)
    }

    fn new_mails(dir: &tempfile::TempDir) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("mail/erin/new"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    #[test]
    fn reset_delivers_at_once_and_leaves_no_row() {
        let (dir, outbox, id) = setup();
        let d = outbox
            .reset_pin(id, &mut rand::rngs::OsRng, ResetReason::Requested)
            .unwrap();
        assert!(matches!(d, Delivery::Delivered(_)));
        assert_eq!(outbox.store().outbox_len().unwrap(), 0);
        let mails = new_mails(&dir);
        assert_eq!(mails.len(), 1);
        assert!(mails[0].contains("Your new PIN is: "));
    }

    #[test]
    fn failed_delivery_queues_and_drain_delivers_once() {
        let (dir, outbox, id) = setup();
        outbox.mailer.delivery().down.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            let d = outbox
                .reset_pin(id, &mut rand::rngs::OsRng, ResetReason::Requested)
                .unwrap();
            assert_eq!(d, Delivery::Queued);
        }
        assert_eq!(outbox.store().outbox_len().unwrap(), 3);
        assert!(new_mails(&dir).is_empty());
        assert_eq!(
            outbox.deliver_pending().unwrap(),
            DrainReport {
                delivered: 0,
                failed: 3
            }
        );
        let pending = outbox.store().outbox_pending(0, 10).unwrap();
        // One failed attempt at the reset, one in the drain.
        assert!(pending.iter().all(|m| m.attempts == 2));
        outbox.mailer.delivery().down.store(false, Ordering::SeqCst);
        // A crash after delivering the first but before removing its row: delivered again
        // later, still one copy.
        outbox
            .mailer
            .delivery()
            .inner
            .deliver_queued(&pending[0])
            .unwrap();
        assert_eq!(
            outbox.deliver_pending().unwrap(),
            DrainReport {
                delivered: 3,
                failed: 0
            }
        );
        assert_eq!(outbox.store().outbox_len().unwrap(), 0);
        let mails = new_mails(&dir);
        assert_eq!(mails.len(), 3);
        // Newest mail (by name) holds the valid PIN.
        let pin = mails[2]
            .lines()
            .find_map(|l| l.strip_prefix("Your new PIN is: "))
            .unwrap()
            .trim()
            .to_owned();
        let pins: Vec<String> = mails
            .iter()
            .map(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("Your new PIN is: "))
                    .unwrap()
                    .trim()
                    .to_owned()
            })
            .collect();
        let refs: Vec<&str> = pins.iter().map(String::as_str).collect();
        assert!(outbox
            .store()
            .match_pin_record(id, &refs)
            .unwrap()
            .is_exact());
        assert_eq!(pins[2], pin);
    }
}
