//! Failed-logon throttling against a real server: parallel guesses are refused unchecked
//! (no argon2), a shared client address does not slow users whose password is cached, and
//! user names cannot make the server's memory or log grow, nor forge log lines.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{basic, post_raw, wait_until, Server};

const GET_PROPERTIES: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetUMProperties xmlns="http://schemas.microsoft.com/exchange/services/2006/messages"/></soap:Body></soap:Envelope>"#;

/// The answer to one GetUMProperties as `user`: status and `Retry-After`, if any.
fn logon(base: &str, user: &str, password: &str) -> (u16, Option<u64>) {
    let auth = basic(user, password);
    let headers = [
        ("Content-Type", "text/xml; charset=utf-8"),
        ("Authorization", auth.as_str()),
    ];
    let (status, headers, _) = post_raw(
        base,
        "/UnifiedMessaging/Service.asmx",
        &headers,
        GET_PROPERTIES.as_bytes(),
    );
    let retry_after = headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .map(|(_, v)| v.parse().expect("Retry-After in seconds"));
    (status, retry_after)
}

/// One verified wrong logon: retried while the throttle refuses it unchecked (429).
fn fail_once(base: &str, user: &str, password: &str) {
    let mut refused = 0;
    loop {
        match logon(base, user, password) {
            (401, _) => return,
            (429, Some(secs)) if secs >= 1 => {
                refused += 1;
                assert!(refused < 600, "refused for a minute");
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("{user}: {other:?}"),
        }
    }
}

/// CPU time (user + system, in clock ticks) the process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The resident set size of the process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `n` logons at once, each with its own (user, password): their statuses.
fn burst(base: &str, attempts: Vec<(String, String)>) -> Vec<(u16, Option<u64>)> {
    let start = Arc::new(Barrier::new(attempts.len()));
    let threads: Vec<_> = attempts
        .into_iter()
        .map(|(user, password)| {
            let base = base.to_owned();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                logon(&base, &user, &password)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn parallel_guesses_inside_the_window_are_refused_without_argon2() {
    let server = Server::start();
    let base = &server.base;
    let pid = server.pid();
    const PROBES: usize = 8;
    for i in 0..PROBES {
        server.add_mailbox(&format!("probe{i}"), "probe-pw", &[]);
    }
    server.add_mailbox("victim", "right-pw", &[]);
    // What one argon2 verification costs this server: first logons (cache misses).
    let before = cpu_ticks(pid);
    for i in 0..PROBES {
        assert_eq!(logon(base, &format!("probe{i}"), "probe-pw").0, 200);
    }
    let per_verification = (cpu_ticks(pid) - before) as f64 / PROBES as f64;

    // A few failures, one after another as the throttle lets them through: the last opens a
    // window of 200 ms * 2^5 = 6.4 s (the first failure opens none).
    for i in 0..7 {
        fail_once(base, "victim", &format!("wrong-{i}"));
    }
    // Then 150 guesses at once, the right password among them.
    const GUESSES: usize = 150;
    let attempts = (0..GUESSES)
        .map(|i| {
            let password = if i == GUESSES / 2 {
                "right-pw".to_owned()
            } else {
                format!("guess-{i}")
            };
            ("victim".to_owned(), password)
        })
        .collect();
    let before = cpu_ticks(pid);
    let answers = burst(base, attempts);
    let spent = (cpu_ticks(pid) - before) as f64;
    eprintln!("one verification: {per_verification} ticks; {GUESSES} refused guesses: {spent}");
    assert_eq!(
        answers[GUESSES / 2].0,
        429,
        "the right password is refused inside the window"
    );
    for (status, retry_after) in &answers {
        assert_eq!(*status, 429, "every guess is refused unchecked");
        assert!(retry_after.is_some_and(|s| (1..=10).contains(&s)));
    }
    // Had they been verified, 150 verifications; allow a tenth of that for the HTTP work.
    assert!(
        spent < per_verification * GUESSES as f64 / 10.0,
        "the burst cost {spent} ticks of CPU, one verification {per_verification}"
    );

    // Once the window has closed, the right password works.
    let mut refused = 0;
    assert!(wait_until(Duration::from_secs(60), || {
        match logon(base, "victim", "right-pw").0 {
            200 => true,
            429 => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(300));
                false
            }
            other => panic!("{other}"),
        }
    }));
    assert!(refused > 0, "the window was still open after the burst");
}

#[test]
fn a_failing_client_does_not_slow_cached_users_but_failures_slow_their_own_user() {
    let server = Server::start();
    let base = &server.base;
    for user in ["alice", "dave", "erin"] {
        server.add_mailbox(user, &format!("{user}-pw"), &[]);
    }
    // Alice and Erin have logged on (their passwords are cached); Dave has not.
    assert_eq!(logon(base, "alice", "alice-pw").0, 200);
    assert_eq!(logon(base, "erin", "erin-pw").0, 200);

    // Erin mistypes five times: her own window (1.6 s) refuses even her cached password.
    for i in 0..5 {
        fail_once(base, "erin", &format!("typo-{i}"));
    }
    let (status, retry_after) = logon(base, "erin", "erin-pw");
    assert_eq!(status, 429, "a user's own failures slow the user");
    assert!(retry_after.is_some());

    // Made-up names from this address: six more distinct names, beyond the allowance of
    // two, open the address's window (200 ms * 2^4 = 3.2 s after the last).
    for i in 0..6 {
        fail_once(base, &format!("nobody-{i}"), "x");
    }
    // The window is open: Dave, who needs a verification, is refused ...
    assert_eq!(logon(base, "dave", "dave-pw").0, 429);
    // ... while Alice, whose password is cached, is served at once, every time.
    for _ in 0..10 {
        assert_eq!(logon(base, "alice", "alice-pw"), (200, None));
    }
    assert_eq!(
        logon(base, "dave", "dave-pw").0,
        429,
        "the window was open all along"
    );
    // The log is read in the background: wait until Dave's last refusal is in.
    let dave_refusals = |log: &str| {
        log.lines()
            .filter(|l| l.contains("throttled") && l.contains("user=dave"))
            .count()
    };
    assert!(wait_until(Duration::from_secs(10), || dave_refusals(
        &server.log()
    ) >= 2));
    let log = server.log();
    assert!(
        !log.lines().any(|l| l.contains("user=alice")
            && (l.contains("throttled") || l.contains("slowing"))),
        "Alice was never refused nor delayed:\n{log}"
    );
    // Dave's turn comes when the window closes.
    assert!(wait_until(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(200));
        logon(base, "dave", "dave-pw").0 == 200
    }));
}

