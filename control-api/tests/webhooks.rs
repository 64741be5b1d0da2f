//! `POST /api/v1/webhooks/stripe`: signed events move an invoice's payment status once; bad
//! signatures, old timestamps and malformed bodies get 400 and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use actix_web::test::TestRequest;
use serde_json::{Value, json};
use support::Harness;
use tollgate_control_api::config::WebhookSecret;
use tollgate_test_support::stripe_stand_in::sign_webhook;
use uuid::Uuid;

const SECRET: &str = "whsec_tollgate_webhook_test_secret";

async fn harness() -> Harness {
    Harness::with_config(|config| {
        config.stripe_webhook_secret = Some(WebhookSecret::parse(SECRET).unwrap());
    })
    .await
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn event(id: &str, kind: &str, stripe_invoice: &str, our_invoice: Uuid) -> String {
    json!({
        "id": id, "object": "event", "type": kind, "created": now(),
        "data": { "object": { "id": stripe_invoice, "object": "invoice",
                              "metadata": { "tollgate_invoice_id": our_invoice.to_string() } } }
    })
    .to_string()
}

fn post(payload: &str, signature: Option<String>) -> TestRequest {
    let mut req = TestRequest::post()
        .uri("/api/v1/webhooks/stripe")
        .insert_header(("Content-Type", "application/json"))
        .set_payload(payload.to_owned());
    if let Some(signature) = signature {
        req = req.insert_header(("Stripe-Signature", signature));
    }
    req
}

fn signed(payload: &str) -> TestRequest {
    post(payload, Some(sign_webhook(SECRET, now(), payload)))
}

/// Gives the harness's own invoice a Stripe id, as the delivery step does.
async fn pushed(h: &Harness) -> (Uuid, String) {
    let stripe_id = format!("in_{}", Uuid::now_v7().simple());
    h.db.client()
        .await
        .execute(
            "UPDATE invoices SET stripe_invoice_id = $2 WHERE id = $1",
            &[&h.own.invoice_id, &stripe_id],
        )
        .await
        .unwrap();
    (h.own.invoice_id, stripe_id)
}

async fn status_and_transitions(h: &Harness, invoice: Uuid) -> (String, i64) {
    let row =
        h.db.client()
            .await
            .query_one(
                "SELECT status, (SELECT count(*) FROM invoice_transitions WHERE invoice_id = $1) \
               FROM invoices WHERE id = $1",
                &[&invoice],
            )
            .await
            .unwrap();
    (row.get(0), row.get(1))
}

#[actix_web::test]
async fn a_valid_paid_event_marks_the_invoice_paid_once() {
    let h = harness().await;
    let app = app!(h);
    let (invoice, stripe_id) = pushed(&h).await;
    let payload = event("evt_paid_1", "invoice.paid", &stripe_id, invoice);

    let (status, body) = call!(app, signed(&payload));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "received": true, "outcome": "applied" }));
    let after_first = status_and_transitions(&h, invoice).await;
    assert_eq!(after_first.0, "paid");

    // Stripe delivers at least once: the same event again changes nothing.
    let (status, body) = call!(app, signed(&payload));
    assert_eq!(status, 200);
    assert_eq!(body["outcome"], "duplicate");
    assert_eq!(status_and_transitions(&h, invoice).await, after_first);

    // The tenant sees the payment status in the list and the detail; another tenant does not.
    let token = h.token(&h.own.admin);
    let (status, detail) = call!(
        app,
        TestRequest::get()
            .uri(&format!("/api/v1/tenants/{}/invoices/{invoice}", h.own.id))
            .insert_header(("Authorization", format!("Bearer {token}")))
    );
    assert_eq!(status, 200);
    assert_eq!(detail["status"], "paid");
    let (_, list) = call!(
        app,
        TestRequest::get()
            .uri(&format!(
                "/api/v1/tenants/{}/invoices?status=paid",
                h.own.id
            ))
            .insert_header(("Authorization", format!("Bearer {token}")))
    );
    assert_eq!(list["items"][0]["id"], invoice.to_string());
    let foreign = h.token(&h.foreign.admin);
    let (status, _) = call!(
        app,
        TestRequest::get()
            .uri(&format!("/api/v1/tenants/{}/invoices/{invoice}", h.own.id))
            .insert_header(("Authorization", format!("Bearer {foreign}")))
    );
    assert_eq!(status, 404);

    // A later payment failure for a paid invoice is stale: the state machine keeps it paid.
    let late = event(
        "evt_failed_late",
        "invoice.payment_failed",
        &stripe_id,
        invoice,
    );
    let (status, body) = call!(app, signed(&late));
    assert_eq!((status, body["outcome"].clone()), (200, json!("stale")));
    assert_eq!(status_and_transitions(&h, invoice).await, after_first);
}

