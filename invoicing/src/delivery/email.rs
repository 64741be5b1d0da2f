//! The email step: one message per invoice to the tenant's billing address, the HTML invoice
//! as the body and the PDF attached, over SMTP with `lettre`.
//!
//! SMTP has no idempotency keys: the step is recorded done right after the server accepts the
//! message, and the `Message-ID` is derived from the invoice id, so the rare duplicate from a
//! crash between the two is recognisable to the recipient's mail system.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::error::DeliveryError;

/// Environment variable holding the SMTP password.
pub const ENV_SMTP_PASSWORD: &str = "TOLLGATE_SMTP_PASSWORD";
/// Environment variable selecting the SMTP TLS mode.
pub const ENV_SMTP_TLS: &str = "TOLLGATE_SMTP_TLS";
/// Environment variable holding the sender address.
pub const ENV_SMTP_FROM: &str = "TOLLGATE_SMTP_FROM";

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same host or network (and tests).
    None,
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server cannot.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl SmtpTls {
    /// Parses `none`, `starttls` or `tls`.
    pub fn parse(value: &str) -> Result<Self, DeliveryError> {
        match value {
            "none" => Ok(Self::None),
            "starttls" => Ok(Self::StartTls),
            "tls" => Ok(Self::Tls),
            _ => Err(DeliveryError::InvalidSetting {
                setting: ENV_SMTP_TLS,
                reason: "must be none, starttls or tls".into(),
            }),
        }
    }
}

/// SMTP username and password. `Debug` never shows the password.
#[derive(Clone)]
pub struct SmtpCredentials {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where and how invoice emails are sent.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// Server host name.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// TLS mode.
    pub tls: SmtpTls,
    /// Login, if the server wants one.
    pub credentials: Option<SmtpCredentials>,
    /// The sender (`Billing <billing@example.com>`).
    pub from: String,
    /// Deadline of each SMTP command.
    pub timeout: Duration,
}

/// One invoice email, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceEmail {
    /// Recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// The HTML invoice.
    pub html: String,
    /// The PDF attachment's file name.
    pub pdf_name: String,
    /// The PDF.
    pub pdf: Vec<u8>,
    /// Stable `Message-ID` (without angle brackets).
    pub message_id: String,
}

/// Sends invoice emails.
#[derive(Debug, Clone)]
pub struct InvoiceMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl InvoiceMailer {
    /// A mailer; connections are made per send.
    pub fn new(settings: &SmtpSettings) -> Result<Self, DeliveryError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| DeliveryError::InvalidSetting {
                setting: ENV_SMTP_FROM,
                reason: format!("not an email address: {e}"),
            })?;
        let invalid_host = |e: lettre::transport::smtp::Error| DeliveryError::InvalidSetting {
            setting: ENV_SMTP_TLS,
            reason: format!("cannot set up TLS for the SMTP host: {e}"),
        };
        let mut builder = match settings.tls {
            SmtpTls::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
            }
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
                    .map_err(invalid_host)?
            }
            SmtpTls::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host).map_err(invalid_host)?
            }
        }
        .port(settings.port)
        .timeout(Some(settings.timeout));
        if let Some(credentials) = &settings.credentials {
            builder = builder.credentials(Credentials::new(
                credentials.username.clone(),
                credentials.password.clone(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one email; `Ok` once the server accepted it.
    pub async fn send(&self, email: &InvoiceEmail) -> Result<(), DeliveryError> {
        let to: Mailbox = email
            .to
            .parse()
            .map_err(|e| DeliveryError::Email(format!("billing address {:?}: {e}", email.to)))?;
        let pdf_type = ContentType::parse("application/pdf")
            .map_err(|e| DeliveryError::Email(e.to_string()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(format!("<{}>", email.message_id)))
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::html(email.html.clone()))
                    .singlepart(
                        Attachment::new(email.pdf_name.clone()).body(email.pdf.clone(), pdf_type),
                    ),
            )
            .map_err(|e| DeliveryError::Email(format!("building the message: {e}")))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| DeliveryError::Email(format!("sending: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_modes_and_secrets() {
        assert_eq!(SmtpTls::parse("starttls").unwrap(), SmtpTls::StartTls);
        assert!(
            SmtpTls::parse("ssl")
                .unwrap_err()
                .to_string()
                .contains(ENV_SMTP_TLS)
        );
        let credentials = SmtpCredentials {
            username: "billing".into(),
            password: "hunter2-secret".into(),
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
