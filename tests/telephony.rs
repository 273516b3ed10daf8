//! The telephony module (`umws::telephony`) against a real SIP peer: sipp as the phone, with
//! its built-in UAS and the scenarios in `tests/sip/`.

mod common;

use common::sip::{actions, assert_recording_is_pcap_speech, free_udp_port, Sipp, Step, PCAPS};

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::process::{Child, Command};
use umws::telephony::prompts::{self, Prompt};
use umws::telephony::{
    AgentConfig, Call, CallMedia, CallRegistry, CallRequest, CallState, CallStatus, Credentials,
    EventCause, GreetingSession, SaveGreeting, SipAgent, UnknownCall,
};

/// A guard against a hung test (never an assertion on speed).
const GUARD: Duration = Duration::from_secs(60);
/// The ring timeout of the tests' calls (only the no-answer test waits for it).
const RING_TIMEOUT: Duration = Duration::from_secs(1);

/// A 440 Hz tone of `seconds`, 8 kHz 16-bit PCM.
fn tone(seconds: f64) -> Arc<[i16]> {
    let n = (8000.0 * seconds) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect()
}

async fn agent() -> SipAgent {
    SipAgent::bind(AgentConfig::new("127.0.0.1:0".parse().expect("addr")))
        .await
        .expect("the SIP agent starts")
}

async fn call(agent: &SipAgent, phone: &Sipp, audio: Arc<[i16]>) -> Call {
    agent
        .place_call(CallRequest {
            target: phone.uri(),
            from_user: "umws".into(),
            media: CallMedia::Play(audio),
            ring_timeout: RING_TIMEOUT,
        })
        .await
        .expect("the call is placed")
}

async fn finished(call: &Call) -> CallStatus {
    tokio::time::timeout(GUARD, call.finished())
        .await
        .expect("the call ends")
}

fn status(state: CallState, cause: EventCause) -> CallStatus {
    CallStatus { state, cause }
}

/// Receives RTP packets on `socket` until none came for a second.
async fn received_rtp(socket: &UdpSocket) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await
    {
        packets.push(buf[..n].to_vec());
    }
    packets
}

#[tokio::test]
async fn builtin_uas_answers_and_we_hang_up_after_the_audio() {
    let phone = Sipp::builtin_uas();
    let agent = agent().await;
    let audio = tone(0.5);
    let call = call(&agent, &phone, audio.clone()).await;
    assert_eq!(call.status().state, CallState::Connecting);
    let answered = tokio::time::timeout(GUARD, call.answered())
        .await
        .expect("answered");
    assert_eq!(answered, status(CallState::Connected, EventCause::None));
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    assert_eq!(call.rtp_packets_sent(), (audio.len() / 160) as u64);
    // sipp's uas scenario ends with our BYE (answered 200): it passes only if it came.
    let messages = phone.completed_async().await;
    // the SIP Call-ID is what the call id encodes, without base64's '=' (not allowed there)
    assert!(
        messages.contains(&format!("Call-ID: {}\r\n", call.sip_call_id())),
        "{messages}"
    );
    assert!(!call.sip_call_id().contains('='), "{}", call.sip_call_id());
    assert!(messages.contains("BYE sip:"), "{messages}");
}

/// Answers with `formats` in the SDP; returns the RTP that arrived.
async fn answered_call_rtp(formats: &str, audio: Arc<[i16]>) -> (Call, Vec<Vec<u8>>) {
    let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("RTP socket");
    let rtp_port = rtp.local_addr().expect("addr").port();
    let phone = Sipp::scenario(
        "uas_answer.xml",
        &[
            ("@RTP_PORT@", &rtp_port.to_string()),
            ("@FORMATS@", formats),
        ],
        None,
    );
    let agent = agent().await;
    let call = call(&agent, &phone, audio).await;
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    phone.completed_async().await;
    let packets = received_rtp(&rtp).await;
    (call, packets)
}

#[tokio::test]
async fn the_audio_arrives_as_paced_g711_rtp_in_the_answered_codec() {
    for (formats, payload_type) in [("0 8", 0u8), ("8 0", 8u8)] {
        // 1.01 s: 50 whole packets and one of 80 samples
        let audio = tone(1.01);
        let (call, packets) = answered_call_rtp(formats, audio.clone()).await;
        assert_eq!(packets.len(), 51, "answer {formats}");
        assert_eq!(call.rtp_packets_sent(), 51);
        let parsed: Vec<_> = packets
            .iter()
            .map(|p| rtp_types::RtpPacket::parse(p).expect("RTP"))
            .collect();
        let first = &parsed[0];
        assert!(first.marker_bit());
        let mut payload = Vec::new();
        for (i, p) in parsed.iter().enumerate() {
            assert_eq!(p.version(), 2);
            assert_eq!(p.payload_type(), payload_type, "answer {formats}");
            assert_eq!(p.ssrc(), first.ssrc());
            assert_eq!(
                p.sequence_number(),
                first.sequence_number().wrapping_add(i as u16)
            );
            assert_eq!(
                p.timestamp(),
                first.timestamp().wrapping_add(160 * i as u32)
            );
            assert_eq!(p.marker_bit(), i == 0);
            payload.extend_from_slice(p.payload());
        }
        // what arrived is the audio, in order, in the answered law
        let decoded: Vec<i16> = payload
            .iter()
            .map(|&b| match payload_type {
                0 => audio_codec_algorithms::decode_ulaw(b),
                _ => audio_codec_algorithms::decode_alaw(b),
            })
            .collect();
        assert_eq!(decoded.len(), audio.len());
        for (got, sent) in decoded.iter().zip(audio.iter()) {
            // G.711 keeps a sample within 1/16 of its magnitude (and a step near zero)
            let err = (i32::from(*got) - i32::from(*sent)).abs();
            assert!(
                err <= i32::from(sent.unsigned_abs() / 16) + 32,
                "{got} for {sent}"
            );
        }
    }
}

