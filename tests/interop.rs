//! Interop with a real third-party SOAP client: Python's `zeep`.
//!
//! Each test starts a real `umws serve`, then runs
//! `python -I tests/interop/zeep_client.py URL USER PASSWORD OP...` (the Python of the test
//! virtual environment, made from `tests/requirements.txt` by `tests/common/env.rs`), which
//! loads the served `?wsdl` (and the schemas it imports) with zeep, calls the
//! operations with HTTP Basic authentication and prints what came back as
//! JSON. The assertions are made here.
//!
//! The tests install zeep themselves (into `target/test-env/python/venv`); when they cannot,
//! they fail saying why, unless `UMWS_SKIP_INTEROP=1` is set.

mod common;

use std::path::Path;

use common::{pin_check, pin_in_mail, Server};
use json::Json;

const ERRORS_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";
const MESSAGES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";

/// A well-formed call id (base64 of `"<uuid>@<host>"`) that no call has.
const UNKNOWN_CALL_ID: &str =
    "NDFiMmU3YzAtYjA1Ny00YjYzLWE4ZTAtN2E0ZDdjNzQ1ZTQ4QHVtLmV4YW1wbGUuY29t";

/// Whether the interop tests should run: `false` (with a message) when
/// `UMWS_SKIP_INTEROP=1`; otherwise provides the test virtual environment with zeep (see
/// `tests/common/env.rs`), panicking with what to do when it cannot.
fn zeep_required() -> bool {
    if std::env::var("UMWS_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("SKIPPED: zeep interop test (UMWS_SKIP_INTEROP=1)");
        return false;
    }
    common::python_exe();
    true
}

/// Runs the zeep client against `url` and returns its JSON report.
fn zeep(url: &str, user: &str, password: &str, ops: &[&str]) -> Json {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/zeep_client.py");
    let out = common::python()
        .arg(&script)
        .args([url, user, password])
        .args(ops)
        .output()
        .expect("run the test virtual environment's python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "zeep_client.py failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    json::parse(&stdout)
        .unwrap_or_else(|e| panic!("zeep_client.py printed invalid JSON ({e}):\n{stdout}"))
}

/// The results of a zeep run, one per operation, in order.
fn results(report: &Json) -> &[Json] {
    report
        .get("results")
        .and_then(Json::as_array)
        .unwrap_or_else(|| panic!("no results in {report:?}"))
}

/// The value zeep returned for a successful call.
fn ok_value<'a>(result: &'a Json, op: &str) -> &'a Json {
    assert_eq!(result.str_at("op"), Some(op), "{result:?}");
    assert_eq!(
        result.str_at("outcome"),
        Some("ok"),
        "{op} should succeed: {result:?}"
    );
    result.get("value").expect("value")
}

/// Checks that zeep raised a Fault `{errors}exception` with
/// `<ExceptionType xmlns="...messages">exception</ExceptionType>` in its detail.
fn assert_application_fault(result: &Json, op: &str, exception: &str) {
    assert_eq!(result.str_at("op"), Some(op), "{result:?}");
    assert_eq!(
        result.str_at("outcome"),
        Some("fault"),
        "{op} should fault: {result:?}"
    );
    let fault = result.get("fault").expect("fault");
    assert_eq!(
        fault.str_at("namespace"),
        Some(ERRORS_NS),
        "{op}: {fault:?}"
    );
    assert_eq!(fault.str_at("local"), Some(exception), "{op}: {fault:?}");
    assert_eq!(
        fault.str_at("code"),
        Some(format!("a:{exception}").as_str()),
        "{op}: {fault:?}"
    );
    assert_eq!(fault.str_at("lang"), Some("en-US"), "{op}: {fault:?}");
    let message = fault.str_at("message").unwrap_or_default();
    assert!(!message.trim().is_empty(), "{op}: empty faultstring");
    let detail = fault
        .get("detail")
        .and_then(Json::as_array)
        .expect("detail");
    assert_eq!(detail.len(), 1, "{op}: {detail:?}");
    assert_eq!(detail[0].str_at("namespace"), Some(MESSAGES_NS), "{op}");
    assert_eq!(detail[0].str_at("local"), Some("ExceptionType"), "{op}");
    assert_eq!(detail[0].str_at("text"), Some(exception), "{op}");
}

/// The pinned version of `package` in `tests/requirements.txt`.
fn pinned(package: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/requirements.txt"),
    )
    .expect("tests/requirements.txt");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{package}==")))
        .map(|rest| rest.trim_end_matches(['\\', ' ']).to_owned())
        .unwrap_or_else(|| panic!("{package} is not pinned in tests/requirements.txt"))
}

