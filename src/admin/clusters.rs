//! `/clusters`: every cluster with its circuit breaker thresholds and, per host, its stats,
//! health, weight and locality; Envoy's text lines (`name::host::stat::value`) or, with
//! `?format=json`, `envoy.admin.v3.Clusters`.

use super::config_dump::endpoints::{address, health_status, locality};
use super::json::{pretty, to_json};
use super::{AdminCtx, AdminRequest, Reply, TEXT};
use crate::upstream::cluster::Cluster;
use crate::upstream::host::{Host, HostSet};
use envoy_types::pb::envoy::admin::v3 as admin_pb;
use envoy_types::pb::envoy::config::cluster::v3 as cluster_pb;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use http::StatusCode;
use std::collections::HashSet;
use std::fmt::Write as _;

/// One stat of a host: name, value, and whether it is a gauge.
type HostStat = (&'static str, u64, bool);

/// A host's stats in Envoy's JSON order (counters, then gauges). tern has no per-host
/// pending queue, so Envoy's `rq_pending_active` is not listed.
fn host_stats(h: &Host) -> Vec<HostStat> {
    let s = h.stats();
    vec![
        ("cx_connect_fail", s.cx_connect_fail, false),
        ("cx_total", s.cx_total, false),
        ("rq_error", s.rq_error, false),
        ("rq_success", s.rq_success, false),
        ("rq_timeout", s.rq_timeout, false),
        ("rq_total", s.rq_total, false),
        ("cx_active", s.cx_active, true),
        ("rq_active", s.rq_active, true),
    ]
}

/// `circuit_breakers.thresholds` of a cluster, default and high priority, with Envoy's
/// defaults filled in.
fn thresholds(c: &cluster_pb::Cluster) -> [cluster_pb::circuit_breakers::Thresholds; 2] {
    use core_pb::RoutingPriority;
    let find = |p: RoutingPriority| {
        c.circuit_breakers
            .as_ref()
            .and_then(|cb| cb.thresholds.iter().find(|t| t.priority == p as i32))
    };
    let filled = |p: RoutingPriority| {
        let t = find(p);
        type Field = fn(&cluster_pb::circuit_breakers::Thresholds) -> Option<u32>;
        let v = |f: Field, d: u32| {
            Some(envoy_types::pb::google::protobuf::UInt32Value {
                value: t.and_then(f).unwrap_or(d),
            })
        };
        cluster_pb::circuit_breakers::Thresholds {
            priority: p as i32,
            max_connections: v(|t| t.max_connections.map(|x| x.value), 1024),
            max_pending_requests: v(|t| t.max_pending_requests.map(|x| x.value), 1024),
            max_requests: v(|t| t.max_requests.map(|x| x.value), 1024),
            max_retries: v(|t| t.max_retries.map(|x| x.value), 3),
            ..Default::default()
        }
    };
    [
        filled(RoutingPriority::Default),
        filled(RoutingPriority::High),
    ]
}

/// `Endpoint.hostname` as configured (tern keeps the address in its place when none was).
fn hostname(h: &Host) -> &str {
    if *h.hostname == h.address.to_string() {
        ""
    } else {
        &h.hostname
    }
}

fn health_flags(h: &Host) -> &'static str {
    if !h.is_healthy() {
        "/failed_eds_health"
    } else if h.is_degraded() {
        "/degraded_eds_health"
    } else {
        "healthy"
    }
}

/// The locality of a host in its host set.
fn host_locality(set: &HostSet, h: &Host) -> core_pb::Locality {
    locality(
        set.localities
            .get(h.locality_index())
            .map(|l| &*l.name)
            .unwrap_or(""),
    )
}

