//! Sessions against the real PostgreSQL: state checked on every request, refresh-token
//! rotation with reuse detection, logout, password change, and login slow-down per
//! (account, address) that never locks the owner out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix_web::test::TestRequest;
use serde_json::{Value, json};
use support::{Harness, PASSWORD};
use tollgate_control_api::config::ThrottlePolicy;

fn login_from(address: &str, email: &str, password: &str) -> TestRequest {
    TestRequest::post()
        .uri("/api/v1/auth/login")
        .peer_addr(format!("{address}:4321").parse().unwrap())
        .set_json(json!({ "email": email, "password": password }))
}

fn login(email: &str, password: &str) -> TestRequest {
    login_from("10.0.0.1", email, password)
}

fn refresh(token: &Value) -> TestRequest {
    TestRequest::post()
        .uri("/api/v1/auth/refresh")
        .set_json(json!({ "refresh_token": token }))
}

fn bearer(request: TestRequest, token: &Value) -> TestRequest {
    request.insert_header((
        "Authorization",
        format!("Bearer {}", token.as_str().unwrap()),
    ))
}

fn me(token: &Value) -> TestRequest {
    bearer(TestRequest::get().uri("/api/v1/me"), token)
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[actix_web::test]
async fn suspending_a_tenant_or_disabling_a_user_stops_their_tokens_at_once() {
    let h = Harness::new().await;
    let app = app!(h);
    let (status, tokens) = call!(app, login(&h.own.admin.email, PASSWORD));
    assert_eq!(status, 200, "{tokens}");
    let access = &tokens["access_token"];
    let create_key = || {
        bearer(
            TestRequest::post().uri(&format!("/api/v1/tenants/{}/api-keys", h.own.id)),
            access,
        )
        .set_json(json!({ "name": "before" }))
    };
    assert_eq!(call!(app, create_key()).0, 201);

    let platform = json!(h.token(&h.platform));
    let suspend = bearer(
        TestRequest::post().uri(&format!("/api/v1/tenants/{}/suspend", h.own.id)),
        &platform,
    );
    assert_eq!(call!(app, suspend).0, 200);
    // The very next request, with a token that has not expired, is refused: writes and reads.
    let (status, body) = call!(app, create_key());
    assert_eq!(
        (status, error_code(&body)),
        (401, "session_ended"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant is suspended"),
        "{body}"
    );
    assert_eq!(call!(app, me(access)).0, 401);
    let (status, body) = call!(app, refresh(&tokens["refresh_token"]));
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"));

    // A disabled user likewise, and their tenant admin's session carries on.
    let (own, _) = h.tenant_pair().await;
    let viewer = call!(app, login(&own.viewer.email, PASSWORD)).1;
    let admin = json!(h.token(&own.admin));
    assert_eq!(call!(app, me(&viewer["access_token"])).0, 200);
    let disable = bearer(
        TestRequest::post().uri(&format!(
            "/api/v1/tenants/{}/users/{}/disable",
            own.id, own.viewer.user_id
        )),
        &admin,
    );
    assert_eq!(call!(app, disable).0, 200);
    let (status, body) = call!(app, me(&viewer["access_token"]));
    assert_eq!((status, error_code(&body)), (401, "session_ended"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("account is disabled")
    );
    assert_eq!(call!(app, me(&admin)).0, 200);
}

#[actix_web::test]
async fn refresh_tokens_rotate_and_a_replayed_one_ends_the_session() {
    let h = Harness::new().await;
    let app = app!(h);
    let first = call!(app, login(&h.own.admin.email, PASSWORD)).1;
    let (status, second) = call!(app, refresh(&first["refresh_token"]));
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(call!(app, me(&second["access_token"])).0, 200);

    // The first refresh token was retired by its use: presenting it again is a replay...
    let (status, body) = call!(app, refresh(&first["refresh_token"]));
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"));
    // ...which ends the whole session: the current refresh and access tokens stop too.
    let (status, _) = call!(app, refresh(&second["refresh_token"]));
    assert_eq!(status, 401);
    let (status, body) = call!(app, me(&second["access_token"]));
    assert_eq!((status, error_code(&body)), (401, "session_ended"));
    let reason: Option<String> =
        h.db.client()
            .await
            .query_one(
                "SELECT revoked_reason FROM auth_sessions WHERE user_id = $1 \
                 ORDER BY created_at DESC LIMIT 1",
                &[&h.own.admin.user_id],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(reason.as_deref(), Some("refresh_token_reuse"));

    // Another session of the same user is untouched.
    let other = call!(app, login(&h.own.admin.email, PASSWORD)).1;
    assert_eq!(call!(app, refresh(&other["refresh_token"])).0, 200);
}

#[actix_web::test]
async fn logout_ends_only_its_own_session_at_once() {
    let h = Harness::new().await;
    let app = app!(h);
    let leaving = call!(app, login(&h.own.viewer.email, PASSWORD)).1;
    let staying = call!(app, login(&h.own.viewer.email, PASSWORD)).1;
    let logout = bearer(
        TestRequest::post().uri("/api/v1/auth/logout"),
        &leaving["access_token"],
    );
    assert_eq!(call!(app, logout).0, 204);
    let (status, body) = call!(app, me(&leaving["access_token"]));
    assert_eq!((status, error_code(&body)), (401, "session_ended"));
    assert_eq!(call!(app, refresh(&leaving["refresh_token"])).0, 401);
    assert_eq!(call!(app, me(&staying["access_token"])).0, 200);
}

#[actix_web::test]
async fn a_password_change_checks_the_current_one_and_ends_the_other_sessions() {
    let h = Harness::new().await;
    let app = app!(h);
    let here = call!(app, login(&h.own.admin.email, PASSWORD)).1;
    let elsewhere = call!(app, login(&h.own.admin.email, PASSWORD)).1;
    let change = |current: &str, new: &str| {
        bearer(
            TestRequest::post().uri("/api/v1/me/password"),
            &here["access_token"],
        )
        .peer_addr("10.0.0.1:4321".parse().unwrap())
        .set_json(json!({ "current_password": current, "new_password": new }))
    };
    let (status, body) = call!(app, change("not the password", "a brand new password"));
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("current_password"))
    );
    let (status, body) = call!(app, change(PASSWORD, "short"));
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("new_password"))
    );
    assert_eq!(call!(app, change(PASSWORD, "a brand new password")).0, 204);

    assert_eq!(call!(app, me(&here["access_token"])).0, 200);
    let (status, body) = call!(app, me(&elsewhere["access_token"]));
    assert_eq!((status, error_code(&body)), (401, "session_ended"));
    assert_eq!(call!(app, refresh(&elsewhere["refresh_token"])).0, 401);
    assert_eq!(call!(app, login(&h.own.admin.email, PASSWORD)).0, 401);
    assert_eq!(
        call!(app, login(&h.own.admin.email, "a brand new password")).0,
        200
    );
}

