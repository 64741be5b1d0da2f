//! The route table and the application: every API endpoint is registered from one table,
//! which the isolation-matrix and OpenAPI tests read, so an endpoint cannot be added without
//! them noticing.

use std::collections::BTreeMap;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Condition;
use actix_web::{App, HttpResponse, Route, web};

use crate::auth::endpoints as auth;
use crate::auth::session_cookie;
use crate::config::CorsOrigins;
use crate::error::ApiError;
use crate::ops;
use crate::resources::{
    api_keys, audit_log, invoices, jwt_issuers, plans, routes as tenant_routes, subscriptions,
    tenants, usage, users, webhooks,
};
use crate::state::AppState;

/// Who may call an endpoint before its own role and tenant checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (login, refresh).
    Public,
    /// A valid access token is required.
    Authenticated,
}

/// One API endpoint of the route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// HTTP method.
    pub method: Method,
    /// Path template, as in the OpenAPI document (`/api/v1/tenants/{tenant_id}`).
    pub path: &'static str,
    /// Whether a token is required.
    pub access: Access,
}

fn routes() -> Vec<(Endpoint, Route)> {
    use Access::{Authenticated as Auth, Public};
    let entry = |method: Method, path, access, route: Route| {
        (
            Endpoint {
                method,
                path,
                access,
            },
            route,
        )
    };
    vec![
        entry(
            Method::POST,
            "/api/v1/auth/login",
            Public,
            web::post().to(auth::login),
        ),
        entry(
            Method::POST,
            "/api/v1/auth/refresh",
            Public,
            web::post().to(auth::refresh),
        ),
        entry(
            Method::POST,
            "/api/v1/auth/session",
            Public,
            web::post().to(session_cookie::create),
        ),
        entry(
            Method::POST,
            "/api/v1/auth/session/refresh",
            Public,
            web::post().to(session_cookie::refresh),
        ),
        entry(
            Method::POST,
            "/api/v1/auth/session/logout",
            Public,
            web::post().to(session_cookie::logout),
        ),
        entry(Method::GET, "/api/v1/me", Auth, web::get().to(auth::me)),
        entry(
            Method::POST,
            "/api/v1/auth/logout",
            Auth,
            web::post().to(auth::logout),
        ),
        entry(
            Method::POST,
            "/api/v1/me/password",
            Auth,
            web::post().to(auth::change_password),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants",
            Auth,
            web::get().to(tenants::list),
        ),
        entry(
            Method::POST,
            "/api/v1/tenants",
            Auth,
            web::post().to(tenants::create),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}",
            Auth,
            web::get().to(tenants::get),
        ),
        entry(
            Method::PATCH,
            "/api/v1/tenants/{tenant_id}",
            Auth,
            web::patch().to(tenants::update),
        ),
        entry(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/suspend",
            Auth,
            web::post().to(tenants::suspend),
        ),
        entry(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/reactivate",
            Auth,
            web::post().to(tenants::reactivate),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/api-keys",
            Auth,
            web::get().to(api_keys::list),
        ),
        entry(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/api-keys",
            Auth,
            web::post().to(api_keys::create),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/api-keys/{key_id}",
            Auth,
            web::get().to(api_keys::get),
        ),
        entry(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/api-keys/{key_id}/revoke",
            Auth,
            web::post().to(api_keys::revoke),
        ),
        entry(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/api-keys/{key_id}/rotate",
            Auth,
            web::post().to(api_keys::rotate),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/users",
            Auth,
            web::get().to(users::list),
        ),
        entry(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/users",
            Auth,
            web::post().to(users::create),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/users/{user_id}",
            Auth,
            web::get().to(users::get),
        ),
        entry(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/users/{user_id}/disable",
            Auth,
            web::post().to(users::disable),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/routes",
            Auth,
            web::get().to(tenant_routes::list),
        ),
        entry(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/routes",
            Auth,
            web::post().to(tenant_routes::create),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/routes/{route_id}",
            Auth,
            web::get().to(tenant_routes::get),
        ),
        entry(
            Method::PATCH,
            "/api/v1/tenants/{tenant_id}/routes/{route_id}",
            Auth,
            web::patch().to(tenant_routes::update),
        ),
        entry(
            Method::DELETE,
            "/api/v1/tenants/{tenant_id}/routes/{route_id}",
            Auth,
            web::delete().to(tenant_routes::delete),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/jwt-issuers",
            Auth,
            web::get().to(jwt_issuers::list),
        ),
        entry(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/jwt-issuers",
            Auth,
            web::post().to(jwt_issuers::create),
        ),
        entry(
            Method::DELETE,
            "/api/v1/tenants/{tenant_id}/jwt-issuers/{issuer_id}",
            Auth,
            web::delete().to(jwt_issuers::delete),
        ),
        entry(
            Method::GET,
            "/api/v1/plans",
            Auth,
            web::get().to(plans::list),
        ),
        entry(
            Method::POST,
            "/api/v1/plans",
            Auth,
            web::post().to(plans::create),
        ),
        entry(
            Method::GET,
            "/api/v1/plans/{plan_id}",
            Auth,
            web::get().to(plans::get),
        ),
        entry(
            Method::PATCH,
            "/api/v1/plans/{plan_id}",
            Auth,
            web::patch().to(plans::update),
        ),
        entry(
            Method::DELETE,
            "/api/v1/plans/{plan_id}",
            Auth,
            web::delete().to(plans::delete),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/subscription",
            Auth,
            web::get().to(subscriptions::get),
        ),
        entry(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/subscription",
            Auth,
            web::post().to(subscriptions::switch),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/subscriptions",
            Auth,
            web::get().to(subscriptions::list),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/usage",
            Auth,
            web::get().to(usage::series),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/usage/current",
            Auth,
            web::get().to(usage::current),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/invoices",
            Auth,
            web::get().to(invoices::list),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/invoices/upcoming",
            Auth,
            web::get().to(invoices::upcoming),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/invoices/{invoice_id}",
            Auth,
            web::get().to(invoices::get),
        ),
        entry(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/invoices/{invoice_id}/document",
            Auth,
            web::get().to(invoices::document),
        ),
        entry(
            Method::GET,
            "/api/v1/audit-log",
            Auth,
            web::get().to(audit_log::list),
        ),
        // Called by Stripe: authenticated by the event's signature, not a token.
        entry(
            Method::POST,
            "/api/v1/webhooks/stripe",
            Public,
            web::post().to(webhooks::stripe),
        ),
    ]
}

