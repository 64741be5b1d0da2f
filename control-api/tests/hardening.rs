//! Smaller findings of the black-box probe, against the real PostgreSQL: one successor per
//! rotated key, an expiry set at creation, tenant users reading their own plan, and bad
//! bodies answered with messages that name the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use actix_web::test::TestRequest;
use serde_json::{Value, json};
use support::Harness;

fn authed(request: TestRequest, token: &str) -> TestRequest {
    request.insert_header(("Authorization", format!("Bearer {token}")))
}

#[actix_web::test]
async fn a_rotated_key_with_an_active_successor_cannot_be_rotated_again() {
    let h = Harness::new().await;
    let app = app!(h);
    let admin = h.token(&h.own.admin);
    let rotate = |key: &str| {
        authed(
            TestRequest::post().uri(&format!(
                "/api/v1/tenants/{}/api-keys/{key}/rotate",
                h.own.id
            )),
            &admin,
        )
        .set_json(json!({}))
    };
    let (status, first) = call!(app, rotate(&h.own.key_id));
    assert_eq!(status, 201, "{first}");
    let successor = first["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(first["previous"]["replaced_by"], successor.as_str());

    let (status, body) = call!(app, rotate(&h.own.key_id));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("key_already_rotated")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&successor)
    );
    let active: i64 =
        h.db.client()
            .await
            .query_one(
                "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND status = 'active' \
                   AND expires_at IS NULL",
                &[&h.own.id],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(active, 1, "exactly one successor");

    // The successor rotates normally; once it is revoked, the old key (still in its overlap)
    // may be rotated again.
    assert_eq!(call!(app, rotate(&successor)).0, 201);
    let (own, _) = h.tenant_pair().await;
    let admin = h.token(&own.admin);
    let base = format!("/api/v1/tenants/{}/api-keys", own.id);
    let first = call!(
        app,
        authed(
            TestRequest::post().uri(&format!("{base}/{}/rotate", own.key_id)),
            &admin
        )
        .set_json(json!({}))
    )
    .1;
    let revoke = authed(
        TestRequest::post().uri(&format!(
            "{base}/{}/revoke",
            first["key"]["id"].as_str().unwrap()
        )),
        &admin,
    );
    assert_eq!(call!(app, revoke).0, 200);
    let again = authed(
        TestRequest::post().uri(&format!("{base}/{}/rotate", own.key_id)),
        &admin,
    )
    .set_json(json!({}));
    assert_eq!(call!(app, again).0, 201);
}

#[actix_web::test]
async fn a_key_can_be_created_with_an_expiry() {
    let h = Harness::new().await;
    let app = app!(h);
    let admin = h.token(&h.own.admin);
    let create = |body: Value| {
        authed(
            TestRequest::post().uri(&format!("/api/v1/tenants/{}/api-keys", h.own.id)),
            &admin,
        )
        .set_json(body)
    };
    let (status, created) = call!(
        app,
        create(json!({ "name": "ci", "expires_at": "2099-01-01T00:00:00Z" }))
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["key"]["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(created["key"]["status"], "active");
    let stored: Option<time::OffsetDateTime> =
        h.db.client()
            .await
            .query_one(
                "SELECT expires_at FROM api_keys WHERE id = $1",
                &[&created["key"]["id"].as_str().unwrap()],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(stored.map(|at| at.year()), Some(2099));

    for (body, field) in [
        (
            json!({ "expires_at": "2001-01-01T00:00:00Z" }),
            "expires_at",
        ),
        (json!({ "expires_at": "next week" }), "expires_at"),
    ] {
        let (status, error) = call!(app, create(body));
        assert_eq!(
            (status, error["error"]["field"].as_str()),
            (422, Some(field)),
            "{error}"
        );
    }
}

#[actix_web::test]
async fn tenant_users_read_their_own_plan_and_no_other() {
    let h = Harness::new().await;
    let app = app!(h);
    for user in [&h.own.admin, &h.own.viewer] {
        let token = h.token(user);
        let own = authed(
            TestRequest::get().uri(&format!("/api/v1/plans/{}", h.own.plan_id)),
            &token,
        );
        let (status, plan) = call!(app, own);
        assert_eq!(status, 200, "{plan}");
        assert_eq!(plan["id"], h.own.plan_id.to_string());
        let foreign = authed(
            TestRequest::get().uri(&format!("/api/v1/plans/{}", h.foreign.plan_id)),
            &token,
        );
        assert_eq!(call!(app, foreign).0, 404);
    }
}

#[actix_web::test]
async fn a_body_missing_a_nested_field_is_answered_naming_it() {
    let h = Harness::new().await;
    let app = app!(h);
    let (status, body) = call!(
        app,
        authed(
            TestRequest::post().uri("/api/v1/plans"),
            &h.token(&h.platform)
        )
        .set_json(json!({
            "name": "graduated without tiers",
            "rate": { "requests_per_second": 10, "burst": 20 },
            "pricing": { "currency": "USD", "base_fee_minor": 0, "model": "graduated" },
        }))
    );
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("tiers"), "{body}");
    assert!(!message.contains("line 1"), "{body}");
    assert!(
        body["error"]["field"].as_str().unwrap().ends_with("tiers"),
        "{body}"
    );
}
