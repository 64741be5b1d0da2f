//! The admin port: `/health` (alive) and `/ready` (a snapshot is loaded).

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::snapshot::SnapshotHandle;

/// Serves the admin endpoints.
#[derive(Debug)]
pub struct AdminApp {
    snapshot: Arc<SnapshotHandle>,
}

impl AdminApp {
    /// Readiness follows `snapshot`.
    pub fn new(snapshot: Arc<SnapshotHandle>) -> Self {
        Self { snapshot }
    }
}

fn json(status: StatusCode, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/health" => json(StatusCode::OK, r#"{"status":"ok"}"#.into()),
            "/ready" => match self.snapshot.load() {
                Some(snapshot) => json(
                    StatusCode::OK,
                    format!(
                        r#"{{"ready":true,"snapshot_generation":{},"snapshot_age_seconds":{}}}"#,
                        snapshot.generation,
                        snapshot.loaded_at.elapsed().as_secs()
                    ),
                ),
                None => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"ready":false,"reason":"no config snapshot loaded yet"}"#.into(),
                ),
            },
            _ => json(
                StatusCode::NOT_FOUND,
                r#"{"error":{"code":"not_found","message":"no such endpoint"}}"#.into(),
            ),
        }
    }
}
