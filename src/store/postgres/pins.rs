//! PIN checks, changes and resets on PostgreSQL, with the semantics of
//! `super::super::sqlite::{pins, resets}` (see [`crate::store::Store::reset_pin_queued`]).
//!
//! What serialises the PIN changes of one mailbox: within a process, the lock of that mailbox
//! (as on SQLite); across instances, the row lock that each change's write transaction takes
//! first (`SELECT ... FOR UPDATE`), with the re-check of the state the new PIN was made for.
//! The argon2 work is done before the transaction, holding no connection and no row lock; a
//! change that finds the state changed by another instance meanwhile starts over (up to
//! [`ATTEMPTS`] times, then [`StoreError::Conflict`]). Different mailboxes never wait for each
//! other: there is no lock but the row's.

use std::sync::PoisonError;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use rand::{CryptoRng, RngCore};

use super::mailboxes::{row_by_id, row_by_user, MailboxRow};
use super::{begin, commit, exec, get_u32, row, row_opt, rows, unix_now, PgStore};
use crate::pin_policy::{PinPolicy, PinRejected};
use crate::store::{
    hash_secret, verify_secret, ChangePinError, MailboxId, OutboxMail, OutgoingMail, PinCheck,
    PinRecordMatch, ResetLimit, ResetPinError, ResetPinOutcome, ResetReason, StoreError,
};

/// How often a reset or change starts over when another instance changed the PIN state
/// between its preparation and its transaction. Higher than SQLite's 3: here the other writers
/// are other instances, which the in-process lock does not hold back.
const ATTEMPTS: u32 = 10;

/// The key of the advisory lock that transactions writing a spool file hold shared and the
/// spool sweep holds exclusively ("spol" in ASCII); see `outbox.rs`.
pub(super) const SPOOL_LOCK: i64 = 0x7370_6f6c;

/// What a new PIN is generated against (as in `sqlite::pins::PinState`).
#[derive(PartialEq, Eq)]
struct PinState {
    um_enabled: bool,
    policy: PinPolicy,
    extension: Option<String>,
    pin_hash: Option<String>,
    pin_set_at: Option<i64>,
    history: Vec<String>,
}

/// The mailbox `id` and its PIN state; with `lock`, the row stays locked until the
/// transaction `c` ends.
fn pin_state(
    c: &impl GenericClient,
    id: MailboxId,
    lock: bool,
) -> Result<(MailboxRow, PinState), StoreError> {
    let row = row_by_id(c, id, lock)?.ok_or(StoreError::UnknownMailbox(id))?;
    let history = rows(
        c,
        "SELECT pin_hash FROM pin_history WHERE mailbox_id = $1 ORDER BY seq DESC LIMIT $2",
        &[&id.0, &i64::from(row.mailbox.policy.pin_history_count)],
    )?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<Vec<String>, _>>()?;
    let state = PinState {
        um_enabled: row.mailbox.um_enabled,
        policy: row.mailbox.policy.clone(),
        extension: row.mailbox.extension.clone(),
        pin_hash: row.pin_hash.clone(),
        pin_set_at: row.mailbox.pin_set_at,
        history,
    };
    Ok((row, state))
}

/// Replaces the PIN hash inside the transaction `tx` that holds the mailbox's row lock.
fn replace_pin(
    tx: &impl GenericClient,
    id: MailboxId,
    before: &PinState,
    new_hash: &str,
    now: i64,
    must_change: bool,
) -> Result<(), StoreError> {
    if let Some(old) = &before.pin_hash {
        exec(
            tx,
            "INSERT INTO pin_history (mailbox_id, seq, pin_hash, set_at)
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM pin_history
                          WHERE mailbox_id = $1), $2, $3)",
            &[&id.0, old, &before.pin_set_at.unwrap_or(now)],
        )?;
        exec(
            tx,
            "DELETE FROM pin_history WHERE mailbox_id = $1 AND seq NOT IN
                (SELECT seq FROM pin_history WHERE mailbox_id = $1
                 ORDER BY seq DESC LIMIT $2)",
            &[&id.0, &i64::from(before.policy.pin_history_count)],
        )?;
    }
    exec(
        tx,
        "UPDATE mailboxes SET pin_hash = $2, pin_set_at = $3, pin_must_change = $4 WHERE id = $1",
        &[&id.0, &new_hash, &now, &must_change],
    )?;
    Ok(())
}

