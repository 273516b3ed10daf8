//! Mailbox rows and PIN policies on PostgreSQL (see `super::super::sqlite::mailboxes` and
//! `policies` for the semantics, which are the same).

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use super::{exec, get_opt_u32, get_u32, is_state, row, row_opt, rows, PgStore};
use crate::pin_policy::PinPolicy;
use crate::store::{
    display_user, hash_secret, normalize_user, validate_new_mailbox, verify_secret,
    CredentialStamp, Mailbox, MailboxId, NewMailbox, StoreError, DEFAULT_POLICY_NAME,
};

/// The columns read into a [`MailboxRow`], in the order [`read_row`] expects.
macro_rules! select_mailbox {
    ($tail:literal) => {
        concat!(
            "SELECT m.id, m.user_name, m.um_enabled, m.extension, m.email,
        p.name, p.min_pin_length, p.pin_lifetime_days, p.pin_history_count,
        p.allow_common_patterns, p.logon_failures_before_pin_reset, p.max_logon_attempts,
        p.reset_pin_text,
        m.pin_hash, m.pin_set_at, m.pin_must_change, m.failed_logon_count, m.locked_out,
        m.oof_status, m.missed_call_notification_enabled, m.play_on_phone_dial_string,
        m.telephone_access_folder_email, m.telephone_access_numbers, m.password_hash
    FROM mailboxes m JOIN policies p ON p.id = m.policy_id ",
            $tail
        )
    };
}

/// A mailbox with the hashes that [`Mailbox`] does not expose.
pub(super) struct MailboxRow {
    pub(super) mailbox: Mailbox,
    pub(super) password_hash: String,
    pub(super) pin_hash: Option<String>,
}

/// A policy from the seven columns of a `policies` row that start at `first`.
fn read_policy(r: &Row, first: usize) -> Result<PinPolicy, StoreError> {
    Ok(PinPolicy {
        min_pin_length: get_u32(r, first)?,
        pin_lifetime_days: get_opt_u32(r, first + 1)?,
        pin_history_count: get_u32(r, first + 2)?,
        allow_common_patterns: r.try_get(first + 3)?,
        logon_failures_before_pin_reset: get_opt_u32(r, first + 4)?,
        max_logon_attempts: get_opt_u32(r, first + 5)?,
        reset_pin_text: r.try_get(first + 6)?,
    })
}

fn read_row(r: &Row) -> Result<MailboxRow, StoreError> {
    let pin_hash: Option<String> = r.try_get(13)?;
    let password_hash: String = r.try_get(23)?;
    let mailbox = Mailbox {
        id: MailboxId(r.try_get(0)?),
        user: r.try_get(1)?,
        um_enabled: r.try_get(2)?,
        extension: r.try_get(3)?,
        email: r.try_get(4)?,
        policy_name: r.try_get(5)?,
        policy: read_policy(r, 6)?,
        pin_set: pin_hash.is_some(),
        pin_set_at: r.try_get(14)?,
        pin_must_change: r.try_get(15)?,
        failed_logon_count: get_u32(r, 16)?,
        locked_out: r.try_get(17)?,
        oof_status: r.try_get(18)?,
        missed_call_notification_enabled: r.try_get(19)?,
        play_on_phone_dial_string: r.try_get(20)?,
        telephone_access_folder_email: r.try_get(21)?,
        telephone_access_numbers: r.try_get(22)?,
        stamp: CredentialStamp::of(&password_hash),
    };
    Ok(MailboxRow {
        mailbox,
        password_hash,
        pin_hash,
    })
}

pub(super) fn row_by_user(
    c: &impl GenericClient,
    user: &str,
) -> Result<Option<MailboxRow>, StoreError> {
    let key = normalize_user(user);
    row_opt(
        c,
        select_mailbox!("WHERE m.user_key = $1"),
        &[&key.as_ref()],
    )?
    .map(|r| read_row(&r))
    .transpose()
}

/// The mailbox `id`; with `lock`, its row is locked (`FOR UPDATE`) until the transaction `c`
/// ends.
pub(super) fn row_by_id(
    c: &impl GenericClient,
    id: MailboxId,
    lock: bool,
) -> Result<Option<MailboxRow>, StoreError> {
    let found = if lock {
        row_opt(
            c,
            select_mailbox!("WHERE m.id = $1 FOR UPDATE OF m"),
            &[&id.0],
        )?
    } else {
        row_opt(c, select_mailbox!("WHERE m.id = $1"), &[&id.0])?
    };
    found.map(|r| read_row(&r)).transpose()
}