#[tokio::test]
async fn the_phone_hanging_up_mid_audio_ends_the_call_and_the_rtp() {
    let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("RTP socket");
    let rtp_port = rtp.local_addr().expect("addr").port();
    let phone = Sipp::scenario(
        "uas_answer_then_bye.xml",
        &[("@RTP_PORT@", &rtp_port.to_string())],
        None,
    );
    let agent = agent().await;
    // 60 s of audio (3000 packets); the phone hangs up after about one second
    let call = call(&agent, &phone, tone(60.0)).await;
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    phone.completed_async().await;
    let sent = call.rtp_packets_sent();
    assert!(sent > 0 && sent < 3000, "{sent} packets sent");
    // and nothing more is sent after the end
    let packets = received_rtp(&rtp).await;
    assert_eq!(packets.len() as u64, sent);
    assert_eq!(call.rtp_packets_sent(), sent);
}

async fn rejected_with(reply: &str) -> CallStatus {
    let phone = Sipp::scenario("uas_reject.xml", &[("@STATUS@", reply)], None);
    let agent = agent().await;
    let call = call(&agent, &phone, tone(1.0)).await;
    let status = finished(&call).await;
    assert_eq!(call.rtp_packets_sent(), 0);
    phone.completed_async().await;
    status
}

#[tokio::test]
async fn busy_is_user_busy() {
    assert_eq!(
        rejected_with("486 Busy Here").await,
        status(CallState::Disconnected, EventCause::UserBusy)
    );
}

#[tokio::test]
async fn not_found_is_unavailable() {
    assert_eq!(
        rejected_with("404 Not Found").await,
        status(CallState::Disconnected, EventCause::Unavailable)
    );
}

#[tokio::test]
async fn temporarily_unavailable_is_unavailable() {
    assert_eq!(
        rejected_with("480 Temporarily Unavailable").await,
        status(CallState::Disconnected, EventCause::Unavailable)
    );
}

#[tokio::test]
async fn request_timeout_is_no_answer() {
    assert_eq!(
        rejected_with("408 Request Timeout").await,
        status(CallState::Disconnected, EventCause::NoAnswer)
    );
}

#[tokio::test]
async fn busy_everywhere_is_user_busy() {
    assert_eq!(
        rejected_with("600 Busy Everywhere").await,
        status(CallState::Disconnected, EventCause::UserBusy)
    );
}

#[tokio::test]
async fn service_unavailable_is_other() {
    assert_eq!(
        rejected_with("503 Service Unavailable").await,
        status(CallState::Disconnected, EventCause::Other)
    );
}

#[tokio::test]
async fn no_answer_before_the_ring_timeout_is_cancelled_and_no_answer() {
    let phone = Sipp::scenario("uas_no_answer.xml", &[], None);
    let agent = agent().await;
    let call = call(&agent, &phone, tone(1.0)).await;
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::NoAnswer)
    );
    assert_eq!(call.rtp_packets_sent(), 0);
    // the scenario completes only when the CANCEL came
    let messages = phone.completed_async().await;
    assert!(messages.contains("CANCEL sip:"), "{messages}");
}

#[tokio::test]
async fn hanging_up_while_ringing_cancels() {
    let phone = Sipp::scenario("uas_no_answer.xml", &[], None);
    let agent = agent().await;
    let call = agent
        .place_call(CallRequest {
            target: phone.uri(),
            from_user: "umws".into(),
            media: CallMedia::Play(tone(1.0)),
            // long: the CANCEL is ours, not the timeout's
            ring_timeout: GUARD,
        })
        .await
        .expect("the call is placed");
    call.hang_up();
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    phone.completed_async().await;
}

#[tokio::test]
async fn a_target_that_is_not_a_sip_uri_is_refused() {
    let agent = agent().await;
    for target in ["", "tel:+15551234", "not a uri", "sip:"] {
        let placed = agent
            .place_call(CallRequest {
                target: target.into(),
                from_user: "umws".into(),
                media: CallMedia::Play(tone(0.1)),
                ring_timeout: RING_TIMEOUT,
            })
            .await;
        assert!(placed.is_err(), "{target:?} was accepted");
    }
}

