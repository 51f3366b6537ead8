//! `ClusterLoadAssignment` → [`PrioritySet`]: the endpoints of a STATIC or EDS cluster, grouped
//! by priority and locality, with their weights and EDS health; and, for STRICT_DNS and
//! LOGICAL_DNS clusters, the list of names to resolve ([`DnsTarget`]) and the host set built
//! from the answers.
//!
//! Pure conversion: no I/O, no DNS (the caller resolves), and nothing from `lb`.

use super::host::{
    EndpointMeta, Host, HostSet, Locality, PrioritySet, SocketMatchLabels, struct_labels,
};
use crate::config::{Address, ConfigError, Within, socket_address_of};
use crate::stats::istio::WorkloadMetadata;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::config::endpoint::v3 as endpoint_pb;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Envoy's default `ClusterLoadAssignment.policy.overprovisioning_factor` (140%).
pub const DEFAULT_OVERPROVISIONING_FACTOR: u32 = 140;

/// How EDS reports an endpoint (`LbEndpoint.health_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointHealth {
    /// `UNKNOWN` or `HEALTHY`.
    Healthy,
    /// `DEGRADED`: used only when healthy hosts are not enough.
    Degraded,
    /// `UNHEALTHY`, `DRAINING` or `TIMEOUT`.
    Unhealthy,
}

impl EndpointHealth {
    /// `LbEndpoint.health_status` (an `envoy.config.core.v3.HealthStatus`); unknown values are
    /// taken as `UNKNOWN`, as proto3 open enums ask.
    pub fn from_proto(status: i32) -> Self {
        use core_pb::HealthStatus as S;
        match S::try_from(status) {
            Ok(S::Unhealthy | S::Draining | S::Timeout) => Self::Unhealthy,
            Ok(S::Degraded) => Self::Degraded,
            Ok(S::Unknown | S::Healthy) | Err(_) => Self::Healthy,
        }
    }

    /// Set a host's health flags to match.
    pub fn apply(self, host: &Host) {
        host.healthy
            .store(self != Self::Unhealthy, Ordering::Relaxed);
        host.degraded
            .store(self == Self::Degraded, Ordering::Relaxed);
    }
}

/// One `socket_address` of a DNS cluster's load assignment, to be resolved by the caller
/// (`Cluster.type: STRICT_DNS | LOGICAL_DNS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTarget {
    /// `Endpoint.address.socket_address.address`: the name to resolve (may be an IP literal).
    pub host: String,
    /// `Endpoint.address.socket_address.port_value`.
    pub port: u16,
    /// `Endpoint.hostname`, or [`DnsTarget::host`] when that is empty (as Envoy does for DNS
    /// clusters).
    pub hostname: String,
    /// `LbEndpoint.load_balancing_weight` (default 1).
    pub weight: u32,
    /// `LbEndpoint.health_status`.
    pub health: EndpointHealth,
    /// `LocalityLbEndpoints.priority`.
    pub priority: usize,
    /// Index of the locality in that priority's [`HostSet::localities`].
    pub locality: usize,
    /// The endpoint's metadata (its `envoy.transport_socket_match` labels).
    pub meta: Option<Arc<EndpointMeta>>,
}

/// Build the host sets of a STATIC or EDS cluster (`Cluster.load_assignment` or an EDS
/// `ClusterLoadAssignment`).
///
/// With `resolve_hostnames == false`, every `socket_address` must be an IP literal. With
/// `true` (DNS clusters), endpoints whose address is a name are left out of the result: get them
/// from [`dns_targets_from_assignment`] and build the full set with
/// [`priority_set_from_resolved`]. Pipes and internal addresses are accepted either way.
pub fn priority_set_from_assignment(
    cla: &endpoint_pb::ClusterLoadAssignment,
    resolve_hostnames: bool,
) -> Result<PrioritySet, ConfigError> {
    priority_set_sharing(cla, resolve_hostnames, &mut SharedMetadata::default())
}

