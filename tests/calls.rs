//! The call operations end to end: a real `umws serve` places calls to sipp as the phone
//! (scenarios in `tests/sip/calls/`), driven through the generated client and through zeep.
//! A voice message deposited with `umws voicemail deposit` is played by PlayOnPhone;
//! GetCallInfo follows the call, Disconnect ends it; the phone's answers map to the event
//! causes; call ids, call limits and the dial plan answer their faults; a graceful shutdown
//! hangs up.

mod common;

use common::sip::{actions, assert_recording_is_pcap_speech, tone_wav, Sipp, Step, PCAPS};

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use umws::types::{self, UmCallStateType as State, UmEventCauseType as Cause};
use umws::um_service_soap::UmServiceSoapClient;
use umws_soap::client::{ClientError, Transport};

/// A guard against a hung test (never an assertion on speed).
const GUARD: Duration = Duration::from_secs(60);

/// An RTP socket for a phone.
fn rtp_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("RTP socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    socket
}

/// Waits for the first RTP packet (the call is then connected and playing).
fn first_rtp(socket: &UdpSocket) -> Vec<u8> {
    socket.set_read_timeout(Some(GUARD)).expect("timeout");
    let mut buf = [0u8; 2048];
    let n = socket.recv(&mut buf).expect("RTP arrives");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    buf[..n].to_vec()
}

/// The RTP packets that arrive until none came for two seconds.
fn rest_of_rtp(socket: &UdpSocket) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = socket.recv(&mut buf) {
        packets.push(buf[..n].to_vec());
    }
    packets
}

