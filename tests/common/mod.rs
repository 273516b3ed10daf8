//! Test support: a real `umws serve` process on 127.0.0.1:0 with its own
//! data directory, and helpers to talk to it.
#![allow(dead_code)]

mod env;
pub mod postgres;
pub mod sip;
// (each test binary uses some of these)
#[allow(unused_imports)]
pub use env::{
    apt_install, kamailio, node_soap, python, python_exe, sipp, test_env_dir, venv_dir, xmllint,
    NodeSoap,
};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The seed's exact ResetPIN request (https namespace spelling).
pub const SEED_REQUEST: &str = include_str!("../fixtures/seed_reset_pin_request.xml");
/// The seed's ResetPIN response.
pub const SEED_RESPONSE: &str = include_str!("../fixtures/seed_reset_pin_response.xml");

/// A running `umws serve` child process; killed on drop.
pub struct Server {
    child: Child,
    /// The data directory (deleted on drop).
    pub data: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The demo mailbox password.
    pub demo_password: String,
    /// Lines the server wrote to stderr (the log), collected in the background.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The SIP address calls are placed from, from the banner (`None`: calls off).
    pub sip: Option<std::net::SocketAddr>,
}

/// `--sip-listen 127.0.0.1:0` unless `extra` names a SIP address: parallel servers never
/// compete for the default port.
fn sip_listen(extra: &[&str]) -> &'static [&'static str] {
    if extra.contains(&"--sip-listen") {
        &[]
    } else {
        &["--sip-listen", "127.0.0.1:0"]
    }
}

/// The SIP address of a banner line `      calls: SIP/UDP on ADDR ...`.
pub fn banner_sip(line: &str) -> Option<std::net::SocketAddr> {
    let rest = line.trim_start().strip_prefix("calls: SIP/UDP on ")?;
    rest.split_whitespace().next()?.parse().ok()
}

impl Server {
    /// Starts `umws serve` with a fresh data directory and the demo mailbox.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts `umws serve` with extra arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_umws"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(data.path())
            .args(sip_listen(extra))
            .args(extra)
            .env("UMWS_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn umws serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut base = None;
        let mut password = None;
        let mut sip = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = BufReader::new(stdout).lines();
        while base.is_none() || password.is_none() {
            assert!(Instant::now() < deadline, "server did not start");
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("server exited before printing its address"),
            };
            if let Some(rest) = line.strip_prefix("umws: serving the UM web service on ") {
                let url = rest.trim();
                let end = url.find("/UnifiedMessaging").expect("path in banner");
                base = Some(url[..end].to_owned());
            }
            if let Some(rest) = line.strip_prefix("demo mailbox: user demo, password ") {
                password = Some(rest.split(',').next().unwrap().trim().to_owned());
            }
            sip = sip.or(banner_sip(&line));
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Server {
            child,
            data,
            base: base.unwrap(),
            demo_password: password.unwrap(),
            log,
            sip,
        }
    }

    /// The Exchange 2007 endpoint URL.
    pub fn url(&self) -> String {
        format!("{}/UnifiedMessaging/Service.asmx", self.base)
    }

    /// The Exchange 2010 endpoint URL.
    pub fn legacy_url(&self) -> String {
        format!("{}/EWS/UM2007Legacy.asmx", self.base)
    }

    /// The data directory path.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The Maildir `new/` directory of `user`.
    pub fn maildir_new(&self, user: &str) -> PathBuf {
        self.data.path().join("mail").join(user).join("new")
    }

