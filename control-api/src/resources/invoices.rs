//! A tenant's invoices, read-only: the monthly invoicing job writes them. The document
//! download is rendered by [`tollgate_core::invoice_document`], the same function the job
//! uses for the copy it stores, so both are byte for byte the same.

use actix_web::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tollgate_core::invoice_document::{
    InvoiceDocument, InvoiceDocumentLine, period_label, render_invoice_html,
};
use tollgate_core::{Currency, Money};
use tollgate_invoicing::delivery::pdf::render_invoice_pdf;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{Page, PageQuery, after_created, created_position};
use crate::state::AppState;

/// Statuses an invoice can have, in lifecycle order (the delivery steps are step records).
const STATUSES: &[&str] = &[
    "draft",
    "finalized",
    "paid",
    "payment_failed",
    "uncollectible",
    "void",
];

/// Months back the upcoming invoice looks for late usage to correct, as `monthly` does by default.
const CORRECTION_LOOKBACK_MONTHS: u32 = 12;

/// An invoice without its lines.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvoiceView {
    /// Id.
    pub id: Uuid,
    /// The billed tenant.
    pub tenant_id: Uuid,
    /// The subscription billed, if any.
    pub subscription_id: Option<Uuid>,
    /// Start of the billed UTC calendar month (inclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub period_start: OffsetDateTime,
    /// End of the billed month (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub period_end: OffsetDateTime,
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// `draft`, `finalized`, `paid`, `payment_failed`, `uncollectible` or `void`.
    pub status: String,
    /// `TG-YYYY-NNNNNN`, gapless across the platform, once finalized.
    pub number: Option<String>,
    /// Sum of the lines, in minor units of `currency`.
    pub subtotal_minor: i64,
    /// Amount due, in minor units of `currency`.
    pub total_minor: i64,
    /// When the invoicing job created it.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was finalized.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finalized_at: Option<OffsetDateTime>,
}

/// One invoice line.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvoiceLineView {
    /// Id.
    pub id: Uuid,
    /// Order on the invoice, from 0.
    pub position: i32,
    /// `base_fee`, `usage`, `overage` or `correction`.
    pub kind: String,
    /// What is charged.
    pub description: String,
    /// Units.
    pub quantity: i64,
    /// Exact decimal price per unit in major units, as rated (display only).
    #[schema(example = "0.0004")]
    pub unit_price: String,
    /// Amount in minor units of the invoice's currency; authoritative.
    pub amount_minor: i64,
}

/// An invoice with its lines.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvoiceDetail {
    /// The invoice.
    #[serde(flatten)]
    pub invoice: InvoiceView,
    /// Its lines, by position.
    pub lines: Vec<InvoiceLineView>,
    /// Its steps (`draft`, `finalize`, and the delivery steps `stripe`, `email`, `document`):
    /// where the invoice is and, for a failed step, why. A failed step is retried by the next
    /// invoicing run.
    pub steps: Vec<InvoiceStepView>,
}

/// One step of an invoice.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvoiceStepView {
    /// Step name.
    pub step: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Latest attempt.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    /// When it succeeded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub succeeded_at: Option<OffsetDateTime>,
}

/// The list's query string, in a module of its own: utoipa's expansion of a params type
/// declared next to the handler trips the `unused_qualifications` lint.
mod list_query {
    use serde::Deserialize;
    use utoipa::IntoParams;

    /// Query parameters of the invoice list.
    #[derive(Debug, Default, Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct InvoiceListQuery {
        /// Items per page, 1 to 100 (default 50).
        #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
        pub limit: Option<String>,
        /// The `next_cursor` of the previous page.
        pub cursor: Option<String>,
        /// Only invoices with this status.
        pub status: Option<String>,
    }
}

pub use list_query::InvoiceListQuery;

const COLUMNS: &str = "id, tenant_id, subscription_id, period_start, period_end, currency, \
                       status, subtotal_minor, total_minor, created_at, finalized_at, number";

