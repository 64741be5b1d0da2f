//! The control API in-process against the real PostgreSQL: auth, keys, audit, bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix_web::test::TestRequest;
use serde_json::{Value, json};
use support::{Harness, PASSWORD};
use tollgate_control_api::config::ThrottlePolicy;
use tollgate_core::{KeyHash, KeyPepper, ParsedApiKey};

fn login(email: &str, password: &str) -> TestRequest {
    TestRequest::post()
        .uri("/api/v1/auth/login")
        .peer_addr("10.0.0.1:1234".parse().unwrap())
        .set_json(json!({ "email": email, "password": password }))
}

#[actix_web::test]
async fn login_refresh_and_me_round_trip() {
    let h = Harness::new().await;
    let app = app!(h);
    let (status, tokens) = call!(app, login(&h.own.admin.email.to_uppercase(), PASSWORD));
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["expires_in"], 900);
    let access = tokens["access_token"].as_str().unwrap();
    let (status, me) = call!(
        app,
        TestRequest::get()
            .uri("/api/v1/me")
            .insert_header(("Authorization", format!("Bearer {access}")))
    );
    assert_eq!(status, 200);
    assert_eq!(me["role"], "tenant_admin");
    assert_eq!(me["tenant_id"], h.own.id.to_string());

    // A refresh token is not an access token, and vice versa.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, _) = call!(
        app,
        TestRequest::get()
            .uri("/api/v1/me")
            .insert_header(("Authorization", format!("Bearer {refresh}")))
    );
    assert_eq!(status, 401);
    let (status, renewed) = call!(
        app,
        TestRequest::post()
            .uri("/api/v1/auth/refresh")
            .set_json(json!({ "refresh_token": refresh }))
    );
    assert_eq!(status, 200, "{renewed}");
    let (status, _) = call!(
        app,
        TestRequest::post()
            .uri("/api/v1/auth/refresh")
            .set_json(json!({ "refresh_token": access }))
    );
    assert_eq!(status, 401);

    // A disabled user can no longer refresh.
    h.db.client()
        .await
        .execute(
            "UPDATE users SET disabled_at = now() WHERE id = $1",
            &[&h.own.admin.user_id],
        )
        .await
        .unwrap();
    let (status, body) = call!(
        app,
        TestRequest::post()
            .uri("/api/v1/auth/refresh")
            .set_json(json!({ "refresh_token": renewed["refresh_token"] }))
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
}

#[actix_web::test]
async fn wrong_passwords_and_unknown_emails_get_the_same_answer() {
    let h = Harness::new().await;
    let app = app!(h);
    let (s1, wrong) = call!(app, login(&h.own.admin.email, "not the password"));
    let (s2, unknown) = call!(app, login("nobody@example.com", PASSWORD));
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"]["code"], "invalid_credentials");
}

#[actix_web::test]
async fn repeated_failures_lock_the_account_with_retry_after() {
    let h = Harness::with_throttle(ThrottlePolicy {
        account_failures: 3,
        account_window: Duration::from_secs(120),
        ip_attempts: 100,
        ip_window: Duration::from_secs(60),
    })
    .await;
    let app = app!(h);
    for _ in 0..3 {
        assert_eq!(
            call!(app, login(&h.own.viewer.email, "wrong password!")).0,
            401
        );
    }
    // Even the right password waits now.
    let response =
        actix_web::test::call_service(&app, login(&h.own.viewer.email, PASSWORD).to_request())
            .await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response
        .headers()
        .get("Retry-After")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((110..=120).contains(&retry_after), "{retry_after}");
    // Another account is unaffected.
    assert_eq!(call!(app, login(&h.own.admin.email, PASSWORD)).0, 200);
}

#[actix_web::test]
async fn logins_from_one_ip_are_limited_across_accounts() {
    let h = Harness::with_throttle(ThrottlePolicy {
        ip_attempts: 2,
        ..ThrottlePolicy::default()
    })
    .await;
    let app = app!(h);
    assert_eq!(call!(app, login("a@example.com", "x")).0, 401);
    assert_eq!(call!(app, login("b@example.com", "x")).0, 401);
    let (status, body) = call!(app, login(&h.own.admin.email, PASSWORD));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("too_many_requests"))
    );
}

