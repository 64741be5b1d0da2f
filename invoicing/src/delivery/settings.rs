//! The delivery channels from `TOLLGATE_*` settings, validated at start-up.
//!
//! A channel is on when its address is set (`TOLLGATE_STRIPE_API_KEY`, `TOLLGATE_SMTP_HOST`,
//! `TOLLGATE_S3_ENDPOINT`) and off otherwise, so a deployment without Stripe simply has no
//! Stripe step. Secrets are read only from their own settings, never defaulted, and never
//! part of an error message. Settings are read through a lookup function so tests can build
//! them without touching the process environment.

use std::time::Duration;

use super::documents::{ENV_S3_BUCKET, ENV_S3_ENDPOINT, S3Credentials, S3Settings};
use super::email::{
    ENV_SMTP_FROM, ENV_SMTP_PASSWORD, ENV_SMTP_TLS, SmtpCredentials, SmtpSettings, SmtpTls,
};
use super::stripe::{
    DEFAULT_STRIPE_BASE_URL, ENV_STRIPE_API_KEY, ENV_STRIPE_BASE_URL, StripeApiKey, StripeSettings,
};
use super::{Deliverer, DeliveryError, DocumentStore, InvoiceMailer, StripeClient};

/// Stripe: timeout of one attempt, in seconds (default 10).
pub const ENV_STRIPE_TIMEOUT_SECONDS: &str = "TOLLGATE_STRIPE_TIMEOUT_SECONDS";
/// SMTP server host; unset, no email step.
pub const ENV_SMTP_HOST: &str = "TOLLGATE_SMTP_HOST";
/// SMTP port (default 587, or 465 with `tls`).
pub const ENV_SMTP_PORT: &str = "TOLLGATE_SMTP_PORT";
/// SMTP login name (with `TOLLGATE_SMTP_PASSWORD`).
pub const ENV_SMTP_USERNAME: &str = "TOLLGATE_SMTP_USERNAME";
/// Object store region (default `us-east-1`).
pub const ENV_S3_REGION: &str = "TOLLGATE_S3_REGION";
/// `true` (default) for path-style addressing, `false` for virtual-host style.
pub const ENV_S3_PATH_STYLE: &str = "TOLLGATE_S3_PATH_STYLE";
/// Object store access key id.
pub const ENV_S3_ACCESS_KEY_ID: &str = "TOLLGATE_S3_ACCESS_KEY_ID";
/// Object store secret access key.
pub const ENV_S3_SECRET_ACCESS_KEY: &str = "TOLLGATE_S3_SECRET_ACCESS_KEY";

fn invalid(setting: &'static str, reason: &str) -> DeliveryError {
    DeliveryError::InvalidSetting {
        setting,
        reason: reason.to_owned(),
    }
}

fn required(
    get: &impl Fn(&str) -> Option<String>,
    setting: &'static str,
    because: &str,
) -> Result<String, DeliveryError> {
    get(setting)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| invalid(setting, &format!("must be set when {because} is")))
}

fn number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    setting: &'static str,
    default: T,
) -> Result<T, DeliveryError> {
    match get(setting) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|_| invalid(setting, "must be a whole number")),
    }
}

