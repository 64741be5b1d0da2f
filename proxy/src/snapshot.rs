//! The config snapshot: every tenant, key, plan, route and JWT issuer the proxy needs, as one
//! immutable value. The request path reads it through [`SnapshotHandle`] (an `ArcSwap` load, no
//! lock, no I/O); [`crate::loader`] builds new snapshots and swaps them in.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use time::OffsetDateTime;
use tollgate_core::{
    KeyHash, KeyId, KeyPepper, ParsedApiKey, Plan, PlanId, RouteId, TenantId, VerifiedKey,
};

use crate::jwt::JwtIssuers;

/// Whether a tenant may use the gateway: the domain's type, decoded strictly by the loader.
pub use tollgate_core::TenantStatus;

/// A tenant and its current plan.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    /// Tenant id.
    pub id: TenantId,
    /// Short name.
    pub slug: String,
    /// Active or suspended.
    pub status: TenantStatus,
    /// The plan of the subscription active now; `None` when the tenant has none.
    pub plan: Option<Arc<Plan>>,
}

/// A stored API key: everything needed to verify and authorise it.
#[derive(Clone)]
pub struct KeyRecord {
    /// Key id.
    pub id: KeyId,
    /// Owner.
    pub tenant_id: TenantId,
    /// HMAC of the whole key under the pepper.
    pub hash: KeyHash,
    /// False once revoked.
    pub active: bool,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// End of a rotation's overlap period.
    pub expires_at: Option<OffsetDateTime>,
    /// The key that verified against `hash` in this snapshot, if any.
    pub verified: VerifiedKey,
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("active", &self.active)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A tenant's route: host and/or path prefix to an upstream pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Route id.
    pub id: RouteId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Host to match; `None` matches any.
    pub host: Option<String>,
    /// Path prefix to match.
    pub path_prefix: String,
    /// Remove the prefix before forwarding.
    pub strip_prefix: bool,
    /// Each upstream as configured (`host:port`, optionally `http://`).
    pub upstreams: Vec<String>,
    /// The upstreams' addresses, resolved when the snapshot was loaded (never per request).
    pub upstream_addrs: Vec<std::net::SocketAddr>,
    /// How to speak to each address (TLS, server name, base path), index for index.
    pub upstream_endpoints: Vec<Arc<UpstreamEndpoint>>,
    /// Connect timeout, milliseconds.
    pub connect_timeout_ms: u32,
    /// Read timeout, milliseconds.
    pub read_timeout_ms: u32,
    /// Retries for idempotent methods.
    pub retries: u8,
    /// Largest request body accepted.
    pub max_body_bytes: u64,
    /// Scope a key needs for this route.
    pub required_scope: Option<String>,
}

/// How the gateway speaks to one upstream of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamEndpoint {
    /// `Some` for an `https://` upstream.
    pub tls: Option<Arc<EndpointTls>>,
    /// The upstream's host name: the TLS server name, and the `Host` a TLS upstream receives.
    pub host: String,
    /// `Host` header for a TLS upstream (`host`, with the port unless it is 443).
    pub host_header: String,
    /// Prefixed to every forwarded path: empty or `/…`.
    pub base_path: String,
}

/// TLS settings of an upstream, built once per snapshot.
#[derive(Clone)]
pub struct EndpointTls {
    /// The route's CA bundle; `None`: the system roots.
    pub ca: Option<Arc<pingora_core::protocols::tls::CaType>>,
    /// The route's client certificate and key.
    pub client: Option<Arc<pingora_core::utils::tls::CertKey>>,
    /// Separates the connection pools of different CA bundles and client certificates:
    /// Pingora's pool key covers neither the CA nor more than a client certificate's serial,
    /// so without it a connection verified for one route's CA would serve another route.
    pub pool_key: u64,
}

impl fmt::Debug for EndpointTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointTls")
            .field("own_ca", &self.ca.is_some())
            .field("client_certificate", &self.client.is_some())
            .field("pool_key", &self.pool_key)
            .finish()
    }
}

impl PartialEq for EndpointTls {
    fn eq(&self, other: &Self) -> bool {
        // Snapshots are compared in tests only; identity is enough.
        opt_ptr_eq(self.ca.as_ref(), other.ca.as_ref())
            && opt_ptr_eq(self.client.as_ref(), other.client.as_ref())
    }
}

impl Eq for EndpointTls {}

