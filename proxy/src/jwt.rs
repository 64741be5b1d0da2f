//! JWT authentication against per-tenant issuers with pinned algorithms.
//!
//! Each `jwt_issuers` row becomes a [`JwtIssuer`] once, when a snapshot is built: its PEM key or
//! shared secret is parsed and checked there, never per request, and a row that does not
//! parse is skipped without failing the snapshot. On the request path
//! ([`ConfigSnapshot::authenticate_jwt`]) the token's *unverified* `iss` and `aud` only pick the
//! candidate issuers; `alg: none` and every algorithm but a candidate's pinned one are refused
//! before any signature work, then `jsonwebtoken` verifies the signature, `iss`, `aud` and the
//! presence of `exp`, and `exp`/`nbf` are checked against the caller's clock with
//! [`LEEWAY_SECONDS`].
//!
//! Issuers are unique per tenant, not across tenants: no tenant can claim an issuer for the
//! whole platform, and registering one reveals nothing about other tenants. Several tenants
//! may register the same `iss` and `aud`; a token's tenant is the one whose registered *key*
//! verifies its signature, and a key only its owner can sign with cannot be borrowed. Two
//! tenants registering the same key (a public key is public) for the same `iss` and `aud`
//! would make its tokens verify for both: all such registrations are ignored, as if absent
//! (their tokens get a 401), and logged when the snapshot is built, so a copied key is never
//! enough to receive another tenant's traffic ([`JwtIssuers::shared_keys`]).
//!
//! A token that verified is remembered by the snapshot ([`VerifiedTokens`]): a client sends the
//! same token on every request until it expires, and an RS256 signature costs ~200 µs, so only
//! its first request in a snapshot pays for the signature. `exp`, `nbf` and the tenant's status
//! are still checked on every request; a new snapshot (any configuration change, and the
//! periodic reload) starts with an empty cache, so a removed or re-keyed issuer takes effect
//! with the snapshot.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use serde::Deserialize;
use time::OffsetDateTime;
use tollgate_core::TenantId;

use crate::snapshot::{ConfigSnapshot, JwtIssuerConfig, TenantConfig, TenantStatus};

mod cache;
use cache::Verified;
pub use cache::VerifiedTokens;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: i64 = 30;

/// Longest token looked at; anything longer is refused as malformed before parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash output size).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Shortest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Whether `value` has the shape of a compact JWS: three base64url segments separated by dots,
/// the first two non-empty. The signature may be empty so that an unsigned (`alg: none`) token
/// is still recognised as a JWT, and refused as one. API keys (`tg_…`) never match.
pub fn looks_like_jwt(value: &str) -> bool {
    if value.starts_with("tg_") {
        return false;
    }
    let mut segments = value.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return false;
    };
    let base64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    !header.is_empty()
        && !payload.is_empty()
        && base64url(header)
        && base64url(payload)
        && base64url(signature)
}

/// Why an issuer row could not be prepared. The row is skipped; the rest of the snapshot loads.
/// No variant carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    /// Not one of the algorithms an issuer may pin.
    #[error("algorithm {0:?} is not one of HS256, RS256, ES256, EdDSA")]
    UnsupportedAlgorithm(String),
    /// The HS256 secret is too short to resist brute force.
    #[error("the HS256 secret is {len} bytes; at least {MIN_HS256_SECRET_BYTES} are required")]
    SecretTooShort {
        /// Length found, in bytes.
        len: usize,
    },
    /// The RSA public key is too small.
    #[error("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")]
    RsaKeyTooShort {
        /// Modulus size found.
        bits: usize,
    },
    /// The key material is not a PEM public key of the pinned algorithm's kind.
    #[error("the key material is not a valid {algorithm} public key in PEM ({reason})")]
    InvalidKey {
        /// The pinned algorithm.
        algorithm: &'static str,
        /// What the parser reported (never the key itself).
        reason: String,
    },
}

/// A tenant's issuer, ready for the request path: key parsed, validation built.
#[derive(Clone)]
pub struct JwtIssuer {
    tenant_id: TenantId,
    issuer: String,
    audience: String,
    algorithm: Algorithm,
    key: DecodingKey,
    /// Whether another tenant registered the same key for the same `iss` and `aud`: then
    /// none of these registrations authenticates anything.
    shared: bool,
    validation: Validation,
}