fn view(row: &Row) -> InvoiceView {
    InvoiceView {
        id: row.get(0),
        tenant_id: row.get(1),
        subscription_id: row.get(2),
        period_start: row.get(3),
        period_end: row.get(4),
        currency: row.get(5),
        status: row.get(6),
        subtotal_minor: row.get(7),
        total_minor: row.get(8),
        created_at: row.get(9),
        finalized_at: row.get(10),
        number: row.get(11),
    }
}

/// `numeric` as text without the scale's trailing zeros: `0.000400000000` → `0.0004`.
fn trim_decimal(text: &str) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text.to_owned()
    }
}

/// Lists a tenant's invoices, newest period first.
#[utoipa::path(get, operation_id = "listInvoices", path = "/api/v1/tenants/{tenant_id}/invoices", tag = "invoices",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"), InvoiceListQuery),
    responses((status = 200, body = Page<InvoiceView>), (status = "4XX", body = ErrorBody)))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<InvoiceListQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let query = query.into_inner();
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let limit = page.limit()?;
    let status = query
        .status
        .map(|s| {
            if STATUSES.contains(&s.as_str()) {
                Ok(s)
            } else {
                Err(ApiError::invalid(
                    "status",
                    format!("must be one of {}", STATUSES.join(", ")),
                ))
            }
        })
        .transpose()?;
    // The cursor is the last item's (period_start, id), in the shared format.
    let (after_at, after_id) = after_created::<Uuid>(&page)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM invoices WHERE tenant_id = $1 \
                   AND ($2::text IS NULL OR status = $2) \
                   AND ($3::timestamptz IS NULL OR (period_start, id) < ($3, $4)) \
                 ORDER BY period_start DESC, id DESC LIMIT $5"
            ),
            &[
                &tenant_id,
                &status,
                &after_at,
                &after_id,
                &page.fetch_limit()?,
            ],
        )
        .await?;
    let items = rows.iter().map(view).collect();
    Ok(
        HttpResponse::Ok().json(Page::from_fetched(items, limit, |i: &InvoiceView| {
            created_position(i.period_start, i.id)
        })),
    )
}

/// The invoice and its lines, read in one snapshot.
async fn load(
    state: &AppState,
    tenant_id: Uuid,
    invoice_id: Uuid,
) -> Result<(InvoiceDetail, String, String), ApiError> {
    let mut client = state.pool.get().await?;
    let tx = client.build_transaction().read_only(true).start().await?;
    let row = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS}, (SELECT name FROM tenants WHERE id = tenant_id), \
                        (SELECT slug FROM tenants WHERE id = tenant_id) \
                   FROM invoices WHERE id = $1 AND tenant_id = $2"
            ),
            &[&invoice_id, &tenant_id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    let lines = tx
        .query(
            "SELECT id, position, kind, description, quantity, unit_price::text, amount_minor \
               FROM invoice_lines WHERE invoice_id = $1 ORDER BY position",
            &[&invoice_id],
        )
        .await?;
    let steps = tx
        .query(
            "SELECT step, status, attempts, last_error, last_attempt_at, succeeded_at \
               FROM invoice_steps WHERE invoice_id = $1 ORDER BY first_attempt_at, step",
            &[&invoice_id],
        )
        .await?
        .iter()
        .map(|step| InvoiceStepView {
            step: step.get(0),
            status: step.get(1),
            attempts: step.get(2),
            last_error: step.get(3),
            last_attempt_at: step.get(4),
            succeeded_at: step.get(5),
        })
        .collect();
    tx.commit().await?;
    let lines = lines
        .iter()
        .map(|line| InvoiceLineView {
            id: line.get(0),
            position: line.get(1),
            kind: line.get(2),
            description: line.get(3),
            quantity: line.get(4),
            unit_price: trim_decimal(line.get(5)),
            amount_minor: line.get(6),
        })
        .collect();
    Ok((
        InvoiceDetail {
            invoice: view(&row),
            lines,
            steps,
        },
        row.get(12),
        row.get(13),
    ))
}

