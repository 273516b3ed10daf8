//! HTTPS: `umws serve --tls-cert --tls-key` with a certificate from a test
//! CA; the typed client trusts exactly that CA.

mod common;

use std::path::Path;

use umws::types;
use umws::um_service_soap::UmServiceSoapClient;
use umws_soap::client::{ClientError, Transport};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA and a server certificate for 127.0.0.1 and localhost.
    fn new() -> Self {
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
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        // A CA the server's certificate does not come from.
        let other_key = rcgen::KeyPair::generate().unwrap();
        let other = ca_params.self_signed(&other_key).unwrap();
        std::fs::write(dir.path().join("other-ca.pem"), other.pem()).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

fn client(url: &str, ca: &Path, password: &str) -> UmServiceSoapClient {
    let tls = umws_soap::tls::client_config(ca).unwrap();
    UmServiceSoapClient::new(
        Transport::with_tls(url, tls)
            .unwrap()
            .with_basic_auth("demo", password),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_typed_client_that_trusts_the_ca() {
    let pki = Pki::new();
    let server = common::Server::start_with(&[
        "--tls-cert",
        &pki.path("cert.pem"),
        "--tls-key",
        &pki.path("key.pem"),
    ]);
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let url = server.url();

    let c = client(&url, Path::new(&pki.path("ca.pem")), &server.demo_password);
    assert!(
        c.is_um_enabled(&types::IsUmEnabled {})
            .await
            .unwrap()
            .is_um_enabled_response
    );
    c.reset_pin(&types::ResetPin {}).await.unwrap();
    let mails = server.mails("demo");
    assert_eq!(mails.len(), 1);
    let pin = common::pin_in_mail(&mails[0]);
    assert_eq!(common::pin_check(server.data_dir(), "demo", &pin), 0);

    // A client that trusts another CA refuses the server.
    let untrusting = client(
        &url,
        Path::new(&pki.path("other-ca.pem")),
        &server.demo_password,
    );
    assert!(matches!(
        untrusting.is_um_enabled(&types::IsUmEnabled {}).await,
        Err(ClientError::Transport(_))
    ));
    // Plain HTTP to the TLS port gets no SOAP answer.
    let plain = UmServiceSoapClient::new(
        Transport::new(&url.replace("https://", "http://"))
            .unwrap()
            .with_basic_auth("demo", &server.demo_password),
    );
    assert!(plain.is_um_enabled(&types::IsUmEnabled {}).await.is_err());
    // An https URL without a trusted CA is refused up front.
    assert!(matches!(
        Transport::new(&url),
        Err(ClientError::InvalidUrl { .. })
    ));

    // The command line client with --ca-cert.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_umws"))
        .args([
            "client",
            "is-um-enabled",
            "--url",
            &url,
            "--user",
            "demo",
            "--password",
            &server.demo_password,
        ])
        .args(["--ca-cert", &pki.path("ca.pem")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true");
}

#[test]
fn bad_tls_files_are_reported() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_umws"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.path().to_str().unwrap(),
        ])
        .args([
            "--tls-cert",
            &pki.path("key.pem"),
            "--tls-key",
            &pki.path("key.pem"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
