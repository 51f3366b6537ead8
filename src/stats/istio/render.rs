//! Istio's metrics under Envoy's names: the `istiocustom` namespace and the flat `/stats` name
//! of a series (`istiocustom.istio_requests_total.reporter.destination.source_workload...`).
//! Prometheus exposition is the store's (see `snapshot.rs`).

use super::labels::Label;

/// Envoy's custom stat namespace for Istio's metrics.
pub const STAT_NAMESPACE: &str = "istiocustom";

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
    fn envoy_names_join_tags_with_dots() {
        let labels = l(&[("reporter", "destination"), ("grpc_response_status", "")]);
        assert_eq!(
            envoy_name("istio_requests_total", &labels),
            "istiocustom.istio_requests_total.reporter.destination.grpc_response_status"
        );
    }
}
