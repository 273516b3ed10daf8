//! The media of one answered call: RTP out every 20 ms, the phone's RTP in, and the ends of a
//! call that come from the media side (the phone's BYE, our hang-up, no RTP from the phone for
//! too long, the maximum call length).
//!
//! [`Session::next`] is the one place a call's task waits: on the 20 ms tick (the caller then
//! sends a packet with [`Session::send`]), on the phone's audio and digits, and on the events
//! that end the call. Incoming RTP is taken only from the address the phone's SDP answer gave;
//! anything else on the socket, and anything that is not RTP, is dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TransactionHandle};
use rsipstack::sip::{Header, Request, StatusCode};
use tokio::net::UdpSocket;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::dtmf::DtmfReceiver;
use super::media::{Answer, Codec, RtpStream, SAMPLES_PER_PACKET};

/// The time between two RTP packets.
pub(super) const PACKET_INTERVAL: Duration = Duration::from_millis(20);

/// The width of a bucket of [`super::Call::send_jitter`]: 0.1 ms.
pub const JITTER_BUCKET: Duration = Duration::from_micros(100);
/// The buckets of [`super::Call::send_jitter`]; the last one holds 10 ms and more.
pub const JITTER_BUCKETS: usize = 101;

/// What a call sent: the RTP packets, and how far the time between two of them was from
/// 20 ms (the pacing jitter).
#[derive(Debug)]
pub(super) struct SendStats {
    pub packets: AtomicU64,
    jitter: [AtomicU64; JITTER_BUCKETS],
}

