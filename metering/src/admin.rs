//! The admin endpoints: `/health` (the process is alive), `/ready` (consuming, PostgreSQL
//! reachable and not stranded without partitions) and `/metrics` (Prometheus text 0.0.4, or
//! OpenMetrics when asked for).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tollgate_core::metrics_exposition::Exposition;

use crate::assignment::PartitionAssignment;
use crate::metrics::Metrics;

/// What readiness depends on.
#[derive(Debug, Default)]
pub struct Health {
    /// The consumer has subscribed.
    pub consuming: AtomicBool,
    /// The last PostgreSQL write (or connection attempt) succeeded.
    pub database_ok: AtomicBool,
    /// The partitions this consumer holds, and whether it has been without any too long.
    pub assignment: PartitionAssignment,
}

impl Health {
    /// Not ready yet; stranded after `unassigned_grace` without partitions.
    pub fn new(unassigned_grace: std::time::Duration) -> Self {
        Self {
            consuming: AtomicBool::new(false),
            database_ok: AtomicBool::new(false),
            assignment: PartitionAssignment::new(unassigned_grace),
        }
    }

    /// Ready to take work: consuming, able to write and not stranded.
    pub fn ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// Why the service is not ready, if it is not.
    pub fn not_ready_reason(&self) -> Option<String> {
        if !self.consuming.load(Ordering::Relaxed) {
            return Some("not consuming yet".into());
        }
        if !self.database_ok.load(Ordering::Relaxed) {
            return Some("PostgreSQL is unreachable".into());
        }
        self.assignment.stranded()
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let (health, metrics) = (health.clone(), metrics.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&request, &health, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(
    request: &Request<Incoming>,
    health: &Health,
    metrics: &Metrics,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":{"code":"method_not_allowed","message":"only GET is supported"}}"#.into(),
        );
    }
    match request.uri().path() {
        "/health" => json(StatusCode::OK, r#"{"status":"ok"}"#.into()),
        "/ready" => {
            let consuming = health.consuming.load(Ordering::Relaxed);
            let database = health.database_ok.load(Ordering::Relaxed);
            let assigned = health.assignment.assigned();
            let topic = health
                .assignment
                .topic_partitions()
                .map_or_else(|| "null".to_owned(), |n| n.to_string());
            let reason = health.not_ready_reason();
            let status = if reason.is_none() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            // The reasons are our own fixed texts with numbers: nothing to escape.
            let reason = reason.map_or_else(String::new, |r| format!(r#","reason":"{r}""#));
            json(
                status,
                format!(
                    r#"{{"ready":{},"consuming":{consuming},"database":{database},"assigned_partitions":{assigned},"topic_partitions":{topic}{reason}}}"#,
                    status == StatusCode::OK
                ),
            )
        }
        "/metrics" => {
            let format = Exposition::negotiate(
                request
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            let mut response = Response::new(Full::new(Bytes::from(metrics.render(format))));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(format.content_type()),
            );
            response
        }
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":"not_found","message":"no such endpoint"}}"#.into(),
        ),
    }
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
