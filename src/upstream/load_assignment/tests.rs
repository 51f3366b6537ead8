use super::*;
use envoy_types::pb::google::protobuf::UInt32Value;

fn sock(addr: &str, port: u32) -> core_pb::Address {
    core_pb::Address {
        address: Some(core_pb::address::Address::SocketAddress(
            core_pb::SocketAddress {
                address: addr.into(),
                port_specifier: Some(core_pb::socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            },
        )),
    }
}

fn lb_ep(
    addr: &str,
    weight: Option<u32>,
    health: core_pb::HealthStatus,
) -> endpoint_pb::LbEndpoint {
    endpoint_pb::LbEndpoint {
        host_identifier: Some(endpoint_pb::lb_endpoint::HostIdentifier::Endpoint(
            endpoint_pb::Endpoint {
                address: Some(sock(addr, 8080)),
                hostname: format!("h-{addr}"),
                ..Default::default()
            },
        )),
        health_status: health as i32,
        load_balancing_weight: weight.map(|value| UInt32Value { value }),
        ..Default::default()
    }
}

fn locality(
    zone: &str,
    priority: u32,
    weight: Option<u32>,
    eps: Vec<endpoint_pb::LbEndpoint>,
) -> endpoint_pb::LocalityLbEndpoints {
    endpoint_pb::LocalityLbEndpoints {
        locality: Some(core_pb::Locality {
            region: "r".into(),
            zone: zone.into(),
            sub_zone: String::new(),
        }),
        lb_endpoints: eps,
        load_balancing_weight: weight.map(|value| UInt32Value { value }),
        priority,
        ..Default::default()
    }
}

fn cla(endpoints: Vec<endpoint_pb::LocalityLbEndpoints>) -> endpoint_pb::ClusterLoadAssignment {
    endpoint_pb::ClusterLoadAssignment {
        cluster_name: "c".into(),
        endpoints,
        ..Default::default()
    }
}

use core_pb::HealthStatus as HS;

#[test]
fn priorities_localities_weights_and_health() {
    let a = cla(vec![
        locality("b", 1, Some(3), vec![lb_ep("10.0.0.3", None, HS::Draining)]),
        locality(
            "a",
            0,
            Some(2),
            vec![
                lb_ep("10.0.0.1", Some(5), HS::Healthy),
                lb_ep("10.0.0.2", None, HS::Degraded),
            ],
        ),
        locality("c", 0, None, vec![lb_ep("::1", None, HS::Unknown)]),
    ]);
    let set = priority_set_from_assignment(&a, false).unwrap();
    assert_eq!(set.priorities.len(), 2);
    let p0 = &set.priorities[0];
    assert_eq!(p0.overprovisioning_factor, 140);
    assert_eq!(p0.localities.len(), 2);
    assert_eq!(&*p0.localities[0].name, "r/a/");
    assert_eq!(p0.localities[0].weight, 2);
    assert_eq!(p0.localities[1].weight, 0);
    assert_eq!(p0.hosts.len(), 3);
    assert_eq!(p0.hosts[0].weight, 5);
    assert_eq!(&*p0.hosts[0].hostname, "h-10.0.0.1");
    assert!(p0.hosts[0].is_healthy() && !p0.hosts[0].is_degraded());
    assert!(p0.hosts[1].is_healthy() && p0.hosts[1].is_degraded());
    assert_eq!(p0.hosts[1].weight, 1);
    assert_eq!(p0.hosts[2].locality_index(), 1);
    assert_eq!(p0.hosts[2].address.to_string(), "[::1]:8080");
    let p1 = &set.priorities[1];
    assert_eq!(p1.hosts.len(), 1);
    assert!(!p1.hosts[0].is_healthy());
    assert_eq!(p1.localities[0].weight, 3);
}

#[test]
fn overprovisioning_factor_from_policy() {
    let mut a = cla(vec![locality("a", 0, None, vec![])]);
    a.policy = Some(endpoint_pb::cluster_load_assignment::Policy {
        overprovisioning_factor: Some(UInt32Value { value: 200 }),
        ..Default::default()
    });
    let set = priority_set_from_assignment(&a, false).unwrap();
    assert_eq!(set.priorities[0].overprovisioning_factor, 200);
    a.policy = Some(endpoint_pb::cluster_load_assignment::Policy {
        overprovisioning_factor: Some(UInt32Value { value: 0 }),
        ..Default::default()
    });
    let e = priority_set_from_assignment(&a, false).unwrap_err();
    assert_eq!(e.path, "policy.overprovisioning_factor");
}

#[test]
fn empty_assignment_is_an_empty_set() {
    let set = priority_set_from_assignment(&cla(vec![]), false).unwrap();
    assert!(set.is_empty());
    assert!(set.priorities.is_empty());
}

#[test]
fn priority_gaps_are_errors() {
    let a = cla(vec![
        locality("a", 0, None, vec![lb_ep("10.0.0.1", None, HS::Healthy)]),
        locality("b", 2, None, vec![lb_ep("10.0.0.2", None, HS::Healthy)]),
    ]);
    let e = priority_set_from_assignment(&a, false).unwrap_err();
    assert_eq!(e.path, "endpoints");
    assert!(e.reason.contains("consecutive"), "{e}");

    // A huge priority must not allocate a huge vector.
    let a = cla(vec![locality("a", u32::MAX, None, vec![])]);
    assert!(priority_set_from_assignment(&a, false).is_err());
    assert!(dns_targets_from_assignment(&a).is_err());
}

#[test]
fn invalid_addresses_and_weights_name_the_path() {
    let a = cla(vec![locality(
        "a",
        0,
        None,
        vec![
            lb_ep("10.0.0.1", None, HS::Healthy),
            lb_ep("backend.svc", None, HS::Healthy),
        ],
    )]);
    let e = priority_set_from_assignment(&a, false).unwrap_err();
    assert_eq!(
        e.path,
        "endpoints[0].lb_endpoints[1].endpoint.address.socket_address.address"
    );

    let a = cla(vec![locality(
        "a",
        0,
        None,
        vec![lb_ep("10.0.0.1", Some(0), HS::Healthy)],
    )]);
    let e = priority_set_from_assignment(&a, false).unwrap_err();
    assert_eq!(e.path, "endpoints[0].lb_endpoints[0].load_balancing_weight");

    let a = cla(vec![locality("a", 0, Some(0), vec![])]);
    let e = priority_set_from_assignment(&a, false).unwrap_err();
    assert_eq!(e.path, "endpoints[0].load_balancing_weight");

    let mut ep = lb_ep("10.0.0.1", None, HS::Healthy);
    ep.host_identifier = None;
    let a = cla(vec![locality("a", 0, None, vec![ep])]);
    let e = priority_set_from_assignment(&a, false).unwrap_err();
    assert_eq!(e.path, "endpoints[0].lb_endpoints[0].endpoint");
}

#[test]
fn dns_targets_and_resolved_hosts() {
    let a = cla(vec![
        locality(
            "a",
            0,
            Some(1),
            vec![
                lb_ep("10.0.0.1", None, HS::Healthy),
                lb_ep("backend.svc", Some(7), HS::Healthy),
            ],
        ),
        locality("b", 1, None, vec![lb_ep("other.svc", None, HS::Unhealthy)]),
    ]);
    // Names are left out when the caller resolves them.
    let set = priority_set_from_assignment(&a, true).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.priorities.len(), 2);

    let targets = dns_targets_from_assignment(&a).unwrap();
    assert_eq!(targets.len(), 3);
    assert_eq!(targets[1].host, "backend.svc");
    assert_eq!(targets[1].port, 8080);
    assert_eq!(targets[1].weight, 7);
    assert_eq!(targets[1].hostname, "h-backend.svc");
    assert_eq!(targets[2].priority, 1);
    assert_eq!(targets[2].health, EndpointHealth::Unhealthy);

    let resolved: Vec<(DnsTarget, Vec<IpAddr>)> = targets
        .into_iter()
        .map(|t| {
            let ips = if t.host == "backend.svc" {
                vec!["10.1.0.1".parse().unwrap(), "10.1.0.2".parse().unwrap()]
            } else {
                vec!["10.2.0.1".parse().unwrap()]
            };
            (t, ips)
        })
        .collect();
    let set = priority_set_from_resolved(&a, &resolved).unwrap();
    let p0: Vec<String> = set.priorities[0]
        .hosts
        .iter()
        .map(|h| format!("{}/{}", h.address, h.weight))
        .collect();
    assert_eq!(
        p0,
        ["10.0.0.1:8080/1", "10.1.0.1:8080/7", "10.1.0.2:8080/7"]
    );
    assert_eq!(set.priorities[1].hosts.len(), 1);
    assert!(!set.priorities[1].hosts[0].is_healthy());
}

