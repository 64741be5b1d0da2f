//! The proxy's configuration through the API against the real PostgreSQL: routes, JWT
//! issuers, plans and subscriptions; validation, conflicts and the audit trail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use actix_web::test::TestRequest;
use serde_json::{Value, json};
use support::Harness;

fn authed(req: TestRequest, token: &str) -> TestRequest {
    req.insert_header(("Authorization", format!("Bearer {token}")))
}

fn error_of(body: &Value) -> (Option<&str>, Option<&str>) {
    (
        body["error"]["code"].as_str(),
        body["error"]["field"].as_str(),
    )
}

async fn audit_actions(h: &Harness, resource_type: &str) -> Vec<String> {
    h.db.client()
        .await
        .query(
            "SELECT action FROM audit_log WHERE resource_type = $1 ORDER BY at, id",
            &[&resource_type],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[actix_web::test]
async fn routes_are_created_listed_updated_and_deleted_with_an_audit_trail() {
    let h = Harness::new().await;
    let app = app!(h);
    let admin = h.token(&h.own.admin);
    let base = format!("/api/v1/tenants/{}/routes", h.own.id);

    let (status, created) = call!(
        app,
        authed(TestRequest::post().uri(&base), &admin).set_json(json!({
            "name": "orders",
            "host": "API.example.com",
            "path_prefix": "/orders",
            "strip_prefix": true,
            "upstreams": ["127.0.0.1:8080", "http://orders.internal:80"],
            "retries": 0,
            "required_scope": "orders:read",
        }))
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["host"], "api.example.com");
    assert_eq!(created["connect_timeout_ms"], 2000);
    assert_eq!(created["max_body_bytes"], 10 * 1024 * 1024);
    let id = created["id"].as_str().unwrap();

    // The same host and prefix again is a conflict naming the prefix.
    let (status, body) = call!(
        app,
        authed(TestRequest::post().uri(&base), &admin).set_json(json!({
            "host": "api.example.com", "path_prefix": "/orders", "upstreams": ["a:1"],
        }))
    );
    assert_eq!(
        (status, error_of(&body)),
        (409, (Some("route_exists"), Some("path_prefix")))
    );

    // A partial update keeps what it does not mention; null clears the host.
    let (status, updated) = call!(
        app,
        authed(TestRequest::patch().uri(&format!("{base}/{id}")), &admin)
            .set_json(json!({ "host": null, "retries": 3 }))
    );
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["host"], Value::Null);
    assert_eq!(updated["retries"], 3);
    assert_eq!(updated["required_scope"], "orders:read");
    assert_eq!(updated["upstreams"].as_array().unwrap().len(), 2);

    // Viewers read, page by page; the fixture route is the oldest.
    let viewer = h.token(&h.own.viewer);
    let (status, page) = call!(
        app,
        authed(TestRequest::get().uri(&format!("{base}?limit=1")), &viewer)
    );
    assert_eq!(status, 200);
    assert_eq!(page["items"][0]["id"], id);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = call!(
        app,
        authed(
            TestRequest::get().uri(&format!("{base}?limit=1&cursor={cursor}")),
            &viewer
        )
    );
    assert_eq!(rest["items"][0]["id"], h.own.route_id.to_string());
    assert!(rest.get("next_cursor").is_none());

    let (status, _) = call!(
        app,
        authed(TestRequest::delete().uri(&format!("{base}/{id}")), &admin)
    );
    assert_eq!(status, 204);
    let (status, _) = call!(
        app,
        authed(TestRequest::get().uri(&format!("{base}/{id}")), &admin)
    );
    assert_eq!(status, 404);
    assert_eq!(
        audit_actions(&h, "route").await,
        ["route.create", "route.update", "route.delete"]
    );
}

#[actix_web::test]
async fn routes_to_internal_networks_get_422_naming_the_upstream() {
    // The harness allows 127.0.0.1/32 only (TOLLGATE_UPSTREAM_ALLOW_NETWORKS).
    let h = Harness::new().await;
    let app = app!(h);
    let admin = h.token(&h.own.admin);
    let base = format!("/api/v1/tenants/{}/routes", h.own.id);
    for internal in [
        "127.0.0.2:9101",
        "[::1]:58081",
        "http://10.0.0.7:80",
        "192.168.1.1:80",
        "169.254.169.254:80",
        "0.0.0.0:9101",
    ] {
        let body = json!({ "path_prefix": "/x", "upstreams": ["api.example.com:80", internal] });
        let (status, answer) = call!(
            app,
            authed(TestRequest::post().uri(&base), &admin).set_json(&body)
        );
        assert_eq!(
            (status, error_of(&answer)),
            (422, (Some("invalid_field"), Some("upstreams[1]"))),
            "{internal} → {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(internal), "{message}");
    }
    let route = format!("{base}/{}", h.own.route_id);
    let (status, answer) = call!(
        app,
        authed(TestRequest::patch().uri(&route), &admin)
            .set_json(json!({ "upstreams": ["localhost.:1", "127.0.0.1:8080"] }))
    );
    // `localhost` is loopback, judged as 127.0.0.1: allowed here, as the allowed address is.
    assert_eq!(status, 200, "{answer}");
}

#[actix_web::test]
async fn https_routes_take_tls_material_whose_key_is_never_returned() {
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nBAUG\n-----END PRIVATE KEY-----\n";
    let h = Harness::new().await;
    let app = app!(h);
    let admin = h.token(&h.own.admin);
    let base = format!("/api/v1/tenants/{}/routes", h.own.id);
    let (status, route) = call!(
        app,
        authed(TestRequest::post().uri(&base), &admin).set_json(json!({
            "path_prefix": "/secure",
            "upstreams": ["https://api.example.com/v2", "https://93.184.216.34:8443"],
            "tls_ca_pem": CERT,
            "tls_client_cert_pem": CERT,
            "tls_client_key_pem": KEY,
        }))
    );
    assert_eq!(status, 201, "{route}");
    assert_eq!(route["tls_ca_pem"], CERT);
    assert_eq!(route["tls_client_key_set"], true);
    assert!(
        !route.to_string().contains("BAUG"),
        "the key came back: {route}"
    );
    let id = route["id"].as_str().unwrap();
    // A change elsewhere keeps the stored key; clearing certificate and key together works.
    let (status, kept) = call!(
        app,
        authed(TestRequest::patch().uri(&format!("{base}/{id}")), &admin)
            .set_json(json!({ "name": "secure" }))
    );
    assert_eq!(
        (status, &kept["tls_client_key_set"]),
        (200, &json!(true)),
        "{kept}"
    );
    let (status, cleared) = call!(
        app,
        authed(TestRequest::patch().uri(&format!("{base}/{id}")), &admin)
            .set_json(json!({ "tls_client_cert_pem": null, "tls_client_key_pem": null }))
    );
    assert_eq!(
        (status, &cleared["tls_client_key_set"]),
        (200, &json!(false)),
        "{cleared}"
    );
    for (body, field) in [
        (json!({ "tls_ca_pem": "not pem" }), "tls_ca_pem"),
        (json!({ "tls_ca_pem": KEY }), "tls_ca_pem"),
        (json!({ "tls_client_cert_pem": CERT }), "tls_client_key_pem"),
        (
            json!({ "tls_client_cert_pem": CERT, "tls_client_key_pem": CERT }),
            "tls_client_key_pem",
        ),
        (
            json!({ "upstreams": ["https://api.example.com/../admin"] }),
            "upstreams[0]",
        ),
    ] {
        let (status, answer) = call!(
            app,
            authed(TestRequest::patch().uri(&format!("{base}/{id}")), &admin).set_json(&body)
        );
        assert_eq!(
            (status, error_of(&answer)),
            (422, (Some("invalid_field"), Some(field))),
            "{body} → {answer}"
        );
    }
}

#[actix_web::test]
async fn bad_routes_get_422_naming_the_field_and_change_nothing() {
    let h = Harness::new().await;
    let app = app!(h);
    let admin = h.token(&h.own.admin);
    let base = format!("/api/v1/tenants/{}/routes", h.own.id);
    let valid = || json!({ "path_prefix": "/x", "upstreams": ["127.0.0.1:8080"] });
    let with = |field: &str, value: Value| {
        let mut body = valid();
        body[field] = value;
        body
    };
    let cases = [
        (with("path_prefix", json!("x")), "path_prefix"),
        (with("upstreams", json!([])), "upstreams"),
        (with("upstreams", json!(["a:1", "no-port"])), "upstreams[1]"),
        (
            with("upstreams", json!(["ftp://secure:21"])),
            "upstreams[0]",
        ),
        (with("upstreams", json!(vec!["a:1"; 65])), "upstreams"),
        (with("retries", json!(6)), "retries"),
        (with("retries", json!(-1)), "retries"),
        (with("connect_timeout_ms", json!(0)), "connect_timeout_ms"),
        (with("read_timeout_ms", json!(600_001)), "read_timeout_ms"),
        (with("max_body_bytes", json!("big")), "max_body_bytes"),
        (with("host", json!("bad host")), "host"),
        (with("required_scope", json!("UPPER")), "required_scope"),
        (with("name", json!("a\u{0}b")), "name"),
        (with("surprise", json!(1)), "surprise"),
        (json!({ "upstreams": ["a:1"] }), "path_prefix"),
    ];
    for (body, field) in cases {
        let (status, answer) = call!(
            app,
            authed(TestRequest::post().uri(&base), &admin).set_json(&body)
        );
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (422, Some(field)),
            "{body} → {answer}"
        );
    }
    let route = format!("{base}/{}", h.own.route_id);
    let (status, answer) = call!(
        app,
        authed(TestRequest::patch().uri(&route), &admin).set_json(json!({ "upstreams": ["x"] }))
    );
    assert_eq!(
        (status, error_of(&answer)),
        (422, (Some("invalid_field"), Some("upstreams[0]")))
    );
    let (status, _) = call!(
        app,
        authed(
            TestRequest::patch().uri(&format!("{base}/not-a-uuid")),
            &admin
        )
        .set_json(json!({}))
    );
    assert_eq!(status, 404);
    assert!(audit_actions(&h, "route").await.is_empty());
}

/// RFC 8410 §10.1.
const ED25519_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
    MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
    -----END PUBLIC KEY-----\n";

#[actix_web::test]
async fn jwt_issuers_keep_their_key_material_write_only_and_unique() {
    let h = Harness::new().await;
    let app = app!(h);
    let admin = h.token(&h.own.admin);
    let base = format!("/api/v1/tenants/{}/jwt-issuers", h.own.id);
    let secret = "a shared secret of at least thirty-two bytes";

    let (status, created) = call!(
        app,
        authed(TestRequest::post().uri(&base), &admin).set_json(json!({
            "issuer": "https://auth.acme.example/",
            "audience": "orders",
            "algorithm": "HS256",
            "key_material": secret,
        }))
    );
    assert_eq!(status, 201, "{created}");
    assert!(created.get("key_material").is_none());
    let (status, ed) = call!(
        app,
        authed(TestRequest::post().uri(&base), &admin).set_json(json!({
            "issuer": "https://auth.acme.example/",
            "audience": "billing",
            "algorithm": "EdDSA",
            "key_material": ED25519_PEM,
        }))
    );
    assert_eq!(status, 201, "{ed}");

    // (issuer, audience) is unique within a tenant only: another tenant registers the same
    // pair as if it were free (nothing tells it the pair is in use)...
    let same_pair = |key: &str| {
        json!({
            "issuer": "https://auth.acme.example/",
            "audience": "orders",
            "algorithm": "HS256",
            "key_material": key,
        })
    };
    let (status, body) = call!(
        app,
        authed(
            TestRequest::post().uri(&format!("/api/v1/tenants/{}/jwt-issuers", h.foreign.id)),
            &h.token(&h.foreign.admin)
        )
        .set_json(same_pair("another secret that is long enough!!"))
    );
    assert_eq!(status, 201, "{body}");
    // ...while the same tenant registering it twice is told so.
    let (status, body) = call!(
        app,
        authed(TestRequest::post().uri(&base), &admin)
            .set_json(same_pair("yet another secret that is long enough"))
    );
    assert_eq!(
        (status, error_of(&body)),
        (409, (Some("issuer_exists"), Some("issuer")))
    );

    let (status, page) = call!(app, authed(TestRequest::get().uri(&base), &admin));
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert!(!page.to_string().contains(secret));
    assert!(!page.to_string().contains("MCowBQYDK2Vw"));

    let bad = [
        (
            json!({ "algorithm": "HS256", "key_material": "short" }),
            "key_material",
        ),
        (
            json!({ "algorithm": "RS256", "key_material": ED25519_PEM }),
            "key_material",
        ),
        (
            json!({ "algorithm": "ES256", "key_material": "x".repeat(64) }),
            "key_material",
        ),
        (
            json!({ "algorithm": "none", "key_material": secret }),
            "algorithm",
        ),
        (
            json!({ "algorithm": "HS256", "key_material": secret, "issuer": "" }),
            "issuer",
        ),
        (
            json!({ "algorithm": "HS256", "key_material": secret, "audience": "a\nb" }),
            "audience",
        ),
    ];
    for (overrides, field) in bad {
        let mut body = json!({ "issuer": "https://x.example", "audience": "a" });
        for (k, v) in overrides.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = call!(
            app,
            authed(TestRequest::post().uri(&base), &admin).set_json(&body)
        );
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (422, Some(field)),
            "{overrides} → {answer}"
        );
        assert!(!answer.to_string().contains(secret));
    }

    let id = created["id"].as_str().unwrap();
    let (status, _) = call!(
        app,
        authed(TestRequest::delete().uri(&format!("{base}/{id}")), &admin)
    );
    assert_eq!(status, 204);
    let (status, _) = call!(
        app,
        authed(TestRequest::delete().uri(&format!("{base}/{id}")), &admin)
    );
    assert_eq!(status, 404);
    assert_eq!(
        audit_actions(&h, "jwt_issuer").await,
        [
            "jwt_issuer.create",
            "jwt_issuer.create",
            // The other tenant's registration of the same pair.
            "jwt_issuer.create",
            "jwt_issuer.delete"
        ]
    );
    let audit: Vec<Value> =
        h.db.client()
            .await
            .query(
                "SELECT details FROM audit_log WHERE resource_type = 'jwt_issuer'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
    assert!(!format!("{audit:?}").contains(secret));
}

fn plan_body(name: &str) -> Value {
    json!({
        "name": name,
        "rate": { "requests_per_second": 50, "burst": 100 },
        "quota": { "included_requests": 100000, "cap": "soft" },
        "failure_mode": "closed",
        "pricing": {
            "currency": "EUR",
            "base_fee_minor": 4900,
            "model": "graduated",
            "tiers": [
                { "up_to": 1000, "unit_price": "0.01" },
                { "up_to": null, "unit_price": "0.005" },
            ],
        },
    })
}

#[actix_web::test]
async fn plans_are_validated_naming_the_field_and_names_are_unique() {
    let h = Harness::new().await;
    let app = app!(h);
    let platform = h.token(&h.platform);
    let (status, plan) = call!(
        app,
        authed(TestRequest::post().uri("/api/v1/plans"), &platform).set_json(plan_body("Pro"))
    );
    assert_eq!(status, 201, "{plan}");
    assert_eq!(plan["quota"]["cap"], "soft");
    assert_eq!(plan["pricing"]["tiers"][1]["unit_price"], "0.005");
    let id = plan["id"].as_str().unwrap();
    let (status, read) = call!(
        app,
        authed(
            TestRequest::get().uri(&format!("/api/v1/plans/{id}")),
            &platform
        )
    );
    assert_eq!((status, &read), (200, &plan));

    let (status, body) = call!(
        app,
        authed(TestRequest::post().uri("/api/v1/plans"), &platform).set_json(plan_body(" Pro "))
    );
    assert_eq!(
        (status, error_of(&body)),
        (409, (Some("plan_name_taken"), Some("name")))
    );

    let mut overlapping = plan_body("Overlap");
    overlapping["pricing"]["tiers"] = json!([
        { "up_to": 1000, "unit_price": "0.01" },
        { "up_to": 500, "unit_price": "0.01" },
        { "up_to": null, "unit_price": "0.01" },
    ]);
    let mut zero_rate = plan_body("Zero");
    zero_rate["rate"]["requests_per_second"] = json!(0);
    let mut huge_quota = plan_body("Huge");
    huge_quota["quota"]["included_requests"] = json!(u64::MAX);
    let mut bad_cap = plan_body("Cap");
    bad_cap["quota"]["cap"] = json!("sometimes");
    let mut bad_price = plan_body("Price");
    bad_price["pricing"]["tiers"][0]["unit_price"] = json!(0.01);
    for (body, field) in [
        (overlapping, "pricing.tiers[1].up_to"),
        (zero_rate, "rate.requests_per_second"),
        (huge_quota, "quota.included_requests"),
        (bad_cap, "quota.cap"),
        (plan_body(""), "name"),
    ] {
        let (status, answer) = call!(
            app,
            authed(TestRequest::post().uri("/api/v1/plans"), &platform).set_json(&body)
        );
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (422, Some(field)),
            "{answer}"
        );
    }
    // A price given as a JSON number (not a decimal string) is refused, never a 5xx.
    let (status, answer) = call!(
        app,
        authed(TestRequest::post().uri("/api/v1/plans"), &platform).set_json(&bad_price)
    );
    assert_eq!(status, 422, "{answer}");
    assert_eq!(audit_actions(&h, "plan").await, ["plan.create"]);
}

