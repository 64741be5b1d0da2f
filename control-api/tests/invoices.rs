//! Invoices, read through the API from rows inserted directly, as the invoicing job
//! writes them: the list, the detail with its lines and the HTML document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use actix_web::test::TestRequest;
use serde_json::{Value, json};
use support::Harness;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

fn get(uri: &str, token: &str) -> TestRequest {
    TestRequest::get()
        .uri(uri)
        .insert_header(("Authorization", format!("Bearer {token}")))
}

/// Inserts an invoice for `tenant` with `lines` of `(position, kind, description, quantity,
/// unit_price, amount_minor)`.
async fn insert_invoice(
    h: &Harness,
    tenant: Uuid,
    month: &str,
    status: &str,
    total_minor: i64,
    lines: &[(i32, &str, &str, i64, &str, i64)],
) -> Uuid {
    let client = h.db.client().await;
    let id = Uuid::now_v7();
    let start = OffsetDateTime::parse(&format!("{month}-01T00:00:00Z"), &Rfc3339).unwrap();
    let end = if start.month() == time::Month::December {
        start
            .replace_year(start.year() + 1)
            .unwrap()
            .replace_month(time::Month::January)
    } else {
        start.replace_month(start.month().next())
    }
    .unwrap();
    client
        .execute(
            "INSERT INTO invoices (id, tenant_id, period_start, period_end, currency, status, \
               subtotal_minor, total_minor) \
             VALUES ($1, $2, $3, $4, 'USD', 'draft', $5, $5)",
            &[&id, &tenant, &start, &end, &total_minor],
        )
        .await
        .unwrap();
    for &(position, kind, description, quantity, unit_price, amount) in lines {
        client
            .execute(
                "INSERT INTO invoice_lines (id, invoice_id, position, kind, description, \
                   quantity, unit_price, amount_minor) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7::text::numeric, $8)",
                &[
                    &Uuid::now_v7(),
                    &id,
                    &position,
                    &kind,
                    &description,
                    &quantity,
                    &unit_price,
                    &amount,
                ],
            )
            .await
            .unwrap();
    }
    // Lines are written to a draft; finalizing freezes them and takes a gapless number.
    if status != "draft" {
        client
            .execute(
                "WITH n AS (INSERT INTO invoice_number_counters AS c (year, last_seq) VALUES (2026, 1) \
                            ON CONFLICT (year) DO UPDATE SET last_seq = c.last_seq + 1 RETURNING last_seq) \
                 UPDATE invoices SET status = 'finalized', finalized_at = period_end, \
                        number = format('TG-2026-%s', lpad(n.last_seq::text, 6, '0')) \
                   FROM n WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
    }
    if status != "draft" && status != "finalized" {
        client
            .execute(
                "UPDATE invoices SET status = $2 WHERE id = $1",
                &[&id, &status],
            )
            .await
            .unwrap();
    }
    id
}

#[actix_web::test]
async fn invoices_list_newest_first_with_lines_and_a_document() {
    let h = Harness::new().await;
    let app = app!(h);
    // The fixture invoice is 2026-01, finalized.
    let draft = insert_invoice(&h, h.own.id, "2026-02", "draft", 0, &[]).await;
    let evil = "API calls <script>alert('x')</script> & \"more\"";
    let march = insert_invoice(
        &h,
        h.own.id,
        "2026-03",
        "finalized",
        1_234_567,
        &[
            (2, "overage", "Overage", 10, "0.5", 500),
            (0, "base_fee", "Growth plan", 1, "4900", 490_000),
            (1, "usage", evil, 2_000_000, "0.0003725335", 744_067),
        ],
    )
    .await;
    let foreign = insert_invoice(&h, h.foreign.id, "2026-03", "finalized", 1, &[]).await;
    let viewer = h.token(&h.own.viewer);
    let list = format!("/api/v1/tenants/{}/invoices", h.own.id);

    let ids = |page: &Value| -> Vec<Value> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].clone())
            .collect()
    };
    let (status, all) = call!(app, get(&list, &viewer));
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        ids(&all),
        [json!(march), json!(draft), json!(h.own.invoice_id)]
    );
    assert_eq!(all["items"][0]["total_minor"], 1_234_567);
    assert_eq!(all["items"][0]["currency"], "USD");
    assert_eq!(all["items"][0]["period_start"], "2026-03-01T00:00:00Z");
    assert_eq!(all["items"][0]["period_end"], "2026-04-01T00:00:00Z");

    let (_, first) = call!(app, get(&format!("{list}?limit=2"), &viewer));
    assert_eq!(ids(&first), [json!(march), json!(draft)]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = call!(
        app,
        get(&format!("{list}?limit=2&cursor={cursor}"), &viewer)
    );
    assert_eq!(ids(&second), [json!(h.own.invoice_id)]);
    assert!(second.get("next_cursor").is_none());

    let (_, finalized) = call!(app, get(&format!("{list}?status=finalized"), &viewer));
    assert_eq!(ids(&finalized), [json!(march), json!(h.own.invoice_id)]);
    let (_, drafts) = call!(app, get(&format!("{list}?status=draft"), &viewer));
    assert_eq!(ids(&drafts), [json!(draft)]);
    for bad in [
        "status=pushed",
        "status=%F0%9F%92%B8",
        "limit=0",
        "limit=99999999999999999999",
    ] {
        let (status, body) = call!(app, get(&format!("{list}?{bad}"), &viewer));
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body["error"]["field"].is_string(), "{bad}: {body}");
    }
    let (status, body) = call!(app, get(&format!("{list}?cursor=%E2%80%AE"), &viewer));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_cursor"))
    );

    let (status, detail) = call!(app, get(&format!("{list}/{march}"), &viewer));
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["status"], "finalized");
    let lines: Vec<Value> = detail["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            json!([
                l["position"],
                l["kind"],
                l["quantity"],
                l["unit_price"],
                l["amount_minor"]
            ])
        })
        .collect();
    assert_eq!(
        lines,
        [
            json!([0, "base_fee", 1, "4900", 490_000]),
            json!([1, "usage", 2_000_000, "0.0003725335", 744_067]),
            json!([2, "overage", 10, "0.5", 500]),
        ]
    );
    assert_eq!(detail["lines"][1]["description"], evil);

    let response = actix_web::test::call_service(
        &app,
        get(&format!("{list}/{march}/document"), &viewer).to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let simple = march.simple().to_string();
    assert_eq!(
        header("content-disposition"),
        format!(
            "attachment; filename=\"invoice-2026-03-{}.html\"",
            &simple[24..]
        )
    );
    let html = String::from_utf8(actix_web::test::read_body(response).await.to_vec()).unwrap();
    assert!(
        html.contains(
            "API calls &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;"
        ),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("<td colspan=\"5\">Total</td><td class=\"num\">12,345.67 USD</td>"),
        "{html}"
    );
    assert!(
        html.contains("<td class=\"num\">4,900.00 USD</td>"),
        "{html}"
    );
    assert!(
        html.contains("<td class=\"num\">0.0003725335</td>"),
        "{html}"
    );

    let (status, body) = call!(app, get(&format!("{list}/{draft}/document"), &viewer));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("invoice_not_finalized"))
    );
    // Another tenant's invoice is not found, whether named under its tenant or this one.
    for uri in [
        format!("/api/v1/tenants/{}/invoices/{foreign}", h.foreign.id),
        format!(
            "/api/v1/tenants/{}/invoices/{foreign}/document",
            h.foreign.id
        ),
        format!("{list}/{foreign}"),
        format!("{list}/{foreign}/document"),
        format!("{list}/not-an-id"),
    ] {
        let (status, body) = call!(app, get(&uri, &viewer));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{uri}"
        );
    }
    // The platform admin reads the foreign one, and its list holds only its own.
    let platform = h.token(&h.platform);
    let (_, foreign_list) = call!(
        app,
        get(
            &format!("/api/v1/tenants/{}/invoices", h.foreign.id),
            &platform
        )
    );
    assert_eq!(
        ids(&foreign_list),
        [json!(foreign), json!(h.foreign.invoice_id)]
    );
    // Invoices are read-only through the API.
    let (status, _) = call!(
        app,
        TestRequest::post()
            .uri(&list)
            .insert_header(("Authorization", format!("Bearer {platform}")))
            .set_json(json!({}))
    );
    assert_eq!(status, 405);
}

