//! `Cluster` → [`LbPolicy`] / [`LbSettings`]: the legacy `lb_policy` enum with its `lb_config`,
//! or the typed `load_balancing_policy` extensions, and `common_lb_config`. Error paths are
//! relative to the `Cluster`.

use super::maglev::is_prime;
use super::{
    DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_MIN_RING_SIZE, DEFAULT_PANIC_THRESHOLD, LbPolicy,
    LbSettings, MAX_MAGLEV_TABLE_SIZE, MAX_RING_SIZE,
};
use crate::config::{ConfigError, Within, u32_or, unpack};
use envoy_types::pb::envoy::config::cluster::v3 as cluster_pb;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::extensions::load_balancing_policies as policies_pb;
use envoy_types::pb::google::protobuf;
use policies_pb::common::v3 as common_pb;
use prost::Name;

impl LbPolicy {
    /// `Cluster.lb_policy` and its `lb_config`, or `Cluster.load_balancing_policy` when set.
    /// `CLUSTER_PROVIDED` (ORIGINAL_DST clusters), unknown values, and a
    /// `LOAD_BALANCING_POLICY_CONFIG` without a supported policy are errors.
    pub fn from_cluster(c: &cluster_pb::Cluster) -> Result<LbPolicy, ConfigError> {
        parse(c).map(|(p, _)| p)
    }
}

impl LbSettings {
    /// The policy plus `Cluster.common_lb_config` (`healthy_panic_threshold`,
    /// `locality_weighted_lb_config`) and a typed policy's `locality_lb_config`.
    pub fn from_cluster(c: &cluster_pb::Cluster) -> Result<LbSettings, ConfigError> {
        let (policy, typed_locality_weighted) = parse(c)?;
        let mut settings = LbSettings {
            policy,
            locality_weighted: typed_locality_weighted,
            healthy_panic_threshold: DEFAULT_PANIC_THRESHOLD,
        };
        if let Some(common) = &c.common_lb_config {
            use cluster_pb::cluster::common_lb_config::LocalityConfigSpecifier as L;
            if let Some(t) = &common.healthy_panic_threshold {
                if !(0.0..=100.0).contains(&t.value) {
                    return Err(ConfigError::new(
                        "common_lb_config.healthy_panic_threshold.value",
                        format!("{} is not a percentage in [0, 100]", t.value),
                    ));
                }
                settings.healthy_panic_threshold = t.value;
            }
            if let Some(L::LocalityWeightedLbConfig(_)) = &common.locality_config_specifier {
                settings.locality_weighted = true;
            }
        }
        Ok(settings)
    }
}

fn parse(c: &cluster_pb::Cluster) -> Result<(LbPolicy, bool), ConfigError> {
    use cluster_pb::cluster::LbConfig;
    use cluster_pb::cluster::LbPolicy as E;
    if let Some(lbp) = &c.load_balancing_policy {
        return typed_policy(lbp).within("load_balancing_policy");
    }
    let policy = match E::try_from(c.lb_policy) {
        Ok(E::RoundRobin) => LbPolicy::RoundRobin,
        Ok(E::Random) => LbPolicy::Random,
        Ok(E::LeastRequest) => match &c.lb_config {
            Some(LbConfig::LeastRequestLbConfig(l)) => {
                least_request(l.choice_count.as_ref(), l.active_request_bias.as_ref())
                    .within("least_request_lb_config")?
            }
            _ => least_request(None, None)?,
        },
        Ok(E::RingHash) => match &c.lb_config {
            Some(LbConfig::RingHashLbConfig(r)) => ring_hash(
                r.minimum_ring_size.as_ref(),
                r.maximum_ring_size.as_ref(),
                r.hash_function
                    != cluster_pb::cluster::ring_hash_lb_config::HashFunction::MurmurHash2 as i32,
            )
            .within("ring_hash_lb_config")?,
            _ => ring_hash(None, None, true)?,
        },
        Ok(E::Maglev) => match &c.lb_config {
            Some(LbConfig::MaglevLbConfig(m)) => {
                maglev(m.table_size.as_ref()).within("maglev_lb_config")?
            }
            _ => maglev(None)?,
        },
        Ok(E::ClusterProvided) => {
            return Err(ConfigError::new(
                "lb_policy",
                "CLUSTER_PROVIDED is not supported here (ORIGINAL_DST clusters choose hosts \
                 themselves)",
            ));
        }
        Ok(E::LoadBalancingPolicyConfig) => {
            return Err(ConfigError::new(
                "load_balancing_policy",
                "is required when lb_policy is LOAD_BALANCING_POLICY_CONFIG",
            ));
        }
        Err(_) => {
            return Err(ConfigError::new(
                "lb_policy",
                format!("unknown value {}", c.lb_policy),
            ));
        }
    };
    Ok((policy, false))
}

/// The first supported entry of `LoadBalancingPolicy.policies`, as Envoy picks it.
fn typed_policy(lbp: &cluster_pb::LoadBalancingPolicy) -> Result<(LbPolicy, bool), ConfigError> {
    let mut seen = Vec::new();
    for (i, p) in lbp.policies.iter().enumerate() {
        let Some(any) = p
            .typed_extension_config
            .as_ref()
            .and_then(|t| t.typed_config.as_ref())
        else {
            return Err(
                ConfigError::new("typed_extension_config.typed_config", "is required")
                    .within(format!("policies[{i}]")),
            );
        };
        let at = format!("policies[{i}].typed_extension_config");
        if let Some(parsed) = typed_one(any).within(&at)? {
            return Ok(parsed);
        }
        seen.push(any.type_url.clone());
    }
    Err(ConfigError::new(
        "policies",
        if seen.is_empty() {
            "no policy given".to_string()
        } else {
            format!("no supported policy among {}", seen.join(", "))
        },
    ))
}

