//! Billing through the control API: a tenant's billing email and collection method, the
//! invoice PDF (the stored copy from the object store, or the same rendering), and the
//! billing gauges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix_web::test::TestRequest;
use serde_json::json;
use support::Harness;
use tollgate_invoicing::delivery::documents::S3Credentials;
use tollgate_invoicing::delivery::{Deliverer, DocumentStore, S3Settings};
use tollgate_test_support::Stack;

fn authed(req: TestRequest, token: &str) -> TestRequest {
    req.insert_header(("Authorization", format!("Bearer {token}")))
}

#[actix_web::test]
async fn the_billing_email_is_set_by_tenant_admins_and_the_collection_method_by_platform_admins() {
    let h = Harness::new().await;
    let app = app!(h);
    let uri = format!("/api/v1/tenants/{}", h.own.id);
    let admin = h.token(&h.own.admin);
    let (status, body) = call!(
        app,
        authed(TestRequest::patch().uri(&uri), &admin)
            .set_json(json!({ "billing_email": "Billing@Example.com" }))
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["billing_email"], "billing@example.com");
    assert_eq!(body["collection_method"], "charge_automatically");

    let (status, _) = call!(
        app,
        authed(TestRequest::patch().uri(&uri), &admin)
            .set_json(json!({ "collection_method": "send_invoice" }))
    );
    assert_eq!(status, 403);
    let (status, body) = call!(
        app,
        authed(TestRequest::patch().uri(&uri), &admin)
            .set_json(json!({ "billing_email": "not an address" }))
    );
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "billing_email");
    let (status, body) = call!(
        app,
        authed(TestRequest::patch().uri(&uri), &h.token(&h.platform))
            .set_json(json!({ "collection_method": "send_invoice" }))
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["collection_method"], "send_invoice");
    assert_eq!(
        body["billing_email"], "billing@example.com",
        "left as it was"
    );

    // null clears the address; the tenant's read shows it.
    let (status, body) = call!(
        app,
        authed(TestRequest::patch().uri(&uri), &admin).set_json(json!({ "billing_email": null }))
    );
    assert_eq!((status, body["billing_email"].clone()), (200, json!(null)));
    let (status, body) = call!(app, authed(TestRequest::get().uri(&uri), &admin));
    assert_eq!(status, 200);
    assert_eq!(body["billing_email"], json!(null));
    assert_eq!(body["collection_method"], "send_invoice");

    // A new tenant can be created with its billing details.
    let (status, body) = call!(
        app,
        authed(
            TestRequest::post().uri("/api/v1/tenants"),
            &h.token(&h.platform)
        )
        .set_json(json!({
            "slug": format!("b-{}", uuid::Uuid::now_v7().simple()),
            "name": "Billed",
            "billing_email": "ap@billed.example",
            "collection_method": "send_invoice",
        }))
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["billing_email"], "ap@billed.example");
    let (status, _) = call!(
        app,
        authed(
            TestRequest::post().uri("/api/v1/tenants"),
            &h.token(&h.platform)
        )
        .set_json(json!({
            "slug": format!("c-{}", uuid::Uuid::now_v7().simple()),
            "name": "Billed",
            "collection_method": "cash",
        }))
    );
    assert_eq!(status, 422);
}