#[tokio::test]
async fn hanging_up_a_connected_call_sends_bye_and_stops_the_rtp() {
    let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("RTP socket");
    let rtp_port = rtp.local_addr().expect("addr").port();
    let phone = Sipp::scenario(
        "uas_answer.xml",
        &[("@RTP_PORT@", &rtp_port.to_string()), ("@FORMATS@", "0")],
        None,
    );
    let agent = agent().await;
    // 60 s of audio (3000 packets); we hang up once the first packet arrived
    let call = call(&agent, &phone, tone(60.0)).await;
    let mut buf = [0u8; 2048];
    tokio::time::timeout(GUARD, rtp.recv(&mut buf))
        .await
        .expect("RTP arrives")
        .expect("RTP");
    assert_eq!(
        call.status(),
        status(CallState::Connected, EventCause::None)
    );
    call.hang_up();
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    // the scenario ends with the BYE
    phone.completed_async().await;
    let sent = call.rtp_packets_sent();
    assert!(sent < 3000, "{sent} packets sent");
    let packets = received_rtp(&rtp).await;
    assert_eq!(packets.len() as u64 + 1, sent);
    // hanging up a finished call does nothing
    call.hang_up();
    assert_eq!(
        call.status(),
        status(CallState::Disconnected, EventCause::None)
    );
}

#[tokio::test]
async fn an_answer_without_usable_sdp_is_hung_up_as_other() {
    let phone = Sipp::scenario("uas_answer_bad_sdp.xml", &[], None);
    let agent = agent().await;
    let call = call(&agent, &phone, tone(1.0)).await;
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::Other)
    );
    assert_eq!(call.rtp_packets_sent(), 0);
    // the scenario ends with our BYE
    phone.completed_async().await;
}

#[tokio::test]
async fn malformed_datagrams_do_not_stop_the_agent() {
    let agent = agent().await;
    let garbage = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    for datagram in [
        &b""[..],
        b"\x00\xff\xfe garbage",
        b"INVITE\r\n\r\n",
        b"SIP/2.0 200 OK\r\nCSeq: x\r\n\r\n",
        b"BYE sip:umws@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n\
          Call-ID: nope\r\nCSeq: 1 BYE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n\
          Content-Length: 99999\r\n\r\n",
    ] {
        garbage
            .send_to(datagram, agent.local_addr())
            .await
            .expect("sent");
    }
    // the agent still places and completes a call
    let phone = Sipp::builtin_uas();
    let call = call(&agent, &phone, tone(0.2)).await;
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    phone.completed_async().await;
}

#[tokio::test]
async fn a_wildcard_listen_address_is_refused() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let bound = SipAgent::bind(AgentConfig::new(listen.parse().expect("addr"))).await;
        assert!(
            matches!(bound, Err(umws::telephony::TelephonyError::Unspecified(_))),
            "{listen}"
        );
    }
}

#[tokio::test]
async fn a_200_crossing_our_cancel_is_acked_and_ended_with_bye() {
    let phone = Sipp::scenario("uas_answer_crossing_cancel.xml", &[], None);
    let agent = agent().await;
    let call = call(&agent, &phone, tone(1.0)).await;
    // the ring timeout fired first: the call stays a no-answer, with nothing played
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::NoAnswer)
    );
    assert_eq!(call.rtp_packets_sent(), 0);
    // the scenario ends only with our ACK and BYE after the CANCEL
    let messages = phone.completed_async().await;
    assert!(messages.contains("CANCEL sip:"), "{messages}");
    assert!(messages.contains("BYE sip:"), "{messages}");
}