/// One typed policy, or `None` when its type is not one tern implements.
fn typed_one(any: &protobuf::Any) -> Result<Option<(LbPolicy, bool)>, ConfigError> {
    let url = any.type_url.as_str();
    let locality = |l: Option<&common_pb::LocalityLbConfig>| {
        matches!(
            l.and_then(|l| l.locality_config_specifier.as_ref()),
            Some(
                common_pb::locality_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(_)
            )
        )
    };
    let out = if url == policies_pb::round_robin::v3::RoundRobin::type_url() {
        let p: policies_pb::round_robin::v3::RoundRobin = unpack(any)?;
        (
            LbPolicy::RoundRobin,
            locality(p.locality_lb_config.as_ref()),
        )
    } else if url == policies_pb::random::v3::Random::type_url() {
        let p: policies_pb::random::v3::Random = unpack(any)?;
        (LbPolicy::Random, locality(p.locality_lb_config.as_ref()))
    } else if url == policies_pb::least_request::v3::LeastRequest::type_url() {
        let p: policies_pb::least_request::v3::LeastRequest = unpack(any)?;
        let policy = least_request(p.choice_count.as_ref(), p.active_request_bias.as_ref())
            .within("typed_config")?;
        (policy, locality(p.locality_lb_config.as_ref()))
    } else if url == policies_pb::ring_hash::v3::RingHash::type_url() {
        let p: policies_pb::ring_hash::v3::RingHash = unpack(any)?;
        let policy = ring_hash(
            p.minimum_ring_size.as_ref(),
            p.maximum_ring_size.as_ref(),
            p.hash_function
                != policies_pb::ring_hash::v3::ring_hash::HashFunction::MurmurHash2 as i32,
        )
        .within("typed_config")?;
        (policy, p.locality_weighted_lb_config.is_some())
    } else if url == policies_pb::maglev::v3::Maglev::type_url() {
        let p: policies_pb::maglev::v3::Maglev = unpack(any)?;
        let policy = maglev(p.table_size.as_ref()).within("typed_config")?;
        (policy, p.locality_weighted_lb_config.is_some())
    } else if url == policies_pb::wrr_locality::v3::WrrLocality::type_url() {
        let p: policies_pb::wrr_locality::v3::WrrLocality = unpack(any)?;
        let Some(inner) = &p.endpoint_picking_policy else {
            return Err(ConfigError::new(
                "typed_config.endpoint_picking_policy",
                "is required",
            ));
        };
        let (policy, _) = typed_policy(inner).within("typed_config.endpoint_picking_policy")?;
        (policy, true)
    } else {
        return Ok(None);
    };
    Ok(Some(out))
}

fn least_request(
    choice_count: Option<&protobuf::UInt32Value>,
    bias: Option<&core_pb::RuntimeDouble>,
) -> Result<LbPolicy, ConfigError> {
    let choice_count = u32_or(choice_count, 2);
    if choice_count < 2 {
        return Err(ConfigError::new(
            "choice_count",
            format!("must be at least 2, got {choice_count}"),
        ));
    }
    let active_request_bias = bias.map_or(1.0, |b| b.default_value);
    if !active_request_bias.is_finite() || active_request_bias < 0.0 {
        return Err(ConfigError::new(
            "active_request_bias.default_value",
            format!("must be a number >= 0, got {active_request_bias}"),
        ));
    }
    Ok(LbPolicy::LeastRequest {
        choice_count,
        active_request_bias,
    })
}

fn ring_hash(
    min: Option<&protobuf::UInt64Value>,
    max: Option<&protobuf::UInt64Value>,
    xx_hash: bool,
) -> Result<LbPolicy, ConfigError> {
    if !xx_hash {
        return Err(ConfigError::new(
            "hash_function",
            "MURMUR_HASH_2 is not supported; use XX_HASH",
        ));
    }
    let min_ring_size = min.map_or(DEFAULT_MIN_RING_SIZE, |v| v.value);
    let max_ring_size = max.map_or(MAX_RING_SIZE, |v| v.value);
    for (field, v) in [
        ("minimum_ring_size", min_ring_size),
        ("maximum_ring_size", max_ring_size),
    ] {
        if v > MAX_RING_SIZE {
            return Err(ConfigError::new(
                field,
                format!("{v} is larger than {MAX_RING_SIZE}"),
            ));
        }
    }
    if min_ring_size > max_ring_size {
        return Err(ConfigError::new(
            "minimum_ring_size",
            format!("{min_ring_size} is larger than maximum_ring_size {max_ring_size}"),
        ));
    }
    Ok(LbPolicy::RingHash {
        min_ring_size,
        max_ring_size,
    })
}

fn maglev(table_size: Option<&protobuf::UInt64Value>) -> Result<LbPolicy, ConfigError> {
    let table_size = table_size.map_or(DEFAULT_MAGLEV_TABLE_SIZE, |v| v.value);
    if table_size > MAX_MAGLEV_TABLE_SIZE {
        return Err(ConfigError::new(
            "table_size",
            format!("{table_size} is larger than {MAX_MAGLEV_TABLE_SIZE}"),
        ));
    }
    if !is_prime(table_size) {
        return Err(ConfigError::new(
            "table_size",
            format!("{table_size} is not a prime number"),
        ));
    }
    Ok(LbPolicy::Maglev { table_size })
}

#[cfg(test)]
mod tests;
