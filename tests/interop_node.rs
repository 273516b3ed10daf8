//! The generated typed client against a SOAP server that is not umws: node-soap (npm `soap`)
//! serving `schemas/um.wsdl` from `tests/interop/node_soap_server.js`.
//!
//! node-soap writes its answers its own way (the envelope declares `tns`, the response element
//! declares the messages namespace as its default, faults declare their code's prefix on
//! `faultcode`, a void answer is an empty element), so these tests show that the client reads
//! what the schema allows rather than what umws happens to write. The server answers fixed,
//! known values (see the script); the tests check every decoded value, call every operation,
//! and read node-soap's faults.
//!
//! Node.js and `soap` (pinned in `tests/interop/node/package-lock.json`) are installed on first
//! use by `tests/common/env.rs`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use umws::types;
use umws::um_service_soap::UmServiceSoapClient;
use umws_soap::client::{ClientError, Transport};
use umws_soap::fault::StandardCode;
use umws_soap::FaultCode;

const USER: &str = "node-user";
const PASSWORD: &str = "node-password-1";
const ERRORS_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

/// The call ids the script answers (PlayOnPhone, PlayOnPhoneGreeting).
const PLAY_ON_PHONE_CALL: &str = "Y2FsbC0xQG5vZGUtc29hcC5leGFtcGxlLm9yZw==";
const GREETING_CALL: &str = "Y2FsbC0yQG5vZGUtc29hcC5leGFtcGxlLm9yZw==";

/// A running node-soap server; killed on drop.
struct NodeSoapServer {
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl NodeSoapServer {
    fn start() -> NodeSoapServer {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = common::node_soap()
            .command(&root.join("tests/interop/node_soap_server.js"))
            .arg(root.join("schemas/um.wsdl"))
            .args([USER, PASSWORD])
            // The script exits when its standard input closes, so it never outlives the test.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the server's first line");
        let Some(url) = line.trim().strip_prefix("listening ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "node_soap_server.js did not start ({line:?}):\n{}",
                log.lock().unwrap().join("\n")
            );
        };
        NodeSoapServer {
            url: url.to_owned(),
            child,
            log,
        }
    }

    fn client(&self, password: &str) -> UmServiceSoapClient {
        let transport = Transport::new(&self.url)
            .expect("an http URL")
            .with_basic_auth(USER, password)
            .with_timeout(Duration::from_secs(30));
        UmServiceSoapClient::new(transport)
    }