fn store(bucket: &str) -> DocumentStore {
    DocumentStore::new(&S3Settings {
        endpoint: Stack::get().values["S3_ENDPOINT"].clone(),
        bucket: bucket.into(),
        region: "us-east-1".into(),
        path_style: true,
        credentials: S3Credentials {
            access_key_id: "test".into(),
            secret_access_key: "test-secret".into(),
        },
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn pdf_text(pdf: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("{}.pdf", uuid::Uuid::now_v7()));
    std::fs::write(&path, pdf).unwrap();
    let output = std::process::Command::new("pdftotext")
        .args([path.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils)");
    let _ = std::fs::remove_file(&path);
    String::from_utf8(output.stdout).unwrap()
}

#[actix_web::test]
async fn the_document_endpoint_serves_the_stored_pdf_and_still_serves_html() {
    let bucket = tollgate_test_support::unique_name("docs").replace('_', "-");
    let documents = store(&bucket);
    documents.ensure_bucket().await.unwrap();
    let for_api = documents.clone();
    let h = Harness::with_config(move |config| config.documents = Some(for_api)).await;
    let app = app!(h);
    let token = h.token(&h.own.viewer);
    let uri = format!(
        "/api/v1/tenants/{}/invoices/{}/document",
        h.own.id, h.own.invoice_id
    );

    // Before the document step ran: the same rendering, on request.
    let response = actix_web::test::call_service(
        &app,
        authed(TestRequest::get().uri(&format!("{uri}?format=pdf")), &token).to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/pdf"
    );
    let rendered = actix_web::test::read_body(response).await.to_vec();
    let number: String =
        h.db.client()
            .await
            .query_one(
                "SELECT number FROM invoices WHERE id = $1",
                &[&h.own.invoice_id],
            )
            .await
            .unwrap()
            .get(0);
    let text = pdf_text(&rendered);
    assert!(text.contains(&number), "{text}");
    assert!(text.contains("49.00 USD"), "{text}");

    // The delivery step stores it; the API then serves exactly the stored object.
    let deliverer = Deliverer {
        documents: Some(documents.clone()),
        ..Deliverer::default()
    };
    let report = deliverer
        .deliver(&h.db.client().await, h.own.invoice_id)
        .await
        .unwrap();
    assert!(report.complete(), "{report:?}");
    // The detail shows the step, as operators and tenants see where an invoice is.
    let (status, detail) = call!(
        app,
        authed(
            TestRequest::get().uri(&format!(
                "/api/v1/tenants/{}/invoices/{}",
                h.own.id, h.own.invoice_id
            )),
            &token
        )
    );
    assert_eq!(status, 200);
    let steps = detail["steps"].as_array().unwrap();
    let document_step = steps.iter().find(|s| s["step"] == "document").unwrap();
    assert_eq!(document_step["status"], "succeeded");
    assert_eq!(document_step["attempts"], 1);
    let key: String =
        h.db.client()
            .await
            .query_one(
                "SELECT document_key FROM invoices WHERE id = $1",
                &[&h.own.invoice_id],
            )
            .await
            .unwrap()
            .get(0);
    // Replace the object with a marker, so "served from the store" is what the test sees.
    let marker = b"%PDF-1.7 stored copy".to_vec();
    documents
        .put(&key, "application/pdf", marker.clone())
        .await
        .unwrap();
    let response = actix_web::test::call_service(
        &app,
        authed(TestRequest::get().uri(&format!("{uri}?format=pdf")), &token).to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(actix_web::test::read_body(response).await.to_vec(), marker);

    let response = actix_web::test::call_service(
        &app,
        authed(TestRequest::get().uri(&uri), &token).to_request(),
    )
    .await;
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    let html = String::from_utf8(actix_web::test::read_body(response).await.to_vec()).unwrap();
    assert!(html.contains(&number));

    let (status, body) = call!(
        app,
        authed(
            TestRequest::get().uri(&format!("{uri}?format=docx")),
            &token
        )
    );
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "format");
}

#[actix_web::test]
async fn billing_gauges_count_invoices_revenue_and_failed_steps() {
    let h = Harness::new().await;
    let mut client = h.db.client().await;
    // The harness has two finalized invoices (USD 49.00 each, January 2026) and two USD 0.00
    // plans. One more invoice for the last closed month:
    let last_month = client
        .query_one(
            "SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month') \
                    AT TIME ZONE 'UTC'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, time::OffsetDateTime>(0);
    let recent = uuid::Uuid::now_v7();
    client
        .execute(
            "INSERT INTO invoices (id, tenant_id, period_start, period_end, currency, status, \
                                   subtotal_minor, total_minor) \
             VALUES ($1, $2, $3, $3::timestamptz + interval '1 month', 'JPY', 'draft', 1200, 1200)",
            &[&recent, &h.foreign.id, &last_month],
        )
        .await
        .unwrap();
    tollgate_invoicing::store::finalize(&mut client, recent)
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO invoice_steps (invoice_id, step, status, attempts, last_error) \
             VALUES ($1, 'email', 'failed', 3, 'email: connection refused')",
            &[&h.own.invoice_id],
        )
        .await
        .unwrap();
    let plan = uuid::Uuid::now_v7();
    client
        .execute(
            "INSERT INTO plans (id, name, rate_per_second, burst, pricing) VALUES ($1, $2, 10, 10, \
             '{\"currency\":\"EUR\",\"base_fee_minor\":2500,\"model\":\"flat\"}')",
            &[&plan, &format!("eur-{plan}")],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO subscriptions (id, tenant_id, plan_id, starts_at) \
             VALUES ($1, $2, $3, now() - interval '1 day')",
            &[&uuid::Uuid::now_v7(), &h.own.id, &plan],
        )
        .await
        .unwrap();
    let metrics = &h.state.metrics;
    metrics.observe_request("GET", 200);
    metrics.billing.refresh(&client).await.unwrap();
    let text = metrics
        .render(tollgate_core::metrics_exposition::Exposition::PrometheusText)
        .unwrap();
    assert!(
        text.contains("billing_invoices{status=\"finalized\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("billing_invoiced_amount_minor{currency=\"JPY\"} 1200"),
        "{text}"
    );
    assert!(
        !text.contains("billing_invoiced_amount_minor{currency=\"USD\"}"),
        "{text}"
    );
    assert!(
        text.contains("billing_invoice_steps_failed{step=\"email\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("billing_mrr_minor{currency=\"EUR\"} 2500"),
        "{text}"
    );
    // The service's own metrics keep their prefix beside the unprefixed billing gauges.
    assert!(
        text.contains(
            "tollgate_control_api_http_requests_total{method=\"GET\",status_class=\"2xx\"} 1"
        ),
        "{text}"
    );

    // A step that succeeds later leaves the gauge; a label with no rows disappears.
    client
        .execute(
            "UPDATE invoice_steps SET status = 'succeeded', succeeded_at = now()",
            &[],
        )
        .await
        .unwrap();
    metrics.billing.refresh(&client).await.unwrap();
    let text = metrics
        .render(tollgate_core::metrics_exposition::Exposition::PrometheusText)
        .unwrap();
    assert!(!text.contains("billing_invoice_steps_failed{"), "{text}");
}