#[tokio::test]
async fn the_registry_answers_a_call_id_to_its_owner_until_it_expires() {
    const KEEP: Duration = Duration::from_secs(15 * 60);
    let registry = CallRegistry::new(KEEP);
    let agent = agent().await;
    // a call that rings until we hang up, and one that ends at once (486)
    let ringing_phone = Sipp::scenario("uas_no_answer.xml", &[], None);
    let busy_phone = Sipp::scenario("uas_reject.xml", &[("@STATUS@", "486 Busy Here")], None);
    let ringing = agent
        .place_call(CallRequest {
            target: ringing_phone.uri(),
            from_user: "umws".into(),
            media: CallMedia::Play(tone(1.0)),
            ring_timeout: GUARD,
        })
        .await
        .expect("placed");
    let busy = call(&agent, &busy_phone, tone(1.0)).await;
    registry.insert("alice", ringing.clone());
    registry.insert("bob", busy.clone());
    assert_eq!(
        finished(&busy).await,
        status(CallState::Disconnected, EventCause::UserBusy)
    );
    let ended = busy.ended_at().expect("ended");

    // only the owner gets the call; another user's, unknown and malformed ids are unknown
    let found = registry.get("bob", busy.id()).expect("bob's call");
    assert_eq!(found.status(), busy.status());
    assert_eq!(registry.get("alice", busy.id()).err(), Some(UnknownCall));
    assert_eq!(registry.get("bob", ringing.id()).err(), Some(UnknownCall));
    assert_eq!(registry.get("bob", "").err(), Some(UnknownCall));
    assert_eq!(registry.get("bob", "not base64 !").err(), Some(UnknownCall));
    assert_eq!(registry.running("alice"), (1, 1));
    assert_eq!(registry.running("bob"), (1, 0));

    // a finished call stays until `KEEP` after its end; a running one stays
    assert_eq!(registry.purge(ended + KEEP - Duration::from_secs(1)), 0);
    assert!(registry.get("bob", busy.id()).is_ok());
    assert_eq!(registry.purge(ended + KEEP), 1);
    assert_eq!(registry.get("bob", busy.id()).err(), Some(UnknownCall));
    assert!(registry.get("alice", ringing.id()).is_ok());

    // shutdown hangs up the rest (the ringing call is cancelled)
    for call in registry.hang_up_all() {
        assert_eq!(
            finished(&call).await,
            status(CallState::Disconnected, EventCause::None)
        );
    }
    assert_eq!(registry.running("alice"), (0, 0));
    ringing_phone.completed_async().await;
    busy_phone.completed_async().await;
}

// ---------------------------------------------------------------------------------------------
// Digest authentication, and an outbound proxy
// ---------------------------------------------------------------------------------------------

async fn agent_with(configure: impl FnOnce(&mut AgentConfig)) -> SipAgent {
    let mut config = AgentConfig::new("127.0.0.1:0".parse().expect("addr"));
    configure(&mut config);
    SipAgent::bind(config).await.expect("the SIP agent starts")
}

fn credentials(user: &str, password: &str) -> Credentials {
    Credentials {
        user: user.into(),
        password: password.into(),
        realm: Some("umws.test".into()),
    }
}

async fn call_uri(agent: &SipAgent, target: String, audio: Arc<[i16]>) -> Call {
    agent
        .place_call(CallRequest {
            target,
            from_user: "umws".into(),
            media: CallMedia::Play(audio),
            ring_timeout: RING_TIMEOUT,
        })
        .await
        .expect("the call is placed")
}

#[tokio::test]
async fn a_401_is_answered_with_the_configured_credentials() {
    let phone = Sipp::scenario(
        "uas_auth_401.xml",
        &[("@USER@", "umws"), ("@PASSWORD@", "s3cret")],
        None,
    );
    let agent = agent_with(|c| c.credentials = Some(credentials("umws", "s3cret"))).await;
    let call = call(&agent, &phone, tone(0.2)).await;
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    assert_eq!(call.rtp_packets_sent(), 10);
    // the scenario answers 200 only to a correct Authorization, and ends with our BYE
    let messages = phone.completed_async().await;
    assert!(messages.contains("Authorization: Digest"), "{messages}");
    assert!(messages.contains("username=\"umws\""), "{messages}");
    assert!(!messages.contains("s3cret"), "{messages}");
}

#[tokio::test]
async fn a_second_401_ends_the_call_as_other() {
    let phone = Sipp::scenario("uas_auth_401_twice.xml", &[], None);
    let agent = agent_with(|c| c.credentials = Some(credentials("umws", "wrong"))).await;
    let call = call(&agent, &phone, tone(0.2)).await;
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::Other)
    );
    assert_eq!(call.rtp_packets_sent(), 0);
    // the scenario fails on a third INVITE
    phone.completed_async().await;
}

/// kamailio as a proxy on a free port of 127.0.0.1 that challenges INVITEs with 407 (realm
/// `umws.test`, user `umws`, password `s3cret`), record-routes and relays them to their
/// Request-URI; stopped (with its child processes) on drop.
struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// `None` (after saying why) when kamailio cannot be installed.
    async fn start() -> Option<Proxy> {
        let kamailio = match common::kamailio() {
            Ok(kamailio) => kamailio,
            Err(e) => {
                eprintln!("SKIPPED: kamailio is not available: {e}");
                return None;
            }
        };
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_udp_port();
        let config = include_str!("sip/kamailio.cfg")
            .replace("@PORT@", &port.to_string())
            .replace("@MODULES@", &kamailio.modules.display().to_string());
        let cfg = dir.path().join("kamailio.cfg");
        std::fs::write(&cfg, config).expect("kamailio.cfg");
        let log = dir.path().join("kamailio.log");
        let child = Command::new(&kamailio.exe)
            .arg("-f")
            .arg(&cfg)
            // in the foreground, logging to stderr, its runtime files in the temp dir
            .args(["-DD", "-E", "-m", "32", "-M", "8", "-Y"])
            .arg(dir.path())
            .arg("-w")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("kamailio starts");
        // ready when it answers an OPTIONS (with anything)
        let probe = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
        let options = format!(
            "OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKprobe\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\n\
             Call-ID: probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            local = probe.local_addr().expect("addr"),
        );
        let mut buf = [0u8; 4096];
        for _ in 0..100 {
            probe
                .send_to(options.as_bytes(), ("127.0.0.1", port))
                .await
                .expect("sent");
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(200), probe.recv(&mut buf)).await
            {
                return Some(Proxy {
                    child,
                    port,
                    log,
                    _dir: dir,
                });
            }
        }
        panic!(
            "kamailio does not answer; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What kamailio logged (a line per request it routed).
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM: the main process stops its children
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
}

