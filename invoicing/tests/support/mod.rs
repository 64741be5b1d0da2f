//! Shared set-up of the delivery tests: a finalized invoice in a private database, delivery
//! channels pointed at the local SMTP and S3 servers and at a Stripe stand-in, and readers
//! for what arrived (the maildir, the bucket, `pdftotext`).
// Each test binary uses a different part of the support code.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::Client;
use tollgate_invoicing::delivery::documents::S3Credentials;
use tollgate_invoicing::delivery::email::SmtpTls;
use tollgate_invoicing::delivery::retry::RetryPolicy;
use tollgate_invoicing::delivery::stripe::StripeApiKey;
use tollgate_invoicing::delivery::{
    DocumentStore, InvoiceMailer, S3Settings, SmtpSettings, StripeClient, StripeSettings,
};
use tollgate_test_support::Stack;
use tollgate_test_support::stripe_stand_in::{STAND_IN_API_KEY, StripeStandIn};
use uuid::Uuid;

/// A finalized invoice and its tenant.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub tenant_id: Uuid,
    pub invoice_id: Uuid,
    pub line_ids: Vec<Uuid>,
    pub billing_email: String,
    pub number: String,
    pub total_minor: i64,
}

/// Inserts a tenant (billing email unique to the test) with a finalized two-line invoice.
pub async fn finalized_invoice(client: &mut Client, collection_method: &str) -> Fixture {
    let tenant_id = Uuid::now_v7();
    let slug = format!("t-{}", tenant_id.simple());
    let billing_email = format!("billing-{}@example.com", tenant_id.simple());
    client
        .execute(
            "INSERT INTO tenants (id, slug, name, billing_email, collection_method) \
             VALUES ($1, $2, 'Acme & Söhne', $3, $4)",
            &[&tenant_id, &slug, &billing_email, &collection_method],
        )
        .await
        .unwrap();
    let invoice_id = Uuid::now_v7();
    let line_ids = vec![Uuid::now_v7(), Uuid::now_v7()];
    client
        .execute(
            "INSERT INTO invoices (id, tenant_id, period_start, period_end, currency, status, \
                                   subtotal_minor, total_minor, finalized_at) \
             VALUES ($1, $2, '2026-10-01T00:00:00Z', '2026-11-01T00:00:00Z', 'USD', 'draft', \
                     128190, 128190, NULL)",
            &[&invoice_id, &tenant_id],
        )
        .await
        .unwrap();
    for (position, (line, (kind, description, quantity, price, amount))) in line_ids
        .iter()
        .zip([
            ("base_fee", "Growth plan", 1_i64, "49", 4900_i64),
            (
                "usage",
                "Requests over 1,000,000",
                3_082_250,
                "0.0004",
                123_290,
            ),
        ])
        .enumerate()
    {
        client
            .execute(
                "INSERT INTO invoice_lines (id, invoice_id, position, kind, description, quantity, \
                                            unit_price, amount_minor) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7::text::numeric, $8)",
                &[
                    line,
                    &invoice_id,
                    &i32::try_from(position).unwrap(),
                    &kind,
                    &description,
                    &quantity,
                    &price,
                    &amount,
                ],
            )
            .await
            .unwrap();
    }
    let number = tollgate_invoicing::store::finalize(client, invoice_id)
        .await
        .unwrap()
        .number;
    Fixture {
        tenant_id,
        invoice_id,
        line_ids,
        billing_email,
        number,
        total_minor: 128_190,
    }
}

/// The step record of `step`, if any: (status, attempts, last error).
pub async fn step_record(
    client: &Client,
    invoice_id: Uuid,
    step: &str,
) -> Option<(String, i32, Option<String>)> {
    tollgate_invoicing::store::steps(client, invoice_id)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.step == step)
        .map(|r| (r.status, r.attempts, r.last_error))
}

/// Fast retries: the stand-in answers in microseconds and hangs are cut by a short timeout.
pub fn test_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

/// A Stripe client for `stand_in`.
pub fn stripe_client(stand_in: &StripeStandIn) -> StripeClient {
    let mut settings = StripeSettings::new(
        &stand_in.url(),
        StripeApiKey::parse(STAND_IN_API_KEY).unwrap(),
    )
    .unwrap();
    settings.timeout = Duration::from_millis(500);
    settings.retry = test_retry();
    StripeClient::new(settings).unwrap()
}

/// SMTP settings for the local server, or for `port` (a [`FaultyLink`] in front of it).
pub fn smtp_settings(port: Option<u16>) -> SmtpSettings {
    let stack = Stack::get();
    SmtpSettings {
        host: stack.values["SMTP_HOST"].clone(),
        port: port.unwrap_or_else(|| stack.values["SMTP_PORT"].parse().unwrap()),
        tls: SmtpTls::None,
        credentials: None,
        from: "Tollgate Billing <billing@tollgate.test>".into(),
        timeout: Duration::from_secs(5),
    }
}

