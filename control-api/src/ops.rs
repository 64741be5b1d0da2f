//! Operational endpoints: `/health` (the process answers), `/ready` (PostgreSQL answers),
//! `/metrics` and the OpenAPI document, and the admin application that serves `/metrics`
//! (with `/health` and `/ready`) on its own listener, away from the public port, as the
//! proxy and metering do.

use std::sync::OnceLock;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::ACCEPT;
use actix_web::{App, HttpRequest, HttpResponse, web};
use serde_json::json;
use tollgate_core::metrics_exposition::Exposition;
use utoipa::OpenApi;

use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::state::AppState;

/// Liveness: the process serves requests.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: a database round trip succeeds within the pool's timeouts.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready" })))
}

/// Prometheus metrics: text format 0.0.4, or OpenMetrics when `Accept` asks for it.
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let format = Exposition::negotiate(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let body = state
        .metrics
        .render(format)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .body(body))
}

/// The admin listener's application: `/metrics`, `/health` and `/ready`, JSON 404 otherwise.
pub fn admin_app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .route("/metrics", web::get().to(metrics))
        .route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .default_service(web::to(|| async {
            actix_web::ResponseError::error_response(&ApiError::NotFound)
        }))
}

/// The OpenAPI 3 document, generated once from the handlers' annotations.
pub async fn openapi_json() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.as_str())
}
