//! Hourly usage roll-ups and monthly invoices (`tollgate-invoicing hourly|monthly`).
//!
//! - [`rollup`]: `usage_minute` → `usage_hour` for closed hours, exact (dirty-hour marks).
//! - rating: pure, in [`tollgate_core::rating`], shared with the control API's upcoming invoice.
//! - [`store`]: the invoice state machine: drafts, gapless numbers, step records.
//! - [`job`]: the monthly run: which tenants, one invoice per tenant and period, progress.
//! - [`delivery`]: finalized invoices to Stripe, by email and into the object store, each a
//!   resumable step recorded in the store's step records.
//! - [`config`]: the validated configuration the binary builds from its command line.

pub mod config;
pub mod delivery;
pub mod job;
pub mod rollup;
pub mod store;

pub use tollgate_core;

/// Why an invoicing operation failed.
#[derive(Debug, thiserror::Error)]
pub enum InvoicingError {
    /// PostgreSQL failed or is unreachable.
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// The period could not be rated (bad plan data, mixed currencies).
    #[error("rating: {0}")]
    Rating(#[from] tollgate_core::rating::RatingError),
    /// A stored row the rating needs is invalid.
    #[error("{0}")]
    RatingInput(#[from] tollgate_core::rating_inputs::RatingInputError),
    /// No such invoice.
    #[error("invoice {0} does not exist")]
    InvoiceNotFound(uuid::Uuid),
    /// The state machine does not allow this transition.
    #[error("invoice {invoice_id}: {from} → {to} is not an allowed transition")]
    TransitionRefused {
        /// The invoice.
        invoice_id: uuid::Uuid,
        /// Its status.
        from: String,
        /// The status asked for.
        to: &'static str,
    },
    /// A value read or about to be written is out of range.
    #[error("bad data: {0}")]
    BadRow(String),
}

impl InvoicingError {
    /// Whether running again later can succeed: the database was unreachable or a transaction
    /// lost a race (serialization failure, deadlock). Bad data and refused transitions stay bad.
    pub fn is_retryable(&self) -> bool {
        let database = match self {
            Self::Database(e) => e,
            Self::RatingInput(tollgate_core::rating_inputs::RatingInputError::Database(e)) => e,
            _ => return false,
        };
        match database.code() {
            None => true,
            Some(code) => {
                use tokio_postgres::error::SqlState;
                [
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::QUERY_CANCELED,
                    SqlState::TOO_MANY_CONNECTIONS,
                ]
                .contains(code)
            }
        }
    }
}
