//! `/stats` in Envoy's text and JSON shapes, and the admin query that selects the stats.

use super::histogram::{DEFAULT_BUCKETS, HistogramStatistics, SUPPORTED_QUANTILES};
use super::registry::{HistStat, Snapshot};
use std::fmt::Write;

/// `format=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `name: value` lines (the default).
    #[default]
    Text,
    /// `format=json`.
    Json,
    /// `format=prometheus` (also `/stats/prometheus`).
    Prometheus,
}

/// `type=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatsType {
    /// `All` (the default).
    #[default]
    All,
    /// `Counters`.
    Counters,
    /// `Gauges`.
    Gauges,
    /// `Histograms`.
    Histograms,
    /// `TextReadouts` (tern has none).
    TextReadouts,
}

/// `histogram_buckets=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BucketsMode {
    /// Quantiles (`summary`, or unset).
    #[default]
    Summary,
    /// `cumulative`: values at or below each bucket bound.
    Cumulative,
    /// `disjoint`: values in each bucket alone.
    Disjoint,
}

/// The admin query of `/stats` and `/stats/prometheus`.
#[derive(Debug, Clone, Default)]
pub struct StatsQuery {
    /// `filter=`: an RE2-style regex searched in the stat name.
    pub filter: Option<regex::Regex>,
    /// `usedonly`: only stats that were ever written.
    pub used_only: bool,
    /// `format=`.
    pub format: Format,
    /// `type=`.
    pub stats_type: StatsType,
    /// `histogram_buckets=`.
    pub buckets: BucketsMode,
}

