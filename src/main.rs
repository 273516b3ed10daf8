//! The `umws` command: serve the UM web service, manage mailboxes, check
//! PINs, and call a server through the generated typed client.
#![forbid(unsafe_code)]

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use umws::fault::ErrorChain;
use umws::phone::{self};
use umws::store::StoreError;
use umws_soap::client::ClientError;

mod cli;

use cli::client::{client, ClientArgs};
use cli::greeting::{greeting, GreetingCommand};
use cli::mailbox::{mailbox, MailboxCommand};
use cli::pin::{pin_check, pin_set, PinCommand};
use cli::policy::{policy, PolicyCommand};
use cli::serve::{serve, ServeArgs};
use cli::store::{store, StoreCommand};
use cli::voicemail::{voicemail, VoicemailCommand};
use cli::StoreArgs;

/// mimalloc instead of the system allocator: a request makes a few dozen small allocations,
/// and glibc's malloc spends measurably more per allocation under load (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "umws",
    version,
    about = "The Exchange Unified Messaging (UM) web service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the UM web service.
    Serve(ServeArgs),
    /// Manage mailboxes in a data directory.
    #[command(subcommand)]
    Mailbox(MailboxCommand),
    /// Check PINs, as a telephone logon does.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Manage UM mailbox policies (the PIN rules).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Call a UM web service through the typed client.
    Client(ClientArgs),
    /// Deposit and list voice messages.
    #[command(subcommand)]
    Voicemail(VoicemailCommand),
    /// Set and get greetings.
    #[command(subcommand)]
    Greeting(GreetingCommand),
    /// Move a store between backends (SQLite to PostgreSQL).
    #[command(subcommand)]
    Store(StoreCommand),
}

/// Why a command failed; printed as one line on stderr.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Config(#[from] umws::config::ConfigError),
    #[error(transparent)]
    Store(#[from] umws::store::StoreError),
    #[error(transparent)]
    Copy(#[from] umws::store::postgres::copy::CopyError),
    #[error(transparent)]
    App(#[from] umws::app::AppError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Phone(#[from] phone::PhoneError),
    #[error("no mailbox named {0:?}")]
    UnknownUser(String),
    #[error("the policy file {} is invalid: {message}", path.display())]
    PolicyFile { path: PathBuf, message: String },
    #[error(transparent)]
    Tls(#[from] umws_soap::tls::TlsError),
    #[error(transparent)]
    Audio(#[from] umws::audio::AudioError),
    #[error(transparent)]
    Mail(#[from] umws::mail::MailError),
    #[error("invalid entry id: {0}")]
    EntryId(umws::store::voicemail::EntryIdError),
    #[error("mailbox {user} has no {kind} greeting")]
    NoGreeting { user: String, kind: &'static str },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&CliError::Runtime(e)),
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)).map(|()| ExitCode::SUCCESS),
        Command::Mailbox(cmd) => mailbox(cmd).map(|()| ExitCode::SUCCESS),
        Command::Pin(PinCommand::Check {
            store_args: StoreArgs { data, database },
            user,
            pin,
        }) => pin_check(&data, database.as_deref(), &user, &pin),
        Command::Pin(PinCommand::Set {
            store_args: StoreArgs { data, database },
            user,
            old,
            new,
        }) => pin_set(&data, database.as_deref(), &user, &old, &new),
        Command::Policy(cmd) => policy(cmd).map(|()| ExitCode::SUCCESS),
        Command::Client(args) => runtime.block_on(client(args)),
        Command::Voicemail(cmd) => voicemail(cmd).map(|()| ExitCode::SUCCESS),
        Command::Greeting(cmd) => greeting(cmd).map(|()| ExitCode::SUCCESS),
        Command::Store(cmd) => store(cmd).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| fail(&e))
}

fn fail(error: &CliError) -> ExitCode {
    match error {
        CliError::Client(ClientError::Fault(fault)) => {
            eprintln!("umws: SOAP fault {}: {}", fault.code, fault.string);
            if let Some(exception) = fault.detail_text("ExceptionType") {
                eprintln!("umws: exception: {exception}");
            }
            ExitCode::from(1)
        }
        CliError::Client(ClientError::Http { status, .. })
            if *status == hyper::StatusCode::UNAUTHORIZED =>
        {
            eprintln!(
                "umws: the server did not accept the user name and password \
                 (HTTP 401 Unauthorized; see --user and --password)"
            );
            ExitCode::from(2)
        }
        CliError::Store(StoreError::DataDirMissing { path }) => {
            // The store's message names its Rust API; a command line user wants the command.
            eprintln!(
                "umws: data directory {} does not exist; `umws serve --data DIR` and \
                 `umws mailbox add --data DIR ...` create one",
                path.display()
            );
            ExitCode::from(2)
        }
        other => {
            eprintln!("umws: {}", ErrorChain(other));
            ExitCode::from(2)
        }
    }
}

fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("UMWS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The SIP stack logs every message whole at INFO, and a key pressed by SIP INFO (a digit of
    // a PIN) is in a message's body: its transport never logs below WARN, whatever UMWS_LOG
    // asks for.
    if let Ok(quiet) = "rsipstack::transport=warn".parse() {
        filter = filter.add_directive(quiet);
    }
    // Colours only for a terminal, and not when NO_COLOR (no-color.org) is set and not empty:
    // a log piped into a file or a journal stays plain text.
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