#[actix_web::test]
async fn switching_plans_ends_the_current_subscription_in_one_step() {
    let h = Harness::new().await;
    let app = app!(h);
    let platform = h.token(&h.platform);
    let (_, plan) = call!(
        app,
        authed(TestRequest::post().uri("/api/v1/plans"), &platform).set_json(plan_body("Pro"))
    );
    let url = format!("/api/v1/tenants/{}/subscription", h.own.id);
    let viewer = h.token(&h.own.viewer);
    let (status, before) = call!(app, authed(TestRequest::get().uri(&url), &viewer));
    assert_eq!(status, 200);
    assert_eq!(before["plan_id"], h.own.plan_id.to_string());

    let (status, switched) = call!(
        app,
        authed(TestRequest::post().uri(&url), &platform).set_json(json!({ "plan_id": plan["id"] }))
    );
    assert_eq!(status, 201, "{switched}");
    assert_eq!(switched["plan_name"], "Pro");
    assert!(switched.get("ends_at").is_none_or(Value::is_null));
    let (_, now) = call!(app, authed(TestRequest::get().uri(&url), &viewer));
    assert_eq!(now["id"], switched["id"]);

    // The old subscription ended exactly when the new one started; only one is open.
    let client = h.db.client().await;
    let rows = client
        .query(
            "SELECT plan_id, starts_at, ends_at FROM subscriptions WHERE tenant_id = $1 \
             ORDER BY starts_at",
            &[&h.own.id],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let old_end: Option<time::OffsetDateTime> = rows[0].get(2);
    let new_start: time::OffsetDateTime = rows[1].get(1);
    assert_eq!(old_end, Some(new_start));
    assert!(rows[1].get::<_, Option<time::OffsetDateTime>>(2).is_none());

    let (status, body) = call!(
        app,
        authed(TestRequest::post().uri(&url), &platform)
            .set_json(json!({ "plan_id": uuid::Uuid::now_v7() }))
    );
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("plan_id")))
    );
    assert_eq!(
        audit_actions(&h, "subscription").await,
        ["subscription.switch"]
    );

    // The foreign tenant's viewer cannot see this tenant's subscription.
    let (status, _) = call!(
        app,
        authed(TestRequest::get().uri(&url), &h.token(&h.foreign.viewer))
    );
    assert_eq!(status, 404);
}