#[tokio::test]
async fn a_407_from_a_real_proxy_is_answered_and_the_call_goes_through_it() {
    let Some(proxy) = Proxy::start().await else {
        return;
    };
    let phone = Sipp::builtin_uas();
    let agent = agent_with(|c| {
        c.outbound_proxy = Some(proxy.addr());
        c.credentials = Some(credentials("umws", "s3cret"));
    })
    .await;
    let call = call(&agent, &phone, tone(0.2)).await;
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    assert_eq!(call.rtp_packets_sent(), 10);
    let uri = phone.uri();
    let messages = phone.completed_async().await;
    // the INVITE came through the proxy (its Via and Record-Route), to the dialled URI
    let via = format!("Via: SIP/2.0/UDP 127.0.0.1:{};branch=", proxy.port);
    assert!(messages.contains(&via), "{messages}");
    assert!(messages.contains("Record-Route:"), "{messages}");
    assert!(
        messages.contains(&format!("INVITE {uri} SIP/2.0")),
        "{messages}"
    );
    let log = proxy.log();
    assert!(log.contains("umws-proxy: 407 for INVITE"), "{log}");
    assert!(log.contains("umws-proxy: relaying INVITE"), "{log}");
}

#[tokio::test]
async fn a_407_without_credentials_or_with_a_wrong_password_is_other() {
    let Some(proxy) = Proxy::start().await else {
        return;
    };
    for credentials in [None, Some(credentials("umws", "wrong"))] {
        let agent = agent_with(|c| {
            c.outbound_proxy = Some(proxy.addr());
            c.credentials = credentials.clone();
        })
        .await;
        // (never reached: the proxy refuses the INVITE)
        let target = format!("sip:phone@127.0.0.1:{}", free_udp_port());
        let call = call_uri(&agent, target, tone(0.2)).await;
        assert_eq!(
            finished(&call).await,
            status(CallState::Disconnected, EventCause::Other),
            "{credentials:?}"
        );
    }
    let log = proxy.log();
    assert!(!log.contains("umws-proxy: relaying INVITE"), "{log}");
}

