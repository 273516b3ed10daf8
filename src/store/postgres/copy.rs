//! `umws store copy`: moves a SQLite store (the `umws.sqlite3` of a data directory) into an empty
//! PostgreSQL database, in one transaction, and verifies the copy before committing it.
//!
//! Every row is copied as it is, ids included: mailboxes keep their ids (the folder counter of
//! their entry ids) and their password and PIN hashes, voice messages their ids, and the store
//! keeps its GUID, so entry ids handed out before the move stay valid. The sequences continue
//! after the largest id ever given (SQLite's `sqlite_sequence` for the tables whose ids are
//! never reused). The queued PIN mails keep their spool files in the data directory, which the
//! instances then share (`--data DIR --database URL`); a queued row of an old schema that still
//! holds its message gets its spool file written here.
//!
//! The SQLite side is read in one read transaction (a consistent snapshot, even while a server
//! still writes; stop it first, or its later changes are not copied). The PostgreSQL side takes
//! `EXCLUSIVE` locks on the tables before it checks that they are empty, so an instance writing
//! at the same time waits or is refused, never interleaved. Before the commit, every table is
//! read back and compared with the SQLite snapshot (row counts; every row, columns and hashes;
//! audio by its SHA-256): any difference rolls the whole copy back.

use std::path::Path;

use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;

use super::{block, connect_config, on_runtime, runtime, schema, unavailable};
use crate::store::spool::Spool;
use crate::store::sqlite::{Store as SqliteStore, DATABASE_FILE};
use crate::store::StoreError;

/// Why a copy was refused or failed; nothing was written to the database in any case.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The data directory holds no SQLite store.
    #[error("{} holds no SQLite store ({DATABASE_FILE} is missing)", dir.display())]
    NoSqliteStore {
        /// The data directory.
        dir: std::path::PathBuf,
    },
    /// The target database holds data already.
    #[error(
        "the target database is not empty ({what}); copy only into a new database \
         (or one that only `umws serve --database` has opened, with no mailboxes)"
    )]
    TargetNotEmpty {
        /// What was found.
        what: String,
    },
    /// The rows read back differ from the SQLite store's; the copy was rolled back.
    #[error("the copy does not match the SQLite store ({what}); nothing was committed")]
    Mismatch {
        /// What differs (table and row id; never a value).
        what: String,
    },
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for CopyError {
    fn from(e: tokio_postgres::Error) -> Self {
        CopyError::Store(StoreError::Postgres(e))
    }
}

impl From<rusqlite::Error> for CopyError {
    fn from(e: rusqlite::Error) -> Self {
        CopyError::Store(StoreError::Sqlite(e))
    }
}

/// How a column is kept: the SQLite and PostgreSQL types it has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `INTEGER` / `BIGINT`.
    Int,
    /// `INTEGER` 0 or 1 / `BOOLEAN`.
    Bool,
    /// `TEXT` / `TEXT`.
    Text,
    /// `BLOB` / `BYTEA`; compared by SHA-256.
    Bytes,
}

/// A table copied row by row.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// The `ORDER BY` that lines up the rows of both databases.
    order: &'static str,
    /// The serial id column whose sequence continues after the copy, and whether SQLite keeps
    /// its largest id ever in `sqlite_sequence` (`AUTOINCREMENT`).
    serial: Option<(&'static str, bool)>,
}

use Kind::{Bool, Bytes, Int, Text};

