//! Access and refresh tokens: HS256 JWTs signed with the configured secret.
//!
//! Both name their session (`sid`). Access tokens are short-lived and carry the role and
//! tenant; each request still checks the session, user and tenant (`auth::session`), so a
//! logout, a disabled user or a suspended tenant stops them at once. Refresh tokens live
//! longer, carry the id of their rotation step (`jti`) and can only be exchanged at
//! `/auth/refresh`, once.

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
    /// The session (`auth_sessions.id`).
    sid: Uuid,
    /// The rotation step of a refresh token (`auth_sessions.refresh_token_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<Uuid>,
    iat: i64,
    exp: i64,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Whom it speaks for, as of its issue.
    pub principal: Principal,
    /// Its session.
    pub session_id: Uuid,
    /// The rotation step, for refresh tokens.
    pub refresh_token_id: Option<Uuid>,
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

    /// Lifetime of refresh tokens (and of an idle session).
    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    /// Issues an access token for `principal` in session `session_id`.
    pub fn issue_access(
        &self,
        principal: &Principal,
        session_id: Uuid,
    ) -> Result<String, ApiError> {
        self.issue(principal, TokenKind::Access, session_id, None)
    }

    /// Issues the refresh token of rotation step `refresh_token_id` of session `session_id`.
    pub fn issue_refresh(
        &self,
        principal: &Principal,
        session_id: Uuid,
        refresh_token_id: Uuid,
    ) -> Result<String, ApiError> {
        self.issue(
            principal,
            TokenKind::Refresh,
            session_id,
            Some(refresh_token_id),
        )
    }

    fn issue(
        &self,
        principal: &Principal,
        kind: TokenKind,
        sid: Uuid,
        jti: Option<Uuid>,
    ) -> Result<String, ApiError> {
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
            sid,
            jti,
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Verifies `token` as a token of `kind`. The error says what was wrong in terms the
    /// caller can act on: a refresh token sent as a bearer token, or a refresh token that is
    /// not one, are told apart from a missing or invalid access token.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<VerifiedToken, ApiError> {
        let invalid = || match kind {
            TokenKind::Access => ApiError::Unauthenticated,
            TokenKind::Refresh => ApiError::InvalidRefreshToken,
        };
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| invalid())?
            .claims;
        if claims.typ != kind {
            return Err(match kind {
                TokenKind::Access => ApiError::RefreshTokenAsBearer,
                TokenKind::Refresh => ApiError::InvalidRefreshToken,
            });
        }
        if (claims.role == Role::PlatformAdmin) != claims.tenant.is_none()
            || (kind == TokenKind::Refresh) != claims.jti.is_some()
        {
            return Err(invalid());
        }
        Ok(VerifiedToken {
            principal: Principal {
                user_id: claims.sub,
                email: claims.email,
                role: claims.role,
                tenant_id: claims.tenant,
            },
            session_id: claims.sid,
            refresh_token_id: claims.jti,
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
        let (sid, jti) = (Uuid::now_v7(), Uuid::now_v7());
        let access = signer.issue_access(&principal, sid).unwrap();
        let verified = signer.verify(&access, TokenKind::Access).unwrap();
        assert_eq!(verified.principal, principal);
        assert_eq!(
            (verified.session_id, verified.refresh_token_id),
            (sid, None)
        );
        assert!(matches!(
            signer.verify(&access, TokenKind::Refresh),
            Err(ApiError::InvalidRefreshToken)
        ));
        let refresh = signer.issue_refresh(&principal, sid, jti).unwrap();
        assert_eq!(
            signer
                .verify(&refresh, TokenKind::Refresh)
                .unwrap()
                .refresh_token_id,
            Some(jti)
        );
        assert!(matches!(
            signer.verify(&refresh, TokenKind::Access),
            Err(ApiError::RefreshTokenAsBearer)
        ));
        let other = self::signer(&"cd".repeat(32));
        assert!(other.verify(&access, TokenKind::Access).is_err());
        assert!(signer.verify("not.a.jwt", TokenKind::Access).is_err());
    }

    #[test]
    fn unsigned_tokens_are_refused() {
        let signer = signer(&"ab".repeat(32));
        let access = signer.issue_access(&admin(), Uuid::now_v7()).unwrap();
        let payload = access.split('.').nth(1).unwrap();
        // {"alg":"none","typ":"JWT"}
        let forged = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert!(signer.verify(&forged, TokenKind::Access).is_err());
    }
}
