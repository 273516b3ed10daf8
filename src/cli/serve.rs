//! `umws serve`: settings from flags and the config file, the demo mailbox, the banner.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rand::Rng;

use umws::config::{FileConfig, ServeConfig, DEFAULT_SIP_LISTEN};
use umws::store::{NewMailbox, Store};
use umws::telephony::{Listening, Telephony};

use crate::CliError;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (mailbox store and Maildirs) [default: ./umws-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// The PostgreSQL database (postgres://...) instead of the SQLite store in --data, which
    /// then holds only the Maildirs, the outbox spool and the demo credentials.
    #[arg(
        long,
        env = "UMWS_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database: Option<String>,
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
    /// The SIP/UDP address calls are placed from [default: 127.0.0.1:5060, or another free
    /// port on 127.0.0.1 when that one is busy]; more settings in the config file's
    /// [telephony] table.
    #[arg(long, value_name = "ADDR:PORT")]
    sip_listen: Option<SocketAddr>,
    /// Place no calls: PlayOnPhone and the other call operations answer a TransportException.
    #[arg(long)]
    no_telephony: bool,
}

/// How long a graceful shutdown waits for the calls it hangs up to end.
const CALLS_SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The `--smtp-*` flags over the config file's `[smtp]` table.
pub(crate) fn apply_smtp_flags(
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

pub(crate) async fn serve(args: ServeArgs) -> Result<(), CliError> {
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
    if let Some(database) = args.database {
        config.database = Some(umws::store::DatabaseUrl(database));
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
    if let Some(listen) = args.sip_listen {
        config.telephony.sip_listen = Some(listen);
    }
    config.telephony.enabled &= !args.no_telephony;
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

    let database = config.database.as_ref().map(|d| d.0.as_str());
    let store = Store::open_with(database, &config.data, true)?
        .with_reset_limit(Some(config.reset_limit()));
    let demo = if config.demo_mailbox {
        ensure_demo_mailbox(&store, &config.data)?
    } else {
        Demo::Off
    };
    let telephony = if config.telephony.enabled {
        Some(start_telephony(&config).await?)
    } else {
        None
    };
    let server =
        umws::app::build_server_with_telephony(store, &config.data, &config, telephony.clone())?;
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
    print_banner(
        scheme,
        addr,
        &config.data,
        telephony.as_ref().map(|t| t.listening()),
        &demo,
    );
    let served = match tls {
        Some(tls) => server.serve_tls(listener, tls, shutdown).await,
        None => server.serve(listener, shutdown).await,
    };
    // Graceful shutdown hangs up every call (also when serving failed).
    if let Some(telephony) = &telephony {
        telephony.shut_down(CALLS_SHUTDOWN_WAIT).await;
    }
    served.map_err(|source| CliError::Listen {
        addr: config.listen,
        source,
    })?;
    eprintln!("umws: stopped");
    Ok(())
}

/// Starts the SIP agent; an address that cannot be bound stops `umws serve` with a message
/// that says what to do.
async fn start_telephony(config: &ServeConfig) -> Result<Arc<Telephony>, CliError> {
    Telephony::start(&config.telephony).await.map_err(|e| {
        let asked = config.telephony.sip_listen.unwrap_or(DEFAULT_SIP_LISTEN);
        CliError::Usage(format!(
            "cannot place calls from SIP address {asked}: {e}; choose another address with \
             --sip-listen or sip_listen in [telephony], or turn calls off with --no-telephony"
        ))
    })
}

/// The demo mailbox's name.
pub(crate) const DEMO_USER: &str = "demo";
/// The file in the data directory that keeps the demo password.
pub(crate) const DEMO_CREDENTIALS: &str = "demo-credentials.txt";

/// What the banner says about the demo mailbox.
pub(crate) enum Demo {
    /// Created by this start: its password is printed, this once.
    Created(String),
    /// Created by an earlier start: its password is in the credentials file only (a
    /// password printed on every start would land in the journal every time).
    Exists,
    /// No demo mailbox (off, or the store has other mailboxes).
    Off,
}

/// Creates the demo mailbox in an empty store.
pub(crate) fn ensure_demo_mailbox(store: &Store, data: &Path) -> Result<Demo, CliError> {
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
    let added = store.add_mailbox(NewMailbox {
        user: DEMO_USER.into(),
        password: password.clone(),
        um_enabled: true,
        extension: Some("12345".into()),
        email: Some("demo@localhost".into()),
    });
    match added {
        // Another instance on the same database made it just now.
        Err(umws::store::StoreError::DuplicateUser { .. }) => return Ok(Demo::Exists),
        other => other?,
    };
    write_private(&file, &format!("user={DEMO_USER}\npassword={password}\n"));
    Ok(Demo::Created(password))
}

/// Writes a file readable by its owner only, `0600` also when it existed with another mode
/// (best effort: the password is printed anyway).
pub(crate) fn write_private(path: &Path, text: &str) {
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

pub(crate) fn print_banner(
    scheme: &str,
    addr: SocketAddr,
    data: &Path,
    sip: Option<Listening>,
    demo: &Demo,
) {
    let base = format!("{scheme}://{addr}");
    let url = format!("{base}{}", umws::app::PATHS[0]);
    println!("umws: serving the UM web service on {url}");
    println!(
        "      (also {base}{}); WSDL at {url}?wsdl",
        umws::app::PATHS[1]
    );
    println!("      data directory {}", data.display());
    match sip {
        Some(Listening {
            addr,
            fell_back: false,
        }) => println!("      calls: SIP/UDP on {addr}"),
        Some(Listening {
            addr,
            fell_back: true,
        }) => {
            println!("      calls: SIP/UDP on {addr} (the default {DEFAULT_SIP_LISTEN} was busy)")
        }
        None => println!("      calls: off (PlayOnPhone answers TransportException)"),
    }
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
        if let Some(Listening { addr, .. }) = sip {
            println!(
                "  call sip:voicemail@{addr} from a softphone: extension 12345 #, \
                 then the PIN from the mail # and a new PIN"
            );
        }
        println!("(with cargo: replace `umws` by `cargo run --release --`)");
        println!(
            "(the password is printed this once; it stays in {}. \
             --no-demo or demo_mailbox = false: no demo mailbox)",
            data.join(DEMO_CREDENTIALS).display()
        );
    }
    println!("stop with Ctrl-C");
}
