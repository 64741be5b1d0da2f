//! The validated service configuration, separate from its command-line/environment form.
//!
//! `main` parses flags and `TOLLGATE_*` variables with clap, then builds a [`ServiceConfig`]
//! here; a bad value fails start-up with a message naming the setting and never echoing it.

use std::time::Duration;

use tollgate_core::{KeyEnv, KeyPepper, UpstreamPolicy};

use crate::error::ApiError;
pub use crate::resources::webhooks::WebhookSecret;

/// Environment variable holding the token-signing secret.
pub const ENV_JWT_SECRET: &str = "TOLLGATE_CONTROL_API_JWT_SECRET";
/// Environment variable holding the allowed CORS origins (comma-separated, or `*`).
pub const ENV_CORS_ORIGINS: &str = "TOLLGATE_CONTROL_API_CORS_ORIGINS";
/// Environment variable holding the API key pepper.
pub const ENV_KEY_PEPPER: &str = "TOLLGATE_KEY_PEPPER";
/// Environment variable selecting the environment tag of minted keys.
pub const ENV_KEY_ENV: &str = "TOLLGATE_CONTROL_API_KEY_ENV";

/// Shortest accepted token-signing secret, in bytes (HS256 wants at least its hash size).
pub const MIN_JWT_SECRET_LEN: usize = 32;

/// The secret access and refresh tokens are signed with (HS256). `Debug` never shows it.
#[derive(Clone)]
pub struct JwtSecret(Vec<u8>);

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

impl JwtSecret {
    /// Reads the secret: hexadecimal if the whole value is hex, raw bytes otherwise; at least
    /// [`MIN_JWT_SECRET_LEN`] bytes either way.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let value = value.trim();
        let bytes = decode_hex(value).unwrap_or_else(|| value.as_bytes().to_vec());
        if bytes.len() < MIN_JWT_SECRET_LEN {
            return Err(ApiError::InvalidSetting {
                setting: ENV_JWT_SECRET,
                reason: format!(
                    "must be at least {MIN_JWT_SECRET_LEN} bytes ({} hex characters or \
                     {MIN_JWT_SECRET_LEN} raw characters)",
                    MIN_JWT_SECRET_LEN * 2
                ),
            });
        }
        Ok(Self(bytes))
    }

    /// The secret's bytes, for the signing and verifying keys.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn decode_hex(value: &str) -> Option<Vec<u8>> {
    tollgate_core::hex::decode(value).filter(|bytes| !bytes.is_empty())
}

/// Which cross-origin callers may use the API from a browser.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// No cross-origin access (the default).
    #[default]
    None,
    /// Any origin (`*`); acceptable because the API uses bearer tokens, not cookies.
    Any,
    /// Exactly these origins (`scheme://host[:port]`).
    List(Vec<String>),
}

impl CorsOrigins {
    /// Parses a comma-separated list of origins, `*`, or an empty value.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let origins: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .collect();
        if origins.is_empty() {
            return Ok(Self::None);
        }
        if origins == ["*"] {
            return Ok(Self::Any);
        }
        for origin in &origins {
            let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && !origin.contains('*');
            if !valid {
                return Err(ApiError::InvalidSetting {
                    setting: ENV_CORS_ORIGINS,
                    reason: format!(
                        "{origin:?} is not an origin like https://dash.example.com (or use * alone)"
                    ),
                });
            }
        }
        Ok(Self::List(origins.into_iter().map(str::to_owned).collect()))
    }
}

/// How login attempts are slowed down.
///
/// Failures count per (account, client address) pair: after `pair_free_failures` of them,
/// each further attempt from that pair must wait `pair_base_delay`, doubling with every
/// failure up to `pair_max_delay`. The account's owner at another address is never slowed by
/// someone else's guesses. Every address also has a plain attempt budget across accounts,
/// which bounds password spraying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failed attempts per (account, address) before waits begin.
    pub pair_free_failures: u32,
    /// The first wait; each further failure doubles it.
    pub pair_base_delay: Duration,
    /// The longest wait between two attempts of one pair.
    pub pair_max_delay: Duration,
    /// A pair's failures are forgotten this long after its last one.
    pub pair_memory: Duration,
    /// Attempts (failed or not) per client address within [`ThrottlePolicy::ip_window`].
    pub ip_attempts: u32,
    /// The per-address window.
    pub ip_window: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            pair_free_failures: 5,
            pair_base_delay: Duration::from_secs(1),
            pair_max_delay: Duration::from_secs(5 * 60),
            pair_memory: Duration::from_secs(15 * 60),
            ip_attempts: 30,
            ip_window: Duration::from_secs(60),
        }
    }
}

