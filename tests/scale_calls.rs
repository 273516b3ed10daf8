//! The call operations across instances: two `umws serve` on one PostgreSQL database (the
//! private test cluster of `common::postgres`, or `UMWS_TEST_DATABASE_URL`), sipp as the phone.
//! A call placed by PlayOnPhone through instance A is followed by GetCallInfo through B and
//! ended by Disconnect through B (which A executes: sipp sees the CANCEL or the BYE); another
//! user's call id stays unknown on B; a call whose instance died is reported ended on B.

mod common;

use common::sip::{tone_wav, Sipp};

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::postgres::{liveness_locks, Stopped, TestDatabase};
use common::Serve;
use umws::types::{self, UmCallStateType as State, UmEventCauseType as Cause};
use umws::um_service_soap::UmServiceSoapClient;
use umws_soap::client::{ClientError, Transport};

/// A guard against a hung test (never an assertion on speed).
const GUARD: Duration = Duration::from_secs(60);

fn database() -> TestDatabase {
    common::postgres::test_database(&common::test_env_dir(), common::apt_install)
}

/// `umws ARGS --data DATA --database URL ...`, which must succeed; its stdout.
fn umws(words: &[&str], data: &Path, url: &str, rest: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_umws"))
        .args(words)
        .arg("--data")
        .arg(data)
        .args(["--database", url])
        .args(rest)
        .env("UMWS_LOG", "warn")
        .output()
        .expect("umws runs");
    assert!(
        out.status.success(),
        "umws {words:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The generated client of one user on one instance.
struct Um {
    rt: tokio::runtime::Runtime,
    client: UmServiceSoapClient,
}

impl Um {
    fn new(server: &Serve, user: &str, password: &str) -> Um {
        let transport = Transport::new(&format!("{}/UnifiedMessaging/Service.asmx", server.base))
            .expect("URL")
            .with_basic_auth(user, password)
            .with_timeout(GUARD);
        Um {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: UmServiceSoapClient::new(transport),
        }
    }

    fn play(&self, entry_id: &str, dial: &str) -> String {
        let r = self
            .rt
            .block_on(self.client.play_on_phone(&types::PlayOnPhone {
                entry_id: Some(entry_id.into()),
                dial_string: Some(dial.into()),
            }))
            .expect("PlayOnPhone");
        r.play_on_phone_response.expect("a call id")
    }

    fn info(&self, call_id: &str) -> Result<(State, Cause), ClientError> {
        let r = self
            .rt
            .block_on(self.client.get_call_info(&types::GetCallInfo {
                call_id: Some(call_id.into()),
            }))?;
        let info = r.get_call_info_response;
        Ok((info.call_state, info.event_cause))
    }

    fn disconnect(&self, call_id: &str) -> Result<(), ClientError> {
        self.rt
            .block_on(self.client.disconnect(&types::Disconnect {
                call_id: Some(call_id.into()),
            }))
            .map(drop)
    }

    /// Polls GetCallInfo until the state is `want`.
    fn until(&self, call_id: &str, want: State) -> Cause {
        let deadline = Instant::now() + GUARD;
        loop {
            let (state, cause) = self.info(call_id).expect("GetCallInfo");
            if state == want {
                return cause;
            }
            assert!(
                Instant::now() < deadline,
                "the call stayed {state:?}, not {want:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The ExceptionType of a fault.
fn exception(result: Result<impl std::fmt::Debug, ClientError>) -> String {
    let error = result.expect_err("a fault");
    let fault = error
        .fault()
        .unwrap_or_else(|| panic!("expected a fault, got {error}"));
    fault
        .detail_text("ExceptionType")
        .unwrap_or_else(|| panic!("no ExceptionType in {fault:?}"))
        .to_owned()
}

/// Two instances on one database, alice and bob in it, a long voice message of alice's.
struct Setup {
    db: TestDatabase,
    _tmp: tempfile::TempDir,
    a: Serve,
    b: Serve,
    entry_id: String,
}

fn setup() -> Setup {
    let db = database();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    for user in ["alice", "bob"] {
        umws(
            &["mailbox", "add"],
            &dir,
            &db.url,
            &["--user", user, "--password", &format!("{user}-pw")],
        );
    }
    let wav = tmp.path().join("tone.wav");
    std::fs::write(&wav, tone_wav(60.0)).unwrap();
    let entry_id = umws(
        &["voicemail", "deposit"],
        &dir,
        &db.url,
        &["--user", "alice", "--wav", wav.to_str().unwrap()],
    )
    .trim()
    .to_owned();
    let a = Serve::start_with(&dir, &["--database", &db.url]);
    let b = Serve::start_with(&dir, &["--database", &db.url]);
    Setup {
        db,
        _tmp: tmp,
        a,
        b,
        entry_id,
    }
}

/// A call of alice's placed through A to an answering sipp, once B sees it Connected.
struct Connected {
    on_a: Um,
    on_b: Um,
    /// Where the phone's RTP goes (kept open for the call).
    _rtp: UdpSocket,
    phone: Sipp,
    call_id: String,
}

fn connected_call(s: &Setup) -> Connected {
    let on_a = Um::new(&s.a, "alice", "alice-pw");
    let on_b = Um::new(&s.b, "alice", "alice-pw");
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let phone = Sipp::answering(&rtp);
    let call_id = on_a.play(&s.entry_id, &phone.uri());
    assert_eq!(on_b.until(&call_id, State::Connected), Cause::None);
    Connected {
        on_a,
        on_b,
        _rtp: rtp,
        phone,
        call_id,
    }
}

/// A ringing call placed through A: B sees it Connecting, B's Disconnect makes A cancel it
/// (sipp gets the CANCEL), and B then sees it Disconnected.
#[test]
fn a_call_placed_on_one_instance_is_followed_and_cancelled_on_another() {
    let s = setup();
    let on_a = Um::new(&s.a, "alice", "alice-pw");
    let on_b = Um::new(&s.b, "alice", "alice-pw");
    let phone = Sipp::ringing();
    let call_id = on_a.play(&s.entry_id, &phone.uri());
    assert_eq!(
        on_b.info(&call_id).unwrap(),
        (State::Connecting, Cause::None)
    );

    // Another user's call id is unknown on B as on A.
    let bob_on_b = Um::new(&s.b, "bob", "bob-pw");
    assert_eq!(exception(bob_on_b.info(&call_id)), "InvalidCallIdException");
    assert_eq!(
        exception(bob_on_b.disconnect(&call_id)),
        "InvalidCallIdException"
    );

    on_b.disconnect(&call_id).expect("Disconnect through B");
    assert_eq!(on_b.until(&call_id, State::Disconnected), Cause::None);
    assert_eq!(
        on_a.info(&call_id).unwrap(),
        (State::Disconnected, Cause::None)
    );
    let messages = phone.completed();
    assert!(messages.contains("CANCEL sip:"), "{messages}");
    // A finished call: Disconnect through B succeeds and changes nothing.
    on_b.disconnect(&call_id).expect("Disconnect again");
    assert_eq!(
        on_b.info(&call_id).unwrap(),
        (State::Disconnected, Cause::None)
    );
}

/// An answered call placed through A: B sees it Connected, B's Disconnect makes A send the BYE
/// (the scenario completes only with it), long before the minute of audio is over.
#[test]
fn a_connected_call_is_hung_up_through_another_instance() {
    let s = setup();
    let Connected {
        on_a,
        on_b,
        _rtp,
        phone,
        call_id,
    } = connected_call(&s);
    let asked = Instant::now();
    on_b.disconnect(&call_id).expect("Disconnect through B");
    assert_eq!(on_b.until(&call_id, State::Disconnected), Cause::None);
    // A heard of it by notification, not at its look at the row every 5 s (a functional
    // bound with a wide margin, not a speed goal).
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "the hang-up took {:?}",
        asked.elapsed()
    );
    let messages = phone.completed();
    assert!(messages.contains("BYE sip:"), "{messages}");
    assert_eq!(
        on_a.info(&call_id).unwrap(),
        (State::Disconnected, Cause::None)
    );
    // A call id that no instance placed is unknown on B.
    use base64::Engine as _;
    let unknown = base64::engine::general_purpose::STANDARD
        .encode("41b2e7c0-b057-4b63-a8e0-7a4d7c745e48@127.0.0.1");
    assert_eq!(exception(on_b.info(&unknown)), "InvalidCallIdException");
    assert_eq!(
        exception(on_b.disconnect(&unknown)),
        "InvalidCallIdException"
    );
}

/// The owner of a connected call dies (SIGKILL): B reports the call Disconnected (Other) as
/// soon as A's liveness lock is gone with its connections, well before the 90 s without a
/// heartbeat that would tell otherwise; a Disconnect of it through B succeeds.
#[test]
fn a_call_whose_instance_died_is_reported_ended_on_another() {
    let s = setup();
    let Connected {
        on_b,
        _rtp,
        phone,
        call_id,
        ..
    } = connected_call(&s);
    s.a.kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match on_b.info(&call_id).expect("GetCallInfo through B") {
            (State::Disconnected, cause) => {
                assert_eq!(cause, Cause::Other);
                break;
            }
            state => assert!(
                Instant::now() < deadline,
                "still {state:?} 30 s after its instance died"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    on_b.disconnect(&call_id).expect("Disconnect through B");
    assert_eq!(
        on_b.info(&call_id).unwrap(),
        (State::Disconnected, Cause::Other)
    );
    // (sipp waits for a BYE that no one will send; it is killed on drop)
    drop(phone);
}

/// A's change listener goes silent (its server process stopped, as behind a partition): A
/// listens again under a new liveness lock and moves its running call to it, so that when the
/// stopped process finally goes, and the old lock with it, B still reports the call Connected
/// (the call's row named the old lock until A's next rewrite of it, 30 s later, and B
/// reported the call Disconnected meanwhile).
#[test]
fn a_call_stays_alive_when_its_owners_listener_reconnects() {
    let s = setup();
    let Connected {
        on_b,
        _rtp,
        phone,
        call_id,
        ..
    } = connected_call(&s);
    let owner_key = |url: &str| {
        common::postgres::query_text(
            url,
            &format!("SELECT owner_key FROM calls WHERE call_id = '{call_id}'"),
        )
        .unwrap()[0][0]
            .parse::<i64>()
            .expect("an owner key")
    };
    let old_key = owner_key(&s.db.url);
    let before = liveness_locks(&s.db.url);
    assert_eq!(before.len(), 2, "{before:?}");
    let old = before
        .iter()
        .find(|l| l.key == old_key)
        .expect("the call names A's lock")
        .clone();

    let stopped = Stopped::new(old.pid);
    let mut locks = Vec::new();
    assert!(
        common::wait_until(GUARD, || {
            locks = liveness_locks(&s.db.url);
            locks.len() == 3
        }),
        "A took no new liveness lock: {locks:?}"
    );
    // The old process continues, finds its connection closed and goes with its lock.
    drop(stopped);
    assert!(
        common::wait_until(GUARD, || {
            locks = liveness_locks(&s.db.url);
            !locks.contains(&old)
        }),
        "the old lock stayed: {locks:?}"
    );
    assert_ne!(
        owner_key(&s.db.url),
        old_key,
        "the call still names the old lock"
    );
    for _ in 0..20 {
        assert_eq!(
            on_b.info(&call_id).expect("GetCallInfo through B"),
            (State::Connected, Cause::None)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    on_b.disconnect(&call_id).expect("Disconnect through B");
    assert_eq!(on_b.until(&call_id, State::Disconnected), Cause::None);
    let messages = phone.completed();
    assert!(messages.contains("BYE sip:"), "{messages}");
}
