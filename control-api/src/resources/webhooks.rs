//! `POST /api/v1/webhooks/stripe`: payment status from Stripe's signed webhook events.
//!
//! Stripe signs `"<timestamp>.<raw body>"` with HMAC-SHA-256 under the endpoint's signing
//! secret and sends `Stripe-Signature: t=<timestamp>,v1=<hex>[,v1=<hex>…]` (several `v1`
//! while a secret is being rolled). The body is verified before it is parsed, compared in
//! constant time (`ring::hmac::verify`), and refused outside a tolerance window so a captured
//! request cannot be replayed later. Stripe delivers at least once and in any order, so each
//! event id is handled once (a row in `stripe_webhook_events`, in the same transaction as the
//! change), and a status the invoice state machine does not allow from where the invoice is
//! (a late `invoice.payment_failed` for a paid invoice) changes nothing.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use tollgate_invoicing::store::{self, InvoiceStatus};

use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::state::AppState;

/// Environment variable holding the webhook signing secret (`whsec_…`).
pub const ENV_STRIPE_WEBHOOK_SECRET: &str = "TOLLGATE_STRIPE_WEBHOOK_SECRET";

/// How far a signature's timestamp may be from now: Stripe's libraries default to 300 s.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The signing secret. `Debug` never shows it.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    /// Accepts Stripe's `whsec_…` secrets (used whole as the HMAC key, as Stripe does).
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let value = value.trim();
        if value.starts_with("whsec_")
            && value.len() >= 16
            && value.bytes().all(|b| b.is_ascii_graphic())
        {
            Ok(Self(value.to_owned()))
        } else {
            Err(ApiError::InvalidSetting {
                setting: ENV_STRIPE_WEBHOOK_SECRET,
                reason: "must be a Stripe webhook signing secret (whsec_…, at least 16 characters)"
                    .into(),
            })
        }
    }
}

/// Why a signature was refused. Each is a 400 with code `invalid_signature`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header, or one without `t=` and `v1=`.
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    /// The timestamp is outside the tolerance window.
    #[error("the signature's timestamp is outside the tolerance window")]
    Expired,
    /// No `v1` signature matches.
    #[error("no signature matches the payload")]
    Mismatch,
}

/// Verifies `header` for `payload` at `now` (Unix seconds).
pub fn verify_signature(
    secret: &WebhookSecret,
    header: &str,
    payload: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => {
                if let Some(bytes) = tollgate_core::hex::decode(value) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let (Some(timestamp), false) = (timestamp, signatures.is_empty()) else {
        return Err(SignatureError::Malformed);
    };
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return Err(SignatureError::Expired);
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.0.as_bytes());
    let mut signed = timestamp.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(payload);
    if signatures
        .iter()
        .any(|signature| ring::hmac::verify(&key, &signed, signature).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The parts of a Stripe event we read.
#[derive(Debug, Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: Value,
}

/// What happened to an event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookReceipt {
    /// Always true: Stripe stops retrying on any 2xx.
    pub received: bool,
    /// `applied` (the invoice's status changed), `unchanged` (it had that status already),
    /// `duplicate` (event id seen before), `stale` (the state machine does not allow the move
    /// from where the invoice is, e.g. `payment_failed` after `paid`), `ignored` (a type or
    /// invoice we do not track).
    pub outcome: String,
}

/// The invoice status an event type moves to, for the types we handle.
pub fn payment_status_of(event_type: &str) -> Option<InvoiceStatus> {
    match event_type {
        "invoice.paid" => Some(InvoiceStatus::Paid),
        "invoice.payment_failed" => Some(InvoiceStatus::PaymentFailed),
        "invoice.voided" => Some(InvoiceStatus::Void),
        "invoice.marked_uncollectible" => Some(InvoiceStatus::Uncollectible),
        _ => None,
    }
}

fn bad_signature(error: SignatureError) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_signature",
        field: None,
        message: error.to_string(),
    }
}

/// Receives a Stripe webhook event (called by Stripe, authenticated by its signature).
#[utoipa::path(post, path = "/api/v1/webhooks/stripe", tag = "webhooks",
    params(("Stripe-Signature" = String, Header, description = "t=<unix time>,v1=<hex HMAC-SHA-256>")),
    request_body(content = Object, content_type = "application/json",
        description = "A Stripe event (`invoice.paid`, `invoice.payment_failed`, `invoice.voided`, `invoice.marked_uncollectible`; other types are acknowledged and ignored)"),
    responses((status = 200, body = WebhookReceipt),
        (status = 400, description = "`invalid_signature` or `invalid_event`; nothing changed", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, description = "`webhooks_not_configured`, or the database is unavailable", body = ErrorBody)))]
