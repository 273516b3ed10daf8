//! Secrets at rest and between mailboxes: stored hashes are salted and
//! slow, and one mailbox's credentials never reach another mailbox. Slow clients do not hold
//! connections for ever.

mod common;

use common::{basic, post_raw, Server, RESET_PIN_BODY};

const M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";

fn call(server: &Server, user: &str, password: &str, body: &str) -> (u16, String) {
    let auth = basic(user, password);
    let envelope = format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{body}</soap:Body></soap:Envelope>"#
    );
    let headers = [
        ("Content-Type", "text/xml; charset=utf-8"),
        ("Authorization", auth.as_str()),
    ];
    let (status, _, body) = post_raw(
        &server.base,
        "/UnifiedMessaging/Service.asmx",
        &headers,
        envelope.as_bytes(),
    );
    (status, body)
}

#[test]
fn stored_hashes_are_salted_argon2id_with_production_cost() {
    let server = Server::start();
    server.add_mailbox("alice", "same-password", &[]);
    server.add_mailbox("bob", "same-password", &[]);
    for user in ["alice", "bob"] {
        let (status, body) = call(
            &server,
            user,
            "same-password",
            &format!(r#"<ResetPIN xmlns="{M}"/>"#),
        );
        assert_eq!(status, 200, "{body}");
    }
    let db = rusqlite::Connection::open(server.data_dir().join("umws.sqlite3")).unwrap();
    let rows: Vec<(String, String, String)> = db
        .prepare("SELECT user_name, password_hash, pin_hash FROM mailboxes WHERE pin_hash IS NOT NULL AND user_name != 'demo' ORDER BY user_name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2);
    for (user, password_hash, pin_hash) in &rows {
        for hash in [password_hash, pin_hash] {
            assert!(
                hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
                "{user}: {hash}"
            );
            let salt = hash.split('$').nth(4).unwrap();
            assert!(salt.len() >= 22, "a 16-byte salt or more: {hash}");
        }
        assert!(!password_hash.contains("same-password"));
    }
    assert_ne!(
        rows[0].1, rows[1].1,
        "equal passwords hash differently (salted)"
    );
    // No PIN in clear anywhere in the database file.
    let pins: Vec<String> = ["alice", "bob"]
        .iter()
        .map(|u| common::pin_in_mail(&server.mails(u)[0]))
        .collect();
    let raw = std::fs::read(server.data_dir().join("umws.sqlite3")).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    for pin in &pins {
        assert!(
            !raw.contains(&format!("Your new PIN is: {pin}")),
            "no queued mail left holding a PIN"
        );
    }
}

#[test]
fn credentials_of_one_mailbox_never_reach_another() {
    let server = Server::start();
    server.add_mailbox("alice", "alice-pw", &[]);
    server.add_mailbox("bob", "bob-pw", &[]);
    // Alice changes her settings and resets her PIN.
    let (status, _) = call(
        &server,
        "alice",
        "alice-pw",
        &format!(r#"<SetOofStatus xmlns="{M}"><status>true</status></SetOofStatus>"#),
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        &server,
        "alice",
        "alice-pw",
        &format!(r#"<ResetPIN xmlns="{M}"/>"#),
    );
    assert_eq!(status, 200);
    // Bob sees his own, unchanged settings; no mail reached him.
    let (status, body) = call(
        &server,
        "bob",
        "bob-pw",
        &format!(r#"<GetUMProperties xmlns="{M}"/>"#),
    );
    assert_eq!(status, 200);
    assert!(body.contains("<OofStatus>false</OofStatus>"), "{body}");
    assert!(server.mails("bob").is_empty());
    assert_eq!(server.mails("alice").len(), 1);
    // Alice's password does not open Bob's mailbox, nor the other way round.
    assert_eq!(
        call(
            &server,
            "bob",
            "alice-pw",
            &format!(r#"<ResetPIN xmlns="{M}"/>"#)
        )
        .0,
        401
    );
    assert_eq!(
        call(
            &server,
            "alice",
            "bob-pw",
            &format!(r#"<ResetPIN xmlns="{M}"/>"#)
        )
        .0,
        401
    );
    assert!(server.mails("bob").is_empty());
    assert_eq!(server.mails("alice").len(), 1);
    // A request cannot name another mailbox: unknown children are refused.
    let (status, body) = call(
        &server,
        "alice",
        "alice-pw",
        &format!(r#"<ResetPIN xmlns="{M}"><Mailbox>bob</Mailbox></ResetPIN>"#),
    );
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("ErrorInvalidRequest"));
    assert!(server.mails("bob").is_empty());
}

/// `umws serve` with `header_read_timeout_secs`, `body_read_timeout_secs` and
/// `max_connections` from its config file: a client that stops in the middle of its request
/// head loses the connection, one that stops in the middle of its body is answered 408 and
/// loses it too, and while a silent client holds the only connection slot the next client
/// waits, until the head timeout frees the slot.
#[test]
fn slow_clients_are_cut_off_and_connections_limited_as_configured() {
    use std::io::{Read as _, Write as _};
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "header_read_timeout_secs = 1\nbody_read_timeout_secs = 1\nmax_connections = 1\n",
    )
    .unwrap();
    let server = Server::start_with(&["--config", config.path().to_str().unwrap()]);
    let addr = server.base.trim_start_matches("http://");
    let until_closed = |request: &[u8]| {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        // Far beyond the configured second: the test fails rather than hangs.
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut seen = Vec::new();
        stream
            .read_to_end(&mut seen)
            .expect("the server closes the connection");
        String::from_utf8_lossy(&seen).into_owned()
    };
    let head = until_closed(b"POST /UnifiedMessaging/Service.asmx HTTP/1.1\r\nHost: x\r\n");
    assert!(!head.contains(" 200 "), "{head}");
    let auth = basic("demo", &server.demo_password);
    let request = format!(
        "POST /UnifiedMessaging/Service.asmx HTTP/1.1\r\nHost: x\r\n\
         Content-Type: text/xml; charset=utf-8\r\nAuthorization: {auth}\r\n\
         Content-Length: 500\r\n\r\n<soap:Envelope"
    );
    let body = until_closed(request.as_bytes());
    assert!(
        body.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{body}"
    );

    // One silent connection holds the only slot; a whole request behind it waits.
    let _silent = std::net::TcpStream::connect(addr).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let request = format!(
        "POST /UnifiedMessaging/Service.asmx HTTP/1.1\r\nHost: x\r\n\
         Content-Type: text/xml; charset=utf-8\r\nAuthorization: {auth}\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{RESET_PIN_BODY}",
        RESET_PIN_BODY.len()
    );
    let started = std::time::Instant::now();
    let answer = until_closed(request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(500),
        "answered while the silent connection held the only slot"
    );
}