impl StatsQuery {
    /// Parse the query string of an admin request (without the `?`). Errors are the admin's
    /// 400 body.
    pub fn parse(query: &str) -> Result<Self, String> {
        let mut q = StatsQuery::default();
        for (k, v) in crate::protocol::query::parse(query) {
            match k.as_str() {
                "filter" if !v.is_empty() => {
                    q.filter =
                        Some(regex::Regex::new(&v).map_err(|e| format!("Invalid re2 regex: {e}"))?);
                }
                "usedonly" => q.used_only = true,
                "format" => {
                    q.format = match v.as_str() {
                        "json" => Format::Json,
                        "prometheus" => Format::Prometheus,
                        "text" | "" => Format::Text,
                        _ => return Err("usage: /stats?format=(json|prometheus|text)".into()),
                    }
                }
                "type" => {
                    q.stats_type = match v.as_str() {
                        "All" => StatsType::All,
                        "Counters" => StatsType::Counters,
                        "Gauges" => StatsType::Gauges,
                        "Histograms" => StatsType::Histograms,
                        "TextReadouts" => StatsType::TextReadouts,
                        _ => return Err("invalid &type= param".into()),
                    }
                }
                "histogram_buckets" => {
                    q.buckets = match v.as_str() {
                        "cumulative" => BucketsMode::Cumulative,
                        "disjoint" => BucketsMode::Disjoint,
                        "summary" | "none" | "" => BucketsMode::Summary,
                        _ => {
                            return Err(
                                "usage: /stats?histogram_buckets=(cumulative|disjoint|summary|none)"
                                    .into(),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// Whether the name passes `filter`.
    pub fn matches(&self, name: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| f.is_match(name))
    }

    /// Whether stats of this type are selected.
    pub fn wants(&self, t: StatsType) -> bool {
        self.stats_type == StatsType::All || self.stats_type == t
    }
}

/// A double as fmt's `{}` prints it: the shortest form that reads back the same, `nan`.
pub(crate) fn fmt_double(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        return exp_form(&format!("{x:e}"));
    }
    format!("{x}")
}

/// `1.8e6` -> `1.8e+06` (C's exponent form).
fn exp_form(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s.to_owned(),
    }
}

/// C's `%.<precision>g`.
pub(crate) fn fmt_g(x: f64, precision: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if !x.is_finite() {
        return fmt_double(x);
    }
    let p = precision.max(1);
    let sci = format!("{:.*e}", p - 1, x);
    let exp: i32 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let strip = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    if exp < -4 || exp >= p as i32 {
        let (m, _) = sci.split_once('e').unwrap_or((&sci, ""));
        exp_form(&format!("{}e{exp}", strip(m.to_owned())))
    } else {
        strip(format!("{:.*}", (p as i32 - 1 - exp).max(0) as usize, x))
    }
}

fn quantile_summary(h: &HistStat) -> String {
    if !h.used {
        return "No recorded values".into();
    }
    let mut out = String::new();
    for (i, q) in SUPPORTED_QUANTILES.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(
            out,
            "P{}({},{})",
            fmt_g(q * 100.0, 6),
            fmt_double(h.interval.quantiles[i]),
            fmt_double(h.cumulative.quantiles[i])
        );
    }
    out
}

/// Per-bucket counts: cumulative, or each bucket alone.
fn bucket_counts(s: &HistogramStatistics, mode: BucketsMode) -> [u64; 19] {
    let mut b = s.buckets;
    if mode == BucketsMode::Disjoint {
        for i in (1..b.len()).rev() {
            b[i] -= b[i - 1];
        }
    }
    b
}

fn bucket_summary(h: &HistStat, mode: BucketsMode) -> String {
    let interval = bucket_counts(&h.interval, mode);
    let cumulative = bucket_counts(&h.cumulative, mode);
    let mut out = String::new();
    for (i, bound) in DEFAULT_BUCKETS.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(
            out,
            "B{}({},{})",
            fmt_g(*bound, 6),
            interval[i],
            cumulative[i]
        );
    }
    out
}

/// Counters and gauges with their values as text, sorted by name.
fn scalar_values(s: &Snapshot) -> Vec<(&str, String)> {
    let mut v: Vec<(&str, String)> = s
        .counters
        .iter()
        .map(|c| (c.name.as_str(), c.value.to_string()))
        .chain(
            s.gauges
                .iter()
                .map(|g| (g.name.as_str(), g.value.to_string())),
        )
        .collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// `/stats` text.
pub(crate) fn text(s: &Snapshot, q: &StatsQuery) -> String {
    let lines = scalar_values(s);
    let mut out = String::new();
    for (name, v) in lines {
        let _ = writeln!(out, "{name}: {v}");
    }
    for h in &s.histograms {
        let summary = match q.buckets {
            BucketsMode::Summary => quantile_summary(h),
            mode => bucket_summary(h, mode),
        };
        let _ = writeln!(out, "{}: {summary}", h.name);
    }
    out
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn json_number(x: f64) -> String {
    if x.is_finite() {
        fmt_double(x)
    } else {
        "null".into()
    }
}

/// `/stats?format=json`.
pub(crate) fn json(s: &Snapshot, q: &StatsQuery) -> String {
    let items = scalar_values(s);
    let mut parts: Vec<String> = items
        .into_iter()
        .map(|(n, v)| format!("{{\"name\":{},\"value\":{v}}}", json_str(n)))
        .collect();
    if !s.histograms.is_empty() {
        parts.push(match q.buckets {
            BucketsMode::Summary => json_quantiles(&s.histograms),
            mode => json_buckets(&s.histograms, mode),
        });
    }
    format!("{{\"stats\":[{}]}}", parts.join(","))
}

fn json_quantiles(hs: &[HistStat]) -> String {
    let supported: Vec<String> = SUPPORTED_QUANTILES
        .iter()
        .map(|q| fmt_g(q * 100.0, 6))
        .collect();
    let computed: Vec<String> = hs
        .iter()
        .map(|h| {
            let values: Vec<String> = (0..SUPPORTED_QUANTILES.len())
                .map(|i| {
                    format!(
                        "{{\"cumulative\":{},\"interval\":{}}}",
                        json_number(h.cumulative.quantiles[i]),
                        json_number(h.interval.quantiles[i])
                    )
                })
                .collect();
            format!(
                "{{\"name\":{},\"values\":[{}]}}",
                json_str(&h.name),
                values.join(",")
            )
        })
        .collect();
    format!(
        "{{\"histograms\":{{\"supported_quantiles\":[{}],\"computed_quantiles\":[{}]}}}}",
        supported.join(","),
        computed.join(",")
    )
}

fn json_buckets(hs: &[HistStat], mode: BucketsMode) -> String {
    let list: Vec<String> = hs
        .iter()
        .map(|h| {
            let interval = bucket_counts(&h.interval, mode);
            let cumulative = bucket_counts(&h.cumulative, mode);
            let buckets: Vec<String> = DEFAULT_BUCKETS
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    format!(
                        "{{\"upper_bound\":{},\"interval\":{},\"cumulative\":{}}}",
                        fmt_double(*b),
                        interval[i],
                        cumulative[i]
                    )
                })
                .collect();
            format!(
                "{{\"name\":{},\"buckets\":[{}]}}",
                json_str(&h.name),
                buckets.join(",")
            )
        })
        .collect();
    format!("{{\"histograms\":[{}]}}", list.join(","))
}
