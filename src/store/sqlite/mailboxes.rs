//! Mailbox rows: adding a mailbox, looking mailboxes up, passwords, and the settings of the UM
//! operations (`SetOofStatus` and the like). Also the query that reads a whole mailbox with its
//! policy and hashes, which the PIN code uses too.

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::Store;
use crate::store::{
    display_user, hash_secret, normalize_user, validate_new_mailbox, verify_secret,
    CredentialStamp, Mailbox, MailboxId, NewMailbox, StoreError, DEFAULT_POLICY_NAME,
};

/// The columns read into a [`MailboxRow`], in the order [`read_row`] expects.
/// A macro so that the queries below are built once, at compile time
/// (`row_by_user` runs on every authenticated request).
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

fn read_row(r: &Row<'_>) -> rusqlite::Result<MailboxRow> {
    let pin_hash: Option<String> = r.get(13)?;
    let password_hash: String = r.get(23)?;
    let mailbox = Mailbox {
        id: MailboxId(r.get(0)?),
        user: r.get(1)?,
        um_enabled: r.get(2)?,
        extension: r.get(3)?,
        email: r.get(4)?,
        policy_name: r.get(5)?,
        policy: super::policies::read_policy(r, 6)?,
        pin_set: pin_hash.is_some(),
        pin_set_at: r.get(14)?,
        pin_must_change: r.get(15)?,
        failed_logon_count: r.get(16)?,
        locked_out: r.get(17)?,
        oof_status: r.get(18)?,
        missed_call_notification_enabled: r.get(19)?,
        play_on_phone_dial_string: r.get(20)?,
        telephone_access_folder_email: r.get(21)?,
        telephone_access_numbers: r.get(22)?,
        stamp: CredentialStamp::of(&password_hash),
    };
    Ok(MailboxRow {
        mailbox,
        password_hash,
        pin_hash,
    })
}

pub(super) fn row_by_user(conn: &Connection, user: &str) -> Result<Option<MailboxRow>, StoreError> {
    Ok(conn
        .prepare_cached(select_mailbox!("WHERE m.user_key = ?1"))?
        .query_row([normalize_user(user)], read_row)
        .optional()?)
}