#[test]
fn dns_targets_need_socket_addresses() {
    let mut ep = lb_ep("10.0.0.1", None, HS::Healthy);
    if let Some(endpoint_pb::lb_endpoint::HostIdentifier::Endpoint(e)) = &mut ep.host_identifier {
        e.address = Some(core_pb::Address {
            address: Some(core_pb::address::Address::Pipe(core_pb::Pipe {
                path: "/tmp/s".into(),
                mode: 0,
            })),
        });
    }
    let a = cla(vec![locality("a", 0, None, vec![ep])]);
    let e = dns_targets_from_assignment(&a).unwrap_err();
    assert_eq!(
        e.path,
        "endpoints[0].lb_endpoints[0].endpoint.address.socket_address"
    );
    // A pipe is fine for a STATIC cluster.
    assert_eq!(priority_set_from_assignment(&a, false).unwrap().len(), 1);
}

#[test]
fn endpoints_of_one_workload_share_their_decoded_metadata() {
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.into())),
    };
    let with_metadata = |addr: &str, workload: &str| {
        let mut ep = lb_ep(addr, None, HS::Healthy);
        let mut m = core_pb::Metadata::default();
        m.filter_metadata.insert(
            "istio".into(),
            Struct {
                fields: [("workload".to_string(), text(workload))].into(),
            },
        );
        m.filter_metadata.insert(
            "envoy.transport_socket_match".into(),
            Struct {
                fields: [("tlsMode".to_string(), text("istio"))].into(),
            },
        );
        ep.metadata = Some(m);
        ep
    };
    let set = priority_set_from_assignment(
        &cla(vec![locality(
            "a",
            0,
            None,
            vec![
                with_metadata("10.0.0.1", "reviews-v1;ns;reviews;v1;Kubernetes"),
                with_metadata("10.0.0.2", "reviews-v1;ns;reviews;v1;Kubernetes"),
                with_metadata("10.0.0.3", "reviews-v2;ns;reviews;v2;Kubernetes"),
            ],
        )]),
        false,
    )
    .unwrap();
    let hosts = &set.priorities[0].hosts;
    let w = |i: usize| hosts[i].istio_workload().cloned().unwrap();
    assert_eq!(&*w(0).workload_name, "reviews-v1");
    assert_eq!(&*w(2).workload_name, "reviews-v2");
    assert!(Arc::ptr_eq(&w(0), &w(1)));
    assert!(!Arc::ptr_eq(&w(0), &w(2)));
    let s = |i: usize| hosts[i].socket_match().cloned().unwrap();
    assert_eq!(*s(0), [("tlsMode".to_string(), "istio".to_string())]);
    assert!(Arc::ptr_eq(&s(0), &s(1)) && Arc::ptr_eq(&s(0), &s(2)));
}
