//! The isolation matrix: every endpoint of the route table × each role × own and foreign
//! tenant → the expected status. An endpoint without an entry fails the test, and so does an
//! endpoint missing from (or extra in) the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use actix_web::http::Method;
use actix_web::test::TestRequest;
use serde_json::{Value, json};
use support::{Harness, TenantFixture};
use tollgate_control_api::app::Access;
use tollgate_control_api::auth::Principal;
use tollgate_control_api::{Endpoint, api_endpoints};

/// Expected statuses: [platform admin, tenant admin, tenant viewer] for the caller's own
/// tenant, then the same for a foreign tenant.
struct Expectation {
    own: [u16; 3],
    foreign: [u16; 3],
    body: fn() -> Value,
}

fn no_body() -> Value {
    Value::Null
}

fn expectation(method: &Method, path: &str) -> Option<Expectation> {
    let e = |own, foreign, body| Some(Expectation { own, foreign, body });
    let reads = [200, 200, 200];
    let foreign_reads = [200, 404, 404];
    match (method.as_str(), path) {
        ("GET", "/api/v1/me") => e(reads, reads, no_body),
        // The caller's own session and password: no tenant in the path.
        ("POST", "/api/v1/auth/logout") => e([204; 3], [204; 3], no_body),
        ("POST", "/api/v1/me/password") => e(
            [204; 3],
            [204; 3],
            || json!({ "current_password": support::PASSWORD, "new_password": support::PASSWORD }),
        ),
        ("GET", "/api/v1/tenants") => e([200, 403, 403], [200, 403, 403], no_body),
        ("POST", "/api/v1/tenants") => e(
            [201, 403, 403],
            [201, 403, 403],
            || json!({ "slug": format!("new-{}", uuid::Uuid::now_v7().simple()), "name": "New" }),
        ),
        ("GET", "/api/v1/tenants/{tenant_id}") => e(reads, foreign_reads, no_body),
        ("PATCH", "/api/v1/tenants/{tenant_id}") => e(
            [200, 200, 403],
            [200, 404, 404],
            || json!({ "billing_email": "billing@example.com" }),
        ),
        (
            "POST",
            "/api/v1/tenants/{tenant_id}/suspend" | "/api/v1/tenants/{tenant_id}/reactivate",
        ) => e([200, 403, 403], [200, 404, 404], no_body),
        (
            "GET",
            "/api/v1/tenants/{tenant_id}/api-keys"
            | "/api/v1/tenants/{tenant_id}/api-keys/{key_id}",
        ) => e(reads, foreign_reads, no_body),
        ("POST", "/api/v1/tenants/{tenant_id}/api-keys") => {
            e([201, 201, 403], [201, 404, 404], || json!({ "name": "m" }))
        }
        ("POST", "/api/v1/tenants/{tenant_id}/api-keys/{key_id}/revoke") => {
            e([200, 200, 403], [200, 404, 404], no_body)
        }
        ("POST", "/api/v1/tenants/{tenant_id}/api-keys/{key_id}/rotate") => {
            e([201, 201, 403], [201, 404, 404], || json!({}))
        }
        (
            "GET",
            "/api/v1/tenants/{tenant_id}/users" | "/api/v1/tenants/{tenant_id}/users/{user_id}",
        ) => e(reads, foreign_reads, no_body),
        ("POST", "/api/v1/tenants/{tenant_id}/users") => {
            e([201, 201, 403], [201, 404, 404], || {
                json!({
                    "email": format!("{}@example.com", uuid::Uuid::now_v7().simple()),
                    "role": "tenant_viewer",
                    "password": "another long password",
                })
            })
        }
        ("POST", "/api/v1/tenants/{tenant_id}/users/{user_id}/disable") => {
            e([200, 200, 403], [200, 404, 404], no_body)
        }
        (
            "GET",
            "/api/v1/tenants/{tenant_id}/routes" | "/api/v1/tenants/{tenant_id}/routes/{route_id}",
        ) => e(reads, foreign_reads, no_body),
        ("POST", "/api/v1/tenants/{tenant_id}/routes") => e(
            [201, 201, 403],
            [201, 404, 404],
            || json!({ "path_prefix": "/new", "upstreams": ["127.0.0.1:8080"] }),
        ),
        ("PATCH", "/api/v1/tenants/{tenant_id}/routes/{route_id}") => {
            e([200, 200, 403], [200, 404, 404], || json!({ "retries": 2 }))
        }
        ("DELETE", "/api/v1/tenants/{tenant_id}/routes/{route_id}") => {
            e([204, 204, 403], [204, 404, 404], no_body)
        }
        ("GET", "/api/v1/tenants/{tenant_id}/jwt-issuers") => {
            e([200, 200, 403], [200, 404, 404], no_body)
        }
        ("POST", "/api/v1/tenants/{tenant_id}/jwt-issuers") => {
            e([201, 201, 403], [201, 404, 404], || {
                json!({
                    "issuer": format!("https://{}.example", uuid::Uuid::now_v7().simple()),
                    "audience": "api",
                    "algorithm": "HS256",
                    "key_material": "k".repeat(32),
                })
            })
        }
        ("DELETE", "/api/v1/tenants/{tenant_id}/jwt-issuers/{issuer_id}") => {
            e([204, 204, 403], [204, 404, 404], no_body)
        }
        ("GET", "/api/v1/plans") => e([200, 403, 403], [200, 403, 403], no_body),
        // Tenant users read the plan they are subscribed to, and no other.
        ("GET", "/api/v1/plans/{plan_id}") => e(reads, foreign_reads, no_body),
        ("POST", "/api/v1/plans") => e([201, 403, 403], [201, 403, 403], || {
            json!({
                "name": format!("plan-{}", uuid::Uuid::now_v7().simple()),
                "rate": { "requests_per_second": 10, "burst": 20 },
                "pricing": { "currency": "USD", "base_fee_minor": 0, "model": "flat" },
            })
        }),
        ("PATCH", "/api/v1/plans/{plan_id}") => e(
            [200, 403, 403],
            [200, 403, 403],
            || json!({ "rate": { "burst": 30 }, "quota": { "included_requests": 5, "cap": "soft" } }),
        ),
        // The fixture plan has a subscription, so even a platform admin may not delete it.
        ("DELETE", "/api/v1/plans/{plan_id}") => e([409, 403, 403], [409, 403, 403], no_body),
        (
            "GET",
            "/api/v1/tenants/{tenant_id}/subscription"
            | "/api/v1/tenants/{tenant_id}/subscriptions"
            | "/api/v1/tenants/{tenant_id}/usage"
            | "/api/v1/tenants/{tenant_id}/usage/current"
            | "/api/v1/tenants/{tenant_id}/invoices"
            | "/api/v1/tenants/{tenant_id}/invoices/upcoming"
            | "/api/v1/tenants/{tenant_id}/invoices/{invoice_id}"
            | "/api/v1/tenants/{tenant_id}/invoices/{invoice_id}/document",
        ) => e(reads, foreign_reads, no_body),
        // Switching a tenant to its current (fixture) plan again is allowed.
        ("POST", "/api/v1/tenants/{tenant_id}/subscription") => e(
            [201, 403, 403],
            [201, 404, 404],
            || json!({ "plan_id": "{plan_id}" }),
        ),
        ("GET", "/api/v1/audit-log") => e([200, 200, 403], [200, 200, 403], no_body),
        _ => None,
    }
}

