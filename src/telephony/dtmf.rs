//! The receiver of RFC 4733 telephone-events (keypad digits sent as RTP packets of their own
//! payload type, negotiated as `telephone-event/8000`).
//!
//! A key press is one event: a first packet with the RTP marker bit, updates while the key is
//! held (the same RTP timestamp, a growing duration), and an end packet (E bit) usually sent
//! three times. The receiver reports each event's digit once, when its first end packet comes:
//! the retransmitted end packets carry the event's timestamp and are dropped. A new event is a
//! packet with another timestamp or event code, or with the marker bit after the event ended
//! (some senders, and replayed captures, start every event at the same timestamp). When an
//! event's end packets are all lost, its digit is reported when the next event starts.
//!
//! Only the keypad events count: 0-9, `*` (10) and `#` (11). Other events (A-D, flash), short
//! or malformed payloads are ignored; nothing a peer sends can panic the receiver.
//!
//! Keys sent in SIP INFO requests instead ([`info_key`]) come through the call's dialog.

/// The digit of an RFC 4733 event code: `'0'`-`'9'`, `'*'`, `'#'`; `None` for other events.
pub fn digit_of(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        _ => None,
    }
}

/// The key of a SIP INFO request carrying DTMF, by its `Content-Type`:
/// `application/dtmf-relay` (a `Signal=` line with the key, or its event code 10 or 11, as most
/// phones send it) or `application/dtmf` (the key alone). `None` for another type, or for a
/// body that is not one keypad key.
pub fn info_key(content_type: &str, body: &[u8]) -> Option<char> {
    let media_type = content_type.split(';').next()?.trim();
    let body = std::str::from_utf8(body).ok()?;
    let key = if media_type.eq_ignore_ascii_case("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?
    } else if media_type.eq_ignore_ascii_case("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    match key {
        "10" => Some('*'),
        "11" => Some('#'),
        _ => {
            let mut chars = key.chars();
            match (chars.next(), chars.next()) {
                (Some(c @ ('0'..='9' | '*' | '#')), None) => Some(c),
                _ => None,
            }
        }
    }
}

/// One telephone-event payload (RFC 4733 section 2.3): the first four bytes of the RTP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// The event code (0-9, 10 `*`, 11 `#`, ...).
    pub event: u8,
    /// The E bit: the event ended.
    pub end: bool,
    /// The duration so far, in timestamp units.
    pub duration: u16,
}

