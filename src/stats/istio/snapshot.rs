//! Istio's series in the admin's `/stats` views: each series becomes an Envoy stat with its
//! flat name (`istiocustom.istio_requests_total.reporter.destination...`) and explicit tags,
//! so `/stats`, `/stats?format=json` and `/stats/prometheus` list them beside Envoy's own,
//! filtered by the same query (`filter`, `usedonly`, `type`) and the bootstrap's
//! `stats_matcher`, as Envoy treats the stats the Istio filter creates.

use super::IstioMetrics;
use super::STAT_NAMESPACE;
use super::registry::{Kind, SeriesValue};
use super::render::envoy_name;
use crate::stats::StatsQuery;
use crate::stats::histogram::{DEFAULT_BUCKETS, HistogramStatistics, SUPPORTED_QUANTILES};
use crate::stats::matcher::StatsMatcher;
use crate::stats::registry::{HistStat, Snapshot, Stat};
use crate::stats::render::StatsType;
use crate::stats::tags::Tag;

impl IstioMetrics {
    /// Add the series that pass `q` and `matcher` to `snap` (unsorted). Every Istio series
    /// has been written (a series exists only once recorded), so `usedonly` keeps them all.
    pub(crate) fn add_to_snapshot(
        &self,
        snap: &mut Snapshot,
        q: &StatsQuery,
        matcher: &StatsMatcher,
    ) {
        for (metric, kind, series) in self.registry.snapshot() {
            let wanted = match kind {
                Kind::Counter => StatsType::Counters,
                Kind::Gauge => StatsType::Gauges,
                Kind::Histogram(_) => StatsType::Histograms,
            };
            if !q.wants(wanted) {
                continue;
            }
            let extracted = format!("{STAT_NAMESPACE}.{metric}");
            for (labels, value) in series {
                let name = envoy_name(&metric, &labels);
                if !q.matches(&name) || !matcher.accepts(&name) {
                    continue;
                }
                let tags = labels
                    .iter()
                    .map(|(k, v)| Tag {
                        name: k.to_string(),
                        value: v.to_string(),
                    })
                    .collect();
                let tagged = Some((extracted.clone(), tags));
                match value {
                    SeriesValue::Scalar(v) if matches!(kind, Kind::Counter) => {
                        snap.counters.push(Stat {
                            name,
                            value: v,
                            tagged,
                        });
                    }
                    SeriesValue::Scalar(v) => snap.gauges.push(Stat {
                        name,
                        value: i64::try_from(v).unwrap_or(i64::MAX),
                        tagged,
                    }),
                    SeriesValue::Histogram {
                        buckets,
                        sum,
                        count,
                    } => snap.histograms.push(HistStat {
                        name,
                        used: true,
                        cumulative: statistics(&buckets, sum, count),
                        // Istio's series keep no flush intervals: the interval view is empty.
                        interval: statistics(&[], 0, 0),
                        tagged,
                    }),
                }
            }
        }
    }
}

/// Envoy's histogram statistics from Istio's cumulative bucket counts: the count at each
/// default bound is the count at the largest Istio bound not above it, and the quantiles are
/// interpolated linearly inside the bucket where their rank falls (Prometheus'
/// `histogram_quantile`).
fn statistics(buckets: &[(f64, u64)], sum: u64, count: u64) -> HistogramStatistics {
    let mut at_default = [0u64; 19];
    for (i, bound) in DEFAULT_BUCKETS.iter().enumerate() {
        at_default[i] = buckets
            .iter()
            .take_while(|(b, _)| b <= bound)
            .last()
            .map_or(0, |(_, n)| *n);
    }
    let mut quantiles = [f64::NAN; 10];
    if count > 0 {
        for (q, out) in SUPPORTED_QUANTILES.iter().zip(quantiles.iter_mut()) {
            let rank = q * count as f64;
            let mut lower = (0.0, 0u64);
            *out = buckets.last().map_or(0.0, |(b, _)| *b);
            for &(bound, n) in buckets {
                if n as f64 >= rank && n > lower.1 {
                    let frac = (rank - lower.1 as f64) / (n - lower.1) as f64;
                    *out = lower.0 + (bound - lower.0) * frac;
                    break;
                }
                lower = (bound, n);
            }
        }
    }
    HistogramStatistics {
        count,
        sum: sum as f64,
        quantiles,
        buckets: at_default,
    }
}

#[cfg(test)]
mod tests {
    use super::statistics;

    #[test]
    fn bucket_counts_become_envoy_statistics() {
        // Four samples: two at or below 1 ms, one at or below 5, one at or below 10.
        let b = [(0.5, 0), (1.0, 2), (5.0, 3), (10.0, 4)];
        let s = statistics(&b, 14, 4);
        assert_eq!(s.count, 4);
        assert_eq!(s.sum, 14.0);
        assert_eq!(&s.buckets[..5], &[0, 2, 3, 4, 4]);
        // P0 sits at the first bucket's lower edge, P50 at the end of the second bucket, P100
        // at the last used bound.
        assert_eq!(s.quantiles[0], 0.5);
        assert_eq!(s.quantiles[2], 1.0);
        assert_eq!(s.quantiles[9], 10.0);
        let empty = statistics(&[], 0, 0);
        assert!(empty.quantiles.iter().all(|q| q.is_nan()));
        assert_eq!(empty.buckets, [0; 19]);
    }
}
