//! The document step: the invoice's PDF and HTML in an S3-compatible object store under a
//! stable key, `invoices/<tenant id>/<YYYY-MM>/<number>.pdf` (and `.html`).
//!
//! Requests are signed with `rusty-s3` (SigV4 as presigned URLs, no I/O of its own) and sent
//! with the same HTTP client Stripe uses, instead of the AWS SDK and its build cost. A PUT
//! of the same key with the same bytes is idempotent, so a rerun simply writes again.

use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::error::DeliveryError;

/// Environment variable holding the object store's endpoint URL.
pub const ENV_S3_ENDPOINT: &str = "TOLLGATE_S3_ENDPOINT";
/// Environment variable holding the bucket name.
pub const ENV_S3_BUCKET: &str = "TOLLGATE_S3_BUCKET";

/// How long a presigned request stays valid: it is used at once.
const SIGNATURE_TTL: Duration = Duration::from_secs(60);

/// The object store's access key. `Debug` never shows the secret.
#[derive(Clone)]
pub struct S3Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Where documents are stored.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `https://s3.eu-west-1.amazonaws.com`, or a compatible server's URL.
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Region (`us-east-1` for most compatible servers).
    pub region: String,
    /// Path-style (`endpoint/bucket/key`) rather than virtual-host addressing.
    pub path_style: bool,
    /// Access key.
    pub credentials: S3Credentials,
    /// Deadline of each request.
    pub timeout: Duration,
}

/// The object key of an invoice document.
pub fn document_key(tenant_id: uuid::Uuid, period: &str, number: &str, extension: &str) -> String {
    format!("invoices/{tenant_id}/{period}/{number}.{extension}")
}

/// Stores and reads invoice documents.
#[derive(Debug, Clone)]
pub struct DocumentStore {
    http: reqwest::Client,
    bucket: Bucket,
    credentials: Credentials,
}

impl DocumentStore {
    /// A store for `settings`.
    pub fn new(settings: &S3Settings) -> Result<Self, DeliveryError> {
        let endpoint = settings
            .endpoint
            .parse()
            .map_err(|e| DeliveryError::InvalidSetting {
                setting: ENV_S3_ENDPOINT,
                reason: format!("not a URL: {e}"),
            })?;
        let style = if settings.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            settings.bucket.clone(),
            settings.region.clone(),
        )
        .map_err(|e| DeliveryError::InvalidSetting {
            setting: ENV_S3_BUCKET,
            reason: e.to_string(),
        })?;
        let http =
            super::http::client(settings.timeout).map_err(|e| DeliveryError::InvalidSetting {
                setting: ENV_S3_ENDPOINT,
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            bucket,
            credentials: Credentials::new(
                settings.credentials.access_key_id.clone(),
                settings.credentials.secret_access_key.clone(),
            ),
        })
    }

    /// Writes `body` under `key`.
    pub async fn put(
        &self,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), DeliveryError> {
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(SIGNATURE_TTL);
        let response = self
            .http
            .put(url)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::Storage(format!("PUT {key}: {e}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Storage(format!(
                "PUT {key}: HTTP {}",
                response.status().as_u16()
            )))
        }
    }

    /// Reads the object under `key`; `None` if there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, DeliveryError> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(SIGNATURE_TTL);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| DeliveryError::Storage(format!("GET {key}: {e}")))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(DeliveryError::Storage(format!(
                "GET {key}: HTTP {}",
                response.status().as_u16()
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| DeliveryError::Storage(format!("GET {key}: {e}")))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Creates the bucket if it does not exist (local stacks and tests; production buckets are
    /// provisioned with their policies elsewhere).
    pub async fn ensure_bucket(&self) -> Result<(), DeliveryError> {
        let url = self
            .bucket
            .create_bucket(&self.credentials)
            .sign(SIGNATURE_TTL);
        // An empty body, so the request carries `Content-Length: 0` (servers answer 411
        // to a PUT without it).
        let response = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .body(Vec::new())
            .send()
            .await
            .map_err(|e| DeliveryError::Storage(format!("creating the bucket: {e}")))?;
        // 409: it exists already (BucketAlreadyOwnedByYou).
        if response.status().is_success() || response.status() == reqwest::StatusCode::CONFLICT {
            Ok(())
        } else {
            Err(DeliveryError::Storage(format!(
                "creating the bucket: HTTP {}",
                response.status().as_u16()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_secrets_hidden() {
        let tenant = uuid::Uuid::from_u128(1);
        assert_eq!(
            document_key(tenant, "2026-10", "2026-10-deadbeef", "pdf"),
            "invoices/00000000-0000-0000-0000-000000000001/2026-10/2026-10-deadbeef.pdf"
        );
        let credentials = S3Credentials {
            access_key_id: "AKIA".into(),
            secret_access_key: "very-secret".into(),
        };
        assert!(!format!("{credentials:?}").contains("very-secret"));
    }
}
