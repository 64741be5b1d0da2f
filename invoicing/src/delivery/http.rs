//! The one HTTP client configuration Stripe and the object store share: rustls with the
//! `ring` provider (already in the tree for key hashing) and Mozilla's roots compiled in, so
//! the image needs no system certificate store; HTTP/1.1 only; a deadline on every request.

use std::time::Duration;

/// A client whose every request times out after `timeout` (connecting included).
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("tollgate-invoicing/", env!("CARGO_PKG_VERSION")))
        .build()
}
