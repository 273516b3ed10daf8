//! PIN policies: reading and writing them, and assigning one to a mailbox.

use rusqlite::{params, OptionalExtension, Row};

use super::Store;
use crate::pin_policy::PinPolicy;
use crate::store::{MailboxId, StoreError};

/// A policy from the seven columns of a `policies` row that start at `first`, in this
/// order: `min_pin_length, pin_lifetime_days, pin_history_count, allow_common_patterns,
/// logon_failures_before_pin_reset, max_logon_attempts, reset_pin_text`.
pub(super) fn read_policy(r: &Row<'_>, first: usize) -> rusqlite::Result<PinPolicy> {
    Ok(PinPolicy {
        min_pin_length: r.get(first)?,
        pin_lifetime_days: r.get(first + 1)?,
        pin_history_count: r.get(first + 2)?,
        allow_common_patterns: r.get(first + 3)?,
        logon_failures_before_pin_reset: r.get(first + 4)?,
        max_logon_attempts: r.get(first + 5)?,
        reset_pin_text: r.get(first + 6)?,
    })
}

impl Store {
    /// The PIN policy named `name` (case-insensitive), if any.
    pub fn policy(&self, name: &str) -> Result<Option<PinPolicy>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT min_pin_length, pin_lifetime_days, pin_history_count, allow_common_patterns,
                logon_failures_before_pin_reset, max_logon_attempts, reset_pin_text
             FROM policies WHERE name = ?1",
        )?;
        Ok(stmt.query_row([name], |r| read_policy(r, 0)).optional()?)
    }

    /// Creates or replaces the PIN policy named `name` after [validating](PinPolicy::validate)
    /// it. Use [`DEFAULT_POLICY_NAME`] to change the policy of every mailbox that has no other.
    ///
    /// [`DEFAULT_POLICY_NAME`]: crate::store::DEFAULT_POLICY_NAME
    pub fn set_policy(&self, name: &str, policy: &PinPolicy) -> Result<(), StoreError> {
        policy.validate()?;
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(StoreError::InvalidInput {
                field: "policy name",
                reason: "empty or contains a control character",
            });
        }
        self.conn()?
            .prepare_cached(
                "INSERT INTO policies (name, min_pin_length, pin_lifetime_days, pin_history_count,
                allow_common_patterns, logon_failures_before_pin_reset, max_logon_attempts,
                reset_pin_text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (name) DO UPDATE SET min_pin_length = ?2, pin_lifetime_days = ?3,
                pin_history_count = ?4, allow_common_patterns = ?5,
                logon_failures_before_pin_reset = ?6, max_logon_attempts = ?7,
                reset_pin_text = ?8",
            )?
            .execute(params![
                name,
                policy.min_pin_length,
                policy.pin_lifetime_days,
                policy.pin_history_count,
                policy.allow_common_patterns,
                policy.logon_failures_before_pin_reset,
                policy.max_logon_attempts,
                policy.reset_pin_text
            ])?;
        Ok(())
    }

    /// All PIN policies, by name.
    pub fn policies(&self) -> Result<Vec<(String, PinPolicy)>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT name, min_pin_length, pin_lifetime_days, pin_history_count,
                allow_common_patterns, logon_failures_before_pin_reset, max_logon_attempts,
                reset_pin_text
             FROM policies ORDER BY name",
        )?;
        let policies = stmt
            .query_map([], |r| Ok((r.get(0)?, read_policy(r, 1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(policies)
    }

    /// Assigns the policy named `policy` (case-insensitive) to mailbox `id`. It applies from the
    /// next PIN reset, change or logon on.
    pub fn set_mailbox_policy(&self, id: MailboxId, policy: &str) -> Result<(), StoreError> {
        let policy_id: i64 = self
            .conn()?
            .prepare_cached("SELECT id FROM policies WHERE name = ?1")?
            .query_row([policy], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::UnknownPolicy {
                name: policy.to_string(),
            })?;
        self.update(
            id,
            "UPDATE mailboxes SET policy_id = ?2 WHERE id = ?1",
            policy_id,
        )
    }
}