#[test]
fn the_python_tools_come_from_the_test_virtual_environment() {
    if !zeep_required() {
        return;
    }
    // What the interpreter the tests run reports about itself and where it found the tools.
    let script = r#"
import json, sys, zeep, aiosmtpd
print(json.dumps({
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "path": sys.path,
    "user_site": sys.flags.no_user_site,
    "zeep": zeep.__file__,
    "zeep_version": zeep.__version__,
    "aiosmtpd": aiosmtpd.__file__,
    "aiosmtpd_version": aiosmtpd.__version__,
}))
"#;
    let out = common::python()
        .args(["-c", script])
        .env("PYTHONPATH", "/usr/lib/python3/dist-packages")
        .output()
        .expect("run the test virtual environment's python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json::parse(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let venv = std::fs::canonicalize(common::venv_dir()).expect("the venv exists");
    let under_venv = |key: &str| {
        let path = report
            .str_at(key)
            .unwrap_or_else(|| panic!("{key} in {report:?}"));
        let path = std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            path.starts_with(&venv),
            "{key} = {} is not in the test virtual environment {}",
            path.display(),
            venv.display()
        );
    };
    // The interpreter is the virtual environment's, in target/ ...
    under_venv("prefix");
    let target = std::fs::canonicalize(common::test_env_dir()).unwrap();
    assert!(venv.starts_with(&target), "{}", venv.display());
    assert_ne!(report.str_at("prefix"), report.str_at("base_prefix"));
    // ... and the packages come from it, at the pinned versions.
    under_venv("zeep");
    under_venv("aiosmtpd");
    assert_eq!(report.str_at("zeep_version"), Some(pinned("zeep").as_str()));
    assert_eq!(
        report.str_at("aiosmtpd_version"),
        Some(pinned("aiosmtpd").as_str())
    );
    // No site-packages of the system or the user is on the path (isolated mode ignores
    // PYTHONPATH, set above to the system's dist-packages).
    assert_eq!(
        report.get("user_site"),
        Some(&Json::Number(1.0)),
        "{report:?}"
    );
    let path = report.get("path").and_then(Json::as_array).expect("path");
    for entry in path {
        let Json::String(entry) = entry else {
            panic!("{entry:?}")
        };
        if entry.contains("site-packages") || entry.contains("dist-packages") {
            let entry = std::fs::canonicalize(entry).unwrap_or_else(|_| entry.into());
            assert!(
                entry.starts_with(&venv),
                "sys.path holds {} outside the test virtual environment: {path:?}",
                entry.display()
            );
        }
    }
}

