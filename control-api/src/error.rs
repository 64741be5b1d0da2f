//! The crate's one error type and its JSON form: `{"error":{"code","message","field"?}}`.
//!
//! Codes are stable strings clients can branch on; messages are for humans and never echo a
//! secret. Anything that is not the caller's fault is logged here and answered with a generic
//! 500 or 503, so internal detail never leaks into a response.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;

/// Every way a request or the service's start-up can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field has the wrong type or an unacceptable value (422).
    #[error("{message}")]
    InvalidField {
        /// The offending field, as a JSON path (`email`, `scopes[2]`), when known.
        field: Option<String>,
        /// What is wrong with it.
        message: String,
    },
    /// The body is not JSON at all, or a query string or cursor is malformed (400).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// The offending field, when known.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// No valid access token (401).
    #[error("a valid bearer access token is required")]
    Unauthenticated,
    /// A refresh token was sent where an access token belongs (401).
    #[error(
        "this is a refresh token: exchange it at /api/v1/auth/refresh and send the access \
         token it returns"
    )]
    RefreshTokenAsBearer,
    /// The refresh token is malformed, expired, already used or of an ended session (401).
    #[error("the refresh token is invalid, expired or already used; log in again")]
    InvalidRefreshToken,
    /// The access token's session has ended, or its user or tenant can no longer act (401).
    #[error("{reason}; log in again")]
    SessionEnded {
        /// Why, in words (`the session has ended`, `the account is disabled`, ...).
        reason: &'static str,
    },
    /// Wrong email or password; deliberately does not say which (401).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The caller's role may not do this (403).
    #[error("your role does not allow this action")]
    Forbidden,
    /// No such resource, or one the caller may not know exists (404).
    #[error("no such resource")]
    NotFound,
    /// The path exists but not with this method (405).
    #[error("method not allowed on this resource")]
    MethodNotAllowed,
    /// The request conflicts with the current state (409).
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// The conflicting field, when there is one.
        field: Option<String>,
        /// What conflicts.
        message: String,
    },
    /// The body exceeds the configured limit (413).
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// The body is not `application/json` (415).
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// Too many login attempts (429).
    #[error("too many attempts; retry after {retry_after_secs} s")]
    Throttled {
        /// Seconds until the next attempt may succeed.
        retry_after_secs: u64,
    },
    /// PostgreSQL is unreachable or too slow (503).
    #[error("the service is temporarily unavailable")]
    Unavailable,
    /// A setting is missing or unusable at start-up; names the setting.
    #[error("{setting}: {reason}")]
    InvalidSetting {
        /// The environment variable or flag.
        setting: &'static str,
        /// Why it was refused (never the value itself).
        reason: String,
    },
    /// A bug or an unexpected failure (500); the detail is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `invalid_field`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The field the error is about, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// On 429: seconds to wait before trying again (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// A 422 about `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidField {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The stable code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidField { .. } => "invalid_field",
            Self::BadRequest { code, .. } | Self::Conflict { code, .. } => code,
            Self::Unauthenticated => "unauthenticated",
            Self::RefreshTokenAsBearer => "refresh_token_as_bearer",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::SessionEnded { .. } => "session_ended",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Throttled { .. } => "too_many_requests",
            Self::Unavailable => "unavailable",
            Self::InvalidSetting { .. } | Self::Internal(_) => "internal",
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            Self::InvalidField { field, .. }
            | Self::BadRequest { field, .. }
            | Self::Conflict { field, .. } => field.clone(),
            _ => None,
        }
    }

    /// The envelope for this error, with internal detail withheld.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            Self::InvalidSetting { .. } | Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
                field: self.field(),
                retry_after_secs: match self {
                    Self::Throttled { retry_after_secs } => Some(*retry_after_secs),
                    _ => None,
                },
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated
            | Self::RefreshTokenAsBearer
            | Self::InvalidRefreshToken
            | Self::SessionEnded { .. }
            | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidSetting { .. } | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(detail) = self {
            tracing::error!(%detail, "Request failed.");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Self::Throttled { retry_after_secs } = self {
            response.insert_header((RETRY_AFTER, HeaderValue::from(*retry_after_secs)));
        }
        if matches!(
            self,
            Self::Unauthenticated | Self::RefreshTokenAsBearer | Self::SessionEnded { .. }
        ) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(self.body())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.code() {
            // A statement timeout or a connection gone away: not the caller's fault, but transient.
            Some(code) if *code == SqlState::QUERY_CANCELED => Self::Unavailable,
            // Data exceptions and constraint violations are bad input that slipped past validation.
            Some(code) if code.code().starts_with("22") || code.code().starts_with("23") => {
                tracing::warn!(sqlstate = code.code(), "Input refused by the database.");
                Self::InvalidField {
                    field: None,
                    message: "a value is not acceptable".to_owned(),
                }
            }
            Some(_) => Self::Internal(error.to_string()),
            None if error.is_closed() => Self::Unavailable,
            None => Self::Internal(error.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        tracing::warn!(%error, "No database connection.");
        Self::Unavailable
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(error: actix_web::error::BlockingError) -> Self {
        Self::Internal(error.to_string())
    }
}

/// Whether `error` is a unique violation of `constraint`.
pub fn is_unique_violation(error: &tokio_postgres::Error, constraint: &str) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some(constraint)
    })
}
