//! DB-less mode: the config snapshot from a declarative YAML file instead of PostgreSQL (like
//! Kong's DB-less mode), for edge deployments, development and benches. The file is checked
//! every second and reloaded when it changes; a file that does not validate is refused with
//! an error naming the field, and the last good snapshot keeps serving.
//!
//! Keys appear only as their HMAC under the pepper (`tollgate-proxy --hash-key` prints it),
//! never in the clear.
//!
//! ```yaml
//! plans:
//!   - name: growth
//!     rate: { requests_per_second: 100, burst: 200 }
//!     quota: { included_requests: 1000000, cap: hard }
//!     pricing: { currency: USD, base_fee_minor: 4900, model: flat }
//! tenants:
//!   - id: 0192e4c2-7f4e-7cc0-8000-000000000001
//!     slug: acme
//!     plan: growth
//!     keys:
//!       - id: AbCdEfGh12345678
//!         hash: 3f7c…(64 hex digits)
//!     routes:
//!       - path_prefix: /
//!         upstreams: ["127.0.0.1:8000"]
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::watch;
use tollgate_core::plan::{FailureMode, PlanSpec, Pricing, Quota};
use tollgate_core::{
    ENV_UPSTREAM_ALLOW_NETWORKS, KeyHash, KeyId, Plan, PlanId, RatePolicy, RouteId, TenantId,
    UpstreamPolicy, UpstreamTarget, UpstreamTls, VerifiedKey,
};

use crate::jwt::JwtIssuer;
use crate::snapshot::{
    ConfigSnapshot, JwtIssuerConfig, KeyRecord, RouteConfig, SnapshotHandle, TenantConfig,
    TenantStatus,
};

/// The file's top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclarativeConfig {
    /// Plans, referenced by name from tenants.
    #[serde(default)]
    pub plans: Vec<PlanEntry>,
    /// Tenants with their keys, routes and JWT issuers.
    #[serde(default)]
    pub tenants: Vec<TenantEntry>,
}

/// A plan.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanEntry {
    /// Unique name.
    pub name: String,
    /// Request rate.
    pub rate: RatePolicy,
    /// Monthly quota.
    #[serde(default)]
    pub quota: Option<Quota>,
    /// Behaviour when Redis is unreachable.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Price (unused by the proxy, validated all the same).
    pub pricing: Pricing,
}

/// A tenant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantEntry {
    /// Tenant id (appears in usage events and `X-Tenant-Id`).
    pub id: uuid::Uuid,
    /// Short name.
    pub slug: String,
    /// `active` (default) or `suspended`.
    #[serde(default)]
    pub suspended: bool,
    /// Name of the tenant's plan; without one, requests are refused (403).
    #[serde(default)]
    pub plan: Option<String>,
    /// API keys, as their hashes.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
    /// JWT issuers.
    #[serde(default)]
    pub jwt_issuers: Vec<IssuerEntry>,
}

/// An API key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The 16-character key id embedded in the key.
    pub id: String,
    /// Hex HMAC-SHA-256 of the whole key under the pepper.
    pub hash: String,
    /// Scopes granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Revoked keys answer 401 `revoked_api_key`.
    #[serde(default)]
    pub revoked: bool,
    /// End of a rotation's overlap period (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// A route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// Host to match; any when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix.
    pub path_prefix: String,
    /// Remove the prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Each upstream: `host:port`, `http://host[:port][/base]` or `https://host[:port][/base]`.
    pub upstreams: Vec<String>,
    /// PEM CA bundle `https://` upstreams are verified against (default: the system roots).
    #[serde(default)]
    pub tls_ca_pem: Option<String>,
    /// PEM client certificate chain for mutual TLS (with `tls_client_key_pem`).
    #[serde(default)]
    pub tls_client_cert_pem: Option<String>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub tls_client_key_pem: Option<String>,
    /// Milliseconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u32,
    /// Milliseconds.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_ms: u32,
    /// Retries of idempotent requests on another upstream.
    #[serde(default = "default_retries")]
    pub retries: u8,
    /// Largest request body.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Scope a credential needs.
    #[serde(default)]
    pub required_scope: Option<String>,
}

