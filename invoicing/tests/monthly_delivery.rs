//! `tollgate-invoicing monthly` with every delivery channel configured, run as two concurrent
//! processes and then once more: one Stripe customer and one Stripe invoice per tenant with
//! exactly its lines, one email, one stored PDF.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::process::Stdio;

use common::{BIN, FLAT, GROWTH, plan, subscribe, tenant, usage};
use support::{emails_to, pdf_text, test_bucket};
use tollgate_invoicing::delivery::DeliveryInvoice;
use tollgate_invoicing::delivery::document_keys;
use tollgate_test_support::stripe_stand_in::{STAND_IN_API_KEY, StripeStandIn};
use tollgate_test_support::{Stack, TestDb};
use uuid::Uuid;

async fn monthly(db: &TestDb, stand_in: &StripeStandIn, bucket: &str) -> std::process::Output {
    let stack = Stack::get();
    tokio::process::Command::new(BIN)
        .args(["monthly", "--period", "2026-11"])
        .env("TOLLGATE_DATABASE_URL", db.url())
        .env_remove("TOLLGATE_INVOICING_TEST_FAULT")
        .env("TOLLGATE_STRIPE_API_KEY", STAND_IN_API_KEY)
        .env("TOLLGATE_STRIPE_BASE_URL", stand_in.url())
        .env("TOLLGATE_SMTP_HOST", &stack.values["SMTP_HOST"])
        .env("TOLLGATE_SMTP_PORT", &stack.values["SMTP_PORT"])
        .env("TOLLGATE_SMTP_TLS", "none")
        .env(
            "TOLLGATE_SMTP_FROM",
            "Tollgate Billing <billing@tollgate.test>",
        )
        .env("TOLLGATE_S3_ENDPOINT", &stack.values["S3_ENDPOINT"])
        .env("TOLLGATE_S3_BUCKET", bucket)
        .env("TOLLGATE_S3_ACCESS_KEY_ID", "test")
        .env("TOLLGATE_S3_SECRET_ACCESS_KEY", "test-secret")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_and_repeated_monthly_runs_deliver_each_invoice_once() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (growth, flat) = (
        plan(&client, "growth", GROWTH).await,
        plan(&client, "flat", FLAT).await,
    );
    let mut tenants = Vec::new();
    for (slug, plan_id) in [("delivered-a", growth), ("delivered-b", flat)] {
        let id = tenant(&client, slug).await;
        subscribe(&client, id, plan_id, "2026-10-01T00:00:00Z", None).await;
        let email = format!("ap-{}@example.com", Uuid::now_v7().simple());
        client
            .execute(
                "UPDATE tenants SET billing_email = $2 WHERE id = $1",
                &[&id, &email],
            )
            .await
            .unwrap();
        tenants.push((id, email));
    }
    usage(
        &client,
        tenants[0].0,
        "2026-11-02T10:00:00Z",
        2,
        25_500,
        25_500,
    )
    .await;
    let stand_in = StripeStandIn::start().await;
    let (bucket, store) = test_bucket().await;

    let (a, b) = tokio::join!(
        monthly(&db, &stand_in, &bucket),
        monthly(&db, &stand_in, &bucket)
    );
    for out in [&a, &b] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let again = monthly(&db, &stand_in, &bucket).await;
    assert!(again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("Delivery finished.") && stderr.contains("\"steps_done\":0"),
        "the third run finds nothing to deliver:\n{stderr}"
    );

    assert_eq!(stand_in.customers().len(), 2);
    assert_eq!(stand_in.invoices().len(), 2);
    for (tenant_id, email) in &tenants {
        let invoice_id: Uuid = client
            .query_one("SELECT id FROM invoices WHERE tenant_id = $1", &[tenant_id])
            .await
            .unwrap()
            .get(0);
        let invoice = DeliveryInvoice::load(&client, invoice_id)
            .await
            .unwrap()
            .unwrap();
        // Stripe: exactly this invoice's lines, by amount, on its one Stripe invoice.
        let stripe: Vec<_> = stand_in
            .invoices()
            .into_iter()
            .filter(|i| i["metadata"]["tollgate_invoice_id"] == invoice_id.to_string().as_str())
            .collect();
        assert_eq!(stripe.len(), 1, "{tenant_id}");
        assert_eq!(stripe[0]["total"], invoice.total_minor);
        let mut items: Vec<i64> = stand_in
            .invoice_items()
            .iter()
            .filter(|i| i["invoice"] == stripe[0]["id"])
            .map(|i| i["amount"].as_i64().unwrap())
            .collect();
        let mut lines: Vec<i64> = invoice.lines.iter().map(|l| l.amount_minor).collect();
        items.sort_unstable();
        lines.sort_unstable();
        assert_eq!(items, lines);
        // One email, whose PDF is the stored one.
        let emails = emails_to(email);
        assert_eq!(emails.len(), 1, "{email}");
        let (pdf_key, _) = document_keys(&invoice);
        let stored = store.get(&pdf_key).await.unwrap().expect("stored PDF");
        assert_eq!(stored, emails[0].pdf);
        let text = pdf_text(&stored);
        assert!(text.contains(&invoice.number), "{text}");
    }
}