    /// The mails delivered to `user`, oldest first.
    pub fn mails(&self, user: &str) -> Vec<String> {
        let mut entries: Vec<_> = std::fs::read_dir(self.maildir_new(user))
            .map(|d| d.filter_map(Result::ok).collect())
            .unwrap_or_default();
        entries.sort_by_key(|e| e.file_name());
        entries
            .iter()
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Adds a mailbox through the CLI.
    pub fn add_mailbox(&self, user: &str, password: &str, extra: &[&str]) {
        let out = Command::new(env!("CARGO_BIN_EXE_umws"))
            .args(["mailbox", "add", "--data"])
            .arg(self.data.path())
            .args(["--user", user, "--password", password])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PIN in a ResetPIN mail.
pub fn pin_in_mail(mail: &str) -> String {
    mail.lines()
        .find_map(|l| l.trim().strip_prefix("Your new PIN is: "))
        .expect("mail has a PIN line")
        .trim()
        .to_owned()
}

/// Runs `umws pin check` and returns its exit code.
pub fn pin_check(data: &Path, user: &str, pin: &str) -> i32 {
    Command::new(env!("CARGO_BIN_EXE_umws"))
        .args(["pin", "check", "--data"])
        .arg(data)
        .args(["--user", user, "--pin", pin])
        .output()
        .unwrap()
        .status
        .code()
        .unwrap_or(-1)
}

/// A raw HTTP/1.1 POST over a TCP socket (so tests control every byte);
/// returns (status, headers, body).
pub fn post_raw(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_response(&out)
}

/// Splits a raw HTTP/1.1 response (Content-Length framed) into parts.
pub fn parse_response(raw: &[u8]) -> (u16, Vec<(String, String)>, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// `Authorization: Basic ...` for a user and password.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

// ---- Helpers for the crash and concurrency tests (PIN lifecycle). ----

/// Runs `umws` with `args` and returns its output.
pub fn run_umws(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_umws"))
        .args(args)
        .env("UMWS_LOG", "warn")
        .output()
        .expect("run umws")
}

/// `umws ... --data DIR` with `DIR` spliced in after the subcommand words; panics unless it
/// exits with `code`, returns stdout + stderr.
pub fn umws_in(data: &Path, words: &[&str], rest: &[&str], code: i32) -> String {
    let data = data.to_str().expect("utf-8 temp path");
    let mut args: Vec<&str> = words.to_vec();
    args.extend(["--data", data]);
    args.extend(rest);
    let out = run_umws(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "umws {args:?}: {text}");
    text
}

/// The IsUMEnabled request body.
pub const IS_UM_ENABLED_BODY: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>\
<IsUMEnabled xmlns=\"http://schemas.microsoft.com/exchange/services/2006/messages\" />\
</soap:Body></soap:Envelope>";

/// The ResetPIN request body (http namespace).
pub const RESET_PIN_BODY: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>\
<ResetPIN xmlns=\"http://schemas.microsoft.com/exchange/services/2006/messages\" />\
</soap:Body></soap:Envelope>";

/// A `umws serve` process on an existing data directory, killed (SIGKILL) on drop; unlike
/// [`Server`] it does not own the directory, so it can be killed and restarted on it.
pub struct Serve {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Serve {
    /// Starts `umws serve --no-demo` on `data` and waits for its address.
    pub fn start(data: &Path) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_umws"))
            .args(["serve", "--no-demo", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(sip_listen(&[]))
            .env("UMWS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn umws serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("server exited before printing its address"),
            };
            if let Some(rest) = line.strip_prefix("umws: serving the UM web service on ") {
                let url = rest.trim();
                let end = url.find("/UnifiedMessaging").expect("path in banner");
                break url[..end].to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Serve { child, base }
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What became of a request sent to a server that may die at any moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// No connection: the request never reached a server.
    NotConnected,
    /// Connected, but no complete answer: the request may or may not have taken effect.
    NoAnswer,
    /// The HTTP status of the answer.
    Status(u16),
}

/// POSTs a ResetPIN for `user` to `base`, without panicking when the server dies.
pub fn try_reset_pin(base: &str, user: &str, password: &str) -> Sent {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return Sent::NotConnected;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let req = format!(
        "POST /UnifiedMessaging/Service.asmx HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: text/xml; charset=utf-8\r\nAuthorization: {}\r\n\
         Content-Length: {}\r\n\r\n{RESET_PIN_BODY}",
        basic(user, password),
        RESET_PIN_BODY.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return Sent::NoAnswer;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let (status, headers, body) = parse_response(&out);
    let complete = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .is_some_and(|n| n == body.len());
    if status == 0 || !complete {
        Sent::NoAnswer
    } else {
        Sent::Status(status)
    }
}

/// The mails in `user`'s Maildir under `data` (`new/` and `cur/`), by file name (the order in
/// which their PIN changes were committed): (name, text).
pub fn maildir_mails(data: &Path, user: &str) -> Vec<(String, String)> {
    let mut mails = Vec::new();
    for sub in ["new", "cur"] {
        let dir = data.join("mail").join(user).join(sub);
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                mails.push((name, std::fs::read_to_string(e.path()).unwrap()));
            }
        }
    }
    mails.sort();
    mails
}

/// Polls until `done` holds, at most `limit`; false on time-out.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

// ---- Helpers for the private-files, PIN-at-rest and user-name tests. ----

/// A ResetPIN limit high enough for tests that reset one mailbox many times.
pub const MANY_RESETS: &[&str] = &["--max-pin-resets-per-hour", "1000000"];

impl Serve {
    /// [`Serve::start`] with extra arguments.
    pub fn start_with(data: &Path, extra: &[&str]) -> Serve {
        Self::spawn(data, extra, None).expect("server did not start")
    }

    /// `umws serve --no-demo` on `data` with `extra` arguments, run under the shell's
    /// `umask` `umask` when given; `Err(stderr)` when it exits before printing its address.
    pub fn spawn(data: &Path, extra: &[&str], umask: Option<&str>) -> Result<Serve, String> {
        let mut command = match umask {
            Some(mask) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_umws"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_umws")),
        };
        let mut child = command
            .args(["serve", "--no-demo", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(sip_listen(extra))
            .args(extra)
            .env("UMWS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn umws serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix("umws: serving the UM web service on ") {
                        let url = rest.trim();
                        let end = url.find("/UnifiedMessaging").expect("path in banner");
                        break url[..end].to_owned();
                    }
                }
                _ => {
                    let mut err = String::new();
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
                    let _ = child.wait();
                    return Err(err);
                }
            }
        };
        std::thread::spawn(move || for _ in lines.by_ref() {});
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        });
        Ok(Serve { child, base })
    }
}
