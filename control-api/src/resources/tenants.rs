//! Tenants: platform admins create, list, suspend and reactivate them; a tenant's own users
//! may read their tenant. A suspended tenant's keys stop working at the proxy, which reloads
//! on the `tollgate_config` notification the `tenants` trigger sends.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tollgate_core::{StoredText, TenantStatus};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, AuditEntry};
use crate::auth::Principal;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody, is_unique_violation};
use crate::pagination::{Page, PageQuery, parse_position};
use crate::state::AppState;
use crate::validate;

/// A tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    /// Id.
    pub id: Uuid,
    /// Unique, URL-safe short name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Whether its keys and tokens work.
    #[schema(value_type = TenantStatusDoc)]
    pub status: TenantStatus,
    /// Where invoices are emailed; `null`: no invoice email is sent.
    pub billing_email: Option<String>,
    /// How Stripe collects its invoices: `charge_automatically` or `send_invoice`.
    pub collection_method: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A tenant's state as the document names it (the domain's `TenantStatus`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = TenantStatus)]
#[allow(dead_code)]
pub enum TenantStatusDoc {
    /// Its keys and tokens work.
    Active,
    /// The gateway refuses its keys and tokens (403 `tenant_suspended`), and its users'
    /// control-API sessions stop working.
    Suspended,
}

/// A new tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 1 to 63 lower-case letters, digits or dashes, starting with a letter or digit.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub slug: String,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Where invoices are emailed.
    #[serde(default)]
    pub billing_email: Option<String>,
    /// `charge_automatically` (default) or `send_invoice`.
    #[serde(default)]
    pub collection_method: Option<String>,
}

/// Changes to a tenant's billing details; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// Where invoices are emailed; `null` stops invoice email.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<String>)]
    pub billing_email: Option<Option<String>>,
    /// `charge_automatically` or `send_invoice` (platform admins only).
    #[serde(default)]
    pub collection_method: Option<String>,
}

/// Stripe's collection methods.
const COLLECTION_METHODS: &[&str] = &["charge_automatically", "send_invoice"];

fn collection_method(value: &str) -> Result<String, ApiError> {
    if COLLECTION_METHODS.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(ApiError::invalid(
            "collection_method",
            "must be charge_automatically or send_invoice",
        ))
    }
}

const COLUMNS: &str =
    "id, slug, name, status, created_at, updated_at, billing_email, collection_method";

/// Reads a tenant row back; its status is decoded strictly, like the proxy's loader does (an
/// unknown value is our fault, 500, never shown as if it were one of the two).
fn tenant(row: &Row) -> Result<Tenant, ApiError> {
    let status = row
        .get::<_, &str>(3)
        .parse::<TenantStatus>()
        .map_err(|error| ApiError::Internal(format!("tenant row is invalid: {error}")))?;
    Ok(Tenant {
        id: row.get(0),
        slug: row.get(1),
        name: row.get(2),
        status,
        created_at: row.get(4),
        updated_at: row.get(5),
        billing_email: row.get(6),
        collection_method: row.get(7),
    })
}

/// Lists every tenant (platform admin).
#[utoipa::path(get, operation_id = "listTenants", path = "/api/v1/tenants", tag = "tenants", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<Tenant>), (status = "4XX", body = ErrorBody)))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_platform_admin()?;
    let limit = query.limit()?;
    let after: Option<Uuid> = query.position()?.map(|p| parse_position(&p)).transpose()?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM tenants WHERE ($1::uuid IS NULL OR id < $1) \
                 ORDER BY id DESC LIMIT $2"
            ),
            &[&after, &query.fetch_limit()?],
        )
        .await?;
    let items = rows.iter().map(tenant).collect::<Result<Vec<_>, _>>()?;
    Ok(
        HttpResponse::Ok().json(Page::from_fetched(items, limit, |t: &Tenant| {
            t.id.to_string()
        })),
    )
}

/// Creates a tenant (platform admin).
#[utoipa::path(post, operation_id = "createTenant", path = "/api/v1/tenants", tag = "tenants", security(("bearer" = [])),
    request_body = CreateTenant,
    responses((status = 201, body = Tenant), (status = 409, description = "Slug taken", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn create(
    principal: Principal,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<CreateTenant>,
) -> Result<HttpResponse, ApiError> {
    principal.require_platform_admin()?;
    let slug = validate::slug("slug", &body.slug)?;
    let name = validate::required_text("name", &body.name, 200)?;
    let billing_email = body
        .billing_email
        .as_deref()
        .map(|email| validate::email("billing_email", email))
        .transpose()?;
    let method = collection_method(
        body.collection_method
            .as_deref()
            .unwrap_or("charge_automatically"),
    )?;
    let id = Uuid::now_v7();
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO tenants (id, slug, name, billing_email, collection_method) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            ),
            &[&id, &slug, &name, &billing_email, &method],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e, "tenants_slug_key") {
                ApiError::Conflict {
                    code: "slug_taken",
                    field: Some("slug".into()),
                    message: "another tenant has this slug".into(),
                }
            } else {
                e.into()
            }
        })?;
    let created = tenant(&row)?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(id),
            action: "tenant.create",
            resource_type: "tenant",
            resource_id: &id.to_string(),
            details: json!({ "slug": slug, "name": name }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(created))
}

