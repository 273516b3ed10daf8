//! Who may call: the [`Credentials`] of a request, read from its Basic
//! `Authorization` header, and the [`Authenticator`] that decides on them.

use std::future::Future;
use std::net::SocketAddr;

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::Request;
use zeroize::Zeroize as _;

/// Basic credentials of a request: a user name and a password (which may contain colons;
/// the user name cannot). Held in one buffer, as they arrive.
#[derive(Clone)]
pub struct Credentials {
    /// `user:password`.
    text: String,
    /// Where the user name ends.
    colon: usize,
}

impl Credentials {
    /// Credentials from their parts; `None` when `user` contains a colon (Basic
    /// authentication cannot carry it).
    pub fn new(user: &str, password: &str) -> Option<Self> {
        if user.contains(':') {
            return None;
        }
        Some(Self {
            text: format!("{user}:{password}"),
            colon: user.len(),
        })
    }

    /// Credentials from the decoded `user:password` of a Basic `Authorization` header;
    /// `None` without a colon.
    pub fn from_pair(mut text: String) -> Option<Self> {
        let Some(colon) = text.find(':') else {
            text.zeroize();
            return None;
        };
        Some(Self { text, colon })
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The password. Never log it.
    pub fn password(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// The user name, keeping the buffer (the password is wiped and cut off).
    pub fn into_user(mut self) -> String {
        let mut bytes = std::mem::take(&mut self.text).into_bytes();
        bytes[self.colon..].zeroize();
        bytes.truncate(self.colon);
        // A prefix of UTF-8 ending before an ASCII colon is UTF-8.
        String::from_utf8(bytes).unwrap_or_default()
    }
}

impl Drop for Credentials {
    /// Wipes this copy of the password (the request's `Authorization` header is hyper's).
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user())
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The decision of an [`Authenticator`].
#[derive(Debug)]
pub enum AuthDecision {
    /// The caller is who they say; these values go into
    /// [`CallContext::extensions`](crate::CallContext::extensions).
    Allow(http::Extensions),
    /// The credentials are wrong, unknown, or the account may not log on.
    Deny,
    /// Refused unchecked after failed attempts: `429 Too Many Requests`, with `Retry-After`
    /// this long (in whole seconds, rounded up).
    Throttled(std::time::Duration),
}

/// Checks the credentials of every request.
pub trait Authenticator: Send + Sync + 'static {
    /// Decides whether `credentials` (absent when the request sent none)
    /// may call the service. An `Err` means the check itself failed; the
    /// request gets a 503 and the error goes to the log.
    fn authenticate(
        &self,
        credentials: Option<Credentials>,
        remote_addr: Option<SocketAddr>,
    ) -> impl Future<Output = Result<AuthDecision, Box<dyn std::error::Error + Send + Sync>>> + Send;
}

/// An [`Authenticator`] that lets every request in, for services that need
/// no authentication.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAuthentication;

impl Authenticator for NoAuthentication {
    async fn authenticate(
        &self,
        _credentials: Option<Credentials>,
        _remote_addr: Option<SocketAddr>,
    ) -> Result<AuthDecision, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AuthDecision::Allow(http::Extensions::new()))
    }
}

pub(super) fn basic_credentials<B>(req: &Request<B>) -> Result<Option<Credentials>, ()> {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| ())?;
    let pair = String::from_utf8(decoded).map_err(|e| e.into_bytes().zeroize())?;
    Credentials::from_pair(pair).map(Some).ok_or(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded_and_checked() {
        let with = |value: &str| {
            let req = Request::builder()
                .header(AUTHORIZATION, value)
                .body(())
                .unwrap();
            basic_credentials(&req)
                .map(|c| c.map(|c| (c.user().to_owned(), c.password().to_owned())))
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let pair = |u: &str, p: &str| Ok(Some((u.to_owned(), p.to_owned())));
        assert_eq!(
            with(&format!("Basic {}", b64("demo:pw"))),
            pair("demo", "pw")
        );
        // The password may contain colons; the user name ends at the first.
        assert_eq!(
            with(&format!("basic  {} ", b64("demo:a:b:"))),
            pair("demo", "a:b:")
        );
        assert_eq!(with(&format!("Basic {}", b64(":"))), pair("", ""));
        assert_eq!(
            with(&format!("Basic {}", b64("Jürgen:pässwort"))),
            pair("Jürgen", "pässwort")
        );
        for bad in [
            format!("Basic {}", b64("no colon")),
            format!("Bearer {}", b64("demo:pw")),
            "Basic not*base64".to_owned(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode([0xff, b':', 0xfe])
            ),
            "Basic".to_owned(),
        ] {
            assert_eq!(with(&bad), Err(()), "{bad}");
        }
        let none = Request::builder().body(()).unwrap();
        assert!(matches!(basic_credentials(&none), Ok(None)));
    }

    #[test]
    fn credentials_split_at_the_first_colon() {
        let c = Credentials::new("demo", "a:b").unwrap();
        assert_eq!((c.user(), c.password()), ("demo", "a:b"));
        assert_eq!(
            format!("{c:?}"),
            r#"Credentials { user: "demo", password: "<redacted>" }"#
        );
        assert_eq!(c.into_user(), "demo");
        let c = Credentials::from_pair("Jürgen:pä:sswort".to_owned()).unwrap();
        assert_eq!((c.user(), c.password()), ("Jürgen", "pä:sswort"));
        assert_eq!(c.into_user(), "Jürgen");
        assert!(Credentials::new("de:mo", "pw").is_none());
        let c = Credentials::from_pair("u:".to_owned()).unwrap();
        assert_eq!((c.user(), c.password()), ("u", ""));
        assert!(Credentials::from_pair("nocolon".to_owned()).is_none());
    }
}