#[actix_web::test]
async fn guesses_from_one_address_slow_that_address_down_and_never_lock_the_owner_out() {
    let h = Harness::with_throttle(ThrottlePolicy {
        pair_free_failures: 3,
        pair_base_delay: Duration::from_secs(60),
        pair_max_delay: Duration::from_secs(600),
        pair_memory: Duration::from_secs(900),
        ip_attempts: 100,
        ip_window: Duration::from_secs(60),
    })
    .await;
    let app = app!(h);
    let email = &h.own.viewer.email;
    for _ in 0..3 {
        let (status, _) = call!(app, login_from("192.0.2.66", email, "wrong password!"));
        assert_eq!(status, 401);
    }
    // The attacker's address now waits, even with the right password...
    let response =
        actix_web::test::call_service(&app, login_from("192.0.2.66", email, PASSWORD).to_request())
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
    assert!((50..=60).contains(&retry_after), "{retry_after}");
    let body: Value = actix_web::test::read_body_json(response).await;
    assert_eq!(body["error"]["code"], "too_many_requests");
    assert_eq!(body["error"]["retry_after_secs"], retry_after);
    // ...while the owner, at their own address, logs in at once.
    assert_eq!(
        call!(app, login_from("198.51.100.7", email, PASSWORD)).0,
        200
    );
}

#[actix_web::test]
async fn token_mistakes_are_named() {
    let h = Harness::new().await;
    let app = app!(h);
    let tokens = call!(app, login(&h.own.admin.email, PASSWORD)).1;
    let (status, body) = call!(app, me(&tokens["refresh_token"]));
    assert_eq!(
        (status, error_code(&body)),
        (401, "refresh_token_as_bearer")
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/v1/auth/refresh")
    );
    let (status, body) = call!(app, refresh(&json!("not.a.token")));
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"));
    let (status, body) = call!(app, refresh(&tokens["access_token"]));
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"));
    let (status, body) = call!(app, TestRequest::get().uri("/api/v1/me"));
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));
}
