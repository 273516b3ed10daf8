//! Subscriber access by phone against a real `umws serve`: sipp calls the SIP address as the
//! caller, keys in extension and PIN (RFC 4733 from sipp's captures), and the test hears what
//! umws says on its own RTP socket (named in sipp's SDP offer), decoded from µ-law.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::sip::{actions, tone_wav, Sipp, Step};
use common::Server;
use umws::subscriber::recordings;
use umws::subscriber::speech::{self, Word};
use umws::subscriber::{Prompt, Say};

/// A guard against a hung test (never an assertion on speed).
const GUARD: Duration = common::sip::SIPP_TIMEOUT;

const EXTENSION: &str = "4712";
const PIN: &str = "480151";

/// sipp calling umws as `caller`, keying in `keys` (`_`: a second's pause), then listening
/// `hold` and hanging up (`tests/sip/access/caller.xml`, offering PCMU unless `@PT@` and
/// `@CODEC@` are filled otherwise), or waiting up to `hold` for umws to hang up
/// (`hung_up.xml`).
fn dial_in(
    server: &Server,
    scenario: &str,
    caller: &str,
    rtp: &UdpSocket,
    keys: &str,
    hold: Duration,
) -> Sipp {
    let fill = [("@CALLER@", caller), ("@CALLED@", "voicemail")];
    dial_in_with(server, scenario, &fill, rtp, &key_steps(keys), hold)
}

/// sipp with `scenario`, its placeholders filled with `fill` and the call's, taking
/// `steps` after a moment.
fn dial_in_with(
    server: &Server,
    scenario: &str,
    fill: &[(&str, &str)],
    rtp: &UdpSocket,
    steps: &[Step],
    hold: Duration,
) -> Sipp {
    let sip = server.sip.expect("calls on");
    let label: String = steps
        .iter()
        .map(|step| match step {
            Step::Key(k) => *k,
            Step::Speak => '~',
            Step::Pause(_) => '_',
        })
        .collect();
    let mut all = vec![Step::Pause(Duration::from_millis(300))];
    all.extend(steps.iter().cloned());
    let rtp_port = rtp.local_addr().expect("RTP").port().to_string();
    let keys = actions(&all);
    let hold = hold.as_millis().to_string();
    let mut fill = fill.to_vec();
    fill.extend([
        ("@PT@", "0"),
        ("@CODEC@", "PCMU"),
        ("@BYE_CSEQ@", "2"),
        ("@RTP_PORT@", &rtp_port),
        ("@KEYS@", &keys),
        ("@HOLD_MS@", &hold),
    ]);
    Sipp::scenario(&format!("access/{scenario}"), &fill, Some(sip)).labelled(&label)
}

/// The steps of typing `keys`, where `_` is a second's pause: time for a prompt to be heard,
/// as keys typed ahead skip prompts.
fn key_steps(keys: &str) -> Vec<Step> {
    keys.chars()
        .map(|k| match k {
            '_' => Step::Pause(Duration::from_secs(1)),
            key => Step::Key(key),
        })
        .collect()
}

/// A call to `called` that umws answers `status` (`refused.xml`).
fn refused(server: &Server, called: &str, status: &str) {
    let rtp = rtp_socket();
    let fill = [
        ("@CALLER@", "bob"),
        ("@CALLED@", called),
        ("@STATUS@", status),
    ];
    dial_in_with(server, "refused.xml", &fill, &rtp, &[], Duration::ZERO).completed();
}

/// The test's RTP socket (what umws says arrives here).
fn rtp_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("RTP socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    socket
}

/// Everything umws said until it stopped sending (PCMU), in sequence order, decoded.
fn heard(socket: &UdpSocket) -> Vec<i16> {
    let mut packets: Vec<(u16, Vec<i16>)> = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + GUARD;
    // (the first packet may take a while: the caller keys in first)
    let mut started = false;
    while Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(n) => {
                started = true;
                let packet = rtp_types::RtpPacket::parse(&buf[..n]).expect("RTP from umws");
                assert_eq!(packet.payload_type(), 0, "PCMU, as offered first");
                let samples = packet
                    .payload()
                    .iter()
                    .map(|&b| audio_codec_algorithms::decode_ulaw(b))
                    .collect();
                packets.push((packet.sequence_number(), samples));
            }
            Err(_) if started => break,
            Err(_) => {}
        }
    }
    // (sequence numbers may wrap once in a call this short)
    let first = packets.first().map_or(0, |p| p.0);
    packets.sort_by_key(|(seq, _)| seq.wrapping_sub(first));
    packets.into_iter().flat_map(|(_, s)| s).collect()
}

