//! The control API in-process against the real PostgreSQL: auth, keys, audit, bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

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
        (401, Some("invalid_refresh_token"))
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
    // Metrics are not on the public port: only the admin listener serves them.
    let (status, body) = call!(app, TestRequest::get().uri("/metrics"));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let admin =
        actix_web::test::init_service(tollgate_control_api::ops::admin_app(h.state.clone())).await;
    assert_eq!(call!(admin, TestRequest::get().uri("/ready")).0, 200);
    let scrape = |accept: Option<&'static str>| {
        let mut req = TestRequest::get().uri("/metrics");
        if let Some(accept) = accept {
            req = req.insert_header(("Accept", accept));
        }
        req.to_request()
    };
    let response = actix_web::test::call_service(&admin, scrape(None)).await;
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(actix_web::test::read_body(response).await.to_vec()).unwrap();
    assert!(
        text.contains("# HELP tollgate_control_api_http_requests_total "),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    tollgate_test_support::promtool::check_metrics(&text);
    let response = actix_web::test::call_service(
        &admin,
        scrape(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )),
    )
    .await;
    assert!(
        response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(actix_web::test::read_body(response).await.to_vec()).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let (status, doc) = call!(app, TestRequest::get().uri("/api/v1/openapi.json"));
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
}
