//! Hourly usage roll-ups and monthly invoices (`tollgate-invoicing`).
//!
//! A skeleton for now: the crate exists so the workspace has its final shape; its issue fills
//! it in. Shared types come from [`tollgate_core`].

pub use tollgate_core;
