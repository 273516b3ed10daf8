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
//! and a queued mail that is delivered exactly once by an idempotent delivery (the Maildir), at
//! least once by SMTP (see [`smtp`](super::smtp): a crash between the relay's acceptance and the
//! removal of the row sends it again, with the same Message-ID).
//!
//! A mail whose delivery failed is retried with exponential [`Backoff`] by its `attempts`
//! (1 s, 2 s, 4 s, ... up to 5 min by default); the background delivery skips mails that are not
//! due yet. After a restart every queued mail is due at once. Within this process a mail is
//! delivered by one caller at a time (the reset's own attempt or the background one), never two
//! concurrently; across instances on one PostgreSQL database, by one instance at a time (the
//! store's lease, [`Store::outbox_claim`], which also keeps a failed mail's backoff for all). A queued mail holds the PIN in clear (like any mail queue), in its spool file
//! beside the row (never in the database, see `crate::store::spool`); row and file are deleted
//! once it is delivered, and bodies are never logged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{CryptoRng, RngCore};

use super::{DeliveryReceipt, MailDelivery, MailError, ResetPinMailer};
use crate::store::{MailboxId, OutboxMail, ResetPinError, ResetReason, Store, StoreError};

/// How many rows [`Outbox::deliver_pending`] reads at a time.
const BATCH: u32 = 64;

/// How long a claim of this process on a mail keeps other processes (instances on one
/// PostgreSQL database) from delivering it ([`Store::outbox_claim`]): longer than any delivery
/// takes; the mail of an instance that dies is delivered by another once it runs out.
pub const DELIVERY_LEASE: Duration = Duration::from_secs(120);

/// How long a mail waits after a failed delivery: `base * 2^(attempts - 1)`, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The wait after `attempts` failed deliveries (none for 0).
    pub fn delay(&self, attempts: u32) -> Duration {
        if attempts == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (attempts - 1).min(20);
        self.base.saturating_mul(factor).min(self.max)
    }
}

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
    /// Mails left for later: not due yet after a failure, or being delivered by another caller.
    pub deferred: u64,
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
    /// Another caller of this process is delivering the mail right now.
    #[error("queued mail {key} is being delivered already")]
    InFlight {
        /// The mail's key.
        key: String,
    },
    /// The store failed.
    #[error("outbox store error")]
    Store(#[from] StoreError),
}

/// PIN resets with their mails, through the store's outbox and a mailer.
pub struct Outbox<D> {
    store: Store,
    mailer: Arc<ResetPinMailer<D>>,
    backoff: Backoff,
    state: Mutex<Retries>,
}

/// Which mails are being delivered, and when failed ones are due again (by row id).
#[derive(Debug, Default)]
struct Retries {
    in_flight: HashSet<i64>,
    due: HashMap<i64, Instant>,
}

/// The claim of one caller on one mail; released on drop.
struct Claim<'a> {
    state: &'a Mutex<Retries>,
    id: i64,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(self.state).in_flight.remove(&self.id);
    }
}

