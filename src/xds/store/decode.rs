//! Small helpers of the store: decoding a resource, the references a listener makes, and
//! Envoy's version hash.

use super::*;

/// The RDS names an HTTP connection manager of `l` uses, with that HCM's `stat_prefix`.
pub fn rds_names(l: &Listener) -> impl Iterator<Item = (&str, &str)> {
    rds_refs(l).map(|(n, p, _)| (n, p))
}

/// The RDS references of `l`: name, `stat_prefix`, config source.
pub(super) fn rds_refs(l: &Listener) -> impl Iterator<Item = (&str, &str, &core_pb::ConfigSource)> {
    l.chains
        .iter()
        .chain(l.default_chain.iter())
        .filter_map(|c| match &c.network {
            NetworkFilter::Hcm(h) => match &h.routes {
                RouteSource::Rds {
                    name,
                    config_source,
                } => Some((
                    name.as_str(),
                    h.config.stat_prefix.as_str(),
                    config_source.as_ref(),
                )),
                RouteSource::Static(_) => None,
            },
            _ => None,
        })
}

/// The secrets `secrets` names that come from SDS (a reference without `sds_config` names a
/// static secret).
pub(super) fn sds_refs(
    secrets: Vec<SdsSecretConfig>,
) -> impl Iterator<Item = (String, core_pb::ConfigSource)> {
    secrets
        .into_iter()
        .filter_map(|s| s.sds_config.map(|cs| (s.name, cs)))
}

/// The longest of some initial fetch timeouts (`None`: wait for ever), with Envoy's 15 s when
/// there is none.
pub(super) fn longest(timeouts: Vec<Option<Duration>>) -> Option<Duration> {
    let mut out = Some(Duration::from_secs(15));
    for (i, t) in timeouts.into_iter().enumerate() {
        out = match (i, out, t) {
            (0, _, t) => t,
            (_, Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    out
}

/// Envoy's `version` gauge: a 64-bit hash of `version_info`.
pub(super) fn version_hash(v: &str) -> i64 {
    xxhash_rust::xxh64::xxh64(v.as_bytes(), 0) as i64
}

pub(super) const RESOURCE_WRAPPER: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// Decode one resource of `kind`, unwrapping a SotW `Resource` wrapper. Errors name the
/// resource (as far as it is known) and the reason.
pub(super) fn decode<M: Message + Default>(kind: Kind, inc: &Incoming) -> Result<M, String> {
    let what = |e: String| {
        if inc.name.is_empty() {
            format!("{} resource: {e}", kind.short())
        } else {
            format!("{} resource {}: {e}", kind.short(), inc.name)
        }
    };
    let mut any = &inc.any;
    let unwrapped;
    if any.type_url == RESOURCE_WRAPPER {
        let r =
            envoy_types::pb::envoy::service::discovery::v3::Resource::decode(any.value.as_slice())
                .map_err(|e| what(format!("cannot decode the Resource wrapper: {e}")))?;
        unwrapped = r
            .resource
            .ok_or_else(|| what("the Resource wrapper holds no resource".into()))?;
        any = &unwrapped;
    }
    if any.type_url != kind.type_url() {
        return Err(what(format!(
            "type URL {} where {} was expected",
            any.type_url,
            kind.type_url()
        )));
    }
    M::decode(any.value.as_slice()).map_err(|e| what(format!("cannot decode: {e}")))
}
