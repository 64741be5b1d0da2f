//! Plans: rate, quota and price, managed by platform admins. A plan is validated by
//! [`tollgate_core::Plan::new`], whose errors name the field (`pricing.tiers[1].up_to`), and
//! stored in the columns the proxy's loader reads.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tollgate_core::plan::{FailureMode, Pricing, Quota, QuotaCap, RatePolicy};
use tollgate_core::{Plan, PlanId, PlanSpec};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, AuditEntry};
use crate::auth::Principal;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody, is_unique_violation};
use crate::pagination::{Page, PageQuery, after_created, created_position};
use crate::state::AppState;
use crate::validate;

/// A plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// Id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// `{requests_per_second, burst, strict}`.
    #[schema(value_type = Object)]
    pub rate: RatePolicy,
    /// `{included_requests, cap: hard|soft}`; absent: unlimited.
    #[schema(value_type = Option<Object>)]
    pub quota: Option<Quota>,
    /// `open` or `closed`: what the proxy does when the cluster limiter is unreachable.
    #[schema(value_type = String)]
    pub failure_mode: FailureMode,
    /// `{currency, base_fee_minor, included_units, model, …}`.
    #[schema(value_type = Object)]
    pub pricing: Pricing,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A new plan.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlan {
    /// 1 to 100 characters, unique.
    pub name: String,
    /// `{requests_per_second, burst, strict?}`.
    #[schema(value_type = Object)]
    pub rate: RatePolicy,
    /// `{included_requests, cap: hard|soft}`; omit for unlimited.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub quota: Option<Quota>,
    /// `open` (default) or `closed`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub failure_mode: FailureMode,
    /// `{currency, base_fee_minor, included_units?, model: flat|graduated|volume|package, …}`;
    /// prices are decimal strings in major units.
    #[schema(value_type = Object)]
    pub pricing: Pricing,
}

const COLUMNS: &str = "id, name, rate_per_second, burst, quota_included_requests, quota_cap, \
                       failure_mode, pricing, rate_strict, created_at";

/// Reads a plan row back; a row the API did not write may be invalid, which is our fault.
fn view(row: &Row) -> Result<PlanView, ApiError> {
    let bad = |what: String| ApiError::Internal(format!("plan row is invalid: {what}"));
    let unsigned = |n: i32| u32::try_from(n).map_err(|e| bad(e.to_string()));
    let rate = RatePolicy {
        requests_per_second: unsigned(row.get(2))?,
        burst: unsigned(row.get(3))?,
        strict: row.get(8),
    };
    let quota = match (row.get::<_, Option<i64>>(4), row.get::<_, Option<&str>>(5)) {
        (Some(included), Some(cap)) => Some(Quota {
            included_requests: u64::try_from(included).map_err(|e| bad(e.to_string()))?,
            cap: if cap == "hard" {
                QuotaCap::Hard
            } else {
                QuotaCap::Soft
            },
        }),
        _ => None,
    };
    let failure_mode = match row.get::<_, &str>(6) {
        "closed" => FailureMode::Closed,
        _ => FailureMode::Open,
    };
    let pricing: Pricing = serde_json::from_value(row.get::<_, serde_json::Value>(7))
        .map_err(|e| bad(e.to_string()))?;
    Ok(PlanView {
        id: row.get(0),
        name: row.get(1),
        rate,
        quota,
        failure_mode,
        pricing,
        created_at: row.get(9),
    })
}

/// Lists plans, newest first.
#[utoipa::path(get, path = "/api/v1/plans", tag = "plans", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<PlanView>), (status = "4XX", body = ErrorBody)))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_platform_admin()?;
    let limit = query.limit()?;
    let (after_at, after_id) = after_created::<Uuid>(&query)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM plans \
                 WHERE ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2)) \
                 ORDER BY created_at DESC, id DESC LIMIT $3"
            ),
            &[&after_at, &after_id, &query.fetch_limit()?],
        )
        .await?;
    let items = rows.iter().map(view).collect::<Result<Vec<_>, _>>()?;
    Ok(
        HttpResponse::Ok().json(Page::from_fetched(items, limit, |p: &PlanView| {
            created_position(p.created_at, p.id)
        })),
    )
}

/// Creates a plan.
#[utoipa::path(post, path = "/api/v1/plans", tag = "plans", security(("bearer" = [])),
    request_body = CreatePlan,
    responses((status = 201, body = PlanView),
        (status = 409, description = "Another plan has this name", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn create(
    principal: Principal,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<CreatePlan>,
) -> Result<HttpResponse, ApiError> {
    principal.require_platform_admin()?;
    let name = validate::required_text("name", &body.name, 100)?;
    let plan = Plan::new(PlanSpec {
        id: PlanId::new(),
        name,
        rate: body.rate,
        quota: body.quota,
        failure_mode: body.failure_mode,
        pricing: body.pricing,
    })
    .map_err(|e| ApiError::invalid(e.field, e.message))?;
    let too_large = |field: &str| ApiError::invalid(field, "is too large");
    let rate = plan.rate();
    let rate_per_second = i32::try_from(rate.requests_per_second)
        .map_err(|_| too_large("rate.requests_per_second"))?;
    let burst = i32::try_from(rate.burst).map_err(|_| too_large("rate.burst"))?;
    let quota_included = plan
        .quota()
        .map(|q| i64::try_from(q.included_requests))
        .transpose()
        .map_err(|_| too_large("quota.included_requests"))?;
    let quota_cap = plan.quota().map(|q| match q.cap {
        QuotaCap::Hard => "hard",
        QuotaCap::Soft => "soft",
    });
    let failure_mode = match plan.failure_mode() {
        FailureMode::Open => "open",
        FailureMode::Closed => "closed",
    };
    let pricing =
        serde_json::to_value(plan.pricing()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let id = *plan.id().as_uuid();

    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO plans (id, name, rate_per_second, burst, quota_included_requests, \
                   quota_cap, failure_mode, pricing, rate_strict) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &plan.name(),
                &rate_per_second,
                &burst,
                &quota_included,
                &quota_cap,
                &failure_mode,
                &pricing,
                &rate.strict,
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e, "plans_name_key") {
                ApiError::Conflict {
                    code: "plan_name_taken",
                    field: Some("name".into()),
                    message: "another plan has this name".into(),
                }
            } else {
                e.into()
            }
        })?;
    let created = view(&row)?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: None,
            action: "plan.create",
            resource_type: "plan",
            resource_id: &id.to_string(),
            details: json!({
                "name": created.name,
                "rate": created.rate,
                "quota": created.quota,
                "failure_mode": created.failure_mode,
                "pricing": created.pricing,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(plan_id = %id, "Plan created.");
    Ok(HttpResponse::Created().json(created))
}

/// One plan.
#[utoipa::path(get, path = "/api/v1/plans/{plan_id}", tag = "plans", security(("bearer" = [])),
    params(("plan_id" = Uuid, Path, description = "Plan id")),
    responses((status = 200, body = PlanView), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    principal.require_platform_admin()?;
    let plan_id = path.into_inner();
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM plans WHERE id = $1"),
            &[&plan_id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(view(&row)?))
}
