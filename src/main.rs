//! The `umws` command: serve the UM web service, manage mailboxes, check
//! PINs, and call a server through the generated typed client.
#![forbid(unsafe_code)]

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rand::Rng;

use umws::config::{FileConfig, ServeConfig};
use umws::fault::ErrorChain;
use umws::mail::{Delivery, Maildir, Outbox, ResetPinMailer};
use umws::phone::{self, PinChange};
use umws::pin_policy::PinPolicy;
use umws::store::{HashCost, NewMailbox, PinCheck, Store, StoreError};
use umws::types;
use umws::um_service_soap::UmServiceSoapClient;
use umws_soap::client::{ClientError, Transport};

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
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (mailbox store and Maildirs) [default: ./umws-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// A TOML config file; flags win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Refuse the https:// spelling of the Exchange namespaces.
    #[arg(long)]
    strict_namespaces: bool,
    /// Do not create a demo mailbox in an empty store.
    #[arg(long)]
    no_demo: bool,
    /// The most ResetPINs per mailbox within an hour [default: 5]; more are refused with a
    /// ResetPINException.
    #[arg(long, value_name = "N")]
    max_pin_resets_per_hour: Option<u32>,
    /// Allow Basic authentication over plain HTTP on a non-loopback
    /// address (passwords then cross the network in clear).
    #[arg(long)]
    allow_plain_http: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Deliver PIN mails to this SMTP relay (HOST:PORT) instead of the Maildirs; more settings
    /// in the config file's [smtp] table.
    #[arg(long, value_name = "HOST:PORT")]
    smtp_relay: Option<String>,
    /// STARTTLS to the relay: required (default), opportunistic or off.
    #[arg(long, value_name = "MODE")]
    smtp_starttls: Option<umws::mail::StartTls>,
    /// The relay's AUTH user name; needs --smtp-password-env.
    #[arg(long, requires = "smtp_password_env")]
    smtp_user: Option<String>,
    /// The environment variable holding the relay's AUTH password.
    #[arg(long, value_name = "VAR", requires = "smtp_user")]
    smtp_password_env: Option<String>,
}

