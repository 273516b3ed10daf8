//! PINs at and after a phone logon: checking a PIN (failed logon count, lockout, expiry),
//! changing it, the administrator's unlock, and the PIN record (the current hash and the
//! history). Also what changes and resets (`resets.rs`) share: the lock per mailbox, the state
//! a new PIN is checked against, and the update of the history.

use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::mailboxes::{row_by_id, row_by_user, MailboxRow};
use super::{unix_now, Store};
use crate::pin_policy::{PinPolicy, PinRejected};
use crate::store::{
    hash_secret, verify_secret, ChangePinError, MailboxId, PinCheck, PinRecordMatch, StoreError,
};

/// How often a PIN reset or change starts over when the PIN state changed between its
/// preparation and its transaction (possible only through another process, since one process
/// serialises the PIN changes of a mailbox).
pub(super) const RESET_PIN_ATTEMPTS: u32 = 3;

/// What a new PIN is generated against; if it changes between the unlocked preparation and the
/// write transaction of a reset, the reset starts over.
#[derive(PartialEq, Eq)]
pub(super) struct PinState {
    pub(super) um_enabled: bool,
    pub(super) policy: PinPolicy,
    pub(super) extension: Option<String>,
    pub(super) pin_hash: Option<String>,
    pub(super) pin_set_at: Option<i64>,
    /// The newest `pin_history_count` history hashes, newest first.
    pub(super) history: Vec<String>,
}

pub(super) fn pin_state(
    conn: &Connection,
    id: MailboxId,
) -> Result<(MailboxRow, PinState), StoreError> {
    let row = row_by_id(conn, id)?.ok_or(StoreError::UnknownMailbox(id))?;
    let history = conn
        .prepare_cached(
            "SELECT pin_hash FROM pin_history WHERE mailbox_id = ?1 ORDER BY seq DESC LIMIT ?2",
        )?
        .query_map(params![id.0, row.mailbox.policy.pin_history_count], |r| {
            r.get(0)
        })?
        .collect::<rusqlite::Result<Vec<String>>>()?;
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

/// Replaces the PIN hash of mailbox `id` inside a write transaction: pushes the old hash (of
/// `before`) into the history, trims the history to `PINHistoryCount`, and stores `new_hash`
/// set at `now` with the must-change mark `must_change`.
pub(super) fn replace_pin(
    tx: &Connection,
    id: MailboxId,
    before: &PinState,
    new_hash: &str,
    now: i64,
    must_change: bool,
) -> Result<(), StoreError> {
    if let Some(old) = &before.pin_hash {
        tx.execute(
            "INSERT INTO pin_history (mailbox_id, seq, pin_hash, set_at)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM pin_history
                          WHERE mailbox_id = ?1), ?2, ?3)",
            params![id.0, old, before.pin_set_at.unwrap_or(now)],
        )?;
        tx.execute(
            "DELETE FROM pin_history WHERE mailbox_id = ?1 AND seq NOT IN
                (SELECT seq FROM pin_history WHERE mailbox_id = ?1
                 ORDER BY seq DESC LIMIT ?2)",
            params![id.0, before.policy.pin_history_count],
        )?;
    }
    tx.execute(
        "UPDATE mailboxes SET pin_hash = ?2, pin_set_at = ?3, pin_must_change = ?4 WHERE id = ?1",
        params![id.0, new_hash, now, must_change],
    )?;
    Ok(())
}

impl Store {
    /// The lock that serialises PIN changes of mailbox `id` in this process.
    pub(super) fn mailbox_lock(&self, id: MailboxId) -> Arc<Mutex<()>> {
        let mut locks = self
            .shared
            .pin_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Forget the locks nobody holds or waits for, so the map stays as small as the work in
        // flight.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        Arc::clone(locks.entry(id).or_default())
    }

    /// Tells the test hook (if any) that the slow work of a PIN change of `id` is done.
    pub(super) fn pin_work_done(&self, id: MailboxId) {
        if let Some(hook) = &self.pin_work_hook {
            hook(id);
        }
    }

    /// Changes the PIN of `user` from `old` to `new`, as the telephone user interface does
    /// after a logon: `old` must be accepted as by [`check_pin`](Self::check_pin) (an expired
    /// or must-change PIN is accepted here; a wrong one counts as a failed logon and is
    /// [`ChangePinError::OldPinRefused`]), and `new` must satisfy the mailbox's policy
    /// (digits, `MinPINLength` to 24 digits, `AllowCommonPatterns`, the extension rule, and not
    /// the current PIN nor one of the last `PINHistoryCount`), else
    /// [`ChangePinError::Rejected`] names the rule.
    ///
    /// On success the old hash goes into the history, `pin_set_at` is now, the must-change
    /// mark and the failed logon count are cleared. Serialised with the other PIN changes of
    /// the mailbox like [`reset_pin_queued`](Self::reset_pin_queued); nothing is mailed.
    pub fn change_pin(&self, user: &str, old: &str, new: &str) -> Result<(), ChangePinError> {
        let Some(first) = row_by_user(&*self.conn()?, user)? else {
            self.verify_dummy(old.as_bytes())?;
            return Err(ChangePinError::OldPinRefused(PinCheck::UnknownUser));
        };
        let id = first.mailbox.id;
        let lock = self.mailbox_lock(id);
        let _serialised = lock.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..RESET_PIN_ATTEMPTS {
            let conn = self.conn()?;
            let (row, before) = pin_state(&conn, id)?;
            drop(conn);
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
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (_, now_state) = pin_state(&tx, id)?;
            if now_state != before {
                tracing::debug!(mailbox = %id, "PIN state changed during change; starting over");
                continue;
            }
            replace_pin(&tx, id, &before, &new_hash, unix_now(), false)?;
            tx.execute(
                "UPDATE mailboxes SET failed_logon_count = 0 WHERE id = ?1",
                [id.0],
            )?;
            tx.commit()?;
            tracing::info!(mailbox = %id, "PIN changed");
            return Ok(());
        }
        Err(StoreError::Conflict.into())
    }