/// `audio` as it arrives over PCMU.
fn over_pcmu(audio: &[i16]) -> Vec<i16> {
    audio
        .iter()
        .map(|&s| audio_codec_algorithms::decode_ulaw(audio_codec_algorithms::encode_ulaw(s)))
        .collect()
}

/// Whether `word` was said (its recording arrived sample for sample).
fn said(heard: &[i16], word: Word) -> bool {
    contains(heard, &over_pcmu(&recordings::audio(word)))
}

/// Asserts that `prompt` was said (naming the prompts that were, when it was not).
fn assert_said(heard: &[i16], prompt: Prompt) {
    assert!(
        said(heard, Word::Prompt(prompt)),
        "{prompt:?} was not said; these were: {:?}",
        prompts(heard)
    );
}

/// The prompts that were said, for failure messages.
fn prompts(heard: &[i16]) -> Vec<Prompt> {
    Prompt::ALL
        .iter()
        .copied()
        .filter(|p| said(heard, Word::Prompt(*p)))
        .collect()
}

/// Whether `words` were said one after the other (each after the one before).
fn said_in_order(heard: &[i16], words: &[Word]) -> bool {
    let mut from = 0;
    for word in words {
        let audio = over_pcmu(&recordings::audio(*word));
        match heard[from..].windows(audio.len()).position(|w| w == audio) {
            Some(at) => from += at + audio.len(),
            None => return false,
        }
    }
    true
}