/// One invoice with its lines, ordered by position.
#[utoipa::path(get, operation_id = "getInvoice", path = "/api/v1/tenants/{tenant_id}/invoices/{invoice_id}", tag = "invoices",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"),
        ("invoice_id" = Uuid, Path, description = "Invoice id")),
    responses((status = 200, body = InvoiceDetail), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, invoice_id) = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let (detail, _, _) = load(&state, tenant_id, invoice_id).await?;
    Ok(HttpResponse::Ok().json(detail))
}

/// The document's query string (its own module, as for the list).
mod document_query {
    use serde::Deserialize;
    use utoipa::IntoParams;

    /// Query parameters of the document download.
    #[derive(Debug, Default, Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct DocumentQuery {
        /// `html` (default) or `pdf`.
        pub format: Option<String>,
    }
}

pub use document_query::DocumentQuery;

/// The invoice as a self-contained document for download: HTML, or the PDF (the copy the
/// delivery step stored and emailed, or the same rendering when it has not run yet).
#[utoipa::path(get, operation_id = "getInvoiceDocument", path = "/api/v1/tenants/{tenant_id}/invoices/{invoice_id}/document",
    tag = "invoices", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"),
        ("invoice_id" = Uuid, Path, description = "Invoice id"), DocumentQuery),
    responses((status = 200, description = "The document, as an attachment",
            content((String = "text/html; charset=utf-8"), (String = "application/pdf"))),
        (status = 409, description = "`invoice_not_finalized`: a draft has no document", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn document(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<DocumentQuery>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, invoice_id) = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let pdf = match query.format.as_deref() {
        None | Some("html") => false,
        Some("pdf") => true,
        Some(_) => return Err(ApiError::invalid("format", "must be html or pdf")),
    };
    let (detail, tenant_name, tenant_slug) = load(&state, tenant_id, invoice_id).await?;
    let invoice = detail.invoice;
    if invoice.status == "draft" {
        return Err(ApiError::Conflict {
            code: "invoice_not_finalized",
            field: None,
            message: "a draft invoice has no document yet".into(),
        });
    }
    let currency = Currency::from_code(&invoice.currency)
        .map_err(|e| ApiError::Internal(format!("invoice {invoice_id}: {e}")))?;
    let money = |minor| Money::from_minor(minor, currency);
    let document = InvoiceDocument {
        invoice_id,
        number: invoice.number.clone(),
        tenant_name,
        tenant_slug,
        period_start: invoice.period_start,
        period_end: invoice.period_end,
        status: invoice.status,
        finalized_at: invoice.finalized_at,
        subtotal: money(invoice.subtotal_minor),
        total: money(invoice.total_minor),
        lines: detail
            .lines
            .into_iter()
            .map(|line| InvoiceDocumentLine {
                kind: line.kind,
                description: line.description,
                quantity: line.quantity,
                unit_price: line.unit_price,
                amount: money(line.amount_minor),
            })
            .collect(),
    };
    // The random tail of the UUIDv7: its head is a timestamp that a month's batch shares.
    let simple = invoice_id.simple().to_string();
    let name = format!(
        "{}-{}",
        period_label(invoice.period_start),
        &simple[simple.len() - 8..]
    );
    let number = invoice.number.clone().unwrap_or_else(|| name.clone());
    let (content_type, extension, body) = if pdf {
        let bytes = match stored_pdf(&state, invoice_id).await? {
            Some(bytes) => bytes,
            None => render_invoice_pdf(&document, &number),
        };
        ("application/pdf", "pdf", bytes)
    } else {
        (
            "text/html; charset=utf-8",
            "html",
            render_invoice_html(&document).into_bytes(),
        )
    };
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, content_type))
        .insert_header((
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"invoice-{name}.{extension}\""),
        ))
        .body(body))
}

/// The PDF the document step stored, when there is a store and the step has run.
async fn stored_pdf(state: &AppState, invoice_id: Uuid) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(store) = &state.documents else {
        return Ok(None);
    };
    let client = state.pool.get().await?;
    let key: Option<String> = client
        .query_opt(
            "SELECT document_key FROM invoices WHERE id = $1",
            &[&invoice_id],
        )
        .await?
        .and_then(|row| row.get(0));
    let Some(key) = key else {
        return Ok(None);
    };
    store.get(&key).await.map_err(|e| {
        tracing::warn!(%invoice_id, error = %e, "Stored invoice PDF unavailable.");
        ApiError::Unavailable
    })
}

