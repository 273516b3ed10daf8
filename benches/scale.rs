//! Scale-out load: IsUMEnabled and ResetPIN throughput of 1, 2 and 3 `umws serve` processes on
//! one PostgreSQL database, next to one process on SQLite, measured in one run.
//!
//! Every server is a real `umws serve` process (the release binary of this build) on
//! `127.0.0.1:0`; the PostgreSQL server is the private cluster of the tests
//! (`tests/common/postgres.rs`, in `target/test-env/postgres`; `UMWS_TEST_DATABASE_URL` names
//! another), one fresh database per configuration. The load generator is this process: one
//! tokio thread, N keep-alive HTTP/1.1 connections spread round-robin over the instances (what
//! a load balancer does), each in a closed loop. After a warm-up, a window is measured:
//! requests completed, their latency, and the CPU time of the umws processes, of PostgreSQL's
//! processes and of this process during the window, per request.
//!
//! Settings: `UMWS_SCALE_SECS` (IsUMEnabled window, 5), `UMWS_SCALE_RESET_SECS` (10),
//! `UMWS_SCALE_CONNECTIONS` (64), `UMWS_SCALE_RESET_CONNECTIONS` (16; each its own mailbox),
//! `UMWS_SCALE_ONLY` (`is-um-enabled` or `reset-pin`).

#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use umws::store::{NewMailbox, Store};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PATH: &str = "/UnifiedMessaging/Service.asmx";

fn envelope(element: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>\
         <{element} xmlns=\"http://schemas.microsoft.com/exchange/services/2006/messages\" />\
         </soap:Body></soap:Envelope>"
    )
}

fn request(addr: SocketAddr, element: &str, user: &str, password: &str) -> Vec<u8> {
    let body = envelope(element);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(
        "POST {PATH} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=utf-8\r\n\
         SOAPAction: \"http://schemas.microsoft.com/exchange/services/2006/messages/{element}\"\r\n\
         Authorization: Basic {auth}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one HTTP response (Content-Length framed); its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    non200: u64,
}

/// One keep-alive connection in a closed loop until `end`; counts what completes after
/// `from`.
async fn connection(addr: SocketAddr, request: Arc<Vec<u8>>, from: Instant, end: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut stream = None;
    let mut buf = Vec::with_capacity(4096);
    while Instant::now() < end {
        if stream.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let sent = Instant::now();
        let status = match s.write_all(&request).await {
            Ok(()) => read_response(s, &mut buf).await,
            Err(e) => Err(e),
        };
        let done = Instant::now();
        match status {
            Ok(status) => {
                if done >= from && done <= end {
                    tally
                        .latencies_us
                        .push(done.duration_since(sent).as_micros() as u64);
                    if status != 200 {
                        tally.non200 += 1;
                    }
                }
            }
            Err(_) => stream = None,
        }
    }
    tally
}

/// utime + stime of process `pid` in clock ticks (100 per second).
fn ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            // fields after the name: state(0) ppid(1) ... utime(11) stime(12)
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// The CPU ticks of `root` and all its children (PostgreSQL's backends), by pid.
fn tree_ticks(root: u32) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    out.insert(root, ticks(root));
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.filter_map(Result::ok) {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                });
            if ppid == Some(root) {
                out.insert(pid, ticks(pid));
            }
        }
    }
    out
}

