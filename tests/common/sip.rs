//! sipp's captures (Debian's sip-tester) and the actions of a sipp scenario that presses keys
//! (RFC 4733) and speaks (PCMA) from them.

use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

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
