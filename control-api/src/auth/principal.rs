//! Who is calling, taken from the access token and checked against the database on every
//! request (`auth::session::check`), and the guards every handler applies.
//!
//! The tenant scope comes from the token, never from the path: a tenant user naming another
//! tenant in a path gets 404, as if the resource did not exist, so tenants cannot probe each
//! other. Role checks come after the scope check for the same reason.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::session;
use crate::auth::token::TokenKind;
use crate::error::ApiError;
use crate::state::AppState;

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Operates the platform: every tenant, plans, subscriptions.
    PlatformAdmin,
    /// Manages one tenant: keys, routes, users, invoices.
    TenantAdmin,
    /// Reads one tenant's resources.
    TenantViewer,
}

impl Role {
    /// The value stored in `users.role`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PlatformAdmin => "platform_admin",
            Self::TenantAdmin => "tenant_admin",
            Self::TenantViewer => "tenant_viewer",
        }
    }

    /// Reads `users.role`.
    pub fn from_db(value: &str) -> Result<Self, ApiError> {
        match value {
            "platform_admin" => Ok(Self::PlatformAdmin),
            "tenant_admin" => Ok(Self::TenantAdmin),
            "tenant_viewer" => Ok(Self::TenantViewer),
            other => Err(ApiError::Internal(format!(
                "unknown role {other:?} in users"
            ))),
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `users.id`.
    pub user_id: Uuid,
    /// The email, recorded as the actor in the audit log.
    pub email: String,
    /// The role.
    pub role: Role,
    /// The tenant of a tenant user; `None` for platform admins.
    pub tenant_id: Option<Uuid>,
}

impl Principal {
    /// Fails with 403 unless the caller is a platform admin.
    pub fn require_platform_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::PlatformAdmin => Ok(()),
            _ => Err(ApiError::Forbidden),
        }
    }

    /// Fails with 404 unless the caller may see `tenant_id` at all.
    pub fn require_reader_of(&self, tenant_id: Uuid) -> Result<(), ApiError> {
        match (self.role, self.tenant_id) {
            (Role::PlatformAdmin, _) => Ok(()),
            (_, Some(own)) if own == tenant_id => Ok(()),
            _ => Err(ApiError::NotFound),
        }
    }

    /// Fails with 404 for a foreign tenant, then 403 unless the caller administers it.
    pub fn require_admin_of(&self, tenant_id: Uuid) -> Result<(), ApiError> {
        self.require_reader_of(tenant_id)?;
        match self.role {
            Role::PlatformAdmin | Role::TenantAdmin => Ok(()),
            Role::TenantViewer => Err(ApiError::Forbidden),
        }
    }

    /// Fails with 403 for viewers: platform admins and tenant admins pass.
    pub fn require_any_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::PlatformAdmin | Role::TenantAdmin => Ok(()),
            Role::TenantViewer => Err(ApiError::Forbidden),
        }
    }
}

/// The caller and the session their access token belongs to (for logout and password
/// change); extracting it performs the same checks as [`Principal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The caller, as the database says now.
    pub principal: Principal,
    /// The access token's session.
    pub session_id: Uuid,
}

type Extracting<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verified = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("application state is not registered".into()))
            .and_then(|state| {
                let token = bearer_token(req)?;
                let verified = state.tokens.verify(token, TokenKind::Access)?;
                Ok((state, verified))
            });
        Box::pin(async move {
            let (state, verified) = verified?;
            let principal = session::check(&state, &verified).await?;
            Ok(Self {
                principal,
                session_id: verified.session_id,
            })
        })
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let authenticated = Authenticated::from_request(req, payload);
        Box::pin(async move { Ok(authenticated.await?.principal) })
    }
}

fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthenticated)?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthenticated)
}