/// The tables, parents before children.
const TABLES: &[Table] = &[
    Table {
        name: "policies",
        columns: &[
            ("id", Int),
            ("name", Text),
            ("min_pin_length", Int),
            ("pin_lifetime_days", Int),
            ("pin_history_count", Int),
            ("allow_common_patterns", Bool),
            ("logon_failures_before_pin_reset", Int),
            ("max_logon_attempts", Int),
            ("reset_pin_text", Text),
        ],
        order: "id",
        serial: Some(("id", false)),
    },
    Table {
        name: "mailboxes",
        columns: &[
            ("id", Int),
            ("user_key", Text),
            ("user_name", Text),
            ("password_hash", Text),
            ("um_enabled", Bool),
            ("extension", Text),
            ("email", Text),
            ("policy_id", Int),
            ("pin_hash", Text),
            ("pin_set_at", Int),
            ("pin_must_change", Bool),
            ("failed_logon_count", Int),
            ("locked_out", Bool),
            ("oof_status", Bool),
            ("missed_call_notification_enabled", Bool),
            ("play_on_phone_dial_string", Text),
            ("telephone_access_folder_email", Text),
            ("telephone_access_numbers", Text),
        ],
        order: "id",
        serial: Some(("id", false)),
    },
    Table {
        name: "pin_history",
        columns: &[
            ("mailbox_id", Int),
            ("seq", Int),
            ("pin_hash", Text),
            ("set_at", Int),
        ],
        order: "mailbox_id, seq",
        serial: None,
    },
    Table {
        name: "pin_resets",
        columns: &[("mailbox_id", Int), ("at", Int)],
        order: "mailbox_id, at",
        serial: None,
    },
    Table {
        name: "outbox",
        columns: &[
            ("id", Int),
            ("key", Text),
            ("mailbox_id", Int),
            ("user_name", Text),
            ("recipient", Text),
            ("created_at", Int),
            ("attempts", Int),
            ("last_attempt_at", Int),
        ],
        order: "id",
        serial: Some(("id", true)),
    },
    Table {
        name: "voice_messages",
        columns: &[
            ("id", Int),
            ("mailbox_id", Int),
            ("calling_number", Text),
            ("duration_ms", Int),
            ("received_at", Int),
            ("audio", Bytes),
            ("heard_at", Int),
        ],
        order: "id",
        serial: Some(("id", true)),
    },
    Table {
        name: "greetings",
        columns: &[
            ("mailbox_id", Int),
            ("kind", Text),
            ("audio", Bytes),
            ("set_at", Int),
        ],
        order: "mailbox_id, kind",
        serial: None,
    },
];

/// One value, as both databases give it (a boolean as 0 or 1, bytes as themselves or, when
/// compared, their SHA-256).
#[derive(Clone, PartialEq, Eq)]
enum Val {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Val {
    fn from_sqlite(v: ValueRef<'_>, kind: Kind) -> Result<Val, CopyError> {
        let wrong = || {
            CopyError::Store(StoreError::InvalidInput {
                field: "SQLite value",
                reason: "not of its column's type",
            })
        };
        Ok(match (v, kind) {
            (ValueRef::Null, _) => Val::Null,
            (ValueRef::Integer(i), Int) => Val::Int(i),
            (ValueRef::Integer(i), Bool) => Val::Int(i64::from(i != 0)),
            (ValueRef::Text(t), Text) => {
                Val::Text(std::str::from_utf8(t).map_err(|_| wrong())?.to_owned())
            }
            (ValueRef::Blob(b), Bytes) => Val::Bytes(b.to_vec()),
            _ => return Err(wrong()),
        })
    }

    fn from_postgres(r: &tokio_postgres::Row, i: usize, kind: Kind) -> Result<Val, CopyError> {
        Ok(match kind {
            Int => r.try_get::<_, Option<i64>>(i)?.map_or(Val::Null, Val::Int),
            Bool => r
                .try_get::<_, Option<bool>>(i)?
                .map_or(Val::Null, |b| Val::Int(i64::from(b))),
            Text => r
                .try_get::<_, Option<String>>(i)?
                .map_or(Val::Null, Val::Text),
            Bytes => r
                .try_get::<_, Option<Vec<u8>>>(i)?
                .map_or(Val::Null, Val::Bytes),
        })
    }

