//! The admin port: `/health` (alive), `/ready` (a snapshot is loaded and the proxy is not
//! draining) and `/metrics` (Prometheus text 0.0.4, or OpenMetrics when the scraper asks).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use prometheus_client::registry::Registry;
use tollgate_core::metrics_exposition::{self, Exposition};

use crate::metrics::GatewayMetrics;
use crate::snapshot::SnapshotHandle;

/// Set once a graceful shutdown has begun: `/ready` turns 503 so the load balancer stops
/// sending new requests while in-flight ones finish.
#[derive(Debug, Default)]
pub struct Draining(AtomicBool);

impl Draining {
    /// Whether the shutdown has begun.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A background service that flips [`Draining`] when Pingora's shutdown starts.
#[derive(Debug)]
pub struct DrainWatcher(pub Arc<Draining>);

#[async_trait]
impl BackgroundService for DrainWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let _ = shutdown.changed().await;
        self.0.0.store(true, Ordering::Release);
        tracing::info!("Draining: /ready answers 503 until the process exits.");
    }
}

/// Serves the admin endpoints.
#[derive(Debug)]
pub struct AdminApp {
    snapshot: Arc<SnapshotHandle>,
    draining: Arc<Draining>,
    registry: Arc<Registry>,
    metrics: Arc<GatewayMetrics>,
}

impl AdminApp {
    /// Readiness follows `snapshot` and `draining`; `/metrics` renders `registry`.
    pub fn new(
        snapshot: Arc<SnapshotHandle>,
        draining: Arc<Draining>,
        registry: Arc<Registry>,
        metrics: Arc<GatewayMetrics>,
    ) -> Self {
        Self {
            snapshot,
            draining,
            registry,
            metrics,
        }
    }
}

impl AdminApp {
    /// 200 with the snapshot's generation and age; 503 before the first snapshot and while
    /// draining.
    fn readiness(&self) -> Response<Vec<u8>> {
        if self.draining.get() {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"ready":false,"reason":"draining"}"#.into(),
            );
        }
        match self.snapshot.load() {
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
        }
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

fn json(status: StatusCode, body: String) -> Response<Vec<u8>> {
    respond(status, "application/json", body)
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/health" => json(StatusCode::OK, r#"{"status":"ok"}"#.into()),
            "/ready" => self.readiness(),
            "/metrics" => {
                if let Some(snapshot) = self.snapshot.load() {
                    self.metrics
                        .snapshot(snapshot.loaded_at.elapsed().as_secs(), snapshot.generation);
                }
                let format = Exposition::negotiate(
                    session
                        .req_header()
                        .headers
                        .get(http::header::ACCEPT)
                        .and_then(|v| v.to_str().ok()),
                );
                match metrics_exposition::render(&self.registry, format) {
                    Ok(text) => respond(StatusCode::OK, format.content_type(), text),
                    Err(_) => json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        r#"{"error":{"code":"metrics_unavailable","message":"encoding failed"}}"#
                            .into(),
                    ),
                }
            }
            _ => json(
                StatusCode::NOT_FOUND,
                r#"{"error":{"code":"not_found","message":"no such endpoint"}}"#.into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ConfigSnapshot;

    #[tokio::test]
    async fn ready_follows_the_snapshot_and_turns_503_once_the_shutdown_begins() {
        let snapshot = Arc::new(SnapshotHandle::default());
        let draining = Arc::new(Draining::default());
        let app = AdminApp::new(
            snapshot.clone(),
            draining.clone(),
            Arc::new(Registry::default()),
            Arc::new(GatewayMetrics::default()),
        );
        assert_eq!(app.readiness().status(), StatusCode::SERVICE_UNAVAILABLE);
        snapshot.store(ConfigSnapshot::default());
        assert_eq!(app.readiness().status(), StatusCode::OK);

        // Pingora's shutdown signal reaches the watcher, which flips the flag.
        let (shutdown, watch) = tokio::sync::watch::channel(false);
        let watcher = tokio::spawn(async move { DrainWatcher(draining).start(watch).await });
        assert_eq!(app.readiness().status(), StatusCode::OK);
        shutdown.send(true).unwrap();
        watcher.await.unwrap();
        let response = app.readiness();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(String::from_utf8_lossy(response.body()).contains("draining"));
    }
}
