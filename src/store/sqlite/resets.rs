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

#[cfg(test)]
mod tests {
    use super::super::test_support::{alice, history_len, queue, rng, store, users, MailDown};
    use super::super::PinWorkHook;
    use super::*;
    use crate::pin_policy::PinPolicy;
    use crate::store::{PinCheck, DEFAULT_POLICY_NAME};
    use std::sync::{Arc, Mutex};

    #[test]
    fn reset_pin_sets_a_valid_pin_and_state() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        assert_eq!(store.check_pin("alice", "918273").unwrap(), PinCheck::NoPin);
        let mut seen = None;
        let queued = store
            .reset_pin_queued(id, &mut rng(), ResetReason::Requested, |o, key| {
                seen = Some((o.clone(), key.to_owned()));
                Ok::<_, MailDown>(OutgoingMail {
                    recipient: "alice@example.org".into(),
                    message: format!("PIN {}", o.pin).into_bytes(),
                })
            })
            .unwrap();
        let (outcome, key) = seen.unwrap();
        assert_eq!(queued.key, key);
        assert_eq!(key.len(), 32, "a simple uuid");
        assert_eq!(store.outbox_pending(0, 10).unwrap(), vec![queued.clone()]);
        assert!(!format!("{queued:?}").contains(&outcome.pin));
        assert_eq!(outcome.user, "Alice");
        assert_eq!(outcome.email.as_deref(), Some("alice@example.org"));
        assert_eq!(outcome.extension.as_deref(), Some("36697"));
        PinPolicy::default()
            .check_pin(&outcome.pin, Some("36697"))
            .unwrap();
        let m = store.mailbox_by_id(id).unwrap().unwrap();
        assert!(m.pin_set && m.pin_must_change);
        assert_eq!(m.pin_set_at, Some(outcome.pin_set_at));
        assert_eq!(
            store.check_pin("alice", &outcome.pin).unwrap(),
            PinCheck::OkMustChange
        );
        let stored: String = store
            .conn()
            .unwrap()
            .query_row("SELECT pin_hash FROM mailboxes", [], |r| r.get(0))
            .unwrap();
        assert!(stored.starts_with("$argon2id$") && !stored.contains(&outcome.pin));
    }

    #[test]
    fn failed_delivery_keeps_old_pin() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        let old = store.reset_pin(id, &mut rng()).unwrap();
        for _ in 0..3 {
            assert!(matches!(
                store.check_pin("alice", "000000").unwrap(),
                PinCheck::Wrong { .. }
            ));
        }
        let before = store.mailbox_by_id(id).unwrap().unwrap();
        let mut offered = String::new();
        let err = store
            .reset_pin_queued(id, &mut rng(), ResetReason::Requested, |o, _| {
                offered.clone_from(&o.pin);
                Err::<OutgoingMail, _>(MailDown)
            })
            .unwrap_err();
        assert!(matches!(err, ResetPinError::Delivery(MailDown)));
        assert_eq!(store.mailbox_by_id(id).unwrap().unwrap(), before);
        assert_eq!(history_len(&store, id), 0);
        assert_eq!(store.outbox_len().unwrap(), 0);
        assert!(matches!(
            store.check_pin("alice", &offered).unwrap(),
            PinCheck::Wrong { failures: 4, .. }
        ));
        assert_eq!(
            store.check_pin("alice", &old).unwrap(),
            PinCheck::OkMustChange
        );
    }

    #[test]
    fn reset_pin_refuses_non_um_and_unknown() {
        let (_dir, store) = store();
        let mut new = alice();
        new.um_enabled = false;
        let id = store.add_mailbox(new).unwrap();
        assert!(matches!(
            store.reset_pin(id, &mut rng()),
            Err(ResetPinError::NotUmEnabled)
        ));
        assert!(matches!(
            store.reset_pin(MailboxId(42), &mut rng()),
            Err(ResetPinError::Store(StoreError::UnknownMailbox(_)))
        ));
        assert_eq!(
            store.check_pin("alice", "123456").unwrap(),
            PinCheck::NotUmEnabled
        );
        assert_eq!(
            store.check_pin("bob", "123456").unwrap(),
            PinCheck::UnknownUser
        );
    }

    #[test]
    fn history_is_trimmed_and_never_repeats() {
        let (_dir, store) = store();
        // Four digits with common patterns allowed: small enough that a repeat would show.
        let policy = PinPolicy {
            min_pin_length: 4,
            pin_history_count: 3,
            allow_common_patterns: true,
            ..PinPolicy::default()
        };
        store.set_policy(DEFAULT_POLICY_NAME, &policy).unwrap();
        let mut new = alice();
        new.extension = None;
        let id = store.add_mailbox(new).unwrap();
        let mut rng = rng();
        let mut pins = Vec::new();
        for i in 0..8 {
            let pin = store.reset_pin(id, &mut rng).unwrap();
            assert!(!pins.iter().rev().take(4).any(|p| p == &pin), "repeat");
            pins.push(pin);
            assert_eq!(history_len(&store, id), i64::from(i.min(3)));
            assert_eq!(
                store.pin_changes(id).unwrap(),
                u64::try_from(i).unwrap() + 1
            );
        }
    }

    #[test]
    fn history_check_refuses_recent_pins() {
        let (_dir, store) = store();
        let id = store.add_mailbox(alice()).unwrap();
        let pin = store.reset_pin(id, &mut rng()).unwrap();
        // Same seed, same candidate sequence: the first candidate is now the current PIN and
        // must be skipped.
        let next = store.reset_pin(id, &mut rng()).unwrap();
        assert_ne!(pin, next);
        let third = store.reset_pin(id, &mut rng()).unwrap();
        assert_ne!(third, pin);
        assert_ne!(third, next);
    }

    #[test]
    fn automatic_reset_keeps_counting_towards_the_lockout() {
        let (_dir, store) = store();
        let policy = PinPolicy {
            logon_failures_before_pin_reset: Some(2),
            max_logon_attempts: Some(5),
            ..PinPolicy::default()
        };
        store.set_policy(DEFAULT_POLICY_NAME, &policy).unwrap();
        let id = store.add_mailbox(alice()).unwrap();
        store.reset_pin(id, &mut rng()).unwrap();
        store.check_pin("alice", "0").unwrap();
        store.check_pin("alice", "0").unwrap();
        let (_, pin) = queue(&store, id, ResetReason::TooManyFailures);
        let m = store.mailbox_by_id(id).unwrap().unwrap();
        assert_eq!(m.failed_logon_count, 2);
        assert!(m.pin_must_change && !m.locked_out);
        for _ in 0..2 {
            store.check_pin("alice", "0").unwrap();
        }
        assert_eq!(store.check_pin("alice", "0").unwrap(), PinCheck::LockedOut);
        assert_eq!(store.check_pin("alice", &pin).unwrap(), PinCheck::LockedOut);
        store.unlock(id).unwrap();
        assert_eq!(
            store.check_pin("alice", &pin).unwrap(),
            PinCheck::OkMustChange
        );
        let m = store.mailbox_by_id(id).unwrap().unwrap();
        assert_eq!((m.failed_logon_count, m.locked_out), (0, false));
    }

    #[test]
    fn requested_resets_are_limited_per_mailbox_in_the_store() {
        let (_dir, store) = store();
        let limit = ResetLimit {
            max: 2,
            window: Duration::from_secs(3600),
        };
        let limited = store.clone().with_reset_limit(Some(limit));
        let id = store.add_mailbox(alice()).unwrap();
        let mut bob = alice();
        bob.user = "bob".into();
        let other = store.add_mailbox(bob).unwrap();
        let mut rng = rng();
        limited.reset_pin(id, &mut rng).unwrap();
        limited.reset_pin(id, &mut rng).unwrap();
        let pins = store.pin_changes(id).unwrap();
        match limited.reset_pin(id, &mut rng) {
            Err(ResetPinError::TooManyResets {
                limit: l,
                retry_after,
            }) => {
                assert_eq!(l, limit);
                assert!(retry_after > Duration::ZERO && retry_after <= limit.window);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.pin_changes(id).unwrap(), pins, "nothing changed");
        // Other mailboxes, other reasons and unlimited handles are not limited.
        limited.reset_pin(other, &mut rng).unwrap();
        store.reset_pin(id, &mut rng).unwrap();
        queue(&limited, id, ResetReason::TooManyFailures);
        // Once the oldest reset leaves the window, one more is allowed.
        store
            .conn()
            .unwrap()
            .execute(
                "UPDATE pin_resets SET at = at - 3600 WHERE mailbox_id = ?1 AND rowid =
                    (SELECT MIN(rowid) FROM pin_resets WHERE mailbox_id = ?1)",
                [id.0],
            )
            .unwrap();
        limited.reset_pin(id, &mut rng).unwrap();
        assert!(limited.reset_pin(id, &mut rng).is_err());
    }

    #[test]
    fn resets_of_one_mailbox_serialise_and_others_overlap() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Barrier, Condvar};
        // Four mailboxes reset at once: each reset blocks in the hook until all four are in it.
        // Were PIN work serialised behind one lock, this would never finish (the wait times
        // out and the test fails).
        let arrived = Arc::new((Mutex::new(0usize), Condvar::new()));
        let in_hook = Arc::new(AtomicUsize::new(0));
        let hook: PinWorkHook = {
            let arrived = Arc::clone(&arrived);
            Arc::new(move |_| {
                let (count, cv) = &*arrived;
                let mut n = count.lock().unwrap();
                *n += 1;
                cv.notify_all();
                let (n, timeout) = cv
                    .wait_timeout_while(n, Duration::from_secs(20), |n| *n < 4)
                    .unwrap();
                assert!(!timeout.timed_out(), "only {} resets overlapped", *n);
            })
        };
        let (_dir, store) = store();
        let store = store.with_pin_work_hook(hook);
        let ids = users(&store, 4);
        let start = Barrier::new(4);
        std::thread::scope(|s| {
            for &id in &ids {
                let (store, start) = (store.clone(), &start);
                s.spawn(move || {
                    start.wait();
                    store.reset_pin(id, &mut rand::rngs::OsRng).unwrap();
                });
            }
        });

        // One mailbox, eight threads: never two in its PIN work at once, every reset lands.
        let (_dir, store) = self::store();
        let hook: PinWorkHook = {
            let in_hook = Arc::clone(&in_hook);
            Arc::new(move |_| {
                assert_eq!(in_hook.fetch_add(1, Ordering::SeqCst), 0, "overlap");
                std::thread::sleep(Duration::from_millis(5));
                in_hook.fetch_sub(1, Ordering::SeqCst);
            })
        };
        let store = store.with_pin_work_hook(hook);
        let id = store.add_mailbox(alice()).unwrap();
        let policy = PinPolicy {
            pin_history_count: 20,
            ..PinPolicy::default()
        };
        store.set_policy(DEFAULT_POLICY_NAME, &policy).unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                let store = store.clone();
                s.spawn(move || {
                    for _ in 0..2 {
                        store.reset_pin(id, &mut rand::rngs::OsRng).unwrap();
                    }
                });
            }
        });
        assert_eq!(history_len(&store, id), 15);
        assert!(store.shared.pin_locks.lock().unwrap().len() <= 1);
    }
}