/// The retry state; a poisoned lock only means a panic elsewhere, the sets stay consistent.
fn lock(state: &Mutex<Retries>) -> std::sync::MutexGuard<'_, Retries> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        Self {
            store,
            mailer,
            backoff: Backoff::default(),
            state: Mutex::new(Retries::default()),
        }
    }

    /// Replaces the retry [`Backoff`].
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The retry backoff.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// Claims `mail` for delivery by this caller: `None` when another caller has it (in this
    /// process, or another process through the store's lease), or when `only_due` and it is
    /// waiting out its backoff.
    fn claim(&self, mail: &OutboxMail, only_due: bool) -> Result<Option<Claim<'_>>, StoreError> {
        let claim = {
            let mut state = lock(&self.state);
            if only_due && state.due.get(&mail.id).is_some_and(|t| *t > Instant::now()) {
                return Ok(None);
            }
            if !state.in_flight.insert(mail.id) {
                return Ok(None);
            }
            Claim {
                state: &self.state,
                id: mail.id,
            }
        };
        // Dropping `claim` gives the mail back to the other callers of this process.
        Ok(self
            .store
            .outbox_claim(mail.id, DELIVERY_LEASE)?
            .then_some(claim))
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
        let mail = self.queue_reset_pin(id, rng, reason)?;
        Ok(self.deliver_reset_mail(&mail))
    }

    /// The first half of [`reset_pin`](Self::reset_pin): the PIN reset and its queued mail,
    /// committed together (the argon2-bound part).
    pub fn queue_reset_pin<R>(
        &self,
        id: MailboxId,
        rng: &mut R,
        reason: ResetReason,
    ) -> Result<OutboxMail, ResetPinError<MailError>>
    where
        R: CryptoRng + RngCore + ?Sized,
    {
        self.store
            .reset_pin_queued(id, rng, reason, |outcome, key| {
                self.mailer.render(outcome, key)
            })
    }

    /// The second half of [`reset_pin`](Self::reset_pin): delivers the mail `mail` queued by
    /// [`queue_reset_pin`](Self::queue_reset_pin). A failed delivery is logged and answered
    /// [`Delivery::Queued`] (the mail stays queued for the background delivery).
    pub fn deliver_reset_mail(&self, mail: &OutboxMail) -> Delivery {
        match self.deliver(mail) {
            Ok(receipt) => Delivery::Delivered(receipt),
            Err(OutboxError::InFlight { .. }) => Delivery::Queued,
            Err(e) => {
                tracing::warn!(
                    mailbox = %mail.mailbox_id,
                    error = %crate::fault::ErrorChain(&e),
                    "PIN mail queued; delivery failed, will retry"
                );
                Delivery::Queued
            }
        }
    }

    /// Delivers one outbox mail now (due or not) and removes it from the outbox. On failure the
    /// attempt is counted, the mail stays queued and is due again after its backoff.
    pub fn deliver(&self, mail: &OutboxMail) -> Result<DeliveryReceipt, OutboxError> {
        let claim = self
            .claim(mail, false)?
            .ok_or_else(|| OutboxError::InFlight {
                key: mail.key.clone(),
            })?;
        self.deliver_claimed(mail, claim)
    }

    fn deliver_claimed(
        &self,
        mail: &OutboxMail,
        _claim: Claim<'_>,
    ) -> Result<DeliveryReceipt, OutboxError> {
        match self.mailer.delivery().deliver_queued(mail) {
            Ok(receipt) => {
                // Only now, after the delivery (the relay's acceptance), does the row go.
                self.store.outbox_remove(mail.id)?;
                lock(&self.state).due.remove(&mail.id);
                Ok(receipt)
            }
            Err(source) => {
                let wait = self.backoff.delay(mail.attempts.saturating_add(1));
                lock(&self.state).due.insert(mail.id, Instant::now() + wait);
                self.store.outbox_record_failure(mail.id, wait)?;
                Err(OutboxError::Deliver {
                    key: mail.key.clone(),
                    source,
                })
            }
        }
    }

    /// Delivers every due mail queued when it is called (oldest first); failures stay queued and
    /// are counted, mails not due or in flight are skipped. Only a store failure is an error.
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
                let Some(claim) = self.claim(mail, true)? else {
                    report.deferred += 1;
                    continue;
                };
                match self.deliver_claimed(mail, claim) {
                    Ok(_) => report.delivered += 1,
                    Err(OutboxError::Store(e)) => return Err(e),
                    Err(OutboxError::InFlight { .. }) => report.deferred += 1,
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
    /// then whatever is queued and due every `interval` (or every backoff base, when shorter).
    /// `None` outside a runtime.
    pub fn spawn_drain(self: Arc<Self>, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let interval = interval
            .min(self.backoff.base)
            .max(Duration::from_millis(100));
        Some(handle.spawn(async move {
            loop {
                let outbox = Arc::clone(&self);
                let drained = tokio::task::spawn_blocking(move || {
                    if outbox.store.outbox_len()? == 0 {
                        // Spool files whose unlink failed after their delivery go now.
                        outbox.store.sweep_spool()?;
                        return Ok(DrainReport::default());
                    }
                    outbox.deliver_pending()
                })
                .await;
                match drained {
                    Ok(Ok(report)) if report.delivered + report.failed > 0 => {
                        tracing::info!(
                            delivered = report.delivered,
                            failed = report.failed,
                            deferred = report.deferred,
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
        let outbox =
            Outbox::new(store, Arc::new(ResetPinMailer::new(flaky))).with_backoff(Backoff {
                base: Duration::ZERO,
                max: Duration::ZERO,
            });
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
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..12).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn a_failed_mail_waits_out_its_backoff_and_is_not_delivered_twice_at_once() {
        let (dir, outbox, id) = setup();
        let outbox = outbox.with_backoff(Backoff {
            base: Duration::from_millis(300),
            max: Duration::from_secs(1),
        });
        outbox.mailer.delivery().down.store(true, Ordering::SeqCst);
        let d = outbox
            .reset_pin(id, &mut rand::rngs::OsRng, ResetReason::Requested)
            .unwrap();
        assert_eq!(d, Delivery::Queued);
        outbox.mailer.delivery().down.store(false, Ordering::SeqCst);
        // Not due yet: skipped.
        let report = outbox.deliver_pending().unwrap();
        assert_eq!((report.delivered, report.deferred), (0, 1));
        // Claimed by another caller: skipped too, even when due.
        let mail = outbox.store().outbox_pending(0, 1).unwrap().remove(0);
        std::thread::sleep(Duration::from_millis(350));
        {
            let _claim = outbox.claim(&mail, false).unwrap();
            assert!(matches!(
                outbox.deliver(&mail),
                Err(OutboxError::InFlight { .. })
            ));
            assert_eq!(outbox.deliver_pending().unwrap().deferred, 1);
        }
        assert_eq!(outbox.deliver_pending().unwrap().delivered, 1);
        assert_eq!(new_mails(&dir).len(), 1);
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
                failed: 3,
                deferred: 0
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
                failed: 0,
                deferred: 0
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

    /// Two instances on one PostgreSQL database drain one outbox at once: each mail is
    /// delivered by one of them, once (the lease; without it both would deliver every mail
    /// they both read).
    #[test]
    fn instances_on_one_database_deliver_each_mail_once() {
        struct Counting {
            inner: Maildir,
            delivered: Mutex<Vec<String>>,
        }
        impl MailDelivery for Counting {
            fn deliver(
                &self,
                user: &str,
                message: &lettre::Message,
            ) -> Result<DeliveryReceipt, MailError> {
                self.inner.deliver(user, message)
            }
            fn deliver_queued(&self, mail: &OutboxMail) -> Result<DeliveryReceipt, MailError> {
                self.delivered.lock().unwrap().push(mail.key.clone());
                // Long enough for the other instance to reach the same mail.
                std::thread::sleep(Duration::from_millis(5));
                self.inner.deliver_queued(mail)
            }
        }
        let db = crate::store::postgres::test_support::database();
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Store::open_postgres(&db.url, dir.path())
                .unwrap()
                .with_hash_cost(HashCost::Test)
        };
        let counting = Arc::new(Counting {
            inner: Maildir::in_data_dir(dir.path()),
            delivered: Mutex::new(Vec::new()),
        });
        let outboxes: Vec<Outbox<Arc<Counting>>> = (0..2)
            .map(|_| Outbox::new(open(), Arc::new(ResetPinMailer::new(Arc::clone(&counting)))))
            .collect();
        let id = outboxes[0]
            .store()
            .add_mailbox(NewMailbox {
                user: "erin".into(),
                password: "pw".into(),
                um_enabled: true,
                extension: None,
                email: None,
            })
            .unwrap();
        for _ in 0..20 {
            outboxes[0]
                .queue_reset_pin(id, &mut rand::rngs::OsRng, ResetReason::Requested)
                .unwrap();
        }
        std::thread::scope(|s| {
            for outbox in &outboxes {
                s.spawn(move || {
                    for _ in 0..100 {
                        outbox.deliver_pending().unwrap();
                        if outbox.store().outbox_len().unwrap() == 0 {
                            break;
                        }
                    }
                });
            }
        });
        assert_eq!(outboxes[0].store().outbox_len().unwrap(), 0);
        let mut delivered = counting.delivered.lock().unwrap().clone();
        assert_eq!(delivered.len(), 20, "{delivered:?}");
        delivered.sort();
        delivered.dedup();
        assert_eq!(delivered.len(), 20, "a mail delivered twice");
    }
}
