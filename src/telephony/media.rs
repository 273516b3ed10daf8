//! The media side of a call: the SDP offer, the choice of codec and RTP address from the answer,
//! and G.711 RTP packets of 20 ms.

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

/// Samples per second of the audio we send (G.711 narrowband).
pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms RTP packet.
pub const SAMPLES_PER_PACKET: usize = 160;
/// The dynamic payload type we offer for RFC 4733 telephone-events.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// The G.711 codec the phone answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// µ-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The codec of an RTP payload type: 0 PCMU, 8 PCMA.
    pub fn from_payload_type(payload_type: u8) -> Option<Codec> {
        match payload_type {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// Decodes a G.711 payload into 16-bit PCM samples, appended to `out`.
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        match self {
            Codec::Pcmu => out.extend(
                payload
                    .iter()
                    .map(|&b| audio_codec_algorithms::decode_ulaw(b)),
            ),
            Codec::Pcma => out.extend(
                payload
                    .iter()
                    .map(|&b| audio_codec_algorithms::decode_alaw(b)),
            ),
        }
    }

    /// Encodes 16-bit PCM samples.
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        out.clear();
        match self {
            Codec::Pcmu => out.extend(
                samples
                    .iter()
                    .map(|&s| audio_codec_algorithms::encode_ulaw(s)),
            ),
            Codec::Pcma => out.extend(
                samples
                    .iter()
                    .map(|&s| audio_codec_algorithms::encode_alaw(s)),
            ),
        }
    }
}

/// The SDP offer of an INVITE: one audio stream at `rtp` with PCMU, PCMA and telephone-event.
pub fn offer(rtp: SocketAddr, session_id: u64) -> String {
    let (ip_type, ip) = match rtp.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    format!(
        "v=0\r\n\
         o=umws {session_id} {session_id} IN {ip_type} {ip}\r\n\
         s=umws\r\n\
         c=IN {ip_type} {ip}\r\n\
         t=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 {te}\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:{te} telephone-event/8000\r\n\
         a=fmtp:{te} 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n",
        port = rtp.port(),
        te = TELEPHONE_EVENT_PT,
    )
}

/// The SDP answer to an inbound call's offer (read with [`parse_answer`]): one audio stream at
/// `rtp` with the offer's chosen G.711 codec and telephone-events.
pub fn answer_sdp(rtp: SocketAddr, offer: &Answer, session_id: u64) -> String {
    let (ip_type, ip) = match rtp.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    let (pt, name) = match offer.codec {
        Codec::Pcmu => (0, "PCMU"),
        Codec::Pcma => (8, "PCMA"),
    };
    format!(
        "v=0\r\n\
         o=umws {session_id} {session_id} IN {ip_type} {ip}\r\n\
         s=umws\r\n\
         c=IN {ip_type} {ip}\r\n\
         t=0 0\r\n\
         m=audio {port} RTP/AVP {pt} {te}\r\n\
         a=rtpmap:{pt} {name}/8000\r\n\
         a=rtpmap:{te} telephone-event/8000\r\n\
         a=fmtp:{te} 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n",
        port = rtp.port(),
        te = offer.telephone_event,
    )
}

/// What the phone's SDP answer settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The codec to send: the first of the answer's audio formats that we offered.
    pub codec: Codec,
    /// Where to send RTP (and the only address whose RTP we take).
    pub remote_rtp: SocketAddr,
    /// The payload type of the phone's telephone-events: the answer's
    /// `telephone-event/8000` rtpmap, or the one we offered ([`TELEPHONE_EVENT_PT`]).
    pub telephone_event: u8,
}

/// Why an SDP answer cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    /// Not parseable SDP.
    #[error("the SDP answer does not parse: {0}")]
    Syntax(String),
    /// No audio stream with a port.
    #[error("the SDP answer has no active audio stream")]
    NoAudio,
    /// The audio stream names neither PCMU nor PCMA.
    #[error("the SDP answer accepts neither PCMU nor PCMA")]
    NoCodec,
    /// No usable `c=` address.
    #[error("the SDP answer has no usable connection address")]
    NoAddress,
}

