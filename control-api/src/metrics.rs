//! Prometheus metrics of the control API, served on the admin listener. Labels are bounded:
//! method, status class, outcome. New metrics are registered in [`ApiMetrics::new`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tollgate_core::metrics_exposition::{self, Exposition};

use crate::billing_metrics::BillingMetrics;

/// Labels of a served request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method (only the standard ones; others are `other`).
    pub method: &'static str,
    /// `2xx`, `4xx`, ...
    pub status_class: &'static str,
}

/// Labels of a login attempt.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    /// `success`, `failure` or `throttled`.
    pub outcome: &'static str,
}

/// The metrics and the registry that renders them.
#[derive(Debug)]
pub struct ApiMetrics {
    registry: Registry,
    /// Billing gauges, read from the database by a refresher task.
    pub billing: BillingMetrics,
    /// Requests served.
    pub requests: Family<RequestLabels, Counter>,
    /// Login attempts by outcome.
    pub logins: Family<LoginLabels, Counter>,
}

impl ApiMetrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let billing = BillingMetrics::register(&mut root);
        let registry = root.sub_registry_with_prefix("tollgate_control_api");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served", requests.clone());
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "login_attempts",
            "Login attempts by outcome",
            logins.clone(),
        );
        Self {
            registry: root,
            billing,
            requests,
            logins,
        }
    }

    /// Counts a served request.
    pub fn observe_request(&self, method: &str, status: u16) {
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "OPTIONS" => "OPTIONS",
            "HEAD" => "HEAD",
            _ => "other",
        };
        let status_class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&RequestLabels {
                method,
                status_class,
            })
            .inc();
    }

    /// Counts a login attempt.
    pub fn observe_login(&self, outcome: &'static str) {
        self.logins.get_or_create(&LoginLabels { outcome }).inc();
    }

    /// The exposition in `format`.
    pub fn render(&self, format: Exposition) -> Result<String, std::fmt::Error> {
        metrics_exposition::render(&self.registry, format)
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}