impl fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtIssuer")
            .field("tenant_id", &self.tenant_id)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl JwtIssuer {
    /// Parses and checks `config`'s key for its pinned algorithm and builds the validation
    /// rules: only that algorithm, `exp`, `iss` and `aud` required, `iss` and `aud` pinned.
    ///
    /// HS256 uses the UTF-8 bytes of the key material as the secret; the other algorithms take
    /// a PEM public key (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY` for RS256).
    pub fn prepare(config: &JwtIssuerConfig) -> Result<Self, IssuerError> {
        let (algorithm, key) = match config.algorithm.as_str() {
            "HS256" => {
                let secret = config.key_material.as_bytes();
                if secret.len() < MIN_HS256_SECRET_BYTES {
                    return Err(IssuerError::SecretTooShort { len: secret.len() });
                }
                (Algorithm::HS256, DecodingKey::from_secret(secret))
            }
            "RS256" => (Algorithm::RS256, rsa_key(&config.key_material)?),
            "ES256" => {
                let key = DecodingKey::from_ec_pem(config.key_material.as_bytes())
                    .map_err(|e| invalid_key("ES256", &e))?;
                (Algorithm::ES256, key)
            }
            "EdDSA" => {
                let key = DecodingKey::from_ed_pem(config.key_material.as_bytes())
                    .map_err(|e| invalid_key("EdDSA", &e))?;
                // The verifier slices the first 32 bytes and would panic on fewer.
                if key
                    .try_get_as_bytes()
                    .map_or(true, |bytes| bytes.len() != 32)
                {
                    return Err(IssuerError::InvalidKey {
                        algorithm: "EdDSA",
                        reason: "not a 32-byte Ed25519 public key".into(),
                    });
                }
                (Algorithm::EdDSA, key)
            }
            other => return Err(IssuerError::UnsupportedAlgorithm(other.to_owned())),
        };
        // Building the verifier parses the key (the EC point, the Ed25519 point) now, so a bad
        // key is refused at load rather than failing every request.
        (DEFAULT_PROVIDER.verifier_factory)(&algorithm, &key)
            .map_err(|e| invalid_key(algorithm_name(algorithm), &e))?;

        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.leeway = LEEWAY_SECONDS.unsigned_abs();
        // `exp` and `nbf` are checked in `authenticate_jwt` against the caller's clock: the
        // library's own check reads the system clock, which the caller (and tests) cannot set.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Ok(Self {
            tenant_id: config.tenant_id,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            algorithm,
            key,
            shared: false,
            validation,
        })
    }

    /// Whether `self` and `other` hold the same key, however it was encoded: secrets and
    /// curve points as raw bytes, RSA keys as modulus and exponent (`rsa_key` normalises
    /// PKCS#1 and SPKI to those).
    fn same_key(&self, other: &Self) -> bool {
        let significant =
            |bytes: &[u8]| -> Vec<u8> { bytes.iter().copied().skip_while(|b| *b == 0).collect() };
        self.algorithm == other.algorithm
            && match (self.key.kind(), other.key.kind()) {
                (DecodingKeyKind::SecretOrDer(a), DecodingKeyKind::SecretOrDer(b)) => a == b,
                (
                    DecodingKeyKind::RsaModulusExponent { n, e },
                    DecodingKeyKind::RsaModulusExponent { n: n2, e: e2 },
                ) => significant(n) == significant(n2) && significant(e) == significant(e2),
                _ => false,
            }
    }

    /// The tenant the issuer belongs to.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// The `iss` it accepts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `aud` it requires.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The only algorithm it accepts.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// Parses an RSA PEM public key into its modulus and exponent, so requests never parse DER.
fn rsa_key(pem: &str) -> Result<DecodingKey, IssuerError> {
    let der = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| invalid_key("RS256", &e))?;
    let der = der
        .try_get_as_bytes()
        .map_err(|e| invalid_key("RS256", &e))?;
    let (modulus, exponent) = (DEFAULT_PROVIDER
        .key_utils
        .rsa_pub_components_from_public_key)(der)
    .map_err(|e| invalid_key("RS256", &e))?;
    let bits = modulus
        .iter()
        .position(|byte| *byte != 0)
        .map_or(0, |first| {
            (modulus.len() - first) * 8 - modulus[first].leading_zeros() as usize
        });
    if bits < MIN_RSA_BITS {
        return Err(IssuerError::RsaKeyTooShort { bits });
    }
    Ok(DecodingKey::from_rsa_raw_components(&modulus, &exponent))
}