/// Reads the codec and the remote RTP address from an SDP answer.
pub fn parse_answer(body: &[u8]) -> Result<Answer, AnswerError> {
    let sdp = sdp::SessionDescription::unmarshal(&mut Cursor::new(body))
        .map_err(|e| AnswerError::Syntax(e.to_string()))?;
    let audio = sdp
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media == "audio" && m.media_name.port.value > 0)
        .ok_or(AnswerError::NoAudio)?;
    let port = u16::try_from(audio.media_name.port.value).map_err(|_| AnswerError::NoAudio)?;
    let codec = audio
        .media_name
        .formats
        .iter()
        .find_map(|f| match f.trim() {
            "0" => Some(Codec::Pcmu),
            "8" => Some(Codec::Pcma),
            _ => None,
        })
        .ok_or(AnswerError::NoCodec)?;
    let connection = audio
        .connection_information
        .as_ref()
        .or(sdp.connection_information.as_ref())
        .ok_or(AnswerError::NoAddress)?;
    let ip: IpAddr = connection
        .address
        .as_ref()
        .and_then(|a| a.address.split('/').next())
        .and_then(|a| a.trim().parse().ok())
        .ok_or(AnswerError::NoAddress)?;
    if ip.is_unspecified() {
        // c=0.0.0.0: the phone puts us on hold; nowhere to send.
        return Err(AnswerError::NoAddress);
    }
    let telephone_event = audio
        .attributes
        .iter()
        .filter(|a| a.key == "rtpmap")
        .filter_map(|a| a.value.as_deref())
        .find_map(|v| {
            let (pt, encoding) = v.trim().split_once(' ')?;
            let name = encoding.split('/').next()?;
            if name.eq_ignore_ascii_case("telephone-event") {
                pt.parse::<u8>().ok().filter(|pt| (96..=127).contains(pt))
            } else {
                None
            }
        })
        .unwrap_or(TELEPHONE_EVENT_PT);
    Ok(Answer {
        codec,
        remote_rtp: SocketAddr::new(ip, port),
        telephone_event,
    })
}

/// Writes the RTP packets of one outgoing stream: a random SSRC, a random first sequence number
/// and timestamp, the marker bit on the first packet (RFC 3550, RFC 3551).
#[derive(Debug)]
pub struct RtpStream {
    codec: Codec,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    first: bool,
    payload: Vec<u8>,
}