    /// What node-soap wrote to stderr.
    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for NodeSoapServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Unwraps a call's result, showing the client error and node-soap's log on failure.
#[track_caller]
fn ok<T>(server: &NodeSoapServer, op: &str, result: Result<T, ClientError>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!(
            "{op} against node-soap: {e}\n({e:?})\nnode-soap's log:\n{}",
            server.log()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_client_reads_every_answer_of_node_soap() {
    let server = NodeSoapServer::start();
    let client = server.client(PASSWORD);

    // IsUMEnabled: a boolean.
    let enabled = ok(
        &server,
        "IsUMEnabled",
        client.is_um_enabled(&types::IsUmEnabled {}).await,
    );
    assert!(enabled.is_um_enabled_response);

    // GetUMProperties: the mailbox's starting settings, markup characters included.
    let properties = ok(
        &server,
        "GetUMProperties",
        client.get_um_properties(&types::GetUmProperties {}).await,
    )
    .get_um_properties_response;
    assert_eq!(
        properties,
        types::UmPropertiesType {
            oof_status: false,
            missed_call_notification_enabled: true,
            play_on_phone_dial_string: Some("+1 (425) 555-0100 <ext. 7> & \"main\"".into()),
            telephone_access_numbers: Some("+1 425 555 0199, +49 30 1234 5678".into()),
            telephone_access_folder_email: Some("AAECAwQFBgc=".into()),
        }
    );

    // The Set operations: empty answers; node-soap read the values (GetUMProperties shows them).
    ok(
        &server,
        "SetOofStatus",
        client
            .set_oof_status(&types::SetOofStatus { status: true })
            .await,
    );
    ok(
        &server,
        "SetPlayOnPhoneDialString",
        client
            .set_play_on_phone_dial_string(&types::SetPlayOnPhoneDialString {
                dial_string: Some("4100 & <ext> ü".into()),
            })
            .await,
    );
    ok(
        &server,
        "SetTelephoneAccessFolderEmail",
        client
            .set_telephone_access_folder_email(&types::SetTelephoneAccessFolderEmail {
                base_64_folder_id: Some("CAkKCwwNDg8=".into()),
            })
            .await,
    );
    ok(
        &server,
        "SetMissedCallNotificationEnabled",
        client
            .set_missed_call_notification_enabled(&types::SetMissedCallNotificationEnabled {
                status: false,
            })
            .await,
    );
    let properties = ok(
        &server,
        "GetUMProperties",
        client.get_um_properties(&types::GetUmProperties {}).await,
    )
    .get_um_properties_response;
    assert_eq!(
        properties,
        types::UmPropertiesType {
            oof_status: true,
            missed_call_notification_enabled: false,
            play_on_phone_dial_string: Some("4100 & <ext> ü".into()),
            telephone_access_numbers: Some("+1 425 555 0199, +49 30 1234 5678".into()),
            telephone_access_folder_email: Some("CAkKCwwNDg8=".into()),
        }
    );

    ok(
        &server,
        "ResetPIN",
        client.reset_pin(&types::ResetPin {}).await,
    );

    // PlayOnPhone and PlayOnPhoneGreeting: call ids; GetCallInfo: each call's state.
    let call = ok(
        &server,
        "PlayOnPhone",
        client
            .play_on_phone(&types::PlayOnPhone {
                entry_id: Some("AAECAw==".into()),
                dial_string: Some("4100".into()),
            })
            .await,
    )
    .play_on_phone_response;
    assert_eq!(call.as_deref(), Some(PLAY_ON_PHONE_CALL));
    let greeting = ok(
        &server,
        "PlayOnPhoneGreeting",
        client
            .play_on_phone_greeting(&types::PlayOnPhoneGreeting {
                greeting_type: types::UmGreetingType::OofCustom,
                dial_string: Some("4100".into()),
            })
            .await,
    )
    .play_on_phone_greeting_response;
    assert_eq!(greeting.as_deref(), Some(GREETING_CALL));

    let info = |call_id: &str| types::GetCallInfo {
        call_id: Some(call_id.into()),
    };
    let state = ok(
        &server,
        "GetCallInfo",
        client.get_call_info(&info(PLAY_ON_PHONE_CALL)).await,
    )
    .get_call_info_response;
    assert_eq!(state.call_state, types::UmCallStateType::Connected);
    assert_eq!(state.event_cause, types::UmEventCauseType::None);
    let state = ok(
        &server,
        "GetCallInfo",
        client.get_call_info(&info(GREETING_CALL)).await,
    )
    .get_call_info_response;
    assert_eq!(state.call_state, types::UmCallStateType::Disconnected);
    assert_eq!(state.event_cause, types::UmEventCauseType::NoAnswer);

    // Disconnect: empty answer; the call is then disconnected.
    ok(
        &server,
        "Disconnect",
        client
            .disconnect(&types::Disconnect {
                call_id: Some(PLAY_ON_PHONE_CALL.into()),
            })
            .await,
    );
    let state = ok(
        &server,
        "GetCallInfo",
        client.get_call_info(&info(PLAY_ON_PHONE_CALL)).await,
    )
    .get_call_info_response;
    assert_eq!(state.call_state, types::UmCallStateType::Disconnected);
    assert_eq!(state.event_cause, types::UmEventCauseType::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_client_reads_the_faults_of_node_soap() {
    let server = NodeSoapServer::start();

    // An application fault: `a:InvalidCallIdException`, its prefix declared on faultcode.
    let error = server
        .client(PASSWORD)
        .get_call_info(&types::GetCallInfo {
            call_id: Some("bm8tc3VjaC1jYWxs".into()),
        })
        .await
        .expect_err("an unknown call id is a fault");
    let fault = error
        .fault()
        .unwrap_or_else(|| panic!("expected a fault, got {error} ({error:?})"));
    assert_eq!(
        fault.code,
        FaultCode::qualified(ERRORS_NS, "InvalidCallIdException")
    );
    assert_eq!(fault.string, "The call id is not known.");
    assert_eq!(
        fault.detail_text("ExceptionType"),
        Some("InvalidCallIdException")
    );

    // A SOAP fault (`soap:Client`) for a wrong password.
    let error = server
        .client("not-the-password")
        .is_um_enabled(&types::IsUmEnabled {})
        .await
        .expect_err("a wrong password is refused");
    let fault = error
        .fault()
        .unwrap_or_else(|| panic!("expected a fault, got {error} ({error:?})"));
    assert_eq!(fault.code, FaultCode::Soap(StandardCode::Client));
    assert_eq!(
        fault.string,
        "The request was not authenticated as the test user."
    );
}