fn delta(before: &BTreeMap<u32, u64>, after: &BTreeMap<u32, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

/// A `umws serve` process; killed on drop.
struct Instance {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_instance(data: &Path, database: Option<&str>) -> Instance {
    let mut command = Command::new(env!("CARGO_BIN_EXE_umws"));
    command
        .args([
            "serve",
            "--no-demo",
            "--listen",
            "127.0.0.1:0",
            "--sip-listen",
            "127.0.0.1:0",
        ])
        .args(["--max-pin-resets-per-hour", "100000000", "--data"])
        .arg(data);
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    let mut child = command
        .env("UMWS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("umws serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = lines
            .next()
            .and_then(Result::ok)
            .expect("umws serve prints its address");
        if let Some(rest) = line.strip_prefix("umws: serving the UM web service on http://") {
            let end = rest.find('/').expect("a path");
            break rest[..end].parse().expect("an address");
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Instance { child, addr }
}

/// The postmaster's pid of the private cluster (for its CPU), if that is the server used.
fn postmaster_pid(env_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(env_dir.join("postgres/data/postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

struct Config {
    name: String,
    instances: Vec<Instance>,
    _db: Option<postgres::TestDatabase>,
    _dir: tempfile::TempDir,
}

fn add_mailboxes(store: &Store, resets: usize) {
    let add = |user: String| {
        store
            .add_mailbox(NewMailbox {
                user,
                password: "load-pw".into(),
                um_enabled: true,
                extension: None,
                email: None,
            })
            .expect("a mailbox");
    };
    add("load".into());
    for i in 0..resets {
        add(format!("user{i}"));
    }
}

fn configure(name: &str, count: usize, postgres: bool, resets: usize, env_dir: &Path) -> Config {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().join("data");
    let db = postgres.then(|| {
        postgres::test_database(env_dir, |_, why| Err(format!("install postgresql: {why}")))
    });
    let url = db.as_ref().map(|d| d.url.clone());
    {
        let store = Store::open_with(url.as_deref(), &data, true).expect("the store");
        add_mailboxes(&store, resets);
    }
    let instances = (0..count)
        .map(|_| start_instance(&data, url.as_deref()))
        .collect();
    Config {
        name: name.to_owned(),
        instances,
        _db: db,
        _dir: dir,
    }
}

struct Measured {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    umws_ms: f64,
    pg_ms: f64,
    client_ms: f64,
    non200: u64,
}

fn measure(
    rt: &tokio::runtime::Runtime,
    config: &Config,
    requests: &[(usize, Vec<u8>)],
    warmup: Duration,
    window: Duration,
    postmaster: Option<u32>,
) -> Measured {
    let start = Instant::now();
    let from = start + warmup;
    let end = from + window;
    let tasks: Vec<_> = requests
        .iter()
        .map(|(instance, req)| {
            rt.spawn(connection(
                config.instances[*instance].addr,
                Arc::new(req.clone()),
                from,
                end,
            ))
        })
        .collect();
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    let pids: Vec<u32> = config.instances.iter().map(|i| i.child.id()).collect();
    let umws_before: u64 = pids.iter().map(|&p| ticks(p)).sum();
    let pg_before = postmaster.map(tree_ticks).unwrap_or_default();
    let me_before = ticks(std::process::id());
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let umws_after: u64 = pids.iter().map(|&p| ticks(p)).sum();
    let pg_after = postmaster.map(tree_ticks).unwrap_or_default();
    let me_after = ticks(std::process::id());
    let mut latencies = Vec::new();
    let mut non200 = 0;
    for t in tasks {
        let tally = rt.block_on(t).expect("a connection task");
        latencies.extend(tally.latencies_us);
        non200 += tally.non200;
    }
    latencies.sort_unstable();
    let n = latencies.len().max(1) as f64;
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    let per_request_ms = |ticks: u64| ticks as f64 * 10.0 / n;
    Measured {
        rps: latencies.len() as f64 / window.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        umws_ms: per_request_ms(umws_after.saturating_sub(umws_before)),
        pg_ms: per_request_ms(delta(&pg_before, &pg_after)),
        client_ms: per_request_ms(me_after.saturating_sub(me_before)),
        non200,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let only = std::env::var("UMWS_SCALE_ONLY").unwrap_or_default();
    let secs = env_or("UMWS_SCALE_SECS", 5.0);
    let reset_secs = env_or("UMWS_SCALE_RESET_SECS", 10.0);
    let connections = env_or("UMWS_SCALE_CONNECTIONS", 64usize);
    let resets = env_or("UMWS_SCALE_RESET_CONNECTIONS", 16usize);
    let target: PathBuf = {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        tmp.parent().unwrap_or(tmp).to_path_buf()
    };
    let env_dir = target.join("test-env");
    let postmaster = if std::env::var("UMWS_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        None
    } else {
        // (provisions the cluster when needed, so that its pid is known)
        drop(postgres::test_database(&env_dir, |_, why| {
            Err(format!("install postgresql: {why}"))
        }));
        postmaster_pid(&env_dir)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("the client runtime");
    println!(
        "scale: {} CPUs; IsUMEnabled {connections} connections {secs} s, ResetPIN {resets} connections {reset_secs} s",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:<14} {:<14} {:>9} {:>8} {:>8} {:>10} {:>9} {:>10} {:>6}",
        "operation",
        "servers",
        "req/s",
        "p50 ms",
        "p99 ms",
        "umws ms/r",
        "pg ms/r",
        "client ms/r",
        "non200"
    );
    let configs = [
        ("sqlite x1", 1, false),
        ("postgres x1", 1, true),
        ("postgres x2", 2, true),
        ("postgres x3", 3, true),
    ];
    for (name, count, pg) in configs {
        let config = configure(name, count, pg, resets, &env_dir);
        let pm = if pg { postmaster } else { None };
        if only.is_empty() || only == "is-um-enabled" {
            let requests: Vec<_> = (0..connections)
                .map(|i| {
                    let k = i % count;
                    (
                        k,
                        request(config.instances[k].addr, "IsUMEnabled", "load", "load-pw"),
                    )
                })
                .collect();
            let m = measure(
                &rt,
                &config,
                &requests,
                Duration::from_secs(1),
                Duration::from_secs_f64(secs),
                pm,
            );
            print_row("IsUMEnabled", &config.name, &m);
        }
        if only.is_empty() || only == "reset-pin" {
            let requests: Vec<_> = (0..resets)
                .map(|i| {
                    let k = i % count;
                    (
                        k,
                        request(
                            config.instances[k].addr,
                            "ResetPIN",
                            &format!("user{i}"),
                            "load-pw",
                        ),
                    )
                })
                .collect();
            let m = measure(
                &rt,
                &config,
                &requests,
                Duration::from_secs(2),
                Duration::from_secs_f64(reset_secs),
                pm,
            );
            print_row("ResetPIN", &config.name, &m);
        }
    }
}

fn print_row(op: &str, servers: &str, m: &Measured) {
    println!(
        "{op:<14} {servers:<14} {:>9.0} {:>8.2} {:>8.2} {:>10.3} {:>9.3} {:>10.3} {:>6}",
        m.rps, m.p50_ms, m.p99_ms, m.umws_ms, m.pg_ms, m.client_ms, m.non200
    );
}
