//! `tollgate-demo-upstream`: a tiny HTTP/1.1 upstream for `make up` and load tests. It answers
//! every request with 200 and a small JSON body naming the tenant the gateway identified.

use std::convert::Infallible;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;

fn respond(request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let tenant = request
        .headers()
        .get("x-tenant-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    let body = format!(
        "{{\"upstream\":\"tollgate-demo-upstream\",\"path\":{:?},\"tenant\":{tenant:?}}}\n",
        request.uri().path()
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::var("TOLLGATE_DEMO_UPSTREAM_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:58090".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("TOLLGATE_DEMO_UPSTREAM_LISTEN: cannot bind {listen}"))?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service =
                service_fn(|request| async move { Ok::<_, Infallible>(respond(&request)) });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
