//! The dashboard's session transport: the refresh token travels in an `HttpOnly`, `Secure`,
//! `SameSite=Strict` cookie scoped to `/api/v1/auth/session`, and only the short-lived access
//! token reaches JavaScript (which keeps it in memory).
//!
//! Why: a script injected into the page can read anything in `localStorage` or in a JSON
//! body, but not an `HttpOnly` cookie, so it could at most use the session while the page is
//! open, never carry a 12-hour refresh token away. `SameSite=Strict` keeps other sites from
//! sending the cookie (no cross-site refresh or logout), and the path keeps it off every other
//! request. These endpoints wrap [`endpoints::login`] and [`endpoints::refresh`] rather than
//! repeat them, so throttling, account checks and token rotation stay in one place; API
//! clients keep using those two with the token in the body.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::endpoints::{self, LoginRequest, RefreshRequest, TokenResponse};
use crate::auth::session;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Name of the refresh cookie.
pub const REFRESH_COOKIE: &str = "tollgate_refresh";
/// The only path the browser sends the cookie to.
pub const COOKIE_PATH: &str = "/api/v1/auth/session";

/// An access token for the dashboard; the refresh token is in the cookie.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    /// Bearer token for API calls; keep it in memory only.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires; then call `/auth/session/refresh`.
    pub expires_in: u64,
}

/// Logs in like `/auth/login`; the refresh token is set as an `HttpOnly` cookie.
#[utoipa::path(post, operation_id = "createSession", path = "/api/v1/auth/session", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = SessionResponse, headers(("Set-Cookie" = String, description = "`tollgate_refresh`, HttpOnly, Secure, SameSite=Strict"))),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 429, description = "Too many attempts; see Retry-After", body = ErrorBody),
        (status = "4XX", body = ErrorBody),
    ))]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: JsonBody<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let response = endpoints::login(req, state, body).await?;
    into_session(response).await
}

/// Exchanges the refresh cookie for a new access token (and a new cookie).
#[utoipa::path(post, operation_id = "refreshSession", path = "/api/v1/auth/session/refresh", tag = "auth",
    responses(
        (status = 200, body = SessionResponse, headers(("Set-Cookie" = String, description = "The new `tollgate_refresh` cookie"))),
        (status = 401, description = "No cookie, or an invalid or expired refresh token", body = ErrorBody),
        (status = "4XX", body = ErrorBody),
    ))]
pub async fn refresh(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let refresh_token = cookie_value(&req, REFRESH_COOKIE).ok_or(ApiError::Unauthenticated)?;
    let response = endpoints::refresh(state, JsonBody(RefreshRequest { refresh_token })).await?;
    into_session(response).await
}

/// Ends the browser session: the server-side session ends (so its access token stops
/// working at once, like `/auth/logout`) and the refresh cookie is cleared.
#[utoipa::path(post, operation_id = "deleteSession", path = "/api/v1/auth/session/logout", tag = "auth",
    responses((status = 204, description = "The session is ended and the cookie cleared",
        headers(("Set-Cookie" = String, description = "An expired `tollgate_refresh`")))))]
pub async fn logout(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refresh_token) = cookie_value(&req, REFRESH_COOKIE) {
        // An expired or already rotated cookie names no live session: clearing it is all
        // there is to do.
        if let Err(e) = session::end_by_refresh_token(&state, &refresh_token).await {
            tracing::debug!(error = %e, "Logout cookie named no live session.");
        }
    }
    let mut response = HttpResponse::NoContent().finish();
    set_cookie(&mut response, "", Some(0));
    response
}

/// Moves the refresh token of a [`TokenResponse`] into the cookie.
async fn into_session(response: HttpResponse) -> Result<HttpResponse, ApiError> {
    if response.status() != StatusCode::OK {
        return Ok(response);
    }
    let bytes = actix_web::body::to_bytes(response.into_body())
        .await
        .map_err(|_| ApiError::Internal("token response body unreadable".into()))?;
    let tokens: TokenResponse = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Internal(format!("token response: {e}")))?;
    let mut session = HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(SessionResponse {
            access_token: tokens.access_token,
            token_type: tokens.token_type,
            expires_in: tokens.expires_in,
        });
    set_cookie(&mut session, &tokens.refresh_token, None);
    Ok(session)
}

/// A session cookie (no `Max-Age`: it ends with the browser; the token inside expires on its
/// own) unless `max_age` is given (0 clears it).
fn set_cookie(response: &mut HttpResponse, value: &str, max_age: Option<u32>) {
    let max_age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    let cookie = format!(
        "{REFRESH_COOKIE}={value}; Path={COOKIE_PATH}; HttpOnly; Secure; SameSite=Strict{max_age}"
    );
    // A JWT is base64url with dots: always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_refresh_cookie_is_found_among_others() {
        let req = TestRequest::default()
            .insert_header((header::COOKIE, "a=1; tollgate_refresh=abc.def; b=2"))
            .to_http_request();
        assert_eq!(
            cookie_value(&req, REFRESH_COOKIE).as_deref(),
            Some("abc.def")
        );
        let req = TestRequest::default()
            .insert_header((header::COOKIE, "tollgate_refresh="))
            .to_http_request();
        assert_eq!(cookie_value(&req, REFRESH_COOKIE), None);
        assert_eq!(
            cookie_value(&TestRequest::default().to_http_request(), REFRESH_COOKIE),
            None
        );
    }

    #[test]
    fn the_cookie_is_http_only_secure_strict_and_scoped_to_the_session_path() {
        let mut response = HttpResponse::Ok().finish();
        set_cookie(&mut response, "t.o.k", None);
        let cookie = response
            .headers()
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(
            cookie,
            "tollgate_refresh=t.o.k; Path=/api/v1/auth/session; HttpOnly; Secure; SameSite=Strict"
        );
    }
}
