//! The `umws` command: serve the UM web service, manage mailboxes, check
//! PINs, and call a server through the generated typed client.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rand::Rng;

use umws::config::{FileConfig, ServeConfig};
use umws::fault::ErrorChain;
use umws::store::{HashCost, NewMailbox, PinCheck, Store};
use umws::types;
use umws::um_service_soap::UmServiceSoapClient;
use umws_soap::client::{ClientError, Transport};

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
    /// Allow Basic authentication over plain HTTP on a non-loopback
    /// address (passwords then cross the network in clear).
    #[arg(long)]
    allow_plain_http: bool,
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
}

#[derive(Debug, Subcommand)]
enum PinCommand {
    /// Check a PIN: exit 0 when it is right, 1 when not, 3 when it expired.
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
    /// SetOofStatus.
    SetOofStatus {
        /// true or false.
        #[arg(long, action = clap::ArgAction::Set)]
        status: bool,
    },
    /// SetPlayOnPhoneDialString.
    SetPlayOnPhoneDialString {
        /// The number to dial.
        #[arg(long)]
        dial_string: Option<String>,
    },
    /// SetTelephoneAccessFolderEmail.
    SetTelephoneAccessFolderEmail {
        /// The base64 folder id.
        #[arg(long)]
        folder_id: Option<String>,
    },
    /// SetMissedCallNotificationEnabled.
    SetMissedCallNotificationEnabled {
        /// true or false.
        #[arg(long, action = clap::ArgAction::Set)]
        status: bool,
    },
    /// ResetPIN: a new random PIN, mailed to the caller.
    ResetPin,
    /// PlayOnPhone.
    PlayOnPhone {
        /// The base64 entry id of the voice message.
        #[arg(long)]
        entry_id: String,
        /// The number to dial.
        #[arg(long)]
        dial_string: String,
    },
    /// GetCallInfo.
    GetCallInfo {
        /// The call id.
        #[arg(long)]
        call_id: String,
    },
    /// Disconnect.
    Disconnect {
        /// The call id.
        #[arg(long)]
        call_id: String,
    },
    /// PlayOnPhoneGreeting.
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
        other => {
            eprintln!("umws: {}", ErrorChain(other));
            ExitCode::from(2)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UMWS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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
    config.allow_plain_http |= args.allow_plain_http;
    config.validate()?;
    if !config.listen.ip().is_loopback() && !config.allow_plain_http {
        return Err(CliError::Usage(format!(
            "refusing to serve Basic authentication over plain HTTP on {} (not a loopback address): \
             passwords would cross the network in clear; pass --allow-plain-http to do it anyway",
            config.listen
        )));
    }

    let store = Store::create(&config.data)?;
    let demo = if config.demo_mailbox {
        ensure_demo_mailbox(&store, &config.data)?
    } else {
        None
    };
    let server = umws::app::build_server(store, &config.data, &config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| CliError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    print_banner(addr, &config.data, demo.as_ref());
    server
        .serve(listener, umws::app::shutdown_signal())
        .await
        .map_err(|source| CliError::Listen {
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

/// Creates the demo mailbox in an empty store; returns its password when it
/// exists (read back from the data directory on later starts).
fn ensure_demo_mailbox(store: &Store, data: &Path) -> Result<Option<String>, CliError> {
    let file = data.join(DEMO_CREDENTIALS);
    if store.mailbox(DEMO_USER)?.is_some() {
        return Ok(std::fs::read_to_string(&file).ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("password=").map(str::to_owned))
        }));
    }
    if !store.mailboxes()?.is_empty() {
        return Ok(None);
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
    Ok(Some(password))
}

/// Writes a file readable by its owner only (best effort: the password is
/// printed anyway).
fn write_private(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    if let Ok(mut f) = options.open(path) {
        let _ = f.write_all(text.as_bytes());
    }
}

fn print_banner(addr: SocketAddr, data: &Path, demo: Option<&String>) {
    let base = format!("http://{addr}");
    let url = format!("{base}{}", umws::app::PATHS[0]);
    println!("umws: serving the UM web service on {url}");
    println!(
        "      (also {base}{}); WSDL at {url}?wsdl",
        umws::app::PATHS[1]
    );
    println!("      data directory {}", data.display());
    if let Some(password) = demo {
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
                    "{}\tum={}\textension={}\temail={}\tpin={}",
                    m.user,
                    m.um_enabled,
                    m.extension.as_deref().unwrap_or("-"),
                    m.email.as_deref().unwrap_or("-"),
                    if m.pin_set { "set" } else { "unset" },
                );
            }
            Ok(())
        }
    }
}

fn pin_check(data: &Path, user: &str, pin: &str) -> Result<ExitCode, CliError> {
    let store = Store::open(data)?.with_hash_cost(HashCost::Production);
    let (code, message) = match store.check_pin(user, pin)? {
        PinCheck::Ok => (0, "PIN accepted"),
        PinCheck::OkMustChange => (0, "PIN accepted; it was reset and must be changed now"),
        PinCheck::Expired => (3, "PIN expired; it must be changed"),
        PinCheck::Wrong { .. } => (1, "PIN refused"),
        PinCheck::LockedOut => (1, "PIN refused: the mailbox is locked out"),
        PinCheck::NoPin => (1, "PIN refused: no PIN is set"),
        PinCheck::NotUmEnabled => (
            1,
            "PIN refused: the mailbox is not enabled for Unified Messaging",
        ),
        PinCheck::UnknownUser => (1, "PIN refused"),
    };
    println!("{message}");
    Ok(ExitCode::from(code))
}

async fn client(args: ClientArgs) -> Result<ExitCode, CliError> {
    let mut transport = Transport::new(&args.url)?.with_timeout(Duration::from_secs(args.timeout));
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