#[tokio::test]
async fn hanging_up_while_ringing_through_the_proxy_cancels_at_the_phone() {
    let Some(proxy) = Proxy::start().await else {
        return;
    };
    let phone = Sipp::scenario("uas_no_answer.xml", &[], None);
    let agent = agent_with(|c| {
        c.outbound_proxy = Some(proxy.addr());
        c.credentials = Some(credentials("umws", "s3cret"));
    })
    .await;
    let call = agent
        .place_call(CallRequest {
            target: phone.uri(),
            from_user: "umws".into(),
            media: CallMedia::Play(tone(1.0)),
            ring_timeout: GUARD,
        })
        .await
        .expect("placed");
    // once the phone rings (the proxy relayed the authenticated INVITE), hang up
    let log_has = |text: &str| proxy.log().contains(text);
    for _ in 0..200 {
        if log_has("umws-proxy: relaying INVITE") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    call.hang_up();
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    // the scenario completes only when the CANCEL reached the phone
    let messages = phone.completed_async().await;
    assert!(messages.contains("CANCEL sip:"), "{messages}");
    assert!(
        proxy.log().contains("umws-proxy: CANCEL"),
        "{}",
        proxy.log()
    );
}

// ---------------------------------------------------------------------------------------------
// The phone's media: no-RTP timeout, maximum call length
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_rtp_from_the_phone_hangs_up() {
    let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("RTP socket");
    let rtp_port = rtp.local_addr().expect("addr").port();
    // the phone answers and never sends RTP
    let phone = Sipp::scenario(
        "uas_answer.xml",
        &[("@RTP_PORT@", &rtp_port.to_string()), ("@FORMATS@", "0")],
        None,
    );
    let agent = agent_with(|c| c.no_rtp_timeout = Duration::from_secs(1)).await;
    // 60 s of audio (3000 packets)
    let call = call(&agent, &phone, tone(60.0)).await;
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    // hung up with BYE long before the audio's end
    phone.completed_async().await;
    let sent = call.rtp_packets_sent();
    assert!(sent > 0 && sent < 3000, "{sent} packets sent");
}

#[tokio::test]
async fn rtp_from_the_phone_keeps_the_call_up() {
    // sipp's uas echoes our RTP from its media address: the phone sends RTP all along
    let phone = Sipp::builtin_uas();
    let agent = agent_with(|c| c.no_rtp_timeout = Duration::from_millis(500)).await;
    // 3 s of audio, six times the no-RTP timeout: all of it is played
    let call = call(&agent, &phone, tone(3.0)).await;
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    assert_eq!(call.rtp_packets_sent(), 150);
    phone.completed_async().await;
}

#[tokio::test]
async fn the_maximum_call_length_hangs_up() {
    let phone = Sipp::builtin_uas();
    let agent = agent_with(|c| c.max_call = Duration::from_secs(1)).await;
    let call = call(&agent, &phone, tone(60.0)).await;
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    // the uas scenario ends with our BYE
    phone.completed_async().await;
    let sent = call.rtp_packets_sent();
    assert!(sent > 0 && sent < 3000, "{sent} packets sent");
}

// ---------------------------------------------------------------------------------------------
// PlayOnPhoneGreeting: the greeting menu, with sipp as the phone pressing keys (RFC 4733) and
// speaking (PCMA) from its captures
// ---------------------------------------------------------------------------------------------

/// How long sipp waits after pressing 1 before speaking: the prompt before the tone, the tone
/// and a second.
fn before_the_tone() -> Duration {
    let samples = Prompt::RecordAfterTone.audio().len() + prompts::tone().len();
    Duration::from_millis(samples as u64 / 8 + 1000)
}

/// The length of the capture's speech, and a little more.
const SPEECH: Duration = Duration::from_millis(7300);

/// A greeting session whose saves arrive on the returned channel.
fn greeting_session(
    current: Option<Arc<[i16]>>,
) -> (
    GreetingSession,
    tokio::sync::mpsc::UnboundedReceiver<Arc<[i16]>>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let save: SaveGreeting = Arc::new(move |recording| {
        let tx = tx.clone();
        Box::pin(async move {
            tx.send(recording).map_err(|e| e.to_string())?;
            Ok(())
        })
    });
    (GreetingSession::new(current, save), rx)
}

/// Runs a greeting call with sipp doing `steps`; returns what was saved.
async fn greeting_call(steps: &[Step], current: Option<Arc<[i16]>>) -> Vec<Arc<[i16]>> {
    let phone = Sipp::scenario(
        "uas_greeting.xml",
        &[("@ACTIONS@", &actions(steps)), ("@PCAPS@", PCAPS)],
        None,
    );
    let (session, mut saved) = greeting_session(current);
    // (the phone sends RTP only while it speaks or presses keys)
    let agent = agent_with(|c| c.no_rtp_timeout = Duration::from_secs(25)).await;
    let call = agent
        .place_call(CallRequest {
            target: phone.uri(),
            from_user: "umws".into(),
            media: CallMedia::Greeting(session),
            ring_timeout: RING_TIMEOUT,
        })
        .await
        .expect("the call is placed");
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    // the scenario ends with our BYE
    phone.completed_async().await;
    let mut all = Vec::new();
    while let Ok(recording) = saved.try_recv() {
        all.push(recording);
    }
    all
}

#[tokio::test]
async fn a_greeting_is_recorded_ended_with_pound_and_saved_with_1() {
    let saved = greeting_call(
        &[
            Step::Pause(Duration::from_millis(500)),
            Step::Key('1'),
            Step::Pause(before_the_tone()),
            Step::Speak,
            Step::Pause(SPEECH),
            Step::Key('#'),
            Step::Pause(Duration::from_secs(1)),
            Step::Key('1'),
        ],
        None,
    )
    .await;
    assert_eq!(saved.len(), 1);
    // nearly all of the capture's 7 s of speech
    assert_recording_is_pcap_speech(&saved[0], 6.0);
}

#[tokio::test]
async fn pressing_2_records_again_and_the_second_recording_is_saved() {
    let saved = greeting_call(
        &[
            Step::Pause(Duration::from_millis(500)),
            Step::Key('1'),
            Step::Pause(before_the_tone()),
            Step::Speak,
            Step::Pause(SPEECH),
            Step::Key('#'),
            Step::Pause(Duration::from_secs(1)),
            Step::Key('2'),
            Step::Pause(before_the_tone()),
            // a shorter second take: # after 3 s (sipp stops speaking)
            Step::Speak,
            Step::Pause(Duration::from_secs(3)),
            Step::Key('#'),
            Step::Pause(Duration::from_secs(1)),
            Step::Key('1'),
        ],
        Some(tone(0.5)),
    )
    .await;
    assert_eq!(saved.len(), 1);
    let recording = &saved[0];
    assert!(recording.len() < 5 * 8000, "{} samples", recording.len());
    assert_recording_is_pcap_speech(recording, 2.0);
}

#[tokio::test]
async fn star_cancels_and_nothing_is_saved() {
    let saved = greeting_call(
        &[
            Step::Pause(Duration::from_millis(500)),
            Step::Key('1'),
            Step::Pause(before_the_tone()),
            Step::Speak,
            Step::Pause(SPEECH),
            Step::Key('#'),
            Step::Pause(Duration::from_secs(1)),
            Step::Key('*'),
        ],
        None,
    )
    .await;
    assert!(saved.is_empty());
}

#[tokio::test]
async fn silence_ends_the_recording() {
    let saved = greeting_call(
        &[
            Step::Pause(Duration::from_millis(500)),
            Step::Key('1'),
            Step::Pause(before_the_tone()),
            Step::Speak,
            // no # : after the speech, 5 s of silence end the recording and the review menu
            // starts; 1 saves
            Step::Pause(SPEECH + umws::telephony::SILENCE_ENDS_RECORDING + Duration::from_secs(2)),
            Step::Key('1'),
        ],
        None,
    )
    .await;
    assert_eq!(saved.len(), 1);
    // the speech, without the silence after it
    assert_recording_is_pcap_speech(&saved[0], 6.0);
}

// ---------------------------------------------------------------------------------------------
// Garbage on the RTP socket: the test is the phone's media (sipp only signals)
// ---------------------------------------------------------------------------------------------

fn rtp_packet(
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    marker: bool,
    payload: &[u8],
) -> Vec<u8> {
    rtp_types::RtpPacketBuilder::<&[u8], &[u8]>::new()
        .payload_type(payload_type)
        .sequence_number(sequence)
        .timestamp(timestamp)
        .ssrc(0x5eed)
        .marker_bit(marker)
        .payload(payload)
        .write_vec_unchecked()
}

/// The RFC 4733 packets of one key press (event code `event`), as a phone sends them.
fn key_packets(event: u8, sequence: &mut u16, timestamp: u32) -> Vec<Vec<u8>> {
    [
        (false, 160u16),
        (false, 320),
        (true, 480),
        (true, 480),
        (true, 480),
    ]
    .iter()
    .enumerate()
    .map(|(i, (end, duration))| {
        let d = duration.to_be_bytes();
        let flags = if *end { 0x8a } else { 0x0a };
        *sequence = sequence.wrapping_add(1);
        rtp_packet(
            101,
            *sequence,
            timestamp,
            i == 0,
            &[event, flags, d[0], d[1]],
        )
    })
    .collect()
}

/// Whether a packet of µ-law audio is the 1 kHz tone before a recording.
fn is_tone(payload: &[u8]) -> bool {
    let samples: Vec<i16> = payload
        .iter()
        .map(|&b| audio_codec_algorithms::decode_ulaw(b))
        .collect();
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / samples.len().max(1) as f64).sqrt();
    samples.len() == 160 && (36..=44).contains(&crossings) && rms > 3000.0
}

