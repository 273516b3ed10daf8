//! `umws policy`: UM mailbox policies (the PIN rules).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use umws::pin_policy::PinPolicy;
use umws::store::{Store, StoreError};

use super::StoreArgs;
use crate::CliError;

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Create or change a named UM mailbox policy; values out of range are refused.
    ///
    /// Starts from the policy's current settings (or the defaults for a new one, or the TOML
    /// of --file); the flags given override them. Ranges (UM-SPEC.md): MinPINLength 4-24,
    /// PINLifetime 1-999 days or Unlimited, PINHistoryCount 1-20, LogonFailuresBeforePINReset
    /// below MaxLogonAttempts or Unlimited, MaxLogonAttempts 1-999 or Unlimited, ResetPINText
    /// at most 512 characters. Applies from the next PIN reset or change.
    #[command(verbatim_doc_comment)]
    Set(PolicySetArgs),
    /// Show one policy, or all, as TOML (usable with `policy set --file`).
    Show {
        #[command(flatten)]
        store_args: StoreArgs,
        /// The policy name [default: all].
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct PolicySetArgs {
    #[command(flatten)]
    store_args: StoreArgs,
    /// The policy name ("Default" is every new mailbox's).
    #[arg(long)]
    name: String,
    /// A TOML file with the settings (keys as `policy show` prints them); flags win over it.
    #[arg(long)]
    file: Option<PathBuf>,
    /// MinPINLength: 4-24.
    #[arg(long)]
    min_pin_length: Option<u32>,
    /// PINLifetime in days: 1-999 or Unlimited.
    #[arg(long, value_parser = parse_limit)]
    pin_lifetime: Option<Limit>,
    /// PINHistoryCount: 1-20.
    #[arg(long)]
    pin_history_count: Option<u32>,
    /// AllowCommonPatterns: true or false.
    #[arg(long, action = clap::ArgAction::Set)]
    allow_common_patterns: Option<bool>,
    /// LogonFailuresBeforePINReset: below MaxLogonAttempts, or Unlimited.
    #[arg(long, value_parser = parse_limit)]
    logon_failures_before_pin_reset: Option<Limit>,
    /// MaxLogonAttempts: 1-999 or Unlimited.
    #[arg(long, value_parser = parse_limit)]
    max_logon_attempts: Option<Limit>,
    /// ResetPINText: extra text in the reset mail, at most 512 characters.
    #[arg(long)]
    reset_pin_text: Option<String>,
}

/// `--pin-lifetime` and the other limits: a number or `Unlimited`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit(Option<u32>);

pub(crate) fn parse_limit(s: &str) -> Result<Limit, String> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(Limit(None));
    }
    s.parse()
        .map(|n| Limit(Some(n)))
        .map_err(|_| format!("{s:?} is neither a number nor Unlimited"))
}

pub(crate) fn policy(cmd: PolicyCommand) -> Result<(), CliError> {
    match cmd {
        PolicyCommand::Set(args) => {
            let store = Store::open_with(
                args.store_args.database.as_deref(),
                &args.store_args.data,
                false,
            )?;
            let mut p = match &args.file {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(path).map_err(|source| CliError::PolicyFile {
                            path: path.clone(),
                            message: source.to_string(),
                        })?;
                    toml::from_str::<PinPolicy>(&text).map_err(|e| CliError::PolicyFile {
                        path: path.clone(),
                        message: e.message().to_owned(),
                    })?
                }
                None => store.policy(&args.name)?.unwrap_or_default(),
            };
            if let Some(n) = args.min_pin_length {
                p.min_pin_length = n;
            }
            if let Some(Limit(n)) = args.pin_lifetime {
                p.pin_lifetime_days = n;
            }
            if let Some(n) = args.pin_history_count {
                p.pin_history_count = n;
            }
            if let Some(b) = args.allow_common_patterns {
                p.allow_common_patterns = b;
            }
            if let Some(Limit(n)) = args.logon_failures_before_pin_reset {
                p.logon_failures_before_pin_reset = n;
            }
            if let Some(Limit(n)) = args.max_logon_attempts {
                p.max_logon_attempts = n;
            }
            if let Some(text) = args.reset_pin_text {
                p.reset_pin_text = text;
            }
            store.set_policy(&args.name, &p)?;
            println!(
                "policy {} saved; it applies from the next PIN reset or change",
                args.name
            );
            print_policy(&args.name, &p)
        }
        PolicyCommand::Show {
            store_args: StoreArgs { data, database },
            name,
        } => {
            let store = Store::open_with(database.as_deref(), &data, false)?;
            let policies = match name {
                Some(name) => {
                    let p = store
                        .policy(&name)?
                        .ok_or(StoreError::UnknownPolicy { name: name.clone() })?;
                    vec![(name, p)]
                }
                None => store.policies()?,
            };
            for (i, (name, p)) in policies.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print_policy(name, p)?;
            }
            Ok(())
        }
    }
}

/// Prints a policy as TOML (usable with `umws policy set --file`), its name in a comment.
pub(crate) fn print_policy(name: &str, p: &PinPolicy) -> Result<(), CliError> {
    let text = toml::to_string(p).map_err(|e| CliError::Usage(e.to_string()))?;
    println!("# UM mailbox policy {name:?}");
    print!("{text}");
    Ok(())
}
