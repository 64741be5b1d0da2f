//! Operational endpoints: `/health` (the process answers), `/ready` (PostgreSQL answers),
//! `/metrics` (Prometheus text) and the OpenAPI document.

use std::sync::OnceLock;

use actix_web::{HttpResponse, web};
use serde_json::json;
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

/// Prometheus metrics.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = state
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(body))
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
