//! The admin endpoints: `/health` (the process is alive), `/ready` (consuming and PostgreSQL
//! reachable) and `/metrics` (Prometheus text 0.0.4, or OpenMetrics when asked for).

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

use crate::metrics::Metrics;

/// What readiness depends on.
#[derive(Debug, Default)]
pub struct Health {
    /// The consumer has subscribed.
    pub consuming: AtomicBool,
    /// The last PostgreSQL write (or connection attempt) succeeded.
    pub database_ok: AtomicBool,
}

impl Health {
    /// Ready to take work: consuming and able to write.
    pub fn ready(&self) -> bool {
        self.consuming.load(Ordering::Relaxed) && self.database_ok.load(Ordering::Relaxed)
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
            let status = if health.ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(
                status,
                format!(
                    r#"{{"ready":{},"consuming":{consuming},"database":{database}}}"#,
                    health.ready()
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
