//! What can go wrong delivering an invoice. Messages name the step and the call, never a
//! secret: they are stored with the failed step and shown to operators.

/// A delivery failure.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A setting is missing or malformed (start-up).
    #[error("{setting}: {reason}")]
    InvalidSetting {
        /// The setting's environment variable.
        setting: &'static str,
        /// What is wrong (never the value).
        reason: String,
    },
    /// Stripe refused a call (a 4xx other than 429): retrying the same request cannot help.
    #[error("stripe {call}: HTTP {status}: {message}")]
    StripeRejected {
        /// Which call (`create customer`, `finalize invoice`, …).
        call: &'static str,
        /// The HTTP status.
        status: u16,
        /// Stripe's error type and message.
        message: String,
    },
    /// Stripe stayed unreachable, slow or overloaded through every retry.
    #[error("stripe {call}: gave up after {attempts} attempt(s): {last_error}")]
    StripeUnavailable {
        /// Which call.
        call: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        last_error: String,
    },
    /// Stripe answered something we cannot use.
    #[error("stripe {call}: unexpected response: {message}")]
    StripeResponse {
        /// Which call.
        call: &'static str,
        /// What was wrong with it.
        message: String,
    },
    /// The email could not be built or sent.
    #[error("email: {0}")]
    Email(String),
    /// The object store refused or could not be reached.
    #[error("document store: {0}")]
    Storage(String),
    /// The PDF could not be produced.
    #[error("pdf: {0}")]
    Render(String),
    /// The invoice's data cannot be delivered as it is (e.g. an unknown currency).
    #[error("invoice {invoice_id}: {message}")]
    InvalidInvoice {
        /// The invoice.
        invoice_id: uuid::Uuid,
        /// Why.
        message: String,
    },
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// The invoicing store refused or failed (step records).
    #[error(transparent)]
    Store(#[from] crate::InvoicingError),
}