pub fn smtp_addr() -> std::net::SocketAddr {
    let stack = Stack::get();
    format!(
        "{}:{}",
        stack.values["SMTP_HOST"], stack.values["SMTP_PORT"]
    )
    .parse()
    .unwrap()
}

pub fn s3_addr() -> std::net::SocketAddr {
    let endpoint = &Stack::get().values["S3_ENDPOINT"];
    endpoint.trim_start_matches("http://").parse().unwrap()
}

/// S3 settings for a bucket of the test's own, at `endpoint` (default: the local server).
pub fn s3_settings(bucket: &str, endpoint: Option<String>) -> S3Settings {
    S3Settings {
        endpoint: endpoint.unwrap_or_else(|| Stack::get().values["S3_ENDPOINT"].clone()),
        bucket: bucket.into(),
        region: "us-east-1".into(),
        path_style: true,
        credentials: S3Credentials {
            access_key_id: "test".into(),
            secret_access_key: "test-secret".into(),
        },
        timeout: Duration::from_secs(5),
    }
}

/// A bucket of the test's own on the local S3 server.
pub async fn test_bucket() -> (String, DocumentStore) {
    let bucket = tollgate_test_support::unique_name("inv").replace('_', "-");
    let store = DocumentStore::new(&s3_settings(&bucket, None)).unwrap();
    store.ensure_bucket().await.unwrap();
    (bucket, store)
}

pub fn mailer(port: Option<u16>) -> InvoiceMailer {
    InvoiceMailer::new(&smtp_settings(port)).unwrap()
}

/// One email as it landed in the SMTP server's maildir.
#[derive(Debug)]
pub struct ReceivedEmail {
    pub headers: String,
    pub html: String,
    pub pdf: Vec<u8>,
    pub pdf_name: String,
}

fn maildir() -> PathBuf {
    PathBuf::from(&Stack::get().values["SMTP_MAILDIR"]).join("new")
}

/// Every message addressed to `recipient` (the server writes each before answering 250).
pub fn emails_to(recipient: &str) -> Vec<ReceivedEmail> {
    let Ok(entries) = std::fs::read_dir(maildir()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let (headers, _) = text.split_once("\n\n").unwrap_or((&text, ""));
        if headers
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("to:") && l.contains(recipient))
        {
            found.push(parse_email(&text));
        }
    }
    found
}

fn parse_email(text: &str) -> ReceivedEmail {
    let text = text.replace("\r\n", "\n");
    let (headers, body) = text.split_once("\n\n").unwrap();
    let unfolded = headers.replace("\n ", " ").replace("\n\t", " ");
    let boundary = unfolded
        .split("boundary=")
        .nth(1)
        .expect("a multipart message")
        .trim_start_matches('"')
        .split(['"', ';', '\n'])
        .next()
        .unwrap()
        .to_owned();
    let mut html = String::new();
    let mut pdf = Vec::new();
    let mut pdf_name = String::new();
    for part in body.split(&format!("--{boundary}")) {
        let Some((part_headers, part_body)) = part.trim_start_matches('\n').split_once("\n\n")
        else {
            continue;
        };
        // The line break before a boundary belongs to the boundary (RFC 2046).
        let part_body = part_body.strip_suffix('\n').unwrap_or(part_body);
        let lower = part_headers.to_ascii_lowercase();
        let decoded = if lower.contains("content-transfer-encoding: base64") {
            decode_base64(part_body)
        } else if lower.contains("content-transfer-encoding: quoted-printable") {
            decode_quoted_printable(part_body)
        } else {
            part_body.as_bytes().to_vec()
        };
        if lower.contains("content-type: text/html") {
            html = String::from_utf8(decoded).unwrap();
        } else if lower.contains("content-type: application/pdf") {
            pdf = decoded;
            pdf_name = part_headers
                .split("filename=")
                .nth(1)
                .unwrap_or_default()
                .trim_start_matches('"')
                .split(['"', ';', '\n'])
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    }
    ReceivedEmail {
        headers: unfolded,
        html,
        pdf,
        pdf_name,
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .unwrap()
}

fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(byte) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The text of a PDF, as `pdftotext` (poppler) extracts it.
pub fn pdf_text(pdf: &[u8]) -> String {
    let dir = std::env::temp_dir().join(tollgate_test_support::unique_name("pdf"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("invoice.pdf");
    std::fs::write(&path, pdf).unwrap();
    let output = std::process::Command::new("pdftotext")
        .args(["-layout", path.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils; scripts/stack.sh installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "pdftotext failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Waits until `condition` holds, up to `limit`.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}
