//! `umws store`: move a store between backends.

use std::path::PathBuf;

use clap::Subcommand;

use umws::store::postgres::copy::copy_sqlite_to_postgres;

use crate::CliError;

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Copy the SQLite store of a data directory into an empty PostgreSQL database, in one
    /// transaction, and verify the copy (row counts, every mailbox with its password and PIN
    /// hashes, the PIN history, every voice message by its audio's SHA-256) before committing.
    ///
    /// Everything is copied: mailboxes, policies, PIN history, the ResetPIN log, queued PIN
    /// mails (their spool files stay in the data directory, which the instances then share),
    /// voice messages, greetings, and the store's GUID, so entry ids stay valid. A database
    /// that holds any mailbox, message or policy change already is refused. The SQLite store is
    /// left as it was. Stop `umws serve` first; afterwards run it (and the other commands)
    /// with `--data DIR --database URL`.
    #[command(verbatim_doc_comment)]
    Copy {
        /// The data directory of the SQLite store (its umws.sqlite3).
        #[arg(long)]
        from_data: PathBuf,
        /// The PostgreSQL database (postgres://...); its schema is created when missing.
        #[arg(
            long,
            env = "UMWS_DATABASE_URL",
            hide_env_values = true,
            value_name = "URL"
        )]
        to_database: String,
    },
}

pub(crate) fn store(cmd: StoreCommand) -> Result<(), CliError> {
    match cmd {
        StoreCommand::Copy {
            from_data,
            to_database,
        } => {
            let report = copy_sqlite_to_postgres(&from_data, &to_database)?;
            for (table, rows) in &report.tables {
                println!("{table}\t{rows}");
            }
            if report.spooled > 0 {
                println!(
                    "wrote {} spool files of queued mails of an older schema",
                    report.spooled
                );
            }
            println!(
                "copied and verified; serve with --data {} --database URL from now on",
                from_data.display()
            );
            Ok(())
        }
    }
}
