//! A UM client program that depends on `umws-api` alone (feature `client`):
//! calls IsUMEnabled, GetUMProperties and ResetPIN and prints the answers.
//!
//! ```text
//! cargo run -p umws-api --no-default-features --features client --example client -- \
//!     http://127.0.0.1:8080/UnifiedMessaging/Service.asmx demo PASSWORD [--ca-cert ca.pem]
//! ```
//!
//! The password may also come from `UMWS_PASSWORD` (then give `-` in its place).

use std::process::ExitCode;
use std::time::Duration;

use umws_api::client::{client_config, ClientError, Transport, UmServiceSoapClient};
use umws_api::types::{GetUmProperties, IsUmEnabled, ResetPin};

const USAGE: &str = "usage: client URL USER PASSWORD|- [--ca-cert CA.pem]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, user, password, ca) = match args.as_slice() {
        [url, user, password] => (url, user, password, None),
        [url, user, password, flag, ca] if flag == "--ca-cert" => (url, user, password, Some(ca)),
        _ => return Err(USAGE.into()),
    };
    let password = if password == "-" {
        std::env::var("UMWS_PASSWORD").map_err(|_| "UMWS_PASSWORD is not set".to_string())?
    } else {
        password.clone()
    };
    let transport = match ca {
        Some(ca) => {
            let tls = client_config(ca.as_ref()).map_err(|e| format!("{ca}: {e}"))?;
            Transport::with_tls(url, tls)
        }
        None => Transport::new(url),
    }
    .map_err(|e| e.to_string())?
    .with_basic_auth(user, &password)
    .with_timeout(Duration::from_secs(30));
    let client = UmServiceSoapClient::new(transport);

    let enabled = client
        .is_um_enabled(&IsUmEnabled {})
        .await
        .map_err(describe)?;
    println!("IsUMEnabled: {}", enabled.is_um_enabled_response);

    let props = client
        .get_um_properties(&GetUmProperties {})
        .await
        .map_err(describe)?
        .get_um_properties_response;
    println!("GetUMProperties:");
    println!("  OofStatus: {}", props.oof_status);
    println!(
        "  MissedCallNotificationEnabled: {}",
        props.missed_call_notification_enabled
    );
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    println!(
        "  PlayOnPhoneDialString: {}",
        text(&props.play_on_phone_dial_string)
    );
    println!(
        "  TelephoneAccessNumbers: {}",
        text(&props.telephone_access_numbers)
    );
    println!(
        "  TelephoneAccessFolderEmail: {}",
        text(&props.telephone_access_folder_email)
    );

    client.reset_pin(&ResetPin {}).await.map_err(describe)?;
    println!("ResetPIN: done; the new PIN was mailed to {user}'s mailbox");
    Ok(())
}

/// A fault with its code and string, with the exception Exchange names; other
/// errors as they read.
fn describe(error: ClientError) -> String {
    match error.fault() {
        Some(fault) => match fault.detail_text("ExceptionType") {
            Some(name) => format!("{fault} ({name})"),
            None => fault.to_string(),
        },
        None => error.to_string(),
    }
}