pub async fn stripe(
    request: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let Some(secret) = &state.stripe_webhook_secret else {
        // Not an outage but a deployment without Stripe: say so, and let Stripe retry.
        return Ok(HttpResponse::ServiceUnavailable().json(ErrorBody {
            error: ErrorDetail {
                code: "webhooks_not_configured".into(),
                message: format!("{ENV_STRIPE_WEBHOOK_SECRET} is not set"),
                field: None,
                retry_after_secs: None,
            },
        }));
    };
    let header = request
        .headers()
        .get("Stripe-Signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(bad_signature(SignatureError::Malformed))?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    verify_signature(secret, header, &body, now, state.stripe_webhook_tolerance)
        .map_err(bad_signature)?;
    let event: StripeEvent = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        code: "invalid_event",
        field: None,
        message: format!("not a Stripe event: {e}"),
    })?;
    let outcome = apply(&state, &event).await?;
    tracing::info!(event_id = %event.id, event_type = %event.kind, event_created = event.created, outcome, "Stripe event handled.");
    Ok(HttpResponse::Ok().json(WebhookReceipt {
        received: true,
        outcome: outcome.to_owned(),
    }))
}

async fn apply(state: &AppState, event: &StripeEvent) -> Result<&'static str, ApiError> {
    let status = payment_status_of(&event.kind);
    let object = &event.data.object;
    let stripe_invoice_id = object.get("id").and_then(Value::as_str);
    let our_id = object
        .get("metadata")
        .and_then(|m| m.get("tollgate_invoice_id"))
        .and_then(Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok());
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let invoice_id: Option<Uuid> = match (status, stripe_invoice_id) {
        (Some(_), Some(stripe_id)) => tx
            .query_opt(
                "SELECT id FROM invoices WHERE stripe_invoice_id = $1 \
                 UNION ALL SELECT id FROM invoices WHERE id = $2 AND stripe_invoice_id IS NULL \
                 LIMIT 1",
                &[&stripe_id, &our_id],
            )
            .await?
            .map(|row| row.get(0)),
        _ => None,
    };
    let inserted = tx
        .execute(
            "INSERT INTO stripe_webhook_events (event_id, event_type, invoice_id) \
             VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING",
            &[&event.id, &event.kind, &invoice_id],
        )
        .await?;
    if inserted == 0 {
        tx.commit().await?;
        return Ok("duplicate");
    }
    let (Some(status), Some(invoice_id)) = (status, invoice_id) else {
        tx.commit().await?;
        return Ok("ignored");
    };
    let outcome = record_payment_status(&tx, invoice_id, status).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Moves the invoice to `to` if the state machine allows it from where the invoice is: a paid
/// invoice stays paid when a late `invoice.payment_failed` arrives. Returns the outcome.
async fn record_payment_status(
    tx: &tokio_postgres::Transaction<'_>,
    invoice_id: Uuid,
    to: InvoiceStatus,
) -> Result<&'static str, ApiError> {
    let current: String = tx
        .query_one(
            "SELECT status FROM invoices WHERE id = $1 FOR UPDATE",
            &[&invoice_id],
        )
        .await?
        .get(0);
    let current = InvoiceStatus::parse(&current)
        .ok_or_else(|| ApiError::Internal(format!("invoice {invoice_id}: status {current:?}")))?;
    if current == to {
        return Ok("unchanged");
    }
    if !current.may_become(to) {
        return Ok("stale");
    }
    store::transition(tx, invoice_id, to)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok("applied")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> WebhookSecret {
        WebhookSecret::parse("whsec_test_secret_value").unwrap()
    }

    fn sign(timestamp: i64, payload: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"whsec_test_secret_value");
        let tag = ring::hmac::sign(&key, format!("{timestamp}.{payload}").as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("t={timestamp},v1={hex}")
    }

    #[test]
    fn a_valid_signature_within_the_window_verifies() {
        let header = sign(1_000, "{\"id\":\"evt_1\"}");
        assert_eq!(
            verify_signature(
                &secret(),
                &header,
                b"{\"id\":\"evt_1\"}",
                1_100,
                DEFAULT_TOLERANCE
            ),
            Ok(())
        );
        // One of several v1 signatures matching is enough (secret rotation).
        let rolled = format!("t=1000,v1={},{}", "00".repeat(32), &header[7..]);
        assert_eq!(
            verify_signature(
                &secret(),
                &rolled,
                b"{\"id\":\"evt_1\"}",
                1_000,
                DEFAULT_TOLERANCE
            ),
            Ok(())
        );
    }

    #[test]
    fn tampered_old_or_malformed_signatures_are_refused() {
        let header = sign(1_000, "{}");
        let verify = |header: &str, payload: &[u8], now| {
            verify_signature(&secret(), header, payload, now, DEFAULT_TOLERANCE)
        };
        assert_eq!(
            verify(&header, b"{ }", 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(&header, b"{}", 1_301), Err(SignatureError::Expired));
        assert_eq!(verify(&header, b"{}", 699), Err(SignatureError::Expired));
        assert_eq!(
            verify("t=1000", b"{}", 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify("v1=abcd", b"{}", 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(verify("", b"{}", 1_000), Err(SignatureError::Malformed));
        let other = WebhookSecret::parse("whsec_another_secret").unwrap();
        assert_eq!(
            verify_signature(&other, &header, b"{}", 1_000, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn secrets_are_checked_and_hidden() {
        assert!(WebhookSecret::parse("sk_live_nope").is_err());
        assert_eq!(format!("{:?}", secret()), "WebhookSecret(<redacted>)");
        assert_eq!(payment_status_of("invoice.paid"), Some(InvoiceStatus::Paid));
        assert_eq!(payment_status_of("customer.created"), None);
    }
}