/// Deposits a tone of `seconds` for `user` with `umws voicemail deposit`; returns its entry id.
fn deposit(server: &Server, user: &str, seconds: f64) -> String {
    let wav = server.data_dir().join(format!("tone-{seconds}.wav"));
    std::fs::write(&wav, tone_wav(seconds)).expect("the WAV");
    let data = server.data_dir().to_str().expect("UTF-8 path").to_owned();
    let out = common::run_umws(&[
        "voicemail",
        "deposit",
        "--data",
        &data,
        "--user",
        user,
        "--wav",
        wav.to_str().expect("UTF-8 path"),
        "--from",
        "+14255550100",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

/// The generated client for one user, with a runtime to drive it.
struct Um {
    rt: tokio::runtime::Runtime,
    client: UmServiceSoapClient,
}

impl Um {
    fn new(server: &Server, user: &str, password: &str) -> Um {
        let transport = Transport::new(&server.url())
            .expect("URL")
            .with_basic_auth(user, password)
            .with_timeout(GUARD);
        Um {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: UmServiceSoapClient::new(transport),
        }
    }

    fn demo(server: &Server) -> Um {
        Um::new(server, "demo", &server.demo_password)
    }

    fn play(&self, entry_id: &str, dial: &str) -> Result<String, ClientError> {
        let r = self
            .rt
            .block_on(self.client.play_on_phone(&types::PlayOnPhone {
                entry_id: Some(entry_id.into()),
                dial_string: Some(dial.into()),
            }))?;
        Ok(r.play_on_phone_response.expect("a call id"))
    }

    fn info(&self, call_id: &str) -> Result<(State, Cause), ClientError> {
        let r = self
            .rt
            .block_on(self.client.get_call_info(&types::GetCallInfo {
                call_id: Some(call_id.into()),
            }))?;
        let info = r.get_call_info_response;
        Ok((info.call_state, info.event_cause))
    }

    fn disconnect(&self, call_id: &str) -> Result<(), ClientError> {
        self.rt
            .block_on(self.client.disconnect(&types::Disconnect {
                call_id: Some(call_id.into()),
            }))
            .map(drop)
    }

    fn set_dial_string(&self, dial: &str) {
        self.rt
            .block_on(
                self.client
                    .set_play_on_phone_dial_string(&types::SetPlayOnPhoneDialString {
                        dial_string: Some(dial.into()),
                    }),
            )
            .expect("SetPlayOnPhoneDialString");
    }

    /// Polls GetCallInfo until the call is Disconnected; returns its cause.
    fn disconnected(&self, call_id: &str) -> Cause {
        let deadline = Instant::now() + GUARD;
        loop {
            match self.info(call_id).expect("GetCallInfo") {
                (State::Disconnected, cause) => return cause,
                _ => {
                    assert!(Instant::now() < deadline, "the call did not end");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// The exception name and message of an application fault.
fn exception(result: Result<impl std::fmt::Debug, ClientError>) -> (String, String) {
    let error = result.expect_err("a fault");
    let fault = error
        .fault()
        .unwrap_or_else(|| panic!("expected a fault, got {error}"));
    let name = fault
        .detail_text("ExceptionType")
        .unwrap_or_else(|| panic!("no ExceptionType in {fault:?}"))
        .to_owned();
    (name, fault.string.clone())
}

/// A config file in a temp dir: `[telephony]` with `table`.
fn config(table: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("umws.toml");
    std::fs::write(&path, format!("[telephony]\n{table}\n")).expect("config");
    (dir, path)
}

/// The decoded µ-law samples of RTP packets (payload type 0).
fn decoded(packets: &[Vec<u8>]) -> Vec<i16> {
    packets
        .iter()
        .flat_map(|p| {
            let packet = rtp_types::RtpPacket::parse(p).expect("RTP");
            assert_eq!(packet.payload_type(), 0);
            packet
                .payload()
                .iter()
                .map(|&b| audio_codec_algorithms::decode_ulaw(b))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// PlayOnPhoneGreeting: the phone (sipp) hears the menu, presses 1, speaks after the tone,
/// ends with # and saves with 1; `umws greeting get` then answers what it said.
#[test]
fn a_greeting_recorded_on_the_phone_replaces_the_stored_one() {
    let server = Server::start();
    let um = Um::demo(&server);
    let tone = umws::telephony::prompts::Prompt::RecordAfterTone
        .audio()
        .len()
        + umws::telephony::prompts::tone().len();
    let before_the_tone = Duration::from_millis(tone as u64 / 8 + 1000);
    let steps = [
        Step::Pause(Duration::from_millis(500)),
        Step::Key('1'),
        Step::Pause(before_the_tone),
        Step::Speak,
        Step::Pause(Duration::from_millis(7300)),
        Step::Key('#'),
        Step::Pause(Duration::from_secs(1)),
        Step::Key('1'),
    ];
    let phone = Sipp::scenario(
        "uas_greeting.xml",
        &[("@ACTIONS@", &actions(&steps)), ("@PCAPS@", PCAPS)],
        None,
    );
    let call_id = um
        .rt
        .block_on(
            um.client
                .play_on_phone_greeting(&types::PlayOnPhoneGreeting {
                    greeting_type: types::UmGreetingType::OofCustom,
                    dial_string: Some(phone.uri()),
                }),
        )
        .expect("PlayOnPhoneGreeting")
        .play_on_phone_greeting_response
        .expect("a call id");
    assert_eq!(um.disconnected(&call_id), Cause::None);
    phone.completed();
    let out = server.data_dir().join("greeting.wav");
    let got = common::run_umws(&[
        "greeting",
        "get",
        "--data",
        server.data_dir().to_str().expect("UTF-8"),
        "--user",
        "demo",
        "--type",
        "oof",
        "--out",
        out.to_str().expect("UTF-8"),
    ]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let wav = std::fs::read(&out).expect("the greeting");
    let audio = umws::audio::decode_wav(&wav).expect("a WAV");
    assert_recording_is_pcap_speech(audio.samples(), 6.0);
    // The normal greeting was not touched.
    let normal = common::run_umws(&[
        "greeting",
        "get",
        "--data",
        server.data_dir().to_str().expect("UTF-8"),
        "--user",
        "demo",
        "--type",
        "normal",
        "--out",
        out.to_str().expect("UTF-8"),
    ]);
    assert!(!normal.status.success());
}

#[test]
fn a_voice_message_is_played_on_the_phone_and_get_call_info_follows_the_call() {
    let server = Server::start();
    assert!(server.sip.is_some(), "the banner names the SIP address");
    let entry_id = deposit(&server, "demo", 5.0);
    let rtp = rtp_socket();
    let phone = Sipp::answering(&rtp);
    let um = Um::demo(&server);

    let call_id = um.play(&entry_id, &phone.uri()).expect("PlayOnPhone");
    // the call id is base64 of "<uuid>@<host>"
    let raw = base64_decode(&call_id);
    let (uuid, host) = raw.split_once('@').expect("uuid@host");
    assert_eq!(uuid.len(), 36, "{raw}");
    assert!(!host.is_empty());

    let first = first_rtp(&rtp);
    // playing: connected (the message lasts five seconds)
    assert_eq!(um.info(&call_id).unwrap(), (State::Connected, Cause::None));
    let mut packets = vec![first];
    packets.extend(rest_of_rtp(&rtp));
    // the whole message arrived, and it is the tone: 440 Hz is 880 zero crossings a second
    assert_eq!(packets.len(), 250);
    let samples = decoded(&packets);
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    assert!(
        (4350..=4450).contains(&crossings),
        "{crossings} zero crossings"
    );
    // then we hung up: Disconnected, None
    assert_eq!(um.disconnected(&call_id), Cause::None);
    let messages = phone.completed();
    // the phone saw "<uuid>@<host>" as the SIP Call-ID (base64's '=' is not allowed there)
    assert!(
        messages.contains(&format!("Call-ID: {raw}\r\n")),
        "{messages}"
    );
    assert!(messages.contains("BYE sip:"), "{messages}");
    // a finished call: Disconnect succeeds and changes nothing
    um.disconnect(&call_id)
        .expect("Disconnect of a finished call");
    assert_eq!(
        um.info(&call_id).unwrap(),
        (State::Disconnected, Cause::None)
    );
}

fn base64_decode(text: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64");
    String::from_utf8(bytes).expect("UTF-8")
}

#[test]
fn the_phones_answers_become_event_causes() {
    let server = Server::start();
    let entry_id = deposit(&server, "demo", 1.0);
    let um = Um::demo(&server);
    for (status, cause) in [
        ("486 Busy Here", Cause::UserBusy),
        ("404 Not Found", Cause::Unavailable),
        ("503 Service Unavailable", Cause::Other),
    ] {
        let phone = Sipp::rejecting(status);
        let call_id = um.play(&entry_id, &phone.uri()).expect("PlayOnPhone");
        assert_eq!(um.disconnected(&call_id), cause, "{status}");
        phone.completed();
    }
}

#[test]
fn a_phone_that_does_not_answer_in_time_is_cancelled_as_no_answer() {
    let (_dir, path) = config("ring_timeout_secs = 1");
    let server = Server::start_with(&["--config", path.to_str().unwrap()]);
    let entry_id = deposit(&server, "demo", 1.0);
    let um = Um::demo(&server);
    let phone = Sipp::ringing();
    let call_id = um.play(&entry_id, &phone.uri()).expect("PlayOnPhone");
    assert_eq!(um.disconnected(&call_id), Cause::NoAnswer);
    let messages = phone.completed();
    assert!(messages.contains("CANCEL sip:"), "{messages}");
}

#[test]
fn disconnect_cancels_a_ringing_call() {
    let server = Server::start();
    let entry_id = deposit(&server, "demo", 1.0);
    let um = Um::demo(&server);
    let phone = Sipp::ringing();
    let call_id = um.play(&entry_id, &phone.uri()).expect("PlayOnPhone");
    // the phone rings until it is cancelled (the ring timeout is 30 s)
    assert_eq!(um.info(&call_id).unwrap(), (State::Connecting, Cause::None));
    um.disconnect(&call_id).expect("Disconnect");
    assert_eq!(um.disconnected(&call_id), Cause::None);
    let messages = phone.completed();
    assert!(messages.contains("CANCEL sip:"), "{messages}");
    um.disconnect(&call_id).expect("Disconnect again");
}

#[test]
fn disconnect_hangs_up_a_connected_call() {
    let server = Server::start();
    let entry_id = deposit(&server, "demo", 60.0);
    let um = Um::demo(&server);
    let rtp = rtp_socket();
    let phone = Sipp::answering(&rtp);
    let call_id = um.play(&entry_id, &phone.uri()).expect("PlayOnPhone");
    first_rtp(&rtp);
    assert_eq!(um.info(&call_id).unwrap(), (State::Connected, Cause::None));
    um.disconnect(&call_id).expect("Disconnect");
    assert_eq!(um.disconnected(&call_id), Cause::None);
    // the scenario completes only with our BYE; far less than the minute of audio was sent
    let messages = phone.completed();
    assert!(messages.contains("BYE sip:"), "{messages}");
    assert!(rest_of_rtp(&rtp).len() < 2900);
    um.disconnect(&call_id)
        .expect("Disconnect of a finished call");
}

#[test]
fn an_empty_dial_string_calls_the_play_on_phone_dial_string() {
    let server = Server::start();
    let entry_id = deposit(&server, "demo", 1.0);
    let um = Um::demo(&server);
    // none set
    let (name, _) = exception(um.play(&entry_id, ""));
    assert_eq!(name, "InvalidPhoneNumberException");
    let phone = Sipp::rejecting("486 Busy Here");
    um.set_dial_string(&phone.uri());
    let call_id = um.play(&entry_id, "  ").expect("PlayOnPhone");
    assert_eq!(um.disconnected(&call_id), Cause::UserBusy);
    let messages = phone.completed();
    assert!(
        messages.contains("INVITE sip:phone@127.0.0.1:"),
        "{messages}"
    );
}

#[test]
fn call_ids_are_answered_to_their_caller_only() {
    let server = Server::start();
    server.add_mailbox("bob", "bob-password-1", &[]);
    let entry_id = deposit(&server, "demo", 1.0);
    let demo = Um::demo(&server);
    let bob = Um::new(&server, "bob", "bob-password-1");
    let phone = Sipp::ringing();
    let call_id = demo.play(&entry_id, &phone.uri()).expect("PlayOnPhone");
    use base64::Engine as _;
    let unknown = base64::engine::general_purpose::STANDARD
        .encode("41b2e7c0-b057-4b63-a8e0-7a4d7c745e48@127.0.0.1");
    for id in [
        call_id.as_str(),
        "garbage",
        "",
        "AAECAw==",
        unknown.as_str(),
    ] {
        let (name, _) = exception(bob.info(id));
        assert_eq!(name, "InvalidCallIdException", "GetCallInfo {id:?}");
        let (name, _) = exception(bob.disconnect(id));
        assert_eq!(name, "InvalidCallIdException", "Disconnect {id:?}");
    }
    for id in ["garbage", "", unknown.as_str()] {
        let (name, _) = exception(demo.info(id));
        assert_eq!(name, "InvalidCallIdException", "GetCallInfo {id:?}");
    }
    // bob's Disconnect did nothing to demo's call
    assert_eq!(
        demo.info(&call_id).unwrap(),
        (State::Connecting, Cause::None)
    );
    // and demo's voice message is not bob's to play
    let (name, _) = exception(bob.play(&entry_id, &phone.uri()));
    assert_eq!(name, "InvalidObjectIdException");
    demo.disconnect(&call_id).expect("Disconnect");
    phone.completed();
}

#[test]
fn call_limits_answer_transport_exceptions() {
    let (_dir, path) = config("max_calls = 2\nmax_calls_per_user = 1");
    let server = Server::start_with(&["--config", path.to_str().unwrap()]);
    for user in ["bob", "carol"] {
        server.add_mailbox(user, &format!("{user}-password-1"), &[]);
    }
    let demo = Um::demo(&server);
    let bob = Um::new(&server, "bob", "bob-password-1");
    let carol = Um::new(&server, "carol", "carol-password-1");
    let entries: Vec<String> = ["demo", "bob", "carol"]
        .iter()
        .map(|user| deposit(&server, user, 1.0))
        .collect();
    let (a, b) = (Sipp::ringing(), Sipp::ringing());
    let first = demo.play(&entries[0], &a.uri()).expect("demo's call");
    // one call per user
    let (name, message) = exception(demo.play(&entries[0], &b.uri()));
    assert_eq!(name, "TransportException");
    assert!(message.contains("per user"), "{message}");
    let second = bob.play(&entries[1], &b.uri()).expect("bob's call");
    // two in all
    let (name, message) = exception(carol.play(&entries[2], &b.uri()));
    assert_eq!(name, "TransportException");
    assert!(message.contains("simultaneous calls"), "{message}");
    // ended calls free their places
    demo.disconnect(&first).expect("Disconnect");
    bob.disconnect(&second).expect("Disconnect");
    a.completed();
    b.completed();
    let phone = Sipp::rejecting("486 Busy Here");
    let third = carol.play(&entries[2], &phone.uri()).expect("carol's call");
    assert_eq!(carol.disconnected(&third), Cause::UserBusy);
    phone.completed();
}

#[test]
fn the_embedded_dial_plan_calls_sip_uris_and_says_why_it_cannot_call_numbers() {
    let server = Server::start();
    server.add_mailbox("bob", "bob-password-1", &[]);
    let entry_id = deposit(&server, "demo", 1.0);
    let bobs = deposit(&server, "bob", 1.0);
    let um = Um::demo(&server);
    let (name, message) = exception(um.play(&entry_id, "+1 425 555 0100"));
    assert_eq!(name, "TransportException");
    assert!(message.contains("no outbound proxy"), "{message}");
    let (name, _) = exception(um.play(&entry_id, "call me"));
    assert_eq!(name, "InvalidPhoneNumberException");
    for uri in [
        "sip:@127.0.0.1",
        "sip:phone@127.0.0.1:99999",
        "sips:phone@127.0.0.1",
    ] {
        let (name, _) = exception(um.play(&entry_id, uri));
        assert_eq!(name, "InvalidSipUriException", "{uri}");
    }
    // entry ids: malformed, unknown, another user's
    let unknown = {
        use base64::Engine as _;
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&entry_id)
            .expect("base64");
        let last = raw.len() - 1;
        raw[last] ^= 0x55;
        base64::engine::general_purpose::STANDARD.encode(raw)
    };
    for id in ["not base64!", "AAECAw==", unknown.as_str(), bobs.as_str()] {
        let (name, _) = exception(um.play(id, "sip:phone@127.0.0.1:5062"));
        assert_eq!(name, "InvalidObjectIdException", "{id}");
    }
    // faults say nothing internal
    let (_, message) = exception(um.play(&bobs, "sip:phone@127.0.0.1:5062"));
    assert_eq!(message, "The object identifier isn't valid.");
}

#[test]
fn a_configured_dial_plan_routes_numbers_to_the_proxy_and_refuses_the_rest() {
    let phone = Sipp::rejecting("486 Busy Here");
    let (_dir, path) = config(&format!(
        "outbound_proxy = \"127.0.0.1:{}\"\n\
         [telephony.dial_plan]\nextension_length = 4\nallowed_numbers = [\"4xxx\"]\n\
         allow_sip_uris = false",
        phone.port()
    ));
    let server = Server::start_with(&["--config", path.to_str().unwrap()]);
    let entry_id = deposit(&server, "demo", 1.0);
    let um = Um::demo(&server);
    for (dial, exception_name) in [
        ("5100", "DialingRulesException"),
        ("12", "DialingRulesException"),
        ("+44 20 7946 0000", "DialingRulesException"),
        ("sip:phone@127.0.0.1:5062", "InvalidSipUriException"),
        ("41#0", "DialingRulesException"),
        ("call 4100", "InvalidPhoneNumberException"),
    ] {
        let (name, message) = exception(um.play(&entry_id, dial));
        assert_eq!(name, exception_name, "{dial}: {message}");
    }
    // an allowed extension goes to the proxy as sip:<extension>@<proxy>
    let call_id = um.play(&entry_id, "41-00").expect("PlayOnPhone");
    assert_eq!(um.disconnected(&call_id), Cause::UserBusy);
    let port = phone.port();
    let messages = phone.completed();
    assert!(
        messages.contains(&format!("INVITE sip:4100@127.0.0.1:{port} SIP/2.0")),
        "{messages}"
    );
}

#[test]
fn a_graceful_shutdown_hangs_up_every_call() {
    let server = Server::start();
    let entry_id = deposit(&server, "demo", 60.0);
    let um = Um::demo(&server);
    let rtp = rtp_socket();
    let connected = Sipp::answering(&rtp);
    let ringing = Sipp::ringing();
    let first = um.play(&entry_id, &connected.uri()).expect("PlayOnPhone");
    first_rtp(&rtp);
    assert_eq!(um.info(&first).unwrap(), (State::Connected, Cause::None));
    let second = um.play(&entry_id, &ringing.uri()).expect("PlayOnPhone");
    assert_eq!(um.info(&second).unwrap(), (State::Connecting, Cause::None));
    assert!(server.terminate().success());
    // the connected phone got our BYE, the ringing one our CANCEL
    let messages = connected.completed();
    assert!(messages.contains("BYE sip:"), "{messages}");
    let messages = ringing.completed();
    assert!(messages.contains("CANCEL sip:"), "{messages}");
}

/// `umws serve` with `args` (no `--sip-listen` added); its stdout lines until the banner's
/// end, or its stderr when it exits first.
fn serve(data: &Path, args: &[&str]) -> (Child, Result<Vec<String>, String>) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(env!("CARGO_BIN_EXE_umws"))
        .args(["serve", "--no-demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .env("UMWS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn umws serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut banner = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                let done = line.starts_with("stop with Ctrl-C");
                banner.push(line);
                if done {
                    return (child, Ok(banner));
                }
            }
            _ => {
                let mut err = String::new();
                let _ = child
                    .stderr
                    .take()
                    .expect("stderr")
                    .read_to_string(&mut err);
                let _ = child.wait();
                return (child, Err(err));
            }
        }
    }
}

#[test]
fn the_sip_address_is_in_the_banner_and_a_busy_one_is_said() {
    let data = tempfile::tempdir().expect("temp dir");
    // an explicit address that is busy stops the server with a message
    let busy = UdpSocket::bind("127.0.0.1:0").expect("socket");
    let addr = busy.local_addr().expect("addr").to_string();
    let (_, result) = serve(data.path(), &["--sip-listen", &addr]);
    let err = result.expect_err("the server must not start");
    assert!(
        err.contains(&format!("cannot place calls from SIP address {addr}"))
            && err.contains("--sip-listen"),
        "{err}"
    );
    // a wildcard address is refused
    let (_, result) = serve(data.path(), &["--sip-listen", "0.0.0.0:5060"]);
    let err = result.expect_err("the server must not start");
    assert!(err.contains("wildcard"), "{err}");
    // a free one is used and shown
    drop(busy);
    let (mut child, result) = serve(data.path(), &["--sip-listen", &addr]);
    let banner = result.expect("the server starts");
    let shown: Vec<_> = banner
        .iter()
        .filter_map(|l| common::banner_sip(l))
        .collect();
    assert_eq!(shown, [addr.parse().unwrap()], "{banner:?}");
    let _ = child.kill();
    let _ = child.wait();
    // the default address, when busy, falls back to another port and says so
    let held = UdpSocket::bind("127.0.0.1:5060");
    let (mut child, result) = serve(data.path(), &[]);
    let banner = result.expect("the server starts");
    let line = banner
        .iter()
        .find(|l| common::banner_sip(l).is_some())
        .unwrap_or_else(|| panic!("{banner:?}"));
    assert!(
        line.contains("(the default 127.0.0.1:5060 was busy)"),
        "{line}"
    );
    assert_ne!(common::banner_sip(line).map(|a| a.port()), Some(5060));
    let _ = child.kill();
    let _ = child.wait();
    drop(held);
    // calls off
    let (mut child, result) = serve(data.path(), &["--no-telephony"]);
    let banner = result.expect("the server starts");
    assert!(
        banner.iter().any(|l| l.contains("calls: off")),
        "{banner:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn calls_off_answer_transport_exceptions() {
    let server = Server::start_with(&["--no-telephony"]);
    assert_eq!(server.sip, None);
    let entry_id = deposit(&server, "demo", 1.0);
    let um = Um::demo(&server);
    let (name, message) = exception(um.play(&entry_id, "sip:phone@127.0.0.1:5062"));
    assert_eq!(name, "TransportException");
    assert!(message.contains("no telephony backend"), "{message}");
}

/// Whether the zeep test should run (see tests/interop.rs).
fn zeep_required() -> bool {
    if std::env::var("UMWS_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("SKIPPED: zeep interop test (UMWS_SKIP_INTEROP=1)");
        return false;
    }
    common::python_exe();
    true
}

#[test]
fn zeep_plays_a_message_polls_to_disconnected_and_disconnects() {
    if !zeep_required() {
        return;
    }
    let server = Server::start();
    let entry_id = deposit(&server, "demo", 3.0);
    let rtp = rtp_socket();
    let answering = Sipp::answering(&rtp);
    let ringing = Sipp::ringing();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/zeep_calls.py");
    let out = common::python()
        .arg(&script)
        .args([&server.url(), "demo", &server.demo_password, &entry_id])
        .args([answering.uri(), ringing.uri()])
        .output()
        .expect("run the test virtual environment's python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "zeep_calls.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values = |key: &str| -> Vec<&str> {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    };
    assert_eq!(values("fault"), Vec::<&str>::new(), "{stdout}");
    // the states the poll saw: it ends Disconnected/None, after Connected (3 s of audio)
    let states = values("state1");
    assert_eq!(states.last(), Some(&"Disconnected/None"), "{stdout}");
    assert!(states.contains(&"Connected/None"), "{stdout}");
    assert_eq!(values("disconnect1"), ["ok"]);
    assert_eq!(values("ringing2"), ["Connecting/None"]);
    assert_eq!(values("disconnect2"), ["ok"]);
    assert_eq!(values("after2"), ["Disconnected/None"]);
    // the phones saw the calls: the whole message and our BYE, and our CANCEL
    let call1 = values("call1")[0].to_owned();
    let messages = answering.completed();
    assert!(
        messages.contains(&format!("Call-ID: {}\r\n", base64_decode(&call1))),
        "{messages}"
    );
    assert!(messages.contains("BYE sip:"), "{messages}");
    assert_eq!(rest_of_rtp(&rtp).len(), 150);
    let messages = ringing.completed();
    assert!(messages.contains("CANCEL sip:"), "{messages}");
}

/// A SOAP call of `op` with the request element's `children`, raw over HTTP; returns the
/// status and the response envelope.
fn raw_call(server: &Server, op: &str, children: &str) -> (u16, String) {
    const MESSAGES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<soap:Envelope \
         xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>\
         <{op} xmlns=\"{MESSAGES_NS}\">{children}</{op}></soap:Body></soap:Envelope>"
    );
    let action = format!("\"{MESSAGES_NS}/{op}\"");
    let auth = common::basic("demo", &server.demo_password);
    let (status, _, envelope) = common::post_raw(
        &server.base,
        "/UnifiedMessaging/Service.asmx",
        &[
            ("Content-Type", "text/xml; charset=utf-8"),
            ("SOAPAction", &action),
            ("Authorization", &auth),
        ],
        body.as_bytes(),
    );
    (status, envelope)
}

/// Asserts that a whole envelope is valid against the SOAP and UM schemas (xmllint).
fn assert_valid(what: &str, envelope: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("message.xml");
    std::fs::write(&file, envelope).expect("the message");
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/validation/um-envelope.xsd");
    let out = Command::new(common::xmllint())
        .args(["--noout", "--nonet", "--schema"])
        .arg(&schema)
        .arg(&file)
        .output()
        .expect("run xmllint");
    assert!(
        out.status.success(),
        "{what} is not valid:\n{}\n{envelope}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_messages_of_a_call_validate_against_the_schemas() {
    if std::env::var("UMWS_SKIP_XMLLINT").as_deref() == Ok("1") {
        eprintln!("SKIPPED: xmllint schema validation (UMWS_SKIP_XMLLINT=1)");
        return;
    }
    let server = Server::start();
    let entry_id = deposit(&server, "demo", 1.0);
    let phone = Sipp::ringing();
    let (status, envelope) = raw_call(
        &server,
        "PlayOnPhone",
        &format!(
            "<entryId>{entry_id}</entryId><DialString>{}</DialString>",
            phone.uri()
        ),
    );
    assert_eq!(status, 200, "{envelope}");
    assert_valid("PlayOnPhoneResponse", &envelope);
    let call_id = envelope
        .rsplit_once("<PlayOnPhoneResponse>")
        .and_then(|(_, rest)| rest.split_once("</PlayOnPhoneResponse>"))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("no call id in {envelope}"));
    let info = |expected: &str| {
        let (status, envelope) = raw_call(
            &server,
            "GetCallInfo",
            &format!("<CallId>{call_id}</CallId>"),
        );
        assert_eq!(status, 200, "{envelope}");
        assert!(envelope.contains(expected), "{envelope}");
        assert_valid("GetCallInfoResponse", &envelope);
    };
    info("<CallState>Connecting</CallState><EventCause>None</EventCause>");
    let (status, envelope) = raw_call(
        &server,
        "Disconnect",
        &format!("<CallId>{call_id}</CallId>"),
    );
    assert_eq!(status, 200, "{envelope}");
    assert_valid("DisconnectResponse", &envelope);
    info("<CallState>Disconnected</CallState><EventCause>None</EventCause>");
    phone.completed();
    // the new faults
    for (dial, exception) in [
        ("+1 425 555 0100", "TransportException"),
        ("sip:@127.0.0.1", "InvalidSipUriException"),
        ("call me", "InvalidPhoneNumberException"),
    ] {
        let (status, envelope) = raw_call(
            &server,
            "PlayOnPhone",
            &format!("<entryId>{entry_id}</entryId><DialString>{dial}</DialString>"),
        );
        assert_eq!(status, 500, "{envelope}");
        assert!(
            envelope.contains(&format!(">{exception}</ExceptionType>")),
            "{envelope}"
        );
        assert_valid(exception, &envelope);
    }
}
