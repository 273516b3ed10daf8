//! Delivery by SMTP to a configured relay (lettre's blocking [`SmtpTransport`]).
//!
//! The outbox calls [`SmtpRelay::deliver_queued`] on the blocking pool, one connection per mail.
//! A mail counts as delivered only when the relay accepted it (a positive reply after `DATA`);
//! until then it stays in the outbox and is retried with backoff.
//!
//! SMTP cannot be made idempotent from the sending side: if the process dies after the relay's
//! `250` but before the outbox row is deleted, the mail is sent again after the restart (the
//! at-least-once window). Every copy carries the same `Message-ID: <KEY@HOST>`, derived from the
//! outbox key when the mail was rendered, so a receiving system can drop the duplicate.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::Mailbox as Address;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::SmtpTransport;
use lettre::{Message, Transport};

use super::{DeliveryReceipt, MailDelivery, MailError};
use crate::store::OutboxMail;

/// The default time limit of one SMTP command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the connection to the relay is upgraded with `STARTTLS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    /// Upgrade, or fail when the relay does not offer it (the mail stays queued).
    #[default]
    Required,
    /// Upgrade when the relay offers it, else send in clear.
    Opportunistic,
    /// Never upgrade: the mail (with the PIN) crosses the network in clear.
    Off,
}

impl std::str::FromStr for StartTls {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "required" => Ok(Self::Required),
            "opportunistic" => Ok(Self::Opportunistic),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "{other:?} is not one of required, opportunistic, off"
            )),
        }
    }
}

/// A secret that `Debug` does not show.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where and how to reach the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpSettings {
    /// The relay's host name (also the name its TLS certificate must carry).
    pub host: String,
    /// The relay's port.
    pub port: u16,
    /// The `STARTTLS` mode.
    pub starttls: StartTls,
    /// User name and password for `AUTH`, if the relay wants them.
    pub credentials: Option<(String, Secret)>,
    /// The envelope sender (`MAIL FROM`); `None`: the mail's From address.
    pub envelope_from: Option<String>,
    /// The time limit of one SMTP command.
    pub timeout: Duration,
}

impl SmtpSettings {
    /// A relay at `host:port` with the defaults: STARTTLS required, no credentials.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            starttls: StartTls::Required,
            credentials: None,
            envelope_from: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Delivery to an SMTP relay.
pub struct SmtpRelay {
    transport: SmtpTransport,
    envelope_from: lettre::Address,
    relay: String,
}

impl std::fmt::Debug for SmtpRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpRelay")
            .field("relay", &self.relay)
            .field("envelope_from", &self.envelope_from)
            .finish_non_exhaustive()
    }
}

impl SmtpRelay {
    /// A relay delivery from `settings`; `from` is the mails' From address, the envelope sender
    /// unless the settings name another.
    pub fn new(settings: &SmtpSettings, from: &Address) -> Result<Self, MailError> {
        let envelope_from = match &settings.envelope_from {
            Some(addr) => addr.parse().map_err(|source| MailError::Address {
                which: "envelope From",
                source,
            })?,
            None => from.email.clone(),
        };
        let tls = match settings.starttls {
            StartTls::Off => Tls::None,
            mode => {
                let params = TlsParameters::new(settings.host.clone()).map_err(MailError::Smtp)?;
                if mode == StartTls::Required {
                    Tls::Required(params)
                } else {
                    Tls::Opportunistic(params)
                }
            }
        };
        let mut builder = SmtpTransport::builder_dangerous(settings.host.clone())
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout))
            .hello_name(ClientId::Domain(super::host_name()));
        if let Some((user, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.0.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            envelope_from,
            relay: format!("{}:{}", settings.host, settings.port),
        })
    }

    /// `host:port` of the relay.
    pub fn relay(&self) -> &str {
        &self.relay
    }
}

impl MailDelivery for SmtpRelay {
    fn deliver(&self, _user: &str, message: &Message) -> Result<DeliveryReceipt, MailError> {
        let to = message.envelope().to().to_vec();
        let envelope =
            Envelope::new(Some(self.envelope_from.clone()), to).map_err(MailError::Build)?;
        let response = self
            .transport
            .send_raw(&envelope, &message.formatted())
            .map_err(MailError::Smtp)?;
        Ok(receipt(&response))
    }

    /// Sends the queued message as rendered (same bytes, same Message-ID on every attempt).
    /// Not idempotent on the wire; see the [module docs](self).
    fn deliver_queued(&self, mail: &OutboxMail) -> Result<DeliveryReceipt, MailError> {
        let to = mail
            .recipient
            .parse::<lettre::Address>()
            .map_err(|source| MailError::Address {
                which: "To",
                source,
            })?;
        let envelope =
            Envelope::new(Some(self.envelope_from.clone()), vec![to]).map_err(MailError::Build)?;
        let response = self
            .transport
            .send_raw(&envelope, &mail.message)
            .map_err(MailError::Smtp)?;
        tracing::debug!(key = %mail.key, relay = %self.relay, "relay accepted the mail");
        Ok(receipt(&response))
    }
}

/// The relay's reply as a receipt id (e.g. `250 2.0.0 Ok: queued as ABC`).
fn receipt(response: &lettre::transport::smtp::response::Response) -> DeliveryReceipt {
    let text: Vec<&str> = response.message().collect();
    DeliveryReceipt {
        id: format!("{} {}", response.code(), text.join(" ")),
        path: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starttls_modes_parse_and_secret_is_hidden() {
        assert_eq!("required".parse::<StartTls>(), Ok(StartTls::Required));
        assert_eq!("off".parse::<StartTls>(), Ok(StartTls::Off));
        assert!("yes".parse::<StartTls>().is_err());
        let mut s = SmtpSettings::new("relay.example.org", 587);
        s.credentials = Some(("u".into(), Secret("hunter2".into())));
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn envelope_sender_defaults_to_the_from_address() {
        let from: Address = "UM <um@example.org>".parse().unwrap();
        let relay = SmtpRelay::new(&SmtpSettings::new("localhost", 25), &from).unwrap();
        assert_eq!(relay.envelope_from.to_string(), "um@example.org");
        let mut s = SmtpSettings::new("localhost", 25);
        s.envelope_from = Some("bounces@example.org".into());
        let relay = SmtpRelay::new(&s, &from).unwrap();
        assert_eq!(relay.envelope_from.to_string(), "bounces@example.org");
        assert_eq!(relay.relay(), "localhost:25");
    }
}
