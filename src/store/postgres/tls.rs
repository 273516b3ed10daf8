//! TLS to the database, chosen by the URL's query as libpq chooses it: `sslmode` (`disable`,
//! `prefer`, `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file of CA
//! certificates, or `system`). The driver itself knows only `disable`, `prefer` and `require`
//! and no `sslrootcert`, so both are taken out of the URL here and the rest handed to it.
//!
//! What each mode does (rustls with the `ring` provider, through `tokio-postgres-rustls`):
//!
//! - no `sslmode`, or `disable`: plain TCP, as before TLS was supported;
//! - `prefer`: TLS when the server offers it, plain otherwise;
//! - `require`: TLS or no connection; the server's certificate is not checked, unless an
//!   `sslrootcert` is given or `~/.postgresql/root.crt` exists, when its chain is (libpq does
//!   the same, for compatibility);
//! - `verify-ca`: TLS, the certificate's chain checked against `sslrootcert` (without one,
//!   against libpq's default file `~/.postgresql/root.crt` when it exists, else - and with
//!   `sslrootcert=system` - the Mozilla roots of `webpki-roots`);
//! - `verify-full`: as `verify-ca`, and the certificate must also name the host of the URL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// The URL's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// What the driver is told: whether to ask the server for TLS, and whether to go on
    /// without it.
    pub(super) fn driver(self) -> DriverSslMode {
        match self {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Prefer => DriverSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
        }
    }
}

/// The URL's `sslrootcert`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RootCert {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// `system`: the Mozilla roots of `webpki-roots`.
    System,
}

/// The TLS settings of a database URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct UrlTls {
    pub mode: SslMode,
    pub root: Option<RootCert>,
}

/// Options of libpq's that are not supported: named in the error rather than refused as an
/// unknown option of an unreadable URL.
const UNSUPPORTED: &[&str] = &["sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir"];

fn bad(reason: &'static str) -> StoreError {
    StoreError::InvalidInput {
        field: "database URL",
        reason,
    }
}

/// Splits `url` into the URL for the driver (without `sslmode` and `sslrootcert`) and its TLS
/// settings.
pub(super) fn split_url(url: &str) -> Result<(String, UrlTls), StoreError> {
    // The query begins at the first `?` after the user information (a password may hold a `?`
    // only percent-encoded, but one never should be cut in two).
    let after_userinfo = url.rfind('@').map_or(0, |i| i + 1);
    let Some(q) = url[after_userinfo..].find('?').map(|i| after_userinfo + i) else {
        return Ok((
            url.to_owned(),
            UrlTls {
                mode: SslMode::Disable,
                root: None,
            },
        ));
    };
    let (base, query) = (&url[..q], &url[q + 1..]);
    let mut mode = None;
    let mut root = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                let value = percent_decode(value)
                    .ok_or(bad("sslmode is not valid percent-encoded UTF-8"))?;
                mode = Some(SslMode::parse(&value).ok_or(bad(
                    "sslmode must be disable, prefer, require, verify-ca or verify-full",
                ))?);
            }
            "sslrootcert" => {
                let value = percent_decode(value)
                    .ok_or(bad("sslrootcert is not valid percent-encoded UTF-8"))?;
                root = Some(match value.as_str() {
                    "" => return Err(bad("sslrootcert is empty")),
                    "system" => RootCert::System,
                    path => RootCert::File(PathBuf::from(path)),
                });
            }
            k if UNSUPPORTED.contains(&k) => {
                return Err(bad(
                    "client certificates and CRLs (sslcert, sslkey, sslpassword, sslcrl, \
                     sslcrldir) are not supported",
                ))
            }
            _ => rest.push(pair),
        }
    }
    let mode = mode.unwrap_or(SslMode::Disable);
    let driver_url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((driver_url, UrlTls { mode, root }))
}