impl PgStore {
    /// See [`crate::store::Store::change_pin`].
    pub fn change_pin(&self, user: &str, old: &str, new: &str) -> Result<(), ChangePinError> {
        let Some(first) = row_by_user(&self.conn()?, user)? else {
            self.verify_dummy(old.as_bytes())?;
            return Err(ChangePinError::OldPinRefused(PinCheck::UnknownUser));
        };
        let id = first.mailbox.id;
        let lock = self.mailbox_lock(id);
        let _serialised = lock.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..ATTEMPTS {
            let (row, before) = pin_state(&self.conn()?, id, false)?;
            match self.logon(&row, old)? {
                PinCheck::Ok | PinCheck::OkMustChange | PinCheck::Expired => {}
                refused => return Err(ChangePinError::OldPinRefused(refused)),
            }
            let policy = &before.policy;
            policy
                .check_pin(new, before.extension.as_deref())
                .map_err(|source| ChangePinError::Rejected { source })?;
            for hash in before.pin_hash.iter().chain(&before.history) {
                if verify_secret(hash, new.as_bytes())? {
                    return Err(ChangePinError::Rejected {
                        source: PinRejected::InHistory {
                            count: policy.pin_history_count,
                        },
                    });
                }
            }
            let new_hash = hash_secret(self.cost, new.as_bytes())?;
            self.pin_work_done(id);

            let mut conn = self.conn()?;
            let tx = begin(&mut conn)?;
            let (_, now_state) = pin_state(&tx, id, true)?;
            if now_state != before {
                tracing::debug!(mailbox = %id, "PIN state changed during change; starting over");
                continue;
            }
            replace_pin(&tx, id, &before, &new_hash, unix_now(), false)?;
            exec(
                &tx,
                "UPDATE mailboxes SET failed_logon_count = 0 WHERE id = $1",
                &[&id.0],
            )?;
            commit(tx)?;
            self.wrote();
            tracing::info!(mailbox = %id, "PIN changed");
            return Ok(());
        }
        Err(StoreError::Conflict.into())
    }

