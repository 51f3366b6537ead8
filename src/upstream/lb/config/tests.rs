use super::*;
use cluster_pb::cluster::LbPolicy as E;
use envoy_types::pb::envoy::r#type::v3::Percent;
use prost::Message;

fn cluster(lb_policy: E) -> cluster_pb::Cluster {
    cluster_pb::Cluster {
        name: "c".into(),
        lb_policy: lb_policy as i32,
        ..Default::default()
    }
}

fn any<T: Message + Name>(m: &T) -> protobuf::Any {
    protobuf::Any {
        type_url: T::type_url(),
        value: m.encode_to_vec(),
    }
}

fn typed(policies: Vec<protobuf::Any>) -> cluster_pb::LoadBalancingPolicy {
    cluster_pb::LoadBalancingPolicy {
        policies: policies
            .into_iter()
            .map(|a| cluster_pb::load_balancing_policy::Policy {
                typed_extension_config: Some(core_pb::TypedExtensionConfig {
                    name: "p".into(),
                    typed_config: Some(a),
                }),
            })
            .collect(),
    }
}

#[test]
fn defaults() {
    let s = LbSettings::from_cluster(&cluster(E::RoundRobin)).unwrap();
    assert_eq!(s, LbSettings::default());
    assert_eq!(
        LbPolicy::from_cluster(&cluster(E::LeastRequest)).unwrap(),
        LbPolicy::LeastRequest {
            choice_count: 2,
            active_request_bias: 1.0
        }
    );
    assert_eq!(
        LbPolicy::from_cluster(&cluster(E::RingHash)).unwrap(),
        LbPolicy::RingHash {
            min_ring_size: 1024,
            max_ring_size: 8 * 1024 * 1024
        }
    );
    assert_eq!(
        LbPolicy::from_cluster(&cluster(E::Maglev)).unwrap(),
        LbPolicy::Maglev { table_size: 65537 }
    );
    assert_eq!(
        LbPolicy::from_cluster(&cluster(E::Random)).unwrap(),
        LbPolicy::Random
    );
}

#[test]
fn legacy_lb_config() {
    use cluster_pb::cluster::LbConfig;
    let mut c = cluster(E::LeastRequest);
    c.lb_config = Some(LbConfig::LeastRequestLbConfig(
        cluster_pb::cluster::LeastRequestLbConfig {
            choice_count: Some(protobuf::UInt32Value { value: 3 }),
            active_request_bias: Some(core_pb::RuntimeDouble {
                default_value: 0.5,
                runtime_key: String::new(),
            }),
            ..Default::default()
        },
    ));
    assert_eq!(
        LbPolicy::from_cluster(&c).unwrap(),
        LbPolicy::LeastRequest {
            choice_count: 3,
            active_request_bias: 0.5
        }
    );

    let mut c = cluster(E::RingHash);
    c.lb_config = Some(LbConfig::RingHashLbConfig(
        cluster_pb::cluster::RingHashLbConfig {
            minimum_ring_size: Some(protobuf::UInt64Value { value: 4096 }),
            maximum_ring_size: Some(protobuf::UInt64Value { value: 1024 }),
            hash_function: 0,
        },
    ));
    let e = LbPolicy::from_cluster(&c).unwrap_err();
    assert_eq!(e.path, "ring_hash_lb_config.minimum_ring_size");

    let mut c = cluster(E::Maglev);
    c.lb_config = Some(LbConfig::MaglevLbConfig(
        cluster_pb::cluster::MaglevLbConfig {
            table_size: Some(protobuf::UInt64Value { value: 65536 }),
        },
    ));
    let e = LbPolicy::from_cluster(&c).unwrap_err();
    assert_eq!(e.path, "maglev_lb_config.table_size");
    assert!(e.to_string().contains("prime"), "{e}");
}

#[test]
fn unsupported_policies_are_errors() {
    let e = LbPolicy::from_cluster(&cluster(E::ClusterProvided)).unwrap_err();
    assert_eq!(e.path, "lb_policy");
    let e = LbPolicy::from_cluster(&cluster(E::LoadBalancingPolicyConfig)).unwrap_err();
    assert_eq!(e.path, "load_balancing_policy");
    let mut c = cluster(E::RoundRobin);
    c.lb_policy = 42;
    assert!(LbPolicy::from_cluster(&c).is_err());
}