#[actix_web::test]
async fn failed_then_paid_and_voided_events_follow_the_state_machine() {
    let h = harness().await;
    let app = app!(h);
    let (invoice, stripe_id) = pushed(&h).await;
    for (id, kind, expected) in [
        ("evt_f", "invoice.payment_failed", "payment_failed"),
        ("evt_u", "invoice.marked_uncollectible", "uncollectible"),
        ("evt_v", "invoice.voided", "void"),
    ] {
        let (status, body) = call!(app, signed(&event(id, kind, &stripe_id, invoice)));
        assert_eq!(
            (status, body["outcome"].clone()),
            (200, json!("applied")),
            "{kind}"
        );
        assert_eq!(status_and_transitions(&h, invoice).await.0, expected);
    }
}

#[actix_web::test]
async fn bad_signatures_old_timestamps_and_malformed_bodies_get_400_and_change_nothing() {
    let h = harness().await;
    let app = app!(h);
    let (invoice, stripe_id) = pushed(&h).await;
    let before = status_and_transitions(&h, invoice).await;
    let payload = event("evt_bad", "invoice.paid", &stripe_id, invoice);
    let cases: Vec<(&str, TestRequest, &str)> = vec![
        ("no signature", post(&payload, None), "invalid_signature"),
        (
            "wrong secret",
            post(
                &payload,
                Some(sign_webhook("whsec_someone_else_entirely", now(), &payload)),
            ),
            "invalid_signature",
        ),
        (
            "tampered body",
            post(
                &payload.replace("invoice.paid", "invoice.voided"),
                Some(sign_webhook(SECRET, now(), &payload)),
            ),
            "invalid_signature",
        ),
        (
            "old timestamp",
            post(&payload, Some(sign_webhook(SECRET, now() - 3600, &payload))),
            "invalid_signature",
        ),
        ("malformed body", signed("{\"id\": 42"), "invalid_event"),
        (
            "not an event",
            signed("{\"hello\":\"world\"}"),
            "invalid_event",
        ),
    ];
    for (case, request, code) in cases {
        let (status, body) = call!(app, request);
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error"]["code"], code, "{case}");
    }
    assert_eq!(status_and_transitions(&h, invoice).await, before);
    let events: i64 =
        h.db.client()
            .await
            .query_one("SELECT count(*) FROM stripe_webhook_events", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(events, 0, "a refused event is not recorded");
    // The refused event id was not burnt: the genuine delivery still applies.
    let (status, body) = call!(app, signed(&payload));
    assert_eq!((status, body["outcome"].clone()), (200, json!("applied")));
}

#[actix_web::test]
async fn unknown_types_and_invoices_are_acknowledged_and_ignored() {
    let h = harness().await;
    let app = app!(h);
    let (invoice, stripe_id) = pushed(&h).await;
    let before = status_and_transitions(&h, invoice).await;
    let customer = json!({ "id": "evt_c", "type": "customer.created", "created": now(),
                           "data": { "object": { "id": "cus_1" } } })
    .to_string();
    let (status, body) = call!(app, signed(&customer));
    assert_eq!((status, body["outcome"].clone()), (200, json!("ignored")));
    let stranger = event("evt_s", "invoice.paid", "in_not_ours", Uuid::now_v7());
    let (status, body) = call!(app, signed(&stranger));
    assert_eq!((status, body["outcome"].clone()), (200, json!("ignored")));
    assert_eq!(status_and_transitions(&h, invoice).await, before);
    let _ = stripe_id;
}

#[actix_web::test]
async fn without_a_signing_secret_the_endpoint_says_it_is_not_configured() {
    let h = Harness::new().await;
    let app = app!(h);
    let (status, body): (u16, Value) = call!(app, signed("{}"));
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "webhooks_not_configured");
}
