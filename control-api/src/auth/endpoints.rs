//! `POST /auth/login`, `POST /auth/refresh` and `GET /me`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::password;
use crate::auth::principal::{Principal, Role};
use crate::auth::throttle::retry_after_secs;
use crate::auth::token::TokenKind;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The account's email.
    #[schema(max_length = 254)]
    pub email: String,
    /// The account's password.
    #[schema(max_length = 256)]
    pub password: String,
}

/// A refresh token to exchange.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The `refresh_token` of a login or an earlier refresh.
    pub refresh_token: String,
}

/// Tokens for an authenticated session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// Bearer token for API calls.
    pub access_token: String,
    /// Exchange at `/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// The caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// User id.
    pub id: Uuid,
    /// Email.
    pub email: String,
    /// Role.
    pub role: Role,
    /// The user's tenant; absent for platform admins.
    pub tenant_id: Option<Uuid>,
}

/// Logs in with email and password.
#[utoipa::path(post, operation_id = "login", path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 429, description = "Too many attempts; see Retry-After", body = ErrorBody),
        (status = "4XX", body = ErrorBody),
    ))]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    // Malformed input is refused before it is counted or hashed.
    if body.email.len() > 254 || body.password.len() > password::MAX_PASSWORD_BYTES {
        return Err(ApiError::InvalidCredentials);
    }
    let account = body.email.trim().to_lowercase();
    // The socket peer, not X-Forwarded-For, which any client can set.
    let ip = req
        .peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
    if let Some(wait) = state.throttle.check(&account, &ip) {
        state.metrics.observe_login("throttled");
        return Err(ApiError::Throttled {
            retry_after_secs: retry_after_secs(wait),
        });
    }
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT u.id, u.email, u.role, u.tenant_id, u.password_hash \
               FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id \
              WHERE lower(u.email) = $1 AND u.disabled_at IS NULL \
                AND (t.id IS NULL OR t.status = 'active')",
            &[&account],
        )
        .await?;
    drop(client);
    let stored_hash = row
        .as_ref()
        .map_or_else(|| state.dummy_password_hash.clone(), |r| r.get(4));
    let password = body.password;
    // Verified even for unknown emails, so that timing does not reveal which accounts exist.
    let verified = web::block(move || password::verify_password(&password, &stored_hash)).await?;
    let Some(row) = row.filter(|_| verified) else {
        state.throttle.record_failure(&account);
        state.metrics.observe_login("failure");
        tracing::info!(%ip, "Login failed.");
        return Err(ApiError::InvalidCredentials);
    };
    state.throttle.record_success(&account);
    state.metrics.observe_login("success");
    let principal = Principal {
        user_id: row.get(0),
        email: row.get(1),
        role: Role::from_db(row.get(2))?,
        tenant_id: row.get(3),
    };
    tracing::info!(user_id = %principal.user_id, "Logged in.");
    Ok(HttpResponse::Ok().json(token_pair(&state, &principal)?))
}

/// Exchanges a refresh token for a new token pair; a disabled user or suspended tenant cannot.
#[utoipa::path(post, operation_id = "refreshToken", path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Invalid or expired refresh token", body = ErrorBody),
        (status = "4XX", body = ErrorBody),
    ))]
pub async fn refresh(
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let claimed = state
        .tokens
        .verify(&body.refresh_token, TokenKind::Refresh)?;
    let principal = current_principal(&state, claimed.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    Ok(HttpResponse::Ok().json(token_pair(&state, &principal)?))
}

/// The authenticated caller.
#[utoipa::path(get, operation_id = "getMe", path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(principal: Principal) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(Me {
        id: principal.user_id,
        email: principal.email,
        role: principal.role,
        tenant_id: principal.tenant_id,
    }))
}

/// Reads the user afresh: `None` if gone, disabled, or in a suspended tenant.
async fn current_principal(state: &AppState, user_id: Uuid) -> Result<Option<Principal>, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT u.id, u.email, u.role, u.tenant_id \
               FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id \
              WHERE u.id = $1 AND u.disabled_at IS NULL \
                AND (t.id IS NULL OR t.status = 'active')",
            &[&user_id],
        )
        .await?;
    row.map(|row| {
        Ok(Principal {
            user_id: row.get(0),
            email: row.get(1),
            role: Role::from_db(row.get(2))?,
            tenant_id: row.get(3),
        })
    })
    .transpose()
}

fn token_pair(state: &AppState, principal: &Principal) -> Result<TokenResponse, ApiError> {
    Ok(TokenResponse {
        access_token: state.tokens.issue(principal, TokenKind::Access)?,
        refresh_token: state.tokens.issue(principal, TokenKind::Refresh)?,
        token_type: "Bearer".to_owned(),
        expires_in: state.tokens.access_ttl().as_secs(),
    })
}
