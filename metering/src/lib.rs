//! Kafka usage events into PostgreSQL exactly once, with roll-ups and a dead-letter topic (`tollgate-metering`).
//!
//! A skeleton for now: the crate exists so the workspace has its final shape; its issue fills
//! it in. Shared types come from [`tollgate_core`].

pub use tollgate_core;