fn invalid_key(algorithm: &'static str, error: &jsonwebtoken::errors::Error) -> IssuerError {
    IssuerError::InvalidKey {
        algorithm,
        reason: error.to_string(),
    }
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

/// The snapshot's issuers, found by `iss` and then `aud`; a pair may belong to several
/// tenants (with different keys). Keyed by issuer alone so a lookup borrows the token's
/// strings instead of building a key.
#[derive(Debug, Default, Clone)]
pub struct JwtIssuers {
    by_issuer: HashMap<String, Vec<JwtIssuer>>,
}

impl JwtIssuers {
    /// Adds `issuer`, replacing (and returning) the same tenant's one with the same issuer and
    /// audience. If another tenant registered the same key for that pair, both are marked
    /// shared and authenticate nothing.
    pub fn insert(&mut self, mut issuer: JwtIssuer) -> Option<JwtIssuer> {
        let candidates = self.by_issuer.entry(issuer.issuer.clone()).or_default();
        let replaced = candidates
            .iter()
            .position(|i| i.tenant_id == issuer.tenant_id && i.audience == issuer.audience)
            .map(|at| candidates.swap_remove(at));
        for other in candidates.iter_mut() {
            if other.audience == issuer.audience
                && other.tenant_id != issuer.tenant_id
                && other.same_key(&issuer)
            {
                other.shared = true;
                issuer.shared = true;
            }
        }
        candidates.push(issuer);
        replaced
    }

    /// `tenant`'s issuer for exactly this `iss` and `aud`.
    pub fn get(&self, tenant: TenantId, issuer: &str, audience: &str) -> Option<&JwtIssuer> {
        self.by_issuer
            .get(issuer)?
            .iter()
            .find(|i| i.tenant_id == tenant && i.audience == audience)
    }

    /// Registrations refused because several tenants registered the same key for the same
    /// `iss` and `aud`: (issuer, audience, tenant), for the operator's log.
    pub fn shared_keys(&self) -> Vec<(&str, &str, TenantId)> {
        self.by_issuer
            .values()
            .flatten()
            .filter(|i| i.shared)
            .map(|i| (i.issuer.as_str(), i.audience.as_str(), i.tenant_id))
            .collect()
    }

    /// How many (issuer, audience) pairs are known.
    pub fn len(&self) -> usize {
        self.by_issuer.values().map(Vec::len).sum()
    }

    /// Whether no issuer is known.
    pub fn is_empty(&self) -> bool {
        self.by_issuer.is_empty()
    }

    /// The usable issuers for `iss` whose audience is one of `audiences`, in the order of the
    /// token's audiences.
    fn candidates<'a>(
        &'a self,
        issuer: &str,
        audiences: &'a [String],
    ) -> Result<impl Iterator<Item = &'a JwtIssuer>, JwtRejection> {
        let registered = self
            .by_issuer
            .get(issuer)
            .filter(|c| c.iter().any(|i| !i.shared))
            .ok_or(JwtRejection::UnknownIssuer)?;
        Ok(audiences.iter().flat_map(move |aud| {
            registered
                .iter()
                .filter(move |i| !i.shared && i.audience == *aud)
        }))
    }
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtPrincipal {
    /// The `sub` claim.
    pub subject: Option<String>,
    /// From the `scope` claim (space separated) and/or a `scopes` array.
    pub scopes: Vec<String>,
}

