//! The Stripe step: the tenant's customer (created once), a draft invoice with one item per
//! line, finalized, and sent when the tenant pays by invoice.
//!
//! Every POST carries an `Idempotency-Key` derived from our ids (`tollgate-customer-<tenant>`,
//! `tollgate-invoice-<invoice>`, `tollgate-item-<line>`, …) with parameters built only from
//! stored data, so a retry, a rerun or a second concurrent job sends byte-identical requests
//! and Stripe replays its first answer instead of acting twice. Idempotency keys expire after
//! 24 hours, so a rerun also looks before it creates: the stored customer id, then a search by
//! our metadata; the draft invoice's existing items; the invoice's current status.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::error::DeliveryError;
use super::form::{StripeForm, encode_query_value};
use super::invoice::{BillingTenant, CollectionMethod, DeliveryInvoice};
use super::retry::RetryPolicy;

/// Environment variable holding the Stripe secret key.
pub const ENV_STRIPE_API_KEY: &str = "TOLLGATE_STRIPE_API_KEY";
/// Environment variable holding Stripe's base URL.
pub const ENV_STRIPE_BASE_URL: &str = "TOLLGATE_STRIPE_BASE_URL";
/// Stripe's API.
pub const DEFAULT_STRIPE_BASE_URL: &str = "https://api.stripe.com";

/// Metadata key carrying our tenant id on customers and invoices.
pub const META_TENANT: &str = "tollgate_tenant_id";
/// Metadata key carrying our invoice id on invoices and items.
pub const META_INVOICE: &str = "tollgate_invoice_id";
/// Metadata key carrying our line id on invoice items.
pub const META_LINE: &str = "tollgate_line_id";

/// The Stripe secret key. `Debug` never shows it, and it is only ever sent as a header.
#[derive(Clone)]
pub struct StripeApiKey(String);

impl std::fmt::Debug for StripeApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeApiKey(<redacted>)")
    }
}

impl StripeApiKey {
    /// Accepts a secret or restricted key (`sk_…`, `rk_…`).
    pub fn parse(value: &str) -> Result<Self, DeliveryError> {
        let value = value.trim();
        let plausible = (value.starts_with("sk_") || value.starts_with("rk_"))
            && value.len() >= 10
            && value.bytes().all(|b| b.is_ascii_graphic());
        if plausible {
            Ok(Self(value.to_owned()))
        } else {
            Err(DeliveryError::InvalidSetting {
                setting: ENV_STRIPE_API_KEY,
                reason: "must be a Stripe secret or restricted key (sk_… or rk_…)".into(),
            })
        }
    }
}

/// How to reach Stripe.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    /// `https://api.stripe.com`, or a stand-in's URL.
    pub base_url: String,
    /// The secret key.
    pub api_key: StripeApiKey,
    /// Deadline of one attempt (connect, send, receive).
    pub timeout: Duration,
    /// Retries on 429, 5xx, connection errors and timeouts.
    pub retry: RetryPolicy,
    /// Payment terms of `send_invoice` invoices.
    pub days_until_due: u32,
}

impl StripeSettings {
    /// Settings with the defaults: 10 s per attempt, 5 attempts, 30 days to pay.
    pub fn new(base_url: &str, api_key: StripeApiKey) -> Result<Self, DeliveryError> {
        let base_url = base_url.trim_end_matches('/');
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(DeliveryError::InvalidSetting {
                setting: ENV_STRIPE_BASE_URL,
                reason: "must be an http(s) URL".into(),
            });
        }
        Ok(Self {
            base_url: base_url.to_owned(),
            api_key,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            days_until_due: 30,
        })
    }
}

/// What the Stripe step leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedInvoice {
    /// The Stripe customer.
    pub customer_id: String,
    /// The Stripe invoice.
    pub stripe_invoice_id: String,
    /// Its status after the step (`open`, `paid`, …).
    pub stripe_status: String,
}

/// A Stripe API client for exactly the calls invoicing makes.
#[derive(Debug, Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    settings: StripeSettings,
}

enum Method {
    Get,
    Post,
}