fn contains(haystack: &[i16], needle: &[i16]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn umws(server: &Server, args: &[&str]) -> std::process::Output {
    let data = server.data_dir().to_str().expect("UTF-8").to_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--data", &data]);
    common::run_umws(&all)
}

/// A server with the mailbox `ann` (extension 4712) whose PIN is [`PIN`].
fn server_with_ann() -> Server {
    let server = Server::start();
    add_with_pin(&server, "ann", EXTENSION);
    server
}

/// [`server_with_ann`] on a config file whose `[telephony]` table is `table`.
fn server_with_ann_and(table: &str) -> (Server, tempfile::TempDir) {
    let (server, dir) = server_with(table);
    add_with_pin(&server, "ann", EXTENSION);
    (server, dir)
}

/// A server on a config file whose `[telephony]` table is `table` (in the directory
/// returned).
fn server_with(table: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("umws.toml");
    std::fs::write(&config, format!("[telephony]\n{table}\n")).expect("config");
    let server = Server::start_with(&["--config", config.to_str().expect("UTF-8")]);
    (server, dir)
}

/// Adds the mailbox `user` (password `pw`) with `extension`, resets its PIN and changes the
/// mailed one to [`PIN`].
fn add_with_pin(server: &Server, user: &str, extension: &str) {
    server.add_mailbox(user, "pw", &["--extension", extension]);
    assert_eq!(
        common::try_reset_pin(&server.base, user, "pw"),
        common::Sent::Status(200)
    );
    let mailed = common::pin_in_mail(server.mails(user).last().expect("a PIN mail"));
    let out = umws(
        server,
        &["pin", "set", "--user", user, "--old", &mailed, "--new", PIN],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deposits a tone of `seconds` for ann; returns its audio as stored.
fn deposit(server: &Server, from: &str, seconds: f64) -> Vec<i16> {
    let wav = server.data_dir().join("tone.wav");
    std::fs::write(&wav, tone_wav(seconds)).expect("the WAV");
    let out = umws(
        server,
        &[
            "voicemail",
            "deposit",
            "--user",
            "ann",
            "--from",
            from,
            "--wav",
            wav.to_str().expect("UTF-8"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry_id = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();
    let stored = server.data_dir().join("stored.wav");
    let out = umws(
        server,
        &[
            "voicemail",
            "get",
            "--user",
            "ann",
            "--entry-id",
            &entry_id,
            "--out",
            stored.to_str().expect("UTF-8"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    umws::audio::decode_wav(&std::fs::read(&stored).expect("WAV"))
        .expect("a WAV")
        .samples()
        .to_vec()
}

fn list(server: &Server) -> String {
    let out = umws(server, &["voicemail", "list", "--user", "ann"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Signed in with the right PIN, the caller hears the count of new messages, then the message:
/// who it is from, when it came (in the configured time zone) and its audio.
#[test]
fn the_right_pin_hears_the_new_message_count_and_the_message() {
    let (server, _config) = server_with_ann_and(r#"time_zone = "Asia/Kolkata""#);
    let message = deposit(&server, "100", 1.0);
    // When it came, as said in Kolkata (UTC+5:30), which UTC would say otherwise.
    let received: jiff::Timestamp = list(&server)
        .split('\t')
        .find_map(|field| field.strip_prefix("received="))
        .expect("the time received")
        .parse()
        .expect("a time");
    let when = |zone: &jiff::tz::TimeZone| {
        speech::words(&Say::Time(received.as_second()), zone).expect("words")
    };
    let kolkata = when(&jiff::tz::TimeZone::get("Asia/Kolkata").expect("a zone"));
    assert_ne!(kolkata, when(&jiff::tz::TimeZone::UTC));
    assert!(list(&server).trim_end().ends_with("\tnew"));
    let rtp = rtp_socket();
    let caller = dial_in(
        &server,
        "caller.xml",
        "alice",
        &rtp,
        &format!("{EXTENSION}#{PIN}#"),
        Duration::from_secs(14),
    );
    let heard = heard(&rtp);
    caller.completed();
    assert!(said(&heard, Word::Prompt(Prompt::YouHave)), "the count");
    assert!(said(&heard, Word::Small(1)), "one");
    assert!(
        said(&heard, Word::Prompt(Prompt::NewMessage)),
        "new message"
    );
    assert_said(&heard, Prompt::MessageFrom);
    assert!(
        said_in_order(&heard, &kolkata),
        "the time in Kolkata: {kolkata:?}"
    );
    assert!(
        contains(&heard, &over_pcmu(&message)),
        "the message's audio arrived"
    );
    assert!(!said(&heard, Word::Prompt(Prompt::WrongPin)));
    // Heard by phone: no longer new.
    assert!(list(&server).trim_end().ends_with("\theard"));
}

/// Runs one call that umws ends (`hung_up.xml`); returns what was heard.
fn call_until_hung_up(server: &Server, keys: &str) -> Vec<i16> {
    let fill = [("@CALLER@", "alice"), ("@CALLED@", "voicemail")];
    let steps = key_steps(keys);
    hear_call(
        server,
        "hung_up.xml",
        &fill,
        &steps,
        Duration::from_secs(60),
    )
}

/// Runs one call that the caller ends after `hold`; returns what was heard.
fn call_and_hang_up(server: &Server, keys: &str, hold: Duration) -> Vec<i16> {
    let fill = [("@CALLER@", "alice"), ("@CALLED@", "voicemail")];
    hear_call(server, "caller.xml", &fill, &key_steps(keys), hold)
}

/// Runs one call of `scenario` ([`dial_in_with`]) to its end; returns what was heard.
fn hear_call(
    server: &Server,
    scenario: &str,
    fill: &[(&str, &str)],
    steps: &[Step],
    hold: Duration,
) -> Vec<i16> {
    let rtp = rtp_socket();
    let caller = dial_in_with(server, scenario, fill, &rtp, steps, hold);
    let heard = heard(&rtp);
    caller.completed();
    heard
}

fn pin_check(server: &Server, pin: &str) -> i32 {
    common::pin_check(server.data_dir(), "ann", pin)
}

#[test]
fn five_wrong_pins_mail_a_new_pin_which_signs_in_and_must_be_changed() {
    let server = server_with_ann();
    let mails = server.mails("ann").len();
    // Three wrong PINs end the call (umws says so and hangs up).
    let heard = call_until_hung_up(&server, &format!("{EXTENSION}#135792#246801#975310#"));
    assert_said(&heard, Prompt::WrongPin);
    assert_said(&heard, Prompt::TooManyTries);
    assert_said(&heard, Prompt::Goodbye);
    assert_eq!(server.mails("ann").len(), mails, "no reset yet");
    // Two more in a second call: the 5th failure resets the PIN and mails it.
    let heard = call_and_hang_up(
        &server,
        &format!("{EXTENSION}#135792#246801#"),
        Duration::from_secs(8),
    );
    assert_said(&heard, Prompt::PinResetMailed);
    let all = server.mails("ann");
    assert_eq!(all.len(), mails + 1, "one reset mail");
    let mailed = common::pin_in_mail(all.last().expect("the reset mail"));
    assert_eq!(pin_check(&server, PIN), 1, "the old PIN is gone");
    // The mailed PIN signs in and forces a change: the new PIN twice, then `*` ends.
    let heard = call_until_hung_up(
        &server,
        &format!("{EXTENSION}#{mailed}#____258036#258036#_____*"),
    );
    assert_said(&heard, Prompt::MustChangePin);
    assert_said(&heard, Prompt::PinChanged);
    assert_eq!(pin_check(&server, "258036"), 0, "the new PIN");
    assert_eq!(pin_check(&server, &mailed), 1, "the mailed PIN no longer");
    // No PIN in the server's log.
    let log = server.log();
    for pin in [PIN, "135792", "246801", "975310", &mailed, "258036"] {
        assert!(!log.contains(pin), "a PIN in the log");
    }
}

#[test]
fn after_a_reset_pin_the_mailed_pin_forces_a_change_refused_by_the_policy_first() {
    let server = server_with_ann();
    assert_eq!(
        common::try_reset_pin(&server.base, "ann", "pw"),
        common::Sent::Status(200)
    );
    let mailed = common::pin_in_mail(server.mails("ann").last().expect("a PIN mail"));
    // 123456 breaks the common-pattern rule; 4712... starts with the extension; then a good one.
    let heard = call_until_hung_up(
        &server,
        &format!("{EXTENSION}#{mailed}#____123456#123456#_______471290#471290#______369258#369258#_____*"),
    );
    assert_said(&heard, Prompt::MustChangePin);
    assert_said(&heard, Prompt::PinCommonPattern);
    assert_said(&heard, Prompt::PinStartsWithExtension);
    assert_said(&heard, Prompt::PinChanged);
    assert_eq!(pin_check(&server, "369258"), 0);
    assert_eq!(pin_check(&server, &mailed), 1);
}

#[test]
fn max_logon_attempts_across_calls_lock_out_until_unlocked() {
    let server = server_with_ann();
    let out = umws(
        &server,
        &[
            "policy",
            "set",
            "--name",
            "Default",
            "--logon-failures-before-pin-reset",
            "Unlimited",
            "--max-logon-attempts",
            "4",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    call_until_hung_up(&server, &format!("{EXTENSION}#135792#246801#975310#"));
    // The 4th failure, in another call, locks the mailbox: umws says so and hangs up.
    let heard = call_until_hung_up(&server, &format!("{EXTENSION}#135792#"));
    assert_said(&heard, Prompt::LockedOut);
    // Even the right PIN is refused now.
    let heard = call_until_hung_up(&server, &format!("{EXTENSION}#{PIN}#"));
    assert_said(&heard, Prompt::LockedOut);
    assert!(!said(&heard, Word::Prompt(Prompt::YouHave)));
    let out = umws(&server, &["mailbox", "unlock", "--user", "ann"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heard = call_until_hung_up(&server, &format!("{EXTENSION}#{PIN}#_____*"));
    assert_said(&heard, Prompt::YouHave);
    assert!(!said(&heard, Word::Prompt(Prompt::LockedOut)));
}

#[test]
fn a_message_deleted_by_phone_is_gone_from_the_listing() {
    let server = server_with_ann();
    deposit(&server, "100", 1.0);
    assert_eq!(list(&server).lines().count(), 1);
    // (keys typed ahead skip the prompts: 7 deletes the only message, then `*` at the main
    // menu ends the call)
    let heard = call_until_hung_up(&server, &format!("{EXTENSION}#{PIN}#7____*"));
    assert_said(&heard, Prompt::MessageDeleted);
    assert_eq!(list(&server), "", "deleted");
}

#[test]
fn hanging_up_mid_pin_or_mid_message_leaves_everything_consistent() {
    let server = server_with_ann();
    let message = deposit(&server, "100", 5.0);
    // Mid-PIN: nothing counted.
    call_and_hang_up(&server, &format!("{EXTENSION}#48"), Duration::from_secs(1));
    // Mid-message (the count and the header take a few seconds; hang up as the tone plays):
    // the message stays new.
    let heard = call_and_hang_up(
        &server,
        &format!("{EXTENSION}#{PIN}#"),
        Duration::from_millis(7500),
    );
    assert_said(&heard, Prompt::YouHave);
    assert!(
        !contains(&heard, &over_pcmu(&message)),
        "not the whole message"
    );
    assert!(list(&server).trim_end().ends_with("\tnew"));
    // The mailbox was not charged a failure: the PIN still signs in (and clears nothing).
    assert_eq!(pin_check(&server, PIN), 0);
    let mailbox = umws(&server, &["mailbox", "list"]);
    assert!(mailbox.status.success());
    // Garbage keys (more digits than an extension has) get prompts, not a crash; the next
    // call is served.
    let heard = call_and_hang_up(
        &server,
        "00000000000000000000000000000",
        // (the last 9 digits are taken as an extension after the inter-key wait, 4 s)
        Duration::from_secs(7),
    );
    assert_said(&heard, Prompt::UnknownExtension);
    let heard = call_until_hung_up(&server, &format!("{EXTENSION}#{PIN}#_____*"));
    assert_said(&heard, Prompt::YouHave);
}

#[test]
fn simultaneous_callers_are_served_up_to_the_limit_and_more_are_busy() {
    const CALLS: usize = 6;
    let (server, _config) = server_with(&format!("max_calls = {CALLS}"));
    // One mailbox per caller (checks of one mailbox's PIN are one at a time, as HTTP logons).
    let extensions: Vec<String> = (0..CALLS).map(|i| format!("50{i}")).collect();
    for (i, extension) in extensions.iter().enumerate() {
        add_with_pin(&server, &format!("user{i}"), extension);
    }
    let calls: Vec<(UdpSocket, Sipp)> = extensions
        .iter()
        .map(|extension| {
            let rtp = rtp_socket();
            let caller = dial_in(
                &server,
                "caller.xml",
                "alice",
                &rtp,
                &format!("{extension}#{PIN}#"),
                Duration::from_secs(12),
            );
            (rtp, caller)
        })
        .collect();
    // While they are on the line, one more is busy.
    std::thread::sleep(Duration::from_secs(3));
    refused(&server, "voicemail", "486");
    for (rtp, caller) in calls {
        let heard = heard(&rtp);
        caller.completed();
        assert_said(&heard, Prompt::YouHave);
    }
    // And once they ended, a call is answered again.
    let heard = call_until_hung_up(&server, &format!("{}#{PIN}#_____*", extensions[0]));
    assert_said(&heard, Prompt::YouHave);
}

#[test]
fn subscriber_access_can_be_restricted_to_its_numbers() {
    let (server, _config) = server_with(r#"subscriber_access = ["4000", "+14255550199"]"#);
    refused(&server, "voicemail", "404");
    refused(&server, "4001", "404");
    let fill = [("@CALLER@", "alice"), ("@CALLED@", "+14255550199")];
    let heard = hear_call(&server, "caller.xml", &fill, &[], Duration::from_secs(3));
    assert_said(&heard, Prompt::Welcome);
}

#[test]
fn a_caller_id_that_is_an_extension_is_asked_only_for_the_pin() {
    let server = server_with_ann();
    let rtp = rtp_socket();
    let caller = dial_in(
        &server,
        "hung_up.xml",
        EXTENSION,
        &rtp,
        &format!("{PIN}#_____*"),
        Duration::from_secs(60),
    );
    let heard = heard(&rtp);
    caller.completed();
    // (had the extension been asked for, the PIN would have been taken for one, and refused)
    assert_said(&heard, Prompt::YouHave);
}

/// The greeting menu reached from the main menu (3, then 2 for the out-of-office greeting)
/// records what the caller says (sipp speaking from its A-law capture) and saves it in the
/// stored one's place; the normal greeting stays as it was (none).
#[test]
fn a_greeting_recorded_from_the_main_menu_is_stored() {
    let server = server_with_ann();
    let rtp = rtp_socket();
    let before_the_tone = Duration::from_millis(
        (umws::telephony::prompts::Prompt::RecordAfterTone
            .audio()
            .len()
            + umws::telephony::prompts::tone().len()) as u64
            / 8
            + 1000,
    );
    let mut steps = key_steps(&format!("{EXTENSION}#{PIN}#_3_2_1"));
    steps.extend([
        Step::Pause(before_the_tone),
        Step::Speak,
        Step::Pause(Duration::from_millis(7300)),
        Step::Key('#'),
        Step::Pause(Duration::from_secs(1)),
        Step::Key('1'),
    ]);
    let fill = [
        ("@CALLER@", "alice"),
        ("@CALLED@", "voicemail"),
        ("@PT@", "8"),
        ("@CODEC@", "PCMA"),
    ];
    let caller = dial_in_with(
        &server,
        "caller.xml",
        &fill,
        &rtp,
        &steps,
        Duration::from_secs(4),
    );
    caller.completed();
    let out = server.data_dir().join("greeting.wav");
    let get = |kind: &str| {
        umws(
            &server,
            &[
                "greeting",
                "get",
                "--user",
                "ann",
                "--type",
                kind,
                "--out",
                out.to_str().expect("UTF-8"),
            ],
        )
    };
    let got = get("oof");
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let wav = std::fs::read(&out).expect("the greeting");
    let audio = umws::audio::decode_wav(&wav).expect("a WAV");
    common::sip::assert_recording_is_pcap_speech(audio.samples(), 6.0);
    assert!(!get("normal").status.success(), "no normal greeting");
}

/// The INFO requests of a caller in the dialog of `caller.xml` that send `keys` as
/// `application/dtmf-relay` (each answered 200), then one of another type (answered 415), with
/// CSeqs from 2; the CSeq left for the BYE.
fn info_keys(keys: &str) -> (String, u32) {
    let info = |cseq: u32, content_type: &str, body: &str, answer: u16| {
        format!(
            "  <send>\n    <![CDATA[\n\n      INFO sip:voicemail@[remote_ip]:[remote_port] SIP/2.0\n      \
             Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n      \
             From: <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n      \
             To: <sip:voicemail@[remote_ip]:[remote_port]>[peer_tag_param]\n      \
             Call-ID: [call_id]\n      CSeq: {cseq} INFO\n      Max-Forwards: 70\n      \
             Content-Type: {content_type}\n      Content-Length: [len]\n\n      {body}\n\n    \
             ]]>\n  </send>\n  <recv response=\"{answer}\"/>\n  <pause milliseconds=\"300\"/>\n"
        )
    };
    let mut cseq = 2;
    let mut xml = String::from("  <pause milliseconds=\"300\"/>\n");
    for key in keys.chars() {
        xml.push_str(&info(
            cseq,
            "application/dtmf-relay",
            &format!("Signal={key}\r\nDuration=160"),
            200,
        ));
        cseq += 1;
    }
    xml.push_str(&info(
        cseq,
        "application/media_control+xml",
        "<media_control/>",
        415,
    ));
    (xml, cseq + 1)
}

/// Keys sent in SIP INFO requests (`application/dtmf-relay`, as many phones send them) sign
/// in as RFC 4733 events do; an INFO of another type is refused (415) and changes nothing.
#[test]
fn keys_sent_by_sip_info_sign_in() {
    let server = server_with_ann();
    let (keys, bye) = info_keys(&format!("{EXTENSION}#{PIN}#"));
    let bye = bye.to_string();
    let fill = [
        ("@CALLER@", "alice"),
        ("@CALLED@", "voicemail"),
        ("@KEYS@", keys.as_str()),
        ("@BYE_CSEQ@", bye.as_str()),
    ];
    let heard = hear_call(&server, "caller.xml", &fill, &[], Duration::from_secs(6));
    assert!(
        said(&heard, Word::Prompt(Prompt::YouHave)),
        "signed in: {:?}",
        prompts(&heard)
    );
    assert!(!said(&heard, Word::Prompt(Prompt::WrongPin)));
    // The keys are the PIN: no INFO body in the server's log (which is at trace level).
    let log = server.log();
    assert!(!log.contains("Signal="), "an INFO body in the log");
}

/// Keys typed ahead skip prompts, but not a report of what happened: signing in, choosing PIN
/// change and keying the new PIN twice and `*` all at once still says "Your PIN has been
/// changed" (and the keys after it still count: the call ends with goodbye).
#[test]
fn keys_typed_ahead_skip_prompts_but_not_a_report() {
    let server = server_with_ann();
    let heard = call_until_hung_up(&server, &format!("{EXTENSION}#{PIN}#4369258#369258#*"));
    assert_said(&heard, Prompt::PinChanged);
    assert!(
        !said(&heard, Word::Prompt(Prompt::MainMenu)),
        "typed ahead: {:?}",
        prompts(&heard)
    );
    assert!(said(&heard, Word::Prompt(Prompt::Goodbye)));
    assert_eq!(pin_check(&server, "369258"), 0);
}