/// Every API endpoint the application serves (besides `/health`, `/ready` and
/// `/api/v1/openapi.json`; `/metrics` is on the admin listener, `ops::admin_app`).
pub fn api_endpoints() -> Vec<Endpoint> {
    routes().into_iter().map(|(endpoint, _)| endpoint).collect()
}

/// The dashboard's pages and hashed assets ([`crate::dashboard`]): public, because a page is
/// an empty shell until the API, with a token, fills it.
pub fn dashboard_endpoints() -> Vec<Endpoint> {
    crate::dashboard::endpoints()
}

/// The application: API routes, operational endpoints, JSON errors for everything else,
/// body limits, CORS and request metrics.
pub fn build_app(
    state: web::Data<AppState>,
    cors_origins: CorsOrigins,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let max_body_bytes = state.max_body_bytes;
    let mut by_path: BTreeMap<&'static str, Vec<Route>> = BTreeMap::new();
    for (endpoint, route) in routes() {
        by_path.entry(endpoint.path).or_default().push(route);
    }
    let mut app = App::new()
        .app_data(state)
        .app_data(web::PayloadConfig::new(max_body_bytes))
        .app_data(web::QueryConfig::default().error_handler(|error, _| {
            ApiError::BadRequest {
                code: "invalid_query",
                field: None,
                message: format!("the query string is not acceptable: {error}"),
            }
            .into()
        }))
        // A path segment that cannot be an id names no resource.
        .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()));
    for (path, routes) in by_path {
        let resource = routes
            .into_iter()
            .fold(web::resource(path), |resource, route| resource.route(route))
            .default_service(web::to(method_not_allowed));
        app = app.service(resource);
    }
    app.route("/health", web::get().to(ops::health))
        .route("/ready", web::get().to(ops::ready))
        .route("/api/v1/openapi.json", web::get().to(ops::openapi_json))
        .configure(crate::dashboard::configure)
        .default_service(web::to(not_found))
        .wrap(Condition::new(
            cors_origins != CorsOrigins::None,
            cors(&cors_origins),
        ))
        .wrap_fn(|req, service| {
            let metrics = req
                .app_data::<web::Data<AppState>>()
                .map(|state| state.metrics.clone());
            let method = req.method().clone();
            let response = service.call(req);
            async move {
                let response = response.await?;
                if let Some(metrics) = metrics {
                    metrics.observe_request(method.as_str(), response.status().as_u16());
                }
                Ok(response)
            }
        })
}

fn cors(origins: &CorsOrigins) -> Cors {
    let cors = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER])
        .max_age(600);
    match origins {
        CorsOrigins::None => cors,
        CorsOrigins::Any => cors.allow_any_origin(),
        CorsOrigins::List(list) => list
            .iter()
            .fold(cors, |cors, origin| cors.allowed_origin(origin)),
    }
}

async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::NotFound)
}

async fn method_not_allowed() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed)
}