fn default_connect_timeout() -> u32 {
    2000
}
fn default_read_timeout() -> u32 {
    30_000
}
fn default_retries() -> u8 {
    1
}
fn default_max_body() -> u64 {
    10 * 1024 * 1024
}

/// A JWT issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerEntry {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// HS256, RS256, ES256 or EdDSA.
    pub algorithm: String,
    /// PEM public key, or the HS256 secret.
    pub key_material: String,
}

/// Why a file was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeclarativeError {
    /// Unreadable.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not valid YAML for the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Parsed, but a value is wrong.
    #[error("{field}: {problem}")]
    Invalid {
        /// Where, e.g. `tenants[2].keys[0].hash`.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(field: String, problem: impl Into<String>) -> DeclarativeError {
    DeclarativeError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// Reads and validates `path` into a snapshot; upstreams must pass `policy`.
pub async fn load_file(
    path: &Path,
    policy: &UpstreamPolicy,
) -> Result<ConfigSnapshot, DeclarativeError> {
    let text = std::fs::read_to_string(path).map_err(|source| DeclarativeError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config: DeclarativeConfig =
        serde_yaml_ng::from_str(&text).map_err(|e| DeclarativeError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    build(config, policy).await
}

/// Converts the external form into a snapshot. An upstream that names an address `policy`
/// refuses is refused with the file; names are checked again as they resolve.
pub async fn build(
    config: DeclarativeConfig,
    policy: &UpstreamPolicy,
) -> Result<ConfigSnapshot, DeclarativeError> {
    let mut snapshot = ConfigSnapshot::default();
    let mut plans_by_name = HashMap::new();
    for (i, entry) in config.plans.into_iter().enumerate() {
        // A stable id from the name, so usage and limits keep their identity across reloads.
        let id = PlanId::from_uuid(uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            entry.name.as_bytes(),
        ));
        let name = entry.name.clone();
        let plan = Plan::new(PlanSpec {
            id,
            name: entry.name,
            rate: entry.rate,
            quota: entry.quota,
            failure_mode: entry.failure_mode,
            pricing: entry.pricing,
        })
        .map_err(|e| invalid(format!("plans[{i}]"), e.to_string()))?;
        let plan = Arc::new(plan);
        if plans_by_name.insert(name.clone(), plan.clone()).is_some() {
            return Err(invalid(
                format!("plans[{i}].name"),
                format!("{name:?} appears twice"),
            ));
        }
        snapshot.plans.insert(id, plan);
    }
    for (t, tenant) in config.tenants.into_iter().enumerate() {
        let at = |field: &str| format!("tenants[{t}].{field}");
        let id = TenantId::from_uuid(tenant.id);
        let plan = match &tenant.plan {
            Some(name) => Some(
                plans_by_name
                    .get(name)
                    .cloned()
                    .ok_or_else(|| invalid(at("plan"), format!("no plan named {name:?}")))?,
            ),
            None => None,
        };
        let config = TenantConfig {
            id,
            slug: tenant.slug,
            status: if tenant.suspended {
                TenantStatus::Suspended
            } else {
                TenantStatus::Active
            },
            plan,
        };
        if snapshot.tenants.insert(id, config).is_some() {
            return Err(invalid(at("id"), "appears twice"));
        }
        for (k, key) in tenant.keys.into_iter().enumerate() {
            let key_id = KeyId::parse(&key.id)
                .map_err(|e| invalid(at(&format!("keys[{k}].id")), e.to_string()))?;
            let hash = decode_hash(&key.hash)
                .ok_or_else(|| invalid(at(&format!("keys[{k}].hash")), "must be 64 hex digits"))?;
            let record = KeyRecord {
                id: key_id,
                tenant_id: id,
                hash,
                active: !key.revoked,
                scopes: key.scopes,
                expires_at: key.expires_at,
                verified: VerifiedKey::default(),
            };
            if snapshot.keys.insert(key_id, record).is_some() {
                return Err(invalid(at(&format!("keys[{k}].id")), "appears twice"));
            }
        }
        let mut routes = Vec::new();
        for (r, route) in tenant.routes.into_iter().enumerate() {
            if !route.path_prefix.starts_with('/') {
                return Err(invalid(
                    at(&format!("routes[{r}].path_prefix")),
                    "must start with /",
                ));
            }
            if route.upstreams.is_empty() {
                return Err(invalid(
                    at(&format!("routes[{r}].upstreams")),
                    "needs at least one",
                ));
            }
            let material = UpstreamTls::from_pem(
                route.tls_ca_pem.as_deref(),
                route.tls_client_cert_pem.as_deref(),
                route.tls_client_key_pem.as_deref(),
            )
            .map_err(|e| invalid(at(&format!("routes[{r}].{}", e.field)), e.reason))?;
            let tls = crate::upstreams::endpoint_tls(material.as_ref())
                .map_err(|reason| invalid(at(&format!("routes[{r}].tls")), reason))?;
            let (mut upstream_addrs, mut upstream_endpoints) = (Vec::new(), Vec::new());
            for (u, upstream) in route.upstreams.iter().enumerate() {
                let field = || at(&format!("routes[{r}].upstreams[{u}]"));
                let target =
                    UpstreamTarget::parse(upstream).map_err(|e| invalid(field(), e.to_string()))?;
                if let Err(refusal) = policy.check_host(&target.host) {
                    return Err(invalid(
                        field(),
                        format!(
                            "{upstream} is {refusal}; allow its network with \
                             {ENV_UPSTREAM_ALLOW_NETWORKS} if it is meant"
                        ),
                    ));
                }
                for (addr, endpoint) in crate::upstreams::resolve(upstream, &tls, policy).await {
                    upstream_addrs.push(addr);
                    upstream_endpoints.push(endpoint);
                }
            }
            routes.push(Arc::new(RouteConfig {
                // Stable across reloads, like the plan ids.
                id: RouteId::from_uuid(uuid::Uuid::new_v5(
                    &tenant.id,
                    format!(
                        "{}{}",
                        route.host.as_deref().unwrap_or(""),
                        route.path_prefix
                    )
                    .as_bytes(),
                )),
                tenant_id: id,
                host: route.host,
                path_prefix: route.path_prefix,
                strip_prefix: route.strip_prefix,
                upstreams: route.upstreams,
                upstream_addrs,
                upstream_endpoints,
                connect_timeout_ms: route.connect_timeout_ms,
                read_timeout_ms: route.read_timeout_ms,
                retries: route.retries,
                max_body_bytes: route.max_body_bytes,
                required_scope: route.required_scope,
            }));
        }
        crate::loader::order_routes(&mut routes);
        snapshot.routes.insert(id, routes);
        for (j, issuer) in tenant.jwt_issuers.into_iter().enumerate() {
            let prepared = JwtIssuer::prepare(&JwtIssuerConfig {
                tenant_id: id,
                issuer: issuer.issuer,
                audience: issuer.audience,
                algorithm: issuer.algorithm,
                key_material: issuer.key_material,
            })
            .map_err(|e| invalid(at(&format!("jwt_issuers[{j}]")), e.to_string()))?;
            snapshot.issuers.insert(prepared);
        }
    }
    Ok(snapshot)
}

fn decode_hash(hex: &str) -> Option<KeyHash> {
    KeyHash::from_slice(&tollgate_core::hex::decode(hex)?)
}

/// Loads `path` into `handle` and reloads it whenever its modification time changes, until
/// `shutdown`. A bad file is logged and the last good snapshot stays.
pub async fn run(
    path: PathBuf,
    policy: UpstreamPolicy,
    handle: Arc<SnapshotHandle>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut loaded: Option<SystemTime> = None;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = ticker.tick() => {}
        }
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if modified.is_none() || modified == loaded {
            continue;
        }
        match load_file(&path, &policy).await {
            Ok(snapshot) => {
                tracing::info!(
                    path = %path.display(),
                    tenants = snapshot.tenants.len(),
                    keys = snapshot.keys.len(),
                    "Config file loaded."
                );
                handle.store(snapshot);
            }
            Err(error) => {
                tracing::error!(%error, "Config file refused; the last good snapshot stays.");
            }
        }
        loaded = modified;
    }
}

