//! PIN resets: a new random PIN, committed together with the mail that announces it
//! ([`Store::reset_pin_queued`]), and the limit on requested resets per mailbox.

use std::sync::PoisonError;
use std::time::Duration;

use rand::{CryptoRng, RngCore};
use rusqlite::{params, Connection, TransactionBehavior};

use super::pins::{pin_state, replace_pin, RESET_PIN_ATTEMPTS};
use super::{unix_now, Store};
use crate::store::{
    hash_secret, verify_secret, MailboxId, OutboxMail, OutgoingMail, ResetLimit, ResetPinError,
    ResetPinOutcome, ResetReason, StoreError,
};

impl Store {
    /// Resets the PIN of mailbox `id` to a new random one (like
    /// [`reset_pin_queued`](Self::reset_pin_queued) with [`ResetReason::Requested`]) without
    /// mailing it, and returns it. For tools and tests; the ResetPIN operation must use
    /// `reset_pin_queued` so that the PIN and its mail commit together.
    pub fn reset_pin<R>(
        &self,
        id: MailboxId,
        rng: &mut R,
    ) -> Result<String, ResetPinError<std::convert::Infallible>>
    where
        R: CryptoRng + RngCore + ?Sized,
    {
        self.reset_pin_inner(id, rng, ResetReason::Requested, |_, outcome| {
            Ok(outcome.pin.clone())
        })
    }