/// One line of the upcoming invoice.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UpcomingLine {
    /// `base_fee`, `usage` or `correction`.
    pub kind: String,
    /// What is charged.
    pub description: String,
    /// Units.
    pub quantity: i64,
    /// Exact decimal price per unit in major units (display only).
    #[schema(example = "0.001")]
    pub unit_price: String,
    /// Amount in minor units; authoritative.
    pub amount_minor: i64,
    /// For a correction: the start of the earlier period whose late usage it bills.
    #[serde(with = "time::serde::rfc3339::option")]
    pub corrects_period_start: Option<OffsetDateTime>,
}

/// The invoice the current period would produce if it closed now: computed by the same rating
/// code as the monthly job, from the usage so far, and stored nowhere.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UpcomingInvoice {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Start of the current UTC month.
    #[serde(with = "time::serde::rfc3339")]
    pub period_start: OffsetDateTime,
    /// Start of the next month (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub period_end: OffsetDateTime,
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// Lines, in print order.
    pub lines: Vec<UpcomingLine>,
    /// Sum of the lines, in minor units.
    pub total_minor: i64,
    /// When this projection was computed.
    #[serde(with = "time::serde::rfc3339")]
    pub computed_at: OffsetDateTime,
}

/// The current period's invoice as it stands now (usage so far; subscriptions to the period's
/// end as they are), rated exactly as `tollgate-invoicing monthly` will rate it.
#[utoipa::path(get, operation_id = "getUpcomingInvoice", path = "/api/v1/tenants/{tenant_id}/invoices/upcoming", tag = "invoices",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id")),
    responses((status = 200, body = UpcomingInvoice),
        (status = 404, description = "No such tenant, or no subscription this period", body = ErrorBody),
        (status = 409, description = "`cannot_rate`: the period's plans cannot be rated together", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn upcoming(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    use tollgate_core::rating::BillingPeriod;
    use tollgate_core::rating_inputs::{RatingInputError, rate_tenant_period};

    let tenant_id = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let now = OffsetDateTime::now_utc();
    let period = BillingPeriod::containing(now).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut since = period;
    for _ in 0..CORRECTION_LOOKBACK_MONTHS {
        since = since
            .previous()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    let mut client = state.pool.get().await?;
    // One snapshot: slices, usage and earlier invoices agree.
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    tx.query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant_id])
        .await?
        .ok_or(ApiError::NotFound)?;
    let rated = match rate_tenant_period(&*tx, tenant_id, &period, since.start()).await {
        Ok(Some(rated)) => rated,
        Ok(None) => return Err(ApiError::NotFound),
        Err(RatingInputError::Database(e)) => return Err(e.into()),
        Err(e) => {
            return Err(ApiError::Conflict {
                code: "cannot_rate",
                field: None,
                message: e.to_string(),
            });
        }
    };
    tx.commit().await?;
    let lines = rated
        .lines
        .iter()
        .map(|line| UpcomingLine {
            kind: line.kind.as_str().to_owned(),
            description: line.description.clone(),
            quantity: i64::try_from(line.quantity).unwrap_or(i64::MAX),
            unit_price: line.unit_price.round_dp(12).normalize().to_string(),
            amount_minor: line.amount.amount_minor(),
            corrects_period_start: line.corrects.map(|c| c.1),
        })
        .collect();
    Ok(HttpResponse::Ok().json(UpcomingInvoice {
        tenant_id,
        period_start: period.start(),
        period_end: period.end(),
        currency: rated.currency.code().to_owned(),
        lines,
        total_minor: rated.total.amount_minor(),
        computed_at: now,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_prices_lose_only_trailing_zeros() {
        assert_eq!(trim_decimal("0.000400000000"), "0.0004");
        assert_eq!(trim_decimal("49.000000000000"), "49");
        assert_eq!(trim_decimal("100"), "100");
        assert_eq!(trim_decimal("-1.500000000000"), "-1.5");
    }
}
