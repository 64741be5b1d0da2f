//! Criterion benches of the gateway's hot path; run them with `make bench`.
//!
//! Benches live in this member crate because a virtual workspace's root cannot hold any.
