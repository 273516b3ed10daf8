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