/// Everything the HTTP service needs besides its database pool.
#[derive(Debug)]
pub struct ServiceConfig {
    /// Token-signing secret.
    pub jwt_secret: JwtSecret,
    /// Pepper new API keys are hashed under (the proxy verifies with the same one).
    pub key_pepper: KeyPepper,
    /// Environment tag of minted keys.
    pub key_env: KeyEnv,
    /// Browser origins allowed to call the API.
    pub cors_origins: CorsOrigins,
    /// Login throttling.
    pub throttle: ThrottlePolicy,
    /// Lifetime of an access token.
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token.
    pub refresh_token_ttl: Duration,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Internal networks route upstreams may name (none by default).
    pub upstream_policy: UpstreamPolicy,
    /// Stripe's webhook signing secret; without it the webhook endpoint answers 503.
    pub stripe_webhook_secret: Option<WebhookSecret>,
    /// How old (or early) a webhook signature's timestamp may be.
    pub stripe_webhook_tolerance: Duration,
    /// The invoice document store (`TOLLGATE_S3_*`), to serve stored PDFs.
    pub documents: Option<tollgate_invoicing::delivery::DocumentStore>,
}

impl ServiceConfig {
    /// A configuration with the defaults for everything but the secrets.
    pub fn new(jwt_secret: JwtSecret, key_pepper: KeyPepper) -> Self {
        Self {
            jwt_secret,
            key_pepper,
            key_env: KeyEnv::Live,
            cors_origins: CorsOrigins::None,
            throttle: ThrottlePolicy::default(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(12 * 60 * 60),
            max_body_bytes: 64 * 1024,
            upstream_policy: UpstreamPolicy::strict(),
            stripe_webhook_secret: None,
            stripe_webhook_tolerance: crate::resources::webhooks::DEFAULT_TOLERANCE,
            documents: None,
        }
    }
}

/// Parses the environment tag for minted keys (`live` or `test`).
pub fn parse_key_env(value: &str) -> Result<KeyEnv, ApiError> {
    match value {
        "live" => Ok(KeyEnv::Live),
        "test" => Ok(KeyEnv::Test),
        _ => Err(ApiError::InvalidSetting {
            setting: ENV_KEY_ENV,
            reason: "must be live or test".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_jwt_secrets_are_refused_naming_the_setting() {
        let error = JwtSecret::parse("too-short").unwrap_err().to_string();
        assert!(error.contains(ENV_JWT_SECRET), "{error}");
        assert!(!error.contains("too-short"), "the value is never echoed");
        // 31 hex-encoded bytes are too short even though the text has 62 characters.
        assert!(JwtSecret::parse(&"ab".repeat(31)).is_err());
    }

    #[test]
    fn jwt_secrets_are_hex_or_raw() {
        assert_eq!(
            JwtSecret::parse(&"ab".repeat(32)).unwrap().as_bytes(),
            [0xab; 32]
        );
        let raw = "this is a raw secret of 32 bytes!";
        assert_eq!(JwtSecret::parse(raw).unwrap().as_bytes(), raw.as_bytes());
    }

    #[test]
    fn cors_origins_are_validated() {
        assert_eq!(CorsOrigins::parse(" ").unwrap(), CorsOrigins::None);
        assert_eq!(CorsOrigins::parse("*").unwrap(), CorsOrigins::Any);
        assert_eq!(
            CorsOrigins::parse("https://a.example, http://localhost:3000").unwrap(),
            CorsOrigins::List(vec![
                "https://a.example".into(),
                "http://localhost:3000".into()
            ])
        );
        let error = CorsOrigins::parse("a.example").unwrap_err().to_string();
        assert!(error.contains(ENV_CORS_ORIGINS), "{error}");
    }
}
