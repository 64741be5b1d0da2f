//! Plans changed and deleted through the API, and a tenant's subscription history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use actix_web::test::TestRequest;
use serde_json::{Value, json};
use support::Harness;

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

#[actix_web::test]
async fn plan_patches_are_validated_like_creation_and_pricing_is_immutable() {
    let h = Harness::new().await;
    let app = app!(h);
    let auth = bearer(&h.token(&h.platform));
    let plan = format!("/api/v1/plans/{}", h.own.plan_id);
    let (_, before) = call!(
        app,
        TestRequest::get().uri(&plan).insert_header(auth.clone())
    );
    let cases = [
        (json!({ "pricing": { "currency": "EUR" } }), 422, "pricing"),
        (json!({ "name": "ok", "pricing": null }), 422, "pricing"),
        (json!({ "rate": { "burst": 0 } }), 422, "rate.burst"),
        (
            json!({ "rate": { "requests_per_second": 10_000_001 } }),
            422,
            "rate.requests_per_second",
        ),
        (
            json!({ "rate": { "requests_per_second": -1 } }),
            422,
            "rate.requests_per_second",
        ),
        (json!({ "rate": { "burst": "ten" } }), 422, "rate.burst"),
        (
            json!({ "rate": { "per_minute": 5 } }),
            422,
            "rate.per_minute",
        ),
        (
            json!({ "quota": { "included_requests": 0, "cap": "hard" } }),
            422,
            "quota.included_requests",
        ),
        (
            json!({ "quota": { "included_requests": 5, "cap": "firm" } }),
            422,
            "quota.cap",
        ),
        (json!({ "name": "  " }), 422, "name"),
        (json!({ "name": "nul\u{0}" }), 422, "name"),
        (json!({ "name": "x".repeat(101) }), 422, "name"),
        (json!({ "currency": "EUR" }), 422, "currency"),
    ];
    for (body, status, field) in cases {
        let (got, json) = call!(
            app,
            TestRequest::patch()
                .uri(&plan)
                .insert_header(auth.clone())
                .set_json(&body)
        );
        assert_eq!(
            (got, json["error"]["field"].as_str()),
            (status, Some(field)),
            "{body}: {json}"
        );
    }
    let (_, after) = call!(
        app,
        TestRequest::get().uri(&plan).insert_header(auth.clone())
    );
    assert_eq!(before, after, "refused patches change nothing");

    // Another plan's name is taken; an unknown plan is not found.
    let (status, json) = call!(
        app,
        TestRequest::patch()
            .uri(&plan)
            .insert_header(auth.clone())
            .set_json(json!({ "name": format!("plan-{}", h.foreign.plan_id) }))
    );
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (409, Some("plan_name_taken"))
    );
    let (status, _) = call!(
        app,
        TestRequest::patch()
            .uri(&format!("/api/v1/plans/{}", uuid::Uuid::now_v7()))
            .insert_header(auth.clone())
            .set_json(json!({ "name": "ghost" }))
    );
    assert_eq!(status, 404);

    let (status, patched) = call!(
        app,
        TestRequest::patch()
            .uri(&plan)
            .insert_header(auth.clone())
            .set_json(json!({ "name": " Ωmega 🚀 ", "failure_mode": "closed" }))
    );
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "Ωmega 🚀");
    assert_eq!(patched["failure_mode"], "closed");
    assert_eq!(patched["rate"], before["rate"]);
    let (_, audit) = call!(
        app,
        TestRequest::get()
            .uri("/api/v1/audit-log")
            .insert_header(auth)
    );
    assert_eq!(audit["items"][0]["action"], "plan.update");
    assert_eq!(
        audit["items"][0]["details"]["before"]["name"],
        before["name"]
    );
    assert_eq!(audit["items"][0]["details"]["after"]["name"], "Ωmega 🚀");
}

