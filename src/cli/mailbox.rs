//! `umws mailbox`: add, list, unlock mailboxes and assign policies.

use std::path::PathBuf;

use clap::Subcommand;

use umws::phone::{self};
use umws::store::{NewMailbox, Store};

use super::StoreArgs;
use crate::CliError;

#[derive(Debug, Subcommand)]
pub(crate) enum MailboxCommand {
    /// Add a mailbox.
    Add {
        /// Data directory (created if missing).
        #[arg(long)]
        data: PathBuf,
        /// The PostgreSQL database (postgres://...) instead of the SQLite store in --data, which
        /// then holds only the Maildirs and the outbox spool.
        #[arg(
            long,
            env = "UMWS_DATABASE_URL",
            hide_env_values = true,
            value_name = "URL"
        )]
        database: Option<String>,
        /// User name (the HTTP logon name).
        #[arg(long)]
        user: String,
        /// Password for HTTP Basic authentication.
        #[arg(long, env = "UMWS_PASSWORD", hide_env_values = true)]
        password: String,
        /// Telephone extension (digits).
        #[arg(long)]
        extension: Option<String>,
        /// Email address the ResetPIN mail is addressed to.
        #[arg(long)]
        email: Option<String>,
        /// Do not enable the mailbox for Unified Messaging.
        #[arg(long)]
        no_um: bool,
    },
    /// List the mailboxes.
    List {
        #[command(flatten)]
        store_args: StoreArgs,
    },
    /// Lift a phone lockout (after MaxLogonAttempts failed PIN logons) and clear the failed
    /// logon count; the PIN stays as it is.
    Unlock {
        #[command(flatten)]
        store_args: StoreArgs,
        /// User name.
        #[arg(long)]
        user: String,
    },
    /// Assign a UM mailbox policy; it applies from the next PIN reset, change or logon.
    SetPolicy {
        #[command(flatten)]
        store_args: StoreArgs,
        /// User name.
        #[arg(long)]
        user: String,
        /// The policy name (see `umws policy show`).
        #[arg(long)]
        policy: String,
    },
}

pub(crate) fn mailbox(cmd: MailboxCommand) -> Result<(), CliError> {
    match cmd {
        MailboxCommand::Add {
            data,
            database,
            user,
            password,
            extension,
            email,
            no_um,
        } => {
            let store = Store::open_with(database.as_deref(), &data, true)?;
            let id = store.add_mailbox(NewMailbox {
                user: user.clone(),
                password,
                um_enabled: !no_um,
                extension,
                email,
            })?;
            println!("added mailbox {user} (id {})", id.0);
            Ok(())
        }
        MailboxCommand::List {
            store_args: StoreArgs { data, database },
        } => {
            let store = Store::open_with(database.as_deref(), &data, false)?;
            for m in store.mailboxes()? {
                println!(
                    "{}\tum={}\textension={}\temail={}\tpin={}\tpolicy={}\tfailed_logons={}{}",
                    m.user,
                    m.um_enabled,
                    m.extension.as_deref().unwrap_or("-"),
                    m.email.as_deref().unwrap_or("-"),
                    if m.pin_set { "set" } else { "unset" },
                    m.policy_name,
                    m.failed_logon_count,
                    if m.locked_out { "\tlocked_out" } else { "" },
                );
            }
            Ok(())
        }
        MailboxCommand::Unlock {
            store_args: StoreArgs { data, database },
            user,
        } => {
            let store = Store::open_with(database.as_deref(), &data, false)?;
            if !phone::unlock(&store, &user)? {
                return Err(CliError::UnknownUser(user));
            }
            println!("mailbox {user} unlocked");
            Ok(())
        }
        MailboxCommand::SetPolicy {
            store_args: StoreArgs { data, database },
            user,
            policy,
        } => {
            let store = Store::open_with(database.as_deref(), &data, false)?;
            let m = store
                .mailbox(&user)?
                .ok_or_else(|| CliError::UnknownUser(user.clone()))?;
            store.set_mailbox_policy(m.id, &policy)?;
            println!("mailbox {user} now has policy {policy}");
            Ok(())
        }
    }
}