#[actix_web::test]
async fn a_created_key_is_shown_once_verifies_and_is_audited() {
    let h = Harness::new().await;
    let app = app!(h);
    let token = h.token(&h.own.admin);
    let auth = ("Authorization", format!("Bearer {token}"));
    let base = format!("/api/v1/tenants/{}/api-keys", h.own.id);
    let (status, created) = call!(
        app,
        TestRequest::post()
            .uri(&base)
            .insert_header(auth.clone())
            .set_json(json!({ "name": "ci", "scopes": ["read"] }))
    );
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap();
    let parsed = ParsedApiKey::parse(secret).unwrap();
    let stored: Vec<u8> =
        h.db.client()
            .await
            .query_one(
                "SELECT secret_hmac FROM api_keys WHERE id = $1",
                &[&parsed.id().as_str()],
            )
            .await
            .unwrap()
            .get(0);
    assert!(parsed.verify(
        &KeyPepper::from_hex(support::PEPPER_HEX).unwrap(),
        &KeyHash::from_slice(&stored).unwrap()
    ));

    let (status, list) = call!(
        app,
        TestRequest::get().uri(&base).insert_header(auth.clone())
    );
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(!text.contains(secret), "lists never show the secret");
    let listed: Vec<&Value> = list["items"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 2, "the fixture key and the new one");
    assert_eq!(
        listed[0]["display_prefix"],
        created["key"]["display_prefix"]
    );
    assert_eq!(listed[0]["status"], "active");

    // Pagination: one per page, the cursor leads to the other key, then ends.
    let (_, first) = call!(
        app,
        TestRequest::get()
            .uri(&format!("{base}?limit=1"))
            .insert_header(auth.clone())
    );
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = call!(
        app,
        TestRequest::get()
            .uri(&format!("{base}?limit=1&cursor={cursor}"))
            .insert_header(auth.clone())
    );
    assert_eq!(second["items"][0]["id"], h.own.key_id);
    assert!(second.get("next_cursor").is_none());

    let (status, audit) = call!(
        app,
        TestRequest::get()
            .uri("/api/v1/audit-log")
            .insert_header(auth.clone())
    );
    assert_eq!(status, 200);
    assert_eq!(audit["items"][0]["action"], "api_key.create");
    assert_eq!(audit["items"][0]["actor"], h.own.admin.email);
    assert!(!audit.to_string().contains(secret));
}

#[actix_web::test]
async fn revoking_and_rotating_keys() {
    let h = Harness::new().await;
    let app = app!(h);
    let auth = ("Authorization", format!("Bearer {}", h.token(&h.own.admin)));
    let key = format!("/api/v1/tenants/{}/api-keys/{}", h.own.id, h.own.key_id);
    let (status, rotated) = call!(
        app,
        TestRequest::post()
            .uri(&format!("{key}/rotate"))
            .insert_header(auth.clone())
            .set_json(json!({ "overlap_seconds": 60 }))
    );
    assert_eq!(status, 201, "{rotated}");
    assert_ne!(rotated["key"]["id"], h.own.key_id);
    let expires = rotated["previous"]["expires_at"].as_str().unwrap();
    let expires =
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::seconds(50) && left <= time::Duration::seconds(60),
        "{left}"
    );
    assert_eq!(
        rotated["previous"]["status"], "active",
        "still works during the overlap"
    );

    let (status, revoked) = call!(
        app,
        TestRequest::post()
            .uri(&format!("{key}/revoke"))
            .insert_header(auth.clone())
    );
    assert_eq!((status, revoked["status"].as_str()), (200, Some("revoked")));
    let (status, body) = call!(
        app,
        TestRequest::post()
            .uri(&format!("{key}/rotate"))
            .insert_header(auth.clone())
            .set_json(json!({}))
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("key_revoked"))
    );
    let (status, body) = call!(
        app,
        TestRequest::post()
            .uri(&format!("{key}/rotate"))
            .insert_header(auth.clone())
            .set_json(json!({ "overlap_seconds": 604801 }))
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("overlap_seconds"))
    );
}