/// One tenant (platform admin, or the tenant's own users).
#[utoipa::path(get, operation_id = "getTenant", path = "/api/v1/tenants/{tenant_id}", tag = "tenants", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"),
            &[&tenant_id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(tenant(&row)?))
}

/// Changes a tenant's billing details (platform admin, or the tenant's admins for the billing
/// email; the collection method is a commercial term only platform admins change).
#[utoipa::path(patch, operation_id = "updateTenant", path = "/api/v1/tenants/{tenant_id}", tag = "tenants",
    security(("bearer" = [])), params(("tenant_id" = Uuid, Path, description = "Tenant id")),
    request_body = UpdateTenant,
    responses((status = 200, body = Tenant), (status = "4XX", body = ErrorBody)))]
pub async fn update(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    JsonBody(body): JsonBody<UpdateTenant>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_admin_of(tenant_id)?;
    let method = body
        .collection_method
        .as_deref()
        .map(collection_method)
        .transpose()?;
    if method.is_some() {
        principal.require_platform_admin()?;
    }
    let email = body
        .billing_email
        .map(|email| {
            email
                .map(|email| validate::email("billing_email", &email))
                .transpose()
        })
        .transpose()?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE tenants SET \
                   billing_email = CASE WHEN $2 THEN $3 ELSE billing_email END, \
                   collection_method = COALESCE($4, collection_method), updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &tenant_id,
                &email.is_some(),
                &email.clone().flatten(),
                &method,
            ],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action: "tenant.update",
            resource_type: "tenant",
            resource_id: &tenant_id.to_string(),
            details: json!({ "billing_email": email, "collection_method": method }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(tenant(&row)?))
}

/// Suspends a tenant: its keys stop working at the proxy, and its users cannot log in and their
/// tokens stop working at once.
#[utoipa::path(post, operation_id = "suspendTenant", path = "/api/v1/tenants/{tenant_id}/suspend", tag = "tenants",
    security(("bearer" = [])), params(("tenant_id" = Uuid, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant), (status = "4XX", body = ErrorBody)))]
pub async fn suspend(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    set_status(
        principal,
        state,
        path.into_inner(),
        TenantStatus::Suspended,
        "tenant.suspend",
    )
    .await
}

/// Reactivates a suspended tenant.
#[utoipa::path(post, operation_id = "reactivateTenant", path = "/api/v1/tenants/{tenant_id}/reactivate", tag = "tenants",
    security(("bearer" = [])), params(("tenant_id" = Uuid, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant), (status = "4XX", body = ErrorBody)))]
pub async fn reactivate(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    set_status(
        principal,
        state,
        path.into_inner(),
        TenantStatus::Active,
        "tenant.reactivate",
    )
    .await
}

async fn set_status(
    principal: Principal,
    state: web::Data<AppState>,
    tenant_id: Uuid,
    status: TenantStatus,
    action: &str,
) -> Result<HttpResponse, ApiError> {
    // A tenant admin learns nothing about other tenants (404) and may not change its own (403).
    principal.require_reader_of(tenant_id)?;
    principal.require_platform_admin()?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE tenants SET status = $2, updated_at = now() WHERE id = $1 \
                 RETURNING {COLUMNS}"
            ),
            &[&tenant_id, &status.as_str()],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action,
            resource_type: "tenant",
            resource_id: &tenant_id.to_string(),
            details: json!({ "status": status.as_str() }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(tenant(&row)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document's enum is the list the domain stores, no more and no less.
    #[test]
    fn the_documented_statuses_are_the_stored_ones() {
        let documented = |status: &TenantStatusDoc| match status {
            TenantStatusDoc::Active => "active",
            TenantStatusDoc::Suspended => "suspended",
        };
        for (_, stored) in TenantStatus::VALUES {
            let parsed: TenantStatusDoc = serde_json::from_value(json!(stored))
                .unwrap_or_else(|e| panic!("{stored} is stored but not documented: {e}"));
            assert_eq!(documented(&parsed), *stored);
        }
        let all = [TenantStatusDoc::Active, TenantStatusDoc::Suspended];
        assert_eq!(all.len(), TenantStatus::VALUES.len());
    }
}