fn concrete_path(template: &str, tenant: &TenantFixture) -> String {
    template
        .replace("{tenant_id}", &tenant.id.to_string())
        .replace("{key_id}", &tenant.key_id)
        .replace("{user_id}", &tenant.viewer.user_id.to_string())
        .replace("{route_id}", &tenant.route_id.to_string())
        .replace("{issuer_id}", &tenant.issuer_id.to_string())
        .replace("{plan_id}", &tenant.plan_id.to_string())
        .replace("{invoice_id}", &tenant.invoice_id.to_string())
}

fn request(endpoint: &Endpoint, path: &str, token: Option<&str>, body: &Value) -> TestRequest {
    let mut req = TestRequest::default()
        .method(endpoint.method.clone())
        .uri(path);
    if let Some(token) = token {
        req = req.insert_header(("Authorization", format!("Bearer {token}")));
    }
    if !body.is_null() {
        req = req.set_json(body);
    }
    req
}

#[actix_web::test]
async fn every_endpoint_has_an_isolation_entry_and_answers_as_expected() {
    let endpoints = api_endpoints();
    let missing: Vec<String> = endpoints
        .iter()
        .filter(|e| e.access == Access::Authenticated && expectation(&e.method, e.path).is_none())
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    assert!(
        missing.is_empty(),
        "endpoints without an isolation entry: {missing:?}"
    );
    let public: BTreeSet<&str> = endpoints
        .iter()
        .filter(|e| e.access == Access::Public)
        .map(|e| e.path)
        .collect();
    assert_eq!(
        public,
        BTreeSet::from([
            "/api/v1/auth/login",
            "/api/v1/auth/refresh",
            "/api/v1/auth/session",
            "/api/v1/auth/session/logout",
            "/api/v1/auth/session/refresh",
            "/api/v1/webhooks/stripe"
        ])
    );

    // One database for the whole matrix; every cell gets a fresh tenant pair of its own, so
    // a write in one cell (a revoked key, a deleted route) cannot change another's outcome.
    // Global writes (new tenants and plans) use unique names and are only read by lists
    // whose status, not content, is checked.
    let h = Harness::new().await;
    let app = app!(h);
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for endpoint in endpoints
        .iter()
        .filter(|e| e.access == Access::Authenticated)
    {
        let expected = expectation(&endpoint.method, endpoint.path).unwrap();
        for (tenant_label, own) in [("own", true), ("foreign", false)] {
            for (role_index, role_label) in ["platform_admin", "tenant_admin", "tenant_viewer"]
                .into_iter()
                .enumerate()
            {
                let (own_tenant, foreign_tenant) = h.tenant_pair().await;
                let caller: &Principal = match role_index {
                    0 => &h.platform,
                    1 => &own_tenant.admin,
                    _ => &own_tenant.viewer,
                };
                let tenant = if own { &own_tenant } else { &foreign_tenant };
                let path = concrete_path(endpoint.path, tenant);
                // A body may refer to the tenant's fixture plan as "{plan_id}".
                let body: Value = serde_json::from_str(
                    &(expected.body)()
                        .to_string()
                        .replace("{plan_id}", &tenant.plan_id.to_string()),
                )
                .unwrap();
                // A session per cell: a logout in one cell must not end another's.
                let token = h.fresh_token(caller).await;
                let (status, json) = call!(app, request(endpoint, &path, Some(&token), &body));
                let want = if own { expected.own } else { expected.foreign }[role_index];
                if status != want {
                    failures.push(format!(
                        "{} {} as {role_label} on {tenant_label} tenant: {status}, expected {want} ({json})",
                        endpoint.method, endpoint.path
                    ));
                }
                if role_index == 0 && own {
                    let (status, _) = call!(app, request(endpoint, &path, None, &body));
                    if status != 401 {
                        failures.push(format!(
                            "{} {} without a token: {status}, expected 401",
                            endpoint.method, endpoint.path
                        ));
                    }
                }
            }
        }
    }
    println!("isolation matrix: {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[actix_web::test]
async fn the_openapi_document_lists_exactly_the_route_table() {
    use utoipa::OpenApi;
    let doc = serde_json::to_value(tollgate_control_api::openapi::ApiDoc::openapi()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let served: BTreeSet<String> = api_endpoints()
        .iter()
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    assert_eq!(documented, served);
}

#[test]
fn every_schema_the_openapi_document_refers_to_is_defined() {
    use utoipa::OpenApi;
    fn refs(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.insert(target.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let doc = serde_json::to_value(tollgate_control_api::openapi::ApiDoc::openapi()).unwrap();
    let mut targets = BTreeSet::new();
    refs(&doc, &mut targets);
    assert!(
        targets.contains("#/components/schemas/UsageSeries"),
        "{targets:?}"
    );
    let dangling: Vec<&String> = targets
        .iter()
        .filter(|t| {
            let name = t.trim_start_matches("#/components/schemas/");
            doc["components"]["schemas"].get(name).is_none()
        })
        .collect();
    assert!(dangling.is_empty(), "undefined schemas: {dangling:?}");
}
