//! `/metrics` for every service: the exposition format the scraper asked for, from one
//! `prometheus-client` registry.
//!
//! `prometheus-client` writes OpenMetrics only. Served to a scraper that asked for the
//! Prometheus text format 0.0.4 (or asked for nothing, as `curl` and `promtool check metrics`
//! do), OpenMetrics reads wrongly: a counter's `# HELP`/`# TYPE` name `x` but its sample is
//! `x_total`, so the sample has no help text, and `# UNIT`/`# EOF` are not part of that
//! format. [`render`] therefore serves OpenMetrics only when the `Accept` header asks for it
//! ([`Exposition::negotiate`]) and converts it to 0.0.4 otherwise. Services keep registering
//! metrics in their own registries as before; only the rendering is shared.

use prometheus_client::registry::Registry;

/// The two text formats `/metrics` can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// Prometheus text format 0.0.4, the default.
    PrometheusText,
    /// OpenMetrics 1.0.0, when the scraper's `Accept` asks for it.
    OpenMetrics,
}

impl Exposition {
    /// The format for a request's `Accept` header: OpenMetrics when a media range of
    /// `application/openmetrics-text` with a non-zero `q` is listed (as Prometheus sends
    /// it), the 0.0.4 text format otherwise.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let asks_for_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut params = range.split(';');
                let media = params.next().unwrap_or("").trim();
                let q = params
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                media.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
            })
        });
        if asks_for_openmetrics {
            Self::OpenMetrics
        } else {
            Self::PrometheusText
        }
    }

    /// The response's `Content-Type`.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Renders `registry` in `format`.
pub fn render(registry: &Registry, format: Exposition) -> Result<String, std::fmt::Error> {
    let mut openmetrics = String::new();
    prometheus_client::encoding::text::encode(&mut openmetrics, registry)?;
    Ok(match format {
        Exposition::OpenMetrics => openmetrics,
        Exposition::PrometheusText => to_prometheus_text(&openmetrics),
    })
}

/// Converts `prometheus-client`'s OpenMetrics text to the Prometheus text format 0.0.4:
/// counter metadata takes the `_total` name its samples have, info metrics become gauges
/// named `_info`, types 0.0.4 lacks become `untyped`, and `# UNIT`, `# EOF` and exemplars go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some((_, text)) = help.take() {
                out.push_str("# HELP ");
                out.push_str(&name);
                out.push(' ');
                out.push_str(text);
                out.push('\n');
            }
            out.push_str("# TYPE ");
            out.push_str(&name);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
        } else if line.starts_with('#') {
            // `# UNIT`, `# EOF`: OpenMetrics only.
        } else if !line.is_empty() {
            // An exemplar follows the value after " # ".
            out.push_str(line.split_once(" # ").map_or(line, |(sample, _)| sample));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::metrics::info::Info;
    use prometheus_client::registry::Unit;

    use super::*;

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        outcome: &'static str,
    }

    fn registry() -> Registry {
        let mut registry = Registry::with_prefix("svc");
        let requests = Family::<Labels, Counter>::default();
        requests.get_or_create(&Labels { outcome: "ok" }).inc_by(3);
        registry.register("requests", "Requests served", requests);
        let depth = Gauge::<i64>::default();
        depth.set(7);
        registry.register("queue_depth", "Events queued", depth);
        let latency = Histogram::new([0.1, 1.0]);
        latency.observe(0.5);
        registry.register_with_unit("latency", "Request latency", Unit::Seconds, latency);
        registry.register("build", "Build", Info::new(vec![("version", "1.0")]));
        registry
    }

    #[test]
    fn the_text_format_names_counter_metadata_after_its_samples_and_drops_openmetrics_lines() {
        let text = render(&registry(), Exposition::PrometheusText).unwrap();
        assert!(
            text.contains(
                "# HELP svc_requests_total Requests served.\n\
                 # TYPE svc_requests_total counter\n\
                 svc_requests_total{outcome=\"ok\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE svc_queue_depth gauge\nsvc_queue_depth 7\n"));
        assert!(text.contains("# TYPE svc_latency_seconds histogram\n"));
        assert!(text.contains("svc_latency_seconds_bucket{le=\"1.0\"} 1\n"));
        assert!(text.contains("# TYPE svc_build_info gauge\nsvc_build_info{version=\"1.0\"} 1\n"));
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|family| text.contains(&format!("# TYPE {family} histogram")))
                .unwrap_or(name);
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{name} has no help text:\n{text}"
            );
        }
    }

    #[test]
    fn openmetrics_is_served_only_when_asked_for() {
        let prometheus_scrape = "application/openmetrics-text;version=1.0.0,\
             application/openmetrics-text;version=0.0.1;q=0.75,\
             text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(
            Exposition::negotiate(Some(prometheus_scrape)),
            Exposition::OpenMetrics
        );
        for accept in [
            None,
            Some("*/*"),
            Some("text/plain;version=0.0.4"),
            Some("application/openmetrics-text;q=0, text/plain"),
        ] {
            assert_eq!(
                Exposition::negotiate(accept),
                Exposition::PrometheusText,
                "{accept:?}"
            );
        }
        let open = render(&registry(), Exposition::OpenMetrics).unwrap();
        assert!(open.ends_with("# EOF\n"));
        assert_eq!(
            Exposition::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert!(
            Exposition::PrometheusText
                .content_type()
                .starts_with("text/plain; version=0.0.4")
        );
    }
}