impl RtpStream {
    /// A new stream for `codec`.
    pub fn new(codec: Codec) -> RtpStream {
        RtpStream {
            codec,
            ssrc: rand::random(),
            sequence: rand::random(),
            timestamp: rand::random(),
            first: true,
            payload: Vec::with_capacity(SAMPLES_PER_PACKET),
        }
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The next packet, carrying `samples` (at most one packet's worth, 160).
    pub fn packet(&mut self, samples: &[i16]) -> Vec<u8> {
        self.codec.encode(samples, &mut self.payload);
        let packet = rtp_types::RtpPacketBuilder::<&[u8], &[u8]>::new()
            .payload_type(self.codec.payload_type())
            .sequence_number(self.sequence)
            .timestamp(self.timestamp)
            .ssrc(self.ssrc)
            .marker_bit(self.first)
            .payload(self.payload.as_slice())
            .write_vec_unchecked();
        self.first = false;
        self.sequence = self.sequence.wrapping_add(1);
        // (samples.len() <= 160, so the cast is exact)
        self.timestamp = self.timestamp.wrapping_add(samples.len() as u32);
        packet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_parses_and_answers_itself() {
        let rtp: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let sdp = offer(rtp, 7);
        assert_eq!(
            parse_answer(sdp.as_bytes()),
            Ok(Answer {
                codec: Codec::Pcmu,
                remote_rtp: rtp,
                telephone_event: TELEPHONE_EVENT_PT,
            })
        );
    }

    #[test]
    fn answers_pick_the_first_g711_format_and_the_media_address() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                   m=audio 5004 RTP/AVP 96 8 0\r\nc=IN IP4 10.0.0.2\r\n\
                   a=rtpmap:96 telephone-event/8000\r\n";
        assert_eq!(
            parse_answer(sdp.as_bytes()),
            Ok(Answer {
                codec: Codec::Pcma,
                remote_rtp: "10.0.0.2:5004".parse().expect("addr"),
                telephone_event: 96,
            })
        );
    }

    #[test]
    fn unusable_answers_are_errors_not_panics() {
        let sdp = |c: &str, m: &str| {
            format!("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\n{c}t=0 0\r\n{m}\r\n")
        };
        let c = "c=IN IP4 10.0.0.1\r\n";
        for (body, err) in [
            (sdp(c, "m=audio 0 RTP/AVP 0"), AnswerError::NoAudio),
            (sdp(c, "m=video 5004 RTP/AVP 0"), AnswerError::NoAudio),
            (sdp(c, "m=audio 5004 RTP/AVP 9 18"), AnswerError::NoCodec),
            (sdp("", "m=audio 5004 RTP/AVP 0"), AnswerError::NoAddress),
            (
                sdp("c=IN IP4 0.0.0.0\r\n", "m=audio 5004 RTP/AVP 0"),
                AnswerError::NoAddress,
            ),
            (
                sdp("c=IN IP4 nonsense\r\n", "m=audio 5004 RTP/AVP 0"),
                AnswerError::NoAddress,
            ),
        ] {
            assert_eq!(parse_answer(body.as_bytes()), Err(err), "{body}");
        }
        for garbage in [
            &b""[..],
            b"\xff\xfe",
            b"v=0\r\nm=audio x RTP/AVP 0\r\n",
            b"m=\r\n",
        ] {
            assert!(parse_answer(garbage).is_err());
        }
    }

    #[test]
    fn packets_count_sequence_and_timestamp() {
        let mut stream = RtpStream::new(Codec::Pcma);
        let samples = [1000i16; 160];
        let first = stream.packet(&samples);
        let second = stream.packet(&samples[..80]);
        let third = stream.packet(&samples[..1]);
        let p1 = rtp_types::RtpPacket::parse(&first).expect("rtp");
        let p2 = rtp_types::RtpPacket::parse(&second).expect("rtp");
        let p3 = rtp_types::RtpPacket::parse(&third).expect("rtp");
        assert_eq!(p1.payload_type(), 8);
        assert!(p1.marker_bit() && !p2.marker_bit());
        assert_eq!(p2.sequence_number(), p1.sequence_number().wrapping_add(1));
        assert_eq!(p2.timestamp(), p1.timestamp().wrapping_add(160));
        assert_eq!(p3.timestamp(), p2.timestamp().wrapping_add(80));
        assert_eq!(p1.ssrc(), stream.ssrc());
        assert_eq!(p1.payload().len(), 160);
        assert_eq!(p2.payload().len(), 80);
        assert_eq!(p1.payload()[0], audio_codec_algorithms::encode_alaw(1000));
    }

    #[test]
    fn payloads_decode_in_their_law() {
        let samples = [0i16, 1000, -1000, 30000, -30000];
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut encoded = Vec::new();
            codec.encode(&samples, &mut encoded);
            let mut decoded = Vec::new();
            codec.decode(&encoded, &mut decoded);
            assert_eq!(decoded.len(), samples.len());
            for (got, sent) in decoded.iter().zip(samples) {
                let err = (i32::from(*got) - i32::from(sent)).abs();
                assert!(
                    err <= i32::from(sent.unsigned_abs() / 16) + 32,
                    "{codec:?}: {got} for {sent}"
                );
            }
            assert_eq!(Codec::from_payload_type(codec.payload_type()), Some(codec));
        }
        assert_eq!(Codec::from_payload_type(101), None);
    }

    proptest::proptest! {
        #[test]
        fn any_answer_body_is_an_answer_or_an_error(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parse_answer(&body);
        }

        #[test]
        fn any_sdp_like_body_is_an_answer_or_an_error(
            lines in proptest::collection::vec("[vosctm]=[ -~]{0,40}", 0..12)
        ) {
            let _ = parse_answer(lines.join("\r\n").as_bytes());
        }
    }
}