/// Answer `/clusters` (`?format=json`, `?filter=<regex>` on cluster names).
pub(super) fn clusters(r: &AdminRequest, ctx: &AdminCtx) -> Reply {
    let filter = match r.get("filter").map(regex::Regex::new).transpose() {
        Ok(f) => f,
        Err(e) => return Reply::bad_request(format!("Invalid re2 regex: {e}")),
    };
    let dynamic: HashSet<String> = ctx
        .xds
        .get()
        .map(|x| {
            x.with_store(|s| {
                s.clusters
                    .keys()
                    .chain(s.warming_clusters.keys())
                    .map(|n| n.to_string())
                    .collect()
            })
        })
        .unwrap_or_default();
    let snapshot = ctx.world.clusters.load();
    let mut list: Vec<&std::sync::Arc<Cluster>> = snapshot
        .values()
        .filter(|c| filter.as_ref().is_none_or(|f| f.is_match(&c.name)))
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    if r.get("format") == Some("json") {
        let statuses = list
            .iter()
            .map(|c| cluster_status(c, dynamic.contains(&*c.name)))
            .collect();
        return match to_json(
            &admin_pb::Clusters {
                cluster_statuses: statuses,
            },
            false,
        ) {
            Ok(v) => Reply::json(pretty(&v)),
            Err(e) => Reply::with(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
        };
    }
    let mut out = String::new();
    for c in list {
        text_lines(&mut out, c, dynamic.contains(&*c.name));
    }
    Reply::text(out)
}

fn text_lines(out: &mut String, c: &Cluster, added_via_api: bool) {
    let n = &c.name;
    let _ = writeln!(out, "{n}::observability_name::{}", c.stat_name());
    for (label, t) in ["default_priority", "high_priority"]
        .into_iter()
        .zip(thresholds(&c.source()))
    {
        let v = |x: Option<u32>| x.unwrap_or(0);
        let _ = writeln!(
            out,
            "{n}::{label}::max_connections::{}",
            v(t.max_connections.map(|x| x.value))
        );
        let _ = writeln!(
            out,
            "{n}::{label}::max_pending_requests::{}",
            v(t.max_pending_requests.map(|x| x.value))
        );
        let _ = writeln!(
            out,
            "{n}::{label}::max_requests::{}",
            v(t.max_requests.map(|x| x.value))
        );
        let _ = writeln!(
            out,
            "{n}::{label}::max_retries::{}",
            v(t.max_retries.map(|x| x.value))
        );
    }
    let _ = writeln!(out, "{n}::added_via_api::{added_via_api}");
    let set = c.priority_set();
    for (priority, hs) in set.priorities.iter().enumerate() {
        for h in &hs.hosts {
            let a = &h.address;
            let mut stats = host_stats(h);
            stats.sort_by_key(|s| s.0);
            for (name, value, _) in stats {
                let _ = writeln!(out, "{n}::{a}::{name}::{value}");
            }
            let loc = host_locality(hs, h);
            let _ = writeln!(out, "{n}::{a}::hostname::{}", hostname(h));
            let _ = writeln!(out, "{n}::{a}::health_flags::{}", health_flags(h));
            let _ = writeln!(out, "{n}::{a}::weight::{}", h.weight);
            let _ = writeln!(out, "{n}::{a}::region::{}", loc.region);
            let _ = writeln!(out, "{n}::{a}::zone::{}", loc.zone);
            let _ = writeln!(out, "{n}::{a}::sub_zone::{}", loc.sub_zone);
            let _ = writeln!(out, "{n}::{a}::canary::false");
            let _ = writeln!(out, "{n}::{a}::priority::{priority}");
            // No outlier detection yet: no success rate, as Envoy prints without it.
            let _ = writeln!(out, "{n}::{a}::success_rate::-1");
            let _ = writeln!(out, "{n}::{a}::local_origin_success_rate::-1");
        }
    }
}

fn cluster_status(c: &Cluster, added_via_api: bool) -> admin_pb::ClusterStatus {
    let set = c.priority_set();
    let mut hosts = Vec::new();
    for (priority, hs) in set.priorities.iter().enumerate() {
        for h in &hs.hosts {
            let stats = host_stats(h)
                .into_iter()
                .map(|(name, value, gauge)| admin_pb::SimpleMetric {
                    r#type: if gauge {
                        admin_pb::simple_metric::Type::Gauge as i32
                    } else {
                        admin_pb::simple_metric::Type::Counter as i32
                    },
                    value,
                    name: name.to_string(),
                })
                .collect();
            hosts.push(admin_pb::HostStatus {
                address: Some(address(&h.address)),
                stats,
                health_status: Some(admin_pb::HostHealthStatus {
                    eds_health_status: health_status(h) as i32,
                    ..Default::default()
                }),
                weight: h.weight,
                hostname: hostname(h).to_string(),
                priority: priority as u32,
                locality: Some(host_locality(hs, h)),
                ..Default::default()
            });
        }
    }
    admin_pb::ClusterStatus {
        name: c.name.to_string(),
        added_via_api,
        host_statuses: hosts,
        circuit_breakers: Some(cluster_pb::CircuitBreakers {
            thresholds: thresholds(&c.source()).to_vec(),
            ..Default::default()
        }),
        observability_name: c.stat_name().to_string(),
        ..Default::default()
    }
}