#[cfg(test)]
mod tests {
    use tollgate_core::{ApiKey, KeyEnv, KeyPepper};

    use super::*;

    fn allow_loopback() -> UpstreamPolicy {
        UpstreamPolicy::parse("127.0.0.1/32").unwrap()
    }

    #[tokio::test]
    async fn internal_upstreams_are_refused_unless_allowed() {
        let yaml = "tenants: [{id: 0192e4c2-7f4e-7cc0-8000-000000000001, slug: a, \
                    routes: [{path_prefix: /, upstreams: ['localhost:9000', 'http://[::1]:80']}]}]";
        let parse = || serde_yaml_ng::from_str::<DeclarativeConfig>(yaml).unwrap();
        let error = build(parse(), &UpstreamPolicy::strict())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("tenants[0].routes[0].upstreams[0]"),
            "{error}"
        );
        assert!(error.contains("localhost:9000 is loopback"), "{error}");
        let error = build(parse(), &allow_loopback())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("tenants[0].routes[0].upstreams[1]"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_file_becomes_a_snapshot_whose_keys_authenticate() {
        let pepper = KeyPepper::from_bytes(&[7; 32]).unwrap();
        let key = ApiKey::generate(KeyEnv::Test).unwrap();
        let yaml = format!(
            r#"
plans:
  - name: growth
    rate: {{ requests_per_second: 100, burst: 200 }}
    quota: {{ included_requests: 1000, cap: soft }}
    pricing: {{ currency: USD, base_fee_minor: 0, model: flat }}
tenants:
  - id: 0192e4c2-7f4e-7cc0-8000-000000000001
    slug: acme
    plan: growth
    keys:
      - id: {}
        hash: {}
        scopes: [orders]
    routes:
      - path_prefix: /
        upstreams: ["127.0.0.1:9000"]
      - path_prefix: /v1/orders
        upstreams: ["127.0.0.1:9001"]
        required_scope: orders
"#,
            key.id().as_str(),
            tollgate_core::hex::encode(key.hash(&pepper).as_bytes())
        );
        let config: DeclarativeConfig = serde_yaml_ng::from_str(&yaml).unwrap();
        let snapshot = build(config, &allow_loopback()).await.unwrap();
        let (tenant, record) = snapshot
            .authenticate_key(&key.as_parsed(), &pepper, OffsetDateTime::now_utc())
            .unwrap();
        assert_eq!(tenant.slug, "acme");
        assert_eq!(tenant.plan.as_ref().unwrap().rate().burst, 200);
        assert_eq!(record.scopes, ["orders"]);
        let prefixes: Vec<&str> = snapshot.routes[&tenant.id]
            .iter()
            .map(|r| r.path_prefix.as_str())
            .collect();
        assert_eq!(prefixes, ["/v1/orders", "/"]);
        assert_eq!(snapshot.routes[&tenant.id][1].upstream_addrs.len(), 1);
    }

    #[tokio::test]
    async fn mistakes_are_refused_naming_the_field() {
        let cases = [
            (
                "tenants: [{id: 0192e4c2-7f4e-7cc0-8000-000000000001, slug: a, plan: nope}]",
                "tenants[0].plan",
            ),
            (
                "tenants: [{id: 0192e4c2-7f4e-7cc0-8000-000000000001, slug: a, keys: [{id: AbCdEfGh12345678, hash: zz}]}]",
                "tenants[0].keys[0].hash",
            ),
            (
                "plans: [{name: p, rate: {requests_per_second: 0, burst: 1}, pricing: {currency: USD, base_fee_minor: 0, model: flat}}]",
                "plans[0]",
            ),
            (
                "tenants: [{id: 0192e4c2-7f4e-7cc0-8000-000000000001, slug: a, routes: [{path_prefix: api, upstreams: [x]}]}]",
                "tenants[0].routes[0].path_prefix",
            ),
        ];
        for (yaml, field) in cases {
            let config: DeclarativeConfig = serde_yaml_ng::from_str(yaml).unwrap();
            let error = build(config, &allow_loopback())
                .await
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(field), "{yaml} → {error}");
        }
        let unknown = serde_yaml_ng::from_str::<DeclarativeConfig>("tenant: []");
        assert!(unknown.unwrap_err().to_string().contains("unknown field"));
    }
}