impl StripeClient {
    /// A client; the HTTP connection pool is shared by every call.
    pub fn new(settings: StripeSettings) -> Result<Self, DeliveryError> {
        let http =
            super::http::client(settings.timeout).map_err(|e| DeliveryError::InvalidSetting {
                setting: ENV_STRIPE_BASE_URL,
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self { http, settings })
    }

    /// The tenant's Stripe customer: `known` if we stored one, else one found by our metadata,
    /// else a new one. Creation is keyed on the tenant id, so a crash between creating and
    /// storing the id gets the same customer back on the rerun.
    pub async fn ensure_customer(
        &self,
        tenant: &BillingTenant,
        known: Option<String>,
    ) -> Result<String, DeliveryError> {
        if let Some(id) = known {
            return Ok(id);
        }
        let query = format!("metadata['{META_TENANT}']:'{}'", tenant.id);
        let found = self
            .call(
                "search customers",
                Method::Get,
                &format!(
                    "/v1/customers/search?query={}&limit=1",
                    encode_query_value(&query)
                ),
                None,
                None,
            )
            .await?;
        if let Some(id) = first_id(&found) {
            return Ok(id);
        }
        let mut form = StripeForm::new()
            .field("name", tenant.name.clone())
            .nested("metadata", META_TENANT, tenant.id.to_string())
            .nested("metadata", "tollgate_tenant_slug", tenant.slug.clone());
        if let Some(email) = &tenant.billing_email {
            form = form.field("email", email.clone());
        }
        let created = self
            .call(
                "create customer",
                Method::Post,
                "/v1/customers",
                Some(&format!("tollgate-customer-{}", tenant.id)),
                Some(&form),
            )
            .await?;
        id_of(&created, "create customer")
    }

    /// Pushes the invoice to `customer_id`: draft (or the one already there), the items not yet
    /// on it, finalize, send. `known_invoice` is the Stripe invoice id stored by an earlier run.
    pub async fn push_invoice(
        &self,
        customer_id: &str,
        invoice: &DeliveryInvoice,
        known_invoice: Option<String>,
    ) -> Result<PushedInvoice, DeliveryError> {
        let stripe_invoice_id = match known_invoice {
            Some(id) => id,
            None => self.find_or_create_draft(customer_id, invoice).await?,
        };
        let mut current = self
            .call(
                "retrieve invoice",
                Method::Get,
                &format!("/v1/invoices/{stripe_invoice_id}"),
                None,
                None,
            )
            .await?;
        if status_of(&current) == "draft" {
            self.add_missing_items(customer_id, &stripe_invoice_id, invoice)
                .await?;
            current = self
                .call(
                    "finalize invoice",
                    Method::Post,
                    &format!("/v1/invoices/{stripe_invoice_id}/finalize"),
                    Some(&format!("tollgate-finalize-{}", invoice.id)),
                    Some(&StripeForm::new().field("auto_advance", "false")),
                )
                .await?;
        }
        // Stripe keeps no "sent" flag; the send is keyed on the invoice id, so a rerun within
        // the key's 24 hours replays it, and a later one at worst emails the customer again.
        if invoice.tenant.collection_method == CollectionMethod::SendInvoice
            && status_of(&current) == "open"
        {
            current = self
                .call(
                    "send invoice",
                    Method::Post,
                    &format!("/v1/invoices/{stripe_invoice_id}/send"),
                    Some(&format!("tollgate-send-{}", invoice.id)),
                    Some(&StripeForm::new()),
                )
                .await?;
        }
        Ok(PushedInvoice {
            customer_id: customer_id.to_owned(),
            stripe_invoice_id,
            stripe_status: status_of(&current).to_owned(),
        })
    }

    /// The draft for our invoice: found by metadata (a run whose idempotency key has expired),
    /// or created under a key derived from the invoice id.
    async fn find_or_create_draft(
        &self,
        customer_id: &str,
        invoice: &DeliveryInvoice,
    ) -> Result<String, DeliveryError> {
        let query = format!("metadata['{META_INVOICE}']:'{}'", invoice.id);
        let found = self
            .call(
                "search invoices",
                Method::Get,
                &format!(
                    "/v1/invoices/search?query={}&limit=1",
                    encode_query_value(&query)
                ),
                None,
                None,
            )
            .await?;
        if let Some(id) = first_id(&found) {
            return Ok(id);
        }
        let created = self
            .call(
                "create invoice",
                Method::Post,
                "/v1/invoices",
                Some(&format!("tollgate-invoice-{}", invoice.id)),
                Some(&self.draft_form(customer_id, invoice)),
            )
            .await?;
        id_of(&created, "create invoice")
    }

    /// Parameters of the draft: only stored data, so every attempt sends the same.
    pub fn draft_form(&self, customer_id: &str, invoice: &DeliveryInvoice) -> StripeForm {
        let mut form = StripeForm::new()
            .field("customer", customer_id)
            .field("auto_advance", "false")
            .field("pending_invoice_items_behavior", "exclude")
            .field("currency", invoice.currency.code().to_ascii_lowercase())
            .field(
                "collection_method",
                invoice.tenant.collection_method.as_str(),
            )
            .field(
                "description",
                format!("Tollgate invoice {}", invoice.number),
            );
        if invoice.tenant.collection_method == CollectionMethod::SendInvoice {
            form = form.field("days_until_due", self.settings.days_until_due.to_string());
        }
        form.nested("metadata", META_TENANT, invoice.tenant.id.to_string())
            .nested("metadata", META_INVOICE, invoice.id.to_string())
    }

    async fn add_missing_items(
        &self,
        customer_id: &str,
        stripe_invoice_id: &str,
        invoice: &DeliveryInvoice,
    ) -> Result<(), DeliveryError> {
        let listed = self
            .call(
                "list invoice items",
                Method::Get,
                &format!("/v1/invoiceitems?invoice={stripe_invoice_id}&limit=100"),
                None,
                None,
            )
            .await?;
        let present: HashSet<String> = listed
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|item| item.get("metadata")?.get(META_LINE)?.as_str())
            .map(str::to_owned)
            .collect();
        for line in &invoice.lines {
            if present.contains(&line.id.to_string()) {
                continue;
            }
            let form = StripeForm::new()
                .field("customer", customer_id)
                .field("invoice", stripe_invoice_id)
                .field("amount", line.amount_minor.to_string())
                .field("currency", invoice.currency.code().to_ascii_lowercase())
                .field("description", line.description.clone())
                .nested("metadata", META_INVOICE, invoice.id.to_string())
                .nested("metadata", META_LINE, line.id.to_string());
            self.call(
                "create invoice item",
                Method::Post,
                "/v1/invoiceitems",
                Some(&format!("tollgate-item-{}", line.id)),
                Some(&form),
            )
            .await?;
        }
        Ok(())
    }

