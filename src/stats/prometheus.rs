//! `/stats/prometheus`: the Prometheus text exposition format 0.0.4 (not OpenMetrics), as
//! Envoy writes it. Names are the tag-extracted names with `envoy_` in front and every
//! character outside `[a-zA-Z0-9_]` turned into `_`; tags become labels. Stats that share a
//! tag-extracted name form one family under one `# TYPE` line. Counters first, then gauges,
//! then histograms (`_bucket{le=..}`, `_sum`, `_count`), each family sorted by name.
//!
//! The text is written by hand rather than with the `prometheus` crate: that crate's registry
//! would need every stat registered again as its own object (with its own atomics), which the
//! data path must not pay for, and the families and label order must follow Envoy's tag
//! extraction exactly.

use super::histogram::DEFAULT_BUCKETS;
use super::registry::{HistStat, Snapshot, Stat};
use super::render::fmt_g;
use super::tags::{Tag, TagProducer};
use std::collections::BTreeMap;
use std::fmt::Write;

/// `[a-zA-Z0-9_]` kept, anything else `_`; a leading digit gets a `_` in front.
pub(crate) fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The Prometheus name of a tag-extracted name: `envoy_<name>`, or `<rest>` for a stat in a
/// custom namespace (`<namespace>.<rest>`).
fn metric_name(extracted: &str, namespaces: &[String]) -> String {
    for ns in namespaces {
        if let Some(rest) = extracted
            .strip_prefix(ns.as_str())
            .and_then(|r| r.strip_prefix('.'))
        {
            return sanitize(rest);
        }
    }
    format!("envoy_{}", sanitize(extracted))
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn labels(tags: &[Tag], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = tags
        .iter()
        .map(|t| format!("{}=\"{}\"", sanitize(&t.name), escape(&t.value)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    format!("{{{}}}", parts.join(","))
}

/// The tag-extracted name and tags of a stat.
fn extract(name: &str, tagged: &Option<(String, Vec<Tag>)>, p: &TagProducer) -> (String, Vec<Tag>) {
    match tagged {
        Some((n, t)) => (n.clone(), t.clone()),
        None => p.produce(name),
    }
}

type Families<'a, T> = BTreeMap<String, Vec<(Vec<Tag>, &'a T)>>;

fn families<'a, T>(stats: &'a [Stat<T>], p: &TagProducer) -> Families<'a, T> {
    let mut f: Families<'a, T> = BTreeMap::new();
    for s in stats {
        let (name, tags) = extract(&s.name, &s.tagged, p);
        f.entry(name).or_default().push((tags, &s.value));
    }
    f
}

fn write_simple<T: std::fmt::Display>(
    out: &mut String,
    f: Families<'_, T>,
    kind: &str,
    namespaces: &[String],
) {
    for (name, metrics) in f {
        let pname = metric_name(&name, namespaces);
        let _ = writeln!(out, "# TYPE {pname} {kind}");
        for (tags, v) in metrics {
            let _ = writeln!(out, "{pname}{} {v}", labels(&tags, None));
        }
    }
}

/// Render a snapshot.
pub(crate) fn render(s: &Snapshot, p: &TagProducer, namespaces: &[String]) -> String {
    let mut out = String::new();
    write_simple(&mut out, families(&s.counters, p), "counter", namespaces);
    write_simple(&mut out, families(&s.gauges, p), "gauge", namespaces);
    let mut hist: BTreeMap<String, Vec<(Vec<Tag>, &HistStat)>> = BTreeMap::new();
    for h in &s.histograms {
        let (name, tags) = extract(&h.name, &h.tagged, p);
        hist.entry(name).or_default().push((tags, h));
    }
    for (name, metrics) in hist {
        let pname = metric_name(&name, namespaces);
        let _ = writeln!(out, "# TYPE {pname} histogram");
        for (tags, h) in metrics {
            let c = &h.cumulative;
            for (i, bound) in DEFAULT_BUCKETS.iter().enumerate() {
                let le = fmt_g(*bound, 32);
                let _ = writeln!(
                    out,
                    "{pname}_bucket{} {}",
                    labels(&tags, Some(("le", &le))),
                    c.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "{pname}_bucket{} {}",
                labels(&tags, Some(("le", "+Inf"))),
                c.count
            );
            let _ = writeln!(
                out,
                "{pname}_sum{} {}",
                labels(&tags, None),
                fmt_g(c.sum, 32)
            );
            let _ = writeln!(out, "{pname}_count{} {}", labels(&tags, None), c.count);
        }
    }
    out
}
