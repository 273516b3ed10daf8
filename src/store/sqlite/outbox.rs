//! The outbox of PIN mails: the rows that `resets.rs` inserts and their spool files
//! (`crate::store::spool`), read, removed and swept here for the delivery by
//! `crate::mail::outbox`.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{unix_now, Store};
use crate::store::{MailboxId, OutboxMail, StoreError};

impl Store {
    /// Removes the spool files that no outbox row names: mails delivered just before a crash
    /// (the row deleted, the file not yet) or whose file could not be unlinked then, and mails
    /// whose transaction never committed. Runs under SQLite's write lock, so no transaction is
    /// between creating its file and committing its row (see `crate::store::spool`). Called by
    /// [`open`](Self::open) and by the outbox's background delivery when the outbox is empty;
    /// an empty spool costs one directory read.
    pub fn sweep_spool(&self) -> Result<(), StoreError> {
        let spool = &self.shared.spool;
        if spool.keys()?.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut removed = 0u32;
        for key in spool.keys()? {
            let queued: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE key = ?1)",
                [&key],
                |r| r.get(0),
            )?;
            if !queued {
                spool.remove(&key)?;
                removed += 1;
            }
        }
        drop(tx);
        if removed > 0 {
            tracing::info!(
                files = removed,
                "removed spool files of delivered or uncommitted mails"
            );
        }
        Ok(())
    }

    /// Unlinks the spool file of `key` unless an outbox row names it.
    pub(super) fn remove_if_unqueued(&self, key: &str) -> Result<(), StoreError> {
        let queued: bool = self.conn()?.query_row(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE key = ?1)",
            [key],
            |r| r.get(0),
        )?;
        if !queued {
            self.shared.spool.remove(key)?;
        }
        Ok(())
    }

    /// Up to `limit` mails of the outbox with a row id above `after` (0: from the start),
    /// oldest first.
    pub fn outbox_pending(&self, after: i64, limit: u32) -> Result<Vec<OutboxMail>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, key, mailbox_id, user_name, recipient, message, created_at, attempts
             FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![after, limit], |r| {
                Ok(OutboxMail {
                    id: r.get(0)?,
                    key: r.get(1)?,
                    mailbox_id: MailboxId(r.get(2)?),
                    user: r.get(3)?,
                    recipient: r.get(4)?,
                    message: r.get(5)?,
                    created_at: r.get(6)?,
                    attempts: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(stmt);
        drop(conn);
        let mut mails = Vec::with_capacity(rows.len());
        for mut mail in rows {
            // A row of an older version holds its message; since version 3 it is spooled.
            if !mail.message.is_empty() {
                mails.push(mail);
                continue;
            }
            match self.shared.spool.read(&mail.key)? {
                Some(message) => {
                    mail.message = message;
                    mails.push(mail);
                }
                None => self.spool_file_missing(&mail)?,
            }
        }
        Ok(mails)
    }

    /// A queued row whose spool file is gone: delivered meanwhile by another process (which
    /// deletes the row before the file), or lost. A lost one is logged and its row removed,
    /// so that it does not block the outbox for ever.
    fn spool_file_missing(&self, mail: &OutboxMail) -> Result<(), StoreError> {
        let removed = self
            .conn()?
            .prepare_cached("DELETE FROM outbox WHERE id = ?1")?
            .execute([mail.id])?;
        if removed > 0 {
            tracing::error!(mailbox = %mail.mailbox_id, key = %mail.key, "queued PIN mail lost: its spool file is missing; the user must reset the PIN again");
        }
        Ok(())
    }

    /// How many mails the outbox holds.
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn()?
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?)
    }

    /// Removes a delivered mail from the outbox, then unlinks its spool file, so that nothing
    /// of it (nor its PIN) stays in the data directory outside the Maildir; false when it was
    /// gone already (delivered by someone else). A crash between the two leaves a file without
    /// a row, removed at the next [`open`](Self::open).
    pub fn outbox_remove(&self, id: i64) -> Result<bool, StoreError> {
        let key: Option<String> = self
            .conn()?
            .prepare_cached("DELETE FROM outbox WHERE id = ?1 RETURNING key")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        match key {
            Some(key) => {
                self.shared.spool.remove(&key)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Records a failed delivery attempt of an outbox mail.
    pub fn outbox_record_failure(&self, id: i64) -> Result<(), StoreError> {
        self.conn()?
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?2 WHERE id = ?1",
            )?
            .execute(params![id, unix_now()])?;
        Ok(())
    }
}