fn opt_ptr_eq<T: ?Sized>(a: Option<&Arc<T>>, b: Option<&Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// A tenant's JWT issuer as stored, with its pinned algorithm.
/// [`crate::jwt::JwtIssuer::prepare`] turns it into the form the snapshot holds.
#[derive(Clone)]
pub struct JwtIssuerConfig {
    /// Owner.
    pub tenant_id: TenantId,
    /// `iss` to accept.
    pub issuer: String,
    /// `aud` to require.
    pub audience: String,
    /// The only algorithm accepted.
    pub algorithm: String,
    /// PEM public key, or the HS256 secret.
    pub key_material: String,
}

impl fmt::Debug for JwtIssuerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtIssuerConfig")
            .field("tenant_id", &self.tenant_id)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Why a key was refused. `Unknown`, `Invalid`, `Revoked` and `Expired` answer 401;
/// `TenantSuspended` answers 403. `Unknown` and `Invalid` give the same answer, so that a
/// client cannot learn which key ids exist; only the metrics tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    /// No key with this id.
    #[error("invalid API key")]
    Unknown,
    /// The id exists but the secret does not match.
    #[error("invalid API key")]
    Invalid,
    /// Revoked.
    #[error("the API key has been revoked")]
    Revoked,
    /// Past the end of its rotation overlap.
    #[error("the API key has expired")]
    Expired,
    /// The owning tenant is suspended (or unknown to this snapshot).
    #[error("the tenant is suspended")]
    TenantSuspended,
}

impl KeyRejection {
    /// Stable machine-readable code for error bodies.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Unknown | Self::Invalid => "invalid_api_key",
            Self::Revoked => "revoked_api_key",
            Self::Expired => "expired_api_key",
            Self::TenantSuspended => "tenant_suspended",
        }
    }

    /// The label of the auth-failure metric, which alone tells an unknown id from a wrong
    /// secret.
    pub const fn metric_label(self) -> &'static str {
        match self {
            Self::Unknown => "unknown_api_key",
            other => other.code(),
        }
    }
}

/// Verified against for an unknown key id, so that it costs what a known one does.
static UNKNOWN_KEY_HASH: KeyHash = KeyHash::zeroed();

/// One consistent view of the configuration.
#[derive(Debug, Default)]
pub struct ConfigSnapshot {
    /// Tenants by id.
    pub tenants: HashMap<TenantId, TenantConfig>,
    /// Keys by id.
    pub keys: HashMap<KeyId, KeyRecord>,
    /// Plans by id.
    pub plans: HashMap<PlanId, Arc<Plan>>,
    /// Routes per tenant, longest path prefix first; shared so a request holds one without copying.
    pub routes: HashMap<TenantId, Vec<Arc<RouteConfig>>>,
    /// JWT issuers, prepared, by (issuer, audience).
    pub issuers: JwtIssuers,
    /// Tokens verified against this snapshot's issuers (empty in a new snapshot).
    pub verified_tokens: crate::jwt::VerifiedTokens,
}

impl ConfigSnapshot {
    /// Verifies `key` against its record and returns its tenant and record.
    pub fn authenticate_key(
        &self,
        key: &ParsedApiKey<'_>,
        pepper: &KeyPepper,
        now: OffsetDateTime,
    ) -> Result<(&TenantConfig, &KeyRecord), KeyRejection> {
        let Some(record) = self.keys.get(&key.id()) else {
            // As long as a known id with a wrong secret takes: the answer's timing must not
            // tell them apart either.
            let _ = key.verify(pepper, &UNKNOWN_KEY_HASH);
            return Err(KeyRejection::Unknown);
        };
        // Verify before revealing anything about the record's state.
        if !record.verified.verify(key, pepper, &record.hash) {
            return Err(KeyRejection::Invalid);
        }
        if !record.active {
            return Err(KeyRejection::Revoked);
        }
        if record.expires_at.is_some_and(|at| at <= now) {
            return Err(KeyRejection::Expired);
        }
        match self.tenants.get(&record.tenant_id) {
            Some(tenant) if tenant.status == TenantStatus::Active => Ok((tenant, record)),
            _ => Err(KeyRejection::TenantSuspended),
        }
    }
}

/// The live snapshot, shared by every request. Empty until the first load.
#[derive(Debug, Default)]
pub struct SnapshotHandle {
    current: ArcSwapOption<LoadedSnapshot>,
}

/// A snapshot and when it was loaded.
#[derive(Debug)]
pub struct LoadedSnapshot {
    /// The configuration.
    pub config: ConfigSnapshot,
    /// When it was read from its source.
    pub loaded_at: std::time::Instant,
    /// Increases with every swap.
    pub generation: u64,
}

impl SnapshotHandle {
    /// The current snapshot; `None` before the first load (the proxy is not ready then).
    pub fn load(&self) -> Option<Arc<LoadedSnapshot>> {
        self.current.load_full()
    }