    /// One call with retries: the same key and body on every attempt.
    async fn call(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        form: Option<&StripeForm>,
    ) -> Result<Value, DeliveryError> {
        let url = format!("{}{path}", self.settings.base_url);
        let body = form.map(StripeForm::encode).unwrap_or_default();
        let policy = self.settings.retry;
        let attempts = policy.max_attempts.max(1);
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            let mut request = match method {
                Method::Get => self.http.get(&url),
                Method::Post => self
                    .http
                    .post(&url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body.clone()),
            };
            request = request.bearer_auth(&self.settings.api_key.0);
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            let delay = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get("Retry-After")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let should_retry = response
                        .headers()
                        .get("Stripe-Should-Retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v == "true");
                    let text = match response.text().await {
                        Ok(text) => text,
                        Err(e) => {
                            last_error = format!("reading the response: {e}");
                            tracing::warn!(call, attempt, error = %last_error, "Stripe call failed; retrying.");
                            sleep_before_retry(attempt, attempts, policy.delay_after(attempt))
                                .await;
                            continue;
                        }
                    };
                    if status.is_success() {
                        return serde_json::from_str(&text).map_err(|e| {
                            DeliveryError::StripeResponse {
                                call,
                                message: format!("not JSON: {e}"),
                            }
                        });
                    }
                    let retryable = should_retry.unwrap_or(
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
                    );
                    let message = error_message(&text);
                    if !retryable {
                        return Err(DeliveryError::StripeRejected {
                            call,
                            status: status.as_u16(),
                            message,
                        });
                    }
                    last_error = format!("HTTP {}: {message}", status.as_u16());
                    retry_after
                        .map(|d| policy.server_delay(d))
                        .unwrap_or_else(|| policy.delay_after(attempt))
                }
                // Timeouts, refused or dropped connections: the request may or may not have
                // taken effect, which the idempotency key makes safe to retry.
                Err(e) => {
                    last_error = describe_transport_error(&e);
                    policy.delay_after(attempt)
                }
            };
            tracing::warn!(call, attempt, error = %last_error, "Stripe call failed; retrying.");
            sleep_before_retry(attempt, attempts, delay).await;
        }
        Err(DeliveryError::StripeUnavailable {
            call,
            attempts,
            last_error,
        })
    }
}

async fn sleep_before_retry(attempt: u32, attempts: u32, delay: Duration) {
    if attempt < attempts {
        tokio::time::sleep(delay).await;
    }
}

fn describe_transport_error(error: &reqwest::Error) -> String {
    // reqwest's message includes the URL, which carries no secret (the key is a header).
    if error.is_timeout() {
        format!("timed out: {error}")
    } else if error.is_connect() {
        format!("connection failed: {error}")
    } else {
        format!("transport error: {error}")
    }
}

/// `error.type: error.message` from a Stripe error body, or the start of the body.
fn error_message(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(value) => {
            let error = &value["error"];
            let kind = error["type"].as_str().unwrap_or("error");
            let message = error["message"].as_str().unwrap_or("no message");
            format!("{kind}: {message}")
        }
        Err(_) => body.chars().take(200).collect(),
    }
}

fn first_id(list: &Value) -> Option<String> {
    list.get("data")?
        .as_array()?
        .first()?
        .get("id")?
        .as_str()
        .map(str::to_owned)
}

fn id_of(object: &Value, call: &'static str) -> Result<String, DeliveryError> {
    object
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(DeliveryError::StripeResponse {
            call,
            message: "no id".into(),
        })
}

fn status_of(object: &Value) -> &str {
    object.get("status").and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_checked_and_never_shown() {
        let key = StripeApiKey::parse("sk_test_abcdefghij").unwrap();
        assert_eq!(format!("{key:?}"), "StripeApiKey(<redacted>)");
        let error = StripeApiKey::parse("pk_live_abcdefghij")
            .unwrap_err()
            .to_string();
        assert!(error.contains(ENV_STRIPE_API_KEY), "{error}");
        assert!(!error.contains("pk_live"), "{error}");
    }

    #[test]
    fn stripe_error_bodies_become_messages() {
        assert_eq!(
            error_message(
                r#"{"error":{"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters"}}"#
            ),
            "idempotency_error: Keys for idempotent requests can only be used with the same parameters"
        );
        assert_eq!(error_message("<html>"), "<html>");
    }
}