impl PgStore {
    /// See [`crate::store::Store::add_mailbox`].
    pub fn add_mailbox(&self, mut new: NewMailbox) -> Result<MailboxId, StoreError> {
        new.user = display_user(&new.user).into_owned();
        validate_new_mailbox(&new)?;
        let password_hash = hash_secret(self.cost, new.password.as_bytes())?;
        let duplicate = || StoreError::DuplicateUser {
            user: new.user.clone(),
        };
        let key = normalize_user(&new.user).into_owned();
        let inserted = row_opt(
            &self.conn()?,
            "INSERT INTO mailboxes (user_key, user_name, password_hash, um_enabled, extension,
                email, policy_id)
             SELECT $1, $2, $3, $4, $5, $6, id FROM policies WHERE lower(name) = lower($7)
             RETURNING id",
            &[
                &key,
                &new.user,
                &password_hash,
                &new.um_enabled,
                &new.extension,
                &new.email,
                &DEFAULT_POLICY_NAME,
            ],
        );
        let id = match inserted {
            Ok(Some(r)) => MailboxId(r.try_get(0)?),
            Ok(None) => {
                return Err(StoreError::UnknownPolicy {
                    name: DEFAULT_POLICY_NAME.to_string(),
                })
            }
            Err(e) if is_state(&e, &SqlState::UNIQUE_VIOLATION) => return Err(duplicate()),
            Err(e) => return Err(e),
        };
        self.wrote();
        tracing::info!(mailbox = %id, user = %new.user, "mailbox added");
        Ok(id)
    }

    /// See [`crate::store::Store::verify_password`].
    pub fn verify_password(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<Mailbox>, StoreError> {
        let found = row_by_user(&self.conn()?, user)?;
        match found {
            Some(row) => {
                Ok(verify_secret(&row.password_hash, password.as_bytes())?.then_some(row.mailbox))
            }
            None => {
                self.verify_dummy(password.as_bytes())?;
                Ok(None)
            }
        }
    }

    /// See [`crate::store::Store::set_password`].
    pub fn set_password(&self, id: MailboxId, password: &str) -> Result<(), StoreError> {
        if password.is_empty() {
            return Err(StoreError::InvalidInput {
                field: "password",
                reason: "empty",
            });
        }
        let hash = hash_secret(self.cost, password.as_bytes())?;
        self.update(
            id,
            "UPDATE mailboxes SET password_hash = $2 WHERE id = $1",
            &hash,
        )
    }

    /// See [`crate::store::Store::mailbox`].
    pub fn mailbox(&self, user: &str) -> Result<Option<Mailbox>, StoreError> {
        Ok(row_by_user(&self.conn()?, user)?.map(|r| r.mailbox))
    }

    /// See [`crate::store::Store::mailbox_by_id`].
    pub fn mailbox_by_id(&self, id: MailboxId) -> Result<Option<Mailbox>, StoreError> {
        Ok(row_by_id(&self.conn()?, id, false)?.map(|r| r.mailbox))
    }

    /// See [`crate::store::Store::mailbox_by_extension`].
    pub fn mailbox_by_extension(&self, extension: &str) -> Result<Option<Mailbox>, StoreError> {
        let mut found = rows(
            &self.conn()?,
            select_mailbox!("WHERE m.extension = $1 LIMIT 2"),
            &[&extension],
        )?;
        if found.len() > 1 {
            tracing::warn!(
                mailboxes = found.len(),
                "an extension is shared by several mailboxes; it signs in to none"
            );
            return Ok(None);
        }
        found
            .pop()
            .map(|r| read_row(&r).map(|row| row.mailbox))
            .transpose()
    }

    /// See [`crate::store::Store::mailboxes`].
    pub fn mailboxes(&self) -> Result<Vec<Mailbox>, StoreError> {
        rows(&self.conn()?, select_mailbox!("ORDER BY m.id"), &[])?
            .iter()
            .map(|r| read_row(r).map(|row| row.mailbox))
            .collect()
    }

    /// Runs an `UPDATE ... WHERE id = $1` with `value` as `$2`; no row is
    /// [`StoreError::UnknownMailbox`].
    pub(super) fn update(
        &self,
        id: MailboxId,
        sql: &str,
        value: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<(), StoreError> {
        let changed = exec(&self.conn()?, sql, &[&id.0, value])?;
        if changed == 0 {
            return Err(StoreError::UnknownMailbox(id));
        }
        self.wrote();
        Ok(())
    }

    /// See [`crate::store::Store::set_oof_status`].
    pub fn set_oof_status(&self, id: MailboxId, status: bool) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET oof_status = $2 WHERE id = $1",
            &status,
        )
    }

    /// See [`crate::store::Store::set_missed_call_notification_enabled`].
    pub fn set_missed_call_notification_enabled(
        &self,
        id: MailboxId,
        enabled: bool,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET missed_call_notification_enabled = $2 WHERE id = $1",
            &enabled,
        )
    }

    /// See [`crate::store::Store::set_play_on_phone_dial_string`].
    pub fn set_play_on_phone_dial_string(
        &self,
        id: MailboxId,
        dial_string: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET play_on_phone_dial_string = $2 WHERE id = $1",
            &dial_string,
        )
    }

    /// See [`crate::store::Store::set_telephone_access_folder_email`].
    pub fn set_telephone_access_folder_email(
        &self,
        id: MailboxId,
        base64_folder_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET telephone_access_folder_email = $2 WHERE id = $1",
            &base64_folder_id,
        )
    }

    /// See [`crate::store::Store::set_telephone_access_numbers`].
    pub fn set_telephone_access_numbers(
        &self,
        id: MailboxId,
        numbers: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET telephone_access_numbers = $2 WHERE id = $1",
            &numbers,
        )
    }

    /// See [`crate::store::Store::policy`].
    pub fn policy(&self, name: &str) -> Result<Option<PinPolicy>, StoreError> {
        row_opt(
            &self.conn()?,
            "SELECT min_pin_length, pin_lifetime_days, pin_history_count, allow_common_patterns,
                logon_failures_before_pin_reset, max_logon_attempts, reset_pin_text
             FROM policies WHERE lower(name) = lower($1)",
            &[&name],
        )?
        .map(|r| read_policy(&r, 0))
        .transpose()
    }

    /// See [`crate::store::Store::set_policy`].
    pub fn set_policy(&self, name: &str, policy: &PinPolicy) -> Result<(), StoreError> {
        policy.validate()?;
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(StoreError::InvalidInput {
                field: "policy name",
                reason: "empty or contains a control character",
            });
        }
        let opt = |v: Option<u32>| v.map(i64::from);
        exec(
            &self.conn()?,
            "INSERT INTO policies (name, min_pin_length, pin_lifetime_days, pin_history_count,
                allow_common_patterns, logon_failures_before_pin_reset, max_logon_attempts,
                reset_pin_text) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT ((lower(name))) DO UPDATE SET min_pin_length = $2,
                pin_lifetime_days = $3, pin_history_count = $4, allow_common_patterns = $5,
                logon_failures_before_pin_reset = $6, max_logon_attempts = $7,
                reset_pin_text = $8",
            &[
                &name,
                &i64::from(policy.min_pin_length),
                &opt(policy.pin_lifetime_days),
                &i64::from(policy.pin_history_count),
                &policy.allow_common_patterns,
                &opt(policy.logon_failures_before_pin_reset),
                &opt(policy.max_logon_attempts),
                &policy.reset_pin_text,
            ],
        )?;
        self.wrote();
        Ok(())
    }

    /// See [`crate::store::Store::policies`].
    pub fn policies(&self) -> Result<Vec<(String, PinPolicy)>, StoreError> {
        // Ordered as SQLite's BINARY collation orders them (byte-wise).
        rows(
            &self.conn()?,
            "SELECT name, min_pin_length, pin_lifetime_days, pin_history_count,
                allow_common_patterns, logon_failures_before_pin_reset, max_logon_attempts,
                reset_pin_text
             FROM policies ORDER BY name COLLATE \"C\"",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, read_policy(r, 1)?)))
        .collect()
    }

    /// See [`crate::store::Store::set_mailbox_policy`].
    pub fn set_mailbox_policy(&self, id: MailboxId, policy: &str) -> Result<(), StoreError> {
        let policy_id: i64 = row_opt(
            &self.conn()?,
            "SELECT id FROM policies WHERE lower(name) = lower($1)",
            &[&policy],
        )?
        .ok_or_else(|| StoreError::UnknownPolicy {
            name: policy.to_string(),
        })?
        .try_get(0)?;
        self.update(
            id,
            "UPDATE mailboxes SET policy_id = $2 WHERE id = $1",
            &policy_id,
        )
    }

    /// See [`crate::store::Store::store_guid`].
    pub fn store_guid(&self) -> Result<[u8; 16], StoreError> {
        let guid: Vec<u8> =
            row(&self.conn()?, "SELECT guid FROM store_identity", &[])?.try_get(0)?;
        guid.try_into().map_err(|_| StoreError::InvalidInput {
            field: "store GUID",
            reason: "not 16 bytes",
        })
    }
}
