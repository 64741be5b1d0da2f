//! Access and refresh tokens: HS256 JWTs signed with the configured secret.
//!
//! Access tokens are short-lived and carry everything authorisation needs (user, role,
//! tenant), so a request needs no lookup to be authorised. Refresh tokens live longer and can
//! only be exchanged at `/auth/refresh`, which re-reads the user so a disabled account stops.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::principal::{Principal, Role};
use crate::config::JwtSecret;
use crate::error::ApiError;

/// Which of the two token kinds a JWT is; one is never accepted in place of the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Authorises API calls.
    Access,
    /// Obtains a new access token.
    Refresh,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    email: String,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<Uuid>,
    typ: TokenKind,
    iat: i64,
    exp: i64,
}

/// Signs and verifies tokens.
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer for `secret` issuing tokens with the given lifetimes.
    pub fn new(secret: &JwtSecret, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            access_ttl,
            refresh_ttl,
        }
    }

    /// Lifetime of access tokens.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Issues a token of `kind` for `principal`.
    pub fn issue(&self, principal: &Principal, kind: TokenKind) -> Result<String, ApiError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ttl = match kind {
            TokenKind::Access => self.access_ttl,
            TokenKind::Refresh => self.refresh_ttl,
        };
        let claims = Claims {
            sub: principal.user_id,
            email: principal.email.clone(),
            role: principal.role,
            tenant: principal.tenant_id,
            typ: kind,
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Verifies `token` as a token of `kind` and returns whom it speaks for.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Principal, ApiError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| ApiError::Unauthenticated)?
            .claims;
        if claims.typ != kind || (claims.role == Role::PlatformAdmin) != claims.tenant.is_none() {
            return Err(ApiError::Unauthenticated);
        }
        Ok(Principal {
            user_id: claims.sub,
            email: claims.email,
            role: claims.role,
            tenant_id: claims.tenant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(secret: &str) -> TokenSigner {
        TokenSigner::new(
            &JwtSecret::parse(secret).unwrap(),
            Duration::from_secs(60),
            Duration::from_secs(600),
        )
    }

    fn admin() -> Principal {
        Principal {
            user_id: Uuid::now_v7(),
            email: "a@example.com".into(),
            role: Role::TenantAdmin,
            tenant_id: Some(Uuid::now_v7()),
        }
    }

    #[test]
    fn a_token_round_trips_only_as_its_own_kind_and_secret() {
        let signer = signer(&"ab".repeat(32));
        let principal = admin();
        let access = signer.issue(&principal, TokenKind::Access).unwrap();
        assert_eq!(
            signer.verify(&access, TokenKind::Access).unwrap(),
            principal
        );
        assert!(signer.verify(&access, TokenKind::Refresh).is_err());
        let other = self::signer(&"cd".repeat(32));
        assert!(other.verify(&access, TokenKind::Access).is_err());
        assert!(signer.verify("not.a.jwt", TokenKind::Access).is_err());
    }

    #[test]
    fn unsigned_tokens_are_refused() {
        let signer = signer(&"ab".repeat(32));
        let access = signer.issue(&admin(), TokenKind::Access).unwrap();
        let payload = access.split('.').nth(1).unwrap();
        // {"alg":"none","typ":"JWT"}
        let forged = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert!(signer.verify(&forged, TokenKind::Access).is_err());
    }
}
