//! The admin port: `/health` (alive), `/ready` (a snapshot is loaded, the traffic listener
//! accepts and the proxy is not draining) and `/metrics` (Prometheus text 0.0.4, or
//! OpenMetrics when the scraper asks).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

/// How long one readiness probe waits for the traffic listener to accept.
const LISTENER_PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// Whether the traffic listener accepts connections yet.
///
/// Pingora binds each service's listener when that service starts, in its own runtime, and
/// signals a listening service ready before binding it (pingora-core 0.9: the blanket
/// `ServiceWithDependents` impl notifies, then `Service::start_service` builds the
/// listeners), so neither the order of `add_service` nor a service dependency makes the
/// admin listener wait for the traffic one. Readiness therefore connects to the traffic
/// listener itself until a connection succeeds once, and remembers that; the listener is not
/// closed again before the drain, which `/ready` reports on its own.
#[derive(Debug)]
pub struct TrafficListener {
    /// Where to connect: the listen address, loopback for an unspecified one.
    probe: String,
    accepting: AtomicBool,
}

impl TrafficListener {
    /// The traffic listener at `listen` (as given to Pingora's `add_tcp`).
    pub fn new(listen: &str) -> Self {
        let probe = match listen.parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_unspecified() => {
                let loopback = match addr.ip() {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                };
                SocketAddr::new(loopback, addr.port()).to_string()
            }
            _ => listen.to_owned(),
        };
        Self {
            probe,
            accepting: AtomicBool::new(false),
        }
    }

    /// Whether the listener accepts: remembered once a probe connection succeeded.
    async fn accepting(&self) -> bool {
        if self.accepting.load(Ordering::Acquire) {
            return true;
        }
        let connected = tokio::time::timeout(
            LISTENER_PROBE_TIMEOUT,
            tokio::net::TcpStream::connect(self.probe.as_str()),
        )
        .await;
        let accepting = matches!(connected, Ok(Ok(_)));
        if accepting {
            self.accepting.store(true, Ordering::Release);
            tracing::info!(address = %self.probe, "Traffic listener accepts: /ready may answer 200.");
        }
        accepting
    }
}

/// Serves the admin endpoints.
#[derive(Debug)]
pub struct AdminApp {
    snapshot: Arc<SnapshotHandle>,
    draining: Arc<Draining>,
    registry: Arc<Registry>,
    metrics: Arc<GatewayMetrics>,
    traffic: TrafficListener,
}

impl AdminApp {
    /// Readiness follows `snapshot`, `traffic` and `draining`; `/metrics` renders `registry`.
    pub fn new(
        snapshot: Arc<SnapshotHandle>,
        draining: Arc<Draining>,
        registry: Arc<Registry>,
        metrics: Arc<GatewayMetrics>,
        traffic: TrafficListener,
    ) -> Self {
        Self {
            snapshot,
            draining,
            registry,
            metrics,
            traffic,
        }
    }
}

impl AdminApp {
    /// 200 with the snapshot's generation and age; 503 before the first snapshot, before the
    /// traffic listener accepts and while draining.
    async fn readiness(&self) -> Response<Vec<u8>> {
        if self.draining.get() {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"ready":false,"reason":"draining"}"#.into(),
            );
        }
        let loaded = self.snapshot.load();
        if loaded.is_some() && !self.traffic.accepting().await {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"ready":false,"reason":"the traffic listener does not accept connections yet"}"#
                    .into(),
            );
        }
        match loaded {
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
            "/ready" => self.readiness().await,
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

    fn app(snapshot: &Arc<SnapshotHandle>, draining: &Arc<Draining>, listen: &str) -> AdminApp {
        AdminApp::new(
            snapshot.clone(),
            draining.clone(),
            Arc::new(Registry::default()),
            Arc::new(GatewayMetrics::default()),
            TrafficListener::new(listen),
        )
    }

    #[tokio::test]
    async fn ready_follows_the_snapshot_and_turns_503_once_the_shutdown_begins() {
        let traffic = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = traffic.local_addr().unwrap().to_string();
        let snapshot = Arc::new(SnapshotHandle::default());
        let draining = Arc::new(Draining::default());
        let app = app(&snapshot, &draining, &listen);
        assert_eq!(
            app.readiness().await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        snapshot.store(ConfigSnapshot::default());
        assert_eq!(app.readiness().await.status(), StatusCode::OK);

        // Pingora's shutdown signal reaches the watcher, which flips the flag.
        let (shutdown, watch) = tokio::sync::watch::channel(false);
        let watcher = tokio::spawn(async move { DrainWatcher(draining).start(watch).await });
        assert_eq!(app.readiness().await.status(), StatusCode::OK);
        shutdown.send(true).unwrap();
        watcher.await.unwrap();
        let response = app.readiness().await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(String::from_utf8_lossy(response.body()).contains("draining"));
    }

    #[tokio::test]
    async fn ready_answers_200_only_once_the_traffic_listener_accepts() {
        // Bound but not listening: the state between Pingora's admin and traffic listeners.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        let snapshot = Arc::new(SnapshotHandle::default());
        snapshot.store(ConfigSnapshot::default());
        let app = app(&snapshot, &Arc::default(), &format!("0.0.0.0:{port}"));

        let response = app.readiness().await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(String::from_utf8_lossy(response.body()).contains("traffic listener"));

        let listener = socket.listen(16).unwrap();
        assert_eq!(app.readiness().await.status(), StatusCode::OK);
        // Remembered: later probes do not connect again.
        drop(listener);
        assert_eq!(app.readiness().await.status(), StatusCode::OK);
    }

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback() {
        assert_eq!(TrafficListener::new("0.0.0.0:8080").probe, "127.0.0.1:8080");
        assert_eq!(TrafficListener::new("[::]:8080").probe, "[::1]:8080");
        assert_eq!(TrafficListener::new("10.0.0.7:8080").probe, "10.0.0.7:8080");
        assert_eq!(
            TrafficListener::new("localhost:8080").probe,
            "localhost:8080"
        );
    }
}
