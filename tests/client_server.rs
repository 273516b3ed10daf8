//! Every operation through the generated typed client against the server
//! on a real socket (127.0.0.1:0), in process.

use std::time::Duration;

use base64::Engine as _;
use umws::config::ServeConfig;
use umws::store::{NewMailbox, Store};
use umws::types;
use umws::um_service_soap::UmServiceSoapClient;
use umws_soap::client::{ClientError, Transport};
use umws_soap::FaultCode;

const E: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

struct Running {
    url: String,
    data: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Running {
    let data = tempfile::tempdir().unwrap();
    let store = Store::create(data.path()).unwrap();
    for (user, um) in [("alice", true), ("bob", true), ("carol", false)] {
        store
            .add_mailbox(NewMailbox {
                user: user.into(),
                password: format!("{user}-password"),
                um_enabled: um,
                extension: Some("4711".into()),
                email: Some(format!("{user}@example.com")),
            })
            .unwrap();
    }
    let server = umws::app::build_server(store, data.path(), &ServeConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/UnifiedMessaging/Service.asmx",
        listener.local_addr().unwrap()
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    Running {
        url,
        data,
        shutdown: Some(tx),
        task,
    }
}

impl Running {
    fn client(&self, user: &str) -> UmServiceSoapClient {
        let transport = Transport::new(&self.url)
            .unwrap()
            .with_basic_auth(user, &format!("{user}-password"))
            .with_timeout(Duration::from_secs(30));
        UmServiceSoapClient::new(transport)
    }

    fn mails(&self, user: &str) -> Vec<String> {
        let dir = self.data.path().join("mail").join(user).join("new");
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(Result::ok).collect())
            .unwrap_or_default();
        entries.sort_by_key(|e| e.file_name());
        entries
            .iter()
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

fn exception(error: &ClientError) -> (String, String) {
    let fault = error
        .fault()
        .unwrap_or_else(|| panic!("expected a fault, got {error}"));
    match &fault.code {
        FaultCode::Qualified { namespace, local } => {
            assert_eq!(
                namespace, E,
                "application faults are in the errors namespace"
            );
            assert_eq!(fault.detail_text("ExceptionType"), Some(local.as_str()));
            (local.clone(), fault.string.clone())
        }
        other => panic!("unexpected fault code {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_settings_operation_round_trips_through_the_typed_client() {
    let server = start().await;
    let alice = server.client("alice");

    assert!(
        alice
            .is_um_enabled(&types::IsUmEnabled {})
            .await
            .unwrap()
            .is_um_enabled_response
    );
    let p = alice
        .get_um_properties(&types::GetUmProperties {})
        .await
        .unwrap()
        .get_um_properties_response;
    assert!(!p.oof_status);
    assert!(p.missed_call_notification_enabled);

    alice
        .set_oof_status(&types::SetOofStatus { status: true })
        .await
        .unwrap();
    alice
        .set_missed_call_notification_enabled(&types::SetMissedCallNotificationEnabled {
            status: false,
        })
        .await
        .unwrap();
    alice
        .set_play_on_phone_dial_string(&types::SetPlayOnPhoneDialString {
            dial_string: Some("+1 (425) 555-0100".into()),
        })
        .await
        .unwrap();
    let folder = base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 3, 4, 5, 6, 7]);
    alice
        .set_telephone_access_folder_email(&types::SetTelephoneAccessFolderEmail {
            base_64_folder_id: Some(folder.clone()),
        })
        .await
        .unwrap();
    let p = alice
        .get_um_properties(&types::GetUmProperties {})
        .await
        .unwrap()
        .get_um_properties_response;
    assert!(p.oof_status);
    assert!(!p.missed_call_notification_enabled);
    assert_eq!(
        p.play_on_phone_dial_string.as_deref(),
        Some("+1 (425) 555-0100")
    );
    assert_eq!(
        p.telephone_access_folder_email.as_deref(),
        Some(folder.as_str())
    );

    // Bob's settings are his own: alice's changes did not touch them.
    let bob = server.client("bob");
    let p = bob
        .get_um_properties(&types::GetUmProperties {})
        .await
        .unwrap()
        .get_um_properties_response;
    assert!(!p.oof_status);
    assert_eq!(p.play_on_phone_dial_string, None);

    // Bad values are faults, and change nothing.
    let err = alice
        .set_telephone_access_folder_email(&types::SetTelephoneAccessFolderEmail {
            base_64_folder_id: Some("not base64!".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(exception(&err).0, "InvalidObjectIdException");
    assert_eq!(exception(&err).1, "The object identifier isn't valid.");
    let err = alice
        .set_play_on_phone_dial_string(&types::SetPlayOnPhoneDialString {
            dial_string: Some("call me maybe".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(exception(&err).0, "InvalidPhoneNumberException");
    let p = alice
        .get_um_properties(&types::GetUmProperties {})
        .await
        .unwrap()
        .get_um_properties_response;
    assert_eq!(
        p.telephone_access_folder_email.as_deref(),
        Some(folder.as_str())
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_pin_mails_the_caller_only() {
    let server = start().await;
    let alice = server.client("alice");
    alice.reset_pin(&types::ResetPin {}).await.unwrap();
    let mails = server.mails("alice");
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("To: alice@example.com"));
    assert!(
        server.mails("bob").is_empty(),
        "a reset never mails another mailbox"
    );

    let err = server
        .client("carol")
        .reset_pin(&types::ResetPin {})
        .await
        .unwrap_err();
    assert_eq!(exception(&err).0, "UserNotUmEnabledException");
    assert!(server.mails("carol").is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_operations_answer_with_faults_that_say_why() {
    let server = start().await;
    let alice = server.client("alice");
    let entry = base64::engine::general_purpose::STANDARD.encode([9u8; 16]);
    let err = alice
        .play_on_phone(&types::PlayOnPhone {
            entry_id: Some(entry),
            dial_string: Some("4711".into()),
        })
        .await
        .unwrap_err();
    let (name, text) = exception(&err);
    assert_eq!(name, "TransportException");
    assert!(text.contains("no telephony backend"), "{text}");

    let err = alice
        .play_on_phone(&types::PlayOnPhone {
            entry_id: Some("%%%".into()),
            dial_string: Some("4711".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(exception(&err).0, "InvalidObjectIdException");

    let err = alice
        .play_on_phone_greeting(&types::PlayOnPhoneGreeting {
            greeting_type: types::UmGreetingType::OofCustom,
            dial_string: Some("4711".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(exception(&err).0, "TransportException");

    let call_id =
        base64::engine::general_purpose::STANDARD.encode(format!("{}@um.example.com", uuid_like()));
    for result in [
        alice
            .get_call_info(&types::GetCallInfo {
                call_id: Some(call_id.clone()),
            })
            .await
            .map(|_| ()),
        alice
            .disconnect(&types::Disconnect {
                call_id: Some(call_id.clone()),
            })
            .await
            .map(|_| ()),
        alice
            .get_call_info(&types::GetCallInfo {
                call_id: Some("garbage".into()),
            })
            .await
            .map(|_| ()),
    ] {
        assert_eq!(exception(&result.unwrap_err()).0, "InvalidCallIdException");
    }

    let err = server
        .client("carol")
        .play_on_phone_greeting(&types::PlayOnPhoneGreeting {
            greeting_type: types::UmGreetingType::NormalCustom,
            dial_string: Some("4711".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(exception(&err).0, "UserNotUmEnabledException");
    server.stop().await;
}

fn uuid_like() -> String {
    "0f8fad5b-d9cb-469f-a165-70867728950e".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_typed() {
    let server = start().await;
    let wrong = UmServiceSoapClient::new(
        Transport::new(&server.url)
            .unwrap()
            .with_basic_auth("alice", "nope"),
    );
    match wrong.is_um_enabled(&types::IsUmEnabled {}).await {
        Err(ClientError::Http { status, .. }) => assert_eq!(status.as_u16(), 401),
        other => panic!("expected HTTP 401, got {other:?}"),
    }

    let url = server.url.clone();
    server.stop().await;
    let gone = UmServiceSoapClient::new(
        Transport::new(&url)
            .unwrap()
            .with_basic_auth("alice", "alice-password")
            .with_timeout(Duration::from_secs(5)),
    );
    assert!(matches!(
        gone.is_um_enabled(&types::IsUmEnabled {}).await,
        Err(ClientError::Transport(_))
    ));

    assert!(matches!(
        Transport::new("ftp://x/y"),
        Err(ClientError::InvalidUrl { .. })
    ));
    assert!(matches!(
        Transport::new("not a url"),
        Err(ClientError::InvalidUrl { .. })
    ));

    // A server that accepts but never answers: the client times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = UmServiceSoapClient::new(
        Transport::new(&format!("http://{}/x", silent.local_addr().unwrap()))
            .unwrap()
            .with_timeout(Duration::from_millis(300)),
    );
    assert!(matches!(
        slow.is_um_enabled(&types::IsUmEnabled {}).await,
        Err(ClientError::Timeout(_))
    ));
    drop(silent);
}