/// As [`priority_set_from_assignment`], sharing endpoint metadata with the assignments built
/// before with the same `shared` (the assignments of one EDS response: every endpoint of a
/// mesh has the same transport socket labels).
pub fn priority_set_sharing(
    cla: &endpoint_pb::ClusterLoadAssignment,
    resolve_hostnames: bool,
    shared: &mut SharedMetadata,
) -> Result<PrioritySet, ConfigError> {
    let mut set = skeleton(cla, shared)?;
    for_each_endpoint(cla, shared, |at, ep| {
        let Some(addr) = &ep.address else {
            return Err(ConfigError::new("endpoint.address", "is required"));
        };
        let address = match Address::from_proto(addr) {
            Ok(a) => a,
            Err(_) if resolve_hostnames && is_dns_name(addr) => return Ok(()),
            Err(e) => return Err(e.within("endpoint.address")),
        };
        push_host(&mut set, at, address, ep.hostname.clone());
        Ok(())
    })?;
    Ok(set)
}

/// The names a DNS cluster must resolve, one per `LbEndpoint` with a `socket_address`, in config
/// order (IP literals included; resolving them is a no-op).
pub fn dns_targets_from_assignment(
    cla: &endpoint_pb::ClusterLoadAssignment,
) -> Result<Vec<DnsTarget>, ConfigError> {
    skeleton(cla, &mut SharedMetadata::default())?;
    let mut out = Vec::new();
    for_each_endpoint(cla, &mut SharedMetadata::default(), |at, ep| {
        use core_pb::address::Address as A;
        let sa = match ep.address.as_ref().and_then(|a| a.address.as_ref()) {
            Some(A::SocketAddress(sa)) => sa,
            _ => {
                return Err(ConfigError::new(
                    "endpoint.address.socket_address",
                    "a DNS cluster needs a socket address",
                ));
            }
        };
        let (host, port) = socket_address_of(sa).within("endpoint.address")?;
        if host.is_empty() {
            return Err(ConfigError::new(
                "endpoint.address.socket_address.address",
                "must not be empty",
            ));
        }
        let hostname = if ep.hostname.is_empty() {
            host.to_string()
        } else {
            ep.hostname.clone()
        };
        out.push(DnsTarget {
            host: host.to_string(),
            port,
            hostname,
            weight: at.weight,
            health: at.health,
            priority: at.priority,
            locality: at.locality,
            meta: at.meta.clone(),
        });
        Ok(())
    })?;
    Ok(out)
}

/// The host set of a DNS cluster once its targets are resolved: each `(target, addresses)` pair
/// gives one host per address, with the target's weight, health, priority and locality
/// (STRICT_DNS; a LOGICAL_DNS caller passes only the first address). Endpoints of `cla` whose
/// address is already an IP literal, a pipe or an internal address are taken from `cla` itself,
/// so pass only the targets that are names — or all of them, and IP-literal targets are skipped.
pub fn priority_set_from_resolved(
    cla: &endpoint_pb::ClusterLoadAssignment,
    resolved: &[(DnsTarget, Vec<IpAddr>)],
) -> Result<PrioritySet, ConfigError> {
    let mut set = priority_set_from_assignment(cla, true)?;
    for (target, addrs) in resolved {
        if target.host.parse::<IpAddr>().is_ok() {
            continue;
        }
        let Some(hs) = set.priorities.get_mut(target.priority) else {
            return Err(ConfigError::new(
                "endpoints",
                format!("resolved target {} has unknown priority", target.host),
            ));
        };
        let locality = target.locality.min(hs.localities.len().saturating_sub(1));
        for ip in addrs {
            let mut host = Host::new(
                Address::Tcp(SocketAddr::new(*ip, target.port)),
                target.hostname.clone(),
                target.weight,
            );
            host.locality = u32::try_from(locality).unwrap_or(u32::MAX);
            host.meta = target.meta.clone();
            target.health.apply(&host);
            hs.hosts.push(Arc::new(host));
        }
    }
    Ok(set)
}

/// Where an endpoint sits, with its validated per-endpoint settings.
struct At {
    priority: usize,
    locality: usize,
    weight: u32,
    health: EndpointHealth,
    meta: Option<Arc<EndpointMeta>>,
}

fn push_host(set: &mut PrioritySet, at: At, address: Address, hostname: String) {
    if let Some(hs) = set.priorities.get_mut(at.priority) {
        let mut host = Host::new(address, hostname, at.weight);
        host.locality = u32::try_from(at.locality).unwrap_or(u32::MAX);
        host.meta = at.meta;
        at.health.apply(&host);
        hs.hosts.push(Arc::new(host));
    }
}

