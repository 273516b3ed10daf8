//! The ResetPIN mail: building it (RFC 5322, with lettre) and delivering it through a
//! [`MailDelivery`]: into a local [`Maildir`] (the default) or to an SMTP relay ([`SmtpRelay`]).
//!
//! PIN mails go through the durable [`outbox`]: the store queues the rendered mail in the
//! transaction that changes the PIN, and the outbox delivers it afterwards (at once, and again
//! after a restart or a failure), idempotently by the mail's key:
//!
//! ```ignore
//! let outbox = Outbox::new(store, Arc::new(ResetPinMailer::new(Maildir::in_data_dir(&data_dir))));
//! outbox.reset_pin(id, &mut OsRng, ResetReason::Requested)?; // PIN + queued mail, then delivery
//! outbox.deliver_pending()?;                                  // at start: whatever is left
//! ```

pub mod maildir;
pub mod outbox;
pub mod smtp;
pub mod voicemail;

use std::path::PathBuf;
use std::time::SystemTime;

use lettre::message::Mailbox as Address;
use lettre::message::SinglePart;
use lettre::Message;

use crate::store::{OutboxMail, OutgoingMail, ResetPinOutcome};

pub use maildir::Maildir;
pub use outbox::{Backoff, Delivery, DrainReport, Outbox, OutboxError};
pub use smtp::{SmtpRelay, SmtpSettings, StartTls};

/// The subject of the ResetPIN mail.
pub const RESET_PIN_SUBJECT: &str = "Your voice mail PIN has been reset";

/// Where a message was delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryReceipt {
    /// An id of the delivered copy: the Maildir unique name (or a queue id for a transport).
    pub id: String,
    /// The file the message was written to, for local deliveries.
    pub path: Option<PathBuf>,
}

/// A way of putting a message into a user's mailbox.
pub trait MailDelivery: Send + Sync {
    /// Delivers `message` to the mailbox of `user`. When this returns `Ok`, the message is
    /// durably stored (or accepted by the next hop).
    fn deliver(&self, user: &str, message: &Message) -> Result<DeliveryReceipt, MailError>;

    /// Delivers a mail of the durable outbox (see [`outbox`]). Must be idempotent by
    /// `mail.key`: the outbox delivers again whatever it cannot prove delivered (after a crash
    /// between the delivery and the removal of the row), and a second delivery of the same key
    /// must not make a second copy. When this returns `Ok`, the message is durably stored (or
    /// accepted by the next hop) and the row may be removed.
    fn deliver_queued(&self, mail: &OutboxMail) -> Result<DeliveryReceipt, MailError>;
}

impl<D: MailDelivery + ?Sized> MailDelivery for Box<D> {
    fn deliver(&self, user: &str, message: &Message) -> Result<DeliveryReceipt, MailError> {
        (**self).deliver(user, message)
    }

    fn deliver_queued(&self, mail: &OutboxMail) -> Result<DeliveryReceipt, MailError> {
        (**self).deliver_queued(mail)
    }
}

impl<D: MailDelivery + ?Sized> MailDelivery for std::sync::Arc<D> {
    fn deliver(&self, user: &str, message: &Message) -> Result<DeliveryReceipt, MailError> {
        (**self).deliver(user, message)
    }

    fn deliver_queued(&self, mail: &OutboxMail) -> Result<DeliveryReceipt, MailError> {
        (**self).deliver_queued(mail)
    }
}