    /// Lifts the lockout of mailbox `id` and clears its failed logon count (the administrator's
    /// unlock). The PIN is not changed.
    pub fn unlock(&self, id: MailboxId) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET locked_out = 0, failed_logon_count = ?2 WHERE id = ?1",
            0,
        )?;
        tracing::info!(mailbox = %id, "mailbox unlocked");
        Ok(())
    }

    /// Checks a PIN entered at a phone logon and updates the failed logon count: cleared on
    /// success, incremented on failure, with a lockout once it reaches `MaxLogonAttempts`.
    ///
    /// A locked-out mailbox is answered [`PinCheck::LockedOut`] without looking at the PIN. An
    /// unknown user costs one dummy hash verification, like a known one. The automatic reset
    /// at every `LogonFailuresBeforePINReset` failures is left to the caller, signalled by
    /// `PinCheck::Wrong { reset_due: true, .. }`.
    pub fn check_pin(&self, user: &str, pin: &str) -> Result<PinCheck, StoreError> {
        let row = row_by_user(&*self.conn()?, user)?;
        let Some(row) = row else {
            self.verify_dummy(pin.as_bytes())?;
            return Ok(PinCheck::UnknownUser);
        };
        self.logon(&row, pin)
    }

    /// [`check_pin`](Self::check_pin) for a mailbox already read.
    fn logon(&self, row: &MailboxRow, pin: &str) -> Result<PinCheck, StoreError> {
        let mailbox = &row.mailbox;
        if !mailbox.um_enabled {
            return Ok(PinCheck::NotUmEnabled);
        }
        if mailbox.locked_out {
            return Ok(PinCheck::LockedOut);
        }
        let Some(pin_hash) = &row.pin_hash else {
            return Ok(PinCheck::NoPin);
        };
        let policy = &mailbox.policy;
        if verify_secret(pin_hash, pin.as_bytes())? {
            // Cleared only if the mailbox was not locked out meanwhile.
            let locked_out: Option<bool> = self
                .conn()?
                .prepare_cached(
                    "UPDATE mailboxes SET failed_logon_count = 0
                     WHERE id = ?1 AND locked_out = 0 RETURNING locked_out",
                )?
                .query_row([mailbox.id.0], |r| r.get(0))
                .optional()?;
            if locked_out.is_none() {
                return Ok(PinCheck::LockedOut);
            }
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
        let (failures, locked_out): (u32, bool) = self
            .conn()?
            .prepare_cached(
                "UPDATE mailboxes SET failed_logon_count = failed_logon_count + 1,
                    locked_out = CASE WHEN ?2 IS NOT NULL AND failed_logon_count + 1 >= ?2
                                      THEN 1 ELSE locked_out END
                 WHERE id = ?1 RETURNING failed_logon_count, locked_out",
            )?
            .query_row(params![mailbox.id.0, policy.max_logon_attempts], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
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

    /// Lines `pins` (oldest first) up with the PIN record of mailbox `id`: its history, oldest
    /// first, then its current PIN. Reads only; costs up to one argon2 verification per record
    /// entry and PIN. For audits and tests ("is every PIN that was mailed in the record, in
    /// order?"); keep `PINHistoryCount` in mind, older PINs are forgotten.
    pub fn match_pin_record(
        &self,
        id: MailboxId,
        pins: &[&str],
    ) -> Result<PinRecordMatch, StoreError> {
        let conn = self.conn()?;
        let row = row_by_id(&conn, id)?.ok_or(StoreError::UnknownMailbox(id))?;
        let mut record = conn
            .prepare_cached("SELECT pin_hash FROM pin_history WHERE mailbox_id = ?1 ORDER BY seq")?
            .query_map([id.0], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        drop(conn);
        record.extend(row.pin_hash);
        let mut next = 0;
        let mut positions = Vec::with_capacity(pins.len());
        for pin in pins {
            let mut found = None;
            for (i, hash) in record.iter().enumerate().skip(next) {
                if verify_secret(hash, pin.as_bytes())? {
                    found = Some(i);
                    next = i + 1;
                    break;
                }
            }
            positions.push(found);
        }
        Ok(PinRecordMatch {
            record_len: record.len(),
            positions,
        })
    }

    /// How many times the PIN of mailbox `id` was set (resets and changes), ever: history
    /// entries are numbered on and only the oldest are trimmed, so the newest number survives.
    pub fn pin_changes(&self, id: MailboxId) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let row = row_by_id(&conn, id)?.ok_or(StoreError::UnknownMailbox(id))?;
        let newest: u64 = conn
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM pin_history WHERE mailbox_id = ?1")?
            .query_row([id.0], |r| r.get(0))?;
        Ok(newest + u64::from(row.pin_hash.is_some()))
    }
}