#[test]
fn long_and_distinct_user_names_cost_no_memory_and_little_log() {
    let server = Server::start();
    let base = &server.base;
    let pid = server.pid();
    server.add_mailbox("alice", "alice-pw", &[]);
    let log_before = server.log().len();
    // Many distinct names (8 at a time) of the longest length a mailbox may have. These are
    // verified as long as the throttle lets them, so the server reaches its peak of parallel
    // argon2 computations (19 MiB each) before memory is measured.
    let each = |count: usize, name_bytes: usize, filler: &'static str| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let base = base.clone();
                std::thread::spawn(move || {
                    for i in (t..count).step_by(8) {
                        let mut name = format!("{i:06}-");
                        name.push_str(&filler.repeat(name_bytes - name.len()));
                        let status = logon(&base, &name, "x").0;
                        assert!(status == 401 || status == 429, "{status}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    each(1000, 256, "m");
    let rss_before = rss_kib(pid);
    // 2,000 failures with distinct 64 KiB names.
    each(2000, 64 * 1024, "n");

    let grown_kib = rss_kib(pid).saturating_sub(rss_before);
    // The log is read in the background: wait until every request's access line is in.
    let answered = |log: &str| log.matches("umws_soap::access").count();
    assert!(wait_until(Duration::from_secs(30), || answered(
        &server.log()
    ) >= 3000));
    let log = server.log();
    let logged = log.len() - log_before;
    eprintln!("RSS grew by {grown_kib} KiB, the log by {logged} bytes");
    // Keeping the long names would take 128 MiB (and as much again in the log).
    assert!(grown_kib < 16 * 1024, "RSS grew by {grown_kib} KiB");
    assert!(logged < 8 * 1024 * 1024, "the log grew by {logged} bytes");
    assert!(
        !log.contains(&"n".repeat(100)),
        "an over-long name reached the log"
    );
    assert!(
        !log.contains(&"m".repeat(100)),
        "a name was logged unshortened"
    );
    // The over-long names never reached the throttle: a logon that needs a verification
    // is not refused for this address (the 256-character ones may have opened its window,
    // which closes within 10 s).
    assert!(wait_until(Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(200));
        logon(base, "alice", "alice-pw").0 == 200
    }));
}

#[test]
fn user_names_cannot_forge_log_lines_and_unknown_ones_stay_out_of_the_info_log() {
    let server = Server::start();
    let base = &server.base;
    server.add_mailbox("alice", "alice-pw", &[]);
    // (A user name cannot hold a colon: Basic authentication ends it there.)
    let forged = "x\r\n1999-01-01T00.00.00.000000Z  INFO umws app FORGED logon ok\u{1b}[2K\r";
    fail_once(base, forged, "x");
    // A password typed into the user field.
    fail_once(base, "Tr0ub4dor&3", "");
    // A known user's wrong password is logged with the name.
    fail_once(base, "alice", "wrong");
    // The log is read from the server's stderr in the background: wait for the last line.
    let alice_logged = |log: &str| {
        log.lines().any(|l| {
            l.contains(" INFO ") && l.contains("authentication failed") && l.contains("user=alice")
        })
    };
    assert!(wait_until(Duration::from_secs(10), || alice_logged(
        &server.log()
    )));
    let log = server.log();
    assert!(
        !log.lines().any(|l| l
            .trim_start_matches(['\r', '\u{1b}'])
            .starts_with("1999-01-01")),
        "a forged line:\n{log}"
    );
    assert!(!log.contains('\r') && !log.contains('\u{1b}'), "{log:?}");
    assert!(
        log.contains("user=x??1999-01-01T00.00.00.000000Z  INFO umws app FORGED logon ok?[2...\n"),
        "the name is logged escaped and shortened, at debug level:\n{log}"
    );
    let info: Vec<&str> = log.lines().filter(|l| l.contains(" INFO ")).collect();
    assert!(
        !info.iter().any(|l| l.contains("Tr0ub4dor")),
        "an unknown user name in the INFO log:\n{}",
        info.join("\n")
    );
}