#[test]
fn zeep_calls_every_operation() {
    if !zeep_required() {
        return;
    }
    let server = Server::start();
    let mails_before = server.mails("demo").len();
    let report = zeep(
        &server.url(),
        "demo",
        &server.demo_password,
        &[
            "IsUMEnabled",
            r#"SetOofStatus:{"status": true}"#,
            "GetUMProperties",
            r#"SetOofStatus:{"status": false}"#,
            r#"SetPlayOnPhoneDialString:{"dialString": "+1 (425) 555-0100"}"#,
            r#"SetTelephoneAccessFolderEmail:{"base64FolderId": "AAECAwQFBgc="}"#,
            r#"SetMissedCallNotificationEnabled:{"status": true}"#,
            "GetUMProperties",
            "ResetPIN",
            r#"PlayOnPhone:{"entryId": "AAECAw==", "DialString": "+1 425 555 0100"}"#,
            r#"PlayOnPhoneGreeting:{"GreetingType": "OofCustom", "DialString": "4100"}"#,
            &format!(r#"GetCallInfo:{{"CallId": "{UNKNOWN_CALL_ID}"}}"#),
            &format!(r#"Disconnect:{{"CallId": "{UNKNOWN_CALL_ID}"}}"#),
            r#"PlayOnPhone:{"entryId": "not base64!", "DialString": "4100"}"#,
        ],
    );
    let r = results(&report);
    assert_eq!(r.len(), 14, "{report:?}");

    assert_eq!(ok_value(&r[0], "IsUMEnabled"), &Json::Bool(true));

    assert_eq!(ok_value(&r[1], "SetOofStatus"), &Json::Null);
    let props = ok_value(&r[2], "GetUMProperties");
    assert_eq!(props.get("OofStatus"), Some(&Json::Bool(true)), "{props:?}");

    assert_eq!(ok_value(&r[3], "SetOofStatus"), &Json::Null);
    assert_eq!(ok_value(&r[4], "SetPlayOnPhoneDialString"), &Json::Null);
    assert_eq!(
        ok_value(&r[5], "SetTelephoneAccessFolderEmail"),
        &Json::Null
    );
    assert_eq!(
        ok_value(&r[6], "SetMissedCallNotificationEnabled"),
        &Json::Null
    );
    let props = ok_value(&r[7], "GetUMProperties");
    assert_eq!(
        props.get("OofStatus"),
        Some(&Json::Bool(false)),
        "{props:?}"
    );
    assert_eq!(
        props.get("MissedCallNotificationEnabled"),
        Some(&Json::Bool(true)),
        "{props:?}"
    );
    assert_eq!(
        props.str_at("PlayOnPhoneDialString"),
        Some("+1 (425) 555-0100")
    );
    assert_eq!(
        props.str_at("TelephoneAccessFolderEmail"),
        Some("AAECAwQFBgc=")
    );

    assert_eq!(ok_value(&r[8], "ResetPIN"), &Json::Null);
    let mails = server.mails("demo");
    assert_eq!(
        mails.len(),
        mails_before + 1,
        "ResetPIN through zeep should deliver exactly one mail"
    );
    let pin = pin_in_mail(mails.last().expect("the new mail"));
    assert_eq!(
        pin_check(server.data_dir(), "demo", &pin),
        0,
        "the PIN mailed after zeep's ResetPIN should be accepted"
    );

    assert_application_fault(&r[9], "PlayOnPhone", "TransportException");
    assert_application_fault(&r[10], "PlayOnPhoneGreeting", "TransportException");
    assert_application_fault(&r[11], "GetCallInfo", "InvalidCallIdException");
    assert_application_fault(&r[12], "Disconnect", "InvalidCallIdException");
    assert_application_fault(&r[13], "PlayOnPhone", "InvalidObjectIdException");
}

#[test]
fn zeep_with_wrong_password_gets_http_401() {
    if !zeep_required() {
        return;
    }
    let server = Server::start();
    let report = zeep(
        &server.url(),
        "demo",
        "not-the-password",
        &["IsUMEnabled", "ResetPIN"],
    );
    // The WSDL may itself be protected; then loading it is what fails.
    if let Some(load) = report.get("load_error") {
        assert_eq!(load.get("status"), Some(&Json::Number(401.0)), "{report:?}");
    } else {
        for result in results(&report) {
            assert_eq!(result.str_at("outcome"), Some("http_error"), "{result:?}");
            assert_eq!(
                result.get("status"),
                Some(&Json::Number(401.0)),
                "{result:?}"
            );
        }
    }
    assert!(
        server.mails("demo").is_empty(),
        "a refused ResetPIN must not mail a PIN"
    );
}

#[test]
fn zeep_sees_non_um_user_faults() {
    if !zeep_required() {
        return;
    }
    let server = Server::start();
    server.add_mailbox("plain", "plain-password-1", &["--no-um"]);
    let report = zeep(
        &server.url(),
        "plain",
        "plain-password-1",
        &[
            "IsUMEnabled",
            "GetUMProperties",
            r#"SetOofStatus:{"status": true}"#,
            "ResetPIN",
        ],
    );
    let r = results(&report);
    assert_eq!(r.len(), 4, "{report:?}");
    assert_eq!(ok_value(&r[0], "IsUMEnabled"), &Json::Bool(false));
    assert_application_fault(&r[1], "GetUMProperties", "UserNotUmEnabledException");
    assert_application_fault(&r[2], "SetOofStatus", "UserNotUmEnabledException");
    assert_application_fault(&r[3], "ResetPIN", "UserNotUmEnabledException");
    assert!(
        server.mails("plain").is_empty(),
        "no PIN mail for a non-UM user"
    );
}

#[test]
fn zeep_uses_the_exchange_2010_endpoint() {
    if !zeep_required() {
        return;
    }
    let server = Server::start();
    // zeep posts to the address in the WSDL it loaded, which must be the
    // legacy path it was fetched from.
    let report = zeep(
        &server.legacy_url(),
        "demo",
        &server.demo_password,
        &[r#"SetOofStatus:{"status": true}"#, "GetUMProperties"],
    );
    let r = results(&report);
    assert_eq!(ok_value(&r[0], "SetOofStatus"), &Json::Null);
    let props = ok_value(&r[1], "GetUMProperties");
    assert_eq!(props.get("OofStatus"), Some(&Json::Bool(true)), "{props:?}");
}

/// A small JSON reader for the client's report (the tests have no JSON
/// crate).
mod json {
    use std::collections::BTreeMap;

    /// A JSON value.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Json {
        Null,
        Bool(bool),
        Number(f64),
        String(String),
        Array(Vec<Json>),
        Object(BTreeMap<String, Json>),
    }

    impl Json {
        /// The member `key` of an object.
        pub fn get(&self, key: &str) -> Option<&Json> {
            match self {
                Json::Object(m) => m.get(key),
                _ => None,
            }
        }

        /// The string member `key` of an object.
        pub fn str_at(&self, key: &str) -> Option<&str> {
            match self.get(key) {
                Some(Json::String(s)) => Some(s),
                _ => None,
            }
        }

        /// The items of an array.
        pub fn as_array(&self) -> Option<&[Json]> {
            match self {
                Json::Array(a) => Some(a),
                _ => None,
            }
        }
    }

    /// Parses one JSON document (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }

        fn err<T>(&self, what: &str) -> Result<T, String> {
            Err(format!("{what} at byte {}", self.i))
        }

        fn eat(&mut self, lit: &str) -> Result<(), String> {
            if self.s[self.i..].starts_with(lit.as_bytes()) {
                self.i += lit.len();
                Ok(())
            } else {
                self.err(&format!("expected {lit}"))
            }
        }

        fn value(&mut self) -> Result<Json, String> {
            self.ws();
            match self.s.get(self.i) {
                Some(b'n') => self.eat("null").map(|_| Json::Null),
                Some(b't') => self.eat("true").map(|_| Json::Bool(true)),
                Some(b'f') => self.eat("false").map(|_| Json::Bool(false)),
                Some(b'"') => self.string().map(Json::String),
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Json::Array(items));
                    }
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Json::Array(items));
                            }
                            _ => return self.err("expected , or ]"),
                        }
                    }
                }
                Some(b'{') => {
                    self.i += 1;
                    let mut members = BTreeMap::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Json::Object(members));
                    }
                    loop {
                        self.ws();
                        if self.s.get(self.i) != Some(&b'"') {
                            return self.err("expected a member name");
                        }
                        let key = self.string()?;
                        self.ws();
                        self.eat(":")?;
                        let value = self.value()?;
                        members.insert(key, value);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Json::Object(members));
                            }
                            _ => return self.err("expected , or }"),
                        }
                    }
                }
                Some(c) if *c == b'-' || c.is_ascii_digit() => {
                    let start = self.i;
                    while self.i < self.s.len()
                        && matches!(
                            self.s[self.i],
                            b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                        )
                    {
                        self.i += 1;
                    }
                    let text = std::str::from_utf8(&self.s[start..self.i]).expect("ascii");
                    text.parse()
                        .map(Json::Number)
                        .map_err(|_| format!("bad number {text}"))
                }
                _ => self.err("expected a value"),
            }
        }

        fn hex4(&mut self) -> Result<u32, String> {
            let digits = self
                .s
                .get(self.i..self.i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok());
            match digits {
                Some(v) => {
                    self.i += 4;
                    Ok(v)
                }
                None => self.err("bad \\u escape"),
            }
        }

        fn string(&mut self) -> Result<String, String> {
            self.eat("\"")?;
            let mut out = Vec::new();
            loop {
                let Some(&c) = self.s.get(self.i) else {
                    return self.err("unterminated string");
                };
                self.i += 1;
                match c {
                    b'"' => break,
                    b'\\' => {
                        let Some(&e) = self.s.get(self.i) else {
                            return self.err("unterminated escape");
                        };
                        self.i += 1;
                        let ch = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xD800..0xDC00).contains(&hi) {
                                    self.eat("\\u")?;
                                    let lo = self.hex4()?;
                                    0x10000
                                        + ((hi - 0xD800) << 10)
                                        + (lo.wrapping_sub(0xDC00) & 0x3FF)
                                } else {
                                    hi
                                };
                                char::from_u32(code).unwrap_or('\u{FFFD}')
                            }
                            _ => return self.err("bad escape"),
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => out.push(c),
                }
            }
            String::from_utf8(out).map_err(|e| e.to_string())
        }
    }

    #[test]
    fn parses_the_report_shapes() {
        let v = parse(r#" {"a": [1, -2.5e1, true, false, null], "b": "x\"\u00e9\ud83d\ude00"} "#)
            .unwrap();
        assert_eq!(
            v.get("a").and_then(Json::as_array).unwrap(),
            &[
                Json::Number(1.0),
                Json::Number(-25.0),
                Json::Bool(true),
                Json::Bool(false),
                Json::Null
            ]
        );
        assert_eq!(v.str_at("b"), Some("x\"\u{e9}\u{1F600}"));
        assert!(parse("{").is_err());
        assert!(parse("[1] 2").is_err());
    }
}
