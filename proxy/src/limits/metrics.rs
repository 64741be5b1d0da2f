//! The limiter's Prometheus metrics. One label (the decision's result, four values); the
//! decision counters are resolved once, so counting is one atomic add.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::LimitVerdict;

/// Limiter metrics.
#[derive(Debug)]
pub struct LimiterMetrics {
    decisions: Family<DecisionLabels, Counter>,
    /// The decision counters by verdict, resolved once: counting is one atomic add.
    by_verdict: [Counter; 4],
    /// Set by the breaker alone (see [`super::breaker`]).
    cluster_available: Gauge,
    sync_duration: Histogram,
    sync_failures: Counter,
    tenants: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    result: &'static str,
}

const VERDICTS: [(LimitVerdict, &str); 4] = [
    (LimitVerdict::Allowed, "allowed"),
    (LimitVerdict::RateLimited, "rate_limited"),
    (LimitVerdict::QuotaExceeded, "quota_exceeded"),
    (LimitVerdict::Unavailable, "unavailable"),
];

impl Default for LimiterMetrics {
    fn default() -> Self {
        let decisions = Family::<DecisionLabels, Counter>::default();
        // The family's guard ends with each closure call, before the next lookup.
        let by_verdict =
            VERDICTS.map(|(_, result)| decisions.get_or_create(&DecisionLabels { result }).clone());
        Self {
            decisions,
            by_verdict,
            cluster_available: Gauge::default(),
            sync_duration: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            ]),
            sync_failures: Counter::default(),
            tenants: Gauge::default(),
        }
    }
}

impl LimiterMetrics {
    /// Registers the limiter's metrics.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_limiter_decisions",
            "Limiter decisions by result",
            self.decisions.clone(),
        );
        registry.register(
            "gateway_limiter_cluster_available",
            "1 while the cluster limiter (Redis) is in use, 0 while local fallback limits apply",
            self.cluster_available.clone(),
        );
        registry.register(
            "gateway_limiter_sync_duration_seconds",
            "Round trip of one delayed-sync flush to Redis",
            self.sync_duration.clone(),
        );
        registry.register(
            "gateway_limiter_sync_failures",
            "Failed flushes to Redis",
            self.sync_failures.clone(),
        );
        registry.register(
            "gateway_limiter_tenants",
            "Tenants with limiter state on this node",
            self.tenants.clone(),
        );
    }

    /// The cluster-available gauge, for the breaker, which alone sets it.
    pub(super) fn cluster_available_gauge(&self) -> Gauge {
        self.cluster_available.clone()
    }

    pub(super) fn count(&self, verdict: LimitVerdict) {
        if let Some(index) = VERDICTS.iter().position(|(v, _)| *v == verdict) {
            self.by_verdict[index].inc();
        }
    }

    pub(super) fn sync_succeeded(&self, seconds: f64) {
        self.sync_duration.observe(seconds);
    }

    pub(super) fn sync_failed(&self) {
        self.sync_failures.inc();
    }

    pub(super) fn tenant_added(&self) {
        self.tenants.inc();
    }

    pub(super) fn set_tenants(&self, count: usize) {
        self.tenants.set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}
