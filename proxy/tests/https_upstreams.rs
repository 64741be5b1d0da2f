//! `https://` upstreams through the `tollgate-proxy` binary: a local TLS upstream with a
//! certificate from a CA the test makes, verified against the route's CA, with SNI, a base
//! path and an optional client certificate.
// Helpers outside #[test] fns: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{echo_upstream, error_code, fixture, get, send, start_proxy};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A CA, and a certificate and key it issued.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        Self {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            ca,
            ca_key,
        }
    }

    /// (certificate PEM, key PEM, certificate DER, key DER) for `names`.
    fn issue(&self, names: &[&str]) -> (String, String, CertificateDer<'static>, Vec<u8>) {
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (
            cert.pem(),
            key.serialize_pem(),
            cert.der().clone(),
            key.serialize_der(),
        )
    }
}

/// A TLS upstream for `localhost` that answers 200 with the request head it received, the SNI
/// it was asked for and whether the client presented a certificate from `pki`.
async fn tls_echo_upstream(pki: &Pki) -> SocketAddr {
    let (_, _, cert, key) = pki.issue(&["localhost"]);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(
            vec![cert],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let (_, connection) = tls.get_ref();
                let sni = connection.server_name().unwrap_or("").to_owned();
                let client_cert = connection.peer_certificates().is_some();
                let mut reader = BufReader::new(tls);
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let body = format!("{head}sni: {sni}\r\nclient-cert: {client_cert}\r\n");
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if reader
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn add_tls_route(
    f: &common::Fixture,
    prefix: &str,
    upstream: &str,
    ca: Option<&str>,
    client: Option<(&str, &str)>,
) {
    f.db.client()
        .await
        .execute(
            "INSERT INTO routes (id, tenant_id, path_prefix, upstreams, tls_ca_pem, \
               tls_client_cert_pem, tls_client_key_pem) \
             VALUES (gen_random_uuid(), $1, $2, ARRAY[$3], $4, $5, $6)",
            &[
                f.tenant.as_uuid(),
                &prefix,
                &upstream,
                &ca,
                &client.map(|c| c.0),
                &client.map(|c| c.1),
            ],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_against_the_route_ca_with_sni_base_path_and_client_cert() {
    let pki = Pki::new();
    let upstream = tls_echo_upstream(&pki).await;
    let f = fixture(echo_upstream().await).await;
    let url = format!("https://localhost:{}/base", upstream.port());
    add_tls_route(&f, "/tls", &url, Some(&pki.ca_pem), None).await;
    let (client_cert, client_key, _, _) = pki.issue(&["gateway.client"]);
    add_tls_route(
        &f,
        "/mtls",
        &url,
        Some(&pki.ca_pem),
        Some((&client_cert, &client_key)),
    )
    .await;
    // Verified against the system roots, which do not know the test's CA.
    add_tls_route(&f, "/untrusted", &url, None, None).await;
    // Another CA than the one that issued the upstream's certificate.
    add_tls_route(&f, "/wrong-ca", &url, Some(&Pki::new().ca_pem), None).await;
    let proxy = start_proxy(&f).await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();

    let (status, _, seen) = send(&mut conn, &get("/tls/orders?x=1", &auth)).await;
    assert_eq!(status, 200, "{seen}");
    let seen = seen.to_ascii_lowercase();
    assert!(
        seen.starts_with("get /base/tls/orders?x=1 http/1.1"),
        "{seen}"
    );
    assert!(seen.contains("sni: localhost\r\n"), "{seen}");
    assert!(
        seen.contains(&format!("host: localhost:{}\r\n", upstream.port())),
        "{seen}"
    );
    assert!(seen.contains("client-cert: false"), "{seen}");
    assert!(!seen.contains("x-api-key"), "{seen}");

    let (status, _, seen) = send(&mut conn, &get("/mtls/x", &auth)).await;
    assert_eq!(status, 200, "{seen}");
    assert!(seen.contains("client-cert: true"), "{seen}");

    for refused in ["/untrusted/x", "/wrong-ca/x"] {
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        let (status, _, body) = send(&mut conn, &get(refused, &auth)).await;
        assert_ne!(status, 200, "{refused} was not verified: {body}");
        assert_eq!(
            (status, error_code(&body).as_str()),
            (502, "upstream_unavailable"),
            "{refused}: {body}"
        );
    }
}