impl EventPayload {
    /// Reads the payload; `None` when it is shorter than four bytes.
    pub fn parse(payload: &[u8]) -> Option<EventPayload> {
        match payload {
            [event, flags, d0, d1, ..] => Some(EventPayload {
                event: *event,
                end: flags & 0x80 != 0,
                duration: u16::from_be_bytes([*d0, *d1]),
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Current {
    timestamp: u32,
    event: u8,
    start_sequence: u16,
    reported: bool,
}

/// Turns the telephone-event packets of one RTP stream into digits.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    current: Option<Current>,
}

impl DtmfReceiver {
    /// A receiver that has seen no event.
    pub fn new() -> DtmfReceiver {
        DtmfReceiver::default()
    }

    /// Takes one telephone-event packet (its RTP timestamp, marker bit, sequence number and
    /// payload); returns the digit of the event it completed, if any.
    pub fn receive(
        &mut self,
        timestamp: u32,
        marker: bool,
        sequence: u16,
        payload: &[u8],
    ) -> Option<char> {
        let packet = EventPayload::parse(payload)?;
        digit_of(packet.event)?;
        let starts = match &self.current {
            None => true,
            Some(c) => {
                c.timestamp != timestamp
                    || c.event != packet.event
                    || (marker && (c.reported || c.start_sequence != sequence))
            }
        };
        let mut digit = None;
        if starts {
            // An event whose end packets were all lost is reported when the next one starts.
            if let Some(old) = self.current.filter(|c| !c.reported) {
                digit = digit_of(old.event);
            }
            self.current = Some(Current {
                timestamp,
                event: packet.event,
                start_sequence: sequence,
                reported: false,
            });
        }
        if let Some(current) = self.current.as_mut() {
            if packet.end && !current.reported && digit.is_none() {
                current.reported = true;
                digit = digit_of(current.event);
            }
        }
        digit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, if end { 0x8a } else { 0x0a }, d[0], d[1]]
    }

    /// The packets of one key press as a phone sends them: start (marker), updates, three
    /// end packets.
    fn press(rx: &mut DtmfReceiver, event: u8, timestamp: u32, sequence: u16) -> Vec<char> {
        let mut digits = Vec::new();
        let mut seq = sequence;
        for (i, end) in [false, false, false, true, true, true]
            .into_iter()
            .enumerate()
        {
            let duration = 160 * (i as u16 + 1);
            if let Some(d) = rx.receive(timestamp, i == 0, seq, &payload(event, end, duration)) {
                digits.push(d);
            }
            seq = seq.wrapping_add(1);
        }
        digits
    }

    #[test]
    fn one_digit_per_event_despite_retransmitted_ends() {
        let mut rx = DtmfReceiver::new();
        let mut digits = Vec::new();
        for (i, event) in [1u8, 2, 10, 11, 0, 9].into_iter().enumerate() {
            digits.extend(press(
                &mut rx,
                event,
                1000 + 800 * i as u32,
                100 + 6 * i as u16,
            ));
        }
        assert_eq!(digits, ['1', '2', '*', '#', '0', '9']);
    }

    #[test]
    fn the_same_key_twice_is_two_digits() {
        let mut rx = DtmfReceiver::new();
        let mut digits = press(&mut rx, 5, 1000, 1);
        digits.extend(press(&mut rx, 5, 2000, 7));
        assert_eq!(digits, ['5', '5']);
    }

    #[test]
    fn replayed_captures_with_one_timestamp_are_separate_events() {
        // sipp's dtmf_2833_*.pcap start every event at the same timestamp and sequence
        let mut rx = DtmfReceiver::new();
        let mut digits = press(&mut rx, 1, 13280, 7984);
        digits.extend(press(&mut rx, 11, 13280, 7984));
        digits.extend(press(&mut rx, 1, 13280, 7984));
        digits.extend(press(&mut rx, 1, 13280, 7984));
        assert_eq!(digits, ['1', '#', '1', '1']);
    }

    #[test]
    fn a_retransmitted_start_packet_is_not_a_new_event() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(rx.receive(5, true, 1, &payload(3, false, 160)), None);
        assert_eq!(rx.receive(5, true, 1, &payload(3, false, 160)), None);
        assert_eq!(rx.receive(5, false, 2, &payload(3, true, 320)), Some('3'));
        assert_eq!(rx.receive(5, false, 2, &payload(3, true, 320)), None);
        // a late update of the ended event is not a new one either
        assert_eq!(rx.receive(5, false, 1, &payload(3, false, 160)), None);
        assert_eq!(rx.receive(5, false, 3, &payload(3, true, 320)), None);
    }

    #[test]
    fn an_event_without_end_packets_is_reported_when_the_next_starts() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(rx.receive(100, true, 1, &payload(7, false, 160)), None);
        assert_eq!(rx.receive(100, false, 2, &payload(7, false, 320)), None);
        assert_eq!(rx.receive(900, true, 3, &payload(8, false, 160)), Some('7'));
        assert_eq!(rx.receive(900, false, 4, &payload(8, true, 320)), Some('8'));
    }

    #[test]
    fn other_events_and_short_payloads_are_ignored() {
        let mut rx = DtmfReceiver::new();
        for event in [12u8, 15, 16, 100, 255] {
            assert_eq!(rx.receive(1, true, 1, &payload(event, true, 160)), None);
        }
        for short in [&[][..], &[1], &[1, 0x80], &[1, 0x80, 0]] {
            assert_eq!(rx.receive(2, true, 2, short), None);
        }
        // and they do not disturb a real event
        assert_eq!(press(&mut rx, 4, 3000, 10), ['4']);
    }

    #[test]
    fn sip_info_keys() {
        let relay = "application/dtmf-relay";
        assert_eq!(info_key(relay, b"Signal=5\r\nDuration=160\r\n"), Some('5'));
        assert_eq!(info_key(relay, b"Signal= #\r\nDuration= 250"), Some('#'));
        assert_eq!(info_key(relay, b"signal=*"), Some('*'));
        assert_eq!(info_key(relay, b"Signal=10\nDuration=100"), Some('*'));
        assert_eq!(info_key(relay, b"Signal=11"), Some('#'));
        assert_eq!(
            info_key("Application/DTMF-Relay; charset=utf-8", b"Signal=0"),
            Some('0')
        );
        assert_eq!(info_key("application/dtmf", b"7\r\n"), Some('7'));
        // Not one keypad key, or not DTMF at all.
        for (content_type, body) in [
            (relay, &b"Signal=A"[..]),
            (relay, b"Signal=12"),
            (relay, b"Signal=55"),
            (relay, b"Duration=160"),
            (relay, b""),
            (relay, b"Signal=\xff"),
            ("application/dtmf", b"12"),
            ("application/media_control+xml", b"<media_control/>"),
            ("", b"Signal=5"),
        ] {
            assert_eq!(
                info_key(content_type, body),
                None,
                "{content_type} {body:?}"
            );
        }
    }

    #[test]
    fn digit_codes() {
        let digits: String = (0..=11).filter_map(digit_of).collect();
        assert_eq!(digits, "0123456789*#");
        assert_eq!(digit_of(12), None);
    }

    proptest::proptest! {
        #[test]
        fn any_packets_give_digits_or_nothing(
            packets in proptest::collection::vec(
                (proptest::num::u32::ANY, proptest::bool::ANY, proptest::num::u16::ANY,
                 proptest::collection::vec(proptest::num::u8::ANY, 0..12)),
                0..60,
            )
        ) {
            let mut rx = DtmfReceiver::new();
            let mut count = 0usize;
            for (ts, marker, seq, payload) in &packets {
                if let Some(d) = rx.receive(*ts, *marker, *seq, payload) {
                    proptest::prop_assert!("0123456789*#".contains(d));
                    count += 1;
                }
            }
            // never more digits than packets
            proptest::prop_assert!(count <= packets.len());
        }

        #[test]
        fn retransmitting_every_packet_changes_nothing(
            events in proptest::collection::vec(0u8..12, 1..10)
        ) {
            let mut once = DtmfReceiver::new();
            let mut twice = DtmfReceiver::new();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for (i, event) in events.iter().enumerate() {
                let ts = 1000 * i as u32;
                let seq = 10 * i as u16;
                for (j, end) in [false, true].into_iter().enumerate() {
                    let p = payload(*event, end, 160 * (j as u16 + 1));
                    let s = seq + j as u16;
                    a.extend(once.receive(ts, j == 0, s, &p));
                    b.extend(twice.receive(ts, j == 0, s, &p));
                    b.extend(twice.receive(ts, j == 0, s, &p));
                }
            }
            proptest::prop_assert_eq!(&a, &b);
            proptest::prop_assert_eq!(a.len(), events.len());
        }
    }
}