/// Whether a failed address conversion is only because the socket address is a name.
fn is_dns_name(addr: &core_pb::Address) -> bool {
    use core_pb::address::Address as A;
    match &addr.address {
        Some(A::SocketAddress(sa)) => {
            socket_address_of(sa).is_ok()
                && !sa.address.is_empty()
                && sa.address.parse::<IpAddr>().is_err()
        }
        _ => false,
    }
}

/// Validate priorities, localities and the policy; return a priority set with localities and no
/// hosts.
fn skeleton(
    cla: &endpoint_pb::ClusterLoadAssignment,
    shared: &mut SharedMetadata,
) -> Result<PrioritySet, ConfigError> {
    let (factor, weighted_priority_health) = match &cla.policy {
        Some(p) => {
            let f = crate::config::u32_or(
                p.overprovisioning_factor.as_ref(),
                DEFAULT_OVERPROVISIONING_FACTOR,
            );
            if f == 0 {
                return Err(ConfigError::new(
                    "policy.overprovisioning_factor",
                    "must be greater than 0",
                ));
            }
            (f, p.weighted_priority_health)
        }
        None => (DEFAULT_OVERPROVISIONING_FACTOR, false),
    };
    let max_priority = cla.endpoints.iter().map(|l| l.priority).max();
    let levels = match max_priority {
        None => 0,
        Some(p) => usize::try_from(p)
            .ok()
            .and_then(|p| p.checked_add(1))
            .filter(|n| *n <= cla.endpoints.len())
            .ok_or_else(|| gap_error(cla))?,
    };
    let mut set = PrioritySet {
        priorities: (0..levels)
            .map(|_| HostSet {
                overprovisioning_factor: factor,
                weighted_priority_health,
                ..HostSet::default()
            })
            .collect(),
    };
    for (i, lle) in cla.endpoints.iter().enumerate() {
        let weight = match &lle.load_balancing_weight {
            Some(w) if w.value == 0 => {
                return Err(ConfigError::new(
                    "load_balancing_weight",
                    "must be at least 1 when set",
                )
                .within(format!("endpoints[{i}]")));
            }
            Some(w) => w.value,
            None => 0,
        };
        // `levels` covers every priority by construction.
        if let Some(hs) = set.priorities.get_mut(lle.priority as usize) {
            hs.localities.push(Locality {
                name: shared.locality(lle.locality.as_ref()),
                weight,
            });
        }
    }
    if let Some(p) = set
        .priorities
        .iter()
        .position(|hs| hs.localities.is_empty())
    {
        return Err(ConfigError::new(
            "endpoints",
            format!(
                "priorities must be consecutive from 0, but priority {p} has no \
                 LocalityLbEndpoints while a lower priority does"
            ),
        ));
    }
    Ok(set)
}

fn gap_error(cla: &endpoint_pb::ClusterLoadAssignment) -> ConfigError {
    let max = cla.endpoints.iter().map(|l| l.priority).max().unwrap_or(0);
    ConfigError::new(
        "endpoints",
        format!("priorities must be consecutive from 0, but the highest is {max}"),
    )
}

/// `region/zone/sub_zone`, Envoy's rendering in admin output.
fn locality_name(l: Option<&core_pb::Locality>) -> String {
    match l {
        Some(l) => format!("{}/{}/{}", l.region, l.zone, l.sub_zone),
        None => String::new(),
    }
}

/// Walk the `LbEndpoint`s, validating each and giving `f` its position; errors get the path
/// `endpoints[i].lb_endpoints[j]`.
fn for_each_endpoint(
    cla: &endpoint_pb::ClusterLoadAssignment,
    shared: &mut SharedMetadata,
    mut f: impl FnMut(At, &endpoint_pb::Endpoint) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let mut seen_in_priority: Vec<usize> = Vec::new();
    // Workloads repeat within an assignment, not across them.
    shared.workloads.clear();
    shared.metas.clear();
    for (i, lle) in cla.endpoints.iter().enumerate() {
        let priority = lle.priority as usize;
        if seen_in_priority.len() <= priority {
            seen_in_priority.resize(priority + 1, 0);
        }
        let locality = seen_in_priority[priority];
        seen_in_priority[priority] += 1;
        for (j, lb) in lle.lb_endpoints.iter().enumerate() {
            let path = || format!("endpoints[{i}].lb_endpoints[{j}]");
            use endpoint_pb::lb_endpoint::HostIdentifier as H;
            let endpoint = match &lb.host_identifier {
                Some(H::Endpoint(e)) => e,
                Some(H::EndpointName(_)) => {
                    return Err(ConfigError::new(
                        "endpoint_name",
                        "named endpoints are not supported",
                    )
                    .within(path()));
                }
                None => {
                    return Err(ConfigError::new("endpoint", "is required").within(path()));
                }
            };
            let weight = match &lb.load_balancing_weight {
                Some(w) if w.value == 0 => {
                    return Err(ConfigError::new(
                        "load_balancing_weight",
                        "must be at least 1 when set",
                    )
                    .within(path()));
                }
                Some(w) => w.value,
                None => 1,
            };
            let at = At {
                priority,
                locality,
                weight,
                health: EndpointHealth::from_proto(lb.health_status),
                meta: shared.meta(lb.metadata.as_ref()),
            };
            f(at, endpoint).map_err(|e| e.within(path()))?;
        }
    }
    Ok(())
}

