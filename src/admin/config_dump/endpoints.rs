//! `?include_eds`: each active cluster's live hosts as a `ClusterLoadAssignment`, built as
//! Envoy builds it for the dump (tern keeps hosts in clusters, not the EDS message): per
//! priority, one `LocalityLbEndpoints` per locality that has hosts (with its locality and
//! weight, 0 when unset), each host with its address, hostname, weight and health, an empty
//! `health_check_config`, and the policy's overprovisioning factor.

use crate::config::Address;
use crate::upstream::cluster::Cluster;
use crate::upstream::host::{Host, HostSet};
use crate::upstream::load_assignment::DEFAULT_OVERPROVISIONING_FACTOR;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::config::endpoint::v3 as endpoint_pb;
use envoy_types::pb::google::protobuf::UInt32Value;
use std::sync::Arc;

/// The `cluster_name` Envoy shows: the EDS service name, else the cluster's name.
pub(super) fn assignment_name(c: &Cluster) -> &str {
    c.eds_service_name().unwrap_or(&c.name)
}

/// The cluster's current hosts as an assignment.
pub(super) fn assignment(c: &Cluster) -> endpoint_pb::ClusterLoadAssignment {
    let set = c.priority_set();
    let mut cla = endpoint_pb::ClusterLoadAssignment {
        cluster_name: assignment_name(c).to_string(),
        ..Default::default()
    };
    // Envoy always has priority 0, so the factor is there even without hosts.
    let mut factor = DEFAULT_OVERPROVISIONING_FACTOR;
    for (priority, hs) in set.priorities.iter().enumerate() {
        factor = hs.overprovisioning_factor;
        cla.endpoints
            .extend(priority_endpoints(hs, priority as u32));
    }
    cla.policy = Some(endpoint_pb::cluster_load_assignment::Policy {
        overprovisioning_factor: Some(UInt32Value { value: factor }),
        ..Default::default()
    });
    cla
}

fn priority_endpoints(hs: &HostSet, priority: u32) -> Vec<endpoint_pb::LocalityLbEndpoints> {
    let mut out = Vec::new();
    for (i, loc) in hs.localities.iter().enumerate() {
        let hosts: Vec<&Arc<Host>> = hs
            .hosts
            .iter()
            .filter(|h| h.locality_index() == i)
            .collect();
        if hosts.is_empty() {
            continue;
        }
        out.push(endpoint_pb::LocalityLbEndpoints {
            locality: Some(locality(&loc.name)),
            lb_endpoints: hosts.into_iter().map(|h| lb_endpoint(h)).collect(),
            load_balancing_weight: Some(UInt32Value { value: loc.weight }),
            priority,
            ..Default::default()
        });
    }
    // A host whose locality is not listed (none is, by construction) still shows, alone.
    for h in hs
        .hosts
        .iter()
        .filter(|h| h.locality_index() >= hs.localities.len())
    {
        out.push(endpoint_pb::LocalityLbEndpoints {
            locality: Some(core_pb::Locality::default()),
            lb_endpoints: vec![lb_endpoint(h)],
            priority,
            ..Default::default()
        });
    }
    out
}

/// A locality from the `region/zone/sub_zone` name hosts keep (empty: no locality).
pub(in crate::admin) fn locality(name: &str) -> core_pb::Locality {
    let mut parts = name.splitn(3, '/');
    let mut next = || parts.next().unwrap_or_default().to_string();
    core_pb::Locality {
        region: next(),
        zone: next(),
        sub_zone: next(),
    }
}

/// A host's health as EDS states it.
pub(in crate::admin) fn health_status(h: &Host) -> core_pb::HealthStatus {
    use core_pb::HealthStatus;
    if !h.is_healthy() {
        HealthStatus::Unhealthy
    } else if h.is_degraded() {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    }
}

fn lb_endpoint(h: &Host) -> endpoint_pb::LbEndpoint {
    let health = health_status(h);
    endpoint_pb::LbEndpoint {
        host_identifier: Some(endpoint_pb::lb_endpoint::HostIdentifier::Endpoint(
            endpoint_pb::Endpoint {
                address: Some(address(&h.address)),
                health_check_config: Some(Default::default()),
                hostname: h.hostname.to_string(),
                ..Default::default()
            },
        )),
        health_status: health as i32,
        load_balancing_weight: Some(UInt32Value { value: h.weight }),
        ..Default::default()
    }
}

/// An address as a proto.
pub(in crate::admin) fn address(a: &Address) -> core_pb::Address {
    use core_pb::address::Address as A;
    let inner = match a {
        Address::Tcp(sa) => A::SocketAddress(core_pb::SocketAddress {
            address: sa.ip().to_string(),
            port_specifier: Some(core_pb::socket_address::PortSpecifier::PortValue(
                u32::from(sa.port()),
            )),
            ..Default::default()
        }),
        Address::Pipe(p) => A::Pipe(core_pb::Pipe {
            path: p.to_string_lossy().into_owned(),
            mode: 0,
        }),
        Address::Internal(name) => A::EnvoyInternalAddress(core_pb::EnvoyInternalAddress {
            address_name_specifier: Some(
                core_pb::envoy_internal_address::AddressNameSpecifier::ServerListenerName(
                    name.clone(),
                ),
            ),
            ..Default::default()
        }),
    };
    core_pb::Address {
        address: Some(inner),
    }
}