    /// Swaps in a new snapshot.
    pub fn store(&self, config: ConfigSnapshot) {
        let generation = self.current.load().as_ref().map_or(1, |s| s.generation + 1);
        self.current.store(Some(Arc::new(LoadedSnapshot {
            config,
            loaded_at: std::time::Instant::now(),
            generation,
        })));
    }
}

#[cfg(test)]
mod tests {
    use tollgate_core::{ApiKey, KeyEnv};

    use super::*;

    fn pepper() -> KeyPepper {
        KeyPepper::from_bytes(&[9; 32]).unwrap()
    }

    fn snapshot_with(key: &ApiKey, tenant_status: TenantStatus) -> ConfigSnapshot {
        let tenant = TenantId::new();
        let mut snapshot = ConfigSnapshot::default();
        snapshot.tenants.insert(
            tenant,
            TenantConfig {
                id: tenant,
                slug: "acme".into(),
                status: tenant_status,
                plan: None,
            },
        );
        snapshot.keys.insert(
            key.id(),
            KeyRecord {
                id: key.id(),
                tenant_id: tenant,
                hash: key.hash(&pepper()),
                active: true,
                scopes: vec![],
                expires_at: None,
                verified: VerifiedKey::default(),
            },
        );
        snapshot
    }

    #[test]
    fn a_valid_key_finds_its_tenant() {
        let key = ApiKey::generate(KeyEnv::Live).unwrap();
        let snapshot = snapshot_with(&key, TenantStatus::Active);
        let (tenant, record) = snapshot
            .authenticate_key(&key.as_parsed(), &pepper(), OffsetDateTime::now_utc())
            .unwrap();
        assert_eq!(tenant.slug, "acme");
        assert_eq!(record.id, key.id());
    }

    #[test]
    fn each_rejection_has_its_reason() {
        let key = ApiKey::generate(KeyEnv::Live).unwrap();
        let now = OffsetDateTime::now_utc();
        let other = ApiKey::generate(KeyEnv::Live).unwrap();
        let snapshot = snapshot_with(&key, TenantStatus::Active);
        assert_eq!(
            snapshot
                .authenticate_key(&other.as_parsed(), &pepper(), now)
                .unwrap_err(),
            KeyRejection::Unknown
        );
        let wrong_pepper = KeyPepper::from_bytes(&[1; 32]).unwrap();
        assert_eq!(
            snapshot
                .authenticate_key(&key.as_parsed(), &wrong_pepper, now)
                .unwrap_err(),
            KeyRejection::Invalid
        );

        let mut revoked = snapshot_with(&key, TenantStatus::Active);
        revoked.keys.get_mut(&key.id()).unwrap().active = false;
        assert_eq!(
            revoked
                .authenticate_key(&key.as_parsed(), &pepper(), now)
                .unwrap_err(),
            KeyRejection::Revoked
        );

        let mut expired = snapshot_with(&key, TenantStatus::Active);
        expired.keys.get_mut(&key.id()).unwrap().expires_at = Some(now);
        assert_eq!(
            expired
                .authenticate_key(&key.as_parsed(), &pepper(), now)
                .unwrap_err(),
            KeyRejection::Expired
        );

        let suspended = snapshot_with(&key, TenantStatus::Suspended);
        let rejection = suspended
            .authenticate_key(&key.as_parsed(), &pepper(), now)
            .unwrap_err();
        assert_eq!(rejection, KeyRejection::TenantSuspended);
        assert_eq!(rejection.code(), "tenant_suspended");
    }

    #[test]
    fn an_unknown_id_and_a_wrong_secret_get_the_same_answer() {
        let (unknown, invalid) = (KeyRejection::Unknown, KeyRejection::Invalid);
        assert_eq!(unknown.to_string(), invalid.to_string());
        assert_eq!(unknown.code(), invalid.code());
        assert_ne!(unknown.metric_label(), invalid.metric_label());
    }

    #[test]
    fn the_handle_is_empty_until_the_first_store_and_counts_generations() {
        let handle = SnapshotHandle::default();
        assert!(handle.load().is_none());
        handle.store(ConfigSnapshot::default());
        handle.store(ConfigSnapshot::default());
        assert_eq!(handle.load().unwrap().generation, 2);
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let issuer = JwtIssuerConfig {
            tenant_id: TenantId::new(),
            issuer: "https://idp".into(),
            audience: "api".into(),
            algorithm: "HS256".into(),
            key_material: "super-secret-shared-key-material-0123".into(),
        };
        assert!(!format!("{issuer:?}").contains("super-secret"));
    }
}
