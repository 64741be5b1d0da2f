//! Plans: rate, quota and price, managed by platform admins. A plan is validated by
//! [`tollgate_core::Plan::new`], whose errors name the field (`pricing.tiers[1].up_to`), and
//! stored in the columns the proxy's loader reads.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tollgate_core::plan::{FailureMode, Pricing, Quota, RatePolicy};
use tollgate_core::{Plan, PlanId, PlanRow, PlanSpec, StoredText};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, AuditEntry};
use crate::auth::{Principal, Role};
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody, is_unique_violation};
use crate::pagination::{Page, PageQuery, after_created, created_position};
use crate::resources::plan_schema::{
    FailureModeDoc, PricingDoc, QuotaDoc, RatePatchDoc, RatePolicyDoc,
};
use crate::state::AppState;
use crate::validate;

/// A plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// Id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Request rate.
    #[schema(value_type = RatePolicyDoc)]
    pub rate: RatePolicy,
    /// Monthly quota; `null`: unlimited.
    #[schema(value_type = Option<QuotaDoc>, nullable, required = true)]
    pub quota: Option<Quota>,
    /// What the proxy does when the cluster limiter is unreachable.
    #[schema(value_type = FailureModeDoc)]
    pub failure_mode: FailureMode,
    /// Monthly price.
    #[schema(value_type = PricingDoc)]
    pub pricing: Pricing,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A new plan.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Growth",
    "rate": {"requests_per_second": 50, "burst": 100},
    "quota": {"included_requests": 1000000, "cap": "soft"},
    "failure_mode": "open",
    "pricing": {"model": "graduated", "currency": "USD", "base_fee_minor": 4900,
                "included_units": 100000,
                "tiers": [{"up_to": 1000000, "unit_price": "0.0004"}, {"up_to": null, "unit_price": "0.0002"}]}
}))]
pub struct CreatePlan {
    /// 1 to 100 characters, unique.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    /// Request rate.
    #[schema(value_type = RatePolicyDoc)]
    pub rate: RatePolicy,
    /// Monthly quota; omit (or `null`) for unlimited.
    #[serde(default)]
    #[schema(value_type = Option<QuotaDoc>, nullable)]
    pub quota: Option<Quota>,
    /// `open` (default) or `closed`.
    #[serde(default)]
    #[schema(value_type = FailureModeDoc, required = false)]
    pub failure_mode: FailureMode,
    /// Monthly price; prices are decimal strings in major units.
    #[schema(value_type = PricingDoc)]
    pub pricing: Pricing,
}

/// The columns [`view`] reads, in its order: `tollgate_core::PLAN_COLUMNS` (what [`PlanRow`] decodes), then
/// `created_at`.
pub(crate) const COLUMNS: &str = "id, name, rate_per_second, burst, quota_included_requests, quota_cap, \
                       failure_mode, pricing, rate_strict, created_at";

/// Reads a plan row back, decoded by the same [`PlanRow`] as the proxy's loader: a row the API
/// did not write may hold a value the decoder refuses, which is our fault (500), never a
/// guessed `soft` or `open`.
pub(crate) fn view(row: &Row) -> Result<PlanView, ApiError> {
    let bad = |error: tollgate_core::PlanError| {
        ApiError::Internal(format!("plan row is invalid: {error}"))
    };
    let spec = PlanRow::from_row(row)
        .and_then(PlanRow::decode)
        .map_err(bad)?;
    Ok(PlanView {
        id: *spec.id.as_uuid(),
        name: spec.name,
        rate: spec.rate,
        quota: spec.quota,
        failure_mode: spec.failure_mode,
        pricing: spec.pricing,
        created_at: row.get(9),
    })
}

/// Lists plans, newest first.
#[utoipa::path(get, operation_id = "listPlans", path = "/api/v1/plans", tag = "plans", security(("bearer" = [])),
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
#[utoipa::path(post, operation_id = "createPlan", path = "/api/v1/plans", tag = "plans", security(("bearer" = [])),
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
    let stored = stored_limits(&plan)?;
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
                &stored.name,
                &stored.rate_per_second,
                &stored.burst,
                &stored.quota_included,
                &stored.quota_cap,
                &stored.failure_mode,
                &stored.pricing,
                &stored.strict,
            ],
        )
        .await
        .map_err(name_taken)?;
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

