//! TLS to PostgreSQL, chosen by the database URL as libpq chooses it (`sslmode`,
//! `sslrootcert`): a private cluster of the test's own with a certificate from a test CA, which
//! takes TCP connections over TLS only (`hostssl`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::postgres::PrivateCluster;
use common::{maildir_mails, pin_in_mail, run_umws, try_reset_pin, wait_until, Sent, Serve};

/// A CA, a server certificate it signs for 127.0.0.1 and localhost, and another CA.
struct Pki {
    dir: tempfile::TempDir,
    cert: String,
    key: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.clone().self_signed(&ca_key).unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap();
        let other = ca_params.self_signed(&other_key).unwrap();
        std::fs::write(dir.path().join("other-ca.pem"), other.pem()).unwrap();
        Pki {
            dir,
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

/// `url` with `query` appended.
fn with_query(url: &str, query: &str) -> String {
    format!("{url}?{query}")
}

/// `umws mailbox add --database URL`: whether it worked, and what it printed.
fn mailbox_add(data: &Path, url: &str, user: &str) -> (bool, String) {
    let out = run_umws(&[
        "mailbox",
        "add",
        "--data",
        data.to_str().unwrap(),
        "--database",
        url,
        "--user",
        user,
        "--password",
        "pw",
    ]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn password_of(url: &str) -> &str {
    let rest = url.split_once("://").unwrap().1;
    let userinfo = rest.split_once('@').unwrap().0;
    userinfo.split_once(':').unwrap().1
}

#[test]
fn tls_to_postgres_as_the_url_says() {
    let pki = Pki::new();
    let cluster =
        PrivateCluster::start_tls(common::apt_install, &pki.cert, &pki.key).expect("a cluster");
    let password = password_of(&cluster.url).to_owned();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();

    // verify-full against the CA that signed the server's certificate: the command line and
    // the service work, and a ResetPIN is mailed.
    let verified = with_query(
        &cluster.url,
        &format!("sslmode=verify-full&sslrootcert={}", pki.path("ca.pem")),
    );
    let (ok, text) = mailbox_add(dir, &verified, "one");
    assert!(ok, "{text}");
    let server = Serve::start_with(dir, &["--database", &verified]);
    assert_eq!(try_reset_pin(&server.base, "one", "pw"), Sent::Status(200));
    assert!(
        wait_until(Duration::from_secs(30), || maildir_mails(dir, "one").len()
            == 1),
        "the PIN mail arrives"
    );
    let pin = pin_in_mail(&maildir_mails(dir, "one")[0].1);
    drop(server);
    let out = run_umws(&[
        "pin",
        "check",
        "--data",
        dir.to_str().unwrap(),
        "--database",
        &verified,
        "--user",
        "one",
        "--pin",
        &pin,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without sslmode the connection is plain, and this server refuses it, saying so.
    let (ok, text) = mailbox_add(dir, &cluster.url, "two");
    assert!(!ok, "a plain connection is refused: {text}");
    assert!(text.contains("no encryption"), "{text}");
    assert!(!text.contains(&password), "{text}");
    let refused = Serve::spawn(dir, &["--database", &cluster.url], None)
        .err()
        .expect("serve refuses to start on a plain connection");
    assert!(refused.contains("no encryption"), "{refused}");

    // verify-full (and verify-ca) with a CA that did not sign the certificate: refused, with
    // the certificate named as the cause.
    for mode in ["verify-full", "verify-ca"] {
        let url = with_query(
            &cluster.url,
            &format!("sslmode={mode}&sslrootcert={}", pki.path("other-ca.pem")),
        );
        let (ok, text) = mailbox_add(dir, &url, "two");
        assert!(!ok, "{mode} with another CA: {text}");
        assert!(text.contains("certificate"), "{mode}: {text}");
        assert!(!text.contains(&password), "{text}");
    }

    // require: encrypted, the certificate not checked (as libpq, when no root certificate is
    // given), so a server whose CA the client does not know is accepted.
    let (ok, text) = mailbox_add(dir, &with_query(&cluster.url, "sslmode=require"), "two");
    assert!(ok, "{text}");
    // ... but with a root certificate given, require checks the chain (libpq does the same).
    let (ok, text) = mailbox_add(
        dir,
        &with_query(
            &cluster.url,
            &format!("sslmode=require&sslrootcert={}", pki.path("other-ca.pem")),
        ),
        "three",
    );
    assert!(!ok, "require with another CA given: {text}");
    assert!(text.contains("certificate"), "{text}");
    // verify-ca checks the chain but not the name: the right CA, reached under a name the
    // certificate does not hold, works with verify-ca and not with verify-full.
    // (The server at 127.0.0.1 under the name `db.invalid`.)
    let other_name = cluster.url.replace("@127.0.0.1:", "@db.invalid:");
    let (ok, text) = mailbox_add(
        dir,
        &with_query(
            &other_name,
            &format!(
                "hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
                pki.path("ca.pem")
            ),
        ),
        "three",
    );
    assert!(!ok, "verify-full under another name: {text}");
    assert!(text.contains("certificate"), "{text}");
    let (ok, text) = mailbox_add(
        dir,
        &with_query(
            &other_name,
            &format!(
                "hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={}",
                pki.path("ca.pem")
            ),
        ),
        "three",
    );
    assert!(ok, "verify-ca under another name: {text}");
}