pub(super) fn row_by_id(
    conn: &Connection,
    id: MailboxId,
) -> Result<Option<MailboxRow>, StoreError> {
    Ok(conn
        .prepare_cached(select_mailbox!("WHERE m.id = ?1"))?
        .query_row([id.0], read_row)
        .optional()?)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

impl Store {
    /// Adds a mailbox with the default policy and no PIN. Refuses a user name that exists
    /// already (compared case-insensitively) with [`StoreError::DuplicateUser`].
    pub fn add_mailbox(&self, mut new: NewMailbox) -> Result<MailboxId, StoreError> {
        new.user = display_user(&new.user).into_owned();
        validate_new_mailbox(&new)?;
        let password_hash = hash_secret(self.cost, new.password.as_bytes())?;
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let duplicate = || StoreError::DuplicateUser {
            user: new.user.clone(),
        };
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM mailboxes WHERE user_key = ?1)",
            [normalize_user(&new.user)],
            |r| r.get(0),
        )?;
        if exists {
            return Err(duplicate());
        }
        let policy_id: i64 = tx
            .query_row(
                "SELECT id FROM policies WHERE name = ?1",
                [DEFAULT_POLICY_NAME],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownPolicy {
                name: DEFAULT_POLICY_NAME.to_string(),
            })?;
        tx.execute(
            "INSERT INTO mailboxes (user_key, user_name, password_hash, um_enabled, extension,
                email, policy_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                normalize_user(&new.user),
                new.user,
                password_hash,
                new.um_enabled,
                new.extension,
                new.email,
                policy_id
            ],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                duplicate()
            } else {
                e.into()
            }
        })?;
        let id = MailboxId(tx.last_insert_rowid());
        tx.commit()?;
        tracing::info!(mailbox = %id, user = %new.user, "mailbox added");
        Ok(id)
    }

    /// Checks a user's password. `Ok(None)` for a wrong password and for an unknown user; the
    /// latter still spends one hash verification, so timing does not tell them apart.
    ///
    /// This is slow on purpose (one argon2 verification); see `crate::auth` for the cache that
    /// keeps it off the per-request path.
    pub fn verify_password(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<Mailbox>, StoreError> {
        let row = row_by_user(&*self.conn()?, user)?;
        match row {
            Some(row) => {
                Ok(verify_secret(&row.password_hash, password.as_bytes())?.then_some(row.mailbox))
            }
            None => {
                self.verify_dummy(password.as_bytes())?;
                Ok(None)
            }
        }
    }

    /// Replaces a mailbox's password.
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
            "UPDATE mailboxes SET password_hash = ?2 WHERE id = ?1",
            hash,
        )
    }

    /// The mailbox of `user` (case-insensitive), if any.
    pub fn mailbox(&self, user: &str) -> Result<Option<Mailbox>, StoreError> {
        Ok(row_by_user(&*self.conn()?, user)?.map(|r| r.mailbox))
    }

    /// The mailbox with this id, if any.
    pub fn mailbox_by_id(&self, id: MailboxId) -> Result<Option<Mailbox>, StoreError> {
        Ok(row_by_id(&*self.conn()?, id)?.map(|r| r.mailbox))
    }

    /// The mailbox whose extension is `extension`, when exactly one has it (extensions are not
    /// unique in the store; an extension shared by several mailboxes names none of them, so
    /// that a caller is never signed in to a mailbox chosen by accident).
    pub fn mailbox_by_extension(&self, extension: &str) -> Result<Option<Mailbox>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(select_mailbox!("WHERE m.extension = ?1 LIMIT 2"))?;
        let mut rows = stmt
            .query_map([extension], |r| read_row(r).map(|row| row.mailbox))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if rows.len() > 1 {
            tracing::warn!(
                mailboxes = rows.len(),
                "an extension is shared by several mailboxes; it signs in to none"
            );
            return Ok(None);
        }
        Ok(rows.pop())
    }

    /// All mailboxes, ordered by id.
    pub fn mailboxes(&self) -> Result<Vec<Mailbox>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(select_mailbox!("ORDER BY m.id"))?;
        let rows = stmt
            .query_map([], |r| read_row(r).map(|row| row.mailbox))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Runs an `UPDATE ... WHERE id = ?1` with `value` as `?2`; no row is
    /// [`StoreError::UnknownMailbox`].
    pub(super) fn update(
        &self,
        id: MailboxId,
        sql: &str,
        value: impl rusqlite::ToSql,
    ) -> Result<(), StoreError> {
        let changed = self
            .conn()?
            .prepare_cached(sql)?
            .execute(params![id.0, value])?;
        if changed == 0 {
            return Err(StoreError::UnknownMailbox(id));
        }
        Ok(())
    }

    /// Sets the Out of Office status (`SetOofStatus`).
    pub fn set_oof_status(&self, id: MailboxId, status: bool) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET oof_status = ?2 WHERE id = ?1",
            status,
        )
    }

    /// Turns missed-call notifications on or off (`SetMissedCallNotificationEnabled`).
    pub fn set_missed_call_notification_enabled(
        &self,
        id: MailboxId,
        enabled: bool,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET missed_call_notification_enabled = ?2 WHERE id = ?1",
            enabled,
        )
    }

    /// Sets or clears the default Play on Phone dial string (`SetPlayOnPhoneDialString`).
    pub fn set_play_on_phone_dial_string(
        &self,
        id: MailboxId,
        dial_string: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET play_on_phone_dial_string = ?2 WHERE id = ?1",
            dial_string,
        )
    }

    /// Sets or clears the telephone access folder, a base64 folder id
    /// (`SetTelephoneAccessFolderEmail`).
    pub fn set_telephone_access_folder_email(
        &self,
        id: MailboxId,
        base64_folder_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET telephone_access_folder_email = ?2 WHERE id = ?1",
            base64_folder_id,
        )
    }

    /// Sets or clears the voice mail access numbers shown to the user (several joined by ", ").
    pub fn set_telephone_access_numbers(
        &self,
        id: MailboxId,
        numbers: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update(
            id,
            "UPDATE mailboxes SET telephone_access_numbers = ?2 WHERE id = ?1",
            numbers,
        )
    }
}
