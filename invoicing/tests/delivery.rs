//! Delivery of a finalized invoice through the real channels: the Stripe stand-in over HTTP,
//! the local SMTP server and the local S3 server; reruns do only what is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{emails_to, finalized_invoice, mailer, pdf_text, stripe_client, test_bucket};
use tollgate_invoicing::delivery::{Deliverer, DeliveryInvoice, DeliveryStep, document_keys};
use tollgate_test_support::TestDb;
use tollgate_test_support::stripe_stand_in::{StripeCall, StripeStandIn};

#[tokio::test]
async fn a_finalized_invoice_reaches_stripe_the_mailbox_and_the_bucket_once() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let fixture = finalized_invoice(&mut client, "send_invoice").await;
    let stand_in = StripeStandIn::start().await;
    let (_bucket, store) = test_bucket().await;
    let deliverer = Deliverer {
        stripe: Some(stripe_client(&stand_in)),
        mailer: Some(mailer(None)),
        documents: Some(store.clone()),
        ..Deliverer::default()
    };

    let report = deliverer
        .deliver(&client, fixture.invoice_id)
        .await
        .unwrap();
    assert!(report.complete(), "{report:?}");
    assert_eq!(
        report.done,
        [
            DeliveryStep::Stripe,
            DeliveryStep::Email,
            DeliveryStep::Document
        ]
    );

    // Stripe: one customer carrying our tenant id, one invoice with exactly our lines.
    let customers = stand_in.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(
        customers[0]["metadata"]["tollgate_tenant_id"],
        fixture.tenant_id.to_string()
    );
    assert_eq!(customers[0]["email"], fixture.billing_email.as_str());
    let invoices = stand_in.invoices();
    assert_eq!(invoices.len(), 1);
    let stripe_invoice = &invoices[0];
    assert_eq!(stripe_invoice["status"], "open");
    assert_eq!(stripe_invoice["auto_advance"], false);
    assert_eq!(stripe_invoice["pending_invoice_items_behavior"], "exclude");
    assert_eq!(stripe_invoice["collection_method"], "send_invoice");
    assert_eq!(
        stripe_invoice["metadata"]["tollgate_invoice_id"],
        fixture.invoice_id.to_string()
    );
    assert_eq!(stripe_invoice["total"], fixture.total_minor);
    let items = stand_in.invoice_items();
    let mut amounts: Vec<i64> = items
        .iter()
        .map(|i| i["amount"].as_i64().unwrap())
        .collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [4900, 123_290]);
    let stripe_id = stripe_invoice["id"].as_str().unwrap();
    assert_eq!(stand_in.sends(stripe_id), 1);
    // Every POST carried an idempotency key derived from our ids.
    for request in stand_in.requests().iter().filter(|r| r.method == "POST") {
        let key = request.idempotency_key.as_deref().unwrap();
        assert!(key.starts_with("tollgate-"), "{key}");
    }
    let stored: (Option<String>, Option<String>) = {
        let row = client
            .query_one(
                "SELECT stripe_invoice_id, document_key FROM invoices WHERE id = $1",
                &[&fixture.invoice_id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(stored.0.as_deref(), Some(stripe_id));
    let customer: String = client
        .query_one(
            "SELECT customer_id FROM stripe_customers WHERE tenant_id = $1",
            &[&fixture.tenant_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(customer, customers[0]["id"].as_str().unwrap());

    // Email: to the billing address, with the HTML invoice and the PDF attached.
    let invoice = DeliveryInvoice::load(&client, fixture.invoice_id)
        .await
        .unwrap()
        .unwrap();
    let number = invoice.number.clone();
    assert_eq!(number, fixture.number);
    let emails = emails_to(&fixture.billing_email);
    assert_eq!(emails.len(), 1);
    let email = &emails[0];
    assert!(
        email
            .headers
            .contains(&format!("Subject: Invoice {number}")),
        "{}",
        email.headers
    );
    assert!(email.headers.contains("1,281.90 USD"), "{}", email.headers);
    assert!(email.html.contains("1,281.90 USD"), "{}", email.html);
    assert!(email.html.contains("Acme &amp; Söhne"), "{}", email.html);
    assert!(email.pdf.starts_with(b"%PDF-"));
    assert_eq!(email.pdf_name, format!("invoice-{number}.pdf"));
    let text = pdf_text(&email.pdf);
    assert!(text.contains(&number), "{text}");
    assert!(text.contains("1,281.90 USD"), "{text}");
    assert!(text.contains("Requests over 1,000,000"), "{text}");

    // Documents: the same PDF in the bucket under the stable key, and the HTML beside it.
    let (pdf_key, html_key) = document_keys(&invoice);
    assert_eq!(
        pdf_key,
        format!("invoices/{}/2026-10/{number}.pdf", fixture.tenant_id)
    );
    assert_eq!(stored.1.as_deref(), Some(pdf_key.as_str()));
    assert_eq!(store.get(&pdf_key).await.unwrap().unwrap(), email.pdf);
    let html = String::from_utf8(store.get(&html_key).await.unwrap().unwrap()).unwrap();
    assert_eq!(html, email.html);

    // A rerun finds every step done and calls nobody.
    let requests_before = stand_in.requests().len();
    let again = deliverer
        .deliver(&client, fixture.invoice_id)
        .await
        .unwrap();
    assert!(again.done.is_empty(), "{again:?}");
    assert_eq!(again.already_done.len(), 3);
    for step in ["stripe", "email", "document"] {
        let record = support::step_record(&client, fixture.invoice_id, step).await;
        assert_eq!(record, Some(("succeeded".to_owned(), 1, None)), "{step}");
    }
    assert_eq!(stand_in.requests().len(), requests_before);
    assert_eq!(emails_to(&fixture.billing_email).len(), 1);
}

#[tokio::test]
async fn two_concurrent_deliveries_of_one_invoice_act_once() {
    let db = TestDb::new().await;
    let (mut first, second) = (db.client().await, db.client().await);
    let fixture = finalized_invoice(&mut first, "charge_automatically").await;
    let stand_in = StripeStandIn::start().await;
    let (_bucket, store) = test_bucket().await;
    let deliverer = Deliverer {
        stripe: Some(stripe_client(&stand_in)),
        mailer: Some(mailer(None)),
        documents: Some(store),
        ..Deliverer::default()
    };
    let (a, b) = tokio::join!(
        deliverer.deliver(&first, fixture.invoice_id),
        deliverer.deliver(&second, fixture.invoice_id),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // Each step was claimed by exactly one of them; the other found it busy or done.
    let mut done: Vec<DeliveryStep> = a.done.iter().chain(&b.done).copied().collect();
    done.sort();
    assert_eq!(
        done,
        [
            DeliveryStep::Stripe,
            DeliveryStep::Email,
            DeliveryStep::Document
        ],
        "{a:?} {b:?}"
    );
    assert!(a.failed.is_empty() && b.failed.is_empty(), "{a:?} {b:?}");
    assert_eq!(stand_in.customers().len(), 1);
    assert_eq!(stand_in.invoices().len(), 1);
    assert_eq!(stand_in.invoice_items().len(), 2);
    assert_eq!(emails_to(&fixture.billing_email).len(), 1);
    // charge_automatically: finalized, never sent.
    assert_eq!(stand_in.invoices()[0]["status"], "open");
    assert!(
        !stand_in
            .requests()
            .iter()
            .any(|r| r.call == Some(StripeCall::SendInvoice))
    );
}
