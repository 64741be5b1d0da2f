//! A tenant's subscription: which plan applies now. Platform admins switch a tenant to a plan
//! from now on (the current subscription ends, the new one starts, in one transaction);
//! the tenant's own users may read it and its history.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, AuditEntry};
use crate::auth::Principal;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{Page, PageQuery, after_created, created_position};
use crate::state::AppState;

/// A subscription.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionView {
    /// Id.
    pub id: Uuid,
    /// The tenant.
    pub tenant_id: Uuid,
    /// The plan.
    pub plan_id: Uuid,
    /// The plan's name.
    pub plan_name: String,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// When it ends; absent: open-ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
}

/// The plan to switch to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchPlan {
    /// An existing plan's id.
    pub plan_id: Uuid,
}

const COLUMNS: &str = "s.id, s.tenant_id, s.plan_id, p.name, s.starts_at, s.ends_at";

fn view(row: &Row) -> SubscriptionView {
    SubscriptionView {
        id: row.get(0),
        tenant_id: row.get(1),
        plan_id: row.get(2),
        plan_name: row.get(3),
        starts_at: row.get(4),
        ends_at: row.get(5),
    }
}

/// The subscription in force now (the latest started, as the proxy picks it).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/subscription", tag = "subscriptions",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id")),
    responses((status = 200, body = SubscriptionView),
        (status = 404, description = "No such tenant, or no subscription in force", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
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
            &format!(
                "SELECT {COLUMNS} FROM current_subscriptions s JOIN plans p ON p.id = s.plan_id \
                 WHERE s.tenant_id = $1"
            ),
            &[&tenant_id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(view(&row)))
}

/// Switches the tenant to a plan from now on: subscriptions in force end now, ones not yet
/// started are withdrawn, and a new open-ended subscription starts, all in one transaction.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/subscription", tag = "subscriptions",
    security(("bearer" = [])), request_body = SwitchPlan,
    params(("tenant_id" = Uuid, Path, description = "Tenant id")),
    responses((status = 201, body = SubscriptionView), (status = "4XX", body = ErrorBody)))]
pub async fn switch(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    JsonBody(body): JsonBody<SwitchPlan>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    principal.require_platform_admin()?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    // Locking the tenant serialises concurrent switches, so they cannot both end the same
    // subscription and leave two open ones.
    tx.query_opt(
        "SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE",
        &[&tenant_id],
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    tx.query_opt("SELECT 1 FROM plans WHERE id = $1", &[&body.plan_id])
        .await?
        .ok_or_else(|| ApiError::invalid("plan_id", "no such plan"))?;
    // now() is the transaction's start: every row below agrees on the switch instant.
    let withdrawn: Vec<Uuid> = tx
        .query(
            "DELETE FROM subscriptions WHERE tenant_id = $1 AND starts_at >= now() RETURNING id",
            &[&tenant_id],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let ended = tx
        .query(
            "UPDATE subscriptions SET ends_at = now() \
             WHERE tenant_id = $1 AND starts_at < now() AND (ends_at IS NULL OR ends_at > now()) \
             RETURNING id, plan_id",
            &[&tenant_id],
        )
        .await?;
    let ended: Vec<_> = ended
        .iter()
        .map(|row| json!({ "id": row.get::<_, Uuid>(0), "plan_id": row.get::<_, Uuid>(1) }))
        .collect();
    let id = Uuid::now_v7();
    let row = tx
        .query_one(
            &format!(
                "WITH s AS (INSERT INTO subscriptions (id, tenant_id, plan_id, starts_at) \
                            VALUES ($1, $2, $3, now()) RETURNING *) \
                 SELECT {COLUMNS} FROM s JOIN plans p ON p.id = s.plan_id"
            ),
            &[&id, &tenant_id, &body.plan_id],
        )
        .await?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action: "subscription.switch",
            resource_type: "subscription",
            resource_id: &id.to_string(),
            details: json!({ "plan_id": body.plan_id, "ended": ended, "withdrawn": withdrawn }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%tenant_id, plan_id = %body.plan_id, "Tenant switched plans.");
    Ok(HttpResponse::Created().json(view(&row)))
}

/// A subscription in the tenant's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionHistoryItem {
    /// The subscription.
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    /// Whether it is the one in force now (the latest started, as the proxy picks it).
    pub current: bool,
}

/// A tenant's subscriptions, newest start first, with the one in force now marked.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/subscriptions", tag = "subscriptions",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"), PageQuery),
    responses((status = 200, body = Page<SubscriptionHistoryItem>),
        (status = "4XX", body = ErrorBody)))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let limit = query.limit()?;
    // The cursor is the last item's (starts_at, id), in the shared format.
    let (after_at, after_id) = after_created::<Uuid>(&query)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS}, s.id IS NOT DISTINCT FROM ( \
                     SELECT id FROM current_subscriptions WHERE tenant_id = $1) \
                   FROM subscriptions s JOIN plans p ON p.id = s.plan_id \
                  WHERE s.tenant_id = $1 \
                    AND ($2::timestamptz IS NULL OR (s.starts_at, s.id) < ($2, $3)) \
                  ORDER BY s.starts_at DESC, s.id DESC LIMIT $4"
            ),
            &[&tenant_id, &after_at, &after_id, &query.fetch_limit()?],
        )
        .await?;
    let items = rows
        .iter()
        .map(|row| SubscriptionHistoryItem {
            subscription: view(row),
            current: row.get(6),
        })
        .collect();
    Ok(HttpResponse::Ok().json(Page::from_fetched(
        items,
        limit,
        |s: &SubscriptionHistoryItem| created_position(s.subscription.starts_at, s.subscription.id),
    )))
}