#[actix_web::test]
async fn a_plan_is_deleted_only_when_no_subscription_refers_to_it() {
    let h = Harness::new().await;
    let app = app!(h);
    let auth = bearer(&h.token(&h.platform));
    let create = |name: &str| {
        TestRequest::post()
            .uri("/api/v1/plans")
            .insert_header(auth.clone())
            .set_json(json!({
                "name": name,
                "rate": { "requests_per_second": 10, "burst": 20 },
                "pricing": { "currency": "USD", "base_fee_minor": 0, "model": "flat" },
            }))
    };
    let delete = |id: &Value| {
        TestRequest::delete()
            .uri(&format!("/api/v1/plans/{}", id.as_str().unwrap()))
            .insert_header(auth.clone())
    };
    let fixture = json!(h.own.plan_id);
    let (status, json) = call!(app, delete(&fixture));
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (409, Some("plan_in_use"))
    );

    // A plan whose only subscription has ended is still referred to (by its history).
    let (_, next) = call!(app, create("next"));
    let (status, _) = call!(
        app,
        TestRequest::post()
            .uri(&format!("/api/v1/tenants/{}/subscription", h.own.id))
            .insert_header(auth.clone())
            .set_json(json!({ "plan_id": next["id"] }))
    );
    assert_eq!(status, 201);
    let (status, json) = call!(app, delete(&fixture));
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (409, Some("plan_in_use"))
    );

    let (_, unused) = call!(app, create("unused"));
    let (status, _) = call!(app, delete(&unused["id"]));
    assert_eq!(status, 204);
    let (status, _) = call!(
        app,
        TestRequest::get()
            .uri(&format!("/api/v1/plans/{}", unused["id"].as_str().unwrap()))
            .insert_header(auth.clone())
    );
    assert_eq!(status, 404);
    let (status, _) = call!(app, delete(&unused["id"]));
    assert_eq!(status, 404);
    let (_, audit) = call!(
        app,
        TestRequest::get()
            .uri("/api/v1/audit-log")
            .insert_header(auth.clone())
    );
    assert_eq!(audit["items"][0]["action"], "plan.delete");
    assert_eq!(audit["items"][0]["resource_id"], unused["id"]);
    assert_eq!(audit["items"][0]["details"]["name"], "unused");
}

#[actix_web::test]
async fn subscription_history_is_newest_first_with_the_current_one_marked() {
    let h = Harness::new().await;
    let app = app!(h);
    let platform = bearer(&h.token(&h.platform));
    let mut plans = Vec::new();
    for name in ["second", "third"] {
        let (status, plan) = call!(
            app,
            TestRequest::post()
                .uri("/api/v1/plans")
                .insert_header(platform.clone())
                .set_json(json!({
                    "name": name,
                    "rate": { "requests_per_second": 10, "burst": 20 },
                    "pricing": { "currency": "USD", "base_fee_minor": 0, "model": "flat" },
                }))
        );
        assert_eq!(status, 201, "{plan}");
        let (status, _) = call!(
            app,
            TestRequest::post()
                .uri(&format!("/api/v1/tenants/{}/subscription", h.own.id))
                .insert_header(platform.clone())
                .set_json(json!({ "plan_id": plan["id"] }))
        );
        assert_eq!(status, 201);
        plans.push(plan);
    }
    // A subscription starting tomorrow is listed first but is not current.
    let future = uuid::Uuid::now_v7();
    h.db.client()
        .await
        .execute(
            "INSERT INTO subscriptions (id, tenant_id, plan_id, starts_at) \
             VALUES ($1, $2, $3, now() + interval '1 day')",
            &[&future, &h.own.id, &h.own.plan_id],
        )
        .await
        .unwrap();

    let viewer = bearer(&h.token(&h.own.viewer));
    let uri = format!("/api/v1/tenants/{}/subscriptions", h.own.id);
    let (status, history) = call!(
        app,
        TestRequest::get().uri(&uri).insert_header(viewer.clone())
    );
    assert_eq!(status, 200, "{history}");
    let items = history["items"].as_array().unwrap();
    let summary: Vec<Value> = items
        .iter()
        .map(|s| json!([s["plan_id"], s["current"], s["ends_at"].is_string()]))
        .collect();
    assert_eq!(
        summary,
        [
            json!([h.own.plan_id, false, false]),
            json!([plans[1]["id"], true, false]),
            json!([plans[0]["id"], false, true]),
            json!([h.own.plan_id, false, true]),
        ]
    );
    assert_eq!(items[0]["id"], json!(future));
    assert_eq!(items[1]["plan_name"], "third");
    assert_eq!(
        items[2]["ends_at"], items[1]["starts_at"],
        "a switch leaves no gap"
    );

    let (_, first) = call!(
        app,
        TestRequest::get()
            .uri(&format!("{uri}?limit=3"))
            .insert_header(viewer.clone())
    );
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, rest) = call!(
        app,
        TestRequest::get()
            .uri(&format!("{uri}?limit=3&cursor={cursor}"))
            .insert_header(viewer.clone())
    );
    assert_eq!(rest["items"][0]["id"], items[3]["id"]);
    assert!(rest.get("next_cursor").is_none());

    // The other tenant's history is its own: just the fixture subscription.
    let (_, foreign) = call!(
        app,
        TestRequest::get()
            .uri(&format!("/api/v1/tenants/{}/subscriptions", h.foreign.id))
            .insert_header(platform)
    );
    assert_eq!(foreign["items"].as_array().unwrap().len(), 1);
    assert_eq!(foreign["items"][0]["current"], true);
    for bad in ["limit=-1", "limit=%F0%9F%9A%80", "cursor=abc"] {
        let (status, body) = call!(
            app,
            TestRequest::get()
                .uri(&format!("{uri}?{bad}"))
                .insert_header(viewer.clone())
        );
        assert!((400..500).contains(&status), "{bad}: {status}");
        assert!(body["error"]["code"].is_string(), "{bad}: {body}");
    }
}