    /// The value as a parameter of a column of `kind`.
    fn param(&self, kind: Kind) -> Box<dyn ToSql + Sync + Send> {
        match (self, kind) {
            (Val::Int(i), Bool) => Box::new(Some(*i != 0)),
            (Val::Int(i), _) => Box::new(Some(*i)),
            (Val::Text(t), _) => Box::new(Some(t.clone())),
            (Val::Bytes(b), _) => Box::new(Some(b.clone())),
            (Val::Null, Int) => Box::new(None::<i64>),
            (Val::Null, Bool) => Box::new(None::<bool>),
            (Val::Null, Text) => Box::new(None::<String>),
            (Val::Null, Bytes) => Box::new(None::<Vec<u8>>),
        }
    }

    /// The value as compared: bytes by their SHA-256.
    fn digest(self) -> Val {
        match self {
            Val::Bytes(b) => Val::Bytes(Sha256::digest(&b).to_vec()),
            other => other,
        }
    }
}

/// What was copied: the rows per table, in the order the copy takes the tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// (table, rows).
    pub tables: Vec<(&'static str, u64)>,
    /// The spool files written for queued rows of an old schema that held their message.
    pub spooled: u64,
}

/// Copies the SQLite store of `data_dir` into the PostgreSQL database at `url` (see the module
/// docs). The database's schema is created first when missing.
pub fn copy_sqlite_to_postgres(data_dir: &Path, url: &str) -> Result<CopyReport, CopyError> {
    copy_checked(data_dir, url, |_| Ok(()))
}

/// [`copy_sqlite_to_postgres`], running `before_check` in the target's transaction once the
/// rows are written, before they are read back (the tests make a difference there).
fn copy_checked(
    data_dir: &Path,
    url: &str,
    before_check: impl FnOnce(&tokio_postgres::Transaction<'_>) -> Result<(), CopyError>,
) -> Result<CopyReport, CopyError> {
    let config = connect_config(url)?;
    if !data_dir.join(DATABASE_FILE).is_file() {
        return Err(CopyError::NoSqliteStore {
            dir: data_dir.to_path_buf(),
        });
    }
    {
        let config = config.clone();
        on_runtime(async move { schema::migrate(&config).await })?;
    }
    let mut client = {
        let config = config.clone();
        on_runtime(async move {
            let (client, connection) = config.connect().await.map_err(unavailable)?;
            runtime()?.spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "copy's database connection ended");
                }
            });
            Ok(client)
        })?
    };
    let tx = block(client.transaction())?;
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    block(tx.batch_execute(&format!(
        "LOCK TABLE {}, store_identity IN EXCLUSIVE MODE",
        names.join(", ")
    )))?;
    refuse_non_empty(&tx)?;
    // Only now, the target known to be empty: opening the SQLite store migrates an older
    // file to the current schema, as `umws serve` would, and removes spool files that its
    // outbox does not name, which in a data directory shared with PostgreSQL instances would
    // be their queued mails.
    let sqlite = SqliteStore::open(data_dir)?;
    let spool = Spool::open(data_dir)?;
    let lite = sqlite.conn()?;
    let snapshot = lite.unchecked_transaction()?;
    block(tx.batch_execute("DELETE FROM policies"))?;

    let mut report = CopyReport {
        tables: Vec::new(),
        spooled: 0,
    };
    for table in TABLES {
        let n = copy_table(&snapshot, &tx, table)?;
        report.tables.push((table.name, n));
        if let Some((column, autoincrement)) = table.serial {
            continue_sequence(&snapshot, &tx, table.name, column, autoincrement)?;
        }
    }
    let guid: Vec<u8> = snapshot.query_row("SELECT guid FROM store_identity", [], |r| r.get(0))?;
    if guid.len() != 16 {
        return Err(StoreError::InvalidInput {
            field: "store GUID",
            reason: "not 16 bytes",
        }
        .into());
    }
    block(tx.execute("UPDATE store_identity SET guid = $1", &[&guid]))?;
    report.spooled = spool_legacy_messages(&snapshot, &spool)?;

    before_check(&tx)?;
    for (table, &(_, n)) in TABLES.iter().zip(&report.tables) {
        verify_table(&snapshot, &tx, table, n)?;
    }
    let copied: Vec<u8> =
        block(tx.query_one("SELECT guid FROM store_identity", &[]))?.try_get(0)?;
    if copied != guid {
        return Err(CopyError::Mismatch {
            what: "store GUID".into(),
        });
    }
    block(tx.commit())?;
    drop(snapshot);
    Ok(report)
}

