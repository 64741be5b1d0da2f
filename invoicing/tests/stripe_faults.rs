//! Every fault at every Stripe call: the run that meets it fails the Stripe step (or
//! recovers by retrying), and the rerun completes without a duplicate customer, invoice,
//! item or send.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{finalized_invoice, stripe_client, test_retry};
use tollgate_invoicing::delivery::{Deliverer, DeliveryStep};
use tollgate_test_support::TestDb;
use tollgate_test_support::stripe_stand_in::{Fault, StripeCall, StripeStandIn};

fn faults() -> [Fault; 4] {
    [
        Fault::ServerError,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        // Longer than the client's 500 ms timeout.
        Fault::Hang(Duration::from_millis(1500)),
        Fault::CommitThenDrop,
    ]
}

fn count_with(objects: &[Value], key: &str, id: &str) -> usize {
    objects
        .iter()
        .filter(|o| o["metadata"][key].as_str() == Some(id))
        .count()
}

#[tokio::test]
async fn each_fault_at_each_call_ends_in_exactly_one_of_everything() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let stand_in = StripeStandIn::start().await;
    let deliverer = Deliverer {
        stripe: Some(stripe_client(&stand_in)),
        mailer: None,
        documents: None,
        ..Deliverer::default()
    };
    let attempts = test_retry().max_attempts;
    let mut failures = Vec::new();
    for call in StripeCall::WRITES {
        for fault in faults() {
            let case = format!("{fault:?} at {call:?}");
            // A tenant and invoice per case, in one stand-in: counts are by our metadata.
            let fixture = finalized_invoice(&mut client, "send_invoice").await;
            // As often as the client tries: the first run cannot get through.
            stand_in.inject(call, fault, attempts);
            let first = deliverer
                .deliver(&client, fixture.invoice_id)
                .await
                .unwrap();
            stand_in.clear_faults();
            if first.failed.len() != 1 || first.failed[0].0 != DeliveryStep::Stripe {
                failures.push(format!(
                    "{case}: first run did not fail the step: {first:?}"
                ));
                continue;
            }
            let second = deliverer
                .deliver(&client, fixture.invoice_id)
                .await
                .unwrap();
            if second.done != [DeliveryStep::Stripe] {
                failures.push(format!("{case}: rerun did not complete: {second:?}"));
                continue;
            }
            let tenant = fixture.tenant_id.to_string();
            let invoice = fixture.invoice_id.to_string();
            let customers = count_with(&stand_in.customers(), "tollgate_tenant_id", &tenant);
            let invoices: Vec<Value> = stand_in
                .invoices()
                .into_iter()
                .filter(|i| i["metadata"]["tollgate_invoice_id"] == invoice.as_str())
                .collect();
            let items = count_with(&stand_in.invoice_items(), "tollgate_invoice_id", &invoice);
            let sends = invoices
                .first()
                .map(|i| stand_in.sends(i["id"].as_str().unwrap()))
                .unwrap_or(0);
            let status = invoices.first().map(|i| i["status"].clone());
            if (customers, invoices.len(), items, sends) != (1, 1, 2, 1)
                || status != Some(Value::from("open"))
            {
                failures.push(format!(
                    "{case}: {customers} customer(s), {} invoice(s), {items} item(s), \
                     {sends} send(s), status {status:?}",
                    invoices.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Nothing was ever refused as a reused key with other parameters.
    let idempotency_errors = stand_in
        .requests()
        .iter()
        .filter(|r| r.status == 400)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect::<Vec<_>>();
    assert!(idempotency_errors.is_empty(), "{idempotency_errors:?}");
}

#[tokio::test]
async fn a_single_fault_is_absorbed_by_the_clients_retries() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let stand_in = StripeStandIn::start().await;
    let deliverer = Deliverer {
        stripe: Some(stripe_client(&stand_in)),
        mailer: None,
        documents: None,
        ..Deliverer::default()
    };
    let fixture = finalized_invoice(&mut client, "charge_automatically").await;
    stand_in.inject(StripeCall::CreateInvoice, Fault::CommitThenDrop, 1);
    stand_in.inject(StripeCall::CreateInvoiceItem, Fault::ServerError, 1);
    stand_in.inject(
        StripeCall::FinalizeInvoice,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    let report = deliverer
        .deliver(&client, fixture.invoice_id)
        .await
        .unwrap();
    assert_eq!(report.done, [DeliveryStep::Stripe], "{report:?}");
    assert_eq!(stand_in.invoices().len(), 1);
    assert_eq!(stand_in.invoice_items().len(), 2);
    // The dropped create was retried with the same key and parameters, and replayed.
    let creates: Vec<_> = stand_in
        .requests()
        .into_iter()
        .filter(|r| r.call == Some(StripeCall::CreateInvoice))
        .collect();
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[0].idempotency_key, creates[1].idempotency_key);
    assert_eq!(creates[0].params, creates[1].params);
    assert!(creates[1].replayed);
}

#[tokio::test]
async fn a_wrong_api_key_fails_the_step_without_retrying_and_never_shows_the_key() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let stand_in = StripeStandIn::start().await;
    let mut settings = tollgate_invoicing::delivery::StripeSettings::new(
        &stand_in.url(),
        tollgate_invoicing::delivery::stripe::StripeApiKey::parse("sk_test_wrong_key_123").unwrap(),
    )
    .unwrap();
    settings.retry = test_retry();
    let deliverer = Deliverer {
        stripe: Some(tollgate_invoicing::delivery::StripeClient::new(settings).unwrap()),
        mailer: None,
        documents: None,
        ..Deliverer::default()
    };
    let fixture = finalized_invoice(&mut client, "charge_automatically").await;
    let report = deliverer
        .deliver(&client, fixture.invoice_id)
        .await
        .unwrap();
    assert_eq!(report.failed.len(), 1);
    let error = &report.failed[0].1;
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(!error.contains("sk_test_wrong"), "{error}");
    assert_eq!(stand_in.requests().len(), 1, "a 401 is not retried");
    let record = support::step_record(&client, fixture.invoice_id, "stripe").await;
    assert_eq!(record.map(|r| (r.0, r.1)), Some(("failed".to_owned(), 1)));
}
