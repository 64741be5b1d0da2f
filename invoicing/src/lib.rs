//! Hourly usage roll-ups and monthly invoices (`tollgate-invoicing`).
//!
//! [`delivery`] pushes finalized invoices to Stripe, emails them and stores their documents,
//! each as a resumable step. Shared types come from [`tollgate_core`].

pub mod delivery;

pub use tollgate_core;
