//! `umws client`: one command per UM operation, through the generated typed client.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use umws::types;
use umws::um_service_soap::UmServiceSoapClient;
use umws_soap::client::Transport;

use crate::CliError;

#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
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
pub(crate) enum Greeting {
    NormalCustom,
    OofCustom,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Operation {
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

pub(crate) async fn client(args: ClientArgs) -> Result<ExitCode, CliError> {
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