/// Why a JWT was refused. All answer 401 except `TenantSuspended` (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtRejection {
    /// Not a well-formed JWT, or a required claim is missing or of the wrong type.
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    /// No issuer with this `iss` is configured.
    #[error("the token's issuer is not known")]
    UnknownIssuer,
    /// No `exp` claim: tokens that never expire are not accepted.
    #[error("the token has no exp claim; tokens must expire")]
    MissingExpiry,
    /// No `iss` claim, so no issuer can be found.
    #[error("the token has no iss claim naming its issuer")]
    MissingIssuer,
    /// `alg: none`, or an algorithm other than the one pinned for the issuer.
    #[error("the token's signing algorithm is not allowed for its issuer")]
    AlgorithmNotAllowed,
    /// The signature does not verify under the issuer's key.
    #[error("the token's signature is invalid")]
    InvalidSignature,
    /// Past `exp` (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// Before `nbf` (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// No configured audience for this issuer is among the token's `aud`.
    #[error("the token's audience is not accepted")]
    InvalidAudience,
    /// The issuer's tenant is suspended (or unknown to this snapshot).
    #[error("the tenant is suspended")]
    TenantSuspended,
}

impl JwtRejection {
    /// Stable machine-readable code for error bodies.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Malformed => "invalid_token",
            Self::UnknownIssuer => "unknown_issuer",
            Self::MissingExpiry => "missing_exp",
            Self::MissingIssuer => "missing_iss",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::InvalidSignature => "invalid_signature",
            Self::Expired => "expired_token",
            Self::NotYetValid => "token_not_yet_valid",
            Self::InvalidAudience => "invalid_audience",
            Self::TenantSuspended => "tenant_suspended",
        }
    }

    /// HTTP status to answer with: 403 for a suspended tenant, 401 otherwise.
    pub const fn status(self) -> u16 {
        match self {
            Self::TenantSuspended => 403,
            _ => 401,
        }
    }
}

/// The claims read from the payload. Unverified until `jsonwebtoken::decode` has accepted the
/// same bytes; only `iss` and `aud` are used before that, to find the issuer.
#[derive(Deserialize)]
struct TokenClaims {
    iss: Option<String>,
    aud: Option<OneOrMany>,
    sub: Option<String>,
    exp: Option<NumericDate>,
    nbf: Option<NumericDate>,
    scope: Option<OneOrMany>,
    scopes: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Seconds since the epoch (RFC 7519 NumericDate: may be fractional; floored).
struct NumericDate(i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        if let Some(seconds) = number.as_i64() {
            return Ok(Self(seconds));
        }
        if number.as_u64().is_some() {
            return Ok(Self(i64::MAX));
        }
        match number.as_f64() {
            // `as` saturates, so a date beyond i64 clamps instead of wrapping.
            #[allow(clippy::cast_possible_truncation)]
            Some(seconds) if seconds.is_finite() => Ok(Self(seconds.floor() as i64)),
            _ => Err(serde::de::Error::custom("not a NumericDate")),
        }
    }
}

/// Only the algorithm name, to tell `alg: none` (or any unknown algorithm) from a broken header.
#[derive(Deserialize)]
struct RawHeader {
    #[allow(dead_code)]
    alg: String,
}

/// Whether the header segment is JSON naming some algorithm, for a header `jsonwebtoken`
/// refused. Only on that error path: it allocates.
fn header_names_an_algorithm(token: &str) -> bool {
    let Some((header, _)) = token.split_once('.') else {
        return false;
    };
    // The library exposes its base64url+JSON segment decoder only for the payload, so the
    // header segment is put in the payload position of an otherwise empty token.
    jsonwebtoken::dangerous::insecure_decode_claims::<RawHeader>(format!(".{header}.")).is_ok()
}

/// The rejection for a token whose signature verified but whose claims did not.
fn claim_rejection(kind: &ErrorKind) -> JwtRejection {
    match kind {
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            JwtRejection::AlgorithmNotAllowed
        }
        ErrorKind::InvalidAudience => JwtRejection::InvalidAudience,
        ErrorKind::InvalidIssuer => JwtRejection::UnknownIssuer,
        ErrorKind::ExpiredSignature => JwtRejection::Expired,
        ErrorKind::ImmatureSignature => JwtRejection::NotYetValid,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => JwtRejection::MissingExpiry,
            "iss" => JwtRejection::MissingIssuer,
            "aud" => JwtRejection::InvalidAudience,
            _ => JwtRejection::Malformed,
        },
        _ => JwtRejection::Malformed,
    }
}

