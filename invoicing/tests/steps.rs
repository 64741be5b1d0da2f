//! The store API delivery steps build on, against the real PostgreSQL: claiming a step with a
//! lease, failures with attempt counts and errors, the invoices still needing a step, and the
//! payment transitions of the state machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tollgate_invoicing::InvoicingError;
use tollgate_invoicing::store::{self, InvoiceStatus, StepStart};
use tollgate_test_support::TestDb;

#[tokio::test]
async fn a_delivery_step_is_claimed_retried_and_recorded() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let growth = plan(&client, "growth", GROWTH).await;
    for slug in ["one", "two"] {
        let t = tenant(&client, slug).await;
        subscribe(&client, t, growth, "2026-11-01T00:00:00Z", None).await;
    }
    run_ok(&db, &["monthly", "--period", "2026-11"]);
    let lease = Duration::from_secs(300);
    let due = store::invoices_needing_step(&client, "email", &["finalize"], lease, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 2);
    let (first, second) = (due[0], due[1]);
    // Needs a step nobody has run: none qualify.
    assert!(
        store::invoices_needing_step(&client, "email", &["document"], lease, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        store::start_step(&client, first, "email", lease)
            .await
            .unwrap(),
        StepStart::Started { attempt: 1 }
    );
    // A second runner is kept out while the lease lasts, and the invoice is not listed.
    assert_eq!(
        store::start_step(&client, first, "email", lease)
            .await
            .unwrap(),
        StepStart::Busy
    );
    let due = store::invoices_needing_step(&client, "email", &["finalize"], lease, 10)
        .await
        .unwrap();
    assert_eq!(due, [second]);
    // A failure records the error and waits for its retry time.
    store::step_failed(
        &client,
        first,
        "email",
        "SMTP 451 try later",
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(
        store::start_step(&client, first, "email", lease)
            .await
            .unwrap(),
        StepStart::Started { attempt: 2 }
    );
    store::step_succeeded(
        &client,
        first,
        "email",
        Some(&serde_json::json!({"message_id": "m-1"})),
    )
    .await
    .unwrap();
    assert_eq!(
        store::start_step(&client, first, "email", lease)
            .await
            .unwrap(),
        StepStart::AlreadySucceeded
    );
    let steps = store::steps(&client, first).await.unwrap();
    let email = steps.iter().find(|s| s.step == "email").unwrap();
    assert_eq!((email.status.as_str(), email.attempts), ("succeeded", 2));
    assert_eq!(email.last_error.as_deref(), Some("SMTP 451 try later"));
    assert_eq!(email.detail["message_id"], "m-1");
    // A crashed runner's lease runs out: the step is due again.
    assert_eq!(
        store::start_step(&client, second, "email", Duration::ZERO)
            .await
            .unwrap(),
        StepStart::Started { attempt: 1 }
    );
    assert_eq!(
        store::start_step(&client, second, "email", Duration::ZERO)
            .await
            .unwrap(),
        StepStart::Started { attempt: 2 }
    );
    // A failure with a retry time in the future is not due.
    store::step_failed(&client, second, "email", "down", Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        store::start_step(&client, second, "email", lease)
            .await
            .unwrap(),
        StepStart::Busy
    );
    assert!(
        store::invoices_needing_step(&client, "email", &["finalize"], lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn payments_move_along_the_state_machine_and_every_transition_is_recorded() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let growth = plan(&client, "growth", GROWTH).await;
    let t = tenant(&client, "payer").await;
    subscribe(&client, t, growth, "2026-11-01T00:00:00Z", None).await;
    run_ok(&db, &["monthly", "--period", "2026-11"]);
    let invoice = store::invoice_for_period(&client, t, at("2026-11-01T00:00:00Z"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(invoice.status, InvoiceStatus::Finalized);
    let (record, lines) = store::load_invoice(&client, invoice.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.number, invoice.number);
    assert_eq!(lines.len(), 1);
    assert_eq!(
        store::transition(&client, invoice.id, InvoiceStatus::PaymentFailed)
            .await
            .unwrap(),
        InvoiceStatus::Finalized
    );
    // A redelivered webhook is harmless.
    store::transition(&client, invoice.id, InvoiceStatus::PaymentFailed)
        .await
        .unwrap();
    store::transition(&client, invoice.id, InvoiceStatus::Paid)
        .await
        .unwrap();
    let refused = store::transition(&client, invoice.id, InvoiceStatus::Void).await;
    assert!(
        matches!(refused, Err(InvoicingError::TransitionRefused { .. })),
        "{refused:?}"
    );
    let history: Vec<(Option<String>, String)> = store::transitions(&client, invoice.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.from, t.to))
        .collect();
    let s = |v: &str| v.to_owned();
    assert_eq!(
        history,
        [
            (None, s("draft")),
            (Some(s("draft")), s("finalized")),
            (Some(s("finalized")), s("payment_failed")),
            (Some(s("payment_failed")), s("paid")),
        ]
    );
}
