//! The calls of every instance, so that GetCallInfo and Disconnect work on any instance for a
//! call another one placed (see `crate::telephony::shared`).
//!
//! The instance that placed a call owns it: only it has the SIP dialog. It records the call
//! when placed ([`PgStore::call_placed`]) and every change of its state
//! ([`PgStore::call_moved`]), with its liveness lock's key (see `schema.rs`, version 4), so
//! that the others see at once when it died. Another instance answers GetCallInfo from the row
//! ([`PgStore::call_record`]) and passes a Disconnect on by setting `hang_up_requested`
//! ([`PgStore::call_request_hang_up`]) and announcing it on a channel the owner listens to
//! ([`PgStore::hang_ups`]); the owner then checks the row ([`PgStore::call_hang_up_requested`],
//! also looked at now and then in case a notification was missed) and executes it. Rows of
//! ended calls are deleted after the time GetCallInfo answers for them
//! ([`PgStore::calls_purge`]).

use super::{exec, row_opt, unix_now, PgStore};
use crate::store::{MailboxId, StoreError};

/// A call as the store keeps it: its state and cause in the words of the `calls` table
/// (`connecting`, `connected`, `disconnected`; `none`, `user_busy`, `no_answer`,
/// `unavailable`, `other`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The state.
    pub state: String,
    /// The cause.
    pub cause: String,
    /// Whether the call ended.
    pub ended: bool,
    /// When the row was last written by its owner, unix seconds.
    pub updated_at: i64,
    /// Whether the owning instance is this one.
    pub own: bool,
    /// Whether the owning instance holds its liveness lock (or held none when it last wrote
    /// the row, so that only `updated_at` tells); false once it died.
    pub owner_alive: bool,
}

impl PgStore {
    /// This instance's name in the rows it owns (host, process id, and a random part).
    pub fn instance_id(&self) -> &str {
        &self.shared.instance
    }

    /// Records call `call_id` of `mailbox`, placed by this instance, as connecting.
    pub fn call_placed(&self, call_id: &str, mailbox: MailboxId) -> Result<(), StoreError> {
        let now = unix_now();
        exec(
            &self.conn()?,
            "INSERT INTO calls (call_id, mailbox_id, instance, state, cause, started_at,
                                updated_at, owner_key)
             VALUES ($1, $2, $3, 'connecting', 'none', $4, $4, $5)
             ON CONFLICT (call_id) DO NOTHING",
            &[
                &call_id,
                &mailbox.0,
                &self.shared.instance,
                &now,
                &self.live_key(),
            ],
        )?;
        Ok(())
    }

    /// Records the new `state` and `cause` of call `call_id` (owned by this instance); the end
    /// time when `state` is `disconnected`.
    pub fn call_moved(&self, call_id: &str, state: &str, cause: &str) -> Result<(), StoreError> {
        let now = unix_now();
        exec(
            &self.conn()?,
            "UPDATE calls SET state = $2, cause = $3, updated_at = $4,
                    ended_at = CASE WHEN $2::TEXT = 'disconnected' THEN $4::BIGINT END,
                    owner_key = $6
             WHERE call_id = $1 AND instance = $5",
            &[
                &call_id,
                &state,
                &cause,
                &now,
                &self.shared.instance,
                &self.live_key(),
            ],
        )?;
        Ok(())
    }

    /// Call `call_id` of `mailbox`, unless it ended `keep_secs` or more ago; `None` for a call
    /// of another mailbox too.
    pub fn call_record(
        &self,
        mailbox: MailboxId,
        call_id: &str,
        keep_secs: i64,
    ) -> Result<Option<CallRecord>, StoreError> {
        let since = unix_now().saturating_sub(keep_secs);
        let found = row_opt(
            &self.conn()?,
            "SELECT state, cause, ended_at IS NOT NULL, updated_at, instance = $4,
                    owner_key IS NULL OR umws_alive(owner_key)
             FROM calls
             WHERE call_id = $1 AND mailbox_id = $2 AND (ended_at IS NULL OR ended_at > $3)",
            &[&call_id, &mailbox.0, &since, &self.shared.instance],
        )?;
        found
            .map(|r| {
                Ok(CallRecord {
                    state: r.try_get(0)?,
                    cause: r.try_get(1)?,
                    ended: r.try_get(2)?,
                    updated_at: r.try_get(3)?,
                    own: r.try_get(4)?,
                    owner_alive: r.try_get(5)?,
                })
            })
            .transpose()
    }

    /// Asks the owner of call `call_id` of `mailbox` to hang it up; false when there is no
    /// such call (of this mailbox, not purged). A call that ended already is left as it is.
    pub fn call_request_hang_up(
        &self,
        mailbox: MailboxId,
        call_id: &str,
        keep_secs: i64,
    ) -> Result<bool, StoreError> {
        let since = unix_now().saturating_sub(keep_secs);
        let conn = self.conn()?;
        let found = row_opt(
            &conn,
            "UPDATE calls SET hang_up_requested = (ended_at IS NULL)
             WHERE call_id = $1 AND mailbox_id = $2 AND (ended_at IS NULL OR ended_at > $3)
             RETURNING hang_up_requested",
            &[&call_id, &mailbox.0, &since],
        )?;
        let Some(found) = found else {
            return Ok(false);
        };
        if found.try_get::<_, bool>(0)? {
            // The owner hears of it at once (`PgStore::hang_ups`), the row committed.
            exec(
                &conn,
                "SELECT pg_notify($1, $2)",
                &[&super::HANG_UPS_CHANNEL, &call_id],
            )?;
        }
        Ok(true)
    }

    /// Whether another instance asked this one to hang up its call `call_id`.
    pub fn call_hang_up_requested(&self, call_id: &str) -> Result<bool, StoreError> {
        let found = row_opt(
            &self.conn()?,
            "SELECT hang_up_requested FROM calls WHERE call_id = $1 AND instance = $2",
            &[&call_id, &self.shared.instance],
        )?;
        Ok(match found {
            Some(r) => r.try_get(0)?,
            None => false,
        })
    }

    /// Deletes the rows of calls that ended `keep_secs` or more ago, and of calls not updated
    /// for `orphan_secs` (their instance died: no call lasts that long); how many.
    pub fn calls_purge(&self, keep_secs: i64, orphan_secs: i64) -> Result<u64, StoreError> {
        let now = unix_now();
        exec(
            &self.conn()?,
            "DELETE FROM calls WHERE ended_at <= $1 OR (ended_at IS NULL AND updated_at <= $2)",
            &[
                &now.saturating_sub(keep_secs),
                &now.saturating_sub(orphan_secs),
            ],
        )
    }
}
