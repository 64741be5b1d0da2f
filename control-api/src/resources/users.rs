//! A tenant's users: tenant admins (and platform admins) create and disable them; viewers
//! may list them. Passwords are hashed with argon2id and never returned or logged.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, AuditEntry};
use crate::auth::{Principal, Role, password};
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody, is_unique_violation};
use crate::pagination::{Page, PageQuery, parse_position};
use crate::state::AppState;
use crate::validate;

/// A user of a tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// Id.
    pub id: Uuid,
    /// Email (unique, case-insensitive).
    pub email: String,
    /// Role.
    pub role: Role,
    /// The tenant.
    pub tenant_id: Option<Uuid>,
    /// When the user was disabled; disabled users cannot log in.
    #[serde(with = "time::serde::rfc3339::option")]
    pub disabled_at: Option<OffsetDateTime>,
    /// When the user was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The roles a tenant's user may have.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum TenantRole {
    /// Manages the tenant.
    TenantAdmin,
    /// Reads the tenant's resources.
    TenantViewer,
}

/// A new user of a tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "email": "ann@example.com",
    "role": "tenant_viewer",
    "password": "correct horse battery"
}))]
pub struct CreateUser {
    /// Email address (compared case-insensitively).
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = r"^[^\s@\u0000-\u001f\u007f-\u009f]+@[^\s@\u0000-\u001f\u007f-\u009f]+$"
    )]
    pub email: String,
    /// `tenant_admin` or `tenant_viewer` (platform admins have no tenant).
    #[schema(value_type = TenantRole)]
    pub role: Role,
    /// Initial password, 12 characters or more.
    #[schema(min_length = 12, max_length = 256)]
    pub password: String,
}

const COLUMNS: &str = "id, email, role, tenant_id, disabled_at, created_at";

fn user(row: &Row) -> Result<User, ApiError> {
    Ok(User {
        id: row.get(0),
        email: row.get(1),
        role: Role::from_db(row.get(2))?,
        tenant_id: row.get(3),
        disabled_at: row.get(4),
        created_at: row.get(5),
    })
}

/// Lists a tenant's users, newest first.
#[utoipa::path(get, operation_id = "listUsers", path = "/api/v1/tenants/{tenant_id}/users", tag = "users",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"), PageQuery),
    responses((status = 200, body = Page<User>), (status = "4XX", body = ErrorBody)))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let limit = query.limit()?;
    let after: Option<Uuid> = query.position()?.map(|p| parse_position(&p)).transpose()?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 \
                   AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
            ),
            &[&tenant_id, &after, &query.fetch_limit()?],
        )
        .await?;
    let items = rows.iter().map(user).collect::<Result<Vec<_>, _>>()?;
    Ok(
        HttpResponse::Ok().json(Page::from_fetched(items, limit, |u: &User| {
            u.id.to_string()
        })),
    )
}

/// Creates a user in a tenant.
#[utoipa::path(post, operation_id = "createUser", path = "/api/v1/tenants/{tenant_id}/users", tag = "users",
    security(("bearer" = [])), request_body = CreateUser,
    params(("tenant_id" = Uuid, Path, description = "Tenant id")),
    responses((status = 201, body = User),
        (status = 409, description = "Email taken", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn create(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    JsonBody(body): JsonBody<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_admin_of(tenant_id)?;
    let email = validate::email("email", &body.email)?;
    if body.role == Role::PlatformAdmin {
        return Err(ApiError::invalid(
            "role",
            "must be tenant_admin or tenant_viewer",
        ));
    }
    password::validate_new_password("password", &body.password)?;
    let secret = body.password;
    let hash = web::block(move || password::hash_password(&secret)).await??;
    let id = Uuid::now_v7();
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    if tx
        .query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant_id])
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound);
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO users (id, tenant_id, email, password_hash, role) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            ),
            &[&id, &tenant_id, &email, &hash, &body.role.as_str()],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e, "users_email_key") {
                ApiError::Conflict {
                    code: "email_taken",
                    field: Some("email".into()),
                    message: "another user has this email".into(),
                }
            } else {
                e.into()
            }
        })?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action: "user.create",
            resource_type: "user",
            resource_id: &id.to_string(),
            details: json!({ "email": email, "role": body.role.as_str() }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(user(&row)?))
}

/// One user of a tenant.
#[utoipa::path(get, operation_id = "getUser", path = "/api/v1/tenants/{tenant_id}/users/{user_id}", tag = "users",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"),
           ("user_id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = User), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, user_id) = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2"),
            &[&tenant_id, &user_id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(user(&row)?))
}

/// Disables a user: they can no longer log in, and their tokens stop working at once (every
/// request checks the user's state).
#[utoipa::path(post, operation_id = "disableUser", path = "/api/v1/tenants/{tenant_id}/users/{user_id}/disable", tag = "users",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"),
           ("user_id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = User), (status = "4XX", body = ErrorBody)))]
pub async fn disable(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, user_id) = path.into_inner();
    principal.require_admin_of(tenant_id)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE users SET disabled_at = coalesce(disabled_at, now()), updated_at = now() \
                 WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
            ),
            &[&tenant_id, &user_id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action: "user.disable",
            resource_type: "user",
            resource_id: &user_id.to_string(),
            details: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(user(&row)?))
}

#[cfg(test)]
mod role_tests {
    use super::*;
    use crate::auth::principal::Role;

    /// The document's roles are the tenant roles the validation stores.
    #[test]
    fn the_documented_roles_are_the_tenant_roles() {
        for role in [Role::TenantAdmin, Role::TenantViewer] {
            let parsed: Result<TenantRole, _> =
                serde_json::from_value(serde_json::json!(role.as_str()));
            assert!(parsed.is_ok(), "{} is not documented", role.as_str());
        }
        let platform: Result<TenantRole, _> =
            serde_json::from_value(serde_json::json!(Role::PlatformAdmin.as_str()));
        assert!(
            platform.is_err(),
            "a tenant user cannot be a platform admin"
        );
    }
}
