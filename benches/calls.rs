//! Calls against sipp on loopback: the time from the INVITE to Connected, and how many calls
//! one agent streams G.711 to at once with the 20 ms pacing holding (the p99 of how far each
//! packet's arrival is from 20 ms after the previous one of its stream) and the CPU per call.
//!
//! `cargo bench --bench calls` (needs `sipp`, Debian's sip-tester; see BENCHMARKS.md).
//! `CALLS_STEPS=50,100,200` sets the numbers of simultaneous calls tried.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::process::{Child, Command};
use umws::telephony::{
    AgentConfig, CallMedia, CallRequest, CallState, SipAgent, JITTER_BUCKET, JITTER_BUCKETS,
};

/// The allocator of the `umws` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long each call of the streaming runs plays.
const STREAM: Duration = Duration::from_secs(6);
/// The packets at the start of each stream left out of the jitter (the call's set-up).
const WARM_UP: usize = 10;

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// sipp answering `calls` calls with `scenario` (its RTP sent to `rtp_port`).
fn sipp(calls: usize, rtp_port: Option<u16>, dir: &Path) -> (Child, String) {
    let port = free_udp_port();
    let mut command = Command::new("sipp");
    match rtp_port {
        Some(rtp_port) => {
            let text = include_str!("../tests/sip/uas_answer.xml")
                .replace("@RTP_PORT@", &rtp_port.to_string())
                .replace("@FORMATS@", "0");
            let file = dir.join("uas.xml");
            std::fs::write(&file, text).expect("the scenario");
            command.arg("-sf").arg(file);
        }
        None => {
            command.args(["-sn", "uas"]);
        }
    }
    let child = command
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-mp"])
        .arg(free_udp_port().to_string())
        .args(["-m"])
        .arg(calls.to_string())
        .args(["-nostdin", "-timeout", "120s", "-max_socket", "10000"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp starts (apt-get install sip-tester)");
    (child, format!("sip:phone@127.0.0.1:{port}"))
}

fn request(target: &str, audio: Arc<[i16]>) -> CallRequest {
    CallRequest {
        target: target.into(),
        from_user: "bench".into(),
        media: CallMedia::Play(audio),
        ring_timeout: Duration::from_secs(30),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// User and system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // (after the command name in parentheses: fields 14 and 15 are utime and stime in ticks)
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // (fields[0] is field 3, the state)
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

async fn setup_times(agent: &SipAgent, calls: usize) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (mut phone, target) = sipp(calls, None, dir.path());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let audio: Arc<[i16]> = Arc::from(vec![0i16; 160]);
    let mut times = Vec::new();
    for _ in 0..calls {
        let start = Instant::now();
        let call = agent
            .place_call(request(&target, audio.clone()))
            .await
            .expect("placed");
        let status = call.answered().await;
        let elapsed = start.elapsed();
        assert_eq!(status.state, CallState::Connected);
        times.push(elapsed.as_secs_f64() * 1000.0);
        call.finished().await;
    }
    let _ = phone.wait().await;
    times.sort_by(f64::total_cmp);
    println!(
        "setup to Connected, {calls} calls one after another: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(f64::NAN)
    );
}

/// `calls` simultaneous calls streaming to one sink; returns whether the p99 held under 2 ms.
async fn streaming(agent: &SipAgent, calls: usize) -> bool {
    let dir = tempfile::tempdir().expect("a temp dir");
    let sink = UdpSocket::bind("127.0.0.1:0").await.expect("the sink");
    let sink_port = sink.local_addr().expect("addr").port();
    let (mut phone, target) = sipp(calls, Some(sink_port), dir.path());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let audio: Arc<[i16]> = Arc::from(vec![1000i16; 8000 * STREAM.as_secs() as usize]);
    let receiver = tokio::spawn(async move {
        // per stream (SSRC): the last arrival and the packets seen
        let mut streams: HashMap<u32, (Instant, usize)> = HashMap::new();
        let mut deviations = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(3), sink.recv_from(&mut buf)).await
        {
            let now = Instant::now();
            let Ok(packet) = rtp_types::RtpPacket::parse(&buf[..n]) else {
                continue;
            };
            let entry = streams.entry(packet.ssrc()).or_insert((now, 0));
            if entry.1 > WARM_UP {
                let gap = now.duration_since(entry.0).as_secs_f64() * 1000.0;
                deviations.push((gap - 20.0).abs());
            }
            *entry = (now, entry.1 + 1);
        }
        (deviations, streams.len())
    });
    let cpu_before = cpu_time();
    let wall = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..calls {
        handles.push(
            agent
                .place_call(request(&target, audio.clone()))
                .await
                .expect("placed"),
        );
    }
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for call in &handles {
        let status = call.finished().await;
        let played = call.rtp_packets_sent() > 0;
        *outcomes
            .entry(format!(
                "{:?}/{:?} played {played}",
                status.state, status.cause
            ))
            .or_default() += 1;
    }
    let cpu = cpu_time().saturating_sub(cpu_before);
    let wall = wall.elapsed();
    // our own send times: |gap - 20 ms|
    let mut lateness = vec![0u64; JITTER_BUCKETS];
    for call in &handles {
        for (sum, n) in lateness.iter_mut().zip(call.send_jitter()) {
            *sum += n;
        }
    }
    let sent: u64 = lateness.iter().sum();
    let late_percentile = |p: f64| {
        let rank = (sent as f64 * p).ceil() as u64;
        let mut seen = 0;
        for (i, n) in lateness.iter().enumerate() {
            seen += n;
            if seen >= rank.max(1) {
                return (i + 1) as f64 * JITTER_BUCKET.as_secs_f64() * 1000.0;
            }
        }
        f64::NAN
    };
    let send_p99 = late_percentile(0.99);
    let (mut deviations, streams) = receiver.await.expect("the sink");
    let _ = phone.wait().await;
    deviations.sort_by(f64::total_cmp);
    println!("  outcomes: {outcomes:?}");
    let sink_p99 = percentile(&deviations, 0.99);
    let per_call = cpu.as_secs_f64() / wall.as_secs_f64() / calls as f64 * 100.0;
    println!(
        "{calls} calls, {sent} gaps between our packets: |gap - 20 ms| p50 < {:.1} ms, p99 < {:.1} ms, p99.9 < {:.1} ms",
        late_percentile(0.5),
        send_p99,
        late_percentile(0.999),
    );
    println!(
        "  at the sink ({streams} streams, {} gaps): |gap - 20 ms| p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; CPU {:.3} % of a core per call (sink included)",
        deviations.len(),
        percentile(&deviations, 0.5),
        sink_p99,
        deviations.last().copied().unwrap_or(f64::NAN),
        per_call,
    );
    streams == calls && send_p99 <= 2.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // (cargo bench's listing)
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let agent = SipAgent::bind(AgentConfig::new(listen))
            .await
            .expect("the agent");
        setup_times(&agent, 100).await;
        let steps: Vec<usize> = std::env::var("CALLS_STEPS")
            .ok()
            .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![50, 100, 200, 400, 600, 800]);
        for calls in steps {
            if !streaming(&agent, calls).await {
                println!("the pacing broke at {calls} calls");
                break;
            }
        }
    });
}
