//! Test support (dev-only): connects tests to the local stack started by `scripts/stack.sh`.
//!
//! Each test gets resources of its own so the whole suite runs in parallel and leaves nothing
//! behind: a PostgreSQL database cloned from a migrated template ([`TestDb`]), a Kafka topic
//! and consumer group id ([`TestTopic`]), and a Redis key prefix ([`TestRedis`]). Each is
//! dropped (best effort) when its guard goes out of scope, panicking tests included.
//! [`FaultyLink`] gives one client a real outage of a shared service; [`promtool`] lints a
//! `/metrics` exposition; [`stripe_stand_in::StripeStandIn`] is a stateful Stripe for the
//! invoicing tests.
//!
//! Setup failures panic with a message saying what to run: in a test, a failed setup is a
//! failed test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod fixtures;
mod kafka;
mod postgres;
pub mod private;
pub mod promtool;
mod redis_prefix;
mod stack;
pub mod stripe_stand_in;
mod tcp_fault;
pub mod usage_topic;

pub use kafka::TestTopic;
pub use postgres::TestDb;
pub use redis_prefix::TestRedis;
pub use stack::{Stack, unique_name};
pub use tcp_fault::FaultyLink;

/// Runs `work` to completion on a fresh single-threaded runtime in its own thread.
/// Used by `Drop` impls, which may run inside or outside an async context.
fn block_on_side_thread<F>(work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let handle = std::thread::spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(work),
            Err(e) => eprintln!("test cleanup skipped: no runtime: {e}"),
        }
    });
    let _ = handle.join();
}