/// `%XX` sequences decoded (as the driver decodes the URL's values); `None` when the result is
/// not UTF-8 or a sequence is malformed.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The CA certificates of `path`, a PEM file.
fn read_roots(path: &Path) -> Result<rustls::RootCertStore, StoreError> {
    let error = |reason: String| StoreError::DatabaseRootCert {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| error(format!("cannot read it: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| error(format!("not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(error("it holds no certificate in PEM form".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| error(format!("a certificate in it is not usable: {e}")))?;
    }
    Ok(roots)
}

fn webpki_roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// The TLS connector for `tls` (reading `sslrootcert` now, so that a bad file is an error at
/// start rather than at the first connection). The connector is used only when the mode is
/// not `disable`.
pub(super) fn connector(tls: &UrlTls) -> Result<MakeRustlsConnect, StoreError> {
    let provider = provider();
    // (libpq's default root file counts where libpq reads it: `require` and the `verify-*`)
    let root = tls.root.clone().or_else(|| match tls.mode {
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            default_root(std::env::var_os("HOME").map(PathBuf::from).as_deref())
        }
        SslMode::Disable | SslMode::Prefer => None,
    });
    let check_chain = matches!(tls.mode, SslMode::VerifyCa | SslMode::VerifyFull)
        || (tls.mode != SslMode::Disable && root.is_some());
    let verifier: Arc<dyn ServerCertVerifier> = if check_chain {
        let roots = match root {
            Some(RootCert::File(path)) => read_roots(&path)?,
            Some(RootCert::System) | None => webpki_roots(),
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| StoreError::DatabaseTls(Box::new(e)))?;
        if tls.mode == SslMode::VerifyFull {
            webpki
        } else {
            Arc::new(ChainOnly(webpki))
        }
    } else {
        Arc::new(NoCheck(provider.clone()))
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::DatabaseTls(Box::new(e)))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The root certificate used without `sslrootcert`: libpq's default file,
/// `~/.postgresql/root.crt`, when there is one under `home` (libpq then refuses to verify;
/// here the Mozilla roots are used instead).
fn default_root(home: Option<&Path>) -> Option<RootCert> {
    let file = home?.join(".postgresql").join("root.crt");
    file.is_file().then_some(RootCert::File(file))
}

/// `verify-ca` (or `require` with a root certificate): the chain is checked, the name is not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is checked after the chain: a name error means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root certificate: encrypted, the certificate taken as it
/// comes (as libpq does); the handshake's signatures are still checked against it.
#[derive(Debug)]
struct NoCheck(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, UrlTls) {
        split_url(url).unwrap()
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let (url, tls) = split("postgres://u:p@h:5432/db");
        assert_eq!(url, "postgres://u:p@h:5432/db");
        assert_eq!(tls.mode, SslMode::Disable);
        let (url, tls) = split(
            "postgres://u:p@h/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem",
        );
        assert_eq!(url, "postgres://u:p@h/db?application_name=x");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root, Some(RootCert::File("/tmp/ca.pem".into())));
        let (url, tls) = split("postgres://u@h/db?sslmode=require&sslrootcert=system");
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(tls.mode, SslMode::Require);
        assert_eq!(tls.root, Some(RootCert::System));
        // A `?` in the (encoded) password is not the query's.
        let (url, _) = split("postgres://u:a%3Fb@h/db?sslmode=prefer");
        assert_eq!(url, "postgres://u:a%3Fb@h/db");
    }

    #[test]
    fn without_sslrootcert_libpqs_default_file_is_used_when_there_is_one() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(default_root(Some(home.path())), None);
        assert_eq!(default_root(None), None);
        let dir = home.path().join(".postgresql");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("root.crt"), "not read here").unwrap();
        assert_eq!(
            default_root(Some(home.path())),
            Some(RootCert::File(dir.join("root.crt")))
        );
    }

    #[test]
    fn bad_tls_options_are_named_and_show_no_password() {
        for url in [
            "postgres://u:secret@h/db?sslmode=verify",
            "postgres://u:secret@h/db?sslcert=/c.pem",
            "postgres://u:secret@h/db?sslrootcert=",
        ] {
            let err = split_url(url).unwrap_err();
            let text = crate::fault::ErrorChain(&err).to_string();
            assert!(text.contains("ssl"), "{text}");
            assert!(!text.contains("secret"), "{text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for root in [empty, dir.path().join("missing.pem")] {
            let err = connector(&UrlTls {
                mode: SslMode::VerifyFull,
                root: Some(RootCert::File(root.clone())),
            })
            .err()
            .unwrap();
            let text = crate::fault::ErrorChain(&err).to_string();
            assert!(text.contains(root.to_str().unwrap()), "{text}");
        }
    }
}