/// A failure to build or deliver a mail. Messages never contain the PIN.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The user name cannot be made into a mailbox directory name.
    #[error("user name cannot be used as a mailbox name: {reason}")]
    InvalidUserName {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A sender or recipient address is not a valid email address.
    #[error("invalid {which} address")]
    Address {
        /// `"From"`, `"To"` or `"envelope From"`.
        which: &'static str,
        /// The parse error.
        #[source]
        source: lettre::address::AddressError,
    },
    /// lettre refused a content type.
    #[error("invalid content type {0}")]
    ContentType(&'static str),
    /// lettre refused to build the message.
    #[error("cannot build the mail")]
    Build(#[source] lettre::error::Error),
    /// A file system step of the delivery failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// The step, e.g. `"create"` or `"rename into"`.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The SMTP relay could not be reached or did not accept the mail (its reply, never the
    /// message, is in the source).
    #[error("SMTP delivery failed")]
    Smtp(#[source] lettre::transport::smtp::Error),
}

/// This machine's host name, reduced to the characters a mail domain may hold (letters, digits,
/// `.` and `-`); `localhost` when nothing is left.
pub fn host_name() -> String {
    let raw = gethostname::gethostname();
    let name: String = raw
        .to_string_lossy()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    let name = name.trim_matches(|c| c == '.' || c == '-');
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name.to_string()
    }
}

/// The default sender, `UM Service <umws@HOSTNAME>` (with `localhost` if the host name does
/// not make a valid address).
pub fn default_from() -> Address {
    let email = lettre::Address::new("umws", host_name())
        .unwrap_or_else(|_| lettre::Address::new_dangerous("umws", "localhost"));
    Address::new(Some("UM Service".to_string()), email)
}

/// The recipient of the ResetPIN mail: the mailbox's email address, or `<user>@localhost` when
/// it has none.
fn recipient(outcome: &ResetPinOutcome) -> Result<Address, MailError> {
    let email = match &outcome.email {
        Some(email) => email.parse::<lettre::Address>(),
        None => lettre::Address::new(&outcome.user, "localhost"),
    }
    .map_err(|source| MailError::Address {
        which: "To",
        source,
    })?;
    Ok(Address::new(None, email))
}

/// The text of the ResetPIN mail: the new PIN, that it must be changed at the next logon, the
/// extension and access numbers when known, and the policy's `ResetPINText` when set.
pub fn reset_pin_body(outcome: &ResetPinOutcome) -> String {
    let mut body = format!(
        "Your voice mail PIN has been reset.\n\
         \n\
         Your new PIN is: {}\n\
         \n\
         You must change this PIN the next time you sign in to voice mail by phone.\n",
        outcome.pin
    );
    if outcome.extension.is_some() || outcome.telephone_access_numbers.is_some() {
        body.push('\n');
    }
    if let Some(ext) = &outcome.extension {
        body.push_str(&format!("Your extension: {ext}\n"));
    }
    if let Some(numbers) = &outcome.telephone_access_numbers {
        body.push_str(&format!("Voice mail access numbers: {numbers}\n"));
    }
    let text = outcome.reset_pin_text.trim();
    if !text.is_empty() {
        body.push('\n');
        body.push_str(text);
        body.push('\n');
    }
    body
}

/// Builds the ResetPIN mail from `from` to the user (see [`reset_pin_body`]), with Date and
/// a random Message-ID: a MIME message (`MIME-Version: 1.0`, RFC 2045) of one
/// `text/plain; charset=utf-8` part, whose transfer encoding lettre chooses (7bit for ASCII text,
/// quoted-printable or base64 when the policy's `ResetPINText` is not).
pub fn reset_pin_message(outcome: &ResetPinOutcome, from: &Address) -> Result<Message, MailError> {
    reset_pin_message_keyed(outcome, from, &uuid::Uuid::new_v4().to_string())
}

/// [`reset_pin_message`] with the Message-ID `<key@HOSTNAME>`, for a mail queued under `key`.
pub fn reset_pin_message_keyed(
    outcome: &ResetPinOutcome,
    from: &Address,
    key: &str,
) -> Result<Message, MailError> {
    Message::builder()
        .from(from.clone())
        .to(recipient(outcome)?)
        .subject(RESET_PIN_SUBJECT)
        .date(SystemTime::now())
        .message_id(Some(format!("<{key}@{}>", host_name())))
        .singlepart(SinglePart::plain(reset_pin_body(outcome)))
        .map_err(MailError::Build)
}

/// Sends ResetPIN mails: a sender address and a [`MailDelivery`].
#[derive(Clone, Debug)]
pub struct ResetPinMailer<D> {
    from: Address,
    delivery: D,
}

impl<D: MailDelivery> ResetPinMailer<D> {
    /// A mailer sending from [`default_from`] through `delivery`.
    pub fn new(delivery: D) -> Self {
        Self {
            from: default_from(),
            delivery,
        }
    }

    /// Replaces the sender address (a configured from-address).
    pub fn with_from(mut self, from: Address) -> Self {
        self.from = from;
        self
    }

    /// The sender address.
    pub fn from_address(&self) -> &Address {
        &self.from
    }

    /// The delivery mails go through.
    pub fn delivery(&self) -> &D {
        &self.delivery
    }

    /// Renders the ResetPIN mail for `outcome`, queued under `key`, for the outbox (see
    /// [`Store::reset_pin_queued`](crate::store::Store::reset_pin_queued)). No I/O.
    pub fn render(&self, outcome: &ResetPinOutcome, key: &str) -> Result<OutgoingMail, MailError> {
        let to = recipient(outcome)?;
        let message = reset_pin_message_keyed(outcome, &self.from, key)?;
        Ok(OutgoingMail {
            recipient: to.email.to_string(),
            message: message.formatted(),
        })
    }

    /// Builds and delivers the ResetPIN mail for `outcome` to the user's mailbox.
    pub fn send(&self, outcome: &ResetPinOutcome) -> Result<DeliveryReceipt, MailError> {
        let message = reset_pin_message(outcome, &self.from)?;
        self.delivery.deliver(&outcome.user, &message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MailboxId;

    pub(crate) fn outcome() -> ResetPinOutcome {
        ResetPinOutcome {
            mailbox_id: MailboxId(7),
            pin: "740291".into(),
            user: "alice".into(),
            email: Some("alice@example.org".into()),
            extension: Some("36697".into()),
            reset_pin_text: "Call the help desk at 4100 if you did not ask for this.".into(),
            telephone_access_numbers: Some("+1 425 555 0100, 4100".into()),
            pin_set_at: 0,
        }
    }

    fn text(m: &Message) -> String {
        String::from_utf8(m.formatted()).unwrap()
    }

    #[test]
    fn message_has_headers_and_body() {
        let from: Address = "Helpdesk <help@example.org>".parse().unwrap();
        let m = text(&reset_pin_message(&outcome(), &from).unwrap());
        for needle in [
            "From: Helpdesk <help@example.org>\r\n",
            "To: alice@example.org\r\n",
            "Subject: Your voice mail PIN has been reset\r\n",
            "Date: ",
            "Message-ID: <",
            "MIME-Version: 1.0\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Content-Transfer-Encoding: 7bit\r\n",
            "Your new PIN is: 740291",
            "change this PIN the next time",
            "Your extension: 36697",
            "Voice mail access numbers: +1 425 555 0100, 4100",
            "Call the help desk at 4100",
        ] {
            assert!(m.contains(needle), "missing {needle:?} in\n{m}");
        }
    }

    #[test]
    fn minimal_outcome_goes_to_localhost() {
        let o = ResetPinOutcome {
            email: None,
            extension: None,
            telephone_access_numbers: None,
            reset_pin_text: String::new(),
            ..outcome()
        };
        let m = text(&reset_pin_message(&o, &default_from()).unwrap());
        assert!(m.contains("To: alice@localhost\r\n"), "{m}");
        assert!(m.contains("From: \"UM Service\" <umws@"), "{m}");
        assert!(!m.contains("extension"));
        assert!(!m.contains("access numbers"));
    }

    #[test]
    fn unicode_text_is_encoded() {
        let o = ResetPinOutcome {
            reset_pin_text: "Llame al servicio de asistencia técnica.".into(),
            ..outcome()
        };
        let m = text(&reset_pin_message(&o, &default_from()).unwrap());
        assert!(m.contains("Content-Transfer-Encoding: "), "{m}");
    }

    #[test]
    fn bad_recipient_is_an_error() {
        let o = ResetPinOutcome {
            email: Some("not an address".into()),
            ..outcome()
        };
        let err = reset_pin_message(&o, &default_from()).unwrap_err();
        assert!(matches!(err, MailError::Address { which: "To", .. }));
        assert!(!format!("{err} {err:?}").contains("740291"));
    }

    #[test]
    fn host_name_is_a_mail_domain() {
        let h = host_name();
        assert!(!h.is_empty());
        assert!(h
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
    }
}
