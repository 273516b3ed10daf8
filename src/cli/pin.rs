//! `umws pin`: check and change PINs as the telephone user interface does.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use umws::mail::{Delivery, Maildir, Outbox, ResetPinMailer};
use umws::phone::{self, PinChange};
use umws::store::{HashCost, PinCheck, Store};

use super::StoreArgs;
use crate::CliError;

#[derive(Debug, Subcommand)]
pub(crate) enum PinCommand {
    /// Check a PIN as a phone logon does, counting failures.
    ///
    /// Exit status: 0 accepted (also when it must be changed now), 1 refused, 2 error,
    /// 3 expired (older than PINLifetime; change it with `umws pin set`), 4 locked out.
    ///
    /// Every LogonFailuresBeforePINReset failures in a row the PIN is reset and the new one
    /// mailed; at MaxLogonAttempts the mailbox is locked out and even the right PIN is refused
    /// until a ResetPIN or `umws mailbox unlock`. A right PIN clears the count.
    #[command(verbatim_doc_comment)]
    Check {
        #[command(flatten)]
        store_args: StoreArgs,
        /// User name.
        #[arg(long)]
        user: String,
        /// The PIN to check.
        #[arg(long)]
        pin: String,
    },
    /// Change a PIN under the mailbox's policy, as the phone does.
    ///
    /// The new PIN must have MinPINLength to 24 digits, may not begin with the extension, may
    /// not repeat one digit or run consecutively (unless AllowCommonPatterns), and may not be
    /// the current PIN or one of the last PINHistoryCount. Clears the must-change mark.
    ///
    /// Exit status: 0 changed, 1 old PIN refused (a wrong one counts as a failed logon),
    /// 2 error, 4 locked out, 5 new PIN refused (the message names the rule).
    #[command(verbatim_doc_comment)]
    Set {
        #[command(flatten)]
        store_args: StoreArgs,
        /// User name.
        #[arg(long)]
        user: String,
        /// The current PIN (an expired one is accepted here).
        #[arg(long)]
        old: String,
        /// The new PIN.
        #[arg(long)]
        new: String,
    },
}

/// The exit status of `umws pin check` / `pin set` for a refused (old) PIN.
pub(crate) fn refusal(check: PinCheck) -> (u8, &'static str) {
    match check {
        PinCheck::Ok | PinCheck::OkMustChange => (0, "PIN accepted"),
        PinCheck::Expired => (3, "PIN expired; it must be changed (umws pin set)"),
        PinCheck::Wrong { .. } => (1, "PIN refused"),
        PinCheck::LockedOut => (
            4,
            "PIN refused: the mailbox is locked out (a ResetPIN or `umws mailbox unlock` lifts it)",
        ),
        PinCheck::NoPin => (1, "PIN refused: no PIN is set"),
        PinCheck::NotUmEnabled => (
            1,
            "PIN refused: the mailbox is not enabled for Unified Messaging",
        ),
        PinCheck::UnknownUser => (1, "PIN refused"),
    }
}

/// The outbox that `pin check` and `pin set` mail automatic resets through: the store and
/// Maildirs of `data`, the default sender.
pub(crate) fn phone_outbox(
    data: &Path,
    database: Option<&str>,
) -> Result<Outbox<Maildir>, CliError> {
    let store = Store::open_with(database, data, false)?.with_hash_cost(HashCost::Production);
    let mailer = ResetPinMailer::new(Maildir::in_data_dir(data));
    Ok(Outbox::new(store, Arc::new(mailer)))
}

/// Prints what became of an automatic reset.
pub(crate) fn print_auto_reset(logon: &phone::Logon) {
    if let (PinCheck::Wrong { failures, .. }, Some(delivery)) = (logon.check, &logon.auto_reset) {
        let mail = match delivery {
            Delivery::Delivered(_) => "mailed",
            Delivery::Queued => "queued for mailing",
        };
        println!("after {failures} failed logons the PIN was reset; the new PIN was {mail}");
    }
}

pub(crate) fn pin_check(
    data: &Path,
    database: Option<&str>,
    user: &str,
    pin: &str,
) -> Result<ExitCode, CliError> {
    let outbox = phone_outbox(data, database)?;
    let logon = phone::logon(&outbox, user, pin)?;
    let (code, message) = match logon.check {
        PinCheck::OkMustChange => (0, "PIN accepted; it was reset and must be changed now"),
        check => refusal(check),
    };
    println!("{message}");
    print_auto_reset(&logon);
    Ok(ExitCode::from(code))
}

pub(crate) fn pin_set(
    data: &Path,
    database: Option<&str>,
    user: &str,
    old: &str,
    new: &str,
) -> Result<ExitCode, CliError> {
    let outbox = phone_outbox(data, database)?;
    match phone::change_pin(&outbox, user, old, new)? {
        PinChange::Changed => {
            println!("PIN changed");
            Ok(ExitCode::SUCCESS)
        }
        PinChange::OldPinRefused(logon) => {
            let (code, message) = refusal(logon.check);
            println!(
                "PIN not changed: old {}",
                message.trim_start_matches("PIN ")
            );
            print_auto_reset(&logon);
            Ok(ExitCode::from(code))
        }
        PinChange::Rejected(rule) => {
            println!(
                "PIN not changed: the new PIN is refused by {}: {rule}",
                rule.rule()
            );
            Ok(ExitCode::from(5))
        }
    }
}
