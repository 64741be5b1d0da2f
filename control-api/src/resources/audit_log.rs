//! Reading the audit log: platform admins see everything, tenant admins their tenant's
//! entries, viewers nothing.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{Page, PageQuery, parse_position};
use crate::state::AppState;

/// One audited write.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditLogEntry {
    /// Sequence number.
    pub id: i64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who (email, or `system`).
    pub actor: String,
    /// The acting user's id, if a user acted.
    pub actor_user_id: Option<Uuid>,
    /// The tenant concerned.
    pub tenant_id: Option<Uuid>,
    /// What, e.g. `api_key.revoke`.
    pub action: String,
    /// Resource kind.
    pub resource_type: String,
    /// Resource id.
    pub resource_id: Option<String>,
    /// Details of the change (never secrets).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// Audit log entries, newest first.
#[utoipa::path(get, operation_id = "listAuditLog", path = "/api/v1/audit-log", tag = "audit", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<AuditLogEntry>), (status = "4XX", body = ErrorBody)))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any_admin()?;
    let limit = query.limit()?;
    let before: Option<i64> = query.position()?.map(|p| parse_position(&p)).transpose()?;
    // A platform admin's tenant is None: every entry.
    let scope = principal.tenant_id;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT id, at, actor, actor_user_id, tenant_id, action, resource_type, resource_id, \
                    details \
               FROM audit_log \
              WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::bigint IS NULL OR id < $2) \
              ORDER BY id DESC LIMIT $3",
            &[&scope, &before, &query.fetch_limit()?],
        )
        .await?;
    let items = rows
        .iter()
        .map(|row| AuditLogEntry {
            id: row.get(0),
            at: row.get(1),
            actor: row.get(2),
            actor_user_id: row.get(3),
            tenant_id: row.get(4),
            action: row.get(5),
            resource_type: row.get(6),
            resource_id: row.get(7),
            details: row.get(8),
        })
        .collect();
    Ok(
        HttpResponse::Ok().json(Page::from_fetched(items, limit, |e: &AuditLogEntry| {
            e.id.to_string()
        })),
    )
}