#[tokio::test]
async fn garbage_and_foreign_rtp_are_ignored_while_a_greeting_is_recorded() {
    let media = UdpSocket::bind("127.0.0.1:0").await.expect("RTP socket");
    let stranger = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("another socket");
    let phone = Sipp::scenario(
        "uas_answer.xml",
        &[
            (
                "@RTP_PORT@",
                &media.local_addr().expect("addr").port().to_string(),
            ),
            ("@FORMATS@", "0"),
        ],
        None,
    );
    let (session, mut saved) = greeting_session(None);
    let agent = agent().await;
    let call = agent
        .place_call(CallRequest {
            target: phone.uri(),
            from_user: "umws".into(),
            media: CallMedia::Greeting(session),
            ring_timeout: RING_TIMEOUT,
        })
        .await
        .expect("the call is placed");
    // our RTP's source is where the phone's RTP goes
    let mut buf = [0u8; 2048];
    let (_, ours) = tokio::time::timeout(GUARD, media.recv_from(&mut buf))
        .await
        .expect("RTP arrives")
        .expect("RTP");
    let mut seq = 1000u16;
    let send_all = |socket: &'static str, packets: Vec<Vec<u8>>| {
        let socket = if socket == "phone" { &media } else { &stranger };
        async move {
            for p in packets {
                socket.send_to(&p, ours).await.expect("sent");
            }
        }
    };
    // a stranger presses * (it would cancel) and # (it would end the recording)
    let mut stranger_seq = 1u16;
    send_all("stranger", key_packets(10, &mut stranger_seq, 10)).await;
    // garbage from the phone's address: not RTP, broken RTP, bad telephone-events
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x80],
        vec![0x80; 11],
        vec![0xff; 40],
        // 15 CSRCs announced, none there
        vec![0x8f, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1],
        // padding bit with a padding length past the packet
        vec![0xa0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xff],
        // extension bit with a length past the packet
        vec![0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0xff, 0xff],
        rtp_packet(101, 1, 1, true, &[]),
        rtp_packet(101, 2, 1, true, &[1]),
        rtp_packet(101, 3, 1, true, &[1, 0x80, 0]),
        rtp_packet(101, 4, 2, true, &[200, 0x80, 0, 160]),
        rtp_packet(101, 5, 3, true, &[12, 0x80, 0, 160]),
        rtp_packet(8, 6, 4, false, &[]),
        rtp_packet(99, 7, 5, false, &[1, 2, 3, 4, 5]),
    ];
    // and random datagrams that are not RTP version 2
    for i in 0..200u32 {
        let len = (i as usize * 7) % 300;
        let mut datagram: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j * 17) as u8).collect();
        if let Some(first) = datagram.first_mut() {
            *first &= 0x3f;
        }
        garbage.push(datagram);
    }
    send_all("phone", garbage.clone()).await;
    // 1: record
    send_all("phone", key_packets(1, &mut seq, 20_000)).await;
    // wait for the tone's end: the recording starts
    let mut tone_packets = 0;
    loop {
        let n = tokio::time::timeout(GUARD, media.recv(&mut buf))
            .await
            .expect("RTP keeps coming")
            .expect("RTP");
        let packet = rtp_types::RtpPacket::parse(&buf[..n]).expect("our RTP parses");
        if is_tone(packet.payload()) {
            tone_packets += 1;
        } else if tone_packets >= 15 {
            break;
        } else {
            tone_packets = 0;
        }
    }
    // one second of 440 Hz from the phone, garbage and a stranger's noise in between
    let speech = tone(1.0);
    let mut encoded = Vec::new();
    for (i, chunk) in speech.chunks(160).enumerate() {
        let payload: Vec<u8> = chunk
            .iter()
            .map(|&s| audio_codec_algorithms::encode_ulaw(s))
            .collect();
        seq = seq.wrapping_add(1);
        encoded.push(rtp_packet(0, seq, 40_000 + 160 * i as u32, false, &payload));
        send_all(
            "phone",
            vec![encoded[i].clone(), garbage[i % garbage.len()].clone()],
        )
        .await;
        send_all(
            "stranger",
            vec![rtp_packet(0, i as u16, 0, false, &[0x00; 160])],
        )
        .await;
    }
    send_all("stranger", key_packets(11, &mut stranger_seq, 30)).await;
    // #: end of the recording; 1: save
    send_all("phone", key_packets(11, &mut seq, 50_000)).await;
    send_all("phone", key_packets(1, &mut seq, 60_000)).await;
    let recording = tokio::time::timeout(GUARD, saved.recv())
        .await
        .expect("a recording is saved")
        .expect("the saved recording");
    // exactly the phone's audio, through µ-law
    let expected: Vec<i16> = speech
        .iter()
        .map(|&s| audio_codec_algorithms::decode_ulaw(audio_codec_algorithms::encode_ulaw(s)))
        .collect();
    assert_eq!(recording.len(), expected.len());
    assert!(
        recording.iter().eq(expected.iter()),
        "the recording is not the phone's audio"
    );
    // then "saved", goodbye and BYE
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    phone.completed_async().await;
}

