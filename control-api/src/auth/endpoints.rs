//! `POST /auth/login`, `POST /auth/refresh`, `POST /auth/logout`, `GET /me` and
//! `POST /me/password`. The session logic itself lives in `auth::session`, so another token
//! transport can call it.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, AuditEntry};
use crate::auth::password;
use crate::auth::principal::{Authenticated, Principal, Role};
use crate::auth::session::{self, EndReason, IssuedTokens};
use crate::auth::throttle::retry_after_secs;
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

/// A password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The password in use now.
    #[schema(max_length = 256)]
    pub current_password: String,
    /// The new password: at least 12 characters, at most 256 bytes.
    #[schema(min_length = 12, max_length = 256)]
    pub new_password: String,
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
    let ip = client_address(&req);
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
        state.throttle.record_failure(&account, &ip);
        state.metrics.observe_login("failure");
        tracing::info!(%ip, "Login failed.");
        return Err(ApiError::InvalidCredentials);
    };
    state.throttle.record_success(&account, &ip);
    state.metrics.observe_login("success");
    let principal = Principal {
        user_id: row.get(0),
        email: row.get(1),
        role: Role::from_db(row.get(2))?,
        tenant_id: row.get(3),
    };
    let issued = session::start(&state, &principal).await?;
    tracing::info!(user_id = %principal.user_id, session_id = %issued.session_id, "Logged in.");
    Ok(HttpResponse::Ok().json(token_response(&state, issued)))
}

/// Exchanges a refresh token for a new token pair, once: the token is retired, and
/// presenting a retired one again ends its session. A disabled user or suspended tenant
/// cannot refresh.
#[utoipa::path(post, operation_id = "refreshToken", path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Invalid, expired or already used refresh token", body = ErrorBody),
        (status = "4XX", body = ErrorBody),
    ))]
pub async fn refresh(
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let issued = session::refresh(&state, &body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(token_response(&state, issued)))
}

/// Ends the caller's session: its access and refresh tokens stop working at once.
#[utoipa::path(post, operation_id = "logout", path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Logged out"), (status = "4XX", body = ErrorBody)))]
pub async fn logout(
    caller: Authenticated,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    session::end(&state, caller.session_id, EndReason::Logout).await?;
    tracing::info!(user_id = %caller.principal.user_id, session_id = %caller.session_id, "Logged out.");
    Ok(HttpResponse::NoContent().finish())
}

/// Changes the caller's password; every other session of theirs ends, this one continues.
#[utoipa::path(post, operation_id = "changePassword", path = "/api/v1/me/password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePassword,
    responses(
        (status = 204, description = "Password changed"),
        (status = 422, description = "Wrong current password, or an unacceptable new one", body = ErrorBody),
        (status = 429, description = "Too many attempts; see Retry-After", body = ErrorBody),
        (status = "4XX", body = ErrorBody),
    ))]
pub async fn change_password(
    req: HttpRequest,
    caller: Authenticated,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<ChangePassword>,
) -> Result<HttpResponse, ApiError> {
    password::validate_new_password("new_password", &body.new_password)?;
    if body.current_password.len() > password::MAX_PASSWORD_BYTES {
        return Err(wrong_current_password());
    }
    // The same throttle as login: a stolen access token must not become a password oracle.
    let account = caller.principal.email.to_lowercase();
    let ip = client_address(&req);
    if let Some(wait) = state.throttle.check(&account, &ip) {
        return Err(ApiError::Throttled {
            retry_after_secs: retry_after_secs(wait),
        });
    }
    let user_id = caller.principal.user_id;
    let client = state.pool.get().await?;
    let stored_hash: String = client
        .query_one("SELECT password_hash FROM users WHERE id = $1", &[&user_id])
        .await?
        .get(0);
    drop(client);
    let (current, new) = (body.current_password, body.new_password);
    let new_hash = web::block(move || {
        password::verify_password(&current, &stored_hash)
            .then(|| password::hash_password(&new))
            .transpose()
    })
    .await??;
    let Some(new_hash) = new_hash else {
        state.throttle.record_failure(&account, &ip);
        return Err(wrong_current_password());
    };
    state.throttle.record_success(&account, &ip);
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
        &[&user_id, &new_hash],
    )
    .await?;
    let ended =
        session::end_others(&tx, user_id, caller.session_id, EndReason::PasswordChange).await?;
    audit::record(
        &tx,
        &caller.principal,
        AuditEntry {
            tenant_id: caller.principal.tenant_id,
            action: "user.change_password",
            resource_type: "user",
            resource_id: &user_id.to_string(),
            details: json!({ "sessions_ended": ended }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%user_id, sessions_ended = ended, "Password changed.");
    Ok(HttpResponse::NoContent().finish())
}

fn wrong_current_password() -> ApiError {
    ApiError::invalid("current_password", "is not the account's current password")
}

/// The socket peer, not X-Forwarded-For, which any client can set.
fn client_address(req: &HttpRequest) -> String {
    req.peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string())
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

fn token_response(state: &AppState, issued: IssuedTokens) -> TokenResponse {
    TokenResponse {
        access_token: issued.access_token,
        refresh_token: issued.refresh_token,
        token_type: "Bearer".to_owned(),
        expires_in: state.tokens.access_ttl().as_secs(),
    }
}
