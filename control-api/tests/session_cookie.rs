//! The dashboard's cookie session: the refresh token only ever travels in an HttpOnly cookie
//! scoped to `/api/v1/auth/session`, and the cookie alone renews the access token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use actix_web::test::{TestRequest, call_service, read_body};
use serde_json::{Value, json};
use support::{Harness, PASSWORD};

fn header<B>(response: &actix_web::dev::ServiceResponse<B>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn set_cookie<B>(response: &actix_web::dev::ServiceResponse<B>) -> String {
    header(response, "set-cookie")
}

#[actix_web::test]
async fn the_refresh_token_lives_in_an_http_only_cookie_that_alone_renews_the_session() {
    let h = Harness::new().await;
    let app = app!(h);

    let login = TestRequest::post()
        .uri("/api/v1/auth/session")
        .set_json(json!({ "email": h.own.admin.email, "password": PASSWORD }));
    let response = call_service(&app, login.to_request()).await;
    assert_eq!(response.status(), 200);
    let cookie = set_cookie(&response);
    assert_eq!(header(&response, "cache-control"), "no-store");
    let body: Value = serde_json::from_slice(&read_body(response).await).unwrap();
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body.get("refresh_token").is_none(), "{body}");
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/api/v1/auth/session",
    ] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();
    assert!(pair.starts_with("tollgate_refresh=ey"), "{pair}");

    // The access token works for the API.
    let me = TestRequest::get().uri("/api/v1/me").insert_header((
        "Authorization",
        format!("Bearer {}", body["access_token"].as_str().unwrap()),
    ));
    let (status, who) = call!(app, me);
    assert_eq!(status, 200);
    assert_eq!(who["email"], h.own.admin.email.as_str());

    // The cookie, and nothing else, renews it.
    let refresh = TestRequest::post()
        .uri("/api/v1/auth/session/refresh")
        .insert_header(("Cookie", pair.clone()));
    let response = call_service(&app, refresh.to_request()).await;
    assert_eq!(response.status(), 200);
    assert!(set_cookie(&response).starts_with("tollgate_refresh=ey"));
    let (status, _) = call!(app, TestRequest::post().uri("/api/v1/auth/session/refresh"));
    assert_eq!(status, 401);
    // An access token is not a refresh token.
    let forged = format!(
        "tollgate_refresh={}",
        body["access_token"].as_str().unwrap()
    );
    let (status, _) = call!(
        app,
        TestRequest::post()
            .uri("/api/v1/auth/session/refresh")
            .insert_header(("Cookie", forged))
    );
    assert_eq!(status, 401);

    // Logout expires the cookie.
    let response = call_service(
        &app,
        TestRequest::post()
            .uri("/api/v1/auth/session/logout")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), 204);
    let cleared = set_cookie(&response);
    assert!(
        cleared.starts_with("tollgate_refresh=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // Wrong passwords are refused like /auth/login, with no cookie.
    let wrong = TestRequest::post()
        .uri("/api/v1/auth/session")
        .set_json(json!({ "email": h.own.admin.email, "password": "not the password" }));
    let response = call_service(&app, wrong.to_request()).await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("set-cookie").is_none());
}

#[actix_web::test]
async fn the_dashboard_is_served_at_its_pages_with_a_strict_policy() {
    let h = Harness::new().await;
    let app = app!(h);
    for page in [
        "/",
        "/keys",
        "/admin/tenants",
        "/invoices/0190c0de-0000-7000-8000-000000000000",
    ] {
        let response = call_service(&app, TestRequest::get().uri(page).to_request()).await;
        assert_eq!(response.status(), 200, "{page}");
        assert_eq!(header(&response, "cache-control"), "no-cache");
        let csp = header(&response, "content-security-policy");
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        let html = String::from_utf8(read_body(response).await.to_vec()).unwrap();
        assert!(html.contains("<div id=\"root\">"), "{page}");
    }
    // Unknown paths stay the API's JSON 404.
    let (status, body) = call!(app, TestRequest::get().uri("/nope"));
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}
