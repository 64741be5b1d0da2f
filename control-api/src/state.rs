//! What every handler shares: the database pool, the token signer, the key pepper, the login
//! throttle and the metrics.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tollgate_core::{KeyEnv, KeyPepper, UpstreamPolicy};
use tollgate_invoicing::delivery::DocumentStore;

use crate::auth::password;
use crate::auth::throttle::LoginThrottle;
use crate::auth::token::TokenSigner;
use crate::config::{ServiceConfig, WebhookSecret};
use crate::error::ApiError;
use crate::metrics::ApiMetrics;

/// Shared application state (held in `web::Data`, so cloning is cheap).
#[derive(Debug)]
pub struct AppState {
    /// PostgreSQL connections.
    pub pool: Pool,
    /// Signs and verifies access and refresh tokens.
    pub tokens: TokenSigner,
    /// Pepper new API keys are hashed under.
    pub key_pepper: KeyPepper,
    /// Environment tag of minted keys.
    pub key_env: KeyEnv,
    /// Login attempt counters.
    pub throttle: LoginThrottle,
    /// Request and login metrics.
    pub metrics: Arc<ApiMetrics>,
    /// A valid argon2id hash of a random password: unknown emails are verified against it so
    /// that they take as long as known ones.
    pub dummy_password_hash: String,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Which internal networks route upstreams may name.
    pub upstream_policy: UpstreamPolicy,
    /// Verifies Stripe's webhook signatures; `None`: webhooks are not configured.
    pub stripe_webhook_secret: Option<WebhookSecret>,
    /// The signature timestamp's tolerance window.
    pub stripe_webhook_tolerance: std::time::Duration,
    /// Where the invoicing job stores invoice PDFs; `None`: PDFs are rendered on request.
    pub documents: Option<DocumentStore>,
}

impl AppState {
    /// Builds the state from a validated configuration and a pool.
    pub fn new(config: ServiceConfig, pool: Pool) -> Result<Self, ApiError> {
        let dummy_password_hash = password::hash_password(&password::generate_password()?)?;
        Ok(Self {
            pool,
            tokens: TokenSigner::new(
                &config.jwt_secret,
                config.access_token_ttl,
                config.refresh_token_ttl,
            ),
            key_pepper: config.key_pepper,
            key_env: config.key_env,
            throttle: LoginThrottle::new(config.throttle),
            metrics: Arc::new(ApiMetrics::new()),
            dummy_password_hash,
            max_body_bytes: config.max_body_bytes,
            upstream_policy: config.upstream_policy,
            stripe_webhook_secret: config.stripe_webhook_secret,
            stripe_webhook_tolerance: config.stripe_webhook_tolerance,
            documents: config.documents,
        })
    }
}
