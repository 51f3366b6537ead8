//! Exposition of Istio's metrics: Prometheus text format 0.0.4 (what Envoy's
//! `/stats/prometheus` writes for its `istiocustom` namespace: the namespace stripped, no
//! `envoy_` prefix) and Envoy's flat names for `/stats`
//! (`istiocustom.istio_requests_total.reporter.destination.source_workload.productpage-v1...`).

use super::labels::Label;
use super::registry::{Kind, SeriesValue, Snapshot};
use std::fmt::Write;

/// Envoy's custom stat namespace for Istio's metrics.
pub const STAT_NAMESPACE: &str = "istiocustom";

/// Which families to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Only {
    All,
    Counters,
    Gauges,
    Histograms,
}

/// Prometheus names allow `[a-zA-Z0-9_]`; anything else becomes `_` (as Envoy does).
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn labels_text(labels: &[Label]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&sanitize(k));
        s.push_str("=\"");
        escape_into(&mut s, v);
        s.push('"');
    }
    s
}

/// A bucket bound as Envoy prints it (`%.32g`: plain digits for every bound Envoy uses).
fn bound_text(b: f64) -> String {
    if b.fract() == 0.0 && b.abs() < 1e21 {
        format!("{b:.0}")
    } else {
        format!("{b}")
    }
}

/// Write the families of `snap` in Prometheus text format.
pub(crate) fn prometheus(snap: &Snapshot, only: Only, out: &mut String) {
    for (name, kind, series) in snap {
        let (ty, wanted) = match kind {
            Kind::Counter => ("counter", only == Only::Counters),
            Kind::Gauge => ("gauge", only == Only::Gauges),
            Kind::Histogram(_) => ("histogram", only == Only::Histograms),
        };
        if only != Only::All && !wanted {
            continue;
        }
        let name = sanitize(name);
        // Prometheus metric names must not start with a digit; Envoy leaves such stats out.
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let _ = writeln!(out, "# TYPE {name} {ty}");
        for (labels, value) in series {
            let tags = labels_text(labels);
            match value {
                SeriesValue::Scalar(v) => {
                    let _ = writeln!(out, "{name}{{{tags}}} {v}");
                }
                SeriesValue::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    let sep = if tags.is_empty() { "" } else { "," };
                    for (bound, n) in buckets {
                        let b = bound_text(*bound);
                        let _ = writeln!(out, "{name}_bucket{{{tags}{sep}le=\"{b}\"}} {n}");
                    }
                    let _ = writeln!(out, "{name}_bucket{{{tags}{sep}le=\"+Inf\"}} {count}");
                    let _ = writeln!(out, "{name}_sum{{{tags}}} {sum}");
                    let _ = writeln!(out, "{name}_count{{{tags}}} {count}");
                }
            }
        }
        out.push('\n');
    }
}

/// Envoy's flat name of a tagged stat: the namespace, the metric and each tag name and value,
/// joined with dots (empty parts skipped, as Envoy's symbol table joins them).
pub fn envoy_name(metric: &str, labels: &[Label]) -> String {
    let mut s = format!("{STAT_NAMESPACE}.{metric}");
    for (k, v) in labels {
        for part in [&**k, &**v] {
            if !part.is_empty() {
                s.push('.');
                s.push_str(part);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn l(v: &[(&str, &str)]) -> Arc<[Label]> {
        v.iter()
            .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
            .collect()
    }

    #[test]
    fn prometheus_text_matches_envoys_shape() {
        let snap: Snapshot = vec![
            (
                "istio_requests_total".into(),
                Kind::Counter,
                vec![(
                    l(&[("reporter", "source"), ("x-y", "a\"b")]),
                    SeriesValue::Scalar(2),
                )],
            ),
            (
                "istio_request_bytes".into(),
                Kind::Histogram(Arc::from(&[0.5, 1.0, 3600000.0][..])),
                vec![(
                    l(&[("reporter", "source")]),
                    SeriesValue::Histogram {
                        buckets: vec![(0.5, 0), (1.0, 1), (3600000.0, 2)],
                        sum: 7,
                        count: 3,
                    },
                )],
            ),
        ];
        let mut out = String::new();
        prometheus(&snap, Only::All, &mut out);
        assert_eq!(
            out,
            "# TYPE istio_requests_total counter\n\
             istio_requests_total{reporter=\"source\",x_y=\"a\\\"b\"} 2\n\
             \n\
             # TYPE istio_request_bytes histogram\n\
             istio_request_bytes_bucket{reporter=\"source\",le=\"0.5\"} 0\n\
             istio_request_bytes_bucket{reporter=\"source\",le=\"1\"} 1\n\
             istio_request_bytes_bucket{reporter=\"source\",le=\"3600000\"} 2\n\
             istio_request_bytes_bucket{reporter=\"source\",le=\"+Inf\"} 3\n\
             istio_request_bytes_sum{reporter=\"source\"} 7\n\
             istio_request_bytes_count{reporter=\"source\"} 3\n\
             \n"
        );
        let mut counters = String::new();
        prometheus(&snap, Only::Counters, &mut counters);
        assert!(counters.starts_with("# TYPE istio_requests_total counter\n"));
        assert!(!counters.contains("histogram"));
    }

    #[test]
    fn envoy_names_join_tags_with_dots() {
        let labels = l(&[("reporter", "destination"), ("grpc_response_status", "")]);
        assert_eq!(
            envoy_name("istio_requests_total", &labels),
            "istiocustom.istio_requests_total.reporter.destination.grpc_response_status"
        );
    }
}
