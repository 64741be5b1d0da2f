//! The SMTP server or the object store down during a run: the invoice stops at that step with
//! the error recorded, the other steps still run, and the next run finishes it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{
    emails_to, finalized_invoice, mailer, s3_addr, s3_settings, smtp_addr, step_record,
    stripe_client, test_bucket,
};
use tollgate_invoicing::delivery::{
    Deliverer, DeliveryInvoice, DeliveryStep, DocumentStore, document_keys,
};
use tollgate_test_support::stripe_stand_in::StripeStandIn;
use tollgate_test_support::{FaultyLink, TestDb};

/// The error the first run recorded (a succeeded step keeps its last error for operators).
fn error_text(report: &tollgate_invoicing::delivery::DeliveryReport) -> String {
    report.failed[0].1.clone()
}

#[tokio::test]
async fn smtp_down_stops_the_email_step_and_the_next_run_sends_it() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let fixture = finalized_invoice(&mut client, "charge_automatically").await;
    let stand_in = StripeStandIn::start().await;
    let (_bucket, store) = test_bucket().await;
    let link = FaultyLink::start(smtp_addr()).await;
    let deliverer = Deliverer {
        stripe: Some(stripe_client(&stand_in)),
        mailer: Some(mailer(Some(link.addr().port()))),
        documents: Some(store),
        ..Deliverer::default()
    };

    link.cut();
    let first = deliverer
        .deliver(&client, fixture.invoice_id)
        .await
        .unwrap();
    assert_eq!(first.done, [DeliveryStep::Stripe, DeliveryStep::Document]);
    assert_eq!(first.failed.len(), 1, "{first:?}");
    assert_eq!(first.failed[0].0, DeliveryStep::Email);
    assert!(
        first.failed[0].1.starts_with("email:"),
        "{:?}",
        first.failed
    );
    let (status, attempts, error) = step_record(&client, fixture.invoice_id, "email")
        .await
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    assert!(error.unwrap().starts_with("email:"));
    assert!(emails_to(&fixture.billing_email).is_empty());

    link.restore();
    let second = deliverer
        .deliver(&client, fixture.invoice_id)
        .await
        .unwrap();
    assert_eq!(second.done, [DeliveryStep::Email], "{second:?}");
    assert_eq!(second.already_done.len(), 2);
    let record = step_record(&client, fixture.invoice_id, "email").await;
    assert_eq!(
        record,
        Some(("succeeded".to_owned(), 2, Some(error_text(&first))))
    );
    assert_eq!(emails_to(&fixture.billing_email).len(), 1);
    assert_eq!(stand_in.invoices().len(), 1, "Stripe was not called again");
}

#[tokio::test]
async fn s3_down_stops_the_document_step_and_the_next_run_stores_it() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let fixture = finalized_invoice(&mut client, "charge_automatically").await;
    let (bucket, direct) = test_bucket().await;
    let link = FaultyLink::start(s3_addr()).await;
    let through_link = DocumentStore::new(&s3_settings(
        &bucket,
        Some(format!("http://{}", link.addr())),
    ))
    .unwrap();
    let deliverer = Deliverer {
        stripe: None,
        mailer: Some(mailer(None)),
        documents: Some(through_link),
        ..Deliverer::default()
    };

    link.cut();
    let first = deliverer
        .deliver(&client, fixture.invoice_id)
        .await
        .unwrap();
    assert_eq!(first.done, [DeliveryStep::Email]);
    assert_eq!(first.failed.len(), 1, "{first:?}");
    assert_eq!(first.failed[0].0, DeliveryStep::Document);
    assert!(
        first.failed[0].1.starts_with("document store:"),
        "{:?}",
        first.failed
    );
    let key: Option<String> = client
        .query_one(
            "SELECT document_key FROM invoices WHERE id = $1",
            &[&fixture.invoice_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(key, None);
    let (status, _, error) = step_record(&client, fixture.invoice_id, "document")
        .await
        .unwrap();
    assert_eq!(status, "failed");
    assert!(error.unwrap().starts_with("document store:"));

    link.restore();
    let second = deliverer
        .deliver(&client, fixture.invoice_id)
        .await
        .unwrap();
    assert_eq!(second.done, [DeliveryStep::Document], "{second:?}");
    let invoice = DeliveryInvoice::load(&client, fixture.invoice_id)
        .await
        .unwrap()
        .unwrap();
    let (pdf_key, _) = document_keys(&invoice);
    let stored = direct.get(&pdf_key).await.unwrap().unwrap();
    assert_eq!(stored, emails_to(&fixture.billing_email)[0].pdf);
}