/// Builds the deliverer from settings looked up by `get` (e.g. `|k| std::env::var(k).ok()`).
pub fn deliverer_from(get: impl Fn(&str) -> Option<String>) -> Result<Deliverer, DeliveryError> {
    let mut deliverer = Deliverer::default();
    if let Some(key) = get(ENV_STRIPE_API_KEY).filter(|v| !v.trim().is_empty()) {
        let base_url = get(ENV_STRIPE_BASE_URL).unwrap_or_else(|| DEFAULT_STRIPE_BASE_URL.into());
        let mut settings = StripeSettings::new(&base_url, StripeApiKey::parse(&key)?)?;
        let timeout: u64 = number(&get, ENV_STRIPE_TIMEOUT_SECONDS, 10)?;
        if timeout == 0 {
            return Err(invalid(ENV_STRIPE_TIMEOUT_SECONDS, "must be at least 1"));
        }
        settings.timeout = Duration::from_secs(timeout);
        deliverer.stripe = Some(StripeClient::new(settings)?);
    }
    if let Some(host) = get(ENV_SMTP_HOST).filter(|v| !v.trim().is_empty()) {
        let tls = SmtpTls::parse(&get(ENV_SMTP_TLS).unwrap_or_else(|| "starttls".into()))?;
        let default_port = if tls == SmtpTls::Tls { 465 } else { 587 };
        let credentials = match (get(ENV_SMTP_USERNAME), get(ENV_SMTP_PASSWORD)) {
            (Some(username), Some(password)) => Some(SmtpCredentials { username, password }),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    ENV_SMTP_USERNAME,
                    "set both TOLLGATE_SMTP_USERNAME and TOLLGATE_SMTP_PASSWORD, or neither",
                ));
            }
        };
        deliverer.mailer = Some(InvoiceMailer::new(&SmtpSettings {
            host,
            port: number(&get, ENV_SMTP_PORT, default_port)?,
            tls,
            credentials,
            from: required(&get, ENV_SMTP_FROM, ENV_SMTP_HOST)?,
            timeout: Duration::from_secs(30),
        })?);
    }
    deliverer.documents = document_store_from(&get)?;
    Ok(deliverer)
}

/// The document store from `TOLLGATE_S3_*`, or `None` when `TOLLGATE_S3_ENDPOINT` is unset.
pub fn document_store_from(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<DocumentStore>, DeliveryError> {
    let Some(endpoint) = get(ENV_S3_ENDPOINT).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let path_style = match get(ENV_S3_PATH_STYLE).as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(invalid(ENV_S3_PATH_STYLE, "must be true or false")),
    };
    Ok(Some(DocumentStore::new(&S3Settings {
        endpoint,
        bucket: required(&get, ENV_S3_BUCKET, ENV_S3_ENDPOINT)?,
        region: get(ENV_S3_REGION).unwrap_or_else(|| "us-east-1".into()),
        path_style,
        credentials: S3Credentials {
            access_key_id: required(&get, ENV_S3_ACCESS_KEY_ID, ENV_S3_ENDPOINT)?,
            secret_access_key: required(&get, ENV_S3_SECRET_ACCESS_KEY, ENV_S3_ENDPOINT)?,
        },
        timeout: Duration::from_secs(30),
    })?))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn nothing_set_means_no_channels() {
        assert!(deliverer_from(lookup(&[])).unwrap().steps().is_empty());
    }

    #[test]
    fn every_channel_is_built_from_its_settings() {
        let deliverer = deliverer_from(lookup(&[
            (ENV_STRIPE_API_KEY, "sk_test_0123456789"),
            (ENV_STRIPE_BASE_URL, "http://127.0.0.1:9"),
            (ENV_SMTP_HOST, "127.0.0.1"),
            (ENV_SMTP_TLS, "none"),
            (ENV_SMTP_PORT, "2525"),
            (ENV_SMTP_FROM, "billing@example.com"),
            (ENV_S3_ENDPOINT, "http://127.0.0.1:9000"),
            (ENV_S3_BUCKET, "invoices"),
            (ENV_S3_ACCESS_KEY_ID, "id"),
            (ENV_S3_SECRET_ACCESS_KEY, "secret"),
        ]))
        .unwrap();
        assert_eq!(deliverer.steps().len(), 3);
    }

    #[test]
    fn missing_companions_and_bad_values_name_the_setting_not_the_value() {
        let error = deliverer_from(lookup(&[
            (ENV_S3_ENDPOINT, "http://h"),
            (ENV_S3_BUCKET, "b"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(error.contains(ENV_S3_ACCESS_KEY_ID), "{error}");
        let error = deliverer_from(lookup(&[(ENV_STRIPE_API_KEY, "pk_live_secretvalue")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(ENV_STRIPE_API_KEY) && !error.contains("secretvalue"),
            "{error}"
        );
        let error = deliverer_from(lookup(&[
            (ENV_SMTP_HOST, "h"),
            (ENV_SMTP_FROM, "a@b"),
            (ENV_SMTP_PASSWORD, "hunter2"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(ENV_SMTP_USERNAME) && !error.contains("hunter2"),
            "{error}"
        );
    }
}