    /// See [`crate::store::Store::unlock`].
    pub fn unlock(&self, id: MailboxId) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET locked_out = false, failed_logon_count = $2 WHERE id = $1",
            &0i64,
        )?;
        tracing::info!(mailbox = %id, "mailbox unlocked");
        Ok(())
    }

    /// See [`crate::store::Store::check_pin`].
    pub fn check_pin(&self, user: &str, pin: &str) -> Result<PinCheck, StoreError> {
        let found = row_by_user(&self.conn()?, user)?;
        let Some(found) = found else {
            self.verify_dummy(pin.as_bytes())?;
            return Ok(PinCheck::UnknownUser);
        };
        self.logon(&found, pin)
    }

    /// [`check_pin`](Self::check_pin) for a mailbox already read. The failure count is one
    /// atomic `UPDATE ... RETURNING` per attempt, so attempts at different instances add up.
    fn logon(&self, found: &MailboxRow, pin: &str) -> Result<PinCheck, StoreError> {
        let mailbox = &found.mailbox;
        if !mailbox.um_enabled {
            return Ok(PinCheck::NotUmEnabled);
        }
        if mailbox.locked_out {
            return Ok(PinCheck::LockedOut);
        }
        let Some(pin_hash) = &found.pin_hash else {
            return Ok(PinCheck::NoPin);
        };
        let policy = &mailbox.policy;
        if verify_secret(pin_hash, pin.as_bytes())? {
            let cleared = row_opt(
                &self.conn()?,
                "UPDATE mailboxes SET failed_logon_count = 0
                 WHERE id = $1 AND NOT locked_out RETURNING locked_out",
                &[&mailbox.id.0],
            )?;
            if cleared.is_none() {
                return Ok(PinCheck::LockedOut);
            }
            self.wrote();
            let expired = match (policy.pin_lifetime_days, mailbox.pin_set_at) {
                (Some(days), Some(set_at)) => {
                    unix_now() >= set_at.saturating_add(i64::from(days) * 86_400)
                }
                _ => false,
            };
            return Ok(if expired {
                PinCheck::Expired
            } else if mailbox.pin_must_change {
                PinCheck::OkMustChange
            } else {
                PinCheck::Ok
            });
        }
        let max = policy.max_logon_attempts.map(i64::from);
        let counted = row(
            &self.conn()?,
            "UPDATE mailboxes SET failed_logon_count = failed_logon_count + 1,
                locked_out = CASE WHEN $2::BIGINT IS NOT NULL
                                       AND failed_logon_count + 1 >= $2::BIGINT
                                  THEN true ELSE locked_out END
             WHERE id = $1 RETURNING failed_logon_count, locked_out",
            &[&mailbox.id.0, &max],
        )?;
        self.wrote();
        let failures = get_u32(&counted, 0)?;
        let locked_out: bool = counted.try_get(1)?;
        tracing::info!(mailbox = %mailbox.id, failures, locked_out, "wrong PIN");
        if locked_out {
            return Ok(PinCheck::LockedOut);
        }
        Ok(PinCheck::Wrong {
            failures,
            reset_due: policy
                .logon_failures_before_pin_reset
                .is_some_and(|n| n > 0 && failures % n == 0),
        })
    }

    /// See [`crate::store::Store::match_pin_record`].
    pub fn match_pin_record(
        &self,
        id: MailboxId,
        pins: &[&str],
    ) -> Result<PinRecordMatch, StoreError> {
        let conn = self.conn()?;
        let found = row_by_id(&conn, id, false)?.ok_or(StoreError::UnknownMailbox(id))?;
        let mut record = rows(
            &conn,
            "SELECT pin_hash FROM pin_history WHERE mailbox_id = $1 ORDER BY seq",
            &[&id.0],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
        drop(conn);
        record.extend(found.pin_hash);
        let mut next = 0;
        let mut positions = Vec::with_capacity(pins.len());
        for pin in pins {
            let mut at = None;
            for (i, hash) in record.iter().enumerate().skip(next) {
                if verify_secret(hash, pin.as_bytes())? {
                    at = Some(i);
                    next = i + 1;
                    break;
                }
            }
            positions.push(at);
        }
        Ok(PinRecordMatch {
            record_len: record.len(),
            positions,
        })
    }

    /// See [`crate::store::Store::pin_changes`].
    pub fn pin_changes(&self, id: MailboxId) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let found = row_by_id(&conn, id, false)?.ok_or(StoreError::UnknownMailbox(id))?;
        let newest: i64 = row(
            &conn,
            "SELECT COALESCE(MAX(seq), 0)::BIGINT FROM pin_history WHERE mailbox_id = $1",
            &[&id.0],
        )?
        .try_get(0)?;
        Ok(u64::try_from(newest).unwrap_or(0) + u64::from(found.pin_hash.is_some()))
    }

    /// See [`crate::store::Store::reset_pin`].
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

    /// See [`crate::store::Store::reset_pin_queued`]. The spool file is written inside the
    /// transaction (holding the spool lock shared, see `outbox.rs`), before the commit.
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
            exec(
                tx,
                "SELECT pg_advisory_xact_lock_shared($1)",
                &[&SPOOL_LOCK],
            )?;
            self.shared.spool.write(&key, &mail.message)?;
            spooled = Some(key.clone());
            let row_id: i64 = row(
                tx,
                "INSERT INTO outbox (key, mailbox_id, user_name, recipient, created_at)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&key, &id.0, &outcome.user, &mail.recipient, &created_at],
            )?
            .try_get(0)
            .map_err(StoreError::from)?;
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
            if let Err(e) = self.remove_if_unqueued(&key) {
                tracing::warn!(error = %crate::fault::ErrorChain(&e), "cannot remove the spool file of a rolled-back reset; removed by a later sweep");
            }
        }
        result
    }

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
        F: FnOnce(
            &deadpool_postgres::Transaction<'_>,
            &ResetPinOutcome,
        ) -> Result<T, ResetPinError<E>>,
    {
        let lock = self.mailbox_lock(id);
        let _serialised = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = self
            .reset_limit
            .filter(|_| reason == ResetReason::Requested);
        let mut finish = Some(finish);
        for _ in 0..ATTEMPTS {
            if let Some(limit) = limit {
                check_reset_limit(&self.conn()?, id, limit, unix_now())?;
            }
            let (_, before) = pin_state(&self.conn()?, id, false)?;
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

            let mut conn = self.conn()?;
            let tx = begin(&mut conn)?;
            let (found, now_state) = pin_state(&tx, id, true)?;
            if now_state != before {
                tracing::debug!(mailbox = %id, "PIN state changed during reset; starting over");
                continue;
            }
            #[cfg(test)]
            if let Some(hook) = &self.tx_hook {
                hook(id);
            }
            let now = unix_now();
            if let Some(limit) = limit {
                check_reset_limit(&tx, id, limit, now)?;
                let window = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
                exec(
                    &tx,
                    "DELETE FROM pin_resets WHERE mailbox_id = $1 AND at <= $2",
                    &[&id.0, &now.saturating_sub(window)],
                )?;
                exec(
                    &tx,
                    "INSERT INTO pin_resets (mailbox_id, at) VALUES ($1, $2)",
                    &[&id.0, &now],
                )?;
            }
            replace_pin(&tx, id, &before, &new_hash, now, true)?;
            if reason == ResetReason::Requested {
                exec(
                    &tx,
                    "UPDATE mailboxes SET failed_logon_count = 0, locked_out = false WHERE id = $1",
                    &[&id.0],
                )?;
            }
            let mailbox = found.mailbox;
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
            commit(tx)?;
            self.wrote();
            tracing::info!(mailbox = %id, ?reason, "PIN reset");
            return Ok(result);
        }
        Err(StoreError::Conflict.into())
    }
}

/// Refuses a reset of mailbox `id` at `now` when it had `limit.max` counted resets within the
/// window already.
fn check_reset_limit<E: std::error::Error + 'static>(
    c: &impl GenericClient,
    id: MailboxId,
    limit: ResetLimit,
    now: i64,
) -> Result<(), ResetPinError<E>> {
    let window = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
    let since = now.saturating_sub(window);
    let found = row(
        c,
        "SELECT COUNT(*), MIN(at) FROM pin_resets WHERE mailbox_id = $1 AND at > $2",
        &[&id.0, &since],
    )?;
    let count: i64 = found.try_get(0).map_err(StoreError::from)?;
    let oldest: Option<i64> = found.try_get(1).map_err(StoreError::from)?;
    if count >= i64::from(limit.max) {
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