impl SendStats {
    pub(super) fn new() -> SendStats {
        SendStats {
            packets: AtomicU64::new(0),
            jitter: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Counts one packet sent `gap` after the one before (`None` for the first).
    fn sent(&self, gap: Option<Duration>) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        if let Some(gap) = gap {
            let deviation = gap.abs_diff(PACKET_INTERVAL);
            let bucket =
                (deviation.as_micros() / JITTER_BUCKET.as_micros()).min(JITTER_BUCKETS as u128 - 1);
            // (bucket < JITTER_BUCKETS: the index is in range)
            if let Some(count) = self.jitter.get(bucket as usize) {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The gaps between packets per bucket of deviation from 20 ms ([`JITTER_BUCKET`] wide).
    pub(super) fn jitter(&self) -> Vec<u64> {
        self.jitter
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// What happened on the call's media.
#[derive(Debug)]
pub(super) enum Event {
    /// Time to send the next packet.
    Tick,
    /// Audio from the phone, decoded to 8 kHz 16-bit PCM (one RTP packet's worth).
    Audio(Vec<i16>),
    /// A key the phone pressed (RFC 4733): `'0'`-`'9'`, `'*'`, `'#'`.
    Digit(char),
}

/// Why a call's media ended before its flow did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// Our [`super::Call::hang_up`].
    HungUp,
    /// The phone ended the dialog (BYE).
    ByPhone,
    /// No RTP from the phone for the configured time.
    NoRtp,
    /// The call reached its maximum length.
    MaxLength,
}

/// The media side of one answered call.
pub(super) struct Session<'a> {
    rtp: &'a UdpSocket,
    remote: SocketAddr,
    telephone_event: u8,
    stream: RtpStream,
    ticks: Interval,
    dtmf: DtmfReceiver,
    states: &'a mut DialogStateReceiver,
    states_open: bool,
    hang_up: &'a CancellationToken,
    last_rtp: Instant,
    no_rtp_timeout: Duration,
    deadline: Instant,
    stats: &'a SendStats,
    last_sent: Option<Instant>,
    buf: Vec<u8>,
    /// Take RTP from any port of the remote address (see [`Session::with_any_source_port`]).
    any_source_port: bool,
}

/// The limits of one call's media.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Hang up after this long without RTP from the phone.
    pub no_rtp_timeout: Duration,
    /// Hang up this long after the answer.
    pub max_call: Duration,
}

impl<'a> Session<'a> {
    pub(super) fn new(
        rtp: &'a UdpSocket,
        answer: &Answer,
        states: &'a mut DialogStateReceiver,
        hang_up: &'a CancellationToken,
        stats: &'a SendStats,
        limits: Limits,
    ) -> Session<'a> {
        let now = Instant::now();
        let mut ticks = tokio::time::interval(PACKET_INTERVAL);
        // (a late tick is sent at once and the next ones keep the 20 ms grid: the timestamps
        // stay in step with the clock)
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
        Session {
            rtp,
            remote: answer.remote_rtp,
            telephone_event: answer.telephone_event,
            stream: RtpStream::new(answer.codec),
            ticks,
            dtmf: DtmfReceiver::new(),
            states,
            states_open: true,
            hang_up,
            last_rtp: now,
            no_rtp_timeout: limits.no_rtp_timeout,
            deadline: now + limits.max_call,
            stats,
            last_sent: None,
            buf: vec![0; 2048],
            any_source_port: false,
        }
    }

    /// Takes the phone's RTP from any port of its address, not only the one its SDP gave (for
    /// callers that send from another port than they receive on).
    pub(super) fn with_any_source_port(mut self) -> Session<'a> {
        self.any_source_port = true;
        self
    }

    /// Waits for the next event.
    pub(super) async fn next(&mut self) -> Result<Event, Ended> {
        loop {
            let silent_until = self.last_rtp + self.no_rtp_timeout;
            tokio::select! {
                biased;
                _ = self.hang_up.cancelled() => return Err(Ended::HungUp),
                state = self.states.recv(), if self.states_open => match state {
                    Some(DialogState::Terminated(..)) => return Err(Ended::ByPhone),
                    Some(DialogState::Info(_, request, handle)) => {
                        if let Some(digit) = Self::info(&request, &handle).await {
                            return Ok(Event::Digit(digit));
                        }
                    }
                    Some(_) => {}
                    None => self.states_open = false,
                },
                _ = tokio::time::sleep_until(self.deadline) => return Err(Ended::MaxLength),
                _ = tokio::time::sleep_until(silent_until) => return Err(Ended::NoRtp),
                _ = self.ticks.tick() => return Ok(Event::Tick),
                received = self.rtp.recv_from(&mut self.buf) => match received {
                    Ok((n, from)) => {
                        if let Some(event) = self.inbound(n, from) {
                            return Ok(event);
                        }
                    }
                    // (e.g. an ICMP error reported on the socket: RTP is best effort)
                    Err(e) => tracing::debug!(error = %e, "RTP receive failed"),
                },
            }
        }
    }

    /// An INFO request in the call's dialog: a key ([`super::dtmf::info_key`]) is answered
    /// 200 and returned; another body is answered 415 (Unsupported Media Type).
    async fn info(request: &Request, handle: &TransactionHandle) -> Option<char> {
        let content_type = request.headers.iter().find_map(|h| match h {
            Header::ContentType(ct) => Some(ct.value()),
            _ => None,
        });
        let key = super::dtmf::info_key(content_type.unwrap_or(""), &request.body);
        let status = match key {
            Some(_) => StatusCode::OK,
            None => StatusCode::UnsupportedMediaType,
        };
        if handle.reply(status).await.is_err() {
            tracing::debug!("the INFO's transaction ended before its answer");
        }
        key
    }

    /// One datagram on the RTP socket: audio, a digit, or nothing.
    fn inbound(&mut self, n: usize, from: SocketAddr) -> Option<Event> {
        let ours = from == self.remote || (self.any_source_port && from.ip() == self.remote.ip());
        if !ours {
            return None;
        }
        let packet = rtp_types::RtpPacket::parse(self.buf.get(..n)?).ok()?;
        self.last_rtp = Instant::now();
        let payload_type = packet.payload_type();
        if payload_type == self.telephone_event {
            return self
                .dtmf
                .receive(
                    packet.timestamp(),
                    packet.marker_bit(),
                    packet.sequence_number(),
                    packet.payload(),
                )
                .map(Event::Digit);
        }
        let codec = Codec::from_payload_type(payload_type)?;
        let mut samples = Vec::with_capacity(packet.payload().len());
        codec.decode(packet.payload(), &mut samples);
        Some(Event::Audio(samples))
    }

    /// Sends one packet of `samples` (at most [`SAMPLES_PER_PACKET`]); call on each
    /// [`Event::Tick`].
    pub(super) async fn send(&mut self, samples: &[i16]) {
        let samples = samples.get(..SAMPLES_PER_PACKET).unwrap_or(samples);
        let packet = self.stream.packet(samples);
        match self.rtp.send_to(&packet, self.remote).await {
            Ok(_) => {
                let now = Instant::now();
                self.stats
                    .sent(self.last_sent.map(|last| now.duration_since(last)));
                self.last_sent = Some(now);
            }
            // (ICMP unreachable and the like: RTP is best effort)
            Err(e) => tracing::debug!(error = %e, "RTP send failed"),
        }
    }

    /// Sends one packet of silence.
    pub(super) async fn send_silence(&mut self) {
        self.send(&[0; SAMPLES_PER_PACKET]).await;
    }

    /// Plays `audio` to its end; with `barge_in`, a digit stops it and is returned.
    pub(super) async fn play(
        &mut self,
        audio: &[i16],
        barge_in: bool,
    ) -> Result<Option<char>, Ended> {
        let mut chunks = audio.chunks(SAMPLES_PER_PACKET);
        loop {
            match self.next().await? {
                Event::Tick => match chunks.next() {
                    Some(chunk) => self.send(chunk).await,
                    None => return Ok(None),
                },
                Event::Digit(digit) if barge_in => return Ok(Some(digit)),
                Event::Digit(_) | Event::Audio(_) => {}
            }
        }
    }

    /// Plays `audio` to its end whatever is pressed meanwhile; returns the digits pressed, in
    /// order.
    pub(super) async fn play_through(&mut self, audio: &[i16]) -> Result<Vec<char>, Ended> {
        let mut chunks = audio.chunks(SAMPLES_PER_PACKET);
        let mut digits = Vec::new();
        loop {
            match self.next().await? {
                Event::Tick => match chunks.next() {
                    Some(chunk) => self.send(chunk).await,
                    None => return Ok(digits),
                },
                Event::Digit(digit) => digits.push(digit),
                Event::Audio(_) => {}
            }
        }
    }

    /// Waits up to `timeout` for a digit, sending silence meanwhile.
    pub(super) async fn wait_digit(&mut self, timeout: Duration) -> Result<Option<char>, Ended> {
        let until = Instant::now() + timeout;
        loop {
            match self.next().await? {
                Event::Tick => {
                    if Instant::now() >= until {
                        return Ok(None);
                    }
                    self.send_silence().await;
                }
                Event::Digit(digit) => return Ok(Some(digit)),
                Event::Audio(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_buckets_count_the_deviation_from_20_ms() {
        let stats = SendStats::new();
        stats.sent(None);
        stats.sent(Some(Duration::from_millis(20)));
        stats.sent(Some(Duration::from_micros(20_150)));
        stats.sent(Some(Duration::from_micros(19_750)));
        stats.sent(Some(Duration::from_millis(45)));
        let jitter = stats.jitter();
        assert_eq!(stats.packets.load(Ordering::Relaxed), 5);
        assert_eq!(jitter.len(), JITTER_BUCKETS);
        assert_eq!((jitter[0], jitter[1], jitter[2]), (1, 1, 1));
        assert_eq!(jitter[JITTER_BUCKETS - 1], 1);
        assert_eq!(jitter.iter().sum::<u64>(), 4);
    }
}