    /// The ResetPIN step: gives mailbox `id` a new random PIN and queues the mail announcing it
    /// in the outbox, all-or-nothing.
    ///
    /// 1. Take the lock of this mailbox: an in-process lock per mailbox, so that concurrent
    ///    resets and changes of one mailbox run one after the other, while those of other
    ///    mailboxes proceed in parallel (nothing below holds a lock shared between mailboxes,
    ///    except SQLite's write lock during step 3).
    /// 2. Read the policy, extension, current PIN hash and the newest `PINHistoryCount` history
    ///    hashes; generate a PIN from `rng` by the policy, refusing any candidate that verifies
    ///    against one of those hashes (up to 1 + `PINHistoryCount` argon2 verifications per
    ///    candidate); hash it.
    /// 3. In one `BEGIN IMMEDIATE` transaction: re-read that state; if it changed meanwhile (a
    ///    change by another process, or a policy change), roll back and start over (at most
    ///    three times, then [`StoreError::Conflict`]). Otherwise push the old PIN hash into the
    ///    history and trim it to `PINHistoryCount` entries, store the new hash, set `pin_set_at`
    ///    to now and `pin_must_change`; for [`ResetReason::Requested`] clear the failed logon
    ///    count and the lockout. Then call `render(&outcome, key)` with a fresh idempotency key
    ///    (to be used in the Message-ID) and insert the mail it returns into the outbox.
    /// 4. Commit.
    ///
    /// So the new PIN and the mail announcing it become durable together, or neither does (a
    /// crash before the commit, any error, a failing `render`: the old PIN stays valid and
    /// nothing is queued). `render` runs inside the write transaction and must not do I/O.
    /// The returned mail is to be delivered by `crate::mail::outbox`; if that does not happen
    /// (crash, delivery failure) it stays queued and is delivered later.
    pub fn reset_pin_queued<R, E, F>(
        &self,
        id: MailboxId,
        rng: &mut R,
        reason: ResetReason,
        render: F,
    ) -> Result<OutboxMail, ResetPinError<E>>
    where
        R: CryptoRng + RngCore + ?Sized,
        E: std::error::Error + 'static,
        F: FnOnce(&ResetPinOutcome, &str) -> Result<OutgoingMail, E>,
    {
        let mut spooled = None;
        let result = self.reset_pin_inner(id, rng, reason, |tx, outcome| {
            let key = uuid::Uuid::new_v4().simple().to_string();
            let mail = render(outcome, &key).map_err(|e| {
                tracing::warn!(mailbox = %id, "PIN reset rolled back: the mail could not be built");
                ResetPinError::Delivery(e)
            })?;
            let created_at = outcome.pin_set_at;
            // The message goes into its spool file, flushed before the row commits; the row
            // keeps an empty `message` (see `crate::store::spool` for why the PIN stays out of
            // the database).
            self.shared.spool.write(&key, &mail.message)?;
            spooled = Some(key.clone());
            let row_id: i64 = tx
                .prepare_cached(
                    "INSERT INTO outbox (key, mailbox_id, user_name, recipient, message,
                        created_at) VALUES (?1, ?2, ?3, ?4, x'', ?5) RETURNING id",
                )?
                .query_row(
                    params![key, id.0, outcome.user, mail.recipient, created_at],
                    |r| r.get(0),
                )?;
            Ok(OutboxMail {
                id: row_id,
                key,
                mailbox_id: id,
                user: outcome.user.clone(),
                recipient: mail.recipient,
                message: mail.message,
                created_at,
                attempts: 0,
            })
        });
        if let (Err(_), Some(key)) = (&result, spooled) {
            // Rolled back (or the commit failed): the file names no row, unless the commit
            // went through after all.
            if let Err(e) = self.remove_if_unqueued(&key) {
                tracing::warn!(error = %crate::fault::ErrorChain(&e), "cannot remove the spool file of a rolled-back reset; removed at the next start");
            }
        }
        result
    }

    /// Steps 1-4 of [`reset_pin_queued`](Self::reset_pin_queued), with `finish` in place of the
    /// outbox insert.
    fn reset_pin_inner<R, E, T, F>(
        &self,
        id: MailboxId,
        rng: &mut R,
        reason: ResetReason,
        finish: F,
    ) -> Result<T, ResetPinError<E>>
    where
        R: CryptoRng + RngCore + ?Sized,
        E: std::error::Error + 'static,
        F: FnOnce(&Connection, &ResetPinOutcome) -> Result<T, ResetPinError<E>>,
    {
        let lock = self.mailbox_lock(id);
        let _serialised = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = self
            .reset_limit
            .filter(|_| reason == ResetReason::Requested);
        let mut finish = Some(finish);
        for _ in 0..RESET_PIN_ATTEMPTS {
            // Step 2: only this mailbox's lock held. A reset over the limit is refused here,
            // before the argon2 work; the count is checked again in the transaction.
            if let Some(limit) = limit {
                check_reset_limit(&*self.conn()?, id, limit, unix_now())?;
            }
            let (_, before) = pin_state(&*self.conn()?, id)?;
            if !before.um_enabled {
                return Err(ResetPinError::NotUmEnabled);
            }
            let mut hash_error = None;
            let pin = before
                .policy
                .generate_pin(rng, before.extension.as_deref(), |candidate| {
                    let mut used = before.pin_hash.iter().chain(&before.history);
                    used.any(|h| match verify_secret(h, candidate.as_bytes()) {
                        Ok(matched) => matched,
                        Err(e) => {
                            hash_error.get_or_insert(e);
                            true
                        }
                    })
                });
            if let Some(e) = hash_error {
                return Err(e.into());
            }
            let pin = pin.map_err(ResetPinError::Generate)?;
            let new_hash = hash_secret(self.cost, pin.as_bytes())?;
            self.pin_work_done(id);

            // Step 3, under the database write lock.
            let mut conn = self.conn()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (row, now_state) = pin_state(&tx, id)?;
            if now_state != before {
                tracing::debug!(mailbox = %id, "PIN state changed during reset; starting over");
                continue;
            }
            let now = unix_now();
            if let Some(limit) = limit {
                check_reset_limit(&tx, id, limit, now)?;
                let window = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
                tx.prepare_cached("DELETE FROM pin_resets WHERE mailbox_id = ?1 AND at <= ?2")?
                    .execute(params![id.0, now.saturating_sub(window)])?;
                tx.prepare_cached("INSERT INTO pin_resets (mailbox_id, at) VALUES (?1, ?2)")?
                    .execute(params![id.0, now])?;
            }
            replace_pin(&tx, id, &before, &new_hash, now, true)?;
            if reason == ResetReason::Requested {
                tx.execute(
                    "UPDATE mailboxes SET failed_logon_count = 0, locked_out = 0 WHERE id = ?1",
                    [id.0],
                )?;
            }
            let mailbox = row.mailbox;
            let outcome = ResetPinOutcome {
                mailbox_id: id,
                pin,
                user: mailbox.user,
                email: mailbox.email,
                extension: mailbox.extension,
                reset_pin_text: mailbox.policy.reset_pin_text,
                telephone_access_numbers: mailbox.telephone_access_numbers,
                pin_set_at: now,
            };
            // Invariant: every earlier iteration that reaches this point returns.
            let finish = finish.take().expect("finish is called at most once");
            let result = finish(&tx, &outcome)?;
            // Step 4.
            tx.commit()?;
            tracing::info!(mailbox = %id, ?reason, "PIN reset");
            return Ok(result);
        }
        Err(StoreError::Conflict.into())
    }
}

/// Refuses a reset of mailbox `id` at `now` when it had `limit.max` counted resets within the
/// window already.
fn check_reset_limit<E: std::error::Error + 'static>(
    conn: &Connection,
    id: MailboxId,
    limit: ResetLimit,
    now: i64,
) -> Result<(), ResetPinError<E>> {
    let window = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
    let since = now.saturating_sub(window);
    let (count, oldest): (u32, Option<i64>) = conn
        .prepare_cached(
            "SELECT COUNT(*), MIN(at) FROM pin_resets WHERE mailbox_id = ?1 AND at > ?2",
        )?
        .query_row(params![id.0, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if count >= limit.max {
        let wait = oldest.map_or(window, |oldest| {
            oldest.saturating_add(window).saturating_sub(now).max(1)
        });
        tracing::info!(mailbox = %id, count, "PIN reset refused: rate limit");
        return Err(ResetPinError::TooManyResets {
            limit,
            retry_after: Duration::from_secs(u64::try_from(wait).unwrap_or(1)),
        });
    }
    Ok(())
}