#[test]
fn typed_policies() {
    let unknown = protobuf::Any {
        type_url: "type.googleapis.com/example.Unknown".into(),
        value: vec![],
    };
    let maglev = policies_pb::maglev::v3::Maglev {
        table_size: Some(protobuf::UInt64Value { value: 101 }),
        ..Default::default()
    };
    let mut c = cluster(E::LoadBalancingPolicyConfig);
    c.load_balancing_policy = Some(typed(vec![unknown.clone(), any(&maglev)]));
    assert_eq!(
        LbPolicy::from_cluster(&c).unwrap(),
        LbPolicy::Maglev { table_size: 101 }
    );

    c.load_balancing_policy = Some(typed(vec![unknown.clone()]));
    let e = LbPolicy::from_cluster(&c).unwrap_err();
    assert_eq!(e.path, "load_balancing_policy.policies");
    assert!(e.reason.contains("example.Unknown"), "{e}");

    let bad = policies_pb::maglev::v3::Maglev {
        table_size: Some(protobuf::UInt64Value { value: 100 }),
        ..Default::default()
    };
    c.load_balancing_policy = Some(typed(vec![any(&bad)]));
    let e = LbPolicy::from_cluster(&c).unwrap_err();
    assert_eq!(
        e.path,
        "load_balancing_policy.policies[0].typed_extension_config.typed_config.table_size"
    );

    let lr = policies_pb::least_request::v3::LeastRequest {
        choice_count: Some(protobuf::UInt32Value { value: 1 }),
        ..Default::default()
    };
    c.load_balancing_policy = Some(typed(vec![any(&lr)]));
    assert!(LbPolicy::from_cluster(&c).is_err());

    // The typed policy wins over lb_policy.
    let mut c = cluster(E::RoundRobin);
    c.load_balancing_policy = Some(typed(vec![
        any(&policies_pb::random::v3::Random::default()),
    ]));
    assert_eq!(LbPolicy::from_cluster(&c).unwrap(), LbPolicy::Random);
}

#[test]
fn typed_locality_weighting() {
    let weighted = common_pb::LocalityLbConfig {
        locality_config_specifier: Some(
            common_pb::locality_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                common_pb::locality_lb_config::LocalityWeightedLbConfig {},
            ),
        ),
    };
    let rr = policies_pb::round_robin::v3::RoundRobin {
        locality_lb_config: Some(weighted),
        ..Default::default()
    };
    let mut c = cluster(E::LoadBalancingPolicyConfig);
    c.load_balancing_policy = Some(typed(vec![any(&rr)]));
    let s = LbSettings::from_cluster(&c).unwrap();
    assert!(s.locality_weighted);
    assert_eq!(s.policy, LbPolicy::RoundRobin);

    let wrr = policies_pb::wrr_locality::v3::WrrLocality {
        endpoint_picking_policy: Some(typed(vec![any(
            &policies_pb::ring_hash::v3::RingHash::default(),
        )])),
    };
    c.load_balancing_policy = Some(typed(vec![any(&wrr)]));
    let s = LbSettings::from_cluster(&c).unwrap();
    assert!(s.locality_weighted);
    assert!(matches!(s.policy, LbPolicy::RingHash { .. }));
}

#[test]
fn common_lb_config() {
    use cluster_pb::cluster::common_lb_config::{
        LocalityConfigSpecifier, LocalityWeightedLbConfig,
    };
    let mut c = cluster(E::RoundRobin);
    c.common_lb_config = Some(cluster_pb::cluster::CommonLbConfig {
        healthy_panic_threshold: Some(Percent { value: 0.0 }),
        locality_config_specifier: Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(
            LocalityWeightedLbConfig {},
        )),
        ..Default::default()
    });
    let s = LbSettings::from_cluster(&c).unwrap();
    assert_eq!(s.healthy_panic_threshold, 0.0);
    assert!(s.locality_weighted);

    c.common_lb_config = Some(cluster_pb::cluster::CommonLbConfig {
        healthy_panic_threshold: Some(Percent { value: 150.0 }),
        ..Default::default()
    });
    let e = LbSettings::from_cluster(&c).unwrap_err();
    assert_eq!(e.path, "common_lb_config.healthy_panic_threshold.value");
}
