//! A route's TLS material for `https://` upstreams, read from PEM once: the CA bundle its
//! upstreams are verified against (instead of the system roots) and an optional client
//! certificate with its key. The control API checks it when a route is written; the proxy reads
//! it again when it loads the snapshot.

use std::fmt;

/// DER certificates and key, ready for the TLS connector.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// CA certificates (DER); empty: the system roots.
    pub ca: Vec<Vec<u8>>,
    /// Client certificate chain (DER), leaf first, and its private key (DER: PKCS#8, PKCS#1 or
    /// SEC1).
    pub client: Option<(Vec<Vec<u8>>, Vec<u8>)>,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("ca_certificates", &self.ca.len())
            .field("client_certificate", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

/// Which PEM input is wrong, and how (never its content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct UpstreamTlsError {
    /// `tls_ca_pem`, `tls_client_cert_pem` or `tls_client_key_pem`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

fn certificates(field: &'static str, pem_text: &str) -> Result<Vec<Vec<u8>>, UpstreamTlsError> {
    let blocks = pem::parse_many(pem_text).map_err(|_| UpstreamTlsError {
        field,
        reason: "is not PEM",
    })?;
    let certificates: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if certificates.is_empty() {
        return Err(UpstreamTlsError {
            field,
            reason: "holds no CERTIFICATE block",
        });
    }
    Ok(certificates)
}

fn private_key(pem_text: &str) -> Result<Vec<u8>, UpstreamTlsError> {
    const FIELD: &str = "tls_client_key_pem";
    let refuse = |reason| UpstreamTlsError {
        field: FIELD,
        reason,
    };
    let blocks = pem::parse_many(pem_text).map_err(|_| refuse("is not PEM"))?;
    let mut keys = blocks.into_iter().filter(|block| {
        matches!(
            block.tag(),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY"
        )
    });
    let key = keys.next().ok_or(refuse(
        "holds no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block",
    ))?;
    if keys.next().is_some() {
        return Err(refuse("holds more than one private key"));
    }
    Ok(key.into_contents())
}

impl UpstreamTls {
    /// Reads the PEM columns of a route; `None` when it has none.
    pub fn from_pem(
        ca: Option<&str>,
        client_cert: Option<&str>,
        client_key: Option<&str>,
    ) -> Result<Option<Self>, UpstreamTlsError> {
        let ca = ca
            .map(|text| certificates("tls_ca_pem", text))
            .transpose()?
            .unwrap_or_default();
        let client = match (client_cert, client_key) {
            (Some(cert), Some(key)) => Some((
                certificates("tls_client_cert_pem", cert)?,
                private_key(key)?,
            )),
            (None, None) => None,
            (Some(_), None) => {
                return Err(UpstreamTlsError {
                    field: "tls_client_key_pem",
                    reason: "is required with tls_client_cert_pem",
                });
            }
            (None, Some(_)) => {
                return Err(UpstreamTlsError {
                    field: "tls_client_cert_pem",
                    reason: "is required with tls_client_key_pem",
                });
            }
        };
        if ca.is_empty() && client.is_none() {
            return Ok(None);
        }
        Ok(Some(Self { ca, client }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nBAUG\n-----END PRIVATE KEY-----\n";

    #[test]
    fn pem_blocks_become_der() {
        let tls = UpstreamTls::from_pem(Some(&format!("{CERT}{CERT}")), Some(CERT), Some(KEY))
            .unwrap()
            .unwrap();
        assert_eq!(tls.ca, vec![vec![1, 2, 3], vec![1, 2, 3]]);
        assert_eq!(tls.client, Some((vec![vec![1, 2, 3]], vec![4, 5, 6])));
        assert_eq!(UpstreamTls::from_pem(None, None, None), Ok(None));
        assert!(
            !format!("{tls:?}").contains("4, 5, 6"),
            "the key is never shown"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let field = |ca, cert, key| UpstreamTls::from_pem(ca, cert, key).unwrap_err().field;
        assert_eq!(field(Some("junk"), None, None), "tls_ca_pem");
        assert_eq!(field(Some(KEY), None, None), "tls_ca_pem");
        assert_eq!(field(None, Some(CERT), None), "tls_client_key_pem");
        assert_eq!(field(None, None, Some(KEY)), "tls_client_cert_pem");
        assert_eq!(field(None, Some(CERT), Some(CERT)), "tls_client_key_pem");
        assert_eq!(field(None, Some(KEY), Some(KEY)), "tls_client_cert_pem");
    }
}