#[derive(Debug, Subcommand)]
enum MailboxCommand {
    /// Add a mailbox.
    Add {
        /// Data directory (created if missing).
        #[arg(long)]
        data: PathBuf,
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
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Lift a phone lockout (after MaxLogonAttempts failed PIN logons) and clear the failed
    /// logon count; the PIN stays as it is.
    Unlock {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// User name.
        #[arg(long)]
        user: String,
    },
    /// Assign a UM mailbox policy; it applies from the next PIN reset, change or logon.
    SetPolicy {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// User name.
        #[arg(long)]
        user: String,
        /// The policy name (see `umws policy show`).
        #[arg(long)]
        policy: String,
    },
}

#[derive(Debug, Subcommand)]
enum PinCommand {
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
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
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
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
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

#[derive(Debug, Subcommand)]
enum PolicyCommand {
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
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// The policy name [default: all].
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Args)]
struct PolicySetArgs {
    /// Data directory.
    #[arg(long)]
    data: PathBuf,
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

#[derive(Debug, Args)]
struct ClientArgs {
    #[command(subcommand)]
    operation: Operation,
    /// The service URL, e.g. http://127.0.0.1:8080/UnifiedMessaging/Service.asmx
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8080/UnifiedMessaging/Service.asmx"
    )]
    url: String,
    /// User name for HTTP Basic authentication.
    #[arg(long, global = true)]
    user: Option<String>,
    /// Password for HTTP Basic authentication.
    #[arg(long, global = true, env = "UMWS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, global = true, default_value_t = 30)]
    timeout: u64,
    /// Trust this CA certificate (PEM) for an https:// URL.
    #[arg(long, global = true)]
    ca_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Greeting {
    NormalCustom,
    OofCustom,
}

#[derive(Debug, Subcommand)]
enum Operation {
    /// IsUMEnabled: is the caller enabled for Unified Messaging?
    IsUmEnabled,
    /// GetUMProperties: the caller's UM settings.
    GetUmProperties,
    /// SetOofStatus: turn the caller's out-of-office status on or off.
    SetOofStatus {
        /// true or false.
        #[arg(long, action = clap::ArgAction::Set)]
        status: bool,
    },
    /// SetPlayOnPhoneDialString: the number PlayOnPhone calls (omit --dial-string to clear it).
    SetPlayOnPhoneDialString {
        /// The number to dial.
        #[arg(long)]
        dial_string: Option<String>,
    },
    /// SetTelephoneAccessFolderEmail: the folder the phone reads email from (base64 folder id;
    /// omit --folder-id to clear it).
    SetTelephoneAccessFolderEmail {
        /// The base64 folder id.
        #[arg(long)]
        folder_id: Option<String>,
    },
    /// SetMissedCallNotificationEnabled: turn missed-call notifications on or off.
    SetMissedCallNotificationEnabled {
        /// true or false.
        #[arg(long, action = clap::ArgAction::Set)]
        status: bool,
    },
    /// ResetPIN: a new random PIN, mailed to the caller.
    ResetPin,
    /// PlayOnPhone: play a voice message on a phone; answers a call id.
    PlayOnPhone {
        /// The base64 entry id of the voice message.
        #[arg(long)]
        entry_id: String,
        /// The number to dial.
        #[arg(long)]
        dial_string: String,
    },
    /// GetCallInfo: the state of a call started by PlayOnPhone or PlayOnPhoneGreeting.
    GetCallInfo {
        /// The call id.
        #[arg(long)]
        call_id: String,
    },
    /// Disconnect: end a call started by PlayOnPhone or PlayOnPhoneGreeting.
    Disconnect {
        /// The call id.
        #[arg(long)]
        call_id: String,
    },
    /// PlayOnPhoneGreeting: play the caller's greeting on a phone; answers a call id.
    PlayOnPhoneGreeting {
        /// Which greeting.
        #[arg(long, value_enum)]
        greeting_type: Greeting,
        /// The number to dial.
        #[arg(long)]
        dial_string: String,
    },
}

/// Why a command failed; printed as one line on stderr.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] umws::config::ConfigError),
    #[error(transparent)]
    Store(#[from] umws::store::StoreError),
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
        Command::Pin(PinCommand::Check { data, user, pin }) => pin_check(&data, &user, &pin),
        Command::Pin(PinCommand::Set {
            data,
            user,
            old,
            new,
        }) => pin_set(&data, &user, &old, &new),
        Command::Policy(cmd) => policy(cmd).map(|()| ExitCode::SUCCESS),
        Command::Client(args) => runtime.block_on(client(args)),
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("UMWS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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

/// The `--smtp-*` flags over the config file's `[smtp]` table.
fn apply_smtp_flags(
    config: &mut ServeConfig,
    relay: Option<String>,
    starttls: Option<umws::mail::StartTls>,
    auth: Option<(String, String)>,
) -> Result<(), CliError> {
    if let Some(relay) = relay {
        let (host, port) = relay
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| CliError::Usage(format!("--smtp-relay {relay:?} is not HOST:PORT")))?;
        let mut settings = config
            .smtp
            .take()
            .unwrap_or_else(|| umws::mail::SmtpSettings::new(host, port));
        settings.host = host.to_owned();
        settings.port = port;
        config.smtp = Some(settings);
    }
    let flags_without_relay = starttls.is_some() || auth.is_some();
    let Some(settings) = config.smtp.as_mut() else {
        if flags_without_relay {
            return Err(CliError::Usage(
                "--smtp-starttls and --smtp-user need --smtp-relay (or an [smtp] table)".into(),
            ));
        }
        return Ok(());
    };
    if let Some(mode) = starttls {
        settings.starttls = mode;
    }
    if let Some((user, var)) = auth {
        settings.credentials = Some((user, umws::config::smtp_password_from_env(&var)?));
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let mut config = ServeConfig::from_file(file)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = args.data {
        config.data = data;
    }
    config.strict_namespaces |= args.strict_namespaces;
    config.demo_mailbox &= !args.no_demo;
    if let Some(n) = args.max_pin_resets_per_hour {
        config.max_pin_resets_per_hour = n;
    }
    config.allow_plain_http |= args.allow_plain_http;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some((cert, key));
    }
    apply_smtp_flags(
        &mut config,
        args.smtp_relay,
        args.smtp_starttls,
        args.smtp_user.zip(args.smtp_password_env),
    )?;
    config.validate()?;
    let tls = match &config.tls {
        Some((cert, key)) => Some(umws_soap::tls::server_config(cert, key)?),
        None => None,
    };
    if tls.is_none() && !config.listen.ip().is_loopback() && !config.allow_plain_http {
        return Err(CliError::Usage(format!(
            "refusing to serve Basic authentication over plain HTTP on {} (not a loopback address): \
             passwords would cross the network in clear; pass --allow-plain-http to do it anyway",
            config.listen
        )));
    }

    let store = Store::create(&config.data)?.with_reset_limit(Some(config.reset_limit()));
    let demo = if config.demo_mailbox {
        ensure_demo_mailbox(&store, &config.data)?
    } else {
        Demo::Off
    };
    let server = umws::app::build_server(store, &config.data, &config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| CliError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Signal handlers first: a SIGTERM right after the banner must stop
    // the server gracefully, not kill it.
    let shutdown = umws::app::shutdown_signal();
    print_banner(scheme, addr, &config.data, &demo);
    let served = match tls {
        Some(tls) => server.serve_tls(listener, tls, shutdown).await,
        None => server.serve(listener, shutdown).await,
    };
    served.map_err(|source| CliError::Listen {
        addr: config.listen,
        source,
    })?;
    eprintln!("umws: stopped");
    Ok(())
}

/// The demo mailbox's name.
const DEMO_USER: &str = "demo";
/// The file in the data directory that keeps the demo password.
const DEMO_CREDENTIALS: &str = "demo-credentials.txt";

/// What the banner says about the demo mailbox.
enum Demo {
    /// Created by this start: its password is printed, this once.
    Created(String),
    /// Created by an earlier start: its password is in the credentials file only (a
    /// password printed on every start would land in the journal every time).
    Exists,
    /// No demo mailbox (off, or the store has other mailboxes).
    Off,
}

/// Creates the demo mailbox in an empty store.
fn ensure_demo_mailbox(store: &Store, data: &Path) -> Result<Demo, CliError> {
    let file = data.join(DEMO_CREDENTIALS);
    if store.mailbox(DEMO_USER)?.is_some() {
        return Ok(Demo::Exists);
    }
    if !store.mailboxes()?.is_empty() {
        return Ok(Demo::Off);
    }
    let password: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(16)
        .map(char::from)
        .collect();
    store.add_mailbox(NewMailbox {
        user: DEMO_USER.into(),
        password: password.clone(),
        um_enabled: true,
        extension: Some("12345".into()),
        email: Some("demo@localhost".into()),
    })?;
    write_private(&file, &format!("user={DEMO_USER}\npassword={password}\n"));
    Ok(Demo::Created(password))
}

/// Writes a file readable by its owner only, `0600` also when it existed with another mode
/// (best effort: the password is printed anyway).
fn write_private(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut options = umws::store::private::private_open_options();
    options.write(true).create(true).truncate(true);
    if let Ok(mut f) = options.open(path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
        }
        let _ = f.write_all(text.as_bytes());
    }
}

fn print_banner(scheme: &str, addr: SocketAddr, data: &Path, demo: &Demo) {
    let base = format!("{scheme}://{addr}");
    let url = format!("{base}{}", umws::app::PATHS[0]);
    println!("umws: serving the UM web service on {url}");
    println!(
        "      (also {base}{}); WSDL at {url}?wsdl",
        umws::app::PATHS[1]
    );
    println!("      data directory {}", data.display());
    if let Demo::Exists = demo {
        println!(
            "demo mailbox: user {DEMO_USER}; its password is in {} \
             (--no-demo or demo_mailbox = false: no demo mailbox)",
            data.join(DEMO_CREDENTIALS).display()
        );
    }
    if let Demo::Created(password) = demo {
        println!();
        println!("demo mailbox: user {DEMO_USER}, password {password}, extension 12345");
        println!("try it:");
        println!("  umws client reset-pin --url {url} --user {DEMO_USER} --password {password}");
        println!(
            "  ls {}/mail/{DEMO_USER}/new/          # the mail with the new PIN",
            data.display()
        );
        println!(
            "  umws client get-um-properties --url {url} --user {DEMO_USER} --password {password}"
        );
        println!(
            "  umws pin check --data {} --user {DEMO_USER} --pin <PIN from the mail>",
            data.display()
        );
        println!("(with cargo: replace `umws` by `cargo run --release --`)");
        println!(
            "(the password is printed this once; it stays in {}. \
             --no-demo or demo_mailbox = false: no demo mailbox)",
            data.join(DEMO_CREDENTIALS).display()
        );
    }
    println!("stop with Ctrl-C");
}

fn mailbox(cmd: MailboxCommand) -> Result<(), CliError> {
    match cmd {
        MailboxCommand::Add {
            data,
            user,
            password,
            extension,
            email,
            no_um,
        } => {
            let store = Store::create(&data)?;
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
        MailboxCommand::List { data } => {
            let store = Store::open(&data)?;
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
        MailboxCommand::Unlock { data, user } => {
            let store = Store::open(&data)?;
            if !phone::unlock(&store, &user)? {
                return Err(CliError::UnknownUser(user));
            }
            println!("mailbox {user} unlocked");
            Ok(())
        }
        MailboxCommand::SetPolicy { data, user, policy } => {
            let store = Store::open(&data)?;
            let m = store
                .mailbox(&user)?
                .ok_or_else(|| CliError::UnknownUser(user.clone()))?;
            store.set_mailbox_policy(m.id, &policy)?;
            println!("mailbox {user} now has policy {policy}");
            Ok(())
        }
    }
}

/// The exit status of `umws pin check` / `pin set` for a refused (old) PIN.
fn refusal(check: PinCheck) -> (u8, &'static str) {
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
fn phone_outbox(data: &Path) -> Result<Outbox<Maildir>, CliError> {
    let store = Store::open(data)?.with_hash_cost(HashCost::Production);
    let mailer = ResetPinMailer::new(Maildir::in_data_dir(data));
    Ok(Outbox::new(store, Arc::new(mailer)))
}

/// Prints what became of an automatic reset.
fn print_auto_reset(logon: &phone::Logon) {
    if let (PinCheck::Wrong { failures, .. }, Some(delivery)) = (logon.check, &logon.auto_reset) {
        let mail = match delivery {
            Delivery::Delivered(_) => "mailed",
            Delivery::Queued => "queued for mailing",
        };
        println!("after {failures} failed logons the PIN was reset; the new PIN was {mail}");
    }
}

fn pin_check(data: &Path, user: &str, pin: &str) -> Result<ExitCode, CliError> {
    let outbox = phone_outbox(data)?;
    let logon = phone::logon(&outbox, user, pin)?;
    let (code, message) = match logon.check {
        PinCheck::OkMustChange => (0, "PIN accepted; it was reset and must be changed now"),
        check => refusal(check),
    };
    println!("{message}");
    print_auto_reset(&logon);
    Ok(ExitCode::from(code))
}

fn pin_set(data: &Path, user: &str, old: &str, new: &str) -> Result<ExitCode, CliError> {
    let outbox = phone_outbox(data)?;
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

/// `--pin-lifetime` and the other limits: a number or `Unlimited`.
#[derive(Debug, Clone, Copy)]
struct Limit(Option<u32>);

fn parse_limit(s: &str) -> Result<Limit, String> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(Limit(None));
    }
    s.parse()
        .map(|n| Limit(Some(n)))
        .map_err(|_| format!("{s:?} is neither a number nor Unlimited"))
}

fn policy(cmd: PolicyCommand) -> Result<(), CliError> {
    match cmd {
        PolicyCommand::Set(args) => {
            let store = Store::open(&args.data)?;
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
        PolicyCommand::Show { data, name } => {
            let store = Store::open(&data)?;
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
fn print_policy(name: &str, p: &PinPolicy) -> Result<(), CliError> {
    let text = toml::to_string(p).map_err(|e| CliError::Usage(e.to_string()))?;
    println!("# UM mailbox policy {name:?}");
    print!("{text}");
    Ok(())
}

async fn client(args: ClientArgs) -> Result<ExitCode, CliError> {
    let transport = match &args.ca_cert {
        Some(ca) => Transport::with_tls(&args.url, umws_soap::tls::client_config(ca)?)?,
        None => Transport::new(&args.url)?,
    };
    let mut transport = transport.with_timeout(Duration::from_secs(args.timeout));
    match (&args.user, &args.password) {
        (Some(user), Some(password)) => transport = transport.with_basic_auth(user, password),
        (None, None) => {}
        _ => return Err(CliError::Usage("--user and --password go together".into())),
    }
    let c = UmServiceSoapClient::new(transport);
    match args.operation {
        Operation::IsUmEnabled => {
            let r = c.is_um_enabled(&types::IsUmEnabled {}).await?;
            println!("{}", r.is_um_enabled_response);
        }
        Operation::GetUmProperties => {
            let p = c
                .get_um_properties(&types::GetUmProperties {})
                .await?
                .get_um_properties_response;
            println!("OofStatus: {}", p.oof_status);
            println!(
                "MissedCallNotificationEnabled: {}",
                p.missed_call_notification_enabled
            );
            println!(
                "PlayOnPhoneDialString: {}",
                p.play_on_phone_dial_string.unwrap_or_default()
            );
            println!(
                "TelephoneAccessNumbers: {}",
                p.telephone_access_numbers.unwrap_or_default()
            );
            println!(
                "TelephoneAccessFolderEmail: {}",
                p.telephone_access_folder_email.unwrap_or_default()
            );
        }
        Operation::SetOofStatus { status } => {
            c.set_oof_status(&types::SetOofStatus { status }).await?;
            println!("ok");
        }
        Operation::SetPlayOnPhoneDialString { dial_string } => {
            c.set_play_on_phone_dial_string(&types::SetPlayOnPhoneDialString { dial_string })
                .await?;
            println!("ok");
        }
        Operation::SetTelephoneAccessFolderEmail { folder_id } => {
            c.set_telephone_access_folder_email(&types::SetTelephoneAccessFolderEmail {
                base_64_folder_id: folder_id,
            })
            .await?;
            println!("ok");
        }
        Operation::SetMissedCallNotificationEnabled { status } => {
            c.set_missed_call_notification_enabled(&types::SetMissedCallNotificationEnabled {
                status,
            })
            .await?;
            println!("ok");
        }
        Operation::ResetPin => {
            c.reset_pin(&types::ResetPin {}).await?;
            println!("ok: a new PIN was mailed to the caller's mailbox");
        }
        Operation::PlayOnPhone {
            entry_id,
            dial_string,
        } => {
            let r = c
                .play_on_phone(&types::PlayOnPhone {
                    entry_id: Some(entry_id),
                    dial_string: Some(dial_string),
                })
                .await?;
            println!("{}", r.play_on_phone_response.unwrap_or_default());
        }
        Operation::GetCallInfo { call_id } => {
            let r = c
                .get_call_info(&types::GetCallInfo {
                    call_id: Some(call_id),
                })
                .await?
                .get_call_info_response;
            println!("CallState: {:?}", r.call_state);
            println!("EventCause: {:?}", r.event_cause);
        }
        Operation::Disconnect { call_id } => {
            c.disconnect(&types::Disconnect {
                call_id: Some(call_id),
            })
            .await?;
            println!("ok");
        }
        Operation::PlayOnPhoneGreeting {
            greeting_type,
            dial_string,
        } => {
            let r = c
                .play_on_phone_greeting(&types::PlayOnPhoneGreeting {
                    greeting_type: match greeting_type {
                        Greeting::NormalCustom => types::UmGreetingType::NormalCustom,
                        Greeting::OofCustom => types::UmGreetingType::OofCustom,
                    },
                    dial_string: Some(dial_string),
                })
                .await?;
            println!("{}", r.play_on_phone_greeting_response.unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}