/// One plan. Tenant users may read the plans their tenant is or was subscribed to (any
/// other is not found for them); platform admins read every plan.
#[utoipa::path(get, operation_id = "getPlan", path = "/api/v1/plans/{plan_id}", tag = "plans", security(("bearer" = [])),
    params(("plan_id" = Uuid, Path, description = "Plan id")),
    responses((status = 200, body = PlanView), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    // A platform admin has no tenant: NULL lifts the subscription condition.
    let subscriber = match principal.role {
        Role::PlatformAdmin => None,
        Role::TenantAdmin | Role::TenantViewer => {
            Some(principal.tenant_id.ok_or(ApiError::NotFound)?)
        }
    };
    let plan_id = path.into_inner();
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM plans p WHERE id = $1 AND ($2::uuid IS NULL OR EXISTS \
                   (SELECT 1 FROM subscriptions s WHERE s.plan_id = p.id AND s.tenant_id = $2))"
            ),
            &[&plan_id, &subscriber],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(view(&row)?))
}

/// Changes to a rate policy; absent fields stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatePatch {
    /// Sustained requests per second.
    pub requests_per_second: Option<u32>,
    /// Burst.
    pub burst: Option<u32>,
    /// One atomic Redis script per request.
    pub strict: Option<bool>,
}

/// Changes to a plan's name and limits. Pricing is immutable, like a Stripe price: create a
/// new plan and switch subscriptions to it, so issued invoices keep meaning what they said.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlan {
    /// 1 to 100 characters, unique.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: Option<String>,
    /// Changes to the rate.
    #[serde(default)]
    #[schema(value_type = Option<RatePatchDoc>)]
    pub rate: Option<RatePatch>,
    /// A new quota, or `null` for unlimited.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<QuotaDoc>, nullable)]
    pub quota: Option<Option<Quota>>,
    /// `open` or `closed`.
    #[schema(value_type = Option<FailureModeDoc>)]
    pub failure_mode: Option<FailureMode>,
    /// Not part of the document: pricing is immutable, and a body naming `pricing` gets 422.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(ignore)]
    pub pricing: Option<Option<serde_json::Value>>,
}

/// The columns a plan's limits are stored in.
#[derive(Debug)]
struct StoredLimits<'a> {
    rate_per_second: i32,
    burst: i32,
    quota_included: Option<i64>,
    quota_cap: Option<&'static str>,
    failure_mode: &'static str,
    pricing: serde_json::Value,
    name: &'a str,
    strict: bool,
}

fn stored_limits(plan: &Plan) -> Result<StoredLimits<'_>, ApiError> {
    let too_large = |field: &str| ApiError::invalid(field, "is too large");
    let rate = plan.rate();
    Ok(StoredLimits {
        rate_per_second: i32::try_from(rate.requests_per_second)
            .map_err(|_| too_large("rate.requests_per_second"))?,
        burst: i32::try_from(rate.burst).map_err(|_| too_large("rate.burst"))?,
        quota_included: plan
            .quota()
            .map(|q| i64::try_from(q.included_requests))
            .transpose()
            .map_err(|_| too_large("quota.included_requests"))?,
        quota_cap: plan.quota().map(|q| q.cap.as_str()),
        failure_mode: plan.failure_mode().as_str(),
        pricing: serde_json::to_value(plan.pricing())
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        name: plan.name(),
        strict: rate.strict,
    })
}

fn name_taken(e: tokio_postgres::Error) -> ApiError {
    if is_unique_violation(&e, "plans_name_key") {
        ApiError::Conflict {
            code: "plan_name_taken",
            field: Some("name".into()),
            message: "another plan has this name".into(),
        }
    } else {
        e.into()
    }
}

