//! sipp for one call of a scenario ([`Sipp`]), sipp's captures (Debian's sip-tester) and the
//! actions of a scenario that presses keys (RFC 4733) and speaks (PCMA) from them.

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long sipp may take over its one call (its `-timeout`), and a little more for a test
/// waiting for it to end: a guard against a hung test, never an assertion on speed.
pub const SIPP_TIMEOUT: Duration = Duration::from_secs(80);

/// sipp running one call on 127.0.0.1, with its logs in a directory of its own; killed on
/// drop. Its SIP port, control port (`-cp`) and media port (`-mp`, `[media_port]` in
/// scenarios) are free ones.
pub struct Sipp {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// What runs, for failure messages.
    what: String,
}

impl Sipp {
    /// The scenario `tests/sip/NAME` with each placeholder of `fill` (`@KEY@`) replaced; it
    /// calls `remote` when given (a UAC), else waits for a call (a UAS).
    pub fn scenario(name: &str, fill: &[(&str, &str)], remote: Option<SocketAddr>) -> Sipp {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sip")
            .join(name);
        let mut text = std::fs::read_to_string(&path).expect("the scenario");
        for (key, value) in fill {
            text = text.replace(key, value);
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join(path.file_name().expect("a file name"));
        std::fs::write(&file, text).expect("the filled scenario");
        let mut args = vec!["-sf".to_owned(), file.display().to_string()];
        args.extend(remote.map(|r| r.to_string()));
        Sipp::spawn(&args, dir, name)
    }

    /// A phone that answers (`calls/answer.xml`), names `rtp`'s port in its SDP, and waits
    /// for our BYE.
    pub fn answering(rtp: &std::net::UdpSocket) -> Sipp {
        let port = rtp.local_addr().expect("RTP address").port().to_string();
        Sipp::scenario("calls/answer.xml", &[("@RTP_PORT@", &port)], None)
    }

    /// A phone that rings until it is cancelled (`calls/ring.xml`).
    pub fn ringing() -> Sipp {
        Sipp::scenario("calls/ring.xml", &[], None)
    }

    /// A phone that rings, then answers `status`, e.g. `486 Busy Here` (`calls/reject.xml`).
    pub fn rejecting(status: &str) -> Sipp {
        Sipp::scenario("calls/reject.xml", &[("@STATUS@", status)], None)
    }

    /// sipp's built-in UAS (`-sn uas`), echoing RTP (`-rtp_echo`).
    pub fn builtin_uas() -> Sipp {
        let dir = tempfile::tempdir().expect("a temp dir");
        let args = ["-sn", "uas", "-rtp_echo"].map(str::to_owned);
        Sipp::spawn(&args, dir, "-sn uas")
    }

    fn spawn(args: &[String], dir: tempfile::TempDir, what: &str) -> Sipp {
        let port = free_udp_port();
        let child = Command::new(super::sipp())
            .args(args)
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg("-cp")
            .arg(free_udp_port().to_string())
            .arg("-mp")
            .arg(free_udp_port().to_string())
            .args(["-m", "1", "-nostdin", "-timeout"])
            .arg(format!("{}s", SIPP_TIMEOUT.as_secs()))
            .args(["-timeout_error", "-trace_err", "-error_file"])
            .arg(dir.path().join("errors.log"))
            .args(["-trace_msg", "-message_file"])
            .arg(dir.path().join("messages.log"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp starts");
        Sipp {
            child,
            port,
            dir,
            what: what.to_owned(),
        }
    }

    /// Its SIP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its SIP URI, `sip:phone@127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("sip:phone@127.0.0.1:{}", self.port)
    }

    /// Notes `label` (e.g. the keys it sends) in its failure messages.
    pub fn labelled(mut self, label: &str) -> Sipp {
        self.what = format!("{} {label}", self.what);
        self
    }

    /// Its exit status once it ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("sipp's status")
    }

    /// Waits for sipp to end, asserts that its call went through the whole scenario, and
    /// returns the SIP messages it received and sent.
    pub fn completed(mut self) -> String {
        let deadline = Instant::now() + SIPP_TIMEOUT + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.try_wait() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "sipp ({}) did not end",
                self.what
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.check(status)
    }

    /// [`completed`](Self::completed) for async tests (sleeping on tokio's timer).
    pub async fn completed_async(mut self) -> String {
        let deadline = Instant::now() + SIPP_TIMEOUT + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.try_wait() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "sipp ({}) did not end",
                self.what
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.check(status)
    }

    fn check(&self, status: ExitStatus) -> String {
        let errors =
            std::fs::read_to_string(self.dir.path().join("errors.log")).unwrap_or_default();
        assert!(
            status.success(),
            "sipp's call ({}) failed ({status}); its errors:\n{errors}",
            self.what
        );
        std::fs::read_to_string(self.dir.path().join("messages.log")).unwrap_or_default()
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sipp's captures (Debian's sip-tester).
pub const PCAPS: &str = "/usr/share/sip-tester";

/// The RTP payloads of a capture (Ethernet, IPv4, UDP).
pub fn pcap_rtp_payloads(name: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(Path::new(PCAPS).join(name)).expect("the capture");
    let mut packets = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let len = u32::from_le_bytes(data[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        let frame = &data[at + 16..at + 16 + len];
        at += 16 + len;
        let ip_len = usize::from(frame[14] & 0x0f) * 4;
        let rtp = &frame[14 + ip_len + 8..];
        let packet = rtp_types::RtpPacket::parse(rtp).expect("RTP in the capture");
        packets.push(packet.payload().to_vec());
    }
    packets
}

/// The speech of `g711a.pcap`, decoded.
pub fn pcap_speech() -> Vec<i16> {
    pcap_rtp_payloads("g711a.pcap")
        .iter()
        .flatten()
        .map(|&b| audio_codec_algorithms::decode_alaw(b))
        .collect()
}

/// Asserts that `recording` is a stretch of the capture's speech at least `min_seconds` long,
/// sample for sample (what arrived is what sipp sent).
pub fn assert_recording_is_pcap_speech(recording: &[i16], min_seconds: f64) {
    let speech = pcap_speech();
    assert!(
        recording.len() as f64 >= min_seconds * 8000.0,
        "{} samples recorded",
        recording.len()
    );
    // (the capture's packets are 240 samples: the recording starts at a packet)
    let found = (0..speech.len())
        .step_by(240)
        .any(|start| speech[start..].starts_with(recording));
    assert!(
        found,
        "the recording ({} samples) is not a stretch of the capture's speech",
        recording.len()
    );
}

/// One step of sipp in a scenario with an `@ACTIONS@` block (see [`actions`]).
#[derive(Clone, Debug)]
pub enum Step {
    /// Press a key (`0`-`9`, `*`, `#`), then wait 300 ms.
    Key(char),
    /// Start speaking the capture `g711a.pcap` (about 7 s; sipp goes on meanwhile).
    Speak,
    /// Wait.
    Pause(Duration),
}

/// The scenario XML of `steps`.
pub fn actions(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|step| match step {
            Step::Key(key) => {
                let name = match key {
                    '#' => "pound".to_string(),
                    '*' => "star".to_string(),
                    digit => digit.to_string(),
                };
                format!(
                    "  <nop><action><exec play_pcap_audio=\"{PCAPS}/dtmf_2833_{name}.pcap\"/></action></nop>\n\
                     \x20 <pause milliseconds=\"300\"/>\n"
                )
            }
            Step::Speak => format!(
                "  <nop><action><exec play_pcap_audio=\"{PCAPS}/g711a.pcap\"/></action></nop>\n"
            ),
            Step::Pause(d) => format!("  <pause milliseconds=\"{}\"/>\n", d.as_millis()),
        })
        .collect()
}

/// A free UDP port on 127.0.0.1 (the socket is closed again, for sipp or a server to take it).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

/// A 440 Hz tone of `seconds` as an 8 kHz 16-bit mono WAV.
pub fn tone_wav(seconds: f64) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).expect("WAV writer");
    for i in 0..(8000.0 * seconds) as usize {
        let t = i as f64 / 8000.0;
        w.write_sample((10_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16)
            .expect("sample");
    }
    w.finalize().expect("WAV");
    out.into_inner()
}