/// Refuses a database with any row but the default policy as the schema made it.
fn refuse_non_empty(tx: &tokio_postgres::Transaction<'_>) -> Result<(), CopyError> {
    for table in TABLES.iter().filter(|t| t.name != "policies") {
        let n: i64 = block(tx.query_one(&format!("SELECT count(*) FROM {}", table.name), &[]))?
            .try_get(0)?;
        if n > 0 {
            return Err(CopyError::TargetNotEmpty {
                what: format!("{n} rows in {}", table.name),
            });
        }
    }
    let other: i64 = block(tx.query_one(
        "SELECT count(*) FROM policies WHERE NOT (name = 'Default' AND min_pin_length = 6
            AND pin_lifetime_days IS NOT DISTINCT FROM 60 AND pin_history_count = 5
            AND NOT allow_common_patterns
            AND logon_failures_before_pin_reset IS NOT DISTINCT FROM 5
            AND max_logon_attempts IS NOT DISTINCT FROM 15 AND reset_pin_text = '')",
        &[],
    ))?
    .try_get(0)?;
    if other > 0 {
        return Err(CopyError::TargetNotEmpty {
            what: "PIN policies other than the initial Default".into(),
        });
    }
    Ok(())
}

fn column_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Copies the rows of `table`, one at a time (voice messages may be large); their number.
fn copy_table(
    lite: &rusqlite::Connection,
    tx: &tokio_postgres::Transaction<'_>,
    table: &Table,
) -> Result<u64, CopyError> {
    let columns = column_list(table);
    let placeholders = (1..=table.columns.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = block(tx.prepare(&format!(
        "INSERT INTO {} ({columns}) VALUES ({placeholders})",
        table.name
    )))?;
    let mut select = lite.prepare(&format!(
        "SELECT {columns} FROM {} ORDER BY {}",
        table.name, table.order
    ))?;
    let mut found = select.query([])?;
    let mut n = 0u64;
    while let Some(r) = found.next()? {
        let mut params = Vec::with_capacity(table.columns.len());
        for (i, &(_, kind)) in table.columns.iter().enumerate() {
            params.push(Val::from_sqlite(r.get_ref(i)?, kind)?.param(kind));
        }
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        block(tx.execute(&insert, &refs))?;
        n += 1;
    }
    Ok(n)
}

/// Sets the sequence of `table.column` after the largest id SQLite has given.
fn continue_sequence(
    lite: &rusqlite::Connection,
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    column: &str,
    autoincrement: bool,
) -> Result<(), CopyError> {
    let mut last: i64 = lite.query_row(
        &format!("SELECT COALESCE(max({column}), 0) FROM {table}"),
        [],
        |r| r.get(0),
    )?;
    if autoincrement {
        let seq: Option<i64> = lite
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        last = last.max(seq.unwrap_or(0));
    }
    if last > 0 {
        block(tx.execute(
            "SELECT setval(pg_get_serial_sequence($1, $2), $3)",
            &[&table, &column, &last],
        ))?;
    }
    Ok(())
}

/// Writes the spool file of each queued row that still holds its message (an outbox row of
/// schema version 2, before the spool) and has none; their number.
fn spool_legacy_messages(lite: &rusqlite::Connection, spool: &Spool) -> Result<u64, CopyError> {
    let mut select =
        lite.prepare("SELECT key, message FROM outbox WHERE length(message) > 0 ORDER BY id")?;
    let mut found = select.query([])?;
    let mut n = 0u64;
    while let Some(r) = found.next()? {
        let key: String = r.get(0)?;
        let message: Vec<u8> = r.get(1)?;
        if spool.read(&key)?.is_none() {
            spool.write(&key, &message)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Compares `table` in PostgreSQL with the SQLite snapshot: `expected` rows, every row equal.
fn verify_table(
    lite: &rusqlite::Connection,
    tx: &tokio_postgres::Transaction<'_>,
    table: &Table,
    expected: u64,
) -> Result<(), CopyError> {
    let mismatch = |what: String| CopyError::Mismatch { what };
    let sqlite_count: i64 =
        lite.query_row(&format!("SELECT count(*) FROM {}", table.name), [], |r| {
            r.get(0)
        })?;
    let pg_count: i64 =
        block(tx.query_one(&format!("SELECT count(*) FROM {}", table.name), &[]))?.try_get(0)?;
    if u64::try_from(pg_count).ok() != Some(expected) || sqlite_count != pg_count {
        return Err(mismatch(format!(
            "{}: {sqlite_count} rows in SQLite, {pg_count} in PostgreSQL",
            table.name
        )));
    }
    // PostgreSQL hashes the audio itself, so that it is not read back whole.
    let pg_columns = table
        .columns
        .iter()
        .map(|&(c, kind)| {
            if kind == Bytes {
                format!("sha256({c})")
            } else {
                c.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let pg_rows = block(tx.query(
        &format!(
            "SELECT {pg_columns} FROM {} ORDER BY {}",
            table.name, table.order
        ),
        &[],
    ))?;
    let mut select = lite.prepare(&format!(
        "SELECT {} FROM {} ORDER BY {}",
        column_list(table),
        table.name,
        table.order
    ))?;
    let mut found = select.query([])?;
    let mut pg = pg_rows.iter();
    let mut index = 0usize;
    while let Some(r) = found.next()? {
        let p = pg
            .next()
            .ok_or_else(|| mismatch(format!("{}: rows missing", table.name)))?;
        for (i, &(column, kind)) in table.columns.iter().enumerate() {
            let want = Val::from_sqlite(r.get_ref(i)?, kind)?.digest();
            let got = Val::from_postgres(p, i, kind)?;
            if want != got {
                // The row is named by its first column (its id, or its mailbox's).
                let key = match Val::from_sqlite(r.get_ref(0)?, table.columns[0].1)? {
                    Val::Int(i) => i.to_string(),
                    _ => format!("#{index}"),
                };
                return Err(mismatch(format!(
                    "{}: column {column} of the row of {} {key}",
                    table.name, table.columns[0].0
                )));
            }
        }
        index += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{HashCost, NewMailbox};

    /// A row that differs when read back rolls the whole copy back: the target stays empty
    /// (another copy into it then succeeds), and the error names the table and the column,
    /// never a value.
    #[test]
    fn a_difference_rolls_the_copy_back() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(dir.path())
            .unwrap()
            .with_hash_cost(HashCost::Test);
        sqlite
            .add_mailbox(NewMailbox {
                user: "ann".into(),
                password: "pw".into(),
                um_enabled: true,
                extension: Some("4712".into()),
                email: None,
            })
            .unwrap();
        drop(sqlite);
        let db = crate::store::postgres::test_support::database();
        let err = copy_checked(dir.path(), &db.url, |tx| {
            block(tx.batch_execute("UPDATE mailboxes SET extension = '4713'"))?;
            Ok(())
        })
        .unwrap_err();
        match &err {
            CopyError::Mismatch { what } => {
                assert!(what.contains("mailboxes"), "{what}");
                assert!(what.contains("extension"), "{what}");
                assert!(!what.contains("4713") && !what.contains("4712"), "{what}");
            }
            other => panic!("not a mismatch: {other:?}"),
        }
        let target = crate::store::postgres::PgStore::open(&db.url, dir.path()).unwrap();
        assert!(target.mailbox("ann").unwrap().is_none(), "rolled back");
        drop(target);
        let report = copy_sqlite_to_postgres(dir.path(), &db.url).unwrap();
        assert!(
            report.tables.contains(&("mailboxes", 1)),
            "{:?}",
            report.tables
        );
        let target = crate::store::postgres::PgStore::open(&db.url, dir.path()).unwrap();
        let ann = target.mailbox("ann").unwrap().expect("copied");
        assert_eq!(ann.extension.as_deref(), Some("4712"));
    }
}