/// Growth: $49, 1,000 included, graduated 0.001 / 0.0008 / 0.0005 (as invoicing's tests).
const GROWTH: &str = r#"{"currency":"USD","base_fee_minor":4900,"included_units":1000,
  "model":"graduated","tiers":[{"up_to":10000,"unit_price":"0.001"},
  {"up_to":100000,"unit_price":"0.0008"},{"up_to":null,"unit_price":"0.0005"}]}"#;

#[actix_web::test]
async fn the_upcoming_invoice_rates_the_current_period_so_far_and_stores_nothing() {
    let h = Harness::new().await;
    let app = app!(h);
    let client = h.db.client().await;
    let tenant = tollgate_test_support::fixtures::insert_tenant(&client, "upcoming").await;
    let tenant = *tenant.as_uuid();
    let plan = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO plans (id, name, rate_per_second, burst, pricing) \
             VALUES ($1, 'growth-upcoming', 10, 10, $2::text::jsonb)",
            &[&plan, &GROWTH],
        )
        .await
        .unwrap();
    let platform = h.token(&h.platform);
    let uri = format!("/api/v1/tenants/{tenant}/invoices/upcoming");
    // No subscription this period: nothing to project.
    let (status, body) = call!(app, get(&uri, &platform));
    assert_eq!(status, 404, "{body}");
    client
        .execute(
            "INSERT INTO subscriptions (id, tenant_id, plan_id, starts_at) \
             VALUES ($1, $2, $3, date_trunc('month', now(), 'UTC'))",
            &[&Uuid::now_v7(), &tenant, &plan],
        )
        .await
        .unwrap();
    // 25,500 billable requests this month (and 40 refused ones), one hour in.
    client
        .execute(
            "INSERT INTO usage_minute (minute, tenant_id, status_class, request_count, billable_count, \
               request_bytes, response_bytes, latency_us_sum) \
             VALUES (date_trunc('month', now(), 'UTC') + interval '1 hour', $1, 2, 25500, 25500, 0, 0, 0), \
                    (date_trunc('month', now(), 'UTC') + interval '1 hour', $1, 4, 40, 0, 0, 0, 0)",
            &[&tenant],
        )
        .await
        .unwrap();
    let (status, body) = call!(app, get(&uri, &platform));
    assert_eq!(status, 200, "{body}");
    let lines: Vec<Value> = body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| json!([l["kind"], l["quantity"], l["amount_minor"]]))
        .collect();
    // 24,500 beyond the included: 10,000 × 0.001 = 10.00; 14,500 × 0.0008 = 11.60.
    assert_eq!(
        lines,
        [
            json!(["base_fee", 1, 4900]),
            json!(["usage", 10000, 1000]),
            json!(["usage", 14500, 1160])
        ]
    );
    assert_eq!(body["total_minor"], 7060);
    assert_eq!(body["currency"], "USD");
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM invoices WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    // The tenant's own viewer sees its own; another tenant's viewer does not.
    let (status, _) = call!(
        app,
        get(
            &format!("/api/v1/tenants/{}/invoices/upcoming", h.own.id),
            &h.token(&h.own.viewer)
        )
    );
    assert_eq!(status, 200);
    let (status, _) = call!(app, get(&uri, &h.token(&h.own.viewer)));
    assert_ne!(status, 200);
}