impl ConfigSnapshot {
    /// Authenticates a JWT: the issuer's tenant and the token's principal. A token this snapshot
    /// has verified before skips the signature; `exp`, `nbf` and the tenant's status are checked
    /// against `now` either way.
    pub fn authenticate_jwt(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(&TenantConfig, Arc<JwtPrincipal>), JwtRejection> {
        let now = now.unix_timestamp();
        let verified = match self.verified_tokens.get(token) {
            Some(verified) => {
                verified.check_times(now)?;
                verified
            }
            None => {
                let verified = Arc::new(self.verify_jwt(token)?);
                // Only tokens usable now are remembered.
                verified.check_times(now)?;
                self.verified_tokens.insert(token, verified.clone());
                verified
            }
        };
        match self.tenants.get(&verified.tenant_id) {
            Some(tenant) if tenant.status == TenantStatus::Active => {
                Ok((tenant, verified.principal.clone()))
            }
            _ => Err(JwtRejection::TenantSuspended),
        }
    }

    /// Verifies a JWT's structure, issuer, pinned algorithm, audience and signature, without
    /// the cache and without the clock (the caller checks `exp` and `nbf`).
    pub fn verify_jwt(&self, token: &str) -> Result<Verified, JwtRejection> {
        if token.len() > MAX_TOKEN_BYTES || !looks_like_jwt(token) {
            return Err(JwtRejection::Malformed);
        }
        // The header first: `alg: none` and unknown algorithms are refused before anything else.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            if header_names_an_algorithm(token) {
                JwtRejection::AlgorithmNotAllowed
            } else {
                JwtRejection::Malformed
            }
        })?;
        // No JWS extension is implemented here, so one marked critical must be refused
        // (RFC 7515 §4.1.11). Key hints (`jwk`, `jku`, `x5u`, `kid`) are ignored: the key is pinned.
        if header.crit.is_some() {
            return Err(JwtRejection::Malformed);
        }
        let claims: TokenClaims = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| JwtRejection::Malformed)?;
        let iss = claims.iss.as_deref().ok_or(JwtRejection::MissingIssuer)?;
        let audiences: &[String] = match &claims.aud {
            Some(OneOrMany::One(aud)) => std::slice::from_ref(aud),
            Some(OneOrMany::Many(auds)) => auds,
            None => &[],
        };
        // Every tenant's registration of this `iss` and `aud` is a candidate; the one whose
        // key verifies the signature is the token's tenant.
        let mut refusal = JwtRejection::InvalidAudience;
        let mut verified_by = None;
        for issuer in self.issuers.candidates(iss, audiences)? {
            // Pinned algorithm before any signature work: this is what stops key confusion
            // (an HS256 token "signed" with an RS256 issuer's public key).
            if header.alg != issuer.algorithm {
                if refusal == JwtRejection::InvalidAudience {
                    refusal = JwtRejection::AlgorithmNotAllowed;
                }
                continue;
            }
            match jsonwebtoken::decode::<serde::de::IgnoredAny>(
                token,
                &issuer.key,
                &issuer.validation,
            ) {
                Ok(_) => {
                    verified_by = Some(issuer);
                    break;
                }
                // Not this candidate's key: perhaps another tenant's.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {
                    refusal = JwtRejection::InvalidSignature;
                }
                // The signature verified (claims are checked after it), so this is the
                // token's issuer, and the token is wrong.
                Err(e) => return Err(claim_rejection(e.kind())),
            }
        }
        let issuer = verified_by.ok_or(refusal)?;
        // The signature covers the payload parsed above, so its claims are now trusted.
        let exp = claims.exp.ok_or(JwtRejection::MissingExpiry)?;
        let mut scopes = Vec::new();
        for claim in [claims.scope, claims.scopes].into_iter().flatten() {
            match claim {
                OneOrMany::One(spaced) => {
                    scopes.extend(spaced.split_whitespace().map(str::to_owned));
                }
                OneOrMany::Many(list) => scopes.extend(list),
            }
        }
        Ok(Verified {
            token: token.into(),
            tenant_id: issuer.tenant_id,
            exp: exp.0,
            nbf: claims.nbf.map(|nbf| nbf.0),
            principal: Arc::new(JwtPrincipal {
                subject: claims.sub,
                scopes,
            }),
        })
    }
}

#[cfg(test)]
mod tests;