/// Changes a plan's name or limits; proxies reload it through the `plans` trigger's
/// notification. Any pricing field is refused.
#[utoipa::path(patch, operation_id = "updatePlan", path = "/api/v1/plans/{plan_id}", tag = "plans", security(("bearer" = [])),
    params(("plan_id" = Uuid, Path, description = "Plan id")), request_body = UpdatePlan,
    responses((status = 200, body = PlanView),
        (status = 409, description = "Another plan has this name", body = ErrorBody),
        (status = 422, description = "A bad value, or a pricing field; names the field", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn update(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    JsonBody(body): JsonBody<UpdatePlan>,
) -> Result<HttpResponse, ApiError> {
    principal.require_platform_admin()?;
    if body.pricing.is_some() {
        return Err(ApiError::invalid(
            "pricing",
            "is immutable: create a new plan and switch subscriptions to it",
        ));
    }
    let name = body
        .name
        .as_deref()
        .map(|name| validate::required_text("name", name, 100))
        .transpose()?;
    let plan_id = path.into_inner();
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM plans WHERE id = $1 FOR UPDATE"),
            &[&plan_id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    let before = view(&row)?;
    let patch = body.rate.unwrap_or_default();
    let plan = Plan::new(PlanSpec {
        id: PlanId::from_uuid(plan_id),
        name: name.unwrap_or_else(|| before.name.clone()),
        rate: RatePolicy {
            requests_per_second: patch
                .requests_per_second
                .unwrap_or(before.rate.requests_per_second),
            burst: patch.burst.unwrap_or(before.rate.burst),
            strict: patch.strict.unwrap_or(before.rate.strict),
        },
        quota: body.quota.unwrap_or(before.quota),
        failure_mode: body.failure_mode.unwrap_or(before.failure_mode),
        pricing: before.pricing.clone(),
    })
    .map_err(|e| ApiError::invalid(e.field, e.message))?;
    let stored = stored_limits(&plan)?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE plans SET name = $2, rate_per_second = $3, burst = $4, \
                   quota_included_requests = $5, quota_cap = $6, failure_mode = $7, \
                   rate_strict = $8, updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &plan_id,
                &stored.name,
                &stored.rate_per_second,
                &stored.burst,
                &stored.quota_included,
                &stored.quota_cap,
                &stored.failure_mode,
                &stored.strict,
            ],
        )
        .await
        .map_err(name_taken)?;
    let updated = view(&row)?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: None,
            action: "plan.update",
            resource_type: "plan",
            resource_id: &plan_id.to_string(),
            details: json!({
                "before": {
                    "name": before.name,
                    "rate": before.rate,
                    "quota": before.quota,
                    "failure_mode": before.failure_mode,
                },
                "after": {
                    "name": updated.name,
                    "rate": updated.rate,
                    "quota": updated.quota,
                    "failure_mode": updated.failure_mode,
                },
            }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%plan_id, "Plan updated.");
    Ok(HttpResponse::Ok().json(updated))
}

fn plan_in_use() -> ApiError {
    ApiError::Conflict {
        code: "plan_in_use",
        field: None,
        message: "subscriptions refer to this plan; switch them to another plan first".into(),
    }
}

/// Deletes a plan no subscription (current, past or future) refers to.
#[utoipa::path(delete, operation_id = "deletePlan", path = "/api/v1/plans/{plan_id}", tag = "plans", security(("bearer" = [])),
    params(("plan_id" = Uuid, Path, description = "Plan id")),
    responses((status = 204, description = "Deleted"),
        (status = 409, description = "`plan_in_use`: subscriptions refer to it", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn delete(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    principal.require_platform_admin()?;
    let plan_id = path.into_inner();
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    // The row lock conflicts with the key-share lock a subscription insert takes on its plan,
    // so no subscription can appear between the check and the delete.
    let row = tx
        .query_opt(
            "SELECT name FROM plans WHERE id = $1 FOR UPDATE",
            &[&plan_id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    let name: String = row.get(0);
    let in_use = tx
        .query_opt(
            "SELECT 1 FROM subscriptions WHERE plan_id = $1 LIMIT 1",
            &[&plan_id],
        )
        .await?;
    if in_use.is_some() {
        return Err(plan_in_use());
    }
    tx.execute("DELETE FROM plans WHERE id = $1", &[&plan_id])
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
                plan_in_use()
            } else {
                e.into()
            }
        })?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: None,
            action: "plan.delete",
            resource_type: "plan",
            resource_id: &plan_id.to_string(),
            details: json!({ "name": name }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%plan_id, "Plan deleted.");
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use tollgate_core::PLAN_COLUMNS;

    use super::*;

    #[test]
    fn the_selected_columns_start_with_the_ones_the_shared_decoder_reads() {
        assert_eq!(COLUMNS, format!("{PLAN_COLUMNS}, created_at"));
    }
}
