//! The subcommands of `umws`, one module each; `main.rs` parses the command
//! line and turns a [`CliError`](crate::CliError) into its message and exit
//! status.

pub(crate) mod client;
pub(crate) mod greeting;
pub(crate) mod mailbox;
pub(crate) mod pin;
pub(crate) mod policy;
pub(crate) mod serve;
pub(crate) mod store;
pub(crate) mod voicemail;

use std::path::PathBuf;

/// Where a command finds the store: the data directory, and the PostgreSQL database when one
/// is given (`--data DIR [--database URL]`).
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// Data directory.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// The PostgreSQL database (postgres://...) instead of the SQLite store in --data, which
    /// then holds only the Maildirs and the outbox spool.
    #[arg(
        long,
        env = "UMWS_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(crate) database: Option<String>,
}