#[actix_web::test]
async fn bad_input_gets_4xx_with_a_code_never_5xx() {
    let h = Harness::new().await;
    let app = app!(h);
    let auth = ("Authorization", format!("Bearer {}", h.token(&h.platform)));
    let post = |body: &str| {
        TestRequest::post()
            .uri("/api/v1/tenants")
            .insert_header(auth.clone())
            .insert_header(("Content-Type", "application/json"))
            .set_payload(body.to_owned())
    };
    let cases: Vec<(String, u16, &str, Option<&str>)> = vec![
        (
            r#"{"slug": 5, "name": "x"}"#.into(),
            422,
            "invalid_field",
            Some("slug"),
        ),
        (
            r#"{"name": "x"}"#.into(),
            422,
            "invalid_field",
            Some("slug"),
        ),
        (
            r#"{"slug": "a'; DROP TABLE tenants;--", "name": "x"}"#.into(),
            422,
            "invalid_field",
            Some("slug"),
        ),
        (
            r#"{"slug": "ok", "name": "nul\u0000byte"}"#.into(),
            422,
            "invalid_field",
            Some("name"),
        ),
        (
            r#"{"slug": "ok", "name": "x", "extra": 1}"#.into(),
            422,
            "invalid_field",
            Some("extra"),
        ),
        (r#"{"slug": "#.into(), 400, "invalid_json", None),
        ("[1,2]".into(), 422, "invalid_field", None),
        (
            format!(r#"{{"slug": "ok", "name": "{}"}}"#, "x".repeat(20_000)),
            413,
            "payload_too_large",
            None,
        ),
    ];
    for (body, status, code, field) in cases {
        let (got, json) = call!(app, post(&body));
        assert_eq!(got, status, "{body:.80}: {json}");
        assert_eq!(json["error"]["code"], code, "{body:.80}");
        if field.is_some() {
            assert_eq!(json["error"]["field"].as_str(), field, "{body:.80}");
        }
    }
    let (status, json) = call!(
        app,
        TestRequest::post()
            .uri("/api/v1/tenants")
            .insert_header(auth.clone())
            .set_payload("slug=x")
    );
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    for uri in ["/api/v1/tenants?limit=abc", "/api/v1/tenants?limit=1000"] {
        let (status, json) = call!(app, TestRequest::get().uri(uri).insert_header(auth.clone()));
        assert_eq!(
            (status, json["error"]["field"].as_str()),
            (422, Some("limit")),
            "{uri}"
        );
    }
    let (status, json) = call!(
        app,
        TestRequest::get()
            .uri("/api/v1/tenants?cursor=zz")
            .insert_header(auth.clone())
    );
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (400, Some("invalid_cursor"))
    );
    for uri in [
        "/api/v1/tenants/not-a-uuid",
        "/api/v1/nothing-here",
        "/api/v1/tenants/%00",
    ] {
        let (status, json) = call!(app, TestRequest::get().uri(uri).insert_header(auth.clone()));
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{uri}"
        );
    }
    let (status, json) = call!(
        app,
        TestRequest::delete()
            .uri("/api/v1/tenants")
            .insert_header(auth.clone())
    );
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    // Odd but valid unicode is stored as given.
    let (status, json) = call!(
        app,
        post(r#"{"slug": "unicode", "name": "Ωmega 🚀 \u202e"}"#)
    );
    assert_eq!(status, 201, "{json}");
    let (status, json) = call!(app, post(r#"{"slug": "unicode", "name": "again"}"#));
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (409, Some("slug_taken"))
    );
}

#[actix_web::test]
async fn health_ready_metrics_and_openapi_answer() {
    let h = Harness::new().await;
    let app = app!(h);
    assert_eq!(call!(app, TestRequest::get().uri("/health")).0, 200);
    assert_eq!(call!(app, TestRequest::get().uri("/ready")).0, 200);
    let response =
        actix_web::test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
    let body = actix_web::test::read_body(response).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains("tollgate_control_api_http_requests_total"),
        "{text}"
    );
    let (status, doc) = call!(app, TestRequest::get().uri("/api/v1/openapi.json"));
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
}

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