/// The endpoint metadata tern keeps, decoded once per distinct value: the endpoints of a
/// workload carry the same `istio.workload` (shared within an assignment), and every endpoint
/// of a mesh the same transport socket labels (shared by the assignments built with one
/// `SharedMetadata`). At mesh scale (100,000 endpoints) one copy each would cost hundreds of
/// bytes per endpoint.
#[derive(Default)]
pub struct SharedMetadata {
    workloads: HashMap<String, Option<Arc<WorkloadMetadata>>>,
    socket_labels: Vec<SocketMatchLabels>,
    localities: Vec<Arc<str>>,
    metas: Vec<Arc<EndpointMeta>>,
}

impl SharedMetadata {
    /// The distinct values kept per assignment; past this, values are decoded per endpoint.
    const LIMIT: usize = 64;

    /// `filter_metadata.istio.workload` of an endpoint, decoded.
    fn istio_workload(&mut self, m: Option<&core_pb::Metadata>) -> Option<Arc<WorkloadMetadata>> {
        use envoy_types::pb::google::protobuf::value::Kind;
        let v = m?.filter_metadata.get("istio")?.fields.get("workload")?;
        let Some(Kind::StringValue(s)) = &v.kind else {
            return None;
        };
        if let Some(w) = self.workloads.get(s.as_str()) {
            return w.clone();
        }
        let w = WorkloadMetadata::from_endpoint_metadata(s).map(Arc::new);
        if self.workloads.len() < Self::LIMIT {
            self.workloads.insert(s.clone(), w.clone());
        }
        w
    }

    /// An endpoint's metadata: shared by the endpoints with the same workload and labels.
    fn meta(&mut self, m: Option<&core_pb::Metadata>) -> Option<Arc<EndpointMeta>> {
        let istio_workload = self.istio_workload(m);
        let socket_match = self.socket_match(m);
        if istio_workload.is_none() && socket_match.is_none() {
            return None;
        }
        fn same<T: ?Sized>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        if let Some(found) = self.metas.iter().find(|e| {
            same(&e.istio_workload, &istio_workload) && same(&e.socket_match, &socket_match)
        }) {
            return Some(found.clone());
        }
        let meta = Arc::new(EndpointMeta {
            istio_workload,
            socket_match,
        });
        if self.metas.len() < Self::LIMIT {
            self.metas.push(meta.clone());
        }
        Some(meta)
    }

    /// A locality's name (`region/zone/sub_zone`): a mesh has a few zones.
    fn locality(&mut self, l: Option<&core_pb::Locality>) -> Arc<str> {
        let name = locality_name(l);
        if let Some(n) = self.localities.iter().find(|n| ***n == *name) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        if self.localities.len() < Self::LIMIT {
            self.localities.push(n.clone());
        }
        n
    }

    /// `filter_metadata["envoy.transport_socket_match"]` as labels.
    fn socket_match(&mut self, m: Option<&core_pb::Metadata>) -> Option<SocketMatchLabels> {
        let labels = struct_labels(m?.filter_metadata.get("envoy.transport_socket_match")?);
        if let Some(l) = self.socket_labels.iter().find(|l| ***l == labels) {
            return Some(l.clone());
        }
        let l = Arc::new(labels);
        if self.socket_labels.len() < Self::LIMIT {
            self.socket_labels.push(l.clone());
        }
        Some(l)
    }
}

#[cfg(test)]
mod tests;