// ---------------------------------------------------------------------------------------------
// The RTP port range
// ---------------------------------------------------------------------------------------------

/// A free even UDP port of 127.0.0.1 (closed again for the agent to take).
fn free_even_port() -> u16 {
    loop {
        let port = free_udp_port();
        if port % 2 == 0 && port < u16::MAX - 1 {
            return port;
        }
    }
}

#[tokio::test]
async fn rtp_comes_from_an_even_port_of_the_configured_range() {
    let port = free_even_port();
    let media = UdpSocket::bind("127.0.0.1:0").await.expect("RTP socket");
    let phone = Sipp::scenario(
        "uas_answer.xml",
        &[
            (
                "@RTP_PORT@",
                &media.local_addr().expect("addr").port().to_string(),
            ),
            ("@FORMATS@", "0"),
        ],
        None,
    );
    // an odd start: the even port after it is the only one
    let agent = agent_with(|c| c.rtp_ports = Some(port - 1..=port + 1)).await;
    let call = call(&agent, &phone, tone(0.2)).await;
    let mut buf = [0u8; 2048];
    let (_, from) = tokio::time::timeout(GUARD, media.recv_from(&mut buf))
        .await
        .expect("RTP arrives")
        .expect("RTP");
    assert_eq!(from.port(), port);
    assert_eq!(
        finished(&call).await,
        status(CallState::Disconnected, EventCause::None)
    );
    phone.completed_async().await;
}

#[tokio::test]
async fn a_taken_rtp_range_refuses_the_call() {
    let port = free_even_port();
    let _taken = std::net::UdpSocket::bind(("127.0.0.1", port)).expect("the port");
    let agent = agent_with(|c| c.rtp_ports = Some(port..=port + 1)).await;
    let placed = agent
        .place_call(CallRequest {
            target: "sip:phone@127.0.0.1:9".into(),
            from_user: "umws".into(),
            media: CallMedia::Play(tone(0.1)),
            ring_timeout: RING_TIMEOUT,
        })
        .await;
    assert!(
        matches!(placed, Err(umws::telephony::TelephonyError::NoRtpPort(_))),
        "{:?}",
        placed.err()
    );
}
